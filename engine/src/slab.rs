//! Slot storage for placed items: stable `u32` slots, freed slots reused.
//!
//! Slots live in fixed-size chunks, so growing never copies the items already stored
//! (a flat `Vec` would move every item at each doubling) and the unused tail is at most
//! one chunk. Each chunk sits behind an `Arc` and is copied on write: freezing the
//! engine for a snapshot shares the chunks (O(chunks)), and only a chunk mutated while
//! a frozen view still holds it is copied (issue 15).
//!
//! Chunks hold 128 items (8 KiB). A copy on write costs a whole chunk, so smaller
//! chunks make the first command after a freeze cheaper: 5,000 stores to random keys
//! copy up to 5,000 chunks, ~40 MB at this size against 10 MB at 32 items and 80 MB at
//! 256. But every
//! chunk is an allocation of glibc's large-bin size (≥ 1 KiB), and each such malloc
//! consolidates the fast bins that the commands' small frees fill: at 32 items (a
//! chunk per 32 stores) malloc took ~18% of the time of loading 2M new keys through
//! `BatchOperations` (medians ~720 against ~590 ns/key, the pre-issue-15 engine's).
//! Measured at 2M keys (`examples/load.rs`), the first command of 5,000 random
//! re-stores after a freeze takes ~13 ms at 32 items, ~35 ms at 128 and ~55 ms at 256
//! (3–6 ms with no view), later ones less as the touched chunks are copied already.
//! At 128 or 256 items the load costs about what it did before chunks were shared
//! (alternating runs could not tell the two apart); 128 keeps the first command after a
//! freeze within the 50 ms that issue 15 allows. A freeze clones 78k `Arc`s at 10M keys
//! (about a millisecond), and chunk headers cost ~0.6 B per key. Offsets in a chunk
//! must fit a `u8` (the expiries' keys), so 256 is the largest.

use std::ops::Index;
use std::sync::Arc;

use super::item::{Item, Slot, NEVER};

const CHUNK_BITS: u32 = 7;
const CHUNK: usize = 1 << CHUNK_BITS;
// Offsets in a chunk are `u8`s (the expiries' keys).
const _: () = assert!(CHUNK <= 256);

/// One chunk of slots and the expiries of its items that expire.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) items: Vec<Option<Item>>,
    /// By offset in the chunk. Kept beside the items rather than in them: most items
    /// never expire, and a 64-byte item fits a cache line. Per chunk (not one map for
    /// the slab) so that it is frozen and copied on write with its items; boxed, and
    /// `None` while no item of the chunk expires, so that it costs such a chunk 8 bytes.
    expiries: Option<Box<Expiries>>,
}

type Expiries = hashbrown::HashMap<u8, i64, foldhash::fast::FixedState>;

impl Chunk {
    #[inline]
    fn expiry(&self, at: usize) -> i64 {
        self.expiries
            .as_ref()
            .and_then(|m| m.get(&(at as u8)).copied())
            .unwrap_or(NEVER)
    }

    /// The chunk's items with their expiry ([`NEVER`]: never).
    pub(crate) fn items_with_expiry(&self) -> impl Iterator<Item = (&Item, i64)> + '_ {
        self.items.iter().enumerate().filter_map(|(i, item)| {
            let item = item.as_ref()?;
            Some((item, self.expiry(i)))
        })
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Slab {
    chunks: Vec<Arc<Chunk>>,
    free: Vec<Slot>,
}

#[inline]
fn split(slot: Slot) -> (usize, usize) {
    let s = slot as usize;
    (s >> CHUNK_BITS, s & (CHUNK - 1))
}

impl Slab {
    /// Stores `item` in a free slot (a released one first), expiring at `expiry`.
    pub(crate) fn insert(&mut self, item: Item, expiry: i64) -> Slot {
        if let Some(slot) = self.free.pop() {
            *self.get_mut(slot) = Some(item);
            self.set_expiry(slot, expiry);
            return slot;
        }
        if self.chunks.last().is_none_or(|c| c.items.len() == CHUNK) {
            // The first chunk grows as needed, so a small ring stays small.
            let capacity = if self.chunks.is_empty() { 0 } else { CHUNK };
            self.chunks.push(Arc::new(Chunk {
                items: Vec::with_capacity(capacity),
                expiries: None,
            }));
        }
        let last = self.chunks.len() - 1;
        let chunk = Arc::make_mut(&mut self.chunks[last]);
        if last > 0 && chunk.items.capacity() < CHUNK {
            // A tail chunk copied on write has only its length's capacity.
            chunk.items.reserve_exact(CHUNK - chunk.items.len());
        }
        chunk.items.push(Some(item));
        let slot = last * CHUNK + chunk.items.len() - 1;
        let slot = Slot::try_from(slot)
            .ok()
            .filter(|&s| s != Slot::MAX)
            .expect("fewer than 2^32 - 1 stored items");
        self.set_expiry(slot, expiry);
        slot
    }

