//! The replicated state, as the log sees it.

use std::io::{Read, Write};

/// A frozen copy of a state machine's state (see [`StateMachine::freeze`]), encoded on
/// the snapshot-writer thread while the driver goes on applying.
pub trait StateSnapshot: Send + 'static {
    /// Streams the encoding of the frozen state into `out`.
    ///
    /// # Errors
    /// Only `out`'s own errors.
    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()>;
}

/// A deterministic state machine: the same entries applied in the same order give the
/// same results and the same state on every replica (their snapshot bytes may differ:
/// memory layouts do). Implementations must not
/// read clocks, randomness or anything outside the entry.
pub trait StateMachine: Send + 'static {
    /// Why `restore_from` refused a snapshot.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The frozen state [`StateMachine::freeze`] hands out.
    type Snapshot: StateSnapshot;

    /// Runs on the leader just before `data` is proposed, whichever node took the
    /// write (forwarded ones too): the place to decide, once for every replica, what
    /// `apply` must not compute itself (such as "now"), and to refuse a command no
    /// client could have sent (`Err`: why, naming the field; it is never proposed).
    /// Default: unchanged.
    ///
    /// # Errors
    /// The command is refused.
    fn prepare(&self, data: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(data)
    }

    /// Applies the command in `data` (committed at `index`) and returns its encoded result.
    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8>;

    /// The entry at `index` was applied but was not a command (a new leader's no-op,
    /// a membership change): the applied index moved without `apply`. Default: nothing.
    fn applied_other(&mut self, _index: u64) {}

    /// The state as of now, frozen. Runs on the driver thread between applies, so it
    /// must be cheap (a copy-on-write view, not an encoding): the encoding happens on
    /// another thread through [`StateSnapshot::write_to`].
    fn freeze(&self) -> Self::Snapshot;

    /// Replaces the whole state with the one `reader` streams (as
    /// [`StateSnapshot::write_to`] wrote it). `reader` holds exactly that encoding.
    ///
    /// Must read `reader` to its end (a read answering `Ok(0)`) before replacing
    /// anything: the snapshot's checksum is verified at that end, and a mismatch fails
    /// that read. On any error the state is left as it was.
    fn restore_from(&mut self, reader: &mut dyn Read) -> Result<(), Self::Error>;

    /// Called after a successful [`Self::restore_from`] with the log index the restored
    /// state is as of (the next `apply` is of a later index). Default: nothing.
    fn restored_at(&mut self, _index: u64) {}
}
