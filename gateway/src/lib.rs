//! `gateway`: the single HTTP entry point: users, passwords and tokens,
//! routing of every `/api/...` route to its service with per-user
//! authorization, a per-client rate limit, request ids, body-size limits and
//! one Swagger UI listing every service's API.
//!
//! | module | owns |
//! | --- | --- |
//! | [`users`] | registration, tokens, password reset |
//! | [`tokens`] | JWTs |
//! | [`proxy`] | which service owns a route, who may call it, forwarding |
//! | [`ratelimit`] | the rate limit and request ids |
//! | [`ws`] | the WebSocket feed: trades, candles, books, the user's orders and balances |
//!
//! A library with a thin `main.rs`: [`run`] starts the service on the
//! configured ports and URLs, so that tests and `bourse up` start it in-process.

pub mod proxy;
pub mod ratelimit;
pub mod tokens;
pub mod users;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{middleware, web};
use bourse_common::config::ServiceConfig;
use bourse_common::reference::ReferenceData;
use bourse_common::service::{self, RunningService, ServiceParts};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

pub const NAME: &str = "gateway";
/// `GATEWAY__DATABASE__URL` and the like override the configuration.
pub const ENV_PREFIX: &str = "GATEWAY";
pub const DEFAULT_PORT: u16 = 8080;

/// Where the services behind the gateway answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstreams {
    pub order_service: String,
    pub payment_service: String,
    pub matching_service: String,
    pub chain_service: String,
    pub notify_service: String,
}

impl Default for Upstreams {
    fn default() -> Self {
        let local = |port| format!("http://127.0.0.1:{port}");
        Self {
            order_service: local(8081),
            payment_service: local(8082),
            matching_service: local(8083),
            chain_service: local(8084),
            notify_service: local(8085),
        }
    }
}

impl Upstreams {
    pub const NAMES: [&'static str; 5] =
        ["order-service", "payment-service", "matching-service", "chain-service", "notify-service"];

    pub fn url(&self, service: &str) -> Option<&str> {
        let url = match service {
            "order-service" => &self.order_service,
            "payment-service" => &self.payment_service,
            "matching-service" => &self.matching_service,
            "chain-service" => &self.chain_service,
            "notify-service" => &self.notify_service,
            _ => return None,
        };
        Some(url.trim_end_matches('/'))
    }
}

/// The gateway's own settings (`GATEWAY__SETTINGS__JWT_SECRET=...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub upstreams: Upstreams,
    /// HS256 secret of the tokens. The default is for local use only.
    pub jwt_secret: String,
    pub token_ttl_seconds: u64,
    /// Users registering with one of these addresses are administrators.
    pub admin_emails: Vec<String>,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// The largest request body accepted.
    pub body_limit_bytes: usize,
    pub password_reset_ttl_seconds: u64,
    /// The markets the WebSocket feed serves.
    pub reference: ReferenceData,
}

pub const DEV_JWT_SECRET: &str = "bourse-local-development-secret-change-me";

impl Default for Settings {
    fn default() -> Self {
        Self {
            upstreams: Upstreams::default(),
            jwt_secret: DEV_JWT_SECRET.into(),
            token_ttl_seconds: 3600,
            admin_emails: vec!["admin@bourse.local".into()],
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            body_limit_bytes: 64 * 1024,
            password_reset_ttl_seconds: 3600,
            reference: ReferenceData::default(),
        }
    }
}

pub type Config = ServiceConfig<Settings>;

/// The embedded defaults: `./data/gateway.db`, local RabbitMQ, port 8080.
pub fn default_config() -> Config {
    Config::defaults(NAME, DEFAULT_PORT)
}

#[derive(OpenApi)]
#[openapi(
    paths(users::register, users::token, users::request_reset, users::confirm_reset),
    components(schemas(users::Credentials, users::User, users::Token, users::ResetRequest, users::ResetConfirm)),
    tags((name = "auth", description = "users, tokens and password reset; the other APIs are in the list at the top"))
)]
struct Api;

/// Starts the gateway: database and migrations, outbox relay, HTTP.
pub async fn run(config: Config) -> anyhow::Result<RunningService> {
    let settings = config.settings.clone();
    if settings.jwt_secret == DEV_JWT_SECRET {
        tracing::warn!(
            "the gateway signs tokens with the development secret: set GATEWAY__SETTINGS__JWT_SECRET"
        );
    }
    let tokens = web::Data::new(tokens::Tokens::new(
        &settings.jwt_secret,
        Duration::from_secs(settings.token_ttl_seconds),
    ));
    let limiter = web::Data::new(ratelimit::RateLimiter::new(
        settings.rate_limit_per_second,
        settings.rate_limit_burst,
    ));
    let client = web::Data::new(reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?);
    let upstreams = web::Data::new(settings.upstreams.clone());
    let hub = web::Data::new(ws::Hub::new(settings.upstreams.clone(), client.get_ref().clone()));
    let markets = web::Data::new(settings.reference.markets.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
    let feed_hub = hub.clone();
    let (amqp_url, messaging) = (config.amqp.url.clone(), config.messaging.clone());
    let feed: service::BackgroundTask = Box::new(move |bus, shutdown| {
        Box::pin(bourse_common::feed::follow(
            amqp_url,
            "gateway.feed".into(),
            ws::FOLLOWS.to_vec(),
            messaging,
            bus.metrics.component("feed"),
            shutdown,
            move |event| {
                let hub = feed_hub.clone();
                async move { hub.dispatch(event).await }
            },
        ))
    });
    let probes = Upstreams::NAMES
        .iter()
        .filter_map(|n| settings.upstreams.url(n).map(|u| (*n, u.to_string())))
        .collect();
    let body_limit = settings.body_limit_bytes;
    let parts = ServiceParts {
        migrations: vec![&MIGRATIONS],
        routes: Arc::new(move |cfg, _bus| {
            cfg.app_data(tokens.clone())
                .app_data(hub.clone())
                .app_data(markets.clone())
                .app_data(limiter.clone())
                .app_data(client.clone())
                .app_data(upstreams.clone())
                .app_data(bourse_common::error::json_config(body_limit))
                .route("/api-docs/{service}/openapi.json", web::get().to(proxy::api_doc))
                .route("/ws", web::get().to(ws::connect))
                .service(
                    web::scope("/api")
                        .wrap(middleware::from_fn(ratelimit::limit))
                        .configure(users::configure)
                        .default_service(web::to(proxy::forward)),
                );
        }),
        openapi: Api::openapi(),
        api_docs: vec![
            ("order-service", "/api-docs/order-service/openapi.json"),
            ("payment-service", "/api-docs/payment-service/openapi.json"),
            ("matching-service", "/api-docs/matching-service/openapi.json"),
            ("chain-service", "/api-docs/chain-service/openapi.json"),
            ("notify-service", "/api-docs/notify-service/openapi.json"),
        ],
        upstreams: probes,
        background: vec![feed],
        ..Default::default()
    };
    service::start(NAME, &config, parts).await
}

const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");
