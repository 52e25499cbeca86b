//! The durable log: raft entries, hard state, membership, the truncation point and the
//! applied index of one raft group, in raft-engine (`<dir>/log`); and the latest
//! snapshot, as one fsync'd file (`<dir>/snapshots`, format in [`crate::snapshot`]).
//!
//! Everything one Ready needs persisted goes into one `LogBatch` and one write, synced
//! when raft says so (`Ready::must_sync`); raft-engine groups concurrent synced writes,
//! so writers share fsyncs. Reads (`raft::Storage`) go to raft-engine's memtable.
//! Writes block on fsync: call them from a blocking thread, never a tokio worker.
//!
//! A snapshot file is written (to a temporary name, synced, renamed, directory synced)
//! before the log is compacted up to it, so a crash between the two leaves a longer
//! log, never a gap. Raft asks for a snapshot to send through `Storage::snapshot`:
//! the store answers from the latest stored file's metadata and [`Descriptor`] kept in
//! memory (no file read, no hashing in raft's step); the transport streams the file.
//! When the stored one is too old or predates the follower's membership, the store
//! says "not yet" and raises [`LogStore::take_snapshot_wanted`] for the driver, which
//! builds a fresh one.
//!
//! `Storage::term` answers from a small in-memory index of term runs (the first index
//! of each term in the log), kept with every append, truncation, compaction and
//! install and rebuilt on open: ReadIndex and append checks never decode entries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata,
};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::{Command, Config, Engine, LogBatch, MessageExt, ReadableSize};

use crate::log_cleaner::{prune_snapshot_files, snapshot_files_in, Cleaner, Cleanup};
use crate::member::MemberAddress;
use crate::snapshot::{self, Descriptor, SnapshotData, SnapshotFileError};
pub use crate::terms::TermIndex;

/// raft-engine's "region": the one raft group of a node.
const GROUP: u64 = 1;
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
/// `SnapshotMetadata { index, term }` of the last entry dropped from the log.
const KEY_TRUNCATED: &[u8] = b"truncated";
/// The last applied index, big-endian `u64`.
const KEY_APPLIED: &[u8] = b"applied";
/// Every member's addresses, as `id=address` lines (the stored form of [`MemberAddress`]).
const KEY_MEMBERS: &[u8] = b"members";
/// Log index of the last membership change in the stored configuration, big-endian `u64`.
const KEY_CONF_INDEX: &[u8] = b"conf_index";
/// The cluster's identity (see [`crate::identity`]), as its text.
const KEY_CLUSTER_ID: &[u8] = b"cluster_id";

/// Entries decoded at a time while rebuilding the term index on open.
const TERM_SCAN_BATCH: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot prepare the log directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("snapshot file {path}: {source}")]
    SnapshotFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Snapshot(#[from] SnapshotFileError),
    #[error("raft log: {0}")]
    Engine(#[from] raft_engine::Error),
    #[error("raft log is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("raft: {0}")]
    Raft(String),
}

#[derive(Clone)]
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;
    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

/// What one Ready (or one apply step) persists, in one write.
#[derive(Default)]
pub struct ReadyWrite<'a> {
    /// A snapshot to install: the log is emptied up to it and its membership kept.
    pub snapshot: Option<&'a SnapshotMetadata>,
    /// New entries; an entry at or below the last index replaces the tail from there.
    pub entries: &'a [Entry],
    pub hard_state: Option<&'a HardState>,
    pub conf_state: Option<&'a ConfState>,
    /// Every member's address (replaces the stored set).
    pub members: Option<&'a BTreeMap<u64, MemberAddress>>,
    /// The log index of the membership change `conf_state` reflects.
    pub conf_index: Option<u64>,
    pub applied: Option<u64>,
    /// The cluster's identity (written once: when founding, seeding or adopting).
    pub cluster_id: Option<&'a str>,
    /// fsync before returning (raft's `must_sync`).
    pub sync: bool,
}

/// One node's durable raft log. Cheap to clone (shares the engine).
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<Engine>,
    snapshots: Arc<SnapshotFiles>,
    /// Term runs of the log (see [`TermIndex`]); written by the one writer (the driver
    /// thread) right after each log write, read by raft on the same thread.
    terms: Arc<Mutex<TermIndex>>,
    /// Deletes what compaction and new snapshots leave behind, on a thread of its own.
    cleaner: Arc<Cleaner>,
}

