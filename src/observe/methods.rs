//! Every RPC this server answers, read once from the descriptor sets it
//! serves: metrics and access logs label calls by service, method and
//! streaming type, and paths that name no method share one "unknown" entry,
//! the table's last (a client cannot grow the label set).

use std::{collections::HashMap, sync::LazyLock};

use prost::Message as _;

/// How a method streams, named as grpc-prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ClientStream => "client_stream",
            Self::ServerStream => "server_stream",
            Self::BidiStream => "bidi_stream",
        }
    }
}

/// One RPC.
#[derive(Debug)]
pub struct Method {
    pub path: &'static str,
    pub service: &'static str,
    pub name: &'static str,
    pub kind: Kind,
}

impl Method {
    /// Lookups (the hot path) are logged at debug level and summarised.
    pub fn is_lookup(&self) -> bool {
        self.service == "vpnregistry.v1.LookupService"
    }

    /// Health checks and reflection: infrastructure, not API use.
    pub fn is_infrastructure(&self) -> bool {
        self.service.starts_with("grpc.")
    }

    /// False for the entry standing for every path that names no method.
    pub fn is_known(&self) -> bool {
        !self.path.is_empty()
    }

    /// Logged one by one at debug only: lookups (summarised instead),
    /// infrastructure, and paths that name no method.
    pub fn is_quiet(&self) -> bool {
        self.is_lookup() || self.is_infrastructure() || !self.is_known()
    }
}

struct Table {
    methods: Vec<Method>,
    by_path: HashMap<&'static str, usize>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let sets = [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut methods = Vec::new();
    for set in sets {
        let set = prost_types::FileDescriptorSet::decode(set).expect("embedded descriptor sets decode");
        for file in &set.file {
            for service in &file.service {
                let full = leak(format!("{}.{}", file.package(), service.name()));
                for m in &service.method {
                    let kind = match (m.client_streaming(), m.server_streaming()) {
                        (false, false) => Kind::Unary,
                        (true, false) => Kind::ClientStream,
                        (false, true) => Kind::ServerStream,
                        (true, true) => Kind::BidiStream,
                    };
                    methods.push(Method {
                        path: leak(format!("/{full}/{}", m.name())),
                        service: full,
                        name: leak(m.name().to_owned()),
                        kind,
                    });
                }
            }
        }
    }
    let by_path = methods.iter().enumerate().map(|(i, m)| (m.path, i)).collect();
    methods.push(Method {
        path: "",
        service: "unknown",
        name: "unknown",
        kind: Kind::Unary,
    });
    Table { methods, by_path }
});

/// Every method in a fixed order, the unknown one last.
pub fn all() -> &'static [Method] {
    &TABLE.methods
}

/// Where the method at `path` is in [`all`] (the unknown one's place when
/// `path` names none): the one lookup a call makes.
pub fn index(path: &str) -> usize {
    TABLE.by_path.get(path).copied().unwrap_or(TABLE.methods.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(path: &str) -> &'static Method {
        &all()[index(path)]
    }

    #[test]
    fn every_served_method_is_known_with_its_streaming_type() {
        let check = find("/vpnregistry.v1.LookupService/CheckAddress");
        assert_eq!(
            (check.service, check.name, check.kind),
            ("vpnregistry.v1.LookupService", "CheckAddress", Kind::Unary)
        );
        assert_eq!(
            find("/vpnregistry.v1.LookupService/WatchChanges").kind,
            Kind::ServerStream
        );
        assert_eq!(find("/grpc.health.v1.Health/Watch").kind, Kind::ServerStream);
        assert_eq!(
            find("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo").kind,
            Kind::BidiStream
        );
        assert!(!find("/no.Such/Method").is_known());
        for (path, _) in crate::auth::permissions::rows() {
            assert!(find(path).is_known(), "{path} missing");
        }
    }
}
