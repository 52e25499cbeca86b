//! The cluster's identity: a random id made when a cluster is founded (or seeded from a
//! backup), stored with each member's log, carried by every peer call
//! ([`CLUSTER_ID_METADATA`]) and refused when it differs.
//!
//! A joining node has none until the first peer call it accepts, and persists it before
//! that call is handled. A log written by a version without identities has none either:
//! such a node accepts any id and adopts the first one it sees; a leader without one
//! makes one (see docs/decisions.md).

use std::fmt;
use std::io::Read as _;
use std::sync::{Arc, PoisonError, RwLock};

use crate::storage::{LogStore, ReadyWrite, StoreError};

/// The metadata key of the cluster id, on peer calls and on every client reply.
pub const CLUSTER_ID_METADATA: &str = "x-clockwise-cluster-id";

/// Bytes of randomness in a cluster id (shown as twice as many hex digits).
const ID_BYTES: usize = 16;

/// A new random cluster id: 128 bits from the OS, as 32 lowercase hex digits.
pub fn new_cluster_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; ID_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| StoreError::Dir {
            path: "/dev/urandom".to_owned(),
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The id founders of a cluster of several members agree on without talking: derived
/// from the founding membership (every founder is started with the same `--peers`). A
/// cluster of one founds with a random id ([`new_cluster_id`]). Like etcd's cluster id,
/// it cannot tell a founder's first start from a wiped founder started again with
/// `--initial-cluster-state new`: restarts say `existing` (docs/decisions.md).
pub fn founding_cluster_id(
    members: &std::collections::BTreeMap<u64, crate::member::MemberAddress>,
) -> Result<String, StoreError> {
    if members.len() <= 1 {
        return new_cluster_id();
    }
    let text: String = members
        .iter()
        .map(|(id, address)| format!("{id}={}\n", address.encode()))
        .collect();
    let digest = crate::snapshot::sha256(format!("clockwise cluster\n{text}").as_bytes());
    Ok(digest[..ID_BYTES]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Whether `id` has the form of a cluster id (what a peer may send): 1–64 characters
/// of `[0-9a-z-]`, so it is valid header text and cannot smuggle anything into logs.
pub fn is_well_formed(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

/// This node's cluster id, shared by the transport, the driver and the services.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct ClusterIdentity {
    id: Arc<RwLock<Option<String>>>,
    /// Where an adopted id is persisted (none in in-memory tests).
    store: Option<LogStore>,
}

impl fmt::Debug for ClusterIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClusterIdentity").field(&self.get()).finish()
    }
}

/// What a peer's id means here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The same cluster (or a peer that sends none: a version without identities).
    Accept,
    /// This node had none and now holds (and has persisted) the peer's.
    Adopted,
    /// Another cluster.
    Refuse { ours: String, theirs: String },
}

impl ClusterIdentity {
    /// The identity stored in `store` (persisting what is adopted later).
    pub fn stored(store: &LogStore) -> Result<Self, StoreError> {
        Ok(ClusterIdentity {
            id: Arc::new(RwLock::new(store.cluster_id()?)),
            store: Some(store.clone()),
        })
    }

    /// An identity that is only kept in memory.
    pub fn in_memory(id: Option<String>) -> Self {
        ClusterIdentity {
            id: Arc::new(RwLock::new(id)),
            store: None,
        }
    }

    /// The id, once known.
    pub fn get(&self) -> Option<String> {
        self.id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets and persists `id` (synced) unless one is already known; answers the id
    /// now held.
    pub fn adopt(&self, id: &str) -> Result<String, StoreError> {
        let mut current = self.id.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = current.as_ref() {
            return Ok(current.clone());
        }
        if let Some(store) = &self.store {
            store.write(ReadyWrite {
                cluster_id: Some(id),
                sync: true,
                ..ReadyWrite::default()
            })?;
        }
        *current = Some(id.to_owned());
        Ok(id.to_owned())
    }

    /// Checks a peer's id (`None`: the peer sent none) and adopts it when this node has
    /// none yet.
    pub fn admit(&self, theirs: Option<&str>) -> Result<Admission, StoreError> {
        let Some(theirs) = theirs else {
            return Ok(Admission::Accept);
        };
        match self.get() {
            Some(ours) if ours == theirs => Ok(Admission::Accept),
            Some(ours) => Ok(Admission::Refuse {
                ours,
                theirs: theirs.to_owned(),
            }),
            None => {
                let held = self.adopt(theirs)?;
                if held == theirs {
                    Ok(Admission::Adopted)
                } else {
                    Ok(Admission::Refuse {
                        ours: held,
                        theirs: theirs.to_owned(),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_well_formed_and_differ() {
        let (a, b) = (new_cluster_id().unwrap(), new_cluster_id().unwrap());
        assert_eq!(a.len(), 32);
        assert!(is_well_formed(&a) && is_well_formed(&b));
        assert_ne!(a, b);
        assert!(!is_well_formed("") && !is_well_formed("A\n") && !is_well_formed(&"a".repeat(65)));
    }

    #[test]
    fn an_identity_adopts_once_and_refuses_another() {
        let identity = ClusterIdentity::in_memory(None);
        assert_eq!(identity.admit(None).unwrap(), Admission::Accept);
        assert_eq!(identity.admit(Some("aa")).unwrap(), Admission::Adopted);
        assert_eq!(identity.admit(Some("aa")).unwrap(), Admission::Accept);
        assert_eq!(
            identity.admit(Some("bb")).unwrap(),
            Admission::Refuse {
                ours: "aa".into(),
                theirs: "bb".into()
            }
        );
    }
}
