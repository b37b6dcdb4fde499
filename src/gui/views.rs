//! What each view draws. These functions read the app and push [`UiCommand`]s; they change
//! nothing themselves except the widgets' own values (text fields, config controls).

use std::path::PathBuf;

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::{DeviceStatus, UiCommand, VggtuneApp, View, WeightsChoice};
use crate::data::{Convention, Layout};
use crate::infer;
use crate::limits;
use crate::model::HeadKind;
use crate::model::export::ExportFormat;
use crate::train::log::duration_text;
use crate::train::metrics::GalleryItem;
use crate::train::{OptimizerKind, Trainable};

type Commands = Vec<UiCommand>;

pub(crate) fn top_bar_ui(app: &VggtuneApp, ui: &mut egui::Ui, commands: &mut Commands) {
    ui.horizontal(|ui| {
        ui.heading(super::APP_NAME);
        ui.separator();
        for view in View::ALL {
            if ui
                .selectable_label(app.state.view == view, view.title())
                .clicked()
            {
                commands.push(UiCommand::Show(view));
            }
        }
        ui.separator();
        ui.menu_button("Model", |ui| {
            if ui
                .button("New")
                .on_hover_text("Forget the current model")
                .clicked()
            {
                commands.push(UiCommand::NewModel);
                ui.close();
            }
            if ui.button("Open model…").clicked() {
                commands.push(UiCommand::OpenModel);
                ui.close();
            }
            let has_model = app.model_path.is_some();
            if ui
                .add_enabled(has_model, egui::Button::new("Save model…"))
                .clicked()
            {
                commands.push(UiCommand::SaveModel);
                ui.close();
            }
            for format in ExportFormat::ALL {
                let label = match format {
                    ExportFormat::Onnx => "Export ONNX…",
                    ExportFormat::Safetensors => "Export safetensors…",
                };
                if ui
                    .add_enabled(has_model, egui::Button::new(label))
                    .on_hover_text(format.description())
                    .clicked()
                {
                    commands.push(UiCommand::Export(format));
                    ui.close();
                }
            }
        });
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .button("Quit")
                .on_hover_text("Close vggtune (Ctrl+Q)")
                .clicked()
            {
                commands.push(UiCommand::Quit);
            }
            if ui.button("About").clicked() {
                commands.push(UiCommand::ToggleAbout);
            }
        });
    });
}

pub(crate) fn status_ui(app: &VggtuneApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        match &app.device {
            DeviceStatus::Probing(_) => {
                ui.spinner();
                ui.label("Looking for a GPU…");
            }
            DeviceStatus::Ready(d) => {
                ui.label(format!("Device: {}", d.label()))
                    .on_hover_text(&d.reason);
            }
            DeviceStatus::Failed(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Device: {e}"));
            }
        }
        if app.is_training() {
            ui.separator();
            ui.spinner();
            ui.label("Training");
        }
        if app.export_job.is_some() {
            ui.separator();
            ui.spinner();
            ui.label("Exporting the model");
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.weak(format!("vggtune {}", crate::VERSION))
                .on_hover_text(format!("vggtune {}", crate::VERSION_LINE));
        });
    });
}

pub(crate) fn notices_ui(app: &mut VggtuneApp, ui: &mut egui::Ui) {
    let mut dismiss = None;
    for (i, notice) in app.notices.iter().enumerate() {
        ui.horizontal(|ui| {
            ui.colored_label(ui.visuals().warn_fg_color, notice);
            if ui.small_button("✕").on_hover_text("Dismiss").clicked() {
                dismiss = Some(i);
            }
        });
    }
    if let Some(i) = dismiss {
        app.notices.remove(i);
    }
}

