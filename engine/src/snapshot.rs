//! The snapshot of an [`Engine`] (format 3, streamed), the frozen [`EngineView`] it is
//! written from, and the canonical encoding of one ring that backups store.
//!
//! A snapshot is not canonical: items go in slab order with their insertion seq and
//! ring position (so a restore hashes no key), and two replicas with equal state may
//! write different bytes. What replicas compare is the digest (`digest`), which the
//! snapshot carries and a restore recomputes as it rebuilds the state, refusing the
//! snapshot if they differ. A backup's ring bytes are replicated state and stay
//! canonical (format 2's ring encoding, below).
//!
//! Layout, little-endian, strings as `u32` length + UTF-8:
//! `"CLKW" u16:3 u128:digest sum` then `u32:count` HashRing namespaces `(name, ns)` and
//! `u32:count` ChatRouter namespaces `(name, ns, u32:count (key, i64:size)…)`, where a
//! namespace is `i64:latest u64:next_seq u8:space u32:nodes (name, i64:replicas,
//! u32:n u64:pos…, u8:has_limit [i64:limit])… u64:items (key, i64:access, i64:size,
//! i64:expiry, u64:seq, u64:position)… u32:merged (from, to)… u32:backups (i64:timestamp,
//! u64:len, ring bytes)…`.
//!
//! A backup's ring bytes are `u8:space u32:nodes (as above)… u64:items (key, i64:access,
//! i64:size, i64:remaining TTL)… u32:merged (from, to)…`, items in insertion order; a
//! remaining TTL is the expiry less the backup's timestamp (`i64::MAX` stays "never").

use std::io::{Read, Write};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::backups::Backup;
use super::digest::{self, Sum};
use super::item::NEVER;
use super::namespace::Namespace;
use super::slab::Chunk;
use super::{ChatRouter, Engine, HashRing, PositionSpace};

const MAGIC: &[u8; 4] = b"CLKW";
const VERSION: u16 = 3;
/// The format before issue 15 (canonical, in memory), still read: a node upgraded with
/// such a snapshot in its data dir restarts from it.
const VERSION_2: u16 = 2;

/// Entries pre-allocated from a count a snapshot gives, at most: a forged count cannot
/// make a restore allocate beyond what the input then delivers.
const MAX_PREALLOC: usize = 1 << 16;
/// Keys the index is sized for up front from a snapshot's count, at most: 8M keys is
/// a table of 2^24 entries (128 MiB), the one 10M keys need anyway, and the most a
/// forged count can make a restore allocate before the items must actually arrive.
const MAX_INDEX_RESERVE: usize = 1 << 23;
/// The write and read buffers.
const BUFFER: usize = 1 << 16;

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

