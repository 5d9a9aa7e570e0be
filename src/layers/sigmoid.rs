//! Sigmoid: the logistic function, elementwise.

use num_traits::{Float, One};

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
pub struct SigmoidLayer {
    info: LayerInfo,
}

impl SigmoidLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(1, 1)?;
        info.expect_tops(1, 1)?;
        Ok(SigmoidLayer { info })
    }
}

/// The logistic function in the accumulation type.
#[inline]
pub fn sigmoid<A: Float>(x: A) -> A {
    A::one() / (A::one() + (-x).exp())
}

impl<T: Element> Layer<T> for SigmoidLayer {
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
        for (y, x) in top[0].data_mut().iter_mut().zip(bottom[0].data()) {
            *y = T::from_acc(sigmoid(x.to_acc()));
        }
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
        let pairs = top[0].data().iter().zip(top[0].diff());
        for (dx, (y, dy)) in bottom_diff[0].iter_mut().zip(pairs) {
            let y = y.to_acc();
            *dx = T::from_acc(dy.to_acc() * y * (T::Acc::one() - y));
        }
        Ok(())
    }
}
