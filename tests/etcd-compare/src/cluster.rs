//! The two 3-member clusters on loopback, as child processes of this program: started,
//! SIGKILLed and restarted one member at a time, and asked who leads.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clockwise_client::{Client, Role};
use etcd_client::ConnectOptions;

/// Per-call timeout of the etcd clients in the timed cells: far above any latency
/// seen, so it never decides a result. (The clockwise SDK keeps its defaults: 5 s per
/// attempt, retries with backoff, circuit breakers.)
pub const ETCD_TIMEOUT: Duration = Duration::from_secs(1);

/// The same during a failover trial. An etcd follower that has not noticed the leader
/// died forwards a write to it and the call then waits for etcd's own request timeout
/// (7 s by default), so only the client's timeout gets it retried; the shorter, the
/// sooner (1 s measured elections of 1.3 s as 2 s). A clockwise follower instead holds
/// the call, retrying the forward until a leader answers, so the SDK's defaults serve
/// it best: cut at 200 ms, its attempts through followers time out and open the followers'
/// circuit breakers, which then refuse calls for 5 s.
pub const ETCD_FAILOVER_TIMEOUT: Duration = Duration::from_millis(200);

/// How long an election or a restarted member's catch-up may take before the run fails.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One member process; a restart runs the same command over the same data directory.
pub struct Member {
    command: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn new(command: Vec<String>, log: PathBuf) -> io::Result<Self> {
        let mut member = Member {
            command,
            log,
            child: None,
        };
        member.start()?;
        Ok(member)
    }

    /// Starts the process (stdout and stderr appended to its log).
    pub fn start(&mut self) -> io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // If this program dies without dropping its members (SIGKILL, a panic that
        // aborts), the kernel kills them too: no node or etcd outlives a run.
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
            io::Error::new(e.kind(), format!("cannot start {}: {e}", self.command[0]))
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as in a crash: no shutdown, nothing written that was not already fsync'd.
    pub fn kill(&mut self) {
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

/// User plus system CPU time of process `pid` (`"self"` for this one) so far; zero if it
/// is gone.
pub fn cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is the first, utime and stime the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / per_second)
}

/// What the load generator needs from either cluster.
pub trait System {
    /// The members, in a fixed order.
    fn members(&self) -> &[Member];

    /// The same, to kill and restart them.
    fn members_mut(&mut self) -> &mut [Member];

    /// CPU time the members used so far (a restarted member's counts anew).
    fn cpu_time(&self) -> Duration {
        let pids = self.members().iter().filter_map(|m| m.child.as_ref());
        pids.map(|child| cpu_time(&child.id().to_string())).sum()
    }

    /// The index of the member that leads, waiting (bounded) for an election.
    async fn leader(&self) -> usize;

    /// Waits (bounded) until every member answers, they agree on a leader, and member
    /// `i` has applied everything that leader has.
    async fn caught_up(&self, i: usize);
}

