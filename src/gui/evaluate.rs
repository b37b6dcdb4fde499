//! The Evaluate view: accuracy, log loss, the confusion matrix whose cells show their photos,
//! per-class precision and recall, and galleries of confident mistakes, uncertain and confident
//! right photos. Evaluations run on a worker.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eframe::egui;

use super::jobs::{Job, Reporter};
use super::model::Switches;
use super::{Commands, Shared, UiCommand};
use crate::data::Dataset;
use crate::infer::{ClassMapping, Classifier, DatasetEvaluation, match_classes};
use crate::metrics::{EvaluatedImages, Evaluation, GalleryItem};
use crate::train::log::duration_text;

/// What is evaluated: a folder to scan, or the Data view's open folder.
pub(crate) enum EvalSource {
    Folder(PathBuf),
    Open(Arc<Dataset>),
}

/// What the evaluation worker says.
enum EvalMsg {
    Progress(usize, usize),
    /// The folder's classes match none of the model's: the user maps them by hand.
    NeedsMapping {
        why: String,
        folder: PathBuf,
        classes: Vec<String>,
    },
    Done(Box<Result<DatasetEvaluation, String>>),
}

/// Folder classes the model does not know, and the model class the user picked for each.
struct Mapping {
    folder: PathBuf,
    why: String,
    choices: Vec<(String, Option<usize>)>,
}

/// An evaluation running on its worker.
struct Running {
    job: Job<EvalMsg>,
    switches: Switches,
    cancel: Arc<AtomicBool>,
    started: Instant,
    done: usize,
    total: usize,
}

/// The Evaluate view's state: the evaluation shown, where it came from, and the one being made.
#[derive(Default)]
pub(crate) struct EvaluatePanel {
    /// The evaluation shown.
    pub evaluation: Option<EvaluatedImages>,
    /// What was evaluated, in words, and how classes were matched.
    about: Vec<String>,
    /// Photos of the evaluated folder that could not be classified, with why.
    unclassified: Vec<crate::infer::Unclassified>,
    running: Option<Running>,
    /// The model's switches when the evaluation shown was made (not known for a run's).
    used: Switches,
    /// Its photos that copy a training photo of the model, and the accuracy without them.
    leaks: (Vec<crate::infer::Leak>, Option<f64>),
    mapping: Option<Mapping>,
    folder_edit: String,
    selected_cell: Option<(usize, usize)>,
}

impl EvaluatePanel {
    /// Shows a finished run's validation pass.
    pub fn show(&mut self, evaluation: EvaluatedImages) {
        self.evaluation = Some(evaluation);
        self.used = Switches::default();
        self.leaks = (Vec::new(), None);
        self.about = vec!["The last run's validation photos".into()];
        self.unclassified.clear();
        self.selected_cell = None;
    }

    /// Forgets the evaluation (a new model).
    pub fn clear(&mut self) {
        self.evaluation = None;
        self.about.clear();
        self.unclassified.clear();
        self.selected_cell = None;
    }