pub(crate) fn about_ui(app: &VggtuneApp, ctx: &egui::Context, commands: &mut Commands) {
    egui::Window::new("About vggtune")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| {
            ui.heading("vggtune");
            ui.label("Fine-tune VGG16 on your own labelled photos.");
            ui.label(format!("Version {}", crate::VERSION_LINE));
            if let DeviceStatus::Ready(d) = &app.device {
                ui.label(format!("Device: {} — {}", d.label(), d.reason));
            }
            ui.label("Burn 0.22 (wgpu, flex) · eframe/egui 0.37 · MIT OR Apache-2.0");
            if ui.button("Close").clicked() {
                commands.push(UiCommand::ToggleAbout);
            }
        });
}

pub(crate) fn confirm_close_ui(ctx: &egui::Context, commands: &mut Commands) {
    egui::Window::new("Unsaved model")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| {
            ui.label("The model you trained has not been saved. Quit anyway?");
            ui.horizontal(|ui| {
                if ui.button("Save model…").clicked() {
                    commands.push(UiCommand::CancelQuit);
                    commands.push(UiCommand::SaveModel);
                }
                if ui.button("Discard and quit").clicked() {
                    commands.push(UiCommand::DiscardAndQuit);
                }
                if ui.button("Cancel").clicked() {
                    commands.push(UiCommand::CancelQuit);
                }
            });
        });
}

pub(crate) fn data_ui(app: &mut VggtuneApp, ui: &mut egui::Ui, commands: &mut Commands) {
    ui.heading("Photos");
    ui.horizontal(|ui| {
        ui.label("Folder:");
        let edit = ui.add(
            egui::TextEdit::singleline(&mut app.path_edit)
                .hint_text("a folder of photos: one sub-folder per class, or Kaggle's cat.1.jpg")
                .desired_width(ui.available_width() - 220.0),
        );
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Open").clicked() || enter {
            commands.push(UiCommand::OpenDataset(PathBuf::from(app.path_edit.trim())));
        }
        if ui
            .add_enabled(app.dialog.is_none(), egui::Button::new("Choose folder…"))
            .clicked()
        {
            commands.push(UiCommand::ChooseDataFolder);
        }
    });
    ui.weak("…or drop a folder anywhere on this window.");
    ui.add_space(6.0);
    if app.scan.is_some() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Scanning…");
        });
        return;
    }
    if let Some(e) = &app.scan_error {
        ui.colored_label(ui.visuals().error_fg_color, e);
        return;
    }
    let Some(dataset) = app.dataset.clone() else {
        ui.label("No folder open yet.");
        return;
    };
    let counts = dataset.counts();
    let total: usize = counts.iter().sum();
    ui.label(format!(
        "{} — {} ({} images, {} classes)",
        dataset.root.display(),
        match dataset.layout {
            Layout::FoldersAsLabels => "one folder per class",
            Layout::KaggleFlat => "Kaggle flat layout",
        },
        total,
        dataset.classes.len()
    ));
    if let Some(valid) = &dataset.explicit_valid {
        ui.label(format!(
            "Validation folder: {} images (used instead of a random split)",
            valid.len()
        ));
    }
    for problem in &dataset.problems {
        let color = if problem.blocks_training() {
            ui.visuals().error_fg_color
        } else {
            ui.visuals().warn_fg_color
        };
        ui.colored_label(color, problem.to_string());
    }
    egui::Grid::new("classes").striped(true).show(ui, |ui| {
        for (i, (class, count)) in dataset.classes.iter().zip(&counts).enumerate() {
            if ui.selectable_label(app.shown_class == i, class).clicked() {
                app.shown_class = i;
            }
            ui.label(count.to_string());
            let share = if total > 0 {
                *count as f32 / total as f32
            } else {
                0.0
            };
            ui.add(
                egui::ProgressBar::new(share)
                    .desired_width(240.0)
                    .text(format!("{:.1}%", 100.0 * share)),
            );
            ui.end_row();
        }
    });
    if !dataset.skipped.is_empty() {
        egui::CollapsingHeader::new(format!("Skipped files ({})", dataset.skipped.len()))
            .id_salt("skipped")
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .max_height(140.0)
                    .id_salt("skipped-list")
                    .show(ui, |ui| {
                        for s in &dataset.skipped {
                            ui.label(format!("{}: {}", s.path.display(), s.message));
                        }
                    });
            });
    }
    ui.separator();
    let class = app.shown_class.min(dataset.classes.len().saturating_sub(1));
    let images: Vec<&crate::data::ImageEntry> =
        dataset.images.iter().filter(|i| i.label == class).collect();
    if let Some(name) = dataset.classes.get(class) {
        ui.label(format!("{name}: {} photos", images.len()));
    }
    let size = 112.0;
    let per_row = ((ui.available_width() / (size + 6.0)).floor() as usize).max(1);
    let rows = images.len().div_ceil(per_row);
    egui::ScrollArea::vertical()
        .id_salt("thumbnail-grid")
        .auto_shrink([false, false])
        .show_rows(ui, size + 6.0, rows, |ui, range| {
            for row in range {
                ui.horizontal(|ui| {
                    for image in images.iter().skip(row * per_row).take(per_row) {
                        app.thumbnails
                            .show(ui, &image.path, size)
                            .on_hover_text(format!(
                                "{} ({}×{})",
                                image.rel, image.width, image.height
                            ));
                    }
                });
            }
        });
}

