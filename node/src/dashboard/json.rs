//! The dashboard's JSON documents, built from this replica's engine and raft status.
//! Each builder is pure (no lock, no clock), so tests check it against the engine.
//!
//! Costs, under the engine read lock the caller holds: the ring list O(listed rings),
//! a ring O(its virtual nodes + nodes), never O(keys).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use clockwise_cluster::driver::{RaftStatus, Role};
use clockwise_cluster::MemberAddress;
use clockwise_engine::{ChatRouter, Engine, HashRing, PositionSpace, UNLIMITED};
use serde_json::{json, Value};

/// Most rings the list shows (HashRing and ChatRouter together); the rest are counted.
pub const MAX_LISTED_RINGS: usize = 1_000;

/// Most virtual nodes of one ring the page is sent to draw; a larger ring shows its
/// nodes and loads without the circle (its positions would be megabytes per change).
pub const MAX_DRAWN_VIRTUAL_NODES: usize = 100_000;

/// Which drill a ring belongs to: HashRing and ChatRouter namespaces are separate even
/// when they share a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    HashRing,
    ChatRouter,
}

impl Kind {
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "hashring" => Some(Kind::HashRing),
            "chatrouter" => Some(Kind::ChatRouter),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::HashRing => "hashring",
            Kind::ChatRouter => "chatrouter",
        }
    }
}

/// Every ring by kind then name, at most [`MAX_LISTED_RINGS`], with how many were left
/// out.
pub fn ring_list(engine: &Engine) -> Value {
    let hash_rings = engine.hash_rings().map(|(name, ring)| {
        (
            Kind::HashRing,
            name,
            ring.get_node_count(),
            ring.key_count(),
        )
    });
    let chat_routers = engine.chat_routers().map(|(name, router)| {
        (
            Kind::ChatRouter,
            name,
            router.get_server_count(),
            router.request_count(),
        )
    });
    let rings: Vec<Value> = hash_rings
        .chain(chat_routers)
        .take(MAX_LISTED_RINGS)
        .map(|(kind, name, nodes, keys)| {
            json!({ "kind": kind.name(), "ring": name, "nodes": nodes, "keys": keys })
        })
        .collect();
    let total = engine.ring_count();
    json!({ "rings": rings, "total": total, "omitted": total - rings.len() })
}

/// One ring's picture. Positions are sent only when the topology differs from the
/// version the page already has (`have`): the page polls every second and redraws the
/// circle only when it changed. Positions are decimal strings (a `u64` does not fit a
/// JavaScript number exactly).
pub fn ring_view(engine: &Engine, kind: Kind, name: &str, have: Option<&str>) -> Value {
    match kind {
        Kind::HashRing => match engine.hash_ring(name) {
            Some(ring) => view(kind, name, &HashRingSide(ring), have),
            None => missing(kind, name),
        },
        Kind::ChatRouter => match engine.chat_router(name) {
            Some(router) => view(kind, name, &ChatRouterSide(router), have),
            None => missing(kind, name),
        },
    }
}

/// What a ring view needs of either drill.
trait RingSide {
    fn space(&self) -> PositionSpace;
    fn nodes(&self) -> Vec<String>;
    fn virtual_nodes(&self) -> Box<dyn Iterator<Item = (u64, &str)> + '_>;
    fn virtual_node_count(&self) -> usize;
    /// Keys (HashRing) or MB (ChatRouter) on `node`, and its capacity / limit.
    fn load(&self, node: &str) -> (i64, i64);
    fn replicas(&self, node: &str) -> i64;
    fn items(&self) -> usize;
    fn evictions(&self) -> u64;
    fn unit(&self) -> &'static str;
}

struct HashRingSide<'a>(&'a HashRing);
struct ChatRouterSide<'a>(&'a ChatRouter);

impl RingSide for HashRingSide<'_> {
    fn space(&self) -> PositionSpace {
        self.0.position_space()
    }
    fn nodes(&self) -> Vec<String> {
        self.0.list_nodes()
    }
    fn virtual_nodes(&self) -> Box<dyn Iterator<Item = (u64, &str)> + '_> {
        Box::new(self.0.virtual_nodes())
    }
    fn virtual_node_count(&self) -> usize {
        self.0.virtual_node_count()
    }
    fn load(&self, node: &str) -> (i64, i64) {
        (self.0.get_used(node), self.0.get_capacity(node))
    }
    fn replicas(&self, node: &str) -> i64 {
        self.0.get_replica_count(node)
    }
    fn items(&self) -> usize {
        self.0.key_count()
    }
    fn evictions(&self) -> u64 {
        self.0.evictions()
    }
    fn unit(&self) -> &'static str {
        "keys"
    }
}

