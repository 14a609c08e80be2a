//! `bourse-common`: the one home of the machinery every Bourse service uses.
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | layered configuration (defaults -> file -> environment), unknown keys rejected |
//! | [`telemetry`] | tracing set-up |
//! | [`money`] | `Decimal` amounts with per-currency scale checks, exact on the wire and in the database |
//! | [`error`] | the one error type rendered as `{"error": {"code", "message"}}` |
//! | [`db`] | diesel over SQLite (default) or PostgreSQL, pooled, with embedded migrations |
//! | [`envelope`] | the message envelope and its AMQP properties |
//! | [`messages`] | the message catalog contract (`Message` trait, exchanges) |
//! | [`catalog`] | every event and command payload services exchange |
//! | [`reference`] | currencies and markets from configuration |
//! | [`auth`] | the caller of a service route, as the gateway forwards it |
//! | [`paging`] | pages of lists in REST responses |
//! | [`topology`] | exchanges, consumer queues, retry tiers, dead-letter queues, the event log stream |
//! | [`tracecontext`] | W3C `traceparent` across HTTP and AMQP hops |
//! | [`outbox`] | outgoing messages written in the caller's transaction (ids in commit order), and the relay that publishes them; commands `mandatory`, parked while no queue takes them |
//! | [`lease`] | the relay's lease: one publisher per database among a service's instances |
//! | [`retention`] | pruning the inbox (its dedupe window) and sent outbox rows, in small batches |
//! | [`inbox`] | the consumer that applies each delivery exactly once; a queue's messages decoded once (`inbound!`); outages waited out |
//! | [`apidoc`] | what every OpenAPI document adds: the bearer scheme, each error a route can answer |
//! | [`amqp`] | broker connections and the one reconnect loop (`supervise`) |
//! | [`deadletter`] | parked messages: list, replay (refused past the inbox window unless forced) |
//! | [`metrics`] | the metrics catalog, counters, gauges and histograms (`/metrics`), component health (readiness) |
//! | [`faults`] | crash injection for the exactly-once tests |
//! | [`feed`] | following events for live feeds, best effort |
//! | [`eventlog`] | reading the retained event log again from any point |
//! | [`logindex`] | the event log indexed by saga, id, cause and type in a database, kept by a follower of the stream |
//! | [`inspect`] | what one service knows of a saga (its outbox rows, what its inbox applied) and of its outbox, for operators |
//! | [`bus`] | what a service's relay, consumers and routes share: database, broker, settings, metrics |
//! | [`stored`] | enums stored and sent as words, one encoding each (serde, text columns) |
//! | [`registry`] | the table of services: name, port, environment prefix, the routes each owns |
//! | [`secret`] | secrets in settings: never printed, generated from OS randomness, sealing of short values between two holders of one key |
//! | [`service`] | starting a service: database, relay, consumers, HTTP with health and metrics |

pub mod amqp;
pub mod apidoc;
pub mod auth;
pub mod bus;
pub mod catalog;
pub mod config;
pub mod db;
pub mod deadletter;
pub mod envelope;
pub mod error;
pub mod eventlog;
pub mod faults;
pub mod feed;
pub mod holdings;
pub mod idempotency;
pub mod inbox;
pub mod inspect;
pub mod lease;
pub mod logindex;
pub mod messages;
pub mod metrics;
pub mod money;
pub mod outbox;
pub mod paging;
pub mod reference;
pub mod registry;
pub mod retention;
pub mod schema;
pub mod secret;
pub mod service;
pub mod stored;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod topology;
pub mod tracecontext;

/// Microseconds since the Unix epoch: the one timestamp representation of the machinery tables.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A stored [`now_micros`] timestamp as a time (the epoch if out of range).
pub fn micros_to_time(micros: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// Locks `m`, even if a holder panicked: what it guards (counters, sets,
/// maps updated one step at a time) stays meaningful.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
