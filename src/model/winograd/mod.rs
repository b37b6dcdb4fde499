//! Winograd convolutions: each (m+2)×(m+2) input tile gives an m×m output tile, so the GEMMs do
//! 9m²/(m+2)² times less work than a direct convolution's. Y = A^T [(G g G^T) ⊙ (B^T d B)] A
//! (Lavin & Gray, 2015), in two tilings ([`Tiling`]):
//!
//! - F(2×2, 3×3): 16 products per 4 outputs (2.25× less work). B^T = [1 0 -1 0; 0 1 1 0;
//!   0 -1 1 0; 0 1 0 -1], G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1], A^T = [1 1 1 0; 0 1 -1 -1]. The
//!   transforms use only additions and halvings.
//! - F(4×4, 3×3): 36 products per 16 outputs (4× less work), on the points 0, ±1, ±2 and ∞.
//!   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
//!   0 4 0 -5 0 1], G = [¼ 0 0; -⅙ -⅙ -⅙; -⅙ ⅙ -⅙; 1/24 1/12 ⅙; 1/24 -1/12 ⅙; 0 0 1],
//!   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]. Its transforms multiply
//!   by up to 8 and its weights hold sixths, so its float rounding is a few times F(2×2)'s.

use rayon::prelude::*;

use super::bf16::{self, Aligned};
use super::cpu_base::{PackedConv, Right, SharedMut, product, sized};
#[cfg(target_arch = "x86_64")]
use vector::Wide;
use vector::{LANES, Lanes, Vector};

#[cfg(target_arch = "x86_64")]
use input::bf16_tile;
use input::{f32_tile, winograd_inputs};

#[cfg(target_arch = "x86_64")]
mod by_thread;
mod input;
mod vector;

/// The tile sizes, F(m×m, 3×3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// F(2×2, 3×3).
    F2,
    /// F(4×4, 3×3).
    F4,
}

impl Tiling {
    /// The tiling to use: F(4×4, 3×3), the fastest in f32 and in bf16 (BENCHMARKS.md, "Winograd
    /// F(4×4, 3×3)"), unless `VGGTUNE_WINOGRAD` asks for another.
    pub fn chosen() -> Self {
        match crate::tuning::current().winograd_tile {
            Some(2) => Self::F2,
            _ => Self::F4,
        }
    }

    /// Elements of a transformed tile: its products per (input, output channel).
    pub(super) fn elements(self) -> usize {
        match self {
            Self::F2 => F2::ELEMENTS,
            Self::F4 => F4::ELEMENTS,
        }
    }

    /// In words (for `vggtune info`).
    pub fn describe(self) -> &'static str {
        match self {
            Self::F2 => "Winograd F(2×2, 3×3)",
            Self::F4 => "Winograd F(4×4, 3×3)",
        }
    }
}

/// One tiling's one-dimensional transforms. The two-dimensional ones apply them to the columns,
/// then to the rows; arrays are sized for the largest tiling, and a smaller one uses their
/// first [`Scheme::SIDE`] entries.
trait Scheme {
    /// Side of an output tile.
    const OUT: usize;
    /// Side of an input tile.
    const SIDE: usize = Self::OUT + 2;
    /// Elements of a (transformed) input tile.
    const ELEMENTS: usize = Self::SIDE * Self::SIDE;
    /// G g: a kernel row of 3 into `SIDE` values.
    fn kernel_1d(g: [f64; 3]) -> [f64; MAX_SIDE];
    /// B^T d: `SIDE` input values into `SIDE` transformed ones.
    fn input_1d<V: Vector>(d: [V; MAX_SIDE]) -> [V; MAX_SIDE];
    /// A^T m: `SIDE` products into `OUT` outputs.
    fn output_1d<V: Vector>(m: [V; MAX_SIDE]) -> [V; MAX_OUT];
}

const MAX_SIDE: usize = 6;
const MAX_OUT: usize = 4;
/// Elements of the largest transformed tile.
const MAX_ELEMENTS: usize = MAX_SIDE * MAX_SIDE;

