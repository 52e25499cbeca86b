//! One stored key or request as the placement keeps it, its slot number, and expiry times.
//!
//! Its own module so that the slab (which stores items), the index (which maps hashes
//! to slots) and the placement (which orders them) all depend on it and not on each
//! other.

use std::num::NonZeroU32;

use ecow::EcoString;

use super::ring::{NodeIdx, VnodeId};

pub(crate) type Slot = u32;

/// The expiry of an item that never expires.
pub(crate) const NEVER: i64 = i64::MAX;

/// Whether an item with `expiry` is dead at `timestamp` (one that never expires is alive
/// even at `i64::MAX`).
pub(crate) fn dead_by(expiry: i64, timestamp: i64) -> bool {
    expiry != NEVER && expiry <= timestamp
}

/// The expiry of an item stored at `timestamp` for `ttl_ms` (0 or less: never).
pub(crate) fn expiry(timestamp: i64, ttl_ms: i64) -> i64 {
    if ttl_ms <= 0 {
        NEVER
    } else {
        timestamp.saturating_add(ttl_ms).min(NEVER - 1)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// Up to 15 bytes inline, so telling keys apart mostly reads only the item's line.
    pub(crate) key: EcoString,
    pub(crate) pos: u64,
    pub(crate) access: i64,
    /// Insertion order: kept when the item is overwritten or moves, renewed when it is
    /// deleted and stored again (the drill's dict order).
    pub(crate) seq: u64,
    pub(crate) size: i64,
    pub(crate) node: NodeIdx,
    /// The virtual node that owns the item's position, and the item's place in its list.
    pub(crate) vnode: VnodeId,
    pub(crate) list_pos: u32,
    /// Upper 32 bits of the key's hash, as its index entry holds them (removal finds the
    /// entry by them); never zero, so that an empty slab slot costs no byte beyond the
    /// item.
    pub(crate) hash32: NonZeroU32,
}

// A stored item, empty or not, is one cache line.
const _: () = assert!(std::mem::size_of::<Option<Item>>() == 64);
