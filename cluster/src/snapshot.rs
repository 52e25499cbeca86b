//! Snapshot formats: the in-memory envelope of backups, the snapshot files a node
//! stores and streams, and the small descriptor raft carries instead of the state.
//!
//! **In-memory envelope** ([`SnapshotData`], backups and `LogStore::save_snapshot`):
//! `MAGIC`, `u32` member count, per member `u64` id, `u32` length and the address bytes,
//! `u64` state length, the state bytes, 32 bytes of SHA-256 over everything before
//! them. Integers are big-endian.
//!
//! **Snapshot file** (`<index>-<term>.snap` in a node's snapshots dir; issue 15):
//! `FILE_MAGIC`, `u32` length and raft's `SnapshotMetadata` (index, term, membership),
//! the members' addresses as above, then the state machine's stream up to the last 32
//! bytes, which are the SHA-256 of everything before them. The state has no length
//! field: it is written streaming, and a reader knows where it ends from the file's
//! length. Written by [`write_file`] (running hash, fsync, rename, dir fsync), received
//! chunk by chunk by [`Receiver`], read back by [`open_file`] whose state reader
//! verifies the checksum at the state's end, before a machine swaps the state in.
//!
//! **Descriptor** ([`Descriptor`], raft's `Snapshot.data`): `DESCRIPTOR_MAGIC`, index,
//! term, file length, SHA-256: names a stored file, so raft's step never holds state.
//! A snapshot is only ever installed or restored after its checksum matched.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::SnapshotMetadata;
use sha2::{Digest, Sha256};

use crate::member::MemberAddress;
use crate::snapshot_io::{HashingWriter, SyncingFile, PACED_BYTES_PER_SECOND};
use crate::state_machine::StateSnapshot;

pub const MAGIC: &[u8; 8] = b"CWSNAP01";
const CHECKSUM_LEN: usize = 32;

/// Why snapshot data was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotDataError {
    #[error("snapshot data is truncated")]
    Truncated,
    #[error("snapshot data has an unknown format")]
    UnknownFormat,
    #[error("snapshot data does not match its checksum")]
    Checksum,
    #[error("snapshot data has a malformed member list")]
    Members,
}

/// A decoded snapshot envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotData {
    /// Every member's addresses at the snapshot's index (carried in their stored form).
    pub members: BTreeMap<u64, MemberAddress>,
    /// The state machine's snapshot.
    pub state: Vec<u8>,
}

impl SnapshotData {
    pub fn encode(&self) -> Vec<u8> {
        let members: Vec<(u64, String)> = self
            .members
            .iter()
            .map(|(&id, address)| (id, address.encode()))
            .collect();
        let addresses: usize = members.iter().map(|(_, a)| 12 + a.len()).sum();
        let mut out =
            Vec::with_capacity(MAGIC.len() + 4 + addresses + 8 + self.state.len() + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(members.len() as u32).to_be_bytes());
        for (id, address) in &members {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&(address.len() as u32).to_be_bytes());
            out.extend_from_slice(address.as_bytes());
        }
        out.extend_from_slice(&(self.state.len() as u64).to_be_bytes());
        out.extend_from_slice(&self.state);
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Decodes `bytes`, refusing them unless the checksum matches.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotDataError> {
        if bytes.len() < MAGIC.len() + CHECKSUM_LEN {
            return Err(SnapshotDataError::Truncated);
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotDataError::UnknownFormat);
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if Sha256::digest(body).as_slice() != checksum {
            return Err(SnapshotDataError::Checksum);
        }
        let mut reader = Reader(&body[MAGIC.len()..]);
        let count = reader.u32()?;
        let mut members = BTreeMap::new();
        for _ in 0..count {
            let id = reader.u64()?;
            let len = reader.u32()? as usize;
            let address =
                std::str::from_utf8(reader.take(len)?).map_err(|_| SnapshotDataError::Members)?;
            let address = MemberAddress::decode(address);
            members.insert(id, address);
        }
        let len = usize::try_from(reader.u64()?).map_err(|_| SnapshotDataError::Truncated)?;
        let state = reader.take(len)?.to_vec();
        if !reader.0.is_empty() {
            return Err(SnapshotDataError::UnknownFormat);
        }
        Ok(SnapshotData { members, state })
    }
}

