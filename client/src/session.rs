//! Write sessions: each write in flight holds a lane, a session id of its own whose
//! sequence numbers rise one call at a time, so a retried write is applied once and
//! concurrent writes never overtake each other's numbers (the cluster refuses a number
//! below the last one it applied for that session).

use std::sync::{Mutex, PoisonError};

/// A client's lanes: the free ones with their next sequence number, and how many exist.
#[derive(Default)]
pub(crate) struct Lanes {
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    free: Vec<(u32, u64)>,
    count: u32,
}

impl Lanes {
    /// A free lane and its next sequence number, or a new lane.
    pub(crate) fn take(&self) -> (u32, u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = state.free.pop() {
            return lane;
        }
        state.count += 1;
        (state.count, 1)
    }

    /// Gives `lane` back with the sequence number its next write uses.
    pub(crate) fn give_back(&self, lane: (u32, u64)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.free.push(lane);
    }
}

/// A write's lane, given back (with its next sequence number) when dropped: the caller
/// may drop the call's future, and its sequence number is spent either way.
pub(crate) struct LaneGuard<'a> {
    lanes: &'a Lanes,
    lane: u32,
    seq: u64,
}

impl<'a> LaneGuard<'a> {
    pub(crate) fn take(lanes: &'a Lanes) -> Self {
        let (lane, seq) = lanes.take();
        LaneGuard { lanes, lane, seq }
    }

    /// The session id (`client_id/lane`) and sequence number every attempt carries.
    pub(crate) fn session(&self, client_id: &str) -> (String, u64) {
        (format!("{client_id}/{}", self.lane), self.seq)
    }
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        self.lanes.give_back((self.lane, self.seq + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writes_take_separate_lanes_and_reuse_them_in_order() {
        let lanes = Lanes::default();
        let a = lanes.take();
        let b = lanes.take();
        assert_ne!(a.0, b.0);
        assert_eq!((a.1, b.1), (1, 1));
        lanes.give_back((a.0, a.1 + 1));
        assert_eq!(lanes.take(), (a.0, 2), "the lane's next number");
    }

    #[test]
    fn a_dropped_write_spends_its_number() {
        let lanes = Lanes::default();
        let guard = LaneGuard::take(&lanes);
        assert_eq!(guard.session("c"), ("c/1".to_owned(), 1));
        drop(guard);
        assert_eq!(lanes.take(), (1, 2));
    }
}
