//! Outbox -> broker -> inbox: exactly once through crashes and a broker
//! restart, order per saga, retries into the dead-letter queue, and the event
//! log read again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bourse_common::bus::Bus;
use bourse_common::db::Backend;
use bourse_common::eventlog::{self, StreamOffset};
use bourse_common::inbox::Consumer;
use bourse_common::outbox::{Emitter, Relay};
use bourse_common::{deadletter, outbox};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use bourse_common::on_both_backends;

on_both_backends!(
    consumer_crash_after_commit_applies_each_message_once,
    relay_crash_after_publish_applies_each_message_once,
    order_is_kept_per_correlation_id,
    failing_message_is_parked_with_its_error_and_the_queue_keeps_flowing,
    event_log_is_read_again_from_the_beginning,
    #[ignore = "restarts RabbitMQ: run alone (scripts/test.sh does)"]
    broker_restart_in_the_middle_of_a_stream_loses_nothing,
);

fn start_consumer(
    bus: &Bus,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), bourse_common::bus::Crashed>> {
    let handler = Arc::new(RecordingHandler { calls: Arc::new(AtomicU32::new(0)) });
    tokio::spawn(Consumer::new(bus.clone(), queue(), handler).run(shutdown.clone()))
}

fn start_relay(
    bus: &Bus,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), bourse_common::bus::Crashed>> {
    tokio::spawn(Relay::new(bus.clone()).run(shutdown.clone()))
}

fn duplicates_skipped(bus: &Bus) -> u64 {
    bus.metrics.get("bourse_messages_duplicate_total", &[("queue", &queue().name)])
}

async fn consumer_crash_after_commit_applies_each_message_once(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let producer = bus(&mut env, "producer", &messaging).await;
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();

    // The first consumer dies after its third commit, before acknowledging.
    consumer.faults.crash_consumer_after_commit(3);
    let crashed = start_consumer(&consumer, &shutdown);
    until_up(&consumer, "consumer:test-service.happenings").await;
    produce(&producer, 300, 10, 4).await;
    start_relay(&producer, &shutdown);

    let outcome = tokio::time::timeout(Duration::from_secs(30), crashed).await.expect("the consumer crashes");
    assert!(outcome.expect("join").is_err(), "the injected crash happened");
    let before_restart = effects_of(&consumer.db).await.len();
    assert!(before_restart > 0 && before_restart < 300, "the crash happened mid-stream: {before_restart}");

    // A new instance takes over: what was committed but not acknowledged comes again and is skipped.
    let restarted = Bus { metrics: Arc::default(), faults: Arc::default(), ..consumer.clone() };
    start_consumer(&restarted, &shutdown);
    let effects = settle_effects(&consumer.db, 300, Duration::from_secs(60)).await;
    assert_exactly_once(&effects, 300);
    assert!(duplicates_skipped(&restarted) > 0, "the unacknowledged batch was redelivered and skipped");

    shutdown.cancel();
    env.cleanup().await;
}

async fn relay_crash_after_publish_applies_each_message_once(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let producer = bus(&mut env, "producer", &messaging).await;
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();

    start_consumer(&consumer, &shutdown);
    until_up(&consumer, "consumer:test-service.happenings").await;
    produce(&producer, 200, 20, 3).await;

    // The relay dies after the broker confirmed its second batch, before marking it sent.
    producer.faults.crash_relay_after_publish(2);
    let crashed = start_relay(&producer, &shutdown);
    let outcome = tokio::time::timeout(Duration::from_secs(30), crashed).await.expect("the relay crashes");
    assert!(outcome.expect("join").is_err(), "the injected crash happened");
    let backlog =
        producer.db.read(|c| outbox::backlog(c).map_err(bourse_common::db::DbError::from)).await.unwrap();
    assert!(backlog.pending > 0, "rows of the confirmed batch are still pending");

    start_relay(&producer, &shutdown);
    let effects = settle_effects(&consumer.db, 200, Duration::from_secs(60)).await;
    assert_exactly_once(&effects, 200);
    assert!(duplicates_skipped(&consumer) > 0, "the republished batch was skipped by the inbox");
    let backlog =
        producer.db.read(|c| outbox::backlog(c).map_err(bourse_common::db::DbError::from)).await.unwrap();
    assert_eq!(backlog.pending, 0);

    shutdown.cancel();
    env.cleanup().await;
}

