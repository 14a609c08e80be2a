//! Money is conserved across the whole order path, for any sequence of
//! orders, cancels and price triggers (placed, fired by trades, cancelled or
//! expired): order-service's reservation rules, the matching engine, the
//! trigger book and payment-service's settlement, run together in memory.

use std::collections::HashMap;

use bourse_common::catalog::{OrderTerms, OrderType, Side, TimeInForce, TriggerKind};
use bourse_common::reference::ReferenceData;
use matching_service::engine::{Book, NewOrder, Outcome, State};
use matching_service::triggers::{Armed, Level, TriggerBook};
use order_service::domain::OrderRequest;
use order_service::triggers::TriggerRequest;
use payment_service::domain::{Balance, settle};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

const USERS: u128 = 4;

#[derive(Debug, Clone)]
enum Op {
    Order {
        user: u128,
        buy: bool,
        market: bool,
        price: i64,
        quantity: i64,
        tif: usize,
    },
    Cancel(usize),
    /// A trigger `offset` cents from the last price (a trailing one trails by its size).
    Trigger {
        user: u128,
        buy: bool,
        kind: usize,
        offset: i64,
        quantity: i64,
    },
    /// A trigger cancelled or expired: the same for its money.
    EndTrigger(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..USERS, any::<bool>(), prop::bool::weighted(0.15), 190_000i64..210_000, 1i64..3_000, 0usize..4)
            .prop_map(|(user, buy, market, price, quantity, tif)| Op::Order { user, buy, market, price, quantity, tif }),
        1 => (0usize..100).prop_map(Op::Cancel),
        2 => (0..USERS, any::<bool>(), 0usize..4, -1_500i64..1_500, 1i64..3_000)
            .prop_map(|(user, buy, kind, offset, quantity)| Op::Trigger { user, buy, kind, offset, quantity }),
        1 => (0usize..100).prop_map(Op::EndTrigger),
    ]
}

