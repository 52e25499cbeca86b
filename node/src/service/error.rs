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
    /// No quorum or leader within the deadline, or a write's outcome is unknown.
    #[error("{0}")]
    Unavailable(String),
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
            ServiceError::Unavailable(_) => Code::Unavailable,
            ServiceError::Internal(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}

impl From<clockwise_cluster::ReplicaError> for ServiceError {
    fn from(err: clockwise_cluster::ReplicaError) -> Self {
        match err {
            clockwise_cluster::ReplicaError::Unavailable(why) => ServiceError::Unavailable(why),
            clockwise_cluster::ReplicaError::Busy(why) => ServiceError::ResourceExhausted(why),
            clockwise_cluster::ReplicaError::Refused(why) => ServiceError::FailedPrecondition(why),
        }
    }
}
