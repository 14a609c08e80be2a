//! Every service's `/metrics` as Prometheus reads it: parsed by the
//! Prometheus client's strict OpenMetrics parser (`scripts/parse-metrics.py`),
//! every family with its help and type, and what the dashboard charts after a
//! trade: HTTP latency by route pattern and status, each consumer's handler
//! time by message type, the order saga's steps, the outbox, the inbox's
//! dedupe hits, the dead-letter queues, the WebSocket clients.

use std::collections::HashMap;
use std::process::Stdio;

use bourse_common::db::Backend;
use bourse_common::on_both_backends;
use bourse_common::testkit::eventually;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::helpers::{TestStack, WAIT, limit_buy, pair, settled};

on_both_backends!(every_service_exposes_metrics_that_prometheus_parses_with_latency_histograms);

#[derive(Debug, Deserialize)]
struct Family {
    #[serde(rename = "type")]
    kind: String,
    help: String,
    samples: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

impl Family {
    /// The sum of the samples named `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The values label `key` takes on samples named `name`.
    fn values_of(&self, name: &str, key: &str) -> Vec<&str> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(key))
            .map(String::as_str)
            .collect()
    }
}

/// `/metrics` of the service at `url`, through the strict parser (which fails the test on bad text).
async fn scrape(t: &TestStack, url: &str) -> HashMap<String, Family> {
    let response = t.http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    let text = response.text().await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/parse-metrics.py");
    // Awaited, never blocking: the stack runs on this test's runtime.
    let mut parser = tokio::process::Command::new(
        bourse_cli::mailbox::python_with("prometheus_client.openmetrics.parser")
            .expect("bash scripts/infra.sh ensure_test_tools installs python3-prometheus-client"),
    )
    .arg(script)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    parser.stdin.take().unwrap().write_all(text.as_bytes()).await.unwrap();
    let out = parser.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{url}/metrics does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Vec<(String, Family)> = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap()
        .into_iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), serde_json::from_value(f).unwrap()))
        .collect();
    families.into_iter().collect()
}

fn family<'a>(families: &'a HashMap<String, Family>, name: &str, kind: &str) -> &'a Family {
    let family = families.get(name).unwrap_or_else(|| panic!("no family {name}: {:?}", families.keys()));
    assert_eq!(family.kind, kind, "{name}");
    family
}

const HTTP: &str = "bourse_http_request_duration_seconds";
const HANDLER: &str = "bourse_message_handler_duration_seconds";
const SAGA: &str = "bourse_saga_step_duration_seconds";

