//! Drawing the window: menu, side panel (model, stock, tools, operations, export), status
//! bar, statistics panel, preferences. Thin: every action calls a [`MillpondApp`] method.

use super::app::MillpondApp;
use super::detached::DetachedAction;
use super::document::Command;
use super::model::{Axis3, Placement, Units};
use super::operations::{
    LineAxis, OperationFeeds, RasterParams, RoughingParams, Stepover, StockMode, Strategy,
    ToolShape, WaterlineParams, usual_shape,
};
use super::preferences::PoolState;
use super::stats_panel::{format_eta, format_rate};
use crate::common::format_duration;
use crate::gui::widgets::{ERROR_RED, UiExt as _, choice, outcome};
use egui::{Color32, DragValue, Key, KeyboardShortcut, Modifiers, Response, RichText, Ui};
use millpond_core::gcode::ProgramUnits;
use millpond_core::params::{self, Setting};
use millpond_core::raster::Direction;
use millpond_core::rough::ClearPattern;
use millpond_core::tools::ImportChoice;
use millpond_core::waterline::Milling;
use millpond_net::Secret;
use std::time::Duration;
use zeroize::Zeroize;

const QUIT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Q);
const OPEN: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
const SAVE: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::S);
const SAVE_AS: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::S);
const UNDO: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Z);
const REDO: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::Z);
const REDO_Y: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Y);
/// The Preferences checkbox turning LAN discovery on (`Preferences::discover`).
const DISCOVER_LABEL: &str = "Discover members on the local network";
const DISCOVER_TIP: &str = "Opt-in. While server mode is on, this computer broadcasts a small beacon on \
     its local networks every few seconds and connects to the members it hears, as if added \
     below. Only members with the same secret recognise a beacon: to anyone else it is random \
     bytes, and the secret never crosses the network. A generated secret cannot be guessed \
     from the beacons; a short one typed by hand could be, so a secret under 20 characters is \
     refused for discovery. Off: nothing is broadcast";

/// A remote server's state (coloured) and its last error: two cells of the remote servers'
/// grid, for one added by hand or found by LAN discovery alike.
fn remote_state_cells(ui: &mut Ui, s: &millpond_net::RemoteStatus) {
    let c = match s.state {
        millpond_net::RemoteState::Connected => Color32::LIGHT_GREEN,
        millpond_net::RemoteState::Connecting => ui.visuals().text_color(),
        _ => ERROR_RED,
    };
    ui.colored_label(c, s.state.as_str());
    ui.label(s.last_error.clone().unwrap_or_default());
}

/// A labelled number in a two-column grid; the label names the field for screen readers and
/// tests, the tooltip says what it does and in which unit (the field's suffix).
fn num(
    ui: &mut Ui,
    label: &str,
    tip: &str,
    value: &mut f64,
    suffix: &str,
    range: std::ops::RangeInclusive<f64>,
    speed: f64,
) -> bool {
    let tip = match suffix.trim() {
        "" => tip.to_string(),
        unit => format!("{tip} ({unit})"),
    };
    let tip = tip.as_str();
    let l = ui.label(label).on_hover_text(tip);
    let r = ui
        .add(
            DragValue::new(value)
                .range(range)
                .speed(speed)
                .suffix(suffix)
                .max_decimals(4),
        )
        .labelled_by(l.id)
        .on_hover_text(tip);
    ui.end_row();
    r.changed()
}

/// An operation setting's number field: its label, range, unit and tooltip from the setting
/// table ([`params`]), which the command line and job files check against too. `speed` is how
/// fast a drag changes it.
fn setting_drag(ui: &mut Ui, setting: &Setting, value: &mut f64, speed: f64) -> bool {
    number_row(
        ui,
        setting.label,
        &setting.tooltip(),
        value,
        setting.number_range(),
        speed,
    )
}

/// A labelled number row in a `range`, with `tip` on both the label and the field.
fn number_row(
    ui: &mut Ui,
    label: &str,
    tip: &str,
    value: &mut f64,
    range: params::Range,
    speed: f64,
) -> bool {
    let l = ui.label(label).on_hover_text(tip);
    let r = ui
        .add(
            DragValue::new(value)
                .range(range.inclusive())
                .speed(speed)
                .suffix(range.unit.suffix())
                .max_decimals(4),
        )
        .labelled_by(l.id)
        .on_hover_text(tip);
    ui.end_row();
    r.changed()
}

fn text_row(ui: &mut Ui, label: &str, tip: &str, value: &mut String) -> Response {
    let l = ui.label(label).on_hover_text(tip);
    let r = ui
        .text_edit_singleline(value)
        .labelled_by(l.id)
        .on_hover_text(tip);
    ui.end_row();
    r
}

fn info_row(ui: &mut Ui, label: &str, value: String) {
    ui.label(label);
    ui.label(value);
    ui.end_row();
}

impl eframe::App for MillpondApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.poll();
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        if ui.input_mut(|i| i.consume_shortcut(&QUIT)) {
            self.quit();
        }
        if ui.input_mut(|i| i.consume_shortcut(&OPEN)) {
            self.open_dialog();
        }
        // The longer shortcuts first: Ctrl-Shift-S is not Ctrl-S.
        if ui.input_mut(|i| i.consume_shortcut(&SAVE_AS)) {
            self.save_job_dialog();
        }
        if ui.input_mut(|i| i.consume_shortcut(&SAVE)) {
            self.save_job();
        }
        // A text field being typed in keeps Ctrl-Z for its own text.
        if !ui.ctx().egui_wants_keyboard_input() {
            if ui.input_mut(|i| i.consume_shortcut(&REDO) || i.consume_shortcut(&REDO_Y)) {
                self.redo();
            }
            if ui.input_mut(|i| i.consume_shortcut(&UNDO)) {
                self.undo();
            }
        }
        // A drag or a click ends: the next edit is an undo step of its own.
        if ui.input(|i| i.pointer.any_released()) {
            self.close_edit();
        }
        let ctx = ui.ctx().clone();
        self.show_dialogs(&ctx);
        let dropped = ui.input(|i| i.raw.dropped_files.clone());
        if let Some(file) = dropped.into_iter().next() {
            self.open_dropped(file);
        }
        let hovering = ui.input(|i| !i.raw.hovered_files.is_empty());

        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui));
        if self.recovery_offered() {
            egui::Panel::top("recovery").show(ui, |ui| self.recovery_ui(ui));
        }
        if !self.banners.is_empty() {
            egui::Panel::top("banners").show(ui, |ui| self.banners_ui(ui));
        }
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        if self.stats.visible {
            egui::Panel::bottom("statistics")
                .resizable(true)
                .default_size(300.0)
                .show(ui, |ui| self.stats.ui(ui, &self.compute));
        }
        egui::Panel::left("side")
            .resizable(true)
            .default_size(370.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("side-scroll")
                    .show(ui, |ui| self.side_panel(ui));
            });
        egui::CentralPanel::no_frame().show(ui, |ui| {
            self.view.show(ui);
            if hovering {
                ui.painter().text(
                    ui.max_rect().center(),
                    egui::Align2::CENTER_CENTER,
                    "Drop an STL file to open it",
                    egui::FontId::proportional(24.0),
                    Color32::WHITE,
                );
            }
        });
        if self.pending_import.is_some() {
            egui::Window::new("Import tools")
                .collapsible(false)
                .default_width(480.0)
                .show(ui.ctx(), |ui| self.import_ui(ui));
        }
        if self.detached.open {
            let mut open = true;
            let mut actions = Vec::new();
            egui::Window::new("Detached jobs")
                .open(&mut open)
                .default_width(760.0)
                .show(ui.ctx(), |ui| {
                    actions = super::detached_panel::show(
                        ui,
                        &self.detached,
                        &self.prefs.remote_servers,
                        self.secret.is_some(),
                    );
                });
            if !open {
                actions.push(DetachedAction::Show(false));
            }
            for a in actions {
                self.detached_action(a);
            }
        }
        if self.prefs_ui.open {
            let mut open = true;
            egui::Window::new("Preferences")
                .open(&mut open)
                .default_width(520.0)
                .show(ui.ctx(), |ui| self.preferences_ui(ui));
            self.prefs_ui.open = open;
        }
        if self.compute.is_running() || self.autostart_pending() {
            ui.request_repaint_after(Duration::from_millis(100));
        } else if self.stats.visible || self.prefs_ui.open {
            ui.request_repaint_after(Duration::from_millis(250));
        } else if self.pool.pool().is_some() {
            // Server mode: the status bar says within a second when a helper is lost.
            ui.request_repaint_after(Duration::from_secs(1));
        }
    }

    fn save(&mut self, _storage: &mut dyn eframe::Storage) {
        self.save_all();
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.shutdown();
    }
}

