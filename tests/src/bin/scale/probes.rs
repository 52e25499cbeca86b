//! What runs beside the steps: the loaders (`BatchOperations` of [`BATCH`] stores), the
//! background writer (one `StoreKey` every [`WRITE_EVERY`]), and the poller (every
//! second: every node's Status, leader and term, every node's RSS, and whether a node
//! died). Each records into [`Probes`]; the steps take the records at each milestone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clockwise_client::{Client, HashRing, KeyOperation};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tonic::transport::{Channel, Endpoint};

use crate::nodes::{Nodes, STATUS_TIMEOUT};

/// Stores per `BatchOperations` call.
pub const BATCH: u64 = 5_000;
/// Concurrent loader tasks: enough to keep a batch in every stage (send, replicate,
/// fsync, apply) on a 2-core machine.
pub const LOADERS: usize = 3;
/// How long a batch is retried (each attempt is the SDK's, with its own retries) before
/// the run fails: a stall of the cluster (a snapshot built on the raft thread, say) is
/// measured, not fatal. Storing a key twice only refreshes it.
const BATCH_GIVE_UP: Duration = Duration::from_secs(120);
/// Between a batch's failed attempt and the next (every breaker may be open).
const BATCH_PAUSE: Duration = Duration::from_secs(1);
/// The background writer's period.
pub const WRITE_EVERY: Duration = Duration::from_millis(10);
/// A background write this slow (issue 15's bound) is logged to stderr with its time.
const SLOW_WRITE: Duration = Duration::from_millis(100);
/// The poller's period.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// What the probes saw since the records were last taken.
#[derive(Default)]
pub struct Records {
    /// Latency of each answered Status call (every node, every second).
    pub status: Vec<Duration>,
    /// Status calls that failed on a node expected up.
    pub status_errors: u64,
    /// Latency of each acknowledged background write (SDK retries included).
    pub writes: Vec<Duration>,
    /// Background writes that failed.
    pub write_errors: u64,
    /// Batch attempts that failed (and were tried again).
    pub batch_errors: u64,
    /// Highest VmRSS of any node, in bytes.
    pub rss_max: u64,
}

/// Shared by the probe tasks and the steps.
pub struct Probes {
    /// Locked only to push a sample or take them all.
    records: Mutex<Records>,
    /// Times a Status answer showed a higher term than any before it (an election; the
    /// first answer only sets the baseline).
    pub leader_changes: AtomicU64,
    /// The highest (term, leader id) seen.
    last_leader: Mutex<Option<(u64, u64)>>,
    /// Set (once) when the run is broken: a node died.
    pub broken: watch::Sender<Option<String>>,
}

