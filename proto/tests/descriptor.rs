//! Checks the public wire contract through what reflection serves:
//! `FILE_DESCRIPTOR_SET` must hold every package, service and RPC under the names
//! design.md fixes, the request/response conventions, and a doc comment on every
//! element (grpcurl `describe` shows them). Also pins the generated Rust paths
//! other crates import.

use std::collections::BTreeSet;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{FileDescriptorProto, FileDescriptorSet, ServiceDescriptorProto};

use clockwise_proto::FILE_DESCRIPTOR_SET;

const HASHRING_RPCS: &[&str] = &[
    "AddNode",
    "RemoveNode",
    "RouteKey",
    "GetNodeCount",
    "StoreKey",
    "ListNodes",
    "GetLoad",
    "TopLoaded",
    "AddNodeWithReplicas",
    "GetReplicaCount",
    "SetCapacity",
    "GetCapacity",
    "GetUsed",
    "EvictLru",
    "BatchOperations",
    "SyncReplicas",
    "LocateKey",
    "ConfigureRing",
    "Backup",
    "Restore",
    "MergeNodes",
    "GetMergedInto",
    "Watch",
];

const CHATROUTER_RPCS: &[&str] = &[
    "AddServer",
    "RemoveServer",
    "RouteRequest",
    "GetServerCount",
    "AssignRequest",
    "ListServers",
    "GetServerLoad",
    "TopServers",
    "AddServerWithReplicas",
    "GetReplicaCount",
    "SetMemoryLimit",
    "GetMemoryLimit",
    "GetMemoryUsed",
    "EvictOldestSession",
    "BatchRequests",
    "ReplicateSessions",
    "LocateRequest",
    "ConfigureRing",
    "Backup",
    "Restore",
    "MergeServers",
    "GetMergedInto",
    "Watch",
];

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

fn file<'a>(set: &'a FileDescriptorSet, package: &str) -> &'a FileDescriptorProto {
    set.file
        .iter()
        .find(|f| f.package() == package)
        .unwrap_or_else(|| panic!("package {package} missing from the descriptor set"))
}

fn service<'a>(
    set: &'a FileDescriptorSet,
    package: &str,
    name: &str,
) -> &'a ServiceDescriptorProto {
    file(set, package)
        .service
        .iter()
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("service {package}.{name} missing"))
}

fn rpc_names(service: &ServiceDescriptorProto) -> Vec<&str> {
    service.method.iter().map(|m| m.name()).collect()
}