async fn order_is_kept_per_correlation_id(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let producer = bus(&mut env, "producer", &messaging).await;
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();

    start_consumer(&consumer, &shutdown);
    until_up(&consumer, "consumer:test-service.happenings").await;
    start_relay(&producer, &shutdown);
    // One message per transaction, sagas interleaved, while the relay runs.
    produce(&producer, 250, 1, 5).await;

    let effects = settle_effects(&consumer.db, 250, Duration::from_secs(60)).await;
    assert_exactly_once(&effects, 250);
    for saga in 0..5 {
        let seqs: Vec<i64> =
            effects.iter().filter(|e| e.correlation_id == format!("saga-{saga}")).map(|e| e.seq).collect();
        assert_eq!(seqs.len(), 50);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "saga-{saga} applied out of order: {seqs:?}");
    }

    shutdown.cancel();
    env.cleanup().await;
}

async fn failing_message_is_parked_with_its_error_and_the_queue_keeps_flowing(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let producer = bus(&mut env, "producer", &messaging).await;
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();

    let calls = Arc::new(AtomicU32::new(0));
    let handler = Arc::new(RecordingHandler { calls: calls.clone() });
    tokio::spawn(Consumer::new(consumer.clone(), queue(), handler).run(shutdown.clone()));
    until_up(&consumer, "consumer:test-service.happenings").await;
    start_relay(&producer, &shutdown);

    let poison_id = producer
        .db
        .write(|c| {
            let mut out = Emitter::new("producer");
            out.send("saga-0", &Happened { seq: 0, poison: false });
            let poison = out.send("saga-1", &Happened { seq: 999, poison: true }).message_id;
            for seq in 1..20 {
                out.send("saga-0", &Happened { seq, poison: false });
            }
            out.flush(c).map_err(bourse_common::db::DbError::from)?;
            Ok::<_, bourse_common::db::DbError>(poison)
        })
        .await
        .unwrap();

    let effects = settle_effects(&consumer.db, 20, Duration::from_secs(30)).await;
    assert_exactly_once(&effects, 20);

    let parked =
        eventually("the poison message in the dead-letter queue", Duration::from_secs(30), || async {
            let letters = deadletter::list(&env.amqp_url, &queue().name, 10).await.unwrap();
            (!letters.is_empty()).then_some(letters)
        })
        .await;
    assert_eq!(parked.len(), 1);
    let letter = &parked[0];
    assert_eq!(letter.envelope.as_ref().map(|e| e.message_id), Some(poison_id));
    assert_eq!(letter.attempts, Some(messaging.max_attempts));
    assert!(
        letter.error.as_deref().unwrap_or_default().contains("boom: cannot handle seq 999"),
        "{letter:?}"
    );
    assert_eq!(letter.original_routing_key.as_deref(), Some("test.happened"));
    // Parked for good: no further delivery of the poison message.
    let calls_when_parked = calls.load(Ordering::SeqCst);
    assert!(calls_when_parked as usize >= effects.len() + messaging.max_attempts as usize);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(calls.load(Ordering::SeqCst), calls_when_parked, "the parked message came back");
    assert_eq!(consumer.metrics.get("bourse_messages_dead_lettered_total", &[("queue", &queue().name)]), 1);

    // Listing leaves it parked; replaying gives it a fresh round of attempts (it fails again and returns).
    assert_eq!(deadletter::list(&env.amqp_url, &queue().name, 10).await.unwrap().len(), 1);
    let policy = deadletter::ReplayPolicy::within(messaging.inbox_retention());
    assert_eq!(deadletter::replay(&env.amqp_url, &queue().name, 10, policy).await.unwrap().replayed, 1);
    eventually("the replayed message parked again", Duration::from_secs(30), || async {
        (consumer.metrics.get("bourse_messages_dead_lettered_total", &[("queue", &queue().name)]) == 2)
            .then_some(())
    })
    .await;

    shutdown.cancel();
    env.cleanup().await;
}

