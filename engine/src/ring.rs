//! The ring itself: which nodes exist, where their virtual nodes sit, and routing.
//!
//! Virtual nodes are kept in `(position, node name)` order, exactly the drill's
//! `items.sort()` over `(pos, name)` tuples: a `BTreeMap` from position to the virtual
//! nodes there, by name (almost always one in `u64` space). Routing finds the first
//! position at or after the key's, wrapping to the first: O(log V). A topology change
//! inserts or removes only its own virtual nodes: O(replicas · (log V + t)), where t is
//! the number of virtual nodes sharing a position (1 in `u64` space but for hash
//! collisions; up to V/100 in the drill's 100 slots), never a rebuild and re-sort of
//! the whole ring (10M virtual nodes took about a second per change that way).
//!
//! A ring of at most [`FLAT_ROUTING_MAX`] virtual nodes also keeps them in one flat
//! array, copied from the map in order after each change (O(V) ≤ 65,536 entries, no
//! sort): a binary search there is several times faster than the map's, and routing is
//! the hot path. Larger rings route through the map.

use std::collections::BTreeMap;

/// Index of a live node in [`Ring`]'s slots. Reused after the node is removed.
pub(crate) type NodeIdx = u32;

/// Identity of one virtual node, stable while its node lives. Reused after removal.
pub(crate) type VnodeId = u32;

#[derive(Clone, Debug)]
pub(crate) struct NodeInfo {
    pub(crate) name: Box<str>,
    /// The replica count as the caller gave it (may be 0 or negative: no positions).
    pub(crate) replicas: i64,
    /// Positions in replica-index order; duplicates are kept, as the drill keeps them.
    pub(crate) positions: Vec<u64>,
    /// The virtual node of each position.
    pub(crate) vnode_ids: Vec<VnodeId>,
}

/// The virtual nodes at one position, by node name, then by their order in the node's
/// positions (a node may sit twice at one position): what a sort of `(pos, name)`
/// tuples by a stable sort gives.
#[derive(Clone, Debug)]
enum AtPosition {
    /// The usual case in `u64` space, without a heap allocation.
    One([(NodeIdx, VnodeId); 1]),
    Many(Vec<(NodeIdx, VnodeId)>),
}

impl AtPosition {
    fn as_slice(&self) -> &[(NodeIdx, VnodeId)] {
        match self {
            AtPosition::One(one) => one,
            AtPosition::Many(all) => all,
        }
    }
}

/// Most virtual nodes for which a ring keeps the flat routing array.
pub(crate) const FLAT_ROUTING_MAX: usize = 1 << 16;

#[derive(Clone, Debug, Default)]
pub(crate) struct Ring {
    by_name: BTreeMap<Box<str>, NodeIdx>,
    slots: Vec<Option<NodeInfo>>,
    free: Vec<NodeIdx>,
    /// Every virtual node, by `(position, name)`.
    vnodes: BTreeMap<u64, AtPosition>,
    vnode_count: usize,
    /// `vnodes` flattened in ring order while there are at most [`FLAT_ROUTING_MAX`];
    /// empty otherwise.
    flat: Vec<(u64, NodeIdx, VnodeId)>,
    next_vnode_id: VnodeId,
    free_vnode_ids: Vec<VnodeId>,
}

impl Ring {
    pub(crate) fn node_count(&self) -> usize {
        self.by_name.len()
    }

    pub(crate) fn vnode_count(&self) -> usize {
        self.vnode_count
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<NodeIdx> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn info(&self, idx: NodeIdx) -> &NodeInfo {
        self.slots[idx as usize]
            .as_ref()
            .expect("node index refers to a live node")
    }

    pub(crate) fn name(&self, idx: NodeIdx) -> &str {
        &self.info(idx).name
    }

    /// Live nodes in name order.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (&str, NodeIdx)> + '_ {
        self.by_name.iter().map(|(name, &idx)| (&**name, idx))
    }

