//! Fine-tuning: the run's configuration, the loop on a worker thread with its events,
//! checkpoints and resume, the feature cache, and the metrics of an evaluation pass.
//!
//! Rooms: `config` (settings and their limits), `events` (what a run reports), `worker` (the
//! thread, stop, panics), `start` (fresh, from weights, or resumed: which settings a checkpoint
//! fixes), `features` (the feature pass and where a batch's input comes from), `stepper` (the
//! hand-written host step or autodiff, one cross-entropy), `checkpoint` (the writer thread),
//! `run` (the orchestration, top to bottom), `log` (events as the lines and curves people
//! see, for the CLI and the window alike), `audit` (out-of-fold heads that find the photos whose
//! label looks wrong), plus `cache`, `host_head`, `optim` and `metrics`.
//!
//! Knows nothing of egui: the window and the CLI both drive a [`TrainingRun`] and read its
//! [`TrainEvent`]s.

pub mod audit;
pub mod cache;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod events;
mod features;
pub mod host_head;
mod job;
pub mod log;
pub mod optim;
mod record;
mod run;
mod seeds;
mod start;
mod stepper;
pub mod worker;

/// The metrics of an evaluation live below training (a model file holds one), where prediction
/// reads them too.
pub use crate::metrics;
pub use checkpoint::{DEFAULT_CHECKPOINT_INTERVAL, checkpoint_path_for};
pub use config::{LrSchedule, OptimizerKind, TrainConfig, Trainable};
pub use events::{EpochMetrics, Phase, PhaseProgress, RunSummary, TrainEvent};
pub use job::TrainJob;
pub use log::TrainLog;
pub use metrics::Evaluation;
pub use worker::TrainingRun;
