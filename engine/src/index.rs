//! The hash index from a key to its slab slot.
//!
//! Open addressing with linear probing over one array of 8-byte entries, each the upper
//! 32 bits of the key's hash beside the slot. Keeping the hash in the entry means growing
//! never reads an item, and a probe reads an item only when the hashes agree. A table of
//! its own rather than `hashbrown`'s: where a key's entry lives is a function of its hash
//! alone, so a batch can prefetch the entries of all its keys before it reads any, and
//! pay for their cache misses once, side by side.
//!
//! Growing is incremental: the table doubles into a new array and each later insert or
//! removal moves [`MOVE_PER_CALL`] places of the old one over, so no single call pays
//! for the whole table (at 7.3M keys, moving every entry at once stalled the apply for
//! about 300 ms). Until the move ends a lookup that misses in the new table probes the
//! old one too, where moved and removed places hold a tombstone: probes walk past it,
//! and nothing is ever shifted back behind the move's cursor.

use std::num::NonZeroU32;

use super::item::Slot;

/// An entry: `hash << 32 | (slot + 1)`; 0 is an empty place.
type Entry = u64;

const EMPTY: Entry = 0;

/// A place of the old table whose entry moved or was removed during a growth. Never a
/// real entry: those have a nonzero hash in their upper half.
const TOMBSTONE: Entry = 1;

/// Old-table places moved per insert or removal while growing. The new table (twice the
/// old) starts 7/16 full, so the move (old capacity / 32 calls) ends long before it could
/// need to grow again. Fewer per call spread the work thinner but keep the old table
/// longer, and every miss probes it too (7/8 full: long runs): at 8 per call a 10M-key
/// load took 30% longer; at 32 it takes as long as growing at once, and the slowest
/// batch of 5,000 stores at the 8M-place growth went from ~140 ms to ~25 ms.
const MOVE_PER_CALL: usize = 32;

/// The table grows past 7/8 full (linear probing stays short well below that).
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 8;

#[derive(Clone, Debug, Default)]
pub(crate) struct SlotIndex {
    entries: Vec<Entry>,
    /// Entries in both tables.
    len: usize,
    /// `64 - log2(entries.len())`: a hash's home place is its top bits.
    shift: u32,
    /// While growing, the table before: the entries not moved yet (empty otherwise).
    old: Vec<Entry>,
    old_shift: u32,
    /// Places of `old` before this one are moved.
    moved: usize,
}

#[inline]
fn entry(hash: NonZeroU32, slot: Slot) -> Entry {
    (u64::from(hash.get()) << 32) | (u64::from(slot) + 1)
}

#[inline]
fn entry_hash(entry: Entry) -> u32 {
    (entry >> 32) as u32
}

/// The hash an occupied entry was indexed under.
#[inline]
fn entry_hash_of(entry: Entry) -> NonZeroU32 {
    NonZeroU32::new(entry_hash(entry)).expect("indexed hashes are not 0")
}

#[inline]
fn entry_slot(entry: Entry) -> Slot {
    (entry as u32).wrapping_sub(1)
}

impl SlotIndex {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Where probing for `hash` starts: the top bits of the hash spread over 64 bits.
    #[inline]
    fn home(&self, hash: NonZeroU32) -> usize {
        home(hash, self.shift)
    }

    #[inline]
    fn next(&self, place: usize) -> usize {
        (place + 1) & (self.entries.len() - 1)
    }

    /// The slot of the key with `hash` for which `is_key` holds (it is asked only about
    /// slots whose entry has the same hash).
    #[inline]
    pub(crate) fn find(&self, hash: NonZeroU32, is_key: impl Fn(Slot) -> bool) -> Option<Slot> {
        if self.entries.is_empty() {
            return None;
        }
        probe(&self.entries, home(hash, self.shift), hash, &is_key).or_else(|| {
            if self.old.is_empty() {
                None
            } else {
                probe(&self.old, home(hash, self.old_shift), hash, &is_key)
            }
        })
    }

    /// Asks the CPU to start loading the place where probing for `hash` starts.
    #[inline]
    pub(crate) fn prefetch(&self, hash: NonZeroU32) {
        if let Some(e) = self.entries.get(self.home(hash)) {
            prefetch(e);
        }
        if let Some(e) = self.old.get(home(hash, self.old_shift)) {
            prefetch(e);
        }
    }

