//! Several instances of a service on one database (the relay's lease), outbox
//! order = commit order, commands published before their owner's queue exists
//! (parked, then delivered), and retention (inbox window, outbox purge,
//! dead-letter replay refused past the window).

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use bourse_common::bus::Bus;
use bourse_common::config::MessagingConfig;
use bourse_common::db::{Backend, DbConnection, DbError};
use bourse_common::envelope::Envelope;
use bourse_common::eventlog::{self, StreamOffset};
use bourse_common::inbox::{Consumer, HandlerError};
use bourse_common::messages::{Kind, Message};
use bourse_common::outbox::{self, Emitter, Relay};
use bourse_common::schema::{inbox, outbox as outbox_table};
use bourse_common::topology::{self, QueueSpec};
use bourse_common::{deadletter, retention};
use diesel::prelude::*;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use bourse_common::on_both_backends;

on_both_backends!(
    two_relays_on_one_database_publish_each_row_once_in_order,
    a_standby_relay_takes_over_from_one_that_died,
    publish_order_is_commit_order_within_a_saga,
    a_command_sent_before_its_queue_exists_is_delivered_once_the_queue_appears,
    old_inbox_and_sent_outbox_rows_are_pruned_in_batches_even_under_load,
    replay_of_a_dead_letter_older_than_the_inbox_window_is_refused_unless_forced,
);

type Task = JoinHandle<Result<(), bourse_common::bus::Crashed>>;

fn start_relay(bus: &Bus, shutdown: &CancellationToken) -> Task {
    tokio::spawn(Relay::new(bus.clone()).run(shutdown.clone()))
}

fn start_consumer(bus: &Bus, shutdown: &CancellationToken) -> Task {
    let handler = Arc::new(RecordingHandler { calls: Arc::new(AtomicU32::new(0)) });
    tokio::spawn(Consumer::new(bus.clone(), queue(), handler).run(shutdown.clone()))
}

fn duplicates_skipped(bus: &Bus, queue: &str) -> u64 {
    bus.metrics.get("bourse_messages_duplicate_total", &[("queue", queue)])
}

fn leads(bus: &Bus) -> bool {
    bus.metrics.gauge("bourse_relay_leader", &[]) == Some(1)
}

async fn backlog(bus: &Bus) -> outbox::Backlog {
    bus.db.read(|c| outbox::backlog(c).map_err(DbError::from)).await.unwrap()
}

/// Writes `count` messages, one per transaction, `seq = base + i`, each in
/// the saga `saga-<base>-<i % 3>`: in each saga, seqs grow with commit order.
async fn write_one_by_one(bus: Bus, base: i64, count: i64, pause: Duration) {
    for i in 0..count {
        let producer = bus.producer.clone();
        bus.db
            .write(move |c| {
                let mut out = Emitter::new(&producer);
                out.send(&format!("saga-{base}-{}", i % 3), &Happened { seq: base + i, poison: false });
                out.flush(c).map_err(DbError::from)
            })
            .await
            .unwrap();
        tokio::time::sleep(pause).await;
    }
}

/// Each message applied once (no duplicate even skipped by the inbox when
/// `no_redelivery`), and in each saga in seq order.
fn assert_once_and_in_order(effects: &[Effect], want: usize) {
    let mut ids: Vec<&str> = effects.iter().map(|e| e.message_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), effects.len(), "a message was applied twice");
    assert_eq!(effects.len(), want, "a message was lost");
    let mut sagas: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    for e in effects {
        sagas.entry(&e.correlation_id).or_default().push(e.seq);
    }
    for (saga, seqs) in sagas {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{saga} applied out of order: {seqs:?}");
    }
}

