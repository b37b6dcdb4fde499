//! A training run on a worker thread: it reports everything it does as [`TrainEvent`]s over a
//! channel and stops within one batch when asked, keeping the last good checkpoint.
//!
//! The loop is hand-written (Burn's `custom-training-loop` shape): forward, cross-entropy,
//! backward, optimizer step. When the convolutions up to the trainable part are frozen and no
//! augmentation is on, their outputs come from the [`FeatureCache`], so only the first pass over
//! the photos costs a full VGG16 forward. Every source of randomness (new layers, shuffling,
//! dropout, augmentation) is drawn from the config's seed per epoch, so a resumed run gives the
//! same numbers as an uninterrupted one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use burn::module::{Module as _, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::cache::{CacheKey, FeatureCache, content_hash, default_cache_root};
use super::config::{OptimizerKind, TrainConfig, Trainable};
use super::host_head;
use super::metrics::{Evaluation, argmax};
use super::optim::FusedAdam;
use crate::data::decode::decode_rgb_bytes;
use crate::data::preprocess::SplitMix64;
use crate::data::{
    Convention, Dataset, DecodeLimits, ImageEntry, Preprocessing, Split, decode_prepared,
};
use crate::device;
use crate::model::bundle::{self, BundleHeader};
use crate::model::cpu_base::{FrozenConvs, to_host};
use crate::model::{HeadKind, Vgg16, Vgg16Config, apply_weights, read_weights};

/// Metrics of one finished epoch.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch (with dropout on).
    pub train_accuracy: f64,
    /// Validation log loss.
    pub valid_loss: f64,
    /// Validation accuracy.
    pub valid_accuracy: f64,
    /// The learning rate used.
    pub learning_rate: f64,
    /// Wall time of the epoch (training and validation).
    pub secs: f64,
}

/// What a run did, when it finished.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunSummary {
    /// Epochs trained in total (including any before a resume).
    pub epochs: usize,
    /// The last validation evaluation.
    pub evaluation: Evaluation,
    /// The validation images, in the evaluation's order.
    pub valid_images: Vec<PathBuf>,
    /// Their true labels.
    pub valid_labels: Vec<usize>,
    /// Their predicted probabilities.
    pub valid_probs: Vec<Vec<f32>>,
    /// Per-epoch metrics.
    pub history: Vec<EpochMetrics>,
    /// Seconds spent computing frozen features (0 when all came from the cache).
    pub feature_secs: f64,
    /// Seconds of the whole feature pass: hashing every photo, then computing its features or
    /// reading them from the cache.
    pub feature_pass_secs: f64,
    /// Images whose features came from the cache.
    pub cache_hits: usize,
    /// Images whose features were computed.
    pub cache_misses: usize,
    /// Images skipped because they could not be decoded.
    pub skipped: usize,
    /// Where the model was saved, if it was.
    pub model: Option<PathBuf>,
}

/// The phases a progress bar can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Computing (or reading) the frozen part's outputs.
    Features,
    /// Training an epoch.
    Training,
    /// Evaluating on the validation images.
    Validating,
}

/// Everything a run reports.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TrainEvent {
    /// The run started.
    Started {
        /// Class names.
        classes: Vec<String>,
        /// Training images.
        train: usize,
        /// Validation images.
        valid: usize,
        /// The device, in words.
        device: String,
        /// Whether frozen features are cached (and why not, when not).
        cache: String,
        /// The epoch (1-based) this run starts at; above 1 after a resume.
        first_epoch: usize,
        /// What the weights import said.
        weights: Vec<String>,
    },
    /// Progress within a phase.
    Progress {
        /// The phase.
        phase: Phase,
        /// 1-based epoch (0 for the feature pass).
        epoch: usize,
        /// Images done in this phase.
        done: usize,
        /// Images in this phase.
        total: usize,
        /// Throughput so far in this phase.
        images_per_sec: f64,
        /// Estimated seconds left in this phase.
        eta_secs: f64,
    },
    /// One optimizer step.
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// Step number over the whole run.
        step: usize,
        /// The batch's loss.
        loss: f64,
        /// The batch's accuracy.
        accuracy: f64,
    },
    /// An epoch finished.
    Epoch(EpochMetrics),
    /// A checkpoint was written.
    CheckpointSaved {
        /// Where.
        path: PathBuf,
        /// After which epoch (1-based).
        epoch: usize,
    },
    /// An image was left out because it could not be decoded.
    Skipped {
        /// The image.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The run finished.
    Finished(Box<RunSummary>),
    /// The run was stopped by the user.
    Stopped {
        /// Epochs completed.
        epochs_done: usize,
        /// The last good checkpoint.
        checkpoint: Option<PathBuf>,
    },
    /// The run failed.
    Failed {
        /// Why, in words.
        reason: String,
    },
}

