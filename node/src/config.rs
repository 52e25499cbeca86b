//! What a node is started with: [`NodeConfig`], its defaults and its checks.
//!
//! `NodeConfig::validate` holds every rule a setting must meet, so the command line and
//! tests that build a node in process run the same checks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clockwise_cluster::driver::DriverConfig;
use clockwise_cluster::Peers;

use crate::machine::DEFAULT_MAX_BACKUPS_PER_RING;
use crate::service::auth::Tokens;
use crate::service::bulkhead::BulkheadConfig;
use crate::service::limits::Limits;
use crate::service::sync::SyncConfig;
use crate::service::tls::NodeTls;
use clockwise_engine::Quotas;

/// `--raft-tick-ms` by default: heartbeats every 60 ms, an election after 300–600 ms
/// without one (etcd: 100 ms and 1–2 s). Shorter ticks fail over sooner but call an
/// election on a leader stalled that long; the driver's longest pass at 10M keys is
/// ~100–150 ms (docs/benchmarks.md), and WAN clusters want more.
pub const DEFAULT_RAFT_TICK_MS: u64 = 30;

/// How far above its client port a node's peer port is by default.
pub const PEER_PORT_OFFSET: u16 = 100;

/// The default `--peer-listen` for a node listening on `listen`: the same host, the
/// client port + [`PEER_PORT_OFFSET`] (port 0 stays 0: any free port).
pub fn default_peer_listen(listen: SocketAddr) -> SocketAddr {
    let mut peer = listen;
    if peer.port() != 0 {
        peer.set_port(peer.port().saturating_add(PEER_PORT_OFFSET));
    }
    peer
}

/// What `clockwise node` serves with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Clients' gRPC address (port 0: any free port).
    pub listen: SocketAddr,
    /// The raft transport's address, which only peers call; `None`: [`default_peer_listen`].
    pub peer_listen: Option<SocketAddr>,
    /// The HTTP port (`GET /metrics`, `/healthz`, `/readyz`; see `crate::http_port`);
    /// off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Allow a non-loopback address on a port without TLS.
    pub insecure: bool,
    pub sync: SyncConfig,
    /// The `batch` bulkhead (`--batch-max-calls`, `--batch-queue-wait-ms`).
    pub batch: BulkheadConfig,
    /// This node's raft id (≥ 1).
    pub id: u64,
    /// Every member of a new cluster, this node included, with its client and peer
    /// addresses. Empty: a group of one.
    pub peers: Peers,
    /// Holds the raft log (`raft/`).
    pub data_dir: PathBuf,
    /// How long a write or a linearizable read may wait for a quorum.
    pub request_timeout: Duration,
    /// One raft tick (elections take 10–20 ticks).
    pub raft_tick: Duration,
    /// Start without a membership and wait to be added (`Cluster.AddMember`) by the
    /// leader of an existing cluster; `peers` is ignored.
    pub join: bool,
    /// Whether an empty data dir may found a cluster (`--initial-cluster-state`);
    /// `None`: only a node without other members in `peers` founds one. Ignored once
    /// the data dir holds a log.
    pub initial_cluster_state: Option<InitialClusterState>,
    /// Entries applied between snapshots; the log is compacted to a tenth of it before
    /// each snapshot.
    pub snapshot_entries: u64,
    /// Backups kept per ring (the leader's value is written into each backup command).
    pub max_backups_per_ring: u32,
    /// Rings, nodes per ring and virtual nodes per ring a write may grow the state to
    /// (`--max-rings`, `--max-nodes-per-ring`, `--max-vnodes-per-ring`; the leader's
    /// values are written into each entry it proposes).
    pub quotas: Quotas,
    /// The bearer tokens this node accepts; `None`: no authentication.
    pub tokens: Option<Arc<Tokens>>,
    /// Message sizes, streams per connection, per-client rates.
    pub limits: Limits,
    /// TLS of the client port and mutual TLS of the peer port (none: plain TCP).
    pub tls: NodeTls,
    /// How long in-flight calls may drain after SIGTERM (health already NOT_SERVING)
    /// before the rest are cut and the node exits (`--shutdown-timeout-ms`).
    pub shutdown_timeout: Duration,
}

