//! The cluster under test: real `clockwise node` processes, each peer port behind its
//! proxy (peers reach a node's raft transport only through it; clients call the node
//! directly), with the process-level faults: kill -9 and restart, SIGSTOP / SIGCONT,
//! wiping a node's data.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clockwise_client::{Client, NodeStatus, RetryPolicy, Role};
use clockwise_cluster::Peers;
use clockwise_tests::proxy::Network;
use clockwise_tests::{free_local_addr, unique_temp_dir, NodeProcess};

/// Flags of every node: fast elections, and snapshots often enough that a run
/// compacts the log and a wiped node catches up from a snapshot.
const NODE_FLAGS: [&str; 8] = [
    "--raft-tick-ms",
    "20",
    "--request-timeout-ms",
    "3000",
    "--snapshot-entries",
    "2000",
    "--worker-threads",
    "2",
];

pub struct ChaosCluster {
    pub network: Network,
    /// Where clients call each node.
    pub listen: Vec<String>,
    /// Where each node's raft transport listens (only its proxy connects there).
    peer_listen: Vec<String>,
    /// Where peers reach each node's raft transport: its proxy (the members' peer
    /// addresses).
    pub proxies: Vec<String>,
    dirs: Vec<PathBuf>,
    nodes: Vec<Option<NodeProcess>>,
    paused: Vec<bool>,
    /// Whether node `i` was started before: a founder's first start founds the cluster
    /// (`--initial-cluster-state new`), every later one says it is a member (`existing`).
    started: Vec<bool>,
}

impl ChaosCluster {
    pub async fn start(size: usize) -> Result<ChaosCluster, String> {
        let network = Network::new();
        let listen: Vec<String> = (0..size).map(|_| free_local_addr()).collect();
        let peer_listen: Vec<String> = (0..size).map(|_| free_local_addr()).collect();
        let mut proxies = Vec::new();
        for (i, upstream) in peer_listen.iter().enumerate() {
            let proxy = network
                .add_proxy(i, &free_local_addr(), upstream)
                .await
                .map_err(|e| format!("proxy of node {}: {e}", i + 1))?;
            proxies.push(proxy.to_string());
        }
        let mut cluster = ChaosCluster {
            network,
            listen,
            peer_listen,
            proxies,
            dirs: (0..size).map(|_| unique_temp_dir()).collect(),
            nodes: (0..size).map(|_| None).collect(),
            paused: vec![false; size],
            started: vec![false; size],
        };
        for i in 0..size {
            cluster.start_node(i, false);
        }
        Ok(cluster)
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// Starts node `i` over its data dir: as a founder (`--peers`, ignored by a node
    /// that has a log) or empty, waiting to be added (`--join`).
    pub fn start_node(&mut self, i: usize, join: bool) {
        let node = self
            .try_start_node(i, join)
            .unwrap_or_else(|e| panic!("node {}: {e}", i + 1));
        self.network.set_process(i, node.pid());
        self.nodes[i] = Some(node);
        self.paused[i] = false;
    }

    /// Starts node `i` as [`ChaosCluster::start_node`] does, and answers the process, or
    /// what it printed when it refused to start.
    pub fn try_start_node(&mut self, i: usize, join: bool) -> Result<NodeProcess, String> {
        let peers = Peers::new(
            (1..)
                .zip(&self.listen)
                .zip(&self.proxies)
                .map(|((id, client), proxy)| (id, client.as_str(), proxy.as_str())),
        )
        .expect("local addresses and proxies are valid founders")
        .to_string();
        let id = (i + 1).to_string();
        let mut args = vec!["--id", &id, "--peer-listen", &self.peer_listen[i]];
        if join {
            args.push("--join");
        } else {
            let state = if self.started[i] { "existing" } else { "new" };
            args.extend(["--peers", &peers, "--initial-cluster-state", state]);
        }
        self.started[i] = true;
        args.extend(NODE_FLAGS);
        NodeProcess::try_start_at(&self.listen[i], &self.dirs[i], &args)
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
        self.paused[i] = false;
    }

    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.paused[i] = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.paused[i] = false;
    }