impl RingSide for ChatRouterSide<'_> {
    fn space(&self) -> PositionSpace {
        self.0.position_space()
    }
    fn nodes(&self) -> Vec<String> {
        self.0.list_servers()
    }
    fn virtual_nodes(&self) -> Box<dyn Iterator<Item = (u64, &str)> + '_> {
        Box::new(self.0.virtual_nodes())
    }
    fn virtual_node_count(&self) -> usize {
        self.0.virtual_node_count()
    }
    fn load(&self, node: &str) -> (i64, i64) {
        (self.0.get_memory_used(node), self.0.get_memory_limit(node))
    }
    fn replicas(&self, node: &str) -> i64 {
        self.0.get_replica_count(node)
    }
    fn items(&self) -> usize {
        self.0.request_count()
    }
    fn evictions(&self) -> u64 {
        self.0.evictions()
    }
    fn unit(&self) -> &'static str {
        "MB"
    }
}

fn missing(kind: Kind, name: &str) -> Value {
    json!({ "kind": kind.name(), "ring": name, "exists": false })
}

fn space_json(space: PositionSpace) -> (&'static str, &'static str) {
    match space {
        PositionSpace::Drill => ("drill", "100"),
        PositionSpace::U64 => ("u64", "18446744073709551616"),
    }
}

fn view(kind: Kind, name: &str, ring: &dyn RingSide, have: Option<&str>) -> Value {
    let (space, space_size) = space_json(ring.space());
    let vnode_count = ring.virtual_node_count();
    let drawable = vnode_count <= MAX_DRAWN_VIRTUAL_NODES;
    let mut positions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut version = String::from("undrawn");
    if drawable {
        let mut hasher = DefaultHasher::new();
        space.hash(&mut hasher);
        let vnodes: Vec<(u64, &str)> = ring.virtual_nodes().collect();
        vnodes.hash(&mut hasher);
        version = format!("{:016x}", hasher.finish());
        if have != Some(version.as_str()) {
            for (position, node) in vnodes {
                positions
                    .entry(node)
                    .or_default()
                    .push(position.to_string());
            }
        }
    }
    let send_positions = drawable && have != Some(version.as_str());
    let nodes: Vec<Value> = ring
        .nodes()
        .iter()
        .map(|node| {
            let (load, limit) = ring.load(node);
            let mut entry = json!({
                "name": node,
                "replicas": ring.replicas(node),
                "load": load,
                "limit": if limit == UNLIMITED { Value::Null } else { json!(limit) },
            });
            if send_positions {
                entry["positions"] = json!(positions.remove(node.as_str()).unwrap_or_default());
            }
            entry
        })
        .collect();
    json!({
        "kind": kind.name(),
        "ring": name,
        "exists": true,
        "space": space,
        "space_size": space_size,
        "unit": ring.unit(),
        "items": ring.items(),
        "evictions": ring.evictions(),
        "virtual_nodes": vnode_count,
        "drawable": drawable,
        "version": version,
        "positions_included": send_positions,
        "nodes": nodes,
    })
}

/// This node's view of the raft group (what `Cluster.Status` answers), and the digest
/// of its replica's state.
/// `own` is this node's address as bound (its own entry in `status` may be empty).
pub fn cluster(status: &RaftStatus, own: &MemberAddress, digest: &str, cluster_id: &str) -> Value {
    let role = |id: u64| -> &'static str {
        if status.learners.contains(&id) {
            "learner"
        } else if id == status.leader_id {
            "leader"
        } else if id == status.id {
            match status.role {
                Role::Leader => "leader",
                Role::Candidate => "candidate",
                Role::Follower => "follower",
            }
        } else {
            "follower"
        }
    };
    let members: Vec<Value> = status
        .voters
        .iter()
        .chain(&status.learners)
        .map(|&id| {
            let address = if id == status.id {
                Some(own)
            } else {
                status.members.get(&id)
            };
            json!({
                "id": id,
                "role": role(id),
                "address": address.map_or("", |a| a.client.as_str()),
                "peer_address": address.map_or("", |a| a.peer.as_str()),
                "this_node": id == status.id,
            })
        })
        .collect();
    json!({
        "id": status.id,
        "role": role(status.id),
        "leader_id": status.leader_id,
        "term": status.term,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "snapshot_index": status.snapshot_index,
        "state_digest": digest,
        "cluster_id": cluster_id,
        "members": members,
    })
}
