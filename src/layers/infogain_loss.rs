//! InfogainLoss: softmax followed by a loss weighted by an infogain matrix H.

use num_traits::Zero;

use super::math::{
    acc_view, finish_output, ln, max_keep_first, multiversion, narrow, output_view, sum_map,
    sum_map2, Buffers,
};
use super::softmax::{softmax_backward, softmax_forward, AxisDims};
use super::softmax_loss::{check_label_count, check_same_num, parse_labels, IGNORED};
use super::{ignore_label, top_weight, BuildContext, Layer, LayerInfo, Normalization};
use crate::blob::{shape_string, Blob};
use crate::caffe::LayerParameter;
use crate::element::{acc, Element};
use crate::error::{Error, Result};
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
pub struct InfogainLossLayer<T: Element> {
    info: LayerInfo,
    axis_param: i32,
    ignore_label: Option<i32>,
    normalization: Normalization,
    /// Shape and values of H read from `source`, in the accumulation type.
    source_h: Option<(Vec<usize>, Vec<T::Acc>)>,
    dims: AxisDims,
    normalizer: f64,
    /// Probabilities of the last forward pass, kept for backward as Caffe
    /// keeps `prob_`.
    prob: Vec<T::Acc>,
    /// Label of every position of the last forward pass, or [`IGNORED`].
    labels: Vec<u32>,
    /// `Σ_k H[l, k]` for each class l, valid where `row_sum_ready[l]`.
    row_sums: Vec<T::Acc>,
    /// Whether `row_sums[l]` belongs to the current backward pass.
    row_sum_ready: Vec<bool>,
    buffers: Buffers<T::Acc>,
}

impl<T: Element> InfogainLossLayer<T> {
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
            let path = context.resolve(source);
            let blob = crate::binaryproto::read_blob_proto(&path).map_err(|e| match e {
                Error::File { path, message } => Error::File {
                    path,
                    message: format!(
                        "{message} (the infogain matrix H of layer '{}' (InfogainLoss), \
                         infogain_loss_param.source '{source}', looked for {})",
                        info.name,
                        context.candidates(source).join(" then ")
                    ),
                },
                other => other,
            })?;
            Some((blob.shape, blob.values.iter().map(|&v| acc(v)).collect()))
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
            prob: Vec::new(),
            labels: Vec::new(),
            row_sums: Vec::new(),
            row_sum_ready: Vec::new(),
            buffers: Buffers::default(),
            info,
        })
    }
}

/// Returns H in the accumulation type: `bottom[2]` (widened into `buffer` for 16-bit
/// types) or the matrix read from `source`.
fn matrix<'a, T: Element>(
    bottom: &[&'a Blob<T>],
    source_h: &'a Option<(Vec<usize>, Vec<T::Acc>)>,
    buffer: &'a mut Vec<T::Acc>,
) -> &'a [T::Acc] {
    match (bottom.get(2), source_h) {
        (Some(h), _) => acc_view(h.data(), buffer),
        (None, Some((_, values))) => values,
        (None, None) => &[],
    }
}

multiversion! {
    /// Returns `Σ_positions Σ_c H[label, c] ln(max(p_c, 1e-20))` over the
    /// positions whose label is not ignored. `work` is resized to
    /// `2 × inner` for the gathered H and p of one channel plane.
    fn weighted_log_sum[A](
        prob: &[A],
        h: &[A],
        labels: &[u32],
        dims: AxisDims,
        work: &mut Vec<A>,
    ) -> A {
        let AxisDims {
            channels, inner, ..
        } = dims;
        let dim = channels * inner;
        if dim == 0 {
            return A::zero();
        }
        let floor: A = acc(LOG_THRESHOLD);
        let term = |h: A, p: A| h * ln(max_keep_first(p, floor));

        let mut total = A::zero();
        let rows = prob.chunks_exact(dim).zip(labels.chunks_exact(inner));
        if inner == 1 {
            for (p_row, labels) in rows {
                if labels[0] != IGNORED {
                    let l = labels[0] as usize;
                    total = total + sum_map2(&h[l * channels..(l + 1) * channels], p_row, term);
                }
            }
            return total;
        }

        work.resize(2 * inner, A::zero());
        let (h_plane, p_plane) = work.split_at_mut(inner);
        for (p_row, labels) in rows {
            for (c, p_c) in p_row.chunks_exact(inner).enumerate() {
                // Ignored positions get H = 0 and p = 1, whose term is 0
                // even where the score is NaN.
                for (((h_out, p_out), &label), &p) in
                    h_plane.iter_mut().zip(p_plane.iter_mut()).zip(labels).zip(p_c)
                {
                    let ignored = label == IGNORED;
                    *h_out = if ignored { A::zero() } else { h[label as usize * channels + c] };
                    *p_out = if ignored { A::one() } else { p };
                }
                total = total + sum_map2(h_plane, p_plane, term);
            }
        }
        total
    }
}

