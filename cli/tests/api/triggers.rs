//! Price triggers through the gateway: held from placement, fired by the
//! trade that crosses them (a gap fires each crossed one once, in order), a
//! trailing stop that follows the price, cancel and expiry that release
//! exactly, crashes of the evaluating service, and bad input. Every balance
//! is checked per user against that user's fills.

use std::collections::HashMap;
use std::time::Duration;

use bourse_common::db::Backend;
use bourse_common::on_both_backends;
use bourse_common::testkit::eventually_or;
use serde_json::{Value, json};

use crate::helpers::{TestStack, WAIT, limit_buy, pair, settled};
use crate::trading::{collect_until, has};

on_both_backends!(
    a_stop_limit_sell_fires_on_the_first_trade_at_its_stop_and_fills,
    a_gap_fires_every_crossed_trigger_once_in_stop_order,
    a_trailing_stop_follows_the_best_price_and_fires_at_exactly_its_trail,
    funds_are_held_from_placement_and_released_exactly_on_cancel_and_expiry,
    the_evaluating_service_crashing_around_the_firing_fires_each_trigger_once,
    an_oco_executes_one_leg_and_cancels_the_other_releasing_its_part_of_the_hold,
    bad_triggers_are_refused_with_a_code_and_another_users_is_404,
);

fn limit_sell(price: &str, quantity: &str) -> Value {
    json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": price, "quantity": quantity})
}

/// A market with two traders who make the trades: Bob buys, Carol sells.
struct Makers {
    bob: String,
    carol: String,
}

impl Makers {
    async fn new(t: &TestStack) -> Self {
        let bob = t.user("bob@example.com").await;
        let carol = t.user("carol@example.com").await;
        t.top_up(&bob, "USDT", "100000").await;
        t.top_up(&carol, "ETH", "100").await;
        Self { bob, carol }
    }

    /// Bob rests a bid, Carol sells into it: one trade of `quantity` at `price`.
    async fn trade_at(&self, t: &TestStack, price: &str, quantity: &str) {
        self.bid(t, price, quantity).await;
        let sell = t.place(&self.carol, limit_sell(price, quantity)).await;
        t.order_reaches(&self.carol, sell["id"].as_str().unwrap(), "filled").await;
    }

    /// Bob rests a bid; returns its id once it is open.
    async fn bid(&self, t: &TestStack, price: &str, quantity: &str) -> String {
        let buy = t.place(&self.bob, limit_buy("ETH-USDT", price, quantity)).await;
        let id = buy["id"].as_str().unwrap().to_string();
        t.order_reaches(&self.bob, &id, "open").await;
        id
    }
}

