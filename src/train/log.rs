//! A run's events turned into what people read: the lines the CLI prints and the window shows
//! (one wording for both), the curves and progress the window draws, and the time left in the
//! whole run. Knows nothing of egui.

use std::path::PathBuf;
use std::time::Instant;

use super::config::TrainConfig;
use super::events::{EpochMetrics, Phase, PhaseProgress, RunSummary, TrainEvent};

/// Everything a run's events said, as the window keeps it.
#[derive(Clone, Debug, Default)]
pub struct TrainLog {
    /// The class names.
    pub classes: Vec<String>,
    /// What the run said when it started ([`started_lines`]).
    pub info: Vec<String>,
    /// The settings the run trains with (from its first event: a resumed run's are the
    /// checkpoint's), once it started.
    pub config: Option<TrainConfig>,
    /// The epoch its stage began at (the continued model's epochs; 0 for a first stage).
    pub stage_start: usize,
    /// The epoch (0-based) this run started at: after the model's and any before a resume.
    pub first_epoch: usize,
    /// Optimizer steps per epoch (for the charts' x axis in epochs), once the run started.
    pub steps_per_epoch: usize,
    /// The epoch the run ends at, once it started.
    pub total_epochs: usize,
    /// (epoch, loss) of every batch.
    pub batch_loss: Vec<[f64; 2]>,
    /// (epoch, accuracy) of every batch.
    pub batch_accuracy: Vec<[f64; 2]>,
    /// Every finished epoch (the continued model's and a resumed run's first).
    pub epochs: Vec<EpochMetrics>,
    /// The phase in progress, and when the window heard of it.
    pub progress: Option<PhaseProgress>,
    progress_at: Option<Instant>,
    /// When this run's current epoch began, and the wall time of each epoch it finished.
    epoch_began: Option<Instant>,
    epoch_secs: Vec<f64>,
    /// When the feature pass began.
    features_began: Option<Instant>,
    /// The feature pass's wall time, once it is over.
    pub features_secs: Option<f64>,
    /// Photos left out, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// How the run ended, in words.
    pub outcome: Option<String>,
    /// Why the run failed.
    pub failed: Option<String>,
    /// What went wrong without failing the run.
    pub warning: Option<String>,
}

impl TrainLog {
    /// The log of a model's saved history (a model opened after a restart shows its curves).
    pub fn from_history(history: Vec<EpochMetrics>) -> Self {
        Self {
            total_epochs: history.len(),
            outcome: (!history.is_empty())
                .then(|| format!("The model's training: {}", epochs_text(history.len()))),
            epochs: history,
            ..Self::default()
        }
    }

    /// The epochs this run finished (not the continued model's, nor those before a resume).
    pub fn trained_here(&self) -> &[EpochMetrics] {
        let before = self.epochs.partition_point(|m| m.epoch <= self.first_epoch);
        &self.epochs[before..]
    }