/// The state digest a snapshot carries (as [`Engine::state_digest`] gave when it was
/// frozen), read from its header without decoding the rest. For bytes that are not a
/// format-3 snapshot: their hex SHA-256, a label that is no state digest.
pub fn digest(bytes: &[u8]) -> String {
    match carried_sum(bytes) {
        Some(sum) => digest::hex(sum),
        None => Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

fn carried_sum(bytes: &[u8]) -> Option<Sum> {
    let header = bytes.get(..22)?;
    (&header[..4] == MAGIC && header[4..6] == VERSION.to_le_bytes())
        .then(|| Sum::from_le_bytes(header[6..22].try_into().expect("16 bytes")))
}

/// A frozen copy of an [`Engine`]'s state (see [`Engine::freeze`]): `Send + Sync +
/// 'static`, so a snapshot is encoded on another thread while the engine applies on.
/// It holds only what the snapshot encodes (no index, LRU order or per-vnode lists).
#[derive(Debug)]
pub struct EngineView {
    hash_rings: Vec<(String, NamespaceView)>,
    /// With each router's stale sizes, in key order: O(stale sizes) to copy.
    chat_routers: Vec<(String, NamespaceView, StaleView)>,
    digest: Sum,
}

type StaleView = Vec<(Box<str>, i64)>;

/// `(name, replicas, positions, limit)`.
type NodeView = (Box<str>, i64, Vec<u64>, Option<i64>);

#[derive(Debug)]
struct NamespaceView {
    latest: i64,
    next_seq: u64,
    space: PositionSpace,
    /// `(name, replicas, positions, limit)` in name order: O(nodes × replicas) to copy.
    nodes: Vec<NodeView>,
    /// Shared with the live engine, copied on its write: O(chunks) to freeze.
    chunks: Vec<Arc<Chunk>>,
    /// How many items the chunks hold.
    items: u64,
    merged: Vec<(Box<str>, Box<str>)>,
    /// Their bytes shared: O(backups).
    backups: Vec<Backup>,
}

// A view is written on another thread than the engine's.
const _: () = {
    const fn frozen<T: Send + Sync + 'static>() {}
    frozen::<EngineView>();
};

pub(crate) fn freeze(engine: &Engine, digest: Sum) -> EngineView {
    EngineView {
        hash_rings: engine
            .hash_rings
            .iter()
            .map(|(name, ring)| (name.clone(), freeze_namespace(&ring.ns)))
            .collect(),
        chat_routers: engine
            .chat_routers
            .iter()
            .map(|(name, router)| {
                let stale = router
                    .stale_sizes
                    .iter()
                    .map(|(k, v)| (Box::from(k), v))
                    .collect();
                (name.clone(), freeze_namespace(&router.ns), stale)
            })
            .collect(),
        digest,
    }
}

fn freeze_namespace(ns: &Namespace) -> NamespaceView {
    NamespaceView {
        latest: ns.latest,
        next_seq: ns.placement.next_seq(),
        space: ns.space,
        nodes: ns
            .ring
            .nodes()
            .map(|(name, idx)| {
                let info = ns.ring.info(idx);
                (
                    Box::from(name),
                    info.replicas,
                    info.positions.clone(),
                    ns.raw_limit(idx),
                )
            })
            .collect(),
        chunks: ns.placement.freeze(),
        items: ns.placement.len() as u64,
        merged: ns
            .merged
            .iter()
            .map(|(f, t)| (f.clone(), t.clone()))
            .collect(),
        backups: ns.backups.list().to_vec(),
    }
}

impl EngineView {
    /// Streams the snapshot of the frozen state into `writer`, through a buffer (the
    /// encoding is never whole in memory).
    ///
    /// # Errors
    /// What `writer` returns.
    pub fn write_to(&self, writer: &mut dyn Write) -> std::io::Result<()> {
        let mut w = Output {
            inner: writer,
            buf: Vec::with_capacity(BUFFER),
        };
        w.bytes(MAGIC)?;
        w.u16(VERSION)?;
        w.bytes(&self.digest.to_le_bytes())?;
        w.len(self.hash_rings.len())?;
        for (name, ns) in &self.hash_rings {
            w.str(name)?;
            write_namespace(&mut w, ns)?;
        }
        w.len(self.chat_routers.len())?;
        for (name, ns, stale) in &self.chat_routers {
            w.str(name)?;
            write_namespace(&mut w, ns)?;
            w.len(stale.len())?;
            for (key, size) in stale {
                w.str(key)?;
                w.i64(*size)?;
            }
        }
        w.flush()
    }

    /// The frozen state's digest (as [`Engine::state_digest`] gave when frozen).
    pub fn state_digest(&self) -> String {
        digest::hex(self.digest)
    }
}

fn write_namespace(w: &mut Output, ns: &NamespaceView) -> std::io::Result<()> {
    w.i64(ns.latest)?;
    w.u64(ns.next_seq)?;
    w.u8(ns.space.code())?;
    w.len(ns.nodes.len())?;
    for (name, replicas, positions, limit) in &ns.nodes {
        w.str(name)?;
        w.i64(*replicas)?;
        w.len(positions.len())?;
        for &pos in positions {
            w.u64(pos)?;
        }
        match limit {
            Some(limit) => {
                w.u8(1)?;
                w.i64(*limit)?;
            }
            None => w.u8(0)?,
        }
    }
    w.u64(ns.items)?;
    for chunk in &ns.chunks {
        for (item, expiry) in chunk.items_with_expiry() {
            w.str(&item.key)?;
            w.i64(item.access)?;
            w.i64(item.size)?;
            w.i64(expiry)?;
            w.u64(item.seq)?;
            w.u64(item.pos)?;
        }
    }
    w.len(ns.merged.len())?;
    for (from, to) in &ns.merged {
        w.str(from)?;
        w.str(to)?;
    }
    w.len(ns.backups.len())?;
    for backup in &ns.backups {
        w.i64(backup.timestamp)?;
        w.u64(backup.state.len() as u64)?;
        w.bytes(&backup.state)?;
    }
    Ok(())
}

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
        if ns.merged.contains_key(from.as_str()) {
            return Err(SnapshotError::Corrupt("duplicate merge record"));
        }
        ns.record_merge(&from, to);
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

/// A format-2 snapshot after its magic and version: the state is rebuilt (seqs
/// renumbered in insertion order, as format 2 always did) and its digest computed.
fn read_version_2(bytes: &[u8]) -> Result<Engine, SnapshotError> {
    let mut r = Reader(bytes);
    let mut engine = Engine::default();
    for _ in 0..r.u32()? {
        let name = r.string()?;
        let ns = decode_namespace_2(&mut r)?;
        let share = digest::namespace(digest::HASH_RING, &name, ns.digest_sum());
        engine.digest = engine.digest.wrapping_add(share);
        if engine
            .hash_rings
            .insert(name, HashRing { ns, folded: share })
            .is_some()
        {
            return Err(SnapshotError::Corrupt("duplicate HashRing namespace"));
        }
    }
    for _ in 0..r.u32()? {
        let name = r.string()?;
        let ns = decode_namespace_2(&mut r)?;
        let mut router = ChatRouter {
            ns,
            ..ChatRouter::default()
        };
        for _ in 0..r.u32()? {
            let key = r.string()?;
            let size = r.i64()?;
            if router.ns.placement.find(&key).is_some() {
                return Err(SnapshotError::Corrupt("stale size for a live request"));
            }
            router.stale_sizes.insert(key.into_boxed_str(), size);
        }
        let share = digest::namespace(digest::CHAT_ROUTER, &name, router.digest_sum());
        engine.digest = engine.digest.wrapping_add(share);
        router.folded = share;
        if engine.chat_routers.insert(name, router).is_some() {
            return Err(SnapshotError::Corrupt("duplicate ChatRouter namespace"));
        }
    }
    if !r.0.is_empty() {
        return Err(SnapshotError::TrailingBytes(r.0.len()));
    }
    Ok(engine)
}

fn decode_namespace_2(r: &mut Reader) -> Result<Namespace, SnapshotError> {
    let latest = r.i64()?;
    let mut ns = decode_ring(r, 0)?;
    ns.latest = latest;
    for _ in 0..r.u32()? {
        let timestamp = r.i64()?;
        let len = usize::try_from(r.u64()?).map_err(|_| SnapshotError::Truncated)?;
        let state = r.take(len)?.to_vec();
        ring_state_from(&state, timestamp)?;
        ns.backups
            .push(Backup::new(timestamp, state.into()), usize::MAX);
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
        ns.record_merge(&from, &to);
    }
    Ok(ns)
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
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

/// A writer through a buffer of [`BUFFER`] bytes.
struct Output<'a> {
    inner: &'a mut dyn Write,
    buf: Vec<u8>,
}

impl Output<'_> {
    #[inline]
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        if self.buf.len() + b.len() > BUFFER {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
            if b.len() > BUFFER {
                return self.inner.write_all(b);
            }
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }
    fn u8(&mut self, v: u8) -> std::io::Result<()> {
        self.bytes(&[v])
    }
    fn u16(&mut self, v: u16) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    #[inline]
    fn u64(&mut self, v: u64) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    #[inline]
    fn i64(&mut self, v: i64) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn len(&mut self, n: usize) -> std::io::Result<()> {
        let n = u32::try_from(n).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "2^32 entries or more")
        })?;
        self.bytes(&n.to_le_bytes())
    }
    #[inline]
    fn str(&mut self, s: &str) -> std::io::Result<()> {
        self.len(s.len())?;
        self.bytes(s.as_bytes())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.inner.flush()
    }
}

