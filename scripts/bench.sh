#!/usr/bin/env bash
# Benchmarks (not tests): the tables of docs/benchmarks.md.
# Usage: scripts/bench.sh [--quick | --etcd | --scale [--keys N] | --watch [--keys N] [--watchers N]
#                          | --timeline [--calls N]]
#   (no flag)  everything, the comparison with etcd last
#   --quick    engine and snapshots at 10k/100k keys only
#   --etcd     only the comparison with etcd 3.4 (installs Debian's etcd-server if it is
#              missing, and rewrites its section of docs/benchmarks.md)
#   --scale    only issue 15's scale run (not part of the no-flag run): 3 release nodes,
#              N keys (default 10,000,000) loaded beside a writer and a Status poller, a
#              follower restarted and one wiped, snapshots; rewrites its section of
#              docs/benchmarks.md (tens of minutes at 10M keys)
#   --watch    only issue 18's run: local routes from an SDK RingView against the engine
#              and RouteKey, and a topology change's delay to 1,000 watchers on 3 release
#              nodes; rewrites its section of docs/benchmarks.md (about a minute)
#   --timeline only issue 19's timeline: where one write and one linearizable read spend
#              their time across the client, the leader, its driver, the transport and a
#              follower (3 release nodes logging trace points); rewrites its section of
#              docs/benchmarks.md (about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
export CLOCKWISE_SHARED=${CLOCKWISE_SHARED:-$(pwd)/../shared}

# clockwise against etcd 3.4, 3 members each on loopback, driven by one load generator:
# tests/etcd-compare, a cargo workspace of its own (the root build never compiles
# etcd-client) with its own target dir (it never waits on the root build's lock).
etcd_compare() {
    if ! command -v etcd >/dev/null; then
        apt-get install -y etcd-server || { apt-get update && apt-get install -y etcd-server; }
    fi
    local manifest=tests/etcd-compare/Cargo.toml
    local target_dir
    target_dir=$(pwd)/target/etcd-compare
    # etcd-client's build script runs protoc: the vendored one that clockwise-proto's
    # build already uses (so it is in this graph too). Only for this build: raft's codec
    # in the root build rejects it (shared/notes/stack.md, pitfall 5).
    # Not --locked: the SDK comes by path from the root workspace, and this lock has to
    # follow the root's dependency changes (cargo adds only what changed).
    local protoc
    protoc=$(cargo metadata --format-version 1 --manifest-path "$manifest" | python3 -c '
import json, pathlib, platform, sys
arch = {"x86_64": "x86_64", "aarch64": "aarch_64"}[platform.machine()]
package = next(p for p in json.load(sys.stdin)["packages"]
               if p["name"] == "protoc-bin-vendored-linux-" + arch)
print(pathlib.Path(package["manifest_path"]).parent / "bin" / "protoc")')
    CARGO_TARGET_DIR=$target_dir PROTOC=$protoc \
        cargo build --release --manifest-path "$manifest"

    compare_work=$(mktemp -d -t etcd-compare.XXXXXX)
    # The generator owns the six member processes: it kills them when it ends or gets
    # SIGTERM, and the kernel kills them if it dies any other way (PR_SET_PDEATHSIG).
    trap stop_compare EXIT
    trap 'stop_compare; exit 130' INT TERM
    COMPARE_WORK_DIR=$compare_work COMPARE_DOC=docs/benchmarks.md \
        COMPARE_COMMAND="scripts/bench.sh --etcd" \
        "$target_dir/release/clockwise-etcd-compare" &
    compare_pid=$!
    # In the background, so a signal to this script runs the trap at once.
    local status=0
    wait "$compare_pid" || status=$?
    compare_pid=
    return "$status"
}

stop_compare() {
    if [[ -n ${compare_pid:-} ]]; then
        kill -TERM "$compare_pid" 2>/dev/null || true
        wait "$compare_pid" 2>/dev/null || true
        compare_pid=
    fi
    if [[ -n ${compare_work:-} ]]; then
        rm -rf "$compare_work"
    fi
}

# Issue 15's scale run: tests/src/bin/scale, a binary of the root workspace's tests
# crate (it needs only the SDK; no etcd-client, so no protoc and no lock of its own). It
# owns the three node processes: it kills them when it ends or gets SIGTERM, and the
# kernel kills them if it dies any other way (PR_SET_PDEATHSIG).
scale() {
    cargo build --release --locked -p clockwise-tests --bin scale
    scale_work=$(mktemp -d -t clockwise-scale.XXXXXX)
    trap stop_scale EXIT
    trap 'stop_scale; exit 130' INT TERM
    SCALE_WORK_DIR=$scale_work SCALE_DOC=docs/benchmarks.md \
        SCALE_COMMAND="scripts/bench.sh --scale${*:+ $*}" \
        "${CARGO_TARGET_DIR:-$(pwd)/target}/release/scale" "$@" &
    scale_pid=$!
    # In the background, so a signal to this script runs the trap at once.
    local status=0
    wait "$scale_pid" || status=$?
    scale_pid=
    return "$status"
}

stop_scale() {
    if [[ -n ${scale_pid:-} ]]; then
        kill -TERM "$scale_pid" 2>/dev/null || true
        wait "$scale_pid" 2>/dev/null || true
        scale_pid=
    fi
    if [[ -n ${scale_work:-} ]]; then
        rm -rf "$scale_work"
    fi
}

# Issue 18's run: tests/src/bin/watch_bench starts its three nodes through the tests'
# TestCluster (CLOCKWISE_BIN, the release build below), which stops them when it ends.
watch_bench() {
    cargo build --release --locked -p clockwise-tests --bin watch_bench
    WATCH_DOC=docs/benchmarks.md WATCH_COMMAND="scripts/bench.sh --watch${*:+ $*}" \
        "${CARGO_TARGET_DIR:-$(pwd)/target}/release/watch_bench" "$@"
}

# Issue 19's timeline: tests/src/bin/timeline, nodes through TestCluster as above.
timeline() {
    cargo build --release --locked -p clockwise-tests --bin timeline
    TIMELINE_DOC=docs/benchmarks.md TIMELINE_COMMAND="scripts/bench.sh --timeline${*:+ $*}" \
        "${CARGO_TARGET_DIR:-$(pwd)/target}/release/timeline" "$@"
}

cargo build --release --locked -p clockwise-node --bin clockwise
export CLOCKWISE_BIN=${CARGO_TARGET_DIR:-$(pwd)/target}/release/clockwise
if [[ ${1:-} == --watch ]]; then
    shift
    watch_bench "$@"
    exit
fi
if [[ ${1:-} == --timeline ]]; then
    shift
    timeline "$@"
    exit
fi
if [[ ${1:-} == --scale ]]; then
    shift
    scale "$@"
    exit
fi
if [[ ${1:-} == --etcd ]]; then
    etcd_compare
    exit
fi
cargo bench --locked -p clockwise-engine --bench engine -- "$@"
cargo bench --locked -p clockwise-node --bench snapshot -- "$@"
CLOCKWISE_BENCH_NODES=1 cargo bench --locked -p clockwise-tests --bench rpc
CLOCKWISE_BENCH_NODES=3 cargo bench --locked -p clockwise-tests --bench rpc
if [[ $# -eq 0 ]]; then
    etcd_compare
fi