async fn two_relays_on_one_database_publish_each_row_once_in_order(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    // The default term: the hand-over here is a clean one, not a lease running out.
    let messaging = MessagingConfig { relay_lease_ms: 5_000, ..fast_messaging() };
    let producers = instances(&mut env, "producer", &messaging, 2).await;
    let (a, b) = (&producers[0], &producers[1]);
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();
    start_consumer(&consumer, &shutdown);
    until_up(&consumer, "consumer:test-service.happenings").await;

    let stop_a = CancellationToken::new();
    let stop_b = CancellationToken::new();
    let relay_a = start_relay(a, &stop_a);
    let relay_b = start_relay(b, &stop_b);
    until_up(a, "relay").await;
    until_up(b, "relay").await;
    eventually("one leader", Duration::from_secs(10), || async { (leads(a) != leads(b)).then_some(()) })
        .await;

    // Both instances write, two writers each, while both relays run.
    let mut writers: Vec<JoinHandle<()>> = (0..4)
        .map(|w| {
            tokio::spawn(write_one_by_one(
                producers[w % 2].clone(),
                w as i64 * 1_000,
                100,
                Duration::from_millis(3),
            ))
        })
        .collect();
    eventually("a first part applied", Duration::from_secs(30), || async {
        (effects_of(&consumer.db).await.len() >= 100).then_some(())
    })
    .await;
    // Both instances stay ready: the standby's relay is connected; one publishes.
    assert!(a.metrics.component("relay").is_up() && b.metrics.component("relay").is_up());
    eventually("one leader", Duration::from_secs(10), || async { (leads(a) != leads(b)).then_some(()) })
        .await;

    // The leader stops cleanly mid-stream: the standby takes over.
    let (leader, stop_leader, leader_task, standby) =
        if leads(a) { (a, &stop_a, relay_a, b) } else { (b, &stop_b, relay_b, a) };
    stop_leader.cancel();
    leader_task.await.unwrap().unwrap();
    assert!(!leads(leader));
    eventually("the standby took over", Duration::from_secs(10), || async { leads(standby).then_some(()) })
        .await;
    // And the stopped instance comes back as a standby.
    let restarted = Bus { metrics: Arc::default(), ..leader.clone() };
    start_relay(&restarted, &shutdown);
    until_up(&restarted, "relay").await;

    writers.push(tokio::spawn(write_one_by_one(standby.clone(), 9_000, 50, Duration::from_millis(2))));
    for writer in writers {
        writer.await.unwrap();
    }
    let effects = settle_effects(&consumer.db, 450, Duration::from_secs(60)).await;
    assert_once_and_in_order(&effects, 450);
    assert_eq!(duplicates_skipped(&consumer, &queue().name), 0, "a row was published twice");
    let published: u64 = [leader, standby, &restarted]
        .iter()
        .map(|bus| bus.metrics.get("bourse_outbox_published_total", &[]))
        .sum();
    assert_eq!(published, 450, "each row published once");
    assert!(leads(standby) && !leads(&restarted), "the new leader keeps the lease");

    stop_a.cancel();
    stop_b.cancel();
    shutdown.cancel();
    env.cleanup().await;
}

async fn a_standby_relay_takes_over_from_one_that_died(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let producers = instances(&mut env, "producer", &messaging, 2).await;
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();
    start_consumer(&consumer, &shutdown);
    until_up(&consumer, "consumer:test-service.happenings").await;

    let first = start_relay(&producers[0], &shutdown);
    eventually("the first relay leads", Duration::from_secs(10), || async {
        leads(&producers[0]).then_some(())
    })
    .await;
    start_relay(&producers[1], &shutdown);
    until_up(&producers[1], "relay").await;
    assert!(!leads(&producers[1]));

    let writer = tokio::spawn(write_one_by_one(producers[1].clone(), 0, 200, Duration::from_millis(5)));
    eventually("a first part applied", Duration::from_secs(30), || async {
        (effects_of(&consumer.db).await.len() >= 30).then_some(())
    })
    .await;
    // As if its process died: no clean release; the lease runs out.
    first.abort();
    let died = Instant::now();
    eventually("the standby took over", Duration::from_secs(10), || async {
        leads(&producers[1]).then_some(())
    })
    .await;
    assert!(
        died.elapsed() < Duration::from_secs(5),
        "taken over within the lease term: {:?}",
        died.elapsed()
    );
    writer.await.unwrap();
    let effects = settle_effects(&consumer.db, 200, Duration::from_secs(60)).await;
    assert_once_and_in_order(&effects, 200);

    shutdown.cancel();
    env.cleanup().await;
}

/// Writes one message of `saga` in a transaction that stays open `hold` after
/// its flush (and says when it flushed on `flushed`). Returns when the
/// transaction's last statement ran (just before its commit).
async fn write_and_hold(
    bus: &Bus,
    saga: &'static str,
    seq: i64,
    hold: Duration,
    flushed: Option<tokio::sync::oneshot::Sender<()>>,
) -> Instant {
    let producer = bus.producer.clone();
    bus.db
        .write(move |c| {
            let mut out = Emitter::new(&producer);
            out.send(saga, &Happened { seq, poison: false });
            out.flush(c)?;
            if let Some(flushed) = flushed {
                let _ = flushed.send(());
            }
            std::thread::sleep(hold);
            Ok::<_, DbError>(Instant::now())
        })
        .await
        .unwrap()
}

