//! The buffers the CPU base's passes work in, and how long they live.
//!
//! A pass writes hundreds of megabytes (a sub-batch of 8 images at 224 px: two activation
//! buffers of 103 MB each), and fresh memory costs a page fault and a zero fill for every
//! 4 KiB written: 10% of a first run's time in f32, and on the direct path as much as the first
//! two layers' products. So a job of many passes (a feature pass, a validation, a prediction)
//! holds the f32 buffers from one pass to the next ([`HeldBuffers`]); without a holder a pass
//! gives them back. Kept for the model's life, they held about 200 MB through the phases after
//! the feature pass and raised a first run's peak from 743 to 916 MB (400 photos). The direct
//! path's bf16 buffers (about 30 MB) stay for the model's life, as a window predicting photo by
//! photo would otherwise fault them in for every photo.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use super::direct;
use super::winograd::WinogradScratch;

/// What a pass works in: two activation buffers (channels-last f32), reused by every layer and
/// sub-batch, and the scratch of whichever algorithm runs.
#[derive(Default)]
pub(super) struct Pass {
    pub(super) act: Vec<f32>,
    pub(super) next: Vec<f32>,
    pub(super) winograd: WinogradScratch,
    pub(super) direct: direct::Space,
}

impl Pass {
    /// Gives the f32 buffers back (the direct path's stay).
    fn release(&mut self) {
        self.act = Vec::new();
        self.next = Vec::new();
        self.winograd = WinogradScratch::default();
    }
}

/// A base's [`Pass`], kept between passes while a [`HeldBuffers`] lives.
#[derive(Default)]
pub(super) struct Kept {
    pass: Mutex<Pass>,
    holders: AtomicUsize,
}

impl Kept {
    /// `work` on the kept buffers, or on fresh ones where a pass beside this one (another
    /// thread's) has them; after it, the f32 buffers go back unless a [`HeldBuffers`] lives.
    /// Passes overwrite what they read, so stale values from an earlier pass reach no result.
    pub(super) fn with<R>(&self, work: impl FnOnce(&mut Pass) -> R) -> R {
        let mut own = Pass::default();
        let mut kept = self.lock();
        let pass = kept.as_deref_mut().unwrap_or(&mut own);
        let result = work(pass);
        if self.holders.load(Ordering::Acquire) == 0 {
            pass.release();
        }
        result
    }

    /// Keeps the f32 buffers between passes until the guard drops.
    pub(super) fn hold(&self) -> HeldBuffers<'_> {
        self.holders.fetch_add(1, Ordering::AcqRel);
        HeldBuffers(self)
    }

    /// The kept pass, unless another pass has it. A pass that panicked left buffers, not
    /// values that matter, so a poisoned lock is taken over.
    fn lock(&self) -> Option<MutexGuard<'_, Pass>> {
        match self.pass.try_lock() {
            Ok(pass) => Some(pass),
            Err(TryLockError::Poisoned(e)) => {
                self.pass.clear_poison();
                Some(e.into_inner())
            }
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// While alive, the CPU base keeps its passes' f32 buffers for the next pass; when the last one
/// drops, they go ([`Kept`]).
#[must_use = "the buffers are kept only while this lives"]
pub struct HeldBuffers<'a>(&'a Kept);

impl Drop for HeldBuffers<'_> {
    fn drop(&mut self) {
        if self.0.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A pass running now has them, and gives them back as it ends (it finds no holder).
            if let Some(mut pass) = self.0.lock() {
                pass.release();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bf16::{self, Precision};
    use super::super::cpu_base::{Algorithm, CpuConvBase, Tiling};
    use crate::model::{HeadKind, Vgg16Config};

    /// Floats a base's kept f32 activation buffers hold.
    fn kept_floats(base: &CpuConvBase) -> usize {
        base.kept()
            .with(|pass| pass.act.capacity() + pass.next.capacity())
    }

    fn input(images: usize, side: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::SplitMix64(seed);
        (0..images * 3 * side * side)
            .map(|_| rng.next_f32() * 2.0 - 1.0)
            .collect()
    }

    /// The buffers stay while held, and only then; a pass in buffers that a larger pass left,
    /// poisoned with NaNs, gives what a pass in fresh ones gives; in each algorithm and
    /// precision this CPU runs.
    #[test]
    fn buffers_are_kept_only_while_held_and_change_no_value() {
        let config = Vgg16Config {
            num_classes: 2,
            input_size: 32,
            width_divisor: 16,
            head: HeadKind::Torchvision,
            dropout: 0.5,
        };
        let model = config.init(&burn::tensor::Device::flex());
        let mut bases = vec![(
            "f32 Winograd",
            CpuConvBase::with_algorithm(&model, 0..13, Algorithm::Winograd(Tiling::F4)),
        )];
        for (name, algorithm) in [
            ("bf16 Winograd", Algorithm::Winograd(Tiling::F4)),
            ("bf16 direct", Algorithm::Direct),
        ] {
            if bf16::available() {
                let base = CpuConvBase::with_precision(&model, 0..13, algorithm, Precision::Bf16);
                bases.push((name, base));
            }
        }
        let (small, large) = ([2, 3, 32, 32], [3, 3, 48, 48]);
        let a = input(2, 32, 1);
        for (name, base) in &bases {
            let fresh = base.forward(&a, small);
            assert_eq!(
                kept_floats(base),
                0,
                "{name}: a pass nobody holds for gives them back"
            );

            let held = base.hold_buffers();
            base.forward(&input(3, 48, 2), large);
            assert!(
                kept_floats(base) > 0,
                "{name}: a held pass keeps its buffers"
            );
            base.kept().with(|pass| {
                pass.act.fill(f32::NAN);
                pass.next.fill(f32::NAN);
            });
            let reused = base.forward(&a, small);
            assert_eq!(reused, fresh, "{name}: reused buffers change a value");
            let other = base.hold_buffers();
            drop(held);
            assert!(kept_floats(base) > 0, "{name}: kept while any holder lives");
            drop(other);
            assert_eq!(
                kept_floats(base),
                0,
                "{name}: the last holder gives them back"
            );
        }
    }
}
