//! What a node's service uses: propose anywhere (a follower forwards to the leader),
//! read linearizably (ReadIndex), change the membership, move leadership, each
//! within a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::future::Future;

use clockwise_proto::raft::v1 as pb;
use clockwise_proto::raft::v1::ForwardRequest;

use crate::driver::{MembershipChange, ProposeError, RaftHandle, RaftStatus};
use crate::transport::{GrpcTransport, PeerClient, LEADER_METADATA, OUTCOME_UNKNOWN_METADATA};

/// Marks an UNAVAILABLE that says the cluster, not the answering node, could not serve
/// the call ([`ReplicaError::ClusterUnavailable`]): a client's circuit breaker should not
/// count it against that node.
pub const CLUSTER_UNAVAILABLE_METADATA: &str = "x-clockwise-cluster-unavailable";

/// Pause between attempts while no leader is known (an election takes a few ticks).
const NO_LEADER_RETRY: Duration = Duration::from_millis(20);

/// Why a replicated call has no answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReplicaError {
    /// This node cannot serve it (it is stopping, or a forwarded write failed at the
    /// leader with its outcome unknown).
    #[error("{0}")]
    Unavailable(String),
    /// The cluster could not serve it within the deadline: no leader, no quorum, a
    /// leader that did not answer in time, or leadership that moved under a write (the
    /// message says when a write's outcome is unknown). This node itself answered:
    /// callers should not count it against it.
    #[error("{0}")]
    ClusterUnavailable(String),
    /// The leader's proposal queue is full.
    #[error("{0}")]
    Busy(String),
    /// The request cannot succeed as asked (e.g. removing a node that is not a member).
    #[error("{0}")]
    Refused(String),
    /// The leader's state machine refused the command as no client could have sent it;
    /// the message names the field.
    #[error("{0}")]
    Invalid(String),
}

pub struct Replica {
    handle: RaftHandle,
    transport: Arc<GrpcTransport>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Clients of leaders' transports for forwarding, by id, with the address each
    /// dials.
    leaders: Mutex<HashMap<u64, (String, PeerClient)>>,
}

impl Replica {
    pub fn new(handle: RaftHandle, thread: JoinHandle<()>, transport: Arc<GrpcTransport>) -> Self {
        Replica {
            handle,
            transport,
            thread: Mutex::new(Some(thread)),
            leaders: Mutex::new(HashMap::new()),
        }
    }

    /// The driver handle (for the peer transport service).
    pub fn handle(&self) -> RaftHandle {
        self.handle.clone()
    }

    pub fn status(&self) -> RaftStatus {
        self.handle.status()
    }

    pub fn transport(&self) -> &Arc<GrpcTransport> {
        &self.transport
    }

