//! Bearer-token authentication with roles, checked in one tower layer in front of
//! every service (`--auth-token-file`), before any handler runs.
//!
//! A token file holds one `TOKEN ROLE` pair per line (`#` starts a comment). Roles:
//! `reader` (every read and `Cluster.Status`), `writer` (reads and every write),
//! `admin` (everything a writer may, plus membership, leader transfer, whole-cluster
//! snapshots, per-ring backups, restores and merges) and `peer` (the raft transport
//! between nodes, nothing else). Health and reflection stay open (they reveal the
//! schema and liveness only). Every RPC is classified in [`required`]; one not
//! classified needs `admin` (fail closed).
//!
//! Refusals are `UNAUTHENTICATED` (no token, a malformed header, an unknown token) or
//! `PERMISSION_DENIED` (a known token whose role may not call the method); neither
//! echoes the token. Tokens are kept as SHA-256 digests, so a lookup's timing says
//! nothing about how much of a wrong token matched.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::gate::Gate;
use super::metrics::Metrics;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader,
    Writer,
    Admin,
    /// A node of the cluster: the raft transport only.
    Peer,
}

impl Role {
    fn parse(name: &str) -> Option<Role> {
        match name {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            "peer" => Some(Role::Peer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
            Role::Peer => "peer",
        }
    }

    /// Whether a token of this role may call a method that needs `need`.
    fn allows(self, need: Role) -> bool {
        let rank = |role| match role {
            Role::Reader => 1,
            Role::Writer => 2,
            Role::Admin => 3,
            Role::Peer => 0,
        };
        match (self, need) {
            (Role::Peer, Role::Peer) => true,
            (_, Role::Peer) | (Role::Peer, _) => false,
            _ => rank(self) >= rank(need),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Names the line, never the token on it.
    #[error("token file line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("the token file has no tokens")]
    Empty,
    /// As ssh refuses a private key others may read: a token is a password.
    #[error(
        "the token file {path} is open to others (mode {mode:04o}); \
         restrict it with `chmod 600 {path}`"
    )]
    OpenToOthers { path: String, mode: u32 },
}

/// Group and world permission bits: a file holding tokens must have none.
const OTHERS_MODE_BITS: u32 = 0o077;

/// Reads a file of secrets (a node's token file, ctl's `--token-file`), refusing one
/// whose permissions let anyone but its owner read or change it. The mode is checked
/// on the file opened, so a swap between the check and the read changes nothing.
pub fn read_secret_file(path: &Path) -> Result<String, TokenFileError> {
    use std::io::Read as _;
    let unreadable = |source| TokenFileError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata().map_err(unreadable)?.permissions().mode() & 0o7777;
        if mode & OTHERS_MODE_BITS != 0 {
            return Err(TokenFileError::OpenToOthers {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(unreadable)?;
    Ok(text)
}

/// The tokens a node accepts, by digest.
#[derive(Clone)]
pub struct Tokens {
    roles: HashMap<[u8; 32], Role>,
    /// The first `peer` token: what this node presents to its peers.
    peer: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("Tokens")
            .field("count", &self.roles.len())
            .finish()
    }
}

/// The shortest token accepted: 128 bits as hex.
pub const MIN_TOKEN_LEN: usize = 32;

impl Tokens {
    /// Loads a token file; one others may read or write is refused
    /// ([`read_secret_file`]).
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        Tokens::parse(&read_secret_file(path)?)
    }

    pub fn parse(text: &str) -> Result<Tokens, TokenFileError> {
        let mut tokens = Tokens {
            roles: HashMap::new(),
            peer: None,
        };
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let bad = |reason: &str| TokenFileError::Line {
                line,
                reason: reason.to_owned(),
            };
            let mut fields = content.split_whitespace();
            let (Some(token), Some(role), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("expected `TOKEN ROLE`"));
            };
            let role = Role::parse(role)
                .ok_or_else(|| bad("the role must be reader, writer, admin or peer"))?;
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(&format!(
                    "a token must be at least {MIN_TOKEN_LEN} visible ASCII characters"
                )));
            }
            if tokens.roles.insert(digest(token), role).is_some() {
                return Err(bad("this token is listed twice"));
            }
            if role == Role::Peer && tokens.peer.is_none() {
                tokens.peer = Some(token.to_owned());
            }
        }
        if tokens.roles.is_empty() {
            return Err(TokenFileError::Empty);
        }
        Ok(tokens)
    }

    pub fn role_of(&self, token: &str) -> Option<Role> {
        self.roles.get(&digest(token)).copied()
    }

    /// The token this node sends to its peers (the file's first `peer` token).
    pub fn peer_token(&self) -> Option<&str> {
        self.peer.as_deref()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What calling `path` (`/package.Service/Method`) needs: `None` if it is open.
pub fn required(path: &str) -> Option<Role> {
    classify(path).unwrap_or(Some(Role::Admin))
}

/// `None` when the method is not known here.
fn classify(path: &str) -> Option<Option<Role>> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    let role = match service {
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => return Some(None),
        "clockwise.raft.v1.RaftTransport" => match method {
            "Send" | "Stream" | "Forward" | "SendSnapshot" | "ChangeMembership" => Role::Peer,
            _ => return None,
        },
        "clockwise.cluster.v1.Cluster" => match method {
            "Status" => Role::Reader,
            "AddMember" | "RemoveMember" | "TransferLeader" | "Snapshot" => Role::Admin,
            _ => return None,
        },
        "clockwise.hashring.v1.HashRing" => match method {
            "RouteKey" | "GetNodeCount" | "ListNodes" | "GetLoad" | "TopLoaded"
            | "GetReplicaCount" | "GetCapacity" | "GetUsed" | "LocateKey" | "GetMergedInto"
            | "Watch" => Role::Reader,
            // SyncReplicas changes nothing but runs simulated calls on the node.
            "AddNode"
            | "RemoveNode"
            | "StoreKey"
            | "AddNodeWithReplicas"
            | "SetCapacity"
            | "EvictLru"
            | "BatchOperations"
            | "SyncReplicas"
            | "ConfigureRing" => Role::Writer,
            "Backup" | "Restore" | "MergeNodes" => Role::Admin,
            _ => return None,
        },
        "clockwise.chatrouter.v1.ChatRouter" => match method {
            "RouteRequest" | "GetServerCount" | "ListServers" | "GetServerLoad" | "TopServers"
            | "GetReplicaCount" | "GetMemoryLimit" | "GetMemoryUsed" | "LocateRequest"
            | "GetMergedInto" | "Watch" => Role::Reader,
            "AddServer"
            | "RemoveServer"
            | "AssignRequest"
            | "AddServerWithReplicas"
            | "SetMemoryLimit"
            | "EvictOldestSession"
            | "BatchRequests"
            | "ReplicateSessions"
            | "ConfigureRing" => Role::Writer,
            "Backup" | "Restore" | "MergeServers" => Role::Admin,
            _ => return None,
        },
        _ => return None,
    };
    Some(Some(role))
}

