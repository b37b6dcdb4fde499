//! The window's frame around the views: tabs and the Model menu, the status bar with every
//! running job, notices, the About box and the question before an unsaved model is lost.

use eframe::egui;

use super::{Commands, DeviceStatus, Shared, UiCommand, VggtuneApp, View};
use crate::model::export::ExportFormat;

/// The tabs, the Model menu, About and Quit.
pub(crate) fn top_bar_ui(app: &VggtuneApp, ui: &mut egui::Ui, commands: &mut Commands) {
    ui.horizontal(|ui| {
        ui.heading(super::APP_NAME);
        ui.separator();
        for view in View::ALL {
            if ui
                .selectable_label(app.shared.state.view == view, view.title())
                .clicked()
            {
                commands.push(UiCommand::Show(view));
            }
        }
        ui.separator();
        ui.menu_button("Model", |ui| {
            if ui
                .button("New")
                .on_hover_text("Forget the current model")
                .clicked()
            {
                commands.push(UiCommand::NewModel);
                ui.close();
            }
            if ui.button("Open model…").clicked() {
                commands.push(UiCommand::OpenModel);
                ui.close();
            }
            let has_model = app.model.in_use.is_some();
            if ui
                .add_enabled(has_model, egui::Button::new("Save model…"))
                .clicked()
            {
                commands.push(UiCommand::SaveModel);
                ui.close();
            }
            for format in ExportFormat::ALL {
                let label = match format {
                    ExportFormat::Onnx => "Export ONNX…",
                    ExportFormat::Safetensors => "Export safetensors…",
                };
                if ui
                    .add_enabled(has_model, egui::Button::new(label))
                    .on_hover_text(format.description())
                    .clicked()
                {
                    commands.push(UiCommand::Export(format));
                    ui.close();
                }
            }
        });
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .button("Quit")
                .on_hover_text("Close vggtune (Ctrl+Q)")
                .clicked()
            {
                commands.push(UiCommand::Quit);
            }
            if ui.button("About").clicked() {
                commands.push(UiCommand::ToggleAbout);
            }
        });
    });
}

/// The status bar: the device, and every job that runs, from any view.
pub(crate) fn status_ui(app: &VggtuneApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        match &app.shared.device {
            DeviceStatus::Probing(_) => {
                ui.spinner();
                ui.label("Looking for a GPU…");
            }
            DeviceStatus::Ready(d) => {
                ui.label(format!("Device: {}", d.label()))
                    .on_hover_text(&d.reason);
            }
            DeviceStatus::Failed(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Device: {e}"));
            }
        }
        if app.is_training() {
            ui.separator();
            ui.spinner();
            // What the run does: the feature pass is most of a first run.
            ui.label(match app.train.log.phase_words() {
                Some(words) => format!("Training: {}", words.to_lowercase()),
                None => "Training: starting".to_owned(),
            });
        }
        for (busy, what) in [
            (app.data.is_scanning(), "Scanning the folder"),
            (app.data.audit.is_busy(), "Checking labels"),
            (app.weights.is_busy(), "Working on the weights"),
            (app.evaluate.is_busy(), "Evaluating"),
            (app.predict.is_busy(), "Classifying"),
        ] {
            if busy {
                ui.separator();
                ui.spinner();
                ui.label(what);
            }
        }
        if let Some(what) = app.model.activity() {
            ui.separator();
            ui.spinner();
            ui.label(what);
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.weak(format!("vggtune {}", crate::VERSION))
                .on_hover_text(format!("vggtune {}", crate::VERSION_LINE));
        });
    });
}

/// How long a confirmation stays on screen.
const TOLD_FOR: std::time::Duration = std::time::Duration::from_secs(8);

/// The notices and confirmations, in a column over the bottom right of the view (where no
/// button lies), each with a button that dismisses it; confirmations go by themselves.
pub(crate) fn notices_ui(shared: &mut Shared, ctx: &egui::Context) {
    shared.told.retain(|(_, at)| at.elapsed() < TOLD_FOR);
    if shared.notices.is_empty() && shared.told.is_empty() {
        return;
    }
    if !shared.told.is_empty() {
        ctx.request_repaint_after(std::time::Duration::from_millis(500));
    }
    egui::Area::new(egui::Id::unique("notices"))
        .order(egui::Order::Foreground)
        .anchor(egui::Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -36.0))
        .show(ctx, |ui| {
            ui.set_max_width(520.0);
            let warn = ui.visuals().warn_fg_color;
            let plain = ui.visuals().text_color();
            let mut dismiss = None;
            let all = shared.notices.iter().map(|n| (n.as_str(), warn));
            let told = shared.told.iter().map(|(n, _)| (n.as_str(), plain));
            for (i, (notice, colour)) in all.chain(told).enumerate() {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.horizontal(|ui| {
                        if ui.small_button("×").on_hover_text("Dismiss").clicked() {
                            dismiss = Some(i);
                        }
                        let text = egui::RichText::new(notice).color(colour);
                        ui.add(egui::Label::new(text).wrap());
                    });
                });
            }
            match dismiss {
                Some(i) if i < shared.notices.len() => {
                    shared.notices.remove(i);
                }
                Some(i) => {
                    shared.told.remove(i - shared.notices.len());
                }
                None => {}
            }
        });
}

