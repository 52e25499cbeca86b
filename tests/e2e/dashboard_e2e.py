#!/usr/bin/env python3
"""dashboard_e2e -- the ring dashboard rendered by headless Chromium, as a person sees it.

What it proves
--------------
A 3-node ``clockwise cluster up`` (which gives every node an HTTP port and prints its
dashboard URL) is filled through ``clockwise ctl``: a HashRing ring ``web`` (u64
positions; nodes with 40, 25 and 10 virtual nodes; a capacity; 300 keys), a ChatRouter
ring ``chat`` (servers with 16 and 8 virtual nodes, a memory limit, sessions) and a
HashRing ring ``big`` of 10,000 virtual nodes. Then, on every node's dashboard (the
leader's and the followers' replicas alike), Chromium loads ``/?ring=...&kind=...``,
runs its scripts and dumps the DOM, which must:

1. draw one ``g.node-marks`` group per node of the ring, naming it (``data-node``), with
   exactly one ``line.mark`` per virtual node and a ``data-marks`` count equal to it;
2. list every node in the load table, and say it shows "this node's replica, applied
   index N";
3. for ``big``, hold all 10,000 marks;
4. on ``/`` (no ring), link every ring.
Screenshots go to ``<screenshot-dir>/dashboard.png`` (the ``web`` ring),
``dashboard-chatrouter.png`` and ``dashboard-10k.png``; each must be a PNG.

Running
-------
    cargo build -p clockwise-node --bin clockwise
    python3 tests/e2e/dashboard_e2e.py [--clockwise PATH] [--chromium PATH] [--screenshot-dir DIR]

The last line is always ``dashboard_e2e: N passed, M failed``; the exit status is 1 if
any check failed (a setup error counts as one failed check).
"""

import argparse
import html.parser
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UP_TIMEOUT = 90
REPLICA_TIMEOUT = 30
CHROMIUM_TIMEOUT = 120
WEB = {"a": 40, "b": 25, "c": 10}
CHAT = {"s1": 16, "s2": 8}
BIG = {f"n{i}": 2500 for i in range(1, 5)}


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {detail}" if detail else ""))
        return ok


class DashboardDom(html.parser.HTMLParser):
    """The marks per node group, the load table's nodes, and the page's text."""

    def __init__(self):
        super().__init__()
        self.groups = {}  # node -> [data-marks, lines counted]
        self.table_nodes = []
        self.links = []
        self.text = []
        self._group = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "g" and "node-marks" in classes:
            self._group = attrs.get("data-node")
            self.groups[self._group] = [attrs.get("data-marks"), 0]
        elif tag == "line" and "mark" in classes and self._group is not None:
            self.groups[self._group][1] += 1
        elif tag == "tr" and "data-node" in attrs:
            self.table_nodes.append(attrs["data-node"])
        elif tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "g":
            self._group = None

    def handle_data(self, data):
        self.text.append(data)


def free_base_port():
    """A base port with its client, peer (+100) and HTTP (+200) ports free, below the
    kernel's ephemeral range."""
    for _ in range(1000):
        base = random.randrange(20000, 32000)
        ports = [base + d for d in (0, 1, 2, 100, 101, 102, 200, 201, 202)]
        held = []
        try:
            for port in ports:
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no nine free ports for a local cluster")


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def ctl(clockwise, endpoints, *args):
    subprocess.run(
        [clockwise, "ctl", "--endpoints", endpoints, *args],
        check=True, stdout=subprocess.DEVNULL, timeout=60,
    )


def fill(clockwise, endpoints):
    hr = ["hashring", "--ring"]
    ctl(clockwise, endpoints, *hr, "web", "configure-ring", "u64")
    for node, replicas in WEB.items():
        ctl(clockwise, endpoints, *hr, "web", "add-node-with-replicas", node, str(replicas))
    ctl(clockwise, endpoints, *hr, "web", "set-capacity", "a", "20")
    ctl(clockwise, endpoints, *hr, "web", "batch-operations", *[f"store:key{i}" for i in range(300)])
    cr = ["chatrouter", "--ring", "chat"]
    for server, replicas in CHAT.items():
        ctl(clockwise, endpoints, *cr, "add-server-with-replicas", server, str(replicas))
    ctl(clockwise, endpoints, *cr, "set-memory-limit", "s1", "30")
    ctl(clockwise, endpoints, *cr, "batch-requests", *[f"assign:req{i}:4" for i in range(40)])
    ctl(clockwise, endpoints, *hr, "big", "configure-ring", "u64")
    for node, replicas in BIG.items():
        ctl(clockwise, endpoints, *hr, "big", "add-node-with-replicas", node, str(replicas))


