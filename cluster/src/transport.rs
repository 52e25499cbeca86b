//! Raft messages between nodes over gRPC (`clockwise.raft.v1.RaftTransport`), and
//! writes forwarded to the leader.
//!
//! Messages travel as opaque bytes encoded by raft's own protobuf codec, so raft's
//! protobuf never meets tonic's prost. Outbound, each peer has a bounded queue and one
//! task that sends what accumulated as one batch; a full queue or a failed send drops
//! messages, which raft retransmits. The driver thread only ever enqueues.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use clockwise_proto::raft::v1 as pb;
use clockwise_proto::raft::v1::raft_transport_client::RaftTransportClient;
use clockwise_proto::raft::v1::raft_transport_server::RaftTransport;
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::driver::{ProposeError, RaftHandle, Transport};

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

/// The gRPC metadata key naming the leader when a node refuses a forwarded write.
pub const LEADER_METADATA: &str = "x-clockwise-leader";

/// Outbound raft messages, one queue and sender task per peer.
pub struct GrpcTransport {
    id: u64,
    runtime: tokio::runtime::Handle,
    peers: RwLock<HashMap<u64, Peer>>,
}

struct Peer {
    address: String,
    queue: mpsc::Sender<Message>,
}

impl GrpcTransport {
    /// A transport for node `id`; its tasks run on `runtime`.
    pub fn new(id: u64, runtime: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(GrpcTransport {
            id,
            runtime,
            peers: RwLock::new(HashMap::new()),
        })
    }

    /// Starts sending to `peer` at `address` (`host:port`); replaces an older address.
    pub fn add_peer(&self, peer: u64, address: &str) {
        if peer == self.id {
            return;
        }
        let (queue, outbox) = mpsc::channel(PEER_QUEUE);
        // Called from the driver thread too: channels need the runtime's context.
        let _runtime = self.runtime.enter();
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map(|e| e.connect_timeout(SEND_TIMEOUT).timeout(SEND_TIMEOUT));
        if let Ok(endpoint) = endpoint {
            let client = RaftTransportClient::new(endpoint.connect_lazy());
            self.runtime.spawn(send_loop(self.id, client, outbox));
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

    /// The address of `peer`, if known.
    pub fn address(&self, peer: u64) -> Option<String> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        peers.get(&peer).map(|p| p.address.clone())
    }

    /// Every known peer and its address.
    pub fn peers(&self) -> Vec<(u64, String)> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<_> = peers
            .iter()
            .map(|(&id, p)| (id, p.address.clone()))
            .collect();
        list.sort_unstable();
        list
    }
}

impl Transport for GrpcTransport {
    fn add_peer(&self, id: u64, address: &str) {
        GrpcTransport::add_peer(self, id, address);
    }

    fn remove_peer(&self, id: u64) {
        GrpcTransport::remove_peer(self, id);
    }

    fn send(&self, messages: Vec<Message>) {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        for message in messages {
            if let Some(peer) = peers.get(&message.to) {
                // Full: dropped; raft retransmits.
                let _ = peer.queue.try_send(message);
            }
        }
    }
}

async fn send_loop(
    from: u64,
    mut client: RaftTransportClient<Channel>,
    mut outbox: mpsc::Receiver<Message>,
) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while outbox.recv_many(&mut queued, MAX_BATCH).await > 0 {
        // One call carries at most MAX_BATCH_BYTES: a message to a lagging peer holds up
        // to raft's max_size_per_msg of entries, and the server refuses larger calls.
        let mut messages = Vec::new();
        let mut bytes = 0;
        for message in queued.drain(..) {
            let Ok(encoded) = message.write_to_bytes() else {
                continue;
            };
            if bytes + encoded.len() > MAX_BATCH_BYTES && !messages.is_empty() {
                let batch = std::mem::take(&mut messages);
                // A failed send loses the batch; raft retransmits what matters.
                let _ = client
                    .send(pb::RaftMessageBatch {
                        from,
                        messages: batch,
                    })
                    .await;
                bytes = 0;
            }
            bytes += encoded.len();
            messages.push(encoded);
        }
        if !messages.is_empty() {
            let _ = client.send(pb::RaftMessageBatch { from, messages }).await;
        }
    }
}

/// The server side: peer messages go to the driver; forwarded writes are proposed here.
pub struct RaftTransportService {
    handle: RaftHandle,
}

impl RaftTransportService {
    pub fn new(handle: RaftHandle) -> Self {
        RaftTransportService { handle }
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn send(
        &self,
        request: Request<pb::RaftMessageBatch>,
    ) -> Result<Response<pb::SendAck>, Status> {
        for bytes in request.into_inner().messages {
            let message = Message::parse_from_bytes(&bytes).map_err(|e| {
                Status::invalid_argument(format!("messages: not a raft message: {e}"))
            })?;
            self.handle.step(message);
        }
        Ok(Response::new(pb::SendAck {}))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let command = request.into_inner().command;
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
            let mut status = Status::failed_precondition("not the leader");
            if let Some(leader) = leader {
                if let Ok(value) = leader.to_string().parse() {
                    status.metadata_mut().insert(LEADER_METADATA, value);
                }
            }
            status
        }
        ProposeError::Busy => Status::resource_exhausted("the proposal queue is full; retry later"),
        ProposeError::Unknown => {
            Status::unavailable("leadership changed; the write may or may not be applied")
        }
        ProposeError::Stopped => Status::unavailable("the node is stopping"),
        ProposeError::Refused(why) => Status::failed_precondition(why),
    }
}
