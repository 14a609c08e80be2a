//! Sagas and the event log for operators, over REST (administrators only):
//! the trace of a saga, the log read from an offset, a time or a type, each
//! service's outbox, and the safe republishing of a logged message.
//!
//! Traces and reads go to the log's index ([`logindex`]), which the gateway
//! keeps in its database by following `bourse.event-log` ([`indexer`]): a
//! trace costs the saga's size, not the log's. Where each message stands now
//! comes from the services themselves ([`inspect`]: what is still in an
//! outbox, which consumer applied what and when) and from the dead-letter
//! queues.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use bourse_common::auth::InternalSecret;
use bourse_common::bus::Bus;
use bourse_common::db::{Db, DbError};
use bourse_common::deadletter;
use bourse_common::error::ApiError;
use bourse_common::eventlog::{self, LoggedMessage, StreamOffset};
use bourse_common::inspect::{self, Applied, OutboxView, SagaView};
use bourse_common::logindex::{self, Traced};
use bourse_common::paging::{Page, PageQuery};
use bourse_common::registry;
use bourse_common::service::{BackgroundTask, Readiness};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Upstreams;
use crate::operator::{self, Action, ActionKind, DeadLetters, Letter, ReplayRequest};
use crate::users::sessions::Admin;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/trace/{id}", web::get().to(trace))
        .route("/admin/events", web::get().to(events))
        .route("/admin/outbox", web::get().to(outboxes))
        .route("/admin/health", web::get().to(health))
        .route("/admin/messages/{id}/republish", web::post().to(republish));
}

/// The task that keeps the event log's index in the gateway's database; its
/// health is the `log-index` component of the gateway's readiness.
pub fn indexer() -> BackgroundTask {
    Box::new(move |bus, shutdown| {
        Box::pin(logindex::follow(bus.clone(), bus.metrics.component("log-index"), shutdown))
    })
}

/// One message of the log.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEntry {
    /// Its offset in `bourse.event-log`.
    pub offset: u64,
    pub message_id: Uuid,
    #[serde(rename = "type")]
    pub message_type: String,
    /// Its saga: an order, trigger, user or withdrawal id.
    pub correlation_id: String,
    /// The message that caused it; none for one caused by a request.
    pub causation_id: Option<Uuid>,
    /// The service that wrote it.
    pub producer: String,
    pub exchange: String,
    pub routing_key: String,
    pub occurred_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<LoggedMessage> for LogEntry {
    fn from(m: LoggedMessage) -> Self {
        let e = m.envelope;
        Self {
            offset: m.offset,
            message_id: e.message_id,
            message_type: e.message_type,
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            producer: e.producer,
            exchange: m.exchange,
            routing_key: m.routing_key,
            occurred_at: e.occurred_at,
            payload: e.payload,
        }
    }
}

bourse_common::named_enum! {
    /// Where a logged message stands now.
    #[derive(utoipa::ToSchema)]
    pub enum Standing {
        /// A consumer applied it (see `applied_by`).
        Applied = "applied",
        /// Parked in a dead-letter queue (see `parked_in`).
        Parked = "parked",
        /// A consumer failed it and it waits in a retry tier (see `retries`).
        Retrying = "retrying",
        /// Published; no consumer recorded it yet: on its way (or past the inbox window).
        Published = "published",
        /// Published for readers that keep no inbox (the live feed, the event log):
        /// no service's consumer takes it.
        Broadcast = "broadcast",
    }
}

/// A state its saga entered with this message (its payload's `status`).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transition {
    /// The state before, as the saga's previous message of the same type said; none for the first.
    pub from: Option<String>,
    pub to: String,
}

/// A consumer that applied a message.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedBy {
    pub service: String,
    /// Its queue.
    pub consumer: String,
    pub at: DateTime<Utc>,
}

