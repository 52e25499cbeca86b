#!/usr/bin/env bash
# Layout rules that keep the code navigable, checked by scripts/test.sh:
#  - no Rust source file in proto/, engine/, node/, cluster/, client/ holds more than 700
#    lines of non-test code (a trailing `#[cfg(test)] mod … { … }` block does not count);
#  - the engine stays pure: no tonic, tokio, raft, hyper or clap in the normal
#    dependency tree of clockwise-engine;
#  - the node library builds its dependency tree without the command line (clap).
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
python3 - <<'PY' || status=1
import pathlib, re, sys
limit, bad = 700, []
for crate in ["proto", "engine", "node", "cluster", "client"]:
    for path in sorted(pathlib.Path(crate).rglob("*.rs")):
        if "target" in path.parts or "tests" in path.parts or "benches" in path.parts:
            continue
        lines = path.read_text().splitlines()
        # Non-test code ends where the file's test module begins.
        end = len(lines)
        for i, line in enumerate(lines):
            if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(r"\s*mod \w+ \{", lines[i + 1]):
                end = i
                break
        if path.name.endswith("_tests.rs") or path.name == "tests.rs":
            continue
        if end > limit:
            bad.append(f"{path}: {end} lines of non-test code (limit {limit})")
for line in bad:
    print(f"error: {line}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY

forbidden='^(tonic|tokio|raft|raft-engine|hyper|clap) '
if cargo tree --locked -p clockwise-engine -e normal --prefix none | grep -Eq "$forbidden"; then
  echo "error: clockwise-engine depends on an async, RPC, raft or CLI crate:" >&2
  cargo tree --locked -p clockwise-engine -e normal --prefix none | grep -E "$forbidden" >&2
  status=1
fi
if cargo tree --locked -p clockwise-node --no-default-features -e normal --prefix none | grep -q '^clap '; then
  echo "error: the clockwise-node library (without its cli feature) depends on clap" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "layout: ok (files ≤ 700 lines of non-test code; engine pure; node library without clap)"
exit "$status"
