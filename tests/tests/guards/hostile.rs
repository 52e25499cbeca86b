//! Hostile callers against real node processes, before any authentication: thousands of
//! idle connections, connections over the cap, silent connections on either port, a
//! flood of streams the server must reset, health watches beyond their cap. The node
//! keeps answering health and committing writes throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use clockwise_tests::certs::TestCa;
use clockwise_tests::cluster::TestCluster;
use clockwise_tests::{unique_temp_dir, NodeProcess};
use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::{https_get, metric, metric_in, scrape};

/// Idle connections held against one node in the flood test.
const IDLE_CONNECTIONS: usize = 5_000;
/// The soft descriptor limit many systems start a process with.
const COMMON_SOFT_LIMIT: u64 = 1024;
/// How long a health probe may take, its connection included.
const PROBE_WITHIN: Duration = Duration::from_secs(1);

/// Raises this test process's soft descriptor limit to its hard one; answers it.
fn raise_own_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// A fresh connection to `addr` and one health check on it, all within `PROBE_WITHIN`.
async fn probe_health(addr: SocketAddr) -> Result<(), String> {
    let probe = async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
            .map_err(|e| format!("check: {e}"))
    };
    tokio::time::timeout(PROBE_WITHIN, probe)
        .await
        .map_err(|_| format!("no answer within {PROBE_WITHIN:?}"))?
}

async fn store(channel: Channel, key: &str) -> Result<(), tonic::Status> {
    let mut ring = HashRingClient::new(channel);
    let request = hr::StoreKeyRequest {
        ring: "hostile".into(),
        timestamp: 1,
        key: key.into(),
        ttl_ms: 0,
    };
    let mut request = tonic::Request::new(request);
    request.set_timeout(Duration::from_secs(10));
    ring.store_key(request).await.map(|_| ())
}

async fn connect_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("the node accepts a client")
}

