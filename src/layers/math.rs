//! CPU math shared by the layers: an `exp` and `ln` for f32 that compilers
//! can vectorise, lane-wise reductions, and views of blob data in the
//! accumulation type.
//!
//! Reductions here keep [`LANES`] independent partial results, which the
//! compiler can hold in SIMD registers. It never reassociates float additions
//! on its own, so a plain sequential sum would not vectorise.

use std::any::TypeId;

use half::slice::HalfFloatSliceExt;
use num_traits::{Float, Zero};

use crate::element::Element;

/// Number of partial sums or maxima kept by the reductions. A sum has one
/// add in flight per register of partial sums, so 32 f32 lanes (four AVX
/// registers, two AVX-512 registers) keep the adder busy where 8 would wait
/// on its latency.
pub const LANES: usize = 32;

/// `log2(e)` rounded to f32.
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// High part of ln 2: 0.693359375 has 9 significant bits, so `k * LN2_HIGH`
/// is exact for every exponent `|k| <= 2^15`.
const LN2_HIGH: f32 = 355.0 / 512.0;
/// `ln 2 - LN2_HIGH`, rounded to f32.
const LN2_LOW: f32 = -2.121_944_4e-4;
/// 1.5 × 2^23: adding it to a value below 2^22 in magnitude rounds the value
/// to the nearest integer and leaves that integer in the low significand bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` in f32, within 1 ulp of the correctly rounded value, subnormal
/// results included. The tests below check 1.9 million values spread over
/// every binade of the input range.
///
/// The code has no branches so that a loop over it vectorises. It reduces
/// `x = k ln 2 + r` with `|r| <= ln(2) / 2`, evaluates the degree-7 Taylor
/// polynomial of `e^r` (truncation error below 6e-9 relative) and scales by
/// `2^k` in two steps, so that `2^k` below the normal range still rounds once.
/// NaN gives NaN, `+inf` gives `+inf`, `-inf` gives 0.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Clamp to [-104, 88.8] with comparisons that keep NaN. e^-104 is below
    // half the smallest subnormal and e^88.8 above f32::MAX, so the clamped
    // values still round to 0 and infinity.
    let x = if x > 88.8 { 88.8 } else { x };
    let x = if x < -104.0 { -104.0 } else { x };
    let shifted = x * LOG2_E + ROUND_MAGIC;
    let k = shifted.to_bits() as i32 - ROUND_MAGIC.to_bits() as i32;
    let kf = shifted - ROUND_MAGIC;
    let r = (x - kf * LN2_HIGH) - kf * LN2_LOW;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    // e^r = 1 + r + r^2 p: adding the large terms last keeps the rounding
    // error of the polynomial below the final rounding.
    let e_r = 1.0 + (r + r * r * p);
    // k is in [-150, 128], so both halves are in [-75, 64] and each factor
    // is a normal power of two.
    let k_low = k >> 1;
    let k_high = k - k_low;
    let scale_low = f32::from_bits(((k_low + 127) as u32) << 23);
    let scale_high = f32::from_bits(((k_high + 127) as u32) << 23);
    e_r * scale_low * scale_high
}

