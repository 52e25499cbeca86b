//! Local routing: watch a ring and route keys in process, drill-exact, checked against
//! the cluster's own `RouteKey` before and after a topology change.
//!
//! Builds a ring of 64 nodes × 100 virtual nodes (U64 position space), opens a
//! `RingView`, routes 1,000,000 keys locally (`LOCAL_ROUTING_KEYS` to change that),
//! checks 1,000 of them against `RouteKey` (exits non-zero on any difference), adds,
//! removes and merges nodes, waits for the view to hold those writes
//! (`wait_for(client.last_write_revision())`: read-your-writes) and checks again.
//! The rates it prints are informational.
//!
//! ```sh
//! cargo run --release --bin clockwise -- cluster up --nodes 3      # in another terminal
//! CLOCKWISE_ENDPOINTS=127.0.0.1:50051,127.0.0.1:50052 cargo run --release -p clockwise-client --example local_routing
//! ```

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clockwise_client::{Client, HashRing, HashRingView, PositionSpace};

const NODES: usize = 64;
const VIRTUAL_NODES: i64 = 100;
const CHECKED: usize = 1_000;
const BATCH: usize = 1_024;
const IN_FLIGHT: usize = 16;

fn endpoints() -> Vec<String> {
    std::env::var("CLOCKWISE_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:50051".into())
        .split(',')
        .map(|e| e.trim().to_owned())
        .collect()
}

fn key_count() -> Result<usize, Box<dyn std::error::Error>> {
    match std::env::var("LOCAL_ROUTING_KEYS") {
        Ok(n) => Ok(n.parse()?),
        Err(_) => Ok(1_000_000),
    }
}

/// Routes every key on one snapshot: one key at a time, then in batches. Answers the
/// two rates (routes/s).
fn route_locally(
    view: &HashRingView,
    keys: &[String],
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let snapshot = view.current()?;
    let started = Instant::now();
    let mut routed = 0usize;
    for key in keys {
        routed += usize::from(snapshot.route_key(key).is_some());
    }
    let single = keys.len() as f64 / started.elapsed().as_secs_f64();
    if routed != keys.len() {
        return Err(format!(
            "{} of {} keys found no node",
            keys.len() - routed,
            keys.len()
        )
        .into());
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let started = Instant::now();
    for chunk in refs.chunks(BATCH) {
        routed -= snapshot.route_keys(chunk).iter().flatten().count();
    }
    let batched = keys.len() as f64 / started.elapsed().as_secs_f64();
    if routed != 0 {
        return Err("batched routes disagree with single routes".into());
    }
    Ok((single, batched))
}

/// Compares the view's route of `CHECKED` keys spread over `keys` with `RouteKey`;
/// answers the RPC rate, or the differences.
async fn check(
    ring: &HashRing,
    view: &HashRingView,
    keys: &[String],
) -> Result<f64, Box<dyn std::error::Error>> {
    let snapshot = view.current()?;
    let step = (keys.len() / CHECKED).max(1);
    let sample: Vec<&String> = keys.iter().step_by(step).take(CHECKED).collect();
    // RouteKey calls IN_FLIGHT at a time: a linearizable read is a round through the
    // leader, and one at a time would measure latency, not what the cluster serves.
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for chunk in sample.chunks(sample.len().div_ceil(IN_FLIGHT)) {
        let ring = ring.clone();
        let chunk: Vec<String> = chunk.iter().map(|k| (*k).clone()).collect();
        calls.spawn(async move {
            let mut routes = Vec::with_capacity(chunk.len());
            for key in chunk {
                let remote = ring.route_key(&key).await?;
                routes.push((key, remote));
            }
            Ok::<_, clockwise_client::Error>(routes)
        });
    }
    let mut differences = Vec::new();
    while let Some(routes) = calls.join_next().await {
        for (key, remote) in routes?? {
            let local = snapshot.route_key(&key);
            if remote.as_deref() != local {
                differences.push(format!("{key}: local {local:?}, RouteKey {remote:?}"));
            }
        }
    }
    let rate = sample.len() as f64 / started.elapsed().as_secs_f64();
    if !differences.is_empty() {
        for line in differences.iter().take(10) {
            eprintln!("{line}");
        }
        return Err(format!(
            "{} of {} keys routed differently at revision {}",
            differences.len(),
            sample.len(),
            snapshot.revision()
        )
        .into());
    }
    println!(
        "revision {}: {} keys agree with RouteKey",
        snapshot.revision(),
        sample.len()
    );
    Ok(rate)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder().endpoints(endpoints()).build().await?;
    // A ring of our own, so the example can run again on the same cluster.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
    let ring = client.hash_ring(format!("local-routing-{}-{nanos}", std::process::id()));
    ring.configure_ring(PositionSpace::U64).await?;
    for i in 0..NODES {
        ring.add_node_with_replicas(&format!("node-{i}"), VIRTUAL_NODES)
            .await?;
    }
    let view = ring.watch().await?;
    view.wait_for(client.last_write_revision()).await?;
    println!(
        "view of {} at revision {}: {} nodes",
        ring.name(),
        view.revision(),
        view.current()?.topology().nodes.len()
    );

    let keys: Vec<String> = (0..key_count()?).map(|i| format!("user:{i}")).collect();
    let (single, batched) = route_locally(&view, &keys)?;
    let rpc = check(&ring, &view, &keys).await?;

    // A topology change of each kind, then read-your-writes through wait_for.
    ring.add_node_with_replicas("node-new", VIRTUAL_NODES)
        .await?;
    ring.remove_node("node-0").await?;
    ring.merge_nodes("node-1", "node-2").await?;
    let revision = client.last_write_revision();
    let snapshot = view.wait_for(revision).await?;
    println!(
        "after adding node-new, removing node-0 and merging node-1 into node-2: revision {} (writes at {revision})",
        snapshot.revision()
    );
    check(&ring, &view, &keys).await?;

    println!("local: {single:.0} routes/s, rpc: {rpc:.0} routes/s");
    println!(
        "(rpc: RouteKey with {IN_FLIGHT} calls in flight; local: one thread, one key at a time)"
    );
    println!("local batched ({BATCH} keys a batch): {batched:.0} routes/s");
    Ok(())
}