/// Places a trigger; it is `pending` until its funds are reserved. Returns its id.
async fn place(t: &TestStack, token: &str, trigger: Value) -> String {
    let (status, body) = t.call("POST", "/api/triggers", Some(token), Some(trigger)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending");
    body["id"].as_str().unwrap().to_string()
}

fn stop(kind: &str, side: &str, stop: &str, quantity: &str) -> Value {
    json!({"market": "ETH-USDT", "side": side, "kind": kind, "stop_price": stop, "quantity": quantity})
}

/// Waits until the trigger has `status`; returns it.
async fn trigger_reaches(t: &TestStack, token: &str, id: &str, status: &str) -> Value {
    let path = format!("/api/triggers/{id}");
    eventually_or(&format!("trigger {id} {status}"), WAIT, || async {
        let (code, body) = t.call("GET", &path, Some(token), None).await;
        if code == 200 && body["status"] == status {
            Ok(body)
        } else {
            Err(format!(", last seen: {code} {body}"))
        }
    })
    .await
}

/// The user's orders (newest first).
async fn orders(t: &TestStack, token: &str) -> Vec<Value> {
    let (status, body) = t.call("GET", "/api/orders?per_page=100", Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// The market's trades, oldest first, as `(price, quantity)`.
async fn trades(t: &TestStack) -> Vec<(String, String)> {
    let (status, body) = t.call("GET", "/api/history/trades?market=ETH-USDT&per_page=100", None, None).await;
    assert_eq!(status, 200, "{body}");
    let mut items: Vec<(String, String)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["price"].as_str().unwrap().to_string(), t["quantity"].as_str().unwrap().to_string()))
        .collect();
    items.reverse();
    items
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

async fn a_stop_limit_sell_fires_on_the_first_trade_at_its_stop_and_fills(backend: Backend) {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let t = TestStack::start(backend).await;
    let m = Makers::new(&t).await;
    let alice = t.user("alice@example.com").await;
    t.top_up(&alice, "ETH", "1").await;
    m.trade_at(&t, "2000", "0.01").await;

    let url = t.url("/ws").replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text(json!({"op": "auth", "token": alice}).to_string())).await.unwrap();
    let channels = ["triggers", "book:ETH-USDT"];
    ws.send(Message::text(json!({"op": "subscribe", "channels": channels}).to_string())).await.unwrap();
    // The book's snapshot says the subscriptions are in place.
    let mut seen = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    collect_until(&mut ws, &mut seen, deadline, |seen| {
        has(seen, "book:ETH-USDT", |d| d["type"] == "snapshot")
    })
    .await;

    let mut request = stop("stop_limit", "sell", "1900", "1");
    request["limit_price"] = json!("1890");
    let id = place(&t, &alice, request).await;
    let active = trigger_reaches(&t, &alice, &id, "active").await;
    assert_eq!((&active["reserve_currency"], &active["reserve_amount"]), (&json!("ETH"), &json!("1")));
    settled(&t, &alice, "ETH", pair("0", "1")).await;

    // Above its stop: nothing. Then a trade at 1895 (Bob's bid of 1.5, Carol sells 0.5).
    m.trade_at(&t, "1950", "0.01").await;
    m.bid(&t, "1895", "1.5").await;
    let sell = t.place(&m.carol, limit_sell("1895", "0.5")).await;
    t.order_reaches(&m.carol, sell["id"].as_str().unwrap(), "filled").await;

    let fired = trigger_reaches(&t, &alice, &id, "fired").await;
    assert_eq!((&fired["fired_stop_price"], &fired["fired_trade_price"]), (&json!("1900"), &json!("1895")));
    let order_id = fired["order_id"].as_str().unwrap();
    // Its order: a limit sell at 1890, filled against Bob's rest at 1895.
    let order = t.order_reaches(&alice, order_id, "filled").await;
    assert_eq!(
        (&order["type"], &order["price"], &order["trigger_id"]),
        (&json!("limit"), &json!("1890"), &json!(id))
    );
    let (_, transitions) =
        t.call("GET", &format!("/api/orders/{order_id}/transitions"), Some(&alice), None).await;
    assert_eq!(transitions[0]["cause_type"], "trigger.fired", "{transitions}");
    assert_eq!(orders(&t, &alice).await.len(), 1);

    // Alice sold 1 at 1895 as the taker (0.2 %): 1891.21 USDT, nothing held.
    let alice_accounts = settled(&t, &alice, "USDT", pair("1891.21", "0")).await;
    assert_eq!(alice_accounts["ETH"], pair("0", "0"));
    // Bob bought 0.01 + 0.01 + 0.5 + 1 as the maker (0.1 %) for 20 + 19.5 + 2842.5 USDT.
    let bob_accounts = settled(&t, &m.bob, "ETH", pair("1.51848", "0")).await;
    assert_eq!(bob_accounts["USDT"], pair("97118", "0"));
    assert_eq!(
        trades(&t).await,
        owned(&[("2000", "0.01"), ("1950", "0.01"), ("1895", "0.5"), ("1895", "1")])
    );

    let mails = t.wait_mails("alice@example.com", 3).await;
    let subjects: Vec<&str> = mails.iter().filter_map(|m| m.subject.as_deref()).collect();
    assert!(subjects.contains(&"Your stop-limit sell 1 ETH on ETH-USDT fired"), "{subjects:?}");

    collect_until(&mut ws, &mut seen, deadline, |seen| {
        has(seen, "triggers", |d| d["status"] == "active")
            && has(seen, "triggers", |d| d["status"] == "fired" && d["order_id"] == json!(order_id))
    })
    .await;
    t.stop().await;
}

async fn a_gap_fires_every_crossed_trigger_once_in_stop_order(backend: Backend) {
    let t = TestStack::start(backend).await;
    let m = Makers::new(&t).await;
    let alice = t.user("alice@example.com").await;
    t.top_up(&alice, "ETH", "1").await;
    m.trade_at(&t, "2000", "0.01").await;

    // Sell stops, placed out of order: 1850 for 0.3, 1950 for 0.1, 1900 for 0.2, 1700 for 0.1.
    let mut ids = HashMap::new();
    for (level, quantity) in [("1850", "0.3"), ("1950", "0.1"), ("1900", "0.2"), ("1700", "0.1")] {
        ids.insert(level, place(&t, &alice, stop("stop", "sell", level, quantity)).await);
    }
    for id in ids.values() {
        trigger_reaches(&t, &alice, id, "active").await;
    }
    settled(&t, &alice, "ETH", pair("0.3", "0.7")).await;

    // Bids below for the fired market sells, then one trade far through three stops.
    for (price, quantity) in [("1770", "0.3"), ("1780", "0.2"), ("1790", "0.1")] {
        m.bid(&t, price, quantity).await;
    }
    m.trade_at(&t, "1800", "0.01").await;

    for level in ["1950", "1900", "1850"] {
        let fired = trigger_reaches(&t, &alice, &ids[level], "fired").await;
        assert_eq!(
            (&fired["fired_stop_price"], &fired["fired_trade_price"]),
            (&json!(level), &json!("1800"))
        );
        t.order_reaches(&alice, fired["order_id"].as_str().unwrap(), "filled").await;
    }
    // Fired highest stop first: 1950 takes the best bid, 1900 the next, 1850 the last,
    // each whole in one trade (another order would have split them).
    assert_eq!(
        trades(&t).await,
        owned(&[("2000", "0.01"), ("1800", "0.01"), ("1790", "0.1"), ("1780", "0.2"), ("1770", "0.3")])
    );
    let ordered = orders(&t, &alice).await;
    assert_eq!(ordered.len(), 3, "one order per fired trigger: {ordered:?}");
    trigger_reaches(&t, &alice, &ids["1700"], "active").await;
    // 179 + 356 + 531 USDT less the taker's 0.2 %; the 1700 stop still holds 0.1 ETH.
    let accounts = settled(&t, &alice, "USDT", pair("1063.868", "0")).await;
    assert_eq!(accounts["ETH"], pair("0.3", "0.1"));
    t.stop().await;
}

async fn a_trailing_stop_follows_the_best_price_and_fires_at_exactly_its_trail(backend: Backend) {
    let mut t = TestStack::start(backend).await;
    let m = Makers::new(&t).await;
    let alice = t.user("alice@example.com").await;
    t.top_up(&alice, "ETH", "1").await;
    let dave = t.user("dave@example.com").await;
    t.top_up(&dave, "USDT", "100").await;
    m.trade_at(&t, "2000", "0.01").await;

    let mut sell = json!({"market": "ETH-USDT", "side": "sell", "kind": "trailing_stop", "quantity": "0.1"});
    sell["trail_amount"] = json!("50");
    let id = place(&t, &alice, sell).await;
    trigger_reaches(&t, &alice, &id, "active").await;
    // Up to 2100 (its stop follows to 2050), back to 2050.01: not yet; 2050: fired. A restart
    // of matching-service in between finds its best price again from the trades since it was armed.
    m.trade_at(&t, "2100", "0.01").await;
    t.stack.crash_and_restart("matching-service").await.unwrap();
    for price in ["2050.01", "2050"] {
        m.trade_at(&t, price, "0.01").await;
    }
    let fired = trigger_reaches(&t, &alice, &id, "fired").await;
    assert_eq!((&fired["fired_stop_price"], &fired["fired_trade_price"]), (&json!("2050"), &json!("2050")));

    // A 5 % trailing buy follows the price down: from 2050 (stop 2152.5) to 2000 (stop 2100).
    let mut buy = json!({"market": "ETH-USDT", "side": "buy", "kind": "trailing_stop", "quantity": "0.01"});
    buy["trail_percent"] = json!("5");
    let id = place(&t, &dave, buy).await;
    let active = trigger_reaches(&t, &dave, &id, "active").await;
    // A market buy capped 10 % above its first stop: 2367.75 x 0.01.
    assert_eq!(active["reserve_amount"], "23.6775");
    for price in ["2000", "2099.99", "2100"] {
        m.trade_at(&t, price, "0.01").await;
    }
    let fired = trigger_reaches(&t, &dave, &id, "fired").await;
    assert_eq!((&fired["fired_stop_price"], &fired["fired_trade_price"]), (&json!("2100"), &json!("2100")));
    // No ask to buy from: its market order ends cancelled and gives everything back.
    t.order_reaches(&dave, fired["order_id"].as_str().unwrap(), "cancelled").await;
    settled(&t, &dave, "USDT", pair("100", "0")).await;
    t.stop().await;
}

async fn funds_are_held_from_placement_and_released_exactly_on_cancel_and_expiry(backend: Backend) {
    let t = TestStack::start(backend).await;
    let m = Makers::new(&t).await;
    let dave = t.user("dave@example.com").await;
    t.top_up(&dave, "USDT", "5000").await;
    m.trade_at(&t, "2000", "0.01").await;

    // A stop-limit buy holds its limit x quantity from placement.
    let mut request = stop("stop_limit", "buy", "2100", "1");
    request["limit_price"] = json!("2110");
    let held = place(&t, &dave, request).await;
    trigger_reaches(&t, &dave, &held, "active").await;
    settled(&t, &dave, "USDT", pair("2890", "2110")).await;
    // What it holds cannot be spent by an order.
    let order = t.place(&dave, limit_buy("ETH-USDT", "2000", "1.5")).await;
    let rejected = t.order_reaches(&dave, order["id"].as_str().unwrap(), "rejected").await;
    assert!(rejected["reject_reason"].as_str().unwrap().contains("insufficient"), "{rejected}");
    // Nor by another trigger: one that needs more is rejected for its funds.
    let mut greedy = stop("stop_limit", "buy", "2100", "2");
    greedy["limit_price"] = json!("2110");
    let greedy = place(&t, &dave, greedy).await;
    let rejected = trigger_reaches(&t, &dave, &greedy, "rejected").await;
    assert!(rejected["reject_reason"].as_str().unwrap().contains("insufficient"), "{rejected}");

    // A take-profit market buy holds at its cap (10 % above 1900); cancelled, it gives it back.
    let cancelled = place(&t, &dave, stop("take_profit", "buy", "1900", "1")).await;
    trigger_reaches(&t, &dave, &cancelled, "active").await;
    settled(&t, &dave, "USDT", pair("800", "4200")).await;
    let (status, body) = t.call("DELETE", &format!("/api/triggers/{cancelled}"), Some(&dave), None).await;
    assert_eq!(status, 202, "{body}");
    trigger_reaches(&t, &dave, &cancelled, "cancelled").await;
    settled(&t, &dave, "USDT", pair("2890", "2110")).await;
    let (status, body) = t.call("DELETE", &format!("/api/triggers/{cancelled}"), Some(&dave), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("trigger_not_cancellable")));

    // One that expires in two seconds gives it back too.
    let mut expiring = stop("stop", "buy", "2200", "0.1");
    expiring["expires_at"] = json!((chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339());
    let expiring = place(&t, &dave, expiring).await;
    trigger_reaches(&t, &dave, &expiring, "active").await;
    trigger_reaches(&t, &dave, &expiring, "expired").await;
    settled(&t, &dave, "USDT", pair("2890", "2110")).await;

    // Carol asks 2105; a trade at 2100 fires the stop-limit buy, which buys from her.
    let ask = t.place(&m.carol, limit_sell("2105", "1")).await;
    t.order_reaches(&m.carol, ask["id"].as_str().unwrap(), "open").await;
    m.trade_at(&t, "2100", "0.01").await;
    let fired = trigger_reaches(&t, &dave, &held, "fired").await;
    t.order_reaches(&dave, fired["order_id"].as_str().unwrap(), "filled").await;
    // Paid 2105 (the 5 below its limit released), received 1 ETH less the taker's 0.2 %.
    let accounts = settled(&t, &dave, "USDT", pair("2895", "0")).await;
    assert_eq!(accounts["ETH"], pair("0.998", "0"));
    let (status, _) = t.call("DELETE", &format!("/api/triggers/{held}"), Some(&dave), None).await;
    assert_eq!(status, 409);
    t.stop().await;
}

/// Waits until the service's armed consumer crash has happened.
async fn crashed(t: &TestStack, service: &str) {
    let faults = t.stack.service(service).unwrap().bus.faults.clone();
    eventually_or(&format!("{service} crashes"), WAIT, || {
        let faults = faults.clone();
        async move { if faults.consumer_crash_pending() { Err(String::new()) } else { Ok(()) } }
    })
    .await;
}

async fn the_evaluating_service_crashing_around_the_firing_fires_each_trigger_once(backend: Backend) {
    let mut t = TestStack::start(backend).await;
    let m = Makers::new(&t).await;
    let alice = t.user("alice@example.com").await;
    t.top_up(&alice, "ETH", "1").await;
    m.trade_at(&t, "2000", "0.01").await;
    let first = place(&t, &alice, stop("stop", "sell", "1950", "0.1")).await;
    let second = place(&t, &alice, stop("stop", "sell", "1900", "0.1")).await;
    for id in [&first, &second] {
        trigger_reaches(&t, &alice, id, "active").await;
    }

    // matching-service commits the trade at 1940 and the firing, and dies before acknowledging:
    // the command comes again after the restart.
    m.bid(&t, "1930", "0.1").await;
    m.bid(&t, "1940", "0.01").await;
    t.stack.service("matching-service").unwrap().bus.faults.crash_consumer_after_commit(1);
    t.place(&m.carol, limit_sell("1940", "0.01")).await;
    crashed(&t, "matching-service").await;
    t.stack.crash_and_restart("matching-service").await.unwrap();
    // order-service killed too, whatever of the firing it had in hand: it comes again.
    t.stack.crash_and_restart("order-service").await.unwrap();
    let fired = trigger_reaches(&t, &alice, &first, "fired").await;
    t.order_reaches(&alice, fired["order_id"].as_str().unwrap(), "filled").await;

    // Now it dies before committing the trade at 1890: nothing happened, it comes again.
    m.bid(&t, "1880", "0.1").await;
    m.bid(&t, "1890", "0.01").await;
    t.stack.service("matching-service").unwrap().bus.faults.crash_consumer_before_commit(1);
    t.place(&m.carol, limit_sell("1890", "0.01")).await;
    crashed(&t, "matching-service").await;
    t.stack.crash_and_restart("matching-service").await.unwrap();
    let fired = trigger_reaches(&t, &alice, &second, "fired").await;
    t.order_reaches(&alice, fired["order_id"].as_str().unwrap(), "filled").await;

    // Each fired once: one order each, one trade each.
    assert_eq!(orders(&t, &alice).await.len(), 2);
    assert_eq!(
        trades(&t).await,
        owned(&[("2000", "0.01"), ("1940", "0.01"), ("1930", "0.1"), ("1890", "0.01"), ("1880", "0.1")])
    );
    // 193 + 188 USDT less the taker's 0.2 %.
    let accounts = settled(&t, &alice, "USDT", pair("380.238", "0")).await;
    assert_eq!(accounts["ETH"], pair("0.8", "0"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(orders(&t, &alice).await.len(), 2, "no second firing came late");
    t.stop().await;
}

fn oco(side: &str, limit: &str, stop: &str, stop_limit: Option<&str>) -> Value {
    let mut oco = json!({"market": "ETH-USDT", "side": side, "kind": "oco", "limit_price": limit, "stop_price": stop, "quantity": "1"});
    if let Some(price) = stop_limit {
        oco["stop_limit_price"] = json!(price);
    }
    oco
}

async fn an_oco_executes_one_leg_and_cancels_the_other_releasing_its_part_of_the_hold(backend: Backend) {
    let t = TestStack::start(backend).await;
    let m = Makers::new(&t).await;
    m.trade_at(&t, "2000", "0.01").await;

    // Alice buys 1 ETH at 1800, or on a rise through 2100 at up to 2150: one hold, the greater leg's.
    let alice = t.user("alice@example.com").await;
    t.top_up(&alice, "USDT", "5000").await;
    let id = place(&t, &alice, oco("buy", "1800", "2100", Some("2150"))).await;
    let active = trigger_reaches(&t, &alice, &id, "active").await;
    assert_eq!((&active["reserve_currency"], &active["reserve_amount"]), (&json!("USDT"), &json!("2150")));
    assert_eq!(active["stop_limit_price"], "2150");
    let order_id = active["order_id"].as_str().unwrap().to_string();
    let order = t.order_reaches(&alice, &order_id, "open").await;
    assert_eq!(
        (&order["type"], &order["price"], &order["trigger_id"]),
        (&json!("limit"), &json!("1800"), &json!(id))
    );
    settled(&t, &alice, "USDT", pair("2850", "2150")).await;

    // The limit leg fills (Carol sells 1 at 1800): the stop is off, the rest of the hold (350) released.
    let sell = t.place(&m.carol, limit_sell("1800", "1")).await;
    t.order_reaches(&m.carol, sell["id"].as_str().unwrap(), "filled").await;
    let traded = trigger_reaches(&t, &alice, &id, "traded").await;
    assert_eq!(traded["order_id"], json!(order_id));
    t.order_reaches(&alice, &order_id, "filled").await;
    let accounts = settled(&t, &alice, "USDT", pair("3200", "0")).await;
    assert_eq!(accounts["ETH"], pair("0.999", "0"));
    // A rise through its stop fires nothing.
    m.trade_at(&t, "2100", "0.01").await;
    assert_eq!(trigger_reaches(&t, &alice, &id, "traded").await["fired_at"], Value::Null);
    assert_eq!(orders(&t, &alice).await.len(), 1);

    // Dave buys at 2000, or on a rise through 2200 at up to 2250; Carol offers 1 at 2240.
    let dave = t.user("dave@example.com").await;
    t.top_up(&dave, "USDT", "5000").await;
    let id = place(&t, &dave, oco("buy", "2000", "2200", Some("2250"))).await;
    let order_id = trigger_reaches(&t, &dave, &id, "active").await["order_id"].as_str().unwrap().to_string();
    settled(&t, &dave, "USDT", pair("2750", "2250")).await;
    let ask = t.place(&m.carol, limit_sell("2240", "1")).await;
    t.order_reaches(&m.carol, ask["id"].as_str().unwrap(), "open").await;
    // A trade at 2200 fires the stop: the same order leaves 2000 and buys at up to 2250, taking 2240.
    m.trade_at(&t, "2200", "0.01").await;
    let fired = trigger_reaches(&t, &dave, &id, "fired").await;
    assert_eq!((&fired["fired_stop_price"], &fired["fired_trade_price"]), (&json!("2200"), &json!("2200")));
    assert_eq!(fired["order_id"], json!(order_id));
    let order = t.order_reaches(&dave, &order_id, "filled").await;
    assert_eq!((&order["type"], &order["price"]), (&json!("limit"), &json!("2250")));
    assert_eq!(orders(&t, &dave).await.len(), 1);
    // It paid 2240 as the taker (0.2 % of the ETH); the 10 it held above that is released.
    let accounts = settled(&t, &dave, "USDT", pair("2760", "0")).await;
    assert_eq!(accounts["ETH"], pair("0.998", "0"));

    // Erin sells 1 ETH at 2500 or on a fall through 2100 at market, then cancels: both legs, the hold whole.
    let erin = t.user("erin@example.com").await;
    t.top_up(&erin, "ETH", "1").await;
    let id = place(&t, &erin, oco("sell", "2500", "2100", None)).await;
    let order_id = trigger_reaches(&t, &erin, &id, "active").await["order_id"].as_str().unwrap().to_string();
    t.order_reaches(&erin, &order_id, "open").await;
    settled(&t, &erin, "ETH", pair("0", "1")).await;
    let (status, body) = t.call("DELETE", &format!("/api/triggers/{id}"), Some(&erin), None).await;
    assert_eq!(status, 202, "{body}");
    trigger_reaches(&t, &erin, &id, "cancelled").await;
    t.order_reaches(&erin, &order_id, "cancelled").await;
    settled(&t, &erin, "ETH", pair("1", "0")).await;

    // The makers, each against their own fills: Bob bought 0.01 at 2000, 2100 and 2200 as the maker (0.1 %).
    let bob = settled(&t, &m.bob, "ETH", pair("0.02997", "0")).await;
    assert_eq!(bob["USDT"], pair("99937", "0"));
    // Carol sold 0.01 at 2000, 1 at 1800, 0.01 at 2100 and 0.01 at 2200 as the taker (0.2 %), 1 at 2240 as the maker.
    let carol = settled(&t, &m.carol, "ETH", pair("97.97", "0")).await;
    assert_eq!(carol["USDT"], pair("4097.034", "0"));
    t.stop().await;
}

async fn bad_triggers_are_refused_with_a_code_and_another_users_is_404(backend: Backend) {
    let t = TestStack::start(backend).await;
    let m = Makers::new(&t).await;
    let alice = t.user("alice@example.com").await;
    t.top_up(&alice, "ETH", "1").await;
    m.trade_at(&t, "2000", "0.01").await;

    let trailing = |extra: Value| {
        let mut t = json!({"market": "ETH-USDT", "side": "sell", "kind": "trailing_stop", "quantity": "0.1"});
        t.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        t
    };
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let cases = [
        (stop("stop", "sell", "2000", "0.1"), "stop_would_fire_now"),
        (stop("stop", "buy", "1999", "0.1"), "stop_would_fire_now"),
        (stop("take_profit", "sell", "1999", "0.1"), "stop_would_fire_now"),
        (
            json!({"market": "ETH-USDT", "side": "sell", "kind": "stop", "quantity": "0.1"}),
            "stop_price_required",
        ),
        (stop("stop", "sell", "1900.001", "0.1"), "amount_scale_exceeded"),
        (stop("stop", "sell", "-1", "0.1"), "amount_not_positive"),
        (stop("stop_limit", "sell", "1900", "0.1"), "limit_price_required"),
        (stop("stop", "sell", "1900", "0"), "amount_not_positive"),
        (stop("stop", "sell", "1900", "100000"), "quantity_above_maximum"),
        (trailing(json!({})), "trail_required"),
        (trailing(json!({"trail_amount": "0"})), "amount_not_positive"),
        (trailing(json!({"trail_percent": "100"})), "invalid_trail_percent"),
        (trailing(json!({"trail_amount": "5", "trail_percent": "5"})), "trail_required"),
        (trailing(json!({"trail_amount": "5", "stop_price": "1900"})), "stop_price_not_allowed"),
        (
            json!({"market": "DOGE-USDT", "side": "sell", "kind": "stop", "stop_price": "1", "quantity": "1"}),
            "unknown_market",
        ),
        (
            json!({"market": "ETH-USDT", "side": "sell", "kind": "stop", "stop_price": "1900", "quantity": "0.1", "expires_at": past}),
            "expiry_in_the_past",
        ),
        (
            json!({"market": "ETH-USDT", "side": "sell", "kind": "oco", "stop_price": "1900", "quantity": "0.1"}),
            "limit_price_required",
        ),
        (
            json!({"market": "ETH-USDT", "side": "sell", "kind": "oco", "stop_price": "1900", "limit_price": "1850", "quantity": "0.1"}),
            "oco_legs_inconsistent",
        ),
        (
            json!({"market": "ETH-USDT", "side": "buy", "kind": "oco", "stop_price": "2100", "limit_price": "2150", "quantity": "0.1"}),
            "oco_legs_inconsistent",
        ),
        (
            json!({"market": "ETH-USDT", "side": "sell", "kind": "stop", "stop_price": "1900", "stop_limit_price": "1890", "quantity": "0.1"}),
            "stop_limit_price_not_allowed",
        ),
    ];
    for (request, code) in cases {
        let (status, body) = t.call("POST", "/api/triggers", Some(&alice), Some(request.clone())).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some(code)), "{request}: {body}");
    }
    // Not JSON of a trigger at all: a 4xx, never a 5xx.
    let (status, _) = t.call("POST", "/api/triggers", Some(&alice), Some(json!({"kind": "moon"}))).await;
    assert!((400..500).contains(&status), "{status}");
    let (status, _) = t.call("POST", "/api/triggers", None, Some(stop("stop", "sell", "1900", "0.1"))).await;
    assert_eq!(status, 401);
    let (status, body) = t.call("GET", "/api/triggers?status=sleeping", Some(&alice), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_status")));
    // Nothing was held by any of them.
    settled(&t, &alice, "ETH", pair("1", "0")).await;

    // The same Idempotency-Key: the same trigger; with another body: refused.
    let key = [("Idempotency-Key", "stop-1")];
    let request = stop("stop", "sell", "1900", "0.1");
    let (status, first) =
        t.call_with("POST", "/api/triggers", Some(&alice), Some(request.clone()), &key).await;
    assert_eq!(status, 202, "{first}");
    let (_, again) = t.call_with("POST", "/api/triggers", Some(&alice), Some(request), &key).await;
    assert_eq!(again["id"], first["id"]);
    let other = stop("stop", "sell", "1800", "0.1");
    let (status, body) = t.call_with("POST", "/api/triggers", Some(&alice), Some(other), &key).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
    let id = first["id"].as_str().unwrap();
    trigger_reaches(&t, &alice, id, "active").await;
    let (status, page) =
        t.call("GET", "/api/triggers?status=active&market=ETH-USDT", Some(&alice), None).await;
    assert_eq!((status, page["total"].as_i64()), (200, Some(1)), "{page}");

    // Another user sees none of it and cannot cancel it.
    let mallory = t.user("mallory@example.com").await;
    for method in ["GET", "DELETE"] {
        let (status, body) = t.call(method, &format!("/api/triggers/{id}"), Some(&mallory), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("trigger_not_found")), "{method}");
    }
    let (_, page) = t.call("GET", "/api/triggers", Some(&mallory), None).await;
    assert_eq!(page["total"], 0);
    trigger_reaches(&t, &alice, id, "active").await;
    settled(&t, &alice, "ETH", pair("0.9", "0.1")).await;
    t.stop().await;
}
