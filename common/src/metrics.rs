//! Readiness of a service's components and its Prometheus counters and gauges.
//! Components (the relay, each consumer) flip their flag when their broker
//! session is up or lost; `/health/ready` is green only when all are up.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

type Labels = Vec<(&'static str, String)>;

/// Counters and readiness flags of one service instance.
#[derive(Debug, Default)]
pub struct Metrics {
    components: Mutex<BTreeMap<String, ComponentHealth>>,
    counters: Mutex<BTreeMap<(&'static str, Labels), u64>>,
    gauges: Mutex<BTreeMap<(&'static str, Labels), i64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters stay meaningful even if a holder panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
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

    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        if n == 0 {
            return;
        }
        let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        *lock(&self.counters).entry((name, labels)).or_default() += n;
    }

    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        lock(&self.counters).get(&(name, labels)).copied().unwrap_or(0)
    }

    /// Sets a gauge (a value that goes up and down, e.g. whether this instance's relay leads).
    pub fn set_gauge(&self, name: &'static str, labels: &[(&'static str, &str)], value: i64) {
        let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        lock(&self.gauges).insert((name, labels), value);
    }

    /// A gauge's value, if it was ever set.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Option<i64> {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        lock(&self.gauges).get(&(name, labels)).copied()
    }

    /// Prometheus text exposition of the counters and gauges.
    pub fn render(&self, out: &mut String) {
        fn line(out: &mut String, name: &str, labels: &Labels, value: impl std::fmt::Display) {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
        }
        for ((name, labels), value) in lock(&self.counters).iter() {
            line(out, name, labels, value);
        }
        for ((name, labels), value) in lock(&self.gauges).iter() {
            line(out, name, labels, value);
        }
        for (name, up) in self.components() {
            let _ = writeln!(out, "bourse_component_up{{component=\"{name}\"}} {}", u8::from(up));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_components_are_rendered() {
        let metrics = Metrics::default();
        metrics.add("bourse_outbox_returned_total", &[], 2);
        metrics.set_gauge("bourse_relay_leader", &[], 1);
        metrics.set_gauge("bourse_relay_leader", &[], 0);
        metrics.component("relay").set(true);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("bourse_outbox_returned_total{} 2\n"), "{out}");
        assert!(out.contains("bourse_relay_leader{} 0\n"), "{out}");
        assert!(out.contains("bourse_component_up{component=\"relay\"} 1\n"), "{out}");
        assert_eq!(metrics.gauge("bourse_relay_leader", &[]), Some(0));
    }
}