/// `--shutdown-timeout-ms`'s default: as long as Kubernetes' grace period, so a node
/// finishes its calls before the kubelet's SIGKILL.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            peer_listen: None,
            metrics_listen: None,
            insecure: false,
            sync: SyncConfig::default(),
            batch: BulkheadConfig::default(),
            id: 1,
            peers: Peers::default(),
            data_dir: PathBuf::from("./data"),
            request_timeout: Duration::from_secs(5),
            raft_tick: Duration::from_millis(DEFAULT_RAFT_TICK_MS),
            join: false,
            initial_cluster_state: None,
            snapshot_entries: DriverConfig::default().snapshot_entries,
            max_backups_per_ring: DEFAULT_MAX_BACKUPS_PER_RING,
            quotas: Quotas::default(),
            tokens: None,
            limits: Limits::default(),
            tls: NodeTls::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// `--initial-cluster-state`: what an empty data dir means (as etcd's flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialClusterState {
    /// Found a new cluster (with a new cluster id) when the data dir is empty.
    New,
    /// This node is a member of a cluster that exists: an empty data dir means its data
    /// was lost, and the node refuses to start.
    Existing,
}

impl std::str::FromStr for InitialClusterState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "new" => Ok(InitialClusterState::New),
            "existing" => Ok(InitialClusterState::Existing),
            other => Err(format!("{other:?} is neither `new` nor `existing`")),
        }
    }
}

/// The ranges of the settings, shared by `validate` and the command line's help.
pub mod range {
    use std::ops::RangeInclusive;

    pub const MAX_BACKUPS_PER_RING: RangeInclusive<u32> = 1..=1024;
    pub const SYNC_MAX_CALLS: RangeInclusive<usize> = 1..=100_000;
    pub const BATCH_MAX_CALLS: RangeInclusive<usize> = 1..=100_000;
    pub const MAX_MESSAGE_BYTES: RangeInclusive<usize> = 1024..=(64 << 20);
    /// `--request-timeout-ms`: 0 would refuse every write; beyond 10 minutes a caller
    /// waits on a cluster without quorum for longer than anyone watches.
    pub const REQUEST_TIMEOUT_MS: RangeInclusive<u128> = 1..=600_000;
    /// `--raft-tick-ms`: an election takes 10–20 ticks, so 1 s ticks already mean
    /// 10–20 s without a leader.
    pub const RAFT_TICK_MS: RangeInclusive<u128> = 1..=1_000;
    /// `--sync-delay-ms`: one simulated external call (0: none).
    pub const SYNC_DELAY_MS: RangeInclusive<u128> = 0..=60_000;
    /// `--sync-queue-wait-ms` (0: refuse at once when every place is taken).
    pub const SYNC_QUEUE_WAIT_MS: RangeInclusive<u128> = 0..=60_000;
    /// `--batch-queue-wait-ms`, as `--sync-queue-wait-ms`.
    pub const BATCH_QUEUE_WAIT_MS: RangeInclusive<u128> = 0..=60_000;
    /// `--max-connections`, `--max-peer-connections` (clamped further to the
    /// descriptor limit at start).
    pub const MAX_CONNECTIONS: RangeInclusive<usize> = 1..=1_000_000;
    /// `--handshake-timeout-ms`: a TLS handshake over a slow link takes well under 60 s.
    pub const HANDSHAKE_TIMEOUT_MS: RangeInclusive<u128> = 1..=60_000;
    /// `--max-request-ms`: at least the longest budget a call gets (`--request-timeout-ms`).
    pub const MAX_REQUEST_MS: RangeInclusive<u128> = 1..=3_600_000;
    /// `--http2-keepalive-ms`: at least 100 ms, so a busy peer is not called dead.
    pub const HTTP2_KEEPALIVE_MS: RangeInclusive<u128> = 100..=3_600_000;
    /// `--max-connection-age-ms`: at least 100 ms, at most a week.
    pub const MAX_CONNECTION_AGE_MS: RangeInclusive<u128> = 100..=604_800_000;
    /// `--http-max-connections`.
    pub const HTTP_MAX_CONNECTIONS: RangeInclusive<usize> = 1..=10_000;
    /// `--http-header-timeout-ms`.
    pub const HTTP_HEADER_TIMEOUT_MS: RangeInclusive<u128> = 1..=60_000;
    /// `--shutdown-timeout-ms` (0: cut every call at once); beyond 10 minutes a stop
    /// waits longer than any supervisor does.
    pub const SHUTDOWN_TIMEOUT_MS: RangeInclusive<u128> = 0..=600_000;
}

