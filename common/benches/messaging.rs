//! Throughput of outbox -> broker -> inbox against raw lapin, in one run on
//! one broker. Needs RabbitMQ with the management plugin (scripts/infra.sh).
//!
//!     cargo bench -p bourse-common --bench messaging            # SQLite
//!     BOURSE_TEST_PG_URL=postgres://... cargo bench -p bourse-common --bench messaging   # and PostgreSQL
//!
//! Raw: one channel publishes N persistent 256-byte messages with publisher
//! confirms (pipelined, a window of 256) into a durable quorum queue while a
//! consumer (prefetch 256) acknowledges them (`multiple` every 64).
//! Outbox: a producer writes N messages into its outbox (100 per transaction),
//! the relay publishes them with confirms, and an inbox consumer applies each
//! in its own database (a row per message) and acknowledges after commit.
//! Both figures are messages per second from the first write to the last
//! message applied.

#![allow(clippy::unwrap_used)] // a test that cannot go on should stop loudly

use std::sync::Arc;
use std::time::{Duration, Instant};

use bourse_common::bus::Bus;
use bourse_common::config::MessagingConfig;
use bourse_common::db::{Backend, Db, DbConnection, DbError, MESSAGING_MIGRATIONS};
use bourse_common::envelope::Envelope;
use bourse_common::inbox::{Consumer, HandlerError};
use bourse_common::messages::{Kind, Message};
use bourse_common::outbox::{Emitter, Relay};
use bourse_common::testkit::TestEnv;
use bourse_common::topology::QueueSpec;
use diesel::ExpressionMethods;
use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

const N: usize = 20_000;

#[derive(Serialize, Deserialize)]
struct Tick {
    seq: usize,
    note: String,
}

impl Message for Tick {
    const TYPE: &'static str = "bench.tick";
    const KIND: Kind = Kind::Event;
}

async fn raw_lapin(amqp_url: &str) -> f64 {
    let conn = bourse_common::amqp::connect(amqp_url, "bench.raw").await.unwrap();
    let publisher = conn.create_channel().await.unwrap();
    publisher.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    publisher
        .queue_declare("bench.raw".into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
        .await
        .unwrap();
    let consumer_ch = conn.create_channel().await.unwrap();
    consumer_ch.basic_qos(256, BasicQosOptions::default()).await.unwrap();
    let mut deliveries = consumer_ch
        .basic_consume("bench.raw".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let body = vec![b'x'; 256];
    let started = Instant::now();
    let consume = tokio::spawn(async move {
        let mut received = 0;
        while received < N {
            let delivery = deliveries.next().await.unwrap().unwrap();
            received += 1;
            if received % 64 == 0 || received == N {
                delivery.acker.ack(BasicAckOptions { multiple: true }).await.unwrap();
            }
        }
    });
    let mut window = Vec::with_capacity(256);
    for _ in 0..N {
        window.push(
            publisher
                .basic_publish(
                    "".into(),
                    "bench.raw".into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap(),
        );
        if window.len() == 256 {
            for confirm in window.drain(..) {
                assert!(confirm.await.unwrap().is_ack());
            }
        }
    }
    for confirm in window.drain(..) {
        assert!(confirm.await.unwrap().is_ack());
    }
    consume.await.unwrap();
    let rate = N as f64 / started.elapsed().as_secs_f64();
    let _ = conn.close(200, "done".into()).await;
    rate
}

diesel::table! {
    bench_effects (message_id) {
        message_id -> Text,
        seq -> BigInt,
    }
}

fn apply_tick(conn: &mut DbConnection, message: &Envelope, _out: &mut Emitter) -> Result<(), HandlerError> {
    use diesel::RunQueryDsl;
    let tick: Tick = message.payload()?;
    let row = (
        bench_effects::message_id.eq(message.message_id.to_string()),
        bench_effects::seq.eq(tick.seq as i64),
    );
    diesel::insert_into(bench_effects::table).values(&row).execute(conn)?;
    Ok(())
}

async fn service_db(env: &mut TestEnv, name: &str) -> Db {
    use diesel::RunQueryDsl;
    let db = Db::connect(&env.database(name)).unwrap();
    db.migrate(&[&MESSAGING_MIGRATIONS]).await.unwrap();
    db.write(|c| {
        diesel::sql_query("CREATE TABLE bench_effects (message_id TEXT PRIMARY KEY, seq BIGINT NOT NULL)")
            .execute(c)
            .map_err(DbError::from)
    })
    .await
    .unwrap();
    db
}

async fn outbox_inbox(env: &mut TestEnv) -> f64 {
    let producer_db = service_db(env, "bench_producer").await;
    let consumer_db = service_db(env, "bench_consumer").await;
    let config = MessagingConfig::default();
    let bus = |db: Db, producer: &str| Bus {
        producer: producer.into(),
        db,
        amqp_url: env.amqp_url.clone(),
        config: config.clone(),
        faults: Arc::default(),
        metrics: Arc::default(),
    };
    let producer = bus(producer_db, "bench-producer");
    let consumer = bus(consumer_db, "bench-consumer");
    let shutdown = CancellationToken::new();
    let spec = QueueSpec::new("bench-consumer.ticks").events(&["bench.tick"]);
    tokio::spawn(Consumer::new(consumer.clone(), spec, Arc::new(apply_tick)).run(shutdown.clone()));
    let up = consumer.metrics.component("consumer:bench-consumer.ticks");
    while !up.is_up() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::spawn(Relay::new(producer.clone()).run(shutdown.clone()));

    let note = "n".repeat(100);
    let started = Instant::now();
    for chunk in 0..N / 100 {
        let note = note.clone();
        producer
            .db
            .write(move |c| {
                let mut out = Emitter::new("bench-producer");
                for seq in chunk * 100..(chunk + 1) * 100 {
                    out.send(&format!("saga-{}", seq % 50), &Tick { seq, note: note.clone() });
                }
                out.flush(c).map_err(DbError::from)
            })
            .await
            .unwrap();
    }
    let written = started.elapsed();
    let mut relayed = None;
    loop {
        if relayed.is_none() && producer.metrics.get("bourse_outbox_published_total", &[]) as usize >= N {
            relayed = Some(started.elapsed());
        }
        let handled =
            consumer.metrics.get("bourse_messages_handled_total", &[("queue", "bench-consumer.ticks")]);
        if handled as usize >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = N as f64 / started.elapsed().as_secs_f64();
    let relayed = relayed.unwrap_or_else(|| started.elapsed());
    println!(
        "    (written after {} ms, relayed after {} ms, applied after {} ms)",
        written.as_millis(),
        relayed.as_millis(),
        started.elapsed().as_millis()
    );
    shutdown.cancel();
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let mut backends = vec![Backend::Sqlite];
    if std::env::var("BOURSE_TEST_PG_URL").is_ok() {
        backends.push(Backend::Postgres);
    }
    println!("messaging throughput, {N} messages per run");
    for backend in backends {
        let mut env = TestEnv::new(backend).await;
        let raw = raw_lapin(&env.amqp_url).await;
        println!("  raw lapin publish-with-confirm + consume:   {raw:>8.0} msg/s");
        let outbox = outbox_inbox(&mut env).await;
        println!(
            "  outbox -> broker -> inbox ({backend:?}):{:>width$.0} msg/s",
            outbox,
            width = 14 - format!("{backend:?}").len() + 8
        );
        println!("  ratio outbox / raw ({backend:?}): {:.2}", outbox / raw);
        env.cleanup().await;
    }
}
