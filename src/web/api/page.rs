//! The API reference as a page, rendered on the server from the
//! descriptors (no script, nothing fetched from elsewhere): services and
//! their methods with the JSON path, then every message and enum with the
//! proto comments.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use prost_reflect::{Kind, MessageDescriptor, MethodDescriptor};

use super::comments;
use crate::protocols::schema;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#111;line-height:1.5}
header{background:#0b3d2e;color:#fff;padding:1rem}header a{color:#fff}
main{padding:1rem;max-width:72rem;margin:auto}
code{background:#f3f4f6;padding:0 .2rem;overflow-wrap:anywhere}
pre{background:#f3f4f6;padding:.75rem;white-space:pre-wrap;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ccc;padding:.4rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
.method{border-left:4px solid #0b3d2e;padding-left:1rem;margin:1.5rem 0}
.deprecated{color:#b91c1c;font-weight:600}
:focus{outline:3px solid #d97706}
@media (max-width:40rem){table,thead,tbody,tr,th,td{display:block}thead{display:none}td{border:none}tr{border-bottom:1px solid #ccc;padding:.4rem 0}}
";

/// The packages whose types the reference lists.
fn ours(full_name: &str) -> bool {
    full_name.starts_with("vpnregistry.") || full_name.starts_with("google.type.")
}

/// The whole page.
pub fn render() -> Markup {
    let pool = schema::pool();
    let services: Vec<_> = pool
        .services()
        .filter(|s| s.package_name() == "vpnregistry.v1")
        .collect();
    let messages: Vec<_> = pool
        .all_messages()
        .filter(|m| ours(m.full_name()) && !m.is_map_entry())
        .collect();
    let enums: Vec<_> = pool.all_enums().filter(|e| ours(e.full_name())).collect();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "API reference · VPN registry" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { strong { "National VPN registry" } " · API reference (v1)" }
                main {
                    h1 { "API reference" }
                    (introduction())
                    h2 { "Services" }
                    @for service in &services {
                        section {
                            h3 id=(service.full_name()) { (service.name()) }
                            (prose(&comments::of_service(service)))
                            @for method in service.methods() { (method_entry(&method)) }
                        }
                    }
                    h2 { "Messages" }
                    @for message in &messages { (message_entry(message)) }
                    h2 { "Enums" }
                    @for e in &enums {
                        section {
                            h3 id=(e.full_name()) { (e.full_name()) }
                            (prose(&comments::of_enum(e)))
                            ul { @for v in e.values() { li { code { (v.name()) } } } }
                        }
                    }
                }
            }
        }
    }
}

/// A comment's paragraphs (its lines were wrapped for the .proto file).
fn prose(comment: &str) -> Markup {
    html! { @for paragraph in comment.split("\n\n") { p { (joined(paragraph)) } } }
}

/// A comment's lines as one.
fn joined(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn introduction() -> Markup {
    html! {
        p {
            "Every RPC is served on one port over gRPC, gRPC-Web and, for unary calls, JSON over HTTP "
            "(the Connect protocol). A JSON call is a POST to the method's path with the request in "
            "proto3's JSON mapping and a bearer token:"
        }
        pre { code { "curl -H 'Authorization: Bearer $TOKEN' -H 'Content-Type: application/json' \\\n     -d '{\"id\": \"...\"}' https://registry.example/vpnregistry.v1.RegistrationService/GetRegistration" } }
        p {
            "Errors are Connect error objects: " code { "{\"code\": \"invalid_argument\", \"message\": ..., \"details\": [...]}" }
            ", each detail with a readable " code { "debug" } " rendering (field violations name the field, "
            code { "registration.source_prefixes[0]" } "). Rate limits answer 429 with " code { "Retry-After" } "."
        }
        h2 { "Downloads" }
        ul {
            li { a href="/api/openapi.json" { "openapi.json" } " — OpenAPI 3.1 of the JSON endpoint" }
            li { a href="/api/vpnregistry.binpb" { "vpnregistry.binpb" } " — the descriptor set (imports included), for code generators and tools" }
            @for (path, _) in crate::pb::PROTO_SOURCES {
                li { a href={ "/api/proto/" (path) } { (path) } }
            }
        }
    }
}

fn method_entry(method: &MethodDescriptor) -> Markup {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let streams = method.is_client_streaming() || method.is_server_streaming();
    let deprecated = schema::is_deprecated(method);
    html! {
        div class="method" id=(path.trim_start_matches('/')) {
            h4 { (method.name()) @if deprecated { " " span class="deprecated" { "deprecated" } } }
            @if streams {
                p { "Streams: gRPC and gRPC-Web only. " code { (path) } }
            } @else {
                p { code { "POST " (path) } }
            }
            p {
                "Request " (type_link(&method.input()))
                @if method.is_client_streaming() { " (a stream)" }
                " → response " (type_link(&method.output()))
                @if method.is_server_streaming() { " (a stream)" }
            }
            (prose(&comments::of_method(method)))
        }
    }
}

fn type_link(message: &MessageDescriptor) -> Markup {
    html! {
        @if ours(message.full_name()) {
            a href={ "#" (message.full_name()) } { code { (message.name()) } }
        } @else {
            code { (message.full_name()) }
        }
    }
}

fn message_entry(message: &MessageDescriptor) -> Markup {
    html! {
        section {
            h3 id=(message.full_name()) { (message.full_name()) }
            (prose(&comments::of_message(message)))
            @if message.fields().len() > 0 {
                table {
                    thead { tr { th { "Field (JSON)" } th { "Type" } th { "Description" } } }
                    tbody {
                        @for field in message.fields() {
                            tr {
                                td { code { (field.json_name()) } }
                                td { (field_type(&field)) }
                                td {
                                    @if schema::is_deprecated_field(&field) {
                                        span class="deprecated" { "Deprecated. " }
                                    }
                                    (joined(&comments::of_field(&field)))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn field_type(field: &prost_reflect::FieldDescriptor) -> Markup {
    let single = |kind: Kind| -> Markup {
        match kind {
            Kind::Message(m) => type_link(&m),
            Kind::Enum(e) if ours(e.full_name()) => html! { a href={ "#" (e.full_name()) } { code { (e.name()) } } },
            Kind::Enum(e) => html! { code { (e.full_name()) } },
            other => html! { code { (format!("{other:?}").to_lowercase()) } },
        }
    };
    html! {
        @if field.is_map() {
            @if let Kind::Message(entry) = field.kind() {
                "map of " (single(entry.map_entry_key_field().kind())) " to " (single(entry.map_entry_value_field().kind()))
            }
        } @else if field.is_list() {
            "list of " (single(field.kind()))
        } @else {
            (single(field.kind()))
        }
    }
}
