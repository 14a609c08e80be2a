//! Books, their versions, trades and cancel tombstones in the service's database. Sides and
//! amounts are typed columns (`bourse_common`'s one mapping per type): a
//! stored value that does not decode fails the read.

use bourse_common::catalog::Side;
use bourse_common::db::DbConnection;
use bourse_common::money::Amount;
use diesel::prelude::*;
use uuid::Uuid;

use crate::candles::Tick;
use crate::engine::{Fill, Resting};

diesel::table! {
    book_orders (order_id) {
        order_id -> Text,
        market -> Text,
        user_id -> Text,
        side -> Text,
        price -> Text,
        quantity -> Text,
        filled -> Text,
        seq -> BigInt,
    }
}

diesel::table! {
    book_versions (market) {
        market -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    trades (id) {
        id -> Text,
        market -> Text,
        price -> Text,
        quantity -> Text,
        taker_side -> Text,
        taker_order_id -> Text,
        maker_order_id -> Text,
        executed_at -> BigInt,
        book_version -> Nullable<BigInt>,
    }
}

diesel::table! {
    cancel_tombstones (order_id) {
        order_id -> Text,
        market -> Text,
        user_id -> Text,
        created_at -> BigInt,
    }
}

/// A stored book order that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("stored book order {order_id} is corrupt: {reason}")]
pub struct CorruptBook {
    order_id: String,
    reason: String,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = book_orders)]
struct BookRow {
    order_id: String,
    user_id: String,
    side: Side,
    price: Amount,
    quantity: Amount,
    filled: Amount,
    seq: i64,
}

#[derive(Insertable)]
#[diesel(table_name = book_orders)]
struct BookOrderForm<'a> {
    order_id: String,
    market: &'a str,
    user_id: String,
    side: Side,
    price: Amount,
    quantity: Amount,
    filled: Amount,
    seq: i64,
}

impl BookRow {
    fn resting(self) -> Result<Resting, CorruptBook> {
        let corrupt = |reason: &dyn std::fmt::Display| CorruptBook {
            order_id: self.order_id.clone(),
            reason: reason.to_string(),
        };
        Ok(Resting {
            id: Uuid::parse_str(&self.order_id).map_err(|e| corrupt(&e))?,
            user: Uuid::parse_str(&self.user_id).map_err(|e| corrupt(&e))?,
            side: self.side,
            price: self.price.value(),
            quantity: self.quantity.value(),
            filled: self.filled.value(),
            seq: u64::try_from(self.seq).map_err(|e| corrupt(&e))?,
        })
    }
}

/// The resting orders of a market. A row that does not decode (a word that
/// names no side, an amount or id that does not parse) is a deserialization
/// error, as diesel reports any other.
pub fn load_book(conn: &mut DbConnection, market: &str) -> QueryResult<Vec<Resting>> {
    let rows: Vec<BookRow> =
        book_orders::table.filter(book_orders::market.eq(market)).select(BookRow::as_select()).load(conn)?;
    rows.into_iter()
        .map(|r| r.resting().map_err(|e| diesel::result::Error::DeserializationError(Box::new(e))))
        .collect()
}

/// Writes an order as it now rests, or removes it when it does not.
pub fn save_order(
    conn: &mut DbConnection,
    market: &str,
    id: Uuid,
    resting: Option<&Resting>,
) -> QueryResult<()> {
    diesel::delete(book_orders::table.find(id.to_string())).execute(conn)?;
    if let Some(o) = resting {
        let form = BookOrderForm {
            order_id: o.id.to_string(),
            market,
            user_id: o.user.to_string(),
            side: o.side,
            price: o.price.into(),
            quantity: o.quantity.into(),
            filled: o.filled.into(),
            seq: i64::try_from(o.seq).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?,
        };
        // Typed values bind per back end (common maps them for each, not for both at once).
        bourse_common::on_backend!(conn, |c| diesel::insert_into(book_orders::table)
            .values(&form)
            .execute(c))?;
    }
    Ok(())
}

/// The market's book version (0 for a new market).
pub fn version(conn: &mut DbConnection, market: &str) -> QueryResult<i64> {
    Ok(book_versions::table.find(market).select(book_versions::version).first(conn).optional()?.unwrap_or(0))
}

/// The version of the book a command is about to change, its row locked to
/// the end of the transaction on PostgreSQL (SQLite has one writer at a time
/// already): two consumers of one market's queue (the broker handing it to
/// another instance while the old one's transaction still commits) take
/// turns, and the second finds the first's version and loads the book again.
pub fn version_for_update(conn: &mut DbConnection, market: &str) -> QueryResult<i64> {
    let query = book_versions::table.find(market).select(book_versions::version);
    let version = match conn {
        DbConnection::Postgres(c) => query.for_update().first(c).optional()?,
        DbConnection::Sqlite(c) => query.first(c).optional()?,
    };
    Ok(version.unwrap_or(0))
}

/// Records that the market's book changed; returns the new version.
pub fn bump_version(conn: &mut DbConnection, market: &str, from: i64) -> QueryResult<i64> {
    if from == 0 {
        diesel::insert_into(book_versions::table)
            .values((book_versions::market.eq(market), book_versions::version.eq(1)))
            .execute(conn)?;
    } else {
        diesel::update(book_versions::table.find(market))
            .set(book_versions::version.eq(from + 1))
            .execute(conn)?;
    }
    Ok(from + 1)
}

