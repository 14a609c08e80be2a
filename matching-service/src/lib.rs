//! `matching-service`: one order book per market (price-time priority), trades, candles and quotes, market-data history.
//!
//! A library with a thin `main.rs`: [`run`] starts the service on the
//! configured ports and URLs, so that tests and `bourse up` start it in-process.

pub mod engine;
pub mod handlers;
pub mod storage;

use bourse_common::config::ServiceConfig;
use std::sync::Arc;

use bourse_common::service::{self, RunningService, ServiceParts};
use bourse_common::topology::QueueSpec;

pub const NAME: &str = "matching-service";
/// `MATCHING__DATABASE__URL` and the like override the configuration.
pub const ENV_PREFIX: &str = "MATCHING";
pub const DEFAULT_PORT: u16 = 8083;

pub type Config = ServiceConfig;

/// The embedded defaults: `./data/matching-service.db`, local RabbitMQ, port 8083.
pub fn default_config() -> Config {
    Config::defaults(NAME, DEFAULT_PORT)
}

/// Starts the service: database and migrations, outbox relay, consumers, HTTP.
pub async fn run(config: Config) -> anyhow::Result<RunningService> {
    // One active consumer for the books: commands apply in the order they were sent.
    let orders =
        QueueSpec::new("matching-service.orders").commands(&handlers::COMMANDS).single_active_consumer();
    let parts = ServiceParts {
        migrations: vec![&MIGRATIONS],
        consumers: vec![(orders, Arc::new(handlers::Matcher::default()))],
        ..Default::default()
    };
    service::start(NAME, &config, parts).await
}

const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
