//! Following events and market data for live feeds (WebSocket): a server-named, exclusive,
//! auto-deleted queue, acknowledged on receipt. What is published while the
//! follower is disconnected is missed — clients re-read a snapshot — so it
//! never holds up the money path. It reconnects by itself.

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
                    Ok(envelope) => on_event(envelope).await,
                    Err(e) => tracing::warn!(follower = %name, error = %e, "unreadable event skipped"),
                },
                Some(Err(e)) => return Err(FollowerEnd::Broker(e)),
                None => return Err(FollowerEnd::Closed),
            }
        }
    };
    let _ = amqp::supervise(&format!("feed follower {name}"), &health, &shutdown, session).await;
}
