//! The frozen convolution base on the CPU, without Burn: channels-last activations, one tiled
//! im2col + GEMM per convolution with bias and ReLU fused, max-pools on the same layout.
//!
//! Frozen layers need no gradients, so their forward pass can skip the tensor library. Burn's
//! `flex` backend converts every convolution's input to channels-last and back, and runs bias,
//! ReLU and pooling as separate passes over fresh buffers; here the activations stay
//! channels-last from the first convolution to the last, so each layer is one GEMM over the whole
//! sub-batch (rows = output pixels of every image in it, columns = output channels) written
//! straight into the next layer's input. Tiles of output rows are the unit of parallel work:
//! each thread fills its own im2col tile and runs a single-threaded GEMM on it, so the two
//! threads never wait on each other inside a layer.
//!
//! [`CpuConvBase::forward`] gives what [`Vgg16::forward_convs`] gives (NCHW out), to within
//! float rounding; a test pins that.
//!
//! In bf16 where the CPU has AMX tiles, the layers run instead as direct convolutions over bf16
//! activations ([`Algorithm::Direct`], `model::direct`): there a tile product costs so little
//! that im2col's copies and Winograd's transforms would be most of the time.

use rayon::prelude::*;

use super::bf16::{self, Precision};
pub use super::buffers::HeldBuffers;
use super::buffers::{Kept, Pass};
use super::direct;
use super::host::{strided_matmul, to_host};
use super::vgg::{POOL_AFTER, POOLED_SIDE, Vgg16};
pub use super::winograd::Tiling;
use super::winograd::{WinogradScratch, conv3x3_winograd, winograd_weights};

/// Images per pass through the layers: bounds the activation buffers (at 224 px, the first
/// layers' outputs are 12.8 MB an image) while keeping the late layers' GEMMs tall.
const SUB_BATCH: usize = 8;

/// Aim for im2col tiles of about this many floats (1 MiB of f32: in L2 beside the GEMM's
/// packed blocks).
const TILE_FLOATS: usize = 256 * 1024;

/// How [`CpuConvBase`] computes its convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Winograd convolutions in these tiles for every convolution but the first (the default
    /// in f32, and in bf16 without AMX tiles).
    Winograd(Tiling),
    /// im2col + GEMM for every convolution.
    Im2col,
    /// Direct convolutions on AMX tiles over bf16 activations ([`direct`]): the default in
    /// bf16 where AMX runs; elsewhere (or in f32, or where a layer does not fit) Winograd.
    Direct,
}

impl Algorithm {
    /// The algorithm for a base in `precision` on this CPU: the fastest, unless
    /// [`crate::tuning`] asks for another (`VGGTUNE_CPU_CONV`, for comparisons).
    pub fn chosen(precision: Precision) -> Self {
        use crate::tuning::CpuConv;
        match crate::tuning::current().cpu_conv {
            CpuConv::Im2col => Self::Im2col,
            CpuConv::Winograd => Self::Winograd(Tiling::chosen()),
            CpuConv::Fastest | CpuConv::Burn => {
                if precision == Precision::Bf16 && bf16::amx() {
                    Self::Direct
                } else {
                    Self::Winograd(Tiling::chosen())
                }
            }
        }
    }

    /// In words (for `vggtune info`).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Winograd(tiling) => tiling.describe(),
            Self::Im2col => "im2col + GEMM",
            Self::Direct => "direct convolutions over bf16 activations",
        }
    }
}

/// One 3×3, stride-1, padding-1 convolution, weights packed for the GEMM.
pub(super) struct PackedConv {
    pub(super) cin: usize,
    pub(super) cout: usize,
    pub(super) weights: Weights,
    pub(super) bias: Vec<f32>,
    pub(super) pool_after: bool,
}

impl PackedConv {
    /// Whether a max-pool follows this layer in a pass (`last`: the pass's last layer; a pass
    /// to the last activation stops before its pool).
    pub(super) fn pools(&self, last: bool, last_activation: bool) -> bool {
        self.pool_after && !(last && last_activation)
    }
}

