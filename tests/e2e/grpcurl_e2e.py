#!/usr/bin/env python3
"""grpcurl_e2e -- end-to-end test of a real `clockwise node` process through grpcurl.

What it proves
--------------
Only public surfaces are used: the node's stdout lines, grpcurl (server reflection, no
proto files at hand) and the plain-HTTP ``/metrics`` page. One node is started per group:

1. reflection: ``list`` shows exactly the four services (HashRing, ChatRouter, Cluster, Health); ``describe`` shows every RPC of
   HashRing and ChatRouter and the fields of a request message of each;
   ``grpc.health.v1.Health/Check`` turns SERVING once the node has a leader.
2. golden traces (shared/spec/ring-drills.md section 8), call by call through grpcurl,
   each trace in its own ring namespace. No expected value is written down here: every
   call is also run on the Python drill oracle (shared/reference/ring_reference.py, imported
   as is) and grpcurl's protojson answer, mapped back to the drill value, must equal the
   oracle's, type-strictly (``True`` is not ``1``, ``None`` is not ``[]``). After each
   trace, LocateKey / LocateRequest must agree with the oracle's final state (owner, last
   access, size) for every key the trace touched.
   Timestamps: 0 asks the server to stamp its own clock, so every timestamp of a trace is
   shifted by +1, for the oracle and the server alike (order-preserving).
3. L6 by counters, not wall time: ``clockwise_sync_calls_started_total`` rises by exactly
   the number of valid entries in FAIL_FAST (the default) and by every entry in ALL_SLEEP;
   ``clockwise_sync_calls_in_flight_max`` never exceeds ``max_concurrent`` (2, then on a
   fresh node 3) and ``clockwise_sync_calls_in_flight`` is back to 0 after each call.
   Both SyncReplicas and ReplicateSessions (with its bandwidth gate).
4. bad input: an empty node id / server name is INVALID_ARGUMENT naming the field.
5. TLS: a node with ``--cert``/``--key``/``--trusted-ca`` (throwaway certificates from the
   tests' ``mint-certs``) answers grpcurl's ``-cacert -cert -key`` calls and refuses plain
   text and TLS without a client certificate.
6. Watch: ``describe`` shows ``HashRing.Watch`` and ``ChatRouter.Watch`` as server streams; a
   grpcurl watcher sees the whole (empty) topology, then three changes made through grpcurl,
   each at the revision its write's reply named (``x-clockwise-revision``), strictly
   increasing.
Each node must also stop cleanly (exit status 0) on SIGTERM (the golden group's on SIGINT).

Running
-------
    cargo build -p clockwise-node --bin clockwise
    python3 tests/e2e/grpcurl_e2e.py [--grpcurl PATH] [--clockwise PATH] [-v]

Defaults: ``<repo>/.venv/bin/grpcurl`` and ``<repo>/target/debug/clockwise``. The oracle is
``$CLOCKWISE_SHARED/reference/ring_reference.py`` (default ``<repo>/../shared``).
One line is printed per check, the last line is always
``grpcurl_e2e: N passed, M failed``; the exit status is 1 if any check failed (a setup
error such as a missing binary counts as one failed check).
"""

import argparse
import asyncio
import atexit
import importlib.util
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HR = "clockwise.hashring.v1.HashRing"
CR = "clockwise.chatrouter.v1.ChatRouter"
HEALTH = "grpc.health.v1.Health"
CLUSTER = "clockwise.cluster.v1.Cluster"
GRPCURL_TIMEOUT_S = 10  # grpcurl's own -max-time; the subprocess gets a little more
PID = os.getpid()

# The public RPC names (design.md "API"; LocateKey/LocateRequest and ConfigureRing go
# beyond the drill tables).
HASHRING_RPCS = {
    "AddNode", "RemoveNode", "RouteKey", "GetNodeCount", "StoreKey", "ListNodes", "GetLoad",
    "TopLoaded", "AddNodeWithReplicas", "GetReplicaCount", "SetCapacity", "GetCapacity",
    "GetUsed", "EvictLru", "BatchOperations", "SyncReplicas", "LocateKey", "ConfigureRing",
    "Backup", "Restore", "MergeNodes", "GetMergedInto",
}
CHATROUTER_RPCS = {
    "AddServer", "RemoveServer", "RouteRequest", "GetServerCount", "AssignRequest",
    "ListServers", "GetServerLoad", "TopServers", "AddServerWithReplicas", "GetReplicaCount",
    "SetMemoryLimit", "GetMemoryLimit", "GetMemoryUsed", "EvictOldestSession",
    "BatchRequests", "ReplicateSessions", "LocateRequest", "ConfigureRing",
    "Backup", "Restore", "MergeServers", "GetMergedInto",
}