/// A message of a saga, with what became of it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    #[serde(flatten)]
    pub message: LogEntry,
    pub standing: Standing,
    pub transition: Option<Transition>,
    pub applied_by: Vec<AppliedBy>,
    /// The dead-letter queues it is parked in.
    pub parked_in: Vec<String>,
    /// The consumers that failed it and sent it to a retry tier (their last attempt).
    pub retries: Vec<RetryNote>,
    /// The messages it caused.
    pub caused: Vec<Uuid>,
    /// Offsets of its later copies in the log (republished).
    pub republished_at: Vec<u64>,
}

/// A consumer's failed attempt at a message, waiting in a retry tier.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetryNote {
    pub service: String,
    /// Its queue.
    pub consumer: String,
    /// The attempt the tier hands it back for (the first delivery is attempt 1).
    pub attempt: i32,
    /// Why the last attempt failed.
    pub error: String,
    pub retry_at: DateTime<Utc>,
}

/// A message written to an outbox and not in the log yet.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Waiting {
    pub service: String,
    pub message_id: String,
    #[serde(rename = "type")]
    pub message_type: String,
    pub written_at: DateTime<Utc>,
    /// A command no queue takes yet.
    pub parked: bool,
}

/// Every message of a saga in causal order, and where it stands.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trace {
    pub id: String,
    pub steps: Vec<Step>,
    /// Written to an outbox, not published yet (or not indexed yet).
    pub waiting: Vec<Waiting>,
    /// Dead letters of the saga.
    pub dead_letters: Vec<Letter>,
    /// What operators did with its messages (replays, discards, republishes).
    pub actions: Vec<Action>,
    /// Services that did not answer: where their consumers stand is unknown.
    pub unreachable: Vec<String>,
}

/// Asks the services behind the gateway what they know (their `/internal/*`
/// routes, as an administrator with the gateway's proof); the gateway's own
/// answer comes from its [`Bus`].
#[derive(Debug, Clone)]
pub struct Inspector {
    pub client: reqwest::Client,
    pub upstreams: Upstreams,
    pub secret: InternalSecret,
}

impl Inspector {
    /// Each service's answer to `path`, the gateway's own (`local`) first;
    /// the names of those that did not answer.
    async fn ask<T: serde::de::DeserializeOwned>(&self, path: &str, local: T) -> (Vec<T>, Vec<String>) {
        let (answers, unreachable) = self.ask_named(path, local).await;
        (answers.into_iter().map(|(_, a)| a).collect(), unreachable)
    }

    /// As [`Inspector::ask`], each answer with its service's name.
    async fn ask_named<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        local: T,
    ) -> (Vec<(&'static str, T)>, Vec<String>) {
        let calls = self.upstreams.services().map(|(service, url)| async move {
            let mut request = self
                .client
                .get(format!("{}{path}", url.trim_end_matches('/')))
                .timeout(std::time::Duration::from_secs(5));
            for (name, value) in self.secret.admin_headers("GET", path) {
                request = request.header(name, value);
            }
            let answer = match request.send().await {
                // A readiness that is not ready answers 503 with its checks.
                Ok(a) if a.status().is_success() || a.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    a.json::<T>().await.map_err(|e| e.to_string())
                }
                Ok(a) => Err(a.status().to_string()),
                Err(e) => Err(e.to_string()),
            };
            answer.map(|a| (service.name, a)).map_err(|e| {
                tracing::warn!(service = service.name, path, error = %e, "an operator's question went unanswered");
                service.name.to_string()
            })
        });
        let mut answers = vec![(registry::GATEWAY.name, local)];
        let mut unreachable = Vec::new();
        for answer in futures::future::join_all(calls).await {
            match answer {
                Ok(a) => answers.push(a),
                Err(name) => unreachable.push(name),
            }
        }
        (answers, unreachable)
    }

    /// What every service knows of saga `id`.
    async fn sagas(&self, bus: &Bus, id: &str) -> Result<(Vec<SagaView>, Vec<String>), ApiError> {
        // The gateway's own consumers: none (its live feed and log indexer keep no inbox).
        let local = inspect::saga(bus, &inspect::Consumed::default(), id.to_string()).await?;
        Ok(self.ask(&format!("{}/{id}", inspect::SAGA_PATH), local).await)
    }
}

