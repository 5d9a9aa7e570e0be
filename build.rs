//! Compiles `proto/caffe.proto` with protox (no system protoc), generates the
//! prost types from the descriptor set and keeps the encoded descriptor set in
//! `OUT_DIR` so that prost-reflect can parse prototxt text at run time.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // prost-build prints no rerun-if-changed lines of its own.
    println!("cargo:rerun-if-changed=proto/caffe.proto");
    println!("cargo:rerun-if-changed=build.rs");

    let descriptor_set = protox::compile(["caffe.proto"], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("caffe_descriptor.bin"),
        descriptor_set.encode_to_vec(),
    )?;

    prost_build::Config::new().compile_fds(descriptor_set)?;
    Ok(())
}
