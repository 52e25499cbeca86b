//! Each call in a span that names its method and its caller's W3C `traceparent`, so
//! whatever a handler logs can be joined to the caller's trace; one debug line per call
//! (`RUST_LOG=clockwise_node::service::trace=debug`). The `traceparent` is kept in the
//! call's trace context ([`clockwise_cluster::trace_context`]), from which a follower's
//! forward to the leader sends it on: the leader's peer port logs it in turn.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use clockwise_cluster::trace_context::{self, TRACEPARENT_METADATA};
use tracing::Instrument as _;

/// Which calls of a port get their line: all of them, or only those that carry a trace
/// context (the peer port's raft messages are too many to log one by one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calls {
    All,
    Traced,
}

/// Spans each call with its method and `traceparent`; see the module docs.
#[derive(Clone, Copy)]
pub struct TraceLayer(pub Calls);

impl<S> tower::Layer<S> for TraceLayer {
    type Service = TraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            calls: self.0,
        }
    }
}

#[derive(Clone)]
pub struct TraceService<S> {
    inner: S,
    calls: Calls,
}

impl<S, B> tower::Service<http::Request<B>> for TraceService<S>
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
        // A malformed value is dropped, never logged: it is the caller's text.
        let traceparent = request
            .headers()
            .get(TRACEPARENT_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(trace_context::parse)
            .map(str::to_owned);
        if traceparent.is_none() && self.calls == Calls::Traced {
            return Box::pin(self.inner.call(request));
        }
        let method = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "rpc",
            method = %method,
            traceparent = %traceparent.as_deref().unwrap_or(""),
        );
        span.in_scope(|| tracing::debug!("call"));
        let call = self.inner.call(request);
        Box::pin(trace_context::scope(traceparent, call).instrument(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{Layer as _, ServiceExt as _};

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// What the handler saw as the call's trace context.
    async fn seen(header: Option<&str>) -> Option<String> {
        let handler = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(trace_context::current())
        });
        let mut request = http::Request::builder().uri("/a.B/C");
        if let Some(value) = header {
            request = request.header(TRACEPARENT_METADATA, value);
        }
        TraceLayer(Calls::All)
            .layer(handler)
            .oneshot(request.body(()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_valid_traceparent_reaches_the_handler_and_a_malformed_one_does_not() {
        assert_eq!(seen(Some(VALID)).await.as_deref(), Some(VALID));
        assert_eq!(seen(Some("00-zz-\"-01")).await, None);
        assert_eq!(seen(None).await, None);
    }
}
