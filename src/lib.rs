//! vggtune: fine-tune VGG16 on your own labelled photos, in a window or from the command line.
//!
//! Every capability lives in this library and is reachable from both the window (`gui`) and the
//! CLI (`src/main.rs`), so that what the tests prove is what the user runs. Nothing below `gui`
//! knows egui exists; nothing in `gui` computes a tensor.

pub mod bench;
pub mod bench_unknown;
pub mod calibration;
pub mod data;
pub mod device;
pub mod fsutil;
pub mod gui;
pub mod infer;
pub mod limits;
pub mod metrics;
pub mod model;
#[cfg(test)]
mod mutation_tests;
pub mod rng;
pub mod sort;
pub mod train;
pub mod tuning;
pub mod typical;
pub mod words;

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this binary was built from ("unknown" outside a checkout).
pub const COMMIT: &str = env!("VGGTUNE_COMMIT");

/// "0.1.0 (commit abc1234567)": what `--version` and the About box show.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("VGGTUNE_COMMIT"),
    ")"
);

/// Makes Burn's implicit default device its CPU backend (`BURN_DEVICE=flex`) unless the user
/// set one. vggtune names the device of every tensor it makes ([`device`]), but Burn's
/// `ModuleOptimizer::load_record` puts a resumed run's optimizer state on the default device,
/// which is wgpu when that backend is compiled in: resuming would start a GPU driver even for a
/// CPU run (and fail where there is no adapter), and that implicit start could race the device
/// probe, after which Burn refuses to start wgpu again. Call first thing in `main`.
///
/// # Safety
/// It sets an environment variable, so no other thread may exist yet.
pub unsafe fn pin_default_device() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the caller guarantees that this process has no other thread yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

/// Gives the process a private, empty `XDG_RUNTIME_DIR` when the environment has none (a
/// machine without a desktop login, a container, SSH). The Vulkan and EGL drivers' Wayland
/// probe otherwise prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment."
/// four times on every command that looks for a GPU. Without that variable there is no Wayland
/// session to find anyway, so an empty folder changes nothing else. Call first thing in `main`.
///
/// # Safety
/// It sets an environment variable, so no other thread may exist yet.
pub unsafe fn quiet_missing_runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
        let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        let dir = std::env::temp_dir().join(format!("vggtune-runtime-{uid}"));
        let made = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        let private = std::fs::metadata(&dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0);
        if (made.is_ok() || dir.is_dir()) && private {
            // SAFETY: the caller guarantees that this process has no other thread yet.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

/// Tells glibc's allocator to keep freed tensor buffers for reuse instead of returning them to
/// the kernel. By default every buffer over 128 KiB–32 MiB is a fresh `mmap` and every free an
/// `munmap`, so each whole-tensor operation of a training step (the head's 25088 × 256 weights are
/// 25 MiB, torchvision's dense layers 400 MiB) page-faults its output in again: measured on the
/// CPU, a light-head step ran at ~720 img/s that way and ~1,600 img/s with this, torchvision's
/// dense layers at ~16 and ~80 img/s (`vggtune bench`; BENCHMARKS.md). The price is that memory
/// freed in the middle of the heap stays with the process. Call once, first thing in `main`;
/// `VGGTUNE_MALLOC=default` leaves glibc's defaults (for comparisons).
pub fn tune_allocator() {
    if std::env::var("VGGTUNE_MALLOC").is_ok_and(|v| v == "default") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's thresholds; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
