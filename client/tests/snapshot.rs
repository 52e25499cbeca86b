//! `Cluster::snapshot` against an in-process fake of the cluster service (port 0): the
//! header is exposed, the body streams in checked against its size and SHA-256, the
//! client's token goes along, and a damaged or stalled stream is an error, never a
//! short body. The real node's side is exercised by `tests/tests/backup.rs`.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clockwise_client::{Client, Error};
use clockwise_proto::cluster::v1 as pb;
use clockwise_proto::cluster::v1::cluster_server::{Cluster, ClusterServer};
use sha2::{Digest, Sha256};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

/// What the fake node streams: a header, then the body in pieces.
#[derive(Clone)]
struct Script {
    header: pb::SnapshotChunk,
    pieces: Vec<Vec<u8>>,
    /// Keep the stream open after the pieces, sending nothing.
    stall: bool,
}

impl Script {
    /// An honest snapshot of `body`, in pieces of `size`.
    fn of(body: &[u8], size: usize) -> Self {
        Script {
            header: pb::SnapshotChunk {
                index: 42,
                term: 3,
                total_bytes: body.len() as u64,
                sha256: Sha256::digest(body).to_vec(),
                state_digest: "ab".repeat(32),
                data: Vec::new(),
            },
            pieces: body.chunks(size).map(<[u8]>::to_vec).collect(),
            stall: false,
        }
    }
}

#[derive(Clone)]
struct FakeNode {
    script: Arc<Mutex<Option<Script>>>,
    /// The `authorization` of each Snapshot call.
    calls: Arc<Mutex<Vec<Option<String>>>>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Cluster for FakeNode {
    type SnapshotStream = ChunkStream;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(token);
        let script = self.script.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(script) = script.clone() else {
            // A node that ends the stream before its header.
            return Ok(Response::new(Box::pin(tokio_stream::empty())));
        };
        let pieces = script.pieces.into_iter().map(|data| pb::SnapshotChunk {
            data,
            ..pb::SnapshotChunk::default()
        });
        let chunks = tokio_stream::iter(std::iter::once(script.header).chain(pieces).map(Ok));
        Ok(Response::new(if script.stall {
            Box::pin(chunks.chain(tokio_stream::pending()))
        } else {
            Box::pin(chunks)
        }))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Err(Status::unimplemented("a fake"))
    }

    async fn add_member(
        &self,
        _: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        Err(Status::unimplemented("a fake"))
    }

    async fn remove_member(
        &self,
        _: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        Err(Status::unimplemented("a fake"))
    }

    async fn transfer_leader(
        &self,
        _: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        Err(Status::unimplemented("a fake"))
    }
}

/// Serves a fake node on a port-0 listener (until the test's runtime ends) and a client
/// of it.
async fn fake_node(script: Option<Script>) -> (FakeNode, String, Client) {
    let node = FakeNode {
        script: Arc::new(Mutex::new(script)),
        calls: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = tonic::transport::Server::builder()
        .add_service(ClusterServer::new(node.clone()))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    let client = Client::builder()
        .endpoints([address.clone()])
        .token("secret")
        .attempt_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    (node, address, client)
}

fn body() -> Vec<u8> {
    (0..2500u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_snapshot_streams_its_header_and_its_checked_body_with_the_token() {
    let body = body();
    let (node, address, client) = fake_node(Some(Script::of(&body, 1000))).await;

    let mut snapshot = client.cluster().snapshot().await.unwrap();
    assert_eq!((snapshot.index(), snapshot.term()), (42, 3));
    assert_eq!(snapshot.total_bytes(), 2500);
    assert_eq!(snapshot.sha256(), Sha256::digest(&body).as_slice());
    assert_eq!(snapshot.state_digest(), "ab".repeat(32));
    let mut pieces = Vec::new();
    while let Some(piece) = snapshot.chunk().await.unwrap() {
        pieces.push(piece);
    }
    assert_eq!(pieces.len(), 3, "each chunk as it came");
    assert_eq!(pieces.concat(), body);
    assert_eq!(snapshot.received(), 2500);
    assert_eq!(
        snapshot.chunk().await.unwrap(),
        None,
        "the end stays the end"
    );

    let whole = client.cluster().snapshot_from(&address).await.unwrap();
    assert_eq!(whole.bytes().await.unwrap(), body);
    let calls = node.calls.lock().unwrap().clone();
    assert_eq!(calls, vec![Some("Bearer secret".to_owned()); 2]);
}

#[tokio::test]
async fn a_damaged_snapshot_is_data_loss_not_a_short_body() {
    let body = body();
    let honest = Script::of(&body, 1000);
    let mut flipped = honest.clone();
    flipped.pieces[1][7] ^= 1;
    let mut short = honest.clone();
    short.pieces.pop();
    let mut long = honest.clone();
    long.pieces.push(vec![0]);
    for (script, expected) in [
        (flipped, "does not match its checksum"),
        (short, "ended after 2000 of 2500 bytes"),
        (long, "more than the size it announced"),
    ] {
        let (_, _, client) = fake_node(Some(script)).await;
        let snapshot = client.cluster().snapshot().await.unwrap();
        let error = snapshot.bytes().await.unwrap_err();
        assert_eq!(error.code(), Some(Code::DataLoss), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
        assert!(!error.is_retriable());
    }
}

#[tokio::test]
async fn a_stream_without_a_header_fails_at_once() {
    let (node, address, client) = fake_node(None).await;
    let error = client.cluster().snapshot().await.unwrap_err();
    assert_eq!(error.code(), Some(Code::DataLoss), "{error}");
    assert!(error.to_string().contains("before its header"), "{error}");
    assert_eq!(node.calls.lock().unwrap().len(), 1, "not retried");
    let error = client.cluster().snapshot_from(&address).await.unwrap_err();
    assert_eq!(error.code(), Some(Code::DataLoss), "{error}");
}

#[tokio::test]
async fn a_stalled_stream_times_out_chunk_by_chunk() {
    let mut script = Script::of(&body(), 1000);
    script.stall = true;
    let (_, _, client) = fake_node(Some(script)).await;
    let mut snapshot = client.cluster().snapshot().await.unwrap();
    for _ in 0..3 {
        assert!(snapshot.chunk().await.unwrap().is_some());
    }
    let error = snapshot.chunk().await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Retriable {
                code: Code::DeadlineExceeded,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        snapshot.chunk().await.is_err(),
        "a failed stream stays failed"
    );
}

#[tokio::test]
async fn a_snapshot_from_a_malformed_endpoint_is_refused() {
    let (_, _, client) = fake_node(None).await;
    let error = client.cluster().snapshot_from("no-port").await.unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
}
