//! Fine-tuning: the run's configuration, the loop on a worker thread with its events,
//! checkpoints and resume, the feature cache, and the metrics of an evaluation pass.
//!
//! Knows nothing of egui: the window and the CLI both drive a [`TrainingRun`] and read its
//! [`TrainEvent`]s.

pub mod cache;
pub mod config;
pub mod host_head;
pub mod metrics;
pub mod optim;
pub mod run;

pub use config::{LrSchedule, OptimizerKind, TrainConfig, Trainable};
pub use metrics::Evaluation;
pub use run::{EpochMetrics, Phase, RunSummary, TrainEvent, TrainJob, TrainingRun};
