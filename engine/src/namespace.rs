//! One ring namespace: the ring, its placed items and the per-node limits, with the
//! drill semantics both facades share (topology changes re-route only the affected
//! arcs and never evict; stores evict by the facade's policy; LRU victims), and what
//! goes beyond the drill: expiring items, merges and the ring's backups.
//!
//! Expiry is driven by command timestamps only: every command first advances the
//! ring's latest timestamp and purges what is dead at it, and purges again after
//! itself, so no item dead at the latest timestamp is ever kept, and a read at a later
//! time discounts the items that died since (found by expiry, not by a scan).

use std::collections::BTreeMap;

use super::backups::Backups;
use super::digest::{self, Sum};
use super::item::{dead_by, NEVER};
use super::item::{Item, Slot};
use super::merges::Merges;
use super::placement::Placement;
use super::ring::{NodeIdx, Ring, VnodeId};
use super::PositionSpace;

/// The `-1` of `get_capacity` / `get_memory_limit`: no limit.
pub const UNLIMITED: i64 = -1;

/// How a store makes room on a node that has a limit.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Eviction {
    /// HashRing: a new key evicts at most one LRU key when `used >= capacity`.
    AtMostOne,
    /// ChatRouter: evict LRU requests while `used + incoming > limit`, stopping when the
    /// node is empty (the request is stored anyway).
    UntilFits { incoming: i64 },
}

/// What a batch looks up of a key before it applies its operations in order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lookup {
    /// The key's ring position.
    pub(crate) pos: u64,
    /// Where the key was stored at lookup time, if it was (a hint, checked before use:
    /// earlier operations of the batch may have moved or removed it).
    pub(crate) slot: Option<Slot>,
}

impl Lookup {
    /// A lookup of the position alone.
    pub(crate) fn position(pos: u64) -> Self {
        Lookup { pos, slot: None }
    }
}

/// Where a stored item lives, for `LocateKey` / `LocateRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub node: String,
    pub last_access: i64,
    pub size: i64,
    /// When it dies, if it expires.
    pub expires_at: Option<i64>,
}

#[derive(Clone, Debug)]
pub(crate) struct Namespace {
    pub(crate) space: PositionSpace,
    pub(crate) ring: Ring,
    pub(crate) placement: Placement,
    /// Per node slot: the capacity / memory limit, `None` = never set (unlimited).
    limits: Vec<Option<i64>>,
    /// The latest command timestamp seen; nothing dead at it is kept.
    pub(crate) latest: i64,
    /// Each merged-away node and the node it was merged into (changed only through
    /// [`Self::record_merge`] and [`Self::add`], which keep `facts`).
    pub(crate) merged: Merges,
    /// Saved backups, oldest first.
    pub(crate) backups: Backups,
    /// The sum of the digest facts of the nodes, limits and merge records (the items'
    /// are the placement's), kept by every change of them.
    facts: Sum,
    /// Keys removed by LRU eviction (to make room, or asked for) since this replica
    /// built the namespace: for observers only, in neither the digest nor a snapshot.
    pub(crate) evictions: u64,
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace::new(PositionSpace::default())
    }
}

impl Namespace {
    pub(crate) fn is_empty(&self) -> bool {
        self.ring.node_count() == 0 && self.placement.len() == 0
    }

    /// Holds nothing but its clock: no node, key, backup or merge record, and the
    /// default position space. Such a namespace is not worth creating (see
    /// [`crate::Engine::apply_within`]).
    pub(crate) fn is_pristine(&self) -> bool {
        self.space == PositionSpace::default()
            && self.is_empty()
            && self.placement.next_seq() == 0
            && self.merged.is_empty()
            && self.backups.list().is_empty()
    }

    pub(crate) fn new(space: PositionSpace) -> Self {
        Namespace {
            space,
            ring: Ring::default(),
            placement: Placement::default(),
            limits: Vec::new(),
            latest: 0,
            merged: Merges::default(),
            backups: Backups::default(),
            facts: 0,
            evictions: 0,
        }
    }

