//! `GET /healthz`: the process is up and serving HTTP (200, always).
//! `GET /readyz`: this node can serve reads and writes: it knows a leader, and it has
//! applied its log to within [`READY_MAX_APPLY_LAG`] entries of what it knows
//! committed; otherwise 503 with the reason as text (a load balancer then sends calls
//! elsewhere, an operator reads why).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use clockwise_cluster::driver::RaftStatus;

use super::HttpState;

/// Committed entries a ready node may have left to apply (a replica catching up after
/// a restart or a snapshot install is further behind).
pub const READY_MAX_APPLY_LAG: u64 = 1_000;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match readiness(&state.status.borrow()) {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// `Ok` when a node in `status` can serve; else why not.
pub fn readiness(status: &RaftStatus) -> Result<(), String> {
    if status.leader_id == 0 {
        return Err(format!(
            "no leader known in term {} (an election is under way, or this node is cut \
             off from a quorum)",
            status.term
        ));
    }
    let lag = status.commit_index.saturating_sub(status.applied_index);
    if lag > READY_MAX_APPLY_LAG {
        return Err(format!(
            "applied index {} is {lag} entries behind the commit index {} (at most \
             {READY_MAX_APPLY_LAG} allowed): catching up",
            status.applied_index, status.commit_index
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_a_leader_and_an_applied_index_near_commit() {
        let status = RaftStatus {
            leader_id: 2,
            term: 3,
            commit_index: 5_000,
            applied_index: 4_500,
            ..RaftStatus::default()
        };
        assert_eq!(readiness(&status), Ok(()));
        let no_leader = RaftStatus {
            leader_id: 0,
            ..status.clone()
        };
        assert!(readiness(&no_leader).unwrap_err().contains("no leader"));
        let behind = RaftStatus {
            applied_index: 3_000,
            ..status
        };
        assert!(readiness(&behind)
            .unwrap_err()
            .contains("2000 entries behind"));
    }
}
