//! W3C trace context (`traceparent`) across every hop of a saga.
//!
//! The gateway starts a trace for each request (or continues the client's
//! `traceparent`) and passes it on to the service it forwards to; every
//! service handles a request or a message in a span of its own (a new span id,
//! the same trace id, its parent the caller's span) and stamps that span as
//! the `traceparent` of every message it writes to its outbox. The relay sends
//! it as the message's AMQP header `traceparent`; the consumer continues from
//! it. So one order's spans link gateway -> order-service -> payment-service
//! -> matching-service -> ... in one trace, each span a `tracing` span
//! (`request` or `handle`) with the fields `trace_id`, `span_id`, `parent_id`
//! and `service`, in the logs (JSON with `BOURSE_LOG_FORMAT=json`) or for any
//! `tracing` layer that exports them.
//!
//! Where code runs on the database's blocking pool ([`crate::db::Db`]), the
//! context of the task that called it goes along ([`current`] answers there too).

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

/// The AMQP header and HTTP header that carry it.
pub const HEADER: &str = "traceparent";

/// A position in a trace: the trace, and the span that is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace (a request that came with none).
    pub fn root() -> Self {
        Self { trace_id: nonzero_u128(), span_id: nonzero_u64(), sampled: true }
    }

    /// A span of the same trace under this one.
    pub fn child(&self) -> Self {
        Self { span_id: nonzero_u64(), ..*self }
    }

    /// The span that handles a request or message carrying `traceparent`: its
    /// child, or a new trace when there is none (or it does not parse); and the
    /// parent's span id for the span field `parent_id` (empty without one).
    pub fn continuing(traceparent: Option<&str>) -> (Self, String) {
        match traceparent.and_then(|t| t.parse::<Self>().ok()) {
            Some(parent) => (parent.child(), parent.span_hex()),
            None => (Self::root(), String::new()),
        }
    }

    /// The trace id as the span field `trace_id` shows it.
    pub fn trace_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id as the span fields `span_id` and `parent_id` show it.
    pub fn span_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

fn nonzero_u128() -> u128 {
    uuid::Uuid::new_v4().as_u128().max(1)
}

fn nonzero_u64() -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64).max(1)
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }
}

/// A `traceparent` that is not version 00 with a 32- and a 16-digit lowercase
/// hex id (neither all zeros) and two flag digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent")]
pub struct InvalidTraceParent;

impl FromStr for TraceContext {
    type Err = InvalidTraceParent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        fn hex(part: &str, len: usize) -> Result<&str, InvalidTraceParent> {
            let digits = part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            (part.len() == len && digits).then_some(part).ok_or(InvalidTraceParent)
        }
        let mut parts = s.trim().split('-');
        let (Some(version), Some(trace), Some(span), Some(flags), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidTraceParent);
        };
        hex(version, 2).and_then(|v| (v == "00").then_some(v).ok_or(InvalidTraceParent))?;
        let trace_id = u128::from_str_radix(hex(trace, 32)?, 16).map_err(|_| InvalidTraceParent)?;
        let span_id = u64::from_str_radix(hex(span, 16)?, 16).map_err(|_| InvalidTraceParent)?;
        let flags = u8::from_str_radix(hex(flags, 2)?, 16).map_err(|_| InvalidTraceParent)?;
        if trace_id == 0 || span_id == 0 {
            return Err(InvalidTraceParent);
        }
        Ok(Self { trace_id, span_id, sampled: flags & 1 == 1 })
    }
}

tokio::task_local! {
    static TASK: TraceContext;
}

thread_local! {
    static THREAD: Cell<Option<TraceContext>> = const { Cell::new(None) };
}

/// The context of the request or message being handled here, if any.
pub fn current() -> Option<TraceContext> {
    TASK.try_with(|c| *c).ok().or_else(|| THREAD.with(Cell::get))
}

/// Runs `future` with `context` current.
pub async fn scope<F: std::future::Future>(context: TraceContext, future: F) -> F::Output {
    TASK.scope(context, future).await
}

/// Runs `f` (on a blocking thread) with `context` current.
pub fn on_thread<T>(context: Option<TraceContext>, f: impl FnOnce() -> T) -> T {
    let before = THREAD.with(|c| c.replace(context));
    let out = f();
    THREAD.with(|c| c.set(before));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_bad_ones_are_refused() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context: TraceContext = text.parse().unwrap();
        assert_eq!(context.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(context.span_id, 0x00f067aa0ba902b7);
        assert!(context.sampled);
        assert_eq!(context.to_string(), text);
        let child = context.child();
        assert_eq!(child.trace_id, context.trace_id);
        assert_ne!(child.span_id, context.span_id);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
        ] {
            assert_eq!(bad.parse::<TraceContext>(), Err(InvalidTraceParent), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_current_context_follows_the_task_and_the_blocking_thread() {
        assert_eq!(current(), None);
        let context = TraceContext::root();
        scope(context, async {
            assert_eq!(current(), Some(context));
            let inherited = current();
            let seen = tokio::task::spawn_blocking(move || on_thread(inherited, current)).await.unwrap();
            assert_eq!(seen, Some(context));
        })
        .await;
        assert_eq!(current(), None);
    }
}