    /// The namespace's digest: the sum of all its facts (see `digest`). O(1).
    pub(crate) fn digest_sum(&self) -> Sum {
        self.placement
            .digest
            .wrapping_add(self.facts)
            .wrapping_add(self.header_fact())
            .wrapping_add(self.backups.fact())
    }

    fn header_fact(&self) -> u128 {
        digest::header(self.space.code(), self.latest, self.placement.next_seq())
    }

    /// [`Self::digest_sum`] computed from scratch.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn recomputed_digest(&self) -> Sum {
        let mut sum = self
            .placement
            .recomputed_digest()
            .wrapping_add(self.header_fact())
            .wrapping_add(self.backups.recomputed_fact());
        for (name, idx) in self.ring.nodes() {
            let info = self.ring.info(idx);
            sum = sum.wrapping_add(digest::node(name, info.replicas, &info.positions));
            if let Some(limit) = self.limits[idx as usize] {
                sum = sum.wrapping_add(digest::limit(name, limit));
            }
        }
        for (from, to) in self.merged.iter() {
            sum = sum.wrapping_add(digest::merged(from, to));
        }
        sum
    }

    /// Records that `from` was merged into `to`; `false` (nothing recorded) when `from`
    /// has a record already or `to` leads back to `from` (only a forged snapshot or
    /// backup holds such records).
    pub(crate) fn record_merge(&mut self, from: &str, to: &str) -> bool {
        if !self.merged.admits(from, to) {
            return false;
        }
        self.merged.insert(from, to);
        self.facts = self.facts.wrapping_add(digest::merged(from, to));
        true
    }

    /// Sets a node's recorded limit, keeping its digest fact.
    fn put_limit(&mut self, idx: NodeIdx, limit: Option<i64>) {
        let i = idx as usize;
        if self.limits[i] == limit {
            return;
        }
        let name = self.ring.name(idx);
        if let Some(old) = self.limits[i] {
            self.facts = self.facts.wrapping_sub(digest::limit(name, old));
        }
        if let Some(new) = limit {
            self.facts = self.facts.wrapping_add(digest::limit(name, new));
        }
        self.limits[i] = limit;
    }

    /// The digest fact of a live node.
    fn node_fact(&self, idx: NodeIdx) -> u128 {
        let info = self.ring.info(idx);
        digest::node(&info.name, info.replicas, &info.positions)
    }

    pub(crate) fn set_space(&mut self, space: PositionSpace) -> bool {
        if !self.is_empty() {
            return false;
        }
        self.space = space;
        self.ring = Ring::default();
        self.placement = Placement::default();
        self.limits.clear();
        true
    }

    /// Moves the ring's clock to `timestamp` (never back) and drops what is dead then.
    pub(crate) fn advance(&mut self, timestamp: i64) {
        self.latest = self.latest.max(timestamp);
        self.purge();
    }

    /// Drops every item dead at the latest timestamp.
    pub(crate) fn purge(&mut self) {
        for slot in self.placement.dead_at(self.latest) {
            self.placement.remove(slot);
        }
    }

    /// A node's live `(count, size)` as seen at `timestamp`: items that died after the
    /// latest timestamp and by `timestamp` are not counted. Bounded whatever expires in
    /// that window: the node's sums by expiry (see `expiry_sums`).
    pub(crate) fn load_at(&self, node: NodeIdx, timestamp: i64) -> (i64, i128) {
        let load = self.placement.load(node);
        let dying = load.expiring.dying_between(self.latest, timestamp);
        (
            load.count as i64 - dying.count as i64,
            load.size - dying.size,
        )
    }

    /// Every node's live `(count, size)` at `timestamp`, for top-N: the items dying in
    /// the window one by one when they are few, else every node's sums by expiry, so
    /// the cost is O(min(items dying, nodes · 8 · 255)).
    pub(crate) fn loads_at(&self, timestamp: i64) -> BTreeMap<NodeIdx, (i64, i128)> {
        let mut loads: BTreeMap<NodeIdx, (i64, i128)> = self
            .ring
            .nodes()
            .map(|(_, idx)| {
                let load = self.placement.load(idx);
                (idx, (load.count as i64, load.size))
            })
            .collect();
        let few = 64 * loads.len().max(1);
        let dying: Vec<&Item> = self
            .placement
            .dying_between(self.latest, timestamp)
            .take(few + 1)
            .collect();
        if dying.len() <= few {
            for item in dying {
                if let Some(load) = loads.get_mut(&item.node) {
                    load.0 -= 1;
                    load.1 -= i128::from(item.size);
                }
            }
            return loads;
        }
        for (&idx, load) in loads.iter_mut() {
            *load = self.load_at(idx, timestamp);
        }
        loads
    }

    /// Merges `from` into `to`: `to` takes over `from`'s positions (and replica count),
    /// `from`'s limit goes with it, nothing is evicted, and only the keys of the arcs
    /// that changed owner move. `false` when either is missing or they are the same.
    pub(crate) fn merge(&mut self, from: &str, to: &str) -> bool {
        if from == to || self.ring.lookup(from).is_none() || self.ring.lookup(to).is_none() {
            return false;
        }
        let (from_node, to_node) = (
            self.ring.lookup(from).expect("checked above"),
            self.ring.lookup(to).expect("checked above"),
        );
        self.put_limit(from_node, None);
        let before = self
            .node_fact(from_node)
            .wrapping_add(self.node_fact(to_node));
        let (from_idx, affected) = self.ring.merge(from, to);
        self.facts = self
            .facts
            .wrapping_sub(before)
            .wrapping_add(self.node_fact(to_node));
        let ring = &self.ring;
        let dropped = self
            .placement
            .reroute(&affected, |pos| ring.route_vnode(pos));
        debug_assert!(dropped.is_empty(), "the merged ring has every position");
        debug_assert_eq!(self.placement.load(from_idx).count, 0);
        let recorded = self.record_merge(from, to);
        debug_assert!(recorded, "a live node has no merge record");
        true
    }

    /// Where `name` was merged into, following later merges of the target; `None` if it
    /// was not merged (or was added again since). O(log n): see `merges`.
    pub(crate) fn merged_into(&self, name: &str) -> Option<String> {
        self.merged.final_target(name).map(str::to_owned)
    }

    /// `add_node` / `add_server`: one position, the bare name.
    pub(crate) fn add_bare(&mut self, name: &str) -> bool {
        let pos = self.space.position(name);
        self.add(name, 1, vec![pos])
    }

    /// `add_node_with_replicas`: positions of `name_0 .. name_{k-1}`; `k <= 0` gives none.
    pub(crate) fn add_with_replicas(&mut self, name: &str, replicas: i64) -> bool {
        let positions = (0..replicas.max(0))
            .map(|i| self.space.replica_position(name, i))
            .collect();
        self.add(name, replicas, positions)
    }

    pub(crate) fn add(&mut self, name: &str, replicas: i64, positions: Vec<u64>) -> bool {
        if self.ring.lookup(name).is_some() {
            return false;
        }
        // A name added again is no longer "merged".
        if let Some(to) = self.merged.remove(name) {
            self.facts = self.facts.wrapping_sub(digest::merged(name, &to));
        }
        // Only keys of the virtual nodes that own the new positions now can move.
        let mut old_owners: Vec<VnodeId> = positions
            .iter()
            .filter_map(|&pos| self.ring.route_vnode(pos).map(|(_, vnode)| vnode))
            .collect();
        old_owners.sort_unstable();
        old_owners.dedup();
        let idx = self.ring.add(name, replicas, positions);
        self.facts = self.facts.wrapping_add(self.node_fact(idx));
        self.placement.node_added(idx, self.ring.vnode_id_bound());
        if self.limits.len() <= idx as usize {
            self.limits.resize(idx as usize + 1, None);
        }
        // A reused slot's limit was cleared when its node went.
        debug_assert_eq!(self.limits[idx as usize], None);
        let ring = &self.ring;
        let dropped = self
            .placement
            .reroute(&old_owners, |pos| ring.route_vnode(pos));
        debug_assert!(dropped.is_empty(), "a ring with positions routes every key");
        true
    }

    /// Removes a node, its limit, and re-routes its keys. `None` if there was no such
    /// node; otherwise the items dropped because no position is left (in insertion order).
    pub(crate) fn remove(&mut self, name: &str) -> Option<Vec<Item>> {
        let idx = self.ring.lookup(name)?;
        self.put_limit(idx, None);
        self.facts = self.facts.wrapping_sub(self.node_fact(idx));
        let (_, info) = self.ring.remove(name).expect("looked up above");
        let ring = &self.ring;
        let dropped = self
            .placement
            .reroute(&info.vnode_ids, |pos| ring.route_vnode(pos));
        debug_assert!(dropped.is_empty() || self.ring.vnode_count() == 0);
        debug_assert_eq!(self.placement.load(idx).count, 0);
        Some(dropped)
    }

    pub(crate) fn route(&self, key: &str) -> Option<&str> {
        self.route_at(self.space.position(key))
    }

    /// The node owning ring position `pos`.
    pub(crate) fn route_at(&self, pos: u64) -> Option<&str> {
        let node = self.ring.route(pos)?;
        Some(self.ring.name(node))
    }

    /// The positions of many keys, hashed together (see [`PositionSpace::positions`]).
    pub(crate) fn positions<'a>(&self, keys: impl Iterator<Item = &'a str>) -> Vec<u64> {
        let keys: Vec<&str> = keys.collect();
        let mut positions = Vec::new();
        self.space.positions(&keys, &mut positions);
        positions
    }

    /// The lookup of one key to store: its position. The key's index entry is
    /// prefetched first, so its cache miss overlaps md5 instead of following it.
    pub(crate) fn look_up(&self, key: &str) -> Lookup {
        self.placement.prefetch(key);
        Lookup::position(self.space.position(key))
    }

    /// The positions of many keys and, for those flagged `true` (the stores), where each
    /// is stored now, looked up together: the lookups do not depend on each other, so
    /// the CPU overlaps their cache misses, which one-at-a-time operations pay in turn.
    pub(crate) fn look_up_many<'a>(
        &self,
        keys: impl Iterator<Item = (&'a str, bool)>,
    ) -> Vec<Lookup> {
        let (keys, find): (Vec<&str>, Vec<bool>) = keys.unzip();
        let positions = self.positions(keys.iter().copied());
        let stored: Vec<&str> = keys
            .iter()
            .zip(&find)
            .filter(|(_, &f)| f)
            .map(|(k, _)| *k)
            .collect();
        let mut slots = self.placement.find_many(&stored).into_iter();
        find.into_iter()
            .zip(positions)
            .map(|(find, pos)| Lookup {
                pos,
                slot: if find {
                    slots.next().expect("a slot per key found")
                } else {
                    None
                },
            })
            .collect()
    }

    pub(crate) fn node(&self, name: &str) -> Option<NodeIdx> {
        self.ring.lookup(name)
    }

    pub(crate) fn limit(&self, node: NodeIdx) -> i64 {
        self.limits[node as usize].unwrap_or(UNLIMITED)
    }

    pub(crate) fn set_limit(&mut self, name: &str, limit: i64) -> bool {
        let Some(idx) = self.ring.lookup(name) else {
            return false;
        };
        self.put_limit(idx, Some(limit));
        true
    }

    /// The limit as recorded: `None` = never set.
    pub(crate) fn raw_limit(&self, node: NodeIdx) -> Option<i64> {
        self.limits[node as usize]
    }

    /// Stores or refreshes `key` (`lookup`: its position, and maybe its slot) at time
    /// `ts`. A key already stored keeps its size and insertion order and never evicts;
    /// a new one makes room by `eviction` first and takes `new_size()`. Returns the
    /// owning node, or `None` when the ring is empty.
    pub(crate) fn store(
        &mut self,
        key: &str,
        Lookup { pos, slot: hint }: Lookup,
        ts: i64,
        eviction: Eviction,
        new_size: impl FnOnce() -> i64,
        expiry: i64,
    ) -> Option<NodeIdx> {
        debug_assert_eq!(pos, self.space.position(key));
        let (node, vnode) = self.ring.route_vnode(pos)?;
        if dead_by(expiry, self.latest) {
            // Dead on arrival (a timestamp older than the ring's clock, a TTL already
            // run out): it takes no room, so it evicts nothing, and a stored key it
            // refreshes dies now.
            if let Some(slot) = self.placement.find(key) {
                self.placement.remove(slot);
            }
            return Some(node);
        }
        let limit = self.limit(node);
        let vnodes = &self.ring.info(node).vnode_ids;
        let mut evicted = 0;
        // Every stored key sits on its routed node, so "already here" is "stored".
        let stored = self.placement.find_or_insert_with(key, hint, |placement| {
            if limit != UNLIMITED {
                evicted = make_room(placement, (node, vnodes), limit, eviction);
            }
            (pos, (node, vnode), ts, new_size(), expiry)
        });
        self.evictions += evicted;
        if let Some(slot) = stored {
            self.placement.touch(slot, ts);
            self.placement.set_expiry(slot, expiry);
        }
        Some(node)
    }

    pub(crate) fn evict_lru(&mut self, node: NodeIdx) -> Option<Item> {
        let victim = self
            .placement
            .lru_victim(node, &self.ring.info(node).vnode_ids)?;
        self.evictions += 1;
        Some(self.placement.remove(victim))
    }

    pub(crate) fn remove_key(&mut self, key: &str) -> Option<Item> {
        let slot: Slot = self.placement.find(key)?;
        Some(self.placement.remove(slot))
    }

    /// Where `key` is, as seen at `timestamp` (an item dead by then is not there).
    pub(crate) fn locate(&self, key: &str, timestamp: i64) -> Option<Location> {
        let slot = self.placement.find(key)?;
        let (item, expiry) = (self.placement.item(slot), self.placement.expiry(slot));
        if dead_by(expiry, timestamp) {
            return None;
        }
        Some(Location {
            node: self.ring.name(item.node).to_owned(),
            last_access: item.access,
            size: item.size,
            expires_at: (expiry != NEVER).then_some(expiry),
        })
    }

    /// `"name(load)"` for every node, by load descending then name, sliced like
    /// Python's `items[:n]` (a negative `n` drops the last `|n|`).
    pub(crate) fn top(&self, n: i64, load: impl Fn(NodeIdx) -> i64) -> Vec<String> {
        let mut loads: Vec<(i64, &str)> = self
            .ring
            .nodes()
            .map(|(name, idx)| (load(idx), name))
            .collect();
        let len = loads.len() as i64;
        let take = if n >= 0 { n.min(len) } else { (len + n).max(0) } as usize;
        if take > 0 && take < loads.len() {
            // Only the first `take` need sorting: partition them to the front first.
            loads.select_nth_unstable_by(take - 1, rank);
        }
        loads.truncate(take);
        loads.sort_unstable_by(rank);
        loads
            .into_iter()
            .map(|(load, name)| format!("{name}({load})"))
            .collect()
    }
}

