//! The Model menu's state: the model in use (trained here or opened), whether it is saved, and
//! the jobs that load, save and export it. Every model-sized file is read and written on a
//! worker, never on the UI thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use eframe::egui;

use super::Shared;
use super::jobs::Job;
use crate::infer::Classifier;
use crate::model::export::{ExportFormat, export_model};

/// What a model file says of its training, for the Train and Evaluate views.
pub(crate) struct Loaded {
    /// True for a model the user opened (or the one restored at start), false for a run's.
    pub opened: bool,
    pub history: Vec<crate::train::EpochMetrics>,
    pub validation: Option<crate::metrics::EvaluatedImages>,
}

/// What a model's load gives: the model and its file, or why it could not be loaded.
type Loading = Result<(Classifier, PathBuf), String>;

/// The model's switches as they stood when a job began: what the results on screen were made
/// with (`None`: not known, or no such switch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Switches {
    /// Average views (test-time augmentation).
    pub mirror: Option<bool>,
    /// Say "none of these".
    pub verdict: Option<bool>,
}

/// The model in use: one value for everything the window says of it (Save copies its file,
/// Quit and Start ask when it is not saved, Fine-tune deeper continues it, the title names
/// it), replaced whole when another model loads.
pub(crate) struct InUse {
    /// The loaded model, shared with prediction and evaluation workers.
    pub classifier: Arc<Mutex<Classifier>>,
    /// Its class names.
    pub classes: Vec<String>,
    /// How it prepares photos.
    pub preprocessing: crate::data::Preprocessing,
    /// The epochs it was trained for (a deeper stage's come after them).
    pub epochs: usize,
    /// Its network's shape (a deeper stage keeps its head).
    pub network: crate::model::Vgg16Config,
    /// Its test-time augmentation switch.
    pub mirror_tta: Arc<std::sync::atomic::AtomicBool>,
    /// Its *none of these* switch.
    pub verdict: Arc<std::sync::atomic::AtomicBool>,
    /// The temperature of its confidences, when one was fitted.
    pub temperature: Option<f32>,
    /// What its training photos' features say (`None`: the model keeps none, no verdict).
    pub typicality: Option<crate::typical::TypicalitySummary>,
    /// Its file: a run's model file until the user saves it under a name of theirs.
    pub file: PathBuf,
    /// False for a model a run wrote that the user has not saved.
    pub saved: bool,
    /// Which load this is: a save of the file names the load it copied, so that a model
    /// loaded meanwhile from the same file (a run's) is not taken for saved.
    pub generation: u64,
}

/// The model in use and the work on its file.
#[derive(Default)]
pub(crate) struct ModelPanel {
    /// The model in use, if any.
    pub in_use: Option<InUse>,
    /// The load in progress, and whether the model will count as saved once it loads.
    load_job: Option<(Job<Loading>, bool)>,
    save_job: Option<Job<Result<(u64, PathBuf), String>>>,
    export_job: Option<Job<Result<String, String>>>,
    /// Set when a save failed, until the app has seen it (a quit waiting for it is called off).
    pub save_failed: bool,
    /// Models loaded so far (each [`InUse::generation`]).
    loads: u64,
}

impl ModelPanel {
    /// Loads the model at `path` on a worker; `saved` is false for a run's fresh model.
    pub fn load(&mut self, ctx: &egui::Context, shared: &Shared, path: PathBuf, saved: bool) {
        let choice = shared.state.device_choice;
        let job = Job::once(ctx, "load-model", move || {
            // The chosen device (the probe is shared and answers once), unless the model's
            // largest buffers do not fit the GPU: see `device::fit`.
            Classifier::load_for(&path, choice)
                .map(|c| (c, path))
                .map_err(|e| e.to_string())
        });
        self.load_job = Some((job, saved));
    }

    /// Forgets the model.
    pub fn forget(&mut self, shared: &mut Shared) {
        self.in_use = None;
        shared.state.last_model = None;
    }

    /// The model's class names (none without a model).
    pub fn classes(&self) -> &[String] {
        self.in_use.as_ref().map_or(&[], |m| &m.classes)
    }

