//! Helpers shared by the tests that run the Caffe reference cases.

use std::path::{Path, PathBuf};

/// Folders of tests/data/caffe-reference that hold a case, sorted; asserts
/// that all 27 cases are there.
pub fn reference_cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/caffe-reference");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("reference data folder exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("net.prototxt").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 27,
        "expected the 27 reference cases, found {}",
        cases.len()
    );
    cases
}

/// Lists the .npy files of `dir`, sorted; none when the folder does not exist.
pub fn npy_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "npy"))
        .collect();
    files.sort();
    files
}

/// File name without its extension: the blob name of a case file.
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string()
}
