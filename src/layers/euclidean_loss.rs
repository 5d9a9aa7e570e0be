//! EuclideanLoss: half the mean squared distance per sample.

use num_traits::{One, Zero};

use super::softmax_loss::check_same_num;
use super::{top_weight, warn_ignored, Layer, LayerInfo};
use crate::blob::{count_range, shape_string, Blob};
use crate::caffe::LayerParameter;
use crate::element::{acc, Element};
use crate::error::Result;

/// Sum of squared differences of two blobs, divided by 2N.
///
/// # Bottoms
/// - `bottom[0]`, `bottom[1]`: N × ... each, with the same count per sample.
///
/// # Tops
/// - `top[0]`: the loss, a 0-axis blob.
///
/// # Formula
/// `loss = Σ (a - b)² / (2N)`. Gradients: `da = w (a - b) / N`, `db = -w (a - b) / N`,
/// both bottoms receive one.
///
/// # Parameters
/// None; a `loss_param` is ignored with a warning, as Caffe ignores it.
pub struct EuclideanLossLayer {
    info: LayerInfo,
}

impl EuclideanLossLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 1)?;
        if param.loss_param.is_some() {
            warn_ignored(&info, "loss_param");
        }
        Ok(EuclideanLossLayer { info })
    }
}

impl<T: Element> Layer<T> for EuclideanLossLayer {
    fn info(&self) -> &LayerInfo {
        &self.info
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn allows_backward(&self, _index: usize) -> bool {
        true
    }

    fn reshape(&mut self, bottom_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (a, b) = (bottom_shapes[0], bottom_shapes[1]);
        check_same_num(&self.info, a, b)?;
        let (per_a, per_b) = (count_range(a, 1, a.len()), count_range(b, 1, b.len()));
        if per_a != per_b {
            return Err(self.info.bottom_shape_error(
                1,
                format!(
                    "expected {per_a} values per sample like bottom[0], got {per_b} \
                     (shapes {} and {}); both inputs must have the same count after axis 0",
                    shape_string(a),
                    shape_string(b)
                ),
            ));
        }
        Ok(vec![vec![]])
    }

    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()> {
        let num = bottom[0].shape().first().copied().unwrap_or(1);
        let dot =
            bottom[0]
                .data()
                .iter()
                .zip(bottom[1].data())
                .fold(T::Acc::zero(), |sum, (a, b)| {
                    let d = a.to_acc() - b.to_acc();
                    sum + d * d
                });
        let loss = dot / acc::<T::Acc>(num as f64) / acc::<T::Acc>(2.0);
        top[0].data_mut()[0] = T::from_acc(loss);
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob<T>],
        propagate_down: &[bool],
        bottom: &[&Blob<T>],
        bottom_diff: &mut [Vec<T>],
    ) -> Result<()> {
        let num = bottom[0].shape().first().copied().unwrap_or(1);
        let weight = top_weight(top[0]);
        for (i, diff) in bottom_diff.iter_mut().enumerate().take(2) {
            if !propagate_down[i] {
                continue;
            }
            let sign = if i == 0 {
                T::Acc::one()
            } else {
                -T::Acc::one()
            };
            let alpha = sign * weight / acc::<T::Acc>(num as f64);
            let pairs = bottom[0].data().iter().zip(bottom[1].data());
            for (d, (a, b)) in diff.iter_mut().zip(pairs) {
                *d = T::from_acc(alpha * (a.to_acc() - b.to_acc()));
            }
        }
        Ok(())
    }
}
