//! The transactional inbox: a consumer that applies each delivery exactly once.
//!
//! For a batch of deliveries (up to `consumer_batch`, whatever is already
//! buffered) it opens one database transaction, records each `message_id` in
//! `inbox` (one already there is a duplicate: skipped), runs the handler,
//! writes the handler's outgoing messages to the outbox, commits, and only then
//! acknowledges (`multiple`). A crash before the commit redelivers and redoes
//! everything; a crash after the commit redelivers and the inbox skips it.
//!
//! A handler that fails rolls the batch back; its messages are then applied one
//! by one, and the failing one is republished to its retry tier
//! (`<queue>.retry.<ms>`, which dead-letters it back after the delay) with its
//! attempt count and error in the headers, or parked in `<queue>.dlq` once
//! `max_attempts` deliveries failed or the handler called the error permanent.
//! The republish is confirmed before the original is acknowledged.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;

use crate::amqp::{self, SessionEnd};
use crate::bus::{Bus, Crashed};
use crate::db::{DbConnection, DbError, is_unique_violation};
use crate::envelope::Envelope;
use crate::faults::Failing;
use crate::metrics::ComponentHealth;
use crate::outbox::Emitter;
use crate::schema::inbox;
use crate::topology::{
    self, ATTEMPT_HEADER, ERROR_HEADER, ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER, QueueSpec,
};
use crate::tracecontext::{self, TraceContext};

/// A handler's failure.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying later (a dependency is down, a lock timed out).
    #[error("{0}")]
    Transient(anyhow::Error),
    /// Will never succeed (a malformed payload): parked at once.
    #[error("{0}")]
    Permanent(anyhow::Error),
}

impl HandlerError {
    /// A message of a type the queue's handler does not know: parked, not retried.
    pub fn unexpected(message: &Envelope) -> Self {
        Self::Permanent(anyhow::anyhow!("unexpected message type {}", message.message_type))
    }
}

impl From<diesel::result::Error> for HandlerError {
    /// A stored value that does not decode (or encode) will not on a retry
    /// either: permanent. Anything else the database says is worth retrying.
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::Error;
        match e {
            Error::DeserializationError(_) | Error::SerializationError(_) => Self::Permanent(e.into()),
            e => Self::Transient(e.into()),
        }
    }
}

impl From<crate::envelope::InvalidEnvelope> for HandlerError {
    fn from(e: crate::envelope::InvalidEnvelope) -> Self {
        Self::Permanent(e.into())
    }
}

/// Applies one message inside the consumer's transaction. Outgoing messages go
/// to `out`; they are written to the outbox in the same transaction.
///
/// Services do not implement it by hand: a queue's messages are a typed enum
/// ([`inbound!`](crate::inbound)) and its handler a [`Handle`] of that enum,
/// joined by [`consume`]. This untyped form is what the [`Consumer`] runs.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError>;
}

impl<F> Handler for F
where
    F: Fn(&mut DbConnection, &Envelope, &mut Emitter) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError> {
        self(conn, message, out)
    }
}

/// The messages one queue takes, decoded once from their envelope (the
/// queue's bindings are their types). Defined with [`inbound!`](crate::inbound).
pub trait Inbound: Sized + Send + 'static {
    /// Each message type with the exchange it arrives on.
    const BINDINGS: &'static [(crate::messages::Kind, &'static str)];

    /// The typed message, or a permanent error (unknown type, bad payload).
    fn decode(envelope: &Envelope) -> Result<Self, HandlerError>;
}

