//! Background work for the window: a job runs on its own thread, sends what it has over a
//! channel and wakes the UI with `request_repaint`; the UI polls it once a frame and never waits.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};

use eframe::egui;

/// A thread that sends `T`s to the UI.
pub struct Job<T> {
    rx: Receiver<T>,
    finished: bool,
    /// What the thread's panic said, if it panicked.
    panic: Arc<Mutex<Option<String>>>,
}

impl<T: Send + 'static> Job<T> {
    /// Runs `work` on a named thread; it sends through the `Sender` it gets, each send waking the
    /// UI. A panic ends the thread and is kept, so the job ends with an error instead of leaving
    /// its view waiting.
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
        let panic = Arc::new(Mutex::new(None));
        let slot = panic.clone();
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&reporter)));
                if let Err(payload) = outcome {
                    let message = payload
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| payload.downcast_ref::<&str>().copied())
                        .unwrap_or("no message")
                        .to_owned();
                    if let Ok(mut slot) = slot.lock() {
                        *slot = Some(message);
                    }
                }
                // The sender drops here, after the panic is kept: the UI sees the end next.
                reporter.ctx.request_repaint();
            });
        Self {
            rx,
            finished: spawned.is_err(),
            panic,
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

    /// What stopped the thread, when a panic did: in words for the view that waits on it.
    pub fn failure(&self) -> Option<String> {
        let message = self.panic.lock().ok().and_then(|m| m.clone())?;
        Some(format!(
            "an internal error stopped this job ({message}); please report it"
        ))
    }

    /// Why a job that should have sent a result ended without one, once it has ended.
    pub fn ended_without_result(&self) -> Option<String> {
        self.finished.then(|| {
            self.failure()
                .unwrap_or_else(|| "the background job ended without a result".to_owned())
        })
    }
}

impl<T: Send + 'static, E: From<String> + Send + 'static> Job<Result<T, E>> {
    /// For a job that sends one result: it, once sent; or an error when the thread ended without
    /// one (it panicked). `None` while the job runs.
    pub fn poll_finished(&mut self) -> Option<Result<T, E>> {
        if let Some(result) = self.poll().pop() {
            return Some(result);
        }
        self.ended_without_result().map(|why| Err(E::from(why)))
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn wait<T: Send + 'static>(job: &mut Job<Result<T, String>>) -> Result<T, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(result) = job.poll_finished() {
                return result;
            }
            assert!(Instant::now() < deadline, "the job never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_job_whose_thread_panics_ends_with_an_error_instead_of_waiting_forever() {
        let ctx = egui::Context::default();
        let mut broken: Job<Result<u32, String>> =
            Job::once(&ctx, "test-panic", || panic!("the decoder fell over"));
        let err = wait(&mut broken).unwrap_err();
        assert!(
            err.contains("internal error") && err.contains("the decoder fell over"),
            "{err}"
        );
        let mut fine: Job<Result<u32, String>> = Job::once(&ctx, "test-ok", || Ok(7));
        assert_eq!(wait(&mut fine), Ok(7));
        assert_eq!(fine.failure(), None);
    }
}
