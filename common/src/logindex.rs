//! The index of the event log: every message of `bourse.event-log`, kept in a
//! database table by its offset with its saga (correlation id), id, cause and
//! type indexed, so that a saga's trace costs the saga's size and not the
//! log's, and a message can be found again to be republished.
//!
//! [`follow`] keeps it: a consumer of the stream that writes each batch and
//! the offset it reached in one transaction (a crash between the two reads
//! the batch again; rows are keyed by offset, so nothing is doubled). The
//! tables live in the database of the service that runs it (the gateway).

use std::time::Duration;

use diesel::prelude::*;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::amqp::{self, SessionEnd};
use crate::bus::Bus;
use crate::db::{DbConnection, DbError};
use crate::envelope::Envelope;
use crate::eventlog::{LoggedMessage, StreamOffset};
use crate::metrics::ComponentHealth;
use crate::topology::{self, EVENT_LOG};

diesel::table! {
    message_log (log_offset) {
        log_offset -> BigInt,
        message_id -> Text,
        message_type -> Text,
        correlation_id -> Text,
        causation_id -> Nullable<Text>,
        producer -> Text,
        exchange -> Text,
        routing_key -> Text,
        occurred_at -> BigInt,
        envelope -> Text,
    }
}

diesel::table! {
    message_log_cursor (name) {
        name -> Text,
        next_offset -> BigInt,
    }
}

const CURSOR: &str = "event-log";
/// Messages written per transaction at most.
const BATCH: usize = 1_000;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = message_log)]
struct Row {
    log_offset: i64,
    message_id: String,
    message_type: String,
    correlation_id: String,
    causation_id: Option<String>,
    producer: String,
    exchange: String,
    routing_key: String,
    occurred_at: i64,
    envelope: String,
}

impl From<&LoggedMessage> for Row {
    fn from(m: &LoggedMessage) -> Self {
        let e = &m.envelope;
        Self {
            log_offset: i64::try_from(m.offset).unwrap_or(i64::MAX),
            message_id: e.message_id.to_string(),
            message_type: e.message_type.clone(),
            correlation_id: e.correlation_id.clone(),
            causation_id: e.causation_id.map(|c| c.to_string()),
            producer: e.producer.clone(),
            exchange: m.exchange.clone(),
            routing_key: m.routing_key.clone(),
            occurred_at: e.occurred_at.timestamp_micros(),
            envelope: e.to_json(),
        }
    }
}

impl Row {
    /// The entry back; `None` if its envelope no longer parses (never written so).
    fn entry(self) -> Option<LoggedMessage> {
        let envelope = Envelope::from_json(self.envelope.as_bytes()).ok()?;
        Some(LoggedMessage {
            offset: u64::try_from(self.log_offset).unwrap_or(0),
            exchange: self.exchange,
            routing_key: self.routing_key,
            envelope,
        })
    }
}

fn entries(rows: Vec<Row>) -> Vec<LoggedMessage> {
    rows.into_iter().filter_map(Row::entry).collect()
}

/// Stores `batch` (entries already stored are left as they are) and moves the
/// cursor past its last offset, in the caller's transaction.
pub fn store(conn: &mut DbConnection, batch: &[LoggedMessage]) -> QueryResult<()> {
    let Some(last) = batch.iter().map(|m| m.offset).max() else { return Ok(()) };
    let rows: Vec<Row> = batch.iter().map(Row::from).collect();
    match conn {
        DbConnection::Postgres(c) => {
            // At most 65,535 bound values per statement: 10 per row.
            for chunk in rows.chunks(5_000) {
                diesel::insert_into(message_log::table).values(chunk).on_conflict_do_nothing().execute(c)?;
            }
        }
        // One statement per row (diesel batches no nullable columns on SQLite); one transaction still.
        DbConnection::Sqlite(c) => {
            for row in &rows {
                diesel::insert_into(message_log::table).values(row).on_conflict_do_nothing().execute(c)?;
            }
        }
    }
    let next = i64::try_from(last + 1).unwrap_or(i64::MAX);
    let cursor = (message_log_cursor::name.eq(CURSOR), message_log_cursor::next_offset.eq(next));
    crate::on_backend!(conn, |c| diesel::insert_into(message_log_cursor::table)
        .values(cursor)
        .on_conflict(message_log_cursor::name)
        .do_update()
        .set(message_log_cursor::next_offset.eq(next))
        .execute(c))?;
    Ok(())
}

