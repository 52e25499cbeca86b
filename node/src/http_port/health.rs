//! `GET /healthz`: the process is up and serving HTTP (200, always).
//! `GET /readyz`: this node can serve reads and writes, by the same rule as its
//! `grpc.health.v1` ([`crate::service::health::readiness`]): a voter that knows a leader,
//! has applied its log to within `MAX_APPLY_LAG` entries of its commit index, and is not
//! shutting down; otherwise 503 with the reason as text (a load balancer then sends
//! calls elsewhere, an operator reads why).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::HttpState;
use crate::service::health::readiness;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let now = readiness(&state.status.borrow(), *state.draining.borrow());
    if now.is_serving() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {now}\n"),
        )
    }
}
