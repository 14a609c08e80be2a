//! Sagas and the event log through the operators' REST routes on the
//! gateway: the trace of a filled order (every hop in causal order, the
//! consumers that applied each, the states the order went through), the log
//! read by type and offset, each service's outbox, a republish within the
//! inbox window (a harmless redelivery: nothing moves) and one past it
//! (refused without force); users and strangers turned away.

use bourse_common::db::Backend;
use bourse_common::envelope::Envelope;
use bourse_common::on_both_backends;
use bourse_common::testkit::eventually;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestStack, WAIT, limit_buy, pair, settled};

on_both_backends!(an_operator_traces_a_filled_order_reads_the_log_and_republishes_safely);

/// An event no service's queue takes (the gateway's live feed follows it).
const FEED_ONLY: &str = "order.status-changed";

/// Waits until the trace of `id` has a step of each of `types`, every step
/// applied (but `order.status-changed`, which only live feeds follow: it
/// stands `broadcast`); returns it.
async fn trace_with(t: &TestStack, admin: &str, id: &str, types: &[&str]) -> Value {
    let path = format!("/api/admin/trace/{id}");
    eventually(&format!("the trace of {id} with {types:?}"), WAIT, || async {
        let (status, body) = t.call("GET", &path, Some(admin), None).await;
        if status != 200 {
            return None;
        }
        let steps = body["steps"].as_array().unwrap();
        let has = |t: &&str| steps.iter().any(|s| s["type"] == *t);
        let done = |s: &Value| s["standing"] == if s["type"] == FEED_ONLY { "broadcast" } else { "applied" };
        let applied = steps.iter().all(done);
        (applied && types.iter().all(has)).then_some(body)
    })
    .await
}

