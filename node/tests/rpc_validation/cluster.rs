//! `clockwise.cluster.v1.Cluster`: membership input refused naming the field, requests
//! that are well formed but impossible in a group of one refused as FAILED_PRECONDITION
//! naming the field, and `Status` and `Snapshot` served.

use clockwise_proto::cluster::v1 as cl;
use clockwise_proto::cluster::v1::cluster_client::ClusterClient;
use tonic::Code;

use crate::harness::TestNode;
use crate::table::{assert_none, refusal, served_ok};

/// Addresses that are not `host:port` as peers dial them.
const BAD_ADDRESSES: &[&str] = &[
    "",
    "nohost",
    ":80",
    "h:0",
    "h:99999",
    "h:x",
    "http://h:1",
    "h 1:2",
    "h:1|h:2",
];

fn add(id: u64, address: &str, peer_address: &str) -> cl::AddMemberRequest {
    cl::AddMemberRequest {
        id,
        address: address.into(),
        peer_address: peer_address.into(),
    }
}

pub async fn check(node: &TestNode) {
    let mut c = ClusterClient::new(node.channel());
    let ok = "127.0.0.1:1";
    let before = node.applied().await;
    let own_id = node.status().await.id;

    // Malformed: INVALID_ARGUMENT naming the field.
    let mut cases = vec![("AddMember", add(0, ok, ok), "id")];
    for &bad in BAD_ADDRESSES {
        cases.push(("AddMember", add(2, bad, ok), "address"));
        cases.push(("AddMember", add(2, ok, bad), "peer_address"));
    }
    let mut problems = Vec::new();
    for (rpc, request, field) in cases {
        let what = format!("{request:?}");
        let result = c.add_member(request).await.map(drop);
        problems.extend(
            refusal(rpc, &result, Code::InvalidArgument, field).map(|p| format!("{what}: {p}")),
        );
    }
    let removed = c
        .remove_member(cl::RemoveMemberRequest { id: 0 })
        .await
        .map(drop);
    problems.extend(refusal(
        "RemoveMember",
        &removed,
        Code::InvalidArgument,
        "id",
    ));
    let moved = c
        .transfer_leader(cl::TransferLeaderRequest { target_id: 0 })
        .await
        .map(drop);
    problems.extend(refusal(
        "TransferLeader",
        &moved,
        Code::InvalidArgument,
        "target_id",
    ));

    // Well formed but impossible: FAILED_PRECONDITION naming the field.
    let member = c.add_member(add(own_id, ok, ok)).await.map(drop);
    problems.extend(refusal(
        "AddMember (a member)",
        &member,
        Code::FailedPrecondition,
        "id",
    ));
    let stranger = c
        .remove_member(cl::RemoveMemberRequest { id: 7 })
        .await
        .map(drop);
    problems.extend(refusal(
        "RemoveMember (no member)",
        &stranger,
        Code::FailedPrecondition,
        "id",
    ));
    let to_stranger = c
        .transfer_leader(cl::TransferLeaderRequest { target_id: 7 })
        .await
        .map(drop);
    problems.extend(refusal(
        "TransferLeader (no member)",
        &to_stranger,
        Code::FailedPrecondition,
        "target_id",
    ));
    // The leader of a group of one cannot remove itself.
    let itself = c
        .remove_member(cl::RemoveMemberRequest { id: own_id })
        .await
        .map(drop);
    problems.extend(refusal(
        "RemoveMember (itself)",
        &itself,
        Code::FailedPrecondition,
        "id",
    ));
    assert_none("Cluster input", &problems);

    // Still a group of one that this node leads, and nothing else changed.
    let status = node.status().await;
    let ids: Vec<u64> = status.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![own_id]);
    let after = (status.applied_index, status.state_digest.clone());
    assert_eq!(after, before, "the refused changes applied something");
    let to_itself = cl::TransferLeaderRequest { target_id: own_id };
    let leader = served_ok("TransferLeader", c.transfer_leader(to_itself).await).leader_id;
    assert_eq!(leader, own_id);

    // Snapshot: the first chunk describes the body the rest carry, at this state.
    let mut stream = served_ok("Snapshot", c.snapshot(cl::SnapshotRequest {}).await);
    let first = stream
        .message()
        .await
        .expect("a first chunk")
        .expect("not empty");
    let mut body = 0u64;
    while let Some(chunk) = stream.message().await.expect("every chunk arrives") {
        body += chunk.data.len() as u64;
    }
    assert_eq!(body, first.total_bytes);
    let now = node.status().await;
    assert_eq!(first.state_digest, now.state_digest);
    assert!(
        first.index <= now.applied_index && first.index > 0,
        "{first:?}"
    );
}
