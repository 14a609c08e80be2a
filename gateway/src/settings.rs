//! The gateway's own settings (`[settings]` in its file,
//! `GATEWAY__SETTINGS__*` in the environment), among them where each service
//! behind it answers.

use std::collections::BTreeMap;

use bourse_common::reference::ReferenceData;
use bourse_common::registry::{self, BEHIND_GATEWAY, ServiceInfo};
use bourse_common::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize};

/// Where the services behind the gateway answer, by their
/// [registry](bourse_common::registry) name: `"order-service" =
/// "http://..."` under `[settings.upstreams]`, or
/// `GATEWAY__SETTINGS__UPSTREAMS__ORDER_SERVICE=http://...` (`_` stands for
/// `-`, which shells do not take in a variable's name). The default is every
/// service of [`BEHIND_GATEWAY`] at its default URL; a name that is no such
/// service is refused at start ([`Upstreams::check`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Upstreams(BTreeMap<String, String>);

impl Default for Upstreams {
    fn default() -> Self {
        Self(BEHIND_GATEWAY.iter().map(|s| (s.name.to_string(), s.default_url())).collect())
    }
}

impl<'de> Deserialize<'de> for Upstreams {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let given = BTreeMap::<String, String>::deserialize(deserializer)?;
        // The layers arrive merged: the defaults' `order-service` beside the
        // environment's `order_service`. Service names have no `_`, so a key
        // spelled with one is the user's, and it wins.
        let (spelled_with_underscore, names): (Vec<_>, Vec<_>) =
            given.into_iter().partition(|(name, _)| name.contains('_'));
        let mut upstreams: BTreeMap<String, String> = names.into_iter().collect();
        upstreams
            .extend(spelled_with_underscore.into_iter().map(|(name, url)| (name.replace('_', "-"), url)));
        Ok(Self(upstreams))
    }
}

impl Upstreams {
    /// The base URL of `service`, without a trailing `/`.
    pub fn url(&self, service: &str) -> Option<&str> {
        self.0.get(service).map(|url| url.trim_end_matches('/'))
    }

    /// Sets where `service` answers (`bourse up` tells the gateway where it
    /// started each service); returns the URL it replaces.
    pub fn insert(&mut self, service: &str, url: impl Into<String>) -> Option<String> {
        self.0.insert(service.to_string(), url.into())
    }

    /// Every service behind the gateway with its URL, in the registry's order.
    pub fn services(&self) -> impl Iterator<Item = (&'static ServiceInfo, &str)> {
        BEHIND_GATEWAY.into_iter().filter_map(|s| self.url(s.name).map(|url| (s, url)))
    }

    /// Refuses a name that is no service behind the gateway (a typo would
    /// otherwise leave the real one at its default), and a service without a URL.
    pub fn check(&self) -> anyhow::Result<()> {
        let known = || BEHIND_GATEWAY.map(|s| s.name).join(", ");
        if let Some(unknown) = self.0.keys().find(|name| registry::find(name).is_none()) {
            anyhow::bail!(
                "settings.upstreams: `{unknown}` is not a service behind the gateway (those are: {})",
                known()
            );
        }
        if let Some(missing) = BEHIND_GATEWAY.into_iter().find(|s| !self.0.contains_key(s.name)) {
            anyhow::bail!("settings.upstreams: no URL for `{}`", missing.name);
        }
        Ok(())
    }
}

/// The gateway's own settings (`GATEWAY__SETTINGS__JWT_SECRET=...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub upstreams: Upstreams,
    /// HS256 secret of the tokens, at least [`MIN_SECRET_LEN`] characters.
    /// No default: the gateway refuses to start without one (`bourse up`
    /// generates one in its data folder).
    pub jwt_secret: Option<Secret>,
    /// The key shared with notify-service (its `password_reset_key`) that
    /// seals reset tokens in `user.password-reset-requested`, so that the
    /// token is never readable in the outbox, the broker or the event log.
    /// Required, as `jwt_secret`.
    pub password_reset_key: Option<Secret>,
    pub token_ttl_seconds: u64,
    /// Every `/api` route: per verified user, else per client address.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// `/api/token`, registration and password reset, per client address
    /// and per target e-mail address: requests per minute, and at once.
    pub auth_rate_limit_per_minute: u32,
    pub auth_rate_limit_burst: u32,
    /// The most clients a rate limit remembers; the least recently seen go first.
    pub rate_limit_max_clients: usize,
    /// Password hashes (argon2, ~19 MiB each) computed at once; the others wait.
    pub password_hash_concurrency: usize,
    /// The largest request body accepted.
    pub body_limit_bytes: usize,
    pub password_reset_ttl_seconds: u64,
    /// Reset e-mails sent to one address per hour; further requests answer
    /// the same 202 and send nothing.
    pub password_resets_per_hour: u32,
    /// The markets the WebSocket feed serves.
    pub reference: ReferenceData,
    /// What one client may hold and do on the WebSocket feed.
    pub ws: crate::ws::WsLimits,
}

/// The shortest JWT secret or reset key accepted.
pub const MIN_SECRET_LEN: usize = 32;

