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
    // SAFETY: only asks the loader whether the driver library can be opened.
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    if !present {
        return Err("the CUDA driver library (libcuda.so) could not be loaded".to_string());
    }
    Ok(())
}

/// Prints the NVRTC kernel table of `caffe-loss kernels`.
pub fn print_kernel_report(_arch: Option<&str>, _out: Option<&std::path::Path>) -> Result<()> {
    Err(Error::Device("kernel report not wired yet".to_string()))
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
