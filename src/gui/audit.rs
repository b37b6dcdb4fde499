//! The Data view's "Check labels": the training photos whose label looks wrong
//! (`train::audit`, on a worker with progress and Cancel), each with its thumbnail (and heatmap,
//! when heatmaps are on) and three actions: move it to the class it looks like, leave it out of
//! training, or keep it. Every action can be undone; the folder is scanned again after each
//! change so counts and training see it at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eframe::egui;

use super::jobs::Job;
use super::{Commands, Shared, UiCommand};
use crate::data::Dataset;
use crate::data::curate::{self, Change};
use crate::infer::confidence_text;
use crate::train::TrainEvent;
use crate::train::audit::{self, Audit, AuditJob, Suspect};

enum AuditMsg {
    /// What runs now, in words, and how far the whole audit is (0–1).
    Progress(String, f32),
    /// The audit of the folder it was started on.
    Done(Result<Option<Box<Audit>>, String>, PathBuf),
}

/// The audit: its job, its result and what was done with each listed photo.
#[derive(Default)]
pub(crate) struct AuditPanel {
    job: Option<(Job<AuditMsg>, Arc<AtomicBool>)>,
    progress: (String, f32),
    /// The last audit and the folder it is of.
    found: Option<(Audit, PathBuf)>,
    decisions: Vec<Option<Change>>,
    error: Option<String>,
    /// Set when the last audit was cancelled.
    cancelled: bool,
}

impl AuditPanel {
    /// The photos listed, with the class each looks like (for tests).
    pub fn suspects(&self) -> Vec<(PathBuf, String)> {
        self.found.as_ref().map_or_else(Vec::new, |(found, _)| {
            found
                .suspects
                .iter()
                .map(|s| (s.path.clone(), found.classes[s.looks_like].clone()))
                .collect()
        })
    }

