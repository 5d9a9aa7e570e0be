//! Fuzzes the model path: prototxt text, parsed, upgraded from V0 and V1,
//! filtered for each phase, then built into a net (every layer's set-up and
//! reshape) and run forward and backward on its declared input shapes.

#![no_main]

use caffe_loss::caffe::{NetParameter, NetState, Phase};
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::prototxt::{filter_net, parse_net_text, upgrade_net};
use libfuzzer_sys::fuzz_target;

/// Largest element count of a declared input that the target builds. Larger
/// nets are skipped so that the fuzzer spends its time on code paths rather
/// than on allocating and filling big blobs.
const MAX_INPUT_ELEMENTS: usize = 1 << 16;

/// An InfogainLoss matrix of the reference cases, read in place of any
/// `source:` the input names, so that fuzzed paths never reach real files.
const H_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/caffe-reference/infogain_source_file/H.binaryproto"
);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(net) = parse_net_text(text, "fuzz.prototxt") else {
        return;
    };
    let Ok(net) = upgrade_net(net, "fuzz.prototxt") else {
        return;
    };
    for phase in [Phase::Train, Phase::Test] {
        let state = NetState {
            phase: Some(phase as i32),
            level: Some(0),
            stage: Vec::new(),
        };
        let Ok(mut net) = filter_net(&net, &state, "fuzz.prototxt") else {
            continue;
        };
        if declares_large_input(&net) {
            return;
        }
        redirect_sources(&mut net);
        let context = BuildContext::default();
        let Ok(mut built) = Net::<f32>::new(&net, "fuzz.prototxt", &context) else {
            continue;
        };
        if built.forward().is_ok() {
            let _ = built.backward();
        }
    }
});

/// Checks whether an Input layer declares a shape above
/// [`MAX_INPUT_ELEMENTS`], leaving zero dimensions out as the net's own limit
/// does.
fn declares_large_input(net: &NetParameter) -> bool {
    net.layer
        .iter()
        .filter_map(|layer| layer.input_param.as_ref())
        .flat_map(|param| param.shape.iter())
        .any(|shape| {
            let elements = shape
                .dim
                .iter()
                .filter(|&&dim| dim > 0)
                .fold(1u64, |product, &dim| product.saturating_mul(dim as u64));
            elements > MAX_INPUT_ELEMENTS as u64
        })
}

/// Points every infogain `source` at the fixture, or at a missing file when
/// the given path has an odd length, so both branches stay reachable.
fn redirect_sources(net: &mut NetParameter) {
    for layer in &mut net.layer {
        if let Some(param) = layer.infogain_loss_param.as_mut() {
            if let Some(source) = param.source.as_mut() {
                *source = if source.len() % 2 == 0 {
                    H_FIXTURE.to_string()
                } else {
                    "/nonexistent/H.binaryproto".to_string()
                };
            }
        }
    }
}
