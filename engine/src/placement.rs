//! Where the stored keys are: the items, their per-node loads, and each node's LRU order.
//!
//! Items live in a slab and are found through a hash index (`index`) of their slots
//! beside 32 bits of their key's hash, so growing the index reads no item and a lookup
//! reads one item, whose line holds a short key's bytes. A batch looks its keys up
//! together ([`Placement::find_many`]). Beside the slab, each change costs O(1) or
//! O(log n):
//! - per virtual node, the list of items it owns: storing a key appends to the owner's
//!   list, and a topology change visits only the lists of the virtual nodes whose arcs
//!   changed (the new node's successors when adding, the removed node's when removing);
//! - per node, the LRU order by `(last access, insertion seq)`: the smallest is the
//!   victim, ties to the earliest inserted, as the drill's dict order. It is built on
//!   the node's first victim request, from its virtual nodes' lists (one sort), and kept
//!   from then on: a node nothing is ever evicted from pays no memory for it (a third
//!   of the engine's bytes per key at 10M keys, issue 15). Once built, it is a queue for
//!   entries that arrive in order (timestamps that never go back: the common case, O(1)
//!   and sequential in memory) plus a min-heap for those that arrive out of order.
//!   Entries are invalidated lazily (an access adds a new entry; the old one is skipped
//!   when it surfaces), and a node whose entries outnumber twice its items is compacted;
//! - per node, the key count and the summed size;
//! - the items that expire, by expiry: a command purges the dead ones in order; per
//!   node, their sums by expiry (`expiry_sums`), so a read at a later time counts those
//!   that died since in bounded steps.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::hash::BuildHasher;
use std::num::NonZeroU32;

use super::digest::{self, Sum};
use super::expiry_sums::ExpirySums;
use super::index::SlotIndex;
use super::item::{Item, Slot, NEVER};
use super::ring::{NodeIdx, VnodeId};
use super::slab::Slab;

/// `(access, seq, slot)`: ordered as the LRU order.
type LruEntry = (i64, u64, Slot);

#[derive(Clone, Debug, Default)]
pub(crate) struct NodeLoad {
    pub(crate) count: u64,
    pub(crate) size: i128,
    lru: Lru,
    /// The node's expiring items by expiry, for reads at a later timestamp.
    pub(crate) expiring: ExpirySums,
}

/// One node's LRU entries, some of them stale (see the module docs).
#[derive(Clone, Debug, Default)]
struct Lru {
    /// Whether the entries are kept; until then there are none.
    built: bool,
    /// Ascending: entries that were not older than the newest entry when added.
    in_order: VecDeque<LruEntry>,
    out_of_order: BinaryHeap<Reverse<LruEntry>>,
}

impl Lru {
    fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    #[inline]
    fn push(&mut self, entry: LruEntry) {
        if !self.built {
            return;
        }
        match self.in_order.back() {
            Some(&newest) if entry < newest => self.out_of_order.push(Reverse(entry)),
            _ => self.in_order.push_back(entry),
        }
    }

    /// The smallest entry for which `current` holds; stale ones met on the way are dropped.
    fn first(&mut self, current: impl Fn(LruEntry) -> bool) -> Option<LruEntry> {
        loop {
            let queued = self.in_order.front().copied();
            let heaped = self.out_of_order.peek().map(|&Reverse(e)| e);
            let (entry, from_queue) = match (queued, heaped) {
                (Some(q), Some(h)) if h < q => (h, false),
                (Some(q), _) => (q, true),
                (None, Some(h)) => (h, false),
                (None, None) => return None,
            };
            if current(entry) {
                return Some(entry);
            }
            if from_queue {
                self.in_order.pop_front();
            } else {
                self.out_of_order.pop();
            }
        }
    }

    /// Keeps only the entries for which `current` holds, all in order.
    fn compact(&mut self, current: impl Fn(LruEntry) -> bool) {
        let mut entries: Vec<LruEntry> = self.in_order.drain(..).collect();
        entries.extend(self.out_of_order.drain().map(|Reverse(e)| e));
        entries.retain(|&e| current(e));
        // An item that left the node and came back has two equal entries: keep one.
        entries.sort_unstable();
        entries.dedup();
        self.in_order = entries.into();
    }
}

