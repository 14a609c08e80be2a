//! order-service's REST routes: orders, and the reference data they are
//! checked against. Each route parses, authorizes (the caller's own orders
//! only), calls the [`domain`](crate::domain) and stores.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use bourse_common::auth::{Caller, REQUEST_ID_HEADER};
use bourse_common::catalog::{CancelOrder, OrderStatusChanged, OrderTerms, RequestedStatus};
use bourse_common::db::{Db, DbConnection, DbError, is_unique_violation};
use bourse_common::error::ApiError;
use bourse_common::idempotency::IdempotencyKey;
use bourse_common::money::{Amount, Currency};
use bourse_common::outbox::Emitter;
use bourse_common::paging::{Page, PageQuery};
use bourse_common::reference::Market;
use bourse_common::registry;
use bourse_common::{micros_to_time, now_micros};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{self, Cancel, OrderRequest, Status};
use crate::settings::Settings;
use crate::storage::{self, Cause, OrderRow};

/// The producer of the messages the routes send.
const PRODUCER: &str = registry::ORDER.name;

/// An order as clients see it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    pub id: Uuid,
    /// `market`, `side`, `type`, `price`, `quantity`, `time_in_force`.
    #[serde(flatten)]
    pub terms: OrderTerms,
    pub filled_quantity: Amount,
    pub status: Status,
    /// Why the order was rejected (`rejected` only).
    pub reject_reason: Option<String>,
    /// The price trigger that placed it, if one did.
    pub trigger_id: Option<Uuid>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl TryFrom<OrderRow> for Order {
    type Error = ApiError;

    fn try_from(r: OrderRow) -> Result<Self, ApiError> {
        let (id, _user) = r.ids().map_err(ApiError::internal)?;
        Ok(Self {
            id,
            terms: r.terms(),
            status: r.status,
            filled_quantity: r.filled_quantity,
            reject_reason: r.reject_reason,
            trigger_id: r.trigger_id.as_deref().and_then(|t| Uuid::parse_str(t).ok()),
            created_at: micros_to_time(r.created_at),
            updated_at: micros_to_time(r.updated_at),
        })
    }
}

/// One step of an order's life.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transition {
    pub from_status: Option<String>,
    pub to_status: String,
    /// The message type (or request) that caused it.
    pub cause_type: String,
    /// Its message id (or request id).
    pub cause_id: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only orders in this status (`open`, `filled`, ...).
    pub status: Option<String>,
    /// Only orders of this market.
    pub market: Option<String>,
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/orders", web::post().to(place_order))
        .route("/api/orders", web::get().to(list_orders))
        .route("/api/orders/{id}", web::get().to(get_order))
        .route("/api/orders/{id}", web::delete().to(cancel_order))
        .route("/api/orders/{id}/transitions", web::get().to(order_transitions))
        .route("/api/currencies", web::get().to(currencies))
        .route("/api/markets", web::get().to(markets));
}

/// A request as the cause of a transition: its id is the gateway's request id.
fn request_cause(req: &HttpRequest, kind: &str) -> Cause {
    let id = req.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    Cause { kind: kind.into(), id: id.unwrap_or_else(|| Uuid::now_v7().to_string()) }
}

fn order_not_found(id: Uuid) -> ApiError {
    ApiError::not_found("order_not_found", format!("no order {id}"))
}

/// A `?status=` filter of a list, as one of `T`'s words; another word is 400 `invalid_status`.
fn status_filter<T: std::str::FromStr>(status: Option<&str>) -> Result<Option<T>, ApiError> {
    status
        .map(|s| {
            s.parse::<T>().map_err(|_| ApiError::bad_request("invalid_status", format!("unknown status {s}")))
        })
        .transpose()
}

/// A storage query for one page of a user's rows in a status and market:
/// `(conn, user, status, market, limit, offset)` -> the rows and how many there are in all.
pub(crate) type ListRows<S, R> =
    fn(&mut DbConnection, Uuid, Option<S>, Option<&str>, i64, i64) -> diesel::QueryResult<(Vec<R>, i64)>;

/// The page `query` asks for of the caller's rows (orders, triggers), as clients see them.
pub(crate) async fn caller_page<S, R, T>(
    caller: Caller,
    query: ListQuery,
    db: &Db,
    list: ListRows<S, R>,
) -> Result<HttpResponse, ApiError>
where
    S: std::str::FromStr + Send + 'static,
    R: Send + 'static,
    T: TryFrom<R, Error = ApiError> + Serialize,
{
    let (page, per_page, offset) = PageQuery { page: query.page, per_page: query.per_page }.resolve()?;
    let status = status_filter::<S>(query.status.as_deref())?;
    let market = query.market;
    let (rows, total) = db
        .read(move |c| {
            list(c, caller.user_id, status, market.as_deref(), per_page, offset).map_err(DbError::from)
        })
        .await?;
    let items = rows.into_iter().map(T::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page { items, page, per_page, total }))
}

