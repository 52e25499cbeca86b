//! Every limit a node puts on its callers, in one place, with its default:
//!
//! | limit | flag | default |
//! |---|---|---|
//! | largest request a client service decodes | `--max-message-bytes` | 4 MiB |
//! | concurrent calls (HTTP/2 streams) per connection | `--max-concurrent-streams` | 1024 |
//! | calls per second per client (token bucket; 0: none) | `--client-rate` | 0 |
//! | burst above that rate | `--client-burst` | 2 × rate |
//! | a call's deadline | the caller's `grpc-timeout`, honoured by the server | — |
//! | a client-port call until its response headers (streams are not cut) | `--max-request-ms` | 60 s |
//! | connections the client port holds | `--max-connections` | 8192 |
//! | connections the peer port holds (its own budget) | `--max-peer-connections` | 256 |
//! | a new connection's first request (TLS, HTTP/2 preface, HEADERS) | `--handshake-timeout-ms` | 10 s |
//! | idle time before an HTTP/2 PING that must be answered (≤ 10 s) | `--http2-keepalive-ms` | 30 s |
//! | a connection's age before GOAWAY (calls in flight finish) | `--max-connection-age-ms` | 30 min |
//! | `Health.Watch` / reflection streams per node | — ([`super::open`]) | 64 / 16 |
//!
//! The caps are clamped to the descriptor limit (raised to the hard one at start); the
//! other HTTP/2 settings of both ports (reset-stream guards, the peer port's streams and
//! request timeout) are constants in [`super::connections`].
//!
//! Elsewhere, and documented there: the per-call budget within that deadline
//! ([`super::deadline`]), the raft transport's message and snapshot sizes
//! (`clockwise_cluster::transport`), a leader's uncommitted proposals
//! (`clockwise_cluster::DriverConfig::max_uncommitted_bytes`), the sync and batch
//! bulkheads ([`super::bulkhead`]: `--sync-max-calls`, `--batch-max-calls`), the wait
//! for a quorum (`--request-timeout-ms`), the per-field caps of `validate`.
//!
//! A client is its bearer token when it sends one (the identity auth vouches for),
//! else the `x-clockwise-client-id` it declares (the SDK sends one), else its
//! connection. A refused call gets `RESOURCE_EXHAUSTED` with a `retry-after-ms`
//! metadata entry saying when a token will be there; the SDK waits at least that long.
//! The health, reflection and raft transport services are never rate limited (health
//! watches and reflection streams are capped per node instead: [`super::open`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tonic::transport::server::TcpConnectInfo;

use super::connections;
use super::gate::Gate;
use super::metrics::Metrics;

/// The metadata key of a rate-limit refusal's hint.
pub const RETRY_AFTER_METADATA: &str = "retry-after-ms";
const CLIENT_ID_METADATA: &str = "x-clockwise-client-id";
/// Clients whose buckets are remembered; beyond it, idle ones are forgotten first and
/// the rest share one bucket.
const MAX_TRACKED_CLIENTS: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_concurrent_streams: u32,
    /// Calls per second per client; 0: unlimited.
    pub client_rate: u32,
    pub client_burst: u32,
    /// Client-port connections held at once; beyond it they are closed at once.
    pub max_connections: usize,
    /// Peer-port connections held at once (a budget apart from clients').
    pub max_peer_connections: usize,
    /// How long a new connection may take to send its first request.
    pub handshake_timeout: Duration,
    /// The longest a client-port call may run until its response headers.
    pub max_request: Duration,
    /// Idle time before an HTTP/2 PING that must be answered (both ports).
    pub http2_keepalive: Duration,
    /// The age at which a connection is asked to go away (both ports).
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 << 20,
            max_concurrent_streams: 1024,
            client_rate: 0,
            client_burst: 0,
            max_connections: connections::DEFAULT_MAX_CONNECTIONS,
            max_peer_connections: connections::DEFAULT_MAX_PEER_CONNECTIONS,
            handshake_timeout: connections::DEFAULT_HANDSHAKE_TIMEOUT,
            max_request: connections::DEFAULT_MAX_REQUEST,
            http2_keepalive: connections::DEFAULT_HTTP2_KEEPALIVE,
            max_connection_age: connections::DEFAULT_MAX_CONNECTION_AGE,
        }
    }
}

