//! Launch arithmetic: grid, block and workspace sizes from blob shapes.
//!
//! Pure functions, testable without a GPU. Each one rejects a shape whose
//! element count the kernels cannot index, instead of returning a wrong
//! configuration.

use std::fmt;

use cudarc::driver::LaunchConfig;

/// Threads per block for every kernel. A multiple of 32 (the block reductions
/// need whole warps); 256 keeps eight warps per block to hide memory latency
/// while leaving each thread up to 255 registers. The kernels get the same
/// number as `CL_BLOCK_THREADS` and declare it in `__launch_bounds__`.
pub const BLOCK_THREADS: u32 = 256;

/// Threads per warp on every NVIDIA GPU so far.
pub const WARP_THREADS: u32 = 32;

/// Largest grid any launch uses. Kernels loop over their work with a
/// grid-stride loop, so a fixed cap is enough to fill the GPU: an H100 or
/// H200 (132 SMs) holds at most 132 x 8 = 1056 resident blocks of 256
/// threads. The cap does not depend on the device, so the order of the loss
/// reduction, and with it the loss bits, is the same on every GPU.
pub const MAX_GRID_BLOCKS: u32 = 2048;

/// Largest axis size C that gets one warp per row (when the inner size is
/// below [`THREAD_ROW_MIN_INNER`]); larger rows get a whole block.
///
/// NOTE: an estimate, not measured. Up to 32 elements per lane keep a warp's
/// loads in flight. Above that, one block's eight warps share a row, so that
/// a few long rows still spread over the GPU.
pub const WARP_ROW_MAX_CHANNELS: usize = 1024;

/// Smallest inner size that gets one thread per row: from 32 on, the 32
/// threads of a warp read 32 neighbouring positions of the same channel, so
/// their loads coalesce.
pub const THREAD_ROW_MIN_INNER: usize = 32;

/// Largest axis size C that gets one thread per row even for a small inner
/// size: a warp or block per row would leave most of its threads idle.
pub const THREAD_ROW_MAX_CHANNELS: usize = 8;

/// Largest element count a kernel accepts. Kernels index with 64-bit signed
/// integers, and the byte offset of the last element of an 8-byte type must
/// stay below 2^63.
pub const MAX_KERNEL_ELEMENTS: u64 = (i64::MAX as u64) / 8;

/// Words (u64) before the per-block partials in a loss workspace: loss sum,
/// valid count, first bad label and the finished-block counter, in that
/// order (see `kernels/common.cuh`).
pub const WORK_HEADER_WORDS: usize = 4;

/// A shape that the kernels cannot handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    message: String,
}

impl ShapeError {
    /// Creates an error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        ShapeError {
            message: message.into(),
        }
    }

    /// Returns the message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ShapeError {}

/// Assignment of the rows of an outer x C x inner blob to the threads of a
/// row kernel. The discriminant is the `mapping` argument of the kernels
/// (`MAP_THREAD`, `MAP_WARP`, `MAP_BLOCK` in `kernels/common.cuh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum RowMapping {
    /// One thread per row.
    Thread = 0,
    /// One warp per row.
    Warp = 1,
    /// One block per row.
    Block = 2,
}

impl RowMapping {
    /// Picks the mapping for rows of `channels` elements spaced `inner` apart.
    pub fn for_shape(channels: usize, inner: usize) -> RowMapping {
        if inner >= THREAD_ROW_MIN_INNER || channels <= THREAD_ROW_MAX_CHANNELS {
            RowMapping::Thread
        } else if channels <= WARP_ROW_MAX_CHANNELS {
            RowMapping::Warp
        } else {
            RowMapping::Block
        }
    }

    /// Returns the number of rows one block of [`BLOCK_THREADS`] handles per
    /// step of the grid-stride loop.
    pub fn rows_per_block(self) -> u32 {
        match self {
            RowMapping::Thread => BLOCK_THREADS,
            RowMapping::Warp => BLOCK_THREADS / WARP_THREADS,
            RowMapping::Block => 1,
        }
    }

    /// Returns the value passed as the kernels' `mapping` argument.
    pub fn as_kernel_arg(self) -> i32 {
        self as i32
    }
}

/// Launch of a row kernel over an outer x C x inner blob.
#[derive(Debug, Clone, Copy)]
pub struct RowLaunch {
    /// Assignment of rows to threads.
    pub mapping: RowMapping,
    /// Number of rows, outer x inner.
    pub rows: u64,
    /// Number of elements, outer x C x inner.
    pub elements: u64,
    /// Grid and block; no dynamic shared memory.
    pub config: LaunchConfig,
}

/// Launch of an elementwise kernel.
#[derive(Debug, Clone, Copy)]
pub struct ElementwiseLaunch {
    /// Number of elements.
    pub elements: u64,
    /// Grid and block; no dynamic shared memory.
    pub config: LaunchConfig,
}

/// Returns the product of `dims`, or an error when it exceeds
/// [`MAX_KERNEL_ELEMENTS`] (or overflows).
pub fn checked_elements(dims: &[usize]) -> Result<u64, ShapeError> {
    let mut product: u64 = 1;
    for &dim in dims {
        let dim = u64::try_from(dim).map_err(|_| too_many(dims))?;
        product = product.checked_mul(dim).ok_or_else(|| too_many(dims))?;
    }
    if product > MAX_KERNEL_ELEMENTS {
        return Err(too_many(dims));
    }
    Ok(product)
}

fn too_many(dims: &[usize]) -> ShapeError {
    let shown: Vec<String> = dims.iter().map(usize::to_string).collect();
    ShapeError::new(format!(
        "shape {} has more elements than the GPU kernels can index \
         (at most {MAX_KERNEL_ELEMENTS})",
        shown.join(" x ")
    ))
}

/// Returns `ceil(work / per_block)` blocks, clamped to `1..=MAX_GRID_BLOCKS`.
fn grid_blocks(work: u64, per_block: u32) -> u32 {
    let blocks = work.div_ceil(u64::from(per_block.max(1)));
    let capped = blocks.clamp(1, u64::from(MAX_GRID_BLOCKS));
    // The clamp keeps the value within u32.
    u32::try_from(capped).unwrap_or(MAX_GRID_BLOCKS)
}

fn config(grid: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid, 1, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Computes the launch of a row kernel for a blob of `outer` x `channels` x
/// `inner` elements. A blob with no rows still gets one block, so that loss
/// kernels write a zero sum.
pub fn row_launch(outer: usize, channels: usize, inner: usize) -> Result<RowLaunch, ShapeError> {
    let elements = checked_elements(&[outer, channels, inner])?;
    let rows = checked_elements(&[outer, inner])?;
    let mapping = RowMapping::for_shape(channels, inner);
    Ok(RowLaunch {
        mapping,
        rows,
        elements,
        config: config(grid_blocks(rows, mapping.rows_per_block())),
    })
}

/// Computes the launch of an elementwise kernel over `elements` elements
/// (at least one block).
pub fn elementwise_launch(elements: usize) -> Result<ElementwiseLaunch, ShapeError> {
    let elements = checked_elements(&[elements])?;
    Ok(ElementwiseLaunch {
        elements,
        config: config(grid_blocks(elements, BLOCK_THREADS)),
    })
}

/// Returns the length in u64 words of the zeroed workspace a loss kernel
/// launched with `config` needs: the header plus a sum and a count per block.
pub fn work_words(config: &LaunchConfig) -> usize {
    // A grid never exceeds MAX_GRID_BLOCKS, so this cannot overflow.
    WORK_HEADER_WORDS + 2 * config.grid_dim.0 as usize
}
