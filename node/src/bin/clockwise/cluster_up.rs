//! `clockwise cluster up`: a local cluster of `clockwise node` processes on embedded
//! defaults, for trying clockwise on one machine.
//!
//! Node i (1-based) serves clients on 127.0.0.1:(base port + i - 1) and its peers on
//! that port + 100 (the default --peer-listen), with its data in DATA_DIR/node-i, so a second `cluster up` over the same directory restarts the same
//! cluster with its data. Ctrl-C or SIGTERM stops every node cleanly.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clockwise_cluster::Peers;
use clockwise_node::PEER_PORT_OFFSET;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// How many nodes (a majority of them must stay up for writes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// The first node's gRPC port; the others follow.
    #[arg(long, default_value_t = 50051)]
    base_port: u16,
    /// Parent directory of every node's data (node-1, node-2, …).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
}

pub async fn up(args: UpArgs) -> Result<(), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let count = args.nodes;
    let addrs: Vec<String> = (0..count)
        .map(|i| {
            args.base_port
                .checked_add(i)
                .map(|port| format!("127.0.0.1:{port}"))
                .ok_or("--base-port leaves no room for every node")
        })
        .collect::<Result<_, _>>()?;
    let peer_addrs: Vec<String> = (0..count)
        .map(|i| {
            args.base_port
                .checked_add(i)
                .and_then(|port| port.checked_add(PEER_PORT_OFFSET))
                .map(|port| format!("127.0.0.1:{port}"))
                .ok_or("--base-port leaves no room for every node's peer port")
        })
        .collect::<Result<_, _>>()?;
    let peers = Peers::new(
        (1..)
            .zip(&addrs)
            .zip(&peer_addrs)
            .map(|((id, client), peer)| (id, client.as_str(), peer.as_str())),
    )?
    .to_string();
    let mut children: Vec<Child> = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let dir = args.data_dir.join(format!("node-{}", i + 1));
        // Found the cluster only on a new data dir: a member whose dir was lost refuses
        // to start rather than found a cluster of its own.
        let state = if dir.join("raft").exists() {
            "existing"
        } else {
            "new"
        };
        let mut child = Command::new(&exe)
            .arg("node")
            .args([
                "--id",
                &(i + 1).to_string(),
                "--listen",
                addr,
                "--peer-listen",
                &peer_addrs[i],
                "--peers",
                &peers,
                "--initial-cluster-state",
                state,
            ])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--worker-threads", "1"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        // The node prints `listening on ADDR` once it serves.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        match first {
            Ok(Ok(Some(line))) if line.starts_with("listening on") => {}
            other => {
                return Err(format!(
                    "node {} did not start on {addr} ({other:?}); is the port free?",
                    i + 1
                )
                .into())
            }
        }
        // Keep draining its stdout so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        children.push(child);
    }
    println!("clockwise cluster of {count} node(s) is up (Ctrl-C stops it):");
    for (i, addr) in addrs.iter().enumerate() {
        println!(
            "  node {}: {addr}  data: {}",
            i + 1,
            args.data_dir.join(format!("node-{}", i + 1)).display()
        );
    }
    println!(
        "try: grpcurl -plaintext {} clockwise.cluster.v1.Cluster/Status",
        addrs[0]
    );

    let exited = async {
        let mut waits: Vec<_> = children.iter_mut().map(|c| Box::pin(c.wait())).collect();
        let (status, index, _) = futures::future::select_all(waits.drain(..)).await;
        (index, status)
    };
    tokio::select! {
        _ = super::shutdown_signal() => {}
        (index, status) = exited => {
            eprintln!("node {} exited ({status:?}); stopping the others", index + 1);
        }
    }
    for child in &children {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) with a pid we spawned and own; no memory is touched.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    for child in &mut children {
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
    Ok(())
}
