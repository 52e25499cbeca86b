//! L6: rate-limited sync calls (`SyncReplicas`, `ReplicateSessions`).
//!
//! The engine says which entries are valid; this module runs the simulated external
//! calls. Per call, a semaphore of `max_concurrent` permits bounds concurrency. In
//! `FAIL_FAST` an invalid entry answers `false` at once (no permit, no call); in
//! `ALL_SLEEP` every entry takes a permit and the call, then answers its validity.
//! Node-wide, the `sync` bulkhead ([`super::bulkhead`], from `max_calls` and
//! `queue_wait` here) bounds how many sync RPCs run at once, in a layer before the
//! handler, so a refused call costs nothing.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clockwise_proto::common::v1::SyncMode;
use tokio::sync::Semaphore;

use super::bulkhead::BulkheadConfig;

/// Counters of simulated calls, exported on /metrics.
#[derive(Debug, Default)]
pub struct SyncCounters {
    pub started: AtomicU64,
    pub in_flight: AtomicI64,
    /// Highest `in_flight` seen since the node started.
    pub in_flight_max: AtomicI64,
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The simulated external call's duration (the drill's 10 ms).
    pub delay: Duration,
    /// Sync RPCs allowed to run at once on this node (the `sync` bulkhead).
    pub max_calls: usize,
    /// How long a sync RPC may wait for a place before RESOURCE_EXHAUSTED.
    pub queue_wait: Duration,
}

impl SyncConfig {
    /// The `sync` bulkhead's bound.
    pub fn bulkhead(&self) -> BulkheadConfig {
        BulkheadConfig {
            max_calls: self.max_calls,
            queue_wait: self.queue_wait,
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            delay: Duration::from_millis(10),
            max_calls: 64,
            queue_wait: Duration::from_millis(100),
        }
    }
}

#[derive(Debug)]
pub struct SyncRunner {
    config: SyncConfig,
    pub counters: Arc<SyncCounters>,
}

impl SyncRunner {
    pub fn new(config: SyncConfig, counters: Arc<SyncCounters>) -> Self {
        SyncRunner { config, counters }
    }

    /// Runs the simulated calls for entries of the given validity; results in input order.
    pub async fn run(
        &self,
        validity: Vec<bool>,
        max_concurrent: usize,
        mode: SyncMode,
    ) -> Vec<bool> {
        let permits = Semaphore::new(max_concurrent);
        let calls = validity.into_iter().map(|valid| {
            let permits = &permits;
            async move {
                if !valid && mode == SyncMode::FailFast {
                    return false;
                }
                let _permit = permits.acquire().await.expect("never closed");
                let _call = InFlight::start(&self.counters);
                tokio::time::sleep(self.config.delay).await;
                valid
            }
        });
        futures::future::join_all(calls).await
    }
}

/// One simulated call in flight; the counter drops back even if the RPC is cancelled.
struct InFlight<'a>(&'a SyncCounters);

impl<'a> InFlight<'a> {
    fn start(counters: &'a SyncCounters) -> Self {
        counters.started.fetch_add(1, Ordering::Relaxed);
        let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        counters.in_flight_max.fetch_max(now, Ordering::Relaxed);
        InFlight(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner() -> SyncRunner {
        let config = SyncConfig {
            delay: Duration::from_millis(5),
            ..SyncConfig::default()
        };
        SyncRunner::new(config, Arc::default())
    }

    #[tokio::test]
    async fn fail_fast_simulates_only_valid_entries_within_the_limit() {
        let r = runner();
        let out = r
            .run(
                vec![true, false, true, true, false, true],
                2,
                SyncMode::FailFast,
            )
            .await;
        assert_eq!(out, vec![true, false, true, true, false, true]);
        assert_eq!(r.counters.started.load(Ordering::Relaxed), 4);
        assert!(r.counters.in_flight_max.load(Ordering::Relaxed) <= 2);
        assert_eq!(r.counters.in_flight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn all_sleep_simulates_every_entry() {
        let r = runner();
        let out = r.run(vec![false, true, false], 1, SyncMode::AllSleep).await;
        assert_eq!(out, vec![false, true, false]);
        assert_eq!(r.counters.started.load(Ordering::Relaxed), 3);
        assert_eq!(r.counters.in_flight_max.load(Ordering::Relaxed), 1);
    }
}
