//! `payment-service`: accounts per user and currency, the double-entry ledger,
//! reservations, settlement of trades, top-up, finance history and the audit.
//!
//! | module | owns |
//! | --- | --- |
//! | [`domain`] | money movements and balances, pure |
//! | [`storage`] | accounts, ledger entries, reservations |
//! | [`handlers`] | consumed messages: `user.registered`, `payment.reserve-funds`, `payment.release-funds` |
//! | [`routes`] | REST: accounts, top-up, finance history |
//!
//! A library with a thin `main.rs`: [`run`] starts the service on the
//! configured ports and URLs, so that tests and `bourse up` start it in-process.

pub mod domain;
pub mod handlers;
pub mod routes;
pub mod storage;

use std::sync::Arc;

use bourse_common::catalog::UserRegistered;
use bourse_common::config::ServiceConfig;
use bourse_common::inbox::Handler;
use bourse_common::messages::Message;
use bourse_common::reference::ReferenceData;
use bourse_common::service::{self, RunningService, ServiceParts};
use bourse_common::topology::QueueSpec;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

pub const NAME: &str = "payment-service";
/// `PAYMENT__DATABASE__URL` and the like override the configuration.
pub const ENV_PREFIX: &str = "PAYMENT";
pub const DEFAULT_PORT: u16 = 8082;

/// payment-service's own settings (`PAYMENT__SETTINGS__TOP_UP_ENABLED=false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `POST /api/users/me/accounts/{currency}/top-up` answers; switch off in production.
    pub top_up_enabled: bool,
    pub reference: ReferenceData,
    /// Fee of the resting side of a trade, as a fraction of what it receives (`"0.001"` = 0.1%).
    pub maker_fee_rate: Decimal,
    /// Fee of the side that took liquidity.
    pub taker_fee_rate: Decimal,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            top_up_enabled: true,
            reference: ReferenceData::default(),
            maker_fee_rate: Decimal::new(1, 3),
            taker_fee_rate: Decimal::new(2, 3),
        }
    }
}

pub type Config = ServiceConfig<Settings>;

/// The embedded defaults: `./data/payment-service.db`, local RabbitMQ, port 8082.
pub fn default_config() -> Config {
    Config::defaults(NAME, DEFAULT_PORT)
}

/// Starts the service: database and migrations, outbox relay, consumers, HTTP.
pub async fn run(config: Config) -> anyhow::Result<RunningService> {
    let settings = config.settings.clone();
    settings.reference.validate()?;
    let reference = settings.reference.clone();
    let users: Arc<dyn Handler> =
        Arc::new(move |c: &mut _, m: &_, _: &mut _| handlers::user_registered(&reference, c, m));
    let reference = settings.reference.clone();
    let commands: Arc<dyn Handler> =
        Arc::new(move |c: &mut _, m: &_, out: &mut _| handlers::command(&reference, c, m, out));
    let settings = Arc::new(settings);
    let matching: Arc<dyn Handler> =
        Arc::new(move |c: &mut _, m: &_, out: &mut _| handlers::matching_event(&settings, c, m, out));
    let parts = ServiceParts {
        migrations: vec![&MIGRATIONS],
        consumers: vec![
            (QueueSpec::new("payment-service.users").events(&[UserRegistered::TYPE]), users),
            (QueueSpec::new("payment-service.commands").commands(&handlers::COMMANDS), commands),
            // Trades and order ends in one queue: a trade settles before its order's rest is released.
            (QueueSpec::new("payment-service.matching").events(&handlers::MATCHING_EVENTS), matching),
        ],
        routes: Arc::new(|cfg, _bus| routes::configure(cfg)),
        openapi: routes::Api::openapi(),
        ..Default::default()
    };
    service::start(NAME, &config, parts).await
}

const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
