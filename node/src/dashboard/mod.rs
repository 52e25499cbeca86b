//! The ring dashboard: a page at `/` (HTML, CSS and JavaScript embedded in the binary,
//! nothing fetched from another host) and the JSON endpoints it polls every second.
//!
//! - `GET /`: without `ring`, the list of rings; `/?ring=NAME&kind=hashring|chatrouter`
//!   draws one ring (the page decides which from its own query string).
//! - `GET /api/rings`: the rings, by kind and name ([`json::MAX_LISTED_RINGS`] at most).
//! - `GET /api/ring?ring=NAME&kind=KIND&have=VERSION`: one ring's nodes and loads, and
//!   its virtual-node positions when the topology differs from `have`.
//! - `GET /api/cluster`: this node's view of the raft group.
//!
//! Everything is read from this node's replica (a follower's may lag the leader; the
//! page says so and shows the applied index): the engine's read lock is held for
//! O(virtual nodes of one ring + nodes), or O(listed rings), never O(keys).

pub mod json;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clockwise_cluster::MemberAddress;
use serde_json::Value;

use crate::service::state::NodeState;
use crate::service::validate::{Consistency, MAX_ID_BYTES};
use json::Kind;

const INDEX_HTML: &str = include_str!("assets/index.html");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("assets/dashboard.css");

/// The browser may load nothing but this node's own page, script, style and JSON.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// What the dashboard reads: this node's replica and where it serves.
#[derive(Clone)]
pub struct DashboardSource {
    state: Arc<NodeState>,
    /// This node's address as bound (port 0 resolved).
    address: MemberAddress,
}

impl DashboardSource {
    pub fn new(state: Arc<NodeState>, address: MemberAddress) -> Self {
        DashboardSource { state, address }
    }
}

/// The dashboard's routes, to be served on the node's HTTP port.
pub fn router(source: DashboardSource) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
        .route("/api/rings", get(rings))
        .route("/api/ring", get(ring))
        .route("/api/cluster", get(cluster))
        .with_state(Arc::new(source))
}

fn with_headers(content_type: &'static str, status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The JSON changes every second; the assets with the binary.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    with_headers(content_type, StatusCode::OK, body.to_owned())
}

fn json_reply(value: &Value) -> Response {
    with_headers("application/json", StatusCode::OK, value.to_string())
}

/// A refused query, naming the parameter.
fn bad_request(field: &str, reason: &str) -> Response {
    with_headers(
        "text/plain; charset=utf-8",
        StatusCode::BAD_REQUEST,
        format!("{field}: {reason}\n"),
    )
}

/// `a=1&b=x%20y` as a map (`+` is a space; a repeated name keeps its last value).
fn query_params(raw: Option<&str>) -> BTreeMap<String, String> {
    let decode = |text: &str| {
        let spaced = text.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

async fn rings(State(source): State<Arc<DashboardSource>>) -> Response {
    let list = source.state.read(Consistency::Stale, json::ring_list).await;
    match list {
        Ok(mut list) => {
            list["applied_index"] = source.state.replica().status().applied_index.into();
            json_reply(&list)
        }
        Err(e) => internal(&e),
    }
}

async fn ring(State(source): State<Arc<DashboardSource>>, RawQuery(query): RawQuery) -> Response {
    let params = query_params(query.as_deref());
    let Some(name) = params.get("ring").filter(|name| !name.is_empty()) else {
        return bad_request("ring", "required: the ring's name");
    };
    if name.len() > MAX_ID_BYTES {
        let reason = format!(
            "is {} bytes; at most {MAX_ID_BYTES} are allowed",
            name.len()
        );
        return bad_request("ring", &reason);
    }
    let kind = match params.get("kind").map(String::as_str) {
        None | Some("") => Kind::HashRing,
        Some(text) => match Kind::parse(text) {
            Some(kind) => kind,
            None => return bad_request("kind", "must be hashring or chatrouter"),
        },
    };
    let have = params.get("have").map(String::as_str);
    let view = source
        .state
        .read(Consistency::Stale, |engine| {
            json::ring_view(engine, kind, name, have)
        })
        .await;
    match view {
        Ok(mut view) => {
            // Read after the engine: the state shown is at least this index.
            view["applied_index"] = source.state.replica().status().applied_index.into();
            json_reply(&view)
        }
        Err(e) => internal(&e),
    }
}

async fn cluster(State(source): State<Arc<DashboardSource>>) -> Response {
    let replica = source.state.replica();
    let cluster_id = replica
        .transport()
        .access()
        .auth
        .identity()
        .get()
        .unwrap_or_default();
    let status = replica.status();
    let digest = source.state.state_digest();
    json_reply(&json::cluster(
        &status,
        &source.address,
        &digest,
        &cluster_id,
    ))
}

fn internal(error: &crate::service::ServiceError) -> Response {
    with_headers(
        "text/plain; charset=utf-8",
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{error}\n"),
    )
}

#[cfg(test)]
mod tests;
