//! The three release nodes on loopback, as child processes of this program: started
//! with default flags plus what forms the cluster, SIGKILLed, restarted on their data,
//! wiped and started again with `--join`; each one's Status asked directly (no SDK
//! retries, so a slow answer shows as slow); each one's RSS read from /proc.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clockwise_proto::cluster::v1::cluster_client::ClusterClient;
use clockwise_proto::cluster::v1::{Role, StatusRequest, StatusResponse};
use tonic::transport::{Channel, Endpoint};

use crate::report::StatusCounts;

/// Deadline of one Status call: far above any healthy answer, so only a hung node
/// reaches it. Generous because today's Status costs time in proportion to the state
/// (hundreds of ms at 1M keys): at 10M a 5 s deadline would break the run instead of
/// measuring it.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a started node may take to answer Status, and a new cluster to elect.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One node process; a restart runs it again over the same data directory.
pub struct Member {
    /// Raft id (1-based).
    pub id: u64,
    /// `--listen`: where clients call it.
    pub address: String,
    /// `--peer-listen`: where peers reach its raft transport.
    pub peer_address: String,
    /// `--metrics-listen`: its HTTP port (`GET /metrics`).
    pub metrics_address: String,
    /// `--data-dir`.
    pub dir: PathBuf,
    /// stdout and stderr of every start, appended (`--log-format json` lines).
    pub log: PathBuf,
    /// The running process; `None` while it is down on purpose.
    child: Option<Child>,
    /// Whether the run expects it to be alive: the poller fails the run when a node
    /// that should be up has exited.
    pub expected_up: bool,
    /// Whether it answered a Status since its last start: until then a failed call is
    /// the start, not an error.
    pub answered: bool,
}

