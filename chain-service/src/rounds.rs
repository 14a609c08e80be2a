//! The loop both of chain-service's workers (the deposit watcher and the
//! transaction pipeline) run: a round, then a pause; a node or database that
//! fails stops the rounds, not the work: the loop waits (backing off) and
//! tries again, with the worker's readiness down meanwhile.
//!
//! Several instances of chain-service may share its database; only the one
//! holding the `chain` lease (the relay's lease mechanism, [`bourse_common::lease`])
//! runs rounds, the others stand by, ready, and take over within a term of
//! its end. The pipeline also checks the lease, under its row lock, in the
//! transaction that stores a signed transaction and its nonce.

use std::future::Future;
use std::time::Duration;

use bourse_common::amqp::Backoff;
use bourse_common::db::{Db, DbConnection, DbError};
use bourse_common::lease::{self, Lease};
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

/// The name of the workers' lease.
pub const LEASE: &str = "chain";

/// This instance's claim on the workers' lease, shared by its two workers.
#[derive(Debug)]
pub struct Leader {
    lease: tokio::sync::Mutex<Lease>,
    holder: String,
}

impl Leader {
    pub fn new(term: Duration) -> Self {
        let holder = format!("chain-service/{}/{}", std::process::id(), uuid::Uuid::now_v7().simple());
        Self { lease: tokio::sync::Mutex::new(Lease::new(LEASE, holder.clone(), term)), holder }
    }

    /// Does this instance hold the lease (taken or renewed when due)?
    pub async fn holds(&self, db: &Db) -> Result<bool, DbError> {
        let mut lease = self.lease.lock().await;
        if lease.renewal_due() {
            let was = lease.is_held();
            let held = lease.acquire(db).await?;
            if held != was {
                tracing::info!(holder = %self.holder, "chain workers {}", if held { "took the lease: following the chain and sending" } else { "lost the lease: standing by" });
            }
        }
        Ok(lease.is_held())
    }

    /// Inside a transaction: still the holder? (Locks the lease row until it ends.)
    pub fn still_holds(&self, conn: &mut DbConnection) -> diesel::QueryResult<bool> {
        lease::still_held(conn, LEASE, &self.holder)
    }

    async fn release(&self, db: &Db) {
        if let Err(e) = self.lease.lock().await.release(db).await {
            tracing::warn!(error = %e, "the chain lease was not given up: it runs out by itself");
        }
    }
}

/// Runs `round` until `shutdown`, while this instance leads: again at once
/// when it says more is left, after `interval` when not, after a back-off
/// when it failed.
pub async fn run<F, Fut>(
    worker: &str,
    interval: Duration,
    (leader, db): (&Leader, &Db),
    health: ComponentHealth,
    shutdown: CancellationToken,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, RoundError>>,
{
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let leads = match leader.holds(db).await {
            Ok(leads) => Ok(leads),
            Err(e) => Err(RoundError::Db(e)),
        };
        let result = match leads {
            // Standing by: ready to take over.
            Ok(false) => Ok(false),
            Ok(true) => round().await,
            Err(e) => Err(e),
        };
        let delay = match result {
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
    leader.release(db).await;
    health.set(false);
}
