//! Each consumer given the messages of one saga in either arrival order (a
//! retry brings a message back after later ones of its saga): the handlers
//! are called directly, one inbox transaction per message, against a real
//! database of each back end, and every order ends in the same state —
//! balances, reservations, the book, the order's status. The tables these
//! follow are in README.md, "Sagas and message order".

use std::collections::BTreeMap;
use std::sync::Arc;

use bourse_common::catalog::{
    BookStatus, CancelOrder, FundsRejected, FundsReleased, FundsReserved, FundsSettled, OrderCancelled,
    OrderTerms, OrderType, OrderUpdated, ReleaseFunds, ReserveFunds, Side, SubmitOrder, TimeInForce,
    TradeExecuted,
};
use bourse_common::db::{Backend, Db, MigrationSet};
use bourse_common::envelope::Envelope;
use bourse_common::inbox::Handle;
use bourse_common::messages::Message;
use bourse_common::money::Amount;
use bourse_common::on_both_backends;
use bourse_common::outbox::Emitter;
use bourse_common::reference::ReferenceData;
use bourse_common::testkit::TestEnv;
use payment_service::domain::ReservationStatus;
use rust_decimal::Decimal;
use uuid::Uuid;

on_both_backends!(
    payment_settles_a_trade_that_arrives_after_its_orders_end,
    payment_refuses_a_reserve_that_arrives_after_its_release,
    matching_turns_away_a_submit_that_arrives_after_its_cancel,
    order_service_ends_the_same_whichever_of_the_book_and_the_release_comes_first,
);

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn amount(s: &str) -> Amount {
    s.parse().unwrap()
}

const MARKET: &str = "ETH-USDT";

/// A fresh database of the test's back end, `migrations` run.
async fn database(env: &mut TestEnv, name: &str, migrations: &'static MigrationSet) -> Db {
    let db = Db::connect(&env.database(name)).unwrap();
    db.migrate(&[migrations]).await.unwrap();
    db
}

/// `payload` as it arrives, in saga `saga`.
fn envelope<P: Message>(payload: &P, saga: Uuid) -> Envelope {
    Envelope::new("test", saga.to_string(), payload, chrono::Utc::now())
}

/// Applies one message as its inbox does (one transaction); what the handler sent.
async fn deliver<M, H>(db: &Db, handler: &Arc<H>, message: M, envelope: Envelope) -> Vec<Envelope>
where
    M: Send + 'static,
    H: Handle<M>,
{
    let handler = handler.clone();
    db.write(move |c| -> anyhow::Result<Vec<Envelope>> {
        let mut out = Emitter::caused_by("test", &envelope);
        handler.handle(c, message, &envelope, &mut out)?;
        Ok(out.envelopes().cloned().collect())
    })
    .await
    .unwrap()
}

/// The messages of type `P` among `sent`.
fn sent<P: Message>(sent: &[Envelope]) -> Vec<P> {
    sent.iter().filter(|e| e.message_type == P::TYPE).map(|e| e.payload().unwrap()).collect()
}

/// payment-service's handlers over a database of their own.
struct Payment {
    db: Db,
    handlers: Arc<payment_service::handlers::Handlers>,
}

/// What `payment-service.matching` takes.
#[derive(Debug, Clone)]
enum Fill {
    Trade(TradeExecuted),
    End(OrderUpdated),
}

/// A reservation as it ended: its status, what it still holds, what its trades filled.
type Held = (ReservationStatus, Decimal, Option<Decimal>);

impl Payment {
    async fn new(env: &mut TestEnv, name: &str) -> Self {
        let db = database(env, name, &payment_service::MIGRATIONS).await;
        let handlers = payment_service::handlers::Handlers::new(payment_service::Settings::default());
        Self { db, handlers: Arc::new(handlers) }
    }

