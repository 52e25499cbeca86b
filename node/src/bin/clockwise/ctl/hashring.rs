//! `clockwise ctl hashring …`: one subcommand per clockwise.hashring.v1.HashRing RPC.

use clap::Subcommand;
use clockwise_client::{Client, Error, KeyOperation};

use super::output::Answer;
use super::{open_ring, parse_each, ring_call, split_pair, Mode, RingArgs, RingCall};

#[derive(Subcommand, Debug)]
pub(super) enum HashRingCall {
    /// Add a node with one position.
    AddNode { node_id: String },
    /// Remove a node; its keys move on.
    RemoveNode { node_id: String },
    /// The node a key routes to.
    RouteKey { key: String },
    /// How many nodes the ring has.
    GetNodeCount,
    /// Store a key on the node it routes to (alive --ttl-ms after the call; 0: forever).
    StoreKey {
        key: String,
        #[arg(long, default_value_t = 0)]
        ttl_ms: i64,
    },
    /// Every node.
    ListNodes,
    /// Keys on a node.
    GetLoad { node_id: String },
    /// The N most loaded nodes.
    TopLoaded { n: i64 },
    /// Add a node with N positions.
    AddNodeWithReplicas { node_id: String, num_replicas: i64 },
    /// Positions of a node.
    GetReplicaCount { node_id: String },
    /// Cap a node's keys (-1: unlimited).
    SetCapacity {
        node_id: String,
        #[arg(allow_hyphen_values = true)]
        capacity: i64,
    },
    /// A node's capacity (-1: unlimited).
    GetCapacity { node_id: String },
    /// Keys a node holds against its capacity.
    GetUsed { node_id: String },
    /// Evict a node's least recently used key.
    EvictLru { node_id: String },
    /// Run operations in order as one command: TYPE:KEY (store, route, remove_key).
    BatchOperations {
        #[arg(required = true)]
        operations: Vec<String>,
    },
    /// Simulated rate-limited syncs: SOURCE:DEST ...
    SyncReplicas {
        #[arg(required = true)]
        requests: Vec<String>,
        #[arg(long, default_value_t = 1)]
        max_concurrent: i32,
        #[arg(long, value_enum, default_value_t = Mode::FailFast)]
        mode: Mode,
    },
    /// Where a key is stored now.
    LocateKey { key: String },
    #[command(flatten)]
    Ring(RingCall),
    /// Merge FROM_NODE into TO_NODE (it takes over FROM_NODE's positions and keys).
    MergeNodes { from_node: String, to_node: String },
    /// Where a merged node went.
    GetMergedInto { node_id: String },
}

pub(super) async fn call(
    client: &Client,
    args: RingArgs,
    call: HashRingCall,
) -> Result<Answer, Error> {
    let ring = open_ring!(client.hash_ring, args);
    Ok(match call {
        HashRingCall::AddNode { node_id } => Answer::Bool(ring.add_node(&node_id).await?),
        HashRingCall::RemoveNode { node_id } => Answer::Bool(ring.remove_node(&node_id).await?),
        HashRingCall::RouteKey { key } => Answer::Name(ring.route_key(&key).await?),
        HashRingCall::GetNodeCount => Answer::Int(ring.get_node_count().await?),
        HashRingCall::StoreKey { key, ttl_ms } => {
            Answer::Name(ring.store_key_with_ttl(&key, ttl_ms).await?)
        }
        HashRingCall::ListNodes => Answer::Names(ring.list_nodes().await?),
        HashRingCall::GetLoad { node_id } => Answer::Int(ring.get_load(&node_id).await?),
        HashRingCall::TopLoaded { n } => Answer::Names(ring.top_loaded(n).await?),
        HashRingCall::AddNodeWithReplicas {
            node_id,
            num_replicas,
        } => Answer::Bool(ring.add_node_with_replicas(&node_id, num_replicas).await?),
        HashRingCall::GetReplicaCount { node_id } => {
            Answer::Int(ring.get_replica_count(&node_id).await?)
        }
        HashRingCall::SetCapacity { node_id, capacity } => {
            Answer::Bool(ring.set_capacity(&node_id, capacity).await?)
        }
        HashRingCall::GetCapacity { node_id } => Answer::Int(ring.get_capacity(&node_id).await?),
        HashRingCall::GetUsed { node_id } => Answer::Int(ring.get_used(&node_id).await?),
        HashRingCall::EvictLru { node_id } => Answer::Name(ring.evict_lru(&node_id).await?),
        HashRingCall::BatchOperations { operations } => {
            let operations = parse_each(&operations, |op| {
                let (kind, key) = split_pair(op, "operations", "TYPE:KEY")?;
                Ok(KeyOperation::new(kind, key))
            })?;
            Answer::Batch(ring.batch_operations(&operations).await?)
        }
        HashRingCall::SyncReplicas {
            requests,
            max_concurrent,
            mode,
        } => {
            let pairs: Vec<(&str, &str)> = requests
                .iter()
                .map(|r| split_pair(r, "requests", "SOURCE:DEST"))
                .collect::<Result<_, _>>()?;
            Answer::Bools(
                ring.sync_replicas(&pairs, max_concurrent, mode.into())
                    .await?,
            )
        }
        HashRingCall::LocateKey { key } => Answer::Location(ring.locate_key(&key).await?),
        HashRingCall::Ring(call) => ring_call!(ring, call),
        HashRingCall::MergeNodes { from_node, to_node } => {
            Answer::Bool(ring.merge_nodes(&from_node, &to_node).await?)
        }
        HashRingCall::GetMergedInto { node_id } => {
            Answer::Name(ring.get_merged_into(&node_id).await?)
        }
    })
}
