//! The frozen base's convolutions as direct convolutions on AMX tiles, over bf16 activations.
//!
//! Where the CPU has AMX tiles a product is so cheap that the f32 path's savings (Winograd's
//! fewer multiplications, bought with transforms, gathers and a rounding pass before every
//! product) cost more than they save. Here each image's activations stay in bf16,
//! channels-last, with a zero border one pixel wide ([`image_pixels`]), and a convolution reads
//! its nine taps straight from them. Output pixels are numbered over the padded width
//! (`q = y·(w+2) + x`), so tap (ky, kx)'s input for 16 consecutive outputs is the 16 consecutive
//! pixels from `q + ky·(w+2) + kx`: one tile load, a pixel apart. The two outputs a row that
//! fall on the border are computed and dropped (2/w more work). Outputs are rounded once, with
//! bias and ReLU, as they are stored; max-pooling compares bf16 bits (ReLU's values are never
//! negative, and there non-negative floats order as their bits do).
//!
//! The first convolution, whose 3 channels would fill a tile row of 32 poorly, reads its 27
//! inputs as the channels of one im2col tap.

use rayon::prelude::*;

use super::bf16::{self, Aligned, PackedB};
use super::cpu_base::{PackedConv, SharedMut, Weights};

/// Output rows (pixels over the padded width) one step computes: two tiles of 16.
const BLOCK: usize = 32;
/// Channels in one tile row (64 bytes of bf16).
const CHANNELS: usize = 32;
/// Blocks in one unit of parallel work at most: its input rows stay in L2 while every panel
/// of output channels runs over them.
const CHUNK_BLOCKS: usize = 8;
/// Images per pass through the layers: bounds the activations (at 224 px, 6.6 MB an image
/// and layer) while giving every layer blocks enough for every thread.
pub(super) const SUB_BATCH: usize = 4;

/// A convolution's weights as the direct kernel reads them.
pub(super) struct Taps {
    /// One `[cin, cout]` matrix a tap (`ky·3 + kx`), or one `[9·cin, cout]` for im2col.
    packed: Vec<PackedB>,
}

impl Taps {
    /// Whether a convolution of `cin` to `cout` channels runs here (`first`: it reads the
    /// base's input, which may be im2col'd).
    pub(super) fn fit(cin: usize, cout: usize, first: bool) -> bool {
        cout.is_multiple_of(CHANNELS)
            && (cin.is_multiple_of(CHANNELS) || (first && 9 * cin <= CHANNELS))
    }

    /// Packs `weights` (`[9·cin, cout]`, row `(ky·3 + kx)·cin + ci`).
    pub(super) fn new(weights: &[f32], cin: usize, cout: usize) -> Self {
        let packed = if cin.is_multiple_of(CHANNELS) {
            weights
                .chunks_exact(cin * cout)
                .map(|tap| PackedB::pack(tap, cout, [cin, cout]))
                .collect()
        } else {
            vec![PackedB::pack(weights, cout, [9 * cin, cout])]
        };
        Self { packed }
    }

    fn im2col(&self) -> bool {
        self.packed.len() == 1
    }
}

/// Pixels of one image's buffer at `h`×`w`: the padded image, and enough pixels after it that
/// the last block's tap reads stay inside (zeros, [`clear_border`], where a layer reads them
/// as neighbours; the im2col input's are never read).
fn image_pixels(h: usize, w: usize) -> usize {
    let w2 = w + 2;
    (blocks(h, w) * BLOCK + 2 * w2 + 2).max((h + 2) * w2)
}

/// Blocks of output rows of one image at `h`×`w`.
fn blocks(h: usize, w: usize) -> usize {
    (h * (w + 2)).div_ceil(BLOCK)
}

/// A batch's activations: per image, [`image_pixels`] pixels of `c` bf16 values each.
#[derive(Default)]
struct Act {
    dims: [usize; 3],
    data: Aligned<u16>,
}

impl Act {
    /// Sized for `n` images of `[h, w, c]`; contents are the caller's to write.
    fn resize(&mut self, n: usize, [h, w, c]: [usize; 3]) {
        self.dims = [h, w, c];
        self.data.resize(n * image_pixels(h, w) * c);
    }

    fn per_image(&self) -> usize {
        let [h, w, c] = self.dims;
        image_pixels(h, w) * c
    }
}

/// One pass's buffers: two of activations, and the input padded (f32), kept for the base's
/// life (`model::buffers`).
#[derive(Default)]
pub(super) struct Space {
    act: Act,
    next: Act,
    padded: Vec<f32>,
}

