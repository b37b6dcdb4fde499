//! The Weights view: torchvision's ImageNet VGG16 in one click (progress, cancel, resumable),
//! or a local `.pth`, `.safetensors` or VGG16 `.onnx` read as data on a worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eframe::egui;

use super::jobs::Job;
use super::{Commands, Shared, UiCommand, WeightsChoice};
use crate::data::Convention;
use crate::model::download::{self, DownloadProgress};
use crate::model::{WeightsFormat, read_weights};
use crate::train::log::duration_text;

/// What an imported weights file holds.
#[derive(Clone, Debug)]
pub(crate) struct WeightsInfo {
    pub path: PathBuf,
    pub format: WeightsFormat,
    pub convention: Convention,
    pub sha256: String,
    pub imagenet_classifier: bool,
    pub notes: Vec<String>,
}

enum DownloadMsg {
    Progress(DownloadProgress),
    Done(Result<PathBuf, String>),
}

/// The Weights view's state: the imported file, its reading, and the download.
#[derive(Default)]
pub(crate) struct WeightsPanel {
    info: Option<WeightsInfo>,
    job: Option<Job<Result<WeightsInfo, String>>>,
    error: Option<String>,
    download: Option<(Job<DownloadMsg>, Arc<AtomicBool>)>,
    download_progress: Option<DownloadProgress>,
}

impl WeightsPanel {
    /// Reads what the weights file at `path` holds, on a worker.
    pub fn read_info(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.error = None;
        self.job = Some(Job::once(ctx, "weights", move || {
            let file = read_weights(&path).map_err(|e| e.to_string())?;
            Ok(WeightsInfo {
                imagenet_classifier: crate::model::imagenet::has_imagenet_classifier(&file),
                path,
                format: file.format,
                convention: file.convention,
                sha256: file.sha256,
                notes: file.notes,
            })
        }));
    }

