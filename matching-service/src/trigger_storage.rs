//! Price triggers armed in the books, in the service's database: each with
//! the order it places when it fires, and whether it is still armed.

use bourse_common::catalog::{
    ArmTrigger, DisarmReason, OrderTerms, OrderType, PriceMove, Side, TimeInForce, TriggerDisarmed,
    TriggerKind,
};
use bourse_common::db::DbConnection;
use bourse_common::money::Amount;
use bourse_common::on_backend;
use diesel::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::storage::trades;

diesel::table! {
    book_triggers (trigger_id) {
        trigger_id -> Text,
        market -> Text,
        user_id -> Text,
        order_id -> Text,
        kind -> Text,
        fires_when -> Text,
        stop_price -> Nullable<Text>,
        trail_amount -> Nullable<Text>,
        trail_percent -> Nullable<Text>,
        best -> Nullable<Text>,
        armed_version -> BigInt,
        seq -> BigInt,
        expires_at -> Nullable<BigInt>,
        side -> Text,
        order_type -> Text,
        price -> Nullable<Text>,
        quantity -> Text,
        time_in_force -> Text,
        status -> Text,
        limit_leg_price -> Nullable<Text>,
    }
}

/// Where a stored trigger is.
pub const ARMED: &str = "armed";
pub const FIRED: &str = "fired";
pub const DISARMED: &str = "disarmed";

/// A trigger as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = book_triggers)]
pub struct TriggerRow {
    pub trigger_id: String,
    pub market: String,
    pub user_id: String,
    pub order_id: String,
    pub kind: TriggerKind,
    pub fires_when: PriceMove,
    pub stop_price: Option<Amount>,
    pub trail_amount: Option<Amount>,
    pub trail_percent: Option<Amount>,
    /// A trailing stop's best price when it was armed.
    pub best: Option<Amount>,
    /// The book version of the command that armed it.
    pub armed_version: i64,
    /// Arming order in its market: lower is older.
    pub seq: i64,
    pub expires_at: Option<i64>,
    pub side: Side,
    pub order_type: OrderType,
    pub price: Option<Amount>,
    pub quantity: Amount,
    pub time_in_force: TimeInForce,
    pub status: String,
    /// An OCO's limit leg: its order rests at this price while the stop is armed.
    pub limit_leg_price: Option<Amount>,
}

impl TriggerRow {
    /// The row of `cmd` armed at `version` as the `seq`-th of its market, `best` its trailing start.
    pub fn armed(cmd: &ArmTrigger, best: Option<Decimal>, version: i64, seq: i64, status: &str) -> Self {
        Self {
            trigger_id: cmd.trigger_id.to_string(),
            market: cmd.terms.market.clone(),
            user_id: cmd.user_id.to_string(),
            order_id: cmd.order_id.to_string(),
            kind: cmd.kind,
            fires_when: cmd.fires_when,
            stop_price: cmd.stop_price,
            trail_amount: cmd.trail_amount,
            trail_percent: cmd.trail_percent,
            best: best.map(Amount::new),
            armed_version: version,
            seq,
            expires_at: cmd.expires_at.map(|t| t.timestamp_micros()),
            side: cmd.terms.side,
            order_type: cmd.terms.order_type,
            price: cmd.terms.price,
            quantity: cmd.terms.quantity,
            time_in_force: cmd.terms.time_in_force,
            status: status.to_string(),
            limit_leg_price: cmd.limit_leg_price,
        }
    }

    /// The order it places when it fires.
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

    /// The event that says it left its book without firing, for `reason`.
    pub fn disarmed(&self, reason: DisarmReason, detail: Option<String>) -> QueryResult<TriggerDisarmed> {
        let (trigger_id, user_id, order_id) = self.ids()?;
        Ok(TriggerDisarmed { trigger_id, user_id, order_id, market: self.market.clone(), reason, detail })
    }

    /// Its id, its user's and its order's.
    pub fn ids(&self) -> QueryResult<(Uuid, Uuid, Uuid)> {
        let parse = |s: &str| {
            Uuid::parse_str(s).map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
        };
        Ok((parse(&self.trigger_id)?, parse(&self.user_id)?, parse(&self.order_id)?))
    }
}

pub fn insert(conn: &mut DbConnection, row: &TriggerRow) -> QueryResult<()> {
    on_backend!(conn, |c| diesel::insert_into(book_triggers::table).values(row).execute(c))?;
    Ok(())
}

/// The stored status of a trigger (`None`: never armed here).
pub fn status(conn: &mut DbConnection, trigger_id: Uuid) -> QueryResult<Option<String>> {
    book_triggers::table.find(trigger_id.to_string()).select(book_triggers::status).first(conn).optional()
}

pub fn set_status(conn: &mut DbConnection, trigger_id: Uuid, status: &str) -> QueryResult<()> {
    diesel::update(book_triggers::table.find(trigger_id.to_string()))
        .set(book_triggers::status.eq(status))
        .execute(conn)?;
    Ok(())
}

/// The armed triggers of a market, in arming order.
pub fn load_armed(conn: &mut DbConnection, market: &str) -> QueryResult<Vec<TriggerRow>> {
    book_triggers::table
        .filter(book_triggers::market.eq(market))
        .filter(book_triggers::status.eq(ARMED))
        .order(book_triggers::seq.asc())
        .select(TriggerRow::as_select())
        .load(conn)
}

/// The next arming `seq` of a market.
pub fn next_seq(conn: &mut DbConnection, market: &str) -> QueryResult<i64> {
    let max: Option<i64> = book_triggers::table
        .filter(book_triggers::market.eq(market))
        .select(diesel::dsl::max(book_triggers::seq))
        .first(conn)?;
    Ok(max.map_or(0, |m| m + 1))
}

/// The prices of a market's trades made by commands after `version`, in the order made.
pub fn prices_after(conn: &mut DbConnection, market: &str, version: i64) -> QueryResult<Vec<(i64, Amount)>> {
    trades::table
        .filter(trades::market.eq(market))
        .filter(trades::book_version.gt(version))
        .order((trades::book_version.asc(), trades::executed_at.asc(), trades::id.asc()))
        .select((trades::book_version.assume_not_null(), trades::price))
        .load(conn)
}

/// The price of a market's last trade.
pub fn last_price(conn: &mut DbConnection, market: &str) -> QueryResult<Option<Decimal>> {
    let price: Option<Amount> = trades::table
        .filter(trades::market.eq(market))
        .order((trades::executed_at.desc(), trades::id.desc()))
        .select(trades::price)
        .first(conn)
        .optional()?;
    Ok(price.map(Amount::value))
}
