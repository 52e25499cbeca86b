//! The client: endpoints and their breakers, the leader it knows of, and the one
//! retry loop every call goes through.
//!
//! Layering, outermost first: the overall deadline; the retry loop, which picks the
//! peer of each attempt (the leader for writes and linearizable reads when known, the
//! next peer round-robin otherwise, skipping peers whose breaker is open without
//! sleeping); that peer's circuit breaker; the per-attempt deadline; the transport.
//! Each attempt counts against its own peer's breaker, and the overall deadline bounds
//! the whole.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use clockwise_proto::cluster::v1 as pb;
use clockwise_proto::cluster::v1::cluster_client::ClusterClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::backoff::{entropy, Backoff, RetryPolicy};
use crate::breaker::{BreakerConfig, CircuitBreaker, Permit};
use crate::clock::{Clock, SystemClock};
use crate::error::{counts_against_peer, Error};
use crate::{ChatRouter, HashRing};

const CLIENT_ID_METADATA: &str = "x-clockwise-client-id";
const SEQ_METADATA: &str = "x-clockwise-seq";
const CONSISTENCY_METADATA: &str = "x-clockwise-consistency";
const AUTHORIZATION_METADATA: &str = "authorization";
/// Marks an UNAVAILABLE by which a node says the cluster (no leader, no quorum) could not
/// serve the call in time: the node answered, so its breaker does not count it.
const CLUSTER_UNAVAILABLE_METADATA: &str = "x-clockwise-cluster-unavailable";
/// A node's rate-limit hint (`RESOURCE_EXHAUSTED`), and the longest one believed.
const RETRY_AFTER_METADATA: &str = "retry-after-ms";
const MAX_RETRY_AFTER_MS: u64 = 10_000;

/// Configures and builds a [`Client`].
pub struct ClientBuilder {
    endpoints: Vec<String>,
    timeout: Duration,
    attempt_timeout: Duration,
    retry: RetryPolicy,
    breaker: BreakerConfig,
    clock: Arc<dyn Clock>,
    client_id: Option<String>,
    token: Option<String>,
    tls: Option<Tls>,
}

/// TLS towards nodes whose client port speaks it (`clockwise node --cert`): the CA the
/// nodes' certificates chain to, and the client's own certificate for nodes that
/// require one (`--trusted-ca`).
#[derive(Clone)]
pub struct Tls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// Trust nodes whose certificate chains to the CA in `ca_pem` (PEM).
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        Tls {
            ca_pem: ca_pem.into(),
            identity: None,
        }
    }

    /// Present this certificate and private key (PEM) to the nodes.
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The tonic TLS settings for a channel to a node.
    pub fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoints: Vec::new(),
            timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            clock: Arc::new(SystemClock),
            client_id: None,
            token: None,
            tls: None,
        }
    }
}

impl ClientBuilder {
    /// Nodes to talk to, as `host:port` or `http://host:port` (any subset of the
    /// cluster: the others are learned from it).
    pub fn endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// The deadline of a whole call, retries included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The deadline of one attempt (default 5 s); never beyond what is left of the call's.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// How often and how far apart to retry (default [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// When each endpoint's circuit breaker opens and closes.
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// The clock of the breakers (tests pass a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The identity its writes are deduplicated under (default: random per client).
    /// Two live clients must never share one.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The bearer token sent with every call, for nodes started with
    /// `--auth-token-file` (its role decides what the client may call).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Speak TLS to every node (endpoints become `https://`).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Checks the configuration and asks the cluster who leads (an unreachable cluster
    /// is not an error here: calls retry until their deadline).
    pub async fn build(self) -> Result<Client, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::Config("endpoints: at least one is needed".into()));
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::Config(
                "retry.max_attempts: must be at least 1".into(),
            ));
        }
        let client_id = match self.client_id {
            Some(id)
                if id.is_empty() || id.len() > 100 || !id.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return Err(Error::Config(
                    "client_id: 1 to 100 visible ASCII characters".into(),
                ))
            }
            Some(id) => id,
            None => format!("sdk-{:016x}", entropy()),
        };
        let token = match self.token {
            Some(token) => Some(
                MetadataValue::try_from(format!("Bearer {token}"))
                    .ok()
                    .filter(|_| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or_else(|| Error::Config("token: visible ASCII characters only".into()))?,
            ),
            None => None,
        };
        let inner = Inner {
            peers: RwLock::new(Vec::new()),
            leader: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            timeout: self.timeout,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry,
            breaker: self.breaker,
            clock: self.clock,
            client_id,
            token,
            tls: self.tls.as_ref().map(Tls::config),
            lanes: Mutex::new(Lanes::default()),
        };
        for endpoint in &self.endpoints {
            let address = normalize(endpoint).ok_or_else(|| {
                Error::Config(format!("endpoints: {endpoint:?} is not host:port"))
            })?;
            inner.add_peer(&address)?;
        }
        let client = Client {
            inner: Arc::new(inner),
        };
        let deadline = Instant::now() + client.inner.attempt_timeout;
        client.refresh_leader(deadline).await;
        Ok(client)
    }
}

