//! The Train view: what trains and how, Start / Stop / Resume, and the run's progress and live
//! loss and accuracy charts. The run itself lives on its worker ([`TrainingRun`]); this panel
//! keeps its [`TrainLog`].

use std::path::PathBuf;

use eframe::egui;
use egui_plot::{Corner, Legend, Line, Plot, PlotPoints};

use super::{Commands, DeviceStatus, Shared, UiCommand};
use crate::data::Dataset;
use crate::limits;
use crate::model::HeadKind;
use crate::train::log::duration_text;
use crate::train::metrics::EvaluatedImages;
use crate::train::{
    EpochMetrics, OptimizerKind, RunSummary, TrainJob, TrainLog, Trainable, TrainingRun,
};

/// What a finished run hands to the other views.
pub(crate) struct Finished {
    /// Its validation pass, for the Evaluate view.
    pub validation: EvaluatedImages,
    /// The saved model, to load.
    pub model: Option<PathBuf>,
}

/// One run since the app started, for the table that compares them.
struct RunRecord {
    settings: String,
    epochs: usize,
    accuracy: f64,
    log_loss: f64,
    secs: f64,
    outcome: &'static str,
}

/// The Train view's state: the run, what its events said, and the runs before it.
#[derive(Default)]
pub(crate) struct TrainPanel {
    run: Option<TrainingRun>,
    /// The current or last run's log.
    pub log: TrainLog,
    /// The current run's settings, in words.
    settings: String,
    runs: Vec<RunRecord>,
    /// The deeper stage trained or stopped last, so Resume continues that stage.
    stage: Option<Stage>,
}

/// A deeper stage: its settings, the model it continues and that model's epochs (the stage's
/// come after them on the charts' time axis).
#[derive(Clone)]
struct Stage {
    config: crate::train::TrainConfig,
    /// `None` for a first run.
    from: Option<PathBuf>,
    before: usize,
}

impl TrainPanel {
    /// True while a run goes on.
    pub fn is_training(&self) -> bool {
        self.run.as_ref().is_some_and(TrainingRun::is_running)
    }

    /// The window's run's model and checkpoint files.
    fn run_paths(shared: &Shared) -> (PathBuf, PathBuf) {
        (
            shared.work_dir.join("last-run.vggtune"),
            shared.work_dir.join("last-run.ckpt.vggtune"),
        )
    }

    /// True when a checkpoint of an unfinished run exists.
    pub fn can_resume(&self, shared: &Shared) -> bool {
        let (_, checkpoint) = Self::run_paths(shared);
        checkpoint.is_file() && !self.is_training()
    }

