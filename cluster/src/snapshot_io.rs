//! Writers for the snapshot files: hashing what passes, and syncing as they go.

use std::fs::File;
use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// Counts and hashes what passes through to `inner`.
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Most bytes of a snapshot file written ahead of the disk: every `SYNC_EVERY` bytes the
/// file's data is synced, so a file of hundreds of megabytes never piles up dirty pages
/// whose final flush would stall the raft log's fsyncs (on the same disk) for seconds.
const SYNC_EVERY: u64 = 8 << 20;

/// A file that syncs its data every [`SYNC_EVERY`] bytes written (see there).
pub(crate) struct SyncingFile {
    pub(crate) file: File,
    unsynced: u64,
}

impl SyncingFile {
    pub(crate) fn new(file: File) -> Self {
        SyncingFile { file, unsynced: 0 }
    }
}

impl Write for SyncingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
