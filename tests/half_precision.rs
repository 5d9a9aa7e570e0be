//! Every case computed by real Caffe 1.0 (tests/data/caffe-reference), run in
//! f16 and bf16 and compared with Caffe's float32 tops and gradients, and
//! gradient checks in f32 on inputs rounded to f16.
//!
//! The layers compute in f32 and round each stored result once. A 16-bit run
//! therefore differs from Caffe's float32 run by three errors: the inputs
//! are rounded to the format, the output is rounded to the format, and the
//! f32 arithmetic runs in a different order than Caffe's. The tests below
//! bound each of them and then the total.

use std::path::Path;

use caffe_loss::caffe::Phase;
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::npy::read_npy;
use caffe_loss::Element;
use half::{bf16, f16};

mod common;
use common::{npy_files, reference_cases, stem};

/// Unit roundoff of f16: an 11-bit significand, so rounding to nearest has
/// a relative error of at most 2^-11 ≈ 4.9e-4 for normal values.
const F16_UNIT_ROUNDOFF: f64 = 1.0 / 2048.0;
/// Unit roundoff of bf16: an 8-bit significand, 2^-8 ≈ 3.9e-3.
const BF16_UNIT_ROUNDOFF: f64 = 1.0 / 256.0;

/// Largest effect of rounding the inputs, in units of `u (1 + |value|)`.
///
/// Rounding an input x changes it by at most u|x|, and a value v of these
/// layers moves by at most `u Σ_i |∂v/∂x_i| |x_i|` to first order. For
/// softmax probabilities, logistic outputs, the normalised losses and their
/// gradients that sum stays within `1 + |v|` for the inputs of the
/// reference cases (magnitudes up to 10, and the clamped losses of the
/// 1800-sized logits, which do not move). `input_rounding_effect_is_bounded`
/// measures the exact effect in f64 and checks this bound.
const INPUT_ROUNDING_FACTOR: f64 = 1.0;

/// Tolerance against Caffe, in units of `u (1 + |value|)`: one rounding of
/// the output (at most `u |value|`) plus the effect of rounding the inputs
/// ([`INPUT_ROUNDING_FACTOR`]). The sum is doubled to leave room for
/// second-order terms and for the f32 arithmetic, whose error is below 1e-5
/// relative (under 0.02 u for f16).
const CAFFE_FACTOR: f64 = 2.0 * (1.0 + INPUT_ROUNDING_FACTOR);

/// Slack of the f32 arithmetic against exact arithmetic on the same inputs,
/// relative to `1 + |value|`: the polynomial exp and ln are within 1 ulp
/// (6e-8) and the sums of the reference cases have at most a few hundred
/// terms.
const F32_ARITHMETIC: f64 = 1e-5;

/// Rounds `value` to the 16-bit type `H` and back.
fn round_to<H: Element>(value: f64) -> f64 {
    H::from_f64(value).to_f64()
}

/// Builds the case's net in `T` and feeds its inputs, each first rounded to
/// `H` (the storage format whose rounding is under test) and then to `T`.
fn load_case<T: Element, H: Element>(case: &Path) -> Net<T> {
    let param = caffe_loss::prototxt::read_net(&case.join("net.prototxt"), Phase::Train)
        .expect("case parses");
    let context = BuildContext {
        model_dir: Some(case.to_path_buf()),
    };
    let mut net = Net::<T>::new(&param, "net.prototxt", &context).expect("net builds");
    for input in npy_files(&case.join("inputs")) {
        let data = read_npy(&input).expect("input reads");
        let values = data
            .values
            .iter()
            .map(|&v| T::from_f64(round_to::<H>(v)))
            .collect();
        net.set_input(&stem(&input), &data.shape, values)
            .expect("input fits");
    }
    net
}

/// One compared value: where it is, Caffe's float32 result, and ours.
struct Value {
    place: String,
    caffe: f64,
    ours: f64,
}

/// Runs forward and backward and pairs every expected top and gradient of
/// the case with the net's value.
fn run_and_pair<T: Element>(case: &Path, net: &mut Net<T>) -> Vec<Value> {
    net.forward().expect("forward runs");
    net.backward().expect("backward runs");
    let mut values = Vec::new();
    for (kind, dir) in [("data", "expected/data"), ("diff", "expected/diff")] {
        for expected in npy_files(&case.join(dir)) {
            let name = stem(&expected);
            let blob = net
                .blob(&name)
                .unwrap_or_else(|| panic!("{}: blob {name} is missing", stem(case)));
            let ours = if kind == "data" {
                blob.data()
            } else {
                blob.diff()
            };
            let caffe = read_npy(&expected).expect("expected reads").values;
            assert_eq!(
                caffe.len(),
                ours.len(),
                "{}: {kind} {name} count",
                stem(case)
            );
            for (i, (&c, o)) in caffe.iter().zip(ours).enumerate() {
                values.push(Value {
                    place: format!("{} {kind} {name}[{i}]", stem(case)),
                    caffe: c,
                    ours: o.to_f64(),
                });
            }
        }
    }
    values
}

