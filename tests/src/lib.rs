//! Integration tests that start real clockwise processes. The engine's differential
//! conformance test lives in `tests/conformance/ring_diff.py` (run by `scripts/test.sh`).
//!
//! # Module map
//!
//! * [`NodeProcess`]: one `clockwise node` child process on `127.0.0.1:0` with its own
//!   temporary `--data-dir`; waits for its `listening on` / `peers on` / `metrics on`
//!   stdout lines,
//!   hands out gRPC clients, and kills the child and removes the directory on drop.
//! * [`clockwise_bin`]: the path of the `clockwise` binary (`CLOCKWISE_BIN`, or built
//!   once per test process with `cargo build -p clockwise-node --bin clockwise`).
//! * [`workspace_root`]: the Cargo workspace this crate belongs to.
//! * [`http_get`]: one plain `GET` on a node's HTTP port (`/metrics`, `/readyz`).
//! * [`cluster::TestCluster`]: several node processes forming one raft group.
//! * [`proxy::Network`]: a TCP proxy in front of each node that holds, delays or cuts
//!   the traffic of chosen links (the chaos suite's network faults).
//! * [`linearizability`]: a Wing–Gong–Lowe checker over any sequential model.
//! * [`certs`]: a throwaway CA and certificates for the TLS tests (`mint-certs` writes
//!   a set to try TLS by hand).
//! * `src/bin/chaos`: the chaos suite (`scripts/chaos.sh`).
//! * `tests/guards/`: what a node refuses against real processes: malformed input only
//!   the wire shows (`bad_input.rs`; the validation rules are tested beside them in the
//!   node crate), tokens and limits, the sync bulkhead, TLS.

pub mod certs;
pub mod cluster;
pub mod linearizability;
pub mod proxy;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clockwise_proto::chatrouter::v1::chat_router_client::ChatRouterClient;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use tonic::transport::{Channel, Endpoint};

/// How long a node may take to print its `listening on` and `metrics on` lines.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of every call made through [`NodeProcess::channel`] and the clients built
/// on it: a hung node fails the test with `DEADLINE_EXCEEDED` instead of hanging it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node that closed its stdout during startup may take to exit by itself
/// (so its own exit status is reported) before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The Cargo workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The `clockwise` binary: `$CLOCKWISE_BIN` if set (a relative path is taken from the
/// workspace root), else built once per test process with
/// `cargo build -p clockwise-node --bin clockwise` in the workspace root.
pub fn clockwise_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("CLOCKWISE_BIN") {
        Some(path) if !path.is_empty() => workspace_root().join(path),
        _ => build_clockwise(),
    })
}

fn build_clockwise() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    let output = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "-p",
            "clockwise-node",
            "--bin",
            "clockwise",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    if !output.status.success() {
        panic!(
            "`cargo build -p clockwise-node --bin clockwise` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Cargo names the executable it produced; fall back to the conventional path.
    let reported = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "clockwise")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from));
    let path = reported.unwrap_or_else(|| {
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.join("target"),
        };
        target
            .join("debug")
            .join(format!("clockwise{}", std::env::consts::EXE_SUFFIX))
    });
    assert!(
        path.is_file(),
        "built clockwise binary not found at {}",
        path.display()
    );
    path
}

/// A running `clockwise node` child process with its own data directory.
///
/// Started with `--listen 127.0.0.1:0 --data-dir <tmp> --metrics-listen 127.0.0.1:0`
/// plus any extra arguments; returned once the node has printed both addresses.
/// Dropping it kills the process and removes the data directory.
pub struct NodeProcess {
    child: Child,
    grpc: SocketAddr,
    peer: SocketAddr,
    metrics: SocketAddr,
    data_dir: PathBuf,
    /// Whether dropping the node removes its data directory.
    owns_data_dir: bool,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
}

impl NodeProcess {
    /// Starts a node with the default flags.
    pub fn start() -> NodeProcess {
        NodeProcess::start_with(&[])
    }