    /// Proposes `data` and answers the state machine's result once it is applied on
    /// the leader. A follower forwards to the leader; with no leader it retries until
    /// `timeout`.
    pub async fn propose(&self, data: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, ReplicaError> {
        self.on_leader(
            timeout,
            || self.handle.propose(data.clone()),
            |mut client, remaining| {
                let mut request = tonic::Request::new(ForwardRequest {
                    command: data.clone(),
                    client_id: String::new(),
                    seq: 0,
                    from: self.transport.id(),
                });
                request.set_timeout(remaining);
                crate::trace_context::propagate(&mut request);
                async move { Ok(client.forward(request).await?.into_inner().result) }
            },
        )
        .await
    }

    /// Adds a learner or removes a member (through the leader); answers once the change
    /// is applied on this node too.
    pub async fn change_membership(
        &self,
        change: MembershipChange,
        timeout: Duration,
    ) -> Result<(), ReplicaError> {
        let deadline = Instant::now() + timeout;
        let (kind, id, address) = match &change {
            MembershipChange::AddLearner { id, address } => {
                (pb::MembershipChange::AddLearner, *id, address.encode())
            }
            MembershipChange::Remove { id } => (pb::MembershipChange::Remove, *id, String::new()),
        };
        let index = self
            .on_leader(
                timeout,
                || self.handle.change_membership(change.clone()),
                |mut client, remaining| {
                    let mut request = tonic::Request::new(pb::MembershipRequest {
                        change: kind as i32,
                        id,
                        address: address.clone(),
                        from: self.transport.id(),
                    });
                    request.set_timeout(remaining);
                    crate::trace_context::propagate(&mut request);
                    async move {
                        Ok(client
                            .change_membership(request)
                            .await?
                            .into_inner()
                            .applied_index)
                    }
                },
            )
            .await?;
        self.wait_status(deadline, |status| status.applied_index >= index)
            .await
            .map(|_| ())
            .map_err(|()| {
                ReplicaError::Unavailable(
                    "the change is applied on the leader, but not yet on this node".into(),
                )
            })
    }

    /// Moves leadership to `target` and waits until this node sees it lead.
    pub async fn transfer_leader(
        &self,
        target: u64,
        timeout: Duration,
    ) -> Result<u64, ReplicaError> {
        let deadline = Instant::now() + timeout;
        self.on_leader(
            timeout,
            || self.handle.transfer_leader(target),
            |mut client, remaining| {
                let mut request = tonic::Request::new(pb::MembershipRequest {
                    change: pb::MembershipChange::TransferLeader as i32,
                    id: target,
                    address: String::new(),
                    from: self.transport.id(),
                });
                request.set_timeout(remaining);
                async move { client.change_membership(request).await.map(|_| ()) }
            },
        )
        .await?;
        self.wait_status(deadline, |status| status.leader_id == target)
            .await
            .map(|status| status.leader_id)
            .map_err(|()| {
                ReplicaError::Unavailable(format!(
                    "node {target} did not take over leadership within the deadline"
                ))
            })
    }

    /// A backup of this node's state as of its applied index: the backup file's body
    /// (see [`crate::backup`]), its index, and the state machine's bytes.
    pub async fn backup(&self, timeout: Duration) -> Result<Backup, ReplicaError> {
        let snapshot = tokio::time::timeout(timeout, self.handle.snapshot())
            .await
            .map_err(|_| ReplicaError::Unavailable("no snapshot within the deadline".into()))?
            .map_err(|e| match e {
                ProposeError::Busy => ReplicaError::Busy(e.to_string()),
                ProposeError::Refused(why) => ReplicaError::Refused(why),
                e => ReplicaError::Unavailable(e.to_string()),
            })?;
        let meta = snapshot.get_metadata();
        let state = crate::snapshot::SnapshotData::decode(&snapshot.data)
            .map_err(|e| ReplicaError::Refused(format!("snapshot: {e}")))?
            .state;
        Ok(Backup {
            index: meta.index,
            term: meta.term,
            body: crate::backup::encode_body(&snapshot),
            state,
        })
    }

    /// Waits until the status satisfies `done`, or `deadline`.
    async fn wait_status(
        &self,
        deadline: Instant,
        done: impl Fn(&RaftStatus) -> bool,
    ) -> Result<RaftStatus, ()> {
        let mut status = self.handle.watch_status();
        let waited = tokio::time::timeout_at(deadline.into(), async {
            loop {
                {
                    let now = status.borrow_and_update();
                    if done(&now) {
                        return Ok(now.clone());
                    }
                }
                if status.changed().await.is_err() {
                    return Err(());
                }
            }
        })
        .await;
        waited.unwrap_or(Err(()))
    }

    /// Waits until a read of local state is linearizable, within `timeout`.
    pub async fn read_index(&self, timeout: Duration) -> Result<(), ReplicaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.handle.read_index()).await {
                // No leader yet, or one that cannot serve reads yet: ask again shortly.
                Ok(Err(ProposeError::NotLeader { .. } | ProposeError::Conflict(_))) => {}
                Ok(Ok(())) => return Ok(()),
                Ok(Err(ProposeError::Busy)) => {
                    return Err(ReplicaError::Busy(
                        "the raft queue is full; retry later".into(),
                    ))
                }
                // A leader change drops outstanding reads: ask again.
                Ok(Err(ProposeError::Unknown)) => {}
                Ok(Err(ProposeError::Stopped)) => {
                    return Err(ReplicaError::Unavailable("the node is stopping".into()))
                }
                Ok(Err(ProposeError::Refused(why) | ProposeError::Invalid(why))) => {
                    return Err(ReplicaError::Refused(why))
                }
                Err(_) => {
                    return Err(ReplicaError::ClusterUnavailable(
                        "no quorum confirmed the read within the deadline".into(),
                    ))
                }
            }
            if Instant::now() + NO_LEADER_RETRY >= deadline {
                return Err(ReplicaError::ClusterUnavailable(
                    "no quorum within the deadline".into(),
                ));
            }
            tokio::time::sleep(NO_LEADER_RETRY).await;
        }
    }

    /// Runs a request on the leader: `local` when this node leads, `remote` against the
    /// leader's transport otherwise; retries while no leader is known, the leader moves,
    /// or a conflicting membership change is being applied, until `timeout`.
    async fn on_leader<T, Local, LocalFuture, Remote, RemoteFuture>(
        &self,
        timeout: Duration,
        local: Local,
        remote: Remote,
    ) -> Result<T, ReplicaError>
    where
        Local: Fn() -> LocalFuture,
        LocalFuture: Future<Output = Result<T, ProposeError>>,
        Remote: Fn(PeerClient, Duration) -> RemoteFuture,
        RemoteFuture: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(attempt) = tokio::time::timeout(remaining, local()).await else {
                return Err(ReplicaError::ClusterUnavailable(
                    "no quorum applied the request within the deadline; it may or may not be \
                     applied"
                        .into(),
                ));
            };
            match attempt {
                Ok(result) => return Ok(result),
                Err(ProposeError::NotLeader {
                    leader: Some(leader),
                }) => {
                    if let Some(client) = self.leader_client(leader) {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        match remote(client, remaining).await {
                            Ok(result) => return Ok(result),
                            Err(status) => {
                                if let Some(error) = forwarded_error(&status) {
                                    return Err(error);
                                }
                            }
                        }
                    }
                }
                Err(ProposeError::NotLeader { leader: None } | ProposeError::Conflict(_)) => {}
                Err(ProposeError::Busy) => {
                    return Err(ReplicaError::Busy(
                        "the proposal queue is full; retry later".into(),
                    ))
                }
                // Leadership moved under the write: the cluster's doing, not this node's.
                Err(e @ ProposeError::Unknown) => {
                    return Err(ReplicaError::ClusterUnavailable(e.to_string()))
                }
                Err(e @ ProposeError::Stopped) => {
                    return Err(ReplicaError::Unavailable(e.to_string()))
                }
                Err(ProposeError::Refused(why)) => return Err(ReplicaError::Refused(why)),
                Err(ProposeError::Invalid(why)) => return Err(ReplicaError::Invalid(why)),
            }
            if Instant::now() + NO_LEADER_RETRY >= deadline {
                return Err(ReplicaError::ClusterUnavailable(
                    "no leader reachable within the deadline (is a quorum of nodes up?)".into(),
                ));
            }
            tokio::time::sleep(NO_LEADER_RETRY).await;
        }
    }

    /// A client of the leader's transport at its current address. Cached by id and
    /// address: a member removed and added back at a new address gets a new client
    /// (issue #17; an id-only cache sent every forwarded write to the old address).
    fn leader_client(&self, leader: u64) -> Option<PeerClient> {
        let address = self.transport.address(leader)?;
        let mut clients = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached, client)) = clients.get(&leader) {
            if *cached == address {
                return Some(client.clone());
            }
        }
        let access = self.transport.access();
        let endpoint = access.endpoint(&address).ok()?;
        let client = access.client(endpoint.connect_timeout(Duration::from_secs(1)));
        clients.insert(leader, (address, client.clone()));
        Some(client)
    }

    /// Stops the driver and waits for its thread (blocking: call from a blocking context).
    pub fn stop(&self) {
        self.handle.stop();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// A node's state for a backup file.
pub struct Backup {
    /// The log index the state is as of.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// The backup file's body.
    pub body: Vec<u8>,
    /// The state machine's own encoding (for its digest).
    pub state: Vec<u8>,
}

/// What a failed call to the leader means here: `None` to try again (the request
/// never reached raft there: "not the leader", a membership conflict, or no connection
/// was made), or the error to answer. Any other failure may have come after the leader
/// proposed the request, so its outcome is unknown and it is not sent again; the
/// leader marks the failures it knows to be such ([`OUTCOME_UNKNOWN_METADATA`]), and
/// their message is answered as it is.
fn forwarded_error(status: &tonic::Status) -> Option<ReplicaError> {
    let message = status.message().to_owned();
    match status.code() {
        // The leader's word that it may have applied it outranks any other reading.
        _ if status.metadata().contains_key(OUTCOME_UNKNOWN_METADATA) => {
            Some(ReplicaError::Unavailable(message))
        }
        tonic::Code::FailedPrecondition if status.metadata().contains_key(LEADER_METADATA) => None,
        tonic::Code::Aborted => None,
        tonic::Code::Unavailable if never_connected(status) => None,
        tonic::Code::FailedPrecondition => Some(ReplicaError::Refused(message)),
        tonic::Code::InvalidArgument => Some(ReplicaError::Invalid(message)),
        tonic::Code::ResourceExhausted => Some(ReplicaError::Busy(message)),
        // The forwarded call ran out of this node's budget: the leader is slow or cut
        // off from its quorum; this node is fine.
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            Some(ReplicaError::ClusterUnavailable(format!(
                "the leader did not answer within the deadline ({message}); the request \
                 may or may not be applied"
            )))
        }
        _ => Some(ReplicaError::Unavailable(format!(
            "the leader did not answer ({:?}: {message}); the request may or may not be applied",
            status.code()
        ))),
    }
}

