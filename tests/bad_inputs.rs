//! Bad input of every kind: malformed prototxt, nets that cannot be built,
//! blobs of the wrong shape, invalid labels, missing or corrupt data files,
//! an absent GPU and bad command lines.
//!
//! Each case ends in an error of the expected kind whose message names what is
//! wrong (layer, blob, expected and actual values), or in a defined result. No
//! case may panic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use caffe_loss::binaryproto::write_blob_proto;
use caffe_loss::caffe::{self, Phase};
use caffe_loss::device::{self, DeviceChoice};
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::npy::{read_npy, read_npy_as};
use caffe_loss::prototxt::read_net;
use caffe_loss::{Element, ErrorKind, Result};
use prost::Message;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// The table

/// One blob fed into a net from memory.
struct Feed {
    blob: &'static str,
    shape: Vec<usize>,
    values: Vec<f64>,
}

/// How a case builds and runs its net.
enum Source {
    /// A whole prototxt, written to `model.prototxt` in the case's folder,
    /// then built in f32 and fed from memory.
    Net { model: String, feeds: Vec<Feed> },
    /// Anything else. The function gets the case's empty folder and returns
    /// the total loss of one forward pass.
    Custom(fn(&Path) -> Result<f64>),
}

/// What a case must produce.
enum Expect {
    /// An error of this kind whose message contains every one of the words.
    Fail(ErrorKind, &'static [&'static str]),
    /// A total loss within 1e-4 relative of this value.
    Loss(f64),
    /// Any finite total loss.
    Runs,
    /// A NaN total loss.
    NanLoss,
}

struct Case {
    name: &'static str,
    source: Source,
    expect: Expect,
}

fn case(name: &'static str, source: Source, expect: Expect) -> Case {
    Case {
        name,
        source,
        expect,
    }
}

fn fail(kind: ErrorKind, words: &'static [&'static str]) -> Expect {
    Expect::Fail(kind, words)
}

/// Feeds `values` into `blob` with `shape`.
fn feed(blob: &'static str, shape: &[usize], values: &[f64]) -> Feed {
    Feed {
        blob,
        shape: shape.to_vec(),
        values: values.to_vec(),
    }
}

/// Feeds `blob` with `shape`, every value `value`.
fn fill(blob: &'static str, shape: &[usize], value: f64) -> Feed {
    let count = shape.iter().product();
    Feed {
        blob,
        shape: shape.to_vec(),
        values: vec![value; count],
    }
}

/// Feeds `blob` with `shape` and the values 0.1, 0.2, 0.3, ...
fn ramp(blob: &'static str, shape: &[usize]) -> Feed {
    let count: usize = shape.iter().product();
    Feed {
        blob,
        shape: shape.to_vec(),
        values: (1..=count).map(|i| i as f64 * 0.1).collect(),
    }
}

/// Text of an Input layer named "input" that declares `blobs`.
fn input_layer(blobs: &[(&str, &[usize])]) -> String {
    let mut text = String::from("layer {\n  name: \"input\"\n  type: \"Input\"\n");
    for (name, _) in blobs {
        text.push_str(&format!("  top: \"{name}\"\n"));
    }
    text.push_str("  input_param {\n");
    for (_, shape) in blobs {
        let dims: Vec<String> = shape.iter().map(|d| format!("dim: {d}")).collect();
        text.push_str(&format!("    shape {{ {} }}\n", dims.join(" ")));
    }
    text.push_str("  }\n}\n");
    text
}

/// A net of one Input layer declaring the fed blobs with their shapes, then
/// `layers`, fed from `feeds`.
fn net(layers: &str, feeds: Vec<Feed>) -> Source {
    let declared: Vec<(&str, &[usize])> =
        feeds.iter().map(|f| (f.blob, f.shape.as_slice())).collect();
    Source::Net {
        model: format!("force_backward: true\n{}{layers}\n", input_layer(&declared)),
        feeds,
    }
}

/// The model text exactly as given, fed from `feeds`.
fn text(model: &str, feeds: Vec<Feed>) -> Source {
    Source::Net {
        model: model.to_string(),
        feeds,
    }
}

const SOFTMAX_LOSS: &str =
    r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "loss" }"#;

fn cases() -> Vec<Case> {
    use ErrorKind::*;
    let mut cases = Vec::new();
    cases.extend(prototxt_text_cases());
    cases.extend(net_structure_cases());
    cases.extend(upgrade_cases());
    cases.extend(layer_config_cases());
    cases.extend(shape_cases());
    cases.extend(label_cases());
    cases.extend(value_cases());
    cases.extend(npy_cases());
    cases.extend(binaryproto_cases());
    // The no-driver error can only be produced where no CUDA driver loads.
    if device::cuda_probe().is_err() {
        cases.push(case(
            "cuda requested without a driver",
            Source::Custom(|_dir| device::select(DeviceChoice::Cuda).map(|_| 0.0)),
            fail(
                Device,
                &["--device cuda", "no GPU is usable", "--device cpu"],
            ),
        ));
    }
    cases
}

// ---------------------------------------------------------------------------
// Prototxt text that does not parse

