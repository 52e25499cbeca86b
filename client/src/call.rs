//! The one call path: every unary RPC of the SDK goes through [`Client::call`], which
//! takes the tonic stub method itself (`HashRingClient::add_node`), so a typed method
//! only builds its request and reads its answer.
//!
//! Layering, outermost first: the overall deadline; the retry loop, which picks the
//! peer of each attempt (the leader for writes and linearizable reads when known, the
//! next peer round-robin otherwise, skipping peers whose breaker is open without
//! sleeping); that peer's circuit breaker; the per-attempt deadline; the transport.
//! Each attempt counts against its own peer's breaker, and the overall deadline bounds
//! the whole.

use std::time::{Duration, Instant};

use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::breaker::Permit;
use crate::error::{counts_against_peer, Error};
use crate::peers::{normalize, CallKind, Peer};
use crate::session::LaneGuard;
use crate::telemetry::{self, TRACEPARENT_METADATA};
use crate::Client;
use tracing::Instrument as _;

const CLIENT_ID_METADATA: &str = "x-clockwise-client-id";
const SEQ_METADATA: &str = "x-clockwise-seq";
const CONSISTENCY_METADATA: &str = "x-clockwise-consistency";
const AUTHORIZATION_METADATA: &str = "authorization";
/// The revision (raft index) a write applied at, on its reply.
const REVISION_METADATA: &str = "x-clockwise-revision";
/// Marks an UNAVAILABLE by which a node says the cluster (no leader, no quorum) could not
/// serve the call in time: the node answered, so its breaker does not count it.
const CLUSTER_UNAVAILABLE_METADATA: &str = "x-clockwise-cluster-unavailable";
/// A node's rate-limit hint (`RESOURCE_EXHAUSTED`), and the longest one believed.
const RETRY_AFTER_METADATA: &str = "retry-after-ms";
const MAX_RETRY_AFTER_MS: u64 = 10_000;
/// How long after its first attempt a write may still be retried: the nodes apply a
/// retry at most once within 5 minutes of the first application (docs/api.md); a minute
/// less leaves room for an attempt's own deadline and for clocks that disagree.
pub(crate) const WRITE_RETRY_WINDOW: Duration = Duration::from_secs(4 * 60);

/// Whether a write first attempted at `first` may start another attempt at `now` that
/// may last `next`: the whole attempt must fall within [`WRITE_RETRY_WINDOW`].
pub(crate) fn within_retry_window(first: Instant, now: Instant, next: Duration) -> bool {
    now.saturating_duration_since(first) + next <= WRITE_RETRY_WINDOW
}

/// Below this much time left, no new attempt is started.
const MIN_ATTEMPT: Duration = Duration::from_millis(5);

/// What a tonic stub method answers.
pub(crate) type Reply<Resp> = Result<tonic::Response<Resp>, tonic::Status>;

/// What every attempt of one call shares: its kind, its session (writes) and the
/// message, cloned into each attempt's request.
struct Call<'a, Req> {
    kind: CallKind,
    session: Option<(String, u64)>,
    message: &'a Req,
    /// The W3C trace context every attempt sends (one per call).
    traceparent: String,
}

/// One failed attempt: why, and how long the node asked the caller to wait.
struct Failed {
    error: Error,
    come_back: Option<Duration>,
}

