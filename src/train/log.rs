//! A run's events turned into what people read: the lines the CLI prints and the window shows
//! (one wording for both), and the curves and progress the window draws. Knows nothing of egui.

use std::path::PathBuf;

use super::events::{EpochMetrics, Phase, PhaseProgress, RunSummary, TrainEvent};

/// Everything a run's events said, as the window keeps it.
#[derive(Clone, Debug, Default)]
pub struct TrainLog {
    /// The class names.
    pub classes: Vec<String>,
    /// What the run said when it started ([`started_lines`]).
    pub info: Vec<String>,
    /// Photos a step.
    pub batch_size: usize,
    /// Optimizer steps per epoch (for the charts' x axis in epochs), once the run started.
    pub steps_per_epoch: usize,
    /// Epochs the run was asked for.
    pub total_epochs: usize,
    /// (epoch, loss) of every batch.
    pub batch_loss: Vec<[f64; 2]>,
    /// (epoch, accuracy) of every batch.
    pub batch_accuracy: Vec<[f64; 2]>,
    /// Every finished epoch.
    pub epochs: Vec<EpochMetrics>,
    /// The phase in progress.
    pub progress: Option<PhaseProgress>,
    /// Photos left out, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// How the run ended, in words.
    pub outcome: Option<String>,
    /// Why the run failed.
    pub failed: Option<String>,
}

impl TrainLog {
    /// A log for a run of `total_epochs` epochs of `batch_size` photos a step.
    pub fn new(total_epochs: usize, batch_size: usize) -> Self {
        Self {
            total_epochs,
            batch_size,
            ..Self::default()
        }
    }

    /// The log of a model's saved history (a model opened after a restart shows its curves).
    pub fn from_history(history: Vec<EpochMetrics>) -> Self {
        Self {
            total_epochs: history.len(),
            outcome: (!history.is_empty())
                .then(|| format!("The model's training: {} epoch(s)", history.len())),
            epochs: history,
            ..Self::default()
        }
    }

    /// Takes in one event. Returns the summary when the run finished.
    pub fn apply(&mut self, event: TrainEvent) -> Option<Box<RunSummary>> {
        match event {
            TrainEvent::Started {
                ref classes,
                train,
                ref history,
                ..
            } => {
                self.steps_per_epoch = train.div_ceil(self.batch_size.max(1)).max(1);
                self.info = started_lines(&event);
                self.classes.clone_from(classes);
                // A resumed run's curves go on from the epochs before the stop.
                self.epochs.clone_from(history);
            }
            TrainEvent::Progress(progress) => self.progress = Some(progress),
            TrainEvent::Batch {
                step,
                loss,
                accuracy,
                ..
            } => {
                let x = step as f64 / self.steps_per_epoch.max(1) as f64;
                self.batch_loss.push([x, loss]);
                self.batch_accuracy.push([x, accuracy]);
            }
            TrainEvent::Epoch(m) => self.epochs.push(m),
            TrainEvent::CheckpointSaved { .. } => {}
            TrainEvent::Skipped { path, reason } => self.skipped.push((path, reason)),
            TrainEvent::Finished(summary) => {
                self.outcome = Some(finished_line(&summary));
                self.progress = None;
                return Some(summary);
            }
            TrainEvent::Stopped {
                epochs_done,
                checkpoint,
            } => {
                self.outcome = Some(stopped_line(epochs_done, checkpoint.is_some()));
                self.progress = None;
            }
            TrainEvent::Failed { reason } => {
                self.failed = Some(reason);
                self.progress = None;
            }
        }
        None
    }

    /// The phase in progress in one line: "Epoch 2 of 10: 320/1600 — 410.2 images/s — 3s left".
    pub fn progress_line(&self) -> Option<String> {
        let p = self.progress?;
        let name = match p.phase {
            Phase::Features => "Computing frozen features".to_owned(),
            Phase::Training => format!("Epoch {} of {}", p.epoch, self.total_epochs),
            Phase::Validating => "Validating".to_owned(),
        };
        Some(format!(
            "{name}: {}/{} — {:.1} images/s — {} left",
            p.done,
            p.total,
            p.images_per_sec,
            duration_text(p.eta_secs)
        ))
    }
}

/// What a run says when it starts, one line each: photos, device, feature cache, weights.
pub fn started_lines(event: &TrainEvent) -> Vec<String> {
    let TrainEvent::Started {
        classes,
        train,
        valid,
        device,
        cache,
        first_epoch,
        weights,
        ..
    } = event
    else {
        return Vec::new();
    };
    let mut lines = vec![
        format!("classes: {}", classes.join(", ")),
        format!("photos: {train} training, {valid} validation"),
        format!("device: {device}"),
        format!("feature cache: {cache}"),
    ];
    lines.extend(weights.iter().map(|w| format!("weights: {w}")));
    if *first_epoch > 1 {
        lines.push(format!("resuming at epoch {first_epoch}"));
    }
    lines
}

