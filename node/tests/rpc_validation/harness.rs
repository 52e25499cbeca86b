//! One in-process node for the whole binary: bound on `127.0.0.1:0`, a group of one with
//! a fast raft tick, its raft log in a temporary directory that is removed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clockwise_node::service::sync::SyncConfig;
use clockwise_node::{BoundNode, NodeConfig, ServeError};
use clockwise_proto::cluster::v1::cluster_client::ClusterClient;
use clockwise_proto::cluster::v1::{Role, StatusRequest, StatusResponse};
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use clockwise_proto::hashring::v1::GetNodeCountRequest;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// Deadline of every call: a hung handler fails the test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a group of one may take to elect itself.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A directory under the system temp dir, unique per process and call, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "clockwise-rpc-validation-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A serving node and a channel to its client port.
pub struct TestNode {
    channel: Channel,
    /// Resolves the node's shutdown future: the serving task drains and returns.
    stop: Option<oneshot::Sender<()>>,
    /// The serving task, answering how `BoundNode::serve` ended.
    task: Option<JoinHandle<Result<(), ServeError>>>,
    /// Dropped last: the node's raft log.
    _dir: TempDir,
}

impl TestNode {
    /// Binds, serves, connects, and waits until the node leads its group of one.
    pub async fn start() -> TestNode {
        Self::start_with(|_| {}).await
    }

    /// [`Self::start`] with the configuration changed by `configure` first.
    pub async fn start_with(configure: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = TempDir::new();
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = NodeConfig {
            listen: any,
            peer_listen: Some(any),
            data_dir: dir.0.clone(),
            raft_tick: Duration::from_millis(10),
            sync: SyncConfig {
                delay: Duration::from_millis(1),
                ..SyncConfig::default()
            },
            ..NodeConfig::default()
        };
        configure(&mut config);
        let node = BoundNode::bind(config).await.expect("bind 127.0.0.1:0");
        let addr = node.grpc_addr().expect("bound client port");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(node.serve(async {
            let _ = stopped.await;
        }));
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("a valid endpoint")
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        let node = TestNode {
            channel,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        };
        node.wait_for_leader().await;
        node
    }

    /// A channel to the client port; clones share one connection.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub async fn status(&self) -> StatusResponse {
        ClusterClient::new(self.channel())
            .status(StatusRequest {})
            .await
            .expect("Cluster.Status is served")
            .into_inner()
    }

    /// What has been applied: the applied index and the state digest. Refused calls
    /// leave both as they were.
    ///
    /// A write is answered as the state machine applies it, just before the raft driver
    /// publishes the status that counts it. A linearizable read first goes through the
    /// driver after that, so the status read next counts every answered write.
    pub async fn applied(&self) -> (u64, String) {
        let barrier = GetNodeCountRequest {
            ring: "read-barrier".into(),
            timestamp: 0,
        };
        HashRingClient::new(self.channel())
            .get_node_count(barrier)
            .await
            .expect("a linearizable read is served");
        let status = self.status().await;
        assert_eq!(
            status.applied_index, status.commit_index,
            "a node that answered every call applied all it committed: {status:?}"
        );
        (status.applied_index, status.state_digest)
    }

    /// Polls `Cluster.Status` until this node leads, or fails at the deadline.
    async fn wait_for_leader(&self) {
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        loop {
            let status = self.status().await;
            if status.role == Role::Leader as i32 && status.leader_id == status.id {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {ELECTION_TIMEOUT:?}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Shuts the node down and checks that it stopped cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("stopped once");
        let served = tokio::time::timeout(CALL_TIMEOUT, task)
            .await
            .expect("the node stops within the call timeout")
            .expect("the serving task did not panic");
        served.expect("the node served and stopped without an error");
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
