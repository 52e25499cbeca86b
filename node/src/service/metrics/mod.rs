//! Prometheus metrics: per-RPC counts by status code and latency histograms (a tower
//! layer around the gRPC server), plus the sync counters, served as text on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::bulkhead::Bulkheads;
use super::connections::PortCounters;
use super::sync::SyncCounters;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];
/// gRPC status codes 0..=16.
const CODES: usize = 17;

#[derive(Debug, Default)]
struct RpcStats {
    by_code: [AtomicU64; CODES],
    buckets: [AtomicU64; BUCKETS.len()],
    micros_sum: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    rpcs: RwLock<BTreeMap<String, Arc<RpcStats>>>,
    pub sync: Arc<SyncCounters>,
    /// Calls refused by the auth layer: no or unknown token / a role too weak.
    unauthenticated: AtomicU64,
    permission_denied: AtomicU64,
    /// Calls refused by a client's rate limit.
    rate_limited: AtomicU64,
    /// The bulkheads whose in-use and capacity are shown, once the server made them.
    bulkheads: OnceLock<Arc<Bulkheads>>,
    /// ReadIndex rounds started for linearizable reads.
    pub linearizable_reads: Arc<AtomicU64>,
    /// The accept pipelines of the client and peer ports.
    pub client_port: Arc<PortCounters>,
    pub peer_port: Arc<PortCounters>,
    /// Peer calls refused because the caller's certificate did not name the node it
    /// claimed to be (the raft transport counts them).
    peer_identity_refused: Arc<AtomicU64>,
}

impl Metrics {
    /// Metrics that also show `counter`: the raft transport's count of peer calls
    /// refused for their certificate's identity.
    pub fn with_peer_identity_refusals(counter: Arc<AtomicU64>) -> Metrics {
        Metrics {
            peer_identity_refused: counter,
            ..Metrics::default()
        }
    }

