//! The fine-tuning engine: learning, stop, resume, the feature cache, bundles, predictions and a
//! short run with the real ImageNet conv base on real photos.

mod common;

use common::colour_dataset;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use vggtune::data::{Dataset, SplitConfig};
use vggtune::device::DeviceChoice;
use vggtune::infer::{self, Classifier};
use vggtune::model::HeadKind;
use vggtune::model::bundle;
use vggtune::train::{
    EpochMetrics, RunSummary, TrainConfig, TrainEvent, TrainJob, Trainable, TrainingRun,
};

fn tiny_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        trainable: Trainable::Dense,
        epochs,
        batch_size: 8,
        learning_rate: 1e-3,
        head: HeadKind::Dense256,
        input_size: 32,
        width_divisor: 16,
        device: DeviceChoice::Cpu,
        split: SplitConfig {
            valid_fraction: 0.25,
            seed: 3,
        },
        seed: 3,
        ..TrainConfig::default()
    }
}

fn job(root: &Path, config: TrainConfig, work: &Path) -> TrainJob {
    TrainJob {
        dataset: Dataset::scan(root).unwrap(),
        weights: None,
        from_model: None,
        config,
        out: Some(work.join("model.vggtune")),
        checkpoint: Some(work.join("model.ckpt.vggtune")),
        // After every epoch, so tests can follow them; one test checks the default.
        checkpoint_interval: Duration::ZERO,
        final_checkpoint: true,
        resume: false,
        resume_as_saved: false,
        cache_root: Some(work.join("cache")),
        stop_after: None,
    }
}

fn finished(event: TrainEvent) -> RunSummary {
    match event {
        TrainEvent::Finished(summary) => *summary,
        other => panic!("the run did not finish: {other:?}"),
    }
}

#[test]
fn a_tiny_run_learns_to_tell_colours_apart_and_reports_every_epoch() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 24, 1);
    let mut epochs = Vec::new();
    let mut batches = 0;
    let mut started = None;
    let mut checkpoints = Vec::new();
    // Every layer learns here, so the gradients through all 13 convolutions are exercised too.
    let config = TrainConfig {
        trainable: Trainable::All,
        ..tiny_config(6)
    };
    let summary = finished(TrainingRun::run_blocking(
        job(data.path(), config, work.path()),
        |e| match e {
            TrainEvent::Epoch(m) => epochs.push(m.clone()),
            TrainEvent::Batch { loss, .. } => {
                assert!(loss.is_finite());
                batches += 1;
            }
            TrainEvent::Started { train, valid, .. } => started = Some((*train, *valid)),
            // Checkpoints are written in the background; each is reported once complete.
            TrainEvent::CheckpointSaved { path, epoch } => {
                assert!(
                    epochs.len() >= *epoch,
                    "checkpoint {epoch} before its epoch"
                );
                let header = bundle::read_header(path).unwrap();
                assert!(header.next_epoch >= *epoch);
                checkpoints.push(*epoch);
            }
            _ => {}
        },
    ));
    assert_eq!(checkpoints, (1..=6).collect::<Vec<_>>());
    let last = bundle::read_header(&work.path().join("model.ckpt.vggtune")).unwrap();
    assert_eq!(last.next_epoch, 6);
    assert_eq!(started, Some((36, 12)));
    assert_eq!(epochs.len(), 6);
    assert_eq!(batches, 6 * 36usize.div_ceil(8));
    assert!(epochs[5].train_loss < epochs[0].train_loss, "{epochs:?}");
    assert!(
        summary.validation.evaluation.accuracy >= 0.9,
        "validation accuracy {}",
        summary.validation.evaluation.accuracy
    );
    assert_eq!(summary.validation.evaluation.count, 12);
    assert!(work.path().join("model.vggtune").is_file());
}

#[test]
fn a_run_told_not_to_keep_a_final_checkpoint_writes_none_after_its_last_epoch() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 8, 6);
    let mut job = job(data.path(), tiny_config(3), work.path());
    job.final_checkpoint = false;
    let mut saved = Vec::new();
    finished(TrainingRun::run_blocking(job, |e| {
        if let TrainEvent::CheckpointSaved { epoch, .. } = e {
            saved.push(*epoch);
        }
    }));
    // Every epoch but the last (the interval is zero here), as the window deletes it anyway.
    assert_eq!(saved, [1, 2]);
    let checkpoint = bundle::read_header(&work.path().join("model.ckpt.vggtune")).unwrap();
    assert_eq!(checkpoint.next_epoch, 2);
    assert!(work.path().join("model.vggtune").is_file());
}

#[test]
fn stop_ends_the_run_within_one_batch_and_keeps_the_last_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 16, 2);
    // The stop is set on the worker itself, in the wake-up after the first event that follows
    // the first checkpoint, so the events after it are exactly those the worker sent once
    // stopped (a stop sent from this thread would land at a moment the events cannot show).
    let stop = Arc::new(AtomicBool::new(false));
    let armed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let stopped_at = Arc::new(AtomicUsize::new(usize::MAX));
    let wake = {
        let (stop, armed, sent, stopped_at) = (
            stop.clone(),
            armed.clone(),
            sent.clone(),
            stopped_at.clone(),
        );
        move || {
            let n = sent.fetch_add(1, Ordering::SeqCst) + 1;
            if armed.load(Ordering::SeqCst) && !stop.swap(true, Ordering::SeqCst) {
                stopped_at.store(n, Ordering::SeqCst);
            }
        }
    };
    let run =
        TrainingRun::start_with_stop(job(data.path(), tiny_config(1000), work.path()), stop, wake)
            .unwrap();
    let mut batches_after_stop = 0;
    let mut received = 0;
    let last = loop {
        let event = run.next_event().expect("the run reports until it ends");
        received += 1;
        match &event {
            TrainEvent::CheckpointSaved { epoch: 1, .. } => armed.store(true, Ordering::SeqCst),
            TrainEvent::Batch { .. } if received > stopped_at.load(Ordering::SeqCst) => {
                batches_after_stop += 1
            }
            TrainEvent::Stopped { .. } | TrainEvent::Finished(_) | TrainEvent::Failed { .. } => {
                break event;
            }
            _ => {}
        }
    };
    assert!(
        stopped_at.load(Ordering::SeqCst) < received,
        "the stop was never set"
    );
    assert!(
        batches_after_stop <= 1,
        "{batches_after_stop} batches after the stop"
    );
    match last {
        TrainEvent::Stopped {
            epochs_done,
            checkpoint,
            model,
        } => {
            assert!(epochs_done >= 1);
            let checkpoint = checkpoint.expect("a checkpoint was kept");
            let header = bundle::read_header(&checkpoint).unwrap();
            assert_eq!(header.next_epoch, epochs_done);
            // The model of the last finished epoch is saved too: the model shown is the
            // model kept.
            let model = bundle::read_header(&model.expect("the model at the stop")).unwrap();
            assert_eq!(model.next_epoch, epochs_done);
            assert_eq!(model.history.as_array().map(Vec::len), Some(epochs_done));
            assert!(model.validation.is_some());
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
}

#[test]
fn a_checkpoint_that_cannot_be_written_fails_the_run_and_names_the_file() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 16, 5);
    // The checkpoint's folder would have to be made inside a file.
    let blocker = work.path().join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let mut job = job(data.path(), tiny_config(3), work.path());
    job.checkpoint = Some(blocker.join("model.ckpt.vggtune"));
    let mut epochs = 0;
    let end = TrainingRun::run_blocking(job, |e| {
        if let TrainEvent::Epoch(_) = e {
            epochs += 1;
        }
    });
    match end {
        TrainEvent::Failed { reason } => {
            assert!(reason.contains("a-file"), "{reason}");
            // The failure is noticed while the next epoch trains at the latest.
            assert!((1..=2).contains(&epochs), "{epochs} epochs");
        }
        other => panic!("expected the run to fail, got {other:?}"),
    }
    assert!(!work.path().join("model.vggtune").exists());
}

#[test]
fn a_run_whose_model_is_saved_finishes_even_when_its_last_checkpoint_cannot_be_written() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 8, 5);
    let blocker = work.path().join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    // Only the last epoch's checkpoint is written (the interval is far longer than the run),
    // and it cannot be.
    let mut job = job(data.path(), tiny_config(2), work.path());
    job.checkpoint = Some(blocker.join("model.ckpt.vggtune"));
    job.checkpoint_interval = vggtune::train::DEFAULT_CHECKPOINT_INTERVAL;
    let summary = finished(TrainingRun::run_blocking(job, |_| {}));
    let warning = summary.warning.expect("the lost checkpoint is reported");
    assert!(
        warning.contains("model is saved") && warning.contains("a-file"),
        "{warning}"
    );
    let model = work.path().join("model.vggtune");
    assert_eq!(bundle::read_header(&model).unwrap().next_epoch, 2);

    // A model that cannot be saved fails the run, and the last epoch's checkpoint is kept for
    // a resume.
    let mut job = self::job(data.path(), tiny_config(2), work.path());
    job.out = Some(blocker.join("model.vggtune"));
    job.final_checkpoint = false;
    match TrainingRun::run_blocking(job, |_| {}) {
        TrainEvent::Failed { reason } => assert!(reason.contains("a-file"), "{reason}"),
        other => panic!("expected the run to fail, got {other:?}"),
    }
    let checkpoint = work.path().join("model.ckpt.vggtune");
    assert_eq!(bundle::read_header(&checkpoint).unwrap().next_epoch, 2);
}

