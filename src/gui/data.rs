//! The Data view: a photo folder (typed, chosen in a dialog or dropped), its classes and counts,
//! thumbnails of each class and every skipped file with its reason. Scans run on a worker.

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;

use super::jobs::Job;
use super::{Commands, Shared, UiCommand};
use crate::data::{Dataset, Layout};

/// The Data view's state: the open folder and its scan.
#[derive(Default)]
pub(crate) struct DataPanel {
    scan: Option<Job<Result<Dataset, String>>>,
    /// The scanned folder.
    pub dataset: Option<Arc<Dataset>>,
    scan_error: Option<String>,
    shown_class: usize,
    path_edit: String,
    /// Check data: wrong labels, duplicates, photos of no class, unusable photos, small classes.
    pub audit: super::audit::AuditPanel,
}

impl DataPanel {
    /// A panel whose path field shows `path`.
    pub fn new(path: String) -> Self {
        Self {
            path_edit: path,
            ..Self::default()
        }
    }

    /// Scans `path` on a worker.
    pub fn open(&mut self, ctx: &egui::Context, shared: &mut Shared, path: PathBuf) {
        self.path_edit = path.display().to_string();
        shared.state.data_path = self.path_edit.clone();
        self.scan_error = None;
        self.scan = Some(Job::once(ctx, "scan", move || {
            Dataset::scan(&path).map_err(|e| e.to_string())
        }));
    }

    /// True while a scan or a label audit runs.
    pub fn is_busy(&self) -> bool {
        self.is_scanning() || self.audit.is_busy()
    }

    /// True while a scan runs.
    pub fn is_scanning(&self) -> bool {
        self.scan.is_some()
    }

    /// Takes in a finished scan.
    pub fn poll(&mut self) {
        if let Some(job) = &mut self.scan
            && let Some(result) = job.poll_finished()
        {
            self.scan = None;
            match result {
                Ok(d) => {
                    self.dataset = Some(Arc::new(d));
                    self.shown_class = 0;
                }
                Err(e) => self.scan_error = Some(e),
            }
        }
        let root = self.dataset.as_ref().map(|d| d.root.as_path());
        self.audit.poll(root);
    }

