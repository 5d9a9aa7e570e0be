//! Fuzzes layer set-up, reshape, forward and backward: one supported layer
//! with random parameters, bottom and top counts, bottom shapes and values,
//! in a random element type, fed by an Input layer. The inputs are then fed
//! again with other shapes to run the reshape path.

#![no_main]

use arbitrary::{Result, Unstructured};
use caffe_loss::caffe::{
    AccuracyParameter, BlobShape, ContrastiveLossParameter, HingeLossParameter,
    InfogainLossParameter, InputParameter, LayerParameter, LossParameter, NetParameter,
    SoftmaxParameter,
};
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::Element;
use libfuzzer_sys::fuzz_target;

/// A layer type with its valid bottom and top counts (minimum, maximum).
struct Kind {
    name: &'static str,
    bottoms: (usize, usize),
    tops: (usize, usize),
}

const fn kind(name: &'static str, bottoms: (usize, usize), tops: (usize, usize)) -> Kind {
    Kind {
        name,
        bottoms,
        tops,
    }
}

const KINDS: &[Kind] = &[
    kind("SoftmaxWithLoss", (2, 2), (1, 2)),
    kind("EuclideanLoss", (2, 2), (1, 1)),
    kind("HingeLoss", (2, 2), (1, 1)),
    kind("SigmoidCrossEntropyLoss", (2, 2), (1, 1)),
    kind("MultinomialLogisticLoss", (2, 2), (1, 1)),
    kind("InfogainLoss", (2, 3), (1, 2)),
    kind("ContrastiveLoss", (3, 3), (1, 1)),
    kind("Softmax", (1, 1), (1, 1)),
    kind("Sigmoid", (1, 1), (1, 1)),
    kind("Accuracy", (2, 2), (1, 2)),
];

/// Values that break arithmetic or label checks, chosen often.
const SPECIAL_VALUES: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1.000_000_1,
    255.0,
    -200.0,
    88.8,
    1e30,
    -1e30,
    1e-40,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::MAX,
];

/// Picks a count in `valid`, or now and then any count up to 4.
fn count_in(u: &mut Unstructured, valid: (usize, usize)) -> Result<usize> {
    if u.ratio(1, 8)? {
        u.int_in_range(0..=4)
    } else {
        u.int_in_range(valid.0..=valid.1)
    }
}

/// Picks a shape of up to 5 axes with small dimensions (0 now and then).
fn random_shape(u: &mut Unstructured) -> Result<Vec<usize>> {
    let axes = u.int_in_range(0..=5)?;
    (0..axes)
        .map(|_| {
            if u.ratio(1, 16)? {
                Ok(0)
            } else {
                u.int_in_range(1..=4)
            }
        })
        .collect()
}

/// Picks the shape of bottom `index`, mostly derived from the first bottom's
/// so that the layer's shape checks often pass and forward runs.
fn derived_shape(u: &mut Unstructured, first: &[usize], index: usize) -> Result<Vec<usize>> {
    if index == 0 {
        return Ok(first.to_vec());
    }
    let channels = first.get(1).copied().unwrap_or(1);
    Ok(match u.int_in_range(0..=5)? {
        0 => first.to_vec(),
        1 => first
            .iter()
            .enumerate()
            .filter(|&(axis, _)| axis != 1)
            .map(|(_, &dim)| dim)
            .collect(),
        2 => first.first().map_or_else(Vec::new, |&num| vec![num]),
        3 => vec![channels, channels],
        4 => first
            .first()
            .map_or_else(Vec::new, |&num| vec![num, 1, 1, 1]),
        _ => random_shape(u)?,
    })
}

/// Picks a value for a blob whose elements may be labels in `[0, classes)`.
fn random_value(u: &mut Unstructured, classes: usize) -> Result<f64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => u.int_in_range(0..=classes.max(1))? as f64,
        1 => *u.choose(SPECIAL_VALUES)?,
        2 => f64::from(u.int_in_range(-4000i32..=4000)?) / 1000.0,
        _ => u.arbitrary::<f64>()?,
    })
}

fn random_values(u: &mut Unstructured, shape: &[usize], classes: usize) -> Result<Vec<f64>> {
    let count: usize = shape.iter().product();
    (0..count).map(|_| random_value(u, classes)).collect()
}

/// Builds a loss_param with any mix of its fields set, enum values out of
/// range included.
fn random_loss_param(u: &mut Unstructured) -> Result<Option<LossParameter>> {
    if !u.arbitrary::<bool>()? {
        return Ok(None);
    }
    Ok(Some(LossParameter {
        ignore_label: if u.arbitrary()? {
            Some(*u.choose(&[-1, 0, 1, 2, 255])?)
        } else {
            None
        },
        normalization: if u.arbitrary()? {
            Some(u.int_in_range(-1..=4)?)
        } else {
            None
        },
        normalize: u.arbitrary()?,
    }))
}

