#!/usr/bin/env bash
# Benchmarks (not tests): the tables of docs/benchmarks.md.
# Usage: scripts/bench.sh [--quick]   (--quick: engine and snapshots at 10k/100k keys only)
set -euo pipefail
cd "$(dirname "$0")/.."
export CLOCKWISE_SHARED=${CLOCKWISE_SHARED:-$(pwd)/../shared}
cargo build --release --locked -p clockwise-node --bin clockwise
cargo bench --locked -p clockwise-node --bench engine -- "$@"
cargo bench --locked -p clockwise-node --bench snapshot -- "$@"
export CLOCKWISE_BIN=$(pwd)/target/release/clockwise
CLOCKWISE_BENCH_NODES=1 cargo bench --locked -p clockwise-tests --bench rpc
CLOCKWISE_BENCH_NODES=3 cargo bench --locked -p clockwise-tests --bench rpc
