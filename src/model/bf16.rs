//! Matrix products in bfloat16 with float accumulation, for the frozen base on CPUs with
//! AVX512-BF16 (AMD Zen 4 and later, Intel since Cooper Lake): `vdpbf16ps` multiplies pairs of
//! bf16 values and adds both products to a float, twice the float rate of `vfmadd` per
//! instruction. The weights are rounded to bf16 once, when a layer is packed; each product
//! rounds its left operand (the activations) as it starts; sums stay in f32.
//!
//! bf16 keeps f32's range and 8 of its 24 bits of precision: each rounding is off by at most
//! 2^-9 of the value, and sums of many such products average the errors out (the tests of
//! [`super::cpu_base`] bound them layer by layer, and on the pooled features of real photos).

/// Rows of the left operand one kernel call works on.
const MR: usize = 8;
/// Columns of the right operand one kernel call works on (two vectors of 16 floats).
const NR: usize = 32;

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits; NaN stays NaN.
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// The f32 a bf16's bits stand for.
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Two bf16 values in one 32-bit word, the first in the low half (the order `vdpbf16ps` reads).
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(bf16_bits(lo)) | (u32::from(bf16_bits(hi)) << 16)
}

/// The right operand of a product, `[k, n]`, rounded to bf16 and packed once: rows in pairs,
/// each pair's two values of a column side by side, columns padded to a multiple of 32.
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    n_pad: usize,
    /// `[k.div_ceil(2), n_pad]` pairs.
    data: Vec<u32>,
}

impl PackedB {
    /// Packs the `[k, n]` matrix whose row `r` starts at `b[r * row_stride]`.
    pub fn pack(b: &[f32], row_stride: usize, [k, n]: [usize; 2]) -> Self {
        let n_pad = n.div_ceil(NR) * NR;
        let pairs = k.div_ceil(2);
        let mut data = vec![0u32; pairs * n_pad];
        let at = |r: usize, j: usize| if r < k { b[r * row_stride + j] } else { 0.0 };
        for p in 0..pairs {
            for j in 0..n {
                data[p * n_pad + j] = pair(at(2 * p, j), at(2 * p + 1, j));
            }
        }
        Self { k, n, n_pad, data }
    }

    /// The `[k, n]` shape it packs.
    pub fn shape(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// Its value at row `r`, column `j` (as rounded).
    fn value(&self, r: usize, j: usize) -> f32 {
        let word = self.data[(r / 2) * self.n_pad + j];
        bf16_value(if r % 2 == 0 {
            word as u16
        } else {
            (word >> 16) as u16
        })
    }
}

/// Whether this CPU runs [`matmul`]: AVX-512 with its bf16 extension.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// What [`matmul`] computes, one value at a time on any CPU: `a` rounded to bf16 times `b`,
/// summed in f32. The tests' yardstick.
pub fn matmul_reference(a: &[f32], [m, k]: [usize; 2], b: &PackedB) -> Vec<f32> {
    let mut out = vec![0.0f32; m * b.n];
    for i in 0..m {
        for j in 0..b.n {
            out[i * b.n + j] = (0..k)
                .map(|r| bf16_value(bf16_bits(a[i * k + r])) * b.value(r, j))
                .sum();
        }
    }
    out
}

/// Room a product needs between calls ([`matmul`] reuses it).
#[derive(Default)]
pub struct Scratch {
    a: Vec<u32>,
}

/// `dst = a · b` for `a` `[m, k]` (f32, row stride `a_rs`) and `b` packed, into `dst` `[m, n]`
/// (row stride `dst_rs`), on the calling thread.
///
/// # Safety
/// [`available`] must be true; `a` and `dst` must address live matrices of those shapes and
/// strides, and no other thread may touch `dst`'s elements during the call.
#[cfg(target_arch = "x86_64")]
pub unsafe fn matmul(
    m: usize,
    (dst, dst_rs): (*mut f32, usize),
    (a, a_rs): (*const f32, usize),
    b: &PackedB,
    scratch: &mut Scratch,
) {
    let pairs = b.k.div_ceil(2);
    let m_pad = m.div_ceil(MR) * MR;
    scratch.a.clear();
    scratch.a.resize(m_pad * pairs, 0);
    for i in 0..m {
        // SAFETY: row i of `a` is live for k floats (the caller's contract).
        let row = unsafe { std::slice::from_raw_parts(a.add(i * a_rs), b.k) };
        // SAFETY: `available()` (the caller's contract).
        unsafe { round_row(row, &mut scratch.a[i * pairs..(i + 1) * pairs]) };
    }
    for panel in 0..b.n_pad / NR {
        let cols = (b.n - panel * NR).min(NR);
        for block in (0..m).step_by(MR) {
            let rows = (m - block).min(MR);
            // SAFETY: `available()`; the block's rows of the scratch and the panel of `b` are
            // in bounds; `dst`'s rows `block..block + rows` and columns of the panel are
            // the caller's.
            unsafe {
                kernel(
                    pairs,
                    scratch.a.as_ptr().add(block * pairs),
                    b.data.as_ptr().add(panel * NR),
                    b.n_pad,
                    (dst.add(block * dst_rs + panel * NR), dst_rs),
                    [rows, cols],
                );
            }
        }
    }
}

/// `row` rounded to bf16 pairs into `out` (`row.len().div_ceil(2)` words).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_row(row: &[f32], out: &mut [u32]) {
    use std::arch::x86_64::*;
    let full = row.len() / 32;
    for c in 0..full {
        // SAFETY: 32 floats from 32·c are in `row`; 16 words from 16·c are in `out`.
        unsafe {
            let lo = _mm512_loadu_ps(row.as_ptr().add(32 * c));
            let hi = _mm512_loadu_ps(row.as_ptr().add(32 * c + 16));
            let packed = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(
                out.as_mut_ptr().add(16 * c).cast(),
                std::mem::transmute::<__m512bh, __m512i>(packed),
            );
        }
    }
    for p in 16 * full..out.len() {
        let at = |r: usize| row.get(r).copied().unwrap_or(0.0);
        out[p] = pair(at(2 * p), at(2 * p + 1));
    }
}