/// Defines the typed messages of a queue: one variant per message type,
/// decoded once, so that its handler is a `match` on types.
///
/// ```ignore
/// bourse_common::inbound! {
///     /// What the saga queue takes.
///     pub enum Saga {
///         Reserved(FundsReserved),
///         Rejected(FundsRejected),
///     }
/// }
/// ```
#[macro_export]
macro_rules! inbound {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident($message:ty)),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name {
            $($(#[$vmeta])* $variant($message)),+
        }

        impl $crate::inbox::Inbound for $name {
            const BINDINGS: &'static [($crate::messages::Kind, &'static str)] = &[$((
                <$message as $crate::messages::Message>::KIND,
                <$message as $crate::messages::Message>::TYPE,
            )),+];

            fn decode(envelope: &$crate::envelope::Envelope) -> Result<Self, $crate::inbox::HandlerError> {
                $(
                    if envelope.message_type == <$message as $crate::messages::Message>::TYPE {
                        return Ok($name::$variant(envelope.payload()?));
                    }
                )+
                Err($crate::inbox::HandlerError::unexpected(envelope))
            }
        }
    };
}

/// Applies one typed message of a queue inside the consumer's transaction;
/// `envelope` is the message's envelope (its ids, for causes and records).
pub trait Handle<M>: Send + Sync + 'static {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: M,
        envelope: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError>;
}

impl<M, F> Handle<M> for F
where
    F: Fn(&mut DbConnection, M, &Envelope, &mut Emitter) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: M,
        envelope: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError> {
        self(conn, message, envelope, out)
    }
}

/// A typed handler as the consumer runs it: decode, then handle.
struct Decoded<M, H> {
    handler: H,
    messages: std::marker::PhantomData<fn() -> M>,
}

impl<M: Inbound, H: Handle<M>> Handler for Decoded<M, H> {
    fn handle(
        &self,
        conn: &mut DbConnection,
        message: &Envelope,
        out: &mut Emitter,
    ) -> Result<(), HandlerError> {
        self.handler.handle(conn, M::decode(message)?, message, out)
    }
}

/// A queue of a service and what handles it.
pub struct Consumes {
    pub spec: QueueSpec,
    pub handler: Arc<dyn Handler>,
}

impl std::fmt::Debug for Consumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumes").field("spec", &self.spec).finish_non_exhaustive()
    }
}

/// The queue `name`, bound to the types of `M`, each message decoded once and given to `handler`.
pub fn consume<M: Inbound>(name: &str, handler: impl Handle<M>) -> Consumes {
    let spec = M::BINDINGS.iter().fold(QueueSpec::new(name), |spec, (kind, t)| spec.bind(kind.exchange(), t));
    Consumes { spec, handler: Arc::new(Decoded { handler, messages: std::marker::PhantomData }) }
}

impl Consumes {
    /// See [`QueueSpec::single_active_consumer`].
    pub fn single_active_consumer(mut self) -> Self {
        self.spec = self.spec.single_active_consumer();
        self
    }

    /// See [`QueueSpec::shard`].
    pub fn shard(mut self, shard: &str) -> Self {
        self.spec = self.spec.shard(shard);
        self
    }

    /// See [`QueueSpec::one_at_a_time`].
    pub fn one_at_a_time(mut self) -> Self {
        self.spec = self.spec.one_at_a_time();
        self
    }
}

#[derive(Insertable)]
#[diesel(table_name = inbox)]
struct InboxRow<'a> {
    consumer: &'a str,
    message_id: String,
    message_type: &'a str,
    correlation_id: &'a str,
    received_at: i64,
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Handler(HandlerError),
    #[error("already applied")]
    Duplicate,
    #[error("crash injected before commit")]
    Crashed,
    #[error("stopped while waiting for the database")]
    Stopped,
}

impl ApplyError {
    /// The database error behind this failure, if it is one.
    fn query_error(&self) -> Option<&diesel::result::Error> {
        match self {
            Self::Db(DbError::Query(e)) => Some(e),
            Self::Handler(HandlerError::Transient(e)) => e.downcast_ref(),
            _ => None,
        }
    }
}

impl From<diesel::result::Error> for ApplyError {
    fn from(e: diesel::result::Error) -> Self {
        if is_unique_violation(&e) { Self::Duplicate } else { Self::Db(e.into()) }
    }
}