    /// Starts a run on `dataset` from `weights` (resuming the last checkpoint when `resume`: the
    /// stopped deeper stage's, when that is what stopped).
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared,
        dataset: &Dataset,
        weights: Option<PathBuf>,
        resume: bool,
    ) {
        if !resume {
            self.stage = None;
        }
        match self.stage.clone() {
            Some(stage) => self.launch(ctx, shared, (dataset, None), stage, resume),
            None => {
                let first = Stage {
                    config: shared.state.train.clone(),
                    from: None,
                    before: 0,
                };
                self.launch(ctx, shared, (dataset, weights), first, resume);
            }
        }
    }

    /// Fine-tunes deeper: continues the model at `from`, trained for `before` epochs with the
    /// head of `network`, as a new stage, with the Train view's settings except that block 5
    /// learns too (when less did) at the deeper stages' learning rate.
    pub fn start_stage(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared,
        dataset: &Dataset,
        (from, (before, network)): (PathBuf, (usize, Option<crate::model::Vgg16Config>)),
    ) {
        let mut config = deeper_stage(&shared.state.train);
        if let Some(network) = network {
            config.head = network.head;
        }
        let stage = Stage {
            config,
            from: Some(from),
            before,
        };
        self.stage = Some(stage.clone());
        self.launch(ctx, shared, (dataset, None), stage, false);
    }

    /// Starts `stage` (a first run when it continues no model).
    fn launch(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared,
        (dataset, weights): (&Dataset, Option<PathBuf>),
        stage: Stage,
        resume: bool,
    ) {
        if self.is_training() {
            return;
        }
        let (out, checkpoint) = Self::run_paths(shared);
        let Stage {
            mut config,
            from,
            before,
        } = stage;
        config.device = shared.state.device_choice;
        let train = config.clone();
        let deeper = from.is_some();
        let job = TrainJob {
            dataset: dataset.clone(),
            weights,
            from_model: from,
            config,
            out: Some(out),
            checkpoint: Some(checkpoint),
            checkpoint_interval: crate::train::DEFAULT_CHECKPOINT_INTERVAL,
            // A finished run's checkpoint is deleted (below), so it is not written.
            final_checkpoint: false,
            resume,
            cache_root: shared.cache_root.clone(),
            stop_after: None,
        };
        let wake = ctx.clone();
        match TrainingRun::start(job, move || wake.request_repaint()) {
            Ok(run) => {
                self.log = TrainLog::new(before + train.epochs, train.batch_size);
                self.settings = format!(
                    "{}{:?}, {} head, batch {}, lr {:.0e}{}{}",
                    if deeper { "deeper: " } else { "" },
                    train.trainable,
                    train.head.label(),
                    train.batch_size,
                    train.learning_rate,
                    if train.augment { ", augmented" } else { "" },
                    if resume { ", resumed" } else { "" },
                );
                self.run = Some(run);
            }
            Err(e) => shared
                .notices
                .push(format!("Could not start training: {e}")),
        }
    }

    /// Adds the run that just ended to the table of runs.
    fn record(&mut self, finished: bool) {
        let last = self.log.epochs.last();
        self.runs.push(RunRecord {
            settings: std::mem::take(&mut self.settings),
            epochs: self.log.epochs.len(),
            accuracy: last.map_or(f64::NAN, |m| m.valid_accuracy),
            log_loss: last.map_or(f64::NAN, |m| m.valid_loss),
            secs: self.log.epochs.iter().map(|m| m.secs).sum(),
            outcome: match (finished, self.log.failed.is_some()) {
                (true, _) => "finished",
                (false, true) => "failed",
                (false, false) => "stopped",
            },
        });
    }

    /// The runs since the app started, side by side.
    fn runs_ui(&self, ui: &mut egui::Ui) {
        if self.runs.is_empty() {
            return;
        }
        egui::CollapsingHeader::new(format!("Runs since vggtune started ({})", self.runs.len()))
            .id_salt("runs")
            .show(ui, |ui| {
                egui::Grid::new("runs-table").striped(true).show(ui, |ui| {
                    for h in [
                        "#",
                        "settings",
                        "epochs",
                        "valid acc",
                        "log loss",
                        "time",
                        "",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for (i, r) in self.runs.iter().enumerate() {
                        ui.label((i + 1).to_string());
                        ui.label(&r.settings);
                        ui.label(r.epochs.to_string());
                        ui.label(format!("{:.2}%", 100.0 * r.accuracy));
                        ui.label(format!("{:.4}", r.log_loss));
                        ui.label(duration_text(r.secs));
                        ui.label(r.outcome);
                        ui.end_row();
                    }
                });
            });
    }

    /// Asks the run to stop after its current batch.
    pub fn stop(&mut self) {
        if let Some(run) = &self.run {
            run.stop();
            self.log.outcome = Some("Stopping after this batch…".into());
        }
    }

    /// Takes in the run's events; what a finished run hands on.
    pub fn poll(&mut self, shared: &Shared) -> Option<Finished> {
        let run = self.run.as_ref()?;
        // Asked before draining: a thread that had ended has sent everything it will send.
        let thread_done = !run.is_running();
        let mut finished: Option<Box<RunSummary>> = None;
        for event in run.try_events() {
            if let Some(summary) = self.log.apply(event) {
                finished = Some(summary);
            }
        }
        if thread_done {
            self.run = None;
            self.record(finished.is_some());
        }
        let RunSummary {
            validation, model, ..
        } = *finished?;
        // The run is over: its checkpoint is not needed for a resume any more.
        let (_, checkpoint) = Self::run_paths(shared);
        let _ = std::fs::remove_file(checkpoint);
        Some(Finished { validation, model })
    }

    /// The Train view; `dataset` is the open folder.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        (dataset, has_model): (Option<&Dataset>, bool),
        commands: &mut Commands,
    ) {
        let running = self.is_training();
        let can_resume = self.can_resume(shared);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(300.0);
                ui.heading("Settings");
                // A deeper stage runs with its own settings, not the ones below.
                if let Some(Stage {
                    config: stage,
                    from: Some(from),
                    ..
                }) = self.stage.as_ref().filter(|_| running || can_resume)
                {
                    ui.label(format!(
                        "This run is a deeper stage of {}: {}, learning rate {:.0e}, {} more epochs.",
                        from.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                        stage.trainable.describe(),
                        stage.learning_rate,
                        stage.epochs
                    ));
                }
                ui.add_enabled_ui(!running, |ui| config_ui(shared, ui));
                ui.add_space(8.0);
                ui.horizontal(|ui| {
                    let ready = dataset.is_some_and(Dataset::trainable);
                    if ui
                        .add_enabled(!running && ready, egui::Button::new("Start"))
                        .on_disabled_hover_text(
                            "Open a photo folder with at least two classes first",
                        )
                        .clicked()
                    {
                        commands.push(UiCommand::StartTraining { resume: false });
                    }
                    if ui.add_enabled(running, egui::Button::new("Stop")).clicked() {
                        commands.push(UiCommand::StopTraining);
                    }
                    let deeper = deeper_stage(&shared.state.train);
                    if ui
                        .add_enabled(
                            !running && ready && has_model,
                            egui::Button::new("Fine-tune deeper"),
                        )
                        .on_hover_text(format!(
                            "Continue the model in use as a new stage: {} learn at {:.0e} for {} \
                             epochs, on the cached output of the layers before (block 5 on a \
                             CPU: minutes an epoch)",
                            deeper.trainable.describe(),
                            deeper.learning_rate,
                            deeper.epochs
                        ))
                        .on_disabled_hover_text(
                            "Train or open a model of this folder's classes first",
                        )
                        .clicked()
                    {
                        commands.push(UiCommand::FineTuneDeeper);
                    }
                    if ui
                        .add_enabled(can_resume && ready, egui::Button::new("Resume"))
                        .on_hover_text("Continue the stopped run from its last checkpoint")
                        .on_disabled_hover_text(
                            "There is no stopped run to continue: Resume is for a run you \
                             stopped (features computed before a stop stay in the cache)",
                        )
                        .clicked()
                    {
                        commands.push(UiCommand::StartTraining { resume: true });
                    }
                });
            });
            ui.separator();
            ui.vertical(|ui| {
                self.runs_ui(ui);
                run_ui(&self.log, ui);
            });
        });
    }
}

