//! Reading and writing .npy files as blob data.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement, WriteNpyExt};

use crate::element::Element;
use crate::error::{Error, Result};

/// Values of a .npy file in logical (C) order, with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyData {
    /// Shape, outermost axis first.
    pub shape: Vec<usize>,
    /// Values widened to f64, in row-major order whatever the file's order.
    pub values: Vec<f64>,
}

/// Reads a .npy file of any real or integer dtype or bool, converting the
/// values to f64. Fortran-ordered files are read in logical order.
///
/// Float16 and complex files are rejected with a message naming the dtype.
pub fn read_npy(path: &Path) -> Result<NpyData> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if meta.is_dir() {
        return Err(Error::file(path, "is a directory, expected a .npy file"));
    }
    check_data_length(path, meta.len())?;
    macro_rules! try_as {
        ($t:ty, $convert:expr) => {
            match read_as::<$t>(path) {
                Ok(array) => {
                    let shape = array.shape().to_vec();
                    let values = array.iter().map($convert).collect();
                    return Ok(NpyData { shape, values });
                }
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(e) => return Err(npy_error(path, e)),
            }
        };
    }
    try_as!(f32, |&v: &f32| f64::from(v));
    try_as!(f64, |&v: &f64| v);
    try_as!(i64, |&v: &i64| v as f64);
    try_as!(i32, |&v: &i32| f64::from(v));
    try_as!(i16, |&v: &i16| f64::from(v));
    try_as!(i8, |&v: &i8| f64::from(v));
    try_as!(u64, |&v: &u64| v as f64);
    try_as!(u32, |&v: &u32| f64::from(v));
    try_as!(u16, |&v: &u16| f64::from(v));
    try_as!(u8, |&v: &u8| f64::from(v));
    try_as!(bool, |&v: &bool| if v { 1.0 } else { 0.0 });
    Err(Error::file(
        path,
        format!(
            "unsupported .npy dtype {}; expected float32, float64, an integer type or bool, \
             so convert the data to float32 first",
            descriptor(path).map_or_else(|| "(unreadable header)".to_string(), |d| dtype_words(&d))
        ),
    ))
}

/// Checks that a file of `file_len` bytes contains as much data as its
/// header's shape and dtype need.
///
/// ndarray-npy allocates the whole buffer before reading, so a corrupt header
/// declaring billions of values would abort the process. Headers that cannot
/// be read, and dtypes without a fixed item size, are left to the full read.
fn check_data_length(path: &Path, file_len: u64) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let mut reader = BufReader::new(file);
    check_header(path, &mut reader, file_len)?;
    let Ok(header) = Header::from_reader(&mut reader) else {
        return Ok(());
    };
    let Ok(header_len) = reader.stream_position() else {
        return Ok(());
    };
    let descr = header.type_descriptor.to_string();
    let descr = descr.trim_matches('\'');
    let Some(item_size) = item_size(descr) else {
        return Ok(());
    };
    let needed = header
        .shape
        .iter()
        .try_fold(item_size, |bytes, &dim| bytes.checked_mul(dim as u64));
    let available = file_len.saturating_sub(header_len);
    match needed {
        Some(needed) if needed <= available => Ok(()),
        Some(needed) => Err(Error::file(
            path,
            format!(
                "truncated .npy file: shape {:?} of dtype {descr} needs {needed} bytes of data, \
                 the file holds {available}",
                header.shape
            ),
        )),
        None => Err(Error::file(
            path,
            format!(
                "corrupt .npy file: shape {:?} of dtype {descr} needs more bytes than a file \
                 can hold",
                header.shape
            ),
        )),
    }
}

/// Longest .npy header accepted, in bytes. NumPy's own reader
/// (`numpy.lib.format`, `_MAX_HEADER_SIZE`) rejects longer headers as unsafe
/// to parse.
const MAX_HEADER_BYTES: u64 = 10_000;

/// Deepest bracket nesting accepted in a .npy header. A numeric array's header
/// nests 2 levels (a dict holding the shape tuple). The header parser that
/// ndarray-npy uses (py_literal) takes time exponential in the depth, about
/// doubling with every 2 levels, so deep nesting must not reach it.
const MAX_HEADER_DEPTH: usize = 4;

/// Checks the preamble (magic, version, header length) and the header of a
/// .npy file before ndarray-npy reads them, then rewinds `reader`.
///
/// The header must fit in the file, since ndarray-npy allocates the declared
/// length first and a version 2 or 3 preamble can declare up to 4 GiB. It must
/// also be at most [`MAX_HEADER_BYTES`] long and nest at most
/// [`MAX_HEADER_DEPTH`] levels.
fn check_header(path: &Path, reader: &mut BufReader<File>, file_len: u64) -> Result<()> {
    let read_error = |e: std::io::Error| Error::file(path, format!("cannot read: {e}"));
    let mut preamble = Vec::with_capacity(12);
    reader
        .by_ref()
        .take(12)
        .read_to_end(&mut preamble)
        .map_err(read_error)?;
    if preamble.len() < 10 || !preamble.starts_with(b"\x93NUMPY") {
        return reader.rewind().map_err(read_error);
    }
    let (prefix_len, header_len) = match (preamble[6], preamble.get(8..12)) {
        (1, _) => {
            let length = u16::from_le_bytes([preamble[8], preamble[9]]);
            (10, u64::from(length))
        }
        (2 | 3, Some(&[a, b, c, d])) => (12, u64::from(u32::from_le_bytes([a, b, c, d]))),
        _ => return reader.rewind().map_err(read_error),
    };
    if prefix_len + header_len > file_len {
        return Err(Error::file(
            path,
            format!(
                "truncated .npy file: the header is {header_len} bytes long, but the file has \
                 only {file_len} bytes"
            ),
        ));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::file(
            path,
            format!(
                "corrupt .npy file: the header is {header_len} bytes long; like NumPy, this \
                 reader rejects headers over {MAX_HEADER_BYTES} bytes"
            ),
        ));
    }
    let mut header = Vec::new();
    reader
        .seek(SeekFrom::Start(prefix_len))
        .map_err(read_error)?;
    reader
        .by_ref()
        .take(header_len)
        .read_to_end(&mut header)
        .map_err(read_error)?;
    let depth = bracket_depth(&header);
    if depth > MAX_HEADER_DEPTH {
        return Err(Error::file(
            path,
            format!(
                "corrupt .npy file: the brackets of the header nest {depth} levels deep, more \
                 than the {MAX_HEADER_DEPTH} this reader accepts (a numeric array needs 2)"
            ),
        ));
    }
    reader.rewind().map_err(read_error)
}