fn prototxt_text_cases() -> Vec<Case> {
    use ErrorKind::*;
    vec![
        case(
            "stray bracket",
            text(r#"layer { name: "a" type: "Softmax" ] }"#, vec![]),
            fail(ModelText, &["model.prototxt:1:35", "']'"]),
        ),
        case(
            "string broken by a newline",
            text("layer {\n  name: \"a\n}\n", vec![]),
            fail(
                ModelText,
                &["model.prototxt:2:11", "invalid string character"],
            ),
        ),
        case(
            "unterminated string",
            text("layer {\n  name: \"a", vec![]),
            fail(
                ModelText,
                &["model.prototxt:2:11", "string terminator", "end of input"],
            ),
        ),
        case(
            "unterminated block",
            text("layer {\n  name: \"a\"\n  type: \"Softmax\"\n", vec![]),
            fail(ModelText, &["model.prototxt:4:1", "'}'", "end of input"]),
        ),
        case(
            "extra closing brace",
            text(r#"layer { name: "a" } }"#, vec![]),
            fail(ModelText, &["model.prototxt:1:21", "'}'"]),
        ),
        case(
            "unknown layer field",
            text(r#"layer { name: "a" typo: "Softmax" }"#, vec![]),
            fail(ModelText, &["1:19", "'typo'", "caffe.LayerParameter"]),
        ),
        case(
            // LossParameter has no class_weighting field.
            "unknown loss_param field",
            text(
                "layer {\n  name: \"l\" type: \"SoftmaxWithLoss\" bottom: \"a\" bottom: \"b\"\n  \
                 loss_param { class_weighting: 0.5 }\n}\n",
                vec![],
            ),
            fail(
                ModelText,
                &["model.prototxt:3:16", "class_weighting", "LossParameter"],
            ),
        ),
        case(
            "unknown enum value",
            text(
                r#"layer { name: "l" loss_param { normalization: HALF } }"#,
                vec![],
            ),
            fail(ModelText, &["'HALF'", "NormalizationMode"]),
        ),
        case(
            "unknown phase",
            text(r#"layer { name: "l" include { phase: TRAINING } }"#, vec![]),
            fail(ModelText, &["'TRAINING'", "caffe.Phase"]),
        ),
        case(
            "number where a string belongs",
            text(r#"layer { name: "l" bottom: 3 }"#, vec![]),
            fail(ModelText, &["1:27", "expected a string", "'3'"]),
        ),
        case(
            "word where a number belongs",
            text(r#"layer { name: "l" loss_weight: abc }"#, vec![]),
            fail(ModelText, &["expected a number", "'abc'"]),
        ),
        case(
            "integer out of range",
            text(
                r#"layer { name: "l" loss_param { ignore_label: 99999999999 } }"#,
                vec![],
            ),
            fail(ModelText, &["99999999999", "out of range"]),
        ),
        case(
            "control character",
            text("layer { name: \"a\" \u{1} }", vec![]),
            fail(ModelText, &["model.prototxt:1:"]),
        ),
        case(
            // A V1 `type` is an enum name such as SOFTMAX, not a quoted string.
            "quoted V1 layer type",
            text(
                r#"layers { name: "p" type: "Softmax" bottom: "x" top: "y" }"#,
                vec![],
            ),
            fail(ModelText, &["1:26", "enum", "SOFTMAX", "'layer'"]),
        ),
        case(
            "unknown V1 layer type",
            text(
                r#"layers { name: "p" type: SOFTMAXX bottom: "x" top: "y" }"#,
                vec![],
            ),
            fail(ModelText, &["'SOFTMAXX'", "V1LayerParameter.LayerType"]),
        ),
        case(
            "model file not UTF-8",
            Source::Custom(|dir| {
                let path = dir.join("latin1.prototxt");
                write(&path, b"name: \"caf\xe9\"\n");
                run_model_file::<f32>(&path, &[])
            }),
            fail(File, &["latin1.prototxt", "not valid UTF-8", "offset 10"]),
        ),
        case(
            "model file missing",
            Source::Custom(|dir| run_model_file::<f32>(&dir.join("absent.prototxt"), &[])),
            fail(File, &["absent.prototxt", "failed to read model file"]),
        ),
        case(
            "model path is a device",
            Source::Custom(|_dir| run_model_file::<f32>(Path::new("/dev/zero"), &[])),
            fail(File, &["/dev/zero", "is a device"]),
        ),
        case(
            "model path is a directory",
            Source::Custom(|dir| run_model_file::<f32>(dir, &[])),
            fail(File, &["failed to read model file"]),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Nets that parse but cannot be built

fn net_structure_cases() -> Vec<Case> {
    use ErrorKind::*;
    vec![
        case(
            "unknown layer type near a known one",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLos" bottom: "x" bottom: "label" }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                ModelSemantics,
                &[
                    "'loss'",
                    "'SoftmaxWithLos'",
                    "did you mean 'SoftmaxWithLoss'",
                ],
            ),
        ),
        case(
            "layer type in the wrong case",
            net(
                r#"layer { name: "loss" type: "euclideanloss" bottom: "x" bottom: "y" }"#,
                vec![fill("x", &[2, 3], 0.0), fill("y", &[2, 3], 0.0)],
            ),
            fail(
                ModelSemantics,
                &["'euclideanloss'", "did you mean 'EuclideanLoss'"],
            ),
        ),
        case(
            "Caffe layer type not implemented",
            net(
                r#"layer { name: "conv" type: "Convolution" bottom: "x" top: "y" }"#,
                vec![fill("x", &[2, 3], 0.0)],
            ),
            fail(
                ModelSemantics,
                &["'conv'", "'Convolution'", "does not implement"],
            ),
        ),
        case(
            "duplicate top name",
            net(
                r#"layer { name: "s1" type: "Sigmoid" bottom: "x" top: "y" }
                   layer { name: "s2" type: "Sigmoid" bottom: "x" top: "y" }"#,
                vec![fill("x", &[2, 3], 0.0)],
            ),
            fail(ModelSemantics, &["'s2'", "top 'y'", "already produced"]),
        ),
        case(
            "top listed twice",
            net(
                r#"layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           top: "loss" top: "loss" }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(ModelSemantics, &["'l'", "top 'loss'", "listed twice"]),
        ),
        case(
            "bottom no layer produces",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "labels" }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                ModelSemantics,
                &["'loss'", "bottom 'labels'", "not produced"],
            ),
        ),
        case(
            "loss written in place",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           top: "x" }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                ModelSemantics,
                &["'loss'", "top 'x'", "cannot run in place"],
            ),
        ),
        case(
            "sigmoid written in place",
            net(
                r#"layer { name: "s" type: "Sigmoid" bottom: "x" top: "x" }
                   layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "y" }"#,
                vec![fill("x", &[2, 3], 0.0), fill("y", &[2, 3], 1.0)],
            ),
            // sigmoid(0) = 0.5 against 1: 6 × 0.25 / (2 × 2).
            Expect::Loss(0.375),
        ),
        case(
            "loss_weight count differs from tops",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           top: "loss" loss_weight: 1 loss_weight: 0.5 }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                ModelSemantics,
                &["'loss'", "loss_weight", "expected 1, got 2"],
            ),
        ),
        case(
            "propagate_down count differs from bottoms",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           propagate_down: true }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                ModelSemantics,
                &["'loss'", "propagate_down", "expected 2, got 1"],
            ),
        ),
        case(
            "include and exclude together",
            net(
                r#"layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "y"
                           include { phase: TRAIN } exclude { phase: TEST } }"#,
                vec![fill("x", &[2, 3], 0.0), fill("y", &[2, 3], 0.0)],
            ),
            fail(ModelSemantics, &["'loss'", "both include and exclude"]),
        ),
        case(
            "negative input dimension",
            text(
                r#"layer { name: "input" type: "Input" top: "x"
                           input_param { shape { dim: 2 dim: -3 } } }"#,
                vec![],
            ),
            fail(ModelSemantics, &["'input'", "negative dimension", "-3"]),
        ),
        case(
            "input shapes differ from tops",
            text(
                r#"layer { name: "input" type: "Input" top: "a" top: "b" top: "c"
                           input_param { shape { dim: 2 } shape { dim: 3 } } }"#,
                vec![],
            ),
            fail(ModelSemantics, &["'input'", "one per top (3)", "got 2"]),
        ),
        case(
            "net without a loss",
            net(
                r#"layer { name: "s" type: "Sigmoid" bottom: "x" top: "y" }"#,
                vec![fill("x", &[2, 3], 0.0)],
            ),
            Expect::Loss(0.0),
        ),
    ]
}

// ---------------------------------------------------------------------------
// V0 and V1 nets

