//! Input: declares the blobs a net is fed from outside.

use super::{Layer, LayerInfo};
use crate::blob::Blob;
use crate::caffe::LayerParameter;
use crate::element::Element;
use crate::error::Result;

/// Declares external blobs and their shapes; the net fills them.
///
/// # Tops
/// One per declared blob. `input_param.shape` gives one shape for all tops or
/// one per top.
pub struct InputLayer {
    info: LayerInfo,
    shapes: Vec<Vec<usize>>,
}

impl InputLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(0, 0)?;
        let declared = param
            .input_param
            .as_ref()
            .map_or_else(Vec::new, |p| p.shape.clone());
        let mut shapes = Vec::with_capacity(declared.len());
        for (i, shape) in declared.iter().enumerate() {
            let dims = shape
                .dim
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<std::result::Result<Vec<usize>, _>>()
                .map_err(|_| {
                    info.config_error(format!(
                        "input_param.shape[{i}] has a negative dimension: {:?}",
                        shape.dim
                    ))
                })?;
            shapes.push(dims);
        }
        let tops = info.tops.len();
        if !(shapes.is_empty() || shapes.len() == tops || shapes.len() == 1) {
            return Err(info.config_error(format!(
                "input_param must give no shape, 1 shape or one per top ({tops}), got {}",
                shapes.len()
            )));
        }
        Ok(InputLayer { info, shapes })
    }

    /// Declared shape of top `index`.
    pub fn shape(&self, index: usize) -> Option<&[usize]> {
        let i = if self.shapes.len() == 1 { 0 } else { index };
        self.shapes.get(i).map(Vec::as_slice)
    }
}

impl<T: Element> Layer<T> for InputLayer {
    fn info(&self) -> &LayerInfo {
        &self.info
    }

    fn allows_backward(&self, _index: usize) -> bool {
        false
    }

    fn reshape(&mut self, _bottom_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok((0..self.info.tops.len())
            .map(|i| self.shape(i).map_or_else(Vec::new, <[usize]>::to_vec))
            .collect())
    }

    fn forward(&mut self, _bottom: &[&Blob<T>], _top: &mut [Blob<T>]) -> Result<()> {
        Ok(())
    }

    fn backward(
        &mut self,
        _top: &[&Blob<T>],
        _propagate_down: &[bool],
        _bottom: &[&Blob<T>],
        _bottom_diff: &mut [Vec<T>],
    ) -> Result<()> {
        Ok(())
    }
}
