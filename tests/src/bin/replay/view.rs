//! `replay --grpc … --routes-from-view`: `route_key` / `route_request` answered from
//! an SDK `RingView` of the ring instead of the RouteKey / RouteRequest RPC, so
//! `ring_diff.py` compares the view's local routes with the reference at every point
//! of a trace (merges, restores, backups, TTLs).
//!
//! Read-your-writes as an application gets it: every reply's `x-clockwise-revision` is
//! captured ([`Revisions`], a layer on the channels), and a route first waits until the
//! view holds the revision of the last write that changed its ring's topology. (Waiting
//! for the last write of any kind would also be right, but a write that changes no
//! topology reaches a view only through a progress message, at most 10 a second.)

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use clockwise_client::{ChatRouterView, Client, HashRingView};
use serde_json::{json, Value};

/// The revision metadata a node puts on a write's reply.
const REVISION_METADATA: &str = "x-clockwise-revision";

/// A transport that records the highest revision any reply carried.
#[derive(Clone)]
pub struct Revisions<S> {
    inner: S,
    seen: Arc<AtomicU64>,
}

impl<S> Revisions<S> {
    pub fn new(inner: S, seen: Arc<AtomicU64>) -> Self {
        Revisions { inner, seen }
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for Revisions<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        let seen = self.seen.clone();
        Box::pin(async move {
            let response = future.await?;
            if let Some(revision) = response
                .headers()
                .get(REVISION_METADATA)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                seen.fetch_max(revision, Ordering::AcqRel);
            }
            Ok(response)
        })
    }
}

/// Whether `method` of `svc` is a route the views answer.
pub fn is_route(svc: &str, method: &str) -> bool {
    matches!(
        (svc, method),
        ("hashring", "route_key") | ("chatrouter", "route_request")
    )
}

/// Whether a write's `result` says it changed its ring's topology (what the node
/// streams a change for: an add, remove, limit or merge that answered true, a restore
/// that found a backup).
fn changed_topology(method: &str, result: &Value) -> bool {
    match method {
        "add_node"
        | "remove_node"
        | "add_node_with_replicas"
        | "set_capacity"
        | "merge_nodes"
        | "add_server"
        | "remove_server"
        | "add_server_with_replicas"
        | "set_memory_limit"
        | "merge_servers" => result == &json!(true),
        "restore" => !result.is_null(),
        _ => false,
    }
}

enum View {
    HashRing(HashRingView),
    ChatRouter(ChatRouterView),
}

/// One view per ring of the trace, and the revision each must reach before it routes.
pub struct Views {
    client: Client,
    views: HashMap<(String, String), View>,
    /// Per ring: the revision of the last write that changed its topology.
    changed_at: HashMap<(String, String), u64>,
}

impl Views {
    /// An SDK client over `endpoints` (`http://host:port`, comma-separated).
    pub async fn connect(endpoints: &str) -> Result<Views, String> {
        let client = Client::builder()
            .endpoints(endpoints.split(',').map(str::trim))
            .timeout(Duration::from_secs(10))
            .build()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Views {
            client,
            views: HashMap::new(),
            changed_at: HashMap::new(),
        })
    }

    /// Notes a write's outcome: `revision` is the highest any reply carried so far
    /// (the write's own, as calls are made one at a time).
    pub fn after(&mut self, svc: &str, ring: &str, method: &str, result: &Value, revision: u64) {
        if changed_topology(method, result) || method == "configure_ring" {
            self.changed_at
                .insert((svc.to_owned(), ring.to_owned()), revision);
        }
    }

    /// Routes `id` on `ring`'s view once it holds the ring's last topology change.
    pub async fn route(&mut self, svc: &str, ring: &str, id: &str) -> Result<Value, String> {
        let key = (svc.to_owned(), ring.to_owned());
        let revision = self.changed_at.get(&key).copied().unwrap_or(0);
        let error = |e: clockwise_client::Error| format!("view of {ring}: {e}");
        if !self.views.contains_key(&key) {
            let view = match svc {
                "hashring" => {
                    View::HashRing(self.client.hash_ring(ring).watch().await.map_err(error)?)
                }
                _ => View::ChatRouter(self.client.chat_router(ring).watch().await.map_err(error)?),
            };
            self.views.insert(key.clone(), view);
        }
        Ok(match &self.views[&key] {
            View::HashRing(view) => {
                json!(view.wait_for(revision).await.map_err(error)?.route_key(id))
            }
            View::ChatRouter(view) => {
                json!(view
                    .wait_for(revision)
                    .await
                    .map_err(error)?
                    .route_request(id))
            }
        })
    }
}
