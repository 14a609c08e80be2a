//! Two users trade through the gateway: fills, settlement with fees, partial
//! fills, cancels, time in force, and a matching-service restart between orders.

use std::collections::HashMap;

use bourse_common::db::Backend;
use bourse_common::on_both_backends;
use serde_json::{Value, json};

use crate::helpers::{TestStack, fees, limit_buy, pair};

on_both_backends!(
    two_users_trade_and_balances_move_by_the_trade_less_fees,
    a_partial_fill_then_cancel_releases_exactly_the_rest,
    ioc_fok_and_market_orders_end_as_defined,
    the_book_survives_a_matching_service_restart,
    a_trade_reaches_websocket_subscribers,
    the_orders_channel_shows_every_step_of_an_order_and_balances_follow_a_top_up,
);

fn limit_sell(market: &str, price: &str, quantity: &str) -> Value {
    json!({"market": market, "side": "sell", "type": "limit", "price": price, "quantity": quantity})
}

/// Alice with `eth` ETH to sell, Bob with `usdt` USDT to buy.
async fn traders(t: &TestStack, eth: &str, usdt: &str) -> (String, String) {
    let alice = t.user("alice@example.com").await;
    let bob = t.user("bob@example.com").await;
    t.top_up(&alice, "ETH", eth).await;
    t.top_up(&bob, "USDT", usdt).await;
    (alice, bob)
}

async fn id(t: &TestStack, token: &str, order: Value) -> String {
    t.place(token, order).await["id"].as_str().unwrap().to_string()
}