/// A saga id as services write them (UUIDs, market names): 400 for anything else.
fn saga_id(id: String) -> Result<String, ApiError> {
    let fits = !id.is_empty()
        && id.len() <= 100
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    fits.then_some(id).ok_or_else(|| {
        ApiError::bad_request(
            "bad_saga_id",
            "a saga id is letters, digits, `-`, `_` and `.` (an order, user, trigger or withdrawal id)",
        )
    })
}

/// The trace of a saga: each message in causal order with its producer,
/// consumers, time, payload and the state it moved the saga to, and where
/// it stands now (waiting in an outbox, applied, parked).
#[utoipa::path(
    get,
    path = "/api/admin/trace/{id}",
    tag = "operators",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a saga: an order, trigger, user or withdrawal id")),
    responses(
        (status = 200, body = Trace),
        (status = 400, description = "not a saga id", body = bourse_common::error::ErrorBody),
        (status = 401, description = "no valid token", body = bourse_common::error::ErrorBody),
        (status = 403, description = "not an administrator", body = bourse_common::error::ErrorBody),
        (status = 404, description = "no message of this saga was logged or is waiting", body = bourse_common::error::ErrorBody),
        (status = 503, description = "the database or the broker is unreachable", body = bourse_common::error::ErrorBody),
    )
)]
pub async fn trace(
    Admin(_): Admin,
    path: web::Path<String>,
    db: web::Data<Db>,
    bus: web::Data<Bus>,
    inspector: web::Data<Inspector>,
    letters: web::Data<DeadLetters>,
) -> Result<HttpResponse, ApiError> {
    let id = saga_id(path.into_inner())?;
    let saga = id.clone();
    let traced = db.read(move |c| logindex::saga(c, &saga).map_err(DbError::from)).await?;
    let (views, unreachable) = inspector.sagas(&bus, &id).await?;
    let dead_letters = saga_letters(&letters, &id).await?;
    let ids: Vec<Uuid> = traced.iter().map(|t| t.entry.envelope.message_id).collect();
    let actions = operator::actions_on(&db, ids).await?;
    let trace = assemble(id, traced, &views, dead_letters, actions, unreachable);
    if trace.steps.is_empty() && trace.waiting.is_empty() && trace.dead_letters.is_empty() {
        return Err(ApiError::not_found(
            "saga_not_found",
            format!("no message of saga {} was logged", trace.id),
        ));
    }
    Ok(HttpResponse::Ok().json(trace))
}

/// The dead letters of saga `id` in every consumer queue.
async fn saga_letters(letters: &DeadLetters, id: &str) -> Result<Vec<Letter>, ApiError> {
    let amqp_url = &letters.amqp_url;
    let counts = deadletter::counts(amqp_url, &letters.names()).await.map_err(operator::broker)?;
    let mut found = Vec::new();
    for (queue, count) in counts {
        if count.unwrap_or(0) == 0 {
            continue;
        }
        let parked = deadletter::list(amqp_url, &queue, 1_000).await.map_err(operator::broker)?;
        found.extend(
            parked
                .into_iter()
                .filter(|d| d.envelope.as_ref().is_some_and(|e| e.correlation_id == id))
                .map(Letter::from),
        );
    }
    Ok(found)
}

/// Every message the services say they applied, with who applied it and when.
fn applications(views: &[SagaView]) -> impl Iterator<Item = (&str, AppliedBy)> {
    views.iter().flat_map(|view| {
        view.applied.iter().map(move |Applied { consumer, message_id, at, .. }| {
            (
                message_id.as_str(),
                AppliedBy { service: view.service.clone(), consumer: consumer.clone(), at: *at },
            )
        })
    })
}

