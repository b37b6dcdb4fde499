//! The Train view: what trains and how, Start / Stop / Resume, and the run's progress and live
//! loss and accuracy charts. The run itself lives on its worker ([`TrainingRun`]); this panel
//! keeps its [`TrainLog`], which holds what the run says of itself (its settings, its stage, its
//! epochs): the view shows those, never a copy of its own.

use std::path::PathBuf;
use std::time::Instant;

use eframe::egui;

use super::{Commands, Shared, UiCommand};
use crate::data::Dataset;
use crate::limits;
use crate::metrics::EvaluatedImages;
use crate::model::HeadKind;
use crate::train::log::duration_text;
use crate::train::{
    OptimizerKind, RunSummary, TrainConfig, TrainJob, TrainLog, Trainable, TrainingRun,
};

/// How a run that ended hands its model to the other views.
pub(crate) struct Ended {
    /// Its validation pass, for the Evaluate view (a finished run's; a stopped run's model
    /// carries its own).
    pub validation: Option<EvaluatedImages>,
    /// The model it saved, to load as the model in use.
    pub model: PathBuf,
}

/// One run since the app started, for the table that compares them.
struct RunRecord {
    settings: String,
    /// Epochs this run trained, and its last one's validation accuracy and log loss.
    epochs: usize,
    last: Option<(f64, f64)>,
    /// Wall time from Start to its end.
    secs: f64,
    outcome: &'static str,
}

/// What a run was started with, so that a run stopped before its first checkpoint can be
/// started again as it was.
#[derive(Clone)]
struct Launch {
    config: TrainConfig,
    weights: Option<PathBuf>,
    /// The model a deeper stage continues.
    from: Option<PathBuf>,
}

/// The Train view's state: the run, what its events said, and the runs before it.
#[derive(Default)]
pub(crate) struct TrainPanel {
    run: Option<TrainingRun>,
    /// The current or last run's log.
    pub log: TrainLog,
    /// The current or last run's start, and when it began.
    launch: Option<(Launch, Instant)>,
    /// Set when the last run stopped before it wrote a checkpoint: Resume starts it again.
    stopped_early: bool,
    runs: Vec<RunRecord>,
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

    /// True when a stopped run can be continued: from its checkpoint (also after a restart),
    /// or, stopped before it wrote one, started again (its features are cached).
    pub fn can_resume(&self, shared: &Shared) -> bool {
        let (_, checkpoint) = Self::run_paths(shared);
        !self.is_training() && (checkpoint.is_file() || self.stopped_early)
    }