/// A convolution's weights as its products read them (one copy of the layer).
pub(super) enum Weights {
    /// im2col + GEMM: [9·cin, cout], row `(kh·3 + kw)·cin + ci` (the first layer, whose 3
    /// input channels make Winograd's GEMMs too thin to gain, or every layer on request).
    Im2col(Right),
    /// Winograd: the tiling, and its `elements()` matrices [cin, cout] of transformed weights.
    Winograd(Tiling, Vec<Right>),
    /// Direct convolution on AMX tiles over bf16 activations ([`direct`]).
    Direct(direct::Taps),
}

/// The right operand of a product, in the base's precision.
pub(super) enum Right {
    /// `[k, n]` floats, row-major.
    F32(Vec<f32>),
    /// Rounded to bf16 and packed once ([`bf16::PackedB`]).
    Bf16(bf16::PackedB),
}

impl Right {
    fn new(matrix: &[f32], [k, n]: [usize; 2], precision: Precision) -> Self {
        match precision {
            Precision::F32 => Self::F32(matrix[..k * n].to_vec()),
            Precision::Bf16 => Self::Bf16(bf16::PackedB::pack(matrix, n, [k, n])),
        }
    }
}

/// Where [`CpuConvBase`]'s forward pass ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// After every layer of the range (pools included).
    End,
    /// At the last convolution's ReLU, before the pools after it.
    LastActivation,
}

/// Convolutions `range` of a [`Vgg16`] (with their ReLUs and max-pools, and the adaptive average
/// pool when the range ends at the last one), packed for the CPU.
pub struct CpuConvBase {
    convs: Vec<PackedConv>,
    avgpool: bool,
    precision: Precision,
    /// How its convolutions run (what was asked for, as far as this CPU and the layers allow).
    algorithm: Algorithm,
    /// Where its passes work (`model::buffers`).
    kept: Kept,
}

impl CpuConvBase {
    /// Packs the weights of convolutions `range` of `model` (read back from wherever they live).
    /// Its products run in the precision [`bf16::chosen`] comes to on this CPU.
    pub fn new(model: &Vgg16, range: std::ops::Range<usize>) -> Self {
        Self::with_choice(model, range, bf16::chosen())
    }

    /// The same in the precision `choice` comes to on this CPU.
    pub fn with_choice(model: &Vgg16, range: std::ops::Range<usize>, choice: bf16::Choice) -> Self {
        let precision = choice.resolve().0;
        Self::with_precision(model, range, Algorithm::chosen(precision), precision)
    }

    /// The same with the convolution algorithm chosen, in f32.
    pub fn with_algorithm(
        model: &Vgg16,
        range: std::ops::Range<usize>,
        algorithm: Algorithm,
    ) -> Self {
        Self::with_precision(model, range, algorithm, Precision::F32)
    }

