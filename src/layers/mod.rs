//! Layers: the common [`Layer`] interface, the factory that builds a layer
//! from its `LayerParameter`, and helpers shared by the loss layers.

mod accuracy;
mod contrastive_loss;
mod euclidean_loss;
mod hinge_loss;
mod infogain_loss;
mod input;
mod math;
mod multinomial_logistic_loss;
mod sigmoid;
mod sigmoid_cross_entropy_loss;
mod softmax;
mod softmax_loss;

use std::path::{Path, PathBuf};

pub use accuracy::AccuracyLayer;
pub use contrastive_loss::ContrastiveLossLayer;
pub use euclidean_loss::EuclideanLossLayer;
pub use hinge_loss::HingeLossLayer;
pub use infogain_loss::InfogainLossLayer;
pub use input::InputLayer;
pub use multinomial_logistic_loss::MultinomialLogisticLossLayer;
pub use sigmoid::SigmoidLayer;
pub use sigmoid_cross_entropy_loss::SigmoidCrossEntropyLossLayer;
pub use softmax::SoftmaxLayer;
pub use softmax_loss::SoftmaxWithLossLayer;

use crate::blob::{canonical_axis, shape_string, Blob};
use crate::caffe::{self, loss_parameter::NormalizationMode, LayerParameter};
use crate::element::Element;
use crate::error::{Error, Result};

/// Layer types this crate implements, as written in V2 prototxt.
pub const SUPPORTED_TYPES: &[&str] = &[
    "Input",
    "SoftmaxWithLoss",
    "EuclideanLoss",
    "HingeLoss",
    "SigmoidCrossEntropyLoss",
    "MultinomialLogisticLoss",
    "InfogainLoss",
    "ContrastiveLoss",
    "Softmax",
    "Sigmoid",
    "Accuracy",
];

/// Layer types of Caffe 1.0 that this crate does not implement; a net may
/// contain them, and `check` lists them as not supported.
pub const KNOWN_UNSUPPORTED_TYPES: &[&str] = &[
    "AbsVal",
    "ArgMax",
    "BatchNorm",
    "BatchReshape",
    "Bias",
    "BNLL",
    "Clip",
    "Concat",
    "Convolution",
    "Crop",
    "Data",
    "Deconvolution",
    "Dropout",
    "DummyData",
    "Eltwise",
    "ELU",
    "Embed",
    "Exp",
    "Filter",
    "Flatten",
    "HDF5Data",
    "HDF5Output",
    "Im2col",
    "ImageData",
    "InnerProduct",
    "Log",
    "LRN",
    "LSTM",
    "LSTMUnit",
    "MemoryData",
    "MVN",
    "Parameter",
    "Pooling",
    "Power",
    "PReLU",
    "Python",
    "Recurrent",
    "Reduction",
    "ReLU",
    "Reshape",
    "RNN",
    "Scale",
    "Silence",
    "Slice",
    "SPP",
    "Split",
    "Swish",
    "TanH",
    "Threshold",
    "Tile",
    "WindowData",
];

/// Identity of a layer inside a net, used in every error it reports.
#[derive(Debug, Clone, Default)]
pub struct LayerInfo {
    /// Layer name from the prototxt.
    pub name: String,
    /// Layer type from the prototxt.
    pub layer_type: String,
    /// Names of the bottom blobs.
    pub bottoms: Vec<String>,
    /// Names of the top blobs.
    pub tops: Vec<String>,
}

impl LayerInfo {
    /// Reads the identity of `param`.
    pub fn from_param(param: &LayerParameter) -> Self {
        LayerInfo {
            name: param.name().to_string(),
            layer_type: param.r#type().to_string(),
            bottoms: param.bottom.clone(),
            tops: param.top.clone(),
        }
    }

    /// Describes bottom `index` as `bottom[1] 'label'`.
    pub fn bottom(&self, index: usize) -> String {
        match self.bottoms.get(index) {
            Some(name) => format!("bottom[{index}] '{name}'"),
            None => format!("bottom[{index}]"),
        }
    }

    /// Describes top `index` as `top[0] 'loss'`.
    pub fn top(&self, index: usize) -> String {
        match self.tops.get(index) {
            Some(name) => format!("top[{index}] '{name}'"),
            None => format!("top[{index}]"),
        }
    }

    /// Builds an [`Error::LayerConfig`] for this layer.
    pub fn config_error(&self, message: impl Into<String>) -> Error {
        Error::LayerConfig {
            layer: self.name.clone(),
            layer_type: self.layer_type.clone(),
            message: message.into(),
        }
    }

    /// Builds the [`Error::Usage`] of a backward pass that finds no results
    /// of a forward pass over bottoms of the current shapes.
    pub fn missing_forward(&self) -> Error {
        Error::Usage(format!(
            "layer '{}' ({}): backward needs the results of a forward pass over the same \
             bottoms; run forward first",
            self.name, self.layer_type
        ))
    }

