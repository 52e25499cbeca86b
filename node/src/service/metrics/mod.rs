//! Prometheus metrics, through the `prometheus` crate: per-RPC counts by status code
//! and latency histograms (a tower layer around the gRPC servers, [`layer`]), the raft
//! driver's figures, each ring's size and churn, the sync, auth, rate-limit, bulkhead
//! and connection counters, and raft-engine's own metrics (which it registers in the
//! crate's default registry), rendered as one text page by [`Metrics::render`] (served
//! on the HTTP port, `crate::http`).
//!
//! Every label takes a bounded set of values: `method` is a known method or `unknown`
//! ([`methods`]), `code` a gRPC code, `ring` one of the first [`RING_LABEL_CAP`] rings
//! or `_other`, `peer` a member id. The encoder escapes label values, so no caller's
//! input can break the page.
//!
//! - [`methods`]: the known gRPC methods, from the descriptor sets.
//! - [`families`]: families built at scrape time from figures that live elsewhere.
//! - [`layer`]: the tower layer that counts and times calls.

pub mod families;
pub mod layer;
pub mod methods;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use clockwise_cluster::driver::{RaftHandle, RaftStatus};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::watch;

pub use families::{OTHER_RINGS, RING_LABEL_CAP};
pub use layer::MetricsLayer;

use super::bulkhead::Bulkheads;
use super::connections::PortCounters;
use super::sync::SyncCounters;
use super::watch::WatchCounters;
use crate::machine::PublishedRings;
use families::Family;

/// Upper bounds of the RPC latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];
/// gRPC status codes 0..=16; anything above is counted as 16 (`UNAUTHENTICATED` is the
/// last real one, so nothing real is).
const MAX_CODE: usize = 16;

/// What the replica publishes, read at each scrape without asking the driver.
struct ReplicaView {
    status: watch::Receiver<RaftStatus>,
    rings: Arc<PublishedRings>,
}

/// Every metric of one node.
pub struct Metrics {
    /// This node's metrics made with the crate's types (the others are built per
    /// scrape from where they live).
    registry: Registry,
    rpc_requests: IntCounterVec,
    rpc_duration: HistogramVec,
    pub sync: Arc<SyncCounters>,
    /// Calls refused by the auth layer: no or unknown token / a role too weak.
    unauthenticated: IntCounter,
    permission_denied: IntCounter,
    /// Calls refused by a client's rate limit.
    rate_limited: IntCounter,
    /// The bulkheads whose in-use and capacity are shown, once the server made them.
    bulkheads: OnceLock<Arc<Bulkheads>>,
    /// The raft status and ring figures, once the replica runs.
    replica: OnceLock<ReplicaView>,
    /// ReadIndex rounds started for linearizable reads.
    pub linearizable_reads: Arc<AtomicU64>,
    /// The accept pipelines of the client, peer and HTTP ports.
    pub client_port: Arc<PortCounters>,
    pub peer_port: Arc<PortCounters>,
    pub http_port: Arc<PortCounters>,
    /// Peer calls refused because the caller's certificate did not name the node it
    /// claimed to be (the raft transport counts them).
    peer_identity_refused: Arc<AtomicU64>,
    /// `Watch` streams open, started and resynced.
    pub watches: Arc<WatchCounters>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with_peer_identity_refusals(Arc::default())
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registers `metric` in `registry`: the names are this file's constants, so a
/// refusal (a duplicate or an invalid name) is a bug caught by the first test.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once, with a valid name");
    metric
}

impl Metrics {
    /// Metrics that also show `counter`: the raft transport's count of peer calls
    /// refused for their certificate's identity.
    pub fn with_peer_identity_refusals(counter: Arc<AtomicU64>) -> Metrics {
        let registry = Registry::new();
        let counter_of = |name: &str, help: &str| {
            registered(
                &registry,
                IntCounter::new(name, help).expect("a valid counter"),
            )
        };
        let rpc_requests = IntCounterVec::new(
            Opts::new(
                "clockwise_rpc_requests_total",
                "gRPC requests served, by method (a known one, or `unknown`) and status code.",
            ),
            &["method", "code"],
        )
        .expect("a valid counter");
        let rpc_duration = HistogramVec::new(
            HistogramOpts::new(
                "clockwise_rpc_duration_seconds",
                "gRPC request latency, by method (a known one, or `unknown`).",
            )
            .buckets(BUCKETS.to_vec()),
            &["method"],
        )
        .expect("a valid histogram");
        Metrics {
            rpc_requests: registered(&registry, rpc_requests),
            rpc_duration: registered(&registry, rpc_duration),
            unauthenticated: counter_of(
                "clockwise_auth_unauthenticated_total",
                "Calls refused for a missing, malformed or unknown token.",
            ),
            permission_denied: counter_of(
                "clockwise_auth_permission_denied_total",
                "Calls refused because the token's role may not call the method.",
            ),
            rate_limited: counter_of(
                "clockwise_rate_limited_total",
                "Calls refused by the caller's rate limit (RESOURCE_EXHAUSTED).",
            ),
            registry,
            sync: Arc::default(),
            bulkheads: OnceLock::new(),
            replica: OnceLock::new(),
            linearizable_reads: Arc::default(),
            client_port: Arc::default(),
            peer_port: Arc::default(),
            http_port: Arc::default(),
            peer_identity_refused: counter,
            watches: Arc::default(),
        }
    }

