//! Running a whole net on a CUDA device, with every blob resident there.
//!
//! [`GpuNet`] takes a [`Net`] that was built, fed and shaped on the host (its
//! layers have validated their parameters and shapes), uploads every blob,
//! and runs each layer's forward and backward with the launchers of
//! [`crate::gpu::ops`]. During a pass the only device-to-host copies are the
//! scalar loss sums and the label error flags the launchers read back. The
//! one exception is a non-scalar top with a loss weight, whose weighted sum
//! is read back too.
//!
//! # Limitations
//! The device path has been compiled and its kernels assembled, but not run
//! on a GPU yet. Shapes are fixed once the net is uploaded.

use cudarc::driver::CudaSlice;

use crate::blob::canonical_axis;
use crate::caffe::{hinge_loss_parameter::Norm, LayerParameter, NetParameter};
use crate::error::{Error, Result};
use crate::gpu::device::describe_driver_error;
use crate::gpu::ops::{self, AccuracyOptions, ContrastiveOptions, HingeNorm};
use crate::gpu::{Gpu, GpuElement, LabelContext, RowDims};
use crate::layers::{ignore_label, BuildContext, LayerInfo, Normalization};
use crate::net::{with_automatic_top, LoadedNet, Net};

/// Per-layer device state kept from the forward pass for the backward pass.
struct LayerState<T: GpuElement> {
    /// Per-row (max, sum) of the softmax losses, or per-pair squared
    /// distances of ContrastiveLoss.
    stats: Option<CudaSlice<T::Acc>>,
    /// InfogainLoss's H read from `source`, uploaded once.
    infogain: Option<CudaSlice<T>>,
    /// Divisor of the loss, as resolved in the forward pass.
    normalizer: f64,
    /// Gradient buffers, one per bottom.
    scratch: Vec<Option<CudaSlice<T>>>,
}

/// A net whose blobs live on a CUDA device.
pub struct GpuNet<T: GpuElement> {
    gpu: Gpu,
    net: Net<T>,
    params: Vec<LayerParameter>,
    data: Vec<CudaSlice<T>>,
    diff: Vec<CudaSlice<T>>,
    /// Whether a blob's diff has received a gradient in this backward pass.
    diff_written: Vec<bool>,
    states: Vec<LayerState<T>>,
}

fn device_error(what: &str, error: cudarc::driver::DriverError) -> Error {
    Error::Device(format!("{what}: {}", describe_driver_error(&error)))
}

fn upload<T: GpuElement>(gpu: &Gpu, values: &[T], what: &str) -> Result<CudaSlice<T>> {
    if values.is_empty() {
        return gpu
            .stream()
            .alloc_zeros::<T>(0)
            .map_err(|e| device_error(what, e));
    }
    gpu.stream().clone_htod(values).map_err(|e| {
        device_error(
            &format!(
                "copying {what} to the device ({} bytes)",
                values.len() * T::BYTES
            ),
            e,
        )
    })
}

fn zeros<T: GpuElement>(gpu: &Gpu, count: usize, what: &str) -> Result<CudaSlice<T>> {
    gpu.stream().alloc_zeros::<T>(count).map_err(|e| {
        device_error(
            &format!(
                "allocating {what} ({} bytes)",
                count.saturating_mul(T::BYTES)
            ),
            e,
        )
    })
}

/// Splits `shape` around `axis` into the launchers' row layout.
fn row_dims(info: &LayerInfo, field: &str, axis: i32, shape: &[usize]) -> Result<RowDims> {
    let axis = canonical_axis(axis, shape.len()).ok_or_else(|| {
        info.config_error(format!(
            "{field} {axis} is out of range for {} axes",
            shape.len()
        ))
    })?;
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok(RowDims::new(outer, shape[axis], inner))
}

fn num_and_dim(shape: &[usize]) -> (usize, usize) {
    let count: usize = shape.iter().product();
    let num = shape.first().copied().unwrap_or(1);
    (num, count.checked_div(num).unwrap_or(0))
}

