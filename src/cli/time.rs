//! `caffe-loss time`: per-layer forward and backward times, like `caffe time`.

use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use caffe_loss::caffe::Phase;
use caffe_loss::check::random_input;
use caffe_loss::device::{self, Device, DeviceChoice};
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::{Element, Error, Result};

/// Runs the `time` command.
pub fn time<T: Element>(model: &Path, iterations: usize, choice: DeviceChoice) -> Result<()> {
    if iterations == 0 {
        return Err(Error::Usage("--iterations must be at least 1".to_string()));
    }
    if let Device::Cuda(_) = device::select(choice)? {
        return caffe_loss::gpu_net::time_on_gpu::<T>(model, iterations);
    }
    let param = caffe_loss::prototxt::read_net(model, Phase::Train)?;
    let context = BuildContext {
        model_dir: model.parent().map(Path::to_path_buf),
    };
    let mut net = Net::<T>::new(&param, &model.display().to_string(), &context)?;
    fill_random_inputs(&mut net, &param)?;

    let layers = net.num_layers();
    let mut forward = vec![0.0f64; layers];
    let mut backward = vec![0.0f64; layers];
    // One untimed pass warms caches and allocations.
    net.forward()?;
    net.backward()?;
    let total_start = Instant::now();
    for _ in 0..iterations {
        for (i, slot) in forward.iter_mut().enumerate() {
            let start = Instant::now();
            net.forward_layer(i)?;
            *slot += start.elapsed().as_secs_f64();
        }
        net.prepare_backward();
        for i in (0..layers).rev() {
            let start = Instant::now();
            net.backward_layer(i)?;
            backward[i] += start.elapsed().as_secs_f64();
        }
    }
    let total = total_start.elapsed().as_secs_f64();
    let per = |seconds: f64| seconds * 1000.0 / iterations as f64;
    for i in 0..layers {
        let name = net.layer_info(i).map_or("?", |l| l.name.as_str());
        println!("{name:>16}\tforward: {:.5} ms.", per(forward[i]));
        println!("{name:>16}\tbackward: {:.5} ms.", per(backward[i]));
    }
    println!("Average Forward pass: {:.5} ms.", per(forward.iter().sum()));
    println!(
        "Average Backward pass: {:.5} ms.",
        per(backward.iter().sum())
    );
    println!("Average Forward-Backward: {:.5} ms.", per(total));
    println!("Total Time: {:.3} ms.", total * 1000.0);
    Ok(())
}

/// Fills every Input blob with random values of the range its consumers
/// expect: labels in [0, C), targets in [0, 1], flags 0 or 1.
pub fn fill_random_inputs<T: Element>(
    net: &mut Net<T>,
    param: &caffe_loss::caffe::NetParameter,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(1701);
    for name in net.input_names() {
        let Some(shape) = net.blob(&name).map(|b| b.shape().to_vec()) else {
            continue;
        };
        let (role, classes) = role_of(param, &name, net);
        let values = random_input(&shape, role, classes, &mut rng);
        net.set_input(&name, &shape, values.into_iter().map(T::from_f64).collect())?;
    }
    Ok(())
}

fn role_of<T: Element>(
    param: &caffe_loss::caffe::NetParameter,
    name: &str,
    net: &Net<T>,
) -> (&'static str, usize) {
    for layer in &param.layer {
        let Some(index) = layer.bottom.iter().position(|b| b == name) else {
            continue;
        };
        let first = layer
            .bottom
            .first()
            .and_then(|b| net.blob(b))
            .map(|b| b.shape().to_vec());
        let first = first.unwrap_or_default();
        let per_sample = first.iter().skip(1).product::<usize>();
        let channel = |axis: i32| {
            caffe_loss::blob::canonical_axis(axis, first.len())
                .and_then(|a| first.get(a).copied())
                .unwrap_or(1)
        };
        let role = match (layer.r#type(), index) {
            ("SoftmaxWithLoss", 1) => (
                "label",
                channel(layer.softmax_param.as_ref().map_or(1, |p| p.axis())),
            ),
            ("InfogainLoss", 1) => (
                "label",
                channel(layer.infogain_loss_param.as_ref().map_or(1, |p| p.axis())),
            ),
            ("Accuracy", 1) => (
                "label",
                channel(layer.accuracy_param.as_ref().map_or(1, |p| p.axis())),
            ),
            ("InfogainLoss", 2) => ("matrix", 0),
            ("HingeLoss" | "MultinomialLogisticLoss", 1) => ("label", per_sample),
            ("MultinomialLogisticLoss", 0) => ("probabilities", 0),
            ("SigmoidCrossEntropyLoss", 1) => ("target", 0),
            ("ContrastiveLoss", 2) => ("flag", 0),
            _ => continue,
        };
        return role;
    }
    ("data", 0)
}
