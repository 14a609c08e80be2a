//! The transactional outbox. A service never publishes inside a request or a
//! handler: it adds its outgoing messages to an [`Emitter`] and writes them in
//! the same database transaction as the state change. The [`Relay`] publishes
//! pending rows in id order, in batches, with publisher confirms, and marks
//! them sent only after the broker confirmed them. If it dies in between, the
//! rows are published again and the consumers' inbox drops the duplicates.
//!
//! **Order = commit order.** Rows are published in id order on one channel, by
//! one relay per database (the one holding the [lease](crate::lease)), so two
//! messages reach a queue in the order of their ids (a parked command, below,
//! excepted). Ids follow the order in which the writing transactions committed:
//!
//! - on SQLite, because writers are serialised whole (one write transaction at
//!   a time, `BEGIN IMMEDIATE`): a transaction takes its ids and commits before
//!   the next one starts;
//! - on PostgreSQL a sequence hands ids out at insert, not at commit, so two
//!   transactions could commit in the other order than their ids and the relay
//!   would publish the later commit first. [`Emitter::flush`] therefore takes a
//!   transaction-scoped advisory lock per saga (correlation id) of the messages
//!   it writes, before it takes their ids: two transactions that write messages
//!   of one saga are serialised from that point to their commit, so within a
//!   saga, ids — and publishing — follow commit order, and a row never becomes
//!   visible after a later row of its saga. Transactions of different sagas do
//!   not wait for each other; their rows may be published in either order when
//!   both committed before the relay looked, which no consumer can tell apart
//!   from the reverse commit order (neither saw the other). Causality across
//!   sagas holds anyway: a transaction that saw another's commit takes its ids
//!   after it. The locks are held from the flush to the commit: flush last.
//!
//! **Commands are published `mandatory`.** A command that no queue takes (its
//! owner's queue does not exist yet) comes back with the broker's confirm. Its
//! row is then *parked* (`returned_at`, `returns`) instead of marked sent, and
//! published again every `messaging.parked_retry_ms` until a queue takes it;
//! the rows behind it go on meanwhile. The event log gets its copy of a command
//! once, through `bourse.command-log`, when the command is first published.
//! `bourse_outbox_parked` counts the parked commands.
//!
//! **Retention.** Sent rows are deleted by the [retention](crate::retention)
//! task after `messaging.outbox_retention_hours`, in small batches, on its own
//! schedule.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::amqp::{self, SessionEnd};
use crate::bus::{Bus, Crashed};
use crate::db::{DbConnection, DbError};
use crate::envelope::Envelope;
use crate::lease::{self, Lease};
use crate::messages::Message;
use crate::schema::outbox;
use crate::topology;
use crate::tracecontext::{self, TraceContext};

#[derive(Insertable)]
#[diesel(table_name = outbox)]
struct NewRow {
    message_id: String,
    exchange: String,
    routing_key: String,
    message_type: String,
    correlation_id: String,
    body: String,
    created_at: i64,
}

/// Collects the messages of one transaction; [`Emitter::flush`] writes them.
#[derive(Debug)]
pub struct Emitter {
    producer: String,
    cause: Option<Envelope>,
    /// The span writing the messages: their `traceparent`.
    trace: Option<TraceContext>,
    /// Each message with its exchange and routing key.
    messages: Vec<(Envelope, &'static str, String)>,
}

impl Emitter {
    /// For messages caused by a request (in the request's trace, if any).
    pub fn new(producer: &str) -> Self {
        let trace = tracecontext::current();
        Self { producer: producer.to_string(), cause: None, trace, messages: Vec::new() }
    }

    /// For messages caused by a consumed message: same saga, causation
    /// recorded, in the trace of the message's handling.
    pub fn caused_by(producer: &str, cause: &Envelope) -> Self {
        Self { cause: Some(cause.clone()), ..Self::new(producer) }
    }

