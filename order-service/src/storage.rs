//! Orders and their transitions in the service's database.

use bourse_common::catalog::{OrderType, Side, TimeInForce};
use bourse_common::db::DbConnection;
use bourse_common::money::Amount;
use diesel::prelude::*;
use uuid::Uuid;

use crate::domain::Status;

diesel::table! {
    orders (id) {
        id -> Text,
        user_id -> Text,
        market -> Text,
        side -> Text,
        order_type -> Text,
        price -> Nullable<Text>,
        quantity -> Text,
        filled_quantity -> Text,
        status -> Text,
        time_in_force -> Text,
        reject_reason -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        request_body -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    order_transitions (id) {
        id -> BigInt,
        order_id -> Text,
        from_status -> Nullable<Text>,
        to_status -> Text,
        cause_type -> Text,
        cause_id -> Text,
        at -> BigInt,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = orders)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub market: String,
    pub side: String,
    pub order_type: String,
    pub price: Option<String>,
    pub quantity: String,
    pub filled_quantity: String,
    pub status: String,
    pub time_in_force: String,
    pub reject_reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_body: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl OrderRow {
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Pending)
    }

    /// The typed terms of the order.
    pub fn terms(&self) -> Result<Terms, CorruptOrder> {
        let corrupt =
            |reason: &dyn std::fmt::Display| CorruptOrder { id: self.id.clone(), reason: reason.to_string() };
        let amount = |s: &str| s.parse::<Amount>().map_err(|e| corrupt(&e));
        Ok(Terms {
            id: Uuid::parse_str(&self.id).map_err(|e| corrupt(&e))?,
            user_id: Uuid::parse_str(&self.user_id).map_err(|e| corrupt(&e))?,
            side: from_stored(&self.side).map_err(|e| corrupt(&e))?,
            order_type: from_stored(&self.order_type).map_err(|e| corrupt(&e))?,
            price: self.price.as_deref().map(amount).transpose()?,
            quantity: amount(&self.quantity)?,
            filled_quantity: amount(&self.filled_quantity)?,
            time_in_force: from_stored(&self.time_in_force).map_err(|e| corrupt(&e))?,
        })
    }
}

/// The typed fields of a stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub id: Uuid,
    pub user_id: Uuid,
    pub side: Side,
    pub order_type: OrderType,
    pub price: Option<Amount>,
    pub quantity: Amount,
    pub filled_quantity: Amount,
    pub time_in_force: TimeInForce,
}

/// A stored order that does not decode: a bug or a hand-edited row.
#[derive(Debug, thiserror::Error)]
#[error("stored order {id} is corrupt: {reason}")]
pub struct CorruptOrder {
    id: String,
    reason: String,
}

/// The name a catalog enum is stored under: its JSON name (`buy`, `limit`, `gtc`).
pub fn stored_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn from_stored<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
}

/// What caused a transition: a message (`funds.reserved` + its id) or a request.
#[derive(Debug, Clone)]
pub struct Cause {
    pub kind: String,
    pub id: String,
}

pub fn insert(conn: &mut DbConnection, order: &OrderRow, cause: &Cause) -> QueryResult<()> {
    diesel::insert_into(orders::table).values(order).execute(conn)?;
    record_transition(conn, &order.id, None, Status::Pending, cause, order.created_at)
}

fn record_transition(
    conn: &mut DbConnection,
    order_id: &str,
    from: Option<Status>,
    to: Status,
    cause: &Cause,
    now: i64,
) -> QueryResult<()> {
    diesel::insert_into(order_transitions::table)
        .values((
            order_transitions::order_id.eq(order_id),
            order_transitions::from_status.eq(from.map(Status::as_str)),
            order_transitions::to_status.eq(to.as_str()),
            order_transitions::cause_type.eq(&cause.kind),
            order_transitions::cause_id.eq(&cause.id),
            order_transitions::at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Moves the order to `to` and records why.
pub fn transition(
    conn: &mut DbConnection,
    order: &OrderRow,
    to: Status,
    reject_reason: Option<&str>,
    cause: &Cause,
    now: i64,
) -> QueryResult<()> {
    diesel::update(orders::table.find(&order.id))
        .set((orders::status.eq(to.as_str()), orders::updated_at.eq(now)))
        .execute(conn)?;
    if let Some(reason) = reject_reason {
        diesel::update(orders::table.find(&order.id)).set(orders::reject_reason.eq(reason)).execute(conn)?;
    }
    record_transition(conn, &order.id, Some(order.status()), to, cause, now)
}

/// Records how much of the order has filled.
pub fn set_filled(conn: &mut DbConnection, order: &OrderRow, filled: Amount, now: i64) -> QueryResult<()> {
    diesel::update(orders::table.find(&order.id))
        .set((orders::filled_quantity.eq(filled.to_string()), orders::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<OrderRow>> {
    orders::table.find(id.to_string()).select(OrderRow::as_select()).first(conn).optional()
}

/// The order, if it is the user's.
pub fn find_for_user(conn: &mut DbConnection, id: Uuid, user: Uuid) -> QueryResult<Option<OrderRow>> {
    Ok(find(conn, id)?.filter(|o| o.user_id == user.to_string()))
}

pub fn find_by_idempotency_key(
    conn: &mut DbConnection,
    user: Uuid,
    key: &str,
) -> QueryResult<Option<OrderRow>> {
    orders::table
        .filter(orders::user_id.eq(user.to_string()))
        .filter(orders::idempotency_key.eq(key))
        .select(OrderRow::as_select())
        .first(conn)
        .optional()
}

/// A page of the user's orders, newest first, and how many match.
pub fn list(
    conn: &mut DbConnection,
    user: Uuid,
    status: Option<Status>,
    market: Option<&str>,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<OrderRow>, i64)> {
    let filtered = || {
        let mut q = orders::table.filter(orders::user_id.eq(user.to_string())).into_boxed();
        if let Some(s) = status {
            q = q.filter(orders::status.eq(s.as_str()));
        }
        if let Some(m) = market {
            q = q.filter(orders::market.eq(m.to_string()));
        }
        q
    };
    let total = filtered().count().get_result(conn)?;
    let rows = filtered()
        .order((orders::created_at.desc(), orders::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(OrderRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// A transition as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = order_transitions)]
pub struct TransitionRow {
    pub id: i64,
    pub order_id: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub cause_type: String,
    pub cause_id: String,
    pub at: i64,
}

pub fn transitions(conn: &mut DbConnection, order_id: Uuid) -> QueryResult<Vec<TransitionRow>> {
    order_transitions::table
        .filter(order_transitions::order_id.eq(order_id.to_string()))
        .order(order_transitions::id.asc())
        .select(TransitionRow::as_select())
        .load(conn)
}
