//! `caffe-loss time`: per-layer forward and backward times, like `caffe time`.

use std::path::Path;
use std::time::Instant;

use caffe_loss::caffe::Phase;
use caffe_loss::check::fill_random_inputs;
use caffe_loss::device::{self, Device, DeviceChoice};
use caffe_loss::gpu::GpuElement;
use caffe_loss::net::{load_model, Net};
use caffe_loss::{Element, Error, Result};

/// Runs the `time` command.
pub fn time<T: GpuElement>(model: &Path, iterations: usize, choice: DeviceChoice) -> Result<()> {
    if iterations == 0 {
        return Err(Error::Usage("--iterations must be at least 1".to_string()));
    }
    let device = device::select(choice)?;
    let mut loaded = load_model::<T>(model, Phase::Train)?;
    fill_random_inputs(&mut loaded.net, &loaded.param)?;
    let rows = match device {
        Device::Cuda(_) => caffe_loss::gpu_net::time_on_gpu(loaded, iterations)?,
        Device::Cpu => time_on_cpu(loaded.net, iterations)?,
    };
    for (name, forward, backward) in &rows {
        println!("{name:>16}\tforward: {forward:.5} ms.");
        println!("{name:>16}\tbackward: {backward:.5} ms.");
    }
    let forward: f64 = rows.iter().map(|r| r.1).sum();
    let backward: f64 = rows.iter().map(|r| r.2).sum();
    println!("Average Forward pass: {forward:.5} ms.");
    println!("Average Backward pass: {backward:.5} ms.");
    println!("Average Forward-Backward: {:.5} ms.", forward + backward);
    // As in `caffe time`: the timed iterations only, not setup or warm-up.
    println!(
        "Total Time: {:.3} ms.",
        (forward + backward) * iterations as f64
    );
    Ok(())
}

/// Times each layer on the CPU: (layer name, forward ms, backward ms).
fn time_on_cpu<T: Element>(mut net: Net<T>, iterations: usize) -> Result<Vec<(String, f64, f64)>> {
    let layers = net.num_layers();
    let mut forward = vec![0.0f64; layers];
    let mut backward = vec![0.0f64; layers];
    // One untimed pass warms caches and allocations.
    net.forward()?;
    net.backward()?;
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
    let per = |seconds: f64| seconds * 1000.0 / iterations as f64;
    Ok((0..layers)
        .map(|i| {
            let name = net.layer_info(i).map_or("?", |l| l.name.as_str());
            (name.to_string(), per(forward[i]), per(backward[i]))
        })
        .collect())
}
