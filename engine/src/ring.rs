//! The ring itself: which nodes exist, where their virtual nodes sit, and routing.
//!
//! Virtual nodes live in one array sorted by `(position, node name)`, exactly the drill's
//! `items.sort()` over `(pos, name)` tuples. Routing finds the first entry at or after the
//! key's position, wrapping to the first entry. A bucket table maps the top bits of a
//! position to the array slice that can hold its answer, so routing is one table read
//! and a search of a slice that is almost always one or two entries long. A topology
//! change rebuilds both (O(V log V)); routing never allocates.

use std::collections::BTreeMap;

use super::PositionSpace;

/// Index of a live node in [`Ring`]'s slots. Reused after the node is removed.
pub(crate) type NodeIdx = u32;

/// Identity of one virtual node, stable while its node lives (the array index of a
/// virtual node changes whenever the ring changes). Reused after removal.
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

#[derive(Clone, Debug, Default)]
pub(crate) struct Ring {
    space: PositionSpace,
    by_name: BTreeMap<Box<str>, NodeIdx>,
    slots: Vec<Option<NodeInfo>>,
    free: Vec<NodeIdx>,
    /// Every virtual node, sorted by `(position, name)`.
    vnodes: Vec<(u64, NodeIdx, VnodeId)>,
    next_vnode_id: VnodeId,
    free_vnode_ids: Vec<VnodeId>,
    /// `buckets[b]`: index of the first virtual node in bucket `b` or later; one extra
    /// entry at the end holds `vnodes.len()`.
    buckets: Vec<u32>,
    /// `u64` space: bucket = position >> shift. Drill space: bucket = position.
    shift: u32,
}

impl Ring {
    /// An empty ring in `space`.
    pub(crate) fn new(space: PositionSpace) -> Self {
        let mut ring = Ring {
            space,
            ..Ring::default()
        };
        ring.rebuild_vnodes();
        ring
    }

    pub(crate) fn node_count(&self) -> usize {
        self.by_name.len()
    }