/// F(2×2, 3×3).
struct F2;
/// F(4×4, 3×3).
struct F4;

impl Scheme for F2 {
    const OUT: usize = 2;

    fn kernel_1d([g0, g1, g2]: [f64; 3]) -> [f64; MAX_SIDE] {
        [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2, 0.0, 0.0]
    }

    #[inline(always)]
    fn input_1d<V: Vector>(d: [V; MAX_SIDE]) -> [V; MAX_SIDE] {
        [
            d[0].sub(d[2]),
            d[1].add(d[2]),
            d[2].sub(d[1]),
            d[1].sub(d[3]),
            V::zero(),
            V::zero(),
        ]
    }

    #[inline(always)]
    fn output_1d<V: Vector>(m: [V; MAX_SIDE]) -> [V; MAX_OUT] {
        [
            m[0].add(m[1]).add(m[2]),
            m[1].sub(m[2]).sub(m[3]),
            V::zero(),
            V::zero(),
        ]
    }
}

impl Scheme for F4 {
    const OUT: usize = 4;

    fn kernel_1d([g0, g1, g2]: [f64; 3]) -> [f64; MAX_SIDE] {
        [
            g0 / 4.0,
            -(g0 + g1 + g2) / 6.0,
            -(g0 - g1 + g2) / 6.0,
            g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
            g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
            g2,
        ]
    }

    #[inline(always)]
    fn input_1d<V: Vector>(d: [V; MAX_SIDE]) -> [V; MAX_SIDE] {
        let (a, b) = (d[2].mul_add(-4.0, d[4]), d[1].mul_add(-4.0, d[3]));
        let (c, e) = (d[4].sub(d[2]), d[3].sub(d[1]).scale(2.0));
        [
            d[2].mul_add(-5.0, d[0].mul_add(4.0, d[4])),
            a.add(b),
            a.sub(b),
            c.add(e),
            c.sub(e),
            d[3].mul_add(-5.0, d[1].mul_add(4.0, d[5])),
        ]
    }

    #[inline(always)]
    fn output_1d<V: Vector>(m: [V; MAX_SIDE]) -> [V; MAX_OUT] {
        let (a, b) = (m[1].add(m[2]), m[1].sub(m[2]));
        let (c, e) = (m[3].add(m[4]), m[3].sub(m[4]));
        [
            m[0].add(a).add(c),
            e.mul_add(2.0, b),
            c.mul_add(4.0, a),
            e.mul_add(8.0, b).add(m[5]),
        ]
    }
}

/// The kernel transform G g G^T of every (input, output channel) pair: [elements, cin, cout]
/// (worked in f64, rounded once).
pub(super) fn winograd_weights(
    tiling: Tiling,
    direct: &[f32],
    cin: usize,
    cout: usize,
) -> Vec<f32> {
    match tiling {
        Tiling::F2 => weights::<F2>(direct, cin, cout),
        Tiling::F4 => weights::<F4>(direct, cin, cout),
    }
}

fn weights<S: Scheme>(direct: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let elements = S::ELEMENTS;
    let mut u = vec![0.0f32; elements * cin * cout];
    let planes = SharedMut(u.as_mut_ptr());
    // Input channels in parallel, each made in a buffer ([SIDE², cout], reused within a rayon
    // job) and copied into row `ci` of every element's plane: written straight into the
    // `S::ELEMENTS` planes, a model's weights took 0.3 s of CPU at each start, most of a
    // one-photo prediction's time.
    (0..cin)
        .into_par_iter()
        .for_each_init(Vec::new, |rows, ci| {
            rows.resize(elements * cout, 0.0f32);
            for co in 0..cout {
                pair_weights::<S>(
                    |ky, kx| direct[((ky * 3 + kx) * cin + ci) * cout + co],
                    |e, v| rows[e * cout + co] = v,
                );
            }
            for (e, row) in rows.chunks_exact(cout).enumerate() {
                // SAFETY: row `ci` of plane `e` ([elements, cin, cout] in `u`, alive until the
                // iteration ends) is this channel's alone.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(planes.ptr().add((e * cin + ci) * cout), cout)
                };
                dst.copy_from_slice(row);
            }
        });
    u
}

