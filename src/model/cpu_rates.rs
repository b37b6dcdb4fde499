//! How fast this CPU multiplies in bf16 against f32, measured once at run time: what `auto`
//! decides on where there is AVX512-BF16 but no AMX tiles.
//!
//! `vdpbf16ps` does twice the multiply-adds of `vfmadd231ps` per instruction, but CPUs differ in
//! how many of each they retire a cycle. On the Intel Xeon this was built on, one `vdpbf16ps`
//! every 2 cycles against two `vfmadd231ps` a cycle: bf16 at half the f32 rate, and the bf16
//! base (Winograd with bf16 products) at 0.7–0.8× the speed of f32. On AMD Zen 4 the two
//! retire at the same instruction rate, so bf16 measures 2.00×, and the bf16 base runs about
//! 1.9× as fast as f32 (BENCHMARKS.md, "The bf16 pass by thread"). Rather than a
//! table of CPU models, the two rates are timed here (about 10 ms, once a process) on 16
//! independent sums each, so that latency does not bound them.
//!
//! The base's time splits into the products and the rest (transforms, copies, pools). Profiled
//! on 100 photos with Winograd F(4×4) (`perf`, CPU seconds): f32 10.37 s, of which the GEMM's
//! kernels 5.32 s; bf16 13.88 s, of which the kernel 9.77 s and the rest 4.11 s (less than
//! f32's 5.05 s: the transformed inputs are written in bf16, and no GEMM packs them). The
//! kernel's time scales as `1 / r`, so with bf16 at `r` times the f32 rate a prediction takes
//! about `0.40 + 0.47 / r` of its f32 time: 1.34 at this machine's `r = 0.5` (1.36 measured),
//! 0.87 at `r = 1`, 0.71 at `r = 1.5`, 0.63 at `r = 2`. That model comes from one machine, so
//! [`BF16_RATE_FOR_AUTO`] asks for a clear margin.

use super::bf16::Precision;

/// `auto` takes bf16 without AMX tiles where bf16 multiply-adds run at least this many times
/// the f32 rate (the profile above predicts 1.41× f32's speed there, 1.58× at twice the rate).
pub const BF16_RATE_FOR_AUTO: f64 = 1.5;

/// What `auto` comes to without AMX tiles where bf16 multiply-adds run at `rate` times the f32
/// rate, and why in words (the rate as printed, to two places down, is the one compared).
pub fn decide(rate: f64) -> (Precision, String) {
    let rate = (rate * 100.0).floor() / 100.0;
    let (precision, side) = if rate >= BF16_RATE_FOR_AUTO {
        (Precision::Bf16, "at least")
    } else {
        (Precision::F32, "under")
    };
    let why = format!(
        "this CPU has AVX512-BF16 and no AMX tiles; its bf16 multiply-adds measured {rate:.2}× \
         its f32 rate, {side} the {BF16_RATE_FOR_AUTO}× that bf16 needs"
    );
    (precision, why)
}

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

/// Rounds of 16 instructions each timed run executes.
#[cfg(target_arch = "x86_64")]
const ROUNDS: u32 = 100_000;

