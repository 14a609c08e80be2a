//! `bourse up`: every service in one process, on the embedded defaults (SQLite
//! files under the data folder, the local RabbitMQ), each configurable through
//! its own environment variables (`ORDER__DATABASE__URL=postgres://...`).
//! A service whose configuration sets no secret gets the stack's
//! ([`StackSecrets`]: the JWT secret, the reset-token key and the internal
//! secret that proves the gateway to the services; kept in the data folder by
//! `bourse up`, fresh for each test stack); payment-service's top-up is on as
//! a development faucet when [`StackOptions::faucet`] says so.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context as _;
use bourse_common::auth::InternalSecret;
use bourse_common::config::{self, MessagingConfig, ServiceConfig};
use bourse_common::registry;
use bourse_common::secret::Secret;
use bourse_common::service::{RunningService, Service};
use chain_service::ChainService;
use gateway::Gateway;
use matching_service::MatchingService;
use notify_service::NotifyService;
use order_service::OrderService;
use payment_service::PaymentService;
use serde::{Deserialize, Serialize};

impl StackOptions {
    /// Chain currencies only from the dev chain (no ledger top-ups of them):
    /// trades settle on chain, and the audit reconciles the wallets.
    pub fn settles_on_chain(&self) -> bool {
        self.dev_chain.is_some() && !self.top_up_chain_currencies
    }
}

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
    /// The secrets of the stack, for the services whose configuration sets none.
    pub secrets: StackSecrets,
    /// payment-service's top-up on, as a development faucet (within its maximums).
    pub faucet: bool,
    /// The top-up also credits the dev chain's currencies (ETH, USDT) in the
    /// ledger alone: the test stacks, for speed. Off (`bourse up`): those come
    /// only from the chain, through the dev faucet, so the ledger and the chain agree.
    pub top_up_chain_currencies: bool,
    /// The gateway's limit on `/api/token`, registration and reset per client
    /// address and per e-mail (per minute, and at once), instead of its
    /// configured one: test stacks register many users from one address.
    pub auth_limit_per_minute: Option<u32>,
    /// A TOML file by service name, read as that service's `--config`.
    pub config_files: HashMap<String, PathBuf>,
    /// The stack's own dev chain (anvil): chain-service follows it instead of
    /// its configured node, its faucet sends from anvil's funded account, its
    /// gas wallet is anvil's second account, and its USDT is the dev token.
    pub dev_chain: Option<crate::anvil::DevChain>,
}

/// The secrets a stack needs: the gateway's JWT secret, the key it shares
/// with notify-service to seal reset tokens, and the internal secret with
/// which it proves each forwarded request to the services. Never printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackSecrets {
    pub jwt_secret: Secret,
    pub password_reset_key: Secret,
    pub internal_secret: Secret,
    /// Seals the custodial wallets' keys (chain-service). Added to a secrets
    /// file written before it existed, and kept from then on.
    #[serde(default)]
    pub wallet_master_key: Option<Secret>,
    /// The clearing wallet's key (settlement on chain), added likewise.
    #[serde(default)]
    pub clearing_key: Option<Secret>,
    /// The fee wallet's key: the trading fees arrive at its address (only
    /// the address is given to chain-service), added likewise.
    #[serde(default)]
    pub fee_wallet_key: Option<Secret>,
}

/// Where `bourse up` keeps its secrets, in its data folder.
pub const SECRETS_FILE: &str = "secrets.json";

impl StackSecrets {
    /// Fresh random secrets (each test stack has its own).
    pub fn random() -> Self {
        Self {
            jwt_secret: Secret::random(),
            password_reset_key: Secret::random(),
            internal_secret: Secret::random(),
            wallet_master_key: Some(Secret::random()),
            clearing_key: Some(Secret::random()),
            fee_wallet_key: Some(Secret::random()),
        }
    }

    /// The fee wallet's address.
    pub fn fee_address(&self) -> Option<alloy::primitives::Address> {
        let key = self.fee_wallet_key.as_ref()?;
        key.expose().parse::<alloy::signers::local::PrivateKeySigner>().ok().map(|s| s.address())
    }