fn encode_members(members: &BTreeMap<u64, MemberAddress>, out: &mut Vec<u8>) {
    out.extend_from_slice(&(members.len() as u32).to_be_bytes());
    for (id, address) in members {
        let address = address.encode();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(address.len() as u32).to_be_bytes());
        out.extend_from_slice(address.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotDataError> {
        if self.0.len() < n {
            return Err(SnapshotDataError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, SnapshotDataError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, SnapshotDataError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

/// The first bytes of a stored snapshot file.
pub const FILE_MAGIC: &[u8; 8] = b"CWSNAP02";
/// The first bytes of a descriptor (raft's `Snapshot.data`).
pub const DESCRIPTOR_MAGIC: &[u8; 8] = b"CWSDESC1";
/// A snapshot file's extension.
pub const FILE_EXT: &str = "snap";
const DESCRIPTOR_LEN: usize = 8 + 8 + 8 + 8 + CHECKSUM_LEN;
/// Bounds on a file's header, so a damaged length cannot ask for gigabytes.
const MAX_META_BYTES: u32 = 1 << 20;
const MAX_MEMBERS: u32 = 10_000;
const MAX_ADDRESS_BYTES: u32 = 4 << 10;
/// Buffer of file reads and writes (few syscalls; bounded memory).
const IO_BUFFER: usize = 1 << 20;

/// Names a stored snapshot file: what raft's `Snapshot.data` carries (64 bytes, never
/// the state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub index: u64,
    pub term: u64,
    /// The whole file's length, checksum included.
    pub len: u64,
    /// SHA-256 of the file's bytes before the checksum (the file's last 32 bytes).
    pub sha256: [u8; 32],
}

impl Descriptor {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DESCRIPTOR_LEN);
        out.extend_from_slice(DESCRIPTOR_MAGIC);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.term.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.sha256);
        out
    }

    /// # Errors
    /// Anything but exactly a descriptor's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotDataError> {
        if bytes.len() >= MAGIC.len() && &bytes[..MAGIC.len()] != DESCRIPTOR_MAGIC {
            return Err(SnapshotDataError::UnknownFormat);
        }
        if bytes.len() < DESCRIPTOR_LEN {
            return Err(SnapshotDataError::Truncated);
        }
        if bytes.len() > DESCRIPTOR_LEN {
            return Err(SnapshotDataError::UnknownFormat);
        }
        let mut reader = Reader(&bytes[DESCRIPTOR_MAGIC.len()..]);
        let (index, term, len) = (reader.u64()?, reader.u64()?, reader.u64()?);
        let sha256 = reader.take(CHECKSUM_LEN)?.try_into().expect("32 bytes");
        Ok(Descriptor {
            index,
            term,
            len,
            sha256,
        })
    }

    /// The stored file's name.
    pub fn file_name(&self) -> String {
        file_name(self.index, self.term)
    }
}

/// The name of the snapshot file at `index` and `term` (sorts by index).
pub fn file_name(index: u64, term: u64) -> String {
    format!("{index:020}-{term:020}.{FILE_EXT}")
}

