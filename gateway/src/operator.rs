//! Dead letters for operators, over REST (administrators only): what each
//! consumer queue has parked, each letter with its error and attempts,
//! replay (one, or all of a queue) and discard with a reason. The same
//! operations as `bourse dead-letters` ([`deadletter`]): one implementation,
//! two front ends.
//!
//! A replay is safe while the consumer's inbox still remembers the message
//! id (`messaging.inbox_retention_hours`): a copy already applied is skipped.
//! An older letter would be applied again, so it is refused (409, it stays
//! parked) unless the operator forces it. Every replay and discard is
//! recorded: who, when, which letter, why (`GET /api/admin/dead-letter-actions`).

use std::time::Duration;

use actix_web::{HttpResponse, http::StatusCode, web};
use bourse_common::auth::Caller;
use bourse_common::db::{Db, DbConnection, DbError};
use bourse_common::deadletter::{self, DeadLetter, Refused, ReplayPolicy, Replayed};
use bourse_common::error::ApiError;
use bourse_common::paging::{Page, PageQuery};
use bourse_common::registry::ServiceInfo;
use bourse_common::{micros_to_time, now_micros};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::users::sessions::Admin;

/// Where the dead letters are, and how long the consumers remember a message id.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pub amqp_url: String,
    pub inbox_retention: Duration,
    /// Every consumer queue of the stack (matching-service's of each market
    /// the gateway knows), with the service that consumes it.
    pub queues: Vec<(&'static ServiceInfo, String)>,
}

impl DeadLetters {
    fn policy(&self, force: bool) -> ReplayPolicy {
        if force { ReplayPolicy::forced() } else { ReplayPolicy::within(self.inbox_retention) }
    }

    /// A consumer queue of the stack by name: 404 for any other.
    fn known_queue(&self, queue: &str) -> Result<&str, ApiError> {
        self.queues
            .iter()
            .map(|(_, q)| q.as_str())
            .find(|q| *q == queue)
            .ok_or_else(|| ApiError::not_found("unknown_queue", format!("no consumer queue {queue}")))
    }

    /// The names of every consumer queue.
    pub fn names(&self) -> Vec<&str> {
        self.queues.iter().map(|(_, q)| q.as_str()).collect()
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/dead-letters", web::get().to(queues))
        .route("/admin/dead-letter-actions", web::get().to(actions))
        .route("/admin/dead-letters/{queue}", web::get().to(letters))
        .route("/admin/dead-letters/{queue}/replay-all", web::post().to(replay_all))
        .route("/admin/dead-letters/{queue}/{id}/replay", web::post().to(replay_one))
        .route("/admin/dead-letters/{queue}/{id}/discard", web::post().to(discard));
}

pub(crate) fn broker(e: anyhow::Error) -> ApiError {
    // The broker's 404: a dead-letter queue its service never declared (chain-service's
    // settlements, on a stack that does not settle on chain).
    let missing = e.chain().filter_map(|c| c.downcast_ref::<lapin::Error>()).any(|e| {
        use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
        matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if *p.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    });
    if missing {
        return ApiError::not_found(
            "queue_not_declared",
            "this queue's service never declared it on this broker",
        );
    }
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", format!("the broker: {e:#}"))
}

fn no_letter(queue: &str, id: Uuid) -> ApiError {
    ApiError::not_found("dead_letter_not_found", format!("no message {id} is parked in {queue}.dlq"))
}

/// A consumer queue and how many messages it has parked.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueLetters {
    pub queue: String,
    /// The service that consumes it.
    pub service: String,
    /// Parked in `<queue>.dlq`; none when the queue is not declared (its service never started).
    pub dead_letters: Option<u32>,
}

/// One parked message.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Letter {
    pub queue: String,
    /// Absent when the body is not a message envelope (`raw` holds it).
    pub message_id: Option<Uuid>,
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    /// Its saga: an order, trigger, user or withdrawal id.
    pub correlation_id: Option<String>,
    pub producer: Option<String>,
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why its consumer parked it, and after how many attempts.
    pub error: Option<String>,
    pub attempts: Option<u32>,
    #[schema(value_type = Object)]
    pub payload: Option<serde_json::Value>,
    pub raw: Option<String>,
}

