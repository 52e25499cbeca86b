//! Hostile peers (issue #20), against a real node whose peer port speaks mutual TLS:
//! a certificate from the peer CA speaks only for the node id it names (its URI SAN
//! `clockwise://node/<id>`), so node 2's certificate cannot send raft messages, a
//! forward, a membership change or a snapshot as node 1, and one naming no node gets
//! nothing; every refusal is counted. A forwarded command the client port would refuse
//! (an oversized key or node id, a batch past its cap) is refused naming the field. A
//! node whose own certificate names another id, or none, refuses to start.

use std::time::{Duration, Instant};

use clockwise_engine::{Command, HashRingOp, KeyOperation, KeyOperationKind, Op};
use clockwise_node::machine::codec;
use clockwise_node::service::validate::{MAX_BATCH_OPERATIONS, MAX_ID_BYTES};
use clockwise_proto::cluster::v1::cluster_client::ClusterClient;
use clockwise_proto::cluster::v1::{Role, StatusRequest};
use clockwise_proto::raft::v1 as pb;
use clockwise_proto::raft::v1::raft_transport_client::RaftTransportClient;
use clockwise_tests::certs::{Issued, TestCa};
use clockwise_tests::{unique_temp_dir, NodeProcess};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

use crate::{metric, refused_start};

struct Pki {
    peers: TestCa,
    node_1: Issued,
    node_2: Issued,
    /// From the peer CA, naming no node.
    anonymous: Issued,
}

fn pki() -> Pki {
    let dir = unique_temp_dir();
    let peers = TestCa::new(&dir, "peers");
    Pki {
        node_1: peers.issue_peer("peer-1", 1),
        node_2: peers.issue_peer("peer-2", 2),
        anonymous: peers.issue("anonymous"),
        peers,
    }
}

/// `clockwise node` flags for node `id` presenting `cert`.
fn peer_flags(pki: &Pki, id: u64, cert: &Issued) -> Vec<String> {
    let path = |p: &std::path::Path| p.display().to_string();
    vec![
        "--id".into(),
        id.to_string(),
        "--peer-cert".into(),
        path(&cert.cert),
        "--peer-key".into(),
        path(&cert.key),
        "--peer-trusted-ca".into(),
        path(&pki.peers.ca_path()),
    ]
}

/// A client of `node`'s raft transport presenting `cert`.
fn raft_as(node: &NodeProcess, pki: &Pki, cert: &Issued) -> RaftTransportClient<Channel> {
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&pki.peers.ca_path())))
        .identity(Identity::from_pem(read(&cert.cert), read(&cert.key)))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://{}", node.peer_addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(10));
    RaftTransportClient::new(endpoint.connect_lazy())
}

/// Waits (bounded) until the single node leads.
async fn wait_leader(node: &NodeProcess) {
    let mut client = ClusterClient::new(node.channel().await);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client
            .status(StatusRequest {})
            .await
            .map(|r| r.into_inner());
        if status.as_ref().is_ok_and(|s| s.role == Role::Leader as i32) {
            return;
        }
        assert!(Instant::now() < deadline, "no leader: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn heartbeat(from: u64, to: u64) -> Vec<u8> {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = from;
    message.to = to;
    message.write_to_bytes().unwrap()
}

fn batch(from: u64, messages: Vec<Vec<u8>>) -> pb::RaftMessageBatch {
    pb::RaftMessageBatch {
        from,
        messages,
        from_address: String::new(),
    }
}

fn store(op: HashRingOp) -> Vec<u8> {
    codec::encode(&Command {
        ring: "peers".into(),
        timestamp: 0,
        op: Op::HashRing(op),
    })
}

fn forward(from: u64, command: Vec<u8>) -> tonic::Request<pb::ForwardRequest> {
    let mut request = tonic::Request::new(pb::ForwardRequest {
        command,
        from,
        ..pb::ForwardRequest::default()
    });
    request.set_timeout(Duration::from_secs(5));
    request
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, field: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(field),
        "the refusal names {field}: {}",
        status.message()
    );
}

