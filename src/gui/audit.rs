//! The Data view's "Check data" (`train::check`, on a worker with progress and Cancel): one list
//! grouped by kind (wrong label, duplicate, belongs to no class, unusable, small class), each
//! photo with its thumbnail (a duplicate beside its twin; heatmaps when they are on), why it was
//! flagged, and the actions: move it to the class it looks like (a wrong label), leave it out
//! of training, or keep it. Every action can be undone; the folder is scanned again after each
//! change so counts and training see it at once. Nothing is deleted: a duplicate's Exclude
//! leaves its twin in.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use eframe::egui;

use super::jobs::Job;
use super::{Commands, Shared, UiCommand};
use crate::data::Dataset;
use crate::data::curate::{self, Change};

use crate::train::audit::{self, AuditJob};
use crate::train::check::{self, Check, Finding, Kind};
use crate::train::{TrainEvent, TrainLog};

enum AuditMsg {
    /// An event of fold `.0` of `.1`'s training run.
    Event(usize, usize, TrainEvent),
    /// The check of the folder it was started on.
    Done(Result<Option<Box<Check>>, String>, PathBuf),
}

/// The audit: its job, its result and what was done with each listed photo.
#[derive(Default)]
pub(crate) struct AuditPanel {
    job: Option<(Job<AuditMsg>, Arc<AtomicBool>)>,
    progress: FoldsProgress,
    /// When each listed photo's action was last carried out or undone: its buttons wait a
    /// moment after, so a double click does not undo and redo.
    changed_at: Vec<Option<Instant>>,
    /// The last check and the folder it is of.
    found: Option<(Check, PathBuf)>,
    decisions: Vec<Option<Change>>,
    error: Option<String>,
    /// Set when the last audit was cancelled.
    cancelled: bool,
}

impl AuditPanel {
    /// The photos listed with a wrong label, with the class each looks like (for tests).
    pub fn suspects(&self) -> Vec<(PathBuf, String)> {
        self.found.as_ref().map_or_else(Vec::new, |(found, _)| {
            found
                .findings
                .iter()
                .filter_map(|f| Some((f.path.clone(), found.classes[f.looks_like?].clone())))
                .collect()
        })
    }

