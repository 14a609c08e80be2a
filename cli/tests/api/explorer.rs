//! The saga explorer at `/admin/` in a real headless chromium: an operator
//! logs in, finds an order a user placed and cancelled and sees its steps in
//! causal order with the order's states, then replays a dead letter from the
//! page and sees it applied (and the e-mail sent once).

use bourse_common::db::Backend;
use bourse_common::on_both_backends;
use bourse_common::testkit::eventually;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{PASSWORD, TestStack, WAIT, limit_buy, pair, settled};

on_both_backends!(an_operator_follows_a_cancelled_order_and_replays_a_dead_letter_in_the_saga_explorer);

const QUEUE: &str = "notify-service.mails";

/// Searches `arguments[0]` until its timeline has a step of type
/// `arguments[1]` with standing `arguments[2]`; then the steps, in page order.
const TIMELINE: &str = r#"
const [saga, type, standing] = arguments;
const timeline = document.querySelector('#timeline');
const steps = [...timeline.querySelectorAll('.step')].map((e) => ({
  type: e.dataset.type, standing: e.dataset.standing, transition: e.dataset.transition,
  producer: e.dataset.producer, id: e.dataset.messageId,
}));
const loaded = timeline.dataset.loaded === 'true' && timeline.dataset.saga === saga;
if (loaded && steps.some((s) => s.type === type && s.standing === standing)) return steps;
if (loaded || timeline.dataset.saga !== saga) {
  document.querySelector('#saga-id').value = saga;
  document.querySelector('#saga-search').click();
}
return null;
"#;