/// A message a consumer applied, and how long its handler took.
#[derive(Debug)]
struct Handled {
    message_type: String,
    took: Duration,
}

/// Applies `messages` in one transaction (the caller opened it). Returns those that were new.
fn apply(
    conn: &mut DbConnection,
    consumer: &str,
    producer: &str,
    handler: &dyn Handler,
    messages: &[&Envelope],
) -> Result<Vec<Handled>, ApplyError> {
    // Recording the messages and learning which are new is one statement, its
    // conflicts found through the primary key: a lookup by `message_id IN
    // (...)` first let PostgreSQL's generic plan scan every row of the
    // consumer (the inbox keeps days of them), slower with every message.
    // A row a concurrent consumer recorded first (committed) is skipped here.
    let now = crate::now_micros();
    let mut batch_ids = HashSet::with_capacity(messages.len());
    let rows: Vec<InboxRow> = messages
        .iter()
        .filter(|m| batch_ids.insert(m.message_id))
        .map(|m| InboxRow {
            consumer,
            message_id: m.message_id.to_string(),
            message_type: &m.message_type,
            correlation_id: &m.correlation_id,
            received_at: now,
        })
        .collect();
    let mut recorded: HashSet<String> = match conn {
        DbConnection::Postgres(c) => diesel::insert_into(inbox::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .returning(inbox::message_id)
            .get_results::<String>(c)?
            .into_iter()
            .collect(),
        // In process, a statement per row costs no round trip.
        DbConnection::Sqlite(c) => {
            let mut recorded = HashSet::with_capacity(rows.len());
            for row in &rows {
                if diesel::insert_into(inbox::table).values(row).on_conflict_do_nothing().execute(c)? == 1 {
                    recorded.insert(row.message_id.clone());
                }
            }
            recorded
        }
    };
    let fresh: Vec<&Envelope> =
        messages.iter().copied().filter(|m| recorded.remove(&m.message_id.to_string())).collect();
    if fresh.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Emitter::new(producer);
    let mut handled = Vec::with_capacity(fresh.len());
    for message in &fresh {
        // Its handling is a span of the trace the message came with.
        let (trace, parent_id) = TraceContext::continuing(message.traceparent.as_deref());
        let _span = tracing::info_span!(
            "handle",
            service = producer,
            queue = consumer,
            message_id = %message.message_id,
            correlation_id = %message.correlation_id,
            r#type = %message.message_type,
            trace_id = %trace.trace_hex(),
            span_id = %trace.span_hex(),
            parent_id,
        )
        .entered();
        let started = Instant::now();
        let emitter = tracecontext::on_thread(Some(trace), || {
            let mut emitter = Emitter::caused_by(producer, message);
            handler.handle(conn, message, &mut emitter).map(|()| emitter)
        });
        out.absorb(emitter.map_err(ApplyError::Handler)?);
        handled.push(Handled { message_type: message.message_type.clone(), took: started.elapsed() });
    }
    out.flush(conn)?;
    Ok(handled)
}

/// Consumes one queue through the inbox.
pub struct Consumer {
    bus: Bus,
    spec: QueueSpec,
    handler: Arc<dyn Handler>,
    health: ComponentHealth,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("queue", &self.spec.name).finish()
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the consumer was cancelled by the broker")]
    Cancelled,
    #[error("the broker refused a republished message (nack)")]
    Nacked,
    #[error("crash injected after commit")]
    Crashed,
    #[error("stopped while waiting for the database")]
    Stopped,
    /// The connection is gone without the consumer being told, or the broker
    /// did not answer an acknowledgement or a publish in time.
    #[error("broker: {0}")]
    Silent(&'static str),
}

/// How long an acknowledgement or a republish (with its confirm) may take
/// before the session is given up and connected again.
const BROKER_ANSWER: Duration = Duration::from_secs(30);

/// How often an idle consumer checks that its connection is still there (a
/// connection can die without its consumer stream ending).
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// `operation`, or a [`SessionError::Silent`] after [`BROKER_ANSWER`].
async fn answered<T, F>(operation: F) -> Result<T, SessionError>
where
    F: std::future::Future<Output = Result<T, lapin::Error>>,
{
    match tokio::time::timeout(BROKER_ANSWER, operation).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(SessionError::Silent("no answer in time")),
    }
}

impl SessionEnd for SessionError {
    fn is_crash(&self) -> bool {
        matches!(self, Self::Crashed)
    }
}

/// What becomes of a delivery that could not be applied, with its error.
#[derive(Debug)]
enum Failure {
    /// To its retry tier, or parked once it has used its attempts.
    Retry(String),
    /// To the dead-letter queue at once: it can never succeed.
    Park(String),
}

/// Did the transaction lose to a concurrent one (try again), rather than fail?
fn is_conflict(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => {
            let message = info.message();
            message.contains("deadlock detected") || message.contains("database is locked")
        }
        _ => false,
    }
}