async fn an_operator_traces_a_filled_order_reads_the_log_and_republishes_safely(backend: Backend) {
    let t = TestStack::start(backend).await;
    let admin = t.admin("admin@bourse.local").await;
    let alice = t.user("alice@example.com").await;
    let bob = t.user("bob@example.com").await;

    // Users get 403, strangers 401, on every route.
    let some = Uuid::now_v7();
    let routes = [
        ("GET", format!("/api/admin/trace/{some}")),
        ("GET", "/api/admin/events".to_string()),
        ("GET", "/api/admin/outbox".to_string()),
        ("POST", format!("/api/admin/messages/{some}/republish")),
    ];
    for (method, path) in &routes {
        let (status, _) = t.call(method, path, Some(&alice), None).await;
        assert_eq!(status, 403, "{method} {path}");
        let (status, _) = t.call(method, path, None, None).await;
        assert_eq!(status, 401, "{method} {path}");
    }

    // Alice buys 1 ETH at 2000 from Bob.
    t.top_up(&alice, "USDT", "5000").await;
    t.top_up(&bob, "ETH", "3").await;
    let buy = t.place(&alice, limit_buy("ETH-USDT", "2000", "1")).await;
    let id = buy["id"].as_str().unwrap().to_string();
    t.order_reaches(&alice, &id, "open").await;
    let sell =
        json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2000", "quantity": "1"});
    let sell = t.place(&bob, sell).await;
    t.order_reaches(&alice, &id, "filled").await;
    t.order_reaches(&bob, sell["id"].as_str().unwrap(), "filled").await;
    settled(&t, &alice, "USDT", pair("3000", "0")).await;

    // The trace: every hop in causal order, each applied by its consumer,
    // the order's states as matching-service moved it.
    let trace = trace_with(&t, &admin, &id, &["funds.settled", "funds.released"]).await;
    let steps = trace["steps"].as_array().unwrap();
    let types: Vec<&str> = steps.iter().map(|s| s["type"].as_str().unwrap()).collect();
    let hops: Vec<&str> = types.iter().copied().filter(|t| *t != FEED_ONLY).collect();
    assert_eq!(hops[..3], ["payment.reserve-funds", "funds.reserved", "matching.submit-order"], "{types:?}");
    let placed = steps.iter().find(|s| s["type"] == FEED_ONLY).unwrap();
    assert_eq!((&placed["standing"], &placed["transition"]["to"]), (&json!("broadcast"), &json!("pending")));
    assert_eq!(placed["applied_by"], json!([]));
    let ids: Vec<&Value> = steps.iter().map(|s| &s["message_id"]).collect();
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["correlation_id"], json!(id));
        // A cause in the saga comes first (the fill was caused by Bob's order, another saga).
        let cause = ids.iter().position(|m| **m == step["causation_id"]);
        assert!(cause.is_none_or(|c| c < i), "step {i} comes before its cause: {types:?}");
    }
    let consumers = |t: &str| -> Vec<String> {
        let step = steps.iter().find(|s| s["type"] == t).unwrap();
        step["applied_by"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["consumer"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(consumers("payment.reserve-funds"), ["payment-service.commands"]);
    assert_eq!(consumers("matching.submit-order"), ["matching-service.orders.ETH-USDT"]);
    assert_eq!(steps[0]["producer"], "order-service");
    let reserved = steps.iter().find(|s| s["type"] == "funds.reserved").unwrap();
    assert_eq!(steps[0]["caused"], json!([reserved["message_id"]]));
    let transitions: Vec<(&Value, &Value)> = steps
        .iter()
        .filter(|s| s["type"] == "order.updated")
        .map(|s| (&s["transition"]["from"], &s["transition"]["to"]))
        .collect();
    assert_eq!(transitions, [(&Value::Null, &json!("open")), (&json!("open"), &json!("filled"))]);
    assert_eq!(
        (&trace["waiting"], &trace["dead_letters"], &trace["unreachable"]),
        (&json!([]), &json!([]), &json!([]))
    );
    let (status, body) =
        t.call("GET", &format!("/api/admin/trace/{}", Uuid::now_v7()), Some(&admin), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("saga_not_found")));
    let (status, body) = t.call("GET", "/api/admin/trace/no$such", Some(&admin), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_saga_id")));

    // The log by type, and from an offset.
    let (status, page) =
        t.call("GET", "/api/admin/events?type=order.updated&per_page=100", Some(&admin), None).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert!(items.iter().all(|e| e["type"] == "order.updated"), "{page}");
    assert_eq!(items.iter().filter(|e| e["correlation_id"] == json!(id)).count(), 2);
    let from = steps[3]["offset"].as_u64().unwrap();
    let (status, page) =
        t.call("GET", &format!("/api/admin/events?from={from}&per_page=100"), Some(&admin), None).await;
    assert_eq!((status, &page["items"][0]["offset"]), (200, &json!(from)), "{page}");
    assert!(page["items"].as_array().unwrap().iter().all(|e| e["offset"].as_u64().unwrap() >= from));
    let (status, body) = t.call("GET", "/api/admin/events?from=yesterday", Some(&admin), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_from")));

    // Every service's outbox: nothing waits.
    let (status, outboxes) = t.call("GET", "/api/admin/outbox", Some(&admin), None).await;
    assert_eq!(status, 200, "{outboxes}");
    let services: Vec<&str> =
        outboxes.as_array().unwrap().iter().map(|o| o["service"].as_str().unwrap()).collect();
    assert_eq!(
        services,
        [
            "gateway",
            "order-service",
            "payment-service",
            "matching-service",
            "chain-service",
            "notify-service"
        ]
    );
    for o in outboxes.as_array().unwrap() {
        assert_eq!((&o["outbox"]["backlog"], &o["outbox"]["parked"]), (&json!(0), &json!(0)), "{o}");
    }
    let order_service = &outboxes[1]["outbox"];
    assert!(order_service["last_publish"].is_string(), "{order_service}");

    // Republished within the inbox window: order-service remembers it and
    // skips it; nothing moves. The trace shows the copy and the action.
    let reserved_id = reserved["message_id"].as_str().unwrap();
    let path = format!("/api/admin/messages/{reserved_id}/republish");
    let (status, body) =
        t.call("POST", &path, Some(&admin), Some(json!({"reason": "checking the dedupe"}))).await;
    assert_eq!((status, &body["redelivery"], &body["forced"]), (200, &json!(true), &json!(false)), "{body}");
    assert_eq!(body["applied_by"][0]["consumer"], "order-service.saga");
    let trace = eventually("the copy in the trace", WAIT, || async {
        let (_, trace) = t.call("GET", &format!("/api/admin/trace/{id}"), Some(&admin), None).await;
        let step = trace["steps"].as_array()?.iter().find(|s| s["message_id"] == reserved_id)?.clone();
        (step["republished_at"].as_array()?.len() == 1).then_some(trace)
    })
    .await;
    let action = &trace["actions"][0];
    assert_eq!((&action["action"], &action["reason"]), (&json!("republish"), &json!("checking the dedupe")));
    assert_eq!(trace["steps"].as_array().unwrap().len(), steps.len(), "nothing new happened");
    assert_eq!(t.accounts(&alice).await["USDT"], pair("3000", "0"));
    let (_, orders) = t.call("GET", "/api/orders", Some(&alice), None).await;
    assert_eq!((&orders["total"], &orders["items"][0]["status"]), (&json!(1), &json!("filled")), "{orders}");

    // A message older than the inbox window would be applied again: refused
    // unless forced; forced, it is published and recorded.
    let old = publish_old_event(&t, 30).await;
    eventually("the old message indexed", WAIT, || async {
        let (_, page) = t.call("GET", "/api/admin/events?type=operator.probe", Some(&admin), None).await;
        (page["total"] == 1).then_some(())
    })
    .await;
    let path = format!("/api/admin/messages/{}/republish", old.message_id);
    let (status, body) = t.call("POST", &path, Some(&admin), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("replay_refused")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("occurred 720 h ago") && message.contains("remember message ids for 168 h"),
        "{message}"
    );
    let forced = json!({"force": true, "reason": "a probe nobody consumes"});
    let (status, body) = t.call("POST", &path, Some(&admin), Some(forced)).await;
    assert_eq!((status, &body["redelivery"], &body["forced"]), (200, &json!(false), &json!(true)), "{body}");
    let (status, body) =
        t.call("POST", &format!("/api/admin/messages/{some}/republish"), Some(&admin), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("message_not_found")));
    let (_, page) = t.call("GET", "/api/admin/dead-letter-actions", Some(&admin), None).await;
    let kinds: Vec<&Value> = page["items"].as_array().unwrap().iter().map(|a| &a["action"]).collect();
    assert_eq!(kinds, [&json!("republish"), &json!("republish")]);
    assert_eq!(page["items"][0]["forced"], true);
    t.stop().await;
}

/// Publishes an `operator.probe` event (no consumer takes it) as if it had occurred `days_ago`.
async fn publish_old_event(t: &TestStack, days_ago: i64) -> Envelope {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Probe {
        note: String,
    }
    impl bourse_common::messages::Message for Probe {
        const TYPE: &'static str = "operator.probe";
        const KIND: bourse_common::messages::Kind = bourse_common::messages::Kind::Event;
    }
    let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
    let envelope = Envelope::new("gateway", Uuid::now_v7().to_string(), &Probe { note: "old".into() }, at);
    t.publish("bourse.events", "operator.probe", &envelope).await;
    envelope
}
