//! Thumbnails decoded on worker threads and kept as textures, so grids of 25,000 photos scroll
//! smoothly: the UI asks for what is on screen; the newest requests are served first and stale
//! ones dropped; finished thumbnails come back over a channel with a repaint.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};

use eframe::egui;

use crate::data::{DecodeLimits, decode_rgb};

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_PX: u32 = 112;
/// Pending requests beyond this are dropped, oldest first (they scrolled out of view).
const MAX_PENDING: usize = 256;
/// Textures kept; the least recently used go beyond this.
const MAX_TEXTURES: usize = 1500;

type Done = (PathBuf, Result<egui::ColorImage, String>);

struct Queue {
    requests: Mutex<VecDeque<PathBuf>>,
    ready: Condvar,
    closed: std::sync::atomic::AtomicBool,
}

/// The thumbnail cache and its decoding workers.
pub struct Thumbnails {
    queue: Arc<Queue>,
    done: Receiver<Done>,
    textures: HashMap<PathBuf, (egui::TextureHandle, u64)>,
    failed: HashMap<PathBuf, String>,
    requested: HashMap<PathBuf, u64>,
    frame: u64,
}

impl Thumbnails {
    /// Starts `workers` decoding threads that wake `ctx` when a thumbnail is ready.
    pub fn new(ctx: &egui::Context, workers: usize) -> Self {
        let queue = Arc::new(Queue {
            requests: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let (tx, done) = channel();
        for i in 0..workers.max(1) {
            let queue = queue.clone();
            let tx: Sender<Done> = tx.clone();
            let ctx = ctx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("thumbnails-{i}"))
                .spawn(move || worker(&queue, &tx, &ctx));
        }
        Self {
            queue,
            done,
            textures: HashMap::new(),
            failed: HashMap::new(),
            requested: HashMap::new(),
            frame: 0,
        }
    }

    /// Takes finished thumbnails into textures; call once a frame.
    pub fn poll(&mut self, ctx: &egui::Context) {
        self.frame += 1;
        for (path, result) in self.done.try_iter() {
            self.requested.remove(&path);
            match result {
                Ok(image) => {
                    let name = format!("thumb:{}", path.display());
                    let texture = ctx.load_texture(name, image, egui::TextureOptions::LINEAR);
                    self.textures.insert(path, (texture, self.frame));
                }
                Err(e) => {
                    self.failed.insert(path, e);
                }
            }
        }
        if self.textures.len() > MAX_TEXTURES {
            let mut by_age: Vec<(PathBuf, u64)> = self
                .textures
                .iter()
                .map(|(p, (_, f))| (p.clone(), *f))
                .collect();
            by_age.sort_by_key(|(_, f)| *f);
            for (p, _) in by_age.into_iter().take(self.textures.len() - MAX_TEXTURES) {
                self.textures.remove(&p);
            }
        }
    }

    /// The thumbnail of `path`, asking a worker for it when there is none yet.
    pub fn get(&mut self, path: &Path) -> Option<egui::TextureHandle> {
        if let Some((texture, used)) = self.textures.get_mut(path) {
            *used = self.frame;
            return Some(texture.clone());
        }
        if self.failed.contains_key(path) {
            return None;
        }
        // Re-ask for requests that fell off the queue a while ago.
        let stale = self
            .requested
            .get(path)
            .is_none_or(|&at| self.frame.saturating_sub(at) > 120);
        if stale {
            self.requested.insert(path.to_owned(), self.frame);
            let mut q = self
                .queue
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            q.push_back(path.to_owned());
            while q.len() > MAX_PENDING {
                q.pop_front();
            }
            self.queue.ready.notify_one();
        }
        None
    }

    /// Where the thumbnail of `path` lies when drawn by [`Self::show`] in `square`.
    pub fn image_rect(&self, path: &Path, square: egui::Rect) -> Option<egui::Rect> {
        let (texture, _) = self.textures.get(path)?;
        let [w, h] = texture.size();
        let scale = square.width().min(square.height()) / (w.max(h) as f32).max(1.0);
        Some(egui::Rect::from_center_size(
            square.center(),
            egui::vec2(w as f32 * scale, h as f32 * scale),
        ))
    }

    /// Why a thumbnail could not be made, if it could not.
    pub fn error(&self, path: &Path) -> Option<&str> {
        self.failed.get(path).map(String::as_str)
    }

    /// Draws the thumbnail of `path` in a square of `size` points (a spinner while it loads).
    pub fn show(&mut self, ui: &mut egui::Ui, path: &Path, size: f32) -> egui::Response {
        match self.get(path) {
            Some(texture) => {
                let [w, h] = texture.size();
                let scale = size / (w.max(h) as f32).max(1.0);
                let image = egui::Image::new((
                    texture.id(),
                    egui::vec2(w as f32 * scale, h as f32 * scale),
                ));
                ui.add_sized([size, size], image.sense(egui::Sense::click()))
            }
            None => {
                let (rect, response) =
                    ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::click());
                ui.painter()
                    .rect_filled(rect, 4.0, ui.visuals().faint_bg_color);
                if let Some(err) = self.error(path) {
                    ui.painter().text(
                        rect.center(),
                        egui::Align2::CENTER_CENTER,
                        "⚠",
                        egui::FontId::proportional(20.0),
                        ui.visuals().error_fg_color,
                    );
                    return response.on_hover_text(err.to_owned());
                }
                response
            }
        }
    }
}

