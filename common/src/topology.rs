//! The RabbitMQ topology, declared idempotently by every service at start-up
//! and again after every reconnect:
//!
//! - `bourse.events` (topic, durable): domain events, routing key = event type;
//! - `bourse.commands` (direct, durable): commands, routing key = command type;
//! - `bourse.market` (topic, transient): quotes, candles and book deltas;
//! - `bourse.event-log` (a stream): every event and command again, retained, so
//!   that the log can be read from the first message, an offset or a time. It is
//!   bound to `bourse.events` (`#`) and to `bourse.command-log`, where the relay
//!   publishes a copy of each command: the stream is *not* bound to
//!   `bourse.commands`, so that a command no owner queue takes is unroutable and
//!   comes back to its (mandatory) publisher instead of being kept by the log alone;
//! - per consumer: `<queue>` (quorum), `<queue>.retry.<ms>` (one per delay
//!   tier: a TTL queue that dead-letters back into `<queue>`), and
//!   `<queue>.dlq` (parked messages with their last error).
//!
//! Retries use TTL tiers, not the delayed-message plugin. A quorum queue's
//! `x-delivery-limit` also parks a message that keeps killing its consumer
//! before it can be retried, so no message is ever redelivered forever.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::MessagingConfig;

pub const EVENTS: &str = "bourse.events";
pub const COMMANDS: &str = "bourse.commands";
pub const MARKET: &str = "bourse.market";
pub const EVENT_LOG: &str = "bourse.event-log";
/// Where the relay publishes the event log's copy of each command (topic, durable).
pub const COMMAND_LOG: &str = "bourse.command-log";

/// Header: the delivery number of a retried message (the first delivery is 1).
pub const ATTEMPT_HEADER: &str = "x-bourse-attempt";
/// Header: the error of the last failed attempt.
pub const ERROR_HEADER: &str = "x-bourse-error";
/// Headers: where a retried or parked message was first published.
pub const ORIGINAL_EXCHANGE_HEADER: &str = "x-bourse-original-exchange";
pub const ORIGINAL_ROUTING_KEY_HEADER: &str = "x-bourse-original-routing-key";
/// Deliveries of one message after which the broker itself parks it, whatever
/// the consumer does: the safety net against a message that crashes its consumer.
const BROKER_DELIVERY_LIMIT: i64 = 20;

/// A binding of a consumer queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Binding {
    pub exchange: String,
    /// A topic pattern on `bourse.events` (`*` one word, `#` any number).
    pub routing_key: String,
}

impl Binding {
    /// Does a message published to `exchange` with `routing_key` reach this binding's queue?
    pub fn takes(&self, exchange: &str, routing_key: &str) -> bool {
        self.exchange == exchange && topic_matches(&self.routing_key, routing_key)
    }
}

/// AMQP topic matching: words split on `.`, `*` one word, `#` zero or more.
/// (A direct exchange's keys have no wildcards: they match themselves.)
fn topic_matches(pattern: &str, key: &str) -> bool {
    fn words(p: &[&str], k: &[&str]) -> bool {
        match (p.split_first(), k.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => words(rest, k) || (!k.is_empty() && words(p, &k[1..])),
            (Some((&"*", rest)), Some((_, k_rest))) => words(rest, k_rest),
            (Some((w, rest)), Some((kw, k_rest))) => w == kw && words(rest, k_rest),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    words(&p, &k)
}

/// A durable consumer queue, `<service>.<purpose>`, and what it listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub bindings: Vec<Binding>,
    /// One active consumer at a time (the others stand by): strict order,
    /// e.g. one matching engine per market.
    pub single_active_consumer: bool,
    /// Each delivery in a transaction of its own, never a batch: for handlers
    /// with an effect outside the database (an e-mail sent), which a batch
    /// rolled back by a later message would repeat.
    pub one_at_a_time: bool,
}

impl QueueSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), bindings: Vec::new(), single_active_consumer: false, one_at_a_time: false }
    }

    pub fn bind(mut self, exchange: &str, routing_key: &str) -> Self {
        self.bindings.push(Binding { exchange: exchange.into(), routing_key: routing_key.into() });
        self
    }

    /// Listens to these event types (topic patterns allowed).
    pub fn events(self, types: &[&str]) -> Self {
        types.iter().fold(self, |spec, t| spec.bind(EVENTS, t))
    }

    /// Receives these command types.
    pub fn commands(self, types: &[&str]) -> Self {
        types.iter().fold(self, |spec, t| spec.bind(COMMANDS, t))
    }

    pub fn single_active_consumer(mut self) -> Self {
        self.single_active_consumer = true;
        self
    }

    /// Takes the messages of one shard of its owner (see
    /// [`Message::shard`](crate::messages::Message::shard)): each binding `t` becomes `t.<shard>`.
    pub fn shard(mut self, shard: &str) -> Self {
        for binding in &mut self.bindings {
            binding.routing_key = format!("{}.{shard}", binding.routing_key);
        }
        self
    }

    pub fn one_at_a_time(mut self) -> Self {
        self.one_at_a_time = true;
        self
    }

    pub fn dlq(&self) -> String {
        dlq_name(&self.name)
    }

    pub fn retry_queue(&self, delay_ms: u64) -> String {
        format!("{}.retry.{delay_ms}ms", self.name)
    }
}

