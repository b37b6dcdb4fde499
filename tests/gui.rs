//! The real app in egui_kittest: it builds, shows its views, and switches between them.

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use vggtune::device::DeviceChoice;
use vggtune::gui::{VggtuneApp, View};

fn app() -> Harness<'static, VggtuneApp> {
    Harness::builder()
        .with_size(egui::vec2(1100.0, 720.0))
        .build_eframe(|cc| VggtuneApp::new(cc, DeviceChoice::Cpu))
}

#[test]
fn the_app_opens_on_the_data_view_with_every_tab() {
    let mut harness = app();
    harness.run();
    for view in View::ALL {
        // The tab; the Data view's heading says "Data" too.
        assert!(
            harness.query_all_by_label(view.title()).count() >= 1,
            "no {view:?} tab"
        );
    }
    assert_eq!(harness.state().view(), View::Data);
    harness.get_by_label("Quit");
}

#[test]
fn clicking_a_tab_switches_the_view() {
    let mut harness = app();
    harness.get_by_label("Train").click();
    harness.run();
    assert_eq!(harness.state().view(), View::Train);
    harness.get_by_label("Predict").click();
    harness.run();
    assert_eq!(harness.state().view(), View::Predict);
}

#[test]
fn the_status_bar_shows_the_chosen_device() {
    let mut harness = app();
    // The device is chosen on a worker thread; wait for it without blocking the UI.
    for _ in 0..200 {
        harness.run_steps(1);
        if harness.state().compute_device().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let device = harness
        .state()
        .compute_device()
        .expect("the device was chosen");
    assert!(device.label().starts_with("CPU"));
    harness.run_steps(2);
    harness.get_by_label_contains("Device: CPU");
}
