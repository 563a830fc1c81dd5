//! The OpenAPI 3.1 description of the JSON endpoint (the Connect protocol's
//! unary calls), generated from the descriptors the server serves: every
//! unary RPC, its request and response schemas in proto3's JSON mapping,
//! the proto comments as descriptions, the bearer scheme and the error
//! object. Nothing here is written by hand per RPC, so it cannot drift.

use std::collections::BTreeMap;

use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::comments;
use crate::protocols::schema;

/// Where schemas are referred to.
const SCHEMAS: &str = "#/components/schemas/";

/// The whole document.
pub fn document() -> Value {
    let mut methods: Vec<_> = schema::all_unary().collect();
    methods.sort_by_key(|(path, _)| *path);
    let mut schemas = Schemas::default();
    let mut paths = Map::new();
    let mut tags = BTreeMap::new();
    for (path, types) in methods {
        let service = types.method.parent_service();
        tags.entry(service.name().to_owned())
            .or_insert_with(|| comments::of_service(service));
        paths.insert(path.to_owned(), json!({ "post": operation(types, &mut schemas) }));
    }
    let mut components = schemas.into_components();
    components.insert("ConnectError".into(), connect_error());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "vpn-registry API",
            "version": "v1",
            "summary": "The national registry of VPNs: registration, review and lookup.",
            "description": INFO,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "This registry (the gRPC port serves JSON too)"}],
        "security": [{"bearer": []}],
        "tags": tags.into_iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
        "paths": paths,
        "components": shared_components(components),
    })
}

/// One RPC as a POST operation.
fn operation(types: &schema::Unary, schemas: &mut Schemas) -> Value {
    let method = &types.method;
    let service = method.parent_service();
    let description = comments::of_method(method);
    let summary = description
        .lines()
        .next()
        .unwrap_or(method.name())
        .trim_end_matches('.')
        .to_owned();
    let mut operation = json!({
        "operationId": format!("{}_{}", service.name(), method.name()),
        "tags": [service.name()],
        "summary": summary,
        "description": description,
        "parameters": [{"$ref": "#/components/parameters/ConnectProtocolVersion"}],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": schemas.reference(&types.input)}},
        },
        "responses": {
            "200": {
                "description": format!("The {} (proto3 JSON).", types.output.name()),
                "content": {"application/json": {"schema": schemas.reference(&types.output)}},
            },
            "4XX": {"$ref": "#/components/responses/Error"},
            "5XX": {"$ref": "#/components/responses/Error"},
        },
    });
    if schema::is_deprecated(method) {
        operation["deprecated"] = Value::Bool(true);
    }
    operation
}

/// The components every operation shares, around the message `schemas`.
fn shared_components(schemas: Map<String, Value>) -> Value {
    json!({
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key or token the registry issued: `Authorization: Bearer <token>`.",
            },
        },
        "parameters": {
            "ConnectProtocolVersion": {
                "name": "Connect-Protocol-Version",
                "in": "header",
                "required": false,
                "description": "The Connect protocol's version; Connect clients send 1. Optional for curl.",
                "schema": {"type": "string", "enum": ["1"]},
            },
        },
        "responses": {
            "Error": {
                "description": "A Connect error. The HTTP status follows the code (invalid_argument and failed_precondition 400, unauthenticated 401, permission_denied 403, not_found 404, already_exists and aborted 409, resource_exhausted 429 with Retry-After, unimplemented 501, unavailable 503).",
                "headers": {
                    "Retry-After": {
                        "description": "Seconds to wait before retrying (rate limits).",
                        "schema": {"type": "integer"},
                    },
                },
                "content": {"application/json": {"schema": {"$ref": format!("{SCHEMAS}ConnectError")}}},
            },
        },
        "schemas": schemas,
    })
}

const INFO: &str = "Every unary RPC of the registry's gRPC API, as JSON over HTTP (the Connect \
protocol): `POST /{package}.{Service}/{Method}` with `Content-Type: application/json` and the \
request message in proto3's JSON mapping; the answer is the response message, or a Connect \
error object. The same calls are served over gRPC and gRPC-Web on the same port, with the same \
authentication, permissions, rate limits and answers. Writes that create take a `requestId` \
(idempotency key); writes to an existing record take the `etag` it was read with.";

