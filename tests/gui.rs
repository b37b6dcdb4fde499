//! The real app in egui_kittest: views, opening a dataset by typed path and by a dropped folder,
//! a short training run with live events, dropping images to classify them, and the evaluation.

mod common;

use common::colour_dataset;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use vggtune::data::SplitConfig;
use vggtune::device::DeviceChoice;
use vggtune::gui::{AppOptions, VggtuneApp, View, WeightsChoice};
use vggtune::model::HeadKind;
use vggtune::train::{TrainConfig, Trainable};

struct Folders {
    work: tempfile::TempDir,
}

fn app() -> (Harness<'static, VggtuneApp>, Folders) {
    let work = tempfile::tempdir().unwrap();
    let harness = app_in(work.path(), None);
    (harness, Folders { work })
}

/// The app with its folders in `root` (a second call on the same root is a restart), its runs
/// stopped after `stop_after` epochs when given.
fn app_in(root: &Path, stop_after: Option<usize>) -> Harness<'static, VggtuneApp> {
    let options = AppOptions {
        device_choice: DeviceChoice::Cpu,
        work_dir: Some(root.join("work")),
        cache_root: Some(root.join("cache")),
        // No weights in this folder, whatever the machine has downloaded.
        weights_dir: Some(root.join("weights")),
        stop_after,
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1180.0, 780.0))
        .build_eframe(move |cc| VggtuneApp::with_options(cc, options));
    // The device probe runs on a worker with a spinner in the status bar; `Harness::run` would
    // give up on a window that keeps repainting, so start once it has answered.
    wait_for(&mut harness, 30, "the device probe", |a| {
        a.compute_device().is_some()
    });
    harness
}

/// Runs frames until `done` says so (workers answer on their own threads).
fn wait_for(
    harness: &mut Harness<'static, VggtuneApp>,
    secs: u64,
    what: &str,
    done: impl Fn(&VggtuneApp) -> bool,
) {
    let start = Instant::now();
    while !done(harness.state()) {
        let a = harness.state();
        // What the window was doing, for a timeout that cannot be reproduced at will.
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what} (training: {}, epochs: {}, model: {}, busy: {}, runs: \
             {:?}, title: {})",
            a.is_training(),
            a.epochs().len(),
            a.has_model(),
            a.is_busy(),
            a.runs(),
            a.title()
        );
        harness.run_steps(1);
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.run_steps(2);
}

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Clicks Start and waits until the run has begun (a click in the frame where the view's
/// layout still settles can miss; a person would click again).
fn click_start(harness: &mut Harness<'static, VggtuneApp>) {
    let before = harness.state().runs().len();
    for _ in 0..5 {
        harness.get_by_label("Start").click();
        harness.run_steps(2);
        let app = harness.state();
        if app.is_training() || app.run_settings().is_some() || app.runs().len() > before {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
        harness.run_steps(1);
    }
    panic!("Start did not start a run");
}

/// Replaces the text of the path prompt's field by `path`, as typed.
fn type_path(harness: &mut Harness<'static, VggtuneApp>, path: &Path) {
    harness
        .get_by_role(egui::accesskit::Role::TextInput)
        .focus();
    harness.run_steps(1);
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.run_steps(1);
    harness
        .get_by_role(egui::accesskit::Role::TextInput)
        .type_text(path.to_str().unwrap());
    harness.run_steps(2);
}

/// A click of the primary button at `pos`, in one frame, as a person's quick click is.
fn click_at(harness: &mut Harness<'static, VggtuneApp>, pos: egui::Pos2) {
    harness.event(egui::Event::PointerMoved(pos));
    for pressed in [true, false] {
        harness.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::NONE,
        });
    }
    harness.run_steps(1);
}

fn drop_files(harness: &mut Harness<'static, VggtuneApp>, paths: &[PathBuf]) {
    for p in paths {
        harness
            .input_mut()
            .dropped_files
            .push(Arc::new(Dropped(p.clone())));
    }
    harness.run_steps(1);
}

fn shared_train() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dogscats/train")
}

#[test]
fn the_app_opens_on_the_data_view_with_every_tab() {
    let (mut harness, _f) = app();
    harness.run();
    for view in View::ALL {
        // The tab (and, for Data, nothing else with that exact label).
        assert!(
            harness.query_all_by_label(view.title()).count() >= 1,
            "no {view:?} tab"
        );
    }
    assert_eq!(harness.state().view(), View::Data);
    harness.get_by_label("Quit");
    harness.get_by_label("Choose folder…");
}

#[test]
fn clicking_a_tab_switches_the_view() {
    let (mut harness, _f) = app();
    harness.get_by_label("Train").click();
    harness.run();
    assert_eq!(harness.state().view(), View::Train);
    harness.get_by_label("Start");
    harness.get_by_label("Predict").click();
    harness.run();
    assert_eq!(harness.state().view(), View::Predict);
}

