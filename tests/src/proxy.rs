//! A TCP proxy in front of every node, in the manner of etcd's robustness proxy: all
//! traffic to a node (peers' raft messages, forwarded writes, clients' calls) passes
//! through the node's proxy, which can hold it (a partition), delay it or cut it.
//!
//! Faults are per link, not per proxy: the proxy finds out which process opened each
//! connection (from `/proc/net/tcp` and `/proc/PID/fd`), so a partition between two
//! groups of nodes holds exactly the connections between them, in both directions, and
//! leaves clients' connections alone. Held bytes stay queued, as a real network's
//! retransmissions would deliver them once the partition heals; the bounded queues
//! push back on the sender (the kernel's buffers fill, then its writes wait).
//!
//! Linux only (it reads `/proc`); a connection whose owner cannot be found counts as a
//! client's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Chunks read from one side and not yet written to the other, per direction.
const CHUNKS_IN_FLIGHT: usize = 64;
const CHUNK_BYTES: usize = 64 << 10;

/// Who opened a connection to a node's proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Node(usize),
    Client,
}

/// What the network does now. Nodes are indices `0..n`.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Node pairs (both orders) whose traffic is held.
    held: BTreeSet<(usize, usize)>,
    /// Latency added to every byte to or from a node.
    delay: BTreeMap<usize, Duration>,
    /// Bumped to close every connection to or from a node.
    cuts: BTreeMap<usize, u64>,
    /// Nodes whose proxy refuses (closes at once) new connections.
    refusing: BTreeSet<usize>,
}

impl Faults {
    fn held(&self, source: Source, to: usize) -> bool {
        matches!(source, Source::Node(from) if self.held.contains(&(from, to)))
    }

    fn delay(&self, source: Source, to: usize) -> Duration {
        let from = match source {
            Source::Node(from) => self.delay.get(&from).copied().unwrap_or_default(),
            Source::Client => Duration::ZERO,
        };
        from.max(self.delay.get(&to).copied().unwrap_or_default())
    }

    /// What identifies a connection's cut generation: changes when either end is cut.
    fn cut_generation(&self, source: Source, to: usize) -> (u64, u64) {
        let from = match source {
            Source::Node(from) => self.cuts.get(&from).copied().unwrap_or(0),
            Source::Client => 0,
        };
        (from, self.cuts.get(&to).copied().unwrap_or(0))
    }

    fn refuses(&self, source: Source, to: usize) -> bool {
        self.refusing.contains(&to)
            || matches!(source, Source::Node(from) if self.refusing.contains(&from))
    }
}

/// The proxies of one cluster and the faults they apply.
#[derive(Clone)]
pub struct Network {
    faults: watch::Sender<Faults>,
    /// Which node each known process id is.
    owners: Arc<RwLock<HashMap<u32, usize>>>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            faults: watch::Sender::new(Faults::default()),
            owners: Arc::default(),
        }
    }
}