    /// Evaluates `classifier` on `source`, on a worker, with `mapping` for folder classes the
    /// model names otherwise.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        (classifier, switches): (Arc<Mutex<Classifier>>, Switches),
        model_classes: &[String],
        source: EvalSource,
    ) {
        // One evaluation at a time: a new one (a folder dropped meanwhile) cancels the last.
        if let Some(running) = self.running.take() {
            running.cancel.store(true, Ordering::Relaxed);
        }
        if let EvalSource::Folder(folder) = &source {
            self.folder_edit = folder.display().to_string();
        }
        let mapping: Vec<ClassMapping> = self
            .mapping
            .take()
            .map(|m| {
                m.choices
                    .into_iter()
                    .filter_map(|(folder, choice)| {
                        Some(ClassMapping {
                            folder,
                            model: model_classes.get(choice?)?.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let job = Job::spawn(ctx, "evaluate", move |r| {
            let result = evaluate(r, &classifier, source, &mapping, &flag);
            if let Some(result) = result {
                r.send(EvalMsg::Done(Box::new(result)));
            }
        });
        self.running = Some(Running {
            job,
            switches,
            cancel,
            started: Instant::now(),
            done: 0,
            total: 0,
        });
    }

    /// True while an evaluation runs.
    pub fn is_busy(&self) -> bool {
        self.running.is_some()
    }

    /// Takes in what the worker said.
    pub fn poll(&mut self, shared: &mut Shared) {
        let Some(running) = &mut self.running else {
            return;
        };
        let mut finished = None;
        for msg in running.job.poll() {
            match msg {
                EvalMsg::Progress(done, total) => (running.done, running.total) = (done, total),
                EvalMsg::NeedsMapping {
                    why,
                    folder,
                    classes,
                } => {
                    let choices = classes.into_iter().map(|c| (c, None)).collect();
                    self.mapping = Some(Mapping {
                        folder,
                        why,
                        choices,
                    });
                    finished = Some(None);
                }
                EvalMsg::Done(result) => finished = Some(Some(*result)),
            }
        }
        if finished.is_none()
            && let Some(why) = running.job.ended_without_result()
        {
            finished = Some(Some(Err(why)));
        }
        let Some(finished) = finished else { return };
        let switches = self.running.take().map(|r| r.switches).unwrap_or_default();
        match finished {
            Some(Ok(result)) => {
                let mut about = vec![format!("Folder: {}", result.folder.display())];
                about.extend(result.matched);
                if result.cancelled {
                    about.push("Cancelled: only the photos reached so far are counted.".into());
                }
                self.evaluation = Some(result.evaluated);
                self.leaks = (result.leaks, result.accuracy_without_leaks);
                self.used = switches;
                self.about = about;
                self.unclassified = result.unclassified;
                self.selected_cell = None;
            }
            Some(Err(e)) => shared.notices.push(format!("Evaluation failed: {e}")),
            None => {}
        }
    }

    /// The folder field, its buttons, the open folder's button, and the progress with Cancel.
    fn controls_ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &Shared,
        can_start: (bool, bool),
        commands: &mut Commands,
    ) {
        let (has_model, has_open_folder) = can_start;
        let idle = self.running.is_none() && has_model;
        ui.horizontal(|ui| {
            ui.label("Folder:");
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.folder_edit)
                    .hint_text("a labelled photo folder to test on (or drop one here)")
                    .desired_width(ui.available_width() - 400.0),
            );
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let typed = !self.folder_edit.trim().is_empty();
            if ui
                .add_enabled(idle && typed, egui::Button::new("Evaluate folder"))
                .on_disabled_hover_text("Train or open a model, and give a folder")
                .clicked()
                || (enter && idle && typed)
            {
                let folder = PathBuf::from(self.folder_edit.trim());
                commands.push(UiCommand::EvaluateFolder(folder));
            }
            if ui
                .add_enabled(
                    idle && shared.dialog.is_none(),
                    egui::Button::new("Choose folder…"),
                )
                .clicked()
            {
                commands.push(UiCommand::ChooseEvaluateFolder);
            }
            if ui
                .add_enabled(
                    idle && has_open_folder,
                    egui::Button::new("The Data folder"),
                )
                .on_hover_text("Evaluate on every photo of the folder open in the Data view")
                .on_disabled_hover_text("Open a folder in the Data view, and a model")
                .clicked()
            {
                commands.push(UiCommand::EvaluateDataset);
            }
        });
        if let Some(r) = &self.running {
            ui.horizontal(|ui| {
                let secs = r.started.elapsed().as_secs_f64().max(1e-3);
                let rate = r.done as f64 / secs;
                let eta = if r.done == 0 {
                    f64::NAN
                } else {
                    r.total.saturating_sub(r.done) as f64 / rate
                };
                let text = if r.total == 0 {
                    "Reading the folder…".to_owned()
                } else {
                    format!(
                        "Evaluating: {} of {} photos — {rate:.1} photos/s — {} left",
                        r.done,
                        r.total,
                        duration_text(eta)
                    )
                };
                let fraction = r.done as f32 / r.total.max(1) as f32;
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .text(text)
                        .desired_width(520.0),
                );
                if ui.button("Cancel").clicked() {
                    r.cancel.store(true, Ordering::Relaxed);
                }
            });
        }
    }

    /// Choices for folder classes the model does not name, and a button to evaluate with them.
    fn mapping_ui(&mut self, ui: &mut egui::Ui, model_classes: &[String], commands: &mut Commands) {
        let Some(mapping) = &mut self.mapping else {
            return;
        };
        ui.colored_label(ui.visuals().warn_fg_color, &mapping.why);
        ui.label("Which of the model's classes is each of the folder's?");
        egui::Grid::new("class-mapping").show(ui, |ui| {
            for (folder_class, choice) in &mut mapping.choices {
                ui.label(folder_class.as_str());
                let shown = choice
                    .and_then(|i| model_classes.get(i))
                    .map_or("(as named)", String::as_str);
                egui::ComboBox::from_id_salt(("map", folder_class.as_str()))
                    .selected_text(shown)
                    .show_ui(ui, |ui| {
                        ui.selectable_value(choice, None, "(as named)");
                        for (i, c) in model_classes.iter().enumerate() {
                            ui.selectable_value(choice, Some(i), c);
                        }
                    });
                ui.end_row();
            }
        });
        if ui.button("Evaluate with this mapping").clicked() {
            commands.push(UiCommand::EvaluateFolder(mapping.folder.clone()));
        }
    }

    /// The Evaluate view: `can_start` is (a model is loaded, a Data folder is open).
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        can_start: (bool, bool),
        model: &super::model::ModelPanel,
        commands: &mut Commands,
    ) {
        let model_classes = model.classes();
        ui.heading("Evaluation");
        self.controls_ui(ui, shared, can_start, commands);
        self.mapping_ui(ui, model_classes, commands);
        let Self {
            evaluation,
            about,
            unclassified,
            selected_cell,
            ..
        } = self;
        for line in about.iter() {
            ui.weak(line);
        }
        if !unclassified.is_empty() {
            super::widgets::collapsing(
                ui,
                egui::CollapsingHeader::new(format!("Not evaluated ({})", unclassified.len()))
                    .id_salt("not-evaluated"),
                |ui| {
                    for u in unclassified.iter() {
                        ui.label(format!("{}: {}", u.path.display(), u.reason));
                    }
                },
            );
        }
        let Some(data) = evaluation.as_ref() else {
            ui.label(
                "Train a model (its validation photos are evaluated here), or evaluate a model on \
                 a labelled folder: its class folders are matched to the model's classes by name.",
            );
            return;
        };
        let e = &data.evaluation;
        for warning in e.small_class_warnings() {
            ui.colored_label(ui.visuals().warn_fg_color, warning);
        }
        ui.label(format!(
            "{} — accuracy {:.2}% — log loss {:.4} — calibration error {:.2}%",
            crate::words::photos(e.count),
            100.0 * e.accuracy,
            e.log_loss,
            100.0 * e.reliability.ece
        ));
        let unknown = data.unknown();
        if let Some(unknown) = unknown.as_ref().filter(|u| !u.is_empty()) {
            let without = data.accuracy_of_known().map_or(String::new(), |a| {
                format!(" — accuracy without them {:.2}%", 100.0 * a)
            });
            ui.label(format!(
                "{}: {} ({}){without}",
                crate::words::sentence(crate::typical::NONE_OF_THESE),
                crate::words::photos(unknown.len()),
                crate::typical::NONE_OF_THESE_MEANS
            ));
        }
        if !self.leaks.0.is_empty() {
            let without = self.leaks.1.map_or(String::new(), |a| {
                format!(" — accuracy without them {:.2}%", 100.0 * a)
            });
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "Copies of training photos: {} (a leak: the accuracy counts photos the \
                     model learned from){without}",
                    crate::words::photos(self.leaks.0.len())
                ),
            );
        }
        ui.horizontal(|ui| {
            model.switches_ui(ui, self.used);
            shared.heatmaps.controls_ui(ui, model_classes);
        });
        egui::ScrollArea::vertical()
            .id_salt("evaluation")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                confusion_ui(ui, e, selected_cell);
                if let Some(unknown) = unknown.filter(|u| !u.is_empty()) {
                    unknown_ui(ui, data, &unknown, shared);
                }
                if !self.leaks.0.is_empty() {
                    leaks_ui(ui, data, &self.leaks.0, shared);
                }
                if let Some((t, p)) = *selected_cell {
                    let cell = e.cell(&data.labels, &data.probs, t, p);
                    ui.label(format!(
                        "{} of {} predicted as {}:",
                        crate::words::photos(cell.len()),
                        e.classes[t],
                        e.classes[p]
                    ));
                    let items: Vec<(PathBuf, usize, String)> = cell
                        .iter()
                        .take(60)
                        .map(|&i| {
                            (
                                data.images[i].clone(),
                                p,
                                format!(
                                    "{} {}",
                                    e.classes[p],
                                    crate::infer::confidence_text(data.probs[i][p])
                                ),
                            )
                        })
                        .collect();
                    gallery_ui(shared, ui, &items);
                }
                ui.separator();
                egui::Grid::new("per-class").striped(true).show(ui, |ui| {
                    for h in ["class", "precision", "recall", "F1", "photos"] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for m in &e.per_class {
                        ui.label(&m.class);
                        ui.label(format!("{:.3}", m.precision));
                        ui.label(format!("{:.3}", m.recall));
                        ui.label(format!("{:.3}", m.f1));
                        ui.label(m.support.to_string());
                        ui.end_row();
                    }
                });
                galleries_ui(ui, data, shared);
                let temperature = model.in_use.as_ref().and_then(|m| m.temperature);
                let classes = e.classes.len();
                super::reliability::reliability_ui(ui, &e.reliability, temperature, classes);
            });
    }
}

