//! Files dropped on the window: what a drop would do (said over the window while files hover)
//! and doing it: weights are imported, a folder is opened or evaluated, anything else is
//! classified.

use std::path::PathBuf;

use eframe::egui;

use super::{VggtuneApp, View};

impl VggtuneApp {
    /// What a drop does now, in words (for the hover overlay).
    fn drop_action(&self, paths: &[PathBuf]) -> String {
        let folders = paths.iter().filter(|p| p.is_dir()).count();
        if is_model_file(paths) {
            "Drop to open this model".into()
        } else if is_weights_file(paths) {
            "Drop to import these VGG16 weights".into()
        } else if self.sorts_on_drop(paths) {
            "Drop to sort the photos of this folder".into()
        } else if self.evaluates_on_drop(paths) {
            "Drop to evaluate the model on this folder".into()
        } else if self.opens_dataset_on_drop(paths) {
            "Drop to open this folder as the photo dataset".into()
        } else if self.has_model() {
            format!(
                "Drop to classify {} with the current model",
                if folders > 0 {
                    "these files and folders"
                } else {
                    "these images"
                }
            )
        } else {
            "Drop a photo folder to open it; train or open a model to classify images".into()
        }
    }

    fn sorts_on_drop(&self, paths: &[PathBuf]) -> bool {
        paths.len() == 1 && paths[0].is_dir() && self.shared.state.view == View::Sort
    }

    fn evaluates_on_drop(&self, paths: &[PathBuf]) -> bool {
        paths.len() == 1
            && paths[0].is_dir()
            && self.shared.state.view == View::Evaluate
            && self.has_model()
    }

    fn opens_dataset_on_drop(&self, paths: &[PathBuf]) -> bool {
        paths.len() == 1
            && paths[0].is_dir()
            && (self.shared.state.view == View::Data || !self.has_model())
    }

    pub(super) fn handle_drops(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        if dropped.is_empty() {
            return;
        }
        if is_model_file(&dropped) {
            // The Predict view shows the model that opens, ready for photos.
            self.shared.state.view = View::Predict;
            let path = dropped[0].clone();
            self.replace(ctx, super::Replacing::OpenFile(path), true);
        } else if is_weights_file(&dropped) {
            self.shared.state.view = View::Weights;
            self.weights.read_info(ctx, dropped[0].clone());
        } else if self.sorts_on_drop(&dropped) {
            self.sort.set_pool(dropped[0].clone());
        } else if self.evaluates_on_drop(&dropped) {
            self.evaluate_folder(ctx, dropped[0].clone());
        } else if self.opens_dataset_on_drop(&dropped) {
            self.shared.state.view = View::Data;
            self.data.open(ctx, &mut self.shared, dropped[0].clone());
        } else {
            self.classify(ctx, dropped);
        }
    }

    pub(super) fn drop_overlay(&self, ctx: &egui::Context) {
        let hovered: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .hovered_files
                .iter()
                .filter_map(|f| f.path.clone())
                .collect()
        });
        let any_hover = ctx.input(|i| !i.raw.hovered_files.is_empty());
        if !any_hover {
            return;
        }
        let text = self.drop_action(&hovered);
        let painter = ctx.layer_painter(egui::LayerId::new(
            egui::Order::Foreground,
            egui::Id::unique("drop-overlay"),
        ));
        let rect = ctx.content_rect();
        painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(180));
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            text,
            egui::FontId::proportional(22.0),
            egui::Color32::WHITE,
        );
    }
}

/// True when `paths` is one vggtune model file (by its extension): a drop opens it.
fn is_model_file(paths: &[PathBuf]) -> bool {
    let [path] = paths else { return false };
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    path.is_file() && ext.as_deref() == Some("vggtune")
}

/// True when `paths` is one weights file (by its extension): a drop offers it as an import.
fn is_weights_file(paths: &[PathBuf]) -> bool {
    let [path] = paths else { return false };
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    path.is_file() && matches!(ext.as_deref(), Some("pth" | "pt" | "safetensors" | "onnx"))
}
