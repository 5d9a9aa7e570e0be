//! InfogainLoss launchers (`kernels/infogain.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{
    acc, alloc_work, check_len, dims_i64, entry, function, ignore_args, launch_error, read_loss,
    row_launch, LabelSource,
};
use crate::error::Result;
use crate::gpu::launch::checked_elements;
use crate::gpu::{Gpu, GpuElement, LabelContext, LossSum, RowDims};

const FILE: &str = "infogain.cu";

/// Checks that `infogain` is a `channels` x `channels` matrix.
fn check_matrix<T>(ctx: &LabelContext<'_>, infogain: &CudaSlice<T>, channels: usize) -> Result<()> {
    let cells = checked_elements(&[channels, channels]).map_err(|e| ctx.shape_error(e))?;
    check_len(ctx, "the infogain matrix H", infogain, cells)
}

/// Runs the InfogainLoss forward: a softmax over the axis, then per row with
/// label l the term `-sum_c H[l, c] * log(max(p_c, 1e-20))`. Returns the sum
/// over rows whose label is not ignored, with their count.
///
/// `infogain` is H, `channels` x `channels` in row-major order. `stats`
/// (`2 x dims.rows()`) receives each row's softmax max and sum for
/// [`infogain_loss_backward`]; `prob`, when given, the probabilities.
///
/// # Errors
///
/// [`crate::Error::Label`] for the first label that is not ignored and not
/// an integer in `[0, channels)`.
#[allow(clippy::too_many_arguments)]
pub fn infogain_loss_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    scores: &CudaSlice<T>,
    labels: &CudaSlice<T>,
    infogain: &CudaSlice<T>,
    prob: Option<&mut CudaSlice<T>>,
    stats: &mut CudaSlice<T::Acc>,
    dims: RowDims,
    ignore_label: Option<i32>,
) -> Result<LossSum> {
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", scores, plan.elements)?;
    check_len(ctx, "bottom[1]", labels, plan.rows)?;
    check_matrix(ctx, infogain, dims.channels)?;
    check_len(ctx, "row statistics", stats, plan.rows.saturating_mul(2))?;
    if let Some(prob) = prob.as_deref() {
        check_len(ctx, "top[1]", prob, plan.elements)?;
    }
    let (outer, channels, inner) = dims_i64(ctx, dims)?;
    let (has_ignore, ignore) = ignore_args(ignore_label);
    let mapping = plan.mapping.as_kernel_arg();
    let mut work = alloc_work(gpu, ctx, &plan.config)?;
    let null: u64 = 0;

    let kernel = entry::<T>("infogain_loss_fwd");
    let func = function::<T>(gpu, FILE, "infogain_loss_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(scores) // const T* x
        .arg(labels) // const T* label
        .arg(infogain); // const T* infogain
    match prob {
        Some(prob) => builder.arg(prob), // T* prob
        None => builder.arg(&null),      // T* prob = NULL
    };
    builder
        .arg(stats) // acc_t* stats
        .arg(&mut work) // u64* work
        .arg(&outer) // i64 outer
        .arg(&channels) // i64 channels
        .arg(&inner) // i64 inner
        .arg(&has_ignore) // int has_ignore
        .arg(&ignore) // int ignore_label
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match infogain_loss_fwd_<dtype> in order and type
    // (stats is T::Acc, the kernel's acc_t; a missing prob is a 64-bit zero
    // the kernel tests). prob, stats and work are written and passed as &mut.
    // Lengths are checked above, H is channels x channels, and a label
    // indexes a row of H only after the device checked it is in
    // [0, channels).
    unsafe { builder.launch(plan.config) }.map_err(|e| launch_error(ctx, &kernel, e))?;

    let source = LabelSource {
        labels,
        classes: dims.channels,
        ignore_label,
    };
    read_loss(gpu, ctx, &kernel, &work, Some(source))
}

/// Runs the InfogainLoss backward:
/// `dx_c = scale * (p_c * sum_k H[l, k] - H[l, c])` per row with label l,
/// p recomputed from `scores` and the forward's `stats`; ignored and invalid
/// rows get zeros. `scale` is `loss_weight / normalizer`.
#[allow(clippy::too_many_arguments)]
pub fn infogain_loss_backward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    scores: &CudaSlice<T>,
    labels: &CudaSlice<T>,
    infogain: &CudaSlice<T>,
    stats: &CudaSlice<T::Acc>,
    dx: &mut CudaSlice<T>,
    dims: RowDims,
    ignore_label: Option<i32>,
    scale: f64,
) -> Result<()> {
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", scores, plan.elements)?;
    check_len(ctx, "bottom[1]", labels, plan.rows)?;
    check_matrix(ctx, infogain, dims.channels)?;
    check_len(ctx, "row statistics", stats, plan.rows.saturating_mul(2))?;
    check_len(ctx, "bottom[0] diff", dx, plan.elements)?;
    let (outer, channels, inner) = dims_i64(ctx, dims)?;
    let (has_ignore, ignore) = ignore_args(ignore_label);
    let mapping = plan.mapping.as_kernel_arg();
    let scale = acc::<T>(scale);

    let func = function::<T>(gpu, FILE, "infogain_loss_bwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(scores) // const T* x
        .arg(labels) // const T* label
        .arg(infogain) // const T* infogain
        .arg(stats) // const acc_t* stats
        .arg(dx) // T* dx
        .arg(&scale) // acc_t scale
        .arg(&outer) // i64 outer
        .arg(&channels) // i64 channels
        .arg(&inner) // i64 inner
        .arg(&has_ignore) // int has_ignore
        .arg(&ignore) // int ignore_label
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match infogain_loss_bwd_<dtype> in order and type.
    // Only `dx` is written and it is passed as &mut. Lengths are checked
    // above, and rows whose label is not in [0, channels) never read H.
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("infogain_loss_bwd"), e))?;
    Ok(())
}
