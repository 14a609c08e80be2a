//! order-service's REST routes for price triggers: place (its funds are
//! reserved from placement), read, list and cancel the caller's own.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use bourse_common::auth::Caller;
use bourse_common::catalog::{OrderType, ReserveFunds, Side, TimeInForce, TriggerKind};
use bourse_common::db::{Db, DbError};
use bourse_common::error::ApiError;
use bourse_common::idempotency::IdempotencyKey;
use bourse_common::money::Amount;
use bourse_common::outbox::Emitter;
use bourse_common::paging::Page;
use bourse_common::{micros_to_time, now_micros};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::handlers;
use crate::routes::{ListQuery, Placement, caller_page, place_once};
use crate::settings::Settings;
use crate::trigger_storage::{self, TriggerRow};
use crate::triggers::{self, Ending, TriggerRequest, TriggerStatus};

const PRODUCER: &str = bourse_common::registry::ORDER.name;

/// A price trigger as clients see it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trigger {
    pub id: Uuid,
    pub market: String,
    pub side: Side,
    pub kind: TriggerKind,
    pub stop_price: Option<Amount>,
    /// Of the order it places; an OCO's limit order.
    pub limit_price: Option<Amount>,
    /// An OCO's stop leg: the limit order it becomes when its stop is crossed (none: a market order).
    pub stop_limit_price: Option<Amount>,
    pub trail_amount: Option<Amount>,
    pub trail_percent: Option<Amount>,
    pub quantity: Amount,
    /// Of the order it places.
    pub time_in_force: TimeInForce,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub status: TriggerStatus,
    /// Why it was rejected (`rejected`).
    pub reject_reason: Option<String>,
    /// What it holds from placement until it fires or ends: the currency and amount.
    pub reserve_currency: String,
    pub reserve_amount: Amount,
    /// The order it placed (`fired`); an OCO's, in the book from arming (`active`, `fired`, `traded`).
    pub order_id: Option<Uuid>,
    /// Its stop when it fired (a trailing stop's as it had moved), and the trade's price.
    pub fired_stop_price: Option<Amount>,
    pub fired_trade_price: Option<Amount>,
    pub fired_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl TryFrom<TriggerRow> for Trigger {
    type Error = ApiError;

    fn try_from(r: TriggerRow) -> Result<Self, ApiError> {
        let (id, _, order_id) = r.ids().map_err(ApiError::internal)?;
        Ok(Self {
            id,
            market: r.market,
            side: r.side,
            kind: r.kind,
            stop_price: r.stop_price,
            limit_price: r.limit_price,
            stop_limit_price: r
                .order_price
                .filter(|_| r.kind == TriggerKind::Oco && r.order_type == OrderType::Limit),
            trail_amount: r.trail_amount,
            trail_percent: r.trail_percent,
            quantity: r.quantity,
            time_in_force: r.order_time_in_force,
            expires_at: r.expires_at.map(micros_to_time),
            status: r.status,
            reject_reason: r.reject_reason,
            reserve_currency: r.reserve_currency,
            reserve_amount: r.reserve_amount,
            order_id: handlers::shows_order(r.kind, r.status).then_some(order_id),
            fired_stop_price: r.fired_stop_price,
            fired_trade_price: r.fired_trade_price,
            fired_at: r.fired_at.map(micros_to_time),
            created_at: micros_to_time(r.created_at),
            updated_at: micros_to_time(r.updated_at),
        })
    }
}

impl Placement for TriggerRow {
    const WHAT: &'static str = "trigger";

    fn find_by_key(
        conn: &mut bourse_common::db::DbConnection,
        user: Uuid,
        key: &IdempotencyKey,
    ) -> diesel::QueryResult<Option<Self>> {
        trigger_storage::find_by_idempotency_key(conn, user, key)
    }

    fn request_body(&self) -> Option<&str> {
        self.request_body.as_deref()
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/triggers", web::post().to(place_trigger))
        .route("/api/triggers", web::get().to(list_triggers))
        .route("/api/triggers/{id}", web::get().to(get_trigger))
        .route("/api/triggers/{id}", web::delete().to(cancel_trigger));
}

fn trigger_not_found(id: Uuid) -> ApiError {
    ApiError::not_found("trigger_not_found", format!("no trigger {id}"))
}

/// The market's last trade price, read from matching-service (`None`: no
/// trade yet, or no `matching_service_url`). Unreachable, it is 503: a stop
/// is never placed unchecked against a price that may have crossed it.
async fn last_price(settings: &Settings, market: &str) -> Result<Option<Decimal>, ApiError> {
    #[derive(Deserialize)]
    struct Trades {
        items: Vec<TradeItem>,
    }
    #[derive(Deserialize)]
    struct TradeItem {
        price: Amount,
    }
    let Some(url) = &settings.matching_service_url else { return Ok(None) };
    let unavailable = |e: String| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "market_data_unavailable", format!("last price: {e}"))
    };
    let answer = reqwest::Client::new()
        .get(format!("{}/api/history/trades", url.trim_end_matches('/')))
        .query(&[("market", market), ("per_page", "1")])
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if !answer.status().is_success() {
        return Err(unavailable(answer.status().to_string()));
    }
    let trades: Trades = answer.json().await.map_err(|e| unavailable(e.to_string()))?;
    Ok(trades.items.first().map(|t| t.price.value()))
}

