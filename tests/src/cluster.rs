//! A cluster of real `clockwise node` processes on loopback for tests: start, kill
//! (SIGKILL), wipe, restart, join; wait for a leader or a status; check that every
//! acknowledged key is present everywhere and that the replicas converge.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clockwise_cluster::Peers;
use clockwise_proto::cluster::v1::cluster_client::ClusterClient;
use clockwise_proto::cluster::v1::{Role, StatusRequest, StatusResponse};
use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use tonic::transport::{Channel, Endpoint};

use crate::{free_local_addr, unique_temp_dir, NodeProcess};

/// How long a cluster may take to elect, catch up or converge in a test.
pub const WAIT: Duration = Duration::from_secs(30);

/// Node `i` (0-based) has raft id `i + 1`.
pub struct TestCluster {
    /// Where clients call each node.
    pub addrs: Vec<String>,
    /// Where each node's peers reach its raft transport.
    pub peer_addrs: Vec<String>,
    pub dirs: Vec<PathBuf>,
    pub nodes: Vec<Option<NodeProcess>>,
    /// How many nodes founded the cluster (the rest joined).
    founders: usize,
    /// Extra flags for every node; `{id}` in one stands for the node's raft id (so each
    /// node can be given its own peer certificate).
    extra: Vec<String>,
    /// Whether node `i` has been started before: its first start founds the cluster
    /// (`--initial-cluster-state new`), later ones say it is a member (`existing`).
    started: Vec<bool>,
    /// A node started with this soft `RLIMIT_NOFILE`: `(index, limit)`.
    soft_fd_limit: Option<(usize, u64)>,
    /// Added to every node's environment (e.g. `RUST_LOG`).
    env: Vec<(String, String)>,
}

impl TestCluster {
    pub fn start(size: usize) -> TestCluster {
        Self::start_with(size, &[])
    }

    pub fn start_with(size: usize, extra: &[&str]) -> TestCluster {
        Self::start_limited(size, extra, None, &[])
    }

    /// As [`TestCluster::start_with`], `env` added to every node's environment.
    pub fn start_with_env(size: usize, extra: &[&str], env: &[(&str, &str)]) -> TestCluster {
        Self::start_limited(size, extra, None, env)
    }

    /// As [`TestCluster::start_with`], node `node` started (every time) with a soft
    /// `RLIMIT_NOFILE` of `soft`, as many systems start processes.
    pub fn start_with_fd_limit(size: usize, extra: &[&str], node: usize, soft: u64) -> TestCluster {
        Self::start_limited(size, extra, Some((node, soft)), &[])
    }

