//! MultinomialLogisticLoss launchers (`kernels/multinomial.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{
    acc, alloc_work, check_len, dims_i64, entry, function, launch_error, read_loss, row_launch,
    LabelSource,
};
use crate::error::Result;
use crate::gpu::launch::elementwise_launch;
use crate::gpu::{Gpu, GpuElement, LabelContext, LossSum, RowDims};

const FILE: &str = "multinomial.cu";

/// Runs the MultinomialLogisticLoss forward over `num` x `dim` probabilities
/// (one label per sample) and returns the sum of
/// `-log(max(prob[label], 1e-20))` with the number of samples. Caffe's loss is
/// the sum divided by num. The layer has no ignore_label.
///
/// # Errors
///
/// [`crate::Error::Label`] for the first label that is not an integer in
/// `[0, dim)`.
pub fn multinomial_logistic_loss_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    prob: &CudaSlice<T>,
    labels: &CudaSlice<T>,
    num: usize,
    dim: usize,
) -> Result<LossSum> {
    let dims = RowDims::matrix(num, dim);
    // Validates the whole matrix; the kernel itself runs one thread per sample.
    let rows = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", prob, rows.elements)?;
    check_len(ctx, "bottom[1]", labels, rows.rows)?;
    let plan = elementwise_launch(dims.outer).map_err(|e| ctx.shape_error(e))?;
    let (num, dim, _) = dims_i64(ctx, dims)?;
    let mut work = alloc_work(gpu, ctx, &plan.config)?;

    let kernel = entry::<T>("multinomial_logistic_loss_fwd");
    let func = function::<T>(gpu, FILE, "multinomial_logistic_loss_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(prob) // const T* prob
        .arg(labels) // const T* label
        .arg(&mut work) // u64* work
        .arg(&num) // i64 num
        .arg(&dim); // i64 dim

    // SAFETY: the arguments match multinomial_logistic_loss_fwd_<dtype> in
    // order and type. Only `work` is written and it is passed as &mut. prob
    // has num x dim elements and labels num (checked above); a label
    // indexes its row only after the device checked it is in [0, dim).
    unsafe { builder.launch(plan.config) }.map_err(|e| launch_error(ctx, &kernel, e))?;

    let source = LabelSource {
        labels,
        classes: dims.channels,
        ignore_label: None,
    };
    read_loss(gpu, ctx, &kernel, &work, Some(source))
}

/// Runs the MultinomialLogisticLoss backward: zeros except
/// `dx[label] = -scale / max(prob[label], 1e-20)`, with
/// `scale = loss_weight / num`. Rows with an invalid label get zeros.
#[allow(clippy::too_many_arguments)]
pub fn multinomial_logistic_loss_backward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    prob: &CudaSlice<T>,
    labels: &CudaSlice<T>,
    dx: &mut CudaSlice<T>,
    num: usize,
    dim: usize,
    scale: f64,
) -> Result<()> {
    let dims = RowDims::matrix(num, dim);
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", prob, plan.elements)?;
    check_len(ctx, "bottom[1]", labels, plan.rows)?;
    check_len(ctx, "bottom[0] diff", dx, plan.elements)?;
    let (num, dim, _) = dims_i64(ctx, dims)?;
    let mapping = plan.mapping.as_kernel_arg();
    let scale = acc::<T>(scale);

    let func = function::<T>(gpu, FILE, "multinomial_logistic_loss_bwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(prob) // const T* prob
        .arg(labels) // const T* label
        .arg(dx) // T* dx
        .arg(&scale) // acc_t scale
        .arg(&num) // i64 num
        .arg(&dim) // i64 dim
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match multinomial_logistic_loss_bwd_<dtype> in
    // order and type. Only `dx` is written and it is passed as &mut. Lengths
    // are checked above; labels are only compared with class indices.
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("multinomial_logistic_loss_bwd"), e))?;
    Ok(())
}