/// A placement (an order, a trigger) stored once per Idempotency-Key.
pub(crate) trait Placement: Sized + Send + 'static {
    /// What it is, in words.
    const WHAT: &'static str;
    /// The user's placement stored under `key`.
    fn find_by_key(
        conn: &mut DbConnection,
        user: Uuid,
        key: &IdempotencyKey,
    ) -> diesel::QueryResult<Option<Self>>;
    /// The request it was placed by, as received.
    fn request_body(&self) -> Option<&str>;
}

impl Placement for OrderRow {
    const WHAT: &'static str = "order";

    fn find_by_key(
        conn: &mut DbConnection,
        user: Uuid,
        key: &IdempotencyKey,
    ) -> diesel::QueryResult<Option<Self>> {
        storage::find_by_idempotency_key(conn, user, key)
    }

    fn request_body(&self) -> Option<&str> {
        self.request_body.as_deref()
    }
}

/// Stores a placement of `user` once per Idempotency-Key, in one transaction
/// with the user's placements serialized: the one stored before under `key`,
/// or what `insert` decides (a refusal, or the row it stored with its
/// outbox). A key that raced in from another request is read again; a key
/// used before with another body is 422 `idempotency_key_reused`.
pub(crate) async fn place_once<R: Placement>(
    db: &Db,
    user: Uuid,
    key: Option<IdempotencyKey>,
    request_body: &str,
    insert: impl FnOnce(&mut DbConnection) -> Result<Result<R, ApiError>, DbError> + Send + 'static,
) -> Result<R, ApiError> {
    let raced_key = key.clone();
    let stored = db
        .write(move |c| {
            storage::lock_placements(c, user)?;
            if let Some(key) = &key
                && let Some(existing) = R::find_by_key(c, user, key)?
            {
                return Ok(Ok(existing));
            }
            insert(c)
        })
        .await;
    let stored = match stored {
        Ok(placed) => placed?,
        // The same key raced in from another request: that one won.
        Err(DbError::Query(e)) if is_unique_violation(&e) => {
            let key = raced_key.ok_or_else(|| ApiError::internal("idempotency key vanished"))?;
            db.read(move |c| R::find_by_key(c, user, &key).map_err(DbError::from))
                .await?
                .ok_or_else(|| ApiError::internal("idempotency key vanished"))?
        }
        Err(e) => return Err(e.into()),
    };
    if stored.request_body() != Some(request_body) {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            format!("this Idempotency-Key was used for a different {}", R::WHAT),
        ));
    }
    Ok(stored)
}

/// Places an order: it is `pending` until its funds are reserved.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and body return the same order")),
    request_body = OrderRequest,
    responses(
        (status = 202, body = Order, description = "accepted; pending until funds are reserved"),
        (status = 401, description = "no valid token"),
        (status = 422, description = "invalid order (unknown market, bad price or quantity, key reused with another body, too_many_open_orders)"),
    )
)]
pub async fn place_order(
    caller: Caller,
    req: HttpRequest,
    body: web::Json<OrderRequest>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let user = caller.user_id;
    let order = domain::place(&request, settings.reference.market(&request.market), Uuid::now_v7(), user)
        .map_err(|e| ApiError::unprocessable(e.code(), e.to_string()))?;
    let key = IdempotencyKey::of(&req)?;
    let request_body = serde_json::to_string(&request).map_err(ApiError::internal)?;
    let cause = request_cause(&req, "POST /api/orders");
    let row = OrderRow::new(&order, key.as_ref(), request_body.clone(), now_micros());
    let max_open = settings.max_open_orders;
    let stored = place_once(&db, user, key, &request_body, move |c| {
        if let Err(full) = domain::room_for_another(storage::count_open(c, user)?, max_open) {
            return Ok(Err(ApiError::unprocessable(full.code(), full.to_string())));
        }
        storage::insert(c, &row, &cause)?;
        let mut out = Emitter::new(PRODUCER);
        out.send(&row.id, &order.reserve);
        out.send(&row.id, &status_changed(&row, order.id, user, RequestedStatus::Pending));
        out.flush(c)?;
        Ok(Ok(row))
    })
    .await?;
    Ok(HttpResponse::Accepted().json(Order::try_from(stored)?))
}