/// The About box.
pub(crate) fn about_ui(shared: &Shared, ctx: &egui::Context, commands: &mut Commands) {
    egui::Window::new("About vggtune")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| {
            ui.heading("vggtune");
            ui.label("Fine-tune VGG16 on your own labelled photos.");
            ui.label(format!("Version {}", crate::VERSION_LINE));
            if let DeviceStatus::Ready(d) = &shared.device {
                ui.label(format!("Device: {} — {}", d.label(), d.reason));
            }
            ui.label("Burn 0.22 (wgpu, flex) · eframe/egui 0.37 · MIT OR Apache-2.0");
            if ui.button("Close").on_hover_text("Escape").clicked()
                || ui.input(|i| i.key_pressed(egui::Key::Escape))
            {
                commands.push(UiCommand::ToggleAbout);
            }
        });
}

/// A question in a window of its own: `text`, then a button for each answer, which pushes
/// that answer's commands.
fn question_ui(
    ctx: &egui::Context,
    title: &str,
    text: &str,
    answers: Vec<(&str, Vec<UiCommand>)>,
    commands: &mut Commands,
) {
    egui::Window::new(title)
        .collapsible(false)
        .resizable(false)
        .max_width(480.0)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| {
            ui.label(text);
            ui.horizontal(|ui| {
                for (label, answer) in answers {
                    if ui.button(label).clicked() {
                        commands.extend(answer);
                    }
                }
            });
        });
}

/// Asks before quitting loses something: a run going (`running`: where it is, in words) or a
/// model not saved.
pub(crate) fn confirm_close_ui(
    ctx: &egui::Context,
    (running, resumable, unsaved): (Option<String>, bool, bool),
    commands: &mut Commands,
) {
    let Some(now) = running else {
        let answers = vec![
            ("Save model…", vec![UiCommand::SaveAndQuit]),
            ("Discard and quit", vec![UiCommand::DiscardAndQuit]),
            ("Cancel", vec![UiCommand::CancelQuit]),
        ];
        let text = "The model in use was trained here and has not been saved. Quit anyway?";
        question_ui(ctx, "Unsaved model", text, answers, commands);
        return;
    };
    let answers = vec![
        ("Stop training and quit", vec![UiCommand::StopAndQuit]),
        ("Cancel", vec![UiCommand::CancelQuit]),
    ];
    let after = if resumable {
        "the model of its last finished epoch and its checkpoint are kept in vggtune's folder, \
         and Resume continues the run the next time you open vggtune."
    } else {
        "no epoch of it has finished yet, so nothing of it is kept but the features computed so \
         far, which are cached: the next run on these photos starts from them."
    };
    let text = format!(
        "A training run is going ({now}). Quitting stops it after the current batch: {after} {}",
        if unsaved {
            "The model in use has not been saved under a name of yours: to keep it where you \
             choose, Cancel, let the run finish or stop it, then Model → Save model…."
        } else {
            "The model you saved is not changed."
        }
    );
    question_ui(ctx, "Training is running", &text, answers, commands);
}

/// Asks before `what` replaces the model a run trained and nobody saved.
pub(crate) fn confirm_replace_ui(
    ctx: &egui::Context,
    what: &super::Replacing,
    commands: &mut Commands,
) {
    let (title, text, go) = match what {
        super::Replacing::Start { .. } => (
            "Start a new run?",
            "The model the last run trained has not been saved; a new run replaces it.",
            "Start anyway",
        ),
        super::Replacing::Open | super::Replacing::OpenFile(_) => (
            "Open another model?",
            "The model the last run trained has not been saved; opening another replaces it.",
            "Open another",
        ),
        super::Replacing::New => (
            "Forget the model?",
            "The model the last run trained has not been saved; New forgets it.",
            "Forget it",
        ),
    };
    let answers = vec![
        (
            "Save model…",
            vec![UiCommand::CancelReplace, UiCommand::SaveModel],
        ),
        (go, vec![UiCommand::ReplaceAnyway]),
        ("Cancel", vec![UiCommand::CancelReplace]),
    ];
    question_ui(ctx, title, text, answers, commands);
}

/// Says that the window closes once the run has stopped.
pub(crate) fn stopping_ui(ctx: &egui::Context) {
    egui::Window::new("Stopping")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(
                    "Stopping the run after this batch (keeping what the question said); vggtune \
                     closes when it is done.",
                );
            });
        });
}