impl Drop for Thumbnails {
    fn drop(&mut self) {
        self.queue
            .closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.queue.ready.notify_all();
    }
}

fn worker(queue: &Queue, tx: &Sender<Done>, ctx: &egui::Context) {
    loop {
        let path = {
            let mut q = queue.requests.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if queue.closed.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                if let Some(p) = q.pop_back() {
                    break p;
                }
                let (guard, _) = queue
                    .ready
                    .wait_timeout(q, std::time::Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner());
                q = guard;
            }
        };
        let result = thumbnail(&path);
        if tx.send((path, result)).is_err() {
            return;
        }
        ctx.request_repaint();
    }
}

/// Decodes a photo into a thumbnail image.
pub fn thumbnail(path: &Path) -> Result<egui::ColorImage, String> {
    scaled_to_fit(path, THUMBNAIL_PX)
}

/// Decodes a photo, scaled down to fit `side`×`side` pixels.
pub fn scaled_to_fit(path: &Path, side: u32) -> Result<egui::ColorImage, String> {
    let photo = decode_rgb(path, &DecodeLimits::default()).map_err(|e| e.to_string())?;
    let small = image::DynamicImage::ImageRgb8(photo)
        .thumbnail(side, side)
        .to_rgb8();
    let (w, h) = small.dimensions();
    Ok(egui::ColorImage::from_rgb(
        [w as usize, h as usize],
        small.as_raw(),
    ))
}

/// A scrolling grid of `count` cells `cell_width` wide and `row_height` high, drawing only the
/// rows in view (`cell(ui, index)` for each visible cell): the Data view's thumbnails and the
/// Predict view's cards.
pub(crate) fn grid_ui(
    ui: &mut egui::Ui,
    id: &str,
    count: usize,
    (cell_width, row_height): (f32, f32),
    mut cell: impl FnMut(&mut egui::Ui, usize),
) {
    let per_row = ((ui.available_width() / cell_width).floor() as usize).max(1);
    egui::ScrollArea::vertical()
        .id_salt(id)
        .auto_shrink([false, false])
        .show_rows(ui, row_height, count.div_ceil(per_row), |ui, rows| {
            for row in rows {
                ui.horizontal(|ui| {
                    for i in (row * per_row..(row + 1) * per_row).take_while(|&i| i < count) {
                        cell(ui, i);
                    }
                });
            }
        });
}
