//! The rules of orders, pure: what a valid order is, what it reserves, what
//! placing one stores and sends, which status follows which on each step of
//! the saga, and what a cancel request does.
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
    #[error("price x quantity is too large")]
    Overflow,
    #[error("you have {open} orders open, the most allowed: cancel one or wait for one to fill")]
    TooManyOpen { open: u64 },
}

impl OrderError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownMarket(_) => "unknown_market",
            Self::PriceRequired(_) => "price_required",
            Self::PriceNotAllowed => "price_not_allowed",
            Self::Price(MoneyError::TooLarge { .. }) => "price_above_maximum",
            Self::Price(e) | Self::Quantity(e) => e.code(),
            Self::Overflow => "amount_too_large",
            Self::TooManyOpen { .. } => "too_many_open_orders",
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
            (Side::Buy, Some(p)) => {
                let notional = p.value().checked_mul(quantity.value()).ok_or(OrderError::Overflow)?;
                (market.quote.clone(), Amount::new(notional))
            }
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
    // The price is the limit: a limit order's, a market buy's cap; a market sell has none.
    let limit_price = valid.terms.price;
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
            limit_price,
        },
    })
}

/// A user with `open` orders not yet ended may place one more only below `max`.
pub fn room_for_another(open: u64, max: u32) -> Result<(), OrderError> {
    if open >= u64::from(max) { Err(OrderError::TooManyOpen { open }) } else { Ok(()) }
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

bourse_common::named_enum! {
    /// How far an order got with its book, as its saga knows it.
    pub enum BookStage {
        /// Not sent to a book: pending, or ended before it was sent.
        Unsent = "unsent",
        /// `matching.submit-order` sent (or the book spoke of it): the book's last word is not seen yet.
        Sent = "sent",
        /// Sent, and its funds were released already (payment-service saw the
        /// book's last word first): that word is on its way here.
        SentReleased = "sent_released",
        /// The book said its last word: filled, or out of the book (`cancelled`).
        Ended = "ended",
    }
}

/// What the saga knows of an order: the status clients see, and how far it
/// got with its book (and its funds, while the book's last word is awaited).
/// The stage lets a message that comes early (a retry brings one back after
/// later ones of its saga) wait for the one it needs: `funds.released`
/// before the book's `cancelled`, the book's word before `funds.reserved`.
/// Whatever order a saga's messages arrive in, they end in the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaState {
    pub status: Status,
    pub book: BookStage,
}

/// What a saga step sends, besides the state it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `matching.submit-order`: funded, into the book.
    Submit,
    /// `payment.release-funds`: funds reserved for an order cancelled before it was sent to its book.
    ReleaseFunds,
    /// `order.rejected`, with the reason of `funds.rejected`.
    Rejected,
    /// `order.cancelled`.
    Cancelled,
}

impl SagaState {
    /// A placed order: `pending`, not sent to its book, nothing released.
    pub const PLACED: Self = Self { status: Status::Pending, book: BookStage::Unsent };

    /// The saga table: the state an order moves to on `step`, and what that
    /// sends. A final order stays as it is; a step that came twice or changes
    /// nothing leaves the state and sends nothing. Table form: README.md,
    /// "Sagas and message order".
    pub fn after(self, step: Step) -> (Self, Option<Effect>) {
        use Status::{CancelRequested, Cancelled, Filled, Open, PartiallyFilled, Pending, Rejected};
        if self.status.is_final() {
            return (self, None);
        }
        let to = |status| Self { status, ..self };
        match step {
            Step::FundsReserved => match (self.status, self.book) {
                (Pending, BookStage::Unsent) => {
                    (Self { status: Open, book: BookStage::Sent }, Some(Effect::Submit))
                }
                // Cancelled while its funds were being reserved: they go straight back.
                (CancelRequested, BookStage::Unsent) => (self, Some(Effect::ReleaseFunds)),
                // In the book already (its word came first), or the answer came twice.
                _ => (self, None),
            },
            Step::FundsRejected => match self.status {
                Pending | CancelRequested => (to(Rejected), Some(Effect::Rejected)),
                _ => (self, None),
            },
            Step::FundsReleased => match (self.status, self.book) {
                // Never sent to its book, or out of it: the end.
                (CancelRequested, BookStage::Unsent | BookStage::Ended) => {
                    (to(Cancelled), Some(Effect::Cancelled))
                }
                // In the book: its last word (filled or cancelled) is on its way and decides.
                (_, BookStage::Sent) => (Self { book: BookStage::SentReleased, ..self }, None),
                _ => (self, None),
            },
            Step::Book(word) => {
                let funds_released = self.book == BookStage::SentReleased;
                let book = match (word.is_final(), self.book) {
                    (true, _) => BookStage::Ended,
                    (false, BookStage::Unsent) => BookStage::Sent,
                    (false, stage) => stage,
                };
                let status = match (word, self.status) {
                    // The book has it: its funds were reserved, whenever `funds.reserved` comes.
                    (BookStatus::Open, Pending) => Open,
                    (BookStatus::PartiallyFilled, Pending | Open) => PartiallyFilled,
                    (BookStatus::Filled, _) => Filled,
                    // Out of the book: `cancelled` once its funds are released (before, or later).
                    (BookStatus::Cancelled, _) if funds_released => Cancelled,
                    (BookStatus::Cancelled, _) => CancelRequested,
                    (_, status) => status,
                };
                let effect = (status == Cancelled).then_some(Effect::Cancelled);
                (Self { status, book }, effect)
            }
        }
    }
}

