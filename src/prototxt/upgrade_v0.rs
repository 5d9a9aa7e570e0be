//! Upgrading V0 nets, the format of 2013 in which each `layers` entry wraps a
//! V0 `layer { type: "conv" ... }` with flat parameters, to V1 layers.
//!
//! The rules are those of Caffe 1.0's `UpgradeV0Net`,
//! `UpgradeV0PaddingLayers`, `UpgradeV0LayerParameter` and
//! `UpgradeV0LayerType`. A parameter that does not belong to the layer's type
//! is logged as a warning and skipped, where Caffe logs an error and goes on.
//! An unknown type, an unknown bottom or a misplaced padding layer, on which
//! Caffe aborts, is an [`Error::Model`].

use std::collections::HashMap;

use crate::caffe;
use crate::caffe::v1_layer_parameter::LayerType;
use crate::error::{Error, Result};

/// Converts a net whose `layers` entries hold V0 layers into a net of V1
/// layers.
///
/// As in Caffe 1.0, the upgraded net keeps only the name, `input`,
/// `input_dim` and `force_backward` of the original net-level fields. A
/// `layers` entry without a V0 layer keeps only its bottoms and tops.
pub(super) fn upgrade_v0_net(net: caffe::NetParameter, file: &str) -> Result<caffe::NetParameter> {
    let connections = fold_padding_layers(&net, file)?;
    let layers = connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| upgrade_v0_layer(connection, index, file))
        .collect::<Result<_>>()?;
    Ok(caffe::NetParameter {
        name: net.name,
        layers,
        input: net.input,
        input_dim: net.input_dim,
        force_backward: net.force_backward,
        ..Default::default()
    })
}

