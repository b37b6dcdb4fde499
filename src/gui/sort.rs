//! The Sort view: a folder nobody has labelled, one photo at a time with the head's guess, keys
//! to answer (1–9 a class, Enter the guess, 0 none of these, Space skip, Backspace undo), the
//! head refitted on a worker every few answers, and *Sort the rest* into `OUT/CLASS/` with Undo.
//! The session, the queue, the fit and the journal are `crate::sort`'s; this draws them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eframe::egui;

use super::jobs::Job;
use super::{Commands, Shared};
use crate::sort::journal::{self, Mode, Report};
use crate::sort::pool::{Opened, Opening, Start};
use crate::sort::{Answer, Session};
use crate::train::{PhaseProgress, TrainEvent};

/// What opening a pool sends.
enum OpenMsg {
    Progress(PhaseProgress),
    Done(Result<Option<Box<Opened>>, String>),
}

/// What sorting the rest sends: progress, then the report and the folder.
enum ApplyMsg {
    Progress(usize, usize),
    Done(Result<Report, String>, PathBuf),
}

/// The Sort view's state.
pub struct SortPanel {
    pub pool_text: String,
    classes_text: String,
    /// Start from the model in use (its classes, base and guesses).
    pub from_model: bool,
    out_text: String,
    threshold: f32,
    mode: Mode,
    opening: Option<(Job<OpenMsg>, Arc<AtomicBool>)>,
    progress: Option<PhaseProgress>,
    pub session: Option<Session>,
    /// Files of the pool that are not photos it can read.
    skipped: usize,
    fitting: Option<Job<Session>>,
    since_fit: usize,
    applying: Option<(Job<ApplyMsg>, Arc<AtomicBool>)>,
    applied: (usize, usize),
    /// The folder the last sort went into (its Undo), and the photos it sorted.
    pub last_out: Option<PathBuf>,
    last_placed: Vec<PathBuf>,
    error: Option<String>,
    message: Option<String>,
    /// The photo asked about, decoded larger than a thumbnail (`None`: it could not be).
    large: Option<(PathBuf, Option<egui::TextureHandle>)>,
    large_job: Option<(PathBuf, Job<Result<egui::ColorImage, String>>)>,
    map: MapView,
    map_job: Option<Job<Vec<[f32; 2]>>>,
    undoing: Option<Job<Result<journal::Undone, String>>>,
}

/// The map of the pool.
#[derive(Default)]
struct MapView {
    /// Every photo as a point, once laid out.
    points: Option<Vec<[f32; 2]>>,
    /// The box being dragged (screen coordinates), and the photos of the last box.
    dragging: Option<(egui::Pos2, egui::Pos2)>,
    selected: Vec<usize>,
}

/// The longest side of the photo asked about, in pixels.
const LARGE_PX: u32 = 448;

impl Default for SortPanel {
    fn default() -> Self {
        Self {
            pool_text: String::new(),
            classes_text: String::new(),
            from_model: true,
            out_text: String::new(),
            threshold: crate::sort::DEFAULT_THRESHOLD,
            mode: Mode::Copy,
            opening: None,
            progress: None,
            session: None,
            skipped: 0,
            fitting: None,
            since_fit: 0,
            applying: None,
            applied: (0, 0),
            last_out: None,
            last_placed: Vec::new(),
            error: None,
            message: None,
            large: None,
            large_job: None,
            map: MapView::default(),
            map_job: None,
            undoing: None,
        }
    }
}

impl SortPanel {
    /// True while a worker of this view runs.
    pub fn is_busy(&self) -> bool {
        self.opening.is_some()
            || self.fitting.is_some()
            || self.applying.is_some()
            || self.map_job.is_some()
            || self.undoing.is_some()
    }

    /// A folder dropped on the view: the one to sort.
    pub fn set_pool(&mut self, path: PathBuf) {
        self.out_text = sorted_beside(&path).display().to_string();
        self.pool_text = path.display().to_string();
    }

