//! The order saga through the gateway: reservations, rejections, cancels,
//! idempotency, authorization, bad input and crashes in the middle of a burst.

use std::time::Duration;

use bourse_common::db::Backend;
use bourse_common::eventlog::{self, StreamOffset};
use bourse_common::on_both_backends;
use serde_json::json;

use bourse_common::testkit::eventually;

use crate::helpers::{TestStack, WAIT, limit_buy, pair};

on_both_backends!(
    an_order_reserves_its_funds_and_cancel_releases_them_exactly,
    an_order_larger_than_the_balance_is_rejected_and_the_balance_untouched,
    the_same_idempotency_key_makes_one_order,
    a_user_reaches_only_their_own_orders,
    bad_input_gets_a_4xx_with_an_error_body,
    services_crashing_in_a_burst_lose_no_order_and_reserve_nothing_twice,
);

async fn an_order_reserves_its_funds_and_cancel_releases_them_exactly(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    t.top_up(&alice, "USDT", "10000").await;

    let order = t.place(&alice, limit_buy("ETH-USDT", "2000.50", "1.5")).await;
    let id = order["id"].as_str().unwrap();
    let open = t.order_reaches(&alice, id, "open").await;
    assert_eq!((open["price"].as_str(), open["quantity"].as_str()), (Some("2000.5"), Some("1.5")));
    assert_eq!(t.accounts(&alice).await["USDT"], pair("6999.25", "3000.75"));

    let (status, body) = t.call("DELETE", &format!("/api/orders/{id}"), Some(&alice), None).await;
    assert_eq!(status, 202, "{body}");
    t.order_reaches(&alice, id, "cancelled").await;
    assert_eq!(t.accounts(&alice).await["USDT"], pair("10000", "0"));

    // The ledger tells the same story: top-up, reserve (2 legs), release (2 legs).
    let (_, history) = t.call("GET", "/api/history/finance?per_page=10", Some(&alice), None).await;
    assert_eq!(history["total"], 5);
    let kinds: Vec<&str> =
        history["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["release", "release", "reserve", "reserve", "top_up"]);
    // And every transition names its cause.
    let (_, steps) = t.call("GET", &format!("/api/orders/{id}/transitions"), Some(&alice), None).await;
    let causes: Vec<&str> =
        steps.as_array().unwrap().iter().map(|s| s["cause_type"].as_str().unwrap()).collect();
    assert_eq!(causes, ["POST /api/orders", "funds.reserved", "DELETE /api/orders", "funds.released"]);
    // The event log holds the whole saga, commands included (what `bourse trace` prints).
    let log =
        eventlog::read(&t.env.amqp_url, StreamOffset::First, 10_000, Duration::from_secs(1)).await.unwrap();
    let saga: Vec<&str> = log
        .iter()
        .filter(|e| e.envelope.correlation_id == id)
        .map(|e| e.envelope.message_type.as_str())
        .collect();
    // Messages of different producers may interleave (the book's "open" and the
    // cancel race); every one is there, the saga starts with the reservation and
    // ends with the cancellation.
    let mut kinds = saga.clone();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "funds.released",
            "funds.reserved",
            "matching.cancel-order",
            "matching.submit-order",
            "order.cancelled",
            "order.status-changed",
            "order.status-changed",
            "order.updated",
            "order.updated",
            "payment.reserve-funds",
        ],
        "{saga:?}"
    );
    assert_eq!(
        (saga.first(), saga.last()),
        (Some(&"payment.reserve-funds"), Some(&"order.cancelled")),
        "{saga:?}"
    );
    t.stop().await;
}

async fn an_order_larger_than_the_balance_is_rejected_and_the_balance_untouched(backend: Backend) {
    let t = TestStack::start(backend).await;
    let bob = t.user("bob@example.com").await;
    t.top_up(&bob, "USDT", "100").await;
    t.top_up(&bob, "ETH", "0.5").await;

    let buy = t.place(&bob, limit_buy("ETH-USDT", "2000", "1")).await;
    let rejected = t.order_reaches(&bob, buy["id"].as_str().unwrap(), "rejected").await;
    let reason = rejected["reject_reason"].as_str().unwrap();
    assert!(reason.contains("insufficient funds") && reason.contains("USDT"), "{reason}");

    let sell = t
        .place(&bob, json!({"market": "ETH-USDT", "side": "sell", "type": "market", "quantity": "0.6"}))
        .await;
    t.order_reaches(&bob, sell["id"].as_str().unwrap(), "rejected").await;

    let accounts = t.accounts(&bob).await;
    assert_eq!(accounts["USDT"], pair("100", "0"));
    assert_eq!(accounts["ETH"], pair("0.5", "0"));
    t.stop().await;
}