/// Why a snapshot file was not written, received or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("a snapshot of {0} bytes is over the limit of {1}")]
    TooLarge(u64, u64),
    #[error("more snapshot data than the {0} bytes announced")]
    Overrun(u64),
    #[error("the snapshot ended after {got} of {expected} bytes")]
    Short { got: u64, expected: u64 },
    #[error("the snapshot does not match its checksum")]
    Checksum,
    #[error("the snapshot file is malformed: {0}")]
    Malformed(&'static str),
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> SnapshotFileError + '_ {
    move |source| SnapshotFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a snapshot file holds besides the state.
#[derive(Debug, Clone, PartialEq)]
pub struct FileHeader {
    /// Index, term and membership (raft's view).
    pub meta: SnapshotMetadata,
    /// Every member's addresses at that index.
    pub members: BTreeMap<u64, MemberAddress>,
}

/// Fsyncs a directory, so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), SnapshotFileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Writes the snapshot file for `meta` in `dir`: the header, then what `write_state`
/// streams, with a running SHA-256 appended; fsynced under a temporary name, renamed,
/// the directory fsynced. Memory: one write buffer, whatever the state's size.
///
/// # Errors
/// Any I/O error (the temporary file is removed).
pub fn write_file(
    dir: &Path,
    meta: &SnapshotMetadata,
    members: &BTreeMap<u64, MemberAddress>,
    write_state: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> Result<Descriptor, SnapshotFileError> {
    let name = file_name(meta.index, meta.term);
    let path = dir.join(&name);
    let temporary = dir.join(format!("{name}.tmp"));
    let written = (|| {
        let file = File::create(&temporary)?;
        let mut out = HashingWriter {
            inner: BufWriter::with_capacity(
                IO_BUFFER,
                SyncingFile::paced(file, PACED_BYTES_PER_SECOND),
            ),
            hasher: Sha256::new(),
        };
        let meta_bytes = meta
            .write_to_bytes()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut header = FILE_MAGIC.to_vec();
        header.extend_from_slice(&(meta_bytes.len() as u32).to_be_bytes());
        header.extend_from_slice(&meta_bytes);
        encode_members(members, &mut header);
        out.write_all(&header)?;
        write_state(&mut out)?;
        let sha256: [u8; 32] = out.hasher.finalize().into();
        let mut file = out.inner;
        file.write_all(&sha256)?;
        let file = file
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .file;
        file.sync_all()?;
        let len = file.metadata()?.len();
        Ok((len, sha256))
    })();
    let (len, sha256) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(io_error(&path)(e));
        }
    };
    std::fs::rename(&temporary, &path).map_err(io_error(&path))?;
    sync_dir(dir)?;
    Ok(Descriptor {
        index: meta.index,
        term: meta.term,
        len,
        sha256,
    })
}

/// A snapshot file arriving chunk by chunk (from the leader): written to a temporary
/// file while hashed, never held in memory; [`Receiver::finish`] checks length and
/// checksum, fsyncs and gives it its stored name. Dropped unfinished, the temporary
/// file is removed.
pub struct Receiver {
    dir: PathBuf,
    descriptor: Descriptor,
    temporary: PathBuf,
    file: Option<BufWriter<SyncingFile>>,
    hasher: Sha256,
    received: u64,
    /// The file's last 32 bytes (its checksum), kept out of the hash.
    trailer: Vec<u8>,
}

impl Receiver {
    /// Starts receiving the file `descriptor` names into `dir`, refusing one over
    /// `limit` bytes.
    ///
    /// # Errors
    /// Over the limit, or the temporary file cannot be made.
    pub fn create(
        dir: &Path,
        descriptor: Descriptor,
        limit: u64,
    ) -> Result<Receiver, SnapshotFileError> {
        if descriptor.len > limit {
            return Err(SnapshotFileError::TooLarge(descriptor.len, limit));
        }
        if descriptor.len < (FILE_MAGIC.len() + CHECKSUM_LEN) as u64 {
            return Err(SnapshotFileError::Malformed(
                "shorter than any snapshot file",
            ));
        }
        let temporary = dir.join(format!("{}.recv.tmp", descriptor.file_name()));
        let file = File::create(&temporary).map_err(io_error(&temporary))?;
        Ok(Receiver {
            dir: dir.to_owned(),
            descriptor,
            temporary,
            file: Some(BufWriter::with_capacity(IO_BUFFER, SyncingFile::new(file))),
            hasher: Sha256::new(),
            received: 0,
            trailer: Vec::with_capacity(CHECKSUM_LEN),
        })
    }

