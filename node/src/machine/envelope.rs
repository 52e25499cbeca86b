//! The state-machine snapshot envelope: a version byte, the retry sessions
//! (length-prefixed, small and bounded), then the engine's snapshot stream to
//! the end (last, so it is written streaming with no length known in advance and read
//! through a length-limited reader: issue 15).
//!
//! Byte layout (big-endian), version 3: `[3][sessions length: u64][sessions][engine
//! bytes to the end]`, the sessions being `[clock: i64][count: u64]` then per session
//! `[index][seq][first seen: i64][client id][outcome]` (lengths as `u64`). Versions 2
//! (`[2][engine length: u64][engine bytes][sessions]`) and 1 (the same, sessions without
//! clock or first-seen times) are still read. Decoders refuse short input, unknown
//! versions, oversized sessions and trailing bytes.

use clockwise_engine::SnapshotError;

/// Why a state-machine snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum MachineSnapshotError {
    #[error("engine: {0}")]
    Engine(#[from] SnapshotError),
    #[error("sessions: {0}")]
    Sessions(&'static str),
    #[error("reading the snapshot: {0}")]
    Read(String),
}

/// Version of the state-machine snapshot written: the sessions, then the engine's
/// stream (3); versions 2 (engine first, sessions with their clock) and 1 (sessions
/// without times) are still read.
pub(crate) const MACHINE_SNAPSHOT_VERSION: u8 = 3;

/// The most bytes of encoded sessions a snapshot may hold: the sessions' own bound
/// with room for their framing (and one outcome past it), so a damaged length cannot
/// ask for more.
pub(crate) const MAX_SESSIONS_ENCODED: u64 = 4 * super::MAX_SESSION_BYTES as u64;

/// The versions a state-machine snapshot may have.
pub(crate) fn known_version(version: u8) -> Result<u8, MachineSnapshotError> {
    match version {
        1 | 2 | MACHINE_SNAPSHOT_VERSION => Ok(version),
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
