//! Caffe 1.0's loss layers, forward and backward, on the CPU and on NVIDIA GPUs.
#![deny(missing_docs)]

pub mod binaryproto;
pub mod blob;
pub mod check;
pub mod device;
pub mod element;
pub mod error;
pub mod gpu;
pub mod gpu_net;
pub mod gradcheck;
pub mod layers;
pub mod net;
pub mod npy;
pub mod prototxt;

/// Types generated from `proto/caffe.proto` (package `caffe`).
pub mod caffe {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/caffe.rs"));
}

/// Encoded `FileDescriptorSet` of `proto/caffe.proto`, for text-format parsing.
pub const CAFFE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/caffe_descriptor.bin"));

pub use element::Element;
pub use error::{Error, ErrorKind, Result};