    /// Every photo listed, with its kind (for tests).
    pub fn findings(&self) -> Vec<(Kind, PathBuf)> {
        self.found.as_ref().map_or_else(Vec::new, |(found, _)| {
            found
                .findings
                .iter()
                .map(|f| (f.kind, f.path.clone()))
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
        let config = shared.run_config();
        let job = AuditJob {
            dataset: dataset.clone(),
            weights,
            config,
            folds: audit::DEFAULT_FOLDS,
            cache_root: shared.cache_root.clone(),
            from_model: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        let root = dataset.root.clone();
        self.error = None;
        self.cancelled = false;
        self.progress = FoldsProgress {
            folds: audit::DEFAULT_FOLDS,
            ..FoldsProgress::default()
        };
        self.found = self.found.take().filter(|(_, r)| *r == root);
        let job = Job::spawn(ctx, "check-data", move |r| {
            let result = check::run(job, None, &worker_stop, |fold, folds, event| {
                if matches!(
                    event,
                    TrainEvent::Progress(_) | TrainEvent::Started { .. } | TrainEvent::Epoch(_)
                ) {
                    r.send(AuditMsg::Event(fold, folds, event.clone()));
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
                    AuditMsg::Event(fold, folds, event) => {
                        self.progress.apply(fold, folds, event, Instant::now());
                    }
                    AuditMsg::Done(Ok(Some(found)), of) => {
                        self.decisions = (0..found.findings.len()).map(|_| None).collect();
                        self.changed_at = vec![None; found.findings.len()];
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

    /// The "Check data" section of the Data view.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        dataset: &Dataset,
        commands: &mut Commands,
    ) {
        let left = self.decisions.iter().filter(|d| d.is_none()).count();
        let title = match &self.found {
            Some(_) => format!("Check data ({left} to look at)"),
            None => "Check data".to_owned(),
        };
        super::widgets::collapsing(
            ui,
            egui::CollapsingHeader::new(title)
                .id_salt("check-data")
                .default_open(self.found.is_some() || self.job.is_some()),
            |ui| {
                self.controls_ui(ui, commands);
                if let Some(e) = &self.error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                if self.cancelled {
                    ui.weak(if self.found.is_some() {
                        "Cancelled: the list below is from the last check that finished."
                    } else {
                        "Cancelled: nothing was checked."
                    });
                }
                // A check running makes the list below out of date: look, but change nothing.
                let idle = self.job.is_none();
                ui.add_enabled_ui(idle, |ui| self.results_ui(ui, shared, dataset, commands));
            },
        );
    }

    fn controls_ui(&mut self, ui: &mut egui::Ui, commands: &mut Commands) {
        ui.label(format!(
            "Trains {} heads on the cached features, each judging the photos it never saw, and \
             lists the photos whose label they doubt (probability of the given label under \
             {:.0}%); then, on the same features and the photos' pixels, duplicates, photos that \
             belong to no class, unusable photos (dark, blown out, blurred, flat, tiny, extreme \
             aspect, grayscale among colour) and classes far smaller than the others.",
            audit::DEFAULT_FOLDS,
            100.0 * audit::SUSPECT_BELOW
        ));
        ui.horizontal(|ui| {
            if ui
                .add_enabled(self.job.is_none(), egui::Button::new("Check data"))
                .on_hover_text("Uses the Train view's settings and the chosen weights.")
                .clicked()
            {
                commands.push(UiCommand::CheckLabels);
            }
            if let Some((_, stop)) = &self.job {
                let (text, fraction) = self.progress.text(Instant::now());
                let width = (ui.available_width() - 80.0).max(320.0);
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .text(text)
                        .desired_width(width),
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
        ui.weak(format!("Labels judged by {}.", found.audit.judged_by()));
        for warning in found.audit.warnings() {
            ui.colored_label(ui.visuals().warn_fg_color, format!("Note: {warning}."));
        }
        if found.findings.is_empty() {
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
        // The findings are grouped by kind: each group under its heading, in rows.
        let mut groups: Vec<(Kind, std::ops::Range<usize>)> = Vec::new();
        for (i, f) in found.findings.iter().enumerate() {
            match groups.last_mut() {
                Some((kind, range)) if *kind == f.kind => range.end = i + 1,
                _ => groups.push((f.kind, i..i + 1)),
            }
        }
        egui::ScrollArea::vertical()
            .id_salt("suspects")
            .max_height(420.0)
            .show(ui, |ui| {
                for (kind, range) in groups {
                    ui.strong(format!("{} ({})", kind.heading(), range.len()));
                    let first = range.start;
                    let group = &found.findings[range];
                    for (row, chunk) in group.chunks(per_row).enumerate() {
                        ui.horizontal(|ui| {
                            for (k, s) in chunk.iter().enumerate() {
                                let i = first + row * per_row + k;
                                let decided = self.decisions.get(i).and_then(Option::as_ref);
                                let settled = self
                                    .changed_at
                                    .get(i)
                                    .copied()
                                    .flatten()
                                    .is_none_or(|at| at.elapsed() >= ACTION_PAUSE);
                                // A photo listed twice (a duplicate that is also unusable) is
                                // acted on once: its other card waits for that to be undone.
                                let elsewhere = found.findings.iter().enumerate().any(|(j, f)| {
                                    j != i
                                        && f.path == s.path
                                        && self.decisions.get(j).is_some_and(Option::is_some)
                                });
                                let settled = settled && !elsewhere;
                                let card = |ui: &mut egui::Ui| {
                                    suspect_ui(
                                        ui,
                                        shared,
                                        (s, explain),
                                        &found.classes,
                                        decided,
                                        size,
                                    )
                                };
                                if !settled {
                                    ui.ctx().request_repaint_after(ACTION_PAUSE);
                                }
                                if let Some(a) = ui.add_enabled_ui(settled, card).inner {
                                    act = Some((i, a));
                                }
                            }
                        });
                    }
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
        let Some(suspect) = found.findings.get(i) else {
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
            (Action::Move, Some(image)) => match suspect.looks_like {
                Some(class) => curate::relabel(dataset, image, &found.classes[class]).map(Some),
                None => Ok(None),
            },
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
                if let Some(at) = self.changed_at.get_mut(i) {
                    *at = Some(Instant::now());
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

/// One listed photo: thumbnail (a duplicate's twin beside it), why, and its actions (or what
/// was done, with Undo). A small class is said, with no action.
fn suspect_ui(
    ui: &mut egui::Ui,
    shared: &mut Shared,
    (s, explain): (&Finding, bool),
    classes: &[String],
    decided: Option<&Change>,
    size: f32,
) -> Option<Action> {
    let mut action = None;
    ui.vertical(|ui| {
        ui.set_width(size + 100.0);
        let (thumbnails, heatmaps) = (&mut shared.thumbnails, &mut shared.heatmaps);
        ui.horizontal(|ui| {
            let side = if s.twin.is_some() {
                size / 2.0 + 20.0
            } else {
                size
            };
            if explain {
                let class = s.looks_like.unwrap_or(s.class);
                super::heatmaps::photo_ui(ui, thumbnails, heatmaps, &s.path, side, class)
                    .on_hover_text(s.path.display().to_string());
            } else {
                thumbnails
                    .show(ui, &s.path, side)
                    .on_hover_text(s.path.display().to_string());
            }
            if let Some(twin) = &s.twin {
                thumbnails
                    .show(ui, twin, side)
                    .on_hover_text(format!("{} (stays)", twin.display()));
            }
        });
        ui.label(egui::RichText::new(&s.rel).monospace());
        ui.label(crate::words::sentence(&s.why));
        if s.kind == Kind::SmallClass {
            ui.weak(format!(
                "Add photos of {}, or leave it out of this model.",
                classes.get(s.class).map_or("it", String::as_str)
            ));
            return;
        }
        match decided {
            None => {
                ui.horizontal_wrapped(|ui| {
                    if let Some(class) = s.looks_like
                        && ui
                            .small_button(format!("Move to {}", classes[class]))
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
                            "It is fine as it is: later checks do not list it (kept in {})",
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

/// How long a listed photo's buttons wait after its last action (longer than a double click).
const ACTION_PAUSE: std::time::Duration = std::time::Duration::from_millis(700);

/// Where the audit's folds stand: the current fold's run, as its log says, and how long the
/// folds after the first took (the first computes the features the others read).
#[derive(Default)]
struct FoldsProgress {
    fold: usize,
    folds: usize,
    log: TrainLog,
    fold_began: Option<Instant>,
    later_fold_secs: Vec<f64>,
}

impl FoldsProgress {
    fn apply(&mut self, fold: usize, folds: usize, event: TrainEvent, now: Instant) {
        if fold != self.fold || self.fold_began.is_none() {
            if let Some(began) = self.fold_began.filter(|_| self.fold > 0) {
                self.later_fold_secs
                    .push(now.duration_since(began).as_secs_f64());
            }
            self.fold = fold;
            self.log = TrainLog::default();
            self.fold_began = Some(now);
        }
        self.folds = folds;
        self.log.apply(event, now);
    }

    /// The progress bar's words and fraction: the fold, its phase, and the time left in the
    /// whole check once a fold after the first has been timed.
    fn text(&self, now: Instant) -> (String, f32) {
        let Some(p) = self.log.progress else {
            return (
                format!("Fold {} of {}: starting…", self.fold + 1, self.folds.max(1)),
                0.0,
            );
        };
        let within = p.done as f32 / p.total.max(1) as f32;
        let fraction = (self.fold as f32 + within) / self.folds.max(1) as f32;
        let folds_after = self.folds.saturating_sub(self.fold + 1);
        let more = |n: usize| crate::words::count(n, "more fold", "more folds");
        let left = if self.later_fold_secs.is_empty() {
            // Before a fold after the first is timed: this phase's time, then the folds.
            let this = match self.log.phase_left(now) {
                Some(secs) if secs >= 0.5 => {
                    format!(
                        "about {} left in this",
                        crate::train::log::duration_text(secs)
                    )
                }
                Some(_) => "finishing this".to_owned(),
                None => "estimating".to_owned(),
            };
            match folds_after {
                0 => this,
                n => format!("{this}; then {}", more(n)),
            }
        } else {
            let mean = self.later_fold_secs.iter().sum::<f64>() / self.later_fold_secs.len() as f64;
            let in_fold = self
                .fold_began
                .map_or(0.0, |at| now.duration_since(at).as_secs_f64());
            let secs = (mean - in_fold).max(0.0) + mean * folds_after as f64;
            if secs >= 0.5 {
                format!("about {} left", crate::train::log::duration_text(secs))
            } else {
                "finishing".to_owned()
            }
        };
        let text = format!(
            "Fold {} of {}: {} {} of {} — {left}",
            self.fold + 1,
            self.folds,
            crate::train::log::phase_label(p.phase, p.epoch),
            p.done,
            p.total,
        );
        (text, fraction)
    }
}