    /// The Data view.
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, commands: &mut Commands) {
        ui.heading("Photos");
        self.folder_row_ui(ui, shared, commands);
        ui.weak("…or drop a folder anywhere on this window.");
        ui.add_space(6.0);
        if self.scan.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Scanning…");
            });
            return;
        }
        if let Some(e) = &self.scan_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
            return;
        }
        let Some(dataset) = self.dataset.clone() else {
            first_steps_ui(ui);
            return;
        };
        self.summary_ui(ui, &dataset);
        self.audit.ui(ui, shared, &dataset, commands);
        ui.separator();
        self.thumbnails_ui(ui, shared, &dataset);
    }

    /// The folder field, Open and Choose folder….
    fn folder_row_ui(&mut self, ui: &mut egui::Ui, shared: &Shared, commands: &mut Commands) {
        ui.horizontal(|ui| {
            ui.label("Folder:");
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.path_edit)
                    .hint_text(
                        "a folder of photos: one sub-folder per class, or Kaggle's cat.1.jpg",
                    )
                    .desired_width(ui.available_width() - 220.0),
            );
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Open").clicked() || enter {
                commands.push(UiCommand::OpenDataset(PathBuf::from(self.path_edit.trim())));
            }
            if ui
                .add_enabled(shared.dialog.is_none(), egui::Button::new("Choose folder…"))
                .clicked()
            {
                commands.push(UiCommand::ChooseDataFolder);
            }
        });
    }

    /// The folder's layout, problems, classes with counts (a class is clicked to show its
    /// photos) and skipped files.
    fn summary_ui(&mut self, ui: &mut egui::Ui, dataset: &Dataset) {
        let counts = dataset.counts();
        let total: usize = counts.iter().sum();
        if total == 0 {
            ui.label(format!(
                "{} — no photos found: give a folder with one sub-folder of photos per class, \
                 or photos named like cat.1.jpg",
                dataset.root.display()
            ));
        } else {
            ui.label(format!(
                "{} — {} ({}, {})",
                dataset.root.display(),
                match dataset.layout {
                    Layout::FoldersAsLabels => "one folder per class",
                    Layout::KaggleFlat => "Kaggle flat layout",
                },
                crate::words::photos(total),
                crate::words::count(dataset.classes.len(), "class", "classes"),
            ));
        }
        if let Some(valid) = &dataset.explicit_valid {
            ui.label(format!(
                "Validation folder: {} images (used instead of a random split)",
                valid.len()
            ));
        }
        for problem in &dataset.problems {
            let color = if problem.blocks_training() {
                ui.visuals().error_fg_color
            } else {
                ui.visuals().warn_fg_color
            };
            ui.colored_label(color, problem.to_string());
        }
        egui::Grid::new("classes").striped(true).show(ui, |ui| {
            for (i, (class, count)) in dataset.classes.iter().zip(&counts).enumerate() {
                if ui.selectable_label(self.shown_class == i, class).clicked() {
                    self.shown_class = i;
                }
                ui.label(count.to_string());
                let share = if total > 0 {
                    *count as f32 / total as f32
                } else {
                    0.0
                };
                ui.add(
                    egui::ProgressBar::new(share)
                        .desired_width(240.0)
                        .text(format!("{:.1}%", 100.0 * share)),
                );
                ui.end_row();
            }
        });
        // Always there, at 0 too: the first photo excluded must not push what is below down
        // under the pointer.
        {
            super::widgets::collapsing(
                ui,
                egui::CollapsingHeader::new(format!("Files left out ({})", dataset.skipped.len()))
                    .id_salt("skipped"),
                |ui| {
                    egui::ScrollArea::vertical()
                        .max_height(140.0)
                        .id_salt("skipped-list")
                        .show(ui, |ui| {
                            if dataset.skipped.is_empty() {
                                ui.weak("None: every file in the folder was read.");
                            }
                            for s in &dataset.skipped {
                                ui.label(format!("{}: {}", s.path.display(), s.message));
                            }
                        });
                },
            );
        }
    }

    /// The photos of the class shown, as a grid of thumbnails made on workers.
    fn thumbnails_ui(&self, ui: &mut egui::Ui, shared: &mut Shared, dataset: &Dataset) {
        let class = self
            .shown_class
            .min(dataset.classes.len().saturating_sub(1));
        let images: Vec<&crate::data::ImageEntry> =
            dataset.images.iter().filter(|i| i.label == class).collect();
        if let Some(name) = dataset.classes.get(class) {
            ui.label(format!("{name}: {}", crate::words::photos(images.len())));
        }
        let size = 112.0;
        let cell = (size + 6.0, size + 6.0);
        super::thumbnails::grid_ui(ui, "thumbnail-grid", images.len(), cell, |ui, i| {
            let image = images[i];
            shared
                .thumbnails
                .show(ui, &image.path, size)
                .on_hover_text(format!("{} ({}×{})", image.rel, image.width, image.height));
        });
    }
}

/// What a new user sees before any folder is open: the five steps and what each needs.
fn first_steps_ui(ui: &mut egui::Ui) {
    ui.add_space(12.0);
    ui.heading("Getting started");
    let steps = [
        (
            "1. Data",
            "a folder of labelled photos: one sub-folder per class (cats/, dogs/, …), or \
             Kaggle's cat.1.jpg / dog.1.jpg names. A few hundred photos a class is plenty.",
        ),
        (
            "2. Weights",
            "VGG16 trained on ImageNet: download it once (528 MB), or import a .pth, \
             .safetensors or VGG16 .onnx file. Drop a weights file on the window to import it.",
        ),
        (
            "3. Train",
            "Start: the photos go through VGG16 once (minutes on a CPU), then the new head \
             learns in seconds an epoch; watch the curves.",
        ),
        (
            "4. Evaluate",
            "the last run's validation photos, or any labelled folder the model has not seen.",
        ),
        (
            "5. Predict",
            "drop photos or folders on the window; export a CSV, a Kaggle submission, or the \
             model itself (Model menu: ONNX, safetensors).",
        ),
    ];
    egui::Grid::new("first-steps")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            for (step, what) in steps {
                ui.strong(step);
                ui.add(egui::Label::new(what).wrap());
                ui.end_row();
            }
        });
}
