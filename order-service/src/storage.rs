//! Orders and their transitions in the service's database: the diesel
//! tables, [`OrderRow`] with typed columns (an undecodable stored value is a
//! read error), and the queries. Statuses are stored as their words
//! ([`stored_as_text!`](bourse_common::stored_as_text)).
//!
//! Typed values (statuses, sides, amounts) bind on each back end, not on
//! the generic [`DbConnection`]: a query that binds them runs through
//! [`on_backend!`](bourse_common::on_backend). Reading them needs no such step.

use bourse_common::catalog::{OrderTerms, OrderType, Side, TimeInForce};
use bourse_common::db::DbConnection;
use bourse_common::money::Amount;
use bourse_common::on_backend;
use diesel::prelude::*;
use uuid::Uuid;

use bourse_common::idempotency::IdempotencyKey;

use crate::domain::{BookStage, NewOrder, SagaState, Status};
use crate::trigger_storage::TriggerRow;

bourse_common::stored_as_text!(Status, BookStage);

/// The schema of both back ends (`migrations/`), run at start-up.
pub const MIGRATIONS: bourse_common::db::MigrationSet =
    bourse_common::migration_set!("migrations/sqlite", "migrations/postgres");

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
        book_stage -> Text,
        trigger_id -> Nullable<Text>,
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

diesel::table! {
    open_orders (user_id) {
        user_id -> Text,
        open -> BigInt,
    }
}

/// An order as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = orders)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub market: String,
    pub side: Side,
    pub order_type: OrderType,
    pub price: Option<Amount>,
    pub quantity: Amount,
    pub filled_quantity: Amount,
    pub status: Status,
    pub time_in_force: TimeInForce,
    pub reject_reason: Option<String>,
    pub idempotency_key: Option<String>,
    /// The request as received, compared on a retry with the same key.
    pub request_body: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// How far it got with its book, as the saga knows it.
    pub book_stage: BookStage,
    /// The trigger that placed it, if one did.
    pub trigger_id: Option<String>,
}

impl OrderRow {
    /// The row of a newly placed order, nothing filled yet.
    pub fn new(
        order: &NewOrder,
        idempotency_key: Option<&IdempotencyKey>,
        request_body: String,
        now: i64,
    ) -> Self {
        let terms = order.terms.clone();
        Self {
            id: order.id.to_string(),
            user_id: order.user_id.to_string(),
            market: terms.market,
            side: terms.side,
            order_type: terms.order_type,
            price: terms.price,
            quantity: terms.quantity,
            filled_quantity: Amount::ZERO,
            status: order.status,
            time_in_force: terms.time_in_force,
            reject_reason: None,
            idempotency_key: idempotency_key.map(|k| k.as_str().to_string()),
            request_body: Some(request_body),
            created_at: now,
            updated_at: now,
            book_stage: BookStage::Unsent,
            trigger_id: None,
        }
    }

    /// The order a trigger placed on `terms` when it fired (an OCO: as it was
    /// armed): matching-service put it in its book in the same transaction,
    /// its funds reserved since the trigger's placement.
    pub fn placed_by(trigger: &TriggerRow, terms: OrderTerms, now: i64) -> Self {
        Self {
            id: trigger.order_id.clone(),
            user_id: trigger.user_id.clone(),
            market: terms.market,
            side: terms.side,
            order_type: terms.order_type,
            price: terms.price,
            quantity: terms.quantity,
            filled_quantity: Amount::ZERO,
            status: Status::Open,
            time_in_force: terms.time_in_force,
            reject_reason: None,
            idempotency_key: None,
            request_body: None,
            created_at: now,
            updated_at: now,
            book_stage: BookStage::Sent,
            trigger_id: Some(trigger.id.clone()),
        }
    }

    /// What the saga knows of the order.
    pub fn saga(&self) -> SagaState {
        SagaState { status: self.status, book: self.book_stage }
    }

    /// The order's terms, as placed.
    pub fn terms(&self) -> OrderTerms {
        OrderTerms {
            market: self.market.clone(),
            side: self.side,
            order_type: self.order_type,
            price: self.price,
            quantity: self.quantity,
            time_in_force: self.time_in_force,
        }
    }