/// Natural logarithm in f32, within 1 ulp of the correctly rounded value.
/// The tests below check 1.8 million values spread over every binade and
/// every value in [0.5, 2].
///
/// Branch-free, so that a loop over it vectorises. It splits `x = m 2^e` with
/// `m` in `[sqrt(1/2), sqrt(2))`, writes `f = m - 1` and `s = f / (2 + f)`,
/// and uses `ln(1 + f) = 2 atanh(s) = f - f²/2 + s (f²/2 + R(s²))` with the
/// atanh series up to `s^9` (truncation error below 1e-9). Zero gives `-inf`,
/// negative values and NaN give NaN, `+inf` gives `+inf`.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    // Subnormals are scaled by 2^25 first so that their exponent field is
    // meaningful.
    let tiny = x < f32::MIN_POSITIVE;
    let scaled = if tiny { x * 33_554_432.0 } else { x };
    let bias = if tiny { 25 } else { 0 };

    // Offsetting the bits by 1 - sqrt(1/2) moves the split point of the
    // exponent from 1.0 to sqrt(1/2).
    const SQRT_HALF_BITS: u32 = 0x3f35_04f3;
    let bits = scaled.to_bits().wrapping_add(0x3f80_0000 - SQRT_HALF_BITS);
    let e = (bits >> 23) as i32 - 127 - bias;
    let m = f32::from_bits((bits & 0x007f_ffff) + SQRT_HALF_BITS);

    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let r = 2.0 / 9.0;
    let r = r * z + 2.0 / 7.0;
    let r = r * z + 2.0 / 5.0;
    let r = r * z + 2.0 / 3.0;
    let r = r * z;
    let half_f_sq = 0.5 * f * f;
    let ef = e as f32;
    let ln_m = f - (half_f_sq - (s * (half_f_sq + r) + ef * LN2_LOW));
    let result = ef * LN2_HIGH + ln_m;

    let result = if x == f32::INFINITY { x } else { result };
    let result = if x == 0.0 { f32::NEG_INFINITY } else { result };
    // Negative values and NaN: comparisons with NaN are false.
    if x >= 0.0 {
        result
    } else {
        f32::NAN
    }
}

