//! Clusters of real `clockwise node` processes (`TestCluster`, mostly three nodes) and
//! the `clockwise` command line against them. One test binary (one link) for the
//! suites that share that setup:
//!
//! - [`replication`]: writes through any node are seen through every other; no
//!   acknowledged write is lost to SIGKILL; snapshots, membership, leadership.
//! - [`sdk`]: the client SDK across kills, dead endpoints and lost quorum.
//! - [`ctl`]: every `clockwise ctl` subcommand, in text and JSON.
//! - [`dashboard`]: the ring dashboard and its JSON on a real node's HTTP port.
//! - [`identity`]: one cluster id; founding is explicit; a wiped member cannot vote.
//! - [`backup`]: `clockwise backup save` / `restore` of a whole cluster.
//! - [`snapshots`]: snapshots built off the driver thread while writes go on, restarts
//!   from a snapshot file plus log, a wiped member caught up by a streamed snapshot.
//! - [`readiness`]: `GET /readyz` with and without a quorum.
//! - [`health`]: raft's election lines in the node log; health NOT_SERVING without a
//!   quorum and from SIGTERM on; the drain bounded by `--shutdown-timeout-ms`; the
//!   SDK's `traceparent` logged by the leader a follower forwards to.
//! - [`watch`]: `Watch` streams across nodes: revision order, resume, restores.
//! - [`sdk_view`]: SDK ring views across nodes, kills and restarts; `ctl … watch`.
//! - [`cluster_up`]: `clockwise cluster up` restarting killed nodes, rejoining a wiped
//!   one, stopping on SIGINT.

mod backup;
mod cluster_up;
mod ctl;
mod dashboard;
mod health;
mod identity;
mod readiness;
mod replication;
mod sdk;
mod sdk_view;
mod snapshots;
mod watch;

use std::process::Command;

use clockwise_tests::clockwise_bin;

/// Runs `clockwise ARGS` with `envs` set (and `RUST_LOG` unset); answers its exit code
/// (-1 when killed by a signal), stdout and stderr.
fn clockwise(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(clockwise_bin())
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .expect("run clockwise");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
