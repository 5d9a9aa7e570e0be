//! EuclideanLoss: half the mean squared distance per sample.

use super::math::{acc_view, finish_output, multiversion, output_view, sum_map2, Buffers};
use super::softmax_loss::check_same_num;
use super::{top_weight, warn_ignored, Layer, LayerInfo};
use crate::blob::{count_range, shape_string, Blob};
use crate::caffe::LayerParameter;
use crate::element::{acc, Element};
use crate::error::Result;

/// Sum of squared differences of two blobs, divided by 2N.
///
/// # Bottoms
/// - `bottom[0]`, `bottom[1]`: N × ... each, with the same count per sample.
///
/// # Tops
/// - `top[0]`: the loss, a 0-axis blob.
///
/// # Formula
/// `loss = Σ (a - b)² / (2N)`. Gradients: `da = w (a - b) / N`, `db = -w (a - b) / N`,
/// both bottoms receive one.
///
/// # Parameters
/// None; a `loss_param` is ignored with a warning, as Caffe ignores it.
pub struct EuclideanLossLayer<T: Element> {
    info: LayerInfo,
    buffers: Buffers<T::Acc>,
}

impl<T: Element> EuclideanLossLayer<T> {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(2, 2)?;
        info.expect_tops(1, 1)?;
        if param.loss_param.is_some() {
            warn_ignored(&info, "loss_param");
        }
        Ok(EuclideanLossLayer {
            info,
            buffers: Buffers::default(),
        })
    }
}

multiversion! {
    /// Returns `Σ (a - b)²`.
    fn squared_distance[A](a: &[A], b: &[A]) -> A {
        sum_map2(a, b, |x, y| {
            let d = x - y;
            d * d
        })
    }
}

multiversion! {
    /// Writes `alpha (a - b)` into `da` and `-alpha (a - b)` into `db`, each
    /// when given. Caffe computes the second as `(-w / N) (a - b)`, which is
    /// the same value.
    fn gradients[A](a: &[A], b: &[A], da: Option<&mut [A]>, db: Option<&mut [A]>, alpha: A) {
        match (da, db) {
            (Some(da), Some(db)) => {
                let outputs = da.iter_mut().zip(db.iter_mut());
                for ((out_a, out_b), (&x, &y)) in outputs.zip(a.iter().zip(b)) {
                    let g = alpha * (x - y);
                    *out_a = g;
                    *out_b = -g;
                }
            }
            (Some(da), None) => {
                for (out, (&x, &y)) in da.iter_mut().zip(a.iter().zip(b)) {
                    *out = alpha * (x - y);
                }
            }
            (None, Some(db)) => {
                for (out, (&x, &y)) in db.iter_mut().zip(a.iter().zip(b)) {
                    *out = -(alpha * (x - y));
                }
            }
            (None, None) => {}
        }
    }
}

impl<T: Element> Layer<T> for EuclideanLossLayer<T> {
    fn info(&self) -> &LayerInfo {
        &self.info
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn allows_backward(&self, _index: usize) -> bool {
        true
    }

    fn reshape(&mut self, bottom_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (a, b) = (bottom_shapes[0], bottom_shapes[1]);
        check_same_num(&self.info, a, b)?;
        let (per_a, per_b) = (count_range(a, 1, a.len()), count_range(b, 1, b.len()));
        if per_a != per_b {
            return Err(self.info.bottom_shape_error(
                1,
                format!(
                    "expected {per_a} values per sample like bottom[0], got {per_b} \
                     (shapes {} and {}); both inputs must have the same count after axis 0",
                    shape_string(a),
                    shape_string(b)
                ),
            ));
        }
        Ok(vec![vec![]])
    }

    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()> {
        let num = bottom[0].shape().first().copied().unwrap_or(1);
        let buffers = &mut self.buffers;
        let a = acc_view(bottom[0].data(), &mut buffers.input);
        let b = acc_view(bottom[1].data(), &mut buffers.second_input);
        let dot = squared_distance(a, b);
        let loss = dot / acc::<T::Acc>(num as f64) / acc::<T::Acc>(2.0);
        top[0].data_mut()[0] = T::from_acc(loss);
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob<T>],
        propagate_down: &[bool],
        bottom: &[&Blob<T>],
        bottom_diff: &mut [Vec<T>],
    ) -> Result<()> {
        let num = bottom[0].shape().first().copied().unwrap_or(1);
        let alpha = top_weight(top[0]) / acc::<T::Acc>(num as f64);
        let buffers = &mut self.buffers;
        let a = acc_view(bottom[0].data(), &mut buffers.input);
        let b = acc_view(bottom[1].data(), &mut buffers.second_input);
        let (first, second) = bottom_diff.split_at_mut(1);
        let da = output_view(&mut first[0], &mut buffers.output);
        let db = output_view(&mut second[0], &mut buffers.work);
        let da = propagate_down[0].then_some(da);
        let db = propagate_down[1].then_some(db);
        gradients(a, b, da, db, alpha);
        if propagate_down[0] {
            finish_output(&mut first[0], &buffers.output);
        }
        if propagate_down[1] {
            finish_output(&mut second[0], &buffers.work);
        }
        Ok(())
    }
}
