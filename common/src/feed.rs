//! Following events and market data for live feeds (WebSocket): a server-named, exclusive,
//! auto-deleted queue, acknowledged on receipt. What is published while the
//! follower is disconnected is missed — clients re-read a snapshot — so it
//! never holds up the money path. It reconnects by itself.

use std::future::Future;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::amqp::{self, Backoff};
use crate::config::MessagingConfig;
use crate::envelope::Envelope;
use crate::messages::Kind;
use crate::metrics::ComponentHealth;
use crate::topology;

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
    mut on_event: F,
) where
    F: FnMut(Envelope) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let session = async {
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
            let deliveries = ch
                .basic_consume(queue.name().clone(), name.as_str().into(), consume, FieldTable::default())
                .await?;
            Ok::<_, lapin::Error>((conn, deliveries))
        };
        let (conn, mut deliveries) = match session.await {
            Ok(connected) => connected,
            Err(e) => {
                health.set(false);
                let delay = backoff.next_delay();
                tracing::warn!(follower = %name, error = %e, "feed follower cannot connect");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        backoff.reset();
        health.set(true);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = conn.close(200, "shutdown".into()).await;
                    return;
                }
                next = deliveries.next() => next,
            };
            match next {
                Some(Ok(delivery)) => match Envelope::from_json(&delivery.data) {
                    Ok(envelope) => on_event(envelope).await,
                    Err(e) => tracing::warn!(follower = %name, error = %e, "unreadable event skipped"),
                },
                _ => {
                    health.set(false);
                    break; // the connection is gone: reconnect
                }
            }
        }
    }
    health.set(false);
}
