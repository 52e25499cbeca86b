//! The canonical encoding of one ring that backups store (format 2's ring encoding).

use super::super::item::NEVER;
use super::super::namespace::Namespace;
use super::super::PositionSpace;
use super::codec::{Reader, Writer};
use super::SnapshotError;

/// A ring's state for a backup at `base`: expiries become remaining TTLs.
pub(crate) fn ring_state_bytes(ns: &Namespace, base: i64) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    encode_ring(&mut w, ns, base);
    w.0
}

/// A ring from a backup, its remaining TTLs counted from `base`.
pub(crate) fn ring_state_from(bytes: &[u8], base: i64) -> Result<Namespace, SnapshotError> {
    let mut r = Reader(bytes);
    let ns = decode_ring(&mut r, base)?;
    if !r.0.is_empty() {
        return Err(SnapshotError::TrailingBytes(r.0.len()));
    }
    Ok(ns)
}

fn encode_ring(w: &mut Writer, ns: &Namespace, base: i64) {
    w.u8(ns.space.code());
    w.len(ns.ring.node_count());
    for (name, idx) in ns.ring.nodes() {
        let info = ns.ring.info(idx);
        w.str(name);
        w.i64(info.replicas);
        w.len(info.positions.len());
        for &pos in &info.positions {
            w.u64(pos);
        }
        match ns.raw_limit(idx) {
            Some(limit) => {
                w.u8(1);
                w.i64(limit);
            }
            None => w.u8(0),
        }
    }
    let items = ns.placement.in_insertion_order_with_expiry();
    w.u64(items.len() as u64);
    for (item, expiry) in items {
        w.str(&item.key);
        w.i64(item.access);
        w.i64(item.size);
        w.i64(if expiry == NEVER {
            NEVER
        } else {
            expiry.saturating_sub(base)
        });
    }
    w.len(ns.merged.len());
    for (from, to) in ns.merged.iter() {
        w.str(from);
        w.str(to);
    }
}

pub(super) fn decode_ring(r: &mut Reader, base: i64) -> Result<Namespace, SnapshotError> {
    let space =
        PositionSpace::from_code(r.u8()?).ok_or(SnapshotError::Corrupt("position space"))?;
    let mut ns = Namespace::new(space);
    for _ in 0..r.u32()? {
        let name = r.string()?;
        let replicas = r.i64()?;
        let count = r.u32()? as usize;
        let mut positions = Vec::with_capacity(count.min(r.0.len() / 8));
        for _ in 0..count {
            let position = r.u64()?;
            if !space.holds(position) {
                return Err(SnapshotError::Corrupt(
                    "a position outside the ring's space",
                ));
            }
            positions.push(position);
        }
        if !ns.add(&name, replicas, positions) {
            return Err(SnapshotError::Corrupt("duplicate node"));
        }
        match r.u8()? {
            0 => {}
            1 => {
                ns.set_limit(&name, r.i64()?);
            }
            _ => return Err(SnapshotError::Corrupt("limit flag")),
        }
    }
    for _ in 0..r.u64()? {
        let key = r.string()?;
        let access = r.i64()?;
        let size = r.i64()?;
        let expiry = match r.i64()? {
            NEVER => NEVER,
            // Never "never" by saturation: a key that expires keeps expiring.
            relative => relative.saturating_add(base).min(NEVER - 1),
        };
        if ns.placement.find(&key).is_some() {
            return Err(SnapshotError::Corrupt("duplicate key"));
        }
        let pos = ns.space.position(&key);
        let owner = ns.ring.route_vnode(pos).ok_or(SnapshotError::Corrupt(
            "stored key on a ring without positions",
        ))?;
        ns.placement.insert(&key, pos, owner, access, size, expiry);
    }
    for _ in 0..r.u32()? {
        let from = r.string()?;
        let to = r.string()?;
        if !ns.record_merge(&from, &to) {
            return Err(SnapshotError::Corrupt("duplicate or cyclic merge record"));
        }
    }
    Ok(ns)
}
