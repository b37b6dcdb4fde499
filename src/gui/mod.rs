//! The window: views for Data, Weights, Train, Evaluate and Predict.
//!
//! The window owns no ML logic and computes no tensor: it sends work to worker threads and draws
//! what their results say. Workers hand results back over channels and call `request_repaint`,
//! so the UI thread never blocks. What persists across restarts lives in [`State`]; what only
//! lives while running (channels, results of workers) is kept apart in [`VggtuneApp`].

use std::sync::mpsc;

use eframe::egui;

use crate::device::{self, ComputeDevice, DeviceChoice, DeviceError};

/// The window's title.
pub const APP_NAME: &str = "vggtune";

/// One screen of the app, chosen by the tabs at the top.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum View {
    /// Pick a photo folder, see its classes and skipped files.
    #[default]
    Data,
    /// Get or import VGG16 weights.
    Weights,
    /// Configure and run fine-tuning with live charts.
    Train,
    /// Accuracy, confusion matrix and galleries.
    Evaluate,
    /// Drop images to classify them.
    Predict,
}

impl View {
    /// All views, in tab order.
    pub const ALL: [Self; 5] = [
        Self::Data,
        Self::Weights,
        Self::Train,
        Self::Evaluate,
        Self::Predict,
    ];

    /// The tab's label.
    pub fn title(self) -> &'static str {
        match self {
            Self::Data => "Data",
            Self::Weights => "Weights",
            Self::Train => "Train",
            Self::Evaluate => "Evaluate",
            Self::Predict => "Predict",
        }
    }
}

/// What survives a restart (eframe persistence).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct State {
    /// The view that was open.
    pub view: View,
    /// The device the user asked for.
    pub device_choice: DeviceChoice,
}

/// Where the compute device stands: still being probed on a worker, chosen, or failed.
enum DeviceStatus {
    Probing(mpsc::Receiver<Result<ComputeDevice, DeviceError>>),
    Ready(Box<ComputeDevice>),
    Failed(DeviceError),
}

/// A change the UI asks for; applied in one place ([`VggtuneApp::run_command`]).
#[must_use]
enum UiCommand {
    Show(View),
    Quit,
}

/// The eframe application.
pub struct VggtuneApp {
    state: State,
    device: DeviceStatus,
}

impl VggtuneApp {
    /// Builds the app, restoring the persisted [`State`] and probing the device on a worker.
    ///
    /// `device_choice` (from `--device` or the environment) wins over the persisted one when it
    /// is not `Auto`.
    pub fn new(cc: &eframe::CreationContext<'_>, device_choice: DeviceChoice) -> Self {
        let mut state: State = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        if device_choice != DeviceChoice::Auto {
            state.device_choice = device_choice;
        }
        let device = probe_device(&cc.egui_ctx, state.device_choice);
        Self { state, device }
    }

    /// The view being shown.
    pub fn view(&self) -> View {
        self.state.view
    }

    /// The chosen compute device, once the worker has chosen one.
    pub fn compute_device(&self) -> Option<&ComputeDevice> {
        match &self.device {
            DeviceStatus::Ready(d) => Some(d),
            _ => None,
        }
    }

    fn run_command(&mut self, ctx: &egui::Context, command: UiCommand) {
        match command {
            UiCommand::Show(view) => self.state.view = view,
            UiCommand::Quit => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
        }
    }

    fn poll_workers(&mut self) {
        if let DeviceStatus::Probing(rx) = &self.device {
            match rx.try_recv() {
                Ok(Ok(d)) => self.device = DeviceStatus::Ready(Box::new(d)),
                Ok(Err(e)) => self.device = DeviceStatus::Failed(e),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.device = DeviceStatus::Failed(DeviceError::NoGpu(
                        "the device probe stopped unexpectedly".to_owned(),
                    ));
                }
            }
        }
    }

    fn tabs_ui(&self, ui: &mut egui::Ui) -> Option<UiCommand> {
        let mut command = None;
        ui.horizontal(|ui| {
            ui.heading(APP_NAME);
            ui.separator();
            for view in View::ALL {
                if ui
                    .selectable_label(self.state.view == view, view.title())
                    .clicked()
                {
                    command = Some(UiCommand::Show(view));
                }
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .button("Quit")
                    .on_hover_text("Close vggtune (Ctrl+Q)")
                    .clicked()
                {
                    command = Some(UiCommand::Quit);
                }
            });
        });
        command
    }

    fn status_ui(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            match &self.device {
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
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                ui.weak(format!("vggtune {}", crate::VERSION_LINE));
            });
        });
    }

    fn view_ui(&mut self, ui: &mut egui::Ui) {
        let view = self.state.view;
        ui.heading(view.title());
        ui.add_space(8.0);
        let planned = match view {
            View::Data => {
                "Choose a photo folder (one sub-folder per class, or Kaggle's flat cat.1.jpg \
                 layout) to see its classes, counts, thumbnails and skipped files."
            }
            View::Weights => {
                "Download VGG16's ImageNet weights or import a .pth, .safetensors or .onnx file."
            }
            View::Train => {
                "Choose what trains, epochs, batch size and learning rate; start, stop and resume \
                 with live accuracy and loss charts."
            }
            View::Evaluate => {
                "Accuracy, log loss, a confusion matrix and galleries of the most confident \
                 mistakes, most uncertain and most confident right."
            }
            View::Predict => {
                "Drop image files or folders on the window to classify them; export CSV or a \
                 Kaggle submission."
            }
        };
        ui.label(planned);
        ui.add_space(4.0);
        ui.weak("This view is not built yet.");
    }
}

impl eframe::App for VggtuneApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.poll_workers();
        if ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::Q)) {
            self.run_command(ctx, UiCommand::Quit);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let tabs = egui::Panel::top("tabs")
            .show(ui, |ui| self.tabs_ui(ui))
            .inner;
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| self.view_ui(ui));
        if let Some(command) = tabs {
            self.run_command(&ctx, command);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.state);
    }
}

/// Chooses the compute device on a worker thread; the UI shows a spinner meanwhile.
fn probe_device(ctx: &egui::Context, choice: DeviceChoice) -> DeviceStatus {
    let (tx, rx) = mpsc::channel();
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("device-probe".to_owned())
        .spawn(move || {
            // The receiver is gone only when the app closed; nothing to report then.
            let _ = tx.send(device::select(choice));
            ctx.request_repaint();
        });
    match spawned {
        Ok(_) => DeviceStatus::Probing(rx),
        Err(e) => DeviceStatus::Failed(DeviceError::NoGpu(format!(
            "could not start the device probe: {e}"
        ))),
    }
}

/// Opens the window and runs until it is closed.
pub fn run(device_choice: DeviceChoice) -> Result<(), eframe::Error> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(APP_NAME)
            .with_app_id(APP_NAME)
            .with_inner_size([1100.0, 720.0])
            .with_min_inner_size([640.0, 420.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        APP_NAME,
        options,
        Box::new(move |cc| Ok(Box::new(VggtuneApp::new(cc, device_choice)))),
    )
}
