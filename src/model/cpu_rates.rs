//! How fast this CPU multiplies in bf16 against f32, measured once at run time: what `auto`
//! decides on where there is AVX512-BF16 but no AMX tiles.
//!
//! `vdpbf16ps` does twice the multiply-adds of `vfmadd231ps` per instruction, but CPUs differ in
//! how many of each they retire a cycle. On the Intel Xeon this was built on, one `vdpbf16ps`
//! every 2 cycles against two `vfmadd231ps` a cycle: bf16 at half the f32 rate, and the bf16
//! base (Winograd with bf16 products) at 0.73× f32. Rather than a table of CPU models, the two
//! rates are timed here (about 5 ms, once a process) on 12 independent sums each, so that
//! latency does not bound them.
//!
//! The base's time splits into the products and the rest (transforms, copies, pools), and the
//! rest is about the same in both precisions. Profiled on 100 photos (`perf`, CPU seconds): f32
//! 20.9 s, of which the GEMM 11.1 s; bf16 26.4 s, of which the kernel 16.3 s and the rest 10.1 s.
//! The kernel's time scales as `1 / r`, so with bf16 at `r` times the f32 rate the base takes
//! about `0.48 + 0.39 / r` of its f32 time: 1.26 at this machine's `r = 0.5` (as measured), 0.87
//! at `r = 1`, 0.68 at `r = 2`. That model comes from one machine, so
//! [`BF16_RATE_FOR_AUTO`] asks for a clear margin.

/// `auto` takes bf16 without AMX tiles where bf16 multiply-adds run at least this many times
/// the f32 rate (the profile above predicts 1.35× the f32 base's speed there).
pub const BF16_RATE_FOR_AUTO: f64 = 1.5;

/// This CPU's bf16 multiply-adds a second over its f32 ones, one core, 512-bit vectors
/// (`vdpbf16ps` against `vfmadd231ps`); 0 where there is no AVX512-BF16. Measured on the first
/// call.
pub fn bf16_rate() -> f64 {
    static RATE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if super::bf16::available() {
            // SAFETY: AVX-512 with its bf16 extension is here.
            return unsafe { measure() };
        }
        0.0
    })
}

/// Rounds of 12 instructions each timed run executes.
#[cfg(target_arch = "x86_64")]
const ROUNDS: u32 = 100_000;

/// The fastest of 5 runs of each, alternating: (bf16 MACs / s) / (f32 MACs / s).
///
/// # Safety
/// The CPU must have AVX512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn measure() -> f64 {
    let (mut f32_secs, mut bf16_secs) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        let started = std::time::Instant::now();
        // SAFETY: the caller's contract.
        std::hint::black_box(unsafe { multiply_adds::<false>() });
        f32_secs = f32_secs.min(started.elapsed().as_secs_f64());
        let started = std::time::Instant::now();
        // SAFETY: the caller's contract.
        std::hint::black_box(unsafe { multiply_adds::<true>() });
        bf16_secs = bf16_secs.min(started.elapsed().as_secs_f64());
    }
    // One vfmadd231ps is 16 multiply-adds, one vdpbf16ps 32.
    let ratio = (32.0 / bf16_secs) / (16.0 / f32_secs);
    if ratio.is_finite() { ratio } else { 0.0 }
}

/// [`ROUNDS`] rounds of 12 independent `vdpbf16ps` (`BF16`) or `vfmadd231ps`, kept in
/// registers; returns a sum so that nothing is optimised away.
///
/// # Safety
/// The CPU must have AVX512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn multiply_adds<const BF16: bool>() -> f32 {
    use std::arch::asm;
    use std::arch::x86_64::*;
    let x = _mm512_set1_ps(1.0);
    // SAFETY: 64 bytes as 64 bytes; the words are pairs of bf16 ones.
    let pairs: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3f80_3f80)) };
    let mut s = [_mm512_setzero_ps(); 12];
    for _ in 0..ROUNDS {
        for v in &mut s {
            *v = if BF16 {
                _mm512_dpbf16_ps(*v, pairs, pairs)
            } else {
                _mm512_fmadd_ps(*v, x, x)
            };
        }
        // SAFETY: an empty block that only claims to change the 12 sums, so that each round
        // is computed and the sums stay in registers.
        unsafe {
            asm!(
                "/* {0} {1} {2} {3} {4} {5} {6} {7} {8} {9} {10} {11} */",
                inout(zmm_reg) s[0], inout(zmm_reg) s[1], inout(zmm_reg) s[2],
                inout(zmm_reg) s[3], inout(zmm_reg) s[4], inout(zmm_reg) s[5],
                inout(zmm_reg) s[6], inout(zmm_reg) s[7], inout(zmm_reg) s[8],
                inout(zmm_reg) s[9], inout(zmm_reg) s[10], inout(zmm_reg) s[11],
                options(nomem, nostack, preserves_flags),
            );
        }
    }
    s.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate is measured where there is AVX512-BF16 (a ratio between the slowest and the
    /// fastest known: bf16 at half to four times the f32 rate), and 0 elsewhere; a second call
    /// gives the same value.
    #[test]
    fn the_bf16_rate_is_a_measured_ratio() {
        let rate = bf16_rate();
        if !crate::model::bf16::available() {
            assert_eq!(rate, 0.0);
            return;
        }
        eprintln!("bf16 multiply-adds at {rate:.2}× the f32 rate");
        assert!((0.25..8.0).contains(&rate), "{rate}");
        assert_eq!(bf16_rate(), rate);
    }
}
