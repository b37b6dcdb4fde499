//! The window: views for Data, Weights, Train, Evaluate and Predict.
//!
//! The window owns no ML logic and computes no tensor: it sends work to worker threads (scans,
//! weight imports, downloads, training runs, predictions, thumbnails) and draws what their results
//! say. Workers hand results back over channels and call `request_repaint`, so the UI thread never
//! blocks. What persists across restarts lives in [`State`]; what only lives while running is
//! kept apart in [`VggtuneApp`]. UI functions return [`UiCommand`]s that are applied in one place.

mod jobs;
mod thumbnails;
mod views;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use eframe::egui;

use crate::data::Dataset;
use crate::device::{self, ComputeDevice, DeviceChoice, DeviceError};
use crate::infer::{self, Classifier, Prediction, Unclassified};
use crate::model::download::{self, DownloadProgress};
use crate::model::export::ExportFormat;
use crate::model::{WeightsFormat, read_weights};
use crate::train::metrics::EvaluatedImages;
use crate::train::{
    EpochMetrics, Evaluation, RunSummary, TrainConfig, TrainJob, TrainLog, TrainingRun,
};
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
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct State {
    /// The view that was open.
    pub view: View,
    /// The device the user asked for.
    pub device_choice: DeviceChoice,
    /// The last photo folder.
    pub data_path: String,
    /// The base weights.
    pub weights: WeightsChoice,
    /// The training configuration.
    pub train: TrainConfig,
    /// The last model opened or trained.
    pub last_model: Option<PathBuf>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            view: View::Data,
            device_choice: DeviceChoice::Auto,
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

/// A change the UI asks for; applied in one place ([`VggtuneApp::run_command`]).
#[must_use]
pub(crate) enum UiCommand {
    Show(View),
    Quit,
    OpenDataset(PathBuf),
    ChooseDataFolder,
    ImportWeights,
    DownloadWeights,
    CancelDownload,
    StartTraining { resume: bool },
    StopTraining,
    AddImages,
    PasteImage,
    ClearPredictions,
    ExportCsv,
    ExportSubmission,
    EvaluateDataset,
    NewModel,
    OpenModel,
    SaveModel,
    Export(ExportFormat),
    DiscardAndQuit,
    CancelQuit,
    ToggleAbout,
}

/// What a native file dialog was opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialogPurpose {
    DataFolder,
    ImportWeights,
    OpenModel,
    SaveModel,
    Export(ExportFormat),
    ExportCsv,
    ExportSubmission,
}

/// What an imported weights file holds, for the Weights view.
#[derive(Clone, Debug)]
pub(crate) struct WeightsInfo {
    pub path: PathBuf,
    pub format: WeightsFormat,
    pub convention: crate::data::Convention,
    pub sha256: String,
    pub imagenet_classifier: bool,
    pub notes: Vec<String>,
}

pub(crate) enum DownloadMsg {
    Progress(DownloadProgress),
    Done(Result<PathBuf, String>),
}

pub(crate) enum PredictMsg {
    Batch(Vec<Prediction>, Vec<Unclassified>),
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
}

/// The eframe application.
pub struct VggtuneApp {
    pub(crate) state: State,
    pub(crate) device: DeviceStatus,
    pub(crate) thumbnails: Thumbnails,
    pub(crate) notices: Vec<String>,
    pub(crate) dialog: Option<(DialogPurpose, Job<Option<PathBuf>>)>,
    pub(crate) files_dialog: Option<Job<Option<Vec<PathBuf>>>>,
    // Data.
    pub(crate) scan: Option<Job<Result<Dataset, String>>>,
    pub(crate) dataset: Option<Arc<Dataset>>,
    pub(crate) scan_error: Option<String>,
    pub(crate) shown_class: usize,
    pub(crate) path_edit: String,
    // Weights.
    pub(crate) weights_info: Option<WeightsInfo>,
    pub(crate) weights_job: Option<Job<Result<WeightsInfo, String>>>,
    pub(crate) weights_error: Option<String>,
    pub(crate) download: Option<(Job<DownloadMsg>, Arc<AtomicBool>)>,
    pub(crate) download_progress: Option<DownloadProgress>,
    // Training.
    pub(crate) run: Option<TrainingRun>,
    pub(crate) log: TrainLog,
    // Model and evaluation.
    pub(crate) classifier: Option<Arc<Mutex<Classifier>>>,
    pub(crate) model_classes: Vec<String>,
    pub(crate) model_path: Option<PathBuf>,
    pub(crate) model_saved: bool,
    pub(crate) model_job: Option<Job<Result<(Classifier, PathBuf), String>>>,
    pub(crate) evaluation: Option<EvaluatedImages>,
    pub(crate) eval_job: Option<Job<Result<EvaluatedImages, String>>>,
    pub(crate) selected_cell: Option<(usize, usize)>,
    // Predictions.
    pub(crate) predictions: Vec<Prediction>,
    pub(crate) rejected: Vec<Unclassified>,
    pub(crate) predict_jobs: Vec<Job<PredictMsg>>,
    pub(crate) paste_job: Option<Job<Result<PathBuf, String>>>,
    pub(crate) export_job: Option<Job<Result<String, String>>>,
    // Closing.
    pub(crate) confirm_close: bool,
    pub(crate) closing: bool,
    pub(crate) show_about: bool,
    title: String,
    work_dir: PathBuf,
    cache_root: Option<PathBuf>,
}

