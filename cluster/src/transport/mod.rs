//! Raft messages between nodes over gRPC (`clockwise.raft.v1.RaftTransport`), and
//! writes forwarded to the leader.
//!
//! Messages travel as opaque bytes encoded by raft's own protobuf codec, so raft's
//! protobuf never meets tonic's prost. Outbound, each peer has a bounded queue and one
//! task that sends what accumulated as one batch, on a long-lived `Stream` call
//! (`transport/sender.rs`); a full queue or a failed send drops messages, which raft
//! retransmits. The driver thread only ever enqueues.
//!
//! A snapshot message carries only a descriptor of a stored snapshot file (see
//! [`crate::snapshot`]); it goes on its own `SendSnapshot` stream, the file read from
//! disk in 1 MiB chunks on a blocking thread (a few chunks read ahead), the first chunk
//! carrying the file's length and SHA-256. The receiver writes the chunks to a
//! temporary file in its own snapshots dir while hashing them (on a blocking thread),
//! refuses more than announced, fsyncs, checks the checksum, and only then steps the
//! message into raft; the sender reports the outcome to its raft (which retries a
//! failed one). Neither side holds a whole snapshot in memory. A file pruned before the
//! sender opened it fails the send cleanly (raft retries with a newer one); once open,
//! a prune does not disturb it. Every batch names the sender's address, so a node that is
//! just joining can answer a leader it has not heard of yet.
//!
//! The server side ([`RaftTransportService`], `transport/service.rs`) checks who calls:
//! with mutual TLS, every message, forward, membership request and snapshot must come
//! from the node id the caller's certificate names ([`crate::peer_cert`]); a snapshot
//! only from the leader this node follows, within a deadline.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use clockwise_proto::raft::v1 as pb;
use clockwise_proto::raft::v1::raft_transport_client::RaftTransportClient;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::driver::{RaftHandle, Transport};
use crate::identity::{ClusterIdentity, CLUSTER_ID_METADATA};
use crate::member::MemberAddress;
use crate::snapshot::Descriptor;

mod sender;
mod service;
pub use service::{propose_status, RaftTransportService, SNAPSHOT_RECEIVE_TIMEOUT};

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Most messages in one batch.
const MAX_BATCH: usize = 256;
/// Most bytes in one batch (well under the receiving server's decoding limit).
const MAX_BATCH_BYTES: usize = 2 << 20;
/// The largest batch (a `Send` call, or one message of a `Stream`) the server accepts.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Deadline of one `Send` call; how long a batch may wait for room on a stream.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a node pings a peer it has calls open to, and how long the answer may
/// take before the connection is given up.
const PEER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const PEER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes of snapshot data per `SendSnapshot` chunk.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Chunks read ahead of the network, per snapshot sent or received.
const SNAPSHOT_READ_AHEAD: usize = 4;
/// The largest snapshot a node accepts (streamed to disk, never held in memory).
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 30;
/// Deadline of one whole `SendSnapshot` call, as the sender sets it.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The gRPC metadata key naming the leader when a node refuses a forwarded write.
pub const LEADER_METADATA: &str = "x-clockwise-leader";

/// The gRPC metadata key (value `1`) marking a refusal after which the request may or
/// may not be applied: the forwarding node must not send it again, and reads this
/// marker, not the message, to know it.
pub const OUTCOME_UNKNOWN_METADATA: &str = "x-clockwise-outcome-unknown";

/// How a node reaches its peers: mutual TLS when configured (its peer certificate,
/// and the peer CA their certificates must chain to), and the bearer token of the
/// `peer` role when the cluster requires tokens.
#[derive(Clone, Default)]
pub struct PeerAccess {
    pub auth: PeerAuth,
    pub tls: Option<ClientTlsConfig>,
}