/// Returns the V0 type of a `layers` entry, or "" when it has no V0 layer.
fn v0_type(connection: &caffe::V1LayerParameter) -> &str {
    connection.layer.as_ref().map_or("", |layer| layer.r#type())
}

/// Returns the V0 name of a `layers` entry, or "" when it has none.
fn v0_name(connection: &caffe::V1LayerParameter) -> &str {
    connection.layer.as_ref().map_or("", |layer| layer.name())
}

/// Removes the V0 "padding" layers. Each one's `pad` moves to the
/// convolution or pooling layer that reads its output, and that layer reads
/// the padding layer's input instead.
fn fold_padding_layers(
    net: &caffe::NetParameter,
    file: &str,
) -> Result<Vec<caffe::V1LayerParameter>> {
    // Index of the layer that last wrote each blob; None for a net input.
    let mut last_producer: HashMap<&str, Option<usize>> = net
        .input
        .iter()
        .map(|input| (input.as_str(), None))
        .collect();
    let mut kept_layers: Vec<caffe::V1LayerParameter> = Vec::with_capacity(net.layers.len());

    for (index, connection) in net.layers.iter().enumerate() {
        let layer_type = v0_type(connection);
        let layer_name = v0_name(connection);
        if layer_type != "padding" {
            kept_layers.push(connection.clone());
        }
        for (bottom_index, bottom) in connection.bottom.iter().enumerate() {
            let producer = last_producer.get(bottom.as_str()).copied().ok_or_else(|| {
                Error::model(
                    file,
                    format!(
                        "V0 layer {index} '{layer_name}' reads the blob '{bottom}', which no \
                         earlier layer or net input produces"
                    ),
                )
            })?;
            let Some(source) = producer.and_then(|source| net.layers.get(source)) else {
                continue;
            };
            if v0_type(source) != "padding" {
                continue;
            }
            let source_name = v0_name(source);
            if layer_type != "conv" && layer_type != "pool" {
                return Err(Error::model(
                    file,
                    format!(
                        "V0 padding layer '{source_name}' feeds layer {index} '{layer_name}' \
                         of type '{layer_type}'; a padding layer may only feed a conv or \
                         pool layer"
                    ),
                ));
            }
            if connection.bottom.len() != 1 {
                return Err(Error::model(
                    file,
                    format!(
                        "V0 layer {index} '{layer_name}' reads a padding layer, so it must \
                         have exactly 1 bottom; got {}",
                        connection.bottom.len()
                    ),
                ));
            }
            let [padded_input] = source.bottom.as_slice() else {
                return Err(Error::model(
                    file,
                    format!(
                        "V0 padding layer '{source_name}' must have exactly 1 bottom; got {}",
                        source.bottom.len()
                    ),
                ));
            };
            if source.top.len() != 1 {
                return Err(Error::model(
                    file,
                    format!(
                        "V0 padding layer '{source_name}' must have exactly 1 top; got {}",
                        source.top.len()
                    ),
                ));
            }
            let pad = source.layer.as_ref().map_or(0, |layer| layer.pad());
            // The current layer is a conv or pool layer, so it was just kept.
            if let Some(target) = kept_layers.last_mut() {
                if let Some(slot) = target.bottom.get_mut(bottom_index) {
                    slot.clone_from(padded_input);
                }
                target.layer.get_or_insert_with(Default::default).pad = Some(pad);
            }
        }
        for top in &connection.top {
            last_producer.insert(top.as_str(), Some(index));
        }
    }
    Ok(kept_layers)
}

/// Returns the V1 layer type of a V0 type string.
fn v1_layer_type(v0_type: &str) -> Option<LayerType> {
    let layer_type = match v0_type {
        "accuracy" => LayerType::Accuracy,
        "bnll" => LayerType::Bnll,
        "concat" => LayerType::Concat,
        "conv" => LayerType::Convolution,
        "data" => LayerType::Data,
        "dropout" => LayerType::Dropout,
        "euclidean_loss" => LayerType::EuclideanLoss,
        "flatten" => LayerType::Flatten,
        "hdf5_data" => LayerType::Hdf5Data,
        "hdf5_output" => LayerType::Hdf5Output,
        "im2col" => LayerType::Im2col,
        "images" => LayerType::ImageData,
        "infogain_loss" => LayerType::InfogainLoss,
        "innerproduct" => LayerType::InnerProduct,
        "lrn" => LayerType::Lrn,
        "multinomial_logistic_loss" => LayerType::MultinomialLogisticLoss,
        "pool" => LayerType::Pooling,
        "relu" => LayerType::Relu,
        "sigmoid" => LayerType::Sigmoid,
        "softmax" => LayerType::Softmax,
        "softmax_loss" => LayerType::SoftmaxLoss,
        "split" => LayerType::Split,
        "tanh" => LayerType::Tanh,
        "window_data" => LayerType::WindowData,
        _ => return None,
    };
    Some(layer_type)
}

fn conv(layer: &mut caffe::V1LayerParameter) -> &mut caffe::ConvolutionParameter {
    layer.convolution_param.get_or_insert_with(Default::default)
}

fn inner_product(layer: &mut caffe::V1LayerParameter) -> &mut caffe::InnerProductParameter {
    layer
        .inner_product_param
        .get_or_insert_with(Default::default)
}

fn pooling(layer: &mut caffe::V1LayerParameter) -> &mut caffe::PoolingParameter {
    layer.pooling_param.get_or_insert_with(Default::default)
}

fn lrn(layer: &mut caffe::V1LayerParameter) -> &mut caffe::LrnParameter {
    layer.lrn_param.get_or_insert_with(Default::default)
}

fn data(layer: &mut caffe::V1LayerParameter) -> &mut caffe::DataParameter {
    layer.data_param.get_or_insert_with(Default::default)
}

fn hdf5_data(layer: &mut caffe::V1LayerParameter) -> &mut caffe::Hdf5DataParameter {
    layer.hdf5_data_param.get_or_insert_with(Default::default)
}

fn image_data(layer: &mut caffe::V1LayerParameter) -> &mut caffe::ImageDataParameter {
    layer.image_data_param.get_or_insert_with(Default::default)
}

fn window_data(layer: &mut caffe::V1LayerParameter) -> &mut caffe::WindowDataParameter {
    layer.window_data_param.get_or_insert_with(Default::default)
}

fn transform(layer: &mut caffe::V1LayerParameter) -> &mut caffe::TransformationParameter {
    layer.transform_param.get_or_insert_with(Default::default)
}

/// Converts one `layers` entry that wraps a V0 layer into a V1 layer.
fn upgrade_v0_layer(
    connection: caffe::V1LayerParameter,
    index: usize,
    file: &str,
) -> Result<caffe::V1LayerParameter> {
    let mut layer = caffe::V1LayerParameter {
        bottom: connection.bottom,
        top: connection.top,
        ..Default::default()
    };
    let Some(v0) = connection.layer else {
        log::warn!(
            "{file}: layers entry {index} of a V0 net has no V0 layer; only its bottoms \
             and tops are kept"
        );
        return Ok(layer);
    };
    let name = v0.name().to_string();
    let layer_type = v0.r#type().to_string();
    layer.name = v0.name.clone();
    if v0.r#type.is_some() {
        let v1_type = v1_layer_type(&layer_type).ok_or_else(|| {
            Error::model(
                file,
                format!(
                    "V0 layer {index} '{name}' has the unknown type '{layer_type}'; the V0 \
                     format of 2013 has no such type"
                ),
            )
        })?;
        layer.r#type = Some(v1_type as i32);
    }
    layer.blobs = v0.blobs.clone();
    layer.blobs_lr = v0.blobs_lr.clone();
    layer.weight_decay = v0.weight_decay.clone();

    let warn_ignored = |field: &str| {
        log::warn!(
            "{file}: V0 layer {index} '{name}': the parameter {field} does not apply to \
             type '{layer_type}' and is ignored"
        );
    };
    let is_type = |expected: &str| layer_type == expected;

    if let Some(num_output) = v0.num_output {
        match layer_type.as_str() {
            "conv" => conv(&mut layer).num_output = Some(num_output),
            "innerproduct" => inner_product(&mut layer).num_output = Some(num_output),
            _ => warn_ignored("num_output"),
        }
    }
    if let Some(bias_term) = v0.biasterm {
        match layer_type.as_str() {
            "conv" => conv(&mut layer).bias_term = Some(bias_term),
            "innerproduct" => inner_product(&mut layer).bias_term = Some(bias_term),
            _ => warn_ignored("biasterm"),
        }
    }
    if let Some(filler) = &v0.weight_filler {
        match layer_type.as_str() {
            "conv" => conv(&mut layer).weight_filler = Some(filler.clone()),
            "innerproduct" => inner_product(&mut layer).weight_filler = Some(filler.clone()),
            _ => warn_ignored("weight_filler"),
        }
    }
    if let Some(filler) = &v0.bias_filler {
        match layer_type.as_str() {
            "conv" => conv(&mut layer).bias_filler = Some(filler.clone()),
            "innerproduct" => inner_product(&mut layer).bias_filler = Some(filler.clone()),
            _ => warn_ignored("bias_filler"),
        }
    }
    if let Some(pad) = v0.pad {
        match layer_type.as_str() {
            "conv" => conv(&mut layer).pad.push(pad),
            "pool" => pooling(&mut layer).pad = Some(pad),
            _ => warn_ignored("pad"),
        }
    }
    if let Some(kernel_size) = v0.kernelsize {
        match layer_type.as_str() {
            "conv" => conv(&mut layer).kernel_size.push(kernel_size),
            "pool" => pooling(&mut layer).kernel_size = Some(kernel_size),
            _ => warn_ignored("kernelsize"),
        }
    }
    if let Some(group) = v0.group {
        if is_type("conv") {
            conv(&mut layer).group = Some(group);
        } else {
            warn_ignored("group");
        }
    }
    if let Some(stride) = v0.stride {
        match layer_type.as_str() {
            "conv" => conv(&mut layer).stride.push(stride),
            "pool" => pooling(&mut layer).stride = Some(stride),
            _ => warn_ignored("stride"),
        }
    }
    if let Some(pool) = v0.pool {
        if is_type("pool") {
            upgrade_pool_method(&mut layer, pool, &warn_ignored);
        } else {
            warn_ignored("pool");
        }
    }
    if let Some(ratio) = v0.dropout_ratio {
        if is_type("dropout") {
            layer
                .dropout_param
                .get_or_insert_with(Default::default)
                .dropout_ratio = Some(ratio);
        } else {
            warn_ignored("dropout_ratio");
        }
    }
    upgrade_lrn_fields(&mut layer, &v0, &layer_type, &warn_ignored);
    upgrade_data_fields(&mut layer, &v0, &layer_type, &warn_ignored);
    upgrade_image_size_fields(&mut layer, &v0, &layer_type, index, file, &warn_ignored)?;
    if let Some(concat_dim) = v0.concat_dim {
        if is_type("concat") {
            layer
                .concat_param
                .get_or_insert_with(Default::default)
                .concat_dim = Some(concat_dim);
        } else {
            warn_ignored("concat_dim");
        }
    }
    upgrade_window_data_fields(&mut layer, &v0, &layer_type, &warn_ignored);
    if let Some(hdf5_output) = v0.hdf5_output_param {
        if is_type("hdf5_output") {
            layer.hdf5_output_param = Some(hdf5_output);
        } else {
            warn_ignored("hdf5_output_param");
        }
    }
    Ok(layer)
}

