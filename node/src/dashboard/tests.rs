use std::collections::{BTreeMap, BTreeSet};

use clockwise_cluster::driver::{RaftStatus, Role};
use clockwise_cluster::MemberAddress;
use clockwise_engine::{Engine, PositionSpace};
use serde_json::Value;

use super::json::{self, Kind, MAX_LISTED_RINGS};
use super::{query_params, DASHBOARD_CSS, DASHBOARD_JS, INDEX_HTML};

/// `node → positions` as the view sent them.
fn sent_positions(view: &Value) -> BTreeMap<String, Vec<u64>> {
    view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| {
            let positions = node["positions"]
                .as_array()
                .expect("positions sent")
                .iter()
                .map(|p| p.as_str().expect("a decimal string").parse().expect("u64"))
                .collect();
            (node["name"].as_str().expect("name").to_owned(), positions)
        })
        .collect()
}

#[test]
fn a_hash_ring_view_sends_every_virtual_node_with_its_owner_and_each_nodes_load() {
    let mut engine = Engine::new();
    let ring = engine.hash_ring_mut("r");
    ring.configure(PositionSpace::U64);
    ring.add_node_with_replicas("a", 40);
    ring.add_node_with_replicas("b", 25);
    ring.add_node("c");
    ring.set_capacity("a", 3);
    for i in 0..200 {
        ring.store_key(1, &format!("key{i}"));
    }
    let ring = engine.hash_ring("r").expect("ring");
    let view = json::ring_view(&engine, Kind::HashRing, "r", None);

    // Every node's marks are exactly the positions its replicas hash to (the drill's
    // `f"{node}_{i}"`), and together they are the engine's virtual nodes.
    let sent = sent_positions(&view);
    let space = PositionSpace::U64;
    let expected = |node: &str, n: i64| -> Vec<u64> {
        let mut positions: Vec<u64> = (0..n).map(|i| space.replica_position(node, i)).collect();
        positions.sort_unstable();
        positions
    };
    assert_eq!(sent["a"], expected("a", 40));
    assert_eq!(sent["b"], expected("b", 25));
    let mut engine_owned: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (position, node) in ring.virtual_nodes() {
        engine_owned
            .entry(node.to_owned())
            .or_default()
            .push(position);
    }
    assert_eq!(sent, engine_owned);
    assert_eq!(view["virtual_nodes"], 40 + 25 + 1);

    for node in view["nodes"].as_array().expect("nodes") {
        let name = node["name"].as_str().expect("name");
        assert_eq!(node["load"], ring.get_used(name), "{name}");
        assert_eq!(node["replicas"], ring.get_replica_count(name), "{name}");
    }
    assert_eq!(view["nodes"][0]["limit"], 3);
    assert_eq!(
        view["nodes"][1]["limit"],
        Value::Null,
        "never set: unlimited"
    );
    assert_eq!(view["items"], ring.key_count());
    assert!(ring.evictions() > 0, "node a's capacity of 3 evicted");
    assert_eq!(view["evictions"], ring.evictions());
    assert_eq!(view["unit"], "keys");
}

#[test]
fn positions_are_sent_again_only_when_the_topology_changed() {
    let mut engine = Engine::new();
    engine.hash_ring_mut("r").add_node_with_replicas("a", 5);
    let first = json::ring_view(&engine, Kind::HashRing, "r", None);
    let version = first["version"].as_str().expect("version").to_owned();
    assert_eq!(first["positions_included"], true);

    // Loads change, the topology does not: no positions.
    engine.hash_ring_mut("r").store_key(1, "k");
    let same = json::ring_view(&engine, Kind::HashRing, "r", Some(&version));
    assert_eq!(same["version"], version.as_str());
    assert_eq!(same["positions_included"], false);
    assert!(same["nodes"][0].get("positions").is_none());
    assert_eq!(same["nodes"][0]["load"], 1);

    engine.hash_ring_mut("r").add_node_with_replicas("b", 5);
    let changed = json::ring_view(&engine, Kind::HashRing, "r", Some(&version));
    assert_ne!(changed["version"], version.as_str());
    assert_eq!(changed["positions_included"], true);
    assert_eq!(sent_positions(&changed).len(), 2);
}

