//! The peer transport's server refuses malformed input with a status naming the
//! field, over a real socket, in front of a real (single-node) driver: garbage raft
//! messages, snapshot streams that are empty, short, long, oversized or fail their
//! checksum, and membership requests without a change. Hostile peers (issue #20): a
//! snapshot is taken only from the leader the node follows, and within a deadline;
//! an address learned from a sender must be a member's and well formed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clockwise_cluster::driver::{self, DriverConfig, RaftHandle, Role};
use clockwise_cluster::snapshot::{self, sha256, Descriptor};
use clockwise_cluster::transport::{PeerAccess, MAX_SNAPSHOT_BYTES};
use clockwise_cluster::{
    GrpcTransport, LogStore, MemberAddress, RaftTransportService, StateMachine,
};
use clockwise_proto::raft::v1 as pb;
use clockwise_proto::raft::v1::raft_transport_client::RaftTransportClient;
use clockwise_proto::raft::v1::raft_transport_server::RaftTransportServer;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType, SnapshotMetadata};
use tonic::transport::Channel;
use tonic::Code;

struct Nothing;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl StateMachine for Nothing {
    type Error = Never;
    fn apply(&mut self, _index: u64, _data: &[u8]) -> Vec<u8> {
        Vec::new()
    }
    type Snapshot = snapshot::BytesSnapshot;
    fn freeze(&self) -> snapshot::BytesSnapshot {
        snapshot::BytesSnapshot(Vec::new())
    }
    fn restore_from(&mut self, reader: &mut dyn std::io::Read) -> Result<(), Never> {
        let _ = std::io::copy(reader, &mut std::io::sink());
        Ok(())
    }
}

/// One node serving the transport on an ephemeral port; answers a client to it and
/// the node's driver handle.
async fn serve_node(dir: &std::path::Path) -> (RaftTransportClient<Channel>, RaftHandle) {
    let (client, handle, _) = serve_with(dir, None).await;
    (client, handle)
}

/// [`serve_node`], with its transport, receiving snapshots within `snapshot_timeout`
/// (`None`: the default).
async fn serve_with(
    dir: &std::path::Path,
    snapshot_timeout: Option<Duration>,
) -> (RaftTransportClient<Channel>, RaftHandle, Arc<GrpcTransport>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let transport = GrpcTransport::new(
        1,
        address.clone(),
        tokio::runtime::Handle::current(),
        PeerAccess::default(),
    );
    let store = LogStore::open(dir).unwrap();
    let config = DriverConfig {
        initial_members: BTreeMap::from([(1, MemberAddress::decode(&address))]),
        ..DriverConfig::default()
    };
    let peers: Arc<dyn driver::Transport> = transport.clone();
    let (handle, _thread) = driver::spawn(config, store, Nothing, peers).unwrap();
    let mut service = RaftTransportService::new(handle.clone(), transport.clone());
    if let Some(timeout) = snapshot_timeout {
        service = service.with_snapshot_timeout(timeout);
    }
    let service = RaftTransportServer::new(service);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    (RaftTransportClient::new(channel), handle, transport)
}

/// Waits (bounded) until the single node leads; answers its term.
async fn wait_leader(handle: &RaftHandle) -> u64 {
    let mut status = handle.watch_status();
    let led = tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.role == Role::Leader),
    )
    .await
    .expect("the node leads within 20 s")
    .expect("the driver runs")
    .term;
    led
}

/// A snapshot message naming `descriptor`.
fn snapshot_header(descriptor: &Descriptor) -> Vec<u8> {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgSnapshot);
    message.from = 2;
    message.to = 1;
    let snapshot = message.mut_snapshot();
    snapshot.data = descriptor.encode().into();
    snapshot.mut_metadata().index = descriptor.index;
    snapshot.mut_metadata().term = descriptor.term;
    message.write_to_bytes().unwrap()
}

/// A first chunk announcing a file of `data_len` bytes and `checksum`, as its message's
/// descriptor does too.
fn first_chunk(data_len: u64, checksum: &[u8], data: &[u8]) -> pb::SnapshotChunk {
    let descriptor = Descriptor {
        index: 5,
        term: 1,
        len: data_len,
        sha256: checksum.try_into().unwrap(),
    };
    pb::SnapshotChunk {
        from: 2,
        from_address: String::new(),
        message: snapshot_header(&descriptor),
        data_len,
        data_sha256: checksum.to_vec(),
        data: data.to_vec().into(),
    }
}