/// `127.0.0.1:PORT` addresses free now: `count` listeners on port 0, held until all are
/// chosen so no two are the same.
pub fn free_addresses(count: usize) -> io::Result<Vec<String>> {
    let probes = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    probes
        .iter()
        .map(|p| Ok(p.local_addr()?.to_string()))
        .collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Polls `check` every 50 ms until it answers `Some`, or panics with `what` after
/// [`SETTLE_TIMEOUT`].
async fn settle<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {SETTLE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three `clockwise node` processes, raft ids 1–3, in that order.
pub struct Clockwise {
    members: Vec<Member>,
    addresses: Vec<String>,
    /// Asks each node for its own status (`Cluster::statuses` bypasses the breakers).
    admin: Client,
}

impl Clockwise {
    /// Starts a new group: node i serves clients on `addresses[i]` and peers on
    /// `peer_addresses[i]`, with data under `dir` and `workers` tokio threads.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        addresses: Vec<String>,
        peer_addresses: &[String],
        workers: &str,
    ) -> io::Result<Self> {
        let peers = addresses
            .iter()
            .zip(peer_addresses)
            .enumerate()
            .map(|(i, (a, p))| format!("{}={a}/{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (address, peer_address)) in addresses.iter().zip(peer_addresses).enumerate() {
            let id = (i + 1).to_string();
            let command = vec![
                path(bin),
                "node".into(),
                "--id".into(),
                id.clone(),
                "--listen".into(),
                address.clone(),
                "--peer-listen".into(),
                peer_address.clone(),
                "--peers".into(),
                peers.clone(),
                "--initial-cluster-state".into(),
                "new".into(),
                "--data-dir".into(),
                path(&dir.join(format!("clockwise-{id}"))),
                "--worker-threads".into(),
                workers.into(),
            ];
            members.push(Member::new(
                command,
                dir.join(format!("clockwise-{id}.log")),
            )?);
        }
        let admin = Client::builder()
            .endpoints(addresses.clone())
            .build()
            .await
            .map_err(io::Error::other)?;
        Ok(Clockwise {
            members,
            addresses,
            admin,
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.addresses
    }

    /// Each member's status, by index; `None` where it did not answer.
    async fn statuses(&self) -> Vec<Option<clockwise_client::NodeStatus>> {
        let mut by_index = vec![None; self.addresses.len()];
        for (address, status) in self.admin.cluster().statuses().await {
            if let (Some(i), Ok(status)) =
                (self.addresses.iter().position(|a| *a == address), status)
            {
                by_index[i] = Some(status);
            }
        }
        by_index
    }
}

impl System for Clockwise {
    fn members(&self) -> &[Member] {
        &self.members
    }

    fn members_mut(&mut self) -> &mut [Member] {
        &mut self.members
    }

    async fn leader(&self) -> usize {
        settle("clockwise leader", async || {
            self.statuses()
                .await
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.role == Role::Leader))
        })
        .await
    }

    async fn caught_up(&self, i: usize) {
        settle("clockwise member caught up", async || {
            let statuses: Option<Vec<_>> = self.statuses().await.into_iter().collect();
            let statuses = statuses?;
            let leader = statuses.iter().find(|s| s.role == Role::Leader)?;
            let agreed = statuses.iter().all(|s| s.leader_id == leader.id);
            (agreed && statuses[i].applied_index >= leader.commit_index).then_some(())
        })
        .await
    }
}

/// Three etcd members, `m1`–`m3`, in that order.
pub struct Etcd {
    members: Vec<Member>,
    urls: Vec<String>,
    /// One client per member, to ask each for its own status.
    each: Vec<etcd_client::Client>,
}

/// An etcd client's options: `attempt` per call and per connection attempt.
pub fn etcd_options(attempt: Duration) -> ConnectOptions {
    ConnectOptions::new()
        .with_timeout(attempt)
        .with_connect_timeout(attempt)
}

impl Etcd {
    /// Starts a new cluster: `clients[i]` and `peers[i]` are member i's addresses, its
    /// data under `dir`. etcd's defaults otherwise: the WAL is fsync'd on every commit.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        clients: &[String],
        peers: &[String],
    ) -> io::Result<Self> {
        let initial_cluster = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{}=http://{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in clients.iter().zip(peers).enumerate() {
            let name = format!("m{}", i + 1);
            let flags = [
                ("--name", name.clone()),
                ("--data-dir", path(&dir.join(format!("etcd-{name}")))),
                ("--listen-client-urls", format!("http://{client}")),
                ("--advertise-client-urls", format!("http://{client}")),
                ("--listen-peer-urls", format!("http://{peer}")),
                ("--initial-advertise-peer-urls", format!("http://{peer}")),
                ("--initial-cluster", initial_cluster.clone()),
                ("--initial-cluster-token", "clockwise-etcd-compare".into()),
                // Read only on the first start; a restart rejoins from its data dir.
                ("--initial-cluster-state", "new".into()),
                ("--logger", "zap".into()),
                ("--log-level", "warn".into()),
            ];
            let mut command = vec![path(bin)];
            command.extend(flags.into_iter().map(|(k, v)| format!("{k}={v}")));
            members.push(Member::new(command, dir.join(format!("etcd-{name}.log")))?);
        }
        let urls: Vec<String> = clients.iter().map(|c| format!("http://{c}")).collect();
        let mut each = Vec::new();
        for url in &urls {
            let client = etcd_client::Client::connect([url], Some(etcd_options(ETCD_TIMEOUT)))
                .await
                .map_err(io::Error::other)?;
            each.push(client);
        }
        Ok(Etcd {
            members,
            urls,
            each,
        })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Each member's (own id, leader id, raft index, applied index), by index; `None`
    /// where it did not answer.
    async fn statuses(&self) -> Vec<Option<(u64, u64, u64, u64)>> {
        let mut all = Vec::new();
        for client in &self.each {
            let status = client.maintenance_client().status().await.ok();
            all.push(status.and_then(|s| {
                let id = s.header()?.member_id();
                Some((id, s.leader(), s.raft_index(), s.raft_applied_index()))
            }));
        }
        all
    }
}

impl System for Etcd {
    fn members(&self) -> &[Member] {
        &self.members
    }

    fn members_mut(&mut self) -> &mut [Member] {
        &mut self.members
    }

    async fn leader(&self) -> usize {
        settle("etcd leader", async || {
            self.statuses()
                .await
                .iter()
                .position(|s| s.is_some_and(|(id, leader, ..)| id == leader))
        })
        .await
    }

    async fn caught_up(&self, i: usize) {
        settle("etcd member caught up", async || {
            let statuses: Option<Vec<_>> = self.statuses().await.into_iter().collect();
            let statuses = statuses?;
            let &(_, leader, leader_index, _) = statuses.iter().find(|s| s.0 == s.1)?;
            let agreed = statuses.iter().all(|s| s.1 == leader);
            (agreed && statuses[i].3 >= leader_index).then_some(())
        })
        .await
    }
}
