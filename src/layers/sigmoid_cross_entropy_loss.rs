//! SigmoidCrossEntropyLoss: logistic loss of logits against targets in [0, 1].

use num_traits::{Float, Zero};

use super::math::{
    acc_view, exp, finish_output, ln, multiversion, output_view, scale_into, sum_map, Buffers,
};
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
pub struct SigmoidCrossEntropyLossLayer<T: Element> {
    info: LayerInfo,
    ignore: Option<IgnoreRange>,
    normalization: Normalization,
    normalizer: f64,
    /// `sigmoid(x) - t` of the last forward pass, 0 where the target is
    /// ignored: the gradient before scaling, as Caffe keeps the sigmoid
    /// output for backward.
    grad: Vec<T::Acc>,
    buffers: Buffers<T::Acc>,
}

/// The targets whose integer part equals `ignore_label`, as an interval so
/// that the test vectorises: `[L, L + 1)` for L > 0, `(L - 1, L]` for L < 0
/// and `(-1, 1)` for L = 0. Infinite and NaN targets are never ignored.
#[derive(Debug, Clone, Copy)]
struct IgnoreRange {
    low: f64,
    high: f64,
    low_inclusive: bool,
    high_inclusive: bool,
}

impl IgnoreRange {
    fn new(label: i32) -> Self {
        let label = f64::from(label);
        IgnoreRange {
            low: if label > 0.0 { label } else { label - 1.0 },
            high: if label < 0.0 { label } else { label + 1.0 },
            low_inclusive: label > 0.0,
            high_inclusive: label < 0.0,
        }
    }

    #[inline(always)]
    fn contains<A: Float>(&self, target: A) -> bool {
        // Every f32 and f64 converts to f64 exactly.
        let t = target.to_f64().unwrap_or(f64::NAN);
        let above = t > self.low || (self.low_inclusive && t == self.low);
        let below = t < self.high || (self.high_inclusive && t == self.high);
        above & below
    }
}

impl<T: Element> SigmoidCrossEntropyLossLayer<T> {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 1)?;
        let loss_param = param.loss_param.unwrap_or_default();
        Ok(SigmoidCrossEntropyLossLayer {
            info,
            ignore: ignore_label(param).map(IgnoreRange::new),
            normalization: Normalization::from_param(&loss_param, Normalization::BatchSize),
            normalizer: 1.0,
            grad: Vec::new(),
            buffers: Buffers::default(),
        })
    }
}

/// Returns the loss term of one logit and target and the gradient before
/// scaling, both 0 where `ignored`.
///
/// The term is Caffe's `x (t - [x >= 0]) - ln(1 + e^(x - 2x [x >= 0]))`,
/// whose exponent is never positive; the loss subtracts it.
#[inline(always)]
fn element<A: Float + 'static>(x: A, t: A, ignored: bool) -> (A, A) {
    let zero = A::zero();
    let one = A::one();
    let positive = if x >= zero { one } else { zero };
    let two_x = x + x;
    let term = x * (t - positive) - ln(one + exp(x - two_x * positive));
    let grad = sigmoid(x) - t;
    if ignored {
        (zero, zero)
    } else {
        (term, grad)
    }
}

multiversion! {
    /// Writes the unscaled gradient of every element into `grad` and returns
    /// the summed loss.
    fn loss_and_gradient[A](x: &[A], t: &[A], grad: &mut [A], ignore: Option<IgnoreRange>) -> A {
        match ignore {
            Some(range) => blocks(x, t, grad, |t| range.contains(t)),
            None => blocks(x, t, grad, |_| false),
        }
    }
}

/// Runs [`element`] block by block: one loop writes the gradients and the
/// loss terms of a block, a second sums the terms. Two simple loops
/// vectorise where one loop with both would not.
#[inline(always)]
fn blocks<A: Float + 'static, F: Fn(A) -> bool>(
    x: &[A],
    t: &[A],
    grad: &mut [A],
    is_ignored: F,
) -> A {
    const BLOCK: usize = 256;
    let mut terms = [A::zero(); BLOCK];
    let mut loss = A::zero();
    let chunks = x.chunks(BLOCK).zip(t.chunks(BLOCK));
    for ((x_b, t_b), g_b) in chunks.zip(grad.chunks_mut(BLOCK)) {
        let terms = &mut terms[..x_b.len()];
        let outputs = terms.iter_mut().zip(g_b.iter_mut());
        for ((term, g), (&x, &t)) in outputs.zip(x_b.iter().zip(t_b)) {
            (*term, *g) = element(x, t, is_ignored(t));
        }
        loss = loss - sum_map(terms, |v| v);
    }
    loss
}

impl<T: Element> Layer<T> for SigmoidCrossEntropyLossLayer<T> {
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
        let buffers = &mut self.buffers;
        let x = acc_view(bottom[0].data(), &mut buffers.input);
        let t = acc_view(bottom[1].data(), &mut buffers.second_input);
        self.grad.resize(x.len(), T::Acc::zero());
        let loss = loss_and_gradient(x, t, &mut self.grad, self.ignore);
        let valid = match self.ignore {
            Some(range) => t.iter().filter(|&&t| !range.contains(t)).count(),
            None => t.len(),
        };
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
        _bottom: &[&Blob<T>],
        bottom_diff: &mut [Vec<T>],
    ) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        if self.grad.len() != bottom_diff[0].len() {
            return Err(self.info.missing_forward());
        }
        let scale = top_weight(top[0]) / acc::<T::Acc>(self.normalizer);
        let dx = output_view(&mut bottom_diff[0], &mut self.buffers.output);
        scale_into(&self.grad, dx, scale);
        finish_output(&mut bottom_diff[0], &self.buffers.output);
        Ok(())
    }
}
