//! The workload: concurrent SDK clients storing, removing (in batches) and locating
//! keys of a small key space on one HashRing, every call recorded with its invocation
//! and completion time.
//!
//! Every write carries a timestamp unique in the run, which a store leaves as the key's
//! last access time: a LocateKey answer names the one store it reads from, as a
//! register read names the write it returns.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use clockwise_client::{BatchResult, Client, Error, KeyOperation};
use serde_json::{json, Value};

use crate::rng::Rng;

/// The ring the workload uses; its nodes never change during a run, so a key's owner
/// is fixed and keys are independent.
pub const RING: &str = "chaos";
pub const RING_NODES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Store {
        key: String,
        ts: i64,
    },
    /// `(is_store, key)` in order; a remove alone is a batch of one.
    Batch {
        ops: Vec<(bool, String)>,
        ts: i64,
    },
    Locate {
        key: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Stored(Option<String>),
    Batch(Vec<Option<BatchResult>>),
    Located(Option<(String, i64)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(Answer),
    /// It may or may not have taken effect.
    Unknown(String),
    /// It certainly did not (a read that failed, a call never sent).
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Record {
    pub client: usize,
    /// Nanoseconds since the run started.
    pub call: u64,
    pub ret: u64,
    pub what: Call,
    pub outcome: Outcome,
}

impl Call {
    pub fn kind(&self) -> &'static str {
        match self {
            Call::Store { .. } => "store",
            Call::Batch { ops, .. } if ops.len() == 1 => "remove",
            Call::Batch { .. } => "batch",
            Call::Locate { .. } => "locate",
        }
    }

    fn is_write(&self) -> bool {
        !matches!(self, Call::Locate { .. })
    }
}

/// The recorded history, shared by the clients.
#[derive(Clone)]
pub struct History {
    started: Instant,
    records: Arc<Mutex<Vec<Record>>>,
    /// The next write timestamp (unique in the run).
    next_ts: Arc<AtomicI64>,
    /// Reads answered by whichever node is asked, without confirming leadership.
    stale_reads: bool,
}

impl History {
    pub fn new(first_ts: i64, stale_reads: bool) -> Self {
        History {
            started: Instant::now(),
            records: Arc::default(),
            next_ts: Arc::new(AtomicI64::new(first_ts)),
            stale_reads,
        }
    }

    /// When the run started: every time in the history counts from it.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn next_ts(&self) -> i64 {
        self.next_ts.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes `what` through `client`, recording it.
    pub async fn run(&self, who: usize, client: &Client, what: Call) -> Outcome {
        let call = self.now();
        let ring = match self.stale_reads {
            true => client.hash_ring(RING).stale_reads(),
            false => client.hash_ring(RING),
        };
        let answer = match &what {
            Call::Store { key, ts } => ring.at(*ts).store_key(key).await.map(Answer::Stored),
            Call::Batch { ops, ts } => {
                let ops: Vec<KeyOperation> = ops
                    .iter()
                    .map(|(store, key)| {
                        if *store {
                            KeyOperation::store(key.clone())
                        } else {
                            KeyOperation::remove_key(key.clone())
                        }
                    })
                    .collect();
                ring.at(*ts).batch_operations(&ops).await.map(Answer::Batch)
            }
            Call::Locate { key } => ring
                .locate_key(key)
                .await
                .map(|l| Answer::Located(l.map(|l| (l.owner, l.last_access)))),
        };
        let outcome = match answer {
            Ok(answer) => Outcome::Ok(answer),
            // Nothing was sent, or the node refused the request outright.
            Err(e @ (Error::CircuitOpen { .. } | Error::InvalidArgument { .. })) => {
                Outcome::Failed(e.to_string())
            }
            Err(e) if what.is_write() => Outcome::Unknown(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let record = Record {
            client: who,
            call,
            ret: self.now(),
            what,
            outcome: outcome.clone(),
        };
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        outcome
    }

    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One client's loop until `stop`: a random call at a time on `keys`.
pub async fn client_loop(
    who: usize,
    client: Client,
    history: History,
    keys: Vec<String>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let pick = |rng: &mut Rng| keys[rng.below(keys.len())].clone();
        let what = match rng.below(100) {
            0..40 => Call::Store {
                key: pick(&mut rng),
                ts: history.next_ts(),
            },
            40..55 => Call::Batch {
                ops: vec![(false, pick(&mut rng))],
                ts: history.next_ts(),
            },
            55..70 => {
                let len = 2 + rng.below(3);
                let ops = (0..len)
                    .map(|_| (rng.below(3) != 0, pick(&mut rng)))
                    .collect();
                Call::Batch {
                    ops,
                    ts: history.next_ts(),
                }
            }
            _ => Call::Locate {
                key: pick(&mut rng),
            },
        };
        history.run(who, &client, what).await;
    }
}

/// Writes `records` as JSON lines: client, call and return times (ns since the start),
/// the call and its outcome.
pub fn write_history(path: &std::path::Path, records: &[Record]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in records {
        let what = match &r.what {
            Call::Store { key, ts } => json!({"store": key, "ts": ts}),
            Call::Batch { ops, ts } => json!({
                "batch": ops.iter().map(|(store, key)| json!({"op": if *store { "store" } else { "remove_key" }, "key": key})).collect::<Vec<_>>(),
                "ts": ts,
            }),
            Call::Locate { key } => json!({"locate": key}),
        };
        let outcome = match &r.outcome {
            Outcome::Ok(Answer::Stored(node)) => json!({"ok": node}),
            Outcome::Ok(Answer::Batch(results)) => json!({"ok": results.iter().map(|r| match r {
                Some(BatchResult::Placed(node)) => json!(node),
                Some(BatchResult::Removed(found)) => json!(found),
                None => Value::Null,
            }).collect::<Vec<_>>()}),
            Outcome::Ok(Answer::Located(at)) => {
                json!({"ok": at.as_ref().map(|(node, ts)| json!({"node": node, "last_access": ts}))})
            }
            Outcome::Unknown(why) => json!({"unknown": why}),
            Outcome::Failed(why) => json!({"failed": why}),
        };
        let line = json!({"client": r.client, "call_ns": r.call, "ret_ns": r.ret, "call": what, "outcome": outcome});
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}
