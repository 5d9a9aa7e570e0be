//! Inputs that crashed a fuzz target (see fuzz/ and scripts/fuzz.sh), run
//! through the same code as the target, with the error each must now give.

use std::path::Path;

use caffe_loss::npy::read_npy;
use caffe_loss::ErrorKind;
use tempfile::TempDir;

/// Writes `bytes` to `name` in a new temporary folder and returns both.
fn write_temp(name: &str, bytes: &[u8]) -> (TempDir, std::path::PathBuf) {
    let dir = match TempDir::new() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary folder: {error}"),
    };
    let path = dir.path().join(name);
    if let Err(error) = std::fs::write(&path, bytes) {
        panic!("cannot write {}: {error}", path.display());
    }
    (dir, path)
}

fn npy_error(path: &Path) -> caffe_loss::Error {
    match read_npy(path) {
        Ok(data) => panic!("expected an error, read shape {:?}", data.shape),
        Err(error) => error,
    }
}

/// A version 2 preamble declaring a header of 0xbaba6873 bytes in a 73-byte
/// file: ndarray-npy allocated the 3 GB header buffer before reading it.
#[test]
fn npy_header_length_beyond_file() {
    // Magic, version 2.0, then the little-endian header length 0xbaba6873.
    let mut bytes = b"\x93NUMPY\x02\x00\x73\x68".to_vec();
    bytes.extend_from_slice(&[0xba; 22]);
    bytes.extend_from_slice(
        b"\x59\x20\x20\x20\x99\x50\xc0\x65\x0b\x2c\xc0\xe8\x3c\x6b\xbf\x32\xa2\x80\xc0\x18",
    );
    bytes.extend_from_slice(
        b"\xaa\x5d\xc0\x50\x6c\xf6\xbf\x25\xbd\x46\x61\x6c\x73\x65\xc7\x3f\x4e\x02\x27\xc0\x40",
    );
    assert_eq!(bytes.len(), 73);
    let (_dir, path) = write_temp("oom.npy", &bytes);
    let error = npy_error(&path);
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::File);
    assert!(message.contains("truncated .npy file"), "{message}");
    assert!(message.contains("3132778611 bytes long"), "{message}");
    assert!(message.contains("only 73 bytes"), "{message}");
}

/// A 135-byte file whose header nests 20 brackets: ndarray-npy's header
/// parser took more than 15 s on it under the fuzzer.
#[test]
fn npy_header_nested_brackets() {
    let header = concat!(
        "{           (       [   [  [[[[[[          (       [  [[[[[[{           (      3),",
        "                         \"         \n",
    );
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(b"\x00\x00@\x00\x00\x00\x00");
    assert_eq!(bytes.len(), 135);
    let (_dir, path) = write_temp("nested.npy", &bytes);
    let started = std::time::Instant::now();
    let error = npy_error(&path);
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::File);
    assert!(message.contains("nest 20 levels deep"), "{message}");
    assert!(
        started.elapsed().as_secs() < 1,
        "took {:?}",
        started.elapsed()
    );
}

/// A header longer than NumPy's 10000-byte limit is rejected before parsing.
#[test]
fn npy_header_too_long() {
    let mut header = String::from("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }");
    header.push_str(&" ".repeat(20_000));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1.0f32.to_le_bytes());
    let (_dir, path) = write_temp("long.npy", &bytes);
    let error = npy_error(&path);
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::File);
    assert!(message.contains("20058 bytes long"), "{message}");
    assert!(message.contains("over 10000 bytes"), "{message}");
}