/// The confusion matrix: each cell a button that shows its photos below.
fn confusion_ui(ui: &mut egui::Ui, e: &Evaluation, selected_cell: &mut Option<(usize, usize)>) {
    ui.label(
        "Confusion matrix (rows: true class, columns: predicted); click a cell to see its photos:",
    );
    egui::Grid::new("confusion").show(ui, |ui| {
        ui.label("");
        for c in &e.classes {
            ui.strong(c);
        }
        ui.end_row();
        for (t, row) in e.confusion.iter().enumerate() {
            ui.strong(&e.classes[t]);
            let row_total: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = count as f32 / row_total.max(1) as f32;
                let color = if t == p {
                    egui::Color32::from_rgb(30, (60.0 + 160.0 * share) as u8, 60)
                } else {
                    egui::Color32::from_rgb((60.0 + 180.0 * share) as u8, 40, 40)
                };
                let selected = *selected_cell == Some((t, p));
                let button = egui::Button::new(
                    egui::RichText::new(count.to_string()).color(egui::Color32::WHITE),
                )
                .fill(color)
                .selected(selected)
                .min_size(egui::vec2(64.0, 32.0));
                if ui
                    .add(button)
                    .on_hover_text(format!(
                        "true {} → predicted {}",
                        e.classes[t], e.classes[p]
                    ))
                    .clicked()
                {
                    *selected_cell = if selected { None } else { Some((t, p)) };
                }
            }
            ui.end_row();
        }
    });
}