    /// Keeps the buffers of its passes from one to the next until the guard drops.
    pub fn hold_buffers(&self) -> HeldBuffers<'_> {
        self.kept.hold()
    }

    #[cfg(test)]
    pub(super) fn kept(&self) -> &Kept {
        &self.kept
    }

    /// The precision its products run in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// How its convolutions run: the algorithm asked for, or Winograd where that could not
    /// run here.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The same with the algorithm and the precision chosen (bf16 where this CPU can't run
    /// it: f32).
    pub fn with_precision(
        model: &Vgg16,
        range: std::ops::Range<usize>,
        algorithm: Algorithm,
        precision: Precision,
    ) -> Self {
        let precision = match precision {
            Precision::Bf16 if !bf16::available() => Precision::F32,
            p => p,
        };
        let end = range.end.min(model.features.len());
        let shape = |i: usize| {
            let [cout, cin, _, _] = model.features[i].weight.shape().dims::<4>();
            (cin, cout)
        };
        // Direct convolutions need bf16 on AMX tiles and every layer to fit; else Winograd.
        let fits = |i: usize| {
            let (cin, cout) = shape(i);
            direct::Taps::fit(cin, cout, i == range.start)
        };
        let algorithm = match algorithm {
            Algorithm::Direct
                if !(precision == Precision::Bf16
                    && bf16::amx()
                    && (range.start..end).all(fits)) =>
            {
                Algorithm::Winograd(Tiling::chosen())
            }
            a => a,
        };
        let convs = (range.start..end)
            .map(|i| {
                let (cin, cout) = shape(i);
                let (weights, bias) = host_weights(&model.features[i]);
                let weights = if algorithm == Algorithm::Direct {
                    Weights::Direct(direct::Taps::new(&weights, cin, cout))
                } else if let (Algorithm::Winograd(tiling), true) = (algorithm, cin >= 8) {
                    let u = winograd_weights(tiling, &weights, cin, cout);
                    Weights::Winograd(
                        tiling,
                        u.chunks_exact(cin * cout)
                            .map(|e| Right::new(e, [cin, cout], precision))
                            .collect(),
                    )
                } else {
                    Weights::Im2col(Right::new(&weights, [9 * cin, cout], precision))
                };
                PackedConv {
                    cin,
                    cout,
                    weights,
                    bias,
                    pool_after: POOL_AFTER.contains(&i),
                }
            })
            .collect();
        Self {
            convs,
            avgpool: end == model.features.len(),
            precision,
            algorithm,
            kept: Kept::default(),
        }
    }

    /// The shape of one image's output, [C, H, W], for an input of shape `[c, h, w]`.
    pub fn output_shape(&self, shape: [usize; 3]) -> [usize; 3] {
        self.shape_after(shape, Until::End)
    }

    fn shape_after(&self, [c, h, w]: [usize; 3], until: Until) -> [usize; 3] {
        let mut shape = [c, h, w];
        let last = self.convs.len().saturating_sub(1);
        for (i, conv) in self.convs.iter().enumerate() {
            shape[0] = conv.cout;
            if conv.pools(i == last, until == Until::LastActivation) {
                shape[1] /= 2;
                shape[2] /= 2;
            }
        }
        if until == Until::LastActivation {
            return shape;
        }
        if self.avgpool {
            shape[1] = POOLED_SIDE;
            shape[2] = POOLED_SIDE;
        }
        shape
    }

    /// Runs the layers on `input`, NCHW `[n, c, h, w]` flattened; returns NCHW flattened, as
    /// [`Vgg16::forward_convs`] would.
    pub fn forward(&self, input: &[f32], shape: [usize; 4]) -> Vec<f32> {
        self.forward_until(input, shape, Until::End)
    }

    /// The last convolution's output after its ReLU, before any pooling (NCHW flattened), and
    /// its shape [C, H, W] for one image: what Grad-CAM weighs (`infer::heatmap`).
    pub fn forward_last_activation(
        &self,
        input: &[f32],
        [n, c, h, w]: [usize; 4],
    ) -> (Vec<f32>, [usize; 3]) {
        let shape = self.shape_after([c, h, w], Until::LastActivation);
        (
            self.forward_until(input, [n, c, h, w], Until::LastActivation),
            shape,
        )
    }

    fn forward_until(&self, input: &[f32], [n, c, h, w]: [usize; 4], until: Until) -> Vec<f32> {
        assert_eq!(
            input.len(),
            n * c * h * w,
            "input length does not match its shape"
        );
        let [oc, oh, ow] = self.shape_after([c, h, w], until);
        let direct_path = !self.convs.is_empty() && self.algorithm == Algorithm::Direct;
        let sub_batch = if direct_path {
            direct::SUB_BATCH
        } else {
            SUB_BATCH
        };
        let last_activation = until == Until::LastActivation;
        let per_in = c * h * w;
        let per_out = oc * oh * ow;
        let mut out = vec![0.0f32; n * per_out];
        self.kept.with(|pass| {
            let Pass {
                act,
                next,
                winograd,
                direct,
            } = pass;
            for (inp, dst) in input
                .chunks(sub_batch * per_in)
                .zip(out.chunks_mut(sub_batch * per_out))
            {
                let images = inp.len() / per_in;
                let shape = [images, c, h, w];
                let [hh, ww, ch] = if direct_path {
                    assert_eq!(
                        self.convs[0].cin, c,
                        "channel count does not match the convolution"
                    );
                    direct::forward(&self.convs, inp, shape, last_activation, direct, act)
                } else {
                    self.layers(inp, shape, last_activation, [act, next], winograd)
                };
                if until == Until::End && self.avgpool && (hh, ww) != (POOLED_SIDE, POOLED_SIDE) {
                    let pooled = POOLED_SIDE * POOLED_SIDE;
                    adaptive_avg_pool(act, [images, hh, ww, ch], POOLED_SIDE, next);
                    transpose_each(&next[..images * pooled * ch], dst, pooled, ch);
                } else {
                    transpose_each(&act[..images * hh * ww * ch], dst, hh * ww, ch);
                }
            }
        });
        out
    }

    /// The layers in f32 products or the GEMM's bf16 ones, on the images of `input` (NCHW),
    /// into `act` (NHWC); returns its `[h, w, c]`.
    fn layers(
        &self,
        input: &[f32],
        [images, c, h, w]: [usize; 4],
        last_activation: bool,
        [act, next]: [&mut Vec<f32>; 2],
        scratch: &mut WinogradScratch,
    ) -> [usize; 3] {
        transpose_each(input, sized(act, input.len()), c, h * w);
        let last = self.convs.len().saturating_sub(1);
        let (mut ch, mut hh, mut ww) = (c, h, w);
        for (i, conv) in self.convs.iter().enumerate() {
            assert_eq!(conv.cin, ch, "channel count does not match the convolution");
            match &conv.weights {
                Weights::Winograd(tiling, u) => {
                    conv3x3_winograd(*tiling, act, [images, hh, ww], conv, u, next, scratch)
                }
                Weights::Im2col(w) => conv3x3_relu(act, [images, hh, ww], conv, w, next),
                Weights::Direct(_) => unreachable!("direct layers run in `direct::forward`"),
            }
            std::mem::swap(act, next);
            ch = conv.cout;
            if conv.pools(i == last, last_activation) {
                max_pool2(act, [images, hh, ww, ch], next);
                std::mem::swap(act, next);
                hh /= 2;
                ww /= 2;
            }
        }
        [hh, ww, ch]
    }
}