/// Fewer voters than this cannot lose one and keep a quorum.
pub const RECOMMENDED_VOTERS: usize = 3;

/// A setting that cannot work, named as its command-line flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} {value} is out of range ({expected})")]
    OutOfRange {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("--peers does not list this node's --id {0}")]
    NotAMember(u64),
    #[error(
        "--listen {0} is not a loopback address and the client port has no TLS (--cert, \
         --key): calls and tokens would cross the network in clear text. Pass \
         --insecure to accept that."
    )]
    PlaintextClientPort(SocketAddr),
    #[error(
        "--peer-listen {0} is not a loopback address and the peer port has no \
         mutual TLS (--peer-cert, --peer-key, --peer-trusted-ca): anyone on the network \
         could speak raft. Pass --insecure to accept that."
    )]
    PlaintextPeerPort(SocketAddr),
    #[error(
        "--metrics-listen {0} is not a loopback address and the HTTP port has no TLS \
         (it serves HTTPS with the client port's --cert and --key): its metrics and \
         cluster state would be open to the network. Pass --insecure to accept that."
    )]
    PlaintextMetricsPort(SocketAddr),
    #[error("the token file has no `peer` token: nodes need one to reach each other")]
    NoPeerToken,
    #[error(
        "--peer-cert names node {named} (clockwise://node/{named}), not this node's --id \
         {id}: peers would refuse its calls; give each node the certificate minted for its id"
    )]
    PeerCertificateOfAnotherNode { named: u64, id: u64 },
    #[error("--initial-cluster-state new founds a cluster, --join joins one: give one of them")]
    JoinAndFound,
}

impl NodeConfig {
    /// A warning when the cluster this node founds has fewer than [`RECOMMENDED_VOTERS`]
    /// voters (a joining node, or one restarted on a log, takes the membership from the
    /// cluster: `None`).
    pub fn small_cluster_warning(&self) -> Option<String> {
        if self.join {
            return None;
        }
        let voters = self.peers.len().max(1);
        few_voters_warning(voters)
    }

    /// The peer port's address: `peer_listen`, or the client port + [`PEER_PORT_OFFSET`].
    pub fn peer_listen(&self) -> SocketAddr {
        self.peer_listen
            .unwrap_or_else(|| default_peer_listen(self.listen))
    }

