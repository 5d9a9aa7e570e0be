//! `check`: every supported layer of a real net, run on random valid inputs
//! with a finite-difference gradient check.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::blob::shape_string;
use crate::caffe::{self, BlobShape, InputParameter, LayerParameter, NetParameter, Phase};
use crate::device::{Device, DeviceChoice};
use crate::error::{Error, Result};
use crate::gradcheck::{check_gradients, GradCheckOptions};
use crate::layers::{BuildContext, SUPPORTED_TYPES};
use crate::net::Net;

/// Largest relative gradient error a checked layer may show. Looser than
/// f64 rounding because ContrastiveLoss divides by `d + 1e-4` where the exact
/// gradient divides by `d`, as Caffe does.
pub const GRADIENT_TOLERANCE: f64 = 1e-3;

/// Options of [`check_model`].
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Batch size where the net declares none.
    pub batch: usize,
    /// Shapes given by the user per blob name; they win over inferred ones.
    pub shapes: Vec<(String, Vec<usize>)>,
    /// Device requested; the CPU f64 run is the reference.
    pub device: DeviceChoice,
    /// Phase for include/exclude rules.
    pub phase: Phase,
    /// Class count where the net gives none.
    pub default_channels: usize,
    /// Height and width of image-like blobs whose size the net does not give.
    pub default_spatial: usize,
    /// Seed of the random inputs.
    pub seed: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            batch: 2,
            shapes: Vec::new(),
            device: DeviceChoice::Cpu,
            phase: Phase::Train,
            default_channels: 10,
            default_spatial: 4,
            seed: 1701,
        }
    }
}

/// Outcome for one layer.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerOutcome {
    /// A type this crate does not implement.
    NotSupported,
    /// Input layers feed the others and are not checked themselves.
    Input,
    /// Ran forward, backward and the gradient check.
    Checked {
        /// Value of `top[0]` for a loss layer or Accuracy; `None` for layers
        /// whose top is not a scalar.
        loss: Option<f64>,
        /// Largest relative gradient error over the bottoms checked, or `None`
        /// when the layer has no gradient (Accuracy).
        max_error: Option<f64>,
        /// Largest difference between the GPU and the CPU run in f32,
        /// relative to max(|CPU value|, 1); `None` unless `--device cuda`.
        gpu_difference: Option<f64>,
        /// Whether the layer passed.
        passed: bool,
    },
    /// The layer could not be run, for the reason in the message.
    Failed(String),
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    /// Layer name.
    pub name: String,
    /// Layer type.
    pub layer_type: String,
    /// Bottom shapes used.
    pub bottom_shapes: Vec<Vec<usize>>,
    /// Result.
    pub outcome: LayerOutcome,
}

/// Rows of a `check` run.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// One row per layer of the filtered net.
    pub rows: Vec<LayerRow>,
}

impl CheckReport {
    /// Returns whether every checked layer passed.
    pub fn all_passed(&self) -> bool {
        self.rows.iter().all(|row| match &row.outcome {
            LayerOutcome::Checked { passed, .. } => *passed,
            LayerOutcome::Failed(_) => false,
            _ => true,
        })
    }