def wait_replicas(dashboards, expected_applied):
    """Polls (bounded) until every node's replica has applied the writes made so far."""
    deadline = time.monotonic() + REPLICA_TIMEOUT
    for url in dashboards:
        while True:
            applied = get_json(url + "api/cluster")["applied_index"]
            if applied >= expected_applied:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: applied {applied} < {expected_applied}")
            time.sleep(0.05)


def chromium(browser, *args):
    command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
               "--virtual-time-budget=5000", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def check_ring(checks, browser, url, kind, ring, nodes, screenshot=None):
    page = f"{url}?ring={ring}&kind={kind}"
    dom = DashboardDom()
    dom.feed(chromium(browser, "--dump-dom", page))
    text = " ".join(dom.text)
    drawn = {node: counted for node, (_, counted) in dom.groups.items()}
    checks.check(drawn == nodes, f"{page}: one mark per virtual node of every node",
                 f"drawn {drawn}, expected {nodes}")
    filled = {node: marks for node, (marks, _) in dom.groups.items()}
    checks.check(filled == {n: str(c) for n, c in nodes.items()},
                 f"{page}: data-marks counts what was drawn", str(filled))
    checks.check(sorted(dom.table_nodes) == sorted(nodes),
                 f"{page}: the load table names every node", str(dom.table_nodes))
    checks.check("this node's replica, applied index" in text,
                 f"{page}: says it shows this node's replica", text[:300])
    if screenshot:
        if os.path.exists(screenshot):
            os.remove(screenshot)
        chromium(browser, f"--screenshot={screenshot}", "--window-size=1200,900", page)
        with open(screenshot, "rb") as f:
            magic = f.read(8)
        checks.check(magic == b"\x89PNG\r\n\x1a\n" and os.path.getsize(screenshot) > 10_000,
                     f"{page}: screenshot {screenshot}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clockwise", default=os.path.join(ROOT, "target", "debug", "clockwise"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--screenshot-dir", default=os.path.join(ROOT, "target"))
    args = parser.parse_args()
    checks = Checks()
    scratch = tempfile.mkdtemp(prefix="dashboard-e2e-")
    up = None
    try:
        if not args.chromium:
            raise RuntimeError("no chromium (install Debian's chromium, or pass --chromium)")
        os.makedirs(args.screenshot_dir, exist_ok=True)
        base = free_base_port()
        out_path = os.path.join(scratch, "up.out")
        with open(out_path, "w") as out, open(os.path.join(scratch, "up.err"), "w") as err:
            up = subprocess.Popen(
                [args.clockwise, "cluster", "up", "--nodes", "3", "--base-port", str(base),
                 "--data-dir", os.path.join(scratch, "data")],
                stdout=out, stderr=err, start_new_session=True,
            )
        deadline = time.monotonic() + UP_TIMEOUT
        while "is up" not in open(out_path).read():
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("cluster up did not come up: " + open(out_path).read())
            time.sleep(0.1)
        # `cluster up` prints each node's dashboard URL.
        dashboards = [line.split("dashboard: ")[1].split()[0]
                      for line in open(out_path).read().splitlines() if "dashboard: " in line]
        checks.check(len(dashboards) == 3, "cluster up prints three dashboard URLs", str(dashboards))
        endpoints = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        fill(args.clockwise, endpoints)
        # The leader's commit index covers every acknowledged write.
        committed = max(get_json(url + "api/cluster")["commit_index"] for url in dashboards)
        wait_replicas(dashboards, committed)

        shots = iter(["dashboard.png", "dashboard-node2.png", "dashboard-node3.png"])
        for url in dashboards:
            check_ring(checks, args.chromium, url, "hashring", "web", WEB,
                       os.path.join(args.screenshot_dir, next(shots)))
        check_ring(checks, args.chromium, dashboards[1], "chatrouter", "chat", CHAT,
                   os.path.join(args.screenshot_dir, "dashboard-chatrouter.png"))
        check_ring(checks, args.chromium, dashboards[2], "hashring", "big", BIG,
                   os.path.join(args.screenshot_dir, "dashboard-10k.png"))

        dom = DashboardDom()
        dom.feed(chromium(args.chromium, "--dump-dom", dashboards[0]))
        for kind, ring in [("hashring", "web"), ("chatrouter", "chat"), ("hashring", "big")]:
            link = f"/?ring={ring}&kind={kind}"
            checks.check(link in dom.links, f"the ring list links {link}", str(dom.links))
    except Exception as e:  # a setup error is one failed check
        checks.check(False, "setup", repr(e))
    finally:
        if up is not None and up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"dashboard_e2e: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
