//! The Evaluate view: accuracy, log loss, the confusion matrix whose cells show their photos,
//! per-class precision and recall, and galleries of confident mistakes, uncertain and confident
//! right photos. Evaluations run on a worker.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use eframe::egui;

use super::jobs::Job;
use super::{Commands, Shared, Thumbnails, UiCommand};
use crate::data::Dataset;
use crate::infer::Classifier;
use crate::train::metrics::{EvaluatedImages, Evaluation, GalleryItem};

/// The Evaluate view's state: the evaluation shown and the one being made.
#[derive(Default)]
pub(crate) struct EvaluatePanel {
    /// The evaluation shown.
    pub evaluation: Option<EvaluatedImages>,
    job: Option<Job<Result<EvaluatedImages, String>>>,
    selected_cell: Option<(usize, usize)>,
}

impl EvaluatePanel {
    /// Shows `evaluation` (a finished run's validation pass).
    pub fn show(&mut self, evaluation: EvaluatedImages) {
        self.evaluation = Some(evaluation);
        self.selected_cell = None;
    }

    /// Forgets the evaluation (a new model).
    pub fn clear(&mut self) {
        self.evaluation = None;
        self.selected_cell = None;
    }

    /// Evaluates `classifier` on every photo of `dataset`, on a worker.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        classifier: Arc<Mutex<Classifier>>,
        dataset: Arc<Dataset>,
    ) {
        self.job = Some(Job::once(ctx, "evaluate", move || {
            let c = classifier
                .lock()
                .map_err(|_| "the model is unavailable".to_owned())?;
            Ok(c.evaluate(&dataset, 16, |_, _| {})?.evaluated)
        }));
    }

    /// True while an evaluation runs.
    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// Takes in a finished evaluation.
    pub fn poll(&mut self, shared: &mut Shared) {
        if let Some(job) = &mut self.job
            && let Some(result) = job.poll_finished()
        {
            self.job = None;
            match result {
                Ok(e) => self.show(e),
                Err(e) => shared.notices.push(format!("Evaluation failed: {e}")),
            }
        }
    }

    /// The Evaluate view; `can_start` when a model and a folder are open.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        can_start: bool,
        commands: &mut Commands,
    ) {
        let Self {
            evaluation,
            job,
            selected_cell,
        } = self;
        ui.horizontal(|ui| {
            ui.heading("Evaluation");
            let can = can_start && job.is_none();
            if ui
                .add_enabled(can, egui::Button::new("Evaluate on the open folder"))
                .on_hover_text("Runs the current model on every photo of the open folder")
                .clicked()
            {
                commands.push(UiCommand::EvaluateDataset);
            }
            if job.is_some() {
                ui.spinner();
            }
        });
        let Some(data) = evaluation.as_ref() else {
            ui.label(
                "Train a model (its validation photos are evaluated) or evaluate a model on a folder.",
            );
            return;
        };
        let e = &data.evaluation;
        ui.label(format!(
            "{} photos — accuracy {:.2}% — log loss {:.4}",
            e.count,
            100.0 * e.accuracy,
            e.log_loss
        ));
        egui::ScrollArea::vertical()
            .id_salt("evaluation")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                confusion_ui(ui, e, selected_cell);
                if let Some((t, p)) = *selected_cell {
                    let cell = e.cell(&data.labels, &data.probs, t, p);
                    ui.label(format!(
                        "{} photos of {} predicted as {}:",
                        cell.len(),
                        e.classes[t],
                        e.classes[p]
                    ));
                    let items: Vec<(PathBuf, String)> = cell
                        .iter()
                        .take(60)
                        .map(|&i| {
                            (
                                data.images[i].clone(),
                                format!("{:.1}%", 100.0 * data.probs[i][p]),
                            )
                        })
                        .collect();
                    gallery_ui(&mut shared.thumbnails, ui, &items);
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
                galleries_ui(ui, data, &mut shared.thumbnails);
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

/// Per class: the most confident mistakes, the most uncertain and the most confident right.
fn galleries_ui(ui: &mut egui::Ui, data: &EvaluatedImages, thumbnails: &mut Thumbnails) {
    let e = &data.evaluation;
    let caption = |item: &GalleryItem, classes: &[String]| {
        format!(
            "{} {:.1}%",
            classes[item.predicted],
            100.0 * item.confidence
        )
    };
    for (c, g) in e.galleries.iter().enumerate() {
        egui::CollapsingHeader::new(format!("Galleries: {}", e.classes[c]))
            .id_salt(("galleries", c))
            .default_open(c == 0)
            .show(ui, |ui| {
                for (title, list) in [
                    ("Most confident mistakes", &g.confident_mistakes),
                    ("Most uncertain", &g.most_uncertain),
                    ("Most confident right", &g.confident_right),
                ] {
                    ui.label(title);
                    let items: Vec<(PathBuf, String)> = list
                        .iter()
                        .map(|i| (data.images[i.index].clone(), caption(i, &e.classes)))
                        .collect();
                    if items.is_empty() {
                        ui.weak("none");
                    }
                    gallery_ui(thumbnails, ui, &items);
                }
            });
    }
}

fn gallery_ui(thumbnails: &mut Thumbnails, ui: &mut egui::Ui, items: &[(PathBuf, String)]) {
    let size = 96.0;
    let per_row = ((ui.available_width() / (size + 10.0)).floor() as usize).max(1);
    for row in items.chunks(per_row) {
        ui.horizontal(|ui| {
            for (path, caption) in row {
                ui.vertical(|ui| {
                    ui.set_width(size);
                    thumbnails
                        .show(ui, path, size)
                        .on_hover_text(path.display().to_string());
                    ui.small(caption);
                });
            }
        });
    }
}
