//! The input side of the Winograd convolutions: each tile's pixels transformed (B^T d B) into
//! rows of f32, or rounded to bf16 pairs as they are made.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::vector::Wide;
use super::vector::{LANES, Lanes, Vector};
#[cfg(target_arch = "x86_64")]
use super::wide_simd;
use super::{Block, MAX_ELEMENTS, Scheme, input_transform, partial, tile_origin};

/// Transforms the tiles of block `b` into `v`, `SIDE²` rows of `row` values a tile, tiles in
/// parallel: `tile(src, vt)` transforms one, from its pixels' channels ([`tile_pixels`]).
pub(super) fn winograd_inputs<S: Scheme, T: Send>(
    b: &Block<'_>,
    (v, row): (&mut [T], usize),
    tile: impl Fn(&[&[f32]; MAX_ELEMENTS], &mut [T]) + Sync,
) {
    v[..b.count * S::ELEMENTS * row]
        .par_chunks_mut(S::ELEMENTS * row)
        .enumerate()
        .for_each(|(i, vt)| tile(&tile_pixels::<S>(b, i), vt));
}

/// The channels of the `SIDE²` pixels of tile `i` of block `b`, row by row (`b.zeros` past the
/// image's edge).
#[inline(always)]
pub(super) fn tile_pixels<'a, S: Scheme>(b: &Block<'a>, i: usize) -> [&'a [f32]; MAX_ELEMENTS] {
    let (side, [h, w, cin], [th, tw]) = (S::SIDE, b.shape, b.tiles);
    let (img, y0, x0) = tile_origin::<S>(b.first + i, th, tw);
    let mut src: [&[f32]; MAX_ELEMENTS] = [b.zeros; MAX_ELEMENTS];
    for (k, s) in src.iter_mut().enumerate().take(side * side) {
        let (iy, ix) = ((y0 + k / side) as isize - 1, (x0 + k % side) as isize - 1);
        if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
            let p = ((img * h + iy as usize) * w + ix as usize) * cin;
            *s = &b.x[p..p + cin];
        }
    }
    src
}

/// Where one tile's transformed inputs go: `SIDE²` rows, one an element, of `cin` channels.
pub(super) trait TileRows {
    /// Channels `c0..c0 + LANES` of element `e`.
    fn put<V: Vector>(&mut self, e: usize, c0: usize, t: V);
    /// The last `n < LANES` channels of element `e`, from `c0` (the lanes past `n` are zero).
    fn put_partial(&mut self, e: usize, c0: usize, n: usize, t: Lanes);
}

/// Rows of f32, `[SIDE², cin]`.
pub(super) struct F32Rows<'a> {
    pub(super) v: &'a mut [f32],
    pub(super) cin: usize,
}

impl TileRows for F32Rows<'_> {
    #[inline(always)]
    fn put<V: Vector>(&mut self, e: usize, c0: usize, t: V) {
        t.store(&mut self.v[e * self.cin + c0..]);
    }
    #[inline(always)]
    fn put_partial(&mut self, e: usize, c0: usize, n: usize, t: Lanes) {
        self.v[e * self.cin + c0..][..n].copy_from_slice(&t[..n]);
    }
}

/// Rows rounded to bf16 pairs as they are made, `[SIDE², row]` words (`bf16::padded_pairs(cin)`,
/// what `bf16::matmul_rounded` reads): no pass of its own to round them.
struct Bf16Rows<'a> {
    words: &'a mut [u32],
    row: usize,
}

impl TileRows for Bf16Rows<'_> {
    #[inline(always)]
    fn put<V: Vector>(&mut self, e: usize, c0: usize, t: V) {
        t.store_bf16(&mut self.words[e * self.row + c0 / 2..]);
    }
    /// All `LANES` lanes: the zeros past `n` complete a last odd channel's pair and pad the
    /// row (a row's words are a multiple of 16, so the group fits).
    #[inline(always)]
    fn put_partial(&mut self, e: usize, c0: usize, _n: usize, t: Lanes) {
        t.store_bf16(&mut self.words[e * self.row + c0 / 2..]);
    }
}

/// One tile's input transform in f32: its pixels' `cin` channels (`src`) into `vt`
/// ([SIDE², cin]).
pub(super) fn f32_tile<S: Scheme>(src: &[&[f32]; MAX_ELEMENTS], cin: usize, vt: &mut [f32]) {
    let mut rows = F32Rows { v: vt, cin };
    #[cfg(target_arch = "x86_64")]
    if wide_simd() {
        // SAFETY: `wide_simd()` found AVX-512F.
        unsafe { input_tile_wide::<S>(src, cin, &mut rows) };
        return;
    }
    input_tile::<S, Lanes, _>(src, cin, &mut rows);
}

/// One tile's input transform rounded to bf16: into `wt` ([SIDE², row] words), the padding
/// words after the channels zero.
///
/// # Safety
/// The CPU must have AVX512-BF16 (`bf16::available`).
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn bf16_tile<S: Scheme>(
    src: &[&[f32]; MAX_ELEMENTS],
    cin: usize,
    wt: &mut [u32],
) {
    let row = wt.len() / S::ELEMENTS;
    // SAFETY: the caller's contract.
    unsafe { input_tile_bf16::<S>(src, cin, &mut Bf16Rows { words: wt, row }) };
    let written = cin.div_ceil(LANES) * LANES / 2;
    for padding in wt.chunks_exact_mut(row) {
        padding[written..].fill(0);
    }
}

/// One tile's input transform: its `SIDE²` pixels' `cin` channels (`src`) into `rows`, whole
/// channel groups in `V`.
#[inline(always)]
pub(super) fn input_tile<S: Scheme, V: Vector, R: TileRows>(
    src: &[&[f32]; MAX_ELEMENTS],
    cin: usize,
    rows: &mut R,
) {
    let full = cin / LANES * LANES;
    for c0 in (0..full).step_by(LANES) {
        input_transform::<S, V>(|k| V::load(&src[k][c0..]), |e, t| rows.put(e, c0, t));
    }
    if full < cin {
        let n = cin - full;
        let padded = partial(|k| src[k], S::ELEMENTS, (full, n));
        input_transform::<S, Lanes>(|k| padded[k], |e, t| rows.put_partial(e, full, n, t));
    }
}

/// [`input_tile`] into f32 rows compiled for AVX-512, on its registers (bf16 rows need
/// [`input_tile_bf16`]).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn input_tile_wide<S: Scheme>(
    src: &[&[f32]; MAX_ELEMENTS],
    cin: usize,
    rows: &mut F32Rows<'_>,
) {
    input_tile::<S, Wide, _>(src, cin, rows);
}

/// [`input_tile`] into bf16 rows, compiled for AVX-512 and AVX512-BF16.
///
/// # Safety
/// The CPU must have AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn input_tile_bf16<S: Scheme>(
    src: &[&[f32]; MAX_ELEMENTS],
    cin: usize,
    rows: &mut Bf16Rows<'_>,
) {
    input_tile::<S, Wide, _>(src, cin, rows);
}
