//! Where the stored keys are: the items, their per-node loads, and each node's LRU order.
//!
//! Items live in a slab and are found through a hash index that stores only slot numbers
//! (the key's bytes are kept once). Beside the slab, each change costs O(1) or O(log n):
//! - position buckets: every item is on a doubly linked list of its position bucket, so
//!   a topology change visits only the buckets of the arcs whose owner changed;
//! - per node, the LRU order by `(last access, insertion seq)`: the smallest is the
//!   victim, ties to the earliest inserted, as the drill's dict order. It is a queue for
//!   entries that arrive in order (timestamps that never go back: the common case, O(1)
//!   and sequential in memory) plus a min-heap for those that arrive out of order.
//!   Entries are invalidated lazily (an access adds a new entry; the old one is skipped
//!   when it surfaces), and a node whose entries outnumber twice its items is compacted;
//! - per node, the key count and the summed size.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::ring::NodeIdx;
use super::slab::Slab;
use super::PositionSpace;

pub(crate) type Slot = u32;

const NIL: Slot = Slot::MAX;

#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) key: Box<str>,
    pub(crate) pos: u64,
    pub(crate) access: i64,
    /// Insertion order: kept when the item is overwritten or moves, renewed when it is
    /// deleted and stored again (the drill's dict order).
    pub(crate) seq: u64,
    pub(crate) size: i64,
    pub(crate) node: NodeIdx,
    /// Neighbours on the position bucket's list.
    prev: Slot,
    next: Slot,
}

/// `(access, seq, slot)`: ordered as the LRU order.
type LruEntry = (i64, u64, Slot);

#[derive(Clone, Debug, Default)]
pub(crate) struct NodeLoad {
    pub(crate) count: u64,
    pub(crate) size: i128,
    lru: Lru,
}

/// One node's LRU entries, some of them stale (see the module docs).
#[derive(Clone, Debug, Default)]
struct Lru {
    /// Ascending: entries that were not older than the newest entry when added.
    in_order: VecDeque<LruEntry>,
    out_of_order: BinaryHeap<Reverse<LruEntry>>,
}

