//! `clockwise node`: its flags, turned into a [`NodeConfig`] (whose `validate` holds the
//! rules), then one node served until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clockwise_cluster::Peers;
use clockwise_node::http_port;
use clockwise_node::service::auth::Tokens;
use clockwise_node::service::bulkhead::{
    BulkheadConfig, DEFAULT_BATCH_MAX_CALLS, DEFAULT_BATCH_QUEUE_WAIT,
};
use clockwise_node::service::connections;
use clockwise_node::service::limits::Limits;
use clockwise_node::service::sync::SyncConfig;
use clockwise_node::service::tls::{NodeTls, TlsFiles};
use clockwise_node::{BoundNode, NodeConfig};

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// Address for clients' gRPC (port 0 picks a free port; the chosen address is
    /// printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Address for the raft transport, which only peers call (printed as `peers on
    /// ADDR`). Default: --listen's host with its port + 100 (port 0 when --listen's is 0).
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// Directory for the node's data: the raft log (fsync'd before a write is
    /// acknowledged) and the latest snapshot live in DIR/raft. A restarted node restores
    /// the snapshot and replays the log after it.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// This node's raft id (≥ 1), one of the ids in --peers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    id: u64,
    /// Every member of a new cluster, this node included, as `ID=CLIENT/PEER` (its
    /// --listen and --peer-listen): `1=127.0.0.1:50051/127.0.0.1:50151,2=…`. Without it
    /// the node is a group of one. Only read when the log is new; a restarted node
    /// keeps the membership in its log.
    #[arg(long, default_value = "")]
    peers: Peers,
    /// Join an existing cluster instead of founding one: start empty and wait until a
    /// member's `Cluster.AddMember` (with this node's --id and address) adds it; it
    /// catches up as a learner and becomes a voter. --peers is ignored.
    #[arg(long)]
    join: bool,
    /// What an empty --data-dir means, as etcd's flag: `new` founds a cluster (with a
    /// new cluster id); `existing` says this node is a member of a running cluster, so
    /// an empty dir means its data was lost and the node refuses to start (printing
    /// how to recover). Ignored once the dir holds a log. Default: a node whose --peers
    /// names no other member founds; one whose --peers names others must be told.
    #[arg(long, value_name = "new|existing")]
    initial_cluster_state: Option<clockwise_node::InitialClusterState>,
    /// Entries applied between two snapshots; each snapshot compacts the log to a tenth
    /// of this many entries before it.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_entries: u64,
    /// Backups (HashRing/ChatRouter `Backup`) kept per ring; the oldest saved is dropped
    /// beyond it. The leader's value applies to a backup it replicates.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_backups_per_ring: u32,
    /// Quota: most rings (HashRing and ChatRouter namespaces together); a write that
    /// would create one more is refused with RESOURCE_EXHAUSTED. The leader's value applies.
    #[arg(long, default_value_t = clockwise_engine::quota::DEFAULT_MAX_RINGS,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_rings: u64,
    /// Quota: most nodes (servers) in one ring. The leader's value applies.
    #[arg(long, default_value_t = clockwise_engine::quota::DEFAULT_MAX_NODES_PER_RING,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_nodes_per_ring: u64,
    /// Quota: most virtual nodes in one ring. The leader's value applies.
    #[arg(long, default_value_t = clockwise_engine::quota::DEFAULT_MAX_VNODES_PER_RING,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_vnodes_per_ring: u64,
    /// How long a write or a linearizable read waits for a quorum before UNAVAILABLE, in ms.
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// One raft tick in ms (an election takes 10–20 ticks; heartbeats every 2).
    #[arg(long, default_value_t = clockwise_node::config::DEFAULT_RAFT_TICK_MS, value_parser = clap::value_parser!(u64).range(1..))]
    raft_tick_ms: u64,
    /// Address of the HTTP port: Prometheus metrics (`GET /metrics`), liveness
    /// (`/healthz`) and readiness (`/readyz`); off when not given. Plain HTTP: off
    /// loopback it needs --insecure.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Connections the HTTP port holds at once; a connection beyond it is closed at once.
    #[arg(long, default_value_t = http_port::DEFAULT_MAX_CONNECTIONS as u64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    http_max_connections: u64,
    /// How long an HTTP-port connection may take to send its request's headers before
    /// it is closed, in ms.
    #[arg(long, default_value_t = http_port::DEFAULT_HEADER_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    http_header_timeout_ms: u64,
    /// Duration of one simulated external call of SyncReplicas / ReplicateSessions, in ms.
    #[arg(long, default_value_t = 10)]
    sync_delay_ms: u64,
    /// Sync RPCs (SyncReplicas / ReplicateSessions) allowed to run at once on this node.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    sync_max_calls: u32,
    /// How long a sync RPC waits for a place before it is refused with RESOURCE_EXHAUSTED, in ms.
    #[arg(long, default_value_t = 100)]
    sync_queue_wait_ms: u64,
    /// Batch RPCs (BatchOperations / BatchRequests, up to 10,000 operations each) allowed
    /// to run at once on this node.
    #[arg(long, default_value_t = DEFAULT_BATCH_MAX_CALLS as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_max_calls: u32,
    /// How long a batch RPC waits for a place before it is refused with RESOURCE_EXHAUSTED, in ms.
    #[arg(long, default_value_t = DEFAULT_BATCH_QUEUE_WAIT.as_millis() as u64)]
    batch_queue_wait_ms: u64,
    /// Tokio worker threads (default: one per core). Set it when several nodes or a load
    /// generator share the machine's cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
    /// Require a bearer token on every call: a file of `TOKEN ROLE` lines, roles
    /// reader, writer, admin (membership, backups, restores, merges) and peer (what
    /// nodes present to each other; every node needs one). See docs/security.md.
    #[arg(long)]
    auth_token_file: Option<PathBuf>,
    /// Allow listening on an address other than loopback without TLS on that port:
    /// anyone on the network can then read calls and tokens.
    #[arg(long)]
    insecure: bool,
    /// The client port's TLS certificate (PEM); with --key, the port speaks only TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Require clients to present a certificate chaining to this CA (PEM).
    #[arg(long, requires = "cert")]
    trusted_ca: Option<PathBuf>,
    /// This node's certificate (PEM) on the peer port, served and presented to peers;
    /// with --peer-key and --peer-trusted-ca the peer port speaks only mutual TLS. It
    /// must name this node's --id as the URI SAN clockwise://node/<id>.
    #[arg(long, requires_all = ["peer_key", "peer_trusted_ca"])]
    peer_cert: Option<PathBuf>,
    /// The private key (PEM) of --peer-cert.
    #[arg(long, requires = "peer_cert")]
    peer_key: Option<PathBuf>,
    /// The CA (PEM) every peer's certificate must chain to.
    #[arg(long, requires = "peer_cert")]
    peer_trusted_ca: Option<PathBuf>,
    /// Largest request message a client service accepts, in bytes.
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1024..=(64 << 20)))]
    max_message_bytes: u64,
    /// Concurrent calls (HTTP/2 streams) allowed on one connection.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_streams: u32,
    /// Calls per second one client may make (token bucket per token, client id or
    /// connection); 0: no limit. Refusals are RESOURCE_EXHAUSTED with retry-after-ms.
    #[arg(long, default_value_t = 0)]
    client_rate: u32,
    /// Calls a client may make at once above --client-rate (default: twice the rate).
    #[arg(long)]
    client_burst: Option<u32>,
    /// Connections the client port holds at once; a connection beyond it is closed at
    /// once (clamped to what the descriptor limit allows).
    #[arg(long, default_value_t = connections::DEFAULT_MAX_CONNECTIONS as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Connections the peer port holds at once: a budget apart from the client port's.
    #[arg(long, default_value_t = connections::DEFAULT_MAX_PEER_CONNECTIONS as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_peer_connections: u64,
    /// How long a new connection (either port) may take to send its first request (TLS
    /// handshake, HTTP/2 preface, first HEADERS) before it is closed, in ms.
    #[arg(long, default_value_t = connections::DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    handshake_timeout_ms: u64,
    /// The longest a client-port call may run until its response headers, in ms (server
    /// streams such as Health.Watch are not cut). Refused with CANCELLED beyond it.
    #[arg(long, default_value_t = connections::DEFAULT_MAX_REQUEST.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    max_request_ms: u64,
    /// Idle time on a connection (either port) before an HTTP/2 PING it must answer
    /// within 10 s (or this, if shorter), in ms; unanswered, the connection is closed.
    #[arg(long, default_value_t = connections::DEFAULT_HTTP2_KEEPALIVE.as_millis() as u64, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    http2_keepalive_ms: u64,
    /// A connection's age (either port) at which it is asked to go away (GOAWAY: calls
    /// in flight finish, new ones reconnect), in ms.
    #[arg(long, default_value_t = connections::DEFAULT_MAX_CONNECTION_AGE.as_millis() as u64, value_parser = clap::value_parser!(u64).range(100..=604_800_000))]
    max_connection_age_ms: u64,
    /// After SIGTERM (or Ctrl-C), health turns NOT_SERVING at once and calls in flight
    /// get this long to finish, in ms; the rest are then cut and the node exits.
    #[arg(long, default_value_t = clockwise_node::config::DEFAULT_SHUTDOWN_TIMEOUT.as_millis() as u64)]
    shutdown_timeout_ms: u64,
}

