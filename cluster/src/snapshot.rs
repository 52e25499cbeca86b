//! What a raft snapshot's data holds, and its integrity check.
//!
//! The data of every snapshot this crate builds, stores or sends is one envelope:
//! the members' addresses (raft's `ConfState` in the snapshot's metadata has only
//! their ids), then the state machine's own encoding, then a SHA-256 of all that.
//! A snapshot is only ever installed or restored after the checksum matched.
//!
//! Layout: `MAGIC`, `u32` member count, per member `u64` id, `u32` length and the
//! address bytes, `u64` state length, the state bytes, 32 bytes of SHA-256 over
//! everything before them. Integers are big-endian.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::member::MemberAddress;

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

/// SHA-256 of `bytes`, as the transport checks a received snapshot.
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
