//! How long a saga's trace takes in a large event log: fills the log's index
//! ([`logindex`], the gateway's table) with 1,000,000 messages (125,000
//! sagas of eight messages, interleaved as a busy exchange logs them), then
//! reads 1,000 random sagas as `GET /api/admin/trace/{id}` does, and prints
//! the latencies. SQLite by default; PostgreSQL too when `BOURSE_TEST_PG_URL`
//! names a server (a fresh database is created on it).
//!
//!     cargo bench -p gateway --bench trace
//!     BOURSE_TEST_PG_URL=postgres://... cargo bench -p gateway --bench trace

use std::time::{Duration, Instant};

use bourse_common::config::DatabaseConfig;
use bourse_common::db::{Db, DbError};
use bourse_common::envelope::Envelope;
use bourse_common::eventlog::LoggedMessage;
use bourse_common::logindex;
use uuid::Uuid;

const MESSAGES: u64 = 1_000_000;
const PER_SAGA: u64 = 8;
const QUERIES: usize = 1_000;
/// Written per transaction, as the indexer writes a batch.
const BATCH: u64 = 1_000;

fn saga_id(n: u64) -> String {
    Uuid::from_u64_pair(0x0190_0000_0000_7000, n).to_string()
}

/// Message `offset` of the log: sagas interleaved, each message caused by the previous of its saga.
fn message(offset: u64) -> LoggedMessage {
    let sagas = MESSAGES / PER_SAGA;
    let (saga, step) = (offset % sagas, offset / sagas);
    let id = |step: u64| Uuid::from_u64_pair(saga, step);
    let envelope = Envelope {
        message_id: id(step),
        message_type: ["payment.reserve-funds", "funds.reserved", "matching.submit-order", "order.updated"]
            [(step % 4) as usize]
            .to_string(),
        version: 1,
        correlation_id: saga_id(saga),
        causation_id: (step > 0).then(|| id(step - 1)),
        occurred_at: chrono::Utc::now(),
        producer: "order-service".into(),
        payload: serde_json::json!({"order_id": saga_id(saga), "status": "open", "quantity": "1.5", "price": "2000"}),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    };
    LoggedMessage {
        offset,
        exchange: "bourse.events".into(),
        routing_key: envelope.message_type.clone(),
        envelope,
    }
}

async fn run(label: &str, url: &str) -> anyhow::Result<()> {
    let db = Db::connect(&DatabaseConfig { url: url.to_string(), pool_size: 4 })?;
    db.migrate(&[&gateway::MIGRATIONS]).await?;
    let started = Instant::now();
    for first in (0..MESSAGES).step_by(BATCH as usize) {
        let batch: Vec<LoggedMessage> = (first..first + BATCH).map(message).collect();
        db.write(move |c| logindex::store(c, &batch).map_err(DbError::from)).await?;
    }
    let filled = started.elapsed();
    let mut latencies = Vec::with_capacity(QUERIES);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..QUERIES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let saga = saga_id(seed % (MESSAGES / PER_SAGA));
        let at = Instant::now();
        let steps = db.read(move |c| logindex::saga(c, &saga).map_err(DbError::from)).await?;
        latencies.push(at.elapsed());
        anyhow::ensure!(steps.len() == PER_SAGA as usize, "a saga of {} messages", steps.len());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!(
        "{label:<10} {MESSAGES} messages indexed in {:.1} s ({:.0}/s); trace of a saga of {PER_SAGA} over {QUERIES} sagas: p50 {}, p99 {}, max {}",
        filled.as_secs_f64(),
        MESSAGES as f64 / filled.as_secs_f64(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0)),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("bourse-trace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = dir.join("gateway.db");
    let result = run("SQLite", &sqlite.to_string_lossy()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    if let Ok(server) = std::env::var("BOURSE_TEST_PG_URL") {
        use diesel::{Connection, RunQueryDsl};
        let name = format!("trace_bench_{}", std::process::id());
        let mut admin = diesel::PgConnection::establish(&server)?;
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let result = run("PostgreSQL", &format!("{base}/{name}")).await;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin)?;
        result?;
    }
    Ok(())
}
