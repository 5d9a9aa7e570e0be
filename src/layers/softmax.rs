//! Softmax along an axis.

use num_traits::{Float, Zero};

use super::{Layer, LayerInfo};
use crate::blob::Blob;
use crate::caffe::LayerParameter;
use crate::element::Element;
use crate::error::Result;

/// Softmax of each fibre along `softmax_param.axis`.
///
/// # Bottoms
/// - `bottom[0]`: scores of any shape; the axis has C classes.
///
/// # Tops
/// - `top[0]`: probabilities, same shape.
///
/// # Formula
/// With outer = product of the dims before the axis and inner = product after,
/// for each (o, s): `y_c = exp(x_c - max_k x_k) / Σ_k exp(x_k - max_k x_k)`.
/// Gradient: `dx_c = y_c (dy_c - Σ_k dy_k y_k)`.
///
/// # Parameters
/// - `softmax_param.axis` (default 1; negative counts from the end).
///
/// # Caffe compatibility
/// Same numbers as Caffe's CPU Softmax; `engine` is read and ignored.
pub struct SoftmaxLayer {
    info: LayerInfo,
    axis_param: i32,
    dims: Option<AxisDims>,
}

/// Sizes of a blob around an axis: element (o, c, s) is at `(o * c_dim + c) * inner + s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisDims {
    /// Product of the dims before the axis.
    pub outer: usize,
    /// Size of the axis.
    pub channels: usize,
    /// Product of the dims after the axis.
    pub inner: usize,
}

impl AxisDims {
    /// Splits `shape` around `axis`.
    pub fn new(shape: &[usize], axis: usize) -> Self {
        AxisDims {
            outer: shape[..axis].iter().product(),
            channels: shape.get(axis).copied().unwrap_or(1),
            inner: shape.get(axis + 1..).map_or(1, |s| s.iter().product()),
        }
    }
}

impl SoftmaxLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(1, 1)?;
        info.expect_tops(1, 1)?;
        let axis_param = param.softmax_param.as_ref().map_or(1, |p| p.axis());
        Ok(SoftmaxLayer {
            info,
            axis_param,
            dims: None,
        })
    }
}

/// Writes the softmax of `x` along the axis described by `dims` into `y`.
pub fn softmax_forward<T: Element>(x: &[T], y: &mut [T], dims: AxisDims) {
    let AxisDims {
        outer,
        channels,
        inner,
    } = dims;
    let dim = channels * inner;
    if dim == 0 {
        return;
    }
    let mut max = vec![T::Acc::neg_infinity(); inner];
    let mut sum = vec![T::Acc::zero(); inner];
    for (x_row, y_row) in x.chunks_exact(dim).zip(y.chunks_exact_mut(dim)).take(outer) {
        max.iter_mut().for_each(|m| *m = T::Acc::neg_infinity());
        sum.iter_mut().for_each(|s| *s = T::Acc::zero());
        for x_c in x_row.chunks_exact(inner) {
            for (m, v) in max.iter_mut().zip(x_c) {
                // Written so that a NaN score makes the max NaN, as Caffe's
                // comparison-based max does for a NaN in the first channel.
                let v = v.to_acc();
                if v > *m || v.is_nan() {
                    *m = v;
                }
            }
        }
        for (x_c, y_c) in x_row.chunks_exact(inner).zip(y_row.chunks_exact_mut(inner)) {
            for s in 0..inner {
                let e = (x_c[s].to_acc() - max[s]).exp();
                sum[s] = sum[s] + e;
                y_c[s] = T::from_acc(e);
            }
        }
        for y_c in y_row.chunks_exact_mut(inner) {
            for s in 0..inner {
                y_c[s] = T::from_acc(y_c[s].to_acc() / sum[s]);
            }
        }
    }
}

/// Writes the softmax gradient `dx = y (dy - Σ dy y)` into `dx`.
pub fn softmax_backward<T: Element>(y: &[T], dy: &[T], dx: &mut [T], dims: AxisDims) {
    let AxisDims {
        channels, inner, ..
    } = dims;
    let dim = channels * inner;
    if dim == 0 {
        return;
    }
    let mut dot = vec![T::Acc::zero(); inner];
    let rows = y.chunks_exact(dim).zip(dy.chunks_exact(dim));
    for ((y_row, dy_row), dx_row) in rows.zip(dx.chunks_exact_mut(dim)) {
        dot.iter_mut().for_each(|d| *d = T::Acc::zero());
        for (y_c, dy_c) in y_row.chunks_exact(inner).zip(dy_row.chunks_exact(inner)) {
            for s in 0..inner {
                dot[s] = dot[s] + y_c[s].to_acc() * dy_c[s].to_acc();
            }
        }
        let chunks = y_row.chunks_exact(inner).zip(dy_row.chunks_exact(inner));
        for ((y_c, dy_c), dx_c) in chunks.zip(dx_row.chunks_exact_mut(inner)) {
            for s in 0..inner {
                dx_c[s] = T::from_acc(y_c[s].to_acc() * (dy_c[s].to_acc() - dot[s]));
            }
        }
    }
}

impl<T: Element> Layer<T> for SoftmaxLayer {
    fn info(&self) -> &LayerInfo {
        &self.info
    }

    fn allows_backward(&self, _index: usize) -> bool {
        true
    }

    fn reshape(&mut self, bottom_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottom_shapes[0];
        let axis = self
            .info
            .axis("softmax_param.axis", self.axis_param, 0, shape)?;
        self.dims = Some(AxisDims::new(shape, axis));
        Ok(vec![shape.to_vec()])
    }

    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()> {
        let dims = self.dims.unwrap_or(AxisDims::new(bottom[0].shape(), 0));
        softmax_forward(bottom[0].data(), top[0].data_mut(), dims);
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob<T>],
        propagate_down: &[bool],
        _bottom: &[&Blob<T>],
        bottom_diff: &mut [Vec<T>],
    ) -> Result<()> {
        if propagate_down[0] {
            let dims = self.dims.unwrap_or(AxisDims::new(top[0].shape(), 0));
            softmax_backward(top[0].data(), top[0].diff(), &mut bottom_diff[0], dims);
        }
        Ok(())
    }
}
