//! Picking the compute device: wgpu first, Burn's CPU backend (`flex`) when no adapter works.
//!
//! This module owns the decision and the words that explain it. It never panics: Burn's
//! `Device::default()` and `Device::wgpu(..)` panic on the first tensor when there is no adapter,
//! so only `Device::wgpu_options().init()` (which returns a `Result`) is used here.
//!
//! `auto` picks a hardware GPU through wgpu, and the CPU backend when the only adapter is a
//! software rasteriser (lavapipe, llvmpipe, SwiftShader, WARP): on those, `flex` is about 40×
//! faster than wgpu. `gpu` forces wgpu (a software adapter is accepted, with a warning), `cpu`
//! forces `flex`.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::Device;

/// The environment variable that forces a device choice, like `--device`.
pub const DEVICE_ENV: &str = "VGGTUNE_DEVICE";

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A hardware GPU through wgpu when there is one, else the CPU.
    #[default]
    Auto,
    /// Burn's CPU backend, whatever adapters exist.
    Cpu,
    /// wgpu, or an error when no adapter can be created.
    Gpu,
}

impl DeviceChoice {
    /// All choices, in the order a menu shows them.
    pub const ALL: [Self; 3] = [Self::Auto, Self::Gpu, Self::Cpu];

    /// The choice named by [`DEVICE_ENV`], or `Auto` when it is unset or empty.
    pub fn from_env() -> Result<Self, DeviceError> {
        match std::env::var(DEVICE_ENV) {
            Ok(value) if !value.trim().is_empty() => value.parse(),
            _ => Ok(Self::Auto),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
        })
    }
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" | "wgpu" => Ok(Self::Gpu),
            other => Err(DeviceError::UnknownChoice(other.to_owned())),
        }
    }
}

/// Which backend a [`ComputeDevice`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's wgpu backend (Vulkan, Metal, DX12, GL).
    Wgpu,
    /// Burn's pure-Rust CPU backend, `flex`.
    Cpu,
}

/// What wgpu told us about the adapter it created.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. "NVIDIA H200" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// The graphics API, e.g. "Vulkan".
    pub graphics_api: String,
    /// wgpu's device type: "DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Cpu" or "Other".
    pub device_type: String,
    /// The driver's name and version, when it says.
    pub driver: String,
    /// True for rasterisers that run on the CPU (lavapipe, llvmpipe, SwiftShader, WARP).
    pub software: bool,
    /// The largest buffer one shader can bind, in bytes: the device's storage-binding and
    /// buffer-size limits, the smaller (128 MiB on lavapipe; gigabytes on most GPUs). A tensor
    /// larger than this cannot be used on the device at all.
    pub max_binding_bytes: u64,
}

impl AdapterSummary {
    /// Decides whether an adapter is a software rasteriser from its type and name.
    pub fn is_software(device_type: &str, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        device_type == "Cpu"
            || [
                "llvmpipe",
                "lavapipe",
                "swiftshader",
                "softpipe",
                "basic render driver",
                "warp",
            ]
            .iter()
            .any(|s| name.contains(s))
    }
}

/// The device that will run the tensors, and why it was chosen.
#[derive(Clone, Debug)]
pub struct ComputeDevice {
    /// The Burn device to create tensors on.
    pub device: Device,
    /// Which backend `device` belongs to.
    pub backend: Backend,
    /// What the user asked for.
    pub choice: DeviceChoice,
    /// The wgpu adapter, when one could be created (also when the CPU was chosen over it).
    pub adapter: Option<AdapterSummary>,
    /// Why this device, in a sentence a user can read.
    pub reason: String,
}

impl ComputeDevice {
    /// A short label for status bars: "GPU: NVIDIA H200 (Vulkan)" or "CPU (flex)".
    pub fn label(&self) -> String {
        match (&self.backend, &self.adapter) {
            (Backend::Wgpu, Some(a)) => format!("GPU: {} ({})", a.name, a.graphics_api),
            (Backend::Wgpu, None) => "GPU (wgpu)".to_owned(),
            (Backend::Cpu, _) => format!("CPU (flex, {} threads)", cpu_threads()),
        }
    }

    /// The label, and why when a hardware GPU was passed over for the CPU (by [`fit`]).
    pub fn describe(&self) -> String {
        let passed_over = self.backend == Backend::Cpu
            && self.choice == DeviceChoice::Auto
            && self.adapter.as_ref().is_some_and(|a| !a.software);
        if passed_over {
            format!("{} ({})", self.label(), self.reason)
        } else {
            self.label()
        }
    }

    /// The largest buffer a shader can bind on this device; `None` on the CPU (no such limit).
    pub fn binding_limit(&self) -> Option<u64> {
        match (&self.backend, &self.adapter) {
            (Backend::Wgpu, Some(a)) => Some(a.max_binding_bytes),
            _ => None,
        }
    }