#[test]
fn every_package_and_service_is_present() {
    let set = descriptor_set();
    let services: BTreeSet<String> = set
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect();
    let expected: BTreeSet<String> = [
        "clockwise.hashring.v1.HashRing",
        "clockwise.chatrouter.v1.ChatRouter",
        "clockwise.cluster.v1.Cluster",
        "clockwise.raft.v1.RaftTransport",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(services, expected);

    let common = file(&set, "clockwise.common.v1");
    let enums: Vec<&str> = common.enum_type.iter().map(|e| e.name()).collect();
    assert_eq!(enums, ["SyncMode", "PositionSpace"]);
}

#[test]
fn ring_services_have_exactly_the_contract_rpcs() {
    let set = descriptor_set();
    let hashring = service(&set, "clockwise.hashring.v1", "HashRing");
    assert_eq!(rpc_names(hashring), HASHRING_RPCS);
    let chatrouter = service(&set, "clockwise.chatrouter.v1", "ChatRouter");
    assert_eq!(rpc_names(chatrouter), CHATROUTER_RPCS);
}

#[test]
fn cluster_and_raft_rpcs() {
    let set = descriptor_set();
    let cluster = service(&set, "clockwise.cluster.v1", "Cluster");
    assert_eq!(
        rpc_names(cluster),
        [
            "Status",
            "AddMember",
            "RemoveMember",
            "TransferLeader",
            "Snapshot"
        ]
    );
    let raft = service(&set, "clockwise.raft.v1", "RaftTransport");
    assert_eq!(
        rpc_names(raft),
        [
            "Send",
            "Stream",
            "Forward",
            "SendSnapshot",
            "ChangeMembership"
        ]
    );
    let send = &raft.method[0];
    assert_eq!(send.input_type(), ".clockwise.raft.v1.RaftMessageBatch");
    assert_eq!(send.output_type(), ".clockwise.raft.v1.SendAck");
    assert!(!send.client_streaming() && !send.server_streaming());
    // The same batches, on one long-lived client stream.
    let stream = &raft.method[1];
    assert_eq!(stream.input_type(), ".clockwise.raft.v1.RaftMessageBatch");
    assert_eq!(stream.output_type(), ".clockwise.raft.v1.SendAck");
    assert!(stream.client_streaming() && !stream.server_streaming());
    // Snapshots arrive as a client stream of chunks.
    let snapshot = &raft.method[3];
    assert_eq!(snapshot.input_type(), ".clockwise.raft.v1.SnapshotChunk");
    assert!(snapshot.client_streaming() && !snapshot.server_streaming());
}

/// `<Rpc>Request` / `<Rpc>Response` in the service's own package, and every request
/// opens with `string ring = 1; int64 timestamp = 2;` (`Watch`, the one server stream:
/// `uint64 start_revision = 2;`).
#[test]
fn ring_messages_follow_the_naming_and_namespace_convention() {
    let set = descriptor_set();
    for (package, name) in [
        ("clockwise.hashring.v1", "HashRing"),
        ("clockwise.chatrouter.v1", "ChatRouter"),
    ] {
        let file = file(&set, package);
        for method in &service(&set, package, name).method {
            let rpc = method.name();
            assert_eq!(method.input_type(), format!(".{package}.{rpc}Request"));
            assert_eq!(method.output_type(), format!(".{package}.{rpc}Response"));

            let request = file
                .message_type
                .iter()
                .find(|m| m.name() == format!("{rpc}Request"))
                .unwrap_or_else(|| panic!("{package}.{rpc}Request missing"));
            let head: Vec<(&str, i32, Type)> = request
                .field
                .iter()
                .take(2)
                .map(|f| (f.name(), f.number(), f.r#type()))
                .collect();
            // A watch has no timestamp: it starts from a revision.
            let second = if method.server_streaming() {
                ("start_revision", 2, Type::Uint64)
            } else {
                ("timestamp", 2, Type::Int64)
            };
            assert_eq!(
                head,
                [("ring", 1, Type::String), second],
                "{package}.{rpc}Request must open with ring and timestamp (a stream: start_revision)"
            );
            assert_eq!(
                method.server_streaming(),
                rpc == "Watch",
                "{package}.{rpc}: only Watch streams"
            );
        }
    }
}

/// Field lookup by `Message.field` within one file.
fn field<'a>(
    file: &'a FileDescriptorProto,
    message: &str,
    field: &str,
) -> &'a prost_types::FieldDescriptorProto {
    file.message_type
        .iter()
        .find(|m| m.name() == message)
        .unwrap_or_else(|| panic!("message {message} missing"))
        .field
        .iter()
        .find(|f| f.name() == field)
        .unwrap_or_else(|| panic!("field {message}.{field} missing"))
}

#[test]
fn contract_fields_have_their_types() {
    let set = descriptor_set();
    let hr = file(&set, "clockwise.hashring.v1");
    let cr = file(&set, "clockwise.chatrouter.v1");

    assert_eq!(field(hr, "StoreKeyRequest", "ttl_ms").r#type(), Type::Int64);
    assert_eq!(
        field(cr, "AssignRequestRequest", "ttl_ms").r#type(),
        Type::Int64
    );
    assert_eq!(
        field(cr, "AssignRequestRequest", "size_mb").r#type(),
        Type::Int64
    );

    // `optional` answers: unset is the drill's None.
    for (file, message, name) in [
        (hr, "RouteKeyResponse", "node_id"),
        (hr, "StoreKeyResponse", "node_id"),
        (hr, "EvictLruResponse", "key"),
        (hr, "LocateKeyResponse", "expires_at"),
        (cr, "RouteRequestResponse", "server_name"),
        (cr, "AssignRequestResponse", "server_name"),
        (cr, "EvictOldestSessionResponse", "request_id"),
        (cr, "LocateRequestResponse", "expires_at"),
    ] {
        assert!(
            field(file, message, name).proto3_optional(),
            "{message}.{name} must be optional"
        );
    }

    // Batch results: a oneof named `value`.
    for (file, message) in [(hr, "KeyResult"), (cr, "RequestResult")] {
        let m = file
            .message_type
            .iter()
            .find(|m| m.name() == message)
            .unwrap();
        let oneofs: Vec<&str> = m.oneof_decl.iter().map(|o| o.name()).collect();
        assert_eq!(oneofs, ["value"], "{message}");
    }

    assert_eq!(
        field(hr, "SyncReplicasRequest", "mode").type_name(),
        ".clockwise.common.v1.SyncMode"
    );
    assert_eq!(
        field(cr, "ReplicateSessionsRequest", "mode").type_name(),
        ".clockwise.common.v1.SyncMode"
    );
    let results = field(hr, "SyncReplicasResponse", "results");
    assert_eq!(
        (results.r#type(), results.label()),
        (Type::Bool, Label::Repeated)
    );
    let transfers = field(cr, "ReplicateSessionsRequest", "transfers");
    assert_eq!(transfers.type_name(), ".clockwise.chatrouter.v1.Transfer");

    let common = file(&set, "clockwise.common.v1");
    let values: Vec<(&str, i32)> = common
        .enum_type
        .iter()
        .flat_map(|e| e.value.iter().map(|v| (v.name(), v.number())))
        .collect();
    assert_eq!(
        values,
        [("FAIL_FAST", 0), ("ALL_SLEEP", 1), ("DRILL", 0), ("U64", 1)]
    );
}

/// Source-info paths (descriptor.proto field numbers) of every element that must
/// carry a comment: messages, their fields and oneofs, enums and their values,
/// services and their methods.
fn documented_paths(file: &FileDescriptorProto) -> Vec<(Vec<i32>, String)> {
    const MESSAGE: i32 = 4;
    const ENUM: i32 = 5;
    const SERVICE: i32 = 6;
    const FIELD: i32 = 2;
    const ONEOF: i32 = 8;
    const VALUE: i32 = 2;
    const METHOD: i32 = 2;

    let mut paths = Vec::new();
    for (i, m) in file.message_type.iter().enumerate() {
        let i = i as i32;
        paths.push((vec![MESSAGE, i], m.name().to_owned()));
        for (j, f) in m.field.iter().enumerate() {
            paths.push((
                vec![MESSAGE, i, FIELD, j as i32],
                format!("{}.{}", m.name(), f.name()),
            ));
        }
        for (j, o) in m.oneof_decl.iter().enumerate() {
            // proto3 `optional` fields get a synthetic oneof nobody wrote.
            if o.name().starts_with('_') {
                continue;
            }
            paths.push((
                vec![MESSAGE, i, ONEOF, j as i32],
                format!("{}.{}", m.name(), o.name()),
            ));
        }
    }
    for (i, e) in file.enum_type.iter().enumerate() {
        let i = i as i32;
        paths.push((vec![ENUM, i], e.name().to_owned()));
        for (j, v) in e.value.iter().enumerate() {
            paths.push((vec![ENUM, i, VALUE, j as i32], v.name().to_owned()));
        }
    }
    for (i, s) in file.service.iter().enumerate() {
        let i = i as i32;
        paths.push((vec![SERVICE, i], s.name().to_owned()));
        for (j, m) in s.method.iter().enumerate() {
            paths.push((
                vec![SERVICE, i, METHOD, j as i32],
                format!("{}.{}", s.name(), m.name()),
            ));
        }
    }
    paths
}

#[test]
fn every_element_carries_a_comment_for_describe() {
    let set = descriptor_set();
    let mut undocumented = Vec::new();
    for file in &set.file {
        let info = file
            .source_code_info
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no source info", file.name()));
        for (path, what) in documented_paths(file) {
            let documented = info.location.iter().any(|l| {
                l.path == path
                    && l.leading_comments
                        .as_deref()
                        .is_some_and(|c| !c.trim().is_empty())
            });
            if !documented {
                undocumented.push(format!("{}: {what}", file.package()));
            }
        }
    }
    assert!(undocumented.is_empty(), "no comment on: {undocumented:#?}");
}

/// The Rust paths other crates import; this test fails to compile if they move.
#[test]
fn generated_rust_paths() {
    use clockwise_proto::chatrouter::v1::{chat_router_client, chat_router_server, request_result};
    use clockwise_proto::cluster::v1::{cluster_client, cluster_server, Role};
    use clockwise_proto::common::v1::{PositionSpace, SyncMode};
    use clockwise_proto::hashring::v1::{hash_ring_client, hash_ring_server, key_result};
    use clockwise_proto::raft::v1::{raft_transport_client, raft_transport_server};

    fn is_service_trait<T: ?Sized>() {}
    // Services with a server stream (an associated type) are named rather than made
    // `dyn`.
    #[allow(unused_imports)]
    use chat_router_server::ChatRouter as _;
    #[allow(unused_imports)]
    use cluster_server::Cluster as _;
    #[allow(unused_imports)]
    use hash_ring_server::HashRing as _;
    is_service_trait::<dyn raft_transport_server::RaftTransport>();
    is_service_trait::<hash_ring_client::HashRingClient<tonic::transport::Channel>>();
    is_service_trait::<chat_router_client::ChatRouterClient<tonic::transport::Channel>>();
    is_service_trait::<cluster_client::ClusterClient<tonic::transport::Channel>>();
    is_service_trait::<raft_transport_client::RaftTransportClient<tonic::transport::Channel>>();

    assert_eq!(SyncMode::default(), SyncMode::FailFast);
    assert_eq!(SyncMode::try_from(1), Ok(SyncMode::AllSleep));
    assert_eq!(PositionSpace::default(), PositionSpace::Drill);
    assert_eq!(PositionSpace::U64 as i32, 1);
    assert_eq!(Role::Leader as i32, 1);
    assert_eq!(Role::Learner.as_str_name(), "ROLE_LEARNER");

    // A batch result round-trips with the oneof intact; unset stays unset.
    let results = clockwise_proto::hashring::v1::BatchOperationsResponse {
        results: vec![
            clockwise_proto::hashring::v1::KeyResult {
                value: Some(key_result::Value::NodeId("node_a".into())),
            },
            clockwise_proto::hashring::v1::KeyResult {
                value: Some(key_result::Value::Ok(false)),
            },
            clockwise_proto::hashring::v1::KeyResult { value: None },
        ],
    };
    let decoded =
        clockwise_proto::hashring::v1::BatchOperationsResponse::decode(&*results.encode_to_vec())
            .unwrap();
    assert_eq!(decoded, results);

    let chat = clockwise_proto::chatrouter::v1::RequestResult {
        value: Some(request_result::Value::ServerName("srv_a".into())),
    };
    assert_eq!(
        clockwise_proto::chatrouter::v1::RequestResult::decode(&*chat.encode_to_vec()).unwrap(),
        chat
    );
}
