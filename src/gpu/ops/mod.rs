//! Launchers: one function per kernel pass.
//!
//! Every function checks the device buffer lengths against the dims, picks
//! the launch shape with [`crate::gpu::launch`], and queues the kernel on
//! [`Gpu::stream`]. Backward passes return without waiting for the GPU. Loss
//! forwards wait for one device-to-host copy of the workspace header (loss
//! sum, valid count, first bad label) and turn a bad label into
//! [`Error::Label`].
//!
//! Scale factors are applied by the backward kernels: pass Caffe's
//! `loss_weight / normalizer` (or the per-layer factor named in each
//! function's docs).

mod accuracy;
mod blob;
mod contrastive;
mod euclidean;
mod hinge;
mod infogain;
mod multinomial;
mod sigmoid;
mod softmax;

pub use accuracy::{accuracy_forward, AccuracyCounts, AccuracyOptions, ClassCounts};
pub use blob::blob_add;
pub use contrastive::{contrastive_loss_backward, contrastive_loss_forward, ContrastiveOptions};
pub use euclidean::{euclidean_loss_backward, euclidean_loss_forward};
pub use hinge::{hinge_loss_backward, hinge_loss_forward, HingeNorm};
pub use infogain::{infogain_loss_backward, infogain_loss_forward};
pub use multinomial::{multinomial_logistic_loss_backward, multinomial_logistic_loss_forward};
pub use sigmoid::{
    sigmoid_backward, sigmoid_cross_entropy_loss_backward, sigmoid_cross_entropy_loss_forward,
    sigmoid_forward,
};
pub use softmax::{softmax_backward, softmax_forward, softmax_loss_backward, softmax_loss_forward};

use cudarc::driver::{CudaFunction, CudaSlice, DriverError, LaunchConfig};

use crate::error::{Error, Result};
use crate::gpu::device::describe_driver_error;
use crate::gpu::launch::{self, RowLaunch, WORK_HEADER_WORDS};
use crate::gpu::nvrtc::{kernel_file, KernelFile};
use crate::gpu::{Gpu, GpuElement, LabelContext, LossSum, RowDims};

/// Allocates the per-row statistics a softmax-based loss forward keeps for
/// its backward: two accumulation-type values (row max and sum of exponentials)
/// per row, `2 x outer x inner` in all.
pub fn alloc_row_stats<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    dims: RowDims,
) -> Result<CudaSlice<T::Acc>> {
    let rows =
        launch::checked_elements(&[dims.outer, dims.inner, 2]).map_err(|e| ctx.shape_error(e))?;
    alloc_zeroed::<T::Acc>(gpu, ctx, "row statistics", to_usize(ctx, rows)?)
}

/// Allocates the per-pair squared distances a contrastive loss forward keeps
/// for its backward: one accumulation-type value per pair.
pub fn alloc_pair_distances<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    num: usize,
) -> Result<CudaSlice<T::Acc>> {
    alloc_zeroed::<T::Acc>(gpu, ctx, "pair distances", num)
}

/// Returns the kernel file named `name` from the table, as an error if the
/// table lacks it.
fn file(name: &str) -> Result<&'static KernelFile> {
    kernel_file(name)
        .ok_or_else(|| Error::Device(format!("kernel file {name} is missing from KERNEL_FILES")))
}

/// Loads entry point `<base>_<T::NAME>` of kernel file `file_name`.
fn function<T: GpuElement>(gpu: &Gpu, file_name: &str, base: &str) -> Result<CudaFunction> {
    gpu.function(file(file_name)?, T::NAME, base)
}

fn to_usize(ctx: &LabelContext<'_>, value: u64) -> Result<usize> {
    usize::try_from(value)
        .map_err(|_| ctx.config_error(format!("{value} elements do not fit this machine's usize")))
}

pub(crate) fn to_i64(ctx: &LabelContext<'_>, value: usize) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        ctx.config_error(format!(
            "size {value} exceeds the kernels' 64-bit signed indices"
        ))
    })
}

/// Converts an f64 factor to the element type's accumulation type.
fn acc<T: GpuElement>(value: f64) -> T::Acc {
    crate::element::acc::<T::Acc>(value)
}

/// Allocates `len` zeroed elements on the GPU's stream.
fn alloc_zeroed<V: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    what: &str,
    len: usize,
) -> Result<CudaSlice<V>> {
    let Some(bytes) = len.checked_mul(std::mem::size_of::<V>()) else {
        return Err(ctx.config_error(format!(
            "the {what} would need {len} x {} bytes, more than this machine can address",
            std::mem::size_of::<V>()
        )));
    };
    let allocated = if len == 0 {
        // An empty blob still needs a slice to pass; cudarc makes one here.
        gpu.stream().null::<V>()
    } else {
        gpu.stream().alloc_zeros::<V>(len)
    };
    allocated.map_err(|e| {
        ctx.device_error(
            &format!("allocating {bytes} bytes for the {what}"),
            &describe_driver_error(&e),
        )
    })
}

