//! A circuit breaker per peer: stop calling a node that keeps failing, probe it again
//! later.
//!
//! `Closed` → `Open` after `failure_threshold` consecutive counted failures (a success
//! resets the count). `Open` rejects every call without contacting the peer until
//! `open_timeout` has passed, then the next call finds it `HalfOpen`: at most
//! `half_open_max_calls` probes go through at once, `success_threshold` consecutive
//! probe successes close it, and any probe failure opens it again (restarting the
//! timer). Time comes from a [`Clock`], so tests drive it by hand. Only availability
//! errors count as failures (the caller decides: see [`Permit`]).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::error::Error;

/// When a breaker opens and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// Consecutive probe successes that close a half-open breaker.
    pub success_threshold: u32,
    /// How long an open breaker rejects calls before it lets probes through.
    pub open_timeout: Duration,
    /// Probes allowed in flight at once while half-open.
    pub half_open_max_calls: u32,
}

impl Default for BreakerConfig {
    /// 5 failures to open, 2 probe successes to close, 1 probe at a time, and 5 s open:
    /// a small cluster has few peers, and a node back from a restart should get traffic
    /// again within seconds, not a minute.
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            success_threshold: 2,
            open_timeout: Duration::from_secs(5),
            half_open_max_calls: 1,
        }
    }
}

impl BreakerConfig {
    /// Refuses a breaker that cannot work: one that opens after zero failures, closes
    /// after zero probe successes, or lets no probe through when half-open (it would
    /// never close again). A zero `open_timeout` is allowed: probes go at once.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the setting.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |setting, reason| Err(Error::InvalidConfig { setting, reason });
        if self.failure_threshold == 0 {
            return invalid("breaker.failure_threshold", "must be at least 1");
        }
        if self.success_threshold == 0 {
            return invalid("breaker.success_threshold", "must be at least 1");
        }
        if self.half_open_max_calls == 0 {
            return invalid(
                "breaker.half_open_max_calls",
                "must be at least 1: with no probe a breaker never closes again",
            );
        }
        Ok(())
    }
}

/// The three states of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are rejected without contacting the peer.
    Open,
    /// A limited number of probe calls go through.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// What a breaker has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerStats {
    /// The state now.
    pub state: BreakerState,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Successes since the last failure.
    pub consecutive_successes: u32,
    /// Calls let through.
    pub calls: u64,
    /// Calls that failed (counted failures only).
    pub failures: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls rejected while open (or half-open with every probe slot taken).
    pub rejected: u64,
    /// State changes so far.
    pub transitions: u64,
    /// When the state last changed.
    pub last_change: Instant,
}

/// The call was not made: the breaker of `target` is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit open for {target}")]
pub struct CircuitOpen {
    /// The peer whose breaker is open.
    pub target: String,
}

