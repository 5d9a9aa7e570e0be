//! InfogainLoss: softmax followed by a loss weighted by an infogain matrix H.

use num_traits::{Float, Zero};

use super::softmax::{softmax_backward, softmax_forward, AxisDims};
use super::softmax_loss::{check_label_count, check_same_num};
use super::{caffe_max, ignore_label, top_weight, BuildContext, Layer, LayerInfo, Normalization};
use crate::blob::{shape_string, Blob};
use crate::caffe::LayerParameter;
use crate::element::{acc, Element};
use crate::error::Result;
use crate::layers::multinomial_logistic_loss::LOG_THRESHOLD;

/// Infogain loss of raw scores (Caffe 1.0 semantics: the layer applies its own
/// softmax) against integer labels, weighted by a C × C matrix H.
///
/// # Bottoms
/// - `bottom[0]`: scores with C classes along the axis.
/// - `bottom[1]`: labels, outer × inner integers in `[0, C)` or `ignore_label`.
/// - `bottom[2]` (optional): H with C·C values, row-major; when absent, H is
///   read from `infogain_loss_param.source`.
///
/// # Tops
/// - `top[0]`: the loss, a 0-axis blob.
/// - `top[1]` (optional): the softmax probabilities.
///
/// # Formula
/// `p = softmax(x)`; `loss = -Σ_positions Σ_c H[label, c] ln(max(p_c, 1e-20)) / normalizer`.
/// Gradient: `dx_c = w (p_c Σ_k H[label, k] - H[label, c]) / normalizer`, 0 at
/// ignored positions. H and the labels get no gradient. A non-zero weight on
/// `top[1]` adds the softmax gradient of that weight as well.
///
/// # Parameters
/// - `infogain_loss_param.source`: a .binaryproto holding H (needed without `bottom[2]`);
///   a relative path is looked up beside the model, then in the current directory.
/// - `infogain_loss_param.axis` (default 1).
/// - `loss_param.ignore_label`; `loss_param.normalization` (default VALID).
///   The deprecated `normalize` is rejected, as Caffe 1.0 rejects it.
pub struct InfogainLossLayer {
    info: LayerInfo,
    axis_param: i32,
    ignore_label: Option<i32>,
    normalization: Normalization,
    source_h: Option<(Vec<usize>, Vec<f64>)>,
    dims: AxisDims,
    normalizer: f64,
}

impl InfogainLossLayer {
    /// Sets the layer up, reading H from `source` when there is no third bottom.
    pub fn new(param: &LayerParameter, context: &BuildContext) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 3)?;
        info.expect_tops(1, 2)?;
        let loss_param = param.loss_param.unwrap_or_default();
        if loss_param.normalize.is_some() {
            return Err(info.config_error(
                "loss_param.normalize is deprecated and InfogainLoss rejects it, as Caffe 1.0 \
                 does; use loss_param.normalization (FULL, VALID, BATCH_SIZE or NONE)",
            ));
        }
        let infogain = param.infogain_loss_param.clone().unwrap_or_default();
        let source_h = if info.bottoms.len() < 3 {
            let Some(source) = infogain.source.as_deref() else {
                return Err(info.config_error(
                    "the infogain matrix H is missing: give a third bottom or \
                     infogain_loss_param.source",
                ));
            };
            let blob = crate::binaryproto::read_blob_proto(&context.resolve(source))?;
            Some((blob.shape, blob.values))
        } else {
            None
        };
        Ok(InfogainLossLayer {
            axis_param: infogain.axis(),
            ignore_label: ignore_label(param),
            normalization: Normalization::from_param(&loss_param, Normalization::Valid),
            source_h,
            dims: AxisDims::new(&[], 0),
            normalizer: 1.0,
            info,
        })
    }

    /// Returns H as accumulation values, from `bottom[2]` or the source file.
    fn matrix<T: Element>(&self, bottom: &[&Blob<T>]) -> Vec<T::Acc> {
        match (bottom.get(2), &self.source_h) {
            (Some(h), _) => h.data().iter().map(|v| v.to_acc()).collect(),
            (None, Some((_, values))) => values.iter().map(|&v| acc(v)).collect(),
            (None, None) => Vec::new(),
        }
    }
}

impl<T: Element> Layer<T> for InfogainLossLayer {
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
            .axis("infogain_loss_param.axis", self.axis_param, 0, scores)?;
        self.dims = AxisDims::new(scores, axis);
        check_label_count(&self.info, "infogain axis", scores, labels, self.dims)?;
        let c = self.dims.channels;
        let (h_count, h_shape) = match (bottom_shapes.get(2), &self.source_h) {
            (Some(shape), _) => (shape.iter().product::<usize>(), shape.to_vec()),
            (None, Some((shape, values))) => (values.len(), shape.clone()),
            (None, None) => (0, vec![]),
        };
        if Some(h_count) != c.checked_mul(c) {
            let message = format!(
                "the infogain matrix H must hold C*C = {} values for C = {c} classes, got {h_count} \
                 (shape {})",
                c.saturating_mul(c),
                shape_string(&h_shape)
            );
            return Err(if bottom_shapes.len() > 2 {
                self.info.bottom_shape_error(2, message)
            } else {
                self.info.config_error(message)
            });
        }
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
        let h = self.matrix(bottom);
        let floor: T::Acc = acc(LOG_THRESHOLD);
        let labels = bottom[1].data();
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
                for c in 0..channels {
                    let p = prob[(o * channels + c) * inner + s].to_acc();
                    loss = loss - h[label * channels + c] * caffe_max(p, floor).ln();
                }
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
        let h = self.matrix(bottom);
        let row_sums: Vec<T::Acc> = h
            .chunks_exact(channels.max(1))
            .map(|row| row.iter().fold(T::Acc::zero(), |a, &b| a + b))
            .collect();
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
                        Some(l) => {
                            (diff[index].to_acc() * row_sums[l] - h[l * channels + c]) * scale
                        }
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
