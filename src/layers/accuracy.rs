//! Accuracy: top-k classification accuracy; not a loss and has no gradient.

use super::softmax::AxisDims;
use super::softmax_loss::check_label_count;
use super::{Layer, LayerInfo};
use crate::blob::Blob;
use crate::caffe::LayerParameter;
use crate::element::Element;
use crate::error::Result;

/// Fraction of positions whose label is among the k highest scores.
///
/// # Bottoms
/// - `bottom[0]`: scores with C classes along the axis.
/// - `bottom[1]`: labels, outer × inner integers in `[0, C)` or `ignore_label`.
///
/// # Tops
/// - `top[0]`: accuracy, a 0-axis blob.
/// - `top[1]` (optional): accuracy per class, C values (0 for a class that
///   never occurs).
///
/// # Formula
/// A position counts as correct when its label is among the `top_k` classes
/// ranked by score; equal scores rank the larger class index first, as Caffe's
/// `std::partial_sort` with `std::greater` on (score, index) pairs does.
/// `accuracy = correct / counted`, which is NaN when every label is ignored,
/// as in Caffe.
///
/// # Parameters
/// - `accuracy_param.top_k` (default 1), at most C.
/// - `accuracy_param.axis` (default 1).
/// - `accuracy_param.ignore_label` (unset: none).
pub struct AccuracyLayer {
    info: LayerInfo,
    top_k: usize,
    axis_param: i32,
    ignore_label: Option<i32>,
    dims: AxisDims,
}

impl AccuracyLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 2)?;
        let p = param.accuracy_param.unwrap_or_default();
        let top_k = usize::try_from(p.top_k()).unwrap_or(usize::MAX);
        Ok(AccuracyLayer {
            info,
            top_k,
            axis_param: p.axis(),
            ignore_label: p.ignore_label,
            dims: AxisDims::new(&[], 0),
        })
    }
}

impl<T: Element> Layer<T> for AccuracyLayer {
    fn info(&self) -> &LayerInfo {
        &self.info
    }

    fn allows_backward(&self, _index: usize) -> bool {
        false
    }

    fn reshape(&mut self, bottom_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (scores, labels) = (bottom_shapes[0], bottom_shapes[1]);
        let axis = self
            .info
            .axis("accuracy_param.axis", self.axis_param, 0, scores)?;
        self.dims = AxisDims::new(scores, axis);
        check_label_count(&self.info, "accuracy axis", scores, labels, self.dims)?;
        if self.top_k > self.dims.channels {
            return Err(self.info.config_error(format!(
                "accuracy_param.top_k must be at most the number of classes {}, got {}",
                self.dims.channels, self.top_k
            )));
        }
        let mut tops = vec![vec![]];
        if self.info.tops.len() > 1 {
            tops.push(vec![self.dims.channels]);
        }
        Ok(tops)
    }

    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()> {
        let AxisDims {
            outer,
            channels,
            inner,
        } = self.dims;
        let scores = bottom[0].data();
        let labels = bottom[1].data();
        let mut correct = 0usize;
        let mut counted = 0usize;
        let mut class_total = vec![0usize; channels];
        let mut class_correct = vec![0usize; channels];
        for o in 0..outer {
            for s in 0..inner {
                let position = o * inner + s;
                let value = labels[position].to_f64();
                let label = self
                    .info
                    .label(1, position, value, channels, self.ignore_label)?;
                let Some(label) = label else { continue };
                class_total[label] += 1;
                let score_of = |c: usize| scores[(o * channels + c) * inner + s].to_acc();
                let own = score_of(label);
                // Classes ranked above the label: a higher score, or an equal
                // score with a larger index.
                let above = (0..channels)
                    .filter(|&c| {
                        let v = score_of(c);
                        v > own || (v == own && c > label)
                    })
                    .count();
                if above < self.top_k {
                    correct += 1;
                    class_correct[label] += 1;
                }
                counted += 1;
            }
        }
        top[0].data_mut()[0] = T::from_f64(correct as f64 / counted as f64);
        if let Some(per_class) = top.get_mut(1) {
            let pairs = class_correct.iter().zip(&class_total);
            for (out, (&right, &total)) in per_class.data_mut().iter_mut().zip(pairs) {
                let value = if total == 0 {
                    0.0
                } else {
                    right as f64 / total as f64
                };
                *out = T::from_f64(value);
            }
        }
        Ok(())
    }

    fn backward(
        &mut self,
        _top: &[&Blob<T>],
        _propagate_down: &[bool],
        _bottom: &[&Blob<T>],
        _bottom_diff: &mut [Vec<T>],
    ) -> Result<()> {
        Ok(())
    }
}