/// One training run's inputs.
#[derive(Clone, Debug)]
pub struct TrainJob {
    /// The scanned photos.
    pub dataset: Dataset,
    /// The base weights; `None` starts from seeded random weights (tests, from-scratch runs).
    pub weights: Option<PathBuf>,
    /// What to do.
    pub config: TrainConfig,
    /// Where to save the finished model.
    pub out: Option<PathBuf>,
    /// The checkpoint: rewritten after an epoch once `checkpoint_interval` has passed since the
    /// last write, and always after the last epoch and when the run stops.
    pub checkpoint: Option<PathBuf>,
    /// See `checkpoint`; [`Duration::ZERO`] writes it after every epoch.
    pub checkpoint_interval: Duration,
    /// Whether the checkpoint is written after the last epoch too (the CLI keeps it, for a
    /// `--resume` with more epochs; the window deletes a finished run's). Without it, the last
    /// epoch's snapshot is written only if saving the model fails.
    pub final_checkpoint: bool,
    /// Continue from `checkpoint` when it exists.
    pub resume: bool,
    /// The feature cache's folder (default: the platform cache).
    pub cache_root: Option<PathBuf>,
    /// Stop, as the Stop button does, once this many epochs (counted across resumes) are done
    /// and checkpointed; `resume` continues later. For scripts with a time budget, and for
    /// tests that need the stop at an exact epoch.
    pub stop_after: Option<usize>,
}

/// A run in progress on its worker thread.
pub struct TrainingRun {
    events: Receiver<TrainEvent>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl TrainingRun {
    /// Starts `job` on a worker thread; `wake` is called after every event (the window passes
    /// `request_repaint`).
    pub fn start(job: TrainJob, wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        Self::start_with_stop(job, Arc::new(AtomicBool::new(false)), wake)
    }

    /// [`TrainingRun::start`] with the stop flag supplied: setting it is [`TrainingRun::stop`],
    /// also from inside `wake` (which runs on the worker, after each event is sent).
    pub fn start_with_stop(
        job: TrainJob,
        stop: Arc<AtomicBool>,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, events) = channel();
        let worker_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name("training".into())
            .spawn(move || {
                let emit = Emitter {
                    tx,
                    wake: Box::new(wake),
                };
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(job, &emit, &worker_stop)
                }));
                let event = match outcome {
                    Ok(Ok(Outcome::Finished(summary))) => TrainEvent::Finished(summary),
                    Ok(Ok(Outcome::Stopped {
                        epochs_done,
                        checkpoint,
                    })) => TrainEvent::Stopped {
                        epochs_done,
                        checkpoint,
                    },
                    Ok(Err(reason)) => TrainEvent::Failed { reason },
                    Err(panic) => TrainEvent::Failed {
                        reason: format!(
                            "internal error: {}",
                            panic
                                .downcast_ref::<String>()
                                .map(String::as_str)
                                .or_else(|| panic.downcast_ref::<&str>().copied())
                                .unwrap_or("panic")
                        ),
                    },
                };
                emit.send(event);
            })?;
        Ok(Self {
            events,
            stop,
            handle: Some(handle),
        })
    }

    /// Asks the run to stop after the current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The events so far, without waiting.
    pub fn try_events(&self) -> Vec<TrainEvent> {
        self.events.try_iter().collect()
    }

    /// Waits for the next event; `None` once the run is over and every event was taken.
    pub fn next_event(&self) -> Option<TrainEvent> {
        self.events.recv().ok()
    }

    /// True while the worker thread runs.
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Runs a job on this thread until it ends, handing every event to `on_event`.
    pub fn run_blocking(job: TrainJob, mut on_event: impl FnMut(&TrainEvent)) -> TrainEvent {
        let run = match Self::start(job, || {}) {
            Ok(r) => r,
            Err(e) => {
                return TrainEvent::Failed {
                    reason: format!("cannot start the training thread: {e}"),
                };
            }
        };
        let mut last = TrainEvent::Failed {
            reason: "the training thread ended without a word".into(),
        };
        while let Some(event) = run.next_event() {
            on_event(&event);
            last = event;
        }
        last
    }
}

