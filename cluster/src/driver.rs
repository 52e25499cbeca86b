//! The one owner of raft-rs's `RawNode`: a dedicated OS thread running the Ready loop.
//!
//! Everything else talks to it through two bounded channels, one of [`Event`]s
//! (proposals, reads, membership) and one of peer messages, so a flood of proposals
//! cannot crowd out heartbeats, and gets answers on per-request oneshot channels,
//! matched by request id, never by queue position. The thread may block on fsync (the log's synced
//! writes), which is why it is not a tokio task. Order per Ready, as raft-rs documents:
//! send the leader's messages, install a snapshot, apply committed entries, persist
//! entries and hard state in one synced batch, then send the messages that needed that
//! write, advance, apply what the advance committed.
//!
//! Snapshots: after applying, once the log since the last snapshot passes
//! `snapshot_entries` or `snapshot_bytes` (or raft wanted to send one the stored
//! snapshot cannot serve), the driver encodes the state machine with the members'
//! addresses ([`SnapshotData`]), stores it, and compacts the log up to
//! `log_retain` entries before it. A snapshot from the leader is checked, restored into
//! the state machine and stored before the log records it. On start, the newest stored
//! snapshot the log can continue from is restored and only later entries are replayed.
//!
//! Membership: one change at a time, validated here on the leader; a new member joins
//! as a learner and the leader promotes it once its log has caught up.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};
use tokio::sync::{oneshot, watch};

use crate::member::MemberAddress;
use crate::snapshot::SnapshotData;
use crate::state_machine::StateMachine;
use crate::storage::{LogStore, ReadyWrite, StoreError};

/// How long a ReadIndex request may go unanswered by raft before it is failed.
const READ_EXPIRY: Duration = Duration::from_millis(500);

/// Most bytes of entries in one raft message (and the least uncommitted-bytes limit).
const MAX_SIZE_PER_MSG: u64 = 1 << 20;
/// A learner is promoted once its log is at most this many entries behind the leader's.
const PROMOTION_LAG: u64 = 64;

/// Delivers raft messages to peers. Must not block: queue and return.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, messages: Vec<Message>);

    /// A member joined (or moved): send to it at `address` from now on.
    fn add_peer(&self, _id: u64, _address: &str) {}

    /// A member left.
    fn remove_peer(&self, _id: u64) {}
}

#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// This node's raft id (non-zero).
    pub id: u64,
    /// The voters of a new cluster and their addresses; ignored when the log already has
    /// a membership.
    pub initial_members: BTreeMap<u64, String>,
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
    /// Entries kept in the log before a snapshot's index when compacting, so a follower
    /// that lags a little catches up from the log rather than a whole snapshot.
    pub log_retain: u64,
    /// Bytes of proposed entries a leader holds uncommitted before it refuses new
    /// proposals as [`ProposeError::Busy`] (raft's `max_uncommitted_size`; at least the
    /// 1 MiB of one raft message). Bounds a leader's memory while followers lag.
    pub max_uncommitted_bytes: u64,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            id: 1,
            initial_members: BTreeMap::from([(1, String::new())]),
            tick: Duration::from_millis(50),
            election_ticks: 10,
            heartbeat_ticks: 2,
            queue: 4096,
            snapshot_entries: 50_000,
            snapshot_bytes: 64 << 20,
            log_retain: 5_000,
            max_uncommitted_bytes: 64 << 20,
        }
    }
}

/// Why a proposal has no result.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProposeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("the proposal queue is full")]
    Busy,
    /// Leadership changed before the entry was applied: it may or may not be applied.
    #[error("leadership changed; the outcome is unknown")]
    Unknown,
    #[error("the raft driver has stopped")]
    Stopped,
    /// The change is not possible (e.g. removing a node that is not a member).
    #[error("{0}")]
    Refused(String),
    /// Another membership change is still being applied; retrying later may succeed.
    #[error("{0}")]
    Conflict(String),
}

/// A membership change the leader validates and proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// A new member at `address`, joining as a learner.
    AddLearner {
        id: u64,
        address: String,
    },
    Remove {
        id: u64,
    },
}

