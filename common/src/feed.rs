//! Following events and market data for live feeds (WebSocket): a server-named, exclusive,
//! auto-deleted queue, acknowledged on receipt. What is published while the
//! follower is disconnected is missed — clients re-read a snapshot — so it
//! never holds up the money path. It reconnects by itself. A message the
//! outbox published twice (a relay that died between the broker's confirm
//! and its mark) is passed on once, while it is among the last
//! [`REMEMBERED`] messages.

use std::collections::{HashSet, VecDeque};
use std::future::Future;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::amqp;
use crate::config::MessagingConfig;
use crate::envelope::Envelope;
use crate::messages::Kind;
use crate::metrics::ComponentHealth;
use crate::topology;

/// Why a follower's session ended: it reconnects.
#[derive(Debug, thiserror::Error)]
enum FollowerEnd {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker closed the follower's consumer")]
    Closed,
}

impl amqp::SessionEnd for FollowerEnd {}

/// How many message ids a follower remembers to skip a second copy.
pub const REMEMBERED: usize = 65_536;

/// The ids of the last [`REMEMBERED`] messages passed on.
#[derive(Debug, Default)]
struct Recent {
    ids: HashSet<uuid::Uuid>,
    order: VecDeque<uuid::Uuid>,
}

impl Recent {
    /// Remembers `id`; false if it was remembered already.
    fn first_time(&mut self, id: uuid::Uuid) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }
}

/// Calls `on_event` with every message of `types` (events or market data),
/// in arrival order, until `shutdown`. `health` is up while the follower's
/// queue is bound.
pub async fn follow<F, Fut>(
    amqp_url: String,
    name: String,
    types: Vec<(Kind, &'static str)>,
    messaging: MessagingConfig,
    health: ComponentHealth,
    shutdown: CancellationToken,
    on_event: F,
) where
    F: Fn(Envelope) -> Fut,
    Fut: Future<Output = ()>,
{
    let recent = std::sync::Mutex::new(Recent::default());
    let session = || async {
        let conn = amqp::connect(&amqp_url, &name).await?;
        let ch = conn.create_channel().await?;
        topology::declare_exchanges(&ch, &messaging).await?;
        let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let queue = ch.queue_declare("".into(), options, FieldTable::default()).await?;
        for (kind, t) in &types {
            ch.queue_bind(
                queue.name().clone(),
                kind.exchange().into(),
                (*t).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        let consume = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let mut deliveries = ch
            .basic_consume(queue.name().clone(), name.as_str().into(), consume, FieldTable::default())
            .await?;
        health.set(true);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = conn.close(200, "shutdown".into()).await;
                    return Ok(());
                }
                next = deliveries.next() => next,
            };
            match next {
                Some(Ok(delivery)) => match Envelope::from_json(&delivery.data) {
                    Ok(envelope) => {
                        if crate::lock(&recent).first_time(envelope.message_id) {
                            on_event(envelope).await;
                        }
                    }
                    Err(e) => tracing::warn!(follower = %name, error = %e, "unreadable event skipped"),
                },
                Some(Err(e)) => return Err(FollowerEnd::Broker(e)),
                None => return Err(FollowerEnd::Closed),
            }
        }
    };
    let _ = amqp::supervise(&format!("feed follower {name}"), &health, &shutdown, session).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_copy_is_skipped_while_remembered() {
        let mut recent = Recent::default();
        let first = uuid::Uuid::now_v7();
        assert!(recent.first_time(first));
        assert!(!recent.first_time(first));
        for _ in 0..REMEMBERED {
            assert!(recent.first_time(uuid::Uuid::now_v7()));
        }
        assert_eq!(recent.ids.len(), REMEMBERED);
        assert!(recent.first_time(first), "forgotten once older than the last REMEMBERED");
    }
}