impl Probes {
    pub fn new() -> Probes {
        Probes {
            records: Mutex::new(Records::default()),
            leader_changes: AtomicU64::new(0),
            last_leader: Mutex::new(None),
            broken: watch::Sender::new(None),
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything recorded since the last call.
    pub fn take(&self) -> Records {
        std::mem::take(&mut *self.records())
    }

    /// Raises the RSS maximum with a sample taken by a step.
    pub fn sample_rss(&self, nodes: &Nodes) {
        let max = nodes.rss().into_iter().flatten().max().unwrap_or(0);
        let mut records = self.records();
        records.rss_max = records.rss_max.max(max);
    }

    fn observe_leader(&self, term: u64, leader: u64) {
        if leader == 0 {
            return;
        }
        let mut last = self.last_leader.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some((t, _)) if term <= t => {}
            Some(_) => {
                self.leader_changes.fetch_add(1, Ordering::Relaxed);
                *last = Some((term, leader));
            }
            None => *last = Some((term, leader)),
        }
    }

    /// Resolves with the reason once the run is broken.
    pub async fn broken(&self) -> String {
        let mut rx = self.broken.subscribe();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }
}

/// The probes' thread: stopped and joined when this is dropped.
pub struct Tasks {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the background writer and the poller on a thread and a runtime of their own,
/// with connections of their own: the loaders encode and decode batches of 5,000 keys
/// on the main runtime, and a probe queued behind that work would time this generator,
/// not the nodes.
pub fn start(nodes: &Arc<Nodes>, ring: &str, probes: &Arc<Probes>) -> Tasks {
    let (stop, mut stopped) = watch::channel(false);
    let (nodes, ring, probes) = (nodes.clone(), ring.to_owned(), probes.clone());
    let thread = std::thread::Builder::new()
        .name("probes".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the probes' runtime");
            runtime.block_on(async move {
                let client = Client::builder().endpoints(nodes.addresses()).build().await;
                let client = match client {
                    Ok(client) => client,
                    Err(e) => {
                        probes
                            .broken
                            .send_replace(Some(format!("the probes' SDK client: {e}")));
                        return;
                    }
                };
                let channels: Vec<Channel> = nodes
                    .addresses()
                    .iter()
                    .map(|a| {
                        Endpoint::from_shared(format!("http://{a}"))
                            .expect("a node address")
                            .timeout(STATUS_TIMEOUT)
                            .connect_lazy()
                    })
                    .collect();
                tokio::select! {
                    () = writer(client.hash_ring(&ring), probes.clone()) => {}
                    () = poller(nodes, channels, probes) => {}
                    _ = stopped.changed() => {}
                }
            });
        })
        .expect("the probes' thread");
    Tasks {
        stop,
        thread: Some(thread),
    }
}

/// One `StoreKey` (`writer-N`) every [`WRITE_EVERY`], each timed; a slow one delays the
/// next (one call at a time, as a client would).
async fn writer(ring: HashRing, probes: Arc<Probes>) {
    let mut tick = tokio::time::interval(WRITE_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        let began = Instant::now();
        let answer = ring.store_key(&format!("writer-{n:08}")).await;
        let took = began.elapsed();
        if took >= SLOW_WRITE {
            // Wall-clock time, to be matched with the nodes' log lines.
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!(
                "  slow background write: {took:.1?}, ended at {:.3} s since the epoch",
                at.as_secs_f64()
            );
        }
        let mut records = probes.records();
        match answer {
            Ok(_) => records.writes.push(took),
            Err(e) => {
                records.write_errors += 1;
                if records.write_errors <= 5 {
                    eprintln!("  background write failed after {took:?}: {e}");
                }
            }
        }
    }
}

/// Every [`POLL_EVERY`]: Status of every node expected up (at once), their leader and
/// term, every node's RSS; a node that died breaks the run. The channels connect on
/// first use: a channel's first answer (and its first after a failed call, which
/// reconnects) also timed a TCP and HTTP/2 handshake, so it is not a Status latency;
/// a first call to every node before the first tick connects them all.
async fn poller(nodes: Arc<Nodes>, channels: Vec<Channel>, probes: Arc<Probes>) {
    let mut connected = Vec::with_capacity(channels.len());
    for (i, channel) in channels.iter().enumerate() {
        connected.push(nodes.status_via(i, channel.clone()).await.is_ok());
    }
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(why) = nodes.died() {
            probes.broken.send_replace(Some(why));
            return;
        }
        let up: Vec<usize> = (0..nodes.len()).filter(|&i| nodes.expected_up(i)).collect();
        let answered: Vec<bool> = up.iter().map(|&i| nodes.answered(i)).collect();
        let answers =
            futures::future::join_all(up.iter().map(|&i| nodes.status_via(i, channels[i].clone())))
                .await;
        for ((&i, answer), answered) in up.iter().zip(answers).zip(answered) {
            match answer {
                Ok((status, took)) => {
                    probes.observe_leader(status.term, status.leader_id);
                    if std::mem::replace(&mut connected[i], true) {
                        probes.records().status.push(took);
                    }
                }
                // A node stopped on purpose while its call was in flight, or one just
                // started that never answered yet, is no error.
                Err(e) if answered && nodes.expected_up(i) => {
                    connected[i] = false;
                    let mut records = probes.records();
                    records.status_errors += 1;
                    if records.status_errors <= 5 {
                        eprintln!("  {e}");
                    }
                }
                Err(_) => connected[i] = false,
            }
        }
        probes.sample_rss(&nodes);
    }
}

/// The key of load number `n` (1-based): `key-00000001` …
pub fn key(n: u64) -> String {
    format!("key-{n:08}")
}

/// Stores keys 1..=`total` in batches of [`BATCH`] from [`LOADERS`] tasks, each taking
/// the next batch when its last is acknowledged; `loaded` counts the stored keys.
/// A failed batch is tried again; fails when one still fails after [`BATCH_GIVE_UP`].
pub async fn load(
    ring: HashRing,
    total: u64,
    loaded: watch::Sender<u64>,
    probes: Arc<Probes>,
) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let loaded = Arc::new(loaded);
    // Dropped (aborting the loaders) when one fails or this future is dropped.
    let mut loaders = JoinSet::new();
    for _ in 0..LOADERS {
        let (ring, next, loaded) = (ring.clone(), next.clone(), loaded.clone());
        let probes = probes.clone();
        loaders.spawn(async move {
            loop {
                let first = next.fetch_add(1, Ordering::Relaxed) * BATCH + 1;
                if first > total {
                    return Ok(());
                }
                let last = (first + BATCH - 1).min(total);
                let operations: Vec<_> = (first..=last)
                    .map(|n| KeyOperation::store(key(n)))
                    .collect();
                let began = Instant::now();
                while let Err(e) = ring.batch_operations(&operations).await {
                    probes.records().batch_errors += 1;
                    if began.elapsed() >= BATCH_GIVE_UP {
                        return Err(format!(
                            "BatchOperations of keys {first}..={last} still failing after \
                             {BATCH_GIVE_UP:?}: {e}"
                        ));
                    }
                    eprintln!(
                        "  {:.1} s: BatchOperations of keys {first}..={last} failed: {e}; again",
                        began.elapsed().as_secs_f64()
                    );
                    tokio::time::sleep(BATCH_PAUSE).await;
                }
                loaded.send_modify(|n| *n += last - first + 1);
            }
        });
    }
    while let Some(done) = loaders.join_next().await {
        done.map_err(|e| format!("a loader task ended: {e}"))??;
    }
    Ok(())
}