impl<T: GpuElement> GpuNet<T> {
    /// Uploads `net` (built from `param`, inputs already fed) to `gpu`.
    pub fn new(
        gpu: Gpu,
        mut net: Net<T>,
        param: &NetParameter,
        context: &BuildContext,
    ) -> Result<Self> {
        net.ensure_shapes()?;
        let params: Vec<LayerParameter> = param.layer.iter().map(with_automatic_top).collect();
        let mut data = Vec::with_capacity(net.num_blobs());
        let mut diff = Vec::with_capacity(net.num_blobs());
        for id in 0..net.num_blobs() {
            let name = net.blob_name_by_id(id).to_string();
            let blob = net
                .blob_by_id(id)
                .ok_or_else(|| Error::Device(format!("blob {id} is missing")))?;
            data.push(upload(&gpu, blob.data(), &format!("blob '{name}'"))?);
            diff.push(zeros(
                &gpu,
                blob.count(),
                &format!("the gradient of blob '{name}'"),
            )?);
        }
        let mut states = Vec::with_capacity(params.len());
        for layer in &params {
            let infogain = match (layer.r#type(), layer.bottom.len()) {
                ("InfogainLoss", 2) => {
                    let source = layer
                        .infogain_loss_param
                        .as_ref()
                        .and_then(|p| p.source.clone())
                        .unwrap_or_default();
                    let h = crate::binaryproto::read_blob_proto(&context.resolve(&source))?;
                    let values: Vec<T> = h.values.iter().map(|&v| T::from_f64(v)).collect();
                    Some(upload(&gpu, &values, "the infogain matrix")?)
                }
                _ => None,
            };
            states.push(LayerState {
                stats: None,
                infogain,
                normalizer: 1.0,
                scratch: (0..layer.bottom.len()).map(|_| None).collect(),
            });
        }
        let diff_written = vec![false; data.len()];
        Ok(GpuNet {
            gpu,
            net,
            params,
            data,
            diff,
            diff_written,
            states,
        })
    }

    /// Runs every layer forward and returns the total weighted loss.
    pub fn forward(&mut self) -> Result<f64> {
        let mut total = 0.0;
        for index in 0..self.params.len() {
            total += self.forward_layer(index)?;
        }
        Ok(total)
    }

    /// Runs every layer backward, last first, from loss-weight seeds.
    pub fn backward(&mut self) -> Result<()> {
        self.prepare_backward()?;
        for index in (0..self.params.len()).rev() {
            self.backward_layer(index)?;
        }
        self.gpu
            .stream()
            .synchronize()
            .map_err(|e| device_error("waiting for the backward pass", e))
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.params.len()
    }

    /// Name of layer `index`.
    pub fn layer_name(&self, index: usize) -> &str {
        self.params.get(index).map_or("", |p| p.name())
    }

    /// Waits for every queued launch.
    pub fn synchronize(&self) -> Result<()> {
        self.gpu
            .stream()
            .synchronize()
            .map_err(|e| device_error("waiting for the device", e))
    }

    /// Clears every gradient and seeds each weighted top's diff with its weight.
    pub fn prepare_backward(&mut self) -> Result<()> {
        for (id, diff) in self.diff.iter_mut().enumerate() {
            self.gpu
                .stream()
                .memset_zeros(diff)
                .map_err(|e| device_error("clearing a gradient", e))?;
            self.diff_written[id] = false;
        }
        for index in 0..self.params.len() {
            let Some(wiring) = self.net.wiring(index) else {
                continue;
            };
            let seeds: Vec<(usize, f64)> = wiring
                .tops
                .iter()
                .zip(wiring.loss_weights)
                .filter(|(_, &w)| w != 0.0)
                .map(|(&t, &w)| (t, w))
                .collect();
            for (top, weight) in seeds {
                let count = self.diff[top].len();
                let values = vec![T::from_f64(weight); count];
                self.gpu
                    .stream()
                    .memcpy_htod(&values, &mut self.diff[top])
                    .map_err(|e| device_error("seeding a loss weight", e))?;
                self.diff_written[top] = true;
            }
        }
        Ok(())
    }

