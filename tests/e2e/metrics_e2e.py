#!/usr/bin/env python3
"""metrics_e2e -- /metrics of a real 3-node cluster, parsed by a real Prometheus parser.

What it proves
--------------
A 3-node cluster (tokens on) is started with ``--metrics-listen`` on each node. Once
every ``/readyz`` answers 200, a ring is written with the admin token, then node 1 gets
hostile calls with no token: paths with ``"`` and ``\\``, and 500 distinct made-up paths
(raw HTTP/2 through the ``h2`` package, so no client library refuses to send them).
Then, on every node:

1. ``/metrics`` parses with ``prometheus_client``'s ``text_string_to_metric_families``;
2. the series count did not grow per path (a few series at most after 502 calls);
3. the families of issue 16 are there (``clockwise_raft_*``, ``clockwise_ring_*``) and
   raft-engine's own (``raft_engine_*``);
4. the made-up paths are counted under ``method="unknown"``.

And the alert rules in docs/operations.md parse as YAML (PyYAML) with five rules.

Running
-------
    cargo build -p clockwise-node --bin clockwise
    .venv/bin/pip install prometheus_client h2 PyYAML
    .venv/bin/python tests/e2e/metrics_e2e.py [--clockwise PATH]

The last line is ``metrics_e2e: N passed, M failed``; the exit status is 1 if any
check failed.
"""

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import h2.config
import h2.connection
import h2.events
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN = "admin-token-0123456789abcdef0123456789"
PEER = "peer-token-0123456789abcdef0123456789ab"
WAIT = 60
FAMILIES = [
    "clockwise_raft_is_leader",
    "clockwise_raft_term",
    "clockwise_raft_leader_changes_total",
    "clockwise_raft_commit_index",
    "clockwise_raft_applied_index",
    "clockwise_raft_proposals_total",
    "clockwise_raft_proposals_pending",
    "clockwise_raft_read_index_seconds",
    "clockwise_raft_apply_seconds",
    "clockwise_raft_snapshot_seconds",
    "clockwise_raft_peer_send_failures_total",
    "clockwise_raft_peer_messages_received_total",
    "clockwise_ring_nodes",
    "clockwise_ring_keys",
    "clockwise_ring_evictions_total",
    "clockwise_ring_expirations_total",
    "clockwise_rpc_requests_total",
    "clockwise_rpc_duration_seconds",
    "clockwise_auth_unauthenticated_total",
    "clockwise_rate_limited_total",
    "clockwise_bulkhead_in_use",
    "clockwise_connections_open",
]

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {what}")
    else:
        failed += 1
        print(f"FAIL  {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, binary, i, peers, tokens, scratch):
        self.dir = os.path.join(scratch, f"node-{i}")
        self.log = open(os.path.join(scratch, f"node-{i}.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "node", "--id", str(i), "--peers", peers, "--initial-cluster-state", "new",
             "--listen", f"127.0.0.1:{peers_port(peers, i, 0)}",
             "--peer-listen", f"127.0.0.1:{peers_port(peers, i, 1)}",
             "--metrics-listen", "127.0.0.1:0", "--data-dir", self.dir,
             "--auth-token-file", tokens, "--raft-tick-ms", "20"],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, bufsize=0)
        lines = [self._line() for _ in range(3)]
        self.addr = re.fullmatch(r"listening on (\S+)", lines[0]).group(1)
        self.metrics = re.fullmatch(r"metrics on (http://\S+)/metrics", lines[2]).group(1)

    def _line(self):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=20):
            raise RuntimeError("a node printed nothing for 20 s")
        return self.proc.stdout.readline().decode().strip()

    def get(self, path):
        """(status, body) of GET path on the HTTP port."""
        try:
            with urllib.request.urlopen(self.metrics + path, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def peers_port(peers, i, which):
    entry = dict(p.split("=", 1) for p in peers.split(","))[str(i)]
    return entry.split("/")[which].rsplit(":", 1)[1]


def grpc_calls(addr, calls):
    """Unary gRPC calls over one raw HTTP/2 connection: (path, message bytes, token)
    each; answers their grpc-status values."""
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    statuses = {}
    for path, message, token in calls:
        stream = conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", addr),
                   (":path", path), ("content-type", "application/grpc"), ("te", "trailers")]
        if token:
            headers.append(("authorization", f"Bearer {token}"))
        conn.send_headers(stream, headers)
        conn.send_data(stream, b"\0" + len(message).to_bytes(4, "big") + message, end_stream=True)
        sock.sendall(conn.data_to_send())
        while stream not in statuses:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the node closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    for name, value in event.headers:
                        if name == b"grpc-status":
                            statuses[event.stream_id] = int(value)
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    statuses[event.stream_id] = -1
            sock.sendall(conn.data_to_send())
    sock.close()
    return [statuses[i] for i in sorted(statuses)]


