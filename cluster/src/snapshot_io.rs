//! Writers for the snapshot files: hashing what passes, and syncing as they go.

use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, Instant};

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
/// file's data is written back (see `write_back`), so a file of hundreds of megabytes never piles up dirty pages
/// whose final flush would stall the raft log's fsyncs (on the same disk) for seconds.
const SYNC_EVERY: u64 = 8 << 20;

/// Starts writing the file's dirty pages to disk and waits for them, without the
/// journal commit an fsync forces (which the log's own fsyncs would queue behind), in
/// the manner of RocksDB's `bytes_per_sync`; the file's final `sync_all` makes it
/// durable. Elsewhere than Linux: `sync_data`.
fn write_back(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a plain syscall on a descriptor this `File` owns; no memory is shared.
        let done = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                0,
                0,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )
        };
        if done == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    file.sync_data()
}

/// The pace a node writes its own snapshot at. Every replica snapshots at the same
/// index, so on one machine (or one shared disk) they write at once: at full speed three
/// 500 MB files took most of a disk's bandwidth for seconds and the log's fsyncs (every
/// write's latency) queued behind them. A snapshot is not urgent; a write is.
pub(crate) const PACED_BYTES_PER_SECOND: u64 = 64 << 20;

/// A file that syncs its data every [`SYNC_EVERY`] bytes written (see there), and
/// optionally writes no faster than a given pace.
pub(crate) struct SyncingFile {
    pub(crate) file: File,
    unsynced: u64,
    pace: Option<(u64, Instant)>,
}

impl SyncingFile {
    pub(crate) fn new(file: File) -> Self {
        SyncingFile {
            file,
            unsynced: 0,
            pace: None,
        }
    }

    /// Also waits, after each sync, until `bytes_per_second` allows the next bytes.
    pub(crate) fn paced(file: File, bytes_per_second: u64) -> Self {
        SyncingFile {
            pace: Some((bytes_per_second.max(1), Instant::now())),
            ..SyncingFile::new(file)
        }
    }
}

impl Write for SyncingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            write_back(&self.file)?;
            if let Some((rate, since)) = &mut self.pace {
                let due = Duration::from_secs_f64(self.unsynced as f64 / *rate as f64);
                // Pacing, on the snapshot thread only: nothing waits for it but the
                // snapshot itself.
                if let Some(early) = due.checked_sub(since.elapsed()) {
                    std::thread::sleep(early);
                }
                *since = Instant::now();
            }
            self.unsynced = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
