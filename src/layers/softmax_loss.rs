//! SoftmaxWithLoss: softmax followed by the multinomial logistic loss.

use num_traits::{Float, One, Zero};

use super::softmax::{softmax_backward, softmax_forward, AxisDims};
use super::{caffe_max, ignore_label, top_weight, Layer, LayerInfo, Normalization};
use crate::blob::{shape_string, Blob};
use crate::caffe::LayerParameter;
use crate::element::{acc, Element};
use crate::error::Result;

/// Smallest normal f32, the probability floor Caffe applies before the log in
/// every element type: a true-class probability that underflows gives
/// `-ln(FLT_MIN) = 87.33655`.
pub const FLT_MIN: f64 = 1.175_494_350_822_287_5e-38;

/// Softmax cross-entropy of scores against integer labels.
///
/// # Bottoms
/// - `bottom[0]`: scores, any shape with C classes along the axis.
/// - `bottom[1]`: labels, outer × inner values (N·H·W for axis 1 and scores
///   N×C×H×W), integers in `[0, C)` or `ignore_label`.
///
/// # Tops
/// - `top[0]`: the loss, a 0-axis blob.
/// - `top[1]` (optional): the softmax probabilities, shaped as `bottom[0]`.
///
/// # Formula
/// `p = softmax(x)` along the axis; `loss = -Σ ln(max(p_label, FLT_MIN)) / normalizer`
/// over the non-ignored positions. Gradient: `dx = w (p - onehot(label)) / normalizer`,
/// 0 at ignored positions, where w is the loss weight of `top[0]`. A non-zero
/// weight on `top[1]` adds the softmax gradient of that weight as well.
///
/// # Parameters
/// - `softmax_param.axis` (default 1).
/// - `loss_param.ignore_label` (unset: no label is ignored).
/// - `loss_param.normalization` (default VALID), or the deprecated
///   `loss_param.normalize` when `normalization` is unset: true means VALID,
///   false means BATCH_SIZE. The normalizer is never below 1.
///
/// # Caffe compatibility
/// Caffe 1.0 aborts when a second top is given together with explicit loss
/// weights; here it works. Labels out of range are an error, not an
/// out-of-bounds read.
pub struct SoftmaxWithLossLayer {
    info: LayerInfo,
    axis_param: i32,
    ignore_label: Option<i32>,
    normalization: Normalization,
    dims: AxisDims,
    normalizer: f64,
}

impl SoftmaxWithLossLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 2)?;
        let loss_param = param.loss_param.unwrap_or_default();
        Ok(SoftmaxWithLossLayer {
            axis_param: param.softmax_param.as_ref().map_or(1, |p| p.axis()),
            ignore_label: ignore_label(param),
            normalization: Normalization::from_param(&loss_param, Normalization::Valid),
            dims: AxisDims::new(&[], 0),
            normalizer: 1.0,
            info,
        })
    }
}

/// Checks that a label blob has outer × inner values, with Caffe's example.
pub(super) fn check_label_count(
    info: &LayerInfo,
    field: &str,
    scores: &[usize],
    labels: &[usize],
    dims: AxisDims,
) -> Result<()> {
    let needed = dims.outer * dims.inner;
    let given: usize = labels.iter().product();
    if needed == given {
        return Ok(());
    }
    Err(info.bottom_shape_error(
        1,
        format!(
            "expected {needed} labels (outer × inner around the {field}), got {given}; \
             scores have shape {} and labels {}. For example, with axis 1 and scores \
             (N, C, H, W) the labels must hold N*H*W integers in [0, C-1]",
            shape_string(scores),
            shape_string(labels)
        ),
    ))
}

/// Checks Caffe's LossLayer rule that scores and labels agree on axis 0.
pub(super) fn check_same_num(info: &LayerInfo, a: &[usize], b: &[usize]) -> Result<()> {
    let (na, nb) = (a.first().copied(), b.first().copied());
    if na == nb {
        return Ok(());
    }
    let show = |n: Option<usize>| n.map_or_else(|| "none (0 axes)".to_string(), |n| n.to_string());
    Err(info.bottom_shape_error(
        1,
        format!(
            "axis 0 must match bottom[0]: expected {}, got {} (shapes {} and {})",
            show(na),
            show(nb),
            shape_string(a),
            shape_string(b)
        ),
    ))
}

impl<T: Element> Layer<T> for SoftmaxWithLossLayer {
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
        let (scores, labels) = (bottom_shapes[0], bottom_shapes[1]);
        check_same_num(&self.info, scores, labels)?;
        let axis = self
            .info
            .axis("softmax_param.axis", self.axis_param, 0, scores)?;
        self.dims = AxisDims::new(scores, axis);
        check_label_count(&self.info, "softmax axis", scores, labels, self.dims)?;
        let mut tops = vec![vec![]];
        if self.info.tops.len() > 1 {
            tops.push(scores.to_vec());
        }
        Ok(tops)
    }

    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()> {
        let AxisDims {
            outer,
            channels,
            inner,
        } = self.dims;
        let mut prob = vec![T::default(); bottom[0].count()];
        softmax_forward(bottom[0].data(), &mut prob, self.dims);

        let labels = bottom[1].data();
        let floor: T::Acc = acc(FLT_MIN);
        let mut loss = T::Acc::zero();
        let mut valid = 0usize;
        for o in 0..outer {
            for s in 0..inner {
                let position = o * inner + s;
                let value = labels[position].to_f64();
                let label = self
                    .info
                    .label(1, position, value, channels, self.ignore_label)?;
                let Some(label) = label else { continue };
                let p = prob[(o * channels + label) * inner + s].to_acc();
                loss = loss - caffe_max(p, floor).ln();
                valid += 1;
            }
        }
        self.normalizer = self.normalization.normalizer(outer, inner, valid);
        top[0].data_mut()[0] = T::from_acc(loss / acc::<T::Acc>(self.normalizer));
        if let Some(prob_top) = top.get_mut(1) {
            prob_top.data_mut().copy_from_slice(&prob);
        }
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
        let AxisDims {
            outer,
            channels,
            inner,
        } = self.dims;
        let diff = &mut bottom_diff[0];
        softmax_forward(bottom[0].data(), diff, self.dims);
        let prob_weighted = top
            .get(1)
            .filter(|p| p.diff().iter().any(|d| d.to_f64() != 0.0));
        let prob_grad = prob_weighted.map(|prob_top| {
            let mut grad = vec![T::default(); diff.len()];
            softmax_backward(diff, prob_top.diff(), &mut grad, self.dims);
            grad
        });

        let scale = top_weight(top[0]) / acc::<T::Acc>(self.normalizer);
        let labels = bottom[1].data();
        for o in 0..outer {
            for s in 0..inner {
                let position = o * inner + s;
                let value = labels[position].to_f64();
                let label = self
                    .info
                    .label(1, position, value, channels, self.ignore_label)?;
                for c in 0..channels {
                    let index = (o * channels + c) * inner + s;
                    let g = match label {
                        None => T::Acc::zero(),
                        Some(l) if l == c => (diff[index].to_acc() - T::Acc::one()) * scale,
                        Some(_) => diff[index].to_acc() * scale,
                    };
                    diff[index] = T::from_acc(g);
                }
            }
        }
        if let Some(grad) = prob_grad {
            for (d, g) in diff.iter_mut().zip(grad) {
                *d = T::from_acc(d.to_acc() + g.to_acc());
            }
        }
        Ok(())
    }
}
