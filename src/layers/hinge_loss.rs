//! HingeLoss: one-versus-all hinge loss, L1 or L2.

use num_traits::{Float, One, Zero};

use super::math::{acc_view, finish_output, multiversion, output_view, sum_map, Buffers};
use super::softmax_loss::{check_same_num, parse_labels};
use super::{top_weight, Layer, LayerInfo};
use crate::blob::{shape_string, Blob};
use crate::caffe::{hinge_loss_parameter::Norm, LayerParameter};
use crate::element::{acc, Element};
use crate::error::Result;

/// One-versus-all hinge loss of N × D scores against one label per sample.
///
/// # Bottoms
/// - `bottom[0]`: scores, N × ... with D = count / N values per sample.
/// - `bottom[1]`: labels, N values, integers in `[0, D)`.
///
/// # Tops
/// - `top[0]`: the loss, a 0-axis blob.
///
/// # Formula
/// With `δ = -1` at the label and `+1` elsewhere, `t_j = max(0, 1 + δ_j x_j)`.
/// L1: `loss = Σ t / N`, `dx_j = w δ_j sign(t_j) / N`.
/// L2: `loss = Σ t² / N`, `dx_j = 2 w δ_j t_j / N`.
///
/// # Parameters
/// - `hinge_loss_param.norm`: L1 (default) or L2.
///
/// # Caffe compatibility
/// Labels must be in `[0, D)`; ±1 SVM labels are rejected rather than read
/// out of bounds.
pub struct HingeLossLayer<T: Element> {
    info: LayerInfo,
    norm: Norm,
    /// Label of every sample of the last forward pass.
    labels: Vec<u32>,
    /// Gradient for a loss weight of 1, written by forward. Caffe's forward
    /// likewise leaves the margins in `bottom[0]`'s diff for backward.
    unit_gradient: Vec<T>,
    /// Whether `unit_gradient` belongs to the last forward pass.
    unit_gradient_ready: bool,
    buffers: Buffers<T::Acc>,
}

impl<T: Element> HingeLossLayer<T> {
    /// Returns whether the norm is L2, and the factor of the gradient for
    /// loss weight `weight`. Caffe scales by w / N for L1 and by w * 2 / N
    /// for L2.
    fn gradient_scale(&self, weight: T::Acc, num: usize) -> (bool, T::Acc) {
        let num = acc::<T::Acc>(num as f64);
        match self.norm {
            Norm::L1 => (false, weight / num),
            Norm::L2 => (true, weight * acc(2.0) / num),
        }
    }

    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 1)?;
        let norm = param
            .hinge_loss_param
            .as_ref()
            .map_or(Norm::L1, |p| p.norm());
        Ok(HingeLossLayer {
            info,
            norm,
            labels: Vec::new(),
            unit_gradient: Vec::new(),
            unit_gradient_ready: false,
            buffers: Buffers::default(),
        })
    }
}

/// Caffe's `std::max(0, 1 + v)`: 0 for NaN.
#[inline(always)]
fn hinge<A: Float>(v: A) -> A {
    let t = A::one() + v;
    if A::zero() < t {
        t
    } else {
        A::zero()
    }
}

multiversion! {
    /// Writes the hinge gradient for `scale` into `dx` (see [`hinge_gradient`])
    /// and returns `Σ_rows Σ_j penalty(t_j)`, with `penalty = t²` when
    /// `squared`, else `|t|`. The label entry of each row uses `-x`. Each row
    /// is read twice while it is in the L1 cache.
    fn hinge_loss_and_gradient[A](
        x: &[A],
        labels: &[u32],
        dim: usize,
        dx: &mut [A],
        squared: bool,
        scale: A,
    ) -> A {
        let rows = x.chunks_exact(dim).zip(dx.chunks_exact_mut(dim)).zip(labels);
        let mut loss = A::zero();
        for ((row, dx_row), &label) in rows {
            let label = label as usize;
            if squared {
                hinge_gradient_row(row, label, dx_row, |t| t * scale);
                loss = loss + hinge_row_loss(row, label, |t| t * t);
            } else {
                let step = |t: A| if t > A::zero() { scale } else { A::zero() };
                hinge_gradient_row(row, label, dx_row, step);
                loss = loss + hinge_row_loss(row, label, |t| t.abs());
            }
        }
        loss
    }
}