/// The Head row.
fn head_ui(c: &mut crate::train::TrainConfig, ui: &mut egui::Ui) {
    let label = ui.label("Head");
    egui::ComboBox::from_id_salt("head")
        .selected_text(c.head.label())
        .show_ui(ui, |ui| {
            for (head, hint) in [
                (
                    HeadKind::Pooled,
                    "Averages each feature over the photo first: the most accurate here, and an \
                     epoch takes a fraction of a second",
                ),
                (
                    HeadKind::Dense256,
                    "The 2017 course's head: reads where in the photo each feature is",
                ),
                (
                    HeadKind::Torchvision,
                    "Keeps ImageNet's dense layers when the weights have them",
                ),
            ] {
                ui.selectable_value(&mut c.head, head, head.label())
                    .on_hover_text(hint);
            }
        })
        .response
        .labelled_by(label.id);
    ui.end_row();
}

fn config_ui(shared: &mut Shared, ui: &mut egui::Ui) {
    let c = &mut shared.state.train;
    // A rate left at its default follows a change of head or of what trains.
    let before = (c.head, c.trainable);
    egui::Grid::new("train-config").num_columns(2).show(ui, |ui| {
        let label = ui.label("What trains").on_hover_text("Frozen layers' outputs are cached, so later epochs cost little");
        egui::ComboBox::from_id_salt("trainable")
            .selected_text(format!("{:?}", c.trainable))
            .show_ui(ui, |ui| {
                for t in Trainable::ALL {
                    ui.selectable_value(&mut c.trainable, t, format!("{t:?}")).on_hover_text(t.describe());
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
        head_ui(c, ui);
        if (c.head, c.trainable) != before {
            crate::train::config::rate_follows(c, before);
        }
        let label = ui.label("Epochs");
        ui.add(egui::DragValue::new(&mut c.epochs).range(limits::EPOCHS)).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Batch size");
        ui.add(egui::DragValue::new(&mut c.batch_size).range(limits::BATCH_SIZE)).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Learning rate");
        ui.add(
            egui::DragValue::new(&mut c.learning_rate)
                .range(limits::LEARNING_RATE)
                .speed(1e-5)
                .custom_formatter(|v, _| format!("{v:.1e}"))
                .custom_parser(|s| s.trim().parse().ok()),
        )
        .labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Optimizer");
        egui::ComboBox::from_id_salt("optimizer")
            .selected_text(format!("{:?}", c.optimizer))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut c.optimizer, OptimizerKind::Adam, "Adam");
                ui.selectable_value(&mut c.optimizer, OptimizerKind::Sgd, "SGD (momentum 0.9)");
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
        ui.label("Augmentation");
        ui.vertical(|ui| {
            ui.checkbox(&mut c.mirror_views, "mirror images (cached)")
                .on_hover_text("Caches each photo's mirror image too and trains on one of the two each epoch: the first pass over the photos costs twice, the epochs nothing more");
            ui.checkbox(&mut c.augment, "flip, rotate, shift, zoom")
                .on_hover_text("Varies the photos each epoch; turns the feature cache off, so every epoch costs a full pass");
        });
        ui.end_row();
        ui.label("Predictions");
        ui.vertical(|ui| {
            ui.checkbox(&mut c.mirror_tta, "average with the mirror image")
                .on_hover_text("Test-time augmentation: the model predicts twice per photo (its file records it; Predict and Evaluate can switch it)");
            ui.checkbox(&mut c.square_tta, "average squashed and cropped")
                .on_hover_text("Test-time augmentation: the photo is also made square the other way, so the model sees all of it and its centre at full size (twice the work again)");
        });
        ui.end_row();
        let label = ui.label("Validation");
        let mut percent = c.split.valid_fraction * 100.0;
        let percents = limits::VALID_FRACTION.start() * 100.0..=limits::VALID_FRACTION.end() * 100.0;
        if ui.add(egui::Slider::new(&mut percent, percents).suffix("%")).labelled_by(label.id).changed() {
            c.split.valid_fraction = percent / 100.0;
        }
        ui.end_row();
        let label = ui.label("Seed");
        let mut seed = c.seed;
        if ui.add(egui::DragValue::new(&mut seed)).labelled_by(label.id).changed() {
            c.set_seed(seed);
        }
        ui.end_row();
        let label = ui.label("Input size");
        ui.add(egui::DragValue::new(&mut c.input_size).range(limits::INPUT_SIZE).suffix(" px")).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Device");
        egui::ComboBox::from_id_salt("device")
            .selected_text(shared.state.device_choice.to_string())
            .show_ui(ui, |ui| {
                for d in crate::device::DeviceChoice::ALL {
                    ui.selectable_value(&mut shared.state.device_choice, d, d.to_string());
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
    });
    if let DeviceStatus::Ready(d) = &shared.device {
        ui.weak(d.label());
    }
}

fn run_ui(log: &TrainLog, ui: &mut egui::Ui) {
    for line in &log.info {
        ui.label(line);
    }
    if let (Some(p), Some(line)) = (log.progress, log.progress_line()) {
        ui.add(egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32).text(line));
        let epochs_done = log.epochs.len() as f32;
        ui.add(
            egui::ProgressBar::new(epochs_done / log.total_epochs.max(1) as f32).text(format!(
                "Run: {} of {} epochs",
                log.epochs.len(),
                log.total_epochs
            )),
        );
    }
    if let Some(outcome) = &log.outcome {
        ui.label(outcome);
    }
    if let Some(failed) = &log.failed {
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!("Training failed: {failed}"),
        );
    }
    if !log.skipped.is_empty() {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!(
                "{} photos could not be read and were skipped",
                log.skipped.len()
            ),
        );
    }
    if log.epochs.is_empty() && log.batch_loss.is_empty() {
        ui.add_space(40.0);
        ui.weak(if log.info.is_empty() {
            "The loss and accuracy curves appear here once a run starts."
        } else {
            "The curves start with the first training batch, once the photos' features are ready."
        });
        return;
    }
    epochs_table_ui(ui, log);
    let height = ((ui.available_height() - 20.0) / 2.0).max(120.0);
    let epoch_points = |f: fn(&EpochMetrics) -> f64| -> Vec<[f64; 2]> {
        log.epochs.iter().map(|m| [m.epoch as f64, f(m)]).collect()
    };
    let curves = [
        (
            "loss",
            &log.batch_loss[..],
            epoch_points(|m| m.train_loss),
            epoch_points(|m| m.valid_loss),
        ),
        (
            "accuracy",
            &log.batch_accuracy[..],
            epoch_points(|m| m.train_accuracy),
            epoch_points(|m| m.valid_accuracy),
        ),
    ];
    for (name, batches, train, valid) in curves {
        let (low, high) = fitted_range(name, batches, &train, &valid);
        let corner = if name == "loss" {
            Corner::RightTop
        } else {
            Corner::RightBottom
        };
        // The plot keeps its bounds from frame to frame: it is reset to the fitted range whenever
        // that range moves (every batch while training), and left to the user's zoom otherwise.
        let fitted_id = egui::Id::unique((name, "fitted-range"));
        let moved = ui.data_mut(|d| {
            let moved = d.get_temp::<(f64, f64)>(fitted_id) != Some((low, high));
            d.insert_temp(fitted_id, (low, high));
            moved
        });
        let mut chart = Plot::new(format!("{name}-chart"))
            .legend(Legend::default().position(corner))
            .height(height)
            .x_axis_label("epoch")
            .y_axis_label(name)
            .default_y_bounds(low, high)
            .allow_scroll(false);
        if moved {
            chart = chart.reset();
        }
        chart.show(ui, |plot| {
            let batch = PlotPoints::from(batches.to_vec());
            plot.line(Line::new("train (batch)", batch).width(1.0));
            plot.line(Line::new("train (epoch)", PlotPoints::from(train)).width(2.5));
            plot.line(Line::new("validation", PlotPoints::from(valid)).width(2.5));
        });
    }
}

/// The y range that shows what matters: every epoch's value and the batches after the first
/// epoch (the first batches' loss of 2 or accuracy of 50% would flatten the rest), with a margin;
/// accuracy up to 100%, loss down to 0 when it comes close.
fn fitted_range(
    name: &str,
    batches: &[[f64; 2]],
    train: &[[f64; 2]],
    valid: &[[f64; 2]],
) -> (f64, f64) {
    let later = batches.iter().filter(|p| p[0] > 1.0);
    let values: Vec<f64> = train
        .iter()
        .chain(valid)
        .chain(later)
        .map(|p| p[1])
        .filter(|v| v.is_finite())
        .collect();
    let values = if values.is_empty() {
        batches
            .iter()
            .map(|p| p[1])
            .filter(|v| v.is_finite())
            .collect()
    } else {
        values
    };
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if !min.is_finite() {
        return (0.0, 1.0);
    }
    let margin = ((max - min) * 0.1).max(1e-3);
    if name == "accuracy" {
        // Headroom above 100%, so a validation curve at 1.0 does not hide in the frame.
        ((min - margin).max(0.0), 1.0 + margin.clamp(0.01, 0.03))
    } else {
        let low = if min < (max - min) { 0.0 } else { min - margin };
        (low, max + margin)
    }
}

/// Every finished epoch in a row (collapsed), with the numbers the curves draw.
fn epochs_table_ui(ui: &mut egui::Ui, log: &TrainLog) {
    if log.epochs.is_empty() {
        return;
    }
    egui::CollapsingHeader::new(format!("Epochs ({})", log.epochs.len()))
        .id_salt("epochs-table")
        .show(ui, |ui| {
            egui::Grid::new("epochs").striped(true).show(ui, |ui| {
                for h in [
                    "epoch",
                    "train loss",
                    "train acc",
                    "valid loss",
                    "valid acc",
                    "time",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for m in &log.epochs {
                    ui.label(m.epoch.to_string());
                    ui.label(format!("{:.4}", m.train_loss));
                    ui.label(format!("{:.2}%", 100.0 * m.train_accuracy));
                    ui.label(format!("{:.4}", m.valid_loss));
                    ui.label(format!("{:.2}%", 100.0 * m.valid_accuracy));
                    ui.label(duration_text(m.secs));
                    ui.end_row();
                }
            });
        });
}

/// The settings of a deeper stage after a run with `settings`: block 5 learns too (when less
/// did), at the deeper stages' rate.
fn deeper_stage(settings: &crate::train::TrainConfig) -> crate::train::TrainConfig {
    let mut config = settings.clone();
    if config.trainable.frozen_convs() > crate::train::Trainable::Block5.frozen_convs() {
        config.trainable = crate::train::Trainable::Block5;
    }
    config.learning_rate =
        crate::train::config::default_learning_rate(config.head, config.trainable);
    config
}
