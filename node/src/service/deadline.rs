//! Each call's budget: how long a write or a linearizable read may wait for the cluster.
//!
//! A caller's `grpc-timeout` bounds its call; when it passes, tonic drops the handler and
//! the caller learns nothing but that time ran out, which a client's circuit breaker must
//! count against the node. A node that waits for a leader or a quorum should rather give
//! up a little before and say so: UNAVAILABLE marked with
//! [`clockwise_cluster::CLUSTER_UNAVAILABLE_METADATA`], which tells the client that the node
//! answered and the cluster could not. [`DeadlineLayer`] reads the header of every call
//! and keeps the budget for the call's future (a task-local), where
//! [`super::state::NodeState::timeout`] reads it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

tokio::task_local! {
    static BUDGET: Duration;
}

/// The part of a caller's timeout kept for the answer's way back: a tenth, at most this.
const MAX_MARGIN: Duration = Duration::from_millis(100);

/// The current call's budget, at most `limit` (the node's own request timeout).
pub fn budget(limit: Duration) -> Duration {
    BUDGET.try_with(|b| (*b).min(limit)).unwrap_or(limit)
}

/// The budget for a call whose caller allows `timeout`.
fn budget_within(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(MAX_MARGIN))
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Scopes each call's future with its budget (none without a valid `grpc-timeout`).
#[derive(Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

#[derive(Clone)]
pub struct DeadlineService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for DeadlineService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        // The inner service was made ready by `poll_ready`; its future owns what it needs.
        let call = self.inner.call(request);
        match timeout {
            Some(timeout) => Box::pin(BUDGET.scope(budget_within(timeout), call)),
            None => Box::pin(call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_unit_and_bad_ones_do_not() {
        assert_eq!(parse_grpc_timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in [
            "",
            "m",
            "200",
            "123456789m",
            "-1m",
            "1.5S",
            "10x",
            "1 m",
            "٣m",
            "1٣",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_budget_keeps_a_margin_for_the_answer() {
        assert_eq!(
            budget_within(Duration::from_millis(200)),
            Duration::from_millis(180)
        );
        assert_eq!(
            budget_within(Duration::from_secs(5)),
            Duration::from_millis(4900)
        );
        assert_eq!(budget_within(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_call_sees_its_budget_and_nothing_else_does() {
        let limit = Duration::from_secs(5);
        assert_eq!(budget(limit), limit, "outside a call: the node's own limit");
        let inside = BUDGET
            .scope(Duration::from_millis(180), async { budget(limit) })
            .await;
        assert_eq!(inside, Duration::from_millis(180));
        let capped = BUDGET
            .scope(Duration::from_secs(60), async { budget(limit) })
            .await;
        assert_eq!(capped, limit, "never beyond the node's own limit");
    }
}
