//! Input validation: every check names the field it refuses.
//!
//! Limits are part of the API (docs/api.md lists them).

use clockwise_proto::common::v1::{PositionSpace as PbSpace, SyncMode};
use sha2::{Digest, Sha256};

use super::auth::bearer_token;
use super::error::ServiceError;
use crate::machine::codec::Session;
use clockwise_engine::{PositionSpace, DEFAULT_RING};

/// Longest node id, key, server name, request id or ring name, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Most operations in one `BatchOperations` / `BatchRequests` call.
pub const MAX_BATCH_OPERATIONS: usize = 10_000;
/// Most entries in one `SyncReplicas` / `ReplicateSessions` call.
pub const MAX_SYNC_ENTRIES: usize = 1_000;
/// Largest `max_concurrent` of a sync call.
pub const MAX_CONCURRENT_CAP: i32 = 1_024;
/// Most virtual nodes per node (the engine's limit).
pub use clockwise_engine::MAX_REPLICAS;
/// Largest `size_mb`, `bandwidth_mb`, `capacity` or `max_mb` (2^40 MB).
pub const MAX_MB: i64 = 1 << 40;

pub type Result<T> = std::result::Result<T, ServiceError>;

/// gRPC metadata key choosing a read's consistency: `linearizable` (the default) or
/// `stale` (served from this node's replica without asking the leader).
pub const CONSISTENCY_METADATA: &str = "x-clockwise-consistency";

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed by a quorum (ReadIndex) before reading: sees every acknowledged write.
    Linearizable,
    /// This node's replica as it is: may lag the leader.
    Stale,
}

/// gRPC metadata keys that make a write idempotent: a client id (1 to 128 bytes) and a
/// sequence number (≥ 1) that the client raises for each new write and repeats on retry.
pub const CLIENT_ID_METADATA: &str = "x-clockwise-client-id";
pub const SEQ_METADATA: &str = "x-clockwise-seq";
/// Longest client id of a write's session, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// A session's client id (1 to [`MAX_CLIENT_ID_BYTES`] bytes) and sequence number (≥ 1).
pub fn session_id(client_id: &str, seq: u64) -> Result<()> {
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES {
        return Err(ServiceError::invalid(
            CLIENT_ID_METADATA,
            format!("must be 1 to {MAX_CLIENT_ID_BYTES} bytes"),
        ));
    }
    if seq == 0 {
        return Err(ServiceError::invalid(
            SEQ_METADATA,
            "must be an integer ≥ 1",
        ));
    }
    Ok(())
}

/// A write's session (from its metadata, both keys or neither) and its message.
pub fn session<T>(request: tonic::Request<T>) -> Result<(Option<Session>, T)> {
    let text = |key: &str| -> Result<Option<String>> {
        match request.metadata().get(key) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.to_owned()))
                .map_err(|_| ServiceError::invalid(key, "must be ASCII text")),
        }
    };
    let session = match (text(CLIENT_ID_METADATA)?, text(SEQ_METADATA)?) {
        (None, None) => None,
        (Some(client_id), Some(seq)) => {
            let seq = seq.parse::<u64>().unwrap_or(0);
            session_id(&client_id, seq)?;
            let client_id = scoped_client_id(&request, client_id);
            Some(Session { client_id, seq })
        }
        (Some(_), None) => {
            return Err(ServiceError::invalid(
                SEQ_METADATA,
                format!("is required with {CLIENT_ID_METADATA}"),
            ))
        }
        (None, Some(_)) => {
            return Err(ServiceError::invalid(
                CLIENT_ID_METADATA,
                format!("is required with {SEQ_METADATA}"),
            ))
        }
    };
    Ok((session, request.into_inner()))
}

/// Marks a session key scoped by a caller's credentials.
const SCOPED_SESSION_PREFIX: &str = "scoped:";

/// The retry-session key of a write: the client id it declares, scoped by what the
/// caller proved it holds (its bearer token, which the auth layer checked when tokens
/// are on; its client certificate under `--trusted-ca`), so a caller with other
/// credentials declaring the same id reaches another session: it can neither make the
/// owner's writes stale nor read back their outcomes. Without credentials (no tokens,
/// no client certificates), every caller is alike and the id is the key as declared.
/// The key is a digest (34 bytes, whatever the id's length): the log holds no
/// credential, and replicas need nothing but the key to stay deterministic.
pub fn scoped_client_id<T>(request: &tonic::Request<T>, client_id: String) -> String {
    let token = request
        .metadata()
        .get(http::header::AUTHORIZATION.as_str())
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(bearer_token)
                .map_or(v.as_bytes(), str::as_bytes)
        });
    let certs = request.peer_certs();
    let certificate = certs.as_deref().and_then(|c| c.first()).map(|c| c.as_ref());
    if token.is_none() && certificate.is_none() {
        return client_id;
    }
    let mut digest = Sha256::new();
    digest.update(b"clockwise retry session v1\0");
    // Length-prefixed, so no two (token, certificate, id) triples hash alike.
    for part in [
        token.unwrap_or_default(),
        certificate.unwrap_or_default(),
        client_id.as_bytes(),
    ] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    let digest = digest.finalize();
    let high = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
    format!("{SCOPED_SESSION_PREFIX}{high:032x}")
}