    /// The order's id and its user's.
    pub fn ids(&self) -> Result<(Uuid, Uuid), CorruptOrder> {
        let parse = |s: &str| Uuid::parse_str(s).map_err(|e| CorruptOrder::new(&self.id, e));
        Ok((parse(&self.id)?, parse(&self.user_id)?))
    }
}

/// A stored order whose ids do not decode: a bug or a hand-edited row.
#[derive(Debug, thiserror::Error)]
#[error("stored order or trigger {id} is corrupt: {reason}")]
pub struct CorruptOrder {
    id: String,
    reason: String,
}

impl CorruptOrder {
    pub fn new(id: &str, reason: impl std::fmt::Display) -> Self {
        Self { id: id.to_string(), reason: reason.to_string() }
    }
}

/// What caused a transition: a message (`funds.reserved` + its id) or a request.
#[derive(Debug, Clone)]
pub struct Cause {
    pub kind: String,
    pub id: String,
}

/// Stores a new order and records its first status.
pub fn insert(conn: &mut DbConnection, order: &OrderRow, cause: &Cause) -> QueryResult<()> {
    on_backend!(conn, |c| diesel::insert_into(orders::table).values(order).execute(c))?;
    if !order.status.is_final() {
        count_opened(conn, &order.user_id, 1)?;
    }
    record_transition(conn, &order.id, None, order.status, cause, order.created_at)
}

/// Adds `change` to the user's count of open orders.
fn count_opened(conn: &mut DbConnection, user: &str, change: i64) -> QueryResult<()> {
    on_backend!(conn, |c| diesel::insert_into(open_orders::table)
        .values((open_orders::user_id.eq(user), open_orders::open.eq(change)))
        .on_conflict(open_orders::user_id)
        .do_update()
        .set(open_orders::open.eq(open_orders::open + change))
        .execute(c))?;
    Ok(())
}

fn record_transition(
    conn: &mut DbConnection,
    order_id: &str,
    from: Option<Status>,
    to: Status,
    cause: &Cause,
    now: i64,
) -> QueryResult<()> {
    let row = (
        order_transitions::order_id.eq(order_id),
        order_transitions::from_status.eq(from),
        order_transitions::to_status.eq(to),
        order_transitions::cause_type.eq(&cause.kind),
        order_transitions::cause_id.eq(&cause.id),
        order_transitions::at.eq(now),
    );
    on_backend!(conn, |c| diesel::insert_into(order_transitions::table).values(row).execute(c))?;
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
    let set = (orders::status.eq(to), orders::updated_at.eq(now));
    on_backend!(conn, |c| diesel::update(orders::table.find(&order.id)).set(set).execute(c))?;
    if to.is_final() && !order.status.is_final() {
        count_opened(conn, &order.user_id, -1)?;
    }
    if let Some(reason) = reject_reason {
        diesel::update(orders::table.find(&order.id)).set(orders::reject_reason.eq(reason)).execute(conn)?;
    }
    record_transition(conn, &order.id, Some(order.status), to, cause, now)
}

/// Records how far the order got with its book.
pub fn set_book_stage(
    conn: &mut DbConnection,
    order: &OrderRow,
    book: BookStage,
    now: i64,
) -> QueryResult<()> {
    let set = (orders::book_stage.eq(book), orders::updated_at.eq(now));
    on_backend!(conn, |c| diesel::update(orders::table.find(&order.id)).set(set).execute(c))?;
    Ok(())
}

/// An OCO's order, placed again on its stop leg's terms when the stop fired.
pub fn set_terms(conn: &mut DbConnection, order: &OrderRow, terms: &OrderTerms, now: i64) -> QueryResult<()> {
    let set = (
        orders::order_type.eq(terms.order_type),
        orders::price.eq(terms.price),
        orders::time_in_force.eq(terms.time_in_force),
        orders::updated_at.eq(now),
    );
    on_backend!(conn, |c| diesel::update(orders::table.find(&order.id)).set(set).execute(c))?;
    Ok(())
}

