//! Starting a service: open and migrate its database, start its outbox relay
//! and its consumers (each reconnecting by itself), and serve HTTP with
//! `/health/live`, `/health/ready`, `/metrics`, Swagger UI and the service's
//! own routes. Every service's `run(config)` is a thin call of [`start`], so
//! tests start whole services in-process on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::bus::{Bus, Crashed};
use crate::config::ServiceConfig;
use crate::db::{Db, DbError, MESSAGING_MIGRATIONS, MigrationSet};
use crate::faults::Faults;
use crate::inbox::{Consumer, Consumes};
use crate::metrics::Metrics;
use crate::outbox::{self, Relay};
use crate::registry::ServiceInfo;
use crate::tracecontext::{self, TraceContext};

/// Registers a service's routes; it gets the service's [`Bus`] (database,
/// producer name) to put into its app data.
pub type Routes = Arc<dyn Fn(&mut web::ServiceConfig, &Bus) + Send + Sync>;

/// What a service brings besides its configuration.
pub struct ServiceParts {
    pub migrations: Vec<&'static MigrationSet>,
    pub consumers: Vec<Consumes>,
    pub routes: Routes,
    pub openapi: utoipa::openapi::OpenApi,
    /// More API documents for the Swagger UI's list, as `(name, url)`, after
    /// the service's own (the gateway lists every service's).
    pub api_docs: Vec<(&'static str, &'static str)>,
    /// Services this one forwards to, as `(name, base URL)`: it is ready only
    /// while each of them answers `/health/ready` (the gateway's are every service).
    pub upstreams: Vec<(&'static str, String)>,
    /// More tasks to run beside the consumers, until the service stops.
    pub background: Vec<BackgroundTask>,
    pub faults: Arc<Faults>,
}

/// A task a service runs until the token is cancelled. It is created at
/// start-up with the service's [`Bus`] (register its health there, so that
/// the service is ready only once the task is).
pub type BackgroundTask = Box<
    dyn FnOnce(&Bus, CancellationToken) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send,
>;

impl Default for ServiceParts {
    fn default() -> Self {
        Self {
            migrations: Vec::new(),
            consumers: Vec::new(),
            routes: Arc::new(|_, _| {}),
            openapi: utoipa::openapi::OpenApiBuilder::new().build(),
            api_docs: Vec::new(),
            upstreams: Vec::new(),
            background: Vec::new(),
            faults: Arc::default(),
        }
    }
}

/// A started service.
pub struct RunningService {
    pub name: &'static str,
    pub http_addr: SocketAddr,
    pub bus: Bus,
    shutdown: CancellationToken,
    server: actix_web::dev::ServerHandle,
    server_task: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<Result<(), Crashed>>>,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("name", &self.name)
            .field("http_addr", &self.http_addr)
            .finish()
    }
}