impl Client {
    /// A request carrying the client's token, if it has one.
    pub(crate) fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.inner.token {
            request
                .metadata_mut()
                .insert(AUTHORIZATION_METADATA, token.clone());
        }
        request
    }

    /// Runs one unary call with retries: `stub` wraps a channel in the service's tonic
    /// client and `rpc` is one of its methods, which each attempt calls once.
    pub(crate) async fn call<S, Req, Resp>(
        &self,
        kind: CallKind,
        message: Req,
        stub: fn(Channel) -> S,
        rpc: impl AsyncFn(&mut S, tonic::Request<Req>) -> Reply<Resp>,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
    {
        self.call_in("", kind, message, stub, rpc).await
    }

    /// [`Client::call`] on `ring` (named in the call's span).
    pub(crate) async fn call_in<S, Req, Resp>(
        &self,
        ring: &str,
        kind: CallKind,
        message: Req,
        stub: fn(Channel) -> S,
        rpc: impl AsyncFn(&mut S, tonic::Request<Req>) -> Reply<Resp>,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
    {
        // The lane goes back when the call ends, however it ends.
        let lane = (kind == CallKind::Write).then(|| LaneGuard::take(&self.inner.lanes));
        let call = Call {
            kind,
            session: lane.as_ref().map(|l| l.session(&self.inner.client_id)),
            message: &message,
            traceparent: telemetry::call_traceparent(),
        };
        let span = call_span::<Req>(ring, &self.inner.client_id, &call);
        let outcome = self.attempts(&call, stub, &rpc).instrument(span).await;
        telemetry::ended(kind, &outcome);
        outcome
    }

    /// Runs one call on the node at `endpoint` (`host:port`, known to the client or
    /// not), in a single attempt under its breaker and the attempt's deadline: the
    /// caller asked for that node, so no other is tried.
    pub(crate) async fn call_at<S, Req, Resp>(
        &self,
        endpoint: &str,
        kind: CallKind,
        message: Req,
        stub: fn(Channel) -> S,
        rpc: impl AsyncFn(&mut S, tonic::Request<Req>) -> Reply<Resp>,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
    {
        let inner = &self.inner;
        let address = normalize(endpoint)
            .ok_or_else(|| Error::Config(format!("endpoint: {endpoint:?} is not host:port")))?;
        let peer = match inner.peers.find(&address) {
            Some(peer) => peer,
            None => inner.peers.connect(&address)?.into(),
        };
        let Ok(permit) = peer.breaker.acquire() else {
            return Err(Error::CircuitOpen { endpoints: address });
        };
        let lane = (kind == CallKind::Write).then(|| LaneGuard::take(&inner.lanes));
        let call = Call {
            kind,
            session: lane.as_ref().map(|l| l.session(&inner.client_id)),
            message: &message,
            traceparent: telemetry::call_traceparent(),
        };
        let timeout = inner.attempt_timeout.min(inner.timeout);
        let span = call_span::<Req>("", &inner.client_id, &call);
        telemetry::attempt(kind);
        self.attempt(&call, &peer, permit, timeout, stub, &rpc)
            .instrument(span)
            .await
            .map_err(|failed| failed.error)
    }

    async fn attempts<S, Req, Resp>(
        &self,
        call: &Call<'_, Req>,
        stub: fn(Channel) -> S,
        rpc: &impl AsyncFn(&mut S, tonic::Request<Req>) -> Reply<Resp>,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
    {
        let inner = &self.inner;
        let started = Instant::now();
        let deadline = started + inner.timeout;
        let max_attempts = if call.kind == CallKind::Admin {
            1
        } else {
            inner.retry.max_attempts
        };
        let mut backoff = Backoff::from_entropy(inner.retry.clone());
        let mut attempts = 0;
        let mut avoid: Option<String> = None;
        let mut last: Option<Error> = None;
        loop {
            if deadline.saturating_duration_since(Instant::now()) < MIN_ATTEMPT {
                return Err(match last {
                    Some(last) => Error::RetryExhausted {
                        attempts,
                        last: Box::new(last),
                    },
                    None => Error::Retriable {
                        code: tonic::Code::DeadlineExceeded,
                        message: "the call's deadline is too short for an attempt".into(),
                    },
                });
            }
            let Some((peer, permit)) = inner.peers.pick(call.kind, avoid.as_deref()) else {
                if let Some(wrong @ Error::WrongCluster { .. }) = last {
                    // Every node left is another cluster's.
                    return Err(wrong);
                }
                let endpoints = self.endpoints().join(", ");
                let open = Error::CircuitOpen { endpoints };
                return Err(if attempts == 0 {
                    open
                } else {
                    Error::RetryExhausted {
                        attempts,
                        last: Box::new(open),
                    }
                });
            };
            attempts += 1;
            telemetry::attempt(call.kind);
            if avoid
                .as_deref()
                .is_some_and(|failed| failed != peer.address)
            {
                telemetry::failover(call.kind);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = inner.attempt_timeout.min(remaining);
            let Failed { error, come_back } =
                match self.attempt(call, &peer, permit, timeout, stub, rpc).await {
                    Ok(response) => return Ok(response),
                    Err(failed) => failed,
                };
            if let Error::WrongCluster { .. } = &error {
                // That node is no longer picked: try another at once.
                tracing::warn!(peer = %peer.address, %error, "a node of another cluster");
                if attempts >= max_attempts {
                    return Err(error);
                }
                last = Some(error);
                continue;
            }
            if !error.is_retriable() {
                return Err(error);
            }
            tracing::debug!(peer = %peer.address, attempt = attempts, %error, "attempt failed");
            inner.peers.failed(&peer);
            avoid = Some(peer.address.clone());
            let delay = backoff.delay(attempts).max(come_back.unwrap_or_default());
            if attempts >= max_attempts || Instant::now() + delay + MIN_ATTEMPT >= deadline {
                return Err(Error::RetryExhausted {
                    attempts,
                    last: Box::new(error),
                });
            }
            let next = delay + inner.attempt_timeout.min(deadline - Instant::now());
            if call.kind == CallKind::Write && !within_retry_window(started, Instant::now(), next) {
                return Err(Error::RetryWindowExpired {
                    attempts,
                    last: Box::new(error),
                });
            }
            // Learning the leader may take the backoff's time, or a little more, but
            // never the time the next attempt needs.
            let refresh = (Instant::now() + delay.max(Duration::from_millis(200)))
                .min(deadline.checked_sub(MIN_ATTEMPT).unwrap_or(deadline));
            tokio::join!(tokio::time::sleep(delay), self.refresh_leader(refresh));
            last = Some(error);
        }
    }

    /// One attempt on `peer` within `timeout`; tells the peer's breaker what the outcome
    /// says about the peer.
    async fn attempt<S, Req, Resp>(
        &self,
        call: &Call<'_, Req>,
        peer: &Peer,
        permit: Permit,
        timeout: Duration,
        stub: fn(Channel) -> S,
        rpc: &impl AsyncFn(&mut S, tonic::Request<Req>) -> Reply<Resp>,
    ) -> Result<Resp, Failed>
    where
        Req: Clone,
    {
        let request = self.request(call, timeout);
        let cut_short = timeout < self.inner.attempt_timeout;
        let mut service = stub(peer.channel.clone());
        let outcome = tokio::time::timeout(timeout, rpc(&mut service, request))
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(
                    "the attempt's deadline passed",
                ))
            });
        let status = match outcome {
            Ok(response) => {
                permit.success();
                if let Err(error) = self.inner.peers.check_cluster(peer, response.metadata()) {
                    return Err(Failed {
                        error,
                        come_back: None,
                    });
                }
                if let Some(revision) = response
                    .metadata()
                    .get(REVISION_METADATA)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    self.inner
                        .last_revision
                        .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
                }
                return Ok(response.into_inner());
            }
            Err(status) => status,
        };
        if let Err(error) = self.inner.peers.check_cluster(peer, status.metadata()) {
            drop(permit);
            return Err(Failed {
                error,
                come_back: None,
            });
        }
        // A node that refused for its rate limit says when to come back.
        let come_back = status
            .metadata()
            .get(RETRY_AFTER_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| Duration::from_millis(ms.min(MAX_RETRY_AFTER_MS)));
        let cluster_wide = status.metadata().contains_key(CLUSTER_UNAVAILABLE_METADATA);
        let error = Error::from(status);
        let code = error.code().unwrap_or(tonic::Code::Unknown);
        // An attempt the call's own deadline cut short says little about the peer, and
        // a node that answers "no quorum" is up: the cluster is electing or cut off.
        let peer_at_fault = counts_against_peer(code)
            && !cluster_wide
            && !(cut_short && code == tonic::Code::DeadlineExceeded);
        if peer_at_fault {
            permit.failure();
        } else {
            drop(permit);
        }
        Err(Failed { error, come_back })
    }

    /// The attempt's request: the message with its deadline, session, consistency and
    /// token.
    fn request<Req: Clone>(&self, call: &Call<'_, Req>, timeout: Duration) -> tonic::Request<Req> {
        let mut request = self.authorized(call.message.clone());
        request.set_timeout(timeout);
        let metadata = request.metadata_mut();
        if let Some((client_id, seq)) = &call.session {
            if let Ok(value) = MetadataValue::try_from(client_id.as_str()) {
                metadata.insert(CLIENT_ID_METADATA, value);
            }
            metadata.insert(SEQ_METADATA, MetadataValue::from(*seq));
        }
        if call.kind == CallKind::StaleRead {
            metadata.insert(CONSISTENCY_METADATA, MetadataValue::from_static("stale"));
        }
        if let Ok(value) = MetadataValue::try_from(call.traceparent.as_str()) {
            metadata.insert(TRACEPARENT_METADATA, value);
        }
        request
    }
}

