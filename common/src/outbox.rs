//! The transactional outbox. A service never publishes inside a request or a
//! handler: it adds its outgoing messages to an [`Emitter`] and writes them in
//! the same database transaction as the state change. The [`Relay`] publishes
//! pending rows in id order, in batches, with publisher confirms, and marks
//! them sent only after the broker confirmed them. If it dies in between, the
//! rows are published again and the consumers' inbox drops the duplicates.
//!
//! Order: rows are published in id order on one channel, so two messages that
//! were committed one after the other (one saga step after the next) reach a
//! queue in that order.

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use tokio_util::sync::CancellationToken;

use crate::amqp::{self, SessionEnd};
use crate::bus::{Bus, Crashed};
use crate::db::{DbConnection, DbError};
use crate::envelope::Envelope;
use crate::messages::Message;
use crate::schema::outbox;
use crate::topology;

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
    messages: Vec<(Envelope, &'static str)>,
}

impl Emitter {
    /// For messages caused by a request.
    pub fn new(producer: &str) -> Self {
        Self { producer: producer.to_string(), cause: None, messages: Vec::new() }
    }

    /// For messages caused by a consumed message: same saga, causation recorded.
    pub fn caused_by(producer: &str, cause: &Envelope) -> Self {
        Self { producer: producer.to_string(), cause: Some(cause.clone()), messages: Vec::new() }
    }

    /// Adds a message of the given saga. Returns its envelope.
    pub fn send<M: Message>(&mut self, correlation_id: &str, payload: &M) -> &Envelope {
        let mut envelope = Envelope::new(&self.producer, correlation_id, payload, Utc::now());
        envelope.causation_id = self.cause.as_ref().map(|c| c.message_id);
        self.messages.push((envelope, M::KIND.exchange()));
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
        self.messages.iter().map(|(e, _)| e)
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
            .map(|(envelope, exchange)| NewRow {
                message_id: envelope.message_id.to_string(),
                exchange: exchange.to_string(),
                routing_key: envelope.message_type.clone(),
                message_type: envelope.message_type.clone(),
                correlation_id: envelope.correlation_id.clone(),
                body: envelope.to_json(),
                created_at: now,
            })
            .collect();
        crate::on_backend!(conn, |c| diesel::insert_into(outbox::table).values(&rows).execute(c))
    }
}

/// Pending rows and the age of the oldest: the relay's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Backlog {
    pub pending: i64,
    pub oldest_age_ms: Option<i64>,
}

pub fn backlog(conn: &mut DbConnection) -> QueryResult<Backlog> {
    let (pending, oldest): (i64, Option<i64>) = outbox::table
        .filter(outbox::sent_at.is_null())
        .select((diesel::dsl::count_star(), diesel::dsl::min(outbox::created_at)))
        .first(conn)?;
    Ok(Backlog { pending, oldest_age_ms: oldest.map(|t| (crate::now_micros() - t) / 1000) })
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
}

pub fn pending(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<OutboxRow>> {
    outbox::table
        .filter(outbox::sent_at.is_null())
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

fn mark_sent(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set(outbox::sent_at.eq(crate::now_micros()))
        .execute(conn)
}

/// Sent rows are kept this long for inspection, then deleted.
const SENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn purge_sent(conn: &mut DbConnection) -> QueryResult<usize> {
    let cutoff = crate::now_micros() - SENT_RETENTION.as_micros() as i64;
    diesel::delete(outbox::table.filter(outbox::sent_at.lt(cutoff))).execute(conn)
}

/// Why a relay session ended.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused a message (nack)")]
    Nacked,
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

/// Publishes the outbox. One per service instance.
#[derive(Debug)]
pub struct Relay {
    bus: Bus,
    health: crate::metrics::ComponentHealth,
}

impl Relay {
    /// The relay counts as down (service not ready) from here until it is connected.
    pub fn new(bus: Bus) -> Self {
        let health = bus.metrics.component("relay");
        Self { bus, health }
    }

    /// Runs until `shutdown`, reconnecting by itself whenever the broker or
    /// the database fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Crashed> {
        amqp::supervise("outbox relay", &self.health, &shutdown, || self.session(&shutdown)).await
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
        let batch = bus.config.relay_batch as i64;
        let mut last_purge = tokio::time::Instant::now();
        // Command types whose event-log binding this session has made sure of.
        let mut logged_commands = std::collections::HashSet::new();
        loop {
            let rows = bus.db.read(move |c| pending(c, batch).map_err(DbError::from)).await?;
            if rows.is_empty() {
                if last_purge.elapsed() > Duration::from_secs(600) {
                    last_purge = tokio::time::Instant::now();
                    bus.db.write(|c| purge_sent(c).map_err(DbError::from)).await?;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = conn.close(200, "shutdown".into()).await;
                        return Ok(());
                    }
                    _ = bus.db.committed().notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
                continue;
            }

            for row in &rows {
                if row.exchange == topology::COMMANDS && !logged_commands.contains(&row.routing_key) {
                    topology::log_command(&ch, &row.routing_key).await?;
                    logged_commands.insert(row.routing_key.clone());
                }
            }
            let mut confirms = Vec::with_capacity(rows.len());
            for row in &rows {
                let properties =
                    Envelope::from_json(row.body.as_bytes()).map(|e| e.amqp_properties()).unwrap_or_default();
                confirms.push(
                    ch.basic_publish(
                        row.exchange.as_str().into(),
                        row.routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        row.body.as_bytes(),
                        properties,
                    )
                    .await?,
                );
            }
            for confirm in confirms {
                if confirm.await?.is_nack() {
                    return Err(RelayError::Nacked);
                }
            }
            if bus.faults.relay_should_crash() {
                // As if the process died here: published, not marked.
                let _ = conn.close(320, "crash injected".into()).await;
                return Err(RelayError::Crashed);
            }
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let sent = ids.len() as u64;
            bus.db.write(move |c| mark_sent(c, &ids).map_err(DbError::from)).await?;
            bus.metrics.add("bourse_outbox_published_total", &[], sent);
        }
    }
}
