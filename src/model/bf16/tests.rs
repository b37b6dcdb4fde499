//! The bf16 products against a reference, and the rounding.

use super::*;
use crate::rng::SplitMix64;

#[test]
fn rounding_is_to_the_nearest_even_bf16() {
    assert_eq!(bf16_value(bf16_bits(1.0)), 1.0);
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even one, 1.
    assert_eq!(bf16_value(bf16_bits(1.0 + 1.0 / 256.0)), 1.0);
    assert_eq!(bf16_value(bf16_bits(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
    assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
    assert_eq!(bf16_value(bf16_bits(f32::INFINITY)), f32::INFINITY);
    let mut rng = SplitMix64(5);
    for _ in 0..1000 {
        let x = (rng.next_f32() - 0.5) * 1e3;
        let y = bf16_value(bf16_bits(x));
        assert!((x - y).abs() <= x.abs() / 256.0, "{x} {y}");
    }
}

/// A product of `m`×`k` by `k`×`n` on the vector kernel against the reference, when this
/// CPU has one, and the reference within bf16's error of the f32 product everywhere.
fn check(m: usize, k: usize, n: usize, seed: u64) {
    let mut rng = SplitMix64(seed);
    let a: Vec<f32> = (0..m * k).map(|_| rng.next_f32() - 0.3).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.next_f32() - 0.5).collect();
    let packed = PackedB::pack(&b, n, [k, n]);
    let reference = matmul_reference(&a, [m, k], &packed);
    for i in 0..m {
        for j in 0..n {
            let exact: f32 = (0..k).map(|r| a[i * k + r] * b[r * n + j]).sum();
            let scale: f32 = (0..k).map(|r| (a[i * k + r] * b[r * n + j]).abs()).sum();
            let got = reference[i * n + j];
            assert!((got - exact).abs() <= scale / 128.0, "{got} {exact}");
        }
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        // A destination wider than the product: the kernel writes only its own columns.
        let stride = n + 3;
        let mut dst = vec![7.0f32; m * stride];
        // SAFETY: available; `a` is [m, k] and `dst` [m, stride], both live.
        unsafe {
            matmul(m, (dst.as_mut_ptr(), stride), (a.as_ptr(), k), &packed);
        }
        for i in 0..m {
            for j in 0..stride {
                let got = dst[i * stride + j];
                if j >= n {
                    assert_eq!(got, 7.0, "column {j} is not the product's");
                    continue;
                }
                let want = reference[i * n + j];
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{got} {want}"
                );
            }
        }
        check_rounded(&a, [m, k], &packed, &reference);
        // The other layout (AMX tiles' rows where the vector kernel's panels are the default,
        // and the other way round), on the vector kernel.
        let repacked = PackedB::pack_in(other(packed.layout), &b, n, [k, n]);
        check_rounded(&a, [m, k], &repacked, &reference);
    } else {
        eprintln!("this CPU has no AVX512-BF16: the vector kernel is not run here");
    }
}

/// [`matmul_rounded`] on rows rounded beforehand, `ROW_BLOCK`-padded and further apart
/// than a row's words (as the Winograd transform lays them out), on the vector kernel and
/// on AMX tiles where they are granted, against `reference`.
#[cfg(target_arch = "x86_64")]
fn check_rounded(a: &[f32], [m, k]: [usize; 2], b: &PackedB, reference: &[f32]) {
    let n = b.n;
    let (row, stride) = (padded_pairs(k), padded_pairs(k) + 16);
    // Padding rows of NaNs: what the last block reads past `m` reaches no kept sum.
    let mut words = vec![pair(f32::NAN, f32::NAN); m.next_multiple_of(ROW_BLOCK) * stride];
    for i in 0..m {
        // SAFETY: `available()` (the caller checked).
        unsafe { round_row(&a[i * k..(i + 1) * k], &mut words[i * stride..][..row]) };
    }
    type Product = unsafe fn(usize, (*mut f32, usize), (*const u32, usize), &PackedB);
    let mut kernels: Vec<(&str, Product)> = vec![("vector", vector_product)];
    if amx() {
        kernels.push(("amx", matmul_rounded));
    }
    for (name, run) in kernels {
        let mut dst = vec![7.0f32; m * n];
        // SAFETY: available; `words` holds the padded rows at `stride`; `dst` is [m, n].
        unsafe { run(m, (dst.as_mut_ptr(), n), (words.as_ptr(), stride), b) };
        for (got, want) in dst.iter().zip(reference) {
            assert!(
                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{name}, {:?}: {got} {want}",
                b.layout
            );
        }
    }
}

fn other(layout: Layout) -> Layout {
    match layout {
        Layout::Rows => Layout::Panels,
        Layout::Panels => Layout::Rows,
    }
}

/// On any CPU: both layouts hold each rounded value where a kernel reads it (a panel's start
/// and row stride), and the rows past `k` and columns past `n` are zero.
#[test]
fn both_layouts_put_each_value_where_the_kernels_read_it() {
    let (k, n) = (37, 70);
    let b: Vec<f32> = (0..k * n).map(|i| i as f32 + 0.5).collect();
    for layout in [Layout::Rows, Layout::Panels] {
        let packed = PackedB::pack_in(layout, &b, n, [k, n]);
        let pairs = padded_pairs(k);
        for panel in 0..packed.n_pad / NR {
            let (start, stride) = packed.panel_at(panel * NR);
            for p in 0..pairs {
                for c in 0..NR {
                    // SAFETY: pair p, column c of the panel is inside the packed data.
                    let word = unsafe { *start.add(p * stride + c) };
                    let j = panel * NR + c;
                    let want = |r: usize| {
                        if r < k && j < n {
                            bf16_bits(b[r * n + j])
                        } else {
                            0
                        }
                    };
                    assert_eq!(word as u16, want(2 * p), "{layout:?} pair {p} column {j}");
                    assert_eq!((word >> 16) as u16, want(2 * p + 1), "{layout:?} {p} {j}");
                    if 2 * p < k && j < n {
                        assert_eq!(packed.value(2 * p, j), bf16_value(want(2 * p)));
                    }
                }
            }
        }
    }
}

#[test]
fn aligned_buffers_start_a_cache_line_and_keep_their_values() {
    let mut buffer = Aligned::<u16>::zeroed(33);
    assert_eq!(buffer.as_slice().as_ptr() as usize % 64, 0);
    assert!(buffer.as_slice().iter().all(|&v| v == 0));
    buffer.as_mut_slice()[32] = 7;
    buffer.resize(1000);
    assert_eq!(buffer.as_slice().len(), 1000);
    assert_eq!(buffer.as_slice().as_ptr() as usize % 64, 0);
    assert_eq!(buffer.as_slice()[32], 7, "values it had stay");
    assert!(
        buffer.as_slice()[33..].iter().all(|&v| v == 0),
        "new memory is zeros"
    );
    buffer.resize(10);
    assert_eq!(buffer.as_slice().len(), 10);
    let words = Aligned::<u32>::zeroed(17);
    assert_eq!(words.as_slice().as_ptr() as usize % 64, 0);
    assert_eq!(words.as_slice().len(), 17);
}

#[test]
fn products_match_the_reference_at_odd_sizes() {
    check(1, 1, 1, 1);
    check(3, 27, 64, 2);
    check(9, 33, 31, 3);
    check(17, 64, 96, 4);
    check(8, 512, 33, 5);
    // Whole 32×32 AMX blocks, stored straight into the product, and a partial one.
    check(40, 64, 64, 6);
    // Several groups of rows, each passed over by every panel (`A_GROUP_BYTES`): 8 rows of
    // 256 pairs, 64 rows of 32.
    check(40, 512, 64, 7);
    check(100, 64, 96, 8);
    // Several row groups and a last panel cut short.
    check(70, 64, 33, 9);
}
