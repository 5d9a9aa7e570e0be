//! A net of supported layers, run forward then backward as Caffe's `Net`
//! runs under `force_backward`.

use std::collections::HashMap;
use std::path::Path;

use num_traits::Float;

use crate::blob::{check_shape, shape_string, Blob};

use crate::caffe::{LayerParameter, NetParameter, Phase};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::layers::{create_layer, nearest_type, BuildContext, Layer, LayerInfo};

/// Layer types whose top may share its bottom's name (run in place).
const IN_PLACE_TYPES: &[&str] = &["Sigmoid", "Softmax"];

/// One layer of a [`Net`] with its wiring.
struct NetLayer<T: Element> {
    layer: Box<dyn Layer<T>>,
    /// Blob ids of the bottoms.
    bottoms: Vec<usize>,
    /// Blob ids of the tops.
    tops: Vec<usize>,
    /// Loss weight of each top.
    loss_weights: Vec<f64>,
    /// Whether each bottom receives a gradient.
    propagate_down: Vec<bool>,
    /// Gradient buffers handed to the layer's backward, one per bottom.
    scratch: Vec<Vec<T>>,
}

/// Blob ids and backward settings of one layer.
pub(crate) struct Wiring<'a> {
    /// Blob ids of the bottoms.
    pub bottoms: &'a [usize],
    /// Blob ids of the tops.
    pub tops: &'a [usize],
    /// Whether each bottom receives a gradient.
    pub propagate_down: &'a [bool],
    /// Loss weight of each top.
    pub loss_weights: &'a [f64],
}

/// A loss value of one top after [`Net::forward`].
#[derive(Debug, Clone, PartialEq)]
pub struct LossOutput {
    /// Top blob name.
    pub name: String,
    /// Unweighted value (sum of the top's elements).
    pub value: f64,
    /// Loss weight of the top.
    pub weight: f64,
}

/// Layers wired by blob name, with the blobs they read and write.
///
/// Every top gets its own blob, even one written in place, so the blob a
/// layer read in the forward pass is still there for its backward pass. A
/// blob read by several layers receives the sum of their gradients.
pub struct Net<T: Element> {
    file: String,
    layers: Vec<NetLayer<T>>,
    blobs: Vec<Blob<T>>,
    blob_names: Vec<String>,
    /// Blob ids written by Input layers, with the shape fed from outside.
    input_overrides: HashMap<usize, Vec<usize>>,
    /// Whether a blob receives any gradient.
    needs_gradient: Vec<bool>,
    /// Whether every blob's shape follows from the current inputs: false
    /// after [`Net::set_input`] or a failed [`Net::reshape`], until the next
    /// reshape succeeds.
    shapes_current: bool,
    /// Whether a blob's diff is known to be all zeros since
    /// [`Net::prepare_backward`], so that the first gradient into it can be
    /// moved in instead of added.
    diff_is_zero: Vec<bool>,
}

/// A net built from a model file, with its parsed parameters and the folder
/// that relative `source:` paths resolve against.
pub struct LoadedNet<T: Element> {
    /// The net, with its Input blobs at their declared shapes.
    pub net: Net<T>,
    /// The upgraded, phase-filtered model.
    pub param: NetParameter,
    /// Where layers look for files named by relative paths.
    pub context: BuildContext,
}

/// Reads, upgrades and filters `model` for `phase`, then builds its net.
pub fn load_model<T: Element>(model: &Path, phase: Phase) -> Result<LoadedNet<T>> {
    let param = crate::prototxt::read_net(model, phase)?;
    let context = BuildContext {
        model_dir: model.parent().map(Path::to_path_buf),
    };
    let net = Net::new(&param, &model.display().to_string(), &context)?;
    Ok(LoadedNet {
        net,
        param,
        context,
    })
}

/// Resolves the loss weight of every top as Caffe does. Given weights must
/// number one per top. Without them, the first top of a loss layer weighs 1
/// and every other top 0.
pub fn loss_weights(info: &LayerInfo, given: &[f32], is_loss: bool) -> Result<Vec<f64>> {
    let tops = info.tops.len();
    if given.is_empty() {
        return Ok((0..tops)
            .map(|i| if is_loss && i == 0 { 1.0 } else { 0.0 })
            .collect());
    }
    if given.len() != tops {
        return Err(info.config_error(format!(
            "loss_weight must be unset or given once per top: expected {tops}, got {}",
            given.len()
        )));
    }
    Ok(given.iter().map(|&w| f64::from(w)).collect())
}