#[test]
fn the_status_bar_shows_the_chosen_device() {
    let (mut harness, _f) = app();
    wait_for(&mut harness, 20, "the device", |a| {
        a.compute_device().is_some()
    });
    let device = harness.state().compute_device().unwrap();
    assert!(device.label().starts_with("CPU"));
    harness.get_by_label_contains("Device: CPU");
}

#[test]
fn a_typed_path_opens_the_kaggle_photos() {
    let (mut harness, _f) = app();
    harness
        .get_by_role(egui::accesskit::Role::TextInput)
        .focus();
    harness.run_steps(1);
    harness
        .get_by_role(egui::accesskit::Role::TextInput)
        .type_text(shared_train().to_str().unwrap());
    harness.run_steps(2);
    harness.get_by_label("Open").click();
    harness.run_steps(1);
    wait_for(&mut harness, 30, "the scan", |a| a.dataset().is_some());
    let dataset = harness.state().dataset().unwrap();
    assert_eq!(dataset.counts(), vec![1000, 999]);
    harness.get_by_label_contains("Kaggle flat layout");
    harness.get_by_label("cat");
    harness.get_by_label("dog");
}

#[test]
fn a_dropped_folder_opens_as_the_dataset_and_shows_skipped_files() {
    let (mut harness, f) = app();
    let data = f.work.path().join("photos");
    colour_dataset(&data, 3, 1);
    std::fs::write(data.join("red/notes.txt"), "not a photo").unwrap();
    drop_files(&mut harness, std::slice::from_ref(&data));
    wait_for(&mut harness, 30, "the scan", |a| a.dataset().is_some());
    assert_eq!(harness.state().dataset().unwrap().counts(), vec![3, 3]);
    harness.get_by_label_contains("Files left out (1)");
}

