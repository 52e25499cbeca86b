//! The HTTP port (`--metrics-listen`): `GET /metrics`, `GET /healthz`, `GET /readyz`,
//! served by axum's router over hyper's HTTP/1.
//!
//! Connections come through the same accept pipeline as the gRPC ports
//! (`service::connections`): a cap on connections held ([`DEFAULT_MAX_CONNECTIONS`];
//! over it, closed at once), backoff on accept errors instead of a spin, and a
//! deadline for the request's headers (hyper's header-read timeout too). One request
//! per connection (no keep-alive: a scrape a second costs nothing to reconnect, and no
//! idle connection is held), so a client that never finishes a request (slowloris)
//! holds its connection for at most [`DEFAULT_HEADER_TIMEOUT`], and one that reads
//! its response slowly for at most [`MAX_CONNECTION_AGE`].
//! The port speaks plain HTTP: off loopback it needs `--insecure` (config.rs).
//!
//! - [`health`]: liveness and readiness.
//! - [`router`]: the routes. The ring dashboard (`GET /` and the JSON endpoints it
//!   reads) is another module, merged into the router at the place marked there.

pub mod health;

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use clockwise_cluster::driver::RaftStatus;
use futures::StreamExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::Connected as _;
use tower::ServiceExt as _;

use crate::service::connections::{self, Handshakes, PortCounters, PortLimits};
use crate::service::metrics::Metrics;

/// HTTP-port connections held at once (`--http-max-connections`): scrapers, probes
/// and dashboards, a handful each.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send its request's headers
/// (`--http-header-timeout-ms`).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is asked to close at this age (and closed a header timeout later), so
/// no client holds one forever by reading its response slowly.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// What the handlers read: nothing here asks the raft driver or takes the engine lock.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// The status the raft driver publishes (leader, indexes).
    pub status: watch::Receiver<RaftStatus>,
    /// True from the start of a shutdown on.
    pub draining: watch::Receiver<bool>,
}

/// Every route of the HTTP port: these, and the ring dashboard's (`GET /`, its assets
/// and the JSON it reads: [`crate::dashboard::router`]).
pub fn router(state: HttpState, dashboard: Router) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .with_state(state)
        .merge(dashboard)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "served here: GET /metrics, /healthz, /readyz\n",
    )
}

/// The limits of the HTTP port's connections.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// HTTPS for the port (the client port's certificate), or plain HTTP on loopback.
pub type HttpTls = Option<Arc<rustls::ServerConfig>>;

/// Serves `router` on `listener` until the task is dropped (aborted).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: HttpTls,
    counters: Arc<PortCounters>,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let handshakes = Arc::new(Handshakes::default());
    let port = PortLimits {
        max_connections: limits.max_connections,
        handshake_timeout: limits.header_timeout,
    };
    let mut incoming = pin!(connections::incoming(
        "http",
        listener,
        port,
        handshakes.clone(),
        counters
    ));
    while let Some(Ok(stream)) = incoming.next().await {
        let remote = stream.connect_info().remote_addr();
        let (router, handshakes, tls) = (router.clone(), handshakes.clone(), tls.clone());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(stream, remote, router, handshakes, header_timeout).await;
            };
            // The pipeline's first-request deadline bounds the handshake too (its reads
            // fail once it passes).
            if let Ok(stream) = tls.accept(stream).await {
                serve_connection(stream, remote, router, handshakes, header_timeout).await;
            }
        });
    }
}

async fn serve_connection(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    remote: Option<SocketAddr>,
    router: Router,
    handshakes: Arc<Handshakes>,
    header_timeout: Duration,
) {
    let service = hyper::service::service_fn(move |request| {
        // Its headers arrived: the pipeline's deadline no longer applies (it would
        // fail the reads hyper makes while the response is written).
        if let Some(remote) = remote {
            handshakes.request_seen(remote);
        }
        router.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(false);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    if tokio::time::timeout(MAX_CONNECTION_AGE, connection.as_mut())
        .await
        .is_err()
    {
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(header_timeout, connection).await;
    }
}