pub async fn run(args: NodeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Before any descriptor is opened; `cluster up`'s children inherit the raised limit.
    connections::raise_descriptor_limit();
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create --data-dir {}: {e}", args.data_dir.display()))?;
    let config = NodeConfig {
        listen: args.listen,
        peer_listen: args.peer_listen,
        metrics_listen: args.metrics_listen,
        insecure: args.insecure,
        sync: SyncConfig {
            delay: Duration::from_millis(args.sync_delay_ms),
            max_calls: args.sync_max_calls as usize,
            queue_wait: Duration::from_millis(args.sync_queue_wait_ms),
        },
        batch: BulkheadConfig {
            max_calls: args.batch_max_calls as usize,
            queue_wait: Duration::from_millis(args.batch_queue_wait_ms),
        },
        id: args.id,
        peers: args.peers,
        data_dir: args.data_dir.clone(),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        raft_tick: Duration::from_millis(args.raft_tick_ms),
        join: args.join,
        initial_cluster_state: args.initial_cluster_state,
        snapshot_entries: args.snapshot_entries,
        max_backups_per_ring: args.max_backups_per_ring,
        quotas: clockwise_engine::Quotas {
            max_rings: args.max_rings,
            max_nodes_per_ring: args.max_nodes_per_ring,
            max_vnodes_per_ring: args.max_vnodes_per_ring,
        },
        tokens: match &args.auth_token_file {
            Some(path) => Some(Arc::new(Tokens::load(path)?)),
            None => None,
        },
        tls: NodeTls::load(
            TlsFiles::from_flags(
                args.cert.as_ref(),
                args.key.as_ref(),
                args.trusted_ca.as_ref(),
            )
            .as_ref(),
            TlsFiles::from_flags(
                args.peer_cert.as_ref(),
                args.peer_key.as_ref(),
                args.peer_trusted_ca.as_ref(),
            )
            .as_ref(),
        )?,
        limits: Limits {
            max_message_bytes: usize::try_from(args.max_message_bytes)?,
            max_concurrent_streams: args.max_concurrent_streams,
            client_rate: args.client_rate,
            client_burst: args
                .client_burst
                .unwrap_or(args.client_rate.saturating_mul(2)),
            max_connections: usize::try_from(args.max_connections)?,
            max_peer_connections: usize::try_from(args.max_peer_connections)?,
            handshake_timeout: Duration::from_millis(args.handshake_timeout_ms),
            max_request: Duration::from_millis(args.max_request_ms),
            http2_keepalive: Duration::from_millis(args.http2_keepalive_ms),
            max_connection_age: Duration::from_millis(args.max_connection_age_ms),
            http_max_connections: usize::try_from(args.http_max_connections)?,
            http_header_timeout: Duration::from_millis(args.http_header_timeout_ms),
        },
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
    };
    let node = BoundNode::bind(config).await?;
    let grpc = node.grpc_addr()?;
    // Machine-readable lines on stdout for scripts; logs go to stderr.
    announce(format_args!("listening on {grpc}"));
    announce(format_args!("peers on {}", node.peer_addr()?));
    if let Some(addr) = node.metrics_addr() {
        let addr = addr?;
        let scheme = if node.serves_https() { "https" } else { "http" };
        announce(format_args!("metrics on {scheme}://{addr}/metrics"));
    }
    tracing::info!(%grpc, data_dir = %args.data_dir.display(), "clockwise node serving");
    node.serve(crate::shutdown_signal()).await?;
    tracing::info!("clockwise node stopped");
    Ok(())
}

/// One machine-readable line on stdout. A reader that went away (a launcher that read the
/// first line and closed the pipe) must not take the node down: `println!` would panic.
fn announce(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