    /// Copies every blob's data and gradient back into the host net.
    pub fn download(mut self) -> Result<Net<T>> {
        self.synchronize()?;
        for id in 0..self.data.len() {
            let data = self
                .gpu
                .stream()
                .clone_dtoh(&self.data[id])
                .map_err(|e| device_error("copying a blob to the host", e))?;
            let diff = self
                .gpu
                .stream()
                .clone_dtoh(&self.diff[id])
                .map_err(|e| device_error("copying a gradient to the host", e))?;
            if let Some(blob) = self.net.blob_by_id_mut(id) {
                blob.data_mut().copy_from_slice(&data);
                blob.set_diff(diff);
            }
        }
        Ok(self.net)
    }
}

/// Layer-level settings read from a `LayerParameter`, as the CPU layers read them.
fn softmax_axis(param: &LayerParameter) -> i32 {
    match param.r#type() {
        "InfogainLoss" => param.infogain_loss_param.as_ref().map_or(1, |p| p.axis()),
        "Accuracy" => param.accuracy_param.as_ref().map_or(1, |p| p.axis()),
        _ => param.softmax_param.as_ref().map_or(1, |p| p.axis()),
    }
}

fn normalization(param: &LayerParameter) -> Normalization {
    let loss_param = param.loss_param.unwrap_or_default();
    let default = match param.r#type() {
        "SigmoidCrossEntropyLoss" => Normalization::BatchSize,
        _ => Normalization::Valid,
    };
    Normalization::from_param(&loss_param, default)
}

fn contrastive_options(param: &LayerParameter) -> ContrastiveOptions {
    let p = param.contrastive_loss_param.unwrap_or_default();
    ContrastiveOptions {
        margin: f64::from(p.margin()),
        legacy: p.legacy_version(),
    }
}

fn hinge_norm(param: &LayerParameter) -> HingeNorm {
    match param
        .hinge_loss_param
        .as_ref()
        .map_or(Norm::L1, |p| p.norm())
    {
        Norm::L1 => HingeNorm::L1,
        Norm::L2 => HingeNorm::L2,
    }
}

/// Makes `slot` a zeroed buffer of `count` elements unless it already is one
/// of that size.
fn ensure_buffer<V>(
    gpu: &Gpu,
    slot: &mut Option<CudaSlice<V>>,
    count: usize,
    what: &str,
) -> Result<()>
where
    V: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits,
{
    if slot.as_ref().is_some_and(|s| s.len() == count) {
        return Ok(());
    }
    let buffer = gpu.stream().alloc_zeros::<V>(count).map_err(|e| {
        device_error(
            &format!(
                "allocating {what} ({} bytes)",
                count.saturating_mul(std::mem::size_of::<V>())
            ),
            e,
        )
    })?;
    *slot = Some(buffer);
    Ok(())
}

fn missing(what: &str) -> Error {
    Error::Device(format!("internal buffer {what} is missing"))
}

impl<T: GpuElement> GpuNet<T> {
    /// Runs layer `index` forward and returns its weighted loss.
    pub fn forward_layer(&mut self, index: usize) -> Result<f64> {
        let (Some(param), Some(info), Some(wiring)) = (
            self.params.get(index),
            self.net.layer_info(index),
            self.net.wiring(index),
        ) else {
            return Ok(0.0);
        };
        let bottoms = wiring.bottoms.to_vec();
        let tops = wiring.tops.to_vec();
        let weights = wiring.loss_weights.to_vec();
        let shapes: Vec<Vec<usize>> = bottoms
            .iter()
            .map(|&b| {
                self.net
                    .blob_by_id(b)
                    .map_or_else(Vec::new, |blob| blob.shape().to_vec())
            })
            .collect();
        let label_blob = if param.r#type() == "ContrastiveLoss" {
            info.bottom(2)
        } else {
            info.bottom(1)
        };
        let ctx = LabelContext {
            layer: &info.name,
            layer_type: &info.layer_type,
            blob: &label_blob,
        };
        let gpu = &self.gpu;
        let first_top = tops.first().copied().unwrap_or(self.data.len());
        let (lower, upper) = self.data.split_at_mut(first_top);
        let bottom = |i: usize| -> Result<&CudaSlice<T>> {
            bottoms
                .get(i)
                .and_then(|&b| lower.get(b))
                .ok_or_else(|| missing("bottom"))
        };
        let state = &mut self.states[index];
        let first_shape = shapes.first().cloned().unwrap_or_default();
        let (num, dim) = num_and_dim(&first_shape);

