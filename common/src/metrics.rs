//! Readiness of a service's components and its Prometheus metrics.
//!
//! Components (the relay, each consumer) flip their flag when their broker
//! session is up or lost; `/health/ready` is green only when all are up.
//!
//! Every metric a service may expose is declared once in [`CATALOG`] with its
//! kind and help text, and registered at start in the service's own
//! [`prometheus_client`] registry (one per service: the stack can run every
//! service in one process). `/metrics` is the registry's OpenMetrics text:
//! `# HELP`/`# TYPE` lines, counters, gauges and histograms.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A component's readiness flag.
#[derive(Debug, Clone, Default)]
pub struct ComponentHealth(Arc<AtomicBool>);

impl ComponentHealth {
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a metric counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Durations in seconds, in [`LATENCY_BUCKETS`].
    Histogram,
}

/// Every metric of the stack: name, kind, labels, help. A service exposes all
/// of them: a counter without labels from zero, the others once they have a value.
pub const CATALOG: &[(&str, Kind, &[&str], &str)] = &[
    (
        "bourse_http_request_duration_seconds",
        Kind::Histogram,
        &["method", "route", "status"],
        "HTTP requests by method, route pattern and status, with their latency",
    ),
    (
        "bourse_messages_handled_total",
        Kind::Counter,
        &["queue"],
        "Messages applied by a consumer (first delivery, not duplicates), by queue",
    ),
    (
        "bourse_message_handler_duration_seconds",
        Kind::Histogram,
        &["queue", "type"],
        "Time a consumer's handler took for one message, by queue and message type",
    ),
    (
        "bourse_messages_duplicate_total",
        Kind::Counter,
        &["queue"],
        "Deliveries the inbox had already applied (dedupe hits), by queue",
    ),
    (
        "bourse_messages_retried_total",
        Kind::Counter,
        &["queue"],
        "Failed deliveries sent to a retry tier, by queue",
    ),
    (
        "bourse_messages_dead_lettered_total",
        Kind::Counter,
        &["queue"],
        "Deliveries parked in the dead-letter queue, by queue",
    ),
    (
        "bourse_dead_letter_queue_depth",
        Kind::Gauge,
        &["queue"],
        "Messages waiting in a consumer's dead-letter queue, by queue",
    ),
    (
        "bourse_saga_step_duration_seconds",
        Kind::Histogram,
        &["step"],
        "Time from an order's submission to each step of its saga (reserved, open, filled, settled, rejected), by the producers' clocks",
    ),
    ("bourse_outbox_backlog", Kind::Gauge, &[], "Outbox messages written but not yet published"),
    ("bourse_outbox_oldest_age_seconds", Kind::Gauge, &[], "Age of the oldest unpublished outbox message"),
    ("bourse_outbox_parked", Kind::Gauge, &[], "Commands no queue took yet (published again until one does)"),
    (
        "bourse_outbox_published_total",
        Kind::Counter,
        &[],
        "Outbox messages the relay published with a broker confirm",
    ),
    (
        "bourse_outbox_returned_total",
        Kind::Counter,
        &[],
        "Published commands the broker returned as unroutable",
    ),
    (
        "bourse_outbox_last_publish_timestamp_seconds",
        Kind::Gauge,
        &[],
        "When the relay last published (Unix seconds)",
    ),
    ("bourse_outbox_purged_total", Kind::Counter, &[], "Published outbox rows deleted after their retention"),
    ("bourse_inbox_pruned_total", Kind::Counter, &[], "Inbox rows deleted after the dedupe window"),
    (
        "bourse_relay_leader",
        Kind::Gauge,
        &[],
        "1 while this instance's relay holds the outbox lease and publishes",
    ),
    ("bourse_websocket_clients", Kind::Gauge, &[], "WebSocket connections open on the gateway"),
    (
        "bourse_component_up",
        Kind::Gauge,
        &["component"],
        "1 while a component (consumer, relay, upstream, database) is up",
    ),
    ("bourse_audit_discrepancies", Kind::Gauge, &[], "Discrepancies the last ledger audit found"),
    (
        "bourse_audit_last_clean_seconds",
        Kind::Gauge,
        &[],
        "When the ledger audit last found nothing wrong (Unix seconds)",
    ),
];

/// Histogram buckets for every latency, in seconds: 0.5 ms to about 65 s.
pub const LATENCY_BUCKETS: [f64; 18] = {
    let mut buckets = [0.0005; 18];
    let mut i = 1;
    while i < buckets.len() {
        buckets[i] = buckets[i - 1] * 2.0;
        i += 1;
    }
    buckets
};

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn labels(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Metrics and readiness flags of one service instance.
#[derive(Debug)]
pub struct Metrics {
    components: Mutex<BTreeMap<String, ComponentHealth>>,
    registry: Registry,
    counters: HashMap<&'static str, Family<Labels, Counter>>,
    gauges: HashMap<&'static str, Family<Labels, Gauge>>,
    histograms: HashMap<&'static str, Histograms>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let (mut counters, mut gauges, mut histograms) = (HashMap::new(), HashMap::new(), HashMap::new());
        for &(name, kind, label_names, help) in CATALOG {
            match kind {
                Kind::Counter => {
                    let family = Family::<Labels, Counter>::default();
                    if label_names.is_empty() {
                        // Nothing happened yet: zero, not absent (rates start from it).
                        family.get_or_create(&Vec::new()).inc_by(0);
                    }
                    // OpenMetrics names the family without `_total` and adds it to the samples.
                    registry.register(name.trim_end_matches("_total"), help, family.clone());
                    counters.insert(name, family);
                }
                Kind::Gauge => {
                    let family = Family::<Labels, Gauge>::default();
                    registry.register(name, help, family.clone());
                    gauges.insert(name, family);
                }
                Kind::Histogram => {
                    let family: Histograms = Family::new_with_constructor(latency_histogram);
                    registry.register(name, help, family.clone());
                    histograms.insert(name, family);
                }
            }
        }
        Self { components: Mutex::default(), registry, counters, gauges, histograms }
    }
}