/// The span of one call: see [`crate::telemetry`].
fn call_span<Req>(ring: &str, client_id: &str, call: &Call<'_, Req>) -> tracing::Span {
    let request = std::any::type_name::<Req>();
    let rpc = request.rsplit("::").next().unwrap_or(request);
    tracing::info_span!(
        "clockwise_call",
        rpc,
        kind = telemetry::kind(call.kind),
        ring,
        client_id,
        seq = call.session.as_ref().map(|(_, seq)| *seq),
        traceparent = %call.traceparent,
    )
}

/// A request of a ring service: every one names its ring and carries a timestamp.
pub(crate) trait Scoped {
    fn scope(&mut self, ring: &str, timestamp: i64);
}

/// Implements [`Scoped`] for request messages with `ring` and `timestamp` fields.
macro_rules! scoped {
    ($($request:ty),* $(,)?) => {
        $(impl $crate::call::Scoped for $request {
            fn scope(&mut self, ring: &str, timestamp: i64) {
                ring.clone_into(&mut self.ring);
                self.timestamp = timestamp;
            }
        })*
    };
}
pub(crate) use scoped;

/// What a ring handle ([`crate::HashRing`], [`crate::ChatRouter`]) adds to the call
/// path: its ring and timestamp on every request, so no typed method can forget them,
/// and how its reads are served.
#[derive(Clone)]
pub(crate) struct Namespace<S> {
    pub(crate) client: Client,
    stub: fn(Channel) -> S,
    pub(crate) ring: String,
    /// Sent with every call (ms; 0 = the leader's clock).
    pub(crate) timestamp: i64,
    /// Reads of any replica's state instead of linearizable ones.
    pub(crate) stale: bool,
}

