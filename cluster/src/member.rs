//! A member's two addresses: where clients call it and where its peers send raft
//! messages (a port of its own, so no client can speak raft).
//!
//! The membership stores them as one string, `CLIENT|PEER` (the log's conf-change
//! context, snapshots and backups carry it unchanged). A string without `|` is one
//! address serving both, as the in-process tests of this crate use it.
//!
//! [`Peers`] is the list of a new cluster's founders as a node's `--peers` takes it,
//! `ID=CLIENT/PEER,…`. Every address, stored or listed, is checked by one rule,
//! [`valid_host_port`].

use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Where a member serves clients and where it takes raft messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAddress {
    /// `host:port` of the client API.
    pub client: String,
    /// `host:port` of the raft transport.
    pub peer: String,
}

impl MemberAddress {
    pub fn new(client: impl Into<String>, peer: impl Into<String>) -> Self {
        MemberAddress {
            client: client.into(),
            peer: peer.into(),
        }
    }

    /// From the stored form.
    pub fn decode(stored: &str) -> MemberAddress {
        match stored.split_once('|') {
            Some((client, peer)) => MemberAddress::new(client, peer),
            None => MemberAddress::new(stored, stored),
        }
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        if self.client == self.peer {
            self.client.clone()
        } else {
            format!("{}|{}", self.client, self.peer)
        }
    }

    /// Both addresses can be stored and dialled.
    pub fn is_valid(&self) -> bool {
        valid_host_port(&self.client) && valid_host_port(&self.peer)
    }
}

impl fmt::Display for MemberAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (peers: {})", self.client, self.peer)
    }
}

/// `host:port`, printable, none of the separators of stored member lists (nor of
/// [`Peers`]): the one rule for a member's address.
pub fn valid_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
        && address
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '=' | '/' | '@' | '|' | ','))
}

/// The founding members of a new cluster: `ID=CLIENT/PEER,ID=CLIENT/PEER` (each
/// node's `--listen` and `--peer-listen`); the empty string is no founders.
///
/// Ids are ≥ 1 and listed once; both addresses pass [`valid_host_port`] and, as the
/// listeners they name are bound to socket addresses, are IP addresses with a port.
/// `Display` writes the same syntax (ordered by id), so `to_string().parse()` gives
/// the same founders back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers(BTreeMap<u64, MemberAddress>);

/// Why a founders list was refused (the texts name the `--peers` syntax).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeersError {
    #[error("{0:?} is not ID=CLIENT/PEER")]
    Entry(String),
    #[error("{0:?} is not a raft id (an integer ≥ 1)")]
    Id(String),
    #[error("{0:?}: give both addresses, CLIENT/PEER (--listen/--peer-listen)")]
    Addresses(String),
    #[error("{0:?} is not host:port (an IP address and a port)")]
    Address(String),
    #[error("id {0} is listed twice")]
    Duplicate(u64),
}

impl Peers {
    /// Founders from `(id, client address, peer address)`, checked as parsing checks
    /// them.
    ///
    /// # Errors
    ///
    /// The first id or address that [`FromStr`] would refuse, with the same error.
    pub fn new<C, P>(members: impl IntoIterator<Item = (u64, C, P)>) -> Result<Peers, PeersError>
    where
        C: Into<String>,
        P: Into<String>,
    {
        let mut peers = Peers::default();
        for (id, client, peer) in members {
            if id == 0 {
                return Err(PeersError::Id(id.to_string()));
            }
            peers.insert(id, client.into(), peer.into())?;
        }
        Ok(peers)
    }

    /// Adds founder `id` once both addresses pass.
    fn insert(&mut self, id: u64, client: String, peer: String) -> Result<(), PeersError> {
        for address in [&client, &peer] {
            if !valid_host_port(address) || address.parse::<SocketAddr>().is_err() {
                return Err(PeersError::Address(address.clone()));
            }
        }
        match self.0.entry(id) {
            btree_map::Entry::Occupied(_) => Err(PeersError::Duplicate(id)),
            btree_map::Entry::Vacant(slot) => {
                slot.insert(MemberAddress::new(client, peer));
                Ok(())
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Founder `id`'s addresses.
    pub fn get(&self, id: u64) -> Option<&MemberAddress> {
        self.0.get(&id)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.0.contains_key(&id)
    }

    /// The founders in id order.
    pub fn iter(&self) -> btree_map::Iter<'_, u64, MemberAddress> {
        self.0.iter()
    }

    /// The founders as a membership.
    pub fn as_map(&self) -> &BTreeMap<u64, MemberAddress> {
        &self.0
    }
}

impl FromStr for Peers {
    type Err = PeersError;

    /// Parses `ID=CLIENT/PEER` entries separated by commas; blank entries and the
    /// spaces around an entry are skipped.
    fn from_str(text: &str) -> Result<Peers, PeersError> {
        let mut peers = Peers::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addresses) = part
                .split_once('=')
                .ok_or_else(|| PeersError::Entry(part.to_owned()))?;
            let id: u64 = id
                .parse()
                .ok()
                .filter(|&id| id >= 1)
                .ok_or_else(|| PeersError::Id(id.to_owned()))?;
            let (client, peer) = addresses
                .split_once('/')
                .ok_or_else(|| PeersError::Addresses(addresses.to_owned()))?;
            peers.insert(id, client.to_owned(), peer.to_owned())?;
        }
        Ok(peers)
    }
}

