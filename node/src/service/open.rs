//! Caps on the services anyone may call: health and reflection need no token and are
//! never rate limited ([`super::auth`], [`super::limits`]), so their long-lived streams
//! are bounded per node instead. A call beyond a cap gets `RESOURCE_EXHAUSTED`; a
//! stream holds its place until its response body ends (or its connection does).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;

/// `Health.Watch` streams open at once on a node.
pub const MAX_HEALTH_WATCHES: usize = 64;
/// Reflection streams (v1 and v1alpha together) open at once on a node.
pub const MAX_REFLECTION_STREAMS: usize = 16;

/// One capped family of calls.
#[derive(Debug, Clone)]
struct Cap {
    /// The calls' path prefix.
    prefix: &'static str,
    what: &'static str,
    max: usize,
    places: Arc<Semaphore>,
}

impl Cap {
    fn new(prefix: &'static str, what: &'static str, max: usize) -> Cap {
        Cap {
            prefix,
            what,
            max,
            places: Arc::new(Semaphore::new(max)),
        }
    }
}

/// The caps on the client port's open services.
#[derive(Debug, Clone)]
pub struct OpenServicesLayer {
    caps: Arc<[Cap]>,
}

impl Default for OpenServicesLayer {
    fn default() -> Self {
        OpenServicesLayer {
            caps: Arc::new([
                Cap::new(
                    "/grpc.health.v1.Health/Watch",
                    "Health.Watch streams",
                    MAX_HEALTH_WATCHES,
                ),
                Cap::new(
                    "/grpc.reflection.",
                    "reflection streams",
                    MAX_REFLECTION_STREAMS,
                ),
            ]),
        }
    }
}

impl<S> tower::Layer<S> for OpenServicesLayer {
    type Service = OpenServices<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OpenServices {
            inner,
            caps: self.caps.clone(),
        }
    }
}

#[derive(Clone)]
pub struct OpenServices<S> {
    inner: S,
    caps: Arc<[Cap]>,
}

impl<S, B> tower::Service<http::Request<B>> for OpenServices<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let cap = self.caps.iter().find(|cap| path.starts_with(cap.prefix));
        let permit = match cap.map(|cap| (cap, cap.places.clone().try_acquire_owned())) {
            None => None,
            Some((_, Ok(permit))) => Some(permit),
            Some((cap, Err(_))) => {
                let status = tonic::Status::resource_exhausted(format!(
                    "at most {} {} at once on this node",
                    cap.max, cap.what
                ));
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(match permit {
                Some(permit) => response.map(|body| {
                    Body::new(HeldBody {
                        body,
                        _permit: permit,
                    })
                }),
                None => response,
            })
        })
    }
}

/// A response body that holds its cap's place until it ends or is dropped.
struct HeldBody {
    body: Body,
    /// Held, never read: dropping it frees the place.
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for HeldBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer as _, Service as _};

    use super::*;

    /// Answers every call with an empty, unfinished body (a stream that stays open).
    #[derive(Clone)]
    struct Streams;

    impl tower::Service<http::Request<()>> for Streams {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(Body::new(Unfinished))))
        }
    }

    /// A body that never ends.
    struct Unfinished;

    impl http_body::Body for Unfinished {
        type Data = <Body as http_body::Body>::Data;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Infallible>>> {
            Poll::Pending
        }
    }

    fn status_of(response: &http::Response<Body>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    async fn call(service: &mut OpenServices<Streams>, path: &str) -> http::Response<Body> {
        let request = http::Request::builder().uri(path).body(()).unwrap();
        service.call(request).await.unwrap()
    }

    #[tokio::test]
    async fn reflection_streams_beyond_the_cap_are_refused_until_one_ends() {
        let mut service = OpenServicesLayer::default().layer(Streams);
        let path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        let mut open = Vec::new();
        for _ in 0..MAX_REFLECTION_STREAMS {
            let response = call(&mut service, path).await;
            assert_eq!(status_of(&response), None);
            open.push(response);
        }
        let refused = call(&mut service, path).await;
        // 8: RESOURCE_EXHAUSTED.
        assert_eq!(status_of(&refused), Some("8"));
        // Other calls are not counted.
        let check = call(&mut service, "/grpc.health.v1.Health/Check").await;
        assert_eq!(status_of(&check), None);
        drop(open.pop());
        let again = call(&mut service, path).await;
        assert_eq!(status_of(&again), None);
    }
}
