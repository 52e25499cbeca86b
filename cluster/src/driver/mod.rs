//! The one owner of raft-rs's `RawNode`: a dedicated OS thread running the Ready loop.
//!
//! Everything else talks to it through two bounded channels, one of `Event`s
//! (proposals, membership) and one of peer messages, so a flood of proposals cannot
//! crowd out heartbeats, and a bounded queue of reads (`reads.rs`: a read wakes the
//! thread only when no round in flight holds it), and gets answers on oneshot channels,
//! matched by request id, never by queue position. The thread may block on fsync (the
//! log's synced writes), which is why it is not a tokio task. Snapshots are written by
//! a second thread of their own (`snapshots.rs`), whose reports the run loop selects on.
//!
//! # Layout
//!
//! - `mod.rs`: the handle ([`RaftHandle`]) and its events, the driver's state,
//!   `spawn` and the run loop, the status.
//! - `config.rs`: the driver's configuration ([`DriverConfig`]) and raft-rs's.
//! - `ready.rs`: one Ready in raft-rs's order, and applying committed entries.
//! - `commits.rs`: telling followers the commit index once per pass, not per advance.
//! - `proposals.rs`: writes on the leader, request ids, failing what is in flight.
//! - `reads.rs`: linearizable reads (ReadIndex).
//! - `membership.rs`: membership changes, learner promotion, leadership transfer.
//! - `snapshots.rs`: the snapshot-writer thread (building and storing off this
//!   thread), installing and restoring snapshots.
//! - `retention.rs`: how much log a snapshot leaves behind it.
//! - `stats.rs`: the counters and histograms a metrics page shows ([`DriverStats`]).
//! - `raft_log.rs`: raft-rs's own logs (slog) forwarded to `tracing`.

mod commits;
mod config;
mod membership;
mod proposals;
mod raft_log;
mod reads;
mod ready;
mod retention;
mod snapshots;
mod stats;

pub use config::DriverConfig;
pub use stats::{DriverStats, PROPOSAL_RESULTS};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, Message, MessageType, Snapshot};
use raft::{RawNode, StateRole};
use tokio::sync::{oneshot, watch};

use crate::identity::{founding_cluster_id, new_cluster_id, ClusterIdentity};
use crate::member::MemberAddress;
use crate::state_machine::StateMachine;
use crate::storage::{LogStore, StoreError};

/// Delivers raft messages to peers. Must not block: queue and return.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, messages: Vec<Message>);

    /// A member joined (or moved): send to it at `address` from now on.
    fn add_peer(&self, _id: u64, _address: &MemberAddress) {}

    /// A member left.
    fn remove_peer(&self, _id: u64) {}
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
    /// The state machine refused the command before it was proposed (see
    /// `StateMachine::prepare`); the message names the field.
    #[error("{0}")]
    Invalid(String),
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
        address: MemberAddress,
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
    pub members: BTreeMap<u64, MemberAddress>,
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
        reply: proposals::ProposalReply,
    },
    /// Reads were queued in the handle's [`reads::ReadQueue`] while the driver was not
    /// looking at it.
    ReadsQueued,
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
    /// Reads go here, not through `events`: most need no wake of the driver.
    reads: Arc<reads::ReadQueue>,
    status: watch::Receiver<RaftStatus>,
    /// This node's snapshots dir: the transport streams stored snapshots from it and
    /// receives the leader's into it.
    snapshot_dir: Arc<PathBuf>,
    /// Counted by this handle's callers and by the driver thread; read by scrapes.
    stats: DriverStats,
}

impl RaftHandle {
    /// Proposes `data` and waits until it is applied here; answers the state machine's
    /// result. Only the leader accepts proposals.
    pub async fn propose(&self, data: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let _pending = stats::Pending::new(&self.stats.proposals_pending);
        let (reply, answer) = oneshot::channel();
        let outcome = match self.send(Event::Propose { data, reply }) {
            Ok(()) => answer.await.unwrap_or(Err(ProposeError::Stopped)),
            Err(refused) => Err(refused),
        };
        self.stats.proposal_ended(&outcome);
        outcome
    }

