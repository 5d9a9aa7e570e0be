//! Bringing a parsed net up to the current (V2) format, as Caffe 1.0's
//! `UpgradeNetAsNeeded` in `src/caffe/util/upgrade_proto.cpp` does.

use crate::caffe;
use crate::caffe::v1_layer_parameter::LayerType;
use crate::error::{Error, Result};

use super::upgrade_v0;

/// Upgrades a parsed net to the current format, so that every layer is a V2
/// `layer` entry with a string type.
///
/// The steps are those of Caffe 1.0, in its order:
///
/// 1. V0 layers (`layers { layer { type: "conv" ... } }`, the format of 2013)
///    become V1 layers. Padding layers are folded into the convolution or
///    pooling layer that reads them.
/// 2. The deprecated `scale`, `mean_file`, `crop_size` and `mirror` fields of
///    V1 data, image data and window data layers move to `transform_param`.
/// 3. V1 `layers` entries (enum `type`) become V2 `layer` entries, with
///    `blobs_lr` as `param.lr_mult` and `weight_decay` as `param.decay_mult`.
/// 4. The deprecated `input` fields with `input_dim` (four per input) or
///    `input_shape` become an Input layer named "input", placed first.
/// 5. BatchNorm layers with three `param` entries get `lr_mult` and
///    `decay_mult` 0, as the BatchNorm layer of Caffe 1.0 requires.
///
/// Every error is an [`Error::Model`] naming `file`. The net is rejected when
/// it has both `layer` and `layers` entries, or a V1 layer type or share mode
/// that caffe.proto does not define. V0 nets are also rejected for an unknown
/// V0 layer type, an unknown bottom, or a padding layer that does not feed a
/// single-input convolution or pooling layer. The last checks are on the
/// deprecated inputs: one `input_shape` or four `input_dim` values per
/// `input`, and not both kinds.
pub fn upgrade_net(mut net: caffe::NetParameter, file: &str) -> Result<caffe::NetParameter> {
    if !net.layer.is_empty() && !net.layers.is_empty() {
        return Err(Error::model(
            file,
            format!(
                "the net mixes {} V1 'layers' entries with {} V2 'layer' entries and \
                 cannot be upgraded; rewrite the 'layers' entries as 'layer' entries \
                 with string types",
                net.layers.len(),
                net.layer.len()
            ),
        ));
    }

    if net.layers.iter().any(|layer| layer.layer.is_some()) {
        log::info!("{file}: upgrading V0 layers to the current format");
        net = upgrade_v0::upgrade_v0_net(net, file)?;
    }
    for layer in &mut net.layers {
        move_data_transform_fields(layer);
    }
    if !net.layers.is_empty() {
        log::info!("{file}: upgrading V1 layers to the current format");
        let v1_layers = std::mem::take(&mut net.layers);
        net.layer = v1_layers
            .into_iter()
            .enumerate()
            .map(|(index, layer)| upgrade_v1_layer(layer, index, file))
            .collect::<Result<_>>()?;
    }
    if !net.input.is_empty() {
        upgrade_net_input(&mut net, file)?;
    }
    upgrade_batch_norm(&mut net);
    Ok(net)
}

/// Moves the transformation fields that V1 data layers kept in their own
/// parameters into `transform_param`.
fn move_data_transform_fields(layer: &mut caffe::V1LayerParameter) {
    let fields = match layer.r#type() {
        LayerType::Data => layer.data_param.as_mut().map(|param| {
            (
                param.scale.take(),
                param.mean_file.take(),
                param.crop_size.take(),
                param.mirror.take(),
            )
        }),
        LayerType::ImageData => layer.image_data_param.as_mut().map(|param| {
            (
                param.scale.take(),
                param.mean_file.take(),
                param.crop_size.take(),
                param.mirror.take(),
            )
        }),
        LayerType::WindowData => layer.window_data_param.as_mut().map(|param| {
            (
                param.scale.take(),
                param.mean_file.take(),
                param.crop_size.take(),
                param.mirror.take(),
            )
        }),
        _ => None,
    };
    let Some((scale, mean_file, crop_size, mirror)) = fields else {
        return;
    };
    if scale.is_none() && mean_file.is_none() && crop_size.is_none() && mirror.is_none() {
        return;
    }
    let transform = layer.transform_param.get_or_insert_with(Default::default);
    if scale.is_some() {
        transform.scale = scale;
    }
    if mean_file.is_some() {
        transform.mean_file = mean_file;
    }
    if crop_size.is_some() {
        transform.crop_size = crop_size;
    }
    if mirror.is_some() {
        transform.mirror = mirror;
    }
}

