//! `notify-service`: e-mail to users over SMTP for the user-facing events, never twice for one event.
//!
//! A library with a thin `main.rs`: [`run`] starts the service on the
//! configured ports and URLs, so that tests and `bourse up` start it in-process.

use bourse_common::config::ServiceConfig;
use bourse_common::service::{self, RunningService, ServiceParts};

pub const NAME: &str = "notify-service";
/// `NOTIFY__DATABASE__URL` and the like override the configuration.
pub const ENV_PREFIX: &str = "NOTIFY";
pub const DEFAULT_PORT: u16 = 8085;

pub type Config = ServiceConfig;

/// The embedded defaults: `./data/notify-service.db`, local RabbitMQ, port 8085.
pub fn default_config() -> Config {
    Config::defaults(NAME, DEFAULT_PORT)
}

/// Starts the service: database and migrations, outbox relay, consumers, HTTP.
pub async fn run(config: Config) -> anyhow::Result<RunningService> {
    service::start(NAME, &config, ServiceParts::default()).await
}