/// A convolution's weights read back to the host as `[9·cin, cout]` (row `(ky·3 + kx)·cin +
/// ci`), and its bias.
fn host_weights(conv: &burn::nn::conv::Conv2d) -> (Vec<f32>, Vec<f32>) {
    let [cout, cin, kh, kw] = conv.weight.shape().dims::<4>();
    assert_eq!((kh, kw), (3, 3), "VGG16's convolutions are 3×3");
    let w = to_host(conv.weight.val());
    let mut weights = vec![0.0f32; 9 * cin * cout];
    for co in 0..cout {
        for ci in 0..cin {
            for k in 0..9 {
                weights[(k * cin + ci) * cout + co] = w[(co * cin + ci) * 9 + k];
            }
        }
    }
    let bias = conv
        .bias
        .as_ref()
        .map_or_else(|| vec![0.0; cout], |b| to_host(b.val()));
    (weights, bias)
}

/// The first `len` elements of `buf`, grown to hold them; every element is overwritten by the
/// caller. The buffer keeps the longest length it has had, so that a layer after a smaller one
/// does not fill its buffer with zeros first (that was 3% of a prediction).
pub(super) fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Transposes each image's `rows`×`cols` matrix in `src` into `dst` (`cols`×`rows`): NCHW →
/// NHWC is rows = C, cols = H·W; NHWC → NCHW the other way round.
pub(super) fn transpose_each(src: &[f32], dst: &mut [f32], rows: usize, cols: usize) {
    dst.par_chunks_mut(rows * cols)
        .zip(src.par_chunks(rows * cols))
        .for_each(|(d, s)| {
            for c in 0..cols {
                for r in 0..rows {
                    d[c * rows + r] = s[r * cols + c];
                }
            }
        });
}