/// A clockwise client: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    peers: RwLock<Vec<Arc<Peer>>>,
    /// Raft id of the leader last learned (0: unknown).
    leader: AtomicU64,
    /// Round-robin position.
    next: AtomicUsize,
    timeout: Duration,
    attempt_timeout: Duration,
    retry: RetryPolicy,
    breaker: BreakerConfig,
    clock: Arc<dyn Clock>,
    client_id: String,
    /// `Bearer TOKEN`, sent with every call.
    token: Option<MetadataValue<Ascii>>,
    tls: Option<ClientTlsConfig>,
    lanes: Mutex<Lanes>,
}

/// One node the client talks to.
struct Peer {
    /// `host:port`.
    address: String,
    channel: Channel,
    breaker: Arc<CircuitBreaker>,
    /// Its raft id, once the cluster told (0: not yet).
    raft_id: AtomicU64,
}

/// Writes in flight each hold a lane: a session id of its own whose sequence numbers
/// rise one call at a time, so concurrent writes never overtake each other's numbers
/// (the cluster refuses a number below the last one it applied for that session).
#[derive(Default)]
struct Lanes {
    free: Vec<(u32, u64)>,
    count: u32,
}

/// How a call may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// A replicated write: sent to the leader if known, with a session so a retry is
    /// applied once.
    Write,
    /// A linearizable read: the leader if known.
    Read,
    /// A read of any replica's state, which may lag.
    StaleRead,
    /// A membership change: the leader if known, attempted once (its effect shows in
    /// the cluster's status).
    Admin,
}

/// What one attempt needs: the channel, and the request decorated with its deadline,
/// session and consistency.
pub(crate) struct Attempt {
    pub(crate) channel: Channel,
    timeout: Duration,
    session: Option<(String, u64)>,
    stale: bool,
    token: Option<MetadataValue<Ascii>>,
}

impl Attempt {
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        let metadata = request.metadata_mut();
        if let Some((client_id, seq)) = &self.session {
            if let Ok(value) = MetadataValue::try_from(client_id.as_str()) {
                metadata.insert(CLIENT_ID_METADATA, value);
            }
            metadata.insert(SEQ_METADATA, MetadataValue::from(*seq));
        }
        if self.stale {
            metadata.insert(CONSISTENCY_METADATA, MetadataValue::from_static("stale"));
        }
        if let Some(token) = &self.token {
            metadata.insert(AUTHORIZATION_METADATA, token.clone());
        }
        request
    }
}

/// `host:port` from `host:port`, `http://host:port` or `https://host:port` (whether
/// TLS is spoken is the builder's [`ClientBuilder::tls`]).
fn normalize(endpoint: &str) -> Option<String> {
    let address = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    let (host, port) = address.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) && !address.contains('/'))
        .then(|| address.to_owned())
}