    /// Grows the table to hold `additional` more entries without growing again, at once
    /// (a bulk load, such as a snapshot's restore, pays for it up front).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let want = (self.len + additional) * MAX_LOAD_DEN / MAX_LOAD_NUM + 1;
        if want > self.entries.len() {
            self.finish_growing();
            self.start_growing(want.next_power_of_two().max(8));
            self.finish_growing();
        }
    }

    /// Indexes `slot` under `hash`; the caller knows its key is not indexed yet.
    pub(crate) fn insert(&mut self, hash: NonZeroU32, slot: Slot) {
        if (self.len + 1) * MAX_LOAD_DEN > self.entries.len() * MAX_LOAD_NUM {
            // A growth still moving would have to end first; MOVE_PER_CALL keeps that
            // from happening, this keeps it correct if it did.
            self.finish_growing();
            self.start_growing((self.entries.len() * 2).max(8));
        }
        self.move_some();
        self.put(entry(hash, slot));
        self.len += 1;
    }

    fn put(&mut self, e: Entry) {
        let mut place = self.home(entry_hash_of(e));
        while self.entries[place] != EMPTY {
            place = self.next(place);
        }
        self.entries[place] = e;
    }

    /// Makes a new, empty table of `capacity` the one inserts go to; the current one
    /// becomes `old`, moved over by [`Self::move_some`].
    fn start_growing(&mut self, capacity: usize) {
        debug_assert!(self.old.is_empty(), "one growth at a time");
        // `vec![0; n]` is calloc: fresh zero pages, faulted in as they are first written.
        self.old = std::mem::replace(&mut self.entries, vec![EMPTY; capacity]);
        self.old_shift = std::mem::replace(&mut self.shift, 64 - capacity.trailing_zeros());
        self.moved = 0;
    }

    /// Moves the next [`MOVE_PER_CALL`] places of the old table, if growing.
    fn move_some(&mut self) {
        if !self.old.is_empty() {
            self.move_places(MOVE_PER_CALL);
        }
    }

    fn finish_growing(&mut self) {
        self.move_places(usize::MAX);
    }

    fn move_places(&mut self, count: usize) {
        let end = self.moved.saturating_add(count).min(self.old.len());
        for place in self.moved..end {
            let e = self.old[place];
            // Empty places stay empty: they end the old table's probe runs as before.
            if e != EMPTY && e != TOMBSTONE {
                self.old[place] = TOMBSTONE;
                self.put(e);
            }
        }
        self.moved = end;
        if self.moved == self.old.len() {
            self.old = Vec::new();
            self.moved = 0;
        }
    }

    /// Drops `slot`, indexed under `hash`. In the new table, later entries of its run
    /// move back into the gap, so a probe still stops at the first empty place; in the
    /// old one (while growing) its place becomes a tombstone.
    pub(crate) fn remove(&mut self, hash: NonZeroU32, slot: Slot) {
        let target = entry(hash, slot);
        if !self.old.is_empty() {
            let mut place = home(hash, self.old_shift);
            let mask = self.old.len() - 1;
            loop {
                match self.old[place] {
                    EMPTY => break,
                    e if e == target => {
                        self.old[place] = TOMBSTONE;
                        self.len -= 1;
                        self.move_some();
                        return;
                    }
                    _ => place = (place + 1) & mask,
                }
            }
        }
        self.remove_from_new(target);
        self.move_some();
    }

    fn remove_from_new(&mut self, target: Entry) {
        let hash = entry_hash_of(target);
        let mut gap = self.home(hash);
        while self.entries[gap] != target {
            debug_assert_ne!(self.entries[gap], EMPTY, "removing an unindexed slot");
            gap = self.next(gap);
        }
        let mask = self.entries.len() - 1;
        let mut place = gap;
        loop {
            place = self.next(place);
            let e = self.entries[place];
            if e == EMPTY {
                break;
            }
            let home = self.home(entry_hash_of(e));
            // `e` may fill the gap unless its home lies cyclically in (gap, place].
            if (place.wrapping_sub(home) & mask) >= (place.wrapping_sub(gap) & mask) {
                self.entries[gap] = e;
                gap = place;
            }
        }
        self.entries[gap] = EMPTY;
        self.len -= 1;
    }
}

