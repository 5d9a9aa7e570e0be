//! GPU path: CUDA kernels compiled at run time with NVRTC, and their
//! launchers.

pub mod device;
pub mod launch;
pub mod nvrtc;

pub use device::{probe, Gpu};
pub use nvrtc::{compile_ptx, kernel_report, KernelFile, KernelReportRow, KERNEL_FILES};
