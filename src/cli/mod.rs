//! Command-line interface: argument definitions and dispatch.

mod run;
mod time;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use caffe_loss::caffe::Phase;
use caffe_loss::check::{self, CheckOptions};
use caffe_loss::device::DeviceChoice;
use caffe_loss::{Error, Result};

/// Caffe 1.0 loss layers on the CPU and on NVIDIA GPUs.
#[derive(Debug, Parser)]
#[command(name = "caffe-loss", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Feed a net's Input blobs from .npy files, run forward and backward and
    /// write every top and every input gradient.
    Run {
        /// Net definition (prototxt in the V2, V1 or V0 format).
        model: PathBuf,
        /// An Input blob and the .npy file that feeds it, as BLOB=FILE.
        #[arg(long = "input", value_name = "BLOB=FILE")]
        inputs: Vec<String>,
        /// Folder for data/<top>.npy and diff/<blob>.npy, with / and % in names
        /// written as %2F and %25; nothing is written without it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Folder of expected data/*.npy and diff/*.npy to compare with
        /// (1e-4 relative tolerance); exits 1 on the first mismatch.
        #[arg(long)]
        expect: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
        /// Phase used to filter layers by their include/exclude rules.
        #[arg(long, value_enum, default_value_t = PhaseArg::Train)]
        phase: PhaseArg,
    },
    /// Check every supported layer of any net: random valid inputs, forward,
    /// backward and a finite-difference gradient check, one row per layer.
    Check {
        /// Net definition (prototxt), train/val or deploy.
        model: PathBuf,
        /// Batch size for bottoms whose size the net does not declare.
        #[arg(long, default_value_t = 2)]
        batch: usize,
        /// Shape of a bottom blob, as BLOB=N,C,H,W (any number of axes).
        #[arg(long = "shape", value_name = "BLOB=DIMS")]
        shapes: Vec<String>,
        /// Device to compare against the f64 CPU reference.
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
        /// Phase used to filter layers by their include/exclude rules.
        #[arg(long, value_enum, default_value_t = PhaseArg::Train)]
        phase: PhaseArg,
    },
    /// Time each layer's forward and backward pass, like `caffe time`.
    Time {
        /// Net definition (prototxt) whose Input blobs declare their shapes.
        model: PathBuf,
        /// Number of timed forward/backward iterations.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Compile every CUDA kernel for every element type with NVRTC and print
    /// PTX sizes and compile times; needs no GPU.
    Kernels {
        /// Target architecture (default sm_90, or the GPU's own when present).
        #[arg(long)]
        arch: Option<String>,
        /// Folder to write each module's PTX into as <file>_<dtype>.ptx.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Options shared by `run` and `time`.
#[derive(Debug, clap::Args)]
struct Common {
    /// Device to run on: cpu, cuda, or auto (cuda when a GPU is usable, else cpu).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Element type of the blobs.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DtypeArg {
    F32,
    F64,
    F16,
    Bf16,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PhaseArg {
    Train,
    Test,
}

impl From<PhaseArg> for Phase {
    fn from(phase: PhaseArg) -> Phase {
        match phase {
            PhaseArg::Train => Phase::Train,
            PhaseArg::Test => Phase::Test,
        }
    }
}

impl From<DeviceArg> for DeviceChoice {
    fn from(device: DeviceArg) -> DeviceChoice {
        match device {
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Cuda => DeviceChoice::Cuda,
            DeviceArg::Auto => DeviceChoice::Auto,
        }
    }
}

/// Splits `NAME=VALUE`.
fn split_pair<'a>(arg: &'a str, option: &str, example: &str) -> Result<(&'a str, &'a str)> {
    arg.split_once('=')
        .filter(|(name, value)| !name.is_empty() && !value.is_empty())
        .ok_or_else(|| {
            Error::Usage(format!(
                "{option} expects NAME=VALUE (e.g. {option} {example}), got '{arg}'"
            ))
        })
}

/// Runs the parsed command and returns the process exit code.
pub fn execute(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            model,
            inputs,
            out,
            expect,
            common,
            phase,
        } => {
            let options = run::RunOptions {
                model,
                inputs,
                out,
                expect,
                device: common.device.into(),
                phase: phase.into(),
            };
            match common.dtype {
                DtypeArg::F32 => run::run::<f32>(&options),
                DtypeArg::F64 => run::run::<f64>(&options),
                DtypeArg::F16 => run::run::<half::f16>(&options),
                DtypeArg::Bf16 => run::run::<half::bf16>(&options),
            }?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            model,
            batch,
            shapes,
            device,
            phase,
        } => {
            let mut overrides = Vec::new();
            for arg in &shapes {
                let (name, dims) = split_pair(arg, "--shape", "data=2,3,4,4")?;
                let dims = dims
                    .split(',')
                    .map(|d| d.trim().parse::<usize>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| {
                        Error::Usage(format!(
                            "--shape {name}: expected comma-separated sizes like 2,3,4,4, got '{dims}'"
                        ))
                    })?;
                overrides.push((name.to_string(), dims));
            }
            let options = CheckOptions {
                batch,
                shapes: overrides,
                device: device.into(),
                phase: phase.into(),
                ..CheckOptions::default()
            };
            let report = check::check_model(&model, &options)?;
            print!("{}", report.table());
            Ok(if report.all_passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Time {
            model,
            iterations,
            common,
        } => {
            let device = common.device.into();
            match common.dtype {
                DtypeArg::F32 => time::time::<f32>(&model, iterations, device),
                DtypeArg::F64 => time::time::<f64>(&model, iterations, device),
                DtypeArg::F16 => time::time::<half::f16>(&model, iterations, device),
                DtypeArg::Bf16 => time::time::<half::bf16>(&model, iterations, device),
            }?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Kernels { arch, out } => {
            caffe_loss::device::print_kernel_report(arch.as_deref(), out.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