/// Whether the node closed `conn` (EOF or reset) within `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match tokio::time::timeout(within, conn.read(&mut byte)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // The server's HTTP/2 preface frames: keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Polls `metric` on `node` until it is at least `want`.
async fn wait_metric(node: &NodeProcess, name: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric(node.metrics_addr(), name).await;
        if value >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed at {value} < {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_leave_health_answering_and_writes_committing() {
    let held = raise_own_fd_limit();
    // Fewer than 5,000 only where this process cannot hold them (then the node's caps
    // are what the test exercises).
    let idle = IDLE_CONNECTIONS.min(usize::try_from(held / 2).unwrap_or(usize::MAX));
    let cluster = TestCluster::start_with_fd_limit(
        3,
        &["--handshake-timeout-ms", "8000"],
        0,
        COMMON_SOFT_LIMIT,
    );
    let node = cluster.nodes[0].as_ref().expect("node 1 runs");
    let addr = node.grpc_addr();
    let mut conns = Vec::with_capacity(idle);
    for _ in 0..idle {
        // A node that stopped accepting lets its backlog fill: connects then hang. The
        // probes below say so more plainly than a connect error would.
        // A dropped SYN is retried after a second, then three: a loaded machine is slow,
        // a node that stopped accepting is stuck.
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
            Ok(Ok(conn)) => conns.push(conn),
            _ => break,
        }
    }
    for attempt in 0..5 {
        if let Err(why) = probe_health(addr).await {
            panic!(
                "health probe {attempt} with {} idle connections: {why}\nstderr:\n{}",
                conns.len(),
                node.stderr()
            );
        }
    }
    assert_eq!(conns.len(), idle, "the node stopped taking connections");
    let channel = connect_channel(addr).await;
    for i in 0..3 {
        store(channel.clone(), &format!("k{i}"))
            .await
            .unwrap_or_else(|e| panic!("write {i} through the flooded node: {e}"));
    }
    // The node closes every connection that never sent a request, at its deadline.
    let closed = tokio::time::timeout(
        Duration::from_secs(60),
        join_all(
            conns
                .iter_mut()
                .map(|conn| closed_within(conn, Duration::from_secs(60))),
        ),
    )
    .await
    .expect("the idle connections are closed within a minute");
    assert!(closed.iter().all(|&c| c), "an idle connection stayed open");
    let text = scrape(node.metrics_addr()).await;
    assert!(
        text.contains("clockwise_connections_handshake_timeouts_total{port=\"client\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once_and_clients_keep_working() {
    let node = NodeProcess::start_with(&["--max-connections", "4"]);
    let addr = node.grpc_addr();
    let channel = connect_channel(addr).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let open = "clockwise_connections_open{port=\"client\"}";
    wait_metric(&node, open, 4).await;

    let mut over = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut over, Duration::from_secs(2)).await,
        "the connection over the cap was held"
    );
    wait_metric(
        &node,
        "clockwise_connections_refused_total{port=\"client\"}",
        1,
    )
    .await;
    // The client that was in keeps working.
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health on the existing connection");
    store(channel, "capped")
        .await
        .expect("a write on the existing connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_on_both_ports_and_the_peer_port_caps_streams() {
    let node = NodeProcess::start_with(&["--handshake-timeout-ms", "500"]);
    // Not a byte sent, on either port.
    for addr in [node.grpc_addr(), node.peer_addr()] {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut conn, Duration::from_secs(5)).await,
            "a silent connection to {addr} was held"
        );
    }
    // The HTTP/2 preface but never a request: closed too.
    let mut conn = TcpStream::connect(node.grpc_addr()).await.unwrap();
    conn.write_all(&h2::client_preface()).await.unwrap();
    assert!(
        closed_within(&mut conn, Duration::from_secs(5)).await,
        "a connection that sent only the preface was held"
    );
    wait_metric(
        &node,
        "clockwise_connections_handshake_timeouts_total{port=\"peer\"}",
        1,
    )
    .await;

    let mut peer = TcpStream::connect(node.peer_addr()).await.unwrap();
    peer.write_all(&h2::client_preface()).await.unwrap();
    let settings = h2::server_settings(&mut peer).await;
    assert_eq!(
        settings.get(&h2::SETTINGS_MAX_CONCURRENT_STREAMS),
        Some(&256),
        "the peer port's SETTINGS: {settings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_never_started_is_closed_and_working_tls_clients_are_kept() {
    let ca = TestCa::new(&unique_temp_dir(), "clients");
    let node_cert = ca.issue("node");
    let node = NodeProcess::start_with(&[
        "--cert",
        node_cert.cert.to_str().unwrap(),
        "--key",
        node_cert.key.to_str().unwrap(),
        "--handshake-timeout-ms",
        "500",
    ]);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca.ca_path()).unwrap()));
    let channel = Endpoint::from_shared(format!("https://{}", node.grpc_addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("a TLS client connects");
    let mut health = HealthClient::new(channel);
    health.check(HealthCheckRequest::default()).await.unwrap();

    // tonic's TLS accept has no timeout of its own: the node's deadline ends it.
    let mut silent = TcpStream::connect(node.grpc_addr()).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a connection that never started its TLS handshake was held"
    );
    // The deadline has passed; the TLS client that sent a request was not cut (its
    // address is found behind TLS): only the silent connection timed out.
    health.check(HealthCheckRequest::default()).await.unwrap();
    // The HTTP port speaks HTTPS with the client port's certificate.
    let timeouts = "clockwise_connections_handshake_timeouts_total{port=\"client\"}";
    let page = https_get(node.metrics_addr(), &ca.ca_path(), "/metrics").await;
    assert_eq!(metric_in(&page, timeouts), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_streams_the_server_must_reset_gets_goaway() {
    let node = NodeProcess::start();
    let mut conn = TcpStream::connect(node.grpc_addr()).await.unwrap();
    let mut burst = h2::client_preface();
    // Each stream a malformed request (no pseudo-headers) that h2 resets itself: the
    // "MadeYouReset" pattern, which costs the server and not the client.
    for stream in (1..4_000u32).step_by(2) {
        burst.extend(h2::frame(
            h2::HEADERS,
            h2::END_STREAM | h2::END_HEADERS,
            stream,
            &[],
        ));
    }
    // The server may close before it has read everything.
    let _ = conn.write_all(&burst).await;
    let goaway = tokio::time::timeout(Duration::from_secs(10), h2::goaway(&mut conn))
        .await
        .expect("GOAWAY within 10 s");
    assert_eq!(
        goaway,
        Some(h2::ENHANCE_YOUR_CALM),
        "the connection ended without GOAWAY(ENHANCE_YOUR_CALM)"
    );
    assert!(closed_within(&mut conn, Duration::from_secs(5)).await);

    probe_health(node.grpc_addr())
        .await
        .expect("health after the flood");
    store(connect_channel(node.grpc_addr()).await, "after-flood")
        .await
        .expect("a write after the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_comes_is_ended_by_the_server() {
    let node = NodeProcess::start_with(&["--max-request-ms", "500"]);
    let mut conn = TcpStream::connect(node.grpc_addr()).await.unwrap();
    let mut opening = h2::client_preface();
    // A unary call's headers, and then not a byte of its body.
    opening.extend(h2::frame(
        h2::HEADERS,
        h2::END_HEADERS,
        1,
        &h2::grpc_request_headers("/clockwise.hashring.v1.HashRing/StoreKey"),
    ));
    conn.write_all(&opening).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), h2::stream_ended(&mut conn, 1))
        .await
        .expect("the server ends the call within 10 s");
    assert!(ended, "the connection closed before the call was answered");
}

/// A raw connection to `addr` that has made one health check (so its handshake
/// deadline is met), its answer not read yet.
async fn connection_after_one_call(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut call = h2::client_preface();
    call.extend(h2::frame(
        h2::HEADERS,
        h2::END_HEADERS,
        1,
        &h2::grpc_request_headers("/grpc.health.v1.Health/Check"),
    ));
    // An empty HealthCheckRequest: the gRPC message prefix of a zero-length message.
    call.extend(h2::frame(h2::DATA, h2::END_STREAM, 1, &[0; 5]));
    conn.write_all(&call).await.unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_is_dropped_and_old_connections_are_retired() {
    // Keepalive: the node PINGs an idle connection and closes it when no ACK comes,
    // so a peer that vanished without a FIN holds no descriptor.
    let node = NodeProcess::start_with(&["--http2-keepalive-ms", "300"]);
    let mut conn = connection_after_one_call(node.grpc_addr()).await;
    let pinged = tokio::time::timeout(Duration::from_secs(10), h2::pinged_until_closed(&mut conn))
        .await
        .expect("the node closes a connection whose PINGs go unanswered");
    assert!(pinged, "the connection was closed without a PING first");

    // Maximum age: every connection is asked to go away (GOAWAY NO_ERROR) and clients
    // reconnect, so no connection lives forever.
    let node = NodeProcess::start_with(&["--max-connection-age-ms", "500"]);
    let mut conn = connection_after_one_call(node.grpc_addr()).await;
    let goaway = tokio::time::timeout(Duration::from_secs(10), h2::goaway(&mut conn))
        .await
        .expect("GOAWAY within 10 s");
    assert_eq!(goaway, Some(h2::NO_ERROR));
    // A client on a retired connection simply reconnects.
    probe_health(node.grpc_addr())
        .await
        .expect("health after the retirement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watches_beyond_the_cap_are_refused() {
    let node = NodeProcess::start();
    let mut health = HealthClient::new(node.channel().await);
    let mut watches = Vec::new();
    for i in 0..64 {
        let watch = health
            .watch(HealthCheckRequest::default())
            .await
            .unwrap_or_else(|e| panic!("watch {i}: {e}"));
        watches.push(watch.into_inner());
    }
    let refused = health
        .watch(HealthCheckRequest::default())
        .await
        .expect_err("the 65th watch");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Checks are not watches: they still answer.
    health.check(HealthCheckRequest::default()).await.unwrap();
    // An ended watch frees its place.
    drop(watches.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match health.watch(HealthCheckRequest::default()).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("a watch after one ended: {e}"),
        }
    }
}

/// Raw HTTP/2 frames, enough to speak to a server without a client library's care.
mod h2 {
    use std::collections::BTreeMap;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const GOAWAY: u8 = 0x7;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    const ACK: u8 = 0x1;
    pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const NO_ERROR: u32 = 0x0;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }

    /// The client's connection preface and an empty SETTINGS frame.
    pub fn client_preface() -> Vec<u8> {
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        out
    }

    /// The next frame: `(kind, flags, payload)`, `None` at EOF or a reset.
    async fn read_frame(conn: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
        let (kind, flags, payload, _) = read_frame_on(conn).await?;
        Some((kind, flags, payload))
    }

    /// The server's SETTINGS (its first non-ACK SETTINGS frame).
    pub async fn server_settings(conn: &mut TcpStream) -> BTreeMap<u16, u32> {
        loop {
            let (kind, flags, payload) = read_frame(conn).await.expect("a SETTINGS frame");
            if kind == SETTINGS && flags & ACK == 0 {
                return payload
                    .chunks_exact(6)
                    .map(|p| {
                        (
                            u16::from_be_bytes([p[0], p[1]]),
                            u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                        )
                    })
                    .collect();
            }
        }
    }

    const RST_STREAM: u8 = 0x3;

    /// A gRPC request's header block (HPACK: static-table indices and literals without
    /// indexing, no Huffman coding).
    pub fn grpc_request_headers(path: &str) -> Vec<u8> {
        // :method POST (static 3), :scheme http (static 6).
        let mut block = vec![0x83, 0x86];
        // :path (static name 4), :authority (static name 1): literal values.
        for (index, value) in [(0x04, path), (0x01, "localhost")] {
            block.push(index);
            block.push(u8::try_from(value.len()).unwrap());
            block.extend(value.as_bytes());
        }
        for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")] {
            block.push(0x00);
            block.push(u8::try_from(name.len()).unwrap());
            block.extend(name.as_bytes());
            block.push(u8::try_from(value.len()).unwrap());
            block.extend(value.as_bytes());
        }
        block
    }

    /// Reads until the server ends `stream` (HEADERS or DATA with END_STREAM, or
    /// RST_STREAM): `true`; `false` when the connection ends first.
    pub async fn stream_ended(conn: &mut TcpStream, stream: u32) -> bool {
        loop {
            let Some((kind, flags, _, on)) = read_frame_on(conn).await else {
                return false;
            };
            let ends = kind == RST_STREAM || (kind <= HEADERS && flags & END_STREAM != 0);
            if on == stream && ends {
                return true;
            }
        }
    }

    async fn read_frame_on(conn: &mut TcpStream) -> Option<(u8, u8, Vec<u8>, u32)> {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).await.ok()?;
        Some((head[3], head[4], payload, stream))
    }

    /// Reads (never acknowledging a PING) until the connection ends: whether a PING
    /// came first.
    pub async fn pinged_until_closed(conn: &mut TcpStream) -> bool {
        let mut pinged = false;
        while let Some((kind, flags, _)) = read_frame(conn).await {
            pinged |= kind == PING && flags & ACK == 0;
        }
        pinged
    }

    /// Reads until a GOAWAY (its error code) or the end of the connection (`None`).
    pub async fn goaway(conn: &mut TcpStream) -> Option<u32> {
        loop {
            let (kind, _, payload) = read_frame(conn).await?;
            if kind == GOAWAY && payload.len() >= 8 {
                return Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
        }
    }
}