    /// True while an audit runs.
    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// Starts an audit of `dataset` with the window's training settings and `weights`.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        shared: &Shared,
        dataset: &Dataset,
        weights: Option<PathBuf>,
    ) {
        if self.job.is_some() {
            return;
        }
        let mut config = shared.state.train.clone();
        config.device = shared.state.device_choice;
        let job = AuditJob {
            dataset: dataset.clone(),
            weights,
            config,
            folds: audit::DEFAULT_FOLDS,
            cache_root: shared.cache_root.clone(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        let root = dataset.root.clone();
        self.error = None;
        self.cancelled = false;
        self.progress = ("Fold 1: starting…".into(), 0.0);
        self.found = self.found.take().filter(|(_, r)| *r == root);
        let job = Job::spawn(ctx, "label-audit", move |r| {
            let result = audit::run(job, &worker_stop, |fold, folds, event| {
                if let Some(text) = progress_text(fold, folds, event) {
                    r.send(AuditMsg::Progress(text.0, text.1));
                }
            });
            r.send(AuditMsg::Done(result.map(|a| a.map(Box::new)), root));
        });
        self.job = Some((job, stop));
    }

    /// Takes in the worker's progress and result.
    pub fn poll(&mut self, root: Option<&std::path::Path>) {
        if let Some((job, _)) = &mut self.job {
            for msg in job.poll() {
                match msg {
                    AuditMsg::Progress(text, fraction) => self.progress = (text, fraction),
                    AuditMsg::Done(Ok(Some(found)), of) => {
                        self.decisions = (0..found.suspects.len()).map(|_| None).collect();
                        self.found = Some((*found, of));
                    }
                    AuditMsg::Done(Ok(None), _) => self.cancelled = true,
                    AuditMsg::Done(Err(e), _) => self.error = Some(e),
                }
            }
            if job.is_finished() {
                if let Some(why) = job.failure() {
                    self.error = Some(why);
                }
                self.job = None;
            }
        }
        // Another folder's audit is not this one's.
        if let (Some((_, of)), Some(root)) = (&self.found, root)
            && of != root
        {
            self.found = None;
        }
    }

    /// The "Check labels" section of the Data view.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        dataset: &Dataset,
        commands: &mut Commands,
    ) {
        let left = self.decisions.iter().filter(|d| d.is_none()).count();
        let title = match &self.found {
            Some(_) => format!("Check labels ({left} to look at)"),
            None => "Check labels".to_owned(),
        };
        egui::CollapsingHeader::new(title)
            .id_salt("check-labels")
            .default_open(self.found.is_some() || self.job.is_some())
            .show(ui, |ui| {
                self.controls_ui(ui, commands);
                if let Some(e) = &self.error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                if self.cancelled {
                    ui.weak("Cancelled: the list below is from the last check that finished.");
                }
                // A check running makes the list below out of date: look, but change nothing.
                let idle = self.job.is_none();
                ui.add_enabled_ui(idle, |ui| self.results_ui(ui, shared, dataset, commands));
            });
    }

    fn controls_ui(&mut self, ui: &mut egui::Ui, commands: &mut Commands) {
        ui.label(format!(
            "Trains {} heads on the cached features, each judging the photos it never saw, and \
             lists the photos whose label they doubt (probability of the given label under {:.0}%).",
            audit::DEFAULT_FOLDS,
            100.0 * audit::SUSPECT_BELOW
        ));
        ui.horizontal(|ui| {
            if ui
                .add_enabled(self.job.is_none(), egui::Button::new("Check labels"))
                .on_hover_text("Uses the Train view's settings and the chosen weights.")
                .clicked()
            {
                commands.push(UiCommand::CheckLabels);
            }
            if let Some((_, stop)) = &self.job {
                let (text, fraction) = &self.progress;
                ui.add(
                    egui::ProgressBar::new(*fraction)
                        .text(text.as_str())
                        .desired_width(460.0),
                );
                if ui.button("Cancel").clicked() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        });
    }

    fn results_ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        dataset: &Dataset,
        commands: &mut Commands,
    ) {
        let Some((found, _)) = &self.found else {
            return;
        };
        ui.label(format!("{}.", found.summary()));
        for warning in found.warnings() {
            ui.colored_label(ui.visuals().warn_fg_color, format!("Note: {warning}."));
        }
        if found.suspects.is_empty() {
            return;
        }
        if shared.heatmaps.explains(&found.classes) {
            shared.heatmaps.controls_ui(ui, &found.classes);
            ui.weak(
                "Heatmaps show what the model in use sees (it may have trained on these \
                 photos); the doubts above come from heads that never saw them.",
            );
        } else {
            ui.weak("Heatmaps: train or open a model of these classes to see them here.");
        }
        let explain = shared.heatmaps.explains(&found.classes);
        let size = 120.0;
        let per_row = ((ui.available_width() / (size + 110.0)).floor() as usize).max(1);
        let mut act = None;
        egui::ScrollArea::vertical()
            .id_salt("suspects")
            .max_height(420.0)
            .show(ui, |ui| {
                for (row, chunk) in found.suspects.chunks(per_row).enumerate() {
                    ui.horizontal(|ui| {
                        for (k, s) in chunk.iter().enumerate() {
                            let i = row * per_row + k;
                            let decided = self.decisions.get(i).and_then(Option::as_ref);
                            if let Some(a) =
                                suspect_ui(ui, shared, (s, explain), &found.classes, decided, size)
                            {
                                act = Some((i, a));
                            }
                        }
                    });
                }
            });
        if let Some((i, action)) = act {
            self.apply(i, action, shared, dataset, commands);
        }
    }

    /// Carries out `action` on listed photo `i`, then has the folder scanned again.
    fn apply(
        &mut self,
        i: usize,
        action: Action,
        shared: &mut Shared,
        dataset: &Dataset,
        commands: &mut Commands,
    ) {
        let Some((found, _)) = &self.found else {
            return;
        };
        let Some(suspect) = found.suspects.get(i) else {
            return;
        };
        let image = dataset.images.iter().find(|im| im.path == suspect.path);
        let result = match (action, image) {
            // The record stays until the undo succeeded: a failed one can be tried again.
            (Action::Undo, _) => match self.decisions.get(i).and_then(Option::as_ref) {
                Some(change) => change.undo().map(|()| {
                    shared.tell(format!("Undone: {}", change.describe_undone()));
                    None
                }),
                None => Ok(None),
            },
            (_, None) => Err(format!(
                "{} is no longer in the folder's photos",
                suspect.path.display()
            )),
            (Action::Move, Some(image)) => {
                curate::relabel(dataset, image, &found.classes[suspect.looks_like]).map(Some)
            }
            (Action::Exclude, Some(image)) => curate::exclude(dataset, image).map(Some),
            (Action::Keep, Some(image)) => curate::keep(dataset, image).map(Some),
        };
        match result {
            Ok(decision) => {
                if let Some(change) = &decision {
                    shared.tell(format!("Done: {}", change.describe()));
                }
                if let Some(slot) = self.decisions.get_mut(i) {
                    *slot = decision;
                }
                commands.push(UiCommand::OpenDataset(dataset.root.clone()));
            }
            Err(e) => shared.notices.push(e),
        }
    }
}

