//! The replicated state, as the log sees it.

/// A deterministic state machine: the same entries applied in the same order give the
/// same results and the same snapshot bytes on every replica. Implementations must not
/// read clocks, randomness or anything outside the entry.
pub trait StateMachine: Send + 'static {
    /// Why `restore` refused a snapshot.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs on the leader just before `data` is proposed: the place to decide, once for
    /// every replica, what `apply` must not compute itself (such as "now"). Default:
    /// unchanged.
    fn prepare(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    /// Applies the command in `data` (committed at `index`) and returns its encoded result.
    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8>;

    /// The whole state, canonically encoded.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), Self::Error>;
}
