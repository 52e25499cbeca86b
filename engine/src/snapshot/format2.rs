//! Format 2 (before issue 15: canonical, in memory), still read.

use super::super::backups::Backup;
use super::super::digest;
use super::super::namespace::Namespace;
use super::super::{ChatRouter, Engine, HashRing};
use super::codec::Reader;
use super::ring_state::{decode_ring, ring_state_from};
use super::SnapshotError;

/// A format-2 snapshot after its magic and version: the state is rebuilt (seqs
/// renumbered in insertion order, as format 2 always did) and its digest computed.
pub(super) fn read_version_2(bytes: &[u8]) -> Result<Engine, SnapshotError> {
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