# ---------------------------------------------------------------------------------------
# Drill method -> RPC mapping.
#   python method: (service, rpc, request field names of the positional args after the
#                   timestamp, response field (protojson name), response kind)
# Kinds: bool (absent = False), int (int64 as a JSON string, absent = 0), opt_str (absent =
# None), list (absent = []), bools (repeated bool, absent = []), batch (oneof results).
# List arguments (batch operations, sync entries) are dicts whose keys are already the
# proto field names, so they go into the request as they are.
# ---------------------------------------------------------------------------------------
METHODS = {
    # HashRing
    "add_node": (HR, "AddNode", ["node_id"], "ok", "bool"),
    "remove_node": (HR, "RemoveNode", ["node_id"], "ok", "bool"),
    "route_key": (HR, "RouteKey", ["key"], "nodeId", "opt_str"),
    "get_node_count": (HR, "GetNodeCount", [], "count", "int"),
    "store_key": (HR, "StoreKey", ["key"], "nodeId", "opt_str"),
    "list_nodes": (HR, "ListNodes", [], "nodes", "list"),
    "get_load": (HR, "GetLoad", ["node_id"], "load", "int"),
    "top_loaded": (HR, "TopLoaded", ["n"], "entries", "list"),
    "add_node_with_replicas": (HR, "AddNodeWithReplicas", ["node_id", "num_replicas"], "ok", "bool"),
    "get_replica_count": (HR, "GetReplicaCount", ["node_id"], "replicas", "int"),
    "set_capacity": (HR, "SetCapacity", ["node_id", "capacity"], "ok", "bool"),
    "get_capacity": (HR, "GetCapacity", ["node_id"], "capacity", "int"),
    "get_used": (HR, "GetUsed", ["node_id"], "used", "int"),
    "evict_lru": (HR, "EvictLru", ["node_id"], "key", "opt_str"),
    "batch_operations": (HR, "BatchOperations", ["operations"], "results", "batch"),
    "sync_replicas": (HR, "SyncReplicas", ["requests", "max_concurrent"], "results", "bools"),
    # ChatRouter
    "add_server": (CR, "AddServer", ["server_name"], "ok", "bool"),
    "remove_server": (CR, "RemoveServer", ["server_name"], "ok", "bool"),
    "route_request": (CR, "RouteRequest", ["request_id"], "serverName", "opt_str"),
    "get_server_count": (CR, "GetServerCount", [], "count", "int"),
    "assign_request": (CR, "AssignRequest", ["request_id", "size_mb"], "serverName", "opt_str"),
    "list_servers": (CR, "ListServers", [], "servers", "list"),
    "get_server_load": (CR, "GetServerLoad", ["server_name"], "load", "int"),
    "top_servers": (CR, "TopServers", ["n"], "entries", "list"),
    "add_server_with_replicas": (CR, "AddServerWithReplicas", ["server_name", "num_replicas"], "ok", "bool"),
    "get_replica_count@cr": (CR, "GetReplicaCount", ["server_name"], "replicas", "int"),
    "set_memory_limit": (CR, "SetMemoryLimit", ["server_name", "max_mb"], "ok", "bool"),
    "get_memory_limit": (CR, "GetMemoryLimit", ["server_name"], "limit", "int"),
    "get_memory_used": (CR, "GetMemoryUsed", ["server_name"], "used", "int"),
    "evict_oldest_session": (CR, "EvictOldestSession", ["server_name"], "requestId", "opt_str"),
    "batch_requests": (CR, "BatchRequests", ["operations"], "results", "batch"),
    "replicate_sessions": (CR, "ReplicateSessions", ["transfers", "max_concurrent"], "results", "bools"),
}
ASYNC_METHODS = {"batch_operations", "sync_replicas", "batch_requests", "replicate_sessions"}
BATCH_VALUE_FIELDS = {HR: "nodeId", CR: "serverName"}  # the oneof's string member


def method_spec(svc, method):
    if svc == CR and method == "get_replica_count":
        return METHODS["get_replica_count@cr"]
    spec = METHODS[method]
    assert spec[0] == svc, (svc, method)
    return spec


class MappingError(Exception):
    """grpcurl's answer does not have the shape the RPC's response kind allows."""


def to_drill_value(svc, field, kind, resp):
    """Maps grpcurl's protojson answer back to the drill's Python value."""
    extra = set(resp) - {field}
    if extra:
        raise MappingError(f"unexpected response fields {sorted(extra)} in {resp}")
    present = field in resp
    value = resp.get(field)
    if kind == "bool":
        if present and value is not True:
            raise MappingError(f"{field} should be true or absent, got {value!r}")
        return present
    if kind == "int":
        if not present:
            return 0
        if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]+", value):
            raise MappingError(f"int64 {field} should be a JSON string, got {value!r}")
        if value == "0":
            raise MappingError(f"default value 0 of {field} should be omitted")
        return int(value)
    if kind == "opt_str":
        if present and not isinstance(value, str):
            raise MappingError(f"{field} should be a string, got {value!r}")
        return value  # None when absent; "" would be a present empty string
    if kind == "list":
        if not present:
            return []
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise MappingError(f"{field} should be a non-empty list of strings, got {value!r}")
        return value
    if kind == "bools":
        if not present:
            return []
        if not isinstance(value, list) or not value or not all(isinstance(v, bool) for v in value):
            raise MappingError(f"{field} should be a non-empty list of booleans, got {value!r}")
        return value
    if kind == "batch":
        if not present:
            return []
        name_field = BATCH_VALUE_FIELDS[svc]
        out = []
        for item in value:
            if not isinstance(item, dict) or len(item) > 1:
                raise MappingError(f"batch result should set at most one oneof member: {item!r}")
            if name_field in item and isinstance(item[name_field], str):
                out.append(item[name_field])
            elif "ok" in item and isinstance(item["ok"], bool):
                out.append(item["ok"])  # a set oneof bool is printed even when false
            elif not item:
                out.append(None)
            else:
                raise MappingError(f"unexpected batch result {item!r}")
        return out
    raise AssertionError(kind)


