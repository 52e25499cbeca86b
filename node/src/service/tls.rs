//! TLS for a node's two ports, from PEM files.
//!
//! - Client port (`--cert`, `--key`, optionally `--trusted-ca`): clients check the
//!   node's certificate; with `--trusted-ca` the node also requires a client
//!   certificate chaining to that CA (as etcd's client certificate authentication).
//! - Peer port (`--peer-cert`, `--peer-key`, `--peer-trusted-ca`, all three): mutual
//!   TLS. The node serves raft with its peer certificate and accepts only peers whose
//!   certificate chains to the peer CA; it dials its peers with the same certificate
//!   and checks theirs against the same CA. A process without such a certificate
//!   cannot join or send a raft message. The certificate names the node's raft id
//!   (URI SAN `clockwise://node/<id>`, see `clockwise_cluster::peer_cert`): peers
//!   accept a call only for the id it names, and a node whose own certificate names
//!   another id, or none, refuses to start.

use std::path::{Path, PathBuf};

use clockwise_cluster::peer_cert::{self, PeerCertError};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "--peer-cert {path}: {source}; peers take a node's calls only for the raft id its          certificate names (docs/security.md, \"TLS\")"
    )]
    PeerNodeId { path: String, source: PeerCertError },
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })
}

/// The PEM files of one port.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA the other side's certificate must chain to (required for peers).
    pub trusted_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The files of one port's flags: `None` unless both a certificate and a key are given.
    pub fn from_flags(
        cert: Option<&PathBuf>,
        key: Option<&PathBuf>,
        trusted_ca: Option<&PathBuf>,
    ) -> Option<TlsFiles> {
        let (cert, key) = cert.zip(key)?;
        Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            trusted_ca: trusted_ca.cloned(),
        })
    }
}

/// What a node serves and dials with.
#[derive(Clone, Default)]
pub struct NodeTls {
    pub client: Option<ServerTlsConfig>,
    /// Serving the raft transport, and dialling peers.
    pub peer: Option<(ServerTlsConfig, ClientTlsConfig)>,
    /// The raft id the peer certificate names (with `peer`); it must be the node's.
    pub peer_node_id: Option<u64>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("client", &self.client.is_some())
            .field("peer", &self.peer.is_some())
            .field("peer_node_id", &self.peer_node_id)
            .finish()
    }
}

impl NodeTls {
    /// Reads the files (their contents are checked when the servers start).
    pub fn load(client: Option<&TlsFiles>, peer: Option<&TlsFiles>) -> Result<NodeTls, TlsError> {
        let client = match client {
            Some(files) => {
                let identity =
                    Identity::from_pem(read("--cert", &files.cert)?, read("--key", &files.key)?);
                let mut config = ServerTlsConfig::new().identity(identity);
                if let Some(ca) = &files.trusted_ca {
                    config =
                        config.client_ca_root(Certificate::from_pem(read("--trusted-ca", ca)?));
                }
                Some(config)
            }
            None => None,
        };
        let mut peer_node_id = None;
        let peer = match peer {
            Some(files) => {
                let cert = read("--peer-cert", &files.cert)?;
                let id =
                    peer_cert::node_id_in_pem(&cert).map_err(|source| TlsError::PeerNodeId {
                        path: files.cert.display().to_string(),
                        source,
                    })?;
                peer_node_id = Some(id);
                let key = read("--peer-key", &files.key)?;
                let ca_path = files.trusted_ca.as_deref().unwrap_or(Path::new(""));
                let ca = Certificate::from_pem(read("--peer-trusted-ca", ca_path)?);
                let server = ServerTlsConfig::new()
                    .identity(Identity::from_pem(&cert, &key))
                    .client_ca_root(ca.clone());
                let client = ClientTlsConfig::new()
                    .ca_certificate(ca)
                    .identity(Identity::from_pem(cert, key));
                Some((server, client))
            }
            None => None,
        };
        Ok(NodeTls {
            client,
            peer,
            peer_node_id,
        })
    }
}
