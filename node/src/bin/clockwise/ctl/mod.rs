//! `clockwise ctl`: every RPC from the command line, through the client SDK (leader
//! tracking, retries, idempotent writes), in the manner of etcdctl. Human output by
//! default, `--json` for scripts.
//!
//! - `hashring` / `chatrouter` / `cluster`: one subcommand enum per service and the
//!   function that calls it; the calls both ring services share are [`RingCall`].
//! - `output`: the answers, as text or JSON. `connect`: token and TLS flags.
//! - `watch`: `hashring watch` / `chatrouter watch`, a ring's changes printed live.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use clockwise_client::{Client, Error, PositionSpace, SyncMode};

mod chatrouter;
mod cluster;
mod connect;
mod hashring;
mod output;
mod watch;

pub use connect::{TlsArgs, TokenArgs};

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Nodes to call, as host:port, comma-separated (any subset of the cluster).
    #[arg(
        long,
        env = "CLOCKWISE_ENDPOINTS",
        default_value = "127.0.0.1:50051",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of the whole call, retries included, in ms.
    #[arg(long, default_value_t = 10_000, global = true)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// clockwise.hashring.v1.HashRing calls.
    Hashring {
        #[command(flatten)]
        ring: RingArgs,
        #[command(subcommand)]
        call: hashring::HashRingCall,
    },
    /// clockwise.chatrouter.v1.ChatRouter calls.
    Chatrouter {
        #[command(flatten)]
        ring: RingArgs,
        #[command(subcommand)]
        call: chatrouter::ChatRouterCall,
    },
    /// clockwise.cluster.v1.Cluster calls.
    Cluster {
        #[command(subcommand)]
        call: cluster::ClusterCall,
    },
}

#[derive(Args, Debug)]
pub(super) struct RingArgs {
    /// The ring (namespace); empty is "default".
    #[arg(long, default_value = "", global = true)]
    pub(super) ring: String,
    /// The call's timestamp in ms; 0 lets the leader stamp its clock.
    #[arg(long, default_value_t = 0, global = true)]
    pub(super) timestamp: i64,
    /// Read the answering node's replica instead of confirming with the leader.
    #[arg(long, global = true)]
    pub(super) stale: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(super) enum Space {
    Drill,
    U64,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(super) enum Mode {
    FailFast,
    AllSleep,
}

impl From<Space> for PositionSpace {
    fn from(space: Space) -> Self {
        match space {
            Space::Drill => PositionSpace::Drill,
            Space::U64 => PositionSpace::U64,
        }
    }
}

impl From<Mode> for SyncMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::FailFast => SyncMode::FailFast,
            Mode::AllSleep => SyncMode::AllSleep,
        }
    }
}

/// The calls both ring services answer alike, flattened into each service's subcommands.
#[derive(Subcommand, Debug)]
pub(super) enum RingCall {
    /// Choose the ring's position space (only while empty).
    ConfigureRing {
        #[arg(value_enum)]
        space: Space,
    },
    /// Save the ring's state; prints the live entries (keys or sessions) saved.
    Backup,
    /// Restore the latest backup saved at or before BACKUP_TIMESTAMP.
    Restore { backup_timestamp: i64 },
    /// Print the ring's topology, then each change with its revision, live until
    /// Ctrl-C (`--json`: one object per line).
    Watch(watch::WatchArgs),
}

/// The SDK facade of a ring (`client.hash_ring` or `client.chat_router`) at the flags'
/// ring, timestamp and read consistency.
macro_rules! open_ring {
    ($client:ident . $facade:ident, $args:expr) => {{
        let args = $args;
        let ring = $client.$facade(args.ring).at(args.timestamp);
        if args.stale {
            ring.stale_reads()
        } else {
            ring
        }
    }};
}
use open_ring;

/// Runs a [`RingCall`] on either facade: their methods share names and shapes.
macro_rules! ring_call {
    ($ring:expr, $call:expr) => {
        match $call {
            $crate::ctl::RingCall::ConfigureRing { space } => {
                $ring.configure_ring(space.into()).await?;
                Answer::Done
            }
            $crate::ctl::RingCall::Backup => Answer::Int($ring.backup().await?),
            $crate::ctl::RingCall::Restore { backup_timestamp } => {
                Answer::Count($ring.restore(backup_timestamp).await?)
            }
            // A stream, not one answer: `run` serves it before any call is made.
            $crate::ctl::RingCall::Watch(_) => {
                return Err($crate::ctl::usage(
                    "watch: streams are served by ctl::run".into(),
                ))
            }
        }
    };
}
use ring_call;

/// Runs one `clockwise ctl` command.
pub async fn run(args: CtlArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Client::builder()
        .endpoints(args.endpoints.iter().map(|e| e.trim().to_owned()))
        .timeout(Duration::from_millis(args.timeout_ms))
        .attempt_timeout(Duration::from_millis(args.timeout_ms.min(5_000)));
    if let Some(token) = args.token.token()? {
        builder = builder.token(token);
    }
    if let Some(tls) = args.tls.tls()? {
        builder = builder.tls(tls);
    }
    let client = builder.build().await?;
    let answer = match args.command {
        CtlCommand::Hashring {
            ring,
            call: hashring::HashRingCall::Ring(RingCall::Watch(watch)),
        } => {
            let ring = client.hash_ring(ring.ring);
            return watch::follow(
                async |start| ring.watch_changes(start).await,
                watch,
                args.json,
            )
            .await;
        }
        CtlCommand::Chatrouter {
            ring,
            call: chatrouter::ChatRouterCall::Ring(RingCall::Watch(watch)),
        } => {
            let ring = client.chat_router(ring.ring);
            return watch::follow(
                async |start| ring.watch_changes(start).await,
                watch,
                args.json,
            )
            .await;
        }
        CtlCommand::Hashring { ring, call } => hashring::call(&client, ring, call).await?,
        CtlCommand::Chatrouter { ring, call } => chatrouter::call(&client, ring, call).await?,
        CtlCommand::Cluster { call } => cluster::call(&client, call).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer.to_json())?);
    } else {
        print!("{}", answer.to_text());
    }
    Ok(())
}

fn usage(message: String) -> Error {
    Error::InvalidArgument { message }
}

/// Parses each of a subcommand's list arguments.
fn parse_each<T>(
    items: &[String],
    parse: impl Fn(&str) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    items.iter().map(|item| parse(item)).collect()
}

/// `A:B` of a list argument named `field`, whose entries have the form `shape`.
fn split_pair<'a>(text: &'a str, field: &str, shape: &str) -> Result<(&'a str, &'a str), Error> {
    text.split_once(':')
        .ok_or_else(|| usage(format!("{field}: {text:?} is not {shape}")))
}
