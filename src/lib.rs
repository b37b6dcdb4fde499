//! vggtune: fine-tune VGG16 on your own labelled photos, in a window or from the command line.
//!
//! Every capability lives in this library and is reachable from both the window (`gui`) and the
//! CLI (`src/main.rs`), so that what the tests prove is what the user runs. Nothing below `gui`
//! knows egui exists; nothing in `gui` computes a tensor.

pub mod bench;
pub mod data;
pub mod device;
pub mod fsutil;
pub mod gui;
pub mod infer;
pub mod model;
pub mod train;

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