    /// Opens the pool typed, with `model` (its file and classes) when the user starts from it.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        shared: &Shared,
        weights: Option<PathBuf>,
        model: Option<PathBuf>,
    ) {
        if self.opening.is_some() {
            return;
        }
        let pool = PathBuf::from(self.pool_text.trim());
        let start = match model.filter(|_| self.from_model) {
            Some(m) => Start::Model(m),
            None => Start::Classes(
                self.classes_text
                    .split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect(),
            ),
        };
        let config = shared.run_config();
        let opening = Opening {
            pool: pool.clone(),
            start,
            weights,
            config,
            cache_root: shared.cache_root.clone(),
            seed: shared.state.train.seed,
        };
        if let Err(e) = opening.classes() {
            self.error = Some(e);
            return;
        }
        if self.out_text.trim().is_empty() {
            self.out_text = sorted_beside(&pool).display().to_string();
        }
        self.error = None;
        self.message = None;
        self.progress = None;
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        let job = Job::spawn(ctx, "sort-open", move |r| {
            let result = opening.open(&worker_stop, |event| {
                if let TrainEvent::Progress(p) = event {
                    r.send(OpenMsg::Progress(*p));
                }
            });
            r.send(OpenMsg::Done(result.map(|o| o.map(Box::new))));
        });
        self.opening = Some((job, stop));
    }

    /// Takes in the workers' results.
    pub fn poll(&mut self, ctx: &egui::Context) {
        if let Some((job, _)) = &mut self.opening {
            for msg in job.poll() {
                match msg {
                    OpenMsg::Progress(p) => self.progress = Some(p),
                    OpenMsg::Done(Ok(Some(opened))) => {
                        self.skipped = opened.skipped.len();
                        // The map is laid out on a worker from a copy of the session.
                        let copy = opened.session.clone();
                        self.map_job = Some(Job::once(ctx, "sort-map", move || copy.map()));
                        self.map = MapView::default();
                        self.session = Some(opened.session);
                        self.since_fit = 0;
                    }
                    OpenMsg::Done(Ok(None)) => self.message = Some("Cancelled.".into()),
                    OpenMsg::Done(Err(e)) => self.error = Some(e),
                }
            }
            if job.is_finished() {
                if let Some(why) = job.failure() {
                    self.error = Some(why);
                }
                self.opening = None;
            }
        }
        if let Some(job) = &mut self.undoing
            && let Some(result) = job.poll_finished()
        {
            match result {
                Ok(u) => {
                    self.message = Some(format!("Undone: {}", u.summary()));
                    self.last_out = None;
                    if let Some(session) = &mut self.session {
                        session.set_placed(&self.last_placed, false);
                    }
                }
                Err(e) => self.error = Some(e),
            }
            self.undoing = None;
        }
        if let Some(job) = &mut self.map_job {
            if let Some(points) = job.poll().pop() {
                self.map.points = Some(points);
            }
            if job.is_finished() {
                self.map_job = None;
            }
        }
        if let Some(job) = &mut self.fitting {
            if let Some(fitted) = job.poll().pop()
                && let Some(session) = &mut self.session
            {
                session.adopt(fitted);
            }
            if job.is_finished() {
                self.fitting = None;
            }
        }
        let (msgs, ended) = match &mut self.applying {
            Some((job, _)) => {
                let msgs = job.poll();
                let ended = job.is_finished().then(|| job.failure());
                (msgs, ended)
            }
            None => (Vec::new(), None),
        };
        for msg in msgs {
            match msg {
                ApplyMsg::Progress(done, total) => self.applied = (done, total),
                ApplyMsg::Done(result, out) => self.sorted(result, out),
            }
        }
        if let Some(failure) = ended {
            if let Some(why) = failure {
                self.error = Some(why);
            }
            self.applying = None;
        }
    }

    fn sorted(&mut self, result: Result<Report, String>, out: PathBuf) {
        match result {
            Ok(report) => {
                self.message = Some(crate::words::sentence(&report.summary(&out)));
                if let Some(session) = &mut self.session {
                    session.set_placed(&report.placed, true);
                }
                self.last_placed = report.placed;
                self.last_out = Some(out);
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Answers the photo shown, and refits the head on a worker every few answers.
    fn answer(&mut self, ctx: &egui::Context, photo: usize, answer: Answer) {
        let Some(session) = &mut self.session else {
            return;
        };
        session.answer(photo, answer);
        self.since_fit += 1;
        self.refit(ctx);
    }

    fn refit(&mut self, ctx: &egui::Context) {
        let Some(session) = &self.session else {
            return;
        };
        if session.needs_fit(self.since_fit) && self.fitting.is_none() {
            let mut copy = session.clone();
            self.fitting = Some(Job::once(ctx, "sort-fit", move || {
                copy.retrain();
                copy
            }));
            self.since_fit = 0;
        }
    }

    /// Decodes photo `i` larger on a worker, one at a time, and takes in what was decoded.
    fn load_large(&mut self, ctx: &egui::Context, i: usize) {
        let Some(session) = &self.session else {
            return;
        };
        let path = session.photos[i].path.clone();
        if let Some((loading, job)) = &mut self.large_job {
            if let Some(result) = job.poll().pop() {
                match result {
                    Ok(image) => {
                        let texture = ctx.load_texture(
                            format!("sort:{}", loading.display()),
                            image,
                            egui::TextureOptions::LINEAR,
                        );
                        self.large = Some((loading.clone(), Some(texture)));
                    }
                    // The thumbnail stays, with its own error mark.
                    Err(_) => self.large = Some((loading.clone(), None)),
                }
                self.large_job = None;
            } else if job.is_finished() {
                self.large_job = None;
            }
            return;
        }
        if self.large.as_ref().is_none_or(|(p, _)| *p != path) {
            let decode = path.clone();
            let job = Job::once(ctx, "sort-photo", move || {
                super::thumbnails::scaled_to_fit(&decode, LARGE_PX)
            });
            self.large_job = Some((path, job));
        }
    }

    /// The keys of the queue, when no text field has the keyboard.
    fn keys(&mut self, ctx: &egui::Context, photo: usize) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let Some(session) = &mut self.session else {
            return;
        };
        let classes = session.classes.len();
        let guess = session.guess(photo);
        let pressed = ctx.input(|i| {
            let digit = DIGITS.iter().position(|k| i.key_pressed(*k));
            (
                digit,
                i.key_pressed(egui::Key::Enter),
                i.key_pressed(egui::Key::Space),
                i.key_pressed(egui::Key::Backspace),
            )
        });
        match pressed {
            (Some(0), ..) => self.answer(ctx, photo, Answer::NoneOfThese),
            (Some(d), ..) if d <= classes => self.answer(ctx, photo, Answer::Class(d - 1)),
            (_, true, ..) => {
                if let Some((c, _)) = guess {
                    self.answer(ctx, photo, Answer::Class(c));
                }
            }
            (_, _, true, _) => self.answer(ctx, photo, Answer::Skipped),
            (_, _, _, true) => {
                session.undo();
            }
            _ => {}
        }
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        model: Option<&[String]>,
        commands: &mut Commands,
    ) {
        ui.heading("Sort photos nobody has labelled");
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, crate::words::sentence(e));
        }
        if let Some(m) = &self.message {
            ui.label(m.as_str());
        }
        if self.undoing.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Undoing the sort…");
            });
        } else if let Some(out) = self.last_out.clone()
            && self.applying.is_none()
            && ui
                .button(format!("Undo the last sort into {}", out.display()))
                .clicked()
        {
            // On a worker: it reads every copy to check it before removing it.
            self.undoing = Some(Job::once(ui.ctx(), "sort-undo", move || {
                journal::undo(&out)
            }));
        }
        // Both ways: in a small window the map's column is reached by scrolling sideways.
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                if self.session.is_some() {
                    self.queue_ui(ui, shared);
                } else {
                    self.start_ui(ui, model, commands);
                }
            });
    }

    fn start_ui(&mut self, ui: &mut egui::Ui, model: Option<&[String]>, commands: &mut Commands) {
        ui.label(
            "vggtune asks about a few typical photos first, then about those it is least sure \
             of. It learns from each answer, and sorts the ones it is sure of into a folder per \
             class. Nothing is moved before you say so.",
        );
        ui.horizontal(|ui| {
            ui.label("Photos to sort:");
            ui.add(
                egui::TextEdit::singleline(&mut self.pool_text)
                    .hint_text("a folder (sub-folders too), typed or dropped here")
                    .desired_width(480.0),
            );
        });
        ui.horizontal(|ui| {
            ui.label("Classes:");
            // (Without a model, the choice is kept for when one is open.)
            if let Some(classes) = model {
                ui.radio_value(
                    &mut self.from_model,
                    true,
                    format!("the model's: {}", classes.join(", ")),
                );
                ui.radio_value(&mut self.from_model, false, "these:");
            }
            ui.add_enabled(
                !self.from_model || model.is_none(),
                egui::TextEdit::singleline(&mut self.classes_text)
                    .hint_text("e.g. cat, dog")
                    .desired_width(260.0),
            );
        });
        if let Some((_, stop)) = &self.opening {
            ui.horizontal(|ui| {
                let (text, fraction) = match &self.progress {
                    Some(p) => (
                        format!(
                            "{}: {} of {} — {:.1}/s — {} left",
                            match p.phase {
                                crate::train::Phase::Features => {
                                    "Running the photos and their mirror images through VGG16"
                                }
                                _ => "Guessing each photo",
                            },
                            p.done,
                            p.total,
                            p.images_per_sec,
                            if p.eta_secs.is_finite() {
                                crate::train::log::duration_text(p.eta_secs)
                            } else {
                                "estimating".into()
                            }
                        ),
                        p.done as f32 / p.total.max(1) as f32,
                    ),
                    None => ("Listing the photos…".into(), 0.0),
                };
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .text(text)
                        .desired_width(520.0),
                );
                if ui.button("Cancel").clicked() {
                    stop.store(true, Ordering::Relaxed);
                }
            });
        } else if ui.button("Start sorting").clicked() {
            commands.push(super::UiCommand::StartSort);
        }
    }

    fn queue_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let ctx = ui.ctx().clone();
        let Some(session) = &self.session else {
            return;
        };
        let next = session.queue().first().copied();
        ui.horizontal(|ui| {
            ui.label(session.status());
            if self.fitting.is_some() {
                ui.spinner();
                ui.weak("learning");
            }
        });
        if self.skipped > 0 {
            ui.weak(format!(
                "{} other files in the folder are not photos it can read.",
                self.skipped
            ));
        }
        let (mut step, mut grouped) = (None, None);
        let map = &mut self.map;
        let large = self
            .large
            .as_ref()
            .filter(|(p, _)| next.is_some_and(|i| session.photos[i].path == *p))
            .and_then(|(_, t)| t.as_ref());
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(440.0);
                step = match next {
                    Some(i) => asked_ui(ui, session, shared, large, i),
                    None => {
                        ui.label("Every photo has an answer.");
                        None
                    }
                };
            });
            ui.vertical(|ui| {
                ui.set_width(270.0);
                if let Some(changed) = recent_ui(ui, session, shared) {
                    step = Some(Step::Answer(changed.0, changed.1));
                }
            });
            ui.vertical(|ui| grouped = map.ui(ui, session, shared, next));
        });
        let (action, undo) = match step {
            Some(Step::Answer(i, a)) => (Some((i, a)), false),
            Some(Step::Undo) => (None, true),
            None => (None, false),
        };
        if let Some((i, answer)) = action {
            self.answer(&ctx, i, answer);
        }
        if let Some((group, answer)) = grouped {
            if let Some(session) = &mut self.session {
                session.answer_all(&group, answer);
            }
            self.since_fit += group.len();
            self.map.selected.clear();
            self.refit(&ctx);
        }
        if undo && let Some(session) = &mut self.session {
            session.undo();
        }
        if let Some(i) = next
            && action.is_none()
            && !undo
        {
            self.keys(&ctx, i);
        }
        if let Some(i) = next {
            self.load_large(&ctx, i);
        }
        ui.separator();
        self.finish_ui(ui);
    }

    fn finish_ui(&mut self, ui: &mut egui::Ui) {
        let Some(session) = &self.session else {
            return;
        };
        ui.horizontal(|ui| {
            ui.label("Sort every photo it is at least");
            ui.add(
                egui::Slider::new(&mut self.threshold, crate::limits::SORT_THRESHOLD)
                    .custom_formatter(|v, _| format!("{:.1}%", v * 100.0))
                    .custom_parser(|s| {
                        s.trim_end_matches('%')
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .map(|v| v / 100.0)
                    }),
            );
            ui.label("sure of");
        });
        let counts = session.sorted_counts(self.threshold);
        let total: usize = counts.iter().sum();
        let parts: Vec<String> = session
            .classes
            .iter()
            .zip(&counts)
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        ui.label(format!(
            "{} would be sorted ({}), the answered ones included; {} stay.",
            crate::words::photos(total),
            parts.join(", "),
            session.photos.len() - session.placed_count() - total
        ));
        ui.horizontal(|ui| {
            ui.label("Into:");
            ui.add(egui::TextEdit::singleline(&mut self.out_text).desired_width(420.0));
            ui.radio_value(&mut self.mode, Mode::Copy, "copy");
            ui.radio_value(&mut self.mode, Mode::Move, "move");
        });
        if let Some((_, stop)) = &self.applying {
            ui.horizontal(|ui| {
                let (done, of) = self.applied;
                ui.add(
                    egui::ProgressBar::new(done as f32 / of.max(1) as f32)
                        .text(format!("Sorting: {done} of {of}"))
                        .desired_width(420.0),
                );
                if ui.button("Cancel").clicked() {
                    stop.store(true, Ordering::Relaxed);
                }
            });
        } else {
            let (mut sort_clicked, mut start_over) = (false, false);
            ui.horizontal(|ui| {
                sort_clicked = ui
                    .add_enabled(
                        total > 0 && !self.out_text.trim().is_empty(),
                        egui::Button::new("Sort the rest"),
                    )
                    .clicked();
                start_over = ui.button("Start over").clicked();
            });
            if sort_clicked {
                self.sort_the_rest(ui.ctx());
            }
            if start_over {
                // A fit or map of this session that is still running is dropped.
                self.session = None;
                self.fitting = None;
                self.map_job = None;
                self.map = MapView::default();
                self.message = None;
            }
        }
    }

    /// Sorts what the view says it would (every answered photo, and every other the head as
    /// shown is sure enough of), copied or moved on a worker, journalled.
    fn sort_the_rest(&mut self, ctx: &egui::Context) {
        let Some(session) = &self.session else {
            return;
        };
        let out = PathBuf::from(self.out_text.trim());
        let pool = PathBuf::from(self.pool_text.trim());
        if let Err(e) = crate::sort::pool::check_out(&pool, &out) {
            self.error = Some(e);
            return;
        }
        let plan = crate::sort::pool::plan(session, self.threshold);
        let mode = self.mode;
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        let job = Job::spawn(ctx, "sort-apply", move |r| {
            let result = journal::apply(
                &out,
                &plan,
                mode,
                |done, of| r.send(ApplyMsg::Progress(done, of)),
                &worker_stop,
            );
            r.send(ApplyMsg::Done(result, out));
        });
        self.error = None;
        self.applying = Some((job, stop));
    }
}

