//! `clockwise`: the command line of a clockwise node.
//!
//! - `node`: `clockwise node` flags into a `NodeConfig`, then serve until a signal.
//! - `cluster_up`: `clockwise cluster up`, a local cluster of node processes.
//! - `ctl`: every RPC from the command line through the SDK (`ctl/` per service, output).
//! - `backup`: `backup save` through the SDK, `backup restore` into a new data dir.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: the apply path allocates and frees per key
/// (strings, results, slab chunks), and glibc spent about a quarter of the raft
/// thread's time in `_int_malloc`, `free` and `malloc_consolidate` while 10M keys loaded
/// (perf, issue 15); `docs/benchmarks.md` has the load rates with each. Built with
/// `no_thp` (the workspace's Cargo.toml): mimalloc otherwise asks for transparent huge
/// pages, and the kernel then zeroes 2 MiB on each first touch; in a 10M-key load that
/// was a third of the time, and the applies at the slot index's doublings stalled
/// 150–380 ms (with it off, under 25 ms; same in-process run).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backup;
mod cluster_up;
mod ctl;
mod node;

/// clockwise: consistent-hash placement as a service (HashRing and ChatRouter over gRPC).
///
/// Start a node with `clockwise node`, then talk to it with grpcurl:
/// `grpcurl -plaintext 127.0.0.1:50051 list`.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Log format on stderr. Verbosity comes from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node until Ctrl-C or SIGTERM.
    ///
    /// Serves clockwise.hashring.v1.HashRing, clockwise.chatrouter.v1.ChatRouter, gRPC
    /// reflection and grpc.health.v1 on --listen, and prints `listening on ADDR` on stdout.
    /// Try: `grpcurl -plaintext 127.0.0.1:50051 list`. On Ctrl-C or SIGTERM it stops
    /// accepting calls, finishes those in flight, and exits 0.
    Node(Box<node::NodeArgs>),
    /// Local clusters for trying clockwise on one machine.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Call any RPC of a running cluster, e.g. `clockwise ctl hashring add-node node_a`,
    /// `clockwise ctl chatrouter assign-request r1 --size-mb 30`, `clockwise ctl cluster
    /// status`. Endpoints from --endpoints or CLOCKWISE_ENDPOINTS; --json for scripts.
    Ctl(ctl::CtlArgs),
    /// Whole-cluster backups: `clockwise backup save FILE` writes a consistent snapshot
    /// of a node's state; `clockwise backup restore FILE --data-dir DIR` seeds a new
    /// one-member cluster from it. A corrupt or truncated file is refused.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Start N nodes on 127.0.0.1:50051.. with data under ./data/node-N (restarting an
    /// existing cluster keeps its data; a node whose data is gone rejoins) and keep them
    /// running: a node that exits is restarted (not with --no-restart); each logs to
    /// ./data/node-N/node.log; prints the endpoints; Ctrl-C stops them all.
    Up(cluster_up::UpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A command-line call prints its answer on stdout; only problems go to stderr.
    let default_level = match cli.command {
        Command::Ctl(_) | Command::Backup(_) => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    let workers = match &cli.command {
        Command::Node(args) => args.worker_threads,
        Command::Cluster(_) | Command::Ctl(_) | Command::Backup(_) => Some(1),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n.into());
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Node(args) => runtime.block_on(node::run(*args)),
        Command::Cluster(ClusterCommand::Up(args)) => runtime.block_on(cluster_up::up(args)),
        Command::Ctl(args) => runtime.block_on(ctl::run(args)),
        Command::Backup(command) => runtime.block_on(backup::run(command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM, whichever comes first.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
