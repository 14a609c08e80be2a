//! Dead letters through the operators' REST routes on the gateway: the
//! e-mails a bug in notify-service parked are listed with their error,
//! replayed once the bug is fixed and sent once; a message older than the
//! inbox window is refused without force and discarded with a reason; every
//! action is recorded; users and strangers are turned away.

use bourse_common::catalog::UserRegistered;
use bourse_common::config::MessagingConfig;
use bourse_common::db::Backend;
use bourse_common::envelope::Envelope;
use bourse_common::reference::ReferenceData;
use bourse_common::testkit::eventually;
use bourse_common::{on_both_backends, registry};
use notify_service::mailer::SmtpSettings;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestStack, WAIT, WALLET_MAIL};

on_both_backends!(an_operator_lists_replays_and_discards_dead_letters_and_each_action_is_recorded);
on_both_backends!(a_message_failing_transiently_stands_in_its_retry_tier_in_the_trace_until_applied);

const QUEUE: &str = "notify-service.mails";

/// Waits until `QUEUE` has `n` dead letters; returns them as the route lists them.
async fn parked(t: &TestStack, admin: &str, n: usize) -> Vec<Value> {
    let path = format!("/api/admin/dead-letters/{QUEUE}");
    eventually(&format!("{n} dead letter(s) in {QUEUE}"), WAIT, || async {
        let (status, body) = t.call("GET", &path, Some(admin), None).await;
        assert_eq!(status, 200, "{body}");
        let letters = body.as_array().unwrap().clone();
        (letters.len() == n).then_some(letters)
    })
    .await
}

/// Registers a user; returns their id and token.
async fn register(t: &TestStack, email: &str) -> (String, String) {
    let credentials = json!({"email": email, "password": crate::helpers::PASSWORD});
    let (status, body) = t.call("POST", "/api/auth/users", None, Some(credentials)).await;
    assert_eq!(status, 201, "{body}");
    (body["id"].as_str().unwrap().to_string(), t.token(email).await)
}

/// Publishes `event` straight into `QUEUE` as if it had occurred `days_ago`.
async fn publish_old(t: &TestStack, event: &UserRegistered, days_ago: i64) -> Envelope {
    let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
    let envelope = Envelope::new("gateway", event.user_id.to_string(), event, at);
    t.publish("", QUEUE, &envelope).await;
    envelope
}

