//! `bourse up`: every service in one process, on the embedded defaults (SQLite
//! files under the data folder, the local RabbitMQ), each configurable through
//! its own environment variables (`ORDER__DATABASE__URL=postgres://...`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bourse_common::config::{self, ServiceConfig};
use bourse_common::service::RunningService;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where the stack keeps its data and finds its broker.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub data_dir: PathBuf,
    pub amqp_url: String,
    /// `Some(0)`: every service on a free port (tests). `None`: each service's default port.
    pub port: Option<u16>,
    /// Database URLs by service name, instead of `<data_dir>/<service>.db`.
    pub databases: HashMap<String, String>,
}

/// The running services, gateway first.
#[derive(Debug)]
pub struct Stack {
    pub services: Vec<RunningService>,
}

impl Stack {
    pub fn gateway_url(&self) -> String {
        self.services.first().map(RunningService::url).unwrap_or_default()
    }

    /// Stops every service gracefully, the gateway last.
    pub async fn stop(self) {
        for service in self.services.into_iter().rev() {
            service.stop().await;
        }
    }
}

/// A service's configuration for the stack: its defaults, the stack's data
/// folder and broker, then its own environment variables.
fn configure<S>(
    mut defaults: ServiceConfig<S>,
    name: &str,
    env_prefix: &str,
    options: &StackOptions,
) -> anyhow::Result<ServiceConfig<S>>
where
    S: Serialize + DeserializeOwned,
{
    defaults.database.url = match options.databases.get(name) {
        Some(url) => url.clone(),
        None => options.data_dir.join(format!("{name}.db")).display().to_string(),
    };
    defaults.amqp.url = options.amqp_url.clone();
    if let Some(port) = options.port {
        defaults.http.port = port;
    }
    Ok(config::load(&defaults, None, env_prefix)?)
}

/// Starts every service, the gateway first.
pub const SERVICES: [&str; 6] = [
    gateway::NAME,
    order_service::NAME,
    payment_service::NAME,
    matching_service::NAME,
    chain_service::NAME,
    notify_service::NAME,
];

pub async fn start(options: &StackOptions) -> anyhow::Result<Stack> {
    std::fs::create_dir_all(&options.data_dir)?;
    let mut services = Vec::new();
    macro_rules! start {
        ($service:ident) => {
            services.push(
                $service::run(configure(
                    $service::default_config(),
                    $service::NAME,
                    $service::ENV_PREFIX,
                    options,
                )?)
                .await?,
            )
        };
    }
    start!(gateway);
    start!(order_service);
    start!(payment_service);
    start!(matching_service);
    start!(chain_service);
    start!(notify_service);
    Ok(Stack { services })
}

pub fn default_data_dir() -> &'static Path {
    Path::new("./data")
}