def same(a, b):
    """Type-strict equality: True != 1, None != [], lists element by element."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def show_call(method, ts, args):
    return f"{method}({', '.join(repr(a) for a in (ts, *args))})"


# ---------------------------------------------------------------------------------------
# Golden traces (ring-drills.md section 8): (method, timestamp, *args) with the document's
# timestamps; shifted by +1 when run. Lines marked "setup" are the state the section
# describes in prose ("r1 size 30 lives on srv_b") or leaves implicit (a ring with node_a).
# ---------------------------------------------------------------------------------------
HR_TRACE = [
    ("route_key", 1, "key1"),
    ("add_node", 1, "node_a"),
    ("add_node", 2, "node_b"),
    ("add_node", 3, "node_a"),
    ("get_node_count", 4),
    ("route_key", 5, "key1"),
    ("route_key", 5, "k0"),
    ("store_key", 6, "key1"),
    ("store_key", 7, "key2"),
    ("store_key", 8, "key3"),
    ("store_key", 9, "k1"),
    ("get_load", 10, "node_a"),
    ("get_load", 10, "node_b"),
    ("get_load", 10, "ghost"),
    ("top_loaded", 11, 1),
    ("top_loaded", 11, 5),
    ("top_loaded", 11, 0),
    ("add_node_with_replicas", 12, "node_c", 3),
    ("add_node_with_replicas", 12, "node_c", 2),
    ("get_replica_count", 13, "node_c"),
    ("get_replica_count", 13, "node_a"),
    ("get_replica_count", 13, "ghost"),
    ("top_loaded", 14, 5),
    ("list_nodes", 14),
    ("set_capacity", 15, "ghost", 1),
    ("get_capacity", 15, "node_b"),
    ("set_capacity", 15, "node_b", 2),
    ("get_capacity", 15, "node_b"),
    ("get_capacity", 15, "ghost"),
    ("get_used", 16, "node_b"),
    ("store_key", 17, "key4"),
    ("route_key", 17, "key4"),
    ("evict_lru", 18, "ghost"),
    ("remove_node", 19, "node_b"),
    ("get_capacity", 19, "node_b"),
    ("top_loaded", 19, 5),
    ("batch_operations", 20, [{"type": "store", "key": "a"}, {"type": "route", "key": "b"},
                              {"type": "remove_key", "key": "a"}, {"type": "remove_key", "key": "a"},
                              {"type": "nope", "key": "c"}]),
    ("sync_replicas", 21, [{"source_node": "node_a", "dest_node": "node_c"},
                           {"source_node": "node_b", "dest_node": "node_c"},
                           {"source_node": "node_a", "dest_node": "node_a"}], 2),
]
HR_POSITION_TIE = [
    ("add_node", 1, "n12"),
    ("add_node", 2, "n0"),
    ("route_key", 3, "k14"),
    ("route_key", 3, "k0"),
]
HR_LRU_TIE = [
    ("add_node", 0, "node_a"),  # setup
    ("store_key", 7, "zz"),
    ("store_key", 7, "aa"),
    ("store_key", 7, "mm"),
    ("evict_lru", 8, "node_a"),
    ("store_key", 9, "aa"),
    ("evict_lru", 10, "node_a"),
]
HR_CAPACITY_EDGES = [
    ("add_node", 0, "node_a"),  # setup
    ("set_capacity", 0, "node_a", 0),
    ("store_key", 1, "x"),
    ("get_used", 1, "node_a"),
    ("store_key", 2, "y"),
    ("get_used", 2, "node_a"),
    ("store_key", 3, "y"),
    ("get_used", 3, "node_a"),
]
HR_CAPACITY_LOWERED = [
    ("add_node", 0, "node_a"),  # setup
    ("store_key", 1, "a"),
    ("store_key", 2, "b"),
    ("store_key", 3, "c"),
    ("set_capacity", 4, "node_a", 1),
    ("get_used", 4, "node_a"),
    ("store_key", 5, "a"),
    ("get_used", 5, "node_a"),
    ("store_key", 6, "d"),
    ("get_used", 6, "node_a"),
    ("top_loaded", 6, 3),
]
HR_RING_EMPTIED = [
    ("add_node", 0, "node_a"),  # setup
    ("store_key", 1, "a"),
    ("remove_node", 2, "node_a"),
    ("store_key", 3, "b"),
    ("add_node_with_replicas", 4, "z", 0),
    ("get_node_count", 4),
    ("route_key", 4, "a"),
    ("get_replica_count", 4, "z"),
]
CR_TRACE = [
    ("route_request", 1, "r1"),
    ("add_server", 1, "srv_a"),
    ("add_server", 2, "srv_b"),
    ("add_server", 2, "srv_a"),
    ("get_server_count", 3),
    ("assign_request", 4, "r1", 30),
    ("assign_request", 5, "r2", 50),
    ("assign_request", 6, "r3", 20),
    ("assign_request", 7, "r4", 40),
    ("get_server_load", 8, "srv_a"),
    ("get_server_load", 8, "srv_b"),
    ("get_server_load", 8, "ghost"),
    ("top_servers", 8, 5),
    ("list_servers", 8),
    ("assign_request", 9, "r1", 999),
    ("add_server_with_replicas", 10, "srv_c", 3),
    ("get_replica_count", 10, "srv_c"),
    ("top_servers", 10, 5),
    ("get_memory_limit", 11, "srv_b"),
    ("get_memory_limit", 11, "ghost"),
    ("set_memory_limit", 11, "ghost", 5),
    ("set_memory_limit", 11, "srv_b", 60),
    ("get_memory_used", 11, "srv_b"),
    ("evict_oldest_session", 12, "ghost"),
    ("remove_server", 13, "srv_b"),
    ("get_memory_limit", 13, "srv_b"),
    ("top_servers", 13, 5),
    ("batch_requests", 14, [{"type": "assign", "request_id": "x1", "size_mb": 5},
                            {"type": "route", "request_id": "x2"},
                            {"type": "remove", "request_id": "x1"},
                            {"type": "remove", "request_id": "x1"},
                            {"type": "nope", "request_id": "x3"}]),
]
CR_WHILE_LOOP = [
    ("add_server", 0, "srv_a"),  # setup
    ("assign_request", 1, "r1", 30),
    ("assign_request", 2, "r2", 50),
    ("set_memory_limit", 2, "srv_a", 120),
    ("get_memory_used", 2, "srv_a"),
    ("assign_request", 3, "r3", 100),
    ("get_memory_used", 3, "srv_a"),
]
CR_OVERSIZED_STALE = [
    ("add_server", 0, "srv_a"),  # setup
    ("assign_request", 1, "a", 10),
    ("set_memory_limit", 1, "srv_a", 50),
    ("assign_request", 2, "big", 100),
    ("get_memory_used", 2, "srv_a"),
    ("assign_request", 3, "big", 1),
    ("get_memory_used", 3, "srv_a"),
    ("assign_request", 4, "c", 1),
    ("get_memory_used", 4, "srv_a"),
    ("remove_server", 5, "srv_a"),
    ("add_server", 6, "srv_a"),
    ("get_memory_used", 6, "srv_a"),
    ("assign_request", 7, "c", 7),
    ("get_memory_used", 7, "srv_a"),
]
CR_L6 = [
    ("add_server", 0, "srv_a"),  # setup
    ("add_server", 0, "srv_b"),  # setup
    ("assign_request", 1, "r1", 30),  # setup: r1 (30 MB) lives on srv_b
    ("replicate_sessions", 2, [
        {"source": "srv_b", "destination": "srv_a", "bandwidth_mb": 30},
        {"source": "srv_b", "destination": "srv_a", "bandwidth_mb": 31},
        {"source": "srv_a", "destination": "srv_b", "bandwidth_mb": 0},
        {"source": "srv_a", "destination": "srv_b", "bandwidth_mb": 1},
        {"source": "ghost", "destination": "srv_b", "bandwidth_mb": 0},
        {"source": "srv_b", "destination": "srv_b", "bandwidth_mb": 0},
    ], 2),
]
GOLDEN = [
    ("hashring", HR, HR_TRACE),
    ("hashring-position-tie", HR, HR_POSITION_TIE),
    ("hashring-lru-tie", HR, HR_LRU_TIE),
    ("hashring-capacity-edges", HR, HR_CAPACITY_EDGES),
    ("hashring-capacity-lowered", HR, HR_CAPACITY_LOWERED),
    ("hashring-ring-emptied", HR, HR_RING_EMPTIED),
    ("chatrouter", CR, CR_TRACE),
    ("chatrouter-while-loop", CR, CR_WHILE_LOOP),
    ("chatrouter-oversized-stale", CR, CR_OVERSIZED_STALE),
    ("chatrouter-l6", CR, CR_L6),
]


# ---------------------------------------------------------------------------------------
# Checks and output
# ---------------------------------------------------------------------------------------
class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def record(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        line = f"{'ok  ' if ok else 'FAIL'} {name}"
        if detail and not ok:
            line += f" -- {detail}"
        print(line, flush=True)
        return ok


class SetupError(Exception):
    pass


# ---------------------------------------------------------------------------------------
# grpcurl
# ---------------------------------------------------------------------------------------
class GrpcError(Exception):
    def __init__(self, rc, text):
        super().__init__(f"grpcurl exit {rc}: {text.strip()}")
        self.rc = rc
        self.text = text


class Grpcurl:
    def __init__(self, path, addr, tls=None):
        self.path = path
        self.addr = addr
        # grpcurl's TLS flags (-cacert, -cert, -key), or None for plain text.
        self.tls = tls

    def run(self, *args, data=None):
        """Runs grpcurl; returns (exit status, stdout, stderr)."""
        transport = self.tls if self.tls is not None else ["-plaintext"]
        cmd = [self.path, *transport, "-max-time", str(GRPCURL_TIMEOUT_S)]
        if data is not None:
            cmd += ["-d", "@"]
        cmd += [self.addr, *args]
        try:
            p = subprocess.run(cmd, input=data, capture_output=True, text=True,
                               timeout=GRPCURL_TIMEOUT_S + 5)
        except subprocess.TimeoutExpired:
            return -1, "", f"grpcurl did not return within {GRPCURL_TIMEOUT_S + 5}s: {cmd}"
        return p.returncode, p.stdout, p.stderr

    def call(self, full_method, request):
        """Unary call with a JSON request on stdin; returns the parsed JSON answer."""
        rc, out, err = self.run(full_method, data=json.dumps(request))
        if rc != 0:
            raise GrpcError(rc, err + out)
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise GrpcError(rc, f"not JSON ({e}): {out!r}") from None


# ---------------------------------------------------------------------------------------
# A node process
# ---------------------------------------------------------------------------------------
LIVE_NODES = []


class Node:
    def __init__(self, binary, name, extra=()):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"clockwise-e2e-{name}-")
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "node", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.dir, "data"),
             "--metrics-listen", "127.0.0.1:0", "--sync-delay-ms", "10", *extra],
            stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL)
        LIVE_NODES.append(self)
        try:
            first = self._read_line(10)
            second = self._read_line(5)
            third = self._read_line(5)
        except SetupError:
            self.stop()
            raise
        m1 = re.fullmatch(r"listening on (\S+)", first)
        m2 = re.fullmatch(r"peers on (\S+)", second)
        m3 = re.fullmatch(r"metrics on (https?://\S+/metrics)", third)
        if not m1 or not m2 or not m3:
            self.stop()
            raise SetupError(f"node {name}: unexpected stdout lines {first!r}, {second!r}, {third!r}")
        self.addr = m1.group(1)
        self.peer_addr = m2.group(1)
        self.metrics_url = m3.group(1)

    def _read_line(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise SetupError(f"node {self.name}: no stdout line within {timeout}s; "
                                 f"stderr: {self.stderr_tail()}")
            chunk = os.read(fd, 1)  # byte by byte: never read past the line
            if not chunk:
                raise SetupError(f"node {self.name} exited ({self.proc.poll()}) before printing "
                                 f"its address; stderr: {self.stderr_tail()}")
            buf += chunk
        sel.close()
        return buf.decode().rstrip("\n")

    def stderr_tail(self, n=15):
        try:
            with open(os.path.join(self.dir, "stderr.log"), "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return " | ".join(lines[-n:])
        except OSError:
            return "?"

    def metrics(self):
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            body = r.read().decode()
        values = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def stop(self, sig=signal.SIGTERM):
        """`sig` (SIGTERM or SIGINT), wait up to 5 s, then SIGKILL. Returns the exit status
        (None if killed)."""
        if self in LIVE_NODES:
            LIVE_NODES.remove(self)
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                rc = None
        self.proc.stdout.close()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


def stop_all_nodes():
    for node in list(LIVE_NODES):
        try:
            node.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(stop_all_nodes)


def with_node(checks, binary, name, body, sig=signal.SIGTERM, extra=()):
    """Starts a node, runs body(node), stops it with `sig` and checks the clean exit."""
    node = Node(binary, name, extra)
    try:
        body(node)
    except Exception as e:  # noqa: BLE001 - a crash of a group is a failed check, not a stop
        checks.record(f"{name}: group ran to the end", False,
                      f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    finally:
        tail = node.stderr_tail()
        rc = node.stop(sig)
    checks.record(f"{name}: node exits 0 on {sig.name}", rc == 0,
                  "" if rc == 0 else f"exit status {rc}; stderr: {tail}")


# ---------------------------------------------------------------------------------------
# Drill calls on both sides
# ---------------------------------------------------------------------------------------
def oracle_call(obj, method, ts, args):
    fn = getattr(obj, method)
    if method in ASYNC_METHODS:
        return asyncio.run(fn(ts, *args))
    return fn(ts, *args)


def server_request(svc, method, ring, ts, args, extra=None):
    _, rpc, fields, _, _ = method_spec(svc, method)
    assert len(fields) == len(args), (method, args)
    req = {"ring": ring, "timestamp": ts}
    req.update(zip(fields, args))
    if extra:
        req.update(extra)
    return f"{svc}/{rpc}", req


def server_call(grpc, svc, method, ring, ts, args, extra=None):
    """Runs a drill call through grpcurl; returns the drill value (raises on error)."""
    full, req = server_request(svc, method, ring, ts, args, extra)
    _, _, _, field, kind = method_spec(svc, method)
    return to_drill_value(svc, field, kind, grpc.call(full, req))


def compare_call(grpc, oracle, svc, method, ring, ts, args, extra=None):
    """Both sides; returns (ok, expected, got-or-error-text)."""
    expected = oracle_call(oracle, method, ts, args)
    try:
        got = server_call(grpc, svc, method, ring, ts, args, extra)
    except (GrpcError, MappingError) as e:
        return False, expected, str(e)
    return same(expected, got), expected, got


# ---------------------------------------------------------------------------------------
# Group 1: reflection, health, bad input
# ---------------------------------------------------------------------------------------
def group_reflection(checks, grpcurl_path, node):
    g = Grpcurl(grpcurl_path, node.addr)

    rc, out, err = g.run("list")
    services = sorted(out.split())
    want = sorted([CR, HR, CLUSTER, HEALTH])
    checks.record("reflection: list shows exactly ChatRouter, HashRing, Cluster, Health",
                  rc == 0 and services == want, f"rc={rc} got {services} {err.strip()}")

    for svc, rpcs, msg, fields in [
        (HR, HASHRING_RPCS, "clockwise.hashring.v1.StoreKeyRequest",
         ["string ring = 1;", "int64 timestamp = 2;", "string key = 3;", "int64 ttl_ms = 4;"]),
        (CR, CHATROUTER_RPCS, "clockwise.chatrouter.v1.AssignRequestRequest",
         ["string ring = 1;", "int64 timestamp = 2;", "string request_id = 3;",
          "int64 size_mb = 4;", "int64 ttl_ms = 5;"]),
    ]:
        rc, out, err = g.run("describe", svc)
        pkg = svc.rsplit(".", 1)[0]
        found = {}
        for m in re.finditer(r"rpc (\w+) \( \.([\w.]+) \) returns \( \.([\w.]+) \);", out):
            found[m.group(1)] = (m.group(2), m.group(3))
        bad_names = {r: io for r, io in found.items()
                     if io != (f"{pkg}.{r}Request", f"{pkg}.{r}Response")}
        checks.record(f"reflection: describe {svc} lists every RPC ({len(rpcs)})",
                      rc == 0 and set(found) == rpcs and not bad_names,
                      f"rc={rc} missing={sorted(rpcs - set(found))} "
                      f"unexpected={sorted(set(found) - rpcs)} odd messages={bad_names} {err.strip()}")

        rc, out, err = g.run("describe", msg)
        lines = {line.strip() for line in out.splitlines()}
        missing = [f for f in fields if f not in lines]
        checks.record(f"reflection: describe {msg} shows its fields",
                      rc == 0 and f"message {msg.rsplit('.', 1)[1]} {{" in lines and not missing,
                      f"rc={rc} missing={missing} {err.strip()}")

    # Health is truthful: NOT_SERVING until this group of one has elected itself, then
    # SERVING. Wait (bounded) for it.
    deadline = time.monotonic() + 10
    while True:
        try:
            resp = g.call(f"{HEALTH}/Check", {})
            ok = resp == {"status": "SERVING"}
        except GrpcError as e:
            resp, ok = str(e), False
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    checks.record("health: grpc.health.v1.Health/Check turns SERVING once the node can serve",
                  ok, f"got {resp}")

    try:
        # A group of one elects itself right after start: wait (bounded) for it.
        deadline = time.monotonic() + 10
        status = g.call(f"{CLUSTER}/Status", {})
        while status.get("role") != "ROLE_LEADER" and time.monotonic() < deadline:
            time.sleep(0.05)
            status = g.call(f"{CLUSTER}/Status", {})
        members = status.get("members", [])
        ok = (status.get("role") == "ROLE_LEADER" and status.get("leaderId") == "1"
              and [m.get("id") for m in members] == ["1"]
              and [(m.get("address"), m.get("peerAddress")) for m in members]
              == [(node.addr, node.peer_addr)]
              and len(status.get("stateDigest", "")) == 64)
    except GrpcError as e:
        status, ok = str(e), False
    checks.record("cluster: Status of a group of one names itself leader and only member, "
                  "with its client and peer addresses", ok, f"got {status}")
    try:
        moved = g.call(f"{CLUSTER}/TransferLeader", {"target_id": 1})
        ok = moved == {"leaderId": "1"}
    except GrpcError as e:
        moved, ok = str(e), False
    checks.record("cluster: TransferLeader to the leader itself answers it", ok, f"got {moved}")

    for svc, rpc, field, req in [
        (HR, "AddNode", "node_id", {"ring": f"bad-input-{PID}", "timestamp": 1, "node_id": ""}),
        (CR, "AddServer", "server_name",
         {"ring": f"bad-input-{PID}", "timestamp": 1, "server_name": ""}),
        (CLUSTER, "AddMember", "address", {"id": 2, "address": "no-port"}),
        (CLUSTER, "AddMember", "peer_address",
         {"id": 2, "address": "127.0.0.1:1", "peer_address": "no-port"}),
        (CLUSTER, "RemoveMember", "id", {"id": 0}),
    ]:
        rc, out, err = g.run(f"{svc}/{rpc}", data=json.dumps(req))
        text = err + out
        msg = re.search(r"Message: (.*)", text)
        ok = (rc != 0 and "Code: InvalidArgument" in text and msg is not None
              and field in msg.group(1))
        checks.record(f"bad input: {rpc} with a bad {field} is InvalidArgument naming {field}",
                      ok, f"rc={rc} output: {text.strip()!r}")


# ---------------------------------------------------------------------------------------
# Group 2: golden traces
# ---------------------------------------------------------------------------------------
def locate_expectations(svc, oracle, names):
    """(name -> expected LocateKey/LocateRequest protojson answer) from the oracle's state."""
    out = {}
    for name in names:
        if svc == HR:
            if name in oracle.keys:
                out[name] = {"found": True, "nodeId": oracle.keys[name],
                             "lastAccess": str(oracle.key_access[name]), "size": "1"}
            else:
                out[name] = {}
        else:
            if name in oracle.requests:
                exp = {"found": True, "serverName": oracle.requests[name],
                       "lastAccess": str(oracle.request_access[name])}
                size = oracle.request_sizes[name]
                if size != 0:
                    exp["size"] = str(size)
                out[name] = exp
            else:
                out[name] = {}
    return out