impl Inner {
    fn peers(&self) -> Vec<Arc<Peer>> {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn add_peer(&self, address: &str) -> Result<Arc<Peer>, Error> {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.iter().find(|p| p.address == address) {
            return Ok(peer.clone());
        }
        let bad =
            |e: tonic::transport::Error| Error::Config(format!("endpoints: {address:?}: {e}"));
        let endpoint = match &self.tls {
            Some(tls) => Endpoint::from_shared(format!("https://{address}"))
                .and_then(|e| e.tls_config(tls.clone()))
                .map_err(bad)?,
            None => Endpoint::from_shared(format!("http://{address}")).map_err(bad)?,
        }
        .connect_timeout(self.attempt_timeout.min(Duration::from_secs(2)))
        .tcp_nodelay(true);
        let peer = Arc::new(Peer {
            address: address.to_owned(),
            channel: endpoint.connect_lazy(),
            breaker: Arc::new(CircuitBreaker::new(
                address,
                self.breaker.clone(),
                self.clock.clone(),
            )),
            raft_id: AtomicU64::new(0),
        });
        peers.push(peer.clone());
        Ok(peer)
    }

    /// The peer for one attempt and its breaker's permit; `None` when every breaker is
    /// open. Prefers the leader for leader-bound calls, then round-robin, avoiding the
    /// peer that just failed unless it is the only one left.
    fn pick(&self, kind: CallKind, avoid: Option<&str>) -> Option<(Arc<Peer>, Permit)> {
        let peers = self.peers();
        let leader = self.leader.load(Ordering::Acquire);
        if kind != CallKind::StaleRead && leader != 0 {
            if let Some(peer) = peers
                .iter()
                .find(|p| p.raft_id.load(Ordering::Acquire) == leader)
            {
                if Some(peer.address.as_str()) != avoid {
                    if let Ok(permit) = peer.breaker.acquire() {
                        return Some((peer.clone(), permit));
                    }
                }
            }
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..peers.len()).map(|i| &peers[(start + i) % peers.len()]);
        let (others, avoided): (Vec<_>, Vec<_>) =
            order.partition(|p| Some(p.address.as_str()) != avoid);
        others
            .into_iter()
            .chain(avoided)
            .find_map(|peer| Some((peer.clone(), peer.breaker.acquire().ok()?)))
    }

    pub(crate) fn take_lane(&self) -> (u32, u64) {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = lanes.free.pop() {
            return lane;
        }
        lanes.count += 1;
        (lanes.count, 1)
    }

    pub(crate) fn return_lane(&self, lane: (u32, u64)) {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        lanes.free.push(lane);
    }
}

/// A write's session lane, given back (with its next sequence number) when dropped.
struct LaneGuard {
    inner: Arc<Inner>,
    lane: u32,
    seq: u64,
}

impl LaneGuard {
    fn take(inner: &Arc<Inner>) -> Self {
        let (lane, seq) = inner.take_lane();
        LaneGuard {
            inner: inner.clone(),
            lane,
            seq,
        }
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        self.inner.return_lane((self.lane, self.seq + 1));
    }
}

/// Below this much time left, no new attempt is started.
const MIN_ATTEMPT: Duration = Duration::from_millis(5);

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The HashRing namespace `ring` (`""` is `"default"`).
    pub fn hash_ring(&self, ring: impl Into<String>) -> HashRing {
        HashRing::new(self.clone(), ring.into())
    }

    /// The ChatRouter namespace `ring` (`""` is `"default"`).
    pub fn chat_router(&self, ring: impl Into<String>) -> ChatRouter {
        ChatRouter::new(self.clone(), ring.into())
    }

    /// The raft id of the leader last learned, if any.
    pub fn leader(&self) -> Option<u64> {
        Some(self.inner.leader.load(Ordering::Acquire)).filter(|&id| id != 0)
    }