/// A submenu of recently used files, by name with the full path as tooltip: the one
/// clicked.
fn recent_menu(
    ui: &mut Ui,
    title: &str,
    none: &str,
    paths: &[std::path::PathBuf],
) -> Option<std::path::PathBuf> {
    let mut clicked = None;
    ui.menu_button(title, |ui| {
        if paths.is_empty() {
            ui.weak(none);
        }
        for path in paths {
            if ui.tipped_button(super::model::display_name(path), path.display().to_string()) {
                clicked = Some(path.clone());
            }
        }
    });
    clicked
}

impl MillpondApp {
    /// Ctrl-Q and File > Quit: stop everything now, then close the window.
    pub fn quit(&mut self) {
        self.shutdown();
        self.ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    fn menu_bar(&mut self, ui: &mut Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.tipped_button(
                    "New job",
                    "Start a new job: default stock and operations on this model",
                ) {
                    self.new_job();
                }
                if ui.tipped_button("Open job…", "Open a Millpond job file (.millpond)") {
                    self.open_job_dialog();
                }
                let recent = &self.session.recent_jobs;
                if let Some(path) = recent_menu(ui, "Recent jobs", "No recent jobs", recent) {
                    self.open_job(&path);
                }
                if ui.tipped_button(
                    "Save job",
                    "Save the job: model, stock, tools and operations (Ctrl+S)",
                ) {
                    self.save_job();
                }
                if ui.tipped_button(
                    "Save job as…",
                    "Save the job under another name (Ctrl+Shift+S)",
                ) {
                    self.save_job_dialog();
                }
                ui.separator();
                if ui.tipped_button(
                    "Open model…",
                    "Open an STL file (Ctrl+O); you can also drop one on the window",
                ) {
                    self.open_dialog();
                }
                let recent = &self.session.recent;
                if let Some(path) = recent_menu(ui, "Open recent", "No recent files", recent) {
                    self.open_path(path);
                }
                if ui.tipped_button(
                    "Export G-code…",
                    "Write every enabled operation that has a toolpath, in order",
                ) {
                    self.export_dialog();
                }
                ui.separator();
                if ui.button("Quit").on_hover_text("Ctrl+Q").clicked() {
                    self.quit();
                }
            });
            ui.menu_button("Edit", |ui| {
                let undo = self.history().undo_label().map(str::to_string);
                let redo = self.history().redo_label().map(str::to_string);
                let label = undo.as_ref().map_or("Undo".into(), |w| format!("Undo {w}"));
                if ui.tipped_button_if(undo.is_some(), label, "Ctrl+Z") {
                    self.undo();
                }
                let label = redo.as_ref().map_or("Redo".into(), |w| format!("Redo {w}"));
                if ui.tipped_button_if(redo.is_some(), label, "Ctrl+Shift+Z or Ctrl+Y") {
                    self.redo();
                }
            });
            ui.menu_button("View", |ui| {
                if ui
                    .checkbox(&mut self.stats.visible, "Process statistics")
                    .on_hover_text("Hosts, jobs and throughput of local or pooled computing")
                    .changed()
                {
                    self.save_session();
                }
                let mut open = self.detached.open;
                if ui
                    .checkbox(&mut open, "Detached jobs")
                    .on_hover_text(
                        "Jobs handed to a pool member to run while this window may close: \
                         where each stands, Fetch, Cancel",
                    )
                    .changed()
                {
                    self.detached_action(DetachedAction::Show(open));
                }
            });
            if ui.tipped_button("Preferences", "Server mode, pool members, workers, machine") {
                self.prefs_ui.open = true;
                self.prefs_ui.edit = self.prefs.clone();
            }
            if ui
                .selectable_label(self.stats.visible, "Statistics")
                .on_hover_text("Show or hide the Process Statistics panel")
                .clicked()
            {
                self.stats.visible = !self.stats.visible;
                self.save_session();
            }
        });
    }

    fn import_ui(&mut self, ui: &mut Ui) {
        let Some(p) = &mut self.pending_import else {
            return;
        };
        ui.label(format!(
            "{}: {} new tools, {} already here. These numbers are taken by other tools:",
            p.file,
            p.plan.new.len(),
            p.plan.already_here
        ));
        for (c, choice) in p.plan.conflicts.iter().zip(p.choices.iter_mut()) {
            ui.separator();
            ui.label(c.to_string());
            ui.horizontal(|ui| {
                ui.radio_value(choice, ImportChoice::Replace, "Replace")
                    .on_hover_text("The file's tool takes this number; the one here goes");
                ui.radio_value(
                    choice,
                    ImportChoice::AddWithNextNumber,
                    "Add under a new number",
                )
                .on_hover_text("Keep both: the file's tool gets the next free number");
                ui.radio_value(choice, ImportChoice::Skip, "Skip")
                    .on_hover_text("Keep the tool here; leave the file's out");
            });
        }
        ui.separator();
        ui.horizontal(|ui| {
            if ui.tipped_button("Import", "Add the tools as chosen") {
                self.confirm_import();
            }
            if ui.tipped_button("Cancel", "Import nothing") {
                self.cancel_import();
            }
        });
    }

    fn recovery_ui(&mut self, ui: &mut Ui) {
        egui::Frame::new()
            .fill(Color32::from_rgb(0x1e, 0x3a, 0x5a))
            .inner_margin(6.0)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.label(
                        RichText::new("Millpond closed with unsaved changes to a job.")
                            .color(Color32::WHITE),
                    );
                    if ui.tipped_button("Restore", "Open the unsaved job as it was") {
                        self.restore_recovery();
                    }
                    if ui.tipped_button("Discard", "Forget the unsaved changes") {
                        self.discard_recovery();
                    }
                });
            });
    }

    fn banners_ui(&mut self, ui: &mut Ui) {
        let mut dismiss = None;
        for (i, text) in self.banners.iter().enumerate() {
            egui::Frame::new()
                .fill(Color32::from_rgb(0x5a, 0x1e, 0x1e))
                .inner_margin(6.0)
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        if ui.tipped_button("Dismiss", "Hide this message") {
                            dismiss = Some(i);
                        }
                        ui.label(RichText::new(text).color(Color32::WHITE));
                    });
                });
        }
        if let Some(i) = dismiss {
            self.banners.remove(i);
        }
    }

    fn status_bar(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            if let Some(c) = self.compute.current() {
                let p = c.progress;
                let text = format!(
                    "{}: {} / {} chunks · {} · ETA {}",
                    c.name,
                    p.chunks_done,
                    p.chunks_total,
                    format_rate(p.points_per_s()),
                    format_eta(p.eta_s())
                );
                ui.add(
                    egui::ProgressBar::new(p.fraction())
                        .desired_width(420.0)
                        .text(text),
                );
            } else if self.compute.is_running() {
                ui.spinner();
            }
            if self.compute.is_running() {
                let label = if self.compute.is_cancelling() {
                    "Cancelling…"
                } else {
                    "Cancel"
                };
                if ui.tipped_button_if(!self.compute.is_cancelling(), label, "Stop computing (Esc)")
                {
                    self.cancel();
                }
            }
            if let Some(name) = self.loader.busy() {
                ui.spinner();
                ui.label(format!("Loading {name}…"));
            }
            ui.label(&self.status);
        });
        if self.compute.is_running() && ui.input(|i| i.key_pressed(Key::Escape)) {
            self.cancel();
        }
    }

    fn side_panel(&mut self, ui: &mut Ui) {
        type Section = fn(&mut MillpondApp, &mut Ui);
        /// The side panel's sections, top to bottom, and whether each starts open.
        const SECTIONS: [(&str, bool, Section); 5] = [
            ("Model", true, MillpondApp::model_ui),
            ("Stock", false, MillpondApp::stock_ui),
            ("Tool library", false, MillpondApp::tools_ui),
            ("Operations", true, MillpondApp::operations_ui),
            ("G-code", true, MillpondApp::export_ui),
        ];
        for (title, open, section) in SECTIONS {
            egui::CollapsingHeader::new(title)
                .default_open(open)
                .show(ui, |ui| section(self, ui));
        }
    }

    fn model_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            if ui.tipped_button(
                "Open…",
                "Open an STL file (Ctrl+O); you can also drop one on the window",
            ) {
                self.open_dialog();
            }
        });
        let Some(m) = &self.doc().model else {
            ui.weak("No model loaded.");
            return;
        };
        let b = m.bounds();
        let s = b.size();
        egui::Grid::new("model-info").num_columns(2).show(ui, |ui| {
            info_row(ui, "Name", m.name.clone());
            info_row(ui, "Triangles", m.triangles().to_string());
            info_row(
                ui,
                "Size X × Y × Z",
                format!("{:.3} × {:.3} × {:.3} mm", s.x, s.y, s.z),
            );
            info_row(
                ui,
                "From",
                format!("X{:.3} Y{:.3} Z{:.3}", b.min.x, b.min.y, b.min.z),
            );
            info_row(
                ui,
                "To",
                format!("X{:.3} Y{:.3} Z{:.3}", b.max.x, b.max.y, b.max.z),
            );
            info_row(ui, "Skipped degenerate", m.skipped_degenerate().to_string());
        });
        let units = m.units;
        let placed = !m.placement.is_empty();
        let hint = millpond_core::placement::size_hint(m.bounds(), units);
        let load_note = m.original.load_note();
        ui.horizontal(|ui| {
            ui.label("File units:")
                .on_hover_text("STL files carry no units: say what one unit in this file is");
            for u in Units::ALL {
                if ui
                    .radio(units == u, u.label())
                    .on_hover_text(match u {
                        Units::Millimetres => "One STL unit is one millimetre",
                        Units::Centimetres => "One STL unit is one centimetre (scaled by 10)",
                        Units::Metres => "One STL unit is one metre (scaled by 1000)",
                        Units::Inches => "One STL unit is one inch (scaled by 25.4)",
                    })
                    .clicked()
                {
                    self.set_units(u);
                }
            }
        });
        for note in [load_note, hint].into_iter().flatten() {
            ui.colored_label(Color32::YELLOW, format!("Note: {note}"));
        }
        ui.horizontal(|ui| {
            if ui.tipped_button(
                "Move to origin",
                "Put the model's lowest corner at X0 Y0 Z0",
            ) {
                self.place(Placement::MoveToOrigin);
            }
            if ui.tipped_button(
                "Center XY",
                "Center the model on X0 Y0 with its bottom at Z0",
            ) {
                self.place(Placement::Center);
            }
            if ui.tipped_button_if(placed, "Reset", "Undo every move, rotation and mirror") {
                self.reset_placement();
            }
        });
        // Rotate and mirror: a row of one button per axis each, a click one placement step.
        type AxisButton = fn(&str) -> (String, String);
        type Row<'a> = (&'a str, AxisButton, fn(Axis3) -> Placement);
        let rows: [Row; 2] = [
            (
                "Rotate 90°:",
                |axis| {
                    let tip =
                        format!("Turn the model a quarter turn counter-clockwise about {axis}");
                    (format!("about {axis}"), tip)
                },
                Placement::Rotate,
            ),
            (
                "Mirror:",
                |axis| {
                    (
                        format!("{axis} "),
                        format!("Mirror the model: {axis} becomes -{axis}"),
                    )
                },
                Placement::Mirror,
            ),
        ];
        for (title, button, step) in rows {
            ui.horizontal(|ui| {
                ui.label(title);
                for a in Axis3::ALL {
                    let (label, tip) = button(a.label());
                    if ui.tipped_button(label, tip) {
                        self.place(step(a));
                    }
                }
            });
        }
        ui.horizontal(|ui| {
            // The factor being typed lives in egui's memory until applied as a step.
            let id = egui::Id::unique("model-scale-factor");
            let mut factor: f64 = ui.data_mut(|d| *d.get_temp_mut_or(id, 1.0));
            let (lo, hi) = millpond_core::placement::SCALE_RANGE;
            let l = ui.label("Scale ×");
            ui.add(
                egui::DragValue::new(&mut factor)
                    .range(lo..=hi)
                    .speed(0.01)
                    .max_decimals(6),
            )
            .labelled_by(l.id)
            .on_hover_text(
                "A free factor: every coordinate times it, about the origin — for a file in \
                 other units than those above, or to cut the part larger or smaller",
            );
            ui.data_mut(|d| d.insert_temp(id, factor));
            if ui.tipped_button_if(
                factor != 1.0,
                "Scale",
                "Scale the model by the factor (one undo step)",
            ) {
                self.place(Placement::Scale(factor));
            }
        });
    }

    fn stock_ui(&mut self, ui: &mut Ui) {
        let Some(model_box) = self.doc().model.as_ref().map(|m| m.bounds()) else {
            ui.weak("Open a model first.");
            return;
        };
        // Edited as a copy; a change is one command.
        let mut stock = self.doc().stock.clone();
        let mut changed = false;
        ui.horizontal(|ui| {
            if ui
                .radio(stock.mode == StockMode::ModelBox, "Model box + margins")
                .on_hover_text("The stock follows the model: its box grown by the margins")
                .clicked()
            {
                stock.mode = StockMode::ModelBox;
                changed = true;
            }
            if ui
                .radio(stock.mode == StockMode::Explicit, "Explicit corners")
                .on_hover_text("Give the stock's corners in machine coordinates")
                .clicked()
                && stock.mode != StockMode::Explicit
            {
                stock.make_explicit(model_box);
                changed = true;
            }
        });
        egui::Grid::new("stock").num_columns(2).show(ui, |ui| {
            let s = &mut stock;
            match s.mode {
                StockMode::ModelBox => {
                    changed |= num(ui, "Margin X/Y", "Stock beyond the model on every side in X and Y", &mut s.margin_xy, " mm", 0.0..=1000.0, 0.1);
                    changed |= num(ui, "Margin top", "Stock above the model's top", &mut s.margin_top, " mm", 0.0..=1000.0, 0.1);
                    changed |= num(ui, "Margin bottom", "Stock below the model's bottom; the tool never goes below the stock bottom", &mut s.margin_bottom, " mm", 0.0..=1000.0, 0.1);
                }
                StockMode::Explicit => {
                    for (i, axis) in ["X", "Y", "Z"].iter().enumerate() {
                        changed |= num(ui, &format!("{axis} min"), &format!("Stock's lowest {axis}"), &mut s.min[i], " mm", -1e5..=1e5, 0.1);
                        changed |= num(ui, &format!("{axis} max"), &format!("Stock's highest {axis}"), &mut s.max[i], " mm", -1e5..=1e5, 0.1);
                    }
                }
            }
            changed |= num(ui, "Safe height", "Rapid moves run this far above the stock top", &mut s.safe_height, " mm", 0.1..=1000.0, 0.1);
            {
                use millpond_core::setup::{XyZero, ZZero};
                let xy_label = |z: XyZero| match z {
                    XyZero::Model => "model origin",
                    XyZero::StockFrontLeft => "stock front left",
                    XyZero::StockFrontRight => "stock front right",
                    XyZero::StockBackLeft => "stock back left",
                    XyZero::StockBackRight => "stock back right",
                    XyZero::StockCentre => "stock centre",
                };
                changed |= choice(
                    ui,
                    "zero-xy",
                    "Zero X/Y",
                    "Where X and Y are zero in the program: where you touch off",
                    &mut s.zero.xy,
                    [XyZero::Model, XyZero::StockFrontLeft, XyZero::StockFrontRight, XyZero::StockBackLeft, XyZero::StockBackRight, XyZero::StockCentre],
                    |z| xy_label(*z),
                );
                ui.end_row();
                let z_label = |z: ZZero| match z {
                    ZZero::Model => "model origin",
                    ZZero::StockTop => "stock top",
                    ZZero::StockBottom => "stock bottom",
                    ZZero::ModelTop => "model top",
                };
                changed |= choice(
                    ui,
                    "zero-z",
                    "Zero Z",
                    "Where Z is zero in the program",
                    &mut s.zero.z,
                    [ZZero::Model, ZZero::StockTop, ZZero::StockBottom, ZZero::ModelTop],
                    |z| z_label(*z),
                );
                ui.end_row();
            }
        });
        let b = stock.aabb(model_box);
        let sz = b.size();
        ui.label(format!(
            "Stock {:.2} × {:.2} × {:.2} mm, floor Z{:.3}, safe Z{:.3}",
            sz.x,
            sz.y,
            sz.z,
            b.min.z,
            b.max.z + stock.safe_height
        ));
        if changed && stock != self.doc().stock {
            self.execute(Command::SetStock(stock));
        }
    }

    fn tools_ui(&mut self, ui: &mut Ui) {
        let mut select = None;
        for t in &self.doc().tools.tools {
            let selected = self.selected_tool == Some(t.id);
            if ui
                .selectable_label(selected, t.title())
                .on_hover_text(format!("{}, {} mm", t.shape.label(), t.diameter))
                .clicked()
            {
                select = Some(t.id);
            }
        }
        if select.is_some() {
            self.selected_tool = select;
        }
        let used: Vec<u64> = self.doc().operations.list.iter().map(|o| o.tool).collect();
        ui.horizontal(|ui| {
            if ui.tipped_button("New tool", "Add a 6 mm flat end mill to edit") {
                self.execute(Command::AddTool(None));
            }
            let sel = self
                .selected_tool
                .and_then(|id| self.doc().tools.get(id))
                .cloned();
            if ui
                .add_enabled(sel.is_some(), egui::Button::new("Duplicate"))
                .on_hover_text("Copy the selected tool")
                .clicked()
                && let Some(t) = &sel
            {
                self.execute(Command::AddTool(Some(Box::new(t.clone()))));
            }
            let deletable = sel.as_ref().is_some_and(|t| !used.contains(&t.id));
            if ui
                .add_enabled(deletable, egui::Button::new("Delete"))
                .on_hover_text("Delete the selected tool (not while an operation uses it)")
                .clicked()
                && let Some(t) = &sel
            {
                self.execute(Command::RemoveTool(t.id));
            }
        });
        // Edited as a copy; a change is one command.
        let Some(mut edited) = self
            .selected_tool
            .and_then(|id| self.doc().tools.get(id))
            .cloned()
        else {
            return;
        };
        let tool = &mut edited;
        let mut changed = false;
        let mut geometry = false;
        egui::Grid::new("tool-editor")
            .num_columns(2)
            .show(ui, |ui| {
                if text_row(
                    ui,
                    "Name",
                    "What you call this tool (until you edit it, it follows the shape and size)",
                    &mut tool.name,
                )
                .changed()
                {
                    // The user's name from now on.
                    tool.auto_name = false;
                    changed = true;
                }
                let l = ui
                    .label("Tool number")
                    .on_hover_text("Pocket number in the machine's tool table (T word)");
                changed |= ui
                    .add(DragValue::new(&mut tool.number).range(0..=9999))
                    .labelled_by(l.id)
                    .on_hover_text("Pocket number in the machine's tool table (T word)")
                    .changed();
                ui.end_row();
                geometry |= choice(
                    ui,
                    "tool-shape",
                    "Shape",
                    "The cutter's end shape",
                    &mut tool.shape,
                    ToolShape::ALL,
                    |s| s.label(),
                );
                ui.end_row();
                geometry |= num(
                    ui,
                    "Diameter",
                    "Cutting diameter",
                    &mut tool.diameter,
                    " mm",
                    0.01..=1000.0,
                    0.05,
                );
                match tool.shape {
                    ToolShape::Bull => {
                        geometry |= num(
                            ui,
                            "Corner radius",
                            "Radius of the rounded corner (less than half the diameter)",
                            &mut tool.corner_radius,
                            " mm",
                            0.01..=500.0,
                            0.05,
                        );
                    }
                    ToolShape::VBit => {
                        geometry |= num(
                            ui,
                            "Included angle",
                            "Angle between opposite flanks of the V",
                            &mut tool.included_angle,
                            "°",
                            1.0..=179.0,
                            0.5,
                        );
                    }
                    ToolShape::Flat | ToolShape::Ball => {}
                }
                changed |= num(
                    ui,
                    "Feed",
                    "Cutting feed",
                    &mut tool.feed,
                    " mm/min",
                    1.0..=100_000.0,
                    10.0,
                );
                changed |= num(
                    ui,
                    "Plunge feed",
                    "Feed when moving down into material",
                    &mut tool.plunge_feed,
                    " mm/min",
                    1.0..=100_000.0,
                    10.0,
                );
                changed |= num(
                    ui,
                    "Spindle speed",
                    "Spindle speed",
                    &mut tool.spindle_rpm,
                    " rpm",
                    1.0..=200_000.0,
                    100.0,
                );
                changed |= num(
                    ui,
                    "Max depth of cut",
                    "The deepest this tool may cut into material in one move: deeper moves are \
                     warned of before export. 0: the usual for its shape (two diameters; a \
                     V-bit's cone height)",
                    &mut tool.max_depth_of_cut,
                    " mm",
                    0.0..=1000.0,
                    0.1,
                );
                let tip = "Cutting edges of the tool";
                let l = ui.label("Flutes").on_hover_text(tip);
                changed |= ui
                    .add(DragValue::new(&mut tool.flutes).range(1..=16))
                    .labelled_by(l.id)
                    .on_hover_text(tip)
                    .changed();
                ui.end_row();
                changed |= num(
                    ui,
                    "Stick-out",
                    "How far the tool stands out of its holder: cuts deeper than this are warned \
                     of (the holder would meet the material). 0: not given",
                    &mut tool.stick_out,
                    " mm",
                    0.0..=1000.0,
                    0.5,
                );
            });
        if geometry {
            tool.rename_if_automatic();
            changed = true;
        }
        if let Err(e) = tool.cutter() {
            ui.colored_label(ERROR_RED, e.to_string());
        }
        if changed {
            self.execute(Command::EditTool(Box::new(edited)));
        }
    }

    fn operations_ui(&mut self, ui: &mut Ui) {
        let mut select = None;
        let mut moves = None;
        let mut visibility = None;
        let mut enabling = None;
        let ids: Vec<u64> = self.doc().operations.list.iter().map(|o| o.id).collect();
        for (i, id) in ids.iter().copied().enumerate() {
            let pending = self.compute.is_pending(id);
            let outdated = self.is_outdated(id);
            let has_result = self.results.contains_key(&id);
            let error = self.op_errors.contains_key(&id);
            let selected = self.doc().operations.selected == Some(id);
            let Some(op) = self.doc().operations.get(id) else {
                continue;
            };
            ui.horizontal(|ui| {
                let mut enabled = op.enabled;
                if ui
                    .checkbox(&mut enabled, "")
                    .on_hover_text(format!(
                        "Include \"{}\" in Generate all and in the G-code",
                        op.name
                    ))
                    .changed()
                {
                    enabling = Some((id, enabled));
                }
                let mut visible = op.visible;
                if ui
                    .checkbox(&mut visible, "Show")
                    .on_hover_text(format!("Draw the toolpath of \"{}\"", op.name))
                    .changed()
                {
                    visibility = Some((id, visible));
                }
                if ui
                    .selectable_label(selected, &op.name)
                    .on_hover_text("Edit this operation")
                    .clicked()
                {
                    select = Some(id);
                }
                let (tag, color) = if pending {
                    ("computing", Color32::LIGHT_BLUE)
                } else if error {
                    ("failed", ERROR_RED)
                } else if has_result && outdated {
                    ("outdated", Color32::YELLOW)
                } else if has_result {
                    ("done", Color32::LIGHT_GREEN)
                } else {
                    ("", Color32::GRAY)
                };
                ui.colored_label(color, tag);
                if ui
                    .add_enabled(i > 0, egui::Button::new("Up").small())
                    .on_hover_text("Machine this operation earlier")
                    .clicked()
                {
                    moves = Some((id, true));
                }
                if ui
                    .add_enabled(i + 1 < ids.len(), egui::Button::new("Down").small())
                    .on_hover_text("Machine this operation later")
                    .clicked()
                {
                    moves = Some((id, false));
                }
            });
        }
        if let Some(id) = select {
            self.select_operation(id);
        }
        if let Some((id, up)) = moves {
            self.execute(Command::MoveOperation(id, up));
        }
        if let Some((id, v)) = visibility {
            self.set_visible(id, v);
        }
        if let Some((id, on)) = enabling
            && let Some(op) = self.doc().operations.get(id)
        {
            let mut op = op.clone();
            op.enabled = on;
            self.execute(Command::EditOperation(Box::new(op)));
        }
        ui.horizontal(|ui| {
            ui.menu_button("Add operation", |ui| {
                ui.set_min_width(180.0);
                for s in Strategy::defaults() {
                    let tip = match s {
                        Strategy::Roughing(_) => {
                            "Clear the stock layer by layer, leaving an allowance for finishing"
                        }
                        Strategy::RasterFinishing(_) => {
                            "Parallel passes over the whole part: best on gentle slopes"
                        }
                        Strategy::WaterlineFinishing(_) => {
                            "Contours level by level, top down: best on steep walls"
                        }
                    };
                    if ui.button(s.label()).on_hover_text(tip).clicked() {
                        // The first tool of the usual shape, else the one the selected
                        // operation uses.
                        let tool = self
                            .doc()
                            .tools
                            .tools
                            .iter()
                            .find(|t| t.shape == usual_shape(&s))
                            .map(|t| t.id)
                            .or(self
                                .doc()
                                .operations
                                .selected
                                .and_then(|id| self.doc().operations.get(id))
                                .map(|o| o.tool))
                            .or(self.doc().tools.tools.first().map(|t| t.id))
                            .unwrap_or(0);
                        self.execute(Command::AddOperation(s, tool));
                    }
                }
            });
            if ui
                .add_enabled(
                    self.doc().operations.selected.is_some(),
                    egui::Button::new("Remove"),
                )
                .on_hover_text("Remove the selected operation and its toolpath")
                .clicked()
                && let Some(id) = self.doc().operations.selected
            {
                self.remove_operation(id);
            }
        });
        ui.separator();
        self.operation_editor(ui);
        ui.separator();
        ui.horizontal(|ui| {
            let ready = self.doc().model.is_some();
            if ui
                .add_enabled(
                    ready && self.doc().operations.selected.is_some(),
                    egui::Button::new("Generate"),
                )
                .on_hover_text("Compute the selected operation's toolpath")
                .clicked()
            {
                self.generate(false);
            }
            if ui.tipped_button_if(
                ready,
                "Generate all",
                "Compute every enabled operation, in order",
            ) {
                self.generate(true);
            }
        });
        // Only the selected operation is read move by move: another selection shows its path
        // whole again.
        if let Some(op) = self.inspected_operation()
            && self.doc().operations.selected != Some(op)
        {
            self.inspect_move(op, None);
        }
        if let Some(id) = self.doc().operations.selected {
            if let Some(r) = self.results.get(&id) {
                let s = r.stats;
                ui.label(format!(
                    "Cut {:.1} mm · rapid {:.1} mm · {} moves · {} retract{}",
                    s.cut_length + s.plunge_length,
                    s.rapid_length,
                    s.moves,
                    s.retracts,
                    if s.retracts == 1 { "" } else { "s" }
                ));
                ui.label(format!(
                    "Estimated machining time {} · computed in {:.1} s",
                    format_duration(r.time.total_s),
                    r.computed.elapsed_s
                ));
                if self.is_outdated(id) {
                    ui.colored_label(Color32::YELLOW, "Parameters changed since: generate again.");
                }
                self.inspect_ui(ui, id);
            }
            if let Some(e) = self.op_errors.get(&id) {
                ui.colored_label(ERROR_RED, e);
            }
        }
    }

    /// Reading the toolpath: up to a move with the tool there and that move's line, and the
    /// heights drawn.
    fn inspect_ui(&mut self, ui: &mut Ui, id: u64) {
        let Some(total) = self.toolpath(id).map(|tp| tp.moves.len() as u32) else {
            return;
        };
        let mut n = self.inspected_move(id).unwrap_or(total);
        ui.horizontal(|ui| {
            let l = ui.label("Moves");
            let r = ui
                .add(egui::Slider::new(&mut n, 0..=total))
                .labelled_by(l.id)
                .on_hover_text(
                    "Draw this toolpath up to a move, with the tool there and the move's line \
                     below; at the end, the whole path",
                );
            if r.changed() {
                self.inspect_move(id, (n < total).then_some(n));
            }
        });
        if let Some(line) = self.inspected_move_line(id) {
            ui.monospace(line);
        }
        // Measured once when the view took the toolpath, not per frame over every move.
        let Some((zmin, zmax)) = self.toolpath_heights(id) else {
            return;
        };
        let (mut lo, mut hi) = self.inspected_heights().unwrap_or((zmin, zmax));
        ui.horizontal(|ui| {
            let l = ui.label("Heights");
            let speed = ((zmax - zmin) / 200.0).max(0.01);
            fn height(z: &mut f64, lo: f64, hi: f64, speed: f64) -> egui::DragValue<'_> {
                egui::DragValue::new(z)
                    .range(lo..=hi)
                    .speed(speed)
                    .suffix(" mm")
            }
            let r1 = ui
                .add(height(&mut lo, zmin, zmax, speed))
                .labelled_by(l.id)
                .on_hover_text("Draw only the moves that reach this height or above (model Z)");
            ui.label("to");
            let r2 = ui
                .add(height(&mut hi, zmin, zmax, speed))
                .on_hover_text("…and this height or below: one layer at a time");
            if r1.changed() || r2.changed() {
                let all = lo <= zmin && hi >= zmax;
                self.inspect_heights((!all).then_some((lo.min(hi), hi.max(lo))));
            }
        });
    }

    fn operation_editor(&mut self, ui: &mut Ui) {
        let Some(id) = self.doc().operations.selected else {
            ui.weak("No operation selected.");
            return;
        };
        let tools: Vec<(u64, String)> = self
            .doc()
            .tools
            .tools
            .iter()
            .map(|t| (t.id, t.title()))
            .collect();
        let tool_feeds = self
            .doc()
            .operations
            .get(id)
            .and_then(|op| self.doc().tools.get(op.tool))
            .map(OperationFeeds::of);
        // Edited as a copy; a change is one command.
        let Some(mut edited) = self.doc().operations.get(id).cloned() else {
            return;
        };
        let op = &mut edited;
        ui.label(RichText::new(op.strategy.label()).strong());
        egui::Grid::new("op-editor").num_columns(2).show(ui, |ui| {
            text_row(ui, params::NAME.label, params::NAME.help, &mut op.name);
            let tool_tip = params::TOOL.help;
            let l = ui.label(params::TOOL.label).on_hover_text(tool_tip);
            let current = tools
                .iter()
                .find(|(t, _)| *t == op.tool)
                .map_or_else(|| "(choose a tool)".to_string(), |(_, n)| n.clone());
            egui::ComboBox::from_id_salt("op-tool")
                .selected_text(current)
                .width(220.0)
                .show_ui(ui, |ui| {
                    for (tid, name) in &tools {
                        ui.selectable_value(&mut op.tool, *tid, name);
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text(tool_tip);
            ui.end_row();
            let tip = "Feeds and spindle speed for this operation alone; unticked, the tool's";
            let mut own = op.feeds.is_some();
            ui.label("Own feeds").on_hover_text(tip);
            if ui.checkbox(&mut own, "").on_hover_text(tip).changed() {
                op.feeds = if own { tool_feeds } else { None };
            }
            ui.end_row();
            if let Some(f) = &mut op.feeds {
                setting_drag(ui, &params::FEED, &mut f.feed, 10.0);
                setting_drag(ui, &params::PLUNGE_FEED, &mut f.plunge_feed, 10.0);
                setting_drag(ui, &params::SPINDLE_SPEED, &mut f.spindle_rpm, 100.0);
            }
            match &mut op.strategy {
                Strategy::Roughing(p) => roughing_editor(ui, p),
                Strategy::RasterFinishing(p) => raster_editor(ui, p),
                Strategy::WaterlineFinishing(p) => waterline_editor(ui, p),
            }
        });
        if edited
            != self
                .doc()
                .operations
                .get(id)
                .cloned()
                .unwrap_or_else(|| edited.clone())
        {
            self.execute(Command::EditOperation(Box::new(edited)));
        }
    }

    fn export_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            let l = ui
                .label("Post")
                .on_hover_text("The post-processor: how the program is written for the controller");
            let mut output = self.doc().output.clone();
            let chosen = self.posts.posts.iter().find(|p| p.key == output.post);
            egui::ComboBox::from_id_salt("post")
                .selected_text(chosen.map_or(output.post.clone(), |p| p.label()))
                .show_ui(ui, |ui| {
                    for p in &self.posts.posts {
                        ui.selectable_value(&mut output.post, p.key.clone(), p.label())
                            .on_hover_text(&p.description);
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text(format!(
                    "{}. Your own posts (TOML files) go in {}",
                    chosen.map_or("Not one of the posts", |p| p.description.as_str()),
                    crate::run_job::posts_dir(&self.options.config_dir).display()
                ));
            // The post as chosen now; one that writes fewer units brings its own.
            let chosen = self.posts.posts.iter().find(|p| p.key == output.post);
            if let Some(p) = chosen
                && !p.units.contains(&output.units)
            {
                output.units = p.default_units();
            }
            let units_allowed = chosen.map_or(ProgramUnits::ALL.to_vec(), |p| p.units.clone());
            choice(
                ui,
                "program-units",
                "Units",
                "mm: G21. inch: G20, feeds in inches per minute, for machines set up in inches. \
                 Toolpaths are computed in mm either way",
                &mut output.units,
                units_allowed,
                |u| u.label(),
            );
            if output != self.doc().output {
                self.execute(Command::SetOutput(output));
            }
        });
        if let Err(e) = self.post() {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let mut output = self.doc().output.clone();
        egui::Grid::new("output").num_columns(2).show(ui, |ui| {
            num(
                ui,
                "Spindle spin-up",
                "Dwell after each spindle start (G4), so the spindle is at speed before the \
                 first cut; 0: none. New jobs take Preferences' value",
                &mut output.spindle_dwell_s,
                " s",
                0.0..=600.0,
                0.1,
            );
        });
        if output != self.doc().output {
            self.execute(Command::SetOutput(output));
        }
        let s = self.export_summary();
        if s.operations == 0 {
            ui.weak("Generate an enabled operation to export G-code.");
        } else {
            ui.label(format!(
                "{} operation{}: cut {:.1} mm, rapid {:.1} mm",
                s.operations,
                if s.operations == 1 { "" } else { "s" },
                s.cut_length,
                s.rapid_length
            ));
            ui.label(format!(
                "Estimated machining time {} ({} without acceleration)",
                format_duration(s.time.total_s),
                format_duration(s.time.full_speed_s + s.time.dwell_s)
            ))
            .on_hover_text(format!(
                "As the machine of Preferences would run it ({}): accelerating, and slowing \
                 for every corner. Operator time at tool changes not counted",
                self.prefs.machine().describe()
            ));
        }
        if s.operations > 0 {
            if self.program_check.busy() {
                ui.weak("Checking the program against the stock…");
            }
            for w in &self.program_check.warnings {
                ui.colored_label(Color32::YELLOW, format!("Warning: {w}"));
            }
        }
        if s.operations > 0 {
            self.simulation_ui(ui);
        }
        if ui
            .add_enabled(
                s.operations > 0 && !self.exporter.busy(),
                egui::Button::new("Export G-code…"),
            )
            .on_hover_text("Save every enabled operation that has a toolpath as one program")
            .clicked()
        {
            self.export_dialog();
        }
        if ui
            .button("Run on pool member (detached)…")
            .on_hover_text(
                "Hand the whole job to a pool member (millpond serve) to compute while this \
                 window may close; fetch its G-code later from Detached jobs",
            )
            .clicked()
        {
            self.detached_action(DetachedAction::Show(true));
        }
        outcome(ui, &self.exporter.last);
    }

    /// Simulate, its progress and Cancel, and what the simulated stock shows.
    fn simulation_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            if let Some(p) = self.simulation.progress_text() {
                ui.label(p);
                if ui.tipped_button("Cancel simulation", "Stop simulating; the stock shown before stays") {
                    self.simulation.cancel();
                }
            } else if ui
                .button("Simulate")
                .on_hover_text(
                    "Machine the program into the stock, as Export would write it, and show                      what it leaves: coloured by how far the stock stands from the model, with                      any gouge and rapid through material named",
                )
                .clicked()
            {
                self.simulate();
            }
        });
        let Some(last) = &self.simulation.last else {
            return;
        };
        let sim = match last {
            Ok(sim) => sim,
            Err(e) => {
                ui.colored_label(ERROR_RED, e);
                return;
            }
        };
        let Some(v) = sim.total() else {
            return;
        };
        let tol_um = sim.tolerance * 1000.0;
        ui.label(format!(
            "Simulated on {} × {} cells of {:.3} mm in {:.1} s",
            sim.cells.0, sim.cells.1, sim.cell, sim.seconds
        ))
        .on_hover_text(
            "Each cell holds the top of the material over its centre, lowered exactly by              every move of the program (millpond simulate gives the same figures)",
        );
        match v.gouge {
            Some(g) => {
                ui.colored_label(
                    ERROR_RED,
                    format!(
                        "Gouge: {:.4} mm below the model at X{:.3} Y{:.3} ({} cells beyond                          {tol_um:.1} µm)",
                        -g.deviation, g.x, g.y, v.gouge_cells
                    ),
                );
            }
            None => {
                ui.colored_label(
                    Color32::LIGHT_GREEN,
                    format!("No gouge (nothing below the model by more than {tol_um:.1} µm)"),
                );
            }
        }
        let rapids = sim.rapids_in_material();
        if rapids > 0 {
            ui.colored_label(
                ERROR_RED,
                format!(
                    "{rapids} rapid move{} through material",
                    if rapids == 1 { "" } else { "s" }
                ),
            );
        }
        if let Some(m) = v.remaining_max {
            ui.label(format!(
                "Material left: up to {:.3} mm at X{:.3} Y{:.3}, mean {:.3} mm, {:.0} mm³",
                m.deviation, m.x, m.y, v.remaining_mean, v.remaining_mm3
            ));
        }
        if let Some(pb) = &mut self.simulation.playback {
            ui.horizontal(|ui| {
                let playing = pb.playing;
                if ui
                    .button(if playing { "Pause" } else { "Play" })
                    .on_hover_text(
                        "Replay the program move by move: the stock as it stands, with the tool",
                    )
                    .clicked()
                {
                    let at_end =
                        pb.at.op + 1 == pb.lengths.len() && pb.at.moves == pb.lengths[pb.at.op];
                    if !playing && at_end {
                        pb.seek(super::simulation::At { op: 0, moves: 0 });
                    }
                    pb.playing = !playing;
                }
                let mut op = pb.at.op;
                egui::ComboBox::from_id_salt("playback operation")
                    .selected_text(format!("{}. {}", op + 1, pb.names[op]))
                    .show_ui(ui, |ui| {
                        for (k, name) in pb.names.iter().enumerate() {
                            ui.selectable_value(&mut op, k, format!("{}. {name}", k + 1));
                        }
                    })
                    .response
                    .on_hover_text("The operation the slider moves through");
                if op != pb.at.op {
                    pb.seek(super::simulation::At {
                        op,
                        moves: pb.lengths[op],
                    });
                }
                ui.add(
                    egui::DragValue::new(&mut pb.speed)
                        .range(1.0..=1e6)
                        .speed(10.0)
                        .suffix(" moves/s"),
                )
                .on_hover_text("How fast Play goes through the moves");
            });
            let mut moves = pb.at.moves;
            let len = pb.lengths[pb.at.op];
            if ui
                .add(egui::Slider::new(&mut moves, 0..=len).text("moves"))
                .on_hover_text(
                    "The stock after this many moves of the operation (the ones before it done)",
                )
                .changed()
            {
                pb.playing = false;
                pb.seek(super::simulation::At {
                    op: pb.at.op,
                    moves,
                });
            }
        }
        ui.horizontal_wrapped(|ui| {
            let swatch = |ui: &mut Ui, rgb: [u8; 3], text: &str, tip: &str| {
                let (rect, response) =
                    ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
                ui.painter()
                    .rect_filled(rect, 2.0, Color32::from_rgb(rgb[0], rgb[1], rgb[2]));
                response.on_hover_text(tip);
                ui.label(text).on_hover_text(tip);
            };
            let colour = |left: f64, gouge: bool| {
                millpond_core::simulate::deviation_colour(
                    left,
                    gouge,
                    sim.tolerance,
                    super::simulation::FULL_SCALE_MM,
                )
            };
            swatch(ui, colour(0.0, true), "gouge", "Cut below the model");
            swatch(
                ui,
                colour(0.0, false),
                "on size",
                "Within the tolerance of the model (or of the floor beside it)",
            );
            swatch(
                ui,
                colour(0.01, false),
                "0.01 mm",
                "Material left: a hundredth",
            );
            swatch(
                ui,
                colour(0.2, false),
                "0.2 mm",
                "Material left: two tenths",
            );
            swatch(
                ui,
                colour(super::simulation::FULL_SCALE_MM, false),
                "1 mm+",
                "Material left: a millimetre or more",
            );
        });
    }

    fn preferences_ui(&mut self, ui: &mut Ui) {
        let state = self.pool.state().clone();
        let mut server = self.prefs_ui.edit.server_mode;
        if ui
            .checkbox(&mut server, "Server mode: join the compute pool")
            .on_hover_text(
                "Listen for other Millpond computers and connect to the remote servers below; \
                 jobs are then shared with everyone in the pool",
            )
            .changed()
        {
            self.set_server_mode(server);
        }
        let color = match state {
            PoolState::Failed(_) => ERROR_RED,
            PoolState::Running(_) => Color32::LIGHT_GREEN,
            _ => ui.visuals().text_color(),
        };
        ui.colored_label(color, format!("Pool: {}", state.describe()));
        ui.separator();
        egui::Grid::new("prefs").num_columns(2).show(ui, |ui| {
            let e = &mut self.prefs_ui.edit;
            text_row(ui, "Listen on", "IP address to listen on: 0.0.0.0 for every network, 127.0.0.1 for this computer only", &mut e.listen_address);
            let l = ui.label("Port").on_hover_text("UDP port other members connect to (0: any free port)");
            ui.add(DragValue::new(&mut e.listen_port).range(0..=65535))
                .labelled_by(l.id)
                .on_hover_text("UDP port other members connect to (0: any free port)");
            ui.end_row();
            ui.label("LAN discovery").on_hover_text(DISCOVER_TIP);
            ui.checkbox(&mut e.discover, DISCOVER_LABEL).on_hover_text(DISCOVER_TIP);
            ui.end_row();
            text_row(ui, "Node name", "How this computer is shown to the other members", &mut e.node_name);
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let l = ui.label("Local workers").on_hover_text(format!(
                "Worker threads computing on this computer (it has {cores} cores)"
            ));
            ui.add(DragValue::new(&mut e.local_workers).range(1..=1024).suffix(" threads"))
                .labelled_by(l.id)
                .on_hover_text(format!("Worker threads computing on this computer (it has {cores} cores)"));
            ui.end_row();
            num(ui, "Verify results", "Share of the results other members send for this computer's jobs that it computes again and compares bit for bit (also each member's first in each job, unless 0). A member caught with a wrong result is cut off, named in the statistics, and everything it sent is computed again", &mut e.verify_percent, " %", 0.0..=100.0, 0.5);
            num(ui, "Rapid rate", "The machine's X and Y rapid rate, also their fastest feed: only used to estimate machining time", &mut e.rapid_rate, " mm/min", 1.0..=200_000.0, 50.0);
            num(ui, "Z rapid rate", "The machine's Z rapid rate, also its fastest feed: only used to estimate machining time", &mut e.rapid_rate_z, " mm/min", 1.0..=200_000.0, 50.0);
            num(ui, "Acceleration", "The machine's X and Y acceleration (GRBL's $120, $121): only used to estimate machining time", &mut e.acceleration, " mm/s²", 1.0..=100_000.0, 10.0);
            num(ui, "Z acceleration", "The machine's Z acceleration (GRBL's $122): only used to estimate machining time", &mut e.acceleration_z, " mm/s²", 1.0..=100_000.0, 10.0);
            num(ui, "Junction deviation", "How far the machine may stray from a corner to keep speed (GRBL's $11; LinuxCNC's G64 P): only used to estimate machining time", &mut e.junction_deviation, " mm", 0.0001..=10.0, 0.001);
            num(ui, "Spindle spin-up", "Seconds the program waits (G4) after starting the spindle, before the first move: for spindles that need time to reach their speed", &mut e.spindle_dwell_s, " s", 0.0..=600.0, 0.1);
            let tip = "Open and Export: the desktop's file dialog where the desktop has one (an xdg portal), else Millpond's own browser; or always Millpond's own (for a desktop whose dialog does not work)";
            ui.label("File dialogs").on_hover_text(tip);
            ui.horizontal(|ui| {
                use super::dialogs::FileBrowser;
                ui.radio_value(&mut e.file_browser, FileBrowser::Desktop, "Desktop's")
                    .on_hover_text(tip);
                ui.radio_value(&mut e.file_browser, FileBrowser::BuiltIn, "Built-in")
                    .on_hover_text(tip);
            });
            ui.end_row();
        });
        ui.horizontal(|ui| {
            let dirty = self.prefs_ui.edit != self.prefs;
            if ui.tipped_button_if(
                dirty,
                "Save and apply",
                "Save these settings; a running pool restarts with them",
            ) {
                self.apply_preferences();
            }
            if dirty {
                ui.weak("unsaved changes");
            }
        });
        ui.separator();
        ui.label(RichText::new("Pool secret").strong())
            .on_hover_text(
                "Every member of a pool needs the same secret. It never crosses the network.",
            );
        ui.horizontal(|ui| {
            let show = self.prefs_ui.show_secret;
            if self.prefs_ui.secret_text.is_empty()
                && show
                && let Some(s) = &self.secret
            {
                self.prefs_ui.secret_text = s.reveal();
            }
            let hint = if self.secret.is_some() {
                "(saved — type to replace)"
            } else {
                "(none yet)"
            };
            let l = ui
                .label("Secret")
                .on_hover_text("The pool secret; masked unless Show is ticked");
            ui.add(
                egui::TextEdit::singleline(&mut *self.prefs_ui.secret_text)
                    .password(!show)
                    .hint_text(hint)
                    .desired_width(260.0),
            )
            .labelled_by(l.id)
            .on_hover_text("The pool secret; masked unless Show is ticked");
            if ui
                .checkbox(&mut self.prefs_ui.show_secret, "Show secret")
                .on_hover_text("Show the secret in clear")
                .changed()
                && !self.prefs_ui.show_secret
            {
                self.prefs_ui.secret_text.zeroize();
            }
        });
        ui.horizontal(|ui| {
            if ui
                .button("Generate secret")
                .on_hover_text(
                    "Make a new random secret for a new pool (give it to the other members)",
                )
                .clicked()
            {
                let s = Secret::generate();
                if self.prefs_ui.show_secret {
                    self.prefs_ui.secret_text = s.reveal();
                } else {
                    self.prefs_ui.secret_text.zeroize();
                }
                self.set_secret(s);
            }
            // Compared where it is, not copied each frame.
            let typed = self.prefs_ui.secret_text.trim();
            let differs = !typed.is_empty()
                && self
                    .secret
                    .as_ref()
                    .is_none_or(|s| s.as_bytes() != typed.as_bytes());
            if ui
                .add_enabled(differs, egui::Button::new("Use this secret"))
                .on_hover_text(
                    "Save the typed secret (at least 8 characters) to join an existing pool",
                )
                .clicked()
            {
                let typed = self.prefs_ui.secret_text.as_bytes();
                match Secret::new(typed, "the secret field") {
                    Ok(s) => self.set_secret(s),
                    Err(e) => self.prefs_ui.message = Some(Err(e.to_string())),
                }
            }
        });
        ui.separator();
        ui.label(RichText::new("Remote servers").strong())
            .on_hover_text("Pool members this computer connects to (HOST:PORT)");
        let statuses = self
            .pool_stats
            .as_ref()
            .map(|s| s.remotes.clone())
            .unwrap_or_default();
        let mut remove = None;
        egui::Grid::new("remotes")
            .num_columns(4)
            .striped(true)
            .show(ui, |ui| {
                for r in &self.prefs.remote_servers {
                    ui.label(r);
                    match statuses.iter().find(|s| &s.address == r) {
                        Some(s) => remote_state_cells(ui, s),
                        None => {
                            ui.weak(if self.pool.pool().is_some() {
                                "connecting"
                            } else {
                                "server mode off"
                            });
                            ui.label("");
                        }
                    }
                    if ui.tipped_button("Remove", format!("Stop connecting to {r}")) {
                        remove = Some(r.clone());
                    }
                    ui.end_row();
                }
                // Members LAN discovery found: shown, not saved (they announce themselves).
                for s in statuses.iter().filter(|s| s.discovered) {
                    ui.label(&s.address);
                    remote_state_cells(ui, s);
                    ui.weak("found on the local network");
                    ui.end_row();
                }
            });
        if let Some(r) = remove {
            self.remove_remote(&r);
        }
        ui.horizontal(|ui| {
            let l = ui.label("Add").on_hover_text("Another member's HOST:PORT");
            let r = ui
                .add(
                    egui::TextEdit::singleline(&mut self.prefs_ui.new_remote)
                        .hint_text("host:1250")
                        .desired_width(220.0),
                )
                .labelled_by(l.id)
                .on_hover_text("Another member's HOST:PORT");
            let enter = r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
            if ui
                .button("Add server")
                .on_hover_text("Connect to this member (while server mode is on)")
                .clicked()
                || enter
            {
                let a = self.prefs_ui.new_remote.clone();
                self.add_remote(&a);
            }
        });
        outcome(ui, &self.prefs_ui.message);
        ui.weak(format!(
            "Settings folder: {}",
            self.options.config_dir.display()
        ));
    }
}

