//! Snapshot tests: each view rendered by wgpu (lavapipe in CI) in a stable state, compared with
//! the PNGs in tests/snapshots/. `UPDATE_SNAPSHOTS=1 cargo test --test snapshots` rewrites them.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;
use vggtune::device::DeviceChoice;
use vggtune::gui::{AppOptions, VggtuneApp, View};

#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn settle(
    harness: &mut Harness<'static, VggtuneApp>,
    what: &str,
    done: impl Fn(&VggtuneApp) -> bool,
) {
    let start = Instant::now();
    while !done(harness.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        harness.run_steps(1);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let thumbnails and layout settle.
    for _ in 0..40 {
        harness.run_steps(1);
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn every_view_looks_as_it_did() {
    let work = tempfile::tempdir().unwrap();
    // A fixed path: the Data view shows it.
    let photos = std::env::temp_dir().join("vggtune-snapshot-photos");
    let _ = std::fs::remove_dir_all(&photos);
    common::colour_dataset(&photos, 3, 1);
    let options = AppOptions {
        device_choice: DeviceChoice::Cpu,
        work_dir: Some(work.path().join("work")),
        cache_root: Some(work.path().join("cache")),
        // No weights in this folder, whatever the machine has downloaded.
        weights_dir: Some(work.path().join("weights")),
        stop_after: None,
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 640.0))
        .wgpu()
        .build_eframe(move |cc| VggtuneApp::with_options(cc, options));
    harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(photos.clone())));
    harness.run_steps(1);
    settle(&mut harness, "the device and the scan", |a| {
        a.compute_device().is_some() && a.dataset().is_some()
    });
    harness.snapshot("data_view");
    for view in [
        View::Sort,
        View::Weights,
        View::Train,
        View::Evaluate,
        View::Predict,
    ] {
        harness.state_mut().state_mut().view = view;
        settle(&mut harness, "the view", |_| true);
        harness.snapshot(format!("{}_view", view.title().to_lowercase()));
    }
    let _ = std::fs::remove_dir_all(&photos);
}