impl Network {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts node `node`'s proxy on `listen`, forwarding to `upstream`; answers the
    /// address it listens on. The proxy runs until the runtime stops.
    pub async fn add_proxy(
        &self,
        node: usize,
        listen: &str,
        upstream: &str,
    ) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let network = self.clone();
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, peer)) = listener.accept().await else {
                    continue;
                };
                let network = network.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let source = network.source_of(peer, address).await;
                    network.serve(inbound, source, node, &upstream).await;
                });
            }
        });
        Ok(address)
    }

    /// Records that process `pid` is node `node` (after every start of it).
    pub fn set_process(&self, node: usize, pid: u32) {
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        owners.retain(|_, n| *n != node);
        owners.insert(pid, node);
    }

    /// Holds all traffic between `side` and every other node of `0..nodes`.
    pub fn partition(&self, side: &[usize], nodes: usize) {
        self.faults.send_modify(|f| {
            for &a in side {
                for b in (0..nodes).filter(|b| !side.contains(b)) {
                    f.held.insert((a, b));
                    f.held.insert((b, a));
                }
            }
        });
    }

    /// Adds `latency` to all traffic to or from `node`.
    pub fn delay(&self, node: usize, latency: Duration) {
        self.faults.send_modify(|f| {
            f.delay.insert(node, latency);
        });
    }

    /// Closes every connection to or from `node`, and refuses new ones until
    /// [`Network::heal`].
    pub fn cut(&self, node: usize) {
        self.faults.send_modify(|f| {
            *f.cuts.entry(node).or_default() += 1;
            f.refusing.insert(node);
        });
    }

    /// Ends every partition, delay and refusal (held bytes flow again).
    pub fn heal(&self) {
        self.faults.send_modify(|f| {
            f.held.clear();
            f.delay.clear();
            f.refusing.clear();
        });
    }

    async fn serve(&self, inbound: TcpStream, source: Source, node: usize, upstream: &str) {
        let mut faults = self.faults.subscribe();
        let generation = {
            let now = faults.borrow_and_update();
            if now.refuses(source, node) {
                return;
            }
            now.cut_generation(source, node)
        };
        let Ok(outbound) = TcpStream::connect(upstream).await else {
            return; // the node is down: the caller sees the connection close
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (in_read, in_write) = inbound.into_split();
        let (out_read, out_write) = outbound.into_split();
        let link = Link {
            source,
            to: node,
            faults: self.faults.clone(),
        };
        let cut = async {
            while faults.changed().await.is_ok() {
                if faults.borrow_and_update().cut_generation(source, node) != generation {
                    return;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(link.pump(in_read, out_write), link.pump(out_read, in_write)) } => {}
            _ = cut => {}
        }
    }

    /// Which node opened the connection from `peer` to our `local` address.
    async fn source_of(&self, peer: SocketAddr, local: SocketAddr) -> Source {
        let owners = self
            .owners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        tokio::task::spawn_blocking(move || owning_node(peer, local, &owners))
            .await
            .ok()
            .flatten()
            .map_or(Source::Client, Source::Node)
    }
}

/// One direction-independent view of a connection's faults.
struct Link {
    source: Source,
    to: usize,
    faults: watch::Sender<Faults>,
}

impl Link {
    /// Copies `from` to `to` as the link's faults allow, until `from` ends or either
    /// side fails; then closes `to`'s write side.
    async fn pump(&self, mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
        let (queue, mut chunks) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
        let read = async move {
            let mut buf = vec![0u8; CHUNK_BYTES];
            while let Ok(n @ 1..) = from.read(&mut buf).await {
                if queue
                    .send((Instant::now(), buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        };
        let write = async {
            let mut faults = self.faults.subscribe();
            while let Some((read_at, bytes)) = chunks.recv().await {
                loop {
                    let (held, delay) = {
                        let now = faults.borrow_and_update();
                        (
                            now.held(self.source, self.to),
                            now.delay(self.source, self.to),
                        )
                    };
                    if held {
                        if faults.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(read_at + delay) => break,
                        changed = faults.changed() => if changed.is_err() { return },
                    }
                }
                if to.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = to.shutdown().await;
        };
        tokio::join!(read, write);
    }
}

/// The node whose process owns the client end of a loopback connection from `peer` to
/// `local`, looked up in `/proc`.
fn owning_node(peer: SocketAddr, local: SocketAddr, owners: &HashMap<u32, usize>) -> Option<usize> {
    let inode = socket_inode(peer.port(), local.port())?;
    let wanted = format!("socket:[{inode}]");
    owners.iter().find_map(|(&pid, &node)| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            })
            .then_some(node)
    })
}

/// The inode of the IPv4 TCP socket bound to local port `port` and connected to
/// remote port `remote_port`.
fn socket_inode(port: u16, remote_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |field: &str| {
        field
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (port_of(local)? == port && port_of(remote)? == remote_port)
            .then(|| inode.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes every byte back.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(text).await?;
        let mut back = vec![0u8; text.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    /// Absence can only be shown by waiting: long enough that a pass-through proxy
    /// would have answered many times over.
    const QUIET: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn passes_holds_delays_and_cuts_a_nodes_link() {
        let upstream = echo_server().await;
        let network = Network::new();
        let proxy = network
            .add_proxy(1, "127.0.0.1:0", &upstream.to_string())
            .await
            .unwrap();
        // Connections from this process count as node 0's.
        network.set_process(0, std::process::id());
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"hello").await.unwrap(), b"hello");

        network.partition(&[0], 2);
        stream.write_all(b"held").await.unwrap();
        let mut back = [0u8; 4];
        let early = tokio::time::timeout(QUIET, stream.read_exact(&mut back)).await;
        assert!(early.is_err(), "bytes crossed a partition");
        network.heal();
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"held", "held bytes arrive after healing");

        network.delay(1, Duration::from_millis(150));
        let started = Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").await.unwrap(), b"slow");
        // Both directions are delayed.
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        network.heal();

        network.cut(1);
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the cut closes the connection: {closed:?}"
        );
        // Refused while cut: a new connection is closed at once.
        let mut refused = TcpStream::connect(proxy).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), refused.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        network.heal();
        let mut again = TcpStream::connect(proxy).await.unwrap();
        assert_eq!(round_trip(&mut again, b"back").await.unwrap(), b"back");
    }

    #[tokio::test]
    async fn a_partition_between_nodes_leaves_clients_alone() {
        let upstream = echo_server().await;
        let network = Network::new();
        let proxy = network
            .add_proxy(1, "127.0.0.1:0", &upstream.to_string())
            .await
            .unwrap();
        // This process is no node: a client.
        network.partition(&[0], 2);
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"client").await.unwrap(), b"client");
    }

    #[test]
    fn finds_the_process_that_owns_a_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(local).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let owners = HashMap::from([(std::process::id(), 7)]);
        assert_eq!(owning_node(peer, local, &owners), Some(7));
        assert_eq!(owning_node(peer, local, &HashMap::new()), None);
    }
}
