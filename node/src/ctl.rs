//! `clockwise ctl`: every RPC from the command line, through the client SDK (leader
//! tracking, retries, idempotent writes), in the manner of etcdctl. Human output by
//! default, `--json` for scripts.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use clockwise_client::{
    BatchResult, Client, Error, KeyOperation, Location, Member, NodeStatus, PositionSpace,
    RequestOperation, SyncMode, Transfer,
};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Nodes to call, as host:port, comma-separated (any subset of the cluster).
    #[arg(
        long,
        env = "CLOCKWISE_ENDPOINTS",
        default_value = "127.0.0.1:50051",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of the whole call, retries included, in ms.
    #[arg(long, default_value_t = 10_000, global = true)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// clockwise.hashring.v1.HashRing calls.
    Hashring {
        #[command(flatten)]
        ring: RingArgs,
        #[command(subcommand)]
        call: HashRingCall,
    },
    /// clockwise.chatrouter.v1.ChatRouter calls.
    Chatrouter {
        #[command(flatten)]
        ring: RingArgs,
        #[command(subcommand)]
        call: ChatRouterCall,
    },
    /// clockwise.cluster.v1.Cluster calls.
    Cluster {
        #[command(subcommand)]
        call: ClusterCall,
    },
}

#[derive(Args, Debug)]
struct RingArgs {
    /// The ring (namespace); empty is "default".
    #[arg(long, default_value = "", global = true)]
    ring: String,
    /// The call's timestamp in ms; 0 lets the leader stamp its clock.
    #[arg(long, default_value_t = 0, global = true)]
    timestamp: i64,
    /// Read the answering node's replica instead of confirming with the leader.
    #[arg(long, global = true)]
    stale: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Space {
    Drill,
    U64,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Mode {
    FailFast,
    AllSleep,
}

impl From<Space> for PositionSpace {
    fn from(space: Space) -> Self {
        match space {
            Space::Drill => PositionSpace::Drill,
            Space::U64 => PositionSpace::U64,
        }
    }
}

impl From<Mode> for SyncMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::FailFast => SyncMode::FailFast,
            Mode::AllSleep => SyncMode::AllSleep,
        }
    }
}

#[derive(Subcommand, Debug)]
enum HashRingCall {
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
    /// Choose the ring's position space (only while empty).
    ConfigureRing {
        #[arg(value_enum)]
        space: Space,
    },
    /// Save the ring's state; prints the live keys saved.
    Backup,
    /// Restore the latest backup saved at or before BACKUP_TIMESTAMP.
    Restore { backup_timestamp: i64 },
    /// Merge FROM_NODE into TO_NODE (it takes over FROM_NODE's positions and keys).
    MergeNodes { from_node: String, to_node: String },
    /// Where a merged node went.
    GetMergedInto { node_id: String },
}

#[derive(Subcommand, Debug)]
enum ChatRouterCall {
    /// Add a server with one position.
    AddServer { server_name: String },
    /// Remove a server; its sessions move on.
    RemoveServer { server_name: String },
    /// The server a request routes to.
    RouteRequest { request_id: String },
    /// How many servers the ring has.
    GetServerCount,
    /// Place a session of --size-mb on the server it routes to.
    AssignRequest {
        request_id: String,
        #[arg(long)]
        size_mb: i64,
        /// Alive this long after the call, in ms; 0: forever.
        #[arg(long, default_value_t = 0)]
        ttl_ms: i64,
    },
    /// Every server.
    ListServers,
    /// MB of sessions on a server.
    GetServerLoad { server_name: String },
    /// The N most loaded servers.
    TopServers { n: i64 },
    /// Add a server with N positions.
    AddServerWithReplicas {
        server_name: String,
        num_replicas: i64,
    },
    /// Positions of a server.
    GetReplicaCount { server_name: String },
    /// Cap a server's memory in MB (-1: unlimited).
    SetMemoryLimit {
        server_name: String,
        #[arg(allow_hyphen_values = true)]
        max_mb: i64,
    },
    /// A server's memory limit (-1: unlimited).
    GetMemoryLimit { server_name: String },
    /// MB used on a server.
    GetMemoryUsed { server_name: String },
    /// Evict a server's least recently assigned session.
    EvictOldestSession { server_name: String },
    /// Run operations in order as one command: TYPE:ID[:SIZE_MB] (assign, route, remove).
    BatchRequests {
        #[arg(required = true)]
        operations: Vec<String>,
    },
    /// Simulated rate-limited session moves: SOURCE:DEST:BANDWIDTH_MB ...
    ReplicateSessions {
        #[arg(required = true)]
        transfers: Vec<String>,
        #[arg(long, default_value_t = 1)]
        max_concurrent: i32,
        #[arg(long, value_enum, default_value_t = Mode::FailFast)]
        mode: Mode,
    },
    /// Where a session is placed now.
    LocateRequest { request_id: String },
    /// Choose the ring's position space (only while empty).
    ConfigureRing {
        #[arg(value_enum)]
        space: Space,
    },
    /// Save the ring's state; prints the live sessions saved.
    Backup,
    /// Restore the latest backup saved at or before BACKUP_TIMESTAMP.
    Restore { backup_timestamp: i64 },
    /// Merge FROM_SERVER into TO_SERVER.
    MergeServers {
        from_server: String,
        to_server: String,
    },
    /// Where a merged server went.
    GetMergedInto { server_name: String },
}