    /// Adds a message of the given saga. Returns its envelope.
    pub fn send<M: Message>(&mut self, correlation_id: &str, payload: &M) -> &Envelope {
        let mut envelope = Envelope::new(&self.producer, correlation_id, payload, Utc::now());
        envelope.causation_id = self.cause.as_ref().map(|c| c.message_id);
        envelope.traceparent = self.trace.map(|t| t.to_string());
        self.messages.push((envelope, M::KIND.exchange(), payload.routing_key()));
        &self.messages[self.messages.len() - 1].0
    }

    /// Adds a message in the saga of the cause (or `correlation_id` of a request).
    pub fn reply<M: Message>(&mut self, payload: &M) -> &Envelope {
        let correlation = self.cause.as_ref().map(|c| c.correlation_id.clone()).unwrap_or_default();
        self.send(&correlation, payload)
    }

    /// Takes over the messages of another emitter (same transaction).
    pub fn absorb(&mut self, other: Emitter) {
        self.messages.extend(other.messages);
    }

    pub fn envelopes(&self) -> impl Iterator<Item = &Envelope> {
        self.messages.iter().map(|(e, ..)| e)
    }

    /// Writes the collected messages into the outbox (inside the caller's transaction).
    pub fn flush(self, conn: &mut DbConnection) -> QueryResult<usize> {
        if self.messages.is_empty() {
            return Ok(0);
        }
        let now = crate::now_micros();
        let rows: Vec<NewRow> = self
            .messages
            .into_iter()
            .map(|(envelope, exchange, routing_key)| NewRow {
                message_id: envelope.message_id.to_string(),
                exchange: exchange.to_string(),
                routing_key,
                message_type: envelope.message_type.clone(),
                correlation_id: envelope.correlation_id.clone(),
                body: envelope.to_json(),
                created_at: now,
            })
            .collect();
        if let DbConnection::Postgres(c) = conn {
            lock_sagas(c, &rows)?;
        }
        crate::on_backend!(conn, |c| diesel::insert_into(outbox::table).values(&rows).execute(c))
    }
}

/// The advisory-lock key space of the outbox's saga locks (`pg_advisory_xact_lock(int, int)`).
const SAGA_LOCK_SPACE: i32 = 0x6f75_7462; // "outb"

/// Takes the transaction-scoped lock of each saga of `rows`, in one order (by
/// key) so that two flushes never wait for each other crosswise: from here to
/// its commit, no other transaction takes ids for these sagas (see the module docs).
fn lock_sagas(conn: &mut diesel::PgConnection, rows: &[NewRow]) -> QueryResult<()> {
    let mut sagas: Vec<&str> = rows.iter().map(|r| r.correlation_id.as_str()).collect();
    sagas.sort_unstable();
    sagas.dedup();
    diesel::sql_query(
        "SELECT pg_advisory_xact_lock($1, k) \
         FROM (SELECT DISTINCT hashtext(s) AS k FROM unnest($2::text[]) AS s ORDER BY k) AS sagas",
    )
    .bind::<diesel::sql_types::Integer, _>(SAGA_LOCK_SPACE)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(sagas)
    .execute(conn)?;
    Ok(())
}

/// The relay's backlog: rows waiting to be published (not parked) and the
/// age of the oldest, and the parked commands (no queue took them yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Backlog {
    pub pending: i64,
    pub oldest_age_ms: Option<i64>,
    pub parked: i64,
}

pub fn backlog(conn: &mut DbConnection) -> QueryResult<Backlog> {
    let (pending, oldest): (i64, Option<i64>) = outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::returned_at.is_null())
        .select((diesel::dsl::count_star(), diesel::dsl::min(outbox::created_at)))
        .first(conn)?;
    let parked: i64 = outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::returned_at.is_not_null())
        .count()
        .get_result(conn)?;
    Ok(Backlog { pending, oldest_age_ms: oldest.map(|t| (crate::now_micros() - t) / 1000), parked })
}

