//! Softmax along an axis.

use num_traits::Float;

use super::math::{
    acc_view, exp, finish_output, max, max_keep_first, multiversion, output_view, sum_map,
    sum_map2, Buffers,
};
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
/// Caffe's CPU order of operations; `e^x` in f32 comes from
/// [`exp_f32`](super::math::exp_f32), within 1 ulp of the correctly rounded
/// value. `engine` is read and ignored.
pub struct SoftmaxLayer<T: Element> {
    info: LayerInfo,
    axis_param: i32,
    dims: Option<AxisDims>,
    buffers: Buffers<T::Acc>,
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

impl<T: Element> SoftmaxLayer<T> {
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
            buffers: Buffers::default(),
        })
    }
}

multiversion! {
    /// Writes the softmax of `x` along the axis described by `dims` into `y`.
    ///
    /// Follows Caffe's order: the maximum with `std::max` semantics,
    /// `e^(x - max)`, their sum, then one division per element. `work` is
    /// resized to `2 × inner`.
    pub fn softmax_forward[A](x: &[A], y: &mut [A], dims: AxisDims, work: &mut Vec<A>) {
        let AxisDims {
            outer,
            channels,
            inner,
        } = dims;
        let dim = channels * inner;
        if dim == 0 {
            return;
        }
        let rows = x.chunks_exact(dim).zip(y.chunks_exact_mut(dim)).take(outer);
        if inner == 1 {
            for (x_row, y_row) in rows {
                softmax_row(x_row, y_row);
            }
            return;
        }
        work.resize(2 * inner, A::zero());
        let (max, sum) = work.split_at_mut(inner);
        for (x_row, y_row) in rows {
            softmax_planes(x_row, y_row, max, sum);
        }
    }
}

/// Writes the softmax of one contiguous row (inner size 1) into `y`.
#[inline(always)]
fn softmax_row<A: Float + 'static>(x: &[A], y: &mut [A]) {
    let m = max(x);
    for (out, &v) in y.iter_mut().zip(x) {
        *out = exp(v - m);
    }
    let sum = sum_map(y, |e| e);
    for out in y.iter_mut() {
        *out = *out / sum;
    }
}

/// Writes the softmax across the channel planes of one outer index (inner
/// size > 1) into `y`, each position on its own, with `max` and `sum` of
/// length inner as work.
#[inline(always)]
fn softmax_planes<A: Float + 'static>(x: &[A], y: &mut [A], max: &mut [A], sum: &mut [A]) {
    let inner = max.len();
    max.copy_from_slice(&x[..inner]);
    for x_c in x.chunks_exact(inner).skip(1) {
        for (m, &v) in max.iter_mut().zip(x_c) {
            *m = max_keep_first(*m, v);
        }
    }
    sum.iter_mut().for_each(|s| *s = A::zero());
    for (x_c, y_c) in x.chunks_exact(inner).zip(y.chunks_exact_mut(inner)) {
        for (((out, &v), &m), s) in y_c.iter_mut().zip(x_c).zip(&*max).zip(sum.iter_mut()) {
            let e = exp(v - m);
            *out = e;
            *s = *s + e;
        }
    }
    for y_c in y.chunks_exact_mut(inner) {
        for (out, &s) in y_c.iter_mut().zip(&*sum) {
            *out = *out / s;
        }
    }
}

multiversion! {
    /// Writes the softmax gradient `dx = (dy - Σ_c dy_c y_c) y` into `dx`, in
    /// Caffe's order. `work` is resized to `inner`.
    pub fn softmax_backward[A](y: &[A], dy: &[A], dx: &mut [A], dims: AxisDims, work: &mut Vec<A>) {
        let AxisDims {
            channels, inner, ..
        } = dims;
        let dim = channels * inner;
        if dim == 0 {
            return;
        }
        let rows = y.chunks_exact(dim).zip(dy.chunks_exact(dim)).zip(dx.chunks_exact_mut(dim));
        if inner == 1 {
            for ((y_row, dy_row), dx_row) in rows {
                let dot = sum_map2(y_row, dy_row, |a, b| a * b);
                for ((out, &a), &b) in dx_row.iter_mut().zip(y_row).zip(dy_row) {
                    *out = (b - dot) * a;
                }
            }
            return;
        }
        work.resize(inner, A::zero());
        let dot = work.as_mut_slice();
        for ((y_row, dy_row), dx_row) in rows {
            dot.iter_mut().for_each(|d| *d = A::zero());
            for (y_c, dy_c) in y_row.chunks_exact(inner).zip(dy_row.chunks_exact(inner)) {
                for ((d, &a), &b) in dot.iter_mut().zip(y_c).zip(dy_c) {
                    *d = *d + a * b;
                }
            }
            let planes = y_row.chunks_exact(inner).zip(dy_row.chunks_exact(inner));
            for ((y_c, dy_c), dx_c) in planes.zip(dx_row.chunks_exact_mut(inner)) {
                for (((out, &a), &b), &d) in dx_c.iter_mut().zip(y_c).zip(dy_c).zip(&*dot) {
                    *out = (b - d) * a;
                }
            }
        }
    }
}

impl<T: Element> Layer<T> for SoftmaxLayer<T> {
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
        let buffers = &mut self.buffers;
        let x = acc_view(bottom[0].data(), &mut buffers.input);
        let top_data = top[0].data_mut();
        let y = output_view(top_data, &mut buffers.output);
        softmax_forward(x, y, dims, &mut buffers.work);
        finish_output(top[0].data_mut(), &buffers.output);
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob<T>],
        propagate_down: &[bool],
        _bottom: &[&Blob<T>],
        bottom_diff: &mut [Vec<T>],
    ) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let dims = self.dims.unwrap_or(AxisDims::new(top[0].shape(), 0));
        let buffers = &mut self.buffers;
        let y = acc_view(top[0].data(), &mut buffers.input);
        let dy = acc_view(top[0].diff(), &mut buffers.second_input);
        let dx = output_view(&mut bottom_diff[0], &mut buffers.output);
        softmax_backward(y, dy, dx, dims, &mut buffers.work);
        finish_output(&mut bottom_diff[0], &buffers.output);
        Ok(())
    }
}
