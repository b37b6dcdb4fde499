//! `vggtune bench`: speed and memory of the real code paths on the chosen device.
//!
//! Measures VGG16 forward images/s at several batch sizes, a training step of the head (base
//! frozen) and of all dense layers, the end-to-end "features for N photos + E head epochs", the
//! same run again with the feature cache warm, and the process's peak memory. Timing lives here,
//! never in tests.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module as _;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::data::{Dataset, SplitConfig};
use crate::device::{self, DeviceChoice};
use crate::model::frozen::FrozenConvs;
use crate::model::{HeadKind, Vgg16Config};
use crate::rng::SplitMix64;
use crate::train::host_head;
use crate::train::optim::FusedAdam;
use crate::train::{TrainConfig, TrainEvent, TrainJob, Trainable, TrainingRun};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The device.
    pub device: DeviceChoice,
    /// Input side in pixels.
    pub input_size: u32,
    /// Forward batch sizes.
    pub batches: Vec<usize>,
    /// Timed repetitions per measurement (after one warm-up).
    pub repeats: usize,
    /// A photo folder for the end-to-end run (skipped when `None`).
    pub photos: Option<PathBuf>,
    /// At most this many photos of it.
    pub photo_limit: usize,
    /// Head epochs in the end-to-end run.
    pub epochs: usize,
    /// Base weights for the end-to-end run (`None`: seeded random, same cost).
    pub weights: Option<PathBuf>,
    /// Width divisor (1 = VGG16; larger for quick smoke runs).
    pub width_divisor: usize,
    /// On the CPU, also time the forward pass through Burn's own convolutions.
    pub compare_burn: bool,
    /// On a CPU with bf16 products, also time the frozen base in f32 and in bf16 in turn, pass
    /// by pass in this one process ([`BenchResult::base_by_precision`]).
    pub alternate_precisions: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Auto,
            input_size: 224,
            batches: vec![1, 8, 32],
            repeats: 3,
            photos: None,
            photo_limit: 2000,
            epochs: 10,
            weights: None,
            width_divisor: 1,
            compare_burn: false,
            alternate_precisions: false,
        }
    }
}

/// One end-to-end measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EndToEnd {
    /// Photos used.
    pub photos: usize,
    /// Head epochs.
    pub epochs: usize,
    /// First run: seconds in the feature pass.
    pub feature_secs: f64,
    /// First run: total seconds.
    pub first_run_secs: f64,
    /// Second run (cache warm): total seconds.
    pub cached_run_secs: f64,
    /// first / cached.
    pub cached_speedup: f64,
    /// Second run: seconds of its feature pass (hashing the photos, reading the cache).
    pub cached_feature_pass_secs: f64,
    /// First run's feature pass / second run's: what the cache saves where it acts.
    pub feature_pass_speedup: f64,
    /// Validation accuracy of the first run.
    pub valid_accuracy: f64,
    /// Peak resident memory of the first run alone, MiB (the process's peak counter reset
    /// before it, so it also counts what the allocator still held from the steps before;
    /// `None` where it cannot be reset, off Linux).
    pub first_run_peak_mib: Option<f64>,
}

/// One batch size's frozen base in both precisions, timed in turn.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PrecisionPair {
    pub batch: usize,
    /// Passes of each precision (timed after one warm-up pass of each).
    pub passes: usize,
    /// Images/s at the median pass, f32.
    pub f32_ips: f64,
    /// Images/s at the median pass, bf16.
    pub bf16_ips: f64,
    /// bf16 ÷ f32, images/s.
    pub ratio: f64,
}

/// Everything `vggtune bench` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    /// The device, in words.
    pub device: String,
    /// Input side.
    pub input_size: u32,
    /// Width divisor.
    pub width_divisor: usize,
    /// (batch, images/s) of the full forward pass, the way prediction runs it (on the CPU: the
    /// frozen base through `model::cpu_base`, the head through Burn, its wide dense layers
    /// through `model::dense` in bf16).
    pub forward: Vec<(usize, f64)>,
    /// (batch, images/s) of the frozen base alone (the 13 convolutions and their pools): what
    /// a feature pass and a prediction spend per view, without torchvision's dense layers.
    pub forward_base: Vec<(usize, f64)>,
    /// (batch, images/s) of the same through Burn's own convolutions (CPU, when asked for).
    pub forward_burn: Vec<(usize, f64)>,
    /// The frozen base in f32 and in bf16, timed in turn pass by pass in one process, when
    /// asked for on a CPU with bf16 products: their ratio without the drift between two runs
    /// (a shared machine's speed moves from one minute to the next).
    pub base_by_precision: Vec<PrecisionPair>,
    /// Images/s of a head-only training step on cached features (light head, batch 32).
    pub head_step_ips: f64,
    /// Images/s of a training step of torchvision's three dense layers (batch 32).
    pub dense_step_ips: f64,
    /// The end-to-end run, when a photo folder was given.
    pub end_to_end: Option<EndToEnd>,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
    /// Peak resident memory of each measurement alone, MiB (the counter reset before each;
    /// empty where it cannot be reset, off Linux).
    pub phase_peaks_mib: Vec<(String, f64)>,
    /// When it ran (seconds since the Unix epoch).
    pub unix_time: u64,
}

