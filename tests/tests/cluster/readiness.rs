//! `GET /readyz` on the HTTP port: 200 on every node of a healthy cluster, 503 with
//! the reason on a node cut off from its quorum.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clockwise_tests::cluster::{TestCluster, WAIT};

/// `GET /readyz`: the status line and the body.
async fn readyz(addr: SocketAddr) -> (String, String) {
    let response = clockwise_tests::http_get(addr, "/readyz")
        .await
        .expect("the HTTP port answers");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// Polls node `i`'s `/readyz` until its status line starts with `expected` (bounded).
async fn wait_readyz(cluster: &TestCluster, i: usize, expected: &str) -> String {
    let addr = cluster.nodes[i]
        .as_ref()
        .expect("a live node")
        .metrics_addr();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = readyz(addr).await;
        if status.starts_with(expected) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "node {i}: /readyz still {status:?} ({body:?}) after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_with_a_quorum_and_503_without() {
    let mut cluster = TestCluster::start(3);
    cluster.leader().await;
    for i in 0..3 {
        wait_readyz(&cluster, i, "HTTP/1.1 200").await;
    }
    // Node 0 alone: it loses (or never regains) a leader, and says so.
    cluster.kill(1);
    cluster.kill(2);
    let reason = wait_readyz(&cluster, 0, "HTTP/1.1 503").await;
    assert!(reason.contains("no leader known"), "{reason}");
}
