#!/usr/bin/env python3
"""ring_diff -- differential conformance test of HashRing / ChatRouter against the Python oracle.

What it proves
--------------
For a seeded, random, deliberately nasty trace of drill calls (both services interleaved,
several independent rings per service), every call is executed on the exact Python oracle
``shared/reference/ring_reference.py`` *and* on the implementation under test, and every
single result is compared (type-strict: ``true`` is not ``1``, ``null`` is not ``[]``).
The oracle is imported and run as is; nothing of its logic is copied here. The only things
changed on the imported module are:

* its L6 ``asyncio.sleep`` is a no-op (``ring_reference.asyncio`` is replaced by a shim that
  forwards everything else to the real asyncio; the global asyncio module is untouched);
* in ``--position-space u64`` its position function (``_hash`` and ``compute_position``) is
  ``int.from_bytes(md5(s.encode()).digest()[:8], "big")``; nothing else differs.

Passing means: on that trace, the implementation returns exactly what the drill reference
returns, including LRU tie-breaks by insertion order, access time that follows the
call's timestamp (not call order), ring position ties broken by node name, stale sizes
after a ring empties, count- vs size-based eviction, batch semantics and L6 fail-fast
checks (results only: the sleeps are not timed here).

The trace generator aims at the edge cases: ~10 node ids including ``n0``/``n12`` (same
drill position 47), keys that equal node names or replica strings (``a_0``, ``node_c_1``,
...; they land exactly on a node position, also in u64 space), repeated and earlier
timestamps, rings that drain to empty and refill, zero-replica nodes, capacities and
memory limits of -1/0/small and exactly at the current usage, sizes/bandwidths exactly
at the limit/usage boundary, batches with repeated keys and unknown op types.
To aim at boundaries the generator *reads* the oracle through its public read-only
methods (list_nodes, get_used, get_memory_used, ...); so a trace is a pure function of
(seed, --calls prefix, position space).

Running
-------
    # generator self-test, no Rust needed (the oracle against a second oracle instance,
    # through the same JSON-lines protocol code as a real implementation):
    python3 tests/conformance/ring_diff.py --self-check --seed 1
    python3 tests/conformance/ring_diff.py --self-check --seed 1 --position-space u64

    # against the Rust engine (a random seed; the chosen seed is printed first):
    cargo build -p clockwise-node --example engine_replay
    python3 tests/conformance/ring_diff.py --impl target/debug/examples/engine_replay

    # reproduce a failure: rerun with the printed seed (and position space); ``--calls``
    # may be cut down to the failing index + 1, the trace prefix is identical.
    python3 tests/conformance/ring_diff.py --seed 1234 --calls 5000 --impl target/debug/examples/engine_replay

CI runs fixed seeds (``--seed 1``, ``--seed 2``, ... in both position spaces) so failures
are reproducible; run random seeds by hand (omit ``--seed``) to look for new ones.

CLI
---
    --seed S                 int; default random (printed)
    --calls N                number of calls (default 20000)
    --position-space drill|u64   (default drill; see --impl below)
    --history K              calls of the failing ring shown on a mismatch (default 15)
    --timeout SEC            max wait for one reply of the implementation (default 10)
    --dump-trace FILE        also write every request line (exactly the impl's stdin) to FILE
    --stats                  print per-method call counts and result kinds at the end
    --self-check             implementation = a second in-process oracle instance
    --impl CMD ARGS...       implementation command line; MUST BE THE LAST OPTION: every word
                             after --impl belongs to the command (argparse.REMAINDER). A single
                             quoted word containing spaces is split with shlex, so
                             ``--impl "engine_replay --flag"`` works too.
                             If the command itself carries ``--position-space X`` (or
                             ``--position-space=X``) and ring_diff's own --position-space was not
                             given, ring_diff uses X as well (given and different -> error).
                             The child also gets CLOCKWISE_POSITION_SPACE=<space> in its env.
Exit status: 0 all calls matched; 1 a mismatch or an implementation failure (crash, timeout,
bad JSON, ``{"error": ...}`` reply); 2 usage/setup error. The last line printed is always
``ring_diff: N passed, M failed`` (N = compared calls that matched; it stops at the first
failure, so M is 0 or 1).

Protocol (JSON lines; one request per line on the child's stdin, one reply per line on
its stdout; the child stays up for the whole trace; its stderr is kept and its tail shown
on failure)
    request: {"svc": "hashring"|"chatrouter", "ring": "<namespace>", "method": "<python
              method name>", "ts": <int>, "args": [<positional args after timestamp>]}
      e.g.   {"svc":"hashring","ring":"r1","method":"add_node_with_replicas","ts":3,"args":["node_a",3]}
             {"svc":"hashring","ring":"r0","method":"batch_operations","ts":9,
              "args":[[{"type":"store","key":"a"},{"type":"nope","key":"c"}]]}
             {"svc":"chatrouter","ring":"r0","method":"replicate_sessions","ts":4,
              "args":[[{"source":"s1","destination":"s2","bandwidth_mb":30}],2]}
    reply:   {"result": <the Python result as JSON: null, bool, int, str, list>}
             or {"error": "<text>"}  (the implementation refused the call; counted as a mismatch)
Each (svc, ring) pair is an independent instance, created on first use (ring names here are
"r0".."r3" for each service). Batch ``assign`` ops always carry ``size_mb``; other batch ops
sometimes carry it and sometimes not. Unknown batch op types are sent (the drill answers null).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import importlib.util
import inspect
import json
import os
import random
import select
import shlex
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

# ---------------------------------------------------------------------------
# Oracle loading
# ---------------------------------------------------------------------------

REFERENCE_FILE = "ring_reference.py"


def shared_dir() -> Path:
    """The project's shared/ directory: $CLOCKWISE_SHARED, else <repo>/../shared."""
    env = os.environ.get("CLOCKWISE_SHARED")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve()
    default = here.parents[2].parent / "shared"
    if (default / "reference" / REFERENCE_FILE).is_file():
        return default
    for ancestor in here.parents:  # e.g. a worktree nested deeper than the usual layout
        cand = ancestor / "shared"
        if (cand / "reference" / REFERENCE_FILE).is_file():
            return cand
    return default


