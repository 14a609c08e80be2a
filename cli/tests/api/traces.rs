//! One order's W3C trace context followed through every service: the client
//! sends a `traceparent` with its order; the gateway's span continues it, the
//! forwarded request carries it to order-service, and every message of the
//! saga carries the span that wrote it (AMQP header `traceparent`) to the
//! consumer that handles it. The test records every span of the process
//! (all services run in it) and walks the order's trace back from the
//! fill's e-mail to the client.

use std::collections::HashMap;
use std::sync::Mutex;

use bourse_common::db::Backend;
use bourse_common::on_both_backends;
use bourse_common::testkit::eventually;
use bourse_common::tracecontext::TraceContext;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::helpers::{TestStack, WAIT, limit_buy, pair, settled};

on_both_backends!(one_orders_traceparent_links_the_spans_of_every_service_it_crosses);

/// A `request` or `handle` span as it was opened: its name and fields.
#[derive(Debug, Clone, Default)]
struct Recorded {
    name: &'static str,
    fields: HashMap<String, String>,
}

impl Recorded {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

impl Visit for Recorded {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.fields.insert(field.name().to_string(), format!("{value:?}").trim_matches('"').to_string());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields.insert(field.name().to_string(), value.to_string());
    }
}

static SPANS: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

/// Records every `request` and `handle` span opened in this process.
struct Capture;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
        let name = attrs.metadata().name();
        if name == "request" || name == "handle" {
            let mut recorded = Recorded { name, ..Default::default() };
            attrs.record(&mut recorded);
            SPANS.lock().unwrap().push(recorded);
        }
    }
}

async fn one_orders_traceparent_links_the_spans_of_every_service_it_crosses(backend: Backend) {
    // Each test runs in its own process: this subscriber sees every service's spans.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture)).unwrap();
    let t = TestStack::start(backend).await;
    let alice = t.user("alice@example.com").await;
    let bob = t.user("bob@example.com").await;
    t.top_up(&alice, "USDT", "5000").await;
    t.top_up(&bob, "ETH", "3").await;
    let buy = t.place(&alice, limit_buy("ETH-USDT", "2000", "1")).await;
    t.order_reaches(&alice, buy["id"].as_str().unwrap(), "open").await;

    // Bob's sell comes with the client's trace context, and fills.
    let client = TraceContext::root();
    let sell =
        json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2000", "quantity": "1"});
    let response = t
        .http
        .post(t.url("/api/orders"))
        .bearer_auth(&bob)
        .header("traceparent", client.to_string())
        .json(&sell)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let sell: serde_json::Value = response.json().await.unwrap();
    let sell = sell["id"].as_str().unwrap();
    t.order_reaches(&bob, sell, "filled").await;
    settled(&t, &bob, "USDT", pair("1996", "0")).await;
    t.wait_mails("bob@example.com", 2).await; // the welcome, the fill

    // Every span of the trace, by its id.
    let trace_id = client.trace_hex();
    let spans: HashMap<String, Recorded> =
        eventually("the fill's e-mail handled in the trace", WAIT, || async {
            let spans = SPANS.lock().unwrap().clone();
            let ours: HashMap<String, Recorded> = spans
                .into_iter()
                .filter(|s| s.field("trace_id") == trace_id)
                .map(|s| (s.field("span_id").to_string(), s))
                .collect();
            let mailed = ours
                .values()
                .any(|s| s.field("service") == "notify-service" && s.field("type") == "funds.settled");
            mailed.then_some(ours)
        })
        .await;

    // Each span's parent is in the trace, but the gateway's: the client's.
    for span in spans.values() {
        let parent = span.field("parent_id");
        if span.field("service") == "gateway" {
            assert_eq!((span.name, parent), ("request", client.span_hex().as_str()), "{span:?}");
        } else {
            assert!(spans.contains_key(parent), "{span:?}'s parent {parent} is not in the trace");
        }
    }
    let services: std::collections::BTreeSet<&str> = spans.values().map(|s| s.field("service")).collect();
    for service in ["gateway", "order-service", "payment-service", "matching-service", "notify-service"] {
        assert!(services.contains(service), "{service} in {services:?}");
    }

    // From the fill's e-mail back to the client, hop by hop.
    let mail = spans
        .values()
        .find(|s| s.field("service") == "notify-service" && s.field("type") == "funds.settled")
        .unwrap();
    let mut hops = Vec::new();
    let mut at = Some(mail);
    while let Some(span) = at {
        hops.push(
            format!("{} {} {}", span.field("service"), span.name, span.field("type")).trim_end().to_string(),
        );
        at = spans.get(span.field("parent_id"));
    }
    hops.reverse();
    assert_eq!(
        hops,
        [
            "gateway request",
            "order-service request",
            "payment-service handle payment.reserve-funds",
            "order-service handle funds.reserved",
            "matching-service handle matching.submit-order",
            "payment-service handle trade.executed",
            "notify-service handle funds.settled",
        ]
    );
    t.stop().await;
}
