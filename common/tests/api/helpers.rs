//! Test kit: an isolated broker vhost and fresh databases per test, a test
//! message, a handler whose effect is a row per application, and waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bourse_common::bus::Bus;
use bourse_common::config::MessagingConfig;
use bourse_common::db::{Db, MigrationSet};
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Handler, HandlerError};
use bourse_common::messages::{Kind, Message};
use bourse_common::outbox::Emitter;
pub use bourse_common::testkit::{TestEnv, eventually};
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
    fn handle(
        &self,
        conn: &mut bourse_common::db::DbConnection,
        message: &Envelope,
        _out: &mut Emitter,
    ) -> Result<(), HandlerError> {
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
    db.read(|c| {
        effects::table.order(effects::id.asc()).load::<Effect>(c).map_err(bourse_common::db::DbError::from)
    })
    .await
    .expect("read effects")
}

/// A migrated database and the messaging wiring of one "service".
pub async fn bus(env: &mut TestEnv, producer: &str, messaging: &MessagingConfig) -> Bus {
    let db = Db::connect(&env.database(producer)).expect("open database");
    db.migrate(&[&bourse_common::db::MESSAGING_MIGRATIONS, &TEST_MIGRATIONS]).await.expect("migrate");
    Bus {
        producer: producer.to_string(),
        db,
        amqp_url: env.amqp_url.clone(),
        config: messaging.clone(),
        faults: Arc::default(),
        metrics: Arc::default(),
    }
}

/// `n` instances of one "service" sharing one migrated database, each with its
/// own connection pool, metrics and faults: as if `n` processes ran it.
pub async fn instances(env: &mut TestEnv, producer: &str, messaging: &MessagingConfig, n: usize) -> Vec<Bus> {
    let config = env.database(producer);
    let mut buses = Vec::new();
    for _ in 0..n {
        let db = Db::connect(&config).expect("open database");
        db.migrate(&[&bourse_common::db::MESSAGING_MIGRATIONS, &TEST_MIGRATIONS]).await.expect("migrate");
        buses.push(Bus {
            producer: producer.to_string(),
            db,
            amqp_url: env.amqp_url.clone(),
            config: messaging.clone(),
            faults: Arc::default(),
            metrics: Arc::default(),
        });
    }
    buses
}

/// Messaging settings that make tests quick: short retry tiers, small batches,
/// a short relay lease, parked commands tried again often.
pub fn fast_messaging() -> MessagingConfig {
    MessagingConfig {
        retry_delays_ms: vec![50, 150],
        max_attempts: 3,
        consumer_batch: 16,
        relay_batch: 25,
        relay_poll_ms: 50,
        relay_lease_ms: 2_000,
        parked_retry_ms: 200,
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
