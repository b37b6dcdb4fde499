//! Small pieces every view draws the same way.

use eframe::egui;

/// `header` shown with `add` as its body, with a ring around the header while it has the
/// keyboard focus (egui draws none for a collapsing header, so Tab seemed to go nowhere); a
/// header that gains the focus is scrolled into view, and so is a body the user just opened.
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
    if response.gained_focus() {
        response.scroll_to_me(None);
    }
    // Opened by a click: once it has fully opened, its end is brought into view.
    let opening = response.id.with("opening");
    if response.clicked() {
        ui.data_mut(|d| d.insert_temp(opening, true));
    }
    if ui.data(|d| d.get_temp::<bool>(opening).unwrap_or(false)) {
        match &shown.body_response {
            Some(body) if shown.openness >= 1.0 => {
                body.scroll_to_me(Some(egui::Align::Max));
                ui.data_mut(|d| d.remove::<bool>(opening));
            }
            Some(_) => ui.ctx().request_repaint(),
            // Closed instead.
            None if !response.clicked() => ui.data_mut(|d| d.remove::<bool>(opening)),
            None => ui.ctx().request_repaint(),
        }
    }
    shown
}

/// A class's colour, the same in every view (the Predict view's badges, the Sort view's map).
pub(super) fn class_colour(class: usize) -> egui::Color32 {
    const COLOURS: [egui::Color32; 6] = [
        egui::Color32::from_rgb(40, 110, 170),
        egui::Color32::from_rgb(170, 90, 30),
        egui::Color32::from_rgb(40, 130, 70),
        egui::Color32::from_rgb(130, 60, 150),
        egui::Color32::from_rgb(150, 50, 60),
        egui::Color32::from_rgb(90, 90, 90),
    ];
    COLOURS[class % COLOURS.len()]
}
