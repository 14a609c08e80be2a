//! The message catalog: every event and command services exchange, with its
//! `type`. A payload changes only compatibly (new optional fields); anything
//! else is a new `VERSION`. Amounts are decimal strings, ids are UUIDs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::messages::{Kind, Message};
use crate::money::Amount;

macro_rules! message {
    ($ty:ident, $name:literal, $kind:ident) => {
        impl Message for $ty {
            const TYPE: &'static str = $name;
            const KIND: Kind = Kind::$kind;
        }
    };
}

/// A new user (gateway). Correlation: the user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
}
message!(UserRegistered, "user.registered", Event);

/// A user asked to reset their password (gateway); the notification worker
/// mails the one-time token. Correlation: the user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordResetRequested {
    pub user_id: Uuid,
    pub email: String,
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}
message!(PasswordResetRequested, "user.password-reset-requested", Event);

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

/// Limit or market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    Limit,
    Market,
}

/// How long an order rests in the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled.
    #[default]
    Gtc,
    /// Immediate or cancel: what does not fill at once is cancelled.
    Ioc,
    /// Fill or kill: filled whole at once, or not at all.
    Fok,
    /// Rests in the book only: cancelled if it would take liquidity.
    PostOnly,
}

/// Reserve funds for an order (order-service -> payment-service). Correlation: the order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveFunds {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
}
message!(ReserveFunds, "payment.reserve-funds", Command);

/// The funds of an order are reserved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundsReserved {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
}
message!(FundsReserved, "funds.reserved", Event);

/// The funds of an order could not be reserved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundsRejected {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
    pub reason: String,
}
message!(FundsRejected, "funds.rejected", Event);

/// Give back what is left of an order's reservation (order-service -> payment-service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseFunds {
    pub order_id: Uuid,
    pub user_id: Uuid,
}
message!(ReleaseFunds, "payment.release-funds", Command);

/// What was left of a reservation is available again (`amount` may be zero).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundsReleased {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
}
message!(FundsReleased, "funds.released", Event);

/// Put a funded order into its market's book (order-service -> matching-service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitOrder {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub market: String,
    pub side: Side,
    pub order_type: OrderType,
    pub price: Option<Amount>,
    pub quantity: Amount,
    pub time_in_force: TimeInForce,
}
message!(SubmitOrder, "matching.submit-order", Command);

/// An order was rejected (the user is told). Correlation: the order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub market: String,
    pub reason: String,
    /// The order's terms, for the user's notice (added in version 1; absent from older events).
    pub side: Option<Side>,
    pub order_type: Option<OrderType>,
    pub price: Option<Amount>,
    pub quantity: Option<Amount>,
    /// What the order needed reserved, and in which currency.
    pub currency: Option<String>,
    pub amount: Option<Amount>,
}
message!(OrderRejected, "order.rejected", Event);

/// An order was cancelled and its reservation released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub market: String,
}
message!(OrderCancelled, "order.cancelled", Event);

/// Take an order out of its book (order-service -> matching-service). Correlation: the order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub market: String,
}
message!(CancelOrder, "matching.cancel-order", Command);

/// One fill between a taker and a resting maker, at the maker's price. Correlation: the taker's order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeExecuted {
    pub trade_id: Uuid,
    pub market: String,
    pub price: Amount,
    pub quantity: Amount,
    pub taker_side: Side,
    pub taker_order_id: Uuid,
    pub taker_user_id: Uuid,
    pub maker_order_id: Uuid,
    pub maker_user_id: Uuid,
    pub executed_at: chrono::DateTime<chrono::Utc>,
    /// What each order still has to fill after this trade (zero: filled).
    pub taker_remaining: Option<Amount>,
    pub maker_remaining: Option<Amount>,
}
message!(TradeExecuted, "trade.executed", Event);

/// One side of a settled trade, as its user's accounts saw it (payment-service):
/// what was paid, what was received after the fee. Correlation: the order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundsSettled {
    pub trade_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub market: String,
    pub side: Side,
    /// Provided the liquidity (the resting order).
    pub maker: bool,
    pub price: Amount,
    pub quantity: Amount,
    pub paid_currency: String,
    pub paid: Amount,
    pub received_currency: String,
    /// Credited, after the fee.
    pub received: Amount,
    /// Charged in the received currency.
    pub fee: Amount,
    /// What the order still has to fill (zero: filled), when matching-service said.
    pub remaining: Option<Amount>,
}
message!(FundsSettled, "funds.settled", Event);

/// Where an order stands in its book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookStatus {
    /// Resting, nothing filled.
    Open,
    /// Resting, partly filled.
    PartiallyFilled,
    Filled,
    /// Out of the book with a rest unfilled (requested, ioc, fok, post-only, self-trade).
    Cancelled,
}

impl BookStatus {
    /// No further fills can come.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Filled | Self::Cancelled)
    }
}

/// An order's state after a book change (matching-service). Correlation: the order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderUpdated {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub market: String,
    pub quantity: Amount,
    pub filled_quantity: Amount,
    pub status: BookStatus,
    /// Why it was cancelled (`cancelled` only).
    pub reason: Option<String>,
}
message!(OrderUpdated, "order.updated", Event);

/// A trade, as public market data (matching-service). No user ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketTrade {
    pub trade_id: Uuid,
    pub market: String,
    pub price: Amount,
    pub quantity: Amount,
    pub taker_side: Side,
    pub executed_at: chrono::DateTime<chrono::Utc>,
}
message!(MarketTrade, "market.trade", Market);

/// A market's book changed (matching-service): re-read it for the new levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookChanged {
    pub market: String,
}
message!(BookChanged, "market.book-changed", Market);