fn upgrade_cases() -> Vec<Case> {
    use ErrorKind::*;
    vec![
        case(
            "V1 softmax loss upgrades and runs",
            text(
                r#"input: "x" input_dim: 1 input_dim: 2 input_dim: 1 input_dim: 1
                   input: "label" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1
                   layers { name: "loss" type: SOFTMAX_LOSS bottom: "x" bottom: "label" }"#,
                vec![
                    feed("x", &[1, 2, 1, 1], &[0.0, 0.0]),
                    feed("label", &[1, 1, 1, 1], &[1.0]),
                ],
            ),
            Expect::Loss(std::f64::consts::LN_2),
        ),
        case(
            "V0 softmax loss upgrades and runs",
            text(
                r#"input: "x" input_dim: 1 input_dim: 2 input_dim: 1 input_dim: 1
                   input: "label" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1
                   layers { layer { name: "loss" type: "softmax_loss" }
                            bottom: "x" bottom: "label" }"#,
                vec![
                    feed("x", &[1, 2, 1, 1], &[0.0, 0.0]),
                    feed("label", &[1, 1, 1, 1], &[0.0]),
                ],
            ),
            Expect::Loss(std::f64::consts::LN_2),
        ),
        case(
            "layer and layers mixed",
            text(
                r#"layer { name: "a" type: "Softmax" bottom: "x" top: "y" }
                   layers { name: "b" type: SOFTMAX bottom: "x" top: "z" }"#,
                vec![],
            ),
            fail(ModelSemantics, &["mixes", "'layers'", "'layer'"]),
        ),
        case(
            "V0 layer type unknown",
            text(
                r#"input: "x" input_dim: 1 input_dim: 2 input_dim: 1 input_dim: 1
                   layers { layer { name: "c" type: "convolve" } bottom: "x" top: "y" }"#,
                vec![],
            ),
            fail(ModelSemantics, &["'c'", "convolve"]),
        ),
        case(
            "V0 bottom nobody produces",
            text(
                r#"layers { layer { name: "s" type: "softmax" } bottom: "nothing" top: "y" }"#,
                vec![],
            ),
            fail(
                ModelSemantics,
                &["'s'", "'nothing'", "no earlier layer or net input"],
            ),
        ),
        case(
            "V0 padding feeding a softmax",
            text(
                r#"input: "x" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3
                   layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "x" top: "p" }
                   layers { layer { name: "s" type: "softmax" } bottom: "p" top: "y" }"#,
                vec![],
            ),
            fail(ModelSemantics, &["'pad'", "'s'", "conv or pool"]),
        ),
        case(
            "input_dim count not four per input",
            text(
                r#"input: "x" input_dim: 1 input_dim: 2
                   layer { name: "s" type: "Softmax" bottom: "x" top: "y" }"#,
                vec![],
            ),
            fail(
                ModelSemantics,
                &["4 input_dim values per input", "expected 4, got 2"],
            ),
        ),
        case(
            "input_shape and input_dim together",
            text(
                r#"input: "x" input_shape { dim: 1 dim: 2 }
                   input_dim: 1 input_dim: 2 input_dim: 1 input_dim: 1"#,
                vec![],
            ),
            fail(ModelSemantics, &["both input_shape", "input_dim"]),
        ),
        case(
            "input_shape count differs from inputs",
            text(
                r#"input: "x" input: "y" input_shape { dim: 1 dim: 2 }"#,
                vec![],
            ),
            fail(
                ModelSemantics,
                &["one input_shape per input", "expected 2, got 1"],
            ),
        ),
        case(
            "V1 numeric layer type undefined",
            text(
                r#"layers { name: "p" type: 77 bottom: "x" top: "y" }"#,
                vec![],
            ),
            fail(
                ModelSemantics,
                &["layer 0 'p'", "V1 type 77", "does not define"],
            ),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Layer parameters and blob counts

fn layer_config_cases() -> Vec<Case> {
    use ErrorKind::*;
    vec![
        case(
            "softmax loss with three bottoms",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           bottom: "extra" }"#,
                vec![
                    fill("x", &[2, 3], 0.0),
                    fill("label", &[2], 0.0),
                    fill("extra", &[2], 0.0),
                ],
            ),
            fail(
                ModelSemantics,
                &[
                    "'loss'",
                    "SoftmaxWithLoss",
                    "expected 2 bottom blobs, got 3",
                ],
            ),
        ),
        case(
            "contrastive loss with two bottoms",
            net(
                r#"layer { name: "pair" type: "ContrastiveLoss" bottom: "a" bottom: "b" }"#,
                vec![fill("a", &[2, 3], 0.0), fill("b", &[2, 3], 0.0)],
            ),
            fail(
                ModelSemantics,
                &[
                    "'pair'",
                    "ContrastiveLoss",
                    "expected 3 bottom blobs, got 2",
                ],
            ),
        ),
        case(
            "softmax loss with three tops",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           top: "l" top: "p" top: "q" }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                ModelSemantics,
                &["'loss'", "expected 1 to 2 top blobs, got 3"],
            ),
        ),
        case(
            "softmax with two bottoms",
            net(
                r#"layer { name: "s" type: "Softmax" bottom: "x" bottom: "y" top: "p" }"#,
                vec![fill("x", &[2, 3], 0.0), fill("y", &[2, 3], 0.0)],
            ),
            fail(ModelSemantics, &["'s'", "expected 1 bottom blobs, got 2"]),
        ),
        case(
            // An H of 9 values where 2 classes need C*C = 4.
            "infogain matrix of the wrong size",
            net(
                r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label"
                           bottom: "H" }"#,
                vec![
                    fill("x", &[2, 2], 0.0),
                    fill("label", &[2], 0.0),
                    fill("H", &[1, 1, 3, 3], 1.0),
                ],
            ),
            fail(
                BlobShape,
                &["'info'", "bottom[2] 'H'", "C*C = 4", "C = 2", "got 9"],
            ),
        ),
        case(
            "infogain with the deprecated normalize",
            net(
                r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label"
                           bottom: "H" loss_param { normalize: true } }"#,
                vec![
                    fill("x", &[2, 2], 0.0),
                    fill("label", &[2], 0.0),
                    fill("H", &[2, 2], 1.0),
                ],
            ),
            fail(
                ModelSemantics,
                &["'info'", "loss_param.normalize", "normalization"],
            ),
        ),
        case(
            "infogain without a matrix",
            net(
                r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label" }"#,
                vec![fill("x", &[2, 2], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                ModelSemantics,
                &["'info'", "H is missing", "infogain_loss_param.source"],
            ),
        ),
        case(
            "infogain source that does not exist",
            net(
                r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label"
                           infogain_loss_param { source: "no_such_H.binaryproto" } }"#,
                vec![fill("x", &[2, 2], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(File, &["no_such_H.binaryproto", "failed to read blob file"]),
        ),
        case(
            "infogain source that is a directory",
            Source::Custom(|dir| {
                std::fs::create_dir(dir.join("H.binaryproto")).map_err(io_error)?;
                let model = format!(
                    "{}{}",
                    input_layer(&[("x", &[2, 2]), ("label", &[2])]),
                    r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label"
                               infogain_loss_param { source: "H.binaryproto" } }"#
                );
                let path = dir.join("model.prototxt");
                write(&path, model.as_bytes());
                run_model_file::<f32>(&path, &[])
            }),
            fail(File, &["H.binaryproto", "failed to read blob file"]),
        ),
        case(
            "infogain source that is a device",
            net(
                r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label"
                           infogain_loss_param { source: "/dev/zero" } }"#,
                vec![fill("x", &[2, 2], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(File, &["/dev/zero", "not a regular file"]),
        ),
        case(
            "infogain source matrix of the wrong size",
            Source::Custom(|dir| {
                write_blob_proto(&dir.join("H.binaryproto"), &[3, 3], &[1.0; 9])?;
                let model = format!(
                    "{}{}",
                    input_layer(&[("x", &[2, 2]), ("label", &[2])]),
                    r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label"
                               infogain_loss_param { source: "H.binaryproto" } }"#
                );
                let path = dir.join("model.prototxt");
                write(&path, model.as_bytes());
                run_model_file::<f32>(&path, &[])
            }),
            fail(ModelSemantics, &["'info'", "C*C = 4", "got 9", "3 3 (9)"]),
        ),
        case(
            "accuracy top_k above the class count",
            net(
                r#"layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "label"
                           top: "acc" accuracy_param { top_k: 5 } }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                ModelSemantics,
                &["'acc'", "top_k", "at most the number of classes 3", "got 5"],
            ),
        ),
        case(
            "softmax axis out of range",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           softmax_param { axis: 4 } }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                BlobShape,
                &["'loss'", "bottom[0] 'x'", "softmax_param.axis 4", "[-2, 1]"],
            ),
        ),
        case(
            "negative softmax axis out of range",
            net(
                r#"layer { name: "s" type: "Softmax" bottom: "x" top: "p"
                           softmax_param { axis: -3 } }"#,
                vec![fill("x", &[2, 3], 0.0)],
            ),
            fail(BlobShape, &["'s'", "softmax_param.axis -3", "[-2, 1]"]),
        ),
        case(
            "negative softmax axis in range",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           softmax_param { axis: -1 } }"#,
                vec![fill("x", &[2, 4], 0.0), fill("label", &[2], 3.0)],
            ),
            Expect::Loss(4f64.ln()),
        ),
        case(
            "infogain axis out of range",
            net(
                r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label"
                           bottom: "H" infogain_loss_param { axis: 2 } }"#,
                vec![
                    fill("x", &[2, 2], 0.0),
                    fill("label", &[2], 0.0),
                    fill("H", &[2, 2], 1.0),
                ],
            ),
            fail(BlobShape, &["'info'", "infogain_loss_param.axis 2"]),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Blobs whose shapes do not fit