/// A trace from the saga's logged messages and what the services and the
/// dead-letter queues say of them. Pure.
fn assemble(
    id: String,
    traced: Vec<Traced>,
    views: &[SagaView],
    dead_letters: Vec<Letter>,
    actions: Vec<Action>,
    unreachable: Vec<String>,
) -> Trace {
    let mut applied: HashMap<String, Vec<AppliedBy>> = HashMap::new();
    for (message_id, by) in applications(views) {
        applied.entry(message_id.to_string()).or_default().push(by);
    }
    let mut retries: HashMap<String, Vec<RetryNote>> = HashMap::new();
    for view in views {
        for r in &view.retrying {
            retries.entry(r.message_id.clone()).or_default().push(RetryNote {
                service: view.service.clone(),
                consumer: r.consumer.clone(),
                attempt: r.attempt,
                error: r.error.clone(),
                retry_at: r.retry_at,
            });
        }
    }
    let mut caused: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for t in &traced {
        if let Some(cause) = t.entry.envelope.causation_id {
            caused.entry(cause).or_default().push(t.entry.envelope.message_id);
        }
    }
    let logged: std::collections::HashSet<String> =
        traced.iter().map(|t| t.entry.envelope.message_id.to_string()).collect();
    let mut states: HashMap<String, String> = HashMap::new();
    let steps = traced
        .into_iter()
        .map(|Traced { entry, copies }| {
            let message_id = entry.envelope.message_id;
            let mut applied_by = applied.remove(&message_id.to_string()).unwrap_or_default();
            applied_by.sort_by_key(|a| a.at);
            let parked_in: Vec<String> = dead_letters
                .iter()
                .filter(|l| l.message_id == Some(message_id))
                .map(|l| format!("{}.dlq", l.queue))
                .collect();
            let transition = entry.envelope.payload.get("status").and_then(|s| s.as_str()).map(|to| {
                let from = states.insert(entry.envelope.message_type.clone(), to.to_string());
                Transition { from, to: to.to_string() }
            });
            // A consumer that applied it after a retry has it in its inbox: those
            // retries are over; the others still wait in their tier.
            let retries: Vec<RetryNote> = retries
                .remove(&message_id.to_string())
                .unwrap_or_default()
                .into_iter()
                .filter(|r| !applied_by.iter().any(|a| a.consumer == r.consumer))
                .collect();
            let standing = if !parked_in.is_empty() {
                Standing::Parked
            } else if !retries.is_empty() {
                Standing::Retrying
            } else if !applied_by.is_empty() {
                Standing::Applied
            } else if unreachable.is_empty()
                && !views
                    .iter()
                    .flat_map(|v| &v.consumes)
                    .any(|b| b.takes(&entry.exchange, &entry.routing_key))
            {
                Standing::Broadcast
            } else {
                Standing::Published
            };
            Step {
                standing,
                transition,
                applied_by,
                parked_in,
                retries,
                caused: caused.remove(&message_id).unwrap_or_default(),
                republished_at: copies,
                message: LogEntry::from(entry),
            }
        })
        .collect();
    let waiting = views
        .iter()
        .flat_map(|v| {
            v.outbox.iter().filter(|o| !logged.contains(&o.message_id)).map(|o| Waiting {
                service: v.service.clone(),
                message_id: o.message_id.clone(),
                message_type: o.message_type.clone(),
                written_at: o.written_at,
                parked: o.parked,
            })
        })
        .collect();
    Trace { id, steps, waiting, dead_letters, actions, unreachable }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// `first` (the default), an offset, or an RFC 3339 time.
    pub from: Option<String>,
    /// Only messages of this type (e.g. `order.updated`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub message_type: Option<String>,
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

/// The event log (every event and command), from an offset or a time, of a
/// type, a page at a time, in log order.
#[utoipa::path(
    get,
    path = "/api/admin/events",
    tag = "operators",
    security(("bearer" = [])),
    params(EventsQuery),
    responses(
        (status = 200, body = Page<LogEntry>),
        (status = 400, description = "bad `from` or page", body = bourse_common::error::ErrorBody),
        (status = 401, description = "no valid token", body = bourse_common::error::ErrorBody),
        (status = 403, description = "not an administrator", body = bourse_common::error::ErrorBody),
    )
)]
pub async fn events(
    Admin(_): Admin,
    query: web::Query<EventsQuery>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let from = query
        .from
        .as_deref()
        .map(str::parse::<StreamOffset>)
        .transpose()
        .map_err(|e| ApiError::bad_request("bad_from", e))?;
    let (page, per_page, skip) = PageQuery { page: query.page, per_page: query.per_page }.resolve()?;
    let filter = logindex::Filter { from, message_type: query.message_type };
    let (rows, total) =
        db.read(move |c| logindex::read(c, &filter, per_page, skip).map_err(DbError::from)).await?;
    let items = rows.into_iter().map(LogEntry::from).collect();
    Ok(HttpResponse::Ok().json(Page { items, page, per_page, total }))
}

