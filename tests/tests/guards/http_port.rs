//! The HTTP port (`--metrics-listen`) against a real node: `/metrics` stays parseable
//! with a bounded number of series whatever paths callers make up (quotes,
//! backslashes, hundreds of distinct ones, no token), and connections that never
//! finish a request neither starve `/healthz` nor stay open past the header timeout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clockwise_proto::hashring::v1 as hr;
use clockwise_tests::{unique_temp_dir, NodeProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::scrape;

/// How long a closed connection may take to be seen closed, beyond its timeout.
const MARGIN: Duration = Duration::from_secs(10);

/// A token file with an admin and a peer token (auth on).
fn token_file() -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = unique_temp_dir().join("tokens");
    std::fs::write(
        &path,
        "admin-token-0123456789abcdef0123456789 admin\n\
         peer-token-0123456789abcdef0123456789ab peer\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A unary call without a token to `path`, a path no service has.
async fn call_made_up(channel: tonic::transport::Channel, path: &str) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path)
        .expect("a path the client can send");
    let codec =
        tonic_prost::ProstCodec::<hr::GetNodeCountRequest, hr::GetNodeCountResponse>::default();
    let request = tonic::Request::new(hr::GetNodeCountRequest::default());
    match grpc.unary(request, path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// The body of `GET /metrics` (the response's head checked and cut off).
async fn metrics_page(addr: SocketAddr) -> String {
    let response = scrape(addr).await;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// Checks every line against the text exposition grammar (a `# HELP` / `# TYPE`
/// comment, or `name{label="value",...} number` where `\\`, `\"` and `\n` are the only
/// escapes in a value), and answers the series lines.
fn parse_strictly(text: &str) -> Vec<&str> {
    let mut series = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        assert!(name_end > 0, "no metric name: {line:?}");
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            let mut chars = labels.char_indices();
            let mut in_value = false;
            let end = loop {
                let (i, c) = chars.next().unwrap_or_else(|| panic!("unclosed: {line:?}"));
                match (in_value, c) {
                    (true, '\\') => {
                        let (_, escaped) = chars.next().expect("an escaped character");
                        assert!(matches!(escaped, '\\' | '"' | 'n'), "bad escape: {line:?}");
                    }
                    (true, '"') => in_value = false,
                    (false, '"') => in_value = true,
                    (false, '}') => break i,
                    (false, c) => assert!(
                        c.is_ascii_alphanumeric() || matches!(c, '_' | '=' | ','),
                        "bad label syntax: {line:?}"
                    ),
                    _ => {}
                }
            };
            rest = &labels[end + 1..];
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        series.push(line);
    }
    series
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_bounded_and_parse_after_hostile_calls() {
    let tokens = token_file();
    let node = NodeProcess::start_with(&["--auth-token-file", tokens.to_str().unwrap()]);
    let channel = node.channel().await;
    for path in ["/a\"b/c", "/a\\b/c"] {
        let code = call_made_up(channel.clone(), path).await;
        assert_eq!(code, tonic::Code::Unauthenticated, "{path}");
    }
    // raft-engine's own families (`raft_engine_*`) appear when the log is first used
    // that way (the first entry read comes with the node's first leadership): a fixed
    // set, whenever it comes, so only the node's own series are counted.
    let own_series = |text: &str| {
        parse_strictly(text)
            .into_iter()
            .filter(|line| !line.starts_with("raft_engine_"))
            .count()
    };
    let before = own_series(&metrics_page(node.metrics_addr()).await);
    for i in 0..500 {
        let path = format!("/made.up{i}/\"quoted\\{i}");
        call_made_up(channel.clone(), &path).await;
    }
    let text = metrics_page(node.metrics_addr()).await;
    let after = own_series(&text);
    // Before issue 16, each path made its own code and histogram series (~16 each).
    assert!(
        after < before + 20,
        "{before} series grew to {after} after 500 made-up paths:\n{text}"
    );
    assert!(
        text.contains(r#"clockwise_rpc_requests_total{code="16",method="unknown"} 502"#),
        "{text}"
    );
    for family in [
        "clockwise_raft_is_leader",
        "clockwise_raft_term",
        "clockwise_raft_applied_index",
        "clockwise_raft_proposals_total",
        "raft_engine_",
    ] {
        assert!(text.contains(family), "no {family} in:\n{text}");
    }
}

/// Opens a connection to `addr` that sends half a request and then nothing.
async fn stalled(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("half a request sent");
    conn
}

/// Waits (bounded) for the node to close `conn`: answers how long that took.
async fn closed_within(mut conn: TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), conn.read(&mut buf))
            .await
        {
            Err(_) => panic!("a stalled connection was still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            // hyper may answer 408 before it closes.
            Ok(Ok(_)) => {}
        }
    }
}

/// `GET /healthz`: the status line, or `None` when the connection was closed first.
async fn healthz(addr: SocketAddr) -> Option<String> {
    let mut conn = TcpStream::connect(addr).await.ok()?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    tokio::time::timeout(MARGIN, conn.read_to_string(&mut text))
        .await
        .ok()?
        .ok()?;
    text.lines().next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_requests_are_closed_after_the_header_timeout_and_healthz_keeps_answering() {
    let timeout = Duration::from_millis(1000);
    let node = NodeProcess::start_with(&[
        "--http-max-connections",
        "16",
        "--http-header-timeout-ms",
        "1000",
    ]);
    let addr = node.metrics_addr();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(stalled(addr).await);
    }
    // Below the cap, the port answers while they wait.
    assert_eq!(healthz(addr).await.as_deref(), Some("HTTP/1.1 200 OK"));
    for conn in held {
        let waited = closed_within(conn, timeout + MARGIN).await;
        assert!(waited < timeout + MARGIN, "{waited:?}");
    }
    // At the cap, more connections are closed at once; once the stalled ones time
    // out, the port answers again.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(stalled(addr).await);
    }
    let over = stalled(addr).await;
    let waited = closed_within(over, MARGIN).await;
    assert!(
        waited < timeout,
        "over the cap, closed at once ({waited:?})"
    );
    let deadline = Instant::now() + timeout + MARGIN;
    loop {
        if healthz(addr).await.as_deref() == Some("HTTP/1.1 200 OK") {
            break;
        }
        assert!(Instant::now() < deadline, "the port did not answer again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}

/// With the client port's certificate the HTTP port speaks HTTPS only: a client that
/// trusts the CA gets `/healthz`; plain HTTP gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_client_ports_certificate_the_http_port_speaks_https() {
    let ca = clockwise_tests::certs::TestCa::new(&unique_temp_dir(), "clients");
    let cert = ca.issue("node");
    let node = NodeProcess::start_with(&[
        "--cert",
        cert.cert.to_str().unwrap(),
        "--key",
        cert.key.to_str().unwrap(),
    ]);
    let response = crate::https_get(node.metrics_addr(), &ca.ca_path(), "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // Plain HTTP to the same port: no HTTP answer comes back.
    let mut plain = TcpStream::connect(node.metrics_addr()).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(MARGIN, plain.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("200"),
        "plain HTTP was answered"
    );
}