/// Evicts `node`'s LRU items until a new one fits; answers how many it evicted.
fn make_room(
    placement: &mut Placement,
    (node, vnodes): (NodeIdx, &[VnodeId]),
    limit: i64,
    eviction: Eviction,
) -> u64 {
    let evict = |placement: &mut Placement| {
        let victim = placement.lru_victim(node, vnodes)?;
        Some(placement.remove(victim))
    };
    let mut evicted = 0;
    match eviction {
        Eviction::AtMostOne => {
            if placement.load(node).count >= u64::try_from(limit).unwrap_or(0)
                && evict(placement).is_some()
            {
                evicted += 1;
            }
        }
        Eviction::UntilFits { incoming } => {
            while placement.load(node).size + i128::from(incoming) > i128::from(limit) {
                if evict(placement).is_none() {
                    break;
                }
                evicted += 1;
            }
        }
    }
    evicted
}

fn rank(a: &(i64, &str), b: &(i64, &str)) -> std::cmp::Ordering {
    b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Namespace {
        /// Every stored key sits on the node its position routes to, and the per-node
        /// counters and LRU victims agree with a full recount.
        fn assert_consistent(&mut self) {
            let mut counts = std::collections::BTreeMap::<NodeIdx, (u64, i128)>::new();
            let mut oldest = std::collections::BTreeMap::<NodeIdx, (i64, u64)>::new();
            for item in self.placement.in_insertion_order() {
                assert_eq!(self.ring.route(item.pos), Some(item.node), "{}", item.key);
                assert_eq!(
                    self.placement
                        .find(&item.key)
                        .map(|s| self.placement.item(s).seq),
                    Some(item.seq)
                );
                let c = counts.entry(item.node).or_default();
                c.0 += 1;
                c.1 += i128::from(item.size);
                let o = oldest.entry(item.node).or_insert((item.access, item.seq));
                *o = (*o).min((item.access, item.seq));
            }
            let ring = &self.ring;
            self.placement
                .assert_lists_match(|pos| ring.route_vnode(pos));
            let nodes: Vec<NodeIdx> = self.ring.nodes().map(|(_, idx)| idx).collect();
            for idx in nodes {
                let load = self.placement.load(idx);
                let want = counts.get(&idx).copied().unwrap_or_default();
                assert_eq!((load.count, load.size), want);
                let victim = self
                    .placement
                    .lru_victim(idx, &self.ring.info(idx).vnode_ids)
                    .map(|s| {
                        let item = self.placement.item(s);
                        (item.access, item.seq)
                    });
                assert_eq!(victim, oldest.get(&idx).copied());
                // Reads ahead of the clock: the sums by expiry agree with a scan.
                for ahead in [1, 100, 1_000, 5_000, i64::MAX / 2] {
                    let at = self.latest.saturating_add(ahead);
                    let load = self.placement.load(idx);
                    let (mut count, mut size) = (load.count as i64, load.size);
                    for item in self.placement.dying_between(self.latest, at) {
                        if item.node == idx {
                            count -= 1;
                            size -= i128::from(item.size);
                        }
                    }
                    assert_eq!(self.load_at(idx, at), (count, size), "{ahead} ms ahead");
                    assert_eq!(self.loads_at(at)[&idx], (count, size), "{ahead} ms ahead");
                }
            }
        }
    }

    #[test]
    fn many_keys_stay_consistent_through_topology_changes_and_eviction() {
        for space in [PositionSpace::U64, PositionSpace::Drill] {
            let mut ns = Namespace::new(space);
            let mut state = 12345u64;
            let mut next = |n: u64| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) % n
            };
            for round in 0..40 {
                match next(4) {
                    0 => {
                        ns.add_with_replicas(&format!("n{}", next(12)), next(6) as i64);
                    }
                    1 => {
                        ns.remove(&format!("n{}", next(12)));
                    }
                    2 => {
                        ns.set_limit(&format!("n{}", next(12)), next(400) as i64 - 1);
                    }
                    3 => {
                        let (from, to) = (format!("n{}", next(12)), format!("n{}", next(12)));
                        ns.merge(&from, &to);
                    }
                    _ => {}
                }
                for _ in 0..600 {
                    let key = format!("k{}", next(3000));
                    let ts = round * 1000 + next(1500) as i64;
                    let eviction = if next(2) == 0 {
                        Eviction::AtMostOne
                    } else {
                        Eviction::UntilFits {
                            incoming: next(5) as i64,
                        }
                    };
                    match next(10) {
                        0 => {
                            ns.remove_key(&key);
                        }
                        1 => {
                            if let Some(idx) = ns.node(&format!("n{}", next(12))) {
                                ns.evict_lru(idx);
                            }
                        }
                        _ => {
                            // Some keys expire; the clock moves with the commands.
                            let expiry = if next(4) == 0 {
                                ts + next(3000) as i64
                            } else {
                                NEVER
                            };
                            ns.advance(ts);
                            ns.store(
                                &key,
                                Lookup::position(ns.space.position(&key)),
                                ts,
                                eviction,
                                || next(5) as i64,
                                expiry,
                            );
                            ns.purge();
                        }
                    }
                }
                ns.assert_consistent();
            }
            assert!(ns.placement.len() > 0, "the test stored something");
        }
    }
}
