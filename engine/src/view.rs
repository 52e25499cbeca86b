//! Read-only views for observers (the node's dashboard): the namespaces by name, each
//! ring's virtual nodes in ring order, its key count and its LRU evictions. Nothing here
//! changes state; each call costs O(what it answers), never O(keys).

use super::ring::Ring;
use super::{ChatRouter, Engine, HashRing};

impl Engine {
    /// The HashRing namespaces, by name.
    pub fn hash_rings(&self) -> impl Iterator<Item = (&str, &HashRing)> + '_ {
        self.hash_rings
            .iter()
            .map(|(name, ring)| (name.as_str(), ring))
    }

    /// The ChatRouter namespaces, by name.
    pub fn chat_routers(&self) -> impl Iterator<Item = (&str, &ChatRouter)> + '_ {
        self.chat_routers
            .iter()
            .map(|(name, router)| (name.as_str(), router))
    }
}

/// Every virtual node as `(position, node name)`, in ring (routing) order.
fn virtual_nodes(ring: &Ring) -> impl Iterator<Item = (u64, &str)> + '_ {
    ring.virtual_nodes()
        .map(|(pos, node)| (pos, ring.name(node)))
}

impl HashRing {
    /// Every virtual node as `(position, node)`, in ring order. O(virtual nodes).
    pub fn virtual_nodes(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        virtual_nodes(&self.ns.ring)
    }

    pub fn virtual_node_count(&self) -> usize {
        self.ns.ring.vnode_count()
    }

    /// Keys stored, on every node. O(1).
    pub fn key_count(&self) -> usize {
        self.ns.placement.len()
    }

    /// Keys this replica evicted by LRU (for capacity, or by `evict_lru`): not part of
    /// the state (neither its digest nor a snapshot), so it counts from this replica's
    /// start or its last installed snapshot.
    pub fn evictions(&self) -> u64 {
        self.ns.churn.evictions
    }
}

impl ChatRouter {
    /// Every virtual node as `(position, server)`, in ring order. O(virtual nodes).
    pub fn virtual_nodes(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        virtual_nodes(&self.ns.ring)
    }

    pub fn virtual_node_count(&self) -> usize {
        self.ns.ring.vnode_count()
    }

    /// Requests stored, on every server. O(1).
    pub fn request_count(&self) -> usize {
        self.ns.placement.len()
    }

    /// Requests this replica evicted by LRU (see [`HashRing::evictions`]).
    pub fn evictions(&self) -> u64 {
        self.ns.churn.evictions
    }
}

#[cfg(test)]
mod tests {
    use crate::{ChatRouter, HashRing};

    #[test]
    fn virtual_nodes_are_in_routing_order_and_each_owns_its_position() {
        let mut ring = HashRing::default();
        ring.add_node_with_replicas("a", 30);
        ring.add_node_with_replicas("b", 20);
        let vnodes: Vec<(u64, String)> = ring
            .virtual_nodes()
            .map(|(pos, node)| (pos, node.to_owned()))
            .collect();
        assert_eq!(vnodes.len(), 50);
        assert_eq!(ring.virtual_node_count(), 50);
        assert!(vnodes
            .windows(2)
            .all(|w| (w[0].0, &w[0].1) <= (w[1].0, &w[1].1)));
        // A key at the first virtual node's position routes to the owner of the first
        // virtual node there (the drill's `(pos, name)` order).
        let position_of = |key: &str| ring.position_space().position(key);
        let key = (0..1000)
            .map(|i| format!("k{i}"))
            .find(|k| position_of(k) == vnodes[0].0)
            .expect("some key lands on the first position in 100 slots");
        assert_eq!(ring.route_key(&key), Some(vnodes[0].1.as_str()));
    }

    #[test]
    fn evictions_count_keys_evicted_for_capacity_and_on_request() {
        let mut ring = HashRing::default();
        ring.add_node("a");
        ring.set_capacity("a", 2);
        for key in ["k1", "k2", "k3", "k4"] {
            ring.store_key(1, key);
        }
        assert_eq!((ring.key_count(), ring.evictions()), (2, 2));
        ring.evict_lru("a");
        assert_eq!((ring.key_count(), ring.evictions()), (1, 3));

        let mut router = ChatRouter::default();
        router.add_server("s");
        router.set_memory_limit("s", 10);
        router.assign_request(1, "r1", 4);
        router.assign_request(1, "r2", 4);
        // 8 used + 9 incoming > 10: both leave.
        router.assign_request(1, "r3", 9);
        assert_eq!((router.request_count(), router.evictions()), (1, 2));
    }
}
