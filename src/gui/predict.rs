//! The Predict view: photos dropped on the window, pasted, or chosen, classified on workers while
//! training goes on; every file that could not be classified says why; CSV and Kaggle export.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use eframe::egui;

use super::jobs::{self, Job};
use super::model::{ModelPanel, Switches};
use super::{Commands, Shared, UiCommand};
use crate::infer::{self, Classifier, Prediction, Unclassified};

/// How the Predict grid is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Sort {
    #[default]
    Added,
    Name,
    LeastSure,
}

/// One photo's card: its thumbnail, the class with the confidence, its name; every class's
/// probability on hover.
fn card_ui(
    ui: &mut egui::Ui,
    (thumbnails, heatmaps): (&mut super::Thumbnails, &mut super::heatmaps::Heatmaps),
    p: &Prediction,
    classes: &[String],
    size: f32,
) {
    ui.vertical(|ui| {
        ui.set_width(size);
        let all: Vec<String> = classes
            .iter()
            .zip(&p.probabilities)
            .map(|(c, v)| format!("{c}: {}", infer::confidence_text(*v)))
            .collect();
        super::heatmaps::photo_ui(ui, thumbnails, heatmaps, &p.path, size, p.class)
            .on_hover_text(format!("{}\n{}", p.path.display(), all.join("\n")));
        ui.label(badge(p, classes))
            .on_hover_text(verdict_words(p, classes));
        let name = p
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ui.add(egui::Label::new(egui::RichText::new(name).small()).truncate());
    });
}

/// The badge under a photo: its class and calibrated confidence, or *none of these*.
fn badge(p: &Prediction, classes: &[String]) -> egui::RichText {
    let class = classes.get(p.class).map_or("?", String::as_str);
    let confidence = p.probabilities.get(p.class).copied().unwrap_or(0.0);
    let (text, colour) = if p.is_unknown() {
        let text = crate::typical::NONE_OF_THESE.to_owned();
        (text, egui::Color32::from_rgb(70, 70, 70))
    } else {
        let text = format!("{class} {}", infer::confidence_text(confidence));
        (text, super::widgets::class_colour(p.class))
    };
    egui::RichText::new(text)
        .strong()
        .color(egui::Color32::WHITE)
        .background_color(colour)
}

/// What the badge means, on hover: how typical the photo is, and for *none of these*, which
/// class it looks most like.
fn verdict_words(p: &Prediction, classes: &[String]) -> String {
    let class = classes.get(p.class).map_or("?", String::as_str);
    let confidence = p.probabilities.get(p.class).copied().unwrap_or(0.0);
    let Some(j) = p.typicality else {
        return format!("{class}, {} sure", infer::confidence_text(confidence));
    };
    let typical = if j.typicality > 0.0 {
        format!(
            "more typical than {} of the training photos",
            infer::confidence_text(j.typicality)
        )
    } else {
        "further from them than any training photo is from the others".to_owned()
    };
    if p.is_unknown() {
        format!(
            "None of these: {} ({typical}). Of the classes it looks most like {class} ({}).",
            crate::typical::NONE_OF_THESE_MEANS,
            infer::confidence_text(confidence)
        )
    } else {
        format!(
            "{class}, {} sure; {typical}",
            infer::confidence_text(confidence)
        )
    }
}

/// What a prediction worker says: how many photos it found to classify, then its results.
enum PredictMsg {
    Queued(usize),
    Batch(Vec<Prediction>, Vec<Unclassified>),
}

/// The Predict view's state: the predictions and the work that makes them.
#[derive(Default)]
pub(crate) struct PredictPanel {
    /// The predictions, in the order they came.
    pub predictions: Vec<Prediction>,
    /// Files that could not be classified, with why.
    pub rejected: Vec<Unclassified>,
    jobs: Vec<Job<PredictMsg>>,
    /// Photos queued and classified by the jobs running now, since the first of them started.
    progress: (usize, usize, Option<std::time::Instant>),
    /// Set by Cancel: the jobs stop before their next batch.
    cancel: Arc<std::sync::atomic::AtomicBool>,
    paste_job: Option<Job<Result<PathBuf, String>>>,
    files_dialog: Option<(Job<Option<Vec<PathBuf>>>, std::time::Instant)>,
    /// Files with a prediction or a reason: dropped again, they are not added twice.
    known: std::collections::HashSet<PathBuf>,
    filter: Option<Filter>,
    sort: Sort,
    /// The model's switches when the last photos were classified.
    used: Option<Switches>,
}