    /// Every rule the settings must meet; [`crate::BoundNode::bind`] runs it first.
    ///
    /// # Errors
    /// The first setting that cannot work, named as its flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn out_of_range(
            flag: &'static str,
            value: impl std::fmt::Display,
            expected: &'static str,
        ) -> Result<(), ConfigError> {
            Err(ConfigError::OutOfRange {
                flag,
                value: value.to_string(),
                expected,
            })
        }
        if self.id == 0 {
            return out_of_range("--id", self.id, "a raft id is at least 1");
        }
        let millis = [
            (
                "--request-timeout-ms",
                self.request_timeout,
                range::REQUEST_TIMEOUT_MS,
                "1 to 600000",
            ),
            (
                "--raft-tick-ms",
                self.raft_tick,
                range::RAFT_TICK_MS,
                "1 to 1000",
            ),
            (
                "--sync-delay-ms",
                self.sync.delay,
                range::SYNC_DELAY_MS,
                "0 to 60000",
            ),
            (
                "--sync-queue-wait-ms",
                self.sync.queue_wait,
                range::SYNC_QUEUE_WAIT_MS,
                "0 to 60000",
            ),
            (
                "--batch-queue-wait-ms",
                self.batch.queue_wait,
                range::BATCH_QUEUE_WAIT_MS,
                "0 to 60000",
            ),
            (
                "--handshake-timeout-ms",
                self.limits.handshake_timeout,
                range::HANDSHAKE_TIMEOUT_MS,
                "1 to 60000",
            ),
            (
                "--max-request-ms",
                self.limits.max_request,
                range::MAX_REQUEST_MS,
                "1 to 3600000",
            ),
            (
                "--http2-keepalive-ms",
                self.limits.http2_keepalive,
                range::HTTP2_KEEPALIVE_MS,
                "100 to 3600000",
            ),
            (
                "--max-connection-age-ms",
                self.limits.max_connection_age,
                range::MAX_CONNECTION_AGE_MS,
                "100 to 604800000",
            ),
            (
                "--http-header-timeout-ms",
                self.limits.http_header_timeout,
                range::HTTP_HEADER_TIMEOUT_MS,
                "1 to 60000",
            ),
            (
                "--shutdown-timeout-ms",
                self.shutdown_timeout,
                range::SHUTDOWN_TIMEOUT_MS,
                "0 to 600000",
            ),
        ];
        for (flag, value, range, expected) in millis {
            // Whole milliseconds, as the flags give them (0.5 ms is 0).
            let ms = value.as_millis();
            if !range.contains(&ms) {
                return out_of_range(flag, ms, expected);
            }
        }
        if self.snapshot_entries == 0 {
            return out_of_range("--snapshot-entries", 0, "at least 1");
        }
        if !range::MAX_BACKUPS_PER_RING.contains(&self.max_backups_per_ring) {
            return out_of_range(
                "--max-backups-per-ring",
                self.max_backups_per_ring,
                "1 to 1024",
            );
        }
        let quotas = [
            ("--max-rings", self.quotas.max_rings),
            ("--max-nodes-per-ring", self.quotas.max_nodes_per_ring),
            ("--max-vnodes-per-ring", self.quotas.max_vnodes_per_ring),
        ];
        for (flag, value) in quotas {
            // 0 would refuse every ring or node.
            if value == 0 {
                return out_of_range(flag, value, "at least 1");
            }
        }
        if !range::SYNC_MAX_CALLS.contains(&self.sync.max_calls) {
            return out_of_range("--sync-max-calls", self.sync.max_calls, "1 to 100000");
        }
        if !range::BATCH_MAX_CALLS.contains(&self.batch.max_calls) {
            return out_of_range("--batch-max-calls", self.batch.max_calls, "1 to 100000");
        }
        if !range::MAX_MESSAGE_BYTES.contains(&self.limits.max_message_bytes) {
            return out_of_range(
                "--max-message-bytes",
                self.limits.max_message_bytes,
                "1024 to 67108864",
            );
        }
        if self.limits.max_concurrent_streams == 0 {
            return out_of_range("--max-concurrent-streams", 0, "at least 1");
        }
        for (flag, cap) in [
            ("--max-connections", self.limits.max_connections),
            ("--max-peer-connections", self.limits.max_peer_connections),
        ] {
            if !range::MAX_CONNECTIONS.contains(&cap) {
                return out_of_range(flag, cap, "1 to 1000000");
            }
        }
        if !range::HTTP_MAX_CONNECTIONS.contains(&self.limits.http_max_connections) {
            return out_of_range(
                "--http-max-connections",
                self.limits.http_max_connections,
                "1 to 10000",
            );
        }
        if self.join && self.initial_cluster_state == Some(InitialClusterState::New) {
            return Err(ConfigError::JoinAndFound);
        }
        if !self.join && !self.peers.is_empty() && !self.peers.contains(self.id) {
            return Err(ConfigError::NotAMember(self.id));
        }
        if !self.insecure {
            if !self.listen.ip().is_loopback() && self.tls.client.is_none() {
                return Err(ConfigError::PlaintextClientPort(self.listen));
            }
            let peer = self.peer_listen();
            if !peer.ip().is_loopback() && self.tls.peer.is_none() {
                return Err(ConfigError::PlaintextPeerPort(peer));
            }
            let plaintext_http = self.tls.http.is_none();
            if let Some(http) = self
                .metrics_listen
                .filter(|a| plaintext_http && !a.ip().is_loopback())
            {
                return Err(ConfigError::PlaintextMetricsPort(http));
            }
        }
        if let Some(named) = self.tls.peer_node_id.filter(|&named| named != self.id) {
            return Err(ConfigError::PeerCertificateOfAnotherNode { named, id: self.id });
        }
        if self
            .tokens
            .as_ref()
            .is_some_and(|tokens| tokens.peer_token().is_none())
        {
            return Err(ConfigError::NoPeerToken);
        }
        Ok(())
    }
}