/// Returns `Σ_j penalty(t_j)` of one row whose label is at `label`.
#[inline(always)]
fn hinge_row_loss<A: Float + 'static, F: Fn(A) -> A>(row: &[A], label: usize, penalty: F) -> A {
    let (before, rest) = row.split_at(label);
    let (&at_label, after) = rest.split_first().unwrap_or((&A::zero(), &[]));
    let others = sum_map(before, |v| penalty(hinge(v))) + sum_map(after, |v| penalty(hinge(v)));
    others + penalty(hinge(-at_label))
}

multiversion! {
    /// Writes the hinge gradient into `dx`: `δ_j t_j scale` when `squared`,
    /// else `δ_j [t_j > 0] scale`, with δ = -1 at the label and 1 elsewhere.
    fn hinge_gradient[A](
        x: &[A],
        labels: &[u32],
        dim: usize,
        dx: &mut [A],
        squared: bool,
        scale: A,
    ) {
        if squared {
            hinge_gradient_rows(x, labels, dim, dx, |t| t * scale);
        } else {
            let step = |t: A| if t > A::zero() { scale } else { A::zero() };
            hinge_gradient_rows(x, labels, dim, dx, step);
        }
    }
}

#[inline(always)]
fn hinge_gradient_rows<A: Float + 'static, F: Fn(A) -> A>(
    x: &[A],
    labels: &[u32],
    dim: usize,
    dx: &mut [A],
    gradient: F,
) {
    let rows = x.chunks_exact(dim).zip(dx.chunks_exact_mut(dim));
    for ((row, dx_row), &label) in rows.zip(labels) {
        hinge_gradient_row(row, label as usize, dx_row, &gradient);
    }
}

/// Writes `δ_j gradient(t_j)` of one row into `dx_row`.
#[inline(always)]
fn hinge_gradient_row<A: Float + 'static, F: Fn(A) -> A>(
    row: &[A],
    label: usize,
    dx_row: &mut [A],
    gradient: F,
) {
    for (d, &v) in dx_row.iter_mut().zip(row) {
        *d = gradient(hinge(v));
    }
    // Caffe negates the stored margin term at the label and then scales it;
    // negating the scaled value is the same number.
    dx_row[label] = -gradient(hinge(-row[label]));
}

fn num_and_dim(shape: &[usize]) -> (usize, usize) {
    let count: usize = shape.iter().product();
    let num = shape.first().copied().unwrap_or(1);
    (num, count.checked_div(num).unwrap_or(0))
}

impl<T: Element> Layer<T> for HingeLossLayer<T> {
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
        let (num, _) = num_and_dim(scores);
        let given: usize = labels.iter().product();
        if given != num {
            return Err(self.info.bottom_shape_error(
                1,
                format!(
                    "expected {num} labels (one per sample of bottom[0] {}), got {given} \
                     (shape {})",
                    shape_string(scores),
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
        self.unit_gradient_ready = false;
        if dim == 0 {
            top[0].data_mut()[0] = T::from_acc(T::Acc::zero());
            return Ok(());
        }
        let (squared, scale) = self.gradient_scale(T::Acc::one(), num);
        let buffers = &mut self.buffers;
        let x = acc_view(bottom[0].data(), &mut buffers.input);
        self.unit_gradient.resize(x.len(), T::default());
        let dx = output_view(&mut self.unit_gradient, &mut buffers.output);
        let loss = hinge_loss_and_gradient(x, &self.labels, dim, dx, squared, scale);
        finish_output(&mut self.unit_gradient, &buffers.output);
        self.unit_gradient_ready = true;
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
        if dim == 0 {
            return Ok(());
        }
        if self.labels.len() != num {
            return Err(self.info.missing_forward());
        }
        let weight = top_weight(top[0]);
        let ready = self.unit_gradient_ready && self.unit_gradient.len() == bottom_diff[0].len();
        if ready && weight == T::Acc::one() {
            // Forward already computed this gradient: hand the buffer over.
            std::mem::swap(&mut bottom_diff[0], &mut self.unit_gradient);
            self.unit_gradient_ready = false;
            return Ok(());
        }
        let (squared, scale) = self.gradient_scale(weight, num);
        let buffers = &mut self.buffers;
        let x = acc_view(bottom[0].data(), &mut buffers.input);
        let dx = output_view(&mut bottom_diff[0], &mut buffers.output);
        hinge_gradient(x, &self.labels, dim, dx, squared, scale);
        finish_output(&mut bottom_diff[0], &buffers.output);
        Ok(())
    }
}