/// Which photos the grid shows, besides all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    /// Those given this class.
    Class(usize),
    /// Those that are *none of these*.
    Unknown,
}

impl PredictPanel {
    /// Classifies the images among `inputs` (folders are walked) with `classifier`, on a worker.
    pub fn classify(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared,
        (classifier, switches): (Option<Arc<Mutex<Classifier>>>, Switches),
        inputs: Vec<PathBuf>,
    ) {
        shared.state.view = super::View::Predict;
        let Some(classifier) = classifier else {
            shared
                .notices
                .push("Train or open a model first; then drop images to classify them.".into());
            return;
        };
        self.used = Some(switches);
        if self.jobs.is_empty() {
            self.progress = (0, 0, Some(std::time::Instant::now()));
            self.cancel
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        let cancel = self.cancel.clone();
        let known = self.known.clone();
        self.jobs.push(Job::spawn(ctx, "predict", move |r| {
            // Walking folders and checking every file is work for this thread, not the UI's.
            let (mut paths, mut rejected) = infer::collect_images(&inputs);
            // Files already shown are not classified again.
            paths.retain(|p| !known.contains(p));
            rejected.retain(|u| !known.contains(&u.path));
            r.send(PredictMsg::Queued(paths.len() + rejected.len()));
            r.send(PredictMsg::Batch(Vec::new(), rejected));
            for chunk in paths.chunks(8) {
                if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let (p, f) = match classifier.lock() {
                    Ok(c) => c.predict(chunk, 8, |_, _| {}),
                    Err(_) => return,
                };
                r.send(PredictMsg::Batch(p, f));
            }
        }));
    }

    /// Saves the clipboard's image and classifies it (Ctrl+V, or the button).
    pub fn paste(&mut self, ctx: &egui::Context, shared: &Shared) {
        if self.paste_job.is_none() {
            let dir = shared.work_dir.join("pasted");
            self.paste_job = Some(Job::once(ctx, "paste", move || paste_image(&dir)));
        }
    }

    /// Asks for image files in a dialog.
    pub fn choose_files(&mut self, ctx: &egui::Context) {
        self.files_dialog = Some((jobs::pick_files(ctx), std::time::Instant::now()));
    }

    /// Forgets every prediction.
    pub fn clear(&mut self) {
        self.predictions.clear();
        self.rejected.clear();
        self.known.clear();
        self.filter = None;
    }

    /// True while predictions are being made.
    pub fn is_busy(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Takes in the workers' results; returns files a dialog or the clipboard gave, to classify.
    pub fn poll(&mut self, shared: &mut Shared) -> Vec<PathBuf> {
        for job in &mut self.jobs {
            for msg in job.poll() {
                let (p, f) = match msg {
                    PredictMsg::Queued(n) => {
                        self.progress.1 += n;
                        continue;
                    }
                    PredictMsg::Batch(p, f) => (p, f),
                };
                self.progress.0 += p.len() + f.len();
                for prediction in p {
                    if self.known.insert(prediction.path.clone()) {
                        self.predictions.push(prediction);
                    }
                }
                for rejected in f {
                    if self.known.insert(rejected.path.clone()) {
                        self.rejected.push(rejected);
                    }
                }
            }
            if let Some(why) = job.failure() {
                shared.notices.push(format!("Prediction stopped: {why}"));
            }
        }
        self.jobs.retain(|j| !j.is_finished());
        let mut to_classify = Vec::new();
        if let Some(job) = &mut self.paste_job
            && let Some(result) = job.poll_finished()
        {
            self.paste_job = None;
            match result {
                Ok(path) => to_classify.push(path),
                Err(e) => shared.notices.push(e),
            }
        }
        if let Some((job, opened)) = &mut self.files_dialog {
            let answer = job.poll().pop();
            if answer.is_some() || job.is_finished() {
                let quick = opened.elapsed() < super::prompt::TOO_QUICK;
                self.files_dialog = None;
                match answer.flatten() {
                    Some(paths) => to_classify.extend(paths),
                    None if quick => shared.notices.push(format!(
                        "{} Drop photos or folders on the window to classify them.",
                        super::prompt::NO_DIALOG_SHORT
                    )),
                    None => {}
                }
            }
        }
        to_classify
    }

    /// The Predict view; `model` says which model classifies.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        model: &ModelPanel,
        commands: &mut Commands,
    ) {
        self.toolbar_ui(ui, commands);
        match (&model.in_use, model.is_loading()) {
            (_, true) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Loading the model…");
                });
            }
            (Some(_), false) => {
                ui.label(format!(
                    "Model: {} — drop image files or folders anywhere on the window to classify them.",
                    model.classes().join(" / ")
                ));
            }
            (None, false) => {
                ui.label("Train or open a model (Model menu) first; then drop images here.");
            }
        }
        if !self.rejected.is_empty() {
            super::widgets::collapsing(
                ui,
                egui::CollapsingHeader::new(format!("Not classified ({})", self.rejected.len()))
                    .id_salt("rejected")
                    .default_open(true),
                |ui| {
                    for r in &self.rejected {
                        ui.colored_label(
                            ui.visuals().warn_fg_color,
                            format!("{}: {}", r.path.display(), r.reason),
                        );
                    }
                },
            );
        }
        self.summary_ui(ui, model.classes());
        let shown = self.shown();
        let classes = model.classes();
        if model.in_use.is_some() {
            ui.horizontal(|ui| {
                let used = self.used.filter(|_| !self.predictions.is_empty());
                model.switches_ui(ui, used.unwrap_or_default());
                if !self.predictions.is_empty() {
                    shared.heatmaps.controls_ui(ui, classes);
                }
            });
        }
        let photos = (&mut shared.thumbnails, &mut shared.heatmaps);
        let card = 150.0;
        let cell = (card + 8.0, card + 46.0);
        super::thumbnails::grid_ui(ui, "predictions", shown.len(), cell, |ui, i| {
            card_ui(
                ui,
                (&mut *photos.0, &mut *photos.1),
                &self.predictions[shown[i]],
                classes,
                card,
            );
        });
    }

    /// Totals per class (each a filter) and the sort order.
    fn summary_ui(&mut self, ui: &mut egui::Ui, classes: &[String]) {
        if self.predictions.is_empty() {
            return;
        }
        let mut counts = vec![0usize; classes.len()];
        let mut unknown = 0;
        for p in &self.predictions {
            if p.is_unknown() {
                unknown += 1;
            } else if let Some(c) = counts.get_mut(p.class) {
                *c += 1;
            }
        }
        let judged = self.predictions.iter().any(|p| p.typicality.is_some());
        ui.horizontal(|ui| {
            let all = format!("All: {}", crate::words::photos(self.predictions.len()));
            if ui.selectable_label(self.filter.is_none(), all).clicked() {
                self.filter = None;
            }
            for (i, (class, count)) in classes.iter().zip(&counts).enumerate() {
                let label = format!("{class}: {count}");
                let filter = Some(Filter::Class(i));
                if ui.selectable_label(self.filter == filter, label).clicked() {
                    self.filter = filter;
                }
            }
            if judged || self.filter == Some(Filter::Unknown) {
                let label = format!("{}: {unknown}", crate::typical::NONE_OF_THESE);
                let filter = Some(Filter::Unknown);
                if ui
                    .selectable_label(self.filter == filter, label)
                    .on_hover_text(crate::words::sentence(crate::typical::NONE_OF_THESE_MEANS))
                    .clicked()
                {
                    self.filter = filter;
                }
            }
            ui.separator();
            ui.label("Sort:");
            for (sort, name) in [
                (Sort::Added, "as added"),
                (Sort::Name, "by name"),
                (Sort::LeastSure, "least sure first"),
            ] {
                ui.selectable_value(&mut self.sort, sort, name);
            }
        });
    }

    /// The predictions shown, in the order shown (filtered by class, sorted).
    fn shown(&self) -> Vec<usize> {
        let mut shown: Vec<usize> = (0..self.predictions.len())
            .filter(|&i| {
                let p = &self.predictions[i];
                match self.filter {
                    None => true,
                    Some(Filter::Class(c)) => !p.is_unknown() && p.class == c,
                    Some(Filter::Unknown) => p.is_unknown(),
                }
            })
            .collect();
        let p = &self.predictions;
        match self.sort {
            Sort::Added => {}
            Sort::Name => shown.sort_by(|&a, &b| {
                infer::natural_cmp(&p[a].path.to_string_lossy(), &p[b].path.to_string_lossy())
            }),
            Sort::LeastSure => shown.sort_by(|&a, &b| {
                let top = |i: usize| p[i].probabilities.get(p[i].class).copied().unwrap_or(0.0);
                top(a).total_cmp(&top(b))
            }),
        }
        shown
    }

    /// Add images, Paste, Export CSV, Kaggle submission, Clear.
    fn toolbar_ui(&self, ui: &mut egui::Ui, commands: &mut Commands) {
        ui.horizontal(|ui| {
            ui.heading("Predict");
            if ui
                .add_enabled(
                    self.files_dialog.is_none(),
                    egui::Button::new("Add images…"),
                )
                .clicked()
            {
                commands.push(UiCommand::AddImages);
            }
            if ui
                .add_enabled(self.paste_job.is_none(), egui::Button::new("Paste image"))
                .on_hover_text("Classify the image on the clipboard (Ctrl+V)")
                .clicked()
            {
                commands.push(UiCommand::PasteImage);
            }
            // Exports wait for every photo: a submission written mid-way would miss rows.
            let any = !self.predictions.is_empty() && self.jobs.is_empty();
            if ui
                .add_enabled(any, egui::Button::new("Export CSV…"))
                .clicked()
            {
                commands.push(UiCommand::ExportCsv);
            }
            if ui
                .add_enabled(any, egui::Button::new("Kaggle submission…"))
                .on_hover_text(format!(
                    "id,label with label = P(dog), clipped to [{}, {}]",
                    infer::KAGGLE_CLIP,
                    1.0 - infer::KAGGLE_CLIP
                ))
                .clicked()
            {
                commands.push(UiCommand::ExportSubmission);
            }
            if ui
                .add_enabled(any || !self.rejected.is_empty(), egui::Button::new("Clear"))
                .clicked()
            {
                commands.push(UiCommand::ClearPredictions);
            }
        });
        self.progress_ui(ui, commands);
    }

    /// N of M photos, rate, time left and Cancel, while photos are being classified.
    fn progress_ui(&self, ui: &mut egui::Ui, commands: &mut Commands) {
        let (done, total, started) = self.progress;
        let Some(started) = started.filter(|_| !self.jobs.is_empty()) else {
            return;
        };
        ui.horizontal(|ui| {
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            // Before the first photo there is no rate to tell the time left by.
            let eta = if done == 0 {
                f64::NAN
            } else {
                total.saturating_sub(done) as f64 / rate
            };
            let text = if done == 0 {
                format!("Classifying: 0 of {total} photos — starting…")
            } else {
                format!(
                    "Classifying: {done} of {total} photos — {rate:.1} a second — about {} left",
                    crate::train::log::duration_text(eta)
                )
            };
            let fraction = done as f32 / total.max(1) as f32;
            ui.add(
                egui::ProgressBar::new(fraction)
                    .text(text)
                    .desired_width(520.0),
            );
            if ui.button("Cancel").clicked() {
                commands.push(UiCommand::CancelPredictions);
            }
        });
    }

    /// Stops the prediction jobs before their next batch.
    pub fn cancel(&self) {
        self.cancel
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Saves the image on the clipboard as a PNG in `dir` and returns its path.
fn paste_image(dir: &std::path::Path) -> Result<PathBuf, String> {
    let mut clipboard =
        arboard::Clipboard::new().map_err(|e| format!("The clipboard is not available: {e}"))?;
    let image = clipboard
        .get_image()
        .map_err(|_| "There is no image on the clipboard.".to_owned())?;
    let rgba = image::RgbaImage::from_raw(
        image.width as u32,
        image.height as u32,
        image.bytes.into_owned(),
    )
    .ok_or("The clipboard's image is malformed.")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let path = dir.join(format!("pasted-{stamp}.png"));
    rgba.save(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
