//! N-d blobs of data and gradient, laid out as Caffe lays them out.

use crate::element::Element;
use crate::error::{Error, Result};

/// Number of elements of `shape`, or `None` when the product overflows `usize`.
pub fn shape_count(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &dim| acc.checked_mul(dim))
}

/// Formats a shape as Caffe prints it: `2 3 4 5 (120)`.
pub fn shape_string(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let count = shape_count(shape).map_or_else(|| "overflow".to_string(), |c| c.to_string());
    format!("{} ({count})", dims.join(" "))
}

/// A row-major N-d array with its gradient (`diff`) of the same shape.
///
/// Axis 0 is the outermost. A 0-axis blob holds one value (a loss).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blob<T: Element> {
    shape: Vec<usize>,
    data: Vec<T>,
    diff: Vec<T>,
}

impl<T: Element> Blob<T> {
    /// Creates a zero-filled blob of `shape`.
    pub fn zeros(shape: &[usize]) -> Result<Self> {
        let count = checked_count(shape)?;
        Ok(Blob {
            shape: shape.to_vec(),
            data: vec![T::default(); count],
            diff: vec![T::default(); count],
        })
    }

    /// Creates a blob from `data`, whose length must match `shape`.
    pub fn from_data(shape: &[usize], data: Vec<T>) -> Result<Self> {
        let count = checked_count(shape)?;
        if data.len() != count {
            return Err(Error::Usage(format!(
                "blob data has {} values but shape {} needs {count}",
                data.len(),
                shape_string(shape)
            )));
        }
        Ok(Blob {
            shape: shape.to_vec(),
            data,
            diff: vec![T::default(); count],
        })
    }

    /// Changes the shape, keeping the storage when the count is unchanged and
    /// zero-filling it otherwise.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<()> {
        let count = checked_count(shape)?;
        self.shape = shape.to_vec();
        if self.data.len() != count {
            self.data = vec![T::default(); count];
            self.diff = vec![T::default(); count];
        }
        Ok(())
    }

    /// Shape, outermost axis first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of axes.
    pub fn num_axes(&self) -> usize {
        self.shape.len()
    }

    /// Total number of elements.
    pub fn count(&self) -> usize {
        self.data.len()
    }

    /// Product of the dimensions of axes `start..end` (1 for an empty range).
    pub fn count_range(&self, start: usize, end: usize) -> usize {
        count_range(&self.shape, start, end)
    }

    /// Values.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// Values, writable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Gradient.
    pub fn diff(&self) -> &[T] {
        &self.diff
    }

    /// Gradient, writable.
    pub fn diff_mut(&mut self) -> &mut [T] {
        &mut self.diff
    }

    /// Values and gradient together, the first read-only.
    pub fn data_and_diff_mut(&mut self) -> (&[T], &mut [T]) {
        (&self.data, &mut self.diff)
    }

    /// Takes the gradient buffer out, leaving an empty one.
    pub fn take_diff(&mut self) -> Vec<T> {
        std::mem::take(&mut self.diff)
    }

    /// Puts a gradient buffer back; its length must be the blob's count.
    pub fn set_diff(&mut self, diff: Vec<T>) {
        debug_assert_eq!(diff.len(), self.data.len());
        self.diff = diff;
    }
}

/// Product of `shape[start..end]`; out-of-range bounds are clamped.
pub fn count_range(shape: &[usize], start: usize, end: usize) -> usize {
    let end = end.min(shape.len());
    let start = start.min(end);
    shape[start..end].iter().product()
}

/// Legacy 4-d reading of a shape as Caffe's `num()`, `channels()`, `height()`
/// and `width()` do: axis `index` if present, else 1.
pub fn legacy_dim(shape: &[usize], index: usize) -> usize {
    shape.get(index).copied().unwrap_or(1)
}

/// Resolves a possibly negative `axis` against `num_axes` as Caffe's
/// `CanonicalAxisIndex` does; `None` when it is out of range.
pub fn canonical_axis(axis: i32, num_axes: usize) -> Option<usize> {
    let n = i64::try_from(num_axes).ok()?;
    let axis = i64::from(axis);
    let resolved = if axis < 0 { axis + n } else { axis };
    if (0..n).contains(&resolved) {
        usize::try_from(resolved).ok()
    } else {
        None
    }
}

/// Largest number of axes of a blob, Caffe 1.0's `kMaxBlobAxes`.
pub const MAX_AXES: usize = 32;

/// Largest number of elements of a blob: Caffe 1.0's `Blob::Reshape` rejects
/// counts above `INT_MAX`.
pub const MAX_COUNT: usize = i32::MAX as usize;

/// Checks `shape` against Caffe 1.0's blob limits and returns its element
/// count, or a message saying which limit it breaks.
///
/// The limit applies to the product of the non-zero dimensions, which is
/// stricter than Caffe for shapes with a zero: it keeps every partial product
/// (such as [`count_range`]) within the limit too.
pub fn check_shape(shape: &[usize]) -> std::result::Result<usize, String> {
    if shape.len() > MAX_AXES {
        return Err(format!(
            "shape has {} axes; Caffe 1.0 allows at most {MAX_AXES}",
            shape.len()
        ));
    }
    let non_zero = shape
        .iter()
        .filter(|&&dim| dim != 0)
        .try_fold(1usize, |acc, &dim| acc.checked_mul(dim));
    match non_zero {
        Some(count) if count <= MAX_COUNT => Ok(if shape.contains(&0) { 0 } else { count }),
        _ => Err(format!(
            "shape {} is too large: the product of its non-zero dimensions must be at most \
             {MAX_COUNT} (INT_MAX, Caffe 1.0's limit on the elements of a blob)",
            shape_string(shape)
        )),
    }
}

fn checked_count(shape: &[usize]) -> Result<usize> {
    check_shape(shape).map_err(|message| Error::Usage(format!("invalid blob {message}")))
}
