//! Quickstart: connect to a cluster, place keys on a ring, cap a node, batch.
//!
//! ```sh
//! cargo run --release --bin clockwise -- cluster up --nodes 3      # in another terminal
//! CLOCKWISE_ENDPOINTS=127.0.0.1:50051,127.0.0.1:50052 cargo run -p clockwise-client --example quickstart
//! ```

use clockwise_client::{BatchResult, Client, KeyOperation};

fn endpoints() -> Vec<String> {
    std::env::var("CLOCKWISE_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:50051".into())
        .split(',')
        .map(|e| e.trim().to_owned())
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder().endpoints(endpoints()).build().await?;
    println!("connected; leader: {:?}", client.leader());

    // A ring of our own, so the example can run again on the same cluster.
    let ring = client.hash_ring(format!("quickstart-{}", std::process::id()));
    for node in ["cache-a", "cache-b", "cache-c"] {
        ring.add_node_with_replicas(node, 50).await?;
    }
    println!("nodes: {:?}", ring.list_nodes().await?);

    for i in 0..30 {
        ring.store_key(&format!("user:{i}")).await?;
    }
    println!("most loaded: {:?}", ring.top_loaded(3).await?);
    let owner = ring.route_key("user:7").await?.ok_or("an empty ring")?;
    let location = ring.locate_key("user:7").await?.ok_or("user:7 is stored")?;
    assert_eq!(location.owner, owner, "a stored key lives where it routes");
    println!(
        "user:7 lives on {owner}, last stored at {}",
        location.last_access
    );

    // Cap the busiest node: the next store there evicts its least recently used key.
    let load = ring.get_load(&owner).await?;
    ring.set_capacity(&owner, load).await?;
    let evicted = ring.evict_lru(&owner).await?;
    println!("capped {owner} at {load}; evicted {evicted:?} by hand");

    // A batch is one replicated command, applied in order.
    let results = ring
        .batch_operations(&[
            KeyOperation::store("session:1"),
            KeyOperation::route("session:2"),
            KeyOperation::remove_key("session:1"),
        ])
        .await?;
    assert_eq!(results[2], Some(BatchResult::Removed(true)));
    println!("batch: {results:?}");

    // Reads that may lag a little, spread over every replica.
    let count = ring.clone().stale_reads().get_node_count().await?;
    assert_eq!(count, 3);
    println!("quickstart done: {count} nodes");
    Ok(())
}