fn default_work_dir() -> PathBuf {
    crate::fsutil::app_dir(crate::fsutil::AppDir::Data)
}

impl VggtuneApp {
    /// Builds the app, restoring the persisted [`State`] and probing the device on a worker.
    pub fn new(cc: &eframe::CreationContext<'_>, device_choice: DeviceChoice) -> Self {
        Self::with_options(
            cc,
            AppOptions {
                device_choice,
                ..AppOptions::default()
            },
        )
    }

    /// Builds the app with explicit options.
    pub fn with_options(cc: &eframe::CreationContext<'_>, options: AppOptions) -> Self {
        let mut state: State = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        if options.device_choice != DeviceChoice::Auto {
            state.device_choice = options.device_choice;
        }
        let ctx = &cc.egui_ctx;
        let choice = state.device_choice;
        let device = DeviceStatus::Probing(Job::once(ctx, "device-probe", move || {
            device::select(choice)
        }));
        let mut app = Self {
            path_edit: state.data_path.clone(),
            state,
            device,
            thumbnails: Thumbnails::new(ctx, 2),
            notices: Vec::new(),
            dialog: None,
            files_dialog: None,
            scan: None,
            dataset: None,
            scan_error: None,
            shown_class: 0,
            weights_info: None,
            weights_job: None,
            weights_error: None,
            download: None,
            download_progress: None,
            run: None,
            log: TrainLog::default(),
            classifier: None,
            model_classes: Vec::new(),
            model_path: None,
            model_saved: true,
            model_job: None,
            evaluation: None,
            eval_job: None,
            selected_cell: None,
            predictions: Vec::new(),
            rejected: Vec::new(),
            predict_jobs: Vec::new(),
            paste_job: None,
            export_job: None,
            confirm_close: false,
            closing: false,
            show_about: false,
            title: String::new(),
            work_dir: options.work_dir.unwrap_or_else(default_work_dir),
            cache_root: options.cache_root,
        };
        // Pick up where the user left off: the last folder and the last model.
        if !app.state.data_path.is_empty() {
            let path = PathBuf::from(&app.state.data_path);
            if path.is_dir() {
                app.open_dataset(ctx, path);
            }
        }
        if let Some(model) = app.state.last_model.clone().filter(|p| p.is_file()) {
            app.load_model(ctx, model, true);
        }
        if let WeightsChoice::File(path) = app.state.weights.clone() {
            app.read_weights_info(ctx, path);
        }
        app
    }

    /// The view being shown.
    pub fn view(&self) -> View {
        self.state.view
    }

    /// The persisted state (tests change the training configuration through it).
    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// The chosen compute device, once the worker has chosen one.
    pub fn compute_device(&self) -> Option<&ComputeDevice> {
        match &self.device {
            DeviceStatus::Ready(d) => Some(d),
            _ => None,
        }
    }

    /// The open dataset.
    pub fn dataset(&self) -> Option<&Dataset> {
        self.dataset.as_deref()
    }

    /// Per-epoch metrics of the current or last run.
    pub fn epochs(&self) -> &[EpochMetrics] {
        &self.log.epochs
    }

    /// True while a training run is going.
    pub fn is_training(&self) -> bool {
        self.run.as_ref().is_some_and(TrainingRun::is_running)
    }

    /// True when a model is loaded and ready to predict.
    pub fn has_model(&self) -> bool {
        self.classifier.is_some()
    }

    /// The predictions shown in the Predict view.
    pub fn predictions(&self) -> &[Prediction] {
        &self.predictions
    }