async fn two_users_trade_and_balances_move_by_the_trade_less_fees(backend: Backend) {
    let t = TestStack::start(backend).await;
    let (alice, bob) = traders(&t, "1", "2000").await;

    // Alice rests (maker, 0.1% fee), Bob takes (taker, 0.2% fee).
    let sell = id(&t, &alice, limit_sell("ETH-USDT", "2000", "1")).await;
    t.order_reaches(&alice, &sell, "open").await;
    let buy = id(&t, &bob, limit_buy("ETH-USDT", "2000", "1")).await;
    let bought = t.order_reaches(&bob, &buy, "filled").await;
    assert_eq!(bought["filled_quantity"], "1");
    t.order_reaches(&alice, &sell, "filled").await;

    let alice_accounts = crate::helpers::settled(&t, &alice, "USDT", pair("1998", "0")).await;
    assert_eq!(alice_accounts["ETH"], pair("0", "0"));
    let bob_accounts = crate::helpers::settled(&t, &bob, "ETH", pair("0.998", "0")).await;
    assert_eq!(bob_accounts["USDT"], pair("0", "0"));
    let fees = fees(&t).await;
    assert!(fees.contains(&("USDT".into(), "2".into())), "{fees:?}");
    assert!(fees.contains(&("ETH".into(), "0.002".into())), "{fees:?}");

    // The trade is in the public history and its candle (no token needed).
    let (status, trades) = t.call("GET", "/api/history/trades?market=ETH-USDT", None, None).await;
    assert_eq!(status, 200, "{trades}");
    assert_eq!(trades["total"], 1);
    let trade = &trades["items"][0];
    assert_eq!(
        (&trade["price"], &trade["quantity"], &trade["taker_side"]),
        (&json!("2000"), &json!("1"), &json!("buy"))
    );
    let (status, candles) =
        t.call("GET", "/api/history/candles?market=ETH-USDT&interval=1m", None, None).await;
    assert_eq!(status, 200, "{candles}");
    let candle = &candles[0];
    assert_eq!(candles.as_array().unwrap().len(), 1);
    for (field, value) in
        [("open", "2000"), ("high", "2000"), ("low", "2000"), ("close", "2000"), ("volume", "1")]
    {
        assert_eq!(candle[field], value, "{field}");
    }
    let (status, body) = t.call("GET", "/api/history/candles?market=ETH-USDT&interval=7m", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (status, body) = t.call("GET", "/api/history/trades?market=DOGE-USDT", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_market")));
    t.stop().await;
}

async fn a_partial_fill_then_cancel_releases_exactly_the_rest(backend: Backend) {
    let t = TestStack::start(backend).await;
    let (alice, bob) = traders(&t, "2", "1050").await;

    let sell = id(&t, &alice, limit_sell("ETH-USDT", "2000", "2")).await;
    t.order_reaches(&alice, &sell, "open").await;
    // Bob's limit is 2100: he fills at the maker's 2000 and gets the 50 he reserved above it back.
    let buy = id(&t, &bob, limit_buy("ETH-USDT", "2100", "0.5")).await;
    t.order_reaches(&bob, &buy, "filled").await;
    let partial = t.order_reaches(&alice, &sell, "partially_filled").await;
    assert_eq!(partial["filled_quantity"], "0.5");
    let bob_accounts = crate::helpers::settled(&t, &bob, "USDT", pair("50", "0")).await;
    assert_eq!(bob_accounts["ETH"], pair("0.499", "0"));
    let (_, book) = t.call("GET", "/api/markets/ETH-USDT/book?depth=5", None, None).await;
    assert_eq!(book["asks"], json!([{"price": "2000", "quantity": "1.5"}]));
    assert_eq!(book["bids"], json!([]));

    let (status, _) = t.call("DELETE", &format!("/api/orders/{sell}"), Some(&alice), None).await;
    assert_eq!(status, 202);
    let cancelled = t.order_reaches(&alice, &sell, "cancelled").await;
    assert_eq!(cancelled["filled_quantity"], "0.5");
    let alice_accounts = crate::helpers::settled(&t, &alice, "ETH", pair("1.5", "0")).await;
    assert_eq!(alice_accounts["USDT"], pair("999", "0"));
    let (_, book) = t.call("GET", "/api/markets/ETH-USDT/book", None, None).await;
    assert_eq!(book["asks"], json!([]));
    t.stop().await;
}

async fn ioc_fok_and_market_orders_end_as_defined(backend: Backend) {
    let t = TestStack::start(backend).await;
    let (alice, bob) = traders(&t, "1", "10000").await;

    // A market buy on an empty book ends cleanly: cancelled, everything released.
    let market =
        json!({"market": "ETH-USDT", "side": "buy", "type": "market", "price": "2500", "quantity": "1"});
    let empty = id(&t, &bob, market).await;
    let ended = t.order_reaches(&bob, &empty, "cancelled").await;
    assert_eq!(ended["filled_quantity"], "0");
    crate::helpers::settled(&t, &bob, "USDT", pair("10000", "0")).await;

    let sell = id(&t, &alice, limit_sell("ETH-USDT", "2000", "1")).await;
    t.order_reaches(&alice, &sell, "open").await;
    // FOK for more than the book holds: nothing fills.
    let mut fok = limit_buy("ETH-USDT", "2000", "2");
    fok["time_in_force"] = json!("fok");
    let fok = id(&t, &bob, fok).await;
    let killed = t.order_reaches(&bob, &fok, "cancelled").await;
    assert_eq!(killed["filled_quantity"], "0");
    // IOC for more than the book holds: what can fill fills, the rest is cancelled.
    let mut ioc = limit_buy("ETH-USDT", "2000", "2");
    ioc["time_in_force"] = json!("ioc");
    let ioc = id(&t, &bob, ioc).await;
    let rest = t.order_reaches(&bob, &ioc, "cancelled").await;
    assert_eq!(rest["filled_quantity"], "1");
    t.order_reaches(&alice, &sell, "filled").await;
    // 10000 - 2000 paid; 1 ETH less the 0.2% taker fee.
    let bob_accounts = crate::helpers::settled(&t, &bob, "USDT", pair("8000", "0")).await;
    assert_eq!(bob_accounts["ETH"], pair("0.998", "0"));
    t.stop().await;
}

async fn the_book_survives_a_matching_service_restart(backend: Backend) {
    let mut t = TestStack::start(backend).await;
    let (alice, bob) = traders(&t, "1", "2000").await;
    let sell = id(&t, &alice, limit_sell("ETH-USDT", "2000", "1")).await;
    t.order_reaches(&alice, &sell, "open").await;

    t.stack.crash_and_restart("matching-service").await.unwrap();

    let buy = id(&t, &bob, limit_buy("ETH-USDT", "2000", "1")).await;
    t.order_reaches(&bob, &buy, "filled").await;
    t.order_reaches(&alice, &sell, "filled").await;
    crate::helpers::settled(&t, &alice, "USDT", pair("1998", "0")).await;
    t.stop().await;
}

/// The statuses the `orders` channel showed for order `id`, in order.
fn statuses<'a>(seen: &'a HashMap<String, Vec<Value>>, id: &str) -> Vec<&'a str> {
    let orders = seen.get("orders").map(Vec::as_slice).unwrap_or_default();
    orders
        .iter()
        .filter(|m| m["data"]["order_id"] == id)
        .filter_map(|m| m["data"]["status"].as_str())
        .collect()
}

