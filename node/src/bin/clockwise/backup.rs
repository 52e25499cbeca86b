//! `clockwise backup save | restore`: a whole-cluster snapshot to a file, and a new
//! one-member cluster seeded from one (as `etcdctl snapshot save` and
//! `etcdutl snapshot restore`). `save` goes through the SDK (`Cluster::snapshot_from`).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use clockwise_client::{Client, Cluster};
use clockwise_cluster::{backup, MemberAddress};
use clockwise_node::default_peer_listen;

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Save a consistent snapshot of a node's state (as of its applied index) to FILE.
    Save(SaveArgs),
    /// Seed DIR with the snapshot in FILE as a new one-member cluster; start it with
    /// `clockwise node --id ID --listen ADDRESS --data-dir DIR`, then grow it with
    /// AddMember.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Where to write the backup (mode 0600: it holds the whole state; written to a new
    /// temporary file beside it, synced, then renamed over it).
    file: PathBuf,
    /// Nodes to ask, as host:port, comma-separated; the first that answers serves it.
    #[arg(
        long,
        env = "CLOCKWISE_ENDPOINTS",
        default_value = "127.0.0.1:50051",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    #[command(flatten)]
    token: crate::ctl::TokenArgs,
    #[command(flatten)]
    tls: crate::ctl::TlsArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A file written by `clockwise backup save`.
    file: PathBuf,
    /// The new node's data directory (must not hold a raft log yet).
    #[arg(long)]
    data_dir: PathBuf,
    /// The new node's raft id.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    id: u64,
    /// The address the new node will serve clients on (its --listen).
    #[arg(long, default_value = "127.0.0.1:50051")]
    address: SocketAddr,
    /// The address of its raft transport (its --peer-listen; default: --address's port
    /// + 100, as the node's own default).
    #[arg(long)]
    peer_address: Option<SocketAddr>,
}

pub async fn run(command: BackupCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        BackupCommand::Save(args) => save(args).await,
        // Seeding syncs files: off the async workers.
        BackupCommand::Restore(args) => {
            tokio::task::spawn_blocking(move || restore(args).map_err(|e| e.to_string()))
                .await?
                .map_err(Into::into)
        }
    }
}

async fn save(args: SaveArgs) -> Result<(), Box<dyn std::error::Error>> {
    let endpoints: Vec<String> = args.endpoints.iter().map(|e| e.trim().to_owned()).collect();
    let mut builder = Client::builder().endpoints(endpoints.iter().cloned());
    if let Some(token) = args.token.token()? {
        builder = builder.token(token);
    }
    if let Some(tls) = args.tls.tls()? {
        builder = builder.tls(tls);
    }
    let cluster = builder.build().await?.cluster();
    let mut last_error = String::from("no endpoints");
    // The first node that answers serves it, in the order given.
    for endpoint in &endpoints {
        match save_from(&cluster, endpoint, &args.file).await {
            Ok(()) => return Ok(()),
            Err(e) => last_error = format!("{endpoint}: {e}"),
        }
    }
    Err(format!("no node gave a snapshot ({last_error})").into())
}

/// Most bytes reserved before any arrive: the announced size is the server's word.
const MAX_PREALLOCATION: usize = 64 << 20;

async fn save_from(
    cluster: &Cluster,
    endpoint: &str,
    file: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    // The SDK checks the size and the SHA-256 the node announced as the chunks arrive.
    let mut snapshot = cluster.snapshot_from(endpoint).await?;
    let total = usize::try_from(snapshot.total_bytes())?;
    let progress = Progress::new(total);
    let mut body = Vec::with_capacity(total.min(MAX_PREALLOCATION));
    while let Some(chunk) = snapshot.chunk().await? {
        body.extend_from_slice(&chunk);
        progress.show(body.len());
    }
    progress.done();
    let contents = backup::encode_file(&body);
    write_synced(file, &contents)?;
    println!(
        "saved snapshot at index {} (term {}, {} bytes, state digest {}) to {}",
        snapshot.index(),
        snapshot.term(),
        contents.len(),
        snapshot.state_digest(),
        file.display()
    );
    Ok(())
}