    /// Counts a call the auth layer refused with `code`.
    pub fn refused_auth(&self, code: tonic::Code) {
        let counter = match code {
            tonic::Code::PermissionDenied => &self.permission_denied,
            _ => &self.unauthenticated,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Shows `bulkheads` on `/metrics` (the first ones given).
    pub fn show_bulkheads(&self, bulkheads: Arc<Bulkheads>) {
        let _ = self.bulkheads.set(bulkheads);
    }

    /// Counts a call refused by its client's rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self, method: &str) -> Arc<RpcStats> {
        if let Some(stats) = self
            .rpcs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(method)
        {
            return stats.clone();
        }
        self.rpcs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(method.to_owned())
            .or_default()
            .clone()
    }

    fn observe(&self, method: &str, code: usize, started: Instant) {
        let stats = self.stats(method);
        let elapsed = started.elapsed();
        stats.by_code[code.min(CODES - 1)].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&le| secs <= le) {
            stats.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        stats
            .micros_sum
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let rpcs = self.rpcs.read().unwrap_or_else(PoisonError::into_inner);
        out.push_str("# HELP clockwise_rpc_requests_total gRPC requests served, by method and status code.\n");
        out.push_str("# TYPE clockwise_rpc_requests_total counter\n");
        for (method, stats) in rpcs.iter() {
            for (code, n) in stats.by_code.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "clockwise_rpc_requests_total{{method=\"{method}\",code=\"{code}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP clockwise_rpc_duration_seconds gRPC request latency, by method.\n");
        out.push_str("# TYPE clockwise_rpc_duration_seconds histogram\n");
        for (method, stats) in rpcs.iter() {
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let _ = writeln!(out, "clockwise_rpc_duration_seconds_bucket{{method=\"{method}\",le=\"{le}\"}} {cumulative}");
            }
            let count: u64 = stats
                .by_code
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .sum();
            let _ = writeln!(
                out,
                "clockwise_rpc_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {count}"
            );
            let sum = stats.micros_sum.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "clockwise_rpc_duration_seconds_sum{{method=\"{method}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "clockwise_rpc_duration_seconds_count{{method=\"{method}\"}} {count}"
            );
        }
        let sync = &self.sync;
        let gauges = [
            (
                "clockwise_sync_calls_started_total",
                "counter",
                "Simulated sync calls started.",
                sync.started.load(Ordering::Relaxed) as i64,
            ),
            (
                "clockwise_sync_calls_in_flight",
                "gauge",
                "Simulated sync calls running now.",
                sync.in_flight.load(Ordering::Relaxed),
            ),
            (
                "clockwise_sync_calls_in_flight_max",
                "gauge",
                "Most simulated sync calls ever running at once.",
                sync.in_flight_max.load(Ordering::Relaxed),
            ),
            (
                "clockwise_sync_rejected_total",
                "counter",
                "Sync RPCs refused because the sync bulkhead was full.",
                self.bulkheads.get().map_or(0, |b| b.sync.rejected()) as i64,
            ),
            (
                "clockwise_linearizable_reads_total",
                "counter",
                "ReadIndex rounds started for linearizable reads.",
                self.linearizable_reads.load(Ordering::Relaxed) as i64,
            ),
            (
                "clockwise_auth_unauthenticated_total",
                "counter",
                "Calls refused for a missing, malformed or unknown token.",
                self.unauthenticated.load(Ordering::Relaxed) as i64,
            ),
            (
                "clockwise_auth_permission_denied_total",
                "counter",
                "Calls refused because the token's role may not call the method.",
                self.permission_denied.load(Ordering::Relaxed) as i64,
            ),
            (
                "clockwise_rate_limited_total",
                "counter",
                "Calls refused by the caller's rate limit (RESOURCE_EXHAUSTED).",
                self.rate_limited.load(Ordering::Relaxed) as i64,
            ),
            (
                "clockwise_peer_identity_refused_total",
                "counter",
                "Peer calls refused (PERMISSION_DENIED) because the caller's certificate does not name the node id the call claims.",
                self.peer_identity_refused.load(Ordering::Relaxed) as i64,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        if let Some(bulkheads) = self.bulkheads.get() {
            bulkheads.render(&mut out);
        }
        self.render_ports(&mut out);
        out
    }

    /// The accept pipelines' counters, by port (`client`, `peer`).
    fn render_ports(&self, out: &mut String) {
        let ports = [("client", &self.client_port), ("peer", &self.peer_port)];
        let series = [
            (
                "clockwise_connections_open",
                "gauge",
                "Connections held now.",
            ),
            (
                "clockwise_connections_refused_total",
                "counter",
                "Connections closed at once because the port was at its cap.",
            ),
            (
                "clockwise_connections_handshake_timeouts_total",
                "counter",
                "Connections closed for sending no request within the handshake deadline.",
            ),
            (
                "clockwise_accept_errors_total",
                "counter",
                "Accept errors (out of descriptors or buffers) the port backed off from.",
            ),
        ];
        for (i, (name, kind, help)) in series.into_iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (port, counters) in ports {
                let _ = writeln!(
                    out,
                    "{name}{{port=\"{port}\"}} {}",
                    port_values(counters)[i]
                );
            }
        }
    }
}

/// A port's counters in the order `render_ports` lists them.
fn port_values(counters: &PortCounters) -> [i64; 4] {
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed) as i64;
    [
        counters.open.load(Ordering::Relaxed),
        count(&counters.refused),
        count(&counters.handshake_timeouts),
        count(&counters.accept_errors),
    ]
}

/// Serves `GET /metrics` over plain HTTP/1.1 until the listener's task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded); the body, if any, is ignored.
            while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let (status, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", metrics.render())
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_owned(),
                )
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Tower layer recording every gRPC request in [`Metrics`].
#[derive(Clone)]
pub struct MetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let method = req.uri().path().to_owned();
        let started = Instant::now();
        Box::pin(async move {
            let response = inner.call(req).await;
            if let Ok(res) = &response {
                // Unary errors come back trailers-only, with grpc-status in the headers;
                // a success carries its status in the trailers: absent here means OK.
                let code = res
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                metrics.observe(&method, code, started);
            }
            response
        })
    }
}
