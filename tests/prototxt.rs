//! Tests of prototxt parsing, upgrading and phase filtering on real Caffe nets
//! in tests/data/realworld, and of `.binaryproto` reading and writing.

use std::path::{Path, PathBuf};

use caffe_loss::binaryproto::{read_blob_proto, write_blob_proto, write_blob_proto_f64};
use caffe_loss::caffe::{self, Phase};
use caffe_loss::prototxt::{filter_net, parse_layer_text, parse_net_text, read_net, upgrade_net};
use caffe_loss::{Error, ErrorKind};
use prost::Message;

fn realworld(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/realworld")
        .join(format!("{name}.prototxt"))
}

fn read_text(name: &str) -> String {
    let path = realworld(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn parse_realworld(name: &str) -> caffe::NetParameter {
    parse_net_text(&read_text(name), name).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn upgrade_realworld(name: &str) -> caffe::NetParameter {
    upgrade_net(parse_realworld(name), name).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn layer_types(net: &caffe::NetParameter) -> Vec<&str> {
    net.layer.iter().map(|layer| layer.r#type()).collect()
}

fn layer_names(net: &caffe::NetParameter) -> Vec<&str> {
    net.layer.iter().map(|layer| layer.name()).collect()
}

fn find_layer<'a>(net: &'a caffe::NetParameter, name: &str) -> &'a caffe::LayerParameter {
    net.layer
        .iter()
        .find(|layer| layer.name() == name)
        .unwrap_or_else(|| panic!("no layer named '{name}'"))
}

fn state(phase: Phase, stages: &[&str]) -> caffe::NetState {
    caffe::NetState {
        phase: Some(phase as i32),
        level: Some(0),
        stage: stages.iter().map(|stage| stage.to_string()).collect(),
    }
}

fn expect_model_error<T: std::fmt::Debug>(result: caffe_loss::Result<T>) -> String {
    match result {
        Err(Error::Model { message, .. }) => message,
        other => panic!("expected Error::Model, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Parsing the real nets

/// The nets that BVLC Caffe 1.0's parser accepts, with the number of
/// top-level `layer` (V2) or `layers` (V1, V0) entries in each file.
const ACCEPTED: &[(&str, usize)] = &[
    ("01_mnist_lenet_train_test", 11),
    ("02_mnist_siamese_train_test", 20),
    ("03_mnist_autoencoder", 21),
    ("04_mnist_lenet_train_test_v1", 11),
    ("05_mnist_autoencoder_v1", 21),
    ("06_mnist_siamese_train_test_v1", 20),
    ("07_bvlc_googlenet_train_val", 166),
    ("08_cifar10_full_sigmoid_train_test_bn", 17),
    ("09_fcn_voc_fcn32s_train", 42),
    ("10_fcn_siftflow_fcn32s_trainval", 46),
    ("12_hed_train_val", 54),
    ("16_lenet_v0_softmax_multinomial", 10),
    ("17_linear_regression_v0_euclidean", 3),
];

/// The nets that BVLC Caffe 1.0's parser rejects, with the line, column and
/// unknown name of the first error.
const REJECTED: &[(&str, usize, usize, &str)] = &[
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

#[test]
fn realworld_accepted_nets_parse() {
    for &(name, entries) in ACCEPTED {
        let net = parse_realworld(name);
        assert_eq!(
            net.layer.len() + net.layers.len(),
            entries,
            "{name}: layer entries"
        );
        assert!(
            net.layer.is_empty() || net.layers.is_empty(),
            "{name}: mixes layer and layers"
        );
    }
}

#[test]
fn realworld_accepted_nets_read_in_both_phases() {
    for &(name, _) in ACCEPTED {
        for phase in [Phase::Train, Phase::Test] {
            let net = read_net(&realworld(name), phase)
                .unwrap_or_else(|error| panic!("{name} {phase:?}: {error}"));
            assert!(net.layers.is_empty(), "{name}: V1 layers left");
            assert!(!net.layer.is_empty(), "{name} {phase:?}: no layers");
            assert!(
                net.layer.iter().all(|layer| !layer.r#type().is_empty()),
                "{name}: a layer has no type"
            );
        }
    }
}

#[test]
fn realworld_rejected_nets_report_position() {
    for &(name, line, column, unknown) in REJECTED {
        let result = parse_net_text(&read_text(name), name);
        let Err(error) = result else {
            panic!("{name}: parsed, expected a ModelText error");
        };
        assert_eq!(error.kind(), ErrorKind::ModelText, "{name}: {error}");
        let Error::ModelText {
            file,
            line: got_line,
            column: got_column,
            message,
        } = error
        else {
            unreachable!();
        };
        assert_eq!(file, name);
        assert_eq!(got_line, line, "{name}: line ({message})");
        assert_eq!(got_column, column, "{name}: column ({message})");
        assert!(
            message.contains(unknown),
            "{name}: message '{message}' does not name {unknown}"
        );
    }
}

#[test]
fn realworld_rejected_net_fails_in_read_net() {
    let path = realworld("11_segnet_basic_train");
    let error = read_net(&path, Phase::Train).unwrap_err();
    let text = error.to_string();
    assert_eq!(error.kind(), ErrorKind::ModelText);
    assert!(
        text.contains("11_segnet_basic_train.prototxt:7:3:"),
        "{text}"
    );
    assert!(text.contains("dense_image_data_param"), "{text}");
}

#[test]
fn unknown_enum_value_message_names_enum() {
    let error = parse_net_text(&read_text("15_deeplab_v1_train_template"), "15").unwrap_err();
    let text = error.to_string();
    assert!(text.contains("IMAGE_SEG_DATA"), "{text}");
    assert!(text.contains("caffe.V1LayerParameter.LayerType"), "{text}");
}

#[test]
fn unknown_field_message_names_message_type() {
    let text = "layer {\n  name: \"loss\"\n  type: \"SoftmaxWithLoss\"\n  loss_param {\n    class_weighting: 2\n  }\n}\n";
    let error = parse_net_text(text, "weighted.prototxt").unwrap_err();
    let Error::ModelText {
        line,
        column,
        message,
        ..
    } = error
    else {
        panic!("expected ModelText, got {error:?}");
    };
    assert_eq!((line, column), (5, 5));
    assert!(message.contains("class_weighting"), "{message}");
    assert!(message.contains("caffe.LossParameter"), "{message}");
}

#[test]
fn tab_counts_as_one_column() {
    let text = "layer {\n\tname: \"a\"\n\t\tunknown_thing: 1\n}\n";
    let error = parse_net_text(text, "tabs.prototxt").unwrap_err();
    let Error::ModelText { line, column, .. } = error else {
        panic!("expected ModelText, got {error:?}");
    };
    assert_eq!(line, 3);
    assert_eq!(column, 3);
}

#[test]
fn multibyte_characters_count_as_one_column() {
    let text = "name: \"réseau\" bogus: 1\n";
    let error = parse_net_text(text, "utf8.prototxt").unwrap_err();
    let Error::ModelText { line, column, .. } = error else {
        panic!("expected ModelText, got {error:?}");
    };
    assert_eq!(line, 1);
    assert_eq!(column, 16);
}

#[test]
fn syntax_error_reports_position() {
    let text = "name: \"net\"\nlayer {\n  name: \"a\"\n  type: \"ReLU\"\n";
    let error = parse_net_text(text, "eof.prototxt").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ModelText);
    let text = "layer {\n  name: = \"a\"\n}\n";
    let Error::ModelText { line, column, .. } = parse_net_text(text, "token.prototxt").unwrap_err()
    else {
        panic!("expected ModelText");
    };
    assert_eq!((line, column), (2, 9));
}

#[test]
fn layer_text_parses() {
    let layer = parse_layer_text(
        "name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"ip2\" bottom: \"label\" \
         loss_param { ignore_label: 255 normalize: false }",
        "layer",
    )
    .unwrap();
    assert_eq!(layer.name(), "loss");
    assert_eq!(layer.r#type(), "SoftmaxWithLoss");
    assert_eq!(layer.bottom, ["ip2", "label"]);
    let loss = layer.loss_param.unwrap();
    assert_eq!(loss.ignore_label, Some(255));
    assert_eq!(loss.normalize, Some(false));
}

#[test]
fn layer_text_rejects_unknown_field() {
    let error = parse_layer_text("name: \"x\"\nbogus_param { }", "layer").unwrap_err();
    let Error::ModelText {
        line,
        column,
        message,
        ..
    } = error
    else {
        panic!("expected ModelText, got {error:?}");
    };
    assert_eq!((line, column), (2, 1));
    assert!(message.contains("bogus_param"), "{message}");
    assert!(message.contains("caffe.LayerParameter"), "{message}");
}

// ---------------------------------------------------------------------------
// Upgrading V1 nets

#[test]
fn v1_lenet_upgrades_types_and_params() {
    let net = upgrade_realworld("04_mnist_lenet_train_test_v1");
    assert!(net.layers.is_empty());
    assert_eq!(
        layer_types(&net),
        [
            "Data",
            "Data",
            "Convolution",
            "Pooling",
            "Convolution",
            "Pooling",
            "InnerProduct",
            "ReLU",
            "InnerProduct",
            "Accuracy",
            "SoftmaxWithLoss",
        ]
    );
    assert_eq!(net.name(), "LeNet");

    let conv1 = find_layer(&net, "conv1");
    assert_eq!(conv1.bottom, ["data"]);
    assert_eq!(conv1.top, ["conv1"]);
    let lr: Vec<Option<f32>> = conv1.param.iter().map(|spec| spec.lr_mult).collect();
    assert_eq!(lr, [Some(1.0), Some(2.0)]);
    let convolution = conv1.convolution_param.as_ref().unwrap();
    assert_eq!(convolution.num_output, Some(20));
    assert_eq!(convolution.kernel_size, [5]);

    let data = &net.layer[0];
    assert_eq!(data.include.len(), 1);
    assert_eq!(data.include[0].phase, Some(Phase::Train as i32));
    assert_eq!(data.data_param.as_ref().unwrap().batch_size, Some(64));
    assert_eq!(
        data.transform_param.as_ref().unwrap().scale,
        Some(0.00390625)
    );

    let loss = find_layer(&net, "loss");
    assert_eq!(loss.bottom, ["ip2", "label"]);
    let accuracy = find_layer(&net, "accuracy");
    assert_eq!(accuracy.include[0].phase, Some(Phase::Test as i32));
}

#[test]
fn v1_autoencoder_upgrades_loss_weights_and_decay() {
    let net = upgrade_realworld("05_mnist_autoencoder_v1");
    let types = layer_types(&net);
    assert_eq!(types.len(), 21);
    assert_eq!(types.iter().filter(|t| **t == "Sigmoid").count(), 7);
    assert_eq!(types.iter().filter(|t| **t == "InnerProduct").count(), 8);
    assert_eq!(types.iter().filter(|t| **t == "Flatten").count(), 1);
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "SigmoidCrossEntropyLoss")
            .count(),
        1
    );
    assert_eq!(types.iter().filter(|t| **t == "EuclideanLoss").count(), 1);

    let cross_entropy = net
        .layer
        .iter()
        .find(|layer| layer.r#type() == "SigmoidCrossEntropyLoss")
        .unwrap();
    assert_eq!(cross_entropy.loss_weight, [1.0]);
    let euclidean = net
        .layer
        .iter()
        .find(|layer| layer.r#type() == "EuclideanLoss")
        .unwrap();
    assert_eq!(euclidean.loss_weight, [0.0]);

    let encode1 = net
        .layer
        .iter()
        .find(|layer| layer.r#type() == "InnerProduct")
        .unwrap();
    let decay: Vec<Option<f32>> = encode1.param.iter().map(|spec| spec.decay_mult).collect();
    assert_eq!(decay, [Some(1.0), Some(0.0)]);
    let lr: Vec<Option<f32>> = encode1.param.iter().map(|spec| spec.lr_mult).collect();
    assert_eq!(lr, [Some(1.0), Some(1.0)]);

    let stage_data = &net.layer[1];
    assert_eq!(stage_data.include[0].phase, Some(Phase::Test as i32));
    assert_eq!(stage_data.include[0].stage, ["test-on-train"]);
}

#[test]
fn v1_siamese_upgrades_shared_params_and_data_scale() {
    let net = upgrade_realworld("06_mnist_siamese_train_test_v1");
    assert_eq!(net.layer.len(), 20);
    let loss = find_layer(&net, "loss");
    assert_eq!(loss.r#type(), "ContrastiveLoss");
    assert_eq!(loss.bottom, ["feat", "feat_p", "sim"]);
    assert_eq!(
        loss.contrastive_loss_param.as_ref().unwrap().margin,
        Some(1.0)
    );

    let slice = find_layer(&net, "slice_pair");
    assert_eq!(slice.r#type(), "Slice");
    assert_eq!(slice.top, ["data", "data_p"]);

    let conv1 = find_layer(&net, "conv1");
    let names: Vec<&str> = conv1.param.iter().map(|spec| spec.name()).collect();
    assert_eq!(names, ["conv1_w", "conv1_b"]);
    let lr: Vec<Option<f32>> = conv1.param.iter().map(|spec| spec.lr_mult).collect();
    assert_eq!(lr, [Some(1.0), Some(2.0)]);
    let conv1_p = find_layer(&net, "conv1_p");
    let names_p: Vec<&str> = conv1_p.param.iter().map(|spec| spec.name()).collect();
    assert_eq!(names_p, ["conv1_w", "conv1_b"]);

    // The V1 data layers keep `scale` in data_param, and the upgrade moves it
    // to transform_param.
    let data = &net.layer[0];
    assert_eq!(data.data_param.as_ref().unwrap().scale, None);
    assert_eq!(
        data.transform_param.as_ref().unwrap().scale,
        Some(0.00390625)
    );
}

#[test]
fn v1_every_layer_type_maps_to_v2_name() {
    use caffe::v1_layer_parameter::LayerType;
    let cases = [
        (LayerType::Absval, "AbsVal"),
        (LayerType::Accuracy, "Accuracy"),
        (LayerType::Argmax, "ArgMax"),
        (LayerType::Bnll, "BNLL"),
        (LayerType::Concat, "Concat"),
        (LayerType::ContrastiveLoss, "ContrastiveLoss"),
        (LayerType::Convolution, "Convolution"),
        (LayerType::Deconvolution, "Deconvolution"),
        (LayerType::Data, "Data"),
        (LayerType::Dropout, "Dropout"),
        (LayerType::DummyData, "DummyData"),
        (LayerType::EuclideanLoss, "EuclideanLoss"),
        (LayerType::Eltwise, "Eltwise"),
        (LayerType::Exp, "Exp"),
        (LayerType::Flatten, "Flatten"),
        (LayerType::Hdf5Data, "HDF5Data"),
        (LayerType::Hdf5Output, "HDF5Output"),
        (LayerType::HingeLoss, "HingeLoss"),
        (LayerType::Im2col, "Im2col"),
        (LayerType::ImageData, "ImageData"),
        (LayerType::InfogainLoss, "InfogainLoss"),
        (LayerType::InnerProduct, "InnerProduct"),
        (LayerType::Lrn, "LRN"),
        (LayerType::MemoryData, "MemoryData"),
        (
            LayerType::MultinomialLogisticLoss,
            "MultinomialLogisticLoss",
        ),
        (LayerType::Mvn, "MVN"),
        (LayerType::Pooling, "Pooling"),
        (LayerType::Power, "Power"),
        (LayerType::Relu, "ReLU"),
        (LayerType::Sigmoid, "Sigmoid"),
        (
            LayerType::SigmoidCrossEntropyLoss,
            "SigmoidCrossEntropyLoss",
        ),
        (LayerType::Silence, "Silence"),
        (LayerType::Softmax, "Softmax"),
        (LayerType::SoftmaxLoss, "SoftmaxWithLoss"),
        (LayerType::Split, "Split"),
        (LayerType::Slice, "Slice"),
        (LayerType::Tanh, "TanH"),
        (LayerType::WindowData, "WindowData"),
        (LayerType::Threshold, "Threshold"),
    ];
    // Builds one V1 layer per type from its enum name, as a prototxt has it.
    let text: String = cases
        .iter()
        .enumerate()
        .map(|(index, (layer_type, _))| {
            format!(
                "layers {{ name: \"l{index}\" type: {} }}\n",
                layer_type.as_str_name()
            )
        })
        .collect();
    let net = upgrade_net(parse_net_text(&text, "all_types").unwrap(), "all_types").unwrap();
    assert_eq!(net.layer.len(), cases.len());
    for (layer, (layer_type, expected)) in net.layer.iter().zip(cases) {
        assert_eq!(layer.r#type(), expected, "{}", layer_type.as_str_name());
    }
}

#[test]
fn v1_share_mode_and_param_fields_upgrade() {
    let text = r#"
        layers {
          name: "ip" type: INNER_PRODUCT bottom: "x" top: "y"
          param: "w" param: "b"
          blob_share_mode: PERMISSIVE
          blobs_lr: 1 blobs_lr: 2 blobs_lr: 3
          weight_decay: 0.5
          loss_weight: 0.25
          exclude { phase: TEST }
          inner_product_param { num_output: 7 }
        }
    "#;
    let net = upgrade_net(parse_net_text(text, "share").unwrap(), "share").unwrap();
    let layer = &net.layer[0];

    // Three param entries, because blobs_lr is the longest of the lists.
    assert_eq!(layer.param.len(), 3);
    assert_eq!(layer.param[0].name(), "w");
    assert_eq!(layer.param[1].name(), "b");
    assert_eq!(layer.param[2].name, None);
    assert_eq!(
        layer.param[0].share_mode,
        Some(caffe::param_spec::DimCheckMode::Permissive as i32)
    );
    assert_eq!(layer.param[1].share_mode, None);
    assert_eq!(layer.param[2].lr_mult, Some(3.0));
    assert_eq!(layer.param[0].decay_mult, Some(0.5));
    assert_eq!(layer.param[1].decay_mult, None);

    assert_eq!(layer.loss_weight, [0.25]);
    assert_eq!(layer.exclude[0].phase, Some(Phase::Test as i32));
    assert_eq!(
        layer.inner_product_param.as_ref().unwrap().num_output,
        Some(7)
    );
}

#[test]
fn mixed_layer_and_layers_is_rejected() {
    let text = "layer { name: \"a\" type: \"ReLU\" }\nlayers { name: \"b\" type: RELU }\n";
    let net = parse_net_text(text, "mixed.prototxt").unwrap();
    let message = expect_model_error(upgrade_net(net, "mixed.prototxt"));
    assert!(message.contains("'layers'"), "{message}");
    assert!(message.contains("'layer'"), "{message}");
    assert!(message.contains("V1"), "{message}");
}

// ---------------------------------------------------------------------------
// Upgrading V0 nets

#[test]
fn v0_lenet_upgrades_to_v2() {
    let net = upgrade_realworld("16_lenet_v0_softmax_multinomial");
    assert!(net.layers.is_empty());
    assert_eq!(net.name(), "LeNet");
    assert_eq!(
        layer_types(&net),
        [
            "Data",
            "Convolution",
            "Pooling",
            "Convolution",
            "Pooling",
            "InnerProduct",
            "ReLU",
            "InnerProduct",
            "Softmax",
            "MultinomialLogisticLoss",
        ]
    );
    assert_eq!(
        layer_names(&net),
        ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "prob", "loss"]
    );

    let data = find_layer(&net, "mnist");
    assert_eq!(data.top, ["data", "label"]);
    let data_param = data.data_param.as_ref().unwrap();
    assert_eq!(data_param.source(), "caffe/test/data/mnist-train-leveldb");
    assert_eq!(data_param.batch_size, Some(128));
    let transform = data.transform_param.as_ref().unwrap();
    assert_eq!(transform.scale, Some(0.00390625));
    assert_eq!(transform.crop_size, Some(26));

    let conv1 = find_layer(&net, "conv1");
    let convolution = conv1.convolution_param.as_ref().unwrap();
    assert_eq!(convolution.num_output, Some(20));
    assert_eq!(convolution.kernel_size, [5]);
    assert_eq!(convolution.stride, [1]);
    assert_eq!(
        convolution.weight_filler.as_ref().unwrap().r#type(),
        "xavier"
    );
    assert_eq!(
        convolution.bias_filler.as_ref().unwrap().r#type(),
        "constant"
    );

    let pool1 = find_layer(&net, "pool1");
    let pooling = pool1.pooling_param.as_ref().unwrap();
    assert_eq!(
        pooling.pool,
        Some(caffe::pooling_parameter::PoolMethod::Max as i32)
    );
    assert_eq!(pooling.kernel_size, Some(2));
    assert_eq!(pooling.stride, Some(2));

    assert_eq!(
        find_layer(&net, "ip1")
            .inner_product_param
            .as_ref()
            .unwrap()
            .num_output,
        Some(500)
    );
    let loss = find_layer(&net, "loss");
    assert_eq!(loss.bottom, ["prob", "label"]);
    assert!(loss.top.is_empty());
}

#[test]
fn v0_linear_regression_upgrades_to_v2() {
    let net = upgrade_realworld("17_linear_regression_v0_euclidean");
    assert_eq!(layer_types(&net), ["Data", "InnerProduct", "EuclideanLoss"]);
    assert_eq!(layer_names(&net), ["datalayer", "ip", "loss"]);
    let data = find_layer(&net, "datalayer");
    assert_eq!(data.data_param.as_ref().unwrap().batch_size, Some(32));
    let ip = find_layer(&net, "ip");
    assert_eq!(ip.inner_product_param.as_ref().unwrap().num_output, Some(1));
    assert_eq!(find_layer(&net, "loss").bottom, ["ip", "label"]);
}

#[test]
fn v0_loss_types_upgrade() {
    let cases = [
        ("softmax_loss", "SoftmaxWithLoss"),
        ("multinomial_logistic_loss", "MultinomialLogisticLoss"),
        ("euclidean_loss", "EuclideanLoss"),
        ("infogain_loss", "InfogainLoss"),
        ("accuracy", "Accuracy"),
        ("softmax", "Softmax"),
        ("sigmoid", "Sigmoid"),
        ("innerproduct", "InnerProduct"),
        ("relu", "ReLU"),
        ("images", "ImageData"),
        ("hdf5_data", "HDF5Data"),
        ("window_data", "WindowData"),
        ("lrn", "LRN"),
        ("dropout", "Dropout"),
        ("concat", "Concat"),
        ("flatten", "Flatten"),
        ("split", "Split"),
        ("tanh", "TanH"),
        ("bnll", "BNLL"),
        ("im2col", "Im2col"),
        ("hdf5_output", "HDF5Output"),
    ];
    let mut text =
        String::from("input: \"x\"\ninput_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4\n");
    for (v0_type, _) in cases {
        text.push_str(&format!(
            "layers {{ layer {{ name: \"{v0_type}\" type: \"{v0_type}\" }} bottom: \"x\" }}\n"
        ));
    }
    let net = upgrade_net(parse_net_text(&text, "v0").unwrap(), "v0").unwrap();
    // The net input becomes an Input layer in front.
    assert_eq!(net.layer.len(), cases.len() + 1);
    assert_eq!(net.layer[0].r#type(), "Input");
    for (layer, (v0_type, expected)) in net.layer[1..].iter().zip(cases) {
        assert_eq!(layer.name(), v0_type);
        assert_eq!(layer.r#type(), expected, "{v0_type}");
    }
}

#[test]
fn v0_infogain_source_and_lrn_params_upgrade() {
    let text = r#"
        input: "x"
        layers { layer { name: "norm" type: "lrn" local_size: 3 alpha: 0.5 beta: 0.25 k: 2 } bottom: "x" top: "n" }
        layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.3 } bottom: "n" top: "n" }
        layers { layer { name: "loss" type: "infogain_loss" source: "H.binaryproto" } bottom: "n" bottom: "x" }
    "#;
    let net = upgrade_net(parse_net_text(text, "v0").unwrap(), "v0").unwrap();
    // `input` without dims is only dropped, as for an old binary model.
    assert!(net.input.is_empty());
    assert_eq!(layer_types(&net), ["LRN", "Dropout", "InfogainLoss"]);
    let lrn = net.layer[0].lrn_param.as_ref().unwrap();
    assert_eq!(lrn.local_size, Some(3));
    assert_eq!(lrn.alpha, Some(0.5));
    assert_eq!(lrn.beta, Some(0.25));
    assert_eq!(lrn.k, Some(2.0));
    assert_eq!(
        net.layer[1].dropout_param.as_ref().unwrap().dropout_ratio,
        Some(0.3)
    );
    assert_eq!(
        net.layer[2].infogain_loss_param.as_ref().unwrap().source(),
        "H.binaryproto"
    );
}

#[test]
fn v0_image_data_params_upgrade() {
    let text = r#"
        layers {
          layer {
            name: "img" type: "images" source: "list.txt" batchsize: 4
            new_height: 32 new_width: 48 shuffle_images: true rand_skip: 3
            mirror: true meanfile: "mean.binaryproto"
            num_output: 5
          }
          top: "data" top: "label"
        }
    "#;
    let net = upgrade_net(parse_net_text(text, "v0").unwrap(), "v0").unwrap();
    let layer = &net.layer[0];
    assert_eq!(layer.r#type(), "ImageData");

    let image_data = layer.image_data_param.as_ref().unwrap();
    assert_eq!(image_data.source(), "list.txt");
    assert_eq!(image_data.batch_size, Some(4));
    assert_eq!(image_data.new_height, Some(32));
    assert_eq!(image_data.new_width, Some(48));
    assert_eq!(image_data.shuffle, Some(true));
    assert_eq!(image_data.rand_skip, Some(3));

    let transform = layer.transform_param.as_ref().unwrap();
    assert_eq!(transform.mirror, Some(true));
    assert_eq!(transform.mean_file(), "mean.binaryproto");

    // num_output does not apply to an image data layer, so it is dropped.
    assert!(layer.inner_product_param.is_none());
    assert!(layer.convolution_param.is_none());
}

#[test]
fn v0_negative_new_height_is_rejected() {
    let text = "layers { layer { name: \"img\" type: \"images\" new_height: -1 } }\n";
    let net = parse_net_text(text, "v0").unwrap();
    let message = expect_model_error(upgrade_net(net, "v0"));
    assert!(message.contains("new_height -1"), "{message}");
}

#[test]
fn v0_padding_layer_folds_into_conv() {
    let text = r#"
        input: "data"
        layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
        layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 } bottom: "pad1" top: "conv1" }
        layers { layer { name: "pad2" type: "padding" pad: 1 } bottom: "conv1" top: "pad2" }
        layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 } bottom: "pad2" top: "pool1" }
    "#;
    let net = upgrade_net(parse_net_text(text, "pad").unwrap(), "pad").unwrap();
    assert_eq!(layer_names(&net), ["conv1", "pool1"]);
    let conv1 = &net.layer[0];
    assert_eq!(conv1.bottom, ["data"]);
    assert_eq!(conv1.convolution_param.as_ref().unwrap().pad, [2]);
    let pool1 = &net.layer[1];
    assert_eq!(pool1.bottom, ["conv1"]);
    let pooling = pool1.pooling_param.as_ref().unwrap();
    assert_eq!(pooling.pad, Some(1));
    assert_eq!(
        pooling.pool,
        Some(caffe::pooling_parameter::PoolMethod::Ave as i32)
    );
}

#[test]
fn v0_padding_before_non_conv_is_rejected() {
    let text = r#"
        input: "data"
        layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
        layers { layer { name: "relu1" type: "relu" } bottom: "pad1" top: "relu1" }
    "#;
    let net = parse_net_text(text, "pad").unwrap();
    let message = expect_model_error(upgrade_net(net, "pad"));
    assert!(message.contains("pad1"), "{message}");
    assert!(message.contains("relu1"), "{message}");
}

#[test]
fn v0_unknown_type_is_rejected() {
    let text = "layers { layer { name: \"odd\" type: \"warp_magic\" } }\n";
    let net = parse_net_text(text, "v0").unwrap();
    let message = expect_model_error(upgrade_net(net, "v0"));
    assert!(message.contains("warp_magic"), "{message}");
    assert!(message.contains("V0"), "{message}");
}

#[test]
fn v0_unknown_bottom_is_rejected() {
    let text = "layers { layer { name: \"r\" type: \"relu\" } bottom: \"ghost\" top: \"r\" }\n";
    let net = parse_net_text(text, "v0").unwrap();
    let message = expect_model_error(upgrade_net(net, "v0"));
    assert!(message.contains("ghost"), "{message}");
}

// ---------------------------------------------------------------------------
// Deprecated net inputs and BatchNorm parameters

#[test]
fn input_dim_becomes_input_layer() {
    let text = r#"
        name: "deploy"
        input: "data"
        input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227
        input: "label"
        input_dim: 10 input_dim: 1 input_dim: 1 input_dim: 1
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" }
    "#;
    let net = upgrade_net(parse_net_text(text, "deploy").unwrap(), "deploy").unwrap();
    assert!(net.input.is_empty());
    assert!(net.input_dim.is_empty());
    assert!(net.input_shape.is_empty());
    assert_eq!(layer_names(&net), ["input", "loss"]);
    let input = &net.layer[0];
    assert_eq!(input.r#type(), "Input");
    assert_eq!(input.top, ["data", "label"]);
    let shapes: Vec<Vec<i64>> = input
        .input_param
        .as_ref()
        .unwrap()
        .shape
        .iter()
        .map(|shape| shape.dim.clone())
        .collect();
    assert_eq!(shapes, [vec![10, 3, 227, 227], vec![10, 1, 1, 1]]);
}

#[test]
fn input_shape_becomes_input_layer() {
    let text = r#"
        input: "scores"
        input_shape { dim: 4 dim: 5 }
        input: "targets"
        input_shape { dim: 4 }
        layer { name: "loss" type: "EuclideanLoss" bottom: "scores" bottom: "targets" }
    "#;
    let net = upgrade_net(parse_net_text(text, "shape").unwrap(), "shape").unwrap();
    assert_eq!(layer_types(&net), ["Input", "EuclideanLoss"]);
    let input = &net.layer[0];
    assert_eq!(input.name(), "input");
    assert_eq!(input.top, ["scores", "targets"]);
    let shapes: Vec<Vec<i64>> = input
        .input_param
        .as_ref()
        .unwrap()
        .shape
        .iter()
        .map(|shape| shape.dim.clone())
        .collect();
    assert_eq!(shapes, [vec![4, 5], vec![4]]);
    assert!(net.input_shape.is_empty());
}

#[test]
fn input_dim_count_mismatch_is_rejected() {
    let text = "input: \"data\"\ninput_dim: 1\ninput_dim: 2\ninput_dim: 3\n";
    let message = expect_model_error(upgrade_net(parse_net_text(text, "in").unwrap(), "in"));
    assert!(message.contains("expected 4"), "{message}");
    assert!(message.contains("got 3"), "{message}");
}

#[test]
fn input_shape_count_mismatch_is_rejected() {
    let text = "input: \"a\"\ninput: \"b\"\ninput_shape { dim: 1 }\n";
    let message = expect_model_error(upgrade_net(parse_net_text(text, "in").unwrap(), "in"));
    assert!(message.contains("expected 2"), "{message}");
    assert!(message.contains("got 1"), "{message}");
}

#[test]
fn input_shape_and_dim_together_are_rejected() {
    let text = "input: \"a\"\ninput_shape { dim: 1 }\ninput_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1\n";
    let message = expect_model_error(upgrade_net(parse_net_text(text, "in").unwrap(), "in"));
    assert!(message.contains("input_shape"), "{message}");
    assert!(message.contains("input_dim"), "{message}");
}

#[test]
fn batch_norm_params_get_zero_decay() {
    let net = upgrade_realworld("08_cifar10_full_sigmoid_train_test_bn");
    let batch_norms: Vec<&caffe::LayerParameter> = net
        .layer
        .iter()
        .filter(|layer| layer.r#type() == "BatchNorm")
        .collect();
    assert_eq!(batch_norms.len(), 3);
    for layer in batch_norms {
        assert_eq!(layer.param.len(), 3);
        for spec in &layer.param {
            assert_eq!(spec.lr_mult, Some(0.0), "{}", layer.name());
            assert_eq!(spec.decay_mult, Some(0.0), "{}", layer.name());
        }
    }
}

// ---------------------------------------------------------------------------
// Filtering by phase, level and stage

#[test]
fn lenet_phase_filter_counts() {
    let net = upgrade_realworld("01_mnist_lenet_train_test");
    let train = filter_net(&net, &state(Phase::Train, &[]), "lenet").unwrap();
    let test = filter_net(&net, &state(Phase::Test, &[]), "lenet").unwrap();
    // 11 layers: one data layer per phase, and Accuracy only in TEST.
    assert_eq!(train.layer.len(), 9);
    assert_eq!(test.layer.len(), 10);
    assert!(!layer_types(&train).contains(&"Accuracy"));
    assert!(layer_types(&test).contains(&"Accuracy"));
    assert_eq!(
        train.layer[0].data_param.as_ref().unwrap().source(),
        "examples/mnist/mnist_train_lmdb"
    );
    assert_eq!(
        test.layer[0].data_param.as_ref().unwrap().source(),
        "examples/mnist/mnist_test_lmdb"
    );
    assert_eq!(
        train.state.as_ref().unwrap().phase,
        Some(Phase::Train as i32)
    );
}

#[test]
fn read_net_filters_lenet_by_phase() {
    let path = realworld("01_mnist_lenet_train_test");
    assert_eq!(read_net(&path, Phase::Train).unwrap().layer.len(), 9);
    assert_eq!(read_net(&path, Phase::Test).unwrap().layer.len(), 10);
    let v1_path = realworld("04_mnist_lenet_train_test_v1");
    assert_eq!(read_net(&v1_path, Phase::Train).unwrap().layer.len(), 9);
    assert_eq!(read_net(&v1_path, Phase::Test).unwrap().layer.len(), 10);
}

#[test]
fn autoencoder_stage_filter_counts() {
    // 21 layers, three of them data layers: TRAIN, TEST + "test-on-train" and
    // TEST + "test-on-test".
    for name in ["03_mnist_autoencoder", "05_mnist_autoencoder_v1"] {
        let net = upgrade_realworld(name);
        let count = |phase, stages: &[&str]| {
            filter_net(&net, &state(phase, stages), name)
                .unwrap()
                .layer
                .len()
        };
        assert_eq!(count(Phase::Train, &[]), 19, "{name} TRAIN");
        assert_eq!(count(Phase::Test, &[]), 18, "{name} TEST");
        assert_eq!(
            count(Phase::Test, &["test-on-train"]),
            19,
            "{name} test-on-train"
        );
        assert_eq!(
            count(Phase::Test, &["test-on-test"]),
            19,
            "{name} test-on-test"
        );
        let both = filter_net(
            &net,
            &state(Phase::Test, &["test-on-train", "test-on-test"]),
            name,
        )
        .unwrap();
        assert_eq!(both.layer.len(), 20, "{name} both stages");
    }
}

#[test]
fn filter_rules_for_level_and_not_stage() {
    let text = r#"
        state { stage: "deploy" level: 5 }
        layer { name: "always" type: "ReLU" }
        layer { name: "min3" type: "ReLU" include { min_level: 3 } }
        layer { name: "max1" type: "ReLU" include { max_level: 1 } }
        layer { name: "not_deploy" type: "ReLU" include { not_stage: "deploy" } }
        layer { name: "deploy_only" type: "ReLU" include { stage: "deploy" } }
        layer { name: "train_or_extra" type: "ReLU" include { phase: TRAIN } include { stage: "extra" } }
        layer { name: "except_test" type: "ReLU" exclude { phase: TEST } }
    "#;
    let net = upgrade_net(parse_net_text(text, "rules").unwrap(), "rules").unwrap();

    // The caller sets only the phase, so the net's own level 5 and stage
    // "deploy" apply.
    let own = caffe::NetState {
        phase: Some(Phase::Test as i32),
        level: None,
        stage: Vec::new(),
    };
    let filtered = filter_net(&net, &own, "rules").unwrap();
    assert_eq!(layer_names(&filtered), ["always", "min3", "deploy_only"]);
    let merged = filtered.state.unwrap();
    assert_eq!(merged.level, Some(5));
    assert_eq!(merged.stage, ["deploy"]);

    // A level from the caller replaces the net's, and its stages are added.
    let filtered = filter_net(&net, &state(Phase::Train, &["extra"]), "rules").unwrap();
    assert_eq!(
        layer_names(&filtered),
        [
            "always",
            "max1",
            "deploy_only",
            "train_or_extra",
            "except_test"
        ]
    );
}

#[test]
fn filter_rejects_include_with_exclude() {
    let text = "layer { name: \"both\" type: \"ReLU\" include { phase: TRAIN } exclude { phase: TEST } }\n";
    let net = parse_net_text(text, "both").unwrap();
    let message = expect_model_error(filter_net(&net, &state(Phase::Train, &[]), "both"));
    assert!(message.contains("both"), "{message}");
    assert!(message.contains("include"), "{message}");
    assert!(message.contains("exclude"), "{message}");
}

// ---------------------------------------------------------------------------
// read_net file errors

#[test]
fn read_net_missing_file_is_file_error() {
    let path = Path::new("/nonexistent/net.prototxt");
    let error = read_net(path, Phase::Train).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::File);
    assert!(error.to_string().contains("/nonexistent/net.prototxt"));
}

#[test]
fn read_net_directory_is_file_error() {
    let directory = tempfile::tempdir().unwrap();
    let error = read_net(directory.path(), Phase::Train).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::File);
}

#[test]
fn read_net_non_utf8_is_file_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("latin1.prototxt");
    std::fs::write(&path, b"name: \"r\xe9seau\"\n").unwrap();
    let error = read_net(&path, Phase::Train).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::File);
    let text = error.to_string();
    assert!(text.contains("UTF-8"), "{text}");
    assert!(text.contains("offset 8"), "{text}");
}

// ---------------------------------------------------------------------------
// binaryproto

fn expect_file_error<T: std::fmt::Debug>(result: caffe_loss::Result<T>, path: &Path) -> String {
    match result {
        Err(Error::File {
            path: error_path,
            message,
        }) => {
            assert_eq!(error_path, path);
            message
        }
        other => panic!("expected Error::File, got {other:?}"),
    }
}

#[test]
fn blob_round_trip_with_shape_and_data() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("blob.binaryproto");
    let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    write_blob_proto(&path, &[2, 3, 4], &values).unwrap();
    let blob = read_blob_proto(&path).unwrap();
    assert_eq!(blob.shape, [2, 3, 4]);
    let expected: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
    assert_eq!(blob.values, expected);

    let proto = caffe::BlobProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    assert_eq!(proto.shape.unwrap().dim, [2, 3, 4]);
    assert_eq!(proto.data.len(), 24);
    assert!(proto.double_data.is_empty());
    assert_eq!(proto.num, None);

    // No temporary file is left beside the blob.
    let entries = std::fs::read_dir(directory.path()).unwrap().count();
    assert_eq!(entries, 1);
}

#[test]
fn blob_round_trip_with_double_data() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("infogain.binaryproto");
    let values = [1.0, 0.1, 1e-300, std::f64::consts::PI];
    write_blob_proto_f64(&path, &[1, 1, 2, 2], &values).unwrap();
    let blob = read_blob_proto(&path).unwrap();
    assert_eq!(blob.shape, [1, 1, 2, 2]);
    assert_eq!(blob.values, values);
    let proto = caffe::BlobProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    assert!(proto.data.is_empty());
    assert_eq!(proto.double_data.len(), 4);
}

#[test]
fn blob_scalar_round_trip() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("scalar.binaryproto");
    write_blob_proto(&path, &[], &[7.5]).unwrap();
    let blob = read_blob_proto(&path).unwrap();
    assert!(blob.shape.is_empty());
    assert_eq!(blob.values, [7.5]);
}

#[test]
fn blob_overwrite_replaces_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("blob.binaryproto");
    write_blob_proto(&path, &[3], &[1.0, 2.0, 3.0]).unwrap();
    write_blob_proto(&path, &[1], &[9.0]).unwrap();
    let blob = read_blob_proto(&path).unwrap();
    assert_eq!(blob.shape, [1]);
    assert_eq!(blob.values, [9.0]);
}

#[test]
fn blob_legacy_dims_give_4d_shape() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("mean.binaryproto");
    let proto = caffe::BlobProto {
        num: Some(1),
        channels: Some(3),
        height: Some(2),
        width: Some(2),
        data: (0..12).map(|i| i as f32).collect(),
        ..Default::default()
    };
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let blob = read_blob_proto(&path).unwrap();
    assert_eq!(blob.shape, [1, 3, 2, 2]);
    assert_eq!(blob.values.len(), 12);
    assert_eq!(blob.values[11], 11.0);

    // One legacy field alone still makes a 4-d shape, with 0 for the others.
    let proto = caffe::BlobProto {
        num: Some(5),
        ..Default::default()
    };
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let blob = read_blob_proto(&path).unwrap();
    assert_eq!(blob.shape, [5, 0, 0, 0]);
    assert!(blob.values.is_empty());
}

#[test]
fn blob_legacy_dims_with_double_data() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("legacy_double.binaryproto");
    let proto = caffe::BlobProto {
        num: Some(1),
        channels: Some(1),
        height: Some(1),
        width: Some(3),
        data: vec![9.0; 3],
        double_data: vec![0.25, 0.5, 0.75],
        ..Default::default()
    };
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let blob = read_blob_proto(&path).unwrap();
    assert_eq!(blob.shape, [1, 1, 1, 3]);
    assert_eq!(blob.values, [0.25, 0.5, 0.75]);
}

