//! TLS on the client port and mutual TLS on the peer port, against real node
//! processes: a cluster replicates over mutual TLS; clients without the CA, without a
//! client certificate, or in plain text get nothing; a process whose certificate
//! another CA signed cannot speak raft; TLS on both ports lifts the loopback rule.

use std::path::Path;
use std::time::Duration;

use clockwise_client::{Client, RetryPolicy, Tls};
use clockwise_proto::raft::v1::raft_transport_client::RaftTransportClient;
use clockwise_proto::raft::v1::RaftMessageBatch;
use clockwise_tests::certs::{Issued, TestCa};
use clockwise_tests::cluster::{wait_applied_everywhere, TestCluster};
use clockwise_tests::{unique_temp_dir, NodeProcess};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::refused_start;

struct Pki {
    clients: TestCa,
    node: Issued,
    client: Issued,
    peers: TestCa,
    /// Node 1's peer certificate; nodes 2 and 3 have theirs beside it.
    peer: Issued,
    stranger: Issued,
}

fn pki() -> Pki {
    let dir = unique_temp_dir();
    let clients = TestCa::new(&dir, "clients");
    let peers = TestCa::new(&dir, "peers");
    let strangers = TestCa::new(&dir, "strangers");
    for id in 2..=3 {
        peers.issue_peer(&format!("peer-{id}"), id);
    }
    Pki {
        node: clients.issue("node"),
        client: clients.issue("client"),
        peer: peers.issue_peer("peer-1", 1),
        stranger: strangers.issue_peer("stranger", 1),
        clients,
        peers,
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Every node's flags; `{id}` stands for its raft id ([`TestCluster`] fills it in), so
/// each node presents the peer certificate minted for it.
fn flags(pki: &Pki) -> Vec<String> {
    let per_node = |path: &Path| path.display().to_string().replace("peer-1", "peer-{id}");
    [
        ("--cert", pki.node.cert.display().to_string()),
        ("--key", pki.node.key.display().to_string()),
        ("--trusted-ca", pki.clients.ca_path().display().to_string()),
        ("--peer-cert", per_node(&pki.peer.cert)),
        ("--peer-key", per_node(&pki.peer.key)),
        (
            "--peer-trusted-ca",
            pki.peers.ca_path().display().to_string(),
        ),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [flag.to_owned(), path])
    .collect()
}

/// [`flags`] for node 1 alone.
fn node_1_flags(pki: &Pki) -> Vec<String> {
    flags(pki).iter().map(|f| f.replace("{id}", "1")).collect()
}

/// A client that gives up fast.
async fn impatient(addrs: &[String], tls: Option<Tls>) -> Client {
    let mut builder = Client::builder()
        .endpoints(addrs.iter().cloned())
        .timeout(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        });
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_mutual_tls_serves_only_holders_of_its_certificates() {
    let pki = pki();
    let flags = flags(&pki);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = TestCluster::start_with(3, &flags);

    let tls = Tls::new(read(&pki.clients.ca_path()))
        .identity(read(&pki.client.cert), read(&pki.client.key));
    let client = Client::builder()
        .endpoints(cluster.addrs.clone())
        .tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let ring = client.hash_ring("tls");
    ring.add_node("n").await.unwrap();
    for i in 0..10 {
        ring.store_key(&format!("k{i}")).await.unwrap();
    }
    // Every replica applies them: raft between the nodes runs over mutual TLS.
    wait_applied_everywhere(&client, 3).await;

    // ctl (and backup save, which shares its flags) speaks TLS with --cacert/--cert/--key.
    let ctl = |tls: bool| {
        let mut command = std::process::Command::new(clockwise_tests::clockwise_bin());
        command.args([
            "ctl",
            "--endpoints",
            &cluster.addrs[0],
            "--timeout-ms",
            "3000",
        ]);
        if tls {
            command
                .arg("--cacert")
                .arg(pki.clients.ca_path())
                .arg("--cert")
                .arg(&pki.client.cert)
                .arg("--key")
                .arg(&pki.client.key);
        }
        command.args(["hashring", "--ring", "tls", "get-node-count"]);
        command.output().unwrap()
    };
    let with_tls = ctl(true);
    assert!(
        with_tls.status.success(),
        "{}",
        String::from_utf8_lossy(&with_tls.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&with_tls.stdout).trim(), "1");
    assert_eq!(ctl(false).status.code(), Some(1));

    // Plain text, a client without its certificate, a client that trusts another CA.
    let plain = impatient(&cluster.addrs, None).await;
    assert!(plain.hash_ring("tls").get_node_count().await.is_err());
    let no_identity = impatient(&cluster.addrs, Some(Tls::new(read(&pki.clients.ca_path())))).await;
    assert!(no_identity.hash_ring("tls").get_node_count().await.is_err());
    let wrong_ca = impatient(&cluster.addrs, Some(Tls::new(read(&pki.peers.ca_path())))).await;
    assert!(wrong_ca.hash_ring("tls").get_node_count().await.is_err());

    // On the peer port: a process whose certificate another CA signed, or none at all,
    // cannot send raft messages; one with a peer certificate gets through TLS.
    let peer_port = format!("https://{}", cluster.peer_addrs[0]);
    let raft = |identity: Option<&Issued>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&pki.peers.ca_path())));
        if let Some(issued) = identity {
            tls = tls.identity(Identity::from_pem(read(&issued.cert), read(&issued.key)));
        }
        let endpoint = Endpoint::from_shared(peer_port.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .timeout(Duration::from_secs(5));
        RaftTransportClient::new(endpoint.connect_lazy())
    };
    let batch = || RaftMessageBatch {
        from: 99,
        messages: Vec::new(),
        from_address: "127.0.0.1:1".into(),
    };
    assert!(raft(Some(&pki.stranger)).send(batch()).await.is_err());
    assert!(raft(None).send(batch()).await.is_err());
    // A real peer certificate passes TLS (the empty batch is then refused or ignored by
    // raft, not by the handshake).
    let through = raft(Some(&pki.peer)).send(batch()).await;
    if let Err(status) = &through {
        assert_ne!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_ne!(status.code(), tonic::Code::Unknown, "{status:?}");
    }
}

#[test]
fn tls_on_both_ports_lifts_the_loopback_rule_and_bad_files_stop_the_start() {
    let pki = pki();
    let dir = unique_temp_dir();
    let mut args = node_1_flags(&pki);
    args.extend(["--peer-listen".into(), "0.0.0.0:0".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = NodeProcess::start_at("0.0.0.0:0", &dir, &args);
    assert!(node.grpc_addr().ip().is_unspecified());
    assert!(node.peer_addr().ip().is_unspecified());
    drop(node);

    let stderr = refused_start(&[
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "/nonexistent/cert.pem",
        "--key",
        "/nonexistent/key.pem",
    ]);
    assert!(stderr.contains("--cert /nonexistent/cert.pem"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
