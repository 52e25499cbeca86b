//! gRPC benchmark of one node over loopback: requests/s and p50/p99 latency of
//! StoreKey and RouteKey at 1, 16 and 64 concurrent clients, beside tonic's own health
//! check on the same node as the baseline. Prints a markdown table.
//!
//! `scripts/bench.sh` runs it against a release build; by hand:
//! `cargo build --release -p clockwise-node --bin clockwise &&
//!  CLOCKWISE_BIN=target/release/clockwise cargo bench -p clockwise-tests --bench rpc`.
//! The node runs with `--worker-threads 1` (`CLOCKWISE_BENCH_NODE_WORKERS` to change it)
//! and the load generator on one tokio thread, so each has one of the two cores.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn start_node() -> (Node, String) {
    let bin = std::env::var("CLOCKWISE_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/clockwise").to_owned()
    });
    let data = std::env::temp_dir().join(format!("clockwise-rpc-bench-{}", std::process::id()));
    let mut child = Command::new(&bin)
        .args(["node", "--listen", "127.0.0.1:0", "--worker-threads"])
        .arg(node_workers())
        .arg("--data-dir")
        .arg(&data)
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
    let (_node, endpoint) = start_node();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..4 {
            channels.push(
                Channel::from_shared(endpoint.clone())
                    .expect("uri")
                    .connect()
                    .await
                    .expect("connect"),
            );
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
            setup
                .add_node_with_replicas(req)
                .await
                .expect("AddNodeWithReplicas");
        }
        println!(
            "## gRPC, one node over loopback (node: {} worker thread(s); load: 1 thread, 4 channels)\n",
            node_workers()
        );
        println!("| RPC | clients | requests/s | vs HealthCheck | p50 | p99 |");
        println!("|---|---:|---:|---:|---:|---:|");
        let mut baseline = [0.0; 3];
        for op in [Op::HealthCheck, Op::StoreKey, Op::RouteKey] {
            for (i, clients) in [1, 16, 64].into_iter().enumerate() {
                let used = &channels[..clients.min(channels.len())];
                let o = run(used, op, clients).await;
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
    });
}
