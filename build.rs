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

    enable_avx512_kernels();
    Ok(())
}

/// Sets `cfg(avx512_kernels)` when the compiler accepts the AVX-512 target
/// features (stable since Rust 1.89), so that the layer kernels can offer an
/// AVX-512 copy and still build with the crate's minimum Rust version.
fn enable_avx512_kernels() {
    println!("cargo:rustc-check-cfg=cfg(avx512_kernels)");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let Ok(output) = std::process::Command::new(rustc).arg("--version").output() else {
        return;
    };
    // The output reads `rustc 1.95.0 (59807616e 2026-04-14)`.
    let version = String::from_utf8_lossy(&output.stdout);
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if (major, minor) >= (1, 89) {
        println!("cargo:rustc-cfg=avx512_kernels");
    }
}
