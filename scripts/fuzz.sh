#!/usr/bin/env bash
# Fuzzes clockwise's log codec, snapshot readers and ring engine (targets in fuzz/).
#
#   scripts/fuzz.sh                      every target, 10 s each
#   scripts/fuzz.sh --seconds 600        every target, 10 minutes each
#   scripts/fuzz.sh engine_ops           one target (several may be named)
#   scripts/fuzz.sh --keep-going ...     do not stop a target at its first crash (libFuzzer
#                                        fork mode): finds more than one bug per run
#
# Targets: command_decoder, snapshot_decoder, engine_ops (fuzz/README.md says what each
# checks). Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) if it is missing.
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them. Builds into target/fuzz (or $CARGO_TARGET_DIR), so the workspace's own
# target directory is not locked. Each target's corpus is fuzz/corpus/TARGET, seeded by
# the target itself at start-up; crashes go to fuzz/artifacts/TARGET.
#
# Exits 1 if any target crashed (a panic, a failed check, a time-out or running out of
# memory), after printing each artifact and the command that reproduces it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

all=(command_decoder snapshot_decoder engine_ops)
seconds=10
keep_going=()
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --keep-going) keep_going=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1); shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$seconds" in
  '' | *[!0-9]*) echo "error: --seconds takes a whole number, not '$seconds'" >&2; exit 2 ;;
esac
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  case " ${all[*]} " in
    *" $t "*) ;;
    *) echo "error: no fuzz target '$t' (targets: ${all[*]})" >&2; exit 2 ;;
  esac
done

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/fuzz}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked
fi

# No sanitizer: clockwise has no unsafe code, and AddressSanitizer would rebuild every
# dependency with it and halve the executions. Debug assertions on, as in `cargo test`:
# the engine checks its own invariants with debug_assert!. 16 codegen units instead of
# cargo-fuzz's 1: the first build takes about 10 minutes on 2 cores instead of 14.
# (Other flags, even in a reproduction, rebuild everything: keep them in step.)
flags=(--sanitizer none --debug-assertions --codegen-units 16)
rerun="RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=${CARGO_TARGET_DIR#"$root"/} cargo fuzz"

echo "==> cargo fuzz build"
cargo fuzz build --fuzz-dir "$root/fuzz" "${flags[@]}"

crashed=()
for t in "${targets[@]}"; do
  echo
  echo "==> $t for ${seconds}s"
  artifacts=$root/fuzz/artifacts/$t
  mkdir -p "$artifacts"
  marker=$(mktemp)
  status=0
  # -timeout: one input taking 10 s is a hang. -rss_limit_mb: using 2 GiB is running out
  # of memory (an allocation the system refuses aborts: a crash too).
  CLOCKWISE_FUZZ_SEEDS=$root/fuzz/corpus/$t cargo fuzz run --fuzz-dir "$root/fuzz" "${flags[@]}" "$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    ${keep_going[@]+"${keep_going[@]}"} || status=$?
  new=$(find "$artifacts" -type f -newer "$marker" | sort)
  rm -f "$marker"
  if [ "$status" -ne 0 ] || [ -n "$new" ]; then
    crashed+=("$t")
    echo "!!! $t failed (exit status $status)"
    for artifact in $new; do
      echo "    artifact: $artifact"
      echo "    hex:      $(head -c 512 "$artifact" | od -An -v -tx1 | tr -d ' \n')" # first 512 bytes
      echo "    reproduce: $rerun run --fuzz-dir fuzz ${flags[*]} $t ${artifact#"$root"/}"
      echo "    minimize:  $rerun tmin --fuzz-dir fuzz ${flags[*]} $t ${artifact#"$root"/}"
    done
  fi
done

echo
if [ ${#crashed[@]} -gt 0 ]; then
  echo "fuzz: ${#crashed[@]} of ${#targets[@]} targets crashed: ${crashed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each, no crash"
