//! What the driver and its handle count for a metrics page, as prometheus metrics made
//! here and registered by the node (`DriverStats::register`). Every update is an atomic
//! add on the thread that did the work: a scrape never asks the driver anything, so it
//! never queues behind an fsync. Who leads, the term and the indexes are in the status
//! the driver publishes ([`super::RaftHandle::status`]).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::ProposeError;

/// Upper bounds of the latency buckets of reads and applies, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];
/// Upper bounds of the snapshot build buckets, in seconds (a big state takes minutes).
const SNAPSHOT_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The `result` label of `clockwise_raft_proposals_total`, one per way a proposal ends.
pub const PROPOSAL_RESULTS: [&str; 8] = [
    "applied",
    "not_leader",
    "busy",
    "unknown",
    "stopped",
    "refused",
    "invalid",
    "conflict",
];

/// Counters and histograms of one driver, shared by its handle (cheap to clone).
#[derive(Clone)]
pub struct DriverStats {
    /// Times this node saw the leader change to a known one.
    pub leader_changes: IntCounter,
    /// Proposals made through this node's handle, by how they ended.
    pub proposals: IntCounterVec,
    /// Proposals made through this node's handle and not answered yet.
    pub proposals_pending: IntGauge,
    /// A ReadIndex round, from the request to this node having applied up to it.
    pub read_index_seconds: Histogram,
    /// ReadIndex requests this node made of raft: one per pass of the run loop that
    /// had reads, however many.
    pub read_index_requests: IntCounter,
    /// Applying one committed entry to the state machine.
    pub apply_seconds: Histogram,
    /// Writing one stored snapshot (on the snapshot thread).
    pub snapshot_seconds: Histogram,
}

impl Default for DriverStats {
    fn default() -> Self {
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("a valid histogram")
        };
        let proposals = IntCounterVec::new(
            Opts::new(
                "clockwise_raft_proposals_total",
                "Proposals made through this node, by result (applied, not_leader, busy, unknown, stopped, refused, invalid, conflict).",
            ),
            &["result"],
        )
        .expect("a valid counter");
        // Every result shows from the start (at 0), so rates and alerts see them.
        for result in PROPOSAL_RESULTS {
            proposals.with_label_values(&[result]);
        }
        DriverStats {
            leader_changes: IntCounter::new(
                "clockwise_raft_leader_changes_total",
                "Times this node saw the leader change to a known node.",
            )
            .expect("a valid counter"),
            proposals,
            proposals_pending: IntGauge::new(
                "clockwise_raft_proposals_pending",
                "Proposals made through this node and not answered yet.",
            )
            .expect("a valid gauge"),
            read_index_requests: IntCounter::new(
                "clockwise_raft_read_index_requests_total",
                "ReadIndex requests made of raft (each confirms every linearizable read that arrived in one pass of the driver).",
            )
            .expect("a valid counter"),
            read_index_seconds: histogram(
                "clockwise_raft_read_index_seconds",
                "ReadIndex rounds for linearizable reads, until applied up to the read index.",
                &LATENCY_BUCKETS,
            ),
            apply_seconds: histogram(
                "clockwise_raft_apply_seconds",
                "Applying one committed entry to the state machine.",
                &LATENCY_BUCKETS,
            ),
            snapshot_seconds: histogram(
                "clockwise_raft_snapshot_seconds",
                "Building and writing one stored snapshot.",
                &SNAPSHOT_BUCKETS,
            ),
        }
    }
}

impl DriverStats {
    /// Shows these metrics in `registry`.
    ///
    /// # Errors
    /// One of them is already registered there.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.leader_changes.clone()))?;
        registry.register(Box::new(self.proposals.clone()))?;
        registry.register(Box::new(self.proposals_pending.clone()))?;
        registry.register(Box::new(self.read_index_seconds.clone()))?;
        registry.register(Box::new(self.read_index_requests.clone()))?;
        registry.register(Box::new(self.apply_seconds.clone()))?;
        registry.register(Box::new(self.snapshot_seconds.clone()))
    }

    /// Counts a proposal that ended with `outcome`.
    pub(super) fn proposal_ended<T>(&self, outcome: &Result<T, ProposeError>) {
        self.proposals
            .with_label_values(&[result_label(outcome)])
            .inc();
    }
}

/// The `result` label of a proposal's outcome.
fn result_label<T>(outcome: &Result<T, ProposeError>) -> &'static str {
    match outcome {
        Ok(_) => "applied",
        Err(ProposeError::NotLeader { .. }) => "not_leader",
        Err(ProposeError::Busy) => "busy",
        Err(ProposeError::Unknown) => "unknown",
        Err(ProposeError::Stopped) => "stopped",
        Err(ProposeError::Refused(_)) => "refused",
        Err(ProposeError::Invalid(_)) => "invalid",
        Err(ProposeError::Conflict(_)) => "conflict",
    }
}

/// Holds a place in `proposals_pending` until dropped (a caller that gives up on its
/// proposal still frees it).
pub(super) struct Pending<'a>(&'a IntGauge);

impl<'a> Pending<'a> {
    pub(super) fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Pending(gauge)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_is_a_label_shown_from_the_start() {
        let stats = DriverStats::default();
        let registry = Registry::new();
        stats.register(&registry).unwrap();
        stats.proposal_ended::<()>(&Err(ProposeError::Busy));
        let families = registry.gather();
        let proposals = families
            .iter()
            .find(|f| f.get_name() == "clockwise_raft_proposals_total")
            .unwrap();
        assert_eq!(proposals.get_metric().len(), PROPOSAL_RESULTS.len());
        let busy: f64 = proposals
            .get_metric()
            .iter()
            .filter(|m| m.get_label()[0].get_value() == "busy")
            .map(|m| m.get_counter().get_value())
            .sum();
        assert_eq!(busy, 1.0);
        {
            let _pending = Pending::new(&stats.proposals_pending);
            assert_eq!(stats.proposals_pending.get(), 1);
        }
        assert_eq!(stats.proposals_pending.get(), 0);
    }
}
