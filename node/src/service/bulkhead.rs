//! Bulkheads: per family of costly RPCs, a bound on how many run at once on this node,
//! taken in a tower layer in front of the services, so a call that finds its family
//! full is refused before any work (no decoding, no ReadIndex round, no proposal) and a
//! flood of one family leaves point calls and health served.
//!
//! | family | RPCs | flags (defaults) |
//! |---|---|---|
//! | `sync` | `SyncReplicas`, `ReplicateSessions` (simulated work per entry) | `--sync-max-calls` (64), `--sync-queue-wait-ms` (100) |
//! | `batch` | `BatchOperations`, `BatchRequests` (up to 10,000 operations, one command) | `--batch-max-calls` (32), `--batch-queue-wait-ms` (100) |
//!
//! A call waits at most its family's queue wait for a place, then is refused with
//! `RESOURCE_EXHAUSTED` naming the bulkhead. `/metrics` shows each family's
//! `clockwise_bulkhead_in_use`, `clockwise_bulkhead_capacity` and
//! `clockwise_bulkhead_rejected_total`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Batch RPCs allowed to run at once on a node by default.
pub const DEFAULT_BATCH_MAX_CALLS: usize = 32;
/// How long a batch RPC waits for a place by default.
pub const DEFAULT_BATCH_QUEUE_WAIT: Duration = Duration::from_millis(100);

/// A family of RPCs sharing one bulkhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The L6 sync calls.
    Sync,
    /// Batches of operations.
    Batch,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Sync => "sync",
            Family::Batch => "batch",
        }
    }

    /// The family of the RPC at `path` (`/package.Service/Method`), if it has one.
    pub fn of(path: &str) -> Option<Family> {
        match path {
            "/clockwise.hashring.v1.HashRing/SyncReplicas"
            | "/clockwise.chatrouter.v1.ChatRouter/ReplicateSessions" => Some(Family::Sync),
            "/clockwise.hashring.v1.HashRing/BatchOperations"
            | "/clockwise.chatrouter.v1.ChatRouter/BatchRequests" => Some(Family::Batch),
            _ => None,
        }
    }
}

/// One family's bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// Calls allowed to run at once on this node.
    pub max_calls: usize,
    /// How long a call may wait for a place before `RESOURCE_EXHAUSTED` (0: refuse at
    /// once when every place is taken).
    pub queue_wait: Duration,
}

impl Default for BulkheadConfig {
    /// The batch family's defaults.
    fn default() -> Self {
        BulkheadConfig {
            max_calls: DEFAULT_BATCH_MAX_CALLS,
            queue_wait: DEFAULT_BATCH_QUEUE_WAIT,
        }
    }
}

/// One family's places.
#[derive(Debug)]
pub struct Bulkhead {
    family: Family,
    config: BulkheadConfig,
    places: Arc<Semaphore>,
    rejected: AtomicU64,
}

impl Bulkhead {
    pub fn new(family: Family, config: BulkheadConfig) -> Self {
        Bulkhead {
            family,
            places: Arc::new(Semaphore::new(config.max_calls)),
            config,
            rejected: AtomicU64::new(0),
        }
    }