/// A reader through a buffer: fields are taken from the buffer, refilled as needed.
struct Input<'a> {
    inner: &'a mut dyn Read,
    buf: Box<[u8]>,
    at: usize,
    end: usize,
}

impl<'a> Input<'a> {
    fn new(inner: &'a mut dyn Read) -> Self {
        Input {
            inner,
            buf: vec![0; BUFFER].into_boxed_slice(),
            at: 0,
            end: 0,
        }
    }

    /// Reads more into the buffer (keeping what is unread); `false` at the end.
    fn fill(&mut self) -> Result<bool, SnapshotError> {
        if self.at > 0 {
            self.buf.copy_within(self.at..self.end, 0);
            self.end -= self.at;
            self.at = 0;
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SnapshotError::Io(e.to_string())),
            }
        }
    }

    /// The next `n` bytes (`n` ≤ [`BUFFER`]).
    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        debug_assert!(n <= BUFFER);
        while self.end - self.at < n {
            if !self.fill()? {
                return Err(SnapshotError::Truncated);
            }
        }
        let start = self.at;
        self.at += n;
        Ok(&self.buf[start..start + n])
    }

    /// The next `n` bytes, any length, into `out` (cleared first); `out` grows with what
    /// actually arrives, not with `n`.
    fn read_into(&mut self, mut n: usize, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        out.clear();
        out.reserve(n.min(MAX_PREALLOC));
        while n > 0 {
            if self.at == self.end && !self.fill()? {
                return Err(SnapshotError::Truncated);
            }
            let step = n.min(self.end - self.at);
            out.extend_from_slice(&self.buf[self.at..self.at + step]);
            self.at += step;
            n -= step;
        }
        Ok(())
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    #[inline]
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    #[inline]
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    #[inline]
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A string, in `scratch` when longer than the buffer holds at once.
    #[inline]
    fn string<'s>(&'s mut self, scratch: &'s mut Vec<u8>) -> Result<&'s str, SnapshotError> {
        let len = self.u32()? as usize;
        let bytes: &[u8] = if len <= BUFFER {
            self.take(len)?
        } else {
            self.read_into(len, scratch)?;
            scratch
        };
        std::str::from_utf8(bytes).map_err(|_| SnapshotError::Corrupt("string is not UTF-8"))
    }

    /// A string and the `tail` bytes after it, taken together (one bounds check for a
    /// whole item); in `scratch` when longer than the buffer holds at once.
    #[inline]
    fn record<'s>(
        &'s mut self,
        tail: usize,
        scratch: &'s mut Vec<u8>,
    ) -> Result<(&'s str, &'s [u8]), SnapshotError> {
        let len = self.u32()? as usize;
        let bytes: &[u8] = if len + tail <= BUFFER {
            self.take(len + tail)?
        } else {
            self.read_into(len + tail, scratch)?;
            scratch
        };
        let (key, rest) = bytes.split_at(len);
        let key =
            std::str::from_utf8(key).map_err(|_| SnapshotError::Corrupt("string is not UTF-8"))?;
        Ok((key, rest))
    }

    /// Everything left, in memory (format 2 only).
    fn remaining(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let mut out = self.buf[self.at..self.end].to_vec();
        self.at = self.end;
        self.inner
            .read_to_end(&mut out)
            .map_err(|e| SnapshotError::Io(e.to_string()))?;
        Ok(out)
    }

    /// How many bytes are left (read to the end).
    fn rest(&mut self) -> Result<usize, SnapshotError> {
        let mut n = self.end - self.at;
        self.at = self.end;
        while self.fill()? {
            n += self.end;
            self.at = self.end;
        }
        Ok(n)
    }
}

/// A reader over a backup's bytes, in memory.
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