impl fmt::Display for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (id, address)) in self.0.iter().enumerate() {
            let comma = if n == 0 { "" } else { "," };
            write!(f, "{comma}{id}={}/{}", address.client, address.peer)?;
        }
        Ok(())
    }
}

impl IntoIterator for Peers {
    type Item = (u64, MemberAddress);
    type IntoIter = btree_map::IntoIter<u64, MemberAddress>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Peers {
    type Item = (&'a u64, &'a MemberAddress);
    type IntoIter = btree_map::Iter<'a, u64, MemberAddress>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Peers> for BTreeMap<u64, MemberAddress> {
    fn from(peers: Peers) -> Self {
        peers.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_round_trips_and_a_bare_address_serves_both() {
        let both = MemberAddress::new("127.0.0.1:1", "127.0.0.1:2");
        assert_eq!(both.encode(), "127.0.0.1:1|127.0.0.1:2");
        assert_eq!(MemberAddress::decode(&both.encode()), both);
        let one = MemberAddress::decode("127.0.0.1:3");
        assert_eq!(
            (one.client.as_str(), one.peer.as_str()),
            ("127.0.0.1:3", "127.0.0.1:3")
        );
        assert_eq!(one.encode(), "127.0.0.1:3");
    }

    #[test]
    fn each_address_is_checked() {
        assert!(MemberAddress::new("h:1", "h:2").is_valid());
        for bad in ["", "h", "h:0", ":1", "h:1|x", "h 1:2", "h:1\n"] {
            assert!(!MemberAddress::new("h:1", bad).is_valid(), "{bad:?}");
            assert!(!MemberAddress::new(bad, "h:1").is_valid(), "{bad:?}");
        }
    }

    #[test]
    fn peers_print_as_they_parse() {
        let peers =
            Peers::new([(2, "[::1]:3", "[::1]:4"), (1, "127.0.0.1:1", "127.0.0.1:2")]).unwrap();
        let text = peers.to_string();
        assert_eq!(text, "1=127.0.0.1:1/127.0.0.1:2,2=[::1]:3/[::1]:4");
        assert_eq!(text.parse::<Peers>(), Ok(peers.clone()));
        assert_eq!(
            peers.get(1),
            Some(&MemberAddress::new("127.0.0.1:1", "127.0.0.1:2"))
        );
        let ids: Vec<u64> = peers.iter().map(|(&id, _)| id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(BTreeMap::from(peers.clone()), peers.as_map().clone());
        // No founders: the empty string, both ways.
        assert_eq!("".parse::<Peers>(), Ok(Peers::default()));
        assert_eq!(Peers::default().to_string(), "");
        // Blank entries and spaces around an entry are skipped.
        assert_eq!(
            " 1=127.0.0.1:1/127.0.0.1:2 , ,"
                .parse::<Peers>()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn peers_refuse_with_the_flag_texts() {
        let cases = [
            ("x", "\"x\" is not ID=CLIENT/PEER"),
            (
                "0=127.0.0.1:1/127.0.0.1:2",
                "\"0\" is not a raft id (an integer ≥ 1)",
            ),
            (
                "a=127.0.0.1:1/127.0.0.1:2",
                "\"a\" is not a raft id (an integer ≥ 1)",
            ),
            (
                "1=127.0.0.1:1",
                "\"127.0.0.1:1\": give both addresses, CLIENT/PEER (--listen/--peer-listen)",
            ),
            (
                "1=h:1/127.0.0.1:2",
                "\"h:1\" is not host:port (an IP address and a port)",
            ),
            (
                "1=127.0.0.1:1/127.0.0.1",
                "\"127.0.0.1\" is not host:port (an IP address and a port)",
            ),
            // Port 0 fails the member rule: no peer could dial it.
            (
                "1=127.0.0.1:0/127.0.0.1:2",
                "\"127.0.0.1:0\" is not host:port (an IP address and a port)",
            ),
            (
                "1=127.0.0.1:1/127.0.0.1:2,1=127.0.0.1:3/127.0.0.1:4",
                "id 1 is listed twice",
            ),
        ];
        for (text, error) in cases {
            assert_eq!(
                text.parse::<Peers>().map_err(|e| e.to_string()),
                Err(error.to_owned()),
                "{text:?}"
            );
        }
        assert_eq!(
            Peers::new([(0, "127.0.0.1:1", "127.0.0.1:2")]),
            Err(PeersError::Id("0".into()))
        );
        assert_eq!(
            Peers::new([
                (1, "127.0.0.1:1", "127.0.0.1:2"),
                (1, "127.0.0.1:3", "127.0.0.1:4")
            ]),
            Err(PeersError::Duplicate(1))
        );
        assert_eq!(
            Peers::new([(1, "127.0.0.1:1", "127.0.0.1:2|x")]),
            Err(PeersError::Address("127.0.0.1:2|x".into()))
        );
    }
}
