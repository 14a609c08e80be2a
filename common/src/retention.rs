//! Retention of the messaging tables, by a background task of every service
//! instance, every `messaging.retention_interval_ms`:
//!
//! - the inbox remembers each message id for `messaging.inbox_retention_hours`
//!   (default 7 days): the window in which a redelivered message is recognised
//!   and skipped. It must be longer than anything can be redelivered after:
//!   the retry tiers (seconds), an outage waited out, the relay publishing a
//!   round again after a crash. A message older than the window — a dead letter
//!   replayed late, an event-log entry republished by hand — may be applied a
//!   second time, so a dead-letter replay refuses it unless forced
//!   ([`deadletter::replay`](crate::deadletter::replay)). The event log keeps
//!   more (`event_log_max_age`, 30 days): what is read again from it is not
//!   deduplicated past the window;
//! - sent outbox rows are kept `messaging.outbox_retention_hours` for
//!   inspection — on this schedule, whether the relay is busy or idle.
//!
//! Both are deleted in batches of `messaging.retention_batch` rows, one short
//! transaction each, so that pruning never holds a lock for long (on SQLite
//! the one write lock); what is left waits for the next batch.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::db::{DbConnection, DbError};

/// The shortest inbox window honoured: anything less would forget ids of
/// messages still being retried.
pub const MIN_INBOX_RETENTION: Duration = Duration::from_secs(3600);

/// Rows removed by one pruning pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub inbox: usize,
    pub outbox: usize,
}

/// Deletes up to `batch` inbox rows received before `cutoff`. Returns how many.
pub fn prune_inbox(conn: &mut DbConnection, cutoff: i64, batch: i64) -> diesel::QueryResult<usize> {
    use diesel::RunQueryDsl;
    use diesel::sql_types::BigInt;
    match conn {
        // `ctid`/`rowid`: the batch is found by the `received_at` index and
        // deleted by physical address, without a second key lookup.
        DbConnection::Postgres(c) => diesel::sql_query(
            "DELETE FROM inbox WHERE ctid = ANY(ARRAY(\
             SELECT ctid FROM inbox WHERE received_at < $1 LIMIT $2))",
        )
        .bind::<BigInt, _>(cutoff)
        .bind::<BigInt, _>(batch)
        .execute(c),
        DbConnection::Sqlite(c) => diesel::sql_query(
            "DELETE FROM inbox WHERE rowid IN (SELECT rowid FROM inbox WHERE received_at < ? LIMIT ?)",
        )
        .bind::<BigInt, _>(cutoff)
        .bind::<BigInt, _>(batch)
        .execute(c),
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Deletes batches with `step` until one comes back short. Returns how many rows.
async fn in_batches(
    bus: &Bus,
    cutoff: i64,
    step: fn(&mut DbConnection, i64, i64) -> diesel::QueryResult<usize>,
) -> Result<usize, DbError> {
    let batch = bus.config.retention_batch.max(1);
    let batch_i64 = i64::try_from(batch).unwrap_or(i64::MAX);
    let mut total = 0;
    loop {
        let deleted = bus.db.write(move |c| step(c, cutoff, batch_i64).map_err(DbError::from)).await?;
        total += deleted;
        if deleted < batch {
            return Ok(total);
        }
        // Let other writers in between batches.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One pruning pass: inbox rows older than the inbox window, sent outbox rows
/// older than their retention.
pub async fn prune(bus: &Bus) -> Result<Pruned, DbError> {
    let now = crate::now_micros();
    let inbox_window = bus.config.inbox_retention().max(MIN_INBOX_RETENTION);
    let cutoff = now - micros(inbox_window);
    let inbox = in_batches(bus, cutoff, prune_inbox).await?;
    // Retry records go with the inbox rows of their time (few: one per failed message).
    bus.db
        .write(move |c| {
            use crate::schema::inbox_retries::dsl as r;
            use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
            diesel::delete(r::inbox_retries.filter(r::retry_at.lt(cutoff))).execute(c).map_err(DbError::from)
        })
        .await?;
    let outbox =
        in_batches(bus, now - micros(bus.config.outbox_retention()), crate::outbox::purge_sent).await?;
    bus.metrics.add("bourse_inbox_pruned_total", &[], inbox as u64);
    bus.metrics.add("bourse_outbox_purged_total", &[], outbox as u64);
    if inbox + outbox > 0 {
        tracing::info!(producer = %bus.producer, inbox, outbox, "pruned old messaging rows");
    }
    Ok(Pruned { inbox, outbox })
}

/// Prunes every `retention_interval_ms` until `shutdown`. A failed pass (the
/// database is down) is logged and tried again at the next interval.
pub async fn run(bus: Bus, shutdown: CancellationToken) {
    if bus.config.inbox_retention() < MIN_INBOX_RETENTION {
        tracing::warn!(
            configured_hours = bus.config.inbox_retention_hours,
            "messaging.inbox_retention_hours is below the minimum of one hour: one hour is kept"
        );
    }
    let interval = Duration::from_millis(bus.config.retention_interval_ms.max(10));
    loop {
        if let Err(e) = prune(&bus).await {
            tracing::warn!(producer = %bus.producer, error = %e, "pruning the inbox and outbox failed; trying again later");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