/// Sets the pooling method from the V0 enum value `pool`.
fn upgrade_pool_method(
    layer: &mut caffe::V1LayerParameter,
    pool: i32,
    warn_ignored: &dyn Fn(&str),
) {
    use caffe::pooling_parameter::PoolMethod;
    use caffe::v0_layer_parameter::PoolMethod as V0PoolMethod;
    let method = match V0PoolMethod::try_from(pool) {
        Ok(V0PoolMethod::Max) => PoolMethod::Max,
        Ok(V0PoolMethod::Ave) => PoolMethod::Ave,
        Ok(V0PoolMethod::Stochastic) => PoolMethod::Stochastic,
        Err(_) => {
            warn_ignored(&format!("pool (unknown method {pool})"));
            return;
        }
    };
    pooling(layer).pool = Some(method as i32);
}

/// Moves the local response normalization fields of a V0 "lrn" layer.
fn upgrade_lrn_fields(
    layer: &mut caffe::V1LayerParameter,
    v0: &caffe::V0LayerParameter,
    layer_type: &str,
    warn_ignored: &dyn Fn(&str),
) {
    let is_lrn = layer_type == "lrn";
    if let Some(local_size) = v0.local_size {
        if is_lrn {
            lrn(layer).local_size = Some(local_size);
        } else {
            warn_ignored("local_size");
        }
    }
    if let Some(alpha) = v0.alpha {
        if is_lrn {
            lrn(layer).alpha = Some(alpha);
        } else {
            warn_ignored("alpha");
        }
    }
    if let Some(beta) = v0.beta {
        if is_lrn {
            lrn(layer).beta = Some(beta);
        } else {
            warn_ignored("beta");
        }
    }
    if let Some(k) = v0.k {
        if is_lrn {
            lrn(layer).k = Some(k);
        } else {
            warn_ignored("k");
        }
    }
}

