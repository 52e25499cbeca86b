//! `mint-certs DIR [--nodes N]`: throwaway certificates to try clockwise's TLS on one
//! machine. Writes a client CA with a node and a client certificate, and a peer CA with
//! one peer certificate per node id 1..=N (default 5): `peer-<id>.pem`, naming its id as
//! the URI SAN `clockwise://node/<id>` (peers accept a node's calls only for the id its
//! certificate names); `peer.pem` is node 1's. All for 127.0.0.1 / localhost. Prints
//! the flags that use them.

use std::path::PathBuf;
use std::process::ExitCode;

use clockwise_tests::certs::TestCa;

/// Peer certificates minted without `--nodes`.
const DEFAULT_NODES: u64 = 5;
/// Most peer certificates one run mints.
const MAX_NODES: u64 = 1000;

const USAGE: &str = "usage: mint-certs DIR [--nodes N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, nodes) = match args.as_slice() {
        [dir] => (PathBuf::from(dir), DEFAULT_NODES),
        [dir, flag, n] if flag == "--nodes" => match n.parse::<u64>() {
            Ok(n) if (1..=MAX_NODES).contains(&n) => (PathBuf::from(dir), n),
            _ => {
                eprintln!("--nodes {n}: expected 1 to {MAX_NODES}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let clients = TestCa::new(&dir, "clients");
    let node = clients.issue("node");
    let client = clients.issue("client");
    let peers = TestCa::new(&dir, "peers");
    // `peer.pem` keeps the name older trials used: node 1's.
    peers.issue_peer("peer", 1);
    for id in 1..=nodes {
        peers.issue_peer(&format!("peer-{id}"), id);
    }
    let p = |path: &PathBuf| path.display().to_string();
    let peer = |id: &str, suffix: &str| p(&dir.join(format!("peer-{id}{suffix}.pem")));
    println!("node flags (node ID, 1 to {nodes}, with the peer certificate minted for its id):");
    println!(
        "  --id ID --cert {} --key {} --trusted-ca {} \\\n  --peer-cert {} --peer-key {} --peer-trusted-ca {}",
        p(&node.cert),
        p(&node.key),
        p(&clients.ca_path()),
        peer("ID", ""),
        peer("ID", "-key"),
        p(&peers.ca_path())
    );
    println!("ctl / backup flags:");
    println!(
        "  --cacert {} --cert {} --key {}",
        p(&clients.ca_path()),
        p(&client.cert),
        p(&client.key)
    );
    ExitCode::SUCCESS
}