/// Zeros the border and the tail of one image's buffer (`[h, w, c]`).
fn clear_border(img: &mut [u16], [h, w, c]: [usize; 3]) {
    let w2 = w + 2;
    img[..(w2 + 1) * c].fill(0);
    for y in 1..h {
        // Pixel (y, w + 1) and pixel (y + 1, 0) are neighbours.
        let at = (y * w2 + w + 1) * c;
        img[at..at + 2 * c].fill(0);
    }
    img[(h * w2 + w + 1) * c..].fill(0);
}

/// Runs `convs` on the images of `input` (NCHW `[n, c, h, w]`, flattened; at most
/// [`SUB_BATCH`] of them), ending before the last layer's pool when `last_activation`, into
/// `nhwc` (f32, channels-last); returns its `[h, w, c]`. Every layer's weights must be
/// [`Weights::Direct`] (the base was built for [`super::cpu_base::Algorithm::Direct`]).
pub(super) fn forward(
    convs: &[PackedConv],
    input: &[f32],
    [n, c, h, w]: [usize; 4],
    last_activation: bool,
    space: &mut Space,
    nhwc: &mut Vec<f32>,
) -> [usize; 3] {
    let Space { act, next, padded } = space;
    let first_im2col = match convs.first().map(|c| &c.weights) {
        Some(Weights::Direct(t)) => t.im2col(),
        _ => false,
    };
    load_input(input, [n, c, h, w], first_im2col, padded, act);
    let last = convs.len().saturating_sub(1);
    for (i, conv) in convs.iter().enumerate() {
        let Weights::Direct(taps) = &conv.weights else {
            unreachable!("a direct base packs every layer for it")
        };
        conv_layer(act, n, conv, taps, next);
        std::mem::swap(act, next);
        if conv.pools(i == last, last_activation) {
            max_pool2(act, n, next);
            std::mem::swap(act, next);
        }
    }
    let [fh, fw, fc] = act.dims;
    unpad(act, n, super::cpu_base::sized(nhwc, n * fh * fw * fc));
    act.dims
}

/// The base's input into `act`: im2col'd (27 values of each output's 3×3 neighbourhood, then
/// zeros, to 32 channels) when the first layer reads it so, else padded channels-last.
fn load_input(
    input: &[f32],
    [n, c, h, w]: [usize; 4],
    im2col: bool,
    padded: &mut Vec<f32>,
    act: &mut Act,
) {
    let w2 = w + 2;
    // The input padded, channels-last, in f32 (the border zero: the copy below writes only
    // the image's pixels).
    let per_pad = image_pixels(h, w) * c;
    padded.clear();
    padded.resize(n * per_pad, 0.0);
    padded
        .par_chunks_mut(per_pad)
        .zip(input.par_chunks(c * h * w))
        .for_each(|(p, img)| {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        p[((y + 1) * w2 + x + 1) * c + ch] = img[(ch * h + y) * w + x];
                    }
                }
            }
        });
    if !im2col {
        act.resize(n, [h, w, c]);
        act.data
            .as_mut_slice()
            .par_chunks_mut(per_pad)
            .zip(padded.par_chunks(per_pad))
            .for_each(|(a, p)| bf16::round_slice(p, a));
        return;
    }
    act.resize(n, [h, w, CHANNELS]);
    let per_act = act.per_image();
    act.data
        .as_mut_slice()
        .par_chunks_mut(per_act)
        .zip(padded.par_chunks(per_pad))
        .for_each(|(a, p)| {
            let mut row = [0.0f32; CHANNELS];
            for (q, out) in a
                .chunks_exact_mut(CHANNELS)
                .enumerate()
                .take(blocks(h, w) * BLOCK)
            {
                for ky in 0..3 {
                    let s = (q + ky * w2) * c;
                    row[ky * 3 * c..(ky + 1) * 3 * c].copy_from_slice(&p[s..s + 3 * c]);
                }
                bf16::round_slice(&row, out);
            }
        });
}

