//! The log store's deletions, on a thread of their own: raft-engine's purge of files that
//! compaction emptied, and snapshot files older than the latest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft_engine::Engine;

use crate::snapshot::FILE_EXT;

/// File deletions off the driver thread. Removing a 500 MB snapshot or 128 MB log files
/// is not free (ext4 frees the extents in its journal; mounted with `discard`, it trims
/// them too), and the driver thread is every write's path; raft-engine's own guidance is
/// to purge from a background thread.
pub(crate) struct Cleaner {
    jobs: Option<std::sync::mpsc::SyncSender<Cleanup>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub(crate) enum Cleanup {
    /// raft-engine's files that compaction left without live entries.
    PurgeLog,
    /// Snapshot files older than this index.
    PruneSnapshots(u64),
}

/// Cleanups queued at most; beyond, one is skipped (the next compaction or snapshot
/// asks again, and each cleanup does all that is due).
const CLEANUPS_QUEUED: usize = 8;

impl Cleaner {
    /// The thread holds the engine weakly: a store dropped and reopened (a restart in
    /// tests) must find raft-engine's directory lock released.
    pub(crate) fn spawn(engine: &Arc<Engine>, snapshot_dir: PathBuf) -> std::io::Result<Cleaner> {
        let (jobs, queue) = std::sync::mpsc::sync_channel(CLEANUPS_QUEUED);
        let engine = Arc::downgrade(engine);
        let thread = std::thread::Builder::new()
            .name("log-cleaner".into())
            .spawn(move || {
                // Ends when the last store clone is dropped (the queue closes).
                for job in queue {
                    let done = match job {
                        Cleanup::PurgeLog => match engine.upgrade() {
                            Some(engine) => engine
                                .purge_expired_files()
                                .map(drop)
                                .map_err(|e| e.to_string()),
                            None => Ok(()),
                        },
                        Cleanup::PruneSnapshots(index) => {
                            prune_snapshot_files(&snapshot_dir, index).map_err(|e| e.to_string())
                        }
                    };
                    if let Err(error) = done {
                        tracing::warn!(%error, "cleaning up the raft log's files failed");
                    }
                }
            })?;
        Ok(Cleaner {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    pub(crate) fn ask(&self, job: Cleanup) {
        // Full: a cleanup is pending that will do this one's work too, or the next will.
        if let Some(jobs) = &self.jobs {
            let _ = jobs.try_send(job);
        }
    }
}

impl Drop for Cleaner {
    /// Closes the queue and waits for the cleanup in progress, so nothing of the store
    /// outlives it.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Removes the snapshot files in `dir` older than `index`.
pub(crate) fn prune_snapshot_files(dir: &Path, index: u64) -> std::io::Result<()> {
    for (older, path) in snapshot_files_in(dir)? {
        if older < index {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(())
}

/// The snapshot files in `dir`, oldest first (temporary ones are not listed: one may
/// be a snapshot being received).
pub(crate) fn snapshot_files_in(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let index = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == FILE_EXT))
            .and_then(|stem| stem.split_once('-'))
            .and_then(|(index, _)| index.parse::<u64>().ok());
        if let Some(index) = index {
            files.push((index, path));
        }
    }
    files.sort_unstable();
    Ok(files)
}