/// An outbox row as shown to an operator.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    pub id: i64,
    pub message_id: String,
    pub exchange: String,
    pub routing_key: String,
    pub message_type: String,
    pub correlation_id: String,
    pub body: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// When a command last came back because no queue took it (`None`: never):
    /// with `sent_at` still empty, the command is parked.
    pub returned_at: Option<i64>,
    /// How often the command came back.
    pub returns: i32,
}

impl OutboxRow {
    /// A command that no queue took yet.
    pub fn is_parked(&self) -> bool {
        self.sent_at.is_none() && self.returned_at.is_some()
    }
}

/// Rows not sent yet, parked ones included, in id order.
pub fn pending(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<OutboxRow>> {
    outbox::table
        .filter(outbox::sent_at.is_null())
        .order(outbox::id.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)
}

/// The next rows to publish: not sent, not parked, in id order.
fn due(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<OutboxRow>> {
    outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::returned_at.is_null())
        .order(outbox::id.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)
}

/// Parked commands that came back before `returned_before`, in id order.
fn parked_due(conn: &mut DbConnection, returned_before: i64, limit: i64) -> QueryResult<Vec<OutboxRow>> {
    outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::returned_at.lt(returned_before))
        .order(outbox::id.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)
}

/// Every outbox row of one saga, in order.
pub fn by_correlation(conn: &mut DbConnection, correlation_id: &str) -> QueryResult<Vec<OutboxRow>> {
    outbox::table
        .filter(outbox::correlation_id.eq(correlation_id))
        .order(outbox::id.asc())
        .select(OutboxRow::as_select())
        .load(conn)
}

/// Records a published round, if `holder` still holds the relay's lease
/// (otherwise changes nothing and returns `false`): `sent` rows are done,
/// `returned` ones (commands no queue took) are parked.
fn mark(conn: &mut DbConnection, holder: &str, sent: &[i64], returned: &[i64]) -> QueryResult<bool> {
    if !lease::still_held(conn, lease::OUTBOX, holder)? {
        return Ok(false);
    }
    let now = crate::now_micros();
    if !sent.is_empty() {
        diesel::update(outbox::table.filter(outbox::id.eq_any(sent)))
            .set(outbox::sent_at.eq(now))
            .execute(conn)?;
    }
    if !returned.is_empty() {
        diesel::update(outbox::table.filter(outbox::id.eq_any(returned)))
            .set((outbox::returned_at.eq(now), outbox::returns.eq(outbox::returns + 1)))
            .execute(conn)?;
    }
    Ok(true)
}

/// Deletes up to `batch` rows sent before `cutoff` (the retention task's step). Returns how many.
pub fn purge_sent(conn: &mut DbConnection, cutoff: i64, batch: i64) -> QueryResult<usize> {
    match conn {
        DbConnection::Postgres(c) => diesel::sql_query(
            "DELETE FROM outbox WHERE id IN \
             (SELECT id FROM outbox WHERE sent_at < $1 ORDER BY id LIMIT $2)",
        )
        .bind::<diesel::sql_types::BigInt, _>(cutoff)
        .bind::<diesel::sql_types::BigInt, _>(batch)
        .execute(c),
        DbConnection::Sqlite(c) => diesel::sql_query(
            "DELETE FROM outbox WHERE id IN \
             (SELECT id FROM outbox WHERE sent_at < ? ORDER BY id LIMIT ?)",
        )
        .bind::<diesel::sql_types::BigInt, _>(cutoff)
        .bind::<diesel::sql_types::BigInt, _>(batch)
        .execute(c),
    }
}

/// Why a relay session ended.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused a message (nack)")]
    Nacked,
    #[error("the lease ran out before the broker confirmed the round")]
    LeaseRanOut,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("crash injected after publishing")]
    Crashed,
}

impl SessionEnd for RelayError {
    fn is_crash(&self) -> bool {
        matches!(self, Self::Crashed)
    }
}

impl From<diesel::result::Error> for RelayError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