    /// Renders the table: layer, type, bottom shapes, loss, max gradient
    /// error, result.
    pub fn table(&self) -> String {
        let mut lines = vec![[
            "layer".to_string(),
            "type".to_string(),
            "bottoms".to_string(),
            "loss".to_string(),
            "max grad error".to_string(),
            "result".to_string(),
        ]];
        for row in &self.rows {
            let bottoms: Vec<String> = row
                .bottom_shapes
                .iter()
                .map(|s| {
                    s.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("x")
                })
                .collect();
            let (loss, error, result) = match &row.outcome {
                LayerOutcome::NotSupported => ("-".into(), "-".into(), "not supported".into()),
                LayerOutcome::Input => ("-".into(), "-".into(), "input".into()),
                LayerOutcome::Checked {
                    loss,
                    max_error,
                    gpu_difference,
                    passed,
                } => {
                    let verdict = if *passed { "pass" } else { "FAIL" };
                    let result = match gpu_difference {
                        Some(d) => format!("{verdict} (GPU vs CPU {d:.2e})"),
                        None => verdict.to_string(),
                    };
                    (
                        loss.map_or_else(|| "-".to_string(), |l| format!("{l:.6}")),
                        max_error.map_or_else(|| "no gradient".to_string(), |e| format!("{e:.2e}")),
                        result,
                    )
                }
                LayerOutcome::Failed(why) => ("-".into(), "-".into(), format!("FAIL: {why}")),
            };
            lines.push([
                row.name.clone(),
                row.layer_type.clone(),
                bottoms.join(" "),
                loss,
                error,
                result,
            ]);
        }
        let mut widths = [0usize; 6];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in &lines {
            let mut text = String::new();
            for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
                if i + 1 == line.len() {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:<w$}  ");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// What a bottom holds, which decides its random values and derived shape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// Real-valued data.
    Data,
    /// Integer class labels in [0, classes).
    Label(usize),
    /// Targets in [0, 1].
    Target,
    /// Similarity flags, 0 or 1.
    Flag,
    /// Rows of positive probabilities summing to 1.
    Probabilities,
    /// A non-negative C × C matrix.
    Matrix,
}

/// Parses, upgrades and filters `path`, then checks every supported layer.
pub fn check_model(path: &Path, options: &CheckOptions) -> Result<CheckReport> {
    let net = crate::prototxt::read_net(path, options.phase)?;
    if net.layer.is_empty() {
        return Err(Error::model(
            path.display().to_string(),
            "the model defines no layers (after phase filtering and upgrade)",
        ));
    }
    if options.batch == 0 {
        return Err(Error::Usage("--batch must be at least 1".to_string()));
    }
    for (name, _) in &options.shapes {
        let known = net
            .layer
            .iter()
            .any(|l| l.top.contains(name) || l.bottom.contains(name));
        if !known {
            return Err(Error::Usage(format!(
                "--shape {name}: no layer of {} reads or writes a blob named '{name}'",
                path.display()
            )));
        }
    }
    let device = crate::device::select(options.device)?;
    let context = BuildContext {
        model_dir: path.parent().map(Path::to_path_buf),
    };
    let shapes = infer_shapes(&net, options);
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut rows = Vec::new();
    for layer in &net.layer {
        let layer_type = layer.r#type().to_string();
        let name = match layer.name() {
            "" => format!("(unnamed #{})", rows.len()),
            named => named.to_string(),
        };
        let mut row = LayerRow {
            name,
            layer_type: layer_type.clone(),
            bottom_shapes: Vec::new(),
            outcome: LayerOutcome::NotSupported,
        };
        if layer_type == "Input" {
            row.outcome = LayerOutcome::Input;
            row.bottom_shapes = layer
                .top
                .iter()
                .filter_map(|t| shapes.get(t).cloned())
                .collect();
        } else if SUPPORTED_TYPES.contains(&layer_type.as_str()) {
            let inputs = layer_inputs(layer, &shapes, options);
            row.bottom_shapes = inputs.iter().map(|(_, s, _)| s.clone()).collect();
            row.outcome = match check_layer(layer, &inputs, &context, device, &mut rng) {
                Ok(outcome) => outcome,
                Err(e) => LayerOutcome::Failed(e.to_string()),
            };
        }
        rows.push(row);
    }
    Ok(CheckReport { rows })
}

fn batch_of(layer: &LayerParameter) -> Option<usize> {
    let batch = match layer.r#type() {
        "Data" => layer.data_param.as_ref().map(|p| p.batch_size()),
        "ImageData" => layer.image_data_param.as_ref().map(|p| p.batch_size()),
        "HDF5Data" => layer.hdf5_data_param.as_ref().map(|p| p.batch_size()),
        "MemoryData" => layer.memory_data_param.as_ref().map(|p| p.batch_size()),
        "WindowData" => layer.window_data_param.as_ref().map(|p| p.batch_size()),
        _ => None,
    }?;
    usize::try_from(batch).ok().filter(|&b| b > 0)
}

fn dims_of(shape: &BlobShape) -> Vec<usize> {
    shape
        .dim
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .collect()
}

/// Walks the net in order and gives every blob a plausible shape.
fn infer_shapes(net: &NetParameter, options: &CheckOptions) -> HashMap<String, Vec<usize>> {
    let overrides: HashMap<&str, &Vec<usize>> = options
        .shapes
        .iter()
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    let spatial = options.default_spatial;
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    for layer in &net.layer {
        let first = layer
            .bottom
            .first()
            .and_then(|b| shapes.get(b).cloned())
            .unwrap_or_else(|| vec![options.batch, options.default_channels]);
        let n = first.first().copied().unwrap_or(options.batch);
        let mut tops: Vec<Vec<usize>> = match layer.r#type() {
            "Input" => {
                let declared = layer.input_param.clone().unwrap_or_default().shape;
                (0..layer.top.len())
                    .map(|i| {
                        declared
                            .get(if declared.len() == 1 { 0 } else { i })
                            .map(dims_of)
                            .unwrap_or_else(|| vec![options.batch, options.default_channels])
                    })
                    .collect()
            }
            "DummyData" => {
                let declared = layer.dummy_data_param.clone().unwrap_or_default().shape;
                (0..layer.top.len())
                    .map(|i| {
                        declared
                            .get(i)
                            .or(declared.first())
                            .map(dims_of)
                            .unwrap_or_default()
                    })
                    .collect()
            }
            "MemoryData" => {
                let p = layer.memory_data_param.unwrap_or_default();
                let dims = [p.batch_size(), p.channels(), p.height(), p.width()];
                let data: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
                vec![data, vec![p.batch_size() as usize]]
            }
            "InnerProduct" => {
                let outputs = layer
                    .inner_product_param
                    .as_ref()
                    .map_or(1, |p| p.num_output());
                vec![vec![n, outputs as usize]]
            }
            "Convolution" | "Deconvolution" => {
                let outputs = layer
                    .convolution_param
                    .as_ref()
                    .map_or(1, |p| p.num_output());
                let (h, w) = (
                    first.get(2).copied().unwrap_or(spatial),
                    first.get(3).copied().unwrap_or(spatial),
                );
                vec![vec![n, outputs as usize, h, w]]
            }
            "Flatten" => vec![vec![
                n,
                saturating_product(first.get(1..).unwrap_or_default()),
            ]],
            "Crop" => {
                let reference = layer.bottom.get(1).and_then(|b| shapes.get(b));
                let mut out = first.clone();
                if let Some(r) = reference {
                    let end = out.len().min(r.len());
                    if end > 2 {
                        out[2..end].copy_from_slice(&r[2..end]);
                    }
                }
                vec![out]
            }
            "Concat" => {
                let axis = layer.concat_param.as_ref().map_or(1, |p| p.axis()).max(0) as usize;
                let mut out = first.clone();
                if axis < out.len() {
                    out[axis] = layer
                        .bottom
                        .iter()
                        .filter_map(|b| shapes.get(b).and_then(|s| s.get(axis)))
                        .fold(0usize, |total, &dim| total.saturating_add(dim));
                }
                vec![out]
            }
            _ if layer.bottom.is_empty() => {
                // A data layer: image-like data and one label per sample.
                let batch = batch_of(layer).unwrap_or(options.batch);
                let mut tops = vec![vec![batch, 3, spatial, spatial]];
                tops.extend((1..layer.top.len()).map(|_| vec![batch]));
                tops
            }
            _ => vec![first.clone(); layer.top.len()],
        };
        tops.resize(layer.top.len(), first.clone());
        for (name, shape) in layer.top.iter().zip(tops) {
            let shape = overrides.get(name.as_str()).map_or(shape, |s| (*s).clone());
            shapes.insert(name.clone(), shape);
        }
    }
    for (name, shape) in &options.shapes {
        shapes.entry(name.clone()).or_insert_with(|| shape.clone());
    }
    shapes
}

