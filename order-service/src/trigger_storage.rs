//! Price triggers in the service's database: the diesel table, [`TriggerRow`]
//! with typed columns, and the queries. Locking follows the orders'
//! ([`storage::lock`](crate::storage::lock)): every change of a trigger is
//! decided on the state it changes.

use bourse_common::catalog::{OrderTerms, OrderType, Side, TimeInForce, TriggerKind};
use bourse_common::db::DbConnection;
use bourse_common::idempotency::IdempotencyKey;
use bourse_common::money::Amount;
use bourse_common::on_backend;
use diesel::prelude::*;
use uuid::Uuid;

use crate::storage::CorruptOrder;
use crate::triggers::{Ending, TriggerRequest, TriggerState, TriggerStatus, ValidTrigger};

bourse_common::stored_as_text!(TriggerStatus, Ending);

diesel::table! {
    triggers (id) {
        id -> Text,
        user_id -> Text,
        market -> Text,
        side -> Text,
        kind -> Text,
        stop_price -> Nullable<Text>,
        limit_price -> Nullable<Text>,
        trail_amount -> Nullable<Text>,
        trail_percent -> Nullable<Text>,
        quantity -> Text,
        expires_at -> Nullable<BigInt>,
        order_id -> Text,
        order_type -> Text,
        order_price -> Nullable<Text>,
        order_time_in_force -> Text,
        reserve_currency -> Text,
        reserve_amount -> Text,
        status -> Text,
        ending -> Nullable<Text>,
        reject_reason -> Nullable<Text>,
        fired_stop_price -> Nullable<Text>,
        fired_trade_price -> Nullable<Text>,
        fired_at -> Nullable<BigInt>,
        idempotency_key -> Nullable<Text>,
        request_body -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

/// A trigger as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = triggers)]
pub struct TriggerRow {
    pub id: String,
    pub user_id: String,
    pub market: String,
    pub side: Side,
    pub kind: TriggerKind,
    pub stop_price: Option<Amount>,
    pub limit_price: Option<Amount>,
    pub trail_amount: Option<Amount>,
    pub trail_percent: Option<Amount>,
    pub quantity: Amount,
    pub expires_at: Option<i64>,
    /// The order it places when it fires; its funds are reserved under this id.
    pub order_id: String,
    pub order_type: OrderType,
    pub order_price: Option<Amount>,
    pub order_time_in_force: TimeInForce,
    pub reserve_currency: String,
    pub reserve_amount: Amount,
    pub status: TriggerStatus,
    /// Never set when placed (NULL): left out of the insert.
    #[diesel(skip_insertion)]
    pub ending: Option<Ending>,
    pub reject_reason: Option<String>,
    pub fired_stop_price: Option<Amount>,
    pub fired_trade_price: Option<Amount>,
    pub fired_at: Option<i64>,
    pub idempotency_key: Option<String>,
    pub request_body: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TriggerRow {
    /// The row of a newly placed trigger: `pending`, its order `order_id`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: Uuid,
        user: Uuid,
        order_id: Uuid,
        request: &TriggerRequest,
        valid: &ValidTrigger,
        idempotency_key: Option<&IdempotencyKey>,
        request_body: String,
        now: i64,
    ) -> Self {
        let terms = &valid.order.terms;
        Self {
            id: id.to_string(),
            user_id: user.to_string(),
            market: terms.market.clone(),
            side: request.side,
            kind: request.kind,
            stop_price: valid.stop_price,
            limit_price: request.limit_price,
            trail_amount: request.trail_amount,
            trail_percent: request.trail_percent,
            quantity: terms.quantity,
            expires_at: request.expires_at.map(|t| t.timestamp_micros()),
            order_id: order_id.to_string(),
            order_type: terms.order_type,
            order_price: terms.price,
            order_time_in_force: terms.time_in_force,
            reserve_currency: valid.order.reserve_currency.clone(),
            reserve_amount: valid.reserve_amount(),
            status: TriggerStatus::Pending,
            ending: None,
            reject_reason: None,
            fired_stop_price: None,
            fired_trade_price: None,
            fired_at: None,
            idempotency_key: idempotency_key.map(|k| k.as_str().to_string()),
            request_body: Some(request_body),
            created_at: now,
            updated_at: now,
        }
    }

    pub fn state(&self) -> TriggerState {
        TriggerState { status: self.status, ending: self.ending, oco: self.kind == TriggerKind::Oco }
    }

    /// The order it places when it fires.
    pub fn order_terms(&self) -> OrderTerms {
        OrderTerms {
            market: self.market.clone(),
            side: self.side,
            order_type: self.order_type,
            price: self.order_price,
            quantity: self.quantity,
            time_in_force: self.order_time_in_force,
        }
    }

    /// An OCO's limit order, in the book from arming under `order_id`.
    pub fn limit_leg_terms(&self) -> Option<OrderTerms> {
        let price = self.limit_price.filter(|_| self.kind == TriggerKind::Oco)?;
        Some(OrderTerms {
            order_type: OrderType::Limit,
            price: Some(price),
            time_in_force: TimeInForce::Gtc,
            ..self.order_terms()
        })
    }

    /// Its id, its user's and its order's.
    pub fn ids(&self) -> Result<(Uuid, Uuid, Uuid), CorruptOrder> {
        let parse = |s: &str| Uuid::parse_str(s).map_err(|e| CorruptOrder::new(&self.id, e));
        Ok((parse(&self.id)?, parse(&self.user_id)?, parse(&self.order_id)?))
    }
}

pub fn insert(conn: &mut DbConnection, row: &TriggerRow) -> QueryResult<()> {
    on_backend!(conn, |c| diesel::insert_into(triggers::table).values(row).execute(c))?;
    Ok(())
}

/// The trigger, locked until the transaction ends (`FOR UPDATE` on PostgreSQL).
pub fn lock(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<TriggerRow>> {
    let query = triggers::table.find(id.to_string());
    match conn {
        DbConnection::Postgres(c) => query.select(TriggerRow::as_select()).for_update().first(c).optional(),
        DbConnection::Sqlite(c) => query.select(TriggerRow::as_select()).first(c).optional(),
    }
}

/// The trigger whose order is `order_id`, locked as by [`lock`].
pub fn lock_by_order(conn: &mut DbConnection, order_id: Uuid) -> QueryResult<Option<TriggerRow>> {
    let query = triggers::table.filter(triggers::order_id.eq(order_id.to_string()));
    match conn {
        DbConnection::Postgres(c) => query.select(TriggerRow::as_select()).for_update().first(c).optional(),
        DbConnection::Sqlite(c) => query.select(TriggerRow::as_select()).first(c).optional(),
    }
}

/// The trigger, if it is the user's, locked as by [`lock`].
pub fn lock_for_user(conn: &mut DbConnection, id: Uuid, user: Uuid) -> QueryResult<Option<TriggerRow>> {
    Ok(lock(conn, id)?.filter(|t| t.user_id == user.to_string()))
}

/// The trigger, if it is the user's.
pub fn find_for_user(conn: &mut DbConnection, id: Uuid, user: Uuid) -> QueryResult<Option<TriggerRow>> {
    let found =
        triggers::table.find(id.to_string()).select(TriggerRow::as_select()).first(conn).optional()?;
    Ok(found.filter(|t| t.user_id == user.to_string()))
}

pub fn find_by_idempotency_key(
    conn: &mut DbConnection,
    user: Uuid,
    key: &IdempotencyKey,
) -> QueryResult<Option<TriggerRow>> {
    triggers::table
        .filter(triggers::user_id.eq(user.to_string()))
        .filter(triggers::idempotency_key.eq(key.as_str()))
        .select(TriggerRow::as_select())
        .first(conn)
        .optional()
}

/// How many of the user's triggers have not ended (pending or active).
pub fn count_unended(conn: &mut DbConnection, user: Uuid) -> QueryResult<u64> {
    let live = [TriggerStatus::Pending, TriggerStatus::Active];
    let n: i64 = on_backend!(conn, |c| triggers::table
        .filter(triggers::user_id.eq(user.to_string()))
        .filter(triggers::status.eq_any(live))
        .count()
        .get_result(c))?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// Stores the trigger's new state; a rejection's reason with it.
pub fn set_state(
    conn: &mut DbConnection,
    row: &TriggerRow,
    state: TriggerState,
    reason: Option<&str>,
    now: i64,
) -> QueryResult<()> {
    let set =
        (triggers::status.eq(state.status), triggers::ending.eq(state.ending), triggers::updated_at.eq(now));
    on_backend!(conn, |c| diesel::update(triggers::table.find(&row.id)).set(set).execute(c))?;
    if let Some(reason) = reason {
        diesel::update(triggers::table.find(&row.id))
            .set(triggers::reject_reason.eq(reason))
            .execute(conn)?;
    }
    Ok(())
}

/// Records what fired it: its stop then, the trade's price, when.
pub fn set_fired(
    conn: &mut DbConnection,
    row: &TriggerRow,
    stop: Amount,
    trade_price: Amount,
    at: i64,
) -> QueryResult<()> {
    let set = (
        triggers::fired_stop_price.eq(Some(stop)),
        triggers::fired_trade_price.eq(Some(trade_price)),
        triggers::fired_at.eq(Some(at)),
    );
    on_backend!(conn, |c| diesel::update(triggers::table.find(&row.id)).set(set).execute(c))?;
    Ok(())
}

/// Up to `limit` triggers not ended, with no end asked yet, whose expiry is at or before `now`.
pub fn expiring(conn: &mut DbConnection, now: i64, limit: i64) -> QueryResult<Vec<Uuid>> {
    let live = [TriggerStatus::Pending, TriggerStatus::Active];
    let ids: Vec<String> = on_backend!(conn, |c| triggers::table
        .filter(triggers::status.eq_any(live))
        .filter(triggers::ending.is_null())
        .filter(triggers::expires_at.le(now))
        .order(triggers::expires_at.asc())
        .limit(limit)
        .select(triggers::id)
        .load(c))?;
    Ok(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect())
}

/// A page of the user's triggers, newest first, and how many match.
pub fn list(
    conn: &mut DbConnection,
    user: Uuid,
    status: Option<TriggerStatus>,
    market: Option<&str>,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<TriggerRow>, i64)> {
    on_backend!(conn, |c| {
        let filtered = || {
            let mut q = triggers::table.filter(triggers::user_id.eq(user.to_string())).into_boxed();
            if let Some(s) = status {
                q = q.filter(triggers::status.eq(s));
            }
            if let Some(m) = market {
                q = q.filter(triggers::market.eq(m.to_string()));
            }
            q
        };
        let total = filtered().count().get_result(c)?;
        let rows = filtered()
            .order((triggers::created_at.desc(), triggers::id.desc()))
            .limit(limit)
            .offset(offset)
            .select(TriggerRow::as_select())
            .load(c)?;
        Ok((rows, total))
    })
}
