//! Metric families built at scrape time from figures that live elsewhere (atomics of
//! the accept pipelines, the bulkheads, the raft status the driver publishes, the ring
//! figures the state machine publishes), as prometheus's own types, so the text
//! encoder escapes every label value and help text.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use clockwise_cluster::driver::{RaftStatus, Role};
use clockwise_engine::RingFigures;

use crate::machine::figures::RingKind;

/// Rings labelled by name, per kind; the others are summed under [`OTHER_RINGS`].
pub const RING_LABEL_CAP: usize = 100;
/// The `ring` label of the rings beyond [`RING_LABEL_CAP`] (and of a ring that is
/// itself named so, which is never labelled apart: its series would collide).
pub const OTHER_RINGS: &str = "_other";

/// One family being filled; empty ones are left out (the encoder refuses them).
pub struct Family(MetricFamily);

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(kind);
        Family(family)
    }

    pub fn gauge(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::GAUGE)
    }

    pub fn counter(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::COUNTER)
    }

    /// Adds the series with `labels` at `value`.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Family {
        let mut metric = Metric::default();
        let pairs: Vec<LabelPair> = labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        metric.set_label(pairs.into());
        if self.0.get_field_type() == MetricType::COUNTER {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        self.0.mut_metric().push(metric);
        self
    }

    /// Adds this family to `out`, unless it has no series.
    pub fn finish(self, out: &mut Vec<MetricFamily>) {
        if !self.0.get_metric().is_empty() {
            out.push(self.0);
        }
    }
}

/// Who leads, the term and the indexes, from the status the driver last published.
pub fn raft(status: &RaftStatus, out: &mut Vec<MetricFamily>) {
    let leader = f64::from(u8::from(status.role == Role::Leader));
    let figures = [
        (
            "clockwise_raft_is_leader",
            "1 while this node is the raft leader, else 0.",
            leader,
        ),
        (
            "clockwise_raft_term",
            "The raft term this node is in.",
            status.term as f64,
        ),
        (
            "clockwise_raft_commit_index",
            "The highest log index this node knows committed.",
            status.commit_index as f64,
        ),
        (
            "clockwise_raft_applied_index",
            "The highest log index this node applied to its state.",
            status.applied_index as f64,
        ),
    ];
    for (name, help, value) in figures {
        let mut family = Family::gauge(name, help);
        family.sample(&[], value);
        family.finish(out);
    }
}

/// The ring families: per kind, the first [`RING_LABEL_CAP`] rings by name on their
/// own, the rest summed under `ring="_other"`. `rings` is in (kind, name) order.
pub fn rings(rings: &[(RingKind, String, RingFigures)], out: &mut Vec<MetricFamily>) {
    let mut labelled: Vec<(&str, &str, RingFigures)> = Vec::new();
    let mut others: Vec<(RingKind, RingFigures)> = Vec::new();
    let mut per_kind = (None, 0);
    for (kind, name, figures) in rings {
        if per_kind.0 != Some(*kind) {
            per_kind = (Some(*kind), 0);
        }
        if per_kind.1 < RING_LABEL_CAP && name != OTHER_RINGS {
            per_kind.1 += 1;
            labelled.push((kind.label(), name, *figures));
            continue;
        }
        match others.last_mut() {
            Some((k, sum)) if k == kind => {
                sum.nodes += figures.nodes;
                sum.keys += figures.keys;
                sum.evictions += figures.evictions;
                sum.expirations += figures.expirations;
            }
            _ => others.push((*kind, *figures)),
        }
    }
    let series = labelled.into_iter().chain(
        others
            .into_iter()
            .map(|(kind, figures)| (kind.label(), OTHER_RINGS, figures)),
    );
    let mut families = [
        Family::gauge(
            "clockwise_ring_nodes",
            "Nodes (HashRing) or servers (ChatRouter) on a ring, as this replica has applied.",
        ),
        Family::gauge(
            "clockwise_ring_keys",
            "Keys (HashRing) or requests (ChatRouter) stored in a ring, as this replica has applied.",
        ),
        Family::counter(
            "clockwise_ring_evictions_total",
            "Items evicted from a ring (LRU, to make room or asked for) since this replica built it.",
        ),
        Family::counter(
            "clockwise_ring_expirations_total",
            "Items of a ring that expired (TTL) since this replica built it.",
        ),
    ];
    for (kind, ring, figures) in series {
        let labels = [("kind", kind), ("ring", ring)];
        let values = [
            figures.nodes,
            figures.keys,
            figures.evictions,
            figures.expirations,
        ];
        for (family, value) in families.iter_mut().zip(values) {
            family.sample(&labels, value as f64);
        }
    }
    for family in families {
        family.finish(out);
    }
}
