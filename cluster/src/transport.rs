//! Raft messages between nodes over gRPC (`clockwise.raft.v1.RaftTransport`), and
//! writes forwarded to the leader.
//!
//! Messages travel as opaque bytes encoded by raft's own protobuf codec, so raft's
//! protobuf never meets tonic's prost. Outbound, each peer has a bounded queue and one
//! task that sends what accumulated as one batch; a full queue or a failed send drops
//! messages, which raft retransmits. The driver thread only ever enqueues.
//!
//! A snapshot message goes on its own `SendSnapshot` stream in 1 MiB chunks, the first
//! carrying the data's length and SHA-256; the receiver steps it into raft only when
//! all of it arrived intact, and the sender reports the outcome to its raft (which
//! retries a failed one). Every batch names the sender's address, so a node that is
//! just joining can answer a leader it has not heard of yet.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use clockwise_proto::raft::v1 as pb;
use clockwise_proto::raft::v1::raft_transport_client::RaftTransportClient;
use clockwise_proto::raft::v1::raft_transport_server::RaftTransport;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::driver::{MembershipChange, ProposeError, RaftHandle, Transport};
use crate::identity::{is_well_formed, Admission, ClusterIdentity, CLUSTER_ID_METADATA};
use crate::member::MemberAddress;
use crate::snapshot::sha256;

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Most messages in one `Send` call.
const MAX_BATCH: usize = 256;
/// Most bytes in one `Send` call (well under the receiving server's decoding limit).
const MAX_BATCH_BYTES: usize = 2 << 20;
/// The largest `Send` call the server accepts.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Deadline of one `Send` call.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of snapshot data per `SendSnapshot` chunk.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// The largest snapshot a node accepts.
pub const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;
/// Deadline of one whole `SendSnapshot` call.
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
        match &self.tls {
            Some(tls) => {
                Endpoint::from_shared(format!("https://{address}"))?.tls_config(tls.clone())
            }
            None => Endpoint::from_shared(format!("http://{address}")),
        }
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
}

/// Who sends: what every outbound call names, and the driver told how snapshot sends
/// ended.
#[derive(Clone)]
struct Origin {
    id: u64,
    /// Where peers reach this node.
    address: String,
    driver: Arc<OnceLock<RaftHandle>>,
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
        Arc::new(GrpcTransport {
            origin: Origin {
                id,
                address,
                driver: Arc::new(OnceLock::new()),
            },
            runtime,
            peers: RwLock::new(HashMap::new()),
            access,
        })
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
                .spawn(send_loop(self.origin.clone(), client, outbox));
        }
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
            if !queued && snapshot {
                if let Some(driver) = self.origin.driver.get() {
                    driver.report_snapshot(to, false);
                }
            }
        }
    }
}

async fn send_loop(origin: Origin, mut client: PeerClient, mut outbox: mpsc::Receiver<Message>) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while outbox.recv_many(&mut queued, MAX_BATCH).await > 0 {
        // One call carries at most MAX_BATCH_BYTES: a message to a lagging peer holds up
        // to raft's max_size_per_msg of entries, and the server refuses larger calls.
        let mut messages = Vec::new();
        let mut bytes = 0;
        for message in queued.drain(..) {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                // Its own stream, so heartbeats keep flowing meanwhile.
                tokio::spawn(send_snapshot(origin.clone(), client.clone(), message));
                continue;
            }
            let Ok(encoded) = message.write_to_bytes() else {
                continue;
            };
            if bytes + encoded.len() > MAX_BATCH_BYTES && !messages.is_empty() {
                let batch = std::mem::take(&mut messages);
                send_batch(&origin, &mut client, batch).await;
                bytes = 0;
            }
            bytes += encoded.len();
            messages.push(encoded);
        }
        if !messages.is_empty() {
            send_batch(&origin, &mut client, messages).await;
        }
    }
}

/// Sends one batch; a failed send loses it, and raft retransmits what matters.
async fn send_batch(origin: &Origin, client: &mut PeerClient, messages: Vec<Vec<u8>>) {
    let mut request = Request::new(pb::RaftMessageBatch {
        from: origin.id,
        messages,
        from_address: origin.address.clone(),
    });
    request.set_timeout(SEND_TIMEOUT);
    let _ = client.send(request).await;
}

