//! The Train view's right-hand side: what the run said, its progress with the time left in
//! the whole run, the loss and accuracy charts fitted to what matters, and the epochs table.

use std::time::Instant;

use eframe::egui;
use egui_plot::{Corner, Legend, Line, Plot, PlotPoints};

use crate::train::log::duration_text;
use crate::train::{EpochMetrics, TrainLog};

/// The lowest a chart is drawn, however small the window (the view scrolls).
const MIN_CHART_HEIGHT: f32 = 180.0;

/// What the run said, its progress and time left, then the charts (each at least
/// [`MIN_CHART_HEIGHT`], together the height of a view of `view_height` less the lines above
/// them), then the epochs table.
pub(super) fn run_ui(log: &TrainLog, ui: &mut egui::Ui, (running, view_height): (bool, f32)) {
    let top = ui.cursor().top();
    status_ui(log, ui, running);
    if log.epochs.is_empty() && log.batch_loss.is_empty() {
        ui.add_space(40.0);
        ui.weak(if log.info.is_empty() {
            "The loss and accuracy curves appear here once a run starts."
        } else {
            "The curves start with the first training batch, once the photos' features are ready."
        });
        return;
    }
    let above = ui.cursor().top() - top;
    charts_ui(
        log,
        ui,
        ((view_height - above - 60.0) / 2.0).max(MIN_CHART_HEIGHT),
    );
    epochs_table_ui(ui, log);
}

/// What the run said: its first lines, its progress with the time left, how it ended.
fn status_ui(log: &TrainLog, ui: &mut egui::Ui, running: bool) {
    if running && log.config.is_none() && log.failed.is_none() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Starting: reading the weights and choosing the device…");
        });
    }
    for line in &log.info {
        ui.label(line);
    }
    if let (Some(p), Some(line)) = (log.progress, log.progress_line()) {
        let left = log.time_left(Instant::now()).unwrap_or_default();
        let phase = egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32);
        if p.phase == crate::train::Phase::Features {
            // The feature pass is most of a first run: its bar is the run's.
            ui.add(phase.text(format!("{line} — {left}")));
        } else {
            ui.add(phase.text(line));
            let (done, total) = (
                log.epochs.len().saturating_sub(log.stage_start),
                log.total_epochs.saturating_sub(log.stage_start),
            );
            let what = if log.stage_start > 0 { "Stage" } else { "Run" };
            ui.add(
                egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                    .text(format!("{what}: {done} of {total} epochs done — {left}")),
            );
        }
    }
    if let Some(outcome) = &log.outcome {
        ui.label(outcome);
    }
    if let Some(secs) = log.features_secs {
        ui.weak(format!(
            "Feature pass: {} (the frozen layers' output of every photo, cached for later runs); \
             the epochs' times are below.",
            crate::train::log::duration_text(secs)
        ));
    }
    if let Some(warning) = &log.warning {
        ui.colored_label(ui.visuals().warn_fg_color, format!("Note: {warning}"));
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
                "{} could not be read and {} skipped",
                crate::words::photos(log.skipped.len()),
                if log.skipped.len() == 1 {
                    "was"
                } else {
                    "were"
                }
            ),
        );
    }
}

