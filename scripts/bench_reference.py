#!/usr/bin/env python3
"""Times the Python drill reference on a JSON-lines trace written by `cargo bench --bench engine`.

Usage: bench_reference.py TRACE [--position-space drill|u64]
Prints `reference_seconds <float> calls <int>`; the trace is parsed before the clock starts.
Only HashRing calls on one ring are expected (that is what the bench writes).
"""
import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

shared = Path(os.environ.get("CLOCKWISE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
sys.path.insert(0, str(shared / "reference"))
import ring_reference  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--position-space", choices=["drill", "u64"], default="u64")
    args = ap.parse_args()
    if args.position_space == "u64":
        u64 = lambda s: int.from_bytes(hashlib.md5(s.encode()).digest()[:8], "big")  # noqa: E731
        ring_reference._hash = u64
        ring_reference.compute_position = u64
    calls = [json.loads(line) for line in Path(args.trace).read_text().splitlines() if line]
    ring = ring_reference.HashRing()
    bound = [(getattr(ring, c["method"]), c["ts"], c["args"]) for c in calls]
    start = time.perf_counter()
    for method, ts, call_args in bound:
        method(ts, *call_args)
    elapsed = time.perf_counter() - start
    print(f"reference_seconds {elapsed:.6f} calls {len(calls)}")


if __name__ == "__main__":
    main()
