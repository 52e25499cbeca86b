//! Raft drivers in one process over a channel transport, each with a real fsync'd log
//! in a temp dir: proposals are replicated and applied in the same order everywhere,
//! survive a full restart, and only the leader accepts them; snapshots compact the log,
//! bring a wiped node back and restore restarted ones; members join and leave.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clockwise_cluster::driver::{
    self, DriverConfig, MembershipChange, ProposeError, RaftHandle, RaftStatus, Role, Transport,
};
use clockwise_cluster::snapshot::{self, BytesSnapshot, Descriptor};
use clockwise_cluster::{LogStore, MemberAddress, StateMachine};
use raft::eraftpb::{Message, MessageType};

/// Applied entries, shared with the test. Its snapshot is every entry, so a node that
/// installed one holds exactly what the others applied. With its node's log (`.1`), it
/// also notes every entry applied before the stored commit index covered it (`.2`:
/// index, stored commit).
#[derive(Clone, Default)]
#[allow(clippy::type_complexity)]
struct Recorder(
    Arc<Mutex<Vec<Vec<u8>>>>,
    Option<LogStore>,
    Arc<Mutex<Vec<(u64, u64)>>>,
);

impl Recorder {
    fn entries(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed recorder snapshot")]
struct Malformed;

impl StateMachine for Recorder {
    type Error = Malformed;
    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8> {
        if let Some(store) = &self.1 {
            let commit = store.hard_state().unwrap().commit;
            if commit < index {
                self.2.lock().unwrap().push((index, commit));
            }
        }
        let mut entries = self.0.lock().unwrap();
        entries.push(data.to_vec());
        format!("applied {} at {index}", entries.len()).into_bytes()
    }
    type Snapshot = BytesSnapshot;
    fn freeze(&self) -> BytesSnapshot {
        let mut out = Vec::new();
        for entry in self.0.lock().unwrap().iter() {
            out.extend_from_slice(&(entry.len() as u32).to_be_bytes());
            out.extend_from_slice(entry);
        }
        BytesSnapshot(out)
    }
    fn restore_from(&mut self, reader: &mut dyn std::io::Read) -> Result<(), Malformed> {
        // Read to the end first: the checksum is verified there.
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|_| Malformed)?;
        let mut snapshot = &bytes[..];
        let mut entries = Vec::new();
        while !snapshot.is_empty() {
            let len = u32::from_be_bytes(snapshot.get(..4).ok_or(Malformed)?.try_into().unwrap());
            let entry = snapshot.get(4..4 + len as usize).ok_or(Malformed)?;
            entries.push(entry.to_vec());
            snapshot = &snapshot[4 + len as usize..];
        }
        *self.0.lock().unwrap() = entries;
        Ok(())
    }
}

/// Delivers every message to its addressee's driver; a test may hold the append
/// acknowledgements sent to one node (`.1`), or stop one node's driver thread in its next
/// send (`.2`). Counts the appends that carry entries (`.3`).
#[derive(Default)]
#[allow(clippy::type_complexity)]
struct Router(
    RwLock<HashMap<u64, RaftHandle>>,
    Mutex<Option<(u64, Vec<Message>)>>,
    Mutex<Option<Gate>>,
    AtomicUsize,
);

/// Stops node `from`'s driver in its next non-empty send: says so on `blocked`, then
/// waits for `release`.
struct Gate {
    from: u64,
    blocked: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl Transport for Router {
    fn send(&self, messages: Vec<Message>) {
        let from = messages.first().map(|m| m.from);
        let gate = {
            let mut gate = self.2.lock().unwrap();
            gate.take_if(|g| Some(g.from) == from)
        };
        if let Some(gate) = gate {
            let _ = gate.blocked.send(());
            let _ = gate.release.recv();
        }
        let handles = self.0.read().unwrap();
        for message in messages {
            if message.get_msg_type() == MessageType::MsgAppend && !message.entries.is_empty() {
                self.3.fetch_add(1, Ordering::SeqCst);
            }
            if let Some((to, held)) = self.1.lock().unwrap().as_mut() {
                if *to == message.to && message.get_msg_type() == MessageType::MsgAppendResponse {
                    held.push(message);
                    continue;
                }
            }
            if message.get_msg_type() == MessageType::MsgSnapshot {
                // The snapshot's file goes from the sender's snapshots dir to the
                // receiver's first, as the gRPC transport streams it.
                let copied = match (
                    handles.get(&message.from),
                    handles.get(&message.to),
                    Descriptor::decode(&message.get_snapshot().data),
                ) {
                    (Some(from), Some(to), Ok(descriptor)) => {
                        snapshot::copy_file(from.snapshot_dir(), to.snapshot_dir(), &descriptor)
                            .is_ok()
                    }
                    _ => false,
                };
                if let Some(from) = handles.get(&message.from) {
                    from.report_snapshot(message.to, copied);
                }
                if !copied {
                    continue;
                }
            }
            if let Some(handle) = handles.get(&message.to) {
                handle.step(message);
            }
        }
    }
}

struct Node {
    handle: RaftHandle,
    thread: JoinHandle<()>,
    recorder: Recorder,
}

struct Cluster {
    dir: PathBuf,
    router: Arc<Router>,
    /// By raft id.
    nodes: BTreeMap<u64, Node>,
    /// Entries between snapshots (`u64::MAX`: never).
    snapshot_entries: u64,
    /// Each node's `max_uncommitted_bytes`.
    max_uncommitted_bytes: u64,
    /// Each node's tick.
    tick: Duration,
    /// Founders are nodes 1..=`voters`.
    voters: u64,
}

impl Cluster {
    fn start(dir: PathBuf) -> Cluster {
        Self::start_with_snapshots(dir, u64::MAX)
    }