    /// Takes a place, waiting at most the queue wait; the refusal names the bulkhead.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, tonic::Status> {
        let place = match self.places.clone().try_acquire_owned() {
            Ok(place) => Some(place),
            Err(_) if self.config.queue_wait.is_zero() => None,
            Err(_) => {
                tokio::time::timeout(self.config.queue_wait, self.places.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        place.ok_or_else(|| {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            tonic::Status::resource_exhausted(format!(
                "{} bulkhead full: {} {} calls are running on this node; retry later",
                self.family.name(),
                self.config.max_calls,
                self.family.name()
            ))
        })
    }

    /// Places taken now.
    pub fn in_use(&self) -> usize {
        self.config
            .max_calls
            .saturating_sub(self.places.available_permits())
    }

    pub fn capacity(&self) -> usize {
        self.config.max_calls
    }

    /// Calls refused because no place freed within the queue wait.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// Every family's bulkhead.
#[derive(Debug)]
pub struct Bulkheads {
    pub sync: Bulkhead,
    pub batch: Bulkhead,
}

impl Bulkheads {
    pub fn new(sync: BulkheadConfig, batch: BulkheadConfig) -> Self {
        Bulkheads {
            sync: Bulkhead::new(Family::Sync, sync),
            batch: Bulkhead::new(Family::Batch, batch),
        }
    }

    pub fn get(&self, family: Family) -> &Bulkhead {
        match family {
            Family::Sync => &self.sync,
            Family::Batch => &self.batch,
        }
    }

    /// The bulkheads' families: in use, capacity and refusals, by family.
    pub fn families(&self, out: &mut Vec<prometheus::proto::MetricFamily>) {
        use super::metrics::families::Family;
        let mut families = [
            Family::gauge(
                "clockwise_bulkhead_in_use",
                "Calls holding a place in a bulkhead now, by family.",
            ),
            Family::gauge(
                "clockwise_bulkhead_capacity",
                "Places in a bulkhead, by family.",
            ),
            Family::counter(
                "clockwise_bulkhead_rejected_total",
                "Calls refused because their bulkhead stayed full, by family.",
            ),
        ];
        for bulkhead in [&self.sync, &self.batch] {
            let values = [
                bulkhead.in_use() as f64,
                bulkhead.capacity() as f64,
                bulkhead.rejected() as f64,
            ];
            for (family, value) in families.iter_mut().zip(values) {
                family.sample(&[("family", bulkhead.family.name())], value);
            }
        }
        for family in families {
            family.finish(out);
        }
    }
}

/// Takes a call's place in its family's bulkhead before the call reaches its service,
/// and holds it until the service answers.
#[derive(Clone)]
pub struct BulkheadLayer(pub Arc<Bulkheads>);

impl<S> tower::Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkheads: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkheads: Arc<Bulkheads>,
}

impl<S, B, R> tower::Service<http::Request<B>> for BulkheadService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(family) = Family::of(request.uri().path()) else {
            return Box::pin(inner.call(request));
        };
        let bulkheads = self.bulkheads.clone();
        Box::pin(async move {
            let _place = match bulkheads.get(family).enter().await {
                Ok(place) => place,
                Err(status) => return Ok(status.into_http()),
            };
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulkhead(max_calls: usize, queue_wait_ms: u64) -> Bulkhead {
        Bulkhead::new(
            Family::Sync,
            BulkheadConfig {
                max_calls,
                queue_wait: Duration::from_millis(queue_wait_ms),
            },
        )
    }

    #[test]
    fn each_costly_rpc_has_its_family_and_point_calls_have_none() {
        let of = |path: &str| Family::of(path);
        assert_eq!(
            of("/clockwise.hashring.v1.HashRing/SyncReplicas"),
            Some(Family::Sync)
        );
        assert_eq!(
            of("/clockwise.chatrouter.v1.ChatRouter/ReplicateSessions"),
            Some(Family::Sync)
        );
        assert_eq!(
            of("/clockwise.hashring.v1.HashRing/BatchOperations"),
            Some(Family::Batch)
        );
        assert_eq!(
            of("/clockwise.chatrouter.v1.ChatRouter/BatchRequests"),
            Some(Family::Batch)
        );
        for point in [
            "/clockwise.hashring.v1.HashRing/StoreKey",
            "/clockwise.hashring.v1.HashRing/RouteKey",
            "/grpc.health.v1.Health/Check",
        ] {
            assert_eq!(of(point), None, "{point}");
        }
    }

    #[tokio::test]
    async fn a_full_bulkhead_refuses_after_its_wait_naming_itself_and_counts_it() {
        let sync = bulkhead(2, 20);
        let first = sync.enter().await.unwrap();
        let _second = sync.enter().await.unwrap();
        assert_eq!((sync.in_use(), sync.capacity()), (2, 2));
        let refused = sync.enter().await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("sync bulkhead"),
            "{}",
            refused.message()
        );
        assert_eq!(sync.rejected(), 1);
        // A place given back is taken again.
        drop(first);
        assert_eq!(sync.in_use(), 1);
        let _third = sync.enter().await.unwrap();
        assert_eq!(sync.rejected(), 1);
    }

    #[tokio::test]
    async fn no_queue_wait_refuses_at_once() {
        let sync = bulkhead(1, 0);
        let _only = sync.enter().await.unwrap();
        assert!(sync.enter().await.is_err());
    }

    #[test]
    fn metrics_show_in_use_and_capacity_by_family() {
        let bulkheads = Bulkheads::new(
            BulkheadConfig {
                max_calls: 64,
                queue_wait: Duration::ZERO,
            },
            BulkheadConfig::default(),
        );
        let mut families = Vec::new();
        bulkheads.families(&mut families);
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&families, &mut out)
            .unwrap();
        for line in [
            "clockwise_bulkhead_in_use{family=\"sync\"} 0",
            "clockwise_bulkhead_capacity{family=\"sync\"} 64",
            "clockwise_bulkhead_capacity{family=\"batch\"} 32",
            "clockwise_bulkhead_rejected_total{family=\"batch\"} 0",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line} missing from:\n{out}"
            );
        }
    }
}