/// Loss layer types that, as in Caffe, get an unnamed top when the prototxt
/// gives none (old nets often omit the loss top).
const AUTOMATIC_TOP_TYPES: &[&str] = &[
    "SoftmaxWithLoss",
    "EuclideanLoss",
    "HingeLoss",
    "SigmoidCrossEntropyLoss",
    "MultinomialLogisticLoss",
    "InfogainLoss",
    "ContrastiveLoss",
];

/// Returns `param` with a top named `<layer> (automatic)` added when it is a
/// loss layer without tops.
pub fn with_automatic_top(param: &LayerParameter) -> LayerParameter {
    let mut param = param.clone();
    if param.top.is_empty() && AUTOMATIC_TOP_TYPES.contains(&param.r#type()) {
        param.top.push(format!("{} (automatic)", param.name()));
    }
    param
}

impl<T: Element> Net<T> {
    /// Builds a net from an upgraded, phase-filtered `param`. `file` names the
    /// model in errors. Every layer must be of a supported type.
    pub fn new(param: &NetParameter, file: &str, context: &BuildContext) -> Result<Self> {
        let mut net = Net {
            file: file.to_string(),
            layers: Vec::new(),
            blobs: Vec::new(),
            blob_names: Vec::new(),
            input_overrides: HashMap::new(),
            needs_gradient: Vec::new(),
            shapes_current: false,
            diff_is_zero: Vec::new(),
        };
        if param.layer.is_empty() {
            return Err(Error::model(
                file,
                "the model defines no layers (after phase filtering and upgrade)",
            ));
        }
        let force_backward = param.force_backward();
        let mut current: HashMap<String, usize> = HashMap::new();
        for layer_param in &param.layer {
            let layer_param = &with_automatic_top(layer_param);
            let info = LayerInfo::from_param(layer_param);
            let Some(layer) = create_layer::<T>(layer_param, context)? else {
                return Err(net.unsupported(&info));
            };
            let mut bottoms = Vec::with_capacity(info.bottoms.len());
            for name in &info.bottoms {
                let id = current.get(name).copied().ok_or_else(|| {
                    Error::model(
                        file,
                        format!(
                            "layer '{}' ({}): bottom '{name}' is not produced by any earlier layer",
                            info.name, info.layer_type
                        ),
                    )
                })?;
                bottoms.push(id);
            }
            let mut tops = Vec::with_capacity(info.tops.len());
            for name in &info.tops {
                let in_place = info.bottoms.contains(name);
                if in_place && !IN_PLACE_TYPES.contains(&info.layer_type.as_str()) {
                    return Err(Error::model(
                        file,
                        format!(
                            "layer '{}' ({}): top '{name}' is also a bottom, but this layer type \
                             cannot run in place; give the top a new name",
                            info.name, info.layer_type
                        ),
                    ));
                }
                if tops.iter().any(|&t| net.blob_names[t] == *name) {
                    return Err(Error::model(
                        file,
                        format!(
                            "layer '{}' ({}): top '{name}' is listed twice",
                            info.name, info.layer_type
                        ),
                    ));
                }
                if !in_place && current.contains_key(name) {
                    return Err(Error::model(
                        file,
                        format!(
                            "layer '{}' ({}): top '{name}' is already produced by an earlier \
                             layer; top names must be unique unless written in place",
                            info.name, info.layer_type
                        ),
                    ));
                }
                let id = net.blobs.len();
                net.blobs.push(Blob::default());
                net.blob_names.push(name.clone());
                net.needs_gradient.push(false);
                net.diff_is_zero.push(false);
                current.insert(name.clone(), id);
                tops.push(id);
            }
            let given_propagate = &layer_param.propagate_down;
            if !given_propagate.is_empty() && given_propagate.len() != bottoms.len() {
                return Err(info.config_error(format!(
                    "propagate_down must be unset or given once per bottom: expected {}, got {}",
                    bottoms.len(),
                    given_propagate.len()
                )));
            }
            let propagate_down: Vec<bool> = (0..bottoms.len())
                .map(|i| {
                    let requested =
                        force_backward || given_propagate.get(i).copied().unwrap_or(true);
                    requested && layer.allows_backward(i)
                })
                .collect();
            for (&id, &propagate) in bottoms.iter().zip(&propagate_down) {
                if propagate {
                    net.needs_gradient[id] = true;
                }
            }
            let loss_weights = loss_weights(&info, &layer_param.loss_weight, layer.is_loss())?;
            net.layers.push(NetLayer {
                scratch: vec![Vec::new(); bottoms.len()],
                layer,
                bottoms,
                tops,
                loss_weights,
                propagate_down,
            });
        }
        net.reshape()?;
        Ok(net)
    }

