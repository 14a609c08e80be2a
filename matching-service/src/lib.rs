//! `matching-service`: one order book per market (price-time priority), trades, candles and quotes, market-data history.
//!
//! A library with a thin `main.rs`: [`run`] starts the service on the
//! configured ports and URLs, so that tests and `bourse up` start it in-process.

pub mod candles;
pub mod engine;
pub mod handlers;
pub mod routes;
pub mod storage;

use bourse_common::config::ServiceConfig;
use std::sync::Arc;

use bourse_common::reference::ReferenceData;
use bourse_common::service::{self, RunningService, ServiceParts};
use bourse_common::topology::QueueSpec;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

pub const NAME: &str = "matching-service";
/// `MATCHING__DATABASE__URL` and the like override the configuration.
pub const ENV_PREFIX: &str = "MATCHING";
pub const DEFAULT_PORT: u16 = 8083;

/// matching-service's own settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub reference: ReferenceData,
}

pub type Config = ServiceConfig<Settings>;

/// The embedded defaults: `./data/matching-service.db`, local RabbitMQ, port 8083.
pub fn default_config() -> Config {
    Config::defaults(NAME, DEFAULT_PORT)
}

/// Starts the service: database and migrations, outbox relay, consumers, HTTP.
pub async fn run(config: Config) -> anyhow::Result<RunningService> {
    // One active consumer for the books: commands apply in the order they were sent.
    let orders =
        QueueSpec::new("matching-service.orders").commands(&handlers::COMMANDS).single_active_consumer();
    config.settings.reference.validate()?;
    let parts = ServiceParts {
        migrations: vec![&MIGRATIONS],
        consumers: vec![(orders, Arc::new(handlers::Matcher::default()))],
        routes: Arc::new(|cfg, _bus| routes::configure(cfg)),
        openapi: routes::Api::openapi(),
        ..Default::default()
    };
    service::start(NAME, &config, parts).await
}

const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