/// G g G^T of one (input, output channel) pair: `g(ky, kx)` gives its 3×3 kernel, and `put(e, u)`
/// takes element `e` of the transform (worked in f64, rounded once).
#[inline(always)]
fn pair_weights<S: Scheme>(g: impl Fn(usize, usize) -> f32, mut put: impl FnMut(usize, f32)) {
    let side = S::SIDE;
    let g = |ky: usize, kx: usize| f64::from(g(ky, kx));
    // r = G g (SIDE×3), then U = r G^T (SIDE×SIDE).
    let columns: [[f64; MAX_SIDE]; 3] =
        std::array::from_fn(|kx| S::kernel_1d([g(0, kx), g(1, kx), g(2, kx)]));
    // `i` picks an entry of each of the three columns.
    #[allow(clippy::needless_range_loop)]
    for i in 0..side {
        let t = S::kernel_1d([columns[0][i], columns[1][i], columns[2][i]]);
        for (j, v) in t.into_iter().take(side).enumerate() {
            put(i * side + j, v as f32);
        }
    }
}

// The two 2-D transforms below share their shape on purpose. Passing the 1-D transforms as
// functions into one 2-D routine left them, in one build, as calls compiled without AVX-512
// (`Fn::call`, and each `_mm512_*` intrinsic a call): 10.6 s instead of 6.3 s for 100 photos.

/// B^T d B on one channel group: `load(k)` gives the tile's pixel `k` (row by row), and
/// `put(e, v)` takes transformed element `e`.
///
/// The arrays are built whole (`from_fn`) and read by index: a zeroed array filled in place,
/// or one moved into an iterator, cost a `memset` or a `memcpy` of the whole tile a call.
#[inline(always)]
fn input_transform<S: Scheme, V: Vector>(load: impl Fn(usize) -> V, mut put: impl FnMut(usize, V)) {
    let side = S::SIDE;
    // Column j of B^T d.
    let columns: [[V; MAX_SIDE]; MAX_SIDE] = std::array::from_fn(|j| {
        S::input_1d(std::array::from_fn(|i| {
            if i < side && j < side {
                load(i * side + j)
            } else {
                V::zero()
            }
        }))
    });
    // `i` picks an entry of each column (by index: an iterator would move the arrays).
    #[allow(clippy::needless_range_loop)]
    for i in 0..side {
        let row = S::input_1d(std::array::from_fn(|j| columns[j][i]));
        for (k, v) in row.iter().enumerate().take(side) {
            put(i * side + k, *v);
        }
    }
}

/// A^T m A on one channel group: `load(e)` gives the product's element `e`, and `put(k, v)`
/// takes output `k` of the `OUT²` (row by row). Built as [`input_transform`] is.
#[inline(always)]
fn output_transform<S: Scheme, V: Vector>(
    load: impl Fn(usize) -> V,
    mut put: impl FnMut(usize, V),
) {
    let side = S::SIDE;
    // Column j of A^T m.
    let columns: [[V; MAX_OUT]; MAX_SIDE] = std::array::from_fn(|j| {
        S::output_1d(std::array::from_fn(|i| {
            if i < side && j < side {
                load(i * side + j)
            } else {
                V::zero()
            }
        }))
    });
    // `i` picks an entry of each column (by index: an iterator would move the arrays).
    #[allow(clippy::needless_range_loop)]
    for i in 0..S::OUT {
        let row = S::output_1d(std::array::from_fn(|j| columns[j][i]));
        for (k, v) in row.iter().enumerate().take(S::OUT) {
            put(i * S::OUT + k, *v);
        }
    }
}