#[test]
fn a_new_run_does_not_report_or_resume_an_older_runs_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 8, 7);
    let mut first = job(data.path(), tiny_config(3), work.path());
    first.stop_after = Some(1);
    let old = match TrainingRun::run_blocking(first, |_| {}) {
        TrainEvent::Stopped { checkpoint, .. } => checkpoint.expect("the first run's checkpoint"),
        other => panic!("expected a stop, got {other:?}"),
    };
    // A new run stopped before its first epoch: it has no checkpoint of its own, and the
    // first run's is gone, so nothing resumes the wrong run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let run =
        TrainingRun::start_with_stop(job(data.path(), tiny_config(3), work.path()), stop, || {})
            .unwrap();
    let mut last = None;
    while let Some(e) = run.next_event() {
        last = Some(e);
    }
    match last {
        Some(TrainEvent::Stopped {
            checkpoint, model, ..
        }) => assert_eq!((checkpoint, model), (None, None)),
        other => panic!("expected a stop, got {other:?}"),
    }
    assert!(!old.exists());
}

#[test]
fn a_stage_stopped_and_resumed_as_saved_goes_on_as_the_stage_it_was() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 8, 6);
    let head = finished(TrainingRun::run_blocking(
        job(data.path(), tiny_config(2), work.path()),
        |_| {},
    ));
    let base = work.path().join("base.vggtune");
    std::fs::rename(head.model.unwrap(), &base).unwrap();
    // A deeper stage of 3 epochs, stopped after its first; its model and checkpoint both say
    // epoch 3.
    let stage_config = TrainConfig {
        trainable: Trainable::Block5,
        learning_rate: 1e-4,
        ..tiny_config(3)
    };
    let mut stage = job(data.path(), stage_config.clone(), work.path());
    stage.from_model = Some(base.clone());
    stage.stop_after = Some(3);
    match TrainingRun::run_blocking(stage, |_| {}) {
        TrainEvent::Stopped {
            epochs_done: 3,
            model: Some(model),
            ..
        } => assert_eq!(bundle::read_header(&model).unwrap().next_epoch, 3),
        other => panic!("expected a stop after epoch 3, got {other:?}"),
    }
    // Resumed as saved, with other settings on screen and without the model it continued:
    // the checkpoint's stage, rate and end.
    let mut resume = job(data.path(), tiny_config(10), work.path());
    resume.resume = true;
    resume.resume_as_saved = true;
    let mut started = None;
    let summary = finished(TrainingRun::run_blocking(resume, |e| {
        if let TrainEvent::Started {
            config,
            stage_start,
            resumed,
            first_epoch,
            ..
        } = e
        {
            started = Some((
                config.trainable,
                config.learning_rate,
                config.epochs,
                *stage_start,
                *resumed,
                *first_epoch,
            ));
        }
    }));
    assert_eq!(
        started,
        Some((Trainable::Block5, 1e-4, 5, 2, true, 4)),
        "trains block 5 at 1e-4 from epoch 4 to 5, a stage that began after epoch 2"
    );
    assert_eq!(summary.epochs, 5);
    let rates: Vec<f64> = summary.history.iter().map(|m| m.learning_rate).collect();
    assert_eq!(rates.len(), 5);
    assert!(
        rates[2] == 1e-4 && rates[4] < rates[3],
        "the stage's own schedule, from its own rate: {rates:?}"
    );
}

#[test]
fn a_run_on_wgpu_learns_like_the_cpu_and_checkpoints_from_the_device() {
    let data = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 24, 1);
    let mut runs = Vec::new();
    for device in [DeviceChoice::Cpu, DeviceChoice::Gpu] {
        let work = tempfile::tempdir().unwrap();
        // Every layer trains, so the wgpu backward pass through the convolutions runs too.
        let config = TrainConfig {
            device,
            trainable: Trainable::All,
            ..tiny_config(6)
        };
        let mut checkpoints = Vec::new();
        let mut label = String::new();
        let summary = finished(TrainingRun::run_blocking(
            job(data.path(), config, work.path()),
            |e| match e {
                TrainEvent::Started { device, .. } => label = device.clone(),
                TrainEvent::CheckpointSaved { epoch, .. } => checkpoints.push(*epoch),
                _ => {}
            },
        ));
        eprintln!("{label}: {:?}", summary.history);
        assert_eq!(checkpoints, [1, 2, 3, 4, 5, 6], "{label}");
        // The checkpoint written from the device's tensors on the writer thread loads back.
        let loaded = bundle::load(
            &work.path().join("model.ckpt.vggtune"),
            &vggtune::device::select(DeviceChoice::Cpu).unwrap().device,
        )
        .unwrap();
        assert_eq!(loaded.header.next_epoch, 6);
        assert!(loaded.optimizer.is_some());
        runs.push((label, summary.history));
    }
    assert!(runs[0].0.starts_with("CPU"), "{}", runs[0].0);
    assert!(runs[1].0.starts_with("GPU"), "{}", runs[1].0);
    let last = &runs[1].1[5];
    assert!(last.train_loss < runs[1].1[0].train_loss * 0.75, "{runs:?}");
    assert!(last.valid_accuracy >= 0.9, "{runs:?}");
    // The same seeds and data: the backends differ only by float rounding.
    for (cpu, gpu) in runs[0].1.iter().zip(&runs[1].1) {
        assert!(
            (cpu.train_loss - gpu.train_loss).abs() < 1e-3 * cpu.train_loss.max(1.0),
            "{runs:?}"
        );
        assert!(
            (cpu.valid_accuracy - gpu.valid_accuracy).abs() < 0.1,
            "{runs:?}"
        );
    }
}

fn history(event: TrainEvent) -> Vec<EpochMetrics> {
    finished(event).history
}

#[test]
fn a_resumed_run_gives_the_same_numbers_as_an_uninterrupted_one() {
    let data = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 16, 4);
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted = history(TrainingRun::run_blocking(
        job(data.path(), tiny_config(4), whole.path()),
        |_| {},
    ));

    // Stopped after exactly two epochs (the Stop button's own timing is the test above; a
    // stop sent from here on seeing epoch 2's checkpoint can arrive after epoch 3 on a fast
    // machine).
    // The parts keep the default checkpoint interval, far longer than these epochs: epoch 2's
    // snapshot is written only when the run stops, and must still be epoch 2's state (epoch 3
    // must not have trained into it) for the numbers below to agree.
    let parts = tempfile::tempdir().unwrap();
    let mut first_part = job(data.path(), tiny_config(4), parts.path());
    first_part.stop_after = Some(2);
    first_part.checkpoint_interval = vggtune::train::DEFAULT_CHECKPOINT_INTERVAL;
    let mut saved = Vec::new();
    let saved_epoch = |saved: &mut Vec<usize>, e: &TrainEvent| {
        if let TrainEvent::CheckpointSaved { epoch, .. } = e {
            saved.push(*epoch);
        }
    };
    match TrainingRun::run_blocking(first_part, |e| saved_epoch(&mut saved, e)) {
        TrainEvent::Stopped {
            epochs_done,
            checkpoint,
            model,
        } => {
            assert_eq!(epochs_done, 2);
            let checkpoint = checkpoint.expect("a checkpoint was kept");
            assert_eq!(bundle::read_header(&checkpoint).unwrap().next_epoch, 2);
            let model = model.expect("the model at the stop");
            assert_eq!(bundle::read_header(&model).unwrap().next_epoch, 2);
        }
        other => panic!("expected Stopped after 2 epochs, got {other:?}"),
    }
    assert_eq!(saved, [2], "epoch 1 is not written, epoch 2 is on the stop");
    let mut resume = job(data.path(), tiny_config(4), parts.path());
    resume.resume = true;
    resume.checkpoint_interval = vggtune::train::DEFAULT_CHECKPOINT_INTERVAL;
    let mut first_epoch = 0;
    saved.clear();
    let resumed = history(TrainingRun::run_blocking(resume, |e| {
        if let TrainEvent::Started { first_epoch: f, .. } = e {
            first_epoch = *f;
        }
        saved_epoch(&mut saved, e);
    }));
    assert_eq!(saved, [4], "only the last epoch's checkpoint");
    assert_eq!(first_epoch, 3);
    assert_eq!(resumed.len(), 4);
    for (a, b) in uninterrupted.iter().zip(&resumed) {
        assert_eq!(a.epoch, b.epoch);
        assert!(
            (a.train_loss - b.train_loss).abs() < 1e-6,
            "epoch {}: {} vs {}",
            a.epoch,
            a.train_loss,
            b.train_loss
        );
        assert!(
            (a.valid_loss - b.valid_loss).abs() < 1e-6,
            "epoch {}: {} vs {}",
            a.epoch,
            a.valid_loss,
            b.valid_loss
        );
        assert_eq!(a.valid_accuracy, b.valid_accuracy);
    }
}