/// Multiplies `dims`, saturating at `usize::MAX`.
///
/// Inferred shapes come from the model or the command line and may be huge.
/// The net built from them rejects such shapes with a clear error, so the
/// inference must not overflow before that.
fn saturating_product(dims: &[usize]) -> usize {
    dims.iter()
        .fold(1usize, |product, &dim| product.saturating_mul(dim))
}

/// Shapes and roles of the bottoms of a supported layer.
fn layer_inputs(
    layer: &LayerParameter,
    shapes: &HashMap<String, Vec<usize>>,
    options: &CheckOptions,
) -> Vec<(String, Vec<usize>, Role)> {
    let user: HashMap<&str, &Vec<usize>> = options
        .shapes
        .iter()
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    let default = vec![options.batch, options.default_channels];
    let first_name = layer.bottom.first().cloned().unwrap_or_default();
    let mut first = shapes.get(&first_name).cloned().unwrap_or(default);
    if first.is_empty() {
        first = vec![options.batch, options.default_channels];
    }
    let axis_param = match layer.r#type() {
        "SoftmaxWithLoss" => layer.softmax_param.as_ref().map_or(1, |p| p.axis()),
        "InfogainLoss" => layer.infogain_loss_param.as_ref().map_or(1, |p| p.axis()),
        "Accuracy" => layer.accuracy_param.as_ref().map_or(1, |p| p.axis()),
        _ => 1,
    };
    let axis = crate::blob::canonical_axis(axis_param, first.len()).unwrap_or(0);
    let classes = first.get(axis).copied().unwrap_or(1);
    let num = first.first().copied().unwrap_or(1);
    let per_sample = saturating_product(first.get(1..).unwrap_or_default());
    let label_shape: Vec<usize> = first
        .iter()
        .enumerate()
        .map(|(i, &d)| if i == axis { 1 } else { d })
        .collect();
    let roles: Vec<(Vec<usize>, Role)> = match layer.r#type() {
        "SoftmaxWithLoss" | "Accuracy" => {
            vec![
                (first.clone(), Role::Data),
                (label_shape, Role::Label(classes)),
            ]
        }
        "InfogainLoss" => vec![
            (first.clone(), Role::Data),
            (label_shape, Role::Label(classes)),
            (vec![classes, classes], Role::Matrix),
        ],
        "HingeLoss" => vec![
            (first.clone(), Role::Data),
            (vec![num], Role::Label(per_sample)),
        ],
        "MultinomialLogisticLoss" => vec![
            (first.clone(), Role::Probabilities),
            (vec![num], Role::Label(per_sample)),
        ],
        "SigmoidCrossEntropyLoss" => {
            vec![(first.clone(), Role::Data), (first.clone(), Role::Target)]
        }
        "EuclideanLoss" => vec![(first.clone(), Role::Data), (first.clone(), Role::Data)],
        "ContrastiveLoss" => vec![
            (vec![num, per_sample, 1, 1], Role::Data),
            (vec![num, per_sample, 1, 1], Role::Data),
            (vec![num, 1, 1, 1], Role::Flag),
        ],
        _ => vec![(first.clone(), Role::Data)],
    };
    layer
        .bottom
        .iter()
        .zip(roles)
        .map(|(name, (shape, role))| {
            let shape = user.get(name.as_str()).map_or(shape, |s| (*s).clone());
            (name.clone(), shape, role)
        })
        .collect()
}

