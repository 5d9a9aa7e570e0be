//! SigmoidCrossEntropyLoss: logistic loss of logits against targets in [0, 1].

use num_traits::{Float, One, Zero};

use super::sigmoid::sigmoid;
use super::softmax_loss::check_same_num;
use super::{ignore_label, top_weight, Layer, LayerInfo, Normalization};
use crate::blob::{shape_string, Blob};
use crate::caffe::LayerParameter;
use crate::element::{acc, Element};
use crate::error::Result;

/// Cross-entropy of `sigmoid(x)` against targets, computed stably from logits.
///
/// # Bottoms
/// - `bottom[0]`: logits, N × ... .
/// - `bottom[1]`: targets with the same count, values in `[0, 1]` or
///   `ignore_label`.
///
/// # Tops
/// - `top[0]`: the loss, a 0-axis blob.
///
/// # Formula
/// Per element, `-(x (t - [x ≥ 0]) - ln(1 + exp(x - 2x [x ≥ 0])))`, summed over
/// the elements whose target is not ignored and divided by the normalizer.
/// Gradient: `dx = w (sigmoid(x) - t) / normalizer`, 0 where ignored.
///
/// # Parameters
/// - `loss_param.ignore_label` (compared with the target truncated to an integer).
/// - `loss_param.normalization`, else the deprecated `normalize`; default
///   BATCH_SIZE (N = axis 0) for this layer, unlike the other losses.
pub struct SigmoidCrossEntropyLossLayer {
    info: LayerInfo,
    ignore_label: Option<i32>,
    normalization: Normalization,
    normalizer: f64,
}

impl SigmoidCrossEntropyLossLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 1)?;
        let loss_param = param.loss_param.unwrap_or_default();
        Ok(SigmoidCrossEntropyLossLayer {
            info,
            ignore_label: ignore_label(param),
            normalization: Normalization::from_param(&loss_param, Normalization::BatchSize),
            normalizer: 1.0,
        })
    }

    fn ignored(&self, target: f64) -> bool {
        self.ignore_label
            .is_some_and(|l| target.is_finite() && target.trunc() == f64::from(l))
    }
}

impl<T: Element> Layer<T> for SigmoidCrossEntropyLossLayer {
    fn info(&self) -> &LayerInfo {
        &self.info
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn allows_backward(&self, index: usize) -> bool {
        index == 0
    }

    fn reshape(&mut self, bottom_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (logits, targets) = (bottom_shapes[0], bottom_shapes[1]);
        check_same_num(&self.info, logits, targets)?;
        let (a, b): (usize, usize) = (logits.iter().product(), targets.iter().product());
        if a != b {
            return Err(self.info.bottom_shape_error(
                1,
                format!(
                    "expected {a} targets (the count of bottom[0] {}), got {b} (shape {})",
                    shape_string(logits),
                    shape_string(targets)
                ),
            ));
        }
        Ok(vec![vec![]])
    }

    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()> {
        let zero = T::Acc::zero();
        let one = T::Acc::one();
        let two: T::Acc = acc(2.0);
        let mut loss = zero;
        let mut valid = 0usize;
        for (x, t) in bottom[0].data().iter().zip(bottom[1].data()) {
            if self.ignored(t.to_f64()) {
                continue;
            }
            let x = x.to_acc();
            let positive = if x >= zero { one } else { zero };
            loss =
                loss - (x * (t.to_acc() - positive) - (one + (x - two * x * positive).exp()).ln());
            valid += 1;
        }
        let shape = bottom[0].shape();
        let outer = shape.first().copied().unwrap_or(1);
        let inner = bottom[0].count_range(1, shape.len());
        self.normalizer = self.normalization.normalizer(outer, inner, valid);
        top[0].data_mut()[0] = T::from_acc(loss / acc::<T::Acc>(self.normalizer));
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob<T>],
        propagate_down: &[bool],
        bottom: &[&Blob<T>],
        bottom_diff: &mut [Vec<T>],
    ) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let scale = top_weight(top[0]) / acc::<T::Acc>(self.normalizer);
        let pairs = bottom[0].data().iter().zip(bottom[1].data());
        for (d, (x, t)) in bottom_diff[0].iter_mut().zip(pairs) {
            let g = if self.ignored(t.to_f64()) {
                T::Acc::zero()
            } else {
                (sigmoid(x.to_acc()) - t.to_acc()) * scale
            };
            *d = T::from_acc(g);
        }
        Ok(())
    }
}