impl RunningService {
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Graceful stop: in-flight requests and batches finish, connections close.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.stop(true).await;
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let _ = self.server_task.await;
    }

    /// As if the process died: every task is aborted where it stands.
    pub async fn kill(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.server.stop(false).await;
        self.server_task.abort();
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Runs until Ctrl-C (or SIGTERM), then stops gracefully.
    pub async fn wait(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!(service = self.name, "stopping");
        self.stop().await;
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Starts a service: database and migrations, relay, consumers, HTTP. Its
/// routes find the [`Bus`], the [`Db`] and the service's settings
/// (`web::Data<S>`) in the app data.
pub async fn start<S>(
    name: &'static str,
    config: &ServiceConfig<S>,
    parts: ServiceParts,
) -> anyhow::Result<RunningService>
where
    S: Clone + Send + Sync + 'static,
{
    // A service behind the gateway believes identities only with the gateway's proof.
    let proof = match crate::registry::BEHIND_GATEWAY.iter().any(|s| s.name == name) {
        true => {
            Some(crate::auth::GatewayProof { secret: config.security.require_internal_secret(name)?.clone() })
        }
        false => config.security.internal_secret.clone().map(|secret| crate::auth::GatewayProof { secret }),
    };
    let proof_state = proof.map(web::Data::new);
    let db = Db::connect(&config.database)?;
    let mut migrations = vec![&MESSAGING_MIGRATIONS];
    migrations.extend(parts.migrations);
    db.migrate(&migrations).await?;

    let bus = Bus {
        producer: name.to_string(),
        db,
        amqp_url: config.amqp.url.clone(),
        config: config.messaging.clone(),
        faults: parts.faults,
        metrics: Arc::new(Metrics::default()),
    };
    let mut openapi = parts.openapi;
    openapi.merge(HealthApi::openapi());
    openapi.info.title = name.to_string();
    crate::apidoc::complete(&mut openapi);
    let mut swagger_urls = vec![utoipa_swagger_ui::Url::new(name, OWN_API_DOC)];
    // The gateway's document of every route opens first.
    swagger_urls.extend(
        parts
            .api_docs
            .into_iter()
            .map(|(n, u)| utoipa_swagger_ui::Url::with_primary(n, u, u == MERGED_API_DOC)),
    );
    let swagger_config = utoipa_swagger_ui::Config::new(swagger_urls).try_it_out_enabled(true);
    let routes = parts.routes;
    let state = web::Data::new(bus.clone());
    let db_state = web::Data::new(bus.db.clone());
    let settings_state = web::Data::new(config.settings.clone());
    let document = web::Data::new(ApiDocument(openapi.clone()));
    let consumed = web::Data::new(crate::inspect::Consumed(
        parts.consumers.iter().flat_map(|c| c.spec.bindings.iter().cloned()).collect(),
    ));
    let app_bus = bus.clone();
    let server = HttpServer::new(move || {
        let routes = routes.clone();
        let app_bus = app_bus.clone();
        let mut app = App::new();
        if let Some(proof) = &proof_state {
            app = app.app_data(proof.clone());
        }
        app.app_data(state.clone())
            .app_data(db_state.clone())
            .app_data(settings_state.clone())
            .app_data(document.clone())
            .app_data(consumed.clone())
            .configure(crate::error::configure_extractors)
            .wrap(actix_web::middleware::from_fn(observe_http))
            .route("/health/live", web::get().to(live))
            .route("/health/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics))
            .configure(crate::inspect::configure)
            .service(
                SwaggerUi::new("/swagger-ui/{_:.*}")
                    .url(OWN_API_DOC, openapi.clone())
                    .config(swagger_config.clone()),
            )
            .configure(move |cfg| routes(cfg, &app_bus))
            .default_service(web::to(crate::error::not_found))
    })
    .workers(config.http.workers.max(1))
    .keep_alive(HTTP_KEEP_ALIVE)
    .disable_signals()
    .shutdown_timeout(5)
    .bind((config.http.host.as_str(), config.http.port))?;
    let http_addr =
        *server.addrs().first().ok_or_else(|| anyhow::anyhow!("the HTTP server bound no address"))?;

    // Bound first, so that a start that fails leaves nothing running.
    let shutdown = CancellationToken::new();
    let mut tasks = vec![tokio::spawn(Relay::new(bus.clone()).run(shutdown.clone()))];
    let retention = crate::retention::run(bus.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move {
        retention.await;
        Ok(())
    }));
    for Consumes { spec, handler } in parts.consumers {
        tasks.push(tokio::spawn(Consumer::new(bus.clone(), spec, handler).run(shutdown.clone())));
    }

    for (upstream, url) in parts.upstreams {
        let health = bus.metrics.component(&format!("upstream:{upstream}"));
        tasks.push(tokio::spawn(probe_upstream(health, upstream, url, shutdown.clone())));
    }

    for task in parts.background {
        let run = task(&bus, shutdown.clone());
        tasks.push(tokio::spawn(async move {
            run.await;
            Ok(())
        }));
    }

    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    tracing::info!(service = name, %http_addr, database = ?bus.db.backend(), "service started");
    Ok(RunningService { name, http_addr, bus, shutdown, server: handle, server_task, tasks })
}

/// Keeps the health of an upstream service up to date, once a second.
async fn probe_upstream(
    health: crate::metrics::ComponentHealth,
    name: &'static str,
    url: String,
    shutdown: CancellationToken,
) -> Result<(), Crashed> {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_idle_timeout(HTTP_CLIENT_IDLE)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for the upstream probe");
            return Ok(());
        }
    };
    loop {
        let ready =
            client.get(format!("{url}/health/ready")).send().await.is_ok_and(|r| r.status().is_success());
        if ready != health.is_up() {
            tracing::info!(upstream = name, ready, "upstream readiness changed");
        }
        health.set(ready);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// How long a service keeps an idle HTTP connection open.
pub const HTTP_KEEP_ALIVE: Duration = Duration::from_secs(75);

/// How long our HTTP clients (the gateway, the bench) keep an idle pooled
/// connection: well under [`HTTP_KEEP_ALIVE`], so that a client never sends a
/// request on a connection the server is closing at that moment ("error
/// sending request", a 503 for a request that may never have arrived).
pub const HTTP_CLIENT_IDLE: Duration = Duration::from_secs(30);

/// Where a service serves its own OpenAPI document.
pub const OWN_API_DOC: &str = "/api-docs/openapi.json";

/// Where the gateway serves one document of every route (its own and each service's).
pub const MERGED_API_DOC: &str = "/api-docs/bourse.json";

/// The service's own OpenAPI document, as app data.
#[derive(Clone)]
pub struct ApiDocument(pub utoipa::openapi::OpenApi);

impl std::fmt::Debug for ApiDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDocument").field("title", &self.0.info.title).finish_non_exhaustive()
    }
}