/// Streams a snapshot message in chunks and tells raft whether it arrived.
async fn send_snapshot(origin: Origin, mut client: PeerClient, mut message: Message) {
    let to = message.to;
    let data = message.mut_snapshot().take_data();
    if data.len() as u64 > MAX_SNAPSHOT_BYTES {
        tracing::error!(
            to,
            bytes = data.len(),
            "the snapshot is larger than a node accepts; the follower cannot catch up"
        );
        if let Some(driver) = origin.driver.get() {
            driver.report_snapshot(to, false);
        }
        return;
    }
    let header = message.write_to_bytes().unwrap_or_default();
    let first = pb::SnapshotChunk {
        from: origin.id,
        from_address: origin.address.clone(),
        message: header,
        data_len: data.len() as u64,
        data_sha256: sha256(&data).to_vec(),
        data: Vec::new(),
    };
    let pieces = (0..data.len())
        .step_by(SNAPSHOT_CHUNK)
        .map(move |at| pb::SnapshotChunk {
            data: data[at..(at + SNAPSHOT_CHUNK).min(data.len())].to_vec(),
            ..pb::SnapshotChunk::default()
        });
    let mut request = Request::new(tokio_stream::iter(std::iter::once(first).chain(pieces)));
    request.set_timeout(SNAPSHOT_TIMEOUT);
    let delivered = match client.send_snapshot(request).await {
        Ok(_) => true,
        Err(status) => {
            tracing::warn!(to, error = %status.message(), "sending a snapshot failed; raft retries");
            false
        }
    };
    if let Some(driver) = origin.driver.get() {
        driver.report_snapshot(to, delivered);
    }
}

/// The server side: peer messages go to the driver; forwarded writes are proposed here.
pub struct RaftTransportService {
    handle: RaftHandle,
    transport: Arc<GrpcTransport>,
    /// One snapshot is received at a time (each may hold a whole state in memory).
    receiving: tokio::sync::Semaphore,
}

impl RaftTransportService {
    pub fn new(handle: RaftHandle, transport: Arc<GrpcTransport>) -> Self {
        RaftTransportService {
            handle,
            transport,
            receiving: tokio::sync::Semaphore::new(1),
        }
    }

