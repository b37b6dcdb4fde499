//! A training run from its start to its end, read top to bottom: check the settings, pick the
//! device, find the starting point ([`super::start`]), the feature pass ([`super::features`]),
//! then the epochs: shuffled batches through the stepper ([`super::stepper`]), validation, the
//! checkpoint ([`super::checkpoint`]); then the model is saved.
//!
//! The loop is hand-written (Burn's `custom-training-loop` shape). When the convolutions up to
//! the trainable part are frozen and no augmentation is on, their outputs come from the
//! [`FeatureCache`], so only the first pass over the photos costs a full VGG16 forward. Every
//! source of randomness (new layers, shuffling, dropout, augmentation) is drawn from the config's
//! seed per epoch, so a resumed run gives the same numbers as an uninterrupted one.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::module::Module as _;
use burn::optim::ModuleOptimizer;
use burn::tensor::activation::softmax;

use super::cache::{CacheKey, FeatureCache, default_cache_root};
use super::checkpoint::CheckpointWriter;
use super::config::TrainConfig;
use super::events::{EpochMetrics, Phase, RunSummary, TrainEvent};
use super::features::{
    Context, FeaturePass, Sample, View, feature_pass, frozen_output_shape, samples_of,
};
use super::job::{Emitter, Outcome, TrainJob};
use super::record;
use super::seeds::{DROPOUT_STREAM, MIRROR_STREAM, SHUFFLE_STREAM, derive_seed};
use super::start::StartingPoint;
use super::stepper::{Stepper, freeze};
use crate::calibration::Calibration;
use crate::data::{DecodeLimits, Preprocessing, Split};
use crate::device;
use crate::metrics::{EvaluatedImages, argmax};
use crate::model::bundle::{self, BundleHeader};
use crate::model::frozen::FrozenConvs;
use crate::model::host::to_host;
use crate::model::vgg::global_average;
use crate::model::{Vgg16, Vgg16Config};
use crate::rng::SplitMix64;
use crate::typical::TypicalitySummary;

/// Runs `job` to its end, a stop, or an error.
pub(super) fn run(job: TrainJob, emit: &Emitter, stop: &AtomicBool) -> Result<Outcome, String> {
    let (mut config, saved_stage) = settings_of(&job)?;
    let resuming = job
        .checkpoint
        .as_deref()
        .filter(|p| job.resume && p.is_file());
    let (split, classes, model_config) = checked(&job, &config)?;
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
    let mut start = StartingPoint::resolve(
        &config,
        &model_config,
        &classes,
        (job.weights.as_deref(), job.from_model.as_deref()),
        resuming,
        &device,
    )?;
    // Resumed as saved: the stage the settings were read with (a checkpoint written before
    // checkpoints said their stage is a first stage).
    if let Some(stage_start) = saved_stage {
        start.stage_start = stage_start;
    }
    // A stage continuing a model adds its epochs after the model's, on one time axis.
    config.epochs += start.stage_start;
    let preprocessing = Preprocessing {
        convention: start.convention,
        input_size: config.input_size,
        resize: config.resize,
    };
    let frozen_convs = config.trainable.frozen_convs();
    let frozen = FrozenConvs::new(start.model.valid(), frozen_convs);
    let cache = open_cache(
        (&job, &config),
        (&start.weights_id, frozen.precision()),
        preprocessing,
        &model_config,
    )?;
    let cache_note = cache_note(cache.as_ref(), &config);
    let ctx = Context {
        emit,
        stop,
        config: &config,
        preprocessing,
        model_config,
        frozen,
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
        first_epoch: start.first_epoch + 1,
        weights: start.messages.clone(),
        history: start.history.clone(),
        config: Box::new(config.clone()),
        stage_start: start.stage_start,
        resumed: start.resumed_from.is_some(),
    });

    let mut train = samples_of(&split.train);
    let mut valid = samples_of(&split.valid);
    let Some(pass) = feature_pass(&ctx, &mut train, &mut valid)? else {
        return Ok(Outcome::Stopped {
            epochs_done: start.first_epoch,
            checkpoint: start.resumed_from,
            model: None,
        });
    };
    let model = freeze(
        start.model.fork(&device.autodiff()).train(),
        config.trainable,
        config.head,
    );
    let epochs = Epochs {
        stage_start: start.stage_start,
        stepper: Stepper::choose(&ctx, &model),
        ctx: &ctx,
        job: &job,
        identity: Identity {
            classes: &classes,
            preprocessing,
            model_config,
            config: &config,
            weights_id: &start.weights_id,
            weights_file: &start.weights_file,
            stage_start: start.stage_start,
        },
        train,
        valid,
    };
    epochs.run(model, start.optim, start.history, start.first_epoch, pass)
}