/// Moves the `*_param` fields that V1 and V2 layers share.
macro_rules! move_params {
    ($from:ident, $to:ident, $($field:ident),+ $(,)?) => {
        $( $to.$field = $from.$field.take(); )+
    };
}

/// Converts one V1 layer (the `index`-th `layers` entry) into a V2 layer.
fn upgrade_v1_layer(
    mut v1: caffe::V1LayerParameter,
    index: usize,
    file: &str,
) -> Result<caffe::LayerParameter> {
    let name = v1.name.clone().unwrap_or_default();
    let mut layer = caffe::LayerParameter {
        name: v1.name.take(),
        bottom: std::mem::take(&mut v1.bottom),
        top: std::mem::take(&mut v1.top),
        include: std::mem::take(&mut v1.include),
        exclude: std::mem::take(&mut v1.exclude),
        blobs: std::mem::take(&mut v1.blobs),
        loss_weight: std::mem::take(&mut v1.loss_weight),
        ..Default::default()
    };
    if let Some(type_value) = v1.r#type {
        let layer_type = LayerType::try_from(type_value).map_err(|_| {
            Error::model(
                file,
                format!("layer {index} '{name}' has the V1 type {type_value}, which caffe.proto does not define"),
            )
        })?;
        layer.r#type = Some(v2_type_name(layer_type).to_string());
    }

    let param_count = v1
        .param
        .len()
        .max(v1.blob_share_mode.len())
        .max(v1.blobs_lr.len())
        .max(v1.weight_decay.len());
    layer.param = vec![caffe::ParamSpec::default(); param_count];
    for (spec, param_name) in layer.param.iter_mut().zip(v1.param.drain(..)) {
        spec.name = Some(param_name);
    }
    for (spec, &mode) in layer.param.iter_mut().zip(&v1.blob_share_mode) {
        spec.share_mode = Some(v2_share_mode(mode, index, &name, file)? as i32);
    }
    for (spec, &lr_mult) in layer.param.iter_mut().zip(&v1.blobs_lr) {
        spec.lr_mult = Some(lr_mult);
    }
    for (spec, &decay_mult) in layer.param.iter_mut().zip(&v1.weight_decay) {
        spec.decay_mult = Some(decay_mult);
    }

    move_params!(
        v1,
        layer,
        accuracy_param,
        argmax_param,
        concat_param,
        contrastive_loss_param,
        convolution_param,
        data_param,
        dropout_param,
        dummy_data_param,
        eltwise_param,
        exp_param,
        hdf5_data_param,
        hdf5_output_param,
        hinge_loss_param,
        image_data_param,
        infogain_loss_param,
        inner_product_param,
        lrn_param,
        memory_data_param,
        mvn_param,
        pooling_param,
        power_param,
        relu_param,
        sigmoid_param,
        softmax_param,
        slice_param,
        tanh_param,
        threshold_param,
        window_data_param,
        transform_param,
        loss_param,
    );
    if v1.layer.is_some() {
        // Caffe 1.0 also drops a V0 layer left inside a V1 entry, with an error
        // in its log, and goes on.
        log::warn!("{file}: layer {index} '{name}' still contains a V0 layer, which is ignored");
    }
    Ok(layer)
}

/// Maps a V1 blob share mode to the V2 `ParamSpec` one.
fn v2_share_mode(
    mode: i32,
    index: usize,
    name: &str,
    file: &str,
) -> Result<caffe::param_spec::DimCheckMode> {
    use caffe::param_spec::DimCheckMode;
    use caffe::v1_layer_parameter::DimCheckMode as V1DimCheckMode;
    match V1DimCheckMode::try_from(mode) {
        Ok(V1DimCheckMode::Strict) => Ok(DimCheckMode::Strict),
        Ok(V1DimCheckMode::Permissive) => Ok(DimCheckMode::Permissive),
        Err(_) => Err(Error::model(
            file,
            format!(
                "layer {index} '{name}' has the blob_share_mode {mode}; expected \
                 STRICT (0) or PERMISSIVE (1)"
            ),
        )),
    }
}

