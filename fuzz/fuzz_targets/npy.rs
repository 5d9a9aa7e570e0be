//! Fuzzes the `.npy` reader with arbitrary file contents.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use caffe_loss::blob::shape_count;
use caffe_loss::npy::{read_npy, read_npy_as};
use libfuzzer_sys::fuzz_target;

/// Returns the path of a scratch file in a temporary folder that lives as
/// long as the fuzzing process. The folder is in /dev/shm where there is one,
/// because every input is written to the file.
fn scratch_file() -> Option<&'static PathBuf> {
    static FILE: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::TempDir::new_in("/dev/shm")
            .or_else(|_| tempfile::TempDir::new())
            .ok()?;
        let path = dir.path().join("array.npy");
        Some((dir, path))
    })
    .as_ref()
    .map(|(_, path)| path)
}

fuzz_target!(|data: &[u8]| {
    let Some(path) = scratch_file() else {
        return;
    };
    if std::fs::write(path, data).is_err() {
        return;
    }
    if let Ok(array) = read_npy(path) {
        let count = shape_count(&array.shape);
        assert_eq!(count, Some(array.values.len()), "shape and values disagree");
        let _ = read_npy_as::<half::f16>(path);
    }
});