    /// Appends the next chunk.
    ///
    /// # Errors
    /// More than announced, or a write error.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), SnapshotFileError> {
        let expected = self.descriptor.len;
        if self.received + chunk.len() as u64 > expected {
            return Err(SnapshotFileError::Overrun(expected));
        }
        let body_end = expected - CHECKSUM_LEN as u64;
        let in_body = body_end
            .saturating_sub(self.received)
            .min(chunk.len() as u64) as usize;
        self.hasher.update(&chunk[..in_body]);
        self.trailer.extend_from_slice(&chunk[in_body..]);
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(chunk).map_err(io_error(&self.temporary))?;
        self.received += chunk.len() as u64;
        Ok(())
    }

    /// Checks that all of it arrived intact, fsyncs it and stores it under its name;
    /// answers its path.
    ///
    /// # Errors
    /// Short, checksum mismatch (against the file's own and the descriptor's), I/O.
    pub fn finish(mut self) -> Result<PathBuf, SnapshotFileError> {
        if self.received != self.descriptor.len {
            return Err(SnapshotFileError::Short {
                got: self.received,
                expected: self.descriptor.len,
            });
        }
        let sha256: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if self.trailer != sha256 || sha256 != self.descriptor.sha256 {
            return Err(SnapshotFileError::Checksum);
        }
        let file = self.file.take().expect("open until finished");
        let file = file
            .into_inner()
            .map_err(|e| io_error(&self.temporary)(e.into_error()))?
            .file;
        file.sync_all().map_err(io_error(&self.temporary))?;
        let path = self.dir.join(self.descriptor.file_name());
        if path.exists() {
            // This node stored its own snapshot at the same index and term: the same
            // state (its bytes may differ: raft's membership lists have no fixed order).
            // Keep it; the one in use is never replaced under a reader.
            let _ = std::fs::remove_file(&self.temporary);
            return Ok(path);
        }
        std::fs::rename(&self.temporary, &path).map_err(io_error(&path))?;
        sync_dir(&self.dir)?;
        Ok(path)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The state section of an open snapshot file: reads exactly it, hashing, and at its
/// end (before answering `Ok(0)`) checks the file's checksum (and the expected one),
/// failing that read with `InvalidData` on a mismatch. So a machine that reads to the
/// end before swapping its state in never installs a damaged snapshot.
pub struct StateReader {
    inner: HashingReader<BufReader<File>>,
    remaining: u64,
    expected: Option<[u8; 32]>,
    /// The whole file's length.
    len: u64,
    /// The checksum, once verified.
    verified: Option<[u8; 32]>,
}

impl StateReader {
    /// Reads whatever is left and checks the checksum (a no-op once read to the end).
    ///
    /// # Errors
    /// A read error or a checksum mismatch.
    pub fn finish(&mut self) -> Result<(), SnapshotFileError> {
        match io::copy(self, &mut io::sink()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(SnapshotFileError::Checksum),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(SnapshotFileError::Malformed("cut short"))
            }
            Err(source) => Err(SnapshotFileError::Io {
                path: String::new(),
                source,
            }),
        }
    }

    /// The descriptor of the file read, once its checksum was verified.
    pub fn descriptor(&self, meta: &SnapshotMetadata) -> Option<Descriptor> {
        self.verified.map(|sha256| Descriptor {
            index: meta.index,
            term: meta.term,
            len: self.len,
            sha256,
        })
    }

    fn verify(&mut self) -> io::Result<()> {
        let mut trailer = [0u8; CHECKSUM_LEN];
        self.inner.inner.read_exact(&mut trailer)?;
        let sha256: [u8; 32] = self.inner.hasher.clone().finalize().into();
        let mut extra = [0u8; 1];
        let trailing = self.inner.inner.read(&mut extra)?;
        if trailer != sha256 || self.expected.is_some_and(|e| e != sha256) || trailing != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the snapshot file does not match its checksum",
            ));
        }
        self.verified = Some(sha256);
        Ok(())
    }
}

