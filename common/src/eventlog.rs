//! The event log: every event (and every command) is also kept in the
//! `bourse.event-log` stream, so that it can be read again from the first
//! message, from an offset, or from a point in time — the financial log, and
//! the source for replay and saga traces.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};

use crate::amqp;
use crate::envelope::Envelope;
use crate::topology::{COMMAND_LOG, COMMANDS, EVENT_LOG};

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOffset {
    First,
    /// Only what arrives from now on.
    Next,
    At(u64),
    Since(DateTime<Utc>),
}

impl std::str::FromStr for StreamOffset {
    type Err = String;

    /// `first`, `next`, an offset number, or an RFC 3339 time.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "first" => Ok(Self::First),
            "next" => Ok(Self::Next),
            _ => s
                .parse::<u64>()
                .map(Self::At)
                .or_else(|_| DateTime::parse_from_rfc3339(s).map(|t| Self::Since(t.with_timezone(&Utc))))
                .map_err(|_| format!("`{s}` is not first, next, an offset or an RFC 3339 time")),
        }
    }
}

impl StreamOffset {
    pub(crate) fn argument(self) -> AMQPValue {
        match self {
            Self::First => AMQPValue::LongString("first".into()),
            Self::Next => AMQPValue::LongString("next".into()),
            Self::At(offset) => AMQPValue::LongLongInt(offset as i64),
            Self::Since(time) => AMQPValue::Timestamp(time.timestamp().max(0) as u64),
        }
    }
}

/// One entry of the log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoggedMessage {
    pub offset: u64,
    pub exchange: String,
    pub routing_key: String,
    pub envelope: Envelope,
}

/// Reads up to `max` entries from `from`, stopping early once nothing new
/// arrived for `idle`. Entries that are not envelopes are skipped.
pub async fn read(
    amqp_url: &str,
    from: StreamOffset,
    max: usize,
    idle: Duration,
) -> anyhow::Result<Vec<LoggedMessage>> {
    let conn = amqp::connect(amqp_url, "bourse.event-log-reader").await?;
    let ch = conn.create_channel().await?;
    // A stream consumer must have a prefetch and acknowledge.
    ch.basic_qos(500, BasicQosOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), from.argument());
    let mut deliveries =
        ch.basic_consume(EVENT_LOG.into(), "".into(), BasicConsumeOptions::default(), args).await?;
    let mut out = Vec::new();
    while out.len() < max {
        let Ok(next) = tokio::time::timeout(idle, deliveries.next()).await else {
            break;
        };
        let Some(delivery) = next else { break };
        let delivery = delivery?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        out.extend(entry(&delivery));
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(out)
}

/// Publishes a logged message again where it first went, with the same
/// message id: a redelivery, which every consumer's inbox recognises and
/// skips. Confirmed by the broker before it returns; a command that no queue
/// takes is an error (it is published `mandatory`).
///
/// The inbox remembers ids for `messaging.inbox_retention_hours` only: a
/// message older than that is no longer recognised as a redelivery.
pub async fn republish(amqp_url: &str, entry: &LoggedMessage) -> anyhow::Result<()> {
    let conn = amqp::connect(amqp_url, "bourse.event-log-republisher").await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let options = BasicPublishOptions { mandatory: entry.exchange == COMMANDS, ..Default::default() };
    let confirm = ch
        .basic_publish(
            entry.exchange.as_str().into(),
            entry.routing_key.as_str().into(),
            options,
            entry.envelope.to_json().as_bytes(),
            entry.envelope.amqp_properties(),
        )
        .await?
        .await?;
    let _ = conn.close(200, "republished".into()).await;
    anyhow::ensure!(confirm.is_ack(), "the broker refused the republished message");
    anyhow::ensure!(
        confirm.take_message().is_none(),
        "no queue takes {} on {}: the command came back",
        entry.routing_key,
        entry.exchange
    );
    Ok(())
}

/// A stream delivery as an entry of the log; `None` if it is no envelope.
pub(crate) fn entry(delivery: &lapin::message::Delivery) -> Option<LoggedMessage> {
    let offset = match delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-stream-offset")) {
        Some(AMQPValue::LongLongInt(n)) => u64::try_from(*n).unwrap_or(0),
        _ => return None,
    };
    let envelope = Envelope::from_json(&delivery.data).ok()?;
    // A command's log copy came through `bourse.command-log`; it was sent on `bourse.commands`.
    let exchange =
        if delivery.exchange.as_str() == COMMAND_LOG { COMMANDS } else { delivery.exchange.as_str() };
    Some(LoggedMessage {
        offset,
        exchange: exchange.to_string(),
        routing_key: delivery.routing_key.to_string(),
        envelope,
    })
}
