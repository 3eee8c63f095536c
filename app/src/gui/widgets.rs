//! Small additions to egui's `Ui` that the panels share.

use egui::{Color32, Ui, WidgetText};

/// Text that reports a failure.
pub const ERROR_RED: Color32 = Color32::from_rgb(0xe0, 0x55, 0x55);

/// What every button in the window is: a label, a tooltip that says what it does, a click.
pub trait UiExt {
    /// A button with its tooltip; true when it was clicked this frame.
    fn tipped_button(&mut self, label: impl Into<WidgetText>, tip: impl Into<WidgetText>) -> bool;

    /// The same, greyed out (and never clicked) unless `enabled`.
    fn tipped_button_if(
        &mut self,
        enabled: bool,
        label: impl Into<WidgetText>,
        tip: impl Into<WidgetText>,
    ) -> bool;
}

impl UiExt for Ui {
    fn tipped_button(&mut self, label: impl Into<WidgetText>, tip: impl Into<WidgetText>) -> bool {
        self.button(label).on_hover_text(tip).clicked()
    }

    fn tipped_button_if(
        &mut self,
        enabled: bool,
        label: impl Into<WidgetText>,
        tip: impl Into<WidgetText>,
    ) -> bool {
        self.add_enabled(enabled, egui::Button::new(label))
            .on_hover_text(tip)
            .clicked()
    }
}

/// A labelled drop-down choosing `value` among `options`, shown by `name`; the tooltip is
/// on the label and the box alike (what a screen reader reads with the box). True when the
/// choice changed.
pub fn choice<T: PartialEq, W: Into<WidgetText>>(
    ui: &mut Ui,
    id: &str,
    label: &str,
    tip: &str,
    value: &mut T,
    options: impl IntoIterator<Item = T>,
    name: impl Fn(&T) -> W,
) -> bool {
    let l = ui.label(label).on_hover_text(tip);
    let mut changed = false;
    egui::ComboBox::from_id_salt(id)
        .selected_text(name(value))
        .show_ui(ui, |ui| {
            for option in options {
                let text = name(&option);
                changed |= ui.selectable_value(value, option, text).changed();
            }
        })
        .response
        .labelled_by(l.id)
        .on_hover_text(tip);
    changed
}

/// The outcome of the last thing a panel did: its message, in red when it failed.
pub fn outcome(ui: &mut Ui, outcome: &Option<Result<String, String>>) {
    match outcome {
        Some(Ok(m)) => {
            ui.label(m);
        }
        Some(Err(e)) => {
            ui.colored_label(ERROR_RED, e);
        }
        None => {}
    }
}
