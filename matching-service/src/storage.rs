//! Books, their versions and trades in the service's database.

use bourse_common::catalog::Side;
use bourse_common::db::DbConnection;
use bourse_common::money::Amount;
use diesel::prelude::*;
use uuid::Uuid;

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
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// A stored book that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("stored book order {0} is corrupt")]
pub struct CorruptBook(String);

#[derive(Queryable)]
struct BookRow {
    order_id: String,
    _market: String,
    user_id: String,
    side: String,
    price: String,
    quantity: String,
    filled: String,
    seq: i64,
}

/// The resting orders of a market. A row that does not decode is a
/// deserialization error, as diesel reports any other.
pub fn load_book(conn: &mut DbConnection, market: &str) -> QueryResult<Vec<Resting>> {
    let rows: Vec<BookRow> = book_orders::table.filter(book_orders::market.eq(market)).load(conn)?;
    rows.into_iter()
        .map(|r| {
            let corrupt =
                || diesel::result::Error::DeserializationError(Box::new(CorruptBook(r.order_id.clone())));
            let amount = |s: &str| s.parse::<Amount>().map(Amount::value).map_err(|_| corrupt());
            Ok(Resting {
                id: Uuid::parse_str(&r.order_id).map_err(|_| corrupt())?,
                user: Uuid::parse_str(&r.user_id).map_err(|_| corrupt())?,
                side: match r.side.as_str() {
                    "buy" => Side::Buy,
                    "sell" => Side::Sell,
                    _ => return Err(corrupt()),
                },
                price: amount(&r.price)?,
                quantity: amount(&r.quantity)?,
                filled: amount(&r.filled)?,
                seq: u64::try_from(r.seq).map_err(|_| corrupt())?,
            })
        })
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
        diesel::insert_into(book_orders::table)
            .values((
                book_orders::order_id.eq(o.id.to_string()),
                book_orders::market.eq(market),
                book_orders::user_id.eq(o.user.to_string()),
                book_orders::side.eq(side_name(o.side)),
                book_orders::price.eq(o.price.to_string()),
                book_orders::quantity.eq(o.quantity.to_string()),
                book_orders::filled.eq(o.filled.to_string()),
                book_orders::seq.eq(o.seq as i64),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The market's book version (0 for a new market).
pub fn version(conn: &mut DbConnection, market: &str) -> QueryResult<i64> {
    Ok(book_versions::table.find(market).select(book_versions::version).first(conn).optional()?.unwrap_or(0))
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

pub fn insert_trade(
    conn: &mut DbConnection,
    id: Uuid,
    market: &str,
    fill: &Fill,
    at: i64,
) -> QueryResult<()> {
    diesel::insert_into(trades::table)
        .values((
            trades::id.eq(id.to_string()),
            trades::market.eq(market),
            trades::price.eq(fill.price.to_string()),
            trades::quantity.eq(fill.quantity.to_string()),
            trades::taker_side.eq(side_name(fill.taker_side)),
            trades::taker_order_id.eq(fill.taker_order.to_string()),
            trades::maker_order_id.eq(fill.maker_order.to_string()),
            trades::executed_at.eq(at),
        ))
        .execute(conn)?;
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
    pub taker_side: String,
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

/// A market's trades executed in `[from, to)`, in execution order.
pub fn trades_between(
    conn: &mut DbConnection,
    market: &str,
    from: i64,
    to: i64,
) -> QueryResult<Vec<TradeRow>> {
    trades::table
        .filter(trades::market.eq(market))
        .filter(trades::executed_at.ge(from))
        .filter(trades::executed_at.lt(to))
        .order((trades::executed_at.asc(), trades::id.asc()))
        .select(TradeRow::as_select())
        .load(conn)
}