def touched_keys(svc, trace):
    names = []
    key_methods = ({"route_key", "store_key"} if svc == HR else {"route_request", "assign_request"})
    for method, _ts, *args in trace:
        if method in key_methods:
            names.append(args[0])
        elif method in ("batch_operations", "batch_requests"):
            names += [op["key" if svc == HR else "request_id"] for op in args[0]]
    return list(dict.fromkeys(names))


def run_trace(grpcurl_path, addr, oracle_mod, name, svc, trace):
    """Runs one trace; returns [(ok, line, detail)] (printed later, in order)."""
    g = Grpcurl(grpcurl_path, addr)
    ring = f"golden-{name}-{PID}"
    oracle = oracle_mod.HashRing() if svc == HR else oracle_mod.ChatRouter()
    lines = []
    last_ts = 0
    for i, (method, doc_ts, *args) in enumerate(trace, 1):
        ts = doc_ts + 1
        last_ts = max(last_ts, ts)
        ok, expected, got = compare_call(g, oracle, svc, method, ring, ts, args)
        label = f"golden {name} #{i}: {show_call(method, ts, args)} -> {expected!r}"
        lines.append((ok, label, "" if ok else f"server gave {got!r}"))
    # Final state: every touched key where the oracle has it (owner, last access, size).
    ts = last_ts + 1
    locate_rpc = "LocateKey" if svc == HR else "LocateRequest"
    field = "key" if svc == HR else "request_id"
    bad = []
    for key, want in locate_expectations(svc, oracle, touched_keys(svc, trace)).items():
        try:
            got = g.call(f"{svc}/{locate_rpc}", {"ring": ring, "timestamp": ts, field: key})
        except GrpcError as e:
            got = str(e)
        if got != want:
            bad.append(f"{key}: want {want} got {got}")
    lines.append((not bad, f"golden {name}: final state ({locate_rpc} of every touched key "
                           f"agrees with the oracle)", "; ".join(bad)))
    return lines


