//! Asking for a file or folder: a small window with a path field (typed, pasted, or filled by
//! the native dialog behind "Browse…"), so that every file input works where no native dialog
//! can open (no xdg-desktop-portal, no zenity). A native dialog that fails says so, instead of
//! silently doing nothing (rfd answers "cancelled" in both cases; one that comes back within
//! a moment never showed).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eframe::egui;

use super::jobs::{self, Job};
use super::{Commands, DialogPurpose, UiCommand};
use crate::model::export::ExportFormat;

/// A native dialog that answers "nothing chosen" sooner than this never opened.
pub(crate) const TOO_QUICK: Duration = Duration::from_millis(400);

/// The words for a native dialog that could not open.
pub(crate) const NO_DIALOG_SHORT: &str = "No file dialog could be opened on this desktop (it \
    needs xdg-desktop-portal or zenity).";

/// The path being asked for.
pub(crate) struct PathPrompt {
    pub purpose: DialogPurpose,
    pub text: String,
    /// Why the last Browse… did nothing, when a dialog could not open.
    pub message: Option<String>,
}

/// A native dialog in progress.
pub(crate) struct OpenDialog {
    pub purpose: DialogPurpose,
    pub job: Job<Option<PathBuf>>,
    pub opened: Instant,
}

impl OpenDialog {
    /// Opens the native dialog for `purpose` on a worker.
    pub fn open(ctx: &egui::Context, purpose: DialogPurpose, suggested: Option<PathBuf>) -> Self {
        let name = suggested
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let job = match purpose {
            DialogPurpose::DataFolder | DialogPurpose::EvaluateFolder => jobs::pick_folder(ctx),
            DialogPurpose::ImportWeights => {
                jobs::pick_file(ctx, "VGG16 weights", &["pth", "pt", "safetensors", "onnx"])
            }
            DialogPurpose::OpenModel => jobs::pick_file(ctx, "vggtune model", &["vggtune"]),
            DialogPurpose::SaveModel => jobs::save_file(ctx, name, "vggtune model", &["vggtune"]),
            DialogPurpose::Export(format) => {
                jobs::save_file(ctx, name, format.extension(), format.extensions())
            }
            DialogPurpose::ExportCsv | DialogPurpose::ExportSubmission => {
                jobs::save_file(ctx, name, "CSV", &["csv"])
            }
        };
        Self {
            purpose,
            job,
            opened: Instant::now(),
        }
    }

    /// The dialog's answer once it has one: `Ok(Some(path))`, `Ok(None)` when cancelled, or
    /// `Err` with why when no dialog could open.
    pub fn poll(&mut self) -> Option<Result<Option<PathBuf>, String>> {
        let answer = match self.job.poll().pop() {
            Some(answer) => answer,
            None if self.job.is_finished() => None,
            None => return None,
        };
        Some(match answer {
            None if self.opened.elapsed() < TOO_QUICK => {
                Err(format!("{NO_DIALOG_SHORT} {}", self.purpose.instead()))
            }
            other => Ok(other),
        })
    }
}

impl DialogPurpose {
    /// The prompt's title.
    pub fn title(self) -> &'static str {
        match self {
            Self::DataFolder => "Open a photo folder",
            Self::EvaluateFolder => "Evaluate on a photo folder",
            Self::ImportWeights => "Import a weights file",
            Self::OpenModel => "Open a model",
            Self::SaveModel => "Save the model as",
            Self::Export(ExportFormat::Onnx) => "Export ONNX to",
            Self::Export(ExportFormat::Safetensors) => "Export safetensors to",
            Self::ExportCsv => "Save the predictions (CSV) to",
            Self::ExportSubmission => "Save the Kaggle submission to",
        }
    }

    /// The file name offered when something is saved.
    fn default_name(self) -> Option<String> {
        match self {
            Self::SaveModel => Some("model.vggtune".into()),
            Self::Export(format) => Some(format!("model.{}", format.extension())),
            Self::ExportCsv => Some("predictions.csv".into()),
            Self::ExportSubmission => Some("submission.csv".into()),
            _ => None,
        }
    }

    /// What to do instead when no native dialog can open.
    fn instead(self) -> &'static str {
        match self {
            Self::DataFolder | Self::EvaluateFolder => {
                "Type the folder's path, or drop the folder on the window."
            }
            Self::ImportWeights => "Type the file's path, or drop the file on the window.",
            Self::OpenModel => "Type the model file's path.",
            _ => "Type the path to write to.",
        }
    }

    /// The button that acts on the path.
    fn action(self) -> &'static str {
        match self {
            Self::DataFolder | Self::OpenModel => "Open",
            Self::EvaluateFolder => "Evaluate",
            Self::ImportWeights => "Import",
            Self::SaveModel | Self::ExportCsv | Self::ExportSubmission => "Save",
            Self::Export(_) => "Export",
        }
    }
}

impl PathPrompt {
    /// A prompt for `purpose`, suggesting a file in `folder` (the home folder when `None`).
    pub fn new(purpose: DialogPurpose, folder: Option<PathBuf>) -> Self {
        let folder = folder.or_else(|| directories::UserDirs::new().map(|d| d.home_dir().into()));
        let text = match (purpose.default_name(), folder) {
            (Some(name), Some(folder)) => folder.join(name).display().to_string(),
            _ => String::new(),
        };
        Self {
            purpose,
            text,
            message: None,
        }
    }

    /// The prompt window; `browsing` while its native dialog is open.
    pub fn ui(&mut self, ctx: &egui::Context, browsing: bool, commands: &mut Commands) {
        egui::Window::new(self.purpose.title())
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
            .show(ctx, |ui| {
                let edit = ui.add(
                    egui::TextEdit::singleline(&mut self.text)
                        .hint_text("a path: type it, paste it, or Browse…")
                        .desired_width(460.0),
                );
                let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if let Some(message) = &self.message {
                    ui.colored_label(ui.visuals().warn_fg_color, message);
                }
                ui.horizontal(|ui| {
                    let ready = !self.text.trim().is_empty();
                    if ui
                        .add_enabled(ready, egui::Button::new(self.purpose.action()))
                        .clicked()
                        || (enter && ready)
                    {
                        commands.push(UiCommand::PromptOk);
                    }
                    if ui
                        .add_enabled(!browsing, egui::Button::new("Browse…"))
                        .on_hover_text("Choose in the desktop's file dialog")
                        .clicked()
                    {
                        commands.push(UiCommand::PromptBrowse);
                    }
                    if ui.button("Cancel").clicked() {
                        commands.push(UiCommand::PromptCancel);
                    }
                });
            });
    }
}