/// Writes a new temporary file beside `file` (owner-only, [`create_temporary`]), syncs
/// it, renames it to `file`, then syncs the directory so the rename itself survives a
/// crash (issue #17). A failed write leaves no temporary behind.
fn write_synced(file: &Path, contents: &[u8]) -> std::io::Result<()> {
    let (temporary, mut out) = create_temporary(file)?;
    let written = out
        .write_all(contents)
        .and_then(|()| out.sync_all())
        .and_then(|()| std::fs::rename(&temporary, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    File::open(parent_dir(file))?.sync_all()
}

/// Backups hold the whole state: readable and writable by their owner only.
const BACKUP_FILE_MODE: u32 = 0o600;

/// A new file beside `file` under a name no one can plant a file or symlink at in
/// advance (process id and random bits), created exclusively (`O_CREAT | O_EXCL`, so a
/// name that exists, a symlink included, is never opened) with [`BACKUP_FILE_MODE`].
fn create_temporary(file: &Path) -> std::io::Result<(PathBuf, File)> {
    let name = file.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", file.display()),
        )
    })?;
    let mut last = None;
    for _ in 0..8 {
        let mut temporary = OsString::from(".");
        temporary.push(name);
        temporary.push(format!(
            ".{}.{:016x}.tmp",
            std::process::id(),
            random_bits()
        ));
        let temporary = parent_dir(file).join(temporary);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(BACKUP_FILE_MODE)
            .open(&temporary)
        {
            Ok(out) => return Ok((temporary, out)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// 64 bits no other process can predict: std's per-process random hash keys, mixed
/// with the time.
fn random_bits() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

/// The directory holding `file` (`.` for a bare file name, whose parent is empty).
fn parent_dir(file: &Path) -> &Path {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn restore(args: RestoreArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let contents = std::fs::read(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let snapshot =
        backup::decode_file(&contents).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let address = args.address.to_string();
    let peer = args
        .peer_address
        .unwrap_or_else(|| default_peer_listen(args.address))
        .to_string();
    let member = MemberAddress::new(address.clone(), peer.clone());
    let index = backup::seed(&args.data_dir.join("raft"), &snapshot, args.id, &member)?;
    println!(
        "restored the snapshot at index {index} into {} as member {} at {address} (peers: \
         {peer}); start it with:\n  \
         clockwise node --id {} --listen {address} --peer-listen {peer} --data-dir {}",
        args.data_dir.display(),
        args.id,
        args.id,
        args.data_dir.display()
    );
    Ok(())
}

/// A progress line on stderr for large snapshots, when stderr is a terminal.
struct Progress {
    total: usize,
    shown: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            total,
            shown: total >= 4 << 20 && std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, received: usize) {
        if self.shown {
            let percent = received * 100 / self.total.max(1);
            eprint!(
                "\rsaving snapshot: {percent:>3}% ({:.1} of {:.1} MB)",
                received as f64 / 1e6,
                self.total as f64 / 1e6
            );
        }
    }

    fn done(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_file_replaces_the_old_one_leaves_no_temporary_and_syncs_its_directory() {
        let dir = std::env::temp_dir().join(format!("clockwise-backup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("state.bak");
        write_synced(&file, b"old").unwrap();
        write_synced(&file, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        assert!(!dir.join("state.bak.tmp").exists());
        // The directory synced after the rename: the file's own, or `.` for a bare name.
        assert_eq!(parent_dir(&file), dir.as_path());
        assert_eq!(parent_dir(Path::new("state.bak")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/state.bak")), Path::new("/"));
        // A directory that does not exist: refused before anything is written.
        assert!(write_synced(&dir.join("missing/state.bak"), b"x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_backup_is_owner_only_and_never_written_through_a_planted_symlink() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("clockwise-backup-ln-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("state.bak");
        // Someone else's file, and a symlink to it where the old code wrote its temporary.
        let victim = dir.join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("state.bak.tmp")).unwrap();
        write_synced(&file, b"state").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&file).unwrap(), b"state");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["state.bak", "state.bak.tmp", "victim"],
            "no temporary left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
