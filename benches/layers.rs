//! CPU forward and backward time of every layer, in f32 and f16, at the
//! shapes of tests/data/bench-nets and at one large shape per layer (at
//! least 64 MB of f32 scores).
//!
//! Benchmark ids are `<layer>_<pass>/<dtype>/<shape>`, the shape being that
//! of `bottom[0]`. Throughput counts the bytes of the blobs a pass reads and
//! writes at the element type: forward reads the bottoms and writes the tops,
//! backward reads the bottoms and writes one gradient per bottom that
//! receives one. Run with `cargo bench --bench layers`; a filter such as
//! `cargo bench --bench layers -- softmax_with_loss` selects a subset.
//!
//! Backward runs without a forward pass in between. HingeLoss therefore
//! shows its full backward here: right after a forward pass with loss
//! weight 1 (as in `caffe-loss time`) its backward only hands over the
//! gradient that forward computed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use caffe_loss::caffe::{NetParameter, Phase};
use caffe_loss::check::fill_random_inputs;
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::Element;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use half::f16;

/// One benchmarked layer: its bench net and the Input shapes of its large
/// variant, in the order the Input layer declares its tops.
struct LayerBench {
    /// Name used in benchmark ids.
    name: &'static str,
    /// Bench nets in tests/data/bench-nets with this layer.
    nets: &'static [&'static str],
    /// Input shapes of the large variant.
    large: &'static [&'static [usize]],
}

/// 64 × 1000 × 16 × 16 f32 scores are 65.5 MB; the other large shapes have
/// 2^24 elements (67.1 MB) per score blob.
const LAYERS: &[LayerBench] = &[
    LayerBench {
        name: "softmax_with_loss",
        nets: &["softmax_loss_imagenet", "softmax_loss_segmentation"],
        large: &[&[64, 1000, 16, 16], &[64, 1, 16, 16]],
    },
    LayerBench {
        name: "softmax",
        nets: &["softmax_imagenet"],
        large: &[&[64, 1000, 16, 16]],
    },
    LayerBench {
        name: "sigmoid",
        nets: &["sigmoid_large"],
        large: &[&[4096, 4096]],
    },
    LayerBench {
        name: "euclidean_loss",
        nets: &["euclidean_large"],
        large: &[&[4096, 4096], &[4096, 4096]],
    },
    LayerBench {
        name: "hinge_loss",
        nets: &["hinge_imagenet"],
        large: &[&[16384, 1024], &[16384]],
    },
    LayerBench {
        name: "sigmoid_cross_entropy_loss",
        nets: &["sigmoid_ce_edges"],
        large: &[&[64, 1, 512, 512], &[64, 1, 512, 512]],
    },
    LayerBench {
        name: "multinomial_logistic_loss",
        nets: &["multinomial_imagenet"],
        large: &[&[16384, 1024], &[16384, 1, 1, 1]],
    },
    LayerBench {
        name: "infogain_loss",
        nets: &["infogain_imagenet"],
        large: &[&[64, 1000, 16, 16], &[64, 1, 16, 16], &[1, 1, 1000, 1000]],
    },
    LayerBench {
        name: "contrastive_loss",
        nets: &["contrastive_embedding"],
        large: &[&[65536, 256, 1, 1], &[65536, 256, 1, 1], &[65536, 1, 1, 1]],
    },
];

/// Index of the benchmarked layer in every bench net (0 is the Input layer).
const LAYER: usize = 1;

fn bench_nets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bench-nets")
}

/// Reads a bench net and, when `shapes` is given, replaces its Input shapes.
fn net_param(net: &str, shapes: Option<&[&[usize]]>) -> NetParameter {
    let path = bench_nets_dir().join(format!("{net}.prototxt"));
    let mut param = caffe_loss::prototxt::read_net(&path, Phase::Train)
        .unwrap_or_else(|e| panic!("bench net {} does not load: {e}", path.display()));
    if let Some(shapes) = shapes {
        let input = param.layer[0]
            .input_param
            .as_mut()
            .expect("bench nets start with an Input layer");
        assert_eq!(
            input.shape.len(),
            shapes.len(),
            "{net}: one shape per input"
        );
        for (shape, dims) in input.shape.iter_mut().zip(shapes) {
            shape.dim = dims.iter().map(|&d| d as i64).collect();
        }
    }
    param
}

