//! `chain-service`: custodial wallets and deposits on an EVM chain (alloy
//! against any JSON-RPC node; anvil in development and tests).
//!
//! | module | owns |
//! | --- | --- |
//! | [`domain`] | the rules, pure: chain units to ledger amounts (and dust), confirmations, deposit states |
//! | [`wallets`] | one sealed key per user, made on `user.registered`; `wallet.created` |
//! | [`node`] | the chain through alloy: head, blocks, native transfers, receipts, balances, nonces, broadcast |
//! | [`watcher`] | following the chain: deposits seen, confirmed (`deposit.confirmed`), reorgs |
//! | [`withdrawals`] | the withdrawal saga: held by payment-service, sent, confirmed or failed |
//! | [`pipeline`] | every outgoing transaction: nonce, signed bytes stored, broadcast, replaced, confirmed |
//! | [`settlement`] | trades mirrored on chain: windows netted per wallet and asset, through the clearing wallet |
//! | [`holdings`] | each custodial wallet on chain against the ledger, with what is in flight (the audit reads it) |
//! | [`rounds`] | the loop the watcher and the pipeline run, waiting out a failing node or database |
//! | [`storage`] | wallets, blocks read, head, deposits, withdrawals, transactions in the database |
//! | [`routes`] | REST: the caller's wallets, deposits and withdrawals |
//!
//! A library with a thin `main.rs`: [`ChainService::run`](Service::run)
//! starts it on the configured ports and URLs, so that tests and `bourse up`
//! start it in-process.

pub mod domain;
pub mod holdings;
pub mod node;
pub mod pipeline;
pub mod rounds;
pub mod routes;
pub mod settings;
pub mod settlement;
pub mod storage;
pub mod wallets;
pub mod watcher;
pub mod withdrawals;

use std::sync::Arc;
use std::time::Duration;

use bourse_common::config::ServiceConfig;
use bourse_common::inbox;
use bourse_common::registry::{self, ServiceInfo};
use bourse_common::service::{Service, ServiceParts};
use utoipa::OpenApi;

pub use settings::Settings;

/// The producer name on the messages this service sends.
pub const PRODUCER: &str = "chain-service";

pub type Config = ServiceConfig<Settings>;

/// The service, as the registry and the stack know it.
#[derive(Debug)]
pub struct ChainService;

impl Service for ChainService {
    const INFO: &'static ServiceInfo = &registry::CHAIN;
    type Settings = Settings;

    fn parts(config: &Config) -> anyhow::Result<ServiceParts> {
        let settings = &config.settings;
        settings.reference.validate()?;
        settings.validate_assets()?;
        let wallets = wallets::Wallets::new(settings.master_key()?.clone(), settings.chain_id);
        let node = node::Node::connect(&settings.rpc_url)?;
        let faucet = settings
            .faucet_key
            .as_ref()
            .map(|key| node::Faucet::new(&settings.rpc_url, key.expose()))
            .transpose()?;
        let faucet = actix_web::web::Data::new(faucet);
        let node_data = actix_web::web::Data::new(node.clone());
        let shared = Arc::new(settings.clone());
        let mut consumers = vec![
            inbox::consume::<wallets::Users>("chain-service.users", wallets.clone()),
            inbox::consume::<withdrawals::Payments>(
                "chain-service.payments",
                withdrawals::Answers { settings: shared.clone() },
            ),
        ];
        if settings.settlement.enabled {
            let recorder = settlement::Recorder { settings: shared };
            consumers.push(inbox::consume::<settlement::Trades>("chain-service.settlements", recorder));
        }
        Ok(ServiceParts {
            migrations: vec![&MIGRATIONS],
            consumers,
            routes: Arc::new(move |cfg, _bus| routes::configure(cfg, &faucet, &node_data)),
            openapi: routes::Api::openapi(),
            background: {
                // One instance follows the chain and sends at a time (the `chain` lease).
                let leader =
                    Arc::new(rounds::Leader::new(Duration::from_millis(config.messaging.relay_lease_ms)));
                vec![
                    watcher::task(settings.clone(), node.clone(), leader.clone()),
                    pipeline::task(settings.clone(), node, wallets, leader),
                ]
            },
            ..Default::default()
        })
    }
}

/// The schema of both back ends (`migrations/`), run at start-up.
pub const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
