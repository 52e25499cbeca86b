//! The run's numbers as markdown: the milestone table, the two recoveries, the
//! snapshots, the machine and command, and one verdict per target of issue 15, each
//! computed from the measured numbers.

use std::fmt::Write as _;
use std::time::Duration;

use crate::doc::machine;
use crate::probes::{Records, BATCH, LOADERS, WRITE_EVERY};
use crate::snapshots::Snapshot;

/// One milestone of the load: what was measured since the previous one.
pub struct Milestone {
    /// Keys stored when it was reached (the first acknowledged batch at or past the
    /// milestone; concurrent loaders may overshoot it by a batch or two).
    pub keys: u64,
    /// Keys stored at the previous milestone.
    pub keys_before: u64,
    /// Time since the previous milestone.
    pub interval: Duration,
    pub records: Records,
    /// Leader changes since the load began.
    pub leader_changes: u64,
}

/// A follower brought back: after a SIGKILL, or wiped and added again.
pub struct Recovery {
    /// What was done, for the table.
    pub what: &'static str,
    /// Raft id of the follower.
    pub node: u64,
    /// From its start to its first Status answer; `None`: not within the timeout.
    pub answered: Option<Duration>,
    /// Its applied index at that first answer.
    pub first_applied: u64,
    /// From its start to a Status with applied index ≥ the leader's.
    pub caught_up: Option<Duration>,
    /// The leader's applied index it reached.
    pub leader_applied: u64,
    /// What the probes saw during the step.
    pub records: Records,
    /// Leader changes during the step.
    pub leader_changes: u64,
}

/// Everything a run measured.
/// One node's own count of the Status calls it served, and of those it answered
/// within 1 ms (its `clockwise_rpc_duration_seconds` histogram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusCounts {
    pub served: u64,
    pub within_1ms: u64,
}

impl StatusCounts {
    pub fn over_1ms(&self) -> u64 {
        self.served.saturating_sub(self.within_1ms)
    }

    /// The calls served since `earlier` (a scrape of the same node, which has not
    /// restarted in between).
    pub fn since(self, earlier: StatusCounts) -> StatusCounts {
        StatusCounts {
            served: self.served.saturating_sub(earlier.served),
            within_1ms: self.within_1ms.saturating_sub(earlier.within_1ms),
        }
    }
}

pub struct Run {
    pub keys: u64,
    pub command: String,
    pub load_average: String,
    pub milestones: Vec<Milestone>,
    pub load_time: Duration,
    /// Per node, during the load: Status calls it served, and those within 1 ms.
    pub status_inside: Vec<StatusCounts>,
    pub recoveries: Vec<Recovery>,
    pub snapshots: Vec<Snapshot>,
    /// How long a recovery may take before it counts as not done.
    pub recovery_timeout: Duration,
}

/// `q` (0..=100) percentile of `samples` (sorted here); `None` when empty.
fn percentile(samples: &[Duration], q: usize) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let at = (sorted.len() * q / 100).min(sorted.len().checked_sub(1)?);
    sorted.get(at).copied()
}

fn max(samples: &[Duration]) -> Option<Duration> {
    samples.iter().max().copied()
}

/// A latency: µs-precise below 10 ms, whole ms below 10 s, else seconds.
fn time(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "—".into();
    };
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    let mut out = digits[..head.min(digits.len())].to_owned();
    for group in digits.as_bytes()[head.min(digits.len())..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).unwrap_or_default());
    }
    out
}

fn errors(r: &Records) -> String {
    let counts = [
        (r.status_errors, "Status"),
        (r.write_errors, "writes"),
        (r.batch_errors, "batches"),
    ];
    let failed: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    match failed.is_empty() {
        true => "0".into(),
        false => failed.join(", "),
    }
}

/// The milestone table's header, for the progress lines too.
pub const MILESTONE_HEADER: &str = "| keys | load keys/s | Status p50 | Status max | \
    writer p99 | writer max | leader changes | max RSS | B/key | errors |";

impl Milestone {
    /// Its row of the table (also printed on stderr when it is reached, so a long run
    /// shows its numbers as it goes).
    pub fn row(&self) -> String {
        let r = &self.records;
        format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            thousands(self.keys),
            self.rate(),
            time(percentile(&r.status, 50)),
            time(max(&r.status)),
            time(percentile(&r.writes, 99)),
            time(max(&r.writes)),
            self.leader_changes,
            mib(r.rss_max),
            self.bytes_per_key(),
            errors(r),
        )
    }

    fn rate(&self) -> f64 {
        (self.keys - self.keys_before) as f64 / self.interval.as_secs_f64().max(1e-9)
    }

    fn bytes_per_key(&self) -> f64 {
        self.records.rss_max as f64 / self.keys.max(1) as f64
    }
}

