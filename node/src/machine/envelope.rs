//! The state-machine snapshot envelope: a version byte, the engine's canonical snapshot
//! (length-prefixed), then the retry sessions (see `sessions`).
//!
//! Byte layout (big-endian): `[version = 2][engine length: u64][engine bytes][sessions]`,
//! the sessions being `[clock: i64][count: u64]` then per session `[index][seq]
//! [first seen: i64][client id][outcome]` (lengths as `u64`). Version 1 (no clock, no
//! first-seen times) is still read. Decoders refuse short input, unknown versions and
//! trailing bytes.

use clockwise_engine::SnapshotError;

/// Why a state-machine snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum MachineSnapshotError {
    #[error("engine: {0}")]
    Engine(#[from] SnapshotError),
    #[error("sessions: {0}")]
    Sessions(&'static str),
}

/// Version of the state-machine snapshot written: the engine's snapshot, then the
/// sessions with their clock (2); version 1 (sessions without times) is still read.
pub(crate) const MACHINE_SNAPSHOT_VERSION: u8 = 2;

/// The versions a state-machine snapshot may have.
pub(crate) fn known_version(version: u8) -> Result<u8, MachineSnapshotError> {
    match version {
        1 | MACHINE_SNAPSHOT_VERSION => Ok(version),
        _ => Err(MachineSnapshotError::Sessions(
            "unknown state-machine snapshot version",
        )),
    }
}

pub(crate) const TRUNCATED: MachineSnapshotError = MachineSnapshotError::Sessions("truncated");

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], MachineSnapshotError> {
        if self.0.len() < n {
            return Err(TRUNCATED);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, MachineSnapshotError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}