/// Largest finite value of `H`.
fn max_finite<H: Element>() -> f64 {
    if H::NAME == "f16" {
        f64::from(f16::MAX)
    } else {
        f64::from(bf16::MAX)
    }
}

/// Checks `|ours - reference| <= (factor u + slack) (1 + |reference|)`, with
/// u the unit roundoff of `H`. When `ours` was stored in `H`, a reference
/// beyond `H`'s range must come out as the infinity of its sign, which is
/// what rounding to nearest gives.
fn check_close<H: Element, S: Element>(
    values: &[Value],
    reference: impl Fn(&Value) -> f64,
    factor: f64,
    slack: f64,
) {
    let u = if H::NAME == "f16" {
        F16_UNIT_ROUNDOFF
    } else {
        BF16_UNIT_ROUNDOFF
    };
    let mut failures = Vec::new();
    for value in values {
        let expected = reference(value);
        if S::NAME == H::NAME && expected.abs() > max_finite::<H>() {
            if value.ours != expected.signum() * f64::INFINITY {
                failures.push(format!(
                    "{}: {expected} overflows {}, expected {}inf, got {}",
                    value.place,
                    H::NAME,
                    if expected < 0.0 { "-" } else { "+" },
                    value.ours
                ));
            }
            continue;
        }
        let bound = (factor * u + slack) * (1.0 + expected.abs());
        let error = (value.ours - expected).abs();
        // Written so that a NaN counts as out of bounds.
        let within = error <= bound;
        if !within {
            failures.push(format!(
                "{}: expected {expected}, got {} (error {error:.3e} > bound {bound:.3e})",
                value.place, value.ours
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} values out of bounds in {}:\n{}",
        failures.len(),
        H::NAME,
        failures.join("\n")
    );
}

fn compare_with_caffe<H: Element>() {
    for case in reference_cases() {
        let mut net = load_case::<H, H>(&case);
        let values = run_and_pair(&case, &mut net);
        check_close::<H, H>(&values, |v| v.caffe, CAFFE_FACTOR, 0.0);
    }
}

#[test]
fn reference_cases_f16() {
    compare_with_caffe::<f16>();
}

#[test]
fn reference_cases_bf16() {
    compare_with_caffe::<bf16>();
}

/// Runs the case in f64 on inputs rounded to `H` and checks that the
/// results move from Caffe's by at most [`INPUT_ROUNDING_FACTOR`]
/// `u (1 + |value|)`, beyond Caffe's own float32 error of 1e-4 relative
/// (the tolerance of tests/reference.rs).
fn input_rounding_effect<H: Element>() {
    for case in reference_cases() {
        let mut net = load_case::<f64, H>(&case);
        let values = run_and_pair(&case, &mut net);
        check_close::<H, f64>(&values, |v| v.caffe, INPUT_ROUNDING_FACTOR, 1e-4);
    }
}

#[test]
fn input_rounding_effect_is_bounded() {
    input_rounding_effect::<f16>();
    input_rounding_effect::<bf16>();
}

/// Runs the case in `H` and in f64 on the same rounded inputs: the 16-bit
/// result must be the f64 result rounded once, up to the f32 arithmetic.
fn rounds_once<H: Element>() {
    for case in reference_cases() {
        let mut exact = load_case::<f64, H>(&case);
        let exact = run_and_pair(&case, &mut exact);
        let mut net = load_case::<H, H>(&case);
        let values = run_and_pair(&case, &mut net);
        let paired: Vec<Value> = values
            .into_iter()
            .zip(&exact)
            .map(|(v, e)| Value { caffe: e.ours, ..v })
            .collect();
        // One rounding is at most u |v|; the f32 arithmetic adds
        // F32_ARITHMETIC (1 + |v|).
        check_close::<H, H>(&paired, |v| v.caffe, 1.0, F32_ARITHMETIC);
    }
}

#[test]
fn f16_results_are_rounded_once() {
    rounds_once::<f16>();
}

#[test]
fn bf16_results_are_rounded_once() {
    rounds_once::<bf16>();
}

/// Step of the central differences, relative to the input's magnitude (at
/// least 0.1). In f32 the objective carries a rounding error of about 1e-6
/// relative, which a step of 1e-2 turns into an error of about 1e-4 in the
/// difference quotient. The truncation error is about step²/6 times the
/// third derivative.
const STEP: f64 = 1e-2;
/// Largest accepted `|analytic - numeric| / max(1, |analytic|, |numeric|)`.
/// The largest error over the reference cases is about 5e-4, so this
/// leaves a factor of 4.
const GRADIENT_TOLERANCE: f64 = 2e-3;

/// Cases whose gradient is, by Caffe's definition, not the derivative of
/// the loss at the given inputs, so central differences cannot confirm it.
const NOT_DIFFERENTIABLE: &[(&str, &str)] = &[(
    "softmax_loss_huge_logits",
    "the label probabilities underflow, so the loss is clamped at -ln(FLT_MIN) and flat, \
     while Caffe's gradient is p - 1",
)];

/// How one top enters the objective of the gradient check.
enum Seed {
    /// A scalar loss top, weighted by its loss weight.
    LossWeight(f64),
    /// Any other top, weighted element by element.
    Weights(Vec<f64>),
}

/// Builds the seed of every non-Input top: the loss weight for scalar loss
/// tops, and fixed pseudo-random weights in [-1, 1] for the others, so that
/// Softmax, whose outputs always sum to 1, still has a gradient.
fn seeds(net: &Net<f32>) -> Vec<(usize, usize, Seed)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut seeds = Vec::new();
    for layer in 0..net.num_layers() {
        let info = net.layer_info(layer).expect("layer exists");
        if info.layer_type == "Input" {
            continue;
        }
        let weights = net.layer_loss_weights(layer).unwrap_or(&[]).to_vec();
        for (top, name) in info.tops.iter().enumerate() {
            let weight = weights.get(top).copied().unwrap_or(0.0);
            let count = net.blob(name).map_or(0, |b| b.count());
            if weight != 0.0 && count == 1 {
                seeds.push((layer, top, Seed::LossWeight(weight)));
            } else if !(top == 0 && info.layer_type.ends_with("Loss")) {
                let values = (0..count).map(|_| next()).collect();
                seeds.push((layer, top, Seed::Weights(values)));
            }
        }
    }
    seeds
}

/// Runs forward and returns the sum of the weighted tops, in f64.
fn objective(net: &mut Net<f32>, seeds: &[(usize, usize, Seed)]) -> f64 {
    net.forward().expect("forward runs");
    let mut total = 0.0;
    for (layer, top, seed) in seeds {
        let info = net.layer_info(*layer).expect("layer exists");
        let blob = net.blob(&info.tops[*top]).expect("top exists");
        let data = blob.data().iter().map(|&v| f64::from(v));
        total += match seed {
            Seed::LossWeight(weight) => weight * data.sum::<f64>(),
            Seed::Weights(weights) => data.zip(weights).map(|(y, s)| y * s).sum::<f64>(),
        };
    }
    total
}

/// Compares the f32 backward pass on inputs rounded to f16 with central
/// differences. Returns one line per element out of tolerance, and the
/// number of elements compared.
fn check_gradients_f32(case: &Path) -> (Vec<String>, usize) {
    let mut net = load_case::<f32, f16>(case);
    net.forward().expect("forward runs");
    let seeds = seeds(&net);
    net.prepare_backward();
    for (layer, top, seed) in &seeds {
        if let (Seed::Weights(weights), Some(diff)) = (seed, net.output_diff_mut(*layer, *top)) {
            for (d, &w) in diff.iter_mut().zip(weights) {
                *d = w as f32;
            }
        }
    }
    net.backward_from_seeds().expect("backward runs");
    let analytic: Vec<(String, Vec<f32>)> = net
        .input_gradients()
        .into_iter()
        .map(|(name, blob)| (name.to_string(), blob.diff().to_vec()))
        .collect();

    let mut problems = Vec::new();
    let mut compared = 0;
    for (name, gradient) in analytic {
        for (i, &a) in gradient.iter().enumerate() {
            let x = net.input_data_mut(&name).expect("input exists")[i];
            // The probability floor of MultinomialLogisticLoss: at a zero
            // probability the gradient is Caffe's -1 / (N 1e-20), not a
            // derivative.
            if x == 0.0 && case.ends_with("multinomial_zero_prob") {
                continue;
            }
            let h = (STEP * f64::from(x).abs().max(0.1)) as f32;
            net.input_data_mut(&name).expect("input exists")[i] = x + h;
            let plus = objective(&mut net, &seeds);
            net.input_data_mut(&name).expect("input exists")[i] = x - h;
            let minus = objective(&mut net, &seeds);
            net.input_data_mut(&name).expect("input exists")[i] = x;
            // The step actually taken, after rounding x ± h to f32.
            let span = f64::from(x + h) - f64::from(x - h);
            let numeric = (plus - minus) / span;
            let a = f64::from(a);
            let error = (a - numeric).abs() / a.abs().max(numeric.abs()).max(1.0);
            compared += 1;
            let within = error <= GRADIENT_TOLERANCE;
            if !within {
                problems.push(format!(
                    "{} {name}[{i}] at {x}: analytic {a}, numeric {numeric} (error {error:.2e})",
                    stem(case)
                ));
            }
        }
    }
    (problems, compared)
}

#[test]
fn gradients_f32_on_f16_inputs() {
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut compared = 0;
    for case in reference_cases() {
        if NOT_DIFFERENTIABLE
            .iter()
            .any(|(name, _)| stem(&case) == *name)
        {
            continue;
        }
        let (case_problems, case_compared) = check_gradients_f32(&case);
        problems.extend(case_problems);
        compared += case_compared;
        checked += 1;
    }
    assert!(checked >= 26, "only {checked} cases checked");
    assert!(
        compared >= 800,
        "only {compared} gradient elements compared"
    );
    assert!(
        problems.is_empty(),
        "{} gradients disagree with central differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