/// One client's token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Per-client token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `None` when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32) -> Option<RateLimiter> {
        (rate > 0).then(|| RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token for `client` at `now`: `Err(wait)` when there is none yet.
    pub fn take(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(client) && buckets.len() >= MAX_TRACKED_CLIENTS {
            // A bucket idle for a full refill is full: forgetting it changes nothing.
            let refill = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, b| now.duration_since(b.refilled) < refill);
        }
        let key = if buckets.contains_key(client) || buckets.len() < MAX_TRACKED_CLIENTS {
            client
        } else {
            "(overflow)"
        };
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

/// Who is calling, for the rate limit.
fn client_key<B>(req: &http::Request<B>) -> String {
    let headers = req.headers();
    if let Some(token) = headers.get(http::header::AUTHORIZATION) {
        // A digest: the bucket map must not hold tokens.
        let digest = Sha256::digest(token.as_bytes());
        return format!(
            "token:{:x}",
            u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"))
        );
    }
    if let Some(id) = headers
        .get(CLIENT_ID_METADATA)
        .and_then(|v| v.to_str().ok())
    {
        return format!("id:{id}");
    }
    req.extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map_or_else(|| "unknown".to_owned(), |addr| format!("addr:{addr}"))
}

fn exempt(path: &str) -> bool {
    [
        "/grpc.health.v1.",
        "/grpc.reflection.",
        "/clockwise.raft.v1.",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
}

/// The rate-limit gate: with no limiter, every call passes.
#[derive(Clone)]
pub struct RateLimit {
    pub limiter: Option<Arc<RateLimiter>>,
    pub metrics: Arc<Metrics>,
}

impl Gate for RateLimit {
    fn check<B>(&self, request: &http::Request<B>) -> Result<(), tonic::Status> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if exempt(request.uri().path()) {
            return Ok(());
        }
        let Err(wait) = limiter.take(&client_key(request), Instant::now()) else {
            return Ok(());
        };
        self.metrics.rate_limited();
        let millis = wait.as_millis().max(1);
        let mut status = tonic::Status::resource_exhausted(format!(
            "rate limit: at most {} calls per second per client; retry after {millis} ms",
            limiter.rate
        ));
        if let Ok(value) = millis.to_string().parse() {
            status.metadata_mut().insert(RETRY_AFTER_METADATA, value);
        }
        Err(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(10, 3).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("a", start), Ok(()));
        }
        let wait = limiter.take("a", start).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another client has its own bucket.
        assert_eq!(limiter.take("b", start), Ok(()));
        // 100 ms at 10/s is one more token, and no more.
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.take("a", later), Ok(()));
        assert!(limiter.take("a", later).is_err());
        // An idle bucket refills to its burst, not beyond.
        let much_later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take("a", much_later), Ok(()));
        }
        assert!(limiter.take("a", much_later).is_err());
    }

    #[test]
    fn no_rate_is_no_limiter() {
        assert!(RateLimiter::new(0, 100).is_none());
    }

    #[test]
    fn the_client_is_its_token_then_its_id_then_its_connection() {
        let mut req = http::Request::new(());
        req.headers_mut()
            .insert(CLIENT_ID_METADATA, "app-1".parse().unwrap());
        assert_eq!(client_key(&req), "id:app-1");
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            "Bearer secret-token".parse().unwrap(),
        );
        let key = client_key(&req);
        assert!(
            key.starts_with("token:") && !key.contains("secret"),
            "{key}"
        );
        assert_eq!(client_key(&http::Request::new(())), "unknown");
    }

    #[test]
    fn peers_health_and_reflection_are_never_limited() {
        assert!(exempt("/clockwise.raft.v1.RaftTransport/Send"));
        assert!(exempt("/grpc.health.v1.Health/Check"));
        assert!(!exempt("/clockwise.hashring.v1.HashRing/StoreKey"));
    }
}