/// The latest snapshot, on disk, and what raft last asked of it.
struct SnapshotFiles {
    dir: PathBuf,
    /// The latest stored snapshot's metadata and descriptor (a few hundred bytes
    /// whatever the state's size): what `Storage::snapshot` answers with.
    latest: Mutex<Option<(SnapshotMetadata, Descriptor)>>,
    /// Raft wanted to send a snapshot that the stored one cannot serve.
    wanted: AtomicBool,
}

impl LogStore {
    /// Opens (or creates) the store in `dir`, replaying the log on disk.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let dir_error = |source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        };
        let log_dir = dir.join("log");
        let snapshot_dir = dir.join("snapshots");
        std::fs::create_dir_all(&snapshot_dir).map_err(dir_error)?;
        // Temporary files are left only by a crash mid-write or mid-receive.
        for entry in std::fs::read_dir(&snapshot_dir)
            .map_err(dir_error)?
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let config = Config {
            dir: log_dir
                .to_str()
                .ok_or(StoreError::Corrupt("log path is not UTF-8"))?
                .to_owned(),
            target_file_size: ReadableSize::mb(128),
            purge_threshold: ReadableSize::gb(1),
            ..Config::default()
        };
        let engine = Arc::new(Engine::open(config)?);
        let snapshots = Arc::new(SnapshotFiles {
            dir: snapshot_dir,
            latest: Mutex::new(None),
            wanted: AtomicBool::new(false),
        });
        let cleaner = Cleaner::spawn(&engine, snapshots.dir.clone()).map_err(|source| {
            StoreError::SnapshotFile {
                path: "the log cleaner thread".into(),
                source,
            }
        })?;
        let store = LogStore {
            engine,
            snapshots,
            terms: Arc::new(Mutex::new(TermIndex::default())),
            cleaner: Arc::new(cleaner),
        };
        store.rebuild_term_index()?;
        Ok(store)
    }

    /// Scans the log once (in batches) for its term runs.
    fn rebuild_term_index(&self) -> Result<(), StoreError> {
        let truncated = self
            .truncated()
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        let mut index = TermIndex::default();
        index.install(truncated.index, truncated.term);
        if let (Some(first), Some(last)) = (
            self.engine.first_index(GROUP),
            self.engine.last_index(GROUP),
        ) {
            let mut low = first;
            let mut batch = Vec::new();
            while low <= last {
                let high = (low + TERM_SCAN_BATCH).min(last + 1);
                batch.clear();
                self.engine
                    .fetch_entries_to::<EntryExt>(GROUP, low, high, None, &mut batch)?;
                index.append(&batch);
                low = high;
            }
        }
        *self.terms.lock().unwrap_or_else(PoisonError::into_inner) = index;
        Ok(())
    }

    /// The term runs as they are now (for tests and diagnostics).
    pub fn term_index(&self) -> TermIndex {
        self.terms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where this node's snapshot files are (the transport streams from and receives
    /// into it).
    pub fn snapshot_dir(&self) -> &Path {
        &self.snapshots.dir
    }

    /// Stores an in-memory snapshot (`snapshot.data` an in-memory [`SnapshotData`]
    /// envelope: backups, seeding, tests) as a snapshot file, the latest. Older files
    /// stay; the log is not compacted here: see [`LogStore::compact`].
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Descriptor, StoreError> {
        let data = SnapshotData::decode(&snapshot.data)
            .map_err(|e| StoreError::Raft(format!("snapshot to store: {e}")))?;
        let meta = snapshot.get_metadata();
        let descriptor =
            snapshot::write_file(&self.snapshots.dir, meta, &data.members, &mut |out| {
                out.write_all(&data.state)
            })?;
        self.set_latest_snapshot(meta.clone(), descriptor);
        Ok(descriptor)
    }

    /// Records the file `descriptor` names (already stored) as the latest snapshot,
    /// the one `Storage::snapshot` offers.
    pub fn set_latest_snapshot(&self, meta: SnapshotMetadata, descriptor: Descriptor) {
        *self
            .snapshots
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((meta, descriptor));
    }

    /// The path of the stored file `descriptor` names.
    pub fn snapshot_path(&self, descriptor: &Descriptor) -> PathBuf {
        self.snapshots.dir.join(descriptor.file_name())
    }

    /// The latest stored snapshot, read into memory as an in-memory envelope (O(state):
    /// for backups and tests), checksum verified.
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let Some(path) = self.latest_snapshot_file_within(0, u64::MAX)? else {
            return Ok(None);
        };
        let (header, data) = snapshot::read_file_to_memory(&path)?;
        let mut snapshot = Snapshot {
            data: data.encode().into(),
            ..Snapshot::default()
        };
        snapshot.set_metadata(header.meta);
        Ok(Some(snapshot))
    }

    /// The path of the latest stored snapshot file whose index is in `low..=high`.
    pub fn latest_snapshot_file_within(
        &self,
        low: u64,
        high: u64,
    ) -> Result<Option<PathBuf>, StoreError> {
        Ok(self
            .snapshot_files()?
            .into_iter()
            .rev()
            .find(|(index, _)| (low..=high).contains(index))
            .map(|(_, path)| path))
    }

    /// Removes the snapshot files older than `index` (call once the log no longer
    /// needs them: after the compaction or install that the newer one covers).
    pub fn prune_snapshots(&self, index: u64) -> Result<(), StoreError> {
        prune_snapshot_files(&self.snapshots.dir, index).map_err(|source| {
            StoreError::SnapshotFile {
                path: self.snapshots.dir.display().to_string(),
                source,
            }
        })
    }

    /// [`Self::prune_snapshots`] on the cleaner thread: the driver does not wait for it.
    pub fn prune_snapshots_later(&self, index: u64) {
        self.cleaner.ask(Cleanup::PruneSnapshots(index));
    }

    /// The snapshot files, oldest first (temporary ones are not listed: one may be a
    /// snapshot being received).
    fn snapshot_files(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let dir = &self.snapshots.dir;
        snapshot_files_in(dir).map_err(|source| StoreError::SnapshotFile {
            path: dir.display().to_string(),
            source,
        })
    }

    /// Whether raft asked for a snapshot the stored one could not serve since the
    /// last call (clears the flag).
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshots.wanted.swap(false, Ordering::AcqRel)
    }

    /// Raises [`LogStore::take_snapshot_wanted`] again (a build had to wait).
    pub fn want_snapshot(&self) {
        self.snapshots.wanted.store(true, Ordering::Release);
    }

    /// Records the first membership of a new cluster (voters and their addresses) and
    /// its identity `cluster_id`; a log that has a membership keeps it. Answers whether
    /// it wrote.
    ///
    /// The membership is written as the log's first entries too (one committed
    /// `AddNode` per voter, term 1, the same on every founding node), so a node that
    /// joins later learns the founders by replaying the log.
    pub fn bootstrap(
        &self,
        members: &BTreeMap<u64, MemberAddress>,
        cluster_id: &str,
    ) -> Result<bool, StoreError> {
        if self.conf_state()?.is_some() {
            return Ok(false);
        }
        let voters: Vec<u64> = members.keys().copied().collect();
        let conf_state = ConfState::from((voters, Vec::new()));
        let entries = members
            .iter()
            .zip(1..)
            .map(|((&id, address), index)| {
                let mut change = ConfChange::default();
                change.set_change_type(ConfChangeType::AddNode);
                change.node_id = id;
                change.context = address.encode().into_bytes().into();
                let mut entry = Entry::default();
                entry.set_entry_type(EntryType::EntryConfChange);
                entry.index = index;
                entry.term = 1;
                entry.data = change
                    .write_to_bytes()
                    .map_err(|_| StoreError::Corrupt("bootstrap membership"))?
                    .into();
                Ok(entry)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let hard_state = HardState {
            term: 1,
            commit: entries.len() as u64,
            ..HardState::default()
        };
        self.write(ReadyWrite {
            entries: &entries,
            hard_state: Some(&hard_state),
            conf_state: Some(&conf_state),
            conf_index: Some(entries.len() as u64),
            members: Some(members),
            cluster_id: Some(cluster_id),
            sync: true,
            ..ReadyWrite::default()
        })?;
        Ok(true)
    }

    /// The cluster's identity as stored (`None`: a node that has not learnt it yet, or
    /// a log written by a version without identities).
    pub fn cluster_id(&self) -> Result<Option<String>, StoreError> {
        self.engine
            .get(GROUP, KEY_CLUSTER_ID)
            .map(|bytes| {
                String::from_utf8(bytes).map_err(|_| StoreError::Corrupt("cluster id is not UTF-8"))
            })
            .transpose()
    }

    /// Whether the store holds nothing of a raft group: no membership, no entries, no
    /// snapshot installed (a new or wiped data dir, or a joining node not yet reached).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.conf_state()?.is_none()
            && self.engine.last_index(GROUP).is_none()
            && self
                .truncated()
                .map_err(|e| StoreError::Raft(e.to_string()))?
                .index
                == 0)
    }

    /// Every member's address as last recorded.
    pub fn members(&self) -> Result<BTreeMap<u64, MemberAddress>, StoreError> {
        let Some(bytes) = self.engine.get(GROUP, KEY_MEMBERS) else {
            return Ok(BTreeMap::new());
        };
        let text =
            String::from_utf8(bytes).map_err(|_| StoreError::Corrupt("members are not UTF-8"))?;
        text.lines()
            .map(|line| {
                let (id, addr) = line
                    .split_once('=')
                    .ok_or(StoreError::Corrupt("member line"))?;
                let id = id.parse().map_err(|_| StoreError::Corrupt("member id"))?;
                Ok((id, MemberAddress::decode(addr)))
            })
            .collect()
    }

    /// Persists one write as a single batch.
    pub fn write(&self, write: ReadyWrite<'_>) -> Result<(), StoreError> {
        let mut batch = LogBatch::default();
        if let Some(snapshot) = write.snapshot {
            // Drop every entry the snapshot covers (and any stale tail beyond it).
            let last = self.engine.last_index(GROUP).unwrap_or(0);
            batch.add_command(
                GROUP,
                Command::Compact {
                    index: snapshot.index.max(last) + 1,
                },
            );
            let truncated = truncation_point(snapshot.index, snapshot.term);
            batch.put_message(GROUP, KEY_TRUNCATED.to_vec(), &truncated)?;
            batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), snapshot.get_conf_state())?;
        }
        if !write.entries.is_empty() {
            batch.add_entries::<EntryExt>(GROUP, write.entries)?;
        }
        if let Some(hard_state) = write.hard_state {
            batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), hard_state)?;
        }
        if let Some(conf_state) = write.conf_state {
            batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), conf_state)?;
        }
        if let Some(members) = write.members {
            let text: String = members
                .iter()
                .map(|(id, addr)| format!("{id}={}\n", addr.encode()))
                .collect();
            batch.put(GROUP, KEY_MEMBERS.to_vec(), text.into_bytes())?;
        }
        if let Some(index) = write.conf_index {
            batch.put(GROUP, KEY_CONF_INDEX.to_vec(), index.to_be_bytes().to_vec())?;
        }
        if let Some(applied) = write.applied {
            batch.put(GROUP, KEY_APPLIED.to_vec(), applied.to_be_bytes().to_vec())?;
        }
        if let Some(cluster_id) = write.cluster_id {
            batch.put(
                GROUP,
                KEY_CLUSTER_ID.to_vec(),
                cluster_id.as_bytes().to_vec(),
            )?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.engine.write(&mut batch, write.sync)?;
        let mut terms = self.terms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(snapshot) = write.snapshot {
            terms.install(snapshot.index, snapshot.term);
        }
        terms.append(write.entries);
        Ok(())
    }

    /// Drops the entries up to and including `index` (covered by a stored snapshot),
    /// persisting `hard_state` in the same synced write.
    pub fn compact(
        &self,
        index: u64,
        term: u64,
        hard_state: Option<&HardState>,
    ) -> Result<(), StoreError> {
        let truncated = truncation_point(index, term);
        let mut batch = LogBatch::default();
        if let Some(hard_state) = hard_state {
            batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), hard_state)?;
        }
        batch.add_command(GROUP, Command::Compact { index: index + 1 });
        batch.put_message(GROUP, KEY_TRUNCATED.to_vec(), &truncated)?;
        self.engine.write(&mut batch, true)?;
        self.terms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .compact(index, term);
        // Compaction only drops the entries from the index; the files go on the cleaner
        // thread. (The groups a purge names for a forced compaction are this one,
        // compacted regularly.)
        self.cleaner.ask(Cleanup::PurgeLog);
        Ok(())
    }

    /// Removes snapshot files beyond `index` (the stored commit index): written just
    /// before a crash interrupted their install or compaction, they can never be used,
    /// and must not be served.
    pub fn discard_snapshots_after(&self, index: u64) -> Result<(), StoreError> {
        for (stored, path) in self.snapshot_files()? {
            if stored > index {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    }

    pub fn applied(&self) -> Result<u64, StoreError> {
        self.read_index(KEY_APPLIED)
    }

    /// The log index of the last membership change in the stored configuration.
    pub fn conf_index(&self) -> Result<u64, StoreError> {
        self.read_index(KEY_CONF_INDEX)
    }

    /// A big-endian `u64` stored under `key`; 0 when absent.
    fn read_index(&self, key: &[u8]) -> Result<u64, StoreError> {
        match self.engine.get(GROUP, key) {
            None => Ok(0),
            Some(bytes) => {
                Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| {
                    StoreError::Corrupt("a stored index is not 8 bytes")
                })?))
            }
        }
    }

    pub fn hard_state(&self) -> Result<HardState, StoreError> {
        Ok(self
            .engine
            .get_message::<HardState>(GROUP, KEY_HARD_STATE)?
            .unwrap_or_default())
    }

    pub fn conf_state(&self) -> Result<Option<ConfState>, StoreError> {
        Ok(self
            .engine
            .get_message::<ConfState>(GROUP, KEY_CONF_STATE)?)
    }

    fn truncated(&self) -> raft::Result<SnapshotMetadata> {
        Ok(self
            .engine
            .get_message::<SnapshotMetadata>(GROUP, KEY_TRUNCATED)
            .map_err(storage_error)?
            .unwrap_or_default())
    }
}