impl PeerAccess {
    /// The endpoint of the peer whose raft transport is at `address` (`host:port`).
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, tonic::transport::Error> {
        let endpoint = match &self.tls {
            Some(tls) => {
                Endpoint::from_shared(format!("https://{address}"))?.tls_config(tls.clone())?
            }
            None => Endpoint::from_shared(format!("http://{address}"))?,
        };
        // A raft stream is always open and has no deadline: a peer gone without a reset
        // (a dead machine, a dropped route) is noticed by its unanswered pings, and the
        // next batch opens a new connection.
        Ok(endpoint
            .http2_keep_alive_interval(PEER_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(PEER_KEEPALIVE_TIMEOUT))
    }

    /// A client of the peer at `endpoint`, presenting this node's token.
    pub fn client(&self, endpoint: Endpoint) -> PeerClient {
        RaftTransportClient::with_interceptor(endpoint.connect_lazy(), self.auth.clone())
    }
}

/// What a node presents to its peers on every call: the `peer` role's token and its
/// cluster id (once known).
#[derive(Clone, Default)]
pub struct PeerAuth {
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    identity: ClusterIdentity,
}

impl PeerAuth {
    /// `None`: peers require no token. A token that is not valid header text is
    /// refused here (the token file's rules already exclude it).
    pub fn new(token: Option<&str>) -> Result<PeerAuth, String> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map(|mut value: tonic::metadata::MetadataValue<_>| {
                        // Kept out of HTTP/2's header compression table (HPACK).
                        value.set_sensitive(true);
                        value
                    })
                    .map_err(|_| "the peer token is not valid header text".to_owned())
            })
            .transpose()
            .map(|token| PeerAuth {
                token,
                identity: ClusterIdentity::default(),
            })
    }

    /// Presents `identity`'s cluster id too, and checks peers' against it.
    #[must_use]
    pub fn with_identity(mut self, identity: ClusterIdentity) -> Self {
        self.identity = identity;
        self
    }

    pub fn identity(&self) -> &ClusterIdentity {
        &self.identity
    }
}

impl tonic::service::Interceptor for PeerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        if let Some(value) = self.identity.get().and_then(|id| id.parse().ok()) {
            request.metadata_mut().insert(CLUSTER_ID_METADATA, value);
        }
        Ok(request)
    }
}

/// A client of a peer's raft transport, presenting this node's [`PeerAuth`].
pub type PeerClient = RaftTransportClient<InterceptedService<Channel, PeerAuth>>;

/// Outbound raft messages, one queue and sender task per peer.
pub struct GrpcTransport {
    origin: Origin,
    runtime: tokio::runtime::Handle,
    peers: RwLock<HashMap<u64, Peer>>,
    access: PeerAccess,
    /// Peer calls refused because the caller's certificate did not prove the node id
    /// the call claimed (or named none): counted by the server side, read by metrics.
    identity_refusals: Arc<AtomicU64>,
    /// Raft messages taken from peers, by raft message type
    /// (`clockwise_raft_peer_messages_received_total`): counted by the server side.
    received: prometheus::IntCounterVec,
    /// Its series, one per [`ReceivedKind`] at that kind's discriminant, resolved once
    /// (not a label lookup per message) and so shown from the start.
    received_by_kind: Vec<prometheus::IntCounter>,
}

/// The `type` label of `clockwise_raft_peer_messages_received_total`: a bounded set,
/// whatever a peer sends.
#[derive(Clone, Copy)]
enum ReceivedKind {
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    Vote,
    VoteResponse,
    Snapshot,
    ReadIndex,
    Other,
}

impl ReceivedKind {
    /// Every kind, each at the index of its discriminant.
    const ALL: [ReceivedKind; 9] = [
        ReceivedKind::Append,
        ReceivedKind::AppendResponse,
        ReceivedKind::Heartbeat,
        ReceivedKind::HeartbeatResponse,
        ReceivedKind::Vote,
        ReceivedKind::VoteResponse,
        ReceivedKind::Snapshot,
        ReceivedKind::ReadIndex,
        ReceivedKind::Other,
    ];

    fn of(message_type: MessageType) -> Self {
        match message_type {
            MessageType::MsgAppend => ReceivedKind::Append,
            MessageType::MsgAppendResponse => ReceivedKind::AppendResponse,
            MessageType::MsgHeartbeat => ReceivedKind::Heartbeat,
            MessageType::MsgHeartbeatResponse => ReceivedKind::HeartbeatResponse,
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => ReceivedKind::Vote,
            MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse => {
                ReceivedKind::VoteResponse
            }
            MessageType::MsgSnapshot => ReceivedKind::Snapshot,
            MessageType::MsgReadIndex | MessageType::MsgReadIndexResp => ReceivedKind::ReadIndex,
            _ => ReceivedKind::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            ReceivedKind::Append => "append",
            ReceivedKind::AppendResponse => "append_response",
            ReceivedKind::Heartbeat => "heartbeat",
            ReceivedKind::HeartbeatResponse => "heartbeat_response",
            ReceivedKind::Vote => "vote",
            ReceivedKind::VoteResponse => "vote_response",
            ReceivedKind::Snapshot => "snapshot",
            ReceivedKind::ReadIndex => "read_index",
            ReceivedKind::Other => "other",
        }
    }
}

