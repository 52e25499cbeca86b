//! Routing from an SDK `RingView` in one thread, one key at a time and in batches of
//! 64, against the engine's own ring rebuilt from the same topology in the same process
//! (the floor: what the view adds is the snapshot load), and against `RouteKey` over
//! gRPC (one caller, then 64 concurrent).

use std::time::Instant;

use clockwise_client::Client;
use clockwise_engine::HashRing;

/// Keys per batched call, as the engine benchmark's batches.
const BATCH: usize = 64;

pub struct LocalRouting {
    pub keys: usize,
    pub view_single: f64,
    pub view_batched: f64,
    pub engine_single: f64,
    pub engine_batched: f64,
    pub rpc_single: f64,
    pub rpc_concurrent: f64,
    /// Keys whose local route was checked against `RouteKey` (all agreed).
    pub checked: usize,
}

/// Routes per second of `route` over `keys`, the best of three passes.
fn rate(keys: &[String], mut route: impl FnMut(&[String]) -> usize) -> f64 {
    (0..3)
        .map(|_| {
            let began = Instant::now();
            let routed = route(keys);
            routed as f64 / began.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

pub async fn measure(client: &Client, ring: &str, keys: usize) -> Result<LocalRouting, String> {
    let view = client
        .hash_ring(ring)
        .watch()
        .await
        .map_err(|e| format!("watch: {e}"))?;
    let snapshot = view
        .wait_for(client.last_write_revision())
        .await
        .map_err(|e| format!("wait_for: {e}"))?;
    let engine = HashRing::from_topology(&snapshot.topology()).map_err(|e| e.to_string())?;
    // In probe order in memory, as a stream of requests brings them.
    let probes: Vec<String> = (0..keys).map(|i| format!("user:{i:08}")).collect();

    let view_single = rate(&probes, |keys| {
        let current = view.current().expect("a healthy view");
        keys.iter()
            .filter(|k| current.route_key(k).is_some())
            .count()
    });
    let view_batched = rate(&probes, |keys| {
        let current = view.current().expect("a healthy view");
        keys.chunks(BATCH)
            .map(|chunk| {
                let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
                current.route_keys(&chunk).iter().flatten().count()
            })
            .sum()
    });
    let engine_single = rate(&probes, |keys| {
        keys.iter()
            .filter(|k| engine.route_key(k).is_some())
            .count()
    });
    let engine_batched = rate(&probes, |keys| {
        keys.chunks(BATCH)
            .map(|chunk| {
                let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
                engine.route_keys(&chunk).iter().flatten().count()
            })
            .sum()
    });

    // The RPC baseline, and the check that local routes are RouteKey's.
    let remote = client.hash_ring(ring);
    let checked = 2_000.min(keys);
    let began = Instant::now();
    for key in &probes[..checked] {
        let rpc = remote
            .route_key(key)
            .await
            .map_err(|e| format!("RouteKey: {e}"))?;
        let local = snapshot.route_key(key).map(str::to_owned);
        if rpc != local {
            return Err(format!("{key}: RouteKey says {rpc:?}, the view {local:?}"));
        }
    }
    let rpc_single = checked as f64 / began.elapsed().as_secs_f64();
    let rpc_concurrent = {
        let began = Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..64 {
            let remote = client.hash_ring(ring);
            let keys: Vec<String> = probes
                .iter()
                .skip(worker)
                .step_by(64)
                .take(200)
                .cloned()
                .collect();
            tasks.push(tokio::spawn(async move {
                for key in &keys {
                    remote.route_key(key).await?;
                }
                Ok::<usize, clockwise_client::Error>(keys.len())
            }));
        }
        let mut routed = 0;
        for task in tasks {
            routed += task
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("RouteKey: {e}"))?;
        }
        routed as f64 / began.elapsed().as_secs_f64().max(1e-9)
    };
    Ok(LocalRouting {
        keys,
        view_single,
        view_batched,
        engine_single,
        engine_batched,
        rpc_single,
        rpc_concurrent,
        checked,
    })
}