/// One peer's breaker.
pub struct CircuitBreaker {
    target: String,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    consecutive_successes: u32,
    opened_at: Instant,
    probes_in_flight: u32,
    /// Bumped at every state change: a permit from an earlier state reports nothing (a
    /// call let through while closed must not close a half-open breaker).
    generation: u64,
    stats: BreakerStats,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("target", &self.target)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker for `target`, timed by `clock`.
    pub fn new(target: impl Into<String>, config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        let target = target.into();
        crate::telemetry::breaker_state(&target, BreakerState::Closed);
        CircuitBreaker {
            target,
            config,
            clock,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                consecutive_successes: 0,
                opened_at: now,
                probes_in_flight: 0,
                generation: 0,
                stats: BreakerStats {
                    state: BreakerState::Closed,
                    consecutive_failures: 0,
                    consecutive_successes: 0,
                    calls: 0,
                    failures: 0,
                    successes: 0,
                    rejected: 0,
                    transitions: 0,
                    last_change: now,
                },
            }),
        }
    }

    /// The peer this breaker guards.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Asks to make one call: a [`Permit`] to report its outcome on, or [`CircuitOpen`].
    pub fn acquire(self: &Arc<Self>) -> Result<Permit, CircuitOpen> {
        let mut inner = self.lock();
        self.expire_open(&mut inner);
        let probe = match inner.state {
            BreakerState::Closed => false,
            BreakerState::HalfOpen if inner.probes_in_flight < self.config.half_open_max_calls => {
                inner.probes_in_flight += 1;
                true
            }
            BreakerState::Open | BreakerState::HalfOpen => {
                inner.stats.rejected += 1;
                return Err(CircuitOpen {
                    target: self.target.clone(),
                });
            }
        };
        inner.stats.calls += 1;
        Ok(Permit {
            breaker: Some(self.clone()),
            probe,
            generation: inner.generation,
        })
    }

    /// Whether a call would be let through now (without taking a probe slot).
    pub fn allows(&self) -> bool {
        let mut inner = self.lock();
        self.expire_open(&mut inner);
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => inner.probes_in_flight < self.config.half_open_max_calls,
            BreakerState::Open => false,
        }
    }

    /// The state now (an open breaker past its timeout reads half-open).
    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        self.expire_open(&mut inner);
        inner.state
    }

    /// What the breaker has seen so far.
    pub fn stats(&self) -> BreakerStats {
        let mut inner = self.lock();
        self.expire_open(&mut inner);
        let mut stats = inner.stats.clone();
        stats.state = inner.state;
        stats.consecutive_failures = inner.consecutive_failures;
        stats.consecutive_successes = inner.consecutive_successes;
        stats
    }

    /// Closes the breaker and clears its counts (an operator's manual reset).
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        inner.consecutive_successes = 0;
        inner.probes_in_flight = 0;
        self.transition(&mut inner, BreakerState::Closed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open → HalfOpen once the open timeout has passed (checked lazily, on use).
    fn expire_open(&self, inner: &mut Inner) {
        if inner.state == BreakerState::Open
            && self.clock.now().duration_since(inner.opened_at) >= self.config.open_timeout
        {
            inner.consecutive_successes = 0;
            inner.probes_in_flight = 0;
            self.transition(inner, BreakerState::HalfOpen);
        }
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState) {
        if inner.state == to {
            return;
        }
        let from = inner.state;
        inner.state = to;
        inner.generation += 1;
        inner.stats.transitions += 1;
        inner.stats.last_change = self.clock.now();
        if to == BreakerState::Open {
            inner.opened_at = inner.stats.last_change;
        }
        tracing::info!(target_peer = %self.target, %from, %to, "circuit breaker changed state");
        crate::telemetry::breaker_changed(&self.target, from, to);
    }

    fn record(&self, outcome: Outcome, probe: bool, generation: u64) {
        let mut inner = self.lock();
        if generation != inner.generation {
            return; // let through in an earlier state: its outcome says nothing now
        }
        if probe {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
        match outcome {
            Outcome::Neutral => {}
            Outcome::Success => {
                inner.stats.successes += 1;
                inner.consecutive_failures = 0;
                inner.consecutive_successes += 1;
                if inner.state == BreakerState::HalfOpen
                    && inner.consecutive_successes >= self.config.success_threshold
                {
                    self.transition(&mut inner, BreakerState::Closed);
                }
            }
            Outcome::Failure => {
                inner.stats.failures += 1;
                inner.consecutive_successes = 0;
                inner.consecutive_failures += 1;
                match inner.state {
                    // Any probe failure reopens, whatever the failure threshold.
                    BreakerState::HalfOpen => self.transition(&mut inner, BreakerState::Open),
                    BreakerState::Closed
                        if inner.consecutive_failures >= self.config.failure_threshold =>
                    {
                        self.transition(&mut inner, BreakerState::Open)
                    }
                    _ => {}
                }
            }
        }
    }
}

enum Outcome {
    Success,
    Failure,
    Neutral,
}

/// Leave to make one call; report how it went. Dropped without a report, it counts as
/// neither (and frees its probe slot).
pub struct Permit {
    breaker: Option<Arc<CircuitBreaker>>,
    probe: bool,
    generation: u64,
}

impl Permit {
    /// The peer answered.
    pub fn success(mut self) {
        self.finish(Outcome::Success);
    }

    /// The peer was unavailable (connection error, `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
    /// `RESOURCE_EXHAUSTED`).
    pub fn failure(mut self) {
        self.finish(Outcome::Failure);
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(breaker) = self.breaker.take() {
            breaker.record(outcome, self.probe, self.generation);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish(Outcome::Neutral);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker(config: BreakerConfig) -> (Arc<CircuitBreaker>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let breaker = Arc::new(CircuitBreaker::new("node-1", config, clock.clone()));
        (breaker, clock)
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            success_threshold: 2,
            open_timeout: Duration::from_secs(10),
            half_open_max_calls: 1,
        }
    }

    fn fail(b: &Arc<CircuitBreaker>, n: u32) {
        for _ in 0..n {
            b.acquire().expect("let through").failure();
        }
    }

    #[test]
    fn closed_opens_after_the_threshold_of_consecutive_failures_only() {
        let (b, _) = breaker(config());
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 2);
        b.acquire().unwrap().success();
        fail(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed, "a success reset the count");
        // Neither a success nor a failure: the count stays.
        drop(b.acquire().unwrap());
        assert_eq!(b.stats().consecutive_failures, 2);
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.stats().transitions, 1);
    }

    #[test]
    fn open_rejects_without_calling_until_the_timeout_then_half_opens() {
        let (b, clock) = breaker(config());
        fail(&b, 3);
        for _ in 0..4 {
            assert_eq!(
                b.acquire().err(),
                Some(CircuitOpen {
                    target: "node-1".into()
                })
            );
        }
        let stats = b.stats();
        assert_eq!((stats.rejected, stats.calls), (4, 3));
        clock.advance(Duration::from_secs(9));
        assert!(!b.allows());
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_lets_one_probe_through_at_a_time() {
        let (b, clock) = breaker(config());
        fail(&b, 3);
        clock.advance(Duration::from_secs(10));
        let probe = b.acquire().expect("the probe");
        for _ in 0..10 {
            assert!(b.acquire().is_err(), "others are rejected while it runs");
        }
        drop(probe);
        assert!(b.acquire().is_ok(), "a dropped probe frees its slot");
    }

    #[test]
    fn half_open_closes_after_the_success_threshold() {
        let (b, clock) = breaker(config());
        fail(&b, 3);
        clock.advance(Duration::from_secs(10));
        b.acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::HalfOpen, "one success of two");
        b.acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.stats().consecutive_failures, 0);
    }

    #[test]
    fn any_probe_failure_reopens_and_restarts_the_timer() {
        let (b, clock) = breaker(config());
        fail(&b, 3);
        clock.advance(Duration::from_secs(10));
        b.acquire().unwrap().success();
        b.acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open, "one failure, threshold 3");
        clock.advance(Duration::from_secs(9));
        assert_eq!(b.state(), BreakerState::Open, "the timer restarted");
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn a_call_let_through_before_a_state_change_reports_nothing_after_it() {
        let (b, clock) = breaker(config());
        let late = b.acquire().unwrap(); // while closed
        fail(&b, 3);
        clock.advance(Duration::from_secs(10));
        let probe = b.acquire().unwrap(); // half-open: the one probe
        late.success();
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "the late success counts for nothing"
        );
        assert!(b.acquire().is_err(), "the probe slot is still taken");
        probe.success();
        b.acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn reset_closes_and_breakers_are_independent() {
        let clock = Arc::new(ManualClock::new());
        let a = Arc::new(CircuitBreaker::new("a", config(), clock.clone()));
        let other = Arc::new(CircuitBreaker::new("b", config(), clock));
        fail(&a, 3);
        assert_eq!(a.state(), BreakerState::Open);
        assert_eq!(other.state(), BreakerState::Closed);
        assert!(other.acquire().is_ok());
        a.reset();
        assert_eq!(a.state(), BreakerState::Closed);
        assert_eq!(a.stats().consecutive_failures, 0);
    }
}
