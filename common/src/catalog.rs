//! The message catalog: every event and command services exchange, with its
//! `type`. A payload changes only compatibly (new optional fields); anything
//! else is a new `VERSION`. Amounts are decimal strings, ids are UUIDs.

use rust_decimal::Decimal;
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
    // A command sharded by a field of its (see `Message::shard`).
    ($ty:ident, $name:literal, $kind:ident, shard = |$m:ident| $shard:expr) => {
        impl Message for $ty {
            const TYPE: &'static str = $name;
            const KIND: Kind = Kind::$kind;

            fn shard(&self) -> Option<&str> {
                let $m = self;
                Some($shard)
            }
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
/// mails the one-time token. Correlation: the user id. The token travels
/// sealed (`sealed_token`, see [`crate::secret::Secret::seal`]) with the
/// key the gateway shares with notify-service only: the outbox, the broker
/// and the event log never hold it in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordResetRequested {
    pub user_id: Uuid,
    pub email: String,
    pub sealed_token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}
message!(PasswordResetRequested, "user.password-reset-requested", Event);

/// Someone tried to register with an address that is already registered
/// (gateway); its owner is told by e-mail, the caller gets the same answer as
/// for a new address. Correlation: the owner's user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationAttempted {
    pub user_id: Uuid,
    pub email: String,
}
message!(RegistrationAttempted, "user.registration-attempted", Event);

/// A user's role was set (gateway): by the operator command `bourse admin
/// grant` (`granted_by` empty) or by an administrator through
/// `POST /api/admin/users/{id}/role`. The audit record of who made whom an
/// administrator. Correlation: the user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleGranted {
    pub user_id: Uuid,
    pub email: String,
    pub role: crate::auth::Role,
    pub previous_role: crate::auth::Role,
    /// The administrator who granted it; `None`: the operator command.
    pub granted_by: Option<Uuid>,
    /// `cli` or `api`.
    pub via: String,
}
message!(RoleGranted, "user.role-granted", Event);

/// A user's custodial wallet on the chain (chain-service): where their
/// deposits go. Correlation: the user id. Never a key, only the address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletCreated {
    pub user_id: Uuid,
    /// EIP-55 checksummed address.
    pub address: String,
    pub chain_id: u64,
}
message!(WalletCreated, "wallet.created", Event);

/// A deposit seen in a block (chain-service), not yet confirmed: for the
/// user's live view only, nothing is credited. Correlation: the deposit id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepositSeen {
    pub deposit_id: String,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
    pub tx_hash: String,
    pub block_number: u64,
    pub required_confirmations: u64,
}
message!(DepositSeen, "deposit.seen", Event);

/// A deposit with its confirmations (chain-service): payment-service credits
/// it, once. Correlation: the deposit id (`<chain id>:<tx hash>:<index>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepositConfirmed {
    pub deposit_id: String,
    pub user_id: Uuid,
    pub currency: String,
    /// What the ledger credits (the chain amount truncated to the currency's scale).
    pub amount: Amount,
    pub tx_hash: String,
    pub block_number: u64,
}
message!(DepositConfirmed, "deposit.confirmed", Event);

/// A credited deposit whose block left the chain (a reorg deeper than the
/// confirmations asked): an alert for the operators, never a silent debit.
/// Correlation: the deposit id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepositReverted {
    pub deposit_id: String,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
    pub tx_hash: String,
}
message!(DepositReverted, "deposit.reverted", Event);

/// Hold a withdrawal's amount and fee (chain-service -> payment-service):
/// the same rules as an order's reservation. Correlation: the withdrawal id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldWithdrawal {
    pub withdrawal_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    /// What reaches the address.
    pub amount: Amount,
    /// The exchange's withdrawal fee, held and debited with the amount.
    pub fee: Amount,
}
message!(HoldWithdrawal, "payment.hold-withdrawal", Command);

/// A withdrawal's amount and fee are held (payment-service): chain-service sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawalHeld {
    pub withdrawal_id: Uuid,
    pub user_id: Uuid,
}
message!(WithdrawalHeld, "withdrawal.held", Event);

/// A withdrawal's amount and fee could not be held (payment-service): nothing moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawalRefused {
    pub withdrawal_id: Uuid,
    pub user_id: Uuid,
    pub reason: String,
}
message!(WithdrawalRefused, "withdrawal.refused", Event);

