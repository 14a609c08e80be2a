//! Layered configuration: compiled-in defaults, then an optional TOML file, then
//! environment variables (`ORDER__DATABASE__URL` sets `database.url` of the service
//! whose prefix is `ORDER`). Unknown keys are rejected, so a typo fails at start-up
//! instead of being silently ignored.

use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Where a service listens for HTTP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub host: String,
    /// `0` picks a free port (tests).
    pub port: u16,
    pub workers: usize,
}

impl HttpConfig {
    pub fn on_port(port: u16) -> Self {
        Self { host: "127.0.0.1".into(), port, workers: 2 }
    }
}

/// The service's own database.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A file path (SQLite, the default) or a `postgres://` URL.
    pub url: String,
    pub pool_size: u32,
}

impl DatabaseConfig {
    pub fn sqlite_default(service: &str) -> Self {
        Self { url: format!("./data/{service}.db"), pool_size: 8 }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The broker connection.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    pub url: String,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self { url: "amqp://guest:guest@127.0.0.1:5672/%2f".into() }
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig").field("url", &redact_url(&self.url)).finish()
    }
}

/// How messages are relayed, consumed, retried and parked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessagingConfig {
    /// Delay before each retry; the last tier repeats until `max_attempts`.
    pub retry_delays_ms: Vec<u64>,
    /// Deliveries of one message (the first one included) before it is parked in `<queue>.dlq`.
    pub max_attempts: u32,
    /// Unacknowledged deliveries a consumer may hold.
    pub prefetch: u16,
    /// Deliveries applied in one database transaction.
    pub consumer_batch: usize,
    /// Outbox rows published per relay round.
    pub relay_batch: usize,
    /// How often the relay looks for rows written by other processes.
    pub relay_poll_ms: u64,
    /// Retention of the event log stream (RabbitMQ `x-max-age`, e.g. `7D`).
    pub event_log_max_age: String,
    /// How long the relay's lease on its database's outbox lasts unless renewed:
    /// one instance of a service publishes, the others stand by and take over
    /// at the latest this long after the publisher died (at once after a clean stop).
    pub relay_lease_ms: u64,
    /// How often a command that no queue took (returned by the broker) is published again.
    pub parked_retry_ms: u64,
    /// How long the inbox remembers a message id (the window in which a
    /// redelivery is recognised and skipped). A dead letter older than this is
    /// replayed only when forced. At least one hour is kept.
    pub inbox_retention_hours: u64,
    /// How long sent outbox rows are kept for inspection.
    pub outbox_retention_hours: u64,
    /// How often the inbox and the sent outbox rows are pruned.
    pub retention_interval_ms: u64,
    /// Rows deleted per pruning transaction (small, so that no lock is held long).
    pub retention_batch: usize,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            retry_delays_ms: vec![200, 1_000, 5_000, 30_000],
            max_attempts: 5,
            prefetch: 1024,
            consumer_batch: 512,
            relay_batch: 1024,
            relay_poll_ms: 200,
            event_log_max_age: "30D".into(),
            relay_lease_ms: 5_000,
            parked_retry_ms: 5_000,
            inbox_retention_hours: 7 * 24,
            outbox_retention_hours: 7 * 24,
            retention_interval_ms: 60_000,
            retention_batch: 1_000,
        }
    }
}

impl MessagingConfig {
    /// The delay before delivery number `attempt + 1`, after `attempt` failed ones.
    pub fn retry_delay_ms(&self, attempt: u32) -> u64 {
        let tier = (attempt.max(1) - 1) as usize;
        self.retry_delays_ms.get(tier).or(self.retry_delays_ms.last()).copied().unwrap_or(1_000)
    }

    /// The inbox window: how long a message id is remembered.
    pub fn inbox_retention(&self) -> Duration {
        Duration::from_secs(self.inbox_retention_hours.saturating_mul(3600))
    }