#[derive(Subcommand, Debug)]
enum ClusterCall {
    /// Every endpoint's view of the group (endpoints learned from the cluster too).
    Status,
    /// Add a node (started with --join) as a learner; it becomes a voter once caught up.
    /// ADDRESS and PEER_ADDRESS are its --listen and --peer-listen.
    AddMember {
        id: u64,
        address: String,
        peer_address: String,
    },
    /// Remove a member (not the leader).
    RemoveMember { id: u64 },
    /// Hand leadership to a voter.
    TransferLeader { id: u64 },
}

/// What a call answered, printed as text or JSON.
enum Answer {
    Bool(bool),
    Int(i64),
    Count(Option<i64>),
    Name(Option<String>),
    Names(Vec<String>),
    Bools(Vec<bool>),
    Batch(Vec<Option<BatchResult>>),
    Location(Option<Location>),
    Done,
    Members(Vec<Member>),
    Statuses(Vec<(String, Result<NodeStatus, Error>)>),
    Leader(u64),
}

/// The bearer token of a command that calls nodes started with `--auth-token-file`.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// A file holding the token (its first word); else $CLOCKWISE_TOKEN, else none.
    /// (A file keeps the token out of the process list.)
    #[arg(long, env = "CLOCKWISE_TOKEN_FILE", global = true)]
    token_file: Option<std::path::PathBuf>,
}

impl TokenArgs {
    pub fn token(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            return text
                .split_whitespace()
                .next()
                .map(|t| Some(t.to_owned()))
                .ok_or_else(|| format!("--token-file {}: the file is empty", path.display()));
        }
        Ok(std::env::var("CLOCKWISE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()))
    }
}

/// TLS towards nodes started with `--cert` (and `--trusted-ca`).
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    // Ids of their own: subcommands have positional `key`s.
    /// Speak TLS, trusting nodes whose certificate chains to this CA (PEM).
    #[arg(
        long = "cacert",
        id = "tls_cacert",
        env = "CLOCKWISE_CACERT",
        global = true
    )]
    cacert: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for nodes that require one.
    #[arg(
        long = "cert",
        id = "tls_cert",
        env = "CLOCKWISE_CERT",
        global = true,
        requires_all = ["tls_cacert", "tls_key"]
    )]
    cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(
        long = "key",
        id = "tls_key",
        env = "CLOCKWISE_KEY",
        global = true,
        requires = "tls_cert"
    )]
    key: Option<std::path::PathBuf>,
}

impl TlsArgs {
    /// An endpoint of the node at `address`: TLS when --cacert is given.
    pub fn endpoint(&self, address: &str) -> Result<tonic::transport::Endpoint, String> {
        use tonic::transport::Endpoint;
        match self.tls()? {
            Some(tls) => Endpoint::from_shared(format!("https://{address}"))
                .and_then(|e| e.tls_config(tls.config())),
            None => Endpoint::from_shared(format!("http://{address}")),
        }
        .map_err(|e| e.to_string())
    }

    pub fn tls(&self) -> Result<Option<clockwise_client::Tls>, String> {
        let Some(ca) = &self.cacert else {
            return Ok(None);
        };
        let tls = clockwise_client::Tls::new(read_pem("--cacert", ca)?);
        Ok(Some(match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls.identity(read_pem("--cert", cert)?, read_pem("--key", key)?)
            }
            _ => tls,
        }))
    }
}

