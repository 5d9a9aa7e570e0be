//! Blob utilities of the GPU net runner (`kernels/blob.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{check_len, entry, function, launch_error, to_i64};
use crate::error::Result;
use crate::gpu::launch::elementwise_launch;
use crate::gpu::{Gpu, GpuElement, LabelContext};

const FILE: &str = "blob.cu";

/// Adds `x` into `y` elementwise (`y += x`); both hold the same count.
pub fn blob_add<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    x: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
) -> Result<()> {
    let plan = elementwise_launch(x.len()).map_err(|e| ctx.shape_error(e))?;
    check_len(ctx, "gradient sum", y, plan.elements)?;
    let n = to_i64(ctx, x.len())?;

    let func = function::<T>(gpu, FILE, "blob_add")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(x) // const T* x
        .arg(y) // T* y
        .arg(&n); // i64 n

    // SAFETY: the arguments match blob_add_<dtype> in order and type. Only
    // `y` is written and it is passed as &mut. Both buffers have n elements
    // (checked above), and the kernel touches indices below n only.
    unsafe { builder.launch(plan.config) }
        .map_err(|e| launch_error(ctx, &entry::<T>("blob_add"), e))?;
    Ok(())
}