/// What a listed photo's buttons ask for.
#[derive(Clone, Copy)]
enum Action {
    Move,
    Exclude,
    Keep,
    Undo,
}

/// One listed photo: thumbnail, its labels, and its actions (or what was done, with Undo).
fn suspect_ui(
    ui: &mut egui::Ui,
    shared: &mut Shared,
    (s, explain): (&Suspect, bool),
    classes: &[String],
    decided: Option<&Change>,
    size: f32,
) -> Option<Action> {
    let mut action = None;
    ui.vertical(|ui| {
        ui.set_width(size + 100.0);
        let (thumbnails, heatmaps) = (&mut shared.thumbnails, &mut shared.heatmaps);
        if explain {
            super::heatmaps::photo_ui(ui, thumbnails, heatmaps, &s.path, size, s.looks_like)
                .on_hover_text(s.path.display().to_string());
        } else {
            thumbnails
                .show(ui, &s.path, size)
                .on_hover_text(s.path.display().to_string());
        }
        ui.label(egui::RichText::new(&s.rel).monospace());
        ui.label(format!(
            "labelled {}, looks like {} ({})",
            classes[s.given],
            classes[s.looks_like],
            confidence_text(s.looks_like_probability)
        ));
        match decided {
            None => {
                ui.horizontal_wrapped(|ui| {
                    if ui
                        .small_button(format!("Move to {}", classes[s.looks_like]))
                        .clicked()
                    {
                        action = Some(Action::Move);
                    }
                    if ui
                        .small_button("Exclude")
                        .on_hover_text(format!(
                            "Leave it out of training (listed in {}; the file stays)",
                            curate::EXCLUDED_FILE
                        ))
                        .clicked()
                    {
                        action = Some(Action::Exclude);
                    }
                    if ui
                        .small_button("Keep")
                        .on_hover_text(format!(
                            "Its label is right: later checks do not list it (kept in {})",
                            curate::KEPT_FILE
                        ))
                        .clicked()
                    {
                        action = Some(Action::Keep);
                    }
                });
            }
            Some(decision) => {
                ui.horizontal(|ui| {
                    ui.weak(match decision {
                        Change::Moved { .. } => "moved",
                        Change::Excluded { .. } => "excluded",
                        Change::Kept { .. } => "kept",
                    });
                    if ui.small_button("Undo").clicked() {
                        action = Some(Action::Undo);
                    }
                });
            }
        }
    });
    action
}

/// A fold's training event as progress over the whole audit: the words and the fraction done.
fn progress_text(fold: usize, folds: usize, event: &TrainEvent) -> Option<(String, f32)> {
    let TrainEvent::Progress(p) = event else {
        return None;
    };
    let within = p.done as f32 / p.total.max(1) as f32;
    let text = format!(
        "Fold {} of {folds}: {} {} of {} — {} left",
        fold + 1,
        crate::train::log::phase_label(p.phase, p.epoch),
        p.done,
        p.total,
        crate::train::log::duration_text(p.eta_secs)
    );
    Some((text, (fold as f32 + within) / folds.max(1) as f32))
}
