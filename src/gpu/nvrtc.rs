//! Kernel sources, their compilation to PTX with NVRTC, and the on-disk PTX
//! cache.
//!
//! Each `.cu` file under `kernels/` is compiled once per element type. The
//! source handed to NVRTC is two generated `#define` lines,
//! `kernels/common.cuh` and the file itself. `#line` directives make NVRTC
//! diagnostics name `common.cuh` or the `.cu` file with their own line
//! numbers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use cudarc::nvrtc::{CompileError, CompileOptions};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::gpu::launch::BLOCK_THREADS;

/// One kernel source file and the base names of its entry points.
///
/// The entry point for element type `dtype` is `<base>_<dtype>`, for example
/// `softmax_loss_fwd_f32`.
#[derive(Debug, Clone, Copy)]
pub struct KernelFile {
    /// File name under `kernels/`, also the name NVRTC reports in diagnostics.
    pub name: &'static str,
    /// The file's text, without the common header.
    pub source: &'static str,
    /// Entry-point names without the dtype suffix.
    pub entry_points: &'static [&'static str],
}

impl KernelFile {
    /// Returns the entry-point name of `base` for element type `dtype`.
    pub fn entry_point(base: &str, dtype: &str) -> String {
        format!("{base}_{dtype}")
    }
}

/// Text of `kernels/common.cuh`, prepended to every kernel file.
pub const COMMON_HEADER: &str = include_str!("../../kernels/common.cuh");

/// File name reported for the common header in NVRTC diagnostics.
pub const COMMON_HEADER_NAME: &str = "common.cuh";

/// Element types every kernel file is compiled for, as [`crate::Element::NAME`].
pub const DTYPES: &[&str] = &["f32", "f64", "f16", "bf16"];

/// Every kernel file with its entry points.
pub const KERNEL_FILES: &[KernelFile] = &[
    KernelFile {
        name: "softmax.cu",
        source: include_str!("../../kernels/softmax.cu"),
        entry_points: &[
            "softmax_fwd",
            "softmax_bwd",
            "softmax_loss_fwd",
            "softmax_loss_bwd",
        ],
    },
    KernelFile {
        name: "infogain.cu",
        source: include_str!("../../kernels/infogain.cu"),
        entry_points: &["infogain_loss_fwd", "infogain_loss_bwd"],
    },
    KernelFile {
        name: "sigmoid.cu",
        source: include_str!("../../kernels/sigmoid.cu"),
        entry_points: &[
            "sigmoid_fwd",
            "sigmoid_bwd",
            "sigmoid_cross_entropy_loss_fwd",
            "sigmoid_cross_entropy_loss_bwd",
        ],
    },
    KernelFile {
        name: "euclidean.cu",
        source: include_str!("../../kernels/euclidean.cu"),
        entry_points: &["euclidean_loss_fwd", "euclidean_loss_bwd"],
    },
    KernelFile {
        name: "hinge.cu",
        source: include_str!("../../kernels/hinge.cu"),
        entry_points: &["hinge_loss_fwd", "hinge_loss_bwd"],
    },
    KernelFile {
        name: "multinomial.cu",
        source: include_str!("../../kernels/multinomial.cu"),
        entry_points: &[
            "multinomial_logistic_loss_fwd",
            "multinomial_logistic_loss_bwd",
        ],
    },
    KernelFile {
        name: "contrastive.cu",
        source: include_str!("../../kernels/contrastive.cu"),
        entry_points: &["contrastive_loss_fwd", "contrastive_loss_bwd"],
    },
    KernelFile {
        name: "accuracy.cu",
        source: include_str!("../../kernels/accuracy.cu"),
        entry_points: &["accuracy_fwd"],
    },
    KernelFile {
        name: "blob.cu",
        source: include_str!("../../kernels/blob.cu"),
        entry_points: &["blob_add"],
    },
];

/// Returns the kernel file named `name` (for example `"softmax.cu"`).
pub fn kernel_file(name: &str) -> Option<&'static KernelFile> {
    KERNEL_FILES.iter().find(|file| file.name == name)
}

/// Environment variable naming the PTX cache folder; an empty value turns
/// the cache off.
pub const PTX_CACHE_ENV: &str = "CAFFE_LOSS_PTX_CACHE";

/// Options passed to NVRTC besides the architecture. `-lineinfo` only adds
/// source-line records that profilers show; it does not change the code.
const NVRTC_OPTIONS: &[&str] = &["--std=c++17", "-lineinfo"];

/// Checks that NVRTC can be loaded; returns why not.
///
/// cudarc panics when a library it needs is missing, so every NVRTC call in
/// this crate goes through this check first. The result is computed once.
pub fn nvrtc_available() -> Result<(), String> {
    static STATUS: OnceLock<Result<(), String>> = OnceLock::new();
    STATUS
        .get_or_init(|| {
            // SAFETY: is_culib_present only tries to dlopen the candidate file
            // names of libnvrtc and drops the handles; it runs no library code
            // besides the loader's.
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                Ok(())
            } else {
                Err(format!(
                    "NVRTC was not found: none of {} could be loaded. Install it \
                     (scripts/install-cuda-wheels.sh puts libnvrtc.so.13 in .venv) and add \
                     its folder to LD_LIBRARY_PATH before starting the program",
                    crate::gpu::library_candidates("nvrtc")
                ))
            }
        })
        .clone()
}