    /// Takes in one event, heard at `now`. Returns the summary when the run finished.
    pub fn apply(&mut self, event: TrainEvent, now: Instant) -> Option<Box<RunSummary>> {
        match event {
            TrainEvent::Started {
                ref classes,
                train,
                ref history,
                ref config,
                stage_start,
                first_epoch,
                ..
            } => {
                self.steps_per_epoch = train.div_ceil(config.batch_size.max(1)).max(1);
                self.info = started_lines(&event);
                self.classes.clone_from(classes);
                self.total_epochs = config.epochs;
                self.stage_start = stage_start;
                self.first_epoch = first_epoch.saturating_sub(1);
                self.config = Some((**config).clone());
                // A resumed run's curves go on from the epochs before the stop.
                self.epochs.clone_from(history);
            }
            TrainEvent::Progress(progress) => {
                if progress.phase == Phase::Features {
                    self.features_began.get_or_insert(now);
                } else {
                    if let Some(began) = self.features_began.take() {
                        self.features_secs = Some(now.duration_since(began).as_secs_f64());
                    }
                    if self.epoch_began.is_none() {
                        self.epoch_began = Some(now);
                    }
                }
                self.progress = Some(progress);
                self.progress_at = Some(now);
            }
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
            TrainEvent::Epoch(m) => {
                if let Some(began) = self.epoch_began.take() {
                    self.epoch_secs
                        .push(now.duration_since(began).as_secs_f64());
                }
                // The next epoch begins now; after the last, the model is being saved.
                if m.epoch < self.total_epochs {
                    self.epoch_began = Some(now);
                }
                self.epochs.push(m);
            }
            TrainEvent::CheckpointSaved { .. } => {}
            TrainEvent::Skipped { path, reason } => self.skipped.push((path, reason)),
            TrainEvent::Finished(summary) => {
                self.outcome = Some(finished_line(&summary));
                self.warning.clone_from(&summary.warning);
                self.progress = None;
                return Some(summary);
            }
            TrainEvent::Stopped {
                epochs_done,
                ref checkpoint,
                ref model,
            } => {
                // The batches of the epoch the stop cut short are not the model's.
                let kept = |p: &[f64; 2]| p[0] <= epochs_done as f64 + 1e-9;
                self.batch_loss.retain(kept);
                self.batch_accuracy.retain(kept);
                let trained = self.trained_here().len();
                let cached = self
                    .config
                    .as_ref()
                    .is_some_and(TrainConfig::uses_feature_cache);
                self.outcome = Some(stopped_line(
                    (epochs_done, trained),
                    (checkpoint.is_some(), model.is_some(), cached),
                ));
                self.progress = None;
            }
            TrainEvent::Failed { reason } => {
                self.failed = Some(reason);
                self.progress = None;
            }
        }
        None
    }

    /// The phase in progress in one line: "Epoch 2 of 10: 320 of 1600 photos — 410.2 a second".
    pub fn progress_line(&self) -> Option<String> {
        let p = self.progress?;
        Some(format!(
            "{}: {} of {} photos — {:.1} a second",
            self.phase_words()?,
            p.done,
            p.total,
            p.images_per_sec
        ))
    }

    /// What the run does now, in a few words: "Features of the frozen layers", "Epoch 3 of 10",
    /// "Validating epoch 3".
    pub fn phase_words(&self) -> Option<String> {
        let p = self.progress?;
        Some(match p.phase {
            Phase::Features => "Features of the frozen layers".to_owned(),
            Phase::Training => format!("Epoch {} of {}", p.epoch, self.total_epochs),
            Phase::Validating => format!("Validating epoch {}", p.epoch),
        })
    }

    /// Seconds left in the phase in progress, counted down from when it was last heard of;
    /// `None` while unknown (before its first photo).
    pub fn phase_left(&self, now: Instant) -> Option<f64> {
        let p = self.progress?;
        let heard = self
            .progress_at
            .map_or(0.0, |at| now.duration_since(at).as_secs_f64());
        p.eta_secs.is_finite().then_some(p.eta_secs - heard)
    }

    /// How long the rest of the run takes, seen at `now`, in words: the whole run once an
    /// epoch of it has been timed, else the phase in progress and what comes after it. It
    /// counts down between events, and says "finishing" rather than a time that ran out.
    pub fn time_left(&self, now: Instant) -> Option<String> {
        let p = self.progress?;
        if self
            .epochs
            .last()
            .is_some_and(|m| m.epoch >= self.total_epochs)
        {
            return Some("Saving the model".to_owned());
        }
        let phase_left = self.phase_left(now);
        // The epochs after the one in progress (the one after the last finished).
        let done = self.epochs.last().map_or(self.first_epoch, |m| m.epoch);
        let epochs_after = self
            .total_epochs
            .saturating_sub(done.max(self.first_epoch) + 1);
        if p.phase == Phase::Features {
            let then = match self.total_epochs.saturating_sub(self.first_epoch) {
                0 => String::new(),
                n => format!(", then {}", epochs_text(n)),
            };
            return Some(match phase_left.map(left_text) {
                Some(Some(t)) => format!("{t} left for the features{then}"),
                Some(None) => format!("Finishing the features{then}"),
                None => format!("Estimating the time left{then}"),
            });
        }
        let mean = self.epoch_secs.iter().sum::<f64>() / self.epoch_secs.len().max(1) as f64;
        if self.epoch_secs.is_empty() {
            let then = match epochs_after {
                0 => String::new(),
                n => format!(
                    ", then {}",
                    crate::words::count(n, "more epoch", "more epochs")
                ),
            };
            return Some(match (phase_left.map(left_text), p.phase) {
                (Some(Some(t)), Phase::Training) => {
                    format!("{t} left in epoch {}{then}", p.epoch)
                }
                (Some(Some(t)), _) => format!("{t} left in its validation{then}"),
                (Some(None), _) => format!("Finishing epoch {}{then}", p.epoch),
                (None, _) => format!("Estimating the time left in epoch {}{then}", p.epoch),
            });
        }
        let in_epoch = self
            .epoch_began
            .map_or(0.0, |at| now.duration_since(at).as_secs_f64());
        let left =
            (mean - in_epoch).max(phase_left.unwrap_or(0.0).max(0.0)) + mean * epochs_after as f64;
        Some(match left_text(left) {
            Some(t) => format!("{t} left"),
            None => "Finishing".to_owned(),
        })
    }
}

