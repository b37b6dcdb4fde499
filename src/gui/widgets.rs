//! Small pieces every view draws the same way.

use eframe::egui;

/// `header` shown with `add` as its body, with a ring around the header while it has the
/// keyboard focus (egui draws none for a collapsing header, so Tab seemed to go nowhere).
pub(super) fn collapsing<R>(
    ui: &mut egui::Ui,
    header: egui::CollapsingHeader,
    add: impl FnOnce(&mut egui::Ui) -> R,
) -> egui::CollapsingResponse<R> {
    let shown = header.show(ui, add);
    let response = &shown.header_response;
    if response.has_focus() {
        ui.painter().rect_stroke(
            response.rect.expand(2.0),
            3.0,
            ui.visuals().selection.stroke,
            egui::StrokeKind::Outside,
        );
    }
    shown
}
