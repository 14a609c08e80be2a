//! `order-service`: orders and their lifecycle; orchestrates the order saga;
//! price triggers; order history.
//!
//! | module | owns |
//! | --- | --- |
//! | [`domain`] | order validation, reservations, statuses, pure |
//! | [`storage`] | orders and their transitions |
//! | [`handlers`] | the saga: `funds.reserved`, `funds.rejected`, `funds.released` |
//! | [`routes`] | REST: orders, currencies, markets |
//!
//! A library with a thin `main.rs`: [`run`] starts the service on the
//! configured ports and URLs, so that tests and `bourse up` start it in-process.

pub mod domain;
pub mod handlers;
pub mod routes;
pub mod storage;

use std::sync::Arc;

use bourse_common::config::ServiceConfig;
use bourse_common::inbox::Handler;
use bourse_common::reference::ReferenceData;
use bourse_common::service::{self, RunningService, ServiceParts};
use bourse_common::topology::QueueSpec;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

pub const NAME: &str = "order-service";
/// `ORDER__DATABASE__URL` and the like override the configuration.
pub const ENV_PREFIX: &str = "ORDER";
pub const DEFAULT_PORT: u16 = 8081;

/// order-service's own settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub reference: ReferenceData,
}

pub type Config = ServiceConfig<Settings>;

/// The embedded defaults: `./data/order-service.db`, local RabbitMQ, port 8081.
pub fn default_config() -> Config {
    Config::defaults(NAME, DEFAULT_PORT)
}

/// Starts the service: database and migrations, outbox relay, consumers, HTTP.
pub async fn run(config: Config) -> anyhow::Result<RunningService> {
    let settings = config.settings.clone();
    settings.reference.validate()?;
    let saga: Arc<dyn Handler> = Arc::new(handlers::handle);
    let parts = ServiceParts {
        migrations: vec![&MIGRATIONS],
        consumers: vec![(QueueSpec::new("order-service.saga").events(&handlers::EVENTS), saga)],
        routes: Arc::new(|cfg, _bus| routes::configure(cfg)),
        openapi: routes::Api::openapi(),
        ..Default::default()
    };
    service::start(NAME, &config, parts).await
}

const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
