//! A member's two addresses: where clients call it and where its peers send raft
//! messages (a port of its own, so no client can speak raft).
//!
//! The membership stores them as one string, `CLIENT|PEER` (the log's conf-change
//! context, snapshots and backups carry it unchanged). A string without `|` is one
//! address serving both, as the in-process tests of this crate use it.

use std::fmt;

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

/// `host:port`, printable, none of the separators of stored member lists.
pub fn valid_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
        && address
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '=' | '/' | '@' | '|' | ','))
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
}