async fn publish_order_is_commit_order_within_a_saga(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let producer = bus(&mut env, "producer", &messaging).await;
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();

    // The first transaction takes its id for saga S, then stays open; the second
    // one, for the same saga, starts meanwhile and would commit first. A third
    // one, of another saga, must not wait for either (PostgreSQL; SQLite has
    // one writer at a time anyway).
    let (flushed, first_flushed) = tokio::sync::oneshot::channel();
    let first = {
        let producer = producer.clone();
        tokio::spawn(async move {
            write_and_hold(&producer, "saga-S", 1, Duration::from_millis(1_000), Some(flushed)).await
        })
    };
    first_flushed.await.unwrap();
    let second = {
        let producer = producer.clone();
        tokio::spawn(async move { write_and_hold(&producer, "saga-S", 2, Duration::ZERO, None).await })
    };
    let other = {
        let producer = producer.clone();
        tokio::spawn(async move { write_and_hold(&producer, "saga-T", 3, Duration::ZERO, None).await })
    };
    let (first, second, other) = (first.await.unwrap(), second.await.unwrap(), other.await.unwrap());
    if backend == Backend::Postgres {
        assert!(other < first, "a transaction of another saga waited for saga S");
    }
    // Commit order of saga S: the consumer must see this order.
    let commit_order: Vec<i64> = if first < second { vec![1, 2] } else { vec![2, 1] };
    assert_eq!(commit_order, [1, 2], "the second transaction of saga S waited for the first one's commit");

    // Published only now, with both committed: by id.
    start_consumer(&consumer, &shutdown);
    until_up(&consumer, "consumer:test-service.happenings").await;
    start_relay(&producer, &shutdown);
    let effects = settle_effects(&consumer.db, 3, Duration::from_secs(30)).await;
    let saga_s: Vec<i64> = effects.iter().filter(|e| e.correlation_id == "saga-S").map(|e| e.seq).collect();
    assert_eq!(saga_s, commit_order);

    shutdown.cancel();
    env.cleanup().await;
}

/// A command the tests send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct DoIt {
    seq: i64,
}

impl Message for DoIt {
    const TYPE: &'static str = "test.do-it";
    const KIND: Kind = Kind::Command;
}

const OWNER_QUEUE: &str = "test-owner.commands";

/// The owner of `test.do-it`: records an effect per application.
fn start_owner(bus: &Bus, shutdown: &CancellationToken) -> Task {
    let handler = |conn: &mut DbConnection, message: &Envelope, _out: &mut Emitter| {
        let command: DoIt = message.payload()?;
        diesel::insert_into(effects::table)
            .values((
                effects::message_id.eq(message.message_id.to_string()),
                effects::correlation_id.eq(&message.correlation_id),
                effects::seq.eq(command.seq),
            ))
            .execute(conn)?;
        Ok::<_, HandlerError>(())
    };
    let spec = QueueSpec::new(OWNER_QUEUE).commands(&[DoIt::TYPE]);
    tokio::spawn(Consumer::new(bus.clone(), spec, Arc::new(handler)).run(shutdown.clone()))
}