/// A withdrawal's transaction was handed to the chain (chain-service), or
/// handed again with a higher fee (a new `tx_hash`, the same nonce).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawalSent {
    pub withdrawal_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
    pub address: String,
    pub tx_hash: String,
}
message!(WithdrawalSent, "withdrawal.sent", Event);

/// A withdrawal's transaction has its confirmations (chain-service):
/// payment-service debits what it held. Correlation: the withdrawal id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawalConfirmed {
    pub withdrawal_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
    pub fee: Amount,
    pub address: String,
    pub tx_hash: String,
    pub block_number: u64,
}
message!(WithdrawalConfirmed, "withdrawal.confirmed", Event);

/// A held withdrawal that will not happen (chain-service): its transaction
/// reverted or could not be sent. payment-service gives back what it held, in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawalFailed {
    pub withdrawal_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
    pub address: String,
    pub reason: String,
    /// The transaction that reverted, when one was mined.
    pub tx_hash: Option<String>,
}
message!(WithdrawalFailed, "withdrawal.failed", Event);

/// A user's part of a settlement window is confirmed on chain (chain-service):
/// their trades of the window, netted per currency, moved between their
/// custodial wallet and the clearing wallet. Correlation: the window id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettlementConfirmed {
    pub window_id: Uuid,
    pub user_id: Uuid,
    /// The user's trades in the window.
    pub trades: u32,
    pub legs: Vec<SettlementLeg>,
}
message!(SettlementConfirmed, "settlement.confirmed", Event);

/// One currency of a user's settlement: the net the wallet sent (negative)
/// or received (positive), in its transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettlementLeg {
    pub currency: String,
    pub amount: Amount,
    pub tx_hash: String,
    pub block_number: u64,
}

/// An audit found discrepancies (payment-service): an alert for the
/// administrators. Correlation: the report id (`GET /api/admin/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditFailed {
    pub report_id: Uuid,
    pub discrepancies: u64,
    /// The checks that failed, each once.
    pub checks: Vec<String>,
}
message!(AuditFailed, "audit.failed", Event);

crate::named_enum! {
    /// Buy or sell.
    #[derive(utoipa::ToSchema)]
    pub enum Side {
        Buy = "buy",
        Sell = "sell",
    }
}

impl Side {
    /// The other side of the book.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

crate::named_enum! {
    /// Limit or market.
    #[derive(utoipa::ToSchema)]
    pub enum OrderType {
        Limit = "limit",
        Market = "market",
    }
}

crate::named_enum! {
    /// How long an order rests in the book.
    #[derive(Default, utoipa::ToSchema)]
    pub enum TimeInForce {
        /// Good till cancelled.
        #[default]
        Gtc = "gtc",
        /// Immediate or cancel: what does not fill at once is cancelled.
        Ioc = "ioc",
        /// Fill or kill: filled whole at once, or not at all.
        Fok = "fok",
        /// Rests in the book only: cancelled if it would take liquidity.
        PostOnly = "post_only",
    }
}

/// An order's terms: what it asks of its market. The one shape of them in the
/// catalog, order-service (validation, storage, the order clients see), and
/// matching-service's book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderTerms {
    pub market: String,
    pub side: Side,
    /// `type` on the wire, as clients name it; `order_type` is still read.
    #[serde(rename = "type", alias = "order_type")]
    pub order_type: OrderType,
    /// A limit order's price; a market buy's cap (it sizes the reservation); none for a market sell.
    pub price: Option<Amount>,
    /// In the base currency.
    pub quantity: Amount,
    pub time_in_force: TimeInForce,
}

/// Reserve funds for an order (order-service -> payment-service). Correlation: the order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveFunds {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
    /// The order's limit, which every trade that settles it must respect (a
    /// buy never pays above it, a sell never receives below it): a limit
    /// order's price, a market buy's cap; none for a market sell (added in
    /// version 1; absent from older commands, whose reservations are not checked).
    pub limit_price: Option<Amount>,
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
    /// On the wire as fields of the command itself (`market`, `side`, ...).
    #[serde(flatten)]
    pub terms: OrderTerms,
}
message!(SubmitOrder, "matching.submit-order", Command, shard = |m| &m.terms.market);

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
    /// Whether its book had it (matching-service's `order.updated` said
    /// `cancelled` then); false: cancelled while its funds were reserved.
    #[serde(default)]
    pub in_book: bool,
    #[serde(default)]
    pub quantity: Option<Amount>,
}
message!(OrderCancelled, "order.cancelled", Event);

