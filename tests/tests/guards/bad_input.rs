//! Malformed input that only the wire and a real process show, against a running
//! `clockwise node`: garbage bytes end the connection; undecodable messages are
//! refused by every service; messages over the size limit are refused before they are
//! decoded; the peer port speaks only raft and refuses garbage raft messages. Each test
//! ends with the node still serving a good call.
//!
//! # Where each rule is tested
//!
//! This suite once started a node per rule to check rules that are pure functions.
//! They are now tested as tables beside them, in `node/src/service/validate/tests.rs`
//! ("V" below, with the test's name). Which RPC applies which rule, with the refusal's
//! code and field, is checked in process against one node over gRPC by
//! `node/tests/rpc_validation`, test
//! `every_rpc_refuses_bad_input_naming_the_field_and_keeps_drill_results` ("P" below,
//! with the function holding the rows; `*` is `hash_ring` and `chat_router`). There
//! every refusal is also checked to apply nothing (applied index and state digest).
//! All refusals are INVALID_ARGUMENT with a message starting `"<field>:"` unless said.
//!
//! - Ids empty or over `MAX_ID_BYTES` bytes (257 ASCII, 129 × 'é'): `node_id` on AddNode,
//!   RemoveNode, GetLoad, AddNodeWithReplicas, GetReplicaCount, SetCapacity,
//!   GetCapacity, GetUsed, EvictLru, GetMergedInto; `key` on RouteKey, StoreKey,
//!   LocateKey; `server_name` and `request_id` on their ChatRouter twins; an id of
//!   `MAX_ID_BYTES` is kept whole. V `ids_are_1_to_max_id_bytes_…`;
//!   P `*::rows`, `*::boundaries_answer`.
//! - `ring` over `MAX_ID_BYTES`, on every RPC; empty is `DEFAULT_RING`.
//!   V `a_ring_name_is_0_to_max_id_bytes_…`; P `*::rows`, `*::boundaries_answer`.
//! - `timestamp` negative, or over a day ahead (`i64::MAX`, microseconds), on every RPC.
//!   V `a_timestamp_is_not_negative_…`; P `*::rows`.
//! - `n` < 0 (TopLoaded, TopServers); 0 answers none, `i64::MAX` all.
//!   V `counts_and_sizes_are_0_to_their_cap`; P `*::rows`, `*::boundaries_answer`.
//! - `capacity` (SetCapacity), `max_mb` (SetMemoryLimit) neither -1 nor in
//!   0..=`MAX_MB`; accepted values read back, never set reads -1.
//!   V `a_capacity_or_memory_limit_…`; P `*::rows`, `*::boundaries_answer`.
//! - `num_replicas` outside 0..=`MAX_REPLICAS` (AddNodeWithReplicas,
//!   AddServerWithReplicas); `MAX_REPLICAS` reads back. V `counts_and_sizes_…`;
//!   P `*::rows`, `*::boundaries_answer`.
//! - `size_mb` (AssignRequest) outside 0..=`MAX_MB`; 0 and `MAX_MB` are stored and
//!   counted. V `counts_and_sizes_…`; P `chat_router::rows`,
//!   `chat_router::boundaries_answer`.
//! - `operations` over `MAX_BATCH_OPERATIONS` (BatchOperations, BatchRequests); a bad
//!   entry refuses the whole batch as `operations[i].key`, `operations[i].request_id`
//!   or `operations[i].size_mb`; a full batch answers every entry; an unknown type is
//!   None. V `lists_hold_at_most_their_cap`, `ids_…`, `counts_…`; P `*::rows`,
//!   `*::boundaries_answer`, `*::drill_results`.
//! - SyncReplicas, ReplicateSessions: `max_concurrent` outside
//!   1..=`MAX_CONCURRENT_CAP`; `mode` neither FAIL_FAST nor ALL_SLEEP; `requests` or
//!   `transfers` over `MAX_SYNC_ENTRIES`; `requests[i].source_node`/`dest_node`,
//!   `transfers[i].source`/`destination`/`bandwidth_mb`. Both ends, ALL_SLEEP and a
//!   full list of unknown nodes (all false) are served. V `max_concurrent_is_1_…`,
//!   `enums_accept_only_their_values`, `lists_…`, `ids_…`, `counts_…`; P `*::rows`,
//!   `*::boundaries_answer`.
//! - `position_space` unknown (ConfigureRing); on a ring in use, FAILED_PRECONDITION
//!   naming the ring, and nothing changes. V `enums_…`; P `*::rows`,
//!   `*::configure_a_ring_in_use`.
//! - `ttl_ms` outside 0..=`MAX_TTL_MS` (StoreKey, AssignRequest); a TTL expires at
//!   timestamp + ttl. V `a_ttl_is_0_to_max_ttl_ms`; P `*::rows`, `*::ttl_expires`.
//! - `from_node`/`to_node` (MergeNodes), `from_server`/`to_server` (MergeServers),
//!   `backup_timestamp` < 0 (Restore). V `ids_…`, `counts_…`; P `*::rows`.
//! - Drill results stay results: on an empty ring (None, empty), for an unknown node
//!   (false, 0, None), a duplicate (false), an empty node (None), a merge of unknowns
//!   (false), a restore with no backup (unset), bandwidth above what the source holds
//!   (false). P `*::drill_results`.
//! - Cluster: AddMember `id` 0, `address`/`peer_address` not `host:port`; RemoveMember
//!   `id` 0; TransferLeader `target_id` 0; FAILED_PRECONDITION naming `id`/`target_id`
//!   for a member added twice, a stranger removed or made leader, the last member
//!   removed; the group of one is unchanged.
//!   V `members_have_a_non_zero_id_and_host_port_addresses`; P `cluster::check`.
//! - New: metadata, `x-clockwise-consistency` on reads and `x-clockwise-client-id` /
//!   `x-clockwise-seq` on writes. V `a_read_is_linearizable_…`,
//!   `a_write_session_is_…`; P `*::rows`.
//!
//! Over the wire, here: garbage bytes on either port
//! ([`garbage_bytes_on_either_port_end_the_connection_and_the_node_serves_on`]);
//! undecodable messages
//! ([`undecodable_messages_are_refused_by_every_service_and_apply_nothing`]); the size
//! limits ([`messages_over_the_size_limit_are_refused_before_they_are_decoded`]); the
//! peer port ([`the_peer_port_speaks_only_raft_and_refuses_garbage_raft_messages`]).
//! Other limits over the wire are in `security` (tokens, rate limits, a
//! `--max-message-bytes` flag, deadlines) and `sync_bulkhead`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clockwise_node::service::limits::Limits;
use clockwise_proto::chatrouter::v1::chat_router_client::ChatRouterClient;
use clockwise_proto::cluster::v1 as cl;
use clockwise_proto::cluster::v1::cluster_client::ClusterClient;
use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use clockwise_proto::raft::v1 as raft;
use clockwise_proto::raft::v1::raft_transport_client::RaftTransportClient;
use clockwise_tests::{NodeProcess, CALL_TIMEOUT, STARTUP_TIMEOUT};
use prost::bytes::{Buf, BufMut};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Sends bytes as they are and answers the reply's bytes: a client that sends what no
/// generated client would.
#[derive(Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// One unary call of `path` with `body` as its message bytes.
async fn raw_call(channel: Channel, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
    let path = PathAndQuery::from_static(path);
    let reply = grpc.unary(tonic::Request::new(body), path, Raw).await?;
    Ok(reply.into_inner())
}

