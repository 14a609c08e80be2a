//! Dead letters: the messages parked in `<queue>.dlq`, with the error and the
//! attempt count they were parked with. An operator lists them, fixes the
//! cause, and replays them into their queue (the inbox still guarantees that a
//! message already applied is not applied twice).
//!
//! That guarantee lasts as long as the inbox remembers the message id: the
//! service's `messaging.inbox_retention_hours` (see [`retention`](crate::retention)).
//! A replay therefore refuses a message that is (nearly) that old — it stays
//! parked, and the refusal says why — unless it is forced.

use std::time::Duration;

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

impl DeadLetter {
    fn of(queue: &str, delivery: &lapin::message::Delivery) -> Self {
        let props = &delivery.properties;
        Self {
            queue: queue.to_string(),
            error: as_text(header(props, ERROR_HEADER)),
            attempts: as_u32(header(props, ATTEMPT_HEADER)),
            original_routing_key: as_text(header(props, ORIGINAL_ROUTING_KEY_HEADER)),
            envelope: Envelope::from_json(&delivery.data).ok(),
            raw: String::from_utf8_lossy(&delivery.data).into_owned(),
        }
    }

    fn message_id(&self) -> Option<uuid::Uuid> {
        self.envelope.as_ref().map(|e| e.message_id)
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
        out.push(DeadLetter::of(queue, &message.delivery));
    }
    // Closing the channel without acknowledging puts every message back, in order.
    let _ = conn.close(200, "listed".into()).await;
    Ok(out)
}

/// How many dead letters each of `queues` holds; `None` for a queue not
/// declared (its service never started on this broker).
pub async fn counts(amqp_url: &str, queues: &[&str]) -> anyhow::Result<Vec<(String, Option<u32>)>> {
    let conn = amqp::connect(amqp_url, "bourse.dead-letters").await?;
    let mut out = Vec::new();
    for queue in queues {
        // A passive declare of a missing queue closes its channel: one channel each.
        let ch = conn.create_channel().await?;
        let options = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let declared = ch.queue_declare(dlq_name(queue).as_str().into(), options, Default::default()).await;
        out.push((queue.to_string(), declared.ok().map(|q| q.message_count())));
        let _ = ch.close(200, "counted".into()).await;
    }
    let _ = conn.close(200, "counted".into()).await;
    Ok(out)
}

/// How a replay treats dead letters older than the inbox window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayPolicy {
    /// The consuming service's `messaging.inbox_retention_hours`.
    pub inbox_retention: Duration,
    /// Replay old messages too: the operator checked that they were not applied.
    pub force: bool,
}

impl ReplayPolicy {
    /// Replays only what the inbox still recognises if it was applied already.
    pub fn within(inbox_retention: Duration) -> Self {
        Self { inbox_retention, force: false }
    }

    /// Replays whatever its age.
    pub fn forced() -> Self {
        Self { inbox_retention: Duration::ZERO, force: true }
    }

    /// A message must be younger than this to be replayed: the window less the
    /// time the replayed copy may need to reach its consumer (an hour, or half
    /// the window when it is shorter than two hours).
    pub fn max_age(&self) -> Duration {
        let margin = REPLAY_MARGIN.min(self.inbox_retention / 2);
        self.inbox_retention.saturating_sub(margin)
    }

    /// Why `envelope` may not be replayed now, if so.
    fn refusal(&self, envelope: &Envelope, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        if self.force {
            return None;
        }
        let age = (now - envelope.occurred_at).to_std().unwrap_or_default();
        (age >= self.max_age()).then_some(age)
    }
}

/// Time a replayed message is given to reach its consumer while the inbox still remembers it.
const REPLAY_MARGIN: Duration = Duration::from_secs(3600);

/// A dead letter a replay left parked: it is older than the inbox window.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Refused {
    pub message_id: uuid::Uuid,
    pub message_type: String,
    pub correlation_id: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// Whole hours since it occurred.
    pub age_hours: u64,
    /// Hours the inbox remembers a message id.
    pub inbox_retention_hours: u64,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused {} {} (saga {}): it occurred {} h ago, and the inbox remembers message ids for {} h, \
             so a copy applied before would no longer be recognised and would be applied twice; \
             it stays parked (replay with force once you know it was never applied)",
            self.message_type,
            self.message_id,
            self.correlation_id,
            self.age_hours,
            self.inbox_retention_hours
        )
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Moved back into the queue.
    pub replayed: usize,
    /// Left parked: older than the inbox window.
    pub refused: Vec<Refused>,
}

