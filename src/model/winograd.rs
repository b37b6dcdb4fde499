//! Winograd F(2×2, 3×3): each 4×4 input tile gives a 2×2 output tile with 16 multiplications per
//! (input channel, output channel) instead of 36, so the GEMMs do 2.25× less work. With
//! B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1] and
//! A^T = [1 1 1 0; 0 1 -1 -1]: Y = A^T [(G g G^T) ⊙ (B^T d B)] A (Lavin & Gray, 2015). The
//! transforms use only additions and halvings, so the result differs from the direct sum by
//! float rounding alone.

use rayon::prelude::*;

use super::cpu_base::{PackedConv, Right, SharedMut, product, sized};

/// Lanes per transform step (one AVX-512 register of f32).
const LANES: usize = 16;

/// `dst[..n] = src[..n]` for `n ≤ LANES`. Channel counts are multiples of 16 past the first
/// layer, so `n` is nearly always `LANES`: that copy has a constant size and compiles to one
/// vector load and store, where a copy of `n` values calls `memcpy` (13% of the f32 base's time
/// went to such calls of 64 bytes).
#[inline(always)]
fn copy_lanes(dst: &mut [f32], src: &[f32], n: usize) {
    if n == LANES {
        dst[..LANES].copy_from_slice(&src[..LANES]);
    } else {
        dst[..n].copy_from_slice(&src[..n]);
    }
}

/// The kernel transform G g G^T of every (input, output channel) pair: [16, cin, cout].
pub(super) fn winograd_weights(direct: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; 16 * cin * cout];
    for ci in 0..cin {
        for co in 0..cout {
            let g = |ky: usize, kx: usize| direct[((ky * 3 + kx) * cin + ci) * cout + co];
            // r = G g (4×3), then U = r G^T (4×4).
            let r: [[f32; 3]; 4] = std::array::from_fn(|i| {
                std::array::from_fn(|kx| {
                    let (g0, g1, g2) = (g(0, kx), g(1, kx), g(2, kx));
                    match i {
                        0 => g0,
                        1 => 0.5 * (g0 + g1 + g2),
                        2 => 0.5 * (g0 - g1 + g2),
                        _ => g2,
                    }
                })
            });
            for (i, row) in r.iter().enumerate() {
                let t = [
                    row[0],
                    0.5 * (row[0] + row[1] + row[2]),
                    0.5 * (row[0] - row[1] + row[2]),
                    row[2],
                ];
                for (j, v) in t.into_iter().enumerate() {
                    u[((i * 4 + j) * cin + ci) * cout + co] = v;
                }
            }
        }
    }
    u
}

/// `LANES` channels of one pixel: the unit the Winograd transforms compute on (one 16-wide
/// register where there is AVX-512).
type Lanes = [f32; LANES];

#[inline(always)]
fn add(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|l| a[l] + b[l])
}

#[inline(always)]
fn sub(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|l| a[l] - b[l])
}

/// The first `LANES` values of `s` as one unit (callers slice at least that many).
#[inline(always)]
fn lanes(s: &[f32]) -> &Lanes {
    s[..LANES].try_into().expect("a slice of LANES values")
}

/// B^T d B on `LANES` channels at once: `d` holds the tile's 16 pixels row by row; `put(e, v)`
/// takes transformed position `e`. Whole rows at a time, so each step is one vector operation.
#[inline(always)]
fn input_transform(d: &[&Lanes; 16], mut put: impl FnMut(usize, &Lanes)) {
    let mut r = [[[0.0f32; LANES]; 4]; 4];
    for j in 0..4 {
        let (d0, d1, d2, d3) = (d[j], d[4 + j], d[8 + j], d[12 + j]);
        r[0][j] = sub(d0, d2);
        r[1][j] = add(d1, d2);
        r[2][j] = sub(d2, d1);
        r[3][j] = sub(d1, d3);
    }
    for (i, row) in r.iter().enumerate() {
        put(i * 4, &sub(&row[0], &row[2]));
        put(i * 4 + 1, &add(&row[1], &row[2]));
        put(i * 4 + 2, &sub(&row[2], &row[1]));
        put(i * 4 + 3, &sub(&row[1], &row[3]));
    }
}