/// The `bearer` scheme that authenticated routes name in `security(("bearer" = []))`.
#[derive(OpenApi)]
#[openapi(paths(live, ready, metrics))]
struct HealthApi;

/// A service's readiness, check by check.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Each check and whether it passed: `database`, `relay` (connected, whether
    /// it publishes or stands by for another instance), `consumer:<queue>`,
    /// `upstream:<service>` (the gateway's).
    pub checks: std::collections::BTreeMap<String, bool>,
}

impl Readiness {
    /// `bus`'s service's readiness now.
    pub async fn of(bus: &Bus) -> Self {
        let mut checks: std::collections::BTreeMap<String, bool> =
            bus.metrics.components().into_iter().collect();
        checks.insert("database".into(), bus.db.ping().await.is_ok());
        let ok = checks.values().all(|up| *up);
        Self { status: if ok { "ready" } else { "not_ready" }.into(), checks }
    }

    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "alive")))]
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "live"}))
}

/// Readiness: the database answers and every broker session is up.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "not ready", body = Readiness),
    )
)]
async fn ready(bus: web::Data<Bus>) -> HttpResponse {
    let body = Readiness::of(&bus).await;
    if body.is_ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Handles each request in a span of its trace (the caller's `traceparent`
/// continued, or a new trace), and records its latency by method, route
/// pattern (not the path: ids would make a series each) and status.
async fn observe_http(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let bus = req.app_data::<web::Data<Bus>>().cloned();
    let header = req.headers().get(tracecontext::HEADER).and_then(|v| v.to_str().ok());
    let (trace, parent_id) = TraceContext::continuing(header);
    let span = tracing::info_span!(
        "request",
        service = bus.as_ref().map(|b| b.producer.as_str()).unwrap_or_default(),
        method = %method,
        path = req.path(),
        trace_id = %trace.trace_hex(),
        span_id = %trace.span_hex(),
        parent_id,
    );
    let res = tracecontext::scope(trace, next.call(req)).instrument(span).await?;
    if let Some(bus) = bus {
        let label = actix_web::HttpMessage::extensions(res.request())
            .get::<crate::metrics::RouteLabel>()
            .map(|l| l.0.clone());
        let route = label.or_else(|| res.request().match_pattern()).unwrap_or_else(|| "unmatched".into());
        let status = res.status();
        let labels = [("method", method.as_str()), ("route", route.as_str()), ("status", status.as_str())];
        bus.metrics.observe("bourse_http_request_duration_seconds", &labels, started.elapsed());
    }
    Ok(res)
}

/// Prometheus metrics (OpenMetrics text, every family with HELP and TYPE):
/// HTTP requests and message handlers with their latency, saga steps, the
/// outbox backlog, inbox dedupe hits, retries, dead letters, component health.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
async fn metrics(bus: web::Data<Bus>) -> HttpResponse {
    if let Ok(backlog) = bus.db.read(|c| outbox::backlog(c).map_err(DbError::from)).await {
        let m = &bus.metrics;
        m.set_gauge("bourse_outbox_backlog", &[], backlog.pending);
        m.set_gauge("bourse_outbox_oldest_age_seconds", &[], backlog.oldest_age_ms.unwrap_or(0) / 1000);
        m.set_gauge("bourse_outbox_parked", &[], backlog.parked);
    }
    HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(bus.metrics.render())
}

/// A Bourse service: its row of the [registry](crate::registry), its own
/// settings and what it brings to [`start`]. Its crate implements this once;
/// configuration, `run` and the binary's `main` follow from it.
pub trait Service {
    const INFO: &'static ServiceInfo;
    /// The service's own settings (`<PREFIX>__SETTINGS__*`).
    type Settings: Clone + Default + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static;

    /// Checks the settings and assembles the service's parts.
    fn parts(config: &ServiceConfig<Self::Settings>) -> anyhow::Result<ServiceParts>;

    /// The embedded defaults: `./data/<name>.db`, the local RabbitMQ, the default port.
    fn default_config() -> ServiceConfig<Self::Settings> {
        ServiceConfig::defaults(Self::INFO.name, Self::INFO.default_port)
    }

    /// Starts the service: database and migrations, outbox relay, consumers, HTTP.
    fn run(
        config: ServiceConfig<Self::Settings>,
    ) -> impl std::future::Future<Output = anyhow::Result<RunningService>> + Send + 'static {
        async move {
            let parts = Self::parts(&config)?;
            start(Self::INFO.name, &config, parts).await
        }
    }
}

/// The whole `main` of a service binary: telemetry, configuration (defaults,
/// `--config <file>`, `<PREFIX>__*` variables), start, run until Ctrl-C.
pub async fn main<S: Service>() -> anyhow::Result<()> {
    crate::telemetry::init();
    let config = ServiceConfig::load_from_args(S::default_config(), S::INFO.env_prefix)?;
    let service = S::run(config).await?;
    tracing::info!(service = service.name, url = %service.url(), "ready for requests");
    service.wait().await
}