    /// Nodes 1–3, snapshotting every `snapshot_entries` entries.
    fn start_with_snapshots(dir: PathBuf, snapshot_entries: u64) -> Cluster {
        let mut cluster = Cluster::empty(dir, Duration::from_millis(20), 3);
        cluster.snapshot_entries = snapshot_entries;
        for id in 1..=3 {
            cluster.start_node(id, true);
        }
        cluster
    }

    /// No node started yet; founders will be nodes 1..=`voters`.
    fn empty(dir: PathBuf, tick: Duration, voters: u64) -> Cluster {
        Cluster {
            dir,
            router: Arc::new(Router::default()),
            nodes: BTreeMap::new(),
            snapshot_entries: u64::MAX,
            max_uncommitted_bytes: DriverConfig::default().max_uncommitted_bytes,
            tick,
            voters,
        }
    }

    /// Starts node `id` on its directory: a founder of the group, or a node that waits
    /// to be added.
    fn start_node(&mut self, id: u64, founder: bool) {
        let store = LogStore::open(&self.node_dir(id)).unwrap();
        let recorder = Recorder(Default::default(), Some(store.clone()), Default::default());
        let config = DriverConfig {
            id,
            initial_members: if founder {
                (1..=self.voters)
                    .map(|id| (id, MemberAddress::new("", "")))
                    .collect()
            } else {
                BTreeMap::new()
            },
            tick: self.tick,
            snapshot_entries: self.snapshot_entries,
            // The recorder's state is every entry: growing with the log, it would
            // space snapshots out; these tests want one every `snapshot_entries`.
            snapshot_growth_percent: 0,
            log_retain: 5,
            max_uncommitted_bytes: self.max_uncommitted_bytes,
            ..DriverConfig::default()
        };
        let transport: Arc<dyn Transport> = self.router.clone();
        let (handle, thread) = driver::spawn(config, store, recorder.clone(), transport).unwrap();
        self.router.0.write().unwrap().insert(id, handle.clone());
        self.nodes.insert(
            id,
            Node {
                handle,
                thread,
                recorder,
            },
        );
    }