    /// The secrets kept in `dir` ([`SECRETS_FILE`], readable by its owner
    /// only), made at the first start and the same at every start after.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(SECRETS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut secrets: Self = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} does not hold the stack's secrets", path.display()))?;
                let missing =
                    [&mut secrets.wallet_master_key, &mut secrets.clearing_key, &mut secrets.fee_wallet_key]
                        .into_iter()
                        .filter(|s| s.is_none())
                        .map(|s| *s = Some(Secret::random()))
                        .count();
                if missing > 0 {
                    secrets.write(&path, false)?;
                }
                Ok(secrets)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secrets = Self::random();
                secrets.write(&path, true)?;
                Ok(secrets)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the secrets to `path`, readable by its owner only (`new`: a file
    /// that must not exist yet).
    fn write(&self, path: &Path, new: bool) -> anyhow::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).truncate(true);
        if new {
            options.create_new(true);
        }
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(self)?)?;
        file.sync_all()?;
        Ok(())
    }
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
    defaults.security.internal_secret =
        Some(InternalSecret::new(options.secrets.internal_secret.expose()).map_err(|e| anyhow::anyhow!(e))?);
    let file = options.config_files.get(name).map(PathBuf::as_path);
    Ok(config::load(&defaults, file, S::INFO.env_prefix)?)
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
    stack.start::<MatchingService>(options, |_| {}).await?;
    let matching_url = stack.services.last().map(|s| s.url()).unwrap_or_default();
    stack
        .start::<OrderService>(options, |c| {
            // Triggers are checked against their market's last price when placed.
            c.settings.matching_service_url.get_or_insert(matching_url);
        })
        .await?;
    stack
        .start::<ChainService>(options, |c| {
            if let Some(chain) = &options.dev_chain {
                c.settings.rpc_url = chain.rpc_url.clone();
                c.settings.faucet_key.get_or_insert_with(|| Secret::new(crate::anvil::FAUCET_KEY));
                c.settings.gas_key.get_or_insert_with(|| Secret::new(crate::anvil::GAS_KEY));
                if c.settings.tokens.is_empty() {
                    c.settings.tokens.push(chain_service::settings::TokenSettings {
                        currency: "USDT".into(),
                        address: chain.usdt,
                        decimals: crate::anvil::USDT_DECIMALS,
                        transfer_gas: 100_000,
                    });
                }
            }
            if c.settings.wallet_master_key.is_none() {
                c.settings.wallet_master_key = options.secrets.wallet_master_key.clone();
            }
            if options.settles_on_chain() {
                // ETH and USDT come only from the chain: trades follow them there.
                let s = &mut c.settings.settlement;
                s.enabled = true;
                s.clearing_key = s.clearing_key.take().or_else(|| options.secrets.clearing_key.clone());
                s.fee_address = s.fee_address.or_else(|| options.secrets.fee_address());
            }
        })
        .await?;
    let chain_url = stack.services.last().map(|s| s.url()).unwrap_or_default();
    stack
        .start::<PaymentService>(options, |c| {
            if options.faucet {
                c.settings.top_up_enabled = true;
            }
            if options.settles_on_chain() {
                if c.settings.on_chain_currencies.is_empty() {
                    c.settings.on_chain_currencies = vec!["ETH".into(), "USDT".into()];
                }
                // The audit reconciles the wallets on chain with the ledger.
                c.settings.chain_service_url.get_or_insert(chain_url);
            }
        })
        .await?;
    stack
        .start::<NotifyService>(options, |c| {
            if let Some(smtp) = &options.smtp {
                c.settings.smtp = smtp.clone();
            }
            c.settings.password_reset_key.get_or_insert_with(|| options.secrets.password_reset_key.clone());
        })
        .await?;
    let upstreams: Vec<(&'static str, String)> = stack.services.iter().map(|s| (s.name, s.url())).collect();
    stack
        .start::<Gateway>(options, |c| {
            for (name, url) in upstreams {
                c.settings.upstreams.insert(name, url);
            }
            c.settings.jwt_secret.get_or_insert_with(|| options.secrets.jwt_secret.clone());
            if let Some(limit) = options.auth_limit_per_minute {
                c.settings.auth_rate_limit_per_minute = limit;
                c.settings.auth_rate_limit_burst = limit;
            }
            c.settings.password_reset_key.get_or_insert_with(|| options.secrets.password_reset_key.clone());
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_secrets_are_made_once_kept_private_and_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = StackSecrets::load_or_create(dir.path()).unwrap();
        let second = StackSecrets::load_or_create(dir.path()).unwrap();
        assert_eq!(first, second);
        assert_ne!(first, StackSecrets::random());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRETS_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{first:?}").contains(first.jwt_secret.expose()));
    }

    #[test]
    fn a_secrets_file_from_before_the_wallets_gains_a_master_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut older = serde_json::to_value(StackSecrets::random()).unwrap();
        older.as_object_mut().unwrap().remove("wallet_master_key");
        std::fs::write(dir.path().join(SECRETS_FILE), older.to_string()).unwrap();
        let first = StackSecrets::load_or_create(dir.path()).unwrap();
        assert_eq!(first.jwt_secret.expose(), older["jwt_secret"].as_str().unwrap(), "the others kept");
        let key = first.wallet_master_key.clone().expect("a master key added");
        let second = StackSecrets::load_or_create(dir.path()).unwrap();
        assert_eq!(second.wallet_master_key, Some(key), "and kept from then on");
    }
}