#[test]
fn train_then_drop_images_to_classify_and_inspect_the_confusion_matrix() {
    let (mut harness, f) = app();
    let data = f.work.path().join("photos");
    colour_dataset(&data, 16, 1);
    {
        let state = harness.state_mut().state_mut();
        state.weights = WeightsChoice::Random;
        state.train = TrainConfig {
            trainable: Trainable::All,
            epochs: 3,
            batch_size: 8,
            learning_rate: 1e-3,
            head: HeadKind::Dense256,
            input_size: 32,
            width_divisor: 16,
            split: SplitConfig {
                valid_fraction: 0.25,
                seed: 3,
            },
            seed: 3,
            ..TrainConfig::default()
        };
    }
    drop_files(&mut harness, std::slice::from_ref(&data));
    wait_for(&mut harness, 30, "the scan", |a| a.dataset().is_some());
    harness.get_by_label("Train").click();
    harness.run_steps(2);
    click_start(&mut harness);
    harness.run_steps(1);
    wait_for(&mut harness, 120, "the run and its model", |a| {
        !a.is_training() && a.has_model()
    });
    assert_eq!(
        harness.state().epochs().len(),
        3,
        "the chart has a point for every epoch"
    );
    assert!(
        harness.state().title().contains("unsaved"),
        "{}",
        harness.state().title()
    );
    harness.get_by_label_contains("Finished: validation accuracy");
    harness.get_by_label_contains("Runs since vggtune started (1)");
    // A second Start would replace the unsaved model: it asks first.
    harness.get_by_label("Start").click();
    harness.run_steps(3);
    harness.get_by_label_contains("has not been saved; a new run replaces it");
    harness.get_by_label("Cancel").click();
    harness.run_steps(2);
    assert!(!harness.state().is_training());

    // Fine-tune deeper: the model goes on as a new stage, its epochs after the first three.
    harness.get_by_label("Fine-tune deeper").click();
    harness.run_steps(2);
    wait_for(&mut harness, 120, "the deeper stage", |a| {
        !a.is_training() && a.epochs().len() == 3 + vggtune::train::config::DEEPER_STAGE_EPOCHS
    });
    // The run's end is taken in on a frame of its own, then the stage's model loads: wait for
    // both, so that nothing they do (a new model clears the predictions) lands in what follows.
    let start = Instant::now();
    while harness
        .query_by_label_contains("Runs since vggtune started (2)")
        .is_none()
        || harness.state().is_busy()
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the stage's model"
        );
        harness.run_steps(1);
        std::thread::sleep(Duration::from_millis(20));
    }

    // Drop a photo and a text file: the photo gets probabilities, the text file a reason.
    let note = f.work.path().join("readme.txt");
    std::fs::write(&note, "hello").unwrap();
    drop_files(&mut harness, &[data.join("red/0.png"), note.clone()]);
    wait_for(&mut harness, 30, "the prediction", |a| {
        !a.predictions().is_empty()
    });
    assert_eq!(harness.state().view(), View::Predict);
    let p = &harness.state().predictions()[0];
    assert_eq!(p.probabilities.len(), 2);
    assert!((p.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    let rejected = harness.state().rejected();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].path, note);
    harness.get_by_label_contains("Not classified (1)");
    // The same files dropped again are not listed twice.
    drop_files(&mut harness, &[data.join("red/0.png"), note.clone()]);
    wait_for(&mut harness, 30, "the second drop's work", |a| !a.is_busy());
    assert_eq!(harness.state().predictions().len(), 1);
    assert_eq!(harness.state().rejected().len(), 1);
    harness.get_by_label_contains("All: 1 photo");
    // Switching Average views says that the photos shown were classified the other way.
    harness.get_by_label("Average views").click();
    harness.run_steps(2);
    harness.get_by_label_contains("the results shown were made with Average views on");
    harness.get_by_label("Average views").click();
    harness.run_steps(2);
    // The none-of-these verdict: the photo is judged (the deeper stage's model recorded its
    // training photos' features through its own block 5), its total filters, and the switch
    // says when the photos shown were judged otherwise.
    assert!(harness.state().predictions()[0].typicality.is_some());
    harness.get_by_label_contains("none of these: ").click();
    harness.run_steps(2);
    harness.get_by_label("All: 1 photo").click();
    harness.run_steps(2);
    harness.get_by_label("Say \"none of these\"").click();
    harness.run_steps(2);
    harness.get_by_label_contains("the results shown were made with it on");
    harness.get_by_label("Say \"none of these\"").click();
    harness.run_steps(2);

    // Heatmaps: switched on, the photo on screen gets one map per class, computed on the
    // worker; a click opens the larger view.
    let photo = data.join("red/0.png");
    assert!(harness.state().heatmaps_of(&photo).is_none());
    harness.get_by_label("Heatmaps").click();
    harness.run_steps(2);
    wait_for(&mut harness, 30, "the heatmaps", |a| {
        a.heatmaps_of(&photo).is_some()
    });
    let maps = harness.state().heatmaps_of(&photo).unwrap();
    assert_eq!(maps.len(), 2);
    assert!(maps.iter().flatten().all(|v| (0.0..=1.0).contains(v)));
    harness.get_by_label_contains("strong evidence for the class");
    harness.get_by_label("photo 0.png").click();
    harness.run_steps(3);
    harness.get_by_label("Why this class?");
    harness.get_by_label_contains("The model says: blue");
    harness.get_by_label("Close").click();
    harness.run_steps(2);

    // The evaluation of the validation photos: click a confusion-matrix cell to see its photos.
    harness.get_by_label("Evaluate").click();
    harness.run_steps(2);
    let evaluation = harness.state().evaluation().unwrap().clone();
    assert_eq!(evaluation.count, 8);
    // Four validation photos a class: the view says that their recall says little.
    harness.get_by_label_contains("Only 4 photos of 'blue'");
    let count = evaluation.confusion[0][0];
    harness
        .get_all_by_role_and_label(egui::accesskit::Role::Button, &count.to_string())
        .next()
        .expect("a confusion cell")
        .click();
    harness.run_steps(2);
    harness.get_by_label_contains(&format!(
        "{} of blue predicted as blue",
        vggtune::words::photos(count)
    ));

    // Evaluate any folder: its own path field; "Blue " and "reds" are the model's blue and red.
    let holdout = f.work.path().join("holdout");
    colour_dataset(&holdout, 5, 9);
    std::fs::rename(holdout.join("blue"), holdout.join("Blue ")).unwrap();
    std::fs::rename(holdout.join("red"), holdout.join("reds")).unwrap();
    let field = harness.get_by_role(egui::accesskit::Role::TextInput);
    field.focus();
    field.type_text(holdout.to_str().unwrap());
    harness.run_steps(2);
    harness.get_by_label("Evaluate folder").click();
    harness.run_steps(1);
    wait_for(&mut harness, 60, "the folder's evaluation", |a| {
        a.evaluation().is_some_and(|e| e.count == 10)
    });
    harness.get_by_label_contains(&format!("Folder: {}", holdout.display()));
    harness.get_by_label_contains("'reds' is the model's 'red'");

    // Export ONNX without a native dialog: the path is typed into the prompt.
    harness.get_by_label("Predict").click();
    harness.run_steps(2);
    harness.get_by_label("Model").click();
    harness.run_steps(2);
    harness.get_by_label("Export ONNX…").click();
    harness.run_steps(3);
    harness.get_by_label_contains("Export ONNX to");
    let onnx = f.work.path().join("typed.onnx");
    type_path(&mut harness, &onnx);
    harness.get_by_label("Export").click();
    harness.run_steps(1);
    wait_for(&mut harness, 60, "the export", |_| onnx.is_file());
    wait_for(&mut harness, 10, "its notice", |a| !a.is_busy());
    harness.get_by_label_contains("Exported: wrote");

    // A model file dropped on the window opens it in the Predict view, after the question
    // the unsaved model in use asks.
    let (file, _, saved) = harness.state().model_in_use().unwrap();
    assert!(!saved);
    let copy = f.work.path().join("dropped.vggtune");
    std::fs::copy(&file, &copy).unwrap();
    harness.get_by_label("Data").click();
    harness.run_steps(2);
    drop_files(&mut harness, std::slice::from_ref(&copy));
    harness.run_steps(2);
    harness.get_by_label("Open another").click();
    harness.run_steps(1);
    wait_for(&mut harness, 30, "the dropped model", |a| {
        a.model_in_use().is_some_and(|m| m.0 == copy && m.2)
    });
    assert_eq!(harness.state().view(), View::Predict);
}