    /// Builds an [`Error::Shape`] about bottom `index`.
    pub fn bottom_shape_error(&self, index: usize, message: impl Into<String>) -> Error {
        Error::Shape {
            layer: self.name.clone(),
            layer_type: self.layer_type.clone(),
            blob: self.bottom(index),
            message: message.into(),
        }
    }

    /// Checks the number of bottoms against `min..=max`.
    pub fn expect_bottoms(&self, min: usize, max: usize) -> Result<()> {
        expect_count(self, "bottom", self.bottoms.len(), min, max)
    }

    /// Checks the number of tops against `min..=max`.
    pub fn expect_tops(&self, min: usize, max: usize) -> Result<()> {
        expect_count(self, "top", self.tops.len(), min, max)
    }

    /// Resolves `axis` against bottom `index` of shape `shape`.
    pub fn axis(&self, field: &str, axis: i32, index: usize, shape: &[usize]) -> Result<usize> {
        canonical_axis(axis, shape.len()).ok_or_else(|| {
            let n = shape.len();
            self.bottom_shape_error(
                index,
                format!(
                    "{field} {axis} is out of range for a blob with {n} axes (shape {}); \
                     expected a value in [-{n}, {}]",
                    shape_string(shape),
                    n.saturating_sub(1)
                ),
            )
        })
    }

    /// Checks a label `value` read at flat `position` of bottom `index`.
    ///
    /// Returns `None` when the label equals `ignore_label` (compared after
    /// truncation to an integer, as Caffe compares), else the class index.
    /// Any other value that is not an integer in `[0, classes)` is an error.
    pub fn label(
        &self,
        index: usize,
        position: usize,
        value: f64,
        classes: usize,
        ignore_label: Option<i32>,
    ) -> Result<Option<usize>> {
        if let Some(ignore) = ignore_label {
            if value.is_finite() && value.trunc() == f64::from(ignore) {
                return Ok(None);
            }
        }
        let valid = value.is_finite() && value.fract() == 0.0 && value >= 0.0;
        if valid {
            // The value is a non-negative integer below 2^53 or a huge float;
            // both compare exactly against the class count.
            if value < classes as f64 {
                return Ok(Some(value as usize));
            }
        }
        Err(Error::Label {
            layer: self.name.clone(),
            layer_type: self.layer_type.clone(),
            blob: self.bottom(index),
            position,
            value,
            max_valid: i64::try_from(classes).map_or(i64::MAX, |c| c - 1),
            ignore: ignore_label.map_or_else(String::new, |l| format!(" or the ignore_label {l}")),
        })
    }
}

fn expect_count(info: &LayerInfo, what: &str, got: usize, min: usize, max: usize) -> Result<()> {
    if (min..=max).contains(&got) {
        return Ok(());
    }
    let expected = if min == max {
        format!("{min}")
    } else {
        format!("{min} to {max}")
    };
    Err(info.config_error(format!("expected {expected} {what} blobs, got {got}")))
}

/// One layer of a net, run on the CPU.
///
/// Bottoms are the inputs and tops the outputs, as in Caffe. A layer is set up
/// once from its parameters, then [`Layer::reshape`] is called whenever the
/// bottom shapes change, before [`Layer::forward`].
pub trait Layer<T: Element>: Send {
    /// Name, type and blob names of the layer.
    fn info(&self) -> &LayerInfo;

    /// Returns whether the layer is a loss layer. The first top of a loss
    /// layer has a loss weight of 1 unless the prototxt sets loss weights.
    fn is_loss(&self) -> bool {
        false
    }

    /// Returns whether a gradient may flow into bottom `index`. It never
    /// does into labels, similarity flags or infogain matrices.
    fn allows_backward(&self, index: usize) -> bool;

    /// Checks the bottom shapes and returns the top shapes.
    fn reshape(&mut self, bottom_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>>;

    /// Computes the tops from the bottoms.
    fn forward(&mut self, bottom: &[&Blob<T>], top: &mut [Blob<T>]) -> Result<()>;

    /// Computes the gradient of every bottom `i` with `propagate_down[i]` into
    /// `bottom_diff[i]` (overwriting it), from the tops' data and diff.
    ///
    /// Like Caffe's layers, a layer may use what it kept from its last
    /// forward pass (probabilities, parsed labels), so forward must have run
    /// on the same bottoms. A layer with no such results for the current
    /// shapes returns [`Error::Usage`]; one with results from other bottom
    /// values of the same shapes cannot tell and uses them.
    fn backward(
        &mut self,
        top: &[&Blob<T>],
        propagate_down: &[bool],
        bottom: &[&Blob<T>],
        bottom_diff: &mut [Vec<T>],
    ) -> Result<()>;
}

/// Where a layer looks for files named by relative paths (`source:`).
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Directory of the model file; relative paths are tried here first,
    /// then in the current directory.
    pub model_dir: Option<PathBuf>,
}

impl BuildContext {
    /// Lists where a relative `path` is looked for, in order, as text.
    pub fn candidates(&self, path: &str) -> Vec<String> {
        let given = Path::new(path);
        let mut out = Vec::new();
        if let (false, Some(dir)) = (given.is_absolute(), &self.model_dir) {
            out.push(dir.join(given).display().to_string());
        }
        out.push(given.display().to_string());
        out
    }

