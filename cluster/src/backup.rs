//! Whole-cluster backups: a snapshot in a self-checking file, and seeding a new
//! one-member cluster from one (in the manner of `etcdctl snapshot save` /
//! `etcdutl snapshot restore`).
//!
//! File layout: `MAGIC` (8 bytes), the body's length (`u64`, big-endian), the body (a
//! raft `Snapshot` message: index, term, membership, and the [`SnapshotData`] envelope),
//! then the SHA-256 of the body. A file that is cut short, has trailing bytes or fails
//! the checksum is refused before anything is written.

use std::collections::BTreeMap;
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, HardState, Snapshot};

use crate::member::MemberAddress;
use crate::snapshot::{sha256, SnapshotData, SnapshotDataError};
use crate::storage::{LogStore, ReadyWrite, StoreError};

const MAGIC: &[u8; 8] = b"CWBACKUP";
const HEADER_LEN: usize = 16;

/// Why a backup file was refused.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a clockwise backup (it does not start with the backup header)")]
    NotABackup,
    #[error("the backup is truncated: {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    #[error("the backup has {0} bytes after its end")]
    TrailingBytes(u64),
    #[error("the backup is corrupt: its checksum does not match")]
    Checksum,
    #[error("the backup is corrupt: {0}")]
    Corrupt(String),
    #[error("the backup's data: {0}")]
    Data(#[from] SnapshotDataError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("data dir {0} already holds a raft log; restore into an empty directory")]
    NotEmpty(String),
}

/// The body of a backup: the raft snapshot message, encoded.
pub fn encode_body(snapshot: &Snapshot) -> Vec<u8> {
    snapshot.write_to_bytes().unwrap_or_default()
}

/// A backup file from a body: header, body, checksum.
pub fn encode_file(body: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(HEADER_LEN + body.len() + 32);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&(body.len() as u64).to_be_bytes());
    file.extend_from_slice(body);
    file.extend_from_slice(&sha256(body));
    file
}

/// The snapshot in a backup file, once its length, checksum and data check out.
pub fn decode_file(file: &[u8]) -> Result<Snapshot, BackupError> {
    if file.len() < MAGIC.len() || &file[..MAGIC.len()] != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let got = file.len() as u64;
    if file.len() < HEADER_LEN {
        return Err(BackupError::Truncated {
            got,
            expected: HEADER_LEN as u64 + 32,
        });
    }
    let body_len = u64::from_be_bytes(file[8..16].try_into().expect("8 bytes"));
    let expected = body_len.saturating_add(HEADER_LEN as u64 + 32);
    if got < expected {
        return Err(BackupError::Truncated { got, expected });
    }
    if got > expected {
        return Err(BackupError::TrailingBytes(got - expected));
    }
    let body = &file[HEADER_LEN..HEADER_LEN + body_len as usize];
    if sha256(body).as_slice() != &file[HEADER_LEN + body.len()..] {
        return Err(BackupError::Checksum);
    }
    let snapshot =
        Snapshot::parse_from_bytes(body).map_err(|e| BackupError::Corrupt(e.to_string()))?;
    SnapshotData::decode(&snapshot.data)?;
    Ok(snapshot)
}

/// Seeds `dir` (a node's raft directory) with the snapshot as the state of a new
/// one-member cluster: member `id` at `address`. A node started on `dir` with that id
/// restores the snapshot, elects itself and serves; more members join with `AddMember`.
pub fn seed(
    dir: &Path,
    snapshot: &Snapshot,
    id: u64,
    address: &MemberAddress,
) -> Result<u64, BackupError> {
    let non_empty =
        |sub: &str| std::fs::read_dir(dir.join(sub)).is_ok_and(|mut d| d.next().is_some());
    if non_empty("log") || non_empty("snapshots") {
        return Err(BackupError::NotEmpty(dir.display().to_string()));
    }
    let mut data = SnapshotData::decode(&snapshot.data)?;
    data.members = BTreeMap::from([(id, address.clone())]);
    let meta = snapshot.get_metadata();
    let mut seeded = Snapshot {
        data: data.encode().into(),
        ..Snapshot::default()
    };
    let seeded_meta = seeded.mut_metadata();
    seeded_meta.index = meta.index;
    seeded_meta.term = meta.term;
    seeded_meta.set_conf_state(ConfState::from((vec![id], Vec::new())));
    let store = LogStore::open(dir)?;
    store.save_snapshot(&seeded)?;
    let hard_state = HardState {
        term: meta.term,
        commit: meta.index,
        ..HardState::default()
    };
    store.write(ReadyWrite {
        snapshot: Some(seeded.get_metadata()),
        hard_state: Some(&hard_state),
        members: Some(&data.members),
        conf_index: Some(meta.index),
        // A restored cluster is a new cluster: members of the old one refuse it.
        cluster_id: Some(&crate::identity::new_cluster_id()?),
        sync: true,
        ..ReadyWrite::default()
    })?;
    Ok(meta.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut snapshot = Snapshot {
            data: SnapshotData {
                members: BTreeMap::from([
                    (1, MemberAddress::decode("a:1")),
                    (2, MemberAddress::new("b:2", "b:3")),
                ]),
                state: b"state".to_vec(),
            }
            .encode()
            .into(),
            ..Snapshot::default()
        };
        snapshot.mut_metadata().index = 42;
        snapshot.mut_metadata().term = 3;
        snapshot
    }

    #[test]
    fn a_file_round_trips_and_refuses_damage() {
        let file = encode_file(&encode_body(&sample()));
        assert_eq!(decode_file(&file).unwrap(), sample());
        assert!(matches!(
            decode_file(&file[..file.len() - 1]),
            Err(BackupError::Truncated { .. })
        ));
        assert!(matches!(
            decode_file(&file[..10]),
            Err(BackupError::Truncated { .. })
        ));
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(
            decode_file(&longer),
            Err(BackupError::TrailingBytes(1))
        ));
        let mut flipped = file.clone();
        flipped[20] ^= 1;
        assert!(matches!(decode_file(&flipped), Err(BackupError::Checksum)));
        assert!(matches!(
            decode_file(b"hello"),
            Err(BackupError::NotABackup)
        ));
    }

    #[test]
    fn seeding_makes_a_one_member_store_that_restarts_from_the_snapshot() {
        use raft::Storage as _;
        let dir = std::env::temp_dir().join(format!("clockwise-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let address = MemberAddress::new("h:7", "h:8");
        assert_eq!(seed(&dir, &sample(), 7, &address).unwrap(), 42);
        let store = LogStore::open(&dir).unwrap();
        let state = store.initial_state().unwrap();
        assert_eq!(state.conf_state.voters, vec![7]);
        assert_eq!((state.hard_state.term, state.hard_state.commit), (3, 42));
        assert_eq!(store.first_index().unwrap(), 43);
        assert_eq!(
            store.members().unwrap(),
            BTreeMap::from([(7, address.clone())])
        );
        let stored = store.latest_snapshot().unwrap().unwrap();
        let data = SnapshotData::decode(&stored.data).unwrap();
        assert_eq!(data.state, b"state");
        drop(store);
        assert!(matches!(
            seed(&dir, &sample(), 7, &address),
            Err(BackupError::NotEmpty(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