    /// The facts `vggtune info --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "backend": self.backend,
            "choice": self.choice,
            "label": self.label(),
            "adapter": self.adapter,
            "reason": self.reason,
        })
    }
}

/// Why no device could be had.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// `--device` or `VGGTUNE_DEVICE` named something else.
    #[error("unknown device '{0}': use auto, gpu or cpu")]
    UnknownChoice(String),
    /// The GPU was forced and wgpu could not create an adapter.
    #[error(
        "no GPU could be used through wgpu: {0}. Install a Vulkan, Metal or DX12 driver, \
         or run with --device cpu (or {DEVICE_ENV}=cpu)"
    )]
    NoGpu(String),
    /// The GPU was forced and the work needs a buffer larger than it can bind.
    #[error(
        "the GPU '{adapter}' can bind at most {} in one buffer, and {} needs {}: {}run with \
         --device cpu (or {DEVICE_ENV}=cpu)",
        mib(*limit), need.what, mib(need.bytes),
        need.remedy.as_deref().map(|r| format!("{r}, or ")).unwrap_or_default()
    )]
    TooLarge {
        /// The adapter's name.
        adapter: String,
        /// Its limit, in bytes.
        limit: u64,
        /// The buffer that does not fit.
        need: BufferNeed,
    },
}

/// One buffer a piece of work will bind on the device, e.g. a layer's weights or a batch's
/// activations, and what would make it smaller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferNeed {
    /// Its size in bytes.
    pub bytes: u64,
    /// What it is, for the user: "the torchvision head's first dense layer (25088 × 4096)".
    pub what: String,
    /// What the user can change to make it fit ("use the light head (--head dense256)"), when
    /// anything can.
    pub remedy: Option<String>,
}

/// Bytes as MiB for messages ("392 MiB").
fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Checks that every buffer in `needs` fits the chosen device's binding limit. On the CPU, and on
/// a GPU whose limit is large enough, `chosen` comes back as it is. Otherwise `auto` moves the
/// work to the CPU (saying why in the reason) and a forced `gpu` is an error that names the
/// buffer, its size, the limit and what to change, instead of a wgpu validation panic mid-run.
pub fn fit(chosen: ComputeDevice, needs: &[BufferNeed]) -> Result<ComputeDevice, DeviceError> {
    let Some(limit) = chosen.binding_limit() else {
        return Ok(chosen);
    };
    let Some(need) = needs
        .iter()
        .filter(|n| n.bytes > limit)
        .max_by_key(|n| n.bytes)
    else {
        return Ok(chosen);
    };
    let adapter = chosen
        .adapter
        .as_ref()
        .map_or_else(String::new, |a| a.name.clone());
    if chosen.choice == DeviceChoice::Auto {
        return Ok(ComputeDevice {
            device: Device::flex(),
            backend: Backend::Cpu,
            reason: format!(
                "the GPU '{adapter}' can bind at most {} in one buffer, and {} needs {}: \
                 running on the CPU",
                mib(limit),
                need.what,
                mib(need.bytes)
            ),
            ..chosen
        });
    }
    Err(DeviceError::TooLarge {
        adapter,
        limit,
        need: need.clone(),
    })
}

/// [`select`] for work whose buffers `needs(limit)` lists for a GPU binding at most `limit`
/// bytes in one buffer, then [`fit`]: the device that work can run on.
pub fn select_fitting(
    choice: DeviceChoice,
    needs: impl FnOnce(u64) -> Vec<BufferNeed>,
) -> Result<ComputeDevice, DeviceError> {
    let chosen = select(choice)?;
    match chosen.binding_limit() {
        Some(limit) => fit(chosen, &needs(limit)),
        None => Ok(chosen),
    }
}

/// The binding limit of `device` when it is the wgpu device the probe created; `None` for the
/// CPU (and when wgpu never started).
pub fn wgpu_binding_limit(device: &Device) -> Option<u64> {
    if *device == Device::flex() {
        return None;
    }
    probe_wgpu().ok().map(|(_, a)| a.max_binding_bytes)
}

/// The number of CPU threads the CPU backend can use.
pub fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Picks the device for `choice`, creating the wgpu runtime at most once per process.
pub fn select(choice: DeviceChoice) -> Result<ComputeDevice, DeviceError> {
    select_with(choice, probe_wgpu)
}