/// "About 3m10s" for a time still to come; `None` once it has run out (the work is late).
fn left_text(secs: f64) -> Option<String> {
    (secs >= 0.5).then(|| format!("About {}", duration_text(secs)))
}

/// "1 epoch", "3 epochs".
pub fn epochs_text(n: usize) -> String {
    crate::words::epochs(n)
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
    if let TrainEvent::Started {
        config,
        stage_start,
        resumed,
        ..
    } = event
    {
        lines.push(format!(
            "training: {} ({}), learning rate {:.0e}, epochs {} to {}",
            config.trainable.label(),
            config.head.short(),
            config.learning_rate,
            stage_start + 1,
            config.epochs
        ));
        if *stage_start > 0 {
            lines.push(format!(
                "a new stage of a model trained for {}",
                epochs_text(*stage_start)
            ));
        }
        if *resumed {
            lines.push(format!("resuming at epoch {first_epoch}"));
        }
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
    let calibrated = match &summary.calibration {
        Ok(c) => format!(
            "; confidences calibrated (temperature {:.2}; log loss {:.4} before)",
            c.temperature, c.log_loss_before
        ),
        Err(_) => String::new(),
    };
    format!(
        "Finished: validation accuracy {:.2}%, log loss {:.4} ({} images){calibrated}",
        100.0 * summary.validation.evaluation.accuracy,
        summary.validation.evaluation.log_loss,
        summary.validation.evaluation.count
    )
}

/// What a stopped run left: `epochs_done` in all, `trained` of them in this run; whether a
/// checkpoint and a model were written, and whether the run caches features.
pub fn stopped_line(
    (epochs_done, trained): (usize, usize),
    (checkpoint, model, cached): (bool, bool, bool),
) -> String {
    let resume = match (checkpoint, cached) {
        (true, _) => " Resume continues from the last checkpoint.",
        (false, true) => {
            " Features computed so far stay in the cache: Resume (or Start) goes on from there."
        }
        (false, false) => " Resume starts it again.",
    };
    if model {
        format!(
            "Stopped after epoch {epochs_done} ({} in this run): the model in use is the one \
             after epoch {epochs_done}.{resume}",
            epochs_text(trained)
        )
    } else if epochs_done == 0 {
        format!("Stopped before the first epoch finished.{resume}")
    } else {
        format!(
            "Stopped before an epoch of this run finished: the model in use is unchanged \
             ({}).{resume}",
            epochs_text(epochs_done)
        )
    }
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

    fn started(first_epoch: usize, stage_start: usize, history: Vec<EpochMetrics>) -> TrainEvent {
        TrainEvent::Started {
            classes: vec!["cat".into(), "dog".into()],
            train: 10,
            valid: 2,
            device: "CPU".into(),
            cache: "on".into(),
            first_epoch,
            weights: vec!["13 convolutions from ImageNet".into()],
            history,
            config: Box::new(TrainConfig {
                epochs: 3,
                batch_size: 4,
                ..TrainConfig::default()
            }),
            stage_start,
            resumed: first_epoch > stage_start + 1,
        }
    }

    fn progress(phase: Phase, epoch: usize, done: usize, eta_secs: f64) -> TrainEvent {
        TrainEvent::Progress(PhaseProgress {
            phase,
            epoch,
            done,
            total: 10,
            images_per_sec: 4.0,
            eta_secs,
        })
    }

    #[test]
    fn events_become_the_lines_and_curves_people_see() {
        let now = Instant::now();
        let mut log = TrainLog::default();
        log.apply(started(2, 0, vec![epoch(1)]), now);
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
                "training: the head (pooled), learning rate 1e-3, epochs 1 to 3",
                "resuming at epoch 2",
            ]
        );
        log.apply(
            TrainEvent::Batch {
                epoch: 2,
                step: 6,
                loss: 0.5,
                accuracy: 1.0,
            },
            now,
        );
        assert_eq!(log.batch_loss, [[2.0, 0.5]]);
        log.apply(progress(Phase::Training, 2, 8, 65.0), now);
        assert_eq!(
            log.progress_line().as_deref(),
            Some("Epoch 2 of 3: 8 of 10 photos — 4.0 a second")
        );
        log.apply(TrainEvent::Epoch(epoch(2)), now);
        assert_eq!(log.epochs.len(), 2);
        assert_eq!(
            log.trained_here(),
            [epoch(2)],
            "epoch 1 came before the resume"
        );
        assert_eq!(
            epoch_line(&log.epochs[1]),
            "epoch   2: train loss 0.5000 acc 75.00% | valid loss 0.2500 acc 87.50% | 1.2 s"
        );
        let stop = TrainEvent::Stopped {
            epochs_done: 2,
            checkpoint: Some("c".into()),
            model: Some("m".into()),
        };
        assert!(log.apply(stop, now).is_none());
        assert_eq!(log.progress, None);
        assert_eq!(
            log.outcome.as_deref(),
            Some(
                "Stopped after epoch 2 (1 epoch in this run): the model in use is the one after \
                 epoch 2. Resume continues from the last checkpoint."
            )
        );
        // A stage that says so, and a stop before its first epoch leaves the model as it was.
        let mut stage = TrainLog::default();
        stage.apply(started(3, 2, vec![epoch(1), epoch(2)]), now);
        assert!(
            stage
                .info
                .iter()
                .any(|l| l == "a new stage of a model trained for 2 epochs")
        );
        assert!(
            !stage.info.iter().any(|l| l.starts_with("resuming")),
            "{:?}",
            stage.info
        );
        let stop = TrainEvent::Stopped {
            epochs_done: 2,
            checkpoint: None,
            model: None,
        };
        stage.apply(stop, now);
        assert!(
            stage
                .outcome
                .as_deref()
                .is_some_and(|o| o.contains("the model in use is unchanged (2 epochs)")
                    && o.contains("stay in the cache")),
            "{:?}",
            stage.outcome
        );
    }

    #[test]
    fn the_time_left_is_the_whole_runs_and_counts_down_between_events() {
        let t0 = Instant::now();
        let at = |secs: f64| t0 + std::time::Duration::from_secs_f64(secs);
        let mut log = TrainLog::default();
        log.apply(started(1, 0, Vec::new()), t0);
        // The feature pass: its own time, then the epochs to come.
        log.apply(progress(Phase::Features, 0, 2, 40.0), t0);
        assert_eq!(
            log.time_left(at(10.0)).as_deref(),
            Some("About 30s left for the features, then 3 epochs")
        );
        assert_eq!(
            log.time_left(at(45.0)).as_deref(),
            Some("Finishing the features, then 3 epochs"),
            "never a time that already ran out"
        );
        // The first epoch, before any epoch was timed.
        log.apply(progress(Phase::Training, 1, 5, 20.0), at(50.0));
        assert_eq!(
            log.time_left(at(50.0)).as_deref(),
            Some("About 20s left in epoch 1, then 2 more epochs")
        );
        log.apply(TrainEvent::Epoch(epoch(1)), at(90.0));
        // 40 s an epoch: the whole run's rest, counting down.
        log.apply(progress(Phase::Training, 2, 1, 35.0), at(91.0));
        assert_eq!(
            log.time_left(at(100.0)).as_deref(),
            Some("About 1m10s left")
        );
        assert_eq!(log.time_left(at(130.0)).as_deref(), Some("About 40s left"));
        log.apply(TrainEvent::Epoch(epoch(2)), at(131.0));
        log.apply(progress(Phase::Training, 3, 9, 1.0), at(170.0));
        assert_eq!(log.time_left(at(250.0)).as_deref(), Some("Finishing"));
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