/// Moves the source, batch and transformation fields of V0 data layers and
/// the source of a V0 "infogain_loss" layer.
fn upgrade_data_fields(
    layer: &mut caffe::V1LayerParameter,
    v0: &caffe::V0LayerParameter,
    layer_type: &str,
    warn_ignored: &dyn Fn(&str),
) {
    if let Some(source) = &v0.source {
        let source = Some(source.clone());
        match layer_type {
            "data" => data(layer).source = source,
            "hdf5_data" => hdf5_data(layer).source = source,
            "images" => image_data(layer).source = source,
            "window_data" => window_data(layer).source = source,
            "infogain_loss" => {
                layer
                    .infogain_loss_param
                    .get_or_insert_with(Default::default)
                    .source = source
            }
            _ => warn_ignored("source"),
        }
    }

    // Caffe 1.0 moves these four to transform_param whatever the layer type.
    if v0.scale.is_some() {
        transform(layer).scale = v0.scale;
    }
    if v0.meanfile.is_some() {
        transform(layer).mean_file.clone_from(&v0.meanfile);
    }
    if v0.cropsize.is_some() {
        transform(layer).crop_size = v0.cropsize;
    }
    if v0.mirror.is_some() {
        transform(layer).mirror = v0.mirror;
    }

    if let Some(batch_size) = v0.batchsize {
        match layer_type {
            "data" => data(layer).batch_size = Some(batch_size),
            "hdf5_data" => hdf5_data(layer).batch_size = Some(batch_size),
            "images" => image_data(layer).batch_size = Some(batch_size),
            "window_data" => window_data(layer).batch_size = Some(batch_size),
            _ => warn_ignored("batchsize"),
        }
    }
    if let Some(rand_skip) = v0.rand_skip {
        match layer_type {
            "data" => data(layer).rand_skip = Some(rand_skip),
            "images" => image_data(layer).rand_skip = Some(rand_skip),
            _ => warn_ignored("rand_skip"),
        }
    }
    if let Some(shuffle) = v0.shuffle_images {
        if layer_type == "images" {
            image_data(layer).shuffle = Some(shuffle);
        } else {
            warn_ignored("shuffle_images");
        }
    }
}