fn piece(data: &[u8]) -> pb::SnapshotChunk {
    pb::SnapshotChunk {
        data: data.to_vec().into(),
        ..pb::SnapshotChunk::default()
    }
}

/// Makes node 1 follow node 2 in a newer term (a heartbeat from 2), as it would a
/// leader it answers: only that leader's snapshots are taken. Answers the term.
async fn follow_node_2(client: &mut RaftTransportClient<Channel>, handle: &RaftHandle) -> u64 {
    // Well above the published term: node 1, alone, may campaign and win a term between
    // this read and the heartbeat's arrival (its status lags a pass), and a heartbeat of
    // the term it leads would be ignored.
    let term = handle.status().term + 5;
    client
        .send(pb::RaftMessageBatch {
            from: 2,
            messages: vec![heartbeat(2, 1, term)],
            from_address: String::new(),
        })
        .await
        .expect("the heartbeat is accepted");
    let mut status = handle.watch_status();
    tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.term == term && s.leader_id == 2),
    )
    .await
    .expect("node 1 follows node 2")
    .expect("the driver runs");
    term
}

/// `message` (a snapshot message) stamped with `term`; anything else unchanged.
fn in_term(mut first: pb::SnapshotChunk, term: u64) -> pb::SnapshotChunk {
    if let Ok(mut message) = Message::parse_from_bytes(&first.message) {
        message.term = term;
        first.message = message.write_to_bytes().unwrap();
    }
    first
}

/// `chunks` as the snapshot stream of node 2, made the leader node 1 follows; the
/// first chunk's message is stamped with that leader's term.
async fn send_snapshot(
    client: &mut RaftTransportClient<Channel>,
    handle: &RaftHandle,
    mut chunks: Vec<pb::SnapshotChunk>,
) -> Result<(), tonic::Status> {
    let term = follow_node_2(client, handle).await;
    if !chunks.is_empty() {
        let first = chunks.remove(0);
        chunks.insert(0, in_term(first, term));
    }
    client
        .send_snapshot(tokio_stream::iter(chunks))
        .await
        .map(|_| ())
}