async fn the_orders_channel_shows_every_step_of_an_order_and_balances_follow_a_top_up(backend: Backend) {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let url = t.url("/ws").replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(json!({"op": "auth", "token": alice}))).await.unwrap();
    // The book last: its snapshot says the subscriptions are in place.
    let channels = ["orders", "balances", "book:ETH-USDT"];
    ws.send(send(json!({"op": "subscribe", "channels": channels}))).await.unwrap();
    let mut seen: HashMap<String, Vec<Value>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    collect_until(&mut ws, &mut seen, deadline, |seen| {
        has(seen, "book:ETH-USDT", |d| d["type"] == "snapshot")
    })
    .await;

    // A top-up shows in her balances.
    t.top_up(&alice, "USDT", "5000").await;
    let usdt = |available: &'static str| {
        move |d: &Value| {
            d.as_array()
                .is_some_and(|a| a.iter().any(|x| x["currency"] == "USDT" && x["available"] == available))
        }
    };
    collect_until(&mut ws, &mut seen, deadline, |seen| has(seen, "balances", usdt("5000"))).await;

    // Placed, booked, cancel asked for, cancelled: every step, in order.
    // `open` on the channel is matching-service's word that the order is in
    // the book: a cancel asked before that shows `cancel_requested` first.
    let buy = id(&t, &alice, limit_buy("ETH-USDT", "1000", "1")).await;
    collect_until(&mut ws, &mut seen, deadline, |seen| statuses(seen, &buy).contains(&"open")).await;
    let (status, body) = t.call("DELETE", &format!("/api/orders/{buy}"), Some(&alice), None).await;
    assert_eq!(status, 202, "{body}");
    collect_until(&mut ws, &mut seen, deadline, |seen| statuses(seen, &buy).contains(&"cancelled")).await;
    assert_eq!(statuses(&seen, &buy), ["pending", "open", "cancel_requested", "cancelled"]);
    let cancelled = seen["orders"].iter().rfind(|m| m["data"]["order_id"] == buy.as_str()).unwrap();
    assert_eq!(
        (&cancelled["data"]["quantity"], &cancelled["data"]["market"]),
        (&json!("1"), &json!("ETH-USDT"))
    );

    // More than she holds: refused, with the reason.
    let big = id(&t, &alice, limit_buy("ETH-USDT", "1000", "6")).await;
    collect_until(&mut ws, &mut seen, deadline, |seen| statuses(seen, &big).contains(&"rejected")).await;
    assert_eq!(statuses(&seen, &big), ["pending", "rejected"]);
    let rejected = seen["orders"].iter().rfind(|m| m["data"]["order_id"] == big.as_str()).unwrap();
    let reason = rejected["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("insufficient funds: 5000 available, 6000 needed"), "{reason}");
    ws.close(None).await.unwrap();
    t.stop().await;
}

