//! "Tooltips on every parameter", machine-checked: every editor with parameters is opened —
//! the model's units and placement, the stock in both modes, the tool library for each cutter
//! shape, the operation editor for each strategy (roughing with its stepover in mm and in %),
//! the export dialect and the Preferences window — and every interactive parameter widget in
//! it (number field, text field, combo box, checkbox, radio button, slider), enabled or not,
//! is hovered. Its own tooltip must appear — one on a surrounding group does not count, and a
//! disabled field must say why it is disabled; the test fails listing, by label, every widget
//! without one.

mod gui_support;

use egui::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use gui_support::{TestApp, app};
use millpond::gui::operations::{RoughingParams, Stepover, Strategy, ToolShape, WaterlineParams};
use millpond_core::params;
use std::collections::BTreeSet;

/// The roles of widgets that set a parameter.
const PARAMETER_ROLES: [Role; 7] = [
    Role::SpinButton,
    Role::TextInput,
    Role::MultilineTextInput,
    Role::ComboBox,
    Role::CheckBox,
    Role::RadioButton,
    Role::Slider,
];

/// A parameter widget found on screen.
#[derive(Clone, Debug)]
struct Widget {
    role: Role,
    label: String,
    /// Its accessible description: egui's `on_hover_text` makes the tooltip that.
    description: Option<String>,
    rect: egui::Rect,
}

impl Widget {
    /// What the failure message calls it: its label, else its value, and where it is.
    fn describe(&self, place: &str) -> String {
        format!(
            "{place}: {:?} \"{}\" at ({:.0}, {:.0})",
            self.role, self.label, self.rect.min.x, self.rect.min.y
        )
    }

    /// Identifies a widget across editors: the same control in the same place is checked once.
    fn key(&self) -> String {
        format!("{:?}|{}|{:?}", self.role, self.label, self.rect)
    }
}

/// Every parameter widget on screen, enabled or not, inside `within` if given.
fn parameter_widgets(t: &TestApp, within: Option<egui::Rect>) -> Vec<Widget> {
    t.harness
        .root()
        .query_all_by(|n| PARAMETER_ROLES.contains(&n.role()))
        .map(|n| {
            let a = n.accesskit_node();
            let label = a
                .label()
                .filter(|l| !l.is_empty())
                .or_else(|| a.value())
                .unwrap_or_default();
            Widget {
                role: a.role(),
                label,
                description: a.description(),
                rect: n.rect(),
            }
        })
        .filter(|w| within.is_none_or(|r| r.contains(w.rect.center())))
        .collect()
}

/// The text of the tooltip showing now, if one is.
fn tooltip(t: &TestApp) -> Option<String> {
    let tip = t.harness.root().query_by(|n| n.role() == Role::Tooltip)?;
    let texts: Vec<String> = std::iter::once(tip)
        .chain(tip.children_recursive())
        .filter_map(|n| {
            let a = n.accesskit_node();
            a.label().filter(|l| !l.is_empty()).or_else(|| a.value())
        })
        .filter(|l| !l.is_empty())
        .collect();
    Some(texts.join(" "))
}

/// Hovers `w` and waits a few frames for its tooltip.
fn hover_tooltip(t: &mut TestApp, w: &Widget) -> Option<String> {
    t.harness.remove_cursor();
    t.harness.run_steps(2);
    t.harness.hover_at(w.rect.center());
    for _ in 0..6 {
        t.harness.step();
        if let Some(tip) = tooltip(t) {
            return Some(tip);
        }
    }
    None
}

/// Checks every parameter widget on screen (inside `within` if given) that was not checked
/// yet; adds the ones without a tooltip to `missing`.
fn check(
    t: &mut TestApp,
    place: &str,
    within: Option<egui::Rect>,
    checked: &mut BTreeSet<String>,
    missing: &mut Vec<String>,
) -> usize {
    t.harness.run_ok();
    let widgets = parameter_widgets(t, within);
    assert!(!widgets.is_empty(), "{place}: no parameter widget found");
    let mut n = 0;
    for w in widgets {
        if !checked.insert(w.key()) {
            continue;
        }
        n += 1;
        // Its own tooltip: egui gives a widget's `on_hover_text` (or, disabled, its
        // `on_disabled_hover_text`) to it as its accessible description. A tooltip that shows
        // without one is a surrounding group's, which says nothing about this field.
        let Some(own) = w.description.clone().filter(|d| !d.trim().is_empty()) else {
            missing.push(format!("{} (no tooltip of its own)", w.describe(place)));
            continue;
        };
        match hover_tooltip(t, &w) {
            Some(tip) if !tip.trim().is_empty() => {
                // The tooltip showing is this widget's, not a neighbour's left over.
                assert!(
                    tip.contains(&own),
                    "{}: shows \"{tip}\", its own is \"{own}\"",
                    w.describe(place)
                );
            }
            _ => missing.push(w.describe(place)),
        }
    }
    t.harness.remove_cursor();
    t.harness.run_ok();
    n
}

