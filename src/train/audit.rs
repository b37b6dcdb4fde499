//! Which training photos look mislabelled: K heads trained out-of-fold on the cached features
//! (each photo is judged by a head that never saw it), then every photo whose given label gets
//! a low out-of-fold probability, most suspicious first.
//!
//! Each fold is an ordinary training run ([`TrainingRun`]) of the head on the frozen base with
//! its held-out fold as the validation photos, so the feature cache, the device choice and the
//! fast head step are the same as a run's: the first fold computes the features of every photo,
//! the others read them from the cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::config::{TrainConfig, Trainable};
use super::events::TrainEvent;
use super::job::TrainJob;
use super::worker::TrainingRun;
use crate::data::{Dataset, ImageEntry, Split};
use crate::metrics::{EvaluatedImages, Evaluation, argmax};

/// Folds when none is asked for.
pub const DEFAULT_FOLDS: usize = 5;
/// A photo is listed when its out-of-fold probability of its own label is below this: a head
/// that never saw it prefers another class.
pub const SUSPECT_BELOW: f32 = 0.5;

/// Below this out-of-fold accuracy the heads' doubts say little about the labels.
pub const TRUSTED_ACCURACY: f64 = 0.8;

/// A training photo whose label looks wrong.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Suspect {
    /// The photo.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// Its path in the dataset.
    pub rel: String,
    /// The class its folder or name gives it (index into [`Audit::classes`]).
    pub given: usize,
    /// The class the out-of-fold head gives it.
    pub looks_like: usize,
    /// The out-of-fold probability of `given`.
    pub given_probability: f32,
    /// The out-of-fold probability of `looks_like`.
    pub looks_like_probability: f32,
}

/// What an audit found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Audit {
    /// The dataset's classes.
    pub classes: Vec<String>,
    /// Folds trained.
    pub folds: usize,
    /// The out-of-fold evaluation of every photo (accuracy, log loss, confusion).
    pub evaluation: Evaluation,
    /// The photos whose label looks wrong, most suspicious (lowest probability of their given
    /// label) first; photos whose label a person checked and kept earlier are left out.
    pub suspects: Vec<Suspect>,
    /// How many doubted photos are not listed because they were kept earlier.
    pub kept_earlier: usize,
    /// The side of the photos the heads saw, in pixels.
    pub input_size: u32,
    /// The base weights' file name ("random weights" without one).
    pub weights: String,
    /// Seconds the audit took.
    pub secs: f64,
    /// Every photo judged, with its pooled block-5 features (from the folds' validation
    /// passes, so from the feature cache): what Check data's other checks read. Not printed.
    #[serde(skip)]
    pub features: Vec<(PathBuf, Vec<f32>)>,
    /// The same of each photo's mirror image, in the same order (empty when a fold did not
    /// judge mirror images).
    #[serde(skip)]
    pub mirror_features: Vec<Vec<f32>>,
}

impl Audit {
    /// Warnings when the heads' doubts say less than they seem to: too often wrong, or shown
    /// photos smaller than the size ImageNet's weights were made for.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let accuracy = self.evaluation.accuracy;
        if accuracy < TRUSTED_ACCURACY {
            warnings.push(format!(
                "the heads got only {:.1}% of the photos right without having seen them, so their \
                 doubts say little about the labels: use ImageNet weights, more photos a class, \
                 or more epochs",
                100.0 * accuracy
            ));
        }
        if self.input_size < IMAGENET_SIZE {
            warnings.push(format!(
                "the photos were seen at {} px, smaller than the {IMAGENET_SIZE} px ImageNet's \
                 weights were made for: expect sure-looking doubts about photos that are right \
                 (use the input size the weights were made for)",
                self.input_size
            ));
        }
        warnings
    }

    /// How the labels were judged, in one line (without the count: Check data lists a photo
    /// once, under its plainest reason).
    pub fn judged_by(&self) -> String {
        let e = &self.evaluation;
        format!(
            "{} heads on {} at {} px with {}: out-of-fold accuracy {:.2}%, log loss {:.4}",
            self.folds,
            crate::words::photos(e.count),
            self.input_size,
            self.weights,
            100.0 * e.accuracy,
            e.log_loss
        )
    }

    /// What the audit used and found, in one line.
    pub fn summary(&self) -> String {
        let e = &self.evaluation;
        let kept = match self.kept_earlier {
            0 => String::new(),
            1 => " (1 more was kept earlier)".to_owned(),
            n => format!(" ({n} more were kept earlier)"),
        };
        format!(
            "{} at {} px with {}: out-of-fold accuracy {:.2}%, log loss {:.4}; {} \
             mislabelled{kept}",
            crate::words::photos(e.count),
            self.input_size,
            self.weights,
            100.0 * e.accuracy,
            e.log_loss,
            match self.suspects.len() {
                1 => "1 looks".to_owned(),
                n => format!("{n} look"),
            }
        )
    }
}