/// Where to put an item: its node and the virtual node owning its position.
pub(crate) type Owner = (NodeIdx, VnodeId);

#[derive(Clone, Debug, Default)]
pub(crate) struct Placement {
    items: Slab,
    index: SlotIndex,
    hasher: foldhash::quality::RandomState,
    /// Per virtual node id: the slots it owns, in no particular order.
    lists: Vec<Vec<Slot>>,
    loads: Vec<NodeLoad>,
    next_seq: u64,
    /// `(expiry, seq, slot)` of every item that expires (their expiries, by slot, are
    /// in the slab's chunks).
    expiring: BTreeSet<(i64, u64, Slot)>,
    /// The sum of the items' digest facts (see `digest`), kept by every change below.
    pub(crate) digest: Sum,
}

/// An item's digest fact.
#[inline]
fn fact(item: &Item, expiry: i64) -> u128 {
    digest::item(&item.key, item.access, item.size, expiry, item.seq)
}

impl Placement {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    #[inline]
    fn hash32(&self, key: &str) -> NonZeroU32 {
        NonZeroU32::new((self.hasher.hash_one(key) >> 32) as u32).unwrap_or(NonZeroU32::MIN)
    }

    pub(crate) fn find(&self, key: &str) -> Option<Slot> {
        let h = self.hash32(key);
        self.index.find(h, |slot| self.holds(slot, key))
    }

    /// Asks the CPU to start loading where `key`'s index entry is (a hint: no effect on
    /// results), so that the miss overlaps whatever comes before the lookup.
    pub(crate) fn prefetch(&self, key: &str) {
        self.index.prefetch(self.hash32(key));
    }

    /// [`Self::find`] of every key, in order. The index entries of all the keys are
    /// prefetched first, then the items they point to, then the keys are compared, so
    /// the cache misses of different keys overlap instead of adding up.
    pub(crate) fn find_many(&self, keys: &[&str]) -> Vec<Option<Slot>> {
        let hashes: Vec<NonZeroU32> = keys.iter().map(|key| self.hash32(key)).collect();
        for &h in &hashes {
            self.index.prefetch(h);
        }
        // The first slot indexed under each hash: almost always the key's, if any.
        let candidates: Vec<Option<Slot>> = hashes
            .iter()
            .map(|&h| {
                let slot = self.index.find(h, |_| true);
                if let Some(slot) = slot {
                    self.items.prefetch(slot);
                }
                slot
            })
            .collect();
        keys.iter()
            .zip(hashes)
            .zip(candidates)
            .map(|((key, h), candidate)| match candidate {
                Some(slot) if self.holds(slot, key) => Some(slot),
                // Another key with the same 32 hash bits came first; or none at all.
                Some(_) => self.index.find(h, |slot| self.holds(slot, key)),
                None => None,
            })
            .collect()
    }

    /// Whether `slot` holds `key` now.
    #[inline]
    fn holds(&self, slot: Slot, key: &str) -> bool {
        self.items[slot]
            .as_ref()
            .is_some_and(|item| item.key == key)
    }

    pub(crate) fn item(&self, slot: Slot) -> &Item {
        item_at(&self.items, slot)
    }

    pub(crate) fn load(&self, node: NodeIdx) -> &NodeLoad {
        &self.loads[node as usize]
    }

    /// Makes room in the per-node and per-vnode tables after a node was registered.
    pub(crate) fn node_added(&mut self, node: NodeIdx, vnode_id_bound: usize) {
        let i = node as usize;
        if self.loads.len() <= i {
            self.loads.resize_with(i + 1, NodeLoad::default);
        }
        // A reused node slot may still hold stale LRU entries; they are all invalid.
        debug_assert_eq!(self.loads[i].count, 0, "a reused node slot starts empty");
        self.loads[i] = NodeLoad::default();
        if self.lists.len() < vnode_id_bound {
            self.lists.resize_with(vnode_id_bound, Vec::new);
        }
    }