/// Who sends: what every outbound call names, and the driver told how snapshot sends
/// ended.
#[derive(Clone)]
struct Origin {
    id: u64,
    /// Where peers reach this node.
    address: String,
    driver: Arc<OnceLock<RaftHandle>>,
    /// Messages that could not be queued for a peer and calls to it that failed, by
    /// peer id (`clockwise_raft_peer_send_failures_total`).
    send_failures: prometheus::IntCounterVec,
}

impl Origin {
    fn send_failed(&self, peer: u64) {
        self.send_failures
            .with_label_values(&[&peer.to_string()])
            .inc();
    }
}

struct Peer {
    address: String,
    queue: mpsc::Sender<Message>,
}

impl GrpcTransport {
    /// A transport for node `id`, reachable at `address`; its tasks run on `runtime`;
    /// it reaches peers as `access` says.
    pub fn new(
        id: u64,
        address: String,
        runtime: tokio::runtime::Handle,
        access: PeerAccess,
    ) -> Arc<Self> {
        let received = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "clockwise_raft_peer_messages_received_total",
                "Raft messages taken from peers (after the sender's identity was checked), by raft message type.",
            ),
            &["type"],
        )
        .expect("a valid counter");
        let received_by_kind = ReceivedKind::ALL
            .iter()
            .map(|kind| received.with_label_values(&[kind.label()]))
            .collect();
        Arc::new(GrpcTransport {
            origin: Origin {
                id,
                address,
                driver: Arc::new(OnceLock::new()),
                send_failures: prometheus::IntCounterVec::new(
                    prometheus::Opts::new(
                        "clockwise_raft_peer_send_failures_total",
                        "Raft messages to a peer dropped (its queue full) and calls to it that failed, by peer id; raft retransmits.",
                    ),
                    &["peer"],
                )
                .expect("a valid counter"),
            },
            runtime,
            peers: RwLock::new(HashMap::new()),
            access,
            identity_refusals: Arc::default(),
            received,
            received_by_kind,
        })
    }

    /// This node's raft id, which its calls to peers declare.
    pub fn id(&self) -> u64 {
        self.origin.id
    }

    /// Peer calls refused so far because the caller's certificate did not name the
    /// node it claimed to be.
    pub fn identity_refusals(&self) -> u64 {
        self.identity_refusals.load(Ordering::Relaxed)
    }

    /// The counter behind [`GrpcTransport::identity_refusals`], for a metrics page.
    pub fn identity_refusal_counter(&self) -> Arc<AtomicU64> {
        self.identity_refusals.clone()
    }

    /// `clockwise_raft_peer_send_failures_total`, to register on a metrics page.
    pub fn send_failures(&self) -> &prometheus::IntCounterVec {
        &self.origin.send_failures
    }

    /// `clockwise_raft_peer_messages_received_total`, to register on a metrics page.
    pub fn messages_received(&self) -> &prometheus::IntCounterVec {
        &self.received
    }

    /// Counts a raft message taken from a peer, under its [`ReceivedKind`].
    fn count_received(&self, message: &Message) {
        self.received_by_kind[ReceivedKind::of(message.get_msg_type()) as usize].inc();
    }

    fn count_identity_refusal(&self) {
        self.identity_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// How many peers this node sends to.
    fn peer_count(&self) -> usize {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How this node reaches its peers.
    pub fn access(&self) -> &PeerAccess {
        &self.access
    }

    /// Connects the transport to its driver once that runs.
    pub fn set_driver(&self, handle: RaftHandle) {
        let _ = self.origin.driver.set(handle);
    }

    /// Starts sending to `peer` at `address` (a member's addresses: its peer part is
    /// dialled); replaces an older address.
    pub fn add_peer(&self, peer: u64, address: &MemberAddress) {
        let address = address.peer.as_str();
        if peer == self.origin.id || self.address(peer).as_deref() == Some(address) {
            return;
        }
        let (queue, outbox) = mpsc::channel(PEER_QUEUE);
        // Called from the driver thread too: channels need the runtime's context.
        let _runtime = self.runtime.enter();
        let endpoint = self
            .access
            .endpoint(address)
            .map(|e| e.connect_timeout(SEND_TIMEOUT));
        if let Ok(endpoint) = endpoint {
            let client = self.access.client(endpoint);
            self.runtime
                .spawn(sender::send_loop(self.origin.clone(), peer, client, outbox));
        }
        // Its series shows (at 0) from the start, for rates and alerts.
        self.origin
            .send_failures
            .with_label_values(&[&peer.to_string()]);
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        peers.insert(
            peer,
            Peer {
                address: address.to_owned(),
                queue,
            },
        );
    }

    /// Stops sending to `peer` (its task ends when its queue closes).
    pub fn remove_peer(&self, peer: u64) {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        peers.remove(&peer);
    }

    /// Where `peer`'s raft transport is, if known.
    pub fn address(&self, peer: u64) -> Option<String> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        peers.get(&peer).map(|p| p.address.clone())
    }
}