    /// Starts a node with `extra` appended to the default flags
    /// (e.g. `["--sync-delay-ms", "1"]`).
    pub fn start_with(extra: &[&str]) -> NodeProcess {
        NodeProcess::launch("127.0.0.1:0", unique_temp_dir(), true, extra)
    }

    /// Starts a node listening on `listen` over a data directory the caller owns (it
    /// survives the node, so a killed node can be started again on the same log).
    pub fn start_at(listen: &str, data_dir: &Path, extra: &[&str]) -> NodeProcess {
        NodeProcess::launch(listen, data_dir.to_path_buf(), false, extra)
    }

    /// As [`NodeProcess::start_at`], but a node that exits (or never prints its
    /// addresses) is an `Err` with its exit status and stderr, for tests of refusals.
    pub fn try_start_at(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<NodeProcess, String> {
        NodeProcess::try_launch(listen, data_dir.to_path_buf(), false, extra, None, &[])
    }

    /// As [`NodeProcess::try_start_at`], with `env` added to the child's environment
    /// (e.g. `RUST_LOG`).
    pub fn try_start_at_with_env(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Result<NodeProcess, String> {
        NodeProcess::try_launch(listen, data_dir.to_path_buf(), false, extra, None, env)
    }

    /// As [`NodeProcess::try_start_at`], the child started with a soft `RLIMIT_NOFILE`
    /// of `soft` (its hard limit unchanged), as many systems start processes.
    pub fn try_start_at_with_fd_limit(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        soft: u64,
    ) -> Result<NodeProcess, String> {
        NodeProcess::try_launch(
            listen,
            data_dir.to_path_buf(),
            false,
            extra,
            Some(soft),
            &[],
        )
    }

    fn launch(listen: &str, data_dir: PathBuf, owns_data_dir: bool, extra: &[&str]) -> NodeProcess {
        NodeProcess::try_launch(listen, data_dir, owns_data_dir, extra, None, &[])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_launch(
        listen: &str,
        data_dir: PathBuf,
        owns_data_dir: bool,
        extra: &[&str],
        soft_fd_limit: Option<u64>,
        env: &[(String, String)],
    ) -> Result<NodeProcess, String> {
        let bin = clockwise_bin();
        let mut command = Command::new(bin);
        if let Some(soft) = soft_fd_limit {
            set_soft_fd_limit(&mut command, soft);
        }
        let mut child = command
            .arg("node")
            .args(["--listen", listen, "--metrics-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                if owns_data_dir {
                    let _ = std::fs::remove_dir_all(&data_dir);
                }
                panic!("cannot start {}: {e}", bin.display())
            });

        // Both pipes are drained for the whole life of the child, so a chatty node can
        // never block on a full pipe.
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_thread = {
            let mut pipe = child.stderr.take().expect("stderr is piped");
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut text = sink.lock().unwrap_or_else(|e| e.into_inner());
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        {
            let pipe = child.stdout.take().expect("stdout is piped");
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    // The receiver goes away after startup; keep draining regardless.
                    let _ = lines_tx.send(line);
                }
            });
        }

        let mut node = NodeProcess {
            child,
            grpc: SocketAddr::from(([0, 0, 0, 0], 0)),
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            metrics: SocketAddr::from(([0, 0, 0, 0], 0)),
            data_dir,
            owns_data_dir,
            stderr,
            stderr_thread: Some(stderr_thread),
        };
        let (mut grpc, mut peer, mut metrics) = (None, None, None);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while grpc.is_none() || peer.is_none() || metrics.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines_rx.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(node.fail_startup(
                        &format!("did not print its addresses within {STARTUP_TIMEOUT:?}"),
                        Duration::ZERO,
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(node
                        .fail_startup("closed stdout before printing its addresses", EXIT_GRACE))
                }
            };
            if let Some(addr) = line.strip_prefix("listening on ") {
                grpc = Some(node.parse_addr(addr.trim(), &line));
            } else if let Some(addr) = line.strip_prefix("peers on ") {
                peer = Some(node.parse_addr(addr.trim(), &line));
            } else if let Some(rest) = line
                .strip_prefix("metrics on http://")
                .or_else(|| line.strip_prefix("metrics on https://"))
            {
                let addr = rest.trim().trim_end_matches("/metrics");
                metrics = Some(node.parse_addr(addr, &line));
            }
        }
        node.grpc = grpc.expect("loop ends with both addresses");
        node.peer = peer.expect("loop ends with every address");
        node.metrics = metrics.expect("loop ends with both addresses");
        Ok(node)
    }

    /// The gRPC address the node listens on.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The address of its raft transport (peers only).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// `http://ADDR` of the gRPC listener.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The Prometheus metrics address (`GET http://ADDR/metrics`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    /// The node's `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a graceful stop: health NOT_SERVING, then the drain).
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// Waits (polling, bounded by `within`) for the child to exit by itself; answers
    /// its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return None,
            }
        }
    }

    /// What the node has written to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A connected channel whose calls time out after [`CALL_TIMEOUT`].
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint())
            .expect("a valid endpoint URI")
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the node at {}: {e}", self.endpoint()))
    }

    /// A `clockwise.hashring.v1.HashRing` client of this node.
    pub async fn hash_ring(&self) -> HashRingClient<Channel> {
        HashRingClient::new(self.channel().await)
    }

    /// A `clockwise.chatrouter.v1.ChatRouter` client of this node.
    pub async fn chat_router(&self) -> ChatRouterClient<Channel> {
        ChatRouterClient::new(self.channel().await)
    }

    fn parse_addr(&mut self, addr: &str, line: &str) -> SocketAddr {
        match addr.parse() {
            Ok(addr) => addr,
            Err(e) => {
                let why = self.fail_startup(
                    &format!("printed an unparsable address ({e}): {line:?}"),
                    Duration::ZERO,
                );
                panic!("{why}")
            }
        }
    }

    /// Stops the child (letting it exit by itself for up to `grace`), collects its
    /// stderr and answers why it failed, with its exit status and stderr.
    fn fail_startup(&mut self, why: &str, grace: Duration) -> String {
        self.stop(grace);
        let status = self
            .child
            .try_wait()
            .ok()
            .flatten()
            .map_or_else(|| "exit status unknown".to_owned(), |s| s.to_string());
        format!(
            "clockwise node ({}) {why}; {status}; stderr:\n{}",
            clockwise_bin().display(),
            self.stderr()
        )
    }

    /// Kills the child unless it exits by itself within `grace`, reaps it and
    /// collects the rest of its stderr.
    fn stop(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.wait();
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // `child.kill()` is SIGKILL: dropping a node is a `kill -9`.
        self.stop(Duration::ZERO);
        if self.owns_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Starts `command` with a soft `RLIMIT_NOFILE` of `soft` (at most its hard limit).
fn set_soft_fd_limit(command: &mut Command, soft: u64) {
    use std::os::unix::process::CommandExt as _;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0,
        "getrlimit"
    );
    limit.rlim_cur = soft.min(limit.rlim_max);
    // SAFETY: between fork and exec the closure only calls setrlimit, which is
    // async-signal-safe, on a struct copied in before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// A free loopback address (`127.0.0.1:port`) for a node that others must know before
/// it starts. The port is free when this returns; tests take it right away.
///
/// Ports come from below the kernel's ephemeral range (32768–60999 by default): a port
/// the kernel hands out as `:0` can be taken by any outgoing connection before the node
/// binds it, and the nodes of these tests open many. Each process walks its own stretch
/// of 20000–32767 (from its pid), so concurrent test processes rarely meet either.
pub fn free_local_addr() -> String {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_700;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
        let port = LOW + (start + step) % SPAN;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
            return listener.local_addr().expect("local addr").to_string();
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").to_string()
}

/// `GET path` on a node's HTTP port (plain HTTP, one request per connection): the
/// whole response, head and body.
pub async fn http_get(addr: impl tokio::net::ToSocketAddrs, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    Ok(response)
}

/// A fresh directory under the system temp dir, unique per process and call.
pub fn unique_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("clockwise-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", dir.display()));
    dir
}
