//! The rules of orders, pure: what a valid order is, what it reserves, what
//! placing one stores and sends, which status follows which on each step of
//! the saga, what a cancel request does, and what an idempotency key is.
//! No actix-web, lapin or diesel here; the edges (routes, handlers) load,
//! call these, store and send.

use bourse_common::catalog::{BookStatus, OrderTerms, OrderType, ReserveFunds, Side, TimeInForce};
use bourse_common::money::{Amount, MoneyError};
use bourse_common::reference::Market;
use uuid::Uuid;

/// An order as a client asks for it (already typed, not yet validated).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// A market id, e.g. `ETH-USDT`.
    pub market: String,
    pub side: Side,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Required for a limit order, and for a market buy as the highest
    /// price accepted (it sizes the reservation). Decimal string.
    pub price: Option<Amount>,
    /// Decimal string, in the base currency.
    pub quantity: Amount,
    /// `gtc` (default), `ioc`, `fok` or `post_only` for a limit order; a market order is always `ioc`.
    pub time_in_force: Option<TimeInForce>,
}

/// Why an order request is refused; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("no market {0}")]
    UnknownMarket(String),
    #[error("a {0} order needs a price")]
    PriceRequired(&'static str),
    #[error("a market sell takes no price")]
    PriceNotAllowed,
    #[error("price: {0}")]
    Price(MoneyError),
    #[error("quantity: {0}")]
    Quantity(MoneyError),
    #[error("quantity {quantity} is below the minimum {min} of {market}")]
    BelowMinimum { quantity: Amount, min: Amount, market: String },
    #[error("quantity {quantity} is above the maximum {max} of {market}")]
    AboveMaximum { quantity: Amount, max: Amount, market: String },
}

impl OrderError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownMarket(_) => "unknown_market",
            Self::PriceRequired(_) => "price_required",
            Self::PriceNotAllowed => "price_not_allowed",
            Self::Price(e) | Self::Quantity(e) => e.code(),
            Self::BelowMinimum { .. } => "quantity_below_minimum",
            Self::AboveMaximum { .. } => "quantity_above_maximum",
        }
    }
}

/// An order that passed every check, with what it must reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidOrder {
    pub terms: OrderTerms,
    pub reserve_currency: String,
    pub reserve_amount: Amount,
}

impl OrderRequest {
    /// Checks the request against its market. A buy reserves price x quantity
    /// of the quote currency, a sell the quantity of the base currency.
    pub fn validate(&self, market: Option<&Market>) -> Result<ValidOrder, OrderError> {
        let market = market.ok_or_else(|| OrderError::UnknownMarket(self.market.clone()))?;
        let quantity = self.quantity.positive_in(&market.quantity_unit()).map_err(OrderError::Quantity)?;
        if quantity < market.min_quantity {
            return Err(OrderError::BelowMinimum {
                quantity,
                min: market.min_quantity,
                market: market.id.clone(),
            });
        }
        if quantity > market.max_quantity {
            return Err(OrderError::AboveMaximum {
                quantity,
                max: market.max_quantity,
                market: market.id.clone(),
            });
        }
        let price = match (self.order_type, self.side, self.price) {
            (OrderType::Limit, _, None) => return Err(OrderError::PriceRequired("limit")),
            (OrderType::Market, Side::Buy, None) => return Err(OrderError::PriceRequired("market buy")),
            (OrderType::Market, Side::Sell, Some(_)) => return Err(OrderError::PriceNotAllowed),
            (_, _, Some(p)) => Some(p.positive_in(&market.price_unit()).map_err(OrderError::Price)?),
            (_, _, None) => None,
        };
        let time_in_force = match self.order_type {
            OrderType::Market => TimeInForce::Ioc,
            OrderType::Limit => self.time_in_force.unwrap_or_default(),
        };
        let (reserve_currency, reserve_amount) = match (self.side, price) {
            (Side::Buy, Some(p)) => (market.quote.clone(), Amount::new(p.value() * quantity.value())),
            _ => (market.base.clone(), quantity),
        };
        Ok(ValidOrder {
            terms: OrderTerms {
                market: market.id.clone(),
                side: self.side,
                order_type: self.order_type,
                price,
                quantity,
                time_in_force,
            },
            reserve_currency,
            reserve_amount,
        })
    }
}