/// A last group of `n < LANES` channels from `c0` of `count` rows, copied out with
/// zeros after them.
#[inline(always)]
fn partial<'a>(
    row: impl Fn(usize) -> &'a [f32],
    count: usize,
    (c0, n): (usize, usize),
) -> [Lanes; MAX_ELEMENTS] {
    let mut padded = [Lanes::zero(); MAX_ELEMENTS];
    for (k, p) in padded.iter_mut().enumerate().take(count) {
        p[..n].copy_from_slice(&row(k)[c0..c0 + n]);
    }
    padded
}

/// Where tile `t` sits: (image, first output row, first output column).
fn tile_origin<S: Scheme>(t: usize, th: usize, tw: usize) -> (usize, usize, usize) {
    (t / (th * tw), S::OUT * ((t / tw) % th), S::OUT * (t % tw))
}

/// Where a layer's outputs go: NHWC `out` (`size` = [height, width, channels] an image, `tiles`
/// = [rows, columns] of tiles an image), with `bias` added.
#[derive(Clone, Copy)]
struct Outputs<'a> {
    size: [usize; 3],
    tiles: [usize; 2],
    bias: &'a [f32],
    out: SharedMut<f32>,
}

impl Outputs<'_> {
    /// Tile `t`'s products `mt` ([SIDE², cout]) into its outputs, with bias and ReLU (outputs
    /// past the edge are dropped); `wide`: on AVX-512 registers (`wide_simd()` said yes).
    #[inline(always)]
    fn tile<S: Scheme>(&self, t: usize, mt: &[f32], wide: bool) {
        let [th, tw] = self.tiles;
        let (img, y0, x0) = tile_origin::<S>(t, th, tw);
        let tile = OutputTile {
            origin: [img, y0, x0],
            size: self.size,
            bias: self.bias,
            out: self.out,
        };
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide_simd()` found AVX-512F (the caller's word).
            unsafe { output_tile_wide::<S>(mt, &tile) };
            return;
        }
        let _ = wide;
        output_tile::<S, Lanes>(mt, &tile);
    }
}

/// Turns `m` ([count, SIDE², cout]) of tiles `first..` into outputs, tiles in parallel.
fn winograd_outputs<S: Scheme>(m: &[f32], outputs: &Outputs<'_>, first: usize) {
    let wide = wide_simd();
    m.par_chunks(S::ELEMENTS * outputs.size[2])
        .enumerate()
        .for_each(|(i, mt)| outputs.tile::<S>(first + i, mt, wide));
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

impl OutputTile<'_> {
    /// Where output `k` of the tile (row by row) starts in `out`, on channel `c0`; `None` past
    /// the layer's edge.
    #[inline(always)]
    fn place<S: Scheme>(&self, k: usize, c0: usize) -> Option<usize> {
        let ([img, y0, x0], [h, w, cout]) = (self.origin, self.size);
        let (oy, ox) = (y0 + k / S::OUT, x0 + k % S::OUT);
        (oy < h && ox < w).then(|| ((img * h + oy) * w + ox) * cout + c0)
    }
}

/// `n` channels of one output pixel of `out` from `p` (an [`OutputTile::place`]).
///
/// # Safety
/// The pixel must be one tile's own (no other thread writes it), and `p + n` within the buffer
/// behind `out` (images·h·w·cout floats).
#[inline(always)]
unsafe fn pixel<'o>(out: SharedMut<f32>, p: usize, n: usize) -> &'o mut [f32] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(out.ptr().add(p), n) }
}

/// One tile's output transform: `mt` ([SIDE², cout]) into its OUT×OUT output pixels with bias
/// and ReLU, whole channel groups in `V`.
#[inline(always)]
fn output_tile<S: Scheme, V: Vector>(mt: &[f32], t: &OutputTile<'_>) {
    let (elements, cout) = (S::ELEMENTS, t.size[2]);
    let full = cout / LANES * LANES;
    for c0 in (0..full).step_by(LANES) {
        let bias = V::load(&t.bias[c0..]);
        output_transform::<S, V>(
            |e| V::load(&mt[e * cout + c0..]),
            |k, y| {
                if let Some(p) = t.place::<S>(k, c0) {
                    // SAFETY: the tile's own output pixel (`place`), channels c0..c0 + LANES
                    // with c0 + LANES ≤ cout, so within `out`.
                    let dst = unsafe { pixel(t.out, p, LANES) };
                    y.add(bias).max(V::zero()).store(dst);
                }
            },
        );
    }
    if full < cout {
        let n = cout - full;
        let padded = partial(|e| &mt[e * cout..], elements, (full, n));
        output_transform::<S, Lanes>(
            |e| padded[e],
            |k, y| {
                if let Some(p) = t.place::<S>(k, full) {
                    // SAFETY: the tile's own output pixel (`place`), its last `n` channels
                    // (full + n = cout), so within `out`.
                    let dst = unsafe { pixel(t.out, p, n) };
                    for ((d, y), b) in dst.iter_mut().zip(y).zip(&t.bias[full..]) {
                        *d = (y + b).max(0.0);
                    }
                }
            },
        );
    }
}

/// [`output_tile`] compiled for AVX-512, on its registers.
///
/// # Safety
/// The CPU must have AVX-512F, and `t.out` must be as [`output_tile`] needs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_tile_wide<S: Scheme>(mt: &[f32], t: &OutputTile<'_>) {
    output_tile::<S, Wide>(mt, t);
}

/// Whether the transforms run compiled for AVX-512 (the CPU has AVX-512F).
fn wide_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Scratch space for [`conv3x3_winograd`], reused across layers.
#[derive(Default)]
pub(super) struct WinogradScratch {
    /// Transformed inputs in f32, `[tiles, SIDE², cin]`.
    v: Vec<f32>,
    /// The same rounded to bf16 pairs, `[tiles, SIDE², padded_pairs(cin)]` words.
    words: Aligned<u32>,
    /// Products, `[tiles, SIDE², cout]`.
    m: Vec<f32>,
    zeros: Vec<f32>,
    /// A room a thread for the bf16 pass by thread.
    #[cfg(target_arch = "x86_64")]
    rooms: Vec<std::sync::Mutex<by_thread::Room>>,
}

/// A 3×3 convolution (stride 1, padding 1) + bias + ReLU on NHWC `x` by Winograd in `tiling`,
/// into `out` (NHWC). `u` is [`winograd_weights`] of the layer in that tiling.
pub(super) fn conv3x3_winograd(
    tiling: Tiling,
    x: &[f32],
    shape: [usize; 3],
    conv: &PackedConv,
    u: &[Right],
    out: &mut Vec<f32>,
    scratch: &mut WinogradScratch,
) {
    assert_eq!(u.len(), tiling.elements(), "weights of another tiling");
    match tiling {
        Tiling::F2 => convolve::<F2>(x, shape, conv, u, out, scratch),
        Tiling::F4 => convolve::<F4>(x, shape, conv, u, out, scratch),
    }
}

/// How a layer's tiles go through its convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Blocks of hundreds of tiles, each step of a block spread over the threads.
    Blocks,
    /// In bf16, this many tiles at a time on each thread, through every step ([`by_thread`]).
    #[cfg(target_arch = "x86_64")]
    ByThread(usize),
}

impl Pass {
    /// By thread in bf16 where the layer has tiles enough for every thread, else by blocks.
    fn chosen(u: &[Right], tiles: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let (Some(Right::Bf16(_)), Some(chunk)) = (u.first(), by_thread::chunk(tiles)) {
            return Self::ByThread(chunk);
        }
        let _ = (u, tiles);
        Self::Blocks
    }
}

fn convolve<S: Scheme>(
    x: &[f32],
    [n, h, w]: [usize; 3],
    conv: &PackedConv,
    u: &[Right],
    out: &mut Vec<f32>,
    scratch: &mut WinogradScratch,
) {
    let tiles = n * h.div_ceil(S::OUT) * w.div_ceil(S::OUT);
    let pass = Pass::chosen(u, tiles);
    convolve_in::<S>(pass, (x, [n, h, w]), conv, u, out, scratch);
}

/// [`convolve`] in `pass`.
fn convolve_in<S: Scheme>(
    pass: Pass,
    (x, [n, h, w]): (&[f32], [usize; 3]),
    conv: &PackedConv,
    u: &[Right],
    out: &mut Vec<f32>,
    scratch: &mut WinogradScratch,
) {
    let (cin, cout) = (conv.cin, conv.cout);
    let elements = S::ELEMENTS;
    let (th, tw) = (h.div_ceil(S::OUT), w.div_ceil(S::OUT));
    let tiles = n * th * tw;
    let out = sized(out, n * h * w * cout);
    let outputs = Outputs {
        size: [h, w, cout],
        tiles: [th, tw],
        bias: &conv.bias,
        out: SharedMut(out.as_mut_ptr()),
    };
    scratch.zeros.resize(cin, 0.0);
    let all = Block {
        x,
        shape: [h, w, cin],
        tiles: [th, tw],
        first: 0,
        count: tiles,
        zeros: &scratch.zeros,
    };
    #[cfg(target_arch = "x86_64")]
    if let Pass::ByThread(chunk) = pass {
        by_thread::convolve::<S>(&all, chunk, u, &outputs, &mut scratch.rooms);
        return;
    }
    let _ = pass;
    // A block's transformed inputs and products stay within a few MiB (L3), and its GEMMs are
    // tall enough to run near full speed.
    let block = (WINOGRAD_BLOCK_FLOATS / (elements * cin.max(cout))).clamp(16, tiles.max(16));
    let mut first = 0;
    while first < tiles {
        let count = block.min(tiles - first);
        let m = sized(&mut scratch.m, count * elements * cout);
        let m_ptr = SharedMut(m.as_mut_ptr());
        let input = Block {
            first,
            count,
            ..all
        };
        match u.first() {
            #[cfg(target_arch = "x86_64")]
            Some(Right::Bf16(_)) => {
                rounded_products::<S>(&input, u, &mut scratch.words, m_ptr, cout)
            }
            _ => products::<S>(&input, u, &mut scratch.v, m_ptr, cout),
        }
        winograd_outputs::<S>(m, &outputs, first);
        first += count;
    }
}

/// Tiles `first..first + count` of a layer's input `x` (NHWC `[.., h, w, cin]`, `th`×`tw`
/// tiles an image).
#[derive(Clone, Copy)]
struct Block<'a> {
    x: &'a [f32],
    shape: [usize; 3],
    tiles: [usize; 2],
    first: usize,
    count: usize,
    /// `cin` zeros: the pixels past the image's edge.
    zeros: &'a [f32],
}

/// A block's products: its inputs transformed in f32 into `v`, times each element's weights
/// (`u`), into `m` ([count, SIDE², cout]).
fn products<S: Scheme>(
    b: &Block<'_>,
    u: &[Right],
    v: &mut Vec<f32>,
    m: SharedMut<f32>,
    cout: usize,
) {
    let (elements, cin) = (S::ELEMENTS, b.shape[2]);
    let v = sized(v, b.count * elements * cin);
    winograd_inputs::<S, f32>(b, (v, cin), |src, vt| f32_tile::<S>(src, cin, vt));
    let v: &[f32] = v;
    (0..elements).into_par_iter().for_each(|e| {
        // SAFETY: element e of every tile's product ([count, elements, cout], row stride
        // elements·cout) is written by this e alone; v is [count, elements, cin], live for
        // the call, and u[e] is [cin, cout].
        unsafe {
            product(
                [b.count, cout, cin],
                (m.ptr().add(e * cout), elements * cout),
                (v.as_ptr().add(e * cin), elements * cin),
                &u[e],
            );
        }
    });
}

/// A block's products in bf16: its inputs transformed and rounded to bf16 in one pass into
/// `words`, times each element's weights (`u`, all bf16), into `m` ([count, SIDE², cout]).
#[cfg(target_arch = "x86_64")]
fn rounded_products<S: Scheme>(
    b: &Block<'_>,
    u: &[Right],
    words: &mut Aligned<u32>,
    m: SharedMut<f32>,
    cout: usize,
) {
    assert_bf16();
    let (elements, cin) = (S::ELEMENTS, b.shape[2]);
    let row = bf16::padded_pairs(cin);
    size_rounded::<S>(words, b.count, row);
    winograd_inputs::<S, u32>(b, (words.as_mut_slice(), row), |src, wt| {
        // SAFETY: AVX512-BF16 is here (asserted above).
        unsafe { bf16_tile::<S>(src, cin, wt) }
    });
    let words = words.as_slice();
    (0..elements).into_par_iter().for_each(|e| {
        // SAFETY: AVX512-BF16 is here; element e of every tile's product is written by this e
        // alone; the rows are readable up to a multiple of ROW_BLOCK (resized above), their
        // padding words zero (`bf16_tile`).
        unsafe { element_product::<S>(e, b.count, u, (words, row), (m, cout)) }
    });
}

/// bf16 weights are packed only where the CPU runs bf16 products (`Right::new`): the bf16
/// passes check that once before their `unsafe` calls.
#[cfg(target_arch = "x86_64")]
fn assert_bf16() {
    assert!(
        bf16::available(),
        "bf16 weights on a CPU without AVX512-BF16"
    );
}

/// Sizes `words` for the rounded inputs of `count` tiles, `SIDE²` rows of `row` words a tile:
/// the products read whole blocks of rows, so the rows past `count` up to a multiple of
/// `bf16::ROW_BLOCK` are padding (they reach no sum that is kept).
#[cfg(target_arch = "x86_64")]
fn size_rounded<S: Scheme>(words: &mut Aligned<u32>, count: usize, row: usize) {
    words.resize(count.next_multiple_of(bf16::ROW_BLOCK) * S::ELEMENTS * row);
}

/// Element `e`'s product of `count` tiles: their rounded inputs (`words`, `SIDE²` rows of `row`
/// words a tile) times the element's weights (`u[e]`, bf16), into `m` ([count, SIDE², cout]).
///
/// # Safety
/// AVX512-BF16 must be here; `words` must hold `count.next_multiple_of(bf16::ROW_BLOCK)` tiles'
/// rows, the padding words of the first `count` tiles' zero (as [`size_rounded`] and
/// `bf16_tile` make them); `m` must address `count` tiles' products of `cout` channels, whose
/// element `e` nothing else touches during the call. (The weights' shape is checked here.)
#[cfg(target_arch = "x86_64")]
unsafe fn element_product<S: Scheme>(
    e: usize,
    count: usize,
    u: &[Right],
    (words, row): (&[u32], usize),
    (m, cout): (SharedMut<f32>, usize),
) {
    let elements = S::ELEMENTS;
    let Right::Bf16(weights) = &u[e] else {
        unreachable!("a layer's weights are all in one precision")
    };
    let [k, n] = weights.shape();
    assert!(
        bf16::padded_pairs(k) == row && n == cout,
        "element weights of {k}×{n} for rows of {row} words and {cout} channels"
    );
    assert!(
        words.len() >= count.next_multiple_of(bf16::ROW_BLOCK) * elements * row,
        "rounded inputs shorter than {count} tiles' rows"
    );
    // SAFETY: the caller's contract: element e's rows start at e·row, elements·row words
    // apart; its products at e·cout, elements·cout floats apart.
    unsafe {
        bf16::matmul_rounded(
            count,
            (m.ptr().add(e * cout), elements * cout),
            (words.as_ptr().add(e * row), elements * row),
            weights,
        );
    }
}

/// Floats of transformed input (or product) per Winograd block: 2 Mi floats, 8 MiB.
const WINOGRAD_BLOCK_FLOATS: usize = 2 * 1024 * 1024;

#[cfg(test)]
mod tests;
