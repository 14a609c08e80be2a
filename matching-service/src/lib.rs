//! `matching-service`: one order book per market (price-time priority),
//! trades, candles and quotes, market-data history.
//!
//! | module | owns |
//! | --- | --- |
//! | [`engine`] | the order book and its matching rules, pure and deterministic |
//! | [`candles`] | candles from trades, pure: the history's and the live feed's, one fold |
//! | [`storage`] | resting orders, book versions, trades and cancel tombstones in the service's database |
//! | [`triggers`] | the armed price triggers of a market, pure: what a trade fires, in which order, never scanning them all |
//! | [`trigger_storage`] | armed triggers in the database |
//! | [`handlers`] | the orders queue: `matching.submit-order`, `matching.cancel-order` (a cancel that comes first leaves a tombstone the submit honours), `matching.arm-trigger`, `matching.disarm-trigger`; every trade evaluated against the market's triggers, a fired one's order placed in the same transaction |
//! | [`routes`] | REST: the book, the trades and the candles of a market |
//! | [`settings`] | the service's own settings: the markets |
//!
//! A queue per market, `matching-service.orders.<market>`, with a single
//! active consumer, so that a market's commands apply in the order they were
//! sent; a command's routing key names its market
//! (`matching.submit-order.ETH-USDT`). An instance keeps every market, or
//! those of `settings.markets`: markets spread over instances by configuration. Each command changes its
//! market's book, stores the trades and emits, in the same transaction,
//! `trade.executed` and `order.updated` on `bourse.events`, and the market
//! data `market.trade`, `market.candles` (every interval's candle, one message per trade) and
//! `market.book-changed` on the transient `bourse.market`.
//!
//! A library with a thin `main.rs`: [`MatchingService::run`](Service::run)
//! starts it on the configured ports and URLs, so that tests and `bourse up`
//! start it in-process.

pub mod candles;
pub mod engine;
pub mod handlers;
pub mod routes;
pub mod settings;
pub mod storage;
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
pub struct MatchingService;

impl Service for MatchingService {
    const INFO: &'static ServiceInfo = &registry::MATCHING;
    type Settings = Settings;

    fn parts(config: &Config) -> anyhow::Result<ServiceParts> {
        config.settings.reference.validate()?;
        // A queue per market, one active consumer each: a market's commands
        // apply in the order they were sent; markets apart from each other.
        let consumers = config
            .settings
            .kept_markets()?
            .iter()
            .map(|market| {
                inbox::consume::<handlers::Orders>(
                    &registry::orders_queue(market),
                    handlers::Matcher::default(),
                )
                .shard(market)
                .single_active_consumer()
            })
            .collect();
        let books = actix_web::web::Data::new(routes::BookCache::default());
        Ok(ServiceParts {
            migrations: vec![&MIGRATIONS],
            consumers,
            routes: Arc::new(move |cfg, _bus| routes::configure(cfg, &books)),
            openapi: routes::Api::openapi(),
            ..Default::default()
        })
    }
}

/// The schema of both back ends (`migrations/`), run at start-up.
pub const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
