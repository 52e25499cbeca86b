//! `mint-certs DIR`: throwaway certificates to try clockwise's TLS on one machine.
//! Writes a client CA with a node and a client certificate, and a peer CA with a peer
//! certificate (all for 127.0.0.1 / localhost), and prints the flags that use them.

use std::path::PathBuf;
use std::process::ExitCode;

use clockwise_tests::certs::TestCa;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: mint-certs DIR");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let clients = TestCa::new(&dir, "clients");
    let node = clients.issue("node");
    let client = clients.issue("client");
    let peers = TestCa::new(&dir, "peers");
    let peer = peers.issue("peer");
    let p = |path: &PathBuf| path.display().to_string();
    println!("node flags:");
    println!(
        "  --cert {} --key {} --trusted-ca {} \\\n  --peer-cert {} --peer-key {} --peer-trusted-ca {}",
        p(&node.cert),
        p(&node.key),
        p(&clients.ca_path()),
        p(&peer.cert),
        p(&peer.key),
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
