//! `vggtune train`: the run's configuration from the flags, the stages of one command (the
//! first from the flags, then each `--then` continuing the model the stage before wrote), and
//! what the runs print.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use vggtune::data::{Dataset, SplitConfig};
use vggtune::device::DeviceChoice;
use vggtune::train::config::default_learning_rate;
use vggtune::train::{
    TrainConfig, TrainEvent, TrainJob, Trainable, TrainingRun, checkpoint_path_for, log,
};

use super::{Output, TrainArgs, bar};

/// A stage after the first, as `--then` gives it: what trains, for how many epochs, and at
/// what learning rate (default: [`default_learning_rate`] for the head and what trains).
#[derive(Clone, Debug, PartialEq)]
pub struct StageSpec {
    trainable: Trainable,
    epochs: usize,
    lr: Option<f64>,
}

impl std::str::FromStr for StageSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let (trainable, epochs, lr) = match parts[..] {
            [t, e] => (t, e, None),
            [t, e, lr] => (t, e, Some(lr)),
            _ => {
                return Err(format!(
                    "'{s}': a stage is TRAINABLE:EPOCHS[:LR], e.g. block5:2 or block5:2:1e-5"
                ));
            }
        };
        let epochs = epochs
            .parse()
            .map_err(|_| format!("'{s}': '{epochs}' is not a number of epochs"))?;
        vggtune::limits::check("the stage's epochs", epochs, &vggtune::limits::EPOCHS)
            .map_err(|e| format!("--then '{s}': {e}"))?;
        let lr = lr
            .map(|lr| {
                lr.parse()
                    .map_err(|_| format!("'{s}': '{lr}' is not a learning rate"))
            })
            .transpose()?;
        Ok(Self {
            trainable: trainable.parse()?,
            epochs,
            lr,
        })
    }
}

/// Where stage `k` (0-based) of `count` writes its model: the last stage `out`, the others
/// `OUT-stageK.vggtune` beside it (K from 1).
fn stage_out(out: &Path, k: usize, count: usize) -> PathBuf {
    if k + 1 == count {
        return out.to_path_buf();
    }
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}-stage{}.vggtune", k + 1))
}

/// The epoch a finished model at `path` ends at, and what trained in it (`None` without one).
fn finished_model(path: &Path) -> Option<(usize, String)> {
    let header = vggtune::model::bundle::read_header(path).ok()?;
    Some((header.next_epoch, header.trained))
}

impl TrainArgs {
    /// The configuration of the stage that writes `out`, continuing `from` (a model): the flags,
    /// a resumed checkpoint's settings, or the continued model's head; and whether it resumes.
    fn config(
        &self,
        choice: DeviceChoice,
        out: &Path,
        from: Option<&Path>,
    ) -> anyhow::Result<(TrainConfig, bool)> {
        let mut config = TrainConfig {
            trainable: self.trainable,
            optimizer: self.optimizer,
            weight_decay: self.weight_decay,
            dropout: self.dropout,
            augment: self.augment,
            split: SplitConfig {
                valid_fraction: self.valid_fraction,
                ..SplitConfig::default()
            },
            ..TrainConfig::default()
        };
        // A resumed run goes on as it was, a continued model keeps its head, unless the flags
        // say otherwise (and a resume that changes them is refused with why).
        let checkpoint = checkpoint_path_for(out);
        let resumed = self.resume && checkpoint.is_file();
        if resumed {
            let header = vggtune::model::bundle::read_header(&checkpoint)?;
            let saved = &header.train_config;
            let switch = |key| vggtune::train::config::saved_switch(saved, key);
            config = TrainConfig {
                head: header.model.head,
                learning_rate: saved
                    .get("learning_rate")
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(config.learning_rate),
                mirror_views: switch("mirror_views"),
                mirror_tta: switch("mirror_tta"),
                square_tta: switch("square_tta"),
                ..config
            };
        } else if let Some(from) = from {
            config.head = vggtune::model::bundle::read_header(from)?.model.head;
        }
        Ok((self.recipe.apply(choice, config, resumed), resumed))
    }

    /// Stage `k`'s configuration: the flags' for the first, a `--then` stage's what-trains,
    /// epochs and rate on them for the others.
    fn stage_config(
        &self,
        choice: DeviceChoice,
        k: usize,
        (out, from): (&Path, Option<&Path>),
    ) -> anyhow::Result<TrainConfig> {
        let (config, resumed) = self.config(choice, out, from)?;
        let Some(stage) = k.checked_sub(1).and_then(|i| self.then.get(i)) else {
            return Ok(config);
        };
        Ok(TrainConfig {
            trainable: stage.trainable,
            epochs: stage.epochs,
            learning_rate: match stage.lr {
                Some(lr) => lr,
                None if resumed => config.learning_rate,
                None => default_learning_rate(config.head, stage.trainable),
            },
            ..config
        })
    }
}