/// The `(index, term)` of the last entry dropped from the log.
fn truncation_point(index: u64, term: u64) -> SnapshotMetadata {
    SnapshotMetadata {
        index,
        term,
        ..SnapshotMetadata::default()
    }
}

fn storage_error(e: raft_engine::Error) -> raft::Error {
    match e {
        raft_engine::Error::EntryCompacted => raft::Error::Store(StorageError::Compacted),
        raft_engine::Error::EntryNotFound => raft::Error::Store(StorageError::Unavailable),
        e => raft::Error::Store(StorageError::Other(Box::new(e))),
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let other = |e: StoreError| raft::Error::Store(StorageError::Other(Box::new(e)));
        let hard_state = self.hard_state().map_err(other)?;
        let conf_state = self.conf_state().map_err(other)?.unwrap_or_default();
        Ok(RaftState::new(hard_state, conf_state))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index()? {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index()? + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries = Vec::with_capacity(high.saturating_sub(low).min(1024) as usize);
        if low < high {
            let max_size = max_size
                .into()
                .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
            self.engine
                .fetch_entries_to::<EntryExt>(GROUP, low, high, max_size, &mut entries)
                .map_err(storage_error)?;
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        // From the term runs: no entry is read or decoded (issue 15).
        self.terms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .term(index)
    }

    fn first_index(&self) -> raft::Result<u64> {
        match self.engine.first_index(GROUP) {
            Some(index) => Ok(index),
            None => Ok(self.truncated()?.index + 1),
        }
    }

    fn last_index(&self) -> raft::Result<u64> {
        match self.engine.last_index(GROUP) {
            Some(index) => Ok(index),
            None => Ok(self.truncated()?.index),
        }
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // Only a snapshot this node built, installed or restored (its file verified
        // then) is ever recorded as the latest; nothing is read here. Anything unusable
        // makes the driver build a fresh one, instead of an error raft treats as fatal.
        let latest = self
            .snapshots
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let usable = latest.filter(|(meta, _)| {
            let conf = meta.get_conf_state();
            meta.index >= request_index
                && meta.index + 1 >= self.first_index().unwrap_or(u64::MAX)
                && conf.voters.iter().chain(&conf.learners).any(|&id| id == to)
        });
        match usable {
            Some((meta, descriptor)) => {
                let mut snapshot = Snapshot {
                    data: descriptor.encode().into(),
                    ..Snapshot::default()
                };
                snapshot.set_metadata(meta);
                Ok(snapshot)
            }
            None => {
                // The driver builds a fresh one; raft asks again on its next probe.
                self.snapshots.wanted.store(true, Ordering::Release);
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage;

    use super::*;

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("clockwise-logstore-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            TempDir(path)
        }
        fn log(&self) -> std::path::PathBuf {
            self.0.join("raft")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Entry::default()
        }
    }

    fn members(ids: &[u64]) -> BTreeMap<u64, MemberAddress> {
        ids.iter()
            .map(|&id| {
                let client = format!("127.0.0.1:{}", 5000 + id);
                (
                    id,
                    MemberAddress::new(client, format!("127.0.0.1:{}", 6000 + id)),
                )
            })
            .collect()
    }

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..HardState::default()
        }
    }

    #[test]
    fn a_fresh_log_is_empty_and_bootstraps_once() {
        let dir = TempDir::new("fresh");
        let store = LogStore::open(&dir.log()).unwrap();
        assert_eq!(
            (store.first_index().unwrap(), store.last_index().unwrap()),
            (1, 0)
        );
        assert_eq!(store.term(0).unwrap(), 0);
        assert!(!store.initial_state().unwrap().initialized());
        assert!(store.bootstrap(&members(&[1, 2, 3]), "c1").unwrap());
        assert!(
            !store.bootstrap(&members(&[9]), "c2").unwrap(),
            "an existing membership is kept"
        );
        let state = store.initial_state().unwrap();
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(store.members().unwrap(), members(&[1, 2, 3]));
        // Stored as `id=CLIENT|PEER` lines.
        assert_eq!(
            store.engine.get(GROUP, KEY_MEMBERS).unwrap(),
            b"1=127.0.0.1:5001|127.0.0.1:6001\n\
              2=127.0.0.1:5002|127.0.0.1:6002\n\
              3=127.0.0.1:5003|127.0.0.1:6003\n"
        );
        // The founders are in the log too, committed, for nodes that join later.
        assert_eq!(
            (store.last_index().unwrap(), state.hard_state.commit),
            (3, 3)
        );
        let first = store
            .entries(1, 2, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(first[0].get_entry_type(), EntryType::EntryConfChange);
        let change = ConfChange::parse_from_bytes(&first[0].data).unwrap();
        assert_eq!(&change.context[..], b"127.0.0.1:5001|127.0.0.1:6001");
    }

    #[test]
    fn synced_writes_survive_a_reopen() {
        let dir = TempDir::new("reopen");
        {
            let store = LogStore::open(&dir.log()).unwrap();
            store.bootstrap(&members(&[1]), "c1").unwrap();
            let entries = [entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 2, b"c")];
            store
                .write(ReadyWrite {
                    entries: &entries,
                    hard_state: Some(&hard_state(2, 1, 3)),
                    applied: Some(2),
                    sync: true,
                    ..ReadyWrite::default()
                })
                .unwrap();
        }
        let store = LogStore::open(&dir.log()).unwrap();
        let state = store.initial_state().unwrap();
        assert_eq!(state.hard_state, hard_state(2, 1, 3));
        assert_eq!(state.conf_state.voters, vec![1]);
        assert_eq!(store.applied().unwrap(), 2);
        let got = store
            .entries(1, 4, None, GetEntriesContext::empty(false))
            .unwrap();
        let data: Vec<_> = got
            .iter()
            .map(|e| (e.index, e.term, e.data.to_vec()))
            .collect();
        assert_eq!(
            data,
            vec![
                (1, 1, b"a".to_vec()),
                (2, 1, b"b".to_vec()),
                (3, 2, b"c".to_vec())
            ]
        );
        assert_eq!(store.term(3).unwrap(), 2);
    }

    #[test]
    fn an_append_below_the_tail_replaces_it() {
        let dir = TempDir::new("conflict");
        let store = LogStore::open(&dir.log()).unwrap();
        let first = [entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")];
        store
            .write(ReadyWrite {
                entries: &first,
                sync: true,
                ..ReadyWrite::default()
            })
            .unwrap();
        let newer = [entry(2, 2, b"B")];
        store
            .write(ReadyWrite {
                entries: &newer,
                sync: true,
                ..ReadyWrite::default()
            })
            .unwrap();
        assert_eq!(store.last_index().unwrap(), 2);
        assert_eq!(store.term(2).unwrap(), 2);
        assert!(matches!(
            store.entries(1, 4, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
    }

    /// `term(i)` from the index against the entries' own terms, for every index and
    /// around the log's ends.
    fn assert_terms_match_entries(store: &LogStore) {
        let (first, last) = (store.first_index().unwrap(), store.last_index().unwrap());
        let entries = store
            .entries(first, last + 1, None, GetEntriesContext::empty(false))
            .unwrap();
        for entry in &entries {
            assert_eq!(store.term(entry.index).unwrap(), entry.term, "{entry:?}");
        }
        assert!(matches!(
            store.term(last + 1),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
        if first > 2 {
            assert!(matches!(
                store.term(first - 2),
                Err(raft::Error::Store(StorageError::Compacted))
            ));
        }
    }

    #[test]
    fn the_term_index_follows_appends_truncations_compactions_installs_and_reopens() {
        let dir = TempDir::new("terms");
        let store = LogStore::open(&dir.log()).unwrap();
        let write = |entries: &[Entry]| {
            store
                .write(ReadyWrite {
                    entries,
                    sync: true,
                    ..ReadyWrite::default()
                })
                .unwrap();
        };
        let terms = [1, 1, 1, 2, 2, 4, 4, 4, 4, 5];
        let entries: Vec<_> = (1..).zip(terms).map(|(i, t)| entry(i, t, b"x")).collect();
        write(&entries);
        assert_terms_match_entries(&store);
        assert_eq!(
            store.term_index().runs,
            BTreeMap::from([(1, 1), (4, 2), (6, 4), (10, 5)]),
            "one run per term, not one per entry"
        );
        // A new leader replaces the tail from index 5.
        write(&[entry(5, 6, b"y"), entry(6, 6, b"y")]);
        assert_terms_match_entries(&store);
        assert_eq!(store.term(5).unwrap(), 6);
        assert_eq!(
            store.term_index().runs,
            BTreeMap::from([(1, 1), (4, 2), (5, 6)])
        );
        // Compaction in the middle of a run keeps the rest of the run.
        store.compact(2, 1, None).unwrap();
        assert_terms_match_entries(&store);
        assert_eq!(store.term(2).unwrap(), 1, "the truncation point's term");
        assert_eq!(store.term(3).unwrap(), 1);
        // Reopened: rebuilt from the log, the same.
        let before = store.term_index();
        drop(store);
        let store = LogStore::open(&dir.log()).unwrap();
        assert_eq!(store.term_index(), before);
        assert_terms_match_entries(&store);
        // A snapshot beyond the log replaces it.
        let mut meta = truncation_point(20, 7);
        meta.set_conf_state(ConfState::from((vec![1], vec![])));
        store
            .write(ReadyWrite {
                snapshot: Some(&meta),
                entries: &[entry(21, 7, b"z")],
                sync: true,
                ..ReadyWrite::default()
            })
            .unwrap();
        assert_eq!(store.term(20).unwrap(), 7);
        assert_eq!(store.term(21).unwrap(), 7);
        assert!(store.term(19).is_err());
        assert_terms_match_entries(&store);
        // Compacting the whole log.
        store.compact(21, 7, None).unwrap();
        assert_eq!(store.term(21).unwrap(), 7);
        assert_eq!(store.term_index().runs, BTreeMap::new());
    }

    /// What a restart finds: the snapshot file, the log after it; `Storage::snapshot`
    /// answers a descriptor from memory, never reading the file.
    #[test]
    fn a_store_restarts_from_a_snapshot_file_plus_the_log_after_it() {
        use crate::snapshot::SnapshotData;
        let dir = TempDir::new("restart-snapshot");
        let store = LogStore::open(&dir.log()).unwrap();
        store.bootstrap(&members(&[1, 2]), "c1").unwrap();
        let entries: Vec<_> = (3..=10).map(|i| entry(i, 2, b"e")).collect();
        store
            .write(ReadyWrite {
                entries: &entries,
                hard_state: Some(&hard_state(2, 1, 10)),
                sync: true,
                ..ReadyWrite::default()
            })
            .unwrap();
        let mut snapshot = Snapshot {
            data: SnapshotData {
                members: members(&[1, 2]),
                state: b"state at 8".to_vec(),
            }
            .encode()
            .into(),
            ..Snapshot::default()
        };
        snapshot.mut_metadata().index = 8;
        snapshot.mut_metadata().term = 2;
        snapshot
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2], vec![])));
        let descriptor = store.save_snapshot(&snapshot).unwrap();
        store.compact(6, 2, None).unwrap();
        drop(store);

        let store = LogStore::open(&dir.log()).unwrap();
        assert_eq!(
            (store.first_index().unwrap(), store.last_index().unwrap()),
            (7, 10)
        );
        assert_terms_match_entries(&store);
        let path = store.latest_snapshot_file_within(6, 10).unwrap().unwrap();
        assert_eq!(path, store.snapshot_path(&descriptor));
        let (header, data) = crate::snapshot::read_file_to_memory(&path).unwrap();
        assert_eq!((header.meta.index, header.meta.term), (8, 2));
        assert_eq!(data.state, b"state at 8");
        assert_eq!(data.members, members(&[1, 2]));
        assert_eq!(store.latest_snapshot().unwrap().unwrap(), snapshot);

        // Nothing is offered until the driver records a verified snapshot as latest.
        assert!(store.snapshot(8, 2).is_err());
        assert!(store.take_snapshot_wanted());
        store.set_latest_snapshot(header.meta, descriptor);
        std::fs::remove_file(&path).unwrap();
        let offered = store.snapshot(8, 2).unwrap();
        assert_eq!(
            Descriptor::decode(&offered.data),
            Ok(descriptor),
            "answered from memory (the file is gone: the send fails, raft retries)"
        );
        assert_eq!(offered.get_metadata().index, 8);
        assert!(store.snapshot(9, 2).is_err(), "too old for the request");
        assert!(store.snapshot(8, 5).is_err(), "not in its membership");
    }

    #[test]
    fn compaction_and_snapshots_move_the_first_index() {
        let dir = TempDir::new("compact");
        let store = LogStore::open(&dir.log()).unwrap();
        let entries: Vec<_> = (1..=5).map(|i| entry(i, 1, b"x")).collect();
        store
            .write(ReadyWrite {
                entries: &entries,
                sync: true,
                ..ReadyWrite::default()
            })
            .unwrap();
        store.compact(3, 1, None).unwrap();
        assert_eq!(
            (store.first_index().unwrap(), store.last_index().unwrap()),
            (4, 5)
        );
        assert_eq!(
            store.term(3).unwrap(),
            1,
            "the truncation point keeps its term"
        );
        assert!(matches!(
            store.entries(2, 5, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));

        // Installing a snapshot beyond the log empties it and takes the snapshot's membership.
        let mut meta = truncation_point(10, 3);
        meta.set_conf_state(ConfState::from((vec![1, 2], vec![3])));
        store
            .write(ReadyWrite {
                snapshot: Some(&meta),
                sync: true,
                ..ReadyWrite::default()
            })
            .unwrap();
        drop(store);
        let store = LogStore::open(&dir.log()).unwrap();
        assert_eq!(
            (store.first_index().unwrap(), store.last_index().unwrap()),
            (11, 10)
        );
        assert_eq!(store.term(10).unwrap(), 3);
        let conf = store.initial_state().unwrap().conf_state;
        assert_eq!((conf.voters, conf.learners), (vec![1, 2], vec![3]));
        let next = [entry(11, 3, b"after")];
        store
            .write(ReadyWrite {
                entries: &next,
                sync: true,
                ..ReadyWrite::default()
            })
            .unwrap();
        assert_eq!(store.last_index().unwrap(), 11);
    }
}