/// Take an order out of its book (order-service -> matching-service). Correlation: the order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub market: String,
}
message!(CancelOrder, "matching.cancel-order", Command, shard = |m| &m.market);

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

crate::named_enum! {
    /// Where an order stands in its book.
    pub enum BookStatus {
        /// Resting, nothing filled.
        Open = "open",
        /// Resting, partly filled.
        PartiallyFilled = "partially_filled",
        Filled = "filled",
        /// Out of the book with a rest unfilled (requested, ioc, fok, post-only, self-trade).
        Cancelled = "cancelled",
    }
}

impl BookStatus {
    /// No further fills can come.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Filled | Self::Cancelled)
    }
}

/// A state order-service moved an order to that no other event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestedStatus {
    /// Placed; its funds are being reserved.
    Pending,
    /// Its owner asked to cancel it.
    CancelRequested,
}

/// An order placed or asked to be cancelled (order-service), for its owner's
/// live feed (the WebSocket `orders` channel); the book's changes are
/// [`OrderUpdated`], a refusal [`OrderRejected`]. Correlation: the order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderStatusChanged {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub market: String,
    pub quantity: Amount,
    pub filled_quantity: Amount,
    pub status: RequestedStatus,
}
message!(OrderStatusChanged, "order.status-changed", Event);

/// A top-up credited a user's account (payment-service), for their live
/// balances. Correlation: the user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToppedUp {
    pub user_id: Uuid,
    pub currency: String,
    pub amount: Amount,
}
message!(ToppedUp, "funds.topped-up", Event);

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

crate::named_enum! {
    /// A candle width.
    #[derive(utoipa::ToSchema)]
    pub enum Interval {
        M1 = "1m",
        M5 = "5m",
        M15 = "15m",
        H1 = "1h",
        H4 = "4h",
        D1 = "1d",
    }
}

impl Interval {
    pub fn micros(self) -> i64 {
        const MINUTE: i64 = 60_000_000;
        match self {
            Self::M1 => MINUTE,
            Self::M5 => 5 * MINUTE,
            Self::M15 => 15 * MINUTE,
            Self::H1 => 60 * MINUTE,
            Self::H4 => 240 * MINUTE,
            Self::D1 => 1440 * MINUTE,
        }
    }
}

/// A market's candle of one interval as a trade left it: the live feed sends
/// it on as is, on its interval's channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandleUpdated {
    pub market: String,
    pub interval: Interval,
    pub open_time: chrono::DateTime<chrono::Utc>,
    pub open: Amount,
    pub high: Amount,
    pub low: Amount,
    pub close: Amount,
    pub volume: Amount,
}

/// Every interval's candle as a trade left it (matching-service, after every
/// trade): one message for all of them, not one per interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandlesUpdated {
    pub market: String,
    pub candles: Vec<CandleUpdated>,
}
message!(CandlesUpdated, "market.candles", Market);

crate::named_enum! {
    /// What a price trigger is (`POST /api/triggers`' `kind`).
    #[derive(utoipa::ToSchema)]
    pub enum TriggerKind {
        /// Stop-market: a market order when the price reaches the stop (a sell as it falls, a buy as it rises).
        Stop = "stop",
        /// Stop-limit: a limit order at `limit_price` when the price reaches the stop.
        StopLimit = "stop_limit",
        /// Take-profit (market): a sell as the price rises to the level, a buy as it falls.
        TakeProfit = "take_profit",
        /// Take-profit with a limit order.
        TakeProfitLimit = "take_profit_limit",
        /// A stop that follows the best price seen since placement by an amount or a percentage.
        TrailingStop = "trailing_stop",
        /// One-cancels-the-other: a limit order and a stop, linked.
        Oco = "oco",
    }
}

crate::named_enum! {
    /// Which way the price must move to fire a trigger.
    pub enum PriceMove {
        /// Fires on a trade at or below the stop.
        Falls = "falls",
        /// Fires on a trade at or above the stop.
        Rises = "rises",
    }
}

