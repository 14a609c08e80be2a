//! `gateway`: the single HTTP entry point: users, passwords and tokens,
//! routing of every `/api/...` route to the service that owns it (as the
//! [registry](bourse_common::registry) says) with per-user authorization, a
//! per-client rate limit, request ids, body-size limits, one Swagger UI
//! listing every service's API, and the WebSocket feed. It is ready while
//! every service behind it is.
//!
//! | module | owns |
//! | --- | --- |
//! | [`settings`] | the gateway's settings, and where each service behind it answers |
//! | [`users`] | registration, tokens, password reset (routes, rules, storage) |
//! | [`tokens`] | JWTs |
//! | [`proxy`] | forwarding a route to its service if the caller may call it; the services' API documents |
//! | [`ratelimit`] | the rate limit and request ids |
//! | [`operator`] | dead letters for operators: list, replay, discard, every action recorded |
//! | [`trace`] | sagas and the event log for operators: traces from the log's index (kept here), events, outboxes, safe republish |
//! | [`explorer`] | the saga explorer page at `/admin/` (built into the binary) |
//! | [`ws`] | the WebSocket feed: trades, candles, books, the user's orders and balances |
//!
//! A library with a thin `main.rs`: [`Gateway`] is its [`Service`], and
//! `Gateway::run(config)` starts it on the configured ports and URLs, so that
//! tests and `bourse up` start it in-process. A service added to the registry
//! is routed, probed and listed here without a change to this crate.

pub mod explorer;
pub mod operator;
pub mod proxy;
pub mod ratelimit;
pub mod settings;
pub mod tokens;
pub mod trace;
pub mod users;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{middleware, web};
use bourse_common::config::ServiceConfig;
use bourse_common::registry::{self, BEHIND_GATEWAY, ServiceInfo};
use bourse_common::service::{Service, ServiceParts};
use utoipa::OpenApi;

pub use settings::{Settings, Upstreams};

pub type Config = ServiceConfig<Settings>;

/// The gateway, as the registry and the stack know it.
#[derive(Debug)]
pub struct Gateway;

#[derive(OpenApi)]
#[openapi(
    paths(
        users::routes::register,
        users::routes::token,
        users::routes::request_reset,
        users::routes::confirm_reset,
        users::routes::set_role
    ),
    components(schemas(
        users::routes::Credentials,
        users::routes::User,
        users::routes::Token,
        users::routes::ResetRequest,
        users::routes::ResetConfirm,
        users::routes::RoleChange,
        users::routes::UserRole
    )),
    tags((name = "auth", description = "users, tokens and password reset; the other APIs are in the list at the top"))
)]
struct Api;

pub const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");

impl Service for Gateway {
    const INFO: &'static ServiceInfo = &registry::GATEWAY;
    type Settings = Settings;

    /// Refuses upstreams that are no service behind the gateway, and to
    /// start without its secrets (no default secret ever signs a token).
    fn parts(config: &Config) -> anyhow::Result<ServiceParts> {
        let settings = &config.settings;
        settings.upstreams.check()?;
        // Every request it forwards carries its proof, signed with this.
        let secret = config.security.require_internal_secret(Self::INFO.name)?.clone();
        let (jwt_secret, reset_key) = settings.secrets()?;
        let tokens =
            web::Data::new(tokens::Tokens::new(jwt_secret, Duration::from_secs(settings.token_ttl_seconds)));
        let reset_key = web::Data::new(users::routes::ResetKey(reset_key.clone()));
        let limiter = web::Data::new(ratelimit::RateLimiter::new(
            f64::from(settings.rate_limit_per_second),
            settings.rate_limit_burst,
            settings.rate_limit_max_clients,
        ));
        let auth_limits = web::Data::new(users::limits::AuthLimits::new(settings));
        let hashing = web::Data::new(users::limits::Hashing::new(settings.password_hash_concurrency)?);
        let sessions = web::Data::new(users::sessions::Sessions::default());
        let client = web::Data::new(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_idle_timeout(bourse_common::service::HTTP_CLIENT_IDLE)
                .build()?,
        );
        let upstreams = web::Data::new(settings.upstreams.clone());
        let hub = web::Data::new(
            ws::Hub::new(settings.upstreams.clone(), client.get_ref().clone(), secret.clone())
                .with_limits(settings.ws),
        );
        let inspector = web::Data::new(trace::Inspector {
            client: client.get_ref().clone(),
            upstreams: settings.upstreams.clone(),
            secret: secret.clone(),
        });
        let secret = web::Data::new(secret);
        let markets =
            web::Data::new(settings.reference.markets.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
        let feed = ws::follower(hub.clone(), config.amqp.url.clone(), config.messaging.clone());
        let probes = settings.upstreams.services().map(|(s, url)| (s.name, url.to_string())).collect();
        let body_limit = settings.body_limit_bytes;
        let dead_letters = web::Data::new(operator::DeadLetters {
            amqp_url: config.amqp.url.clone(),
            inbox_retention: config.messaging.inbox_retention(),
            queues: registry::queues(markets.iter().map(String::as_str)),
        });
        Ok(ServiceParts {
            migrations: vec![&MIGRATIONS],
            routes: Arc::new(move |cfg, _bus| {
                cfg.app_data(tokens.clone())
                    .app_data(reset_key.clone())
                    .app_data(auth_limits.clone())
                    .app_data(hashing.clone())
                    .app_data(sessions.clone())
                    .app_data(hub.clone())
                    .app_data(markets.clone())
                    .app_data(limiter.clone())
                    .app_data(client.clone())
                    .app_data(upstreams.clone())
                    .app_data(secret.clone())
                    .app_data(dead_letters.clone())
                    .app_data(inspector.clone())
                    .app_data(bourse_common::error::json_config(body_limit))
                    .configure(proxy::api_docs)
                    .route("/ws", web::get().to(ws::connect))
                    .configure(explorer::configure)
                    .service(
                        web::scope("/api")
                            .wrap(middleware::from_fn(ratelimit::limit))
                            .configure(users::configure)
                            .configure(operator::configure)
                            .configure(trace::configure)
                            .default_service(web::to(proxy::forward)),
                    );
            }),
            openapi: {
                let mut api = Api::openapi();
                api.merge(operator::Api::openapi());
                api.merge(trace::Api::openapi());
                api
            },
            api_docs: std::iter::once(("bourse (every route)", bourse_common::service::MERGED_API_DOC))
                .chain(BEHIND_GATEWAY.iter().map(|s| (s.name, s.api_doc)))
                .collect(),
            upstreams: probes,
            background: vec![feed, trace::indexer()],
            ..Default::default()
        })
    }
}
