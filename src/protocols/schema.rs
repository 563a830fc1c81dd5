//! The API's schema at run time, read once from the descriptor sets the
//! server already serves by reflection: which paths are unary methods, and
//! proto3's canonical JSON mapping of their messages (and of the error
//! details we send), so JSON callers meet the same types as gRPC ones.

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};
use tonic::Status;

/// One unary method, with its request and response types at hand (the
/// transcoding path reads them on every call).
#[derive(Debug, Clone)]
pub struct Unary {
    pub method: MethodDescriptor,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
}

/// The descriptors, and the unary methods by path.
struct Schema {
    pool: DescriptorPool,
    unary: HashMap<String, Unary>,
    /// Paths of methods that stream (served over gRPC and gRPC-Web only).
    streaming: HashSet<String>,
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let mut pool = DescriptorPool::new();
    for set in [crate::pb::FILE_DESCRIPTOR_SET, tonic_types::pb::FILE_DESCRIPTOR_SET] {
        let set = prost_types::FileDescriptorSet::decode(set).expect("embedded descriptor sets decode");
        // Files both sets hold (google/protobuf/*) are added once.
        let files: Vec<_> = set
            .file
            .into_iter()
            .filter(|f| pool.get_file_by_name(f.name()).is_none())
            .collect();
        pool.add_file_descriptor_protos(files)
            .expect("embedded descriptor sets are consistent");
    }
    let mut unary = HashMap::new();
    let mut streaming = HashSet::new();
    for service in pool.services().filter(|s| s.package_name() == "vpnregistry.v1") {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            if method.is_client_streaming() || method.is_server_streaming() {
                streaming.insert(path);
            } else {
                let types = Unary {
                    input: method.input(),
                    output: method.output(),
                    method,
                };
                unary.insert(path, types);
            }
        }
    }
    Schema { pool, unary, streaming }
});

/// The unary method at `path`, if it is one.
pub fn unary(path: &str) -> Option<&'static Unary> {
    SCHEMA.unary.get(path)
}

/// Whether `path` names a streaming method.
pub fn is_streaming(path: &str) -> bool {
    SCHEMA.streaming.contains(path)
}

/// Every unary method: its path and types (for the API reference).
pub fn all_unary() -> impl Iterator<Item = (&'static str, &'static Unary)> {
    SCHEMA.unary.iter().map(|(path, types)| (path.as_str(), types))
}

/// The descriptors (for the API reference).
pub fn pool() -> &'static DescriptorPool {
    &SCHEMA.pool
}

/// Whether the .proto marks `method` deprecated.
pub fn is_deprecated(method: &MethodDescriptor) -> bool {
    method
        .method_descriptor_proto()
        .options
        .as_ref()
        .and_then(|o| o.deprecated)
        == Some(true)
}

/// Whether the .proto marks `field` deprecated.
pub fn is_deprecated_field(field: &FieldDescriptor) -> bool {
    field
        .field_descriptor_proto()
        .options
        .as_ref()
        .and_then(|o| o.deprecated)
        == Some(true)
}

/// A JSON request body as the protobuf message the handlers decode.
/// Unknown fields are refused (a misspelt field would otherwise be dropped
/// without a word); the error names the line and column.
pub fn json_to_proto(input: &MessageDescriptor, json: &[u8]) -> Result<Vec<u8>, Status> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let message =
        DynamicMessage::deserialize_with_options(input.clone(), &mut deserializer, &DeserializeOptions::new())
            .and_then(|m| deserializer.end().map(|()| m))
            .map_err(|e| {
                Status::invalid_argument(format!(
                    "the body is not a JSON {} (proto3 JSON mapping): {e}",
                    input.full_name()
                ))
            })?;
    Ok(message.encode_to_vec())
}

/// A protobuf response as canonical JSON (lowerCamelCase names, defaults
/// left out, 64-bit integers as strings, enums by name).
pub fn proto_to_json(output: &MessageDescriptor, proto: &[u8]) -> Result<Vec<u8>, Status> {
    let message = DynamicMessage::decode(output.clone(), proto)
        .map_err(|e| Status::internal(format!("response does not decode as {}: {e}", output.full_name())))?;
    let mut json = serde_json::Serializer::new(Vec::with_capacity(proto.len() * 2));
    message
        .serialize_with_options(&mut json, &SerializeOptions::new())
        .map_err(|e| Status::internal(format!("response does not render as JSON: {e}")))?;
    Ok(json.into_inner())
}

/// An error detail (`google.rpc.BadRequest`, ...) as JSON, for people
/// reading errors with curl; `None` for a type the schema does not hold.
pub fn detail_as_json(type_name: &str, value: &[u8]) -> Option<serde_json::Value> {
    let descriptor = SCHEMA.pool.get_message_by_name(type_name)?;
    let message = DynamicMessage::decode(descriptor, value).ok()?;
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unary_and_streaming_methods_are_told_apart() {
        assert!(unary("/vpnregistry.v1.RegistrationService/SubmitRegistration").is_some());
        assert!(unary("/vpnregistry.v1.LookupService/CheckAddress").is_some());
        assert!(unary("/vpnregistry.v1.LookupService/WatchChanges").is_none());
        assert!(is_streaming("/vpnregistry.v1.LookupService/WatchChanges"));
        assert!(unary("/vpnregistry.v1.Nothing/Here").is_none());
        assert!(!is_streaming("/vpnregistry.v1.Nothing/Here"));
    }

    #[test]
    fn json_round_trips_through_protobuf_in_canonical_form() {
        let types = unary("/vpnregistry.v1.LookupService/CheckAddress").unwrap();
        let proto = json_to_proto(&types.input, br#"{"address": "192.0.2.1"}"#).unwrap();
        let json = proto_to_json(&types.input, &proto).unwrap();
        assert_eq!(json, br#"{"address":"192.0.2.1"}"#);
    }

    #[test]
    fn unknown_fields_wrong_types_and_bad_utf8_are_the_callers_fault() {
        let types = unary("/vpnregistry.v1.LookupService/CheckAddress").unwrap();
        for body in [
            &br#"{"adress": "192.0.2.1"}"#[..],
            br#"{"address": 7}"#,
            b"{\"address\": \"\xff\xfe\"}",
            br#"{"address": "192.0.2.1"} trailing"#,
            b"",
        ] {
            let status = json_to_proto(&types.input, body).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{body:?}: {status:?}");
        }
    }

    #[test]
    fn error_details_render_as_json() {
        let detail = tonic_types::pb::BadRequest {
            field_violations: vec![tonic_types::pb::bad_request::FieldViolation {
                field: "registration.source_prefixes[0]".into(),
                description: "not a prefix".into(),
                ..Default::default()
            }],
        };
        let json = detail_as_json("google.rpc.BadRequest", &detail.encode_to_vec()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"fieldViolations": [{"field": "registration.source_prefixes[0]", "description": "not a prefix"}]})
        );
        assert!(detail_as_json("example.Unknown", b"").is_none());
    }
}