/// Returns the V2 type name of a V1 layer type, as Caffe 1.0's
/// `UpgradeV1LayerType` names it.
pub(super) fn v2_type_name(layer_type: LayerType) -> &'static str {
    match layer_type {
        LayerType::None => "",
        LayerType::Absval => "AbsVal",
        LayerType::Accuracy => "Accuracy",
        LayerType::Argmax => "ArgMax",
        LayerType::Bnll => "BNLL",
        LayerType::Concat => "Concat",
        LayerType::ContrastiveLoss => "ContrastiveLoss",
        LayerType::Convolution => "Convolution",
        LayerType::Deconvolution => "Deconvolution",
        LayerType::Data => "Data",
        LayerType::Dropout => "Dropout",
        LayerType::DummyData => "DummyData",
        LayerType::EuclideanLoss => "EuclideanLoss",
        LayerType::Eltwise => "Eltwise",
        LayerType::Exp => "Exp",
        LayerType::Flatten => "Flatten",
        LayerType::Hdf5Data => "HDF5Data",
        LayerType::Hdf5Output => "HDF5Output",
        LayerType::HingeLoss => "HingeLoss",
        LayerType::Im2col => "Im2col",
        LayerType::ImageData => "ImageData",
        LayerType::InfogainLoss => "InfogainLoss",
        LayerType::InnerProduct => "InnerProduct",
        LayerType::Lrn => "LRN",
        LayerType::MemoryData => "MemoryData",
        LayerType::MultinomialLogisticLoss => "MultinomialLogisticLoss",
        LayerType::Mvn => "MVN",
        LayerType::Pooling => "Pooling",
        LayerType::Power => "Power",
        LayerType::Relu => "ReLU",
        LayerType::Sigmoid => "Sigmoid",
        LayerType::SigmoidCrossEntropyLoss => "SigmoidCrossEntropyLoss",
        LayerType::Silence => "Silence",
        LayerType::Softmax => "Softmax",
        LayerType::SoftmaxLoss => "SoftmaxWithLoss",
        LayerType::Split => "Split",
        LayerType::Slice => "Slice",
        LayerType::Tanh => "TanH",
        LayerType::WindowData => "WindowData",
        LayerType::Threshold => "Threshold",
    }
}

/// Replaces the deprecated `input`, `input_dim` and `input_shape` fields with
/// an Input layer at the front of the net.
///
/// Caffe 1.0 only drops `input` when neither `input_dim` nor `input_shape` is
/// given (an old binary model), and so does this function.
fn upgrade_net_input(net: &mut caffe::NetParameter, file: &str) -> Result<()> {
    let inputs = std::mem::take(&mut net.input);
    let input_shapes = std::mem::take(&mut net.input_shape);
    let input_dims = std::mem::take(&mut net.input_dim);
    if input_shapes.is_empty() && input_dims.is_empty() {
        return Ok(());
    }
    if !input_shapes.is_empty() && !input_dims.is_empty() {
        return Err(Error::model(
            file,
            format!(
                "the net gives both input_shape ({} entries) and input_dim ({} values); \
                 give the shape of its inputs with only one of them",
                input_shapes.len(),
                input_dims.len()
            ),
        ));
    }

    let shapes = if input_shapes.is_empty() {
        let expected = inputs.len().saturating_mul(4);
        if input_dims.len() != expected {
            return Err(Error::model(
                file,
                format!(
                    "the net has {} input(s), so it needs 4 input_dim values per input: \
                     expected {expected}, got {}",
                    inputs.len(),
                    input_dims.len()
                ),
            ));
        }
        input_dims
            .chunks(4)
            .map(|dims| caffe::BlobShape {
                dim: dims.iter().map(|&dim| i64::from(dim)).collect(),
            })
            .collect()
    } else {
        if input_shapes.len() != inputs.len() {
            return Err(Error::model(
                file,
                format!(
                    "the net has {} input(s), so it needs one input_shape per input: \
                     expected {}, got {}",
                    inputs.len(),
                    inputs.len(),
                    input_shapes.len()
                ),
            ));
        }
        input_shapes
    };

    let input_layer = caffe::LayerParameter {
        name: Some("input".to_string()),
        r#type: Some("Input".to_string()),
        top: inputs,
        input_param: Some(caffe::InputParameter { shape: shapes }),
        ..Default::default()
    };
    net.layer.insert(0, input_layer);
    Ok(())
}

/// Sets `lr_mult` and `decay_mult` to 0 on BatchNorm layers that declare the
/// three `param` entries of the older BatchNorm definition, because the
/// layer's statistics are not learned by gradient descent.
fn upgrade_batch_norm(net: &mut caffe::NetParameter) {
    for layer in &mut net.layer {
        if layer.r#type() == "BatchNorm" && layer.param.len() == 3 {
            for spec in &mut layer.param {
                spec.lr_mult = Some(0.0);
                spec.decay_mult = Some(0.0);
            }
        }
    }
}