fn shape_cases() -> Vec<Case> {
    use ErrorKind::*;
    vec![
        case(
            // Scores N × C × H × W = 2 × 2 × 3 × 3 need N*H*W = 18 labels.
            "softmax loss label count",
            net(
                SOFTMAX_LOSS,
                vec![fill("x", &[2, 2, 3, 3], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                BlobShape,
                &[
                    "'loss'",
                    "bottom[1] 'label'",
                    "expected 18 labels",
                    "got 2",
                    "N*H*W",
                ],
            ),
        ),
        case(
            "softmax loss batch mismatch",
            net(
                SOFTMAX_LOSS,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[3], 0.0)],
            ),
            fail(
                BlobShape,
                &["'loss'", "axis 0 must match", "expected 2, got 3"],
            ),
        ),
        case(
            // 8 values per sample against 1.
            "euclidean values per sample",
            net(
                r#"layer { name: "l2" type: "EuclideanLoss" bottom: "pred" bottom: "target" }"#,
                vec![fill("pred", &[32, 8], 0.0), fill("target", &[32], 0.0)],
            ),
            fail(
                BlobShape,
                &[
                    "'l2'",
                    "bottom[1] 'target'",
                    "expected 8 values per sample",
                    "got 1",
                ],
            ),
        ),
        case(
            // 25 logits against 1 target.
            "sigmoid cross-entropy target count",
            net(
                r#"layer { name: "sce" type: "SigmoidCrossEntropyLoss" bottom: "logit"
                           bottom: "target" }"#,
                vec![fill("logit", &[1, 1, 5, 5], 0.0), fill("target", &[1], 0.0)],
            ),
            fail(
                BlobShape,
                &[
                    "'sce'",
                    "bottom[1] 'target'",
                    "expected 25 targets",
                    "got 1",
                ],
            ),
        ),
        case(
            "sigmoid cross-entropy flat target",
            net(
                r#"layer { name: "sce" type: "SigmoidCrossEntropyLoss" bottom: "logit"
                           bottom: "target" }"#,
                vec![
                    fill("logit", &[1, 1, 5, 5], 0.0),
                    fill("target", &[1, 25], 1.0),
                ],
            ),
            // 25 × ln 2, divided by the batch size 1.
            Expect::Loss(25.0 * std::f64::consts::LN_2),
        ),
        case(
            // Features must be N × C × 1 × 1.
            "contrastive features with height",
            net(
                r#"layer { name: "pair" type: "ContrastiveLoss" bottom: "a" bottom: "b"
                           bottom: "sim" }"#,
                vec![
                    fill("a", &[1, 2, 2, 1], 0.0),
                    fill("b", &[1, 2, 2, 1], 0.0),
                    fill("sim", &[1], 1.0),
                ],
            ),
            fail(
                BlobShape,
                &[
                    "'pair'",
                    "bottom[0] 'a'",
                    "height (axis 2) must be 1",
                    "got 2",
                ],
            ),
        ),
        case(
            "contrastive channel mismatch",
            net(
                r#"layer { name: "pair" type: "ContrastiveLoss" bottom: "a" bottom: "b"
                           bottom: "sim" }"#,
                vec![
                    fill("a", &[2, 3], 0.0),
                    fill("b", &[2, 4], 0.0),
                    fill("sim", &[2], 1.0),
                ],
            ),
            fail(
                BlobShape,
                &["'pair'", "bottom[1] 'b'", "expected 3 channels", "got 4"],
            ),
        ),
        case(
            "contrastive flag count",
            net(
                r#"layer { name: "pair" type: "ContrastiveLoss" bottom: "a" bottom: "b"
                           bottom: "sim" }"#,
                vec![
                    fill("a", &[2, 3], 0.0),
                    fill("b", &[2, 3], 0.0),
                    fill("sim", &[3], 1.0),
                ],
            ),
            fail(
                BlobShape,
                &[
                    "'pair'",
                    "bottom[2] 'sim'",
                    "one similarity flag per pair (2)",
                    "got 3",
                ],
            ),
        ),
        case(
            "contrastive features with five axes",
            net(
                r#"layer { name: "pair" type: "ContrastiveLoss" bottom: "a" bottom: "b"
                           bottom: "sim" }"#,
                vec![
                    fill("a", &[2, 3, 1, 1, 2], 0.0),
                    fill("b", &[2, 3, 1, 1, 2], 0.0),
                    fill("sim", &[2], 1.0),
                ],
            ),
            fail(
                BlobShape,
                &[
                    "'pair'",
                    "bottom[0] 'a'",
                    "at most 4 axes",
                    "got 5",
                    "2 3 1 1 2 (12)",
                ],
            ),
        ),
        case(
            "hinge label count",
            net(
                r#"layer { name: "hinge" type: "HingeLoss" bottom: "x" bottom: "label" }"#,
                vec![fill("x", &[2, 3], 0.0), fill("label", &[2, 2], 0.0)],
            ),
            fail(
                BlobShape,
                &["'hinge'", "bottom[1] 'label'", "expected 2 labels", "got 4"],
            ),
        ),
        case(
            "multinomial label count",
            net(
                r#"layer { name: "mlog" type: "MultinomialLogisticLoss" bottom: "p"
                           bottom: "label" }"#,
                vec![fill("p", &[2, 3], 0.5), fill("label", &[2, 3], 0.0)],
            ),
            fail(
                BlobShape,
                &["'mlog'", "bottom[1] 'label'", "expected 2 labels", "got 6"],
            ),
        ),
        case(
            "accuracy label count",
            net(
                r#"layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "label" top: "a" }"#,
                vec![fill("x", &[2, 3, 2], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(BlobShape, &["'acc'", "expected 4 labels", "got 2"]),
        ),
        case(
            "empty batch",
            net(
                r#"layer { name: "l2" type: "EuclideanLoss" bottom: "pred" bottom: "target" }"#,
                vec![fill("pred", &[0, 8], 0.0), fill("target", &[0, 8], 0.0)],
            ),
            fail(
                BlobShape,
                &["'l2'", "bottom[0] 'pred'", "empty blob", "0 8 (0)"],
            ),
        ),
        case(
            "zero classes",
            net(
                SOFTMAX_LOSS,
                vec![fill("x", &[2, 0], 0.0), fill("label", &[2], 0.0)],
            ),
            fail(
                BlobShape,
                &["'loss'", "bottom[0] 'x'", "empty blob", "2 0 (0)"],
            ),
        ),
        case(
            "empty softmax input",
            net(
                r#"layer { name: "s" type: "Softmax" bottom: "x" top: "p" }"#,
                vec![fill("x", &[0, 3], 0.0)],
            ),
            // Softmax is not a loss: an empty blob gives an empty output.
            Expect::Runs,
        ),
        case(
            "zero dimension beside huge ones",
            text(
                r#"layer { name: "input" type: "Input" top: "x"
                           input_param { shape { dim: 0 dim: 4294967296 dim: 4294967296 } } }
                   layer { name: "s" type: "Sigmoid" bottom: "x" top: "y" }"#,
                vec![],
            ),
            fail(BlobShape, &["'input'", "top[0] 'x'", "2147483647"]),
        ),
        case(
            "element count that overflows",
            text(
                r#"layer { name: "input" type: "Input" top: "x"
                           input_param { shape { dim: 4294967296 dim: 4294967296 dim: 4294967296 } } }"#,
                vec![],
            ),
            fail(BlobShape, &["'input'", "top[0] 'x'", "2147483647"]),
        ),
        case(
            "element count above Caffe's limit",
            text(
                r#"layer { name: "input" type: "Input" top: "x"
                           input_param { shape { dim: 65536 dim: 65536 } } }"#,
                vec![],
            ),
            fail(
                BlobShape,
                &["'input'", "top[0] 'x'", "65536 65536", "2147483647"],
            ),
        ),
        case(
            "more than 32 axes",
            text(
                &format!(
                    "layer {{ name: \"input\" type: \"Input\" top: \"x\"
                              input_param {{ shape {{ {} }} }} }}",
                    "dim: 1 ".repeat(33)
                ),
                vec![],
            ),
            fail(BlobShape, &["'input'", "top[0] 'x'", "33 axes", "32"]),
        ),
        case(
            "fed shape that overflows",
            Source::Custom(|dir| {
                let model = format!(
                    "{}{}",
                    input_layer(&[("x", &[2, 3])]),
                    r#"layer { name: "s" type: "Softmax" bottom: "x" top: "p" }"#
                );
                let path = dir.join("model.prototxt");
                write(&path, model.as_bytes());
                let param = read_net(&path, Phase::Train)?;
                let mut net = Net::<f32>::new(&param, "model.prototxt", &BuildContext::default())?;
                net.set_input("x", &[0, usize::MAX, usize::MAX], Vec::new())?;
                net.forward()
            }),
            fail(BlobShape, &["'x'", "2147483647"]),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Labels, flags and targets that are not valid values

fn label_cases() -> Vec<Case> {
    use ErrorKind::*;
    vec![
        case(
            // 5 classes allow labels 0 to 4.
            "softmax loss label above the classes",
            net(
                SOFTMAX_LOSS,
                vec![fill("x", &[1, 5], 0.0), feed("label", &[1], &[7.0])],
            ),
            fail(
                LabelValue,
                &[
                    "'loss'",
                    "bottom[1] 'label'",
                    "label 7",
                    "position 0",
                    "[0, 4]",
                ],
            ),
        ),
        case(
            // HingeLoss takes class indices, not ±1 SVM labels.
            "hinge label of minus one",
            net(
                r#"layer { name: "hinge" type: "HingeLoss" bottom: "x" bottom: "label" }"#,
                vec![fill("x", &[1, 3], 0.0), feed("label", &[1], &[-1.0])],
            ),
            fail(
                LabelValue,
                &["'hinge'", "bottom[1] 'label'", "label -1", "[0, 2]"],
            ),
        ),
        case(
            "label slightly above an integer",
            net(
                SOFTMAX_LOSS,
                vec![
                    fill("x", &[2, 3], 0.0),
                    feed("label", &[2], &[0.0, 1.0000001]),
                ],
            ),
            fail(
                LabelValue,
                &["'loss'", "label 1.0000001", "position 1", "integer"],
            ),
        ),
        case(
            "label NaN",
            net(
                SOFTMAX_LOSS,
                vec![
                    fill("x", &[2, 3], 0.0),
                    feed("label", &[2], &[f64::NAN, 0.0]),
                ],
            ),
            fail(LabelValue, &["'loss'", "label NaN", "position 0"]),
        ),
        case(
            "label infinite",
            net(
                r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label"
                           bottom: "H" }"#,
                vec![
                    fill("x", &[2, 2], 0.0),
                    feed("label", &[2], &[0.0, f64::INFINITY]),
                    fill("H", &[2, 2], 1.0),
                ],
            ),
            fail(LabelValue, &["'info'", "label inf", "position 1", "[0, 1]"]),
        ),
        case(
            "ignored label skipped",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           loss_param { ignore_label: 255 } }"#,
                vec![fill("x", &[2, 2], 0.0), feed("label", &[2], &[255.0, 1.0])],
            ),
            // One valid position at ln 2, normalised by 1 valid position.
            Expect::Loss(std::f64::consts::LN_2),
        ),
        case(
            "negative ignored label skipped",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           loss_param { ignore_label: -1 normalization: FULL } }"#,
                vec![fill("x", &[2, 2], 0.0), feed("label", &[2], &[-1.0, 0.0])],
            ),
            // FULL divides by both positions, ignored or not.
            Expect::Loss(std::f64::consts::LN_2 / 2.0),
        ),
        case(
            "out-of-range label names the ignore_label",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           loss_param { ignore_label: 255 } }"#,
                vec![fill("x", &[2, 2], 0.0), feed("label", &[2], &[0.0, 254.0])],
            ),
            fail(
                LabelValue,
                &["label 254", "position 1", "[0, 1]", "ignore_label 255"],
            ),
        ),
        case(
            "multinomial label above the classes",
            net(
                r#"layer { name: "mlog" type: "MultinomialLogisticLoss" bottom: "p"
                           bottom: "label" }"#,
                vec![fill("p", &[2, 3], 0.5), feed("label", &[2], &[0.0, 3.0])],
            ),
            fail(LabelValue, &["'mlog'", "label 3", "position 1", "[0, 2]"]),
        ),
        case(
            "accuracy label above the classes",
            net(
                r#"layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "label" top: "a" }"#,
                vec![fill("x", &[2, 3], 0.0), feed("label", &[2], &[5.0, 0.0])],
            ),
            fail(LabelValue, &["'acc'", "label 5", "position 0", "[0, 2]"]),
        ),
        case(
            "contrastive flag NaN",
            net(
                r#"layer { name: "pair" type: "ContrastiveLoss" bottom: "a" bottom: "b"
                           bottom: "sim" }"#,
                vec![
                    fill("a", &[2, 3], 0.0),
                    fill("b", &[2, 3], 0.0),
                    feed("sim", &[2], &[1.0, f64::NAN]),
                ],
            ),
            fail(
                LabelValue,
                &["'pair'", "bottom[2] 'sim'", "NaN", "position 1"],
            ),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Defined results for extreme values

