//! The hash index from a key to its slab slot.
//!
//! Open addressing with linear probing over one array of 8-byte entries, each the upper
//! 32 bits of the key's hash beside the slot. Keeping the hash in the entry means growing
//! never reads an item, and a probe reads an item only when the hashes agree. A table of
//! its own rather than `hashbrown`'s: where a key's entry lives is a function of its hash
//! alone, so a batch can prefetch the entries of all its keys before it reads any, and
//! pay for their cache misses once, side by side.

use std::num::NonZeroU32;

use super::item::Slot;

/// An entry: `hash << 32 | (slot + 1)`; 0 is an empty place.
type Entry = u64;

const EMPTY: Entry = 0;

/// The table grows past 7/8 full (linear probing stays short well below that).
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 8;

#[derive(Clone, Debug, Default)]
pub(crate) struct SlotIndex {
    entries: Vec<Entry>,
    len: usize,
    /// `64 - log2(entries.len())`: a hash's home place is its top bits.
    shift: u32,
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
        (u64::from(hash.get()).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
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
        let mut place = self.home(hash);
        loop {
            let e = self.entries[place];
            if e == EMPTY {
                return None;
            }
            if entry_hash(e) == hash.get() && is_key(entry_slot(e)) {
                return Some(entry_slot(e));
            }
            place = self.next(place);
        }
    }

    /// Asks the CPU to start loading the place where probing for `hash` starts.
    #[inline]
    pub(crate) fn prefetch(&self, hash: NonZeroU32) {
        if let Some(e) = self.entries.get(self.home(hash)) {
            prefetch(e);
        }
    }

    /// Grows the table to hold `additional` more entries without growing again.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let want = (self.len + additional) * MAX_LOAD_DEN / MAX_LOAD_NUM + 1;
        if want > self.entries.len() {
            self.grow_to(want.next_power_of_two().max(8));
        }
    }

    /// Indexes `slot` under `hash`; the caller knows its key is not indexed yet.
    pub(crate) fn insert(&mut self, hash: NonZeroU32, slot: Slot) {
        if (self.len + 1) * MAX_LOAD_DEN > self.entries.len() * MAX_LOAD_NUM {
            self.grow();
        }
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

    fn grow(&mut self) {
        self.grow_to((self.entries.len() * 2).max(8));
    }

    fn grow_to(&mut self, capacity: usize) {
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; capacity]);
        self.shift = 64 - capacity.trailing_zeros();
        for e in old.into_iter().filter(|&e| e != EMPTY) {
            self.put(e);
        }
    }

    /// Drops `slot`, indexed under `hash`. Later entries of its run move back into the
    /// gap, so a probe still stops at the first empty place (no tombstones).
    pub(crate) fn remove(&mut self, hash: NonZeroU32, slot: Slot) {
        let target = entry(hash, slot);
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
