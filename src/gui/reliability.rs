//! The reliability diagram of an evaluation: in each confidence bin, the share of photos the
//! model got right against how sure it said it was, with the diagonal a calibrated model would
//! follow, and the expected calibration error in words.

use eframe::egui;
use egui_plot::{Bar, BarChart, Corner, Legend, Line, Plot, PlotPoints};

use crate::calibration::Reliability;

/// The diagram, collapsed under its header with the ECE; its confidence axis starts at
/// 1 / `classes`, the least a most likely class can have.
pub(super) fn reliability_ui(
    ui: &mut egui::Ui,
    r: &Reliability,
    temperature: Option<f32>,
    classes: usize,
) {
    let title = format!(
        "Calibration: expected calibration error {:.2}%",
        100.0 * r.ece
    );
    super::widgets::collapsing(
        ui,
        egui::CollapsingHeader::new(title).id_salt("reliability"),
        |ui| {
            ui.label(match temperature {
                Some(t) => format!(
                    "Confidences are calibrated (temperature {t:.2}, fitted on the run's \
                     validation photos): of the photos shown as 90% sure, about 90% should be \
                     right. Bars: the share right in each confidence bin; the line: where a \
                     perfectly calibrated model's bars would end."
                ),
                None => "This model has no fitted temperature: its confidences are the \
                         network's own. Bars: the share right in each confidence bin; the line: \
                         where a perfectly calibrated model's bars would end."
                    .into(),
            });
            let width = 1.0 / r.bins.len().max(1) as f64;
            let bars: Vec<Bar> = r
                .bins
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| {
                    let centre = f64::from(b.lower + b.upper) / 2.0;
                    Bar::new(centre, b.accuracy)
                        .width(width * 0.9)
                        .name(format!(
                            "{:.0}–{:.0}% sure: {} right of {} ({:.0}% sure on average)",
                            100.0 * b.lower,
                            100.0 * b.upper,
                            (b.accuracy * b.count as f64).round(),
                            b.count,
                            100.0 * b.confidence
                        ))
                })
                .collect();
            Plot::new("reliability-diagram")
                .legend(Legend::default().position(Corner::LeftTop))
                .height(220.0)
                .x_axis_label("confidence")
                .y_axis_label("share right")
                .default_x_bounds(1.0 / classes.max(1) as f64 - 0.02, 1.0)
                .default_y_bounds(0.0, 1.05)
                .allow_scroll(false)
                .allow_drag(false)
                .show(ui, |plot| {
                    plot.bar_chart(
                        BarChart::new("share right", bars)
                            .color(egui::Color32::from_rgb(80, 150, 230)),
                    );
                    plot.line(
                        Line::new("calibrated", PlotPoints::from(vec![[0.0, 0.0], [1.0, 1.0]]))
                            .color(egui::Color32::from_rgb(240, 150, 50)),
                    );
                });
        },
    );
}
