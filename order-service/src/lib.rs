//! `order-service`: orders and their lifecycle; orchestrates the order saga;
//! order history. Price triggers (automation) belong here too — **not yet**:
//! the gateway routes `/api/triggers` to this service, which answers 404
//! until they are built.
//!
//! | module | owns |
//! | --- | --- |
//! | [`domain`] | the rules, pure: order validation and placement, reservations, the status table, idempotency keys |
//! | [`storage`] | orders and their transitions in the database |
//! | [`handlers`] | the saga queue: `funds.reserved`, `funds.rejected`, `funds.released`, `order.updated` |
//! | [`routes`] | REST: orders, currencies, markets |
//! | [`settings`] | the service's own settings: reference data |
//!
//! A library with a thin `main.rs`: [`OrderService`] is the service as the
//! registry and the stack know it; [`OrderService::run`](Service::run) starts
//! it on the configured ports and URLs, so that tests and `bourse up` start it
//! in-process.

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
pub struct OrderService;

impl Service for OrderService {
    const INFO: &'static ServiceInfo = &registry::ORDER;
    type Settings = Settings;

    /// Checks the reference data; the saga queue, the routes, the migrations.
    fn parts(config: &Config) -> anyhow::Result<ServiceParts> {
        config.settings.reference.validate()?;
        Ok(ServiceParts {
            migrations: vec![&storage::MIGRATIONS],
            consumers: vec![inbox::consume::<handlers::Saga>(handlers::QUEUE, handlers::handle)],
            routes: Arc::new(|cfg, _bus| routes::configure(cfg)),
            openapi: routes::Api::openapi(),
            ..Default::default()
        })
    }
}