    /// Learns a sender this node has no address for (a joining node hears from the
    /// leader before it has applied the membership that names it).
    /// Checks the caller's cluster id against this node's: another cluster's call is
    /// refused (FAILED_PRECONDITION, logged with both ids). A node without an id adopts
    /// the caller's, persisted before the call goes on, only from a leader's messages
    /// (`from_leader`): a joining node learns its cluster from the leader that added
    /// it, never from a stray candidate.
    fn admit<T>(&self, request: &Request<T>, from: u64, from_leader: bool) -> Result<(), Status> {
        let identity = self.transport.access().auth.identity();
        let theirs = match request.metadata().get(CLUSTER_ID_METADATA) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .filter(|id| is_well_formed(id))
                    .ok_or_else(|| {
                        Status::invalid_argument(format!("{CLUSTER_ID_METADATA}: not a cluster id"))
                    })?,
            ),
        };
        let admission = match (identity.get(), theirs) {
            (None, Some(_)) if !from_leader => Ok(Admission::Accept),
            _ => identity.admit(theirs),
        };
        match admission {
            Ok(Admission::Accept) => Ok(()),
            Ok(Admission::Adopted) => {
                tracing::info!(cluster_id = theirs, from, "joined cluster: stored its id");
                Ok(())
            }
            Ok(Admission::Refuse { ours, theirs }) => {
                tracing::warn!(
                    ours = %ours,
                    theirs = %theirs,
                    from,
                    "refused a peer of another cluster"
                );
                Err(Status::failed_precondition(format!(
                    "{CLUSTER_ID_METADATA}: this node belongs to cluster {ours}, the caller \
                     (node {from}) to cluster {theirs}"
                )))
            }
            Err(e) => Err(Status::internal(format!(
                "cannot store the cluster id: {e}"
            ))),
        }
    }

    fn learn_sender(&self, from: u64, address: &str) {
        if from != 0 && !address.is_empty() && self.transport.address(from).is_none() {
            // A bare `host:port`, which decodes as both addresses.
            self.transport
                .add_peer(from, &MemberAddress::decode(address));
        }
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn send(
        &self,
        request: Request<pb::RaftMessageBatch>,
    ) -> Result<Response<pb::SendAck>, Status> {
        let messages = request
            .get_ref()
            .messages
            .iter()
            .map(|bytes| {
                Message::parse_from_bytes(bytes).map_err(|e| {
                    Status::invalid_argument(format!("messages: not a raft message: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let from_leader = messages.iter().any(|m| {
            matches!(
                m.get_msg_type(),
                MessageType::MsgAppend | MessageType::MsgHeartbeat
            )
        });
        self.admit(&request, request.get_ref().from, from_leader)?;
        let batch = request.into_inner();
        self.learn_sender(batch.from, &batch.from_address);
        for message in messages {
            self.handle.step(message);
        }
        Ok(Response::new(pb::SendAck {}))
    }

    async fn send_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SendAck>, Status> {
        let _receiving = self
            .receiving
            .try_acquire()
            .map_err(|_| Status::unavailable("another snapshot is being received; retry"))?;
        // Checked before any data is read; the id is adopted (a snapshot comes from a
        // leader) only once the whole snapshot arrived intact, below.
        let identity = self.transport.access().auth.identity().clone();
        let theirs = request
            .metadata()
            .get(CLUSTER_ID_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let (Some(ours), Some(theirs)) = (identity.get(), theirs.as_deref()) {
            if ours != theirs {
                self.admit(&request, 0, false)?;
            }
        }
        let header = Request::from_parts(request.metadata().clone(), Default::default(), ());
        let mut chunks = request.into_inner();
        let first = chunks.next().await.ok_or_else(|| {
            Status::invalid_argument("message: the snapshot stream is empty (no first chunk)")
        })??;
        self.learn_sender(first.from, &first.from_address);
        let mut message = Message::parse_from_bytes(&first.message)
            .map_err(|e| Status::invalid_argument(format!("message: not a raft message: {e}")))?;
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("message: not a snapshot message"));
        }
        if first.data_len > MAX_SNAPSHOT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "data_len: {} bytes is over this node's snapshot limit of {MAX_SNAPSHOT_BYTES}",
                first.data_len
            )));
        }
        let expected = usize::try_from(first.data_len)
            .map_err(|_| Status::resource_exhausted("data_len: too large for this node"))?;
        // Grows as data arrives: the announced length alone reserves at most 64 MiB.
        let mut data = Vec::with_capacity(expected.min(64 << 20));
        data.extend_from_slice(&first.data);
        let mut pieces = 1;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            pieces += 1;
            if data.len() + chunk.data.len() > expected {
                return Err(Status::invalid_argument(
                    "data: more snapshot data than data_len announced",
                ));
            }
            data.extend_from_slice(&chunk.data);
        }
        if data.len() != expected {
            return Err(Status::invalid_argument(format!(
                "data: the snapshot stream ended after {} of {expected} bytes",
                data.len()
            )));
        }
        if sha256(&data).as_slice() != first.data_sha256.as_slice() {
            return Err(Status::data_loss(
                "data_sha256: the snapshot data does not match its checksum",
            ));
        }
        // The envelope has a checksum of its own (over what the leader built): a leader
        // serving a damaged file is refused here, not installed.
        if let Err(e) = crate::snapshot::SnapshotData::decode(&data) {
            return Err(Status::data_loss(format!("data: {e}")));
        }
        tracing::info!(
            from = first.from,
            bytes = expected,
            chunks = pieces,
            "received a snapshot"
        );
        self.admit(&header, first.from, true)?;
        message.mut_snapshot().data = data.into();
        if !self.handle.step(message) {
            return Err(Status::unavailable("the raft queue is full; retry later"));
        }
        Ok(Response::new(pb::SendAck {}))
    }

    async fn change_membership(
        &self,
        request: Request<pb::MembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.admit(&request, 0, false)?;
        let request = request.into_inner();
        let change = pb::MembershipChange::try_from(request.change)
            .unwrap_or(pb::MembershipChange::Unspecified);
        let applied_index = match change {
            pb::MembershipChange::AddLearner => self
                .handle
                .change_membership(MembershipChange::AddLearner {
                    id: request.id,
                    address: MemberAddress::decode(&request.address),
                })
                .await
                .map_err(propose_status)?,
            pb::MembershipChange::Remove => self
                .handle
                .change_membership(MembershipChange::Remove { id: request.id })
                .await
                .map_err(propose_status)?,
            pb::MembershipChange::TransferLeader => {
                self.handle
                    .transfer_leader(request.id)
                    .await
                    .map_err(propose_status)?;
                0
            }
            pb::MembershipChange::Unspecified => {
                return Err(Status::invalid_argument("change: must be set"))
            }
        };
        Ok(Response::new(pb::MembershipResponse {
            applied_index,
            leader_id: self.handle.status().leader_id,
        }))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        self.admit(&request, 0, false)?;
        let command = request.into_inner().command;
        if command.is_empty() {
            // An empty entry would be taken for raft's no-op and never answered.
            return Err(Status::invalid_argument("command: must not be empty"));
        }
        match self.handle.propose(command).await {
            Ok(result) => Ok(Response::new(pb::ForwardResponse { result })),
            Err(e) => Err(propose_status(e)),
        }
    }
}

/// How a refused proposal travels back to a forwarding node.
pub fn propose_status(error: ProposeError) -> Status {
    match error {
        ProposeError::NotLeader { leader } => {
            // The metadata marks the refusal as "not the leader" (0: none known).
            let mut status = Status::failed_precondition("not the leader");
            if let Ok(value) = leader.unwrap_or(0).to_string().parse() {
                status.metadata_mut().insert(LEADER_METADATA, value);
            }
            status
        }
        ProposeError::Busy => Status::resource_exhausted("the proposal queue is full; retry later"),
        ProposeError::Unknown => {
            let mut status =
                Status::unavailable("leadership changed; the write may or may not be applied");
            status.metadata_mut().insert(
                OUTCOME_UNKNOWN_METADATA,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            status
        }
        ProposeError::Stopped => Status::unavailable("the node is stopping"),
        ProposeError::Refused(why) => Status::failed_precondition(why),
        ProposeError::Conflict(why) => Status::aborted(why),
    }
}