fn assert_refused(result: Result<(), tonic::Status>, code: Code, field: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(field),
        "the refusal names {field}: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_peer_input_is_refused_with_the_field_named() {
    let dir = std::env::temp_dir().join(format!("clockwise-transport-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut client, handle) = serve_node(&dir).await;
    wait_leader(&handle).await;

    let garbage = client
        .send(pb::RaftMessageBatch {
            from: 2,
            messages: vec![vec![0xff; 7]],
            from_address: String::new(),
        })
        .await
        .map(|_| ());
    assert_refused(garbage, Code::InvalidArgument, "messages");

    // A real snapshot file, as a leader streams it.
    let source = temp_dir("source");
    std::fs::create_dir_all(&source).unwrap();
    let meta = SnapshotMetadata {
        index: 5,
        term: 1,
        ..SnapshotMetadata::default()
    };
    let members = BTreeMap::from([(2, MemberAddress::decode("127.0.0.1:2"))]);
    let descriptor = snapshot::write_file(&source, &meta, &members, &mut |out| {
        out.write_all(&[7u8; 2500])
    })
    .unwrap();
    let data = std::fs::read(source.join(descriptor.file_name())).unwrap();
    let len = data.len() as u64;
    let checksum = descriptor.sha256;
    let stored = dir.join("snapshots").join(descriptor.file_name());
    // Whole, in three chunks: accepted.
    send_snapshot(
        &mut client,
        &handle,
        vec![
            first_chunk(len, &checksum, &data[..1000]),
            piece(&data[1000..2000]),
            piece(&data[2000..]),
        ],
    )
    .await
    .expect("a whole snapshot in chunks is accepted");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        data,
        "stored under its name"
    );

    assert_refused(
        send_snapshot(&mut client, &handle, Vec::new()).await,
        Code::InvalidArgument,
        "message",
    );
    let mut not_snapshot = first_chunk(0, &sha256(&[]), &[]);
    let not_a_descriptor = {
        let mut chunk = first_chunk(len, &checksum, &data);
        let mut message = Message::parse_from_bytes(&chunk.message).unwrap();
        message.mut_snapshot().data = data.clone().into();
        chunk.message = message.write_to_bytes().unwrap();
        chunk
    };
    assert_refused(
        send_snapshot(&mut client, &handle, vec![not_a_descriptor]).await,
        Code::InvalidArgument,
        "message",
    );
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    not_snapshot.message = heartbeat.write_to_bytes().unwrap();
    assert_refused(
        send_snapshot(&mut client, &handle, vec![not_snapshot]).await,
        Code::InvalidArgument,
        "message",
    );
    let mut unreadable = first_chunk(0, &sha256(&[]), &[]);
    unreadable.message = vec![0xff; 5];
    assert_refused(
        send_snapshot(&mut client, &handle, vec![unreadable]).await,
        Code::InvalidArgument,
        "message",
    );
    assert_refused(
        send_snapshot(
            &mut client,
            &handle,
            vec![first_chunk(len, &checksum, &data[..1000])],
        )
        .await,
        Code::InvalidArgument,
        "data",
    );
    // More than announced.
    assert_refused(
        send_snapshot(
            &mut client,
            &handle,
            vec![first_chunk(len, &checksum, &data), piece(&data[..1])],
        )
        .await,
        Code::InvalidArgument,
        "data",
    );
    // The first chunk and its message disagree.
    let mut disagreeing = first_chunk(len, &checksum, &data);
    disagreeing.data_len = len - 1;
    assert_refused(
        send_snapshot(&mut client, &handle, vec![disagreeing]).await,
        Code::InvalidArgument,
        "data_len",
    );
    let mut flipped = data.clone();
    flipped[1234] ^= 1;
    assert_refused(
        send_snapshot(
            &mut client,
            &handle,
            vec![first_chunk(len, &checksum, &flipped)],
        )
        .await,
        Code::DataLoss,
        "data_sha256",
    );
    // Intact in transit but damaged at the source (the file's own checksum fails).
    let body_sha = sha256(&flipped[..flipped.len() - 32]);
    assert_refused(
        send_snapshot(
            &mut client,
            &handle,
            vec![first_chunk(len, &body_sha, &flipped)],
        )
        .await,
        Code::DataLoss,
        "data_sha256",
    );
    let left: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        left,
        vec![stored.clone()],
        "nothing refused is stored, no temporary file is left"
    );
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        data,
        "the accepted one intact"
    );
    assert_refused(
        send_snapshot(
            &mut client,
            &handle,
            vec![first_chunk(MAX_SNAPSHOT_BYTES + 1, &checksum, &[])],
        )
        .await,
        Code::ResourceExhausted,
        "data_len",
    );

    let unspecified = client
        .change_membership(pb::MembershipRequest::default())
        .await
        .map(|_| ());
    assert_refused(unspecified, Code::InvalidArgument, "change");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&source);
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("clockwise-transport-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Issue #17: an empty entry is raft's no-op, which answers no one; a forwarded empty
/// command used to be proposed and the caller waited out its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_forwarded_command_is_refused_at_once_naming_the_field() {
    let dir = temp_dir("empty-forward");
    let (mut client, handle) = serve_node(&dir).await;
    wait_leader(&handle).await;
    let mut request = tonic::Request::new(pb::ForwardRequest::default());
    request.set_timeout(Duration::from_secs(3));
    assert_refused(
        client.forward(request).await.map(|_| ()),
        Code::InvalidArgument,
        "command",
    );
    // The driver refuses one too (a local proposal never waits for a no-op's answer).
    let refused = tokio::time::timeout(Duration::from_secs(3), handle.propose(Vec::new()))
        .await
        .expect("answered at once");
    assert_eq!(
        refused,
        Err(driver::ProposeError::Refused(
            "command: must not be empty".into()
        ))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn heartbeat(from: u64, to: u64, term: u64) -> Vec<u8> {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = from;
    message.to = to;
    message.term = term;
    message.write_to_bytes().unwrap()
}

/// Issue #17 / docs/decisions.md: a peer message addressed to another node id is
/// dropped before raft sees it. A higher-term heartbeat for node 9 is sent to node 1,
/// then one for node 1 with a smaller term raise; messages are stepped in order, so
/// node 1's first new term tells which of them raft saw first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_message_addressed_to_another_node_is_dropped() {
    let dir = temp_dir("misaddressed");
    let (mut client, handle) = serve_node(&dir).await;
    let term = wait_leader(&handle).await;
    client
        .send(pb::RaftMessageBatch {
            from: 2,
            messages: vec![heartbeat(2, 9, term + 5), heartbeat(2, 1, term + 1)],
            from_address: String::new(),
        })
        .await
        .expect("the batch is accepted");
    let mut status = handle.watch_status();
    let moved = tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.term > term))
        .await
        .expect("the addressed heartbeat moves the term")
        .expect("the driver runs")
        .term;
    assert!(
        moved < term + 5,
        "node 1 took the term of a message for node 9 (term {term} -> {moved})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real snapshot file of node 2's, as its leader would stream it: its bytes and the
/// first chunk announcing them (no data in it).
fn stored_snapshot(name: &str) -> (Vec<u8>, pb::SnapshotChunk) {
    let source = temp_dir(name);
    std::fs::create_dir_all(&source).unwrap();
    let meta = SnapshotMetadata {
        index: 5,
        term: 1,
        ..SnapshotMetadata::default()
    };
    let descriptor = snapshot::write_file(&source, &meta, &BTreeMap::new(), &mut |out| {
        out.write_all(&[9u8; 4000])
    })
    .unwrap();
    let data = std::fs::read(source.join(descriptor.file_name())).unwrap();
    let _ = std::fs::remove_dir_all(&source);
    let first = first_chunk(data.len() as u64, &descriptor.sha256, &[]);
    (data, first)
}

/// Issue #20: a snapshot was taken from any peer. Only the leader node 1 follows, in
/// its term, may send one: not a node while node 1 leads itself, not one claiming a
/// newer term node 1 has not seen a leader for yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_taken_only_from_the_leader_this_node_follows() {
    let dir = temp_dir("snapshot-leader");
    let (mut client, handle) = serve_node(&dir).await;
    let term = wait_leader(&handle).await;
    let (data, first) = stored_snapshot("snapshot-leader-source");
    let whole = |first: pb::SnapshotChunk| vec![first, piece(&data)];
    for claimed in [term, term + 5] {
        let refused = client
            .send_snapshot(tokio_stream::iter(whole(in_term(first.clone(), claimed))))
            .await
            .map(|_| ());
        assert_refused(refused, Code::FailedPrecondition, "message");
    }
    let stored = dir.join("snapshots").join(
        Descriptor::decode(
            Message::parse_from_bytes(&first.message)
                .unwrap()
                .get_snapshot()
                .data
                .as_ref(),
        )
        .unwrap()
        .file_name(),
    );
    assert!(!stored.exists(), "nothing refused is stored");
    // Once node 1 follows node 2, node 2's snapshot is taken.
    send_snapshot(&mut client, &handle, whole(first))
        .await
        .expect("the leader's snapshot is taken");
    assert_eq!(std::fs::read(&stored).unwrap(), data);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #20: `SendSnapshot` had no deadline on the receiving side: a sender that
/// stopped mid-stream held the one receiving slot for as long as it kept the stream
/// open. The receiver now ends it at its own deadline and takes the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_snapshot_ends_at_the_receivers_deadline() {
    let dir = temp_dir("snapshot-stalled");
    let (mut client, handle, _) = serve_with(&dir, Some(Duration::from_millis(500))).await;
    wait_leader(&handle).await;
    let (data, first) = stored_snapshot("snapshot-stalled-source");
    let term = follow_node_2(&mut client, &handle).await;
    // Half the data, then nothing: the stream stays open while `_stalled` lives.
    let (stalled, rest) = tokio::sync::mpsc::channel(2);
    stalled.send(in_term(first.clone(), term)).await.unwrap();
    stalled.send(piece(&data[..data.len() / 2])).await.unwrap();
    let call = client.send_snapshot(tokio_stream::wrappers::ReceiverStream::new(rest));
    let ended = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the receiver ends a stalled snapshot itself");
    assert_refused(ended.map(|_| ()), Code::DeadlineExceeded, "data");
    drop(stalled);
    // The slot is free again, and no half-written file is left.
    send_snapshot(&mut client, &handle, vec![first, piece(&data)])
        .await
        .expect("the next snapshot is taken");
    let left = std::fs::read_dir(dir.join("snapshots")).unwrap().count();
    assert_eq!(left, 1, "only the whole snapshot is stored");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #20: `learn_sender` took any address for an unknown id. An address learned
/// from a sender must parse as `host:port`, fit its cap, and belong to a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_is_learned_only_well_formed_and_for_a_member() {
    let dir = temp_dir("learn-sender");
    let (mut client, handle, transport) = serve_with(&dir, None).await;
    wait_leader(&handle).await;
    let announce = |from: u64, address: String| pb::RaftMessageBatch {
        from,
        messages: Vec::new(),
        from_address: address,
    };
    for (from, address) in [
        (7, "not an address".to_owned()),
        (7, format!("{}:1", "h".repeat(300))),
        // Well formed, but node 7 is no member of node 1's cluster.
        (7, "127.0.0.1:9".to_owned()),
    ] {
        client.send(announce(from, address.clone())).await.unwrap();
        assert_eq!(transport.address(from), None, "{address:?} was learned");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
