//! ContrastiveLoss: pulls similar pairs together and pushes dissimilar pairs
//! beyond a margin.

use num_traits::{Float, One, Zero};

use super::softmax_loss::check_same_num;
use super::{caffe_max, top_weight, Layer, LayerInfo};
use crate::blob::{legacy_dim, shape_string, Blob};
use crate::caffe::LayerParameter;
use crate::element::{acc, Element};
use crate::error::{Error, Result};

/// Contrastive loss of feature pairs (a, b) with a similarity flag per pair.
///
/// # Bottoms
/// - `bottom[0]`, `bottom[1]`: features, N × C × 1 × 1 (height and width must be 1).
/// - `bottom[2]`: similarity flags, N × 1 × 1 × 1; a flag whose integer part is
///   non-zero marks a similar pair.
///
/// # Tops
/// - `top[0]`: the loss, a 0-axis blob.
///
/// # Formula
/// With `d² = Σ_c (a_c - b_c)²` and `d = sqrt(d²)`: a similar pair adds `d²`;
/// a dissimilar pair adds `max(margin - d, 0)²`, or `max(margin - d², 0)` with
/// `legacy_version`. `loss = Σ / (2N)`.
/// Gradient of a (b gets the negative), with `α = w / N`: similar `α (a - b)`;
/// dissimilar, when the margin term is positive, `-α (margin - d) / (d + 1e-4) (a - b)`,
/// or `-α (a - b)` with `legacy_version`; else 0. The flags get no gradient.
///
/// # Parameters
/// - `contrastive_loss_param.margin` (default 1).
/// - `contrastive_loss_param.legacy_version` (default false).
pub struct ContrastiveLossLayer {
    info: LayerInfo,
    margin: f64,
    legacy: bool,
}

impl ContrastiveLossLayer {
    /// Sets the layer up from its parameters.
    pub fn new(param: &LayerParameter) -> Result<Self> {
        let info = LayerInfo::from_param(param);
        info.expect_bottoms(3, 3)?;
        info.expect_tops(1, 1)?;
        let p = param.contrastive_loss_param.unwrap_or_default();
        Ok(ContrastiveLossLayer {
            info,
            margin: f64::from(p.margin()),
            legacy: p.legacy_version(),
        })
    }

    fn check_unit(&self, index: usize, shape: &[usize], axis: usize, what: &str) -> Result<()> {
        let got = legacy_dim(shape, axis);
        if got == 1 {
            return Ok(());
        }
        Err(self.info.bottom_shape_error(
            index,
            format!(
                "{what} (axis {axis}) must be 1, got {got} (shape {}); ContrastiveLoss takes \
                 N × C × 1 × 1 features, so reshape or flatten them first",
                shape_string(shape)
            ),
        ))
    }

    /// Reads the flags: true for a similar pair.
    fn similar<T: Element>(&self, flags: &Blob<T>) -> Result<Vec<bool>> {
        flags
            .data()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let value = f.to_f64();
                if value.is_nan() {
                    return Err(Error::Label {
                        layer: self.info.name.clone(),
                        layer_type: self.info.layer_type.clone(),
                        blob: self.info.bottom(2),
                        position: i,
                        value,
                        max_valid: 1,
                        ignore: String::new(),
                    });
                }
                Ok(value.trunc() != 0.0)
            })
            .collect()
    }
}