def field(number, text):
    """A protobuf string field."""
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def scrape(node):
    status, text = node.get("/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    families = list(text_string_to_metric_families(text))
    samples = [s for f in families for s in f.samples]
    return families, samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clockwise", default=os.path.join(ROOT, "target", "debug", "clockwise"))
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="clockwise-metrics-e2e-")
    tokens = os.path.join(scratch, "tokens")
    with open(tokens, "w") as f:
        f.write(f"{ADMIN} admin\n{PEER} peer\n")
    os.chmod(tokens, 0o600)
    ports = [free_port() for _ in range(6)]
    peers = ",".join(f"{i}=127.0.0.1:{ports[i - 1]}/127.0.0.1:{ports[i + 2]}" for i in (1, 2, 3))
    nodes = []
    try:
        nodes = [Node(args.clockwise, i, peers, tokens, scratch) for i in (1, 2, 3)]
        deadline = time.time() + WAIT
        while not all(n.get("/readyz")[0] == 200 for n in nodes):
            if time.time() > deadline:
                raise RuntimeError(f"not every node ready within {WAIT} s: "
                                   + "; ".join(n.get("/readyz")[1].strip() for n in nodes))
            time.sleep(0.1)
        check(all(n.get("/healthz") == (200, "ok\n") for n in nodes), "/healthz 200 on every node")
        check(True, "/readyz 200 on every node")

        ring = field(1, "metrics-e2e")
        written = grpc_calls(nodes[0].addr, [
            ("/clockwise.hashring.v1.HashRing/AddNode", ring + field(3, "n1"), ADMIN),
            *[("/clockwise.hashring.v1.HashRing/StoreKey", ring + field(3, f"k{i}"), ADMIN)
              for i in range(10)],
        ])
        check(written == [0] * 11, f"a ring written with the admin token ({written})")
        # The rpc families appear with a node's first finished call. Raft traffic no longer
        # makes one soon: it runs on long-lived streams, counted when they end (a minute).
        asked = [grpc_calls(n.addr, [("/clockwise.cluster.v1.Cluster/Status", b"", ADMIN)])
                 for n in nodes]
        check(asked == [[0]] * 3, f"Cluster.Status answered by every node ({asked})")

        before = {n.addr: len(scrape(n)[1]) for n in nodes}
        hostile = [('/a"b/c', b"", None), ("/a\\b/c", b"", None)]
        hostile += [(f'/made.up{i}/x"{i}\\', b"", None) for i in range(500)]
        refused = grpc_calls(nodes[0].addr, hostile)
        check(all(code == 16 for code in refused),
              f"502 made-up paths without a token refused UNAUTHENTICATED ({set(refused)})")

        for i, node in enumerate(nodes, start=1):
            try:
                families, samples = scrape(node)
            except Exception as e:  # the parser's own error is the finding
                check(False, f"node {i}: /metrics parses ({e})")
                continue
            check(True, f"node {i}: /metrics parses with prometheus_client ({len(samples)} samples)")
            grown = len(samples) - before[node.addr]
            check(grown < 50, f"node {i}: series grew by {grown} after 502 made-up paths (not per path)")
            names = {s.name for s in samples}
            missing = [f for f in FAMILIES if not any(n == f or n.startswith(f + "_") for n in names)]
            check(not missing, f"node {i}: issue 16's families present (missing: {missing})")
            check(any(n.startswith("raft_engine_") for n in names), f"node {i}: raft_engine_* present")
            received = {s.labels.get("type"): s.value for s in samples
                        if s.name == "clockwise_raft_peer_messages_received_total"}
            check(received.get("heartbeat", 0) + received.get("heartbeat_response", 0) > 0,
                  f"node {i}: raft heartbeats counted as received ({received})")
            deadline = time.time() + 10
            while True:
                keys = [s.value for s in scrape(node)[1] if s.name == "clockwise_ring_keys"
                        and s.labels.get("ring") == "metrics-e2e"]
                if keys == [10] or time.time() > deadline:
                    break
                time.sleep(0.1)
            check(keys == [10], f"node {i}: clockwise_ring_keys of the ring is 10 once applied ({keys})")
            if i == 1:
                unknown = [s for s in samples if s.name == "clockwise_rpc_requests_total"
                           and s.labels.get("method") == "unknown"]
                check(sum(s.value for s in unknown) == 502,
                      f"node 1: the made-up paths counted under method=\"unknown\" ({unknown})")

        with open(os.path.join(ROOT, "docs", "operations.md")) as f:
            blocks = re.findall(r"```yaml\n(.*?)```", f.read(), re.S)
        try:
            rules = yaml.safe_load(blocks[0])["groups"][0]["rules"]
            check(len(rules) == 5 and all("alert" in r and "expr" in r for r in rules),
                  f"docs/operations.md: five alert rules parse as YAML ({[r['alert'] for r in rules]})")
        except Exception as e:
            check(False, f"docs/operations.md: the alert rules parse as YAML ({e})")
    except Exception as e:
        check(False, f"setup: {e}")
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"metrics_e2e: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
