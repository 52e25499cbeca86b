//! The one owner of raft-rs's `RawNode`: a dedicated OS thread running the Ready loop.
//!
//! Everything else talks to it through one bounded channel of [`Event`]s (proposals,
//! peer messages) and gets answers on per-request oneshot channels, matched by request
//! id, never by queue position. The thread may block on fsync (the log's synced
//! writes), which is why it is not a tokio task. Order per Ready, as raft-rs documents:
//! send the leader's messages, install a snapshot, apply committed entries, persist
//! entries and hard state in one synced batch, then send the messages that needed that
//! write, advance, apply what the advance committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use tokio::sync::oneshot;

use crate::state_machine::StateMachine;
use crate::storage::{LogStore, ReadyWrite, StoreError};

/// How long a ReadIndex request may go unanswered by raft before it is failed.
const READ_EXPIRY: Duration = Duration::from_millis(500);

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
    /// Events (proposals and peer messages) queued before senders are refused.
    pub queue: usize,
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
    Step(Message),
    Stop,
}

/// The handle others use; cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    events: SyncSender<Event>,
    status: Arc<Mutex<RaftStatus>>,
}

impl RaftHandle {
    /// Proposes `data` and waits until it is applied here; answers the state machine's
    /// result. Only the leader accepts proposals.
    pub async fn propose(&self, data: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.events
            .try_send(Event::Propose { data, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => ProposeError::Busy,
                TrySendError::Disconnected(_) => ProposeError::Stopped,
            })?;
        answer.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// Waits until this node has applied everything committed when the call started
    /// (raft's ReadIndex, confirmed by a quorum): a read of local state afterwards is
    /// linearizable. Works on followers too (raft asks the leader). The caller bounds
    /// the wait: a new leader answers only once it has committed in its term.
    pub async fn read_index(&self) -> Result<(), ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.events
            .try_send(Event::ReadIndex { reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => ProposeError::Busy,
                TrySendError::Disconnected(_) => ProposeError::Stopped,
            })?;
        answer.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// Hands a message from a peer to the driver; dropped when the queue is full (raft
    /// retransmits).
    pub fn step(&self, message: Message) {
        let _ = self.events.try_send(Event::Step(message));
    }

    pub fn status(&self) -> RaftStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
    store.bootstrap(&config.initial_members)?;
    let mut members = store.members()?;
    if members.is_empty() {
        // A log from before member addresses were stored: take them from the config.
        members = config.initial_members.clone();
        store.write(ReadyWrite {
            members: Some(&members),
            sync: true,
            ..ReadyWrite::default()
        })?;
    }
    for (&id, address) in &members {
        if id != config.id {
            transport.add_peer(id, address);
        }
    }
    let raft_config = raft::Config {
        id: config.id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        // The state machine lives in memory and starts empty: re-apply the whole log.
        applied: 0,
        ..raft::Config::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let node = RawNode::new(&raft_config, store.clone(), &logger)
        .map_err(|e| StoreError::Raft(e.to_string()))?;
    let (events, inbox) = mpsc::sync_channel(config.queue);
    let status = Arc::new(Mutex::new(RaftStatus {
        id: config.id,
        ..RaftStatus::default()
    }));
    let handle = RaftHandle {
        events,
        status: status.clone(),
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
    };
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", config.id))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                if alone {
                    // A group of one needs no election timeout to know who leads.
                    let _ = driver.node.campaign();
                }
                driver.run(inbox)
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
    status: Arc<Mutex<RaftStatus>>,
    /// Proposals made here and not applied yet, by request id (in the entry context).
    pending: HashMap<u64, oneshot::Sender<Result<Vec<u8>, ProposeError>>>,
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
}

impl<S: StateMachine> Driver<S> {
    fn run(&mut self, inbox: Receiver<Event>) {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match inbox.recv_timeout(wait) {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(event) => {
                    self.handle(event);
                    // Take everything already queued before the next Ready: one fsync
                    // then covers many proposals.
                    while let Ok(event) = inbox.try_recv() {
                        if matches!(event, Event::Stop) {
                            return self.fail_pending(ProposeError::Stopped);
                        }
                        self.handle(event);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick = Instant::now() + self.tick;
                self.expire_reads();
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
            Event::Step(message) => {
                // Messages from unknown or stale peers are refused by raft: nothing to do.
                let _ = self.node.step(message);
            }
            Event::Stop => {}
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
        if !ready.snapshot().is_empty() {
            // This log never offers a snapshot, so no leader of this cluster sends one,
            // and installing one here would drop entries the engine never applied.
            return Err(StoreError::Raft(
                "received a raft snapshot, which this version cannot install".into(),
            ));
        }
        self.apply(ready.take_committed_entries())?;
        self.store.write(ReadyWrite {
            entries: ready.entries(),
            hard_state: ready.hs(),
            sync: ready.must_sync(),
            ..ReadyWrite::default()
        })?;
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
        self.publish_status();
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
                    self.apply_member_change(entry.index, &change)?;
                    // Callers read the new membership from the status.
                    self.publish_status();
                    if let Some(reply) = self
                        .request_id(&entry.context)
                        .and_then(|id| self.pending.remove(&id))
                    {
                        let _ = reply.send(Ok(Vec::new()));
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
    /// addresses and the transport, persisted together.
    fn apply_member_change(&mut self, index: u64, change: &ConfChange) -> Result<(), StoreError> {
        if index <= self.applied_conf_index {
            // Replaying the log after a restart: the stored configuration has it already.
            return Ok(());
        }
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
        let conf_state = self
            .node
            .apply_conf_change(change)
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        self.applied_conf_index = index;
        self.store.write(ReadyWrite {
            conf_state: Some(&conf_state),
            conf_index: Some(index),
            members: Some(&self.members),
            sync: true,
            ..ReadyWrite::default()
        })
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
        };
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }
}