pub(crate) fn weights_ui(app: &mut VggtuneApp, ui: &mut egui::Ui, commands: &mut Commands) {
    ui.heading("Base weights");
    let cached = crate::model::download::cached_vgg16_path();
    ui.radio_value(
        &mut app.state.weights,
        WeightsChoice::ImageNet,
        "VGG16 trained on ImageNet (torchvision)",
    );
    ui.indent("imagenet", |ui| {
        if cached.is_file() {
            ui.label(format!("Downloaded: {}", cached.display()));
        } else if let Some(p) = &app.download_progress {
            let fraction = p.total.map_or(0.0, |t| p.bytes as f32 / t.max(1) as f32);
            let eta = p.total.map_or(f64::NAN, |t| {
                (t - p.bytes.min(t)) as f64 / p.bytes_per_sec.max(1.0)
            });
            ui.add(
                egui::ProgressBar::new(fraction)
                    .show_percentage()
                    .desired_width(360.0),
            );
            ui.label(format!(
                "{:.0} of {:.0} MB, {:.1} MB/s, {} left",
                p.bytes as f64 / 1e6,
                p.total.unwrap_or(0) as f64 / 1e6,
                p.bytes_per_sec / 1e6,
                duration_text(eta)
            ));
            if ui
                .button("Cancel")
                .on_hover_text("The part downloaded so far is kept; Download resumes it")
                .clicked()
            {
                commands.push(UiCommand::CancelDownload);
            }
        } else if app.download.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Connecting…");
            });
        } else if ui
            .button("Download VGG16 (528 MB)")
            .on_hover_text(crate::model::download::VGG16_URL)
            .clicked()
        {
            commands.push(UiCommand::DownloadWeights);
        }
    });
    let file_choice = match &app.state.weights {
        WeightsChoice::File(p) => Some(p.clone()),
        _ => app.weights_info.as_ref().map(|i| i.path.clone()),
    };
    if let Some(path) = file_choice {
        ui.radio_value(
            &mut app.state.weights,
            WeightsChoice::File(path.clone()),
            format!("File: {}", path.display()),
        );
    }
    ui.indent("file", |ui| {
        if app.weights_job.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Reading the weights file…");
            });
        } else if ui
            .add_enabled(
                app.dialog.is_none(),
                egui::Button::new("Import weights file…"),
            )
            .on_hover_text(".pth (PyTorch), .safetensors, or a VGG16 .onnx")
            .clicked()
        {
            commands.push(UiCommand::ImportWeights);
        }
        if let Some(info) = &app.weights_info {
            ui.label(format!(
                "{:?}, {} preprocessing, SHA-256 {}…",
                info.format,
                match info.convention {
                    Convention::Torchvision => "torchvision (RGB, mean/std)",
                    Convention::Caffe => "Caffe/Keras (BGR, minus mean)",
                },
                &info.sha256[..12]
            ));
            ui.label(if info.imagenet_classifier {
                "Includes ImageNet's 1000-way classifier."
            } else {
                "Convolution base only: the head starts fresh."
            });
            for note in &info.notes {
                ui.weak(note);
            }
        }
    });
    ui.radio_value(
        &mut app.state.weights,
        WeightsChoice::Random,
        "Random weights (experiments only)",
    );
    if let Some(e) = &app.weights_error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
}

