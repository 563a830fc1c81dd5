//! Compiles the registry's lookup service (client side only) from the
//! repository's `proto/` with protox (no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(["vpnregistry/v1/lookup_service.proto"], ["../proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .include_file("protos.rs")
        .compile_fds(fds)?;
    Ok(())
}
