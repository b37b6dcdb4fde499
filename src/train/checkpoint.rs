//! The run's checkpoint: written on a thread of its own, by time rather than every epoch, and
//! always complete (a temporary file renamed over the old one).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::optim::ModuleOptimizer;

use super::events::TrainEvent;
use super::job::Emitter;
use crate::model::Vgg16;
use crate::model::bundle::{self, BundleHeader};

/// How often a run writes its checkpoint unless told otherwise: after an epoch once this much
/// training time has passed since the last one, and always after the last epoch and on a stop.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// Writes the run's checkpoint on a thread of its own, so the next epoch trains while the last
/// one's is serialised and flushed to disk (about 0.3–0.7 s for the light head's 136 MB on the
/// development machine, as long as a cached epoch). At most one write is in flight: the next
/// checkpoint, a stop and the end of the run wait for it. `CheckpointSaved` is sent once the file
/// is complete, from the run's own thread.
///
/// Epochs shorter than the interval are not each written: the epoch's snapshot is kept (cheap:
/// tensors are shared) and written when the interval has passed, after the last epoch, on a
/// stop, or when the run fails, so a stopped or failed run still leaves the last finished
/// epoch's checkpoint. Cached epochs of the light head take under a second, and writing 136 MB
/// after each took a third of a warm run's CPU time.
pub(super) struct CheckpointWriter {
    pending: Option<PendingCheckpoint>,
    deferred: Option<Snapshot>,
    interval: Duration,
    since: Instant,
}

/// A checkpoint being written: where, after which epoch, and the writing thread.
struct PendingCheckpoint {
    path: PathBuf,
    epoch: usize,
    writing: std::thread::JoinHandle<Result<(), String>>,
}

/// The run as it stood after an epoch.
struct Snapshot {
    path: PathBuf,
    header: BundleHeader,
    model: Vgg16,
    optim: ModuleOptimizer,
    epoch: usize,
}

impl CheckpointWriter {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            pending: None,
            deferred: None,
            interval,
            since: Instant::now(),
        }
    }

    /// Takes the snapshot after `epoch` (cheap clones: tensors are shared, and the next
    /// optimizer step writes new buffers) and writes it when the interval has passed or `last`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn epoch_done(
        &mut self,
        emit: &Emitter,
        path: &Path,
        header: BundleHeader,
        model: &Vgg16,
        optim: &ModuleOptimizer,
        epoch: usize,
        last: bool,
    ) -> Result<(), String> {
        self.keep(path, header, model, optim, epoch);
        if last || self.since.elapsed() >= self.interval {
            self.write_kept(emit)?;
        }
        Ok(())
    }

    /// Starts writing the kept snapshot, if any.
    fn write_kept(&mut self, emit: &Emitter) -> Result<(), String> {
        match self.deferred.take() {
            Some(snapshot) => self.write(emit, snapshot),
            None => Ok(()),
        }
    }

    /// Keeps the snapshot after `epoch` without writing it: [`Self::flush`] or a failed run
    /// writes it, [`Self::discard`] drops it.
    pub(super) fn keep(
        &mut self,
        path: &Path,
        header: BundleHeader,
        model: &Vgg16,
        optim: &ModuleOptimizer,
        epoch: usize,
    ) {
        self.deferred = Some(Snapshot {
            path: path.to_owned(),
            header,
            model: model.clone(),
            optim: optim.clone(),
            epoch,
        });
    }

    /// Drops the snapshot waiting to be written, if any.
    pub(super) fn discard(&mut self) {
        self.deferred = None;
    }

    /// Starts writing `snapshot` after the previous write is done.
    fn write(&mut self, emit: &Emitter, snapshot: Snapshot) -> Result<(), String> {
        self.finish(emit)?;
        self.since = Instant::now();
        let Snapshot {
            path,
            header,
            model,
            optim,
            epoch,
        } = snapshot;
        let target = path.clone();
        let handle = std::thread::Builder::new()
            .name("vggtune-checkpoint".into())
            .spawn(move || {
                bundle::save(&target, &header, &model, Some(&optim)).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("cannot start the checkpoint writer: {e}"))?;
        self.pending = Some(PendingCheckpoint {
            path,
            epoch,
            writing: handle,
        });
        Ok(())
    }

    /// Reports a finished write without waiting for one in progress.
    pub(super) fn poll(&mut self, emit: &Emitter) -> Result<(), String> {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.writing.is_finished())
        {
            self.finish(emit)?;
        }
        Ok(())
    }

    /// Writes the snapshot still waiting for its turn, if any, and waits for every write.
    pub(super) fn flush(&mut self, emit: &Emitter) -> Result<(), String> {
        self.write_kept(emit)?;
        self.finish(emit)
    }

    /// Waits for the write in progress, if any, and reports it.
    fn finish(&mut self, emit: &Emitter) -> Result<(), String> {
        let Some(PendingCheckpoint {
            path,
            epoch,
            writing,
        }) = self.pending.take()
        else {
            return Ok(());
        };
        writing
            .join()
            .map_err(|_| format!("{}: the checkpoint writer panicked", path.display()))??;
        emit.send(TrainEvent::CheckpointSaved { path, epoch });
        Ok(())
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        // A run that fails elsewhere still leaves a complete checkpoint file (or the old one),
        // of the last finished epoch.
        if let Some(pending) = self.pending.take() {
            let _ = pending.writing.join();
        }
        if let Some(s) = self.deferred.take() {
            let _ = bundle::save(&s.path, &s.header, &s.model, Some(&s.optim));
        }
    }
}

/// The path of the checkpoint that goes with a model path (`model.vggtune` → `model.ckpt.vggtune`).
pub fn checkpoint_path_for(out: &Path) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.ckpt.vggtune"))
}