/// Records how much of the order has filled.
pub fn set_filled(conn: &mut DbConnection, order: &OrderRow, filled: Amount, now: i64) -> QueryResult<()> {
    let set = (orders::filled_quantity.eq(filled), orders::updated_at.eq(now));
    on_backend!(conn, |c| diesel::update(orders::table.find(&order.id)).set(set).execute(c))?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<OrderRow>> {
    orders::table.find(id.to_string()).select(OrderRow::as_select()).first(conn).optional()
}

/// The order, if it is the user's.
pub fn find_for_user(conn: &mut DbConnection, id: Uuid, user: Uuid) -> QueryResult<Option<OrderRow>> {
    Ok(find(conn, id)?.filter(|o| o.user_id == user.to_string()))
}

/// Serializes the placements of `user`'s orders until the transaction ends,
/// so that the open orders counted before an insert are still all there is
/// when it commits (without it, a burst on PostgreSQL passes the cap by the
/// number of placements in flight).
pub fn lock_placements(conn: &mut DbConnection, user: Uuid) -> QueryResult<()> {
    /// The placements' lock space: "plac" in ASCII.
    const PLACEMENTS: i32 = 0x706c_6163;
    bourse_common::db::lock_key(conn, PLACEMENTS, &user.to_string())
}

/// The order, locked until the transaction ends (`FOR UPDATE` on PostgreSQL;
/// SQLite has one writer at a time): every change of an order is decided on
/// the state it changes, so a cancel and a saga step that race are applied
/// one after the other, never both on the same old state.
pub fn lock(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<OrderRow>> {
    let query = orders::table.find(id.to_string());
    match conn {
        DbConnection::Postgres(c) => query.select(OrderRow::as_select()).for_update().first(c).optional(),
        DbConnection::Sqlite(c) => query.select(OrderRow::as_select()).first(c).optional(),
    }
}

/// The order, if it is the user's, locked as by [`lock`].
pub fn lock_for_user(conn: &mut DbConnection, id: Uuid, user: Uuid) -> QueryResult<Option<OrderRow>> {
    Ok(lock(conn, id)?.filter(|o| o.user_id == user.to_string()))
}

pub fn find_by_idempotency_key(
    conn: &mut DbConnection,
    user: Uuid,
    key: &IdempotencyKey,
) -> QueryResult<Option<OrderRow>> {
    orders::table
        .filter(orders::user_id.eq(user.to_string()))
        .filter(orders::idempotency_key.eq(key.as_str()))
        .select(OrderRow::as_select())
        .first(conn)
        .optional()
}

/// How many of the user's orders have not ended yet (not filled, cancelled or rejected).
pub fn count_open(conn: &mut DbConnection, user: Uuid) -> QueryResult<u64> {
    let n: Option<i64> =
        open_orders::table.find(user.to_string()).select(open_orders::open).first(conn).optional()?;
    Ok(u64::try_from(n.unwrap_or_default()).unwrap_or_default())
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
    on_backend!(conn, |c| {
        let filtered = || {
            let mut q = orders::table.filter(orders::user_id.eq(user.to_string())).into_boxed();
            if let Some(s) = status {
                q = q.filter(orders::status.eq(s));
            }
            if let Some(m) = market {
                q = q.filter(orders::market.eq(m.to_string()));
            }
            q
        };
        let total = filtered().count().get_result(c)?;
        let rows = filtered()
            .order((orders::created_at.desc(), orders::id.desc()))
            .limit(limit)
            .offset(offset)
            .select(OrderRow::as_select())
            .load(c)?;
        Ok((rows, total))
    })
}

/// A transition as stored. Its statuses stay words: the history is read as written.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{self, OrderRequest};
    use bourse_common::reference::ReferenceData;
    use diesel::sqlite::SqliteConnection;
    use diesel_migrations::MigrationHarness;

    fn database() -> DbConnection {
        let mut sqlite = SqliteConnection::establish(":memory:").unwrap();
        sqlite.run_pending_migrations((MIGRATIONS.sqlite)()).unwrap();
        DbConnection::Sqlite(sqlite)
    }

    fn placed(conn: &mut DbConnection) -> OrderRow {
        let request: OrderRequest = serde_json::from_str(
            r#"{"market":"ETH-USDT","side":"buy","type":"limit","price":"2000.5","quantity":"1.5"}"#,
        )
        .unwrap();
        let reference = ReferenceData::default();
        let order =
            domain::place(&request, reference.market(&request.market), Uuid::now_v7(), Uuid::now_v7())
                .unwrap();
        let key = IdempotencyKey::try_from("k1".to_string()).unwrap();
        let row = OrderRow::new(&order, Some(&key), "{}".into(), 1);
        insert(conn, &row, &Cause { kind: "POST /api/orders".into(), id: "r1".into() }).unwrap();
        row
    }

    /// The columns as text, as the schema has always held them.
    fn stored_words(
        conn: &mut DbConnection,
        id: &str,
    ) -> (String, String, String, Option<String>, String, String) {
        orders::table
            .find(id)
            .select((
                orders::side,
                orders::order_type,
                orders::status,
                orders::price,
                orders::filled_quantity,
                orders::time_in_force,
            ))
            .first(conn)
            .unwrap()
    }

    #[test]
    fn an_order_is_stored_as_words_and_read_back_typed() {
        let mut conn = database();
        let row = placed(&mut conn);
        assert_eq!(
            stored_words(&mut conn, &row.id),
            ("buy".into(), "limit".into(), "pending".into(), Some("2000.5".into()), "0".into(), "gtc".into())
        );
        let (id, user) = row.ids().unwrap();
        let found = find(&mut conn, id).unwrap().unwrap();
        assert_eq!((found.status, found.terms()), (Status::Pending, row.terms()));
        let key = IdempotencyKey::try_from("k1".to_string()).unwrap();
        assert_eq!(
            find_by_idempotency_key(&mut conn, user, &key).unwrap().map(|o| o.id),
            Some(row.id.clone())
        );

        let cause = Cause { kind: "funds.reserved".into(), id: "m1".into() };
        transition(&mut conn, &found, Status::Open, None, &cause, 2).unwrap();
        set_filled(&mut conn, &found, "0.5".parse().unwrap(), 3).unwrap();
        let (_, _, status, _, filled, _) = stored_words(&mut conn, &row.id);
        assert_eq!((status.as_str(), filled.as_str()), ("open", "0.5"));
        assert_eq!(
            find(&mut conn, id).unwrap().unwrap().saga(),
            SagaState { status: Status::Open, ..SagaState::PLACED }
        );
        set_book_stage(&mut conn, &found, BookStage::SentReleased, 4).unwrap();
        let stage: String = orders::table.find(&row.id).select(orders::book_stage).first(&mut conn).unwrap();
        assert_eq!(stage, "sent_released");
        assert_eq!(
            find(&mut conn, id).unwrap().unwrap().saga(),
            SagaState { status: Status::Open, book: BookStage::SentReleased }
        );
        let moves: Vec<(Option<String>, String)> =
            transitions(&mut conn, id).unwrap().into_iter().map(|t| (t.from_status, t.to_status)).collect();
        assert_eq!(moves, [(None, "pending".into()), (Some("pending".into()), "open".into())]);

        let (open, total) = list(&mut conn, user, Some(Status::Open), Some("ETH-USDT"), 10, 0).unwrap();
        assert_eq!((open.len(), total), (1, 1));
        assert_eq!(list(&mut conn, user, Some(Status::Filled), None, 10, 0).unwrap().1, 0);
    }

    #[test]
    fn the_count_of_open_orders_follows_each_order_until_it_ends() {
        let mut conn = database();
        let first = placed(&mut conn);
        let (_, user) = first.ids().unwrap();
        let cause = Cause { kind: "funds.reserved".into(), id: "m1".into() };
        transition(&mut conn, &first, Status::Open, None, &cause, 2).unwrap();
        let mut second = first.clone();
        second.id = Uuid::now_v7().to_string();
        second.idempotency_key = None;
        insert(&mut conn, &second, &cause).unwrap();
        assert_eq!(count_open(&mut conn, user).unwrap(), 2, "pending and open both count");

        let first = find(&mut conn, first.ids().unwrap().0).unwrap().unwrap();
        transition(&mut conn, &first, Status::Filled, None, &cause, 3).unwrap();
        transition(&mut conn, &second, Status::Rejected, Some("insufficient_funds"), &cause, 3).unwrap();
        assert_eq!(count_open(&mut conn, user).unwrap(), 0);
        assert_eq!(count_open(&mut conn, Uuid::now_v7()).unwrap(), 0, "a user who never placed one");
    }

    #[test]
    fn a_stored_word_that_names_no_status_is_a_read_error() {
        let mut conn = database();
        let row = placed(&mut conn);
        diesel::update(orders::table.find(&row.id))
            .set(orders::status.eq("PENDING"))
            .execute(&mut conn)
            .unwrap();
        let (id, _) = row.ids().unwrap();
        assert!(matches!(find(&mut conn, id), Err(diesel::result::Error::DeserializationError(_))));
    }
}