/// One finished epoch in a line.
pub fn epoch_line(m: &EpochMetrics) -> String {
    format!(
        "epoch {:>3}: train loss {:.4} acc {:.2}% | valid loss {:.4} acc {:.2}% | {:.1} s",
        m.epoch,
        m.train_loss,
        100.0 * m.train_accuracy,
        m.valid_loss,
        100.0 * m.valid_accuracy,
        m.secs
    )
}

/// How a finished run did.
pub fn finished_line(summary: &RunSummary) -> String {
    format!(
        "Finished: validation accuracy {:.2}%, log loss {:.4} ({} images)",
        100.0 * summary.validation.evaluation.accuracy,
        summary.validation.evaluation.log_loss,
        summary.validation.evaluation.count
    )
}

/// What a stopped run left.
pub fn stopped_line(epochs_done: usize, has_checkpoint: bool) -> String {
    format!(
        "Stopped after {epochs_done} epoch(s).{}",
        if has_checkpoint {
            " Resume continues from the last checkpoint."
        } else {
            " No checkpoint was written yet."
        }
    )
}

/// The short name of a phase for a progress bar: "features", "epoch 3", "validating".
pub fn phase_label(phase: Phase, epoch: usize) -> String {
    match phase {
        Phase::Features => "features".to_owned(),
        Phase::Training => format!("epoch {epoch}"),
        Phase::Validating => "validating".to_owned(),
    }
}

/// A duration for people: "42s", "3m07s", "1h05m"; "–" when unknown.
pub fn duration_text(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".into();
    }
    if secs < 9.95 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(n: usize) -> EpochMetrics {
        EpochMetrics {
            epoch: n,
            train_loss: 0.5,
            train_accuracy: 0.75,
            valid_loss: 0.25,
            valid_accuracy: 0.875,
            learning_rate: 1e-4,
            secs: 1.25,
        }
    }

    #[test]
    fn events_become_the_lines_and_curves_people_see() {
        let mut log = TrainLog::new(3, 4);
        log.apply(TrainEvent::Started {
            classes: vec!["cat".into(), "dog".into()],
            train: 10,
            valid: 2,
            device: "CPU".into(),
            cache: "on".into(),
            first_epoch: 2,
            weights: vec!["13 convolutions from ImageNet".into()],
            history: vec![epoch(1)],
        });
        assert_eq!(
            log.epochs,
            [epoch(1)],
            "a resumed run's curves keep its past epochs"
        );
        assert_eq!(log.steps_per_epoch, 3, "10 photos in batches of 4");
        assert_eq!(
            log.info,
            [
                "classes: cat, dog",
                "photos: 10 training, 2 validation",
                "device: CPU",
                "feature cache: on",
                "weights: 13 convolutions from ImageNet",
                "resuming at epoch 2",
            ]
        );
        log.apply(TrainEvent::Batch {
            epoch: 2,
            step: 6,
            loss: 0.5,
            accuracy: 1.0,
        });
        assert_eq!(log.batch_loss, [[2.0, 0.5]]);
        log.apply(TrainEvent::Progress(PhaseProgress {
            phase: Phase::Training,
            epoch: 2,
            done: 8,
            total: 10,
            images_per_sec: 4.0,
            eta_secs: 65.0,
        }));
        assert_eq!(
            log.progress_line().as_deref(),
            Some("Epoch 2 of 3: 8/10 — 4.0 images/s — 1m05s left")
        );
        log.apply(TrainEvent::Epoch(epoch(2)));
        assert_eq!(log.epochs.len(), 2);
        assert_eq!(
            epoch_line(&log.epochs[1]),
            "epoch   2: train loss 0.5000 acc 75.00% | valid loss 0.2500 acc 87.50% | 1.2 s"
        );
        assert!(
            log.apply(TrainEvent::Stopped {
                epochs_done: 2,
                checkpoint: None
            })
            .is_none()
        );
        assert_eq!(log.progress, None);
        assert_eq!(
            log.outcome.as_deref(),
            Some("Stopped after 2 epoch(s). No checkpoint was written yet.")
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_text(42.4), "42s");
        assert_eq!(duration_text(0.44), "0.4s", "a cached epoch is not 0s");
        assert_eq!(duration_text(187.0), "3m07s");
        assert_eq!(duration_text(3900.0), "1h05m");
        assert_eq!(duration_text(f64::INFINITY), "–");
        assert_eq!(phase_label(Phase::Training, 3), "epoch 3");
    }
}
