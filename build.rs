//! Compiles the protos with the pure-Rust `protox`, so no `protoc` is needed.
use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTOS: &[&str] = &["proto/contacts/v1/contacts.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    // The encoded set feeds server reflection (it includes the imported well-known types).
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("contacts_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .codec_path("crate::grpc::codec::ProtoCodec")
        .compile_fds(fds)?;
    Ok(())
}