/// Returns NVRTC's (major, minor) version.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    nvrtc_available().map_err(Error::Device)?;
    let mut major = 0;
    let mut minor = 0;
    // SAFETY: the library is present (checked above), and nvrtcVersion only
    // writes two ints through the valid pointers it gets.
    let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    status
        .result()
        .map_err(|e| Error::Device(format!("nvrtcVersion failed: {e:?}")))?;
    Ok((major, minor))
}

/// Checks that `arch` names a GPU architecture the way NVRTC expects
/// (`sm_90`, `sm_90a`, `compute_80`).
pub fn validate_arch(arch: &str) -> Result<()> {
    let digits = arch
        .strip_prefix("sm_")
        .or_else(|| arch.strip_prefix("compute_"))
        .map(|rest| rest.trim_end_matches(['a', 'f']));
    match digits {
        Some(d) if !d.is_empty() && d.chars().all(|ch| ch.is_ascii_digit()) => Ok(()),
        _ => Err(Error::Usage(format!(
            "invalid GPU architecture '{arch}'; expected sm_<compute capability>, \
             for example sm_90"
        ))),
    }
}

/// Returns the exact text NVRTC compiles for `file` and `dtype`: the
/// generated defines, the common header and the file, each after a `#line`
/// directive.
pub fn full_source(file: &KernelFile, dtype: &str) -> Result<String> {
    let dtype_macro = match dtype {
        "f32" => "F32",
        "f64" => "F64",
        "f16" => "F16",
        "bf16" => "BF16",
        other => {
            return Err(Error::Usage(format!(
                "unknown element type '{other}' for {}; expected one of {}",
                file.name,
                DTYPES.join(", ")
            )))
        }
    };
    let mut text = String::with_capacity(COMMON_HEADER.len() + file.source.len() + 256);
    // Writing to a String cannot fail.
    let _ = writeln!(text, "#define CAFFE_LOSS_DTYPE_{dtype_macro} 1");
    let _ = writeln!(text, "#define CL_BLOCK_THREADS {BLOCK_THREADS}");
    let _ = writeln!(text, "#line 1 \"{COMMON_HEADER_NAME}\"");
    text.push_str(COMMON_HEADER);
    let _ = writeln!(text, "\n#line 1 \"{}\"", file.name);
    text.push_str(file.source);
    text.push('\n');
    Ok(text)
}