#[test]
fn a_weights_file_dropped_anywhere_is_imported() {
    let (mut harness, _f) = app();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch/vgg16_div16_zip.pth");
    drop_files(&mut harness, std::slice::from_ref(&fixture));
    assert_eq!(harness.state().view(), View::Weights);
    wait_for(&mut harness, 30, "the import", |a| {
        a.state_weights() == &WeightsChoice::File(fixture.clone())
    });
    harness.get_by_label_contains("as torchvision does (RGB, mean/std)");
}

#[derive(Default)]
struct MemoryStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }

    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }

    fn flush(&mut self) {}
}

#[test]
fn the_last_folder_config_and_view_are_saved_for_the_next_start() {
    use eframe::App as _;
    let (mut harness, f) = app();
    let data = f.work.path().join("photos");
    colour_dataset(&data, 2, 1);
    drop_files(&mut harness, std::slice::from_ref(&data));
    wait_for(&mut harness, 30, "the scan", |a| a.dataset().is_some());
    harness.state_mut().state_mut().train.epochs = 7;
    harness.get_by_label("Train").click();
    harness.run_steps(2);
    let mut storage = MemoryStorage::default();
    harness.state_mut().save(&mut storage);
    let saved: vggtune::gui::State =
        eframe::get_value(&storage, eframe::APP_KEY).expect("the state was saved");
    assert_eq!(saved.data_path, data.display().to_string());
    assert_eq!(saved.train.epochs, 7);
    assert_eq!(saved.view, View::Train);
}

#[test]
fn the_head_menu_offers_every_head_and_the_rate_follows_the_choice() {
    let (mut harness, _f) = app();
    harness.get_by_label("Train").click();
    harness.run_steps(2);
    assert_eq!(harness.state_mut().state_mut().train.head, HeadKind::Pooled);
    let choose = |harness: &mut Harness<'static, VggtuneApp>, head: HeadKind| {
        harness
            .get_by_role_and_label(egui::accesskit::Role::ComboBox, "Head")
            .click();
        harness.run_steps(2);
        // Every head is offered.
        for offered in [HeadKind::Torchvision, HeadKind::Dense256] {
            assert!(harness.query_all_by_label(offered.label()).count() >= 1);
        }
        harness.get_by_label(head.label()).click();
        harness.run_steps(2);
    };
    choose(&mut harness, HeadKind::Dense256);
    let train = &harness.state_mut().state_mut().train;
    assert_eq!(train.head, HeadKind::Dense256);
    assert_eq!(train.learning_rate, 1e-4, "the light head's own rate");
    // A rate the user chose stays when the head changes.
    harness.state_mut().state_mut().train.learning_rate = 3e-4;
    harness.run_steps(1);
    choose(&mut harness, HeadKind::Torchvision);
    let train = &harness.state_mut().state_mut().train;
    assert_eq!(train.head, HeadKind::Torchvision);
    assert_eq!(train.learning_rate, 3e-4);
}