/// Trains and saves a model: the flags' stage, then each `--then` stage on the model the one
/// before wrote. With --resume, a stage whose model is already complete is skipped.
pub fn train(choice: DeviceChoice, args: TrainArgs) -> anyhow::Result<()> {
    let dataset = Dataset::scan(&args.data)?;
    if !dataset.trainable() {
        let problems: Vec<String> = dataset.problems.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "{}: cannot train: {}",
            args.data.display(),
            problems.join("; ")
        );
    }
    let out = &args.output;
    for problem in &dataset.problems {
        if !out.quiet && !out.json {
            eprintln!("warning: {problem}");
        }
    }
    let count = 1 + args.then.len();
    let mut from = args.from.clone();
    // The epoch each stage ends at: the continued model's epochs, then each stage's.
    let mut end = match &from {
        Some(model) => vggtune::model::bundle::read_header(model)?.next_epoch,
        None => 0,
    };
    for k in 0..count {
        let stage_path = stage_out(&args.out, k, count);
        let config = args.stage_config(choice, k, (&stage_path, from.as_deref()))?;
        end += config.epochs;
        let trained = serde_json::to_value(config.trainable)?;
        let done = finished_model(&stage_path)
            .is_some_and(|(epoch, what)| epoch == end && trained == what.as_str());
        if count > 1 && args.resume && done {
            if !out.quiet && !out.json {
                println!("stage {}: {} is complete", k + 1, stage_path.display());
            }
            from = Some(stage_path);
            continue;
        }
        if count > 1 && !out.quiet && !out.json {
            println!(
                "stage {} of {count}: {} for {} at {:.0e}",
                k + 1,
                config.trainable.label(),
                log::epochs_text(config.epochs),
                config.learning_rate
            );
        }
        run_stage(
            &args,
            dataset.clone(),
            config,
            (&stage_path, from.as_deref()),
        )?;
        from = Some(stage_path);
    }
    Ok(())
}

/// Runs one stage that writes `out`, continuing `from` (a model; else from the flags' weights).
fn run_stage(
    args: &TrainArgs,
    dataset: Dataset,
    config: TrainConfig,
    (out_path, from): (&Path, Option<&Path>),
) -> anyhow::Result<()> {
    // A run continuing a model takes its weights from the model.
    let weights = match from {
        Some(_) => None,
        None => args.recipe.weights()?,
    };
    let job = TrainJob {
        dataset,
        weights,
        from_model: from.map(Path::to_path_buf),
        config,
        checkpoint: Some(checkpoint_path_for(out_path)),
        checkpoint_interval: std::time::Duration::try_from_secs_f64(args.checkpoint_secs)
            .context("--checkpoint-secs must be a number of seconds, 0 or more")?,
        final_checkpoint: true,
        out: Some(out_path.to_path_buf()),
        resume: args.resume,
        resume_as_saved: false,
        cache_root: args.recipe.cache_dir(),
        stop_after: args.stop_after,
    };
    let out = &args.output;
    let bars = out.bars();
    let mut progress: Option<indicatif::ProgressBar> = None;
    let last = TrainingRun::run_blocking(job, |event| print_event(out, bars, &mut progress, event));
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    report(last, out, out_path)
}

/// Prints one training event: JSON lines with --json, else text and progress bars.
pub(super) fn print_event(
    out: &Output,
    bars: bool,
    progress: &mut Option<indicatif::ProgressBar>,
    event: &TrainEvent,
) {
    if out.json {
        if !matches!(event, TrainEvent::Progress(_) | TrainEvent::Batch { .. }) || !out.quiet {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
        }
        return;
    }
    match event {
        TrainEvent::Started { .. } if !out.quiet => {
            for line in log::started_lines(event) {
                eprintln!("{line}");
            }
        }
        TrainEvent::Progress(vggtune::train::PhaseProgress {
            phase,
            epoch,
            done,
            total,
            ..
        }) if bars => {
            let p = progress.get_or_insert_with(|| {
                bar(
                    *total as u64,
                    "{msg:>12} {bar:40} {pos}/{len} {per_sec} ETA {eta}",
                )
            });
            p.set_length(*total as u64);
            p.set_message(log::phase_label(*phase, *epoch));
            p.set_position(*done as u64);
            if done == total {
                p.finish_and_clear();
                *progress = None;
            }
        }
        TrainEvent::Epoch(m) if !out.quiet => {
            if let Some(p) = progress.take() {
                p.finish_and_clear();
            }
            eprintln!("{}", log::epoch_line(m));
        }
        TrainEvent::Skipped { path, reason } if !out.quiet => {
            eprintln!("skipped {}: {reason}", path.display());
        }
        _ => {}
    }
}

/// What a run's last event means for the user, and the exit code.
fn report(last: TrainEvent, out: &Output, model: &Path) -> anyhow::Result<()> {
    match last {
        TrainEvent::Finished(summary) => {
            if !out.json {
                if summary.cache_hits + summary.cache_misses > 0 {
                    println!(
                        "features: {} computed in {:.1} s, {} from the cache",
                        summary.cache_misses, summary.feature_secs, summary.cache_hits
                    );
                }
                let evaluation = &summary.validation.evaluation;
                if evaluation.count == 0 {
                    println!("validation: none (no photos were held out)");
                } else {
                    println!(
                        "validation: accuracy {:.2}%, log loss {:.4} ({} images)",
                        100.0 * evaluation.accuracy,
                        evaluation.log_loss,
                        evaluation.count
                    );
                }
                match &summary.calibration {
                    Ok(c) => println!("calibration: {}", c.describe()),
                    Err(why) => println!("calibration: {why}"),
                }
                match &summary.typicality {
                    Some(t) => println!("none of these: {}", vggtune::typical::describe(t)),
                    None => println!(
                        "none of these: off (too few training photos to tell what is typical)"
                    ),
                }
                println!("saved {}", model.display());
            }
            if let Some(warning) = &summary.warning {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        TrainEvent::Stopped {
            epochs_done,
            checkpoint,
            model,
        } => {
            anyhow::bail!(
                "stopped after {}{}; {}",
                log::epochs_text(epochs_done),
                model.map_or(String::new(), |m| format!(
                    " (the model after epoch {epochs_done} is saved at {})",
                    m.display()
                )),
                checkpoint.map_or(
                    "no checkpoint yet (features computed so far stay in the cache)".to_owned(),
                    |c| format!("resume with --resume (checkpoint {})", c.display())
                )
            )
        }
        TrainEvent::Failed { reason } => anyhow::bail!("training failed: {reason}"),
        other => anyhow::bail!("training ended unexpectedly: {other:?}"),
    }
}