/// The input side ImageNet's VGG16 weights were trained at.
const IMAGENET_SIZE: u32 = 224;

/// What to audit and how.
#[derive(Clone)]
pub struct AuditJob {
    /// The scanned photos.
    pub dataset: Dataset,
    /// The base weights (`None`: seeded random weights, for tests).
    pub weights: Option<PathBuf>,
    /// The head's training; the base stays frozen (the trainable part is forced to the head,
    /// augmentation off) so that the features come from the cache.
    pub config: TrainConfig,
    /// How many folds.
    pub folds: usize,
    /// The feature cache's folder (default: the platform cache).
    pub cache_root: Option<PathBuf>,
    /// A saved model whose base (and head) the runs start from, instead of `weights`.
    pub from_model: Option<PathBuf>,
}

/// Runs `job`'s folds one after the other on this thread, handing each fold's training events
/// to `on_event(fold, folds, event)`. `Ok(None)` when `stop` was set.
pub fn run(
    job: AuditJob,
    stop: &Arc<AtomicBool>,
    mut on_event: impl FnMut(usize, usize, &TrainEvent),
) -> Result<Option<Audit>, String> {
    let started = std::time::Instant::now();
    let dataset = &job.dataset;
    if dataset.classes.len() < 2 {
        return Err("a label audit needs at least two classes".into());
    }
    crate::limits::check("folds", job.folds, &crate::limits::FOLDS)?;
    let config = fold_config(&job.config);
    let splits = Split::folds(dataset, job.folds, config.seed);
    let folds = splits.len();
    if dataset.images.len() < folds {
        return Err(format!(
            "a {folds}-fold audit needs at least {folds} photos; the folder has {}",
            dataset.images.len()
        ));
    }
    let (mut paths, mut labels, mut probs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut features, mut mirror_features) = (Vec::new(), Vec::new());
    let mut mirrors_complete = true;
    for (fold, split) in splits.into_iter().enumerate() {
        let Some(held) = run_fold(&job, &config, split, stop, |event| {
            on_event(fold, folds, event);
        })
        .map_err(|e| format!("fold {} of {folds}: {e}", fold + 1))?
        else {
            return Ok(None);
        };
        if held.features.len() == held.images.len() {
            features.extend(held.images.iter().cloned().zip(held.features));
            mirrors_complete &= held.mirror_features.len() == held.images.len();
            mirror_features.extend(held.mirror_features);
        }
        paths.extend(held.images);
        labels.extend(held.labels);
        probs.extend(held.probs);
    }
    let kept = crate::data::curate::kept(&dataset.train_dir)?;
    let mut suspects = suspects(dataset, &paths, &labels, &probs);
    let listed = suspects.len();
    suspects.retain(|s| !kept.contains(&s.rel));
    Ok(Some(Audit {
        classes: dataset.classes.clone(),
        folds,
        evaluation: EvaluatedImages::new(&dataset.classes, paths, labels, probs).evaluation,
        kept_earlier: listed - suspects.len(),
        input_size: config.input_size,
        weights: job
            .weights
            .as_deref()
            .and_then(std::path::Path::file_name)
            .map_or_else(
                || "random weights".to_owned(),
                |n| n.to_string_lossy().into_owned(),
            ),
        suspects,
        secs: started.elapsed().as_secs_f64(),
        mirror_features: if mirrors_complete && mirror_features.len() == features.len() {
            mirror_features
        } else {
            Vec::new()
        },
        features,
    }))
}

