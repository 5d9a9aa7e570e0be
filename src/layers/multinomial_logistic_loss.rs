//! MultinomialLogisticLoss: negative log of given class probabilities.

use super::math::ln_sum;
use super::softmax_loss::{check_same_num, parse_labels};
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
pub struct MultinomialLogisticLossLayer<T: Element> {
    info: LayerInfo,
    /// Label of every sample of the last forward pass.
    labels: Vec<u32>,
    /// Clamped probabilities of the labelled classes, then their logarithms.
    picked: Vec<T::Acc>,
}

impl<T: Element> MultinomialLogisticLossLayer<T> {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 1)?;
        Ok(MultinomialLogisticLossLayer {
            info,
            labels: Vec::new(),
            picked: Vec::new(),
        })
    }
}

/// Number of samples and values per sample of the probabilities.
fn num_and_dim(shape: &[usize]) -> (usize, usize) {
    let count: usize = shape.iter().product();
    let num = shape.first().copied().unwrap_or(1);
    (num, count.checked_div(num).unwrap_or(0))
}

impl<T: Element> Layer<T> for MultinomialLogisticLossLayer<T> {
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
        let (num, dim) = num_and_dim(bottom[0].shape());
        let labels = &bottom[1].data()[..num];
        parse_labels(&self.info, labels, dim, None, &mut self.labels)?;
        let floor: T::Acc = acc(LOG_THRESHOLD);
        let data = bottom[0].data();
        self.picked.clear();
        let rows = self.labels.iter().enumerate();
        self.picked.extend(
            rows.map(|(n, &label)| caffe_max(data[n * dim + label as usize].to_acc(), floor)),
        );
        let loss = -ln_sum(&mut self.picked);
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
        let (num, dim) = num_and_dim(bottom[0].shape());
        if self.labels.len() != num {
            return Err(self.info.missing_forward());
        }
        let floor: T::Acc = acc(LOG_THRESHOLD);
        let scale = -top_weight(top[0]) / acc::<T::Acc>(num as f64);
        let data = bottom[0].data();
        let diff = &mut bottom_diff[0];
        diff.fill(T::default());
        for (n, &label) in self.labels.iter().enumerate() {
            let index = n * dim + label as usize;
            diff[index] = T::from_acc(scale / caffe_max(data[index].to_acc(), floor));
        }
        Ok(())
    }
}