/// A channel to `addr` whose calls time out after [`CALL_TIMEOUT`].
async fn channel_to(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// What the node has applied, once it leads and has applied all it committed: its
/// applied index and state digest. Polls with a deadline.
///
/// A linearizable read goes through the raft driver, so the status read after it
/// counts every write answered before.
async fn applied(node: &NodeProcess) -> (u64, String) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut ring = node.hash_ring().await;
    let mut cluster = ClusterClient::new(node.channel().await);
    loop {
        let read = ring
            .get_node_count(hr::GetNodeCountRequest::default())
            .await;
        let status = cluster
            .status(cl::StatusRequest {})
            .await
            .expect("Cluster.Status is served")
            .into_inner();
        if read.is_ok() && status.applied_index == status.commit_index {
            return (status.applied_index, status.state_digest);
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {read:?} {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A good call after the bad ones: the node neither died nor hangs.
async fn still_serves(node: &NodeProcess) {
    let mut ring = node.hash_ring().await;
    let add = hr::AddNodeRequest {
        ring: "after-bad-input".into(),
        timestamp: 1,
        node_id: "healthy".into(),
    };
    ring.add_node(add).await.expect("AddNode is served");
    let store = hr::StoreKeyRequest {
        ring: "after-bad-input".into(),
        timestamp: 1,
        key: "k".into(),
        ttl_ms: 0,
    };
    let stored = ring.store_key(store).await.expect("StoreKey is served");
    assert_eq!(stored.into_inner().node_id.as_deref(), Some("healthy"));
}

/// Checks a refusal: `code`, and (if given) a message that starts with `"<field>:"`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, Status>,
    code: Code,
    field: Option<&str>,
) {
    let status = match result {
        Ok(answer) => panic!("{what}: served ({answer:?}); expected {code:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{what}: {status:?}");
    if let Some(field) = field {
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "{what}: {:?} does not name `{field}`",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_on_either_port_end_the_connection_and_the_node_serves_on() {
    let node = NodeProcess::start();
    let garbage: [(&str, &[u8]); 4] = [
        ("binary noise", b"\x00\x01\x02\x03garbage\xff\xfe\r\n\r\n"),
        ("an HTTP/1.1 request", b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"),
        (
            "the HTTP/2 preface, then a frame of noise",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ),
        (
            "a TLS hello to a plain-text port",
            b"\x16\x03\x01\x00\x05hello",
        ),
    ];
    for (port, addr) in [("client", node.grpc_addr()), ("peer", node.peer_addr())] {
        for (what, bytes) in garbage {
            let mut conn = tokio::net::TcpStream::connect(addr)
                .await
                .expect("the port accepts");
            // The node may close before it has read everything: a failed write is fine.
            let _ = conn.write_all(bytes).await;
            let mut reply = Vec::new();
            let closed = tokio::time::timeout(CALL_TIMEOUT, conn.read_to_end(&mut reply)).await;
            assert!(
                closed.is_ok(),
                "{port} port: {what}: the connection is still open after {CALL_TIMEOUT:?}"
            );
        }
    }
    still_serves(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_refused_by_every_service_and_apply_nothing() {
    let node = NodeProcess::start();
    let before = applied(&node).await;
    // Every path's field 1 is a string or an integer, so none of these decodes.
    let bodies: [(&str, Vec<u8>); 3] = [
        ("an overlong varint", vec![0xff; 11]),
        (
            "a field longer than the message",
            vec![0x0a, 0x10, b'a', b'b'],
        ),
        (
            "a length-delimited field 1 that is not UTF-8",
            vec![0x0a, 0x02, 0xc3, 0x28],
        ),
    ];
    let client_paths = [
        "/clockwise.hashring.v1.HashRing/StoreKey",
        "/clockwise.chatrouter.v1.ChatRouter/AssignRequest",
        "/clockwise.cluster.v1.Cluster/AddMember",
    ];
    let (client, peer) = (node.channel().await, channel_to(node.peer_addr()).await);
    let calls = client_paths
        .into_iter()
        .map(|path| (path, client.clone()))
        .chain([
            ("/clockwise.raft.v1.RaftTransport/Send", peer.clone()),
            ("/clockwise.raft.v1.RaftTransport/Stream", peer),
        ]);
    for (path, channel) in calls {
        for (what, body) in &bodies {
            let result = raw_call(channel.clone(), path, body.clone()).await;
            // tonic answers a message that does not decode with INTERNAL.
            assert_refused(&format!("{path}: {what}"), result, Code::Internal, None);
        }
    }
    assert_eq!(
        applied(&node).await,
        before,
        "an undecodable message applied something"
    );
    still_serves(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_size_limit_are_refused_before_they_are_decoded() {
    let node = NodeProcess::start();
    let limit = Limits::default().max_message_bytes;
    // A StoreKey whose key makes the message exactly `len` bytes.
    let store_of = |len: usize| {
        let mut request = hr::StoreKeyRequest {
            key: "k".repeat(len),
            ..Default::default()
        };
        while request.encoded_len() > len {
            request.key.pop();
        }
        assert_eq!(request.encoded_len(), len, "a message of {len} bytes");
        request
    };
    let mut ring = node.hash_ring().await;
    // At the limit it is decoded, and then validated; one byte over, it is not decoded.
    let at_limit = ring.store_key(store_of(limit)).await;
    assert_refused(
        "StoreKey at the limit",
        at_limit,
        Code::InvalidArgument,
        Some("key"),
    );
    let over = ring.store_key(store_of(limit + 1)).await;
    assert_refused("StoreKey over the limit", over, Code::OutOfRange, None);

    let mut chat = ChatRouterClient::new(node.channel().await);
    let assign = clockwise_proto::chatrouter::v1::AssignRequestRequest {
        request_id: "r".repeat(limit),
        ..Default::default()
    };
    let over = chat.assign_request(assign).await;
    assert_refused("AssignRequest over the limit", over, Code::OutOfRange, None);
    let mut cluster = ClusterClient::new(node.channel().await);
    let member = cl::AddMemberRequest {
        id: 2,
        address: "h".repeat(limit),
        peer_address: "127.0.0.1:1".into(),
    };
    let over = cluster.add_member(member).await;
    assert_refused("AddMember over the limit", over, Code::OutOfRange, None);

    // The raft transport has its own, larger limit.
    let raft_limit = clockwise_cluster::transport::MAX_MESSAGE_BYTES;
    let mut peer = RaftTransportClient::new(channel_to(node.peer_addr()).await);
    let batch = raft::RaftMessageBatch {
        from: 99,
        messages: vec![vec![0; raft_limit]],
        from_address: String::new(),
    };
    let over = peer.send(batch.clone()).await;
    assert_refused(
        "RaftTransport.Send over its limit",
        over,
        Code::OutOfRange,
        None,
    );
    // A `Stream` holds each of its batches to the same limit.
    let small = raft::RaftMessageBatch {
        messages: Vec::new(),
        ..batch.clone()
    };
    let over = peer.stream(futures::stream::iter(vec![small, batch])).await;
    assert_refused(
        "RaftTransport.Stream over its limit",
        over,
        Code::OutOfRange,
        None,
    );
    still_serves(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_speaks_only_raft_and_refuses_garbage_raft_messages() {
    let node = NodeProcess::start();
    let status = || async {
        ClusterClient::new(node.channel().await)
            .status(cl::StatusRequest {})
            .await
            .expect("Cluster.Status is served")
            .into_inner()
    };
    applied(&node).await;
    let leading = status().await;

    // The raft transport is not served on the client port…
    let mut on_client_port = RaftTransportClient::new(node.channel().await);
    let absent = on_client_port.send(raft::RaftMessageBatch::default()).await;
    assert_refused(
        "RaftTransport on the client port",
        absent,
        Code::Unimplemented,
        None,
    );
    // …and the client services are not served on the peer port.
    let peer = channel_to(node.peer_addr()).await;
    let add = hr::AddNodeRequest {
        ring: "peer-port".into(),
        timestamp: 1,
        node_id: "n".into(),
    };
    let ring = HashRingClient::new(peer.clone()).add_node(add).await;
    assert_refused("HashRing on the peer port", ring, Code::Unimplemented, None);
    let cluster = ClusterClient::new(peer.clone())
        .status(cl::StatusRequest {})
        .await;
    assert_refused(
        "Cluster on the peer port",
        cluster,
        Code::Unimplemented,
        None,
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(peer.clone());
    let checked = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert_refused(
        "Health on the peer port",
        checked,
        Code::Unimplemented,
        None,
    );

    // Raft messages that are not raft messages are refused, naming the field.
    let mut raft = RaftTransportClient::new(peer);
    let batch = raft::RaftMessageBatch {
        from: 99,
        messages: vec![b"not a raft message".to_vec()],
        from_address: String::new(),
    };
    let garbage = raft.send(batch.clone()).await;
    assert_refused(
        "Send of garbage",
        garbage,
        Code::InvalidArgument,
        Some("messages"),
    );
    let garbage = raft.stream(futures::stream::iter(vec![batch])).await;
    assert_refused(
        "Stream of garbage",
        garbage,
        Code::InvalidArgument,
        Some("messages"),
    );
    let empty = raft.send_snapshot(futures::stream::iter(Vec::new())).await;
    assert_refused(
        "SendSnapshot of nothing",
        empty,
        Code::InvalidArgument,
        Some("message"),
    );
    let unset = raft
        .change_membership(raft::MembershipRequest::default())
        .await;
    assert_refused(
        "ChangeMembership of nothing",
        unset,
        Code::InvalidArgument,
        Some("change"),
    );
    // A forwarded command that does not decode is refused before it is proposed (issue
    // #20: the leader checks a forwarded command as the client port would; one already
    // in a log is skipped by every replica), and the state is unchanged.
    let (_, digest) = applied(&node).await;
    let forward = raft::ForwardRequest {
        command: b"not a command".to_vec(),
        ..Default::default()
    };
    assert_refused(
        "Forward of garbage",
        raft.forward(forward).await,
        Code::InvalidArgument,
        Some("command"),
    );
    assert_eq!(
        applied(&node).await.1,
        digest,
        "the garbage command changed the state"
    );

    // The node leads as before, in the same term.
    let after = status().await;
    assert_eq!(
        (after.leader_id, after.term),
        (leading.leader_id, leading.term)
    );
    still_serves(&node).await;
}