/// A^T m A on `LANES` channels at once: the 2×2 outputs, row by row.
#[inline(always)]
fn output_transform(m: &[&Lanes; 16]) -> [Lanes; 4] {
    let mut t = [[[0.0f32; LANES]; 4]; 2];
    for j in 0..4 {
        let (m0, m1, m2, m3) = (m[j], m[4 + j], m[8 + j], m[12 + j]);
        t[0][j] = add(&add(m0, m1), m2);
        t[1][j] = sub(&sub(m1, m2), m3);
    }
    let mut y = [[0.0f32; LANES]; 4];
    for (i, row) in t.iter().enumerate() {
        y[i * 2] = add(&add(&row[0], &row[1]), &row[2]);
        y[i * 2 + 1] = sub(&sub(&row[1], &row[2]), &row[3]);
    }
    y
}

/// The `LANES` channels from `c0` of 16 rows (`row(k)` is row k's slice from channel 0): in
/// place where all `LANES` are there, else copied into `padded` with zeros after the `n` left.
#[inline(always)]
fn tile_lanes<'a>(
    row: impl Fn(usize) -> &'a [f32],
    (c0, n): (usize, usize),
    padded: &'a mut [Lanes; 16],
) -> [&'a Lanes; 16] {
    if n == LANES {
        return std::array::from_fn(|k| lanes(&row(k)[c0..]));
    }
    for (k, p) in padded.iter_mut().enumerate() {
        p[..n].copy_from_slice(&row(k)[c0..c0 + n]);
        p[n..].fill(0.0);
    }
    let padded: &'a [Lanes; 16] = padded;
    std::array::from_fn(|k| &padded[k])
}
/// Where tile `t` sits: (image, first output row, first output column).
fn tile_origin(t: usize, th: usize, tw: usize) -> (usize, usize, usize) {
    (t / (th * tw), 2 * ((t / tw) % th), 2 * (t % tw))
}

/// Transforms tiles `first..first + count` of NHWC `x` into `v` ([count, 16, cin]).
fn winograd_inputs(
    x: &[f32],
    [h, w, cin]: [usize; 3],
    [th, tw]: [usize; 2],
    first: usize,
    v: &mut [f32],
    zeros: &[f32],
) {
    #[cfg(target_arch = "x86_64")]
    let wide = wide_simd();
    v.par_chunks_mut(16 * cin).enumerate().for_each(|(i, vt)| {
        let (img, y0, x0) = tile_origin(first + i, th, tw);
        let mut src: [&[f32]; 16] = [zeros; 16];
        for (k, s) in src.iter_mut().enumerate() {
            let (iy, ix) = ((y0 + k / 4) as isize - 1, (x0 + k % 4) as isize - 1);
            if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                let p = ((img * h + iy as usize) * w + ix as usize) * cin;
                *s = &x[p..p + cin];
            }
        }
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide_simd()` found AVX-512F.
            unsafe { input_tile_wide(&src, cin, vt) };
            return;
        }
        input_tile(&src, cin, vt);
    });
}

/// One tile's input transform: its 16 pixels' `cin` channels (`src`) into `vt` ([16, cin]).
#[inline(always)]
fn input_tile(src: &[&[f32]; 16], cin: usize, vt: &mut [f32]) {
    // Only a last partial group of channels copies into it.
    let mut padded = [[0.0f32; LANES]; 16];
    let mut c0 = 0;
    while c0 < cin {
        let n = LANES.min(cin - c0);
        let d = tile_lanes(|k| src[k], (c0, n), &mut padded);
        input_transform(&d, |e, te| copy_lanes(&mut vt[e * cin + c0..], te, n));
        c0 += n;
    }
}

/// [`input_tile`] compiled for AVX-512: whole 16-wide registers for `Lanes`.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_tile_wide(src: &[&[f32]; 16], cin: usize, vt: &mut [f32]) {
    input_tile(src, cin, vt);
}

/// Turns `m` ([count, 16, cout]) of tiles `first..` into outputs with bias and ReLU, written into
/// NHWC `out` (outputs past an odd edge are dropped).
fn winograd_outputs(
    m: &[f32],
    [h, w, cout]: [usize; 3],
    [th, tw]: [usize; 2],
    first: usize,
    bias: &[f32],
    out: SharedMut<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    let wide = wide_simd();
    m.par_chunks(16 * cout).enumerate().for_each(|(i, mt)| {
        let (img, y0, x0) = tile_origin(first + i, th, tw);
        let tile = OutputTile {
            origin: [img, y0, x0],
            size: [h, w, cout],
            bias,
            out,
        };
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide_simd()` found AVX-512F.
            unsafe { output_tile_wide(mt, &tile) };
            return;
        }
        output_tile(mt, &tile);
    });
}