fn raster_editor(ui: &mut Ui, p: &mut RasterParams) {
    setting_drag(ui, &params::STEPOVER, &mut p.stepover, 0.01);
    setting_drag(ui, &params::SAMPLING, &mut p.sampling, 0.01);
    radio_row(
        ui,
        params::AXIS_SETTING.label,
        params::AXIS_SETTING.help,
        &mut p.axis,
        &[
            (LineAxis::X, "X", "Passes parallel to X"),
            (LineAxis::Y, "Y", "Passes parallel to Y"),
        ],
    );
    let direction = &params::DIRECTION_SETTING;
    choice(
        ui,
        "raster-direction",
        direction.label,
        direction.help,
        &mut p.direction,
        [Direction::Zigzag, Direction::Climb, Direction::Conventional],
        |d| match d {
            Direction::Zigzag => "Zigzag",
            Direction::Climb => "Climb",
            Direction::Conventional => "Conventional",
        },
    );
    ui.end_row();
    setting_drag(ui, &params::MERGE_TOLERANCE, &mut p.merge_tolerance, 0.0005);
    setting_drag(ui, &params::MARGIN, &mut p.extra_margin, 0.1);
    setting_drag(ui, &params::ALLOWANCE, &mut p.allowance, 0.05);
}

fn milling_row(ui: &mut Ui, milling: &mut Milling) {
    radio_row(
        ui,
        params::MILLING_SETTING.label,
        params::MILLING_SETTING.help,
        milling,
        &[
            (
                Milling::Climb,
                "Climb",
                "Material on the tool's right (clockwise spindle): the usual choice on rigid machines",
            ),
            (
                Milling::Conventional,
                "Conventional",
                "Material on the tool's left: kinder to machines with backlash",
            ),
        ],
    );
}