fn random_values(shape: &[usize], role: Role, rng: &mut StdRng) -> Vec<f64> {
    let count: usize = shape.iter().product();
    match role {
        Role::Data => (0..count).map(|_| rng.random_range(-2.0..2.0)).collect(),
        Role::Label(classes) => (0..count)
            .map(|_| rng.random_range(0..classes.max(1)) as f64)
            .collect(),
        Role::Target => (0..count).map(|_| rng.random_range(0.0..1.0)).collect(),
        Role::Flag => (0..count)
            .map(|_| f64::from(rng.random_range(0..2u8)))
            .collect(),
        Role::Matrix => (0..count).map(|_| rng.random_range(0.0..1.0)).collect(),
        Role::Probabilities => {
            let num = shape.first().copied().unwrap_or(1).max(1);
            let per = count / num;
            let mut values: Vec<f64> = (0..count).map(|_| rng.random_range(0.05..1.0)).collect();
            for row in values.chunks_mut(per.max(1)) {
                let sum: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
            values
        }
    }
}

/// Random valid values for `shape` and the role of a blob.
pub fn random_input(
    shape: &[usize],
    role_name: &str,
    classes: usize,
    rng: &mut StdRng,
) -> Vec<f64> {
    let role = match role_name {
        "label" => Role::Label(classes),
        "target" => Role::Target,
        "flag" => Role::Flag,
        "probabilities" => Role::Probabilities,
        "matrix" => Role::Matrix,
        _ => Role::Data,
    };
    random_values(shape, role, rng)
}

/// Builds a net of one Input layer and `layer`, fed with `inputs`.
pub fn single_layer_net(layer: &LayerParameter, inputs: &[(String, Vec<usize>)]) -> NetParameter {
    let mut unique: Vec<&(String, Vec<usize>)> = Vec::new();
    for input in inputs {
        if !unique.iter().any(|u| u.0 == input.0) {
            unique.push(input);
        }
    }
    let input = LayerParameter {
        name: Some("input".to_string()),
        r#type: Some("Input".to_string()),
        top: unique.iter().map(|(n, _)| n.clone()).collect(),
        input_param: Some(InputParameter {
            shape: unique
                .iter()
                .map(|(_, s)| BlobShape {
                    dim: s
                        .iter()
                        .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                        .collect(),
                })
                .collect(),
        }),
        ..LayerParameter::default()
    };
    let mut checked = layer.clone();
    checked.include.clear();
    checked.exclude.clear();
    // A loss whose weights are all 0 would make the gradient check vacuous;
    // check it with the default weights instead.
    if checked.loss_weight.iter().all(|&w| w == 0.0) {
        checked.loss_weight.clear();
    }
    NetParameter {
        force_backward: Some(true),
        layer: vec![input, checked],
        ..NetParameter::default()
    }
}

fn check_layer(
    layer: &LayerParameter,
    inputs: &[(String, Vec<usize>, Role)],
    context: &BuildContext,
    device: Device,
    rng: &mut StdRng,
) -> Result<LayerOutcome> {
    let shapes: Vec<(String, Vec<usize>)> = inputs
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone()))
        .collect();
    let param = single_layer_net(layer, &shapes);
    let mut net = Net::<f64>::new(&param, layer.name(), context)?;
    let mut fed: Vec<(String, Vec<usize>, Vec<f64>)> = Vec::new();
    for (name, shape, role) in inputs {
        if fed.iter().any(|(n, _, _)| n == name) {
            continue;
        }
        let values = random_values(shape, *role, rng);
        net.set_input(name, shape, values.clone())?;
        fed.push((name.clone(), shape.clone(), values));
    }
    net.forward()?;
    if let Some(blob) = net.first_non_finite() {
        return Err(Error::model(
            layer.name(),
            format!("forward produced a NaN or infinity in blob '{blob}'"),
        ));
    }
    let loss = net
        .outputs()
        .first()
        .and_then(|(_, b)| b.data().first().copied())
        .unwrap_or(f64::NAN);
    let results = check_gradients(&mut net, GradCheckOptions::default())?;
    let max_error = results
        .iter()
        .map(|r| r.max_error)
        .fold(None, |acc: Option<f64>, e| {
            Some(match acc {
                Some(a) if a.is_nan() || e <= a => a,
                _ => e,
            })
        });
    let passed = max_error.is_none_or(|e| e <= GRADIENT_TOLERANCE) && loss.is_finite();
    let gpu_difference = match device {
        Device::Cuda(_) => Some(compare_on_gpu(&param, &fed, context)?),
        Device::Cpu => None,
    };
    let gpu_passed = gpu_difference.is_none_or(|d| d <= GPU_TOLERANCE);
    let scalar_top = layer.r#type().ends_with("Loss") || layer.r#type() == "Accuracy";
    let loss = scalar_top.then_some(loss);
    if layer.r#type() == "Accuracy" {
        return Ok(LayerOutcome::Checked {
            loss,
            max_error: None,
            gpu_difference,
            passed: passed && gpu_passed,
        });
    }
    Ok(LayerOutcome::Checked {
        loss,
        max_error,
        gpu_difference,
        passed: passed && gpu_passed,
    })
}

