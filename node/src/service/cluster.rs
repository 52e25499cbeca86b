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

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, _req: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        let replica = self.state.replica();
        let status = replica.status();
        let mut members = vec![pb::Member {
            id: status.id,
            address: self.address.clone(),
            learner: false,
        }];
        members.extend(
            replica
                .transport()
                .peers()
                .into_iter()
                .map(|(id, address)| pb::Member {
                    id,
                    address,
                    learner: false,
                }),
        );
        members.sort_by_key(|m| m.id);
        let role = match status.role {
            Role::Leader => pb::Role::Leader,
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
            members,
            state_digest: self.state.state_digest(),
        })
    }

    async fn add_member(
        &self,
        _req: Request<pb::AddMemberRequest>,
    ) -> Reply<pb::AddMemberResponse> {
        Err(Status::unimplemented(
            "AddMember: membership changes are not built yet; the group is fixed by --peers",
        ))
    }

    async fn remove_member(
        &self,
        _req: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::RemoveMemberResponse> {
        Err(Status::unimplemented(
            "RemoveMember: membership changes are not built yet; the group is fixed by --peers",
        ))
    }

    async fn transfer_leader(
        &self,
        _req: Request<pb::TransferLeaderRequest>,
    ) -> Reply<pb::TransferLeaderResponse> {
        Err(Status::unimplemented("TransferLeader: not built yet"))
    }
}