/// A snapshot of the node's raft state, for status RPCs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    pub role: Role,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Every member's address (empty for the in-process tests' members).
    pub members: BTreeMap<u64, String>,
    /// Index of the latest snapshot built or installed here (0: none).
    pub snapshot_index: u64,
    /// First index still in the log.
    pub first_index: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    #[default]
    Follower,
    Candidate,
    Leader,
}

enum Event {
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, ProposeError>>,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    ChangeMembership {
        change: MembershipChange,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    TransferLeader {
        target: u64,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    TakeSnapshot {
        reply: oneshot::Sender<Result<Snapshot, ProposeError>>,
    },
    Stop,
}

/// The handle others use; cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    events: Sender<Event>,
    /// Peer messages have their own queue, so a flood of proposals never crowds out the
    /// heartbeats and votes that keep the group alive.
    messages: Sender<Message>,
    /// How snapshot sends ended: never dropped (raft waits for each report before it
    /// sends the follower anything else), and at most one per snapshot sent.
    reports: Sender<(u64, bool)>,
    status: watch::Receiver<RaftStatus>,
}

impl RaftHandle {
    /// Proposes `data` and waits until it is applied here; answers the state machine's
    /// result. Only the leader accepts proposals.
    pub async fn propose(&self, data: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Propose { data, reply })?;
        answer.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// Waits until this node has applied everything committed when the call started
    /// (raft's ReadIndex, confirmed by a quorum): a read of local state afterwards is
    /// linearizable. Works on followers too (raft asks the leader). The caller bounds
    /// the wait: a new leader answers only once it has committed in its term.
    pub async fn read_index(&self) -> Result<(), ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::ReadIndex { reply })?;
        answer.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// Hands a message from a peer to the driver; dropped when the queue is full (raft
    /// retransmits). Answers whether it was queued.
    pub fn step(&self, message: Message) -> bool {
        self.messages.try_send(message).is_ok()
    }

    /// Proposes a membership change (leader only); answers the log index it was
    /// applied at.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<u64, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::ChangeMembership { change, reply })?;
        answer.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// Asks the leader to hand leadership to `target`; answers once the transfer has
    /// started (watch [`RaftHandle::watch_status`] for its end).
    pub async fn transfer_leader(&self, target: u64) -> Result<(), ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::TransferLeader { target, reply })?;
        answer.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// A snapshot of this node's state as of its applied index (for backups): the
    /// membership in its metadata, the members' addresses and the state in its data.
    pub async fn snapshot(&self) -> Result<Snapshot, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::TakeSnapshot { reply })?;
        answer.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// Tells raft whether a snapshot sent to `to` arrived (it resumes or retries).
    pub fn report_snapshot(&self, to: u64, delivered: bool) {
        let _ = self.reports.send((to, delivered));
    }

    fn send(&self, event: Event) -> Result<(), ProposeError> {
        self.events.try_send(event).map_err(|e| match e {
            TrySendError::Full(_) => ProposeError::Busy,
            TrySendError::Disconnected(_) => ProposeError::Stopped,
        })
    }

    pub fn status(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    /// The status, notified on every change.
    pub fn watch_status(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// Stops the driver thread (pending proposals answer `Stopped`).
    pub fn stop(&self) {
        let _ = self.events.send(Event::Stop);
    }
}

/// A random number for this run of the driver.
fn run_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Starts the driver thread for `store` and `machine`.
pub fn spawn<S: StateMachine>(
    config: DriverConfig,
    store: LogStore,
    machine: S,
    transport: Arc<dyn Transport>,
) -> Result<(RaftHandle, JoinHandle<()>), StoreError> {
    if !config.initial_members.is_empty() {
        store.bootstrap(&config.initial_members)?;
    }
    // Without a membership (a node started to join), raft waits for the leader.
    let members = store.members()?;
    let mut machine = machine;
    let snapshot_index = restore_latest_snapshot(&store, &mut machine)?;
    for (&id, address) in &members {
        if id != config.id {
            transport.add_peer(id, address);
        }
    }
    let raft_config = raft::Config {
        id: config.id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        max_size_per_msg: MAX_SIZE_PER_MSG,
        max_inflight_msgs: 256,
        max_uncommitted_size: config.max_uncommitted_bytes.max(MAX_SIZE_PER_MSG),
        check_quorum: true,
        pre_vote: true,
        // The state machine lives in memory: it holds the snapshot restored above, and
        // the log after it is applied again.
        applied: snapshot_index,
        ..raft::Config::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let node = RawNode::new(&raft_config, store.clone(), &logger)
        .map_err(|e| StoreError::Raft(e.to_string()))?;
    let (events, inbox) = crossbeam_channel::bounded(config.queue);
    let (messages, message_inbox) = crossbeam_channel::bounded(config.queue);
    let (reports, report_inbox) = crossbeam_channel::unbounded();
    let (status, status_receiver) = watch::channel(RaftStatus {
        id: config.id,
        ..RaftStatus::default()
    });
    let handle = RaftHandle {
        events,
        messages,
        reports,
        status: status_receiver,
    };
    let alone = store
        .conf_state()?
        .is_some_and(|cs| cs.voters == [config.id] && cs.learners.is_empty());
    let applied_conf_index = store.conf_index()?;
    let mut driver = Driver {
        node,
        store,
        machine,
        transport,
        status,
        pending: HashMap::new(),
        nonce: run_nonce(),
        applied_conf_index,
        members,
        reads: HashMap::new(),
        confirmed_reads: Vec::new(),
        next_request: 1,
        tick: config.tick,
        snapshot_entries: config.snapshot_entries.max(1),
        snapshot_bytes: config.snapshot_bytes.max(1),
        log_retain: config.log_retain,
        snapshot_index,
        bytes_since_snapshot: 0,
        pending_changes: HashMap::new(),
    };
    driver.publish_status();
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", config.id))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                if alone {
                    // A group of one needs no election timeout to know who leads.
                    let _ = driver.node.campaign();
                }
                driver.run(inbox, message_inbox, report_inbox)
            }));
            if outcome.is_err() {
                // Fail-stop: a node whose raft driver died must not keep answering.
                eprintln!("fatal: the raft driver panicked; aborting the node");
                std::process::abort();
            }
        })
        .map_err(|e| StoreError::Raft(format!("cannot start the raft thread: {e}")))?;
    Ok((handle, thread))
}

