//! The AMX kernel: 32×32 blocks of the product, each as four 16×16 tiles of f32 sums, fed 16
//! pairs of the inner dimension at a time (`tdpbf16ps`). Rust has no stable AMX intrinsics, so
//! the instructions are written out.

use std::arch::asm;

use super::{MR_AMX, NR, PAIR_BLOCK, PackedB, padded_pairs};

/// Asks Linux for the AMX tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`); whether it was granted.
///
/// # Safety
/// A system call that reads and writes no memory of this process.
pub unsafe fn request_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: the caller's contract; the kernel clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

/// Palette 1, every one of the 8 tiles 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
        }
        Self(c)
    }
}

/// Loads the tile configuration every kernel here uses (8 tiles of 16 rows of 64 bytes).
///
/// # Safety
/// AMX is granted ([`super::amx`]).
pub unsafe fn configure() {
    let config = TileConfig::new();
    // SAFETY: AMX is granted; the config is 64 aligned bytes.
    unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack)) };
}

/// Gives back this thread's tile state.
///
/// # Safety
/// AMX is granted.
pub unsafe fn release() {
    // SAFETY: the caller's contract.
    unsafe { asm!("tilerelease", options(nostack)) };
}

/// Clears the four sums (tiles 0–3) of a 32×32 block.
///
/// # Safety
/// AMX is granted and [`configure`]d on this thread.
#[inline(always)]
pub unsafe fn zero_sums() {
    // SAFETY: the caller's contract.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack)
        )
    };
}

/// Adds 16 pairs of the inner dimension to a 32×32 block's sums: rows 0–15 of the left
/// operand from `a0`, rows 16–31 from `a1` (rows `a_stride` bytes apart), and the two
/// 16-column halves of the right operand from `b0` and `b0 + 64` bytes (rows `b_stride`
/// bytes apart). Each sum tile takes one left and one right tile: 4 products of 16×16×32.
///
/// # Safety
/// AMX is granted and [`configure`]d; each pointer addresses 16 rows of 64 readable bytes
/// at its stride.
#[inline(always)]
pub unsafe fn add_products(
    (a0, a1, a_stride): (*const u8, *const u8, usize),
    (b0, b_stride): (*const u8, usize),
) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a0,
            a1 = in(reg) a1,
            b0 = in(reg) b0,
            b1 = in(reg) b0.add(64),
            sa = in(reg) a_stride,
            sb = in(reg) b_stride,
            options(nostack, readonly),
        )
    };
}

/// Stores a 32×32 block's sums at `out`, rows `stride` floats apart.
///
/// # Safety
/// AMX is granted and [`configure`]d; `out` addresses 32 rows of 32 writable floats at
/// that stride.
#[inline(always)]
pub unsafe fn store_sums(out: *mut f32, stride: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!(
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c1} + {s}*1], tmm1",
            "tilestored [{c2} + {s}*1], tmm2",
            "tilestored [{c3} + {s}*1], tmm3",
            c0 = in(reg) out,
            c1 = in(reg) out.add(16),
            c2 = in(reg) out.add(16 * stride),
            c3 = in(reg) out.add(16 * stride + 16),
            s = in(reg) stride * 4,
            options(nostack),
        )
    };
}

/// `dst = a · b`, `a` rounded ([`super::matmul_rounded`]'s layout).
///
/// # Safety
/// AMX granted ([`super::amx`]); `a` as [`super::matmul_rounded`] needs; `dst` is the caller's
/// for `m` rows of `b`'s `n` columns at row stride `dst_rs`.
pub unsafe fn matmul(
    m: usize,
    (dst, dst_rs): (*mut f32, usize),
    (a, a_rs): (*const u32, usize),
    b: &PackedB,
    c: &mut Vec<f32>,
) {
    let pairs = padded_pairs(b.k);
    let a_stride = a_rs * 4;
    c.resize(MR_AMX * NR, 0.0);
    // SAFETY: AMX is granted (the caller's contract).
    unsafe { configure() };
    for panel in 0..b.n_pad / NR {
        let cols = (b.n - panel * NR).min(NR);
        let (words, b_rs) = b.panel_at(panel * NR);
        let b_stride = b_rs * 4;
        for block in (0..m).step_by(MR_AMX) {
            let rows = (m - block).min(MR_AMX);
            let full = rows == MR_AMX && cols == NR;
            // SAFETY: rows up to `m` rounded up to 32 are readable (the caller's contract).
            let (a0, a1) = unsafe { (a.add(block * a_rs), a.add((block + 16) * a_rs)) };
            // A whole block goes straight into `dst`; a block cut short by the product's
            // edge goes through `c` and only its part is copied.
            let (out, stride) = if full {
                // SAFETY: the block's rows and the panel's columns are the caller's.
                (unsafe { dst.add(block * dst_rs + panel * NR) }, dst_rs)
            } else {
                (c.as_mut_ptr(), NR)
            };
            // SAFETY: each tile load reads 16 rows of 64 bytes at its stride, inside `a`
            // (rows block..block + 32, pairs kb..kb + 16) and inside `b`'s data (pairs
            // kb..kb + 16, the panel's 32 columns); the store writes 32 × 32 floats of
            // `dst`'s block or of `c`.
            unsafe {
                zero_sums();
                for kb in (0..pairs).step_by(PAIR_BLOCK) {
                    add_products(
                        (a0.add(kb).cast(), a1.add(kb).cast(), a_stride),
                        (words.add(kb * b_rs).cast(), b_stride),
                    );
                }
                store_sums(out, stride);
            }
            if full {
                continue;
            }
            for r in 0..rows {
                // SAFETY: row block + r of `dst`, the panel's `cols` columns, is the
                // caller's.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(dst.add((block + r) * dst_rs + panel * NR), cols)
                };
                out.copy_from_slice(&c[r * NR..r * NR + cols]);
            }
        }
    }
    // SAFETY: AMX is granted.
    unsafe { release() };
}
