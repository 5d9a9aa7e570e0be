//! Selecting the layers of a net that run in a given state, with the rules of
//! Caffe 1.0's `Net::FilterNet` and `Net::StateMeetsRule`.

use crate::caffe;
use crate::error::{Error, Result};

/// Returns a copy of `net` that keeps only the layers whose include/exclude
/// rules admit the state, and whose `state` field is that state.
///
/// The state starts from the net's own `state` field. A `phase` or `level` set
/// in `state` replaces the net's, and the stages of `state` are added to the
/// net's stages, as Caffe 1.0's `Net(param_file, phase, level, stages)` does.
/// An unset phase means TEST and an unset level means 0, the defaults of
/// caffe.proto.
///
/// A layer with no rules is kept. A layer with include rules is kept when any
/// of them is met. A layer with exclude rules is kept unless one of them is
/// met. A rule is met when its phase (if set) equals the state's, the level is
/// within its min_level and max_level (where set), the state has every one of
/// its `stage`s and none of its `not_stage`s.
///
/// Only the upgraded `layer` entries are filtered, so call [`super::upgrade_net`]
/// first. A layer with both include and exclude rules is an [`Error::Model`]
/// naming the layer and `file`.
pub fn filter_net(
    net: &caffe::NetParameter,
    state: &caffe::NetState,
    file: &str,
) -> Result<caffe::NetParameter> {
    let mut merged = net.state.clone().unwrap_or_default();
    if state.phase.is_some() {
        merged.phase = state.phase;
    }
    if state.level.is_some() {
        merged.level = state.level;
    }
    merged.stage.extend(state.stage.iter().cloned());

    let mut layers = Vec::with_capacity(net.layer.len());
    for (index, layer) in net.layer.iter().enumerate() {
        if !layer.include.is_empty() && !layer.exclude.is_empty() {
            return Err(Error::model(
                file,
                format!(
                    "layer {index} '{}' has both include and exclude rules; \
                     specify only one kind",
                    layer.name()
                ),
            ));
        }
        let included = if layer.include.is_empty() {
            !layer
                .exclude
                .iter()
                .any(|rule| state_meets_rule(&merged, rule))
        } else {
            layer
                .include
                .iter()
                .any(|rule| state_meets_rule(&merged, rule))
        };
        if included {
            layers.push(layer.clone());
        } else {
            log::debug!(
                "{file}: layer '{}' is left out by its include/exclude rules",
                layer.name()
            );
        }
    }

    let mut filtered = net.clone();
    filtered.layer = layers;
    filtered.state = Some(merged);
    Ok(filtered)
}

/// Tells whether `state` meets every condition that `rule` sets.
fn state_meets_rule(state: &caffe::NetState, rule: &caffe::NetStateRule) -> bool {
    let phase = state.phase.unwrap_or(caffe::Phase::Test as i32);
    let level = state.level.unwrap_or(0);
    if rule.phase.is_some_and(|required| required != phase) {
        return false;
    }
    if rule.min_level.is_some_and(|min_level| level < min_level) {
        return false;
    }
    if rule.max_level.is_some_and(|max_level| level > max_level) {
        return false;
    }
    let has_stage = |stage: &String| state.stage.contains(stage);
    rule.stage.iter().all(has_stage) && !rule.not_stage.iter().any(has_stage)
}
