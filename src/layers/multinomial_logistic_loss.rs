//! MultinomialLogisticLoss: negative log of given class probabilities.

use num_traits::{Float, Zero};

use super::softmax_loss::check_same_num;
use super::{caffe_max, top_weight, Layer, LayerInfo};
use crate::blob::{shape_string, Blob};
use crate::caffe::LayerParameter;
use crate::element::{acc, Element};
use crate::error::Result;

/// Probability floor before the log, as in Caffe's `kLOG_THRESHOLD`.
pub const LOG_THRESHOLD: f64 = 1e-20;

/// Negative log-likelihood of N × D probabilities against one label per sample.
///
/// # Bottoms
/// - `bottom[0]`: probabilities, N × ... with D = count / N per sample.
/// - `bottom[1]`: labels, N values, integers in `[0, D)`.
///
/// # Tops
/// - `top[0]`: the loss, a 0-axis blob.
///
/// # Formula
/// `loss = -Σ_n ln(max(p[n, label_n], 1e-20)) / N`; gradient
/// `dp[n, label_n] = -w / (N max(p[n, label_n], 1e-20))`, 0 elsewhere.
///
/// # Parameters
/// None.
pub struct MultinomialLogisticLossLayer {
    info: LayerInfo,
}

impl MultinomialLogisticLossLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 1)?;
        Ok(MultinomialLogisticLossLayer { info })
    }

    fn rows<T: Element>(&self, bottom: &[&Blob<T>]) -> Result<(usize, usize, Vec<usize>)> {
        let count = bottom[0].count();
        let num = bottom[0].shape().first().copied().unwrap_or(1);
        let dim = count.checked_div(num).unwrap_or(0);
        let mut labels = Vec::with_capacity(num);
        for (i, value) in bottom[1].data().iter().take(num).enumerate() {
            if let Some(c) = self.info.label(1, i, value.to_f64(), dim, None)? {
                labels.push(c);
            }
        }
        Ok((num, dim, labels))
    }
}

impl<T: Element> Layer<T> for MultinomialLogisticLossLayer {
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
        let (probs, labels) = (bottom_shapes[0], bottom_shapes[1]);
        check_same_num(&self.info, probs, labels)?;
        let num = probs.first().copied().unwrap_or(1);
        let given: usize = labels.iter().product();
        if given != num {
            return Err(self.info.bottom_shape_error(
                1,
                format!(
                    "expected {num} labels (one per sample, shape N×1×1×1), got {given} \
                     (shape {})",
                    shape_string(labels)
                ),
            ));
        }
        Ok(vec![vec![]])
    }

    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()> {
        let (num, dim, labels) = self.rows(bottom)?;
        let floor: T::Acc = acc(LOG_THRESHOLD);
        let data = bottom[0].data();
        let loss = labels
            .iter()
            .enumerate()
            .fold(T::Acc::zero(), |loss, (n, &label)| {
                loss - caffe_max(data[n * dim + label].to_acc(), floor).ln()
            });
        top[0].data_mut()[0] = T::from_acc(loss / acc::<T::Acc>(num as f64));
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
        let (num, dim, labels) = self.rows(bottom)?;
        let floor: T::Acc = acc(LOG_THRESHOLD);
        let scale = -top_weight(top[0]) / acc::<T::Acc>(num as f64);
        let data = bottom[0].data();
        let diff = &mut bottom_diff[0];
        diff.iter_mut().for_each(|d| *d = T::default());
        for (n, &label) in labels.iter().enumerate() {
            let index = n * dim + label;
            diff[index] = T::from_acc(scale / caffe_max(data[index].to_acc(), floor));
        }
        Ok(())
    }
}