multiversion! {
    /// Writes `(p_c Σ_k H[l, k] - H[l, c]) × scale` into `dx`, 0 at ignored
    /// positions, in Caffe's order. `row_sums[l]` must hold `Σ_k H[l, k]`
    /// for every label l that occurs.
    fn infogain_gradient[A](
        prob: &[A],
        h: &[A],
        labels: &[u32],
        row_sums: &[A],
        dx: &mut [A],
        dims: AxisDims,
        scale: A,
    ) {
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
                if labels[0] == IGNORED {
                    dx_row.iter_mut().for_each(|d| *d = A::zero());
                    continue;
                }
                let l = labels[0] as usize;
                let row_sum = row_sums[l];
                let h_row = &h[l * channels..(l + 1) * channels];
                for ((d, &p), &h) in dx_row.iter_mut().zip(p_row).zip(h_row) {
                    *d = (p * row_sum - h) * scale;
                }
                continue;
            }
            let planes = p_row.chunks_exact(inner).zip(dx_row.chunks_exact_mut(inner));
            for (c, (p_c, dx_c)) in planes.enumerate() {
                for ((d, &p), &label) in dx_c.iter_mut().zip(p_c).zip(labels) {
                    *d = if label == IGNORED {
                        A::zero()
                    } else {
                        let l = label as usize;
                        (p * row_sums[l] - h[l * channels + c]) * scale
                    };
                }
            }
        }
    }
}

impl<T: Element> Layer<T> for InfogainLossLayer<T> {
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
        let h = matrix(bottom, &self.source_h, &mut buffers.second_input);
        let loss = -weighted_log_sum(&self.prob, h, &self.labels, self.dims, &mut buffers.work);
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
        bottom: &[&Blob<T>],
        bottom_diff: &mut [Vec<T>],
    ) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let positions = self.dims.outer * self.dims.inner;
        if self.prob.len() != bottom_diff[0].len() || self.labels.len() != positions {
            return Err(self.info.missing_forward());
        }
        let channels = self.dims.channels;
        let buffers = &mut self.buffers;
        let h = matrix(bottom, &self.source_h, &mut buffers.second_input);
        // Only the rows of H named by a label are summed, each once.
        self.row_sums.resize(channels, T::Acc::zero());
        self.row_sum_ready.clear();
        self.row_sum_ready.resize(channels, false);
        for &label in &self.labels {
            let l = label as usize;
            if label != IGNORED && !self.row_sum_ready[l] {
                self.row_sums[l] = sum_map(&h[l * channels..(l + 1) * channels], |v| v);
                self.row_sum_ready[l] = true;
            }
        }
        let scale = top_weight(top[0]) / acc::<T::Acc>(self.normalizer);
        let dx = output_view(&mut bottom_diff[0], &mut buffers.output);
        infogain_gradient(
            &self.prob,
            h,
            &self.labels,
            &self.row_sums,
            dx,
            self.dims,
            scale,
        );

        // A weight on the probability top adds the softmax gradient of that
        // weight, as for SoftmaxWithLoss.
        let prob_weighted = top
            .get(1)
            .filter(|p| p.diff().iter().any(|d| d.to_f64() != 0.0));
        if let Some(prob_top) = prob_weighted {
            let dy = acc_view(prob_top.diff(), &mut buffers.input);
            let grad = &mut buffers.work;
            grad.resize(dy.len(), T::Acc::zero());
            let mut softmax_work = Vec::new();
            softmax_backward(&self.prob, dy, grad, self.dims, &mut softmax_work);
            for (d, &g) in dx.iter_mut().zip(grad.iter()) {
                *d = *d + g;
            }
        }
        finish_output(&mut bottom_diff[0], &buffers.output);
        Ok(())
    }
}