async fn every_service_exposes_metrics_that_prometheus_parses_with_latency_histograms(backend: Backend) {
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let bob = t.user("bob@example.com").await;
    let url = t.url("/ws").replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();

    // Alice buys 1 ETH at 2000 from Bob; both orders fill and settle.
    t.top_up(&alice, "USDT", "5000").await;
    t.top_up(&bob, "ETH", "3").await;
    let buy = t.place(&alice, limit_buy("ETH-USDT", "2000", "1")).await;
    let id = buy["id"].as_str().unwrap();
    t.order_reaches(&alice, id, "open").await;
    let sell =
        json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2000", "quantity": "1"});
    t.place(&bob, sell).await;
    t.order_reaches(&alice, id, "filled").await;
    settled(&t, &alice, "USDT", pair("3000", "0")).await;
    settled(&t, &bob, "USDT", pair("1996", "0")).await; // less the 0.2 % fee

    // Which message types each service's consumers applied in this trade, at least.
    let handled: HashMap<&str, &[&str]> = HashMap::from([
        ("order-service", &["funds.reserved", "order.updated"][..]),
        ("payment-service", &["payment.reserve-funds", "trade.executed"][..]),
        ("matching-service", &["matching.submit-order"][..]),
        ("notify-service", &["user.registered"][..]),
    ]);
    for service in &t.stack.services {
        let name = service.name;
        let families = scrape(&t, &service.url()).await;
        for (family_name, family) in &families {
            assert!(!family.help.is_empty(), "{name}: {family_name} has no help");
        }

        // HTTP: by route pattern (never a path with an id), method and status, with latency buckets.
        let http = family(&families, HTTP, "histogram");
        assert!(
            http.sum(&format!("{HTTP}_count"), &[("route", "/health/ready"), ("status", "200")]) >= 1.0,
            "{name}"
        );
        assert!(http.values_of(&format!("{HTTP}_bucket"), "le").contains(&"+Inf"), "{name}");
        for route in http.values_of(&format!("{HTTP}_count"), "route") {
            assert!(!route.contains(id), "{name}: a route label with an id: {route}");
        }

        // Messages: each applied type with its handler time; no duplicate, nothing parked.
        if let Some(types) = handled.get(name) {
            let handler = family(&families, HANDLER, "histogram");
            for kind in *types {
                assert!(
                    handler.sum(&format!("{HANDLER}_count"), &[("type", kind)]) >= 1.0,
                    "{name} handled {kind}"
                );
                assert!(
                    handler.sum(&format!("{HANDLER}_sum"), &[("type", kind)]) > 0.0,
                    "{name} timed {kind}"
                );
            }
            let applied = family(&families, "bourse_messages_handled", "counter");
            assert!(applied.sum("bourse_messages_handled_total", &[]) >= types.len() as f64, "{name}");
            let depth = family(&families, "bourse_dead_letter_queue_depth", "gauge");
            assert!(!depth.samples.is_empty(), "{name} counts its dead letters");
            assert_eq!(depth.sum("bourse_dead_letter_queue_depth", &[]), 0.0, "{name}");
        }
        // Dedupe hits: none in a run without redelivery.
        let duplicates = families
            .get("bourse_messages_duplicate")
            .map_or(0.0, |f| f.sum("bourse_messages_duplicate_total", &[]));
        assert_eq!(duplicates, 0.0, "{name}");

        // The outbox: all published.
        assert_eq!(
            family(&families, "bourse_outbox_backlog", "gauge").sum("bourse_outbox_backlog", &[]),
            0.0,
            "{name}"
        );
        family(&families, "bourse_outbox_oldest_age_seconds", "gauge");
        family(&families, "bourse_outbox_published", "counter");
        let up = family(&families, "bourse_component_up", "gauge");
        assert_eq!(up.sum("bourse_component_up", &[("component", "relay")]), 1.0, "{name}");
    }

    // The gateway: the saga's steps (from its index of the event log) and the open WebSocket.
    let gateway = t.stack.service("gateway").unwrap().url();
    let families = eventually("every step of the saga observed", WAIT, || async {
        let families = scrape(&t, &gateway).await;
        let saga = family(&families, SAGA, "histogram");
        let steps = ["reserved", "open", "filled", "settled"];
        steps
            .iter()
            .all(|step| saga.sum(&format!("{SAGA}_count"), &[("step", step)]) >= 1.0)
            .then_some(families)
    })
    .await;
    let saga = family(&families, SAGA, "histogram");
    let reserved = saga.sum(&format!("{SAGA}_sum"), &[("step", "reserved")]);
    assert!(reserved > 0.0 && reserved < WAIT.as_secs_f64(), "submit -> reserved took {reserved} s");
    let clients = family(&families, "bourse_websocket_clients", "gauge");
    assert_eq!(clients.sum("bourse_websocket_clients", &[]), 1.0);
    let http = family(&families, HTTP, "histogram");
    let placed = [("method", "POST"), ("route", "/api/orders"), ("status", "202")];
    assert_eq!(http.sum(&format!("{HTTP}_count"), &placed), 2.0, "the two orders placed");

    ws.close(None).await.unwrap();
    eventually("the WebSocket client gone", WAIT, || async {
        let families = scrape(&t, &gateway).await;
        let clients = family(&families, "bourse_websocket_clients", "gauge");
        (clients.sum("bourse_websocket_clients", &[]) == 0.0).then_some(())
    })
    .await;
    t.stop().await;
}
