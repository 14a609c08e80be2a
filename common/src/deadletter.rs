//! Dead letters: the messages parked in `<queue>.dlq`, with the error and the
//! attempt count they were parked with. An operator lists them, fixes the
//! cause, and replays them into their queue (the inbox still guarantees that a
//! message already applied is not applied twice).

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;

use crate::amqp;
use crate::envelope::Envelope;
use crate::topology::{ATTEMPT_HEADER, ERROR_HEADER, ORIGINAL_ROUTING_KEY_HEADER, dlq_name};

/// One parked message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub queue: String,
    pub error: Option<String>,
    pub attempts: Option<u32>,
    pub original_routing_key: Option<String>,
    /// `None` when the body is not an envelope (then `raw` holds it).
    pub envelope: Option<Envelope>,
    pub raw: String,
}

fn header(props: &lapin::BasicProperties, name: &str) -> Option<AMQPValue> {
    props.headers().as_ref()?.inner().get(name).cloned()
}

fn as_text(value: Option<AMQPValue>) -> Option<String> {
    match value? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn as_u32(value: Option<AMQPValue>) -> Option<u32> {
    match value? {
        AMQPValue::LongUInt(n) => Some(n),
        AMQPValue::LongInt(n) => u32::try_from(n).ok(),
        AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
        _ => None,
    }
}

/// Up to `max` dead letters of `queue`, left in place.
pub async fn list(amqp_url: &str, queue: &str, max: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let conn = amqp::connect(amqp_url, "bourse.dead-letters").await?;
    let ch = conn.create_channel().await?;
    let dlq = dlq_name(queue);
    let mut out = Vec::new();
    while out.len() < max {
        let Some(message) = ch.basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false }).await?
        else {
            break;
        };
        let props = &message.delivery.properties;
        out.push(DeadLetter {
            queue: queue.to_string(),
            error: as_text(header(props, ERROR_HEADER)),
            attempts: as_u32(header(props, ATTEMPT_HEADER)),
            original_routing_key: as_text(header(props, ORIGINAL_ROUTING_KEY_HEADER)),
            envelope: Envelope::from_json(&message.delivery.data).ok(),
            raw: String::from_utf8_lossy(&message.delivery.data).into_owned(),
        });
    }
    // Closing the channel without acknowledging puts every message back, in order.
    let _ = conn.close(200, "listed".into()).await;
    Ok(out)
}

/// Moves up to `max` dead letters back into `queue` for a fresh round of
/// attempts. Each is confirmed in `queue` before it leaves the dead-letter queue.
pub async fn replay(amqp_url: &str, queue: &str, max: usize) -> anyhow::Result<usize> {
    let conn = amqp::connect(amqp_url, "bourse.dead-letters").await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let dlq = dlq_name(queue);
    let mut replayed = 0;
    while replayed < max {
        let Some(message) = ch.basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false }).await?
        else {
            break;
        };
        let delivery = &message.delivery;
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(1));
        let properties = delivery.properties.clone().with_headers(headers);
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        anyhow::ensure!(confirm.is_ack(), "the broker refused the replayed message");
        delivery.acker.ack(BasicAckOptions::default()).await?;
        replayed += 1;
    }
    let _ = conn.close(200, "replayed".into()).await;
    Ok(replayed)
}