impl Run {
    /// The markdown section: all of it goes to stdout and into docs/benchmarks.md.
    pub fn markdown(&self) -> String {
        let date = std::process::Command::new("date")
            .arg("+%F")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "`{}` on {date}: **{} keys**; {}, shared with other work (load average {} at \
             the start).\n\n\
             - Nodes: 3 release `clockwise node` processes on loopback, default flags plus \
             those forming the cluster (`--id`, `--listen`, `--peer-listen`, `--data-dir`, \
             `--peers`, `--initial-cluster-state`), `--log-format json` (for the \
             snapshot lines) and `--metrics-listen` (for each node's own timings); every \
             write fsync'd by a majority.\n\
             - Load (`tests/src/bin/scale`, one tokio thread, one SDK client): one HashRing \
             ring, `U64` position space, 64 nodes × 100 virtual nodes; keys \
             `key-00000001`… stored by `BatchOperations` of {} stores from {} concurrent \
             loaders. Meanwhile a writer stores a key every {} ms through the SDK (its \
             latency includes the SDK's retries), and every second each node is asked its \
             own `Cluster.Status` (direct, 30 s deadline, on a connection kept from one poll \
             to the next: a connection's first answer, which also timed its handshake, is \
             not counted) and its VmRSS is read.\n\
             - A row covers the load since the previous one; B/key is the largest node's \
             RSS (process baseline included) over the keys stored; leader changes are \
             rises of the term seen in Status answers since the load began; errors are \
             failed calls (a failed batch is tried again 1 s later).",
            self.command,
            thousands(self.keys),
            machine(),
            self.load_average,
            BATCH,
            LOADERS,
            WRITE_EVERY.as_millis(),
        );
        let _ = writeln!(
            out,
            "\n{MILESTONE_HEADER}\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for m in &self.milestones {
            let _ = writeln!(out, "{}", m.row());
        }
        let _ = writeln!(
            out,
            "\nAll {} keys in {:.1} s ({:.0} keys/s on average).",
            thousands(self.keys),
            self.load_time.as_secs_f64(),
            self.keys as f64 / self.load_time.as_secs_f64().max(1e-9),
        );
        let inside: Vec<String> = self
            .status_inside
            .iter()
            .map(|counts| format!("{} of {}", counts.over_1ms(), counts.served))
            .collect();
        let _ = writeln!(
            out,
            "\nStatus calls over 1 ms inside the nodes (their `clockwise_rpc_duration_seconds`, \
             from a call's arrival at the node's tower layer to its answer; the Status \
             calls during the load), nodes 1–3: {}. The columns above time the whole \
             call from the poller.",
            inside.join(", ")
        );
        let timeout = format!("not within {} s", self.recovery_timeout.as_secs());
        let or_timeout = |d: Option<Duration>| match d {
            Some(_) => time(d),
            None => timeout.clone(),
        };
        out.push_str(
            "\nRecovery, with the writer running (times from the follower's start; caught up: \
             its Status shows an applied index ≥ the leader's at the previous check that \
             found a leader, 50 ms plus the calls' time before: a follower learns of a commit one message after the leader, so under \
             writes it is almost never ≥ the leader's index of the same instant):\n\n\
             | step | node | answers Status | its applied index then | caught up | leader's \
             index then | writer p99 | writer max | Status max | leader changes | errors |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for r in &self.recoveries {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.what,
                r.node,
                or_timeout(r.answered),
                r.first_applied,
                or_timeout(r.caught_up),
                r.leader_applied,
                time(percentile(&r.records.writes, 99)),
                time(max(&r.records.writes)),
                time(max(&r.records.status)),
                r.leader_changes,
                errors(&r.records),
            );
        }
        out.push_str(
            "\nSnapshots, from the nodes' logs (`took a snapshot`: built by the node; \
             `installed`: received from the leader; — where the line has no such field):\n\n\
             | node | snapshot | index | bytes | build | logged at |\n\
             |---:|---|---:|---:|---:|---|\n",
        );
        if self.snapshots.is_empty() {
            out.push_str("| — | none logged | | | | |\n");
        }
        for s in &self.snapshots {
            let opt = |v: Option<u64>| v.map_or("—".into(), thousands);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                s.node,
                if s.built { "built" } else { "installed" },
                opt(s.index),
                opt(s.bytes),
                s.build_ms.map_or("—".into(), |ms| format!("{ms} ms")),
                s.at,
            );
        }
        out.push_str(&self.verdicts());
        crate::doc::wrap(&out, 90)
    }

    /// One line per target of issue 15, met or not from the numbers above.
    fn verdicts(&self) -> String {
        let verdict = |ok: bool| if ok { "met" } else { "not met" };
        let all = |f: &dyn Fn(&Records) -> Option<Duration>| {
            let rows = self.milestones.iter().map(|m| &m.records);
            rows.chain(self.recoveries.iter().map(|r| &r.records))
                .filter_map(f)
                .max()
        };
        let status_max = self
            .milestones
            .iter()
            .filter_map(|m| max(&m.records.status))
            .max();
        let changes = self.milestones.last().map_or(0, |m| m.leader_changes)
            + self
                .recoveries
                .iter()
                .map(|r| r.leader_changes)
                .sum::<u64>();
        let writer_max = all(&|r| max(&r.writes));
        let write_errors: u64 = self
            .milestones
            .iter()
            .map(|m| &m.records)
            .chain(self.recoveries.iter().map(|r| &r.records))
            .map(|r| r.write_errors)
            .sum();
        let recovery = |what: usize| self.recoveries.get(what).and_then(|r| r.caught_up);
        let last = self.milestones.last();
        let per_key = last.map(Milestone::bytes_per_key);
        let slowest = self
            .milestones
            .iter()
            .map(Milestone::rate)
            .min_by(f64::total_cmp);
        let mut out = String::from("\nAgainst the targets of issue 15:\n\n");
        let mut line = |text: String, ok: bool| {
            let _ = writeln!(out, "- {text}: **{}**", verdict(ok));
        };
        line(
            format!(
                "Status ≤ 1 ms on every call during the load: slowest {} (inside the nodes: \
                 {} over 1 ms)",
                time(status_max),
                self.status_inside
                    .iter()
                    .map(StatusCounts::over_1ms)
                    .sum::<u64>()
            ),
            status_max.is_some_and(|d| d <= Duration::from_millis(1)),
        );
        line(
            format!("zero leader changes (load and recoveries): {changes}"),
            changes == 0,
        );
        line(
            format!(
                "background writer max ≤ 100 ms (load and recoveries): {}{}",
                time(writer_max),
                match write_errors {
                    0 => String::new(),
                    n => format!(", {n} writes failed"),
                }
            ),
            write_errors == 0 && writer_max.is_some_and(|d| d <= Duration::from_millis(100)),
        );
        line(
            format!(
                "restart (SIGKILL, same data) caught up ≤ 10 s: {}",
                time(recovery(0))
            ),
            recovery(0).is_some_and(|d| d <= Duration::from_secs(10)),
        );
        line(
            format!("wiped follower caught up ≤ 30 s: {}", time(recovery(1))),
            recovery(1).is_some_and(|d| d <= Duration::from_secs(30)),
        );
        line(
            format!(
                "≤ 120 B/key at {} keys: {}",
                thousands(last.map_or(0, |m| m.keys)),
                per_key.map_or("—".into(), |b| format!("{b:.0} B")),
            ),
            per_key.is_some_and(|b| b <= 120.0),
        );
        line(
            format!(
                "load ≥ 400k keys/s in every interval: slowest {}",
                slowest.map_or("—".into(), |r| format!("{r:.0} keys/s")),
            ),
            slowest.is_some_and(|r| r >= 400_000.0),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_formats() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50), Some(Duration::from_millis(51)));
        assert_eq!(percentile(&samples, 99), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&[], 99), None);
        assert_eq!(time(Some(Duration::from_micros(250))), "0.25 ms");
        assert_eq!(time(Some(Duration::from_millis(1500))), "1500 ms");
        assert_eq!(time(Some(Duration::from_secs(12))), "12.0 s");
        assert_eq!(thousands(10_000_000), "10,000,000");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn status_counts_of_the_load_are_the_difference_of_two_scrapes() {
        let setup = StatusCounts {
            served: 12,
            within_1ms: 9,
        };
        let after = StatusCounts {
            served: 52,
            within_1ms: 48,
        };
        let load = after.since(setup);
        assert_eq!((load.served, load.within_1ms, load.over_1ms()), (40, 39, 1));
        assert_eq!(after.over_1ms(), 4);
    }
}