struct Driver<S> {
    node: RawNode<LogStore>,
    store: LogStore,
    machine: S,
    transport: Arc<dyn Transport>,
    status: watch::Sender<RaftStatus>,
    /// Proposals made here and not applied yet, by request id (in the entry context).
    pending: HashMap<u64, oneshot::Sender<Result<Vec<u8>, ProposeError>>>,
    /// Membership changes proposed here and not applied yet, by request id.
    pending_changes: HashMap<u64, oneshot::Sender<Result<u64, ProposeError>>>,
    /// Random per run: tells this run's requests from any other's (see `context`).
    nonce: u64,
    /// The last membership change already reflected in the stored configuration; on
    /// replay, changes up to it are not applied again.
    applied_conf_index: u64,
    /// Every member's address, as applied from the log.
    members: BTreeMap<u64, String>,
    /// ReadIndex requests by request id, before raft has answered them, with the time
    /// they were asked (raft drops some silently, e.g. at a leader that has not yet
    /// committed in its term: those expire).
    reads: HashMap<u64, (Instant, oneshot::Sender<Result<(), ProposeError>>)>,
    /// Answered ReadIndex requests waiting for the apply index to reach theirs.
    confirmed_reads: Vec<(u64, oneshot::Sender<Result<(), ProposeError>>)>,
    next_request: u64,
    tick: Duration,
    snapshot_entries: u64,
    snapshot_bytes: u64,
    log_retain: u64,
    /// Index of the latest snapshot built or installed.
    snapshot_index: u64,
    /// Bytes of entries applied since that snapshot.
    bytes_since_snapshot: u64,
}

