//! ContrastiveLoss launchers (`kernels/contrastive.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{
    acc, alloc_work, check_len, dims_i64, entry, function, launch_error, read_loss, row_launch,
};
use crate::error::Result;
use crate::gpu::{Gpu, GpuElement, LabelContext, LossSum, RowDims};

const FILE: &str = "contrastive.cu";

/// Parameters of ContrastiveLoss (Caffe's `ContrastiveLossParameter`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContrastiveOptions {
    /// Margin for dissimilar pairs (Caffe's default 1.0).
    pub margin: f64,
    /// `legacy_version`: a dissimilar pair costs `max(margin - d^2, 0)`
    /// instead of `max(margin - d, 0)^2`.
    pub legacy: bool,
}

/// Runs the ContrastiveLoss forward over `num` pairs of `channels`-element
/// features `a`, `b` with one similarity flag per pair, and returns the sum
/// of the pair terms with `valid = num`. Caffe's loss is the sum divided by
/// `2 * num`.
///
/// A pair is similar when its flag truncated toward zero is not 0 and costs
/// `d^2 = sum((a - b)^2)`; a dissimilar pair costs `max(margin - d, 0)^2`, or
/// `max(margin - d^2, 0)` with `legacy`. `dist_sq` (`num` values, see
/// [`super::alloc_pair_distances`]) receives each pair's `d^2` for
/// [`contrastive_loss_backward`]. Flags are not range-checked.
#[allow(clippy::too_many_arguments)]
pub fn contrastive_loss_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
    similar: &CudaSlice<T>,
    dist_sq: &mut CudaSlice<T::Acc>,
    num: usize,
    channels: usize,
    options: ContrastiveOptions,
) -> Result<LossSum> {
    let dims = RowDims::matrix(num, channels);
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", a, plan.elements)?;
    check_len(ctx, "bottom[1]", b, plan.elements)?;
    check_len(ctx, "bottom[2]", similar, plan.rows)?;
    check_len(ctx, "pair distances", dist_sq, plan.rows)?;
    let (num, channels, _) = dims_i64(ctx, dims)?;
    let margin = acc::<T>(options.margin);
    let legacy = i32::from(options.legacy);
    let mapping = plan.mapping.as_kernel_arg();
    let mut work = alloc_work(gpu, ctx, &plan.config)?;

    let kernel = entry::<T>("contrastive_loss_fwd");
    let func = function::<T>(gpu, FILE, "contrastive_loss_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(a) // const T* a
        .arg(b) // const T* b
        .arg(similar) // const T* sim
        .arg(dist_sq) // acc_t* dist_sq
        .arg(&mut work) // u64* work
        .arg(&num) // i64 num
        .arg(&channels) // i64 channels
        .arg(&margin) // acc_t margin
        .arg(&legacy) // int legacy
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match contrastive_loss_fwd_<dtype> in order and
    // type (dist_sq and margin are T::Acc, the kernel's acc_t). dist_sq and
    // work are written and passed as &mut. a and b have num x channels
    // elements, similar and dist_sq num (checked above), and work
    // 4 + 2 x gridDim.x words.
    unsafe { builder.launch(plan.config) }.map_err(|e| launch_error(ctx, &kernel, e))?;

    read_loss::<T>(gpu, ctx, &kernel, &work, None)
}

/// Runs the ContrastiveLoss backward with `alpha = loss_weight / num`:
/// `da = f * (a - b)` and `db = -f * (a - b)`, where f is `alpha` for a
/// similar pair and, for a dissimilar one, `-alpha` while `margin - d^2 > 0`
/// (legacy) or `-alpha * (margin - d) / (d + 1e-4)` while `margin - d > 0`,
/// else 0. `dist_sq` comes from the forward. Either output may be `None`;
/// with both `None` nothing is launched.
#[allow(clippy::too_many_arguments)]
pub fn contrastive_loss_backward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
    similar: &CudaSlice<T>,
    dist_sq: &CudaSlice<T::Acc>,
    da: Option<&mut CudaSlice<T>>,
    db: Option<&mut CudaSlice<T>>,
    num: usize,
    channels: usize,
    options: ContrastiveOptions,
    alpha: f64,
) -> Result<()> {
    let dims = RowDims::matrix(num, channels);
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", a, plan.elements)?;
    check_len(ctx, "bottom[1]", b, plan.elements)?;
    check_len(ctx, "bottom[2]", similar, plan.rows)?;
    check_len(ctx, "pair distances", dist_sq, plan.rows)?;
    if let Some(da) = da.as_deref() {
        check_len(ctx, "bottom[0] diff", da, plan.elements)?;
    }
    if let Some(db) = db.as_deref() {
        check_len(ctx, "bottom[1] diff", db, plan.elements)?;
    }
    if da.is_none() && db.is_none() {
        return Ok(());
    }
    let (num, channels, _) = dims_i64(ctx, dims)?;
    let margin = acc::<T>(options.margin);
    let legacy = i32::from(options.legacy);
    let alpha = acc::<T>(alpha);
    let mapping = plan.mapping.as_kernel_arg();
    let null: u64 = 0;

    let func = function::<T>(gpu, FILE, "contrastive_loss_bwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(a) // const T* a
        .arg(b) // const T* b
        .arg(similar) // const T* sim
        .arg(dist_sq); // const acc_t* dist_sq
    match da {
        Some(da) => builder.arg(da), // T* da
        None => builder.arg(&null),  // T* da = NULL
    };
    match db {
        Some(db) => builder.arg(db), // T* db
        None => builder.arg(&null),  // T* db = NULL
    };
    builder
        .arg(&alpha) // acc_t alpha
        .arg(&num) // i64 num
        .arg(&channels) // i64 channels
        .arg(&margin) // acc_t margin
        .arg(&legacy) // int legacy
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match contrastive_loss_bwd_<dtype> in order and
    // type (a missing output is a 64-bit zero, which the kernel tests before
    // writing). da and db are written and passed as &mut. Lengths are checked
    // above.
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("contrastive_loss_bwd"), e))?;
    Ok(())
}