/// Remembers a cancel that found no order in the book: if its submit comes
/// later, the order is turned away ([`has_tombstone`]). Kept once per order.
pub fn leave_tombstone(
    conn: &mut DbConnection,
    order_id: Uuid,
    market: &str,
    user: Uuid,
    now: i64,
) -> QueryResult<()> {
    let row = (
        cancel_tombstones::order_id.eq(order_id.to_string()),
        cancel_tombstones::market.eq(market),
        cancel_tombstones::user_id.eq(user.to_string()),
        cancel_tombstones::created_at.eq(now),
    );
    bourse_common::on_backend!(conn, |c| diesel::insert_into(cancel_tombstones::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// Did a cancel of this order come before it?
pub fn has_tombstone(conn: &mut DbConnection, order_id: Uuid) -> QueryResult<bool> {
    let found = cancel_tombstones::table
        .find(order_id.to_string())
        .select(cancel_tombstones::order_id)
        .first::<String>(conn)
        .optional()?;
    Ok(found.is_some())
}

#[derive(Insertable)]
#[diesel(table_name = trades)]
struct TradeForm<'a> {
    id: String,
    market: &'a str,
    price: Amount,
    quantity: Amount,
    taker_side: Side,
    taker_order_id: String,
    maker_order_id: String,
    executed_at: i64,
    book_version: Option<i64>,
}

/// Stores a trade made at `at` by the command that moves its market's book to `version`.
pub fn insert_trade(
    conn: &mut DbConnection,
    id: Uuid,
    market: &str,
    fill: &Fill,
    at: i64,
    version: i64,
) -> QueryResult<()> {
    let form = TradeForm {
        id: id.to_string(),
        market,
        price: fill.price.into(),
        quantity: fill.quantity.into(),
        taker_side: fill.taker_side,
        taker_order_id: fill.taker_order.to_string(),
        maker_order_id: fill.maker_order.to_string(),
        executed_at: at,
        book_version: Some(version),
    };
    bourse_common::on_backend!(conn, |c| diesel::insert_into(trades::table).values(&form).execute(c))?;
    Ok(())
}

/// A trade as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = trades)]
pub struct TradeRow {
    pub id: String,
    pub market: String,
    pub price: Amount,
    pub quantity: Amount,
    pub taker_side: Side,
    pub taker_order_id: String,
    pub maker_order_id: String,
    pub executed_at: i64,
}

/// A page of a market's trades, newest first, and how many there are.
pub fn trades_page(
    conn: &mut DbConnection,
    market: &str,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<TradeRow>, i64)> {
    let of_market = || trades::table.filter(trades::market.eq(market.to_string()));
    let total = of_market().count().get_result(conn)?;
    let rows = of_market()
        .order((trades::executed_at.desc(), trades::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(TradeRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// A market's trades executed in `[from, to)`, in execution order, as
/// candles see them: the history's candles and the live ones read the same.
pub fn ticks_between(
    conn: &mut DbConnection,
    market: &str,
    from: i64,
    to: i64,
    limit: i64,
) -> QueryResult<Vec<Tick>> {
    let rows: Vec<(i64, Amount, Amount)> = trades::table
        .filter(trades::market.eq(market))
        .filter(trades::executed_at.ge(from))
        .filter(trades::executed_at.lt(to))
        .order((trades::executed_at.asc(), trades::id.asc()))
        .select((trades::executed_at, trades::price, trades::quantity))
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(at_micros, price, quantity)| Tick {
            at_micros,
            price: price.value(),
            quantity: quantity.value(),
        })
        .collect())
}

/// A migrated in-memory SQLite database, for unit tests of what is stored.
#[cfg(test)]
pub(crate) fn test_db() -> DbConnection {
    use diesel_migrations::MigrationHarness;
    let mut conn = diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite");
    conn.run_pending_migrations((crate::MIGRATIONS.sqlite)()).expect("migrations");
    DbConnection::Sqlite(conn)
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    #[test]
    fn a_resting_order_round_trips_and_a_bad_stored_word_fails_the_read() {
        let mut conn = test_db();
        let order = Resting {
            id: Uuid::from_u128(1),
            user: Uuid::from_u128(2),
            side: Side::Sell,
            price: Decimal::new(10050, 2),
            quantity: Decimal::new(15, 1),
            filled: Decimal::new(5, 1),
            seq: 7,
        };
        save_order(&mut conn, "ETH-USDT", order.id, Some(&order)).unwrap();
        assert_eq!(load_book(&mut conn, "ETH-USDT").unwrap(), std::slice::from_ref(&order));
        assert_eq!(load_book(&mut conn, "BTC-USDT").unwrap(), []);

        diesel::update(book_orders::table).set(book_orders::side.eq("sideways")).execute(&mut conn).unwrap();
        let err = load_book(&mut conn, "ETH-USDT").unwrap_err();
        assert!(matches!(err, diesel::result::Error::DeserializationError(_)), "{err}");
        diesel::update(book_orders::table).set(book_orders::side.eq("sell")).execute(&mut conn).unwrap();
        diesel::update(book_orders::table).set(book_orders::price.eq("a lot")).execute(&mut conn).unwrap();
        assert!(load_book(&mut conn, "ETH-USDT").is_err(), "an amount that does not parse");

        save_order(&mut conn, "ETH-USDT", order.id, None).unwrap();
        assert_eq!(load_book(&mut conn, "ETH-USDT").unwrap(), []);
    }

    #[test]
    fn a_tombstone_is_kept_once_per_order() {
        let mut conn = test_db();
        let (order, user) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(!has_tombstone(&mut conn, order).unwrap());
        leave_tombstone(&mut conn, order, "ETH-USDT", user, 1).unwrap();
        leave_tombstone(&mut conn, order, "ETH-USDT", user, 2).unwrap();
        assert!(has_tombstone(&mut conn, order).unwrap());
        assert!(!has_tombstone(&mut conn, user).unwrap());
    }
}