/// The exchange in memory: balances per (user, currency), fees, reservations per order.
struct Exchange {
    balances: HashMap<(u128, &'static str), Balance>,
    fees: HashMap<&'static str, Decimal>,
    reserved: HashMap<Uuid, (u128, &'static str, Decimal)>,
    book: Book,
    users: HashMap<Uuid, u128>,
    /// Every order that reached the book, fired triggers' included.
    orders: Vec<Uuid>,
    triggers: TriggerBook,
    /// Armed triggers: the order each places, its user and terms.
    armed: HashMap<Uuid, (Uuid, u128, OrderTerms)>,
    last: Option<Decimal>,
}

impl Exchange {
    fn total(&self, currency: &str) -> Decimal {
        let held: Decimal = self
            .balances
            .iter()
            .filter(|((_, c), _)| *c == currency)
            .map(|(_, b)| b.available + b.reserved)
            .sum();
        held + self.fees.get(currency).copied().unwrap_or_default()
    }

    fn release(&mut self, order: Uuid) {
        if let Some((user, currency, rest)) = self.reserved.remove(&order) {
            let balance = self.balances.entry((user, currency)).or_default();
            *balance = balance.apply(&balance.release(rest));
        }
    }

    /// Submits an order to the book and applies what follows, fired triggers' orders included.
    fn submit(&mut self, id: Uuid, user: u128, terms: OrderTerms) {
        self.orders.push(id);
        let outcome = self.book.submit(&NewOrder { id, user: Uuid::from_u128(user + 1), terms });
        self.apply(outcome);
    }

    fn apply(&mut self, outcome: Outcome) {
        self.settle(&outcome);
        for fill in &outcome.fills {
            self.last = Some(fill.price);
            for fired in self.triggers.trade(fill.price) {
                let (order, user, terms) = self.armed.remove(&fired.id).expect("a fired trigger was armed");
                self.submit(order, user, terms);
            }
        }
    }

    fn settle(&mut self, outcome: &Outcome) {
        for fill in &outcome.fills {
            let (buyer_order, seller_order) = match fill.taker_side {
                Side::Buy => (fill.taker_order, fill.maker_order),
                Side::Sell => (fill.maker_order, fill.taker_order),
            };
            let (buyer_rate, seller_rate) = match fill.taker_side {
                Side::Buy => (Decimal::new(2, 3), Decimal::new(1, 3)),
                Side::Sell => (Decimal::new(1, 3), Decimal::new(2, 3)),
            };
            let (buyer, seller) = (self.users[&buyer_order], self.users[&seller_order]);
            for leg in settle(fill.price, fill.quantity, buyer_rate, seller_rate, 8, 6) {
                let user = if leg.buyer { buyer } else { seller };
                let currency = if leg.currency_is_base { "ETH" } else { "USDT" };
                let balance = self.balances.entry((user, currency)).or_default();
                *balance = balance.apply(&leg.movement);
                for (account, amount) in &leg.movement.legs {
                    if *account == payment_service::domain::LedgerAccount::Fees {
                        *self.fees.entry(currency).or_default() += amount;
                    }
                }
            }
            for (order, spent) in [(buyer_order, fill.price * fill.quantity), (seller_order, fill.quantity)] {
                let held = self.reserved.get_mut(&order).expect("a filled order holds a reservation");
                held.2 -= spent;
                assert!(held.2 >= Decimal::ZERO, "order {order} spent more than it reserved");
            }
        }
        for update in &outcome.updates {
            if matches!(update.state, State::Filled | State::Cancelled(_)) {
                self.release(update.order);
            }
        }
    }
}

proptest! {
    #[test]
    fn money_is_conserved_and_nothing_stays_reserved(ops in prop::collection::vec(op(), 1..150)) {
        let reference = ReferenceData::default();
        let market = reference.market("ETH-USDT").unwrap();
        let mut x = Exchange {
            balances: HashMap::new(),
            fees: HashMap::new(),
            reserved: HashMap::new(),
            book: Book::default(),
            users: HashMap::new(),
            orders: Vec::new(),
            triggers: TriggerBook::default(),
            armed: HashMap::new(),
            last: None,
        };
        let mut triggers = Vec::new();
        for user in 0..USERS {
            x.balances.insert((user, "ETH"), Balance { available: Decimal::from(5), reserved: Decimal::ZERO });
            x.balances.insert((user, "USDT"), Balance { available: Decimal::from(20_000), reserved: Decimal::ZERO });
        }
        let (eth, usdt) = (x.total("ETH"), x.total("USDT"));
        let mut placed = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Order { user, buy, market: is_market, price, quantity, tif } => {
                    let side = if *buy { Side::Buy } else { Side::Sell };
                    let order_type = if *is_market { OrderType::Market } else { OrderType::Limit };
                    let request = OrderRequest {
                        market: "ETH-USDT".into(),
                        side,
                        order_type,
                        // A market sell takes no price; a market buy carries its cap.
                        price: (!*is_market || *buy).then(|| Decimal::new(*price, 2).into()),
                        quantity: Decimal::new(*quantity, 3).into(),
                        time_in_force: Some([TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok, TimeInForce::PostOnly][*tif]),
                    };
                    let Ok(valid) = request.validate(Some(market)) else { continue };
                    let currency = if valid.reserve_currency == "ETH" { "ETH" } else { "USDT" };
                    let balance = x.balances.entry((*user, currency)).or_default();
                    let Ok(reserve) = balance.reserve(valid.reserve_amount.value()) else { continue };
                    *balance = balance.apply(&reserve);
                    let id = Uuid::from_u128(n as u128 + 1);
                    x.reserved.insert(id, (*user, currency, valid.reserve_amount.value()));
                    x.users.insert(id, *user);
                    placed.push(id);
                    x.submit(id, *user, valid.terms);
                }
                Op::Trigger { user, buy, kind, offset, quantity } => {
                    let side = if *buy { Side::Buy } else { Side::Sell };
                    let kind = [TriggerKind::Stop, TriggerKind::StopLimit, TriggerKind::TakeProfit, TriggerKind::TrailingStop][*kind];
                    let Some(last) = x.last else { continue };
                    let level = last + Decimal::new(*offset, 2);
                    let trailing = kind == TriggerKind::TrailingStop;
                    let request = TriggerRequest {
                        market: "ETH-USDT".into(),
                        side,
                        kind,
                        stop_price: (!trailing).then(|| level.into()),
                        limit_price: (kind == TriggerKind::StopLimit).then(|| level.into()),
                        stop_limit_price: None,
                        trail_amount: trailing.then(|| Decimal::new(offset.abs() + 1, 2).into()),
                        trail_percent: None,
                        quantity: Decimal::new(*quantity, 3).into(),
                        time_in_force: None,
                        expires_at: None,
                    };
                    let Ok(valid) = request.validate(Some(market), x.last, chrono::Utc::now(), Decimal::TEN) else { continue };
                    let currency = if valid.order.reserve_currency == "ETH" { "ETH" } else { "USDT" };
                    let balance = x.balances.entry((*user, currency)).or_default();
                    // Not enough to hold: the trigger is rejected, nothing held.
                    let Ok(reserve) = balance.reserve(valid.order.reserve_amount.value()) else { continue };
                    *balance = balance.apply(&reserve);
                    let (order, trigger) = (Uuid::from_u128(n as u128 + 1), Uuid::from_u128(1_000_000 + n as u128));
                    x.reserved.insert(order, (*user, currency, valid.order.reserve_amount.value()));
                    x.users.insert(order, *user);
                    let level = match (valid.stop_price, valid.trail) {
                        (Some(stop), _) => Level::Fixed(stop.value()),
                        (None, Some(trail)) => Level::Trailing { trail, best: last },
                        (None, None) => unreachable!("a trigger has a stop or a trail"),
                    };
                    x.triggers.insert(Armed { id: trigger, seq: n as u64, direction: valid.fires_when, level });
                    x.armed.insert(trigger, (order, *user, valid.order.terms));
                    triggers.push(trigger);
                }
                Op::EndTrigger(i) => {
                    if let Some(trigger) = triggers.get(*i)
                        && x.triggers.remove(*trigger)
                        && let Some((order, _, _)) = x.armed.remove(trigger)
                    {
                        x.release(order);
                    }
                }
                Op::Cancel(i) => {
                    if let Some(id) = placed.get(*i).copied() {
                        let outcome = x.book.cancel(id);
                        x.apply(outcome);
                    }
                }
            }
            prop_assert_eq!(x.total("ETH"), eth);
            prop_assert_eq!(x.total("USDT"), usdt);
            for balance in x.balances.values() {
                prop_assert!(balance.available >= Decimal::ZERO && balance.reserved >= Decimal::ZERO);
            }
        }
        // Every trigger and order ends: what is armed or in the book is cancelled.
        for trigger in triggers {
            if x.triggers.remove(trigger) && let Some((order, _, _)) = x.armed.remove(&trigger) {
                x.release(order);
            }
        }
        for id in x.orders.clone() {
            let outcome = x.book.cancel(id);
            x.apply(outcome);
        }
        prop_assert!(x.reserved.is_empty(), "reservations left: {:?}", x.reserved);
        for ((user, currency), balance) in &x.balances {
            prop_assert_eq!(balance.reserved, Decimal::ZERO, "user {} still holds {} reserved", user, currency);
        }
        prop_assert_eq!(x.total("ETH"), eth);
        prop_assert_eq!(x.total("USDT"), usdt);
    }
}
