//! What a node's service uses: propose anywhere (a follower forwards to the leader),
//! read linearizably (ReadIndex), each within a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clockwise_proto::raft::v1::raft_transport_client::RaftTransportClient;
use clockwise_proto::raft::v1::ForwardRequest;
use tonic::transport::{Channel, Endpoint};

use crate::driver::{ProposeError, RaftHandle, RaftStatus};
use crate::transport::{GrpcTransport, LEADER_METADATA};

/// Pause between attempts while no leader is known (an election takes a few ticks).
const NO_LEADER_RETRY: Duration = Duration::from_millis(20);

/// Why a replicated call has no answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReplicaError {
    /// No quorum or no leader within the deadline, or the outcome is unknown.
    #[error("{0}")]
    Unavailable(String),
    /// The leader's proposal queue is full.
    #[error("{0}")]
    Busy(String),
    /// The request cannot succeed as asked (e.g. removing a node that is not a member).
    #[error("{0}")]
    Refused(String),
}

pub struct Replica {
    handle: RaftHandle,
    transport: Arc<GrpcTransport>,
    thread: Mutex<Option<JoinHandle<()>>>,
    leaders: Mutex<HashMap<u64, RaftTransportClient<Channel>>>,
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

    pub fn transport(&self) -> &GrpcTransport {
        &self.transport
    }

    /// Proposes `data` and answers the state machine's result once it is applied on
    /// the leader. A follower forwards to the leader; with no leader it retries until
    /// `timeout`.
    pub async fn propose(&self, data: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, ReplicaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let proposed = tokio::time::timeout(remaining, self.handle.propose(data.clone())).await;
            let Ok(proposed) = proposed else {
                return Err(ReplicaError::Unavailable(
                    "no quorum applied the write within the deadline; it may or may not be applied"
                        .into(),
                ));
            };
            let leader = match proposed {
                Ok(result) => return Ok(result),
                Err(ProposeError::NotLeader { leader }) => leader,
                Err(ProposeError::Busy) => {
                    return Err(ReplicaError::Busy(
                        "the proposal queue is full; retry later".into(),
                    ))
                }
                Err(e @ (ProposeError::Unknown | ProposeError::Stopped)) => {
                    return Err(ReplicaError::Unavailable(e.to_string()))
                }
                Err(ProposeError::Refused(why)) => return Err(ReplicaError::Refused(why)),
            };
            if let Some(leader) = leader {
                match self.forward(leader, &data, deadline).await {
                    Ok(result) => return Ok(result),
                    Err(Forwarded::Refused(e)) => return Err(e),
                    Err(Forwarded::Retry) => {}
                }
            }
            if Instant::now() + NO_LEADER_RETRY >= deadline {
                return Err(ReplicaError::Unavailable(
                    "no leader reachable within the deadline (is a quorum of nodes up?)".into(),
                ));
            }
            tokio::time::sleep(NO_LEADER_RETRY).await;
        }
    }

    /// Waits until a read of local state is linearizable, within `timeout`.
    pub async fn read_index(&self, timeout: Duration) -> Result<(), ReplicaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.handle.read_index()).await {
                // No leader yet, or one that cannot serve reads yet: ask again shortly.
                Ok(Err(ProposeError::NotLeader { .. })) => {}
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
                Ok(Err(ProposeError::Refused(why))) => return Err(ReplicaError::Refused(why)),
                Err(_) => {
                    return Err(ReplicaError::Unavailable(
                        "no quorum confirmed the read within the deadline".into(),
                    ))
                }
            }
            if Instant::now() + NO_LEADER_RETRY >= deadline {
                return Err(ReplicaError::Unavailable(
                    "no quorum within the deadline".into(),
                ));
            }
            tokio::time::sleep(NO_LEADER_RETRY).await;
        }
    }

    async fn forward(
        &self,
        leader: u64,
        data: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, Forwarded> {
        let Some(mut client) = self.leader_client(leader) else {
            return Err(Forwarded::Retry);
        };
        let mut request = tonic::Request::new(ForwardRequest {
            command: data.to_vec(),
            client_id: String::new(),
            seq: 0,
        });
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        match client.forward(request).await {
            Ok(response) => Ok(response.into_inner().result),
            Err(status) => match status.code() {
                tonic::Code::FailedPrecondition
                    if status.metadata().contains_key(LEADER_METADATA) =>
                {
                    Err(Forwarded::Retry)
                }
                tonic::Code::ResourceExhausted => Err(Forwarded::Refused(ReplicaError::Busy(
                    status.message().to_owned(),
                ))),
                tonic::Code::Unavailable if status.message().contains("may or may not") => Err(
                    Forwarded::Refused(ReplicaError::Unavailable(status.message().to_owned())),
                ),
                _ => Err(Forwarded::Retry),
            },
        }
    }

    fn leader_client(&self, leader: u64) -> Option<RaftTransportClient<Channel>> {
        let mut clients = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&leader) {
            return Some(client.clone());
        }
        let address = self.transport.address(leader)?;
        let endpoint = Endpoint::from_shared(format!("http://{address}")).ok()?;
        let client = RaftTransportClient::new(
            endpoint
                .connect_timeout(Duration::from_secs(1))
                .connect_lazy(),
        );
        clients.insert(leader, client.clone());
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

enum Forwarded {
    /// Try again (leader moved, unreachable, or not elected yet).
    Retry,
    Refused(ReplicaError),
}
