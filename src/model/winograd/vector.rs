//! The sixteen floats the Winograd transforms compute on: plain arrays, or one AVX-512
//! register.

use super::super::bf16;

/// Lanes per transform step (one AVX-512 register of f32).
pub(super) const LANES: usize = 16;

/// Sixteen floats of arithmetic: the unit the transforms compute on, one channel group of one
/// pixel. [`Lanes`] is plain Rust; [`Wide`] is one AVX-512 register.
pub(super) trait Vector: Copy {
    fn zero() -> Self;
    /// The first `LANES` values of `s`.
    fn load(s: &[f32]) -> Self;
    /// Into the first `LANES` places of `d`.
    fn store(self, d: &mut [f32]);
    fn add(self, b: Self) -> Self;
    fn sub(self, b: Self) -> Self;
    fn max(self, b: Self) -> Self;
    /// `k·self`.
    fn scale(self, k: f32) -> Self;
    /// `k·self + b` (fused where the instruction is there: [`Wide`]).
    fn mul_add(self, k: f32, b: Self) -> Self;
    /// Rounded to bf16 (to the nearest, ties to even), into the first `LANES / 2` words of `d`
    /// as pairs, the first of each pair in the low half (what `vdpbf16ps` reads).
    fn store_bf16(self, d: &mut [u32]);
}

/// `LANES` floats as a plain array: the transforms where there is no AVX-512, and a last
/// partial group of channels.
pub(super) type Lanes = [f32; LANES];

impl Vector for Lanes {
    #[inline(always)]
    fn zero() -> Self {
        [0.0; LANES]
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        s[..LANES].try_into().expect("a slice of LANES values")
    }
    #[inline(always)]
    fn store(self, d: &mut [f32]) {
        d[..LANES].copy_from_slice(&self);
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        std::array::from_fn(|l| self[l] + b[l])
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        std::array::from_fn(|l| self[l] - b[l])
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        std::array::from_fn(|l| self[l].max(b[l]))
    }
    #[inline(always)]
    fn scale(self, k: f32) -> Self {
        std::array::from_fn(|l| k * self[l])
    }
    /// A product and a sum, each rounded: `f32::mul_add` would call libm's `fmaf` a lane
    /// where the code is compiled without FMA (plain x86-64).
    #[inline(always)]
    fn mul_add(self, k: f32, b: Self) -> Self {
        std::array::from_fn(|l| k * self[l] + b[l])
    }
    #[inline(always)]
    fn store_bf16(self, d: &mut [u32]) {
        for (p, word) in d[..LANES / 2].iter_mut().enumerate() {
            *word = bf16::pair(self[2 * p], self[2 * p + 1]);
        }
    }
}

/// One AVX-512 register of floats. Its methods run AVX-512 instructions, so only the functions
/// compiled for AVX-512 name it (`*_wide`, and `input_tile_bf16`, compiled for AVX512-BF16 as
/// well, the one caller of `store_bf16`), called where the CPU has those (plain arrays of
/// floats compiled there came out as a mix of 4-wide registers and stack traffic).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Wide(std::arch::x86_64::__m512);

#[cfg(target_arch = "x86_64")]
impl Vector for Wide {
    // SAFETY (every method): AVX-512F is here (see the type), and AVX512-BF16 where
    // `store_bf16` runs (its doc); loads and stores stay within the slices, which are sliced
    // to `LANES` floats (`LANES / 2` words) first.
    #[inline(always)]
    fn zero() -> Self {
        Self(unsafe { std::arch::x86_64::_mm512_setzero_ps() })
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        Self(unsafe { std::arch::x86_64::_mm512_loadu_ps(s[..LANES].as_ptr()) })
    }
    #[inline(always)]
    fn store(self, d: &mut [f32]) {
        unsafe { std::arch::x86_64::_mm512_storeu_ps(d[..LANES].as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        Self(unsafe { std::arch::x86_64::_mm512_add_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        Self(unsafe { std::arch::x86_64::_mm512_sub_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        Self(unsafe { std::arch::x86_64::_mm512_max_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn scale(self, k: f32) -> Self {
        Self(unsafe {
            std::arch::x86_64::_mm512_mul_ps(std::arch::x86_64::_mm512_set1_ps(k), self.0)
        })
    }
    #[inline(always)]
    fn mul_add(self, k: f32, b: Self) -> Self {
        use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_set1_ps};
        Self(unsafe { _mm512_fmadd_ps(_mm512_set1_ps(k), self.0, b.0) })
    }
    /// Only in functions compiled for AVX512-BF16 as well (`vcvtneps2bf16`), which run where
    /// the CPU has it.
    #[inline(always)]
    fn store_bf16(self, d: &mut [u32]) {
        use std::arch::x86_64::{__m256i, _mm256_storeu_si256, _mm512_cvtneps_pbh};
        unsafe {
            let rounded: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(self.0));
            _mm256_storeu_si256(d[..LANES / 2].as_mut_ptr().cast(), rounded);
        }
    }
}