/// The loss and accuracy charts, each `height` high.
fn charts_ui(log: &TrainLog, ui: &mut egui::Ui, height: f32) {
    let epoch_points = |f: fn(&EpochMetrics) -> f64| -> Vec<[f64; 2]> {
        log.epochs.iter().map(|m| [m.epoch as f64, f(m)]).collect()
    };
    let curves = [
        (
            "loss",
            &log.batch_loss[..],
            epoch_points(|m| m.train_loss),
            epoch_points(|m| m.valid_loss),
        ),
        (
            "accuracy",
            &log.batch_accuracy[..],
            epoch_points(|m| m.train_accuracy),
            epoch_points(|m| m.valid_accuracy),
        ),
    ];
    for (name, batches, train, valid) in curves {
        let (low, high) = fitted_range(name, batches, &train, &valid);
        let corner = if name == "loss" {
            Corner::RightTop
        } else {
            Corner::RightBottom
        };
        // The plot keeps its bounds from frame to frame: it is reset to the fitted range whenever
        // that range moves (every batch while training), and left to the user's zoom otherwise.
        let fitted_id = egui::Id::unique((name, "fitted-range"));
        let moved = ui.data_mut(|d| {
            let moved = d.get_temp::<(f64, f64)>(fitted_id) != Some((low, high));
            d.insert_temp(fitted_id, (low, high));
            moved
        });
        let mut chart = Plot::new(format!("{name}-chart"))
            .legend(Legend::default().position(corner))
            .height(height)
            .x_axis_label("epoch")
            .y_axis_label(name)
            .default_y_bounds(low, high)
            .x_grid_spacer(epoch_marks())
            .allow_scroll(false);
        if moved {
            chart = chart.reset();
        }
        chart.show(ui, |plot| {
            let batch = PlotPoints::from(batches.to_vec());
            // One colour a series, whichever of them has points yet.
            plot.line(
                Line::new("train (batch)", batch)
                    .width(1.0)
                    .color(egui::Color32::from_rgb(150, 150, 150)),
            );
            plot.line(
                Line::new("train (epoch)", PlotPoints::from(train))
                    .width(2.5)
                    .color(egui::Color32::from_rgb(80, 150, 230)),
            );
            plot.line(
                Line::new("validation", PlotPoints::from(valid))
                    .width(2.5)
                    .color(egui::Color32::from_rgb(240, 150, 50)),
            );
        });
    }
}

/// The y range that shows what matters: every epoch's value and the batches after the first
/// epoch (the first batches' loss of 2 or accuracy of 50% would flatten the rest), with a margin;
/// accuracy up to 100%, loss down to 0 when it comes close.
pub(super) fn fitted_range(
    name: &str,
    batches: &[[f64; 2]],
    train: &[[f64; 2]],
    valid: &[[f64; 2]],
) -> (f64, f64) {
    let later = batches.iter().filter(|p| p[0] > 1.0);
    let values: Vec<f64> = train
        .iter()
        .chain(valid)
        .chain(later)
        .map(|p| p[1])
        .filter(|v| v.is_finite())
        .collect();
    let values = if values.is_empty() {
        batches
            .iter()
            .map(|p| p[1])
            .filter(|v| v.is_finite())
            .collect()
    } else {
        values
    };
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if !min.is_finite() {
        return (0.0, 1.0);
    }
    let margin = ((max - min) * 0.1).max(1e-3);
    if name == "accuracy" {
        // Headroom above 100%, so a validation curve at 1.0 does not hide in the frame.
        ((min - margin).max(0.0), 1.0 + margin.clamp(0.01, 0.03))
    } else {
        let low = if min < (max - min) { 0.0 } else { min - margin };
        (low, max + margin)
    }
}

/// Every finished epoch in a row (collapsed), with the numbers the curves draw.
fn epochs_table_ui(ui: &mut egui::Ui, log: &TrainLog) {
    if log.epochs.is_empty() {
        return;
    }
    super::widgets::collapsing(
        ui,
        egui::CollapsingHeader::new(format!("Epochs ({})", log.epochs.len()))
            .id_salt("epochs-table"),
        |ui| {
            egui::Grid::new("epochs").striped(true).show(ui, |ui| {
                for h in [
                    "epoch",
                    "train loss",
                    "train acc",
                    "valid loss",
                    "valid acc",
                    "time",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for m in &log.epochs {
                    ui.label(m.epoch.to_string());
                    ui.label(format!("{:.4}", m.train_loss));
                    ui.label(format!("{:.2}%", 100.0 * m.train_accuracy));
                    ui.label(format!("{:.4}", m.valid_loss));
                    ui.label(format!("{:.2}%", 100.0 * m.valid_accuracy));
                    ui.label(duration_text(m.secs));
                    ui.end_row();
                }
            });
        },
    );
}

/// Marks on the epoch axis at whole epochs, about ten of them whatever the chart's width (the
/// default spacer dropped every label but one at 1024 px).
fn epoch_marks() -> impl Fn(egui_plot::GridInput) -> Vec<egui_plot::GridMark> {
    egui_plot::uniform_grid_spacer(|input| {
        let span = (input.bounds.1 - input.bounds.0).max(1.0);
        let step = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
            .into_iter()
            .find(|s| span / s <= 12.0)
            .unwrap_or(1000.0);
        [step, step * 5.0, step * 10.0]
    })
}
