//! GPU launchers against f64 references computed in this file, for f32, f64,
//! f16 and bf16.
//!
//! The tests are ignored by default because they need a GPU;
//! `scripts/gpu-check.sh` runs them with `--include-ignored`. Run that way
//! without a usable GPU, each test prints `skipped: <reason>` and returns.
// The f64 references index several arrays by the same loop counter.
#![allow(clippy::needless_range_loop)]

use std::sync::OnceLock;

use caffe_loss::gpu::ops::{
    accuracy_forward, alloc_pair_distances, alloc_row_stats, contrastive_loss_backward,
    contrastive_loss_forward, euclidean_loss_backward, euclidean_loss_forward, hinge_loss_backward,
    hinge_loss_forward, infogain_loss_backward, infogain_loss_forward,
    multinomial_logistic_loss_backward, multinomial_logistic_loss_forward, sigmoid_backward,
    sigmoid_cross_entropy_loss_backward, sigmoid_cross_entropy_loss_forward, sigmoid_forward,
    softmax_backward, softmax_forward, softmax_loss_backward, softmax_loss_forward,
    AccuracyOptions, ContrastiveOptions, HingeNorm,
};
use caffe_loss::gpu::{probe, Gpu, GpuElement, LabelContext, RowDims};
use caffe_loss::Error;
use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// FLT_MIN, the clamp of SoftmaxWithLoss in every precision.
const FLT_MIN: f64 = f32::MIN_POSITIVE as f64;
/// Clamp of InfogainLoss and MultinomialLogisticLoss (Caffe's kLOG_THRESHOLD).
const LOG_THRESHOLD: f64 = 1e-20;

const CTX: LabelContext<'static> = LabelContext {
    layer: "loss",
    layer_type: "Test",
    blob: "bottom[1] 'label'",
};

/// Shapes (outer, channels, inner) every row op runs on: C = 1, 31, 33, 1000
/// and 50000, spatial blobs, and row counts that are not multiples of 32.
/// Together they reach all three row mappings (thread, warp and block per
/// row), each with inner 1 and inner > 1.
const ROW_SHAPES: &[(usize, usize, usize)] = &[
    (45, 1, 1),
    (45, 31, 1),
    (45, 33, 1),
    (45, 1000, 1),
    (3, 50_000, 1),
    (3, 5, 37),
    (2, 40, 33),
    (5, 7, 3),
    (4, 100, 5),
    (2, 2000, 3),
];

/// Returns the shared GPU, or prints why there is none.
fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    let gpu = GPU.get_or_init(|| {
        probe()?;
        Gpu::new(0).map_err(|e| e.to_string())
    });
    match gpu {
        Ok(gpu) => Some(gpu),
        Err(reason) => {
            println!("skipped: {reason}");
            None
        }
    }
}

/// Tolerances of one element type: outputs rounded to the type, and sums
/// accumulated in its accumulation type.
struct Tol {
    /// Relative tolerance of stored outputs.
    rel: f64,
    /// Absolute tolerance of stored outputs.
    abs: f64,
    /// Relative tolerance of loss sums.
    sum: f64,
}

fn tol<T: GpuElement>() -> Tol {
    match T::NAME {
        "f64" => Tol {
            rel: 1e-11,
            abs: 1e-13,
            sum: 1e-10,
        },
        "f32" => Tol {
            rel: 2e-5,
            abs: 1e-6,
            sum: 2e-5,
        },
        "f16" => Tol {
            rel: 2e-3,
            abs: 1e-4,
            sum: 2e-5,
        },
        _ => Tol {
            rel: 1.6e-2,
            abs: 1e-3,
            sum: 2e-5,
        },
    }
}

/// Rounds host values to T, uploads them, and returns the device copy with
/// the rounded values as f64.
fn upload<T: GpuElement>(gpu: &Gpu, values: &[f64]) -> (CudaSlice<T>, Vec<f64>) {
    let stored: Vec<T> = values.iter().map(|&v| T::from_f64(v)).collect();
    let rounded = stored.iter().map(|v| v.to_f64()).collect();
    let slice = gpu.stream().clone_htod(&stored).expect("upload");
    (slice, rounded)
}

fn download<T: GpuElement>(gpu: &Gpu, slice: &CudaSlice<T>) -> Vec<f64> {
    let values: Vec<T> = gpu.stream().clone_dtoh(slice).expect("download");
    values.iter().map(|v| v.to_f64()).collect()
}

fn zeros<T: GpuElement>(gpu: &Gpu, len: usize) -> CudaSlice<T> {
    gpu.stream().alloc_zeros::<T>(len).expect("alloc")
}

fn uniform(rng: &mut StdRng, len: usize, low: f64, high: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(low..high)).collect()
}

/// Labels in [0, classes), limited to 256 for the 16-bit types, whose
/// integers are exact only up to 256 (bf16) or 2048 (f16).
fn labels_for<T: GpuElement>(rng: &mut StdRng, len: usize, classes: usize) -> Vec<f64> {
    let limit = if T::BYTES == 2 {
        classes.min(256)
    } else {
        classes
    };
    (0..len)
        .map(|_| rng.random_range(0..limit.max(1)) as f64)
        .collect()
}

fn assert_close(actual: &[f64], expected: &[f64], tol: &Tol, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let bound = tol.abs + tol.rel * e.abs();
        assert!(
            (a - e).abs() <= bound,
            "{what}: element {i} is {a}, expected {e} (tolerance {bound})"
        );
    }
}

