//! Quotas: how much state one writer may make every replica hold and re-sort. A command
//! that would go past one is refused whole (nothing changes, not even the ring's clock)
//! with [`QuotaExceeded`] naming it.
//!
//! Quotas are applied at apply time, so they must be the same on every replica for the
//! same log entry: the node's leader writes its configured [`Quotas`] into each entry it
//! proposes (as it does `--max-backups-per-ring`), and [`crate::Engine::apply_within`]
//! takes them from the entry, never from the replica's own flags.

/// Rings (HashRing and ChatRouter namespaces together) unless configured otherwise.
pub const DEFAULT_MAX_RINGS: u64 = 10_000;
/// Live nodes (servers) in one ring unless configured otherwise.
pub const DEFAULT_MAX_NODES_PER_RING: u64 = 10_000;
/// Virtual nodes in one ring unless configured otherwise: a topology change costs
/// O(replicas · log V), and the ring's sorted array costs 16 bytes per virtual node.
pub const DEFAULT_MAX_VNODES_PER_RING: u64 = 1_000_000;

/// The limits one command is applied within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    pub max_rings: u64,
    pub max_nodes_per_ring: u64,
    pub max_vnodes_per_ring: u64,
}

impl Quotas {
    /// No quota: what log entries written before quotas existed are applied within, so
    /// that replaying them gives the state they gave then.
    pub const UNLIMITED: Quotas = Quotas {
        max_rings: u64::MAX,
        max_nodes_per_ring: u64::MAX,
        max_vnodes_per_ring: u64::MAX,
    };
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_rings: DEFAULT_MAX_RINGS,
            max_nodes_per_ring: DEFAULT_MAX_NODES_PER_RING,
            max_vnodes_per_ring: DEFAULT_MAX_VNODES_PER_RING,
        }
    }
}

/// Which quota refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    Rings,
    NodesPerRing,
    VnodesPerRing,
}

impl Quota {
    /// The quota's name, as its node flag spells it (`--max-…`).
    pub fn name(self) -> &'static str {
        match self {
            Quota::Rings => "max-rings",
            Quota::NodesPerRing => "max-nodes-per-ring",
            Quota::VnodesPerRing => "max-vnodes-per-ring",
        }
    }
}

/// A command refused by a quota: which one, and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quota {} ({limit}) reached", quota.name())]
pub struct QuotaExceeded {
    pub quota: Quota,
    pub limit: u64,
}

impl Quotas {
    /// Whether a ring of `nodes` nodes and `vnodes` virtual nodes may take one more node
    /// with `new_vnodes` virtual nodes.
    pub(crate) fn admit_node(
        &self,
        nodes: usize,
        vnodes: usize,
        new_vnodes: u64,
    ) -> Result<(), QuotaExceeded> {
        if nodes as u64 >= self.max_nodes_per_ring {
            return Err(QuotaExceeded {
                quota: Quota::NodesPerRing,
                limit: self.max_nodes_per_ring,
            });
        }
        if (vnodes as u64).saturating_add(new_vnodes) > self.max_vnodes_per_ring {
            return Err(QuotaExceeded {
                quota: Quota::VnodesPerRing,
                limit: self.max_vnodes_per_ring,
            });
        }
        Ok(())
    }