/// A 3×3 convolution (stride 1, zero padding 1) + bias + ReLU on NHWC `x`, into `out` (NHWC).
fn conv3x3_relu(
    x: &[f32],
    [n, h, w]: [usize; 3],
    conv: &PackedConv,
    weights: &Right,
    out: &mut Vec<f32>,
) {
    let (cin, cout) = (conv.cin, conv.cout);
    let k = 9 * cin;
    let rows = n * h * w;
    let tile = (TILE_FLOATS / k).clamp(16, 4096);
    let out = sized(out, rows * cout);
    out.par_chunks_mut(tile * cout).enumerate().for_each_init(
        Vec::new,
        |col: &mut Vec<f32>, (t, dst)| {
            let first = t * tile;
            let m = dst.len() / cout;
            let col = sized(col, m * k);
            im2col3x3(x, [h, w, cin], first, m, col);
            // SAFETY: the pointers and strides describe `dst` ([m, cout], row-major) and `col`
            // ([m, k]), both live and of those sizes; `weights` is [k, cout].
            unsafe {
                product(
                    [m, cout, k],
                    (dst.as_mut_ptr(), cout),
                    (col.as_ptr(), k),
                    weights,
                );
            }
            for row in dst.chunks_exact_mut(cout) {
                for (v, b) in row.iter_mut().zip(&conv.bias) {
                    *v = (*v + b).max(0.0);
                }
            }
        },
    );
}

/// `dst = lhs · rhs` for a row-major `[m, k]` matrix given as (pointer, row stride) and `rhs`
/// `[k, n]` in the base's precision, on the calling thread (callers run many in parallel).
///
/// # Safety
/// As [`matmul`]'s; a bf16 `rhs` also needs [`bf16::available`] (the base checks it when it
/// packs the layers in bf16).
pub(super) unsafe fn product(
    [m, n, k]: [usize; 3],
    dst: (*mut f32, usize),
    lhs: (*const f32, usize),
    rhs: &Right,
) {
    match rhs {
        // SAFETY: forwarded from the caller's contract.
        Right::F32(w) => unsafe { matmul([m, n, k], dst, lhs, (w.as_ptr(), n)) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded from the caller's contract.
        Right::Bf16(w) => unsafe { bf16::matmul(m, dst, lhs, w) },
        #[cfg(not(target_arch = "x86_64"))]
        Right::Bf16(_) => unreachable!("bf16 products are packed only where the CPU runs them"),
    }
}

/// `dst = lhs · rhs` for row-major `[m, k] · [k, n]` matrices given as (pointer, row stride), on
/// the calling thread (callers run many of these in parallel).
///
/// # Safety
/// Each pointer must address a live matrix of that shape and row stride, and no other thread may
/// touch `dst`'s elements during the call.
unsafe fn matmul(
    shape: [usize; 3],
    (dst, dst_rs): (*mut f32, usize),
    (lhs, lhs_rs): (*const f32, usize),
    (rhs, rhs_rs): (*const f32, usize),
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        strided_matmul(
            shape,
            (dst, dst_rs, 1),
            (lhs, lhs_rs, 1),
            (rhs, rhs_rs, 1),
            gemm::Parallelism::None,
        );
    }
}