#[test]
fn check_labels_lists_a_planted_mistake_and_moves_it_back_and_forth() {
    let (mut harness, f) = app();
    let data = f.work.path().join("photos");
    colour_dataset(&data, 20, 5);
    // A red photo filed under blue.
    let planted = data.join("blue/planted.png");
    std::fs::rename(data.join("red/0.png"), &planted).unwrap();
    {
        let state = harness.state_mut().state_mut();
        state.weights = WeightsChoice::Random;
        state.train = TrainConfig {
            epochs: 30,
            batch_size: 8,
            learning_rate: 1e-2,
            head: HeadKind::Dense256,
            input_size: 32,
            width_divisor: 16,
            seed: 5,
            ..TrainConfig::default()
        };
    }
    drop_files(&mut harness, std::slice::from_ref(&data));
    wait_for(&mut harness, 30, "the scan", |a| a.dataset().is_some());
    harness.get_by_label("Check data").click();
    harness.run_steps(2);
    harness
        .get_all_by_role_and_label(egui::accesskit::Role::Button, "Check data")
        .next()
        .expect("the button")
        .click();
    harness.run_steps(1);
    wait_for(&mut harness, 120, "the audit", |a| {
        !a.is_busy() && !a.label_suspects().is_empty()
    });
    let suspects = harness.state().label_suspects();
    assert_eq!(
        suspects[0],
        (planted.clone(), "red".to_owned()),
        "{suspects:?}"
    );
    harness.get_by_label_contains("Wrong label: ");
    let move_to = harness
        .get_all_by_label("Move to red")
        .next()
        .unwrap()
        .rect();
    click_at(&mut harness, move_to.center());
    // A double click: the second lands on Undo, where Move was, and does nothing.
    click_at(&mut harness, move_to.center());
    harness.run_steps(1);
    assert!(!planted.exists(), "a double click undid the move");
    assert!(data.join("red/planted.png").is_file());
    wait_for(&mut harness, 30, "the rescan", |a| {
        a.dataset().is_some_and(|d| d.counts() == [20, 20])
    });
    let settle = |harness: &mut Harness<'static, VggtuneApp>| {
        std::thread::sleep(Duration::from_millis(800));
        harness.run_steps(2);
    };
    settle(&mut harness);
    let undo = harness.get_by_label("Undo").rect();
    click_at(&mut harness, undo.center());
    // Undo double-clicked: Move to, back under the pointer, does nothing either.
    click_at(&mut harness, undo.center());
    harness.run_steps(1);
    assert!(planted.is_file());
    assert!(
        !data.join("red/planted.png").exists(),
        "the move was done again"
    );
    wait_for(&mut harness, 30, "the rescan", |a| {
        a.dataset().is_some_and(|d| d.counts() == [21, 19])
    });
    settle(&mut harness);
    // Exclude: the file stays, the scan leaves it out, with the reason.
    harness.get_all_by_label("Exclude").next().unwrap().click();
    harness.run_steps(2);
    wait_for(&mut harness, 30, "the rescan", |a| {
        a.dataset().is_some_and(|d| d.counts() == [20, 19])
    });
    assert!(planted.is_file());
    let skipped = &harness.state().dataset().unwrap().skipped;
    assert!(
        skipped
            .iter()
            .any(|s| s.path == planted && s.message.contains("vggtune-excluded.txt"))
    );
    // Undone, the folder is as it was: no list of vggtune's is left behind.
    settle(&mut harness);
    harness.get_by_label("Undo").click();
    harness.run_steps(2);
    wait_for(&mut harness, 30, "the rescan", |a| {
        a.dataset().is_some_and(|d| d.counts() == [21, 19])
    });
    assert!(!data.join("vggtune-excluded.txt").exists());
}

#[test]
fn check_data_lists_a_copy_and_excluding_it_keeps_the_other_copy_and_every_file() {
    let (mut harness, f) = app();
    let data = f.work.path().join("photos");
    colour_dataset(&data, 12, 7);
    // The same photo twice: the first by name stays, the copy is listed.
    let (original, copy) = (data.join("red/3.png"), data.join("red/3b.png"));
    std::fs::copy(&original, &copy).unwrap();
    {
        let state = harness.state_mut().state_mut();
        state.weights = WeightsChoice::Random;
        state.train = TrainConfig {
            epochs: 30,
            batch_size: 8,
            learning_rate: 1e-2,
            head: HeadKind::Dense256,
            input_size: 32,
            width_divisor: 16,
            seed: 5,
            ..TrainConfig::default()
        };
    }
    drop_files(&mut harness, std::slice::from_ref(&data));
    wait_for(&mut harness, 30, "the scan", |a| a.dataset().is_some());
    harness.get_by_label("Check data").click();
    harness.run_steps(2);
    harness
        .get_all_by_role_and_label(egui::accesskit::Role::Button, "Check data")
        .next()
        .expect("the button")
        .click();
    harness.run_steps(1);
    wait_for(&mut harness, 120, "the check", |a| {
        !a.is_busy() && !a.data_findings().is_empty()
    });
    let findings = harness.state().data_findings();
    let duplicates: Vec<&PathBuf> = findings
        .iter()
        .filter(|(kind, _)| *kind == vggtune::train::check::Kind::Duplicate)
        .map(|(_, path)| path)
        .collect();
    assert_eq!(duplicates, [&copy], "{findings:?}");
    harness.get_by_label_contains("Duplicate: 1");
    // The copy's card is the one under the Duplicate heading (a photo may be listed again
    // under another kind), scrolled into view; its Exclude is the one under its name.
    harness.get_by_label("Duplicate (1)").scroll_to_me();
    harness.run_steps(3);
    let heading = harness.get_by_label("Duplicate (1)").rect();
    let name = harness
        .get_all_by_label("red/3b.png")
        .map(|n| n.rect())
        .filter(|r| r.top() > heading.top())
        .min_by(|a, b| a.top().total_cmp(&b.top()))
        .expect("the copy's card");
    let exclude = harness
        .get_all_by_label("Exclude")
        .map(|n| n.rect())
        .filter(|r| r.top() > name.top() && (r.left() - name.left()).abs() < 40.0)
        .min_by(|a, b| a.top().total_cmp(&b.top()))
        .expect("the copy's Exclude");
    assert!(exclude.bottom() < 780.0, "{exclude:?} is below the window");
    click_at(&mut harness, exclude.center());
    harness.run_steps(1);
    wait_for(&mut harness, 30, "the rescan", |a| {
        a.dataset().is_some_and(|d| d.counts() == [12, 12])
    });
    // Both files are still there; the original is still a training photo, the copy is not.
    assert!(original.is_file() && copy.is_file());
    let dataset = harness.state().dataset().unwrap();
    assert!(dataset.images.iter().any(|i| i.path == original));
    assert!(!dataset.images.iter().any(|i| i.path == copy));
    let listed = std::fs::read_to_string(data.join("vggtune-excluded.txt")).unwrap();
    assert_eq!(
        listed
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["red/3b.png"]
    );
    // Undone: the copy is back, and no list of vggtune's is left behind.
    std::thread::sleep(Duration::from_millis(800));
    harness.run_steps(2);
    harness.get_by_label("Undo").click();
    harness.run_steps(2);
    wait_for(&mut harness, 30, "the rescan", |a| {
        a.dataset().is_some_and(|d| d.counts() == [12, 13])
    });
    assert!(original.is_file() && copy.is_file());
    assert!(!data.join("vggtune-excluded.txt").exists());
}