/// Starts the process's peak resident memory counter again from what is resident now (Linux's
/// `/proc/self/clear_refs`, value 5); whether it could.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Each measurement's own peak resident memory, as far as the counter can be reset.
#[derive(Default)]
struct PhasePeaks {
    /// (measurement, peak MiB) of those measured so far.
    peaks: Vec<(String, f64)>,
    /// Whether the counter was reset when the current measurement started.
    reset: bool,
}

impl PhasePeaks {
    fn start(&mut self) {
        self.reset = reset_peak_rss();
    }

    fn end(&mut self, phase: &str) {
        if self.reset {
            self.peaks.push((phase.to_owned(), peak_rss_mib()));
        }
    }
}

/// The process's peak resident memory in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn random_input(shape: [usize; 4], device: &Device, seed: u64) -> Tensor<4> {
    let mut rng = SplitMix64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Waits for the device to finish queued work by reading one value back.
fn sync<const D: usize>(t: Tensor<D>) {
    let _ = t.into_data();
}

fn time_per_call(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let started = Instant::now();
    for _ in 0..repeats.max(1) {
        f();
    }
    started.elapsed().as_secs_f64() / repeats.max(1) as f64
}

fn train_step_ips(
    config: &Vgg16Config,
    trainable_from: usize,
    device: &Device,
    repeats: usize,
) -> f64 {
    let batch = 32;
    let ad = device.clone().autodiff();
    let mut model = config.init(&ad).train();
    for (i, dense) in model.classifier.iter_mut().enumerate() {
        if i < trainable_from {
            *dense = dense.clone().no_grad();
        }
    }
    // The optimizer training uses (Adam, fused on the CPU).
    let mut optim = ModuleOptimizer::from(FusedAdam::new(0.0));
    let features: Tensor<2> =
        random_input([batch, config.feature_len(), 1, 1], &ad, 5).flatten(1, 3);
    let classes = config.num_classes;
    let mut one_hot = vec![0.0f32; batch * classes];
    for i in 0..batch {
        one_hot[i * classes + i % classes] = 1.0;
    }
    let one_hot = Tensor::<2>::from_data(TensorData::new(one_hot, [batch, classes]), &ad);
    let mut rng = SplitMix64(9);
    if *device == Device::flex() && trainable_from == 0 && host_head::handles(&model) {
        // The step training takes on the CPU for the light head (`train::host_head`). These
        // features are dense; the pooled features of real photos are mostly zero, which that
        // step exploits (the end-to-end rows with real weights show it).
        let x = crate::model::host::to_host(features);
        let labels: Vec<usize> = (0..batch).map(|i| i % classes).collect();
        let mut slot = Some(model);
        let secs = time_per_call(repeats, || {
            let taken = slot.take().expect("the model is put back after each step");
            slot = Some(host_head::step(taken, &mut optim, 1e-4, &x, &labels, &mut rng).0);
        });
        return batch as f64 / secs;
    }
    let secs = time_per_call(repeats, || {
        let logits = model.forward_head_train(features.clone(), &mut rng);
        let loss = (log_softmax(logits, 1) * one_hot.clone()).sum().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-4, model.clone(), grads);
        sync(model.classifier[0].weight.val());
    });
    batch as f64 / secs
}

