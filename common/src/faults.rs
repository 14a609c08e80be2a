//! Fault injection points for the crash tests: a relay that dies after the
//! broker confirmed a batch but before the rows are marked sent, a consumer
//! that dies after its transaction committed but before it acknowledged, and
//! one that dies after its handler ran but before the commit (for a handler
//! with an effect outside the database, the window where it is repeated);
//! a chain sender that dies after it stored a signed transaction but before
//! it broadcast it, or after broadcasting before it recorded that; and a bug
//! on purpose, a settlement that credits twice, to prove that the chaos
//! harness sees one; and a bug that fails every message of one queue (each
//! parked, or retried for a transient one), until it is "fixed". Off unless
//! a test arms them; one atomic load each when off.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Faults {
    relay_crash_after_publish: AtomicU64,
    consumer_crash_after_commit: AtomicU64,
    consumer_crash_before_commit: AtomicU64,
    credit_twice: AtomicU64,
    sender_crash_after_signing: AtomicU64,
    sender_crash_after_broadcast: AtomicU64,
    rejecting: std::sync::atomic::AtomicBool,
    rejected_queue: std::sync::Mutex<Option<(String, Failing)>>,
}

/// How the bug armed by [`Faults::reject_messages_in`] or
/// [`Faults::fail_messages_in`] fails a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failing {
    /// As a bug would: parked at once.
    Permanently,
    /// As a dependency hiccup the handler reports would: retried in the tiers.
    Transiently,
}

/// Counts down and fires once, at the `n`-th occurrence.
fn trip(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .map(|previous| previous == 1)
        .unwrap_or(false)
}

impl Faults {
    /// The relay dies after the `n`-th confirmed batch, before marking it sent.
    pub fn crash_relay_after_publish(&self, n: u64) {
        self.relay_crash_after_publish.store(n, Ordering::SeqCst);
    }

    /// A consumer dies after its `n`-th commit, before acknowledging.
    pub fn crash_consumer_after_commit(&self, n: u64) {
        self.consumer_crash_after_commit.store(n, Ordering::SeqCst);
    }

    /// A consumer dies after its `n`-th handled transaction, before committing it.
    pub fn crash_consumer_before_commit(&self, n: u64) {
        self.consumer_crash_before_commit.store(n, Ordering::SeqCst);
    }

    /// The `n`-th trade settled credits its buyer twice (a bug, on purpose).
    pub fn credit_twice(&self, n: u64) {
        self.credit_twice.store(n, Ordering::SeqCst);
    }

    /// The chain sender dies after storing its `n`-th signed transaction, before broadcasting it.
    pub fn crash_sender_after_signing(&self, n: u64) {
        self.sender_crash_after_signing.store(n, Ordering::SeqCst);
    }

    /// The chain sender dies after its `n`-th broadcast, before recording it.
    pub fn crash_sender_after_broadcast(&self, n: u64) {
        self.sender_crash_after_broadcast.store(n, Ordering::SeqCst);
    }

    /// For the chain sender: die here, after signing?
    pub fn sender_should_crash_after_signing(&self) -> bool {
        trip(&self.sender_crash_after_signing)
    }

    /// For the chain sender: die here, after broadcasting?
    pub fn sender_should_crash_after_broadcast(&self) -> bool {
        trip(&self.sender_crash_after_broadcast)
    }

    /// For the service that settles trades: credit this one twice?
    pub fn should_credit_twice(&self) -> bool {
        trip(&self.credit_twice)
    }

    /// Every message its consumer of `queue` handles fails as a bug would
    /// (permanently: parked), until called again with `None`.
    pub fn reject_messages_in(&self, queue: Option<&str>) {
        self.arm_failing(queue, Failing::Permanently);
    }

    /// Every message its consumer of `queue` handles fails transiently (sent
    /// to its retry tiers), until called again with `None`.
    pub fn fail_messages_in(&self, queue: Option<&str>) {
        self.arm_failing(queue, Failing::Transiently);
    }

    fn arm_failing(&self, queue: Option<&str>, how: Failing) {
        *self.rejected_queue.lock().unwrap_or_else(|p| p.into_inner()) = queue.map(|q| (q.to_string(), how));
        self.rejecting.store(queue.is_some(), Ordering::SeqCst);
    }

    /// How the bug armed by [`Faults::reject_messages_in`] or
    /// [`Faults::fail_messages_in`] fails the messages of `queue`, if it does.
    pub fn fails(&self, queue: &str) -> Option<Failing> {
        if !self.rejecting.load(Ordering::SeqCst) {
            return None;
        }
        match self.rejected_queue.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some((q, how)) if q == queue => Some(*how),
            _ => None,
        }
    }

    /// A consumer crash armed by [`Faults::crash_consumer_after_commit`] or
    /// [`Faults::crash_consumer_before_commit`] has not happened yet.
    pub fn consumer_crash_pending(&self) -> bool {
        self.consumer_crash_after_commit.load(Ordering::SeqCst) > 0
            || self.consumer_crash_before_commit.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn relay_should_crash(&self) -> bool {
        trip(&self.relay_crash_after_publish)
    }

    pub(crate) fn consumer_should_crash(&self) -> bool {
        trip(&self.consumer_crash_after_commit)
    }

    pub(crate) fn consumer_should_crash_before_commit(&self) -> bool {
        trip(&self.consumer_crash_before_commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_at_the_nth_occurrence() {
        let faults = Faults::default();
        assert!(!faults.relay_should_crash());
        faults.crash_relay_after_publish(3);
        let fired: Vec<bool> = (0..5).map(|_| faults.relay_should_crash()).collect();
        assert_eq!(fired, [false, false, true, false, false]);
    }
}
