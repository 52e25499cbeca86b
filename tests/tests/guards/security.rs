//! Authentication, authorization and limits against real node processes: tokens and
//! roles on every service (raft between nodes included), the loopback-only default,
//! per-client rate limits with a retry hint the SDK follows, message size caps,
//! deadlines the server enforces by itself, token files only their owner may read, and
//! retry sessions that belong to the token that opened them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clockwise_client::{Client, Error, RetryPolicy};
use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use clockwise_tests::cluster::{wait_applied_everywhere, TestCluster};
use clockwise_tests::{clockwise_bin, unique_temp_dir, NodeProcess};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::{refused_start, scrape};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789";
const WRITER: &str = "writer-token-0123456789abcdef012345678";
const READER: &str = "reader-token-0123456789abcdef012345678";
const PEER: &str = "peer-token-0123456789abcdef0123456789ab";

/// A token file with one token per role (the peer one only if `with_peer`).
fn token_file(with_peer: bool) -> PathBuf {
    let path = unique_temp_dir().join("tokens");
    let mut text = format!("# test tokens\n{ADMIN} admin\n{WRITER} writer\n{READER} reader\n");
    if with_peer {
        text.push_str(&format!("{PEER} peer\n"));
    }
    write_with_mode(&path, &text, 0o600);
    path
}