/// A request's consistency (from its metadata) and its message.
pub fn split<T>(request: tonic::Request<T>) -> Result<(Consistency, T)> {
    let consistency = match request.metadata().get(CONSISTENCY_METADATA) {
        None => Consistency::Linearizable,
        Some(value) => match value.to_str().map(str::to_ascii_lowercase).as_deref() {
            Ok("linearizable") => Consistency::Linearizable,
            Ok("stale") => Consistency::Stale,
            _ => {
                return Err(ServiceError::invalid(
                    CONSISTENCY_METADATA,
                    "must be \"linearizable\" or \"stale\"",
                ))
            }
        },
    };
    Ok((consistency, request.into_inner()))
}

/// The ring namespace: empty means [`DEFAULT_RING`].
pub fn ring(ring: &str) -> Result<&str> {
    if ring.is_empty() {
        return Ok(DEFAULT_RING);
    }
    bounded_id("ring", ring)
}

/// A node id, key, server name or request id: 1 to [`MAX_ID_BYTES`] bytes.
pub fn id<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() {
        return Err(ServiceError::invalid(field, "must not be empty"));
    }
    bounded_id(field, value)
}

fn bounded_id<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.len() > MAX_ID_BYTES {
        return Err(ServiceError::invalid(
            field,
            format!(
                "is {} bytes; at most {MAX_ID_BYTES} are allowed",
                value.len()
            ),
        ));
    }
    Ok(value)
}

/// A caller timestamp in ms: 0 means "now" (stamped by the node), negative is refused.
/// How far ahead of this node's clock a timestamp may be. A ring's clock never goes
/// back, so one far-future write would make every later TTL dead on arrival.
pub const MAX_CLOCK_AHEAD_MS: i64 = 24 * 3600 * 1000;

pub fn timestamp(ts: i64) -> Result<i64> {
    if ts < 0 {
        return Err(ServiceError::invalid(
            "timestamp",
            "must be >= 0 (0 means the node's clock)",
        ));
    }
    let now = crate::machine::clock::resolve_timestamp(0);
    if ts > now.saturating_add(MAX_CLOCK_AHEAD_MS) {
        return Err(ServiceError::invalid(
            "timestamp",
            format!(
                "{ts} is more than a day ahead of this node's clock ({now} ms since the Unix \
                 epoch); timestamps are milliseconds"
            ),
        ));
    }
    Ok(ts)
}

/// A count or size that must be in `0..=max`.
pub fn non_negative(field: &str, value: i64, max: i64) -> Result<i64> {
    if !(0..=max).contains(&value) {
        return Err(ServiceError::invalid(
            field,
            format!("must be between 0 and {max}, got {value}"),
        ));
    }
    Ok(value)
}

/// A capacity or memory limit: `-1` (unlimited) or `0..=MAX_MB`.
pub fn limit(field: &str, value: i64) -> Result<i64> {
    if value == -1 {
        return Ok(value);
    }
    non_negative(field, value, MAX_MB).map_err(|_| {
        ServiceError::invalid(
            field,
            format!("must be -1 (unlimited) or between 0 and {MAX_MB}, got {value}"),
        )
    })
}

pub fn max_concurrent(value: i32) -> Result<usize> {
    if !(1..=MAX_CONCURRENT_CAP).contains(&value) {
        return Err(ServiceError::invalid(
            "max_concurrent",
            format!("must be between 1 and {MAX_CONCURRENT_CAP}, got {value}"),
        ));
    }
    Ok(value as usize)
}

pub fn sync_mode(value: i32) -> Result<SyncMode> {
    SyncMode::try_from(value).map_err(|_| {
        ServiceError::invalid(
            "mode",
            format!("unknown SyncMode {value}; use FAIL_FAST (0) or ALL_SLEEP (1)"),
        )
    })
}

pub fn position_space(value: i32) -> Result<PositionSpace> {
    match PbSpace::try_from(value) {
        Ok(PbSpace::Drill) => Ok(PositionSpace::Drill),
        Ok(PbSpace::U64) => Ok(PositionSpace::U64),
        Err(_) => Err(ServiceError::invalid(
            "position_space",
            format!("unknown PositionSpace {value}; use DRILL (0) or U64 (1)"),
        )),
    }
}

/// A list that must hold at most `max` entries.
pub fn list_len(field: &str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(ServiceError::invalid(
            field,
            format!("has {len} entries; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// A raft member id: non-zero.
pub fn member_id(field: &str, id: u64) -> Result<u64> {
    if id == 0 {
        return Err(ServiceError::invalid(
            field,
            "must be a non-zero raft node id",
        ));
    }
    Ok(id)
}

/// A member's address: `host:port`, as peers dial it (printable, no spaces).
pub fn member_address(field: &str, address: &str) -> Result<String> {
    if !clockwise_cluster::member::valid_host_port(address) {
        return Err(ServiceError::invalid(
            field,
            format!("{address:?} is not a host:port address"),
        ));
    }
    Ok(address.to_owned())
}

/// Longest `ttl_ms` accepted: about 100 years.
pub const MAX_TTL_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// `ttl_ms`: 0 (never expires) up to [`MAX_TTL_MS`].
pub fn ttl_ms(value: i64) -> Result<i64> {
    if !(0..=MAX_TTL_MS).contains(&value) {
        return Err(ServiceError::invalid(
            "ttl_ms",
            format!("must be 0 (no expiry) to {MAX_TTL_MS}"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
