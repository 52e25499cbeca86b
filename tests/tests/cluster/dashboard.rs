//! The ring dashboard on a real node's HTTP port (`--metrics-listen`): the page and its
//! assets are served from the binary, and the JSON endpoints show what the node's
//! replica holds. (Headless Chromium renders it in `tests/e2e/dashboard_e2e.py`.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clockwise_proto::hashring::v1 as pb;
use clockwise_tests::NodeProcess;

/// `GET path`: the status code, the head (lowercased) and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let text = tokio::time::timeout(
        Duration::from_secs(10),
        clockwise_tests::http_get(addr, path),
    )
    .await
    .expect("answered within 10 s")
    .expect("the HTTP port answers");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    (code, head.to_ascii_lowercase(), body.to_owned())
}

async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (code, head, body) = get(addr, path).await;
    assert_eq!(code, 200, "{path}: {body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[tokio::test]
async fn the_dashboard_and_its_json_show_the_nodes_replica() {
    let node = NodeProcess::start();
    let http = node.metrics_addr();
    let mut ring = node.hash_ring().await;
    for (node_id, num_replicas) in [("a", 30), ("b", 20), ("c", 10)] {
        ring.add_node_with_replicas(pb::AddNodeWithReplicasRequest {
            ring: "web".into(),
            node_id: node_id.into(),
            num_replicas,
            ..Default::default()
        })
        .await
        .expect("added");
    }
    ring.set_capacity(pb::SetCapacityRequest {
        ring: "web".into(),
        node_id: "a".into(),
        capacity: 2,
        ..Default::default()
    })
    .await
    .expect("capacity set");
    for i in 0..50 {
        ring.store_key(pb::StoreKeyRequest {
            ring: "web".into(),
            key: format!("key{i}"),
            ..Default::default()
        })
        .await
        .expect("stored");
    }

    // The page and its assets, from the binary, under a policy that loads nothing else.
    let (code, head, page) = get(http, "/").await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(page.contains("<script src=\"/dashboard.js\""), "{page}");
    let (code, _, script) = get(http, "/dashboard.js").await;
    assert_eq!(code, 200);
    assert!(script.contains("/api/ring?ring="));
    assert_eq!(get(http, "/dashboard.css").await.0, 200);
    // `/metrics` is still served on the same port.
    let (code, _, metrics) = get(http, "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("clockwise_rpc_requests_total"));

    let list = get_json(http, "/api/rings").await;
    assert_eq!(list["rings"][0]["ring"], "web", "{list}");
    assert_eq!(list["rings"][0]["nodes"], 3, "{list}");

    // Writes are applied on the leader before they are acknowledged: with one node the
    // replica shows all of them. Poll anyway in case the apply trails the reply.
    let deadline = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let view = get_json(http, "/api/ring?ring=web&kind=hashring").await;
        if view["items"].as_u64() == Some(50 - view["evictions"].as_u64().unwrap_or(0))
            || Instant::now() > deadline
        {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(view["exists"], true, "{view}");
    assert_eq!(view["virtual_nodes"], 60);
    let marks: Vec<(String, usize)> = view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().expect("name").to_owned(),
                n["positions"].as_array().expect("positions").len(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [("a".into(), 30), ("b".into(), 20), ("c".into(), 10)]
    );
    let a = &view["nodes"][0];
    assert_eq!(
        (a["load"].as_i64(), a["limit"].as_i64()),
        (Some(2), Some(2))
    );
    assert!(view["evictions"].as_u64().expect("count") > 0, "{view}");
    assert!(view["applied_index"].as_u64().expect("index") > 0);

    // The same topology again: loads only.
    let version = view["version"].as_str().expect("version");
    let again = get_json(
        http,
        &format!("/api/ring?ring=web&kind=hashring&have={version}"),
    )
    .await;
    assert_eq!(again["positions_included"], false, "{again}");

    // Bad queries name their parameter.
    let (code, _, body) = get(http, "/api/ring?ring=web&kind=bogus").await;
    assert_eq!(
        (code, body.trim()),
        (400, "kind: must be hashring or chatrouter")
    );
    let (code, _, body) = get(http, "/api/ring").await;
    assert_eq!(code, 400);
    assert!(body.starts_with("ring: "), "{body}");

    let cluster = get_json(http, "/api/cluster").await;
    assert_eq!(cluster["role"], "leader", "{cluster}");
    assert_eq!(cluster["leader_id"], cluster["id"]);
    assert_eq!(cluster["members"].as_array().expect("members").len(), 1);
    assert_eq!(
        cluster["members"][0]["address"],
        node.grpc_addr().to_string()
    );
    assert!(!cluster["state_digest"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
}