/// What the user did to the queue with a button or a list.
enum Step {
    Answer(usize, Answer),
    Undo,
}

/// The photo asked about (`i`): large, its name and guess, and a button per answer.
fn asked_ui(
    ui: &mut egui::Ui,
    session: &Session,
    shared: &mut Shared,
    large: Option<&egui::TextureHandle>,
    i: usize,
) -> Option<Step> {
    let photo = &session.photos[i];
    match large {
        Some(texture) => {
            let [w, h] = texture.size();
            let scale = 420.0 / (w.max(h) as f32).max(1.0);
            let size = egui::vec2(w as f32 * scale, h as f32 * scale);
            ui.add(egui::Image::new((texture.id(), size)))
        }
        // The thumbnail until the larger photo is decoded.
        None => shared.thumbnails.show(ui, &photo.path, 420.0),
    }
    .on_hover_text(photo.path.display().to_string());
    ui.label(egui::RichText::new(&photo.rel).monospace());
    match session.guess(i) {
        Some((c, p)) => ui.label(format!(
            "Looks like {} ({} sure)",
            session.classes[c],
            crate::infer::confidence_text(p)
        )),
        None => ui.label(format!("No guess yet: {}.", crate::sort::NO_GUESS_YET)),
    };
    let mut step = None;
    ui.horizontal_wrapped(|ui| {
        for (c, name) in session.classes.iter().enumerate() {
            let key = if c < 9 {
                format!("{} ", c + 1)
            } else {
                String::new()
            };
            if ui.button(format!("{key}{name}")).clicked() {
                step = Some(Step::Answer(i, Answer::Class(c)));
            }
        }
        if ui.button("0 None of these").clicked() {
            step = Some(Step::Answer(i, Answer::NoneOfThese));
        }
        if ui.button("Skip (Space)").clicked() {
            step = Some(Step::Answer(i, Answer::Skipped));
        }
        if ui.button("Undo (Backspace)").clicked() {
            step = Some(Step::Undo);
        }
    });
    ui.weak("Enter takes the guess.");
    step
}