/// Fills `col` ([m, 9·cin]) with the 3×3 neighbourhoods of output rows `first..first + m`
/// (rows run over images, then pixels row by row); taps outside the image are written zero.
fn im2col3x3(x: &[f32], [h, w, cin]: [usize; 3], first: usize, m: usize, col: &mut [f32]) {
    let k = 9 * cin;
    for (r, dst) in col.chunks_exact_mut(k).enumerate().take(m) {
        let row = first + r;
        let img = row / (h * w);
        let y = (row / w) % h;
        let xx = row % w;
        let base = img * h * w * cin;
        for ky in 0..3 {
            let iy = y as isize + ky as isize - 1;
            let taps = &mut dst[3 * ky * cin..3 * (ky + 1) * cin];
            if iy < 0 || iy >= h as isize {
                taps.fill(0.0);
            } else if xx >= 1 && xx + 1 < w {
                // The row's three taps are three neighbouring pixels: one run of memory.
                let s = base + (iy as usize * w + xx - 1) * cin;
                copy_run(taps, &x[s..s + 3 * cin]);
            } else {
                for (kx, d) in taps.chunks_exact_mut(cin).enumerate() {
                    let ix = xx as isize + kx as isize - 1;
                    if ix < 0 || ix >= w as isize {
                        d.fill(0.0);
                    } else {
                        let s = base + (iy as usize * w + ix as usize) * cin;
                        d.copy_from_slice(&x[s..s + cin]);
                    }
                }
            }
        }
    }
}

/// `dst = src`; the first layer's runs of 3 pixels × 3 channels are copied in registers (a call
/// to `memcpy` for each tap's 12 bytes, nine times a pixel, took 4% of a prediction).
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    const FIRST_LAYER: usize = 9;
    match (
        <&mut [f32; FIRST_LAYER]>::try_from(&mut *dst),
        <&[f32; FIRST_LAYER]>::try_from(src),
    ) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => dst.copy_from_slice(src),
    }
}

/// 2×2 max-pool, stride 2, on NHWC (an odd last row or column is dropped, as in PyTorch).
fn max_pool2(x: &[f32], [n, h, w, c]: [usize; 4], out: &mut Vec<f32>) {
    let (oh, ow) = (h / 2, w / 2);
    let out = sized(out, n * oh * ow * c);
    if ow * c == 0 {
        return;
    }
    out.par_chunks_mut(ow * c).enumerate().for_each(|(r, dst)| {
        let img = r / oh;
        let y = r % oh;
        let src = |yy: usize, xx: usize| (img * h * w + yy * w + xx) * c;
        for xo in 0..ow {
            let (a, b) = (src(2 * y, 2 * xo), src(2 * y, 2 * xo + 1));
            let (cc, d) = (src(2 * y + 1, 2 * xo), src(2 * y + 1, 2 * xo + 1));
            let o = &mut dst[xo * c..(xo + 1) * c];
            for ch in 0..c {
                o[ch] = x[a + ch].max(x[b + ch]).max(x[cc + ch].max(x[d + ch]));
            }
        }
    });
}

/// PyTorch's adaptive average pool to `side`×`side` on NHWC: bin `i` spans
/// `floor(i·H/side) .. ceil((i+1)·H/side)`.
pub(super) fn adaptive_avg_pool(
    x: &[f32],
    [n, h, w, c]: [usize; 4],
    side: usize,
    out: &mut Vec<f32>,
) {
    let out = sized(out, n * side * side * c);
    out.fill(0.0);
    for img in 0..n {
        for oy in 0..side {
            let (y0, y1) = (oy * h / side, ((oy + 1) * h).div_ceil(side));
            for ox in 0..side {
                let (x0, x1) = (ox * w / side, ((ox + 1) * w).div_ceil(side));
                let o = ((img * side + oy) * side + ox) * c;
                let count = ((y1 - y0) * (x1 - x0)) as f32;
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        let s = ((img * h + yy) * w + xx) * c;
                        for ch in 0..c {
                            out[o + ch] += x[s + ch];
                        }
                    }
                }
                for v in &mut out[o..o + c] {
                    *v /= count;
                }
            }
        }
    }
}

/// A pointer that may cross threads: each thread writes elements no other thread touches.
pub(super) struct SharedMut<T>(pub(super) *mut T);
// SAFETY: used only where every index is written by exactly one thread (see the callers).
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not its field).
    pub(super) fn ptr(self) -> *mut T {
        self.0
    }
}