/// Checks that a device buffer has exactly `expected` elements.
fn check_len<V>(
    ctx: &LabelContext<'_>,
    what: &str,
    slice: &CudaSlice<V>,
    expected: u64,
) -> Result<()> {
    let actual = slice.len();
    if u64::try_from(actual).ok() == Some(expected) {
        Ok(())
    } else {
        Err(ctx.config_error(format!(
            "{what} has {actual} elements on the device, expected {expected}"
        )))
    }
}

/// Computes a row launch for `dims`, with the layer named in the error.
fn row_launch(ctx: &LabelContext<'_>, dims: RowDims) -> Result<RowLaunch> {
    launch::row_launch(dims.outer, dims.channels, dims.inner).map_err(|e| ctx.shape_error(e))
}

/// Returns dims as the kernels' (outer, channels, inner) i64 arguments.
fn dims_i64(ctx: &LabelContext<'_>, dims: RowDims) -> Result<(i64, i64, i64)> {
    Ok((
        to_i64(ctx, dims.outer)?,
        to_i64(ctx, dims.channels)?,
        to_i64(ctx, dims.inner)?,
    ))
}

/// Returns the kernels' (has_ignore, ignore_label) arguments.
fn ignore_args(ignore_label: Option<i32>) -> (i32, i32) {
    match ignore_label {
        Some(label) => (1, label),
        None => (0, 0),
    }
}

fn launch_error(ctx: &LabelContext<'_>, kernel: &str, error: DriverError) -> Error {
    ctx.device_error(
        &format!("launching {kernel}"),
        &describe_driver_error(&error),
    )
}

/// Returns the entry-point name for error messages.
fn entry<T: GpuElement>(base: &str) -> String {
    KernelFile::entry_point(base, T::NAME)
}

/// Allocates the zeroed loss workspace for a launch with `config`.
fn alloc_work(gpu: &Gpu, ctx: &LabelContext<'_>, config: &LaunchConfig) -> Result<CudaSlice<u64>> {
    alloc_zeroed::<u64>(gpu, ctx, "loss workspace", launch::work_words(config))
}

/// Label buffer and class count of a loss forward, for [`Error::Label`].
struct LabelSource<'a, T> {
    labels: &'a CudaSlice<T>,
    classes: usize,
    ignore_label: Option<i32>,
}

/// Copies the workspace header to the host (waiting for the kernel) and
/// returns the loss sum and valid count, or [`Error::Label`] for the first
/// bad label the kernel recorded.
fn read_loss<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    kernel: &str,
    work: &CudaSlice<u64>,
    labels: Option<LabelSource<'_, T>>,
) -> Result<LossSum> {
    let Some(header_view) = work.try_slice(0..WORK_HEADER_WORDS) else {
        return Err(ctx.device_error(
            &format!("reading the result of {kernel}"),
            "the workspace is shorter than its header",
        ));
    };
    let header = gpu.stream().clone_dtoh(&header_view).map_err(|e| {
        ctx.device_error(
            &format!("reading the result of {kernel}"),
            &describe_driver_error(&e),
        )
    })?;
    let [sum_bits, valid, bad_label, _] = header[..] else {
        return Err(ctx.device_error(
            &format!("reading the result of {kernel}"),
            "the copy returned a short buffer",
        ));
    };

    if bad_label != 0 {
        if let Some(source) = labels {
            return Err(label_error(gpu, ctx, source, !bad_label));
        }
    }
    Ok(LossSum {
        sum: f64::from_bits(sum_bits),
        valid,
    })
}

/// Builds [`Error::Label`] for the label at flat `position`, reading its
/// value back from the device.
fn label_error<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    source: LabelSource<'_, T>,
    position: u64,
) -> Error {
    let position = usize::try_from(position).unwrap_or(usize::MAX);
    let value = source
        .labels
        .try_slice(position..position.saturating_add(1))
        .and_then(|view| gpu.stream().clone_dtoh(&view).ok())
        .and_then(|values| values.first().map(|v| v.to_f64()))
        .unwrap_or(f64::NAN);
    let max_valid = i64::try_from(source.classes)
        .map(|c| c - 1)
        .unwrap_or(i64::MAX);
    Error::Label {
        layer: ctx.layer.to_string(),
        layer_type: ctx.layer_type.to_string(),
        blob: ctx.blob.to_string(),
        position,
        value,
        max_valid,
        ignore: source
            .ignore_label
            .map(|label| format!(" or the ignore_label {label}"))
            .unwrap_or_default(),
    }
}
