//! The Winograd convolutions' tests: the weight transform, the tile transforms on plain and
//! AVX-512 registers, and the bf16 pass by thread against the pass by blocks.

#[cfg(target_arch = "x86_64")]
use super::input::input_tile_wide;
use super::input::{F32Rows, input_tile};
use super::*;

/// The weight transform, channels in parallel through per-channel buffers, puts every
/// pair's G g G^T (`pair_weights`) where a one-pair-at-a-time loop puts it, bit for bit, in
/// both tilings and at odd channel counts; and that is the textbook G g G^T to rounding.
#[test]
fn the_parallel_weight_transform_is_the_serial_one() {
    fn serial<S: Scheme>(direct: &[f32], cin: usize, cout: usize) -> Vec<f32> {
        let mut u = vec![0.0f32; S::ELEMENTS * cin * cout];
        for ci in 0..cin {
            for co in 0..cout {
                pair_weights::<S>(
                    |ky, kx| direct[((ky * 3 + kx) * cin + ci) * cout + co],
                    |e, v| u[(e * cin + ci) * cout + co] = v,
                );
            }
        }
        u
    }
    // F(2×2)'s G, as the module's doc gives it: U = G g G^T by plain sums.
    let g2: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let kernel: [f32; 9] = std::array::from_fn(|k| k as f32 - 3.5);
    pair_weights::<F2>(
        |ky, kx| kernel[ky * 3 + kx],
        |e, v| {
            let (i, j) = (e / 4, e % 4);
            let want: f64 = (0..9)
                .map(|k| g2[i][k / 3] * g2[j][k % 3] * f64::from(kernel[k]))
                .sum();
            assert!(
                (f64::from(v) - want).abs() < 1e-5,
                "element {e}: {v} {want}"
            );
        },
    );
    let mut rng = crate::rng::SplitMix64(11);
    for (cin, cout) in [(1, 1), (3, 5), (17, 40)] {
        let direct: Vec<f32> = (0..9 * cin * cout).map(|_| rng.next_f32() - 0.5).collect();
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(
            bits(winograd_weights(Tiling::F4, &direct, cin, cout)),
            bits(serial::<F4>(&direct, cin, cout)),
            "F(4×4), {cin}×{cout}"
        );
        assert_eq!(
            bits(winograd_weights(Tiling::F2, &direct, cin, cout)),
            bits(serial::<F2>(&direct, cin, cout)),
            "F(2×2), {cin}×{cout}"
        );
    }
}

#[cfg(target_arch = "x86_64")]
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = crate::rng::SplitMix64(seed);
    (0..len).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

/// `a` and `b` equal to float rounding: the plain transforms round a multiply-add twice,
/// AVX-512 once.
#[cfg(target_arch = "x86_64")]
fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: all zero");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-6 * scale,
            "{what}, value {i}: {x} against {y}"
        );
    }
}

/// Both tile transforms of one tiling, plain and on AVX-512 registers, on 37 channels (two
/// whole groups and a partial one) and an output tile cut by the layer's edge on both
/// sides: the same operations in the same order.
#[cfg(target_arch = "x86_64")]
fn plain_and_wide_agree<S: Scheme>() {
    let channels = 37;
    let elements = S::ELEMENTS;
    let pixels: Vec<Vec<f32>> = (0..elements).map(|k| random(channels, k as u64)).collect();
    let src: [&[f32]; MAX_ELEMENTS] =
        std::array::from_fn(|k| pixels.get(k).map_or(&[][..], |p| &p[..]));
    let (mut plain, mut wide) = (
        vec![0.0; elements * channels],
        vec![0.0; elements * channels],
    );
    let rows = |v| F32Rows { v, cin: channels };
    input_tile::<S, Lanes, _>(&src, channels, &mut rows(&mut plain));
    // SAFETY: the caller checked AVX-512F.
    unsafe { input_tile_wide::<S>(&src, channels, &mut rows(&mut wide)) };
    assert_close(
        &plain,
        &wide,
        &format!("input transform, {} outputs a side", S::OUT),
    );
    if bf16::available() {
        rounded_as_made::<S>(&src, channels, &wide);
    } else {
        eprintln!("this CPU has no AVX512-BF16: the rounded input transform is not run here");
    }

    let products = random(elements * channels, 99);
    let bias = random(channels, 7);
    let [h, w] = [S::OUT - 1, S::OUT - 1];
    let run = |wide_simd: bool| {
        let mut out = vec![f32::NAN; h * w * channels];
        let tile = OutputTile {
            origin: [0, 0, 0],
            size: [h, w, channels],
            bias: &bias,
            out: SharedMut(out.as_mut_ptr()),
        };
        if wide_simd {
            // SAFETY: AVX-512F (checked by the caller); `out` holds the layer.
            unsafe { output_tile_wide::<S>(&products, &tile) };
        } else {
            output_tile::<S, Lanes>(&products, &tile);
        }
        out
    };
    let (plain, wide) = (run(false), run(true));
    assert!(
        plain.iter().all(|v| *v >= 0.0),
        "every output written, after ReLU"
    );
    assert_close(
        &plain,
        &wide,
        &format!("output transform, {} outputs a side", S::OUT),
    );
}