impl PriceMove {
    /// Does a trade at `price` fire a trigger with `stop` that fires as the price moves this way?
    pub fn crosses(self, stop: Decimal, price: Decimal) -> bool {
        match self {
            Self::Falls => price <= stop,
            Self::Rises => price >= stop,
        }
    }

    /// The better for a trailing stop of its best price and a trade's: the
    /// higher when it fires as the price falls, the lower when it rises.
    pub fn better(self, best: Decimal, price: Decimal) -> Decimal {
        match self {
            Self::Falls => best.max(price),
            Self::Rises => best.min(price),
        }
    }
}

/// How far a trailing stop stays behind the best price seen since it was armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trail {
    /// A distance in price units.
    Amount(Decimal),
    /// A percentage of the best price: `5` is 5 %.
    Percent(Decimal),
}

impl Trail {
    /// The stop of a trailing trigger that fires as the price `moves`, `best` the best price seen:
    /// `best - amount` or `best * (1 - pct/100)` as it falls, `best + amount` or `best * (1 + pct/100)` as it rises.
    /// Exact (no rounding but `Decimal`'s 28 places); saturates at its bounds instead of panicking.
    pub fn stop(self, moves: PriceMove, best: Decimal) -> Decimal {
        match (self, moves) {
            (Self::Amount(a), PriceMove::Falls) => best.saturating_sub(a),
            (Self::Amount(a), PriceMove::Rises) => best.saturating_add(a),
            (Self::Percent(p), PriceMove::Falls) => {
                best.saturating_mul(Decimal::ONE.saturating_sub(hundredth(p)))
            }
            (Self::Percent(p), PriceMove::Rises) => {
                best.saturating_mul(Decimal::ONE.saturating_add(hundredth(p)))
            }
        }
    }
}

/// `x / 100`, by moving the decimal point when `Decimal` has room for two
/// more places (a trailing stop is computed on every new best price: division is slow).
fn hundredth(x: Decimal) -> Decimal {
    let mut y = x;
    match y.set_scale(x.scale() + 2) {
        Ok(()) => y,
        Err(_) => x / Decimal::ONE_HUNDRED,
    }
}

impl ArmTrigger {
    /// An OCO's limit leg, the order it rests in the book until one of its legs executes.
    pub fn limit_leg(&self) -> Option<OrderTerms> {
        self.limit_leg_price.map(|price| OrderTerms {
            order_type: OrderType::Limit,
            price: Some(price),
            time_in_force: TimeInForce::Gtc,
            ..self.terms.clone()
        })
    }
}

impl TriggerKind {
    /// The way the price must move to fire a trigger of this kind on `side`:
    /// a stop sells as the price falls and buys as it rises; a take-profit the reverse.
    pub fn fires_when(self, side: Side) -> PriceMove {
        let stop_like = !matches!(self, Self::TakeProfit | Self::TakeProfitLimit);
        match (stop_like, side) {
            (true, Side::Sell) | (false, Side::Buy) => PriceMove::Falls,
            (true, Side::Buy) | (false, Side::Sell) => PriceMove::Rises,
        }
    }
}

/// Arm a funded trigger in its market's book (order-service -> matching-service).
/// Correlation: the trigger id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmTrigger {
    pub trigger_id: Uuid,
    pub user_id: Uuid,
    /// The order it places when it fires: its funds are reserved under this id.
    pub order_id: Uuid,
    pub kind: TriggerKind,
    pub fires_when: PriceMove,
    /// A fixed stop (none for a trailing stop).
    pub stop_price: Option<Amount>,
    /// A trailing stop's distance from the best price: an amount, or a percentage.
    pub trail_amount: Option<Amount>,
    pub trail_percent: Option<Amount>,
    /// After this it never fires.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// An OCO's limit leg: a limit order at this price (its side and
    /// quantity, good till cancelled) put in the book under `order_id` as the
    /// trigger is armed. When it trades the stop is disarmed (`traded`); when
    /// the stop fires the order leaves the book and is placed again as
    /// `terms` say, under the same id and the same reservation.
    pub limit_leg_price: Option<Amount>,
    /// The order it places (on the wire as fields of the command: `market`, `side`, ...).
    #[serde(flatten)]
    pub terms: OrderTerms,
}
message!(ArmTrigger, "matching.arm-trigger", Command, shard = |m| &m.terms.market);

