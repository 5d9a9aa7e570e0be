//! Every Caffe 1.0 reference case run through the GPU net runner, in f32 and
//! f64, against Caffe's numbers, and the bad-label path on the device.
//!
//! The tests are ignored by default because they need a GPU;
//! `scripts/gpu-check.sh` runs them with `--include-ignored`. Run that way
//! without a usable GPU, each test prints `skipped: <reason>` and returns.

use caffe_loss::caffe::Phase;
use caffe_loss::gpu::GpuElement;
use caffe_loss::gpu_net::run_on_gpu;
use caffe_loss::net::load_model;
use caffe_loss::npy::{read_npy, read_npy_as};
use caffe_loss::ErrorKind;

mod common;
use common::{npy_files, reference_cases, stem};

/// Same tolerance as the CPU reference test: float32 in another order
/// agrees with Caffe to about 1e-5 relative.
const RELATIVE: f64 = 1e-4;
const ABSOLUTE: f64 = 1e-6;

fn gpu_ready() -> bool {
    match caffe_loss::gpu::probe() {
        Ok(()) => true,
        Err(reason) => {
            println!("skipped: {reason}");
            false
        }
    }
}

fn close(expected: &[f64], got: &[f64]) -> Option<String> {
    if expected.len() != got.len() {
        return Some(format!(
            "{} values expected, got {}",
            expected.len(),
            got.len()
        ));
    }
    expected
        .iter()
        .zip(got)
        .enumerate()
        .find(|(_, (e, g))| (*e - *g).abs() > RELATIVE * e.abs() + ABSOLUTE)
        .map(|(i, (e, g))| format!("index {i}: expected {e}, got {g}"))
}

fn run_all<T: GpuElement>() {
    let mut failures = Vec::new();
    for case in reference_cases() {
        let mut loaded =
            load_model::<T>(&case.join("net.prototxt"), Phase::Train).expect("case builds");
        for input in npy_files(&case.join("inputs")) {
            let (shape, values) = read_npy_as::<T>(&input).expect("input reads");
            loaded
                .net
                .set_input(&stem(&input), &shape, values)
                .expect("input fits");
        }
        let net = match run_on_gpu(loaded) {
            Ok(net) => net,
            Err(e) => {
                failures.push(format!("{}: {e}", stem(&case)));
                continue;
            }
        };
        for expected in npy_files(&case.join("expected/data")) {
            let want = read_npy(&expected).expect("expected reads").values;
            let got: Vec<f64> = net
                .blob(&stem(&expected))
                .map(|b| b.data().iter().map(|v| v.to_f64()).collect())
                .unwrap_or_default();
            if let Some(why) = close(&want, &got) {
                failures.push(format!("{} data {}: {why}", stem(&case), stem(&expected)));
            }
        }
        let gradients = net.input_gradients();
        for expected in npy_files(&case.join("expected/diff")) {
            let want = read_npy(&expected).expect("expected reads").values;
            let got: Vec<f64> = gradients
                .iter()
                .find(|(n, _)| *n == stem(&expected))
                .map(|(_, b)| b.diff().iter().map(|v| v.to_f64()).collect())
                .unwrap_or_default();
            if let Some(why) = close(&want, &got) {
                failures.push(format!("{} diff {}: {why}", stem(&case), stem(&expected)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn gpu_reference_cases_f32() {
    if gpu_ready() {
        run_all::<f32>();
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn gpu_reference_cases_f64() {
    if gpu_ready() {
        run_all::<f64>();
    }
}

#[test]
#[ignore = "needs a CUDA GPU; scripts/gpu-check.sh runs it"]
fn gpu_label_out_of_range_is_an_error() {
    if !gpu_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("net.prototxt");
    std::fs::write(
        &model,
        r#"layer { name: "in" type: "Input" top: "x" top: "y"
             input_param { shape { dim: 1 dim: 5 } shape { dim: 1 } } }
           layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" }"#,
    )
    .expect("model written");
    let mut loaded = load_model::<f32>(&model, Phase::Train).expect("net builds");
    loaded
        .net
        .set_input("x", &[1, 5], vec![0.0; 5])
        .expect("x fits");
    loaded.net.set_input("y", &[1], vec![7.0]).expect("y fits");
    let Err(error) = run_on_gpu(loaded) else {
        panic!("label 7 with 5 classes was accepted");
    };
    assert_eq!(error.kind(), ErrorKind::LabelValue);
    let text = error.to_string();
    assert!(text.contains("position 0"), "{text}");
    assert!(text.contains('7'), "{text}");
}