/// Defines a kernel generic over one type that runs with AVX-512 or AVX2
/// when the CPU has them. The type is written `[A]` for an accumulation
/// type (bound `Float + 'static`) or with its bounds, as in `[T: Element]`.
///
/// The body is compiled three times: as a plain function, and inlined into
/// two `#[target_feature]` copies chosen at run time. Everything the body
/// calls in its loops must be `#[inline(always)]` to be compiled for the
/// wider instructions. No copy enables FMA, so all three give bitwise the
/// same results: the wider registers only run more lanes of the same
/// operations.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident[$a:ident]($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block
    ) => {
        $crate::layers::math::multiversion! {
            $(#[$meta])*
            $vis fn $name[$a: num_traits::Float + 'static]($($arg: $ty),*) $(-> $ret)?
            $body
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident[$a:ident: $($bound:tt)+]($($arg:ident: $ty:ty),* $(,)?)
        $(-> $ret:ty)?
        $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name<$a: $($bound)+>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<$a: $($bound)+>($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(all(target_arch = "x86_64", avx512_kernels))]
            #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,avx")]
            unsafe fn with_avx512<$a: $($bound)+>($($arg: $ty),*) $(-> $ret)? {
                body::<$a>($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,avx")]
            unsafe fn with_avx2<$a: $($bound)+>($($arg: $ty),*) $(-> $ret)? {
                body::<$a>($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            match $crate::layers::math::simd_level() {
                // SAFETY: simd_level reports only features the CPU has.
                #[cfg(avx512_kernels)]
                $crate::layers::math::SimdLevel::Avx512 => {
                    return unsafe { with_avx512::<$a>($($arg),*) };
                }
                // SAFETY: as above.
                $crate::layers::math::SimdLevel::Avx2 => {
                    return unsafe { with_avx2::<$a>($($arg),*) };
                }
                _ => {}
            }
            body::<$a>($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Widest vector instruction set a [`multiversion`] kernel may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdLevel {
    /// AVX-512 F, VL, BW and DQ; never reported when the compiler is older
    /// than Rust 1.89, which has no stable AVX-512 target features.
    Avx512,
    /// AVX2.
    Avx2,
    /// The target's baseline (SSE2 on x86-64).
    Baseline,
}

/// Detects the [`SimdLevel`] of this CPU. The standard library caches the
/// detection, so a call costs a few loads.
#[inline]
pub fn simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected;
        if cfg!(avx512_kernels)
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
        {
            return SimdLevel::Avx512;
        }
        if is_x86_feature_detected!("avx2") {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Baseline
}

multiversion! {
    /// Writes `src × scale` into `dst` (same length).
    pub fn scale_into[A](src: &[A], dst: &mut [A], scale: A) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v * scale;
        }
    }
}

multiversion! {
    /// Replaces every value by its natural logarithm and returns their sum.
    pub fn ln_sum[A](values: &mut [A]) -> A {
        for v in values.iter_mut() {
            *v = ln(*v);
        }
        sum_map(values, |v| v)
    }
}

/// Returns `e^x` in the accumulation type: [`exp_f32`] for f32, the standard library
/// for f64.
#[inline(always)]
pub fn exp<A: Float + 'static>(x: A) -> A {
    match cast_value::<A, f32>(x) {
        Some(value) => cast_value::<f32, A>(exp_f32(value)).unwrap_or(x),
        None => x.exp(),
    }
}

/// Returns the natural logarithm in the accumulation type: [`ln_f32`] for f32, the
/// standard library for f64.
#[inline(always)]
pub fn ln<A: Float + 'static>(x: A) -> A {
    match cast_value::<A, f32>(x) {
        Some(value) => cast_value::<f32, A>(ln_f32(value)).unwrap_or(x),
        None => x.ln(),
    }
}

/// Caffe's `std::max(a, b)`, written as a select that vectorises: returns
/// `a` unless `a < b`, so a NaN in `a` survives and a NaN in `b` is dropped.
#[inline(always)]
pub fn max_keep_first<A: Float>(a: A, b: A) -> A {
    if a < b {
        b
    } else {
        a
    }
}

/// Scratch vectors a layer keeps between calls so that forward and backward
/// allocate nothing once the shapes are settled.
pub struct Buffers<A> {
    /// Widened copy of a 16-bit input.
    pub input: Vec<A>,
    /// Widened copy of a second 16-bit input.
    pub second_input: Vec<A>,
    /// Output in the accumulation type before rounding to 16 bits.
    pub output: Vec<A>,
    /// Per-position work: maxima, sums or dot products.
    pub work: Vec<A>,
}

impl<A> Default for Buffers<A> {
    fn default() -> Self {
        Buffers {
            input: Vec::new(),
            second_input: Vec::new(),
            output: Vec::new(),
            work: Vec::new(),
        }
    }
}

/// Returns `value` as `B` when `A` and `B` are the same type.
#[inline(always)]
fn cast_value<A: Copy + 'static, B: Copy + 'static>(value: A) -> Option<B> {
    if TypeId::of::<A>() == TypeId::of::<B>() {
        // SAFETY: A and B are the same type, checked just above.
        Some(unsafe { std::mem::transmute_copy::<A, B>(&value) })
    } else {
        None
    }
}

/// Returns `values` as `&[B]` when `A` and `B` are the same type.
#[inline]
pub fn cast_slice<A: 'static, B: 'static>(values: &[A]) -> Option<&[B]> {
    if TypeId::of::<A>() == TypeId::of::<B>() {
        // SAFETY: A and B are the same type, so the layout is identical.
        Some(unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<B>(), values.len()) })
    } else {
        None
    }
}

/// Returns `values` as `&mut [B]` when `A` and `B` are the same type.
#[inline]
pub fn cast_slice_mut<A: 'static, B: 'static>(values: &mut [A]) -> Option<&mut [B]> {
    if TypeId::of::<A>() == TypeId::of::<B>() {
        // SAFETY: A and B are the same type, so the layout is identical.
        Some(unsafe {
            std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<B>(), values.len())
        })
    } else {
        None
    }
}

/// Widens `src` into `dst` (same length): with F16C instructions for f16
/// where the CPU has them, else with `half`'s slice conversions.
pub fn widen<T: Element>(src: &[T], dst: &mut [T::Acc]) {
    if let Some(src) = cast_slice::<T, T::Acc>(src) {
        dst.copy_from_slice(src);
    } else if let (Some(src), Some(dst)) = (
        cast_slice::<T, half::f16>(src),
        cast_slice_mut::<T::Acc, f32>(dst),
    ) {
        widen_f16(src, dst);
    } else if let (Some(src), Some(dst)) = (
        cast_slice::<T, half::bf16>(src),
        cast_slice_mut::<T::Acc, f32>(dst),
    ) {
        src.convert_to_f32_slice(dst);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_acc();
        }
    }
}

/// Rounds `src` into `dst` (same length), each value once.
pub fn narrow<T: Element>(src: &[T::Acc], dst: &mut [T]) {
    if let Some(dst) = cast_slice_mut::<T, T::Acc>(dst) {
        dst.copy_from_slice(src);
    } else if let (Some(src), Some(dst)) = (
        cast_slice::<T::Acc, f32>(src),
        cast_slice_mut::<T, half::f16>(dst),
    ) {
        narrow_f16(src, dst);
    } else if let (Some(src), Some(dst)) = (
        cast_slice::<T::Acc, f32>(src),
        cast_slice_mut::<T, half::bf16>(dst),
    ) {
        dst.convert_from_f32_slice(src);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = T::from_acc(*s);
        }
    }
}

