//! The load: the same clients, keys and timing against either system.

use std::time::{Duration, Instant};

use clockwise_client::HashRing;
use etcd_client::KvClient;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cluster::System;

/// Keys `key-0` … `key-9999`, every one stored before the timed cells, so writes
/// overwrite and reads find a key on both systems.
pub const KEYS: u64 = 10_000;

/// etcd's value: empty, because clockwise's `StoreKey` carries none (the key is all a
/// store says).
const VALUE: &[u8] = b"";

/// After a failed call a client pauses this long, so a cluster without a leader is not
/// spun on (the clockwise SDK also backs off inside its own retries).
const ERROR_PAUSE: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A replicated write: clockwise `StoreKey`, etcd `Put`.
    Write,
    /// A linearizable read: clockwise `LocateKey` (ReadIndex by default), etcd `Range`
    /// (linearizable by default).
    Read,
}

/// One system's client; clones share its connections.
#[derive(Clone)]
pub enum Target {
    Clockwise(HashRing),
    // Boxed: an etcd client is ~400 bytes, and each caller holds a clone.
    Etcd(Box<KvClient>),
}

impl Target {
    async fn call(&mut self, op: Op, key: String) -> Result<(), String> {
        match (self, op) {
            (Target::Clockwise(ring), Op::Write) => {
                ring.store_key(&key).await.map_err(|e| e.to_string())?;
            }
            (Target::Clockwise(ring), Op::Read) => {
                let found = ring.locate_key(&key).await.map_err(|e| e.to_string())?;
                found.ok_or_else(|| format!("{key} not stored"))?;
            }
            (Target::Etcd(kv), Op::Write) => {
                kv.put(key, VALUE, None).await.map_err(|e| e.to_string())?;
            }
            (Target::Etcd(kv), Op::Read) => {
                let found = kv
                    .get(key.as_str(), None)
                    .await
                    .map_err(|e| e.to_string())?;
                if found.kvs().is_empty() {
                    return Err(format!("{key} not stored"));
                }
            }
        }
        Ok(())
    }
}

/// Client `c`'s walk over the key space: a stride coprime with [`KEYS`] visits every
/// key, and the clients start far apart.
struct Keys(u64);

impl Keys {
    fn new(client: usize) -> Self {
        Keys(client as u64 * 7_919 % KEYS)
    }

    fn next(&mut self) -> String {
        self.0 = (self.0 + 4_729) % KEYS;
        format!("key-{}", self.0)
    }
}

/// Stores every key once, `clients` at a time (untimed).
pub async fn preload(target: &Target, clients: usize) -> Result<(), String> {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let mut target = target.clone();
            tokio::spawn(async move {
                for k in (c as u64..KEYS).step_by(clients) {
                    target.call(Op::Write, format!("key-{k}")).await?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

pub struct Outcome {
    pub ops_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub errors: usize,
    /// CPU time per counted call of the cluster's members, and of this program.
    pub server_cpu: Duration,
    pub client_cpu: Duration,
}

/// `clients` concurrent callers, each one call at a time, for `warm_up` then `run`:
/// only calls started after the warm-up and answered within `run` count, and the CPU
/// time of `system`'s members and of this program is taken over `run`.
pub async fn cell<S: System>(
    system: &S,
    target: &Target,
    op: Op,
    clients: usize,
    warm_up: Duration,
    run: Duration,
) -> Outcome {
    let start = Instant::now() + warm_up;
    let end = start + run;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let mut target = target.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                let mut keys = Keys::new(c);
                while Instant::now() < end {
                    let began = Instant::now();
                    let result = target.call(op, keys.next()).await;
                    let done = Instant::now();
                    let counted = began >= start && done <= end;
                    match result {
                        Ok(()) if counted => latencies.push(done - began),
                        Ok(()) => {}
                        Err(e) => {
                            if counted {
                                errors += 1;
                                eprintln!("  {op:?}: {e}");
                            }
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let cpu = || (system.cpu_time(), crate::cluster::cpu_time("self"));
    tokio::time::sleep_until(start.into()).await;
    let (server_before, client_before) = cpu();
    tokio::time::sleep_until(end.into()).await;
    let (server_after, client_after) = cpu();
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, e) = task.await.expect("client task");
        all.extend(latencies);
        errors += e;
    }
    all.sort_unstable();
    let at = |q: usize| all.get(all.len() * q / 100).copied().unwrap_or_default();
    let calls = all.len().max(1) as u32;
    Outcome {
        ops_per_sec: all.len() as f64 / run.as_secs_f64(),
        p50: at(50),
        p99: at(99),
        errors,
        server_cpu: (server_after - server_before) / calls,
        client_cpu: (client_after - client_before) / calls,
    }
}

/// `count` clients each writing through `target`, one call at a time, until aborted;
/// each acknowledgement's instant goes to `acked` when given.
fn writers(
    target: &Target,
    count: usize,
    acked: Option<mpsc::UnboundedSender<Instant>>,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|c| {
            let (mut target, acked) = (target.clone(), acked.clone());
            tokio::spawn(async move {
                let mut keys = Keys::new(c);
                loop {
                    match target.call(Op::Write, keys.next()).await {
                        Ok(()) => {
                            if let Some(acked) = &acked {
                                let _ = acked.send(Instant::now());
                            }
                        }
                        Err(_) => tokio::time::sleep(ERROR_PAUSE).await,
                    }
                }
            })
        })
        .collect()
}

/// One failover trial: `count` clients write through `target` for a second, the
/// leader is SIGKILLed, and the answer is the time from the kill to the first
/// acknowledged write (`None`: none within 30 s). The killed member is then restarted
/// and caught up, ready for the next trial.
///
/// At the kill the writers are replaced by as many new ones, so only writes sent after
/// it count: an etcd follower may still acknowledge, just after the kill, an entry
/// the dead leader had committed, and a write stuck on the dead leader until its
/// timeout would only delay its client's next one.
pub async fn failover<S: System>(
    system: &mut S,
    target: &Target,
    count: usize,
) -> Option<Duration> {
    let leader = system.leader().await;
    let before = writers(target, count, None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kill = Instant::now();
    system.members_mut()[leader].kill();
    before.iter().for_each(JoinHandle::abort);
    let (acked, mut first_ack) = mpsc::unbounded_channel();
    let after = writers(target, count, Some(acked));
    let took = tokio::time::timeout(Duration::from_secs(30), first_ack.recv())
        .await
        .ok()
        .flatten()
        .map(|acked| acked - kill);
    after.iter().for_each(JoinHandle::abort);
    system.members_mut()[leader]
        .start()
        .expect("restart the killed member");
    system.caught_up(leader).await;
    took
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_walks_every_key_once_per_round() {
        let mut keys = Keys::new(3);
        let round: std::collections::HashSet<String> = (0..KEYS).map(|_| keys.next()).collect();
        assert_eq!(round.len() as u64, KEYS);
    }
}
