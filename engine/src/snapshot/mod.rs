//! The snapshot of an [`Engine`] (format 3, streamed), the frozen [`EngineView`] it is
//! written from, and the canonical encoding of one ring that backups store.
//!
//! A snapshot is not canonical: items go in slab order with their insertion seq and
//! ring position (so a restore hashes no key), and two replicas with equal state may
//! write different bytes. What replicas compare is the digest (`digest`), which the
//! snapshot carries and a restore recomputes as it rebuilds the state, refusing the
//! snapshot if they differ. A backup's ring bytes are replicated state and stay
//! canonical (format 2's ring encoding, in `ring_state`).
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

mod codec;
mod format2;
mod reader;
mod ring_state;
mod writer;

use std::sync::Arc;

use super::backups::Backup;
use super::digest::{self, Sum};
use super::namespace::Namespace;
use super::slab::Chunk;
use super::{Engine, PositionSpace};

pub(crate) use reader::read_from;
pub(crate) use ring_state::{ring_state_bytes, ring_state_from};

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
/// frozen), read from its header without decoding the rest: O(1). `None` for bytes
/// that are not a format-3 snapshot (format 2 carries none: restore it to ask).
pub fn digest(bytes: &[u8]) -> Option<String> {
    carried_sum(bytes).map(digest::hex)
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
    /// The frozen state's digest (as [`Engine::state_digest`] gave when frozen).
    pub fn state_digest(&self) -> String {
        digest::hex(self.digest)
    }
}
