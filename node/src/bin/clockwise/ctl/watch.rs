//! `clockwise ctl hashring watch` / `ctl chatrouter watch`: a ring's `Watch` stream
//! printed live, one line per message (text, or one JSON object per line with
//! `--json`), until Ctrl-C. A stream that fails resumes on another node from the last
//! revision printed, so no change is printed twice or skipped.

use clap::Args;
use clockwise_client::engine::PositionSpace;
use clockwise_client::{
    Error, Topology, TopologyChange, TopologyNode, WatchEvent, WatchEventKind, WatchStream,
};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub(crate) struct WatchArgs {
    /// Print the changes after this revision (0: the whole topology first, then each
    /// change).
    #[arg(long, default_value_t = 0)]
    start_revision: u64,
    /// Also print progress messages (nothing changed up to a newer revision).
    #[arg(long)]
    progress: bool,
}

/// Prints the stream `open(start)` answers, reopening it from the last revision when
/// it fails with an error worth retrying, until Ctrl-C.
pub(super) async fn follow(
    open: impl AsyncFn(u64) -> Result<WatchStream, Error>,
    args: WatchArgs,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut start = args.start_revision;
    let printing = async {
        loop {
            let mut stream = open(start).await?;
            let error = loop {
                match stream.next().await {
                    Ok(Some(event)) => {
                        start = event.revision;
                        if matches!(event.kind, WatchEventKind::Progress) && !args.progress {
                            continue;
                        }
                        let line = if json {
                            event_json(&event).to_string()
                        } else {
                            event_text(&event)
                        };
                        println!("{line}");
                    }
                    Ok(None) => break None,
                    Err(error) if error.is_retriable() => break Some(error),
                    Err(error) => return Err::<(), Error>(error),
                }
            };
            let why = error.map_or("the node ended the stream".into(), |e| e.to_string());
            eprintln!(
                "watch on {} lost ({why}); resuming after revision {start}",
                stream.endpoint()
            );
        }
    };
    tokio::select! {
        outcome = printing => outcome.map_err(Into::into),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

fn space(space: PositionSpace) -> &'static str {
    match space {
        PositionSpace::Drill => "drill",
        PositionSpace::U64 => "u64",
    }
}

fn node_text(node: &TopologyNode) -> String {
    format!(
        "{} replicas={} positions={} limit={}",
        node.id,
        node.replicas,
        node.positions.len(),
        node.limit
    )
}

fn topology_text(topology: &Topology) -> String {
    let nodes: Vec<String> = topology
        .nodes
        .iter()
        .map(|n| format!("{}:{}", n.id, n.positions.len()))
        .collect();
    let merges: Vec<String> = topology
        .merges
        .iter()
        .map(|(from, into)| format!("{from}->{into}"))
        .collect();
    format!(
        "space={} nodes=[{}] merges=[{}]",
        space(topology.space),
        nodes.join(" "),
        merges.join(" ")
    )
}

/// One line: `revision N  EVENT  DETAILS`.
fn event_text(event: &WatchEvent) -> String {
    let (name, details) = match &event.kind {
        WatchEventKind::Topology { topology, resync } => (
            if *resync { "resync" } else { "topology" },
            topology_text(topology),
        ),
        WatchEventKind::Change(change) => match change {
            TopologyChange::Configured(s) => ("configured", space(*s).to_owned()),
            TopologyChange::NodeAdded(node) => ("node_added", node_text(node)),
            TopologyChange::NodeRemoved(id) => ("node_removed", id.clone()),
            TopologyChange::LimitSet { node, limit } => ("limit_set", format!("{node} {limit}")),
            TopologyChange::Merged { from, into } => ("merged", format!("{from} -> {into}")),
            TopologyChange::Restored(topology) => ("restored", topology_text(topology)),
        },
        WatchEventKind::Progress => ("progress", String::new()),
    };
    format!("revision {}  {name}  {details}", event.revision)
        .trim_end()
        .to_owned()
}

fn node_json(node: &TopologyNode) -> Value {
    json!({
        "id": node.id,
        "replicas": node.replicas,
        "positions": node.positions,
        "limit": node.limit,
    })
}

fn topology_json(topology: &Topology) -> Value {
    json!({
        "position_space": space(topology.space),
        "nodes": topology.nodes.iter().map(node_json).collect::<Vec<_>>(),
        "merges": topology
            .merges
            .iter()
            .map(|(from, into)| json!({ "from": from, "into": into }))
            .collect::<Vec<_>>(),
    })
}

/// One object: `{"revision": N, "event": NAME, …}`.
fn event_json(event: &WatchEvent) -> Value {
    let revision = event.revision;
    match &event.kind {
        WatchEventKind::Topology { topology, resync } => json!({
            "revision": revision,
            "event": "topology",
            "resync": resync,
            "topology": topology_json(topology),
        }),
        WatchEventKind::Change(change) => match change {
            TopologyChange::Configured(s) => {
                json!({ "revision": revision, "event": "configured", "position_space": space(*s) })
            }
            TopologyChange::NodeAdded(node) => {
                json!({ "revision": revision, "event": "node_added", "node": node_json(node) })
            }
            TopologyChange::NodeRemoved(id) => {
                json!({ "revision": revision, "event": "node_removed", "node_id": id })
            }
            TopologyChange::LimitSet { node, limit } => json!({
                "revision": revision, "event": "limit_set", "node_id": node, "limit": limit,
            }),
            TopologyChange::Merged { from, into } => json!({
                "revision": revision, "event": "merged", "from": from, "into": into,
            }),
            TopologyChange::Restored(topology) => json!({
                "revision": revision, "event": "restored", "topology": topology_json(topology),
            }),
        },
        WatchEventKind::Progress => json!({ "revision": revision, "event": "progress" }),
    }
}
