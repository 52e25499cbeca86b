//! How fast a topology change reaches watchers: `watchers` raw `Watch` streams spread
//! over the three nodes (several HTTP/2 connections per node), a writer making topology
//! changes one after another; for each change and each watcher, the time from the
//! write's acknowledgement to the watcher holding its revision. Also each node's memory
//! per idle watcher (RSS with the streams open and quiet, minus RSS before, per stream).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

/// HTTP/2 connections per node that the watchers share.
const CONNECTIONS_PER_NODE: usize = 8;

pub struct Propagation {
    pub watchers: usize,
    pub changes: usize,
    /// Delays from acknowledgement to watcher, over every (change, watcher).
    pub delays: Vec<Duration>,
    /// Of those, how many watchers held the revision before the writer had its answer.
    pub before_ack: usize,
    /// Node RSS growth per open idle watcher, bytes (each node: its own watchers).
    pub bytes_per_watcher: Vec<f64>,
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn revision<T>(reply: &tonic::Response<T>) -> Result<u64, String> {
    reply
        .metadata()
        .get("x-clockwise-revision")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "a write's reply without x-clockwise-revision".to_owned())
}

/// One watcher: every message's revision and when it arrived, until `stop`.
async fn watcher(
    channel: Channel,
    ring: String,
    ready: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<(u64, Instant)>, String> {
    let request = hr::WatchRequest {
        ring,
        start_revision: 0,
    };
    let mut stream = HashRingClient::new(channel)
        .watch(request)
        .await
        .map_err(|e| format!("watch: {e}"))?
        .into_inner();
    let mut seen = Vec::new();
    let first = stream
        .message()
        .await
        .map_err(|e| format!("watch: {e}"))?
        .ok_or("the watch ended before its first message")?;
    seen.push((first.revision, Instant::now()));
    ready.fetch_add(1, Ordering::SeqCst);
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(seen),
            message = stream.message() => match message {
                Ok(Some(message)) => seen.push((message.revision, Instant::now())),
                Ok(None) => return Err("a watch ended".into()),
                Err(e) => return Err(format!("a watch failed: {e}")),
            }
        }
    }
}

/// Polls `done` every 10 ms until it holds or `within` passes.
async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

pub async fn measure(
    addrs: &[String],
    pids: &[u32],
    ring: &str,
    watchers: usize,
    changes: usize,
) -> Result<Propagation, String> {
    let channels: Vec<Vec<Channel>> = addrs
        .iter()
        .map(|addr| {
            (0..CONNECTIONS_PER_NODE)
                .map(|_| {
                    Endpoint::from_shared(format!("http://{addr}"))
                        .map(|e| e.connect_lazy())
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    let rss_before: Vec<u64> = pids.iter().map(|&p| rss_bytes(p).unwrap_or(0)).collect();
    let ready = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = (0..watchers)
        .map(|i| {
            let node = i % addrs.len();
            let channel = channels[node][(i / addrs.len()) % CONNECTIONS_PER_NODE].clone();
            tokio::spawn(watcher(
                channel,
                ring.to_owned(),
                ready.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    wait_until(
        "every watcher's first message",
        Duration::from_secs(60),
        || ready.load(Ordering::SeqCst) == watchers,
    )
    .await?;
    // Let allocator caches settle before reading the idle footprint.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bytes_per_watcher: Vec<f64> = pids
        .iter()
        .zip(&rss_before)
        .enumerate()
        .map(|(node, (&pid, &before))| {
            let mine = (0..watchers)
                .filter(|i| i % addrs.len() == node)
                .count()
                .max(1);
            (rss_bytes(pid).unwrap_or(0) as f64 - before as f64) / mine as f64
        })
        .collect();

    let mut writer = HashRingClient::new(channels[0][0].clone());
    let mut acked = Vec::with_capacity(changes);
    for i in 0..changes {
        let node_id = format!("moving-{}", i / 2);
        let reply = if i % 2 == 0 {
            writer
                .add_node_with_replicas(hr::AddNodeWithReplicasRequest {
                    ring: ring.to_owned(),
                    timestamp: 0,
                    node_id,
                    num_replicas: 100,
                })
                .await
                .map(|r| revision(&r))
        } else {
            writer
                .remove_node(hr::RemoveNodeRequest {
                    ring: ring.to_owned(),
                    timestamp: 0,
                    node_id,
                })
                .await
                .map(|r| revision(&r))
        };
        let at = Instant::now();
        acked.push((reply.map_err(|e| format!("topology write: {e}"))??, at));
        // Changes one at a time, apart: each one's delay is its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The watchers record what arrives; stop them once the last change had time to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send_replace(true);
    let mut delays = Vec::with_capacity(changes * watchers);
    let mut before_ack = 0;
    for task in tasks {
        let seen = task
            .await
            .map_err(|e| format!("a watcher panicked: {e}"))??;
        for &(revision, acked_at) in &acked {
            let arrived = seen
                .iter()
                .find(|(r, _)| *r >= revision)
                .map(|(_, at)| *at)
                .ok_or_else(|| format!("a watcher never held revision {revision}"))?;
            if arrived < acked_at {
                before_ack += 1;
            }
            delays.push(arrived.saturating_duration_since(acked_at));
        }
    }
    delays.sort();
    Ok(Propagation {
        watchers,
        changes,
        delays,
        before_ack,
        bytes_per_watcher,
    })
}