/// Why `voters` voters are too few, if they are: with one voter a lost disk loses
/// acknowledged writes; with two, either node's loss stops every write.
pub fn few_voters_warning(voters: usize) -> Option<String> {
    (voters < RECOMMENDED_VOTERS).then(|| {
        format!(
            "the cluster has {voters} voter(s): fewer than {RECOMMENDED_VOTERS} cannot lose a \
             node and keep taking writes"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: NodeConfig) -> ConfigError {
        config.validate().expect_err("refused")
    }

    #[test]
    fn the_defaults_are_valid() {
        NodeConfig::default().validate().expect("valid");
    }

    #[test]
    fn each_setting_out_of_range_is_refused_by_its_flag() {
        let cases: Vec<(&str, NodeConfig)> = vec![
            (
                "--id",
                NodeConfig {
                    id: 0,
                    ..Default::default()
                },
            ),
            (
                "--raft-tick-ms",
                NodeConfig {
                    raft_tick: Duration::ZERO,
                    ..Default::default()
                },
            ),
            (
                "--raft-tick-ms",
                NodeConfig {
                    raft_tick: Duration::from_millis(1001),
                    ..Default::default()
                },
            ),
            (
                "--request-timeout-ms",
                NodeConfig {
                    request_timeout: Duration::ZERO,
                    ..Default::default()
                },
            ),
            (
                "--request-timeout-ms",
                NodeConfig {
                    request_timeout: Duration::from_micros(500),
                    ..Default::default()
                },
            ),
            (
                "--request-timeout-ms",
                NodeConfig {
                    request_timeout: Duration::from_millis(600_001),
                    ..Default::default()
                },
            ),
            (
                "--sync-delay-ms",
                NodeConfig {
                    sync: SyncConfig {
                        delay: Duration::from_millis(60_001),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--sync-queue-wait-ms",
                NodeConfig {
                    sync: SyncConfig {
                        queue_wait: Duration::from_millis(60_001),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--snapshot-entries",
                NodeConfig {
                    snapshot_entries: 0,
                    ..Default::default()
                },
            ),
            (
                "--max-backups-per-ring",
                NodeConfig {
                    max_backups_per_ring: 0,
                    ..Default::default()
                },
            ),
            (
                "--max-backups-per-ring",
                NodeConfig {
                    max_backups_per_ring: 1025,
                    ..Default::default()
                },
            ),
            (
                "--max-rings",
                NodeConfig {
                    quotas: Quotas {
                        max_rings: 0,
                        ..Quotas::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--max-nodes-per-ring",
                NodeConfig {
                    quotas: Quotas {
                        max_nodes_per_ring: 0,
                        ..Quotas::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--max-vnodes-per-ring",
                NodeConfig {
                    quotas: Quotas {
                        max_vnodes_per_ring: 0,
                        ..Quotas::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--sync-max-calls",
                NodeConfig {
                    sync: SyncConfig {
                        max_calls: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--batch-max-calls",
                NodeConfig {
                    batch: BulkheadConfig {
                        max_calls: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--batch-queue-wait-ms",
                NodeConfig {
                    batch: BulkheadConfig {
                        queue_wait: Duration::from_millis(60_001),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--max-message-bytes",
                NodeConfig {
                    limits: Limits {
                        max_message_bytes: 1023,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--max-concurrent-streams",
                NodeConfig {
                    limits: Limits {
                        max_concurrent_streams: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--max-connections",
                NodeConfig {
                    limits: Limits {
                        max_connections: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--max-peer-connections",
                NodeConfig {
                    limits: Limits {
                        max_peer_connections: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--handshake-timeout-ms",
                NodeConfig {
                    limits: Limits {
                        handshake_timeout: Duration::ZERO,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--handshake-timeout-ms",
                NodeConfig {
                    limits: Limits {
                        handshake_timeout: Duration::from_millis(60_001),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "--max-request-ms",
                NodeConfig {
                    limits: Limits {
                        max_request: Duration::ZERO,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
        ];
        for (flag, config) in cases {
            match refused(config) {
                ConfigError::OutOfRange { flag: named, .. } => assert_eq!(named, flag),
                other => panic!("{flag}: {other}"),
            }
        }
    }

    #[test]
    fn the_bounds_of_each_timing_flag_are_accepted() {
        let cases = [
            NodeConfig {
                request_timeout: Duration::from_millis(1),
                raft_tick: Duration::from_millis(1),
                sync: SyncConfig {
                    delay: Duration::ZERO,
                    queue_wait: Duration::ZERO,
                    ..Default::default()
                },
                ..Default::default()
            },
            NodeConfig {
                request_timeout: Duration::from_millis(600_000),
                raft_tick: Duration::from_millis(1000),
                sync: SyncConfig {
                    delay: Duration::from_millis(60_000),
                    queue_wait: Duration::from_millis(60_000),
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        for config in cases {
            config.validate().expect("within range");
        }
    }

    #[test]
    fn fewer_than_three_founding_voters_are_warned_about() {
        let peers = |n: u64| -> Peers {
            (1..=n)
                .map(|id| format!("{id}=127.0.0.1:{}/127.0.0.1:{}", 1000 + id, 2000 + id))
                .collect::<Vec<_>>()
                .join(",")
                .parse()
                .expect("peers")
        };
        let cases = [
            (Peers::default(), false, true),
            (peers(2), false, true),
            (peers(3), false, false),
            (peers(5), false, false),
            // A joining node takes the membership from the cluster.
            (Peers::default(), true, false),
        ];
        for (peers, join, warned) in cases {
            let config = NodeConfig {
                peers: peers.clone(),
                join,
                ..Default::default()
            };
            assert_eq!(
                config.small_cluster_warning().is_some(),
                warned,
                "{} peer(s), join {join}",
                peers.len()
            );
        }
        assert!(few_voters_warning(2).is_some_and(|w| w.contains("2 voter(s)")));
        assert_eq!(few_voters_warning(3), None);
    }

    #[test]
    fn peers_must_list_this_node_unless_it_joins() {
        let peers: Peers = "2=127.0.0.1:1/127.0.0.1:2".parse().expect("peers");
        let config = NodeConfig {
            peers: peers.clone(),
            ..Default::default()
        };
        assert_eq!(refused(config), ConfigError::NotAMember(1));
        NodeConfig {
            peers,
            join: true,
            ..Default::default()
        }
        .validate()
        .expect("a joining node ignores --peers");
    }

    #[test]
    fn a_plaintext_port_off_loopback_needs_insecure() {
        let public: SocketAddr = "0.0.0.0:50051".parse().expect("addr");
        let config = NodeConfig {
            listen: public,
            ..Default::default()
        };
        assert_eq!(
            refused(config.clone()),
            ConfigError::PlaintextClientPort(public)
        );
        NodeConfig {
            insecure: true,
            ..config
        }
        .validate()
        .expect("insecure allows it");
        let config = NodeConfig {
            peer_listen: Some(public),
            ..Default::default()
        };
        assert_eq!(refused(config), ConfigError::PlaintextPeerPort(public));
        let config = NodeConfig {
            metrics_listen: Some(public),
            ..Default::default()
        };
        assert_eq!(
            refused(config.clone()),
            ConfigError::PlaintextMetricsPort(public)
        );
        NodeConfig {
            insecure: true,
            ..config
        }
        .validate()
        .expect("insecure allows it");
    }

    #[test]
    fn a_token_file_needs_a_peer_token() {
        let tokens =
            Tokens::parse("reader-token-0123456789abcdef-0123456789 reader\n").expect("tokens");
        let config = NodeConfig {
            tokens: Some(Arc::new(tokens)),
            ..Default::default()
        };
        assert_eq!(refused(config), ConfigError::NoPeerToken);
    }
}