/// A service's outbox, or why it did not say.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceOutbox {
    pub service: String,
    pub outbox: Option<OutboxView>,
    /// Set when the service did not answer.
    pub error: Option<String>,
}

/// Each service's outbox: backlog, the oldest row's age, parked commands,
/// its relay's last publish.
#[utoipa::path(
    get,
    path = "/api/admin/outbox",
    tag = "operators",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<ServiceOutbox>),
        (status = 401, description = "no valid token", body = bourse_common::error::ErrorBody),
        (status = 403, description = "not an administrator", body = bourse_common::error::ErrorBody),
        (status = 503, description = "the gateway's database is unreachable", body = bourse_common::error::ErrorBody),
    )
)]
pub async fn outboxes(
    Admin(_): Admin,
    bus: web::Data<Bus>,
    inspector: web::Data<Inspector>,
) -> Result<HttpResponse, ApiError> {
    let local = inspect::outbox(&bus).await?;
    let (views, unreachable) = inspector.ask(inspect::OUTBOX_PATH, local).await;
    let mut body: Vec<ServiceOutbox> = views
        .into_iter()
        .map(|v| ServiceOutbox { service: v.service.clone(), outbox: Some(v), error: None })
        .collect();
    body.extend(unreachable.into_iter().map(|service| ServiceOutbox {
        service,
        outbox: None,
        error: Some("did not answer".into()),
    }));
    Ok(HttpResponse::Ok().json(body))
}

/// A service's readiness, check by check, as the operators see it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceHealth {
    pub service: String,
    /// `ready` or `not_ready`; none when the service did not answer.
    pub status: Option<String>,
    /// Each check and whether it passed: `database`, `relay`, `consumer:<queue>`, `upstream:<service>`.
    pub checks: std::collections::BTreeMap<String, bool>,
    /// Set when the service did not answer.
    pub error: Option<String>,
}

/// Each service's readiness with its checks: the database, the relay, each
/// consumer's broker session (the gateway's: each upstream service).
#[utoipa::path(
    get,
    path = "/api/admin/health",
    tag = "operators",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<ServiceHealth>),
        (status = 401, description = "no valid token", body = bourse_common::error::ErrorBody),
        (status = 403, description = "not an administrator", body = bourse_common::error::ErrorBody),
    )
)]
pub async fn health(
    Admin(_): Admin,
    bus: web::Data<Bus>,
    inspector: web::Data<Inspector>,
) -> Result<HttpResponse, ApiError> {
    let local = Readiness::of(&bus).await;
    let (answers, unreachable) = inspector.ask_named("/health/ready", local).await;
    let mut body: Vec<ServiceHealth> = answers
        .into_iter()
        .map(|(service, readiness)| ServiceHealth {
            service: service.to_string(),
            status: Some(readiness.status),
            checks: readiness.checks,
            error: None,
        })
        .collect();
    body.extend(unreachable.into_iter().map(|service| ServiceHealth {
        service,
        status: None,
        checks: Default::default(),
        error: Some("did not answer".into()),
    }));
    Ok(HttpResponse::Ok().json(body))
}

