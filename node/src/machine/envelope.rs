//! The state-machine snapshot envelope: a version byte, the engine's canonical snapshot
//! (length-prefixed), then the retry sessions (see `sessions`).
//!
//! Byte layout (big-endian): `[version = 1][engine length: u64][engine bytes][sessions]`.
//! Decoders refuse short input, unknown versions and trailing bytes.

use clockwise_engine::SnapshotError;

/// Why a state-machine snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum MachineSnapshotError {
    #[error("engine: {0}")]
    Engine(#[from] SnapshotError),
    #[error("sessions: {0}")]
    Sessions(&'static str),
}

/// Version of the state-machine snapshot: the engine's snapshot, then the sessions.
pub(crate) const MACHINE_SNAPSHOT_VERSION: u8 = 1;

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
