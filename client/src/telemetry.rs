//! What the SDK reports about what it does.
//!
//! **Metrics**, through the [`metrics`] facade: the application installs the recorder
//! (exporter) it wants (Prometheus, StatsD, …); without one they cost nothing.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | [`BREAKER_STATE`] | gauge | `endpoint` | 0 closed, 1 half-open, 2 open |
//! | [`BREAKER_TRANSITIONS`] | counter | `endpoint`, `from`, `to` | breaker state changes |
//! | [`ATTEMPTS`] | counter | `kind` | attempts made (each retry is one more) |
//! | [`RETRIES_EXHAUSTED`] | counter | `kind` | calls that gave up after retrying |
//! | [`FAILOVERS`] | counter | `kind` | retries sent to another node than the attempt before |
//!
//! `kind` is `write`, `read`, `stale_read` or `admin`; `endpoint` is one of the
//! client's endpoints (`host:port`), so the label sets stay bounded.
//!
//! **Tracing**: each call runs in a `clockwise_call` span (info level) with the request
//! type (`rpc`), `kind`, `ring`, the client id, the write's sequence number (`seq`)
//! and the `traceparent` sent. Every attempt sends a W3C `traceparent` metadata entry:
//! the node that answers logs it in its `rpc` span, and a follower forwarding a write
//! to the leader sends it on. By default each call starts a new trace; run calls inside
//! [`in_trace`] to make them part of the application's own.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::breaker::BreakerState;
use crate::error::Error;
use crate::peers::CallKind;

/// Gauge: a breaker's state (0 closed, 1 half-open, 2 open), by `endpoint`.
pub const BREAKER_STATE: &str = "clockwise_client_breaker_state";
/// Counter: breaker state changes, by `endpoint`, `from` and `to`.
pub const BREAKER_TRANSITIONS: &str = "clockwise_client_breaker_transitions_total";
/// Counter: attempts made, by call `kind`.
pub const ATTEMPTS: &str = "clockwise_client_attempts_total";
/// Counter: calls that gave up after their retries (or their write retry window), by `kind`.
pub const RETRIES_EXHAUSTED: &str = "clockwise_client_retries_exhausted_total";
/// Counter: retries sent to another node than the attempt before, by `kind`.
pub const FAILOVERS: &str = "clockwise_client_failovers_total";

/// The metadata key of W3C Trace Context.
pub(crate) const TRACEPARENT_METADATA: &str = "traceparent";

pub(crate) fn breaker_changed(endpoint: &str, from: BreakerState, to: BreakerState) {
    metrics::counter!(
        BREAKER_TRANSITIONS,
        "endpoint" => endpoint.to_owned(),
        "from" => label(from),
        "to" => label(to),
    )
    .increment(1);
    breaker_state(endpoint, to);
}

pub(crate) fn breaker_state(endpoint: &str, state: BreakerState) {
    let value = match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    metrics::gauge!(BREAKER_STATE, "endpoint" => endpoint.to_owned()).set(value);
}

fn label(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Open => "open",
    }
}

pub(crate) fn kind(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Write => "write",
        CallKind::Read => "read",
        CallKind::StaleRead => "stale_read",
        CallKind::Admin => "admin",
    }
}

pub(crate) fn attempt(call: CallKind) {
    metrics::counter!(ATTEMPTS, "kind" => kind(call)).increment(1);
}

pub(crate) fn failover(call: CallKind) {
    metrics::counter!(FAILOVERS, "kind" => kind(call)).increment(1);
}

/// Counts a call that gave up after retrying.
pub(crate) fn ended(call: CallKind, outcome: &Result<impl Sized, Error>) {
    if matches!(
        outcome,
        Err(Error::RetryExhausted { .. } | Error::RetryWindowExpired { .. })
    ) {
        metrics::counter!(RETRIES_EXHAUSTED, "kind" => kind(call)).increment(1);
    }
}

/// A W3C trace context (`traceparent`): `00-TRACEID-PARENTID-FLAGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: String,
    flags: String,
}

impl TraceParent {
    /// Reads an application's `traceparent` (version `00`: lowercase hex, 32-digit trace
    /// id and 16-digit parent id not all zeros, 2-digit flags).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (setting `traceparent`) when it is not one.
    pub fn parse(value: &str) -> Result<TraceParent, Error> {
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let parts: Vec<&str> = value.split('-').collect();
        let valid = matches!(parts.as_slice(), [version, trace, parent, flags]
            if *version == "00"
                && hex(trace, 32) && trace.bytes().any(|b| b != b'0')
                && hex(parent, 16) && parent.bytes().any(|b| b != b'0')
                && hex(flags, 2));
        if !valid {
            return Err(Error::InvalidConfig {
                setting: "traceparent",
                reason: "not a W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>, lowercase, ids not all zeros",
            });
        }
        Ok(TraceParent {
            trace_id: parts[1].to_owned(),
            flags: parts[3].to_owned(),
        })
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// A new trace (sampled).
    fn new_trace() -> TraceParent {
        TraceParent {
            trace_id: format!("{:016x}{:016x}", random_nonzero(), random_nonzero()),
            flags: "01".to_owned(),
        }
    }

    /// The `traceparent` of one SDK call within this trace: a parent id of its own.
    fn child(&self) -> String {
        format!(
            "00-{}-{:016x}-{}",
            self.trace_id,
            random_nonzero(),
            self.flags
        )
    }
}

tokio::task_local! {
    static TRACE: TraceParent;
}

/// Runs `calls` as part of the application's trace `traceparent`: every SDK call
/// inside sends that trace id (each with a parent id of its own).
pub async fn in_trace<F: Future>(traceparent: TraceParent, calls: F) -> F::Output {
    TRACE.scope(traceparent, calls).await
}

/// The `traceparent` of a call starting now: in the application's trace if it set one,
/// else in a new one.
pub(crate) fn call_traceparent() -> String {
    TRACE
        .try_with(TraceParent::child)
        .unwrap_or_else(|_| TraceParent::new_trace().child())
}

/// Random enough for trace ids (not for secrets): std's per-instance SipHash keys over
/// a counter.
fn random_nonzero() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(traceparent: &str) -> Vec<String> {
        traceparent.split('-').map(str::to_owned).collect()
    }

    #[test]
    fn each_call_gets_a_valid_traceparent_of_a_new_trace() {
        let (a, b) = (call_traceparent(), call_traceparent());
        assert!(TraceParent::parse(&a).is_ok(), "{a}");
        assert!(TraceParent::parse(&b).is_ok(), "{b}");
        assert_ne!(parts(&a)[1], parts(&b)[1], "two calls, two traces");
    }

    #[tokio::test]
    async fn calls_inside_in_trace_keep_the_application_trace() {
        let app = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let parent = TraceParent::parse(app).unwrap();
        let sent = in_trace(parent, async { call_traceparent() }).await;
        let sent = parts(&sent);
        assert_eq!(sent[1], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(
            sent[2], "00f067aa0ba902b7",
            "the SDK call is a span of its own"
        );
        assert_eq!(sent[3], "00", "the application's sampling decision is kept");
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad:?}");
        }
    }
}