/// Places a trigger: `pending` until its funds are reserved, then `active`.
#[utoipa::path(
    post,
    path = "/api/triggers",
    tag = "triggers",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and body return the same trigger")),
    request_body = TriggerRequest,
    responses(
        (status = 202, body = Trigger, description = "accepted; pending until its funds are reserved"),
        (status = 401, description = "no valid token"),
        (status = 422, description = "invalid trigger (unknown market, a stop the last price already crossed, bad prices, quantity or trail, oco legs inconsistent, expiry passed, key reused, too_many_triggers)"),
        (status = 503, description = "the market's last price could not be read"),
    )
)]
pub async fn place_trigger(
    caller: Caller,
    req: HttpRequest,
    body: web::Json<TriggerRequest>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let user = caller.user_id;
    let market = settings.reference.market(&request.market);
    let last = match market {
        Some(m) => last_price(&settings, &m.id).await?,
        None => None,
    };
    let unprocessable = |e: triggers::TriggerError| ApiError::unprocessable(e.code(), e.to_string());
    let valid = request
        .validate(market, last, chrono::Utc::now(), settings.market_buy_cap_percent)
        .map_err(unprocessable)?;
    let key = IdempotencyKey::of(&req)?;
    let request_body = serde_json::to_string(&request).map_err(ApiError::internal)?;
    let (id, order_id) = (Uuid::now_v7(), Uuid::now_v7());
    let row = TriggerRow::new(
        id,
        user,
        order_id,
        &request,
        &valid,
        key.as_ref(),
        request_body.clone(),
        now_micros(),
    );
    let reserve = ReserveFunds {
        order_id,
        user_id: user,
        currency: valid.order.reserve_currency.clone(),
        amount: valid.reserve_amount(),
        limit_price: valid.reserve_limit(),
    };
    let max = settings.max_active_triggers;
    let stored = place_once(&db, user, key, &request_body, move |c| {
        if let Err(full) = triggers::room_for_another(trigger_storage::count_unended(c, user)?, max) {
            return Ok(Err(unprocessable(full)));
        }
        trigger_storage::insert(c, &row)?;
        let mut out = Emitter::new(PRODUCER);
        out.send(&row.id, &reserve);
        out.flush(c)?;
        Ok(Ok(row))
    })
    .await?;
    Ok(HttpResponse::Accepted().json(Trigger::try_from(stored)?))
}

/// One of the caller's triggers.
#[utoipa::path(
    get,
    path = "/api/triggers/{id}",
    tag = "triggers",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Trigger), (status = 404, description = "no such trigger of yours"))
)]
pub async fn get_trigger(
    caller: Caller,
    path: web::Path<Uuid>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let row = db
        .read(move |c| trigger_storage::find_for_user(c, id, caller.user_id).map_err(DbError::from))
        .await?
        .ok_or_else(|| trigger_not_found(id))?;
    Ok(HttpResponse::Ok().json(Trigger::try_from(row)?))
}

/// A page of the caller's triggers, newest first.
#[utoipa::path(
    get,
    path = "/api/triggers",
    tag = "triggers",
    security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = Page<Trigger>), (status = 400, description = "unknown status or bad page"))
)]
pub async fn list_triggers(
    caller: Caller,
    query: web::Query<ListQuery>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    caller_page::<TriggerStatus, TriggerRow, Trigger>(caller, query.into_inner(), &db, trigger_storage::list)
        .await
}

/// Asks to cancel a trigger: it leaves its book (unless it fires first),
/// then its funds are released whole and it is `cancelled`.
#[utoipa::path(
    delete,
    path = "/api/triggers/{id}",
    tag = "triggers",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 202, body = Trigger, description = "cancellation requested"),
        (status = 404, description = "no such trigger of yours"),
        (status = 409, description = "the trigger has fired or ended already"),
    )
)]
pub async fn cancel_trigger(
    caller: Caller,
    path: web::Path<Uuid>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let user = caller.user_id;
    let outcome = db
        .write(move |c| {
            let Some(trigger) = trigger_storage::lock_for_user(c, id, user)? else {
                return Ok::<_, DbError>(Err(trigger_not_found(id)));
            };
            if trigger.status.is_final() {
                return Ok(Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "trigger_not_cancellable",
                    format!("trigger {id} is {}", trigger.status),
                )));
            }
            let mut out = Emitter::new(PRODUCER);
            handlers::end_trigger(c, &trigger, Ending::Cancel, &mut out)?;
            out.flush(c)?;
            Ok(Ok(trigger_storage::find_for_user(c, id, user)?.unwrap_or(trigger)))
        })
        .await??;
    Ok(HttpResponse::Accepted().json(Trigger::try_from(outcome)?))
}

/// Expires the triggers whose `expires_at` has passed, a batch at a time:
/// an armed one leaves its book first (matching-service also refuses to fire
/// one past its expiry), a pending one is released when its funds' answer
/// comes. Returns how many it expired.
pub async fn expire_due(db: &Db) -> Result<usize, DbError> {
    const BATCH: i64 = 500;
    db.write(|c| {
        let due = trigger_storage::expiring(c, now_micros(), BATCH)?;
        let mut out = Emitter::new(PRODUCER);
        for id in &due {
            if let Some(trigger) = trigger_storage::lock(c, *id)? {
                handlers::end_trigger(c, &trigger, Ending::Expiry, &mut out)?;
            }
        }
        out.flush(c)?;
        Ok(due.len())
    })
    .await
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(place_trigger, list_triggers, get_trigger, cancel_trigger),
    components(schemas(Trigger, TriggerRequest, TriggerStatus, TriggerKind, Page<Trigger>)),
    tags((name = "triggers", description = "price triggers: stop, stop-limit, take-profit, trailing stop, OCO"))
)]
pub struct Api;
