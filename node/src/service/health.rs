//! `grpc.health.v1` that tells the truth: SERVING only while this node can answer.
//!
//! The rule ([`readiness`]): SERVING while this node is a voter, knows a leader, and
//! its applied index is within [`MAX_APPLY_LAG`] entries of its commit index; NOT_SERVING
//! while it catches up (a learner not yet promoted, a restart replaying its log), without
//! a quorum (no leader known: with check-quorum a leader that has not heard from a quorum
//! within an election timeout steps down, and a cut-off follower forgets its leader when
//! it starts a pre-vote), and from shutdown on. The overall service (`""`) and every
//! named service report the same.
//!
//! One task ([`HealthGate::spawn`]) watches the raft driver's published status and is
//! the only writer of the reporter, so a late status change cannot turn a draining node
//! back to SERVING. [`HealthGate::drain`] reports NOT_SERVING before the servers begin
//! to drain; `Health.Watch` streams then end once they have delivered it, so a load
//! balancer's watch does not hold the drain open until `--shutdown-timeout`.

use std::pin::Pin;

use clockwise_cluster::driver::RaftStatus;
use futures::{Stream, StreamExt as _};
use tokio::sync::watch;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

/// Most committed entries a node may have left to apply and still say SERVING: past
/// it, its answers would be that far behind the cluster's (a restart replaying its log).
pub const MAX_APPLY_LAG: u64 = 1_000;

/// Whether this node should serve, and if not, why (for logs and `/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Serving,
    /// No leader known: an election is under way, or this node is cut off from a quorum.
    NoLeader,
    /// Not a voter (yet): a learner catching up, or a node waiting to be added.
    NotAVoter,
    /// Applied index this many entries behind the commit index (over [`MAX_APPLY_LAG`]).
    CatchingUp {
        behind: u64,
    },
    /// Shutting down: in-flight calls are draining.
    Draining,
}

impl Readiness {
    pub fn is_serving(self) -> bool {
        self == Readiness::Serving
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Serving => write!(f, "serving"),
            Readiness::NoLeader => write!(f, "no leader known (election, or no quorum)"),
            Readiness::NotAVoter => write!(f, "not a voter yet (catching up as a learner)"),
            Readiness::CatchingUp { behind } => write!(
                f,
                "catching up: applied index {behind} entries behind commit (bound {MAX_APPLY_LAG})"
            ),
            Readiness::Draining => write!(f, "shutting down"),
        }
    }
}

/// The rule: see the module docs.
pub fn readiness(status: &RaftStatus, draining: bool) -> Readiness {
    let behind = status.commit_index.saturating_sub(status.applied_index);
    if draining {
        Readiness::Draining
    } else if !status.voters.contains(&status.id) {
        Readiness::NotAVoter
    } else if status.leader_id == 0 {
        Readiness::NoLeader
    } else if behind > MAX_APPLY_LAG {
        Readiness::CatchingUp { behind }
    } else {
        Readiness::Serving
    }
}

/// Drives the health reporter from the raft status; see the module docs.
pub struct HealthGate {
    draining: watch::Sender<bool>,
    /// Turns true once the task has reported the drain.
    drain_reported: watch::Receiver<bool>,
}

impl HealthGate {
    /// Turns true when the node starts shutting down (for `/readyz`).
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// Starts the task that keeps `""` and `services` truthful from `status`; answers
    /// the gate and the `grpc.health.v1.Health` service to serve ([`DrainingHealth::server`]).
    pub fn spawn(
        mut status: watch::Receiver<RaftStatus>,
        services: &'static [&'static str],
    ) -> (HealthGate, DrainingHealth) {
        let reporter = HealthReporter::new();
        let (draining, mut draining_seen) = watch::channel(false);
        let (reported, drain_reported) = watch::channel(false);
        let service = DrainingHealth {
            inner: HealthService::from_health_reporter(reporter.clone()),
            draining: draining_seen.clone(),
        };
        tokio::spawn(async move {
            let mut shown = None;
            loop {
                let is_draining = *draining_seen.borrow_and_update();
                let now = readiness(&status.borrow_and_update(), is_draining);
                // Every watcher gets the drain, even one already told NOT_SERVING, so
                // its stream can end.
                if shown != Some(now) || is_draining {
                    if shown.is_some_and(|was: Readiness| was.is_serving() != now.is_serving()) {
                        tracing::info!(health = %now, "health changed");
                    }
                    let wire = if now.is_serving() {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    for name in std::iter::once(&"").chain(services) {
                        reporter.set_service_status(name, wire).await;
                    }
                    shown = Some(now);
                }
                if is_draining {
                    let _ = reported.send(true);
                    return;
                }
                tokio::select! {
                    changed = status.changed() => if changed.is_err() {
                        // The driver stops after the drain (or aborts the process).
                        let _ = draining_seen.changed().await;
                    },
                    _ = draining_seen.changed() => {}
                }
            }
        });
        let gate = HealthGate {
            draining,
            drain_reported,
        };
        (gate, service)
    }

    /// Reports NOT_SERVING for good; answers once the reporter says so.
    pub async fn drain(&self) {
        let _ = self.draining.send(true);
        let mut reported = self.drain_reported.clone();
        let _ = reported.wait_for(|done| *done).await;
    }
}

