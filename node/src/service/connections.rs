//! The accept pipeline of both ports, used instead of tonic's `TcpIncoming`, and the
//! HTTP/2 settings every port is served with.
//!
//! - A connection cap per port (the peer port has its own budget, so clients cannot
//!   starve raft): a connection over it is accepted and closed at once, so the listen
//!   backlog never fills and the kernel keeps answering. Counted in `/metrics`.
//! - Accept errors that are not about one connection (out of descriptors or buffers)
//!   back off from [`ACCEPT_BACKOFF_START`] doubling to [`ACCEPT_BACKOFF_MAX`], logged
//!   once per burst, instead of spinning.
//! - A handshake deadline: a connection that has not sent its first complete request
//!   (TLS handshake, HTTP/2 preface and first HEADERS) within it is closed. tonic does
//!   TLS on top of the IO this stream yields and its TLS accept has no timeout, so the
//!   deadline lives in [`GuardedStream`]'s reads; [`FirstRequestLayer`], the outermost
//!   tower layer, tells the stream (through the port's [`Handshakes`], keyed by the
//!   remote address) that a request arrived.
//! - The soft `RLIMIT_NOFILE` raised to the hard one ([`raise_descriptor_limit`]) and
//!   the caps clamped to what it allows ([`clamp_to_descriptors`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};
use tonic::transport::Server;

use super::limits::Limits;

/// Connections the client port holds at once (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// Connections the peer port holds at once (`--max-peer-connections`): a separate budget.
pub const DEFAULT_MAX_PEER_CONNECTIONS: usize = 256;
/// How long a new connection may take to send its first request (`--handshake-timeout-ms`).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a client-port call may run until its response headers
/// (`--max-request-ms`); server streams (Health.Watch, Cluster.Snapshot) are not cut.
pub const DEFAULT_MAX_REQUEST: Duration = Duration::from_secs(60);
/// The peer port's request timeout: above the sender's 300 s `SendSnapshot` deadline,
/// which a snapshot of the largest allowed state legitimately needs.
pub const PEER_MAX_REQUEST: Duration = Duration::from_secs(600);
/// An HTTP/2 PING after this long without frames (`--http2-keepalive-ms`), and the
/// connection closed when it is not answered within [`HTTP2_KEEPALIVE_TIMEOUT`] (or the
/// interval, if shorter): dead peers do not hold descriptors.
pub const DEFAULT_HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is asked to go away (GOAWAY) at this age (`--max-connection-age-ms`);
/// its calls in flight finish (each bounded by `--max-request-ms` or, for streams, by
/// the stream caps), new ones go to a new connection: no connection lives forever.
/// No grace period is set: tonic 0.14 with a grace skips the GOAWAY and cuts the
/// connection at age + grace instead, failing the calls in flight.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);
/// Streams a connection may make the server reset (malformed frames, "MadeYouReset",
/// CVE-2025-8671) before it gets GOAWAY: h2's own default, which tonic switches off.
pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
/// Streams reset by the client before the server accepted them (the classic rapid
/// reset) a connection may have pending: h2's default.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Concurrent streams on one peer connection: raft sends, snapshots, forwards.
pub const PEER_MAX_CONCURRENT_STREAMS: u32 = 256;
/// The first wait after an accept error that is not about one connection.
pub const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(5);
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Descriptors kept for everything but the two ports' connections: the raft log and
/// its snapshots, outgoing peer connections, the metrics port, the log output.
pub const DESCRIPTOR_RESERVE: u64 = 256;

/// What a port's accept pipeline holds to.
#[derive(Debug, Clone, Copy)]
pub struct PortLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

/// Counters of one port, rendered by [`super::metrics::Metrics::render`].
#[derive(Debug, Default)]
pub struct PortCounters {
    pub open: AtomicI64,
    /// Connections accepted and closed at once: the port was at its cap.
    pub refused: AtomicU64,
    /// Connections closed because they sent no request within the handshake deadline.
    pub handshake_timeouts: AtomicU64,
    /// Accept errors that were not about one connection (descriptors, buffers).
    pub accept_errors: AtomicU64,
}

/// The connections of one port that have not sent a request yet, by remote address (a
/// live TCP connection's remote address is unique on one listener). Every call looks
/// its connection up here, so the map is sharded: calls on different connections do
/// not queue behind one lock.
#[derive(Debug, Default)]
pub struct Handshakes {
    waiting: DashMap<SocketAddr, Arc<AtomicBool>>,
}

impl Handshakes {
    fn register(&self, remote: SocketAddr) -> Arc<AtomicBool> {
        let seen = Arc::new(AtomicBool::new(false));
        self.waiting.insert(remote, seen.clone());
        seen
    }

    /// The connection from `remote` sent a request: its deadline no longer applies.
    pub fn request_seen(&self, remote: SocketAddr) {
        if let Some((_, seen)) = self.waiting.remove(&remote) {
            seen.store(true, Ordering::Release);
        }
    }

