//! HingeLoss: one-versus-all hinge loss, L1 or L2.

use num_traits::{Float, One, Zero};

use super::softmax_loss::check_same_num;
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
pub struct HingeLossLayer {
    info: LayerInfo,
    norm: Norm,
}

impl HingeLossLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 1)?;
        let norm = param
            .hinge_loss_param
            .as_ref()
            .map_or(Norm::L1, |p| p.norm());
        Ok(HingeLossLayer { info, norm })
    }

    /// Reads the labels, one per sample.
    fn labels<T: Element>(&self, labels: &Blob<T>, num: usize, dim: usize) -> Result<Vec<usize>> {
        let mut classes = Vec::with_capacity(num);
        for (i, value) in labels.data().iter().take(num).enumerate() {
            if let Some(c) = self.info.label(1, i, value.to_f64(), dim, None)? {
                classes.push(c);
            }
        }
        Ok(classes)
    }
}

fn num_and_dim(shape: &[usize]) -> (usize, usize) {
    let count: usize = shape.iter().product();
    let num = shape.first().copied().unwrap_or(1);
    (num, count.checked_div(num).unwrap_or(0))
}

impl<T: Element> Layer<T> for HingeLossLayer {
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
        let labels = self.labels(bottom[1], num, dim)?;
        let one = T::Acc::one();
        let mut loss = T::Acc::zero();
        for (row, &label) in bottom[0].data().chunks_exact(dim.max(1)).zip(&labels) {
            for (j, x) in row.iter().enumerate() {
                let x = if j == label { -x.to_acc() } else { x.to_acc() };
                let t = super::caffe_max(T::Acc::zero(), one + x);
                loss = loss
                    + match self.norm {
                        Norm::L1 => t.abs(),
                        Norm::L2 => t * t,
                    };
            }
        }
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
        let labels = self.labels(bottom[1], num, dim)?;
        let one = T::Acc::one();
        let zero = T::Acc::zero();
        let weight = top_weight(top[0]) / acc::<T::Acc>(num as f64);
        let rows = bottom[0].data().chunks_exact(dim.max(1));
        let diff_rows = bottom_diff[0].chunks_exact_mut(dim.max(1));
        for ((row, diff_row), &label) in rows.zip(diff_rows).zip(&labels) {
            for (j, (x, d)) in row.iter().zip(diff_row.iter_mut()).enumerate() {
                let sign = if j == label { -one } else { one };
                let t = super::caffe_max(zero, one + sign * x.to_acc());
                let g = match self.norm {
                    // Caffe takes the sign of the label-negated margin term,
                    // which is 0 where the hinge is inactive.
                    Norm::L1 => {
                        let s = if t > zero { one } else { zero };
                        sign * s * weight
                    }
                    Norm::L2 => sign * t * weight * acc::<T::Acc>(2.0),
                };
                *d = T::from_acc(g);
            }
        }
        Ok(())
    }
}
