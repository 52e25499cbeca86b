//! TLS for a node's two ports, from PEM files.
//!
//! - Client port (`--cert`, `--key`, optionally `--trusted-ca`): clients check the
//!   node's certificate; with `--trusted-ca` the node also requires a client
//!   certificate chaining to that CA (as etcd's client certificate authentication).
//! - HTTP port (`--metrics-listen`): HTTPS with the client port's certificate and key
//!   when the client port has them (and, with `--trusted-ca`, the same client
//!   certificate requirement), so `/metrics`, `/readyz` and the dashboard are as
//!   protected as the gRPC API.
//! - Peer port (`--peer-cert`, `--peer-key`, `--peer-trusted-ca`, all three): mutual
//!   TLS. The node serves raft with its peer certificate and accepts only peers whose
//!   certificate chains to the peer CA; it dials its peers with the same certificate
//!   and checks theirs against the same CA. A process without such a certificate
//!   cannot join or send a raft message. The certificate names the node's raft id
//!   (URI SAN `clockwise://node/<id>`, see `clockwise_cluster::peer_cert`): peers
//!   accept a call only for the id it names, and a node whose own certificate names
//!   another id, or none, refuses to start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    #[error("the HTTP port's TLS from --cert/--key/--trusted-ca: {0}")]
    Http(String),
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
    /// HTTPS for the HTTP port, from the client port's files.
    pub http: Option<Arc<rustls::ServerConfig>>,
    /// Serving the raft transport, and dialling peers.
    pub peer: Option<(ServerTlsConfig, ClientTlsConfig)>,
    /// The raft id the peer certificate names (with `peer`); it must be the node's.
    pub peer_node_id: Option<u64>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("client", &self.client.is_some())
            .field("http", &self.http.is_some())
            .field("peer", &self.peer.is_some())
            .field("peer_node_id", &self.peer_node_id)
            .finish()
    }
}

impl NodeTls {
    /// Reads the files (their contents are checked when the servers start).
    pub fn load(client: Option<&TlsFiles>, peer: Option<&TlsFiles>) -> Result<NodeTls, TlsError> {
        let http = client.map(http_tls).transpose()?;
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
            http,
            peer,
            peer_node_id,
        })
    }
}

/// The HTTP port's rustls configuration from the client port's files: its certificate
/// and key, and with `--trusted-ca` a required client certificate chaining to it.
fn http_tls(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| TlsError::Http(format!("{what}: {e}"));
    let certs = CertificateDer::pem_slice_iter(&read("--cert", &files.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("--cert", &e))?;
    let key =
        PrivateKeyDer::from_pem_slice(&read("--key", &files.key)?).map_err(|e| bad("--key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocol versions", &e))?;
    let builder = match &files.trusted_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read("--trusted-ca", ca)?) {
                roots
                    .add(cert.map_err(|e| bad("--trusted-ca", &e))?)
                    .map_err(|e| bad("--trusted-ca", &e))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| bad("--trusted-ca", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad("--cert/--key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
