//! The sending side of the peer transport (`transport/sender.rs`), against a peer
//! server on a real socket that records what arrives and how: batches go on one
//! `Stream`; a stream the peer ends is replaced; a peer that does not serve `Stream`
//! (an older version) is sent to with `Send`; a peer that stops answering (no reset)
//! is given up after unanswered pings, and reached again on a new connection.

use std::time::Duration;

use clockwise_cluster::transport::PeerAccess;
use clockwise_cluster::{GrpcTransport, MemberAddress, Transport};
use clockwise_proto::raft::v1 as pb;
use clockwise_proto::raft::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// How a peer server treats `Stream` calls.
#[derive(Clone, Copy)]
enum StreamMode {
    Serve,
    /// Ends each stream with an error after this many batches.
    EndAfter(usize),
    /// `UNIMPLEMENTED`, as a version without it.
    Absent,
}

/// Records each message's `commit` (its number here) and the method it came by.
struct RecordingPeer {
    mode: StreamMode,
    arrived: mpsc::UnboundedSender<(&'static str, u64)>,
}

impl RecordingPeer {
    fn record(&self, how: &'static str, batch: &pb::RaftMessageBatch) {
        for bytes in &batch.messages {
            let message = Message::parse_from_bytes(bytes).expect("a raft message");
            let _ = self.arrived.send((how, message.commit));
        }
    }
}

#[tonic::async_trait]
impl RaftTransport for RecordingPeer {
    async fn send(
        &self,
        request: Request<pb::RaftMessageBatch>,
    ) -> Result<Response<pb::SendAck>, Status> {
        self.record("send", request.get_ref());
        Ok(Response::new(pb::SendAck {}))
    }

    async fn stream(
        &self,
        request: Request<Streaming<pb::RaftMessageBatch>>,
    ) -> Result<Response<pb::SendAck>, Status> {
        let limit = match self.mode {
            StreamMode::Absent => return Err(Status::unimplemented("no Stream here")),
            StreamMode::Serve => usize::MAX,
            StreamMode::EndAfter(n) => n,
        };
        let mut batches = request.into_inner();
        let mut taken = 0;
        while let Some(batch) = batches.message().await? {
            self.record("stream", &batch);
            taken += 1;
            if taken == limit {
                return Err(Status::unavailable("this peer ends streams early"));
            }
        }
        Ok(Response::new(pb::SendAck {}))
    }

    async fn forward(
        &self,
        _: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn send_snapshot(
        &self,
        _: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SendAck>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn change_membership(
        &self,
        _: Request<pb::MembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }
}

/// A recording peer on an ephemeral port: its address and what arrives at it.
async fn recording_peer(
    mode: StreamMode,
) -> (String, mpsc::UnboundedReceiver<(&'static str, u64)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let service = RaftTransportServer::new(RecordingPeer { mode, arrived });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (address, arrivals)
}

fn numbered(n: u64) -> Message {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = 2;
    message.to = 1;
    message.commit = n;
    message
}

/// Sends messages 1..=count from node 2 to the peer, each again every 100 ms until it
/// arrived (as raft resends what goes unanswered); answers how each arrived first, and
/// how many sends that took.
async fn deliver_all(mode: StreamMode, count: u64) -> (Vec<&'static str>, u64) {
    let (address, mut arrivals) = recording_peer(mode).await;
    let transport = GrpcTransport::new(
        2,
        "127.0.0.1:1".into(),
        tokio::runtime::Handle::current(),
        PeerAccess::default(),
    );
    transport.add_peer(1, &MemberAddress::decode(&address));
    let (mut how, mut sends) = (Vec::new(), 0);
    for n in 1..=count {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        'resend: loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "message {n} never arrived"
            );
            Transport::send(transport.as_ref(), vec![numbered(n)]);
            sends += 1;
            let retry = tokio::time::Instant::now() + Duration::from_millis(100);
            while let Ok(Some((method, got))) =
                tokio::time::timeout_at(retry, arrivals.recv()).await
            {
                if got == n {
                    how.push(method);
                    break 'resend;
                }
            }
        }
    }
    (how, sends)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_go_on_one_stream_and_a_stream_the_peer_ends_is_replaced() {
    let (how, _) = deliver_all(StreamMode::Serve, 20).await;
    assert!(how.iter().all(|&m| m == "stream"), "{how:?}");
    // Every third batch ends its stream: each later one still arrives, on a new one.
    let (how, _) = deliver_all(StreamMode::EndAfter(3), 20).await;
    assert!(how.iter().all(|&m| m == "stream"), "{how:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_stream_is_sent_to_with_send() {
    let (how, sends) = deliver_all(StreamMode::Absent, 20).await;
    assert!(how.iter().all(|&m| m == "send"), "{how:?}");
    // Only the first batch is lost, on the stream the peer refused: the sender waits
    // for that refusal before it opens another.
    assert!(sends <= 21, "{sends} sends for 20 messages");
}

/// A "peer" that accepts connections and never answers a byte, as a machine that died
/// without resetting them: the sender's pings go unanswered, it gives the connection up
/// and dials again (without pings its stream would wait for minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_is_given_up_and_dialled_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (accepted, mut connections) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // open, silent
            let _ = accepted.send(());
        }
    });
    let transport = GrpcTransport::new(
        2,
        "127.0.0.1:1".into(),
        tokio::runtime::Handle::current(),
        PeerAccess::default(),
    );
    transport.add_peer(1, &MemberAddress::decode(&address));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut dialled = 0;
    let mut n = 0;
    while dialled < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent peer was dialled {dialled} time(s): its connection never given up"
        );
        // Messages keep coming, as raft's heartbeats would.
        n += 1;
        Transport::send(transport.as_ref(), vec![numbered(n)]);
        let next = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(Some(())) = tokio::time::timeout_at(next, connections.recv()).await {
            dialled += 1;
        }
    }
}
