//! Where a run starts: a checkpoint it resumes, or a fresh model (a weights file's layers, and
//! seeded values for the rest).
//!
//! Owns which settings a checkpoint fixes: the classes and everything that decides a tensor's
//! shape (head, width, input size) come from the checkpoint, and a resumed run that asks for
//! other values is refused with the setting named, never turned into a model file that cannot
//! be loaded. The preprocessing convention, the base weights' identity and the history come from
//! the checkpoint too; the optimizer's state is restored.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};

use super::config::TrainConfig;
use super::events::EpochMetrics;
use super::optim::optimizer;
use crate::data::Convention;
use crate::device;
use crate::model::bundle;
use crate::model::{HeadKind, Vgg16, Vgg16Config, apply_weights, read_weights};
use crate::rng::SplitMix64;

/// The model a run trains, with what it carries over.
pub(super) struct StartingPoint {
    /// The model, on the run's device (not yet frozen or forked for training).
    pub model: Vgg16,
    /// The optimizer, with its state when resumed.
    pub optim: ModuleOptimizer,
    /// Epochs trained before (empty for a fresh start).
    pub history: Vec<EpochMetrics>,
    /// The 0-based epoch the run starts at.
    pub first_epoch: usize,
    /// The base weights' pixel convention.
    pub convention: Convention,
    /// The base weights' SHA-256 (or a description of a random start): the feature cache's key.
    pub weights_id: String,
    /// The base weights file's name, when there was one.
    pub weights_file: Option<String>,
    /// What loading said, for the run's first event.
    pub messages: Vec<String>,
    /// The checkpoint resumed from.
    pub resumed_from: Option<PathBuf>,
    /// The epoch this stage began at: the epochs of the model it continues (0 for a first
    /// stage).
    pub stage_start: usize,
}

/// A checkpoint read back, and the stage it says it belongs to.
struct Resumed {
    start: StartingPoint,
    stage_start: Option<usize>,
}

impl StartingPoint {
    /// Resumes `checkpoint` when it is given and exists, else continues `from_model` as a new
    /// stage when given, else starts fresh from `weights` (or seeded random values when there
    /// are none).
    pub fn resolve(
        config: &TrainConfig,
        model_config: &Vgg16Config,
        classes: &[String],
        (weights, from_model): (Option<&Path>, Option<&Path>),
        checkpoint: Option<&Path>,
        device: &Device,
    ) -> Result<Self, String> {
        // The continued model's epochs, for a checkpoint written before the checkpoint said
        // which stage it belongs to.
        let model_epochs = || match from_model {
            Some(path) => bundle::read_header(path)
                .map(|h| h.next_epoch)
                .map_err(|e| e.to_string()),
            None => Ok(0),
        };
        match (checkpoint.filter(|p| p.is_file()), from_model) {
            (Some(path), _) => {
                let resumed = Self::resume(path, config, model_config, classes, device)?;
                let stage_start = match resumed.stage_start {
                    Some(k) => k,
                    None => model_epochs()?,
                };
                Ok(Self {
                    stage_start,
                    ..resumed.start
                })
            }
            (None, Some(model)) => {
                Self::continue_from(model, config, model_config, classes, device)
            }
            (None, None) => Self::fresh(weights, config, model_config, device),
        }
    }

    /// A new stage on a trained model: its weights, classes, preprocessing and history, with a
    /// fresh optimizer for the stage's own learning rate.
    fn continue_from(
        path: &Path,
        config: &TrainConfig,
        model_config: &Vgg16Config,
        classes: &[String],
        device: &Device,
    ) -> Result<Self, String> {
        let header = read_matching(path, "model", classes, model_config)?;
        if header.preprocessing.resize != config.resize {
            return Err(format!(
                "{}: the model makes photos square with {:?}, this run asks for {:?}; use the \
                 model's",
                path.display(),
                header.preprocessing.resize,
                config.resize
            ));
        }
        let loaded = bundle::load(path, device).map_err(|e| e.to_string())?;
        let header = loaded.header;
        let history: Vec<EpochMetrics> =
            serde_json::from_value(header.history.clone()).unwrap_or_default();
        let weights_id = frozen_identity(path, &header, config)?;
        Ok(Self {
            model: loaded.model,
            optim: optimizer(config),
            messages: vec![format!(
                "continuing from {} ({} epochs, {} trained)",
                path.display(),
                header.next_epoch,
                header.trained
            )],
            first_epoch: header.next_epoch,
            history,
            convention: header.preprocessing.convention,
            weights_id,
            weights_file: header.base_weights_file,
            resumed_from: None,
            stage_start: header.next_epoch,
        })
    }