async fn an_operator_follows_a_cancelled_order_and_replays_a_dead_letter_in_the_saga_explorer(
    backend: Backend,
) {
    let t = TestStack::start(backend).await;
    let admin = t.admin("admin@bourse.local").await;
    let alice = t.user("alice@example.com").await;

    // Alice places a buy, then cancels it: everything comes back.
    t.top_up(&alice, "USDT", "5000").await;
    let order = t.place(&alice, limit_buy("ETH-USDT", "2000", "1")).await;
    let id = order["id"].as_str().unwrap().to_string();
    t.order_reaches(&alice, &id, "open").await;
    let (status, _) = t.call("DELETE", &format!("/api/orders/{id}"), Some(&alice), None).await;
    assert_eq!(status, 202);
    t.order_reaches(&alice, &id, "cancelled").await;
    settled(&t, &alice, "USDT", pair("5000", "0")).await;

    // A bug in notify-service parks Yan's welcome.
    let notify = t.stack.service("notify-service").unwrap();
    notify.bus.faults.reject_messages_in(Some(QUEUE));
    let credentials = json!({"email": "yan@example.com", "password": PASSWORD});
    let (status, yan) = t.call("POST", "/api/auth/users", None, Some(credentials)).await;
    assert_eq!(status, 201, "{yan}");
    let yan = yan["id"].as_str().unwrap().to_string();
    let welcome = eventually("Yan's welcome parked", WAIT, || async {
        let (_, letters) =
            t.call("GET", &format!("/api/admin/dead-letters/{QUEUE}"), Some(&admin), None).await;
        let letters = letters.as_array()?;
        let welcome = letters.iter().find(|l| l["type"] == "user.registered")?;
        Some(welcome["message_id"].as_str()?.to_string())
    })
    .await;

    // The operator logs in.
    let browser = Browser::start().await;
    browser.goto(&t.url("/admin/")).await;
    browser.type_into("#login-email", "admin@bourse.local").await;
    browser.type_into("#login-password", PASSWORD).await;
    browser.click("#login-submit").await;
    browser.wait_for("logged in", "return !document.querySelector('#main').hidden", json!([])).await;

    // Every service's health, consumer by consumer.
    let health = "const services = [...document.querySelectorAll('#health .service-health')]; \
                  return services.length === 0 ? null : services.map((s) => \
                  [s.dataset.service, s.dataset.status, \
                   [...s.querySelectorAll('.component')].map((c) => [c.dataset.component, c.dataset.up])])";
    let services = browser.wait_for("every service's health", health, json!([])).await;
    let services = services.as_array().unwrap();
    assert_eq!(services.len(), 6, "{services:?}");
    let notify_health = services.iter().find(|s| s[0] == "notify-service").expect("notify-service's health");
    assert_eq!(notify_health[1], "ready", "{notify_health}");
    assert!(
        notify_health[2].as_array().unwrap().contains(&json!([format!("consumer:{QUEUE}"), "true"])),
        "{notify_health}"
    );

    // Alice's order: every hop in causal order, the order's states, all applied.
    let steps =
        browser.wait_for("the order's timeline", TIMELINE, json!([id, "funds.released", "applied"])).await;
    let steps = steps.as_array().unwrap();
    let types: Vec<&str> = steps.iter().map(|s| s["type"].as_str().unwrap()).collect();
    let position = |kind: &str| {
        types.iter().position(|t| *t == kind).unwrap_or_else(|| panic!("no {kind} in {types:?}"))
    };
    let hops = [
        "payment.reserve-funds",
        "funds.reserved",
        "matching.submit-order",
        "matching.cancel-order",
        "funds.released",
    ];
    let positions: Vec<usize> = hops.iter().map(|h| position(h)).collect();
    assert!(positions.is_sorted(), "causal order: {types:?}");
    let transitions: Vec<&str> =
        steps.iter().filter_map(|s| s["transition"].as_str()).filter(|t| !t.is_empty()).collect();
    for state in ["pending", "open", "cancel_requested", "cancelled"] {
        assert!(
            transitions.iter().any(|t| t.ends_with(&format!("-> {state}"))),
            "{state} in {transitions:?}"
        );
    }
    let lanes: Vec<&str> = steps.iter().map(|s| s["producer"].as_str().unwrap()).collect();
    for service in ["order-service", "payment-service", "matching-service"] {
        assert!(lanes.contains(&service), "{service} in {lanes:?}");
    }
    let screenshot = browser.screenshot().await;
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG");
    let shot =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("saga-explorer-{backend:?}.png"));
    std::fs::write(&shot, screenshot).unwrap();

    // The bug fixed, the operator replays the welcome from the dead-letter panel.
    notify.bus.faults.reject_messages_in(None);
    browser.click("#refresh").await;
    let letter = format!("#dead-letters .letter[data-message-id='{welcome}'] button.replay");
    let find = "return document.querySelector(arguments[0]) !== null";
    browser.wait_for("the welcome in the dead-letter panel", find, json!([letter])).await;
    browser.click(&letter).await;
    // A click that lands while the panel redraws (its periodic refresh) is
    // lost with the old button: pressed again, in the page, while it shows.
    let gone = "const button = document.querySelector(arguments[0]); \
                if (document.querySelector('#dead-letters').dataset.loaded !== 'true') return false; \
                if (button === null) return true; \
                if (!button.disabled) button.click(); \
                return false;";
    browser.wait_for("the welcome replayed", gone, json!([letter])).await;
    let mails = t.wait_mails("yan@example.com", 1).await;
    assert_eq!(mails[0].subject.as_deref(), Some("Welcome to Bourse"));

    // Yan's timeline: the welcome applied now, the replay recorded.
    let steps =
        browser.wait_for("Yan's timeline", TIMELINE, json!([yan, "user.registered", "applied"])).await;
    let applied: Vec<&Value> =
        steps.as_array().unwrap().iter().filter(|s| s["type"] == "user.registered").collect();
    assert_eq!(applied.len(), 1, "{steps}");
    let action =
        "return [...document.querySelectorAll('#timeline *')].some((e) => /replay/i.test(e.textContent))";
    browser.wait_for("the replay shown in the trace", action, json!([])).await;
    browser.quit().await;
    assert_eq!(
        t.all_mails_to("yan@example.com")
            .iter()
            .filter(|m| m.subject.as_deref() == Some("Welcome to Bourse"))
            .count(),
        1
    );
    t.stop().await;
}