    /// The item in `slot`, to change (copies its chunk first if a frozen view shares it).
    #[inline]
    pub(crate) fn get_mut(&mut self, slot: Slot) -> &mut Option<Item> {
        let (chunk, at) = split(slot);
        &mut Arc::make_mut(&mut self.chunks[chunk]).items[at]
    }

    /// When the item in `slot` dies ([`NEVER`]: never).
    #[inline]
    pub(crate) fn expiry(&self, slot: Slot) -> i64 {
        let (chunk, at) = split(slot);
        self.chunks[chunk].expiry(at)
    }

    pub(crate) fn set_expiry(&mut self, slot: Slot, expiry: i64) {
        let (chunk, at) = split(slot);
        let at = at as u8;
        if expiry == NEVER {
            // Only a chunk that holds the expiry changes (and is copied if frozen).
            let held = self.chunks[chunk]
                .expiries
                .as_ref()
                .is_some_and(|m| m.contains_key(&at));
            if held {
                let expiries = &mut Arc::make_mut(&mut self.chunks[chunk]).expiries;
                if let Some(m) = expiries {
                    m.remove(&at);
                    if m.is_empty() {
                        *expiries = None;
                    }
                }
            }
        } else {
            Arc::make_mut(&mut self.chunks[chunk])
                .expiries
                .get_or_insert_with(Default::default)
                .insert(at, expiry);
        }
    }

    /// Asks the CPU to start loading `slot`'s item (a hint: no effect on results).
    #[inline]
    pub(crate) fn prefetch(&self, slot: Slot) {
        let (chunk, at) = split(slot);
        if let Some(item) = self.chunks.get(chunk).and_then(|c| c.items.get(at)) {
            super::index::prefetch(item);
        }
    }

    /// Empties `slot` and returns what it held with its expiry; the slot is reused later.
    pub(crate) fn remove(&mut self, slot: Slot) -> Option<(Item, i64)> {
        self[slot].as_ref()?;
        let expiry = self.expiry(slot);
        self.set_expiry(slot, NEVER);
        let item = self.get_mut(slot).take()?;
        self.free.push(slot);
        Some((item, expiry))
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Item> + '_ {
        self.chunks.iter().flat_map(|c| c.items.iter()).flatten()
    }

    /// Every stored item with its slot.
    pub(crate) fn iter_slots(&self) -> impl Iterator<Item = (Slot, &Item)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.items.iter().enumerate().filter_map(move |(i, item)| {
                let slot = Slot::try_from(c * CHUNK + i).expect("slot fits");
                item.as_ref().map(|item| (slot, item))
            })
        })
    }

    /// The chunks, shared (see the module docs): O(chunks).
    pub(crate) fn freeze(&self) -> Vec<Arc<Chunk>> {
        self.chunks.clone()
    }
}

impl Index<Slot> for Slab {
    type Output = Option<Item>;
    #[inline]
    fn index(&self, slot: Slot) -> &Option<Item> {
        let (chunk, at) = split(slot);
        &self.chunks[chunk].items[at]
    }
}
