//! Background work for the window: a job runs on its own thread, sends what it has over a
//! channel and wakes the UI with `request_repaint`; the UI polls it once a frame and never waits.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};

use eframe::egui;

/// A thread that sends `T`s to the UI.
pub struct Job<T> {
    rx: Receiver<T>,
    finished: bool,
}

impl<T: Send + 'static> Job<T> {
    /// Runs `work` on a named thread; it sends through the `Sender` it gets, each send waking the UI.
    pub fn spawn(
        ctx: &egui::Context,
        name: &str,
        work: impl FnOnce(&Reporter<T>) + Send + 'static,
    ) -> Self {
        let (tx, rx) = channel();
        let reporter = Reporter {
            tx,
            ctx: ctx.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || work(&reporter));
        Self {
            rx,
            finished: spawned.is_err(),
        }
    }

    /// Runs `work` and sends its one result.
    pub fn once(
        ctx: &egui::Context,
        name: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Self {
        Self::spawn(ctx, name, move |r| r.send(work()))
    }

    /// Everything sent since the last poll.
    pub fn poll(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(v) => out.push(v),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.finished = true;
                    break;
                }
            }
        }
        out
    }

    /// True once the thread has ended and everything it sent was polled.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// The sending end a job's thread uses.
pub struct Reporter<T> {
    tx: Sender<T>,
    ctx: egui::Context,
}

impl<T> Reporter<T> {
    /// Sends a value and wakes the UI (a closed window is not an error).
    pub fn send(&self, value: T) {
        let _ = self.tx.send(value);
        self.ctx.request_repaint();
    }
}

/// Opens a native dialog off the UI thread; `None` when cancelled or when no dialog is available
/// (rfd cannot tell the two apart, so the window always offers a path field and drag and drop).
pub fn pick_folder(ctx: &egui::Context) -> Job<Option<std::path::PathBuf>> {
    Job::once(ctx, "dialog", || rfd::FileDialog::new().pick_folder())
}

/// Picks one file with the given filter, off the UI thread.
pub fn pick_file(
    ctx: &egui::Context,
    filter_name: &'static str,
    extensions: &'static [&'static str],
) -> Job<Option<std::path::PathBuf>> {
    Job::once(ctx, "dialog", move || {
        rfd::FileDialog::new()
            .add_filter(filter_name, extensions)
            .pick_file()
    })
}

/// Picks image files, off the UI thread.
pub fn pick_files(ctx: &egui::Context) -> Job<Option<Vec<std::path::PathBuf>>> {
    Job::once(ctx, "dialog", || {
        rfd::FileDialog::new()
            .add_filter(
                "Images",
                &["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"],
            )
            .pick_files()
    })
}

/// Asks where to save, off the UI thread.
pub fn save_file(
    ctx: &egui::Context,
    default_name: String,
    filter_name: &'static str,
    extensions: &'static [&'static str],
) -> Job<Option<std::path::PathBuf>> {
    Job::once(ctx, "dialog", move || {
        rfd::FileDialog::new()
            .set_file_name(default_name)
            .add_filter(filter_name, extensions)
            .save_file()
    })
}
