//! A ring's topology (its position space, nodes with their positions, limits and merge
//! records) as plain values, and the changes to it, one per command.
//!
//! The node streams these to watchers (`Watch`); the SDK's `RingView` rebuilds a ring
//! from them with this same code, so a local route is exactly what `RouteKey` answers
//! at the same revision. Routing depends on the positions alone, and positions carry
//! history (a merge gives one node's positions to another), so a topology carries every
//! node's positions in order rather than only its replica count.
//!
//! Costs: [`HashRing::topology`] is O(virtual nodes); a change applies in
//! O(replicas · log V); no key is ever read or copied.

use super::namespace::{Namespace, UNLIMITED};
use super::{ChatRouter, ChatRouterOp, Command, Engine, HashRing, HashRingOp, Op, Outcome};
use super::{PositionSpace, MAX_REPLICAS};

/// One node (HashRing) or server (ChatRouter) of a ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyNode {
    pub id: String,
    /// The replica count as added (and summed by merges); may be 0 or negative.
    pub replicas: i64,
    /// Its virtual nodes' positions, in the order the ring keeps them (ties at one
    /// position order by node id, then by this order).
    pub positions: Vec<u64>,
    /// Capacity in keys (HashRing) or memory limit in MB (ChatRouter); [`UNLIMITED`]
    /// (-1) when never set.
    pub limit: i64,
}

/// A whole ring's topology: what routing needs, and the limits and merge records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub space: PositionSpace,
    /// In id order.
    pub nodes: Vec<TopologyNode>,
    /// Every merge record `(from, into)`, in `from` order.
    pub merges: Vec<(String, String)>,
}

/// One applied command's effect on a ring's topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyChange {
    Configured(PositionSpace),
    NodeAdded(TopologyNode),
    NodeRemoved(String),
    LimitSet {
        node: String,
        limit: i64,
    },
    Merged {
        from: String,
        into: String,
    },
    /// A backup was restored: the ring's whole topology after it.
    Restored(Topology),
}

/// A topology or change that does not fit the ring it is applied to: a view that meets
/// one has diverged from the server and must be rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("the position space cannot change: the ring has nodes")]
    NotEmpty,
    #[error("node {0:?} is already on the ring")]
    Duplicate(String),
    #[error("node {0:?} is not on the ring")]
    Unknown(String),
    #[error("node {0:?}: a position outside the ring's position space")]
    OutOfSpace(String),
    #[error("node {0:?}: {1} positions, more than {max} virtual nodes", max = MAX_REPLICAS)]
    TooManyPositions(String, usize),
    #[error("merge record {0:?} -> {1:?} is not admissible")]
    Merge(String, String),
}

impl Namespace {
    fn topology(&self) -> Topology {
        let nodes = self
            .ring
            .nodes()
            .map(|(id, idx)| {
                let info = self.ring.info(idx);
                TopologyNode {
                    id: id.to_owned(),
                    replicas: info.replicas,
                    positions: info.positions.clone(),
                    limit: self.limit(idx),
                }
            })
            .collect();
        let merges = self
            .merged
            .iter()
            .map(|(from, into)| (from.to_string(), into.to_string()))
            .collect();
        Topology {
            space: self.space,
            nodes,
            merges,
        }
    }

    fn node_topology(&self, id: &str) -> Option<TopologyNode> {
        let idx = self.ring.lookup(id)?;
        let info = self.ring.info(idx);
        Some(TopologyNode {
            id: id.to_owned(),
            replicas: info.replicas,
            positions: info.positions.clone(),
            limit: self.limit(idx),
        })
    }

    fn from_topology(topology: &Topology) -> Result<Namespace, TopologyError> {
        let mut ns = Namespace::new(topology.space);
        for node in &topology.nodes {
            ns.add_node_topology(node)?;
        }
        for (from, into) in &topology.merges {
            if !ns.record_merge(from, into) {
                return Err(TopologyError::Merge(from.clone(), into.clone()));
            }
        }
        Ok(ns)
    }

    fn add_node_topology(&mut self, node: &TopologyNode) -> Result<(), TopologyError> {
        if node.positions.len() > MAX_REPLICAS as usize {
            return Err(TopologyError::TooManyPositions(
                node.id.clone(),
                node.positions.len(),
            ));
        }
        if !node.positions.iter().all(|&pos| self.space.holds(pos)) {
            return Err(TopologyError::OutOfSpace(node.id.clone()));
        }
        if !self.add(&node.id, node.replicas, node.positions.clone()) {
            return Err(TopologyError::Duplicate(node.id.clone()));
        }
        if node.limit != UNLIMITED {
            self.set_limit(&node.id, node.limit);
        }
        Ok(())
    }

