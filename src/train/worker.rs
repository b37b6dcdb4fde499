//! The worker thread a run lives on: starting it, stopping it within one batch, handing its
//! events to whoever listens, and turning a panic into a `Failed` event instead of a lost run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};

use super::events::TrainEvent;
use super::job::{Emitter, Outcome, TrainJob};
use super::run::run;

/// A run in progress on its worker thread.
pub struct TrainingRun {
    events: Receiver<TrainEvent>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl TrainingRun {
    /// Starts `job` on a worker thread; `wake` is called after every event (the window passes
    /// `request_repaint`).
    pub fn start(job: TrainJob, wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        Self::start_with_stop(job, Arc::new(AtomicBool::new(false)), wake)
    }

    /// [`TrainingRun::start`] with the stop flag supplied: setting it is [`TrainingRun::stop`],
    /// also from inside `wake` (which runs on the worker, after each event is sent).
    pub fn start_with_stop(
        job: TrainJob,
        stop: Arc<AtomicBool>,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, events) = channel();
        let worker_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name("training".into())
            .spawn(move || {
                let emit = Emitter {
                    tx,
                    wake: Box::new(wake),
                };
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(job, &emit, &worker_stop)
                }));
                let event = match outcome {
                    Ok(Ok(Outcome::Finished(summary))) => TrainEvent::Finished(summary),
                    Ok(Ok(Outcome::Stopped {
                        epochs_done,
                        checkpoint,
                        model,
                    })) => TrainEvent::Stopped {
                        epochs_done,
                        checkpoint,
                        model,
                    },
                    Ok(Err(reason)) => TrainEvent::Failed { reason },
                    Err(panic) => TrainEvent::Failed {
                        reason: format!(
                            "internal error: {}",
                            panic
                                .downcast_ref::<String>()
                                .map(String::as_str)
                                .or_else(|| panic.downcast_ref::<&str>().copied())
                                .unwrap_or("panic")
                        ),
                    },
                };
                emit.send(event);
            })?;
        Ok(Self {
            events,
            stop,
            handle: Some(handle),
        })
    }

    /// Asks the run to stop after the current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The events so far, without waiting.
    pub fn try_events(&self) -> Vec<TrainEvent> {
        self.events.try_iter().collect()
    }

    /// Waits for the next event; `None` once the run is over and every event was taken.
    pub fn next_event(&self) -> Option<TrainEvent> {
        self.events.recv().ok()
    }

    /// True while the worker thread runs.
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Runs a job on this thread until it ends, handing every event to `on_event`.
    pub fn run_blocking(job: TrainJob, mut on_event: impl FnMut(&TrainEvent)) -> TrainEvent {
        let run = match Self::start(job, || {}) {
            Ok(r) => r,
            Err(e) => {
                return TrainEvent::Failed {
                    reason: format!("cannot start the training thread: {e}"),
                };
            }
        };
        let mut last = TrainEvent::Failed {
            reason: "the training thread ended without a word".into(),
        };
        while let Some(event) = run.next_event() {
            on_event(&event);
            last = event;
        }
        last
    }
}

impl Drop for TrainingRun {
    fn drop(&mut self) {
        self.stop();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
