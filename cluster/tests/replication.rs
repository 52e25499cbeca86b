//! Three raft drivers in one process over a channel transport, each with a real
//! fsync'd log in a temp dir: proposals are replicated and applied in the same order
//! everywhere, survive a full restart, and only the leader accepts them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clockwise_cluster::driver::{self, DriverConfig, ProposeError, RaftHandle, Role, Transport};
use clockwise_cluster::{LogStore, StateMachine};
use raft::eraftpb::Message;

/// Applied entries, shared with the test.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl Recorder {
    fn entries(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl StateMachine for Recorder {
    type Error = Never;
    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8> {
        let mut entries = self.0.lock().unwrap();
        entries.push(data.to_vec());
        format!("applied {} at {index}", entries.len()).into_bytes()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.lock().unwrap().concat()
    }
    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), Never> {
        Ok(())
    }
}

/// Delivers every message to its addressee's driver.
#[derive(Default)]
struct Router(RwLock<HashMap<u64, RaftHandle>>);

impl Transport for Router {
    fn send(&self, messages: Vec<Message>) {
        let handles = self.0.read().unwrap();
        for message in messages {
            if let Some(handle) = handles.get(&message.to) {
                handle.step(message);
            }
        }
    }
}

struct Cluster {
    dir: PathBuf,
    router: Arc<Router>,
    nodes: Vec<(RaftHandle, JoinHandle<()>, Recorder)>,
}

impl Cluster {
    fn start(dir: PathBuf) -> Cluster {
        let router = Arc::new(Router::default());
        let nodes = (1..=3)
            .map(|id| {
                let store = LogStore::open(&dir.join(format!("node-{id}"))).unwrap();
                let recorder = Recorder::default();
                let config = DriverConfig {
                    id,
                    initial_members: (1..=3).map(|id| (id, String::new())).collect(),
                    tick: Duration::from_millis(20),
                    ..DriverConfig::default()
                };
                let transport: Arc<dyn Transport> = router.clone();
                let (handle, thread) =
                    driver::spawn(config, store, recorder.clone(), transport).unwrap();
                router.0.write().unwrap().insert(id, handle.clone());
                (handle, thread, recorder)
            })
            .collect();
        Cluster { dir, router, nodes }
    }

    /// Waits (bounded) until one node is leader and returns its index.
    fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = self
                .nodes
                .iter()
                .position(|(h, _, _)| h.status().role == Role::Leader)
            {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader was elected");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until every node has applied `n` entries.
    fn wait_applied(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.nodes.iter().any(|(_, _, r)| r.entries().len() < n) {
            assert!(
                Instant::now() < deadline,
                "entries were not applied everywhere"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(self) -> PathBuf {
        self.router.0.write().unwrap().clear();
        for (handle, thread, _) in self.nodes {
            handle.stop();
            thread.join().unwrap();
        }
        self.dir
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clockwise-repl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_are_applied_everywhere_in_one_order_and_survive_a_restart() {
    let cluster = Cluster::start(temp_dir("order"));
    let leader = cluster.nodes[cluster.leader()].0.clone();
    let proposals: Vec<_> = (0..50)
        .map(|i| {
            let leader = leader.clone();
            tokio::spawn(async move { leader.propose(format!("cmd-{i}").into_bytes()).await })
        })
        .collect();
    for proposal in proposals {
        let result = proposal
            .await
            .unwrap()
            .expect("the leader applies its proposals");
        assert!(String::from_utf8(result).unwrap().starts_with("applied "));
    }
    cluster.wait_applied(50);
    let applied: Vec<_> = cluster.nodes.iter().map(|(_, _, r)| r.entries()).collect();
    assert_eq!(applied[0].len(), 50);
    assert!(
        applied.iter().all(|a| a == &applied[0]),
        "replicas applied different orders"
    );

    // Every node stops; restarted from their logs alone, they re-apply the same entries.
    let before = applied[0].clone();
    let dir = cluster.stop();
    let cluster = Cluster::start(dir);
    cluster.leader();
    cluster.wait_applied(50);
    for (_, _, recorder) in &cluster.nodes {
        assert_eq!(recorder.entries(), before);
    }
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_proposals_and_names_the_leader() {
    let cluster = Cluster::start(temp_dir("follower"));
    let leader = cluster.leader();
    let leader_id = cluster.nodes[leader].0.status().id;
    // Wait until a follower knows the leader (heartbeats), then propose to it.
    let follower = &cluster.nodes[(leader + 1) % 3].0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while follower.status().leader_id != leader_id {
        assert!(
            Instant::now() < deadline,
            "the follower never learned the leader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = follower.propose(b"x".to_vec()).await.unwrap_err();
    assert_eq!(
        refused,
        ProposeError::NotLeader {
            leader: Some(leader_id)
        }
    );
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}
