//! Layers keep results of forward for backward (probabilities, parsed
//! labels, and for HingeLoss the whole gradient at loss weight 1). These
//! tests run the Caffe reference cases through the paths that do not use
//! the saved results as they are: a loss weight other than 1, a second
//! backward pass without a forward pass in between, and a backward pass
//! with no forward pass at all.

use std::path::Path;

use caffe_loss::caffe::{NetParameter, Phase};
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::npy::{read_npy, read_npy_as};

mod common;
use common::{npy_files, reference_cases, stem};

/// Tolerance of tests/reference.rs: float32 in another order agrees with
/// Caffe to about 1e-5 relative.
const RELATIVE: f64 = 1e-4;
const ABSOLUTE: f64 = 1e-6;

fn build(case: &Path, param: &NetParameter) -> Net<f32> {
    let context = BuildContext {
        model_dir: Some(case.to_path_buf()),
    };
    let mut net = Net::<f32>::new(param, "net.prototxt", &context).expect("net builds");
    for input in npy_files(&case.join("inputs")) {
        let (shape, values) = read_npy_as::<f32>(&input).expect("input reads");
        net.set_input(&stem(&input), &shape, values)
            .expect("input fits");
    }
    net
}

fn input_gradients(net: &Net<f32>) -> Vec<(String, Vec<f32>)> {
    net.input_gradients()
        .into_iter()
        .map(|(name, blob)| (name.to_string(), blob.diff().to_vec()))
        .collect()
}

/// Returns the loss weights of every layer, as the net resolved them.
fn loss_weights(net: &Net<f32>) -> Vec<Vec<f64>> {
    (0..net.num_layers())
        .map(|i| net.layer_loss_weights(i).unwrap_or(&[]).to_vec())
        .collect()
}

#[test]
fn loss_weight_three_triples_gradients() {
    let mut failures = Vec::new();
    for case in reference_cases() {
        let mut param = caffe_loss::prototxt::read_net(&case.join("net.prototxt"), Phase::Train)
            .expect("case parses");
        let original = build(&case, &param);
        let weights = loss_weights(&original);
        let mut scaled_any = false;
        for (layer, layer_weights) in param.layer.iter_mut().zip(&weights) {
            if layer_weights.iter().any(|&w| w != 0.0) {
                layer.loss_weight = layer_weights.iter().map(|&w| (3.0 * w) as f32).collect();
                scaled_any = true;
            }
        }
        if !scaled_any {
            continue;
        }
        let mut net = build(&case, &param);
        net.forward().expect("forward runs");
        net.backward().expect("backward runs");
        for (name, diff) in input_gradients(&net) {
            let path = case.join("expected/diff").join(format!("{name}.npy"));
            let expected = read_npy(&path).expect("expected gradient reads").values;
            for (i, (&e, &g)) in expected.iter().zip(&diff).enumerate() {
                let e = 3.0 * e;
                let g = f64::from(g);
                // Written so that a NaN counts as a mismatch.
                let close = (e - g).abs() <= RELATIVE * e.abs() + ABSOLUTE;
                if !close {
                    failures.push(format!(
                        "{}: {name}[{i}] expected {e}, got {g}",
                        stem(&case)
                    ));
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn second_backward_matches_first() {
    let mut failures = Vec::new();
    for case in reference_cases() {
        let param = caffe_loss::prototxt::read_net(&case.join("net.prototxt"), Phase::Train)
            .expect("case parses");
        let mut net = build(&case, &param);
        net.forward().expect("forward runs");
        net.backward().expect("backward runs");
        let first = input_gradients(&net);
        net.backward().expect("second backward runs");
        let second = input_gradients(&net);
        for ((name, a), (_, b)) in first.iter().zip(&second) {
            if a != b {
                failures.push(format!("{}: gradient of {name} changed", stem(&case)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn backward_before_forward_is_rejected() {
    // Layers that keep results of forward for backward. The others compute
    // backward from the blobs alone.
    const KEEPING: &[&str] = &[
        "SoftmaxWithLoss",
        "InfogainLoss",
        "SigmoidCrossEntropyLoss",
        "HingeLoss",
        "MultinomialLogisticLoss",
        "ContrastiveLoss",
    ];
    let mut checked = 0;
    for case in reference_cases() {
        let param = caffe_loss::prototxt::read_net(&case.join("net.prototxt"), Phase::Train)
            .expect("case parses");
        let layer_type = param.layer[1].r#type().to_string();
        let mut net = build(&case, &param);
        let result = net.backward();
        if KEEPING.contains(&layer_type.as_str()) {
            let error = result
                .expect_err("backward before forward must fail")
                .to_string();
            assert!(
                error.contains("run forward first"),
                "{}: unexpected error: {error}",
                stem(&case)
            );
            checked += 1;
        } else {
            result.unwrap_or_else(|e| panic!("{}: backward failed: {e}", stem(&case)));
        }
    }
    assert!(checked >= 20, "only {checked} cases checked");
}
