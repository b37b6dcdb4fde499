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
                        let summary = AdapterSummary {
                            name: info.name.clone(),
                            graphics_api: format!("{:?}", info.backend),
                            device_type,
                            driver,
                            software,
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
}
