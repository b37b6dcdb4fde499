//! The switches that change how vggtune computes, not what: for A/B comparisons and benchmarks
//! (BENCHMARKS.md). They are read from the environment here and nowhere else, once per process,
//! the first time anything asks (`main` asks first thing).
//!
//! - `VGGTUNE_CPU_CONV`: `im2col` runs the CPU convolution base with im2col + GEMM everywhere,
//!   `winograd` with Winograd (also in bf16 on AMX tiles), `burn` uses Burn's convolutions
//!   instead of the CPU base; anything else, the fastest (direct convolutions in bf16 on AMX
//!   tiles, else Winograd).
//! - `VGGTUNE_WINOGRAD`: `2` makes Winograd convolutions use F(2×2, 3×3) tiles, `4` (and anything
//!   else) F(4×4, 3×3).
//! - `VGGTUNE_HOST_HEAD=off`: the light and pooled heads train through Burn's autodiff instead of the
//!   hand-written host step.

use std::sync::OnceLock;

/// How the frozen convolutions run on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuConv {
    /// The CPU base, the fastest way for its precision here (the default).
    Fastest,
    /// The CPU base with Winograd convolutions.
    Winograd,
    /// The CPU base with im2col + GEMM for every convolution.
    Im2col,
    /// Burn's own convolutions.
    Burn,
}

/// The switches in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// How the frozen convolutions run on the CPU.
    pub cpu_conv: CpuConv,
    /// The output side of Winograd convolutions' tiles, where asked for: 2 or 4
    /// (`model::cpu_base::Tiling` decides by it).
    pub winograd_tile: Option<usize>,
    /// Whether the two-layer heads may train through the hand-written host step.
    pub host_head: bool,
}

impl Tuning {
    /// The switches the environment sets.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).unwrap_or_default();
        Self {
            cpu_conv: match var("VGGTUNE_CPU_CONV").as_str() {
                "im2col" => CpuConv::Im2col,
                "burn" => CpuConv::Burn,
                "winograd" => CpuConv::Winograd,
                _ => CpuConv::Fastest,
            },
            winograd_tile: match var("VGGTUNE_WINOGRAD").as_str() {
                "2" => Some(2),
                "4" => Some(4),
                _ => None,
            },
            host_head: var("VGGTUNE_HOST_HEAD") != "off",
        }
    }
}

/// The switches of this process, read from the environment the first time they are asked for.
pub fn current() -> Tuning {
    static TUNING: OnceLock<Tuning> = OnceLock::new();
    *TUNING.get_or_init(Tuning::from_env)
}
