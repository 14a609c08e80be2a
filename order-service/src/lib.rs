//! `order-service`: orders and their lifecycle; orchestrates the order saga;
//! price triggers (their funds, their life; matching-service evaluates them
//! on every trade); order history.
//!
//! | module | owns |
//! | --- | --- |
//! | [`domain`] | the rules, pure: order validation and placement, reservations, the status table, idempotency keys |
//! | [`storage`] | orders and their transitions in the database |
//! | [`triggers`] | price triggers' rules, pure: validation, what they hold, their status table |
//! | [`trigger_storage`] | triggers in the database |
//! | [`handlers`] | the saga queue: `funds.reserved`, `funds.rejected`, `funds.released`, `order.updated`, `trigger.fired`, `trigger.disarmed` |
//! | [`routes`] | REST: orders, currencies, markets |
//! | [`trigger_routes`] | REST: triggers; the expiry sweep |
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
pub mod trigger_routes;
pub mod trigger_storage;
pub mod triggers;

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
            routes: Arc::new(|cfg, _bus| {
                routes::configure(cfg);
                trigger_routes::configure(cfg);
            }),
            openapi: {
                let mut api = routes::Api::openapi();
                api.merge(trigger_routes::Api::openapi());
                api
            },
            background: vec![expiry_sweep(config.settings.trigger_expiry_sweep_ms)],
            ..Default::default()
        })
    }
}

/// Expires the triggers whose time has passed, every `every_ms` (0: never).
fn expiry_sweep(every_ms: u64) -> bourse_common::service::BackgroundTask {
    Box::new(move |bus, shutdown| {
        let db = bus.db.clone();
        Box::pin(async move {
            if every_ms == 0 {
                return;
            }
            let every = std::time::Duration::from_millis(every_ms);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                if let Err(e) = trigger_routes::expire_due(&db).await {
                    tracing::warn!(error = %e, "triggers past their expiry could not be expired; next round");
                }
            }
        })
    })
}