/// A PEM file named by `flag`.
fn read_pem(flag: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// Runs one `clockwise ctl` command.
pub async fn run(args: CtlArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Client::builder()
        .endpoints(args.endpoints.iter().map(|e| e.trim().to_owned()))
        .timeout(Duration::from_millis(args.timeout_ms))
        .attempt_timeout(Duration::from_millis(args.timeout_ms.min(5_000)));
    if let Some(token) = args.token.token()? {
        builder = builder.token(token);
    }
    if let Some(tls) = args.tls.tls()? {
        builder = builder.tls(tls);
    }
    let client = builder.build().await?;
    let answer = match args.command {
        CtlCommand::Hashring { ring, call } => hash_ring(&client, ring, call).await?,
        CtlCommand::Chatrouter { ring, call } => chat_router(&client, ring, call).await?,
        CtlCommand::Cluster { call } => cluster(&client, call).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer.to_json())?);
    } else {
        print!("{}", answer.to_text());
    }
    Ok(())
}

async fn hash_ring(client: &Client, args: RingArgs, call: HashRingCall) -> Result<Answer, Error> {
    let mut ring = client.hash_ring(args.ring).at(args.timestamp);
    if args.stale {
        ring = ring.stale_reads();
    }
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
            let operations = operations
                .iter()
                .map(|op| {
                    let (kind, key) = op
                        .split_once(':')
                        .ok_or_else(|| usage(format!("operations: {op:?} is not TYPE:KEY")))?;
                    Ok(KeyOperation::new(kind, key))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Answer::Batch(ring.batch_operations(&operations).await?)
        }
        HashRingCall::SyncReplicas {
            requests,
            max_concurrent,
            mode,
        } => {
            let pairs = requests
                .iter()
                .map(|r| {
                    r.split_once(':')
                        .ok_or_else(|| usage(format!("requests: {r:?} is not SOURCE:DEST")))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Answer::Bools(
                ring.sync_replicas(&pairs, max_concurrent, mode.into())
                    .await?,
            )
        }
        HashRingCall::LocateKey { key } => Answer::Location(ring.locate_key(&key).await?),
        HashRingCall::ConfigureRing { space } => {
            ring.configure_ring(space.into()).await?;
            Answer::Done
        }
        HashRingCall::Backup => Answer::Int(ring.backup().await?),
        HashRingCall::Restore { backup_timestamp } => {
            Answer::Count(ring.restore(backup_timestamp).await?)
        }
        HashRingCall::MergeNodes { from_node, to_node } => {
            Answer::Bool(ring.merge_nodes(&from_node, &to_node).await?)
        }
        HashRingCall::GetMergedInto { node_id } => {
            Answer::Name(ring.get_merged_into(&node_id).await?)
        }
    })
}

async fn chat_router(
    client: &Client,
    args: RingArgs,
    call: ChatRouterCall,
) -> Result<Answer, Error> {
    let mut ring = client.chat_router(args.ring).at(args.timestamp);
    if args.stale {
        ring = ring.stale_reads();
    }
    Ok(match call {
        ChatRouterCall::AddServer { server_name } => {
            Answer::Bool(ring.add_server(&server_name).await?)
        }
        ChatRouterCall::RemoveServer { server_name } => {
            Answer::Bool(ring.remove_server(&server_name).await?)
        }
        ChatRouterCall::RouteRequest { request_id } => {
            Answer::Name(ring.route_request(&request_id).await?)
        }
        ChatRouterCall::GetServerCount => Answer::Int(ring.get_server_count().await?),
        ChatRouterCall::AssignRequest {
            request_id,
            size_mb,
            ttl_ms,
        } => Answer::Name(
            ring.assign_request_with_ttl(&request_id, size_mb, ttl_ms)
                .await?,
        ),
        ChatRouterCall::ListServers => Answer::Names(ring.list_servers().await?),
        ChatRouterCall::GetServerLoad { server_name } => {
            Answer::Int(ring.get_server_load(&server_name).await?)
        }
        ChatRouterCall::TopServers { n } => Answer::Names(ring.top_servers(n).await?),
        ChatRouterCall::AddServerWithReplicas {
            server_name,
            num_replicas,
        } => Answer::Bool(
            ring.add_server_with_replicas(&server_name, num_replicas)
                .await?,
        ),
        ChatRouterCall::GetReplicaCount { server_name } => {
            Answer::Int(ring.get_replica_count(&server_name).await?)
        }
        ChatRouterCall::SetMemoryLimit {
            server_name,
            max_mb,
        } => Answer::Bool(ring.set_memory_limit(&server_name, max_mb).await?),
        ChatRouterCall::GetMemoryLimit { server_name } => {
            Answer::Int(ring.get_memory_limit(&server_name).await?)
        }
        ChatRouterCall::GetMemoryUsed { server_name } => {
            Answer::Int(ring.get_memory_used(&server_name).await?)
        }
        ChatRouterCall::EvictOldestSession { server_name } => {
            Answer::Name(ring.evict_oldest_session(&server_name).await?)
        }
        ChatRouterCall::BatchRequests { operations } => {
            let operations = operations
                .iter()
                .map(|op| parse_request_operation(op))
                .collect::<Result<Vec<_>, Error>>()?;
            Answer::Batch(ring.batch_requests(&operations).await?)
        }
        ChatRouterCall::ReplicateSessions {
            transfers,
            max_concurrent,
            mode,
        } => {
            let transfers = transfers
                .iter()
                .map(|t| parse_transfer(t))
                .collect::<Result<Vec<_>, Error>>()?;
            Answer::Bools(
                ring.replicate_sessions(&transfers, max_concurrent, mode.into())
                    .await?,
            )
        }
        ChatRouterCall::LocateRequest { request_id } => {
            Answer::Location(ring.locate_request(&request_id).await?)
        }
        ChatRouterCall::ConfigureRing { space } => {
            ring.configure_ring(space.into()).await?;
            Answer::Done
        }
        ChatRouterCall::Backup => Answer::Int(ring.backup().await?),
        ChatRouterCall::Restore { backup_timestamp } => {
            Answer::Count(ring.restore(backup_timestamp).await?)
        }
        ChatRouterCall::MergeServers {
            from_server,
            to_server,
        } => Answer::Bool(ring.merge_servers(&from_server, &to_server).await?),
        ChatRouterCall::GetMergedInto { server_name } => {
            Answer::Name(ring.get_merged_into(&server_name).await?)
        }
    })
}

async fn cluster(client: &Client, call: ClusterCall) -> Result<Answer, Error> {
    let cluster = client.cluster();
    Ok(match call {
        ClusterCall::Status => {
            let mut statuses = cluster.statuses().await;
            statuses.sort_by_key(|(endpoint, status)| {
                (status.as_ref().map_or(u64::MAX, |s| s.id), endpoint.clone())
            });
            Answer::Statuses(statuses)
        }
        ClusterCall::AddMember {
            id,
            address,
            peer_address,
        } => Answer::Members(cluster.add_member(id, &address, &peer_address).await?),
        ClusterCall::RemoveMember { id } => Answer::Members(cluster.remove_member(id).await?),
        ClusterCall::TransferLeader { id } => Answer::Leader(cluster.transfer_leader(id).await?),
    })
}

fn usage(message: String) -> Error {
    Error::InvalidArgument { message }
}

/// `TYPE:ID` or `TYPE:ID:SIZE_MB`.
fn parse_request_operation(text: &str) -> Result<RequestOperation, Error> {
    let bad = || usage(format!("operations: {text:?} is not TYPE:ID[:SIZE_MB]"));
    let mut parts = text.splitn(3, ':');
    let kind = parts.next().ok_or_else(bad)?;
    let id = parts.next().ok_or_else(bad)?;
    let size_mb = match parts.next() {
        Some(size) => size.parse().map_err(|_| bad())?,
        None => 0,
    };
    Ok(RequestOperation {
        kind: kind.into(),
        request_id: id.into(),
        size_mb,
    })
}

/// `SOURCE:DEST:BANDWIDTH_MB`.
fn parse_transfer(text: &str) -> Result<Transfer, Error> {
    let bad = || {
        usage(format!(
            "transfers: {text:?} is not SOURCE:DEST:BANDWIDTH_MB"
        ))
    };
    let mut parts = text.splitn(3, ':');
    let (Some(source), Some(destination), Some(bandwidth)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(Transfer {
        source: source.into(),
        destination: destination.into(),
        bandwidth_mb: bandwidth.parse().map_err(|_| bad())?,
    })
}

fn batch_json(result: &Option<BatchResult>) -> Value {
    match result {
        Some(BatchResult::Placed(name)) => json!({ "placed": name }),
        Some(BatchResult::Removed(ok)) => json!({ "removed": ok }),
        None => Value::Null,
    }
}

fn member_json(m: &Member) -> Value {
    json!({ "id": m.id, "address": m.address, "peer_address": m.peer_address, "learner": m.learner })
}

impl Answer {
    fn to_json(&self) -> Value {
        match self {
            Answer::Bool(b) => json!(b),
            Answer::Int(n) => json!(n),
            Answer::Count(count) => json!(count),
            Answer::Name(name) => json!(name),
            Answer::Names(names) => json!(names),
            Answer::Bools(results) => json!(results),
            Answer::Batch(results) => Value::Array(results.iter().map(batch_json).collect()),
            Answer::Location(None) => Value::Null,
            Answer::Location(Some(l)) => json!({
                "owner": l.owner,
                "last_access": l.last_access,
                "size": l.size,
                "expires_at": l.expires_at,
            }),
            Answer::Done => json!({ "ok": true }),
            Answer::Members(members) => Value::Array(members.iter().map(member_json).collect()),
            Answer::Statuses(statuses) => Value::Array(
                statuses
                    .iter()
                    .map(|(endpoint, status)| match status {
                        Ok(s) => json!({
                            "endpoint": endpoint,
                            "id": s.id,
                            "role": s.role.to_string(),
                            "leader_id": s.leader_id,
                            "term": s.term,
                            "commit_index": s.commit_index,
                            "applied_index": s.applied_index,
                            "snapshot_index": s.snapshot_index,
                            "first_log_index": s.first_log_index,
                            "state_digest": s.state_digest,
                            "members": s.members.iter().map(member_json).collect::<Vec<_>>(),
                        }),
                        Err(e) => json!({ "endpoint": endpoint, "error": e.to_string() }),
                    })
                    .collect(),
            ),
            Answer::Leader(id) => json!({ "leader_id": id }),
        }
    }

    fn to_text(&self) -> String {
        let lines =
            |items: Vec<String>| -> String { items.into_iter().map(|line| line + "\n").collect() };
        let none = "(none)\n".to_owned();
        match self {
            Answer::Bool(b) => format!("{b}\n"),
            Answer::Int(n) => format!("{n}\n"),
            Answer::Count(Some(n)) => format!("{n}\n"),
            Answer::Count(None) => none.clone(),
            Answer::Name(Some(name)) => format!("{name}\n"),
            Answer::Name(None) => none,
            Answer::Names(names) if names.is_empty() => none,
            Answer::Names(names) => lines(names.clone()),
            Answer::Bools(results) => lines(
                results
                    .iter()
                    .enumerate()
                    .map(|(i, ok)| format!("{i}  {ok}"))
                    .collect(),
            ),
            Answer::Batch(results) => lines(
                results
                    .iter()
                    .enumerate()
                    .map(|(i, result)| match result {
                        Some(BatchResult::Placed(name)) => format!("{i}  {name}"),
                        Some(BatchResult::Removed(ok)) => format!("{i}  {ok}"),
                        None => format!("{i}  (none)"),
                    })
                    .collect(),
            ),
            Answer::Location(None) => "(not stored)\n".into(),
            Answer::Location(Some(l)) => format!(
                "owner        {}\nlast_access  {}\nsize         {}\nexpires_at   {}\n",
                l.owner,
                l.last_access,
                l.size,
                l.expires_at.map_or("never".into(), |t| t.to_string())
            ),
            Answer::Done => "ok\n".into(),
            Answer::Members(members) => members_table(members),
            Answer::Statuses(statuses) => statuses_table(statuses),
            Answer::Leader(id) => format!("leader {id}\n"),
        }
    }
}

fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned() + "\n"
        })
        .collect()
}

