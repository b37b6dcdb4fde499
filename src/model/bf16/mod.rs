//! Matrix products in bfloat16 with float accumulation, for the frozen base on CPUs with
//! AVX512-BF16 (AMD Zen 4 and later, Intel since Cooper Lake): `vdpbf16ps` multiplies pairs of
//! bf16 values and adds both products to a float, twice the float rate of `vfmadd` per
//! instruction. The weights are rounded to bf16 once, when a layer is packed; each product
//! rounds its left operand (the activations) as it starts, or takes it rounded already
//! ([`matmul_rounded`], the Winograd input transform's); sums stay in f32.
//!
//! bf16 keeps f32's range and 8 of its 24 bits of precision: each rounding is off by at most
//! 2^-9 of the value, and sums of many such products average the errors out (the tests of
//! [`super::cpu_base`] bound them layer by layer, and on the pooled features of real photos).

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

impl std::fmt::Display for Choice {
    /// The name `--precision` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = clap::ValueEnum::to_possible_value(self);
        f.write_str(value.as_ref().map_or("", |v| v.get_name()))
    }
}

/// The number format of the frozen base's products on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// Products in bf16 with f32 sums ([`matmul`]).
    Bf16,
}

/// What a user asks for: a precision, or the best this CPU offers.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    /// bf16 where the CPU has AMX tiles or measures its bf16 products fast enough, else f32.
    #[default]
    Auto,
    F32,
    Bf16,
}

impl Choice {
    /// The precision this choice comes to on this CPU, and why, in words.
    pub fn resolve(self) -> (Precision, String) {
        let (precision, why) = match (self, available(), amx()) {
            (Self::F32, ..) => (Precision::F32, "f32 was asked for"),
            (Self::Bf16, true, _) => (Precision::Bf16, "bf16 was asked for"),
            (Self::Bf16, false, _) => (
                Precision::F32,
                "bf16 was asked for, but this CPU has no AVX512-BF16",
            ),
            (Self::Auto, _, true) => (Precision::Bf16, "this CPU has AMX tiles for bf16"),
            (Self::Auto, true, false) => return Self::without_tiles(),
            (Self::Auto, false, _) => (Precision::F32, "this CPU has no bf16 products"),
        };
        (precision, why.to_owned())
    }

    /// `auto` on a CPU with AVX512-BF16 and no AMX tiles: bf16 where its multiply-adds were
    /// measured fast enough ([`cpu_rates`](super::cpu_rates)).
    fn without_tiles() -> (Precision, String) {
        super::cpu_rates::decide(super::cpu_rates::bf16_rate())
    }
}

static CHOSEN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);

/// The choice in force for bases built from now on: what [`choose`] set last, else
/// `VGGTUNE_PRECISION` (`auto`, `f32` or `bf16`), else [`Choice::Auto`].
pub fn chosen() -> Choice {
    match CHOSEN.load(std::sync::atomic::Ordering::Relaxed) {
        0 => Choice::Auto,
        1 => Choice::F32,
        2 => Choice::Bf16,
        _ => match std::env::var("VGGTUNE_PRECISION").as_deref() {
            Ok("f32") => Choice::F32,
            Ok("bf16") => Choice::Bf16,
            _ => Choice::Auto,
        },
    }
}

/// Sets the choice for bases built from now on (the CLI's `--precision`, the window's setting).
pub fn choose(choice: Choice) {
    let code = match choice {
        Choice::Auto => 0,
        Choice::F32 => 1,
        Choice::Bf16 => 2,
    };
    CHOSEN.store(code, std::sync::atomic::Ordering::Relaxed);
}

/// Rows of the left operand one kernel call works on (AVX512-BF16).
const MR: usize = 8;
/// Rows of the left operand one AMX kernel call works on (two tiles of 16).
const MR_AMX: usize = 32;
/// Pairs of the inner dimension in one AMX tile (64 bytes a row).
const PAIR_BLOCK: usize = 16;