/// The step of an order's saga a message marks, if any.
fn saga_step(envelope: &Envelope) -> Option<&'static str> {
    match envelope.message_type.as_str() {
        "funds.reserved" => Some("reserved"),
        "funds.settled" => Some("settled"),
        "order.rejected" => Some("rejected"),
        "order.updated" => match envelope.payload.get("status")?.as_str()? {
            "open" => Some("open"),
            "filled" => Some("filled"),
            _ => None,
        },
        _ => None,
    }
}

/// The saga steps among `batch` (stored already), each with the time since
/// its saga's first message (the order's submission), by the producers' clocks.
fn saga_steps(
    conn: &mut DbConnection,
    batch: &[LoggedMessage],
) -> QueryResult<Vec<(&'static str, Duration)>> {
    let steps: Vec<(&str, &Envelope)> =
        batch.iter().filter_map(|m| Some((saga_step(&m.envelope)?, &m.envelope))).collect();
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let sagas: Vec<&str> = steps.iter().map(|(_, e)| e.correlation_id.as_str()).collect();
    let started: std::collections::HashMap<String, Option<i64>> = message_log::table
        .filter(message_log::correlation_id.eq_any(&sagas))
        .group_by(message_log::correlation_id)
        .select((message_log::correlation_id, diesel::dsl::min(message_log::occurred_at)))
        .load(conn)?
        .into_iter()
        .collect();
    Ok(steps
        .into_iter()
        .filter_map(|(step, e)| {
            let start = (*started.get(&e.correlation_id)?)?;
            let micros = e.occurred_at.timestamp_micros().checked_sub(start)?;
            Some((step, Duration::from_micros(u64::try_from(micros).ok()?)))
        })
        .collect())
}

/// The first offset not indexed yet (`None`: nothing indexed).
pub fn next_offset(conn: &mut DbConnection) -> QueryResult<Option<u64>> {
    let next = message_log_cursor::table
        .find(CURSOR)
        .select(message_log_cursor::next_offset)
        .first::<i64>(conn)
        .optional()?;
    Ok(next.map(|n| u64::try_from(n).unwrap_or(0)))
}

/// Every message of saga `correlation_id`, causes before effects (see [`causal_order`]).
pub fn saga(conn: &mut DbConnection, correlation_id: &str) -> QueryResult<Vec<Traced>> {
    let rows = message_log::table
        .filter(message_log::correlation_id.eq(correlation_id))
        .order(message_log::log_offset.asc())
        .select(Row::as_select())
        .load(conn)?;
    Ok(causal_order(entries(rows)))
}

/// Every copy of message `id` in the log (a republished message is there
/// again), in log order: the first is the original.
pub fn copies(conn: &mut DbConnection, id: Uuid) -> QueryResult<Vec<LoggedMessage>> {
    let rows = message_log::table
        .filter(message_log::message_id.eq(id.to_string()))
        .order(message_log::log_offset.asc())
        .select(Row::as_select())
        .load(conn)?;
    Ok(entries(rows))
}

/// The messages `id` caused, in log order.
pub fn effects(conn: &mut DbConnection, id: Uuid) -> QueryResult<Vec<LoggedMessage>> {
    let rows = message_log::table
        .filter(message_log::causation_id.eq(id.to_string()))
        .order(message_log::log_offset.asc())
        .select(Row::as_select())
        .load(conn)?;
    Ok(entries(rows))
}

/// A logged message about to be published again, and what that would do.
#[derive(Debug, Clone)]
pub struct Republish {
    /// Its first copy in the log: where it went, its envelope.
    pub entry: LoggedMessage,
    /// What it caused the first time.
    pub effects: Vec<LoggedMessage>,
    /// How long ago it occurred.
    pub age: Duration,
}