    fn unsupported(&self, info: &LayerInfo) -> Error {
        let hint = if crate::layers::KNOWN_UNSUPPORTED_TYPES.contains(&info.layer_type.as_str()) {
            " (a Caffe layer type this crate does not implement)".to_string()
        } else {
            match nearest_type(&info.layer_type) {
                Some(near) => format!(" (unknown layer type; did you mean '{near}'?)"),
                None => " (unknown layer type)".to_string(),
            }
        };
        Error::model(
            &self.file,
            format!(
                "layer '{}' has type '{}', which is not supported{hint}; supported types: {}",
                info.name,
                info.layer_type,
                crate::layers::SUPPORTED_TYPES.join(", ")
            ),
        )
    }

    /// Names of the blobs written by Input layers, in order.
    pub fn input_names(&self) -> Vec<String> {
        self.input_ids()
            .map(|id| self.blob_names[id].clone())
            .collect()
    }

    fn input_ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.layers
            .iter()
            .filter(|l| l.layer.info().layer_type == "Input")
            .flat_map(|l| l.tops.iter().copied())
    }

    /// Feeds an Input blob: the data's shape replaces the declared one.
    ///
    /// The net is reshaped by the next forward or backward pass (or by
    /// [`Net::reshape`]), so that several inputs can change their batch size
    /// together. A shape that does not fit a layer is reported by that pass.
    pub fn set_input(&mut self, name: &str, shape: &[usize], data: Vec<T>) -> Result<()> {
        let id = self
            .input_ids()
            .find(|&id| self.blob_names[id] == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "'{name}' is not an input blob of {}; its inputs are: {}",
                    self.file,
                    self.input_names().join(", ")
                ))
            })?;
        let count = check_shape(shape).map_err(|message| self.input_shape_error(id, message))?;
        if count != data.len() {
            return Err(Error::Usage(format!(
                "input '{name}': shape {} needs {count} values, got {}",
                shape_string(shape),
                data.len()
            )));
        }
        self.blobs[id] = Blob::from_data(shape, data)?;
        self.input_overrides.insert(id, shape.to_vec());
        self.shapes_current = false;
        Ok(())
    }

    /// Builds the [`Error::Shape`] for a shape of Input blob `id` that breaks
    /// the blob limits.
    fn input_shape_error(&self, id: usize, message: String) -> Error {
        let owner = self.layers.iter().find(|l| l.tops.contains(&id));
        match owner {
            Some(layer) => {
                let info = layer.layer.info();
                let index = layer.tops.iter().position(|&t| t == id).unwrap_or(0);
                Error::Shape {
                    layer: info.name.clone(),
                    layer_type: info.layer_type.clone(),
                    blob: info.top(index),
                    message,
                }
            }
            None => Error::Usage(format!("input '{}': {message}", self.blob_names[id])),
        }
    }

    /// Recomputes every blob's shape from the inputs through each layer.
    ///
    /// A loss layer with an empty bottom, and a top whose shape breaks the
    /// blob limits of [`check_shape`], are [`Error::Shape`] errors.
    pub fn reshape(&mut self) -> Result<()> {
        self.shapes_current = false;
        for layer in &mut self.layers {
            let info = layer.layer.info();
            let bottom_shapes: Vec<&[usize]> = layer
                .bottoms
                .iter()
                .map(|&b| self.blobs[b].shape())
                .collect();
            if layer.layer.is_loss() {
                // Caffe divides by the batch size or an element count here,
                // which gives NaN for an empty batch.
                let empty = bottom_shapes.iter().position(|s| s.contains(&0));
                if let Some(index) = empty {
                    return Err(info.bottom_shape_error(
                        index,
                        format!(
                            "empty blob (shape {}); a loss layer needs at least one element",
                            shape_string(bottom_shapes[index])
                        ),
                    ));
                }
            }
            let top_shapes = layer.layer.reshape(&bottom_shapes)?;
            for (index, (&top, shape)) in layer.tops.iter().zip(&top_shapes).enumerate() {
                let shape = self.input_overrides.get(&top).unwrap_or(shape);
                let info = layer.layer.info();
                check_shape(shape).map_err(|message| Error::Shape {
                    layer: info.name.clone(),
                    layer_type: info.layer_type.clone(),
                    blob: info.top(index),
                    message,
                })?;
                if self.blobs[top].shape() != shape.as_slice() || self.blobs[top].count() == 0 {
                    self.blobs[top].reshape(shape)?;
                }
            }
            for (slot, &b) in layer.scratch.iter_mut().zip(&layer.bottoms) {
                slot.resize(self.blobs[b].count(), T::default());
            }
        }
        self.shapes_current = true;
        Ok(())
    }

    /// Reshapes the net when an input changed since the last reshape.
    pub(crate) fn ensure_shapes(&mut self) -> Result<()> {
        if self.shapes_current {
            Ok(())
        } else {
            self.reshape()
        }
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Identity of layer `index`.
    pub fn layer_info(&self, index: usize) -> Option<&LayerInfo> {
        self.layers.get(index).map(|l| l.layer.info())
    }

    /// Runs the forward pass of layer `index` alone.
    pub fn forward_layer(&mut self, index: usize) -> Result<()> {
        self.ensure_shapes()?;
        let Some(layer) = self.layers.get_mut(index) else {
            return Ok(());
        };
        let mut tops: Vec<Blob<T>> = layer
            .tops
            .iter()
            .map(|&t| std::mem::take(&mut self.blobs[t]))
            .collect();
        let bottoms: Vec<&Blob<T>> = layer.bottoms.iter().map(|&b| &self.blobs[b]).collect();
        let result = layer.layer.forward(&bottoms, &mut tops);
        for (&t, blob) in layer.tops.iter().zip(tops) {
            self.blobs[t] = blob;
        }
        result
    }

    /// Runs every layer forward and returns the total weighted loss
    /// (Σ weight × Σ top elements over the tops with a non-zero weight).
    pub fn forward(&mut self) -> Result<f64> {
        for index in 0..self.layers.len() {
            self.forward_layer(index)?;
        }
        Ok(self.losses().iter().map(|l| l.weight * l.value).sum())
    }

    /// Loss tops (non-zero weight) with their values after the last forward.
    pub fn losses(&self) -> Vec<LossOutput> {
        let mut out = Vec::new();
        for layer in &self.layers {
            for (&t, &weight) in layer.tops.iter().zip(&layer.loss_weights) {
                if weight != 0.0 {
                    let value = self.blobs[t].data().iter().map(|v| v.to_f64()).sum();
                    out.push(LossOutput {
                        name: self.blob_names[t].clone(),
                        value,
                        weight,
                    });
                }
            }
        }
        out
    }

    /// Clears every gradient and seeds each loss top's diff with its weight.
    pub fn prepare_backward(&mut self) {
        for blob in &mut self.blobs {
            blob.diff_mut().iter_mut().for_each(|d| *d = T::default());
        }
        self.diff_is_zero.iter_mut().for_each(|z| *z = true);
        for layer in &self.layers {
            for (&t, &weight) in layer.tops.iter().zip(&layer.loss_weights) {
                if weight != 0.0 {
                    let w = T::from_f64(weight);
                    self.blobs[t].diff_mut().iter_mut().for_each(|d| *d = w);
                    self.diff_is_zero[t] = false;
                }
            }
        }
    }

    /// Runs the backward pass of layer `index` alone, adding its bottom
    /// gradients to the bottoms' diffs.
    ///
    /// A gradient into a diff that is still all zeros is swapped in rather
    /// than added, which gives the same values (up to the sign of zero)
    /// without a pass over both buffers.
    pub fn backward_layer(&mut self, index: usize) -> Result<()> {
        self.ensure_shapes()?;
        let Some(layer) = self.layers.get_mut(index) else {
            return Ok(());
        };
        if !layer.propagate_down.iter().any(|&p| p) {
            return Ok(());
        }
        let tops: Vec<&Blob<T>> = layer.tops.iter().map(|&t| &self.blobs[t]).collect();
        let bottoms: Vec<&Blob<T>> = layer.bottoms.iter().map(|&b| &self.blobs[b]).collect();
        layer
            .layer
            .backward(&tops, &layer.propagate_down, &bottoms, &mut layer.scratch)?;
        for ((&b, &propagate), grad) in layer
            .bottoms
            .iter()
            .zip(&layer.propagate_down)
            .zip(&mut layer.scratch)
        {
            if !propagate {
                continue;
            }
            let blob = &mut self.blobs[b];
            if self.diff_is_zero[b] && blob.diff().len() == grad.len() {
                let zeros = blob.take_diff();
                blob.set_diff(std::mem::replace(grad, zeros));
            } else {
                for (d, g) in blob.diff_mut().iter_mut().zip(grad.iter()) {
                    *d = T::from_acc(d.to_acc() + g.to_acc());
                }
            }
            self.diff_is_zero[b] = false;
        }
        Ok(())
    }

    /// Runs every layer backward, last first, from loss-weight seeds.
    pub fn backward(&mut self) -> Result<()> {
        self.ensure_shapes()?;
        self.prepare_backward();
        self.backward_from_seeds()
    }

    /// Runs every layer backward from the diffs already in the blobs; call
    /// [`Net::prepare_backward`] first and adjust the seeds with
    /// [`Net::output_diff_mut`].
    pub fn backward_from_seeds(&mut self) -> Result<()> {
        for index in (0..self.layers.len()).rev() {
            self.backward_layer(index)?;
        }
        Ok(())
    }

    /// Diff of top `top` of layer `layer`, to seed a backward pass.
    pub fn output_diff_mut(&mut self, layer: usize, top: usize) -> Option<&mut [T]> {
        let id = *self.layers.get(layer)?.tops.get(top)?;
        self.diff_is_zero[id] = false;
        Some(self.blobs[id].diff_mut())
    }

    /// Data of the Input blob `name`, writable (for perturbation).
    pub fn input_data_mut(&mut self, name: &str) -> Option<&mut [T]> {
        let id = self.input_ids().find(|&id| self.blob_names[id] == name)?;
        Some(self.blobs[id].data_mut())
    }

    /// Loss weights of the tops of layer `index`.
    pub fn layer_loss_weights(&self, index: usize) -> Option<&[f64]> {
        self.layers.get(index).map(|l| l.loss_weights.as_slice())
    }

    /// Latest blob written under `name`.
    pub fn blob(&self, name: &str) -> Option<&Blob<T>> {
        self.blob_names
            .iter()
            .rposition(|n| n == name)
            .map(|id| &self.blobs[id])
    }

    /// Returns every top of every non-Input layer, as (name, blob), in layer order.
    pub fn outputs(&self) -> Vec<(&str, &Blob<T>)> {
        self.layers
            .iter()
            .filter(|l| l.layer.info().layer_type != "Input")
            .flat_map(|l| l.tops.iter())
            .map(|&t| (self.blob_names[t].as_str(), &self.blobs[t]))
            .collect()
    }

    /// Input blobs that receive a gradient, as (name, blob).
    pub fn input_gradients(&self) -> Vec<(&str, &Blob<T>)> {
        self.input_ids()
            .filter(|&id| self.needs_gradient[id])
            .map(|id| (self.blob_names[id].as_str(), &self.blobs[id]))
            .collect()
    }

    /// Returns the name of the first blob holding a NaN or an infinity, or
    /// `None` when every value is finite.
    pub fn first_non_finite(&self) -> Option<&str> {
        self.blobs
            .iter()
            .zip(&self.blob_names)
            .find(|(b, _)| b.data().iter().any(|v| !v.to_acc().is_finite()))
            .map(|(_, n)| n.as_str())
    }

    /// Wiring of layer `index`, for the GPU runner.
    pub(crate) fn wiring(&self, index: usize) -> Option<Wiring<'_>> {
        self.layers.get(index).map(|l| Wiring {
            bottoms: &l.bottoms,
            tops: &l.tops,
            propagate_down: &l.propagate_down,
            loss_weights: &l.loss_weights,
        })
    }

    /// Number of blobs, one per top of every layer.
    pub(crate) fn num_blobs(&self) -> usize {
        self.blobs.len()
    }

    /// Blob with id `id` (ids come from [`Net::wiring`]).
    pub(crate) fn blob_by_id(&self, id: usize) -> Option<&Blob<T>> {
        self.blobs.get(id)
    }

    /// Blob with id `id`, writable (the GPU runner copies results back here).
    pub(crate) fn blob_by_id_mut(&mut self, id: usize) -> Option<&mut Blob<T>> {
        self.blobs.get_mut(id)
    }

    /// Name of the blob with id `id`.
    pub(crate) fn blob_name_by_id(&self, id: usize) -> &str {
        self.blob_names.get(id).map_or("", String::as_str)
    }
}