/// The photos judged *none of these*, least typical first, each with its true class and the
/// class the model would have given it.
fn unknown_ui(ui: &mut egui::Ui, data: &EvaluatedImages, unknown: &[usize], shared: &mut Shared) {
    let e = &data.evaluation;
    let mut order = unknown.to_vec();
    let typicality = |i: usize| data.typicality.get(i).map_or(0.0, |j| j.typicality);
    order.sort_by(|&a, &b| typicality(a).total_cmp(&typicality(b)));
    super::widgets::collapsing(
        ui,
        egui::CollapsingHeader::new(format!(
            "{} ({})",
            crate::words::sentence(crate::typical::NONE_OF_THESE),
            unknown.len()
        ))
        .id_salt("none-of-these"),
        |ui| {
            ui.label(format!(
                "Photos {}, least typical first: true class, then the class the model would \
                 give.",
                crate::typical::NONE_OF_THESE_MEANS
            ));
            let items: Vec<(PathBuf, usize, String)> = order
                .iter()
                .take(60)
                .map(|&i| {
                    let predicted = crate::metrics::argmax(&data.probs[i]);
                    let caption = format!(
                        "{} → {} {}",
                        e.classes[data.labels[i]],
                        e.classes[predicted],
                        crate::infer::confidence_text(data.probs[i][predicted])
                    );
                    (data.images[i].clone(), predicted, caption)
                })
                .collect();
            gallery_ui(shared, ui, &items);
        },
    );
}

