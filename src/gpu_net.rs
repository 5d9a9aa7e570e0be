//! Running a whole net on a CUDA device.

use std::path::Path;

use crate::caffe::Phase;
use crate::element::Element;
use crate::error::{Error, Result};

/// Runs `run` on the GPU.
pub fn run_on_gpu<T: Element>(
    _model: &Path,
    _inputs: &[String],
    _phase: Phase,
    _out: Option<&Path>,
) -> Result<()> {
    Err(Error::Device(
        "the GPU net runner is not wired yet".to_string(),
    ))
}

/// Runs `time` on the GPU.
pub fn time_on_gpu<T: Element>(_model: &Path, _iterations: usize) -> Result<()> {
    Err(Error::Device(
        "the GPU net runner is not wired yet".to_string(),
    ))
}
