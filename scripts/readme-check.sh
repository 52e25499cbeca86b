#!/usr/bin/env bash
# The README runs as written: every ```sh block marked `<!-- run: cluster -->` (the HTML
# comment on the line before the fence) runs verbatim against a fresh
# `clockwise cluster up --nodes 3`, in README order, each with `bash -euo pipefail` in a
# scratch directory, with .venv/bin (grpcurl) and the `clockwise` binary first on PATH.
# Any non-zero exit fails the check and prints the block with its output.
#
# Markers: every ```sh block must carry one, so a new block is a decision:
#   <!-- run: cluster -->        runs against the cluster (README's 127.0.0.1:50051-50053);
#   <!-- run: no (REASON) -->    never runs here: it starts the cluster itself, builds,
#                                runs for minutes, or changes the membership; REASON says.
#
# Ports: the cluster runs on the README's ports (127.0.0.1:50051-50053, peers on
# 50151-50153) when they are free. When they are not, it runs on free ports and the only
# change made to a block is textual: `127.0.0.1:5005N` becomes node N's address and
# `127.0.0.1:5015N` its peer address; CLOCKWISE_ENDPOINTS then names the three nodes
# (`clockwise ctl`'s default is 127.0.0.1:50051).
#
# Environment: CLOCKWISE_BIN (default target/debug/clockwise, built by scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=${CLOCKWISE_BIN:-$root/target/debug/clockwise}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
if [ ! -x "$bin" ]; then
  echo "readme-check: no clockwise binary at $bin (cargo build -p clockwise-node --bin clockwise)" >&2
  exit 1
fi
if [ ! -x "$root/.venv/bin/grpcurl" ]; then
  echo "readme-check: no .venv/bin/grpcurl (scripts/test.sh installs it)" >&2
  exit 1
fi

scratch=$(mktemp -d)
up_pid=""
cleanup() {
  if [ -n "$up_pid" ]; then
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

# Extract the blocks: block-NNN.sh for each `run: cluster` block; refuse unmarked ones.
python3 - "$root/README.md" "$scratch" <<'EOF'
import re, sys
readme, out = sys.argv[1], sys.argv[2]
lines = open(readme, encoding="utf-8").read().split("\n")
errors, n, i = [], 0, 0
while i < len(lines):
    if lines[i].strip() in ("```sh", "```bash", "```shell"):
        start = i + 1
        marker = lines[i - 1].strip() if i > 0 else ""
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            errors.append(f"README.md:{i + 1}: the block never closes")
            break
        m = re.fullmatch(r"<!-- run: (cluster|no \(.+\)) -->", marker)
        if not m:
            errors.append(f"README.md:{i + 1}: a shell block without a `<!-- run: cluster -->` "
                          "or `<!-- run: no (REASON) -->` marker on the line before it")
        elif m.group(1) == "cluster":
            n += 1
            with open(f"{out}/block-{n:03}.sh", "w", encoding="utf-8") as f:
                f.write(f"# README.md lines {start + 1}-{end}\n")
                f.write("\n".join(lines[start:end]) + "\n")
        i = end + 1
    else:
        i += 1
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
if n == 0:
    print("README.md: no `<!-- run: cluster -->` block", file=sys.stderr)
    sys.exit(1)
EOF

# The README's ports when free, else free ones below the ephemeral range.
base=$(python3 - <<'EOF'
import random, socket
def free(base):
    held = []
    try:
        for port in (base, base + 1, base + 2, base + 100, base + 101, base + 102,
                     base + 200, base + 201, base + 202):  # client, peer, HTTP
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in held:
            s.close()
if free(50051):
    print(50051)
else:
    for _ in range(1000):
        base = random.randrange(20000, 32500)
        if free(base):
            print(base)
            break
EOF
)
if [ -z "$base" ]; then
  echo "readme-check: no free ports for the cluster" >&2
  exit 1
fi
if [ "$base" -ne 50051 ]; then
  echo "readme-check: 127.0.0.1:50051-50053 are taken; the cluster runs on $base-$((base + 2))" \
    "and the blocks' addresses are rewritten to match"
  python3 - "$base" "$scratch"/block-*.sh <<'EOF'
import re, sys
base = int(sys.argv[1])
for path in sys.argv[2:]:
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"127\.0\.0\.1:50(0|1)5([1-3])\b",
                  lambda m: f"127.0.0.1:{base + 100 * int(m[1]) + int(m[2]) - 1}", text)
    open(path, "w", encoding="utf-8").write(text)
EOF
  export CLOCKWISE_ENDPOINTS="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
fi

mkdir -p "$scratch/bin" "$scratch/work"
ln -s "$bin" "$scratch/bin/clockwise"
export PATH="$scratch/bin:$root/.venv/bin:$PATH"

"$bin" cluster up --nodes 3 --base-port "$base" --data-dir "$scratch/data" \
  >"$scratch/up.out" 2>"$scratch/up.err" &
up_pid=$!
# Poll (bounded) until every node serves and one of them leads.
deadline=$((SECONDS + 60))
until grep -q "is up" "$scratch/up.out" &&
  grpcurl -plaintext "127.0.0.1:$base" clockwise.cluster.v1.Cluster/Status 2>/dev/null |
  grep -q '"leaderId"'; do
  if ! kill -0 "$up_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "readme-check: the cluster did not come up:" >&2
    cat "$scratch/up.out" "$scratch/up.err" >&2
    exit 1
  fi
  sleep 0.1
done

passed=0
failed=0
for block in "$scratch"/block-*.sh; do
  where=$(head -1 "$block" | sed 's/^# //')
  if (cd "$scratch/work" && bash -euo pipefail "$block") >"$block.out" 2>&1; then
    echo "readme-check: ok: $where"
    passed=$((passed + 1))
  else
    status=$?
    echo "readme-check: FAILED (exit $status): $where" >&2
    echo "--- the block:" >&2
    cat "$block" >&2
    echo "--- its output:" >&2
    cat "$block.out" >&2
    failed=$((failed + 1))
  fi
done
echo "readme-check: $passed block(s) ran, $failed failed"
[ "$failed" -eq 0 ]
