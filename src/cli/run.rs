//! `caffe-loss run`: feed inputs, run forward and backward, write the results.

use std::path::{Path, PathBuf};

use caffe_loss::caffe::Phase;
use caffe_loss::device::{self, Device, DeviceChoice};
use caffe_loss::gpu::GpuElement;
use caffe_loss::net::{load_model, LoadedNet, Net};
use caffe_loss::npy::{read_npy_as, write_npy};
use caffe_loss::{Element, Error, Result};

/// Arguments of `run`.
pub struct RunOptions {
    pub model: PathBuf,
    pub inputs: Vec<String>,
    pub out: Option<PathBuf>,
    pub expect: Option<PathBuf>,
    pub device: DeviceChoice,
    pub phase: Phase,
}

/// Builds the net of `model` in element type `T` and feeds every Input blob
/// from the `BLOB=FILE.npy` arguments, each exactly once.
pub fn load_net<T: Element>(model: &Path, inputs: &[String], phase: Phase) -> Result<LoadedNet<T>> {
    let mut loaded = load_model::<T>(model, phase)?;
    let net = &mut loaded.net;
    let file = model.display().to_string();
    let mut fed = Vec::new();
    for arg in inputs {
        let (name, path) = super::split_pair(arg, "--input", "label=label.npy")?;
        if fed.iter().any(|f| f == name) {
            return Err(Error::Usage(format!(
                "--input {name} is given twice; give each input blob once"
            )));
        }
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
    Ok(loaded)
}

/// Runs the `run` command.
pub fn run<T: GpuElement>(options: &RunOptions) -> Result<()> {
    let device = device::select(options.device)?;
    let loaded = load_net::<T>(&options.model, &options.inputs, options.phase)?;
    let net = match device {
        Device::Cuda(_) => caffe_loss::gpu_net::run_on_gpu(loaded)?,
        Device::Cpu => {
            let mut net = loaded.net;
            net.forward()?;
            net.backward()?;
            net
        }
    };
    for loss in net.losses() {
        print_loss::<T>(&loss.name, loss.value);
    }
    if let Some(out) = &options.out {
        write_results(&net, out)?;
    }
    if let Some(expected) = &options.expect {
        compare_expected(&net, expected)?;
    }
    Ok(())
}

/// Prints `<top> = <value>` with the precision of the element type.
pub fn print_loss<T: Element>(name: &str, value: f64) {
    if T::NAME == "f64" {
        println!("{name} = {value}");
    } else {
        println!("{name} = {}", value as f32);
    }
}

/// Relative tolerance of `--expect` for f32 and f64: float32 arithmetic in
/// another order agrees with Caffe to about 1e-5; 1e-4 (plus 1e-6 absolute)
/// is a real difference.
const EXPECT_RELATIVE: f64 = 1e-4;
const EXPECT_ABSOLUTE: f64 = 1e-6;

/// Returns whether `got` matches `expected` for element type `T`. The 16-bit types
/// allow 4 units of their roundoff u times (1 + |expected|): one rounding of
/// the inputs and one of the result, doubled for second-order terms
/// (u = 2^-11 for f16, 2^-8 for bf16). A value beyond the type's range
/// matches an infinity of the same sign.
fn matches<T: Element>(expected: f64, got: f64) -> bool {
    let roundoff = match T::NAME {
        "f16" => 2f64.powi(-11),
        "bf16" => 2f64.powi(-8),
        _ => 0.0,
    };
    if got.is_infinite() && T::from_f64(expected).to_f64() == got {
        return true;
    }
    let error = (expected - got).abs();
    let tolerance = EXPECT_RELATIVE * expected.abs() + EXPECT_ABSOLUTE;
    error <= tolerance.max(4.0 * roundoff * (1.0 + expected.abs()))
}

/// Compares the tops and input gradients with `dir/data/*.npy` and
/// `dir/diff/*.npy` as written by Caffe (or by `run --out`).
fn compare_expected<T: Element>(net: &Net<T>, dir: &Path) -> Result<()> {
    let mut compared = 0usize;
    let mut worst = 0.0f64;
    for kind in ["data", "diff"] {
        let folder = dir.join(kind);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files
            .iter()
            .filter(|f| f.extension().is_some_and(|x| x == "npy"))
        {
            let stem = file.file_stem().unwrap_or_default().to_string_lossy();
            let name = blob_name_of_file(&stem);
            let got: Option<Vec<f64>> = if kind == "data" {
                net.blob(&name)
                    .map(|b| b.data().iter().map(|v| v.to_f64()).collect())
            } else {
                net.input_gradients()
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, b)| b.diff().iter().map(|v| v.to_f64()).collect())
            };
            let Some(got) = got else {
                return Err(Error::file(
                    file,
                    format!("this net produces no {kind} for '{name}'"),
                ));
            };
            let expected = caffe_loss::npy::read_npy(file)?;
            if expected.values.len() != got.len() {
                return Err(Error::file(
                    file,
                    format!(
                        "expected {} values, the net produced {}",
                        expected.values.len(),
                        got.len()
                    ),
                ));
            }
            for (i, (e, g)) in expected.values.iter().zip(&got).enumerate() {
                let error = (e - g).abs();
                if !matches::<T>(*e, *g) {
                    return Err(Error::file(
                        file,
                        format!("{kind} '{name}' differs at flat index {i}: expected {e}, got {g}"),
                    ));
                }
                if error.is_finite() {
                    worst = worst.max(error / e.abs().max(1e-6));
                }
            }
            compared += 1;
        }
    }
    if compared == 0 {
        return Err(Error::file(
            dir,
            "no expected data/*.npy or diff/*.npy files found",
        ));
    }
    println!(
        "matches {}: {compared} arrays, max relative error {worst:.2e}",
        dir.display()
    );
    Ok(())
}