/// Builds the net in `T`, fills its inputs with valid random values and runs
/// one forward and backward pass so that every buffer is allocated.
fn build<T: Element>(param: &NetParameter) -> Net<T> {
    let context = BuildContext {
        model_dir: Some(bench_nets_dir()),
    };
    let mut net = Net::<T>::new(param, "bench net", &context).expect("bench net builds");
    fill_random_inputs(&mut net, param).expect("inputs fill");
    net.forward().expect("forward runs");
    net.backward().expect("backward runs");
    net
}

/// Bytes of the blobs named `names` at the element type.
fn blob_bytes<T: Element>(net: &Net<T>, names: &[String]) -> u64 {
    let elements: usize = names
        .iter()
        .filter_map(|name| net.blob(name))
        .map(|blob| blob.count())
        .sum();
    (elements * T::BYTES) as u64
}

fn shape_id(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    dims.join("x")
}

/// Pass of the layer that a benchmark times.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Forward,
    Backward,
}

/// Benchmarks one pass of the layer of `net`.
fn bench_pass<T: Element>(group: &mut BenchmarkGroup<'_, WallTime>, net: &mut Net<T>, pass: Pass) {
    let info = net
        .layer_info(LAYER)
        .expect("bench nets have one layer after Input")
        .clone();
    let scores = net.blob(&info.bottoms[0]).expect("bottom[0] exists");
    let id = format!("{}/{}", T::NAME, shape_id(scores.shape()));
    let bottom_bytes = blob_bytes(net, &info.bottoms);
    match pass {
        Pass::Forward => {
            let top_bytes = blob_bytes(net, &info.tops);
            group.throughput(Throughput::Bytes(bottom_bytes + top_bytes));
            group.bench_function(&id, |b| {
                b.iter(|| net.forward_layer(LAYER).expect("forward runs"));
            });
        }
        Pass::Backward => {
            let receiving: Vec<String> = net
                .input_gradients()
                .into_iter()
                .map(|(name, _)| name.to_string())
                .collect();
            let gradient_bytes = blob_bytes(net, &receiving);
            group.throughput(Throughput::Bytes(bottom_bytes + gradient_bytes));
            group.bench_function(&id, |b| {
                // Each timed backward pass starts from fresh loss-weight
                // seeds and zero gradients, as after a forward pass. The
                // forward pass itself is not repeated, because it would
                // dominate the run time of the benchmark.
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        net.prepare_backward();
                        let start = Instant::now();
                        net.backward_layer(LAYER).expect("backward runs");
                        total += start.elapsed();
                    }
                    total
                });
            });
        }
    }
}

fn layers(c: &mut Criterion) {
    for layer in LAYERS {
        let mut params: Vec<NetParameter> =
            layer.nets.iter().map(|net| net_param(net, None)).collect();
        params.push(net_param(layer.nets[0], Some(layer.large)));
        let large = params.len() - 1;
        let mut nets_f32: Vec<Net<f32>> = params.iter().map(build).collect();
        let mut nets_f16: Vec<Net<f16>> = params.iter().map(build).collect();
        for pass in [Pass::Forward, Pass::Backward] {
            let suffix = if pass == Pass::Forward {
                "forward"
            } else {
                "backward"
            };
            let mut group = c.benchmark_group(format!("{}_{suffix}", layer.name));
            for index in 0..params.len() {
                if index == large {
                    // One pass over 64 MB takes milliseconds to tens of
                    // milliseconds; give the ten samples room.
                    group.measurement_time(Duration::from_secs(2));
                }
                bench_pass(&mut group, &mut nets_f32[index], pass);
                bench_pass(&mut group, &mut nets_f16[index], pass);
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    // Plots take seconds per benchmark, longer than the measurement.
    config = Criterion::default()
        .without_plots()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500));
    targets = layers
}
criterion_main!(benches);
