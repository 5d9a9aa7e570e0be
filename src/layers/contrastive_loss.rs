//! ContrastiveLoss: pulls similar pairs together and pushes dissimilar pairs
//! beyond a margin.

use num_traits::{Float, Zero};

use super::math::{acc_view, finish_output, multiversion, output_view, sum_map2, Buffers};
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
pub struct ContrastiveLossLayer<T: Element> {
    info: LayerInfo,
    margin: f64,
    legacy: bool,
    /// Similarity flag of every pair of the last forward pass.
    similar: Vec<bool>,
    /// `d²` of every pair of the last forward pass, as Caffe keeps `dist_sq_`.
    dist_sq: Vec<T::Acc>,
    /// Gradient factor of every pair for `bottom[0]`.
    betas: Vec<T::Acc>,
    buffers: Buffers<T::Acc>,
}

impl<T: Element> ContrastiveLossLayer<T> {
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
            similar: Vec::new(),
            dist_sq: Vec::new(),
            betas: Vec::new(),
            buffers: Buffers::default(),
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

    /// Reads the flags into `self.similar`: true for a similar pair.
    fn read_flags(&mut self, flags: &Blob<T>) -> Result<()> {
        self.similar.clear();
        for (i, f) in flags.data().iter().enumerate() {
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
            self.similar.push(value.trunc() != 0.0);
        }
        Ok(())
    }
}

multiversion! {
    /// Writes `Σ_c (a_c - b_c)²` of every row of `channels` values into `out`.
    fn squared_distances[A](a: &[A], b: &[A], channels: usize, out: &mut [A]) {
        let rows = a.chunks_exact(channels).zip(b.chunks_exact(channels));
        for (d, (a, b)) in out.iter_mut().zip(rows) {
            *d = sum_map2(a, b, |x, y| {
                let diff = x - y;
                diff * diff
            });
        }
    }
}

multiversion! {
    /// Writes `β_n (a - b)` into `da` and `-β_n (a - b)` into `db`, row by
    /// row, each when given. For `bottom[1]` Caffe negates α, which negates
    /// β exactly, so the values are the same.
    fn pair_gradients[A](
        a: &[A],
        b: &[A],
        channels: usize,
        betas: &[A],
        da: Option<&mut [A]>,
        db: Option<&mut [A]>,
    ) {
        let rows = a.chunks_exact(channels).zip(b.chunks_exact(channels)).zip(betas);
        match (da, db) {
            (Some(da), Some(db)) => {
                let outputs = da.chunks_exact_mut(channels).zip(db.chunks_exact_mut(channels));
                for (((a, b), &beta), (da, db)) in rows.zip(outputs) {
                    let outputs = da.iter_mut().zip(db.iter_mut());
                    for ((out_a, out_b), (&x, &y)) in outputs.zip(a.iter().zip(b)) {
                        let g = beta * (x - y);
                        *out_a = g;
                        *out_b = -g;
                    }
                }
            }
            (Some(da), None) => {
                for (((a, b), &beta), out) in rows.zip(da.chunks_exact_mut(channels)) {
                    for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b)) {
                        *o = beta * (x - y);
                    }
                }
            }
            (None, Some(db)) => {
                for (((a, b), &beta), out) in rows.zip(db.chunks_exact_mut(channels)) {
                    for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b)) {
                        *o = -(beta * (x - y));
                    }
                }
            }
            (None, None) => {}
        }
    }
}

impl<T: Element> Layer<T> for ContrastiveLossLayer<T> {
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
        self.read_flags(bottom[2])?;
        let buffers = &mut self.buffers;
        let a = acc_view(bottom[0].data(), &mut buffers.input);
        let b = acc_view(bottom[1].data(), &mut buffers.second_input);
        self.dist_sq.resize(num, T::Acc::zero());
        if channels == 0 {
            self.dist_sq.fill(T::Acc::zero());
        } else {
            squared_distances(a, b, channels, &mut self.dist_sq);
        }
        let margin: T::Acc = acc(self.margin);
        let zero = T::Acc::zero();
        let mut loss = zero;
        for (&dist_sq, &is_similar) in self.dist_sq.iter().zip(&self.similar) {
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
        if !propagate_down[0] && !propagate_down[1] {
            return Ok(());
        }
        let num = legacy_dim(bottom[0].shape(), 0);
        let channels = legacy_dim(bottom[0].shape(), 1);
        if self.dist_sq.len() != num || self.similar.len() != num {
            return Err(self.info.missing_forward());
        }
        if channels == 0 {
            return Ok(());
        }

        // β of each pair for bottom[0], in Caffe's order.
        let margin: T::Acc = acc(self.margin);
        let zero = T::Acc::zero();
        let epsilon: T::Acc = acc(1e-4);
        let alpha = top_weight(top[0]) / acc::<T::Acc>(num as f64);
        self.betas.clear();
        let pairs = self.dist_sq.iter().zip(&self.similar);
        self.betas.extend(pairs.map(|(&dist_sq, &is_similar)| {
            if is_similar {
                return alpha;
            }
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
        }));

        let buffers = &mut self.buffers;
        let a = acc_view(bottom[0].data(), &mut buffers.input);
        let b = acc_view(bottom[1].data(), &mut buffers.second_input);
        let (first, second) = bottom_diff.split_at_mut(1);
        let da = output_view(&mut first[0], &mut buffers.output);
        let db = output_view(&mut second[0], &mut buffers.work);
        let da = propagate_down[0].then_some(da);
        let db = propagate_down[1].then_some(db);
        pair_gradients(a, b, channels, &self.betas, da, db);
        if propagate_down[0] {
            finish_output(&mut first[0], &buffers.output);
        }
        if propagate_down[1] {
            finish_output(&mut second[0], &buffers.work);
        }
        Ok(())
    }
}