async fn a_trade_reaches_websocket_subscribers(backend: Backend) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let t = TestStack::start(backend).await;
    let (alice, bob) = traders(&t, "1", "2000").await;

    let url = t.url("/ws").replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let send = |v: Value| Message::text(v.to_string());
    // A private channel needs a token first.
    ws.send(send(json!({"op": "subscribe", "channels": ["orders"]}))).await.unwrap();
    let refused: Value = match ws.next().await.unwrap().unwrap() {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(refused["error"]["code"], "invalid_channel");
    ws.send(send(json!({"op": "auth", "token": alice}))).await.unwrap();
    // The book last: its snapshot says the subscription is in place.
    let channels = ["trades:ETH-USDT", "candles:ETH-USDT:1m", "orders", "balances", "book:ETH-USDT"];
    ws.send(send(json!({"op": "subscribe", "channels": channels}))).await.unwrap();
    let mut seen: HashMap<String, Vec<Value>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    collect_until(&mut ws, &mut seen, deadline, |seen| {
        has(seen, "book:ETH-USDT", |d| d["type"] == "snapshot")
    })
    .await;

    let sell = id(&t, &alice, limit_sell("ETH-USDT", "2000", "1")).await;
    t.order_reaches(&alice, &sell, "open").await;
    // The feed refreshes a book when it changes; two changes closer together
    // than that may reach clients as one. So the buy waits until the ask is shown.
    let ask = |quantity: &'static str| {
        move |d: &Value| {
            d["type"] == "delta"
                && d["asks"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!({"price": "2000", "quantity": quantity})))
        }
    };
    collect_until(&mut ws, &mut seen, deadline, |seen| has(seen, "book:ETH-USDT", ask("1"))).await;
    let buy = id(&t, &bob, limit_buy("ETH-USDT", "2000", "1")).await;
    t.order_reaches(&bob, &buy, "filled").await;

    // Then the trade, its candle, alice's filled order, her USDT and the ask gone.
    collect_until(&mut ws, &mut seen, deadline, |seen| {
        has(seen, "trades:ETH-USDT", |d| d["price"] == "2000")
            && has(seen, "candles:ETH-USDT:1m", |d| d["volume"] == "1")
            && has(seen, "orders", |d| d["status"] == "filled")
            && has(seen, "balances", |d| {
                d.as_array()
                    .is_some_and(|a| a.iter().any(|x| x["currency"] == "USDT" && x["available"] != "0"))
            })
            && has(seen, "book:ETH-USDT", ask("0"))
    })
    .await;
    // Every channel numbers its messages 1, 2, 3, ... with no gap.
    for (channel, messages) in &seen {
        let seqs: Vec<u64> = messages.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{channel}");
    }
    assert_eq!(seen["book:ETH-USDT"][0]["data"]["type"], "snapshot");
    ws.close(None).await.unwrap();
    t.stop().await;
}

/// Does `channel` hold a message whose data satisfies `pred`?
pub(crate) fn has(seen: &HashMap<String, Vec<Value>>, channel: &str, pred: impl Fn(&Value) -> bool) -> bool {
    seen.get(channel).is_some_and(|v| v.iter().any(|m| pred(&m["data"])))
}

/// Reads the feed into `seen` (by channel) until `done`; panics with what came at `deadline`.
pub(crate) async fn collect_until<S>(
    ws: &mut S,
    seen: &mut HashMap<String, Vec<Value>>,
    deadline: tokio::time::Instant,
    done: impl Fn(&HashMap<String, Vec<Value>>) -> bool,
) where
    S: futures::Stream<
            Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
        > + Unpin,
{
    use futures::StreamExt;
    while !done(seen) {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("feed incomplete: {seen:#?}"));
        if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = next {
            let message: Value = serde_json::from_str(&text).unwrap();
            let channel = message["channel"].as_str().unwrap().to_string();
            seen.entry(channel).or_default().push(message);
        }
    }
}