/// The last answers, each with a list to change it; the change asked for.
fn recent_ui(ui: &mut egui::Ui, session: &Session, shared: &mut Shared) -> Option<(usize, Answer)> {
    ui.strong("Last answers");
    let mut changed = None;
    for (i, answer) in session.recent(6) {
        ui.horizontal(|ui| {
            shared.thumbnails.show(ui, &session.photos[i].path, 48.0);
            ui.label(&session.photos[i].rel);
            let mut chosen = answer;
            egui::ComboBox::from_id_salt(("answer", i))
                .selected_text(answer_text(&session.classes, answer))
                .show_ui(ui, |ui| {
                    for c in 0..session.classes.len() {
                        ui.selectable_value(&mut chosen, Answer::Class(c), &session.classes[c]);
                    }
                    ui.selectable_value(
                        &mut chosen,
                        Answer::NoneOfThese,
                        crate::typical::NONE_OF_THESE,
                    );
                    ui.selectable_value(&mut chosen, Answer::Skipped, "skipped");
                });
            if chosen != answer {
                changed = Some((i, chosen));
            }
        });
    }
    changed
}

/// The digit keys, 0 to 9.
const DIGITS: [egui::Key; 10] = [
    egui::Key::Num0,
    egui::Key::Num1,
    egui::Key::Num2,
    egui::Key::Num3,
    egui::Key::Num4,
    egui::Key::Num5,
    egui::Key::Num6,
    egui::Key::Num7,
    egui::Key::Num8,
    egui::Key::Num9,
];

