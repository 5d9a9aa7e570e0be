//! Fuzzes the `.binaryproto` reader with arbitrary file contents.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use caffe_loss::binaryproto::read_blob_proto;
use caffe_loss::blob::shape_count;
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
        let path = dir.path().join("blob.binaryproto");
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
    if let Ok(blob) = read_blob_proto(path) {
        let count = shape_count(&blob.shape);
        assert_eq!(count, Some(blob.values.len()), "shape and values disagree");
    }
});