/// A placed order: what is stored, and the command that starts its saga.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub id: Uuid,
    pub user_id: Uuid,
    pub terms: OrderTerms,
    /// `pending`: nothing is booked before its funds are reserved.
    pub status: Status,
    /// Sent with the order (same transaction): the reservation it needs.
    pub reserve: ReserveFunds,
}

/// Places `request` of `user_id` as order `id` (the caller picks the id: no
/// randomness in here): checked against its market, `pending`, and asking
/// payment-service to reserve what it needs.
pub fn place(
    request: &OrderRequest,
    market: Option<&Market>,
    id: Uuid,
    user_id: Uuid,
) -> Result<NewOrder, OrderError> {
    let valid = request.validate(market)?;
    Ok(NewOrder {
        id,
        user_id,
        terms: valid.terms,
        status: Status::Pending,
        reserve: ReserveFunds {
            order_id: id,
            user_id,
            currency: valid.reserve_currency,
            amount: valid.reserve_amount,
        },
    })
}

/// A client's `Idempotency-Key`: 1 to 200 characters. The same key and body
/// return the same order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// An `Idempotency-Key` that is empty or too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to 200 characters")]
pub struct InvalidIdempotencyKey;

impl InvalidIdempotencyKey {
    pub fn code(&self) -> &'static str {
        "invalid_idempotency_key"
    }
}

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 200;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidIdempotencyKey;

    fn try_from(key: String) -> Result<Self, InvalidIdempotencyKey> {
        // Header values that reach here are ASCII: characters and bytes agree.
        if (1..=Self::MAX_CHARS).contains(&key.chars().count()) {
            Ok(Self(key))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }
}

bourse_common::named_enum! {
    /// Where an order is in its life.
    #[derive(utoipa::ToSchema)]
    pub enum Status {
        Pending = "pending",
        Open = "open",
        PartiallyFilled = "partially_filled",
        Filled = "filled",
        CancelRequested = "cancel_requested",
        Cancelled = "cancelled",
        Rejected = "rejected",
    }
}

/// A step of the saga that may move an order: payment-service's answers to
/// its reservation, and matching-service's view of it in the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `funds.reserved`.
    FundsReserved,
    /// `funds.rejected`.
    FundsRejected,
    /// `funds.released`: what was left of the reservation is available again.
    FundsReleased,
    /// `order.updated`: where the order now stands in its book.
    Book(BookStatus),
}

/// What a user's request to cancel an order does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Asked before: nothing changes, the request answers as the first did.
    AlreadyRequested,
    /// The order becomes `cancel_requested`. A booked order must leave its
    /// book first (`leave_book`), then its reservation is released; a
    /// pending one is released when its reservation's outcome arrives.
    Request { leave_book: bool },
    /// The order is final: nothing is left to cancel.
    Final,
}

