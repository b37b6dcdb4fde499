//! The bf16 Winograd pass by thread: each thread takes a few dozen tiles at a time through the
//! whole convolution (inputs transformed and rounded, the `SIDE²` products, the output
//! transform) in a room of its own, reused from chunk to chunk. The pass by blocks
//! (`super::convolve_in`) spreads each step of a block of hundreds of tiles over the threads
//! instead, and sends its rounded inputs and products (the products 2.25 times a layer's output,
//! in f32) from one core to the other through memory between the steps: on AMD Zen 4 that held
//! the wide early layers in bf16 to about 1.4× their f32 speed, where the later layers ran 2×
//! (BENCHMARKS.md, "The bf16 pass by thread, and the precisions timed in turn"). At 64 channels
//! a chunk's room stays in its core's L2; at 512 it is a few MiB, in L3, and the late layers ran
//! no slower than by blocks. The sums are the same, in the same order: the outputs are the pass
//! by blocks', bit for bit.

use std::sync::Mutex;

use rayon::prelude::*;

use super::input::{bf16_tile, tile_pixels};
use super::{Block, Outputs, Scheme, assert_bf16, element_product, size_rounded, wide_simd};
use crate::model::bf16::{self, Aligned};
use crate::model::cpu_base::{Right, SharedMut, sized};

/// Tiles a thread takes at once, at most: 64 tiles of 64 channels are 0.9 MiB of rounded inputs
/// and products, beside the layer's 0.3 MiB of weights (AMD Zen 4's L2 holds 1 MiB).
const CHUNK_TILES: usize = 64;
/// Tiles a thread takes at once, at least: fewer make products too short for the kernel (8 rows
/// at a time), and then the pass by blocks, which spreads the `SIDE²` products over the
/// threads instead, keeps both cores busy.
const MIN_CHUNK_TILES: usize = 16;
/// Chunks a thread gets at least, so that no thread waits long for the last.
const CHUNKS_PER_THREAD: usize = 4;

/// The tiles a thread takes at once in a layer of `tiles` tiles; `None` where the layer has too
/// few for every thread to get enough chunks (a small batch's late layers), and on AMX tiles,
/// whose products were measured only by blocks (each product there configures the tiles anew).
pub(super) fn chunk(tiles: usize) -> Option<usize> {
    let chunk = CHUNK_TILES.min(tiles / (CHUNKS_PER_THREAD * rayon::current_num_threads()));
    (chunk >= MIN_CHUNK_TILES && !bf16::amx()).then_some(chunk)
}

/// A thread's buffers, kept with the pass's other buffers (`WinogradScratch`).
#[derive(Default)]
pub(super) struct Room {
    /// Rounded inputs, `[chunk, SIDE², padded_pairs(cin)]` words.
    words: Aligned<u32>,
    /// Products, `[chunk, SIDE², cout]`.
    m: Vec<f32>,
}

/// A 3×3 convolution + bias + ReLU on the tiles of `all` with bf16 weights `u` (one `[cin,
/// cout]` matrix an element), `chunk` tiles at a time on each thread, into `outputs`; `rooms`
/// holds a room a thread (made here where there are fewer).
pub(super) fn convolve<S: Scheme>(
    all: &Block<'_>,
    chunk: usize,
    u: &[Right],
    outputs: &Outputs<'_>,
    rooms: &mut Vec<Mutex<Room>>,
) {
    assert_bf16();
    assert!(chunk > 0, "a chunk holds tiles");
    let (elements, cin, cout) = (S::ELEMENTS, all.shape[2], outputs.size[2]);
    let row = bf16::padded_pairs(cin);
    let wide = wide_simd();
    let threads = rayon::current_num_threads().max(1);
    if rooms.len() < threads {
        rooms.resize_with(threads, Mutex::default);
    }
    let rooms: &[Mutex<Room>] = rooms;
    (0..all.count.div_ceil(chunk))
        .into_par_iter()
        .for_each(|c| {
            // Each thread its own room: uncontended, unless a thread outside the pool runs a chunk.
            let at = rayon::current_thread_index().unwrap_or(0) % rooms.len();
            let mut room = rooms[at].lock().unwrap_or_else(|e| e.into_inner());
            let Room { words, m } = &mut *room;
            let first = c * chunk;
            let b = Block {
                first: all.first + first,
                count: chunk.min(all.count - first),
                ..*all
            };
            size_rounded::<S>(words, b.count, row);
            let rows = words.as_mut_slice().chunks_exact_mut(elements * row);
            for (i, wt) in rows.take(b.count).enumerate() {
                // SAFETY: AVX512-BF16 is here (asserted above).
                unsafe { bf16_tile::<S>(&tile_pixels::<S>(&b, i), cin, wt) };
            }
            let m = sized(m, b.count * elements * cout);
            let m_ptr = SharedMut(m.as_mut_ptr());
            for e in 0..elements {
                // SAFETY: AVX512-BF16 is here; the chunk's rows are sized by `size_rounded`, their
                // padding words zero (`bf16_tile`); `m` is this thread's and holds the chunk's
                // products of `cout` channels.
                unsafe {
                    element_product::<S>(e, b.count, u, (words.as_slice(), row), (m_ptr, cout))
                };
            }
            for (i, mt) in m.chunks_exact(elements * cout).enumerate() {
                outputs.tile::<S>(b.first + i, mt, wide);
            }
        });
}