/// The pairs of an inner dimension of `k`, padded to whole AMX tiles (the padding is zero):
/// the words of a row of a packed left operand, and of one [`matmul_rounded`] reads.
pub(super) fn padded_pairs(k: usize) -> usize {
    k.div_ceil(2).div_ceil(PAIR_BLOCK) * PAIR_BLOCK
}
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
pub(super) fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(bf16_bits(lo)) | (u32::from(bf16_bits(hi)) << 16)
}

/// Values that any bytes make, zeros included, with an alignment that divides 64 (the
/// element types of [`Aligned`]).
///
/// # Safety
/// Every bit pattern of the type's size must be a value of it, and its alignment at most 64.
pub(super) unsafe trait Plain: Copy {}
// SAFETY: integers: every bit pattern is one; alignment 2 and 4.
unsafe impl Plain for u16 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}

/// 64 bytes on a cache line of their own.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A buffer whose first value starts a cache line, so that a tile row of 64 bytes at a
/// multiple of 64 from it never straddles two lines (an allocator's buffer starts 16 bytes
/// into one, which makes every such load two).
#[derive(Clone, Debug, Default)]
pub(super) struct Aligned<T: Plain> {
    lines: Vec<Line>,
    len: usize,
    _values: std::marker::PhantomData<T>,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Line")
    }
}

impl<T: Plain> Aligned<T> {
    /// `len` zeros.
    pub(super) fn zeroed(len: usize) -> Self {
        const { assert!(std::mem::align_of::<T>() <= 64) };
        let mut buffer = Self {
            lines: Vec::new(),
            len: 0,
            _values: std::marker::PhantomData,
        };
        buffer.resize(len);
        buffer
    }

    /// Holds `len` values: those it had stay, and the rest are what its memory held before (a
    /// buffer that never held as many: zeros). It never gives memory back, so a buffer
    /// reused for smaller and larger passes costs no zeroing (callers write what they read).
    pub(super) fn resize(&mut self, len: usize) {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("buffer size overflows");
        let lines = bytes.div_ceil(64);
        if self.lines.len() < lines {
            self.lines.resize(lines, Line([0; 64]));
        }
        self.len = len;
    }

    pub(super) fn as_slice(&self) -> &[T] {
        // SAFETY: the lines hold at least `len` values of `T` (`resize`), every bit pattern is
        // one (`Plain`), and a line's alignment is a multiple of `T`'s.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`, and borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

/// The right operand of a product, `[k, n]`, rounded to bf16 and packed once: rows in pairs,
/// each pair's two values of a column side by side, columns padded to a multiple of 32.
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    n_pad: usize,
    layout: Layout,
    /// `padded_pairs(k) · n_pad` pairs (the rows past `k` zero), laid out as `layout` says.
    data: Aligned<u32>,
}

/// How a [`PackedB`]'s words lie: the order its kernel reads them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `[pairs, n_pad]`, row after row, each row on whole lines: what the AMX kernels were
    /// tuned on (a tile load reads 16 rows of a panel at any stride, so either layout runs).
    Rows,
    /// `[n_pad / 32, pairs, 32]`: each panel of 32 columns whole, so that the vector kernel
    /// reads it as one stream. Rows up to 2 KiB apart land on a few cache sets and evict each
    /// other: on AMD Zen 4 the kernel ran 2–12% faster on panels (BENCHMARKS.md).
    Panels,
}

impl PackedB {
    /// Packs the `[k, n]` matrix whose row `r` starts at `b[r * row_stride]`, laid out for
    /// the kernel this process runs.
    pub fn pack(b: &[f32], row_stride: usize, shape: [usize; 2]) -> Self {
        let layout = if amx() { Layout::Rows } else { Layout::Panels };
        Self::pack_in(layout, b, row_stride, shape)
    }