fn members_table(members: &[Member]) -> String {
    let mut rows = vec![vec![
        "ID".into(),
        "ADDRESS".into(),
        "PEER ADDRESS".into(),
        "VOTER".into(),
    ]];
    rows.extend(members.iter().map(|m| {
        vec![
            m.id.to_string(),
            m.address.clone(),
            m.peer_address.clone(),
            if m.learner { "no (learner)" } else { "yes" }.into(),
        ]
    }));
    table(rows)
}

fn statuses_table(statuses: &[(String, Result<NodeStatus, Error>)]) -> String {
    let mut rows = vec![[
        "ENDPOINT", "ID", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "SNAPSHOT", "DIGEST",
    ]
    .map(String::from)
    .to_vec()];
    for (endpoint, status) in statuses {
        rows.push(match status {
            Ok(s) => vec![
                endpoint.clone(),
                s.id.to_string(),
                s.role.to_string(),
                s.leader_id.to_string(),
                s.term.to_string(),
                s.commit_index.to_string(),
                s.applied_index.to_string(),
                s.snapshot_index.to_string(),
                s.state_digest.chars().take(12).collect(),
            ],
            Err(e) => {
                let mut row = vec![endpoint.clone(), "-".into(), format!("unreachable: {e}")];
                row.resize(9, String::new());
                row
            }
        });
    }
    table(rows)
}