#[test]
fn resuming_with_a_setting_that_changes_the_models_shape_is_refused_and_keeps_the_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 8, 5);
    let work = tempfile::tempdir().unwrap();
    let mut first = job(data.path(), tiny_config(3), work.path());
    first.stop_after = Some(1);
    let checkpoint = match TrainingRun::run_blocking(first, |_| {}) {
        TrainEvent::Stopped { checkpoint, .. } => checkpoint.expect("a checkpoint"),
        other => panic!("expected a stop, got {other:?}"),
    };
    let before = std::fs::read(&checkpoint).unwrap();
    let model = work.path().join("model.vggtune");
    let stopped_model = std::fs::read(&model).expect("the model at the stop");
    for (change, named) in [
        (
            (|c: &mut TrainConfig| c.head = HeadKind::Torchvision) as fn(&mut TrainConfig),
            "head dense256, this run asks for torchvision",
        ),
        (
            |c| c.input_size = 64,
            "input size 32 px, this run asks for 64 px",
        ),
        (
            |c| c.width_divisor = 8,
            "width divisor 16, this run asks for 8",
        ),
    ] {
        let mut config = tiny_config(3);
        change(&mut config);
        let mut resume = job(data.path(), config, work.path());
        resume.resume = true;
        match TrainingRun::run_blocking(resume, |_| {}) {
            TrainEvent::Failed { reason } => {
                assert!(reason.contains(named), "{reason}");
                assert!(reason.contains("model.ckpt.vggtune"), "{reason}");
            }
            other => panic!("a resume with another shape must fail, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(&checkpoint).unwrap(),
            before,
            "the checkpoint is kept"
        );
        assert_eq!(
            std::fs::read(&model).unwrap(),
            stopped_model,
            "no broken model is written"
        );
    }
}

#[test]
fn the_feature_cache_hits_misses_and_notices_changed_photos() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 8, 5);
    let config = TrainConfig {
        epochs: 1,
        ..tiny_config(1)
    };
    let first = finished(TrainingRun::run_blocking(
        job(data.path(), config.clone(), work.path()),
        |_| {},
    ));
    assert_eq!((first.cache_hits, first.cache_misses), (0, 16));
    let second = finished(TrainingRun::run_blocking(
        job(data.path(), config.clone(), work.path()),
        |_| {},
    ));
    assert_eq!((second.cache_hits, second.cache_misses), (16, 0));

    // A changed photo is a miss; so is a corrupted cache entry.
    colour_dataset(&data.path().join("tmp"), 1, 99);
    std::fs::rename(
        data.path().join("tmp/red/0.png"),
        data.path().join("red/0.png"),
    )
    .unwrap();
    std::fs::remove_dir_all(data.path().join("tmp")).unwrap();
    let entry = std::fs::read_dir(work.path().join("cache"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "f32"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&entry, bytes).unwrap();
    let third = finished(TrainingRun::run_blocking(
        job(data.path(), config.clone(), work.path()),
        |_| {},
    ));
    assert!(
        third.cache_misses >= 1 && third.cache_misses <= 2,
        "{} misses",
        third.cache_misses
    );
    assert_eq!(third.cache_hits + third.cache_misses, 16);

    // Other preprocessing (input size) never reads these entries.
    let other = TrainConfig {
        input_size: 48,
        ..config.clone()
    };
    let fourth = finished(TrainingRun::run_blocking(
        job(data.path(), other, work.path()),
        |_| {},
    ));
    assert_eq!(fourth.cache_misses, 16);

    // Augmentation bypasses the cache and says so.
    let mut note = String::new();
    let aug = TrainConfig {
        augment: true,
        ..config
    };
    let fifth = finished(TrainingRun::run_blocking(
        job(data.path(), aug, work.path()),
        |e| {
            if let TrainEvent::Started { cache, .. } = e {
                note = cache.clone();
            }
        },
    ));
    assert_eq!(fifth.cache_hits + fifth.cache_misses, 0);
    assert!(note.contains("augmentation"), "{note}");
}

#[test]
fn training_block5_caches_the_output_of_block4_and_learns_from_there() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 8, 12);
    let config = TrainConfig {
        trainable: Trainable::Block5,
        ..tiny_config(2)
    };
    let first = finished(TrainingRun::run_blocking(
        job(data.path(), config.clone(), work.path()),
        |_| {},
    ));
    assert_eq!((first.cache_hits, first.cache_misses), (0, 16));
    assert_eq!(first.history.len(), 2);
    let second = finished(TrainingRun::run_blocking(
        job(data.path(), config, work.path()),
        |_| {},
    ));
    assert_eq!((second.cache_hits, second.cache_misses), (16, 0));
    // Block 4's output at 32 px input and width ÷16: 32 channels of 2×2.
    let entry = std::fs::read_dir(work.path().join("cache"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .find(|e| e.path().extension().is_some_and(|x| x == "f32"))
        .unwrap();
    assert_eq!(
        std::fs::metadata(entry.path()).unwrap().len(),
        8 + 8 + 32 * 2 * 2 * 4 + 32
    );
}

#[test]
fn a_photo_broken_after_the_scan_is_skipped_and_counted() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 8, 6);
    let job = job(data.path(), tiny_config(1), work.path());
    std::fs::write(data.path().join("blue/3.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let mut skipped = Vec::new();
    let summary = finished(TrainingRun::run_blocking(job, |e| {
        if let TrainEvent::Skipped { path, .. } = e {
            skipped.push(path.clone());
        }
    }));
    assert_eq!(summary.skipped, 1);
    assert_eq!(skipped, vec![data.path().join("blue/3.png")]);
}

#[test]
fn a_saved_model_predicts_like_the_run_and_damaged_files_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 12, 7);
    let summary = finished(TrainingRun::run_blocking(
        job(data.path(), tiny_config(3), work.path()),
        |_| {},
    ));
    let model_path = work.path().join("model.vggtune");
    let classifier = Classifier::load(&model_path, &burn::tensor::Device::flex()).unwrap();
    assert_eq!(classifier.classes(), ["blue", "red"]);
    let (predictions, failed) = classifier.predict(&summary.validation.images, 4, |_, _| {});
    assert!(failed.is_empty());
    let probs: Vec<Vec<f32>> = predictions
        .iter()
        .map(|p| p.probabilities.clone())
        .collect();
    let labels: Vec<usize> = summary
        .validation
        .images
        .iter()
        .map(|p| usize::from(p.parent().unwrap().ends_with("red")))
        .collect();
    let again = vggtune::train::Evaluation::compute(classifier.classes(), &probs, &labels, 12);
    assert_eq!(again.accuracy, summary.validation.evaluation.accuracy);
    assert!((again.log_loss - summary.validation.evaluation.log_loss).abs() < 1e-5);

    let bytes = std::fs::read(&model_path).unwrap();
    // One flipped byte in the weights: refused, not a model that predicts nonsense.
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    let damaged = work.path().join("flipped.vggtune");
    std::fs::write(&damaged, &flipped).unwrap();
    let err = Classifier::load(&damaged, &burn::tensor::Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("flipped.vggtune") && err.contains("checksum does not match"),
        "{err}"
    );
    // A version-1 file (before checksums) still loads, and predicts the same.
    let old = common::as_old_format(&bytes, 1);
    let old_path = work.path().join("version1.vggtune");
    std::fs::write(&old_path, &old).unwrap();
    let old_model = Classifier::load(&old_path, &burn::tensor::Device::flex()).unwrap();
    let (again, _) = old_model.predict(&summary.validation.images[..2], 2, |_, _| {});
    assert_eq!(again[0].probabilities, predictions[0].probabilities);
    let cut = work.path().join("cut.vggtune");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = Classifier::load(&cut, &burn::tensor::Device::flex())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("cut.vggtune") && err.to_string().contains("truncated"),
        "{err}"
    );
    // The header alone (what picks the device) reads from a copy cut after it, and not from
    // one cut inside it.
    assert_eq!(bundle::read_header(&cut).unwrap().classes, ["blue", "red"]);
    let header_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
    std::fs::write(&cut, &bytes[..20 + header_len - 1]).unwrap();
    let err = bundle::read_header(&cut).unwrap_err().to_string();
    assert!(
        err.contains("cut.vggtune") && err.contains("truncated"),
        "{err}"
    );
    let text = work.path().join("notes.vggtune");
    std::fs::write(&text, b"hello").unwrap();
    let err = Classifier::load(&text, &burn::tensor::Device::flex())
        .err()
        .unwrap();
    assert!(err.to_string().contains("notes.vggtune"), "{err}");
    let err = bundle::read_header(&text).unwrap_err().to_string();
    assert!(
        err.contains("notes.vggtune") && err.contains("wrong file"),
        "{err}"
    );
}

/// Runs the CLI and insists that it succeeded.
fn run_ok(args: &[&str]) -> std::process::Output {
    let out = run_cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vggtune"))
        .args(args)
        .env_remove("VGGTUNE_DEVICE")
        .output()
        .unwrap()
}