/// Builds the layer's parameter: type, blob names, loss weights,
/// propagate_down and the type's own parameters.
fn random_layer(u: &mut Unstructured, kind: &Kind, bottoms: &[String]) -> Result<LayerParameter> {
    let top_count = count_in(u, kind.tops)?;
    let mut tops: Vec<String> = (0..top_count).map(|i| format!("t{i}")).collect();
    if u.ratio(1, 10)? {
        // A top written in place over one of the bottoms.
        if let (Some(top), Some(bottom)) = (tops.first_mut(), bottoms.first()) {
            top.clone_from(bottom);
        }
    }
    let weight_count = if u.ratio(1, 4)? {
        u.int_in_range(0..=3)?
    } else {
        0
    };
    let propagate_count = if u.ratio(1, 4)? {
        u.int_in_range(0..=4)?
    } else {
        0
    };
    let mut layer = LayerParameter {
        name: Some("fuzzed".to_string()),
        r#type: Some(kind.name.to_string()),
        bottom: bottoms.to_vec(),
        top: tops,
        loss_weight: (0..weight_count)
            .map(|_| Ok(*u.choose(&[0.0f32, 1.0, 0.5, -2.0, f32::NAN])?))
            .collect::<Result<_>>()?,
        propagate_down: (0..propagate_count)
            .map(|_| u.arbitrary())
            .collect::<Result<_>>()?,
        loss_param: random_loss_param(u)?,
        ..LayerParameter::default()
    };
    add_type_params(u, &mut layer)?;
    Ok(layer)
}

/// Sets each type-specific parameter of `layer` now and then, whatever the
/// layer's type, as a prototxt may.
fn add_type_params(u: &mut Unstructured, layer: &mut LayerParameter) -> Result<()> {
    let axis_value = |u: &mut Unstructured| -> Result<Option<i32>> {
        Ok(if u.arbitrary()? {
            Some(u.int_in_range(-6..=6)?)
        } else {
            None
        })
    };
    if u.arbitrary()? {
        layer.softmax_param = Some(SoftmaxParameter {
            engine: None,
            axis: axis_value(u)?,
        });
    }
    if u.arbitrary()? {
        layer.infogain_loss_param = Some(InfogainLossParameter {
            source: None,
            axis: axis_value(u)?,
        });
    }
    if u.arbitrary()? {
        layer.hinge_loss_param = Some(HingeLossParameter {
            norm: Some(u.int_in_range(0..=3)?),
        });
    }
    if u.arbitrary()? {
        layer.contrastive_loss_param = Some(ContrastiveLossParameter {
            margin: Some(random_value(u, 2)? as f32),
            legacy_version: u.arbitrary()?,
        });
    }
    if u.arbitrary()? {
        layer.accuracy_param = Some(AccuracyParameter {
            top_k: Some(u.int_in_range(0..=6)?),
            axis: axis_value(u)?,
            ignore_label: if u.arbitrary()? {
                Some(u.int_in_range(-1..=3)?)
            } else {
                None
            },
        });
    }
    Ok(())
}

/// Picks the shapes of `count` bottoms, derived from a random first shape.
fn random_shapes(u: &mut Unstructured, count: usize) -> Result<Vec<Vec<usize>>> {
    let first = random_shape(u)?;
    (0..count).map(|i| derived_shape(u, &first, i)).collect()
}

/// Builds the net, feeds it, runs it, then feeds other shapes and runs again.
fn run<T: Element>(u: &mut Unstructured) -> Result<()> {
    let kind = u.choose(KINDS)?;
    let bottom_count = count_in(u, kind.bottoms)?;
    let names: Vec<String> = (0..bottom_count).map(|i| format!("b{i}")).collect();
    let shapes = random_shapes(u, bottom_count)?;
    let layer = random_layer(u, kind, &names)?;
    let input = LayerParameter {
        name: Some("input".to_string()),
        r#type: Some("Input".to_string()),
        top: names.clone(),
        input_param: Some(InputParameter {
            shape: shapes
                .iter()
                .map(|shape| BlobShape {
                    dim: shape.iter().map(|&dim| dim as i64).collect(),
                })
                .collect(),
        }),
        ..LayerParameter::default()
    };
    let param = NetParameter {
        force_backward: u.arbitrary()?,
        layer: vec![input, layer],
        ..NetParameter::default()
    };
    let Ok(mut net) = Net::<T>::new(&param, "fuzz.prototxt", &BuildContext::default()) else {
        return Ok(());
    };
    for round in 0..2 {
        let fed = if round == 0 {
            shapes.clone()
        } else {
            random_shapes(u, bottom_count)?
        };
        let classes = fed.first().and_then(|s| s.get(1)).copied().unwrap_or(1);
        for (name, shape) in names.iter().zip(fed) {
            let values = random_values(u, &shape, classes)?;
            let values = values.into_iter().map(T::from_f64).collect();
            if net.set_input(name, &shape, values).is_err() {
                return Ok(());
            }
        }
        if net.forward().is_ok() {
            let _ = net.backward();
        }
        let _ = net.losses();
        let _ = net.input_gradients();
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.int_in_range(0..=3u8) {
        Ok(0) => run::<f32>(&mut u),
        Ok(1) => run::<f64>(&mut u),
        Ok(2) => run::<half::f16>(&mut u),
        _ => run::<half::bf16>(&mut u),
    };
});
