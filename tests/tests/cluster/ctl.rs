//! `clockwise ctl` end to end: every subcommand against a real 3-node cluster, in text
//! and JSON, with endpoints from the environment or the flag; refusals exit non-zero
//! with the server's reason.

use clockwise_tests::cluster::TestCluster;
use serde_json::Value;

use crate::clockwise;

struct Ctl {
    endpoints: String,
}

impl Ctl {
    /// Runs `clockwise ctl ARGS` with CLOCKWISE_ENDPOINTS; answers (exit code, stdout,
    /// stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["ctl"];
        all.extend_from_slice(args);
        clockwise(&all, &[("CLOCKWISE_ENDPOINTS", &self.endpoints)])
    }

    /// Runs a command that must succeed; answers its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "ctl {args:?} failed: {err}");
        out
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("ctl --json prints JSON")
    }
}

fn hr<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["hashring", "--ring", "ctl"];
    all.extend_from_slice(args);
    all
}

fn cr<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["chatrouter", "--ring", "ctl"];
    all.extend_from_slice(args);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ctl_subcommand_works_against_a_cluster() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.leader().await;
    let ctl = Ctl {
        endpoints: cluster.addrs.join(","),
    };

    // HashRing.
    assert_eq!(ctl.ok(&hr(&["add-node", "a"])), "true\n");
    assert_eq!(ctl.ok(&hr(&["add-node", "a"])), "false\n");
    assert_eq!(ctl.ok(&hr(&["add-node-with-replicas", "b", "3"])), "true\n");
    assert_eq!(ctl.ok(&hr(&["get-node-count"])), "2\n");
    assert_eq!(ctl.json(&hr(&["get-node-count"])), 2);
    let mut nodes: Vec<String> = ctl
        .ok(&hr(&["list-nodes"]))
        .lines()
        .map(String::from)
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["a", "b"]);
    let owner = ctl.ok(&hr(&["store-key", "k1"])).trim().to_owned();
    assert!(owner == "a" || owner == "b", "{owner}");
    assert_eq!(ctl.ok(&hr(&["route-key", "k1"])).trim(), owner);
    assert_eq!(
        ctl.json(&hr(&["route-key", "k1", "--stale"])),
        owner.as_str()
    );
    assert!(ctl
        .ok(&hr(&["locate-key", "k1"]))
        .starts_with(&format!("owner        {owner}\n")));
    let located = ctl.json(&hr(&["locate-key", "k1"]));
    assert_eq!(located["owner"], owner.as_str());
    assert_eq!(located["size"], 1);
    assert_eq!(ctl.ok(&hr(&["locate-key", "nope"])), "(not stored)\n");
    assert_eq!(ctl.ok(&hr(&["get-load", &owner])), "1\n");
    assert_eq!(ctl.ok(&hr(&["top-loaded", "1"])), format!("{owner}(1)\n"));
    assert_eq!(ctl.ok(&hr(&["get-replica-count", "b"])), "3\n");
    assert_eq!(ctl.ok(&hr(&["set-capacity", "a", "5"])), "true\n");
    assert_eq!(ctl.ok(&hr(&["get-capacity", "a"])), "5\n");
    assert_eq!(ctl.ok(&hr(&["set-capacity", "a", "-1"])), "true\n");
    assert_eq!(ctl.ok(&hr(&["get-capacity", "a"])), "-1\n");
    assert_eq!(ctl.ok(&hr(&["get-used", &owner])), "1\n");
    assert_eq!(ctl.ok(&hr(&["evict-lru", &owner])), "k1\n");
    assert_eq!(ctl.ok(&hr(&["evict-lru", &owner])), "(none)\n");
    let batch = ctl.ok(&hr(&[
        "batch-operations",
        "store:k2",
        "remove_key:k2",
        "bogus:k3",
    ]));
    let lines: Vec<&str> = batch.lines().collect();
    assert_eq!(lines.len(), 3, "{batch}");
    assert!(lines[0].starts_with("0  "));
    assert_eq!(&lines[1..], ["1  true", "2  (none)"]);
    let batch = ctl.json(&hr(&["batch-operations", "route:k2", "remove_key:k2"]));
    assert!(batch[0]["placed"].is_string());
    assert_eq!(batch[1]["removed"], false);
    assert_eq!(
        ctl.ok(&hr(&[
            "sync-replicas",
            "a:b",
            "ghost:b",
            "--max-concurrent",
            "2"
        ])),
        "0  true\n1  false\n"
    );
    assert_eq!(
        ctl.json(&hr(&["sync-replicas", "a:b", "--mode", "all-sleep"])),
        serde_json::json!([true])
    );
    assert_eq!(
        ctl.ok(&["hashring", "--ring", "ctl-empty", "configure-ring", "u64"]),
        "ok\n"
    );
    let (code, _, err) = ctl.run(&hr(&["configure-ring", "u64"]));
    assert_eq!(code, 1);
    assert!(err.contains("failed precondition"), "{err}");
    // TTLs, backups, restores, merges (explicit timestamps: the ring's clock).
    let at = |ts: &'static str, args: &[&'static str]| {
        let mut all = vec!["hashring", "--ring", "ctl-life", "--timestamp", ts];
        all.extend_from_slice(args);
        all
    };
    assert_eq!(ctl.ok(&at("1", &["add-node", "m1"])), "true\n");
    assert_eq!(ctl.ok(&at("1", &["add-node", "m2"])), "true\n");
    ctl.ok(&at("10", &["store-key", "brief", "--ttl-ms", "5"]));
    ctl.ok(&at("10", &["store-key", "lasting"]));
    let located = ctl.json(&at("14", &["locate-key", "brief"]));
    assert_eq!(located["expires_at"], 15);
    assert_eq!(
        ctl.ok(&at("15", &["locate-key", "brief"])),
        "(not stored)\n"
    );
    assert_eq!(ctl.ok(&at("20", &["backup"])), "1\n");
    assert_eq!(ctl.ok(&at("21", &["merge-nodes", "m1", "m2"])), "true\n");
    assert_eq!(ctl.ok(&at("21", &["get-merged-into", "m1"])), "m2\n");
    assert_eq!(ctl.ok(&at("22", &["restore", "19"])), "(none)\n");
    assert_eq!(ctl.json(&at("22", &["restore", "20"])), 1);
    assert_eq!(ctl.ok(&at("22", &["get-merged-into", "m1"])), "(none)\n");
    assert_eq!(ctl.ok(&at("22", &["get-node-count"])), "2\n");

    assert_eq!(ctl.ok(&hr(&["remove-node", "b"])), "true\n");

    // ChatRouter.
    assert_eq!(ctl.ok(&cr(&["add-server", "s1"])), "true\n");
    assert_eq!(
        ctl.ok(&cr(&["add-server-with-replicas", "s2", "2"])),
        "true\n"
    );
    assert_eq!(ctl.ok(&cr(&["get-server-count"])), "2\n");
    assert_eq!(ctl.ok(&cr(&["list-servers"])).lines().count(), 2);
    let server = ctl
        .ok(&cr(&["assign-request", "r1", "--size-mb", "30"]))
        .trim()
        .to_owned();
    assert!(server == "s1" || server == "s2", "{server}");
    assert_eq!(ctl.ok(&cr(&["route-request", "r1"])).trim(), server);
    assert_eq!(ctl.ok(&cr(&["get-server-load", &server])), "30\n");
    assert_eq!(
        ctl.ok(&cr(&["top-servers", "1"])),
        format!("{server}(30)\n")
    );
    assert_eq!(ctl.ok(&cr(&["get-replica-count", "s2"])), "2\n");
    assert_eq!(ctl.ok(&cr(&["set-memory-limit", "s1", "100"])), "true\n");
    assert_eq!(ctl.ok(&cr(&["get-memory-limit", "s1"])), "100\n");
    assert_eq!(ctl.ok(&cr(&["get-memory-used", &server])), "30\n");
    let located = ctl.json(&cr(&["locate-request", "r1"]));
    assert_eq!(
        (&located["owner"], &located["size"]),
        (&Value::from(server.as_str()), &Value::from(30))
    );
    assert_eq!(ctl.ok(&cr(&["evict-oldest-session", &server])), "r1\n");
    let batch = ctl.ok(&cr(&[
        "batch-requests",
        "assign:r2:10",
        "remove:r2",
        "route:r3",
    ]));
    let lines: Vec<&str> = batch.lines().collect();
    assert_eq!(lines.len(), 3, "{batch}");
    assert_eq!(lines[1], "1  true");
    assert_eq!(
        ctl.ok(&cr(&["replicate-sessions", "s1:s2:0", "ghost:s2:5"])),
        "0  true\n1  false\n"
    );
    assert_eq!(
        ctl.ok(&[
            "chatrouter",
            "--ring",
            "ctl-empty",
            "configure-ring",
            "drill"
        ]),
        "ok\n"
    );
    let at = |ts: &'static str, args: &[&'static str]| {
        let mut all = vec!["chatrouter", "--ring", "ctl-life", "--timestamp", ts];
        all.extend_from_slice(args);
        all
    };
    ctl.ok(&at("1", &["add-server", "g1"]));
    ctl.ok(&at("1", &["add-server", "g2"]));
    ctl.ok(&at(
        "2",
        &["assign-request", "chat", "--size-mb", "8", "--ttl-ms", "3"],
    ));
    assert_eq!(
        ctl.json(&at("4", &["locate-request", "chat"]))["expires_at"],
        5
    );
    assert_eq!(ctl.ok(&at("4", &["backup"])), "1\n");
    assert_eq!(ctl.ok(&at("5", &["merge-servers", "g1", "g2"])), "true\n");
    assert_eq!(ctl.ok(&at("5", &["get-merged-into", "g1"])), "g2\n");
    assert_eq!(ctl.ok(&at("6", &["restore", "4"])), "1\n");
    assert_eq!(ctl.ok(&at("6", &["get-server-count"])), "2\n");

    assert_eq!(ctl.ok(&cr(&["remove-server", "s2"])), "true\n");

    // Refusals: the server's reason, exit 1; a malformed argument, exit 2.
    let (code, _, err) = ctl.run(&hr(&["add-node", ""]));
    assert_eq!(code, 1);
    assert!(err.contains("node_id"), "{err}");
    let (code, _, err) = ctl.run(&cr(&["assign-request", "r9"]));
    assert_eq!(code, 2, "--size-mb is required: {err}");
    let (code, _, err) = ctl.run(&hr(&["batch-operations", "no-colon"]));
    assert_eq!(code, 1);
    assert!(err.contains("TYPE:KEY"), "{err}");

    // Cluster.
    let status = ctl.ok(&["cluster", "status"]);
    assert_eq!(
        status.lines().count(),
        4,
        "a header and three nodes:\n{status}"
    );
    assert_eq!(
        status.lines().filter(|l| l.contains(" leader ")).count(),
        1,
        "one leader:\n{status}"
    );
    let statuses = ctl.json(&["cluster", "status"]);
    let digests: Vec<&Value> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["state_digest"])
        .collect();
    assert_eq!(digests.len(), 3);
    let target = (leader + 1) % 3 + 1;
    assert_eq!(
        ctl.ok(&["cluster", "transfer-leader", &target.to_string()]),
        format!("leader {target}\n")
    );

    let fourth = cluster.new_slot();
    cluster.start_joining(fourth);
    let address = cluster.addrs[fourth].clone();
    // Endpoints from the flag this time.
    let added = ctl.ok(&[
        "--endpoints",
        &cluster.addrs[0],
        "cluster",
        "add-member",
        "4",
        &address,
        &cluster.peer_addrs[fourth],
    ]);
    assert!(added.contains(&address), "{added}");
    cluster
        .wait_status(fourth, "node 4 is a voter", |s| {
            s.members.iter().any(|m| m.id == 4 && !m.learner)
        })
        .await;
    let removed = ctl.ok(&["cluster", "remove-member", "4"]);
    assert!(!removed.contains(&address), "{removed}");
    let (code, _, err) = ctl.run(&["cluster", "remove-member", "4"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a member"), "{err}");
}