impl MapView {
    /// The map: every photo a point coloured by its answer (bright) or guess (faint), the one
    /// asked about ringed, a thumbnail on hover; a box dragged over points offers to answer
    /// them all at once. Returns the photos and answer given that way.
    fn ui(
        &mut self,
        ui: &mut egui::Ui,
        session: &Session,
        shared: &mut Shared,
        asked: Option<usize>,
    ) -> Option<(Vec<usize>, Answer)> {
        let mut given = None;
        egui::CollapsingHeader::new("Map of all the photos")
            .default_open(true)
            .show(ui, |ui| {
                // Taken out for the frame (no copy), put back at its end.
                let Some(points) = self.points.take() else {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Laying out the map…");
                    });
                    return;
                };
                ui.weak(
                    "Photos alike lie near each other. Bright: answered; faint: the guess. \
                     Drag a box over a group to give the photos in it not yet answered a class.",
                );
                let (rect, response) =
                    ui.allocate_exact_size(egui::vec2(MAP_SIDE, MAP_SIDE), egui::Sense::drag());
                let at = |p: [f32; 2]| {
                    egui::pos2(
                        rect.left() + 6.0 + p[0] * (rect.width() - 12.0),
                        rect.top() + 6.0 + p[1] * (rect.height() - 12.0),
                    )
                };
                let screen: Vec<egui::Pos2> = points.iter().map(|&p| at(p)).collect();
                let painter = ui.painter_at(rect);
                painter.rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
                self.paint(ui, &painter, session, &screen, asked);
                self.track_box(ui, &painter, &response, session, &screen);
                if let Some(pointer) = response.hover_pos()
                    && self.dragging.is_none()
                {
                    hover_tip(&response, session, shared, &screen, pointer);
                }
                given = self.box_ui(ui, session);
                self.points = Some(points);
            });
        given
    }

    /// The points, the one asked about ringed, the box's photos marked.
    fn paint(
        &self,
        ui: &egui::Ui,
        painter: &egui::Painter,
        session: &Session,
        screen: &[egui::Pos2],
        asked: Option<usize>,
    ) {
        for (i, &p) in screen.iter().enumerate() {
            let colour = match session.answer_of(i) {
                Some(Answer::Class(c)) => super::widgets::class_colour(c),
                Some(Answer::NoneOfThese) => egui::Color32::GRAY,
                _ if session.is_placed(i) => egui::Color32::DARK_GRAY,
                _ => match session.guess(i) {
                    Some((c, conf)) => {
                        super::widgets::class_colour(c).gamma_multiply(0.15 + 0.35 * conf)
                    }
                    None => egui::Color32::from_gray(90),
                },
            };
            painter.circle_filled(p, 2.5, colour);
        }
        if let Some(i) = asked {
            let ring = egui::Stroke::new(2.0, ui.visuals().strong_text_color());
            painter.circle_stroke(screen[i], 6.0, ring);
        }
        let mark = egui::Stroke::new(1.0, ui.visuals().selection.stroke.color);
        for &i in &self.selected {
            painter.circle_stroke(screen[i], 4.0, mark);
        }
    }

    /// A box being dragged: drawn, and once let go, the photos in it not yet answered (a box
    /// does not overrule an answer given one by one) or sorted.
    fn track_box(
        &mut self,
        ui: &egui::Ui,
        painter: &egui::Painter,
        response: &egui::Response,
        session: &Session,
        screen: &[egui::Pos2],
    ) {
        if response.drag_started()
            && let Some(at) = response.interact_pointer_pos()
        {
            self.dragging = Some((at, at));
        }
        if let (Some((_, end)), Some(at)) =
            (self.dragging.as_mut(), response.interact_pointer_pos())
        {
            *end = at;
        }
        let Some((a, b)) = self.dragging else {
            return;
        };
        let drawn = egui::Rect::from_two_pos(a, b);
        painter.rect_stroke(
            drawn,
            0.0,
            ui.visuals().selection.stroke,
            egui::StrokeKind::Inside,
        );
        if response.drag_stopped() {
            self.selected = (0..screen.len())
                .filter(|&i| drawn.contains(screen[i]))
                .filter(|&i| {
                    !session.is_placed(i)
                        && matches!(session.answer_of(i), None | Some(Answer::Skipped))
                })
                .collect();
            self.dragging = None;
        }
    }

    /// The row that answers the box's photos at once.
    fn box_ui(&mut self, ui: &mut egui::Ui, session: &Session) -> Option<(Vec<usize>, Answer)> {
        if self.selected.is_empty() {
            return None;
        }
        let mut given = None;
        ui.horizontal_wrapped(|ui| {
            ui.label(format!(
                "{} in the box:",
                crate::words::photos(self.selected.len())
            ));
            for (c, name) in session.classes.iter().enumerate() {
                if ui.button(format!("all {name}")).clicked() {
                    given = Some((self.selected.clone(), Answer::Class(c)));
                }
            }
            if ui
                .button(format!("all {}", crate::typical::NONE_OF_THESE))
                .clicked()
            {
                given = Some((self.selected.clone(), Answer::NoneOfThese));
            }
            if ui.button("Clear the box").clicked() {
                self.selected.clear();
            }
        });
        given
    }
}

