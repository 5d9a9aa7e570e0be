//! Element types a blob can store, and the type their arithmetic runs in.

use std::fmt::Debug;

use num_traits::Float;

/// A blob element type: f32 and f64, and the 16-bit storage types f16 and bf16.
///
/// `Acc` is the type every sum, exp and log runs in: f32 for f32 and the
/// 16-bit types, f64 for f64. A 16-bit result is rounded once, on store.
pub trait Element: Copy + Default + Debug + PartialEq + Send + Sync + 'static {
    /// Accumulation and arithmetic type.
    type Acc: Float + Debug + Default + Send + Sync + std::iter::Sum + 'static;
    /// Short name used in kernel names, file names and the CLI (`f32`).
    const NAME: &'static str;
    /// Size of one element in bytes.
    const BYTES: usize;
    /// Widens to the accumulation type.
    fn to_acc(self) -> Self::Acc;
    /// Rounds an accumulation value to storage.
    fn from_acc(value: Self::Acc) -> Self;
    /// Widens to f64 (exact for every element type).
    fn to_f64(self) -> f64;
    /// Rounds an f64 to storage.
    fn from_f64(value: f64) -> Self;
}

/// Converts an f64 constant to an accumulation type without a fallible cast.
pub fn acc<A: Float>(value: f64) -> A {
    A::from(value).unwrap_or_else(A::nan)
}

impl Element for f32 {
    type Acc = f32;
    const NAME: &'static str = "f32";
    const BYTES: usize = 4;
    fn to_acc(self) -> f32 {
        self
    }
    fn from_acc(value: f32) -> Self {
        value
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(value: f64) -> Self {
        value as f32
    }
}

impl Element for f64 {
    type Acc = f64;
    const NAME: &'static str = "f64";
    const BYTES: usize = 8;
    fn to_acc(self) -> f64 {
        self
    }
    fn from_acc(value: f64) -> Self {
        value
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(value: f64) -> Self {
        value
    }
}

impl Element for half::f16 {
    type Acc = f32;
    const NAME: &'static str = "f16";
    const BYTES: usize = 2;
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    fn from_acc(value: f32) -> Self {
        half::f16::from_f32(value)
    }
    fn to_f64(self) -> f64 {
        half::f16::to_f64(self)
    }
    fn from_f64(value: f64) -> Self {
        half::f16::from_f64(value)
    }
}

impl Element for half::bf16 {
    type Acc = f32;
    const NAME: &'static str = "bf16";
    const BYTES: usize = 2;
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    fn from_acc(value: f32) -> Self {
        half::bf16::from_f32(value)
    }
    fn to_f64(self) -> f64 {
        half::bf16::to_f64(self)
    }
    fn from_f64(value: f64) -> Self {
        half::bf16::from_f64(value)
    }
}
