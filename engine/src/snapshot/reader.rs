//! Format 3, read: the state rebuilt as it streams in, its digest checked against the
//! one the snapshot carries.

use std::io::Read;

use super::super::backups::Backup;
use super::super::digest::{self, Sum};
use super::super::namespace::Namespace;
use super::super::{ChatRouter, Engine, HashRing, PositionSpace};
use super::codec::Input;
use super::format2::read_version_2;
use super::{SnapshotError, MAGIC, MAX_INDEX_RESERVE, MAX_PREALLOC, VERSION, VERSION_2};

/// Items decoded before any of them is inserted (see `read_namespace`).
const GROUP: usize = 32;

/// One decoded item; its key is a range of the group's key text.
struct Record {
    key: std::ops::Range<usize>,
    access: i64,
    size: i64,
    expiry: i64,
    seq: u64,
    pos: u64,
}

pub(crate) fn read_from(reader: &mut dyn Read) -> Result<Engine, SnapshotError> {
    let mut r = Input::new(reader);
    if r.take(4)? != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = r.u16()?;
    if version == VERSION_2 {
        return read_version_2(&r.remaining()?);
    }
    if version != VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let carried = Sum::from_le_bytes(r.array()?);
    let mut engine = Engine::default();
    let mut name = Vec::new();
    for _ in 0..r.u32()? {
        let name = r.string(&mut name)?.to_owned();
        let ns = read_namespace(&mut r)?;
        let share = digest::namespace(digest::HASH_RING, &name, ns.digest_sum());
        engine.digest = engine.digest.wrapping_add(share);
        let ring = HashRing { ns, folded: share };
        if engine.hash_rings.insert(name, ring).is_some() {
            return Err(SnapshotError::Corrupt("duplicate HashRing namespace"));
        }
    }
    for _ in 0..r.u32()? {
        let name = r.string(&mut name)?.to_owned();
        let ns = read_namespace(&mut r)?;
        let mut router = ChatRouter {
            ns,
            ..ChatRouter::default()
        };
        let mut key = Vec::new();
        for _ in 0..r.u32()? {
            let (key, rest) = r.record(8, &mut key)?;
            let size = i64::from_le_bytes(rest.try_into().expect("8 bytes"));
            if router.ns.placement.find(key).is_some() {
                return Err(SnapshotError::Corrupt("stale size for a live request"));
            }
            if router.stale_sizes.remove(key).is_some() {
                return Err(SnapshotError::Corrupt("duplicate stale size"));
            }
            router.stale_sizes.insert(key.into(), size);
        }
        let share = digest::namespace(digest::CHAT_ROUTER, &name, router.digest_sum());
        engine.digest = engine.digest.wrapping_add(share);
        router.folded = share;
        if engine.chat_routers.insert(name, router).is_some() {
            return Err(SnapshotError::Corrupt("duplicate ChatRouter namespace"));
        }
    }
    let trailing = r.rest()?;
    if trailing > 0 {
        return Err(SnapshotError::TrailingBytes(trailing));
    }
    if engine.digest != carried {
        return Err(SnapshotError::Corrupt(
            "the state's digest is not the one the snapshot carries",
        ));
    }
    Ok(engine)
}

fn read_namespace(r: &mut Input) -> Result<Namespace, SnapshotError> {
    let latest = r.i64()?;
    let next_seq = r.u64()?;
    let space =
        PositionSpace::from_code(r.u8()?).ok_or(SnapshotError::Corrupt("position space"))?;
    let mut ns = Namespace::new(space);
    ns.latest = latest;
    let mut text = Vec::new();
    for _ in 0..r.u32()? {
        let name = r.string(&mut text)?.to_owned();
        let replicas = r.i64()?;
        let count = r.u32()? as usize;
        let mut positions = Vec::with_capacity(count.min(MAX_PREALLOC));
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
    let count = r.u64()?;
    ns.placement.reserve(
        usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(MAX_INDEX_RESERVE),
    );
    // Items are decoded a group at a time and the index places of a group's keys are
    // prefetched before any is inserted, so their cache misses overlap.
    let (mut keys, mut group) = (String::new(), Vec::with_capacity(GROUP));
    let mut left = count;
    while left > 0 {
        let n = left.min(GROUP as u64) as usize;
        left -= n as u64;
        keys.clear();
        group.clear();
        for _ in 0..n {
            let (key, rest) = r.record(40, &mut text)?;
            let field =
                |i: usize| -> [u8; 8] { rest[8 * i..8 * i + 8].try_into().expect("8 bytes") };
            let record = Record {
                key: keys.len()..keys.len() + key.len(),
                access: i64::from_le_bytes(field(0)),
                size: i64::from_le_bytes(field(1)),
                expiry: i64::from_le_bytes(field(2)),
                seq: u64::from_le_bytes(field(3)),
                pos: u64::from_le_bytes(field(4)),
            };
            // The position is trusted as written (a restore hashes no key) but must be
            // one of the space's; the digest covers every fact but positions (derived).
            if !space.holds(record.pos) {
                return Err(SnapshotError::Corrupt("a key outside the ring's space"));
            }
            if record.seq >= next_seq {
                return Err(SnapshotError::Corrupt(
                    "an item's seq is not below the counter",
                ));
            }
            keys.push_str(key);
            group.push(record);
        }
        for record in &group {
            ns.placement.prefetch(&keys[record.key.clone()]);
        }
        for record in &group {
            let owner = ns
                .ring
                .route_vnode(record.pos)
                .ok_or(SnapshotError::Corrupt(
                    "stored key on a ring without positions",
                ))?;
            if !ns.placement.insert_with_seq(
                &keys[record.key.clone()],
                record.pos,
                owner,
                record.access,
                record.size,
                record.expiry,
                record.seq,
            ) {
                return Err(SnapshotError::Corrupt("duplicate key"));
            }
        }
    }
    ns.placement.set_next_seq(next_seq);
    for _ in 0..r.u32()? {
        let from = r.string(&mut text)?.to_owned();
        let to = r.string(&mut text)?;
        if !ns.record_merge(&from, to) {
            return Err(SnapshotError::Corrupt("duplicate or cyclic merge record"));
        }
    }
    let mut backups = Vec::new();
    for _ in 0..r.u32()? {
        let timestamp = r.i64()?;
        let len = usize::try_from(r.u64()?).map_err(|_| SnapshotError::Truncated)?;
        let mut state = Vec::new();
        r.read_into(len, &mut state)?;
        // Not decoded here: that would cost a restart an md5 per backed-up key. A backup
        // that does not decode restores nothing when asked (see `Namespace::restore`),
        // the same on every replica that holds the same bytes.
        backups.push(Backup::new(timestamp, state.into()));
    }
    for backup in backups {
        // The list is as written: nothing to drop.
        ns.backups.push(backup, usize::MAX);
    }
    Ok(ns)
}
