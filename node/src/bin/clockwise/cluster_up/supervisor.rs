//! One node of `cluster up` under supervision: started with its output appended to
//! `DIR/node.log` and its pid in `DIR/node.pid`, restarted after an exponential backoff
//! when it exits (unless `--no-restart`), stopped with SIGTERM (then SIGKILL) when the
//! whole cluster stops.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// The first restart waits this long; each further one twice as long…
pub const RESTART_MIN: Duration = Duration::from_millis(500);
/// …up to this.
pub const RESTART_MAX: Duration = Duration::from_secs(8);
/// A node that served this long before it exited is restarted after [`RESTART_MIN`] again.
pub const STABLE: Duration = Duration::from_secs(10);
/// How long a node may take to print `listening on` after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where one node of the local cluster lives.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Raft id (1-based).
    pub id: u64,
    /// Its `--listen`.
    pub addr: String,
    /// Its `--peer-listen`.
    pub peer_addr: String,
    /// Its `--metrics-listen`: `/metrics` and the ring dashboard.
    pub http_addr: String,
    /// Its `--data-dir`: DATA/node-ID.
    pub dir: PathBuf,
}

impl NodeSpec {
    /// Its output (stdout and stderr), appended across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    /// The running process's pid (absent while it is down).
    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("node.pid")
    }

    /// Whether its data dir holds a raft log (a node that ran before); a node whose
    /// data is gone has none.
    pub fn has_raft_log(&self) -> bool {
        has_raft_log(&self.dir)
    }
}

/// Whether `dir` (a node's --data-dir) holds raft-engine log files.
pub fn has_raft_log(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("raft").join("log")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|ext| ext == "raftlog"))
    })
}

/// How every `clockwise node` of the cluster is started: the one place its flags are put
/// together (a flag every node needs is one line here).
pub struct Launch {
    /// The `clockwise` executable.
    pub exe: PathBuf,
    /// `--peers` of the founders.
    pub peers: String,
    /// Whether this `cluster up` founds the cluster (no node had a raft log): only then
    /// does a node without a log start with `--initial-cluster-state new`. Otherwise a
    /// node whose data is gone refuses to start instead of founding a cluster of its own.
    pub founding: bool,
}

impl Launch {
    fn command(&self, spec: &NodeSpec, join: bool) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .arg("node")
            .args(["--id", &spec.id.to_string()])
            .args(["--listen", &spec.addr])
            .args(["--peer-listen", &spec.peer_addr])
            .args(["--metrics-listen", &spec.http_addr])
            .arg("--data-dir")
            .arg(&spec.dir)
            .args(["--worker-threads", "1"]);
        if join {
            command.arg("--join");
        } else {
            let state = if self.founding && !spec.has_raft_log() {
                "new"
            } else {
                "existing"
            };
            command
                .args(["--peers", &self.peers])
                .args(["--initial-cluster-state", state]);
        }
        command
    }

    /// Starts the node with stdout and stderr appended to its log and its pid written
    /// down; `serving` fires when it prints `listening on`.
    async fn spawn(
        &self,
        spec: &NodeSpec,
        join: bool,
        serving: oneshot::Sender<()>,
    ) -> std::io::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log_path())?;
        let mut child = self
            .command(spec, join)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone()?))
            // Its own process group: a terminal's Ctrl-C reaches `cluster up` alone, which
            // then stops every node itself (and does not mistake the stop for a crash).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        if let Some(pid) = child.id() {
            std::fs::write(spec.pid_path(), format!("{pid}\n"))?;
        }
        // Copy stdout into the log (so it never blocks), watching for `listening on`.
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("the node's stdout is not piped"))?;
        // Appending a line to a local file does not block for long: plain std I/O (this
        // binary's tokio has no `fs`).
        let mut log = log;
        tokio::spawn(async move {
            let mut serving = Some(serving);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("listening on") {
                    if let Some(tx) = serving.take() {
                        let _ = tx.send(());
                    }
                }
                let _ = writeln!(log, "{line}");
            }
        });
        Ok(child)
    }
}

/// What a node's first start came to, for `cluster up` to wait on.
pub type FirstStart = oneshot::Receiver<Result<(), String>>;

/// Runs node `spec` until `stop` turns true: starts it, and restarts it after a backoff
/// each time it exits (not with `no_restart`). `first` answers whether its first start
/// served; a first start that fails is not retried (a taken port, a bad data dir).
pub async fn supervise(
    launch: std::sync::Arc<Launch>,
    spec: NodeSpec,
    join: bool,
    no_restart: bool,
    first: oneshot::Sender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) {
    let id = spec.id;
    let mut first = Some(first);
    let mut backoff = RESTART_MIN;
    loop {
        let (serving_tx, serving_rx) = oneshot::channel();
        let mut child = match launch.spawn(&spec, join, serving_tx).await {
            Ok(child) => child,
            Err(e) => {
                let why = format!("node {id} cannot be started: {e}");
                match first.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(why));
                        return;
                    }
                    None => {
                        eprintln!("clockwise cluster: {why}; retrying in {backoff:?}");
                        if !pause(&mut stop, &mut backoff).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let started = Instant::now();
        // Until it serves: it may exit, stall, or the cluster may stop.
        let start_failure = tokio::select! {
            served = tokio::time::timeout(START_TIMEOUT, serving_rx) => match served {
                Ok(Ok(())) => None,
                Ok(Err(_)) => Some("closed its output before serving".to_owned()),
                Err(_) => Some(format!("did not serve within {START_TIMEOUT:?}")),
            },
            _ = stop.changed() => {
                terminate(&mut child, &spec).await;
                return;
            }
        };
        match (start_failure, first.take()) {
            (None, Some(tx)) => {
                let _ = tx.send(Ok(()));
            }
            (None, None) => eprintln!("clockwise cluster: node {id} is serving again"),
            (Some(why), Some(tx)) => {
                terminate(&mut child, &spec).await;
                let _ = tx.send(Err(format!(
                    "node {id} on {} {why}; is the port free? (its log: {})",
                    spec.addr,
                    spec.log_path().display()
                )));
                return;
            }
            (Some(why), None) => {
                eprintln!("clockwise cluster: node {id} {why}");
                let _ = child.start_kill();
            }
        }
        let status = tokio::select! {
            status = child.wait() => status,
            _ = stop.changed() => {
                terminate(&mut child, &spec).await;
                return;
            }
        };
        let _ = std::fs::remove_file(spec.pid_path());
        let status = describe(status);
        if no_restart {
            eprintln!("clockwise cluster: node {id} exited ({status}); left down (--no-restart)");
            return;
        }
        if started.elapsed() >= STABLE {
            backoff = RESTART_MIN;
        }
        eprintln!("clockwise cluster: node {id} exited ({status}); restarting in {backoff:?}");
        if !pause(&mut stop, &mut backoff).await {
            return;
        }
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}

/// Waits out `backoff` (then doubles it, up to [`RESTART_MAX`]); false when the cluster
/// stops meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(RESTART_MAX);
    tokio::select! {
        _ = tokio::time::sleep(wait) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

/// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL; reaped either way.
async fn terminate(child: &mut Child, spec: &NodeSpec) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        eprintln!(
            "clockwise cluster: node {} did not stop within {STOP_GRACE:?}; killing it",
            spec.id
        );
        let _ = child.kill().await;
    }
    let _ = std::fs::remove_file(spec.pid_path());
}