/// The run's settings checked, its split, classes and network shape; refused with why when
/// there is nothing to train.
fn checked(
    job: &TrainJob,
    config: &TrainConfig,
) -> Result<(Split, Vec<String>, Vgg16Config), String> {
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
    Ok((split, classes, model_config))
}

/// The run's settings: the job's, or with `resume_as_saved` the checkpoint's (the window's
/// Resume: the stopped run goes on as it was saved, whatever the settings on screen say now, a
/// deeper stage as the deeper stage), with the epoch that stage began at. A new run first
/// removes an older run's checkpoint, which is not this run's to resume or report.
fn settings_of(job: &TrainJob) -> Result<(TrainConfig, Option<usize>), String> {
    let checkpoint = job.checkpoint.as_deref().filter(|p| p.is_file());
    match checkpoint {
        Some(old) if !job.resume => {
            std::fs::remove_file(old)
                .map_err(|e| format!("{}: cannot remove the old checkpoint: {e}", old.display()))?;
            Ok((job.config.clone(), None))
        }
        Some(path) if job.resume_as_saved => {
            let header = bundle::read_header(path).map_err(|e| e.to_string())?;
            let (saved, stage_start) = super::config::as_saved(&header, &job.config)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((saved, Some(stage_start)))
        }
        _ => Ok((job.config.clone(), None)),
    }
}

/// The feature cache for the run's frozen convolutions (with the run's own settings, which a
/// resumed run takes from its checkpoint), when the run caches them.
fn open_cache(
    (job, config): (&TrainJob, &TrainConfig),
    (weights_id, precision): (&str, crate::model::bf16::Precision),
    preprocessing: Preprocessing,
    model_config: &Vgg16Config,
) -> Result<Option<FeatureCache>, String> {
    if !config.uses_feature_cache() {
        return Ok(None);
    }
    let frozen_convs = config.trainable.frozen_convs();
    let key = CacheKey {
        weights: weights_id.to_owned(),
        preprocessing,
        frozen_convs,
        width_divisor: config.width_divisor,
        precision,
    };
    let shape = frozen_output_shape(model_config, frozen_convs);
    let root = job.cache_root.clone().unwrap_or_else(default_cache_root);
    FeatureCache::open(&root, &key, shape.iter().product())
        .map(Some)
        .map_err(|e| format!("{}: cannot open the feature cache: {e}", root.display()))
}

/// The feature cache in the run's first words: where it is, or why there is none.
fn cache_note(cache: Option<&FeatureCache>, config: &TrainConfig) -> String {
    match (cache, config.augment) {
        (Some(c), _) => format!("on ({})", c.dir().display()),
        (None, true) => "off: augmentation changes every image every epoch".into(),
        (None, false) => "off: nothing is frozen".into(),
    }
}

/// What the model file's header says all run long; [`Identity::header`] adds the history.
struct Identity<'a> {
    classes: &'a [String],
    preprocessing: Preprocessing,
    model_config: Vgg16Config,
    config: &'a TrainConfig,
    weights_id: &'a str,
    weights_file: &'a Option<String>,
    stage_start: usize,
}

impl Identity<'_> {
    /// The header of the model or checkpoint after `history`, resuming at `next_epoch`.
    fn header(&self, history: &[EpochMetrics], next_epoch: usize) -> BundleHeader {
        BundleHeader {
            format_version: bundle::FORMAT_VERSION,
            vggtune_version: crate::VERSION.to_owned(),
            classes: self.classes.to_vec(),
            preprocessing: self.preprocessing,
            model: self.model_config,
            trained: serde_json::to_value(self.config.trainable)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            base_weights_sha256: self.weights_id.to_owned(),
            base_weights_file: self.weights_file.clone(),
            train_config: serde_json::to_value(self.config).unwrap_or_default(),
            history: serde_json::to_value(history).unwrap_or_default(),
            next_epoch,
            validation: None,
            mirror_tta: self.config.mirror_tta,
            square_tta: self.config.square_tta,
            stage_start: Some(self.stage_start),
            calibration: None,
            typicality: None,
        }
    }
}

