//! Device probe and the [`Gpu`] handle: context, stream and kernel cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};
use cudarc::nvrtc::Ptx;

use crate::error::{Error, Result};
use crate::gpu::nvrtc::{compile_ptx, nvrtc_available, KernelFile};

/// Renders a driver error as `CUDA_ERROR_NAME (description)`.
pub fn describe_driver_error(error: &DriverError) -> String {
    let name = error
        .error_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("CUresult {}", error.0 as i64));
    match error.error_string() {
        Ok(text) => format!("{name} ({})", text.to_string_lossy()),
        Err(_) => name,
    }
}

/// Checks whether CUDA can run kernels here; returns why not.
///
/// Checks, in order: the driver library `libcuda.so` can be loaded, NVRTC
/// can be loaded, the driver initialises and reports at least one GPU. cudarc
/// panics when a library is missing, so call this (or [`Gpu::new`], which
/// calls it) before any other CUDA function.
pub fn probe() -> Result<(), String> {
    // SAFETY: is_culib_present only tries to dlopen the candidate names of
    // the driver library and drops the handles.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(format!(
            "the CUDA driver library was not found (tried {}); this machine has no NVIDIA \
             driver, or its folder is not on the loader path",
            crate::gpu::library_candidates("cuda")
        ));
    }
    nvrtc_available()?;
    let count = CudaContext::device_count().map_err(|e| {
        format!(
            "the CUDA driver failed to start: {}",
            describe_driver_error(&e)
        )
    })?;
    if count < 1 {
        return Err("the CUDA driver reports no GPU".to_string());
    }
    Ok(())
}

/// Compiled modules per (kernel file, dtype) and functions per entry-point
/// name.
#[derive(Default)]
struct KernelCache {
    modules: HashMap<(String, String), Arc<CudaModule>>,
    functions: HashMap<String, CudaFunction>,
}

/// One GPU: its CUDA context, the stream every operation of this crate runs
/// on, and the kernels compiled for it so far.
///
/// Kernels are compiled with NVRTC on first use, for the device's own
/// architecture, one module per (kernel file, element type), and cached for
/// the life of the handle (and on disk, see [`crate::gpu::nvrtc::compile_ptx`]).
pub struct Gpu {
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    arch: String,
    kernels: Mutex<KernelCache>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("ordinal", &self.context.ordinal())
            .field("name", &self.name)
            .field("arch", &self.arch)
            .finish_non_exhaustive()
    }
}

impl Gpu {
    /// Opens GPU `ordinal` (0 is the first) and creates a stream on it.
    ///
    /// # Errors
    ///
    /// [`Error::Device`] with the reason from [`probe`] when CUDA is not
    /// usable, when `ordinal` is not below the device count, or when the
    /// driver fails to create the context.
    pub fn new(ordinal: usize) -> Result<Gpu> {
        probe().map_err(Error::Device)?;
        let count = CudaContext::device_count().map_err(|e| {
            Error::Device(format!(
                "cuDeviceGetCount failed: {}",
                describe_driver_error(&e)
            ))
        })?;
        let count = usize::try_from(count).unwrap_or(0);
        if ordinal >= count {
            return Err(Error::Device(format!(
                "GPU {ordinal} does not exist; the driver reports {count} GPU(s), \
                 numbered from 0"
            )));
        }

        let context = CudaContext::new(ordinal).map_err(|e| {
            Error::Device(format!(
                "creating a context on GPU {ordinal} failed: {}",
                describe_driver_error(&e)
            ))
        })?;
        let (major, minor) = context.compute_capability().map_err(|e| {
            Error::Device(format!(
                "reading the compute capability of GPU {ordinal} failed: {}",
                describe_driver_error(&e)
            ))
        })?;
        let name = context.name().unwrap_or_else(|_| format!("GPU {ordinal}"));
        let stream = context.new_stream().map_err(|e| {
            Error::Device(format!(
                "creating a stream on GPU {ordinal} failed: {}",
                describe_driver_error(&e)
            ))
        })?;
        log::debug!("gpu: opened GPU {ordinal}, {name}, sm_{major}{minor}");

        Ok(Gpu {
            context,
            stream,
            name,
            arch: format!("sm_{major}{minor}"),
            kernels: Mutex::new(KernelCache::default()),
        })
    }

    /// Returns the CUDA context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.context
    }

    /// Returns the stream all operations run on; allocate and copy blobs on it.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Returns the device name reported by the driver.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the architecture kernels are compiled for, `sm_<major><minor>`
    /// from the compute capability (for example `sm_90`).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Returns entry point `<base>_<dtype>` of `file`, compiling and loading
    /// the file's module for `dtype` on first use.
    ///
    /// # Errors
    ///
    /// [`Error::KernelCompile`] when NVRTC rejects the file;
    /// [`Error::Device`] when the driver cannot load the module or the entry
    /// point does not exist.
    pub fn function(&self, file: &KernelFile, dtype: &str, base: &str) -> Result<CudaFunction> {
        let entry = KernelFile::entry_point(base, dtype);
        // A panic while the lock was held cannot leave the maps inconsistent
        // (each insert is a single call), so a poisoned lock is still usable.
        let mut cache = self.kernels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(function) = cache.functions.get(&entry) {
            return Ok(function.clone());
        }

        let key = (file.name.to_string(), dtype.to_string());
        let module = match cache.modules.get(&key) {
            Some(module) => module.clone(),
            None => {
                let ptx = compile_ptx(file, dtype, &self.arch)?;
                if ptx.contains('\0') {
                    // cudarc would panic turning it into a C string.
                    return Err(Error::Device(format!(
                        "the PTX of {} ({dtype}) contains a NUL byte",
                        file.name
                    )));
                }
                let started = Instant::now();
                let module = self.context.load_module(Ptx::from_src(ptx)).map_err(|e| {
                    Error::Device(format!(
                        "loading the {dtype} module of {} for {} failed: {}",
                        file.name,
                        self.arch,
                        describe_driver_error(&e)
                    ))
                })?;
                log::debug!(
                    "gpu: loaded {} ({dtype}) in {:.1} ms",
                    file.name,
                    started.elapsed().as_secs_f64() * 1e3
                );
                cache.modules.insert(key, module.clone());
                module
            }
        };

        let function = module.load_function(&entry).map_err(|e| {
            Error::Device(format!(
                "kernel {entry} not found in {}: {}",
                file.name,
                describe_driver_error(&e)
            ))
        })?;
        cache.functions.insert(entry, function.clone());
        Ok(function)
    }
}