/// The input transform rounded to bf16 as it is made: `wide` (the same transform in f32)
/// rounded value by value, pairs in order, the row's padding words zero.
#[cfg(target_arch = "x86_64")]
fn rounded_as_made<S: Scheme>(src: &[&[f32]; MAX_ELEMENTS], channels: usize, wide: &[f32]) {
    let row = bf16::padded_pairs(channels);
    assert!(
        row > channels.div_ceil(LANES) * LANES / 2,
        "the test pads rows"
    );
    let mut words = vec![u32::MAX; S::ELEMENTS * row];
    // SAFETY: `bf16::available()` (the caller checked).
    unsafe { bf16_tile::<S>(src, channels, &mut words) };
    for (e, (got, values)) in words
        .chunks_exact(row)
        .zip(wide.chunks_exact(channels))
        .enumerate()
    {
        let at = |c: usize| values.get(c).copied().unwrap_or(0.0);
        for (p, word) in got.iter().enumerate() {
            let want = bf16::pair(at(2 * p), at(2 * p + 1));
            assert_eq!(
                *word,
                want,
                "element {e}, word {p}, {} outputs a side",
                S::OUT
            );
        }
    }
}

/// The bf16 pass by thread gives the pass by blocks' outputs bit for bit, in both tilings,
/// at channel counts that fill no whole group, over several images whose tiles fill no
/// whole chunk, with chunks shorter than a kernel's rows too.
#[test]
fn the_bf16_pass_by_thread_is_the_pass_by_blocks() {
    if !bf16::available() {
        eprintln!("this CPU has no AVX512-BF16: the bf16 passes are not run here");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    for tiling in [Tiling::F4, Tiling::F2] {
        let (cin, cout, shape) = (40, 33, [3, 13, 11]);
        let direct = random(9 * cin * cout, 21);
        let u: Vec<Right> = winograd_weights(tiling, &direct, cin, cout)
            .chunks_exact(cin * cout)
            .map(|e| Right::Bf16(bf16::PackedB::pack(e, cout, [cin, cout])))
            .collect();
        let conv = PackedConv {
            cin,
            cout,
            weights: super::super::cpu_base::Weights::Winograd(tiling, Vec::new()),
            bias: random(cout, 22),
            pool_after: false,
        };
        let x = random(shape.iter().product::<usize>() * cin, 23);
        let run = |pass: Pass| {
            let (mut out, mut scratch) = (Vec::new(), WinogradScratch::default());
            match tiling {
                Tiling::F2 => {
                    convolve_in::<F2>(pass, (&x, shape), &conv, &u, &mut out, &mut scratch)
                }
                Tiling::F4 => {
                    convolve_in::<F4>(pass, (&x, shape), &conv, &u, &mut out, &mut scratch)
                }
            }
            out.into_iter().map(f32::to_bits).collect::<Vec<_>>()
        };
        let blocks = run(Pass::Blocks);
        assert!(
            blocks.iter().any(|b| *b != 0),
            "{tiling:?}: some output above zero"
        );
        for chunk in [1, 5, 16, 64] {
            assert!(
                run(Pass::ByThread(chunk)) == blocks,
                "{tiling:?}, {chunk} tiles a chunk"
            );
        }
    }
}

#[test]
fn plain_and_avx512_transforms_agree() {
    #[cfg(target_arch = "x86_64")]
    if wide_simd() {
        plain_and_wide_agree::<F2>();
        plain_and_wide_agree::<F4>();
        return;
    }
    eprintln!("no AVX-512 here: only the plain transforms run (the model tests cover them)");
}