    /// [`Self::pack`] in `layout`.
    fn pack_in(layout: Layout, b: &[f32], row_stride: usize, [k, n]: [usize; 2]) -> Self {
        let n_pad = n.div_ceil(NR) * NR;
        let pairs = padded_pairs(k);
        let mut packed = Self {
            k,
            n,
            n_pad,
            layout,
            data: Aligned::zeroed(pairs * n_pad),
        };
        let words = packed.data.as_mut_slice();
        // Each pair of rows rounded a row at a time (vectorised where the CPU rounds), then
        // interleaved; the rows past `k` and the columns past `n` stay zero.
        let (mut lo, mut hi) = (vec![0u16; n], vec![0u16; n]);
        for p in 0..k.div_ceil(2) {
            round_slice(&b[2 * p * row_stride..][..n], &mut lo);
            if 2 * p + 1 < k {
                round_slice(&b[(2 * p + 1) * row_stride..][..n], &mut hi);
            } else {
                hi.fill(0);
            }
            // A panel's part of a row is contiguous in either layout.
            for (q, (lo, hi)) in lo.chunks(NR).zip(hi.chunks(NR)).enumerate() {
                let at = place(layout, pairs, n_pad, p, q * NR);
                for ((word, l), h) in words[at..at + lo.len()].iter_mut().zip(lo).zip(hi) {
                    *word = u32::from(*l) | (u32::from(*h) << 16);
                }
            }
        }
        packed
    }

    /// The `[k, n]` shape it packs.
    pub fn shape(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// Where the panel of 32 columns from column `first` (a multiple of 32) starts, and its
    /// row stride in words: pair `p`, column `first + c` is at `start + p · stride + c`, in
    /// either layout.
    pub(super) fn panel_at(&self, first: usize) -> (*const u32, usize) {
        assert!(
            first.is_multiple_of(NR) && first < self.n_pad,
            "no panel starts at column {first} of {}",
            self.n_pad
        );
        let at = place(self.layout, padded_pairs(self.k), self.n_pad, 0, first);
        // SAFETY: the word of pair 0, column `first` is in `data` (first < n_pad).
        let start = unsafe { self.data.as_slice().as_ptr().add(at) };
        match self.layout {
            Layout::Rows => (start, self.n_pad),
            Layout::Panels => (start, NR),
        }
    }

    /// Its value at row `r`, column `j` (as rounded).
    fn value(&self, r: usize, j: usize) -> f32 {
        let at = place(self.layout, padded_pairs(self.k), self.n_pad, r / 2, j);
        let word = self.data.as_slice()[at];
        bf16_value(if r.is_multiple_of(2) {
            word as u16
        } else {
            (word >> 16) as u16
        })
    }
}

/// The index of pair `p`, column `j` in a packed operand of `pairs` rows and `n_pad` columns.
fn place(layout: Layout, pairs: usize, n_pad: usize, p: usize, j: usize) -> usize {
    match layout {
        Layout::Rows => p * n_pad + j,
        Layout::Panels => (j / NR) * pairs * NR + p * NR + j % NR,
    }
}

/// Whether this CPU runs [`matmul`]: AVX-512 with its bf16 extension (and AMX tiles, where
/// there are, for the products).
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

/// Whether this process uses AMX tiles with bf16 for [`matmul`]: the CPU has them (CPUID leaf
/// 7: AMX-BF16 and AMX-TILE) beside AVX512-BF16, and Linux granted the tile state
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, asked once). `VGGTUNE_AMX=off` says no, to compare the
/// two kernels.
pub fn amx() -> bool {
    static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GRANTED.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            if std::env::var("VGGTUNE_AMX").as_deref() == Ok("off") || !available() {
                return false;
            }
            // Leaf 0 says whether leaf 7 exists.
            let leaves = std::arch::x86_64::__cpuid(0).eax;
            if leaves < 7 {
                return false;
            }
            let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
            let (amx_bf16, amx_tile) = (edx & (1 << 22) != 0, edx & (1 << 24) != 0);
            // SAFETY: a system call that only asks the kernel for a permission.
            amx_bf16 && amx_tile && unsafe { amx::request_permission() }
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            false
        }
    })
}

