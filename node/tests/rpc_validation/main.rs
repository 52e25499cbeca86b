//! Every RPC of `HashRing`, `ChatRouter` and `Cluster`, checked in process against one
//! node (`BoundNode` on `127.0.0.1:0`, a group of one) over a real gRPC client: bad
//! input is refused with the documented code and a message that starts with
//! `"<field>:"`, refused calls apply nothing, and what the drill defines as a result
//! (false, None, 0) stays a result.
//!
//! The rules themselves are tables beside them (`node/src/service/validate/tests.rs`);
//! here is which RPC applies which rule, with which cap:
//!
//! - ids (`node_id`, `key`, `server_name`, `request_id`, `from_*`/`to_*`, batch and sync
//!   entry ids): empty, over `MAX_ID_BYTES` bytes (ASCII or two-byte characters) are
//!   refused; `MAX_ID_BYTES` bytes are kept whole;
//! - `ring`: over `MAX_ID_BYTES` refused on every RPC; empty is `DEFAULT_RING`;
//! - `timestamp`: negative or over a day ahead refused on every RPC;
//! - `n` (TopLoaded/TopServers): negative refused; 0 is empty, `i64::MAX` is all;
//! - `capacity`/`max_mb`: -1 or 0..=`MAX_MB`, read back as set;
//! - `num_replicas`: 0..=`MAX_REPLICAS` (the engine's), read back;
//! - `size_mb`, `bandwidth_mb`: 0..=`MAX_MB`; `ttl_ms`: 0..=`MAX_TTL_MS`, expiring at
//!   timestamp + ttl;
//! - `operations` (≤ `MAX_BATCH_OPERATIONS`), `requests`/`transfers` (≤
//!   `MAX_SYNC_ENTRIES`), a bad entry refusing the whole call by its index;
//!   `max_concurrent` 1..=`MAX_CONCURRENT_CAP`; `mode`; `position_space`;
//!   `backup_timestamp` ≥ 0;
//! - metadata: `x-clockwise-consistency` on reads, `x-clockwise-client-id` and
//!   `x-clockwise-seq` on writes;
//! - `ConfigureRing` on a ring in use: FAILED_PRECONDITION naming the ring;
//! - quotas (`--max-rings`, `--max-nodes-per-ring`, `--max-vnodes-per-ring`):
//!   RESOURCE_EXHAUSTED naming the quota, nothing applied; a write that changes nothing
//!   creates no ring (`quotas`);
//! - `Cluster`: member ids, `host:port` addresses, and impossible membership changes.
//!
//! Over-the-wire input (garbage bytes, oversized messages, the peer port) is tested
//! against a real process in `tests/tests/guards/bad_input.rs`.

mod chat_router;
mod cluster;
mod harness;
mod hash_ring;
mod quotas;
mod table;

use std::panic::AssertUnwindSafe;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::FutureExt as _;

/// `n` ASCII bytes.
fn long(n: usize) -> String {
    "x".repeat(n)
}

/// `n` two-byte characters (`2n` bytes).
fn wide(n: usize) -> String {
    "é".repeat(n)
}

/// This machine's clock in ms since the Unix epoch (the node's clock is the same one).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_bad_input_naming_the_field_and_keeps_drill_results() {
    let node = harness::TestNode::start().await;
    // Each service's checks run even when another's fail; failures are listed at the end
    // (their panic messages are printed as they happen).
    let mut failed = Vec::new();
    if AssertUnwindSafe(hash_ring::check(&node))
        .catch_unwind()
        .await
        .is_err()
    {
        failed.push("HashRing");
    }
    if AssertUnwindSafe(chat_router::check(&node))
        .catch_unwind()
        .await
        .is_err()
    {
        failed.push("ChatRouter");
    }
    if AssertUnwindSafe(cluster::check(&node))
        .catch_unwind()
        .await
        .is_err()
    {
        failed.push("Cluster");
    }
    assert!(
        failed.is_empty(),
        "failed: {failed:?} (see the panics above)"
    );
    node.stop().await;
}

/// The tables name every RPC each ring service declares (the descriptor set is the
/// source): an RPC added to a `.proto` without rows here fails this test instead of
/// going unchecked.
#[test]
fn the_tables_cover_every_rpc_of_both_ring_services() {
    use clockwise_proto::chatrouter::v1::chat_router_client::ChatRouterClient;
    use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
    use prost::Message as _;
    use table::Service;
    use tonic::transport::Channel;

    let set = prost_types::FileDescriptorSet::decode(clockwise_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let declared = |service: &str| -> Vec<String> {
        let mut methods: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| &file.service)
            .filter(|s| s.name() == service)
            .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
            .collect();
        methods.sort();
        methods
    };
    let tabled = |rpcs: &[&str]| -> Vec<String> {
        let mut names: Vec<String> = rpcs.iter().map(|r| r.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(
        tabled(<HashRingClient<Channel> as Service>::RPCS),
        declared("HashRing")
    );
    assert_eq!(
        tabled(<ChatRouterClient<Channel> as Service>::RPCS),
        declared("ChatRouter")
    );
}