#[test]
fn blob_missing_file_is_file_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("absent.binaryproto");
    let message = expect_file_error(read_blob_proto(&path), &path);
    assert!(message.contains("failed to read"), "{message}");
}

#[test]
fn blob_empty_file_is_file_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("empty.binaryproto");
    std::fs::write(&path, b"").unwrap();
    let message = expect_file_error(read_blob_proto(&path), &path);
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn blob_truncated_file_is_file_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("truncated.binaryproto");
    write_blob_proto(&path, &[4, 4], &[1.0; 16]).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let result = read_blob_proto(&path);
        assert_eq!(
            result.as_ref().map_err(Error::kind).unwrap_err(),
            ErrorKind::File,
            "cut at {cut}: {result:?}"
        );
    }
}

#[test]
fn blob_corrupt_file_is_file_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("corrupt.binaryproto");
    // Field 7 (shape) with the end-group wire type, which is invalid here.
    std::fs::write(&path, [0x3c, 0xff, 0xff, 0xff]).unwrap();
    let message = expect_file_error(read_blob_proto(&path), &path);
    assert!(message.contains("BlobProto"), "{message}");
}

#[test]
fn blob_count_mismatch_is_file_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("short.binaryproto");
    let proto = caffe::BlobProto {
        shape: Some(caffe::BlobShape { dim: vec![2, 3] }),
        data: vec![1.0; 5],
        ..Default::default()
    };
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let message = expect_file_error(read_blob_proto(&path), &path);
    assert!(message.contains("needs 6 values"), "{message}");
    assert!(message.contains("data has 5"), "{message}");
}

