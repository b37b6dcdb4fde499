//! The window: one panel per view (Data, Sort, Weights, Train, Evaluate, Predict) and the Model menu's
//! state, each owning its state and its jobs, plus what they share ([`Shared`]).
//!
//! The window owns no ML logic and computes no tensor: panels send work to worker threads
//! (scans, weight imports, downloads, training runs, predictions, evaluations, model files,
//! thumbnails) and draw what their results say. Workers hand results back over channels and call
//! `request_repaint`, so the UI thread never blocks; a worker that panics ends its job with an
//! error in its view. What persists across restarts lives in [`State`]. Panels' `ui` functions
//! push [`UiCommand`]s that the app applies in one place, the only place where one view's action
//! reaches another's state.

mod app;
mod audit;
mod charts;
mod chrome;
mod data;
mod drops;
mod evaluate;
mod heatmaps;
mod jobs;
mod model;
mod predict;
mod prompt;
mod reliability;
mod sort;
mod thumbnails;
mod train;
mod weights;
mod widgets;

use std::path::PathBuf;

use eframe::egui;

use crate::device::{ComputeDevice, DeviceChoice, DeviceError};
use crate::model::export::ExportFormat;
use crate::train::TrainConfig;
pub use app::VggtuneApp;
use jobs::Job;
pub use thumbnails::Thumbnails;

/// The window's title.
pub const APP_NAME: &str = "vggtune";

/// One screen of the app, chosen by the tabs at the top.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum View {
    /// Pick a photo folder, see its classes and skipped files.
    #[default]
    Data,
    /// Sort a folder nobody has labelled.
    Sort,
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
    pub const ALL: [Self; 6] = [
        Self::Data,
        Self::Sort,
        Self::Weights,
        Self::Train,
        Self::Evaluate,
        Self::Predict,
    ];

    /// The tab's label.
    pub fn title(self) -> &'static str {
        match self {
            Self::Data => "Data",
            Self::Sort => "Sort",
            Self::Weights => "Weights",
            Self::Train => "Train",
            Self::Evaluate => "Evaluate",
            Self::Predict => "Predict",
        }
    }
}

/// Which base weights a run starts from.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum WeightsChoice {
    /// torchvision's ImageNet VGG16 from the cache (downloaded in the Weights view).
    #[default]
    ImageNet,
    /// A file the user imported.
    File(PathBuf),
    /// Seeded random weights (experiments, tests).
    Random,
}

/// What survives a restart (eframe persistence).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct State {
    /// The view that was open.
    pub view: View,
    /// The device the user asked for.
    pub device_choice: DeviceChoice,
    /// The number format of the frozen convolutions on the CPU.
    pub precision: crate::model::bf16::Choice,
    /// The last photo folder.
    pub data_path: String,
    /// The base weights.
    pub weights: WeightsChoice,
    /// The training configuration.
    pub train: TrainConfig,
    /// The last model opened or trained.
    pub last_model: Option<PathBuf>,
}

/// How soon a changed [`State`] reaches disk. eframe's own interval is 30 s, so a setting
/// changed less than 30 s before the process was killed (not quit) was lost.
pub const STATE_SAVE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for State {
    fn default() -> Self {
        Self {
            view: View::Data,
            device_choice: DeviceChoice::Auto,
            precision: crate::model::bf16::Choice::Auto,
            data_path: String::new(),
            weights: WeightsChoice::ImageNet,
            train: TrainConfig::default(),
            last_model: None,
        }
    }
}

/// Where the compute device stands: still being probed on a worker, chosen, or failed.
pub(crate) enum DeviceStatus {
    Probing(Job<Result<ComputeDevice, DeviceError>>),
    Ready(Box<ComputeDevice>),
    Failed(DeviceError),
}

/// A change the UI asks for; applied in one place ([`VggtuneApp`]'s `run_command`).
#[must_use]
pub(crate) enum UiCommand {
    Show(View),
    Quit,
    OpenDataset(PathBuf),
    ChooseDataFolder,
    ImportWeights,
    DownloadWeights,
    CancelDownload,
    StartTraining {
        resume: bool,
    },
    /// Go on with what replaces the unsaved model (a new run, opening or forgetting a model).
    ReplaceAnyway,
    CancelReplace,
    /// Stop the run, then quit once it has stopped (its checkpoint and model are written).
    StopAndQuit,
    StopTraining,
    AddImages,
    PasteImage,
    ClearPredictions,
    CancelPredictions,
    ExportCsv,
    ExportSubmission,
    EvaluateDataset,
    NewModel,
    OpenModel,
    SaveModel,
    Export(ExportFormat),
    /// Evaluate the model on the folder typed in the Evaluate view.
    EvaluateFolder(PathBuf),
    /// Choose the folder to evaluate in a native dialog.
    ChooseEvaluateFolder,
    /// The path prompt's action button (or Enter).
    PromptOk,
    /// The path prompt's Browse….
    PromptBrowse,
    PromptCancel,
    /// Save the model, then quit (the unsaved-model question's Save).
    SaveAndQuit,
    DiscardAndQuit,
    CancelQuit,
    ToggleAbout,
    /// List the training photos whose label looks wrong (Data view).
    CheckLabels,
    /// Continue the model in use with block 5 learning too (Train view).
    FineTuneDeeper,
    /// Open the folder typed in the Sort view and start asking.
    StartSort,
}

