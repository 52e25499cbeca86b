//! clockwise node: the replicated placement service over the ring engine
//! (`clockwise-engine`), as a library; the `clockwise` binary (`src/bin/clockwise/`) is
//! its command line and lives apart (the library needs no clap).
//!
//! # Layout
//! - [`machine`]: the replicated state machine: the engine fed by the raft log, the log
//!   codec, retry sessions, the snapshot envelope, the leader's clock.
//! - [`config`]: [`NodeConfig`], its defaults and `validate()`.
//! - [`server`]: [`BoundNode`]: binds the ports, starts the raft driver, serves.
//! - [`http_port`]: the HTTP port: `/metrics`, `/healthz`, `/readyz` (and the place
//!   the ring dashboard's routes join).
//! - [`dashboard`]: the ring dashboard (embedded page and its JSON) on the HTTP port.
//! - [`service`]: the gRPC handlers (thin: validate, propose or read, map errors) and
//!   the layers around them (auth, rate limits, deadlines, metrics, TLS).

pub mod config;
pub mod dashboard;
pub mod http_port;
pub mod machine;
pub mod server;
pub mod service;

pub use config::{default_peer_listen, InitialClusterState, NodeConfig, PEER_PORT_OFFSET};
pub use server::{BoundNode, ServeError};
