//! A session router: chat sessions placed on GPU servers by consistent hashing, each
//! server capped by its memory; a full server evicts its oldest sessions to fit a new
//! one, and draining a server moves its sessions to the next ones on the ring.
//!
//! ```sh
//! CLOCKWISE_ENDPOINTS=127.0.0.1:50051 cargo run -p clockwise-client --example session_router
//! ```

use std::collections::BTreeMap;

use clockwise_client::{ChatRouter, Client};

/// GPU servers and their memory for sessions (MB).
const GPUS: [(&str, i64); 4] = [
    ("gpu-a100-0", 40_960),
    ("gpu-a100-1", 40_960),
    ("gpu-h100-0", 81_920),
    ("gpu-l4-0", 24_576),
];

fn endpoints() -> Vec<String> {
    std::env::var("CLOCKWISE_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:50051".into())
        .split(',')
        .map(|e| e.trim().to_owned())
        .collect()
}

/// Sessions of a few typical sizes (a context window's KV cache, in MB).
fn session_size(i: usize) -> i64 {
    [2_048, 4_096, 8_192, 12_288][i % 4]
}

async fn report(router: &ChatRouter) -> Result<(), clockwise_client::Error> {
    for (gpu, limit) in GPUS {
        let used = router.get_memory_used(gpu).await?;
        if used == 0 && router.get_replica_count(gpu).await? == 0 {
            continue; // drained
        }
        println!("  {gpu:<11} {used:>6} / {limit:>6} MB");
        assert!(used <= limit, "{gpu} holds {used} MB over its {limit} MB");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder().endpoints(endpoints()).build().await?;
    let router = client.chat_router(format!("gpus-{}", std::process::id()));

    // Bigger GPUs get more positions on the ring, so more sessions.
    for (gpu, limit) in GPUS {
        router.add_server_with_replicas(gpu, limit / 4_096).await?;
        router.set_memory_limit(gpu, limit).await?;
    }

    let mut placed = BTreeMap::new();
    for i in 0..60 {
        let session = format!("chat-{i:03}");
        let gpu = router
            .assign_request(&session, session_size(i))
            .await?
            .ok_or("no GPU servers")?;
        *placed.entry(gpu).or_insert(0) += 1;
    }
    println!("60 sessions placed: {placed:?}");
    report(&router).await?;
    println!("busiest: {:?}", router.top_servers(2).await?);

    // The oldest sessions were evicted where memory ran out; recent ones are placed.
    let recent = router
        .locate_request("chat-059")
        .await?
        .ok_or("the latest session is placed")?;
    println!("chat-059 ({} MB) is on {}", recent.size, recent.owner);

    // Drain the smallest GPU: its sessions move to the next servers on the ring,
    // without evictions, so memory may briefly exceed a limit until the next
    // assignment there evicts.
    router.remove_server("gpu-l4-0").await?;
    println!(
        "after draining gpu-l4-0: {:?}",
        router.list_servers().await?
    );
    let moved = router
        .locate_request("chat-059")
        .await?
        .ok_or("a session survives a drain")?;
    assert_ne!(moved.owner, "gpu-l4-0");
    println!("session router done");
    Ok(())
}