/// A tiny run that takes a second or more an epoch on 2 cores (so a Stop lands mid-stage).
fn slow_tiny_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        trainable: Trainable::Head,
        epochs,
        batch_size: 8,
        learning_rate: 1e-3,
        head: HeadKind::Dense256,
        input_size: 64,
        width_divisor: 8,
        split: SplitConfig {
            valid_fraction: 0.25,
            seed: 3,
        },
        seed: 3,
        ..TrainConfig::default()
    }
}

#[test]
fn a_stopped_deeper_stage_is_the_model_saved_and_resumes_as_itself_after_a_restart() {
    let f = Folders {
        work: tempfile::tempdir().unwrap(),
    };
    // Runs stop after epoch 3, as a Stop there would: the head's 2 epochs finish, the deeper
    // stage (epochs 3 and 4) stops after its first.
    let mut harness = app_in(f.work.path(), Some(3));
    let data = f.work.path().join("photos");
    colour_dataset(&data, 40, 2);
    {
        let state = harness.state_mut().state_mut();
        state.weights = WeightsChoice::Random;
        state.train = slow_tiny_config(2);
    }
    drop_files(&mut harness, std::slice::from_ref(&data));
    wait_for(&mut harness, 30, "the scan", |a| a.dataset().is_some());
    harness.get_by_label("Train").click();
    harness.run_steps(2);
    let started = Instant::now();
    click_start(&mut harness);
    harness.run_steps(1);
    wait_for(&mut harness, 120, "the head's run and its model", |a| {
        !a.is_training() && a.model_in_use().is_some_and(|m| m.1 == 2)
    });
    let wall = started.elapsed().as_secs_f64();
    // The runs table's time is the run's wall time (the feature pass and the model's save
    // included), not the sum of its epochs.
    let runs = harness.state().runs();
    assert_eq!(runs.len(), 1);
    let (epochs, secs, outcome) = runs[0];
    assert_eq!((epochs, outcome), (2, "finished"));
    let epoch_secs: f64 = harness.state().epochs().iter().map(|m| m.secs).sum();
    assert!(
        secs > epoch_secs && secs <= wall,
        "{secs} s against epochs {epoch_secs} s and wall {wall} s"
    );

    // Fine-tune deeper: the run says it is the stage, with the stage's own settings; it
    // stops after its first epoch.
    harness.get_by_label("Fine-tune deeper").click();
    harness.run_steps(1);
    wait_for(&mut harness, 60, "the stage's start", |a| {
        a.run_settings().is_some_and(|(_, start)| start == 2)
    });
    let (run, _) = harness.state().run_settings().expect("the run's settings");
    assert_eq!(run.trainable, Trainable::Block5);
    wait_for(&mut harness, 60, "the stop and the stage's model", |a| {
        !a.is_busy() && a.model_in_use().is_some_and(|m| !m.2 && m.1 == 3)
    });
    let shown = harness.state().epochs().len();
    assert_eq!(shown, 3);
    let (file, epochs, _) = harness.state().model_in_use().unwrap();
    assert_eq!(
        epochs, shown,
        "the model in use is the model the charts show"
    );
    assert!(harness.state().title().contains("unsaved"));
    assert!(harness.state().can_resume());
    harness.get_by_label_contains("Stopped after epoch 3 (1 epoch in this run)");

    // Model → Save: the file saved is the stage's model.
    let saved = f.work.path().join("deeper.vggtune");
    harness.get_by_label("Model").click();
    harness.run_steps(2);
    harness.get_by_label("Save model…").click();
    harness.run_steps(3);
    type_path(&mut harness, &saved);
    harness.get_by_label("Save").click();
    harness.run_steps(1);
    wait_for(&mut harness, 30, "the save", |a| {
        a.model_in_use().is_some_and(|m| m.2)
    });
    let header = vggtune::model::bundle::read_header(&saved).unwrap();
    assert_eq!(header.next_epoch, shown);
    assert_eq!(header.trained, "block5");
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&file).unwrap(),
        "a copy of the stage's model"
    );
    // A restart: a new window on the same folders, the settings on screen back to a head run.
    drop(harness);
    let mut harness = app_in(f.work.path(), None);
    {
        let state = harness.state_mut().state_mut();
        state.weights = WeightsChoice::Random;
        state.train = slow_tiny_config(7);
    }
    drop_files(&mut harness, std::slice::from_ref(&data));
    wait_for(&mut harness, 30, "the scan", |a| a.dataset().is_some());
    harness.get_by_label("Train").click();
    harness.run_steps(2);
    assert!(harness.state().can_resume());
    harness.get_by_label("Resume").click();
    harness.run_steps(1);
    wait_for(&mut harness, 120, "the resumed stage and its model", |a| {
        !a.is_training() && a.model_in_use().is_some_and(|m| m.1 == 4)
    });
    let (run, stage_start) = harness.state().run_settings().unwrap();
    assert_eq!(
        (run.trainable, run.epochs, stage_start),
        (Trainable::Block5, 4, 2),
        "the stage resumed as itself, not as the head run on screen"
    );
    let (file, _, _) = harness.state().model_in_use().unwrap();
    let header = vggtune::model::bundle::read_header(&file).unwrap();
    assert_eq!((header.trained.as_str(), header.next_epoch), ("block5", 4));
}

