//! The gRPC methods a node knows, for the `method` label: every method of the
//! descriptor sets the node serves from (its own, health, reflection), so the label
//! takes a bounded set of values; any other path is `unknown`.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use prost::Message as _;

/// The `method` label of a call to a path no known service has.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Every `/package.Service/Method` path of the descriptor sets (decoded once).
fn known() -> &'static BTreeSet<String> {
    static KNOWN: OnceLock<BTreeSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let sets = [
            clockwise_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut paths = BTreeSet::new();
        for set in sets {
            // Built into the binary: a set that does not decode is a build bug, and
            // its methods would only all show as `unknown`.
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
                continue;
            };
            for file in &set.file {
                let package = file.package();
                for service in &file.service {
                    for method in &service.method {
                        paths.insert(format!("/{package}.{}/{}", service.name(), method.name()));
                    }
                }
            }
        }
        paths
    })
}

/// The `method` label of a call to `path`: the path itself when a known service has
/// it, else [`UNKNOWN_METHOD`].
pub fn label(path: &str) -> &'static str {
    match known().get(path) {
        Some(known) => known.as_str(),
        None => UNKNOWN_METHOD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_methods_keep_their_path_and_anything_else_is_unknown() {
        for path in [
            "/clockwise.hashring.v1.HashRing/StoreKey",
            "/clockwise.cluster.v1.Cluster/Status",
            "/clockwise.raft.v1.RaftTransport/Send",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(label(path), path);
        }
        for path in [
            "/a\"b/c",
            "/x\\y",
            "/clockwise.hashring.v1.HashRing/Nope",
            "",
        ] {
            assert_eq!(label(path), UNKNOWN_METHOD);
        }
    }
}
