//! Bounded reads and holdings: a user's open orders are capped, and the
//! public market data (book depth, candles) answers a bounded request or a
//! 400 with a code, never an unbounded load.

use bourse_common::db::Backend;
use bourse_common::on_both_backends;
use serde_json::{Value, json};

use bourse_common::testkit::eventually;

use crate::helpers::{TestStack, WAIT, limit_buy};

on_both_backends!(open_orders_are_capped_per_user, public_reads_are_bounded);

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

async fn open_orders_are_capped_per_user(backend: Backend) {
    let t =
        TestStack::start_configured(backend, &[("order-service", "[settings]\nmax_open_orders = 3\n")]).await;
    let carol = t.user("carol@example.com").await;
    let dave = t.user("dave@example.com").await;
    t.top_up(&carol, "USDT", "1000").await;
    t.top_up(&dave, "USDT", "1000").await;
    let mut ids = Vec::new();
    for price in ["10", "11", "12"] {
        ids.push(
            t.place(&carol, limit_buy("ETH-USDT", price, "1")).await["id"].as_str().unwrap().to_string(),
        );
    }
    // A fourth, pending or not, is one too many.
    let (status, body) =
        t.call("POST", "/api/orders", Some(&carol), Some(limit_buy("ETH-USDT", "13", "1"))).await;
    assert_eq!((status, code(&body)), (422, Some("too_many_open_orders")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("3 orders open"), "{body}");
    // The cap is per user, and holds for placements sent at once.
    let burst = (0..10).map(|i| {
        let body = limit_buy("ETH-USDT", &format!("{}", 10 + i), "1");
        async { t.call("POST", "/api/orders", Some(&dave), Some(body)).await }
    });
    let answers = futures::future::join_all(burst).await;
    let accepted = answers.iter().filter(|(status, _)| *status == 202).count();
    let refused =
        answers.iter().filter(|(s, b)| (*s, code(b)) == (422, Some("too_many_open_orders"))).count();
    assert_eq!((accepted, refused), (3, 7), "{answers:?}");
    // An order that ends makes room again.
    t.order_reaches(&carol, &ids[0], "open").await;
    let (status, body) = t.call("DELETE", &format!("/api/orders/{}", ids[0]), Some(&carol), None).await;
    assert_eq!(status, 202, "{body}");
    t.order_reaches(&carol, &ids[0], "cancelled").await;
    t.place(&carol, limit_buy("ETH-USDT", "13", "1")).await;
    t.stop().await;
}

async fn public_reads_are_bounded(backend: Backend) {
    let matching = "[settings.public_reads]\ndefault_book_depth = 2\nmax_book_depth = 10\nmax_candles = 60\nmax_candle_trades = 2\n";
    let t = TestStack::start_configured(backend, &[("matching-service", matching)]).await;

    // Book depth: 1 to the maximum; the default when not given.
    for depth in ["0", "11", "100000000000000000000", "-1"] {
        let (status, body) =
            t.call("GET", &format!("/api/markets/ETH-USDT/book?depth={depth}"), None, None).await;
        assert_eq!(status, 400, "depth {depth}: {body}");
        assert!(matches!(code(&body), Some("invalid_depth" | "invalid_query")), "depth {depth}: {body}");
    }
    let (status, body) = t.call("GET", "/api/markets/ETH-USDT/book?depth=0", None, None).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_depth")), "{body}");
    assert_eq!(body["error"]["message"], "depth must be between 1 and 10");
    let alice = t.user("alice@example.com").await;
    t.top_up(&alice, "USDT", "1000").await;
    let mut last = String::new();
    for price in ["10", "11", "12"] {
        last = t.place(&alice, limit_buy("ETH-USDT", price, "1")).await["id"].as_str().unwrap().to_string();
    }
    t.order_reaches(&alice, &last, "open").await;
    // `open` is order-service's word; the book shows the order a moment later.
    let levels = |path: &'static str| {
        let t = &t;
        async move {
            let (status, book) = t.call("GET", path, None, None).await;
            assert_eq!(status, 200, "{book}");
            book["bids"].as_array().unwrap().len()
        }
    };
    eventually("three bids in the book", WAIT, || async {
        (levels("/api/markets/ETH-USDT/book?depth=10").await == 3).then_some(())
    })
    .await;
    assert_eq!(levels("/api/markets/ETH-USDT/book").await, 2, "the default depth");

    // Candles: at most `max_candles` intervals per request.
    let candles = |from: &str, to: &str| {
        format!("/api/history/candles?market=ETH-USDT&interval=1m&from={from}&to={to}")
    };
    let (status, body) =
        t.call("GET", &candles("2026-11-26T00:00:00Z", "2026-11-26T01:01:00Z"), None, None).await;
    assert_eq!((status, code(&body)), (400, Some("too_many_candles")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("61 1m intervals, at most 60"), "{body}");
    let (status, body) =
        t.call("GET", &candles("2026-11-26T00:00:00Z", "2026-11-26T01:00:00Z"), None, None).await;
    assert_eq!((status, body), (200, json!([])));
    let (status, body) =
        t.call("GET", &candles("2026-11-26T01:00:00Z", "2026-11-26T00:00:00Z"), None, None).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_range")), "{body}");
    // The default range (a day) is 1440 minutes: more than this stack serves.
    let (status, body) = t.call("GET", "/api/history/candles?market=ETH-USDT&interval=1m", None, None).await;
    assert_eq!((status, code(&body)), (400, Some("too_many_candles")), "{body}");

    // At most `max_candle_trades` trades folded per request.
    let bob = t.user("bob@example.com").await;
    t.top_up(&bob, "ETH", "3").await;
    let sell = json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "10", "quantity": "3"});
    let sold = t.place(&bob, sell).await["id"].as_str().unwrap().to_string();
    t.order_reaches(&bob, &sold, "filled").await;
    let hour = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now = chrono::Utc::now();
    let range =
        candles(&hour(now - chrono::Duration::minutes(30)), &hour(now + chrono::Duration::minutes(1)));
    let (status, body) = t.call("GET", &range, None, None).await;
    assert_eq!((status, code(&body)), (400, Some("too_many_trades")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("more than 2 trades"), "{body}");
    t.stop().await;
}