    /// The model, for a worker (none without a model).
    pub fn classifier(&self) -> Option<Arc<Mutex<Classifier>>> {
        self.in_use.as_ref().map(|m| m.classifier.clone())
    }

    /// True when a run's model has not been saved under a name of the user's.
    pub fn unsaved(&self) -> bool {
        self.in_use.as_ref().is_some_and(|m| !m.saved)
    }

    /// Marks the model as needing no save (the user chose to discard it).
    pub fn discard(&mut self) {
        if let Some(m) = &mut self.in_use {
            m.saved = true;
        }
    }

    /// The switches now.
    pub fn switches(&self) -> Switches {
        Switches {
            mirror: self.mirror_on(),
            verdict: self.verdict_on(),
        }
    }

    /// Both switches in a row; `used` is what the results on screen were made with.
    pub fn switches_ui(&self, ui: &mut egui::Ui, used: Switches) {
        self.mirror_ui(ui, used.mirror);
        self.verdict_ui(ui, used.verdict);
    }

    /// Whether the model predicts with its mirror image now (`None` without a model).
    pub fn mirror_on(&self) -> Option<bool> {
        self.in_use
            .as_ref()
            .map(|m| m.mirror_tta.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The model's "Average views" switch (test-time augmentation), for the views that predict; `used`
    /// is what the results on screen were made with, and a note says when they differ.
    pub fn mirror_ui(&self, ui: &mut egui::Ui, used: Option<bool>) {
        let Some(model) = &self.in_use else {
            return;
        };
        let switch = &model.mirror_tta;
        let mut on = switch.load(std::sync::atomic::Ordering::Relaxed);
        if ui
            .checkbox(&mut on, "Average views")
            .on_hover_text(
                "Test-time augmentation: predict each photo as the mean of its views, its mirror \
                 image and, for models trained to, the photo both squashed and centre-cropped (two \
                 to four times the work). Applies to photos classified or evaluated from now on.",
            )
            .changed()
        {
            switch.store(on, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(used) = used.filter(|&u| u != on) {
            ui.weak(format!(
                "(the results shown were made with Average views {}: classify or evaluate again to apply)",
                if used { "on" } else { "off" }
            ));
        }
    }

    /// Whether predictions say *none of these* now (`None` without a model, or a model that
    /// keeps no training features).
    pub fn verdict_on(&self) -> Option<bool> {
        let model = self.in_use.as_ref()?;
        model.typicality.as_ref()?;
        Some(model.verdict.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The model's "None of these" switch, for the views that predict; `used` is what the
    /// results on screen were made with, and a note says when they differ. A model that keeps
    /// no training features says why there is no switch.
    pub fn verdict_ui(&self, ui: &mut egui::Ui, used: Option<bool>) {
        use crate::typical::{NO_FEATURES, NONE_OF_THESE, NONE_OF_THESE_MEANS, describe};
        let Some(model) = &self.in_use else {
            return;
        };
        let Some(summary) = &model.typicality else {
            ui.weak(format!("No \"{NONE_OF_THESE}\": {NO_FEATURES}."));
            return;
        };
        let switch = &model.verdict;
        let mut on = switch.load(std::sync::atomic::Ordering::Relaxed);
        if ui
            .checkbox(&mut on, format!("Say \"{NONE_OF_THESE}\""))
            .on_hover_text(format!(
                "A photo {NONE_OF_THESE_MEANS} is \"{NONE_OF_THESE}\" rather than one of the \
                 classes: {}. Off: every photo gets a class. Applies to photos classified or \
                 evaluated from now on.",
                describe(summary)
            ))
            .changed()
        {
            switch.store(on, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(used) = used.filter(|&u| u != on) {
            ui.weak(format!(
                "(the results shown were made with it {}: classify or evaluate again to apply)",
                if used { "on" } else { "off" }
            ));
        }
    }

    /// Copies the model's file to `to` on a worker (atomically).
    pub fn save_as(&mut self, ctx: &egui::Context, shared: &mut Shared, to: PathBuf) {
        let Some((from, generation)) = self.in_use.as_ref().map(|m| (m.file.clone(), m.generation))
        else {
            shared.notices.push("There is no model to save yet.".into());
            return;
        };
        self.save_job = Some(Job::once(ctx, "save-model", move || {
            std::fs::read(&from)
                .and_then(|bytes| crate::fsutil::write_atomic(&to, &bytes))
                .map(|()| (generation, to.clone()))
                .map_err(|e| format!("{}: could not save: {e}", to.display()))
        }));
    }

    /// Exports the model's file to `to` in `format` on a worker.
    pub fn export(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared,
        format: ExportFormat,
        to: PathBuf,
    ) {
        let Some(from) = self.in_use.as_ref().map(|m| m.file.clone()) else {
            shared
                .notices
                .push("There is no model to export yet.".into());
            return;
        };
        self.export_job = Some(Job::once(ctx, "export", move || {
            export_model(&from, format, &to).map_err(|e| e.to_string())
        }));
    }

    /// True while the model loads.
    pub fn is_loading(&self) -> bool {
        self.load_job.is_some()
    }

    /// What runs on the model's file now, in words, for the status bar.
    pub fn activity(&self) -> Option<&'static str> {
        if self.load_job.is_some() {
            Some("Loading the model")
        } else if self.save_job.is_some() {
            Some("Saving the model")
        } else if self.export_job.is_some() {
            Some("Exporting the model")
        } else {
            None
        }
    }

    /// Takes in what the workers finished; a model just loaded hands on its saved history and
    /// validation pass.
    pub fn poll(&mut self, shared: &mut Shared) -> Option<Loaded> {
        let mut loaded = None;
        if let Some((job, saved)) = &mut self.load_job
            && let Some(result) = job.poll_finished()
        {
            let saved = *saved;
            self.load_job = None;
            match result {
                Ok((classifier, path)) => {
                    // Only a model that loaded replaces the one in use (and its saved state).
                    let header = &classifier.header;
                    loaded = Some(Loaded {
                        opened: saved,
                        history: serde_json::from_value(header.history.clone()).unwrap_or_default(),
                        validation: header.validation.clone(),
                    });
                    if saved {
                        shared.state.last_model = Some(path.clone());
                    }
                    self.loads += 1;
                    self.in_use = Some(InUse {
                        generation: self.loads,
                        classes: classifier.classes().to_vec(),
                        preprocessing: header.preprocessing,
                        epochs: header.next_epoch,
                        network: header.model,
                        mirror_tta: classifier.mirror_switch(),
                        verdict: classifier.verdict_switch(),
                        typicality: classifier.typicality().map(|t| t.summary.clone()),
                        temperature: header.calibration.as_ref().map(|c| c.temperature),
                        classifier: Arc::new(Mutex::new(classifier)),
                        file: path,
                        saved,
                    });
                }
                Err(e) => shared
                    .notices
                    .push(format!("Could not open the model: {e}")),
            }
        }
        if let Some(job) = &mut self.save_job
            && let Some(result) = job.poll_finished()
        {
            self.save_job = None;
            match result {
                Ok((generation, path)) => {
                    shared.tell(format!("Saved {}", path.display()));
                    // The file saved is a copy of the model in use (unless another one loaded
                    // meanwhile), which is now that file.
                    if let Some(m) = self.in_use.as_mut().filter(|m| m.generation == generation) {
                        m.file = path.clone();
                        m.saved = true;
                    }
                    shared.state.last_model = Some(path);
                }
                Err(e) => {
                    self.save_failed = true;
                    shared.notices.push(e);
                }
            }
        }
        if let Some(job) = &mut self.export_job
            && let Some(result) = job.poll_finished()
        {
            self.export_job = None;
            match result {
                Ok(done) => shared.tell(format!("Exported: {done}")),
                Err(e) => shared.notices.push(format!("Export failed: {e}")),
            }
        }
        loaded
    }

    /// The window title's part for the model: its file name, "unsaved model*" or "no model".
    pub fn title(&self) -> String {
        match &self.in_use {
            Some(m) if m.saved => m
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Some(_) => "unsaved model*".to_owned(),
            None => "no model".to_owned(),
        }
    }
}