impl Default for Settings {
    fn default() -> Self {
        Self {
            upstreams: Upstreams::default(),
            jwt_secret: None,
            password_reset_key: None,
            token_ttl_seconds: 3600,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            auth_rate_limit_per_minute: 20,
            auth_rate_limit_burst: 20,
            rate_limit_max_clients: 100_000,
            password_hash_concurrency: 4,
            body_limit_bytes: 64 * 1024,
            password_reset_ttl_seconds: 3600,
            password_resets_per_hour: 3,
            reference: ReferenceData::default(),
            ws: crate::ws::WsLimits::default(),
        }
    }
}

impl Settings {
    /// The secrets the gateway cannot run without, checked at start: a
    /// missing or short one is refused with the variable to set.
    pub fn secrets(&self) -> anyhow::Result<(&Secret, &Secret)> {
        fn required<'a>(secret: &'a Option<Secret>, name: &str) -> anyhow::Result<&'a Secret> {
            match secret {
                None => anyhow::bail!(
                    "settings.{name} is not set: the gateway refuses to start without it; set \
                     GATEWAY__SETTINGS__{} to at least {MIN_SECRET_LEN} random characters \
                     (`bourse up` generates one in its data folder)",
                    name.to_uppercase()
                ),
                Some(s) if s.expose().len() < MIN_SECRET_LEN => {
                    anyhow::bail!("settings.{name} is too short: at least {MIN_SECRET_LEN} random characters")
                }
                Some(s) => Ok(s),
            }
        }
        Ok((
            required(&self.jwt_secret, "jwt_secret")?,
            required(&self.password_reset_key, "password_reset_key")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bourse_common::config::{self, ServiceConfig};

    #[test]
    fn by_default_every_service_behind_the_gateway_is_at_its_default_url() {
        let upstreams = Upstreams::default();
        upstreams.check().unwrap();
        let listed: Vec<(&str, String)> = upstreams.services().map(|(s, url)| (s.name, url.into())).collect();
        let expected: Vec<(&str, String)> =
            BEHIND_GATEWAY.iter().map(|s| (s.name, s.default_url())).collect();
        assert_eq!(listed, expected);
        assert!(BEHIND_GATEWAY.iter().all(|s| !s.name.contains('_')), "`_` stands for `-` in the keys");
    }

    #[test]
    fn a_file_sets_some_upstreams_by_name_or_underscored_name_and_keeps_the_others() {
        let path = std::env::temp_dir().join(format!("gateway-upstreams-{}.toml", uuid::Uuid::new_v4()));
        let file = "[settings.upstreams]\n\
                    order_service = \"http://orders:9000/\"\n\
                    \"payment-service\" = \"http://payments:9000\"\n";
        std::fs::write(&path, file).unwrap();
        let defaults = ServiceConfig::<Settings>::defaults("gateway", 8080);
        let loaded: ServiceConfig<Settings> =
            config::load(&defaults, Some(&path), "GATEWAY_UPSTREAMS_TEST_UNSET").unwrap();
        std::fs::remove_file(&path).unwrap();
        let upstreams = &loaded.settings.upstreams;
        upstreams.check().unwrap();
        assert_eq!(upstreams.url("order-service"), Some("http://orders:9000"));
        assert_eq!(upstreams.url("payment-service"), Some("http://payments:9000"));
        assert_eq!(upstreams.url("matching-service"), Some(registry::MATCHING.default_url().as_str()));
        assert_eq!(upstreams.url("order_service"), None);
    }

    #[test]
    fn without_a_secret_or_with_a_short_one_the_gateway_refuses_to_start() {
        let mut settings = Settings::default();
        let err = settings.secrets().unwrap_err().to_string();
        assert!(err.contains("GATEWAY__SETTINGS__JWT_SECRET"), "{err}");
        settings.jwt_secret = Some(Secret::new("short"));
        assert!(settings.secrets().unwrap_err().to_string().contains("too short"));
        settings.jwt_secret = Some(Secret::random());
        let err = settings.secrets().unwrap_err().to_string();
        assert!(err.contains("GATEWAY__SETTINGS__PASSWORD_RESET_KEY"), "{err}");
        settings.password_reset_key = Some(Secret::random());
        assert!(settings.secrets().is_ok());
        assert!(!format!("{settings:?}").contains(settings.jwt_secret.as_ref().unwrap().expose()));
    }

    #[test]
    fn an_unknown_or_missing_service_is_refused() {
        let mut upstreams = Upstreams::default();
        assert_eq!(
            upstreams.insert("order-service", "http://127.0.0.1:1"),
            Some(registry::ORDER.default_url())
        );
        upstreams.check().unwrap();
        upstreams.insert("ghost-service", "http://127.0.0.1:2");
        let err = upstreams.check().unwrap_err().to_string();
        assert!(err.contains("`ghost-service`") && err.contains("order-service"), "{err}");

        let mut upstreams = Upstreams::default();
        upstreams.0.remove("notify-service");
        let err = upstreams.check().unwrap_err().to_string();
        assert!(err.contains("no URL for `notify-service`"), "{err}");
    }
}