/// The side of the map, in points.
const MAP_SIDE: f32 = 360.0;

/// The photo under the pointer on the map, if one is: its thumbnail, name and answer or guess.
fn hover_tip(
    response: &egui::Response,
    session: &Session,
    shared: &mut Shared,
    screen: &[egui::Pos2],
    pointer: egui::Pos2,
) {
    let nearest = (0..screen.len())
        .map(|i| (i, screen[i].distance(pointer)))
        .filter(|&(_, d)| d < 8.0)
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let Some((i, _)) = nearest else {
        return;
    };
    let photo = &session.photos[i];
    let said = match session.answer_of(i) {
        Some(a) => answer_text(&session.classes, a),
        None => session.guess(i).map_or("no guess yet".into(), |(c, p)| {
            format!(
                "looks like {} ({})",
                session.classes[c],
                crate::infer::confidence_text(p)
            )
        }),
    };
    response.clone().on_hover_ui_at_pointer(|ui| {
        shared.thumbnails.show(ui, &photo.path, 160.0);
        ui.label(&photo.rel);
        ui.label(said);
    });
}

fn answer_text(classes: &[String], answer: Answer) -> String {
    match answer {
        Answer::Class(c) => classes.get(c).cloned().unwrap_or_default(),
        Answer::NoneOfThese => crate::typical::NONE_OF_THESE.to_owned(),
        Answer::Skipped => "skipped".into(),
    }
}

/// The folder sorted photos go to by default: `POOL-sorted` beside the pool.
fn sorted_beside(pool: &std::path::Path) -> PathBuf {
    let name = pool
        .file_name()
        .map_or_else(|| "photos".into(), |n| n.to_string_lossy().into_owned());
    pool.with_file_name(format!("{name}-sorted"))
}