async fn a_command_sent_before_its_queue_exists_is_delivered_once_the_queue_appears(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let producer = bus(&mut env, "producer", &messaging).await;
    let events = bus(&mut env, "consumer", &messaging).await;
    let owner = bus(&mut env, "owner", &messaging).await;
    let shutdown = CancellationToken::new();
    start_consumer(&events, &shutdown);
    until_up(&events, "consumer:test-service.happenings").await;
    // Earlier versions bound the event log to each command type on
    // `bourse.commands`, which made every command routable: the relay removes that.
    {
        let conn = bourse_common::amqp::connect(&env.amqp_url, "test.legacy").await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        topology::declare_exchanges(&ch, &messaging).await.unwrap();
        ch.queue_bind(
            topology::EVENT_LOG.into(),
            topology::COMMANDS.into(),
            DoIt::TYPE.into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
        let _ = conn.close(200, "bound".into()).await;
    }
    start_relay(&producer, &shutdown);
    until_up(&producer, "relay").await;

    // A command whose owner never started yet, then events behind it.
    let command_id = producer
        .db
        .write(|c| {
            let mut out = Emitter::new("producer");
            let id = out.send("saga-C", &DoIt { seq: 7 }).message_id;
            for seq in 0..5 {
                out.send("saga-C", &Happened { seq, poison: false });
            }
            out.flush(c).map_err(DbError::from)?;
            Ok::<_, DbError>(id)
        })
        .await
        .unwrap();

    // The command comes back and is parked; the events behind it go on.
    let effects = settle_effects(&events.db, 5, Duration::from_secs(30)).await;
    assert_eq!(effects.len(), 5);
    eventually("the command returned twice", Duration::from_secs(30), || async {
        (producer.metrics.get("bourse_outbox_returned_total", &[]) >= 2).then_some(())
    })
    .await;
    let parked = backlog(&producer).await;
    assert_eq!((parked.parked, parked.pending), (1, 0), "{parked:?}");
    let row = producer
        .db
        .read(|c| outbox::by_correlation(c, "saga-C").map_err(DbError::from))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.message_type == DoIt::TYPE)
        .unwrap();
    assert!(row.is_parked() && row.returns >= 1, "{row:?}");

    // Its owner starts: the next retry is routed to its new queue.
    start_owner(&owner, &shutdown);
    let delivered = settle_effects(&owner.db, 1, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].message_id, command_id.to_string());
    assert_eq!(delivered[0].seq, 7);
    eventually("the command marked sent", Duration::from_secs(10), || async {
        let b = backlog(&producer).await;
        (b.parked == 0 && b.pending == 0).then_some(())
    })
    .await;
    assert_eq!(duplicates_skipped(&owner, OWNER_QUEUE), 0);

    // The event log holds the command once (on its first publish), as sent on `bourse.commands`.
    let logged =
        eventlog::read(&env.amqp_url, StreamOffset::First, 1_000, Duration::from_secs(2)).await.unwrap();
    let copies: Vec<_> = logged.iter().filter(|m| m.envelope.message_id == command_id).collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].exchange, topology::COMMANDS);
    assert_eq!(copies[0].routing_key, DoIt::TYPE);

    shutdown.cancel();
    env.cleanup().await;
}

async fn count_inbox(bus: &Bus) -> i64 {
    bus.db.read(|c| inbox::table.count().get_result::<i64>(c).map_err(DbError::from)).await.unwrap()
}

async fn count_sent(bus: &Bus) -> i64 {
    bus.db
        .read(|c| {
            outbox_table::table
                .filter(outbox_table::sent_at.is_not_null())
                .count()
                .get_result::<i64>(c)
                .map_err(DbError::from)
        })
        .await
        .unwrap()
}

async fn old_inbox_and_sent_outbox_rows_are_pruned_in_batches_even_under_load(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = MessagingConfig {
        inbox_retention_hours: 1,
        outbox_retention_hours: 1,
        retention_interval_ms: 100,
        retention_batch: 7,
        ..fast_messaging()
    };
    let producer = bus(&mut env, "producer", &messaging).await;
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();
    start_consumer(&consumer, &shutdown);
    until_up(&consumer, "consumer:test-service.happenings").await;
    let stop_relay = CancellationToken::new();
    let relay = start_relay(&producer, &stop_relay);
    produce(&producer, 50, 5, 2).await;
    let effects = settle_effects(&consumer.db, 50, Duration::from_secs(30)).await;
    assert_exactly_once(&effects, 50);
    eventually("all 50 marked sent", Duration::from_secs(10), || async {
        (count_sent(&producer).await == 50).then_some(())
    })
    .await;

    // 30 ids received, and 20 rows sent, two hours ago: past the one-hour windows.
    let old: Vec<String> = effects.iter().take(30).map(|e| e.message_id.clone()).collect();
    let two_hours = 2 * 3600 * 1_000_000_i64;
    consumer
        .db
        .write(move |c| {
            diesel::update(inbox::table.filter(inbox::message_id.eq_any(&old)))
                .set(inbox::received_at.eq(inbox::received_at - two_hours))
                .execute(c)
                .map_err(DbError::from)
        })
        .await
        .unwrap();
    producer
        .db
        .write(move |c| {
            let oldest: Vec<i64> = outbox_table::table
                .select(outbox_table::id)
                .order(outbox_table::id.asc())
                .limit(20)
                .load(c)?;
            diesel::update(outbox_table::table.filter(outbox_table::id.eq_any(oldest)))
                .set(outbox_table::sent_at.eq(outbox_table::sent_at - two_hours))
                .execute(c)
                .map_err(DbError::from)
        })
        .await
        .unwrap();
    // Load: the relay is stopped and a backlog waits.
    stop_relay.cancel();
    relay.await.unwrap().unwrap();
    produce(&producer, 300, 50, 3).await;

    for bus in [&producer, &consumer] {
        tokio::spawn(retention::run(bus.clone(), shutdown.clone()));
    }
    eventually("the old rows pruned", Duration::from_secs(20), || async {
        (count_inbox(&consumer).await == 20 && count_sent(&producer).await == 30).then_some(())
    })
    .await;
    assert_eq!(consumer.metrics.get("bourse_inbox_pruned_total", &[]), 30);
    assert_eq!(producer.metrics.get("bourse_outbox_purged_total", &[]), 20);
    assert_eq!(backlog(&producer).await.pending, 300, "unsent rows are kept");

    // What the inbox still remembers is still skipped when it comes again.
    let kept = effects[40].message_id.clone();
    let remembered = consumer
        .db
        .read(move |c| {
            inbox::table
                .filter(inbox::message_id.eq(kept))
                .count()
                .get_result::<i64>(c)
                .map_err(DbError::from)
        })
        .await
        .unwrap();
    assert_eq!(remembered, 1);

    shutdown.cancel();
    env.cleanup().await;
}