#[inline]
fn home(hash: NonZeroU32, shift: u32) -> usize {
    (u64::from(hash.get()).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

/// Linear probing in `table` from `place` for an entry of `hash` whose slot `is_key`.
#[inline]
fn probe(
    table: &[Entry],
    mut place: usize,
    hash: NonZeroU32,
    is_key: &impl Fn(Slot) -> bool,
) -> Option<Slot> {
    let mask = table.len() - 1;
    loop {
        let e = table[place];
        if e == EMPTY {
            return None;
        }
        // A tombstone's hash is 0: never a match.
        if entry_hash(e) == hash.get() && is_key(entry_slot(e)) {
            return Some(entry_slot(e));
        }
        place = (place + 1) & mask;
    }
}

/// A hint to load `value`'s cache line; no effect on what the program computes.
#[inline]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64's baseline, and a prefetch reads nothing the program
    // sees (and `value` is a valid reference anyway).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn h(x: u32) -> NonZeroU32 {
        NonZeroU32::new(x).unwrap()
    }

    /// Random inserts and removes with few distinct hashes (long runs, shared hashes)
    /// agree with a plain map at every step.
    #[test]
    fn agrees_with_a_map_through_inserts_and_removes() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut index = SlotIndex::default();
        // slot -> hash
        let mut model: HashMap<Slot, NonZeroU32> = HashMap::new();
        for step in 0..50_000 {
            let slot = next(3000) as Slot;
            if let Some(hash) = model.remove(&slot) {
                index.remove(hash, slot);
            } else {
                // Few hashes early (collisions), many later (growth).
                let hash = h(1 + next(if step < 10_000 { 40 } else { 1 << 31 }) as u32);
                index.insert(hash, slot);
                model.insert(slot, hash);
            }
            assert_eq!(index.len(), model.len());
            let probe = next(3000) as Slot;
            let want = model.get(&probe).copied();
            let got = want.and_then(|hash| index.find(hash, |s| s == probe));
            assert_eq!(got.is_some(), want.is_some(), "step {step}, slot {probe}");
        }
        for (&slot, &hash) in &model {
            assert_eq!(index.find(hash, |s| s == slot), Some(slot));
            assert_eq!(index.find(hash, |_| false), None);
        }
    }

    /// A growth moves the old table a few places per call, every key findable and
    /// removable meanwhile, and no call moves more than its share.
    #[test]
    fn a_growth_moves_a_few_places_per_call_and_loses_nothing() {
        let mut index = SlotIndex::default();
        let hash = |slot: Slot| h(slot.wrapping_mul(2_654_435_761) | 1);
        let mut slot: Slot = 0;
        // Fill to just below the growth of a 4096-place table.
        while (index.len() + 1) * MAX_LOAD_DEN <= 4096 * MAX_LOAD_NUM || index.len() < 8 {
            index.insert(hash(slot), slot);
            slot += 1;
        }
        assert!(index.old.is_empty());
        index.insert(hash(slot), slot);
        slot += 1;
        assert_eq!(index.entries.len(), 8192);
        assert_eq!(
            index.old.len(),
            4096,
            "the old table is kept while it moves"
        );
        assert_eq!(
            index.moved, MOVE_PER_CALL,
            "one call moved its share, no more"
        );
        // Remove every third key mid-growth; all others stay findable.
        for s in (0..slot).step_by(3) {
            index.remove(hash(s), s);
        }
        for s in 0..slot {
            let found = index.find(hash(s), |x| x == s);
            assert_eq!(found.is_some(), s % 3 != 0, "slot {s}");
        }
        while !index.old.is_empty() {
            index.insert(hash(slot), slot);
            slot += 1;
        }
        for s in 0..slot {
            let found = index.find(hash(s), |x| x == s);
            assert_eq!(
                found.is_some(),
                s % 3 != 0 || s >= 4000,
                "slot {s} after the move"
            );
        }
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let index = SlotIndex::default();
        assert_eq!(index.find(h(7), |_| true), None);
        index.prefetch(h(7));
    }

    #[test]
    fn slot_zero_and_the_largest_slot_are_kept_apart_from_empty_places() {
        let mut index = SlotIndex::default();
        index.insert(h(u32::MAX), 0);
        index.insert(h(1), Slot::MAX - 1);
        assert_eq!(index.find(h(u32::MAX), |s| s == 0), Some(0));
        assert_eq!(
            index.find(h(1), |s| s == Slot::MAX - 1),
            Some(Slot::MAX - 1)
        );
        index.remove(h(u32::MAX), 0);
        assert_eq!(index.find(h(u32::MAX), |_| true), None);
        assert_eq!(index.len(), 1);
    }
}
