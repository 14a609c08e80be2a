//! `payment-service`: accounts per user and currency, the double-entry ledger,
//! reservations, settlement of trades, withdrawals' holds, top-up and finance
//! history, and the audit (ledger integrity, conservation per currency, the
//! event log against the ledger).
//!
//! | module | owns |
//! | --- | --- |
//! | [`domain`] | the rules, pure: money movements and balances, settlement of a trade, the stored words (ledger accounts, entry kinds, reservation states) |
//! | [`storage`] | accounts, ledger entries, reservations (with their settled fills and their order's end) in the database |
//! | [`handlers`] | consumed messages: `user.registered`; `deposit.confirmed`, `withdrawal.confirmed`, `withdrawal.failed`; the commands `payment.reserve-funds`, `payment.release-funds`, `payment.hold-withdrawal`; `trade.executed`, `order.updated` |
//! | [`audit`] | the audit: its checks (pure), its runs and reports, its job |
//! | [`routes`] | REST: accounts, top-up, finance history, fees collected, the audit |
//! | [`settings`] | the service's own settings: top-up switch, reference data, fee rates |
//!
//! A library with a thin `main.rs`: [`PaymentService`] is the service as the
//! registry and the stack know it; [`PaymentService::run`](Service::run)
//! starts it on the configured ports and URLs, so that tests and `bourse up`
//! start it in-process.

pub mod audit;
pub mod domain;
pub mod handlers;
pub mod routes;
pub mod settings;
pub mod storage;

use std::sync::Arc;

use bourse_common::config::ServiceConfig;
use bourse_common::inbox;
use bourse_common::registry::{self, ServiceInfo};
use bourse_common::service::{Service, ServiceParts};
use utoipa::OpenApi;

pub use settings::Settings;

pub type Config = ServiceConfig<Settings>;

/// The service, as the registry and the stack know it.
#[derive(Debug)]
pub struct PaymentService;

impl Service for PaymentService {
    const INFO: &'static ServiceInfo = &registry::PAYMENT;
    type Settings = Settings;

    /// Checks the reference data; the three queues, the routes, the migrations.
    fn parts(config: &Config) -> anyhow::Result<ServiceParts> {
        config.settings.reference.validate()?;
        let handlers = handlers::Handlers::new(config.settings.clone());
        Ok(ServiceParts {
            faults: handlers.faults.clone(),
            migrations: vec![&MIGRATIONS],
            consumers: vec![
                inbox::consume::<handlers::Users>("payment-service.users", handlers.clone()),
                inbox::consume::<handlers::Commands>("payment-service.commands", handlers.clone()),
                inbox::consume::<handlers::Chain>("payment-service.chain", handlers.clone()),
                // Trades and order ends in one queue: a trade settles before its order's rest is released.
                inbox::consume::<handlers::Matching>("payment-service.matching", handlers),
            ],
            routes: {
                let (settings, chain) = (config.settings.clone(), audit::ChainSource::of(config));
                Arc::new(move |cfg, bus| {
                    let auditor =
                        audit::Auditor { settings: settings.clone(), bus: bus.clone(), chain: chain.clone() };
                    routes::configure(cfg, auditor)
                })
            },
            background: vec![audit::job(config.settings.clone(), audit::ChainSource::of(config))],
            openapi: routes::Api::openapi(),
            ..Default::default()
        })
    }
}

/// The schema of both back ends (`migrations/`), run at start-up.
pub const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