        // Scalar value of top[0] for the loss layers and Accuracy.
        let value: Option<f64> = match param.r#type() {
            "Softmax" => {
                let dims = row_dims(
                    info,
                    "softmax_param.axis",
                    softmax_axis(param),
                    &first_shape,
                )?;
                let y = upper.first_mut().ok_or_else(|| missing("top"))?;
                ops::softmax_forward(gpu, &ctx, bottom(0)?, y, dims)?;
                None
            }
            "Sigmoid" => {
                let y = upper.first_mut().ok_or_else(|| missing("top"))?;
                ops::sigmoid_forward(gpu, &ctx, bottom(0)?, y)?;
                None
            }
            "SoftmaxWithLoss" | "InfogainLoss" => {
                let dims = row_dims(info, "axis", softmax_axis(param), &first_shape)?;
                let stats_len = dims.outer.saturating_mul(dims.inner).saturating_mul(2);
                ensure_buffer(gpu, &mut state.stats, stats_len, "softmax row statistics")?;
                let stats = state.stats.as_mut().ok_or_else(|| missing("stats"))?;
                let prob = upper.get_mut(1..2).and_then(|p| p.first_mut());
                let ignore = ignore_label(param);
                let sum = if param.r#type() == "InfogainLoss" {
                    let h = match bottoms.get(2) {
                        Some(&b) => lower.get(b).ok_or_else(|| missing("H"))?,
                        None => state.infogain.as_ref().ok_or_else(|| missing("H"))?,
                    };
                    ops::infogain_loss_forward(
                        gpu,
                        &ctx,
                        bottom(0)?,
                        bottom(1)?,
                        h,
                        prob,
                        stats,
                        dims,
                        ignore,
                    )?
                } else {
                    ops::softmax_loss_forward(
                        gpu,
                        &ctx,
                        bottom(0)?,
                        bottom(1)?,
                        prob,
                        stats,
                        dims,
                        ignore,
                    )?
                };
                let valid = usize::try_from(sum.valid).unwrap_or(usize::MAX);
                state.normalizer = normalization(param).normalizer(dims.outer, dims.inner, valid);
                Some(sum.sum / state.normalizer)
            }
            "SigmoidCrossEntropyLoss" => {
                let sum = ops::sigmoid_cross_entropy_loss_forward(
                    gpu,
                    &ctx,
                    bottom(0)?,
                    bottom(1)?,
                    ignore_label(param),
                )?;
                let valid = usize::try_from(sum.valid).unwrap_or(usize::MAX);
                state.normalizer = normalization(param).normalizer(num, dim, valid);
                Some(sum.sum / state.normalizer)
            }
            "EuclideanLoss" => {
                let sum = ops::euclidean_loss_forward(gpu, &ctx, bottom(0)?, bottom(1)?)?;
                Some(sum.sum / num as f64 / 2.0)
            }
            "HingeLoss" => {
                let sum = ops::hinge_loss_forward(
                    gpu,
                    &ctx,
                    bottom(0)?,
                    bottom(1)?,
                    num,
                    dim,
                    hinge_norm(param),
                )?;
                Some(sum.sum / num as f64)
            }
            "MultinomialLogisticLoss" => {
                let sum = ops::multinomial_logistic_loss_forward(
                    gpu,
                    &ctx,
                    bottom(0)?,
                    bottom(1)?,
                    num,
                    dim,
                )?;
                Some(sum.sum / num as f64)
            }
            "ContrastiveLoss" => {
                ensure_buffer(gpu, &mut state.stats, num, "pair distances")?;
                let distances = state.stats.as_mut().ok_or_else(|| missing("distances"))?;
                let sum = ops::contrastive_loss_forward(
                    gpu,
                    &ctx,
                    bottom(0)?,
                    bottom(1)?,
                    bottom(2)?,
                    distances,
                    num,
                    dim,
                    contrastive_options(param),
                )?;
                Some(sum.sum / num as f64 / 2.0)
            }
            "Accuracy" => {
                let dims = row_dims(
                    info,
                    "accuracy_param.axis",
                    softmax_axis(param),
                    &first_shape,
                )?;
                let p = param.accuracy_param.unwrap_or_default();
                let options = AccuracyOptions {
                    top_k: usize::try_from(p.top_k()).unwrap_or(usize::MAX),
                    ignore_label: p.ignore_label,
                    per_class: tops.len() > 1,
                };
                let counts =
                    ops::accuracy_forward(gpu, &ctx, bottom(0)?, bottom(1)?, dims, options)?;
                if let (Some(per_class), Some(top)) = (&counts.per_class, upper.get_mut(1)) {
                    let values: Vec<T> = per_class
                        .iter()
                        .map(|c| {
                            let v = if c.total == 0 {
                                0.0
                            } else {
                                c.correct as f64 / c.total as f64
                            };
                            T::from_f64(v)
                        })
                        .collect();
                    gpu.stream()
                        .memcpy_htod(&values, top)
                        .map_err(|e| device_error("writing per-class accuracy", e))?;
                }
                Some(counts.correct as f64 / counts.valid as f64)
            }
            _ => None,
        };

        let mut weighted = 0.0;
        if let (Some(value), Some(top)) = (value, upper.first_mut()) {
            gpu.stream()
                .memcpy_htod(&[T::from_f64(value)], top)
                .map_err(|e| device_error("writing a loss", e))?;
        }
        for (i, &weight) in weights.iter().enumerate() {
            if weight == 0.0 {
                continue;
            }
            let top_value = match (i, value) {
                (0, Some(v)) => v,
                _ => {
                    // A weighted top that is not a scalar loss: its weighted
                    // sum needs the values on the host.
                    let top = upper.get(i).ok_or_else(|| missing("top"))?;
                    let values = gpu
                        .stream()
                        .clone_dtoh(top)
                        .map_err(|e| device_error("reading a weighted top", e))?;
                    values.iter().map(|v| v.to_f64()).sum()
                }
            };
            weighted += weight * top_value;
        }
        Ok(weighted)
    }

    /// Runs layer `index` backward, adding its bottom gradients into the
    /// bottoms' diffs.
    pub fn backward_layer(&mut self, index: usize) -> Result<()> {
        let (Some(param), Some(info), Some(wiring)) = (
            self.params.get(index),
            self.net.layer_info(index),
            self.net.wiring(index),
        ) else {
            return Ok(());
        };
        let propagate = wiring.propagate_down.to_vec();
        if !propagate.iter().any(|&p| p) {
            return Ok(());
        }
        let bottoms = wiring.bottoms.to_vec();
        let tops = wiring.tops.to_vec();
        let weight0 = wiring.loss_weights.first().copied().unwrap_or(0.0);
        let weights = wiring.loss_weights.to_vec();
        let shapes: Vec<Vec<usize>> = bottoms
            .iter()
            .map(|&b| {
                self.net
                    .blob_by_id(b)
                    .map_or_else(Vec::new, |blob| blob.shape().to_vec())
            })
            .collect();
        let label_blob = info.bottom(1);
        let ctx = LabelContext {
            layer: &info.name,
            layer_type: &info.layer_type,
            blob: &label_blob,
        };
        let gpu = &self.gpu;
        let data = &self.data;
        let first_top = tops.first().copied().unwrap_or(self.diff.len());
        let (lower_diff, upper_diff) = self.diff.split_at_mut(first_top);
        let state = &mut self.states[index];
        for (i, &p) in propagate.iter().enumerate() {
            if p {
                let count = shapes.get(i).map_or(0, |s| s.iter().product());
                let slot = state
                    .scratch
                    .get_mut(i)
                    .ok_or_else(|| missing("gradient buffer"))?;
                ensure_buffer(gpu, slot, count, "a bottom gradient")?;
            }
        }
        let bottom = |i: usize| -> Result<&CudaSlice<T>> {
            bottoms
                .get(i)
                .and_then(|&b| data.get(b))
                .ok_or_else(|| missing("bottom"))
        };
        let top_data = |i: usize| -> Result<&CudaSlice<T>> {
            tops.get(i)
                .and_then(|&t| data.get(t))
                .ok_or_else(|| missing("top"))
        };
        let first_shape = shapes.first().cloned().unwrap_or_default();
        let (num, dim) = num_and_dim(&first_shape);
        let LayerState {
            stats,
            infogain,
            normalizer,
            scratch,
        } = state;
        let split = scratch.len().min(1);
        let (first_scratch, other_scratch) = scratch.split_at_mut(split);
        let dx = first_scratch.first_mut().and_then(|s| s.as_mut());

        match param.r#type() {
            "Softmax" => {
                let dims = row_dims(
                    info,
                    "softmax_param.axis",
                    softmax_axis(param),
                    &first_shape,
                )?;
                let dx = dx.ok_or_else(|| missing("gradient"))?;
                let dy = upper_diff.first().ok_or_else(|| missing("top diff"))?;
                ops::softmax_backward(gpu, &ctx, top_data(0)?, dy, dx, dims)?;
            }
            "Sigmoid" => {
                let dx = dx.ok_or_else(|| missing("gradient"))?;
                let dy = upper_diff.first().ok_or_else(|| missing("top diff"))?;
                ops::sigmoid_backward(gpu, &ctx, top_data(0)?, dy, dx)?;
            }
            "SoftmaxWithLoss" | "InfogainLoss" => {
                let dims = row_dims(info, "axis", softmax_axis(param), &first_shape)?;
                let dx = dx.ok_or_else(|| missing("gradient"))?;
                let stats = stats.as_ref().ok_or_else(|| missing("stats"))?;
                let scale = weight0 / *normalizer;
                let ignore = ignore_label(param);
                if param.r#type() == "InfogainLoss" {
                    let h = match bottoms.get(2) {
                        Some(&b) => data.get(b).ok_or_else(|| missing("H"))?,
                        None => infogain.as_ref().ok_or_else(|| missing("H"))?,
                    };
                    ops::infogain_loss_backward(
                        gpu,
                        &ctx,
                        bottom(0)?,
                        bottom(1)?,
                        h,
                        stats,
                        dx,
                        dims,
                        ignore,
                        scale,
                    )?;
                } else {
                    ops::softmax_loss_backward(
                        gpu,
                        &ctx,
                        bottom(0)?,
                        bottom(1)?,
                        stats,
                        dx,
                        dims,
                        ignore,
                        scale,
                    )?;
                }
                if weights.get(1).is_some_and(|&w| w != 0.0) {
                    // A weighted prob top adds the softmax gradient of its diff.
                    let mut extra = zeros::<T>(gpu, dx.len(), "the prob gradient")?;
                    let dprob = upper_diff.get(1).ok_or_else(|| missing("prob diff"))?;
                    ops::softmax_backward(gpu, &ctx, top_data(1)?, dprob, &mut extra, dims)?;
                    ops::blob_add(gpu, &ctx, &extra, dx)?;
                }
            }
            "SigmoidCrossEntropyLoss" => {
                let dx = dx.ok_or_else(|| missing("gradient"))?;
                let scale = weight0 / *normalizer;
                ops::sigmoid_cross_entropy_loss_backward(
                    gpu,
                    &ctx,
                    bottom(0)?,
                    bottom(1)?,
                    dx,
                    ignore_label(param),
                    scale,
                )?;
            }
            "EuclideanLoss" => {
                let db = other_scratch.first_mut().and_then(|s| s.as_mut());
                let da = if propagate[0] { dx } else { None };
                let db = if propagate.get(1) == Some(&true) {
                    db
                } else {
                    None
                };
                ops::euclidean_loss_backward(
                    gpu,
                    &ctx,
                    bottom(0)?,
                    bottom(1)?,
                    da,
                    db,
                    weight0 / num as f64,
                )?;
            }
            "HingeLoss" => {
                let dx = dx.ok_or_else(|| missing("gradient"))?;
                let norm = hinge_norm(param);
                ops::hinge_loss_backward(
                    gpu,
                    &ctx,
                    bottom(0)?,
                    bottom(1)?,
                    dx,
                    num,
                    dim,
                    norm,
                    weight0 / num as f64,
                )?;
            }
            "MultinomialLogisticLoss" => {
                let dx = dx.ok_or_else(|| missing("gradient"))?;
                ops::multinomial_logistic_loss_backward(
                    gpu,
                    &ctx,
                    bottom(0)?,
                    bottom(1)?,
                    dx,
                    num,
                    dim,
                    weight0 / num as f64,
                )?;
            }
            "ContrastiveLoss" => {
                let distances = stats.as_ref().ok_or_else(|| missing("distances"))?;
                let db = other_scratch.first_mut().and_then(|s| s.as_mut());
                let da = if propagate[0] { dx } else { None };
                let db = if propagate.get(1) == Some(&true) {
                    db
                } else {
                    None
                };
                ops::contrastive_loss_backward(
                    gpu,
                    &ctx,
                    bottom(0)?,
                    bottom(1)?,
                    bottom(2)?,
                    distances,
                    da,
                    db,
                    num,
                    dim,
                    contrastive_options(param),
                    weight0 / num as f64,
                )?;
            }
            _ => {}
        }

        // Merge: the first gradient a blob receives is swapped in, later ones
        // are added.
        for (i, &p) in propagate.iter().enumerate() {
            let (Some(&b), true) = (bottoms.get(i), p) else {
                continue;
            };
            let slot = scratch
                .get_mut(i)
                .and_then(|s| s.as_mut())
                .ok_or_else(|| missing("gradient"))?;
            let target = lower_diff
                .get_mut(b)
                .ok_or_else(|| missing("bottom diff"))?;
            if self.diff_written[b] {
                ops::blob_add(gpu, &ctx, slot, target)?;
            } else {
                std::mem::swap(slot, target);
                self.diff_written[b] = true;
            }
        }
        Ok(())
    }
}