pub(crate) fn train_ui(app: &mut VggtuneApp, ui: &mut egui::Ui, commands: &mut Commands) {
    let running = app.is_training();
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.set_width(300.0);
            ui.heading("Settings");
            ui.add_enabled_ui(!running, |ui| config_ui(app, ui));
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                let ready = app.dataset.as_ref().is_some_and(|d| d.trainable());
                if ui
                    .add_enabled(!running && ready, egui::Button::new("Start"))
                    .on_disabled_hover_text("Open a photo folder with at least two classes first")
                    .clicked()
                {
                    commands.push(UiCommand::StartTraining { resume: false });
                }
                if ui.add_enabled(running, egui::Button::new("Stop")).clicked() {
                    commands.push(UiCommand::StopTraining);
                }
                if ui
                    .add_enabled(app.can_resume() && ready, egui::Button::new("Resume"))
                    .on_hover_text("Continue the stopped run from its last checkpoint")
                    .clicked()
                {
                    commands.push(UiCommand::StartTraining { resume: true });
                }
            });
        });
        ui.separator();
        ui.vertical(|ui| run_ui(app, ui));
    });
}

fn config_ui(app: &mut VggtuneApp, ui: &mut egui::Ui) {
    let c = &mut app.state.train;
    egui::Grid::new("train-config").num_columns(2).show(ui, |ui| {
        let label = ui.label("What trains").on_hover_text("Frozen layers' outputs are cached, so later epochs cost little");
        egui::ComboBox::from_id_salt("trainable")
            .selected_text(format!("{:?}", c.trainable))
            .show_ui(ui, |ui| {
                for t in Trainable::ALL {
                    ui.selectable_value(&mut c.trainable, t, format!("{t:?}")).on_hover_text(t.describe());
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Head");
        egui::ComboBox::from_id_salt("head")
            .selected_text(match c.head {
                HeadKind::Dense256 => "light (256 units)",
                HeadKind::Torchvision => "torchvision (4096×2)",
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut c.head, HeadKind::Dense256, "light (256 units)")
                    .on_hover_text("The 2017 course's head: fast, 97%+ on Dogs vs. Cats");
                ui.selectable_value(&mut c.head, HeadKind::Torchvision, "torchvision (4096×2)")
                    .on_hover_text("Keeps ImageNet's dense layers when the weights have them");
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Epochs");
        ui.add(egui::DragValue::new(&mut c.epochs).range(limits::EPOCHS)).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Batch size");
        ui.add(egui::DragValue::new(&mut c.batch_size).range(limits::BATCH_SIZE)).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Learning rate");
        ui.add(
            egui::DragValue::new(&mut c.learning_rate)
                .range(limits::LEARNING_RATE)
                .speed(1e-5)
                .custom_formatter(|v, _| format!("{v:.1e}"))
                .custom_parser(|s| s.trim().parse().ok()),
        )
        .labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Optimizer");
        egui::ComboBox::from_id_salt("optimizer")
            .selected_text(format!("{:?}", c.optimizer))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut c.optimizer, OptimizerKind::Adam, "Adam");
                ui.selectable_value(&mut c.optimizer, OptimizerKind::Sgd, "SGD (momentum 0.9)");
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
        ui.label("Augmentation");
        ui.checkbox(&mut c.augment, "flip, rotate, shift, zoom")
            .on_hover_text("Varies the photos each epoch; turns the feature cache off, so every epoch costs a full pass");
        ui.end_row();
        let label = ui.label("Validation");
        let mut percent = c.split.valid_fraction * 100.0;
        let percents = limits::VALID_FRACTION.start() * 100.0..=limits::VALID_FRACTION.end() * 100.0;
        if ui.add(egui::Slider::new(&mut percent, percents).suffix("%")).labelled_by(label.id).changed() {
            c.split.valid_fraction = percent / 100.0;
        }
        ui.end_row();
        let label = ui.label("Seed");
        let mut seed = c.seed;
        if ui.add(egui::DragValue::new(&mut seed)).labelled_by(label.id).changed() {
            c.set_seed(seed);
        }
        ui.end_row();
        let label = ui.label("Input size");
        ui.add(egui::DragValue::new(&mut c.input_size).range(limits::INPUT_SIZE).suffix(" px")).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Device");
        egui::ComboBox::from_id_salt("device")
            .selected_text(app.state.device_choice.to_string())
            .show_ui(ui, |ui| {
                for d in crate::device::DeviceChoice::ALL {
                    ui.selectable_value(&mut app.state.device_choice, d, d.to_string());
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
    });
    if let DeviceStatus::Ready(d) = &app.device {
        ui.weak(d.label());
    }
}

fn run_ui(app: &VggtuneApp, ui: &mut egui::Ui) {
    let log = &app.log;
    for line in &log.info {
        ui.label(line);
    }
    if let (Some(p), Some(line)) = (log.progress, log.progress_line()) {
        ui.add(egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32).text(line));
        let epochs_done = log.epochs.len() as f32;
        ui.add(
            egui::ProgressBar::new(epochs_done / log.total_epochs.max(1) as f32).text(format!(
                "Run: {} of {} epochs",
                log.epochs.len(),
                log.total_epochs
            )),
        );
    }
    if let Some(outcome) = &log.outcome {
        ui.label(outcome);
    }
    if let Some(failed) = &log.failed {
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!("Training failed: {failed}"),
        );
    }
    if !log.skipped.is_empty() {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!(
                "{} photos could not be read and were skipped",
                log.skipped.len()
            ),
        );
    }
    let height = ((ui.available_height() - 20.0) / 2.0).max(120.0);
    let epoch_points = |f: fn(&crate::train::EpochMetrics) -> f64| -> Vec<[f64; 2]> {
        log.epochs.iter().map(|m| [m.epoch as f64, f(m)]).collect()
    };
    Plot::new("loss-chart")
        .legend(Legend::default())
        .height(height)
        .x_axis_label("epoch")
        .y_axis_label("loss")
        .include_y(0.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(
                Line::new("train (batch)", PlotPoints::from(log.batch_loss.clone())).width(1.0),
            );
            plot.line(
                Line::new(
                    "train (epoch)",
                    PlotPoints::from(epoch_points(|m| m.train_loss)),
                )
                .width(2.5),
            );
            plot.line(
                Line::new(
                    "validation",
                    PlotPoints::from(epoch_points(|m| m.valid_loss)),
                )
                .width(2.5),
            );
        });
    Plot::new("accuracy-chart")
        .legend(Legend::default())
        .height(height)
        .x_axis_label("epoch")
        .y_axis_label("accuracy")
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(
                Line::new(
                    "train (batch)",
                    PlotPoints::from(log.batch_accuracy.clone()),
                )
                .width(1.0),
            );
            plot.line(
                Line::new(
                    "train (epoch)",
                    PlotPoints::from(epoch_points(|m| m.train_accuracy)),
                )
                .width(2.5),
            );
            plot.line(
                Line::new(
                    "validation",
                    PlotPoints::from(epoch_points(|m| m.valid_accuracy)),
                )
                .width(2.5),
            );
        });
}

