//! What a training run reports: its events, the metrics of an epoch and the summary of a
//! finished run. Serialisable, so the CLI can print them as JSON and the window draw them.

use std::path::PathBuf;

use crate::metrics::EvaluatedImages;

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
    /// The last validation pass, photo by photo.
    pub validation: EvaluatedImages,
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
    #[serde(serialize_with = "crate::fsutil::lossy::option")]
    pub model: Option<PathBuf>,
    /// What went wrong after the model was saved (its last checkpoint could not be written):
    /// the model is complete, so the run still finished.
    pub warning: Option<String>,
    /// The temperature fitted on the validation photos and what it did, or why none was.
    pub calibration: Result<crate::calibration::Calibration, String>,
    /// What the model keeps of its training photos' features for the *none of these* verdict
    /// (`None` when no model was saved, or with too few training photos).
    pub typicality: Option<crate::typical::TypicalitySummary>,
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

/// Where a phase stands now.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PhaseProgress {
    /// The phase.
    pub phase: Phase,
    /// 1-based epoch (0 for the feature pass).
    pub epoch: usize,
    /// Images done.
    pub done: usize,
    /// Images in the phase.
    pub total: usize,
    /// Throughput so far.
    pub images_per_sec: f64,
    /// Estimated seconds left.
    pub eta_secs: f64,
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
        /// The epochs trained before a resume (empty for a fresh start), so the curves go on
        /// from where they stopped.
        history: Vec<EpochMetrics>,
        /// The settings the run trains with, as it was asked or as the checkpoint it resumes
        /// says; `epochs` is the epoch the run ends at (a stage's come after the model's).
        config: Box<super::TrainConfig>,
        /// The epoch this stage began at: the epochs of the model it continues (0 for a
        /// first stage).
        stage_start: usize,
        /// True when it continues a stopped run from its checkpoint.
        resumed: bool,
    },
    /// Progress within a phase.
    Progress(PhaseProgress),
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
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        path: PathBuf,
        /// After which epoch (1-based).
        epoch: usize,
    },
    /// An image was left out because it could not be decoded.
    Skipped {
        /// The image.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The run finished.
    Finished(Box<RunSummary>),
    /// The run was stopped by the user.
    Stopped {
        /// Epochs completed (counting the continued model's and any before a resume).
        epochs_done: usize,
        /// The last good checkpoint.
        #[serde(serialize_with = "crate::fsutil::lossy::option")]
        checkpoint: Option<PathBuf>,
        /// Where the model of the last finished epoch was saved: a run that finished an epoch
        /// before its stop saves it (at the run's `out`), so the model in use is the one its
        /// curves show; `None` when no epoch finished in this run.
        #[serde(serialize_with = "crate::fsutil::lossy::option")]
        model: Option<PathBuf>,
    },
    /// The run failed.
    Failed {
        /// Why, in words.
        reason: String,
    },
}