fn value_cases() -> Vec<Case> {
    vec![
        case(
            // exp(-200) underflows in f32. Caffe clamps the probability at FLT_MIN,
            // so the loss is -ln(FLT_MIN) = 87.3365.
            "softmax loss probability clamp",
            net(
                SOFTMAX_LOSS,
                vec![
                    feed("x", &[1, 2], &[0.0, -200.0]),
                    feed("label", &[1], &[1.0]),
                ],
            ),
            Expect::Loss(87.3365),
        ),
        case(
            "NaN score gives NaN loss",
            net(
                SOFTMAX_LOSS,
                vec![
                    feed("x", &[1, 3], &[0.0, f64::NAN, 1.0]),
                    feed("label", &[1], &[0.0]),
                ],
            ),
            Expect::NanLoss,
        ),
        case(
            "NaN prediction gives NaN euclidean loss",
            net(
                r#"layer { name: "l2" type: "EuclideanLoss" bottom: "pred" bottom: "target" }"#,
                vec![
                    feed("pred", &[2, 1], &[f64::NAN, 0.0]),
                    fill("target", &[2, 1], 0.0),
                ],
            ),
            Expect::NanLoss,
        ),
        case(
            "huge logits stay finite",
            net(
                r#"layer { name: "sce" type: "SigmoidCrossEntropyLoss" bottom: "logit"
                           bottom: "target" }"#,
                vec![
                    feed("logit", &[1, 2], &[1e30, -1e30]),
                    feed("target", &[1, 2], &[0.0, 1.0]),
                ],
            ),
            Expect::Loss(2e30),
        ),
        case(
            "all labels ignored",
            net(
                r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                           loss_param { ignore_label: 0 } }"#,
                vec![ramp("x", &[2, 3]), fill("label", &[2], 0.0)],
            ),
            Expect::Loss(0.0),
        ),
    ]
}

