//! `clockwise.cluster.v1.Cluster`: this node's view of the raft group.

use std::sync::Arc;

use clockwise_cluster::driver::Role;
use clockwise_proto::cluster::v1 as pb;
use clockwise_proto::cluster::v1::cluster_server::Cluster;
use tonic::{Request, Status};

use super::state::NodeState;
use super::{ok, Reply};

pub struct ClusterService {
    state: Arc<NodeState>,
    /// This node's own advertised address.
    address: String,
}

impl ClusterService {
    pub fn new(state: Arc<NodeState>, address: String) -> Self {
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
            .map(|(id, learner)| pb::Member {
                id,
                address: if id == status.id {
                    self.address.clone()
                } else {
                    status.members.get(&id).cloned().unwrap_or_default()
                },
                learner,
            })
            .collect();
        members.sort_by_key(|m| m.id);
        members
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
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
        })
    }

    async fn add_member(
        &self,
        _req: Request<pb::AddMemberRequest>,
    ) -> Reply<pb::AddMemberResponse> {
        Err(Status::unimplemented(
            "AddMember: membership changes are not available yet; the group is fixed by --peers",
        ))
    }

    async fn remove_member(
        &self,
        _req: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::RemoveMemberResponse> {
        Err(Status::unimplemented(
            "RemoveMember: membership changes are not available yet; the group is fixed by --peers",
        ))
    }

    async fn transfer_leader(
        &self,
        _req: Request<pb::TransferLeaderRequest>,
    ) -> Reply<pb::TransferLeaderResponse> {
        Err(Status::unimplemented("TransferLeader: not available yet"))
    }
}
