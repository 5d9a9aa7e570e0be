//! Softmax and SoftmaxWithLoss launchers (`kernels/softmax.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{
    acc, alloc_work, check_len, dims_i64, entry, function, ignore_args, launch_error, read_loss,
    row_launch, LabelSource,
};
use crate::error::Result;
use crate::gpu::{Gpu, GpuElement, LabelContext, LossSum, RowDims};

const FILE: &str = "softmax.cu";

/// Runs the Softmax forward along an axis: `y = exp(x - max) / sum(exp(x - max))`
/// over the `channels` elements of each (outer, inner) row.
///
/// `x` and `y` have `dims.elements()` values each.
pub fn softmax_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    x: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
    dims: RowDims,
) -> Result<()> {
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", x, plan.elements)?;
    check_len(ctx, "top[0]", y, plan.elements)?;
    let (outer, channels, inner) = dims_i64(ctx, dims)?;
    let mapping = plan.mapping.as_kernel_arg();

    let func = function::<T>(gpu, FILE, "softmax_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(x) // const T* x
        .arg(y) // T* y
        .arg(&outer) // i64 outer
        .arg(&channels) // i64 channels
        .arg(&inner) // i64 inner
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match softmax_fwd_<dtype> in order and type (T is
    // the element type the module was compiled for). Only `y` is written and
    // it is passed as &mut. Both buffers have outer x channels x inner
    // elements (checked above), the only indices the kernel touches.
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("softmax_fwd"), e))?;
    Ok(())
}

/// Runs the Softmax backward: `dx = y * (dy - sum_c(dy * y))` per row, from
/// the forward's output `y` and the top gradient `dy`.
pub fn softmax_backward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    y: &CudaSlice<T>,
    dy: &CudaSlice<T>,
    dx: &mut CudaSlice<T>,
    dims: RowDims,
) -> Result<()> {
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "top[0] data", y, plan.elements)?;
    check_len(ctx, "top[0] diff", dy, plan.elements)?;
    check_len(ctx, "bottom[0] diff", dx, plan.elements)?;
    let (outer, channels, inner) = dims_i64(ctx, dims)?;
    let mapping = plan.mapping.as_kernel_arg();

    let func = function::<T>(gpu, FILE, "softmax_bwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(y) // const T* y
        .arg(dy) // const T* dy
        .arg(dx) // T* dx
        .arg(&outer) // i64 outer
        .arg(&channels) // i64 channels
        .arg(&inner) // i64 inner
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match softmax_bwd_<dtype> in order and type. Only
    // `dx` is written and it is passed as &mut. All three buffers have
    // outer x channels x inner elements (checked above).
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("softmax_bwd"), e))?;
    Ok(())
}

/// Runs the SoftmaxWithLoss forward and returns the sum of
/// `-log(max(p_label, FLT_MIN))` over the rows whose label is not ignored,
/// with their count.
///
/// `scores` has `dims.elements()` values and `labels` one per row
/// (`dims.rows()`), as element values. The kernel reads the scores once and
/// stores each row's max and sum of exponentials in `stats`
/// (`2 x dims.rows()`, see [`super::alloc_row_stats`]) for
/// [`softmax_loss_backward`]. When `prob` is given it also receives the
/// probabilities (a second pass over each row).
///
/// # Errors
///
/// [`crate::Error::Label`] for the first row (lowest flat position) whose
/// label is not ignored and not an integer in `[0, channels)`; such rows add
/// nothing to the sum.
#[allow(clippy::too_many_arguments)]
pub fn softmax_loss_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    scores: &CudaSlice<T>,
    labels: &CudaSlice<T>,
    prob: Option<&mut CudaSlice<T>>,
    stats: &mut CudaSlice<T::Acc>,
    dims: RowDims,
    ignore_label: Option<i32>,
) -> Result<LossSum> {
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", scores, plan.elements)?;
    check_len(ctx, "bottom[1]", labels, plan.rows)?;
    check_len(ctx, "row statistics", stats, plan.rows.saturating_mul(2))?;
    if let Some(prob) = prob.as_deref() {
        check_len(ctx, "top[1]", prob, plan.elements)?;
    }
    let (outer, channels, inner) = dims_i64(ctx, dims)?;
    let (has_ignore, ignore) = ignore_args(ignore_label);
    let mapping = plan.mapping.as_kernel_arg();
    let mut work = alloc_work(gpu, ctx, &plan.config)?;
    let null: u64 = 0;

    let kernel = entry::<T>("softmax_loss_fwd");
    let func = function::<T>(gpu, FILE, "softmax_loss_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder.arg(scores).arg(labels); // const T* x, const T* label
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

    // SAFETY: the arguments match softmax_loss_fwd_<dtype> in order and type:
    // stats is T::Acc, the kernel's acc_t, and a missing prob is a 64-bit
    // zero, which the kernel tests before writing. The written buffers (prob,
    // stats, work) are passed as &mut. Lengths are checked above: scores and
    // prob have outer x channels x inner elements, labels one per row, stats
    // two per row, and work 4 + 2 x gridDim.x words (work_words). Labels are
    // range-checked on the device before they index a row.
    unsafe { builder.launch(plan.config) }.map_err(|e| launch_error(ctx, &kernel, e))?;

    let source = LabelSource {
        labels,
        classes: dims.channels,
        ignore_label,
    };
    read_loss(gpu, ctx, &kernel, &work, Some(source))
}

/// Runs the SoftmaxWithLoss backward: `dx = scale * (p - onehot(label))`,
/// with p recomputed from `scores` and the forward's `stats`. Rows whose
/// label is ignored, or invalid (which the forward reported), get zeros.
///
/// `scale` is `loss_weight / normalizer`. One read of the scores, one write
/// of `dx`.
#[allow(clippy::too_many_arguments)]
pub fn softmax_loss_backward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    scores: &CudaSlice<T>,
    labels: &CudaSlice<T>,
    stats: &CudaSlice<T::Acc>,
    dx: &mut CudaSlice<T>,
    dims: RowDims,
    ignore_label: Option<i32>,
    scale: f64,
) -> Result<()> {
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", scores, plan.elements)?;
    check_len(ctx, "bottom[1]", labels, plan.rows)?;
    check_len(ctx, "row statistics", stats, plan.rows.saturating_mul(2))?;
    check_len(ctx, "bottom[0] diff", dx, plan.elements)?;
    let (outer, channels, inner) = dims_i64(ctx, dims)?;
    let (has_ignore, ignore) = ignore_args(ignore_label);
    let mapping = plan.mapping.as_kernel_arg();
    let scale = acc::<T>(scale);

    let func = function::<T>(gpu, FILE, "softmax_loss_bwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(scores) // const T* x
        .arg(labels) // const T* label
        .arg(stats) // const acc_t* stats
        .arg(dx) // T* dx
        .arg(&scale) // acc_t scale
        .arg(&outer) // i64 outer
        .arg(&channels) // i64 channels
        .arg(&inner) // i64 inner
        .arg(&has_ignore) // int has_ignore
        .arg(&ignore) // int ignore_label
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match softmax_loss_bwd_<dtype> in order and type
    // (stats and scale are T::Acc, the kernel's acc_t). Only `dx` is written
    // and it is passed as &mut. Lengths are checked above; labels are only
    // compared with class indices, never used as an index.
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("softmax_loss_bwd"), e))?;
    Ok(())
}
