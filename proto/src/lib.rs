//! clockwise's wire contract: the code tonic and prost generate from the `.proto`
//! files under `proto/`, and the descriptor set that gRPC reflection serves.
//!
//! # Layout
//!
//! * [`common::v1`]: enums shared by both ring services (`SyncMode`, `PositionSpace`).
//! * [`hashring::v1`]: service `clockwise.hashring.v1.HashRing`, the HashRing drill
//!   (server trait `hash_ring_server::HashRing`, client `hash_ring_client::HashRingClient`).
//! * [`chatrouter::v1`]: service `clockwise.chatrouter.v1.ChatRouter`, the ChatRouter
//!   drill (`chat_router_server::ChatRouter`, `chat_router_client::ChatRouterClient`).
//! * [`cluster::v1`]: service `clockwise.cluster.v1.Cluster`, Raft status and membership
//!   (`cluster_server::Cluster`, `cluster_client::ClusterClient`).
//! * [`raft::v1`]: service `clockwise.raft.v1.RaftTransport`, the peer-only Raft
//!   transport (`raft_transport_server::RaftTransport`,
//!   `raft_transport_client::RaftTransportClient`).
//! * [`command::v1`]: the replicated log's entry format (`Command`); never served.
//! * [`FILE_DESCRIPTOR_SET`]: every file above, with comments, for reflection.
//!
//! Each module mirrors its proto package; cross-package references resolve through
//! `super::super::…`, so the nesting must stay one level per package segment after
//! `clockwise`.

/// Package `clockwise.common.v1`.
pub mod common {
    /// Enums shared by the HashRing and ChatRouter services.
    pub mod v1 {
        tonic::include_proto!("clockwise.common.v1");
    }
}

/// Package `clockwise.hashring.v1`.
pub mod hashring {
    /// The HashRing drill service and its messages.
    pub mod v1 {
        tonic::include_proto!("clockwise.hashring.v1");
    }
}

/// Package `clockwise.chatrouter.v1`.
pub mod chatrouter {
    /// The ChatRouter drill service and its messages.
    pub mod v1 {
        tonic::include_proto!("clockwise.chatrouter.v1");
    }
}

/// Package `clockwise.cluster.v1`.
pub mod cluster {
    /// Raft group status and membership, for operators.
    pub mod v1 {
        tonic::include_proto!("clockwise.cluster.v1");
    }
}

/// Package `clockwise.raft.v1`.
pub mod raft {
    /// Peer-to-peer Raft message transport and write forwarding. Never expose it to
    /// clients.
    pub mod v1 {
        tonic::include_proto!("clockwise.raft.v1");
    }
}

/// Package `clockwise.command.v1`.
pub mod command {
    /// The replicated log's entries: one `Command` per mutating RPC. Internal.
    pub mod v1 {
        tonic::include_proto!("clockwise.command.v1");
    }
}

/// Encoded `google.protobuf.FileDescriptorSet` of every clockwise `.proto` file,
/// with source comments, for `tonic_reflection`'s `register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("clockwise_descriptor");
