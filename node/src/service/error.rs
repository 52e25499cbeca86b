//! The service's errors and their one mapping to gRPC statuses.

use tonic::{Code, Status};

/// Why a request was not served. What the drill defines as a result (false, None, 0,
/// -1) is never an error; these are refusals.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Malformed input; `field` names the request field (e.g. `operations[3].key`).
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unimplemented(String),
    /// This node cannot serve the call (it is stopping, or a forwarded write failed at
    /// the leader with its outcome unknown).
    #[error("{0}")]
    Unavailable(String),
    /// The cluster could not serve the call within its deadline: no leader, no quorum, a
    /// leader that did not answer in time, or leadership that moved under a write (the
    /// message says when a write's outcome is unknown). UNAVAILABLE, marked so that
    /// clients do not blame this node.
    #[error("{0}")]
    ClusterUnavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ServiceError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        let code = match &err {
            ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
            ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServiceError::ResourceExhausted(_) => Code::ResourceExhausted,
            ServiceError::Unimplemented(_) => Code::Unimplemented,
            ServiceError::Unavailable(_) | ServiceError::ClusterUnavailable(_) => Code::Unavailable,
            ServiceError::Internal(_) => Code::Internal,
        };
        let mut status = Status::new(code, err.to_string());
        if let ServiceError::ClusterUnavailable(_) = err {
            status.metadata_mut().insert(
                clockwise_cluster::CLUSTER_UNAVAILABLE_METADATA,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        status
    }
}

impl From<clockwise_cluster::ReplicaError> for ServiceError {
    fn from(err: clockwise_cluster::ReplicaError) -> Self {
        match err {
            clockwise_cluster::ReplicaError::Unavailable(why) => ServiceError::Unavailable(why),
            clockwise_cluster::ReplicaError::ClusterUnavailable(why) => {
                ServiceError::ClusterUnavailable(why)
            }
            clockwise_cluster::ReplicaError::Busy(why) => ServiceError::ResourceExhausted(why),
            clockwise_cluster::ReplicaError::Refused(why) => ServiceError::FailedPrecondition(why),
            // The leader's word, "FIELD: reason", kept as it named it.
            clockwise_cluster::ReplicaError::Invalid(why) => match why.split_once(": ") {
                Some((field, reason)) => ServiceError::invalid(field, reason),
                None => ServiceError::invalid("command", why),
            },
        }
    }
}