#[test]
fn the_cli_trains_predicts_and_writes_a_kaggle_submission() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // Kaggle-style: train/cat.N.png, train/dog.N.png, test/N.png.
    colour_dataset(&work.path().join("gen"), 12, 8);
    let train = data.path().join("train");
    let test = data.path().join("test");
    std::fs::create_dir_all(&train).unwrap();
    std::fs::create_dir_all(&test).unwrap();
    for (class, name) in [("blue", "cat"), ("red", "dog")] {
        for i in 0..12 {
            std::fs::copy(
                work.path().join(format!("gen/{class}/{i}.png")),
                train.join(format!("{name}.{i}.png")),
            )
            .unwrap();
        }
    }
    for (id, src) in [(10, "red/0"), (2, "blue/1"), (1, "red/2")] {
        std::fs::copy(
            work.path().join(format!("gen/{src}.png")),
            test.join(format!("{id}.png")),
        )
        .unwrap();
    }
    let model = work.path().join("m.vggtune");
    let m = model.to_str().unwrap();
    let out = run_ok(&[
        "train",
        data.path().to_str().unwrap(),
        "--weights",
        "none",
        "--width-divisor",
        "16",
        "--input-size",
        "32",
        "--epochs",
        "4",
        "--lr",
        "1e-3",
        "--trainable",
        "dense",
        "--device",
        "cpu",
        "--out",
        m,
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("validation: accuracy"), "{stdout}");

    // A second stage from the model needs no weights: they come from the model.
    let deeper = work.path().join("deeper.vggtune");
    run_ok(&[
        "train",
        data.path().to_str().unwrap(),
        "--from",
        m,
        "--width-divisor",
        "16",
        "--input-size",
        "32",
        "--epochs",
        "1",
        "--trainable",
        "block5",
        "--device",
        "cpu",
        "--out",
        deeper.to_str().unwrap(),
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--quiet",
    ]);
    let header = bundle::read_header(&deeper).unwrap();
    assert_eq!((header.trained.as_str(), header.next_epoch), ("block5", 5));

    // A stopped light-head run resumes with no flags but --resume: its head, rate and views
    // come from the checkpoint; a flag that changes its views is refused with why.
    let light = work.path().join("light.vggtune");
    let cache = work.path().join("cache");
    let common = [
        data.path().to_str().unwrap(),
        "--weights",
        "none",
        "--width-divisor",
        "16",
        "--input-size",
        "32",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--out",
        light.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--quiet",
    ];
    let args = |extra: &[&'static str]| {
        let mut a = vec!["train"];
        a.extend(common);
        a.extend(extra);
        a
    };
    let stopped = run_cli(&args(&["--head", "dense256", "--stop-after", "1"]));
    assert!(!stopped.status.success());
    let said = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        said.contains("the model after epoch 1 is saved at"),
        "{said}"
    );
    assert_eq!(bundle::read_header(&light).unwrap().next_epoch, 1);
    let changed = run_cli(&args(&["--resume", "--square-tta", "false"]));
    let said = String::from_utf8_lossy(&changed.stderr);
    assert!(
        !changed.status.success() && said.contains("other-square"),
        "{said}"
    );
    run_ok(&args(&["--resume"]));
    let header = bundle::read_header(&light).unwrap();
    assert_eq!(
        (header.model.head, header.next_epoch),
        (HeadKind::Dense256, 2)
    );
    assert!(header.square_tta && header.mirror_tta);

    // Stages in one command: the head for 2 epochs, then the dense layers for 1 more on its
    // model; again with --resume, both are found complete and nothing trains.
    let loud = |extra: &[&'static str]| -> Vec<&str> {
        args(extra)
            .into_iter()
            .filter(|a| *a != "--quiet")
            .collect()
    };
    let staged = run_ok(&loud(&["--then", "dense:1:1e-4"]));
    let said = String::from_utf8_lossy(&staged.stdout);
    assert!(
        said.contains("stage 2 of 2: the dense layers for 1 epoch at 1e-4"),
        "{said}"
    );
    let first = bundle::read_header(&work.path().join("light-stage1.vggtune")).unwrap();
    assert_eq!((first.trained.as_str(), first.next_epoch), ("head", 2));
    let last = bundle::read_header(&light).unwrap();
    assert_eq!((last.trained.as_str(), last.next_epoch), ("dense", 3));
    let history = last.history.as_array().map_or(0, Vec::len);
    assert_eq!(history, 3, "both stages on one time axis");
    let again = run_ok(&loud(&["--then", "dense:1:1e-4", "--resume"]));
    let said = String::from_utf8_lossy(&again.stdout);
    assert_eq!(said.matches("is complete").count(), 2, "{said}");
    let bad = run_cli(&args(&["--then", "block5"]));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("TRAINABLE:EPOCHS[:LR]"));

    let csv = work.path().join("p.csv");
    run_ok(&[
        "predict",
        m,
        test.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ]);
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        csv_text.starts_with("path,predicted,p_cat,p_dog,verdict,typicality\n"),
        "{csv_text}"
    );
    assert_eq!(csv_text.lines().count(), 4);
    for line in csv_text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert!(
            ["cat", "dog", "none of these"].contains(&fields[4]),
            "{line}"
        );
        let typical: f64 = fields[5].parse().unwrap();
        assert!((0.0..=1.0).contains(&typical), "{line}");
    }
    // JSON: each prediction's verdict in words and how typical it is; --no-unknown leaves
    // the verdict out and names every photo's class.
    let out = run_ok(&[
        "predict",
        m,
        test.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "on");
    for p in v["predictions"].as_array().unwrap() {
        assert!(p["verdict"].is_string(), "{p}");
        let j = &p["typicality"];
        assert!(
            j["distance"].is_number() && j["typicality"].is_number() && j["known"].is_boolean(),
            "{p}"
        );
    }
    let out = run_ok(&[
        "predict",
        m,
        test.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
        "--no-unknown",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "the none-of-these verdict is switched off");
    for p in v["predictions"].as_array().unwrap() {
        assert!(p["typicality"].is_null(), "{p}");
        assert!(
            ["cat", "dog"].contains(&p["verdict"].as_str().unwrap()),
            "{p}"
        );
    }

    let submission = work.path().join("submission.csv");
    run_ok(&[
        "submit",
        m,
        test.to_str().unwrap(),
        "--out",
        submission.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ]);
    let text = std::fs::read_to_string(&submission).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,label");
    let ids: Vec<u64> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 10]);
    for l in &lines[1..] {
        let p: f64 = l.split(',').nth(1).unwrap().parse().unwrap();
        assert!((0.02..=0.98).contains(&p), "{l}");
    }

    let out = run_ok(&[
        "evaluate",
        m,
        train.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["evaluation"]["count"], 24);
    // The calibration error with its bins, and each photo's typicality.
    let ece = v["evaluation"]["reliability"]["ece"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ece), "{ece}");
    assert_eq!(
        v["evaluation"]["reliability"]["bins"]
            .as_array()
            .unwrap()
            .len(),
        15
    );
    assert_eq!(v["typicality"].as_array().unwrap().len(), 24);

    // Any folder: cats/ and dogs/ are the model's cat and dog (and the output says so); a
    // class named otherwise is an error naming it, until mapped with --class-map.
    let holdout = work.path().join("holdout");
    for (from, to) in [("gen/blue", "Cats"), ("gen/red", "kitten-or-dog")] {
        std::fs::create_dir_all(holdout.join(to)).unwrap();
        for i in 0..3 {
            std::fs::copy(
                work.path().join(format!("{from}/{i}.png")),
                holdout.join(format!("{to}/{i}.png")),
            )
            .unwrap();
        }
    }
    let h = holdout.to_str().unwrap();
    let out = run_cli(&["evaluate", m, h, "--device", "cpu"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("'kitten-or-dog'") && said.contains("--class-map"),
        "{said}"
    );
    let out = run_ok(&[
        "evaluate",
        m,
        h,
        "--class-map",
        "kitten-or-dog=dog",
        "--device",
        "cpu",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("'Cats' is the model's 'cat'"), "{said}");
    assert!(
        said.contains("'kitten-or-dog' is the model's 'dog' (as mapped)"),
        "{said}"
    );
    assert!(said.contains("holdout"), "{said}");

    // A file name that is not UTF-8 (Linux allows any bytes): the JSON is still written, the
    // name lossily.
    use std::os::unix::ffi::OsStrExt as _;
    let odd = work.path().join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    std::fs::copy(work.path().join("gen/red/3.png"), odd.join(name)).unwrap();
    let out = run_ok(&[
        "predict",
        m,
        odd.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = v["predictions"][0]["path"].as_str().unwrap();
    assert!(path.ends_with("caf\u{FFFD}.png"), "{path}");

    // Every file of a dropped folder gets a prediction or a reason: a truncated JPEG is not
    // classified, and loops, dangling links, FIFOs and text files are named with why.
    let mixed = work.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    let photo = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dogscats/train/cat.1.jpg"),
    )
    .unwrap();
    std::fs::write(mixed.join("whole.jpg"), &photo).unwrap();
    std::fs::write(mixed.join("half.jpg"), &photo[..photo.len() / 2]).unwrap();
    std::fs::write(mixed.join("readme.txt"), "notes").unwrap();
    std::os::unix::fs::symlink(&mixed, mixed.join("loop")).unwrap();
    std::os::unix::fs::symlink(mixed.join("gone.jpg"), mixed.join("dangling.jpg")).unwrap();
    let fifo = mixed.join("pipe.jpg");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let out = run_ok(&[
        "predict",
        m,
        mixed.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let predicted: Vec<&str> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(predicted.len(), 1, "{v}");
    assert!(predicted[0].ends_with("whole.jpg"), "{v}");
    let reasons: std::collections::HashMap<String, String> = v["unclassified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let name = Path::new(u["path"].as_str().unwrap())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, u["reason"].as_str().unwrap().to_owned())
        })
        .collect();
    for (name, says) in [
        ("half.jpg", "truncated"),
        ("readme.txt", "not an image"),
        ("loop", "symbolic link loop"),
        ("dangling.jpg", "broken symbolic link"),
        ("pipe.jpg", "not a regular file"),
    ] {
        let reason = reasons.get(name).map_or("(not listed)", String::as_str);
        assert!(reason.contains(says), "{name}: {reason}; all: {reasons:?}");
    }
    // A FIFO named directly says what it is.
    let out = run_cli(&["predict", m, fifo.to_str().unwrap(), "--device", "cpu"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn onnx_fixture() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/downloaded/vgg16_keras.onnx");
    assert!(
        path.is_file(),
        "{} is missing: run `bash tests/fetch-fixtures.sh`",
        path.display()
    );
    path
}

/// A folder of links to the real photos `cat.I.jpg` and `dog.I.jpg` of `../shared/data`
/// for every I in `numbers`, and the folder they come from.
fn real_photos(numbers: impl Iterator<Item = usize> + Clone) -> (PathBuf, tempfile::TempDir) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dogscats/train");
    let data = tempfile::tempdir().unwrap();
    for class in ["cat", "dog"] {
        for i in numbers.clone() {
            let name = format!("{class}.{i}.jpg");
            std::os::unix::fs::symlink(source.join(&name), data.path().join(&name)).unwrap();
        }
    }
    (source, data)
}

#[test]
fn the_real_imagenet_conv_base_learns_cats_and_dogs_from_a_few_dozen_photos() {
    let (source, data) = real_photos(1..=30);
    let work = tempfile::tempdir().unwrap();
    // The light head, and the pooled head (the default) at its own default rate.
    for (head, learning_rate) in [
        (HeadKind::Dense256, 1e-4),
        (HeadKind::Pooled, HeadKind::Pooled.default_learning_rate()),
    ] {
        let config = TrainConfig {
            trainable: Trainable::Head,
            epochs: 8,
            batch_size: 8,
            learning_rate,
            head,
            input_size: 112,
            device: DeviceChoice::Cpu,
            split: SplitConfig {
                valid_fraction: 0.2,
                seed: 11,
            },
            seed: 11,
            ..TrainConfig::default()
        };
        let mut job = job(data.path(), config, work.path());
        // Each head's model beside the other's; the second run reads the first's cached features.
        let model_path = work.path().join(format!("{head:?}.vggtune"));
        job.out = Some(model_path.clone());
        job.weights = Some(onnx_fixture());
        let summary = finished(TrainingRun::run_blocking(job, |_| {}));
        eprintln!(
            "real conv base, {head:?} head, 48 training photos at 112 px: validation accuracy {:.3}, \
             log loss {:.3}",
            summary.validation.evaluation.accuracy, summary.validation.evaluation.log_loss
        );
        assert_eq!(summary.validation.evaluation.count, 12);
        // Each validation photo judged as the saved model judges it, saved with the model.
        assert_eq!(summary.validation.typicality.len(), 12);
        let saved = bundle::read_header(&model_path)
            .unwrap()
            .validation
            .unwrap();
        assert_eq!(saved.typicality, summary.validation.typicality);
        assert!(
            summary.validation.evaluation.accuracy >= 0.75,
            "accuracy {}",
            summary.validation.evaluation.accuracy
        );
        let header = bundle::read_header(&model_path).unwrap();
        assert_eq!(
            header.preprocessing.convention,
            vggtune::data::Convention::Caffe
        );
        assert_eq!(header.classes, ["cat", "dog"]);
        let _ = infer::has_image_extension(Path::new("x.jpg"));

        // Exported to ONNX, the trained model (Caffe weights: BGR folded into the first kernel;
        // 112 px: block 5 is 3×3, pooled to 7×7 by the graph's pooling matrices) gives in
        // onnxruntime what vggtune predicts, for a batch size it was never told.
        let onnx = work.path().join(format!("cats-dogs-{head:?}.onnx"));
        let out = run_ok(&[
            "export",
            model_path.to_str().unwrap(),
            "--out",
            onnx.to_str().unwrap(),
        ]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("cats-dogs-") && said.contains("ONNX opset 13"),
            "{said}"
        );
        let photos: Vec<PathBuf> = [
            "cat.101.jpg",
            "dog.102.jpg",
            "cat.103.jpg",
            "dog.104.jpg",
            "dog.105.jpg",
        ]
        .iter()
        .map(|name| source.join(name))
        .collect();
        let (ours, theirs, info) = common::vggtune_and_onnxruntime(&model_path, &onnx, &photos, 2);
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("ONNX export, {head:?} head: max |vggtune - onnxruntime| = {diff:e}; {info}");
        assert!(diff <= 1e-4, "vggtune {ours:?} vs onnxruntime {theirs:?}");
        assert!(
            ours.iter().any(|&p| p > 0.7),
            "a trained model is sure of some photo: {ours:?}"
        );
        assert_eq!(info["opset"], serde_json::json!([13]));
        assert_eq!(
            info["input"]["shape"],
            serde_json::json!(["batch", 3, 112, 112])
        );
        assert_eq!(info["output"]["name"], "probabilities");
        assert_eq!(info["result_shape"], serde_json::json!([5, 2]));
        // Beside the probabilities: the features, and the distance the verdict compares
        // (checked against vggtune's above), with the rule in the metadata.
        assert_eq!(info["features_shape"], serde_json::json!([5, 512]));
        assert_eq!(
            info["distances"].as_array().map(Vec::len),
            Some(5),
            "{info}"
        );
        assert!(
            info["metadata"]["none_of_these"]
                .as_str()
                .unwrap()
                .contains("10th nearest"),
            "{info}"
        );
        let metadata = &info["metadata"];
        assert_eq!(metadata["classes"], r#"["cat","dog"]"#);
        assert!(
            metadata["resize"].as_str().unwrap().contains("112×112"),
            "{metadata}"
        );
        assert!(
            metadata["vggtune_version"]
                .as_str()
                .unwrap()
                .starts_with(vggtune::VERSION),
            "{metadata}"
        );
        heatmaps_match_an_independent_grad_cam(&model_path, &onnx, &photos);
        if head == HeadKind::Pooled {
            photos_of_neither_class_are_none_of_these(&model_path, &source);
        }
    }
}

/// The *none of these* verdict of a model trained on 48 real photos at 112 px: real photos of
/// neither class (`../shared/data/ood`: flowers, and 30-px photos of planes, cars, fruit,
/// motorbikes and people) are none of these, and real cats and dogs it never saw are not. A
/// copy of the model in the format from before the verdict (version 2) still predicts, with
/// the verdict off and why.
fn photos_of_neither_class_are_none_of_these(model: &Path, source: &Path) {
    let mut ood: Vec<PathBuf> = std::fs::read_dir(source.join("../../ood"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ood.sort();
    let ood: Vec<PathBuf> = ood.into_iter().step_by(5).collect();
    let known: Vec<PathBuf> = (201..=220)
        .flat_map(|i| ["cat", "dog"].map(|c| source.join(format!("{c}.{i}.jpg"))))
        .collect();
    let classifier = Classifier::load(model, &burn::tensor::Device::flex()).unwrap();
    assert_eq!(classifier.verdict_off(), None);
    let called = |paths: &[PathBuf]| {
        let (predictions, failed) = classifier.predict(paths, 8, |_, _| {});
        assert!(failed.is_empty(), "{failed:?}");
        assert!(predictions.iter().all(|p| p.typicality.is_some()));
        predictions.iter().filter(|p| p.is_unknown()).count()
    };
    let (known_called, ood_called) = (called(&known), called(&ood));
    eprintln!(
        "none of these: {known_called} of {} unseen cats and dogs, {ood_called} of {} photos of \
         neither",
        known.len(),
        ood.len()
    );
    assert!(known_called <= 8, "{known_called} of 40 cats and dogs");
    assert!(
        ood_called >= 32,
        "{ood_called} of {} photos of neither",
        ood.len()
    );
    classifier.set_verdict(false);
    let (predictions, _) = classifier.predict(&ood[..4], 8, |_, _| {});
    assert!(
        predictions
            .iter()
            .all(|p| p.typicality.is_none() && !p.is_unknown())
    );

    // Copies of training photos in an evaluated folder are a leak, each named with the
    // training photo it copies: one as it is, one re-saved at JPEG quality 60.
    let summary = bundle::read_header(model).unwrap().typicality.unwrap();
    assert_eq!(summary.names.len(), summary.count);
    let eval = tempfile::tempdir().unwrap();
    let class_of = |name: &str| name.split('.').next().unwrap().to_owned();
    for (i, name) in summary.names[..2].iter().enumerate() {
        let dir = eval.path().join(class_of(name));
        std::fs::create_dir_all(&dir).unwrap();
        let photo = image::open(source.join(name)).unwrap().to_rgb8();
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut bytes,
            if i == 0 { 95 } else { 60 },
        )
        .encode_image(&photo)
        .unwrap();
        std::fs::write(dir.join(format!("copy{i}.jpg")), bytes).unwrap();
    }
    for name in ["cat.201.jpg", "dog.202.jpg"] {
        let dir = eval.path().join(class_of(name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(source.join(name), dir.join(name)).unwrap();
    }
    let out = run_ok(&[
        "evaluate",
        model.to_str().unwrap(),
        eval.path().to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leaks = v["leaks"].as_array().unwrap();
    let copied: Vec<&str> = leaks
        .iter()
        .map(|l| l["training_photo"].as_str().unwrap())
        .collect();
    assert_eq!(copied.len(), 2, "{v}");
    for name in &summary.names[..2] {
        assert!(copied.contains(&name.as_str()), "{name}: {copied:?}");
    }
    assert!(v["accuracy_without_leaks"].is_number(), "{v}");
    // With the verdict off, the leaks are still found.
    let out = run_ok(&[
        "evaluate",
        model.to_str().unwrap(),
        eval.path().to_str().unwrap(),
        "--device",
        "cpu",
        "--no-unknown",
        "--json",
    ]);
    let quiet: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(quiet["leaks"], v["leaks"], "{quiet}");

    let old = model.with_extension("v2.vggtune");
    std::fs::write(
        &old,
        common::as_old_format(&std::fs::read(model).unwrap(), 2),
    )
    .unwrap();
    let classifier = Classifier::load(&old, &burn::tensor::Device::flex()).unwrap();
    assert_eq!(
        classifier.verdict_off(),
        Some(vggtune::typical::NO_FEATURES)
    );
    let (predictions, _) = classifier.predict(&known[..4], 8, |_, _| {});
    assert_eq!(predictions.len(), 4);
    assert!(predictions.iter().all(|p| p.typicality.is_none()));
}

/// vggtune's Grad-CAM heatmaps of every class of `photos` equal those of
/// `tests/reference/gradcam.py`: onnxruntime's block-5 activations from the ONNX export, the rest
/// of the network re-run in numpy (float64), the gradients by finite differences. The
/// probabilities that come with them are the ones `predict` gives for the photo as it is (the
/// heatmaps explain the photo, not its mirror image). Then `vggtune predict --heatmaps` writes
/// one overlay per photo.
fn heatmaps_match_an_independent_grad_cam(model: &Path, onnx: &Path, photos: &[PathBuf]) {
    let classifier = infer::Classifier::load(model, &burn::tensor::Device::flex()).unwrap();
    classifier.set_mirror_tta(false);
    let predicted: Vec<f32> = classifier
        .predict(photos, 2, |_, _| {})
        .0
        .iter()
        .flat_map(|p| p.probabilities.clone())
        .collect();
    let never = std::sync::atomic::AtomicBool::new(false);
    let started = std::time::Instant::now();
    let (explained, failed) = classifier.explain_until(photos, 2, |_, _| {}, &never);
    eprintln!(
        "Grad-CAM of {} photos at 112 px, every class: {:.2} s",
        photos.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "{failed:?}");
    let probabilities: Vec<f32> = explained
        .iter()
        .flat_map(|(p, _)| p.probabilities.clone())
        .collect();
    let diff = max_abs_diff(&probabilities, &predicted);
    assert!(diff <= 1e-4, "{probabilities:?} vs {predicted:?}");
    let ours: Vec<f32> = explained
        .iter()
        .flat_map(|(_, maps)| maps.maps.concat())
        .collect();
    let (theirs, info) =
        common::reference_outputs("gradcam.py", onnx, photos, &classifier.header.preprocessing);
    // 112 px: block 5's last activation is 7×7 (max-pooled to 3×3, then pooled up to 7×7).
    assert_eq!(info["shape"], serde_json::json!([5, 512, 7, 7]), "{info}");
    assert_eq!(explained[0].1.height, 7);
    assert_eq!(ours.len(), theirs.len());
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!("Grad-CAM: max |vggtune - reference| = {diff:e} (maps scaled to 0..1)");
    assert!(diff <= 1e-4, "heatmaps differ by {diff}");
    // The maps say something: each photo's predicted class has a peak, and its two classes'
    // maps differ.
    for (prediction, maps) in &explained {
        let mine = &maps.maps[prediction.class];
        assert!((mine.iter().fold(0.0f32, |m, &v| m.max(v)) - 1.0).abs() < 1e-6);
        assert!(max_abs_diff(mine, &maps.maps[1 - prediction.class]) > 0.1);
    }

    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(&[
        "predict",
        model.to_str().unwrap(),
        photos[0].to_str().unwrap(),
        photos[1].to_str().unwrap(),
        "--heatmaps",
        dir.path().to_str().unwrap(),
        "--heatmap-class",
        "dog",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrote 2 heatmaps"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = dir.path().join("dog.102.dog.heatmap.png");
    let image = image::open(&written).unwrap();
    let original = image::open(&photos[1]).unwrap();
    assert_eq!(
        (image.width(), image.height()),
        (original.width(), original.height())
    );
    assert!(dir.path().join("cat.101.dog.heatmap.png").is_file());
    let refused = run_cli(&[
        "predict",
        model.to_str().unwrap(),
        photos[0].to_str().unwrap(),
        "--heatmaps",
        dir.path().to_str().unwrap(),
        "--heatmap-class",
        "horse",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("no class 'horse'; its classes: cat, dog"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn the_audit_lists_a_cat_filed_as_a_dog_first_on_the_real_imagenet_base() {
    // 40 real photos through the real ImageNet convolutions at 112 px, one cat renamed
    // dog.999.jpg: the heads that never saw it call it a cat, among the two they doubt most
    // (cat.200.jpg, a cat that looks like a dog to heads trained on 32 photos, is the other).
    let (source, data) = real_photos(200..220);
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(source.join("cat.222.jpg"), data.path().join("dog.999.jpg"))
        .unwrap();
    let weights = onnx_fixture();
    let run_audit = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            data.path().to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
            "--input-size",
            "112",
            "--epochs",
            "8",
            "--batch-size",
            "8",
            "--cache-dir",
            work.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_ok(&args)
    };
    let out = run_audit(&["--json"]);
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{}", serde_json::to_string(&audit["suspects"]).unwrap());
    assert_eq!(audit["folds"], 5);
    assert_eq!(audit["evaluation"]["count"], 41);
    let suspects = audit["suspects"].as_array().unwrap();
    let first = suspects[..2]
        .iter()
        .find(|s| s["rel"] == "dog.999.jpg")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(
        audit["classes"][first["looks_like"].as_u64().unwrap() as usize],
        "cat"
    );
    assert!(
        first["given_probability"].as_f64().unwrap() < 0.2,
        "{first}"
    );
    assert!(
        audit["evaluation"]["accuracy"].as_f64().unwrap() >= 0.7,
        "{}",
        audit["evaluation"]
    );
    // In words, most suspicious first.
    let out = run_audit(&["--limit", "2", "-q"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(". dog.999.jpg  labelled dog, looks like cat"),
        "{text}"
    );
    assert!(
        text.contains("41 photos at 112 px with vgg16_keras.onnx"),
        "{text}"
    );
    assert!(
        text.contains("warning: the photos were seen at 112 px"),
        "{text}"
    );

    // A photo kept after a look is not listed again (and the scan passes over the list).
    std::fs::write(data.path().join("vggtune-kept.txt"), "dog.999.jpg\n").unwrap();
    let out = run_audit(&["--json"]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["kept_earlier"], 1);
    assert_eq!(again["evaluation"]["count"], 41);
    let listed = again["suspects"].as_array().unwrap();
    assert!(listed.iter().all(|s| s["rel"] != "dog.999.jpg"), "{again}");
}

#[test]
fn mirror_views_are_cached_beside_the_photos_and_mirror_tta_averages_the_two() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 8, 5);
    let entries = |dir: &Path| {
        walk(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "f32"))
            .count()
    };
    let config = TrainConfig {
        mirror_views: true,
        mirror_tta: true,
        square_tta: false,
        ..tiny_config(2)
    };
    let first = finished(TrainingRun::run_blocking(
        job(data.path(), config.clone(), work.path()),
        |_| {},
    ));
    assert_eq!((first.cache_hits, first.cache_misses), (0, 16));
    assert_eq!(
        entries(&work.path().join("cache")),
        32,
        "each photo and its mirror"
    );
    // Without mirror views, the photos' own entries serve; with them, both.
    for (mirror, hits) in [(false, 16), (true, 16)] {
        let again = TrainConfig {
            mirror_views: mirror,
            mirror_tta: mirror,
            ..config.clone()
        };
        let out = work.path().join("again");
        let run = finished(TrainingRun::run_blocking(
            TrainJob {
                out: Some(out.join("m.vggtune")),
                checkpoint: None,
                ..job(data.path(), again, work.path())
            },
            |_| {},
        ));
        assert_eq!((run.cache_hits, run.cache_misses), (hits, 0));
    }

    // The model predicts with the mirror by default: the mean of the photo's and its mirror
    // image's probabilities.
    let model = work.path().join("model.vggtune");
    assert!(bundle::read_header(&model).unwrap().mirror_tta);
    let classifier = Classifier::load(&model, &burn::tensor::Device::flex()).unwrap();
    assert!(classifier.mirror_tta());
    let photo = data.path().join("red/3.png");
    let mirrored = work.path().join("mirrored.png");
    image::imageops::flip_horizontal(&image::open(&photo).unwrap().to_rgb8())
        .save(&mirrored)
        .unwrap();
    let (with, _) = classifier.predict(std::slice::from_ref(&photo), 4, |_, _| {});
    classifier.set_mirror_tta(false);
    let (plain, _) = classifier.predict(&[photo.clone(), mirrored], 4, |_, _| {});
    for c in 0..2 {
        let mean = 0.5 * (plain[0].probabilities[c] + plain[1].probabilities[c]);
        assert!(
            (with[0].probabilities[c] - mean).abs() < 1e-4,
            "{with:?} vs {plain:?}"
        );
    }
    assert_ne!(plain[0].probabilities, plain[1].probabilities);
}

#[test]
fn square_tta_averages_both_squares_as_the_runs_validation_does() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // Wide photos, their class's colour at both ends and grey noise in the middle: squashed,
    // the square shows the colour; centre-cropped, mostly the grey.
    let mut rng = vggtune::rng::SplitMix64(7);
    for (class, hue) in [("blue", 2usize), ("red", 0usize)] {
        std::fs::create_dir_all(data.path().join(class)).unwrap();
        for i in 0..8 {
            image::RgbImage::from_fn(64, 32, |x, _| {
                let ends = !(16..48).contains(&x);
                image::Rgb(std::array::from_fn(|c| {
                    let base = if ends && c == hue { 200.0 } else { 80.0 };
                    (base + rng.next_f32() * 50.0) as u8
                }))
            })
            .save(data.path().join(format!("{class}/{i}.png")))
            .unwrap();
        }
    }
    let config = TrainConfig {
        mirror_views: false,
        mirror_tta: true,
        square_tta: true,
        learning_rate: 1e-2,
        ..tiny_config(6)
    };
    let run = finished(TrainingRun::run_blocking(
        job(data.path(), config, work.path()),
        |_| {},
    ));
    // 12 training photos, one view each; 4 validation photos, four views each.
    let cached: Vec<String> = walk(&work.path().join("cache"))
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".f32"))
        .collect();
    assert_eq!(cached.len(), 12 + 4 * 4, "{cached:?}");
    // (A mirror image of either square ends in -mirror.)
    for (suffix, count) in [
        ("-mirror.f32", 8),
        ("-square.f32", 4),
        ("-square-mirror.f32", 4),
    ] {
        let found = cached.iter().filter(|n| n.ends_with(suffix)).count();
        assert_eq!(found, count, "{suffix}: {cached:?}");
    }

    // The model predicts each photo as the mean of four: the photo and its mirror image, each
    // squashed (the model's way) and centre-cropped (the other square).
    let model = work.path().join("model.vggtune");
    assert!(bundle::read_header(&model).unwrap().square_tta);
    let classifier = Classifier::load(&model, &burn::tensor::Device::flex()).unwrap();
    let validation = &run.validation;
    let (with, _) = classifier.predict(&validation.images, 4, |_, _| {});
    for (p, q) in with.iter().zip(&validation.probs) {
        assert!(max_abs_diff(&p.probabilities, q) < 1e-4, "{p:?} vs {q:?}");
    }
    let loaded = bundle::load(&model, &burn::tensor::Device::flex()).unwrap();
    let mut header = loaded.header.clone();
    header.preprocessing.resize = header.preprocessing.resize.other();
    let other_model = work.path().join("cropped.vggtune");
    bundle::save(&other_model, &header, &loaded.model, None).unwrap();
    let photo = validation.images[0].clone();
    let mirrored = work.path().join("mirrored.png");
    image::imageops::flip_horizontal(&image::open(&photo).unwrap().to_rgb8())
        .save(&mirrored)
        .unwrap();
    let mut four = Vec::new();
    for path in [&model, &other_model] {
        let plain = Classifier::load(path, &burn::tensor::Device::flex()).unwrap();
        plain.set_mirror_tta(false);
        let (p, _) = plain.predict(&[photo.clone(), mirrored.clone()], 4, |_, _| {});
        four.extend(p.into_iter().map(|p| p.probabilities));
    }
    assert!(
        max_abs_diff(&four[0], &four[2]) > 1e-3,
        "the two squares are different inputs: {four:?}"
    );
    let (with, _) = classifier.predict(std::slice::from_ref(&photo), 4, |_, _| {});
    for c in 0..2 {
        let mean = four.iter().map(|p| p[c]).sum::<f32>() / 4.0;
        assert!(
            (with[0].probabilities[c] - mean).abs() < 1e-5,
            "{with:?} vs {four:?}"
        );
    }
    // The heatmaps' predictions are the same four-view means.
    let never = AtomicBool::new(false);
    let (explained, _) = classifier.explain_until(&validation.images, 4, |_, _| {}, &never);
    let (predicted, _) = classifier.predict(&validation.images, 4, |_, _| {});
    for ((e, _), p) in explained.iter().zip(&predicted) {
        assert!(max_abs_diff(&e.probabilities, &p.probabilities) < 1e-4);
    }

    // A model that records the other square but not the mirror averages two views; without
    // the other square (as its ONNX export), it predicts the photo alone.
    header.preprocessing.resize = header.preprocessing.resize.other();
    header.mirror_tta = false;
    let squares_only = work.path().join("squares-only.vggtune");
    bundle::save(&squares_only, &header, &loaded.model, None).unwrap();
    let mut classifier = Classifier::load(&squares_only, &burn::tensor::Device::flex()).unwrap();
    let (two, _) = classifier.predict(std::slice::from_ref(&photo), 4, |_, _| {});
    classifier.set_square_tta(false);
    let (one, _) = classifier.predict(std::slice::from_ref(&photo), 4, |_, _| {});
    let mean: Vec<f32> = four[0]
        .iter()
        .zip(&four[2])
        .map(|(a, b)| 0.5 * (a + b))
        .collect();
    assert!(max_abs_diff(&two[0].probabilities, &mean) < 1e-5, "{two:?}");
    assert!(
        max_abs_diff(&one[0].probabilities, &four[0]) < 1e-5,
        "{one:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_second_stage_continues_a_trained_model_on_one_time_axis() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    colour_dataset(data.path(), 12, 7);
    let first = finished(TrainingRun::run_blocking(
        job(data.path(), tiny_config(2), work.path()),
        |_| {},
    ));
    assert_eq!(first.history.len(), 2);
    let head = work.path().join("model.vggtune");
    let stage_dir = work.path().join("stage2");
    std::fs::create_dir_all(&stage_dir).unwrap();
    let stage = TrainConfig {
        trainable: Trainable::Block5,
        learning_rate: 1e-4,
        ..tiny_config(3)
    };
    let mut started = None;
    let second = finished(TrainingRun::run_blocking(
        TrainJob {
            from_model: Some(head.clone()),
            ..job(data.path(), stage.clone(), &stage_dir)
        },
        |e| {
            if let TrainEvent::Started {
                first_epoch,
                weights,
                ..
            } = e
            {
                started = Some((*first_epoch, weights.clone()));
            }
        },
    ));
    let (first_epoch, said) = started.unwrap();
    assert_eq!(
        first_epoch, 3,
        "the stage's first epoch follows the model's two"
    );
    assert!(said[0].contains("continuing from"), "{said:?}");
    let epochs: Vec<usize> = second.history.iter().map(|m| m.epoch).collect();
    assert_eq!(epochs, [1, 2, 3, 4, 5]);
    assert_eq!(second.history[..2], first.history[..]);
    let header = bundle::read_header(&stage_dir.join("model.vggtune")).unwrap();
    assert_eq!(header.trained, "block5");
    assert_eq!(header.next_epoch, 5);

    // Another input size is refused with the setting named; so are other classes.
    let refused = TrainingRun::run_blocking(
        TrainJob {
            from_model: Some(head.clone()),
            ..job(
                data.path(),
                TrainConfig {
                    input_size: 64,
                    ..stage.clone()
                },
                &stage_dir,
            )
        },
        |_| {},
    );
    match refused {
        TrainEvent::Failed { reason } => assert!(
            reason.contains("the model was trained with input size 32 px"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let other = tempfile::tempdir().unwrap();
    colour_dataset(&other.path().join("x"), 4, 1);
    colour_dataset(other.path(), 4, 1);
    let refused = TrainingRun::run_blocking(
        TrainJob {
            from_model: Some(head),
            ..job(other.path(), stage, &stage_dir)
        },
        |_| {},
    );
    assert!(
        matches!(&refused, TrainEvent::Failed { reason } if reason.contains("the model's classes")),
        "{refused:?}"
    );
}

#[test]
fn check_data_finds_each_kind_of_planted_problem_in_real_photos() {
    // 60 real photos through the real ImageNet convolutions at 112 px, with problems planted:
    // a copy re-saved at JPEG quality 60 and a copy mirrored (duplicates), four flowers filed as
    // cats and dogs (no class), a darkened photo and a 24 px one (unusable).
    let (source, data) = real_photos(300..330);
    let dir = data.path();
    let ood = source.join("../../ood");
    let open = |name: &str| image::open(source.join(name)).unwrap().to_rgb8();
    let mut resaved = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut resaved, 60)
        .encode_image(&open("cat.301.jpg"))
        .unwrap();
    std::fs::write(dir.join("cat.5001.jpg"), resaved).unwrap();
    image::imageops::flip_horizontal(&open("dog.302.jpg"))
        .save(dir.join("dog.5002.png"))
        .unwrap();
    for (i, flower) in ["flower_10", "flower_12", "flower_13", "flower_14"]
        .iter()
        .enumerate()
    {
        let class = if i % 2 == 0 { "cat" } else { "dog" };
        std::fs::copy(
            ood.join(format!("{flower}.jpg")),
            dir.join(format!("{class}.{}.jpg", 5003 + i)),
        )
        .unwrap();
    }
    let mut dark = open("cat.303.jpg");
    for p in dark.pixels_mut() {
        p.0 = p.0.map(|v| v / 14);
    }
    dark.save(dir.join("cat.5007.png")).unwrap();
    image::imageops::resize(
        &open("dog.304.jpg"),
        24,
        24,
        image::imageops::FilterType::Triangle,
    )
    .save(dir.join("dog.5008.png"))
    .unwrap();

    // A second folder (another layout, a sub-folder, no labels) with a copy of a photo of the
    // first, resized to 80%, and two photos the first does not hold.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir(other.path().join("sub")).unwrap();
    let copied = open("dog.305.jpg");
    let (w, h) = (copied.width() * 4 / 5, copied.height() * 4 / 5);
    image::imageops::resize(&copied, w, h, image::imageops::FilterType::Triangle)
        .save(other.path().join("sub/holiday.png"))
        .unwrap();
    for name in ["cat.400.jpg", "dog.400.jpg"] {
        std::fs::copy(source.join(name), other.path().join(name)).unwrap();
    }

    let work = tempfile::tempdir().unwrap();
    let weights = onnx_fixture();
    let out = run_ok(&[
        "check",
        dir.to_str().unwrap(),
        "--against",
        other.path().to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--input-size",
        "112",
        "--epochs",
        "8",
        "--batch-size",
        "8",
        "--cache-dir",
        work.path().to_str().unwrap(),
        "--json",
    ]);
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let of_kind = |kind: &str| -> Vec<String> {
        check["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == kind)
            .map(|f| f["rel"].as_str().unwrap().to_owned())
            .collect()
    };
    eprintln!("{}: {:?}", check["summary"], check["thresholds"]);
    let duplicates = of_kind("duplicate");
    for copy in ["cat.5001.jpg", "dog.5002.png"] {
        assert!(
            duplicates.contains(&copy.to_owned()),
            "{copy}: {duplicates:?}"
        );
    }
    // The copy is listed, its twin (the first by name) stays.
    let twin = check["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rel"] == "cat.5001.jpg")
        .map(|f| f["twin"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(twin.ends_with("cat.301.jpg"), "{twin}");
    let unusable = of_kind("unusable");
    assert!(
        unusable.contains(&"cat.5007.png".to_owned()),
        "{unusable:?}"
    );
    assert!(
        unusable.contains(&"dog.5008.png".to_owned()),
        "{unusable:?}"
    );
    let no_class = of_kind("no-class");
    let flowers = (5003..5007)
        .filter(|i| no_class.iter().any(|r| r.contains(&i.to_string())))
        .count();
    assert!(flowers >= 3, "{flowers} of 4 flowers: {no_class:?}");
    // Nothing else of the 60 real photos is called a duplicate or unusable.
    assert_eq!(duplicates.len(), 2, "{duplicates:?}");
    assert_eq!(unusable.len(), 2, "{unusable:?}");
    assert!(no_class.len() <= 6, "{no_class:?}");
    // The copy in the second folder is a leak of the photo it copies; the others are not.
    assert_eq!(check["against"]["photos"], 3, "{}", check["against"]);
    assert_eq!(of_kind("leak"), ["sub/holiday.png"]);
    let leak = check["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "leak")
        .unwrap();
    assert!(
        leak["twin"].as_str().unwrap().ends_with("dog.305.jpg"),
        "{leak}"
    );
}

#[test]
fn sort_learns_from_an_oracle_on_real_photos_and_copies_exactly_what_it_reports() {
    // 60 real photos with their labels hidden from the queue (the oracle reads the names),
    // through the real ImageNet convolutions at 112 px.
    let (_, pool) = real_photos(400..430);
    let (_, held_out) = real_photos(450..470);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("sorted");
    let weights = onnx_fixture();
    let cache = work.path().join("cache");
    // `vggtune sort` of the pool with the oracle, the real weights at 112 px and one cache.
    let sort = |extra: &[&str]| {
        let pool = pool.path().to_str().unwrap();
        let mut args = vec!["sort", pool, "--classes", "cat,dog", "--oracle", pool];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--weights",
            weights.to_str().unwrap(),
            "--input-size",
            "112",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ]);
        run_ok(&args)
    };
    let run = sort(&[
        "--answers",
        "20",
        "--every",
        "5",
        "--score-on",
        held_out.path().to_str().unwrap(),
        "--threshold",
        "0.95",
        "--into",
        out.to_str().unwrap(),
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let curve: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["answers"].is_number()).collect();
    assert_eq!(curve.len(), 5, "{lines:?}");
    // It learns: from chance before the first answer to most of 40 photos it never saw.
    assert_eq!(curve[0]["accuracy"], 0.5, "{:?}", curve[0]);
    let last = curve.last().unwrap();
    assert!(last["accuracy"].as_f64().unwrap() >= 0.85, "{last}");
    assert!(
        last["estimate"]["answered_accuracy"].as_f64().unwrap() > 0.5,
        "{last}"
    );
    let at = lines.iter().find(|l| l["threshold"].is_number()).unwrap();
    let report = lines.iter().find(|l| l["per_class"].is_array()).unwrap();
    // What it says it copied is what is there: each photo whole, under its class, and the
    // oracle's answers and the sure guesses all right.
    let mut copied = 0;
    for class in ["cat", "dog"] {
        let dir = out.join(class);
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(name.starts_with(class), "{name} sorted as {class}");
            let source = pool.path().join(&name);
            assert_eq!(
                std::fs::read(&path).unwrap(),
                std::fs::read(&source).unwrap()
            );
            copied += 1;
        }
    }
    assert_eq!(at["sorted"], copied, "{at}");
    assert_eq!(at["wrong"], 0, "{at}");
    let reported: u64 = report["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_u64().unwrap())
        .sum();
    assert_eq!(reported, copied as u64);
    assert!(copied >= 20, "the 20 answered at least: {copied}");
    // Undone: the copies go, the pool stays.
    run_ok(&["sort", "--undo", out.to_str().unwrap()]);
    assert!(!out.join("cat").exists() && !out.join("dog").exists());
    assert_eq!(std::fs::read_dir(pool.path()).unwrap().count(), 60);
    // The queue's first questions (the pool's most typical photos) teach more than as many
    // photos in random order: after 10 answers its guesses of the other 50 photos are right
    // more often (the mean of 4 seeds, by a clear margin; the features are cached).
    let pool_accuracy = |order: &str, seed: u64| -> f64 {
        let seed = seed.to_string();
        let run = sort(&[
            "--answers",
            "10",
            "--every",
            "10",
            "--order",
            order,
            "--seed",
            &seed,
        ]);
        let last = String::from_utf8_lossy(&run.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .rfind(|l| l["answers"] == 10)
            .unwrap();
        // Random order may not have answers of both classes yet: then it guesses nothing.
        last["pool_accuracy"].as_f64().unwrap_or(0.0)
    };
    let mean = |order: &str| (1..=4).map(|seed| pool_accuracy(order, seed)).sum::<f64>() / 4.0;
    let (queue, random) = (mean("queue"), mean("random"));
    assert!(queue >= random + 0.05, "queue {queue} random {random}");
}
