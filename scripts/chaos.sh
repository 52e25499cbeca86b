#!/usr/bin/env bash
# The chaos suite: a cluster of real node processes, each behind a fault-injecting TCP
# proxy, under a seeded schedule of faults (kill -9, SIGSTOP, partitions, delays,
# connection resets, leader transfers, member removal, wiped followers) while SDK
# clients write and read; then a per-key linearizability check, a lost-write check and
# a replica digest comparison. Exits non-zero on a violation, printing the seed.
# docs/chaos.md explains the faults, the checks and the output.
#
# Usage: scripts/chaos.sh [--seed N] [--duration S] [--nodes N] [--clients N] [--keys N]
#                         [--faults kill,pause,partition,delay,cut,transfer,readd,wipe]
#                         [--history FILE] [--stale-reads]
# Defaults: a seed from the clock, 60 s of faults, 5 nodes, 6 clients, 12 keys.
# CLOCKWISE_PROFILE=debug uses the debug build (what scripts/test.sh already built);
# the binaries are run from $CARGO_TARGET_DIR when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${CLOCKWISE_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release --locked -p clockwise-node --bin clockwise -p clockwise-tests --bin chaos
else
  cargo build --locked -p clockwise-node --bin clockwise -p clockwise-tests --bin chaos
fi
# Where cargo put them: $CARGO_TARGET_DIR when set (a relative one is taken from the
# repository root, as cargo takes it from here), else ./target.
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in
  /*) ;;
  *) target_dir=$(pwd)/$target_dir ;;
esac
export CLOCKWISE_BIN=$target_dir/$profile/clockwise
exec "$target_dir/$profile/chaos" "$@"
