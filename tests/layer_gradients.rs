//! Caffe's layer-test ideas: seeded finite-difference gradient checks for
//! every layer and option, one case per normalization mode, the ignore-label
//! invariant, all labels ignored, and extreme logits.

use caffe_loss::check::single_layer_net;
use caffe_loss::gradcheck::{check_gradients, GradCheckOptions};
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::prototxt::parse_layer_text;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Largest relative gradient error accepted in f64. ContrastiveLoss divides
/// by `d + 1e-4` where the exact derivative divides by `d`, as Caffe does,
/// which bounds its error near 1e-4 for distances near 1.
const TOLERANCE: f64 = 1e-3;

/// One bottom: name, shape and values.
type Input = (&'static str, Vec<usize>, Vec<f64>);

fn build(layer_text: &str, inputs: &[Input]) -> Net<f64> {
    let layer = parse_layer_text(layer_text, "test layer").expect("layer parses");
    let shapes: Vec<(String, Vec<usize>)> = inputs
        .iter()
        .map(|(n, s, _)| (n.to_string(), s.clone()))
        .collect();
    let param = single_layer_net(&layer, &shapes);
    let mut net = Net::<f64>::new(&param, "test", &BuildContext::default()).expect("net builds");
    for (name, shape, values) in inputs {
        net.set_input(name, shape, values.clone())
            .expect("input fits");
    }
    net
}

fn gaussian(count: usize, rng: &mut StdRng) -> Vec<f64> {
    (0..count).map(|_| rng.random_range(-2.0..2.0)).collect()
}

fn labels(count: usize, classes: usize, rng: &mut StdRng) -> Vec<f64> {
    (0..count)
        .map(|_| rng.random_range(0..classes) as f64)
        .collect()
}

fn assert_gradients(layer_text: &str, inputs: &[Input]) {
    let mut net = build(layer_text, inputs);
    let results = check_gradients(&mut net, GradCheckOptions::default()).expect("check runs");
    assert!(
        !results.is_empty(),
        "no bottom received a gradient: {layer_text}"
    );
    for result in results {
        assert!(
            result.max_error <= TOLERANCE,
            "{layer_text}: bottom {} max error {}",
            result.blob,
            result.max_error
        );
    }
}

fn loss_of(layer_text: &str, inputs: &[Input]) -> f64 {
    let mut net = build(layer_text, inputs);
    net.forward().expect("forward runs");
    net.losses().first().map(|l| l.value).expect("a loss top")
}

const SOFTMAX_LOSS: &str =
    r#"name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss""#;

#[test]
fn softmax_loss_every_normalization() {
    let mut rng = StdRng::seed_from_u64(1);
    for mode in ["FULL", "VALID", "BATCH_SIZE", "NONE"] {
        let text = format!("{SOFTMAX_LOSS} loss_param {{ normalization: {mode} ignore_label: 2 }}");
        let inputs = vec![
            ("x", vec![2, 4, 3, 2], gaussian(48, &mut rng)),
            ("y", vec![2, 1, 3, 2], labels(12, 4, &mut rng)),
        ];
        assert_gradients(&text, &inputs);
    }
}

#[test]
fn softmax_loss_axis_and_prob_top() {
    let mut rng = StdRng::seed_from_u64(2);
    let text = r#"name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" top: "prob"
        loss_weight: 2 loss_weight: 0 softmax_param { axis: -1 }"#;
    let inputs = vec![
        ("x", vec![2, 3, 5], gaussian(30, &mut rng)),
        ("y", vec![2, 3], labels(6, 5, &mut rng)),
    ];
    assert_gradients(text, &inputs);
}

#[test]
fn softmax_loss_ignore_label_invariant() {
    // Ignoring each label in turn under NONE normalization sums to
    // (K - 1) times the full loss, K being the number of positions.
    let mut rng = StdRng::seed_from_u64(3);
    let scores = gaussian(5 * 4, &mut rng);
    let truth = labels(5, 4, &mut rng);
    let none = format!("{SOFTMAX_LOSS} loss_param {{ normalization: NONE }}");
    let full = loss_of(
        &none,
        &[
            ("x", vec![5, 4], scores.clone()),
            ("y", vec![5], truth.clone()),
        ],
    );
    let mut sum = 0.0;
    for position in 0..5 {
        let mut masked = truth.clone();
        masked[position] = -1.0;
        let text = format!("{SOFTMAX_LOSS} loss_param {{ normalization: NONE ignore_label: -1 }}");
        sum += loss_of(
            &text,
            &[("x", vec![5, 4], scores.clone()), ("y", vec![5], masked)],
        );
    }
    assert!(
        (sum - 4.0 * full).abs() <= 1e-9 * full.abs().max(1.0),
        "{sum} vs 4 x {full}"
    );
}

#[test]
fn softmax_loss_all_labels_ignored_is_zero() {
    let mut rng = StdRng::seed_from_u64(4);
    let text = format!("{SOFTMAX_LOSS} loss_param {{ ignore_label: 3 }}");
    let inputs = vec![
        ("x", vec![3, 5], gaussian(15, &mut rng)),
        ("y", vec![3], vec![3.0; 3]),
    ];
    assert_eq!(loss_of(&text, &inputs), 0.0);
    let mut net = build(&text, &inputs);
    net.forward().expect("forward runs");
    net.backward().expect("backward runs");
    let grads = net.input_gradients();
    assert!(grads
        .iter()
        .all(|(_, b)| b.diff().iter().all(|&d| d == 0.0)));
}

#[test]
fn softmax_loss_extreme_logits_stay_finite() {
    let scores = vec![1000.0, -1000.0, 0.0, -1000.0, 1000.0, 500.0];
    let inputs = vec![("x", vec![2, 3], scores), ("y", vec![2], vec![1.0, 0.0])];
    let loss = loss_of(SOFTMAX_LOSS, &inputs);
    assert!(loss.is_finite(), "loss {loss}");
    let mut net = build(SOFTMAX_LOSS, &inputs);
    net.forward().expect("forward runs");
    net.backward().expect("backward runs");
    for (_, blob) in net.input_gradients() {
        assert!(blob.diff().iter().all(|d| d.is_finite()));
    }
}

#[test]
fn sigmoid_cross_entropy_every_normalization() {
    let mut rng = StdRng::seed_from_u64(5);
    for mode in ["FULL", "VALID", "BATCH_SIZE", "NONE"] {
        let text = format!(
            r#"name: "l" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "loss"
            loss_param {{ normalization: {mode} ignore_label: -1 }}"#
        );
        let mut targets: Vec<f64> = (0..12).map(|_| rng.random_range(0.0..1.0)).collect();
        targets[3] = -1.0;
        let inputs = vec![
            ("x", vec![3, 4], gaussian(12, &mut rng)),
            ("t", vec![3, 4], targets),
        ];
        assert_gradients(&text, &inputs);
    }
}

#[test]
fn euclidean_both_bottoms() {
    let mut rng = StdRng::seed_from_u64(6);
    let text = r#"name: "l" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss""#;
    let inputs = vec![
        ("a", vec![4, 3, 2], gaussian(24, &mut rng)),
        ("b", vec![4, 6], gaussian(24, &mut rng)),
    ];
    assert_gradients(text, &inputs);
}

#[test]
fn hinge_l1_and_l2() {
    let mut rng = StdRng::seed_from_u64(7);
    for norm in ["L1", "L2"] {
        let text = format!(
            r#"name: "l" type: "HingeLoss" bottom: "x" bottom: "y" top: "loss"
            hinge_loss_param {{ norm: {norm} }}"#
        );
        let inputs = vec![
            ("x", vec![5, 4], gaussian(20, &mut rng)),
            ("y", vec![5], labels(5, 4, &mut rng)),
        ];
        assert_gradients(&text, &inputs);
    }
}

#[test]
fn multinomial_logistic() {
    let mut rng = StdRng::seed_from_u64(8);
    let mut probs: Vec<f64> = (0..20).map(|_| rng.random_range(0.1..1.0)).collect();
    for row in probs.chunks_mut(5) {
        let sum: f64 = row.iter().sum();
        row.iter_mut().for_each(|p| *p /= sum);
    }
    let text = r#"name: "l" type: "MultinomialLogisticLoss" bottom: "p" bottom: "y" top: "loss""#;
    assert_gradients(
        text,
        &[
            ("p", vec![4, 5], probs),
            ("y", vec![4], labels(4, 5, &mut rng)),
        ],
    );
}

#[test]
fn infogain_with_bottom_matrix_and_axis() {
    let mut rng = StdRng::seed_from_u64(9);
    let h: Vec<f64> = (0..9).map(|_| rng.random_range(0.0..1.0)).collect();
    let text = r#"name: "l" type: "InfogainLoss" bottom: "x" bottom: "y" bottom: "h" top: "loss"
        top: "prob" loss_weight: 1 loss_weight: 0 infogain_loss_param { axis: 2 }
        loss_param { normalization: FULL }"#;
    let inputs = vec![
        ("x", vec![2, 4, 3], gaussian(24, &mut rng)),
        ("y", vec![2, 4], labels(8, 3, &mut rng)),
        ("h", vec![3, 3], h),
    ];
    assert_gradients(text, &inputs);
}

#[test]
fn contrastive_current_and_legacy() {
    let mut rng = StdRng::seed_from_u64(10);
    for legacy in ["false", "true"] {
        let text = format!(
            r#"name: "l" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "s" top: "loss"
            contrastive_loss_param {{ margin: 4 legacy_version: {legacy} }}"#
        );
        let flags: Vec<f64> = (0..6).map(|i| f64::from(i % 2)).collect();
        let inputs = vec![
            ("a", vec![6, 3, 1, 1], gaussian(18, &mut rng)),
            ("b", vec![6, 3, 1, 1], gaussian(18, &mut rng)),
            ("s", vec![6, 1, 1, 1], flags),
        ];
        assert_gradients(&text, &inputs);
    }
}

#[test]
fn softmax_and_sigmoid_layers() {
    let mut rng = StdRng::seed_from_u64(11);
    let softmax = r#"name: "s" type: "Softmax" bottom: "x" top: "y" softmax_param { axis: 2 }"#;
    assert_gradients(softmax, &[("x", vec![2, 3, 4], gaussian(24, &mut rng))]);
    let sigmoid = r#"name: "s" type: "Sigmoid" bottom: "x" top: "y""#;
    assert_gradients(sigmoid, &[("x", vec![2, 3, 4], gaussian(24, &mut rng))]);
}
