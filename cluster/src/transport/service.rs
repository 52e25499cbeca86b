//! The server side of the raft transport: who may say what.
//!
//! - With mutual TLS, a call speaks for the node its certificate names
//!   ([`crate::peer_cert`]): a batch whose messages' `from` is another id, a forward or
//!   membership request declaring another sender, a snapshot from another node, or a
//!   certificate naming no node is refused `PERMISSION_DENIED` and counted
//!   ([`GrpcTransport::identity_refusals`]). Without TLS there is no identity to check.
//! - Addresses learned from senders ([`RaftTransportService::learn_sender`]) must parse
//!   as `host:port`, never replace a known one, and are taken only for members (or, on a
//!   node that knows no membership yet, for a few leaders).
//! - A snapshot is taken only from the leader this node follows in the message's term,
//!   one at a time, and must arrive within a deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use clockwise_proto::raft::v1 as pb;
use clockwise_proto::raft::v1::raft_transport_server::RaftTransport;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::{GrpcTransport, MAX_SNAPSHOT_BYTES, SNAPSHOT_READ_AHEAD, SNAPSHOT_TIMEOUT};
use crate::driver::{MembershipChange, ProposeError, RaftHandle};
use crate::identity::{is_well_formed, Admission, CLUSTER_ID_METADATA};
use crate::member::{valid_host_port, MemberAddress};
use crate::peer_cert;
use crate::snapshot::{Descriptor, Receiver as SnapshotReceiver, SnapshotFileError};

/// Deadline of receiving one whole snapshot, from the call's start: the sender's own
/// deadline, so a sender that stalls mid-stream frees the receiver when it would have
/// given up itself.
pub const SNAPSHOT_RECEIVE_TIMEOUT: Duration = SNAPSHOT_TIMEOUT;

/// Longest address learned from a sender (a DNS name is at most 253 bytes, plus a port).
const MAX_LEARNED_ADDRESS_BYTES: usize = 260;

/// Most senders a node that knows no membership yet (one just joining) learns the
/// address of: it needs only its leader's, and an election or two's worth of others.
const MAX_LEARNED_WITHOUT_MEMBERSHIP: usize = 8;

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
    /// One snapshot is received at a time (each is a file being written and fsynced,
    /// under a name derived from its index and term).
    receiving: tokio::sync::Semaphore,
    /// Deadline of one `SendSnapshot` call here.
    snapshot_timeout: Duration,
}

impl RaftTransportService {
    pub fn new(handle: RaftHandle, transport: Arc<GrpcTransport>) -> Self {
        RaftTransportService {
            handle,
            transport,
            receiving: tokio::sync::Semaphore::new(1),
            snapshot_timeout: SNAPSHOT_RECEIVE_TIMEOUT,
        }
    }

    /// Receives a snapshot within `timeout` instead of [`SNAPSHOT_RECEIVE_TIMEOUT`].
    #[must_use]
    pub fn with_snapshot_timeout(mut self, timeout: Duration) -> Self {
        self.snapshot_timeout = timeout;
        self
    }

    /// The node the caller's peer certificate names, when peers speak mutual TLS
    /// (`None`: they do not, and there is no identity to check).
    ///
    /// # Errors
    /// `PERMISSION_DENIED` (counted): TLS is on, and no certificate names a node.
    fn caller<T>(&self, request: &Request<T>) -> Result<Option<u64>, Status> {
        if self.transport.access().tls.is_none() {
            return Ok(None);
        }
        let certificates = request.peer_certs();
        let Some(certificate) = certificates.as_deref().and_then(|c| c.first()) else {
            return Err(self.refuse("the caller presented no peer certificate".into()));
        };
        peer_cert::node_id(certificate)
            .map(Some)
            .map_err(|e| self.refuse(format!("peer certificate: {e}")))
    }

    /// Refuses a call that claims (in `field`) to come from `claimed` when the caller
    /// proved another id.
    fn check_sender(&self, proven: Option<u64>, field: &str, claimed: u64) -> Result<(), Status> {
        match proven {
            Some(id) if id != claimed => Err(self.refuse(format!(
                "{field}: {claimed} is not the node the caller's peer certificate names ({id})"
            ))),
            _ => Ok(()),
        }
    }

    fn refuse(&self, why: String) -> Status {
        self.transport.count_identity_refusal();
        tracing::warn!(reason = %why, "refused a peer call: identity");
        Status::permission_denied(why)
    }

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