/// The evaluated photos that copy a training photo, each captioned with the photo it copies.
fn leaks_ui(
    ui: &mut egui::Ui,
    data: &EvaluatedImages,
    leaks: &[crate::infer::Leak],
    shared: &mut Shared,
) {
    let predicted = |path: &PathBuf| {
        let i = data.images.iter().position(|p| p == path);
        i.map_or(0, |i| crate::metrics::argmax(&data.probs[i]))
    };
    super::widgets::collapsing(
        ui,
        egui::CollapsingHeader::new(format!("Copies of training photos ({})", leaks.len()))
            .id_salt("leaks"),
        |ui| {
            let items: Vec<(PathBuf, usize, String)> = leaks
                .iter()
                .take(60)
                .map(|l| {
                    let caption = format!("copy of {}", l.training_photo);
                    (l.path.clone(), predicted(&l.path), caption)
                })
                .collect();
            gallery_ui(shared, ui, &items);
        },
    );
}

/// Per class: the most confident mistakes, the most uncertain and the most confident right.
fn galleries_ui(ui: &mut egui::Ui, data: &EvaluatedImages, shared: &mut Shared) {
    let e = &data.evaluation;
    let caption = |item: &GalleryItem, classes: &[String]| {
        format!(
            "{} {}",
            classes[item.predicted],
            crate::infer::confidence_text(item.confidence)
        )
    };
    for (c, g) in e.galleries.iter().enumerate() {
        super::widgets::collapsing(
            ui,
            egui::CollapsingHeader::new(format!("Galleries: {}", e.classes[c]))
                .id_salt(("galleries", c))
                .default_open(c == 0),
            |ui| {
                for (title, list) in [
                    ("Most confident mistakes", &g.confident_mistakes),
                    ("Most uncertain", &g.most_uncertain),
                    ("Most confident right", &g.confident_right),
                ] {
                    ui.label(title);
                    let items: Vec<(PathBuf, usize, String)> = list
                        .iter()
                        .map(|i| {
                            (
                                data.images[i.index].clone(),
                                i.predicted,
                                caption(i, &e.classes),
                            )
                        })
                        .collect();
                    if items.is_empty() {
                        ui.weak("none");
                    }
                    gallery_ui(shared, ui, &items);
                }
            },
        );
    }
}

fn gallery_ui(shared: &mut Shared, ui: &mut egui::Ui, items: &[(PathBuf, usize, String)]) {
    let size = 96.0;
    let per_row = ((ui.available_width() / (size + 10.0)).floor() as usize).max(1);
    for row in items.chunks(per_row) {
        ui.horizontal(|ui| {
            for (path, predicted, caption) in row {
                ui.vertical(|ui| {
                    ui.set_width(size);
                    let (thumbnails, heatmaps) = (&mut shared.thumbnails, &mut shared.heatmaps);
                    super::heatmaps::photo_ui(ui, thumbnails, heatmaps, path, size, *predicted)
                        .on_hover_text(path.display().to_string());
                    ui.small(caption);
                });
            }
        });
    }
}

/// The worker's part: scan the folder (unless it is the open one), match its classes, evaluate
/// with progress. `None` when the user must map classes first (the message is sent).
fn evaluate(
    r: &Reporter<EvalMsg>,
    classifier: &Mutex<Classifier>,
    source: EvalSource,
    mapping: &[ClassMapping],
    cancel: &AtomicBool,
) -> Option<Result<DatasetEvaluation, String>> {
    let dataset = match source {
        EvalSource::Open(d) => d,
        EvalSource::Folder(path) => match Dataset::scan(&path) {
            Ok(d) => Arc::new(d),
            Err(e) => return Some(Err(e.to_string())),
        },
    };
    let Ok(c) = classifier.lock() else {
        return Some(Err("the model is unavailable".into()));
    };
    if let Err(why) = match_classes(c.classes(), &dataset.classes, mapping) {
        let model = c.classes();
        let classes = dataset
            .classes
            .iter()
            .filter(|f| match_classes(model, std::slice::from_ref(*f), mapping).is_err())
            .cloned()
            .collect();
        r.send(EvalMsg::NeedsMapping {
            why,
            folder: dataset.root.clone(),
            classes,
        });
        return None;
    }
    let progress = |done, total| r.send(EvalMsg::Progress(done, total));
    Some(c.evaluate(&dataset, 16, mapping, progress, cancel))
}
