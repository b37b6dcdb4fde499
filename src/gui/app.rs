//! The app: what the views share, one panel per view, and the one place ([`VggtuneApp`]'s
//! `run_command`) where a view's action reaches another view's state.

use std::path::PathBuf;

use eframe::egui;

use super::data::DataPanel;
use super::evaluate::{EvalSource, EvaluatePanel};
use super::jobs::Job;
use super::model::ModelPanel;
use super::predict::PredictPanel;
use super::prompt::{OpenDialog, PathPrompt};
use super::sort::SortPanel;
use super::train::TrainPanel;
use super::weights::WeightsPanel;
use super::{
    APP_NAME, AppOptions, Commands, DeviceStatus, DialogPurpose, Replacing, Shared, State,
    Thumbnails, UiCommand, View, WeightsChoice, chrome,
};
use crate::data::Dataset;
use crate::device::{self, ComputeDevice, DeviceChoice, DeviceError};
use crate::infer::{self, Prediction, Unclassified};
use crate::train::{EpochMetrics, Evaluation};

/// The eframe application.
pub struct VggtuneApp {
    pub(super) shared: Shared,
    pub(super) data: DataPanel,
    pub(super) weights: WeightsPanel,
    pub(super) train: TrainPanel,
    pub(super) evaluate: EvaluatePanel,
    pub(super) predict: PredictPanel,
    pub(super) sort: SortPanel,
    pub(super) model: ModelPanel,
    confirm_close: bool,
    /// What replaces the unsaved model once the user agrees.
    confirm_replace: Option<Replacing>,
    /// Quit once the run has stopped (the quit question's Stop training and quit).
    quit_after_stop: bool,
    /// Quit once the model is saved (the unsaved-model question's Save).
    quit_after_save: bool,
    closing: bool,
    show_about: bool,
    title: String,
    /// The state as last saved.
    saved_state: State,
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
        // A precision given on the command line (or in VGGTUNE_PRECISION) wins over the one
        // kept from the last session.
        match crate::model::bf16::chosen() {
            crate::model::bf16::Choice::Auto => crate::model::bf16::choose(state.precision),
            given => state.precision = given,
        }
        let ctx = &cc.egui_ctx;
        let choice = state.device_choice;
        let device = DeviceStatus::Probing(Job::once(ctx, "device-probe", move || {
            device::select(choice)
        }));
        let mut app = Self {
            data: DataPanel::new(state.data_path.clone()),
            shared: Shared {
                state,
                device,
                thumbnails: Thumbnails::new(ctx, 2),
                heatmaps: super::heatmaps::Heatmaps::new(ctx),
                notices: Vec::new(),
                told: Vec::new(),
                dialog: None,
                prompt: None,
                last_folder: None,
                work_dir: options
                    .work_dir
                    .unwrap_or_else(|| crate::fsutil::app_dir(crate::fsutil::AppDir::Data)),
                cache_root: options.cache_root,
                weights_dir: options
                    .weights_dir
                    .unwrap_or_else(crate::model::download::weights_cache_dir),
                stop_after: options.stop_after,
            },
            weights: WeightsPanel::default(),
            train: TrainPanel::default(),
            evaluate: EvaluatePanel::default(),
            predict: PredictPanel::default(),
            sort: SortPanel::default(),
            model: ModelPanel::default(),
            confirm_close: false,
            confirm_replace: None,
            quit_after_stop: false,
            quit_after_save: false,
            closing: false,
            show_about: false,
            title: String::new(),
            saved_state: State::default(),
        };
        app.saved_state = app.shared.state.clone();
        // Pick up where the user left off: the last folder and the last model.
        let state = &app.shared.state;
        let last_folder = Some(PathBuf::from(&state.data_path))
            .filter(|p| !state.data_path.is_empty() && p.is_dir());
        let last_model = state.last_model.clone().filter(|p| p.is_file());
        let weights_file = match &state.weights {
            WeightsChoice::File(path) => Some(path.clone()),
            _ => None,
        };
        if let Some(path) = last_folder {
            app.data.open(ctx, &mut app.shared, path);
        }
        if let Some(model) = last_model {
            app.model.load(ctx, &app.shared, model, true);
        }
        if let Some(path) = weights_file {
            app.weights.read_info(ctx, path);
        }
        app
    }

    /// Whether the persisted state changed since it was last saved.
    pub fn state_unsaved(&self) -> bool {
        self.shared.state != self.saved_state
    }

    /// The view being shown.
    pub fn view(&self) -> View {
        self.shared.state.view
    }

    /// The persisted state (tests change the training configuration through it).
    pub fn state_mut(&mut self) -> &mut State {
        &mut self.shared.state
    }

    /// The base weights a run would start from.
    pub fn state_weights(&self) -> &WeightsChoice {
        &self.shared.state.weights
    }

    /// The chosen compute device, once the worker has chosen one.
    pub fn compute_device(&self) -> Option<&ComputeDevice> {
        match &self.shared.device {
            DeviceStatus::Ready(d) => Some(d),
            _ => None,
        }
    }

    /// The open dataset.
    pub fn dataset(&self) -> Option<&Dataset> {
        self.data.dataset.as_deref()
    }

    /// Per-epoch metrics of the current or last run.
    pub fn epochs(&self) -> &[EpochMetrics] {
        &self.train.log.epochs
    }

    /// True while a training run is going.
    pub fn is_training(&self) -> bool {
        self.train.is_training()
    }

    /// True when a model is loaded and ready to predict.
    pub fn has_model(&self) -> bool {
        self.model.in_use.is_some()
    }

    /// The predictions shown in the Predict view.
    pub fn predictions(&self) -> &[Prediction] {
        &self.predict.predictions
    }

    /// The heatmaps of `path` (one per class), once computed.
    pub fn heatmaps_of(&self, path: &std::path::Path) -> Option<Vec<Vec<f32>>> {
        self.shared.heatmaps.maps_of(path)
    }

    /// The photos Check data listed with a wrong label, with the class each looks like.
    pub fn label_suspects(&self) -> Vec<(PathBuf, String)> {
        self.data.audit.suspects()
    }

    /// Every photo Check data listed, with its kind.
    pub fn data_findings(&self) -> Vec<(crate::train::check::Kind, PathBuf)> {
        self.data.audit.findings()
    }

    /// The Sort view's session: the pool's photos and each one's answer (`None`: none yet).
    pub fn sort_answers(&self) -> Option<Vec<(PathBuf, Option<crate::sort::Answer>)>> {
        let session = self.sort.session.as_ref()?;
        Some(
            (0..session.photos.len())
                .map(|i| (session.photos[i].path.clone(), session.answer_of(i)))
                .collect(),
        )
    }

    /// The photo the Sort view asks about now, with the head's guess (class name).
    pub fn sort_asks(&self) -> Option<(PathBuf, Option<String>)> {
        let session = self.sort.session.as_ref()?;
        let i = *session.queue().first()?;
        let guess = session.guess(i).map(|(c, _)| session.classes[c].clone());
        Some((session.photos[i].path.clone(), guess))
    }

    /// Files that could not be classified, with why.
    pub fn rejected(&self) -> &[Unclassified] {
        &self.predict.rejected
    }

    /// The evaluation shown in the Evaluate view.
    pub fn evaluation(&self) -> Option<&Evaluation> {
        self.evaluate.evaluation.as_ref().map(|e| &e.evaluation)
    }

    /// True while any background work that the user waits for is going.
    pub fn is_busy(&self) -> bool {
        self.data.is_busy()
            || self.is_training()
            || self.model.activity().is_some()
            || self.evaluate.is_busy()
            || self.predict.is_busy()
            || self.weights.is_busy()
            || self.sort.is_busy()
    }

    /// The model in use: its file, the epochs it was trained for and whether it is saved.
    pub fn model_in_use(&self) -> Option<(PathBuf, usize, bool)> {
        self.model
            .in_use
            .as_ref()
            .map(|m| (m.file.clone(), m.epochs, m.saved))
    }

    /// The runs since the app started, as the runs table shows them: epochs trained, wall
    /// time in seconds and how each ended.
    pub fn runs(&self) -> Vec<(usize, f64, &'static str)> {
        self.train.runs()
    }

    /// What the Train view's run says of itself: its settings and the epoch its stage began at.
    pub fn run_settings(&self) -> Option<(crate::train::TrainConfig, usize)> {
        let log = &self.train.log;
        log.config.clone().map(|c| (c, log.stage_start))
    }

    /// True when a stopped run can be continued (from its checkpoint, or started again).
    pub fn can_resume(&self) -> bool {
        self.train.can_resume(&self.shared)
    }

    /// The window title (tests read it).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// Asks for a path for `purpose` (a path field, with Browse… for the native dialog).
    fn ask(&mut self, purpose: DialogPurpose) {
        let model_folder = self
            .model
            .in_use
            .as_ref()
            .filter(|m| m.saved)
            .and_then(|m| m.file.parent().map(PathBuf::from));
        let folder = self.shared.last_folder.clone().or(model_folder);
        self.shared.prompt = Some(PathPrompt::new(purpose, folder));
    }

    pub(super) fn run_command(&mut self, ctx: &egui::Context, command: UiCommand) {
        let shared = &mut self.shared;
        match command {
            UiCommand::Show(view) => shared.state.view = view,
            UiCommand::Quit => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            UiCommand::OpenDataset(path) => self.data.open(ctx, shared, path),
            UiCommand::ChooseDataFolder => {
                shared.dialog = Some(OpenDialog::open(ctx, DialogPurpose::DataFolder, None));
            }
            UiCommand::ChooseEvaluateFolder => {
                shared.dialog = Some(OpenDialog::open(ctx, DialogPurpose::EvaluateFolder, None));
            }
            UiCommand::ImportWeights => self.ask(DialogPurpose::ImportWeights),
            UiCommand::DownloadWeights => self.weights.start_download(ctx, shared),
            UiCommand::CancelDownload => self.weights.cancel_download(),
            UiCommand::StartTraining { resume } => {
                // Resume continues the stopped run; only a new run replaces the model.
                self.replace(ctx, Replacing::Start { resume }, !resume);
            }
            UiCommand::ReplaceAnyway => {
                if let Some(what) = self.confirm_replace.take() {
                    self.replace(ctx, what, false);
                }
            }
            UiCommand::CancelReplace => self.confirm_replace = None,
            UiCommand::StopAndQuit => {
                self.confirm_close = false;
                self.quit_after_stop = true;
                self.train.stop();
            }
            UiCommand::StopTraining => self.train.stop(),
            UiCommand::AddImages => self.predict.choose_files(ctx),
            UiCommand::PasteImage => self.predict.paste(ctx, shared),
            UiCommand::ClearPredictions => self.predict.clear(),
            UiCommand::CancelPredictions => self.predict.cancel(),
            UiCommand::ExportCsv => self.ask(DialogPurpose::ExportCsv),
            UiCommand::ExportSubmission => self.ask(DialogPurpose::ExportSubmission),
            UiCommand::EvaluateDataset => self.evaluate_dataset(ctx),
            UiCommand::EvaluateFolder(path) => self.evaluate_folder(ctx, path),
            UiCommand::NewModel => self.replace(ctx, Replacing::New, true),
            UiCommand::OpenModel => self.replace(ctx, Replacing::Open, true),
            UiCommand::SaveModel => self.ask(DialogPurpose::SaveModel),
            UiCommand::Export(format) => self.ask(DialogPurpose::Export(format)),
            UiCommand::PromptOk => {
                if let Some(prompt) = shared.prompt.take() {
                    let path = PathBuf::from(prompt.text.trim());
                    shared.last_folder = path.parent().map(PathBuf::from);
                    self.dialog_done(ctx, prompt.purpose, path);
                }
            }
            UiCommand::PromptBrowse => {
                if let Some(prompt) = &mut shared.prompt {
                    prompt.message = None;
                    let suggested = Some(PathBuf::from(prompt.text.trim()));
                    shared.dialog = Some(OpenDialog::open(ctx, prompt.purpose, suggested));
                }
            }
            UiCommand::PromptCancel => {
                shared.prompt = None;
                self.quit_after_save = false;
            }
            UiCommand::SaveAndQuit => {
                self.confirm_close = false;
                self.quit_after_save = true;
                self.ask(DialogPurpose::SaveModel);
            }
            UiCommand::DiscardAndQuit => {
                self.model.discard();
                self.confirm_close = false;
                self.close(ctx);
            }
            UiCommand::CancelQuit => self.confirm_close = false,
            UiCommand::ToggleAbout => self.show_about = !self.show_about,
            UiCommand::CheckLabels => self.check_labels(ctx),
            UiCommand::FineTuneDeeper => self.fine_tune_deeper(ctx),
            UiCommand::StartSort => self.start_sort(ctx),
        }
    }

    /// Does `what`, which replaces the model in use; when `ask` and that model is unsaved, asks
    /// first (the question's answers come back as commands).
    pub(super) fn replace(&mut self, ctx: &egui::Context, what: Replacing, ask: bool) {
        if ask && self.model.unsaved() {
            self.confirm_replace = Some(what);
            return;
        }
        match what {
            Replacing::Start { resume } => self.start_training(ctx, resume),
            Replacing::Open => self.ask(DialogPurpose::OpenModel),
            Replacing::OpenFile(path) => self.model.load(ctx, &self.shared, path, true),
            Replacing::New => {
                self.model.forget(&mut self.shared);
                self.evaluate.clear();
                self.predict.clear();
                if !self.train.is_training() {
                    self.train.log = crate::train::TrainLog::default();
                }
            }
        }
    }

    fn start_training(&mut self, ctx: &egui::Context, resume: bool) {
        let Some(dataset) = self.data.dataset.clone() else {
            self.shared
                .notices
                .push("Open a photo folder first (Data view).".into());
            return;
        };
        match WeightsPanel::for_run(&self.shared.state.weights, &self.shared.weights_dir) {
            Ok(weights) => self
                .train
                .start(ctx, &mut self.shared, &dataset, weights, resume),
            Err(e) => self.shared.notices.push(e),
        }
    }

    fn fine_tune_deeper(&mut self, ctx: &egui::Context) {
        let model = self
            .model
            .in_use
            .as_ref()
            .map(|m| (m.file.clone(), m.network));
        match (self.data.dataset.clone(), model) {
            (Some(dataset), Some(model)) => {
                self.train
                    .start_stage(ctx, &mut self.shared, &dataset, model)
            }
            _ => self
                .shared
                .notices
                .push("Open a photo folder and train or open a model first.".into()),
        }
    }

    fn start_sort(&mut self, ctx: &egui::Context) {
        let model = self.model.in_use.as_ref().map(|m| m.file.clone());
        match WeightsPanel::for_run(&self.shared.state.weights, &self.shared.weights_dir) {
            Ok(weights) => self.sort.start(ctx, &self.shared, weights, model),
            // Starting from a model needs no base weights of its own.
            Err(_) if model.is_some() && self.sort.from_model => {
                self.sort.start(ctx, &self.shared, None, model);
            }
            Err(e) => self.shared.notices.push(e),
        }
    }

    fn check_labels(&mut self, ctx: &egui::Context) {
        let Some(dataset) = self.data.dataset.clone() else {
            return;
        };
        match WeightsPanel::for_run(&self.shared.state.weights, &self.shared.weights_dir) {
            Ok(weights) => self.data.audit.start(ctx, &self.shared, &dataset, weights),
            Err(e) => self.shared.notices.push(e),
        }
    }

    fn evaluate_dataset(&mut self, ctx: &egui::Context) {
        match self.data.dataset.clone() {
            Some(dataset) => self.evaluate_on(ctx, EvalSource::Open(dataset)),
            None => self
                .shared
                .notices
                .push("Open a photo folder and a model first.".into()),
        }
    }

    pub(super) fn evaluate_folder(&mut self, ctx: &egui::Context, folder: PathBuf) {
        self.shared.state.view = View::Evaluate;
        self.evaluate_on(ctx, EvalSource::Folder(folder));
    }

    /// Evaluates the model in use on `source`, or says there is none.
    fn evaluate_on(&mut self, ctx: &egui::Context, source: EvalSource) {
        match self.model.classifier() {
            Some(classifier) => {
                let classes = self.model.classes();
                let switches = self.model.switches();
                self.evaluate
                    .start(ctx, (classifier, switches), classes, source);
            }
            None => self
                .shared
                .notices
                .push("Train or open a model first; then evaluate it on a folder.".into()),
        }
    }

    pub(super) fn classify(&mut self, ctx: &egui::Context, inputs: Vec<PathBuf>) {
        let classifier = self.model.classifier();
        let switches = self.model.switches();
        self.predict
            .classify(ctx, &mut self.shared, (classifier, switches), inputs);
    }

    /// Applies what the workers sent since the last frame.
    fn poll_workers(&mut self, ctx: &egui::Context) {
        let shared = &mut self.shared;
        shared.thumbnails.poll(ctx);
        shared.heatmaps.poll(ctx);
        if let DeviceStatus::Probing(job) = &mut shared.device {
            if let Some(result) = job.poll().pop() {
                shared.device = match result {
                    Ok(d) => DeviceStatus::Ready(Box::new(d)),
                    Err(e) => DeviceStatus::Failed(e),
                };
            } else if job.is_finished() {
                shared.device =
                    DeviceStatus::Failed(DeviceError::NoGpu("the device probe stopped".into()));
            }
        }
        self.data.poll();
        self.sort.poll(ctx);
        self.weights.poll(shared);
        if let Some(ended) = self.train.poll(shared) {
            // The run's model becomes the model in use, unsaved; a stopped run's model shows
            // its own last validation pass once it loads.
            match ended.validation {
                Some(validation) => self.evaluate.show(validation),
                None => self.evaluate.clear(),
            }
            self.model.load(ctx, shared, ended.model, false);
        }
        if let Some(loaded) = self.model.poll(shared) {
            // Another model's predictions would be shown under this one's classes.
            self.predict.clear();
            // An evaluation of other classes would be drawn with this model's heatmaps.
            if self
                .evaluate
                .evaluation
                .as_ref()
                .is_some_and(|e| e.evaluation.classes != self.model.classes())
            {
                self.evaluate.clear();
            }
            // A model opened (after a restart too) shows its own curves and last validation
            // in place of whatever was on screen, unless a run is going; a run's own model
            // matches what its run showed.
            if loaded.opened {
                if !self.train.is_training() {
                    self.train.log = crate::train::TrainLog::from_history(loaded.history);
                }
                match loaded.validation {
                    Some(validation) => self.evaluate.show(validation),
                    None => self.evaluate.clear(),
                }
            } else if let Some(validation) = loaded.validation
                && self.evaluate.evaluation.is_none()
            {
                self.evaluate.show(validation);
            }
        }
        self.evaluate.poll(shared);
        let in_use = self.model.in_use.as_ref();
        shared.heatmaps.set_model(
            in_use.map(|m| &m.classifier),
            in_use.map(|m| m.preprocessing),
            self.model.classes(),
        );
        let to_classify = self.predict.poll(shared);
        if !to_classify.is_empty() {
            self.classify(ctx, to_classify);
        }
        self.poll_dialog(ctx);
        if std::mem::take(&mut self.model.save_failed) {
            // The save that a quit waited for failed: the window stays, with the notice.
            self.quit_after_save = false;
        }
        if self.quit_after_stop && !self.is_training() {
            self.quit_after_stop = false;
            self.close(ctx);
        }
        if self.quit_after_save && !self.model.unsaved() && self.model.activity().is_none() {
            self.quit_after_save = false;
            self.close(ctx);
        }
    }

    /// Closes the window without asking again (the question was answered).
    fn close(&mut self, ctx: &egui::Context) {
        self.closing = true;
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    /// Acts on the native dialog's answer: a chosen path is used at once; a dialog that could
    /// not open says so in the prompt (or as a notice).
    fn poll_dialog(&mut self, ctx: &egui::Context) {
        let Some(dialog) = &mut self.shared.dialog else {
            return;
        };
        let Some(answer) = dialog.poll() else { return };
        let purpose = dialog.purpose;
        self.shared.dialog = None;
        let prompt = self.shared.prompt.as_mut().filter(|p| p.purpose == purpose);
        match (answer, prompt) {
            (Ok(Some(path)), _) => {
                self.shared.prompt = None;
                self.dialog_done(ctx, purpose, path);
            }
            (Ok(None), _) => {}
            (Err(why), Some(prompt)) => prompt.message = Some(why),
            (Err(why), None) => self.shared.notices.push(why),
        }
    }

    fn dialog_done(&mut self, ctx: &egui::Context, purpose: DialogPurpose, path: PathBuf) {
        let shared = &mut self.shared;
        match purpose {
            DialogPurpose::DataFolder => self.data.open(ctx, shared, path),
            DialogPurpose::EvaluateFolder => self.evaluate_folder(ctx, path),
            DialogPurpose::ImportWeights => self.weights.read_info(ctx, path),
            DialogPurpose::OpenModel => self.model.load(ctx, shared, path, true),
            DialogPurpose::SaveModel => self.model.save_as(ctx, shared, path),
            DialogPurpose::Export(format) => self.model.export(ctx, shared, format, path),
            DialogPurpose::ExportCsv => {
                let rows = self.predictions().len();
                match infer::write_csv(&path, self.model.classes(), self.predictions()) {
                    Ok(()) => self
                        .shared
                        .tell(format!("Saved {} ({rows} predictions)", path.display())),
                    Err(e) => self.shared.notices.push(format!("{}: {e}", path.display())),
                }
            }
            DialogPurpose::ExportSubmission => {
                let result = infer::kaggle_rows(
                    self.model.classes(),
                    self.predictions(),
                    infer::KAGGLE_CLIP,
                )
                .and_then(|rows| infer::write_submission(&path, &rows).map(|()| rows.len()));
                match result {
                    Ok(rows) => self
                        .shared
                        .tell(format!("Saved {} ({rows} rows)", path.display())),
                    Err(e) => self.shared.notices.push(e.to_string()),
                }
            }
        }
    }

    fn update_title(&mut self, ctx: &egui::Context) {
        let title = format!("{APP_NAME} — {}", self.model.title());
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    fn view_ui(&mut self, ui: &mut egui::Ui, commands: &mut Commands) {
        let shared = &mut self.shared;
        match shared.state.view {
            View::Data => self.data.ui(ui, shared, commands),
            View::Weights => self.weights.ui(ui, shared, commands),
            View::Train => {
                let dataset = self.data.dataset.as_deref();
                let has_model = self.model.in_use.is_some();
                self.train.ui(ui, shared, (dataset, has_model), commands);
            }
            View::Evaluate => {
                let can_start = (self.model.in_use.is_some(), self.data.dataset.is_some());
                self.evaluate
                    .ui(ui, shared, can_start, &self.model, commands);
            }
            View::Predict => self.predict.ui(ui, shared, &self.model, commands),
            View::Sort => {
                let classes = self.model.in_use.as_ref().map(|m| m.classes.as_slice());
                self.sort.ui(ui, shared, classes, commands);
            }
        }
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
        if paste && self.shared.state.view == View::Predict {
            self.run_command(ctx, UiCommand::PasteImage);
        }
        let unsettled = self.model.unsaved() || self.is_training();
        if ctx.input(|i| i.viewport().close_requested()) && unsettled && !self.closing {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.confirm_close = true;
        }
        self.update_title(ctx);
        if self.is_busy() {
            // Progress and ETA move with time, not only with events.
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
        if self.state_unsaved() {
            // A frame after the delay, so that eframe saves the change even if nothing moves.
            ctx.request_repaint_after(super::STATE_SAVE_DELAY);
        }
    }

    /// Soon after a setting changed ([`super::STATE_SAVE_DELAY`]), else eframe's default.
    fn auto_save_interval(&self) -> std::time::Duration {
        if self.state_unsaved() {
            super::STATE_SAVE_DELAY
        } else {
            std::time::Duration::from_secs(30)
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let mut commands = Vec::new();
        egui::Panel::top("tabs").show(ui, |ui| chrome::top_bar_ui(self, ui, &mut commands));
        egui::Panel::bottom("status").show(ui, |ui| chrome::status_ui(self, ui));
        egui::CentralPanel::default().show(ui, |ui| self.view_ui(ui, &mut commands));
        // Over the view, not above it: a notice never moves the buttons under the pointer.
        chrome::notices_ui(&mut self.shared, &ctx);
        if self.confirm_close {
            let running = self.is_training().then(|| {
                self.train
                    .log
                    .phase_words()
                    .map_or_else(|| "starting".to_owned(), |w| w.to_lowercase())
            });
            let log = &self.train.log;
            // A checkpoint is kept if an epoch of the run finished or it resumed one.
            let resumable = !log.trained_here().is_empty() || log.first_epoch > log.stage_start;
            chrome::confirm_close_ui(
                &ctx,
                (running, resumable, self.model.unsaved()),
                &mut commands,
            );
        }
        if let Some(what) = &self.confirm_replace {
            chrome::confirm_replace_ui(&ctx, what, &mut commands);
        }
        if self.quit_after_stop {
            chrome::stopping_ui(&ctx);
        }
        if self.show_about {
            chrome::about_ui(&self.shared, &ctx, &mut commands);
        }
        let browsing = self.shared.dialog.is_some();
        if let Some(prompt) = &mut self.shared.prompt {
            prompt.ui(&ctx, browsing, &mut commands);
        }
        self.shared.heatmaps.window_ui(&ctx, self.model.classes());
        self.drop_overlay(&ctx);
        for command in commands {
            self.run_command(&ctx, command);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.shared.state);
        self.saved_state = self.shared.state.clone();
    }
}