impl Republish {
    /// Message `id` as the index has it; `None` if it was never logged.
    pub fn find(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<Self>> {
        let Some(entry) = copies(conn, id)?.into_iter().next() else { return Ok(None) };
        let age = (chrono::Utc::now() - entry.envelope.occurred_at).to_std().unwrap_or_default();
        Ok(Some(Self { entry, effects: effects(conn, id)?, age }))
    }

    /// Whether its consumers still remember it (`window`: their inbox
    /// retention): a harmless redelivery they skip.
    pub fn is_redelivery(&self, window: Duration) -> bool {
        self.age <= window
    }

    /// Why it may not be published again unless forced, if so: older than
    /// `window`, its consumers would apply it again; says what it did the first time.
    pub fn refusal(&self, window: Duration) -> Option<String> {
        if self.is_redelivery(window) {
            return None;
        }
        let e = &self.entry.envelope;
        let did: Vec<String> = self
            .effects
            .iter()
            .map(|m| format!("{} by {}", m.envelope.message_type, m.envelope.producer))
            .collect();
        let did = if did.is_empty() { "nothing logged".to_string() } else { did.join(", ") };
        Some(format!(
            "{} {} occurred {} h ago; the inboxes remember message ids for {} h: its consumers would apply it again. \
             The first time it caused: {did}. Force it once you know that is what you want",
            e.message_type,
            e.message_id,
            self.age.as_secs() / 3600,
            window.as_secs() / 3600
        ))
    }
}

/// Which part of the log to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `None` or `First`: from the first message; `Next`: nothing yet.
    pub from: Option<StreamOffset>,
    pub message_type: Option<String>,
}

/// Up to `limit` messages of the log matching `filter`, in log order, after
/// skipping `skip`; and how many match in all.
pub fn read(
    conn: &mut DbConnection,
    filter: &Filter,
    limit: i64,
    skip: i64,
) -> QueryResult<(Vec<LoggedMessage>, i64)> {
    let query = || {
        let mut q = message_log::table.into_boxed();
        match filter.from {
            None | Some(StreamOffset::First) => {}
            Some(StreamOffset::Next) => q = q.filter(message_log::log_offset.lt(0)),
            Some(StreamOffset::At(n)) => {
                q = q.filter(message_log::log_offset.ge(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            Some(StreamOffset::Since(t)) => q = q.filter(message_log::occurred_at.ge(t.timestamp_micros())),
        }
        if let Some(t) = &filter.message_type {
            q = q.filter(message_log::message_type.eq(t.clone()));
        }
        q
    };
    let rows = query()
        .order(message_log::log_offset.asc())
        .limit(limit)
        .offset(skip)
        .select(Row::as_select())
        .load(conn)?;
    let total = query().count().get_result(conn)?;
    Ok((entries(rows), total))
}

/// A message of a saga, with the offsets of its later copies (republished).
#[derive(Debug, Clone)]
pub struct Traced {
    pub entry: LoggedMessage,
    pub copies: Vec<u64>,
}

/// `messages` in log order with each moved after its cause when the cause is
/// among them (services' clocks and the log's order can disagree; the chain
/// of causes cannot). Each message once, at its first copy.
pub fn causal_order(messages: Vec<LoggedMessage>) -> Vec<Traced> {
    use std::collections::{HashMap, HashSet};
    let mut first: HashMap<Uuid, usize> = HashMap::new();
    let mut copies: HashMap<usize, Vec<u64>> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        match first.get(&m.envelope.message_id) {
            Some(&original) => copies.entry(original).or_default().push(m.offset),
            None => {
                first.insert(m.envelope.message_id, i);
            }
        }
    }
    let mut placed = HashSet::new();
    let mut order = Vec::with_capacity(messages.len());
    let mut originals: Vec<usize> = first.values().copied().collect();
    originals.sort_unstable();
    for i in originals {
        // The chain of causes not placed yet, placed from the oldest.
        let mut chain = vec![i];
        let mut at = i;
        while let Some(cause) = messages[at].envelope.causation_id.and_then(|c| first.get(&c).copied()) {
            if placed.contains(&cause) || chain.contains(&cause) {
                break;
            }
            chain.push(cause);
            at = cause;
        }
        for j in chain.into_iter().rev() {
            if placed.insert(j) {
                order.push(j);
            }
        }
    }
    let mut slots: Vec<Option<LoggedMessage>> = messages.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| {
            let entry = slots[i].take()?;
            Some(Traced { entry, copies: copies.remove(&i).unwrap_or_default() })
        })
        .collect()
}

/// Why an indexing session ended.
#[derive(Debug, thiserror::Error)]
enum IndexError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the event log stream ended")]
    Closed,
}