    /// The slot of `key` if it is stored. If not, stores the `(pos, owner, access, size)`
    /// that `make` returns (it may first evict through the `&mut Self` it gets) and
    /// answers `None`. `hint` is where an earlier lookup found the key: used only if the
    /// key is still there, which saves the second lookup.
    pub(crate) fn find_or_insert_with(
        &mut self,
        key: &str,
        hint: Option<Slot>,
        make: impl FnOnce(&mut Self) -> (u64, Owner, i64, i64, i64),
    ) -> Option<Slot> {
        if let Some(slot) = hint.filter(|&slot| self.holds(slot, key)) {
            return Some(slot);
        }
        let h = self.hash32(key);
        if let Some(slot) = self.index.find(h, |slot| self.holds(slot, key)) {
            return Some(slot);
        }
        let (pos, owner, access, size, expiry) = make(self);
        let seq = self.take_seq();
        self.insert_hashed(h, key, pos, owner, access, size, expiry, seq);
        None
    }

    pub(crate) fn insert(
        &mut self,
        key: &str,
        pos: u64,
        owner: Owner,
        access: i64,
        size: i64,
        expiry: i64,
    ) -> Slot {
        let h = self.hash32(key);
        let seq = self.take_seq();
        self.insert_hashed(h, key, pos, owner, access, size, expiry, seq)
    }