/// Maximum file name length in bytes that most file systems accept
/// (`NAME_MAX` on Linux).
const MAX_FILE_NAME_BYTES: usize = 255;

/// Returns the file that `run --out` writes blob `name` to, `name.npy` with
/// `%`, `/`, `\`, control characters and a leading `.` percent-encoded, so
/// that a name such as `loss1/loss` or `../x` stays inside its folder.
pub fn blob_file_name(name: &str) -> String {
    let mut file = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        let escape = matches!(c, '%' | '/' | '\\') || c.is_control() || (i == 0 && c == '.');
        if escape {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                file.push_str(&format!("%{byte:02X}"));
            }
        } else {
            file.push(c);
        }
    }
    file.push_str(".npy");
    file
}

/// Returns the blob name of a file stem written by [`blob_file_name`].
pub fn blob_name_of_file(stem: &str) -> String {
    let bytes = stem.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Writes `out/data/<top>.npy` and `out/diff/<blob>.npy`, with file names
/// from [`blob_file_name`].
///
/// Every file name is checked before the first file is written, so a name
/// that is too long leaves `out` untouched.
pub fn write_results<T: Element>(net: &Net<T>, out: &Path) -> Result<()> {
    let data_dir = out.join("data");
    let diff_dir = out.join("diff");
    let mut files: Vec<(PathBuf, &[usize], &[T])> = Vec::new();
    for (name, blob) in net.outputs() {
        files.push((
            data_dir.join(blob_file_name(name)),
            blob.shape(),
            blob.data(),
        ));
    }
    for (name, blob) in net.input_gradients() {
        files.push((
            diff_dir.join(blob_file_name(name)),
            blob.shape(),
            blob.diff(),
        ));
    }
    for (path, _, _) in &files {
        let length = path.file_name().map_or(0, |name| name.len());
        if length > MAX_FILE_NAME_BYTES {
            return Err(Error::file(
                path,
                format!(
                    "cannot write this blob: its file name is {length} bytes long, more than \
                     the {MAX_FILE_NAME_BYTES} a file system accepts; shorten the blob name"
                ),
            ));
        }
    }
    for dir in [&data_dir, &diff_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create folder: {e}")))?;
    }
    for (path, shape, values) in files {
        write_npy(&path, shape, values)?;
    }
    Ok(())
}