def json_objects(text):
    """Every JSON object in grpcurl's output of a stream (pretty-printed, one after another)."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    text = text.strip()
    while at < len(text):
        obj, end = decoder.raw_decode(text, at)
        objects.append(obj)
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return objects


def group_watch(checks, grpcurl_path, node):
    """Watch through grpcurl: reflection shows the stream; a watcher sees the whole (empty)
    topology, then each change with the revision its write's reply named."""
    g = Grpcurl(grpcurl_path, node.addr)
    for svc in (HR, CR):
        pkg = svc.rsplit(".", 1)[0]
        rc, out, err = g.run("describe", f"{svc}.Watch")
        want = f"rpc Watch ( .{pkg}.WatchRequest ) returns ( stream .{pkg}.WatchResponse );"
        checks.record(f"reflection: describe {svc}.Watch shows the server stream",
                      rc == 0 and want in out, f"rc={rc} {out.strip()} {err.strip()}")
    watch_for_s = 6
    cmd = [grpcurl_path, "-plaintext", "-max-time", str(watch_for_s), "-d", '{"ring": "gw"}',
           node.addr, f"{HR}/Watch"]
    watcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The first message (the topology) is written as soon as the stream starts: wait for it
    # by reading it (to its closing brace), so the writes below come after the watch began.
    first = []
    while not first or first[-1] != "}\n":
        line = watcher.stdout.readline()
        if not line:
            break
        first.append(line)
    revisions = []
    for method, request in [
        ("AddNode", {"ring": "gw", "node_id": "a"}),
        ("AddNodeWithReplicas", {"ring": "gw", "node_id": "b", "num_replicas": 3}),
        ("RemoveNode", {"ring": "gw", "node_id": "a"}),
    ]:
        p = subprocess.run([grpcurl_path, "-plaintext", "-v", "-max-time", str(GRPCURL_TIMEOUT_S),
                            "-d", json.dumps(request), node.addr, f"{HR}/{method}"],
                           capture_output=True, text=True, timeout=GRPCURL_TIMEOUT_S + 5)
        rc, out, err = p.returncode, p.stdout, p.stderr
        m = re.search(r"x-clockwise-revision: (\d+)", out)
        checks.record(f"watch: {method}'s reply names its revision (x-clockwise-revision)",
                      rc == 0 and m is not None, f"rc={rc} {out.strip()} {err.strip()}")
        revisions.append(int(m.group(1)) if m else None)
    # grpcurl ends the stream at its -max-time; read the rest through the same buffered
    # file the first message came from.
    out = watcher.stdout.read()
    err = watcher.stderr.read()
    watcher.wait(timeout=10)
    try:
        messages = json_objects("".join(first) + out)
    except json.JSONDecodeError as e:
        checks.record("watch: grpcurl printed JSON messages", False, f"{e}: {out!r}")
        return
    checks.record("watch: the first message is the whole (empty) topology",
                  bool(messages) and "topology" in messages[0], f"{messages[:1]}")
    changes = [(int(m["revision"]), m["change"]) for m in messages if "change" in m]
    all_revisions = [int(m.get("revision", "0")) for m in messages]
    checks.record("watch: revisions strictly increase on the stream",
                  all(a < b for a, b in zip(all_revisions, all_revisions[1:])), f"{all_revisions}")
    checks.record("watch: three changes, each at its write's revision",
                  [r for r, _ in changes] == revisions, f"{changes} vs {revisions}")
    kinds = [(next(iter(c)), c[next(iter(c))]) for _, c in changes]
    checks.record("watch: node a added, node b added with 3 positions, node a removed",
                  len(kinds) == 3 and kinds[0][0] == "nodeAdded" and kinds[0][1]["id"] == "a"
                  and kinds[1][0] == "nodeAdded" and len(kinds[1][1]["positions"]) == 3
                  and kinds[2] == ("nodeRemoved", "a"), f"{kinds}")
    checks.record("watch: the stream ends at grpcurl's -max-time (DeadlineExceeded)",
                  watcher.returncode != 0 and "DeadlineExceeded" in err, err.strip())