    /// How long sent outbox rows are kept.
    pub fn outbox_retention(&self) -> Duration {
        Duration::from_secs(self.outbox_retention_hours.saturating_mul(3600))
    }
}

/// Errors while loading configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

/// Loads `T` from `defaults`, then `file` (if given, it must exist), then the
/// environment variables starting with `<env_prefix>__`.
pub fn load<T>(defaults: &T, file: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned,
{
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(file) = file {
        figment = figment.merge(Toml::file_exact(file));
    }
    figment
        .merge(Env::prefixed(&format!("{env_prefix}__")).split("__"))
        .extract()
        .map_err(|e| ConfigError(Box::new(e)))
}

/// `scheme://user:secret@host` -> `scheme://user:***@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        http: HttpConfig,
        messaging: MessagingConfig,
    }

    fn sample() -> Sample {
        Sample { http: HttpConfig::on_port(8080), messaging: MessagingConfig::default() }
    }

    #[test]
    fn file_overrides_defaults_and_unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[http]\nport = 9000\n").unwrap();
        let loaded: Sample = load(&sample(), Some(&path), "BOURSE_CFG_TEST_A").unwrap();
        assert_eq!(loaded.http.port, 9000);
        assert_eq!(loaded.http.host, "127.0.0.1");

        std::fs::write(&path, "[http]\nprot = 9000\n").unwrap();
        let err = load::<Sample>(&sample(), Some(&path), "BOURSE_CFG_TEST_A").unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail dictates the closure type
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[http]\nport = 9000\n")?;
            jail.set_env("BOURSE_CFG_TEST_B__HTTP__PORT", "9100");
            jail.set_env("BOURSE_CFG_TEST_B__MESSAGING__RETRY_DELAYS_MS", "[5, 10]");
            let loaded: Sample = load(&sample(), Some(Path::new("c.toml")), "BOURSE_CFG_TEST_B").unwrap();
            assert_eq!(loaded.http.port, 9100);
            assert_eq!(loaded.messaging.retry_delays_ms, vec![5, 10]);
            Ok(())
        });
    }

    #[test]
    fn retry_delay_tiers_grow_then_repeat_the_last() {
        let m = MessagingConfig { retry_delays_ms: vec![10, 100], ..Default::default() };
        assert_eq!([1, 2, 3, 9].map(|a| m.retry_delay_ms(a)), [10, 100, 100, 100]);
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(redact_url("./data/x.db"), "./data/x.db");
    }
}

/// A service's configuration: the infrastructure every service has, and the
/// service's own `settings`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig<S = NoSettings> {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub amqp: AmqpConfig,
    pub messaging: MessagingConfig,
    /// Secrets shared between services (the gateway's proof of a caller).
    #[serde(default)]
    pub security: crate::auth::SecurityConfig,
    pub settings: S,
}

/// For a service without settings of its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl<S: Default> ServiceConfig<S> {
    /// The embedded defaults: `./data/<service>.db`, local RabbitMQ, `port`.
    pub fn defaults(service: &str, port: u16) -> Self {
        Self {
            http: HttpConfig::on_port(port),
            database: DatabaseConfig::sqlite_default(service),
            amqp: AmqpConfig::default(),
            messaging: MessagingConfig::default(),
            security: crate::auth::SecurityConfig::default(),
            settings: S::default(),
        }
    }
}

impl<S: Serialize + DeserializeOwned> ServiceConfig<S> {
    /// Loads the defaults, then the file named by `--config <path>` on the
    /// command line (if any), then `<env_prefix>__...` variables.
    pub fn load_from_args(defaults: Self, env_prefix: &str) -> Result<Self, ConfigError> {
        let args: Vec<String> = std::env::args().collect();
        let file = args
            .iter()
            .position(|a| a == "--config")
            .and_then(|i| args.get(i + 1))
            .map(std::path::PathBuf::from);
        load(&defaults, file.as_deref(), env_prefix)
    }
}
