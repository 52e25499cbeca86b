//! The nodes a client talks to: a channel and a circuit breaker each, the leader last
//! learned, and the choice of the peer for each attempt.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use clockwise_proto::cluster::v1 as pb;
use clockwise_proto::cluster::v1::cluster_client::ClusterClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::breaker::{BreakerConfig, CircuitBreaker, Permit};
use crate::clock::Clock;
use crate::error::Error;
use crate::Client;

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

/// One node the client talks to.
pub(crate) struct Peer {
    /// `host:port`.
    pub(crate) address: String,
    pub(crate) channel: Channel,
    pub(crate) breaker: Arc<CircuitBreaker>,
    /// Its raft id, once the cluster told (0: not yet).
    pub(crate) raft_id: AtomicU64,
    /// It answered with another cluster's id: never picked again.
    pub(crate) foreign: AtomicBool,
    /// Learned from a node's `Status`, not given by the application.
    pub(crate) learned: bool,
}

/// Every peer known (given or learned), and which of them leads.
pub(crate) struct Peers {
    list: RwLock<Vec<Arc<Peer>>>,
    /// Raft id of the leader last learned (0: unknown).
    leader: AtomicU64,
    /// Round-robin position.
    next: AtomicUsize,
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
    breaker: BreakerConfig,
    clock: Arc<dyn Clock>,
    /// The cluster id pinned from the first reply that carried one.
    cluster_id: RwLock<Option<String>>,
    /// Whether members a node reports at other addresses than the application's may be
    /// called ([`crate::ClientBuilder::discover_members`]).
    discover: bool,
}

/// Most members learned from the cluster's `Status` beyond the application's own
/// endpoints: a node that lists thousands cannot make the client open thousands of
/// channels.
pub const MAX_LEARNED_MEMBERS: usize = 16;

/// How often an open channel pings its node, and how long an answer may take before
/// the connection (and every stream on it) is given up.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The metadata key of a node's cluster id, on every reply.
pub(crate) const CLUSTER_ID_METADATA: &str = "x-clockwise-cluster-id";

/// `host:port` from `host:port`, `http://host:port` or `https://host:port` (whether
/// TLS is spoken is the builder's [`crate::ClientBuilder::tls`]).
pub(crate) fn normalize(endpoint: &str) -> Option<String> {
    let address = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    let (host, port) = address.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) && !address.contains('/'))
        .then(|| address.to_owned())
}

impl Peers {
    pub(crate) fn new(
        tls: Option<ClientTlsConfig>,
        connect_timeout: Duration,
        breaker: BreakerConfig,
        clock: Arc<dyn Clock>,
        discover: bool,
    ) -> Self {
        Peers {
            list: RwLock::new(Vec::new()),
            leader: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            tls,
            connect_timeout,
            breaker,
            clock,
            cluster_id: RwLock::new(None),
            discover,
        }
    }

    /// Checks the cluster id a reply of `peer` carried (`None`: the node sent none, as a
    /// node of a version without ids, or a joining node not yet reached, does): the
    /// first id seen is pinned, and a node answering with another is marked foreign,
    /// never picked again, and reported as [`Error::WrongCluster`].
    pub(crate) fn check_cluster(
        &self,
        peer: &Peer,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(), Error> {
        let Some(found) = metadata
            .get(CLUSTER_ID_METADATA)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(());
        };
        let mut pinned = self
            .cluster_id
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match pinned.as_deref() {
            None => {
                *pinned = Some(found.to_owned());
                Ok(())
            }
            Some(expected) if expected == found => Ok(()),
            Some(expected) => {
                peer.foreign.store(true, Ordering::Release);
                Err(Error::WrongCluster {
                    expected: expected.to_owned(),
                    found: found.to_owned(),
                    endpoint: peer.address.clone(),
                })
            }
        }
    }