#[test]
fn the_train_view_scrolls_to_its_charts_and_tables_in_a_small_window() {
    let (mut harness, f) = app();
    harness.set_size(egui::vec2(800.0, 600.0));
    let data = f.work.path().join("photos");
    colour_dataset(&data, 8, 1);
    {
        let state = harness.state_mut().state_mut();
        state.weights = WeightsChoice::Random;
        state.train = TrainConfig {
            input_size: 32,
            width_divisor: 16,
            ..slow_tiny_config(2)
        };
    }
    drop_files(&mut harness, std::slice::from_ref(&data));
    wait_for(&mut harness, 30, "the scan", |a| a.dataset().is_some());
    harness.get_by_label("Train").click();
    harness.run_steps(2);
    click_start(&mut harness);
    harness.run_steps(1);
    wait_for(&mut harness, 120, "the run", |a| {
        !a.is_training() && a.has_model()
    });
    // Both tables open below the charts; a table opened is scrolled into view, so the view
    // has scrolled past the run's first lines, and scrolls back to them.
    harness
        .get_by_label_contains("Epochs (2)")
        .click_accesskit();
    harness.run_steps(10);
    harness
        .get_by_label_contains("Runs since vggtune started")
        .click_accesskit();
    harness.run_steps(10);
    let row = harness.get_by_label("finished");
    assert!(
        row.rect().bottom() <= 600.0 && row.rect().top() >= 0.0,
        "the table opened is in view: {:?}",
        row.rect()
    );
    let first = harness.get_by_label("classes: blue, red");
    assert!(first.rect().bottom() < 30.0, "scrolled: {:?}", first.rect());
    first.scroll_to_me();
    harness.run_steps(3);
    let first = harness.get_by_label("classes: blue, red");
    assert!(
        first.rect().top() >= 0.0 && first.rect().bottom() <= 600.0,
        "scrolled back: {:?}",
        first.rect()
    );
}