    fn signal(&self, i: usize, signal: libc::c_int) {
        if let Some(node) = &self.nodes[i] {
            let pid = libc::pid_t::try_from(node.pid()).expect("a pid fits pid_t");
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// kill -9, and the node's data is gone.
    pub fn wipe(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i);
        std::fs::remove_dir_all(&self.dirs[i])?;
        std::fs::create_dir_all(&self.dirs[i])
    }

    /// Every fault undone: the network healed, paused nodes resumed, stopped nodes
    /// started again.
    pub fn heal_all(&mut self) {
        self.network.heal();
        for i in 0..self.size() {
            if self.paused[i] {
                self.resume(i);
            }
            if !self.is_running(i) {
                self.start_node(i, false);
            }
        }
    }

    /// A client of the whole cluster with patient retries. An
    /// attempt gives up after 1 s (a stopped leader holds a call until then), the call
    /// after 15 s.
    pub async fn client(&self) -> Result<Client, String> {
        Client::builder()
            .endpoints(self.listen.iter().cloned())
            .timeout(Duration::from_secs(15))
            .attempt_timeout(Duration::from_secs(1))
            .retry(RetryPolicy {
                max_attempts: 40,
                initial_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(500),
            })
            .build()
            .await
            .map_err(|e| format!("client: {e}"))
    }

    /// Each node's status.
    pub async fn statuses(&self, client: &Client) -> Vec<Option<NodeStatus>> {
        let mut statuses = vec![None; self.size()];
        for (endpoint, status) in client.cluster().statuses().await {
            if let (Some(i), Ok(status)) = (self.index_of(&endpoint), status) {
                statuses[i] = Some(status);
            }
        }
        statuses
    }

    fn index_of(&self, endpoint: &str) -> Option<usize> {
        let address = endpoint.trim_start_matches("http://");
        self.listen.iter().position(|a| a == address)
    }

    /// Waits (up to `within`) until every node runs, agrees on one leader, and that
    /// leader has every node as a voter; answers the leader's index.
    pub async fn wait_healthy(&self, client: &Client, within: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + within;
        loop {
            let statuses = self.statuses(client).await;
            let leader = statuses[0].as_ref().map(|s| s.leader_id).unwrap_or(0);
            let agreed = leader != 0
                && statuses
                    .iter()
                    .all(|s| s.as_ref().is_some_and(|s| s.leader_id == leader));
            if agreed {
                let index = usize::try_from(leader - 1).unwrap_or(usize::MAX);
                let complete = statuses
                    .get(index)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| {
                        s.role == Role::Leader
                            && s.members.len() == self.size()
                            && s.members.iter().all(|m| !m.learner)
                    });
                if complete {
                    return Ok(index);
                }
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = statuses
                    .iter()
                    .enumerate()
                    .map(|(i, s)| match s {
                        Some(s) => format!(
                            "node {}: {:?} leader {} term {} members {}",
                            i + 1,
                            s.role,
                            s.leader_id,
                            s.term,
                            s.members
                                .iter()
                                .map(|m| format!(
                                    "{}{}",
                                    m.id,
                                    if m.learner { "(learner)" } else { "" }
                                ))
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                        None => format!("node {}: no answer", i + 1),
                    })
                    .collect();
                return Err(format!(
                    "not healthy within {within:?}: {}",
                    seen.join("; ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to `within`) until every node applied the same index, then compares
    /// their state digests: `Ok((index, digest))` when equal.
    pub async fn wait_converged(
        &self,
        client: &Client,
        within: Duration,
    ) -> Result<(u64, String), String> {
        let deadline = Instant::now() + within;
        loop {
            let statuses = self.statuses(client).await;
            if let Some(all) = statuses
                .iter()
                .cloned()
                .collect::<Option<Vec<NodeStatus>>>()
            {
                let index = all[0].applied_index;
                if all.iter().all(|s| s.applied_index == index) {
                    let digest = &all[0].state_digest;
                    if all.iter().all(|s| &s.state_digest == digest) {
                        return Ok((index, digest.clone()));
                    }
                    let digests: Vec<&str> = all.iter().map(|s| s.state_digest.as_str()).collect();
                    return Err(format!(
                        "digests differ at applied index {index}: {digests:?}"
                    ));
                }
            }
            if Instant::now() >= deadline {
                let applied: Vec<Option<u64>> = statuses
                    .iter()
                    .map(|s| s.as_ref().map(|s| s.applied_index))
                    .collect();
                return Err(format!(
                    "replicas did not reach one applied index within {within:?}: {applied:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