    /// The cluster id pinned (none before the first reply that carried one).
    pub(crate) fn cluster_id(&self) -> Option<String> {
        self.cluster_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Peer>> {
        self.list
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The raft id of the leader last learned (0: unknown).
    pub(crate) fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }

    /// The peer at `address` (`host:port`), if known.
    pub(crate) fn find(&self, address: &str) -> Option<Arc<Peer>> {
        self.all().into_iter().find(|p| p.address == address)
    }

    /// The peer at `address`, one of the application's endpoints, added (with a lazy
    /// channel) if it is new.
    pub(crate) fn add(&self, address: &str) -> Result<Arc<Peer>, Error> {
        let mut peers = self.list.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.iter().find(|p| p.address == address) {
            return Ok(peer.clone());
        }
        let peer = Arc::new(self.connect(address)?);
        peers.push(peer.clone());
        Ok(peer)
    }

    /// The peer at `address` a node reported: a known one, or a new one only when
    /// discovery is on and fewer than [`MAX_LEARNED_MEMBERS`] were learned. A member
    /// named by the cluster is otherwise never called, so a wrong or hostile member
    /// address never sees a call or its token.
    fn add_learned(&self, address: &str) -> Option<Arc<Peer>> {
        let mut peers = self.list.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.iter().find(|p| p.address == address) {
            return Some(peer.clone());
        }
        let learned = peers.iter().filter(|p| p.learned).count();
        if !self.discover || learned >= MAX_LEARNED_MEMBERS {
            tracing::debug!(%address, learned, "a member the client was not given: not called");
            return None;
        }
        let mut peer = self.connect(address).ok()?;
        peer.learned = true;
        let peer = Arc::new(peer);
        peers.push(peer.clone());
        Some(peer)
    }

    /// A peer for `address`, not added to the list: the channel connects on first use.
    pub(crate) fn connect(&self, address: &str) -> Result<Peer, Error> {
        let bad =
            |e: tonic::transport::Error| Error::Config(format!("endpoints: {address:?}: {e}"));
        let endpoint = match &self.tls {
            Some(tls) => Endpoint::from_shared(format!("https://{address}"))
                .and_then(|e| e.tls_config(tls.clone()))
                .map_err(bad)?,
            None => Endpoint::from_shared(format!("http://{address}")).map_err(bad)?,
        }
        .connect_timeout(self.connect_timeout)
        .tcp_nodelay(true)
        // A watch stream has no deadline: without pings, a node cut off without a reset
        // would leave a view following nothing. Pings go only while a call or stream is
        // open (not on idle connections).
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        Ok(Peer {
            address: address.to_owned(),
            channel: endpoint.connect_lazy(),
            breaker: Arc::new(CircuitBreaker::new(
                address,
                self.breaker.clone(),
                self.clock.clone(),
            )),
            raft_id: AtomicU64::new(0),
            foreign: AtomicBool::new(false),
            learned: false,
        })
    }

    /// The peer for one attempt and its breaker's permit; `None` when every breaker is
    /// open. Prefers the leader for leader-bound calls, then round-robin, avoiding the
    /// peer that just failed unless it is the only one left.
    pub(crate) fn pick(&self, kind: CallKind, avoid: Option<&str>) -> Option<(Arc<Peer>, Permit)> {
        let mut peers = self.all();
        peers.retain(|p| !p.foreign.load(Ordering::Acquire));
        if peers.is_empty() {
            return None;
        }
        let leader = self.leader();
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

    /// A failed attempt on the leader: the leader may have changed, so forget it.
    pub(crate) fn failed(&self, peer: &Peer) {
        if peer.raft_id.load(Ordering::Acquire) == self.leader() {
            self.leader.store(0, Ordering::Release);
        }
    }

    /// Takes in what a node's status says about the cluster: the raft ids of the peers
    /// it names, and new peers only as [`Peers::add_learned`] allows.
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
            if let Some(peer) = self.add_learned(&address) {
                peer.raft_id.store(member.id, Ordering::Release);
            }
        }
        self.leader.store(status.leader_id, Ordering::Release);
    }
}

impl Client {
    /// The id of the cluster this client is pinned to: the first one a node's reply
    /// carried (`x-clockwise-cluster-id`). Nodes that answer with another id are
    /// refused ([`Error::WrongCluster`]) and no longer called.
    pub fn cluster_id(&self) -> Option<String> {
        self.inner.peers.cluster_id()
    }

    /// Asks the cluster who leads and where its members are; learns new members.
    /// Best effort within `deadline`.
    pub(crate) async fn refresh_leader(&self, deadline: Instant) {
        let peers = &self.inner.peers;
        for peer in peers.all() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return;
            }
            if !peer.breaker.allows() || peer.foreign.load(Ordering::Acquire) {
                continue;
            }
            let mut request = self.authorized(pb::StatusRequest {});
            request.set_timeout(remaining.min(Duration::from_secs(1)));
            let mut cluster = ClusterClient::new(peer.channel.clone());
            let Ok(Ok(status)) = tokio::time::timeout(remaining, cluster.status(request)).await
            else {
                continue;
            };
            if peers.check_cluster(&peer, status.metadata()).is_err() {
                continue;
            }
            peers.learn(&peer, &status.into_inner());
            return;
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

    fn peers(discover: bool) -> Peers {
        let peers = Peers::new(
            None,
            Duration::from_secs(1),
            BreakerConfig::default(),
            Arc::new(crate::clock::SystemClock),
            discover,
        );
        peers.add("127.0.0.1:50051").unwrap();
        peers
    }

    /// A status from node 1 listing itself and `others` more members at new addresses.
    fn status(others: u64) -> pb::StatusResponse {
        let member = |id: u64, address: String| pb::Member {
            id,
            address,
            ..pb::Member::default()
        };
        let mut members = vec![member(1, "127.0.0.1:50051".into())];
        members.extend((2..2 + others).map(|id| member(id, format!("10.9.9.9:{}", 1000 + id))));
        pb::StatusResponse {
            id: 1,
            leader_id: 2,
            members,
            ..pb::StatusResponse::default()
        }
    }

    #[tokio::test]
    async fn members_at_addresses_the_application_did_not_give_are_never_called() {
        let peers = peers(false);
        let given = peers.all()[0].clone();
        peers.learn(&given, &status(3));
        let known: Vec<String> = peers.all().iter().map(|p| p.address.clone()).collect();
        assert_eq!(known, ["127.0.0.1:50051"]);
        assert_eq!(given.raft_id.load(Ordering::Acquire), 1);
        // Even told the leader is elsewhere, every pick stays on the given endpoint.
        for kind in [CallKind::Write, CallKind::Read, CallKind::StaleRead] {
            let (picked, _permit) = peers.pick(kind, Some("127.0.0.1:50051")).unwrap();
            assert_eq!(picked.address, "127.0.0.1:50051");
        }
    }

    #[tokio::test]
    async fn discovery_learns_members_up_to_its_cap() {
        let peers = peers(true);
        let given = peers.all()[0].clone();
        peers.learn(&given, &status(100));
        let all = peers.all();
        assert_eq!(all.len(), 1 + MAX_LEARNED_MEMBERS);
        assert_eq!(
            all.iter().filter(|p| p.learned).count(),
            MAX_LEARNED_MEMBERS
        );
        assert!(!given.learned);
        // Learning again adds none beyond the cap.
        peers.learn(&given, &status(200));
        assert_eq!(peers.all().len(), 1 + MAX_LEARNED_MEMBERS);
    }
}
