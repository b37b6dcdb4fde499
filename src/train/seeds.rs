//! The seeded random streams of a run: every draw (shuffling, dropout, augmentation, mirror
//! views) comes from (run seed, epoch, stream, item), so a resumed run gives the numbers of an
//! uninterrupted one.

use crate::rng::SplitMix64;

/// The random streams a run draws from, each seeded per epoch and item ([`derive_seed`]).
pub(super) const SHUFFLE_STREAM: u64 = 1;
pub(super) const DROPOUT_STREAM: u64 = 2;
pub(super) const AUGMENT_STREAM: u64 = 3;
pub(super) const MIRROR_STREAM: u64 = 4;

/// A seed for (run seed, epoch, stream, item): distinct streams never share draws.
pub(super) fn derive_seed(seed: u64, epoch: usize, stream: u64, item: usize) -> u64 {
    let mut rng = SplitMix64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let a = rng.next_u64() ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    SplitMix64(a ^ (item as u64).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
}
