//! Tracing set-up: human-readable lines by default, JSON with `BOURSE_LOG_FORMAT=json`,
//! filtered by `RUST_LOG` (default `info`). Spans carry `correlation_id` and
//! `message_id` across HTTP and AMQP hops (see `inbox` and the envelope).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests start many services).
pub fn init() {
    init_with_default("info,lapin=warn");
}

/// As [`init`], with `default` as the filter when `RUST_LOG` is not set.
pub fn init_with_default(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = if std::env::var("BOURSE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
