//! Format 3, written: a frozen [`EngineView`] streamed through a buffer.

use std::io::Write;

use super::codec::Output;
use super::{EngineView, NamespaceView, BUFFER, MAGIC, VERSION};

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
    for (from, to) in ns.merged.iter() {
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
