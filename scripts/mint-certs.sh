#!/usr/bin/env bash
# Throwaway certificates to try TLS on one machine: a client CA with a node and a client
# certificate, a peer CA with one peer certificate per node id 1..=N (default 5):
# peer-<id>.pem names its node as the URI SAN clockwise://node/<id> (peers accept a
# node's calls only for that id); peer.pem is node 1's. All for 127.0.0.1 / localhost.
# Prints the node and ctl flags that use them. Not for production keys.
# Usage: scripts/mint-certs.sh DIR [--nodes N]
set -euo pipefail
[ $# -eq 1 ] || { [ $# -eq 3 ] && [ "$2" = --nodes ]; } || {
  echo "usage: scripts/mint-certs.sh DIR [--nodes N]" >&2; exit 2; }
dir=$(realpath -m "$1")
shift
cd "$(dirname "$0")/.."
cargo run --quiet --locked -p clockwise-tests --bin mint-certs -- "$dir" "$@"