/// What tells the live feed of `user` that their order `id` (`row`) is now `status`.
fn status_changed(row: &OrderRow, id: Uuid, user: Uuid, status: RequestedStatus) -> OrderStatusChanged {
    OrderStatusChanged {
        order_id: id,
        user_id: user,
        market: row.market.clone(),
        quantity: row.quantity,
        filled_quantity: row.filled_quantity,
        status,
    }
}

/// One of the caller's orders.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Order), (status = 404, description = "no such order of yours"))
)]
pub async fn get_order(
    caller: Caller,
    path: web::Path<Uuid>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let row = db
        .read(move |c| storage::find_for_user(c, id, caller.user_id).map_err(DbError::from))
        .await?
        .ok_or_else(|| order_not_found(id))?;
    Ok(HttpResponse::Ok().json(Order::try_from(row)?))
}

/// Every status an order of the caller went through, with its cause.
#[utoipa::path(
    get,
    path = "/api/orders/{id}/transitions",
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<Transition>), (status = 404, description = "no such order of yours"))
)]
pub async fn order_transitions(
    caller: Caller,
    path: web::Path<Uuid>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let rows = db
        .read(move |c| {
            if storage::find_for_user(c, id, caller.user_id)?.is_none() {
                return Ok(None);
            }
            storage::transitions(c, id).map(Some).map_err(DbError::from)
        })
        .await?
        .ok_or_else(|| order_not_found(id))?;
    let items: Vec<Transition> = rows
        .into_iter()
        .map(|r| Transition {
            from_status: r.from_status,
            to_status: r.to_status,
            cause_type: r.cause_type,
            cause_id: r.cause_id,
            at: micros_to_time(r.at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(items))
}

/// A page of the caller's orders, newest first.
#[utoipa::path(
    get,
    path = "/api/orders",
    tag = "orders",
    security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = Page<Order>), (status = 400, description = "unknown status or bad page"))
)]
pub async fn list_orders(
    caller: Caller,
    query: web::Query<ListQuery>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    caller_page::<Status, OrderRow, Order>(caller, query.into_inner(), &db, storage::list).await
}

/// Asks to cancel an order; its reservation is released, then it is `cancelled`.
#[utoipa::path(
    delete,
    path = "/api/orders/{id}",
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 202, body = Order, description = "cancellation requested"),
        (status = 404, description = "no such order of yours"),
        (status = 409, description = "the order is already final"),
    )
)]
pub async fn cancel_order(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<Uuid>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let user = caller.user_id;
    let cause = request_cause(&req, "DELETE /api/orders");
    let outcome = db
        .write(move |c| {
            let Some(order) = storage::lock_for_user(c, id, user)? else {
                return Ok::<_, DbError>(Err(order_not_found(id)));
            };
            let leave_book = match order.status.cancel() {
                Cancel::AlreadyRequested => return Ok(Ok(order)),
                Cancel::Final => {
                    return Ok(Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "order_not_cancellable",
                        format!("order {id} is {}", order.status),
                    )));
                }
                Cancel::Request { leave_book } => leave_book,
            };
            storage::transition(c, &order, Status::CancelRequested, None, &cause, now_micros())?;
            let mut out = Emitter::new(PRODUCER);
            out.send(&order.id, &status_changed(&order, id, user, RequestedStatus::CancelRequested));
            if leave_book {
                out.send(
                    &order.id,
                    &CancelOrder { order_id: id, user_id: user, market: order.market.clone() },
                );
            }
            out.flush(c)?;
            Ok(Ok(storage::find(c, id)?.unwrap_or(order)))
        })
        .await??;
    Ok(HttpResponse::Accepted().json(Order::try_from(outcome)?))
}

/// The currencies traded, with their scales.
#[utoipa::path(get, path = "/api/currencies", tag = "reference", responses((status = 200, body = Vec<Currency>)))]
pub async fn currencies(settings: web::Data<Settings>) -> HttpResponse {
    HttpResponse::Ok().json(&settings.reference.currencies)
}

/// The markets, with their price and quantity scales and limits.
#[utoipa::path(get, path = "/api/markets", tag = "reference", responses((status = 200, body = Vec<Market>)))]
pub async fn markets(settings: web::Data<Settings>) -> HttpResponse {
    HttpResponse::Ok().json(&settings.reference.markets)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(place_order, list_orders, get_order, cancel_order, order_transitions, currencies, markets),
    components(schemas(Order, OrderRequest, Transition, Page<Order>, Currency, Market)),
    tags(
        (name = "orders", description = "placing, reading and cancelling orders"),
        (name = "reference", description = "currencies and markets"),
    )
)]
pub struct Api;
