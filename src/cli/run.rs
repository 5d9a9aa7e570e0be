//! `caffe-loss run`: feed inputs, run forward and backward, write the results.

use std::path::{Path, PathBuf};

use caffe_loss::caffe::Phase;
use caffe_loss::device::{self, Device, DeviceChoice};
use caffe_loss::layers::BuildContext;
use caffe_loss::net::Net;
use caffe_loss::npy::{read_npy_as, write_npy};
use caffe_loss::{Element, Error, Result};

/// Arguments of `run`.
pub struct RunOptions {
    pub model: PathBuf,
    pub inputs: Vec<String>,
    pub out: Option<PathBuf>,
    pub device: DeviceChoice,
    pub phase: Phase,
}

/// Builds the net of `options.model` in element type `T` with its inputs fed.
pub fn load_net<T: Element>(model: &Path, inputs: &[String], phase: Phase) -> Result<Net<T>> {
    let param = caffe_loss::prototxt::read_net(model, phase)?;
    let context = BuildContext {
        model_dir: model.parent().map(Path::to_path_buf),
    };
    let file = model.display().to_string();
    let mut net = Net::<T>::new(&param, &file, &context)?;
    let mut fed = Vec::new();
    for arg in inputs {
        let (name, path) = super::split_pair(arg, "--input", "label=label.npy")?;
        let (shape, values) = read_npy_as::<T>(Path::new(path))?;
        net.set_input(name, &shape, values)?;
        fed.push(name.to_string());
    }
    let missing: Vec<String> = net
        .input_names()
        .into_iter()
        .filter(|n| !fed.contains(n))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "no --input given for input blob(s) {} of {file}; add --input NAME=FILE.npy for each",
            missing.join(", ")
        )));
    }
    Ok(net)
}

/// Runs the `run` command.
pub fn run<T: Element>(options: &RunOptions) -> Result<()> {
    let device = device::select(options.device)?;
    if let Device::Cuda(_) = device {
        return caffe_loss::gpu_net::run_on_gpu::<T>(
            options.model.as_path(),
            &options.inputs,
            options.phase,
            options.out.as_deref(),
        );
    }
    let mut net = load_net::<T>(&options.model, &options.inputs, options.phase)?;
    net.forward()?;
    net.backward()?;
    for loss in net.losses() {
        println!("{} = {}", loss.name, loss.value);
    }
    if let Some(out) = &options.out {
        write_results(&net, out)?;
    }
    Ok(())
}

/// Writes `out/data/<top>.npy` and `out/diff/<blob>.npy`.
pub fn write_results<T: Element>(net: &Net<T>, out: &Path) -> Result<()> {
    let data_dir = out.join("data");
    let diff_dir = out.join("diff");
    for dir in [&data_dir, &diff_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create folder: {e}")))?;
    }
    for (name, blob) in net.outputs() {
        write_npy(
            &data_dir.join(format!("{name}.npy")),
            blob.shape(),
            blob.data(),
        )?;
    }
    for (name, blob) in net.input_gradients() {
        write_npy(
            &diff_dir.join(format!("{name}.npy")),
            blob.shape(),
            blob.diff(),
        )?;
    }
    Ok(())
}