    /// Starts a new run on `dataset` from `weights` with the Train view's settings, or (with
    /// `resume`) continues the stopped run as it was: from its checkpoint with the settings it
    /// recorded, whatever the view says now (a deeper stage stays a deeper stage).
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared,
        dataset: &Dataset,
        weights: Option<PathBuf>,
        resume: bool,
    ) {
        let (_, checkpoint) = Self::run_paths(shared);
        let again = self.launch.as_ref().map(|(l, _)| l.clone());
        match again.filter(|_| resume && !checkpoint.is_file()) {
            // Stopped before its first checkpoint: the same run again, on the cached features.
            Some(last) => self.launch(ctx, shared, dataset, last, false),
            // A new run; or the checkpoint's, which brings its own settings, stage and weights.
            None => {
                let launch = Launch {
                    config: shared.state.train.clone(),
                    weights,
                    from: None,
                };
                self.launch(ctx, shared, dataset, launch, resume);
            }
        }
    }

    /// Fine-tunes deeper: continues the model at `from` (of shape `network`) as a new stage,
    /// with the Train view's settings except that block 5 learns too (when less did), at the
    /// deeper stages' learning rate, for [`crate::train::config::DEEPER_STAGE_EPOCHS`] epochs.
    pub fn start_stage(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared,
        dataset: &Dataset,
        (from, network): (PathBuf, crate::model::Vgg16Config),
    ) {
        let mut config = crate::train::config::deeper_stage(&shared.state.train);
        config.head = network.head;
        let launch = Launch {
            config,
            weights: None,
            from: Some(from),
        };
        self.launch(ctx, shared, dataset, launch, false);
    }

    /// Starts `launch` (resuming the checkpoint, with its own settings, when `resume`).
    fn launch(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared,
        dataset: &Dataset,
        launch: Launch,
        resume: bool,
    ) {
        if self.is_training() {
            return;
        }
        let (out, checkpoint) = Self::run_paths(shared);
        let mut config = launch.config.clone();
        config.device = shared.state.device_choice;
        let job = TrainJob {
            dataset: dataset.clone(),
            weights: launch.weights.clone(),
            from_model: launch.from.clone(),
            config,
            out: Some(out),
            checkpoint: Some(checkpoint),
            checkpoint_interval: crate::train::DEFAULT_CHECKPOINT_INTERVAL,
            // A finished run's checkpoint is deleted (below), so it is not written.
            final_checkpoint: false,
            resume,
            resume_as_saved: true,
            cache_root: shared.cache_root.clone(),
            stop_after: shared.stop_after,
        };
        let wake = ctx.clone();
        match TrainingRun::start(job, move || wake.request_repaint()) {
            Ok(run) => {
                self.log = TrainLog::default();
                self.stopped_early = false;
                self.launch = Some((launch, Instant::now()));
                self.run = Some(run);
            }
            Err(e) => shared
                .notices
                .push(format!("Could not start training: {e}")),
        }
    }

    /// Adds the run that just ended to the table of runs.
    fn record(&mut self, outcome: &'static str) {
        let trained = self.log.trained_here();
        let settings = self.log.config.as_ref().map_or_else(
            || "did not start".to_owned(),
            |c| settings_text(c, self.log.stage_start, self.log.first_epoch),
        );
        self.runs.push(RunRecord {
            settings,
            epochs: trained.len(),
            last: trained.last().map(|m| (m.valid_accuracy, m.valid_loss)),
            secs: self
                .launch
                .as_ref()
                .map_or(f64::NAN, |(_, at)| at.elapsed().as_secs_f64()),
            outcome,
        });
    }

    /// The runs since the app started: epochs trained, wall time and outcome.
    pub fn runs(&self) -> Vec<(usize, f64, &'static str)> {
        self.runs
            .iter()
            .map(|r| (r.epochs, r.secs, r.outcome))
            .collect()
    }

    /// The runs since the app started, side by side.
    fn runs_ui(&self, ui: &mut egui::Ui) {
        if self.runs.is_empty() {
            return;
        }
        super::widgets::collapsing(
            ui,
            egui::CollapsingHeader::new(format!(
                "Runs since vggtune started ({})",
                self.runs.len()
            ))
            .id_salt("runs"),
            |ui| {
                egui::Grid::new("runs-table").striped(true).show(ui, |ui| {
                    for h in [
                        "#",
                        "epochs trained",
                        "valid acc",
                        "log loss",
                        "time",
                        "outcome",
                        "settings",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for (i, r) in self.runs.iter().enumerate() {
                        ui.label((i + 1).to_string());
                        ui.label(r.epochs.to_string());
                        match r.last {
                            Some((accuracy, loss)) => {
                                ui.label(format!("{:.2}%", 100.0 * accuracy));
                                ui.label(format!("{loss:.4}"));
                            }
                            None => {
                                ui.weak("–");
                                ui.weak("–");
                            }
                        }
                        ui.label(duration_text(r.secs));
                        ui.label(r.outcome);
                        // The settings last, cut to the panel (all of them on hover).
                        ui.scope(|ui| {
                            ui.set_max_width(320.0);
                            ui.add(egui::Label::new(&r.settings).truncate())
                                .on_hover_text(&r.settings);
                        });
                        ui.end_row();
                    }
                });
            },
        );
    }

    /// Asks the run to stop after its current batch.
    pub fn stop(&mut self) {
        if let Some(run) = &self.run {
            run.stop();
            self.log.outcome = Some("Stopping after this batch…".into());
        }
    }

    /// Takes in the run's events; a run that ended with a model hands it on (a finished run's,
    /// or a stopped run's model of its last finished epoch).
    pub fn poll(&mut self, shared: &Shared) -> Option<Ended> {
        let run = self.run.as_ref()?;
        // Asked before draining: a thread that had ended has sent everything it will send.
        let thread_done = !run.is_running();
        let mut finished: Option<Box<RunSummary>> = None;
        let mut stopped: Option<(Option<PathBuf>, bool)> = None;
        let now = Instant::now();
        for event in run.try_events() {
            if let crate::train::TrainEvent::Stopped {
                model, checkpoint, ..
            } = &event
            {
                stopped = Some((model.clone(), checkpoint.is_some()));
            }
            if let Some(summary) = self.log.apply(event, now) {
                finished = Some(summary);
            }
        }
        if !thread_done {
            return None;
        }
        self.run = None;
        let outcome = match (&finished, &stopped) {
            (Some(_), _) => "finished",
            (None, Some(_)) => "stopped",
            (None, None) => "failed",
        };
        self.record(outcome);
        if let Some(summary) = finished {
            // The run is over: its checkpoint is not needed for a resume any more.
            let (_, checkpoint) = Self::run_paths(shared);
            let _ = std::fs::remove_file(checkpoint);
            let RunSummary {
                validation, model, ..
            } = *summary;
            return model.map(|model| Ended {
                validation: Some(validation),
                model,
            });
        }
        let (model, checkpoint) = stopped?;
        self.stopped_early = !checkpoint;
        model.map(|model| Ended {
            validation: None,
            model,
        })
    }

    /// The Train view; `dataset` is the open folder. It scrolls as a whole, so a small window
    /// reaches everything; the charts come before the tables.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        (dataset, has_model): (Option<&Dataset>, bool),
        commands: &mut Commands,
    ) {
        let view_height = ui.available_height();
        // Two columns that scroll apart: Start and Stop stay in reach while the charts and
        // tables scroll.
        ui.horizontal_top(|ui| {
            egui::ScrollArea::vertical()
                .id_salt("train-settings")
                .max_width(310.0)
                .auto_shrink([true, false])
                .show(ui, |ui| {
                    ui.vertical(|ui| {
                        ui.set_width(300.0);
                        self.settings_ui(ui, shared, (dataset, has_model), commands);
                    });
                });
            ui.separator();
            egui::ScrollArea::both()
                .id_salt("train-view")
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    ui.vertical(|ui| {
                        super::charts::run_ui(&self.log, ui, (self.is_training(), view_height));
                        self.runs_ui(ui);
                    });
                });
        });
    }

    /// The settings column: a running run's own settings (read only), else the settings the
    /// next run takes; then Start, Stop, Fine-tune deeper and Resume.
    fn settings_ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        (dataset, has_model): (Option<&Dataset>, bool),
        commands: &mut Commands,
    ) {
        let running = self.is_training();
        let can_resume = self.can_resume(shared);
        if running && self.log.config.is_none() {
            // Resume and a deeper stage bring their own settings: none is shown until the run
            // has said which.
            ui.heading("This run");
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Starting…");
            });
        }
        match self.log.config.clone().filter(|_| running) {
            Some(mut run) => {
                ui.heading("This run");
                if self.log.stage_start > 0 {
                    ui.label(format!(
                        "A deeper stage: epochs {} to {}, after the model's {}.",
                        self.log.stage_start + 1,
                        run.epochs,
                        crate::train::log::epochs_text(self.log.stage_start)
                    ));
                }
                run.epochs -= self.log.stage_start.min(run.epochs);
                let (mut device, mut precision) =
                    (shared.state.device_choice, shared.state.precision);
                ui.add_enabled_ui(false, |ui| {
                    config_ui(&mut run, (&mut device, &mut precision), ui)
                });
            }
            None if running => {}
            None => {
                ui.heading("Settings");
                if can_resume {
                    ui.weak(
                        "Resume continues the stopped run with the settings it started with; \
                         Start begins a new run with these.",
                    );
                }
                let state = &mut shared.state;
                config_ui(
                    &mut state.train,
                    (&mut state.device_choice, &mut state.precision),
                    ui,
                );
            }
        }
        ui.add_space(8.0);
        ui.horizontal_wrapped(|ui| {
            let ready = dataset.is_some_and(Dataset::trainable);
            if ui
                .add_enabled(!running && ready, egui::Button::new("Start"))
                .on_disabled_hover_text("Open a photo folder with at least two classes first")
                .clicked()
            {
                commands.push(UiCommand::StartTraining { resume: false });
            }
            if ui.add_enabled(running, egui::Button::new("Stop")).clicked() {
                commands.push(UiCommand::StopTraining);
            }
            let deeper = crate::train::config::deeper_stage(&shared.state.train);
            if ui
                .add_enabled(
                    !running && ready && has_model,
                    egui::Button::new("Fine-tune deeper"),
                )
                .on_hover_text(format!(
                    "Continue the model in use as a new stage: {} learn at {:.0e} for {}, on \
                     the cached output of the layers before (block 5 on a CPU: minutes an \
                     epoch)",
                    deeper.trainable.describe(),
                    deeper.learning_rate,
                    crate::train::log::epochs_text(deeper.epochs)
                ))
                .on_disabled_hover_text("Train or open a model of this folder's classes first")
                .clicked()
            {
                commands.push(UiCommand::FineTuneDeeper);
            }
            if ui
                .add_enabled(can_resume && ready, egui::Button::new("Resume"))
                .on_hover_text("Continue the stopped run as it was, from where it stopped")
                .on_disabled_hover_text(
                    "There is no stopped run to continue: Resume is for a run you stopped \
                     (features computed before a stop stay in the cache)",
                )
                .clicked()
            {
                commands.push(UiCommand::StartTraining { resume: true });
            }
        });
    }
}