/// Largest GPU-versus-CPU difference a layer may show in f32, relative to
/// max(|CPU value|, 1): both sum in f32, in different orders.
pub const GPU_TOLERANCE: f64 = 1e-4;

/// Runs the single-layer net `param` in f32 on the CPU and on the GPU with
/// the same inputs and returns the largest relative difference over the tops
/// and the input gradients.
fn compare_on_gpu(
    param: &NetParameter,
    inputs: &[(String, Vec<usize>, Vec<f64>)],
    context: &BuildContext,
) -> Result<f64> {
    let build = || -> Result<Net<f32>> {
        let mut net = Net::<f32>::new(param, "check", context)?;
        for (name, shape, values) in inputs {
            net.set_input(name, shape, values.iter().map(|&v| v as f32).collect())?;
        }
        Ok(net)
    };
    let mut cpu = build()?;
    cpu.forward()?;
    cpu.backward()?;
    let gpu = crate::gpu::Gpu::new(0)?;
    let mut device_net = crate::gpu_net::GpuNet::new(gpu, build()?, param, context)?;
    device_net.forward()?;
    device_net.backward()?;
    let device = device_net.download()?;

    let mut worst = 0.0f64;
    let mut compare = |a: &[f32], b: &[f32]| {
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (f64::from(*x), f64::from(*y));
            let difference = (x - y).abs() / x.abs().max(1.0);
            if difference.is_nan() || difference > worst {
                worst = if difference.is_nan() {
                    f64::INFINITY
                } else {
                    difference
                };
            }
        }
    };
    for ((_, a), (_, b)) in cpu.outputs().iter().zip(device.outputs().iter()) {
        compare(a.data(), b.data());
    }
    for ((_, a), (_, b)) in cpu
        .input_gradients()
        .iter()
        .zip(device.input_gradients().iter())
    {
        compare(a.diff(), b.diff());
    }
    Ok(worst)
}

