//! Test kit: an isolated broker vhost and fresh databases per test, a test
//! message, a handler whose effect is a row per application, and waiting.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bourse_common::config::{DatabaseConfig, MessagingConfig};
use bourse_common::db::{Backend, Db, MigrationSet};
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Handler, HandlerError};
use bourse_common::messages::{Kind, Message};
use bourse_common::outbox::{Bus, Emitter};
use bourse_common::topology::QueueSpec;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

pub const TEST_MIGRATIONS: MigrationSet =
    bourse_common::migration_set!("tests/api/migrations/sqlite", "tests/api/migrations/postgres");

diesel::table! {
    effects (id) {
        id -> BigInt,
        message_id -> Text,
        correlation_id -> Text,
        seq -> BigInt,
    }
}

/// The message the tests send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Happened {
    pub seq: i64,
    /// The handler fails on it, every time.
    pub poison: bool,
}

impl Message for Happened {
    const TYPE: &'static str = "test.happened";
    const KIND: Kind = Kind::Event;
}

pub fn queue() -> QueueSpec {
    QueueSpec::new("test-service.happenings").events(&["test.#"])
}

/// Records one effect row per application; fails on poison messages.
pub struct RecordingHandler {
    pub calls: Arc<AtomicU32>,
}

impl Handler for RecordingHandler {
    fn handle(&self, conn: &mut bourse_common::db::DbConnection, message: &Envelope, _out: &mut Emitter) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let event: Happened = message.payload()?;
        if event.poison {
            return Err(HandlerError::Transient(anyhow::anyhow!("boom: cannot handle seq {}", event.seq)));
        }
        diesel::insert_into(effects::table)
            .values((
                effects::message_id.eq(message.message_id.to_string()),
                effects::correlation_id.eq(&message.correlation_id),
                effects::seq.eq(event.seq),
            ))
            .execute(conn)?;
        Ok(())
    }
}

/// One row of `effects`.
#[derive(Debug, Clone, Queryable, PartialEq)]
pub struct Effect {
    pub id: i64,
    pub message_id: String,
    pub correlation_id: String,
    pub seq: i64,
}

pub async fn effects_of(db: &Db) -> Vec<Effect> {
    db.read(|c| effects::table.order(effects::id.asc()).load::<Effect>(c).map_err(bourse_common::db::DbError::from))
        .await
        .expect("read effects")
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A broker vhost and databases that belong to one test.
pub struct TestEnv {
    pub backend: Backend,
    pub amqp_url: String,
    vhost: String,
    mgmt_url: String,
    pg_databases: Vec<String>,
    tmp: tempfile::TempDir,
}

impl TestEnv {
    pub async fn new(backend: Backend) -> TestEnv {
        let vhost = format!("t-{}", uuid::Uuid::new_v4().simple());
        let mgmt_url = env("BOURSE_TEST_AMQP_MGMT_URL", "http://127.0.0.1:15672").replace("guest:guest@", "");
        let http = reqwest::Client::new();
        http.put(format!("{mgmt_url}/api/vhosts/{vhost}"))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("create a RabbitMQ vhost (is RabbitMQ with the management plugin running? see scripts/test.sh)");
        http.put(format!("{mgmt_url}/api/permissions/{vhost}/guest"))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("grant guest the vhost");
        let base = env("BOURSE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
        let base = base.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(base);
        TestEnv {
            backend,
            amqp_url: format!("{base}/{vhost}"),
            vhost,
            mgmt_url,
            pg_databases: Vec::new(),
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A fresh, empty database of this test's back end.
    pub fn database(&mut self, name: &str) -> DatabaseConfig {
        let url = match self.backend {
            Backend::Sqlite => self.tmp.path().join(format!("{name}.db")).display().to_string(),
            Backend::Postgres => {
                let admin = std::env::var("BOURSE_TEST_PG_URL")
                    .expect("BOURSE_TEST_PG_URL must point at a PostgreSQL server (scripts/test.sh starts one)");
                let db = format!("{name}_{}", uuid::Uuid::new_v4().simple()).replace('-', "_");
                let mut conn = diesel::PgConnection::establish(&admin).expect("connect to PostgreSQL");
                diesel::sql_query(format!("CREATE DATABASE {db}")).execute(&mut conn).expect("create database");
                self.pg_databases.push(db.clone());
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
                format!("{base}/{db}")
            }
        };
        DatabaseConfig { url, pool_size: 8 }
    }

    /// A migrated database and the messaging wiring of one "service".
    pub async fn bus(&mut self, producer: &str, messaging: &MessagingConfig) -> Bus {
        let db = Db::connect(&self.database(producer)).expect("open database");
        db.migrate(&[&bourse_common::db::MESSAGING_MIGRATIONS, &TEST_MIGRATIONS]).await.expect("migrate");
        Bus {
            producer: producer.to_string(),
            db,
            amqp_url: self.amqp_url.clone(),
            config: messaging.clone(),
            faults: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// Removes the vhost and the PostgreSQL databases.
    pub async fn cleanup(self) {
        let _ = reqwest::Client::new()
            .delete(format!("{}/api/vhosts/{}", self.mgmt_url, self.vhost))
            .basic_auth("guest", Some("guest"))
            .send()
            .await;
        if let Ok(admin) = std::env::var("BOURSE_TEST_PG_URL")
            && let Ok(mut conn) = diesel::PgConnection::establish(&admin)
        {
            for db in &self.pg_databases {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut conn);
            }
        }
    }
}

/// Messaging settings that make tests quick: short retry tiers, small batches.
pub fn fast_messaging() -> MessagingConfig {
    MessagingConfig {
        retry_delays_ms: vec![50, 150],
        max_attempts: 3,
        consumer_batch: 16,
        relay_batch: 25,
        relay_poll_ms: 50,
        ..MessagingConfig::default()
    }
}

/// Writes `count` messages through the outbox, `per_tx` per transaction,
/// spread round-robin over `sagas` correlation ids (`saga-0`, `saga-1`, ...).
pub async fn produce(bus: &Bus, count: i64, per_tx: i64, sagas: i64) {
    let mut seq = 0;
    while seq < count {
        let start = seq;
        let end = (seq + per_tx).min(count);
        let producer = bus.producer.clone();
        bus.db
            .write(move |c| {
                let mut out = Emitter::new(&producer);
                for s in start..end {
                    out.send(&format!("saga-{}", s % sagas), &Happened { seq: s, poison: false });
                }
                out.flush(c).map_err(bourse_common::db::DbError::from)
            })
            .await
            .expect("write outbox");
        seq = end;
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `bus`'s component `name` reports its broker session up.
pub async fn until_up(bus: &Bus, name: &str) {
    let health = bus.metrics.component(name);
    eventually(name, Duration::from_secs(20), || async { health.is_up().then_some(()) }).await;
}

/// Waits until `want` effects exist, then a little longer so that a late duplicate would show.
pub async fn settle_effects(db: &Db, want: usize, timeout: Duration) -> Vec<Effect> {
    eventually("all effects", timeout, || async { (effects_of(db).await.len() >= want).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    effects_of(db).await
}

/// Asserts exactly one effect per message id, and `want` in all.
pub fn assert_exactly_once(effects: &[Effect], want: usize) {
    let mut ids: Vec<&str> = effects.iter().map(|e| e.message_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), effects.len(), "a message was applied twice");
    assert_eq!(effects.len(), want, "a message was lost");
    let mut seqs: Vec<i64> = effects.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..want as i64).collect::<Vec<_>>());
}

/// Generates a `#[tokio::test]` per back end for `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
        mod $name {
            use bourse_common::db::Backend;
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}