impl Read for StateReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            if self.verified.is_none() {
                self.verify()?;
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Opens the snapshot file at `path`: its header, and a reader of its state that checks
/// the checksum (and `expected`'s, with its length) at the end.
///
/// # Errors
/// I/O, a malformed header, a length other than `expected`'s.
pub fn open_file(
    path: &Path,
    expected: Option<&Descriptor>,
) -> Result<(FileHeader, StateReader), SnapshotFileError> {
    let file = File::open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    if let Some(expected) = expected {
        if expected.len != len {
            return Err(SnapshotFileError::Short {
                got: len,
                expected: expected.len,
            });
        }
    }
    let mut reader = HashingReader {
        inner: BufReader::with_capacity(IO_BUFFER, file),
        hasher: Sha256::new(),
    };
    let malformed = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => SnapshotFileError::Malformed("header cut short"),
        _ => io_error(path)(e),
    };
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(malformed)?;
    if &magic != FILE_MAGIC {
        return Err(SnapshotFileError::Malformed("not a snapshot file"));
    }
    let meta_len = read_u32(&mut reader).map_err(malformed)?;
    if meta_len > MAX_META_BYTES {
        return Err(SnapshotFileError::Malformed("metadata too long"));
    }
    let mut meta = vec![0u8; meta_len as usize];
    reader.read_exact(&mut meta).map_err(malformed)?;
    let meta = SnapshotMetadata::parse_from_bytes(&meta)
        .map_err(|_| SnapshotFileError::Malformed("metadata does not decode"))?;
    let count = read_u32(&mut reader).map_err(malformed)?;
    if count > MAX_MEMBERS {
        return Err(SnapshotFileError::Malformed("too many members"));
    }
    let mut members = BTreeMap::new();
    let mut header_len = 8 + 4 + u64::from(meta_len) + 4;
    for _ in 0..count {
        let mut id = [0u8; 8];
        reader.read_exact(&mut id).map_err(malformed)?;
        let address_len = read_u32(&mut reader).map_err(malformed)?;
        if address_len > MAX_ADDRESS_BYTES {
            return Err(SnapshotFileError::Malformed("member address too long"));
        }
        let mut address = vec![0u8; address_len as usize];
        reader.read_exact(&mut address).map_err(malformed)?;
        let address = String::from_utf8(address)
            .map_err(|_| SnapshotFileError::Malformed("member address is not UTF-8"))?;
        members.insert(u64::from_be_bytes(id), MemberAddress::decode(&address));
        header_len += 12 + u64::from(address_len);
    }
    let remaining = len
        .checked_sub(header_len + CHECKSUM_LEN as u64)
        .ok_or(SnapshotFileError::Malformed("shorter than its header"))?;
    Ok((
        FileHeader { meta, members },
        StateReader {
            inner: reader,
            remaining,
            expected: expected.map(|d| d.sha256),
            len,
            verified: None,
        },
    ))
}

fn read_u32(reader: &mut impl Read) -> io::Result<u32> {
    let mut bytes = [0u8; 4];
    reader.read_exact(&mut bytes)?;
    Ok(u32::from_be_bytes(bytes))
}

/// Reads a whole snapshot file into the in-memory envelope (for backups and tests:
/// O(state) memory), checksum verified.
///
/// # Errors
/// As [`open_file`], and a checksum mismatch.
pub fn read_file_to_memory(path: &Path) -> Result<(FileHeader, SnapshotData), SnapshotFileError> {
    let (header, mut reader) = open_file(path, None)?;
    let mut state = Vec::new();
    reader.read_to_end(&mut state).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => SnapshotFileError::Checksum,
        _ => io_error(path)(e),
    })?;
    let data = SnapshotData {
        members: header.members.clone(),
        state,
    };
    Ok((header, data))
}

/// Copies the snapshot file `descriptor` names from the snapshots dir `from` into `to`
/// as a receiver would (streamed, checked, fsynced): for in-process transports.
///
/// # Errors
/// As [`Receiver`].
pub fn copy_file(
    from: &Path,
    to: &Path,
    descriptor: &Descriptor,
) -> Result<PathBuf, SnapshotFileError> {
    let path = from.join(descriptor.file_name());
    let mut file = BufReader::with_capacity(IO_BUFFER, File::open(&path).map_err(io_error(&path))?);
    let mut receiver = Receiver::create(to, *descriptor, u64::MAX)?;
    let mut chunk = vec![0u8; IO_BUFFER];
    loop {
        let n = file.read(&mut chunk).map_err(io_error(&path))?;
        if n == 0 {
            return receiver.finish();
        }
        receiver.write(&chunk[..n])?;
    }
}