    /// Shows the replica's figures: the driver's counters and histograms, its peers'
    /// send failures, its status (leader, term, indexes) and the rings' figures.
    pub fn show_replica(
        &self,
        handle: &RaftHandle,
        peer_counters: [&IntCounterVec; 2],
        rings: Arc<PublishedRings>,
    ) {
        let view = ReplicaView {
            status: handle.watch_status(),
            rings,
        };
        if self.replica.set(view).is_ok() {
            let registered = handle.stats().register(&self.registry).and_then(|()| {
                peer_counters
                    .into_iter()
                    .try_for_each(|c| self.registry.register(Box::new(c.clone())))
            });
            if let Err(e) = registered {
                tracing::warn!(error = %e, "the raft metrics could not be registered");
            }
        }
    }

    /// Counts a call the auth layer refused with `code`.
    pub fn refused_auth(&self, code: tonic::Code) {
        match code {
            tonic::Code::PermissionDenied => self.permission_denied.inc(),
            _ => self.unauthenticated.inc(),
        }
    }

    /// Shows `bulkheads` on `/metrics` (the first ones given).
    pub fn show_bulkheads(&self, bulkheads: Arc<Bulkheads>) {
        let _ = self.bulkheads.set(bulkheads);
    }

    /// Counts a call refused by its client's rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Records a call to `method` (a [`methods::label`]) that ended with `code`.
    fn observe(&self, method: &str, code: usize, elapsed: std::time::Duration) {
        const CODES: [&str; MAX_CODE + 1] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        self.rpc_requests
            .with_label_values(&[method, CODES[code.min(MAX_CODE)]])
            .inc();
        self.rpc_duration
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric, raft-engine's included.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        self.scraped_families(&mut families);
        // raft-engine registers its metrics (`raft_engine_*`) in the default registry.
        families.extend(prometheus::gather());
        families.sort_by(|a, b| a.get_name().cmp(b.get_name()));
        let mut text = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        text
    }

    /// The families read from where their figures live.
    fn scraped_families(&self, out: &mut Vec<MetricFamily>) {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let sync = &self.sync;
        let counters = [
            (
                "clockwise_sync_calls_started_total",
                "Simulated sync calls started.",
                count(&sync.started),
            ),
            (
                "clockwise_sync_rejected_total",
                "Sync RPCs refused because the sync bulkhead was full.",
                self.bulkheads.get().map_or(0, |b| b.sync.rejected()) as f64,
            ),
            (
                "clockwise_linearizable_reads_total",
                "ReadIndex rounds started for linearizable reads.",
                count(&self.linearizable_reads),
            ),
            (
                "clockwise_watch_streams_started_total",
                "Watch streams started (both services).",
                count(&self.watches.started),
            ),
            (
                "clockwise_watch_resyncs_total",
                "Whole topologies sent again to a Watch stream that lost changes (too slow for the buffer, a resume past the kept history, a snapshot installed).",
                count(&self.watches.resyncs),
            ),
            (
                "clockwise_peer_identity_refused_total",
                "Peer calls refused (PERMISSION_DENIED) because the caller's certificate does not name the node id the call claims.",
                count(&self.peer_identity_refused),
            ),
        ];
        for (name, help, value) in counters {
            let mut family = Family::counter(name, help);
            family.sample(&[], value);
            family.finish(out);
        }
        let gauges = [
            (
                "clockwise_sync_calls_in_flight",
                "Simulated sync calls running now.",
                sync.in_flight.load(Ordering::Relaxed),
            ),
            (
                "clockwise_watch_streams_open",
                "Watch streams open now (both services).",
                self.watches.open.load(Ordering::Relaxed) as i64,
            ),
            (
                "clockwise_sync_calls_in_flight_max",
                "Most simulated sync calls ever running at once.",
                sync.in_flight_max.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = Family::gauge(name, help);
            family.sample(&[], value as f64);
            family.finish(out);
        }
        if let Some(bulkheads) = self.bulkheads.get() {
            bulkheads.families(out);
        }
        self.port_families(out);
        if let Some(replica) = self.replica.get() {
            families::raft(&replica.status.borrow(), out);
            families::rings(&replica.rings.get(), out);
        }
    }

    /// The accept pipelines' counters, by port (`client`, `peer`, `http`).
    fn port_families(&self, out: &mut Vec<MetricFamily>) {
        let ports = [
            ("client", &self.client_port),
            ("peer", &self.peer_port),
            ("http", &self.http_port),
        ];
        let mut families = [
            Family::gauge("clockwise_connections_open", "Connections held now."),
            Family::counter(
                "clockwise_connections_refused_total",
                "Connections closed at once because the port was at its cap.",
            ),
            Family::counter(
                "clockwise_connections_handshake_timeouts_total",
                "Connections closed for sending no request within the handshake deadline.",
            ),
            Family::counter(
                "clockwise_accept_errors_total",
                "Accept errors (out of descriptors or buffers) the port backed off from.",
            ),
        ];
        for (port, counters) in ports {
            let count = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
            let values = [
                counters.open.load(Ordering::Relaxed) as f64,
                count(&counters.refused),
                count(&counters.handshake_timeouts),
                count(&counters.accept_errors),
            ];
            for (family, value) in families.iter_mut().zip(values) {
                family.sample(&[("port", port)], value);
            }
        }
        for family in families {
            family.finish(out);
        }
    }
}

#[cfg(test)]
mod tests;
