//! What one service knows of a saga, and of its outbox: the two questions the
//! gateway's operator routes ask every service (`GET /internal/sagas/{id}`,
//! `GET /internal/outbox`; administrators only, through the gateway's proof)
//! to say where each message of a trace stands: still in an outbox, applied
//! by which consumer and when.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::bus::Bus;
use crate::db::DbError;
use crate::error::ApiError;
use crate::micros_to_time;
use crate::outbox;
use crate::schema::{inbox, inbox_retries};
use crate::topology::Binding;

/// The gauge the relay sets after each round it published (Unix seconds).
pub const LAST_PUBLISH_GAUGE: &str = "bourse_outbox_last_publish_timestamp_seconds";

pub const SAGA_PATH: &str = "/internal/sagas";
pub const OUTBOX_PATH: &str = "/internal/outbox";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(&format!("{SAGA_PATH}/{{id}}"), web::get().to(saga_route))
        .route(OUTBOX_PATH, web::get().to(outbox_route));
}

/// A saga as one service saw it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SagaView {
    pub service: String,
    /// Its outbox rows of the saga (sent ones are kept for `messaging.outbox_retention_hours`).
    pub outbox: Vec<Outgoing>,
    /// What its consumers applied of the saga (kept for `messaging.inbox_retention_hours`).
    pub applied: Vec<Applied>,
    /// What its consumers sent to a retry tier (the last attempt of each).
    #[serde(default)]
    pub retrying: Vec<Retrying>,
    /// What its consumer queues are bound to: which messages it applies at all.
    #[serde(default)]
    pub consumes: Vec<Binding>,
}

/// The bindings of a service's consumer queues (app data of its routes).
#[derive(Debug, Clone, Default)]
pub struct Consumed(pub Vec<Binding>);

/// A message a consumer failed and sent to a retry tier.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retrying {
    /// The consumer queue.
    pub consumer: String,
    pub message_id: String,
    #[serde(rename = "type")]
    pub message_type: String,
    /// The attempt the tier hands it back for (the first delivery is attempt 1).
    pub attempt: i32,
    /// Why the last attempt failed.
    pub error: String,
    /// When the tier hands it back.
    pub retry_at: DateTime<Utc>,
}

/// A message a service wrote to its outbox.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outgoing {
    pub message_id: String,
    #[serde(rename = "type")]
    pub message_type: String,
    pub written_at: DateTime<Utc>,
    /// When the relay published it; none while it waits.
    pub sent_at: Option<DateTime<Utc>>,
    /// A command no queue took yet: published again until one does.
    pub parked: bool,
}

/// A message a consumer applied (its inbox row).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    /// The consumer queue.
    pub consumer: String,
    pub message_id: String,
    #[serde(rename = "type")]
    pub message_type: String,
    pub at: DateTime<Utc>,
}

/// A service's outbox as its relay sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutboxView {
    pub service: String,
    /// Rows waiting to be published.
    pub backlog: i64,
    /// How long the oldest of them has waited.
    pub oldest_age_ms: Option<i64>,
    /// Commands no queue took yet.
    pub parked: i64,
    /// When this instance's relay last published a round; none since it started.
    pub last_publish: Option<DateTime<Utc>>,
}

/// What `bus`'s service, whose consumers take `consumed`, knows of saga `id`.
pub async fn saga(bus: &Bus, consumed: &Consumed, id: String) -> Result<SagaView, DbError> {
    let (rows, applied, retrying) = bus
        .db
        .read(move |c| {
            let rows = outbox::by_correlation(c, &id)?;
            let applied = inbox::table
                .filter(inbox::correlation_id.eq(&id))
                .order(inbox::received_at.asc())
                .select((inbox::consumer, inbox::message_id, inbox::message_type, inbox::received_at))
                .load::<(String, String, String, i64)>(c)?;
            let retrying = inbox_retries::table
                .filter(inbox_retries::correlation_id.eq(&id))
                .order(inbox_retries::retry_at.asc())
                .select((
                    inbox_retries::consumer,
                    inbox_retries::message_id,
                    inbox_retries::message_type,
                    inbox_retries::attempt,
                    inbox_retries::error,
                    inbox_retries::retry_at,
                ))
                .load::<(String, String, String, i32, String, i64)>(c)?;
            Ok::<_, DbError>((rows, applied, retrying))
        })
        .await?;
    Ok(SagaView {
        service: bus.producer.clone(),
        outbox: rows
            .into_iter()
            .map(|r| Outgoing {
                parked: r.is_parked(),
                message_id: r.message_id,
                message_type: r.message_type,
                written_at: micros_to_time(r.created_at),
                sent_at: r.sent_at.map(micros_to_time),
            })
            .collect(),
        applied: applied
            .into_iter()
            .map(|(consumer, message_id, message_type, at)| Applied {
                consumer,
                message_id,
                message_type,
                at: micros_to_time(at),
            })
            .collect(),
        retrying: retrying
            .into_iter()
            .map(|(consumer, message_id, message_type, attempt, error, at)| Retrying {
                consumer,
                message_id,
                message_type,
                attempt,
                error,
                retry_at: micros_to_time(at),
            })
            .collect(),
        consumes: consumed.0.clone(),
    })
}

/// `bus`'s service's outbox.
pub async fn outbox(bus: &Bus) -> Result<OutboxView, DbError> {
    let backlog = bus.db.read(|c| outbox::backlog(c).map_err(DbError::from)).await?;
    let last_publish =
        bus.metrics.gauge(LAST_PUBLISH_GAUGE, &[]).and_then(|s| DateTime::from_timestamp(s, 0));
    Ok(OutboxView {
        service: bus.producer.clone(),
        backlog: backlog.pending,
        oldest_age_ms: backlog.oldest_age_ms,
        parked: backlog.parked,
        last_publish,
    })
}

async fn saga_route(
    caller: Caller,
    bus: web::Data<Bus>,
    consumed: web::Data<Consumed>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    Ok(HttpResponse::Ok().json(saga(&bus, &consumed, id.into_inner()).await?))
}

async fn outbox_route(caller: Caller, bus: web::Data<Bus>) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    Ok(HttpResponse::Ok().json(outbox(&bus).await?))
}
