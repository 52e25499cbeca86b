//! Generates the tonic/prost code and the reflection descriptor set from `proto/`.
//!
//! protoc comes from the `protoc-bin-vendored` crate and is handed to prost-build
//! directly, so no system protoc is needed. `PROTOC` must not be set globally
//! instead: raft's default codec rejects any protoc that is not 3.x.

use std::env;
use std::error::Error;
use std::path::PathBuf;

/// Root of the `.proto` tree; imports are relative to it
/// (`import "clockwise/common/v1/common.proto"`).
const PROTO_ROOT: &str = "proto";

/// Every file compiled, one per package.
const PROTOS: &[&str] = &[
    "proto/clockwise/common/v1/common.proto",
    "proto/clockwise/hashring/v1/hashring.proto",
    "proto/clockwise/chatrouter/v1/chatrouter.proto",
    "proto/clockwise/cluster/v1/cluster.proto",
    "proto/clockwise/raft/v1/raft.proto",
    "proto/clockwise/command/v1/command.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Read by `tonic::include_file_descriptor_set!("clockwise_descriptor")`
        // in lib.rs and served by gRPC reflection.
        .file_descriptor_set_path(out_dir.join("clockwise_descriptor.bin"))
        // Snapshot data is handed to the file writer as the slice of the received
        // frame it arrived in, not copied into a Vec first.
        .bytes(".clockwise.raft.v1.SnapshotChunk.data")
        .compile_with_config(config, PROTOS, &[PROTO_ROOT])?;
    Ok(())
}
