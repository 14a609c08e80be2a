//! `gateway`: the single HTTP entry point: authentication (users, passwords, JWT), routing to the services, per-user authorization, rate limits, the aggregated Swagger UI and the WebSocket hub.
//!
//! A library with a thin `main.rs`: [`run`] starts the service on the
//! configured ports and URLs, so that tests and `bourse up` start it in-process.

use bourse_common::config::ServiceConfig;
use bourse_common::service::{self, RunningService, ServiceParts};

pub const NAME: &str = "gateway";
/// `GATEWAY__DATABASE__URL` and the like override the configuration.
pub const ENV_PREFIX: &str = "GATEWAY";
pub const DEFAULT_PORT: u16 = 8080;

pub type Config = ServiceConfig;

/// The embedded defaults: `./data/gateway.db`, local RabbitMQ, port 8080.
pub fn default_config() -> Config {
    Config::defaults(NAME, DEFAULT_PORT)
}

/// Starts the service: database and migrations, outbox relay, consumers, HTTP.
pub async fn run(config: Config) -> anyhow::Result<RunningService> {
    service::start(NAME, &config, ServiceParts::default()).await
}