/// Where one tile's outputs go.
struct OutputTile<'a> {
    /// (image, first output row, first output column).
    origin: [usize; 3],
    /// The layer's output (height, width, channels).
    size: [usize; 3],
    bias: &'a [f32],
    out: SharedMut<f32>,
}

/// One tile's output transform: `mt` ([16, cout]) into its 2×2 output pixels with bias and ReLU.
#[inline(always)]
fn output_tile(mt: &[f32], t: &OutputTile<'_>) {
    let ([img, y0, x0], [h, w, cout]) = (t.origin, t.size);
    // Only a last partial group of channels copies into it.
    let mut padded = [[0.0f32; LANES]; 16];
    let mut c0 = 0;
    while c0 < cout {
        let n = LANES.min(cout - c0);
        let d = tile_lanes(|e| &mt[e * cout..], (c0, n), &mut padded);
        let y = output_transform(&d);
        for (k, yk) in y.iter().enumerate() {
            let (oy, ox) = (y0 + k / 2, x0 + k % 2);
            if oy < h && ox < w {
                let p = ((img * h + oy) * w + ox) * cout + c0;
                for (l, (y, b)) in yk[..n].iter().zip(&t.bias[c0..c0 + n]).enumerate() {
                    // SAFETY: output pixel (oy, ox) belongs to this tile alone, and
                    // p + l < images·h·w·cout, the length of the buffer behind `out`.
                    unsafe { *t.out.ptr().add(p + l) = (y + b).max(0.0) };
                }
            }
        }
        c0 += n;
    }
}

/// [`output_tile`] compiled for AVX-512.
///
/// # Safety
/// The CPU must have AVX-512F, and `t.out` must be as [`output_tile`] needs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_tile_wide(mt: &[f32], t: &OutputTile<'_>) {
    output_tile(mt, t);
}

/// Whether the transforms run compiled for AVX-512 (the CPU has AVX-512F). Their code is plain
/// loops over `LANES` floats; compiled without it they ran on 4-wide SSE registers.
#[cfg(target_arch = "x86_64")]
fn wide_simd() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Scratch space for [`conv3x3_winograd`], reused across layers.
#[derive(Default)]
pub(super) struct WinogradScratch {
    v: Vec<f32>,
    m: Vec<f32>,
    zeros: Vec<f32>,
}

/// A 3×3 convolution (stride 1, padding 1) + bias + ReLU on NHWC `x` by Winograd F(2×2, 3×3),
/// into `out` (NHWC). `u` is [`winograd_weights`] of the layer.
pub(super) fn conv3x3_winograd(
    x: &[f32],
    [n, h, w]: [usize; 3],
    conv: &PackedConv,
    u: &[Right],
    out: &mut Vec<f32>,
    scratch: &mut WinogradScratch,
) {
    let (cin, cout) = (conv.cin, conv.cout);
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let tiles = n * th * tw;
    // A block's transformed inputs and products stay within a few MiB (L3), and its GEMMs are
    // tall enough to run near full speed.
    let block = (WINOGRAD_BLOCK_FLOATS / (16 * cin.max(cout))).clamp(16, tiles.max(16));
    let out = sized(out, n * h * w * cout);
    let out_ptr = SharedMut(out.as_mut_ptr());
    scratch.zeros.resize(cin, 0.0);
    let mut first = 0;
    while first < tiles {
        let count = block.min(tiles - first);
        let v = sized(&mut scratch.v, count * 16 * cin);
        winograd_inputs(x, [h, w, cin], [th, tw], first, v, &scratch.zeros);
        let m = sized(&mut scratch.m, count * 16 * cout);
        let m_ptr = SharedMut(m.as_mut_ptr());
        let v: &[f32] = v;
        (0..16).into_par_iter().for_each(|e| {
            // SAFETY: element e of every tile's product ([count, 16, cout], row stride
            // 16·cout) is written by this e alone; v is [count, 16, cin], live for the
            // call, and u[e] is [cin, cout].
            unsafe {
                product(
                    [count, cout, cin],
                    (m_ptr.ptr().add(e * cout), 16 * cout),
                    (v.as_ptr().add(e * cin), 16 * cin),
                    &u[e],
                );
            }
        });
        winograd_outputs(m, [h, w, cout], [th, tw], first, &conv.bias, out_ptr);
        first += count;
    }
}

/// Floats of transformed input (or product) per Winograd block: 2 Mi floats, 8 MiB.
const WINOGRAD_BLOCK_FLOATS: usize = 2 * 1024 * 1024;