def u64_position(s: str) -> int:
    """u64 position space: the first 8 md5 digest bytes, big-endian."""
    return int.from_bytes(hashlib.md5(s.encode()).digest()[:8], "big")


class _NoSleepAsyncio(types.SimpleNamespace):
    """Stands in for ``asyncio`` inside the oracle module only: sleep is a no-op."""

    @staticmethod
    async def sleep(delay, result=None):
        return result

    def __getattr__(self, name):  # everything else is the real asyncio
        return getattr(asyncio, name)


def load_reference(position_space: str, tag: str) -> types.ModuleType:
    """Import a fresh, private copy of the oracle module (patched as documented above)."""
    path = shared_dir() / "reference" / REFERENCE_FILE
    if not path.is_file():
        raise SetupError(
            f"oracle not found at {path}; set CLOCKWISE_SHARED to the shared/ directory")
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # leave no __pycache__ in shared/
    try:
        spec = importlib.util.spec_from_file_location(f"ring_reference_{tag}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = dont_write
    mod.asyncio = _NoSleepAsyncio()
    if position_space == "u64":
        mod._hash = u64_position
        mod.compute_position = u64_position
    return mod


class SetupError(Exception):
    pass


class ImplFailure(Exception):
    """The implementation crashed, timed out or broke the protocol."""


# ---------------------------------------------------------------------------
# The oracle as an engine: (svc, ring) -> instance, method dispatch
# ---------------------------------------------------------------------------

SERVICE_CLASSES = {"hashring": "HashRing", "chatrouter": "ChatRouter"}

# Read-only public methods the generator may call on the oracle to aim at boundaries.
PEEK_METHODS = {
    "hashring": {"list_nodes", "get_used", "get_capacity", "route_key", "get_load"},
    "chatrouter": {"list_servers", "get_memory_used", "get_memory_limit", "route_request",
                   "get_server_load"},
}


class ReferenceEngine:
    def __init__(self, mod: types.ModuleType, lifecycle: bool = False):
        self.mod = mod
        self.instances: dict[tuple[str, str], object] = {}
        self.loop = asyncio.new_event_loop()  # one loop reused for every async method
        if lifecycle:
            # The drill reference plus clockwise's TTL, backups and merges
            # (tests/conformance/ring_model.py).
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import ring_model
            hash_ring, chat_router = ring_model.build(mod)
            self.classes = {"hashring": hash_ring, "chatrouter": chat_router}
        else:
            self.classes = {svc: getattr(mod, name) for svc, name in SERVICE_CLASSES.items()}

    def public_methods(self, svc: str) -> set[str]:
        return {n for n in dir(self.classes[svc])
                if not n.startswith("_") and callable(getattr(self.classes[svc], n))}

    def _instance(self, svc: str, ring: str):
        key = (svc, ring)
        obj = self.instances.get(key)
        if obj is None:
            obj = self.classes[svc]()
            self.instances[key] = obj
        return obj

    def call(self, svc, ring, method, ts, args):
        if svc not in SERVICE_CLASSES:
            raise ValueError(f"unknown svc {svc!r}")
        if not isinstance(method, str) or method.startswith("_") or \
                method not in self.public_methods(svc):
            raise ValueError(f"unknown method {method!r} for {svc}")
        if not isinstance(args, list):
            raise ValueError("args must be a list")
        result = getattr(self._instance(svc, ring), method)(ts, *args)
        if inspect.iscoroutine(result):
            result = self.loop.run_until_complete(result)
        return result

    def peek(self, svc, ring, method, *args):
        """Read-only look at the oracle state (does not create the ring)."""
        assert method in PEEK_METHODS[svc], method
        obj = self.instances.get((svc, ring))
        if obj is None:
            obj = self.classes[svc]()  # an empty ring, thrown away
        return getattr(obj, method)(0, *args)

    def describe(self, svc, ring) -> list[str]:
        """The instance's plain data attributes (dicts in their insertion order), for reports."""
        obj = self.instances.get((svc, ring))
        if obj is None:
            return ["(not created)"]
        lines = []
        for name, value in vars(obj).items():
            if isinstance(value, collections.defaultdict):
                continue  # the asyncio lock tables
            try:
                text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            except TypeError:
                text = repr(value)
            lines.append(f"{name} = {text}")
        return lines

    def close(self):
        self.loop.close()


# ---------------------------------------------------------------------------
# Executors: the implementation under test, spoken to in JSON lines
# ---------------------------------------------------------------------------

def encode_request(req: dict) -> str:
    return json.dumps(req, separators=(",", ":"), ensure_ascii=False)


def decode_reply(line: str) -> dict:
    try:
        reply = json.loads(line)
    except ValueError as e:
        raise ImplFailure(f"reply is not JSON ({e}): {line[:300]!r}") from None
    if not isinstance(reply, dict) or not ("result" in reply or "error" in reply):
        raise ImplFailure(f"reply is not an object with 'result' or 'error': {line[:300]!r}")
    return reply


class Executor:
    description = "?"

    def exchange(self, line: str) -> str:
        raise NotImplementedError

    def roundtrip(self, req: dict) -> dict:
        return decode_reply(self.exchange(encode_request(req)))

    def diagnostics(self) -> str:
        return ""

    def close(self):
        pass


class InProcessExecutor(Executor):
    """A second oracle instance behind the same line protocol (for --self-check)."""

    def __init__(self, engine: ReferenceEngine):
        self.engine = engine
        self.description = "self-check (second in-process oracle instance)"

    def exchange(self, line: str) -> str:
        req = json.loads(line)
        try:
            result = self.engine.call(req["svc"], req["ring"], req["method"], req["ts"],
                                      req["args"])
            reply = {"result": result}
        except Exception as e:  # the protocol answer for a refused call
            reply = {"error": f"{type(e).__name__}: {e}"}
        return json.dumps(reply, ensure_ascii=False)

    def close(self):
        self.engine.close()


class SubprocessExecutor(Executor):
    def __init__(self, cmd: list[str], env: dict, timeout: float):
        self.cmd = cmd
        self.timeout = timeout
        self.description = shlex.join(cmd)
        self.stderr_file = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.stderr_file, env=env, bufsize=0)
        except OSError as e:
            raise SetupError(f"cannot start implementation {self.description!r}: {e}") from None
        self.fd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.hung = False

    def exchange(self, line: str) -> str:
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise ImplFailure(f"cannot write to the implementation ({e}); "
                              f"exit status {self.proc.poll()}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                out = bytes(self.buf[:nl])
                del self.buf[:nl + 1]
                return out.decode("utf-8", errors="replace")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.hung = True
                raise ImplFailure(f"no reply within {self.timeout} s")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                try:
                    status = self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    status = None
                raise ImplFailure(f"implementation closed its stdout (exit status {status})"
                                  + (f"; partial line {bytes(self.buf)[:200]!r}" if self.buf else ""))
            self.buf += chunk

    def diagnostics(self, lines: int = 20) -> str:
        try:
            self.stderr_file.seek(0)
            text = self.stderr_file.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        tail = text.splitlines()[-lines:]
        if not tail:
            return ""
        return "  implementation stderr (last %d lines):\n" % len(tail) + \
            "\n".join("    | " + t for t in tail)

    def close(self):
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            if self.hung:
                self.proc.kill()
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr_file.close()


# ---------------------------------------------------------------------------
# The trace generator
# ---------------------------------------------------------------------------

SERVICES = ("hashring", "chatrouter")
NAMESPACES = ("r0", "r1", "r2", "r3")
# n0 and n12 share drill position 47; srv_* ids are also used as HashRing node ids.
NODE_POOL = ("n0", "n12", "node_a", "node_b", "node_c", "a", "b", "srv_a", "srv_b", "x")
GHOST = "ghost"
# k14 sits at 47 (the n0/n12 tie), k332 at 45 (= node_a), k0 wraps (85). The last group
# are node names / replica strings: such a key hashes exactly onto that node position
# (exercises the '>=' boundary, in u64 space too).
KEY_POOL = tuple(f"k{i}" for i in range(24)) + (
    "key1", "key2", "key3", "key4", "r1", "r2", "r3", "r4", "big", "k332",
    "n0", "node_a", "b", "a_0", "x_1", "srv_b_2", "node_c_1")
EMPTY_KEY = ""

TOP_N = (0, 1, 2, 3, 5, 100)
REPLICAS = (0, 1, 1, 2, 2, 3, 3, 3, 5, 5)
CAPACITIES = (-1, 0, 1, 2, 3, 5)
SIZES = (0, 1, 5, 10, 30, 60, 120)
LIMITS = (-1, 0, 10, 50, 100, 200)
BANDWIDTHS = (0, 1, 10, 30, 100)
BATCH_LEN = (0, 1, 2, 2, 3, 3, 4, 4, 5, 6)
SYNC_LEN = (0, 1, 2, 3, 3, 4, 5)
HR_UNKNOWN_OPS = ("nope", "assign", "remove", "Store", "")
CR_UNKNOWN_OPS = ("nope", "store", "remove_key", "Assign", "")

# Topology phases per ring: weight multipliers for (add-kind, remove-kind) methods.
PHASES = {"grow": (1.5, 0.4), "steady": (0.5, 1.5), "drain": (0.2, 5.0)}
# Beyond the drill (--lifecycle): TTLs short enough that keys die within a trace.
TTLS = (1, 1, 2, 3, 5, 10, 30)


class TraceGenerator:
    def __init__(self, rng: random.Random, oracle: ReferenceEngine, empty_ids: bool = True,
                 lifecycle: bool = False):
        self.rng = rng
        self.oracle = oracle
        self.empty_ids = empty_ids
        self.clock = 0
        self.last_ring = {svc: rng.choice(NAMESPACES) for svc in SERVICES}
        self.phase: dict[tuple[str, str], str] = {}
        self.hot: dict[tuple[str, str], list[str]] = {}
        self.recent_ts: dict[tuple[str, str], collections.deque] = {}
        # method -> (weight, kind, builder); kind in {"add", "remove", None}
        self.table = {
            "hashring": {
                "add_node": (5, "add", self.b_add_node),
                "remove_node": (4, "remove", self.b_remove_node),
                "route_key": (6, None, self.b_key),
                "get_node_count": (1, None, self.b_none),
                "store_key": (22, None, self.b_key),
                "list_nodes": (1, None, self.b_none),
                "get_load": (3, None, self.b_node),
                "top_loaded": (3, None, self.b_top),
                "add_node_with_replicas": (4, "add", self.b_add_replicas),
                "get_replica_count": (2, None, self.b_node),
                "set_capacity": (4, None, self.b_set_capacity),
                "get_capacity": (2, None, self.b_node),
                "get_used": (3, None, self.b_node),
                "evict_lru": (3, None, self.b_node),
                "batch_operations": (5, None, self.b_batch_operations),
                "sync_replicas": (2, None, self.b_sync_replicas),
            },
            "chatrouter": {
                "add_server": (5, "add", self.b_add_node),
                "remove_server": (4, "remove", self.b_remove_node),
                "route_request": (6, None, self.b_key),
                "get_server_count": (1, None, self.b_none),
                "assign_request": (22, None, self.b_assign_request),
                "list_servers": (1, None, self.b_none),
                "get_server_load": (3, None, self.b_node),
                "top_servers": (3, None, self.b_top),
                "add_server_with_replicas": (4, "add", self.b_add_replicas),
                "get_replica_count": (2, None, self.b_node),
                "set_memory_limit": (4, None, self.b_set_memory_limit),
                "get_memory_limit": (2, None, self.b_node),
                "get_memory_used": (3, None, self.b_node),
                "evict_oldest_session": (3, None, self.b_node),
                "batch_requests": (5, None, self.b_batch_requests),
                "replicate_sessions": (2, None, self.b_replicate_sessions),
            },
        }
        if lifecycle:
            self.table["hashring"].update({
                "store_key_ttl": (12, None, self.b_key_ttl),
                "backup": (2, None, self.b_none),
                "restore": (2, None, self.b_restore),
                "merge_nodes": (2, "remove", self.b_merge),
                "get_merged_into": (2, None, self.b_pool_node),
            })
            self.table["chatrouter"].update({
                "assign_request_ttl": (12, None, self.b_assign_ttl),
                "backup": (2, None, self.b_none),
                "restore": (2, None, self.b_restore),
                "merge_servers": (2, "remove", self.b_merge),
                "get_merged_into": (2, None, self.b_pool_node),
            })

    # ---- per-call context ----
    def next_call(self) -> dict:
        rng = self.rng
        svc = rng.choice(SERVICES)
        ring = self.last_ring[svc] if rng.random() < 0.7 else rng.choice(NAMESPACES)
        self.last_ring[svc] = ring
        key = (svc, ring)
        ts = self._timestamp(key)

        self.svc, self.ring = svc, ring
        self.members = self.peek("list_nodes" if svc == "hashring" else "list_servers")
        phase = self.phase.get(key, "grow")
        r = rng.random()
        if r < 0.015:
            phase = rng.choices(("grow", "steady", "drain"), (1, 2, 1))[0]
        elif phase == "drain" and not self.members and r < 0.1:
            phase = "grow"             # sat empty for a while: refill
        elif phase == "grow" and len(self.members) >= len(NODE_POOL) and r < 0.06:
            phase = "steady"
        self.phase[key] = self.cur_phase = phase
        hot = self.hot.get(key)
        if hot is None or rng.random() < 0.01:
            hot = self.hot[key] = rng.sample(KEY_POOL, 6)
        self.cur_hot = hot
        add_mul, remove_mul = PHASES[phase]
        methods, weights = [], []
        for name, (w, kind, _) in self.table[svc].items():
            methods.append(name)
            weights.append(w * (add_mul if kind == "add" else remove_mul if kind == "remove" else 1))
        method = rng.choices(methods, weights)[0]
        args = self.table[svc][method][2]()
        return {"svc": svc, "ring": ring, "method": method, "ts": ts, "args": args}

    def _timestamp(self, key) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.7:
            pass                       # repeat: LRU ties
        elif r < 0.95:
            self.clock += 1
        else:
            self.clock += rng.choice((2, 3, 7))
        recent = self.recent_ts.setdefault(key, collections.deque(maxlen=12))
        ts = self.clock
        if rng.random() < 0.10:        # an earlier timestamp: any, or one this ring saw
            ts = rng.choice(recent) if recent and rng.random() < 0.5 else rng.randint(0, self.clock)
        recent.append(ts)
        return ts

    def peek(self, method, *args):
        return self.oracle.peek(self.svc, self.ring, method, *args)

    # ---- choosers ----
    def any_node(self) -> str:
        return GHOST if self.rng.random() < 0.06 else self.rng.choice(NODE_POOL)

    def target_node(self, p_member=0.75) -> str:
        if self.members and self.rng.random() < p_member:
            return self.rng.choice(self.members)
        return self.any_node()

    def new_node(self) -> str:
        outside = [n for n in NODE_POOL if n not in self.members]
        if outside and self.rng.random() < 0.8:
            return self.rng.choice(outside)
        return self.any_node()

    def any_key(self) -> str:
        r = self.rng.random()
        if r < 0.01 and self.empty_ids:
            return EMPTY_KEY
        if r < 0.5:
            return self.rng.choice(self.cur_hot)
        return self.rng.choice(KEY_POOL)

    def _near(self, value: int) -> int:
        """value, or one off it, never below -1 (-1 = the 'unlimited' sentinel)."""
        return max(-1, value + self.rng.choice((0, 0, 0, 1, -1)))

    # ---- builders (return the positional args after the timestamp) ----
    def b_none(self):
        return []

    def b_key(self):
        return [self.any_key()]

    def b_node(self):
        return [self.target_node()]

    def b_top(self):
        return [self.rng.choice(TOP_N)]

    def b_add_node(self):
        return [self.new_node()]

    def b_remove_node(self):
        return [self.target_node(0.85 if self.cur_phase == "drain" else 0.6)]

    def b_add_replicas(self):
        return [self.new_node(), self.rng.choice(REPLICAS)]

    def b_set_capacity(self):
        node = self.target_node()
        if self.rng.random() < 0.25:
            return [node, self._near(self.peek("get_used", node))]   # at the boundary
        return [node, self.rng.choice(CAPACITIES)]

    def b_set_memory_limit(self):
        server = self.target_node()
        if self.rng.random() < 0.25:
            return [server, self._near(self.peek("get_memory_used", server))]
        return [server, self.rng.choice(LIMITS)]

    def b_assign_request(self):
        rid = self.any_key()
        size = self.rng.choice(SIZES)
        if self.rng.random() < 0.2:
            server = self.peek("route_request", rid)
            if server is not None:
                limit = self.peek("get_memory_limit", server)
                if limit != -1:   # exactly fill the limit (strict '>' boundary), or one off
                    used = self.peek("get_memory_used", server)
                    size = max(0, limit - used + self.rng.choice((0, 0, 1, -1)))
        return [rid, size]

    def b_pool_node(self):
        return [self.rng.choice(NODE_POOL)]

    def b_key_ttl(self):
        return [self.any_key(), self.rng.choice(TTLS)]

    def b_assign_ttl(self):
        return self.b_assign_request() + [self.rng.choice(TTLS)]

    def b_restore(self):
        recent = self.recent_ts.get((self.svc, self.ring))
        if recent and self.rng.random() < 0.7:
            return [self.rng.choice(recent) + self.rng.choice((0, 0, 1, -1))]
        return [self.rng.randint(-1, self.clock + 1)]

    def b_merge(self):
        src = self.target_node(0.85)
        dst = src if self.rng.random() < 0.05 else self.target_node(0.85)
        return [src, dst]

    def _batch_keys(self):
        """A small per-batch alphabet so keys repeat inside one batch."""
        return self.rng.sample(KEY_POOL, 3)

    def b_batch_operations(self):
        rng, few = self.rng, self._batch_keys()
        ops = []
        for _ in range(rng.choice(BATCH_LEN)):
            key = rng.choice(few) if rng.random() < 0.6 else self.any_key()
            t = rng.choices(("store", "route", "remove_key", None), (45, 20, 25, 10))[0]
            if t is None:
                t = rng.choice(HR_UNKNOWN_OPS)
            ops.append({"type": t, "key": key})
        return [ops]

    def b_batch_requests(self):
        rng, few = self.rng, self._batch_keys()
        ops = []
        for _ in range(rng.choice(BATCH_LEN)):
            rid = rng.choice(few) if rng.random() < 0.6 else self.any_key()
            t = rng.choices(("assign", "route", "remove", None), (45, 20, 25, 10))[0]
            if t is None:
                t = rng.choice(CR_UNKNOWN_OPS)
            op = {"type": t, "request_id": rid}
            if t == "assign" or rng.random() < 0.4:
                op["size_mb"] = rng.choice(SIZES)
            ops.append(op)
        return [ops]

    def _pair(self):
        src = self.target_node(0.7)
        dst = src if self.rng.random() < 0.1 else self.target_node(0.7)
        return src, dst

    def b_sync_replicas(self):
        reqs = []
        for _ in range(self.rng.choice(SYNC_LEN)):
            src, dst = self._pair()
            reqs.append({"source_node": src, "dest_node": dst})
        return [reqs, self.rng.randint(1, 3)]

    def b_replicate_sessions(self):
        transfers = []
        for _ in range(self.rng.choice(SYNC_LEN)):
            src, dst = self._pair()
            if self.rng.random() < 0.3:
                bw = max(0, self.peek("get_memory_used", src) + self.rng.choice((0, 0, 1, -1)))
            else:
                bw = self.rng.choice(BANDWIDTHS)
            transfers.append({"source": src, "destination": dst, "bandwidth_mb": bw})
        return [transfers, self.rng.randint(1, 3)]


# ---------------------------------------------------------------------------
# Comparison and reporting
# ---------------------------------------------------------------------------

def same(a, b) -> bool:
    """JSON-value equality that is strict about types (true != 1, 1 != 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def jdump(v) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def show_call(req: dict) -> str:
    args = ", ".join(jdump(a) for a in req["args"])
    return f"{req['svc']}[{req['ring']}].{req['method']}(ts={req['ts']}" + \
        (f", {args})" if args else ")")


def result_kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[]" if not v else "list"
    return type(v).__name__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ring_diff.py",
        description="Differential test of HashRing/ChatRouter against shared/reference/"
                    "ring_reference.py (see the module docstring).")
    p.add_argument("--seed", type=int, default=None, help="trace seed (default: random, printed)")
    p.add_argument("--calls", type=int, default=20000, help="number of calls (default 20000)")
    p.add_argument("--position-space", choices=("drill", "u64"), default=None,
                   help="drill (md5 %% 100, default) or u64 (first 8 md5 bytes, big-endian)")
    p.add_argument("--history", type=int, default=15,
                   help="calls of the failing ring shown on a mismatch (default 15)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for one reply (default 10)")
    p.add_argument("--dump-trace", metavar="FILE", default=None,
                   help="write every request line (the impl's stdin) to FILE")
    p.add_argument("--stats", action="store_true", help="print per-method coverage at the end")
    p.add_argument("--lifecycle", action="store_true",
                   help="also TTLs, backups, restores and merges, against the model of "
                        "tests/conformance/ring_model.py (drill reference + clockwise's "
                        "documented additions)")
    p.add_argument("--no-empty-ids", action="store_true",
                   help="never generate the empty key / request id (the gRPC API refuses it "
                        "with INVALID_ARGUMENT, as the design requires)")
    p.add_argument("--self-check", action="store_true",
                   help="implementation = a second in-process oracle instance")
    p.add_argument("--impl", nargs=argparse.REMAINDER, default=None, metavar="CMD",
                   help="implementation command line (must be last: the rest of the "
                        "command line belongs to it)")
    return p


def impl_position_space(cmd: list[str]):
    for i, tok in enumerate(cmd):
        if tok == "--position-space" and i + 1 < len(cmd):
            return cmd[i + 1]
        if tok.startswith("--position-space="):
            return tok.split("=", 1)[1]
    return None


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    impl_cmd = args.impl
    if impl_cmd is not None and len(impl_cmd) == 1 and any(c.isspace() for c in impl_cmd[0]):
        impl_cmd = shlex.split(impl_cmd[0])
    if args.self_check == bool(impl_cmd):
        parser.error("give exactly one of --self-check or --impl CMD...")
    if args.calls < 0 or args.history < 0:
        parser.error("--calls and --history must be >= 0")

    space = args.position_space
    if impl_cmd:
        implied = impl_position_space(impl_cmd)
        if implied is not None:
            if implied not in ("drill", "u64"):
                parser.error(f"the implementation command asks for position space {implied!r}")
            if space is not None and space != implied:
                parser.error(f"--position-space {space} but the implementation command says "
                             f"--position-space {implied}")
            space = implied
    space = space or "drill"

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)

    try:
        oracle = ReferenceEngine(load_reference(space, "oracle"), lifecycle=args.lifecycle)
        if args.self_check:
            impl: Executor = InProcessExecutor(
                ReferenceEngine(load_reference(space, "second"), lifecycle=args.lifecycle))
        else:
            env = dict(os.environ, CLOCKWISE_POSITION_SPACE=space)
            impl = SubprocessExecutor(impl_cmd, env, args.timeout)
    except SetupError as e:
        print(f"ring_diff: {e}", file=sys.stderr)
        return 2

    gen = TraceGenerator(random.Random(seed), oracle, empty_ids=not args.no_empty_ids,
                         lifecycle=args.lifecycle)
    for svc in SERVICES:  # every public method of the oracle must be generated
        missing = oracle.public_methods(svc) - set(gen.table[svc])
        if missing:
            print(f"ring_diff: WARNING: oracle {svc} methods never generated: {sorted(missing)}",
                  file=sys.stderr)

    print(f"ring_diff: seed {seed}, position space {space}, {args.calls} calls, "
          f"impl: {impl.description}", flush=True)
    space_note = None
    if impl_cmd and space != "drill" and impl_position_space(impl_cmd) is None:
        space_note = (f"note: the implementation command does not say --position-space {space}; "
                      f"it only has CLOCKWISE_POSITION_SPACE={space} in its environment")
        print(f"ring_diff: {space_note}", file=sys.stderr, flush=True)

    dump = open(args.dump_trace, "w", encoding="utf-8") if args.dump_trace else None
    history: dict[tuple[str, str], collections.deque] = {}
    ring_calls: collections.Counter = collections.Counter()
    stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    passed = failed = 0
    t0 = time.perf_counter()
    try:
        for index in range(args.calls):
            req = gen.next_call()
            if dump:
                dump.write(encode_request(req) + "\n")
            expected = json.loads(jdump(oracle.call(req["svc"], req["ring"], req["method"],
                                                     req["ts"], req["args"])))
            key = (req["svc"], req["ring"])
            hist = history.setdefault(key, collections.deque(maxlen=args.history))
            problem = None
            actual = None
            try:
                reply = impl.roundtrip(req)
                actual = reply
                if "error" in reply:
                    problem = "the implementation refused the call"
                elif not same(expected, reply["result"]):
                    problem = "results differ"
            except ImplFailure as e:
                problem = f"implementation failure: {e}"
            if problem is None:
                passed += 1
                if args.stats:
                    stats[f"{req['svc']}.{req['method']}"][result_kind(expected)] += 1
                hist.append((index, req, expected))
                ring_calls[key] += 1
                continue

            failed += 1
            earlier = ring_calls[key] - len(hist)
            out = [
                f"ring_diff: MISMATCH at call #{index} ({problem})",
                f"  seed {seed}, position space {space}",
                f"  call:     {show_call(req)}",
                f"  request:  {encode_request(req)}",
                f"  expected: {jdump(expected)}   (python reference)",
                f"  actual:   {jdump(actual) if actual is not None else '(no reply)'}",
                f"  last {len(hist)} calls on {req['svc']}[{req['ring']}] before it "
                f"(reference results; {earlier} earlier calls on this ring not shown, "
                f"see --history / --dump-trace):",
            ]
            for i, r, res in hist:
                out.append(f"    #{i:<6} {show_call(r)} -> {jdump(res)}")
            out.append("  reference state of this ring AFTER the call (oracle attributes):")
            out.extend("    " + line for line in oracle.describe(*key))
            rerun = [sys.argv[0], "--seed", str(seed), "--position-space", space,
                     "--calls", str(index + 1)]
            rerun += ["--self-check"] if args.self_check else ["--impl", *impl_cmd]
            out.append(f"  reproduce: python3 {shlex.join(rerun)}")
            if space_note:
                out.append(f"  {space_note}")
            diag = impl.diagnostics()
            if diag:
                out.append(diag)
            print("\n".join(out), flush=True)
            break
    finally:
        if dump:
            dump.close()
        impl.close()
        oracle.close()

    elapsed = time.perf_counter() - t0
    if args.stats:
        for name in sorted(stats):
            kinds = ", ".join(f"{k}={v}" for k, v in sorted(stats[name].items()))
            print(f"  {name:<40} {sum(stats[name].values()):>6}  {kinds}")
    print(f"ring_diff: {passed + failed} calls in {elapsed:.2f} s")
    print(f"ring_diff: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
