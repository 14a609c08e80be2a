//! The WebSocket feed's limits: channels per connection, connections per
//! client address, requests per second, and private channels that end with
//! their token. A client over a cap is told why; the others are still served.

use std::time::Duration;

use bourse_common::db::Backend;
use bourse_common::on_both_backends;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::helpers::{TestStack, limit_buy};

on_both_backends!(
    websocket_clients_over_a_cap_are_refused_and_the_others_still_served,
    private_channels_end_when_the_token_expires
);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(t: &TestStack) -> Result<Ws, tungstenite::Error> {
    let url = t.url("/ws").replace("http://", "ws://");
    tokio_tungstenite::connect_async(&url).await.map(|(ws, _)| ws)
}

async fn send(ws: &mut Ws, request: Value) {
    ws.send(Message::text(request.to_string())).await.unwrap();
}

/// The next text message, as JSON.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(20), ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Messages until one satisfies `pred`; returns it.
async fn until(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let message = next(ws).await;
        if pred(&message) {
            return message;
        }
    }
}

async fn websocket_clients_over_a_cap_are_refused_and_the_others_still_served(backend: Backend) {
    let ws_limits = "[settings.ws]\nmax_channels = 2\nmax_connections_per_client = 2\nrequests_per_second = 1\nrequest_burst = 4\n";
    let t = TestStack::start_configured(backend, &[("gateway", ws_limits)]).await;

    // Too many channels on one connection: refused, with what to do.
    let mut greedy = connect(&t).await.unwrap();
    let channels = ["trades:ETH-USDT", "candles:ETH-USDT:1m", "candles:ETH-USDT:5m"];
    send(&mut greedy, json!({"op": "subscribe", "channels": channels})).await;
    let refused = next(&mut greedy).await;
    assert_eq!(refused["error"]["code"], "too_many_channels", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("at most 2 channels per connection: 0 subscribed, 3 more asked"),
        "{message}"
    );
    // Within the cap it is served, and a request past the rate is refused.
    send(&mut greedy, json!({"op": "subscribe", "channels": ["candles:ETH-USDT:1m"]})).await;
    send(&mut greedy, json!({"op": "subscribe", "channels": ["candles:ETH-USDT:1m", "candles:ETH-USDT:5m"]}))
        .await;
    send(&mut greedy, json!({"op": "subscribe", "channels": ["trades:ETH-USDT"]})).await;
    let refused = next(&mut greedy).await;
    assert_eq!(refused["error"]["code"], "too_many_channels", "a third channel: {refused}");
    // Past the burst of 4, requests at once are refused (an unsubscribe answers nothing when served).
    for _ in 0..5 {
        send(&mut greedy, json!({"op": "unsubscribe", "channels": ["candles:ETH-USDT:5m"]})).await;
    }
    let limited = next(&mut greedy).await;
    assert_eq!(limited["error"]["code"], "rate_limited", "requests past the burst: {limited}");
    assert!(
        limited["error"]["message"].as_str().unwrap().contains("at most 1 requests per second"),
        "{limited}"
    );

    // A second connection from the same address is allowed, a third refused with a reason.
    let mut second = connect(&t).await.unwrap();
    match connect(&t).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
            assert_eq!(
                body["error"]["message"],
                "at most 2 WebSocket connections per client: close one first"
            );
        }
        other => panic!("a third connection: {other:?}"),
    }

    // The second client still gets trades.
    send(&mut second, json!({"op": "subscribe", "channels": ["trades:ETH-USDT", "book:ETH-USDT"]})).await;
    until(&mut second, |m| m["channel"] == "book:ETH-USDT" && m["data"]["type"] == "snapshot").await;
    let alice = t.user("alice@example.com").await;
    let bob = t.user("bob@example.com").await;
    t.top_up(&alice, "ETH", "1").await;
    t.top_up(&bob, "USDT", "2000").await;
    let sell =
        json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2000", "quantity": "1"});
    let sell = t.place(&alice, sell).await["id"].as_str().unwrap().to_string();
    t.order_reaches(&alice, &sell, "open").await;
    t.place(&bob, limit_buy("ETH-USDT", "2000", "1")).await;
    let trade = until(&mut second, |m| m["channel"] == "trades:ETH-USDT").await;
    assert_eq!((&trade["data"]["price"], &trade["seq"]), (&json!("2000"), &json!(1)), "{trade}");

    // Closing a connection makes room for another.
    greedy.close(None).await.unwrap();
    drop(greedy);
    let mut admitted = None;
    for _ in 0..50 {
        if let Ok(ws) = connect(&t).await {
            admitted = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted.is_some(), "a closed connection gives its place back");
    t.stop().await;
}

async fn private_channels_end_when_the_token_expires(backend: Backend) {
    let t = TestStack::start_configured(backend, &[("gateway", "[settings]\ntoken_ttl_seconds = 5\n")]).await;
    let carol = t.user("carol@example.com").await;
    let mut ws = connect(&t).await.unwrap();
    send(&mut ws, json!({"op": "auth", "token": carol})).await;
    send(&mut ws, json!({"op": "subscribe", "channels": ["orders", "balances", "trades:ETH-USDT"]})).await;
    let expired = tokio::time::timeout(Duration::from_secs(15), until(&mut ws, |m| m.get("error").is_some()))
        .await
        .expect("the token's end is announced");
    assert_eq!(expired["error"]["code"], "token_expired", "{expired}");
    assert!(expired["error"]["message"].as_str().unwrap().contains("private channels closed"), "{expired}");
    // Orders again need a (fresh) token; the public channel stays.
    send(&mut ws, json!({"op": "subscribe", "channels": ["orders"]})).await;
    let refused = next(&mut ws).await;
    assert_eq!(refused["error"]["code"], "invalid_channel", "{refused}");
    let fresh = t.token("carol@example.com").await;
    send(&mut ws, json!({"op": "auth", "token": fresh})).await;
    // The book last: its snapshot says the subscription is in place.
    send(&mut ws, json!({"op": "subscribe", "channels": ["orders", "book:ETH-USDT"]})).await;
    until(&mut ws, |m| m["channel"] == "book:ETH-USDT" && m["data"]["type"] == "snapshot").await;
    t.top_up(&fresh, "USDT", "100").await;
    let order = t.place(&fresh, limit_buy("ETH-USDT", "10", "1")).await["id"].as_str().unwrap().to_string();
    let update = until(&mut ws, |m| m["channel"] == "orders").await;
    assert_eq!(update["data"]["order_id"], order.as_str(), "{update}");

    // A revoked token (a role change raises the user's token version) is
    // refused on the feed as on the REST routes, within the version cache's term.
    let revoked = t.token("carol@example.com").await;
    t.grant_admin("carol@example.com").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut late = connect(&t).await.unwrap();
    send(&mut late, json!({"op": "auth", "token": revoked})).await;
    let refused = next(&mut late).await;
    assert_eq!(refused["error"]["code"], "unauthorized", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("revoked"), "{refused}");
    t.stop().await;
}
