#!/usr/bin/env bash
# Throwaway certificates to try TLS on one machine: a client CA with a node and a client
# certificate, a peer CA with a peer certificate (all for 127.0.0.1 / localhost).
# Prints the node and ctl flags that use them. Not for production keys.
# Usage: scripts/mint-certs.sh DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/mint-certs.sh DIR" >&2; exit 2; }
dir=$(realpath -m "$1")
cd "$(dirname "$0")/.."
cargo run --quiet --locked -p clockwise-tests --bin mint-certs -- "$dir"