/// One convolution with bias and ReLU, `act` (`[h, w, cin]`) into `out` (`[h, w, cout]`,
/// border cleared).
fn conv_layer(act: &Act, n: usize, conv: &PackedConv, taps: &Taps, out: &mut Act) {
    let [h, w, cin] = act.dims;
    let cout = conv.cout;
    out.resize(n, [h, w, cout]);
    let per_out = out.per_image();
    out.data
        .as_mut_slice()
        .par_chunks_mut(per_out)
        .for_each(|img| clear_border(img, [h, w, cout]));
    let w2 = w + 2;
    let offsets: Vec<usize> = if taps.im2col() {
        vec![0]
    } else {
        (0..9).map(|t| (t / 3) * w2 + t % 3).collect()
    };
    let per_image = blocks(h, w);
    let panels = cout / BLOCK;
    let threads = rayon::current_num_threads();
    // Units of parallel work: where the layer's weights outweigh its inputs (the late layers),
    // each takes some panels of output channels over every image, so that each panel's
    // weights are read once; elsewhere each takes some blocks of one image, every panel.
    let (chunk, groups) = if n * per_image * BLOCK < 9 * cout {
        (per_image.max(1), panels.min(4 * threads))
    } else {
        let chunk = (n * per_image / (4 * threads)).clamp(1, CHUNK_BLOCKS);
        (chunk, 1)
    };
    let per_group = panels.div_ceil(groups);
    let chunks = per_image.div_ceil(chunk);
    let images = if groups > 1 { 1 } else { n };
    let dst = SharedMut(out.data.as_mut_slice().as_mut_ptr());
    let per_in = act.per_image();
    let src = act.data.as_slice();
    (0..images * chunks * groups)
        .into_par_iter()
        .for_each(|item| {
            let (img, part, group) = (
                item / (chunks * groups),
                (item / groups) % chunks,
                item % groups,
            );
            let work = Work {
                images: if groups > 1 { 0..n } else { img..img + 1 },
                blocks: part * chunk..((part + 1) * chunk).min(per_image),
                panels: group * per_group..((group + 1) * per_group).min(panels),
            };
            // SAFETY: AMX is granted (the layers are direct only then); the images' input and
            // output buffers are live, `per_in` and `per_out` values apart; the item's blocks
            // and panels are output values no other item writes (an output row belongs to one
            // block, a channel to one panel).
            unsafe {
                amx_blocks(
                    (src.as_ptr(), per_in),
                    (dst.ptr(), per_out),
                    [h, w, cin, cout],
                    &offsets,
                    taps,
                    &conv.bias,
                    work,
                );
            }
        });
}

/// What one call of [`amx_blocks`] computes.
struct Work {
    images: std::ops::Range<usize>,
    blocks: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
}

/// `work`'s blocks and panels (32 output channels) of the convolution of `work`'s images:
/// AMX tiles sum the taps, then [`store_rows`] adds the bias and stores the rows that are
/// pixels.
///
/// # Safety
/// AMX is granted ([`bf16::amx`]); `src` is (first image's input buffer, values per image)
/// for the images (`[h, w, cin]`, as [`image_pixels`] sizes them), `dst` the same for their
/// outputs (`[h, w, cout]`), and no other thread writes the output values of this work.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn amx_blocks(
    (src_images, per_in): (*const u16, usize),
    (dst_images, per_out): (*mut u16, usize),
    [h, w, cin, cout]: [usize; 4],
    offsets: &[usize],
    taps: &Taps,
    bias: &[f32],
    work: Work,
) {
    use super::bf16::amx;
    let mut sums = [0.0f32; BLOCK * BLOCK];
    // SAFETY: AMX is granted (the caller's contract).
    unsafe { amx::configure() };
    for panel in work.panels {
        for (img, block) in work
            .images
            .clone()
            .flat_map(|i| work.blocks.clone().map(move |b| (i, b)))
        {
            // SAFETY: image `img`'s buffers (the caller's contract).
            let (src, dst) =
                unsafe { (src_images.add(img * per_in), dst_images.add(img * per_out)) };
            let q0 = block * BLOCK;
            // SAFETY: every tile load reads 16 rows of 64 bytes: from `src` at pixels
            // q0 + offset .. + 32 (inside the buffer: `image_pixels`), channels cb·32 .. + 32;
            // from the tap's packed weights at pairs cb·16 .. + 16, the panel's 32 columns.
            // The store writes `sums`, 32 × 32 floats.
            unsafe {
                amx::zero_sums();
                for (tap, &off) in taps.packed.iter().zip(offsets) {
                    let (words, rs) = tap.panel_at(panel * BLOCK);
                    let a = src.add((q0 + off) * cin);
                    for cb in 0..cin / CHANNELS {
                        let a0 = a.add(cb * CHANNELS);
                        amx::add_products(
                            (a0.cast(), a0.add(16 * cin).cast(), cin * 2),
                            (words.add(cb * 16 * rs).cast(), rs * 4),
                        );
                    }
                }
                amx::store_sums(sums.as_mut_ptr(), BLOCK);
            }
            let col = panel * BLOCK;
            // SAFETY: the caller's contract: the block's pixels and this panel's channels of
            // image `img`'s output are this call's to write.
            unsafe {
                store_rows(
                    &sums,
                    &bias[col..col + BLOCK],
                    q0,
                    [h, w, cout],
                    dst.add(col),
                )
            };
        }
    }
    // SAFETY: AMX is granted; releases this thread's tile state.
    unsafe { amx::release() };
}

