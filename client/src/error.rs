//! What a call can fail with, told apart the way a caller must react to it.

use tonic::Code;

/// A failed call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request was malformed (`INVALID_ARGUMENT`); the message starts with the field.
    /// Retrying cannot help.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// The node's reason.
        message: String,
    },
    /// The request cannot succeed in the current state (`FAILED_PRECONDITION`), such as
    /// configuring a ring that is in use or removing a member that does not exist.
    #[error("failed precondition: {message}")]
    FailedPrecondition {
        /// The node's reason.
        message: String,
    },
    /// Every attempt failed with an error worth retrying, or the overall deadline ran
    /// out between them. `last` is the final attempt's error. A write may or may not have
    /// been applied: within the call every attempt carried the same sequence number, so
    /// it was applied at most once, but calling again is a new write (a store refreshes
    /// the key again, a backup saves another copy); check the state first where that
    /// matters.
    #[error("gave up after {attempts} attempt(s): {last}")]
    RetryExhausted {
        /// Attempts made.
        attempts: u32,
        /// Why the last one failed.
        last: Box<Error>,
    },
    /// A write failed and retrying it now could apply it twice: the nodes remember a
    /// write's outcome for 5 minutes after its first application, and another attempt
    /// would end past that window (the SDK stops at 4 minutes after the first attempt).
    /// It may or may not have been applied; check the state before writing again.
    #[error("gave up after {attempts} attempt(s): a retry now would fall outside the 5-minute window in which a write applies at most once ({last})")]
    RetryWindowExpired {
        /// Attempts made.
        attempts: u32,
        /// Why the last one failed.
        last: Box<Error>,
    },
    /// Every endpoint's circuit breaker is open: no call was made.
    #[error("circuit open for every endpoint ({endpoints})")]
    CircuitOpen {
        /// The endpoints, comma-separated.
        endpoints: String,
    },
    /// A retriable failure of one attempt: `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
    /// `RESOURCE_EXHAUSTED`, `ABORTED`, or a connection error. Reported alone only
    /// when retries are off.
    #[error("{code:?}: {message}")]
    Retriable {
        /// The status code (`UNAVAILABLE` for a connection error).
        code: Code,
        /// The reason given.
        message: String,
    },
    /// Any other status from a node (`INTERNAL`, `UNIMPLEMENTED`, …).
    #[error("{code:?}: {message}")]
    Status {
        /// The status code.
        code: Code,
        /// The node's reason.
        message: String,
    },
    /// A node answered as a member of another cluster than the one this client pinned
    /// (the first cluster id it saw): its answer was dropped and it is not called
    /// again. A wiped node that founded a cluster of its own, or an endpoint list that
    /// mixes clusters.
    #[error("{endpoint} belongs to cluster {found}, not to cluster {expected}")]
    WrongCluster {
        /// The cluster id this client pinned.
        expected: String,
        /// The id the node answered with.
        found: String,
        /// The node (`host:port`).
        endpoint: String,
    },
    /// A `Watch` message that does not describe a topology or a change (no event, an
    /// unknown position space): the node's stream cannot be followed as sent.
    #[error("malformed watch message: {message}")]
    MalformedWatch {
        /// What was wrong with it.
        message: String,
    },
    /// A [`crate::RingView`] knows its topology has diverged from the server's (a change
    /// that did not apply, a malformed message): it refuses to route until it has
    /// resynced from a whole topology, which its task is fetching.
    #[error("ring view of {ring:?} is broken: {reason}")]
    ViewBroken {
        /// The ring viewed.
        ring: String,
        /// Why it is broken.
        reason: String,
    },
    /// [`crate::RingView::wait_for`] ran out of time before the view reached the
    /// revision.
    #[error("ring view of {ring:?} reached revision {reached}, not {revision}, within {waited:?}")]
    ViewTimeout {
        /// The ring viewed.
        ring: String,
        /// The revision waited for.
        revision: u64,
        /// The revision the view was at.
        reached: u64,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// The client was configured wrongly (no endpoints, a malformed address).
    #[error("client configuration: {0}")]
    Config(String),
    /// A setting of the builder that cannot work (a retry policy of zero attempts, a
    /// breaker that opens after zero failures or lets no probe through, a zero timeout),
    /// refused by [`crate::ClientBuilder::build`] before any call.
    #[error("client configuration: {setting}: {reason}")]
    InvalidConfig {
        /// The setting, as the builder names it (`retry.max_attempts`, `timeout`, …).
        setting: &'static str,
        /// Why it cannot work.
        reason: &'static str,
    },
}