/// Which bf16 products run here, in words (for `vggtune info`).
pub fn kernel_name() -> &'static str {
    if amx() {
        "AMX tiles"
    } else if available() {
        "AVX512-BF16"
    } else {
        "none"
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

/// `dst = a · b` for `a` `[m, k]` (f32, row stride `a_rs`) and `b` packed, into `dst` `[m, n]`
/// (row stride `dst_rs`), on the calling thread.
///
/// # Safety
/// [`available`] must be true; `a` and `dst` must address live matrices of those shapes and
/// strides, and no other thread may touch `dst`'s elements during the call.
#[cfg(target_arch = "x86_64")]
pub unsafe fn matmul(m: usize, dst: (*mut f32, usize), a: (*const f32, usize), b: &PackedB) {
    SCRATCH.with_borrow_mut(|Scratch { a: words, c }| {
        let pairs = padded_pairs(b.k);
        // Every word of rows 0..m is written below. The padding rows reach no kept sum
        // (`ROW_BLOCK`); they are cleared only so that no stale value is read, and no more is
        // (a fresh fill of megabytes each call would cost as much as the product).
        words.resize(m.next_multiple_of(ROW_BLOCK) * pairs);
        let words = words.as_mut_slice();
        words[m * pairs..].fill(0);
        for i in 0..m {
            // SAFETY: row i of `a` is live for k floats (the caller's contract).
            let row = unsafe { std::slice::from_raw_parts(a.0.add(i * a.1), b.k) };
            // SAFETY: `available()` (the caller's contract).
            unsafe { round_row(row, &mut words[i * pairs..(i + 1) * pairs]) };
        }
        // SAFETY: `available()`; the rows are rounded as `product` reads them; `dst` is the
        // caller's.
        unsafe { product(m, dst, (words.as_ptr(), pairs), b, c) };
    });
}

/// Rows a left operand of [`matmul_rounded`] must be readable to: its last block of rows is
/// read whole (the rows past `m` reach no sum that is kept).
pub(super) const ROW_BLOCK: usize = MR_AMX;

/// `dst = a · b` for `a` already rounded to bf16 pairs: `m` rows of [`padded_pairs`]`(b's k)`
/// words, row `i` from `a.0 + i · a.1`. For callers that round as they compute `a` (the
/// Winograd input transform), a pass over it fewer.
///
/// # Safety
/// [`available`] must be true; rows up to `m.next_multiple_of(ROW_BLOCK)` must be readable at
/// that stride, with the padding words of rows `0..m` zero; `dst` must address a live `[m, n]`
/// matrix at row stride `dst.1` that no other thread touches during the call.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn matmul_rounded(
    m: usize,
    dst: (*mut f32, usize),
    a: (*const u32, usize),
    b: &PackedB,
) {
    // SAFETY: forwarded from the caller's contract.
    SCRATCH.with_borrow_mut(|scratch| unsafe { product(m, dst, a, b, &mut scratch.c) });
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Each thread's room for its products (fresh megabytes each call would cost a page fault
    /// every 4 KiB).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Room a product needs between calls: the left operand rounded, and the AMX kernel's block
/// cut short by the product's edge.
#[cfg(target_arch = "x86_64")]
#[derive(Default)]
struct Scratch {
    a: Aligned<u32>,
    c: Vec<f32>,
}

/// [`matmul_rounded`] with the thread's scratch `c`: on AMX tiles where they are granted, else
/// on the AVX512-BF16 kernel.
///
/// # Safety
/// As [`matmul_rounded`]'s.
#[cfg(target_arch = "x86_64")]
unsafe fn product(
    m: usize,
    (dst, dst_rs): (*mut f32, usize),
    (a, a_rs): (*const u32, usize),
    b: &PackedB,
    c: &mut Vec<f32>,
) {
    #[cfg(target_os = "linux")]
    if amx() {
        // SAFETY: AMX granted; `a` and `dst` as the caller's contract says.
        unsafe { amx::matmul(m, (dst, dst_rs), (a, a_rs), b, c) };
        return;
    }
    // SAFETY: as the caller's contract says.
    unsafe { vector_product(m, (dst, dst_rs), (a, a_rs), b) };
}

/// [`matmul_rounded`] on the AVX512-BF16 kernel, AMX or not.
///
/// # Safety
/// As [`matmul_rounded`]'s.
#[cfg(target_arch = "x86_64")]
unsafe fn vector_product(
    m: usize,
    (dst, dst_rs): (*mut f32, usize),
    (a, a_rs): (*const u32, usize),
    b: &PackedB,
) {
    let pairs = padded_pairs(b.k);
    // Rows in groups whose words stay in L1 while every panel passes over them.
    let group = (A_GROUP_BYTES / (pairs * 4).max(1))
        .max(1)
        .next_multiple_of(MR);
    for first in (0..m).step_by(group) {
        for panel in 0..b.n_pad / NR {
            let cols = (b.n - panel * NR).min(NR);
            let col = panel * NR;
            let (words, b_rs) = b.panel_at(col);
            for block in (first..m.min(first + group)).step_by(MR) {
                let rows = (m - block).min(MR);
                // SAFETY: `available()`; the block's 8 rows of `a` (readable up to a multiple
                // of ROW_BLOCK, itself a multiple of MR) and the panel of `b` are in bounds;
                // `dst`'s rows `block..block + rows` and the panel's columns are the caller's.
                unsafe {
                    kernel(
                        pairs,
                        (a.add(block * a_rs), a_rs),
                        words,
                        b_rs,
                        (dst.add(block * dst_rs + col), dst_rs),
                        [rows, cols],
                    );
                }
            }
        }
    }
}

/// Bytes of a left operand's rows that [`vector_product`] takes at once: every panel passes
/// over them while they are in L1 (the 32 KiB of AMD Zen 4's, beside a panel's rows).
#[cfg(target_arch = "x86_64")]
const A_GROUP_BYTES: usize = 8 * 1024;

/// `src` rounded to bf16 into `dst`, value by value (the lengths must match).
pub(super) fn round_slice(src: &[f32], dst: &mut [u16]) {
    assert_eq!(
        src.len(),
        dst.len(),
        "rounding needs as many places as values"
    );
    #[cfg(target_arch = "x86_64")]
    if available() {
        let full = src.len() / 32 * 32;
        // SAFETY: AVX512-BF16 is here; `full` values are in both slices.
        unsafe { round_words(&src[..full], &mut dst[..full]) };
        for (d, s) in dst[full..].iter_mut().zip(&src[full..]) {
            *d = bf16_bits(*s);
        }
        return;
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = bf16_bits(*s);
    }
}

/// `src` (a multiple of 32 values) rounded into `dst`, 32 at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_words(src: &[f32], dst: &mut [u16]) {
    use std::arch::x86_64::*;
    for (s, d) in src.chunks_exact(32).zip(dst.chunks_exact_mut(32)) {
        // SAFETY: 32 floats in `s`, 32 places in `d`.
        unsafe {
            let lo = _mm512_loadu_ps(s.as_ptr());
            let hi = _mm512_loadu_ps(s.as_ptr().add(16));
            let packed = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(
                d.as_mut_ptr().cast(),
                std::mem::transmute::<__m512bh, __m512i>(packed),
            );
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
    let at = |r: usize| row.get(r).copied().unwrap_or(0.0);
    for (p, word) in out.iter_mut().enumerate().skip(16 * full) {
        *word = pair(at(2 * p), at(2 * p + 1));
    }
}

/// `rows`×`cols` (at most 8×32) of the product: `a` is 8 rows of `pairs` words (at row
/// stride `a.1` words), `b` the panel (row stride `b_rs` words); written over `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(
    pairs: usize,
    (a, a_rs): (*const u32, usize),
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
                    std::mem::transmute(_mm512_set1_epi32(*a.add(r * a_rs + p) as i32));
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

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(super) mod amx;

#[cfg(test)]
mod tests;