/// Widens f16 values, with the F16C instructions when the CPU has them.
fn widen_f16(src: &[half::f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU has F16C (and therefore AVX), detected above.
        let done = unsafe { widen_f16c(src, dst) };
        src[done..].convert_to_f32_slice(&mut dst[done..]);
        return;
    }
    src.convert_to_f32_slice(dst);
}

/// Rounds f32 values to f16 (to nearest, ties to even), with the F16C
/// instructions when the CPU has them.
fn narrow_f16(src: &[f32], dst: &mut [half::f16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU has F16C (and therefore AVX), detected above.
        let done = unsafe { narrow_f16c(src, dst) };
        dst[done..].convert_from_f32_slice(&src[done..]);
        return;
    }
    dst.convert_from_f32_slice(src);
}

/// Widens 8 f16 values per instruction and returns how many it converted
/// (the length rounded down to a multiple of 8). `half` uses the same
/// instruction, one call per 8 values, so the results are identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn widen_f16c(src: &[half::f16], dst: &mut [f32]) -> usize {
    use std::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    let whole = src.len().min(dst.len()) / 8 * 8;
    for start in (0..whole).step_by(8) {
        // SAFETY: start + 8 <= whole, which fits both slices, and the load
        // and store accept unaligned addresses.
        unsafe {
            let halves = _mm_loadu_si128(src.as_ptr().add(start).cast::<__m128i>());
            _mm256_storeu_ps(dst.as_mut_ptr().add(start), _mm256_cvtph_ps(halves));
        }
    }
    whole
}

/// Rounds 8 f32 values to f16 per instruction and returns how many it
/// converted (the length rounded down to a multiple of 8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn narrow_f16c(src: &[f32], dst: &mut [half::f16]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm256_cvtps_ph, _mm256_loadu_ps, _mm_storeu_si128, _MM_FROUND_TO_NEAREST_INT,
    };
    let whole = src.len().min(dst.len()) / 8 * 8;
    for start in (0..whole).step_by(8) {
        // SAFETY: start + 8 <= whole, which fits both slices, and the load
        // and store accept unaligned addresses.
        unsafe {
            let singles = _mm256_loadu_ps(src.as_ptr().add(start));
            let halves = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(singles);
            _mm_storeu_si128(dst.as_mut_ptr().add(start).cast::<__m128i>(), halves);
        }
    }
    whole
}

/// Returns blob data in the accumulation type: borrowed when the element type
/// is its own accumulation type (f32, f64), else widened into `buffer`.
pub fn acc_view<'a, T: Element>(src: &'a [T], buffer: &'a mut Vec<T::Acc>) -> &'a [T::Acc] {
    if let Some(view) = cast_slice::<T, T::Acc>(src) {
        return view;
    }
    buffer.resize(src.len(), T::Acc::zero());
    widen(src, buffer);
    buffer
}

/// Returns the output slice in the accumulation type for `dst`: `dst` itself when the
/// types agree, else `buffer`, which [`finish_output`] then rounds into `dst`.
pub fn output_view<'a, T: Element>(
    dst: &'a mut [T],
    buffer: &'a mut Vec<T::Acc>,
) -> &'a mut [T::Acc] {
    let len = dst.len();
    if let Some(view) = cast_slice_mut::<T, T::Acc>(dst) {
        return view;
    }
    buffer.resize(len, T::Acc::zero());
    buffer
}

/// Rounds `buffer` into `dst` after [`output_view`] handed out the buffer;
/// does nothing when `dst` was written directly.
pub fn finish_output<T: Element>(dst: &mut [T], buffer: &[T::Acc]) {
    if TypeId::of::<T>() != TypeId::of::<T::Acc>() {
        narrow(buffer, dst);
    }
}