/// Writes `text` to `path` with permissions `mode` (token files must be 0600 or less).
fn write_with_mode(path: &std::path::Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A request with `token` as its bearer token.
fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

async fn store(
    client: &mut HashRingClient<Channel>,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let request = hr::StoreKeyRequest {
        ring: "auth".into(),
        timestamp: 1,
        key: "k".into(),
        ttl_ms: 0,
    };
    client
        .store_key(with_token(request, token))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_only_its_calls_and_no_refusal_echoes_a_token() {
    let tokens = token_file(true);
    let node = NodeProcess::start_with(&["--auth-token-file", tokens.to_str().unwrap()]);
    let mut ring = node.hash_ring().await;

    let missing = store(&mut ring, None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    let unknown = "unknown-token-0123456789abcdef01234567";
    let wrong = store(&mut ring, Some(unknown)).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(!wrong.message().contains(unknown), "{}", wrong.message());
    let reader = store(&mut ring, Some(READER)).await.unwrap_err();
    assert_eq!(reader.code(), Code::PermissionDenied);
    assert!(!reader.message().contains(READER), "{}", reader.message());

    let add = hr::AddNodeRequest {
        ring: "auth".into(),
        timestamp: 1,
        node_id: "n".into(),
    };
    ring.add_node(with_token(add, Some(WRITER))).await.unwrap();
    store(&mut ring, Some(WRITER)).await.unwrap();
    let locate = hr::LocateKeyRequest {
        ring: "auth".into(),
        timestamp: 0,
        key: "k".into(),
    };
    let found = ring
        .locate_key(with_token(locate, Some(READER)))
        .await
        .unwrap();
    assert!(found.into_inner().found);
    // Backups are an admin's.
    let backup = hr::BackupRequest {
        ring: "auth".into(),
        timestamp: 2,
    };
    let denied = ring
        .backup(with_token(backup.clone(), Some(WRITER)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    ring.backup(with_token(backup, Some(ADMIN))).await.unwrap();
    // The raft transport is not on the client port at all, whatever the token…
    let raft_client = clockwise_proto::raft::v1::raft_transport_client::RaftTransportClient::new;
    let batch = clockwise_proto::raft::v1::RaftMessageBatch::default;
    let mut on_client_port = raft_client(node.channel().await);
    let absent = on_client_port
        .send(with_token(batch(), Some(PEER)))
        .await
        .unwrap_err();
    assert_eq!(absent.code(), Code::Unimplemented, "{absent:?}");
    // …and on its own port it is the peers': an admin token cannot speak raft.
    let peer_port = Endpoint::from_shared(format!("http://{}", node.peer_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raft = raft_client(peer_port);
    let raft_refused = raft
        .send(with_token(batch(), Some(ADMIN)))
        .await
        .unwrap_err();
    assert_eq!(raft_refused.code(), Code::PermissionDenied);
    let no_token = raft.send(with_token(batch(), None)).await.unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    // Health stays open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(node.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    // The SDK carries its token; a refusal reaches the caller at once, not retried.
    let writer = Client::builder()
        .endpoints([node.grpc_addr().to_string()])
        .token(WRITER)
        .build()
        .await
        .unwrap();
    assert_eq!(
        writer
            .hash_ring("auth")
            .store_key("k2")
            .await
            .unwrap()
            .as_deref(),
        Some("n")
    );
    let reader = Client::builder()
        .endpoints([node.grpc_addr().to_string()])
        .token(READER)
        .build()
        .await
        .unwrap();
    let refused = reader.hash_ring("auth").store_key("k3").await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Status {
                code: Code::PermissionDenied,
                ..
            }
        ),
        "{refused:?}"
    );
    let metrics = scrape(node.metrics_addr()).await;
    assert!(
        metrics.contains("clockwise_auth_permission_denied_total 4"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_tokens_replicates_with_its_peer_token() {
    let tokens = token_file(true);
    let cluster = TestCluster::start_with(3, &["--auth-token-file", tokens.to_str().unwrap()]);
    let client = Client::builder()
        .endpoints(cluster.addrs.clone())
        .token(ADMIN)
        .timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let ring = client.hash_ring("replicated");
    ring.add_node("n").await.unwrap();
    for i in 0..20 {
        ring.store_key(&format!("k{i}")).await.unwrap();
    }
    // Every node applies them: raft between the nodes gets through the auth layer.
    wait_applied_everywhere(&client, 3).await;
    for address in &cluster.addrs {
        let one = Client::builder()
            .endpoints([address.clone()])
            .token(READER)
            .build()
            .await
            .unwrap();
        let local = one.hash_ring("replicated").stale_reads();
        assert_eq!(local.get_used("n").await.unwrap(), 20, "node {address}");
    }
}

#[test]
fn a_node_refuses_to_start_exposed_without_a_peer_token_or_with_an_open_token_file() {
    let exposed = refused_start(&["--listen", "0.0.0.0:0"]);
    assert!(exposed.contains("--insecure"), "{exposed}");
    let tokens = token_file(false);
    let no_peer = refused_start(&[
        "--listen",
        "127.0.0.1:0",
        "--auth-token-file",
        tokens.to_str().unwrap(),
    ]);
    assert!(no_peer.contains("peer"), "{no_peer}");
    let missing = refused_start(&[
        "--listen",
        "127.0.0.1:0",
        "--auth-token-file",
        "/nonexistent/tokens",
    ]);
    assert!(missing.contains("/nonexistent/tokens"), "{missing}");
    let open = token_file(true);
    write_with_mode(&open, &std::fs::read_to_string(&open).unwrap(), 0o644);
    let open_to_others = refused_start(&[
        "--listen",
        "127.0.0.1:0",
        "--auth-token-file",
        open.to_str().unwrap(),
    ]);
    assert!(
        open_to_others.contains(open.to_str().unwrap())
            && open_to_others.contains("0644")
            && open_to_others.contains("chmod 600"),
        "{open_to_others}"
    );
    // Explicitly insecure, it serves.
    let dir = unique_temp_dir();
    let node = NodeProcess::start_at("0.0.0.0:0", &dir, &["--insecure"]);
    assert!(node.grpc_addr().ip().is_unspecified());
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_told_when_to_come_back_and_the_sdk_waits() {
    let node = NodeProcess::start_with(&["--client-rate", "5", "--client-burst", "5"]);
    let mut ring = node.hash_ring().await;
    let mut refusal = None;
    for _ in 0..20 {
        let request = hr::GetNodeCountRequest {
            ring: "limited".into(),
            timestamp: 0,
        };
        if let Err(status) = ring.get_node_count(request).await {
            refusal = Some(status);
            break;
        }
    }
    let refusal = refusal.expect("20 calls at once exceed a burst of 5");
    assert_eq!(refusal.code(), Code::ResourceExhausted);
    let hint: u64 = refusal
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&hint), "{hint}");

    // The SDK, its own client (its id), rides it out by waiting as told.
    let client = Client::builder()
        .endpoints([node.grpc_addr().to_string()])
        .retry(RetryPolicy {
            max_attempts: 50,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        })
        .timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let ring = client.hash_ring("limited");
    for _ in 0..12 {
        ring.get_node_count().await.unwrap();
    }
    let metrics = scrape(node.metrics_addr()).await;
    assert!(
        !metrics.contains("clockwise_rate_limited_total 0\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_and_a_deadline_is_kept_by_the_server() {
    let node = NodeProcess::start_with(&["--max-message-bytes", "2048", "--sync-delay-ms", "3000"]);
    let mut ring = node.hash_ring().await;
    let operations = (0..200)
        .map(|i| hr::KeyOperation {
            r#type: "store".into(),
            key: format!("key-{i:04}"),
        })
        .collect();
    let big = hr::BatchOperationsRequest {
        ring: "big".into(),
        timestamp: 1,
        operations,
    };
    let refused = ring.batch_operations(big).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");

    // No client-side deadline on this channel: only the server can end the call early.
    let channel = Endpoint::from_shared(node.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut ring = HashRingClient::new(channel);
    let add = |id: &str| hr::AddNodeRequest {
        ring: "slow".into(),
        timestamp: 1,
        node_id: id.into(),
    };
    ring.add_node(add("a")).await.unwrap();
    ring.add_node(add("b")).await.unwrap();
    let mut sync = tonic::Request::new(hr::SyncReplicasRequest {
        ring: "slow".into(),
        timestamp: 1,
        requests: vec![hr::SyncRequest {
            source_node: "a".into(),
            dest_node: "b".into(),
        }],
        max_concurrent: 1,
        mode: 0,
    });
    sync.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let expired = ring.sync_replicas(sync).await.unwrap_err();
    // tonic's server reports its own expiry as CANCELLED ("Timeout expired"); a client
    // with its own deadline sees DEADLINE_EXCEEDED first.
    assert!(
        matches!(expired.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{expired:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn ctl_sends_the_token_from_a_file_or_the_environment() {
    let tokens = token_file(true);
    let node = NodeProcess::start_with(&["--auth-token-file", tokens.to_str().unwrap()]);
    let endpoint = node.grpc_addr().to_string();
    let ctl = |envs: &[(&str, &str)], args: &[&str]| {
        let output = Command::new(clockwise_bin())
            .args(["ctl", "--endpoints", &endpoint])
            .args(args)
            .env_remove("CLOCKWISE_TOKEN")
            .env_remove("CLOCKWISE_TOKEN_FILE")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = ctl(&[], &["hashring", "--ring", "ctl", "add-node", "n"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("authorization"), "{stderr}");

    let file = unique_temp_dir().join("writer-token");
    write_with_mode(&file, &format!("{WRITER}\n"), 0o644);
    let args = [
        "--token-file",
        file.to_str().unwrap(),
        "hashring",
        "--ring",
        "ctl",
        "add-node",
        "n",
    ];
    let (code, stderr) = ctl(&[], &args);
    assert_eq!(code, Some(1), "a token file others may read: {stderr}");
    assert!(
        stderr.contains("chmod 600") && stderr.contains("0644") && !stderr.contains(WRITER),
        "{stderr}"
    );
    write_with_mode(&file, &format!("{WRITER}\n"), 0o600);
    let (code, stderr) = ctl(
        &[],
        &[
            "--token-file",
            file.to_str().unwrap(),
            "hashring",
            "--ring",
            "ctl",
            "add-node",
            "n",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = ctl(
        &[("CLOCKWISE_TOKEN", READER)],
        &["hashring", "--ring", "ctl", "add-node", "m"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("may not call") && !stderr.contains(READER),
        "{stderr}"
    );
    let (code, stderr) = ctl(
        &[("CLOCKWISE_TOKEN", READER)],
        &["hashring", "--ring", "ctl", "list-nodes"],
    );
    assert_eq!(code, Some(0), "{stderr}");
}

/// An `AddNode` of `node_id` as write `seq` of the session `shared-id`, under `token`.
fn add_in_session(node_id: &str, token: &str, seq: u64) -> tonic::Request<hr::AddNodeRequest> {
    let add = hr::AddNodeRequest {
        ring: "sessions".into(),
        timestamp: 1,
        node_id: node_id.into(),
    };
    let mut request = with_token(add, Some(token));
    let metadata = request.metadata_mut();
    metadata.insert("x-clockwise-client-id", "shared-id".parse().unwrap());
    metadata.insert("x-clockwise-seq", seq.into());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_session_belongs_to_the_token_that_opened_it() {
    let tokens = token_file(true);
    let node = NodeProcess::start_with(&["--auth-token-file", tokens.to_str().unwrap()]);
    let mut ring = node.hash_ring().await;
    let add = |ring: &mut HashRingClient<Channel>, node_id: &str, token: &str, seq| {
        let mut ring = ring.clone();
        let request = add_in_session(node_id, token, seq);
        async move {
            let reply = ring.add_node(request).await;
            reply
                .map(|r| r.into_inner().ok)
                .map_err(|s| (s.code(), s.message().to_owned()))
        }
    };
    // The owner (the writer token) opens the session.
    assert_eq!(add(&mut ring, "a", WRITER, 5).await, Ok(true));
    // Another token declaring the same id and seq is not answered the owner's outcome:
    // its write applies (adding "a" again is `false`), the owner's `true` is not read back.
    assert_eq!(add(&mut ring, "a", ADMIN, 5).await, Ok(false));
    // Its high seq does not make the owner's next writes stale.
    assert_eq!(add(&mut ring, "b", ADMIN, 1_000_000).await, Ok(true));
    assert_eq!(add(&mut ring, "c", WRITER, 6).await, Ok(true));
    // The owner's own retry is still answered once, from its session.
    assert_eq!(add(&mut ring, "c", WRITER, 6).await, Ok(true));
    let count = ring
        .get_node_count(with_token(
            hr::GetNodeCountRequest {
                ring: "sessions".into(),
                timestamp: 1,
            },
            Some(READER),
        ))
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 3);
}
