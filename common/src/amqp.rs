//! Broker connections. lapin does not reconnect dependably by itself, so every
//! long-running component (relay, consumer, feed follower) owns a connection
//! and runs its sessions under the one reconnect loop, [`supervise`].

use std::future::Future;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::bus::Crashed;
use crate::metrics::ComponentHealth;

/// Opens a connection named after its owner (shown in the management UI).
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    Connection::connect(url, ConnectionProperties::default().with_connection_name(name.into())).await
}

/// Exponential back-off between reconnect attempts: 100 ms doubling to 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The delay to wait now; the next one is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// How a session ended with an error: an injected crash stops the component,
/// anything else is reconnected after a back-off.
pub trait SessionEnd: std::fmt::Display {
    fn is_crash(&self) -> bool {
        false
    }
}

impl SessionEnd for lapin::Error {}

/// Runs `session` again and again until `shutdown`: the one reconnect loop.
///
/// A session connects, sets `health` up once it serves, and returns `Ok` on
/// shutdown or an error when its connection (or database) failed. After an
/// error the component is down until the next session is up again, after a
/// back-off that restarts from its shortest delay once a session had come up.
pub async fn supervise<E, F, Fut>(
    component: &str,
    health: &ComponentHealth,
    shutdown: &CancellationToken,
    mut session: F,
) -> Result<(), Crashed>
where
    E: SessionEnd,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut backoff = Backoff::default();
    let mut result = Ok(());
    while !shutdown.is_cancelled() {
        let ended = session().await;
        if health.is_up() {
            backoff.reset();
        }
        health.set(false);
        match ended {
            Ok(()) => break,
            Err(e) if e.is_crash() => {
                result = Err(Crashed);
                break;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(component, error = %e, retry_in_ms = delay.as_millis() as u64, "interrupted, reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    health.set(false);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }
}
