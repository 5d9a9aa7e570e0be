//! The crate's one error type.
//!
//! Every failure reachable from input (a model file, a blob, a label, a data
//! file, the device) is a variant of [`Error`]. Messages start lowercase, name
//! the file, layer or blob involved and give the expected and actual values.

use std::path::{Path, PathBuf};

/// Result with the crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Origin of an error, for callers that branch on it (the CLI's exit status,
/// tests that check the kind of a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Prototxt text that does not parse.
    ModelText,
    /// A net that parses but cannot be built.
    ModelSemantics,
    /// A blob whose shape does not fit the layer.
    BlobShape,
    /// A label, similarity flag or target value that is out of range.
    LabelValue,
    /// A file that is missing, unreadable or corrupt.
    File,
    /// The CUDA driver or device.
    Device,
    /// A CUDA kernel that NVRTC failed to compile.
    KernelCompile,
    /// Invalid command-line usage.
    Usage,
}

/// Every failure of the library and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Prototxt text that does not parse: unknown field, enum value or syntax.
    #[error("{file}:{line}:{column}: {message}")]
    ModelText {
        /// Model file, as given by the user.
        file: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error; a tab counts as one column.
        column: usize,
        /// Description of the problem, naming the unknown name where there is one.
        message: String,
    },

    /// A net that parses but is invalid as a whole (unknown bottom, duplicate
    /// top, V0 format, mixed V1 and V2 layers).
    #[error("{file}: {message}")]
    Model {
        /// Model file, as given by the user.
        file: String,
        /// Description of the problem.
        message: String,
    },

    /// A layer whose parameters or bottom/top counts are invalid.
    #[error("layer '{layer}' ({layer_type}): {message}")]
    LayerConfig {
        /// Layer name.
        layer: String,
        /// Layer type, as in the prototxt.
        layer_type: String,
        /// Description of the problem, with the expected and actual values.
        message: String,
    },

    /// A bottom or top whose shape does not fit the layer.
    #[error("layer '{layer}' ({layer_type}): {blob}: {message}")]
    Shape {
        /// Layer name.
        layer: String,
        /// Layer type.
        layer_type: String,
        /// The blob, as `bottom[i] 'name'`.
        blob: String,
        /// Expected and actual shape or count, with a valid example.
        message: String,
    },

    /// A label (or target, similarity flag) that is not a valid value.
    #[error(
        "layer '{layer}' ({layer_type}): {blob}: invalid label {value} at flat position \
         {position}; expected an integer in [0, {max_valid}]{ignore}"
    )]
    Label {
        /// Layer name.
        layer: String,
        /// Layer type.
        layer_type: String,
        /// The label blob, as `bottom[i] 'name'`.
        blob: String,
        /// Flat index of the first invalid label.
        position: usize,
        /// The invalid value as stored.
        value: f64,
        /// The largest valid label (classes - 1).
        max_valid: i64,
        /// `" or the ignore_label N"` when the layer has one, else empty.
        ignore: String,
    },

    /// A data file (.npy, .binaryproto, model) that is missing, unreadable or
    /// corrupt.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Description of the problem.
        message: String,
    },

    /// The CUDA driver, the device or a device allocation.
    #[error("cuda: {0}")]
    Device(String),

    /// A kernel source that NVRTC rejected, with NVRTC's compile log.
    #[error("nvrtc failed to compile {file} for {arch}:\n{log}")]
    KernelCompile {
        /// Kernel file name, as in `kernels/`.
        file: String,
        /// Target architecture, e.g. `sm_90`.
        arch: String,
        /// NVRTC's compile log, one diagnostic per line.
        log: String,
    },

    /// Invalid command-line usage.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Returns the origin of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ModelText { .. } => ErrorKind::ModelText,
            Error::Model { .. } | Error::LayerConfig { .. } => ErrorKind::ModelSemantics,
            Error::Shape { .. } => ErrorKind::BlobShape,
            Error::Label { .. } => ErrorKind::LabelValue,
            Error::File { .. } => ErrorKind::File,
            Error::Device(_) => ErrorKind::Device,
            Error::KernelCompile { .. } => ErrorKind::KernelCompile,
            Error::Usage(_) => ErrorKind::Usage,
        }
    }

    /// Builds a [`Error::File`] for `path`.
    pub fn file(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::File {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// Builds a [`Error::Model`] for the model file `file`.
    pub fn model(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Model {
            file: file.into(),
            message: message.into(),
        }
    }
}