impl Error {
    /// Whether trying the same call again later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::Retriable { .. } | Error::RetryExhausted { .. } | Error::CircuitOpen { .. }
        )
    }

    /// The gRPC code behind the error, when there is one (the last attempt's, for
    /// [`Error::RetryExhausted`]).
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::InvalidArgument { .. } => Some(Code::InvalidArgument),
            Error::FailedPrecondition { .. } => Some(Code::FailedPrecondition),
            Error::RetryExhausted { last, .. } | Error::RetryWindowExpired { last, .. } => {
                last.code()
            }
            Error::CircuitOpen { .. } => Some(Code::Unavailable),
            Error::Retriable { code, .. } | Error::Status { code, .. } => Some(*code),
            Error::ViewTimeout { .. } => Some(Code::DeadlineExceeded),
            Error::Config(_)
            | Error::InvalidConfig { .. }
            | Error::WrongCluster { .. }
            | Error::MalformedWatch { .. }
            | Error::ViewBroken { .. } => None,
        }
    }
}

/// Whether a status is worth another attempt: availability problems only.
pub(crate) fn is_retriable_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
    )
}

/// Whether a status counts against the peer's circuit breaker.
pub(crate) fn counts_against_peer(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
    )
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => Error::InvalidArgument { message },
            Code::FailedPrecondition => Error::FailedPrecondition { message },
            code if is_retriable_code(code) => Error::Retriable { code, message },
            // tonic reports a refused connection as `Unknown` with a transport error as
            // its source, and a connection that died mid-call (a node killed) as
            // `Cancelled`: this client never cancels its own calls, so both mean the node
            // went away, which is retriable.
            Code::Unknown if is_transport_error(&status) => Error::Retriable {
                code: Code::Unavailable,
                message,
            },
            Code::Cancelled => Error::Retriable {
                code: Code::Unavailable,
                message: format!("the connection was lost mid-call ({message})"),
            },
            code => Error::Status { code, message },
        }
    }
}

fn is_transport_error(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    let mut source = status.source();
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() || error.is::<std::io::Error>() {
            return true;
        }
        source = error.source();
    }
    status.message().contains("transport error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_caller_must_do() {
        let invalid = Error::from(tonic::Status::invalid_argument("key: must not be empty"));
        assert!(matches!(invalid, Error::InvalidArgument { .. }));
        assert!(!invalid.is_retriable());
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
        ] {
            let e = Error::from(tonic::Status::new(code, "x"));
            assert!(e.is_retriable(), "{code:?}");
            assert_eq!(e.code(), Some(code));
        }
        let lost = Error::from(tonic::Status::cancelled("operation was canceled"));
        assert!(lost.is_retriable(), "a connection lost mid-call");
        assert_eq!(lost.code(), Some(Code::Unavailable));
        for code in [
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::NotFound,
            Code::Internal,
        ] {
            assert!(
                !Error::from(tonic::Status::new(code, "x")).is_retriable(),
                "{code:?}"
            );
        }
        assert!(counts_against_peer(Code::Unavailable));
        assert!(!counts_against_peer(Code::InvalidArgument));
        assert!(
            !counts_against_peer(Code::Aborted),
            "a conflict is not the peer's fault"
        );
    }
}