impl Lru {
    fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    fn push(&mut self, entry: LruEntry) {
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

#[derive(Clone, Debug, Default)]
pub(crate) struct Placement {
    space: PositionSpace,
    items: Slab,
    index: HashTable<Slot>,
    hasher: foldhash::quality::RandomState,
    /// Head slot of each position bucket's list.
    buckets: Vec<Slot>,
    /// `u64` space: bucket = position >> shift. Drill space: bucket = position.
    shift: u32,
    loads: Vec<NodeLoad>,
    next_seq: u64,
}

/// Smallest and largest bucket table in the `u64` space, as powers of two.
const MIN_BUCKET_BITS: u32 = 4;
const MAX_BUCKET_BITS: u32 = 22;
/// Items per bucket before the `u64` bucket table doubles.
const BUCKET_LOAD: usize = 8;

impl Placement {
    pub(crate) fn new(space: PositionSpace) -> Self {
        let (buckets, shift) = match space {
            PositionSpace::Drill => (100, 0),
            PositionSpace::U64 => (1 << MIN_BUCKET_BITS, 64 - MIN_BUCKET_BITS),
        };
        Placement {
            space,
            buckets: vec![NIL; buckets],
            shift,
            ..Placement::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn find(&self, key: &str) -> Option<Slot> {
        let hash = self.hasher.hash_one(key);
        let items = &self.items;
        self.index
            .find(hash, |&slot| &*item_at(items, slot).key == key)
            .copied()
    }

    pub(crate) fn item(&self, slot: Slot) -> &Item {
        item_at(&self.items, slot)
    }

    pub(crate) fn load(&self, node: NodeIdx) -> &NodeLoad {
        &self.loads[node as usize]
    }

    /// Makes room in the per-node tables for a node that was just registered.
    pub(crate) fn node_added(&mut self, node: NodeIdx) {
        let i = node as usize;
        if self.loads.len() <= i {
            self.loads.resize_with(i + 1, NodeLoad::default);
        }
        // A reused node slot may still hold stale heap entries; they are all invalid.
        debug_assert_eq!(self.loads[i].count, 0, "a reused node slot starts empty");
        self.loads[i] = NodeLoad::default();
    }

    /// The slot of `key` if it is stored. If not, stores the `(pos, node, access, size)`
    /// that `make` returns (it may first evict through the `&mut Self` it gets) and
    /// answers `None`. The key is hashed once either way.
    pub(crate) fn find_or_insert_with(
        &mut self,
        key: &str,
        make: impl FnOnce(&mut Self) -> (u64, NodeIdx, i64, i64),
    ) -> Option<Slot> {
        let hash = self.hasher.hash_one(key);
        if let Some(&slot) = self
            .index
            .find(hash, |&slot| &*item_at(&self.items, slot).key == key)
        {
            return Some(slot);
        }
        let (pos, node, access, size) = make(self);
        self.insert_hashed(hash, key, pos, node, access, size);
        None
    }

    pub(crate) fn insert(
        &mut self,
        key: &str,
        pos: u64,
        node: NodeIdx,
        access: i64,
        size: i64,
    ) -> Slot {
        let hash = self.hasher.hash_one(key);
        self.insert_hashed(hash, key, pos, node, access, size)
    }

    fn insert_hashed(
        &mut self,
        hash: u64,
        key: &str,
        pos: u64,
        node: NodeIdx,
        access: i64,
        size: i64,
    ) -> Slot {
        let seq = self.next_seq;
        self.next_seq += 1;
        let item = Item {
            key: key.into(),
            pos,
            access,
            seq,
            size,
            node,
            prev: NIL,
            next: NIL,
        };
        let slot = self.items.insert(item);
        let (items, hasher) = (&self.items, &self.hasher);
        self.index
            .insert_unique(hash, slot, |&s| hasher.hash_one(&*item_at(items, s).key));
        self.link(slot);
        let load = &mut self.loads[node as usize];
        load.count += 1;
        load.size += i128::from(size);
        load.lru.push((access, seq, slot));
        self.grow_buckets_if_crowded();
        slot
    }

    /// Records an access: the item keeps its node, size and insertion order.
    pub(crate) fn touch(&mut self, slot: Slot, access: i64) {
        let item = self.items[slot].as_mut().expect("live slot");
        if item.access == access {
            return;
        }
        item.access = access;
        let (node, seq) = (item.node, item.seq);
        self.loads[node as usize].lru.push((access, seq, slot));
        self.compact_if_stale(node);
    }

    pub(crate) fn remove(&mut self, slot: Slot) -> Item {
        self.unlink(slot);
        let item = self.items.remove(slot).expect("live slot");
        let hash = self.hasher.hash_one(&*item.key);
        self.index
            .find_entry(hash, |&s| s == slot)
            .expect("indexed slot")
            .remove();
        let load = &mut self.loads[item.node as usize];
        load.count -= 1;
        load.size -= i128::from(item.size);
        self.compact_if_stale(item.node);
        item
    }

    /// The node's least recently used item (ties: the earliest inserted).
    pub(crate) fn lru_victim(&mut self, node: NodeIdx) -> Option<Slot> {
        let items = &self.items;
        self.loads[node as usize]
            .lru
            .first(|entry| is_current(items, node, entry))
            .map(|(_, _, slot)| slot)
    }

    /// Re-routes the items whose position lies in one of `arcs` (inclusive ranges).
    /// Items `route` sends nowhere are removed and returned; the others keep their
    /// access time, size and insertion order.
    pub(crate) fn reroute(
        &mut self,
        arcs: &[(u64, u64)],
        route: impl Fn(u64) -> Option<NodeIdx>,
    ) -> Vec<Item> {
        let mut moves: Vec<(Slot, Option<NodeIdx>)> = Vec::new();
        for &(lo, hi) in arcs {
            if lo > hi {
                continue;
            }
            let (first, last) = (self.bucket(lo), self.bucket(hi).min(self.buckets.len() - 1));
            for b in first..=last {
                let mut slot = self.buckets[b];
                while slot != NIL {
                    let item = item_at(&self.items, slot);
                    if (lo..=hi).contains(&item.pos) {
                        let target = route(item.pos);
                        if target != Some(item.node) {
                            moves.push((slot, target));
                        }
                    }
                    slot = item.next;
                }
            }
        }
        let mut dropped = Vec::new();
        for (slot, target) in moves {
            match target {
                Some(node) => self.move_to(slot, node),
                None => dropped.push(self.remove(slot)),
            }
        }
        dropped
    }

    fn move_to(&mut self, slot: Slot, node: NodeIdx) {
        let item = self.items[slot].as_mut().expect("live slot");
        let from = std::mem::replace(&mut item.node, node);
        let (access, seq, size) = (item.access, item.seq, i128::from(item.size));
        let old = &mut self.loads[from as usize];
        old.count -= 1;
        old.size -= size;
        let new = &mut self.loads[node as usize];
        new.count += 1;
        new.size += size;
        new.lru.push((access, seq, slot));
        self.compact_if_stale(from);
        self.compact_if_stale(node);
    }

    /// Removes every item (the ring has no positions left) and returns them in
    /// insertion order.
    pub(crate) fn drain(&mut self) -> Vec<Item> {
        let mut items = self.items.take_all();
        items.sort_unstable_by_key(|item| item.seq);
        let fresh = Placement {
            hasher: std::mem::take(&mut self.hasher),
            loads: vec![NodeLoad::default(); self.loads.len()],
            ..Placement::new(self.space)
        };
        *self = fresh;
        items
    }

    /// Live items in insertion order (the drill's dict order).
    pub(crate) fn in_insertion_order(&self) -> Vec<&Item> {
        let mut items: Vec<&Item> = self.items.iter().collect();
        items.sort_unstable_by_key(|item| item.seq);
        items
    }

    #[inline]
    fn bucket(&self, pos: u64) -> usize {
        match self.space {
            PositionSpace::Drill => pos as usize,
            PositionSpace::U64 => (pos >> self.shift) as usize,
        }
    }

    fn link(&mut self, slot: Slot) {
        let b = self.bucket(item_at(&self.items, slot).pos);
        let head = self.buckets[b];
        if head != NIL {
            self.items[head].as_mut().expect("live slot").prev = slot;
        }
        let item = self.items[slot].as_mut().expect("live slot");
        (item.prev, item.next) = (NIL, head);
        self.buckets[b] = slot;
    }

    fn unlink(&mut self, slot: Slot) {
        let item = item_at(&self.items, slot);
        let (prev, next, b) = (item.prev, item.next, self.bucket(item.pos));
        match prev {
            NIL => self.buckets[b] = next,
            p => self.items[p].as_mut().expect("live slot").next = next,
        }
        if next != NIL {
            self.items[next].as_mut().expect("live slot").prev = prev;
        }
    }

    fn grow_buckets_if_crowded(&mut self) {
        if self.space != PositionSpace::U64
            || self.len() <= BUCKET_LOAD * self.buckets.len()
            || self.shift <= 64 - MAX_BUCKET_BITS
        {
            return;
        }
        self.shift -= 1;
        self.buckets = vec![NIL; self.buckets.len() * 2];
        for slot in 0..self.items.capacity() as Slot {
            if self.items[slot].is_some() {
                self.link(slot);
            }
        }
    }

    /// Drops a node's invalid heap entries once they outnumber its items.
    fn compact_if_stale(&mut self, node: NodeIdx) {
        let load = &mut self.loads[node as usize];
        if (load.lru.len() as u64) <= 2 * load.count + 32 {
            return;
        }
        let items = &self.items;
        load.lru.compact(|entry| is_current(items, node, entry));
    }
}

/// Whether a heap entry still describes the item's current access time and node.
fn is_current(items: &Slab, node: NodeIdx, (access, seq, slot): (i64, u64, Slot)) -> bool {
    items[slot]
        .as_ref()
        .is_some_and(|item| item.seq == seq && item.access == access && item.node == node)
}

fn item_at(items: &Slab, slot: Slot) -> &Item {
    items[slot].as_ref().expect("live slot")
}