impl Drop for TrainingRun {
    fn drop(&mut self) {
        self.stop();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Emitter {
    tx: Sender<TrainEvent>,
    wake: Box<dyn Fn() + Send>,
}

impl Emitter {
    fn send(&self, event: TrainEvent) {
        // A closed receiver means nobody listens any more; the run goes on to its end or stop.
        let _ = self.tx.send(event);
        (self.wake)();
    }
}

enum Outcome {
    Finished(Box<RunSummary>),
    Stopped {
        epochs_done: usize,
        checkpoint: Option<PathBuf>,
    },
}

/// How often a run writes its checkpoint unless told otherwise: after an epoch once this much
/// training time has passed since the last one, and always after the last epoch and on a stop.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// Writes the run's checkpoint on a thread of its own, so the next epoch trains while the last
/// one's is serialised and flushed to disk (about 0.3–0.7 s for the light head's 136 MB on the
/// development machine, as long as a cached epoch). At most one write is in flight: the next
/// checkpoint, a stop and the end of the run wait for it. `CheckpointSaved` is sent once the file
/// is complete, from the run's own thread.
///
/// Epochs shorter than the interval are not each written: the epoch's snapshot is kept (cheap:
/// tensors are shared) and written when the interval has passed, after the last epoch, on a
/// stop, or when the run fails, so a stopped or failed run still leaves the last finished
/// epoch's checkpoint. Cached epochs of the light head take under a second, and writing 136 MB
/// after each took a third of a warm run's CPU time.
struct CheckpointWriter {
    pending: Option<PendingCheckpoint>,
    deferred: Option<Snapshot>,
    interval: Duration,
    since: Instant,
}

/// A checkpoint being written: where, after which epoch, and the writing thread.
struct PendingCheckpoint {
    path: PathBuf,
    epoch: usize,
    writing: std::thread::JoinHandle<Result<(), String>>,
}

/// The run as it stood after an epoch.
struct Snapshot {
    path: PathBuf,
    header: BundleHeader,
    model: Vgg16,
    optim: ModuleOptimizer,
    epoch: usize,
}

impl CheckpointWriter {
    fn new(interval: Duration) -> Self {
        Self {
            pending: None,
            deferred: None,
            interval,
            since: Instant::now(),
        }
    }

    /// Takes the snapshot after `epoch` (cheap clones: tensors are shared, and the next
    /// optimizer step writes new buffers) and writes it when the interval has passed or `last`.
    #[allow(clippy::too_many_arguments)]
    fn epoch_done(
        &mut self,
        emit: &Emitter,
        path: &Path,
        header: BundleHeader,
        model: &Vgg16,
        optim: &ModuleOptimizer,
        epoch: usize,
        last: bool,
    ) -> Result<(), String> {
        self.keep(path, header, model, optim, epoch);
        if last || self.since.elapsed() >= self.interval {
            self.write_kept(emit)?;
        }
        Ok(())
    }

    /// Starts writing the kept snapshot, if any.
    fn write_kept(&mut self, emit: &Emitter) -> Result<(), String> {
        match self.deferred.take() {
            Some(snapshot) => self.write(emit, snapshot),
            None => Ok(()),
        }
    }

    /// Keeps the snapshot after `epoch` without writing it: [`Self::flush`] or a failed run
    /// writes it, [`Self::discard`] drops it.
    fn keep(
        &mut self,
        path: &Path,
        header: BundleHeader,
        model: &Vgg16,
        optim: &ModuleOptimizer,
        epoch: usize,
    ) {
        self.deferred = Some(Snapshot {
            path: path.to_owned(),
            header,
            model: model.clone(),
            optim: optim.clone(),
            epoch,
        });
    }

    /// Drops the snapshot waiting to be written, if any.
    fn discard(&mut self) {
        self.deferred = None;
    }

    /// Starts writing `snapshot` after the previous write is done.
    fn write(&mut self, emit: &Emitter, snapshot: Snapshot) -> Result<(), String> {
        self.finish(emit)?;
        self.since = Instant::now();
        let Snapshot {
            path,
            header,
            model,
            optim,
            epoch,
        } = snapshot;
        let target = path.clone();
        let handle = std::thread::Builder::new()
            .name("vggtune-checkpoint".into())
            .spawn(move || {
                bundle::save(&target, &header, &model, Some(&optim)).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("cannot start the checkpoint writer: {e}"))?;
        self.pending = Some(PendingCheckpoint {
            path,
            epoch,
            writing: handle,
        });
        Ok(())
    }

    /// Reports a finished write without waiting for one in progress.
    fn poll(&mut self, emit: &Emitter) -> Result<(), String> {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.writing.is_finished())
        {
            self.finish(emit)?;
        }
        Ok(())
    }

    /// Writes the snapshot still waiting for its turn, if any, and waits for every write.
    fn flush(&mut self, emit: &Emitter) -> Result<(), String> {
        self.write_kept(emit)?;
        self.finish(emit)
    }

    /// Waits for the write in progress, if any, and reports it.
    fn finish(&mut self, emit: &Emitter) -> Result<(), String> {
        let Some(PendingCheckpoint {
            path,
            epoch,
            writing,
        }) = self.pending.take()
        else {
            return Ok(());
        };
        writing
            .join()
            .map_err(|_| format!("{}: the checkpoint writer panicked", path.display()))??;
        emit.send(TrainEvent::CheckpointSaved { path, epoch });
        Ok(())
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        // A run that fails elsewhere still leaves a complete checkpoint file (or the old one),
        // of the last finished epoch.
        if let Some(pending) = self.pending.take() {
            let _ = pending.writing.join();
        }
        if let Some(s) = self.deferred.take() {
            let _ = bundle::save(&s.path, &s.header, &s.model, Some(&s.optim));
        }
    }
}

/// One usable image of the run, with where its frozen features are.
struct Sample {
    path: PathBuf,
    label: usize,
    hash: Option<String>,
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

/// Marks the layers that do not learn in this run as frozen.
fn freeze(mut model: Vgg16, trainable: Trainable, head: HeadKind) -> Vgg16 {
    let frozen_convs = trainable.frozen_convs();
    for conv in model.features.iter_mut().take(frozen_convs) {
        *conv = conv.clone().no_grad();
    }
    if trainable == Trainable::Head && head == HeadKind::Torchvision {
        let last = model.classifier.len().saturating_sub(1);
        for dense in model.classifier.iter_mut().take(last) {
            *dense = dense.clone().no_grad();
        }
    }
    model
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        OptimizerKind::Adam => ModuleOptimizer::from(FusedAdam::new(config.weight_decay as f32)),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
            ))
            .with_weight_decay(decay)
            .init(),
    }
}

