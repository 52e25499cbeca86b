//! The SDK's metrics through the `metrics` facade, read back with `metrics-util`'s
//! debugging recorder: breaker transitions and state, attempts, failovers and calls that
//! gave up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clockwise_client::telemetry::{
    ATTEMPTS, BREAKER_STATE, BREAKER_TRANSITIONS, FAILOVERS, RETRIES_EXHAUSTED,
};
use clockwise_client::{
    BreakerConfig, BreakerState, CircuitBreaker, Client, Error, ManualClock, RetryPolicy,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Every series as `name{label=value,…}` → value (counters and gauges as f64).
fn series(snapshotter: &Snapshotter) -> BTreeMap<String, f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

#[test]
fn breaker_transitions_and_state_show_up_as_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let clock = Arc::new(ManualClock::new());
        let config = BreakerConfig {
            failure_threshold: 2,
            success_threshold: 1,
            open_timeout: Duration::from_secs(5),
            half_open_max_calls: 1,
        };
        let breaker = Arc::new(CircuitBreaker::new("n1:1", config, clock.clone()));
        for _ in 0..2 {
            breaker.acquire().unwrap().failure();
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(5));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.acquire().unwrap().success();
        assert_eq!(breaker.state(), BreakerState::Closed);
    });
    let seen = series(&snapshotter);
    let transition = |from: &str, to: &str| {
        seen.get(&format!(
            "{BREAKER_TRANSITIONS}{{endpoint=n1:1,from={from},to={to}}}"
        ))
        .copied()
    };
    assert_eq!(transition("closed", "open"), Some(1.0), "{seen:#?}");
    assert_eq!(transition("open", "half_open"), Some(1.0), "{seen:#?}");
    assert_eq!(transition("half_open", "closed"), Some(1.0), "{seen:#?}");
    assert_eq!(
        seen.get(&format!("{BREAKER_STATE}{{endpoint=n1:1}}")),
        Some(&0.0),
        "closed again: {seen:#?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn attempts_failovers_and_exhausted_retries_show_up_as_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The runtime has one thread: every metric of the call is recorded on it.
    let _guard = metrics::set_default_local_recorder(&recorder);
    // Nothing listens on port 1 or 2: every attempt fails at once with UNAVAILABLE.
    let client = Client::builder()
        .endpoints(["127.0.0.1:1", "127.0.0.1:2"])
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        })
        .breaker(BreakerConfig {
            failure_threshold: 1,
            open_timeout: Duration::ZERO,
            ..BreakerConfig::default()
        })
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let outcome = client.hash_ring("r").get_node_count().await;
    assert!(
        matches!(outcome, Err(Error::RetryExhausted { attempts: 3, .. })),
        "{outcome:?}"
    );
    let seen = series(&snapshotter);
    assert_eq!(
        seen.get(&format!("{ATTEMPTS}{{kind=read}}")),
        Some(&3.0),
        "{seen:#?}"
    );
    assert_eq!(
        seen.get(&format!("{FAILOVERS}{{kind=read}}")),
        Some(&2.0),
        "{seen:#?}"
    );
    assert_eq!(
        seen.get(&format!("{RETRIES_EXHAUSTED}{{kind=read}}")),
        Some(&1.0),
        "{seen:#?}"
    );
    // Each failure opened its endpoint's breaker (one failure is the threshold).
    assert!(
        seen.keys()
            .any(|k| k.starts_with(BREAKER_TRANSITIONS) && k.contains("to=open")),
        "{seen:#?}"
    );
}
