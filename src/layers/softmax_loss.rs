//! SoftmaxWithLoss: softmax followed by the multinomial logistic loss.

use num_traits::{One, Zero};

use super::math::{acc_view, finish_output, ln_sum, multiversion, narrow, output_view, Buffers};
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
pub struct SoftmaxWithLossLayer<T: Element> {
    info: LayerInfo,
    axis_param: i32,
    ignore_label: Option<i32>,
    normalization: Normalization,
    dims: AxisDims,
    normalizer: f64,
    /// Probabilities of the last forward pass, kept for backward as Caffe
    /// keeps `prob_`.
    prob: Vec<T::Acc>,
    /// Label of every position of the last forward pass, [`IGNORED`] where
    /// the label equals `ignore_label`.
    labels: Vec<u32>,
    buffers: Buffers<T::Acc>,
}

/// Marks an ignored position in a layer's parsed labels.
pub(super) const IGNORED: u32 = u32::MAX;

impl<T: Element> SoftmaxWithLossLayer<T> {
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
            prob: Vec::new(),
            labels: Vec::new(),
            buffers: Buffers::default(),
            info,
        })
    }
}

/// Checks every label of `labels` (outer × inner values) and writes its
/// class into `parsed`, or [`IGNORED`]. Returns the number of labels not
/// ignored.
pub(super) fn parse_labels<T: Element>(
    info: &LayerInfo,
    labels: &[T],
    classes: usize,
    ignore_label: Option<i32>,
    parsed: &mut Vec<u32>,
) -> Result<usize> {
    parsed.resize(labels.len(), 0);
    if let Some(valid) = parse_integral_labels(labels, classes, ignore_label, parsed) {
        return Ok(valid);
    }
    // Some label is not an integral class: parse again one by one, so that
    // the first invalid one is reported and a fractional label that
    // truncates to ignore_label is ignored, as in Caffe.
    parsed.clear();
    let mut valid = 0usize;
    for (position, value) in labels.iter().enumerate() {
        let value = value.to_f64();
        let label = info.label(1, position, value, classes, ignore_label)?;
        match label {
            Some(class) => {
                let class = u32::try_from(class).ok().filter(|&c| c != IGNORED);
                let Some(class) = class else {
                    return Err(info.config_error(format!(
                        "label {value:?} at position {position} is above {}, the largest \
                         class index this layer can store",
                        IGNORED - 1
                    )));
                };
                parsed.push(class);
                valid += 1;
            }
            None => parsed.push(IGNORED),
        }
    }
    Ok(valid)
}

