//! What a run is given ([`TrainJob`]) and how it answers: the events it sends ([`Emitter`]) and
//! how it ended ([`Outcome`]). Below both the worker thread and the run, which each read it.

use std::path::PathBuf;
use std::time::Duration;

use super::config::TrainConfig;
use super::events::{RunSummary, TrainEvent};
use crate::data::Dataset;

/// One training run's inputs.
#[derive(Clone, Debug)]
pub struct TrainJob {
    /// The scanned photos.
    pub dataset: Dataset,
    /// The base weights; `None` starts from seeded random weights (tests, from-scratch runs).
    pub weights: Option<PathBuf>,
    /// A trained model (`.vggtune`) to continue from as a new stage (e.g. block 5 at a lower
    /// learning rate after the head): its weights, classes and history; `weights` is not used.
    /// Its epochs come first on the run's time axis and the run adds `config.epochs` more.
    pub from_model: Option<PathBuf>,
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
    /// With `resume`, take every setting from the checkpoint (what trains, head, rate,
    /// epochs, views, the stage it belongs to): the window's Resume, which continues the
    /// stopped run as it was whatever its settings say now. Without it the run's `config` is
    /// used and the checkpoint must match it (the CLI, whose flags may add epochs).
    pub resume_as_saved: bool,
    /// The feature cache's folder (default: the platform cache).
    pub cache_root: Option<PathBuf>,
    /// Stop, as the Stop button does, once this many epochs (counted across resumes) are done
    /// and checkpointed; `resume` continues later. For scripts with a time budget, and for
    /// tests that need the stop at an exact epoch.
    pub stop_after: Option<usize>,
}

/// Sends a run's events and wakes the listener.
pub(super) struct Emitter {
    pub(super) tx: std::sync::mpsc::Sender<TrainEvent>,
    pub(super) wake: Box<dyn Fn() + Send>,
}

impl Emitter {
    pub(super) fn send(&self, event: TrainEvent) {
        // A closed receiver means nobody listens any more; the run goes on to its end or stop.
        let _ = self.tx.send(event);
        (self.wake)();
    }
}

/// How a run ended, when it did not fail.
pub(super) enum Outcome {
    Finished(Box<RunSummary>),
    Stopped {
        epochs_done: usize,
        checkpoint: Option<PathBuf>,
        model: Option<PathBuf>,
    },
}
