//! GPU forward and backward of every bench net, per element type, with the
//! device synchronised before each clock read. Without a usable GPU the
//! bench prints why and measures nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use caffe_loss::check::fill_random_inputs;
use caffe_loss::gpu::GpuElement;
use caffe_loss::gpu_net::{upload_net, GpuNet};
use caffe_loss::net::{load_model, LoadedNet};

/// Nets timed: the realistic sizes of tests/data/bench-nets and the
/// bandwidth-sized nets of benches/nets (about 64 MB of scores each).
fn nets() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut nets = Vec::new();
    for dir in ["tests/data/bench-nets", "benches/nets"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "prototxt"))
            .collect();
        found.sort();
        nets.extend(found);
    }
    nets
}

/// Bytes of every Input blob, the memory one pass must at least read.
fn input_bytes<T: GpuElement>(model: &Path) -> u64 {
    let Ok(param) = caffe_loss::prototxt::read_net(model, caffe_loss::caffe::Phase::Train) else {
        return 0;
    };
    let elements: i64 = param
        .layer
        .iter()
        .filter(|l| l.r#type() == "Input")
        .flat_map(|l| l.input_param.iter().flat_map(|p| p.shape.iter()))
        .map(|s| s.dim.iter().product::<i64>())
        .sum();
    u64::try_from(elements).unwrap_or(0) * T::BYTES as u64
}

/// Builds the net of `model` with random inputs of the ranges its layers expect.
fn load_with_random_inputs<T: GpuElement>(model: &Path) -> caffe_loss::Result<LoadedNet<T>> {
    let mut loaded = load_model::<T>(model, caffe_loss::caffe::Phase::Train)?;
    fill_random_inputs(&mut loaded.net, &loaded.param)?;
    Ok(loaded)
}

fn time_pass<T: GpuElement>(
    net: &mut GpuNet<T>,
    layer: usize,
    backward: bool,
    iterations: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        if backward {
            let _ = net.prepare_backward();
        }
        let _ = net.synchronize();
        let start = Instant::now();
        let _ = if backward {
            net.backward_layer(layer)
        } else {
            net.forward_layer(layer).map(|_| ())
        };
        let _ = net.synchronize();
        total += start.elapsed();
    }
    total
}

fn bench_dtype<T: GpuElement>(c: &mut Criterion) {
    for model in nets() {
        let name = model
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let mut net = match load_with_random_inputs::<T>(&model).and_then(upload_net) {
            Ok(net) => net,
            Err(e) => {
                println!("skipped {name} ({}): {e}", T::NAME);
                continue;
            }
        };
        let _ = net.forward();
        let _ = net.backward();
        let mut group = c.benchmark_group(format!("gpu/{}", T::NAME));
        group.sample_size(20);
        group.throughput(Throughput::Bytes(input_bytes::<T>(&model)));
        // Layer 0 is the Input layer; the timed layer is the one after it.
        let layer = net.num_layers().saturating_sub(1);
        for (pass, backward) in [("forward", false), ("backward", true)] {
            group.bench_function(BenchmarkId::new(pass, &name), |b| {
                b.iter_custom(|iterations| time_pass(&mut net, layer, backward, iterations))
            });
        }
        group.finish();
    }
}

fn gpu_benches(c: &mut Criterion) {
    if let Err(reason) = caffe_loss::gpu::probe() {
        println!("skipped: no usable GPU: {reason}");
        return;
    }
    bench_dtype::<f32>(c);
    bench_dtype::<half::f16>(c);
}

criterion_group!(benches, gpu_benches);
criterion_main!(benches);