/// Restores the newest stored snapshot the log can continue from into `machine`;
/// answers its index (0: none, the whole log is applied).
fn restore_latest_snapshot<S: StateMachine>(
    store: &LogStore,
    machine: &mut S,
) -> Result<u64, StoreError> {
    use raft::Storage as _;
    let truncated = store
        .first_index()
        .map_err(|e| StoreError::Raft(e.to_string()))?
        - 1;
    // A snapshot beyond the stored commit index was written just before a crash
    // interrupted its install or compaction: the log (and an older snapshot) still
    // hold everything, so it is not used.
    let commit = store.hard_state()?.commit;
    store.discard_snapshots_after(commit.max(truncated))?;
    let Some(snapshot) = store.latest_snapshot_within(truncated, commit.max(truncated))? else {
        if truncated > 0 {
            return Err(StoreError::Corrupt(
                "the log is compacted but no stored snapshot covers it",
            ));
        }
        return Ok(0);
    };
    let data = SnapshotData::decode(&snapshot.data)
        .map_err(|e| StoreError::Raft(format!("stored snapshot: {e}")))?;
    machine
        .restore(&data.state)
        .map_err(|e| StoreError::Raft(format!("restoring the stored snapshot: {e}")))?;
    Ok(snapshot.get_metadata().index)
}

