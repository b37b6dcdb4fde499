//! The bf16 Winograd pass by thread: each thread takes a few dozen tiles at a time through the
//! whole convolution (inputs transformed and rounded, the `SIDE²` products, the output
//! transform) in buffers of its own, which stay in its core's caches from one chunk to the
//! next. The pass by blocks (`super::convolve_in`) spreads each step of a block of hundreds of
//! tiles over the threads instead, and sends its rounded inputs and products (the products 2.25
//! times a layer's output, in f32) through memory between the steps: on AMD Zen 4 that held the
//! wide early layers in bf16 to about 1.4× their f32 speed, where the later layers ran 2×
//! (BENCHMARKS.md, "The bf16 pass by thread, and the precisions timed in turn"). The sums are
//! the same, in the same order: the outputs are the pass by blocks', bit for bit.

use rayon::prelude::*;

use super::input::{bf16_tile, tile_pixels};
use super::{Block, Outputs, Scheme, element_product, wide_simd};
use crate::model::bf16::{self, Aligned};
use crate::model::cpu_base::{Right, SharedMut, sized};

/// Tiles a thread takes at once, at most: 64 tiles of 64 channels are 0.9 MiB of rounded inputs
/// and products, beside the layer's 0.3 MiB of weights (AMD Zen 4's L2 holds 1 MiB).
const CHUNK_TILES: usize = 64;
/// Tiles a thread takes at once, at least: fewer make products too short for the kernels
/// (8 rows at a time, 32 on AMX tiles), and then the pass by blocks, which spreads the
/// `SIDE²` products over the threads instead, keeps both cores busy.
const MIN_CHUNK_TILES: usize = 16;
/// Chunks a thread gets at least, so that no thread waits long for the last.
const CHUNKS_PER_THREAD: usize = 4;

/// The tiles a thread takes at once in a layer of `tiles` tiles; `None` where the layer has too
/// few for every thread to get enough chunks (a small batch's late layers).
pub(super) fn chunk(tiles: usize) -> Option<usize> {
    let chunk = CHUNK_TILES.min(tiles / (CHUNKS_PER_THREAD * rayon::current_num_threads()));
    (chunk >= MIN_CHUNK_TILES).then_some(chunk)
}

/// A thread's buffers, reused from chunk to chunk.
#[derive(Default)]
struct Room {
    /// Rounded inputs, `[chunk, SIDE², padded_pairs(cin)]` words.
    words: Aligned<u32>,
    /// Products, `[chunk, SIDE², cout]`.
    m: Vec<f32>,
}

/// A 3×3 convolution + bias + ReLU on the tiles of `all` with bf16 weights `u` (one `[cin,
/// cout]` matrix an element), `chunk` tiles at a time on each thread, into `outputs`.
pub(super) fn convolve<S: Scheme>(
    all: &Block<'_>,
    chunk: usize,
    u: &[Right],
    outputs: &Outputs<'_>,
) {
    // bf16 weights are packed only where the CPU runs bf16 products (`Right::new`).
    assert!(
        bf16::available(),
        "bf16 weights on a CPU without AVX512-BF16"
    );
    assert!(chunk > 0, "a chunk holds tiles");
    let (elements, cin, cout) = (S::ELEMENTS, all.shape[2], outputs.size[2]);
    let row = bf16::padded_pairs(cin);
    let wide = wide_simd();
    (0..all.count.div_ceil(chunk))
        .into_par_iter()
        .for_each_init(Room::default, |room, c| {
            let first = c * chunk;
            let b = Block {
                first: all.first + first,
                count: chunk.min(all.count - first),
                ..*all
            };
            // The products read whole blocks of rows: the chunk's last rows are padding.
            room.words
                .resize(b.count.next_multiple_of(bf16::ROW_BLOCK) * elements * row);
            let words = room.words.as_mut_slice();
            for (i, wt) in words
                .chunks_exact_mut(elements * row)
                .take(b.count)
                .enumerate()
            {
                // SAFETY: AVX512-BF16 is here (asserted above).
                unsafe { bf16_tile::<S>(&tile_pixels::<S>(&b, i), cin, wt) };
            }
            let m = sized(&mut room.m, b.count * elements * cout);
            let m_ptr = SharedMut(m.as_mut_ptr());
            for e in 0..elements {
                // SAFETY: AVX512-BF16 is here; the chunk's rows are readable up to a multiple
                // of ROW_BLOCK (resized above), their padding words zero (`bf16_tile`); `m` is
                // this thread's and holds the chunk's products.
                unsafe {
                    element_product::<S>(e, b.count, u, (room.words.as_slice(), row), (m_ptr, cout))
                };
            }
            for (i, mt) in m.chunks_exact(elements * cout).enumerate() {
                outputs.tile::<S>(b.first + i, mt, wide);
            }
        });
}