/// Stores a block's sums (32 rows of output positions from `q0`, 32 channels) plus `bias`,
/// after ReLU, rounded to bf16, into the rows that are pixels of an image `[h, w, cout]`
/// whose buffer's channel of the block's panel is at `dst`.
///
/// # Safety
/// AVX512-BF16 is here; `dst` is such a buffer's, and its values at the block's pixels and
/// 32 channels from `dst` are the caller's to write.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn store_rows(
    sums: &[f32; BLOCK * BLOCK],
    bias: &[f32],
    q0: usize,
    [h, w, cout]: [usize; 3],
    dst: *mut u16,
) {
    use std::arch::x86_64::*;
    let w2 = w + 2;
    let zero = _mm512_setzero_ps();
    // Where row 0 lands; the rows after it step along (a division a row would cost as much
    // as the tiles' sums on the first layers).
    let (mut y, mut x) = (q0 / w2, q0 % w2);
    for row in sums.chunks_exact(BLOCK) {
        let (row_y, row_x) = (y, x);
        x += 1;
        if x == w2 {
            (y, x) = (y + 1, 0);
        }
        if row_y >= h {
            break;
        }
        if row_x >= w {
            continue;
        }
        for half in 0..2 {
            let (v, b) = (
                &row[16 * half..16 * half + 16],
                &bias[16 * half..16 * half + 16],
            );
            // SAFETY: 16 floats in `v` and in `b`; output pixel (row_y, row_x) lies inside
            // the image, and its 16 channels from `dst + 16·half` are the caller's.
            unsafe {
                let v = _mm512_add_ps(_mm512_loadu_ps(v.as_ptr()), _mm512_loadu_ps(b.as_ptr()));
                let o = dst.add(((row_y + 1) * w2 + row_x + 1) * cout + 16 * half);
                _mm256_storeu_si256(
                    o.cast(),
                    std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(_mm512_max_ps(
                        v, zero,
                    ))),
                );
            }
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
unsafe fn amx_blocks(
    _: (*const u16, usize),
    _: (*mut u16, usize),
    _: [usize; 4],
    _: &[usize],
    _: &Taps,
    _: &[f32],
    _: Work,
) {
    unreachable!("direct layers are packed only where AMX runs")
}

/// 2×2 max-pool, stride 2 (an odd last row or column dropped), `act` into `out`, as bf16
/// bits: the values are ReLU's, never negative.
fn max_pool2(act: &Act, n: usize, out: &mut Act) {
    let [h, w, c] = act.dims;
    let (oh, ow) = (h / 2, w / 2);
    out.resize(n, [oh, ow, c]);
    let (per_in, per_out) = (act.per_image(), out.per_image());
    let (w2, ow2) = (w + 2, ow + 2);
    out.data
        .as_mut_slice()
        .par_chunks_mut(per_out)
        .zip(act.data.as_slice().par_chunks(per_in))
        .for_each(|(o, a)| {
            clear_border(o, [oh, ow, c]);
            for y in 0..oh {
                for x in 0..ow {
                    let at = |yy: usize, xx: usize| ((2 * y + yy + 1) * w2 + 2 * x + xx + 1) * c;
                    let (p0, p1, p2, p3) = (at(0, 0), at(0, 1), at(1, 0), at(1, 1));
                    let d = ((y + 1) * ow2 + x + 1) * c;
                    for ch in 0..c {
                        o[d + ch] = a[p0 + ch].max(a[p1 + ch]).max(a[p2 + ch].max(a[p3 + ch]));
                    }
                }
            }
        });
}

/// The images' pixels (without the border) as f32, channels-last, into `nhwc`.
fn unpad(act: &Act, n: usize, nhwc: &mut [f32]) {
    let [h, w, c] = act.dims;
    if h * w * c == 0 {
        return;
    }
    let per = act.per_image();
    nhwc.par_chunks_mut(h * w * c)
        .zip(act.data.as_slice().par_chunks(per))
        .take(n)
        .for_each(|(o, a)| {
            for y in 0..h {
                let s = ((y + 1) * (w + 2) + 1) * c;
                for (v, &b) in o[y * w * c..(y + 1) * w * c]
                    .iter_mut()
                    .zip(&a[s..s + w * c])
                {
                    *v = bf16::bf16_value(b);
                }
            }
        });
}