    /// Every virtual node's position and node, in `(position, name)` order.
    pub(crate) fn virtual_nodes(&self) -> impl Iterator<Item = (u64, NodeIdx)> + '_ {
        self.vnodes
            .iter()
            .flat_map(|(&pos, at)| at.as_slice().iter().map(move |&(node, _)| (pos, node)))
    }

    /// The node owning position `h`: first virtual node at or after `h`, else the first.
    #[inline]
    pub(crate) fn route(&self, h: u64) -> Option<NodeIdx> {
        self.route_vnode(h).map(|(node, _)| node)
    }

    /// The node owning position `h`, and which of its virtual nodes. O(log V).
    #[inline]
    pub(crate) fn route_vnode(&self, h: u64) -> Option<(NodeIdx, VnodeId)> {
        if let Some(&first) = self.flat.first() {
            let i = self.flat.partition_point(|&(pos, _, _)| pos < h);
            let (_, node, vnode) = self.flat.get(i).copied().unwrap_or(first);
            return Some((node, vnode));
        }
        self.route_in_map(h)
    }

    /// [`Self::route_vnode`] through the map (rings too large for the flat array).
    fn route_in_map(&self, h: u64) -> Option<(NodeIdx, VnodeId)> {
        let (_, at) = self
            .vnodes
            .range(h..)
            .next()
            .or_else(|| self.vnodes.first_key_value())?;
        at.as_slice().first().copied()
    }

    /// One more than the largest virtual node id in use, for sizing per-vnode tables.
    pub(crate) fn vnode_id_bound(&self) -> usize {
        self.next_vnode_id as usize
    }

    /// Registers a node. The caller checked that the name is free.
    pub(crate) fn add(&mut self, name: &str, replicas: i64, positions: Vec<u64>) -> NodeIdx {
        debug_assert!(!self.by_name.contains_key(name));
        let vnode_ids: Vec<VnodeId> = positions.iter().map(|_| self.alloc_vnode_id()).collect();
        let entries: Vec<(u64, VnodeId)> = positions
            .iter()
            .copied()
            .zip(vnode_ids.iter().copied())
            .collect();
        let info = NodeInfo {
            name: name.into(),
            replicas,
            positions,
            vnode_ids,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize] = Some(info);
                idx
            }
            None => {
                self.slots.push(Some(info));
                NodeIdx::try_from(self.slots.len() - 1).expect("fewer than 2^32 nodes")
            }
        };
        self.by_name.insert(name.into(), idx);
        for (pos, vnode) in entries {
            self.insert_vnode(pos, idx, vnode);
        }
        self.reflatten();
        idx
    }

    /// Unregisters a node and returns what it was.
    pub(crate) fn remove(&mut self, name: &str) -> Option<(NodeIdx, NodeInfo)> {
        let idx = *self.by_name.get(name)?;
        let info = self.slots[idx as usize].take().expect("live node");
        for (&pos, &vnode) in info.positions.iter().zip(&info.vnode_ids) {
            self.remove_vnode(pos, vnode);
        }
        self.by_name.remove(name);
        self.free.push(idx);
        self.free_vnode_ids.extend(&info.vnode_ids);
        self.reflatten();
        Some((idx, info))
    }

    /// Gives `from`'s positions (with their virtual-node ids and its replica count) to
    /// `to` and drops `from`. Answers `from`'s old index and the virtual nodes whose
    /// keys may now belong elsewhere: `from`'s, and every other one at a position
    /// `from` had (the name tie-break there may now go the other way).
    pub(crate) fn merge(&mut self, from: &str, to: &str) -> (NodeIdx, Vec<VnodeId>) {
        let from_idx = *self.by_name.get(from).expect("merge of a live node");
        let to_idx = *self.by_name.get(to).expect("merge into a live node");
        let info = self.slots[from_idx as usize].take().expect("live node");
        // `from`'s virtual nodes leave while its name still orders them, and come back
        // as `to`'s, after `to`'s own at each position (its positions list order).
        for (&pos, &vnode) in info.positions.iter().zip(&info.vnode_ids) {
            self.remove_vnode(pos, vnode);
        }
        self.by_name.remove(from);
        self.free.push(from_idx);
        let target = self.slots[to_idx as usize].as_mut().expect("live node");
        target.replicas = target.replicas.saturating_add(info.replicas);
        target.positions.extend(&info.positions);
        target.vnode_ids.extend(&info.vnode_ids);
        for (&pos, &vnode) in info.positions.iter().zip(&info.vnode_ids) {
            self.insert_vnode(pos, to_idx, vnode);
        }
        self.reflatten();
        let shared: std::collections::BTreeSet<u64> = info.positions.iter().copied().collect();
        let mut affected: Vec<VnodeId> = shared
            .iter()
            .filter_map(|pos| self.vnodes.get(pos))
            .flat_map(|at| at.as_slice().iter().map(|&(_, vnode)| vnode))
            .collect();
        affected.sort_unstable();
        affected.dedup();
        (from_idx, affected)
    }

    fn alloc_vnode_id(&mut self) -> VnodeId {
        self.free_vnode_ids.pop().unwrap_or_else(|| {
            let id = self.next_vnode_id;
            self.next_vnode_id = id.checked_add(1).expect("fewer than 2^32 virtual nodes");
            id
        })
    }

    /// Copies the map into the flat routing array, or drops the array for a ring too
    /// large to copy at every change.
    fn reflatten(&mut self) {
        self.flat.clear();
        if self.vnode_count > FLAT_ROUTING_MAX {
            self.flat.shrink_to_fit();
            return;
        }
        self.flat.extend(
            self.vnodes
                .iter()
                .flat_map(|(&pos, at)| at.as_slice().iter().map(move |&(n, v)| (pos, n, v))),
        );
    }

    /// Inserts a virtual node of the live node `node` at `pos`, after every one there
    /// whose name is not greater: O(log V + t).
    fn insert_vnode(&mut self, pos: u64, node: NodeIdx, vnode: VnodeId) {
        self.vnode_count += 1;
        let slots = &self.slots;
        let name_of = |idx: NodeIdx| &*slots[idx as usize].as_ref().expect("live node").name;
        let name = name_of(node);
        match self.vnodes.get_mut(&pos) {
            None => {
                self.vnodes.insert(pos, AtPosition::One([(node, vnode)]));
            }
            Some(at) => {
                let mut all = match at {
                    AtPosition::One(one) => one.to_vec(),
                    AtPosition::Many(all) => std::mem::take(all),
                };
                let i = all.partition_point(|&(other, _)| name_of(other) <= name);
                all.insert(i, (node, vnode));
                *at = AtPosition::Many(all);
            }
        }
    }

    /// Removes virtual node `vnode` from `pos`: O(log V + t).
    fn remove_vnode(&mut self, pos: u64, vnode: VnodeId) {
        let at = self.vnodes.get_mut(&pos).expect("a live virtual node");
        self.vnode_count -= 1;
        match at {
            AtPosition::One([(_, only)]) => {
                debug_assert_eq!(*only, vnode);
                self.vnodes.remove(&pos);
            }
            AtPosition::Many(all) => {
                let i = all
                    .iter()
                    .position(|&(_, v)| v == vnode)
                    .expect("a live virtual node");
                all.remove(i);
                if let [one] = all[..] {
                    *at = AtPosition::One([one]);
                }
            }
        }
    }

    /// Every virtual node in ring order (tests compare it with a full sort).
    #[cfg(test)]
    fn in_order(&self) -> Vec<(u64, NodeIdx, VnodeId)> {
        self.vnodes
            .iter()
            .flat_map(|(&pos, at)| at.as_slice().iter().map(move |&(n, v)| (pos, n, v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{NodeIdx, Ring, VnodeId};
    use crate::PositionSpace::{self, Drill};

    fn ring_of(names: &[&str]) -> Ring {
        let mut ring = Ring::default();
        for name in names {
            ring.add(name, 1, vec![Drill.position(name)]);
        }
        ring
    }

    /// The ring order as the engine built it before topology changes were incremental:
    /// every virtual node, nodes in name order, each node's in its positions order,
    /// stably sorted by position.
    fn rebuilt(ring: &Ring) -> Vec<(u64, NodeIdx, VnodeId)> {
        let mut all = Vec::new();
        for (_, idx) in ring.nodes() {
            let info = ring.info(idx);
            all.extend(
                info.positions
                    .iter()
                    .zip(&info.vnode_ids)
                    .map(|(&pos, &vnode)| (pos, idx, vnode)),
            );
        }
        all.sort_by_key(|&(pos, _, _)| pos);
        all
    }

    #[test]
    fn equal_positions_route_to_the_smaller_name_whatever_the_insertion_order() {
        // n0 and n12 both sit at 47.
        for names in [["n12", "n0"], ["n0", "n12"]] {
            let ring = ring_of(&names);
            let n0 = ring.lookup("n0").unwrap();
            assert_eq!(ring.route(Drill.position("k14")), Some(n0), "key at 47");
            assert_eq!(
                ring.route(Drill.position("k0")),
                Some(n0),
                "key at 85 wraps"
            );
        }
    }

    #[test]
    fn routing_is_clockwise_inclusive_with_wrap() {
        // node_b at 41, node_a at 45.
        let ring = ring_of(&["node_a", "node_b"]);
        let (a, b) = (
            ring.lookup("node_a").unwrap(),
            ring.lookup("node_b").unwrap(),
        );
        assert_eq!(ring.route(41), Some(b));
        assert_eq!(ring.route(42), Some(a));
        assert_eq!(ring.route(45), Some(a));
        assert_eq!(ring.route(46), Some(b));
        assert_eq!(ring.route(0), Some(b));
        assert_eq!(Ring::default().route(3), None);
    }

    #[test]
    fn incremental_changes_give_the_order_of_a_full_rebuild() {
        for space in [Drill, PositionSpace::U64] {
            let mut ring = Ring::default();
            let mut state = 99u64;
            let mut next = |n: u64| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) % n
            };
            for step in 0..3000 {
                let name = format!("n{}", next(40));
                match next(3) {
                    0 if ring.lookup(&name).is_none() => {
                        let k = next(12) as i64;
                        let positions = (0..k).map(|i| space.replica_position(&name, i)).collect();
                        ring.add(&name, k, positions);
                    }
                    1 => {
                        ring.remove(&name);
                    }
                    2 => {
                        let to = format!("n{}", next(40));
                        if to != name && ring.lookup(&name).is_some() && ring.lookup(&to).is_some()
                        {
                            ring.merge(&name, &to);
                        }
                    }
                    _ => {}
                }
                let order = ring.in_order();
                assert_eq!(order, rebuilt(&ring), "{space:?}, step {step}");
                assert_eq!(
                    ring.flat, order,
                    "the flat routing array is the map's order"
                );
                assert_eq!(ring.vnode_count(), order.len());
                let near: Vec<u64> = (0..4)
                    .filter_map(|_| order.get(next(order.len().max(1) as u64) as usize))
                    .flat_map(|&(pos, _, _)| [pos.wrapping_sub(1), pos, pos.wrapping_add(1)])
                    .collect();
                for probe in near.into_iter().chain([0, 47, 99, u64::MAX]) {
                    let probe = if space == Drill { probe % 100 } else { probe };
                    let i = order.partition_point(|&(pos, _, _)| pos < probe);
                    let want = order.get(i).or(order.first()).map(|&(_, n, v)| (n, v));
                    assert_eq!(ring.route_vnode(probe), want, "{space:?}, position {probe}");
                    assert_eq!(
                        ring.route_in_map(probe),
                        want,
                        "{space:?}, position {probe}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_ring_past_the_flat_array_routes_through_the_map_and_back() {
        let space = PositionSpace::U64;
        let mut ring = Ring::default();
        for n in 0..7 {
            let name = format!("n{n}");
            let positions = (0..10_000)
                .map(|i| space.replica_position(&name, i))
                .collect();
            ring.add(&name, 10_000, positions);
        }
        assert!(ring.vnode_count() > super::FLAT_ROUTING_MAX && ring.flat.is_empty());
        let check = |ring: &Ring| {
            let order = ring.in_order();
            for &(pos, _, _) in order.iter().step_by(997) {
                for probe in [pos.wrapping_sub(1), pos, pos.wrapping_add(1), u64::MAX] {
                    let i = order.partition_point(|&(p, _, _)| p < probe);
                    let want = order.get(i).or(order.first()).map(|&(_, n, v)| (n, v));
                    assert_eq!(ring.route_vnode(probe), want, "position {probe}");
                }
            }
        };
        check(&ring);
        ring.remove("n3");
        assert_eq!(ring.flat, ring.in_order(), "small enough again");
        check(&ring);
    }
}