impl From<DeadLetter> for Letter {
    fn from(d: DeadLetter) -> Self {
        let e = d.envelope;
        Self {
            queue: d.queue,
            message_id: e.as_ref().map(|e| e.message_id),
            message_type: e.as_ref().map(|e| e.message_type.clone()),
            correlation_id: e.as_ref().map(|e| e.correlation_id.clone()),
            producer: e.as_ref().map(|e| e.producer.clone()),
            occurred_at: e.as_ref().map(|e| e.occurred_at),
            error: d.error,
            attempts: d.attempts,
            payload: e.as_ref().map(|e| e.payload.clone()),
            raw: e.is_none().then_some(d.raw),
        }
    }
}

/// A replay asked for.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Replay letters older than the inbox window too: only once you know they were never applied.
    #[serde(default)]
    pub force: bool,
    /// Why, for the record.
    pub reason: Option<String>,
}

/// A discard asked for.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscardRequest {
    /// Why the message may be dropped for good: required, recorded.
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LettersQuery {
    /// At most this many (default 100, at most 1000).
    pub max: Option<usize>,
}

/// Every consumer queue with its count of dead letters.
#[utoipa::path(
    get,
    path = "/api/admin/dead-letters",
    tag = "operators",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<QueueLetters>),
        (status = 401, description = "no valid token"),
        (status = 403, description = "not an administrator"),
        (status = 503, description = "the broker is unreachable"),
    )
)]
pub async fn queues(Admin(_): Admin, letters: web::Data<DeadLetters>) -> Result<HttpResponse, ApiError> {
    let counts = deadletter::counts(&letters.amqp_url, &letters.names()).await.map_err(broker)?;
    let body: Vec<QueueLetters> = letters
        .queues
        .iter()
        .zip(counts)
        .map(|((service, _), (queue, dead_letters))| QueueLetters {
            queue,
            service: service.name.to_string(),
            dead_letters,
        })
        .collect();
    Ok(HttpResponse::Ok().json(body))
}

/// The dead letters of one queue, oldest first, left parked.
#[utoipa::path(
    get,
    path = "/api/admin/dead-letters/{queue}",
    tag = "operators",
    security(("bearer" = [])),
    params(("queue" = String, Path, description = "a consumer queue, e.g. payment-service.matching"), LettersQuery),
    responses(
        (status = 200, body = Vec<Letter>),
        (status = 401, description = "no valid token"),
        (status = 403, description = "not an administrator"),
        (status = 404, description = "no such consumer queue"),
        (status = 503, description = "the broker is unreachable"),
    )
)]
pub async fn letters(
    Admin(_): Admin,
    path: web::Path<String>,
    query: web::Query<LettersQuery>,
    letters: web::Data<DeadLetters>,
) -> Result<HttpResponse, ApiError> {
    let queue = letters.known_queue(&path)?;
    let max = query.max.unwrap_or(100).clamp(1, 1000);
    let parked = deadletter::list(&letters.amqp_url, queue, max).await.map_err(broker)?;
    Ok(HttpResponse::Ok().json(parked.into_iter().map(Letter::from).collect::<Vec<_>>()))
}

/// Replays every dead letter of a queue into it; those older than the inbox
/// window stay parked and are listed (`refused`) unless forced.
#[utoipa::path(
    post,
    path = "/api/admin/dead-letters/{queue}/replay-all",
    tag = "operators",
    security(("bearer" = [])),
    params(("queue" = String, Path)),
    request_body = ReplayRequest,
    responses(
        (status = 200, body = Replayed),
        (status = 401, description = "no valid token"),
        (status = 403, description = "not an administrator"),
        (status = 404, description = "no such consumer queue"),
        (status = 503, description = "the broker is unreachable"),
    )
)]
pub async fn replay_all(
    Admin(caller): Admin,
    path: web::Path<String>,
    body: Option<web::Json<ReplayRequest>>,
    db: web::Data<Db>,
    letters: web::Data<DeadLetters>,
) -> Result<HttpResponse, ApiError> {
    let queue = letters.known_queue(&path)?;
    let ask = body.map(web::Json::into_inner).unwrap_or_default();
    let outcome = deadletter::replay(&letters.amqp_url, queue, usize::MAX, letters.policy(ask.force))
        .await
        .map_err(broker)?;
    let action =
        Action::new(&caller, queue, ActionKind::ReplayAll, None, ask.reason, ask.force, outcome.replayed);
    record(&db, action).await?;
    Ok(HttpResponse::Ok().json(outcome))
}