multiversion! {
    /// Parses labels that are all integral classes in range or equal to
    /// `ignore_label`, in one branch-free pass. Returns the number not
    /// ignored, or `None` when any label needs [`parse_labels`]'s checks.
    fn parse_integral_labels[T: Element](
        labels: &[T],
        classes: usize,
        ignore_label: Option<i32>,
        parsed: &mut [u32],
    ) -> Option<usize> {
        let limit = classes.min(IGNORED as usize) as f64;
        // NaN equals nothing, so without an ignore label nothing is ignored.
        let ignore = ignore_label.map_or(f64::NAN, f64::from);
        let mut all_valid = true;
        let mut ignored = 0usize;
        for (out, value) in parsed.iter_mut().zip(labels) {
            let value = value.to_f64();
            // `as` saturates and maps NaN to 0, so the round trip fails for
            // every value that is not an integer in [0, 2^32).
            let class = value as u32;
            let is_ignored = value == ignore;
            let in_range = f64::from(class) == value && value < limit;
            all_valid &= is_ignored | in_range;
            ignored += usize::from(is_ignored);
            *out = if is_ignored { IGNORED } else { class };
        }
        all_valid.then(|| labels.len() - ignored)
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

impl<T: Element> Layer<T> for SoftmaxWithLossLayer<T> {
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
        let valid = parse_labels(
            &self.info,
            bottom[1].data(),
            channels,
            self.ignore_label,
            &mut self.labels,
        )?;
        let buffers = &mut self.buffers;
        let x = acc_view(bottom[0].data(), &mut buffers.input);
        self.prob.resize(x.len(), T::Acc::zero());
        softmax_forward(x, &mut self.prob, self.dims, &mut buffers.work);

        // The clamped probability of each labelled position, 1 (whose log
        // is 0) at ignored ones, then one vectorised pass of logarithms.
        let floor: T::Acc = acc(FLT_MIN);
        let picked = &mut buffers.output;
        picked.clear();
        for o in 0..outer {
            let labels = &self.labels[o * inner..(o + 1) * inner];
            let row = &self.prob[o * channels * inner..(o + 1) * channels * inner];
            picked.extend(labels.iter().enumerate().map(|(s, &label)| {
                if label == IGNORED {
                    T::Acc::one()
                } else {
                    caffe_max(row[label as usize * inner + s], floor)
                }
            }));
        }
        let loss = -ln_sum(picked);
        self.normalizer = self.normalization.normalizer(outer, inner, valid);
        top[0].data_mut()[0] = T::from_acc(loss / acc::<T::Acc>(self.normalizer));
        if let Some(prob_top) = top.get_mut(1) {
            narrow(&self.prob, prob_top.data_mut());
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
        let positions = self.dims.outer * self.dims.inner;
        if self.prob.len() != bottom_diff[0].len() || self.labels.len() != positions {
            return Err(self.info.missing_forward());
        }
        let scale = top_weight(top[0]) / acc::<T::Acc>(self.normalizer);
        let buffers = &mut self.buffers;
        let dx = output_view(&mut bottom_diff[0], &mut buffers.output);
        loss_gradient(&self.prob, &self.labels, dx, self.dims, scale);

        // A weight on the probability top adds the softmax gradient of that
        // weight; Caffe 1.0 has no such term and leaves top[1]'s diff unused.
        let prob_weighted = top
            .get(1)
            .filter(|p| p.diff().iter().any(|d| d.to_f64() != 0.0));
        if let Some(prob_top) = prob_weighted {
            let dy = acc_view(prob_top.diff(), &mut buffers.input);
            let grad = &mut buffers.second_input;
            grad.resize(dy.len(), T::Acc::zero());
            softmax_backward(&self.prob, dy, grad, self.dims, &mut buffers.work);
            for (d, &g) in dx.iter_mut().zip(grad.iter()) {
                *d = *d + g;
            }
        }
        finish_output(&mut bottom_diff[0], &buffers.output);
        Ok(())
    }
}

multiversion! {
    /// Writes `(p - onehot(label)) × scale` into `dx`, 0 at ignored positions,
    /// in Caffe's order: the one is subtracted before scaling.
    fn loss_gradient[A](prob: &[A], labels: &[u32], dx: &mut [A], dims: AxisDims, scale: A) {
        let AxisDims {
            channels, inner, ..
        } = dims;
        let dim = channels * inner;
        if dim == 0 {
            return;
        }
        let rows = prob.chunks_exact(dim).zip(dx.chunks_exact_mut(dim));
        for ((p_row, dx_row), labels) in rows.zip(labels.chunks_exact(inner)) {
            if inner == 1 {
                let label = labels[0];
                if label == IGNORED {
                    dx_row.iter_mut().for_each(|d| *d = A::zero());
                    continue;
                }
                for (d, &p) in dx_row.iter_mut().zip(p_row) {
                    *d = p * scale;
                }
                let l = label as usize;
                dx_row[l] = (p_row[l] - A::one()) * scale;
                continue;
            }
            let planes = p_row.chunks_exact(inner).zip(dx_row.chunks_exact_mut(inner));
            for (c, (p_c, dx_c)) in planes.enumerate() {
                let c = c as u32;
                for ((d, &p), &label) in dx_c.iter_mut().zip(p_c).zip(labels) {
                    let hit = if label == c { A::one() } else { A::zero() };
                    let g = (p - hit) * scale;
                    *d = if label == IGNORED { A::zero() } else { g };
                }
            }
        }
    }
}