/// Turns an NVRTC compile log into plain lines: NUL bytes and trailing
/// blanks removed, Windows line ends normalised, empty lines dropped.
pub fn format_compile_log(raw: &str) -> String {
    raw.replace('\0', "")
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn compile_error(file: &KernelFile, arch: &str, error: CompileError) -> Error {
    let log = match error {
        CompileError::CompileError { log, options, .. } => {
            let text = format_compile_log(&log.to_string_lossy());
            if text.is_empty() {
                format!("(empty log; options: {})", options.join(" "))
            } else {
                text
            }
        }
        CompileError::CreationError(e) => format!("nvrtcCreateProgram failed: {e:?}"),
        CompileError::GetLogError(e) => format!("nvrtcGetProgramLog failed: {e:?}"),
        CompileError::GetPtxError(e) => format!("nvrtcGetPTX failed: {e:?}"),
        CompileError::DestroyError(e) => format!("nvrtcDestroyProgram failed: {e:?}"),
    };
    Error::KernelCompile {
        file: file.name.to_string(),
        arch: arch.to_string(),
        log,
    }
}

/// Compiles `file` for `dtype` and `arch` with NVRTC, bypassing the cache,
/// and returns the PTX text.
pub fn compile_ptx_uncached(file: &KernelFile, dtype: &str, arch: &str) -> Result<String> {
    validate_arch(arch)?;
    nvrtc_available().map_err(Error::Device)?;
    let source = full_source(file, dtype)?;
    if source.contains('\0') || file.name.contains('\0') {
        return Err(Error::KernelCompile {
            file: file.name.to_string(),
            arch: arch.to_string(),
            log: "the source or file name contains a NUL byte".to_string(),
        });
    }

    // `CompileOptions::arch` takes a &'static str, so the architecture goes
    // in as a plain option instead.
    let mut options: Vec<String> = NVRTC_OPTIONS.iter().map(|o| o.to_string()).collect();
    options.push(format!("--gpu-architecture={arch}"));
    let opts = CompileOptions {
        name: Some(file.name.to_string()),
        options,
        ..Default::default()
    };

    let started = Instant::now();
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(&source, opts)
        .map_err(|e| compile_error(file, arch, e))?;
    log::debug!(
        "nvrtc: compiled {} for {dtype} and {arch} in {:.1} ms",
        file.name,
        started.elapsed().as_secs_f64() * 1e3
    );

    let bytes = ptx.as_bytes().ok_or_else(|| Error::KernelCompile {
        file: file.name.to_string(),
        arch: arch.to_string(),
        log: "NVRTC returned no PTX image".to_string(),
    })?;
    let text = String::from_utf8_lossy(bytes);
    Ok(text.trim_end_matches('\0').to_string())
}

/// Returns the PTX cache folder: `$CAFFE_LOSS_PTX_CACHE`, else
/// `$XDG_CACHE_HOME/caffe-loss`, else `~/.cache/caffe-loss`. `None` when the
/// variable is set but empty, or no home folder is known.
pub fn ptx_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(PTX_CACHE_ENV) {
        return if dir.is_empty() {
            None
        } else {
            Some(PathBuf::from(dir))
        };
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("caffe-loss"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("caffe-loss"))
}

/// Returns the cache key of a compilation: SHA-256 over the full source, the
/// architecture, the NVRTC options and the NVRTC version.
fn cache_key(source: &str, arch: &str, version: (i32, i32)) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    hasher.update([0]);
    hasher.update(arch.as_bytes());
    hasher.update([0]);
    for option in NVRTC_OPTIONS {
        hasher.update(option.as_bytes());
        hasher.update([0]);
    }
    hasher.update(format!("nvrtc {}.{}", version.0, version.1).as_bytes());
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Compiles `file` for `dtype` and `arch` to PTX text, through the on-disk
/// cache ([`ptx_cache_dir`]).
///
/// A cache that cannot be read or written is skipped with a debug log line;
/// only compilation errors are returned.
///
/// # Errors
///
/// [`Error::KernelCompile`] when NVRTC rejects the source, with NVRTC's log;
/// [`Error::Device`] when NVRTC cannot be loaded; [`Error::Usage`] for an
/// unknown `dtype` or a malformed `arch`.
pub fn compile_ptx(file: &KernelFile, dtype: &str, arch: &str) -> Result<String> {
    validate_arch(arch)?;
    let source = full_source(file, dtype)?;
    let version = nvrtc_version()?;
    let Some(dir) = ptx_cache_dir() else {
        return compile_ptx_uncached(file, dtype, arch);
    };
    let path = dir.join(format!(
        "{}_{dtype}_{arch}_{}.ptx",
        file.name.trim_end_matches(".cu"),
        cache_key(&source, arch, version)
    ));

    match std::fs::read_to_string(&path) {
        Ok(ptx) if !ptx.is_empty() && !ptx.contains('\0') => {
            log::debug!("nvrtc: using cached {}", path.display());
            return Ok(ptx);
        }
        Ok(_) => log::debug!("nvrtc: ignoring corrupt cache file {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::debug!("nvrtc: cannot read cache file {}: {e}", path.display()),
    }

    let ptx = compile_ptx_uncached(file, dtype, arch)?;
    if let Err(e) = write_cache_file(&dir, &path, &ptx) {
        log::debug!("nvrtc: cannot write cache file {}: {e}", path.display());
    }
    Ok(ptx)
}

/// Writes through a temporary file and a rename, so that a concurrent reader
/// never sees half a file.
fn write_cache_file(dir: &Path, path: &Path, ptx: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, ptx.as_bytes())?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// One row of [`kernel_report`].
#[derive(Debug, Clone, PartialEq)]
pub struct KernelReportRow {
    /// Kernel file name, for example `softmax.cu`.
    pub file: &'static str,
    /// Element type, for example `f32`.
    pub dtype: &'static str,
    /// Size of the PTX text in bytes.
    pub ptx_bytes: usize,
    /// Wall time of the NVRTC compilation in milliseconds (no cache).
    pub compile_ms: f64,
}

/// Compiles every kernel file for every element type for `arch`, without the
/// cache, and returns the PTX size and compile time of each. When `out_dir`
/// is given, writes each PTX as `<file stem>_<dtype>.ptx` into it (creating
/// the folder).
pub fn kernel_report(arch: &str, out_dir: Option<&Path>) -> Result<Vec<KernelReportRow>> {
    validate_arch(arch)?;
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create folder: {e}")))?;
    }
    let mut rows = Vec::with_capacity(KERNEL_FILES.len() * DTYPES.len());
    for file in KERNEL_FILES {
        for &dtype in DTYPES {
            let started = Instant::now();
            let ptx = compile_ptx_uncached(file, dtype, arch)?;
            let compile_ms = started.elapsed().as_secs_f64() * 1e3;
            if let Some(dir) = out_dir {
                let path = dir.join(format!("{}_{dtype}.ptx", file.name.trim_end_matches(".cu")));
                std::fs::write(&path, &ptx)
                    .map_err(|e| Error::file(&path, format!("cannot write PTX: {e}")))?;
            }
            rows.push(KernelReportRow {
                file: file.name,
                dtype,
                ptx_bytes: ptx.len(),
                compile_ms,
            });
        }
    }
    Ok(rows)
}