/// The epochs of a run, after the feature pass.
struct Epochs<'a> {
    /// The first epoch of this stage (the learning-rate schedule runs over the stage).
    stage_start: usize,
    ctx: &'a Context<'a>,
    job: &'a TrainJob,
    identity: Identity<'a>,
    stepper: Stepper,
    train: Vec<Sample>,
    valid: Vec<Sample>,
}

/// Mean loss and accuracy of an epoch's training batches.
struct EpochTraining {
    loss: f64,
    accuracy: f64,
}

impl Epochs<'_> {
    /// Trains from `first_epoch` to the last epoch (or a stop), then saves the model.
    fn run(
        &self,
        mut model: Vgg16,
        mut optim: ModuleOptimizer,
        mut history: Vec<EpochMetrics>,
        first_epoch: usize,
        pass: FeaturePass,
    ) -> Result<Outcome, String> {
        let (ctx, job, config) = (self.ctx, self.job, self.ctx.config);
        // The last validation pass: each epoch's; a run with no epoch left to train (a
        // resume of a finished run) validates the model it has, at the end.
        let mut evaluated: Option<EvaluatedImages> = None;
        let mut step = first_epoch * self.train.len().div_ceil(config.batch_size.max(1));
        let mut writer = CheckpointWriter::new(job.checkpoint_interval);
        // The model as it stood after the last epoch this run finished: what a stop saves.
        let mut finished: Option<Vgg16> = None;
        for epoch in first_epoch..config.epochs {
            let started = Instant::now();
            let lr = config.schedule.rate(
                config.learning_rate,
                epoch - self.stage_start.min(epoch),
                config.epochs - self.stage_start,
            );
            let trained;
            (model, trained) =
                self.train_epoch(model, &mut optim, &mut writer, epoch, lr, &mut step)?;
            let Some(trained) = trained else {
                return self.stopped(&mut writer, (finished, &history, evaluated), epoch);
            };
            let validated = self.evaluate(&model.valid(), epoch + 1)?;
            let metrics = EpochMetrics {
                epoch: epoch + 1,
                train_loss: trained.loss,
                train_accuracy: trained.accuracy,
                valid_loss: validated.evaluation.log_loss,
                valid_accuracy: validated.evaluation.accuracy,
                learning_rate: lr,
                secs: started.elapsed().as_secs_f64(),
            };
            evaluated = Some(validated);
            history.push(metrics.clone());
            ctx.emit.send(TrainEvent::Epoch(metrics));
            finished = Some(model.valid());
            if let Some(path) = &job.checkpoint {
                let header = self.identity.header(&history, epoch + 1);
                let last = epoch + 1 == config.epochs;
                if last && !job.final_checkpoint {
                    writer.keep(path, header, &model, &optim, epoch + 1);
                } else {
                    writer.epoch_done(ctx.emit, path, header, &model, &optim, epoch + 1, last)?;
                }
            }
            if job
                .stop_after
                .is_some_and(|n| epoch + 1 >= n && epoch + 1 < config.epochs)
            {
                return self.stopped(&mut writer, (finished, &history, evaluated), epoch + 1);
            }
        }

        // The checkpoint is written while the model is saved; a model that is saved is a
        // finished run, even when its last checkpoint then cannot be written (it is only
        // needed to add epochs later), and a model that cannot be saved leaves `out` as it
        // was (a failed run: the last epoch's checkpoint is written instead, for a resume).
        let evaluated = match evaluated {
            Some(e) => e,
            None => self.evaluate(&model.valid(), config.epochs)?,
        };
        // Only a model that is saved is calibrated: a run without one (a fold of the label
        // check) reports its network's own probabilities, which the check ranks.
        let (evaluated, calibration) = if job.out.is_some() {
            record::calibrated(self.identity.classes, evaluated)
        } else {
            (
                evaluated,
                Err("no model is saved, so no temperature is fitted".into()),
            )
        };
        let (typicality, evaluated) = match &job.out {
            Some(out) => {
                self.save_model(out, &model.valid(), &history, (evaluated, &calibration))?
            }
            None => (None, evaluated),
        };
        if !job.final_checkpoint {
            // The model is safe on disk: the snapshot kept for a failed save is not needed.
            writer.discard();
        }
        let warning = match writer.flush(ctx.emit) {
            Ok(()) => None,
            Err(e) if job.out.is_some() => Some(format!(
                "the model is saved, but its last checkpoint could not be written ({e}): a \
                 later run cannot add epochs to it"
            )),
            Err(e) => return Err(e),
        };
        Ok(Outcome::Finished(Box::new(RunSummary {
            epochs: config.epochs,
            validation: evaluated,
            history,
            feature_secs: if pass.misses > 0 { pass.secs } else { 0.0 },
            feature_pass_secs: pass.secs,
            cache_hits: pass.hits,
            cache_misses: pass.misses,
            skipped: pass.skipped,
            model: job.out.clone(),
            warning,
            calibration,
            typicality,
        })))
    }

    /// Saves the model at `out` (atomically) with its history, its last validation pass (with
    /// calibrated confidences, each photo judged by the training photos' features), its
    /// temperature and its training photos' features; returns what those features say and the
    /// validation pass as saved.
    fn save_model(
        &self,
        out: &std::path::Path,
        model: &Vgg16,
        history: &[EpochMetrics],
        (evaluated, calibration): (EvaluatedImages, &Result<Calibration, String>),
    ) -> Result<(Option<TypicalitySummary>, EvaluatedImages), String> {
        let epochs = history.last().map_or(0, |m| m.epoch);
        let mut header = self.identity.header(history, epochs);
        let root = &self.job.dataset.train_dir;
        let typicality = record::training_features(self.ctx, model, (&self.train, root));
        let evaluated = record::judged(evaluated, typicality.as_ref());
        header.validation = Some(evaluated.clone());
        header.calibration = calibration.as_ref().ok().cloned();
        bundle::save_model(out, &header, model, typicality.as_ref()).map_err(|e| e.to_string())?;
        Ok((typicality.map(|t| t.summary), evaluated))
    }

    /// Ends a stopped run after `epochs_done` epochs: its last checkpoint is written, and the
    /// model of the last epoch this run finished, if it finished one, is saved at `out`, so
    /// that what the run shows is what it leaves.
    fn stopped(
        &self,
        writer: &mut CheckpointWriter,
        (finished, history, evaluated): (Option<Vgg16>, &[EpochMetrics], Option<EvaluatedImages>),
        epochs_done: usize,
    ) -> Result<Outcome, String> {
        let job = self.job;
        writer.flush(self.ctx.emit)?;
        let model = match (finished, evaluated, &job.out) {
            (Some(model), Some(evaluated), Some(out)) => {
                let calibrated = record::calibrated(self.identity.classes, evaluated);
                self.save_model(out, &model, history, (calibrated.0, &calibrated.1))?;
                Some(out.clone())
            }
            _ => None,
        };
        Ok(Outcome::Stopped {
            epochs_done,
            checkpoint: job.checkpoint.clone().filter(|p| p.is_file()),
            model,
        })
    }

    /// One epoch's training batches, in an order shuffled from the seed; `None` when stopped.
    fn train_epoch(
        &self,
        mut model: Vgg16,
        optim: &mut ModuleOptimizer,
        writer: &mut CheckpointWriter,
        epoch: usize,
        lr: f64,
        step: &mut usize,
    ) -> Result<(Vgg16, Option<EpochTraining>), String> {
        let (ctx, config) = (self.ctx, self.ctx.config);
        let started = Instant::now();
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        SplitMix64(derive_seed(config.seed, epoch, SHUFFLE_STREAM, 0)).shuffle(&mut order);
        // The epoch begins now, before its first batch (a deeper stage's takes seconds).
        ctx.progress(Phase::Training, epoch + 1, 0, self.train.len(), started);
        let mut dropout_rng = SplitMix64(derive_seed(config.seed, epoch, DROPOUT_STREAM, 0));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for chunk in order.chunks(config.batch_size.max(1)) {
            if ctx.stopped() {
                return Ok((model, None));
            }
            writer.poll(ctx.emit)?;
            let batch: Vec<&Sample> = chunk.iter().map(|&i| &self.train[i]).collect();
            let augment = config.augment.then_some((epoch, chunk));
            let views: Vec<View> = chunk
                .iter()
                .map(|&item| {
                    let mirror = config.mirror_views
                        && derive_seed(config.seed, epoch, MIRROR_STREAM, item) & 1 == 1;
                    if mirror { View::Mirror } else { View::Photo }
                })
                .collect();
            let out;
            (model, out) = self.stepper.step(
                ctx,
                model,
                optim,
                lr,
                &batch,
                (augment, &views),
                &mut dropout_rng,
            );
            let Some(out) = out else { continue };
            if !out.loss.is_finite() {
                return Err(format!(
                    "the loss became {} at epoch {}: lower the learning rate (now {})",
                    out.loss,
                    epoch + 1,
                    config.learning_rate
                ));
            }
            let b = out.labels.len();
            let batch_correct = rows(out.logits, self.identity.classes.len())
                .iter()
                .zip(&out.labels)
                .filter(|(p, l)| argmax(p) == **l)
                .count();
            loss_sum += out.loss * b as f64;
            correct += batch_correct;
            seen += b;
            *step += 1;
            ctx.emit.send(TrainEvent::Batch {
                epoch: epoch + 1,
                step: *step,
                loss: out.loss,
                accuracy: batch_correct as f64 / b as f64,
            });
            ctx.progress(Phase::Training, epoch + 1, seen, self.train.len(), started);
        }
        let trained = EpochTraining {
            loss: loss_sum / seen.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
        };
        Ok((model, Some(trained)))
    }

    /// The validation pass: probabilities for every validation image, then every metric.
    fn evaluate(&self, model: &Vgg16, epoch: usize) -> Result<EvaluatedImages, String> {
        let ctx = self.ctx;
        let classes = self.identity.classes;
        let frozen_convs = ctx.config.trainable.frozen_convs();
        let started = Instant::now();
        // The validation's batches share the frozen base's buffers (`model::buffers`).
        let _held = ctx.frozen.hold_buffers();
        let total = self.valid.len();
        let mut probs = Vec::with_capacity(total);
        let mut labels = Vec::with_capacity(total);
        let mut paths = Vec::with_capacity(total);
        let refs: Vec<&Sample> = self.valid.iter().collect();
        // Validation predicts the way the saved model will by default: with the test-time
        // augmentation, each photo is the mean of its views (mirror image, other square). The
        // head runs in f32 here; prediction with a bf16 base runs torchvision's wide layers in
        // bf16 (`model::dense`), within 0.01 of this.
        let views = View::predicted(ctx.config.mirror_tta, ctx.config.square_tta);
        let channels = ctx.model_config.conv_channels()[12].max(1);
        let (mut features, mut mirror_features) = (Vec::with_capacity(total), Vec::new());
        // A view's probabilities; for the photo as it is, also its pooled block-5 features.
        let mut probabilities = |chunk: &[&Sample], view: View| {
            let views = vec![view; chunk.len()];
            let (input, kept) = ctx.batch_input(chunk, None, &views, &ctx.device);
            let probs = input.map(|input| {
                let pooled = if frozen_convs >= 13 {
                    input
                } else {
                    model.forward_convs(input, frozen_convs..13)
                };
                let keep = match view {
                    View::Photo => Some(&mut features),
                    View::Mirror => Some(&mut mirror_features),
                    _ => None,
                };
                if let Some(keep) = keep {
                    let averaged = global_average(&to_host(pooled.clone()));
                    keep.extend(averaged.chunks_exact(channels).map(<[f32]>::to_vec));
                }
                to_host(softmax(model.forward_head_flat(pooled.flatten(1, 3)), 1))
            });
            (probs, kept)
        };
        for chunk in refs.chunks(ctx.config.batch_size.max(1)) {
            let (Some(p), kept) = probabilities(chunk, View::Photo) else {
                continue;
            };
            let mut of_views = vec![p];
            for &view in &views[1..] {
                match probabilities(chunk, view) {
                    (Some(q), view_kept) if view_kept == kept => of_views.push(q),
                    _ => {
                        return Err(
                            "a validation photo's mirror image or other square is missing from \
                             the feature cache"
                                .into(),
                        );
                    }
                }
            }
            let p = crate::metrics::mean_of_views(of_views);
            probs.extend(rows(p, classes.len()));
            labels.extend(kept.iter().map(|&i| chunk[i].label));
            paths.extend(kept.iter().map(|&i| chunk[i].path.clone()));
            ctx.progress(Phase::Validating, epoch, labels.len(), total, started);
        }
        let mut evaluated = EvaluatedImages::new(classes, paths, labels, probs);
        evaluated.features = features;
        if mirror_features.len() == evaluated.features.len() {
            evaluated.mirror_features = mirror_features;
        }
        Ok(evaluated)
    }
}

fn rows(values: Vec<f32>, width: usize) -> Vec<Vec<f32>> {
    values.chunks(width.max(1)).map(<[f32]>::to_vec).collect()
}