    /// The checkpoint at `path`, with the stage it says it belongs to (`None` in checkpoints
    /// written before they said).
    fn resume(
        path: &Path,
        config: &TrainConfig,
        model_config: &Vgg16Config,
        classes: &[String],
        device: &Device,
    ) -> Result<Resumed, String> {
        let header = read_matching(path, "checkpoint", classes, model_config)?;
        same_switches(path, &header, config)?;
        let loaded = bundle::load(path, device).map_err(|e| e.to_string())?;
        let history: Vec<EpochMetrics> =
            serde_json::from_value(loaded.header.history.clone()).unwrap_or_default();
        let mut optim = optimizer(config);
        if let Some(record) = loaded.optimizer {
            // Burn puts the restored state on its default device. Where that is still wgpu
            // (the library used without `main`'s `pin_default_device`), start wgpu through
            // the one probe first, so that an implicit start cannot race it.
            if std::env::var_os("BURN_DEVICE").is_none() {
                let _ = device::probe_wgpu();
            }
            optim = optim.load_record(record);
        }
        let header = loaded.header;
        Ok(Resumed {
            stage_start: header.stage_start,
            start: Self {
                model: loaded.model,
                optim,
                history,
                first_epoch: header.next_epoch,
                convention: header.preprocessing.convention,
                weights_id: header.base_weights_sha256,
                weights_file: header.base_weights_file,
                messages: vec![format!("resumed from {}", path.display())],
                resumed_from: Some(path.to_owned()),
                stage_start: 0,
            },
        })
    }

    fn fresh(
        weights: Option<&Path>,
        config: &TrainConfig,
        model_config: &Vgg16Config,
        device: &Device,
    ) -> Result<Self, String> {
        let mut model = model_config.init(device);
        let mut messages = Vec::new();
        // The file's layers first; then seeded values for the rest only (drawing the ones the
        // file replaced would only be thrown away: 14.7 M of the light model's 21 M).
        let (convention, weights_id, weights_file, loaded) = match weights {
            Some(path) => {
                let file = read_weights(path).map_err(|e| e.to_string())?;
                let report = apply_weights(&mut model, model_config, &file, device)
                    .map_err(|e| e.to_string())?;
                let loaded = Loaded {
                    convs: report.conv_layers_loaded,
                    dense: report.dense_loaded.clone(),
                };
                messages.extend(report.messages);
                (
                    report.convention,
                    report.sha256,
                    path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    loaded,
                )
            }
            None => {
                messages.push("no weights file: starting from seeded random weights".into());
                (
                    Convention::Torchvision,
                    format!("random-init:seed={}", config.seed),
                    None,
                    Loaded::default(),
                )
            }
        };
        seeded_init(&mut model, config.seed, device, &loaded);
        Ok(Self {
            model,
            optim: optimizer(config),
            history: Vec::new(),
            first_epoch: 0,
            convention,
            weights_id,
            weights_file,
            messages,
            resumed_from: None,
            stage_start: 0,
        })
    }
}

/// What identifies the frozen convolutions of a run continuing the model at `path`, for the
/// feature cache: the base weights' SHA-256 while they are the base's (the model trained no
/// convolution the run keeps frozen), else the model file's own SHA-256 as well.
fn frozen_identity(
    path: &Path,
    header: &bundle::BundleHeader,
    config: &TrainConfig,
) -> Result<String, String> {
    let trained: super::config::Trainable =
        serde_json::from_value(serde_json::Value::String(header.trained.clone()))
            .unwrap_or(super::config::Trainable::All);
    if config.trainable.frozen_convs() <= trained.frozen_convs() {
        return Ok(header.base_weights_sha256.clone());
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!(
        "{}+{}:{}",
        header.base_weights_sha256,
        header.trained,
        super::cache::content_hash(&bytes)
    ))
}

