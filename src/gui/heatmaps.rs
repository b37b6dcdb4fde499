//! Heatmaps in the window: why the model gave each photo its class, drawn as a translucent layer
//! over the photo wherever photos are shown (Predict's cards, Evaluate's galleries and confusion
//! cells), and a larger view on click. The maths is `infer::heatmap`'s; this room only asks for
//! maps on a worker thread, keeps them as textures and draws them.
//!
//! Maps are computed on demand for the photos on screen, newest request first, on one thread
//! that locks the model for a few photos at a time (so training and predictions go on), and come
//! back over a channel with a repaint. A new model drops them all.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};

use eframe::egui;

use super::Thumbnails;
use crate::data::Preprocessing;
use crate::infer::Classifier;
use crate::infer::heatmap::{Explained, rgba, tint};

/// Photos explained per lock of the model.
const PER_BATCH: usize = 4;
/// Pending requests beyond this are dropped, oldest first (they scrolled out of view).
const MAX_PENDING: usize = 64;
/// The longest side of the photo in the larger view, in pixels.
const LARGE_PX: u32 = 448;

type Model = Arc<Mutex<Classifier>>;

enum Request {
    Maps(PathBuf),
    Large(PathBuf),
}

enum Done {
    Maps(u64, PathBuf, Result<Arc<Explained>, String>),
    Large(PathBuf, Result<egui::ColorImage, String>),
}

struct Queue {
    requests: Mutex<VecDeque<Request>>,
    model: Mutex<Option<(Model, u64)>>,
    ready: Condvar,
    closed: AtomicBool,
}

/// The window's heatmaps: the switch, the class they explain, the maps and their worker.
pub(crate) struct Heatmaps {
    /// Draw heatmaps over photos.
    pub enabled: bool,
    /// The class the maps explain: `None` is each photo's predicted class.
    pub class: Option<usize>,
    queue: Arc<Queue>,
    done: Receiver<Done>,
    model: Option<Model>,
    generation: u64,
    preprocessing: Option<Preprocessing>,
    /// The model's classes, in its order.
    classes: Vec<String>,
    maps: HashMap<PathBuf, Result<Arc<Explained>, String>>,
    textures: HashMap<(PathBuf, usize), egui::TextureHandle>,
    requested: HashSet<PathBuf>,
    /// The photo in the larger view and its predicted class.
    focus: Option<(PathBuf, usize)>,
    large: Option<(PathBuf, Result<egui::TextureHandle, String>)>,
}