async fn an_operator_lists_replays_and_discards_dead_letters_and_each_action_is_recorded(backend: Backend) {
    let t = TestStack::start(backend).await;
    let admin = t.admin("admin@bourse.local").await;
    let zoe = t.user("zoe@example.com").await;

    // Users get 403, strangers 401, on every route.
    let some = Uuid::now_v7();
    let routes = [
        ("GET", "/api/admin/dead-letters".to_string()),
        ("GET", format!("/api/admin/dead-letters/{QUEUE}")),
        ("POST", format!("/api/admin/dead-letters/{QUEUE}/replay-all")),
        ("POST", format!("/api/admin/dead-letters/{QUEUE}/{some}/replay")),
        ("POST", format!("/api/admin/dead-letters/{QUEUE}/{some}/discard")),
        ("GET", "/api/admin/dead-letter-actions".to_string()),
    ];
    for (method, path) in &routes {
        let body = (*method == "POST").then(|| json!({"reason": "no"}));
        let (status, _) = t.call(method, path, Some(&zoe), body.clone()).await;
        assert_eq!(status, 403, "{method} {path}");
        let (status, _) = t.call(method, path, None, body).await;
        assert_eq!(status, 401, "{method} {path}");
    }
    let (status, body) = t.call("GET", "/api/admin/dead-letters/no-such.queue", Some(&admin), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_queue")));

    // A bug in notify-service's mail queue: every message fails and is
    // parked. Yan registers: the welcome and the deposit address are parked.
    let notify = t.stack.service("notify-service").unwrap();
    notify.bus.faults.reject_messages_in(Some(QUEUE));
    let (yan_id, _) = register(&t, "yan@example.com").await;
    let letters = parked(&t, &admin, 2).await;
    let welcome = letters.iter().find(|l| l["type"] == "user.registered").unwrap();
    assert_eq!(
        (&welcome["correlation_id"], &welcome["attempts"], &welcome["producer"]),
        (&json!(yan_id), &json!(1), &json!("gateway"))
    );
    assert_eq!(welcome["payload"]["email"], "yan@example.com");
    assert!(welcome["error"].as_str().unwrap().contains("a bug on purpose"), "{welcome}");
    let (status, counts) = t.call("GET", "/api/admin/dead-letters", Some(&admin), None).await;
    assert_eq!(status, 200, "{counts}");
    let markets = ReferenceData::default().markets.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(counts.as_array().unwrap().len(), registry::queues(markets.iter().map(String::as_str)).len());
    for queue in counts.as_array().unwrap() {
        let count = &queue["dead_letters"];
        match queue["queue"].as_str() {
            Some(QUEUE) => assert_eq!(count, 2),
            // Not declared in this stack: chain-service settles on chain only when configured to.
            Some("chain-service.settlements") => assert!(count.is_null(), "{queue}"),
            _ => assert_eq!(count, 0, "{queue}"),
        }
    }
    assert!(t.all_mails_to("yan@example.com").is_empty());
    // Yan's trace shows the welcome parked.
    let trace_path = format!("/api/admin/trace/{yan_id}");
    let step = eventually("the welcome parked in Yan's trace", WAIT, || async {
        let (_, trace) = t.call("GET", &trace_path, Some(&admin), None).await;
        let step = trace["steps"].as_array()?.iter().find(|s| s["type"] == "user.registered")?.clone();
        (step["standing"] == "parked").then_some(step)
    })
    .await;
    assert_eq!(step["parked_in"], json!([format!("{QUEUE}.dlq")]));

    // Fixed, the welcome replayed: sent once.
    notify.bus.faults.reject_messages_in(None);
    let welcome_id = welcome["message_id"].as_str().unwrap();
    let replay = format!("/api/admin/dead-letters/{QUEUE}/{welcome_id}/replay");
    let (status, body) =
        t.call("POST", &replay, Some(&admin), Some(json!({"reason": "the bug is fixed"}))).await;
    assert_eq!((status, &body["replayed"]), (200, &json!(1)), "{body}");
    let mails = t.wait_mails("yan@example.com", 1).await;
    assert_eq!(mails[0].subject.as_deref(), Some("Welcome to Bourse"));
    parked(&t, &admin, 1).await;
    let (_, trace) = t.call("GET", &trace_path, Some(&admin), None).await;
    let step = trace["steps"].as_array().unwrap().iter().find(|s| s["type"] == "user.registered").unwrap();
    assert_eq!(step["standing"], "applied");
    let applied = step["applied_by"].as_array().unwrap();
    assert!(applied.iter().any(|a| a["consumer"] == QUEUE && a["service"] == "notify-service"), "{step}");
    assert_eq!(
        (&trace["actions"][0]["action"], &trace["actions"][0]["reason"]),
        (&json!("replay"), &json!("the bug is fixed"))
    );
    let (status, body) = t.call("POST", &replay, Some(&admin), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("dead_letter_not_found")), "{body}");

    // The rest replayed at once: the deposit address is sent.
    let replay_all = format!("/api/admin/dead-letters/{QUEUE}/replay-all");
    let (status, body) = t.call("POST", &replay_all, Some(&admin), None).await;
    assert_eq!((status, &body["replayed"], &body["refused"]), (200, &json!(1), &json!([])), "{body}");
    parked(&t, &admin, 0).await;
    let all = eventually("the deposit address e-mailed", WAIT, || async {
        let all = t.all_mails_to("yan@example.com");
        (all.len() == 2).then_some(all)
    })
    .await;
    let subjects: Vec<_> = all.iter().filter_map(|m| m.subject.as_deref()).collect();
    assert!(subjects.contains(&WALLET_MAIL) && subjects.contains(&"Welcome to Bourse"), "{subjects:?}");

    // A message that occurred 30 days ago, older than the inbox's 7 days: its
    // consumer may have applied it and forgotten it: refused unless forced.
    notify.bus.faults.reject_messages_in(Some(QUEUE));
    let old = UserRegistered { user_id: Uuid::now_v7(), email: "old@example.com".into() };
    let old = publish_old(&t, &old, 30).await;
    parked(&t, &admin, 1).await;
    notify.bus.faults.reject_messages_in(None);
    let path = format!("/api/admin/dead-letters/{QUEUE}/{}", old.message_id);
    let (status, body) = t.call("POST", &format!("{path}/replay"), Some(&admin), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("replay_refused")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("the inbox remembers message ids for 168 h"), "{message}");
    parked(&t, &admin, 1).await;
    // Dropped, with a reason (required).
    let blank = Some(json!({"reason": " "}));
    let (status, body) = t.call("POST", &format!("{path}/discard"), Some(&admin), blank).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("reason_required")), "{body}");
    let reason = json!({"reason": "forged by the test"});
    let (status, body) = t.call("POST", &format!("{path}/discard"), Some(&admin), Some(reason)).await;
    assert_eq!((status, &body["action"], &body["type"]), (200, &json!("discard"), &json!("user.registered")));
    parked(&t, &admin, 0).await;

    // Each action recorded, newest first, by the same administrator.
    let (status, page) = t.call("GET", "/api/admin/dead-letter-actions", Some(&admin), None).await;
    assert_eq!((status, &page["total"]), (200, &json!(3)), "{page}");
    let items = page["items"].as_array().unwrap();
    let summary: Vec<(&Value, &Value, &Value)> =
        items.iter().map(|a| (&a["action"], &a["reason"], &a["replayed"])).collect();
    assert_eq!(
        summary,
        [
            (&json!("discard"), &json!("forged by the test"), &json!(0)),
            (&json!("replay_all"), &Value::Null, &json!(1)),
            (&json!("replay"), &json!("the bug is fixed"), &json!(1)),
        ]
    );
    assert_eq!(items[0]["message_id"], json!(old.message_id.to_string()));
    assert_eq!(items[2]["message_id"], json!(welcome_id));
    assert!(items.iter().all(|a| a["by"] == items[0]["by"]));
    // Nothing was sent twice, nor for the discarded message.
    assert_eq!(t.all_mails_to("yan@example.com").len(), 2);
    assert!(t.all_mails_to("old@example.com").is_empty());
    t.stop().await;
}