#[test]
fn sort_asks_with_keys_learns_and_sorts_the_rest_into_class_folders() {
    let (mut harness, f) = app();
    // A pool nobody labelled: 12 blue and 12 red photos, the colours hidden in one folder.
    let labelled = f.work.path().join("labelled");
    colour_dataset(&labelled, 12, 9);
    let pool = f.work.path().join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    for class in ["blue", "red"] {
        for i in 0..12 {
            let to = pool.join(format!("{}{i}.png", &class[..1]));
            std::fs::copy(labelled.join(format!("{class}/{i}.png")), to).unwrap();
        }
    }
    let colour = |p: &Path| -> &'static str {
        if p.file_name().unwrap().to_string_lossy().starts_with('b') {
            "blue"
        } else {
            "red"
        }
    };
    {
        let state = harness.state_mut().state_mut();
        state.weights = WeightsChoice::Random;
        state.train = TrainConfig {
            input_size: 32,
            width_divisor: 16,
            seed: 5,
            ..TrainConfig::default()
        };
    }
    harness.get_by_label("Sort").click();
    harness.run_steps(2);
    // The folder, dropped on the view; the classes, typed.
    drop_files(&mut harness, std::slice::from_ref(&pool));
    harness.run_steps(1);
    let fields = harness
        .get_all_by_role(egui::accesskit::Role::TextInput)
        .count();
    assert_eq!(fields, 2);
    harness
        .get_all_by_role(egui::accesskit::Role::TextInput)
        .nth(1)
        .unwrap()
        .focus();
    harness.run_steps(1);
    harness
        .get_all_by_role(egui::accesskit::Role::TextInput)
        .nth(1)
        .unwrap()
        .type_text("blue, red");
    harness.run_steps(2);
    harness.get_by_label("Start sorting").click();
    harness.run_steps(3);
    wait_for(&mut harness, 60, "the pool's features", |a| {
        a.sort_answers().is_some()
    });
    let key = |harness: &mut Harness<'static, VggtuneApp>, key: egui::Key| {
        harness.key_press(key);
        harness.run_steps(2);
    };
    let answered = |harness: &Harness<'static, VggtuneApp>| {
        let answers = harness.state().sort_answers().unwrap();
        answers.iter().filter(|(_, a)| a.is_some()).count()
    };
    // 1 and 2 answer the photo shown; Backspace takes the last answer back; Space skips.
    let (first, guess) = harness.state().sort_asks().unwrap();
    assert_eq!(guess, None, "no guess before any answer");
    key(&mut harness, egui::Key::Num1);
    assert_eq!(answered(&harness), 1);
    key(&mut harness, egui::Key::Backspace);
    assert_eq!(answered(&harness), 0);
    assert_eq!(harness.state().sort_asks().unwrap().0, first);
    key(&mut harness, egui::Key::Space);
    let skipped = harness.state().sort_answers().unwrap();
    assert!(
        skipped
            .iter()
            .any(|(p, a)| *p == first && *a == Some(vggtune::sort::Answer::Skipped))
    );
    // Twelve answers by colour; the head learns on a worker every few.
    for _ in 0..12 {
        let (photo, _) = harness.state().sort_asks().unwrap();
        let digit = if colour(&photo) == "blue" {
            egui::Key::Num1
        } else {
            egui::Key::Num2
        };
        key(&mut harness, digit);
    }
    wait_for(&mut harness, 30, "a guess", |a| {
        a.sort_asks().is_some_and(|(_, g)| g.is_some())
    });
    let (photo, guess) = harness.state().sort_asks().unwrap();
    // Enter takes the guess.
    key(&mut harness, egui::Key::Enter);
    let answers = harness.state().sort_answers().unwrap();
    let given = answers.iter().find(|(p, _)| *p == photo).unwrap().1;
    assert!(
        matches!(given, Some(vggtune::sort::Answer::Class(_))),
        "{guess:?}"
    );
    // The head learns again on a worker every few answers (the last ones, Enter's included,
    // may have started it), and the count changes when that lands: read it once the view is
    // idle (under load, a fit landing between the reading and the click made it 18 and 17).
    wait_for(&mut harness, 30, "the last fit", |a| !a.is_busy());
    // Sort the rest (at 99%, the default): the photos go into class folders beside the pool,
    // copied, and what the view said is what is there.
    let said = {
        use egui_kittest::kittest::NodeT as _;
        harness
            .get_by_label_contains("would be sorted")
            .accesskit_node()
            .label()
            .or_else(|| harness.get_by_label_contains("would be sorted").value())
            .unwrap_or_default()
    };
    harness.get_by_label("Sort the rest").scroll_to_me();
    harness.run_steps(3);
    harness.get_by_label("Sort the rest").click();
    harness.run_steps(1);
    let out = f.work.path().join("pool-sorted");
    wait_for(&mut harness, 30, "the sort", |a| !a.is_busy());
    harness.run_steps(2);
    let mut copied = 0;
    for class in ["blue", "red"] {
        for entry in std::fs::read_dir(out.join(class)).into_iter().flatten() {
            let path = entry.unwrap().path();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                std::fs::read(pool.join(path.file_name().unwrap())).unwrap()
            );
            copied += 1;
        }
    }
    assert!(
        said.starts_with(&format!("{copied} photos")),
        "{said} but {copied} copied"
    );
    assert_eq!(
        std::fs::read_dir(&pool).unwrap().count(),
        24,
        "copies: the pool stays"
    );
    // Undo takes the sort back.
    harness
        .get_by_label_contains("Undo the last sort")
        .scroll_to_me();
    harness.run_steps(3);
    harness.get_by_label_contains("Undo the last sort").click();
    harness.run_steps(2);
    wait_for(&mut harness, 30, "the undo", |a| !a.is_busy());
    harness.run_steps(2);
    assert!(!out.join("blue").exists() && !out.join("red").exists());
}

/// A changed setting asks eframe to save within a second, not its default 30 s (a setting
/// changed just before the process was killed was lost), and once saved the app waits again.
#[test]
fn a_changed_setting_is_saved_within_a_second() {
    let (mut harness, _f) = app();
    harness.run_steps(2);
    let interval = |h: &Harness<'static, VggtuneApp>| eframe::App::auto_save_interval(h.state());
    assert!(!harness.state().state_unsaved(), "nothing changed yet");
    assert_eq!(interval(&harness), Duration::from_secs(30));
    let train = &mut harness.state_mut().state_mut().train;
    let epochs = train.epochs;
    train.epochs = epochs + 7;
    harness.run_steps(1);
    assert!(harness.state().state_unsaved());
    assert_eq!(interval(&harness), vggtune::gui::STATE_SAVE_DELAY);
    let mut storage = MemoryStorage::default();
    eframe::App::save(harness.state_mut(), &mut storage);
    assert!(!harness.state().state_unsaved());
    assert_eq!(interval(&harness), Duration::from_secs(30));
    let saved: vggtune::gui::State =
        eframe::get_value(&storage, eframe::APP_KEY).expect("the state was saved");
    assert_eq!(saved.train.epochs, epochs + 7);
}