impl<S: StateMachine> Driver<S> {
    fn run(
        &mut self,
        inbox: Receiver<Event>,
        messages: Receiver<Message>,
        reports: Receiver<(u64, bool)>,
    ) {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(messages) -> message => {
                    if let Ok(message) = message {
                        self.step(message);
                    }
                }
                recv(reports) -> report => {
                    if let Ok((to, delivered)) = report {
                        self.report_snapshot(to, delivered);
                    }
                }
                recv(inbox) -> event => match event {
                    Ok(Event::Stop) | Err(_) => break,
                    Ok(event) => self.handle(event),
                },
                default(wait) => {}
            }
            // Take everything already queued before the next Ready (peer messages first):
            // one fsync then covers many proposals.
            while let Ok((to, delivered)) = reports.try_recv() {
                self.report_snapshot(to, delivered);
            }
            while let Ok(message) = messages.try_recv() {
                self.step(message);
            }
            while let Ok(event) = inbox.try_recv() {
                if matches!(event, Event::Stop) {
                    return self.fail_pending(ProposeError::Stopped);
                }
                self.handle(event);
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick = Instant::now() + self.tick;
                self.expire_reads();
                self.promote_caught_up_learner();
            }
            if let Err(e) = self.on_ready() {
                // The log cannot be written or replayed: a node that cannot persist must
                // not keep answering (fail-stop).
                tracing::error!(error = %e, "raft driver failed; aborting the node");
                eprintln!("fatal: raft driver failed: {e}");
                std::process::abort();
            }
        }
        self.fail_pending(ProposeError::Stopped);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Propose { data, reply } => {
                if self.node.raft.state != StateRole::Leader {
                    let leader = Some(self.node.raft.leader_id).filter(|&id| id != 0);
                    let _ = reply.send(Err(ProposeError::NotLeader { leader }));
                    return;
                }
                let id = self.next_request;
                self.next_request += 1;
                let data = self.machine.prepare(data);
                match self.node.propose(self.context(id), data) {
                    Ok(()) => {
                        self.pending.insert(id, reply);
                    }
                    // A leader drops a proposal while it hands leadership over, or when
                    // its uncommitted entries are at their limit (followers lagging).
                    Err(_) if self.node.raft.lead_transferee.is_none() => {
                        let _ = reply.send(Err(ProposeError::Busy));
                    }
                    Err(_) => {
                        let _ = reply.send(Err(ProposeError::NotLeader { leader: None }));
                    }
                }
            }
            Event::ReadIndex { reply } => {
                let raft = &self.node.raft;
                let no_leader = raft.leader_id == 0;
                let fresh_leader =
                    raft.state == StateRole::Leader && !raft.commit_to_current_term();
                if no_leader || fresh_leader {
                    // raft would drop it; let the caller retry shortly.
                    let leader = Some(raft.leader_id).filter(|&id| id != 0);
                    let _ = reply.send(Err(ProposeError::NotLeader { leader }));
                    return;
                }
                let id = self.next_request;
                self.next_request += 1;
                self.node.read_index(self.context(id));
                self.reads.insert(id, (Instant::now(), reply));
            }
            Event::ChangeMembership { change, reply } => {
                if let Err(e) = self.propose_membership(change, reply) {
                    tracing::debug!(error = %e, "membership change refused");
                }
            }
            Event::TransferLeader { target, reply } => {
                let _ = reply.send(self.transfer_leader(target));
            }
            Event::TakeSnapshot { reply } => {
                let _ = reply
                    .send(self.current_snapshot().map_err(|e| {
                        ProposeError::Refused(format!("cannot take a snapshot: {e}"))
                    }));
            }
            Event::Stop => {}
        }
    }

    fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.node.report_snapshot(to, status);
    }

    /// Steps a peer's message into raft.
    fn step(&mut self, message: Message) {
        if message.get_msg_type() == MessageType::MsgHeartbeat
            && message.commit > self.node.raft.raft_log.last_index()
        {
            // The leader saw this node acknowledge entries its log does not
            // hold: its data was lost (wiped or restored from an old copy).
            // raft-rs would panic; refuse, and say how to recover.
            tracing::error!(
                commit = message.commit,
                last_index = self.node.raft.raft_log.last_index(),
                "this node's log lacks entries it acknowledged before (data lost or \
                 wiped?); remove it with Cluster.RemoveMember and add it back with \
                 Cluster.AddMember, starting it with --join"
            );
            return;
        }
        // Messages from unknown or stale peers are refused by raft: nothing to do.
        let _ = self.node.step(message);
    }

    /// The leader's error for a request only a leader can serve.
    fn not_leader(&self) -> Option<ProposeError> {
        let raft = &self.node.raft;
        (raft.state != StateRole::Leader).then(|| ProposeError::NotLeader {
            leader: Some(raft.leader_id).filter(|&id| id != 0),
        })
    }

    /// Validates a membership change against the current configuration and proposes
    /// it; `reply` is answered when it is applied (or now, when refused).
    fn propose_membership(
        &mut self,
        change: MembershipChange,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    ) -> Result<(), ProposeError> {
        let refused = |reply: oneshot::Sender<_>, error: ProposeError| {
            let _ = reply.send(Err(error.clone()));
            Err(error)
        };
        if let Some(error) = self.not_leader() {
            return refused(reply, error);
        }
        if self.node.raft.has_pending_conf() {
            return refused(
                reply,
                ProposeError::Conflict(
                    "another membership change is still being applied; retry shortly".into(),
                ),
            );
        }
        let conf = self.node.raft.prs().conf().to_conf_state();
        let is_member = |id: u64| conf.voters.contains(&id) || conf.learners.contains(&id);
        let mut cc = ConfChange::default();
        match change {
            MembershipChange::AddLearner { id, address } => {
                if id == 0 {
                    return refused(reply, ProposeError::Refused("id: must not be 0".into()));
                }
                if is_member(id) {
                    return refused(
                        reply,
                        ProposeError::Refused(format!("id: node {id} is already a member")),
                    );
                }
                if !valid_address(&address) {
                    return refused(
                        reply,
                        ProposeError::Refused(format!(
                            "address: {address:?} is not a host:port address"
                        )),
                    );
                }
                cc.set_change_type(ConfChangeType::AddLearnerNode);
                cc.node_id = id;
                cc.context = address.into_bytes().into();
            }
            MembershipChange::Remove { id } => {
                if !is_member(id) {
                    return refused(
                        reply,
                        ProposeError::Refused(format!("id: node {id} is not a member")),
                    );
                }
                if id == self.node.raft.id {
                    return refused(
                        reply,
                        ProposeError::Refused(format!(
                            "id: node {id} leads the group; transfer leadership to another \
                             member first (TransferLeader)"
                        )),
                    );
                }
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = id;
            }
        }
        let request = self.next_request;
        self.next_request += 1;
        match self.node.propose_conf_change(self.context(request), cc) {
            Ok(()) => {
                self.pending_changes.insert(request, reply);
                Ok(())
            }
            Err(e) => refused(reply, ProposeError::Conflict(e.to_string())),
        }
    }

    fn transfer_leader(&mut self, target: u64) -> Result<(), ProposeError> {
        if let Some(error) = self.not_leader() {
            return Err(error);
        }
        if target == self.node.raft.id {
            return Ok(());
        }
        let conf = self.node.raft.prs().conf().to_conf_state();
        if !conf.voters.contains(&target) {
            return Err(ProposeError::Refused(format!(
                "target_id: node {target} is not a voting member"
            )));
        }
        self.node.transfer_leader(target);
        Ok(())
    }

    /// On the leader: promotes one learner whose log has caught up to a voter. One
    /// change at a time: nothing is proposed while another is unapplied (raft would
    /// turn the proposal into an empty entry).
    fn promote_caught_up_learner(&mut self) {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader || raft.has_pending_conf() {
            return;
        }
        let last = raft.raft_log.last_index();
        let conf = raft.prs().conf().to_conf_state();
        // Caught up: it has acknowledged the latest membership change (its own
        // addition at the least, so a learner that never answered, with nothing matched,
        // is never promoted), it is not waiting for a snapshot, and it trails by at most
        // PROMOTION_LAG entries.
        let added_at = self.applied_conf_index;
        let caught_up = conf.learners.iter().copied().find(|&id| {
            raft.prs().get(id).is_some_and(|pr| {
                pr.recent_active
                    && pr.state != ProgressState::Snapshot
                    && pr.matched >= added_at
                    && pr.matched + PROMOTION_LAG >= last
            })
        });
        let Some(id) = caught_up else { return };
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = id;
        if let Some(address) = self.members.get(&id) {
            cc.context = address.clone().into_bytes().into();
        }
        // Not ours to answer: an empty context.
        if let Err(e) = self.node.propose_conf_change(Vec::new(), cc) {
            tracing::warn!(learner = id, error = %e, "cannot propose the promotion of a learner");
        }
    }

    fn on_ready(&mut self) -> Result<(), StoreError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        if let Some(ss) = ready.ss() {
            if ss.raft_state != StateRole::Leader {
                // Entries proposed here may be overwritten by the new leader.
                self.fail_pending(ProposeError::Unknown);
            }
        }
        for state in ready.take_read_states() {
            if let Some((_, reply)) = self
                .request_id(&state.request_ctx)
                .and_then(|id| self.reads.remove(&id))
            {
                self.confirmed_reads.push((state.index, reply));
            }
        }
        let installed = if ready.snapshot().is_empty() {
            None
        } else {
            Some(self.install_snapshot(ready.snapshot())?)
        };
        self.apply(ready.take_committed_entries())?;
        self.store.write(ReadyWrite {
            snapshot: installed.as_ref().map(Snapshot::get_metadata),
            entries: ready.entries(),
            hard_state: ready.hs(),
            members: installed.as_ref().map(|_| &self.members),
            conf_index: installed.as_ref().map(|s| s.get_metadata().index),
            sync: ready.must_sync(),
            ..ReadyWrite::default()
        })?;
        if let Some(snapshot) = installed {
            // The log now starts after it: older snapshots are of no use.
            self.store.prune_snapshots(snapshot.get_metadata().index)?;
        }
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hard_state = self.node.raft.hard_state();
            hard_state.commit = commit;
            self.store.write(ReadyWrite {
                hard_state: Some(&hard_state),
                ..ReadyWrite::default()
            })?;
        }
        self.transport.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.node.advance_apply();
        self.answer_reads();
        self.maybe_snapshot()?;
        self.publish_status();
        Ok(())
    }

    /// Installs a snapshot from the leader: checks it, restores the state machine,
    /// takes its members and stores it (the caller records it in the log).
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<Snapshot, StoreError> {
        // The transport checked it on arrival; a mismatch here is a bug: stop.
        let data = SnapshotData::decode(&snapshot.data)
            .map_err(|e| StoreError::Raft(format!("received snapshot: {e}")))?;
        self.machine
            .restore(&data.state)
            .map_err(|e| StoreError::Raft(format!("restoring the received snapshot: {e}")))?;
        self.store.save_snapshot(snapshot)?;
        for (&id, address) in &data.members {
            if id != self.node.raft.id && self.members.get(&id) != Some(address) {
                self.transport.add_peer(id, address);
            }
        }
        for &id in self.members.keys() {
            if !data.members.contains_key(&id) {
                self.transport.remove_peer(id);
            }
        }
        self.members = data.members;
        let index = snapshot.get_metadata().index;
        self.applied_conf_index = index;
        self.snapshot_index = index;
        self.bytes_since_snapshot = 0;
        tracing::info!(index, "installed a snapshot from the leader");
        Ok(snapshot.clone())
    }

    /// The state machine, the members' addresses and the membership as of the applied
    /// index.
    fn current_snapshot(&self) -> Result<Snapshot, StoreError> {
        let applied = self.node.raft.raft_log.applied;
        if applied < self.applied_conf_index {
            // Still replaying entries the stored membership already reflects: a snapshot
            // now would pair this state with a later membership.
            return Err(StoreError::Raft(
                "the node is still replaying its log; retry shortly".into(),
            ));
        }
        let term = self
            .node
            .raft
            .raft_log
            .term(applied)
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        let data = SnapshotData {
            members: self.members.clone(),
            state: self.machine.snapshot(),
        };
        let mut snapshot = Snapshot {
            data: data.encode().into(),
            ..Snapshot::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(self.node.raft.prs().conf().to_conf_state());
        Ok(snapshot)
    }

    /// Builds a snapshot at the applied index and compacts the log when enough was
    /// applied since the last one, or when raft wants one to send.
    fn maybe_snapshot(&mut self) -> Result<(), StoreError> {
        let applied = self.node.raft.raft_log.applied;
        if applied < self.applied_conf_index {
            return Ok(()); // replaying: see `current_snapshot`
        }
        let wanted = self.store.take_snapshot_wanted();
        let due = applied - self.snapshot_index.min(applied) >= self.snapshot_entries
            || self.bytes_since_snapshot >= self.snapshot_bytes;
        if applied <= self.snapshot_index || !(due || wanted) {
            return Ok(());
        }
        let raft_error = |e: raft::Error| StoreError::Raft(e.to_string());
        let snapshot = self.current_snapshot()?;
        self.store.save_snapshot(&snapshot)?;
        // A restart uses a snapshot only up to the stored commit index: store it (synced)
        // with the compaction, and only then drop the older snapshot.
        let hard_state = self.node.raft.hard_state();
        let compact_to = applied.saturating_sub(self.log_retain);
        if compact_to >= self.node.raft.raft_log.first_index() {
            let term = self
                .node
                .raft
                .raft_log
                .term(compact_to)
                .map_err(raft_error)?;
            self.store.compact(compact_to, term, Some(&hard_state))?;
        } else {
            self.store.write(ReadyWrite {
                hard_state: Some(&hard_state),
                sync: true,
                ..ReadyWrite::default()
            })?;
        }
        self.store.prune_snapshots(applied)?;
        self.snapshot_index = applied;
        self.bytes_since_snapshot = 0;
        tracing::info!(
            index = applied,
            compacted_to = compact_to,
            "took a snapshot"
        );
        Ok(())
    }

    /// A request's context: this run's nonce, then its id. Ids restart with every run
    /// and differ between nodes, so an entry or read answer is ours only if it carries
    /// our nonce (another run's or another node's request must never get our reply).
    fn context(&self, id: u64) -> Vec<u8> {
        let mut context = Vec::with_capacity(16);
        context.extend_from_slice(&self.nonce.to_be_bytes());
        context.extend_from_slice(&id.to_be_bytes());
        context
    }

    /// The id of a request this run made, from its context.
    fn request_id(&self, context: &[u8]) -> Option<u64> {
        let bytes: [u8; 16] = context.try_into().ok()?;
        let (nonce, id) = bytes.split_at(8);
        (u64::from_be_bytes(nonce.try_into().ok()?) == self.nonce)
            .then(|| u64::from_be_bytes(id.try_into().expect("8 bytes")))
    }

    /// Fails ReadIndex requests raft never answered, so callers ask again.
    fn expire_reads(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, (asked, _))| now.duration_since(*asked) > READ_EXPIRY)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some((_, reply)) = self.reads.remove(&id) {
                let _ = reply.send(Err(ProposeError::Unknown));
            }
        }
    }

    /// Answers the confirmed reads whose index is applied.
    fn answer_reads(&mut self) {
        let applied = self.node.raft.raft_log.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.confirmed_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.confirmed_reads = waiting;
        for (_, reply) in ready {
            let _ = reply.send(Ok(()));
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        for entry in entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {} // a new leader's no-op
                EntryType::EntryNormal => {
                    self.bytes_since_snapshot += entry.data.len() as u64;
                    let result = self.machine.apply(entry.index, &entry.data);
                    if let Some(reply) = self
                        .request_id(&entry.context)
                        .and_then(|id| self.pending.remove(&id))
                    {
                        let _ = reply.send(Ok(result));
                    }
                }
                EntryType::EntryConfChange => {
                    let change = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|_| StoreError::Corrupt("conf change entry"))?;
                    let outcome = self.apply_member_change(entry.index, &change)?;
                    // Callers read the new membership from the status.
                    self.publish_status();
                    if let Some(reply) = self
                        .request_id(&entry.context)
                        .and_then(|id| self.pending_changes.remove(&id))
                    {
                        let _ = reply.send(outcome.map(|()| entry.index));
                    }
                }
                // Only single changes (v1) are ever proposed here.
                EntryType::EntryConfChangeV2 => {
                    return Err(StoreError::Corrupt("unexpected joint membership change"));
                }
            }
        }
        Ok(())
    }

    /// Applies a committed membership change: raft's configuration, the members'
    /// addresses and the transport, persisted together. A change raft refuses (the
    /// same on every replica, as the configuration is) is skipped and answered.
    fn apply_member_change(
        &mut self,
        index: u64,
        change: &ConfChange,
    ) -> Result<Result<(), ProposeError>, StoreError> {
        if index <= self.applied_conf_index {
            // Replaying the log after a restart: the stored configuration has it already.
            return Ok(Ok(()));
        }
        let conf_state = match self.node.apply_conf_change(change) {
            Ok(conf_state) => conf_state,
            Err(e) => {
                tracing::warn!(error = %e, index, "skipped a membership change raft refused");
                self.applied_conf_index = index;
                return Ok(Err(ProposeError::Refused(e.to_string())));
            }
        };
        let id = change.node_id;
        match change.get_change_type() {
            ConfChangeType::AddLearnerNode | ConfChangeType::AddNode => {
                if !change.context.is_empty() {
                    let address = String::from_utf8_lossy(&change.context).into_owned();
                    if id != self.node.raft.id {
                        self.transport.add_peer(id, &address);
                    }
                    self.members.insert(id, address);
                }
            }
            ConfChangeType::RemoveNode => {
                self.members.remove(&id);
                self.transport.remove_peer(id);
            }
        }
        self.applied_conf_index = index;
        self.store.write(ReadyWrite {
            conf_state: Some(&conf_state),
            conf_index: Some(index),
            members: Some(&self.members),
            sync: true,
            ..ReadyWrite::default()
        })?;
        Ok(Ok(()))
    }

    fn fail_pending(&mut self, error: ProposeError) {
        // A proposal already handed to raft may still be committed: its outcome is unknown.
        let proposal_error = match error {
            ProposeError::Stopped => ProposeError::Unknown,
            ref e => e.clone(),
        };
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(proposal_error.clone()));
        }
        for (_, reply) in self.pending_changes.drain() {
            let _ = reply.send(Err(proposal_error.clone()));
        }
        for (_, (_, reply)) in self.reads.drain() {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, reply) in self.confirmed_reads.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
    }

    fn publish_status(&self) {
        let raft = &self.node.raft;
        let mut conf = raft.prs().conf().to_conf_state();
        conf.voters.sort_unstable();
        conf.learners.sort_unstable();
        let status = RaftStatus {
            id: raft.id,
            role: match raft.state {
                StateRole::Leader => Role::Leader,
                StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
                StateRole::Follower => Role::Follower,
            },
            leader_id: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: raft.raft_log.applied,
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            members: self.members.clone(),
            snapshot_index: self.snapshot_index,
            first_index: raft.raft_log.first_index(),
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

/// Whether a member address (the stored form of [`MemberAddress`]) can be stored and
/// dialled.
pub fn valid_address(address: &str) -> bool {
    MemberAddress::decode(address).is_valid()
}