/// tonic's health service, whose `Watch` streams end once they have delivered the
/// drain's NOT_SERVING (otherwise each would hold the graceful drain open).
pub struct DrainingHealth {
    inner: HealthService,
    draining: watch::Receiver<bool>,
}

impl DrainingHealth {
    pub fn server(self) -> HealthServer<DrainingHealth> {
        HealthServer::new(self)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        let inner = self.inner.watch(request).await?.into_inner();
        let state = Some((inner, self.draining.clone()));
        let stream = futures::stream::unfold(state, |state| async move {
            let (mut inner, draining) = state?;
            let item = inner.next().await?;
            // The gate flags the drain before it reports it, so this item is the drain's.
            let last = *draining.borrow()
                && matches!(&item, Ok(r) if r.status == WireStatus::NotServing as i32);
            Some((item, (!last).then_some((inner, draining))))
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn healthy() -> RaftStatus {
        RaftStatus {
            id: 2,
            leader_id: 1,
            commit_index: 5_000,
            applied_index: 5_000,
            voters: vec![1, 2, 3],
            ..RaftStatus::default()
        }
    }

    #[test]
    fn serving_needs_a_leader_a_vote_and_applied_near_commit() {
        assert_eq!(readiness(&healthy(), false), Readiness::Serving);
        let no_leader = RaftStatus {
            leader_id: 0,
            ..healthy()
        };
        assert_eq!(readiness(&no_leader, false), Readiness::NoLeader);
        let learner = RaftStatus {
            voters: vec![1, 3],
            learners: vec![2],
            ..healthy()
        };
        assert_eq!(readiness(&learner, false), Readiness::NotAVoter);
        // A restart replaying its log: commit known from the hard state, applied behind.
        let replaying = RaftStatus {
            applied_index: 5_000 - MAX_APPLY_LAG - 1,
            ..healthy()
        };
        assert_eq!(
            readiness(&replaying, false),
            Readiness::CatchingUp {
                behind: MAX_APPLY_LAG + 1
            }
        );
        let at_bound = RaftStatus {
            applied_index: 5_000 - MAX_APPLY_LAG,
            ..healthy()
        };
        assert_eq!(readiness(&at_bound, false), Readiness::Serving);
        assert_eq!(readiness(&healthy(), true), Readiness::Draining);
    }

    async fn check(service: &DrainingHealth, name: &str) -> i32 {
        let request = tonic::Request::new(HealthCheckRequest {
            service: name.into(),
        });
        service.check(request).await.unwrap().into_inner().status
    }

    /// Polls (bounded) until `name` reports `want`.
    async fn wait_for(service: &DrainingHealth, name: &str, want: WireStatus) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while check(service, name).await != want as i32 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: never {want:?}"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_reporter_follows_the_status_and_a_drain_ends_watches() {
        let (status, receiver) = watch::channel(RaftStatus {
            leader_id: 0,
            ..healthy()
        });
        let (gate, service) = HealthGate::spawn(receiver, &["a.Service"]);
        wait_for(&service, "", WireStatus::NotServing).await;
        wait_for(&service, "a.Service", WireStatus::NotServing).await;
        status.send_replace(healthy());
        wait_for(&service, "", WireStatus::Serving).await;
        wait_for(&service, "a.Service", WireStatus::Serving).await;

        let request = tonic::Request::new(HealthCheckRequest {
            service: "a.Service".into(),
        });
        let mut watch = service.watch(request).await.unwrap().into_inner();
        let first = watch.next().await.unwrap().unwrap();
        assert_eq!(first.status, WireStatus::Serving as i32);
        gate.drain().await;
        assert_eq!(check(&service, "").await, WireStatus::NotServing as i32);
        let last = watch.next().await.unwrap().unwrap();
        assert_eq!(last.status, WireStatus::NotServing as i32);
        assert!(
            watch.next().await.is_none(),
            "the watch ends after the drain"
        );
        // A later status change cannot bring a draining node back.
        status.send_replace(RaftStatus {
            term: 9,
            ..healthy()
        });
        tokio::task::yield_now().await;
        assert_eq!(check(&service, "").await, WireStatus::NotServing as i32);
    }
}
