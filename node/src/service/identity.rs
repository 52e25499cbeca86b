//! Every reply of the client port says which cluster answered: metadata
//! [`CLUSTER_ID_METADATA`] (also on refusals, and on errors a handler returns), so a
//! client can pin its cluster and refuse a node of another one; a write's reply also
//! says the revision it applied at ([`super::revision`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use clockwise_cluster::{ClusterIdentity, CLUSTER_ID_METADATA};

/// Adds the node's cluster id (once known) to every response's headers.
#[derive(Clone, Debug)]
pub struct IdentityLayer(pub ClusterIdentity);

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = IdentityService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        IdentityService {
            inner,
            identity: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct IdentityService<S> {
    inner: S,
    identity: ClusterIdentity,
}

impl<S, B, RB> tower::Service<http::Request<B>> for IdentityService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        let identity = self.identity.clone();
        Box::pin(async move {
            let (response, revision) = super::revision::scope(future).await;
            let mut response = response?;
            if revision > 0 {
                response
                    .headers_mut()
                    .insert(super::revision::REVISION_METADATA, revision.into());
            }
            // Read when the answer leaves: a joining node may have learnt it meanwhile.
            if let Some(value) = identity
                .get()
                .and_then(|id| http::HeaderValue::from_str(&id).ok())
            {
                response.headers_mut().insert(CLUSTER_ID_METADATA, value);
            }
            Ok(response)
        })
    }
}