def group_golden(checks, grpcurl_path, oracle_mod, node):
    with ThreadPoolExecutor(max_workers=len(GOLDEN)) as pool:
        futures = [pool.submit(run_trace, grpcurl_path, node.addr, oracle_mod, name, svc, trace)
                   for name, svc, trace in GOLDEN]
        for (name, _, _), fut in zip(GOLDEN, futures):
            try:
                for ok, label, detail in fut.result():
                    checks.record(label, ok, detail)
            except Exception as e:  # noqa: BLE001
                checks.record(f"golden {name}: trace ran to the end", False,
                              f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------------------------------
# Group 3: L6 counters
# ---------------------------------------------------------------------------------------
STARTED = "clockwise_sync_calls_started_total"
IN_FLIGHT = "clockwise_sync_calls_in_flight"
IN_FLIGHT_MAX = "clockwise_sync_calls_in_flight_max"


def setup_calls(checks, g, oracle, svc, ring, calls, label):
    """Setup calls must agree with the oracle too (else the counts below mean nothing)."""
    bad = []
    for method, ts, *args in calls:
        ok, expected, got = compare_call(g, oracle, svc, method, ring, ts, args)
        if not ok:
            bad.append(f"{show_call(method, ts, args)}: want {expected!r} got {got!r}")
    return checks.record(f"{label}: setup calls agree with the oracle", not bad, "; ".join(bad))


def counted_sync(checks, node, g, oracle, svc, method, ring, ts, entries, max_concurrent, mode,
                 want_started, label):
    """One sync call: results as the oracle's; started rises by want_started; in_flight 0."""
    before = node.metrics()
    extra = {} if mode is None else {"mode": mode}
    ok, expected, got = compare_call(g, oracle, svc, method, ring, ts, [entries, max_concurrent], extra)
    after = node.metrics()
    mode_name = mode or "default mode"
    checks.record(f"{label}: {mode_name} results agree with the oracle ({expected})", ok,
                  "" if ok else f"server gave {got!r}")
    started = after[STARTED] - before[STARTED]
    checks.record(f"{label}: {mode_name} starts exactly {want_started} simulated calls",
                  started == want_started, f"{STARTED} rose by {started:g}")
    checks.record(f"{label}: {mode_name} leaves {IN_FLIGHT} at 0", after[IN_FLIGHT] == 0,
                  f"{IN_FLIGHT} = {after[IN_FLIGHT]:g}")


def check_max(checks, node, limit, label):
    m = node.metrics()[IN_FLIGHT_MAX]
    checks.record(f"{label}: {IN_FLIGHT_MAX} is between 1 and {limit} (it is {m:g})",
                  1 <= m <= limit, f"{IN_FLIGHT_MAX} = {m:g}")


def group_l6_max2(checks, grpcurl_path, oracle_mod, node):
    g = Grpcurl(grpcurl_path, node.addr)

    # HashRing: 8 entries, 5 valid (both nodes exist), max_concurrent 2.
    ring = f"l6-hr-{PID}"
    hr = oracle_mod.HashRing()
    label = "L6 SyncReplicas (8 entries, 5 valid, max_concurrent 2)"
    setup_calls(checks, g, hr, HR, ring, [("add_node", 1, "n1"), ("add_node", 2, "n2"),
                                          ("add_node", 3, "n3")], label)
    requests = [
        {"source_node": "n1", "dest_node": "n2"},
        {"source_node": "ghost", "dest_node": "n1"},
        {"source_node": "n2", "dest_node": "n3"},
        {"source_node": "n1", "dest_node": "ghost"},
        {"source_node": "n3", "dest_node": "n1"},
        {"source_node": "n1", "dest_node": "n1"},
        {"source_node": "ghost", "dest_node": "phantom"},
        {"source_node": "n2", "dest_node": "n1"},
    ]
    valid = sum(asyncio.run(hr.sync_replicas(0, requests, 2)))
    assert valid == 5 and len(requests) == 8, valid
    counted_sync(checks, node, g, hr, HR, "sync_replicas", ring, 4, requests, 2, "FAIL_FAST", 5, label)
    counted_sync(checks, node, g, hr, HR, "sync_replicas", ring, 5, requests, 2, None, 5, label)
    counted_sync(checks, node, g, hr, HR, "sync_replicas", ring, 6, requests, 2, "ALL_SLEEP", 8, label)
    check_max(checks, node, 2, label)

    # ChatRouter: 8 transfers, 5 valid (both exist and source used MB >= bandwidth_mb).
    ring = f"l6-cr-{PID}"
    cr = oracle_mod.ChatRouter()
    label = "L6 ReplicateSessions (8 transfers, 5 valid, max_concurrent 2)"
    setup_calls(checks, g, cr, CR, ring, [("add_server", 1, "srv_a"), ("add_server", 2, "srv_b"),
                                          ("assign_request", 3, "r1", 30)], label)
    transfers = [
        {"source": "srv_b", "destination": "srv_a", "bandwidth_mb": 30},   # used == bandwidth
        {"source": "srv_b", "destination": "srv_a", "bandwidth_mb": 31},   # used < bandwidth
        {"source": "srv_a", "destination": "srv_b", "bandwidth_mb": 0},    # empty source, 0 MB
        {"source": "srv_a", "destination": "srv_b", "bandwidth_mb": 1},    # empty source, 1 MB
        {"source": "ghost", "destination": "srv_a", "bandwidth_mb": 0},    # no source
        {"source": "srv_b", "destination": "srv_b", "bandwidth_mb": 0},
        {"source": "srv_b", "destination": "srv_a", "bandwidth_mb": 29},
        {"source": "srv_a", "destination": "srv_a", "bandwidth_mb": 0},
    ]
    valid = sum(asyncio.run(cr.replicate_sessions(0, transfers, 2)))
    assert valid == 5 and len(transfers) == 8, valid
    counted_sync(checks, node, g, cr, CR, "replicate_sessions", ring, 4, transfers, 2, "FAIL_FAST", 5, label)
    counted_sync(checks, node, g, cr, CR, "replicate_sessions", ring, 5, transfers, 2, None, 5, label)
    counted_sync(checks, node, g, cr, CR, "replicate_sessions", ring, 6, transfers, 2, "ALL_SLEEP", 8, label)
    check_max(checks, node, 2, label)


def group_l6_max3(checks, grpcurl_path, oracle_mod, node):
    g = Grpcurl(grpcurl_path, node.addr)

    ring = f"l6-hr3-{PID}"
    hr = oracle_mod.HashRing()
    label = "L6 SyncReplicas (9 valid entries, max_concurrent 3)"
    setup_calls(checks, g, hr, HR, ring, [("add_node", 1, "n1"), ("add_node", 2, "n2"),
                                          ("add_node", 3, "n3")], label)
    requests = [{"source_node": s, "dest_node": d} for s in ("n1", "n2", "n3") for d in ("n1", "n2", "n3")]
    counted_sync(checks, node, g, hr, HR, "sync_replicas", ring, 4, requests, 3, "FAIL_FAST", 9, label)
    check_max(checks, node, 3, label)

    ring = f"l6-cr3-{PID}"
    cr = oracle_mod.ChatRouter()
    label = "L6 ReplicateSessions (9 valid transfers, max_concurrent 3)"
    setup_calls(checks, g, cr, CR, ring, [("add_server", 1, "srv_a"), ("add_server", 2, "srv_b"),
                                          ("add_server", 3, "srv_c"), ("assign_request", 4, "r1", 30)],
                label)
    transfers = [{"source": s, "destination": d, "bandwidth_mb": 0}
                 for s in ("srv_a", "srv_b", "srv_c") for d in ("srv_a", "srv_b", "srv_c")]
    counted_sync(checks, node, g, cr, CR, "replicate_sessions", ring, 5, transfers, 3, "FAIL_FAST", 9, label)
    check_max(checks, node, 3, label)


# ---------------------------------------------------------------------------------------
def load_oracle():
    shared = Path(os.environ.get("CLOCKWISE_SHARED", REPO.parent / "shared"))
    path = shared / "reference" / "ring_reference.py"
    if not path.is_file():
        raise SetupError(f"no drill oracle at {path} (set CLOCKWISE_SHARED to the shared folder)")
    spec = importlib.util.spec_from_file_location("ring_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------
# Group 4: grpcurl over TLS, with a client certificate
# ---------------------------------------------------------------------------------------
def mint_certs(mint_bin):
    """Throwaway certificates (tests' mint-certs): {name: path}."""
    out_dir = tempfile.mkdtemp(prefix="clockwise-e2e-certs-")
    p = subprocess.run([mint_bin, out_dir], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise SetupError(f"mint-certs failed: {p.stderr}")
    names = ["clients-ca", "node", "node-key", "client", "client-key"]
    return {n: os.path.join(out_dir, f"{n}.pem") for n in names}


def node_tls_flags(certs):
    return ["--cert", certs["node"], "--key", certs["node-key"], "--trusted-ca", certs["clients-ca"]]


def group_tls(checks, grpcurl_path, certs, node):
    ca = ["-cacert", certs["clients-ca"]]
    full = ca + ["-cert", certs["client"], "-key", certs["client-key"]]
    g = Grpcurl(grpcurl_path, node.addr, tls=full)
    rc, out, err = g.run("list")
    checks.record("tls: grpcurl -cacert -cert -key lists the services", rc == 0 and HR in out,
                  f"rc={rc} {err.strip()!r}")
    ring = f"tls-{PID}"
    try:
        g.call(f"{HR}/AddNode", {"ring": ring, "timestamp": 1, "node_id": "node_a"})
        stored = g.call(f"{HR}/StoreKey", {"ring": ring, "timestamp": 2, "key": "key1"})
        ok = stored.get("nodeId") == "node_a"
    except GrpcError as e:
        stored, ok = str(e), False
    checks.record("tls: calls over TLS are served", ok, f"got {stored}")
    for label, tls in [("plain text", None), ("TLS without a client certificate", ca)]:
        rc, out, err = Grpcurl(grpcurl_path, node.addr, tls=tls).run(f"{HR}/GetNodeCount",
                                                                    data=json.dumps({"ring": ring}))
        checks.record(f"tls: {label} is refused", rc != 0, f"rc={rc} out={out!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grpcurl", default=str(REPO / ".venv" / "bin" / "grpcurl"),
                    help="grpcurl executable (default: <repo>/.venv/bin/grpcurl)")
    ap.add_argument("--clockwise", default=str(REPO / "target" / "debug" / "clockwise"),
                    help="clockwise binary (default: <repo>/target/debug/clockwise)")
    ap.add_argument("--mint-certs", default=str(REPO / "target" / "debug" / "mint-certs"),
                    help="the tests' certificate minter (default: <repo>/target/debug/mint-certs)")
    args = ap.parse_args()

    checks = Checks()
    started = time.monotonic()
    try:
        for what, path in [("grpcurl", args.grpcurl), ("clockwise", args.clockwise),
                           ("mint-certs", args.mint_certs)]:
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise SetupError(f"--{what} {path} is not an executable file")
        oracle = load_oracle()
        with_node(checks, args.clockwise, "reflection",
                  lambda n: group_reflection(checks, args.grpcurl, n))
        with_node(checks, args.clockwise, "watch",
                  lambda n: group_watch(checks, args.grpcurl, n))
        with_node(checks, args.clockwise, "golden",
                  lambda n: group_golden(checks, args.grpcurl, oracle, n), sig=signal.SIGINT)
        with_node(checks, args.clockwise, "l6-max2",
                  lambda n: group_l6_max2(checks, args.grpcurl, oracle, n))
        with_node(checks, args.clockwise, "l6-max3",
                  lambda n: group_l6_max3(checks, args.grpcurl, oracle, n))
        certs = mint_certs(args.mint_certs)
        with_node(checks, args.clockwise, "tls",
                  lambda n: group_tls(checks, args.grpcurl, certs, n), extra=node_tls_flags(certs))
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        print(f"grpcurl_e2e: {checks.passed} passed, {checks.failed + 1} failed")
        return 1
    finally:
        stop_all_nodes()
    print(f"({time.monotonic() - started:.1f}s)")
    print(f"grpcurl_e2e: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
