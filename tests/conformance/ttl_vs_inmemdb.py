#!/usr/bin/env python3
"""ttl_vs_inmemdb -- the TTL model of ring_model.py against the drill's InMemoryDB
(shared/reference/inmemdb_reference.py) where their semantics coincide.

Both say: a value is alive while ``timestamp < expiry``; setting it again without a TTL
clears the TTL; a backup saves what is alive with ``remaining = expiry - backup_ts`` and
answers how many keys it saved; a restore picks the latest backup at or before the
target (the first of equal timestamps), replaces everything and sets
``expiry = restore_ts + remaining``, answering the count (or nothing). On a random trace
with non-decreasing timestamps (InMemoryDB keeps dead data that earlier timestamps could
still see; the ring drops it) every liveness, count and expiry must agree. The ring model
is itself checked against the Rust engine by ``ring_diff.py --lifecycle``.

    python3 tests/conformance/ttl_vs_inmemdb.py [--seed S] [--steps N]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ring_diff  # noqa: E402
import ring_model  # noqa: E402

KEYS = [f"k{i}" for i in range(8)]
TTLS = (0, 0, 1, 2, 3, 5, 10)


def load_inmemdb():
    path = ring_diff.shared_dir() / "reference" / "inmemdb_reference.py"
    spec = importlib.util.spec_from_file_location("inmemdb_reference", path)
    mod = importlib.util.module_from_spec(spec)
    sys.dont_write_bytecode = True
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5000)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    hash_ring, _ = ring_model.build(ring_diff.load_reference("drill", "ttl"))
    ring = hash_ring()
    ring.add_node(0, "n")                 # one node: every key is stored, nothing evicted
    db = load_inmemdb().InMemoryDB()
    ts = 0
    checks = 0
    for step in range(args.steps):
        ts += rng.choice((0, 0, 1, 1, 2, 3))
        op = rng.choices(("store", "check", "backup", "restore"), (6, 6, 1, 1))[0]
        if op == "store":
            key, ttl = rng.choice(KEYS), rng.choice(TTLS)
            ring.store_key_ttl(ts, key, ttl)
            if ttl:
                db.set_at_with_ttl(key, "f", "v", ts, ttl)
            else:
                db.set_at(key, "f", "v", ts)
            continue
        if op == "backup":
            got, want = ring.backup(ts), db.backup(ts)
        elif op == "restore":
            target = rng.randint(max(0, ts - 40), ts)
            got, want = ring.restore(ts, target), db.restore(ts, target)
            want = None if want == "" else int(want)
        else:
            key = rng.choice(KEYS)
            got = key in ring.keys and ring._alive(key, ts)
            want = db.get_at(key, "f", ts) != ""
            if got:
                fd = db.data[key]["f"]
                got, want = (got, ring.expiry.get(key)), (want, fd["expiry"])
        checks += 1
        if got != want:
            print(f"ttl_vs_inmemdb: MISMATCH at step {step} ({op}, ts={ts}, seed {args.seed}): "
                  f"ring model {got!r}, InMemoryDB {want!r}")
            return 1
    print(f"ttl_vs_inmemdb: seed {args.seed}, {args.steps} steps, {checks} checks agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