    fn forget(&self, remote: SocketAddr, seen: &Arc<AtomicBool>) {
        self.waiting
            .remove_if(&remote, |_, waiting| Arc::ptr_eq(waiting, seen));
    }
}

/// A connection's wait for its first request.
struct Handshake {
    deadline: Pin<Box<Sleep>>,
    seen: Arc<AtomicBool>,
    handshakes: Arc<Handshakes>,
}

/// An accepted connection: holds its port's permit until dropped, and fails its reads
/// once the handshake deadline passes before a first request.
pub struct GuardedStream {
    stream: TcpStream,
    info: TcpConnectInfo,
    handshake: Option<Handshake>,
    timed_out: bool,
    counters: Arc<PortCounters>,
    _permit: OwnedSemaphorePermit,
}

impl GuardedStream {
    /// `Err` once the deadline has passed without a request.
    fn check_handshake(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(handshake) = &mut self.handshake else {
            return Ok(());
        };
        if handshake.seen.load(Ordering::Acquire) {
            self.handshake = None;
            return Ok(());
        }
        if handshake.deadline.as_mut().poll(cx).is_ready() {
            if !self.timed_out {
                self.timed_out = true;
                self.counters
                    .handshake_timeouts
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the handshake deadline",
            ));
        }
        Ok(())
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        if let (Some(handshake), Some(remote)) = (&self.handshake, self.info.remote_addr) {
            handshake.handshakes.forget(remote, &handshake.seen);
        }
    }
}

impl Connected for GuardedStream {
    // tonic's `remote_addr()` and `peer_certs()` look for exactly this type (wrapped in
    // `TlsConnectInfo` behind TLS).
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.check_handshake(cx)?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One port's listener and what it holds to.
struct Acceptor {
    port: &'static str,
    listener: TcpListener,
    permits: Arc<Semaphore>,
    limits: PortLimits,
    handshakes: Arc<Handshakes>,
    counters: Arc<PortCounters>,
    /// The next wait after an accept error; `None` outside a burst of them.
    backoff: Option<Duration>,
    /// Connections refused since the port last had room (logged once per burst).
    refusing: u64,
}

/// Errors about one connection (it went away before it was accepted): accept the next.
fn about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The wait after an accept error, given the last one in this burst (`None`: the first).
fn next_backoff(last: Option<Duration>) -> Duration {
    match last {
        None => ACCEPT_BACKOFF_START,
        Some(last) => (last * 2).min(ACCEPT_BACKOFF_MAX),
    }
}

impl Acceptor {
    async fn next(&mut self) -> GuardedStream {
        loop {
            let (stream, remote) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) if about_one_connection(&error) => continue,
                Err(error) => {
                    self.back_off(&error).await;
                    continue;
                }
            };
            if let Some(_previous) = self.backoff.take() {
                tracing::info!(port = self.port, "accepting connections again");
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                // Closed at once: the client learns now, and the backlog keeps moving.
                drop(stream);
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                if self.refusing == 0 {
                    tracing::warn!(
                        port = self.port,
                        max = self.limits.max_connections,
                        "connection cap reached: closing new connections until some end"
                    );
                }
                self.refusing += 1;
                continue;
            };
            if self.refusing > 0 {
                tracing::info!(
                    port = self.port,
                    refused = self.refusing,
                    "below the connection cap again"
                );
                self.refusing = 0;
            }
            return self.guard(stream, remote, permit);
        }
    }

    fn guard(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> GuardedStream {
        // Small messages (raft heartbeats, point calls) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let info = TcpConnectInfo {
            local_addr: stream.local_addr().ok(),
            remote_addr: Some(remote),
        };
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        GuardedStream {
            stream,
            info,
            handshake: Some(Handshake {
                deadline: Box::pin(tokio::time::sleep(self.limits.handshake_timeout)),
                seen: self.handshakes.register(remote),
                handshakes: self.handshakes.clone(),
            }),
            timed_out: false,
            counters: self.counters.clone(),
            _permit: permit,
        }
    }

    /// Out of descriptors or buffers: retrying at once would spin. Wait, doubling.
    async fn back_off(&mut self, error: &io::Error) {
        self.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
        if self.backoff.is_none() {
            tracing::warn!(
                port = self.port,
                %error,
                "cannot accept connections; backing off until it can"
            );
        }
        let wait = next_backoff(self.backoff);
        self.backoff = Some(wait);
        tokio::time::sleep(wait).await;
    }
}

/// The connections of `listener`, for `serve_with_incoming_shutdown`. Dropping the
/// stream closes the listener.
pub fn incoming(
    port: &'static str,
    listener: TcpListener,
    limits: PortLimits,
    handshakes: Arc<Handshakes>,
    counters: Arc<PortCounters>,
) -> impl Stream<Item = Result<GuardedStream, Infallible>> {
    let acceptor = Acceptor {
        port,
        listener,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        limits,
        handshakes,
        counters,
        backoff: None,
        refusing: 0,
    };
    futures::stream::unfold(acceptor, |mut acceptor| async move {
        let stream = acceptor.next().await;
        Some((Ok(stream), acceptor))
    })
}