// ---------------------------------------------------------------------------
// .npy files

fn npy_cases() -> Vec<Case> {
    use ErrorKind::*;
    vec![
        case(
            "npy missing",
            Source::Custom(|dir| feed_files(dir, &[("x", "absent.npy")])),
            fail(File, &["absent.npy", "cannot read"]),
        ),
        case(
            "npy empty",
            Source::Custom(|dir| {
                write(&dir.join("x.npy"), b"");
                feed_files(dir, &[("x", "x.npy")])
            }),
            fail(File, &["x.npy", ".npy"]),
        ),
        case(
            "npy bad magic",
            Source::Custom(|dir| {
                write(
                    &dir.join("x.npy"),
                    b"PK\x03\x04 this is a zip file, not npy",
                );
                feed_files(dir, &[("x", "x.npy")])
            }),
            fail(File, &["x.npy", "invalid .npy file"]),
        ),
        case(
            "npy truncated data",
            Source::Custom(|dir| {
                let mut bytes = npy_bytes("<f4", false, &[2, 3], &f32_bytes(&[0.0; 6]));
                bytes.truncate(bytes.len() - 5);
                write(&dir.join("x.npy"), &bytes);
                feed_files(dir, &[("x", "x.npy")])
            }),
            fail(File, &["x.npy", "truncated"]),
        ),
        case(
            "npy truncated header",
            Source::Custom(|dir| {
                let bytes = npy_bytes("<f4", false, &[2, 3], &f32_bytes(&[0.0; 6]));
                write(&dir.join("x.npy"), &bytes[..30]);
                feed_files(dir, &[("x", "x.npy")])
            }),
            fail(File, &["x.npy", ".npy"]),
        ),
        case(
            "npy huge shape with little data",
            Source::Custom(|dir| {
                let bytes = npy_bytes("<f4", false, &[100_000_000_000], &f32_bytes(&[0.0; 2]));
                write(&dir.join("x.npy"), &bytes);
                feed_files(dir, &[("x", "x.npy")])
            }),
            fail(File, &["x.npy", "truncated", "100000000000"]),
        ),
        case(
            "npy extra bytes",
            Source::Custom(|dir| {
                let mut bytes = npy_bytes("<f4", false, &[2, 3], &f32_bytes(&[0.0; 6]));
                bytes.extend_from_slice(&[0; 8]);
                write(&dir.join("x.npy"), &bytes);
                feed_files(dir, &[("x", "x.npy")])
            }),
            fail(File, &["x.npy", "8 bytes follow"]),
        ),
        case(
            "npy of int32 labels converted",
            Source::Custom(|dir| {
                let labels: Vec<u8> = [1i32, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
                write(
                    &dir.join("label.npy"),
                    &npy_bytes("<i4", false, &[2], &labels),
                );
                write_npy_f32(&dir.join("x.npy"), &[2, 2], &[0.0, 0.0, 0.0, 0.0]);
                feed_files(dir, &[("x", "x.npy"), ("label", "label.npy")])
            }),
            Expect::Loss(std::f64::consts::LN_2),
        ),
        case(
            "npy of bool labels converted",
            Source::Custom(|dir| {
                write(
                    &dir.join("label.npy"),
                    &npy_bytes("|b1", false, &[2], &[1, 0]),
                );
                write_npy_f32(&dir.join("x.npy"), &[2, 2], &[0.0, 5.0, 0.0, 0.0]);
                feed_files(dir, &[("x", "x.npy"), ("label", "label.npy")])
            }),
            // Label 1 at score 5 against 0 gives ln(1 + e^-5) = 0.0067153;
            // label 0 at equal scores gives ln 2. The mean is 0.3499313.
            Expect::Loss(0.349_931_3),
        ),
        case(
            "npy of float16 rejected",
            Source::Custom(|dir| {
                write(
                    &dir.join("x.npy"),
                    &npy_bytes("<f2", false, &[2], &[0, 0, 0, 0]),
                );
                feed_files(dir, &[("x", "x.npy")])
            }),
            fail(File, &["x.npy", "unsupported .npy dtype <f2", "float16"]),
        ),
        case(
            "npy of complex rejected",
            Source::Custom(|dir| {
                write(&dir.join("x.npy"), &npy_bytes("<c8", false, &[1], &[0; 8]));
                feed_files(dir, &[("x", "x.npy")])
            }),
            fail(File, &["x.npy", "unsupported .npy dtype <c8"]),
        ),
        case(
            "npy in Fortran order converted",
            Source::Custom(|dir| {
                // Logical 2 × 3 matrix [[1, 2, 3], [4, 5, 6]] stored column by column.
                let stored = f32_bytes(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
                let path = dir.join("x.npy");
                write(&path, &npy_bytes("<f4", true, &[2, 3], &stored));
                let data = read_npy(&path)?;
                let logical = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
                let matches = data.shape == [2, 3] && data.values == logical;
                Ok(if matches { 1.0 } else { 0.0 })
            }),
            Expect::Loss(1.0),
        ),
        case(
            "npy that is a directory",
            Source::Custom(|dir| {
                std::fs::create_dir(dir.join("x.npy")).map_err(io_error)?;
                feed_files(dir, &[("x", "x.npy")])
            }),
            fail(File, &["x.npy", "is a directory"]),
        ),
        case(
            "npy shape overrides the declared one",
            Source::Custom(|dir| {
                // The net declares a batch of 2; the files hold a batch of 3.
                write_npy_f32(&dir.join("x.npy"), &[3, 2], &[0.0; 6]);
                write_npy_f32(&dir.join("label.npy"), &[3], &[0.0, 1.0, 1.0]);
                feed_files(dir, &[("x", "x.npy"), ("label", "label.npy")])
            }),
            Expect::Loss(std::f64::consts::LN_2),
        ),
        case(
            "npy feeding a blob the net lacks",
            Source::Custom(|dir| {
                write_npy_f32(&dir.join("y.npy"), &[2, 2], &[0.0; 4]);
                feed_files(dir, &[("y", "y.npy")])
            }),
            fail(Usage, &["'y' is not an input blob", "x, label"]),
        ),
        case(
            "npy zero-dimensional scalar",
            Source::Custom(|dir| {
                write(
                    &dir.join("x.npy"),
                    &npy_bytes("<f8", false, &[], &2.5f64.to_le_bytes()),
                );
                let data = read_npy(&dir.join("x.npy"))?;
                Ok(data.values.iter().sum::<f64>() + data.shape.len() as f64)
            }),
            Expect::Loss(2.5),
        ),
    ]
}

// ---------------------------------------------------------------------------
// .binaryproto files

fn binaryproto_cases() -> Vec<Case> {
    use ErrorKind::*;
    vec![
        case(
            "binaryproto missing",
            Source::Custom(|dir| infogain_from(dir, None)),
            fail(File, &["H.binaryproto", "failed to read blob file"]),
        ),
        case(
            "binaryproto empty",
            Source::Custom(|dir| infogain_from(dir, Some(Vec::new()))),
            fail(File, &["H.binaryproto", "empty"]),
        ),
        case(
            "binaryproto truncated",
            Source::Custom(|dir| {
                let proto = caffe::BlobProto {
                    shape: Some(caffe::BlobShape { dim: vec![2, 2] }),
                    data: vec![1.0, 0.0, 0.0, 1.0],
                    ..Default::default()
                };
                let mut bytes = proto.encode_to_vec();
                bytes.truncate(bytes.len() - 3);
                infogain_from(dir, Some(bytes))
            }),
            fail(File, &["H.binaryproto", "not a complete caffe.BlobProto"]),
        ),
        case(
            "binaryproto corrupt",
            Source::Custom(|dir| infogain_from(dir, Some(b"\xff\xff\xff\xff garbage".to_vec()))),
            fail(File, &["H.binaryproto", "caffe.BlobProto"]),
        ),
        case(
            "binaryproto value count differs from shape",
            Source::Custom(|dir| {
                let proto = caffe::BlobProto {
                    shape: Some(caffe::BlobShape { dim: vec![2, 2] }),
                    data: vec![1.0, 0.0, 0.0],
                    ..Default::default()
                };
                infogain_from(dir, Some(proto.encode_to_vec()))
            }),
            fail(File, &["H.binaryproto", "needs 4 values", "data has 3"]),
        ),
        case(
            "binaryproto negative dimension",
            Source::Custom(|dir| {
                let proto = caffe::BlobProto {
                    shape: Some(caffe::BlobShape { dim: vec![2, -2] }),
                    ..Default::default()
                };
                infogain_from(dir, Some(proto.encode_to_vec()))
            }),
            fail(File, &["H.binaryproto", "dimension -2 is negative"]),
        ),
        case(
            "binaryproto count overflows",
            Source::Custom(|dir| {
                let proto = caffe::BlobProto {
                    shape: Some(caffe::BlobShape {
                        dim: vec![1 << 40, 1 << 40],
                    }),
                    ..Default::default()
                };
                infogain_from(dir, Some(proto.encode_to_vec()))
            }),
            fail(File, &["H.binaryproto", "overflows"]),
        ),
        case(
            "binaryproto legacy shape",
            Source::Custom(|dir| {
                let proto = caffe::BlobProto {
                    num: Some(1),
                    channels: Some(1),
                    height: Some(2),
                    width: Some(2),
                    double_data: vec![1.0, 0.0, 0.0, 1.0],
                    ..Default::default()
                };
                infogain_from(dir, Some(proto.encode_to_vec()))
            }),
            // Identity H with equal scores: ln 2 per position.
            Expect::Loss(std::f64::consts::LN_2),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Running the cases

/// Result of one case: `None` when it behaved, else what went wrong.
fn check(case: &Case) -> Option<String> {
    let dir = match TempDir::new() {
        Ok(dir) => dir,
        Err(error) => return Some(format!("cannot create a temporary folder: {error}")),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| run_source(&case.source, dir.path())));
    let result = match outcome {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Some(format!("panicked: {message}"));
        }
    };
    match (&case.expect, result) {
        (Expect::Fail(kind, words), Err(error)) => {
            let message = error.to_string();
            let missing: Vec<&&str> = words.iter().filter(|w| !message.contains(**w)).collect();
            if error.kind() != *kind {
                Some(format!(
                    "expected {kind:?}, got {:?}: {message}",
                    error.kind()
                ))
            } else if !missing.is_empty() {
                Some(format!("message lacks {missing:?}: {message}"))
            } else {
                None
            }
        }
        (Expect::Fail(kind, _), Ok(loss)) => {
            Some(format!("expected a {kind:?} error, got a loss of {loss}"))
        }
        (_, Err(error)) => Some(format!(
            "expected a result, got {:?}: {error}",
            error.kind()
        )),
        (Expect::Loss(expected), Ok(loss)) => {
            let tolerance = 1e-4 * expected.abs().max(1e-6);
            if (loss - expected).abs() <= tolerance {
                None
            } else {
                Some(format!("expected a loss of {expected}, got {loss}"))
            }
        }
        (Expect::Runs, Ok(loss)) if loss.is_finite() => None,
        (Expect::Runs, Ok(loss)) => Some(format!("expected a finite loss, got {loss}")),
        (Expect::NanLoss, Ok(loss)) if loss.is_nan() => None,
        (Expect::NanLoss, Ok(loss)) => Some(format!("expected a NaN loss, got {loss}")),
    }
}

fn run_source(source: &Source, dir: &Path) -> Result<f64> {
    match source {
        Source::Net { model, feeds } => {
            let path = dir.join("model.prototxt");
            write(&path, model.as_bytes());
            let param = read_net(&path, Phase::Train)?;
            let context = BuildContext {
                model_dir: Some(dir.to_path_buf()),
            };
            let mut net = Net::<f32>::new(&param, "model.prototxt", &context)?;
            for feed in feeds {
                let values = feed.values.iter().map(|&v| v as f32).collect();
                net.set_input(feed.blob, &feed.shape, values)?;
            }
            let loss = net.forward()?;
            net.backward()?;
            Ok(loss)
        }
        Source::Custom(run) => run(dir),
    }
}

#[test]
fn bad_inputs_table() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be unique");

    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| check(case).map(|why| format!("{}: {why}", case.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Helpers for the file cases

fn io_error(error: std::io::Error) -> caffe_loss::Error {
    caffe_loss::Error::file("(test setup)", error.to_string())
}

fn write(path: &Path, bytes: &[u8]) {
    if let Err(error) = std::fs::write(path, bytes) {
        panic!("cannot write {}: {error}", path.display());
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Bytes of a version 1.0 .npy file, built by hand so that any dtype, order
/// or inconsistent length can be written.
fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let order = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header, padded to 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn write_npy_f32(path: &Path, shape: &[usize], values: &[f32]) {
    write(path, &npy_bytes("<f4", false, shape, &f32_bytes(values)));
}

/// Builds `model_path` in element type `T`, feeds each (blob, .npy file) the
/// way `caffe-loss run` does, and runs forward and backward.
fn run_model_file<T: Element>(model_path: &Path, feeds: &[(&str, PathBuf)]) -> Result<f64> {
    let param = read_net(model_path, Phase::Train)?;
    let context = BuildContext {
        model_dir: model_path.parent().map(Path::to_path_buf),
    };
    let mut net = Net::<T>::new(&param, &model_path.display().to_string(), &context)?;
    for (blob, path) in feeds {
        let (shape, values) = read_npy_as::<T>(path)?;
        net.set_input(blob, &shape, values)?;
    }
    let loss = net.forward()?;
    net.backward()?;
    Ok(loss)
}

/// Runs a softmax loss net declaring x (2 × 2) and label (2), fed from the
/// named files in `dir`.
fn feed_files(dir: &Path, files: &[(&str, &str)]) -> Result<f64> {
    let model = format!(
        "{}{SOFTMAX_LOSS}\n",
        input_layer(&[("x", &[2, 2]), ("label", &[2])])
    );
    let path = dir.join("model.prototxt");
    write(&path, model.as_bytes());
    let feeds: Vec<(&str, PathBuf)> = files.iter().map(|(b, f)| (*b, dir.join(f))).collect();
    run_model_file::<f32>(&path, &feeds)
}

/// Runs an InfogainLoss net of 2 classes on equal scores whose H comes from
/// `H.binaryproto` holding `bytes` (no file when `None`).
fn infogain_from(dir: &Path, bytes: Option<Vec<u8>>) -> Result<f64> {
    if let Some(bytes) = bytes {
        write(&dir.join("H.binaryproto"), &bytes);
    }
    let model = format!(
        "{}{}",
        input_layer(&[("x", &[2, 2]), ("label", &[2])]),
        r#"layer { name: "info" type: "InfogainLoss" bottom: "x" bottom: "label"
                   infogain_loss_param { source: "H.binaryproto" } }"#
    );
    let path = dir.join("model.prototxt");
    write(&path, model.as_bytes());
    let mut net = Net::<f32>::new(
        &read_net(&path, Phase::Train)?,
        "model.prototxt",
        &BuildContext {
            model_dir: Some(dir.to_path_buf()),
        },
    )?;
    net.set_input("x", &[2, 2], vec![0.0; 4])?;
    net.set_input("label", &[2], vec![0.0, 1.0])?;
    let loss = net.forward()?;
    net.backward()?;
    Ok(loss)
}

// ---------------------------------------------------------------------------
// The command line

/// Runs the CLI binary with `args` in `dir` and returns (exit code, stdout,
/// stderr).
fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_caffe-loss"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => panic!("cannot start caffe-loss: {error}"),
    };
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Writes a softmax loss model and valid inputs into `dir`.
fn write_cli_model(dir: &Path) {
    let model = format!(
        "{}{SOFTMAX_LOSS}\n",
        input_layer(&[("x", &[2, 2]), ("label", &[2])])
    );
    write(&dir.join("model.prototxt"), model.as_bytes());
    write_npy_f32(&dir.join("x.npy"), &[2, 2], &[0.0, 1.0, 1.0, 0.0]);
    write_npy_f32(&dir.join("label.npy"), &[2], &[0.0, 1.0]);
    write_npy_f32(&dir.join("bad_label.npy"), &[2], &[0.0, 9.0]);
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A CLI case: arguments, expected exit code and words of the one stderr line.
struct CliCase {
    args: &'static [&'static str],
    code: i32,
    words: &'static [&'static str],
}

const CLI_CASES: &[CliCase] = &[
    CliCase {
        args: &[],
        code: 2,
        words: &["a command is required", "run, check, time or kernels"],
    },
    CliCase {
        args: &["frobnicate"],
        code: 2,
        words: &["frobnicate"],
    },
    CliCase {
        args: &["run"],
        code: 2,
        words: &["required arguments were not provided", "<MODEL>"],
    },
    CliCase {
        args: &["run", "model.prototxt", "--dtype", "f8"],
        code: 2,
        words: &["'f8'", "--dtype", "possible values", "f32"],
    },
    CliCase {
        args: &["run", "model.prototxt", "--input", "x"],
        code: 2,
        words: &["--input expects NAME=VALUE", "'x'"],
    },
    CliCase {
        args: &["run", "model.prototxt", "--input", "x=x.npy"],
        code: 2,
        words: &["no --input given", "label"],
    },
    CliCase {
        args: &["run", "absent.prototxt"],
        code: 1,
        words: &["absent.prototxt", "failed to read model file"],
    },
    CliCase {
        args: &["check", "absent.prototxt"],
        code: 1,
        words: &["absent.prototxt"],
    },
    CliCase {
        args: &["time", "absent.prototxt"],
        code: 1,
        words: &["absent.prototxt"],
    },
    CliCase {
        args: &["time", "model.prototxt", "--iterations", "0"],
        code: 2,
        words: &["--iterations must be at least 1"],
    },
    CliCase {
        args: &["check", "model.prototxt", "--shape", "x=2,a"],
        code: 2,
        words: &["--shape x", "2,a"],
    },
    CliCase {
        args: &[
            "run",
            "model.prototxt",
            "--input",
            "x=x.npy",
            "--input",
            "label=bad_label.npy",
            "--out",
            "out",
        ],
        code: 1,
        words: &["'loss'", "label 9", "position 1"],
    },
    CliCase {
        args: &[
            "run",
            "model.prototxt",
            "--input",
            "x=x.npy",
            "--input",
            "label=absent.npy",
            "--out",
            "out",
        ],
        code: 1,
        words: &["absent.npy"],
    },
];

#[test]
fn cli_errors_are_one_line() {
    let dir = match TempDir::new() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary folder: {error}"),
    };
    write_cli_model(dir.path());
    let mut failures = Vec::new();
    for case in CLI_CASES {
        let (code, _stdout, stderr) = cli(dir.path(), case.args);
        let label = case.args.join(" ");
        let lines: Vec<&str> = stderr.lines().collect();
        if code != case.code {
            failures.push(format!(
                "`{label}`: exit {code}, expected {}: {stderr}",
                case.code
            ));
        }
        if lines.len() != 1 || !lines[0].starts_with("caffe-loss: ") {
            failures.push(format!(
                "`{label}`: stderr is not one 'caffe-loss:' line: {stderr:?}"
            ));
        }
        for word in case.words {
            if !stderr.contains(word) {
                failures.push(format!("`{label}`: stderr lacks {word:?}: {stderr}"));
            }
        }
        if stderr.contains("panicked") || stderr.contains("backtrace") {
            failures.push(format!("`{label}`: panic or backtrace text: {stderr}"));
        }
    }
    let leftovers = files_under(&dir.path().join("out"));
    if !leftovers.is_empty() {
        failures.push(format!("failed runs left files in --out: {leftovers:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cli_run_writes_outputs() {
    let dir = match TempDir::new() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary folder: {error}"),
    };
    write_cli_model(dir.path());
    let args = [
        "run",
        "model.prototxt",
        "--input",
        "x=x.npy",
        "--input",
        "label=label.npy",
        "--out",
        "out",
    ];
    let (code, stdout, stderr) = cli(dir.path(), &args);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("loss = "), "stdout: {stdout}");
    assert!(dir.path().join("out/data/loss.npy").is_file());
    assert!(dir.path().join("out/diff/x.npy").is_file());
}

#[test]
fn cli_cuda_without_driver() {
    if device::cuda_probe().is_ok() {
        // A driver is present: the no-driver message cannot be produced here.
        return;
    }
    let dir = match TempDir::new() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary folder: {error}"),
    };
    write_cli_model(dir.path());
    let args = [
        "run",
        "model.prototxt",
        "--input",
        "x=x.npy",
        "--input",
        "label=label.npy",
        "--device",
        "cuda",
    ];
    let (code, _stdout, stderr) = cli(dir.path(), &args);
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("no GPU is usable"), "stderr: {stderr}");
}

#[test]
fn cli_check_huge_shape() {
    let dir = match TempDir::new() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary folder: {error}"),
    };
    write_cli_model(dir.path());
    let args = [
        "check",
        "model.prototxt",
        "--shape",
        "x=4294967296,4294967296,4294967296",
    ];
    let (code, stdout, stderr) = cli(dir.path(), &args);
    // check reports a layer it cannot build as a FAIL row of its table.
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("FAIL"), "stdout: {stdout}");
    assert!(stdout.contains("2147483647"), "stdout: {stdout}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn cli_out_names_stay_inside() {
    let dir = match TempDir::new() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary folder: {error}"),
    };
    write_cli_model(dir.path());
    // Top names that would address files outside --out if used as paths.
    let model = format!(
        "{}{}",
        input_layer(&[("x", &[2, 2]), ("label", &[2])]),
        r#"layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"
                   top: "../../up" top: "/abs/prob" }"#
    );
    write(&dir.path().join("escape.prototxt"), model.as_bytes());
    let inputs = ["--input", "x=x.npy", "--input", "label=label.npy"];
    let mut args = vec!["run", "escape.prototxt"];
    args.extend(inputs);
    args.extend(["--out", "out"]);
    let (code, _stdout, stderr) = cli(dir.path(), &args);
    assert_eq!(code, 0, "stderr: {stderr}");

    let out = dir.path().join("out");
    let written = files_under(&out);
    assert!(out.join("data/%2E.%2F..%2Fup.npy").is_file(), "{written:?}");
    assert!(out.join("data/%2Fabs%2Fprob.npy").is_file(), "{written:?}");
    assert!(!dir.path().join("up.npy").exists());
    assert!(!Path::new("/abs/prob.npy").exists());

    // The encoded names map back to the blobs when compared with --expect.
    let mut args = vec!["run", "escape.prototxt"];
    args.extend(inputs);
    args.extend(["--expect", "out"]);
    let (code, stdout, stderr) = cli(dir.path(), &args);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("matches"), "stdout: {stdout}");
}
