//! `matching-service`: one order book per market (price-time priority), trades, candles and quotes, market-data history.
//!
//! A library with a thin `main.rs`: [`run`] starts the service on the
//! configured ports and URLs, so that tests and `bourse up` start it in-process.

pub mod engine;

use bourse_common::config::ServiceConfig;
use bourse_common::service::{self, RunningService, ServiceParts};

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
    service::start(NAME, &config, ServiceParts::default()).await
}
