//! GPU path: CUDA kernels compiled at run time with NVRTC, and one launcher
//! per kernel pass.
//!
//! - [`probe`] checks whether CUDA is usable here, and [`Gpu`] holds a device's
//!   context, stream and compiled kernels.
//! - [`nvrtc`] lists the kernel files ([`KERNEL_FILES`]), compiles them to
//!   PTX with an on-disk cache, and reports PTX sizes ([`kernel_report`]).
//! - [`launch`] computes grids and workspaces from shapes, without a GPU.
//! - [`ops`] launches the kernels: one function per forward or backward pass
//!   of Softmax, SoftmaxWithLoss, InfogainLoss, Sigmoid,
//!   SigmoidCrossEntropyLoss, EuclideanLoss, HingeLoss,
//!   MultinomialLogisticLoss, ContrastiveLoss and Accuracy.
//!
//! Loss forwards return the raw sum of the loss terms and the number of
//! terms that counted ([`LossSum`]); the caller applies Caffe's normalizer.
//! The sum is reduced in a fixed order, so the same input on the same shape
//! gives the same bits on every run and every GPU.

pub mod device;
pub mod launch;
pub mod nvrtc;
pub mod ops;

use cudarc::driver::{DeviceRepr, ValidAsZeroBits};

use crate::element::Element;
use crate::error::Error;

pub use device::{probe, Gpu};
pub use launch::ShapeError;
pub use nvrtc::{compile_ptx, kernel_report, KernelFile, KernelReportRow, KERNEL_FILES};

/// Returns the file names cudarc tries when it loads library `name`
/// (`"cuda"`, `"nvrtc"`), without repeats, for error messages.
pub fn library_candidates(name: &str) -> String {
    let mut names: Vec<String> = Vec::new();
    for candidate in cudarc::get_lib_name_candidates(name) {
        if !names.contains(&candidate) {
            names.push(candidate);
        }
    }
    names.join(", ")
}

/// An element type the kernels are compiled for: f32, f64, f16 and bf16.
///
/// The accumulation type (f32, or f64 for f64) is also stored on the device,
/// in the per-row statistics some forwards keep for their backward.
pub trait GpuElement:
    Element<Acc: DeviceRepr + ValidAsZeroBits> + DeviceRepr + ValidAsZeroBits
{
}

impl GpuElement for f32 {}
impl GpuElement for f64 {}
impl GpuElement for half::f16 {}
impl GpuElement for half::bf16 {}

/// Names used in the errors of a GPU operation.
#[derive(Debug, Clone, Copy)]
pub struct LabelContext<'a> {
    /// Layer name, as in the prototxt.
    pub layer: &'a str,
    /// Layer type, for example `SoftmaxWithLoss`.
    pub layer_type: &'a str,
    /// The label blob, as `bottom[1] 'label'`; used only in label errors.
    pub blob: &'a str,
}

impl LabelContext<'_> {
    /// Builds the [`Error::LayerConfig`] for a shape the kernels reject.
    pub fn shape_error(&self, error: ShapeError) -> Error {
        self.config_error(error.message())
    }

    /// Builds an [`Error::LayerConfig`] with `message`.
    pub fn config_error(&self, message: impl Into<String>) -> Error {
        Error::LayerConfig {
            layer: self.layer.to_string(),
            layer_type: self.layer_type.to_string(),
            message: message.into(),
        }
    }

    /// Builds an [`Error::Device`] naming the layer, `what` failed and why.
    pub fn device_error(&self, what: &str, reason: &str) -> Error {
        Error::Device(format!(
            "layer '{}' ({}): {what} failed: {reason}",
            self.layer, self.layer_type
        ))
    }
}

/// Result of a loss forward: the raw sum of the terms and how many terms
/// counted (rows with a label that is not ignored, or elements).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossSum {
    /// Sum of the loss terms, before any normalization.
    pub sum: f64,
    /// Number of terms in the sum; Caffe's VALID normalization divides by
    /// max(1, valid).
    pub valid: u64,
}

/// Shape of a blob seen along one axis: `outer` (product of the dims before
/// the axis) x `channels` (the axis) x `inner` (product of the dims after).
/// Element (o, c, s) is at flat index `(o * channels + c) * inner + s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDims {
    /// Product of the dims before the axis.
    pub outer: usize,
    /// Size of the axis, C.
    pub channels: usize,
    /// Product of the dims after the axis.
    pub inner: usize,
}

impl RowDims {
    /// Creates outer x channels x inner dims.
    pub fn new(outer: usize, channels: usize, inner: usize) -> Self {
        RowDims {
            outer,
            channels,
            inner,
        }
    }

    /// Creates the dims of a `num` x `dim` matrix (axis 1, inner 1).
    pub fn matrix(num: usize, dim: usize) -> Self {
        RowDims::new(num, dim, 1)
    }

    /// Returns the number of rows, outer x inner, saturating at `usize::MAX`.
    pub fn rows(&self) -> usize {
        self.outer.saturating_mul(self.inner)
    }

    /// Returns the number of elements, outer x channels x inner, saturating
    /// at `usize::MAX`.
    pub fn elements(&self) -> usize {
        self.rows().saturating_mul(self.channels)
    }
}