    fn stop_node(&mut self, id: u64) {
        self.router.0.write().unwrap().remove(&id);
        let node = self.nodes.remove(&id).unwrap();
        node.handle.stop();
        node.thread.join().unwrap();
    }

    fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    fn handle(&self, id: u64) -> RaftHandle {
        self.nodes[&id].handle.clone()
    }

    /// Waits (bounded) until one node is leader and returns its id.
    fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((&id, _)) = self
                .nodes
                .iter()
                .find(|(_, n)| n.handle.status().role == Role::Leader)
            {
                return id;
            }
            assert!(Instant::now() < deadline, "no leader was elected");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until every node has applied `n` entries.
    fn wait_applied(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self
            .nodes
            .values()
            .any(|node| node.recorder.entries().len() < n)
        {
            assert!(
                Instant::now() < deadline,
                "entries were not applied everywhere"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until node `id`'s status satisfies `done`.
    fn wait_status(&self, id: u64, what: &str, done: impl Fn(&RaftStatus) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&self.nodes[&id].handle.status()) {
            assert!(
                Instant::now() < deadline,
                "node {id}: {what}: {:?}",
                self.nodes[&id].handle.status()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops node `id`'s driver thread in its next non-empty send (a leader heartbeats
    /// every two ticks) and returns once it is stopped there; it goes on when the
    /// returned sender is sent to (or dropped).
    fn hold_in_next_send(&self, id: u64) -> std::sync::mpsc::Sender<()> {
        let (blocked, blocked_here) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        *self.router.2.lock().unwrap() = Some(Gate {
            from: id,
            blocked,
            release: released,
        });
        blocked_here
            .recv_timeout(Duration::from_secs(20))
            .expect("the node sent something");
        release
    }

    fn stop(mut self) -> PathBuf {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop_node(id);
        }
        self.dir
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clockwise-repl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_share_read_index_requests() {
    let cluster = Cluster::start(temp_dir("reads"));
    let leader = cluster.handle(cluster.leader());
    // A first write: a fresh leader answers reads only once it committed in its term.
    leader.propose(b"first".to_vec()).await.unwrap();
    let before = leader.stats().read_index_requests.get();
    let reads: Vec<_> = (0..64)
        .map(|_| {
            let leader = leader.clone();
            tokio::spawn(async move { leader.read_index().await })
        })
        .collect();
    for read in reads {
        read.await.unwrap().expect("a leader confirms its reads");
    }
    let requests = leader.stats().read_index_requests.get() - before;
    assert!(
        (1..64).contains(&requests),
        "64 concurrent reads took {requests} ReadIndex requests"
    );
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// The writes a leader's driver finds queued in one pass go to each follower in one
/// append (raft sends an append per proposal: proposed one by one, they would be one
/// append each). The leader's driver is held in a send while they queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_in_one_pass_go_to_followers_in_one_append() {
    const WRITES: usize = 32;
    let cluster = Cluster::start(temp_dir("one-append"));
    let leader_id = cluster.leader();
    let leader = cluster.handle(leader_id);
    leader.propose(b"warm-up".to_vec()).await.unwrap();
    let release = cluster.hold_in_next_send(leader_id);
    // Polled once, each write is in the driver's queue (it is sent before the first
    // await); the driver takes them all in its next pass.
    let mut writes: Vec<_> = (0..WRITES)
        .map(|n| Box::pin(leader.propose(format!("w{n}").into_bytes())))
        .collect();
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    for write in &mut writes {
        assert!(std::future::Future::poll(write.as_mut(), &mut context).is_pending());
    }
    let appends_before = cluster.router.3.load(Ordering::SeqCst);
    release.send(()).unwrap();
    for write in writes {
        tokio::time::timeout(Duration::from_secs(20), write)
            .await
            .expect("the writes are applied")
            .expect("the leader applies its proposals");
    }
    let appends = cluster.router.3.load(Ordering::SeqCst) - appends_before;
    // One per follower, and at most one more each (a retry, a later commit).
    assert!(
        (2..=4).contains(&appends),
        "{WRITES} writes queued in one pass went to the two followers in {appends} appends"
    );
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// raft's broadcast of each new commit index is off; the driver tells followers itself
/// (`driver/commits.rs`). With ticks an hour apart no heartbeat carries it either: a
/// learner of a lone voter still learns the commit of the last write, whose append went
/// out before the leader committed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_learn_the_last_commit_without_a_heartbeat() {
    let mut cluster = Cluster::empty(temp_dir("commit-told"), Duration::from_secs(3600), 1);
    cluster.start_node(1, true);
    let leader = cluster.handle(1);
    // A group of one campaigns in its first pass, which an event starts (no tick comes).
    tokio::time::timeout(Duration::from_secs(10), async {
        while leader.propose(b"first".to_vec()).await.is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a group of one takes a write");
    cluster.start_node(2, false);
    let add = MembershipChange::AddLearner {
        id: 2,
        address: MemberAddress::new("node-2:1", "node-2:2"),
    };
    leader.change_membership(add).await.unwrap();
    for round in 0..3 {
        leader
            .propose(format!("w{round}").into_bytes())
            .await
            .unwrap();
        let committed = leader.status().commit_index;
        cluster.wait_status(2, "applies up to the leader's commit index", |s| {
            s.applied_index >= committed
        });
    }
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads reach the driver without waking it while a round holds them; none may be
/// left waiting for a tick. A group of one confirms a round in the Ready that asks it,
/// and its ticks here are an hour apart: a read stranded until a tick hangs the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_wait_for_a_tick() {
    let dir = temp_dir("reads-no-tick");
    let store = LogStore::open(&dir).unwrap();
    let recorder = Recorder(Default::default(), Some(store.clone()), Default::default());
    let config = DriverConfig {
        id: 1,
        tick: Duration::from_secs(3600),
        snapshot_entries: u64::MAX,
        ..DriverConfig::default()
    };
    let transport: Arc<dyn Transport> = Arc::new(Router::default());
    let (leader, thread) = driver::spawn(config, store, recorder, transport).unwrap();
    // Also waits for the group of one to lead: it campaigns once its membership is
    // applied, not on a tick.
    tokio::time::timeout(Duration::from_secs(10), async {
        while leader.propose(b"first".to_vec()).await.is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a group of one takes a write");
    for round in 0..50 {
        let reads: Vec<_> = (0..round % 5 + 1)
            .map(|_| {
                let leader = leader.clone();
                tokio::spawn(async move { leader.read_index().await })
            })
            .collect();
        for read in reads {
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .unwrap_or_else(|_| panic!("round {round}: a read waited for a tick"))
                .unwrap()
                .expect("a group of one confirms its reads");
        }
    }
    leader.stop();
    thread.join().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_are_applied_everywhere_in_one_order_and_survive_a_restart() {
    let cluster = Cluster::start(temp_dir("order"));
    let leader = cluster.handle(cluster.leader());
    let proposals: Vec<_> = (0..50)
        .map(|i| {
            let leader = leader.clone();
            tokio::spawn(async move { leader.propose(format!("cmd-{i}").into_bytes()).await })
        })
        .collect();
    for proposal in proposals {
        let result = proposal
            .await
            .unwrap()
            .expect("the leader applies its proposals");
        assert!(String::from_utf8(result).unwrap().starts_with("applied "));
    }
    cluster.wait_applied(50);
    let applied: Vec<_> = cluster
        .nodes
        .values()
        .map(|n| n.recorder.entries())
        .collect();
    assert_eq!(applied[0].len(), 50);
    assert!(
        applied.iter().all(|a| a == &applied[0]),
        "replicas applied different orders"
    );

    // Every node stops; restarted from their logs alone, they re-apply the same entries.
    let before = applied[0].clone();
    let dir = cluster.stop();
    let cluster = Cluster::start(dir);
    cluster.leader();
    cluster.wait_applied(50);
    for node in cluster.nodes.values() {
        assert_eq!(node.recorder.entries(), before);
    }
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_proposals_and_names_the_leader() {
    let cluster = Cluster::start(temp_dir("follower"));
    let leader_id = cluster.leader();
    // Wait until a follower knows the leader (heartbeats), then propose to it.
    let follower = cluster.handle(leader_id % 3 + 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while follower.status().leader_id != leader_id {
        assert!(
            Instant::now() < deadline,
            "the follower never learned the leader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = follower.propose(b"x".to_vec()).await.unwrap_err();
    assert_eq!(
        refused,
        ProposeError::NotLeader {
            leader: Some(leader_id)
        }
    );
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Proposes `n` entries named `prefix-i` one after another through the leader.
async fn propose_all(leader: &RaftHandle, prefix: &str, n: usize) {
    for i in 0..n {
        leader
            .propose(format!("{prefix}-{i}").into_bytes())
            .await
            .expect("the leader applies its proposals");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_compact_the_log_bring_back_a_wiped_node_and_survive_restarts() {
    let mut cluster = Cluster::start_with_snapshots(temp_dir("snapshots"), 20);
    let leader_id = cluster.leader();
    propose_all(&cluster.handle(leader_id), "a", 100).await;
    cluster.wait_applied(100);
    // Built off the driver thread: done a little after the entries that made it due.
    cluster.wait_status(
        leader_id,
        "a snapshot, and the log compacted behind it",
        |s| s.snapshot_index >= 80 && s.first_index > 50,
    );

    // A follower that was down while the leader compacted past its log catches up
    // from a snapshot over the log it has.
    let lagging = (leader_id + 1) % 3 + 1;
    let before = cluster.nodes[&lagging].recorder.entries().len();
    cluster.stop_node(lagging);
    propose_all(&cluster.handle(leader_id), "l", 60).await;
    cluster.wait_status(leader_id, "compacted past the stopped node's log", |s| {
        s.first_index > before as u64 + 10
    });
    cluster.start_node(lagging, true);
    cluster.wait_applied(160);
    cluster.wait_status(lagging, "installed the leader's snapshot", |s| {
        s.snapshot_index > 110
    });
    assert_eq!(
        cluster.nodes[&lagging].recorder.entries(),
        cluster.nodes[&leader_id].recorder.entries()
    );

    // A follower loses everything. Restarted as it was, it would hold less than the
    // leader saw it acknowledge: it must be refused, not crash.
    let follower = leader_id % 3 + 1;
    cluster.stop_node(follower);
    std::fs::remove_dir_all(cluster.node_dir(follower)).unwrap();
    cluster.start_node(follower, true);
    propose_all(&cluster.handle(leader_id), "b", 5).await;
    cluster.wait_status(leader_id, "commits without the wiped node", |s| {
        s.applied_index >= 169
    });
    assert!(cluster.nodes[&follower].recorder.entries().len() < 165);

    // As raft requires, it leaves and joins again as a new learner; the leader no
    // longer has the entries it needs, so it catches up from a snapshot.
    cluster.stop_node(follower);
    std::fs::remove_dir_all(cluster.node_dir(follower)).unwrap();
    let leader = cluster.handle(leader_id);
    leader
        .change_membership(MembershipChange::Remove { id: follower })
        .await
        .unwrap();
    cluster.start_node(follower, false);
    leader
        .change_membership(MembershipChange::AddLearner {
            id: follower,
            address: MemberAddress::new("node-2:1", "node-2:2"),
        })
        .await
        .unwrap();
    cluster.wait_status(leader_id, "the wiped node is a voter again", |s| {
        s.voters == [1, 2, 3]
    });
    propose_all(&leader, "c", 5).await;
    cluster.wait_applied(170);
    cluster.wait_status(follower, "installed a snapshot", |s| s.snapshot_index > 0);
    let expected = cluster.nodes[&leader_id].recorder.entries();
    assert_eq!(cluster.nodes[&follower].recorder.entries(), expected);

    // Restarted nodes restore their latest snapshot and replay only the log after it.
    let dir = cluster.stop();
    let cluster = Cluster::start_with_snapshots(dir, 20);
    for node in cluster.nodes.values() {
        assert!(
            node.handle.status().snapshot_index > 0,
            "restored from a snapshot"
        );
    }
    cluster.wait_applied(170);
    for node in cluster.nodes.values() {
        assert_eq!(node.recorder.entries(), expected);
    }
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_joins_as_a_learner_is_promoted_and_members_leave() {
    let mut cluster = Cluster::start_with_snapshots(temp_dir("membership"), 20);
    let leader_id = cluster.leader();
    let leader = cluster.handle(leader_id);
    propose_all(&leader, "a", 50).await;

    // Node 4 starts empty and is added; it catches up (from a snapshot: the log is
    // compacted) and is promoted to voter.
    cluster.start_node(4, false);
    let add = MembershipChange::AddLearner {
        id: 4,
        address: MemberAddress::new("node-4:1", "node-4:2"),
    };
    leader.change_membership(add.clone()).await.unwrap();
    cluster.wait_status(leader_id, "node 4 promoted", |s| s.voters == [1, 2, 3, 4]);
    assert_eq!(
        leader.status().members.get(&4),
        Some(&MemberAddress::new("node-4:1", "node-4:2"))
    );
    propose_all(&leader, "b", 10).await;
    cluster.wait_applied(60);
    let expected = cluster.nodes[&leader_id].recorder.entries();
    assert_eq!(cluster.nodes[&4].recorder.entries(), expected);

    // Refusals: a member twice, a non-member, the leader itself.
    let refused = |r: Result<u64, ProposeError>| matches!(r, Err(ProposeError::Refused(_)));
    assert!(refused(leader.change_membership(add).await));
    assert!(refused(
        leader
            .change_membership(MembershipChange::Remove { id: 9 })
            .await
    ));
    assert!(refused(
        leader
            .change_membership(MembershipChange::Remove { id: leader_id })
            .await
    ));

    // A follower leaves; the rest keep committing.
    let leaving = leader_id % 3 + 1;
    leader
        .change_membership(MembershipChange::Remove { id: leaving })
        .await
        .unwrap();
    let remaining: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|&id| id != leaving)
        .collect();
    cluster.wait_status(leader_id, "member removed", |s| s.voters == remaining);
    cluster.stop_node(leaving);
    propose_all(&leader, "c", 10).await;
    cluster.wait_applied(70);

    // A learner that never answers is never promoted (it would hold the quorum hostage).
    let leader = cluster.handle(leader_id);
    leader
        .change_membership(MembershipChange::AddLearner {
            id: 5,
            address: MemberAddress::new("node-5:1", "node-5:2"),
        })
        .await
        .unwrap();
    propose_all(&leader, "e", 20).await;
    let status = leader.status();
    assert!(
        status.learners.contains(&5) && !status.voters.contains(&5),
        "{status:?}"
    );
    leader
        .change_membership(MembershipChange::Remove { id: 5 })
        .await
        .unwrap();
    cluster.wait_applied(90);

    // Leadership moves to the newcomer.
    leader.transfer_leader(4).await.unwrap();
    cluster.wait_status(4, "node 4 leads", |s| s.role == Role::Leader);
    propose_all(&cluster.handle(4), "d", 5).await;
    cluster.wait_applied(95);
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A leader cut off from its followers holds at most `max_uncommitted_bytes` of
/// proposals: beyond that it refuses them at once as `Busy`, so its memory stays bounded
/// however fast callers propose; what it accepted is applied once quorum returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_its_followers_refuses_proposals_beyond_its_uncommitted_limit() {
    let dir = temp_dir("uncommitted");
    let mut cluster = Cluster::start(dir);
    // Restart every node with the smallest limit (one raft message, 1 MiB).
    for id in 1..=3 {
        cluster.stop_node(id);
    }
    cluster.max_uncommitted_bytes = 1 << 20;
    for id in 1..=3 {
        cluster.start_node(id, true);
    }
    let leader_id = cluster.leader();
    let leader = cluster.handle(leader_id);
    for id in (1..=3).filter(|&id| id != leader_id) {
        cluster.stop_node(id);
    }
    // Eight proposals of 300 KiB at once: three fit under 1 MiB, the rest are refused.
    let proposals: Vec<_> = (0..8u8)
        .map(|i| {
            let leader = leader.clone();
            tokio::spawn(async move { leader.propose(vec![i; 300 << 10]).await })
        })
        .collect();
    let mut busy = 0;
    for proposal in proposals {
        match proposal.await.unwrap() {
            Err(ProposeError::Busy) => busy += 1,
            // Accepted, then dropped when the leader steps down without a quorum.
            Err(ProposeError::Unknown | ProposeError::NotLeader { .. }) => {}
            other => panic!("unexpected answer without a quorum: {other:?}"),
        }
    }
    assert!(
        busy >= 5,
        "at most 3 proposals of 300 KiB fit in 1 MiB: {busy} refused"
    );
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue #17 / style rule 8: the hard state with the commit index that covers an entry
/// is stored before the entry is applied, on the leader and on followers (raft hands a
/// Ready's committed entries together with the hard state that commits them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_index_is_stored_before_the_entries_it_commits_are_applied() {
    let cluster = Cluster::start(temp_dir("commit-first"));
    let leader = cluster.handle(cluster.leader());
    propose_all(&leader, "c", 20).await;
    cluster.wait_applied(20);
    for (id, node) in &cluster.nodes {
        let early = node.recorder.2.lock().unwrap().clone();
        assert!(
            early.is_empty(),
            "node {id} applied entries beyond its stored commit index (index, commit): {early:?}"
        );
    }
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue #17: when one Ready both commits a write and steps the leader down, the write
/// is applied and answered with its result, not "outcome unknown" (a client without a
/// session would apply it twice). The followers' acknowledgements of the write are held
/// back; with the leader's driver stopped in a send, they are stepped into it followed
/// by a higher-term heartbeat, so its next Ready has both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_committed_in_the_ready_that_steps_down_is_answered_with_its_result() {
    let cluster = Cluster::start(temp_dir("step-down"));
    let leader_id = cluster.leader();
    let leader = cluster.handle(leader_id);
    // Its answer names its index ("applied N at I"): acknowledgements beyond it are the
    // write's (the status may not show the warm-up's commit yet).
    let warm_up = leader
        .propose(b"warm-up".to_vec())
        .await
        .expect("the leader applies its proposals");
    let committed: u64 = String::from_utf8(warm_up)
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    *cluster.router.1.lock().unwrap() = Some((leader_id, Vec::new()));
    let write = tokio::spawn({
        let leader = leader.clone();
        async move { leader.propose(b"the write".to_vec()).await }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster
        .router
        .1
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .1
        .iter()
        .any(|m| {
            m.get_msg_type() == MessageType::MsgAppendResponse && !m.reject && m.index > committed
        })
    {
        assert!(
            Instant::now() < deadline,
            "no follower acknowledged the write"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let release = cluster.hold_in_next_send(leader_id);
    let term = leader.status().term;
    let held = cluster.router.1.lock().unwrap().take().unwrap().1;
    for message in held {
        assert!(leader.step(message));
    }
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = leader_id % 3 + 1;
    heartbeat.to = leader_id;
    heartbeat.term = term + 1;
    assert!(leader.step(heartbeat));
    release.send(()).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), write)
        .await
        .expect("the write is answered")
        .unwrap();
    let answer = answer.map(String::from_utf8);
    assert!(
        matches!(&answer, Ok(Ok(text)) if text.starts_with("applied ")),
        "the applied write was answered {answer:?}"
    );
    let dir = cluster.stop();
    let _ = std::fs::remove_dir_all(dir);
}