impl Heatmaps {
    /// Starts the worker, which wakes `ctx` when a map is ready.
    pub fn new(ctx: &egui::Context) -> Self {
        let queue = Arc::new(Queue {
            requests: Mutex::new(VecDeque::new()),
            model: Mutex::new(None),
            ready: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let (tx, done) = channel();
        let worker_queue = queue.clone();
        let worker_ctx = ctx.clone();
        let _ = std::thread::Builder::new()
            .name("heatmaps".into())
            .spawn(move || worker(&worker_queue, &tx, &worker_ctx));
        Self {
            enabled: false,
            class: None,
            queue,
            done,
            model: None,
            generation: 0,
            preprocessing: None,
            classes: Vec::new(),
            maps: HashMap::new(),
            textures: HashMap::new(),
            requested: HashSet::new(),
            focus: None,
            large: None,
        }
    }

    /// Follows the window's model: a different one (or none) drops every map.
    pub fn set_model(
        &mut self,
        model: Option<&Model>,
        preprocessing: Option<Preprocessing>,
        classes: &[String],
    ) {
        let same = match (&self.model, model) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        self.generation += 1;
        self.model = model.cloned();
        self.preprocessing = preprocessing;
        self.classes = classes.to_vec();
        self.maps.clear();
        self.textures.clear();
        self.requested.clear();
        self.class = None;
        lock(&self.queue.requests).clear();
        *lock(&self.queue.model) = model.map(|m| (m.clone(), self.generation));
    }

    /// Takes finished maps and large photos; call once a frame.
    pub fn poll(&mut self, ctx: &egui::Context) {
        for done in self.done.try_iter() {
            match done {
                Done::Maps(generation, path, result) if generation == self.generation => {
                    self.requested.remove(&path);
                    self.maps.insert(path, result);
                }
                Done::Maps(..) => {}
                // Only the photo in view now: an earlier click's may come after it.
                Done::Large(path, result)
                    if self.focus.as_ref().is_some_and(|(p, _)| *p == path) =>
                {
                    let texture = result.map(|image| {
                        ctx.load_texture(
                            format!("large:{}", path.display()),
                            image,
                            egui::TextureOptions::LINEAR,
                        )
                    });
                    self.large = Some((path, texture));
                }
                Done::Large(..) => {}
            }
        }
    }

    fn request(&mut self, request: Request) {
        let mut q = lock(&self.queue.requests);
        q.push_back(request);
        while q.len() > MAX_PENDING {
            if let Some(Request::Maps(dropped)) = q.pop_front() {
                self.requested.remove(&dropped);
            }
        }
        self.queue.ready.notify_one();
    }

    /// The maps of `path`, asking the worker for them when there are none yet.
    fn maps(&mut self, path: &Path) -> Option<&Result<Arc<Explained>, String>> {
        self.model.as_ref()?;
        if !self.maps.contains_key(path) && self.requested.insert(path.to_owned()) {
            self.request(Request::Maps(path.to_owned()));
        }
        self.maps.get(path)
    }

    /// Whether the model in use has exactly `classes` (so that their indices name its classes).
    pub fn explains(&self, classes: &[String]) -> bool {
        self.model.is_some() && self.classes == classes
    }

    /// The maps of `path` if they are computed (for tests).
    pub fn maps_of(&self, path: &Path) -> Option<Vec<Vec<f32>>> {
        match self.maps.get(path) {
            Some(Ok(explained)) => Some(explained.maps.maps.clone()),
            _ => None,
        }
    }

    /// The texture of `path`'s map for `class`.
    fn texture(
        &mut self,
        ctx: &egui::Context,
        path: &Path,
        class: usize,
    ) -> Option<egui::TextureHandle> {
        let key = (path.to_owned(), class);
        if let Some(t) = self.textures.get(&key) {
            return Some(t.clone());
        }
        let Some(Ok(explained)) = self.maps(path) else {
            return None;
        };
        let maps = &explained.maps;
        let map = maps.maps.get(class)?;
        let image = egui::ColorImage::from_rgba_unmultiplied([maps.width, maps.height], &rgba(map));
        let texture = ctx.load_texture(
            format!("heatmap:{}:{class}", path.display()),
            image,
            egui::TextureOptions::LINEAR,
        );
        self.textures.insert(key, texture.clone());
        Some(texture)
    }

    /// Draws `path`'s map (for the chosen class, or `predicted`) over the photo shown in
    /// `image`, where the model saw it; the rest of the photo is dimmed.
    fn paint(&mut self, ui: &egui::Ui, image: egui::Rect, path: &Path, predicted: usize) {
        if self.model.is_none() {
            return;
        }
        let class = self.class.unwrap_or(predicted);
        let Some(texture) = self.texture(ui.ctx(), path, class) else {
            let pending = self.maps(path).is_none();
            let note = if pending { "…" } else { "no map" };
            ui.painter().text(
                image.right_top() + egui::vec2(-4.0, 2.0),
                egui::Align2::RIGHT_TOP,
                note,
                egui::FontId::proportional(12.0),
                egui::Color32::WHITE,
            );
            return;
        };
        let Some(pre) = self.preprocessing else {
            return;
        };
        // The region depends only on the photo's aspect ratio, which the thumbnail keeps.
        let [l, t, r, b] = pre.resize.region(
            pre.input_size,
            image.width().round().max(1.0) as u32 * 8,
            image.height().round().max(1.0) as u32 * 8,
        );
        let seen = egui::Rect::from_min_max(
            image.lerp_inside(egui::vec2(l, t)),
            image.lerp_inside(egui::vec2(r, b)),
        );
        let shade = egui::Color32::from_black_alpha(128);
        for part in outside(image, seen) {
            ui.painter().rect_filled(part, 0.0, shade);
        }
        let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
        ui.painter()
            .image(texture.id(), seen, uv, egui::Color32::WHITE);
    }

    /// The switch, the class to explain and the legend, for a view's toolbar.
    pub fn controls_ui(&mut self, ui: &mut egui::Ui, classes: &[String]) {
        ui.horizontal(|ui| {
            let enabled = self.model.is_some();
            ui.add_enabled(enabled, egui::Checkbox::new(&mut self.enabled, "Heatmaps"))
                .on_hover_text(
                    "Colour each photo by how much each part of it made the model choose a \
                     class (Grad-CAM on the last convolution block). Click a photo for a larger view.",
                )
                .on_disabled_hover_text("Train or open a model first.");
            if !(self.enabled && enabled) {
                return;
            }
            self.class_choice_ui(ui, classes, "heatmap-class");
            legend_ui(ui);
        });
    }

    fn class_choice_ui(&mut self, ui: &mut egui::Ui, classes: &[String], id: &str) {
        let name = |c: Option<usize>| match c {
            None => "the predicted class".to_owned(),
            Some(i) => classes.get(i).cloned().unwrap_or_default(),
        };
        egui::ComboBox::from_id_salt(id)
            .selected_text(format!("why: {}", name(self.class)))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut self.class, None, name(None));
                for i in 0..classes.len() {
                    ui.selectable_value(&mut self.class, Some(i), name(Some(i)));
                }
            });
    }

    /// The larger view of the photo clicked last, with its heatmap, while it is open.
    pub fn window_ui(&mut self, ctx: &egui::Context, classes: &[String]) {
        let Some((path, predicted)) = self.focus.clone() else {
            return;
        };
        let mut open = true;
        let mut close = ctx.input(|i| i.key_pressed(egui::Key::Escape));
        // The photo fits the window with the lines around it, so Close is never cut off.
        let side = (ctx.content_rect().height() - 260.0).clamp(120.0, LARGE_PX as f32);
        egui::Window::new("Why this class?")
            .open(&mut open)
            .resizable(false)
            .collapsible(false)
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(ctx.content_rect().center())
            .constrain(true)
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    close |= ui.button("Close").on_hover_text("Escape").clicked();
                    ui.label(path.display().to_string());
                });
                self.large_ui(ui, &path, (predicted, side), classes);
            });
        if !open || close {
            self.focus = None;
            self.large = None;
        }
    }

    fn large_ui(
        &mut self,
        ui: &mut egui::Ui,
        path: &Path,
        (predicted, side): (usize, f32),
        classes: &[String],
    ) {
        if let Some(Ok(explained)) = self.maps(path) {
            let said: Vec<String> = classes
                .iter()
                .zip(&explained.probabilities)
                .map(|(c, p)| format!("{c} {}", crate::infer::confidence_text(*p)))
                .collect();
            ui.strong(format!("The model says: {}", said.join(" · ")));
        }
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.enabled, "Heatmap");
            self.class_choice_ui(ui, classes, "heatmap-class-large");
        });
        let photo = match &self.large {
            Some((p, Ok(texture))) if p == path => Some(texture.clone()),
            Some((p, Err(e))) if p == path => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                return;
            }
            _ => None,
        };
        let Some(photo) = photo else {
            ui.spinner();
            return;
        };
        let [w, h] = photo.size();
        let scale = side / (w.max(h) as f32).max(1.0);
        let response = ui.image((photo.id(), egui::vec2(w as f32 * scale, h as f32 * scale)));
        if self.enabled {
            self.paint(ui, response.rect, path, predicted);
            legend_ui(ui);
        }
    }

    /// Opens the larger view of `path`.
    fn focus_on(&mut self, path: &Path, predicted: usize) {
        self.focus = Some((path.to_owned(), predicted));
        self.large = None;
        self.request(Request::Large(path.to_owned()));
    }
}