/// A logged message published again.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Republished {
    pub message_id: Uuid,
    #[serde(rename = "type")]
    pub message_type: String,
    pub exchange: String,
    pub routing_key: String,
    /// Within the inbox window: the consumers that applied it skip it (a harmless redelivery).
    pub redelivery: bool,
    /// The consumers that applied it and will skip it.
    pub applied_by: Vec<AppliedBy>,
    pub forced: bool,
    /// What this means, in a sentence.
    pub note: String,
}

/// Publishes a logged message again where it first went, with the same id.
/// Within the inbox window it is a redelivery its consumers skip (the
/// answer says which); older, a consumer may apply it again: refused (409,
/// naming what it did the first time) unless forced. Recorded either way it went.
#[utoipa::path(
    post,
    path = "/api/admin/messages/{id}/republish",
    tag = "operators",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the message id")),
    request_body = ReplayRequest,
    responses(
        (status = 200, body = Republished),
        (status = 401, description = "no valid token", body = bourse_common::error::ErrorBody),
        (status = 403, description = "not an administrator", body = bourse_common::error::ErrorBody),
        (status = 404, description = "no such message in the event log", body = bourse_common::error::ErrorBody),
        (status = 409, description = "older than the inbox window: it would be applied again; force it once you know it was not", body = bourse_common::error::ErrorBody),
        (status = 503, description = "the broker is unreachable", body = bourse_common::error::ErrorBody),
    )
)]
pub async fn republish(
    Admin(caller): Admin,
    path: web::Path<Uuid>,
    body: Option<web::Json<ReplayRequest>>,
    db: web::Data<Db>,
    bus: web::Data<Bus>,
    inspector: web::Data<Inspector>,
    letters: web::Data<DeadLetters>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let ask = body.map(web::Json::into_inner).unwrap_or_default();
    let plan = db.read(move |c| logindex::Republish::find(c, id).map_err(DbError::from)).await?.ok_or_else(
        || ApiError::not_found("message_not_found", format!("no message {id} in the event log")),
    )?;
    let window = letters.inbox_retention;
    if let Some(why) = plan.refusal(window).filter(|_| !ask.force) {
        return Err(operator::replay_refused(why));
    }
    let redelivery = plan.is_redelivery(window);
    let entry = plan.entry;
    let (views, _) = inspector.sagas(&bus, &entry.envelope.correlation_id).await?;
    let id_text = id.to_string();
    let applied_by: Vec<AppliedBy> =
        applications(&views).filter(|(message_id, _)| *message_id == id_text).map(|(_, by)| by).collect();
    eventlog::republish(&letters.amqp_url, &entry).await.map_err(operator::broker)?;
    let kind = Some(entry.envelope.message_type.clone());
    let action = Action::new(
        &caller,
        &entry.exchange,
        ActionKind::Republish,
        Some((id, kind)),
        ask.reason,
        ask.force,
        1,
    );
    operator::record(&db, action).await?;
    let note = match (redelivery, applied_by.is_empty()) {
        (true, false) => "a redelivery: the consumers that applied it remember it and skip it".to_string(),
        (true, true) => "no consumer recorded it: its consumers apply it now".to_string(),
        (false, _) => "forced past the inbox window: its consumers apply it again".to_string(),
    };
    let body = Republished {
        message_id: id,
        message_type: entry.envelope.message_type,
        exchange: entry.exchange,
        routing_key: entry.routing_key,
        redelivery,
        applied_by,
        forced: ask.force,
        note,
    };
    Ok(HttpResponse::Ok().json(body))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(trace, events, outboxes, health, republish),
    components(schemas(
        Trace,
        Step,
        Standing,
        Transition,
        AppliedBy,
        Waiting,
        LogEntry,
        Page<LogEntry>,
        ServiceOutbox,
        OutboxView,
        Republished
    ))
)]
pub struct Api;
