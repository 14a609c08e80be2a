//! Money is conserved across the whole order path, for any sequence of
//! orders and cancels: order-service's reservation rules, the matching
//! engine and payment-service's settlement, run together in memory.

use std::collections::HashMap;

use bourse_common::catalog::{OrderType, Side, TimeInForce};
use bourse_common::reference::ReferenceData;
use matching_service::engine::{Book, NewOrder, Outcome, State};
use order_service::domain::OrderRequest;
use payment_service::domain::{Balance, settle};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

const USERS: u128 = 4;

#[derive(Debug, Clone)]
enum Op {
    Order { user: u128, buy: bool, market: bool, price: i64, quantity: i64, tif: usize },
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..USERS, any::<bool>(), prop::bool::weighted(0.15), 190_000i64..210_000, 1i64..3_000, 0usize..4)
            .prop_map(|(user, buy, market, price, quantity, tif)| Op::Order { user, buy, market, price, quantity, tif }),
        1 => (0usize..100).prop_map(Op::Cancel),
    ]
}

/// The exchange in memory: balances per (user, currency), fees, reservations per order.
struct Exchange {
    balances: HashMap<(u128, &'static str), Balance>,
    fees: HashMap<&'static str, Decimal>,
    reserved: HashMap<Uuid, (u128, &'static str, Decimal)>,
    book: Book,
    users: HashMap<Uuid, u128>,
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

    fn apply(&mut self, outcome: Outcome) {
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
        for update in outcome.updates {
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
        };
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
                    let outcome =
                        x.book.submit(&NewOrder { id, user: Uuid::from_u128(*user + 1), terms: valid.terms });
                    x.apply(outcome);
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
        // Every order ends: what is left in the book is cancelled.
        for id in placed {
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
