//! The raft group: each node's view of it, membership changes, leader transfer.

use std::time::Instant;

use clockwise_proto::cluster::v1 as pb;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::call::Reply;
use crate::client::Client;
use crate::error::Error;
use crate::peers::CallKind;
use crate::snapshot::Snapshot;

/// The tonic client of the cluster service.
type Stub = pb::cluster_client::ClusterClient<Channel>;

/// The largest snapshot message taken: a chunk carries 1 MiB of body (the node's
/// `SNAPSHOT_CHUNK`), with room to grow, as `clockwise backup save` allowed.
const SNAPSHOT_MAX_MESSAGE: usize = 16 << 20;

fn snapshot_stub(channel: Channel) -> Stub {
    Stub::new(channel).max_decoding_message_size(SNAPSHOT_MAX_MESSAGE)
}

/// Opens the stream and reads its header, so an attempt succeeds only once the node has
/// taken the snapshot (the part that may fail or take long) and started sending it.
async fn open_snapshot(
    stub: &mut Stub,
    request: tonic::Request<pb::SnapshotRequest>,
) -> Reply<(pb::SnapshotChunk, Streaming<pb::SnapshotChunk>)> {
    let mut stream = stub.snapshot(request).await?.into_inner();
    let header = stream.message().await?.ok_or_else(|| {
        tonic::Status::data_loss("the node ended the snapshot stream before its header")
    })?;
    Ok(tonic::Response::new((header, stream)))
}

/// A node's raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leads the term; takes writes.
    Leader,
    /// A voter following the leader.
    Follower,
    /// A voter asking for votes.
    Candidate,
    /// A member that does not vote yet (catching up after `add_member`).
    Learner,
    /// Not reported.
    Unknown,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Unknown => "unknown",
        })
    }
}

/// One member of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Raft id.
    pub id: u64,
    /// `host:port` clients call.
    pub address: String,
    /// Not voting yet.
    pub learner: bool,
    /// `host:port` of its raft transport (peers only).
    pub peer_address: String,
}

/// One node's view of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The answering node's raft id.
    pub id: u64,
    /// Its role now.
    pub role: Role,
    /// 0 when it knows no leader.
    pub leader_id: u64,
    /// Its raft term.
    pub term: u64,
    /// Highest log index it knows committed.
    pub commit_index: u64,
    /// Highest log index applied to its state.
    pub applied_index: u64,
    /// The membership, by id.
    pub members: Vec<Member>,
    /// Hex SHA-256 of its applied state: equal on replicas at the same applied index.
    pub state_digest: String,
    /// Index of its latest snapshot (0: none).
    pub snapshot_index: u64,
    /// First index still in its log.
    pub first_log_index: u64,
    /// The id of the cluster it belongs to (empty: a joining node not reached yet).
    pub cluster_id: String,
}

fn members(members: Vec<pb::Member>) -> Vec<Member> {
    members
        .into_iter()
        .map(|m| Member {
            id: m.id,
            address: m.address,
            learner: m.learner,
            peer_address: m.peer_address,
        })
        .collect()
}

impl From<pb::StatusResponse> for NodeStatus {
    fn from(s: pb::StatusResponse) -> Self {
        NodeStatus {
            id: s.id,
            role: match pb::Role::try_from(s.role) {
                Ok(pb::Role::Leader) => Role::Leader,
                Ok(pb::Role::Follower) => Role::Follower,
                Ok(pb::Role::Candidate) => Role::Candidate,
                Ok(pb::Role::Learner) => Role::Learner,
                _ => Role::Unknown,
            },
            leader_id: s.leader_id,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            members: members(s.members),
            state_digest: s.state_digest,
            snapshot_index: s.snapshot_index,
            first_log_index: s.first_log_index,
            cluster_id: s.cluster_id,
        }
    }
}

/// The group behind a client ([`Client::cluster`]).
#[derive(Clone)]
pub struct Cluster {
    client: Client,
}

impl Client {
    /// The raft group: status, membership, leadership.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            client: self.clone(),
        }
    }
}

impl Cluster {
    /// One call of the cluster service through the client's call path.
    async fn call<Req: Clone, Resp>(
        &self,
        kind: CallKind,
        request: Req,
        rpc: impl AsyncFn(&mut Stub, tonic::Request<Req>) -> Reply<Resp>,
    ) -> Result<Resp, Error> {
        self.client.call(kind, request, Stub::new, rpc).await
    }

