//! Snapshots: building one off the driver thread, installing one from the leader,
//! restoring one on start, and raft's reports of snapshots sent to followers.
//!
//! When a snapshot is due (below), the driver freezes the state machine at the applied
//! index ([`StateMachine::freeze`]: cheap) and hands it, with the index, term,
//! membership and members' addresses, to the snapshot-writer thread (one job in flight
//! at a time). That thread streams the file ([`snapshot::write_file`]: running SHA-256,
//! fsync, rename, dir fsync) and reports back on a channel the run loop selects on;
//! only then does the driver record it as the latest, compact the log up to
//! `log_retain` entries (at most `log_retain_bytes`: `retention.rs`) before it, and
//! prune older files. So neither the encoding nor the fsync ever stops the Ready loop
//! or the apply path (issue 15).
//!
//! **When one is due.** Once the log since the last snapshot passes `snapshot_entries`
//! entries or `snapshot_bytes` bytes, *and* the bytes applied since reach
//! `snapshot_growth_percent` (default 50: half) of the last snapshot file's size. The second condition makes the interval grow with the state:
//! a snapshot costs O(state), and taking one only after O(state) bytes were written
//! keeps the cost per written byte flat at any size (at a 10M-key state, the fixed
//! thresholds alone would rewrite gigabytes every few seconds). The price is a log of up
//! to half the state's size kept on disk. Raft wanting one to send skips both.
//!
//! A snapshot from the leader arrives as a file the transport already received and
//! verified into this node's snapshots dir; raft's message carries its [`Descriptor`].
//! Installing streams it into the state machine (checksum verified again at the end
//! of the stream, before the machine swaps the state in) and it becomes the stored
//! snapshot. On start, the newest stored snapshot the log can continue from is
//! restored the same way and only later entries are replayed.
//!
//! Whole-cluster backups ([`crate::RaftHandle::snapshot`]) go through the same writer
//! thread, which encodes them in memory (O(state) bytes, held until the caller is done).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use raft::eraftpb::{Snapshot, SnapshotMetadata};
use raft::SnapshotStatus;
use tokio::sync::oneshot;

use super::{Driver, ProposeError};
use crate::member::MemberAddress;
use crate::snapshot::{self, Descriptor, SnapshotData, SnapshotFileError};
use crate::state_machine::{StateMachine, StateSnapshot};
use crate::storage::{LogStore, ReadyWrite, StoreError};

/// Snapshot jobs queued for the writer thread (one stored snapshot at a time, and
/// backups besides).
pub(super) const SNAPSHOT_JOBS: usize = 2;

/// A frozen state to write, with what raft and the members need of it.
pub(super) struct Job<T> {
    meta: SnapshotMetadata,
    members: BTreeMap<u64, MemberAddress>,
    state: T,
    purpose: Purpose,
}

enum Purpose {
    /// The node's next stored snapshot: reported back to the driver as [`Built`].
    Store,
    /// A backup: the in-memory envelope, answered to the caller directly.
    Backup(oneshot::Sender<Result<Snapshot, ProposeError>>),
}

/// A stored snapshot the writer thread finished.
pub(super) struct Built {
    meta: SnapshotMetadata,
    descriptor: Descriptor,
    build: Duration,
}