fn rows(values: Vec<f32>, width: usize) -> Vec<Vec<f32>> {
    values.chunks(width.max(1)).map(<[f32]>::to_vec).collect()
}

/// A seed for (run seed, epoch, stream, item): distinct streams never share draws.
fn derive_seed(seed: u64, epoch: usize, stream: u64, item: usize) -> u64 {
    let mut rng = SplitMix64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let a = rng.next_u64() ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    SplitMix64(a ^ (item as u64).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
}

struct Context<'a> {
    emit: &'a Emitter,
    stop: &'a AtomicBool,
    config: &'a TrainConfig,
    preprocessing: Preprocessing,
    model_config: Vgg16Config,
    cache: Option<FeatureCache>,
    /// Cached features kept in memory for the run (while they fit in [`MEMORY_BUDGET_BYTES`]),
    /// so epochs after the feature pass read no files.
    memory: std::sync::Mutex<(usize, std::collections::HashMap<String, Vec<f32>>)>,
    device: Device,
    limits: DecodeLimits,
}

/// How many bytes of cached features a run keeps in memory (the rest is read from disk).
const MEMORY_BUDGET_BYTES: usize = 2 << 30;

impl Context<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Keeps `features` in memory when the budget allows (taking them: no copy).
    fn remember(&self, hash: &str, features: Vec<f32>) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = features.len() * 4;
        if memory.0 + bytes <= MEMORY_BUDGET_BYTES && !memory.1.contains_key(hash) {
            memory.0 += bytes;
            memory.1.insert(hash.to_owned(), features);
        }
    }

    /// Appends the cached features of `hash` to `out` (memory first, then disk).
    fn cached_features(&self, cache: &FeatureCache, hash: &str, out: &mut Vec<f32>) -> bool {
        {
            let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = memory.1.get(hash) {
                out.extend_from_slice(f);
                return true;
            }
        }
        match cache.get(hash) {
            Some(f) => {
                out.extend_from_slice(&f);
                true
            }
            None => false,
        }
    }

    /// The batch's cached features on the host, `[kept, features]`, and the positions in `batch`
    /// of the images they belong to; `None` when the run has no cache.
    fn cached_batch(&self, batch: &[&Sample]) -> Option<(Vec<f32>, Vec<usize>)> {
        let cache = self.cache.as_ref()?;
        let mut values = Vec::new();
        let mut kept = Vec::new();
        for (i, s) in batch.iter().enumerate() {
            if s.hash
                .as_deref()
                .is_some_and(|h| self.cached_features(cache, h, &mut values))
            {
                kept.push(i);
            }
        }
        Some((values, kept))
    }

    /// The input of the trainable part for a batch: cached features, or preprocessed photos run
    /// through the frozen convolutions, and the positions in `batch` of the images it holds
    /// (images that fail to decode are dropped, with an event).
    fn batch_input(
        &self,
        frozen: &FrozenConvs,
        batch: &[&Sample],
        augment: Option<(usize, &[usize])>,
        target: &Device,
    ) -> (Option<Tensor<4>>, Vec<usize>) {
        let frozen_convs = self.config.trainable.frozen_convs();
        if let Some((values, labels)) = self.cached_batch(batch) {
            if labels.is_empty() {
                return (None, labels);
            }
            let shape = frozen_output_shape(&self.model_config, frozen_convs);
            let x = Tensor::<4>::from_data(
                TensorData::new(values, [labels.len(), shape[0], shape[1], shape[2]]),
                target,
            );
            return (Some(x), labels);
        }
        let s = self.preprocessing.input_size as usize;
        let mut values = Vec::with_capacity(batch.len() * 3 * s * s);
        let mut labels = Vec::new();
        let (config, preprocessing) = (self.config, self.preprocessing);
        let paths: Vec<&Path> = batch.iter().map(|sample| sample.path.as_path()).collect();
        let prepared = decode_prepared(&paths, &self.limits, |i, photo| {
            let aug = augment.map(|(epoch, items)| {
                (
                    &config.augmentation,
                    derive_seed(config.seed, epoch, 3, items[i]),
                )
            });
            preprocessing.apply(photo, aug)
        });
        for (i, (sample, input)) in batch.iter().zip(prepared).enumerate() {
            match input {
                Ok(input) => {
                    values.extend(input);
                    labels.push(i);
                }
                Err(e) => self.emit.send(TrainEvent::Skipped {
                    path: sample.path.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        if labels.is_empty() {
            return (None, labels);
        }
        let n = labels.len();
        if frozen_convs == 0 {
            let x = Tensor::from_data(TensorData::new(values, [n, 3, s, s]), target);
            return (Some(x), labels);
        }
        let y = frozen.forward_values(values, [n, 3, s, s]);
        let [c, h, w] = frozen_output_shape(&self.model_config, frozen_convs);
        (
            Some(Tensor::from_data(TensorData::new(y, [n, c, h, w]), target)),
            labels,
        )
    }
}

/// What the feature pass found for one photo.
enum Lookup {
    /// Its content hash and cached features.
    Hit(String, Vec<f32>),
    /// Its content hash and its preprocessed pixels, for the frozen convolutions.
    Miss(String, Vec<f32>),
    /// Why it cannot be decoded (the photo is skipped).
    Undecodable(String),
}

/// Reads a photo once for both its content hash and, on a cache miss, its decoding. An unreadable
/// file fails the run (as before any epoch); an undecodable one is skipped.
fn look_up(
    cache: &FeatureCache,
    sample: &Sample,
    preprocessing: Preprocessing,
    limits: &DecodeLimits,
) -> Result<Lookup, String> {
    let bytes =
        std::fs::read(&sample.path).map_err(|e| format!("{}: {e}", sample.path.display()))?;
    let hash = content_hash(&bytes);
    if let Some(features) = cache.get(&hash) {
        return Ok(Lookup::Hit(hash, features));
    }
    Ok(match decode_rgb_bytes(&bytes, &sample.path, limits) {
        Ok(photo) => Lookup::Miss(hash, preprocessing.apply(&photo, None)),
        Err(e) => Lookup::Undecodable(e.to_string()),
    })
}

/// The shape of the frozen part's output for one image.
fn frozen_output_shape(config: &Vgg16Config, frozen_convs: usize) -> [usize; 3] {
    if frozen_convs >= 13 {
        return config.feature_shape();
    }
    let channels = config.conv_channels();
    let mut side = config.input_size as usize;
    for i in 0..frozen_convs {
        if crate::model::vgg::POOL_AFTER.contains(&i) {
            side /= 2;
        }
    }
    let c = if frozen_convs == 0 {
        3
    } else {
        channels[frozen_convs - 1]
    };
    [c, side, side]
}

/// The trainable part's forward pass from the frozen part's output.
fn forward_trainable(
    model: &Vgg16,
    x: Tensor<4>,
    frozen_convs: usize,
    rng: Option<&mut SplitMix64>,
) -> Tensor<2> {
    let pooled = if frozen_convs >= 13 {
        x
    } else {
        model.forward_convs(x, frozen_convs..13)
    };
    let flat = pooled.flatten(1, 3);
    match rng {
        Some(rng) => model.forward_head_train(flat, rng),
        None => model.forward_head_flat(flat),
    }
}

fn run(job: TrainJob, emit: &Emitter, stop: &AtomicBool) -> Result<Outcome, String> {
    let config = job.config.clone();
    config.validate()?;
    let split = Split::of(&job.dataset, &config.split).map_err(|e| e.to_string())?;
    let classes = job.dataset.classes.clone();
    if classes.len() < 2 {
        return Err("training needs at least two classes".into());
    }
    if split.train.is_empty() {
        return Err("there are no training images".into());
    }

    let model_config = Vgg16Config {
        num_classes: classes.len(),
        input_size: config.input_size,
        width_divisor: config.width_divisor,
        head: config.head,
        dropout: config.dropout,
    };
    // Before any work: a GPU that cannot bind the run's largest buffer is left for the CPU
    // (auto) or refused with the reason (--device gpu), rather than failing mid-run.
    let chosen = device::select_fitting(config.device, |limit| {
        model_config.gpu_needs(
            config.trainable.frozen_convs(),
            config.batch_size.max(1),
            limit,
        )
    })
    .map_err(|e| e.to_string())?;
    let device = chosen.device.clone();
    let train_device = device.clone().autodiff();

    // The model, its optimizer and history: from the checkpoint, or fresh.
    let resume_from = job
        .checkpoint
        .as_ref()
        .filter(|p| job.resume && p.is_file())
        .cloned();
    let mut weights_messages = Vec::new();
    let (model, mut optim, mut history, first_epoch, convention, weights_id, weights_file) =
        if let Some(path) = &resume_from {
            let loaded = bundle::load(path, &device).map_err(|e| e.to_string())?;
            if loaded.header.classes != classes {
                return Err(format!(
                    "{}: the checkpoint's classes {:?} differ from the folder's {:?}",
                    path.display(),
                    loaded.header.classes,
                    classes
                ));
            }
            let history: Vec<EpochMetrics> =
                serde_json::from_value(loaded.header.history.clone()).unwrap_or_default();
            let mut optim = optimizer(&config);
            if let Some(record) = loaded.optimizer {
                // Burn puts the restored state on its default device. Where that is still wgpu
                // (the library used without `main`'s `pin_default_device`), start wgpu through
                // the one probe first, so that an implicit start cannot race it.
                if std::env::var_os("BURN_DEVICE").is_none() {
                    let _ = device::probe_wgpu();
                }
                optim = optim.load_record(record);
            }
            weights_messages.push(format!("resumed from {}", path.display()));
            (
                loaded.model,
                optim,
                history,
                loaded.header.next_epoch,
                loaded.header.preprocessing.convention,
                loaded.header.base_weights_sha256.clone(),
                loaded.header.base_weights_file.clone(),
            )
        } else {
            let mut model = model_config.init(&device);
            // The file's layers first; then seeded values for the rest only (drawing the ones
            // the file replaced would only be thrown away: 14.7 M of the light model's 21 M).
            let (convention, id, file, loaded) = match &job.weights {
                Some(path) => {
                    let file = read_weights(path).map_err(|e| e.to_string())?;
                    let report = apply_weights(&mut model, &model_config, &file, &device)
                        .map_err(|e| e.to_string())?;
                    let loaded = Loaded {
                        convs: report.conv_layers_loaded,
                        dense: report.dense_loaded.clone(),
                    };
                    weights_messages.extend(report.messages);
                    (
                        report.convention,
                        report.sha256,
                        path.file_name().map(|n| n.to_string_lossy().into_owned()),
                        loaded,
                    )
                }
                None => {
                    weights_messages
                        .push("no weights file: starting from seeded random weights".into());
                    (
                        Convention::Torchvision,
                        format!("random-init:seed={}", config.seed),
                        None,
                        Loaded::default(),
                    )
                }
            };
            seeded_init(&mut model, config.seed, &device, &loaded);
            (
                model,
                optimizer(&config),
                Vec::new(),
                0,
                convention,
                id,
                file,
            )
        };
    let preprocessing = Preprocessing {
        convention,
        input_size: config.input_size,
        resize: config.resize,
    };
    let frozen_convs = config.trainable.frozen_convs();
    let frozen = FrozenConvs::new(model.valid(), frozen_convs);
    let mut model = freeze(
        model.fork(&train_device).train(),
        config.trainable,
        config.head,
    );

    let cache = if config.uses_feature_cache() {
        let key = CacheKey {
            weights: weights_id.clone(),
            preprocessing,
            frozen_convs,
            width_divisor: config.width_divisor,
        };
        let shape = frozen_output_shape(&model_config, frozen_convs);
        let root = job.cache_root.clone().unwrap_or_else(default_cache_root);
        Some(
            FeatureCache::open(&root, &key, shape.iter().product())
                .map_err(|e| format!("{}: cannot open the feature cache: {e}", root.display()))?,
        )
    } else {
        None
    };
    let cache_note = match (&cache, config.augment) {
        (Some(c), _) => format!("on ({})", c.dir().display()),
        (None, true) => "off: augmentation changes every image every epoch".into(),
        (None, false) => "off: nothing is frozen".into(),
    };
    let ctx = Context {
        emit,
        stop,
        config: &config,
        preprocessing,
        model_config,
        cache,
        memory: std::sync::Mutex::new((0, std::collections::HashMap::new())),
        device: device.clone(),
        limits: DecodeLimits::default(),
    };
    emit.send(TrainEvent::Started {
        classes: classes.clone(),
        train: split.train.len(),
        valid: split.valid.len(),
        device: chosen.describe(),
        cache: cache_note,
        first_epoch: first_epoch + 1,
        weights: weights_messages,
    });

    // The feature pass: every image's frozen output, from the cache or computed once.
    let feature_started = Instant::now();
    let mut skipped = 0;
    let (mut hits, mut misses) = (0, 0);
    let samples_of = |entries: &[ImageEntry]| -> Vec<Sample> {
        entries
            .iter()
            .map(|e| Sample {
                path: e.path.clone(),
                label: e.label,
                hash: None,
            })
            .collect()
    };
    let mut train = samples_of(&split.train);
    let mut valid = samples_of(&split.valid);
    if let Some(cache) = &ctx.cache {
        let total = train.len() + valid.len();
        let mut done = 0;
        // Photos not in the cache: content hash and preprocessed pixels, up to a batch.
        let mut pending: Vec<(String, Vec<f32>)> = Vec::new();
        let s = preprocessing.input_size as usize;
        let flush = |pending: &mut Vec<(String, Vec<f32>)>| -> Result<(), String> {
            if pending.is_empty() {
                return Ok(());
            }
            let n = pending.len();
            let values: Vec<f32> = pending.iter().flat_map(|p| p.1.iter().copied()).collect();
            let y = frozen.forward_values(values, [n, 3, s, s]);
            let per = y.len() / n;
            for (i, p) in pending.iter().enumerate() {
                cache.put(&p.0, &y[i * per..(i + 1) * per]).map_err(|e| {
                    format!(
                        "{}: cannot write the feature cache: {e}",
                        cache.dir().display()
                    )
                })?;
            }
            pending.clear();
            Ok(())
        };
        let batch = config.batch_size.max(1);
        for list in [&mut train, &mut valid] {
            for chunk in list.chunks_mut(batch) {
                if ctx.stopped() {
                    return Ok(Outcome::Stopped {
                        epochs_done: first_epoch,
                        checkpoint: resume_from.clone(),
                    });
                }
                // Reading, hashing, the cache lookup and decoding run on all cores, a batch at a
                // time; the frozen convolutions then run on the batch's misses.
                let looked_up: Vec<Result<Lookup, String>> = chunk
                    .par_iter()
                    .map(|sample| look_up(cache, sample, preprocessing, &ctx.limits))
                    .collect();
                for (sample, found) in chunk.iter_mut().zip(looked_up) {
                    match found? {
                        Lookup::Hit(hash, features) => {
                            ctx.remember(&hash, features);
                            hits += 1;
                            sample.hash = Some(hash);
                        }
                        Lookup::Miss(hash, input) => {
                            misses += 1;
                            pending.push((hash.clone(), input));
                            sample.hash = Some(hash);
                        }
                        Lookup::Undecodable(reason) => {
                            skipped += 1;
                            emit.send(TrainEvent::Skipped {
                                path: sample.path.clone(),
                                reason,
                            });
                        }
                    }
                }
                if pending.len() >= batch {
                    flush(&mut pending)?;
                }
                done += chunk.len();
                let secs = feature_started.elapsed().as_secs_f64().max(1e-6);
                let rate = done as f64 / secs;
                emit.send(TrainEvent::Progress {
                    phase: Phase::Features,
                    epoch: 0,
                    done,
                    total,
                    images_per_sec: rate,
                    eta_secs: (total - done) as f64 / rate.max(1e-9),
                });
            }
            flush(&mut pending)?;
        }
        train.retain(|s| s.hash.is_some());
        valid.retain(|s| s.hash.is_some());
    }
    let feature_pass_secs = feature_started.elapsed().as_secs_f64();
    let feature_secs = if misses > 0 { feature_pass_secs } else { 0.0 };

    // The epochs.
    let mut evaluated = evaluate(&ctx, &frozen, &model.valid(), &valid, &classes, 0)?;
    let mut step = first_epoch * train.len().div_ceil(config.batch_size.max(1));
    let mut writer = CheckpointWriter::new(job.checkpoint_interval);
    let header_at = |history: &[EpochMetrics], next_epoch: usize| {
        header(
            &classes,
            preprocessing,
            model_config,
            &config,
            &weights_id,
            &weights_file,
            history,
            next_epoch,
        )
    };
    // The light head on cached features trains by hand on the CPU (same arithmetic, same
    // optimizer and checkpoints, a third of the time: see `host_head`).
    let host_step = device == Device::flex()
        && ctx.cache.is_some()
        && frozen_convs == 13
        && config.optimizer == OptimizerKind::Adam
        && host_head::handles(&model);
    for epoch in first_epoch..config.epochs {
        let epoch_started = Instant::now();
        let lr = config
            .schedule
            .rate(config.learning_rate, epoch, config.epochs);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut shuffle = SplitMix64(derive_seed(config.seed, epoch, 1, 0));
        for i in (1..order.len()).rev() {
            let j = (shuffle.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut dropout_rng = SplitMix64(derive_seed(config.seed, epoch, 2, 0));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for chunk in order.chunks(config.batch_size.max(1)) {
            if ctx.stopped() {
                writer.flush(emit)?;
                return Ok(Outcome::Stopped {
                    epochs_done: epoch,
                    checkpoint: job.checkpoint.clone().filter(|p| p.is_file()),
                });
            }
            writer.poll(emit)?;
            let batch: Vec<&Sample> = chunk.iter().map(|&i| &train[i]).collect();
            let classes_n = classes.len();
            let (labels, batch_loss, logits) = if host_step {
                let Some((x, kept)) = ctx.cached_batch(&batch) else {
                    unreachable!("the host step runs only with the cache")
                };
                if kept.is_empty() {
                    continue;
                }
                let labels: Vec<usize> = kept.iter().map(|&i| batch[i].label).collect();
                let (next, out) =
                    host_head::step(model, &mut optim, lr, &x, &labels, &mut dropout_rng);
                model = next;
                (labels, out.loss, out.logits)
            } else {
                let augment = config.augment.then_some((epoch, chunk));
                let (input, kept) = ctx.batch_input(&frozen, &batch, augment, &train_device);
                let Some(input) = input else { continue };
                let labels: Vec<usize> = kept.iter().map(|&i| batch[i].label).collect();
                let b = labels.len();
                let logits = forward_trainable(&model, input, frozen_convs, Some(&mut dropout_rng));
                let mut one_hot = vec![0.0f32; b * classes_n];
                for (i, &l) in labels.iter().enumerate() {
                    one_hot[i * classes_n + l] = 1.0;
                }
                let one_hot =
                    Tensor::<2>::from_data(TensorData::new(one_hot, [b, classes_n]), &train_device);
                let loss = (log_softmax(logits.clone(), 1) * one_hot)
                    .sum()
                    .neg()
                    .div_scalar(b as f32);
                let batch_loss =
                    f64::from(to_host(loss.clone()).first().copied().unwrap_or(f32::NAN));
                if batch_loss.is_finite() {
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    model = optim.step(lr, model, grads);
                }
                (labels, batch_loss, to_host(logits))
            };
            if !batch_loss.is_finite() {
                return Err(format!(
                    "the loss became {batch_loss} at epoch {}: lower the learning rate (now {})",
                    epoch + 1,
                    config.learning_rate
                ));
            }
            let b = labels.len();
            let predicted = rows(logits, classes_n);
            let batch_correct = predicted
                .iter()
                .zip(&labels)
                .filter(|(p, l)| argmax(p) == **l)
                .count();
            loss_sum += batch_loss * b as f64;
            correct += batch_correct;
            seen += b;
            step += 1;
            emit.send(TrainEvent::Batch {
                epoch: epoch + 1,
                step,
                loss: batch_loss,
                accuracy: batch_correct as f64 / b as f64,
            });
            let secs = epoch_started.elapsed().as_secs_f64().max(1e-6);
            let rate = seen as f64 / secs;
            emit.send(TrainEvent::Progress {
                phase: Phase::Training,
                epoch: epoch + 1,
                done: seen,
                total: train.len(),
                images_per_sec: rate,
                eta_secs: train.len().saturating_sub(seen) as f64 / rate.max(1e-9),
            });
        }
        evaluated = evaluate(&ctx, &frozen, &model.valid(), &valid, &classes, epoch + 1)?;
        let evaluation = &evaluated.evaluation;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            valid_loss: evaluation.log_loss,
            valid_accuracy: evaluation.accuracy,
            learning_rate: lr,
            secs: epoch_started.elapsed().as_secs_f64(),
        };
        history.push(metrics.clone());
        emit.send(TrainEvent::Epoch(metrics));
        if let Some(path) = &job.checkpoint {
            let header = header_at(&history, epoch + 1);
            let last = epoch + 1 == config.epochs;
            if last && !job.final_checkpoint {
                writer.keep(path, header, &model, &optim, epoch + 1);
            } else {
                writer.epoch_done(emit, path, header, &model, &optim, epoch + 1, last)?;
            }
        }
        if job
            .stop_after
            .is_some_and(|n| epoch + 1 >= n && epoch + 1 < config.epochs)
        {
            writer.flush(emit)?;
            return Ok(Outcome::Stopped {
                epochs_done: epoch + 1,
                checkpoint: job.checkpoint.clone().filter(|p| p.is_file()),
            });
        }
    }

    // The model is saved while the last checkpoint is still being written on its thread.
    if let Some(out) = &job.out {
        let header = header_at(&history, config.epochs);
        bundle::save(out, &header, &model.valid(), None).map_err(|e| e.to_string())?;
    }
    if !job.final_checkpoint {
        // The model is safe on disk: the snapshot kept for a failed save is not needed.
        writer.discard();
    }
    writer.flush(emit)?;
    Ok(Outcome::Finished(Box::new(RunSummary {
        epochs: config.epochs,
        evaluation: evaluated.evaluation,
        valid_images: evaluated.paths,
        valid_labels: evaluated.labels,
        valid_probs: evaluated.probs,
        history,
        feature_secs,
        feature_pass_secs,
        cache_hits: hits,
        cache_misses: misses,
        skipped,
        model: job.out.clone(),
    })))
}

#[allow(clippy::too_many_arguments)]
fn header(
    classes: &[String],
    preprocessing: Preprocessing,
    model: Vgg16Config,
    config: &TrainConfig,
    weights_id: &str,
    weights_file: &Option<String>,
    history: &[EpochMetrics],
    next_epoch: usize,
) -> BundleHeader {
    BundleHeader {
        format_version: bundle::FORMAT_VERSION,
        vggtune_version: crate::VERSION.to_owned(),
        classes: classes.to_vec(),
        preprocessing,
        model,
        trained: serde_json::to_value(config.trainable)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        base_weights_sha256: weights_id.to_owned(),
        base_weights_file: weights_file.clone(),
        train_config: serde_json::to_value(config).unwrap_or_default(),
        history: serde_json::to_value(history).unwrap_or_default(),
        next_epoch,
    }
}

/// The validation pass: probabilities for every validation image, then every metric.
fn evaluate(
    ctx: &Context<'_>,
    frozen: &FrozenConvs,
    model: &Vgg16,
    valid: &[Sample],
    classes: &[String],
    epoch: usize,
) -> Result<Evaluated, String> {
    let frozen_convs = ctx.config.trainable.frozen_convs();
    let started = Instant::now();
    let mut probs = Vec::with_capacity(valid.len());
    let mut labels = Vec::with_capacity(valid.len());
    let mut paths = Vec::with_capacity(valid.len());
    let refs: Vec<&Sample> = valid.iter().collect();
    for chunk in refs.chunks(ctx.config.batch_size.max(1)) {
        let (input, kept) = ctx.batch_input(frozen, chunk, None, &ctx.device);
        let Some(input) = input else { continue };
        let logits = forward_trainable(model, input, frozen_convs, None);
        probs.extend(rows(to_host(softmax(logits, 1)), classes.len()));
        labels.extend(kept.iter().map(|&i| chunk[i].label));
        paths.extend(kept.iter().map(|&i| chunk[i].path.clone()));
        let secs = started.elapsed().as_secs_f64().max(1e-6);
        let rate = labels.len() as f64 / secs;
        ctx.emit.send(TrainEvent::Progress {
            phase: Phase::Validating,
            epoch,
            done: labels.len(),
            total: valid.len(),
            images_per_sec: rate,
            eta_secs: valid.len().saturating_sub(labels.len()) as f64 / rate.max(1e-9),
        });
    }
    Ok(Evaluated {
        evaluation: Evaluation::compute(classes, &probs, &labels, 12),
        probs,
        labels,
        paths,
    })
}

/// An evaluation with the per-image numbers behind it.
struct Evaluated {
    evaluation: Evaluation,
    probs: Vec<Vec<f32>>,
    labels: Vec<usize>,
    paths: Vec<PathBuf>,
}

/// The path of the checkpoint that goes with a model path (`model.vggtune` → `model.ckpt.vggtune`).
pub fn checkpoint_path_for(out: &Path) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.ckpt.vggtune"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu_base::to_host;

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