#[test]
fn blob_negative_dim_is_file_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("negative.binaryproto");
    let proto = caffe::BlobProto {
        shape: Some(caffe::BlobShape { dim: vec![2, -3] }),
        ..Default::default()
    };
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let message = expect_file_error(read_blob_proto(&path), &path);
    assert!(message.contains("-3"), "{message}");

    let proto = caffe::BlobProto {
        num: Some(-1),
        channels: Some(1),
        height: Some(1),
        width: Some(1),
        ..Default::default()
    };
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let message = expect_file_error(read_blob_proto(&path), &path);
    assert!(message.contains("-1"), "{message}");
}

#[test]
fn blob_count_overflow_is_file_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("huge.binaryproto");
    let proto = caffe::BlobProto {
        shape: Some(caffe::BlobShape {
            dim: vec![i64::MAX, i64::MAX, 4],
        }),
        ..Default::default()
    };
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let message = expect_file_error(read_blob_proto(&path), &path);
    assert!(message.contains("overflows"), "{message}");
}

#[test]
fn blob_write_count_mismatch_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("bad.binaryproto");
    let message = expect_file_error(write_blob_proto(&path, &[2, 2], &[1.0; 3]), &path);
    assert!(message.contains("expected 4"), "{message}");
    assert!(message.contains("got 3"), "{message}");
    assert!(!path.exists());
}

#[test]
fn blob_write_to_missing_directory_is_file_error() {
    let path = Path::new("/nonexistent/dir/blob.binaryproto");
    let result = write_blob_proto(path, &[1], &[1.0]);
    assert_eq!(result.unwrap_err().kind(), ErrorKind::File);
}