/// The Connect error object.
fn connect_error() -> Value {
    let codes = [
        "canceled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
    ];
    json!({
        "type": "object",
        "description": "Why a call failed: gRPC's status, as the Connect protocol carries it.",
        "required": ["code"],
        "properties": {
            "code": {"type": "string", "enum": codes, "description": "The gRPC status code, in snake case."},
            "message": {"type": "string", "description": "What went wrong, for people."},
            "details": {
                "type": "array",
                "description": "google.rpc error details: BadRequest (field violations, e.g. `registration.source_prefixes[0]`), PreconditionFailure, RetryInfo, ErrorInfo.",
                "items": {
                    "type": "object",
                    "required": ["type", "value"],
                    "properties": {
                        "type": {"type": "string", "description": "The detail's message type, e.g. google.rpc.BadRequest."},
                        "value": {"type": "string", "contentEncoding": "base64", "description": "The detail, protobuf-encoded."},
                        "debug": {"type": "object", "description": "The detail in proto3 JSON, for reading."},
                    },
                },
            },
        },
    })
}

/// The message and enum schemas referred to so far.
#[derive(Default)]
struct Schemas {
    done: BTreeMap<String, Value>,
}

impl Schemas {
    /// A reference to `message`'s schema (made, with what it refers to, on
    /// first use).
    fn reference(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(inline) = well_known(message.full_name()) {
            return inline;
        }
        let name = message.full_name().to_owned();
        if !self.done.contains_key(&name) {
            // Placed first: a message that refers to itself ends here.
            self.done.insert(name.clone(), Value::Null);
            let schema = self.message(message);
            self.done.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("{SCHEMAS}{name}") })
    }

    fn message(&mut self, message: &MessageDescriptor) -> Value {
        let mut properties = Map::new();
        for field in message.fields() {
            properties.insert(field.json_name().to_owned(), self.field(&field));
        }
        json!({
            "type": "object",
            "description": comments::of_message(message),
            "properties": properties,
            "additionalProperties": false,
        })
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        let mut schema = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("a map field's kind is its entry")
            };
            let value = entry.map_entry_value_field();
            json!({"type": "object", "additionalProperties": self.single(&value)})
        } else if field.is_list() {
            json!({"type": "array", "items": self.single(field)})
        } else {
            self.single(field)
        };
        let description = comments::of_field(field);
        let deprecated = schema::is_deprecated_field(field);
        if let Value::Object(map) = &mut schema {
            // A $ref with siblings is allowed in 3.1.
            if !description.is_empty() {
                map.insert("description".into(), description.into());
            }
            if deprecated {
                map.insert("deprecated".into(), true.into());
            }
        }
        schema
    }

    /// The schema of one value of `field` (an item, for a list).
    fn single(&mut self, field: &FieldDescriptor) -> Value {
        match field.kind() {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({"type": "integer", "format": "int32"}),
            Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
            // 64-bit integers are strings in proto3 JSON (numbers are accepted).
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Message(message) => self.reference(&message),
            Kind::Enum(e) => self.enumeration(&e),
        }
    }

    fn enumeration(&mut self, e: &EnumDescriptor) -> Value {
        let name = e.full_name().to_owned();
        if !self.done.contains_key(&name) {
            let values: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
            let schema = json!({
                "type": "string",
                "enum": values,
                "description": comments::of_enum(e),
            });
            self.done.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("{SCHEMAS}{name}") })
    }

    fn into_components(self) -> Map<String, Value> {
        self.done.into_iter().collect()
    }
}

/// The well-known types proto3 JSON writes as something other than an
/// object.
fn well_known(name: &str) -> Option<Value> {
    Some(match name {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"}),
        "google.protobuf.FieldMask" => {
            json!({"type": "string", "description": "Field paths, comma-separated (lowerCamelCase)."})
        }
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.Struct" => json!({"type": "object"}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.StringValue" => json!({"type": "string"}),
        "google.protobuf.BoolValue" => json!({"type": "boolean"}),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => json!({"type": "integer"}),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => json!({"type": "string", "format": "int64"}),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => json!({"type": "number"}),
        "google.protobuf.BytesValue" => json!({"type": "string", "contentEncoding": "base64"}),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unary_rpc_is_a_path_with_its_schemas() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), schema::all_unary().count());
        let submit = &paths["/vpnregistry.v1.RegistrationService/SubmitRegistration"]["post"];
        assert_eq!(
            submit["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/vpnregistry.v1.SubmitRegistrationRequest"
        );
        let schemas = &doc["components"]["schemas"];
        let registration = &schemas["vpnregistry.v1.Registration"];
        assert!(registration["properties"]["sourcePrefixes"]["items"]["type"] == "string");
        assert!(!registration["description"].as_str().unwrap().is_empty());
        assert_eq!(
            schemas["vpnregistry.v1.SubmitRegistrationRequest"]["properties"]["validateOnly"]["type"],
            "boolean"
        );
        // Every reference resolves.
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                schemas.get(name).is_some_and(|s| !s.is_null()),
                "{name} is referred to but missing"
            );
        }
    }
}