async fn event_log_is_read_again_from_the_beginning(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let producer = bus(&mut env, "producer", &messaging).await;
    let shutdown = CancellationToken::new();
    let started = chrono::Utc::now() - chrono::Duration::seconds(5);

    start_relay(&producer, &shutdown);
    until_up(&producer, "relay").await;
    produce(&producer, 30, 7, 2).await;
    eventually("the outbox drained", Duration::from_secs(20), || async {
        let backlog =
            producer.db.read(|c| outbox::backlog(c).map_err(bourse_common::db::DbError::from)).await.ok()?;
        (backlog.pending == 0).then_some(())
    })
    .await;

    let idle = Duration::from_secs(2);
    let all = eventlog::read(&env.amqp_url, StreamOffset::First, 1_000, idle).await.unwrap();
    let seqs: Vec<i64> = all.iter().map(|m| m.envelope.payload::<Happened>().unwrap().seq).collect();
    assert_eq!(seqs, (0..30).collect::<Vec<_>>(), "every event, in order");
    assert!(all.windows(2).all(|w| w[0].offset < w[1].offset));

    // Again, from the offset of the 11th event, and from a point in time.
    let tail = eventlog::read(&env.amqp_url, StreamOffset::At(all[10].offset), 1_000, idle).await.unwrap();
    assert_eq!(tail.first().map(|m| m.envelope.message_id), Some(all[10].envelope.message_id));
    assert_eq!(tail.len(), 20);
    let since = eventlog::read(&env.amqp_url, StreamOffset::Since(started), 1_000, idle).await.unwrap();
    assert_eq!(since.len(), 30);
    let future =
        eventlog::read(&env.amqp_url, StreamOffset::Next, 1_000, Duration::from_millis(500)).await.unwrap();
    assert!(future.is_empty());

    shutdown.cancel();
    env.cleanup().await;
}

async fn broker_restart_in_the_middle_of_a_stream_loses_nothing(backend: Backend) {
    bourse_common::telemetry::init();
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let producer = bus(&mut env, "producer", &messaging).await;
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();

    start_consumer(&consumer, &shutdown);
    until_up(&consumer, "consumer:test-service.happenings").await;
    start_relay(&producer, &shutdown);

    let writer = {
        let producer = producer.clone();
        tokio::spawn(async move {
            for round in 0..60 {
                produce_range(&producer, round * 25, 25).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let restart = tokio::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/rabbitmq-restart.sh"))
        .status()
        .await
        .expect("run scripts/rabbitmq-restart.sh");
    assert!(restart.success(), "RabbitMQ restarted");
    writer.await.unwrap();

    let effects = settle_effects(&consumer.db, 1_500, Duration::from_secs(120)).await;
    assert_exactly_once(&effects, 1_500);
    until_up(&producer, "relay").await;
    until_up(&consumer, "consumer:test-service.happenings").await;

    shutdown.cancel();
    env.cleanup().await;
}

/// Writes messages `start..start + count` in one transaction.
async fn produce_range(bus: &Bus, start: i64, count: i64) {
    let producer = bus.producer.clone();
    bus.db
        .write(move |c| {
            let mut out = Emitter::new(&producer);
            for seq in start..start + count {
                out.send(&format!("saga-{}", seq % 3), &Happened { seq, poison: false });
            }
            out.flush(c).map_err(bourse_common::db::DbError::from)
        })
        .await
        .unwrap();
}