/// Picks the device for `choice` with the given wgpu probe (tests pass one that fails).
///
/// `probe` is called only when the choice needs to know about wgpu (not for `cpu`).
pub fn select_with(
    choice: DeviceChoice,
    probe: impl FnOnce() -> Result<(Device, AdapterSummary), String>,
) -> Result<ComputeDevice, DeviceError> {
    let cpu = |adapter: Option<AdapterSummary>, reason: String| ComputeDevice {
        device: Device::flex(),
        backend: Backend::Cpu,
        choice,
        adapter,
        reason,
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu(None, "the CPU was asked for (--device cpu)".to_owned())),
        DeviceChoice::Gpu => match probe() {
            Ok((device, adapter)) => {
                let reason = if adapter.software {
                    format!(
                        "the GPU was asked for (--device gpu); '{}' is a software adapter that \
                         runs on the CPU, so expect it to be much slower than --device cpu",
                        adapter.name
                    )
                } else {
                    "the GPU was asked for (--device gpu)".to_owned()
                };
                Ok(ComputeDevice {
                    device,
                    backend: Backend::Wgpu,
                    choice,
                    adapter: Some(adapter),
                    reason,
                })
            }
            Err(why) => Err(DeviceError::NoGpu(why)),
        },
        DeviceChoice::Auto => match probe() {
            Ok((device, adapter)) if !adapter.software => Ok(ComputeDevice {
                device,
                backend: Backend::Wgpu,
                choice,
                reason: format!(
                    "wgpu found a hardware adapter ({}, {})",
                    adapter.device_type, adapter.graphics_api
                ),
                adapter: Some(adapter),
            }),
            Ok((_, adapter)) => {
                let reason = format!(
                    "the only wgpu adapter, '{}', is a software rasteriser; the CPU backend is \
                     faster on this machine (force it with --device gpu)",
                    adapter.name
                );
                Ok(cpu(Some(adapter), reason))
            }
            Err(why) => Ok(cpu(
                None,
                format!("no usable GPU adapter ({why}); running on the CPU"),
            )),
        },
    }
}

