//! A tower layer that answers a call itself, before any handler, when a check refuses
//! it: the one shape behind authentication ([`super::auth`]) and rate limits
//! ([`super::limits`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A check in front of every handler.
pub trait Gate: Clone + Send + Sync + 'static {
    /// `Err(status)`: answer `status` without calling the service.
    fn check<B>(&self, request: &http::Request<B>) -> Result<(), tonic::Status>;
}

#[derive(Clone)]
pub struct GateLayer<G>(pub G);

impl<S, G: Gate> tower::Layer<S> for GateLayer<G> {
    type Service = GateService<S, G>;
    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GateService<S, G> {
    inner: S,
    gate: G,
}

impl<S, G, B, R> tower::Service<http::Request<B>> for GateService<S, G>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    G: Gate,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Err(status) = self.gate.check(&request) {
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(request).await })
    }
}