/// Moves `new_height` and `new_width` of a V0 "images" layer.
///
/// V0 stores them as int32 and ImageDataParameter as uint32, so a negative
/// value is an [`Error::Model`].
fn upgrade_image_size_fields(
    layer: &mut caffe::V1LayerParameter,
    v0: &caffe::V0LayerParameter,
    layer_type: &str,
    index: usize,
    file: &str,
    warn_ignored: &dyn Fn(&str),
) -> Result<()> {
    let name = v0.name();
    for (field, value) in [("new_height", v0.new_height), ("new_width", v0.new_width)] {
        let Some(value) = value else {
            continue;
        };
        if layer_type != "images" {
            warn_ignored(field);
            continue;
        }
        let value = u32::try_from(value).map_err(|_| {
            Error::model(
                file,
                format!(
                    "V0 layer {index} '{name}' has {field} {value}; expected a value of 0 \
                     or more"
                ),
            )
        })?;
        let param = image_data(layer);
        if field == "new_height" {
            param.new_height = Some(value);
        } else {
            param.new_width = Some(value);
        }
    }
    Ok(())
}

/// Moves the detection window fields of a V0 "window_data" layer.
fn upgrade_window_data_fields(
    layer: &mut caffe::V1LayerParameter,
    v0: &caffe::V0LayerParameter,
    layer_type: &str,
    warn_ignored: &dyn Fn(&str),
) {
    let is_window_data = layer_type == "window_data";
    if let Some(threshold) = v0.det_fg_threshold {
        if is_window_data {
            window_data(layer).fg_threshold = Some(threshold);
        } else {
            warn_ignored("det_fg_threshold");
        }
    }
    if let Some(threshold) = v0.det_bg_threshold {
        if is_window_data {
            window_data(layer).bg_threshold = Some(threshold);
        } else {
            warn_ignored("det_bg_threshold");
        }
    }
    if let Some(fraction) = v0.det_fg_fraction {
        if is_window_data {
            window_data(layer).fg_fraction = Some(fraction);
        } else {
            warn_ignored("det_fg_fraction");
        }
    }
    if let Some(context_pad) = v0.det_context_pad {
        if is_window_data {
            window_data(layer).context_pad = Some(context_pad);
        } else {
            warn_ignored("det_context_pad");
        }
    }
    if let Some(crop_mode) = &v0.det_crop_mode {
        if is_window_data {
            window_data(layer).crop_mode = Some(crop_mode.clone());
        } else {
            warn_ignored("det_crop_mode");
        }
    }
}
