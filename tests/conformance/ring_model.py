"""ring_model -- a Python model of what clockwise adds beyond the drill, built on the
drill reference (shared/reference/ring_reference.py), for the differential test.

``build(mod)`` takes a loaded reference module and returns ``(HashRingModel,
ChatRouterModel)``: subclasses that keep every drill method of the reference and add

* expiring keys / sessions: ``store_key_ttl(ts, key, ttl_ms)`` and
  ``assign_request_ttl(ts, request_id, size_mb, ttl_ms)``; a key is alive while
  ``timestamp < expiry``. Every mutating call first moves the ring's clock to
  ``max(latest, ts)`` and drops what is dead then, and drops what is dead after itself;
  reads at ``ts`` leave out what is dead at ``ts``. Storing again sets the expiry anew
  from that call (no TTL clears it); a store already dead by the ring's clock takes no
  room (evicts nothing) and removes the key if it was stored.
* ``backup(ts)`` -> live keys saved (with their remaining TTL ``expiry - max(ts, clock)``), at most 16
  kept (oldest saved dropped); ``restore(ts, backup_ts)`` -> keys restored, or ``None``
  when no backup is at or before ``backup_ts``; the latest wins, equal timestamps: the
  first saved; expiry becomes ``ts + remaining``; the whole ring state is replaced
  (backups stay).
* ``merge_nodes(ts, from, to)`` / ``merge_servers``: the target takes over the source's
  positions and replica count, the source and its limit go, keys re-route (no eviction);
  ``get_merged_into(ts, name)`` follows the chain; adding a name again clears its record.

It is written from clockwise's documented semantics (docs/api.md), not from its code.
"""

from __future__ import annotations

import copy

MAX_BACKUPS = 16