/// The commands a frame's views pushed.
pub(crate) type Commands = Vec<UiCommand>;

/// What would replace the unsaved model in use, once the user agrees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Replacing {
    /// A new run (resume: false) or a resumed one.
    Start { resume: bool },
    /// Model → Open model….
    Open,
    /// A model file dropped on the window.
    OpenFile(std::path::PathBuf),
    /// Model → New.
    New,
}

/// What a native file dialog was opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialogPurpose {
    DataFolder,
    EvaluateFolder,
    ImportWeights,
    OpenModel,
    SaveModel,
    Export(ExportFormat),
    ExportCsv,
    ExportSubmission,
}

/// What every view may use: the persisted state, the device, thumbnails, notices, the open
/// dialog and the app's folders.
pub(crate) struct Shared {
    pub state: State,
    pub device: DeviceStatus,
    pub thumbnails: Thumbnails,
    /// Heatmaps over photos, and the larger view of one.
    pub heatmaps: heatmaps::Heatmaps,
    /// Warnings and errors shown over the view until dismissed.
    pub notices: Vec<String>,
    /// Confirmations ("Saved …"), shown the same way in a quieter colour for a few seconds.
    pub told: Vec<(String, std::time::Instant)>,
    /// The native dialog open now (one at a time).
    pub dialog: Option<prompt::OpenDialog>,
    /// The path asked for now, if any.
    pub prompt: Option<prompt::PathPrompt>,
    /// The folder of the last path given in a prompt, offered again.
    pub last_folder: Option<PathBuf>,
    /// Where the window's run keeps its model and checkpoint, and pasted images.
    pub work_dir: PathBuf,
    /// The feature cache's folder (`None`: the platform cache).
    pub cache_root: Option<PathBuf>,
    /// Where downloaded and imported weights are kept.
    pub weights_dir: PathBuf,
    /// See [`AppOptions::stop_after`].
    pub stop_after: Option<usize>,
}

impl Shared {
    /// The window's training settings with the device chosen: what the label check and the
    /// sort's feature pass run with.
    fn run_config(&self) -> TrainConfig {
        TrainConfig {
            device: self.state.device_choice,
            ..self.state.train.clone()
        }
    }

    /// Shows a confirmation for a few seconds.
    pub fn tell(&mut self, text: String) {
        self.told.push((text, std::time::Instant::now()));
    }
}

/// Options for building the app (tests use their own folders and device).
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// The device asked for on the command line (`Auto` keeps the persisted choice).
    pub device_choice: DeviceChoice,
    /// Where the last run's model and checkpoint are kept (default: the platform data folder).
    pub work_dir: Option<PathBuf>,
    /// The feature cache's folder (default: the platform cache).
    pub cache_root: Option<PathBuf>,
    /// The folder of downloaded weights (default: the platform cache's `weights`).
    pub weights_dir: Option<PathBuf>,
    /// Stop each run once this many epochs (counted across stages and resumes) are done, as
    /// the Stop button does: the CLI's `--stop-after`, for tests that need a stop at an exact
    /// epoch.
    pub stop_after: Option<usize>,
}

/// Opens the window and runs until it is closed.
pub fn run(device_choice: DeviceChoice) -> Result<(), eframe::Error> {
    let mut viewport = egui::ViewportBuilder::default();
    if let Ok(icon) =
        eframe::icon_data::from_png_bytes(include_bytes!("../../assets/icons/vggtune-256.png"))
    {
        viewport = viewport.with_icon(icon);
    }
    let options = eframe::NativeOptions {
        viewport: viewport
            .with_title(APP_NAME)
            .with_app_id(APP_NAME)
            .with_inner_size([1180.0, 780.0])
            .with_min_inner_size([720.0, 480.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        APP_NAME,
        options,
        Box::new(move |cc| Ok(Box::new(VggtuneApp::new(cc, device_choice)))),
    )
}