impl Transport for GrpcTransport {
    fn add_peer(&self, id: u64, address: &MemberAddress) {
        GrpcTransport::add_peer(self, id, address);
    }

    fn remove_peer(&self, id: u64) {
        GrpcTransport::remove_peer(self, id);
    }

    fn send(&self, messages: Vec<Message>) {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        for message in messages {
            let (to, snapshot) = (
                message.to,
                message.get_msg_type() == MessageType::MsgSnapshot,
            );
            let queued = peers
                .get(&to)
                .is_some_and(|peer| peer.queue.try_send(message).is_ok());
            // A dropped message is retransmitted by raft, but a dropped snapshot must be
            // reported, or raft waits for it forever.
            if !queued {
                self.origin.send_failed(to);
            }
            if !queued && snapshot {
                if let Some(driver) = self.origin.driver.get() {
                    driver.report_snapshot(to, false);
                }
            }
        }
    }
}

/// Streams the snapshot file a snapshot message names, in chunks read on a blocking
/// thread, and tells raft whether it arrived.
async fn send_snapshot(origin: Origin, mut client: PeerClient, message: Message) {
    let to = message.to;
    let report = |delivered| {
        if let Some(driver) = origin.driver.get() {
            driver.report_snapshot(to, delivered);
        }
    };
    let (Ok(descriptor), Some(driver)) = (
        Descriptor::decode(&message.get_snapshot().data),
        origin.driver.get(),
    ) else {
        return report(false);
    };
    let path = driver.snapshot_dir().join(descriptor.file_name());
    let opened = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        if file.metadata()?.len() != descriptor.len {
            return Err(std::io::Error::other(
                "the file's length is not the descriptor's",
            ));
        }
        Ok(file)
    })
    .await;
    let mut file = match opened {
        Ok(Ok(file)) => file,
        Ok(Err(e)) => {
            // Pruned by a newer snapshot since raft chose it: raft retries.
            tracing::info!(to, index = descriptor.index, error = %e, "snapshot file gone; raft retries");
            return report(false);
        }
        Err(_) => return report(false),
    };
    let header = message.write_to_bytes().unwrap_or_default();
    let first = pb::SnapshotChunk {
        from: origin.id,
        from_address: origin.address.clone(),
        message: header,
        data_len: descriptor.len,
        data_sha256: descriptor.sha256.to_vec(),
        data: Default::default(),
    };
    let (chunks, read) = mpsc::channel(SNAPSHOT_READ_AHEAD);
    tokio::task::spawn_blocking(move || loop {
        let mut data = vec![0u8; SNAPSHOT_CHUNK];
        let mut filled = 0;
        while filled < data.len() {
            match file.read(&mut data[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                // The stream ends short: the receiver refuses it, raft retries.
                Err(_) => return,
            }
        }
        if filled == 0 {
            return;
        }
        data.truncate(filled);
        let chunk = pb::SnapshotChunk {
            data: data.into(),
            ..pb::SnapshotChunk::default()
        };
        if chunks.blocking_send(chunk).is_err() {
            return; // the call ended
        }
    });
    let stream = tokio_stream::once(first).chain(tokio_stream::wrappers::ReceiverStream::new(read));
    let mut request = Request::new(stream);
    request.set_timeout(SNAPSHOT_TIMEOUT);
    let delivered = match client.send_snapshot(request).await {
        Ok(_) => true,
        Err(status) => {
            tracing::warn!(to, error = %status.message(), "sending a snapshot failed; raft retries");
            origin.send_failed(to);
            false
        }
    };
    report(delivered);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_received_kind_sits_at_its_discriminant_with_its_own_label() {
        let labels: Vec<&str> = ReceivedKind::ALL.iter().map(|k| k.label()).collect();
        for (i, kind) in ReceivedKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{}", kind.label());
        }
        let mut unique = labels.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), labels.len(), "{labels:?}");
        assert_eq!(
            ReceivedKind::of(MessageType::MsgRequestPreVote).label(),
            "vote"
        );
        assert_eq!(
            ReceivedKind::of(MessageType::MsgUnreachable).label(),
            "other"
        );
    }
}