/// Uploads a loaded net, its inputs already fed, to GPU 0.
pub fn upload_net<T: GpuElement>(loaded: LoadedNet<T>) -> Result<GpuNet<T>> {
    let gpu = Gpu::new(0)?;
    log::info!("device: {} ({})", gpu.name(), gpu.arch());
    GpuNet::new(gpu, loaded.net, &loaded.param, &loaded.context)
}

/// Runs forward and backward of a loaded net on GPU 0 and returns the host
/// net holding the results.
pub fn run_on_gpu<T: GpuElement>(loaded: LoadedNet<T>) -> Result<Net<T>> {
    let mut net = upload_net(loaded)?;
    net.forward()?;
    net.backward()?;
    net.download()
}

/// Per-layer forward and backward times of a loaded net on GPU 0, in
/// milliseconds. The device is synchronised before each clock read.
pub fn time_on_gpu<T: GpuElement>(
    loaded: LoadedNet<T>,
    iterations: usize,
) -> Result<Vec<(String, f64, f64)>> {
    let mut net = upload_net(loaded)?;
    net.forward()?;
    net.backward()?;
    let layers = net.num_layers();
    let mut forward = vec![0.0f64; layers];
    let mut backward = vec![0.0f64; layers];
    for _ in 0..iterations {
        for (i, slot) in forward.iter_mut().enumerate() {
            net.synchronize()?;
            let start = std::time::Instant::now();
            net.forward_layer(i)?;
            net.synchronize()?;
            *slot += start.elapsed().as_secs_f64();
        }
        net.prepare_backward()?;
        for i in (0..layers).rev() {
            net.synchronize()?;
            let start = std::time::Instant::now();
            net.backward_layer(i)?;
            net.synchronize()?;
            backward[i] += start.elapsed().as_secs_f64();
        }
    }
    let per = |s: f64| s * 1000.0 / iterations.max(1) as f64;
    Ok((0..layers)
        .map(|i| {
            (
                net.layer_name(i).to_string(),
                per(forward[i]),
                per(backward[i]),
            )
        })
        .collect())
}