/// Returns the deepest nesting of `(`, `[` and `{` in `text`, outside quoted
/// strings.
fn bracket_depth(text: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0;
    let mut quote = None;
    for &byte in text {
        match (quote, byte) {
            (Some(open), _) if byte == open => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(byte),
            (None, b'(' | b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, b')' | b']' | b'}') => depth = depth.saturating_sub(1),
            (None, _) => {}
        }
    }
    deepest
}

/// Bytes per element of a numeric or bool dtype descriptor such as `<f4` or
/// `|b1`; `None` for any other kind.
fn item_size(descr: &str) -> Option<u64> {
    let kind_and_size = descr.trim_start_matches(['<', '>', '|', '=']);
    let size = kind_and_size.strip_prefix(['f', 'i', 'u', 'b', 'c'])?;
    size.parse().ok()
}

fn read_as<T: ReadableElement>(path: &Path) -> std::result::Result<ArrayD<T>, ReadNpyError> {
    let file = File::open(path).map_err(ReadNpyError::Io)?;
    ArrayD::<T>::read_npy(BufReader::new(file))
}

fn npy_error(path: &Path, error: ReadNpyError) -> Error {
    let message = match error {
        ReadNpyError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "truncated .npy file: it ends inside the header or the data".to_string()
        }
        ReadNpyError::Io(e) => format!("cannot read .npy file: {e}"),
        ReadNpyError::MissingData => {
            "truncated .npy file: the data is shorter than the header's shape needs".to_string()
        }
        ReadNpyError::ExtraBytes(n) => {
            format!("corrupt .npy file: {n} bytes follow the data the header describes")
        }
        ReadNpyError::LengthOverflow => {
            "corrupt .npy file: the header's shape overflows the addressable size".to_string()
        }
        other => format!("invalid .npy file: {other}"),
    };
    Error::file(path, message)
}

/// Names a .npy type descriptor in words, for error messages: `<f2` is
/// `<f2 (float16)`.
fn dtype_words(descr: &str) -> String {
    let code = descr.trim_start_matches(['<', '>', '|', '=']);
    let name = match code {
        "f2" => "float16",
        "c8" => "complex64",
        "c16" => "complex128",
        "f16" => "float128",
        _ => return descr.to_string(),
    };
    format!("{descr} ({name})")
}

/// Reads the `descr` entry of a .npy header, for error messages.
fn descriptor(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let header = String::from_utf8_lossy(bytes.get(..bytes.len().min(512))?).to_string();
    let start = header.find("'descr'")?;
    let rest = &header[start + 7..];
    let open = rest.find('\'')?;
    let close = rest[open + 1..].find('\'')?;
    Some(rest[open + 1..open + 1 + close].to_string())
}

/// Reads a .npy file into elements of type `T`.
pub fn read_npy_as<T: Element>(path: &Path) -> Result<(Vec<usize>, Vec<T>)> {
    let data = read_npy(path)?;
    Ok((
        data.shape,
        data.values.into_iter().map(T::from_f64).collect(),
    ))
}

/// Writes `values` of `shape` as a .npy file: float64 for f64 elements,
/// float32 for the others. The file appears only once complete.
pub fn write_npy<T: Element>(path: &Path, shape: &[usize], values: &[T]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::file(dir, format!("cannot create a file here: {e}")))?;
    {
        let mut writer = BufWriter::new(temp.as_file());
        let result = if T::NAME == "f64" {
            let v: Vec<f64> = values.iter().map(|v| v.to_f64()).collect();
            ArrayD::from_shape_vec(IxDyn(shape), v)
                .map_err(|e| e.to_string())
                .and_then(|a| a.write_npy(&mut writer).map_err(|e| e.to_string()))
        } else {
            let v: Vec<f32> = values.iter().map(|v| v.to_f64() as f32).collect();
            ArrayD::from_shape_vec(IxDyn(shape), v)
                .map_err(|e| e.to_string())
                .and_then(|a| a.write_npy(&mut writer).map_err(|e| e.to_string()))
        };
        result.map_err(|e| Error::file(path, format!("cannot write .npy file: {e}")))?;
        writer
            .flush()
            .map_err(|e| Error::file(path, format!("cannot write .npy file: {e}")))?;
    }
    temp.persist(path)
        .map_err(|e| Error::file(path, format!("cannot write .npy file: {e}")))?;
    Ok(())
}
