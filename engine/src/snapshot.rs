//! The canonical, versioned encoding of an [`Engine`].
//!
//! Equal states encode to equal bytes: namespaces and nodes in name order, items in
//! insertion order (the order that decides LRU ties), stale sizes in key order. What can
//! be derived is left out: an item's node (its route), sequence numbers (only their
//! order matters), loads and LRU indexes (rebuilt on decode).
//!
//! Layout, little-endian, strings as `u32` length + UTF-8:
//! `"CLKW" u16:version` then `u32:count` HashRing namespaces `(name, ns)` and
//! `u32:count` ChatRouter namespaces `(name, ns, u32:count (key, i64:size)…)`, where a
//! namespace is `i64:latest, ring, u32:backups (i64:timestamp, u64:len, ring bytes)…`
//! and a ring is `u8:space u32:nodes (name, i64:replicas, u32:n u64:pos…, u8:has_limit
//! [i64:limit])… u64:items (key, i64:access, i64:size, i64:expiry)… u32:merged
//! (from, to)…`. A backup's ring has each expiry less its timestamp (the remaining TTL;
//! `i64::MAX` stays "never").

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::item::NEVER;
use super::namespace::Namespace;
use super::{ChatRouter, Engine, HashRing, PositionSpace};

const MAGIC: &[u8; 4] = b"CLKW";
const VERSION: u16 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("not a clockwise engine snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u16),
    #[error("snapshot ends early")]
    Truncated,
    #[error("snapshot has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("snapshot is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("reading the snapshot: {0}")]
    Io(String),
}

/// Hex SHA-256 of a canonical encoding (the form `Status` and backups show).
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn encode(engine: &Engine) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1024));
    w.0.extend_from_slice(MAGIC);
    w.u16(VERSION);
    w.len(engine.hash_rings.len());
    for (name, ring) in &engine.hash_rings {
        w.str(name);
        encode_namespace(&mut w, &ring.ns);
    }
    w.len(engine.chat_routers.len());
    for (name, router) in &engine.chat_routers {
        w.str(name);
        encode_namespace(&mut w, &router.ns);
        w.len(router.stale_sizes.len());
        for (key, &size) in &router.stale_sizes {
            w.str(key);
            w.i64(size);
        }
    }
    w.0
}

fn encode_namespace(w: &mut Writer, ns: &Namespace) {
    w.i64(ns.latest);
    encode_ring(w, ns, 0);
    w.len(ns.backups.len());
    for (timestamp, state) in &ns.backups {
        w.i64(*timestamp);
        w.u64(state.len() as u64);
        w.0.extend_from_slice(state);
    }
}

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
    for (from, to) in &ns.merged {
        w.str(from);
        w.str(to);
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Engine, SnapshotError> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = r.u16()?;
    if version != VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let mut engine = Engine::default();
    for _ in 0..r.u32()? {
        let name = r.string()?;
        let ns = decode_namespace(&mut r)?;
        if engine.hash_rings.insert(name, HashRing { ns }).is_some() {
            return Err(SnapshotError::Corrupt("duplicate HashRing namespace"));
        }
    }
    for _ in 0..r.u32()? {
        let name = r.string()?;
        let ns = decode_namespace(&mut r)?;
        let mut stale_sizes = BTreeMap::new();
        for _ in 0..r.u32()? {
            let key = r.string()?;
            let size = r.i64()?;
            if ns.placement.find(&key).is_some() {
                return Err(SnapshotError::Corrupt("stale size for a live request"));
            }
            stale_sizes.insert(key.into_boxed_str(), size);
        }
        let router = ChatRouter { ns, stale_sizes };
        if engine.chat_routers.insert(name, router).is_some() {
            return Err(SnapshotError::Corrupt("duplicate ChatRouter namespace"));
        }
    }
    if !r.0.is_empty() {
        return Err(SnapshotError::TrailingBytes(r.0.len()));
    }
    Ok(engine)
}

fn decode_namespace(r: &mut Reader) -> Result<Namespace, SnapshotError> {
    let latest = r.i64()?;
    let mut ns = decode_ring(r, 0)?;
    ns.latest = latest;
    for _ in 0..r.u32()? {
        let timestamp = r.i64()?;
        let len = usize::try_from(r.u64()?).map_err(|_| SnapshotError::Truncated)?;
        let state = r.take(len)?.to_vec();
        ring_state_from(&state, timestamp)?;
        ns.backups.push((timestamp, state));
    }
    Ok(ns)
}

fn decode_ring(r: &mut Reader, base: i64) -> Result<Namespace, SnapshotError> {
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
        ns.merged.insert(from.into(), to.into());
    }
    Ok(ns)
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        let n = u32::try_from(n).expect("fewer than 2^32 entries");
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.0.len() < n {
            return Err(SnapshotError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn string(&mut self) -> Result<String, SnapshotError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| SnapshotError::Corrupt("string is not UTF-8"))
    }
}
