//! `clockwise cluster up` as a supervisor, against the real binary: a SIGKILL'd leader
//! is restarted and catches up while the others keep taking writes; `--no-restart`
//! leaves it down; a node whose data dir was wiped rejoins under a second `cluster up`;
//! SIGINT stops every node.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clockwise_client::{Client, NodeStatus, Role};
use clockwise_tests::{clockwise_bin, unique_temp_dir};

/// How long `cluster up` may take to print that the cluster is up.
const UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restarted node may take to serve again, caught up.
const BACK_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `cluster up` may take to stop every node and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `clockwise cluster up --nodes 3` on free ports over its own data dir.
struct ClusterUp {
    child: Option<Child>,
    base_port: u16,
    data: PathBuf,
    /// Whether dropping it removes `data`.
    owns_data: bool,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

/// Three client ports in a row, and the peer ports 100 above them, all free now.
/// Ports come from below the kernel's ephemeral range, walked from the pid, as
/// `free_local_addr` does.
fn free_base_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_500;
    // Half the span away from where `free_local_addr` walks in this same process (it
    // starts from the same pid-derived point): a port checked free here and released
    // could otherwise be handed to another test's node before `cluster up` binds it.
    let start = (std::process::id().wrapping_mul(2_654_435_761) % SPAN + SPAN / 2) % SPAN;
    for _ in 0..SPAN {
        let base = (LOW + (start + NEXT.fetch_add(3, Ordering::Relaxed)) % SPAN) as u16;
        // Client, peer and HTTP ports (`cluster up` puts them 100 and 200 above).
        let ports = [0, 1, 2, 100, 101, 102, 200, 201, 202].map(|d| base + d);
        let held: Vec<_> = ports
            .iter()
            .map_while(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == ports.len() {
            return base;
        }
    }
    panic!("no nine free ports for a local cluster");
}

fn drain(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut text = sink.lock().unwrap_or_else(|e| e.into_inner());
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl ClusterUp {
    /// Starts `cluster up` over `data` (a fresh dir when `None`) and waits until it says
    /// the cluster is up.
    fn start(data: Option<PathBuf>, base_port: Option<u16>, extra: &[&str]) -> ClusterUp {
        let data = data.unwrap_or_else(unique_temp_dir);
        let base_port = base_port.unwrap_or_else(free_base_port);
        let mut child = Command::new(clockwise_bin())
            .args(["cluster", "up", "--nodes", "3", "--base-port"])
            .arg(base_port.to_string())
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start clockwise cluster up");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        drain(child.stdout.take().expect("piped"), stdout.clone());
        drain(child.stderr.take().expect("piped"), stderr.clone());
        let mut up = ClusterUp {
            child: Some(child),
            base_port,
            data,
            owns_data: true,
            stdout,
            stderr,
        };
        up.wait_output("is up", UP_TIMEOUT, |up| up.stdout().contains("is up"));
        up
    }

    fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Polls `done` until `timeout`; panics with `cluster up`'s output when it never holds
    /// or when `cluster up` exited.
    fn wait_output(&mut self, what: &str, timeout: Duration, done: impl Fn(&ClusterUp) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "cluster up: waiting for {what:?} ({exited:?}); stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.base_port + id as u16 - 1)
    }

    fn addrs(&self) -> Vec<String> {
        (1..=3).map(|id| self.addr(id)).collect()
    }

    fn node_dir(&self, id: u64) -> PathBuf {
        self.data.join(format!("node-{id}"))
    }

    /// The pid `cluster up` wrote for node `id`, if it is running.
    fn pid(&self, id: u64) -> Option<i32> {
        std::fs::read_to_string(self.node_dir(id).join("node.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Sends `signal` to `cluster up` and waits (bounded) for it to exit.
    fn signal_and_wait(&mut self, signal: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().expect("cluster up is running");
        // SAFETY: kill(2) on our own child process, not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for cluster up") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cluster up did not exit within {STOP_TIMEOUT:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ClusterUp {
    fn drop(&mut self) {
        // SIGTERM, so cluster up stops its nodes; whatever it leaves is killed by pid.
        if self.child.is_some() {
            let pids: Vec<i32> = (1..=3).filter_map(|id| self.pid(id)).collect();
            let mut child = self.child.take().expect("checked");
            unsafe {
                // SAFETY: kill(2) on our own child, not reaped yet.
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            for pid in pids {
                if alive(pid) {
                    // SAFETY: kill(2) on a node that cluster up left behind.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        if self.owns_data {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

/// Whether a process `pid` exists (and is not a zombie).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `Z` is a zombie.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn sigkill(pid: i32) {
    // SAFETY: kill(2) on a node process the test means to kill.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}");
}

async fn client(endpoints: Vec<String>) -> Client {
    Client::builder()
        .endpoints(endpoints)
        .timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("a client")
}

/// Each endpoint's own status (`None` where it does not answer).
async fn statuses(up: &ClusterUp) -> Vec<Option<NodeStatus>> {
    let mut all = Vec::new();
    for addr in up.addrs() {
        let one = Client::builder()
            .endpoints([addr.clone()])
            .timeout(Duration::from_secs(2))
            .attempt_timeout(Duration::from_secs(1))
            .build()
            .await
            .expect("a client");
        let status = one
            .cluster()
            .statuses()
            .await
            .into_iter()
            .find(|(endpoint, _)| *endpoint == addr)
            .and_then(|(_, status)| status.ok());
        all.push(status);
    }
    all
}

/// Waits until all three nodes answer, are voters, have applied at least `index`, and
/// report one state digest and one cluster id; answers that digest.
async fn wait_converged(up: &ClusterUp, index: u64, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let all = statuses(up).await;
        let converged = all.iter().all(|s| {
            s.as_ref().is_some_and(|s| {
                s.applied_index >= index
                    && s.role != Role::Learner
                    && s.state_digest == all[0].as_ref().expect("some").state_digest
                    // One cluster: every node reports the same id.
                    && !s.cluster_id.is_empty()
                    && s.cluster_id == all[0].as_ref().expect("some").cluster_id
            })
        });
        if converged {
            return all[0].as_ref().expect("answered").state_digest.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not converge at index {index} within {timeout:?}: {all:#?}\n\
             cluster up stderr:\n{}",
            up.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_restarted_and_catches_up_while_the_others_serve() {
    let mut up = ClusterUp::start(None, None, &[]);
    let all = client(up.addrs()).await;
    let ring = all.hash_ring("up");
    assert!(ring.add_node("n").await.unwrap());
    let leader = all.cluster().status().await.unwrap().leader_id;
    assert!((1..=3).contains(&leader), "a leader: {leader}");
    let pid = up.pid(leader).expect("cluster up wrote the leader's pid");
    assert!(alive(pid));

    sigkill(pid);
    let killed = Instant::now();
    // Writes through the other two nodes only, acknowledged once they elected a leader.
    let others = client(
        (1..=3)
            .filter(|&id| id != leader)
            .map(|id| up.addr(id))
            .collect(),
    )
    .await;
    let owner = others
        .hash_ring("up")
        .store_key("after-the-kill")
        .await
        .unwrap();
    let took = killed.elapsed();
    assert_eq!(owner.as_deref(), Some("n"));
    // Raft elects after 10–20 ticks of 30 ms without a heartbeat (0.3–0.6 s), so about
    // half a second is the design; the bound leaves room for a loaded machine.
    assert!(
        took < Duration::from_secs(2),
        "a write through another node took {took:?} after the leader's kill"
    );

    // It comes back by itself: a new pid, serving, caught up.
    up.wait_output("the restart", BACK_TIMEOUT, |up| {
        up.stderr()
            .contains(&format!("node {leader} is serving again"))
    });
    assert!(up
        .stderr()
        .contains(&format!("node {leader} exited (signal: 9")));
    let restarted = up.pid(leader).expect("a pid for the restarted node");
    assert_ne!(restarted, pid);
    let index = others.cluster().status().await.unwrap().commit_index;
    wait_converged(&up, index, BACK_TIMEOUT.saturating_sub(killed.elapsed())).await;
    assert!(
        killed.elapsed() < BACK_TIMEOUT,
        "back and caught up after {:?}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_restart_a_killed_node_stays_down_while_the_others_serve() {
    let mut up = ClusterUp::start(None, None, &["--no-restart"]);
    let all = client(up.addrs()).await;
    let leader = all.cluster().status().await.unwrap().leader_id;
    let victim = (1..=3).find(|&id| id != leader).expect("a follower");
    let pid = up.pid(victim).expect("its pid");
    sigkill(pid);
    up.wait_output("the exit", BACK_TIMEOUT, |up| {
        up.stderr().contains(&format!(
            "node {victim} exited (signal: 9 (SIGKILL)); left down"
        ))
    });
    let ring = all.hash_ring("up");
    assert!(ring.add_node("n").await.unwrap());
    for i in 0..20 {
        ring.store_key(&format!("k{i}")).await.unwrap();
    }
    assert!(!up.stderr().contains("serving again"), "{}", up.stderr());
    assert_eq!(up.pid(victim), None, "no pid file for a node that is down");
    assert!(!alive(pid));
    assert!(
        std::net::TcpStream::connect(up.addr(victim)).is_err(),
        "nothing serves on node {victim}'s port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rejoins_under_a_second_cluster_up_with_the_data() {
    let mut first = ClusterUp::start(None, None, &[]);
    let (data, base_port) = (first.data.clone(), first.base_port);
    let all = client(first.addrs()).await;
    let ring = all.hash_ring("up");
    assert!(ring.add_node("n").await.unwrap());
    for i in 0..30 {
        ring.store_key(&format!("k{i}")).await.unwrap();
    }
    let index = all.cluster().status().await.unwrap().commit_index;
    wait_converged(&first, index, BACK_TIMEOUT).await;
    assert!(first.signal_and_wait(libc::SIGTERM).success());
    drop(all);
    // The data stays for the second `cluster up`, which owns it from now on.
    first.owns_data = false;
    drop(first);

    std::fs::remove_dir_all(data.join("node-2")).unwrap();
    let second = ClusterUp::start(Some(data), Some(base_port), &[]);
    assert!(
        second.stderr().contains("node 2 has no raft log"),
        "{}",
        second.stderr()
    );
    let all = client(second.addrs()).await;
    let index = all.cluster().status().await.unwrap().commit_index;
    wait_converged(&second, index, Duration::from_secs(30)).await;
    // Node 2 alone answers with the data (a stale read of its own replica).
    let node2 = client(vec![second.addr(2)]).await;
    let status = node2.cluster().statuses().await;
    let own = status
        .iter()
        .find(|(addr, _)| *addr == second.addr(2))
        .and_then(|(_, s)| s.as_ref().ok())
        .expect("node 2 answers");
    assert_eq!(own.id, 2);
    assert!(own.members.iter().any(|m| m.id == 2 && !m.learner));
    assert_eq!(all.hash_ring("up").get_load("n").await.unwrap(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_every_node() {
    let mut up = ClusterUp::start(None, None, &[]);
    let pids: Vec<i32> = (1..=3)
        .map(|id| up.pid(id).expect("a pid per node"))
        .collect();
    assert!(pids.iter().all(|&pid| alive(pid)));
    let status = up.signal_and_wait(libc::SIGINT);
    assert!(status.success(), "{status}; stderr:\n{}", up.stderr());
    for (id, pid) in (1..=3).zip(pids) {
        assert!(!alive(pid), "node {id} (pid {pid}) outlived cluster up");
        assert_eq!(up.pid(id), None, "node {id}'s pid file is gone");
    }
}
