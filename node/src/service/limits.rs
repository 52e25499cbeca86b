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
//! | connections the HTTP port (`--metrics-listen`) holds | `--http-max-connections` | 64 |
//! | an HTTP request's headers (one request per connection) | `--http-header-timeout-ms` | 5 s |
//! | an HTTP connection's age (for a slow reader of its response) | — ([`crate::http_port`]) | 60 s |
//! | clients with a rate-limit bucket of their own (then one shared bucket) | — | 65,536 |
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
//! The buckets live in governor's keyed limiter over a concurrent map (a lock per
//! shard, none for all); buckets idle for a full refill are forgotten every
//! [`RATE_LIMIT_SWEEP_INTERVAL`] by a task ([`spawn_sweeper`]), not on a caller's path.
//!
//! A client is its bearer token when it sends one (the identity auth vouches for),
//! else the `x-clockwise-client-id` it declares (the SDK sends one), else its
//! connection. A refused call gets `RESOURCE_EXHAUSTED` with a `retry-after-ms`
//! metadata entry saying when a token will be there; the SDK waits at least that long.
//! The health, reflection and raft transport services are never rate limited (health
//! watches and reflection streams are capped per node instead: [`super::open`]).

use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::Quota;
use sha2::{Digest, Sha256};
use tonic::transport::server::TcpConnectInfo;

use super::connections;
use super::gate::Gate;
use super::metrics::Metrics;

/// The metadata key of a rate-limit refusal's hint.
pub const RETRY_AFTER_METADATA: &str = "retry-after-ms";
const CLIENT_ID_METADATA: &str = "x-clockwise-client-id";
/// Clients whose buckets are remembered; beyond it, clients not remembered yet share
/// one bucket until the sweep forgets idle ones.
const MAX_TRACKED_CLIENTS: usize = 65_536;
/// How often buckets idle for a full refill (indistinguishable from new ones) are
/// forgotten: between sweeps the map grows by at most the new clients seen.
pub const RATE_LIMIT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// The bucket clients beyond [`MAX_TRACKED_CLIENTS`] share.
const OVERFLOW_CLIENT: &str = "(overflow)";

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
    /// HTTP-port (`--metrics-listen`) connections held at once.
    pub http_max_connections: usize,
    /// How long an HTTP-port connection may take to send a request's headers (the
    /// first, and each next one on a kept-alive connection).
    pub http_header_timeout: Duration,
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
            http_max_connections: crate::http_port::DEFAULT_MAX_CONNECTIONS,
            http_header_timeout: crate::http_port::DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// governor's concurrent map of buckets (dashmap: a lock per shard, never one for all)
/// with a cap on the clients it remembers: past it, a client not remembered yet is
/// measured against the shared overflow bucket.
#[derive(Debug)]
struct CappedClients {
    buckets: DashMapStateStore<String>,
    cap: usize,
    overflow: String,
}

impl StateStore for CappedClients {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Only a client not remembered pays for `len` (a read lock per shard in turn).
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.cap {
            return self.buckets.measure_and_replace(&self.overflow, f);
        }
        self.buckets.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<String> for CappedClients {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.buckets, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.buckets);
    }

    fn len(&self) -> usize {
        self.buckets.len()
    }

    fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Per-client token buckets (GCRA, as governor keeps them): `rate` calls per second,
/// bursts of `burst`.
pub struct RateLimiter<C: Clock = DefaultClock> {
    rate: u32,
    clock: C,
    limiter: governor::RateLimiter<String, CappedClients, C, NoOpMiddleware<C::Instant>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .field("clients", &self.limiter.len())
            .finish()
    }
}

impl RateLimiter {
    /// `None` when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32) -> Option<RateLimiter> {
        RateLimiter::with_clock(rate, burst, DefaultClock::default(), MAX_TRACKED_CLIENTS)
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// A limiter reading `clock`, remembering at most `max_clients` clients.
    fn with_clock(rate: u32, burst: u32, clock: C, max_clients: usize) -> Option<Self> {
        let per_second = NonZeroU32::new(rate)?;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let clients = CappedClients {
            buckets: DashMapStateStore::default(),
            cap: max_clients,
            overflow: OVERFLOW_CLIENT.to_owned(),
        };
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Some(RateLimiter {
            rate,
            limiter: governor::RateLimiter::new(quota, clients, clock.clone()),
            clock,
        })
    }

    /// Takes a token for `client`: `Err(wait)` when there is none yet, `wait` being
    /// when the limiter says one will be there.
    pub fn take(&self, client: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&client.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets the buckets idle for a full refill (a new bucket is the same) and gives
    /// their memory back.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Clients remembered now.
    pub fn clients(&self) -> usize {
        self.limiter.len()
    }
}

/// Sweeps `limiter` every [`RATE_LIMIT_SWEEP_INTERVAL`] until it is dropped.
pub fn spawn_sweeper(limiter: &Arc<RateLimiter>) -> tokio::task::JoinHandle<()> {
    let limiter: Weak<RateLimiter> = Arc::downgrade(limiter);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RATE_LIMIT_SWEEP_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(limiter) = limiter.upgrade() else {
                return;
            };
            limiter.sweep();
        }
    })
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
        let Err(wait) = limiter.take(&client_key(request)) else {
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
    use governor::clock::FakeRelativeClock;

    fn limiter(
        rate: u32,
        burst: u32,
        max_clients: usize,
    ) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(rate, burst, clock.clone(), max_clients).unwrap();
        (limiter, clock)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let (limiter, clock) = limiter(10, 3, MAX_TRACKED_CLIENTS);
        for _ in 0..3 {
            assert_eq!(limiter.take("a"), Ok(()));
        }
        let wait = limiter.take("a").unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another client has its own bucket.
        assert_eq!(limiter.take("b"), Ok(()));
        // 100 ms at 10/s is one more token, and no more.
        clock.advance(Duration::from_millis(100));
        assert_eq!(limiter.take("a"), Ok(()));
        assert!(limiter.take("a").is_err());
        // An idle bucket refills to its burst, not beyond.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limiter.take("a"), Ok(()));
        }
        assert!(limiter.take("a").is_err());
    }

    #[test]
    fn past_the_cap_new_clients_share_one_bucket_and_old_ones_keep_theirs() {
        let (limiter, _clock) = limiter(1, 1, 2);
        assert_eq!(limiter.take("a"), Ok(()));
        assert_eq!(limiter.take("b"), Ok(()));
        // "c" and "d" are beyond the cap: one bucket between them.
        assert_eq!(limiter.take("c"), Ok(()));
        assert!(limiter.take("d").is_err());
        // "a" still has its own (empty) bucket, not the overflow's.
        assert!(limiter.take("a").is_err());
        assert_eq!(limiter.clients(), 3, "a, b and the overflow bucket");
    }

    #[test]
    fn a_sweep_forgets_idle_buckets_only() {
        let (limiter, clock) = limiter(10, 2, MAX_TRACKED_CLIENTS);
        for client in ["a", "b", "c"] {
            assert_eq!(limiter.take(client), Ok(()));
        }
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.take("d"), Ok(()));
        limiter.sweep();
        assert_eq!(limiter.clients(), 1, "only d spent a token within a refill");
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
