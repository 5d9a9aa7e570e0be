//! HingeLoss launchers (`kernels/hinge.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{
    acc, alloc_work, check_len, dims_i64, entry, function, launch_error, read_loss, row_launch,
    LabelSource,
};
use crate::error::Result;
use crate::gpu::{Gpu, GpuElement, LabelContext, LossSum, RowDims};

const FILE: &str = "hinge.cu";

/// Norm of the hinge loss (Caffe's `HingeLossParameter.norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HingeNorm {
    /// Sum of the hinge terms.
    L1,
    /// Sum of the squared hinge terms.
    L2,
}

impl HingeNorm {
    /// Returns the kernels' `norm` argument.
    fn as_kernel_arg(self) -> i32 {
        match self {
            HingeNorm::L1 => 1,
            HingeNorm::L2 => 2,
        }
    }
}

/// Runs the HingeLoss forward over `num` x `dim` scores with one
/// label per sample, and returns the sum of `t_j` (L1) or
/// `t_j^2` (L2) with `t_j = max(0, 1 + x_j)` for `j != label` and
/// `max(0, 1 - x_label)`, plus the number of samples. Caffe's loss is the sum
/// divided by num.
///
/// HingeLoss has no ignore_label.
///
/// # Errors
///
/// [`crate::Error::Label`] for the first label that is not an integer in
/// `[0, dim)`.
pub fn hinge_loss_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    scores: &CudaSlice<T>,
    labels: &CudaSlice<T>,
    num: usize,
    dim: usize,
    norm: HingeNorm,
) -> Result<LossSum> {
    let dims = RowDims::matrix(num, dim);
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", scores, plan.elements)?;
    check_len(ctx, "bottom[1]", labels, plan.rows)?;
    let (num, dim, _) = dims_i64(ctx, dims)?;
    let norm_arg = norm.as_kernel_arg();
    let mapping = plan.mapping.as_kernel_arg();
    let mut work = alloc_work(gpu, ctx, &plan.config)?;

    let kernel = entry::<T>("hinge_loss_fwd");
    let func = function::<T>(gpu, FILE, "hinge_loss_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(scores) // const T* x
        .arg(labels) // const T* label
        .arg(&mut work) // u64* work
        .arg(&num) // i64 num
        .arg(&dim) // i64 dim
        .arg(&norm_arg) // int norm
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match hinge_loss_fwd_<dtype> in order and type.
    // Only `work` is written and it is passed as &mut. scores have num x dim
    // elements and labels num (checked above); labels are compared with
    // class indices, never used as an index.
    unsafe { builder.launch(plan.config) }.map_err(|e| launch_error(ctx, &kernel, e))?;

    let source = LabelSource {
        labels,
        classes: dims.channels,
        ignore_label: None,
    };
    read_loss(gpu, ctx, &kernel, &work, Some(source))
}

/// Runs the HingeLoss backward with `scale = loss_weight / num`: L1 writes
/// `scale * sign` where `t_j > 0` (else 0), L2 writes `2 * scale * sign * t_j`,
/// with sign -1 for the label's entry and +1 elsewhere. Rows with an invalid
/// label get zeros.
#[allow(clippy::too_many_arguments)]
pub fn hinge_loss_backward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    scores: &CudaSlice<T>,
    labels: &CudaSlice<T>,
    dx: &mut CudaSlice<T>,
    num: usize,
    dim: usize,
    norm: HingeNorm,
    scale: f64,
) -> Result<()> {
    let dims = RowDims::matrix(num, dim);
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", scores, plan.elements)?;
    check_len(ctx, "bottom[1]", labels, plan.rows)?;
    check_len(ctx, "bottom[0] diff", dx, plan.elements)?;
    let (num, dim, _) = dims_i64(ctx, dims)?;
    let norm_arg = norm.as_kernel_arg();
    let mapping = plan.mapping.as_kernel_arg();
    let scale = acc::<T>(scale);

    let func = function::<T>(gpu, FILE, "hinge_loss_bwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(scores) // const T* x
        .arg(labels) // const T* label
        .arg(dx) // T* dx
        .arg(&scale) // acc_t scale
        .arg(&num) // i64 num
        .arg(&dim) // i64 dim
        .arg(&norm_arg) // int norm
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match hinge_loss_bwd_<dtype> in order and type.
    // Only `dx` is written and it is passed as &mut. Lengths are checked
    // above.
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("hinge_loss_bwd"), e))?;
    Ok(())
}