impl SessionEnd for IndexError {}

/// Keeps the index of the event log in `db` until `shutdown`: reads the
/// stream from where the index stopped, writes each batch with the offset it
/// reached, acknowledges. `health` is up while it follows the log.
pub async fn follow(bus: Bus, health: ComponentHealth, shutdown: CancellationToken) {
    let Bus { db, amqp_url, config: messaging, metrics, .. } = bus;
    let session = || async {
        let from = match db.read(|c| next_offset(c).map_err(DbError::from)).await? {
            Some(next) => StreamOffset::At(next),
            None => StreamOffset::First,
        };
        let conn = amqp::connect(&amqp_url, "bourse.event-log-index").await?;
        let ch = conn.create_channel().await?;
        topology::declare_exchanges(&ch, &messaging).await?;
        let prefetch = u16::try_from(BATCH).unwrap_or(u16::MAX);
        ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let mut args = FieldTable::default();
        args.insert("x-stream-offset".into(), from.argument());
        let mut deliveries =
            ch.basic_consume(EVENT_LOG.into(), "".into(), BasicConsumeOptions::default(), args).await?;
        health.set(true);
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = conn.close(200, "shutdown".into()).await;
                    return Ok(());
                }
                next = deliveries.next() => next.ok_or(IndexError::Closed)??,
            };
            let mut batch = vec![first];
            // What has already arrived joins the batch.
            while batch.len() < BATCH {
                match tokio::time::timeout(Duration::from_millis(20), deliveries.next()).await {
                    Ok(Some(delivery)) => batch.push(delivery?),
                    Ok(None) => return Err(IndexError::Closed),
                    Err(_) => break,
                }
            }
            let entries: Vec<LoggedMessage> = batch.iter().filter_map(crate::eventlog::entry).collect();
            let steps = db
                .write(move |c| {
                    store(c, &entries)?;
                    saga_steps(c, &entries).map_err(DbError::from)
                })
                .await?;
            for (step, took) in steps {
                metrics.observe("bourse_saga_step_duration_seconds", &[("step", step)], took);
            }
            if let Some(last) = batch.last() {
                last.acker.ack(BasicAckOptions { multiple: true }).await?;
            }
        }
    };
    let _ = amqp::supervise("event log index", &health, &shutdown, session).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn message(id: u128, cause: Option<u128>, offset: u64) -> LoggedMessage {
        LoggedMessage {
            offset,
            exchange: "bourse.events".into(),
            routing_key: "t".into(),
            envelope: Envelope {
                message_id: Uuid::from_u128(id),
                message_type: "t".into(),
                version: 1,
                correlation_id: "s".into(),
                causation_id: cause.map(Uuid::from_u128),
                occurred_at: Utc::now(),
                producer: "p".into(),
                payload: serde_json::Value::Null,
                traceparent: None,
            },
        }
    }

    #[test]
    fn causal_order_puts_each_cause_first_and_each_message_once() {
        // Logged as 3 (caused by 2), 1, 2 (caused by 1), 1 again (republished), 4 (caused by 9, not here).
        let log = vec![
            message(3, Some(2), 0),
            message(1, None, 1),
            message(2, Some(1), 2),
            message(1, None, 3),
            message(4, Some(9), 4),
        ];
        let traced: Vec<(u128, Vec<u64>)> = causal_order(log)
            .into_iter()
            .map(|t| (t.entry.envelope.message_id.as_u128(), t.copies))
            .collect();
        assert_eq!(traced, [(1, vec![3]), (2, vec![]), (3, vec![]), (4, vec![])]);
    }
}