/// Sums `LANES` partial results pairwise.
#[inline(always)]
pub fn combine_sum<A: Float>(mut lanes: [A; LANES]) -> A {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] = lanes[i] + lanes[i + width];
        }
    }
    lanes[0]
}

/// Returns `Σ f(x_i)` over `x`, with `LANES` partial sums.
#[inline(always)]
pub fn sum_map<A: Float, F: Fn(A) -> A>(x: &[A], f: F) -> A {
    let mut lanes = [A::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            lanes[l] = lanes[l] + f(chunk[l]);
        }
    }
    for (l, &v) in tail.iter().enumerate() {
        lanes[l] = lanes[l] + f(v);
    }
    combine_sum(lanes)
}

/// Returns `Σ f(x_i, y_i)` over two slices of the same length, with `LANES`
/// partial sums.
#[inline(always)]
pub fn sum_map2<A: Float, F: Fn(A, A) -> A>(x: &[A], y: &[A], f: F) -> A {
    let mut lanes = [A::zero(); LANES];
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let chunks = x.chunks_exact(LANES).zip(y.chunks_exact(LANES));
    for (cx, cy) in chunks {
        for l in 0..LANES {
            lanes[l] = lanes[l] + f(cx[l], cy[l]);
        }
    }
    let start = n - n % LANES;
    for (l, (&a, &b)) in x[start..].iter().zip(&y[start..]).enumerate() {
        lanes[l] = lanes[l] + f(a, b);
    }
    combine_sum(lanes)
}