/// Moves up to `max` dead letters back into `queue` for a fresh round of
/// attempts; each is confirmed in `queue` before it leaves the dead-letter
/// queue. A letter older than the inbox window (see [`ReplayPolicy`]) is left
/// parked and reported in [`Replayed::refused`] unless `policy` forces it. A
/// body that is not an envelope is replayed (it has no id to dedupe on; its
/// consumer parks it again).
pub async fn replay(
    amqp_url: &str,
    queue: &str,
    max: usize,
    policy: ReplayPolicy,
) -> anyhow::Result<Replayed> {
    replay_where(amqp_url, queue, max, policy, |_| true).await
}

/// Replays the dead letter of `queue` whose message id is `id` as
/// [`replay`] does; `None`: no such letter is parked there.
pub async fn replay_one(
    amqp_url: &str,
    queue: &str,
    id: uuid::Uuid,
    policy: ReplayPolicy,
) -> anyhow::Result<Option<Replayed>> {
    let outcome = replay_where(amqp_url, queue, 1, policy, |d| d.message_id() == Some(id)).await?;
    Ok((outcome.replayed + outcome.refused.len() > 0).then_some(outcome))
}

/// Removes the dead letter of `queue` whose message id is `id` for good,
/// and returns it; `None`: no such letter is parked there.
pub async fn discard(amqp_url: &str, queue: &str, id: uuid::Uuid) -> anyhow::Result<Option<DeadLetter>> {
    let conn = amqp::connect(amqp_url, "bourse.dead-letters").await?;
    let ch = conn.create_channel().await?;
    let dlq = dlq_name(queue);
    let mut found = None;
    while let Some(message) = ch.basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false }).await? {
        let letter = DeadLetter::of(queue, &message.delivery);
        if letter.message_id() == Some(id) {
            message.delivery.acker.ack(BasicAckOptions::default()).await?;
            found = Some(letter);
            break;
        }
    }
    // The others, unacknowledged, go back when the channel closes.
    let _ = conn.close(200, "discarded".into()).await;
    Ok(found)
}

/// Replays up to `max` of the dead letters `pick` chooses, the others left parked.
async fn replay_where(
    amqp_url: &str,
    queue: &str,
    max: usize,
    policy: ReplayPolicy,
    pick: impl Fn(&DeadLetter) -> bool,
) -> anyhow::Result<Replayed> {
    let conn = amqp::connect(amqp_url, "bourse.dead-letters").await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let dlq = dlq_name(queue);
    let mut outcome = Replayed::default();
    let now = chrono::Utc::now();
    while outcome.replayed + outcome.refused.len() < max {
        let Some(message) = ch.basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false }).await?
        else {
            break;
        };
        let delivery = &message.delivery;
        if !pick(&DeadLetter::of(queue, delivery)) {
            // Left unacknowledged: back into the dead-letter queue when the channel closes.
            continue;
        }
        if let Ok(envelope) = Envelope::from_json(&delivery.data)
            && let Some(age) = policy.refusal(&envelope, now)
        {
            // Left unacknowledged: back into the dead-letter queue when the channel closes.
            outcome.refused.push(Refused {
                message_id: envelope.message_id,
                message_type: envelope.message_type,
                correlation_id: envelope.correlation_id,
                occurred_at: envelope.occurred_at,
                age_hours: age.as_secs() / 3600,
                inbox_retention_hours: policy.inbox_retention.as_secs() / 3600,
            });
            continue;
        }
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
        outcome.replayed += 1;
    }
    let _ = conn.close(200, "replayed".into()).await;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Kind, Message};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Ping {}

    impl Message for Ping {
        const TYPE: &'static str = "test.ping";
        const KIND: Kind = Kind::Event;
    }

    fn aged(hours: i64, now: chrono::DateTime<chrono::Utc>) -> Envelope {
        Envelope::new("t", "saga", &Ping {}, now - chrono::Duration::hours(hours))
    }

    #[test]
    fn a_letter_near_or_past_the_inbox_window_is_refused_unless_forced() {
        let week = ReplayPolicy::within(Duration::from_secs(7 * 24 * 3600));
        let now = chrono::Utc::now();
        assert_eq!(week.refusal(&aged(1, now), now), None);
        assert_eq!(week.refusal(&aged(7 * 24 - 2, now), now), None);
        // Within the last hour of the window: the replayed copy might arrive after the id is forgotten.
        assert!(week.refusal(&aged(7 * 24 - 1, now), now).is_some());
        assert!(week.refusal(&aged(30 * 24, now), now).is_some());
        assert_eq!(ReplayPolicy::forced().refusal(&aged(30 * 24, now), now), None);
        // A short window keeps half of itself.
        assert_eq!(ReplayPolicy::within(Duration::from_secs(3600)).max_age(), Duration::from_secs(1800));
    }
}
