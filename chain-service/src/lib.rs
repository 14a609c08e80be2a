//! `chain-service`: custodial wallets, signing and sending transactions to an
//! EVM chain, nonces, confirmations, deposits and withdrawals — **not yet**:
//! today it is an empty service (database, relay, health, metrics, its
//! OpenAPI document) with its row in the service registry, so the gateway
//! already routes its public paths (wallets, deposits, withdrawals) to it and
//! lists its API in Swagger UI. Until its routes exist they answer 404.
//!
//! A library with a thin `main.rs`: [`ChainService::run`](Service::run)
//! starts it on the configured ports and URLs, so that tests and `bourse up`
//! start it in-process.

use bourse_common::config::{NoSettings, ServiceConfig};
use bourse_common::registry::{self, ServiceInfo};
use bourse_common::service::{Service, ServiceParts};

pub type Config = ServiceConfig<NoSettings>;

/// The service, as the registry and the stack know it.
#[derive(Debug)]
pub struct ChainService;

impl Service for ChainService {
    const INFO: &'static ServiceInfo = &registry::CHAIN;
    type Settings = NoSettings;

    fn parts(_config: &Config) -> anyhow::Result<ServiceParts> {
        Ok(ServiceParts::default())
    }
}