/// Returns the maximum of a non-empty slice, with Caffe's `std::max`
/// semantics in each lane. When `x` contains a NaN the result is NaN or the
/// maximum of the other values, which makes no difference to a softmax: its
/// outputs are then all NaN.
#[inline(always)]
pub fn max<A: Float>(x: &[A]) -> A {
    let Some(&first) = x.first() else {
        return A::neg_infinity();
    };
    let mut lanes = [first; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            lanes[l] = max_keep_first(lanes[l], chunk[l]);
        }
    }
    for (l, &v) in tail.iter().enumerate() {
        lanes[l] = max_keep_first(lanes[l], v);
    }
    lanes.iter().fold(first, |m, &v| max_keep_first(m, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite f32 values of
    /// the same sign, or 0 when both are equal (infinities included).
    fn ulps(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        if a.is_nan() || b.is_nan() || a.is_sign_negative() != b.is_sign_negative() {
            return u32::MAX;
        }
        a.to_bits().abs_diff(b.to_bits())
    }

    /// Returns every `stride`-th f32 value in `[low, high]`, walking the bit patterns
    /// (so every binade is covered evenly), negative values first.
    fn samples(low: f32, high: f32, stride: usize) -> Vec<f32> {
        let mut values = Vec::new();
        if low < 0.0 {
            let negative = (-0.0f32).to_bits()..=low.to_bits();
            values.extend(negative.step_by(stride).map(f32::from_bits));
        }
        if high >= 0.0 {
            let start = if low > 0.0 { low.to_bits() } else { 0 };
            let positive = start..=high.to_bits();
            values.extend(positive.step_by(stride).map(f32::from_bits));
        }
        values
    }

    #[test]
    fn exp_within_one_ulp() {
        let mut worst = (0u32, 0.0f32);
        let mut count = 0usize;
        for x in samples(-104.0, 89.0, 1201) {
            let expected = (f64::from(x)).exp() as f32;
            let error = ulps(exp_f32(x), expected);
            count += 1;
            if error > worst.0 {
                worst = (error, x);
            }
        }
        assert!(count > 1_000_000, "only {count} samples");
        assert!(worst.0 <= 1, "exp_f32({}) is {} ulps off", worst.1, worst.0);
    }

    #[test]
    fn exp_matches_std_closely() {
        // The platform libm's expf is itself within 1 ulp, so the two agree
        // to 2 ulps.
        for x in samples(-104.0, 89.0, 4099) {
            let error = ulps(exp_f32(x), x.exp());
            assert!(
                error <= 2,
                "exp_f32({x}) = {}, std gives {}",
                exp_f32(x),
                x.exp()
            );
        }
    }

    #[test]
    fn exp_special_values() {
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
        assert_eq!(exp_f32(88.73), f32::INFINITY);
        assert_eq!(exp_f32(88.72), f64::from(88.72f32).exp() as f32);
        assert_eq!(exp_f32(-104.0), 0.0);
        assert_eq!(exp_f32(-110.0), 0.0);
        assert_eq!(exp_f32(-103.0), f32::from_bits(1));
        // Subnormal results round once: e^-100 is about 3.72e-44.
        assert_eq!(exp_f32(-100.0), (-100.0f64).exp() as f32);
        assert!(exp_f32(-100.0) > 0.0);
    }

    #[test]
    fn ln_within_one_ulp() {
        let mut worst = (0u32, 0.0f32);
        let mut count = 0usize;
        for x in samples(f32::from_bits(1), f32::MAX, 1201) {
            let expected = (f64::from(x)).ln() as f32;
            let error = ulps(ln_f32(x), expected);
            count += 1;
            if error > worst.0 {
                worst = (error, x);
            }
        }
        assert!(count > 1_000_000, "only {count} samples");
        assert!(worst.0 <= 1, "ln_f32({}) is {} ulps off", worst.1, worst.0);
    }

    #[test]
    fn ln_dense_near_one() {
        // Every f32 in [0.5, 2]: the range of ln(1 + e^-|x|) and of
        // probabilities near 1, where cancellation would show first.
        for x in samples(0.5, 2.0, 1) {
            let expected = (f64::from(x)).ln() as f32;
            assert!(ulps(ln_f32(x), expected) <= 1, "ln_f32({x})");
        }
    }

    #[test]
    fn ln_special_values() {
        assert!(ln_f32(f32::NAN).is_nan());
        assert!(ln_f32(-1.0).is_nan());
        assert!(ln_f32(f32::NEG_INFINITY).is_nan());
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(-0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln_f32(1.0), 0.0);
        let floor = f32::MIN_POSITIVE;
        assert_eq!(ln_f32(floor), f64::from(floor).ln() as f32);
    }

    #[test]
    fn f16_conversions_match_half() {
        // Every f16 bit pattern, widened in one slice with a tail of 7.
        let all: Vec<half::f16> = (0..=u16::MAX).map(half::f16::from_bits).collect();
        let mut widened = vec![0.0f32; all.len() + 7];
        let mut padded = all.clone();
        padded.extend_from_slice(&all[..7]);
        widen_f16(&padded, &mut widened);
        for (h, w) in padded.iter().zip(&widened) {
            assert_eq!(
                h.to_f32().to_bits(),
                w.to_bits(),
                "widening {:#06x}",
                h.to_bits()
            );
        }
        // Five f32 values near each of 17 000 evenly spaced bit patterns
        // (NaNs and infinities included), rounded to f16 with a tail of 5.
        let singles: Vec<f32> = (0..=u32::MAX)
            .step_by(61 * 4096)
            .flat_map(|base| (0..5).map(move |i| f32::from_bits(base.wrapping_add(i * 977))))
            .collect();
        let mut narrowed = vec![half::f16::ZERO; singles.len()];
        narrow_f16(&singles, &mut narrowed);
        for (s, n) in singles.iter().zip(&narrowed) {
            let expected = half::f16::from_f32(*s);
            let same = expected.to_bits() == n.to_bits() || (expected.is_nan() && n.is_nan());
            assert!(same, "rounding {s:e} ({:#010x}): {n:?}", s.to_bits());
        }
    }

    #[test]
    fn reductions_match_sequential() {
        let x: Vec<f64> = (0..1003).map(|i| ((i * 37) % 101) as f64 - 50.0).collect();
        let sequential: f64 = x.iter().map(|v| v * v).sum();
        assert_eq!(sum_map(&x, |v| v * v), sequential);
        let y: Vec<f64> = x.iter().map(|v| v + 1.0).collect();
        let dot: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert_eq!(sum_map2(&x, &y, |a, b| a * b), dot);
        assert_eq!(max(&x), 50.0);
        assert_eq!(max(&[-3.0f32]), -3.0);
        assert!(max(&[f32::NAN, 1.0, 2.0]).is_nan());
    }
}
