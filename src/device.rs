//! Choice of the device a command runs on.

use crate::error::{Error, Result};

/// Device requested by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU path.
    #[default]
    Cpu,
    /// A CUDA GPU; an error when none is usable.
    Cuda,
    /// A CUDA GPU when one is usable, else the CPU with a log line saying why.
    Auto,
}

/// Device a command actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The CPU path.
    Cpu,
    /// CUDA device with this ordinal.
    Cuda(usize),
}

/// Returns why no CUDA device is usable, or `Ok` when device 0 is.
///
/// Asks whether the driver library can be loaded before touching it, because
/// cudarc panics when `libcuda.so` is missing.
pub fn cuda_probe() -> std::result::Result<(), String> {
    crate::gpu::probe()
}

/// Compiles every kernel for every element type for `arch` and prints a table
/// of PTX sizes and compile times. The default architecture is the GPU's own
/// when one is usable, else sm_90. The PTX is written into `out` when given.
pub fn print_kernel_report(arch: Option<&str>, out: Option<&std::path::Path>) -> Result<()> {
    let arch = match arch {
        Some(arch) => arch.to_string(),
        None => crate::gpu::Gpu::new(0)
            .map(|gpu| gpu.arch().to_string())
            .unwrap_or_else(|_| "sm_90".to_string()),
    };
    let rows = crate::gpu::kernel_report(&arch, out)?;
    println!(
        "{:<18} {:<6} {:>10} {:>11}",
        "kernel", "dtype", "PTX bytes", "compile ms"
    );
    for row in &rows {
        println!(
            "{:<18} {:<6} {:>10} {:>11.1}",
            row.file, row.dtype, row.ptx_bytes, row.compile_ms
        );
    }
    println!("{} modules compiled for {arch}", rows.len());
    Ok(())
}

/// Resolves the user's choice to a device.
pub fn select(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => match cuda_probe() {
            Ok(()) => Ok(Device::Cuda(0)),
            Err(why) => Err(Error::Device(format!(
                "--device cuda was requested but no GPU is usable: {why}; use --device cpu or auto"
            ))),
        },
        DeviceChoice::Auto => match cuda_probe() {
            Ok(()) => {
                log::info!("device: using CUDA device 0");
                Ok(Device::Cuda(0))
            }
            Err(why) => {
                log::warn!("device: no usable GPU ({why}); running on the CPU");
                Ok(Device::Cpu)
            }
        },
    }
}