/// Replays one dead letter into its queue: 409 if it is older than the
/// inbox window and not forced (it stays parked, the answer says why).
#[utoipa::path(
    post,
    path = "/api/admin/dead-letters/{queue}/{id}/replay",
    tag = "operators",
    security(("bearer" = [])),
    params(("queue" = String, Path), ("id" = Uuid, Path, description = "the message id")),
    request_body = ReplayRequest,
    responses(
        (status = 200, body = Replayed, description = "back in its queue; if it was applied before, its consumer's inbox skips it"),
        (status = 401, description = "no valid token"),
        (status = 403, description = "not an administrator"),
        (status = 404, description = "no such queue, or no such message parked in it"),
        (status = 409, description = "older than the inbox window: it would be applied again if it was before; force it once you know it was not"),
        (status = 503, description = "the broker is unreachable"),
    )
)]
pub async fn replay_one(
    Admin(caller): Admin,
    path: web::Path<(String, Uuid)>,
    body: Option<web::Json<ReplayRequest>>,
    db: web::Data<Db>,
    letters: web::Data<DeadLetters>,
) -> Result<HttpResponse, ApiError> {
    let (queue, id) = path.into_inner();
    let queue = letters.known_queue(&queue)?;
    let ask = body.map(web::Json::into_inner).unwrap_or_default();
    let outcome = deadletter::replay_one(&letters.amqp_url, queue, id, letters.policy(ask.force))
        .await
        .map_err(broker)?
        .ok_or_else(|| no_letter(queue, id))?;
    if let Some(refused) = outcome.refused.first() {
        return Err(replay_refused(refused.to_string()));
    }
    let letter = Some((id, None));
    let action =
        Action::new(&caller, queue, ActionKind::Replay, letter, ask.reason, ask.force, outcome.replayed);
    record(&db, action).await?;
    Ok(HttpResponse::Ok().json(outcome))
}

/// 409 `replay_refused`: a message older than the inbox window, not forced.
pub(crate) fn replay_refused(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "replay_refused", why)
}

/// Drops one dead letter for good, with the reason recorded.
#[utoipa::path(
    post,
    path = "/api/admin/dead-letters/{queue}/{id}/discard",
    tag = "operators",
    security(("bearer" = [])),
    params(("queue" = String, Path), ("id" = Uuid, Path, description = "the message id")),
    request_body = DiscardRequest,
    responses(
        (status = 200, body = Action, description = "discarded and recorded"),
        (status = 401, description = "no valid token"),
        (status = 403, description = "not an administrator"),
        (status = 404, description = "no such queue, or no such message parked in it"),
        (status = 422, description = "no reason given"),
        (status = 503, description = "the broker is unreachable"),
    )
)]
pub async fn discard(
    Admin(caller): Admin,
    path: web::Path<(String, Uuid)>,
    body: web::Json<DiscardRequest>,
    db: web::Data<Db>,
    letters: web::Data<DeadLetters>,
) -> Result<HttpResponse, ApiError> {
    let (queue, id) = path.into_inner();
    let queue = letters.known_queue(&queue)?;
    let reason = body.into_inner().reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::unprocessable("reason_required", "say why the message may be dropped"));
    }
    let letter = deadletter::discard(&letters.amqp_url, queue, id)
        .await
        .map_err(broker)?
        .ok_or_else(|| no_letter(queue, id))?;
    let kind = letter.envelope.as_ref().map(|e| e.message_type.clone());
    let action = Action::new(&caller, queue, ActionKind::Discard, Some((id, kind)), Some(reason), false, 0);
    Ok(HttpResponse::Ok().json(record(&db, action).await?))
}

/// The recorded replays and discards, newest first.
#[utoipa::path(
    get,
    path = "/api/admin/dead-letter-actions",
    tag = "operators",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, body = Page<Action>),
        (status = 400, description = "bad page"),
        (status = 401, description = "no valid token"),
        (status = 403, description = "not an administrator"),
    )
)]
pub async fn actions(
    Admin(_): Admin,
    query: web::Query<PageQuery>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let (page, per_page, offset) = query.into_inner().resolve()?;
    let (rows, total) = db.read(move |c| list(c, per_page, offset).map_err(DbError::from)).await?;
    let items = rows.into_iter().map(Action::from).collect();
    Ok(HttpResponse::Ok().json(Page { items, page, per_page, total }))
}

bourse_common::named_enum! {
    /// What an operator did with dead letters.
    #[derive(utoipa::ToSchema)]
    pub enum ActionKind {
        Replay = "replay",
        ReplayAll = "replay_all",
        Discard = "discard",
        /// A logged message published again (`queue` holds the exchange).
        Republish = "republish",
    }
}