    pub(crate) fn admit_ring(&self, rings: usize) -> Result<(), QuotaExceeded> {
        if rings as u64 >= self.max_rings {
            return Err(QuotaExceeded {
                quota: Quota::Rings,
                limit: self.max_rings,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cr, hr};
    use crate::{ChatRouterOp, Engine, HashRingOp, Outcome, PositionSpace};

    fn add(ring: &str, node: &str, replicas: i64) -> crate::Command {
        hr(
            ring,
            1,
            HashRingOp::AddNodeWithReplicas {
                node_id: node.into(),
                num_replicas: replicas,
            },
        )
    }

    #[test]
    fn a_command_that_changes_nothing_creates_no_ring() {
        let mut e = Engine::new();
        let before = e.state_digest();
        let no_ops = [
            hr(
                "r1",
                5,
                HashRingOp::RemoveNode {
                    node_id: "x".into(),
                },
            ),
            hr("r2", 5, HashRingOp::StoreKey { key: "k".into() }),
            hr(
                "r3",
                5,
                HashRingOp::EvictLru {
                    node_id: "x".into(),
                },
            ),
            hr(
                "r4",
                5,
                HashRingOp::Configure {
                    space: PositionSpace::Drill,
                },
            ),
            hr(
                "r5",
                5,
                HashRingOp::Restore {
                    backup_timestamp: 9,
                },
            ),
            cr(
                "r6",
                5,
                ChatRouterOp::RemoveServer {
                    server_name: "x".into(),
                },
            ),
            cr(
                "r7",
                5,
                ChatRouterOp::AssignRequest {
                    request_id: "q".into(),
                    size_mb: 3,
                },
            ),
        ];
        for command in &no_ops {
            e.apply(command);
        }
        assert_eq!(e.ring_count(), 0);
        assert!(e.hash_ring("r1").is_none() && e.chat_router("r6").is_none());
        assert_eq!(e.state_digest(), before);
        assert_eq!(e.recomputed_digest(), before);
        // A command that leaves something creates its ring.
        e.apply(&hr(
            "r1",
            6,
            HashRingOp::AddNode {
                node_id: "x".into(),
            },
        ));
        e.apply(&hr("r8", 6, HashRingOp::Backup { max_backups: 4 }));
        assert_eq!(e.ring_count(), 2);
        assert_eq!(e.state_digest(), e.recomputed_digest());
    }

    #[test]
    fn quotas_refuse_what_would_go_past_them_and_change_nothing() {
        let quotas = Quotas {
            max_rings: 2,
            max_nodes_per_ring: 3,
            max_vnodes_per_ring: 10,
        };
        let mut e = Engine::new();
        let refused = |quota, limit| Outcome::Refused(QuotaExceeded { quota, limit });
        assert_eq!(
            e.apply_within(&add("a", "n1", 4), &quotas),
            Outcome::Done(true)
        );
        assert_eq!(
            e.apply_within(&add("a", "n2", 4), &quotas),
            Outcome::Done(true)
        );
        let digest = e.state_digest();
        assert_eq!(
            e.apply_within(&add("a", "n3", 3), &quotas),
            refused(Quota::VnodesPerRing, 10)
        );
        assert_eq!(e.state_digest(), digest, "a refusal changes nothing");
        assert_eq!(
            e.apply_within(&add("a", "n3", 2), &quotas),
            Outcome::Done(true)
        );
        assert_eq!(
            e.apply_within(&add("a", "n4", 0), &quotas),
            refused(Quota::NodesPerRing, 3)
        );
        // A node already there is the drill's `false`, not a refusal.
        assert_eq!(
            e.apply_within(&add("a", "n1", 4), &quotas),
            Outcome::Done(false)
        );
        assert_eq!(
            e.apply_within(&add("b", "n1", 1), &quotas),
            Outcome::Done(true)
        );
        assert_eq!(
            e.apply_within(&add("c", "n1", 1), &quotas),
            refused(Quota::Rings, 2)
        );
        assert!(e.hash_ring("c").is_none());
        // A no-op on a new ring is answered, not refused: it creates nothing.
        let remove = hr(
            "c",
            1,
            HashRingOp::RemoveNode {
                node_id: "n1".into(),
            },
        );
        assert_eq!(e.apply_within(&remove, &quotas), Outcome::Done(false));
        // Removing makes room again.
        let remove = hr(
            "a",
            2,
            HashRingOp::RemoveNode {
                node_id: "n1".into(),
            },
        );
        assert_eq!(e.apply_within(&remove, &quotas), Outcome::Done(true));
        assert_eq!(
            e.apply_within(&add("a", "n4", 4), &quotas),
            Outcome::Done(true)
        );
        assert_eq!(e.state_digest(), e.recomputed_digest());
    }

    #[test]
    fn one_node_past_the_virtual_node_quota_is_refused_on_a_new_ring() {
        let mut e = Engine::new();
        let quotas = Quotas {
            max_vnodes_per_ring: 5,
            ..Quotas::default()
        };
        assert_eq!(
            e.apply_within(&add("a", "n1", 6), &quotas),
            Outcome::Refused(QuotaExceeded {
                quota: Quota::VnodesPerRing,
                limit: 5
            })
        );
        assert_eq!(e.ring_count(), 0);
    }
}