/// Publishes the outbox. One per service instance; of the instances that share
/// a database, the one holding the [lease](crate::lease) publishes.
#[derive(Debug)]
pub struct Relay {
    bus: Bus,
    health: crate::metrics::ComponentHealth,
    lease: tokio::sync::Mutex<Lease>,
}

/// The message id of a row the broker returned.
fn returned_message_id(message: &lapin::message::BasicReturnMessage) -> Option<String> {
    match message.delivery.properties.message_id() {
        Some(id) => Some(id.to_string()),
        None => Envelope::from_json(&message.delivery.data).ok().map(|e| e.message_id.to_string()),
    }
}

impl Relay {
    /// The relay counts as down (service not ready) from here until it is
    /// connected, whether it then publishes or stands by.
    pub fn new(bus: Bus) -> Self {
        let health = bus.metrics.component("relay");
        let holder = format!("{}/{}/{}", bus.producer, std::process::id(), uuid::Uuid::now_v7().simple());
        let lease = Lease::new(lease::OUTBOX, holder, Duration::from_millis(bus.config.relay_lease_ms));
        bus.metrics.set_gauge("bourse_relay_leader", &[], 0);
        Self { bus, health, lease: tokio::sync::Mutex::new(lease) }
    }

    /// Runs until `shutdown`, reconnecting by itself whenever the broker or
    /// the database fails. A clean stop gives the lease up.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Crashed> {
        let result =
            amqp::supervise("outbox relay", &self.health, &shutdown, || self.session(&shutdown)).await;
        let mut lease = self.lease.lock().await;
        if result.is_ok()
            && lease.is_held()
            && let Err(e) = lease.release(&self.bus.db).await
        {
            tracing::warn!(error = %e, "could not release the relay's lease: a standby takes over when it runs out");
        }
        self.set_leader(false);
        result
    }

    fn set_leader(&self, leads: bool) {
        self.bus.metrics.set_gauge("bourse_relay_leader", &[], i64::from(leads));
    }

    /// Takes or renews the lease when due. `Some(deadline)`: this instance
    /// publishes until then; `None`: another one does.
    async fn lead(&self) -> Result<Option<Instant>, RelayError> {
        let mut lease = self.lease.lock().await;
        if lease.renewal_due() {
            let was = lease.is_held();
            let held = lease.acquire(&self.bus.db).await?;
            if held != was {
                tracing::info!(producer = %self.bus.producer, holder = lease.holder(), "outbox relay {}", if held { "took the lease: publishing" } else { "lost the lease: standing by" });
            }
            self.set_leader(held);
        }
        Ok(lease.deadline())
    }

    async fn session(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let bus = &self.bus;
        let conn = amqp::connect(&bus.amqp_url, &format!("{}.relay", bus.producer)).await?;
        let ch = conn.create_channel().await?;
        topology::declare_exchanges(&ch, &bus.config).await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        self.health.set(true);
        tracing::info!(producer = %bus.producer, "outbox relay connected");

        let poll = Duration::from_millis(bus.config.relay_poll_ms);
        let mut next_parked_retry = Instant::now();
        // Command types whose old event-log route this session has removed.
        let mut unlogged = HashSet::new();
        // The last round published and confirmed, not yet marked.
        let mut unmarked: Option<Round> = None;
        // The next round's rows, read while the last one was published.
        let mut ahead: Option<Vec<OutboxRow>> = None;
        loop {
            if shutdown.is_cancelled() {
                if let Some(round) = unmarked.take() {
                    self.mark(round).await?;
                }
                let _ = conn.close(200, "shutdown".into()).await;
                return Ok(());
            }
            if self.lead().await?.is_none() {
                // Standing by: connected, ready to take over. A round left
                // unmarked is published again by the holder (the inboxes skip it).
                (unmarked, ahead) = (None, None);
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
                continue;
            };

            // Three things at once: the broker confirms a round, the round
            // before it is marked in the database, and the rows after it are
            // read (leaving out those two rounds' rows).
            let rows = match ahead.take() {
                Some(rows) => rows,
                None => {
                    let marking: HashSet<i64> = unmarked.iter().flat_map(Round::ids).collect();
                    self.next_rows(marking, &mut next_parked_retry).await?
                }
            };
            if rows.is_empty() {
                if let Some(round) = unmarked.take() {
                    self.mark(round).await?;
                } else {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = bus.db.committed().notified() => {}
                        _ = tokio::time::sleep(poll) => {}
                    }
                }
                continue;
            }
            let in_flight: HashSet<i64> =
                rows.iter().map(|r| r.id).chain(unmarked.iter().flat_map(Round::ids)).collect();
            let (confirmed, marked, next) = tokio::join!(
                self.publish(&conn, &ch, rows, &mut unlogged),
                async {
                    match unmarked.take() {
                        Some(round) => self.mark(round).await,
                        None => Ok(()),
                    }
                },
                self.next_rows(in_flight, &mut next_parked_retry),
            );
            marked?;
            unmarked = Some(confirmed?);
            ahead = Some(next?);
        }
    }

    /// The next round's rows, leaving out `in_flight` ones: parked commands
    /// when their retry is due, else the rows due, in id order.
    async fn next_rows(
        &self,
        in_flight: HashSet<i64>,
        next_parked_retry: &mut Instant,
    ) -> Result<Vec<OutboxRow>, RelayError> {
        let db = &self.bus.db;
        let batch = self.bus.config.relay_batch.max(1);
        let reach = (batch + in_flight.len()) as i64;
        let mut rows = Vec::new();
        if Instant::now() >= *next_parked_retry {
            let parked_retry = Duration::from_millis(self.bus.config.parked_retry_ms.max(1));
            *next_parked_retry = Instant::now() + parked_retry;
            let before = crate::now_micros() - i64::try_from(parked_retry.as_micros()).unwrap_or(i64::MAX);
            rows = db.read(move |c| parked_due(c, before, reach).map_err(DbError::from)).await?;
            rows.retain(|r| !in_flight.contains(&r.id));
        }
        if rows.is_empty() {
            rows = db.read(move |c| due(c, reach).map_err(DbError::from)).await?;
            rows.retain(|r| !in_flight.contains(&r.id));
        }
        rows.truncate(batch);
        Ok(rows)
    }

    /// Publishes `rows` (in order, confirmed while this instance holds the
    /// lease, renewed meanwhile): the round to mark, its rows sent or, when the
    /// broker returned them, parked.
    async fn publish(
        &self,
        conn: &lapin::Connection,
        ch: &lapin::Channel,
        rows: Vec<OutboxRow>,
        unlogged: &mut HashSet<String>,
    ) -> Result<Round, RelayError> {
        let bus = &self.bus;
        for row in &rows {
            if row.exchange == topology::COMMANDS && !unlogged.contains(&row.routing_key) {
                topology::unlog_command_route(ch, &row.routing_key).await?;
                unlogged.insert(row.routing_key.clone());
            }
        }
        let round = async {
            let mut confirms = Vec::with_capacity(rows.len());
            for row in &rows {
                let properties =
                    Envelope::from_json(row.body.as_bytes()).map(|e| e.amqp_properties()).unwrap_or_default();
                let command = row.exchange == topology::COMMANDS;
                if command && row.returned_at.is_none() {
                    // The event log's copy, once: when the command is first published.
                    confirms.push(
                        ch.basic_publish(
                            topology::COMMAND_LOG.into(),
                            row.routing_key.as_str().into(),
                            BasicPublishOptions::default(),
                            row.body.as_bytes(),
                            properties.clone(),
                        )
                        .await?,
                    );
                }
                confirms.push(
                    ch.basic_publish(
                        row.exchange.as_str().into(),
                        row.routing_key.as_str().into(),
                        BasicPublishOptions { mandatory: command, ..Default::default() },
                        row.body.as_bytes(),
                        properties,
                    )
                    .await?,
                );
            }
            // lapin hands a returned message to whichever confirm of the channel
            // completes next, not necessarily its own: it is matched by message id.
            let mut returned = HashSet::new();
            for confirm in confirms {
                match confirm.await? {
                    Confirmation::Nack(_) => return Err(RelayError::Nacked),
                    Confirmation::Ack(Some(message)) => {
                        returned.extend(returned_message_id(&message));
                    }
                    Confirmation::Ack(None) | Confirmation::NotRequested => {}
                }
            }
            Ok(returned)
        };
        // A broker slow to confirm (a backlog, flow control) does not cost
        // the lease: it is renewed while the round waits, every quarter term.
        let mut round = std::pin::pin!(round);
        let renew_every = Duration::from_millis(bus.config.relay_lease_ms / 4);
        let returned = loop {
            let wake = self.lead().await?.map(|until| until.min(Instant::now() + renew_every));
            let Some(wake) = wake else {
                // The lease ran out: another instance may publish, this one stops at once.
                let _ = conn.close(320, "relay lease ran out".into()).await;
                self.set_leader(false);
                return Err(RelayError::LeaseRanOut);
            };
            if let Ok(returned) = tokio::time::timeout_at(wake, &mut round).await {
                break returned?;
            }
        };
        if bus.faults.relay_should_crash() {
            // As if the process died here: published, not marked.
            let _ = conn.close(320, "crash injected".into()).await;
            return Err(RelayError::Crashed);
        }

        let (parked, sent): (Vec<&OutboxRow>, Vec<&OutboxRow>) =
            rows.iter().partition(|r| returned.contains(&r.message_id));
        for row in parked.iter() {
            if row.returns == 0 {
                tracing::warn!(
                    r#type = %row.message_type,
                    message_id = %row.message_id,
                    correlation_id = %row.correlation_id,
                    "no queue takes this command (its owner has not started?): parked, published again every {} ms",
                    bus.config.parked_retry_ms
                );
            } else {
                tracing::debug!(r#type = %row.message_type, message_id = %row.message_id, returns = row.returns + 1, "parked command returned again");
            }
        }
        for row in sent.iter().filter(|r| r.returned_at.is_some()) {
            tracing::info!(r#type = %row.message_type, message_id = %row.message_id, returns = row.returns, "parked command delivered");
        }
        Ok(Round { sent: sent.iter().map(|r| r.id).collect(), parked: parked.iter().map(|r| r.id).collect() })
    }

    /// Records a confirmed round in the outbox, unless the lease was lost meanwhile.
    async fn mark(&self, round: Round) -> Result<(), RelayError> {
        let bus = &self.bus;
        let (n_sent, n_parked) = (round.sent.len() as u64, round.parked.len() as u64);
        let holder = self.lease.lock().await.holder().to_string();
        let marked = bus
            .db
            .write(move |c| mark(c, &holder, &round.sent, &round.parked).map_err(DbError::from))
            .await?;
        if !marked {
            tracing::warn!(producer = %bus.producer, "outbox relay lost its lease before marking its round: the new holder publishes those rows again");
            self.lease.lock().await.lost();
            self.set_leader(false);
            return Ok(());
        }
        bus.metrics.add("bourse_outbox_published_total", &[], n_sent);
        bus.metrics.add("bourse_outbox_returned_total", &[], n_parked);
        if n_sent > 0 {
            bus.metrics.set_gauge(crate::inspect::LAST_PUBLISH_GAUGE, &[], chrono::Utc::now().timestamp());
        }
        Ok(())
    }
}

/// A round the broker confirmed: the ids of its rows sent, and of those it returned (to park).
#[derive(Debug)]
struct Round {
    sent: Vec<i64>,
    parked: Vec<i64>,
}

impl Round {
    fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.sent.iter().chain(&self.parked).copied()
    }
}
