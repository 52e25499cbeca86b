//! The driver's configuration, and the raft-rs configuration made from it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::identity::ClusterIdentity;
use crate::member::MemberAddress;

/// Most bytes of entries in one raft message (and the least uncommitted-bytes limit).
const MAX_SIZE_PER_MSG: u64 = 1 << 20;
/// Appends a leader sends a follower ahead of its acknowledgements. raft reads each
/// from the log inside `step`, on the driver thread, and fills the whole window at
/// once when a follower far behind turns to replicating: 256 (raft's usual) meant
/// 256 MiB read in one step and a 137 ms stall of every write at 10M keys, when a
/// wiped follower came back. 32 MiB per step still keeps a catching-up follower busy
/// and is far more than a follower keeping up ever has in flight.
const MAX_INFLIGHT_MSGS: usize = 32;

#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// This node's raft id (non-zero).
    pub id: u64,
    /// The voters of a new cluster and their addresses; ignored when the log already has
    /// a membership. Founding stores a new cluster id (the one `identity` holds, if any).
    pub initial_members: BTreeMap<u64, MemberAddress>,
    /// This node's cluster id, shared with the transport; a leader that has none (a log
    /// from a version without identities) makes one.
    pub identity: ClusterIdentity,
    /// One raft tick.
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Requests queued before senders are refused (peer messages have a queue of the same
    /// size of their own).
    pub queue: usize,
    /// Entries applied since the last snapshot that trigger a new one.
    pub snapshot_entries: u64,
    /// Bytes of entries applied since the last snapshot that trigger a new one.
    pub snapshot_bytes: u64,
    /// Besides those thresholds, the bytes applied since the last snapshot must reach
    /// this percentage of its file's size, so the interval grows with the state and
    /// the cost per write stays flat (see `driver/snapshots.rs`); 0: thresholds only.
    pub snapshot_growth_percent: u64,
    /// Entries kept in the log before a snapshot's index when compacting, so a follower
    /// that lags a little catches up from the log rather than a whole snapshot.
    pub log_retain: u64,
    /// At most this many bytes of those entries are kept (`driver/retention.rs`): a
    /// follower further behind takes the snapshot.
    pub log_retain_bytes: u64,
    /// Bytes of proposed entries a leader holds uncommitted before it refuses new
    /// proposals as [`ProposeError::Busy`] (raft's `max_uncommitted_size`; at least the
    /// 1 MiB of one raft message). Bounds a leader's memory while followers lag.
    pub max_uncommitted_bytes: u64,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            id: 1,
            initial_members: BTreeMap::from([(1, MemberAddress::new("", ""))]),
            identity: ClusterIdentity::default(),
            tick: Duration::from_millis(50),
            election_ticks: 10,
            heartbeat_ticks: 2,
            queue: 4096,
            snapshot_entries: 50_000,
            snapshot_bytes: 64 << 20,
            snapshot_growth_percent: 50,
            log_retain: 5_000,
            log_retain_bytes: 64 << 20,
            max_uncommitted_bytes: 64 << 20,
        }
    }
}

impl DriverConfig {
    /// raft's `max_uncommitted_size`: at least one message's worth.
    pub(super) fn max_uncommitted(&self) -> u64 {
        self.max_uncommitted_bytes.max(MAX_SIZE_PER_MSG)
    }

    /// raft-rs's configuration for this node, whose state machine holds `applied`.
    pub(super) fn raft_config(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.id,
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            max_size_per_msg: MAX_SIZE_PER_MSG,
            max_inflight_msgs: MAX_INFLIGHT_MSGS,
            max_uncommitted_size: self.max_uncommitted(),
            check_quorum: true,
            pre_vote: true,
            // The driver tells followers a new commit index once per pass instead
            // (`commits.rs`).
            skip_bcast_commit: true,
            // The state machine lives in memory: it holds the snapshot restored at
            // `applied`, and the log after it is applied again.
            applied,
            ..raft::Config::default()
        }
    }
}