/// The pooled block-5 features (photo and mirror image) and the probabilities of `photos`, from
/// one head run on the cache: `train` its training photos (one epoch at `learning_rate`: the
/// head is a by-product), `photos` its validation photos. The photos' frozen features are
/// computed once and cached, as a training run's are. `None` when stopped.
pub fn pass_over(
    job: &AuditJob,
    train: Vec<ImageEntry>,
    photos: Vec<ImageEntry>,
    learning_rate: f64,
    stop: &Arc<AtomicBool>,
    on_event: impl FnMut(&TrainEvent),
) -> Result<Option<EvaluatedImages>, String> {
    let mut config = fold_config(&job.config);
    config.epochs = 1;
    config.learning_rate = learning_rate;
    let split = Split {
        train,
        valid: photos,
        explicit: true,
    };
    let Some(held) = run_fold(job, &config, split, stop, on_event)? else {
        return Ok(None);
    };
    if held.features.len() != held.images.len() {
        return Err("the photos' features were not kept (the feature cache is off)".into());
    }
    Ok(Some(held))
}

/// A fold's settings from the job's: the head alone, on the cached features.
fn fold_config(config: &TrainConfig) -> TrainConfig {
    let mut config = config.clone();
    config.trainable = Trainable::Head;
    config.augment = false;
    // The heads judge each photo by itself and its mirror image, both cached for every photo
    // by the first fold (and by a training run with mirror views): the other square's views,
    // cached only for a run's validation photos, would be computed again in every fold.
    config.square_tta = false;
    config
}

/// Trains one fold's head (on `split.train`, validated on `split.valid`) and returns its
/// held-out photos' probabilities; `None` when stopped.
fn run_fold(
    job: &AuditJob,
    config: &TrainConfig,
    split: Split,
    stop: &Arc<AtomicBool>,
    mut on_event: impl FnMut(&TrainEvent),
) -> Result<Option<EvaluatedImages>, String> {
    let fold_job = TrainJob {
        dataset: Dataset {
            images: split.train,
            explicit_valid: Some(split.valid),
            ..job.dataset.clone()
        },
        weights: job.weights.clone(),
        from_model: job.from_model.clone(),
        config: config.clone(),
        out: None,
        checkpoint: None,
        checkpoint_interval: std::time::Duration::ZERO,
        final_checkpoint: false,
        resume: false,
        resume_as_saved: false,
        cache_root: job.cache_root.clone(),
        stop_after: None,
    };
    // A fold's run has a stop flag of its own (dropping a run sets it), raised from the audit's
    // after any event.
    let fold_stop = Arc::new(AtomicBool::new(false));
    let (raise, asked) = (fold_stop.clone(), stop.clone());
    let run = TrainingRun::start_with_stop(fold_job, fold_stop, move || {
        if asked.load(Ordering::Relaxed) {
            raise.store(true, Ordering::Relaxed);
        }
    })
    .map_err(|e| format!("cannot start the training thread: {e}"))?;
    let mut last = None;
    while let Some(event) = run.next_event() {
        on_event(&event);
        last = Some(event);
    }
    match last {
        Some(TrainEvent::Finished(summary)) if !stop.load(Ordering::Relaxed) => {
            Ok(Some(summary.validation))
        }
        Some(TrainEvent::Finished(_) | TrainEvent::Stopped { .. }) => Ok(None),
        Some(TrainEvent::Failed { reason }) => Err(reason),
        _ => Err("the run ended without a word".into()),
    }
}

/// The photos whose given label has an out-of-fold probability under [`SUSPECT_BELOW`] while
/// another class is likelier, most suspicious first.
fn suspects(
    dataset: &Dataset,
    paths: &[PathBuf],
    labels: &[usize],
    probs: &[Vec<f32>],
) -> Vec<Suspect> {
    let rel_of: std::collections::HashMap<&std::path::Path, &str> = dataset
        .images
        .iter()
        .map(|i| (i.path.as_path(), i.rel.as_str()))
        .collect();
    let mut suspects: Vec<Suspect> = paths
        .iter()
        .zip(labels)
        .zip(probs)
        .filter_map(|((path, &given), p)| {
            let given_probability = p.get(given).copied()?;
            let looks_like = argmax(p);
            (given_probability < SUSPECT_BELOW && looks_like != given).then(|| Suspect {
                path: path.clone(),
                rel: rel_of
                    .get(path.as_path())
                    .map_or_else(|| path.to_string_lossy().into_owned(), |r| (*r).to_owned()),
                given,
                looks_like,
                given_probability,
                looks_like_probability: p[looks_like],
            })
        })
        .collect();
    suspects.sort_by(|a, b| {
        a.given_probability
            .total_cmp(&b.given_probability)
            .then_with(|| a.rel.cmp(&b.rel))
    });
    suspects
}