    /// Tops `user` up with `amount` of `currency`.
    async fn fund(&self, user: Uuid, currency: &'static str, amount: &str) {
        use payment_service::storage;
        let amount = d(amount);
        self.db
            .write(move |c| -> anyhow::Result<()> {
                let balance = storage::lock_balance(c, user, currency, 1)?;
                storage::apply(c, user, currency, balance, &balance.top_up(amount), "top-up", 1)?;
                Ok(())
            })
            .await
            .unwrap();
    }

    async fn reserve(&self, order: Uuid, user: Uuid, currency: &str, how_much: &str) -> Vec<Envelope> {
        let cmd = ReserveFunds {
            order_id: order,
            user_id: user,
            currency: currency.into(),
            amount: amount(how_much),
            limit_price: None,
        };
        let e = envelope(&cmd, order);
        deliver(&self.db, &self.handlers, payment_service::handlers::Commands::Reserve(cmd), e).await
    }

    async fn release(&self, order: Uuid, user: Uuid) -> Vec<Envelope> {
        let cmd = ReleaseFunds { order_id: order, user_id: user };
        let e = envelope(&cmd, order);
        deliver(&self.db, &self.handlers, payment_service::handlers::Commands::Release(cmd), e).await
    }

    async fn matching(&self, message: Fill) -> Vec<Envelope> {
        use payment_service::handlers::Matching;
        let (message, e) = match message {
            Fill::Trade(t) => {
                let e = envelope(&t, t.taker_order_id);
                (Matching::Trade(t), e)
            }
            Fill::End(u) => {
                let e = envelope(&u, u.order_id);
                (Matching::Order(u), e)
            }
        };
        deliver(&self.db, &self.handlers, message, e).await
    }

    /// `user`'s balances: currency -> (available, reserved).
    async fn balances(&self, user: Uuid) -> BTreeMap<String, (Decimal, Decimal)> {
        let rows = self
            .db
            .read(move |c| -> anyhow::Result<_> { Ok(payment_service::storage::accounts_of(c, user)?) })
            .await
            .unwrap();
        rows.into_iter().map(|a| (a.currency, (a.available.value(), a.reserved.value()))).collect()
    }

    async fn reservation(&self, order: Uuid) -> Option<Held> {
        let row = self
            .db
            .read(move |c| -> anyhow::Result<_> { Ok(payment_service::storage::reservation(c, order)?) })
            .await
            .unwrap();
        row.map(|r| (r.status, r.remaining.value(), r.settled.map(Amount::value)))
    }
}

