//! Compiles `proto/` with protox (no protoc needed) into OUT_DIR, and writes the
//! encoded descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTOS: &[&str] = &[
    "vpnregistry/v1/institution.proto",
    "vpnregistry/v1/institution_service.proto",
    "vpnregistry/v1/registration.proto",
    "vpnregistry/v1/registration_service.proto",
    "vpnregistry/v1/review_service.proto",
    "vpnregistry/v1/isp_service.proto",
    "vpnregistry/v1/lookup_service.proto",
    "vpnregistry/v1/webhook_service.proto",
    "vpnregistry/v1/event_service.proto",
    "vpnregistry/v1/api_key_service.proto",
    "vpnregistry/v1/document_service.proto",
    "vpnregistry/v1/payment_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate!() embeds migrations/ at compile time.
    println!("cargo:rerun-if-changed=migrations");

    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("vpnregistry_descriptor.bin"), fds.encode_to_vec())?;
    // The .proto files as written, for the API reference's downloads.
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let mut sources =
        String::from("/// Every file under `proto/` (path, text).\npub const PROTO_SOURCES: &[(&str, &str)] = &[\n");
    for file in fds.file.iter().filter(|f| root.join(f.name()).is_file()) {
        let path = root.join(file.name());
        sources.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            file.name(),
            path.display().to_string()
        ));
    }
    sources.push_str("];\n");
    fs::write(out.join("proto_sources.rs"), sources)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .include_file("protos.rs")
        // Malformed requests answer INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::pb::codec::ProstCodec")
        // Encoded once per batch and shared by every watcher (src/pb/delta_batch.rs).
        .extern_path(".vpnregistry.v1.DeltaBatch", "crate::pb::delta_batch::DeltaBatch")
        .compile_fds(fds)?;
    Ok(())
}