/// Runs this thread at nice 10: an encoding of hundreds of megabytes then takes the CPU
/// the driver, the apply path and the gRPC workers leave, and on a small machine three
/// replicas snapshotting at the same index (they do: the trigger is deterministic) do not
/// starve their heartbeats. Best effort: a refusal leaves the priority as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory effects; on Linux `who = 0` with PRIO_PROCESS
    // names the calling thread (the nice value is per thread there).
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Starts the snapshot-writer thread for snapshots stored in `dir`. It ends when the
/// driver drops its end of `jobs`.
pub(super) fn spawn_writer<T: StateSnapshot>(
    id: u64,
    dir: PathBuf,
    jobs: Receiver<Job<T>>,
    built: Sender<Result<Built, StoreError>>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name(format!("snapshot-{id}"))
        .spawn(move || {
            lower_priority();
            for job in jobs {
                match job.purpose {
                    Purpose::Store => {
                        let started = Instant::now();
                        let written =
                            snapshot::write_file(&dir, &job.meta, &job.members, &mut |out| {
                                job.state.write_to(out)
                            });
                        // The frozen state is dropped here, off the driver thread.
                        drop(job.state);
                        let outcome = written.map_err(StoreError::from).map(|descriptor| Built {
                            meta: job.meta,
                            descriptor,
                            build: started.elapsed(),
                        });
                        if built.send(outcome).is_err() {
                            return; // the driver stopped
                        }
                    }
                    Purpose::Backup(reply) => {
                        let mut state = Vec::new();
                        let outcome = job
                            .state
                            .write_to(&mut state)
                            .map(|()| {
                                let mut snapshot = Snapshot {
                                    data: SnapshotData {
                                        members: job.members,
                                        state,
                                    }
                                    .encode()
                                    .into(),
                                    ..Snapshot::default()
                                };
                                snapshot.set_metadata(job.meta);
                                snapshot
                            })
                            .map_err(|e| {
                                ProposeError::Refused(format!("cannot encode a snapshot: {e}"))
                            });
                        let _ = reply.send(outcome);
                    }
                }
            }
        })
        .map_err(|e| StoreError::Raft(format!("cannot start the snapshot thread: {e}")))?;
    Ok(())
}

/// Restores the newest stored snapshot the log can continue from into `machine`
/// (streaming from its file, checksum verified before the state is swapped in) and
/// records it as the latest; answers its index (0: none, the whole log is applied)
/// and file size.
pub(super) fn restore_latest_snapshot<S: StateMachine>(
    store: &LogStore,
    machine: &mut S,
) -> Result<(u64, u64), StoreError> {
    use raft::Storage as _;
    let truncated = store
        .first_index()
        .map_err(|e| StoreError::Raft(e.to_string()))?
        - 1;
    // A snapshot beyond the stored commit index was written just before a crash
    // interrupted its install or compaction: the log (and an older snapshot) still
    // hold everything, so it is not used.
    let commit = store.hard_state()?.commit;
    store.discard_snapshots_after(commit.max(truncated))?;
    let Some(path) = store.latest_snapshot_file_within(truncated, commit.max(truncated))? else {
        if truncated > 0 {
            return Err(StoreError::Corrupt(
                "the log is compacted but no stored snapshot covers it",
            ));
        }
        return Ok((0, 0));
    };
    let (header, mut reader) = match snapshot::open_file(&path, None) {
        Ok(opened) => opened,
        Err(SnapshotFileError::Malformed(_)) if is_legacy_file(&path) => {
            return restore_legacy_file(store, machine, &path);
        }
        Err(e) => return Err(e.into()),
    };
    machine
        .restore_from(&mut reader)
        .map_err(|e| StoreError::Raft(format!("restoring the stored snapshot: {e}")))?;
    reader.finish()?;
    let descriptor = reader
        .descriptor(&header.meta)
        .ok_or(StoreError::Corrupt("a restored snapshot was not verified"))?;
    let index = header.meta.index;
    machine.restored_at(index);
    store.set_latest_snapshot(header.meta, descriptor);
    Ok((index, descriptor.len))
}

/// Whether `path` is a snapshot file of the format before issue 15: raft's `Snapshot`
/// message, its data the in-memory envelope.
fn is_legacy_file(path: &std::path::Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head != snapshot::FILE_MAGIC
}

/// Restores a snapshot file of the format before issue 15 (read whole into memory,
/// once, on the first start after an upgrade) and rewrites it in today's format under
/// the same name.
fn restore_legacy_file<S: StateMachine>(
    store: &LogStore,
    machine: &mut S,
    path: &std::path::Path,
) -> Result<(u64, u64), StoreError> {
    use protobuf::Message as _;
    let bytes = std::fs::read(path).map_err(|source| StoreError::SnapshotFile {
        path: path.display().to_string(),
        source,
    })?;
    let legacy = Snapshot::parse_from_bytes(&bytes)
        .map_err(|_| StoreError::Corrupt("a snapshot file does not decode"))?;
    let data = SnapshotData::decode(&legacy.data)
        .map_err(|e| StoreError::Raft(format!("stored snapshot: {e}")))?;
    machine
        .restore_from(&mut &data.state[..])
        .map_err(|e| StoreError::Raft(format!("restoring the stored snapshot: {e}")))?;
    let descriptor = store.save_snapshot(&legacy)?;
    machine.restored_at(descriptor.index);
    tracing::info!(
        index = descriptor.index,
        "rewrote a stored snapshot in the streaming format"
    );
    Ok((descriptor.index, descriptor.len))
}