    /// Waits until this node has applied everything committed when the call started
    /// (raft's ReadIndex, confirmed by a quorum): a read of local state afterwards is
    /// linearizable. Works on followers too (raft asks the leader). The caller bounds
    /// the wait: a new leader answers only once it has committed in its term.
    pub async fn read_index(&self) -> Result<(), ProposeError> {
        let timer = self.stats.read_index_seconds.start_timer();
        let (reply, answer) = oneshot::channel();
        if self.reads.push(reply)? {
            match self.events.try_send(Event::ReadsQueued) {
                // A full queue is a busy driver: it takes the reads in its next pass.
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return Err(ProposeError::Stopped),
            }
        }
        let outcome = answer.await.unwrap_or(Err(ProposeError::Stopped));
        // Only rounds that ended in a read count: a refusal is not a latency.
        if outcome.is_ok() {
            timer.observe_duration();
        } else {
            timer.stop_and_discard();
        }
        outcome
    }

    /// The counters and histograms of this driver, to register on a metrics page.
    pub fn stats(&self) -> &DriverStats {
        &self.stats
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

    /// Where this node's snapshot files are (named by [`crate::snapshot::Descriptor`]).
    pub fn snapshot_dir(&self) -> &Path {
        &self.snapshot_dir
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

/// The log (or a snapshot) cannot be written or replayed: a node that cannot persist
/// must not keep answering (fail-stop).
fn fatal(e: &StoreError) -> ! {
    tracing::error!(error = %e, "raft driver failed; aborting the node");
    eprintln!("fatal: raft driver failed: {e}");
    std::process::abort();
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
    if let (None, Some(stored)) = (config.identity.get(), store.cluster_id()?) {
        config.identity.adopt(&stored)?;
    }
    if !config.initial_members.is_empty() && store.conf_state()?.is_none() {
        let cluster_id = match config.identity.get() {
            Some(id) => id,
            None => founding_cluster_id(&config.initial_members)?,
        };
        store.bootstrap(&config.initial_members, &cluster_id)?;
        config.identity.adopt(&cluster_id)?;
    }
    // Without a membership (a node started to join), raft waits for the leader.
    let members = store.members()?;
    let mut machine = machine;
    let (snapshot_index, last_snapshot_bytes) =
        snapshots::restore_latest_snapshot(&store, &mut machine)?;
    for (&id, address) in &members {
        if id != config.id {
            transport.add_peer(id, address);
        }
    }
    let raft_config = config.raft_config(snapshot_index);
    let logger = raft_log::TracingDrain::logger(config.id);
    let node = RawNode::new(&raft_config, store.clone(), &logger)
        .map_err(|e| StoreError::Raft(e.to_string()))?;
    let (events, inbox) = crossbeam_channel::bounded(config.queue);
    let (messages, message_inbox) = crossbeam_channel::bounded(config.queue);
    let (reports, report_inbox) = crossbeam_channel::unbounded();
    let (snapshot_jobs, job_inbox) = crossbeam_channel::bounded(snapshots::SNAPSHOT_JOBS);
    let (built_sender, built) = crossbeam_channel::bounded(snapshots::SNAPSHOT_JOBS);
    snapshots::spawn_writer(
        config.id,
        store.snapshot_dir().to_owned(),
        job_inbox,
        built_sender,
    )?;
    let (status, status_receiver) = watch::channel(RaftStatus {
        id: config.id,
        ..RaftStatus::default()
    });
    let stats = DriverStats::default();
    let read_queue = Arc::new(reads::ReadQueue::new(config.queue));
    let handle = RaftHandle {
        events,
        messages,
        reports,
        reads: read_queue.clone(),
        status: status_receiver,
        snapshot_dir: Arc::new(store.snapshot_dir().to_owned()),
        stats: stats.clone(),
    };
    let applied_conf_index = store.conf_index()?;
    let mut driver = Driver {
        node,
        store,
        machine,
        transport,
        status,
        pending: HashMap::new(),
        proposals: Vec::new(),
        max_uncommitted: usize::try_from(config.max_uncommitted()).unwrap_or(usize::MAX),
        nonce: run_nonce(),
        applied_conf_index,
        members,
        reads: HashMap::new(),
        read_queue,
        confirmed_reads: Vec::new(),
        next_request: 1,
        tick: config.tick,
        snapshot_entries: config.snapshot_entries.max(1),
        snapshot_bytes: config.snapshot_bytes.max(1),
        snapshot_growth_percent: config.snapshot_growth_percent,
        retention: retention::Retention::new(config.log_retain, config.log_retain_bytes),
        snapshot_index,
        bytes_since_snapshot: 0,
        last_snapshot_bytes,
        snapshot_jobs,
        building: None,
        pending_changes: HashMap::new(),
        misaddressed: 0,
        identity: config.identity.clone(),
        stats,
        may_campaign_alone: true,
        announcements: commits::Announcements::default(),
    };
    driver.publish_status();
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", config.id))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                driver.run(inbox, message_inbox, report_inbox, built)
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

struct Driver<S: StateMachine> {
    node: RawNode<LogStore>,
    store: LogStore,
    machine: S,
    transport: Arc<dyn Transport>,
    status: watch::Sender<RaftStatus>,
    /// Proposals made here and not applied yet, by request id (in the entry context).
    pending: HashMap<u64, proposals::ProposalReply>,
    /// raft's limit on uncommitted bytes, applied to each write of a batch as raft
    /// would to it alone (`proposals.rs`).
    max_uncommitted: usize,
    /// Writes of this pass of the run loop, with their request ids: one proposal for all.
    proposals: Vec<(Entry, u64, proposals::ProposalReply)>,
    /// Membership changes proposed here and not applied yet, by request id.
    pending_changes: HashMap<u64, oneshot::Sender<Result<u64, ProposeError>>>,
    /// Random per run: tells this run's requests from any other's (see `context`).
    nonce: u64,
    /// The last membership change already reflected in the stored configuration; on
    /// replay, changes up to it are not applied again.
    applied_conf_index: u64,
    /// Every member's address, as applied from the log.
    members: BTreeMap<u64, MemberAddress>,
    /// ReadIndex requests by request id, before raft has answered them, with the time
    /// they were asked (raft drops some silently, e.g. at a leader that has not yet
    /// committed in its term: those expire).
    reads: HashMap<u64, (Instant, Vec<reads::ReadReply>)>,
    /// Reads from the handle, not yet asked: one ReadIndex request for all.
    read_queue: Arc<reads::ReadQueue>,
    /// Answered ReadIndex requests waiting for the apply index to reach theirs.
    confirmed_reads: Vec<(u64, reads::ReadReply)>,
    next_request: u64,
    tick: Duration,
    snapshot_entries: u64,
    snapshot_bytes: u64,
    snapshot_growth_percent: u64,
    /// The sizes of the latest applied entries: where a snapshot compacts the log.
    retention: retention::Retention,
    /// Index of the latest snapshot built or installed.
    snapshot_index: u64,
    /// Bytes of entries applied since that snapshot (or since the one being built).
    bytes_since_snapshot: u64,
    /// Size of the latest snapshot file: the next is due only once half as many bytes
    /// were applied since (see `snapshots.rs`).
    last_snapshot_bytes: u64,
    /// Jobs for the snapshot-writer thread (its reports come on the run loop's `built`).
    snapshot_jobs: Sender<snapshots::Job<S::Snapshot>>,
    /// The index of the stored snapshot being written, if any (one at a time).
    building: Option<u64>,
    /// Peer messages dropped because they were addressed to another node id.
    misaddressed: u64,
    identity: ClusterIdentity,
    /// Shared with the handle: leader changes, apply and snapshot times.
    stats: DriverStats,
    /// A lone voter has not campaigned yet in this run.
    may_campaign_alone: bool,
    /// The commit index each follower was sent, and when to broadcast it.
    announcements: commits::Announcements,
}

impl<S: StateMachine> Driver<S> {
    fn run(
        &mut self,
        inbox: Receiver<Event>,
        messages: Receiver<Message>,
        reports: Receiver<(u64, bool)>,
        built: Receiver<Result<snapshots::Built, StoreError>>,
    ) {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            // Reads left queued (a group of one ends its round in the Ready that asked
            // it) go at once; otherwise the next read wakes this thread unless a round
            // in flight holds them.
            let wait = if self.settle_reads() {
                Duration::ZERO
            } else {
                let wake = self
                    .announcements
                    .due()
                    .map_or(next_tick, |d| d.min(next_tick));
                wake.saturating_duration_since(Instant::now())
            };
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
                recv(built) -> outcome => {
                    if let Ok(outcome) = outcome {
                        if let Err(e) = self.snapshot_built(outcome) {
                            fatal(&e);
                        }
                    }
                }
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
            self.flush_proposals();
            self.flush_reads();
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick = Instant::now() + self.tick;
                self.expire_reads();
                self.promote_caught_up_learner();
            }
            if self.may_campaign_alone && self.lone_voter_following() {
                // A group of one needs no election timeout to know who leads: it
                // campaigns once, when it can (raft refuses to before the membership
                // in its log is applied); later, elections go by the ticks.
                self.may_campaign_alone = false;
                let _ = self.node.campaign();
            }
            if self.node.raft.state == StateRole::Leader && self.identity.get().is_none() {
                self.name_legacy_cluster();
            }
            self.announce_commit(Instant::now());
            if let Err(e) = self.on_ready() {
                fatal(&e);
            }
            // A read round that ended in that Ready lets the reads queued behind it go
            // now, not at the next event.
            if self.flush_reads() {
                self.on_ready().unwrap_or_else(|e| fatal(&e));
            }
            self.settle_commit(Instant::now());
        }
        self.fail_pending(ProposeError::Stopped);
    }

    /// The only voter, not leading, with everything committed applied.
    fn lone_voter_following(&self) -> bool {
        let raft = &self.node.raft;
        raft.state != StateRole::Leader
            && raft.raft_log.applied >= raft.raft_log.committed
            && raft.prs().conf().voters().ids().iter().eq([raft.id])
    }

    /// One event from the handle: each kind is served in the file of its concern.
    fn handle(&mut self, event: Event) {
        match event {
            Event::Propose { data, reply } => self.propose(data, reply),
            // The run loop takes them (`flush_reads`) in this pass.
            Event::ReadsQueued => {}
            Event::ChangeMembership { change, reply } => {
                if let Err(e) = self.propose_membership(change, reply) {
                    tracing::debug!(error = %e, "membership change refused");
                }
            }
            Event::TransferLeader { target, reply } => {
                let _ = reply.send(self.transfer_leader(target));
            }
            Event::TakeSnapshot { reply } => self.take_backup(reply),
            Event::Stop => {}
        }
    }

    /// A leader whose log predates cluster ids makes one; its followers adopt it from
    /// its messages (docs/decisions.md, "Cluster identity").
    fn name_legacy_cluster(&mut self) {
        let adopted = new_cluster_id().and_then(|id| self.identity.adopt(&id));
        match adopted {
            Ok(id) => tracing::warn!(cluster_id = %id, "this cluster had no id: made one"),
            Err(e) => tracing::error!(error = %e, "cannot store a new cluster id"),
        }
    }

    /// Steps a peer's message into raft.
    fn step(&mut self, message: Message) {
        if message.to != self.node.raft.id {
            // raft-rs steps whatever it is given: a message meant for another node (a
            // peer that has this address under another id) must not move this one's
            // term or log. Counted; logged at the first and every doubling.
            self.misaddressed += 1;
            if self.misaddressed.is_power_of_two() {
                tracing::warn!(
                    to = message.to,
                    from = message.from,
                    dropped = self.misaddressed,
                    "dropped raft messages addressed to another node (is a peer's address \
                     list stale?)"
                );
            }
            return;
        }
        if matches!(
            message.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && self.node.raft.raft_log.last_index() == 0
        {
            // A node with no log (new, wiped, or joining and not yet caught up) knows
            // nothing a vote must protect: it never votes (nor campaigns: it is in no
            // configuration of its own).
            tracing::debug!(
                from = message.from,
                "vote request ignored: this node has no log yet"
            );
            return;
        }
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
        crate::timeline!(
            "step",
            from = message.from,
            kind = message.get_msg_type() as i32
        );
        // Messages from unknown or stale peers are refused by raft: nothing to do.
        let _ = self.node.step(message);
    }

    /// Tells status watchers what changed (nothing when nothing did).
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
        if status.leader_id != 0 && status.leader_id != self.status.borrow().leader_id {
            self.stats.leader_changes.inc();
        }
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}