/// A frozen state that is already bytes (in-memory snapshots: backups, seeding).
pub struct BytesSnapshot(pub Vec<u8>);

impl StateSnapshot for BytesSnapshot {
    fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.0)
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotData {
        SnapshotData {
            members: BTreeMap::from([
                (1, MemberAddress::new("127.0.0.1:1", "127.0.0.1:2")),
                (7, MemberAddress::decode("h:2")),
            ]),
            state: b"engine state".to_vec(),
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(SnapshotData::decode(&sample().encode()), Ok(sample()));
    }

    #[test]
    fn members_are_carried_in_their_stored_form() {
        let bytes = sample().encode();
        let mut expected = MAGIC.to_vec();
        expected.extend_from_slice(&2u32.to_be_bytes());
        for (id, stored) in [(1u64, "127.0.0.1:1|127.0.0.1:2"), (7, "h:2")] {
            expected.extend_from_slice(&id.to_be_bytes());
            expected.extend_from_slice(&(stored.len() as u32).to_be_bytes());
            expected.extend_from_slice(stored.as_bytes());
        }
        expected.extend_from_slice(&12u64.to_be_bytes());
        expected.extend_from_slice(b"engine state");
        assert_eq!(&bytes[..bytes.len() - CHECKSUM_LEN], expected.as_slice());
    }

    /// Issue 20: a state past 4 GiB must still travel as a snapshot. Every length on
    /// the way is 64 bits: the descriptor raft carries, and the receiver's limit
    /// (`MAX_SNAPSHOT_BYTES`, 64 GiB); no 4 GiB of data needed to show it.
    #[test]
    fn lengths_past_4_gib_survive_the_descriptor_and_are_received() {
        let descriptor = Descriptor {
            index: 9,
            term: 2,
            len: (5 << 30) + 7,
            sha256: [3; 32],
        };
        assert_eq!(Descriptor::decode(&descriptor.encode()), Ok(descriptor));
        let dir = temp_dir("past-4-gib");
        let receiver = Receiver::create(&dir, descriptor, 64 << 30);
        assert!(
            receiver.is_ok(),
            "a 5 GiB snapshot is accepted for receiving"
        );
        drop(receiver);
        assert!(matches!(
            Receiver::create(&dir, descriptor, 4 << 30),
            Err(SnapshotFileError::TooLarge(len, _)) if len == descriptor.len
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("clockwise-snapfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn meta(index: u64, term: u64) -> SnapshotMetadata {
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..SnapshotMetadata::default()
        };
        meta.set_conf_state(raft::eraftpb::ConfState::from((vec![1, 7], vec![3])));
        meta
    }

    /// A file with a state of `len` bytes; answers its descriptor and bytes.
    fn stored(dir: &Path, len: usize) -> (Descriptor, Vec<u8>) {
        let state: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let descriptor = write_file(dir, &meta(42, 3), &sample().members, &mut |out| {
            // In pieces, as a streaming writer would.
            state.chunks(1000).try_for_each(|c| out.write_all(c))
        })
        .unwrap();
        let bytes = std::fs::read(dir.join(descriptor.file_name())).unwrap();
        (descriptor, bytes)
    }

    fn read_state(path: &Path, expected: Option<&Descriptor>) -> Result<Vec<u8>, String> {
        let (_, mut reader) = open_file(path, expected).map_err(|e| e.to_string())?;
        let mut state = Vec::new();
        reader.read_to_end(&mut state).map_err(|e| e.to_string())?;
        Ok(state)
    }

    #[test]
    fn a_descriptor_round_trips_and_refuses_anything_else() {
        let descriptor = Descriptor {
            index: 9,
            term: 2,
            len: 1 << 40,
            sha256: [5; 32],
        };
        let bytes = descriptor.encode();
        assert_eq!(bytes.len(), 64, "a few bytes whatever the state's size");
        assert_eq!(Descriptor::decode(&bytes), Ok(descriptor));
        for cut in 0..bytes.len() {
            assert!(Descriptor::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Descriptor::decode(&longer),
            Err(SnapshotDataError::UnknownFormat)
        );
        // The state itself (an older node's snapshot data) is not a descriptor.
        assert_eq!(
            Descriptor::decode(&sample().encode()),
            Err(SnapshotDataError::UnknownFormat)
        );
        assert_eq!(descriptor.file_name(), file_name(9, 2));
    }

    #[test]
    fn a_file_streams_back_its_header_and_state_and_checksum() {
        let dir = temp_dir("round-trip");
        let (descriptor, bytes) = stored(&dir, 5000);
        assert_eq!(descriptor.len, bytes.len() as u64);
        assert_eq!(
            descriptor.sha256,
            sha256(&bytes[..bytes.len() - CHECKSUM_LEN]),
            "the descriptor carries the file's own checksum"
        );
        let path = dir.join(descriptor.file_name());
        let (header, mut reader) = open_file(&path, Some(&descriptor)).unwrap();
        assert_eq!(header.meta, meta(42, 3));
        assert_eq!(header.members, sample().members);
        let mut state = Vec::new();
        reader.read_to_end(&mut state).unwrap();
        assert_eq!(
            state,
            (0..5000).map(|i| (i % 251) as u8).collect::<Vec<_>>()
        );
        assert_eq!(reader.descriptor(&header.meta), Some(descriptor));
        // Nothing temporary is left.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn any_flipped_byte_of_a_file_is_refused_before_the_state_ends() {
        let dir = temp_dir("flip");
        let (descriptor, bytes) = stored(&dir, 300);
        let path = dir.join(descriptor.file_name());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            assert!(read_state(&path, None).is_err(), "flip at {i}");
            std::fs::write(&path, &bad[..i]).unwrap();
            assert!(read_state(&path, None).is_err(), "cut at {i}");
        }
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_state(&path, Some(&descriptor)).is_ok());
        let other = Descriptor {
            sha256: [0; 32],
            ..descriptor
        };
        assert!(
            read_state(&path, Some(&other)).is_err(),
            "another checksum than expected"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_received_file_is_stored_only_whole_and_intact() {
        let source = temp_dir("receive-source");
        let dir = temp_dir("receive");
        let (descriptor, bytes) = stored(&source, 4000);
        let receive = |chunks: &[&[u8]], limit: u64| {
            let mut receiver = Receiver::create(&dir, descriptor, limit)?;
            for chunk in chunks {
                receiver.write(chunk)?;
            }
            receiver.finish()
        };
        assert!(matches!(
            receive(&[&bytes], 100),
            Err(SnapshotFileError::TooLarge(..))
        ));
        assert!(matches!(
            receive(&[&bytes[..1000]], u64::MAX),
            Err(SnapshotFileError::Short { .. })
        ));
        assert!(matches!(
            receive(&[&bytes, &[0]], u64::MAX),
            Err(SnapshotFileError::Overrun(_))
        ));
        for at in [0, 100, bytes.len() - 40, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x80;
            assert!(
                matches!(receive(&[&bad], u64::MAX), Err(SnapshotFileError::Checksum)),
                "flip at {at}"
            );
        }
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "refused: nothing stored, no temporary file left"
        );
        let path = receive(&[&bytes[..1], &bytes[1..3000], &bytes[3000..]], u64::MAX).unwrap();
        assert_eq!(path, dir.join(descriptor.file_name()));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            copy_file(&source, &dir, &descriptor).unwrap(),
            path,
            "an in-process copy goes through the same checks"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&source);
    }

    #[test]
    fn any_flipped_or_missing_byte_is_refused() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(SnapshotData::decode(&bad).is_err(), "flip at {i}");
            assert!(SnapshotData::decode(&bytes[..i]).is_err(), "cut at {i}");
        }
    }
}