/// The filled quantity to record when the book reports `reported` and
/// `recorded` is stored: it only grows, so a late report never lowers it.
pub fn filled_after(recorded: Amount, reported: Amount) -> Option<Amount> {
    (reported.value() > recorded.value()).then_some(reported)
}

impl Status {
    /// No step moves it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Filled | Status::Cancelled | Status::Rejected)
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
                amount: "4000".parse().unwrap(),
                limit_price: Some("2000".parse().unwrap()),
            }
        );
        let mut unknown = r;
        unknown.market = "DOGE-USDT".into();
        assert_eq!(place(&unknown, None, id, user).unwrap_err().code(), "unknown_market");
    }

    #[test]
    fn a_user_may_hold_up_to_the_maximum_of_open_orders() {
        assert_eq!(room_for_another(0, 2), Ok(()));
        assert_eq!(room_for_another(1, 2), Ok(()));
        let full = room_for_another(2, 2).unwrap_err();
        assert_eq!(
            (full.code(), full.to_string().starts_with("you have 2 orders open")),
            ("too_many_open_orders", true)
        );
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

    use BookStage::{Ended, Sent, SentReleased, Unsent};

    fn state(status: Status, book: BookStage) -> SagaState {
        SagaState { status, book }
    }

    /// Every status's successor and effect on `step`, at `book`, in the
    /// order of [`Status::ALL`]; `None`: it stays and sends nothing.
    fn column(step: Step, book: BookStage) -> Vec<Option<(Status, Option<Effect>)>> {
        Status::ALL
            .iter()
            .map(|&status| {
                let before = state(status, book);
                let (after, effect) = before.after(step);
                (after.status != status || effect.is_some()).then_some((after.status, effect))
            })
            .collect()
    }

    #[test]
    fn reserved_funds_open_a_pending_order_once_and_go_back_for_one_cancelled_meanwhile() {
        // pending, open, partially_filled, filled, cancel_requested, cancelled, rejected
        assert_eq!(
            column(Step::FundsReserved, Unsent),
            [
                Some((Open, Some(Effect::Submit))),
                None,
                None,
                None,
                Some((CancelRequested, Some(Effect::ReleaseFunds))),
                None,
                None
            ]
        );
        assert_eq!(SagaState::PLACED.after(Step::FundsReserved).0, state(Open, Sent));
        // The book spoke first: nothing is sent twice.
        assert_eq!(column(Step::FundsReserved, Sent), [None; 7]);
        assert_eq!(column(Step::FundsReserved, Ended), [None; 7]);
    }

    #[test]
    fn rejected_funds_reject_a_pending_or_cancelling_order() {
        let rejected = Some((Rejected, Some(Effect::Rejected)));
        assert_eq!(column(Step::FundsRejected, Unsent), [rejected, None, None, None, rejected, None, None]);
    }

    #[test]
    fn released_funds_end_a_cancel_request_unless_the_books_word_is_still_to_come() {
        let cancelled = Some((Cancelled, Some(Effect::Cancelled)));
        // Never sent to the book, or out of it already.
        for book in [Unsent, Ended] {
            assert_eq!(column(Step::FundsReleased, book), [None, None, None, None, cancelled, None, None]);
        }
        // In the book: the book's last word decides, filled or cancelled; the release is remembered.
        assert_eq!(column(Step::FundsReleased, Sent), [None; 7]);
        assert_eq!(
            state(CancelRequested, Sent).after(Step::FundsReleased).0,
            state(CancelRequested, SentReleased)
        );
        assert_eq!(state(Open, Sent).after(Step::FundsReleased).0, state(Open, SentReleased));
    }

    #[test]
    fn the_book_moves_orders_that_are_not_final() {
        let to = |s| Some((s, None));
        // pending, open, partially_filled, filled, cancel_requested, cancelled, rejected
        assert_eq!(
            column(Step::Book(BookStatus::Open), Sent),
            [to(Open), None, None, None, None, None, None]
        );
        assert_eq!(
            column(Step::Book(BookStatus::PartiallyFilled), Sent),
            [to(PartiallyFilled), to(PartiallyFilled), None, None, None, None, None]
        );
        assert_eq!(
            column(Step::Book(BookStatus::Filled), Sent),
            [to(Filled), to(Filled), to(Filled), None, to(Filled), None, None]
        );
        let requested = to(CancelRequested);
        assert_eq!(
            column(Step::Book(BookStatus::Cancelled), Sent),
            [requested, requested, requested, None, None, None, None]
        );
        // Its funds were released first: out of the book is the end.
        let cancelled = Some((Cancelled, Some(Effect::Cancelled)));
        assert_eq!(
            column(Step::Book(BookStatus::Cancelled), SentReleased),
            [cancelled, cancelled, cancelled, None, cancelled, None, None]
        );
        // The book's stage follows its words and never goes back.
        let book = |from, word| state(Open, from).after(Step::Book(word)).0.book;
        assert_eq!(book(Unsent, BookStatus::Open), Sent);
        assert_eq!(book(Sent, BookStatus::Cancelled), Ended);
        assert_eq!(book(Ended, BookStatus::PartiallyFilled), Ended);
        assert_eq!(book(SentReleased, BookStatus::PartiallyFilled), SentReleased);
        assert_eq!(book(SentReleased, BookStatus::Filled), Ended);
    }

    #[test]
    fn the_filled_quantity_only_grows() {
        let a = |s: &str| s.parse::<Amount>().unwrap();
        assert_eq!(filled_after(a("0.5"), a("1")), Some(a("1")));
        assert_eq!(filled_after(a("1"), a("0.5")), None);
        assert_eq!(filled_after(a("1"), a("1.0")), None);
    }

    /// A saga message, or the user's cancel request (the route's rule).
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Event {
        Step(Step),
        CancelRequest,
    }

    /// Applies `events` from a placed order; the end state and what was sent.
    fn run(events: &[Event]) -> (SagaState, Vec<Effect>) {
        let mut sent = Vec::new();
        let end = events.iter().fold(SagaState::PLACED, |now, event| match event {
            Event::Step(step) => {
                let (next, effect) = now.after(*step);
                sent.extend(effect);
                next
            }
            Event::CancelRequest => match now.status.cancel() {
                Cancel::Request { .. } => SagaState { status: CancelRequested, ..now },
                Cancel::AlreadyRequested | Cancel::Final => now,
            },
        });
        sent.sort_by_key(|e| format!("{e:?}"));
        (end, sent)
    }

    /// Every order of `events` in which each pair of `causes` keeps its
    /// order (the second is caused by the first, so it cannot come before it).
    fn arrivals(events: &[Event], causes: &[(Event, Event)]) -> Vec<Vec<Event>> {
        fn permute(rest: Vec<Event>, done: Vec<Event>, all: &mut Vec<Vec<Event>>) {
            if rest.is_empty() {
                all.push(done);
                return;
            }
            for i in 0..rest.len() {
                let (mut rest, mut done) = (rest.clone(), done.clone());
                done.push(rest.remove(i));
                permute(rest, done, all);
            }
        }
        let mut all = Vec::new();
        permute(events.to_vec(), Vec::new(), &mut all);
        let at = |order: &[Event], e: Event| order.iter().position(|x| *x == e);
        all.retain(|order| causes.iter().all(|&(a, b)| at(order, a) < at(order, b)));
        all
    }

    #[test]
    fn every_arrival_order_of_a_sagas_messages_ends_in_the_same_state() {
        use Event::{CancelRequest, Step as S};
        let (reserved, rejected, released) =
            (S(Step::FundsReserved), S(Step::FundsRejected), S(Step::FundsReleased));
        let book = |w| S(Step::Book(w));
        let (open, partly, filled, out_of_book) = (
            book(BookStatus::Open),
            book(BookStatus::PartiallyFilled),
            book(BookStatus::Filled),
            book(BookStatus::Cancelled),
        );
        // (messages, what causes what, the end status, what is sent)
        let sagas = [
            // Filled; payment releases the rest at the end.
            (
                vec![reserved, open, partly, filled, released],
                vec![(reserved, open), (reserved, partly), (reserved, filled), (reserved, released)],
                Filled,
                vec![Effect::Submit],
            ),
            // Out of the book with a part filled (ioc, self-trade), then released.
            (
                vec![reserved, partly, out_of_book, released],
                vec![(reserved, partly), (reserved, out_of_book), (reserved, released)],
                Cancelled,
                vec![Effect::Cancelled, Effect::Submit],
            ),
            // The user cancels a booked order; the book takes it out.
            (
                vec![reserved, open, CancelRequest, out_of_book, released],
                vec![
                    (reserved, open),
                    (reserved, CancelRequest),
                    (CancelRequest, out_of_book),
                    (reserved, released),
                ],
                Cancelled,
                vec![Effect::Cancelled, Effect::Submit],
            ),
            // The user cancels a booked order that fills first: filled it is.
            (
                vec![reserved, CancelRequest, filled, released],
                vec![(reserved, CancelRequest), (reserved, filled), (reserved, released)],
                Filled,
                vec![Effect::Submit],
            ),
            // Cancelled while its funds were being reserved: never booked, released.
            (
                vec![CancelRequest, reserved, released],
                vec![(CancelRequest, reserved), (reserved, released)],
                Cancelled,
                vec![Effect::Cancelled, Effect::ReleaseFunds],
            ),
            // Cancelled, and its funds refused (the cancel may come too late: rejected anyway).
            (vec![CancelRequest, rejected], vec![], Rejected, vec![Effect::Rejected]),
        ];
        for (events, causes, status, sent) in sagas {
            for order in arrivals(&events, &causes) {
                let (end, effects) = run(&order);
                assert_eq!((end.status, &effects), (status, &sent), "{order:?}");
            }
        }
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
