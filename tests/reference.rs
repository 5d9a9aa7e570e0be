//! Every case computed by real Caffe 1.0 (tests/data/caffe-reference), run in
//! f32 and f64 and compared with Caffe's tops and gradients.

use std::path::Path;

use caffe_loss::caffe::Phase;
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::npy::{read_npy, read_npy_as};
use caffe_loss::Element;

mod common;
use common::{npy_files, reference_cases, stem};

/// Caffe's float32 arithmetic in a different order agrees to about 1e-5
/// relative; beyond 1e-4 relative plus 1e-6 absolute is a real difference.
const RELATIVE: f64 = 1e-4;
const ABSOLUTE: f64 = 1e-6;

/// Runs one case and returns a list of mismatches (empty when it passes).
fn run_case<T: Element>(case: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let model = case.join("net.prototxt");
    let param = caffe_loss::prototxt::read_net(&model, Phase::Train).expect("case parses");
    let context = BuildContext {
        model_dir: Some(case.to_path_buf()),
    };
    let mut net = Net::<T>::new(&param, "net.prototxt", &context).expect("net builds");
    for input in npy_files(&case.join("inputs")) {
        let (shape, values) = read_npy_as::<T>(&input).expect("input reads");
        net.set_input(&stem(&input), &shape, values)
            .expect("input fits");
    }
    net.forward().expect("forward runs");
    net.backward().expect("backward runs");

    let compare = |problems: &mut Vec<String>,
                   what: &str,
                   expected_path: &Path,
                   got_shape: &[usize],
                   got: Vec<f64>| {
        let expected = read_npy(expected_path).expect("expected reads");
        if expected.values.len() != got.len() {
            problems.push(format!(
                "{what}: {} values expected (shape {:?}), got {} (shape {:?})",
                expected.values.len(),
                expected.shape,
                got.len(),
                got_shape
            ));
            return;
        }
        for (i, (e, g)) in expected.values.iter().zip(&got).enumerate() {
            let close = (e - g).abs() <= RELATIVE * e.abs() + ABSOLUTE;
            if !close {
                problems.push(format!("{what}[{i}]: expected {e}, got {g}"));
                break;
            }
        }
    };
    for expected in npy_files(&case.join("expected/data")) {
        let name = stem(&expected);
        let Some(blob) = net.blob(&name) else {
            problems.push(format!("top {name} was not produced"));
            continue;
        };
        let got = blob.data().iter().map(|v| v.to_f64()).collect();
        compare(
            &mut problems,
            &format!("data {name}"),
            &expected,
            blob.shape(),
            got,
        );
    }
    let expected_diffs: Vec<String> = npy_files(&case.join("expected/diff"))
        .iter()
        .map(|p| stem(p))
        .collect();
    let gradients = net.input_gradients();
    let got_diffs: Vec<String> = gradients.iter().map(|(n, _)| n.to_string()).collect();
    let mut sorted = got_diffs.clone();
    sorted.sort();
    if sorted != expected_diffs {
        problems.push(format!(
            "inputs with a gradient: expected {expected_diffs:?}, got {sorted:?}"
        ));
    }
    for (name, blob) in gradients {
        let path = case.join("expected/diff").join(format!("{name}.npy"));
        if path.exists() {
            let got = blob.diff().iter().map(|v| v.to_f64()).collect();
            compare(
                &mut problems,
                &format!("diff {name}"),
                &path,
                blob.shape(),
                got,
            );
        }
    }
    problems
}

fn run_all<T: Element>() {
    let cases = reference_cases();
    assert!(
        cases.len() >= 27,
        "expected the 27 reference cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        for problem in run_case::<T>(case) {
            failures.push(format!("{}: {problem}", stem(case)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches in {}:\n{}",
        failures.len(),
        T::NAME,
        failures.join("\n")
    );
}

#[test]
fn reference_cases_f32() {
    run_all::<f32>();
}

#[test]
fn reference_cases_f64() {
    run_all::<f64>();
}