impl Status {
    /// No step moves it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Filled | Status::Cancelled | Status::Rejected)
    }

    /// The status table: the status an order in `self` moves to on `step`;
    /// `None`: it stays (the step came late, twice, or changes nothing).
    pub fn after(self, step: Step) -> Option<Status> {
        let next = match (step, self) {
            (Step::FundsReserved, Status::Pending) => Status::Open,
            (Step::FundsRejected, Status::Pending | Status::CancelRequested) => Status::Rejected,
            (Step::FundsReleased, Status::CancelRequested) => Status::Cancelled,
            (Step::Book(_), status) if status.is_final() => return None,
            (Step::Book(BookStatus::Filled), _) => Status::Filled,
            // Out of the book: it waits for its reservation to be released
            // before it is `cancelled`.
            (Step::Book(BookStatus::Cancelled), _) => Status::CancelRequested,
            (Step::Book(BookStatus::PartiallyFilled), Status::Open) => Status::PartiallyFilled,
            _ => return None,
        };
        (next != self).then_some(next)
    }

    /// Funds reserved for an order in `self` that does not move on
    /// `funds.reserved` go straight back: the user cancelled it while they
    /// were being reserved. It stays `cancel_requested` until they are released.
    pub fn releases_reserved_funds(self) -> bool {
        self == Status::CancelRequested
    }

    /// What a user's cancel request does to an order in `self`.
    pub fn cancel(self) -> Cancel {
        match self {
            Status::CancelRequested => Cancel::AlreadyRequested,
            Status::Pending => Cancel::Request { leave_book: false },
            Status::Open | Status::PartiallyFilled => Cancel::Request { leave_book: true },
            Status::Filled | Status::Cancelled | Status::Rejected => Cancel::Final,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::{CancelRequested, Cancelled, Filled, Open, PartiallyFilled, Rejected};
    use bourse_common::reference::ReferenceData;

    fn request(side: Side, order_type: OrderType, price: Option<&str>, quantity: &str) -> OrderRequest {
        OrderRequest {
            market: "ETH-USDT".into(),
            side,
            order_type,
            price: price.map(|p| p.parse().unwrap()),
            quantity: quantity.parse().unwrap(),
            time_in_force: None,
        }
    }

    fn check(r: &OrderRequest) -> Result<ValidOrder, OrderError> {
        r.validate(ReferenceData::default().market(&r.market))
    }

    #[test]
    fn a_limit_buy_reserves_price_times_quantity_of_the_quote() {
        let v = check(&request(Side::Buy, OrderType::Limit, Some("2000.50"), "1.5")).unwrap();
        assert_eq!((v.reserve_currency.as_str(), v.reserve_amount.to_string().as_str()), ("USDT", "3000.75"));
        assert_eq!(v.terms.time_in_force, TimeInForce::Gtc);
    }

    #[test]
    fn a_sell_reserves_its_quantity_of_the_base() {
        let v = check(&request(Side::Sell, OrderType::Market, None, "0.25")).unwrap();
        assert_eq!((v.reserve_currency.as_str(), v.reserve_amount.to_string().as_str()), ("ETH", "0.25"));
        assert_eq!(v.terms.time_in_force, TimeInForce::Ioc);
    }

    #[test]
    fn bad_requests_are_refused_with_their_code() {
        let code = |r: OrderRequest| check(&r).unwrap_err().code();
        assert_eq!(code(request(Side::Buy, OrderType::Limit, None, "1")), "price_required");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("0"), "1")), "amount_not_positive");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("1.001"), "1")), "amount_scale_exceeded");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("1"), "-1")), "amount_not_positive");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("1"), "0.00001")), "amount_scale_exceeded");
        assert_eq!(code(request(Side::Buy, OrderType::Limit, Some("1"), "0.0001")), "quantity_below_minimum");
        assert_eq!(code(request(Side::Sell, OrderType::Market, Some("1"), "1")), "price_not_allowed");
        let mut unknown = request(Side::Buy, OrderType::Limit, Some("1"), "1");
        unknown.market = "DOGE-USDT".into();
        assert_eq!(code(unknown), "unknown_market");
    }

    #[test]
    fn placing_an_order_makes_it_pending_and_reserves_what_it_needs() {
        let r = request(Side::Buy, OrderType::Limit, Some("2000"), "2");
        let (id, user) = (Uuid::now_v7(), Uuid::now_v7());
        let placed = place(&r, ReferenceData::default().market(&r.market), id, user).unwrap();
        assert_eq!((placed.id, placed.user_id, placed.status), (id, user, Status::Pending));
        assert_eq!(placed.terms.market, "ETH-USDT");
        assert_eq!(placed.terms.price, Some("2000".parse().unwrap()));
        assert_eq!(
            placed.reserve,
            ReserveFunds {
                order_id: id,
                user_id: user,
                currency: "USDT".into(),
                amount: "4000".parse().unwrap()
            }
        );
        let mut unknown = r;
        unknown.market = "DOGE-USDT".into();
        assert_eq!(place(&unknown, None, id, user).unwrap_err().code(), "unknown_market");
    }

    #[test]
    fn an_idempotency_key_has_1_to_200_characters() {
        assert_eq!(IdempotencyKey::try_from("k".to_string()).unwrap().as_str(), "k");
        assert!(IdempotencyKey::try_from("k".repeat(200)).is_ok());
        for bad in [String::new(), "k".repeat(201)] {
            let err = IdempotencyKey::try_from(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_idempotency_key");
            assert_eq!(err.to_string(), "Idempotency-Key must be 1 to 200 characters");
        }
    }

    #[test]
    fn statuses_are_stored_and_sent_as_words() {
        let words: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            words,
            ["pending", "open", "partially_filled", "filled", "cancel_requested", "cancelled", "rejected"]
        );
        assert_eq!("partially_filled".parse::<Status>().unwrap(), Status::PartiallyFilled);
        assert!("PENDING".parse::<Status>().is_err());
        assert_eq!(serde_json::to_string(&Status::CancelRequested).unwrap(), "\"cancel_requested\"");
    }

    #[test]
    fn the_openapi_schema_lists_the_words() {
        use utoipa::PartialSchema;
        let words: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(serde_json::to_value(Status::schema()).unwrap()["enum"], serde_json::json!(words));
    }

    /// Every status's successor on `step`, in the order of [`Status::ALL`].
    fn column(step: Step) -> Vec<Option<Status>> {
        Status::ALL.iter().map(|s| s.after(step)).collect()
    }

    #[test]
    fn reserved_funds_open_a_pending_order_only() {
        // pending, open, partially_filled, filled, cancel_requested, cancelled, rejected
        assert_eq!(column(Step::FundsReserved), [Some(Open), None, None, None, None, None, None]);
        let releasing: Vec<Status> =
            Status::ALL.iter().copied().filter(|s| s.releases_reserved_funds()).collect();
        assert_eq!(releasing, [CancelRequested]);
    }

    #[test]
    fn rejected_funds_reject_a_pending_or_cancelling_order() {
        assert_eq!(
            column(Step::FundsRejected),
            [Some(Rejected), None, None, None, Some(Rejected), None, None]
        );
    }

    #[test]
    fn released_funds_end_a_cancel_request() {
        assert_eq!(column(Step::FundsReleased), [None, None, None, None, Some(Cancelled), None, None]);
    }

    #[test]
    fn the_book_moves_orders_that_are_not_final() {
        assert_eq!(column(Step::Book(BookStatus::Open)), [None; 7]);
        assert_eq!(
            column(Step::Book(BookStatus::PartiallyFilled)),
            [None, Some(PartiallyFilled), None, None, None, None, None]
        );
        assert_eq!(
            column(Step::Book(BookStatus::Filled)),
            [Some(Filled), Some(Filled), Some(Filled), None, Some(Filled), None, None]
        );
        assert_eq!(
            column(Step::Book(BookStatus::Cancelled)),
            [Some(CancelRequested), Some(CancelRequested), Some(CancelRequested), None, None, None, None]
        );
    }

    #[test]
    fn final_statuses_are_filled_cancelled_and_rejected() {
        let finals: Vec<Status> = Status::ALL.iter().copied().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [Filled, Cancelled, Rejected]);
    }

    #[test]
    fn a_cancel_request_leaves_the_book_unless_the_order_is_pending() {
        let outcomes: Vec<Cancel> = Status::ALL.iter().map(|s| s.cancel()).collect();
        assert_eq!(
            outcomes,
            [
                Cancel::Request { leave_book: false },
                Cancel::Request { leave_book: true },
                Cancel::Request { leave_book: true },
                Cancel::Final,
                Cancel::AlreadyRequested,
                Cancel::Final,
                Cancel::Final,
            ]
        );
    }
}