def build(mod):
    class _Lifecycle:
        """What both models share; `_items`, `_access`, `_nodes`, `_limits` name the
        reference's dicts for the service."""

        def _init_lifecycle(self):
            self.expiry = {}      # id -> expiry (absent: never)
            self.latest = 0
            self.merged = {}      # merged-away node -> target
            self.backups = []     # (ts, state) oldest first

        # --- the clock ---
        def _advance(self, ts):
            self.latest = max(self.latest, ts)
            self._purge()

        def _purge(self):
            for item in [i for i, e in self.expiry.items() if e <= self.latest]:
                del self.expiry[item]
                if item in self._items():
                    self._drop(item)

        def _alive(self, item, ts):
            e = self.expiry.get(item)
            return e is None or e > ts

        def _dead_on_arrival(self, ts, ttl):
            """A store whose TTL has run out by the ring's clock takes no room at all."""
            return ttl > 0 and ts + ttl <= self.latest

        def _set_expiry(self, item, ts, ttl):
            if ttl > 0:
                self.expiry[item] = ts + ttl
            else:
                self.expiry.pop(item, None)

        def _mutate(self, ts, fn):
            self._advance(ts)
            result = fn()
            self._purge()
            return result

        # --- merges ---
        def _merge(self, ts, src, dst):
            def run():
                nodes = self._nodes()
                if src == dst or src not in nodes or dst not in nodes:
                    return False
                nodes[dst]["replicas"] += nodes[src]["replicas"]
                nodes[dst]["positions"] = nodes[dst]["positions"] + nodes[src]["positions"]
                del nodes[src]
                self._limits().pop(src, None)
                self.merged[src] = dst
                self._reassign()
                return True
            return self._mutate(ts, run)

        def get_merged_into(self, ts, name):
            target = self.merged.get(name)
            if target is None:
                return None
            for _ in range(len(self.merged)):
                if target not in self.merged:
                    break
                target = self.merged[target]
            return target

        def _added(self, name, added):
            if added:
                self.merged.pop(name, None)
            return added

        # --- backups ---
        def backup(self, ts):
            def run():
                items = self._items()
                state = {
                    "nodes": copy.deepcopy(self._nodes()),
                    "limits": dict(self._limits()),
                    "items": list(items.items()),
                    "access": {i: self._access()[i] for i in items},
                    "sizes": self._sizes_of(items),
                    # as of the ring's clock: an older backup sees the ring as of it
                    "remaining": {i: e - max(ts, self.latest)
                                  for i, e in self.expiry.items() if i in items},
                    "merged": dict(self.merged),
                }
                self.backups.append((ts, state))
                del self.backups[:max(0, len(self.backups) - MAX_BACKUPS)]
                return len(items)
            return self._mutate(ts, run)

        def restore(self, ts, backup_timestamp):
            def run():
                best = None
                for saved, state in self.backups:
                    if saved <= backup_timestamp and (best is None or saved > best[0]):
                        best = (saved, state)
                if best is None:
                    return None
                state = best[1]
                self._replace(state)
                self.expiry = {i: ts + r for i, r in state["remaining"].items()}
                self.merged = dict(state["merged"])
                return len(state["items"])
            return self._mutate(ts, run)

    class HashRingModel(_Lifecycle, mod.HashRing):
        def __init__(self):
            mod.HashRing.__init__(self)
            self._init_lifecycle()

        def _items(self):
            return self.keys

        def _access(self):
            return self.key_access

        def _nodes(self):
            return self.nodes

        def _limits(self):
            return self.capacities

        def _drop(self, key):
            del self.keys[key]
            self.key_access.pop(key, None)

        def _sizes_of(self, items):
            return {}

        def _replace(self, state):
            self.nodes = copy.deepcopy(state["nodes"])
            self.capacities = dict(state["limits"])
            self.keys = dict(state["items"])
            self.key_access = dict(state["access"])

        def _live_counts(self, ts):
            counts = {}
            for key, node in self.keys.items():
                if self._alive(key, ts):
                    counts[node] = counts.get(node, 0) + 1
            return counts

        # mutations: the clock moves with every one
        def add_node(self, ts, node_id):
            return self._mutate(ts, lambda: self._added(
                node_id, mod.HashRing.add_node(self, ts, node_id)))

        def add_node_with_replicas(self, ts, node_id, num_replicas):
            return self._mutate(ts, lambda: self._added(
                node_id, mod.HashRing.add_node_with_replicas(self, ts, node_id, num_replicas)))

        def remove_node(self, ts, node_id):
            return self._mutate(ts, lambda: mod.HashRing.remove_node(self, ts, node_id))

        def set_capacity(self, ts, node_id, capacity):
            return self._mutate(ts, lambda: mod.HashRing.set_capacity(self, ts, node_id, capacity))

        def evict_lru(self, ts, node_id):
            return self._mutate(ts, lambda: mod.HashRing.evict_lru(self, ts, node_id))

        def store_key(self, ts, key):
            return self.store_key_ttl(ts, key, 0)

        def store_key_ttl(self, ts, key, ttl_ms):
            def run():
                if self._dead_on_arrival(ts, ttl_ms):
                    if key in self.keys:
                        self._drop(key)
                    return self._route(key)
                node = mod.HashRing.store_key(self, ts, key)
                if node is not None:
                    self._set_expiry(key, ts, ttl_ms)
                return node
            return self._mutate(ts, run)

        async def batch_operations(self, ts, operations):
            self._advance(ts)
            results = await mod.HashRing.batch_operations(self, ts, operations)
            self._purge()
            return results

        def merge_nodes(self, ts, from_node, to_node):
            return self._merge(ts, from_node, to_node)

        # reads at ts: what is dead then does not count
        def get_load(self, ts, node_id):
            return self._live_counts(ts).get(node_id, 0) if node_id in self.nodes else 0

        def get_used(self, ts, node_id):
            return self.get_load(ts, node_id)

        def top_loaded(self, ts, n):
            counts = self._live_counts(ts)
            loads = sorted(((nid, counts.get(nid, 0)) for nid in self.nodes),
                           key=lambda x: (-x[1], x[0]))
            return [f"{nid}({load})" for nid, load in loads[:n]]

    class ChatRouterModel(_Lifecycle, mod.ChatRouter):
        def __init__(self):
            mod.ChatRouter.__init__(self)
            self._init_lifecycle()

        def _items(self):
            return self.requests

        def _access(self):
            return self.request_access

        def _nodes(self):
            return self.servers

        def _limits(self):
            return self.memory_limits

        def _drop(self, rid):
            del self.requests[rid]
            self.request_access.pop(rid, None)
            self.request_sizes.pop(rid, None)

        def _sizes_of(self, items):
            return {rid: self.request_sizes[rid] for rid in items}

        def _replace(self, state):
            for rid in self.requests:          # placed sessions go with the old state
                self.request_sizes.pop(rid, None)
            self.servers = copy.deepcopy(state["nodes"])
            self.memory_limits = dict(state["limits"])
            self.requests = dict(state["items"])
            self.request_access = dict(state["access"])
            self.request_sizes.update(state["sizes"])

        def _live_sizes(self, ts):
            sizes = {}
            for rid, server in self.requests.items():
                if self._alive(rid, ts):
                    sizes[server] = sizes.get(server, 0) + self.request_sizes[rid]
            return sizes

        def add_server(self, ts, server_name):
            return self._mutate(ts, lambda: self._added(
                server_name, mod.ChatRouter.add_server(self, ts, server_name)))

        def add_server_with_replicas(self, ts, server_name, num_replicas):
            return self._mutate(ts, lambda: self._added(
                server_name,
                mod.ChatRouter.add_server_with_replicas(self, ts, server_name, num_replicas)))

        def remove_server(self, ts, server_name):
            return self._mutate(ts, lambda: mod.ChatRouter.remove_server(self, ts, server_name))

        def set_memory_limit(self, ts, server_name, max_mb):
            return self._mutate(
                ts, lambda: mod.ChatRouter.set_memory_limit(self, ts, server_name, max_mb))

        def evict_oldest_session(self, ts, server_name):
            return self._mutate(
                ts, lambda: mod.ChatRouter.evict_oldest_session(self, ts, server_name))

        def assign_request(self, ts, request_id, size_mb):
            return self.assign_request_ttl(ts, request_id, size_mb, 0)

        def assign_request_ttl(self, ts, request_id, size_mb, ttl_ms):
            def run():
                if self._dead_on_arrival(ts, ttl_ms):
                    if request_id in self.requests:
                        self._drop(request_id)
                    return self._route(request_id)
                server = mod.ChatRouter.assign_request(self, ts, request_id, size_mb)
                if server is not None:
                    self._set_expiry(request_id, ts, ttl_ms)
                return server
            return self._mutate(ts, run)

        async def batch_requests(self, ts, operations):
            self._advance(ts)
            results = await mod.ChatRouter.batch_requests(self, ts, operations)
            self._purge()
            return results

        def merge_servers(self, ts, from_server, to_server):
            return self._merge(ts, from_server, to_server)

        def get_server_load(self, ts, server_name):
            if server_name not in self.servers:
                return 0
            return self._live_sizes(ts).get(server_name, 0)

        def get_memory_used(self, ts, server_name):
            return self.get_server_load(ts, server_name)

        def top_servers(self, ts, n):
            sizes = self._live_sizes(ts)
            loads = sorted(((s, sizes.get(s, 0)) for s in self.servers),
                           key=lambda x: (-x[1], x[0]))
            return [f"{s}({load})" for s, load in loads[:n]]

        async def replicate_sessions(self, ts, transfers, max_concurrent):
            sizes = self._live_sizes(ts)
            return [t["source"] in self.servers and t["destination"] in self.servers
                    and sizes.get(t["source"], 0) >= t["bandwidth_mb"] for t in transfers]

    return HashRingModel, ChatRouterModel
