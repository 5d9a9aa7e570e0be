//! `check` on the real nets of tests/data/realworld: the nets Caffe 1.0
//! parses give one passing row per loss layer; the others fail at the line
//! and column Caffe's parser reports.

use std::path::{Path, PathBuf};

use caffe_loss::check::{check_model, CheckOptions, LayerOutcome};
use caffe_loss::ErrorKind;

fn net(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/realworld")
        .join(format!("{name}.prototxt"))
}

/// Checks `name` and returns the types of its checked layers, asserting that
/// every checked layer passed.
fn checked_types(name: &str) -> Vec<String> {
    let options = CheckOptions::default();
    let report = check_model(&net(name), &options).expect("net parses and checks");
    for row in &report.rows {
        if let LayerOutcome::Failed(why) = &row.outcome {
            panic!("{name}: layer {} failed: {why}", row.name);
        }
        if let LayerOutcome::Checked {
            passed, max_error, ..
        } = &row.outcome
        {
            assert!(
                passed,
                "{name}: layer {} failed, max error {max_error:?}",
                row.name
            );
        }
    }
    assert!(report.all_passed());
    report
        .rows
        .iter()
        .filter(|r| matches!(r.outcome, LayerOutcome::Checked { .. }))
        .map(|r| r.layer_type.clone())
        .collect()
}

fn count(types: &[String], wanted: &str) -> usize {
    types.iter().filter(|t| *t == wanted).count()
}

#[test]
fn lenet_softmax_loss_and_accuracy() {
    for name in ["01_mnist_lenet_train_test", "04_mnist_lenet_train_test_v1"] {
        let types = checked_types(name);
        assert_eq!(count(&types, "SoftmaxWithLoss"), 1, "{name}");
    }
}

#[test]
fn siamese_contrastive_loss() {
    for name in [
        "02_mnist_siamese_train_test",
        "06_mnist_siamese_train_test_v1",
    ] {
        assert_eq!(count(&checked_types(name), "ContrastiveLoss"), 1, "{name}");
    }
}

#[test]
fn autoencoder_losses_and_sigmoids() {
    for name in ["03_mnist_autoencoder", "05_mnist_autoencoder_v1"] {
        let types = checked_types(name);
        assert_eq!(count(&types, "SigmoidCrossEntropyLoss"), 1, "{name}");
        assert_eq!(count(&types, "EuclideanLoss"), 1, "{name}");
        assert_eq!(count(&types, "Sigmoid"), 7, "{name}");
    }
}

#[test]
fn googlenet_three_softmax_losses() {
    assert_eq!(
        count(
            &checked_types("07_bvlc_googlenet_train_val"),
            "SoftmaxWithLoss"
        ),
        3
    );
}

#[test]
fn segmentation_and_edge_nets() {
    assert_eq!(
        count(
            &checked_types("08_cifar10_full_sigmoid_train_test_bn"),
            "SoftmaxWithLoss"
        ),
        1
    );
    assert_eq!(
        count(&checked_types("09_fcn_voc_fcn32s_train"), "SoftmaxWithLoss"),
        1
    );
    assert_eq!(
        count(
            &checked_types("10_fcn_siftflow_fcn32s_trainval"),
            "SoftmaxWithLoss"
        ),
        2
    );
    assert_eq!(
        count(
            &checked_types("12_hed_train_val"),
            "SigmoidCrossEntropyLoss"
        ),
        6
    );
}

#[test]
fn v0_nets_upgrade_and_check() {
    let types = checked_types("16_lenet_v0_softmax_multinomial");
    assert_eq!(count(&types, "MultinomialLogisticLoss"), 1);
    assert_eq!(count(&types, "Softmax"), 1);
    assert_eq!(
        count(
            &checked_types("17_linear_regression_v0_euclidean"),
            "EuclideanLoss"
        ),
        1
    );
}

#[test]
fn fork_nets_fail_where_caffe_fails() {
    let cases = [
        ("11_segnet_basic_train", 7, 3, "dense_image_data_param"),
        (
            "13_faster_rcnn_zf_end2end_train",
            308,
            3,
            "smooth_l1_loss_param",
        ),
        ("14_mobilenet_ssd_voc_train", 16, 5, "resize_param"),
        ("15_deeplab_v1_train_template", 20, 9, "IMAGE_SEG_DATA"),
        ("18_deepid2_face_train_test", 84, 2, "insanity_param"),
        (
            "19_lsi_frcnn_zf_infogain_train",
            275,
            3,
            "smooth_l1_loss_param",
        ),
    ];
    for (name, line, column, unknown) in cases {
        let error = check_model(&net(name), &CheckOptions::default()).expect_err(name);
        assert_eq!(error.kind(), ErrorKind::ModelText, "{name}");
        let text = error.to_string();
        assert!(
            text.contains(&format!(":{line}:{column}: ")),
            "{name}: {text}"
        );
        assert!(text.contains(unknown), "{name}: {text}");
    }
}

#[test]
fn check_cli_exit_status() {
    let binary = env!("CARGO_BIN_EXE_caffe-loss");
    let ok = std::process::Command::new(binary)
        .arg("check")
        .arg(net("01_mnist_lenet_train_test"))
        .output()
        .expect("binary runs");
    assert_eq!(ok.status.code(), Some(0));
    let table = String::from_utf8_lossy(&ok.stdout);
    assert!(table.contains("SoftmaxWithLoss"), "{table}");
    assert!(table.contains("not supported"), "{table}");

    let bad = std::process::Command::new(binary)
        .arg("check")
        .arg(net("13_faster_rcnn_zf_end2end_train"))
        .output()
        .expect("binary runs");
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(":308:3:"), "{stderr}");
}