/// A run's settings in a few words, for the runs table.
fn settings_text(c: &TrainConfig, stage_start: usize, first_epoch: usize) -> String {
    format!(
        "{}{} head; learns {}; batch {}, lr {:.0e}{}{}",
        if stage_start > 0 {
            "deeper stage: "
        } else {
            ""
        },
        c.head.short(),
        c.trainable.label(),
        c.batch_size,
        c.learning_rate,
        if c.augment { ", augmented" } else { "" },
        if first_epoch > stage_start {
            format!(", resumed at epoch {}", first_epoch + 1)
        } else {
            String::new()
        },
    )
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

fn config_ui(
    c: &mut TrainConfig,
    (device_choice, precision): (
        &mut crate::device::DeviceChoice,
        &mut crate::model::bf16::Choice,
    ),
    ui: &mut egui::Ui,
) {
    // A rate left at its default follows a change of head or of what trains.
    let before = (c.head, c.trainable);
    egui::Grid::new("train-config").num_columns(2).show(ui, |ui| {
        let label = ui.label("What trains").on_hover_text("Frozen layers' outputs are cached, so later epochs cost little");
        egui::ComboBox::from_id_salt("trainable")
            .selected_text(c.trainable.label())
            .show_ui(ui, |ui| {
                for t in Trainable::ALL {
                    ui.selectable_value(&mut c.trainable, t, t.label()).on_hover_text(t.describe());
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
            .selected_text(device_choice.to_string())
            .show_ui(ui, |ui| {
                for d in crate::device::DeviceChoice::ALL {
                    ui.selectable_value(device_choice, d, d.to_string());
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
        precision_ui(precision, ui);
    });
}

/// The CPU precision's row: the choice, and what it comes to on this CPU.
fn precision_ui(precision: &mut crate::model::bf16::Choice, ui: &mut egui::Ui) {
    use crate::model::bf16::Choice;

    let label = ui.label("CPU precision");
    let before = *precision;
    let (now, why) = precision.resolve();
    egui::ComboBox::from_id_salt("cpu-precision")
        .selected_text(precision.to_string())
        .show_ui(ui, |ui| {
            for &p in <Choice as clap::ValueEnum>::value_variants() {
                ui.selectable_value(precision, p, p.to_string());
            }
        })
        .response
        .labelled_by(label.id)
        .on_hover_text(format!(
            "The number format of the frozen convolutions on the CPU (bf16: products in bf16, \
             sums in f32; features cached apart). Now: {now} ({why}). Applies to the next \
             training, check, sort or model opened."
        ));
    if *precision != before {
        crate::model::bf16::choose(*precision);
    }
    ui.end_row();
}
