//! `bourse up`: every service in one process, on the embedded defaults (SQLite
//! files under the data folder, the local RabbitMQ), each configurable through
//! its own environment variables (`ORDER__DATABASE__URL=postgres://...`).
//! The services share one internal secret (the gateway's proof of a caller),
//! made at the first start and kept in the data folder ([`internal_secret`]).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use bourse_common::auth::InternalSecret;
use bourse_common::config::{self, MessagingConfig, ServiceConfig};
use bourse_common::registry;
use bourse_common::service::{RunningService, Service};
use chain_service::ChainService;
use gateway::Gateway;
use matching_service::MatchingService;
use notify_service::NotifyService;
use order_service::OrderService;
use payment_service::PaymentService;

/// Where the stack keeps its data and finds its broker.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub data_dir: PathBuf,
    pub amqp_url: String,
    /// `Some(0)`: every service on a free port (tests). `None`: each service's default port.
    pub port: Option<u16>,
    /// Database URLs by service name, instead of `<data_dir>/<service>.db`.
    pub databases: HashMap<String, String>,
    /// The SMTP server notify-service sends to, instead of its configured one.
    pub smtp: Option<notify_service::mailer::SmtpSettings>,
    /// Retries and batches for every service, instead of their configured ones.
    pub messaging: Option<MessagingConfig>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);

type Starter =
    Box<dyn Fn(u16) -> Pin<Box<dyn Future<Output = anyhow::Result<RunningService>> + Send>> + Send + Sync>;

/// The running services, gateway first.
pub struct Stack {
    pub services: Vec<RunningService>,
    /// More instances of services, beside the first ones ([`Stack::add_instance`]).
    pub more: Vec<RunningService>,
    /// How to start each service again on a given port (tests restart them).
    starters: HashMap<&'static str, Starter>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").field("services", &self.services).finish_non_exhaustive()
    }
}

impl Stack {
    pub fn gateway_url(&self) -> String {
        self.service(registry::GATEWAY.name).map(RunningService::url).unwrap_or_default()
    }

    pub fn service(&self, name: &str) -> Option<&RunningService> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Waits until the gateway answers `/health/ready`: it does once every
    /// service behind it is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("{}/health/ready", self.gateway_url());
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the stack was not ready within {timeout:?}: see {url}")
    }

    /// Stops every service gracefully, the gateway first.
    pub async fn stop(self) {
        for service in self.more.into_iter().chain(self.services) {
            service.stop().await;
        }
    }

    /// Starts one more instance of `name` on a free port, sharing the first
    /// one's database and queues, as a second machine would: its consumers
    /// compete for the same messages, its relay stands by for the outbox's lease.
    pub async fn add_instance(&mut self, name: &str) -> anyhow::Result<()> {
        let starter = self.starters.get(name).ok_or_else(|| anyhow::anyhow!("no service {name}"))?;
        self.more.push(starter(0).await?);
        Ok(())
    }

    /// Kills a service where it stands (as a crash would) and starts it again on the same port.
    pub async fn crash_and_restart(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self
            .services
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| anyhow::anyhow!("no service {name}"))?;
        let old = self.services.remove(index);
        let port = old.http_addr.port();
        old.kill().await;
        let starter = self.starters.get(name).ok_or_else(|| anyhow::anyhow!("no starter for {name}"))?;
        let mut attempt = 0;
        let service = loop {
            match starter(port).await {
                Ok(service) => break service,
                // The killed server's socket may linger for a moment.
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "restart of {name} failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.services.insert(index, service);
        Ok(())
    }
}

/// Where the stack keeps its internal secret, in its data folder.
pub const INTERNAL_SECRET_FILE: &str = "internal-secret.key";

/// The stack's internal secret: read from the data folder, or made there at
/// the first start (a file only its owner can read, 0600).
pub fn internal_secret(data_dir: &Path) -> anyhow::Result<InternalSecret> {
    use anyhow::Context;
    let path = data_dir.join(INTERNAL_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => InternalSecret::new(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let secret = InternalSecret::generate();
            let mut file = std::fs::OpenOptions::new();
            file.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
            let mut file = file.open(&path).with_context(|| format!("creating {}", path.display()))?;
            std::io::Write::write_all(&mut file, secret.expose().as_bytes())?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A service's configuration for the stack: its defaults, the stack's data
/// folder and broker, then its own environment variables.
pub fn configure<S: Service>(options: &StackOptions) -> anyhow::Result<ServiceConfig<S::Settings>> {
    let mut defaults = S::default_config();
    let name = S::INFO.name;
    defaults.database.url = match options.databases.get(name) {
        Some(url) => url.clone(),
        None => options.data_dir.join(format!("{name}.db")).display().to_string(),
    };
    defaults.amqp.url = options.amqp_url.clone();
    if let Some(port) = options.port {
        defaults.http.port = port;
    }
    if let Some(messaging) = &options.messaging {
        defaults.messaging = messaging.clone();
    }
    defaults.security.internal_secret = Some(internal_secret(&options.data_dir)?);
    Ok(config::load(&defaults, None, S::INFO.env_prefix)?)
}

/// Every service of the stack, by name: the gateway and those behind it.
pub fn service_names() -> impl Iterator<Item = &'static str> {
    std::iter::once(registry::GATEWAY.name).chain(registry::BEHIND_GATEWAY.map(|s| s.name))
}

/// The services started so far, and how to start each again.
#[derive(Default)]
struct Starting {
    services: Vec<RunningService>,
    starters: HashMap<&'static str, Starter>,
}

impl Starting {
    /// Starts `S` on the stack's configuration, changed by `adjust`.
    async fn start<S: Service>(
        &mut self,
        options: &StackOptions,
        adjust: impl FnOnce(&mut ServiceConfig<S::Settings>),
    ) -> anyhow::Result<()> {
        let mut config = configure::<S>(options)?;
        adjust(&mut config);
        self.services.push(S::run(config.clone()).await?);
        let restart: Starter = Box::new(move |port| {
            let mut config = config.clone();
            config.http.port = port;
            Box::pin(S::run(config))
        });
        self.starters.insert(S::INFO.name, restart);
        Ok(())
    }
}

/// Starts every service, the gateway last (it is told where the others answer).
pub async fn start(options: &StackOptions) -> anyhow::Result<Stack> {
    std::fs::create_dir_all(&options.data_dir)?;
    let mut stack = Starting::default();
    stack.start::<OrderService>(options, |_| {}).await?;
    stack.start::<PaymentService>(options, |_| {}).await?;
    stack.start::<MatchingService>(options, |_| {}).await?;
    stack.start::<ChainService>(options, |_| {}).await?;
    stack
        .start::<NotifyService>(options, |c| {
            if let Some(smtp) = &options.smtp {
                c.settings.smtp = smtp.clone();
            }
        })
        .await?;
    let upstreams: Vec<(&'static str, String)> = stack.services.iter().map(|s| (s.name, s.url())).collect();
    stack
        .start::<Gateway>(options, |c| {
            for (name, url) in upstreams {
                c.settings.upstreams.insert(name, url);
            }
        })
        .await?;
    let Starting { mut services, starters } = stack;
    services.rotate_right(1); // the gateway first
    let stack = Stack { services, more: Vec::new(), starters };
    // Ready means every consumer queue is declared: a command sent before its
    // owner's queue exists would have nowhere to go.
    if let Err(e) = stack.wait_ready(READY_TIMEOUT).await {
        stack.stop().await;
        return Err(e);
    }
    Ok(stack)
}
