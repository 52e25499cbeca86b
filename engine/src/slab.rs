//! Slot storage for placed items: stable `u32` slots, freed slots reused.
//!
//! Slots live in fixed-size chunks, so growing never copies the items already stored
//! (a flat `Vec` would move every item at each doubling) and the unused tail is at most
//! one chunk.

use std::ops::{Index, IndexMut};

use super::item::{Item, Slot};

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Clone, Debug, Default)]
pub(crate) struct Slab {
    chunks: Vec<Vec<Option<Item>>>,
    free: Vec<Slot>,
}

impl Slab {
    /// Stores `item` in a free slot (a released one first).
    pub(crate) fn insert(&mut self, item: Item) -> Slot {
        if let Some(slot) = self.free.pop() {
            self[slot] = Some(item);
            return slot;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            // The first chunk grows as needed, so a small ring stays small.
            let capacity = if self.chunks.is_empty() { 0 } else { CHUNK };
            self.chunks.push(Vec::with_capacity(capacity));
        }
        let last = self.chunks.len() - 1;
        self.chunks[last].push(Some(item));
        let slot = last * CHUNK + self.chunks[last].len() - 1;
        Slot::try_from(slot)
            .ok()
            .filter(|&s| s != Slot::MAX)
            .expect("fewer than 2^32 - 1 stored items")
    }

    /// Asks the CPU to start loading `slot`'s item (a hint: no effect on results).
    #[inline]
    pub(crate) fn prefetch(&self, slot: Slot) {
        let (chunk, at) = (slot as usize >> CHUNK_BITS, slot as usize & (CHUNK - 1));
        if let Some(item) = self.chunks.get(chunk).and_then(|c| c.get(at)) {
            super::index::prefetch(item);
        }
    }

    /// Empties `slot` and returns what it held; the slot is reused later.
    pub(crate) fn remove(&mut self, slot: Slot) -> Option<Item> {
        let item = self[slot].take();
        if item.is_some() {
            self.free.push(slot);
        }
        item
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Item> + '_ {
        self.chunks.iter().flatten().flatten()
    }

    /// Every stored item with its slot.
    pub(crate) fn iter_slots(&self) -> impl Iterator<Item = (Slot, &Item)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.iter().enumerate().filter_map(move |(i, item)| {
                let slot = Slot::try_from(c * CHUNK + i).expect("slot fits");
                item.as_ref().map(|item| (slot, item))
            })
        })
    }
}

impl Index<Slot> for Slab {
    type Output = Option<Item>;
    #[inline]
    fn index(&self, slot: Slot) -> &Option<Item> {
        let s = slot as usize;
        &self.chunks[s >> CHUNK_BITS][s & (CHUNK - 1)]
    }
}

impl IndexMut<Slot> for Slab {
    #[inline]
    fn index_mut(&mut self, slot: Slot) -> &mut Option<Item> {
        let s = slot as usize;
        &mut self.chunks[s >> CHUNK_BITS][s & (CHUNK - 1)]
    }
}