fn gallery_ui(app: &mut VggtuneApp, ui: &mut egui::Ui, items: &[(PathBuf, String)]) {
    let size = 96.0;
    let per_row = ((ui.available_width() / (size + 10.0)).floor() as usize).max(1);
    for row in items.chunks(per_row) {
        ui.horizontal(|ui| {
            for (path, caption) in row {
                ui.vertical(|ui| {
                    ui.set_width(size);
                    app.thumbnails
                        .show(ui, path, size)
                        .on_hover_text(path.display().to_string());
                    ui.small(caption);
                });
            }
        });
    }
}

pub(crate) fn evaluate_ui(app: &mut VggtuneApp, ui: &mut egui::Ui, commands: &mut Commands) {
    ui.horizontal(|ui| {
        ui.heading("Evaluation");
        let can = app.classifier.is_some() && app.dataset.is_some() && app.eval_job.is_none();
        if ui
            .add_enabled(can, egui::Button::new("Evaluate on the open folder"))
            .on_hover_text("Runs the current model on every photo of the open folder")
            .clicked()
        {
            commands.push(UiCommand::EvaluateDataset);
        }
        if app.eval_job.is_some() {
            ui.spinner();
        }
    });
    let Some(data) = app.evaluation.clone() else {
        ui.label(
            "Train a model (its validation photos are evaluated) or evaluate a model on a folder.",
        );
        return;
    };
    let e = &data.evaluation;
    ui.label(format!(
        "{} photos — accuracy {:.2}% — log loss {:.4}",
        e.count,
        100.0 * e.accuracy,
        e.log_loss
    ));
    egui::ScrollArea::vertical().id_salt("evaluation").auto_shrink([false, false]).show(ui, |ui| {
        ui.label("Confusion matrix (rows: true class, columns: predicted); click a cell to see its photos:");
        egui::Grid::new("confusion").show(ui, |ui| {
            ui.label("");
            for c in &e.classes {
                ui.strong(c);
            }
            ui.end_row();
            for (t, row) in e.confusion.iter().enumerate() {
                ui.strong(&e.classes[t]);
                let row_total: usize = row.iter().sum();
                for (p, &count) in row.iter().enumerate() {
                    let share = count as f32 / row_total.max(1) as f32;
                    let color = if t == p {
                        egui::Color32::from_rgb(30, (60.0 + 160.0 * share) as u8, 60)
                    } else {
                        egui::Color32::from_rgb((60.0 + 180.0 * share) as u8, 40, 40)
                    };
                    let selected = app.selected_cell == Some((t, p));
                    let button = egui::Button::new(egui::RichText::new(count.to_string()).color(egui::Color32::WHITE))
                        .fill(color)
                        .selected(selected)
                        .min_size(egui::vec2(64.0, 32.0));
                    if ui.add(button).on_hover_text(format!("true {} → predicted {}", e.classes[t], e.classes[p])).clicked() {
                        app.selected_cell = if selected { None } else { Some((t, p)) };
                    }
                }
                ui.end_row();
            }
        });
        if let Some((t, p)) = app.selected_cell {
            let cell = e.cell(&data.labels, &data.probs, t, p);
            ui.label(format!("{} photos of {} predicted as {}:", cell.len(), e.classes[t], e.classes[p]));
            let items: Vec<(PathBuf, String)> = cell
                .iter()
                .take(60)
                .map(|&i| (data.images[i].clone(), format!("{:.1}%", 100.0 * data.probs[i][p])))
                .collect();
            gallery_ui(app, ui, &items);
        }
        ui.separator();
        egui::Grid::new("per-class").striped(true).show(ui, |ui| {
            for h in ["class", "precision", "recall", "F1", "photos"] {
                ui.strong(h);
            }
            ui.end_row();
            for m in &e.per_class {
                ui.label(&m.class);
                ui.label(format!("{:.3}", m.precision));
                ui.label(format!("{:.3}", m.recall));
                ui.label(format!("{:.3}", m.f1));
                ui.label(m.support.to_string());
                ui.end_row();
            }
        });
        let caption = |item: &GalleryItem, classes: &[String]| {
            format!("{} {:.1}%", classes[item.predicted], 100.0 * item.confidence)
        };
        for (c, g) in e.galleries.iter().enumerate() {
            egui::CollapsingHeader::new(format!("Galleries: {}", e.classes[c]))
                .id_salt(("galleries", c))
                .default_open(c == 0)
                .show(ui, |ui| {
                    for (title, list) in [
                        ("Most confident mistakes", &g.confident_mistakes),
                        ("Most uncertain", &g.most_uncertain),
                        ("Most confident right", &g.confident_right),
                    ] {
                        ui.label(title);
                        let items: Vec<(PathBuf, String)> = list
                            .iter()
                            .map(|i| (data.images[i.index].clone(), caption(i, &e.classes)))
                            .collect();
                        if items.is_empty() {
                            ui.weak("none");
                        }
                        gallery_ui(app, ui, &items);
                    }
                });
        }
    });
}