/// A labelled grid row of radio buttons, one per `(value, text, tooltip)`, the label naming
/// the group for screen readers and tests.
fn radio_row<T: PartialEq + Copy>(
    ui: &mut Ui,
    label: &str,
    tip: &str,
    value: &mut T,
    choices: &[(T, &str, &str)],
) {
    let l = ui.label(label).on_hover_text(tip);
    ui.horizontal(|ui| {
        for &(v, text, tip) in choices {
            ui.radio_value(value, v, text).on_hover_text(tip);
        }
    })
    .response
    .labelled_by(l.id);
    ui.end_row();
}

fn roughing_editor(ui: &mut Ui, p: &mut RoughingParams) {
    setting_drag(ui, &params::STEPDOWN, &mut p.stepdown, 0.05);
    match &mut p.stepover {
        Stepover::Mm(v) => {
            setting_drag(ui, &params::STEPOVER, v, 0.05);
        }
        Stepover::Percent(v) => {
            let s = &params::STEPOVER;
            let tip = format!("{} ({})", s.help, params::STEPOVER_PERCENT);
            number_row(ui, s.label, &tip, v, params::STEPOVER_PERCENT, 0.5);
        }
    }
    let l = ui
        .label("Stepover in")
        .on_hover_text("Millimetres, or a share of the tool diameter that follows the tool");
    ui.horizontal(|ui| {
        let percent = matches!(p.stepover, Stepover::Percent(_));
        if ui
            .radio(!percent, "mm")
            .on_hover_text("Stepover in millimetres, whatever the tool")
            .clicked()
            && percent
        {
            p.stepover = Stepover::Mm(2.5);
        }
        if ui
            .radio(percent, "% of tool diameter")
            .on_hover_text(
                "Stepover as a percentage of the tool diameter: it follows a tool change",
            )
            .clicked()
            && !percent
        {
            p.stepover = RoughingParams::default().stepover;
        }
    })
    .response
    .labelled_by(l.id);
    ui.end_row();
    setting_drag(ui, &params::ALLOWANCE, &mut p.allowance, 0.05);
    radio_row(
        ui,
        params::PATTERN_SETTING.label,
        params::PATTERN_SETTING.help,
        &mut p.pattern,
        &[
            (
                ClearPattern::Offset,
                "Offset",
                "Rings parallel to the layer's outline, from the inside out",
            ),
            (
                ClearPattern::Zigzag,
                "Zigzag",
                "Parallel lines along X, then one pass round the outline",
            ),
        ],
    );
    milling_row(ui, &mut p.milling);
    setting_drag(ui, &params::RAMP_ANGLE, &mut p.ramp_angle, 0.5);
    setting_drag(ui, &params::SAMPLING, &mut p.sampling, 0.01);
    rest_row(ui, &mut p.rest);
}

/// Rest roughing on or off, and its threshold when on.
fn rest_row(ui: &mut Ui, rest: &mut Option<f64>) {
    let setting = &params::REST;
    let l = ui.label("Rest roughing").on_hover_text(setting.tooltip());
    let mut on = rest.is_some();
    if ui
        .checkbox(&mut on, "only what earlier operations left")
        .on_hover_text(setting.tooltip())
        .labelled_by(l.id)
        .changed()
    {
        // 0.1 mm: above the simulated stock's rounding, below any allowance worth leaving.
        *rest = on.then_some(0.1);
    }
    ui.end_row();
    if let Some(t) = rest {
        setting_drag(ui, setting, t, 0.01);
    }
}

fn waterline_editor(ui: &mut Ui, p: &mut WaterlineParams) {
    setting_drag(ui, &params::STEPDOWN, &mut p.stepdown, 0.01);
    setting_drag(ui, &params::SAMPLING, &mut p.sampling, 0.01);
    milling_row(ui, &mut p.milling);
    setting_drag(ui, &params::ALLOWANCE, &mut p.allowance, 0.05);
}