/// The token of an `authorization` header's value (`Bearer TOKEN`).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why a call is refused, if it is.
pub fn check(tokens: &Tokens, path: &str, headers: &http::HeaderMap) -> Result<(), tonic::Status> {
    let Some(need) = required(path) else {
        return Ok(());
    };
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| {
            tonic::Status::unauthenticated(
                "authorization: expected `Bearer TOKEN` (this node requires a token)",
            )
        })?;
    let role = tokens
        .role_of(token)
        .ok_or_else(|| tonic::Status::unauthenticated("authorization: unknown token"))?;
    if role.allows(need) {
        Ok(())
    } else {
        Err(tonic::Status::permission_denied(format!(
            "a {} token may not call {path} (it needs {})",
            role.name(),
            need.name()
        )))
    }
}

/// The authentication gate: with no tokens configured, every call passes.
#[derive(Clone)]
pub struct Auth {
    pub tokens: Option<Arc<Tokens>>,
    pub metrics: Arc<Metrics>,
}

impl Gate for Auth {
    fn check<B>(&self, request: &http::Request<B>) -> Result<(), tonic::Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        check(tokens, request.uri().path(), request.headers()).inspect_err(|status| {
            self.metrics.refused_auth(status.code());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-0123456789abcdef0123456789abcdef";
    const WRITER: &str = "writer-0123456789abcdef0123456789abcdef";
    const READER: &str = "reader-0123456789abcdef0123456789abcdef";
    const PEER: &str = "peer-0123456789abcdef0123456789abcdef01";

    fn tokens() -> Tokens {
        Tokens::parse(&format!(
            "# roles\n{ADMIN} admin\n\n{WRITER} writer  # the app\n{READER} reader\n{PEER} peer\n"
        ))
        .unwrap()
    }

    fn call(token: Option<&str>, path: &str) -> Result<(), tonic::Code> {
        let mut headers = http::HeaderMap::new();
        if let Some(token) = token {
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            );
        }
        check(&tokens(), path, &headers).map_err(|s| s.code())
    }

    #[test]
    fn each_role_reaches_exactly_its_methods() {
        use tonic::Code::{PermissionDenied, Unauthenticated};
        let store = "/clockwise.hashring.v1.HashRing/StoreKey";
        let locate = "/clockwise.hashring.v1.HashRing/LocateKey";
        let add_member = "/clockwise.cluster.v1.Cluster/AddMember";
        let raft = "/clockwise.raft.v1.RaftTransport/Send";
        let backup = "/clockwise.chatrouter.v1.ChatRouter/Backup";
        assert_eq!(call(Some(READER), locate), Ok(()));
        assert_eq!(call(Some(READER), store), Err(PermissionDenied));
        assert_eq!(call(Some(WRITER), store), Ok(()));
        assert_eq!(call(Some(WRITER), backup), Err(PermissionDenied));
        assert_eq!(call(Some(ADMIN), backup), Ok(()));
        assert_eq!(call(Some(ADMIN), add_member), Ok(()));
        assert_eq!(call(Some(ADMIN), raft), Err(PermissionDenied));
        assert_eq!(call(Some(PEER), raft), Ok(()));
        let raft_stream = "/clockwise.raft.v1.RaftTransport/Stream";
        assert_eq!(call(Some(PEER), raft_stream), Ok(()));
        assert_eq!(call(Some(WRITER), raft_stream), Err(PermissionDenied));
        assert_eq!(call(Some(PEER), locate), Err(PermissionDenied));
        assert_eq!(call(None, locate), Err(Unauthenticated));
        assert_eq!(
            call(Some("not-a-token-but-long-enough-0123456789"), locate),
            Err(Unauthenticated)
        );
        assert_eq!(call(None, "/grpc.health.v1.Health/Check"), Ok(()));
        // A watch reads: a reader token, not none.
        for watch in [
            "/clockwise.hashring.v1.HashRing/Watch",
            "/clockwise.chatrouter.v1.ChatRouter/Watch",
        ] {
            assert_eq!(call(Some(READER), watch), Ok(()));
            assert_eq!(call(None, watch), Err(Unauthenticated));
        }
        // An unknown method needs admin.
        assert_eq!(
            call(Some(WRITER), "/clockwise.hashring.v1.HashRing/Drop"),
            Err(PermissionDenied)
        );
    }

    #[test]
    fn refusals_never_echo_the_token() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {READER}").parse().unwrap(),
        );
        let status = check(
            &tokens(),
            "/clockwise.cluster.v1.Cluster/Snapshot",
            &headers,
        )
        .unwrap_err();
        assert!(!status.message().contains(READER), "{}", status.message());
        let wrong = "wrong-0123456789abcdef0123456789abcdef";
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {wrong}").parse().unwrap(),
        );
        let status =
            check(&tokens(), "/clockwise.cluster.v1.Cluster/Status", &headers).unwrap_err();
        assert!(!status.message().contains(wrong), "{}", status.message());
        assert!(!format!("{:?}", tokens()).contains(ADMIN));
    }

    #[test]
    fn a_malformed_token_file_names_the_line_not_the_token() {
        let short = Tokens::parse("abc admin").unwrap_err().to_string();
        assert!(
            short.contains("line 1") && !short.contains("abc "),
            "{short}"
        );
        let role = Tokens::parse(&format!("{ADMIN} root"))
            .unwrap_err()
            .to_string();
        assert!(role.contains("line 1") && !role.contains(ADMIN), "{role}");
        let twice = Tokens::parse(&format!("{ADMIN} admin\n{ADMIN} reader")).unwrap_err();
        assert!(twice.to_string().contains("line 2"), "{twice}");
        assert!(matches!(
            Tokens::parse("# nothing\n\n"),
            Err(TokenFileError::Empty)
        ));
        assert_eq!(tokens().peer_token(), Some(PEER));
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_others_may_read_is_refused_naming_file_mode_and_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("clockwise-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, format!("{ADMIN} admin\n{PEER} peer\n")).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let refused = Tokens::load(&path).unwrap_err();
            assert!(matches!(refused, TokenFileError::OpenToOthers { .. }));
            let message = refused.to_string();
            assert!(
                message.contains(&path.display().to_string())
                    && message.contains(&format!("{mode:04o}"))
                    && message.contains("chmod 600"),
                "{message}"
            );
            assert!(!message.contains(ADMIN), "{message}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(Tokens::load(&path).unwrap().peer_token(), Some(PEER));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_rpc_served_is_classified_explicitly() {
        use prost::Message as _;
        let set =
            prost_types::FileDescriptorSet::decode(clockwise_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut checked = 0;
        for file in &set.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    let path = format!("/{name}/{}", method.name());
                    assert!(
                        classify(&path).is_some(),
                        "{path} has no role: add it to classify()"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 50, "only {checked} RPCs seen");
    }
}