/// The delivery's envelope, in the trace its `traceparent` header names (the carrier across the broker).
fn parse(delivery: &Delivery) -> Result<Envelope, String> {
    let mut envelope = Envelope::from_json(&delivery.data).map_err(|e| e.to_string())?;
    if let Some(traceparent) = header_text(delivery, tracecontext::HEADER) {
        envelope.traceparent = Some(traceparent);
    }
    Ok(envelope)
}

fn header<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a AMQPValue> {
    delivery.properties.headers().as_ref()?.inner().get(name)
}

fn header_u32(delivery: &Delivery, name: &str) -> Option<u32> {
    match header(delivery, name)? {
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
        _ => None,
    }
}

fn header_text(delivery: &Delivery, name: &str) -> Option<String> {
    match header(delivery, name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

impl Consumer {
    /// The consumer counts as down (service not ready) from here until its queue is declared and consumed.
    pub fn new(bus: Bus, spec: QueueSpec, handler: Arc<dyn Handler>) -> Self {
        let health = bus.metrics.component(&format!("consumer:{}", spec.name));
        Self { bus, spec, handler, health, shutdown: CancellationToken::new() }
    }

    /// Runs until `shutdown`, reconnecting by itself.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Crashed> {
        self.shutdown = shutdown.clone();
        let component = format!("consumer {}", self.spec.name);
        amqp::supervise(&component, &self.health, &shutdown, || self.session(&shutdown)).await
    }

    async fn session(&self, shutdown: &CancellationToken) -> Result<(), SessionError> {
        let bus = &self.bus;
        let conn = amqp::connect(&bus.amqp_url, &format!("{}.{}", bus.producer, self.spec.name)).await?;
        let ch = conn.create_channel().await?;
        topology::declare_exchanges(&ch, &bus.config).await?;
        topology::declare_queue(&ch, &self.spec, &bus.config).await?;
        ch.basic_qos(bus.config.prefetch, BasicQosOptions::default()).await?;
        let republish = conn.create_channel().await?;
        republish.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut deliveries = ch
            .basic_consume(
                self.spec.name.as_str().into(),
                ShortString::from(format!("{}-{}", bus.producer, uuid::Uuid::now_v7())),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.health.set(true);
        tracing::info!(queue = %self.spec.name, "consumer connected");
        self.count_dead_letters(&republish).await?;

        let max_batch = if self.spec.one_at_a_time { 1 } else { bus.config.consumer_batch.max(1) };
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = conn.close(200, "shutdown".into()).await;
                    return Ok(());
                }
                next = deliveries.next() => next,
                () = tokio::time::sleep(WATCH_EVERY) => {
                    if !conn.status().connected() || !ch.status().connected() {
                        return Err(SessionError::Silent("the connection is gone"));
                    }
                    // Idle: operators may have replayed or discarded dead letters meanwhile.
                    self.count_dead_letters(&republish).await?;
                    continue;
                }
            };
            let Some(first) = first else {
                return Err(SessionError::Cancelled);
            };
            let mut batch = vec![first?];
            while batch.len() < max_batch {
                match deliveries.next().now_or_never() {
                    Some(Some(delivery)) => batch.push(delivery?),
                    _ => break,
                }
            }
            if let Err(err) = self.process(&republish, batch).await {
                if matches!(err, SessionError::Crashed) {
                    // As if the process died here: committed, not acknowledged.
                    let _ = conn.close(320, "crash injected".into()).await;
                }
                return Err(err);
            }
        }
    }

    async fn process(&self, republish: &Channel, batch: Vec<Delivery>) -> Result<(), SessionError> {
        let parsed: Vec<Result<Envelope, String>> = batch.iter().map(parse).collect();
        if parsed.iter().all(Result::is_ok) {
            let envelopes: Vec<Envelope> = parsed.iter().flatten().cloned().collect();
            match self.apply_waiting(envelopes).await {
                Ok(handled) => {
                    self.after_commit()?;
                    self.record(&handled, batch.len() - handled.len());
                    if let Some(last) = batch.last() {
                        answered(last.acker.ack(BasicAckOptions { multiple: true })).await?;
                    }
                    return Ok(());
                }
                Err(ApplyError::Crashed) => return Err(SessionError::Crashed),
                Err(ApplyError::Stopped) => return Err(SessionError::Stopped),
                Err(err) if batch.len() > 1 => {
                    tracing::debug!(queue = %self.spec.name, error = %err, "batch failed, applying one by one");
                }
                Err(_) => {}
            }
        }
        for (delivery, envelope) in batch.iter().zip(parsed) {
            self.process_one(republish, delivery, envelope).await?;
        }
        Ok(())
    }

    async fn process_one(
        &self,
        republish: &Channel,
        delivery: &Delivery,
        envelope: Result<Envelope, String>,
    ) -> Result<(), SessionError> {
        let ids = envelope.as_ref().ok().map(RetryRecord::of);
        let failure = match envelope {
            Err(parse_error) => Some(Failure::Park(parse_error)),
            Ok(envelope) => match self.apply_waiting(vec![envelope]).await {
                Ok(handled) => {
                    self.after_commit()?;
                    self.record(&handled, 0);
                    None
                }
                Err(ApplyError::Duplicate) => {
                    self.record(&[], 1);
                    None
                }
                Err(ApplyError::Crashed) => return Err(SessionError::Crashed),
                Err(ApplyError::Stopped) => return Err(SessionError::Stopped),
                Err(ApplyError::Handler(HandlerError::Permanent(e))) => Some(Failure::Park(format!("{e:#}"))),
                Err(ApplyError::Handler(HandlerError::Transient(e))) => {
                    Some(Failure::Retry(format!("{e:#}")))
                }
                Err(ApplyError::Db(e)) => Some(Failure::Retry(e.to_string())),
            },
        };
        if let Some(failure) = failure {
            let retry = self.retry_or_park(republish, delivery, failure).await?;
            if let (Some(record), Some((attempt, error, delay))) = (ids, retry) {
                self.note_retry(record.at(attempt, error, delay)).await;
            }
        }
        answered(delivery.acker.ack(BasicAckOptions::default())).await?;
        Ok(())
    }

    /// Records where a message sent to a retry tier stands, for its trace.
    /// Best effort: a database that fails here costs the trace a detail,
    /// never the message an attempt.
    async fn note_retry(&self, record: RetryRecord) {
        let consumer = self.spec.name.clone();
        let noted = self
            .bus
            .db
            .write(move |c| {
                use crate::schema::inbox_retries::dsl as r;
                diesel::delete(
                    r::inbox_retries
                        .filter(r::consumer.eq(&consumer))
                        .filter(r::message_id.eq(&record.message_id)),
                )
                .execute(c)?;
                diesel::insert_into(r::inbox_retries)
                    .values((
                        r::consumer.eq(&consumer),
                        r::message_id.eq(&record.message_id),
                        r::message_type.eq(&record.message_type),
                        r::correlation_id.eq(&record.correlation_id),
                        r::attempt.eq(record.attempt),
                        r::error.eq(&record.error),
                        r::retry_at.eq(record.retry_at),
                    ))
                    .execute(c)?;
                Ok::<_, DbError>(())
            })
            .await;
        if let Err(e) = noted {
            tracing::warn!(queue = %self.spec.name, error = %e, "a retry went unrecorded (its trace shows it published)");
        }
    }

    /// Applies `envelopes`, waiting out the database: when it does not answer
    /// (an outage) or the transaction lost a conflict with a concurrent one
    /// (deadlock, serialization failure, busy), that is not the messages'
    /// fault. They are applied again in place, in the same order, after a
    /// back-off, without spending an attempt; the consumer reports itself not
    /// ready for as long as the database is down.
    async fn apply_waiting(&self, envelopes: Vec<Envelope>) -> Result<Vec<Handled>, ApplyError> {
        let mut backoff = amqp::Backoff::default();
        loop {
            let result = self.apply(envelopes.clone()).await;
            let Err(err) = &result else { return result };
            let conflict = err.query_error().is_some_and(is_conflict);
            let database_down = !conflict && self.database_is_down(err).await;
            if !conflict && !database_down {
                return result;
            }
            let delay = backoff.next_delay();
            if database_down {
                self.health.set(false);
                tracing::warn!(queue = %self.spec.name, error = %err, retry_in_ms = delay.as_millis() as u64, "database unavailable: waiting, the messages keep their attempts");
            } else {
                tracing::info!(queue = %self.spec.name, error = %err, "transaction conflict: applying again");
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(ApplyError::Stopped),
                _ = tokio::time::sleep(delay) => {}
            }
            if database_down && self.bus.db.ping().await.is_ok() {
                self.health.set(true);
            }
        }
    }

    /// Did `err` come from the database being unreachable rather than from the messages?
    async fn database_is_down(&self, err: &ApplyError) -> bool {
        match err {
            ApplyError::Db(DbError::Pool(_) | DbError::Connection(_)) => true,
            _ if err.query_error().is_some() => self.bus.db.ping().await.is_err(),
            _ => false,
        }
    }

    async fn apply(&self, envelopes: Vec<Envelope>) -> Result<Vec<Handled>, ApplyError> {
        let consumer = self.spec.name.clone();
        let producer = self.bus.producer.clone();
        let handler = self.handler.clone();
        let faults = self.bus.faults.clone();
        self.bus
            .db
            .write(move |conn| {
                if let Some(how) = faults.fails(&consumer) {
                    let bug = anyhow::anyhow!("a bug on purpose: {consumer} fails every message");
                    return Err(ApplyError::Handler(match how {
                        Failing::Permanently => HandlerError::Permanent(bug),
                        Failing::Transiently => HandlerError::Transient(bug),
                    }));
                }
                let refs: Vec<&Envelope> = envelopes.iter().collect();
                let applied = apply(conn, &consumer, &producer, handler.as_ref(), &refs)?;
                if faults.consumer_should_crash_before_commit() {
                    return Err(ApplyError::Crashed);
                }
                Ok(applied)
            })
            .await
    }

    /// Counts what a committed transaction applied, with each handler's time, and the duplicates it skipped.
    fn record(&self, handled: &[Handled], duplicates: usize) {
        let metrics = &self.bus.metrics;
        let queue = self.spec.name.as_str();
        metrics.add("bourse_messages_handled_total", &[("queue", queue)], handled.len() as u64);
        metrics.add("bourse_messages_duplicate_total", &[("queue", queue)], duplicates as u64);
        for h in handled {
            let labels = [("queue", queue), ("type", h.message_type.as_str())];
            metrics.observe("bourse_message_handler_duration_seconds", &labels, h.took);
        }
    }

    /// Counts the messages parked in the queue's dead-letter queue (a passive declare).
    async fn count_dead_letters(&self, ch: &Channel) -> Result<(), SessionError> {
        let options = QueueDeclareOptions { passive: true, ..Default::default() };
        let dlq = ch.queue_declare(self.spec.dlq().as_str().into(), options, FieldTable::default()).await?;
        let depth = i64::from(dlq.message_count());
        self.bus.metrics.set_gauge("bourse_dead_letter_queue_depth", &[("queue", &self.spec.name)], depth);
        Ok(())
    }

    fn after_commit(&self) -> Result<(), SessionError> {
        if self.bus.faults.consumer_should_crash() { Err(SessionError::Crashed) } else { Ok(()) }
    }

    /// Republishes a failed delivery to its retry tier, or parks it in the
    /// dead-letter queue; confirmed before the caller acknowledges the original.
    /// Sent to a retry tier: its next attempt, the error and the tier's delay.
    async fn retry_or_park(
        &self,
        republish: &Channel,
        delivery: &Delivery,
        failure: Failure,
    ) -> Result<Option<(u32, String, u64)>, SessionError> {
        let config = &self.bus.config;
        let attempt = header_u32(delivery, ATTEMPT_HEADER).unwrap_or(1);
        let (error, park) = match failure {
            Failure::Park(error) => (error, true),
            Failure::Retry(error) => (error, attempt >= config.max_attempts),
        };
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        if header_text(delivery, ORIGINAL_EXCHANGE_HEADER).is_none() {
            headers.insert(
                ORIGINAL_EXCHANGE_HEADER.into(),
                AMQPValue::LongString(delivery.exchange.as_str().into()),
            );
            headers.insert(
                ORIGINAL_ROUTING_KEY_HEADER.into(),
                AMQPValue::LongString(delivery.routing_key.as_str().into()),
            );
        }
        let error: String = error.chars().take(2_000).collect();
        headers.insert(ERROR_HEADER.into(), AMQPValue::LongString(error.as_str().into()));
        let delay = config.retry_delay_ms(attempt);
        let target = if park {
            headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
            self.spec.dlq()
        } else {
            headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt + 1));
            self.spec.retry_queue(delay)
        };
        let properties: BasicProperties = delivery.properties.clone().with_headers(headers);
        let confirm = answered(async {
            republish
                .basic_publish(
                    "".into(),
                    target.as_str().into(),
                    BasicPublishOptions::default(),
                    &delivery.data,
                    properties,
                )
                .await?
                .await
        })
        .await?;
        if confirm.is_nack() {
            return Err(SessionError::Nacked);
        }
        let queue = self.spec.name.as_str();
        if park {
            tracing::error!(queue, attempt, error = %error, "message parked in the dead-letter queue");
            self.bus.metrics.add("bourse_messages_dead_lettered_total", &[("queue", queue)], 1);
            self.count_dead_letters(republish).await?;
            Ok(None)
        } else {
            tracing::warn!(queue, attempt, error = %error, "message will be retried");
            self.bus.metrics.add("bourse_messages_retried_total", &[("queue", queue)], 1);
            Ok(Some((attempt + 1, error, delay)))
        }
    }
}

/// A message in a retry tier, as its consumer records it (`inbox_retries`).
struct RetryRecord {
    message_id: String,
    message_type: String,
    correlation_id: String,
    attempt: i32,
    error: String,
    /// When the tier hands it back, in microseconds.
    retry_at: i64,
}

impl RetryRecord {
    fn of(envelope: &Envelope) -> Self {
        Self {
            message_id: envelope.message_id.to_string(),
            message_type: envelope.message_type.clone(),
            correlation_id: envelope.correlation_id.clone(),
            attempt: 0,
            error: String::new(),
            retry_at: 0,
        }
    }

    fn at(self, attempt: u32, error: String, delay_ms: u64) -> Self {
        let delay = i64::try_from(delay_ms.saturating_mul(1_000)).unwrap_or(i64::MAX);
        Self {
            attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
            error,
            retry_at: crate::now_micros().saturating_add(delay),
            ..self
        }
    }
}
