//! The loop both of chain-service's workers (the deposit watcher and the
//! transaction pipeline) run: a round, then a pause; a node or database that
//! fails stops the rounds, not the work: the loop waits (backing off) and
//! tries again, with the worker's readiness down meanwhile.

use std::future::Future;
use std::time::Duration;

use bourse_common::amqp::Backoff;
use bourse_common::db::DbError;
use bourse_common::metrics::ComponentHealth;
use tokio_util::sync::CancellationToken;

use crate::node::NodeError;

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// Nothing will work until the configuration changes.
    #[error("{0}")]
    Config(String),
    /// A crash injected by a test: the worker stops where it stands.
    #[error("crash injected")]
    Crashed,
}

impl From<diesel::result::Error> for RoundError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

/// Runs `round` until `shutdown`: again at once when it says more is left,
/// after `interval` when not, after a back-off when it failed.
pub async fn run<F, Fut>(
    worker: &str,
    interval: Duration,
    health: ComponentHealth,
    shutdown: CancellationToken,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, RoundError>>,
{
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let delay = match round().await {
            Ok(more) => {
                health.set(true);
                backoff.reset();
                if more { Duration::ZERO } else { interval }
            }
            Err(RoundError::Crashed) => {
                tracing::warn!(worker, "crash injected: the worker stops here");
                return;
            }
            Err(RoundError::Config(problem)) => {
                health.set(false);
                tracing::error!(worker, %problem, "cannot work with this configuration");
                interval.max(Duration::from_secs(5))
            }
            Err(e) => {
                health.set(false);
                let delay = backoff.next_delay();
                tracing::warn!(worker, error = %e, retry_in_ms = delay.as_millis() as u64, "round interrupted");
                delay
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    health.set(false);
}
