//! A write's revision on its reply: metadata [`REVISION_METADATA`], the raft index the
//! command applied at (a replayed retry: the first apply's), so a caller can wait until
//! a `Watch` view holds its own change (`RingView::wait_for` in the SDK).
//!
//! The handler learns the revision deep in [`super::state::NodeState::apply`]; rather
//! than thread it through every handler's reply, each call runs in a task-local scope
//! that the apply records into and the client port's reply layer
//! ([`super::identity::IdentityLayer`]) reads when the answer leaves.

use std::cell::Cell;
use std::future::Future;

/// The reply metadata naming the revision a write applied at.
pub const REVISION_METADATA: &str = "x-clockwise-revision";

tokio::task_local! {
    static REVISION: Cell<u64>;
}

/// Runs `call` with a revision slot; answers its output and the revision recorded
/// during it (0: none, it was not a write or did not apply).
pub async fn scope<F: Future>(call: F) -> (F::Output, u64) {
    REVISION
        .scope(Cell::new(0), async move {
            let output = call.await;
            (output, REVISION.with(Cell::get))
        })
        .await
}

/// Records that the current call's write applied at `revision` (outside a [`scope`],
/// as in unit tests of handlers: ignored).
pub fn record(revision: u64) {
    let _ = REVISION.try_with(|slot| slot.set(slot.get().max(revision)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_reports_the_highest_revision_it_recorded_and_none_outside() {
        let ((), revision) = scope(async {
            record(7);
            tokio::task::yield_now().await;
            record(5);
        })
        .await;
        assert_eq!(revision, 7);
        let ((), revision) = scope(async {}).await;
        assert_eq!(revision, 0);
        record(3); // no scope: nothing to record into, and no panic
    }
}
