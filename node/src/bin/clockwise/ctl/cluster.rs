//! `clockwise ctl cluster …`: clockwise.cluster.v1.Cluster (status, membership, leadership).

use clap::Subcommand;
use clockwise_client::{Client, Error};

use super::output::Answer;

#[derive(Subcommand, Debug)]
pub(super) enum ClusterCall {
    /// Every endpoint's view of the group (endpoints learned from the cluster too).
    Status,
    /// Add a node (started with --join) as a learner; it becomes a voter once caught up.
    /// ADDRESS and PEER_ADDRESS are its --listen and --peer-listen.
    AddMember {
        id: u64,
        address: String,
        peer_address: String,
    },
    /// Remove a member (not the leader).
    RemoveMember { id: u64 },
    /// Hand leadership to a voter.
    TransferLeader { id: u64 },
}

pub(super) async fn call(client: &Client, call: ClusterCall) -> Result<Answer, Error> {
    let cluster = client.cluster();
    Ok(match call {
        ClusterCall::Status => {
            let mut statuses = cluster.statuses().await;
            statuses.sort_by_key(|(endpoint, status)| {
                (status.as_ref().map_or(u64::MAX, |s| s.id), endpoint.clone())
            });
            Answer::Statuses(statuses)
        }
        ClusterCall::AddMember {
            id,
            address,
            peer_address,
        } => Answer::Members(cluster.add_member(id, &address, &peer_address).await?),
        ClusterCall::RemoveMember { id } => Answer::Members(cluster.remove_member(id).await?),
        ClusterCall::TransferLeader { id } => Answer::Leader(cluster.transfer_leader(id).await?),
    })
}