impl Drop for Heatmaps {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Relaxed);
        self.queue.ready.notify_all();
    }
}

/// A photo's thumbnail (`size` points square) with its heatmap over it when heatmaps are on;
/// a click opens the larger view. `predicted` is the class the model gave it.
pub(crate) fn photo_ui(
    ui: &mut egui::Ui,
    thumbnails: &mut Thumbnails,
    heatmaps: &mut Heatmaps,
    path: &Path,
    size: f32,
    predicted: usize,
) -> egui::Response {
    let response = thumbnails.show(ui, path, size);
    if heatmaps.enabled
        && let Some(image) = thumbnails.image_rect(path, response.rect)
    {
        heatmaps.paint(ui, image, path, predicted);
    }
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    response.widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Button, true, format!("photo {name}"))
    });
    if response.clicked() {
        heatmaps.focus_on(path, predicted);
    }
    response.on_hover_cursor(egui::CursorIcon::PointingHand)
}

/// A colour bar from weak to strong evidence, in the overlay's colours.
fn legend_ui(ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.small("weak");
        let (rect, _) = ui.allocate_exact_size(egui::vec2(120.0, 12.0), egui::Sense::hover());
        let steps = 24;
        for i in 0..steps {
            let t = (i as f32 + 0.5) / steps as f32;
            let ([r, g, b], _) = tint(t);
            let x0 = rect.left() + rect.width() * i as f32 / steps as f32;
            let x1 = rect.left() + rect.width() * (i + 1) as f32 / steps as f32;
            ui.painter().rect_filled(
                egui::Rect::from_min_max(egui::pos2(x0, rect.top()), egui::pos2(x1, rect.bottom())),
                0.0,
                egui::Color32::from_rgb(r, g, b),
            );
        }
        ui.small("strong evidence for the class");
    });
}

