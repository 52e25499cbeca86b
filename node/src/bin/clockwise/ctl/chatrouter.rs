//! `clockwise ctl chatrouter …`: one subcommand per clockwise.chatrouter.v1.ChatRouter RPC.

use clap::Subcommand;
use clockwise_client::{Client, Error, RequestOperation, Transfer};

use super::output::Answer;
use super::{open_ring, parse_each, ring_call, usage, Mode, RingArgs, RingCall};

#[derive(Subcommand, Debug)]
pub(super) enum ChatRouterCall {
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
    #[command(flatten)]
    Ring(RingCall),
    /// Merge FROM_SERVER into TO_SERVER.
    MergeServers {
        from_server: String,
        to_server: String,
    },
    /// Where a merged server went.
    GetMergedInto { server_name: String },
}

pub(super) async fn call(
    client: &Client,
    args: RingArgs,
    call: ChatRouterCall,
) -> Result<Answer, Error> {
    let ring = open_ring!(client.chat_router, args);
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
            let operations = parse_each(&operations, parse_request_operation)?;
            Answer::Batch(ring.batch_requests(&operations).await?)
        }
        ChatRouterCall::ReplicateSessions {
            transfers,
            max_concurrent,
            mode,
        } => {
            let transfers = parse_each(&transfers, parse_transfer)?;
            Answer::Bools(
                ring.replicate_sessions(&transfers, max_concurrent, mode.into())
                    .await?,
            )
        }
        ChatRouterCall::LocateRequest { request_id } => {
            Answer::Location(ring.locate_request(&request_id).await?)
        }
        ChatRouterCall::Ring(call) => ring_call!(ring, call),
        ChatRouterCall::MergeServers {
            from_server,
            to_server,
        } => Answer::Bool(ring.merge_servers(&from_server, &to_server).await?),
        ChatRouterCall::GetMergedInto { server_name } => {
            Answer::Name(ring.get_merged_into(&server_name).await?)
        }
    })
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
