//! `clockwise.cluster.v1.Cluster`: this node's view of the raft group, membership
//! changes and leadership transfer (through the leader, answered once applied here).

use std::sync::Arc;

use clockwise_cluster::driver::Role;
use clockwise_cluster::{MemberAddress, MembershipChange};
use clockwise_proto::cluster::v1 as pb;
use clockwise_proto::cluster::v1::cluster_server::Cluster;
use tonic::Request;

use sha2::{Digest, Sha256};

use super::error::ServiceError;
use super::state::NodeState;
use super::validate;
use super::{ok, Reply};
use crate::machine::EngineMachine;

pub struct ClusterService {
    state: Arc<NodeState>,
    /// Where this node serves clients and peers (as bound: port 0 resolved).
    address: MemberAddress,
}

impl ClusterService {
    pub fn new(state: Arc<NodeState>, address: MemberAddress) -> Self {
        ClusterService { state, address }
    }
}

impl ClusterService {
    fn members(&self) -> Vec<pb::Member> {
        let status = self.state.replica().status();
        let mut members: Vec<pb::Member> = status
            .voters
            .iter()
            .map(|&id| (id, false))
            .chain(status.learners.iter().map(|&id| (id, true)))
            .map(|(id, learner)| {
                let address = if id == status.id {
                    self.address.clone()
                } else {
                    status
                        .members
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| MemberAddress::new("", ""))
                };
                pb::Member {
                    id,
                    address: address.client,
                    learner,
                    peer_address: address.peer,
                }
            })
            .collect();
        members.sort_by_key(|m| m.id);
        members
    }
}

/// Bytes of body per `Snapshot` chunk.
const SNAPSHOT_CHUNK: usize = 1 << 20;

type SnapshotStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::SnapshotChunk, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Cluster for ClusterService {
    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _req: Request<pb::SnapshotRequest>) -> Reply<SnapshotStream> {
        let backup = self
            .state
            .replica()
            .backup(self.state.timeout())
            .await
            .map_err(ServiceError::from)?;
        let state_digest = EngineMachine::digest_of_snapshot(&backup.state)
            .map_err(|e| ServiceError::Internal(format!("snapshot state: {e}")))?;
        let body = backup.body;
        let first = pb::SnapshotChunk {
            index: backup.index,
            term: backup.term,
            total_bytes: body.len() as u64,
            sha256: Sha256::digest(&body).to_vec(),
            state_digest,
            data: Vec::new(),
        };
        let pieces: Vec<pb::SnapshotChunk> = body
            .chunks(SNAPSHOT_CHUNK)
            .map(|piece| pb::SnapshotChunk {
                data: piece.to_vec(),
                ..pb::SnapshotChunk::default()
            })
            .collect();
        let chunks = std::iter::once(first).chain(pieces).map(Ok);
        ok(Box::pin(tokio_stream::iter(chunks)) as SnapshotStream)
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        let status = self.state.replica().status();
        let role = match status.role {
            Role::Leader => pb::Role::Leader,
            _ if status.learners.contains(&status.id) => pb::Role::Learner,
            Role::Follower => pb::Role::Follower,
            Role::Candidate => pb::Role::Candidate,
        };
        ok(pb::StatusResponse {
            id: status.id,
            role: role as i32,
            leader_id: status.leader_id,
            term: status.term,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            members: self.members(),
            state_digest: self.state.state_digest(),
            snapshot_index: status.snapshot_index,
            first_log_index: status.first_index,
            cluster_id: self
                .state
                .replica()
                .transport()
                .access()
                .auth
                .identity()
                .get()
                .unwrap_or_default(),
        })
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Reply<pb::AddMemberResponse> {
        let request = request.into_inner();
        let id = validate::member_id("id", request.id)?;
        let address = MemberAddress::new(
            validate::member_address("address", &request.address)?,
            validate::member_address("peer_address", &request.peer_address)?,
        );
        self.state
            .replica()
            .change_membership(
                MembershipChange::AddLearner { id, address },
                self.state.timeout(),
            )
            .await
            .map_err(ServiceError::from)?;
        ok(pb::AddMemberResponse {
            members: self.members(),
        })
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::RemoveMemberResponse> {
        let id = validate::member_id("id", request.into_inner().id)?;
        self.state
            .replica()
            .change_membership(MembershipChange::Remove { id }, self.state.timeout())
            .await
            .map_err(ServiceError::from)?;
        let voters = self.state.replica().status().voters.len();
        if let Some(warning) = crate::config::few_voters_warning(voters) {
            tracing::warn!(removed = id, voters, "{warning}");
        }
        ok(pb::RemoveMemberResponse {
            members: self.members(),
        })
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Reply<pb::TransferLeaderResponse> {
        let target = validate::member_id("target_id", request.into_inner().target_id)?;
        let leader_id = self
            .state
            .replica()
            .transfer_leader(target, self.state.timeout())
            .await
            .map_err(ServiceError::from)?;
        ok(pb::TransferLeaderResponse { leader_id })
    }
}