    /// Every endpoint known (given or learned from the cluster), as `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .peers()
            .iter()
            .map(|p| p.address.clone())
            .collect()
    }

    /// Each endpoint's circuit breaker statistics.
    pub fn breaker_stats(&self) -> Vec<(String, crate::BreakerStats)> {
        self.inner
            .peers()
            .iter()
            .map(|p| (p.address.clone(), p.breaker.stats()))
            .collect()
    }

    /// Closes every circuit breaker (an operator's manual reset).
    pub fn reset_breakers(&self) {
        for peer in self.inner.peers() {
            peer.breaker.reset();
        }
    }

    /// The id this client's writes are deduplicated under (each concurrent write uses
    /// it with a suffix of its own).
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// Every known endpoint's address and channel.
    pub(crate) fn channels(&self) -> Vec<(String, Channel)> {
        self.inner
            .peers()
            .iter()
            .map(|p| (p.address.clone(), p.channel.clone()))
            .collect()
    }

    /// Asks the cluster who leads and where its members are; learns new members.
    /// Best effort within `deadline`.
    /// A request carrying the client's token, if it has one.
    pub(crate) fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.inner.token {
            request
                .metadata_mut()
                .insert(AUTHORIZATION_METADATA, token.clone());
        }
        request
    }

    pub(crate) async fn refresh_leader(&self, deadline: Instant) {
        for peer in self.inner.peers() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return;
            }
            if !peer.breaker.allows() {
                continue;
            }
            let mut request = self.authorized(pb::StatusRequest {});
            request.set_timeout(remaining.min(Duration::from_secs(1)));
            let mut cluster = ClusterClient::new(peer.channel.clone());
            let Ok(Ok(status)) = tokio::time::timeout(remaining, cluster.status(request)).await
            else {
                continue;
            };
            self.learn(&peer, &status.into_inner());
            return;
        }
    }

    /// Takes in what a node's status says about the cluster.
    fn learn(&self, asked: &Peer, status: &pb::StatusResponse) {
        asked.raft_id.store(status.id, Ordering::Release);
        for member in &status.members {
            let Some(address) = normalize(&member.address) else {
                continue;
            };
            // A member listening on every interface names no reachable host.
            if address.starts_with("0.0.0.0:") || address.starts_with("[::]:") {
                continue;
            }
            if let Ok(peer) = self.inner.add_peer(&address) {
                peer.raft_id.store(member.id, Ordering::Release);
            }
        }
        self.inner.leader.store(status.leader_id, Ordering::Release);
    }

    /// Runs one call with retries: `rpc` makes one attempt on the channel it is given.
    pub(crate) async fn call<Req, Resp, F, Fut>(
        &self,
        kind: CallKind,
        message: Req,
        rpc: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let lane = (kind == CallKind::Write).then(|| LaneGuard::take(&self.inner));
        let session = lane
            .as_ref()
            .map(|l| (format!("{}/{}", self.inner.client_id, l.lane), l.seq));
        // The lane goes back when the call ends, however it ends (the caller may drop
        // this future): its sequence number is spent either way.
        self.attempts(kind, session, &message, rpc).await
    }

    async fn attempts<Req, Resp, F, Fut>(
        &self,
        kind: CallKind,
        session: Option<(String, u64)>,
        message: &Req,
        rpc: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.timeout;
        let max_attempts = if kind == CallKind::Admin {
            1
        } else {
            inner.retry.max_attempts
        };
        let mut backoff = Backoff::from_entropy(inner.retry.clone());
        let mut attempts = 0;
        let mut avoid: Option<String> = None;
        let mut last: Option<Error> = None;
        loop {
            if deadline.saturating_duration_since(Instant::now()) < MIN_ATTEMPT {
                return Err(match last {
                    Some(last) => Error::RetryExhausted {
                        attempts,
                        last: Box::new(last),
                    },
                    None => Error::Retriable {
                        code: tonic::Code::DeadlineExceeded,
                        message: "the call's deadline is too short for an attempt".into(),
                    },
                });
            }
            let Some((peer, permit)) = inner.pick(kind, avoid.as_deref()) else {
                let endpoints = inner
                    .peers()
                    .iter()
                    .map(|p| p.address.clone())
                    .collect::<Vec<_>>()
                    .join(", ");
                let open = Error::CircuitOpen { endpoints };
                return Err(if attempts == 0 {
                    open
                } else {
                    Error::RetryExhausted {
                        attempts,
                        last: Box::new(open),
                    }
                });
            };
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = Attempt {
                channel: peer.channel.clone(),
                timeout: inner.attempt_timeout.min(remaining),
                session: session.clone(),
                stale: kind == CallKind::StaleRead,
                token: inner.token.clone(),
            };
            let request = attempt.request(message.clone());
            let cut_short = attempt.timeout < inner.attempt_timeout;
            let outcome = tokio::time::timeout(attempt.timeout, rpc(attempt.channel, request))
                .await
                .unwrap_or_else(|_| {
                    Err(tonic::Status::deadline_exceeded(
                        "the attempt's deadline passed",
                    ))
                });
            let status = match outcome {
                Ok(response) => {
                    permit.success();
                    return Ok(response.into_inner());
                }
                Err(status) => status,
            };
            // A node that refused for its rate limit says when to come back.
            let come_back = status
                .metadata()
                .get(RETRY_AFTER_METADATA)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(|ms| Duration::from_millis(ms.min(MAX_RETRY_AFTER_MS)));
            let cluster_wide = status.metadata().contains_key(CLUSTER_UNAVAILABLE_METADATA);
            let error = Error::from(status);
            let code = error.code().unwrap_or(tonic::Code::Unknown);
            // An attempt the call's own deadline cut short says little about the peer, and
            // a node that answers "no quorum" is up: the cluster is electing or cut off.
            let peer_at_fault = counts_against_peer(code)
                && !cluster_wide
                && !(cut_short && code == tonic::Code::DeadlineExceeded);
            if peer_at_fault {
                permit.failure();
            } else {
                drop(permit);
            }
            if !error.is_retriable() {
                return Err(error);
            }
            tracing::debug!(peer = %peer.address, attempt = attempts, %error, "attempt failed");
            if peer.raft_id.load(Ordering::Acquire) == inner.leader.load(Ordering::Acquire) {
                inner.leader.store(0, Ordering::Release);
            }
            avoid = Some(peer.address.clone());
            let delay = backoff.delay(attempts).max(come_back.unwrap_or_default());
            if attempts >= max_attempts || Instant::now() + delay + MIN_ATTEMPT >= deadline {
                return Err(Error::RetryExhausted {
                    attempts,
                    last: Box::new(error),
                });
            }
            // Learning the leader may take the backoff's time, or a little more, but
            // never the time the next attempt needs.
            let refresh = (Instant::now() + delay.max(Duration::from_millis(200)))
                .min(deadline.checked_sub(MIN_ATTEMPT).unwrap_or(deadline));
            tokio::join!(tokio::time::sleep(delay), self.refresh_leader(refresh));
            last = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized_to_host_and_port() {
        assert_eq!(
            normalize("127.0.0.1:50051").as_deref(),
            Some("127.0.0.1:50051")
        );
        assert_eq!(normalize("http://node-1:7/").as_deref(), Some("node-1:7"));
        assert_eq!(normalize("https://node-1:7").as_deref(), Some("node-1:7"));
        for bad in ["", "node", ":80", "h:0", "h:x", "ftp://h:1", "h:1/path"] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_client_without_endpoints_or_attempts_is_refused() {
        assert!(matches!(
            Client::builder().build().await,
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::builder().endpoints(["nohost"]).build().await,
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::builder()
                .endpoints(["127.0.0.1:1"])
                .retry(RetryPolicy {
                    max_attempts: 0,
                    ..RetryPolicy::default()
                })
                .build()
                .await,
            Err(Error::Config(_))
        ));
    }

    #[tokio::test]
    async fn concurrent_writes_take_separate_lanes_and_reuse_them_in_order() {
        let client = Client::builder()
            .endpoints(["127.0.0.1:1"])
            .attempt_timeout(Duration::from_millis(50))
            .build()
            .await
            .unwrap();
        let a = client.inner.take_lane();
        let b = client.inner.take_lane();
        assert_ne!(a.0, b.0);
        assert_eq!((a.1, b.1), (1, 1));
        client.inner.return_lane((a.0, a.1 + 1));
        assert_eq!(client.inner.take_lane(), (a.0, 2), "the lane's next number");
    }
}