impl Member {
    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(why)` when the process should be up but has exited.
    pub fn died(&mut self) -> Option<String> {
        if !self.expected_up {
            return None;
        }
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "node {} exited unexpectedly ({status}); its log: {}",
                self.id,
                self.log.display()
            )),
            Ok(None) => None,
            Err(e) => Some(format!("node {}: cannot check its process: {e}", self.id)),
        }
    }

    /// Starts `clockwise node` with `flags` after the ones every start has.
    fn spawn(&mut self, bin: &Path, flags: &[String]) -> io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(bin);
        command
            // JSON lines, so the snapshot lines' fields are read without guessing at
            // the text layout; verbosity stays the default (info).
            .args(["--log-format", "json", "node", "--id"])
            .arg(self.id.to_string())
            .args([
                "--listen",
                &self.address,
                "--peer-listen",
                &self.peer_address,
                "--metrics-listen",
                &self.metrics_address,
            ])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(flags)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // If this program dies without killing its nodes (SIGKILL, an abort), the
        // kernel kills them too: no node outlives a run.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {}: {e}", bin.display()))
        })?;
        self.child = Some(child);
        self.expected_up = true;
        self.answered = false;
        Ok(())
    }

    /// SIGKILL, as in a crash; the run stops expecting it up.
    pub fn kill(&mut self) {
        self.expected_up = false;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cluster: three members, raft ids 1–3 at indexes 0–2, and a channel to each.
pub struct Nodes {
    bin: PathBuf,
    /// `--peers` of the founders.
    peers: String,
    /// Locked only for short sections without an `.await` (spawn, kill, try_wait).
    pub members: Mutex<Vec<Member>>,
    channels: Vec<Channel>,
}

impl Nodes {
    /// Starts three founders (`--initial-cluster-state new`) with data and logs under
    /// `dir`; waits (bounded) until each answers Status and one leads.
    pub async fn start(bin: &Path, dir: &Path) -> Result<Nodes, String> {
        let addresses = free_addresses(9).map_err(|e| format!("free ports: {e}"))?;
        let mut members = Vec::new();
        for i in 0..3 {
            let id = i as u64 + 1;
            members.push(Member {
                id,
                address: addresses[i].clone(),
                peer_address: addresses[i + 3].clone(),
                metrics_address: addresses[i + 6].clone(),
                dir: dir.join(format!("node-{id}")),
                log: dir.join(format!("node-{id}.log")),
                child: None,
                expected_up: false,
                answered: false,
            });
        }
        let peers = members
            .iter()
            .map(|m| format!("{}={}/{}", m.id, m.address, m.peer_address))
            .collect::<Vec<_>>()
            .join(",");
        let channels = members
            .iter()
            .map(|m| {
                Endpoint::from_shared(format!("http://{}", m.address))
                    .map(|e| e.timeout(STATUS_TIMEOUT).connect_lazy())
                    .map_err(|e| format!("{}: {e}", m.address))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nodes = Nodes {
            bin: bin.to_path_buf(),
            peers,
            members: Mutex::new(members),
            channels,
        };
        for i in 0..3 {
            nodes.start_founder(i, "new")?;
        }
        for i in 0..3 {
            nodes.wait_answering(i).await?;
        }
        nodes.leader().await?;
        Ok(nodes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Starts node `i` with the founders' flags: `--initial-cluster-state new` the first
    /// time, `existing` on a restart over its data (as `clockwise cluster up` does).
    pub fn start_founder(&self, i: usize, state: &str) -> Result<(), String> {
        let flags = [
            "--peers".to_owned(),
            self.peers.clone(),
            "--initial-cluster-state".to_owned(),
            state.to_owned(),
        ];
        let mut members = self.lock();
        members[i]
            .spawn(&self.bin, &flags)
            .map_err(|e| e.to_string())
    }

    /// Starts node `i` empty, waiting for `AddMember` (`--join`), as docs/api.md says a
    /// node whose data was lost comes back.
    pub fn start_joining(&self, i: usize) -> Result<(), String> {
        let mut members = self.lock();
        members[i]
            .spawn(&self.bin, &["--join".to_owned()])
            .map_err(|e| e.to_string())
    }

    /// SIGKILLs node `i`.
    pub fn kill(&self, i: usize) {
        self.lock()[i].kill();
    }

    /// Node `i` is about to stop on purpose (e.g. removed from the cluster).
    pub fn expect_down(&self, i: usize) {
        self.lock()[i].expected_up = false;
    }

    /// SIGKILLs node `i` and deletes its data directory.
    pub fn wipe(&self, i: usize) -> Result<(), String> {
        let mut members = self.lock();
        members[i].kill();
        let dir = &members[i].dir;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot delete {}: {e}", dir.display())),
        }
    }

    /// Node `i`'s (id, address, peer address).
    pub fn identity(&self, i: usize) -> (u64, String, String) {
        let members = self.lock();
        let m = &members[i];
        (m.id, m.address.clone(), m.peer_address.clone())
    }

    pub fn addresses(&self) -> Vec<String> {
        self.lock().iter().map(|m| m.address.clone()).collect()
    }

    pub fn logs(&self) -> Vec<(u64, PathBuf)> {
        self.lock().iter().map(|m| (m.id, m.log.clone())).collect()
    }

    /// Whether the run expects node `i` to be up now.
    pub fn expected_up(&self, i: usize) -> bool {
        self.lock()[i].expected_up
    }

    /// Whether node `i` answered a Status since its last start.
    pub fn answered(&self, i: usize) -> bool {
        self.lock()[i].answered
    }

    /// Why the run is broken, if a node that should be up has exited.
    pub fn died(&self) -> Option<String> {
        self.lock().iter_mut().find_map(Member::died)
    }

    /// VmRSS in bytes of each node that runs (`None` for one that does not).
    pub fn rss(&self) -> Vec<Option<u64>> {
        let pids: Vec<Option<u32>> = self.lock().iter().map(Member::pid).collect();
        pids.into_iter().map(|pid| rss_bytes(pid?)).collect()
    }

    /// Node `i`'s own Status, and how long it took to answer.
    pub async fn status(&self, i: usize) -> Result<(StatusResponse, Duration), String> {
        self.status_via(i, self.channels[i].clone()).await
    }

    /// [`Self::status`] over `channel` (a connection to node `i` of the caller's own).
    pub async fn status_via(
        &self,
        i: usize,
        channel: Channel,
    ) -> Result<(StatusResponse, Duration), String> {
        let mut client = ClusterClient::new(channel);
        let began = Instant::now();
        let answer = client.status(StatusRequest {}).await;
        let took = began.elapsed();
        if answer.is_ok() {
            self.lock()[i].answered = true;
        }
        answer
            .map(|r| (r.into_inner(), took))
            .map_err(|e| format!("node {}: Status: {}", i + 1, e.message()))
    }

    /// Node `i`'s own count of the Status calls it served since it started, and of
    /// those it answered within 1 ms (`clockwise_rpc_duration_seconds`: from the call's
    /// arrival at its tower layer to its answer), from its `/metrics`.
    pub async fn status_inside(&self, i: usize) -> Result<StatusCounts, String> {
        let address = self.lock()[i].metrics_address.clone();
        let page = tokio::time::timeout(
            STATUS_TIMEOUT,
            clockwise_tests::http_get(&address, "/metrics"),
        )
        .await
        .map_err(|_| format!("node {}: /metrics: no answer", i + 1))?
        .map_err(|e| format!("node {}: /metrics: {e}", i + 1))?;
        let series = |name: &str| {
            page.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let method = "method=\"/clockwise.cluster.v1.Cluster/Status\"";
        let total = series(&format!("clockwise_rpc_duration_seconds_count{{{method}}}"));
        let within = series(&format!(
            "clockwise_rpc_duration_seconds_bucket{{{method},le=\"0.001\"}}"
        ));
        total
            .zip(within)
            .map(|(served, within_1ms)| StatusCounts { served, within_1ms })
            .ok_or_else(|| format!("node {}: /metrics has no Status histogram", i + 1))
    }

    /// Waits (bounded) until node `i` answers Status.
    pub async fn wait_answering(&self, i: usize) -> Result<Duration, String> {
        let began = Instant::now();
        settle(&format!("node {} answering Status", i + 1), async || {
            self.status(i).await.ok().map(|_| began.elapsed())
        })
        .await
    }

    /// The index of the node that leads (the first one saying so), waiting (bounded).
    pub async fn leader(&self) -> Result<usize, String> {
        settle("a leader", async || {
            for i in 0..self.len() {
                if !self.expected_up(i) {
                    continue;
                }
                if let Ok((s, _)) = self.status(i).await {
                    if s.role == Role::Leader as i32 {
                        return Some(i);
                    }
                }
            }
            None
        })
        .await
    }

    /// The Status of the node that says it leads (of the highest term, if two do), all
    /// asked at once: a node slow to answer (replaying its log) does not hold up the
    /// check.
    pub async fn leader_status(&self) -> Result<StatusResponse, String> {
        let answers = futures::future::join_all((0..self.len()).map(|i| self.status(i))).await;
        answers
            .into_iter()
            .filter_map(Result::ok)
            .map(|(s, _)| s)
            .filter(|s| s.role == Role::Leader as i32)
            .max_by_key(|s| s.term)
            .ok_or_else(|| "no node says it leads".into())
    }
}

/// VmRSS of `pid` in bytes, from /proc/PID/status.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `127.0.0.1:PORT` addresses free now: `count` listeners on port 0, held until all are
/// chosen so no two are the same.
fn free_addresses(count: usize) -> io::Result<Vec<String>> {
    let probes = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    probes
        .iter()
        .map(|p| Ok(p.local_addr()?.to_string()))
        .collect()
}

/// Polls `check` every 50 ms until it answers `Some`, or fails naming `what` after
/// [`START_TIMEOUT`].
async fn settle<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(found) = check().await {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {START_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