    fn start_limited(
        size: usize,
        extra: &[&str],
        soft_fd_limit: Option<(usize, u64)>,
        env: &[(&str, &str)],
    ) -> TestCluster {
        let addrs: Vec<String> = (0..size).map(|_| free_local_addr()).collect();
        let peer_addrs: Vec<String> = (0..size).map(|_| free_local_addr()).collect();
        let dirs = (0..size).map(|_| unique_temp_dir()).collect();
        let mut cluster = TestCluster {
            addrs,
            peer_addrs,
            dirs,
            nodes: (0..size).map(|_| None).collect(),
            founders: size,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            started: vec![false; size],
            soft_fd_limit,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for i in 0..size {
            cluster.start_node(i);
        }
        cluster
    }

    /// A cluster of nodes started elsewhere (e.g. on a restored data dir); more join
    /// with [`TestCluster::new_slot`] and [`TestCluster::start_joining`].
    pub fn adopt(nodes: Vec<NodeProcess>) -> TestCluster {
        TestCluster {
            addrs: nodes.iter().map(|n| n.grpc_addr().to_string()).collect(),
            peer_addrs: nodes.iter().map(|n| n.peer_addr().to_string()).collect(),
            dirs: nodes.iter().map(|n| n.data_dir().to_path_buf()).collect(),
            founders: nodes.len(),
            started: vec![true; nodes.len()],
            nodes: nodes.into_iter().map(Some).collect(),
            extra: Vec::new(),
            soft_fd_limit: None,
            env: Vec::new(),
        }
    }

    /// A new node (not started): its index.
    pub fn new_slot(&mut self) -> usize {
        self.addrs.push(free_local_addr());
        self.peer_addrs.push(free_local_addr());
        self.dirs.push(unique_temp_dir());
        self.nodes.push(None);
        self.started.push(true);
        self.nodes.len() - 1
    }

    /// Starts node `i` empty, waiting to be added (`--join`).
    pub fn start_joining(&mut self, i: usize) {
        let id = (i + 1).to_string();
        let mut args = vec![
            "--id",
            &id,
            "--join",
            "--peer-listen",
            &self.peer_addrs[i],
            "--raft-tick-ms",
            "20",
        ];
        let extra = self.extra_for(i);
        args.extend(extra.iter().map(String::as_str));
        self.nodes[i] = Some(NodeProcess::start_at(&self.addrs[i], &self.dirs[i], &args));
    }

    /// SIGKILL, and the node's data is gone.
    pub fn wipe(&mut self, i: usize) {
        self.kill(i);
        std::fs::remove_dir_all(&self.dirs[i]).unwrap();
        std::fs::create_dir_all(&self.dirs[i]).unwrap();
    }

    pub fn cluster_client(&self, i: usize) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel(i))
    }

    /// Waits (bounded) until node `i`'s status satisfies `done`.
    pub async fn wait_status(&self, i: usize, what: &str, done: impl Fn(&StatusResponse) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.status(i).await;
            if status.as_ref().is_some_and(&done) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {}: {what}: {status:?}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// Starts node `i` as a founder: `--initial-cluster-state new` the first time,
    /// `existing` afterwards (as `clockwise cluster up` does).
    pub fn start_node(&mut self, i: usize) {
        let state = if self.started[i] { "existing" } else { "new" };
        self.started[i] = true;
        let node = self
            .try_start_node_as(i, Some(state))
            .unwrap_or_else(|e| panic!("node {}: {e}", i + 1));
        self.nodes[i] = Some(node);
    }

    /// Starts node `i` with its founder flags and `--initial-cluster-state state`
    /// (`None`: the flag left out); answers the process, or what it printed when it
    /// refused to start ([`NodeProcess::try_start_at`]).
    pub fn try_start_node_as(&self, i: usize, state: Option<&str>) -> Result<NodeProcess, String> {
        let peers = Peers::new(
            (1..)
                .zip(&self.addrs)
                .zip(&self.peer_addrs)
                .take(self.founders)
                .map(|((id, a), p)| (id, a.as_str(), p.as_str())),
        )
        .expect("free local addresses are valid founders")
        .to_string();
        let id = (i + 1).to_string();
        let mut args = vec![
            "--id",
            &id,
            "--peer-listen",
            &self.peer_addrs[i],
            "--peers",
            &peers,
            "--raft-tick-ms",
            "20",
            "--request-timeout-ms",
            "3000",
        ];
        if let Some(state) = state {
            args.extend(["--initial-cluster-state", state]);
        }
        let extra = self.extra_for(i);
        args.extend(extra.iter().map(String::as_str));
        match self.soft_fd_limit {
            Some((node, soft)) if node == i => {
                NodeProcess::try_start_at_with_fd_limit(&self.addrs[i], &self.dirs[i], &args, soft)
            }
            _ => {
                NodeProcess::try_start_at_with_env(&self.addrs[i], &self.dirs[i], &args, &self.env)
            }
        }
    }

    /// The extra flags of node `i`, `{id}` replaced by its raft id.
    fn extra_for(&self, i: usize) -> Vec<String> {
        let id = (i + 1).to_string();
        self.extra
            .iter()
            .map(|arg| arg.replace("{id}", &id))
            .collect()
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    pub fn channel(&self, i: usize) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addrs[i]))
            .expect("endpoint")
            .timeout(Duration::from_secs(10))
            .connect_lazy()
    }

    pub fn hash_ring(&self, i: usize) -> HashRingClient<Channel> {
        HashRingClient::new(self.channel(i))
    }

    pub async fn status(&self, i: usize) -> Option<StatusResponse> {
        let mut client = ClusterClient::new(self.channel(i));
        client
            .status(StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits (bounded) for a node that says it leads, among the live ones.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            for i in 0..self.nodes.len() {
                if self.nodes[i].is_some() {
                    if let Some(s) = self.status(i).await {
                        if s.role == Role::Leader as i32 {
                            return i;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every acknowledged key is stored, as seen by a linearizable read on every node.
    pub async fn assert_all_present(&self, ring: &str, keys: &[String]) {
        for i in self.live() {
            let mut client = self.hash_ring(i);
            for key in keys {
                let found = client
                    .locate_key(hr::LocateKeyRequest {
                        ring: ring.into(),
                        timestamp: 1,
                        key: key.clone(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("LocateKey {key} on node {}: {e}", i + 1))
                    .into_inner()
                    .found;
                assert!(found, "acknowledged key {key} is missing on node {}", i + 1);
            }
        }
    }

    /// Waits (bounded) until every node has applied the same index, then compares digests.
    pub async fn assert_digests_converge(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut statuses = Vec::new();
            for i in self.live() {
                statuses.push(self.status(i).await.expect("status"));
            }
            let applied: Vec<u64> = statuses.iter().map(|s| s.applied_index).collect();
            if applied.iter().all(|&a| a == applied[0]) {
                let digests: Vec<&str> = statuses.iter().map(|s| s.state_digest.as_str()).collect();
                assert!(
                    digests.iter().all(|d| *d == digests[0]),
                    "digests differ at index {}: {digests:?}",
                    applied[0]
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas never caught up: {applied:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits (bounded) until `nodes` nodes answer `client`'s status calls with one applied
/// index (for clusters the test reaches only through the SDK, e.g. over TLS or tokens).
pub async fn wait_applied_everywhere(client: &clockwise_client::Client, nodes: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let statuses = client.cluster().statuses().await;
        let applied: Vec<u64> = statuses
            .iter()
            .filter_map(|(_, s)| s.as_ref().ok().map(|s| s.applied_index))
            .collect();
        if applied.len() == nodes && applied.iter().all(|&a| a == applied[0]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not catch up: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