    /// [`Self::insert`] with the item's insertion seq as a snapshot carries it; `false`
    /// (nothing stored) if the key is stored already.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_with_seq(
        &mut self,
        key: &str,
        pos: u64,
        owner: Owner,
        access: i64,
        size: i64,
        expiry: i64,
        seq: u64,
    ) -> bool {
        let h = self.hash32(key);
        if self.index.find(h, |slot| self.holds(slot, key)).is_some() {
            return false;
        }
        self.insert_hashed(h, key, pos, owner, access, size, expiry, seq);
        true
    }

    /// The next insertion seq, as the digest header and a snapshot carry it.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub(crate) fn set_next_seq(&mut self, next_seq: u64) {
        self.next_seq = next_seq;
    }

    /// Room for `additional` more keys in the index (a snapshot's count, capped by the
    /// caller), so a restore does not rehash as it grows.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.index.reserve(additional);
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_hashed(
        &mut self,
        hash32: NonZeroU32,
        key: &str,
        pos: u64,
        (node, vnode): Owner,
        access: i64,
        size: i64,
        expiry: i64,
        seq: u64,
    ) -> Slot {
        let list = &mut self.lists[vnode as usize];
        let list_pos = u32::try_from(list.len()).expect("fewer than 2^32 items per virtual node");
        let item = Item {
            key: key.into(),
            pos,
            access,
            seq,
            size,
            node,
            vnode,
            list_pos,
            hash32,
        };
        self.digest = self.digest.wrapping_add(fact(&item, expiry));
        let slot = self.items.insert(item, expiry);
        list.push(slot);
        if expiry != NEVER {
            self.expiring.insert((expiry, seq, slot));
        }
        self.index.insert(hash32, slot);
        let load = &mut self.loads[node as usize];
        if expiry != NEVER {
            load.expiring.add(expiry, size);
        }
        load.count += 1;
        load.size += i128::from(size);
        load.lru.push((access, seq, slot));
        slot
    }

    /// Records an access: the item keeps its node, size and insertion order.
    pub(crate) fn touch(&mut self, slot: Slot, access: i64) {
        if item_at(&self.items, slot).access == access {
            return;
        }
        let expiry = self.items.expiry(slot);
        let item = self.items.get_mut(slot).as_mut().expect("live slot");
        let old = fact(item, expiry);
        item.access = access;
        self.digest = self
            .digest
            .wrapping_sub(old)
            .wrapping_add(fact(item, expiry));
        let (node, seq) = (item.node, item.seq);
        self.loads[node as usize].lru.push((access, seq, slot));
        self.compact_if_stale(node);
    }

    /// Sets when an item dies ([`NEVER`]: never).
    pub(crate) fn set_expiry(&mut self, slot: Slot, expiry: i64) {
        let old = self.expiry(slot);
        if old == expiry {
            return;
        }
        let item = item_at(&self.items, slot);
        let (seq, node, size) = (item.seq, item.node, item.size);
        self.digest = self
            .digest
            .wrapping_sub(fact(item, old))
            .wrapping_add(fact(item, expiry));
        let sums = &mut self.loads[node as usize].expiring;
        if old != NEVER {
            self.expiring.remove(&(old, seq, slot));
            sums.remove(old, size);
        }
        if expiry != NEVER {
            self.expiring.insert((expiry, seq, slot));
            sums.add(expiry, size);
        }
        self.items.set_expiry(slot, expiry);
    }

    /// When the item in `slot` dies ([`NEVER`]: never).
    pub(crate) fn expiry(&self, slot: Slot) -> i64 {
        self.items.expiry(slot)
    }

    /// The items dead at `now` (expiry ≤ `now`), earliest expiry first.
    pub(crate) fn dead_at(&self, now: i64) -> Vec<Slot> {
        // The common case first: nothing expires, or nothing yet.
        if self
            .expiring
            .first()
            .is_none_or(|&(expiry, _, _)| expiry > now)
        {
            return Vec::new();
        }
        self.expiring
            .range(..=(now, u64::MAX, Slot::MAX))
            .map(|&(_, _, slot)| slot)
            .collect()
    }

    /// The items that die after `after` and at or before `until`, earliest first (lazily:
    /// a caller may stop early).
    pub(crate) fn dying_between(&self, after: i64, until: i64) -> impl Iterator<Item = &Item> {
        let range = (until > after && !self.expiring.is_empty()).then(|| {
            self.expiring
                .range((after + 1, 0, 0)..=(until, u64::MAX, Slot::MAX))
        });
        range
            .into_iter()
            .flatten()
            .map(|&(_, _, slot)| item_at(&self.items, slot))
    }

    pub(crate) fn remove(&mut self, slot: Slot) -> Item {
        self.unlist(slot);
        let (item, expiry) = self.items.remove(slot).expect("live slot");
        if expiry != NEVER {
            self.expiring.remove(&(expiry, item.seq, slot));
        }
        self.digest = self.digest.wrapping_sub(fact(&item, expiry));
        self.index.remove(item.hash32, slot);
        let load = &mut self.loads[item.node as usize];
        if expiry != NEVER {
            load.expiring.remove(expiry, item.size);
        }
        load.count -= 1;
        load.size -= i128::from(item.size);
        self.compact_if_stale(item.node);
        item
    }

    /// The node's least recently used item (ties: the earliest inserted).
    /// `vnodes`: the node's virtual nodes (whose lists hold its items).
    pub(crate) fn lru_victim(&mut self, node: NodeIdx, vnodes: &[VnodeId]) -> Option<Slot> {
        let items = &self.items;
        let lru = &mut self.loads[node as usize].lru;
        if !lru.built {
            let mut entries: Vec<LruEntry> = vnodes
                .iter()
                .filter_map(|&v| self.lists.get(v as usize))
                .flatten()
                .map(|&slot| {
                    let item = item_at(items, slot);
                    (item.access, item.seq, slot)
                })
                .collect();
            entries.sort_unstable();
            lru.in_order = entries.into();
            lru.built = true;
        }
        self.loads[node as usize]
            .lru
            .first(|entry| is_current(items, node, entry))
            .map(|(_, _, slot)| slot)
    }

    /// Re-routes every item of the given virtual nodes' lists with `route`: an item keeps
    /// its list if `route` names the same virtual node, moves if it names another, and is
    /// removed and returned (in insertion order) if the ring has no position left. Moved
    /// items keep their access time, size and insertion order.
    pub(crate) fn reroute(
        &mut self,
        vnodes: &[VnodeId],
        route: impl Fn(u64) -> Option<Owner>,
    ) -> Vec<Item> {
        let mut dropped = Vec::new();
        for &vnode in vnodes {
            let Some(list) = self.lists.get(vnode as usize) else {
                continue;
            };
            let moves: Vec<(Slot, Option<Owner>)> = list
                .iter()
                .filter_map(|&slot| {
                    let item = item_at(&self.items, slot);
                    let target = route(item.pos);
                    (target != Some((item.node, item.vnode))).then_some((slot, target))
                })
                .collect();
            for (slot, target) in moves {
                match target {
                    Some(owner) => self.move_to(slot, owner),
                    None => dropped.push(self.remove(slot)),
                }
            }
        }
        dropped.sort_unstable_by_key(|item| item.seq);
        dropped
    }

    fn move_to(&mut self, slot: Slot, (node, vnode): Owner) {
        self.unlist(slot);
        let list = &mut self.lists[vnode as usize];
        let list_pos = u32::try_from(list.len()).expect("fewer than 2^32 items per virtual node");
        list.push(slot);
        let item = self.items.get_mut(slot).as_mut().expect("live slot");
        item.vnode = vnode;
        item.list_pos = list_pos;
        let from = std::mem::replace(&mut item.node, node);
        if from == node {
            return;
        }
        let (access, seq, size) = (item.access, item.seq, item.size);
        let expiry = self.items.expiry(slot);
        let old = &mut self.loads[from as usize];
        old.count -= 1;
        old.size -= i128::from(size);
        if expiry != NEVER {
            old.expiring.remove(expiry, size);
        }
        let new = &mut self.loads[node as usize];
        new.count += 1;
        new.size += i128::from(size);
        if expiry != NEVER {
            new.expiring.add(expiry, size);
        }
        new.lru.push((access, seq, slot));
        self.compact_if_stale(from);
        self.compact_if_stale(node);
    }

    /// Takes `slot` off its virtual node's list (the list's last slot fills the gap).
    fn unlist(&mut self, slot: Slot) {
        let item = item_at(&self.items, slot);
        let (vnode, pos) = (item.vnode as usize, item.list_pos as usize);
        let list = &mut self.lists[vnode];
        debug_assert_eq!(list[pos], slot);
        list.swap_remove(pos);
        if let Some(&moved) = list.get(pos) {
            self.items
                .get_mut(moved)
                .as_mut()
                .expect("live slot")
                .list_pos = pos as u32;
        }
    }

    /// Live items in insertion order (the drill's dict order).
    #[cfg(test)]
    pub(crate) fn in_insertion_order(&self) -> Vec<&Item> {
        let mut items: Vec<&Item> = self.items.iter().collect();
        items.sort_unstable_by_key(|item| item.seq);
        items
    }

    /// Live items with their expiry, in insertion order.
    pub(crate) fn in_insertion_order_with_expiry(&self) -> Vec<(&Item, i64)> {
        let mut items: Vec<(&Item, i64)> = self
            .items
            .iter_slots()
            .map(|(slot, item)| (item, self.expiry(slot)))
            .collect();
        items.sort_unstable_by_key(|(item, _)| item.seq);
        items
    }

    /// The items' chunks, shared with the live placement (O(chunks); see `slab`).
    pub(crate) fn freeze(&self) -> Vec<std::sync::Arc<super::slab::Chunk>> {
        self.items.freeze()
    }

    /// [`Self::digest`] computed from scratch.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn recomputed_digest(&self) -> Sum {
        self.items.iter_slots().fold(0, |sum: Sum, (slot, item)| {
            sum.wrapping_add(fact(item, self.expiry(slot)))
        })
    }

    /// Drops a node's invalid LRU entries once they outnumber its items.
    fn compact_if_stale(&mut self, node: NodeIdx) {
        let load = &mut self.loads[node as usize];
        if !load.lru.built || (load.lru.len() as u64) <= 2 * load.count + 32 {
            return;
        }
        let items = &self.items;
        load.lru.compact(|entry| is_current(items, node, entry));
    }
}

#[cfg(test)]
impl Placement {
    /// Every item is on the list of the virtual node that owns its position, at the
    /// place it records, and the lists hold nothing else.
    pub(crate) fn assert_lists_match(&self, route: impl Fn(u64) -> Option<Owner>) {
        let mut listed = 0;
        for (vnode, list) in self.lists.iter().enumerate() {
            for (pos, &slot) in list.iter().enumerate() {
                let item = item_at(&self.items, slot);
                assert_eq!((item.vnode as usize, item.list_pos as usize), (vnode, pos));
                assert_eq!(
                    route(item.pos),
                    Some((item.node, item.vnode)),
                    "{}",
                    item.key
                );
                listed += 1;
            }
        }
        assert_eq!(listed, self.len());
    }
}

/// Whether an LRU entry still describes the item's current access time and node.
fn is_current(items: &Slab, node: NodeIdx, (access, seq, slot): LruEntry) -> bool {
    items[slot]
        .as_ref()
        .is_some_and(|item| item.seq == seq && item.access == access && item.node == node)
}

fn item_at(items: &Slab, slot: Slot) -> &Item {
    items[slot].as_ref().expect("live slot")
}
