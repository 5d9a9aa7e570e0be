//! Sigmoid: the logistic function, elementwise.

use num_traits::Float;

use super::math::{acc_view, exp, finish_output, multiversion, output_view, Buffers};
use super::{Layer, LayerInfo};
use crate::blob::Blob;
use crate::caffe::LayerParameter;
use crate::element::Element;
use crate::error::Result;

/// Elementwise logistic function.
///
/// # Bottoms
/// - `bottom[0]`: any shape.
///
/// # Tops
/// - `top[0]`: same shape; may be the bottom itself (in place).
///
/// # Formula
/// `y = 1 / (1 + exp(-x))`; gradient `dx = dy y (1 - y)`.
///
/// # Parameters
/// `sigmoid_param.engine` is read and ignored.
pub struct SigmoidLayer<T: Element> {
    info: LayerInfo,
    buffers: Buffers<T::Acc>,
}

impl<T: Element> SigmoidLayer<T> {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(1, 1)?;
        info.expect_tops(1, 1)?;
        Ok(SigmoidLayer {
            info,
            buffers: Buffers::default(),
        })
    }
}

/// Returns the logistic function `1 / (1 + e^-x)` in the accumulation type.
#[inline(always)]
pub fn sigmoid<A: Float + 'static>(x: A) -> A {
    A::one() / (A::one() + exp(-x))
}

multiversion! {
    /// Writes `sigmoid(x)` into `y`.
    fn sigmoid_map[A](x: &[A], y: &mut [A]) {
        for (out, &v) in y.iter_mut().zip(x) {
            *out = sigmoid(v);
        }
    }
}

multiversion! {
    /// Writes `dy y (1 - y)` into `dx`.
    fn sigmoid_gradient[A](y: &[A], dy: &[A], dx: &mut [A]) {
        for ((out, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
            *out = dy * y * (A::one() - y);
        }
    }
}

impl<T: Element> Layer<T> for SigmoidLayer<T> {
    fn info(&self) -> &LayerInfo {
        &self.info
    }

    fn allows_backward(&self, _index: usize) -> bool {
        true
    }

    fn reshape(&mut self, bottom_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(vec![bottom_shapes[0].to_vec()])
    }

    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()> {
        let buffers = &mut self.buffers;
        let x = acc_view(bottom[0].data(), &mut buffers.input);
        let y = output_view(top[0].data_mut(), &mut buffers.output);
        sigmoid_map(x, y);
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
        let buffers = &mut self.buffers;
        let y = acc_view(top[0].data(), &mut buffers.input);
        let dy = acc_view(top[0].diff(), &mut buffers.second_input);
        let dx = output_view(&mut bottom_diff[0], &mut buffers.output);
        sigmoid_gradient(y, dy, dx);
        finish_output(&mut bottom_diff[0], &buffers.output);
        Ok(())
    }
}
