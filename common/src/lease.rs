//! The relay's lease: one publisher per database.
//!
//! Several instances of a service share its database; each runs an outbox
//! relay, but only the one holding the lease publishes. The lease is a row of
//! `relay_lease` (holder, expiry). A relay takes it when it is free or has
//! expired, and renews it while it holds it, each time in a short transaction
//! of its own:
//!
//! ```sql
//! UPDATE relay_lease SET holder = :me, expires_at = :now + :ttl
//!  WHERE name = 'outbox' AND (holder = :me OR expires_at < :now)
//! ```
//!
//! `:now` is the database's clock (PostgreSQL's `clock_timestamp()`; SQLite is
//! one file on one machine, so the process clock is the database's), so that
//! instances on machines whose clocks differ agree on when a lease expires
//! (a step of that clock, by more than a term, could let a standby in early).
//!
//! The holder keeps its own deadline on its monotonic clock: the moment
//! *before* it asked for the lease, plus 90 % of the term. The row's expiry is
//! at least a full term after that moment, so a relay whose renewals stopped
//! (the database is unreachable, the process stalled) stops publishing — every
//! publish and confirm of a round is bounded by the deadline — before any other
//! instance can take the lease. A relay that loses the lease while it publishes
//! finds out when it marks the rows sent: that transaction first checks, with a
//! row lock on the lease, that it still holds it ([`still_held`]), and changes
//! nothing otherwise (the new holder publishes those rows again; consumers'
//! inboxes skip what was delivered twice).
//!
//! A clean stop releases the lease (a standby takes over within its poll
//! interval); a crashed holder's lease runs out after its term
//! (`messaging.relay_lease_ms`). An instance on standby is healthy: its relay
//! is connected and ready to take over. `bourse_relay_leader` (0 or 1) says
//! which instance publishes.

use std::time::Duration;

use diesel::prelude::*;
use tokio::time::Instant;

use crate::db::{Db, DbConnection, DbError};
use crate::schema::relay_lease;

/// The lease of the outbox relay (the one row of `relay_lease` so far).
pub const OUTBOX: &str = "outbox";

/// The database's clock, in microseconds since the epoch: one clock for every
/// instance (on SQLite, the one machine's).
pub fn db_now_micros(conn: &mut DbConnection) -> QueryResult<i64> {
    match conn {
        DbConnection::Postgres(c) => diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT",
        ))
        .get_result(c),
        DbConnection::Sqlite(_) => Ok(crate::now_micros()),
    }
}

/// Takes or renews the lease `name` for `holder` (inside the caller's transaction).
fn take(conn: &mut DbConnection, name: &str, holder: &str, term_micros: i64) -> QueryResult<bool> {
    let now = db_now_micros(conn)?;
    let taken = diesel::update(
        relay_lease::table
            .filter(relay_lease::name.eq(name))
            .filter(relay_lease::holder.eq(holder).or(relay_lease::expires_at.lt(now))),
    )
    .set((relay_lease::holder.eq(holder), relay_lease::expires_at.eq(now + term_micros)))
    .execute(conn)?;
    Ok(taken == 1)
}

/// Could `holder` take the lease now (free, expired, or its own)? A read: a
/// standby asks this before it writes.
fn available(conn: &mut DbConnection, name: &str, holder: &str) -> QueryResult<bool> {
    let now = db_now_micros(conn)?;
    let row: Option<(String, i64)> = relay_lease::table
        .filter(relay_lease::name.eq(name))
        .select((relay_lease::holder, relay_lease::expires_at))
        .first(conn)
        .optional()?;
    Ok(row.is_some_and(|(current, expires_at)| current == holder || expires_at < now))
}

/// Inside a transaction: does `holder` still hold the lease `name`? It also
/// locks the lease row until the transaction ends, so that no other instance
/// takes the lease between this check and the commit.
pub fn still_held(conn: &mut DbConnection, name: &str, holder: &str) -> QueryResult<bool> {
    let locked = diesel::update(
        relay_lease::table.filter(relay_lease::name.eq(name)).filter(relay_lease::holder.eq(holder)),
    )
    .set(relay_lease::holder.eq(holder))
    .execute(conn)?;
    Ok(locked == 1)
}

/// One instance's claim on a lease.
#[derive(Debug)]
pub struct Lease {
    name: &'static str,
    holder: String,
    term: Duration,
    /// Until when this instance may act as the holder (its own monotonic clock).
    valid_until: Option<Instant>,
}

impl Lease {
    pub fn new(name: &'static str, holder: String, term: Duration) -> Self {
        Self { name, holder, term: term.max(Duration::from_millis(100)), valid_until: None }
    }

    /// Who this instance is, as written into the lease row.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Until when this instance holds the lease, if it does.
    pub fn deadline(&self) -> Option<Instant> {
        self.valid_until.filter(|until| *until > Instant::now())
    }

    pub fn is_held(&self) -> bool {
        self.deadline().is_some()
    }

    /// Time to ask again: not held, or less than half of the term left.
    pub fn renewal_due(&self) -> bool {
        self.deadline().is_none_or(|until| until - Instant::now() < self.term / 2)
    }

    /// Takes the lease, or renews it. Returns whether this instance holds it.
    pub async fn acquire(&mut self, db: &Db) -> Result<bool, DbError> {
        let started = Instant::now();
        let (name, holder) = (self.name, self.holder.clone());
        let term_micros = i64::try_from(self.term.as_micros()).unwrap_or(i64::MAX / 2);
        let could = self.is_held() || {
            let holder = holder.clone();
            db.read(move |c| available(c, name, &holder).map_err(DbError::from)).await?
        };
        let held =
            could && db.write(move |c| take(c, name, &holder, term_micros).map_err(DbError::from)).await?;
        self.valid_until = held.then(|| started + self.term.mul_f64(0.9));
        Ok(held)
    }

    /// Forgets the lease locally: another instance took it.
    pub fn lost(&mut self) {
        self.valid_until = None;
    }

    /// Gives the lease up (a clean stop), so that a standby takes over at once.
    pub async fn release(&mut self, db: &Db) -> Result<(), DbError> {
        self.valid_until = None;
        let (name, holder) = (self.name, self.holder.clone());
        db.write(move |c| {
            diesel::update(
                relay_lease::table.filter(relay_lease::name.eq(name)).filter(relay_lease::holder.eq(&holder)),
            )
            .set(relay_lease::expires_at.eq(0))
            .execute(c)
            .map_err(DbError::from)
        })
        .await?;
        Ok(())
    }
}