fn assert_sum_close(actual: f64, expected: f64, rel: f64, what: &str) {
    let bound = rel * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= bound,
        "{what}: sum is {actual}, expected {expected} (tolerance {bound})"
    );
}

fn index(d: RowDims, o: usize, c: usize, s: usize) -> usize {
    (o * d.channels + c) * d.inner + s
}

/// Softmax along the axis, in f64.
fn softmax_ref(x: &[f64], d: RowDims) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for o in 0..d.outer {
        for s in 0..d.inner {
            let max = (0..d.channels)
                .map(|c| x[index(d, o, c, s)])
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..d.channels)
                .map(|c| (x[index(d, o, c, s)] - max).exp())
                .sum();
            for c in 0..d.channels {
                y[index(d, o, c, s)] = (x[index(d, o, c, s)] - max).exp() / sum;
            }
        }
    }
    y
}

fn is_ignored(label: f64, ignore: Option<i32>) -> bool {
    ignore.is_some_and(|i| label.trunc() == f64::from(i))
}

// ---------------------------------------------------------------------------
// Softmax

fn check_softmax<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(1);
    for &(outer, channels, inner) in ROW_SHAPES {
        let d = RowDims::new(outer, channels, inner);
        let what = format!("softmax {} {outer}x{channels}x{inner}", T::NAME);
        let (x, xh) = upload::<T>(gpu, &uniform(&mut rng, d.elements(), -4.0, 4.0));
        let mut y = zeros::<T>(gpu, d.elements());
        softmax_forward(gpu, &CTX, &x, &mut y, d).expect("forward");
        let yh_ref = softmax_ref(&xh, d);
        let yh = download(gpu, &y);
        assert_close(&yh, &yh_ref, &tol::<T>(), &format!("{what} forward"));

        let (dy, dyh) = upload::<T>(gpu, &uniform(&mut rng, d.elements(), -1.0, 1.0));
        let mut dx = zeros::<T>(gpu, d.elements());
        softmax_backward(gpu, &CTX, &y, &dy, &mut dx, d).expect("backward");
        let mut dx_ref = vec![0.0; d.elements()];
        for o in 0..outer {
            for s in 0..inner {
                let dot: f64 = (0..channels)
                    .map(|c| dyh[index(d, o, c, s)] * yh[index(d, o, c, s)])
                    .sum();
                for c in 0..channels {
                    let i = index(d, o, c, s);
                    dx_ref[i] = yh[i] * (dyh[i] - dot);
                }
            }
        }
        let mut t = tol::<T>();
        t.abs *= 4.0;
        assert_close(
            &download(gpu, &dx),
            &dx_ref,
            &t,
            &format!("{what} backward"),
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn softmax_matches_reference() {
    let Some(gpu) = gpu() else { return };
    check_softmax::<f32>(gpu);
    check_softmax::<f64>(gpu);
    check_softmax::<f16>(gpu);
    check_softmax::<bf16>(gpu);
}

// ---------------------------------------------------------------------------
// SoftmaxWithLoss

/// Returns (sum, valid, gradient with scale 1) of SoftmaxWithLoss.
fn softmax_loss_ref(
    x: &[f64],
    labels: &[f64],
    d: RowDims,
    ignore: Option<i32>,
) -> (f64, u64, Vec<f64>) {
    let p = softmax_ref(x, d);
    let mut grad = p.clone();
    let mut sum = 0.0;
    let mut valid = 0;
    for o in 0..d.outer {
        for s in 0..d.inner {
            let label = labels[o * d.inner + s];
            if is_ignored(label, ignore) {
                for c in 0..d.channels {
                    grad[index(d, o, c, s)] = 0.0;
                }
                continue;
            }
            let l = label as usize;
            sum -= p[index(d, o, l, s)].max(FLT_MIN).ln();
            valid += 1;
            grad[index(d, o, l, s)] -= 1.0;
        }
    }
    (sum, valid, grad)
}

fn check_softmax_loss<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(2);
    for &(outer, channels, inner) in ROW_SHAPES {
        for ignore in [None, Some(0)] {
            let d = RowDims::new(outer, channels, inner);
            let what = format!(
                "softmax loss {} {outer}x{channels}x{inner} ignore {ignore:?}",
                T::NAME
            );
            let (x, xh) = upload::<T>(gpu, &uniform(&mut rng, d.elements(), -5.0, 5.0));
            let (labels, lh) = upload::<T>(gpu, &labels_for::<T>(&mut rng, d.rows(), channels));
            let mut prob = zeros::<T>(gpu, d.elements());
            let mut stats = alloc_row_stats::<T>(gpu, &CTX, d).expect("stats");
            let loss = softmax_loss_forward(
                gpu,
                &CTX,
                &x,
                &labels,
                Some(&mut prob),
                &mut stats,
                d,
                ignore,
            )
            .expect("forward");

            let (sum, valid, grad) = softmax_loss_ref(&xh, &lh, d, ignore);
            assert_eq!(loss.valid, valid, "{what}: valid count");
            assert_sum_close(loss.sum, sum, tol::<T>().sum, &what);
            assert_close(
                &download(gpu, &prob),
                &softmax_ref(&xh, d),
                &tol::<T>(),
                &format!("{what} prob"),
            );

            let scale = 0.5 / (valid.max(1) as f64);
            let mut dx = zeros::<T>(gpu, d.elements());
            softmax_loss_backward(gpu, &CTX, &x, &labels, &stats, &mut dx, d, ignore, scale)
                .expect("backward");
            let expected: Vec<f64> = grad.iter().map(|g| g * scale).collect();
            let mut t = tol::<T>();
            t.abs *= scale;
            assert_close(
                &download(gpu, &dx),
                &expected,
                &t,
                &format!("{what} backward"),
            );

            // The forward without prob gives the same bits.
            let again = softmax_loss_forward(gpu, &CTX, &x, &labels, None, &mut stats, d, ignore)
                .expect("forward without prob");
            assert_eq!(
                again.sum.to_bits(),
                loss.sum.to_bits(),
                "{what}: without prob"
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn softmax_loss_matches_reference() {
    let Some(gpu) = gpu() else { return };
    check_softmax_loss::<f32>(gpu);
    check_softmax_loss::<f64>(gpu);
    check_softmax_loss::<f16>(gpu);
    check_softmax_loss::<bf16>(gpu);
}

fn check_flt_min_clamp<T: GpuElement>(gpu: &Gpu) {
    // exp(-200) is below FLT_MIN, so the term is -log(FLT_MIN) = 87.3365...
    // in every precision, as in Caffe.
    let d = RowDims::new(1, 2, 1);
    let (x, _) = upload::<T>(gpu, &[0.0, -200.0]);
    let (labels, _) = upload::<T>(gpu, &[1.0]);
    let mut stats = alloc_row_stats::<T>(gpu, &CTX, d).expect("stats");
    let loss =
        softmax_loss_forward(gpu, &CTX, &x, &labels, None, &mut stats, d, None).expect("forward");
    assert_eq!(loss.valid, 1);
    assert_sum_close(loss.sum, -FLT_MIN.ln(), 1e-6, T::NAME);
    assert!(
        (loss.sum - 87.3365).abs() < 1e-4,
        "{}: {}",
        T::NAME,
        loss.sum
    );
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn softmax_loss_clamps_at_flt_min() {
    let Some(gpu) = gpu() else { return };
    check_flt_min_clamp::<f32>(gpu);
    check_flt_min_clamp::<f64>(gpu);
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn softmax_loss_all_ignored_is_zero() {
    let Some(gpu) = gpu() else { return };
    let d = RowDims::new(37, 33, 1);
    let mut rng = StdRng::seed_from_u64(3);
    let (x, _) = upload::<f32>(gpu, &uniform(&mut rng, d.elements(), -3.0, 3.0));
    let (labels, _) = upload::<f32>(gpu, &vec![-1.0; d.rows()]);
    let mut stats = alloc_row_stats::<f32>(gpu, &CTX, d).expect("stats");
    let loss = softmax_loss_forward(gpu, &CTX, &x, &labels, None, &mut stats, d, Some(-1))
        .expect("forward");
    assert_eq!(loss.valid, 0);
    assert_eq!(loss.sum, 0.0);

    let mut dx = gpu
        .stream()
        .clone_htod(&vec![7.0f32; d.elements()])
        .expect("upload");
    softmax_loss_backward(gpu, &CTX, &x, &labels, &stats, &mut dx, d, Some(-1), 1.0)
        .expect("backward");
    assert!(download(gpu, &dx).iter().all(|&g| g == 0.0));
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn softmax_loss_bad_label_is_error() {
    let Some(gpu) = gpu() else { return };
    let d = RowDims::new(20, 10, 1);
    let mut label_values: Vec<f64> = (0..20).map(|i| (i % 10) as f64).collect();
    label_values[7] = 1.5;
    label_values[12] = -3.0;
    label_values[15] = 10.0;
    label_values[3] = -1.0; // ignored
    let (x, _) = upload::<f32>(gpu, &vec![0.25; d.elements()]);
    let (labels, _) = upload::<f32>(gpu, &label_values);
    let mut stats = alloc_row_stats::<f32>(gpu, &CTX, d).expect("stats");
    let error = softmax_loss_forward(gpu, &CTX, &x, &labels, None, &mut stats, d, Some(-1))
        .expect_err("labels 1.5, -3 and 10 are invalid");
    let Error::Label {
        position,
        value,
        max_valid,
        ignore,
        ..
    } = &error
    else {
        panic!("expected Error::Label, got {error:?}");
    };
    assert_eq!(*position, 7);
    assert_eq!(*value, 1.5);
    assert_eq!(*max_valid, 9);
    assert_eq!(ignore, " or the ignore_label -1");

    let message = error.to_string();
    assert_eq!(
        message,
        "layer 'loss' (Test): bottom[1] 'label': invalid label 1.5 at flat position 7; \
         expected an integer in [0, 9] or the ignore_label -1"
    );

    // NaN is invalid too.
    let (labels, _) = upload::<f32>(gpu, &[f64::NAN; 20]);
    let error = softmax_loss_forward(gpu, &CTX, &x, &labels, None, &mut stats, d, None)
        .expect_err("NaN labels are invalid");
    assert!(matches!(error, Error::Label { position: 0, .. }));
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn softmax_loss_is_bitwise_repeatable() {
    let Some(gpu) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(4);
    for &(outer, channels, inner) in &[(4096, 1000, 1), (64, 21, 4096), (5, 50_000, 1)] {
        let d = RowDims::new(outer, channels, inner);
        let (x, _) = upload::<f32>(gpu, &uniform(&mut rng, d.elements(), -8.0, 8.0));
        let (labels, _) = upload::<f32>(gpu, &labels_for::<f32>(&mut rng, d.rows(), channels));
        let mut stats = alloc_row_stats::<f32>(gpu, &CTX, d).expect("stats");
        let first = softmax_loss_forward(gpu, &CTX, &x, &labels, None, &mut stats, d, None)
            .expect("forward");
        for run in 0..3 {
            let again = softmax_loss_forward(gpu, &CTX, &x, &labels, None, &mut stats, d, None)
                .expect("forward");
            assert_eq!(
                again.sum.to_bits(),
                first.sum.to_bits(),
                "{outer}x{channels}x{inner}: run {run}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// InfogainLoss

fn check_infogain<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(5);
    for &(outer, channels, inner) in &[(45, 1, 1), (45, 31, 1), (3, 5, 37), (7, 1000, 1)] {
        for ignore in [None, Some(1)] {
            let d = RowDims::new(outer, channels, inner);
            let what = format!("infogain {} {outer}x{channels}x{inner}", T::NAME);
            let (x, xh) = upload::<T>(gpu, &uniform(&mut rng, d.elements(), -4.0, 4.0));
            let (labels, lh) = upload::<T>(gpu, &labels_for::<T>(&mut rng, d.rows(), channels));
            let (h, hh) = upload::<T>(gpu, &uniform(&mut rng, channels * channels, 0.0, 2.0));
            let mut prob = zeros::<T>(gpu, d.elements());
            let mut stats = alloc_row_stats::<T>(gpu, &CTX, d).expect("stats");
            let loss = infogain_loss_forward(
                gpu,
                &CTX,
                &x,
                &labels,
                &h,
                Some(&mut prob),
                &mut stats,
                d,
                ignore,
            )
            .expect("forward");

            let p = softmax_ref(&xh, d);
            let mut sum = 0.0;
            let mut valid = 0;
            let scale = 2.0 / outer as f64;
            let mut grad = vec![0.0; d.elements()];
            for o in 0..outer {
                for s in 0..inner {
                    let label = lh[o * inner + s];
                    if is_ignored(label, ignore) {
                        continue;
                    }
                    let l = label as usize;
                    let h_row = &hh[l * channels..(l + 1) * channels];
                    let h_sum: f64 = h_row.iter().sum();
                    for c in 0..channels {
                        let i = index(d, o, c, s);
                        sum -= h_row[c] * p[i].max(LOG_THRESHOLD).ln();
                        grad[i] = scale * (p[i] * h_sum - h_row[c]);
                    }
                    valid += 1;
                }
            }
            assert_eq!(loss.valid, valid, "{what}: valid count");
            assert_sum_close(loss.sum, sum, 10.0 * tol::<T>().sum, &what);
            assert_close(
                &download(gpu, &prob),
                &p,
                &tol::<T>(),
                &format!("{what} prob"),
            );

            let mut dx = zeros::<T>(gpu, d.elements());
            infogain_loss_backward(
                gpu, &CTX, &x, &labels, &h, &stats, &mut dx, d, ignore, scale,
            )
            .expect("backward");
            let mut t = tol::<T>();
            t.abs *= 4.0 * scale * channels as f64;
            assert_close(&download(gpu, &dx), &grad, &t, &format!("{what} backward"));
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn infogain_loss_matches_reference() {
    let Some(gpu) = gpu() else { return };
    check_infogain::<f32>(gpu);
    check_infogain::<f64>(gpu);
    check_infogain::<f16>(gpu);
    check_infogain::<bf16>(gpu);
}

// ---------------------------------------------------------------------------
// Sigmoid and SigmoidCrossEntropyLoss

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn check_sigmoid<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(6);
    for n in [1, 31, 1000, 100_003] {
        let what = format!("sigmoid {} n={n}", T::NAME);
        let (x, xh) = upload::<T>(gpu, &uniform(&mut rng, n, -12.0, 12.0));
        let mut y = zeros::<T>(gpu, n);
        sigmoid_forward(gpu, &CTX, &x, &mut y).expect("forward");
        let yh = download(gpu, &y);
        let y_ref: Vec<f64> = xh.iter().map(|&v| sigmoid(v)).collect();
        assert_close(&yh, &y_ref, &tol::<T>(), &format!("{what} forward"));

        let (dy, dyh) = upload::<T>(gpu, &uniform(&mut rng, n, -1.0, 1.0));
        let mut dx = zeros::<T>(gpu, n);
        sigmoid_backward(gpu, &CTX, &y, &dy, &mut dx).expect("backward");
        let dx_ref: Vec<f64> = (0..n).map(|i| dyh[i] * yh[i] * (1.0 - yh[i])).collect();
        assert_close(
            &download(gpu, &dx),
            &dx_ref,
            &tol::<T>(),
            &format!("{what} backward"),
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn sigmoid_matches_reference() {
    let Some(gpu) = gpu() else { return };
    check_sigmoid::<f32>(gpu);
    check_sigmoid::<f64>(gpu);
    check_sigmoid::<f16>(gpu);
    check_sigmoid::<bf16>(gpu);
}

fn check_sigmoid_cross_entropy<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(7);
    for n in [1, 33, 1000, 100_003] {
        for ignore in [None, Some(-1)] {
            let what = format!("sigmoid cross entropy {} n={n} ignore {ignore:?}", T::NAME);
            let (x, xh) = upload::<T>(gpu, &uniform(&mut rng, n, -20.0, 20.0));
            let targets: Vec<f64> = (0..n)
                .map(|i| match i % 4 {
                    0 => 0.0,
                    1 => 1.0,
                    2 => -1.0,
                    _ => 0.25,
                })
                .collect();
            let (t, th) = upload::<T>(gpu, &targets);
            let loss =
                sigmoid_cross_entropy_loss_forward(gpu, &CTX, &x, &t, ignore).expect("forward");

            let scale = 1.0 / n as f64;
            let mut sum = 0.0;
            let mut valid = 0;
            let mut grad = vec![0.0; n];
            for i in 0..n {
                if is_ignored(th[i], ignore) {
                    continue;
                }
                let v = xh[i];
                let positive = if v >= 0.0 { 1.0 } else { 0.0 };
                sum -= v * (th[i] - positive) - (1.0 + (v - 2.0 * v * positive).exp()).ln();
                grad[i] = scale * (sigmoid(v) - th[i]);
                valid += 1;
            }
            assert_eq!(loss.valid, valid, "{what}: valid count");
            assert_sum_close(loss.sum, sum, 5.0 * tol::<T>().sum, &what);

            let mut dx = zeros::<T>(gpu, n);
            sigmoid_cross_entropy_loss_backward(gpu, &CTX, &x, &t, &mut dx, ignore, scale)
                .expect("backward");
            let mut tl = tol::<T>();
            tl.abs *= scale;
            assert_close(&download(gpu, &dx), &grad, &tl, &format!("{what} backward"));
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn sigmoid_cross_entropy_matches_reference() {
    let Some(gpu) = gpu() else { return };
    check_sigmoid_cross_entropy::<f32>(gpu);
    check_sigmoid_cross_entropy::<f64>(gpu);
    check_sigmoid_cross_entropy::<f16>(gpu);
    check_sigmoid_cross_entropy::<bf16>(gpu);
}

// ---------------------------------------------------------------------------
// EuclideanLoss

fn check_euclidean<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(8);
    for n in [1, 31, 1000, 1_000_003] {
        let what = format!("euclidean {} n={n}", T::NAME);
        let (a, ah) = upload::<T>(gpu, &uniform(&mut rng, n, -2.0, 2.0));
        let (b, bh) = upload::<T>(gpu, &uniform(&mut rng, n, -2.0, 2.0));
        let loss = euclidean_loss_forward(gpu, &CTX, &a, &b).expect("forward");
        let sum: f64 = ah.iter().zip(&bh).map(|(x, y)| (x - y) * (x - y)).sum();
        assert_eq!(loss.valid, n as u64, "{what}: count");
        assert_sum_close(loss.sum, sum, 5.0 * tol::<T>().sum, &what);

        let alpha = 0.125;
        let mut da = zeros::<T>(gpu, n);
        let mut db = zeros::<T>(gpu, n);
        euclidean_loss_backward(gpu, &CTX, &a, &b, Some(&mut da), Some(&mut db), alpha)
            .expect("backward");
        let grad: Vec<f64> = ah.iter().zip(&bh).map(|(x, y)| alpha * (x - y)).collect();
        let neg: Vec<f64> = grad.iter().map(|g| -g).collect();
        assert_close(
            &download(gpu, &da),
            &grad,
            &tol::<T>(),
            &format!("{what} da"),
        );
        assert_close(
            &download(gpu, &db),
            &neg,
            &tol::<T>(),
            &format!("{what} db"),
        );

        // Only db requested: da stays untouched.
        let mut db_only = zeros::<T>(gpu, n);
        euclidean_loss_backward(gpu, &CTX, &a, &b, None, Some(&mut db_only), alpha)
            .expect("backward db only");
        assert_close(
            &download(gpu, &db_only),
            &neg,
            &tol::<T>(),
            &format!("{what} db only"),
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn euclidean_loss_matches_reference() {
    let Some(gpu) = gpu() else { return };
    check_euclidean::<f32>(gpu);
    check_euclidean::<f64>(gpu);
    check_euclidean::<f16>(gpu);
    check_euclidean::<bf16>(gpu);
}

// ---------------------------------------------------------------------------
// HingeLoss

fn check_hinge<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(9);
    for &(num, dim) in &[(45, 1), (45, 31), (45, 33), (13, 1000), (3, 50_000)] {
        for norm in [HingeNorm::L1, HingeNorm::L2] {
            let what = format!("hinge {} {num}x{dim} {norm:?}", T::NAME);
            let (x, xh) = upload::<T>(gpu, &uniform(&mut rng, num * dim, -2.0, 2.0));
            let (labels, lh) = upload::<T>(gpu, &labels_for::<T>(&mut rng, num, dim));
            let loss = hinge_loss_forward(gpu, &CTX, &x, &labels, num, dim, norm).expect("forward");

            let scale = 1.0 / num as f64;
            let mut sum = 0.0;
            let mut grad = vec![0.0; num * dim];
            for i in 0..num {
                let l = lh[i] as usize;
                for j in 0..dim {
                    let sign = if j == l { -1.0 } else { 1.0 };
                    let t = (1.0 + sign * xh[i * dim + j]).max(0.0);
                    grad[i * dim + j] = match norm {
                        HingeNorm::L1 => {
                            sum += t;
                            if t > 0.0 {
                                scale * sign
                            } else {
                                0.0
                            }
                        }
                        HingeNorm::L2 => {
                            sum += t * t;
                            2.0 * scale * sign * t
                        }
                    };
                }
            }
            assert_eq!(loss.valid, num as u64, "{what}: count");
            assert_sum_close(loss.sum, sum, 5.0 * tol::<T>().sum, &what);

            let mut dx = zeros::<T>(gpu, num * dim);
            hinge_loss_backward(gpu, &CTX, &x, &labels, &mut dx, num, dim, norm, scale)
                .expect("backward");
            let mut t = tol::<T>();
            t.abs *= scale;
            assert_close(&download(gpu, &dx), &grad, &t, &format!("{what} backward"));
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn hinge_loss_matches_reference() {
    let Some(gpu) = gpu() else { return };
    check_hinge::<f32>(gpu);
    check_hinge::<f64>(gpu);
    check_hinge::<f16>(gpu);
    check_hinge::<bf16>(gpu);
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn hinge_loss_bad_label_is_error() {
    let Some(gpu) = gpu() else { return };
    let (x, _) = upload::<f64>(gpu, &[0.5; 12]);
    let (labels, _) = upload::<f64>(gpu, &[0.0, 3.0, 1.0]);
    let loss =
        hinge_loss_forward(gpu, &CTX, &x, &labels, 3, 4, HingeNorm::L1).expect("labels are valid");
    assert_eq!(loss.valid, 3);
    let (labels, _) = upload::<f64>(gpu, &[0.0, 4.0, -1.0]);
    let error = hinge_loss_forward(gpu, &CTX, &x, &labels, 3, 4, HingeNorm::L1)
        .expect_err("label 4 is out of range");
    assert!(matches!(
        error,
        Error::Label {
            position: 1,
            max_valid: 3,
            ..
        }
    ));
}

// ---------------------------------------------------------------------------
// MultinomialLogisticLoss

fn check_multinomial<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(10);
    for &(num, dim) in &[(45, 1), (45, 31), (13, 1000), (3, 50_000)] {
        let what = format!("multinomial {} {num}x{dim}", T::NAME);
        let mut values = uniform(&mut rng, num * dim, 0.0, 1.0);
        values[0] = 0.0; // clamped at 1e-20
        let (prob, ph) = upload::<T>(gpu, &values);
        let (labels, lh) = upload::<T>(gpu, &labels_for::<T>(&mut rng, num, dim));
        let loss = multinomial_logistic_loss_forward(gpu, &CTX, &prob, &labels, num, dim)
            .expect("forward");

        let scale = 1.0 / num as f64;
        let mut sum = 0.0;
        let mut grad = vec![0.0; num * dim];
        for i in 0..num {
            let l = lh[i] as usize;
            let p = ph[i * dim + l].max(LOG_THRESHOLD);
            sum -= p.ln();
            grad[i * dim + l] = -scale / p;
        }
        assert_eq!(loss.valid, num as u64, "{what}: count");
        assert_sum_close(loss.sum, sum, 5.0 * tol::<T>().sum, &what);

        let mut dx = zeros::<T>(gpu, num * dim);
        multinomial_logistic_loss_backward(gpu, &CTX, &prob, &labels, &mut dx, num, dim, scale)
            .expect("backward");
        let dxh = download(gpu, &dx);
        for (i, (&a, &e)) in dxh.iter().zip(&grad).enumerate() {
            // -scale / 1e-20 overflows f16 to -inf.
            if T::NAME == "f16" && e.abs() > 6e4 {
                continue;
            }
            let bound = tol::<T>().abs + tol::<T>().rel * e.abs();
            assert!(
                (a - e).abs() <= bound,
                "{what}: dx[{i}] is {a}, expected {e}"
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn multinomial_loss_matches_reference() {
    let Some(gpu) = gpu() else { return };
    check_multinomial::<f32>(gpu);
    check_multinomial::<f64>(gpu);
    check_multinomial::<f16>(gpu);
    check_multinomial::<bf16>(gpu);
}

// ---------------------------------------------------------------------------
// ContrastiveLoss

fn check_contrastive<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(11);
    for &(num, channels) in &[(45, 1), (45, 31), (45, 33), (13, 1000), (3, 50_000)] {
        for legacy in [false, true] {
            let what = format!("contrastive {} {num}x{channels} legacy {legacy}", T::NAME);
            let options = ContrastiveOptions {
                // Both margins sit near the typical distance (d^2 is about 2/3
                // for this spread), so both branches of the dissimilar case run.
                margin: if legacy { 0.67 } else { 0.82 },
                legacy,
            };
            let spread = 1.0 / (channels as f64).sqrt();
            let (a, ah) = upload::<T>(gpu, &uniform(&mut rng, num * channels, -spread, spread));
            let (b, bh) = upload::<T>(gpu, &uniform(&mut rng, num * channels, -spread, spread));
            let flags: Vec<f64> = (0..num).map(|i| [0.0, 1.0, 0.5, -1.0][i % 4]).collect();
            let (sim, simh) = upload::<T>(gpu, &flags);
            let mut dist_sq = alloc_pair_distances::<T>(gpu, &CTX, num).expect("alloc");
            let loss = contrastive_loss_forward(
                gpu,
                &CTX,
                &a,
                &b,
                &sim,
                &mut dist_sq,
                num,
                channels,
                options,
            )
            .expect("forward");

            let alpha = 1.0 / num as f64;
            let mut sum = 0.0;
            let mut grad = vec![0.0; num * channels];
            for i in 0..num {
                let row = i * channels..(i + 1) * channels;
                let d2: f64 = row.clone().map(|k| (ah[k] - bh[k]).powi(2)).sum();
                let similar = simh[i].trunc() != 0.0;
                let f = if similar {
                    sum += d2;
                    alpha
                } else if legacy {
                    sum += (options.margin - d2).max(0.0);
                    if options.margin - d2 > 0.0 {
                        -alpha
                    } else {
                        0.0
                    }
                } else {
                    let dist = d2.sqrt();
                    let mdist = options.margin - dist;
                    sum += mdist.max(0.0).powi(2);
                    if mdist > 0.0 {
                        -alpha * mdist / (dist + 1e-4)
                    } else {
                        0.0
                    }
                };
                for k in row {
                    grad[k] = f * (ah[k] - bh[k]);
                }
            }
            assert_eq!(loss.valid, num as u64, "{what}: count");
            assert_sum_close(loss.sum, sum, 10.0 * tol::<T>().sum, &what);

            let mut da = zeros::<T>(gpu, num * channels);
            let mut db = zeros::<T>(gpu, num * channels);
            contrastive_loss_backward(
                gpu,
                &CTX,
                &a,
                &b,
                &sim,
                &dist_sq,
                Some(&mut da),
                Some(&mut db),
                num,
                channels,
                options,
                alpha,
            )
            .expect("backward");
            let neg: Vec<f64> = grad.iter().map(|g| -g).collect();
            let mut t = tol::<T>();
            t.abs *= alpha;
            assert_close(&download(gpu, &da), &grad, &t, &format!("{what} da"));
            assert_close(&download(gpu, &db), &neg, &t, &format!("{what} db"));
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn contrastive_loss_matches_reference() {
    let Some(gpu) = gpu() else { return };
    check_contrastive::<f32>(gpu);
    check_contrastive::<f64>(gpu);
    check_contrastive::<f16>(gpu);
    check_contrastive::<bf16>(gpu);
}

// ---------------------------------------------------------------------------
// Accuracy

/// Returns (correct, valid, per-class (correct, total)) the way Caffe's
/// partial_sort on (score, class) pairs with std::greater ranks them.
fn accuracy_ref(
    x: &[f64],
    labels: &[f64],
    d: RowDims,
    top_k: usize,
    ignore: Option<i32>,
) -> (u64, u64, Vec<(u64, u64)>) {
    let mut correct = 0;
    let mut valid = 0;
    let mut per_class = vec![(0, 0); d.channels];
    for o in 0..d.outer {
        for s in 0..d.inner {
            let label = labels[o * d.inner + s];
            if is_ignored(label, ignore) {
                continue;
            }
            let l = label as usize;
            let mut pairs: Vec<(f64, usize)> =
                (0..d.channels).map(|c| (x[index(d, o, c, s)], c)).collect();
            pairs.sort_by(|p, q| q.partial_cmp(p).expect("no NaN scores"));
            let hit = pairs.iter().take(top_k).any(|&(_, c)| c == l);
            valid += 1;
            per_class[l].1 += 1;
            if hit {
                correct += 1;
                per_class[l].0 += 1;
            }
        }
    }
    (correct, valid, per_class)
}

fn check_accuracy<T: GpuElement>(gpu: &Gpu) {
    let mut rng = StdRng::seed_from_u64(12);
    for &(outer, channels, inner) in ROW_SHAPES {
        for top_k in [1, 3] {
            let d = RowDims::new(outer, channels, inner);
            let what = format!(
                "accuracy {} {outer}x{channels}x{inner} top {top_k}",
                T::NAME
            );
            // Scores on a coarse grid, so that ties are common.
            let scores: Vec<f64> = (0..d.elements())
                .map(|_| f64::from(rng.random_range(-4..4i32)) / 2.0)
                .collect();
            let (x, xh) = upload::<T>(gpu, &scores);
            let (labels, lh) = upload::<T>(gpu, &labels_for::<T>(&mut rng, d.rows(), channels));
            let options = AccuracyOptions {
                top_k,
                ignore_label: Some(2),
                per_class: true,
            };
            let counts = accuracy_forward(gpu, &CTX, &x, &labels, d, options).expect("forward");
            let (correct, valid, per_class) = accuracy_ref(&xh, &lh, d, top_k, Some(2));
            assert_eq!(counts.correct, correct, "{what}: correct");
            assert_eq!(counts.valid, valid, "{what}: valid");
            let got: Vec<(u64, u64)> = counts
                .per_class
                .expect("per-class counts requested")
                .iter()
                .map(|c| (c.correct, c.total))
                .collect();
            assert_eq!(got, per_class, "{what}: per class");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn accuracy_matches_partial_sort() {
    let Some(gpu) = gpu() else { return };
    check_accuracy::<f32>(gpu);
    check_accuracy::<f64>(gpu);
    check_accuracy::<f16>(gpu);
    check_accuracy::<bf16>(gpu);
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn accuracy_ties_favour_higher_class() {
    let Some(gpu) = gpu() else { return };
    // All four scores tie: partial_sort with std::greater puts class 3 first.
    let d = RowDims::new(2, 4, 1);
    let (x, _) = upload::<f32>(gpu, &[1.0; 8]);
    let (labels, _) = upload::<f32>(gpu, &[3.0, 0.0]);
    let options = AccuracyOptions {
        top_k: 1,
        ignore_label: None,
        per_class: false,
    };
    let counts = accuracy_forward(gpu, &CTX, &x, &labels, d, options).expect("forward");
    assert_eq!(counts.correct, 1);
    assert_eq!(counts.valid, 2);
    assert!(counts.per_class.is_none());

    let zero_k = AccuracyOptions {
        top_k: 0,
        ..options
    };
    let error = accuracy_forward(gpu, &CTX, &x, &labels, d, zero_k).expect_err("top_k 0");
    assert!(matches!(error, Error::LayerConfig { .. }));
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn length_mismatch_is_error() {
    let Some(gpu) = gpu() else { return };
    let d = RowDims::new(4, 5, 1);
    let (x, _) = upload::<f32>(gpu, &[0.0; 20]);
    let mut y = zeros::<f32>(gpu, 19);
    let error = softmax_forward(gpu, &CTX, &x, &mut y, d).expect_err("top is too short");
    assert_eq!(
        error.to_string(),
        "layer 'loss' (Test): top[0] has 19 elements on the device, expected 20"
    );
}

/// Runs every kernel once on tiny shapes that reach all three row mappings,
/// for `scripts/gpu-check.sh` to run under compute-sanitizer (memcheck,
/// racecheck) in seconds.
#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn sanitizer_small_cases() {
    let Some(gpu) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(13);
    // Thread, warp and block per row (C above WARP_ROW_MAX_CHANNELS), and a
    // spatial shape.
    for &(outer, channels, inner) in &[(3, 4, 1), (3, 31, 1), (2, 1100, 1), (2, 3, 33)] {
        let d = RowDims::new(outer, channels, inner);
        let n = d.elements();
        let (x, _) = upload::<f32>(gpu, &uniform(&mut rng, n, -3.0, 3.0));
        let mut label_values = labels_for::<f32>(&mut rng, d.rows(), channels);
        label_values[0] = -1.0;
        let (labels, _) = upload::<f32>(gpu, &label_values);
        let (h, _) = upload::<f32>(gpu, &uniform(&mut rng, channels * channels, 0.0, 1.0));
        let mut y = zeros::<f32>(gpu, n);
        let mut dx = zeros::<f32>(gpu, n);
        let mut stats = alloc_row_stats::<f32>(gpu, &CTX, d).expect("stats");

        softmax_forward(gpu, &CTX, &x, &mut y, d).expect("softmax forward");
        softmax_backward(gpu, &CTX, &y, &x, &mut dx, d).expect("softmax backward");
        softmax_loss_forward(
            gpu,
            &CTX,
            &x,
            &labels,
            Some(&mut y),
            &mut stats,
            d,
            Some(-1),
        )
        .expect("softmax loss forward");
        softmax_loss_backward(gpu, &CTX, &x, &labels, &stats, &mut dx, d, Some(-1), 1.0)
            .expect("softmax loss backward");
        infogain_loss_forward(gpu, &CTX, &x, &labels, &h, None, &mut stats, d, Some(-1))
            .expect("infogain forward");
        infogain_loss_backward(
            gpu,
            &CTX,
            &x,
            &labels,
            &h,
            &stats,
            &mut dx,
            d,
            Some(-1),
            1.0,
        )
        .expect("infogain backward");
        let options = AccuracyOptions {
            top_k: 2,
            ignore_label: Some(-1),
            per_class: true,
        };
        accuracy_forward(gpu, &CTX, &x, &labels, d, options).expect("accuracy");

        // The matrix layers read one label per sample of num x dim.
        let num = outer;
        let dim = channels * inner;
        let (xm, _) = upload::<f32>(gpu, &uniform(&mut rng, num * dim, 0.0, 1.0));
        let (lm, _) = upload::<f32>(gpu, &labels_for::<f32>(&mut rng, num, dim));
        let mut dxm = zeros::<f32>(gpu, num * dim);
        for norm in [HingeNorm::L1, HingeNorm::L2] {
            hinge_loss_forward(gpu, &CTX, &xm, &lm, num, dim, norm).expect("hinge forward");
            hinge_loss_backward(gpu, &CTX, &xm, &lm, &mut dxm, num, dim, norm, 1.0)
                .expect("hinge backward");
        }
        multinomial_logistic_loss_forward(gpu, &CTX, &xm, &lm, num, dim)
            .expect("multinomial forward");
        multinomial_logistic_loss_backward(gpu, &CTX, &xm, &lm, &mut dxm, num, dim, 1.0)
            .expect("multinomial backward");

        let (bm, _) = upload::<f32>(gpu, &uniform(&mut rng, num * dim, 0.0, 1.0));
        let (sim, _) = upload::<f32>(gpu, &(0..num).map(|i| (i % 2) as f64).collect::<Vec<_>>());
        let mut dist_sq = alloc_pair_distances::<f32>(gpu, &CTX, num).expect("alloc");
        let mut dbm = zeros::<f32>(gpu, num * dim);
        for legacy in [false, true] {
            let options = ContrastiveOptions {
                margin: 1.0,
                legacy,
            };
            contrastive_loss_forward(gpu, &CTX, &xm, &bm, &sim, &mut dist_sq, num, dim, options)
                .expect("contrastive forward");
            contrastive_loss_backward(
                gpu,
                &CTX,
                &xm,
                &bm,
                &sim,
                &dist_sq,
                Some(&mut dxm),
                Some(&mut dbm),
                num,
                dim,
                options,
                0.5,
            )
            .expect("contrastive backward");
        }

        sigmoid_forward(gpu, &CTX, &x, &mut y).expect("sigmoid forward");
        sigmoid_backward(gpu, &CTX, &y, &x, &mut dx).expect("sigmoid backward");
        sigmoid_cross_entropy_loss_forward(gpu, &CTX, &x, &y, Some(-1)).expect("sce forward");
        sigmoid_cross_entropy_loss_backward(gpu, &CTX, &x, &y, &mut dx, Some(-1), 1.0)
            .expect("sce backward");
        euclidean_loss_forward(gpu, &CTX, &x, &y).expect("euclidean forward");
        euclidean_loss_backward(gpu, &CTX, &x, &y, Some(&mut dx), None, 1.0)
            .expect("euclidean backward");
    }
    gpu.stream().synchronize().expect("synchronize");
}