impl<S> Namespace<S> {
    pub(crate) fn new(client: Client, ring: String, stub: fn(Channel) -> S) -> Self {
        Namespace {
            client,
            stub,
            ring,
            timestamp: 0,
            stale: false,
        }
    }

    /// A replicated write, applied once however often it is retried.
    pub(crate) async fn write<Req, Resp>(
        &self,
        request: Req,
        rpc: impl AsyncFn(&mut S, tonic::Request<Req>) -> Reply<Resp>,
    ) -> Result<Resp, Error>
    where
        Req: Scoped + Clone,
    {
        self.call(CallKind::Write, request, rpc).await
    }

    /// A read: linearizable, or of any replica after `stale_reads`.
    pub(crate) async fn read<Req, Resp>(
        &self,
        request: Req,
        rpc: impl AsyncFn(&mut S, tonic::Request<Req>) -> Reply<Resp>,
    ) -> Result<Resp, Error>
    where
        Req: Scoped + Clone,
    {
        let kind = if self.stale {
            CallKind::StaleRead
        } else {
            CallKind::Read
        };
        self.call(kind, request, rpc).await
    }

    async fn call<Req, Resp>(
        &self,
        kind: CallKind,
        mut request: Req,
        rpc: impl AsyncFn(&mut S, tonic::Request<Req>) -> Reply<Resp>,
    ) -> Result<Resp, Error>
    where
        Req: Scoped + Clone,
    {
        request.scope(&self.ring, self.timestamp);
        let ring = self.ring.clone();
        self.client
            .call_in(&ring, kind, request, self.stub, rpc)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::{within_retry_window, WRITE_RETRY_WINDOW};
    use crate::{Client, PositionSpace};
    use std::time::{Duration, Instant};

    #[test]
    fn a_write_is_retried_only_while_the_whole_attempt_fits_the_window() {
        let first = Instant::now();
        let attempt = Duration::from_secs(5);
        assert!(within_retry_window(first, first, attempt));
        let late = first + WRITE_RETRY_WINDOW - attempt;
        assert!(
            within_retry_window(first, late, attempt),
            "ends at the window"
        );
        assert!(!within_retry_window(
            first,
            late + Duration::from_millis(1),
            attempt
        ));
        // The nodes' window is 5 minutes: the SDK's must leave room below it.
        assert!(WRITE_RETRY_WINDOW < Duration::from_secs(5 * 60));
    }

    fn spawnable<T: Send + 'static>(_: T) {}

    /// Callers spawn typed calls on a multi-threaded runtime: the stub methods passed
    /// through the generic path must leave their futures `Send`.
    #[tokio::test]
    async fn typed_calls_can_be_spawned() {
        let client = Client::builder()
            .endpoints(["127.0.0.1:1"])
            .attempt_timeout(std::time::Duration::from_millis(50))
            .build()
            .await
            .unwrap();
        let (ring, router, cluster) = (
            client.hash_ring("r"),
            client.chat_router("r"),
            client.cluster(),
        );
        spawnable(async move { ring.configure_ring(PositionSpace::U64).await });
        spawnable(async move { router.get_server_count().await });
        spawnable(async move { cluster.status().await });
    }
}
