//! The state digest, kept up to date as commands apply (issue 15).
//!
//! The replicated state is a set of facts (an item, a node, a limit, a merge record, a
//! stale size, a namespace's header and its backups). Each fact hashes with XXH3-128
//! (seed 0, a fixed and specified function: never `RandomState`) over a tagged,
//! little-endian encoding, and a namespace's digest is the sum of its facts' hashes mod
//! 2^128: order-independent, so a changed fact costs one subtraction and one addition,
//! and equal states give equal sums whatever the order they were built in. The engine's
//! sum is the sum over namespaces of XXH3-128 of `(kind, namespace sum, name)`, updated
//! when a command has applied; [`hex`] shows it as the SHA-256 of that sum.

use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128;

/// A sum of fact hashes, mod 2^128.
pub(crate) type Sum = u128;

const ITEM: u8 = 1;
const NODE: u8 = 2;
const LIMIT: u8 = 3;
const MERGED: u8 = 4;
const STALE: u8 = 5;
const HEADER: u8 = 6;
const BACKUPS: u8 = 7;
const NAMESPACE: u8 = 8;

/// Namespace kinds, as the engine tells its two maps apart.
pub(crate) const HASH_RING: u8 = 0;
pub(crate) const CHAT_ROUTER: u8 = 1;

/// XXH3-128 of `head` then `tail`, without allocating when short.
#[inline]
fn hash2(head: &[u8], tail: &[u8]) -> u128 {
    let n = head.len() + tail.len();
    if n <= 128 {
        let mut buf = [0u8; 128];
        buf[..head.len()].copy_from_slice(head);
        buf[head.len()..n].copy_from_slice(tail);
        xxh3_128(&buf[..n])
    } else {
        let mut buf = Vec::with_capacity(n);
        buf.extend_from_slice(head);
        buf.extend_from_slice(tail);
        xxh3_128(&buf)
    }
}

/// A stored item: key, last access, size, expiry (`i64::MAX`: never), insertion seq.
#[inline]
pub(crate) fn item(key: &str, access: i64, size: i64, expiry: i64, seq: u64) -> u128 {
    let mut head = [0u8; 33];
    head[0] = ITEM;
    head[1..9].copy_from_slice(&access.to_le_bytes());
    head[9..17].copy_from_slice(&size.to_le_bytes());
    head[17..25].copy_from_slice(&expiry.to_le_bytes());
    head[25..33].copy_from_slice(&seq.to_le_bytes());
    hash2(&head, key.as_bytes())
}

/// A node: name, replica count and positions in order.
pub(crate) fn node(name: &str, replicas: i64, positions: &[u64]) -> u128 {
    let mut buf = Vec::with_capacity(13 + 8 * positions.len() + name.len());
    buf.push(NODE);
    buf.extend_from_slice(&replicas.to_le_bytes());
    buf.extend_from_slice(&(positions.len() as u32).to_le_bytes());
    for p in positions {
        buf.extend_from_slice(&p.to_le_bytes());
    }
    buf.extend_from_slice(name.as_bytes());
    xxh3_128(&buf)
}

/// A node's limit, when one was set.
pub(crate) fn limit(name: &str, limit: i64) -> u128 {
    let mut head = [0u8; 9];
    head[0] = LIMIT;
    head[1..].copy_from_slice(&limit.to_le_bytes());
    hash2(&head, name.as_bytes())
}

/// A merge record: `from` was merged into `to`.
pub(crate) fn merged(from: &str, to: &str) -> u128 {
    let mut head = Vec::with_capacity(5 + from.len());
    head.push(MERGED);
    head.extend_from_slice(&(from.len() as u32).to_le_bytes());
    head.extend_from_slice(from.as_bytes());
    hash2(&head, to.as_bytes())
}

/// A ChatRouter's stale size for a request id.
pub(crate) fn stale(key: &str, size: i64) -> u128 {
    let mut head = [0u8; 9];
    head[0] = STALE;
    head[1..].copy_from_slice(&size.to_le_bytes());
    hash2(&head, key.as_bytes())
}

/// A namespace's scalars: position space, latest timestamp, next insertion seq.
#[inline]
pub(crate) fn header(space: u8, latest: i64, next_seq: u64) -> u128 {
    let mut head = [0u8; 18];
    head[0] = HEADER;
    head[1] = space;
    head[2..10].copy_from_slice(&latest.to_le_bytes());
    head[10..18].copy_from_slice(&next_seq.to_le_bytes());
    xxh3_128(&head)
}

/// The hash of a backup's bytes (computed once, when the backup is made or read).
pub(crate) fn bytes(bytes: &[u8]) -> u128 {
    xxh3_128(bytes)
}

/// A namespace's backup list, in order: `(timestamp, hash of the bytes)` each.
pub(crate) fn backups(list: impl Iterator<Item = (i64, u128)>) -> u128 {
    let mut buf = vec![BACKUPS];
    for (timestamp, hash) in list {
        buf.extend_from_slice(&timestamp.to_le_bytes());
        buf.extend_from_slice(&hash.to_le_bytes());
    }
    xxh3_128(&buf)
}

/// A namespace's share of the engine sum.
pub(crate) fn namespace(kind: u8, name: &str, sum: Sum) -> u128 {
    let mut head = [0u8; 18];
    head[0] = NAMESPACE;
    head[1] = kind;
    head[2..].copy_from_slice(&sum.to_le_bytes());
    hash2(&head, name.as_bytes())
}

/// The state digest in its raw form: 16 bytes, cheap to copy and to publish beside the
/// engine (so `Status` needs no engine lock); it displays as [`hex`] does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StateDigest(pub(crate) Sum);

impl std::fmt::Display for StateDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(self.0))
    }
}

/// The engine sum as `Status` shows it: 64 lowercase hex digits.
pub(crate) fn hex(sum: Sum) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"clockwise state digest v1");
    hasher.update(sum.to_le_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