async fn the_same_idempotency_key_makes_one_order(backend: Backend) {
    let t = TestStack::start(backend).await;
    let carol = t.user("carol@example.com").await;
    t.top_up(&carol, "USDT", "1000").await;
    let order = limit_buy("BTC-USDT", "30000", "0.01");
    let key = [("Idempotency-Key", "carol-order-1")];

    let (s1, first) = t.call_with("POST", "/api/orders", Some(&carol), Some(order.clone()), &key).await;
    let (s2, second) = t.call_with("POST", "/api/orders", Some(&carol), Some(order.clone()), &key).await;
    assert_eq!((s1, s2), (202, 202), "{first} {second}");
    assert_eq!(first["id"], second["id"]);
    t.order_reaches(&carol, first["id"].as_str().unwrap(), "open").await;

    let other = limit_buy("BTC-USDT", "30000", "0.02");
    let (status, body) = t.call_with("POST", "/api/orders", Some(&carol), Some(other), &key).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));

    let (_, page) = t.call("GET", "/api/orders?market=BTC-USDT", Some(&carol), None).await;
    assert_eq!(page["total"], 1);
    assert_eq!(t.accounts(&carol).await["USDT"], pair("700", "300"), "reserved once");
    t.stop().await;
}

async fn a_user_reaches_only_their_own_orders(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let mallory = t.user("mallory@example.com").await;
    t.top_up(&alice, "USDT", "5000").await;
    let order = t.place(&alice, limit_buy("ETH-USDT", "1000", "1")).await;
    let path = format!("/api/orders/{}", order["id"].as_str().unwrap());

    let (status, body) = t.call("GET", &path, Some(&mallory), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("order_not_found")));
    let (status, _) = t.call("DELETE", &path, Some(&mallory), None).await;
    assert_eq!(status, 404);
    let (_, page) = t.call("GET", "/api/orders", Some(&mallory), None).await;
    assert_eq!(page["total"], 0);

    for token in [None, Some("not-a-token")] {
        let (status, body) = t.call("GET", &path, token, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{token:?}");
    }
    let (status, _) = t.call("GET", "/api/users/me/accounts", None, None).await;
    assert_eq!(status, 401);
    let (status, body) = t.call("GET", "/api/admin/payments/audit", Some(&alice), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    // A forged identity header is dropped by the gateway.
    let alice_id = t.call("GET", &path, Some(&alice), None).await;
    assert_eq!(alice_id.0, 200);
    let (status, _) = t
        .call_with(
            "GET",
            &path,
            Some(&mallory),
            None,
            &[("x-bourse-user-id", "00000000-0000-0000-0000-000000000000")],
        )
        .await;
    assert_eq!(status, 404);
    t.stop().await;
}

async fn bad_input_gets_a_4xx_with_an_error_body(backend: Backend) {
    let t = TestStack::start(backend).await;
    let dave = t.user("dave@example.com").await;
    let order = |patch: serde_json::Value| {
        let mut o = limit_buy("ETH-USDT", "2000", "1");
        for (k, v) in patch.as_object().unwrap() {
            o[k] = v.clone();
        }
        o
    };
    let cases = [
        (order(json!({"quantity": "-1"})), 422, "amount_not_positive"),
        (order(json!({"quantity": "0"})), 422, "amount_not_positive"),
        (order(json!({"price": "0"})), 422, "amount_not_positive"),
        (order(json!({"price": "2000.001"})), 422, "amount_scale_exceeded"),
        (order(json!({"quantity": "1.00001"})), 422, "amount_scale_exceeded"),
        (order(json!({"market": "DOGE-USDT"})), 422, "unknown_market"),
        (order(json!({"side": "hold"})), 422, "invalid_body"),
        (order(json!({"price": null})), 422, "price_required"),
        (order(json!({"quantity": 1.5})), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = t.call("POST", "/api/orders", Some(&dave), Some(body.clone())).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let malformed = t
        .http
        .post(t.url("/api/orders"))
        .bearer_auth(&dave)
        .header("content-type", "application/json")
        .body("{\"market\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: serde_json::Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json");

    let (status, body) = t
        .call(
            "POST",
            "/api/auth/users",
            None,
            Some(json!({"email": "not-an-email", "password": "long enough pw"})),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_email")));
    let (status, body) = t
        .call("POST", "/api/auth/users", None, Some(json!({"email": "e@example.com", "password": "short"})))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("weak_password")));
    let (status, body) = t
        .call("POST", "/api/users/me/accounts/USDT/top-up", Some(&dave), Some(json!({"amount": "1.0000001"})))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("amount_scale_exceeded")));
    let (status, _) = t.call("GET", "/api/orders/not-a-uuid", Some(&dave), None).await;
    assert_eq!(status, 404);
    let (status, body) = t.call("GET", "/api/orders?status=dreaming", Some(&dave), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_status")));
    // Bodies over the gateway's limit (64 KiB), on its own routes and on forwarded ones.
    let huge = json!({"email": "x".repeat(70 * 1024), "password": "long enough pw"});
    let (status, body) = t.call("POST", "/api/auth/users", None, Some(huge.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")));
    let (status, body) = t.call("POST", "/api/orders", Some(&dave), Some(huge)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(t.accounts(&dave).await["USDT"], pair("0", "0"));
    t.stop().await;
}

async fn services_crashing_in_a_burst_lose_no_order_and_reserve_nothing_twice(backend: Backend) {
    let mut t = TestStack::start(backend).await;
    let erin = t.user("erin@example.com").await;
    t.top_up(&erin, "USDT", "100000").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        // Killed where they stand: rows in the outbox, messages in flight, handlers mid-batch.
        if i == 8 {
            t.stack.crash_and_restart("payment-service").await.unwrap();
        }
        if i == 16 {
            t.stack.crash_and_restart("order-service").await.unwrap();
        }
        if i == 24 {
            t.stack.crash_and_restart("payment-service").await.unwrap();
        }
        // A client retries with the same key until the order is accepted.
        let key = format!("erin-{i}");
        let order = eventually("the order is accepted", WAIT, || async {
            let body = Some(limit_buy("ETH-USDT", "100", "1"));
            let (status, order) = t
                .call_with("POST", "/api/orders", Some(&erin), body, &[("Idempotency-Key", key.as_str())])
                .await;
            (status == 202).then_some(order)
        })
        .await;
        ids.push(order["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        open_or_explain(&t, &erin, id).await;
    }
    let (_, page) = t.call("GET", "/api/orders?status=open&per_page=100", Some(&erin), None).await;
    assert_eq!(page["total"], 30);
    assert_eq!(t.accounts(&erin).await["USDT"], pair("97000", "3000"));
    let (_, history) = t.call("GET", "/api/history/finance", Some(&erin), None).await;
    assert_eq!(history["total"], 1 + 2 * 30, "one top-up and one reservation per order, nothing twice");
    t.stop().await;
}

/// Waits until the order is open; if it is not within `WAIT`, fails with
/// what explains where its saga stands: its messages in the event log, the
/// outbox rows of order-service and payment-service for it, and what the
/// broker holds.
async fn open_or_explain(t: &TestStack, token: &str, id: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, order) = t.call("GET", &format!("/api/orders/{id}"), Some(token), None).await;
        if order["status"] == "open" {
            return;
        }
        if std::time::Instant::now() > deadline {
            let log = eventlog::read(&t.env.amqp_url, StreamOffset::First, 100_000, Duration::from_secs(2))
                .await
                .unwrap_or_default();
            let saga: Vec<String> = log
                .iter()
                .filter(|e| e.envelope.correlation_id == id)
                .map(|e| {
                    format!(
                        "{} by {} at {}",
                        e.envelope.message_type, e.envelope.producer, e.envelope.occurred_at
                    )
                })
                .collect();
            let mut outboxes = Vec::new();
            for service in ["order-service", "payment-service"] {
                let url = t.options.databases[service].clone();
                let db = bourse_common::db::Db::connect(&bourse_common::config::DatabaseConfig {
                    url,
                    pool_size: 1,
                });
                let id = id.to_string();
                let rows = match db {
                    Ok(db) => db
                        .read(move |c| bourse_common::outbox::by_correlation(c, &id).map_err(Into::into))
                        .await
                        .map(|rows| {
                            rows.iter()
                                .map(|r| {
                                    format!(
                                        "{} sent {:?} returned {:?}",
                                        r.message_type, r.sent_at, r.returned_at
                                    )
                                })
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_else(|e: bourse_common::db::DbError| vec![e.to_string()]),
                    Err(e) => vec![e.to_string()],
                };
                outboxes.push(format!("{service} outbox: {rows:?}"));
            }
            panic!(
                "order {id} is {order} after {WAIT:?}\nits saga in the event log: {saga:#?}\n{}\nthe broker:\n{}",
                outboxes.join("\n"),
                t.env.broker_report().await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