pub(crate) fn predict_ui(app: &mut VggtuneApp, ui: &mut egui::Ui, commands: &mut Commands) {
    ui.horizontal(|ui| {
        ui.heading("Predict");
        if ui
            .add_enabled(app.files_dialog.is_none(), egui::Button::new("Add images…"))
            .clicked()
        {
            commands.push(UiCommand::AddImages);
        }
        if ui
            .add_enabled(app.paste_job.is_none(), egui::Button::new("Paste image"))
            .on_hover_text("Classify the image on the clipboard (Ctrl+V)")
            .clicked()
        {
            commands.push(UiCommand::PasteImage);
        }
        let any = !app.predictions.is_empty();
        if ui
            .add_enabled(any, egui::Button::new("Export CSV…"))
            .clicked()
        {
            commands.push(UiCommand::ExportCsv);
        }
        if ui
            .add_enabled(any, egui::Button::new("Kaggle submission…"))
            .on_hover_text(format!(
                "id,label with label = P(dog), clipped to [{}, {}]",
                infer::KAGGLE_CLIP,
                1.0 - infer::KAGGLE_CLIP
            ))
            .clicked()
        {
            commands.push(UiCommand::ExportSubmission);
        }
        if ui
            .add_enabled(any || !app.rejected.is_empty(), egui::Button::new("Clear"))
            .clicked()
        {
            commands.push(UiCommand::ClearPredictions);
        }
        if !app.predict_jobs.is_empty() {
            ui.spinner();
        }
    });
    match (&app.classifier, app.model_job.is_some()) {
        (_, true) => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Loading the model…");
            });
        }
        (Some(_), false) => {
            ui.label(format!(
                "Model: {} — drop image files or folders anywhere on the window to classify them.",
                app.model_classes.join(" / ")
            ));
        }
        (None, false) => {
            ui.label("Train or open a model (Model menu) first; then drop images here.");
        }
    }
    if !app.rejected.is_empty() {
        egui::CollapsingHeader::new(format!("Not classified ({})", app.rejected.len()))
            .id_salt("rejected")
            .default_open(true)
            .show(ui, |ui| {
                for r in &app.rejected {
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        format!("{}: {}", r.path.display(), r.reason),
                    );
                }
            });
    }
    let classes = app.model_classes.clone();
    let predictions = app.predictions.clone();
    egui::ScrollArea::vertical()
        .id_salt("predictions")
        .auto_shrink([false, false])
        .show_rows(ui, 104.0, predictions.len(), |ui, range| {
            for p in &predictions[range] {
                ui.horizontal(|ui| {
                    app.thumbnails.show(ui, &p.path, 96.0);
                    ui.vertical(|ui| {
                        ui.strong(format!(
                            "{} — {}",
                            classes.get(p.class).map_or("?", String::as_str),
                            p.path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        ));
                        for (c, v) in classes.iter().zip(&p.probabilities) {
                            ui.add(
                                egui::ProgressBar::new(*v)
                                    .desired_width(260.0)
                                    .text(format!("{c}: {:.1}%", 100.0 * v)),
                            );
                        }
                    });
                });
            }
        });
}