fn click(t: &mut TestApp, label: &str) {
    t.harness.get_by_label(label).click();
    t.harness.run_ok();
}

#[test]
fn every_parameter_has_a_tooltip() {
    let mut t = app();
    // Tall enough that the side panel needs no scrolling; tooltips at once, pointer still
    // or not.
    t.harness.set_size(egui::vec2(1400.0, 3000.0));
    t.harness.ctx.all_styles_mut(|s| {
        s.interaction.tooltip_delay = 0.0;
        s.interaction.show_tooltips_only_when_still = false;
    });
    click(&mut t, "Stock");
    click(&mut t, "Tool library");
    let (mut checked, mut missing) = (BTreeSet::new(), Vec::new());
    let mut count = 0;

    // Model units, stock margins, the default tool (ball nose), raster finishing, export.
    count += check(&mut t, "main window", None, &mut checked, &mut missing);
    click(&mut t, "Explicit corners");
    count += check(&mut t, "stock corners", None, &mut checked, &mut missing);
    for shape in [ToolShape::Flat, ToolShape::Bull, ToolShape::VBit] {
        t.select_tool(|x| x.shape == shape);
        let place = format!("tool library, {shape:?}");
        count += check(&mut t, &place, None, &mut checked, &mut missing);
    }
    let raster = t.raster();
    let tool = t.app().doc().operations.get(raster).unwrap().tool;
    t.app_mut().add_operation(
        Strategy::WaterlineFinishing(WaterlineParams::default()),
        tool,
    );
    count += check(
        &mut t,
        "waterline finishing",
        None,
        &mut checked,
        &mut missing,
    );
    let rough = t
        .app_mut()
        .add_operation(Strategy::Roughing(RoughingParams::default()), tool);
    count += check(&mut t, "roughing", None, &mut checked, &mut missing);
    // The other stepover unit.
    t.app_mut().edit_operation(rough, |o| {
        if let Strategy::Roughing(p) = &mut o.strategy {
            p.stepover = match p.stepover {
                Stepover::Mm(_) => Stepover::Percent(40.0),
                Stepover::Percent(_) => Stepover::Mm(2.5),
            };
        }
    });
    count += check(
        &mut t,
        "roughing, other stepover",
        None,
        &mut checked,
        &mut missing,
    );

    click(&mut t, "Preferences");
    assert!(t.app().prefs_ui.open);
    let window = t
        .harness
        .ctx
        .memory(|m| {
            // The only window: the one area of the middle layer.
            let areas = m.areas().visible_layer_ids();
            let mut windows = areas.iter().filter(|l| l.order == egui::Order::Middle);
            windows.find_map(|l| m.area_rect(l.id))
        })
        .expect("the Preferences window is shown");
    count += check(
        &mut t,
        "Preferences",
        Some(window),
        &mut checked,
        &mut missing,
    );
    eprintln!("{count} parameter widgets hovered");
    assert!(count > 40, "only {count} parameter widgets found");
    assert!(
        missing.is_empty(),
        "{} parameter widget(s) without a tooltip:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// The operation editors' number fields say what the setting table says: the tooltip of
/// roughing's Stepdown (and every other number of the strategy) is the table's help with its
/// range, the one the command line and job files check.
#[test]
fn operation_tooltips_are_the_setting_table_s() {
    let mut t = app();
    t.harness.set_size(egui::vec2(1400.0, 3000.0));
    let tool = t.app().doc().operations.get(t.raster()).unwrap().tool;
    t.app_mut()
        .add_operation(Strategy::Roughing(RoughingParams::default()), tool);
    t.harness.run_ok();
    let fields = parameter_widgets(&t, None);
    let field = |label: &str| {
        fields
            .iter()
            .find(|w| w.role == Role::SpinButton && w.label == label)
            .unwrap_or_else(|| panic!("no number field \"{label}\" in {fields:#?}"))
    };
    let stepdown = field(params::STEPDOWN.label);
    assert_eq!(
        stepdown.description.as_deref(),
        Some(params::STEPDOWN.tooltip().as_str())
    );
    assert!(
        params::STEPDOWN
            .tooltip()
            .starts_with(params::STEPDOWN.help)
    );
    for s in [&params::ALLOWANCE, &params::RAMP_ANGLE, &params::SAMPLING] {
        assert_eq!(field(s.label).description, Some(s.tooltip()), "{}", s.key);
    }
}