/// The family of `name`; a name missing from [`CATALOG`] is a bug, caught by the tests.
fn family<'a, F>(families: &'a HashMap<&'static str, F>, name: &str) -> Option<&'a F> {
    let family = families.get(name);
    debug_assert!(family.is_some(), "metric {name} is not in the catalog under this kind");
    family
}

impl Metrics {
    /// Registers (or returns) the readiness flag of a component.
    pub fn component(&self, name: &str) -> ComponentHealth {
        lock(&self.components).entry(name.to_string()).or_default().clone()
    }

    /// `(name, up)` of every component.
    pub fn components(&self) -> Vec<(String, bool)> {
        lock(&self.components).iter().map(|(k, v)| (k.clone(), v.is_up())).collect()
    }

    /// Adds `n` to a counter.
    pub fn add(&self, name: &'static str, labels_: &[(&'static str, &str)], n: u64) {
        if n == 0 {
            return;
        }
        if let Some(family) = family(&self.counters, name) {
            family.get_or_create(&labels(labels_)).inc_by(n);
        }
    }

    /// A counter's value (0 if it never moved).
    pub fn get(&self, name: &'static str, labels_: &[(&'static str, &str)]) -> u64 {
        family(&self.counters, name).and_then(|f| f.get(&labels(labels_)).map(|c| c.get())).unwrap_or(0)
    }

    /// Sets a gauge (a value that goes up and down, e.g. whether this instance's relay leads).
    pub fn set_gauge(&self, name: &'static str, labels_: &[(&'static str, &str)], value: i64) {
        if let Some(family) = family(&self.gauges, name) {
            family.get_or_create(&labels(labels_)).set(value);
        }
    }

    /// A gauge's value, if it was ever set.
    pub fn gauge(&self, name: &'static str, labels_: &[(&'static str, &str)]) -> Option<i64> {
        family(&self.gauges, name).and_then(|f| f.get(&labels(labels_)).map(|g| g.get()))
    }

    /// Records a duration in a histogram.
    pub fn observe(
        &self,
        name: &'static str,
        labels_: &[(&'static str, &str)],
        elapsed: std::time::Duration,
    ) {
        if let Some(family) = family(&self.histograms, name) {
            family.get_or_create(&labels(labels_)).observe(elapsed.as_secs_f64());
        }
    }

    /// The OpenMetrics text of every metric (components as `bourse_component_up`).
    pub fn render(&self) -> String {
        for (name, up) in self.components() {
            self.set_gauge("bourse_component_up", &[("component", &name)], i64::from(up));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The route a request is counted under in `bourse_http_request_duration_seconds`
/// when the router has no pattern for it (the gateway's forwarded routes):
/// a handler puts it in the request's extensions.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_histograms_and_components_are_rendered_with_help_and_type() {
        let metrics = Metrics::default();
        metrics.add("bourse_outbox_returned_total", &[], 2);
        metrics.set_gauge("bourse_relay_leader", &[], 1);
        metrics.set_gauge("bourse_relay_leader", &[], 0);
        metrics.observe(
            "bourse_message_handler_duration_seconds",
            &[("queue", "q"), ("type", "order.updated")],
            std::time::Duration::from_millis(3),
        );
        metrics.component("relay").set(true);
        let out = metrics.render();
        assert!(out.contains("# TYPE bourse_outbox_returned counter\n"), "{out}");
        assert!(out.contains("bourse_outbox_returned_total 2\n"), "{out}");
        assert!(out.contains("bourse_relay_leader 0\n"), "{out}");
        assert!(out.contains("# TYPE bourse_message_handler_duration_seconds histogram\n"), "{out}");
        assert!(
            out.contains(
                "bourse_message_handler_duration_seconds_bucket{le=\"0.004\",queue=\"q\",type=\"order.updated\"} 1\n"
            ),
            "{out}"
        );
        assert!(out.contains("bourse_component_up{component=\"relay\"} 1\n"), "{out}");
        assert!(out.ends_with("# EOF\n"), "{out}");
        assert_eq!(metrics.gauge("bourse_relay_leader", &[]), Some(0));
        assert_eq!(metrics.get("bourse_outbox_returned_total", &[]), 2);
    }

    #[test]
    fn every_catalog_entry_has_help_and_counters_end_in_total() {
        for &(name, kind, _, help) in CATALOG {
            // The encoder ends each help with a full stop.
            assert!(name.starts_with("bourse_") && !help.is_empty() && !help.ends_with('.'), "{name}");
            assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        }
    }
}