pub fn dlq_name(queue: &str) -> String {
    format!("{queue}.dlq")
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in pairs {
        table.insert(ShortString::from(*k), v.clone());
    }
    table
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

/// Declares the exchanges and the event log stream.
pub async fn declare_exchanges(ch: &Channel, messaging: &MessagingConfig) -> lapin::Result<()> {
    let durable_exchange = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(EVENTS.into(), ExchangeKind::Topic, durable_exchange, FieldTable::default()).await?;
    ch.exchange_declare(COMMANDS.into(), ExchangeKind::Direct, durable_exchange, FieldTable::default())
        .await?;
    // Market data is recomputable: a transient exchange, and publishers never wait on it.
    ch.exchange_declare(
        MARKET.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        EVENT_LOG.into(),
        durable(),
        args(&[("x-queue-type", text("stream")), ("x-max-age", text(&messaging.event_log_max_age))]),
    )
    .await?;
    ch.exchange_declare(COMMAND_LOG.into(), ExchangeKind::Topic, durable_exchange, FieldTable::default())
        .await?;
    for exchange in [EVENTS, COMMAND_LOG] {
        ch.queue_bind(
            EVENT_LOG.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// Removes the binding of the event log to `bourse.commands` for a command
/// type, which earlier versions made: with it, every command was routed (to
/// the log at least) and a command without its owner's queue was silently
/// kept only there. Unbinding what is not bound is a no-op.
pub async fn unlog_command_route(ch: &Channel, routing_key: &str) -> lapin::Result<()> {
    ch.queue_unbind(EVENT_LOG.into(), COMMANDS.into(), routing_key.into(), FieldTable::default()).await
}

/// Declares a consumer queue with its retry tiers and dead-letter queue.
pub async fn declare_queue(ch: &Channel, spec: &QueueSpec, messaging: &MessagingConfig) -> lapin::Result<()> {
    let mut main_args = vec![
        ("x-queue-type", text("quorum")),
        ("x-delivery-limit", AMQPValue::LongLongInt(BROKER_DELIVERY_LIMIT)),
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text(&spec.dlq())),
    ];
    if spec.single_active_consumer {
        main_args.push(("x-single-active-consumer", AMQPValue::Boolean(true)));
    }
    ch.queue_declare(spec.name.as_str().into(), durable(), args(&main_args)).await?;
    ch.queue_declare(spec.dlq().into(), durable(), args(&[("x-queue-type", text("quorum"))])).await?;
    let mut delays = messaging.retry_delays_ms.clone();
    delays.sort_unstable();
    delays.dedup();
    for delay in delays {
        ch.queue_declare(
            spec.retry_queue(delay).into(),
            durable(),
            args(&[
                ("x-message-ttl", AMQPValue::LongLongInt(delay as i64)),
                ("x-dead-letter-exchange", text("")),
                ("x-dead-letter-routing-key", text(&spec.name)),
            ]),
        )
        .await?;
    }
    for binding in &spec.bindings {
        ch.queue_bind(
            spec.name.as_str().into(),
            binding.exchange.as_str().into(),
            binding.routing_key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topic_patterns_match_as_rabbitmq_does() {
        for (pattern, key, expected) in [
            ("funds.reserved", "funds.reserved", true),
            ("funds.reserved", "funds.released", false),
            ("funds.*", "funds.reserved", true),
            ("funds.*", "funds", false),
            ("funds.*", "funds.reserved.again", false),
            ("#", "order.status-changed", true),
            ("trade.#", "trade", true),
            ("trade.#", "trade.executed.ETH-USDT", true),
            ("#.executed", "trade.executed", true),
            ("*.executed", "executed", false),
        ] {
            assert_eq!(topic_matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }
}