/// A replay or discard, as recorded.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Action {
    pub id: Uuid,
    pub queue: String,
    pub action: ActionKind,
    /// The letter (none for `replay_all`).
    pub message_id: Option<Uuid>,
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    pub reason: Option<String>,
    pub forced: bool,
    /// Messages put back into the queue.
    pub replayed: i64,
    /// The administrator.
    pub by: Uuid,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Action {
    pub(crate) fn new(
        caller: &Caller,
        queue: &str,
        action: ActionKind,
        letter: Option<(Uuid, Option<String>)>,
        reason: Option<String>,
        forced: bool,
        replayed: usize,
    ) -> Self {
        let (message_id, message_type) = letter.map_or((None, None), |(id, kind)| (Some(id), kind));
        Self {
            id: Uuid::now_v7(),
            queue: queue.to_string(),
            action,
            message_id,
            message_type,
            reason,
            forced,
            replayed: i64::try_from(replayed).unwrap_or(i64::MAX),
            by: caller.user_id,
            at: micros_to_time(now_micros()),
        }
    }
}

diesel::table! {
    dead_letter_actions (id) {
        id -> Text,
        queue -> Text,
        action -> Text,
        message_id -> Nullable<Text>,
        message_type -> Nullable<Text>,
        reason -> Nullable<Text>,
        forced -> Bool,
        replayed -> BigInt,
        actor_id -> Text,
        at -> BigInt,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = dead_letter_actions)]
struct ActionRow {
    id: String,
    queue: String,
    action: String,
    message_id: Option<String>,
    message_type: Option<String>,
    reason: Option<String>,
    forced: bool,
    replayed: i64,
    actor_id: String,
    at: i64,
}

impl From<ActionRow> for Action {
    fn from(r: ActionRow) -> Self {
        Self {
            id: r.id.parse().unwrap_or_default(),
            queue: r.queue,
            action: r.action.parse().unwrap_or(ActionKind::Replay),
            message_id: r.message_id.and_then(|id| id.parse().ok()),
            message_type: r.message_type,
            reason: r.reason,
            forced: r.forced,
            replayed: r.replayed,
            by: r.actor_id.parse().unwrap_or_default(),
            at: micros_to_time(r.at),
        }
    }
}

/// Stores `action`; returns it.
pub(crate) async fn record(db: &Db, action: Action) -> Result<Action, ApiError> {
    let row = ActionRow {
        id: action.id.to_string(),
        queue: action.queue.clone(),
        action: action.action.to_string(),
        message_id: action.message_id.map(|id| id.to_string()),
        message_type: action.message_type.clone(),
        reason: action.reason.clone(),
        forced: action.forced,
        replayed: action.replayed,
        actor_id: action.by.to_string(),
        at: action.at.timestamp_micros(),
    };
    db.write(move |c| {
        diesel::insert_into(dead_letter_actions::table).values(&row).execute(c).map_err(DbError::from)
    })
    .await?;
    Ok(action)
}

/// The actions on any of `messages`, oldest first.
pub(crate) async fn actions_on(db: &Db, messages: Vec<Uuid>) -> Result<Vec<Action>, ApiError> {
    let ids: Vec<String> = messages.iter().map(Uuid::to_string).collect();
    let rows = db
        .read(move |c| {
            dead_letter_actions::table
                .filter(dead_letter_actions::message_id.eq_any(ids))
                .order((dead_letter_actions::at.asc(), dead_letter_actions::id.asc()))
                .select(ActionRow::as_select())
                .load(c)
                .map_err(DbError::from)
        })
        .await?;
    Ok(rows.into_iter().map(Action::from).collect())
}

fn list(conn: &mut DbConnection, limit: i64, offset: i64) -> QueryResult<(Vec<ActionRow>, i64)> {
    let rows = dead_letter_actions::table
        .order((dead_letter_actions::at.desc(), dead_letter_actions::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(ActionRow::as_select())
        .load(conn)?;
    let total = dead_letter_actions::table.count().get_result(conn)?;
    Ok((rows, total))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(queues, letters, replay_all, replay_one, discard, actions),
    components(schemas(QueueLetters, Letter, ReplayRequest, DiscardRequest, Replayed, Refused, Action, ActionKind, Page<Action>)),
    tags((name = "operators", description = "dead letters: list, replay (safe within the inbox window), discard with a reason; every action recorded"))
)]
pub struct Api;