/// Creates Burn's wgpu runtime once per process and describes its adapter.
///
/// The result is cached: Burn refuses to initialise the same runtime twice, and probing costs
/// a driver load.
pub fn probe_wgpu() -> Result<(Device, AdapterSummary), String> {
    static PROBE: OnceLock<Result<(Device, AdapterSummary), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            // A driver bug must not take the app down with it: treat a panic as "no adapter".
            std::panic::catch_unwind(|| {
                Device::wgpu_options()
                    .init_with_setup()
                    .map(|(device, setup)| {
                        let info = setup.adapter.get_info();
                        let device_type = format!("{:?}", info.device_type);
                        let software = AdapterSummary::is_software(&device_type, &info.name);
                        let driver = [info.driver.as_str(), info.driver_info.as_str()]
                            .iter()
                            .filter(|s| !s.is_empty())
                            .copied()
                            .collect::<Vec<_>>()
                            .join(" ");
                        let limits = setup.device.limits();
                        let summary = AdapterSummary {
                            name: info.name.clone(),
                            graphics_api: format!("{:?}", info.backend),
                            device_type,
                            driver,
                            software,
                            max_binding_bytes: limits
                                .max_storage_buffer_binding_size
                                .min(limits.max_buffer_size),
                        };
                        (device, summary)
                    })
                    .map_err(|e| e.to_string())
            })
            .unwrap_or_else(|_| Err("the wgpu driver panicked while starting".to_owned()))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn software() -> AdapterSummary {
        AdapterSummary {
            name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            graphics_api: "Vulkan".into(),
            device_type: "Cpu".into(),
            driver: "llvmpipe".into(),
            software: true,
            max_binding_bytes: 128 << 20,
        }
    }

    #[test]
    fn choice_parses_case_insensitively_and_rejects_others() {
        assert_eq!("GPU".parse::<DeviceChoice>(), Ok(DeviceChoice::Gpu));
        assert_eq!(" cpu ".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        let err = "tpu".parse::<DeviceChoice>().unwrap_err();
        assert!(err.to_string().contains("tpu"), "{err}");
    }

    #[test]
    fn software_adapters_are_recognised_by_type_or_name() {
        assert!(AdapterSummary::is_software("Cpu", "anything"));
        assert!(AdapterSummary::is_software("Other", "llvmpipe (LLVM 15)"));
        assert!(AdapterSummary::is_software(
            "Other",
            "Microsoft Basic Render Driver"
        ));
        assert!(!AdapterSummary::is_software("DiscreteGpu", "NVIDIA H200"));
    }

    #[test]
    fn auto_falls_back_to_cpu_when_no_adapter_can_be_created() {
        let chosen = select_with(DeviceChoice::Auto, || Err("no Vulkan driver".into())).unwrap();
        assert_eq!(chosen.backend, Backend::Cpu);
        assert!(
            chosen.reason.contains("no Vulkan driver"),
            "{}",
            chosen.reason
        );
        assert!(chosen.adapter.is_none());
    }

    #[test]
    fn auto_prefers_cpu_over_a_software_adapter() {
        let chosen = select_with(DeviceChoice::Auto, || Ok((Device::flex(), software()))).unwrap();
        assert_eq!(chosen.backend, Backend::Cpu);
        assert!(chosen.reason.contains("software"), "{}", chosen.reason);
        assert_eq!(chosen.adapter.unwrap().name, software().name);
    }

    #[test]
    fn auto_takes_a_hardware_adapter() {
        let gpu = AdapterSummary {
            name: "NVIDIA H200".into(),
            device_type: "DiscreteGpu".into(),
            software: false,
            ..software()
        };
        let chosen = select_with(DeviceChoice::Auto, || Ok((Device::flex(), gpu))).unwrap();
        assert_eq!(chosen.backend, Backend::Wgpu);
        assert_eq!(chosen.label(), "GPU: NVIDIA H200 (Vulkan)");
    }

    #[test]
    fn forced_gpu_without_adapter_is_an_error_not_a_panic() {
        let err = select_with(DeviceChoice::Gpu, || Err("no adapter".into())).unwrap_err();
        assert!(matches!(err, DeviceError::NoGpu(_)));
        assert!(err.to_string().contains("--device cpu"), "{err}");
    }

    #[test]
    fn forced_gpu_accepts_a_software_adapter_with_a_warning() {
        let chosen = select_with(DeviceChoice::Gpu, || Ok((Device::flex(), software()))).unwrap();
        assert_eq!(chosen.backend, Backend::Wgpu);
        assert!(chosen.reason.contains("slower"), "{}", chosen.reason);
    }

    #[test]
    fn forced_cpu_never_probes_wgpu() {
        let chosen = select_with(DeviceChoice::Cpu, || panic!("probed")).unwrap();
        assert_eq!(chosen.backend, Backend::Cpu);
        assert!(chosen.label().starts_with("CPU"));
    }

    fn head_layer() -> BufferNeed {
        BufferNeed {
            bytes: 25088 * 4096 * 4,
            what: "the torchvision head's first dense layer (25088 × 4096)".into(),
            remedy: Some("use the light head (--head dense256)".into()),
        }
    }

    fn small() -> BufferNeed {
        BufferNeed {
            bytes: 25 << 20,
            what: "something small".into(),
            remedy: None,
        }
    }

    fn on_software_gpu(choice: DeviceChoice) -> ComputeDevice {
        select_with(choice, || Ok((Device::flex(), software()))).unwrap()
    }

    #[test]
    fn a_forced_gpu_that_cannot_bind_a_buffer_is_an_error_naming_it_and_the_way_out() {
        let err = fit(on_software_gpu(DeviceChoice::Gpu), &[small(), head_layer()]).unwrap_err();
        assert!(matches!(err, DeviceError::TooLarge { limit, .. } if limit == 128 << 20));
        let text = err.to_string();
        for part in [
            "llvmpipe",
            "128 MiB",
            "392 MiB",
            "first dense layer",
            "--head dense256",
            "--device cpu",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
    }

    #[test]
    fn auto_moves_work_that_does_not_fit_to_the_cpu_and_says_why() {
        // `auto` never picks a software adapter, so stand in a hardware one with a small limit.
        let gpu = AdapterSummary {
            name: "Small GPU".into(),
            device_type: "IntegratedGpu".into(),
            software: false,
            ..software()
        };
        let chosen = select_with(DeviceChoice::Auto, || Ok((Device::flex(), gpu))).unwrap();
        assert_eq!(chosen.backend, Backend::Wgpu);
        let moved = fit(chosen, &[head_layer()]).unwrap();
        assert_eq!(moved.backend, Backend::Cpu);
        assert!(moved.describe().starts_with("CPU"), "{}", moved.describe());
        assert!(moved.describe().contains("392 MiB"), "{}", moved.describe());
        assert_eq!(moved.binding_limit(), None);
        assert!(moved.reason.contains("Small GPU"), "{}", moved.reason);
        assert!(moved.reason.contains("392 MiB"), "{}", moved.reason);
        assert!(moved.reason.contains("on the CPU"), "{}", moved.reason);
    }

    #[test]
    fn work_that_fits_keeps_its_device() {
        let chosen = on_software_gpu(DeviceChoice::Gpu);
        assert_eq!(chosen.binding_limit(), Some(128 << 20));
        let kept = fit(chosen, &[small()]).unwrap();
        assert_eq!(kept.backend, Backend::Wgpu);
        let cpu = select_with(DeviceChoice::Cpu, || panic!("probed")).unwrap();
        assert_eq!(fit(cpu, &[head_layer()]).unwrap().backend, Backend::Cpu);
    }
}