async fn a_message_failing_transiently_stands_in_its_retry_tier_in_the_trace_until_applied(backend: Backend) {
    // Retries after 100 ms, then every 1.5 s, for long enough to look.
    let messaging =
        MessagingConfig { retry_delays_ms: vec![100, 1_500], max_attempts: 40, ..Default::default() };
    let t = TestStack::start_with(backend, Some(messaging), &[], SmtpSettings::default()).await;
    let admin = t.admin("admin@bourse.local").await;

    // notify-service's mail queue fails every message transiently: Una's welcome goes round the tiers.
    let notify = t.stack.service("notify-service").unwrap();
    notify.bus.faults.fail_messages_in(Some(QUEUE));
    let (una, _) = register(&t, "una@example.com").await;
    let trace_path = format!("/api/admin/trace/{una}");
    let welcome = |trace: &Value| -> Option<Value> {
        trace["steps"].as_array()?.iter().find(|s| s["type"] == "user.registered").cloned()
    };
    let step = eventually("the welcome retried twice in Una's trace", WAIT, || async {
        let (_, trace) = t.call("GET", &trace_path, Some(&admin), None).await;
        let step = welcome(&trace)?;
        let retry = step["retries"].as_array()?.iter().find(|r| r["consumer"] == QUEUE)?.clone();
        (step["standing"] == "retrying" && retry["attempt"].as_i64()? >= 3).then_some(step)
    })
    .await;
    let retry = step["retries"].as_array().unwrap().iter().find(|r| r["consumer"] == QUEUE).unwrap();
    assert_eq!(retry["service"], "notify-service");
    assert!(retry["error"].as_str().unwrap().contains("a bug on purpose"), "{retry}");
    assert!(retry["retry_at"].as_str().is_some(), "{retry}");
    // The other consumers of the welcome applied it: only notify-service's waits.
    let applied = step["applied_by"].as_array().unwrap();
    assert!(!applied.is_empty() && applied.iter().all(|a| a["consumer"] != QUEUE), "{step}");
    assert_eq!((&step["parked_in"], t.all_mails_to("una@example.com").len()), (&json!([]), 0));
    let (_, letters) = t.call("GET", &format!("/api/admin/dead-letters/{QUEUE}"), Some(&admin), None).await;
    assert_eq!(letters, json!([]), "nothing parked: the attempts are not spent yet");

    // Fixed: the next attempt applies it; the welcome is sent once and the trace says applied.
    notify.bus.faults.fail_messages_in(None);
    let mails = t.wait_mails("una@example.com", 1).await;
    assert_eq!(mails[0].subject.as_deref(), Some("Welcome to Bourse"));
    let step = eventually("the welcome applied in Una's trace", WAIT, || async {
        let (_, trace) = t.call("GET", &trace_path, Some(&admin), None).await;
        welcome(&trace).filter(|s| s["standing"] == "applied")
    })
    .await;
    assert_eq!(step["retries"], json!([]), "{step}");
    assert!(step["applied_by"].as_array().unwrap().iter().any(|a| a["consumer"] == QUEUE), "{step}");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(t.mails_to("una@example.com").len(), 1, "the welcome sent once");
    t.stop().await;
}