/// `server` with the HTTP/2 settings both ports share: keepalive, a maximum connection
/// age, and h2's guards against reset floods (tonic leaves the local one off).
pub fn hardened(server: Server, limits: &Limits) -> Server {
    server
        .http2_keepalive_interval(Some(limits.http2_keepalive))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT.min(limits.http2_keepalive)))
        .max_connection_age(limits.max_connection_age)
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESET_STREAMS))
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESET_STREAMS))
}

/// Tells a connection's [`GuardedStream`] that its first request arrived. Outermost, so
/// no refusal by an inner layer leaves the deadline running on a working client.
#[derive(Clone)]
pub struct FirstRequestLayer(pub Arc<Handshakes>);

impl<S> tower::Layer<S> for FirstRequestLayer {
    type Service = FirstRequest<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FirstRequest {
            inner,
            handshakes: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct FirstRequest<S> {
    inner: S,
    handshakes: Arc<Handshakes>,
}

impl<S, B> tower::Service<http::Request<B>> for FirstRequest<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let extensions = request.extensions();
        let remote = extensions
            .get::<TcpConnectInfo>()
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .map(TlsConnectInfo::get_ref)
            })
            .and_then(TcpConnectInfo::remote_addr);
        if let Some(remote) = remote {
            self.handshakes.request_seen(remote);
        }
        self.inner.call(request)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one (many systems start processes at
/// 1024, which a few idle connections exhaust). Answers the soft limit now in force.
pub fn raise_descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot read the descriptor limit");
        return None;
    }
    let soft = limit.rlim_cur;
    if soft >= limit.rlim_max {
        tracing::info!(soft, hard = limit.rlim_max, "descriptor limit");
        return Some(soft);
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::warn!(
            soft,
            hard = limit.rlim_max,
            error = %io::Error::last_os_error(),
            "cannot raise the soft descriptor limit to the hard one"
        );
        return Some(soft);
    }
    tracing::info!(
        was = soft,
        now = limit.rlim_max,
        "raised the soft descriptor limit to the hard one"
    );
    Some(limit.rlim_max)
}

/// The soft `RLIMIT_NOFILE` in force, if it can be read.
pub fn descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

/// The two ports' caps within `descriptors` (less [`DESCRIPTOR_RESERVE`]): the peer
/// port keeps its budget first (raft must not lose to clients), up to half of what is
/// left; the client port gets the rest. Answers `(client, peer)`.
pub fn clamp_to_descriptors(client: usize, peer: usize, descriptors: u64) -> (usize, usize) {
    let room =
        usize::try_from(descriptors.saturating_sub(DESCRIPTOR_RESERVE)).unwrap_or(usize::MAX);
    let peer = peer.min(room / 2).max(1);
    let client = client.min(room.saturating_sub(peer)).max(1);
    (client, peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_descriptor_limit_with_the_peer_budget_first() {
        assert_eq!(clamp_to_descriptors(8192, 256, 1 << 20), (8192, 256));
        // 1024 descriptors: 768 after the reserve, 256 for peers, the rest for clients.
        assert_eq!(clamp_to_descriptors(8192, 256, 1024), (512, 256));
        // Tiny limits still leave each port a connection.
        assert_eq!(clamp_to_descriptors(8192, 256, 100), (1, 1));
    }

    #[test]
    fn running_out_of_descriptors_backs_off_instead_of_retrying_at_once() {
        // Before: tonic retried every accept error at once, spinning a core while the
        // process had no descriptor left.
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(!about_one_connection(&io::Error::from_raw_os_error(errno)));
        }
        assert!(about_one_connection(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        let mut waits = vec![next_backoff(None)];
        for _ in 0..10 {
            waits.push(next_backoff(waits.last().copied()));
        }
        assert_eq!(waits[0], ACCEPT_BACKOFF_START);
        assert_eq!(waits[1], ACCEPT_BACKOFF_START * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), ACCEPT_BACKOFF_MAX);
    }

    #[test]
    fn a_request_ends_only_its_own_connections_wait() {
        let handshakes = Handshakes::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let seen_a = handshakes.register(a);
        let seen_b = handshakes.register(b);
        handshakes.request_seen(a);
        assert!(seen_a.load(Ordering::Acquire));
        assert!(!seen_b.load(Ordering::Acquire));
        // A later connection from the same address is not marked by an old one's forget.
        let again = handshakes.register(b);
        handshakes.forget(b, &seen_b);
        handshakes.request_seen(b);
        assert!(again.load(Ordering::Acquire));
    }
}
