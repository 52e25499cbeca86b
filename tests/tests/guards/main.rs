//! What a node refuses, and the limits it holds to, against real `clockwise node`
//! processes. One test binary (one link) for the suites that start single nodes with
//! guard flags and share the helpers below:
//!
//! - [`bad_input`]: malformed input only the wire shows: garbage bytes, undecodable and
//!   oversized messages, the peer port. (The validation rules are tested beside them
//!   and in process; its doc says where each is now.)
//! - [`security`]: tokens and roles, the loopback-only default, per-client rate limits,
//!   message size caps, deadlines kept by the server.
//! - [`sync_bulkhead`]: the sync and batch bulkheads refuse their family's calls before
//!   any work, not point RPCs or health.
//! - [`tls`]: TLS on the client port, mutual TLS on the peer port.
//! - [`hostile`]: idle-connection floods, connection caps, handshake deadlines, reset
//!   floods and health-watch caps, while the node keeps answering.
//! - [`http_port`]: `/metrics` bounded and parseable after hostile calls; slowloris on
//!   the HTTP port.
//! - [`peers`]: a peer certificate speaks only for the node it names; forwarded
//!   commands pass the client port's checks.
//! - [`scripts`]: the scripts run binaries from `$CARGO_TARGET_DIR` (no node needed).

mod bad_input;
mod hostile;
mod http_port;
mod peers;
mod scripts;
mod security;
mod sync_bulkhead;
mod tls;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use clockwise_tests::{clockwise_bin, unique_temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node's Prometheus text (`GET /metrics` on its metrics port).
async fn scrape(metrics: SocketAddr) -> String {
    clockwise_tests::http_get(metrics, "/metrics")
        .await
        .expect("the metrics port answers")
}

/// `GET path` over HTTPS (the HTTP port of a node with `--cert`), trusting `ca`: the
/// whole response, head and body.
async fn https_get(addr: SocketAddr, ca: &std::path::Path, path: &str) -> String {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(ca).expect("the CA file") {
        roots.add(der.expect("a CA certificate")).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(addr.ip().to_string()).unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("a TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: node\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // The node closes the connection after one answer; a missing TLS close_notify is
    // not this test's business.
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// One unlabelled value from a node's Prometheus text.
async fn metric(metrics: SocketAddr, name: &str) -> i64 {
    metric_in(&scrape(metrics).await, name)
}

/// One unlabelled value from Prometheus `text`.
fn metric_in(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Runs `clockwise node` with `args` (and a fresh data dir) expecting it to refuse to
/// start; answers its stderr.
fn refused_start(args: &[&str]) -> String {
    let dir = unique_temp_dir();
    let output = Command::new(clockwise_bin())
        .arg("node")
        .arg("--data-dir")
        .arg(&dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("clockwise runs");
    let _ = std::fs::remove_dir_all(dir);
    assert!(!output.status.success(), "it started: {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