/// Whether the call failed while connecting, before anything was sent.
fn never_connected(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    let mut text = status.message().to_ascii_lowercase();
    while let Some(error) = source {
        text.push(' ');
        text.push_str(&error.to_string().to_ascii_lowercase());
        source = error.source();
    }
    // "connection reset" or "closed" may come after the request was sent: not these.
    [
        "connect error",
        "trying to connect",
        "connection refused",
        "dns error",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::propose_status;

    fn marked(mut status: tonic::Status) -> tonic::Status {
        status.metadata_mut().insert(
            OUTCOME_UNKNOWN_METADATA,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        status
    }

    #[test]
    fn an_unknown_outcome_is_read_from_the_marker_not_the_message() {
        // The leader's refusal carries the marker and keeps its text; it is answered as is.
        let unknown = propose_status(ProposeError::Unknown);
        assert_eq!(
            unknown.message(),
            "leadership changed; the write may or may not be applied"
        );
        assert_eq!(
            forwarded_error(&unknown),
            Some(ReplicaError::Unavailable(unknown.message().into()))
        );
        // Marked, whatever the text says.
        assert_eq!(
            forwarded_error(&marked(tonic::Status::unavailable("leadership moved"))),
            Some(ReplicaError::Unavailable("leadership moved".into()))
        );
        // The words without the marker: an unclassified failure, wrapped as such.
        let words = tonic::Status::unavailable("the write may or may not be applied");
        assert_eq!(
            forwarded_error(&words),
            Some(ReplicaError::Unavailable(
                "the leader did not answer (Unavailable: the write may or may not be \
                 applied); the request may or may not be applied"
                    .into()
            ))
        );
        // No other refusal is marked.
        for error in [
            ProposeError::NotLeader { leader: Some(2) },
            ProposeError::Busy,
            ProposeError::Stopped,
            ProposeError::Refused("no".into()),
            ProposeError::Conflict("later".into()),
        ] {
            let status = propose_status(error.clone());
            assert!(
                !status.metadata().contains_key(OUTCOME_UNKNOWN_METADATA),
                "{error:?}"
            );
        }
    }
}
