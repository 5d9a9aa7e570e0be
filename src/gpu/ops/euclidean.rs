//! EuclideanLoss launchers (`kernels/euclidean.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{acc, alloc_work, check_len, entry, function, launch_error, read_loss, to_i64};
use crate::error::Result;
use crate::gpu::launch::elementwise_launch;
use crate::gpu::{Gpu, GpuElement, LabelContext, LossSum};

const FILE: &str = "euclidean.cu";

/// Runs the EuclideanLoss forward and returns `sum((a - b)^2)` over all
/// elements, with the element count as `valid`. Caffe's loss is this sum
/// divided by `2 * num`.
pub fn euclidean_loss_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
) -> Result<LossSum> {
    let plan = elementwise_launch(a.len()).map_err(|e| ctx.shape_error(e))?;
    check_len(ctx, "bottom[1]", b, plan.elements)?;
    let n = to_i64(ctx, a.len())?;
    let mut work = alloc_work(gpu, ctx, &plan.config)?;

    let kernel = entry::<T>("euclidean_loss_fwd");
    let func = function::<T>(gpu, FILE, "euclidean_loss_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(a) // const T* a
        .arg(b) // const T* b
        .arg(&mut work) // u64* work
        .arg(&n); // i64 n

    // SAFETY: the arguments match euclidean_loss_fwd_<dtype> in order and type.
    // Only `work` is written and it is passed as &mut. a and b have n
    // elements (checked above); work has 4 + 2 x gridDim.x words.
    unsafe { builder.launch(plan.config) }.map_err(|e| launch_error(ctx, &kernel, e))?;

    read_loss::<T>(gpu, ctx, &kernel, &work, None)
}

/// Runs the EuclideanLoss backward: `da = alpha * (a - b)` and
/// `db = -alpha * (a - b)`, with `alpha = loss_weight / num`. Either output
/// may be `None` (no gradient for that bottom); with both `None` nothing is
/// launched.
pub fn euclidean_loss_backward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
    da: Option<&mut CudaSlice<T>>,
    db: Option<&mut CudaSlice<T>>,
    alpha: f64,
) -> Result<()> {
    let plan = elementwise_launch(a.len()).map_err(|e| ctx.shape_error(e))?;
    check_len(ctx, "bottom[1]", b, plan.elements)?;
    if let Some(da) = da.as_deref() {
        check_len(ctx, "bottom[0] diff", da, plan.elements)?;
    }
    if let Some(db) = db.as_deref() {
        check_len(ctx, "bottom[1] diff", db, plan.elements)?;
    }
    if da.is_none() && db.is_none() {
        return Ok(());
    }
    let n = to_i64(ctx, a.len())?;
    let alpha = acc::<T>(alpha);
    let null: u64 = 0;

    let func = function::<T>(gpu, FILE, "euclidean_loss_bwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder.arg(a).arg(b); // const T* a, const T* b
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
        .arg(&n); // i64 n

    // SAFETY: the arguments match euclidean_loss_bwd_<dtype> in order and type
    // (a missing output is a 64-bit zero, which the kernel tests before
    // writing). da and db are written and passed as &mut. Every buffer has
    // n elements (checked above).
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("euclidean_loss_bwd"), e))?;
    Ok(())
}