/// Publishes `envelope` straight into the dead-letter queue of `queue`, as if it had been parked there.
async fn park(amqp_url: &str, queue: &str, envelope: &Envelope) {
    let conn = bourse_common::amqp::connect(amqp_url, "test.park").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            topology::dlq_name(queue).as_str().into(),
            BasicPublishOptions::default(),
            envelope.to_json().as_bytes(),
            envelope.amqp_properties(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let _ = conn.close(200, "parked".into()).await;
}

async fn replay_of_a_dead_letter_older_than_the_inbox_window_is_refused_unless_forced(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let messaging = fast_messaging();
    let consumer = bus(&mut env, "consumer", &messaging).await;
    let shutdown = CancellationToken::new();
    start_consumer(&consumer, &shutdown);
    until_up(&consumer, "consumer:test-service.happenings").await;

    let now = chrono::Utc::now();
    let old = Envelope::new(
        "producer",
        "saga-old",
        &Happened { seq: 0, poison: false },
        now - chrono::Duration::days(10),
    );
    let fresh = Envelope::new("producer", "saga-new", &Happened { seq: 1, poison: false }, now);
    park(&env.amqp_url, &queue().name, &old).await;
    park(&env.amqp_url, &queue().name, &fresh).await;

    let policy = deadletter::ReplayPolicy::within(messaging.inbox_retention());
    let outcome = deadletter::replay(&env.amqp_url, &queue().name, 10, policy).await.unwrap();
    assert_eq!(outcome.replayed, 1);
    assert_eq!(outcome.refused.len(), 1);
    let refused = &outcome.refused[0];
    assert_eq!(refused.message_id, old.message_id);
    let why = refused.to_string();
    assert!(why.contains("inbox remembers message ids for 168 h") && why.contains("240 h ago"), "{why}");
    let effects = settle_effects(&consumer.db, 1, Duration::from_secs(30)).await;
    assert_eq!(effects.iter().map(|e| e.seq).collect::<Vec<_>>(), [1], "only the fresh letter was applied");
    let still_parked = deadletter::list(&env.amqp_url, &queue().name, 10).await.unwrap();
    assert_eq!(still_parked.len(), 1);
    assert_eq!(still_parked[0].envelope.as_ref().map(|e| e.message_id), Some(old.message_id));

    // Forced: the operator knows it was never applied.
    let forced = deadletter::replay(&env.amqp_url, &queue().name, 10, deadletter::ReplayPolicy::forced())
        .await
        .unwrap();
    assert_eq!((forced.replayed, forced.refused.len()), (1, 0));
    let effects = settle_effects(&consumer.db, 2, Duration::from_secs(30)).await;
    assert_exactly_once(&effects, 2);
    assert!(deadletter::list(&env.amqp_url, &queue().name, 10).await.unwrap().is_empty());

    shutdown.cancel();
    env.cleanup().await;
}
