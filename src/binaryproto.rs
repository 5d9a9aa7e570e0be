//! Reading and writing Caffe's `.binaryproto` files: one serialized
//! `caffe.BlobProto`, as written by Caffe's `compute_image_mean` or by hand for
//! an InfogainLoss matrix.

use std::io::Write;
use std::path::Path;

use prost::Message;

use crate::caffe;
use crate::error::{Error, Result};

/// The shape and values of a blob read from a `.binaryproto` file.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobData {
    /// Dimensions, outermost first. An empty shape is a scalar with one value.
    pub shape: Vec<usize>,
    /// Values in row-major order, `shape.iter().product()` of them.
    pub values: Vec<f64>,
}

/// Reads the `caffe.BlobProto` stored in the file at `path`.
///
/// The shape comes from the legacy `num`, `channels`, `height` and `width`
/// fields when any of them is set (a 4-d shape, as Caffe 1.0's
/// `Blob::FromProto` reads it), and from `shape` otherwise. The values come
/// from `double_data` when it is not empty and from `data` otherwise. `diff`
/// and `double_diff` are ignored.
///
/// A file that is missing, not a regular file, empty, truncated or not a
/// BlobProto, a negative dimension, an element count that overflows `usize`,
/// or a number of values that does not match the shape is an [`Error::File`]
/// naming `path`.
pub fn read_blob_proto(path: &Path) -> Result<BlobData> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| Error::file(path, format!("failed to read blob file: {error}")))?;
    if !metadata.is_file() {
        // A device such as /dev/zero never ends and a pipe may never close.
        return Err(Error::file(
            path,
            "failed to read blob file: not a regular file (a folder, device or pipe)",
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|error| Error::file(path, format!("failed to read blob file: {error}")))?;
    if bytes.is_empty() {
        return Err(Error::file(
            path,
            "blob file is empty; expected a serialized caffe.BlobProto",
        ));
    }
    let proto = caffe::BlobProto::decode(bytes.as_slice()).map_err(|error| {
        Error::file(
            path,
            format!("invalid blob file, not a complete caffe.BlobProto: {error}"),
        )
    })?;

    let legacy = [proto.num, proto.channels, proto.height, proto.width];
    let dims: Vec<i64> = if legacy.iter().any(Option::is_some) {
        legacy
            .iter()
            .map(|dim| i64::from(dim.unwrap_or(0)))
            .collect()
    } else {
        proto.shape.map(|shape| shape.dim).unwrap_or_default()
    };
    let shape = dims
        .iter()
        .map(|&dim| {
            usize::try_from(dim).map_err(|_| {
                Error::file(
                    path,
                    format!("invalid blob shape {dims:?}: dimension {dim} is negative"),
                )
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let count = element_count(&shape).ok_or_else(|| {
        Error::file(
            path,
            format!("invalid blob shape {shape:?}: the element count overflows"),
        )
    })?;

    let (values, field) = if proto.double_data.is_empty() {
        let values = proto.data.iter().map(|&value| f64::from(value)).collect();
        (values, "data")
    } else {
        (proto.double_data, "double_data")
    };
    if values.len() != count {
        return Err(Error::file(
            path,
            format!(
                "blob shape {shape:?} needs {count} values, but {field} has {}",
                values.len()
            ),
        ));
    }
    Ok(BlobData { shape, values })
}

/// Writes `values` with `shape` to `path` as a `caffe.BlobProto` with `shape`
/// and single-precision `data`.
///
/// The file is written under a temporary name in the same directory and then
/// renamed, so a failed write leaves no partial file at `path`. A number of
/// values that does not match the shape, or a failed write, is an
/// [`Error::File`].
pub fn write_blob_proto(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let proto = caffe::BlobProto {
        shape: Some(blob_shape(path, shape, values.len())?),
        data: values.to_vec(),
        ..Default::default()
    };
    write_atomically(path, &proto.encode_to_vec())
}

/// Writes `values` with `shape` to `path` as a `caffe.BlobProto` with `shape`
/// and double-precision `double_data`.
///
/// Errors and the atomic write are those of [`write_blob_proto`].
pub fn write_blob_proto_f64(path: &Path, shape: &[usize], values: &[f64]) -> Result<()> {
    let proto = caffe::BlobProto {
        shape: Some(blob_shape(path, shape, values.len())?),
        double_data: values.to_vec(),
        ..Default::default()
    };
    write_atomically(path, &proto.encode_to_vec())
}

/// Returns the product of `shape`, or None on overflow.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |count, &dim| count.checked_mul(dim))
}

/// Builds the `BlobShape` of `shape` after checking that its element count
/// equals `value_count`.
fn blob_shape(path: &Path, shape: &[usize], value_count: usize) -> Result<caffe::BlobShape> {
    let count = element_count(shape).ok_or_else(|| {
        Error::file(
            path,
            format!("cannot write blob shape {shape:?}: the element count overflows"),
        )
    })?;
    if count != value_count {
        return Err(Error::file(
            path,
            format!(
                "cannot write blob shape {shape:?}: expected {count} values, got {value_count}"
            ),
        ));
    }
    let dim = shape
        .iter()
        .map(|&dim| {
            i64::try_from(dim).map_err(|_| {
                Error::file(
                    path,
                    format!("cannot write blob shape {shape:?}: dimension {dim} exceeds int64"),
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok(caffe::BlobShape { dim })
}

/// Writes `bytes` to a temporary file next to `path` and renames it to `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let failed =
        |error: std::io::Error| Error::file(path, format!("failed to write blob file: {error}"));
    let mut temporary = tempfile::NamedTempFile::new_in(directory).map_err(failed)?;
    temporary.write_all(bytes).map_err(failed)?;
    temporary.as_file().sync_all().map_err(failed)?;
    temporary
        .persist(path)
        .map_err(|error| failed(error.error))?;
    Ok(())
}
