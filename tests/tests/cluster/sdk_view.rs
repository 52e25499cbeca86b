//! Watching rings across real node processes: an SDK `RingView` on one node follows
//! changes made through another; a view rides out a leader kill and a follower
//! restart with no change missed or applied twice; `clockwise ctl … watch` prints the
//! changes live, in text and JSON, from a start revision.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clockwise_client::{Client, HashRingView, ViewUpdate, ViewUpdateKind};
use clockwise_tests::clockwise_bin;
use clockwise_tests::cluster::TestCluster;
use serde_json::Value;
use tokio::sync::broadcast::error::TryRecvError;

async fn client(endpoints: &[String]) -> Client {
    Client::builder()
        .endpoints(endpoints.iter().cloned())
        .timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap()
}

/// Every update the view has published since `updates` subscribed (the buffer is far
/// larger than these tests' changes: a lag fails the test).
fn drain(updates: &mut tokio::sync::broadcast::Receiver<ViewUpdate>) -> Vec<ViewUpdate> {
    let mut seen = Vec::new();
    loop {
        match updates.try_recv() {
            Ok(update) => seen.push(update),
            Err(TryRecvError::Empty) => return seen,
            Err(other) => panic!("the view's updates: {other}"),
        }
    }
}

/// The view routes every one of `keys` as `RouteKey` answers through `client`.
async fn assert_routes_match(view: &HashRingView, client: &Client, keys: usize) {
    let ring = client.hash_ring(view.name());
    let snapshot = view.current().unwrap();
    for i in 0..keys {
        let key = format!("key-{i}");
        assert_eq!(
            snapshot.route_key(&key).map(str::to_owned),
            ring.route_key(&key).await.unwrap(),
            "{key} at revision {}",
            snapshot.revision()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_on_one_node_follows_changes_made_through_another_within_a_second() {
    let cluster = TestCluster::start(3);
    cluster.leader().await;
    let watcher = client(&cluster.addrs[2..]).await;
    let writer = client(&cluster.addrs[..1]).await;
    let refused = watcher.hash_ring("r".repeat(300)).watch().await;
    assert!(
        matches!(
            refused,
            Err(clockwise_client::Error::InvalidArgument { .. })
        ),
        "an oversize ring name is refused at once, not retried"
    );
    let view = watcher.hash_ring("follow").watch().await.unwrap();
    assert_eq!(view.endpoint().as_deref(), Some(cluster.addrs[2].as_str()));
    assert!(view.current().unwrap().topology().nodes.is_empty());
    let mut updates = view.updates();

    let ring = writer.hash_ring("follow");
    let mut revisions = Vec::new();
    for step in 0..3 {
        match step {
            0 => assert!(ring.add_node_with_replicas("a", 20).await.unwrap()),
            1 => assert!(ring.add_node_with_replicas("b", 30).await.unwrap()),
            _ => assert!(ring.merge_nodes("a", "b").await.unwrap()),
        }
        let revision = writer.last_write_revision();
        let snapshot = view
            .wait_for_within(revision, Duration::from_secs(1))
            .await
            .unwrap_or_else(|e| panic!("change {step} did not reach node 3 in 1 s: {e}"));
        assert!(snapshot.revision() >= revision);
        revisions.push(revision);
    }
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    let seen = drain(&mut updates);
    let applied: Vec<u64> = seen.iter().map(|u| u.revision).collect();
    assert_eq!(applied, revisions, "one update per change, at its revision");
    assert!(matches!(seen[2].kind, ViewUpdateKind::Changed(_)));
    let nodes: Vec<String> = view
        .current()
        .unwrap()
        .topology()
        .nodes
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(nodes, ["b"]);
    assert_routes_match(&view, &watcher, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_survives_a_leader_kill_and_a_follower_restart_missing_nothing() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.leader().await;
    let writer = client(&cluster.addrs).await;
    let view = client(&cluster.addrs)
        .await
        .hash_ring("survive")
        .watch()
        .await
        .unwrap();
    let mut updates = view.updates();
    let ring = writer.hash_ring("survive");
    let mut written = Vec::new();
    let mut next = 0;
    let mut change = async |written: &mut Vec<u64>| {
        let node = format!("n{next}");
        next += 1;
        assert!(ring.add_node_with_replicas(&node, 5).await.unwrap());
        written.push(writer.last_write_revision());
    };
    for _ in 0..4 {
        change(&mut written).await;
    }

    cluster.kill(leader);
    for _ in 0..4 {
        change(&mut written).await;
    }
    view.wait_for(*written.last().unwrap()).await.unwrap();

    // Restart a follower: the one the view streams from (made a follower first if it
    // leads), so the view must resume on another node.
    cluster.start_node(leader);
    let streaming = view
        .endpoint()
        .and_then(|e| cluster.addrs.iter().position(|a| *a == e))
        .expect("the view streams from a node of the cluster");
    if cluster.leader().await == streaming {
        let target = (streaming + 1) % 3;
        writer
            .cluster()
            .transfer_leader(target as u64 + 1)
            .await
            .unwrap();
        cluster
            .wait_status(target, "the leadership moved", |s| {
                s.leader_id == target as u64 + 1
            })
            .await;
    }
    let follower = streaming;
    cluster.kill(follower);
    for _ in 0..4 {
        change(&mut written).await;
    }
    view.wait_for(*written.last().unwrap()).await.unwrap();
    let now = view.endpoint();
    assert!(
        now.is_some() && now.as_deref() != Some(cluster.addrs[follower].as_str()),
        "the view resumed on another node: {now:?}"
    );
    cluster.start_node(follower);
    for _ in 0..4 {
        change(&mut written).await;
    }
    let last = *written.last().unwrap();
    view.wait_for(last).await.unwrap();

    let seen = drain(&mut updates);
    let revisions: Vec<u64> = seen.iter().map(|u| u.revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions applied strictly increase: {revisions:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|u| matches!(u.kind, ViewUpdateKind::Broken(_))),
        "{seen:?}"
    );
    if !seen
        .iter()
        .any(|u| matches!(u.kind, ViewUpdateKind::Replaced { .. }))
    {
        // Followed change by change: exactly the writes, once each.
        assert_eq!(revisions, written);
    }
    let fresh = client(&cluster.addrs)
        .await
        .hash_ring("survive")
        .watch()
        .await
        .unwrap();
    let fresh = fresh.wait_for(last).await.unwrap();
    assert_eq!(view.current().unwrap().topology(), fresh.topology());
    let mut listed = ring.list_nodes().await.unwrap();
    listed.sort();
    let viewed: Vec<String> = fresh.topology().nodes.into_iter().map(|n| n.id).collect();
    assert_eq!(viewed, listed);
    assert_eq!(listed.len(), 16);
    assert_routes_match(&view, &writer, 100).await;
}

/// A `clockwise ctl … watch` child whose stdout is collected as it comes.
struct Watching {
    child: Child,
    stdout: Arc<Mutex<String>>,
}

impl Watching {
    fn start(endpoints: &str, args: &[&str]) -> Watching {
        let mut child = Command::new(clockwise_bin())
            .arg("ctl")
            .args(args)
            .env("CLOCKWISE_ENDPOINTS", endpoints)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clockwise ctl watch");
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stdout.take().expect("piped");
        let sink = stdout.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut text = sink.lock().unwrap_or_else(|e| e.into_inner());
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Watching { child, stdout }
    }

    /// Waits (bounded) until at least `n` whole lines have been printed.
    async fn lines(&mut self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.stdout.lock().unwrap().clone();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if text.ends_with('\n') && lines.len() >= n {
                return lines;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "ctl watch exited: {text}"
            );
            assert!(
                Instant::now() < deadline,
                "{n} lines expected, got {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn revision_of(line: &str) -> u64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_watch_prints_each_change_live_in_text_and_json() {
    let cluster = TestCluster::start(3);
    cluster.leader().await;
    let writer = client(&cluster.addrs[..1]).await;

    // Text, on node 3, while the changes go through node 1.
    let mut text = Watching::start(&cluster.addrs[2], &["hashring", "--ring", "cw", "watch"]);
    let first = text.lines(1).await;
    assert!(first[0].contains("  topology  "), "{first:?}");
    let ring = writer.hash_ring("cw");
    assert!(ring.add_node_with_replicas("a", 3).await.unwrap());
    assert!(ring.add_node("b").await.unwrap());
    assert!(ring.merge_nodes("a", "b").await.unwrap());
    let lines = text.lines(4).await;
    let revisions: Vec<u64> = lines.iter().map(|l| revision_of(l)).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
    assert!(lines[1].contains("node_added  a replicas=3"), "{lines:?}");
    assert!(lines[2].contains("node_added  b"), "{lines:?}");
    assert!(lines[3].ends_with("merged  a -> b"), "{lines:?}");
    assert_eq!(revisions[3], writer.last_write_revision());

    // JSON lines, on ChatRouter.
    let mut json = Watching::start(
        &cluster.addrs[1],
        &["--json", "chatrouter", "--ring", "cw", "watch"],
    );
    json.lines(1).await;
    let router = writer.chat_router("cw");
    assert!(router.add_server("s").await.unwrap());
    let added = writer.last_write_revision();
    assert!(router.set_memory_limit("s", 64).await.unwrap());
    assert!(router.remove_server("s").await.unwrap());
    let events: Vec<Value> = json
        .lines(4)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["topology", "node_added", "limit_set", "node_removed"]
    );
    assert_eq!(events[1]["node"]["id"], "s");
    assert_eq!(events[1]["revision"], added);
    assert_eq!(events[2]["limit"], 64);

    // From a start revision: only the changes after it, no topology.
    let mut resumed = Watching::start(
        &cluster.addrs[0],
        &[
            "--json",
            "chatrouter",
            "--ring",
            "cw",
            "watch",
            "--start-revision",
            &added.to_string(),
        ],
    );
    let events: Vec<Value> = resumed
        .lines(2)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["limit_set", "node_removed"]);
}