    pub(crate) fn vnode_count(&self) -> usize {
        self.vnodes.len()
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

    /// The node owning position `h`: first virtual node at or after `h`, else the first.
    #[inline]
    pub(crate) fn route(&self, h: u64) -> Option<NodeIdx> {
        self.route_vnode(h).map(|(node, _)| node)
    }

    /// The node owning position `h`, and which of its virtual nodes.
    #[inline]
    pub(crate) fn route_vnode(&self, h: u64) -> Option<(NodeIdx, VnodeId)> {
        let first = self.vnodes.first()?;
        let b = self.bucket(h);
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        let i = lo + self.vnodes[lo..hi].partition_point(|&(pos, _, _)| pos < h);
        let &(_, node, vnode) = self.vnodes.get(i).unwrap_or(first);
        Some((node, vnode))
    }

    /// One more than the largest virtual node id in use, for sizing per-vnode tables.
    pub(crate) fn vnode_id_bound(&self) -> usize {
        self.next_vnode_id as usize
    }

    #[inline]
    fn bucket(&self, h: u64) -> usize {
        match self.space {
            // Drill positions are < 100, and so are the bucket table's indices.
            PositionSpace::Drill => h as usize,
            PositionSpace::U64 => (h >> self.shift) as usize,
        }
    }

    /// Registers a node. The caller checked that the name is free.
    pub(crate) fn add(&mut self, name: &str, replicas: i64, positions: Vec<u64>) -> NodeIdx {
        debug_assert!(!self.by_name.contains_key(name));
        let vnode_ids = positions.iter().map(|_| self.alloc_vnode_id()).collect();
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
        self.rebuild_vnodes();
        idx
    }

    /// Unregisters a node and returns what it was.
    pub(crate) fn remove(&mut self, name: &str) -> Option<(NodeIdx, NodeInfo)> {
        let idx = self.by_name.remove(name)?;
        let info = self.slots[idx as usize].take().expect("live node");
        self.free.push(idx);
        self.free_vnode_ids.extend(&info.vnode_ids);
        self.rebuild_vnodes();
        Some((idx, info))
    }

    /// Gives `from`'s positions (with their virtual-node ids and its replica count) to
    /// `to` and drops `from`. Answers `from`'s old index and the virtual nodes whose
    /// keys may now belong elsewhere: `from`'s, and every other one at a position
    /// `from` had (the name tie-break there may now go the other way).
    pub(crate) fn merge(&mut self, from: &str, to: &str) -> (NodeIdx, Vec<VnodeId>) {
        let from_idx = self.by_name.remove(from).expect("merge of a live node");
        let to_idx = *self.by_name.get(to).expect("merge into a live node");
        let info = self.slots[from_idx as usize].take().expect("live node");
        self.free.push(from_idx);
        let target = self.slots[to_idx as usize].as_mut().expect("live node");
        target.replicas = target.replicas.saturating_add(info.replicas);
        target.positions.extend(&info.positions);
        target.vnode_ids.extend(&info.vnode_ids);
        self.rebuild_vnodes();
        let shared: std::collections::BTreeSet<u64> = info.positions.iter().copied().collect();
        let mut affected: Vec<VnodeId> = self
            .vnodes
            .iter()
            .filter(|(pos, _, _)| shared.contains(pos))
            .map(|&(_, _, vnode)| vnode)
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

    fn rebuild_vnodes(&mut self) {
        let slots = &self.slots;
        self.vnodes.clear();
        // by_name is in name order and the sort is stable, so equal positions end up
        // ordered by name without comparing strings.
        for &idx in self.by_name.values() {
            let info = slots[idx as usize].as_ref().expect("live node");
            let entries = info.positions.iter().zip(&info.vnode_ids);
            self.vnodes
                .extend(entries.map(|(&pos, &vnode)| (pos, idx, vnode)));
        }
        self.vnodes.sort_by_key(|&(pos, _, _)| pos);

        let bucket_count = match self.space {
            PositionSpace::Drill => 100,
            PositionSpace::U64 => {
                // About one virtual node per bucket, at most 2^16 buckets.
                let bits = self
                    .vnodes
                    .len()
                    .next_power_of_two()
                    .trailing_zeros()
                    .clamp(1, 16);
                self.shift = 64 - bits;
                1 << bits
            }
        };
        self.buckets.clear();
        let mut i = 0;
        for b in 0..bucket_count {
            while i < self.vnodes.len() && self.bucket(self.vnodes[i].0) < b {
                i += 1;
            }
            self.buckets.push(i as u32);
        }
        self.buckets.push(self.vnodes.len() as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;
    use crate::PositionSpace::{self, Drill};

    fn ring_of(names: &[&str]) -> Ring {
        let mut ring = Ring::new(Drill);
        for name in names {
            ring.add(name, 1, vec![Drill.position(name)]);
        }
        ring
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
        assert_eq!(Ring::new(Drill).route(3), None);
    }

    #[test]
    fn bucketed_routing_agrees_with_a_plain_search_in_u64_space() {
        let mut ring = Ring::new(PositionSpace::U64);
        for n in 0..20 {
            let name = format!("n{n}");
            let positions = (0..7)
                .map(|i| PositionSpace::U64.replica_position(&name, i))
                .collect();
            ring.add(&name, 7, positions);
        }
        let plain = |h: u64| {
            let i = ring.vnodes.partition_point(|&(pos, _, _)| pos < h);
            ring.vnodes.get(i).unwrap_or(&ring.vnodes[0]).1
        };
        let mut probes: Vec<u64> = ring
            .vnodes
            .iter()
            .flat_map(|&(p, _, _)| [p.wrapping_sub(1), p, p.wrapping_add(1)])
            .collect();
        probes.extend([0, u64::MAX, 1 << 63]);
        probes.extend((0..1000).map(|i| PositionSpace::U64.position(&format!("k{i}"))));
        for h in probes {
            assert_eq!(ring.route(h), Some(plain(h)), "position {h}");
        }
    }
}