    /// Resolves `path` beside the model first, then in the current directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let given = Path::new(path);
        if given.is_absolute() {
            return given.to_path_buf();
        }
        if let Some(dir) = &self.model_dir {
            let beside = dir.join(given);
            if beside.exists() {
                return beside;
            }
        }
        given.to_path_buf()
    }
}

/// Builds the layer for `param`, or `None` when its type is not implemented.
pub fn create_layer<T: Element>(
    param: &LayerParameter,
    context: &BuildContext,
) -> Result<Option<Box<dyn Layer<T>>>> {
    let layer: Box<dyn Layer<T>> = match param.r#type() {
        "Input" => Box::new(InputLayer::new(param)?),
        "SoftmaxWithLoss" => Box::new(SoftmaxWithLossLayer::new(param)?),
        "EuclideanLoss" => Box::new(EuclideanLossLayer::new(param)?),
        "HingeLoss" => Box::new(HingeLossLayer::new(param)?),
        "SigmoidCrossEntropyLoss" => Box::new(SigmoidCrossEntropyLossLayer::new(param)?),
        "MultinomialLogisticLoss" => Box::new(MultinomialLogisticLossLayer::new(param)?),
        "InfogainLoss" => Box::new(InfogainLossLayer::new(param, context)?),
        "ContrastiveLoss" => Box::new(ContrastiveLossLayer::new(param)?),
        "Softmax" => Box::new(SoftmaxLayer::new(param)?),
        "Sigmoid" => Box::new(SigmoidLayer::new(param)?),
        "Accuracy" => Box::new(AccuracyLayer::new(param)?),
        _ => return Ok(None),
    };
    Ok(Some(layer))
}

/// Suggests the known layer type nearest to an unknown `name`, if one is close.
pub fn nearest_type(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    SUPPORTED_TYPES
        .iter()
        .chain(KNOWN_UNSUPPORTED_TYPES)
        .map(|candidate| {
            (
                strsim_distance(&lower, &candidate.to_ascii_lowercase()),
                *candidate,
            )
        })
        .filter(|(distance, candidate)| *distance <= candidate.len().max(3) / 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(previous + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

/// Normalization mode of a loss layer: the divisor of its summed loss, from
/// Caffe's `LossParameter.normalization` or the deprecated `normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// By the number of label positions, ignored ones included.
    Full,
    /// By the number of positions whose label is not ignored.
    Valid,
    /// By the outer count (the batch size for axis 1).
    BatchSize,
    /// Not at all.
    None,
}

impl Normalization {
    /// Resolves the mode of `param` as Caffe 1.0 does: `normalization` when
    /// set, else `normalize` (true → VALID, false → BATCH_SIZE) when set, else
    /// `default`.
    pub fn from_param(param: &caffe::LossParameter, default: Normalization) -> Self {
        if param.normalization.is_some() {
            return Self::from_mode(param.normalization());
        }
        match param.normalize {
            Some(true) => Normalization::Valid,
            Some(false) => Normalization::BatchSize,
            None => default,
        }
    }

    fn from_mode(mode: NormalizationMode) -> Self {
        match mode {
            NormalizationMode::Full => Normalization::Full,
            NormalizationMode::Valid => Normalization::Valid,
            NormalizationMode::BatchSize => Normalization::BatchSize,
            NormalizationMode::None => Normalization::None,
        }
    }

    /// Returns the divisor, never below 1 (so a batch whose labels are all
    /// ignored gives a loss of 0, not NaN).
    pub fn normalizer(self, outer: usize, inner: usize, valid: usize) -> f64 {
        let n = match self {
            Normalization::Full => outer.saturating_mul(inner) as f64,
            Normalization::Valid => valid as f64,
            Normalization::BatchSize => outer as f64,
            Normalization::None => 1.0,
        };
        n.max(1.0)
    }
}

/// Caffe's `std::max(a, b)`: returns `a` when it is NaN, so NaN propagates
/// where Rust's `f32::max` would drop it.
#[inline]
pub fn caffe_max<A: PartialOrd>(a: A, b: A) -> A {
    if a < b {
        b
    } else {
        a
    }
}

/// Reads `ignore_label` of a `loss_param`.
pub fn ignore_label(param: &LayerParameter) -> Option<i32> {
    param.loss_param.as_ref().and_then(|p| p.ignore_label)
}

/// Warns through `log` that `field` of `layer` is ignored, as Caffe ignores it.
pub fn warn_ignored(info: &LayerInfo, field: &str) {
    log::warn!(
        "layer '{}' ({}): {field} is ignored by this layer type, as in Caffe",
        info.name,
        info.layer_type
    );
}

/// Scalar read of a top's diff: the loss weight the net put there.
pub fn top_weight<T: Element>(top: &Blob<T>) -> T::Acc {
    top.diff()
        .first()
        .map_or_else(T::Acc::default, |w| w.to_acc())
}