/// Runs every measurement; `progress` gets a line before each.
pub fn run(config: &BenchConfig, mut progress: impl FnMut(&str)) -> Result<BenchResult, String> {
    let model_config = Vgg16Config {
        num_classes: 2,
        input_size: config.input_size,
        width_divisor: config.width_divisor.max(1),
        head: HeadKind::Torchvision,
        dropout: 0.5,
    };
    // Everything below must fit the GPU's binding limit; the torchvision head is the largest.
    let chosen =
        device::select_fitting(config.device, |limit| model_config.gpu_needs(13, 1, limit))
            .map_err(|e| e.to_string())?;
    let device = chosen.device.clone();
    let model = model_config.init(&device);
    let base = FrozenConvs::whole_base(model.clone());
    let s = config.input_size as usize;
    let mut peaks = PhasePeaks::default();
    peaks.start();
    let mut forward = Vec::new();
    let mut forward_base = Vec::new();
    let mut forward_burn = Vec::new();
    for &batch in &config.batches {
        progress(&format!("forward, batch {batch}"));
        let x = random_input([batch, 3, s, s], &device, batch as u64);
        // The passes share their buffers, as a prediction's do (`model::buffers`).
        let held = base.hold_buffers();
        let secs = time_per_call(config.repeats, || {
            sync(base.forward_head(base.forward(x.clone())))
        });
        forward.push((batch, batch as f64 / secs));
        let secs = time_per_call(config.repeats, || sync(base.forward(x.clone())));
        forward_base.push((batch, batch as f64 / secs));
        drop(held);
        if base.uses_cpu_base() && config.compare_burn {
            progress(&format!(
                "forward through Burn's own convolutions, batch {batch}"
            ));
            let secs = time_per_call(config.repeats, || sync(model.forward(x.clone())));
            forward_burn.push((batch, batch as f64 / secs));
        }
    }
    drop(base);
    peaks.end("forward passes");
    let base_by_precision = if config.alternate_precisions {
        peaks.start();
        let pairs = alternate_precisions(&model, config, &device, &mut progress);
        peaks.end("the frozen base in f32 and in bf16 in turn");
        pairs
    } else {
        Vec::new()
    };
    drop(model);
    peaks.start();
    progress("training step: light head on cached features");
    let head = Vgg16Config {
        head: HeadKind::Dense256,
        ..model_config
    };
    let head_step_ips = train_step_ips(&head, 0, &device, config.repeats * 3);
    peaks.end("light head training step");
    peaks.start();
    progress("training step: torchvision's dense layers");
    let dense_step_ips = train_step_ips(&model_config, 0, &device, config.repeats);
    peaks.end("torchvision's dense layers training step (Adam)");

    let end_to_end = match &config.photos {
        Some(folder) => {
            progress("end to end: features + head epochs, then again with the cache warm");
            Some(end_to_end(config, folder, chosen.backend)?)
        }
        None => None,
    };
    Ok(BenchResult {
        device: chosen.describe(),
        input_size: config.input_size,
        width_divisor: config.width_divisor.max(1),
        forward,
        forward_base,
        forward_burn,
        base_by_precision,
        head_step_ips,
        dense_step_ips,
        end_to_end,
        peak_rss_mib: peak_rss_mib(),
        phase_peaks_mib: peaks.peaks,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// The frozen base in f32 and in bf16 at each batch size, a pass of each in turn (the first
/// of each pair swapping every round, so that neither gains from going first), after a warm-up
/// pass of each: the median pass of each. Nothing where this CPU has no bf16 products, or the
/// base is not the CPU's.
pub fn alternate_precisions(
    model: &crate::model::Vgg16,
    config: &BenchConfig,
    device: &Device,
    progress: &mut impl FnMut(&str),
) -> Vec<PrecisionPair> {
    use crate::model::bf16::{self, Choice, Precision};
    let convs = model.features.len();
    // Off the CPU (a GPU's model) the bases pack nothing; on a CPU without bf16, none is built.
    let bases = bf16::available().then(|| {
        [Choice::F32, Choice::Bf16]
            .map(|choice| FrozenConvs::with_choice(model.clone(), convs, choice))
    });
    let Some([f32_base, bf16_base]) =
        bases.filter(|[f, b]| f.uses_cpu_base() && b.precision() == Precision::Bf16)
    else {
        progress(
            "the base in f32 and in bf16 in turn: skipped (this CPU has no bf16 products, or the base is not the CPU's)",
        );
        return Vec::new();
    };
    let s = config.input_size as usize;
    let passes = config.repeats.max(3);
    let mut pairs = Vec::new();
    for &batch in &config.batches {
        progress(&format!(
            "the frozen base in f32 and in bf16 in turn, batch {batch}"
        ));
        let x = random_input([batch, 3, s, s], device, batch as u64);
        let held = (f32_base.hold_buffers(), bf16_base.hold_buffers());
        let pass = |base: &FrozenConvs| {
            let started = Instant::now();
            sync(base.forward(x.clone()));
            started.elapsed().as_secs_f64()
        };
        pass(&f32_base);
        pass(&bf16_base);
        let (mut f32_secs, mut bf16_secs) = (Vec::new(), Vec::new());
        for round in 0..passes {
            if round % 2 == 0 {
                f32_secs.push(pass(&f32_base));
                bf16_secs.push(pass(&bf16_base));
            } else {
                bf16_secs.push(pass(&bf16_base));
                f32_secs.push(pass(&f32_base));
            }
        }
        drop(held);
        let (f32_ips, bf16_ips) = (
            batch as f64 / median(&mut f32_secs),
            batch as f64 / median(&mut bf16_secs),
        );
        pairs.push(PrecisionPair {
            batch,
            passes,
            f32_ips,
            bf16_ips,
            ratio: bf16_ips / f32_ips,
        });
    }
    pairs
}

/// The median of `values` (the mean of the middle two of an even count); sorts them.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A whole run on `folder`'s photos (features, then head epochs), then the same run again with
/// the features cached: the first run's time, the cached run's, and the feature pass's of each.
fn end_to_end(
    config: &BenchConfig,
    folder: &Path,
    backend: device::Backend,
) -> Result<EndToEnd, String> {
    let mut dataset = Dataset::scan(folder).map_err(|e| e.to_string())?;
    if dataset.images.len() > config.photo_limit {
        // Keep the classes balanced: every k-th photo.
        let step = dataset.images.len().div_ceil(config.photo_limit);
        dataset.images = dataset.images.into_iter().step_by(step).collect();
    }
    let cache = tempfile_dir()?;
    let train_config = TrainConfig {
        trainable: Trainable::Head,
        epochs: config.epochs,
        batch_size: 32,
        head: HeadKind::Dense256,
        learning_rate: HeadKind::Dense256.default_learning_rate(),
        // The end-to-end row measures what it measured before the test-time views.
        square_tta: false,
        input_size: config.input_size,
        width_divisor: config.width_divisor.max(1),
        // The device the rest of the bench ran on (`fit` may have moved it).
        device: match backend {
            device::Backend::Cpu => device::DeviceChoice::Cpu,
            device::Backend::Wgpu => config.device,
        },
        split: SplitConfig {
            valid_fraction: 0.1,
            seed: 1,
        },
        seed: 1,
        ..TrainConfig::default()
    };
    let job = TrainJob {
        dataset: dataset.clone(),
        weights: config.weights.clone(),
        from_model: None,
        config: train_config,
        out: None,
        checkpoint: None,
        checkpoint_interval: Default::default(),
        final_checkpoint: false,
        resume: false,
        resume_as_saved: false,
        cache_root: Some(cache.clone()),
        stop_after: None,
    };
    let time_run = |job: TrainJob| -> Result<(f64, f64, f64, f64), String> {
        let started = Instant::now();
        match TrainingRun::run_blocking(job, |_| {}) {
            TrainEvent::Finished(summary) => Ok((
                started.elapsed().as_secs_f64(),
                summary.feature_secs,
                summary.feature_pass_secs,
                summary.validation.evaluation.accuracy,
            )),
            TrainEvent::Failed { reason } => Err(reason),
            other => Err(format!("the run ended with {other:?}")),
        }
    };
    // The dense-layer step before this one held torchvision's head and its optimiser state
    // (over 2 GB): the run's own peak starts from here.
    let reset = reset_peak_rss();
    let (first, feature_secs, first_pass, valid_accuracy) = time_run(job.clone())?;
    let first_run_peak_mib = reset.then(peak_rss_mib);
    let (cached, _, cached_pass, _) = time_run(job)?;
    let _ = std::fs::remove_dir_all(&cache);
    Ok(EndToEnd {
        photos: dataset.images.len(),
        epochs: config.epochs,
        feature_secs,
        first_run_secs: first,
        cached_run_secs: cached,
        cached_speedup: first / cached.max(1e-9),
        cached_feature_pass_secs: cached_pass,
        feature_pass_speedup: first_pass / cached_pass.max(1e-9),
        valid_accuracy,
        first_run_peak_mib,
    })
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("vggtune-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The result as a table.
pub fn table(r: &BenchResult) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "device: {}  (input {}×{}, width ÷{})",
        r.device, r.input_size, r.input_size, r.width_divisor
    );
    let _ = writeln!(out, "{:<48} {:>12}", "measurement", "value");
    for (what, rows) in [
        ("VGG16 forward", &r.forward),
        ("  its frozen base alone", &r.forward_base),
        ("  the same through Burn's convolutions", &r.forward_burn),
    ] {
        for (batch, ips) in rows {
            let _ = writeln!(
                out,
                "{:<48} {:>8.2} img/s",
                format!("{what}, batch {batch}"),
                ips
            );
        }
    }
    for p in &r.base_by_precision {
        let _ = writeln!(
            out,
            "{:<48} {:>8.2} img/s",
            format!("  frozen base in f32, in turn, batch {}", p.batch),
            p.f32_ips
        );
        let _ = writeln!(
            out,
            "{:<48} {:>8.2} img/s  ({:.2}× f32, median of {} passes each)",
            format!("  frozen base in bf16, in turn, batch {}", p.batch),
            p.bf16_ips,
            p.ratio,
            p.passes
        );
    }
    let _ = writeln!(
        out,
        "{:<48} {:>8.1} img/s",
        "training step, light head (cached features)", r.head_step_ips
    );
    let _ = writeln!(
        out,
        "{:<48} {:>8.1} img/s",
        "training step, torchvision dense layers", r.dense_step_ips
    );
    if let Some(e) = &r.end_to_end {
        let _ = writeln!(
            out,
            "{:<48} {:>8.1} s",
            format!("end to end: {} photos + {} epochs", e.photos, e.epochs),
            e.first_run_secs
        );
        let _ = writeln!(
            out,
            "{:<48} {:>8.1} s",
            "  of which feature extraction", e.feature_secs
        );
        if let Some(mib) = e.first_run_peak_mib {
            let _ = writeln!(out, "{:<48} {:>8.0} MiB", "  its peak memory", mib);
        }
        let _ = writeln!(
            out,
            "{:<48} {:>8.2} s",
            "  the same again, cache warm", e.cached_run_secs
        );
        let _ = writeln!(
            out,
            "{:<48} {:>8.0}×",
            "  cached speed-up", e.cached_speedup
        );
        let _ = writeln!(
            out,
            "{:<48} {:>8.2} s",
            "  its feature pass (hash photos, read cache)", e.cached_feature_pass_secs
        );
        let _ = writeln!(
            out,
            "{:<48} {:>8.0}×",
            "  feature pass speed-up", e.feature_pass_speedup
        );
    }
    let _ = writeln!(
        out,
        "{:<48} {:>8.0} MiB",
        "peak memory, the whole bench", r.peak_rss_mib
    );
    for (phase, mib) in &r.phase_peaks_mib {
        let _ = writeln!(out, "{:<48} {:>8.0} MiB", format!("  {phase}"), mib);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny base in both precisions, in turn: a pair for each batch size where this CPU has
    /// bf16 products (its ratio the two rates'), none where it has not; the choice for the rest
    /// of the process is left as it was.
    #[test]
    fn precisions_in_turn_give_a_pair_a_batch_where_bf16_runs() {
        let config = BenchConfig {
            input_size: 32,
            batches: vec![1, 2],
            repeats: 1,
            width_divisor: 16,
            ..BenchConfig::default()
        };
        let model = Vgg16Config {
            num_classes: 2,
            input_size: 32,
            width_divisor: 16,
            head: HeadKind::Torchvision,
            dropout: 0.5,
        }
        .init(&Device::flex());
        let before = crate::model::bf16::chosen();
        let mut said = Vec::new();
        let pairs = alternate_precisions(&model, &config, &Device::flex(), &mut |s: &str| {
            said.push(s.to_owned())
        });
        assert_eq!(crate::model::bf16::chosen(), before);
        let burn = crate::tuning::current().cpu_conv == crate::tuning::CpuConv::Burn;
        if !crate::model::bf16::available() || burn {
            assert!(pairs.is_empty());
            assert!(said.iter().any(|s| s.contains("skipped")), "{said:?}");
            return;
        }
        assert_eq!(
            pairs.iter().map(|p| p.batch).collect::<Vec<_>>(),
            vec![1, 2]
        );
        for p in &pairs {
            assert_eq!(p.passes, 3, "at least three passes of each");
            assert!(p.f32_ips > 0.0 && p.bf16_ips > 0.0, "{p:?}");
            assert!((p.ratio - p.bf16_ips / p.f32_ips).abs() < 1e-9, "{p:?}");
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