impl<T: Element> Layer<T> for ContrastiveLossLayer {
    fn info(&self) -> &LayerInfo {
        &self.info
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn allows_backward(&self, index: usize) -> bool {
        index < 2
    }

    fn reshape(&mut self, bottom_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (a, b, flags) = (bottom_shapes[0], bottom_shapes[1], bottom_shapes[2]);
        for (index, shape) in [(0, a), (1, b), (2, flags)] {
            // Caffe reads these blobs through num(), channels(), height() and
            // width(), which abort on a blob of more than 4 axes.
            if shape.len() > 4 {
                return Err(self.info.bottom_shape_error(
                    index,
                    format!(
                        "expected at most 4 axes (N × C × 1 × 1), got {} (shape {})",
                        shape.len(),
                        shape_string(shape)
                    ),
                ));
            }
        }
        check_same_num(&self.info, a, b)?;
        let (ca, cb) = (legacy_dim(a, 1), legacy_dim(b, 1));
        if ca != cb {
            return Err(self.info.bottom_shape_error(
                1,
                format!("expected {ca} channels like bottom[0], got {cb}"),
            ));
        }
        for (index, shape) in [(0, a), (1, b)] {
            self.check_unit(index, shape, 2, "height")?;
            self.check_unit(index, shape, 3, "width")?;
        }
        self.check_unit(2, flags, 1, "channels")?;
        self.check_unit(2, flags, 2, "height")?;
        self.check_unit(2, flags, 3, "width")?;
        let num = legacy_dim(a, 0);
        if legacy_dim(flags, 0) != num {
            return Err(self.info.bottom_shape_error(
                2,
                format!(
                    "expected one similarity flag per pair ({num}), got {}",
                    legacy_dim(flags, 0)
                ),
            ));
        }
        Ok(vec![vec![]])
    }

    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()> {
        let num = legacy_dim(bottom[0].shape(), 0);
        let channels = legacy_dim(bottom[0].shape(), 1);
        let similar = self.similar(bottom[2])?;
        let margin: T::Acc = acc(self.margin);
        let zero = T::Acc::zero();
        let mut loss = zero;
        let rows = bottom[0].data().chunks_exact(channels.max(1));
        let pairs = rows.zip(bottom[1].data().chunks_exact(channels.max(1)));
        for ((a, b), &is_similar) in pairs.zip(&similar).take(num) {
            let dist_sq = squared_distance(a, b);
            loss = loss
                + if is_similar {
                    dist_sq
                } else if self.legacy {
                    caffe_max(margin - dist_sq, zero)
                } else {
                    let d = caffe_max(margin - dist_sq.sqrt(), zero);
                    d * d
                };
        }
        let loss = loss / acc::<T::Acc>(num as f64) / acc::<T::Acc>(2.0);
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
        let num = legacy_dim(bottom[0].shape(), 0);
        let channels = legacy_dim(bottom[0].shape(), 1).max(1);
        let similar = self.similar(bottom[2])?;
        let margin: T::Acc = acc(self.margin);
        let zero = T::Acc::zero();
        let epsilon: T::Acc = acc(1e-4);
        for (i, diff) in bottom_diff.iter_mut().enumerate().take(2) {
            if !propagate_down[i] {
                continue;
            }
            let sign = if i == 0 {
                T::Acc::one()
            } else {
                -T::Acc::one()
            };
            let alpha = sign * top_weight(top[0]) / acc::<T::Acc>(num as f64);
            let rows = bottom[0].data().chunks_exact(channels);
            let pairs = rows.zip(bottom[1].data().chunks_exact(channels));
            let out_rows = diff.chunks_exact_mut(channels);
            for (((a, b), out), &is_similar) in pairs.zip(out_rows).zip(&similar) {
                let beta = if is_similar {
                    alpha
                } else {
                    let dist_sq = squared_distance(a, b);
                    let (mdist, beta) = if self.legacy {
                        (margin - dist_sq, -alpha)
                    } else {
                        let dist = dist_sq.sqrt();
                        let mdist = margin - dist;
                        (mdist, -alpha * mdist / (dist + epsilon))
                    };
                    if mdist > zero {
                        beta
                    } else {
                        zero
                    }
                };
                for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                    *o = T::from_acc(beta * (x.to_acc() - y.to_acc()));
                }
            }
        }
        Ok(())
    }
}

fn squared_distance<T: Element>(a: &[T], b: &[T]) -> T::Acc {
    a.iter().zip(b).fold(T::Acc::zero(), |sum, (x, y)| {
        let d = x.to_acc() - y.to_acc();
        sum + d * d
    })
}