impl<S: StateMachine> Driver<S> {
    /// Tells raft how a snapshot sent to `to` ended (it resumes or retries).
    pub(super) fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.node.report_snapshot(to, status);
    }

    /// Installs a snapshot from the leader, whose file the transport received and
    /// verified into the snapshots dir: restores the state machine from it (verified
    /// again while streaming), takes its members and records it as the latest (the
    /// caller records it in the log).
    pub(super) fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<Snapshot, StoreError> {
        let meta = snapshot.get_metadata();
        let descriptor = Descriptor::decode(&snapshot.data)
            .map_err(|e| StoreError::Raft(format!("received snapshot descriptor: {e}")))?;
        if (descriptor.index, descriptor.term) != (meta.index, meta.term) {
            return Err(StoreError::Raft(
                "a received snapshot's descriptor names another index or term".into(),
            ));
        }
        let path = self.store.snapshot_path(&descriptor);
        // The transport checked it on arrival (or kept this node's own file of the same
        // index and term, whose bytes may differ): it is checked against itself here,
        // and a mismatch is a damaged disk: stop.
        let (header, mut reader) = snapshot::open_file(&path, None)?;
        if (header.meta.index, header.meta.term) != (meta.index, meta.term) {
            return Err(StoreError::Raft(
                "a received snapshot file holds another index or term".into(),
            ));
        }
        self.machine
            .restore_from(&mut reader)
            .map_err(|e| StoreError::Raft(format!("restoring the received snapshot: {e}")))?;
        reader.finish()?;
        let descriptor = reader.descriptor(meta).ok_or(StoreError::Corrupt(
            "an installed snapshot was not verified",
        ))?;
        self.machine.restored_at(meta.index);
        self.store.set_latest_snapshot(meta.clone(), descriptor);
        let members = header.members;
        for (&id, address) in &members {
            if id != self.node.raft.id && self.members.get(&id) != Some(address) {
                self.transport.add_peer(id, address);
            }
        }
        for &id in self.members.keys() {
            if !members.contains_key(&id) {
                self.transport.remove_peer(id);
            }
        }
        self.members = members;
        let index = meta.index;
        self.applied_conf_index = index;
        self.snapshot_index = index;
        self.last_snapshot_bytes = descriptor.len;
        self.bytes_since_snapshot = 0;
        tracing::info!(
            index,
            bytes = descriptor.len,
            "installed a snapshot from the leader"
        );
        Ok(snapshot.clone())
    }

    /// Index, term and membership as of the applied index.
    fn snapshot_meta(&self) -> Result<SnapshotMetadata, StoreError> {
        let applied = self.node.raft.raft_log.applied;
        if applied < self.applied_conf_index {
            // Still replaying entries the stored membership already reflects: a snapshot
            // now would pair this state with a later membership.
            return Err(StoreError::Raft(
                "the node is still replaying its log; retry shortly".into(),
            ));
        }
        let term = self
            .node
            .raft
            .raft_log
            .term(applied)
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        let mut meta = SnapshotMetadata {
            index: applied,
            term,
            ..SnapshotMetadata::default()
        };
        meta.set_conf_state(self.node.raft.prs().conf().to_conf_state());
        Ok(meta)
    }

    fn job(&self, meta: SnapshotMetadata, purpose: Purpose) -> Job<S::Snapshot> {
        Job {
            meta,
            members: self.members.clone(),
            state: self.machine.freeze(),
            purpose,
        }
    }

    /// A backup as of the applied index, encoded on the writer thread; answered on
    /// `reply`.
    pub(super) fn take_backup(&mut self, reply: oneshot::Sender<Result<Snapshot, ProposeError>>) {
        let meta = match self.snapshot_meta() {
            Ok(meta) => meta,
            Err(e) => {
                let _ = reply.send(Err(ProposeError::Refused(format!(
                    "cannot take a snapshot: {e}"
                ))));
                return;
            }
        };
        let job = self.job(meta, Purpose::Backup(reply));
        if let Err(e) = self.snapshot_jobs.try_send(job) {
            let (TrySendError::Full(job) | TrySendError::Disconnected(job)) = e;
            if let Purpose::Backup(reply) = job.purpose {
                let _ = reply.send(Err(ProposeError::Busy));
            }
        }
    }

    /// Hands a snapshot at the applied index to the writer thread when one is due (see
    /// the module docs) or raft wants one to send, and none is being built.
    pub(super) fn maybe_snapshot(&mut self) -> Result<(), StoreError> {
        let applied = self.node.raft.raft_log.applied;
        if applied < self.applied_conf_index || self.building.is_some() {
            return Ok(()); // replaying (see `snapshot_meta`), or one at a time
        }
        let wanted = self.store.take_snapshot_wanted();
        let threshold = applied - self.snapshot_index.min(applied) >= self.snapshot_entries
            || self.bytes_since_snapshot >= self.snapshot_bytes;
        let grown = self.bytes_since_snapshot.saturating_mul(100)
            >= self
                .last_snapshot_bytes
                .saturating_mul(self.snapshot_growth_percent);
        if applied <= self.snapshot_index || !((threshold && grown) || wanted) {
            return Ok(());
        }
        let job = self.job(self.snapshot_meta()?, Purpose::Store);
        match self.snapshot_jobs.try_send(job) {
            Ok(()) => {
                self.building = Some(applied);
                self.bytes_since_snapshot = 0;
                Ok(())
            }
            // A backup occupies the queue: try again after the next Ready.
            Err(TrySendError::Full(_)) => {
                if wanted {
                    self.store.want_snapshot();
                }
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Raft(
                "the snapshot writer thread stopped".into(),
            )),
        }
    }

    /// The writer thread finished a stored snapshot: it becomes the latest, the log is
    /// compacted behind it and older files pruned. A write error is fatal, as for the
    /// log.
    pub(super) fn snapshot_built(
        &mut self,
        built: Result<Built, StoreError>,
    ) -> Result<(), StoreError> {
        self.building = None;
        let Built {
            meta,
            descriptor,
            build,
        } = built?;
        self.stats.snapshot_seconds.observe(build.as_secs_f64());
        let index = meta.index;
        if index <= self.snapshot_index {
            // A newer snapshot from the leader was installed meanwhile.
            if index < self.snapshot_index {
                let _ = std::fs::remove_file(self.store.snapshot_path(&descriptor));
            }
            return Ok(());
        }
        self.store.set_latest_snapshot(meta, descriptor);
        // A restart uses a snapshot only up to the stored commit index: store it (synced)
        // with the compaction, and only then drop the older snapshot.
        let hard_state = self.node.raft.hard_state();
        let compact_to = self.retention.compact_to(index);
        if compact_to >= self.node.raft.raft_log.first_index() {
            let term = self
                .node
                .raft
                .raft_log
                .term(compact_to)
                .map_err(|e| StoreError::Raft(e.to_string()))?;
            self.store.compact(compact_to, term, Some(&hard_state))?;
        } else {
            self.store.write(ReadyWrite {
                hard_state: Some(&hard_state),
                sync: true,
                ..ReadyWrite::default()
            })?;
        }
        self.store.prune_snapshots_later(index);
        self.snapshot_index = index;
        self.last_snapshot_bytes = descriptor.len;
        tracing::info!(
            index,
            bytes = descriptor.len,
            build_ms = build.as_millis() as u64,
            compacted_to = compact_to,
            "took a snapshot"
        );
        self.publish_status();
        // What was applied while this one was written may already make the next due
        // (an idle node has no Ready to check it after).
        self.maybe_snapshot()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use protobuf::Message as _;
    use raft::eraftpb::{ConfState, Entry, HardState};
    use raft::Storage as _;

    use super::*;
    use crate::snapshot::BytesSnapshot;

    /// A state that is its last restored bytes.
    #[derive(Default)]
    struct Bytes(Vec<u8>);

    #[derive(Debug, thiserror::Error)]
    #[error("unreadable")]
    struct Unreadable;

    impl StateMachine for Bytes {
        type Error = Unreadable;
        type Snapshot = BytesSnapshot;
        fn apply(&mut self, _index: u64, _data: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn freeze(&self) -> BytesSnapshot {
            BytesSnapshot(self.0.clone())
        }
        fn restore_from(&mut self, reader: &mut dyn std::io::Read) -> Result<(), Unreadable> {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).map_err(|_| Unreadable)?;
            self.0 = bytes;
            Ok(())
        }
    }

    /// A store holding entries 1..=10 (commit 10), compacted to 6, with `file` written
    /// as the stored snapshot at index 8.
    fn store_with_snapshot_file(name: &str, file: impl FnOnce(&LogStore, Snapshot)) -> LogStore {
        let dir = std::env::temp_dir().join(format!(
            "clockwise-driver-snapshots-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = LogStore::open(&dir).unwrap();
        let entries: Vec<Entry> = (1..=10)
            .map(|index| Entry {
                index,
                term: 1,
                ..Entry::default()
            })
            .collect();
        store
            .write(ReadyWrite {
                entries: &entries,
                hard_state: Some(&HardState {
                    term: 1,
                    commit: 10,
                    ..HardState::default()
                }),
                conf_state: Some(&ConfState::from((vec![1, 2], vec![]))),
                sync: true,
                ..ReadyWrite::default()
            })
            .unwrap();
        let mut snapshot = Snapshot {
            data: SnapshotData {
                members: BTreeMap::from([(1, MemberAddress::decode("h:1"))]),
                state: b"state at 8".to_vec(),
            }
            .encode()
            .into(),
            ..Snapshot::default()
        };
        snapshot.mut_metadata().index = 8;
        snapshot.mut_metadata().term = 1;
        snapshot
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2], vec![])));
        file(&store, snapshot);
        store.compact(6, 1, None).unwrap();
        store
    }

    #[test]
    fn a_restart_restores_the_stored_file_streaming_and_offers_it() {
        let store = store_with_snapshot_file("current", |store, snapshot| {
            store.save_snapshot(&snapshot).unwrap();
        });
        // As a fresh process: nothing recorded as the latest yet.
        let dir = store.snapshot_dir().parent().unwrap().to_owned();
        drop(store);
        let store = LogStore::open(&dir).unwrap();
        let mut machine = Bytes::default();
        let (index, len) = restore_latest_snapshot(&store, &mut machine).unwrap();
        assert_eq!(index, 8);
        assert_eq!(machine.0, b"state at 8");
        let offered = store.snapshot(8, 2).unwrap();
        assert_eq!(Descriptor::decode(&offered.data).unwrap().len, len);
        let _ = std::fs::remove_dir_all(store.snapshot_dir().parent().unwrap());
    }

    #[test]
    fn a_stored_file_of_the_format_before_issue_15_is_restored_and_rewritten() {
        let store = store_with_snapshot_file("legacy", |store, snapshot| {
            let path = store.snapshot_dir().join(snapshot::file_name(8, 1));
            std::fs::write(path, snapshot.write_to_bytes().unwrap()).unwrap();
        });
        let mut machine = Bytes::default();
        assert_eq!(restore_latest_snapshot(&store, &mut machine).unwrap().0, 8);
        assert_eq!(machine.0, b"state at 8");
        let path = store.snapshot_dir().join(snapshot::file_name(8, 1));
        let (header, data) = snapshot::read_file_to_memory(&path).unwrap();
        assert_eq!(
            (header.meta.index, data.state.as_slice()),
            (8, &b"state at 8"[..])
        );
        assert!(store.snapshot(8, 2).is_ok(), "offered in the new format");
        let _ = std::fs::remove_dir_all(store.snapshot_dir().parent().unwrap());
    }

    #[test]
    fn a_damaged_stored_file_stops_the_start() {
        let store = store_with_snapshot_file("damaged", |store, snapshot| {
            let descriptor = store.save_snapshot(&snapshot).unwrap();
            let path = store.snapshot_path(&descriptor);
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 40;
            bytes[last] ^= 1;
            std::fs::write(&path, bytes).unwrap();
        });
        let mut machine = Bytes(b"before".to_vec());
        assert!(restore_latest_snapshot(&store, &mut machine).is_err());
        assert_eq!(machine.0, b"before", "nothing swapped in");
        let _ = std::fs::remove_dir_all(store.snapshot_dir().parent().unwrap());
    }
}
