//! gRPC benchmark over loopback, one node or a 3-node group (`CLOCKWISE_BENCH_NODES=3`): requests/s and p50/p99 latency of
//! StoreKey and RouteKey at 1, 16 and 64 concurrent clients, beside tonic's own health
//! check on the same node(s) as the baseline, and for 3 nodes the time from SIGKILL of
//! the leader to the next acknowledged write. Prints a markdown table.
//!
//! `scripts/bench.sh` runs it against a release build; by hand:
//! `cargo build --release -p clockwise-node --bin clockwise &&
//!  CLOCKWISE_BIN=target/release/clockwise cargo bench -p clockwise-tests --bench rpc`.
//! The node runs with `--worker-threads 1` (`CLOCKWISE_BENCH_NODE_WORKERS` to change it)
//! and the load generator on one tokio thread, so each has one of the two cores.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clockwise_cluster::Peers;
use clockwise_proto::cluster::v1::cluster_client::ClusterClient;
use clockwise_proto::cluster::v1::{Role, StatusRequest};
use clockwise_proto::common::v1::PositionSpace;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use clockwise_proto::hashring::v1::{
    AddNodeWithReplicasRequest, ConfigureRingRequest, RouteKeyRequest, StoreKeyRequest,
};
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const RING: &str = "bench";
const KEYS: u64 = 100_000;
const RUN: Duration = Duration::from_secs(3);

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn clockwise_bin() -> String {
    std::env::var("CLOCKWISE_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/clockwise").to_owned()
    })
}

/// Starts `count` nodes (one group) and answers them with their endpoints.
fn start_nodes(count: usize) -> Vec<(Node, String)> {
    let bin = clockwise_bin();
    let free = || {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").to_string()
    };
    let addrs: Vec<String> = (0..count).map(|_| free()).collect();
    let peer_addrs: Vec<String> = (0..count).map(|_| free()).collect();
    let peers = Peers::new(
        (1..)
            .zip(&addrs)
            .zip(&peer_addrs)
            .map(|((id, a), p)| (id, a.as_str(), p.as_str())),
    )
    .expect("free local addresses are valid founders")
    .to_string();
    addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let data = std::env::temp_dir()
                .join(format!("clockwise-rpc-bench-{}-{i}", std::process::id()));
            let _ = std::fs::remove_dir_all(&data);
            let mut command = Command::new(&bin);
            command
                .args(["node", "--listen", addr, "--peer-listen", &peer_addrs[i]])
                .arg("--worker-threads")
                .arg(node_workers())
                .arg("--data-dir")
                .arg(&data);
            if count > 1 {
                command.args([
                    "--id",
                    &(i + 1).to_string(),
                    "--peers",
                    &peers,
                    "--initial-cluster-state",
                    "new",
                ]);
            }
            let mut child = command
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {bin} (build it first, see the module docs): {e}")
                });
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("piped"))
                .read_line(&mut line)
                .expect("node prints its address");
            let addr = line
                .trim()
                .strip_prefix("listening on ")
                .expect("listening line")
                .to_owned();
            (Node(child), format!("http://{addr}"))
        })
        .collect()
}