    /// Learns the address of a sender this node has none for: a joining node hears
    /// from the leader before it has applied the membership that names it. Only a
    /// `host:port`, never replacing a known address, only for a member (the driver
    /// dials members at their stored addresses; this covers one stored without), or,
    /// while this node knows no membership, for a few leaders.
    fn learn_sender(&self, from: u64, address: &str, from_leader: bool) {
        if from == 0
            || address.len() > MAX_LEARNED_ADDRESS_BYTES
            || !valid_host_port(address)
            || self.transport.address(from).is_some()
        {
            return;
        }
        let members = self.handle.status().members;
        let learnable = if members.is_empty() {
            from_leader && self.transport.peer_count() < MAX_LEARNED_WITHOUT_MEMBERSHIP
        } else {
            members.contains_key(&from)
        };
        if learnable {
            // A bare `host:port`, which decodes as both addresses.
            self.transport
                .add_peer(from, &MemberAddress::decode(address));
        }
    }

    /// Steps one batch of raft messages from a peer (a `Send` call, or one message of a
    /// `Stream`), after checking who sent it: `caller` is the id the peer certificate
    /// proved, `header` carries the call's metadata.
    fn deliver(
        &self,
        caller: Option<u64>,
        header: &Request<()>,
        batch: pb::RaftMessageBatch,
    ) -> Result<(), Status> {
        let from = batch.from;
        crate::timeline!("peer.received", from);
        self.check_sender(caller, "from", from)?;
        let messages = batch
            .messages
            .iter()
            .map(|bytes| {
                Message::parse_from_bytes(bytes).map_err(|e| {
                    Status::invalid_argument(format!("messages: not a raft message: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Each message names its sender too, and raft believes it: one forged `from`
        // would be a vote or an append acknowledged in another node's name.
        if let Some(forged) = messages.iter().find(|m| m.from != from) {
            self.check_sender(caller, "messages.from", forged.from)?;
            return Err(Status::invalid_argument(format!(
                "messages.from: {} is not the batch's sender {from}",
                forged.from
            )));
        }
        let from_leader = messages.iter().any(|m| {
            matches!(
                m.get_msg_type(),
                MessageType::MsgAppend | MessageType::MsgHeartbeat
            )
        });
        self.admit(header, from, from_leader)?;
        self.learn_sender(from, &batch.from_address, from_leader);
        for message in messages {
            self.transport.count_received(&message);
            self.handle.step(message);
        }
        Ok(())
    }

    /// Refuses a snapshot unless `message` comes from the leader this node follows in
    /// the message's term. Only a leader sends one, after this node answered its
    /// appends in that term, so a legitimate one always finds its sender known as
    /// leader; one from a newer term than this node knows is refused too, and the
    /// leader's retry (after its heartbeats made this node its follower) succeeds.
    fn check_snapshot_leader(&self, message: &Message) -> Result<(), Status> {
        let status = self.handle.status();
        if message.from != 0
            && message.from != status.id
            && message.term == status.term
            && message.from == status.leader_id
        {
            return Ok(());
        }
        let leader = match status.leader_id {
            0 => "no leader".to_owned(),
            id => format!("leader {id}"),
        };
        Err(Status::failed_precondition(format!(
            "message: a snapshot from node {} in term {}, but this node is in term {} with {leader}; \
             only the current leader's snapshots are taken",
            message.from, message.term, status.term
        )))
    }

    /// Receives a snapshot stream by `deadline`: its first chunk, then its data. A
    /// sender that stalls must not hold the receiving slot (or a half-written file)
    /// for longer; the writer is awaited even then, so the slot is free only once its
    /// temporary file is gone.
    async fn receive_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
        caller: Option<u64>,
        deadline: Instant,
    ) -> Result<Response<pb::SendAck>, Status> {
        let late = || {
            Status::deadline_exceeded(format!(
                "data: the snapshot did not arrive within {} ms",
                self.snapshot_timeout.as_millis()
            ))
        };
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
        let first = tokio::time::timeout_at(deadline, chunks.next())
            .await
            .map_err(|_| late())?
            .ok_or_else(|| {
                Status::invalid_argument("message: the snapshot stream is empty (no first chunk)")
            })??;
        self.check_sender(caller, "from", first.from)?;
        let message = Message::parse_from_bytes(&first.message)
            .map_err(|e| Status::invalid_argument(format!("message: not a raft message: {e}")))?;
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("message: not a snapshot message"));
        }
        if message.from != first.from {
            return Err(Status::invalid_argument(
                "message: its sender is not the chunk's `from`",
            ));
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
        self.check_snapshot_leader(&message)?;
        self.learn_sender(first.from, &first.from_address, true);
        // A second stream from the leader while one is still arriving is a retry of
        // a send it gave up on: refused, and raft retries once this one ends.
        let _receiving = self
            .receiving
            .try_acquire()
            .map_err(|_| Status::unavailable("another snapshot is being received; retry"))?;
        // Written and hashed on a blocking thread (fsync never on a tokio worker), fed
        // through a short queue: memory stays a few chunks whatever the size.
        let receiver =
            SnapshotReceiver::create(self.handle.snapshot_dir(), descriptor, MAX_SNAPSHOT_BYTES)
                .map_err(receive_status)?;
        let (pieces, mut arriving) = mpsc::channel::<tonic::codegen::Bytes>(SNAPSHOT_READ_AHEAD);
        let writer = tokio::task::spawn_blocking(move || {
            let mut receiver = receiver;
            while let Some(piece) = arriving.blocking_recv() {
                receiver.write(&piece)?;
            }
            receiver.finish()
        });
        let mut count = 0u64;
        let streaming = async {
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
        };
        let streamed = tokio::time::timeout_at(deadline, streaming)
            .await
            .unwrap_or_else(|_| Err(late()));
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
        self.transport.count_received(&message);
        if !self.handle.step(message) {
            return Err(Status::unavailable("the raft queue is full; retry later"));
        }
        Ok(Response::new(pb::SendAck {}))
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn send(
        &self,
        request: Request<pb::RaftMessageBatch>,
    ) -> Result<Response<pb::SendAck>, Status> {
        let caller = self.caller(&request)?;
        let (metadata, _, batch) = request.into_parts();
        self.deliver(
            caller,
            &Request::from_parts(metadata, Default::default(), ()),
            batch,
        )?;
        Ok(Response::new(pb::SendAck {}))
    }

    async fn stream(
        &self,
        request: Request<Streaming<pb::RaftMessageBatch>>,
    ) -> Result<Response<pb::SendAck>, Status> {
        // The caller's identity and headers are the stream's; every batch is checked as
        // a `Send` would be, and a refused one ends the stream (the sender opens another).
        let caller = self.caller(&request)?;
        let (metadata, _, mut batches) = request.into_parts();
        let header = Request::from_parts(metadata, Default::default(), ());
        while let Some(batch) = batches.message().await? {
            self.deliver(caller, &header, batch)?;
        }
        Ok(Response::new(pb::SendAck {}))
    }

    async fn send_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SendAck>, Status> {
        let caller = self.caller(&request)?;
        let deadline = Instant::now() + self.snapshot_timeout;
        self.receive_snapshot(request, caller, deadline).await
    }

    async fn change_membership(
        &self,
        request: Request<pb::MembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let caller = self.caller(&request)?;
        self.check_sender(caller, "from", request.get_ref().from)?;
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
        let caller = self.caller(&request)?;
        self.check_sender(caller, "from", request.get_ref().from)?;
        self.admit(&request, 0, false)?;
        let command = request.into_inner().command;
        if command.is_empty() {
            // An empty entry would be taken for raft's no-op and never answered.
            return Err(Status::invalid_argument("command: must not be empty"));
        }
        // The state machine checks the command as the client port would have (see
        // `StateMachine::prepare`): `ProposeError::Invalid` names the field.
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
                status.metadata_mut().insert(super::LEADER_METADATA, value);
            }
            status
        }
        ProposeError::Busy => Status::resource_exhausted("the proposal queue is full; retry later"),
        ProposeError::Unknown => {
            let mut status =
                Status::unavailable("leadership changed; the write may or may not be applied");
            status.metadata_mut().insert(
                super::OUTCOME_UNKNOWN_METADATA,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            status
        }
        ProposeError::Stopped => Status::unavailable("the node is stopping"),
        ProposeError::Refused(why) => Status::failed_precondition(why),
        ProposeError::Invalid(why) => Status::invalid_argument(why),
        ProposeError::Conflict(why) => Status::aborted(why),
    }
}