/// The parts of `whole` outside `inner` (up to four rectangles).
fn outside(whole: egui::Rect, inner: egui::Rect) -> Vec<egui::Rect> {
    let mut parts = vec![
        egui::Rect::from_min_max(whole.min, egui::pos2(whole.max.x, inner.min.y)),
        egui::Rect::from_min_max(egui::pos2(whole.min.x, inner.max.y), whole.max),
        egui::Rect::from_min_max(
            egui::pos2(whole.min.x, inner.min.y),
            egui::pos2(inner.min.x, inner.max.y),
        ),
        egui::Rect::from_min_max(
            egui::pos2(inner.max.x, inner.min.y),
            egui::pos2(whole.max.x, inner.max.y),
        ),
    ];
    parts.retain(|r| r.width() > 0.5 && r.height() > 0.5);
    parts
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker(queue: &Queue, tx: &Sender<Done>, ctx: &egui::Context) {
    loop {
        let requests = {
            let mut q = lock(&queue.requests);
            loop {
                if queue.closed.load(Ordering::Relaxed) {
                    return;
                }
                if !q.is_empty() {
                    break q.drain(..).rev().collect::<Vec<_>>();
                }
                let (guard, _) = queue
                    .ready
                    .wait_timeout(q, std::time::Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner());
                q = guard;
            }
        };
        let mut maps = Vec::new();
        for request in requests {
            match request {
                Request::Large(path) => {
                    let image = super::thumbnails::scaled_to_fit(&path, LARGE_PX);
                    if tx.send(Done::Large(path, image)).is_err() {
                        return;
                    }
                    ctx.request_repaint();
                }
                Request::Maps(path) => maps.push(path),
            }
        }
        // Newest first; the rest go back on the queue after each batch, so the photos the user
        // is looking at now are served before those scrolled past.
        let batch: Vec<PathBuf> = maps.iter().take(PER_BATCH).cloned().collect();
        {
            let mut q = lock(&queue.requests);
            for path in maps.into_iter().skip(PER_BATCH) {
                q.push_front(Request::Maps(path));
            }
        }
        let Some((model, generation)) = lock(&queue.model).clone() else {
            continue;
        };
        let never = AtomicBool::new(false);
        let (explained, failed) = lock(&model).explain_until(&batch, PER_BATCH, |_, _| {}, &never);
        let results = explained
            .into_iter()
            .map(|(p, maps)| {
                let explained = Explained {
                    probabilities: p.probabilities,
                    pooled: Vec::new(),
                    maps,
                };
                (p.path, Ok(Arc::new(explained)))
            })
            .chain(failed.into_iter().map(|u| (u.path, Err(u.reason))));
        for (path, result) in results {
            if tx.send(Done::Maps(generation, path, result)).is_err() {
                return;
            }
        }
        ctx.request_repaint();
    }
}