    /// Starts downloading torchvision's VGG16, unless a download runs.
    pub fn start_download(&mut self, ctx: &egui::Context, shared: &Shared) {
        if self.download.is_some() {
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        self.error = None;
        let dir = shared.weights_dir.clone();
        let job = Job::spawn(ctx, "download", move |r| {
            let progress = |p| r.send(DownloadMsg::Progress(p));
            let result = download::download_vgg16_into(&dir, progress, &flag);
            r.send(DownloadMsg::Done(result.map_err(|e| e.to_string())));
        });
        self.download = Some((job, cancel));
    }

    /// Stops the download within one read; what came so far is kept for a resume.
    pub fn cancel_download(&self) {
        if let Some((_, cancel)) = &self.download {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// True while a file is read or the download runs.
    pub fn is_busy(&self) -> bool {
        self.job.is_some() || self.download.is_some()
    }

    /// Takes in what the workers sent.
    pub fn poll(&mut self, shared: &mut Shared) {
        if let Some(job) = &mut self.job
            && let Some(result) = job.poll_finished()
        {
            self.job = None;
            match result {
                Ok(info) => {
                    shared.state.weights = WeightsChoice::File(info.path.clone());
                    self.info = Some(info);
                }
                Err(e) => self.error = Some(e),
            }
        }
        if let Some((job, _)) = &mut self.download {
            let mut done = None;
            for msg in job.poll() {
                match msg {
                    DownloadMsg::Progress(p) => self.download_progress = Some(p),
                    DownloadMsg::Done(r) => done = Some(r),
                }
            }
            if done.is_none() {
                done = job.ended_without_result().map(Err);
            }
            if let Some(result) = done {
                self.download = None;
                self.download_progress = None;
                match result {
                    Ok(_) => shared.state.weights = WeightsChoice::ImageNet,
                    Err(e) => self.error = Some(e),
                }
            }
        }
    }

    /// The weights file a run starts from, or why there is none.
    pub fn for_run(
        choice: &WeightsChoice,
        weights_dir: &std::path::Path,
    ) -> Result<Option<PathBuf>, String> {
        match choice {
            WeightsChoice::Random => Ok(None),
            WeightsChoice::File(p) => Ok(Some(p.clone())),
            WeightsChoice::ImageNet => {
                let path = download::cached_vgg16_path_in(weights_dir);
                if path.is_file() {
                    Ok(Some(path))
                } else {
                    Err(
                        "no VGG16 weights yet: download them or import a file in the Weights view"
                            .into(),
                    )
                }
            }
        }
    }

    /// The Weights view.
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, commands: &mut Commands) {
        ui.heading("Base weights");
        ui.radio_value(
            &mut shared.state.weights,
            WeightsChoice::ImageNet,
            "VGG16 trained on ImageNet (torchvision)",
        );
        let cached = download::cached_vgg16_path_in(&shared.weights_dir);
        ui.indent("imagenet", |ui| self.download_ui(ui, &cached, commands));
        let file_choice = match &shared.state.weights {
            WeightsChoice::File(p) => Some(p.clone()),
            _ => self.info.as_ref().map(|i| i.path.clone()),
        };
        if let Some(path) = file_choice {
            ui.radio_value(
                &mut shared.state.weights,
                WeightsChoice::File(path.clone()),
                format!("File: {}", path.display()),
            );
        }
        ui.indent("file", |ui| {
            if self.job.is_some() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Reading the weights file…");
                });
            } else if ui
                .add_enabled(
                    shared.dialog.is_none(),
                    egui::Button::new("Import weights file…"),
                )
                .on_hover_text(".pth (PyTorch), .safetensors, or a VGG16 .onnx")
                .clicked()
            {
                commands.push(UiCommand::ImportWeights);
            }
            if let Some(info) = &self.info {
                let format = match info.format {
                    WeightsFormat::Pth => "PyTorch file",
                    WeightsFormat::Safetensors => "safetensors file",
                    WeightsFormat::Onnx => "ONNX file",
                };
                // How photos are prepared, said once: a Keras file's note says it already.
                let how = match info.convention {
                    Convention::Torchvision => Some("as torchvision does (RGB, mean/std)"),
                    Convention::Caffe if info.notes.is_empty() => {
                        Some("as Keras and Caffe do (BGR, minus the mean)")
                    }
                    Convention::Caffe => None,
                };
                let text = match how {
                    Some(how) => format!("{format}; photos are prepared {how} (handled for you)"),
                    None => format!("{format}."),
                };
                ui.label(text)
                    .on_hover_text(format!("SHA-256 {}", info.sha256));
                ui.label(if info.imagenet_classifier {
                    "Includes ImageNet's 1000-way classifier."
                } else {
                    "The convolution layers only: the head that decides between your classes is new and learns from your photos."
                });
                for note in &info.notes {
                    ui.weak(crate::words::sentence(note));
                }
            }
        });
        ui.radio_value(
            &mut shared.state.weights,
            WeightsChoice::Random,
            "Random weights (experiments only)",
        );
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }

    /// The download of torchvision's VGG16: its button, progress and Cancel, or where it lies.
    fn download_ui(&self, ui: &mut egui::Ui, cached: &std::path::Path, commands: &mut Commands) {
        if cached.is_file() {
            ui.label(format!("Downloaded: {}", cached.display()));
        } else if let Some(p) = &self.download_progress {
            let fraction = p.total.map_or(0.0, |t| p.bytes as f32 / t.max(1) as f32);
            let eta = p.total.map_or(f64::NAN, |t| {
                (t - p.bytes.min(t)) as f64 / p.bytes_per_sec.max(1.0)
            });
            ui.add(
                egui::ProgressBar::new(fraction)
                    .show_percentage()
                    .desired_width(360.0),
            );
            ui.label(format!(
                "{:.0} of {:.0} MB, {:.1} MB/s, {} left",
                p.bytes as f64 / 1e6,
                p.total.unwrap_or(0) as f64 / 1e6,
                p.bytes_per_sec / 1e6,
                duration_text(eta)
            ));
            if ui
                .button("Cancel")
                .on_hover_text("The part downloaded so far is kept; Download resumes it")
                .clicked()
            {
                commands.push(UiCommand::CancelDownload);
            }
        } else if self.download.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Connecting…");
            });
        } else if ui
            .button("Download VGG16 (528 MB)")
            .on_hover_text(crate::model::download::VGG16_URL)
            .clicked()
        {
            commands.push(UiCommand::DownloadWeights);
        }
    }
}
