//! Raft messages between nodes over gRPC (`clockwise.raft.v1.RaftTransport`), and
//! writes forwarded to the leader.
//!
//! Messages travel as opaque bytes encoded by raft's own protobuf codec, so raft's
//! protobuf never meets tonic's prost. Outbound, each peer has a bounded queue and one
//! task that sends what accumulated as one batch; a full queue or a failed send drops
//! messages, which raft retransmits. The driver thread only ever enqueues.
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

use std::collections::HashMap;
use std::io::Read as _;
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
use crate::snapshot::{Descriptor, Receiver as SnapshotReceiver, SnapshotFileError};

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
/// Chunks read ahead of the network, per snapshot sent or received.
const SNAPSHOT_READ_AHEAD: usize = 4;
/// The largest snapshot a node accepts (streamed to disk, never held in memory).
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 30;
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
        data: Vec::new(),
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
            data,
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
            false
        }
    };
    report(delivered);
}

/// How a refused snapshot stream is answered.
fn receive_status(error: SnapshotFileError) -> Status {
    match error {
        SnapshotFileError::TooLarge(..) => Status::resource_exhausted(format!("data_len: {error}")),
        SnapshotFileError::Overrun(_) | SnapshotFileError::Short { .. } => {
            Status::invalid_argument(format!("data: {error}"))
        }
        SnapshotFileError::Checksum => Status::data_loss(format!("data_sha256: {error}")),
        SnapshotFileError::Malformed(_) => Status::invalid_argument(format!("data: {error}")),
        SnapshotFileError::Io { .. } => {
            tracing::error!(error = %error, "cannot store a received snapshot");
            Status::internal("cannot store the snapshot")
        }
    }
}

/// The server side: peer messages go to the driver; forwarded writes are proposed here.
pub struct RaftTransportService {
    handle: RaftHandle,
    transport: Arc<GrpcTransport>,
    /// One snapshot is received at a time (each is a file being written and fsynced).
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
        let message = Message::parse_from_bytes(&first.message)
            .map_err(|e| Status::invalid_argument(format!("message: not a raft message: {e}")))?;
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("message: not a snapshot message"));
        }
        let descriptor = Descriptor::decode(&message.get_snapshot().data).map_err(|e| {
            Status::invalid_argument(format!("message: its snapshot descriptor: {e}"))
        })?;
        let meta = message.get_snapshot().get_metadata();
        if (descriptor.index, descriptor.term) != (meta.index, meta.term)
            || descriptor.len != first.data_len
            || descriptor.sha256.as_slice() != first.data_sha256.as_slice()
        {
            return Err(Status::invalid_argument(
                "data_len, data_sha256: not the snapshot the message describes",
            ));
        }
        // Written and hashed on a blocking thread (fsync never on a tokio worker), fed
        // through a short queue: memory stays a few chunks whatever the size.
        let receiver =
            SnapshotReceiver::create(self.handle.snapshot_dir(), descriptor, MAX_SNAPSHOT_BYTES)
                .map_err(receive_status)?;
        let (pieces, mut arriving) = mpsc::channel::<Vec<u8>>(SNAPSHOT_READ_AHEAD);
        let writer = tokio::task::spawn_blocking(move || {
            let mut receiver = receiver;
            while let Some(piece) = arriving.blocking_recv() {
                receiver.write(&piece)?;
            }
            receiver.finish()
        });
        let mut count = 0u64;
        let streamed: Result<(), Status> = async {
            if !first.data.is_empty() {
                count += 1;
                if pieces.send(first.data).await.is_err() {
                    return Ok(()); // the writer refused it: its error follows
                }
            }
            while let Some(chunk) = chunks.next().await {
                count += 1;
                if pieces.send(chunk?.data).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
        .await;
        drop(pieces);
        let stored = writer
            .await
            .map_err(|_| Status::internal("the snapshot writer failed"))?;
        streamed?;
        stored.map_err(receive_status)?;
        tracing::info!(
            from = first.from,
            index = descriptor.index,
            bytes = descriptor.len,
            chunks = count,
            "received a snapshot"
        );
        self.admit(&header, first.from, true)?;
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