/// Trades and order ends in three arrival orders: the trades before the
/// ends (as matching-service sends them), every end before its trades, and
/// mixed. A trade that comes after its order's end still settles; each
/// reservation closes when both its end and its fills are in, releasing the
/// same rest once.
async fn payment_settles_a_trade_that_arrives_after_its_orders_end(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let (buyer, seller) = (Uuid::now_v7(), Uuid::now_v7());
    // A buy of 2 ETH at up to 2000 takes two resting sells: 1 ETH at 1990 and
    // 1 of 1.5 ETH at 1995, whose rest is then cancelled.
    let (buy, sell, sell2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let trade = |maker: Uuid, price: &str| TradeExecuted {
        trade_id: Uuid::now_v7(),
        market: MARKET.into(),
        price: amount(price),
        quantity: amount("1"),
        taker_side: Side::Buy,
        taker_order_id: buy,
        taker_user_id: buyer,
        maker_order_id: maker,
        maker_user_id: seller,
        executed_at: chrono::Utc::now(),
        taker_remaining: None,
        maker_remaining: None,
    };
    let end = |order: Uuid, user: Uuid, quantity: &str, filled: &str, status| OrderUpdated {
        order_id: order,
        user_id: user,
        market: MARKET.into(),
        quantity: amount(quantity),
        filled_quantity: amount(filled),
        status,
        reason: None,
    };
    let (t1, t2) = (Fill::Trade(trade(sell, "1990")), Fill::Trade(trade(sell2, "1995")));
    let buy_end = Fill::End(end(buy, buyer, "2", "2", BookStatus::Filled));
    let sell_end = Fill::End(end(sell, seller, "1", "1", BookStatus::Filled));
    let sell2_end = Fill::End(end(sell2, seller, "1.5", "1", BookStatus::Cancelled));
    let arrivals = [
        ("trades first", [&t1, &t2, &buy_end, &sell_end, &sell2_end]),
        ("every end first, trades reversed", [&buy_end, &sell2_end, &sell_end, &t2, &t1]),
        ("mixed", [&t1, &buy_end, &sell2_end, &t2, &sell_end]),
    ];

    let mut ends = Vec::new();
    for (n, (name, messages)) in arrivals.into_iter().enumerate() {
        let p = Payment::new(&mut env, &format!("payment_{n}")).await;
        p.fund(buyer, "USDT", "10000").await;
        p.fund(seller, "ETH", "5").await;
        for (order, user, currency, reserved) in
            [(buy, buyer, "USDT", "4000"), (sell, seller, "ETH", "1"), (sell2, seller, "ETH", "1.5")]
        {
            assert_eq!(sent::<FundsReserved>(&p.reserve(order, user, currency, reserved).await).len(), 1);
        }
        let mut released: BTreeMap<Uuid, Vec<Decimal>> = BTreeMap::new();
        let mut settled = 0;
        for (i, message) in messages.into_iter().enumerate() {
            let out = p.matching(message.clone()).await;
            for r in sent::<FundsReleased>(&out) {
                released.entry(r.order_id).or_default().push(r.amount.value());
            }
            settled += sent::<FundsSettled>(&out).len();
            if name == "every end first, trades reversed" && i == 2 {
                // Every end is in, no fill yet: the reservations wait, holding everything.
                assert!(released.is_empty(), "{released:?}");
                assert_eq!(
                    p.reservation(buy).await,
                    Some((ReservationStatus::Ending, d("4000"), Some(Decimal::ZERO)))
                );
            }
        }
        let held = [p.reservation(buy).await, p.reservation(sell).await, p.reservation(sell2).await];
        ends.push((name, (p.balances(buyer).await, p.balances(seller).await, held, released, settled)));
    }

    let balances = |v: &[(&str, &str, &str)]| -> BTreeMap<String, (Decimal, Decimal)> {
        v.iter().map(|(c, a, r)| (c.to_string(), (d(a), d(r)))).collect()
    };
    let closed = |filled: &str| Some((ReservationStatus::Released, Decimal::ZERO, Some(d(filled))));
    let expected = (
        // The buyer paid 1990 + 1995 of the 4000 reserved, got 2 ETH less 0.2%.
        balances(&[("ETH", "1.996", "0"), ("USDT", "6015", "0")]),
        // The seller sold 2 of the 2.5 ETH reserved, got the USDT less 0.1%.
        balances(&[("ETH", "3", "0"), ("USDT", "3981.015", "0")]),
        [closed("2"), closed("1"), closed("1")],
        BTreeMap::from([(buy, vec![d("15")]), (sell, vec![d("0")]), (sell2, vec![d("0.5")])]),
        4,
    );
    for (name, end) in &ends {
        assert_eq!(end, &expected, "{name}");
    }
    env.cleanup().await;
}

/// A release before the reserve leaves a tombstone: the reserve that comes
/// after it reserves nothing and says why (`funds.rejected`). Either way the
/// user's balance is untouched and the order's reservation holds nothing and
/// is closed (`released` after a reserve, `void` without one).
async fn payment_refuses_a_reserve_that_arrives_after_its_release(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let (user, order) = (Uuid::now_v7(), Uuid::now_v7());
    let mut ends = Vec::new();
    for (n, release_first) in [false, true].into_iter().enumerate() {
        let p = Payment::new(&mut env, &format!("payment_{n}")).await;
        p.fund(user, "USDT", "1000").await;
        let (first, second) = if release_first {
            let released = p.release(order, user).await;
            (released, p.reserve(order, user, "USDT", "400").await)
        } else {
            let reserved = p.reserve(order, user, "USDT", "400").await;
            (reserved, p.release(order, user).await)
        };
        let types = |sent: &[Envelope]| sent.iter().map(|e| e.message_type.clone()).collect::<Vec<_>>();
        let said = [types(&first), types(&second)].concat();
        let (status, remaining, _) = p.reservation(order).await.unwrap();
        if release_first {
            assert_eq!(said, ["funds.released", "funds.rejected"]);
            assert_eq!(sent::<FundsReleased>(&first)[0].amount.value(), Decimal::ZERO);
            let rejected: FundsRejected = sent(&second).remove(0);
            assert!(rejected.reason.contains("released before they were reserved"), "{}", rejected.reason);
            assert_eq!(status, ReservationStatus::Void);
            // A reserve that comes again is refused again.
            let again = p.reserve(order, user, "USDT", "400").await;
            assert_eq!(sent::<FundsRejected>(&again).len(), 1);
        } else {
            assert_eq!(said, ["funds.reserved", "funds.released"]);
            assert_eq!(sent::<FundsReleased>(&second)[0].amount.value(), d("400"));
            assert_eq!(status, ReservationStatus::Released);
        }
        ends.push((p.balances(user).await, remaining));
    }
    let untouched = (BTreeMap::from([("USDT".to_string(), (d("1000"), Decimal::ZERO))]), Decimal::ZERO);
    assert_eq!(ends, [untouched.clone(), untouched]);
    env.cleanup().await;
}

/// order-service's saga handler over a database of its own.
struct Orders {
    db: Db,
}

/// What the saga queue takes, and the user's cancel request.
#[derive(Debug, Clone, Copy)]
enum Saga {
    Reserved,
    /// `funds.released` with the amount.
    Released(&'static str),
    /// `order.updated` with the filled quantity.
    Book(BookStatus, &'static str),
    /// `DELETE /api/orders/{id}` (the route's rule, on the locked order).
    CancelRequest,
}

impl Orders {
    async fn new(env: &mut TestEnv, name: &str) -> Self {
        Self { db: database(env, name, &order_service::storage::MIGRATIONS).await }
    }

    /// Places a limit buy of 1 ETH at 100 for `user`; its id.
    async fn place(&self, user: Uuid) -> Uuid {
        use order_service::{domain, storage};
        let id = Uuid::now_v7();
        self.db
            .write(move |c| -> anyhow::Result<()> {
                let request: domain::OrderRequest = serde_json::from_value(serde_json::json!(
                    {"market": MARKET, "side": "buy", "type": "limit", "price": "100", "quantity": "1"}
                ))?;
                let order = domain::place(&request, ReferenceData::default().market(MARKET), id, user)?;
                let row = storage::OrderRow::new(&order, None, "{}".into(), 1);
                storage::insert(
                    c,
                    &row,
                    &storage::Cause { kind: "POST /api/orders".into(), id: "test".into() },
                )?;
                Ok(())
            })
            .await
            .unwrap();
        id
    }

    /// Applies `step` to the order; what it sent.
    async fn apply(&self, order: Uuid, user: Uuid, step: Saga) -> Vec<Envelope> {
        use order_service::handlers::{self, Saga as In};
        use order_service::{domain, storage};
        let handler = Arc::new(handlers::handle);
        let usdt = |how_much: &str| ("USDT".to_string(), amount(how_much));
        match step {
            Saga::Reserved => {
                let (currency, amount) = usdt("100");
                let e = FundsReserved { order_id: order, user_id: user, currency, amount };
                let env = envelope(&e, order);
                deliver(&self.db, &handler, In::FundsReserved(e), env).await
            }
            Saga::Released(how_much) => {
                let (currency, amount) = usdt(how_much);
                let e = FundsReleased { order_id: order, user_id: user, currency, amount };
                let env = envelope(&e, order);
                deliver(&self.db, &handler, In::FundsReleased(e), env).await
            }
            Saga::Book(status, filled) => {
                let e = OrderUpdated {
                    order_id: order,
                    user_id: user,
                    market: MARKET.into(),
                    quantity: amount("1"),
                    filled_quantity: amount(filled),
                    status,
                    reason: None,
                };
                let env = envelope(&e, order);
                deliver(&self.db, &handler, In::OrderUpdated(e), env).await
            }
            Saga::CancelRequest => {
                self.db
                    .write(move |c| -> anyhow::Result<()> {
                        let found = storage::lock(c, order)?.unwrap();
                        if let domain::Cancel::Request { .. } = found.status.cancel() {
                            let cause =
                                storage::Cause { kind: "DELETE /api/orders".into(), id: "test".into() };
                            storage::transition(c, &found, domain::Status::CancelRequested, None, &cause, 2)?;
                        }
                        Ok(())
                    })
                    .await
                    .unwrap();
                Vec::new()
            }
        }
    }

    /// The order's status and filled quantity.
    async fn order(&self, id: Uuid) -> (order_service::domain::Status, Decimal) {
        let row = self
            .db
            .read(move |c| -> anyhow::Result<_> { Ok(order_service::storage::find(c, id)?) })
            .await
            .unwrap()
            .unwrap();
        (row.status, row.filled_quantity.value())
    }
}

/// A buy of 1 ETH at 100, funded, then the cancel in front of its book: the
/// submit retried and arriving after the cancel. The cancel leaves a stored
/// tombstone (a restart in between changes nothing); the submit is turned
/// away: never in the book, `cancelled` with a reason. Book and order end as
/// when the cancel comes second, and the saga ends normally: payment gives
/// back all it reserved, order-service ends `cancelled`.
async fn matching_turns_away_a_submit_that_arrives_after_its_cancel(backend: Backend) {
    use matching_service::handlers::{Matcher, Orders as In};
    let mut env = TestEnv::new(backend).await;
    let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
    let order = Uuid::now_v7();
    let terms = |side, price: &str| OrderTerms {
        market: MARKET.into(),
        side,
        order_type: OrderType::Limit,
        price: Some(amount(price)),
        quantity: amount("1"),
        time_in_force: TimeInForce::Gtc,
    };
    let submit = SubmitOrder { order_id: order, user_id: user, terms: terms(Side::Buy, "100") };
    let cancel = CancelOrder { order_id: order, user_id: user, market: MARKET.into() };
    // A sell that would cross the buy, had it entered the book.
    let crossing = SubmitOrder { order_id: Uuid::now_v7(), user_id: other, terms: terms(Side::Sell, "100") };

    let mut ends = Vec::new();
    let mut turned_away = None;
    for (n, cancel_first) in [false, true].into_iter().enumerate() {
        let db = database(&mut env, &format!("matching_{n}"), &matching_service::MIGRATIONS).await;
        let mut matcher = Arc::new(Matcher::default());
        let submit_it = |matcher: &Arc<Matcher>| {
            let s = submit.clone();
            let (db, matcher) = (db.clone(), matcher.clone());
            async move { deliver(&db, &matcher, In::Submit(s.clone()), envelope(&s, order)).await }
        };
        let cancel_it = |matcher: &Arc<Matcher>| {
            let c = cancel.clone();
            let (db, matcher) = (db.clone(), matcher.clone());
            async move { deliver(&db, &matcher, In::Cancel(c.clone()), envelope(&c, order)).await }
        };
        let mut said = Vec::new();
        if cancel_first {
            said.extend(cancel_it(&matcher).await);
            // Restarted between the two: the tombstone is in the database, not in memory.
            matcher = Arc::new(Matcher::default());
            said.extend(submit_it(&matcher).await);
        } else {
            said.extend(submit_it(&matcher).await);
            said.extend(cancel_it(&matcher).await);
        }
        let updates: Vec<OrderUpdated> = sent(&said);
        let last = updates.last().cloned().unwrap();
        if cancel_first {
            assert_eq!(updates.len(), 1, "never in the book: {updates:?}");
            assert_eq!(last.reason.as_deref(), Some("cancelled on request before it reached the book"));
            turned_away = Some(last.clone());
        }
        let after =
            deliver(&db, &matcher, In::Submit(crossing.clone()), envelope(&crossing, crossing.order_id))
                .await;
        let book = db
            .read(move |c| -> anyhow::Result<_> { Ok(matching_service::storage::load_book(c, MARKET)?) })
            .await
            .unwrap();
        let book: Vec<_> = book.into_iter().map(|o| (o.id, o.side, o.price, o.remaining())).collect();
        ends.push((last.status, last.filled_quantity.value(), sent::<TradeExecuted>(&after).len(), book));
    }
    let expected =
        (BookStatus::Cancelled, Decimal::ZERO, 0, vec![(crossing.order_id, Side::Sell, d("100"), d("1"))]);
    assert_eq!(ends, [expected.clone(), expected]);

    // The rest of the saga, on the turned-away order's `order.updated`.
    let update = turned_away.unwrap();
    let p = Payment::new(&mut env, "payment").await;
    p.fund(user, "USDT", "1000").await;
    p.reserve(order, user, "USDT", "100").await;
    let released = sent::<FundsReleased>(&p.matching(Fill::End(update.clone())).await);
    assert_eq!(released.iter().map(|r| r.amount.value()).collect::<Vec<_>>(), [d("100")]);
    assert_eq!(p.balances(user).await["USDT"], (d("1000"), Decimal::ZERO));
    let o = Orders::new(&mut env, "orders").await;
    let id = o.place(user).await;
    let step = |s| o.apply(id, user, s);
    step(Saga::Reserved).await;
    step(Saga::CancelRequest).await;
    step(Saga::Book(update.status, "0")).await;
    let cancelled = sent::<OrderCancelled>(&step(Saga::Released("100")).await);
    assert_eq!(
        (o.order(id).await, cancelled.len()),
        ((order_service::domain::Status::Cancelled, Decimal::ZERO), 1)
    );
    env.cleanup().await;
}

/// Pairs of order-service's saga messages that can come in either order,
/// after a common start; both orders end in the same status and filled
/// quantity, and `order.cancelled` is published once when it ends cancelled.
async fn order_service_ends_the_same_whichever_of_the_book_and_the_release_comes_first(backend: Backend) {
    use Saga::{Book, CancelRequest, Released, Reserved};
    use order_service::domain::Status;
    let mut env = TestEnv::new(backend).await;
    let user = Uuid::now_v7();
    let cases = [
        (
            "the user cancels, the book takes the rest out",
            vec![Reserved, CancelRequest],
            [Book(BookStatus::Cancelled, "0.4"), Released("60")],
            (Status::Cancelled, "0.4"),
        ),
        (
            "the user cancels, but it fills first",
            vec![Reserved, CancelRequest],
            [Book(BookStatus::Filled, "1"), Released("0")],
            (Status::Filled, "1"),
        ),
        (
            "out of the book by itself (ioc), part filled",
            vec![Reserved],
            [Book(BookStatus::Cancelled, "0.4"), Released("60")],
            (Status::Cancelled, "0.4"),
        ),
        (
            "fills reported out of order",
            vec![Reserved],
            [Book(BookStatus::PartiallyFilled, "0.4"), Book(BookStatus::Filled, "1")],
            (Status::Filled, "1"),
        ),
    ];
    let o = Orders::new(&mut env, "orders").await;
    for (name, start, pair, (status, filled)) in cases {
        let mut ends = Vec::new();
        for pair in [pair, [pair[1], pair[0]]] {
            let id = o.place(user).await;
            let mut said = Vec::new();
            for step in start.iter().chain(&pair) {
                said.extend(o.apply(id, user, *step).await);
            }
            let cancelled = sent::<OrderCancelled>(&said).len();
            ends.push((o.order(id).await, cancelled));
        }
        let expected = ((status, d(filled)), usize::from(status == Status::Cancelled));
        assert_eq!(ends, [expected, expected], "{name}");
    }
    env.cleanup().await;
}