    fn apply_change(&mut self, change: &TopologyChange) -> Result<(), TopologyError> {
        match change {
            TopologyChange::Configured(space) => {
                if !self.set_space(*space) {
                    return Err(TopologyError::NotEmpty);
                }
            }
            TopologyChange::NodeAdded(node) => self.add_node_topology(node)?,
            TopologyChange::NodeRemoved(id) => {
                self.remove(id)
                    .ok_or_else(|| TopologyError::Unknown(id.clone()))?;
            }
            TopologyChange::LimitSet { node, limit } => {
                if !self.set_limit(node, *limit) {
                    return Err(TopologyError::Unknown(node.clone()));
                }
            }
            TopologyChange::Merged { from, into } => {
                if !self.merge(from, into) {
                    return Err(TopologyError::Merge(from.clone(), into.clone()));
                }
            }
            TopologyChange::Restored(topology) => *self = Namespace::from_topology(topology)?,
        }
        Ok(())
    }
}

macro_rules! topology_facade {
    ($facade:ty) => {
        impl $facade {
            /// The ring's topology. O(virtual nodes); reads no key.
            pub fn topology(&self) -> Topology {
                self.ns.topology()
            }

            /// A ring holding `topology` and no keys: it routes as the ring it was
            /// read from.
            ///
            /// # Errors
            /// The topology does not describe a ring (a duplicate node, a position
            /// outside the space, a merge record that loops).
            pub fn from_topology(topology: &Topology) -> Result<Self, TopologyError> {
                Ok(Self {
                    ns: Namespace::from_topology(topology)?,
                    ..Self::default()
                })
            }

            /// Applies one change as the server applied it.
            ///
            /// # Errors
            /// The change does not fit this ring (it has diverged from the server's);
            /// the ring may be partly changed and should be rebuilt.
            pub fn apply_topology_change(
                &mut self,
                change: &TopologyChange,
            ) -> Result<(), TopologyError> {
                self.ns.apply_change(change)
            }
        }
    };
}

topology_facade!(HashRing);
topology_facade!(ChatRouter);

/// Which of the two facades a ring belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RingKind {
    HashRing,
    ChatRouter,
}

impl Engine {
    /// The topology of a ring; an unknown ring is an empty one.
    pub fn topology(&self, kind: RingKind, ring: &str) -> Topology {
        let ns = match kind {
            RingKind::HashRing => self.hash_ring(ring).map(|r| &r.ns),
            RingKind::ChatRouter => self.chat_router(ring).map(|r| &r.ns),
        };
        ns.map(Namespace::topology).unwrap_or_default()
    }

    /// What `command`, just applied with `outcome`, changed in its ring's topology, if
    /// anything. Read from the state after the command, so it is the same on every
    /// replica.
    pub fn topology_change(
        &self,
        command: &Command,
        outcome: &Outcome,
    ) -> Option<(RingKind, TopologyChange)> {
        let done = matches!(outcome, Outcome::Done(true));
        let restored = matches!(outcome, Outcome::Count(Some(_)));
        // Most applies (stores, batches, reads of the log) change no topology: they are
        // answered before the ring is looked up.
        if !done && !restored {
            return None;
        }
        let (kind, ns) = match &command.op {
            Op::HashRing(_) => (RingKind::HashRing, &self.hash_ring(&command.ring)?.ns),
            Op::ChatRouter(_) => (RingKind::ChatRouter, &self.chat_router(&command.ring)?.ns),
        };
        let change = match &command.op {
            Op::HashRing(HashRingOp::Configure { space })
            | Op::ChatRouter(ChatRouterOp::Configure { space })
                if done =>
            {
                TopologyChange::Configured(*space)
            }
            Op::HashRing(
                HashRingOp::AddNode { node_id: id }
                | HashRingOp::AddNodeWithReplicas { node_id: id, .. },
            )
            | Op::ChatRouter(
                ChatRouterOp::AddServer { server_name: id }
                | ChatRouterOp::AddServerWithReplicas {
                    server_name: id, ..
                },
            ) if done => TopologyChange::NodeAdded(ns.node_topology(id)?),
            Op::HashRing(HashRingOp::RemoveNode { node_id: id })
            | Op::ChatRouter(ChatRouterOp::RemoveServer { server_name: id })
                if done =>
            {
                TopologyChange::NodeRemoved(id.clone())
            }
            Op::HashRing(HashRingOp::SetCapacity { node_id: id, .. })
            | Op::ChatRouter(ChatRouterOp::SetMemoryLimit {
                server_name: id, ..
            }) if done => TopologyChange::LimitSet {
                node: id.clone(),
                limit: ns.limit(ns.node(id)?),
            },
            Op::HashRing(HashRingOp::MergeNodes { from_node, to_node }) if done => {
                TopologyChange::Merged {
                    from: from_node.clone(),
                    into: to_node.clone(),
                }
            }
            Op::ChatRouter(ChatRouterOp::MergeServers {
                from_server,
                to_server,
            }) if done => TopologyChange::Merged {
                from: from_server.clone(),
                into: to_server.clone(),
            },
            Op::HashRing(HashRingOp::Restore { .. })
            | Op::ChatRouter(ChatRouterOp::Restore { .. })
                if restored =>
            {
                TopologyChange::Restored(ns.topology())
            }
            _ => return None,
        };
        Some((kind, change))
    }
}

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;