    /// The status as seen by one node (the leader when known), with retries.
    pub async fn status(&self) -> Result<NodeStatus, Error> {
        let request = pb::StatusRequest {};
        let status = self.call(CallKind::Read, request, Stub::status).await?;
        Ok(status.into())
    }

    /// Every known endpoint's own view, each asked once (an unreachable node answers
    /// its error).
    pub async fn statuses(&self) -> Vec<(String, Result<NodeStatus, Error>)> {
        self.client
            .refresh_leader(Instant::now() + std::time::Duration::from_secs(2))
            .await;
        let mut all = Vec::new();
        for peer in self.client.inner.peers.all() {
            let mut request = self.client.authorized(pb::StatusRequest {});
            request.set_timeout(std::time::Duration::from_secs(2));
            let answer = match Stub::new(peer.channel.clone()).status(request).await {
                Ok(reply) => match self
                    .client
                    .inner
                    .peers
                    .check_cluster(&peer, reply.metadata())
                {
                    Ok(()) => Ok(NodeStatus::from(reply.into_inner())),
                    Err(wrong) => Err(wrong),
                },
                Err(status) => Err(Error::from(status)),
            };
            all.push((peer.address.clone(), answer));
        }
        all
    }

    /// Adds node `id`, which clients reach at `address` and peers at `peer_address`
    /// (its `--listen` and `--peer-listen`), as a learner; the leader makes it a voter
    /// once it has caught up. Answers the members. Not retried: on an unknown outcome,
    /// check [`Cluster::status`].
    pub async fn add_member(
        &self,
        id: u64,
        address: &str,
        peer_address: &str,
    ) -> Result<Vec<Member>, Error> {
        let request = pb::AddMemberRequest {
            id,
            address: address.into(),
            peer_address: peer_address.into(),
        };
        let response = self
            .call(CallKind::Admin, request, Stub::add_member)
            .await?;
        Ok(members(response.members))
    }

    /// Removes member `id` (not the leader: transfer leadership first). Answers the
    /// members. Not retried.
    pub async fn remove_member(&self, id: u64) -> Result<Vec<Member>, Error> {
        let request = pb::RemoveMemberRequest { id };
        let response = self
            .call(CallKind::Admin, request, Stub::remove_member)
            .await?;
        Ok(members(response.members))
    }

    /// Hands leadership to voter `target_id`; answers the leader once it took over.
    pub async fn transfer_leader(&self, target_id: u64) -> Result<u64, Error> {
        let request = pb::TransferLeaderRequest { target_id };
        let response = self
            .call(CallKind::Admin, request, Stub::transfer_leader)
            .await?;
        Ok(response.leader_id)
    }

    /// How long each snapshot chunk may take: the attempt timeout, as for a call.
    fn chunk_timeout(&self) -> std::time::Duration {
        self.client.inner.attempt_timeout
    }

    /// A consistent snapshot of one node's state as of its applied index, for a backup:
    /// the leader's when known (it lags least), else another node's. Opening it, up to
    /// its header, is one call with the client's retries and deadlines (the node takes
    /// the snapshot within the attempt's); its body then streams in through
    /// [`Snapshot::chunk`], which checks it. Nodes that check tokens want an admin one.
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        let request = pb::SnapshotRequest {};
        let (header, stream) = self
            .client
            .call(CallKind::Read, request, snapshot_stub, open_snapshot)
            .await?;
        Ok(Snapshot::new(header, stream, self.chunk_timeout()))
    }

    /// [`Cluster::snapshot`] from the node at `endpoint` (`host:port`, one of the
    /// client's endpoints or not), in a single attempt, so a caller going through a
    /// list of nodes moves on at once: as `clockwise backup save` does.
    pub async fn snapshot_from(&self, endpoint: &str) -> Result<Snapshot, Error> {
        let request = pb::SnapshotRequest {};
        let (header, stream) = self
            .client
            .call_at(
                endpoint,
                CallKind::Read,
                request,
                snapshot_stub,
                open_snapshot,
            )
            .await?;
        Ok(Snapshot::new(header, stream, self.chunk_timeout()))
    }
}