/// `rows`×`cols` (at most 8×32) of the product: `a` is 8 rows of `pairs` words, `b` the panel
/// (row stride `b_rs` words); written over `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(
    pairs: usize,
    a: *const u32,
    b: *const u32,
    b_rs: usize,
    (dst, dst_rs): (*mut f32, usize),
    [rows, cols]: [usize; 2],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..pairs {
        // SAFETY: `p < pairs` words of each of the 8 rows of `a`, and 32 words of row `p` of
        // the panel, are in bounds (the caller's contract).
        unsafe {
            let row = b.add(p * b_rs);
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(row.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(row.add(16).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let x: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*a.add(r * pairs + p) as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate().take(rows) {
        for (half, v) in acc.iter().enumerate() {
            let lanes = cols.saturating_sub(16 * half).min(16);
            if lanes == 0 {
                continue;
            }
            let mask: __mmask16 = if lanes == 16 {
                0xFFFF
            } else {
                (1u16 << lanes) - 1
            };
            // SAFETY: `lanes` floats of row r from column 16·half are the caller's.
            unsafe { _mm512_mask_storeu_ps(dst.add(r * dst_rs + 16 * half), mask, *v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn rounding_is_to_the_nearest_even_bf16() {
        assert_eq!(bf16_value(bf16_bits(1.0)), 1.0);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even one, 1.
        assert_eq!(bf16_value(bf16_bits(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(bf16_value(bf16_bits(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
        assert_eq!(bf16_value(bf16_bits(f32::INFINITY)), f32::INFINITY);
        let mut rng = SplitMix64(5);
        for _ in 0..1000 {
            let x = (rng.next_f32() - 0.5) * 1e3;
            let y = bf16_value(bf16_bits(x));
            assert!((x - y).abs() <= x.abs() / 256.0, "{x} {y}");
        }
    }

    /// A product of `m`×`k` by `k`×`n` on the vector kernel against the reference, when this
    /// CPU has one, and the reference within bf16's error of the f32 product everywhere.
    fn check(m: usize, k: usize, n: usize, seed: u64) {
        let mut rng = SplitMix64(seed);
        let a: Vec<f32> = (0..m * k).map(|_| rng.next_f32() - 0.3).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.next_f32() - 0.5).collect();
        let packed = PackedB::pack(&b, n, [k, n]);
        let reference = matmul_reference(&a, [m, k], &packed);
        for i in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|r| a[i * k + r] * b[r * n + j]).sum();
                let scale: f32 = (0..k).map(|r| (a[i * k + r] * b[r * n + j]).abs()).sum();
                let got = reference[i * n + j];
                assert!((got - exact).abs() <= scale / 128.0, "{got} {exact}");
            }
        }
        #[cfg(target_arch = "x86_64")]
        if available() {
            // A destination wider than the product: the kernel writes only its own columns.
            let stride = n + 3;
            let mut dst = vec![7.0f32; m * stride];
            let mut scratch = Scratch::default();
            // SAFETY: available; `a` is [m, k] and `dst` [m, stride], both live.
            unsafe {
                matmul(
                    m,
                    (dst.as_mut_ptr(), stride),
                    (a.as_ptr(), k),
                    &packed,
                    &mut scratch,
                );
            }
            for i in 0..m {
                for j in 0..stride {
                    let got = dst[i * stride + j];
                    if j >= n {
                        assert_eq!(got, 7.0, "column {j} is not the product's");
                        continue;
                    }
                    let want = reference[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{got} {want}"
                    );
                }
            }
        } else {
            eprintln!("this CPU has no AVX512-BF16: the vector kernel is not run here");
        }
    }

    #[test]
    fn products_match_the_reference_at_odd_sizes() {
        check(1, 1, 1, 1);
        check(3, 27, 64, 2);
        check(9, 33, 31, 3);
        check(17, 64, 96, 4);
        check(8, 512, 33, 5);
    }
}