    /// Files that could not be classified, with why.
    pub fn rejected(&self) -> &[Unclassified] {
        &self.rejected
    }

    /// The evaluation shown in the Evaluate view.
    pub fn evaluation(&self) -> Option<&Evaluation> {
        self.evaluation.as_ref().map(|e| &e.evaluation)
    }

    /// True while any background work that the user waits for is going.
    pub fn is_busy(&self) -> bool {
        self.scan.is_some()
            || self.is_training()
            || self.model_job.is_some()
            || self.eval_job.is_some()
            || !self.predict_jobs.is_empty()
            || self.weights_job.is_some()
    }

    pub(crate) fn run_command(&mut self, ctx: &egui::Context, command: UiCommand) {
        match command {
            UiCommand::Show(view) => self.state.view = view,
            UiCommand::Quit => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            UiCommand::OpenDataset(path) => self.open_dataset(ctx, path),
            UiCommand::ChooseDataFolder => {
                self.dialog = Some((DialogPurpose::DataFolder, jobs::pick_folder(ctx)));
            }
            UiCommand::ImportWeights => {
                self.dialog = Some((
                    DialogPurpose::ImportWeights,
                    jobs::pick_file(ctx, "VGG16 weights", &["pth", "pt", "safetensors", "onnx"]),
                ));
            }
            UiCommand::DownloadWeights => self.start_download(ctx),
            UiCommand::CancelDownload => {
                if let Some((_, cancel)) = &self.download {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
            UiCommand::StartTraining { resume } => self.start_training(ctx, resume),
            UiCommand::StopTraining => {
                if let Some(run) = &self.run {
                    run.stop();
                    self.log.outcome = Some("Stopping after this batch…".into());
                }
            }
            UiCommand::AddImages => self.files_dialog = Some(jobs::pick_files(ctx)),
            UiCommand::PasteImage => {
                let dir = self.work_dir.join("pasted");
                self.paste_job = Some(Job::once(ctx, "paste", move || paste_image(&dir)));
            }
            UiCommand::ClearPredictions => {
                self.predictions.clear();
                self.rejected.clear();
            }
            UiCommand::ExportCsv => {
                self.dialog = Some((
                    DialogPurpose::ExportCsv,
                    jobs::save_file(ctx, "predictions.csv".into(), "CSV", &["csv"]),
                ));
            }
            UiCommand::ExportSubmission => {
                self.dialog = Some((
                    DialogPurpose::ExportSubmission,
                    jobs::save_file(ctx, "submission.csv".into(), "CSV", &["csv"]),
                ));
            }
            UiCommand::EvaluateDataset => self.evaluate_dataset(ctx),
            UiCommand::NewModel => {
                self.classifier = None;
                self.model_classes.clear();
                self.model_path = None;
                self.model_saved = true;
                self.evaluation = None;
                self.state.last_model = None;
            }
            UiCommand::OpenModel => {
                self.dialog = Some((
                    DialogPurpose::OpenModel,
                    jobs::pick_file(ctx, "vggtune model", &["vggtune"]),
                ));
            }
            UiCommand::SaveModel => {
                self.dialog = Some((
                    DialogPurpose::SaveModel,
                    jobs::save_file(ctx, "model.vggtune".into(), "vggtune model", &["vggtune"]),
                ));
            }
            UiCommand::Export(format) => {
                let ext = format.extension();
                self.dialog = Some((
                    DialogPurpose::Export(format),
                    jobs::save_file(ctx, format!("model.{ext}"), ext, format.extensions()),
                ));
            }
            UiCommand::DiscardAndQuit => {
                self.model_saved = true;
                self.confirm_close = false;
                self.closing = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            UiCommand::CancelQuit => self.confirm_close = false,
            UiCommand::ToggleAbout => self.show_about = !self.show_about,
        }
    }

    /// Scans `path` on a worker.
    pub(crate) fn open_dataset(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.path_edit = path.display().to_string();
        self.state.data_path = self.path_edit.clone();
        self.scan_error = None;
        self.scan = Some(Job::once(ctx, "scan", move || {
            Dataset::scan(&path).map_err(|e| e.to_string())
        }));
    }

    fn read_weights_info(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.weights_error = None;
        self.weights_job = Some(Job::once(ctx, "weights", move || {
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

    fn start_download(&mut self, ctx: &egui::Context) {
        if self.download.is_some() {
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        self.weights_error = None;
        let job = Job::spawn(ctx, "download", move |r| {
            let result = download::download_vgg16(|p| r.send(DownloadMsg::Progress(p)), &flag);
            r.send(DownloadMsg::Done(result.map_err(|e| e.to_string())));
        });
        self.download = Some((job, cancel));
    }

    /// The weights file a run starts from, or why there is none.
    fn weights_for_run(&self) -> Result<Option<PathBuf>, String> {
        match &self.state.weights {
            WeightsChoice::Random => Ok(None),
            WeightsChoice::File(p) => Ok(Some(p.clone())),
            WeightsChoice::ImageNet => {
                let path = download::cached_vgg16_path();
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

    fn run_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.work_dir.join("last-run.vggtune"),
            self.work_dir.join("last-run.ckpt.vggtune"),
        )
    }

    /// True when a checkpoint of an unfinished run exists.
    pub fn can_resume(&self) -> bool {
        let (_, checkpoint) = self.run_paths();
        checkpoint.is_file() && !self.is_training()
    }

    fn start_training(&mut self, ctx: &egui::Context, resume: bool) {
        if self.is_training() {
            return;
        }
        let Some(dataset) = self.dataset.clone() else {
            self.notices
                .push("Open a photo folder first (Data view).".into());
            return;
        };
        let weights = match self.weights_for_run() {
            Ok(w) => w,
            Err(e) => {
                self.notices.push(e);
                return;
            }
        };
        let (out, checkpoint) = self.run_paths();
        let mut config = self.state.train.clone();
        config.device = self.state.device_choice;
        let job = TrainJob {
            dataset: (*dataset).clone(),
            weights,
            config,
            out: Some(out),
            checkpoint: Some(checkpoint),
            checkpoint_interval: crate::train::DEFAULT_CHECKPOINT_INTERVAL,
            // A finished run's checkpoint is deleted (below), so it is not written.
            final_checkpoint: false,
            resume,
            cache_root: self.cache_root.clone(),
            stop_after: None,
        };
        let wake = ctx.clone();
        match TrainingRun::start(job, move || wake.request_repaint()) {
            Ok(run) => {
                self.log = TrainLog::new(self.state.train.epochs, self.state.train.batch_size);
                self.run = Some(run);
            }
            Err(e) => self.notices.push(format!("Could not start training: {e}")),
        }
    }

    fn load_model(&mut self, ctx: &egui::Context, path: PathBuf, saved: bool) {
        let choice = self.state.device_choice;
        self.model_saved = saved;
        self.model_job = Some(Job::once(ctx, "load-model", move || {
            // The chosen device (the probe is shared and answers once), unless the model's
            // largest buffers do not fit the GPU: see `device::fit`.
            Classifier::load_for(&path, choice)
                .map(|c| (c, path))
                .map_err(|e| e.to_string())
        }));
    }

    fn classify(&mut self, ctx: &egui::Context, inputs: Vec<PathBuf>) {
        let (paths, rejected) = infer::collect_images(&inputs);
        self.rejected.extend(rejected);
        self.state.view = View::Predict;
        let Some(classifier) = self.classifier.clone() else {
            self.notices
                .push("Train or open a model first; then drop images to classify them.".into());
            return;
        };
        if paths.is_empty() {
            return;
        }
        self.predict_jobs.push(Job::spawn(ctx, "predict", move |r| {
            for chunk in paths.chunks(8) {
                let (p, f) = match classifier.lock() {
                    Ok(c) => c.predict(chunk, 8, |_, _| {}),
                    Err(_) => return,
                };
                r.send(PredictMsg::Batch(p, f));
            }
        }));
    }

    fn evaluate_dataset(&mut self, ctx: &egui::Context) {
        let (Some(classifier), Some(dataset)) = (self.classifier.clone(), self.dataset.clone())
        else {
            self.notices
                .push("Open a photo folder and a model first.".into());
            return;
        };
        self.eval_job = Some(Job::once(ctx, "evaluate", move || {
            let c = classifier
                .lock()
                .map_err(|_| "the model is unavailable".to_owned())?;
            Ok(c.evaluate(&dataset, 16, |_, _| {})?.evaluated)
        }));
    }

    /// Applies what the workers sent since the last frame.
    fn poll_workers(&mut self, ctx: &egui::Context) {
        self.thumbnails.poll(ctx);
        if let DeviceStatus::Probing(job) = &mut self.device {
            if let Some(result) = job.poll().pop() {
                self.device = match result {
                    Ok(d) => DeviceStatus::Ready(Box::new(d)),
                    Err(e) => DeviceStatus::Failed(e),
                };
            } else if job.is_finished() {
                self.device =
                    DeviceStatus::Failed(DeviceError::NoGpu("the device probe stopped".into()));
            }
        }
        if let Some(job) = &mut self.scan
            && let Some(result) = job.poll().pop()
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
        if let Some(job) = &mut self.weights_job
            && let Some(result) = job.poll().pop()
        {
            self.weights_job = None;
            match result {
                Ok(info) => {
                    self.state.weights = WeightsChoice::File(info.path.clone());
                    self.weights_info = Some(info);
                }
                Err(e) => self.weights_error = Some(e),
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
            if let Some(result) = done {
                self.download = None;
                self.download_progress = None;
                match result {
                    Ok(_) => self.state.weights = WeightsChoice::ImageNet,
                    Err(e) => self.weights_error = Some(e),
                }
            }
        }
        self.poll_training(ctx);
        if let Some(job) = &mut self.model_job
            && let Some(result) = job.poll().pop()
        {
            self.model_job = None;
            match result {
                Ok((classifier, path)) => {
                    self.model_classes = classifier.classes().to_vec();
                    self.classifier = Some(Arc::new(Mutex::new(classifier)));
                    if self.model_saved {
                        self.state.last_model = Some(path.clone());
                    }
                    self.model_path = Some(path);
                }
                Err(e) => self.notices.push(format!("Could not open the model: {e}")),
            }
        }
        if let Some(job) = &mut self.eval_job
            && let Some(result) = job.poll().pop()
        {
            self.eval_job = None;
            match result {
                Ok(e) => {
                    self.evaluation = Some(e);
                    self.selected_cell = None;
                }
                Err(e) => self.notices.push(format!("Evaluation failed: {e}")),
            }
        }
        for job in &mut self.predict_jobs {
            for PredictMsg::Batch(p, f) in job.poll() {
                self.predictions.extend(p);
                self.rejected.extend(f);
            }
        }
        self.predict_jobs.retain(|j| !j.is_finished());
        if let Some((purpose, job)) = &mut self.dialog
            && let Some(result) = job.poll().pop()
        {
            let purpose = *purpose;
            self.dialog = None;
            if let Some(path) = result {
                self.dialog_done(ctx, purpose, path);
            }
        }
        if let Some(job) = &mut self.paste_job
            && let Some(result) = job.poll().pop()
        {
            self.paste_job = None;
            match result {
                Ok(path) => self.classify(ctx, vec![path]),
                Err(e) => self.notices.push(e),
            }
        }
        if let Some(job) = &mut self.export_job
            && let Some(result) = job.poll().pop()
        {
            self.export_job = None;
            match result {
                Ok(done) => self.notices.push(format!("Exported: {done}")),
                Err(e) => self.notices.push(format!("Export failed: {e}")),
            }
        }
        if let Some(job) = &mut self.files_dialog
            && let Some(result) = job.poll().pop()
        {
            self.files_dialog = None;
            if let Some(paths) = result {
                self.classify(ctx, paths);
            }
        }
    }

    fn poll_training(&mut self, ctx: &egui::Context) {
        let Some(run) = &self.run else { return };
        // Asked before draining: a thread that had ended has sent everything it will send.
        let thread_done = !run.is_running();
        let mut finished: Option<Box<RunSummary>> = None;
        for event in run.try_events() {
            if let Some(summary) = self.log.apply(event) {
                finished = Some(summary);
            }
        }
        if let Some(summary) = finished {
            let RunSummary {
                validation, model, ..
            } = *summary;
            self.evaluation = Some(validation);
            self.selected_cell = None;
            if let Some(model) = model {
                self.load_model(ctx, model, false);
            }
            // The run is over: its checkpoint is not needed for a resume any more.
            let (_, checkpoint) = self.run_paths();
            let _ = std::fs::remove_file(checkpoint);
        }
        if thread_done {
            self.run = None;
        }
    }

    fn dialog_done(&mut self, ctx: &egui::Context, purpose: DialogPurpose, path: PathBuf) {
        match purpose {
            DialogPurpose::DataFolder => self.open_dataset(ctx, path),
            DialogPurpose::ImportWeights => self.read_weights_info(ctx, path),
            DialogPurpose::OpenModel => self.load_model(ctx, path, true),
            DialogPurpose::SaveModel => match &self.model_path {
                Some(from) => {
                    match std::fs::read(from).and_then(|b| crate::fsutil::write_atomic(&path, &b)) {
                        Ok(()) => {
                            self.model_path = Some(path.clone());
                            self.model_saved = true;
                            self.state.last_model = Some(path);
                        }
                        Err(e) => self
                            .notices
                            .push(format!("{}: could not save: {e}", path.display())),
                    }
                }
                None => self.notices.push("There is no model to save yet.".into()),
            },
            DialogPurpose::Export(format) => match &self.model_path {
                Some(from) => {
                    let from = from.clone();
                    self.export_job = Some(Job::once(ctx, "export", move || {
                        crate::model::export::export_model(&from, format, &path)
                            .map_err(|e| e.to_string())
                    }));
                }
                None => self.notices.push("There is no model to export yet.".into()),
            },
            DialogPurpose::ExportCsv => {
                if let Err(e) = infer::write_csv(&path, &self.model_classes, &self.predictions) {
                    self.notices.push(format!("{}: {e}", path.display()));
                }
            }
            DialogPurpose::ExportSubmission => {
                let result =
                    infer::kaggle_rows(&self.model_classes, &self.predictions, infer::KAGGLE_CLIP)
                        .and_then(|rows| infer::write_submission(&path, &rows));
                if let Err(e) = result {
                    self.notices.push(e.to_string());
                }
            }
        }
    }

    /// What a drop does now, in words (for the hover overlay).
    fn drop_action(&self, paths: &[PathBuf]) -> String {
        let folders = paths.iter().filter(|p| p.is_dir()).count();
        if self.opens_dataset_on_drop(paths) {
            "Drop to open this folder as the photo dataset".into()
        } else if self.classifier.is_some() {
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

    fn opens_dataset_on_drop(&self, paths: &[PathBuf]) -> bool {
        paths.len() == 1
            && paths[0].is_dir()
            && (self.state.view == View::Data || self.classifier.is_none())
    }

    fn handle_drops(&mut self, ctx: &egui::Context) {
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
        if self.opens_dataset_on_drop(&dropped) {
            self.state.view = View::Data;
            self.open_dataset(ctx, dropped[0].clone());
        } else {
            self.classify(ctx, dropped);
        }
    }

    fn drop_overlay(&self, ctx: &egui::Context) {
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

    fn update_title(&mut self, ctx: &egui::Context) {
        let model = match &self.model_path {
            Some(p) if self.model_saved => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Some(_) => "unsaved model*".to_owned(),
            None => "no model".to_owned(),
        };
        let title = format!("{APP_NAME} — {model}");
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    /// The window title (tests read it).
    pub fn title(&self) -> &str {
        &self.title
    }
}

impl eframe::App for VggtuneApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.poll_workers(ctx);
        self.handle_drops(ctx);
        if ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::Q)) {
            self.run_command(ctx, UiCommand::Quit);
        }
        // Ctrl+V in the Predict view classifies an image on the clipboard.
        let paste = ctx.input(|i| {
            i.events.iter().any(|e| matches!(e, egui::Event::Paste(_)))
                || (i.modifiers.command && i.key_pressed(egui::Key::V))
        });
        if paste && self.state.view == View::Predict && self.paste_job.is_none() {
            self.run_command(ctx, UiCommand::PasteImage);
        }
        if ctx.input(|i| i.viewport().close_requested()) && !self.model_saved && !self.closing {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.confirm_close = true;
        }
        self.update_title(ctx);
        if self.is_busy() || self.download.is_some() {
            // Progress and ETA move with time, not only with events.
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let mut commands = Vec::new();
        egui::Panel::top("tabs").show(ui, |ui| views::top_bar_ui(self, ui, &mut commands));
        egui::Panel::bottom("status").show(ui, |ui| views::status_ui(self, ui));
        egui::CentralPanel::default().show(ui, |ui| {
            views::notices_ui(self, ui);
            match self.state.view {
                View::Data => views::data_ui(self, ui, &mut commands),
                View::Weights => views::weights_ui(self, ui, &mut commands),
                View::Train => views::train_ui(self, ui, &mut commands),
                View::Evaluate => views::evaluate_ui(self, ui, &mut commands),
                View::Predict => views::predict_ui(self, ui, &mut commands),
            }
        });
        if self.confirm_close {
            views::confirm_close_ui(&ctx, &mut commands);
        }
        if self.show_about {
            views::about_ui(self, &ctx, &mut commands);
        }
        self.drop_overlay(&ctx);
        for command in commands {
            self.run_command(&ctx, command);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.state);
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
