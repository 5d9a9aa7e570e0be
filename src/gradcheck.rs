//! Numerical gradient check by central differences, in f64.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::Result;
use crate::net::Net;

/// Settings of a gradient check.
#[derive(Debug, Clone, Copy)]
pub struct GradCheckOptions {
    /// Finite-difference step.
    pub step: f64,
    /// Seed of the random top weights and of the element sample.
    pub seed: u64,
    /// Largest number of elements checked per input blob; a larger blob is
    /// checked on a random sample of this size.
    pub max_elements: usize,
}

impl Default for GradCheckOptions {
    fn default() -> Self {
        GradCheckOptions {
            step: 1e-4,
            seed: 1701,
            max_elements: 256,
        }
    }
}

/// Result of a gradient check for one input blob.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheckResult {
    /// Input blob name.
    pub blob: String,
    /// Number of elements compared.
    pub checked: usize,
    /// Largest `|analytic - numeric| / max(|analytic|, |numeric|, 1)`.
    pub max_error: f64,
}

/// Checks the backward pass of `net` against central differences.
///
/// The objective is `E = Σ_tops Σ_i s_i y_i` over every top of every
/// non-Input layer, where `s` is the top's loss weight for a scalar loss top
/// and a fixed random weight in [-1, 1] per element otherwise, so that the
/// check also covers layers whose outputs always sum to a constant (Softmax).
pub fn check_gradients(
    net: &mut Net<f64>,
    options: GradCheckOptions,
) -> Result<Vec<GradCheckResult>> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    net.forward()?;
    let seeds = make_seeds(net, &mut rng);
    let objective = |net: &mut Net<f64>| -> Result<f64> {
        net.forward()?;
        Ok(objective_of(net, &seeds))
    };

    net.prepare_backward();
    apply_seeds(net, &seeds);
    net.backward_from_seeds()?;
    let analytic: Vec<(String, Vec<f64>)> = net
        .input_gradients()
        .into_iter()
        .map(|(name, blob)| (name.to_string(), blob.diff().to_vec()))
        .collect();

    let mut results = Vec::new();
    for (name, grad) in analytic {
        let count = grad.len();
        let indices: Vec<usize> = if count <= options.max_elements {
            (0..count).collect()
        } else {
            (0..options.max_elements)
                .map(|_| rng.random_range(0..count))
                .collect()
        };
        let mut max_error = 0.0f64;
        for &i in &indices {
            let original = read(net, &name, i);
            write(net, &name, i, original + options.step);
            let plus = objective(net)?;
            write(net, &name, i, original - options.step);
            let minus = objective(net)?;
            write(net, &name, i, original);
            let numeric = (plus - minus) / (2.0 * options.step);
            let scale = grad[i].abs().max(numeric.abs()).max(1.0);
            let error = (grad[i] - numeric).abs() / scale;
            if error.is_nan() || error > max_error {
                max_error = if error.is_nan() { f64::NAN } else { error };
            }
        }
        results.push(GradCheckResult {
            blob: name,
            checked: indices.len(),
            max_error,
        });
    }
    net.forward()?;
    Ok(results)
}

/// Seeds per (layer, top): `None` keeps the loss weight.
type Seeds = Vec<(usize, usize, Option<Vec<f64>>)>;

fn make_seeds(net: &Net<f64>, rng: &mut StdRng) -> Seeds {
    let mut seeds = Vec::new();
    for layer in 0..net.num_layers() {
        let Some(info) = net.layer_info(layer) else {
            continue;
        };
        if info.layer_type == "Input" {
            continue;
        }
        let weights = net.layer_loss_weights(layer).unwrap_or(&[]).to_vec();
        for (top, name) in info.tops.iter().enumerate() {
            let weight = weights.get(top).copied().unwrap_or(0.0);
            let count = net.blob(name).map_or(0, |b| b.count());
            if weight != 0.0 && count == 1 {
                seeds.push((layer, top, None));
            } else if info.layer_type == "Accuracy" {
                // Accuracy is piecewise constant and has no gradient.
                continue;
            } else if !is_loss_scalar(&info.layer_type, top) {
                let values = (0..count).map(|_| rng.random_range(-1.0..1.0)).collect();
                seeds.push((layer, top, Some(values)));
            }
        }
    }
    seeds
}

fn is_loss_scalar(layer_type: &str, top: usize) -> bool {
    top == 0 && layer_type.ends_with("Loss")
}

fn apply_seeds(net: &mut Net<f64>, seeds: &Seeds) {
    for (layer, top, values) in seeds {
        if let (Some(values), Some(diff)) = (values, net.output_diff_mut(*layer, *top)) {
            diff.copy_from_slice(values);
        }
    }
}

fn objective_of(net: &Net<f64>, seeds: &Seeds) -> f64 {
    let weights_of = |layer: usize, top: usize| {
        net.layer_loss_weights(layer)
            .and_then(|w| w.get(top).copied())
            .unwrap_or(0.0)
    };
    let mut total = 0.0;
    for (layer, top, values) in seeds {
        let Some(name) = net.layer_info(*layer).and_then(|i| i.tops.get(*top)) else {
            continue;
        };
        let Some(blob) = net.blob(name) else { continue };
        total += match values {
            None => weights_of(*layer, *top) * blob.data().iter().sum::<f64>(),
            Some(v) => blob.data().iter().zip(v).map(|(y, s)| y * s).sum::<f64>(),
        };
    }
    total
}

fn read(net: &mut Net<f64>, name: &str, index: usize) -> f64 {
    net.input_data_mut(name)
        .and_then(|d| d.get(index).copied())
        .unwrap_or(0.0)
}

fn write(net: &mut Net<f64>, name: &str, index: usize, value: f64) {
    if let Some(slot) = net.input_data_mut(name).and_then(|d| d.get_mut(index)) {
        *slot = value;
    }
}