/// The index of the node that leads, waiting (bounded) for an election.
async fn leader(endpoints: &[String]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, endpoint) in endpoints.iter().enumerate() {
            let Ok(channel) = Channel::from_shared(endpoint.clone())
                .expect("uri")
                .connect()
                .await
            else {
                continue;
            };
            if let Ok(status) = ClusterClient::new(channel).status(StatusRequest {}).await {
                if status.into_inner().role == Role::Leader as i32 {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Time from SIGKILL of the leader to the first write acknowledged after it, writing
/// through another node.
async fn failover(nodes: &mut Vec<(Node, String)>) -> Duration {
    let endpoints: Vec<String> = nodes.iter().map(|(_, e)| e.clone()).collect();
    let killed = leader(&endpoints).await;
    let writer_at = (killed + 1) % nodes.len();
    let channel = Channel::from_shared(endpoints[writer_at].clone())
        .expect("uri")
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect");
    let mut client = HashRingClient::new(channel);
    let store = |i: u64| StoreKeyRequest {
        ring: RING.into(),
        timestamp: 0,
        key: format!("failover-{i}"),
        ttl_ms: 0,
    };
    client
        .store_key(store(0))
        .await
        .expect("a write before the kill");
    let killed_at = Instant::now();
    drop(nodes.remove(killed));
    let mut i = 1;
    loop {
        if client.store_key(store(i)).await.is_ok() {
            return killed_at.elapsed();
        }
        i += 1;
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no write after the kill"
        );
    }
}

/// The node's tokio worker threads: `CLOCKWISE_BENCH_NODE_WORKERS`, default 1.
fn node_workers() -> String {
    std::env::var("CLOCKWISE_BENCH_NODE_WORKERS").unwrap_or_else(|_| "1".into())
}

#[derive(Clone, Copy, Debug)]
enum Op {
    StoreKey,
    RouteKey,
    /// `grpc.health.v1.Health/Check`: tonic's own no-op RPC on the same node and
    /// channels, the baseline for the transport's share of the cost.
    HealthCheck,
}

struct Outcome {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(channels: &[Channel], op: Op, clients: usize) -> Outcome {
    let deadline = Instant::now() + RUN;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let channel = channels[c % channels.len()].clone();
            let mut client = HashRingClient::new(channel.clone());
            let mut health = HealthClient::new(channel);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = c as u64 * 7919;
                while Instant::now() < deadline {
                    i = (i + 104_729) % KEYS;
                    let key = format!("key-{i}");
                    let started = Instant::now();
                    match op {
                        Op::StoreKey => {
                            let req = StoreKeyRequest {
                                ring: RING.into(),
                                timestamp: 0,
                                key,
                                ttl_ms: 0,
                            };
                            client.store_key(req).await.expect("StoreKey");
                        }
                        Op::HealthCheck => {
                            let req = HealthCheckRequest {
                                service: String::new(),
                            };
                            health.check(req).await.expect("Health/Check");
                        }
                        Op::RouteKey => {
                            let req = RouteKeyRequest {
                                ring: RING.into(),
                                timestamp: 0,
                                key,
                            };
                            client.route_key(req).await.expect("RouteKey");
                        }
                    }
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    all.sort_unstable();
    Outcome {
        ops_per_sec: all.len() as f64 / RUN.as_secs_f64(),
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
    }
}

fn main() {
    let count: usize = std::env::var("CLOCKWISE_BENCH_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut nodes = start_nodes(count);
    let endpoints: Vec<String> = nodes.iter().map(|(_, e)| e.clone()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        leader(&endpoints).await;
        // Four channels, spread over the nodes: any node answers.
        let mut channels = Vec::new();
        for i in 0..4 {
            let endpoint = endpoints[i % endpoints.len()].clone();
            channels.push(Channel::from_shared(endpoint).expect("uri").connect().await.expect("connect"));
        }
        let mut setup = HashRingClient::new(channels[0].clone());
        setup
            .configure_ring(ConfigureRingRequest {
                ring: RING.into(),
                timestamp: 1,
                position_space: PositionSpace::U64 as i32,
            })
            .await
            .expect("ConfigureRing");
        for n in 0..64 {
            let req = AddNodeWithReplicasRequest {
                ring: RING.into(),
                timestamp: 1,
                node_id: format!("node-{n:02}"),
                num_replicas: 100,
            };
            setup.add_node_with_replicas(req).await.expect("AddNodeWithReplicas");
        }
        println!(
            "## gRPC over loopback: {count} node(s), every write fsync'd by a majority (node: {} worker thread(s) each; load: 1 thread, 4 channels spread over the nodes)\n",
            node_workers()
        );
        println!("| RPC | clients | requests/s | vs HealthCheck | p50 | p99 |");
        println!("|---|---:|---:|---:|---:|---:|");
        let mut baseline = [0.0; 3];
        for op in [Op::HealthCheck, Op::StoreKey, Op::RouteKey] {
            for (i, clients) in [1, 16, 64].into_iter().enumerate() {
                let o = run(&channels, op, clients).await;
                if let Op::HealthCheck = op {
                    baseline[i] = o.ops_per_sec;
                }
                println!(
                    "| {op:?} | {clients} | {:.0} | {:.2}× | {:.0} µs | {:.0} µs |",
                    o.ops_per_sec,
                    o.ops_per_sec / baseline[i],
                    o.p50.as_secs_f64() * 1e6,
                    o.p99.as_secs_f64() * 1e6
                );
            }
        }
        if count >= 3 {
            let took = failover(&mut nodes).await;
            println!("\nSIGKILL of the leader to the first acknowledged write through another node: {:.0} ms", took.as_secs_f64() * 1e3);
        }
    });
}