/// Shapes of `check` rows as Caffe prints them, for messages.
pub fn describe_shapes(shapes: &[Vec<usize>]) -> String {
    shapes
        .iter()
        .map(|s| shape_string(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Phase named as in prototxt.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        caffe::Phase::Train => "TRAIN",
        caffe::Phase::Test => "TEST",
    }
}

/// Fills every Input blob with random values of the range its consumers
/// expect: labels in [0, C), targets in [0, 1], flags 0 or 1.
pub fn fill_random_inputs<T: crate::element::Element>(
    net: &mut Net<T>,
    param: &NetParameter,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(1701);
    for name in net.input_names() {
        let Some(shape) = net.blob(&name).map(|b| b.shape().to_vec()) else {
            continue;
        };
        let (role, classes) = role_of(param, &name, net);
        let values = random_input(&shape, role, classes, &mut rng);
        net.set_input(&name, &shape, values.into_iter().map(T::from_f64).collect())?;
    }
    Ok(())
}

fn role_of<T: crate::element::Element>(
    param: &NetParameter,
    name: &str,
    net: &Net<T>,
) -> (&'static str, usize) {
    for layer in &param.layer {
        let Some(index) = layer.bottom.iter().position(|b| b == name) else {
            continue;
        };
        let first = layer
            .bottom
            .first()
            .and_then(|b| net.blob(b))
            .map(|b| b.shape().to_vec());
        let first = first.unwrap_or_default();
        let per_sample = first.iter().skip(1).product::<usize>();
        let channel = |axis: i32| {
            crate::blob::canonical_axis(axis, first.len())
                .and_then(|a| first.get(a).copied())
                .unwrap_or(1)
        };
        let role = match (layer.r#type(), index) {
            ("SoftmaxWithLoss", 1) => (
                "label",
                channel(layer.softmax_param.as_ref().map_or(1, |p| p.axis())),
            ),
            ("InfogainLoss", 1) => (
                "label",
                channel(layer.infogain_loss_param.as_ref().map_or(1, |p| p.axis())),
            ),
            ("Accuracy", 1) => (
                "label",
                channel(layer.accuracy_param.as_ref().map_or(1, |p| p.axis())),
            ),
            ("InfogainLoss", 2) => ("matrix", 0),
            ("HingeLoss" | "MultinomialLogisticLoss", 1) => ("label", per_sample),
            ("MultinomialLogisticLoss", 0) => ("probabilities", 0),
            ("SigmoidCrossEntropyLoss", 1) => ("target", 0),
            ("ContrastiveLoss", 2) => ("flag", 0),
            _ => continue,
        };
        return role;
    }
    ("data", 0)
}