#[test]
fn a_chat_router_view_shows_megabytes_against_limits_and_lru_evictions() {
    let mut engine = Engine::new();
    let router = engine.chat_router_mut("chat");
    router.add_server_with_replicas("s1", 10);
    router.add_server_with_replicas("s2", 10);
    router.set_memory_limit("s1", 8);
    router.set_memory_limit("s2", 8);
    for i in 0..20 {
        router.assign_request(1, &format!("req{i}"), 3);
    }
    let router = engine.chat_router("chat").expect("router");
    let view = json::ring_view(&engine, Kind::ChatRouter, "chat", None);
    assert_eq!(view["unit"], "MB");
    for node in view["nodes"].as_array().expect("nodes") {
        let name = node["name"].as_str().expect("name");
        assert_eq!(node["load"], router.get_memory_used(name));
        assert_eq!(node["limit"], 8);
        assert!(node["load"].as_i64().expect("MB") <= 8);
    }
    // 20 requests of 3 MB, at most 2 fit per server: the rest were evicted.
    assert_eq!(view["items"], router.request_count());
    assert_eq!(
        view["evictions"].as_u64().expect("count"),
        20 - router.request_count() as u64
    );
    // The HashRing namespace of the same name is another ring.
    let other = json::ring_view(&engine, Kind::HashRing, "chat", None);
    assert_eq!(other["exists"], false);
}

#[test]
fn the_ring_list_names_every_ring_up_to_its_cap_and_counts_the_rest() {
    let mut engine = Engine::new();
    engine.hash_ring_mut("h").add_node_with_replicas("a", 2);
    engine.chat_router_mut("c").add_server("s");
    let list = json::ring_list(&engine);
    let listed: BTreeSet<(String, String)> = list["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .map(|r| (r["kind"].to_string(), r["ring"].to_string()))
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(list["omitted"], 0);

    for i in 0..MAX_LISTED_RINGS {
        engine.hash_ring_mut(&format!("ring{i:05}")).add_node("a");
    }
    let list = json::ring_list(&engine);
    assert_eq!(
        list["rings"].as_array().expect("rings").len(),
        MAX_LISTED_RINGS
    );
    assert_eq!(list["total"], MAX_LISTED_RINGS + 2);
    assert_eq!(list["omitted"], 2);
}

#[test]
fn the_cluster_panel_names_the_leader_learners_and_this_node() {
    let address = |port: u16| MemberAddress::new(format!("127.0.0.1:{port}"), "peer");
    let status = RaftStatus {
        id: 2,
        role: Role::Follower,
        leader_id: 1,
        term: 7,
        commit_index: 42,
        applied_index: 41,
        voters: vec![1, 2, 3],
        learners: vec![4],
        members: BTreeMap::from([(1, address(1)), (3, address(3)), (4, address(4))]),
        ..RaftStatus::default()
    };
    let view = json::cluster(&status, &address(2), "digest", "cid");
    let roles: Vec<(u64, &str, &str, bool)> = view["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().expect("id"),
                m["role"].as_str().expect("role"),
                m["address"].as_str().expect("address"),
                m["this_node"].as_bool().expect("bool"),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            (1, "leader", "127.0.0.1:1", false),
            (2, "follower", "127.0.0.1:2", true),
            (3, "follower", "127.0.0.1:3", false),
            (4, "learner", "127.0.0.1:4", false),
        ]
    );
    assert_eq!(
        (&view["term"], &view["commit_index"], &view["applied_index"]),
        (&Value::from(7), &Value::from(42), &Value::from(41))
    );
    assert_eq!(view["state_digest"], "digest");
}

#[test]
fn the_embedded_assets_load_nothing_from_another_host() {
    for (name, text) in [
        ("index.html", INDEX_HTML),
        ("dashboard.js", DASHBOARD_JS),
        ("dashboard.css", DASHBOARD_CSS),
    ] {
        for needle in ["http:", "https:", "//cdn", "@import", "url("] {
            assert!(!text.contains(needle), "{name} contains {needle:?}");
        }
        // Every src=/href= is a path on this node, never protocol-relative.
        for attribute in ["src=\"", "href=\""] {
            for (at, _) in text.match_indices(attribute) {
                let value = &text[at + attribute.len()..];
                assert!(
                    value.starts_with('/') && !value.starts_with("//"),
                    "{name}: {attribute}{}",
                    &value[..value.len().min(40)]
                );
            }
        }
    }
    // What the page loads is what the router serves.
    assert!(INDEX_HTML.contains("src=\"/dashboard.js\""));
    assert!(INDEX_HTML.contains("href=\"/dashboard.css\""));
    // The script fetches only this node's JSON endpoints.
    for (at, _) in DASHBOARD_JS.match_indices("getJson(") {
        let argument = &DASHBOARD_JS[at + "getJson(".len()..];
        assert!(
            argument.starts_with("url") || argument.starts_with("\"/api/"),
            "{}",
            &argument[..40]
        );
    }
}

#[test]
fn query_parameters_are_percent_decoded() {
    let params = query_params(Some("ring=a%20b%22c&kind=chatrouter&x&have=+1"));
    assert_eq!(params["ring"], "a b\"c");
    assert_eq!(params["kind"], "chatrouter");
    assert_eq!(params["x"], "");
    assert_eq!(params["have"], " 1");
    assert!(query_params(None).is_empty());
}
