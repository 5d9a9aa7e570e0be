//! Accuracy launcher (`kernels/accuracy.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{
    alloc_work, alloc_zeroed, check_len, dims_i64, entry, function, ignore_args, launch_error,
    read_loss, row_launch, LabelSource,
};
use crate::error::Result;
use crate::gpu::device::describe_driver_error;
use crate::gpu::launch::checked_elements;
use crate::gpu::{Gpu, GpuElement, LabelContext, RowDims};

const FILE: &str = "accuracy.cu";

/// Parameters of Accuracy (Caffe's `AccuracyParameter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccuracyOptions {
    /// A row is correct when its label is among the `top_k` highest scores;
    /// at least 1.
    pub top_k: usize,
    /// Label value whose rows are skipped.
    pub ignore_label: Option<i32>,
    /// Also count per class (Caffe's second top).
    pub per_class: bool,
}

/// Correct and total rows of one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Rows of this class whose label was in the top k.
    pub correct: u64,
    /// Rows whose label is this class.
    pub total: u64,
}

/// Result of [`accuracy_forward`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccuracyCounts {
    /// Rows whose label was in the top k.
    pub correct: u64,
    /// Rows with a label that is not ignored. Caffe's accuracy is
    /// `correct / valid`.
    pub valid: u64,
    /// Counts per class, indexed by class, when requested.
    pub per_class: Option<Vec<ClassCounts>>,
}

/// Runs the Accuracy forward over scores seen as `dims` (axis = class axis)
/// with one label per row.
///
/// A row is correct when fewer than `top_k` classes rank ahead of its label,
/// ranking as Caffe's `std::partial_sort` with `std::greater` on
/// (score, class) pairs: a higher score ranks ahead, and among equal scores
/// the higher class index does.
///
/// # Errors
///
/// [`crate::Error::Label`] for the first label that is not ignored and not an
/// integer in `[0, channels)`; [`crate::Error::LayerConfig`] for `top_k` 0 or
/// above `i32::MAX`.
pub fn accuracy_forward<T: GpuElement>(
    gpu: &Gpu,
    ctx: &LabelContext<'_>,
    scores: &CudaSlice<T>,
    labels: &CudaSlice<T>,
    dims: RowDims,
    options: AccuracyOptions,
) -> Result<AccuracyCounts> {
    let plan = row_launch(ctx, dims)?;
    check_len(ctx, "bottom[0]", scores, plan.elements)?;
    check_len(ctx, "bottom[1]", labels, plan.rows)?;
    let top_k = i32::try_from(options.top_k)
        .ok()
        .filter(|&k| k >= 1)
        .ok_or_else(|| {
            ctx.config_error(format!(
                "top_k is {}, expected an integer in [1, {}]",
                options.top_k,
                i32::MAX
            ))
        })?;
    let (outer, channels, inner) = dims_i64(ctx, dims)?;
    let (has_ignore, ignore) = ignore_args(options.ignore_label);
    let mapping = plan.mapping.as_kernel_arg();
    let mut work = alloc_work(gpu, ctx, &plan.config)?;
    let mut per_class = if options.per_class {
        let words = checked_elements(&[dims.channels, 2]).map_err(|e| ctx.shape_error(e))?;
        let words = usize::try_from(words).unwrap_or(usize::MAX);
        Some(alloc_zeroed::<u64>(gpu, ctx, "per-class counts", words)?)
    } else {
        None
    };
    let null: u64 = 0;

    let kernel = entry::<T>("accuracy_fwd");
    let func = function::<T>(gpu, FILE, "accuracy_fwd")?;
    let mut builder = gpu.stream().launch_builder(&func);
    builder
        .arg(scores) // const T* x
        .arg(labels) // const T* label
        .arg(&mut work); // u64* work
    match per_class.as_mut() {
        Some(counts) => builder.arg(counts), // u64* per_class
        None => builder.arg(&null),          // u64* per_class = NULL
    };
    builder
        .arg(&outer) // i64 outer
        .arg(&channels) // i64 channels
        .arg(&inner) // i64 inner
        .arg(&top_k) // int top_k
        .arg(&has_ignore) // int has_ignore
        .arg(&ignore) // int ignore_label
        .arg(&mapping); // int mapping

    // SAFETY: the arguments match accuracy_fwd_<dtype> in order and type (a
    // missing per_class is a 64-bit zero, which the kernel tests). work and
    // per_class are written and passed as &mut. scores have
    // outer x channels x inner elements and labels one per row (checked
    // above), per_class 2 x channels words, and a label indexes a row or
    // per_class only after the device checked it is in [0, channels).
    unsafe { builder.launch(plan.config) }.map_err(|e| launch_error(ctx, &kernel, e))?;

    let source = LabelSource {
        labels,
        classes: dims.channels,
        ignore_label: options.ignore_label,
    };
    let totals = read_loss(gpu, ctx, &kernel, &work, Some(source))?;
    let per_class = match per_class {
        Some(counts) => {
            let words = gpu.stream().clone_dtoh(&counts).map_err(|e| {
                ctx.device_error("reading the per-class counts", &describe_driver_error(&e))
            })?;
            let classes = words
                .chunks_exact(2)
                .map(|pair| ClassCounts {
                    correct: pair[0],
                    total: pair[1],
                })
                .collect();
            Some(classes)
        }
        None => None,
    };

    // The kernel sums correct rows as a double; counts below 2^53 are exact.
    Ok(AccuracyCounts {
        correct: totals.sum as u64,
        valid: totals.valid,
        per_class,
    })
}