/// The fastest of 7 runs of each, alternating: (bf16 MACs / s) / (f32 MACs / s).
///
/// # Safety
/// The CPU must have AVX512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn measure() -> f64 {
    let (mut f32_secs, mut bf16_secs) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..7 {
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

/// [`ROUNDS`] rounds of `op` (`vdpbf16ps` or `vfmadd231ps`) into each of 16 sums (enough that
/// latency does not bound either instruction: a CPU retiring 2 a cycle at a latency of 8
/// cycles would need 16),
/// the loop and the instructions written out, so that no optimiser turns them into others or
/// moves a sum through memory between rounds.
#[cfg(target_arch = "x86_64")]
macro_rules! rounds {
    ($op:literal, $s:ident, $a:expr, $b:expr) => {
        {
            // SAFETY: register-only arithmetic on the sums and the two inputs, and a counted
            // loop on `n` (the caller's target features include AVX512F and AVX512-BF16).
            unsafe {
                asm!(
                    concat!(
                    "2:\n",
                    $op, " {0}, {a}, {b}\n",
                    $op, " {1}, {a}, {b}\n",
                    $op, " {2}, {a}, {b}\n",
                    $op, " {3}, {a}, {b}\n",
                    $op, " {4}, {a}, {b}\n",
                    $op, " {5}, {a}, {b}\n",
                    $op, " {6}, {a}, {b}\n",
                    $op, " {7}, {a}, {b}\n",
                    $op, " {8}, {a}, {b}\n",
                    $op, " {9}, {a}, {b}\n",
                    $op, " {10}, {a}, {b}\n",
                    $op, " {11}, {a}, {b}\n",
                    $op, " {12}, {a}, {b}\n",
                    $op, " {13}, {a}, {b}\n",
                    $op, " {14}, {a}, {b}\n",
                    $op, " {15}, {a}, {b}\n",
                    "dec {n:e}\n",
                    "jnz 2b\n",
                    ),
                inout(zmm_reg) $s.0,
                inout(zmm_reg) $s.1,
                inout(zmm_reg) $s.2,
                inout(zmm_reg) $s.3,
                inout(zmm_reg) $s.4,
                inout(zmm_reg) $s.5,
                inout(zmm_reg) $s.6,
                inout(zmm_reg) $s.7,
                inout(zmm_reg) $s.8,
                inout(zmm_reg) $s.9,
                inout(zmm_reg) $s.10,
                inout(zmm_reg) $s.11,
                inout(zmm_reg) $s.12,
                inout(zmm_reg) $s.13,
                inout(zmm_reg) $s.14,
                inout(zmm_reg) $s.15,
                n = inout(reg) ROUNDS => _,
                a = in(zmm_reg) $a,
                b = in(zmm_reg) $b,
                options(nomem, nostack),
                );
            }
        }
    };
}

/// [`ROUNDS`] rounds of 16 independent `vdpbf16ps` (`BF16`) or `vfmadd231ps`; returns a
/// sum so that nothing is optimised away.
///
/// # Safety
/// The CPU must have AVX512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn multiply_adds<const BF16: bool>() -> f32 {
    use std::arch::asm;
    use std::arch::x86_64::*;
    // 1.0 as f32, and as a pair of bf16 ones: the sums grow by 1 or 2 a round, exactly.
    let x = _mm512_set1_ps(1.0);
    let pairs = _mm512_set1_epi32(0x3f80_3f80);
    // Sixteen sums, each its own register operand of the loop.
    let z = _mm512_setzero_ps();
    let mut s = (z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
    if BF16 {
        rounds!("vdpbf16ps", s, pairs, pairs);
    } else {
        rounds!("vfmadd231ps", s, x, x);
    }
    let sums = [
        s.0, s.1, s.2, s.3, s.4, s.5, s.6, s.7, s.8, s.9, s.10, s.11, s.12, s.13, s.14, s.15,
    ];
    sums.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate is measured where there is AVX512-BF16 (a ratio between the slowest and the
    /// fastest known: bf16 at half to four times the f32 rate), and 0 elsewhere.
    #[test]
    fn the_bf16_rate_is_a_measured_ratio() {
        let rate = bf16_rate();
        if !crate::model::bf16::available() {
            assert_eq!(rate, 0.0);
            return;
        }
        eprintln!("bf16 multiply-adds at {rate:.2}× the f32 rate");
        assert!((0.25..8.0).contains(&rate), "{rate}");
    }

    /// bf16 from the threshold on, as printed: a rate just under it that prints as the
    /// threshold counts as under.
    #[test]
    fn auto_takes_bf16_from_the_threshold_on() {
        for (rate, want, said) in [
            (0.5, Precision::F32, "0.50× its f32 rate, under"),
            (1.499, Precision::F32, "1.49× its f32 rate, under"),
            (1.5, Precision::Bf16, "1.50× its f32 rate, at least"),
            (2.0, Precision::Bf16, "2.00× its f32 rate, at least"),
            (0.0, Precision::F32, "0.00× its f32 rate, under"),
        ] {
            let (got, why) = decide(rate);
            assert_eq!(got, want, "{rate}");
            assert!(why.contains(said), "{rate}: {why}");
        }
    }
}
