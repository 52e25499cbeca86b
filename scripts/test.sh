#!/usr/bin/env bash
# Every test of clockwise, from a fresh machine: `scripts/test.sh`.
#
# Needs only cargo and python3 (3.9+). Installs nothing system-wide: protoc comes from a
# crate, Python tools go into .venv. Steps: format and lint, the Rust tests of every
# crate, then the differential conformance test of the engine against the Python drill
# reference (shared/reference/ring_reference.py) on fixed seeds in both position spaces.
#
# Environment: CLOCKWISE_SHARED (default ../shared: the folder with reference/ and spec/),
# CLOCKWISE_DIFF_SEEDS (default "1 2 3"), CLOCKWISE_DIFF_CALLS (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

export CLOCKWISE_SHARED=${CLOCKWISE_SHARED:-$root/../shared}
seeds=${CLOCKWISE_DIFF_SEEDS:-1 2 3}
calls=${CLOCKWISE_DIFF_CALLS:-20000}

step() { printf '\n==> %s\n' "$*"; }

if [ ! -f "$CLOCKWISE_SHARED/reference/ring_reference.py" ]; then
  echo "error: no drill reference at $CLOCKWISE_SHARED/reference/ring_reference.py" >&2
  echo "       (set CLOCKWISE_SHARED to the folder that holds reference/)" >&2
  exit 1
fi

step "python venv (.venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
py=$root/.venv/bin/python

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (every crate)"
cargo test --workspace --locked

step "differential conformance: engine vs ring_reference.py"
cargo build --locked -p clockwise-node --example engine_replay
replay=$root/target/debug/examples/engine_replay
passed=0
failed=0
for space in drill u64; do
  for seed in $seeds; do
    if "$py" tests/conformance/ring_diff.py --seed "$seed" --calls "$calls" \
      --position-space "$space" --impl "$replay --position-space $space"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
    fi
  done
done

echo
echo "differential runs: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
