//! Sigmoid and SigmoidCrossEntropyLoss launchers (`kernels/sigmoid.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{
    acc, alloc_work, check_len, entry, function, ignore_args, launch_error, read_loss, to_i64,
};
use crate::error::Result;
use crate::gpu::launch::elementwise_launch;
use crate::gpu::{Gpu, GpuElement, LabelContext, LossSum};

const FILE: &str = "sigmoid.cu";

/// Runs the Sigmoid forward, `y = 1 / (1 + exp(-x))`, elementwise over all of
/// `x`.
pub fn sigmoid_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    x: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
) -> Result<()> {
    let plan = elementwise_launch(x.len()).map_err(|e| ctx.shape_error(e))?;
    check_len(ctx, "top[0]", y, plan.elements)?;
    let n = to_i64(ctx, x.len())?;

    let func = function::<T>(gpu, FILE, "sigmoid_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(x) // const T* x
        .arg(y) // T* y
        .arg(&n); // i64 n

    // SAFETY: the arguments match sigmoid_fwd_<dtype> in order and type. Only
    // `y` is written and it is passed as &mut. Both buffers have n elements
    // (checked above), and the kernel touches indices below n only.
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("sigmoid_fwd"), e))?;
    Ok(())
}

/// Runs the Sigmoid backward, `dx = dy * y * (1 - y)`, from the forward's
/// output `y`.
pub fn sigmoid_backward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    y: &CudaSlice<T>,
    dy: &CudaSlice<T>,
    dx: &mut CudaSlice<T>,
) -> Result<()> {
    let plan = elementwise_launch(y.len()).map_err(|e| ctx.shape_error(e))?;
    check_len(ctx, "top[0] diff", dy, plan.elements)?;
    check_len(ctx, "bottom[0] diff", dx, plan.elements)?;
    let n = to_i64(ctx, y.len())?;

    let func = function::<T>(gpu, FILE, "sigmoid_bwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(y) // const T* y
        .arg(dy) // const T* dy
        .arg(dx) // T* dx
        .arg(&n); // i64 n

    // SAFETY: the arguments match sigmoid_bwd_<dtype> in order and type. Only
    // `dx` is written and it is passed as &mut. All three buffers have n
    // elements (checked above).
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("sigmoid_bwd"), e))?;
    Ok(())
}

/// Runs the SigmoidCrossEntropyLoss forward and returns the sum of
/// `-(x * (t - (x >= 0)) - log(1 + exp(x - 2 * x * (x >= 0))))` over the
/// elements whose target t does not truncate to `ignore_label`, with their
/// count.
///
/// Targets may be soft values in [0, 1]; they are not range-checked.
pub fn sigmoid_cross_entropy_loss_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    x: &CudaSlice<T>,
    targets: &CudaSlice<T>,
    ignore_label: Option<i32>,
) -> Result<LossSum> {
    let plan = elementwise_launch(x.len()).map_err(|e| ctx.shape_error(e))?;
    check_len(ctx, "bottom[1]", targets, plan.elements)?;
    let n = to_i64(ctx, x.len())?;
    let (has_ignore, ignore) = ignore_args(ignore_label);
    let mut work = alloc_work(gpu, ctx, &plan.config)?;

    let kernel = entry::<T>("sigmoid_cross_entropy_loss_fwd");
    let func = function::<T>(gpu, FILE, "sigmoid_cross_entropy_loss_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(x) // const T* x
        .arg(targets) // const T* target
        .arg(&mut work) // u64* work
        .arg(&n) // i64 n
        .arg(&has_ignore) // int has_ignore
        .arg(&ignore); // int ignore_label

    // SAFETY: the arguments match sigmoid_cross_entropy_loss_fwd_<dtype> in
    // order and type. Only `work` is written and it is passed as &mut. x and
    // targets have n elements (checked above), and work has
    // 4 + 2 x gridDim.x words (work_words).
    unsafe { builder.launch(plan.config) }.map_err(|e| launch_error(ctx, &kernel, e))?;

    read_loss::<T>(gpu, ctx, &kernel, &work, None)
}

/// Runs the SigmoidCrossEntropyLoss backward: `dx = scale * (sigmoid(x) - t)`,
/// and 0 where the target truncates to `ignore_label`. `scale` is
/// `loss_weight / normalizer`.
pub fn sigmoid_cross_entropy_loss_backward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    x: &CudaSlice<T>,
    targets: &CudaSlice<T>,
    dx: &mut CudaSlice<T>,
    ignore_label: Option<i32>,
    scale: f64,
) -> Result<()> {
    let plan = elementwise_launch(x.len()).map_err(|e| ctx.shape_error(e))?;
    check_len(ctx, "bottom[1]", targets, plan.elements)?;
    check_len(ctx, "bottom[0] diff", dx, plan.elements)?;
    let n = to_i64(ctx, x.len())?;
    let (has_ignore, ignore) = ignore_args(ignore_label);
    let scale = acc::<T>(scale);

    let func = function::<T>(gpu, FILE, "sigmoid_cross_entropy_loss_bwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(x) // const T* x
        .arg(targets) // const T* target
        .arg(dx) // T* dx
        .arg(&scale) // acc_t scale
        .arg(&n) // i64 n
        .arg(&has_ignore) // int has_ignore
        .arg(&ignore); // int ignore_label

    // SAFETY: the arguments match sigmoid_cross_entropy_loss_bwd_<dtype> in
    // order and type (scale is T::Acc, the kernel's acc_t). Only `dx` is
    // written and it is passed as &mut. All buffers have n elements.
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("sigmoid_cross_entropy_loss_bwd"), e))?;
    Ok(())
}