/// Issue #20: node A's certificate could vote, append, forward and install snapshots
/// as node B (any certificate from the peer CA was taken, `from` never checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_certificate_speaks_only_for_the_node_it_names() {
    let pki = pki();
    let flags = peer_flags(&pki, 1, &pki.node_1);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = NodeProcess::start_with(&flags);
    wait_leader(&node).await;
    let mut as_2 = raft_as(&node, &pki, &pki.node_2);

    // Node 2 speaking as itself gets through.
    as_2.send(batch(2, vec![heartbeat(2, 1)]))
        .await
        .expect("node 2's certificate sends as node 2");

    // As node 1 (the batch's `from`, a message's `from`): refused.
    assert_refused(
        as_2.send(batch(1, Vec::new())).await,
        Code::PermissionDenied,
        "from",
    );
    assert_refused(
        as_2.send(batch(2, vec![heartbeat(1, 1)])).await,
        Code::PermissionDenied,
        "messages.from",
    );
    // A `Stream` checks every batch as `Send` does: node 2's own batches pass, and the
    // first that claims node 1 ends the stream.
    as_2.stream(futures::stream::iter(vec![
        batch(2, vec![heartbeat(2, 1)]),
        batch(2, vec![heartbeat(2, 1)]),
    ]))
    .await
    .expect("node 2's certificate streams as node 2");
    assert_refused(
        as_2.stream(futures::stream::iter(vec![
            batch(2, vec![heartbeat(2, 1)]),
            batch(1, Vec::new()),
        ]))
        .await,
        Code::PermissionDenied,
        "from",
    );
    let key = store(HashRingOp::StoreKey { key: "k".into() });
    assert_refused(
        as_2.forward(forward(1, key.clone())).await,
        Code::PermissionDenied,
        "from",
    );
    assert_refused(
        as_2.change_membership(pb::MembershipRequest {
            change: pb::MembershipChange::TransferLeader as i32,
            id: 1,
            address: String::new(),
            from: 1,
        })
        .await,
        Code::PermissionDenied,
        "from",
    );
    let snapshot = pb::SnapshotChunk {
        from: 1,
        ..pb::SnapshotChunk::default()
    };
    assert_refused(
        as_2.send_snapshot(futures::stream::iter(vec![snapshot]))
            .await,
        Code::PermissionDenied,
        "from",
    );
    // A certificate from the peer CA that names no node gets nothing.
    assert_refused(
        raft_as(&node, &pki, &pki.anonymous)
            .send(batch(2, Vec::new()))
            .await,
        Code::PermissionDenied,
        "peer certificate",
    );
    assert_eq!(
        metric(node.metrics_addr(), "clockwise_peer_identity_refused_total").await,
        7
    );

    // Node 2 forwarding in its own name: its command passes the client port's checks.
    let too_long = "x".repeat(MAX_ID_BYTES + 1);
    let oversized = [
        (
            store(HashRingOp::StoreKey {
                key: too_long.clone(),
            }),
            "key",
        ),
        (store(HashRingOp::AddNode { node_id: too_long }), "node_id"),
        (
            store(HashRingOp::BatchOperations {
                operations: vec![
                    KeyOperation {
                        kind: KeyOperationKind::Store,
                        key: "k".into(),
                    };
                    MAX_BATCH_OPERATIONS + 1
                ],
            }),
            "operations",
        ),
    ];
    for (command, field) in oversized {
        assert_refused(
            as_2.forward(forward(2, command)).await,
            Code::InvalidArgument,
            field,
        );
    }
    as_2.forward(forward(2, key))
        .await
        .expect("a command the client port takes is applied");
}

#[test]
fn a_node_refuses_to_start_with_a_peer_certificate_not_naming_it() {
    let pki = pki();
    let another = peer_flags(&pki, 2, &pki.node_1);
    let another: Vec<&str> = another.iter().map(String::as_str).collect();
    let stderr = refused_start(&another);
    assert!(stderr.contains("--peer-cert names node 1"), "{stderr}");
    let none = peer_flags(&pki, 1, &pki.anonymous);
    let none: Vec<&str> = none.iter().map(String::as_str).collect();
    let stderr = refused_start(&none);
    assert!(stderr.contains("names no node id"), "{stderr}");
}