crate::named_enum! {
    /// Why a trigger left its book without firing.
    pub enum DisarmReason {
        /// Its user cancelled it.
        Cancelled = "cancelled",
        /// Its `expires_at` passed.
        Expired = "expired",
        /// The price had already crossed its stop when it was armed.
        Invalid = "invalid",
        /// An OCO whose limit order traded: its stop is off, the order goes on.
        Traded = "traded",
    }
}

/// Take a trigger out of its book (order-service -> matching-service):
/// cancelled or expired. Correlation: the trigger id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisarmTrigger {
    pub trigger_id: Uuid,
    pub user_id: Uuid,
    pub order_id: Uuid,
    pub market: String,
    pub reason: DisarmReason,
}
message!(DisarmTrigger, "matching.disarm-trigger", Command, shard = |m| &m.market);

/// A trigger fired on a trade (matching-service): its order is in the book
/// already, placed in the same transaction. Correlation: the trigger id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerFired {
    pub trigger_id: Uuid,
    pub user_id: Uuid,
    pub order_id: Uuid,
    pub kind: TriggerKind,
    /// Its stop when it fired (a trailing stop's as it had moved).
    pub stop_price: Amount,
    /// The price of the trade that fired it.
    pub trade_price: Amount,
    pub fired_at: chrono::DateTime<chrono::Utc>,
    /// The order it placed.
    #[serde(flatten)]
    pub terms: OrderTerms,
}
message!(TriggerFired, "trigger.fired", Event);

/// A trigger left its book without firing (matching-service): cancelled,
/// expired, or refused when armed. Correlation: the trigger id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerDisarmed {
    pub trigger_id: Uuid,
    pub user_id: Uuid,
    pub order_id: Uuid,
    pub market: String,
    pub reason: DisarmReason,
    /// In words, for the user (`invalid`: what the price was).
    pub detail: Option<String>,
}
message!(TriggerDisarmed, "trigger.disarmed", Event);

/// A trigger's status changed (order-service), as its user sees it: the
/// live `triggers` channel. Correlation: the trigger id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerUpdated {
    pub trigger_id: Uuid,
    pub user_id: Uuid,
    pub market: String,
    pub kind: TriggerKind,
    pub side: Side,
    /// `active`, `fired`, `traded` (an OCO whose limit order traded), `cancelled`, `expired` or `rejected`.
    pub status: String,
    /// The order it placed (`fired`).
    pub order_id: Option<Uuid>,
    /// Why it was rejected (`rejected`).
    pub reason: Option<String>,
}
message!(TriggerUpdated, "trigger.updated", Event);

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_trigger_fires_at_its_stop_inclusive_in_its_direction() {
        assert!(PriceMove::Falls.crosses(d("100"), d("100")));
        assert!(PriceMove::Falls.crosses(d("100"), d("99.99")));
        assert!(!PriceMove::Falls.crosses(d("100"), d("100.01")));
        assert!(PriceMove::Rises.crosses(d("100"), d("100.00")));
        assert!(!PriceMove::Rises.crosses(d("100"), d("99.99")));
        assert_eq!(TriggerKind::Stop.fires_when(Side::Sell), PriceMove::Falls);
        assert_eq!(TriggerKind::TakeProfit.fires_when(Side::Sell), PriceMove::Rises);
        assert_eq!(TriggerKind::TrailingStop.fires_when(Side::Buy), PriceMove::Rises);
        assert_eq!(TriggerKind::TakeProfitLimit.fires_when(Side::Buy), PriceMove::Falls);
    }

    #[test]
    fn a_trailing_stop_is_its_trail_away_from_the_best_price_exactly() {
        assert_eq!(Trail::Amount(d("5")).stop(PriceMove::Falls, d("110")), d("105"));
        assert_eq!(Trail::Amount(d("5")).stop(PriceMove::Rises, d("110")), d("115"));
        assert_eq!(Trail::Percent(d("10")).stop(PriceMove::Falls, d("200")), d("180"));
        assert_eq!(Trail::Percent(d("2.5")).stop(PriceMove::Rises, d("200")), d("205"));
        assert_eq!(hundredth(d("12.5")), d("0.125"));
        let tiny = d("0.0000000000000000000000000123");
        assert_eq!(hundredth(tiny), tiny / Decimal::ONE_HUNDRED);
    }
}