/// The head's name as the CLI and the model file spell it ("dense256", "torchvision").
fn head_name(head: HeadKind) -> String {
    serde_json::to_value(head)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Refuses to resume a checkpoint whose run had other views: mirror views change which images
/// each epoch draws, and the test-time views what its validation measures, so a resume that
/// turned one on or off would not give the run it continues. (Checkpoints from before a switch
/// existed had it off.)
fn same_switches(
    path: &Path,
    header: &bundle::BundleHeader,
    config: &TrainConfig,
) -> Result<(), String> {
    let switches = [
        ("mirror views", "mirror_views", config.mirror_views),
        ("the mirror test-time view", "mirror_tta", config.mirror_tta),
        (
            "the other-square test-time views",
            "square_tta",
            config.square_tta,
        ),
    ];
    let word = |on: bool| if on { "on" } else { "off" };
    for (name, key, asked) in switches {
        let saved = super::config::saved_switch(&header.train_config, key);
        if saved != asked {
            return Err(format!(
                "{}: the checkpoint was trained with {name} {}, this run asks for {} {}; resume \
                 with {}, or start a new run (without resume) to change it",
                path.display(),
                word(saved),
                if name.ends_with('s') { "them" } else { "it" },
                word(asked),
                word(saved)
            ));
        }
    }
    Ok(())
}

/// The header of the checkpoint or model (`what`) at `path`, refused when its classes or its
/// tensors' shapes are not the run's.
fn read_matching(
    path: &Path,
    what: &str,
    classes: &[String],
    model_config: &Vgg16Config,
) -> Result<bundle::BundleHeader, String> {
    let header = bundle::read_header(path).map_err(|e| e.to_string())?;
    if header.classes != classes {
        return Err(format!(
            "{}: the {what}'s classes {:?} differ from the folder's {:?}",
            path.display(),
            header.classes,
            classes
        ));
    }
    check_same_shape(path, &header.model, model_config, what)?;
    Ok(header)
}

/// Refuses to resume a checkpoint (or continue a model: `what`) whose tensors have other shapes
/// than this run asks for.
fn check_same_shape(
    path: &Path,
    saved: &Vgg16Config,
    asked: &Vgg16Config,
    what: &str,
) -> Result<(), String> {
    let differences = [
        ("head", head_name(saved.head), head_name(asked.head)),
        (
            "width divisor",
            saved.width_divisor.to_string(),
            asked.width_divisor.to_string(),
        ),
        (
            "input size",
            format!("{} px", saved.input_size),
            format!("{} px", asked.input_size),
        ),
    ];
    match differences.iter().find(|(_, s, a)| s != a) {
        Some((setting, saved, asked)) if what == "checkpoint" => Err(format!(
            "{}: the checkpoint was trained with {setting} {saved}, this run asks for {asked}; \
             resume with {saved}, or start a new run (without resume) to change it",
            path.display()
        )),
        Some((setting, saved, asked)) => Err(format!(
            "{}: the {what} was trained with {setting} {saved}, this run asks for {asked}; \
             continue it with {saved}",
            path.display()
        )),
        None => Ok(()),
    }
}

/// Replaces every parameter with values drawn from `seed` the way torchvision initialises VGG
/// (convolutions: Kaiming normal, fan-out, ReLU gain, zero bias; dense layers: N(0, 0.01), zero
/// bias), so a run's starting point does not depend on the backend's global random state.
///
/// Layers in `loaded` (a weights file's) are left as they are; the generator skips their draws
/// without making them, so every other layer gets the values it would get had all been drawn.
fn seeded_init(model: &mut Vgg16, seed: u64, device: &Device, loaded: &Loaded) {
    let mut rng = SplitMix64(seed ^ 0x5EED_1417);
    let mut normal = |shape: Vec<usize>, std: f32, skip: bool| {
        let n: usize = shape.iter().product();
        if skip {
            // Two uniform draws per value (Box-Muller); SplitMix64 advances by a constant.
            rng.0 = rng
                .0
                .wrapping_add((2 * n as u64).wrapping_mul(SplitMix64::GAMMA));
            return None;
        }
        let values: Vec<f32> = (0..n)
            .map(|_| {
                // Box-Muller.
                let u1 = rng.next_f32().max(1e-7);
                let u2 = rng.next_f32();
                std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect();
        Some(TensorData::new(values, shape))
    };
    for (i, conv) in model.features.iter_mut().enumerate() {
        let [out, inp, kh, kw] = conv.weight.shape().dims::<4>();
        let std = (2.0 / (out * kh * kw) as f32).sqrt();
        if let Some(values) = normal(vec![out, inp, kh, kw], std, i < loaded.convs) {
            conv.weight = Param::from_tensor(Tensor::from_data(values, device));
            conv.bias = Some(Param::from_tensor(Tensor::zeros([out], device)));
        }
    }
    for (j, dense) in model.classifier.iter_mut().enumerate() {
        let [inp, out] = dense.weight.shape().dims::<2>();
        let skip = loaded.dense.get(j).copied().unwrap_or(false);
        if let Some(values) = normal(vec![inp, out], 0.01, skip) {
            dense.weight = Param::from_tensor(Tensor::from_data(values, device));
            dense.bias = Some(Param::from_tensor(Tensor::zeros([out], device)));
        }
    }
}

/// The layers a weights file supplied: its first `convs` convolutions and the dense layers
/// marked in `dense`.
#[derive(Default)]
struct Loaded {
    convs: usize,
    dense: Vec<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::host::to_host;

    #[test]
    fn skipping_the_layers_a_file_supplies_leaves_the_others_as_drawing_everything_does() {
        let config = Vgg16Config {
            num_classes: 2,
            input_size: 32,
            width_divisor: 16,
            head: HeadKind::Dense256,
            dropout: 0.5,
        };
        let device = Device::flex();
        let mut all = config.init(&device);
        seeded_init(&mut all, 7, &device, &Loaded::default());
        let mut some = config.init(&device);
        let before = to_host(some.features[3].weight.val());
        let loaded = Loaded {
            convs: 13,
            dense: vec![false, true],
        };
        seeded_init(&mut some, 7, &device, &loaded);
        // Skipped layers are untouched; the first dense layer, drawn after 13 skipped ones,
        // gets exactly the values drawing everything gives it.
        assert_eq!(to_host(some.features[3].weight.val()), before);
        assert_ne!(to_host(all.features[3].weight.val()), before);
        assert_eq!(
            to_host(some.classifier[0].weight.val()),
            to_host(all.classifier[0].weight.val())
        );
        assert_ne!(
            to_host(some.classifier[1].weight.val()),
            to_host(all.classifier[1].weight.val())
        );
    }
}
