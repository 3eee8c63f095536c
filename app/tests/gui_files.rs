//! UI tests of file choices without the desktop's dialog: the built-in browser exports the
//! G-code (typing where, as a user does) and opens a model, with the recent folders offered.

mod gui_support;

use egui_kittest::kittest::Queryable;
use gui_support::{TestApp, app_in};
use millpond::gui::dialogs::FileBrowser;
use millpond::gui::preferences::Preferences;
use std::path::Path;
use std::time::Duration;

/// The app with the built-in browser chosen in Preferences (what happens by itself where the
/// desktop has no portal; a test must not open a real desktop dialog).
fn app_with_built_in_browser() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let prefs = Preferences {
        file_browser: FileBrowser::BuiltIn,
        ..Preferences::default()
    };
    prefs.save(dir.path()).unwrap();
    app_in(dir)
}

/// Types `text` into the single-line field whose value is now `current`, then presses Enter.
fn retype(t: &mut TestApp, current: &str, text: &str) {
    fn field<'a>(t: &'a TestApp, current: &str) -> egui_kittest::Node<'a> {
        t.harness
            .get_all_by_role(egui::accesskit::Role::TextInput)
            .find(|n| n.value().as_deref() == Some(current))
            .unwrap_or_else(|| panic!("no text field showing {current:?}"))
    }
    field(t, current).focus();
    t.harness.run_ok();
    t.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    field(t, current).type_text(text);
    t.harness.run_ok();
    t.harness.key_press(egui::Key::Enter);
    t.harness.run_ok();
}

#[test]
fn the_built_in_browser_exports_gcode_and_opens_a_model() {
    let mut t = app_with_built_in_browser();
    let op = t.raster();
    t.set_raster(|p| p.stepover = 2.0);
    t.app_mut().generate(false);
    assert!(
        t.run_until(Duration::from_secs(60), |a| a.toolpath(op).is_some()),
        "{}",
        t.texts()
    );
    t.harness.run_ok();

    // Export: the built-in browser opens with the program's name filled in.
    let out_dir = tempfile::tempdir().unwrap();
    t.app_mut().export_dialog();
    t.harness.run_ok();
    assert!(t.has_text("Export G-code (G-code)"), "{}", t.texts());
    let target = out_dir.path().join("lever.ngc");
    retype(&mut t, "default-part.ngc", &target.display().to_string());
    assert!(
        t.run_until(Duration::from_secs(30), |a| a
            .exporter
            .last
            .as_ref()
            .is_some_and(|l| l.is_ok())),
        "{:?} {}",
        t.app().exporter.last,
        t.texts()
    );
    let g = std::fs::read_to_string(&target).expect("the program was written");
    assert!(g.contains("(Operation: Raster finishing 2)"), "{g:.300}");
    assert!(g.trim_end().ends_with('%'));

    // Open: the same browser, STL files only.
    let part = out_dir.path().join("bracket.stl");
    let tris =
        millpond_core::models::geodesic_sphere(millpond_core::Point3::new(0.0, 0.0, 0.0), 12.0, 2);
    millpond_core::stl::write_binary(std::fs::File::create(&part).unwrap(), "b", &tris).unwrap();
    t.app_mut().open_dialog();
    t.harness.run_ok();
    assert!(t.has_text("Open model (STL models)"), "{}", t.texts());
    // The path field shows the folder; go to ours and pick the file by name.
    let start = t
        .harness
        .query_all_by_role(egui::accesskit::Role::TextInput)
        .filter_map(|n| n.value())
        .find(|v| Path::new(v).is_dir())
        .expect("the browser's folder field");
    retype(&mut t, &start, &out_dir.path().display().to_string());
    assert!(t.has_text("bracket.stl"), "{}", t.texts());
    let texts = t.texts();
    assert!(
        !texts.split(" | ").any(|l| l == "lever.ngc"),
        "only STL files are listed: {texts}"
    );
    t.harness.get_by_label("bracket.stl").click();
    t.harness.run_ok();
    t.harness.get_by_label("Open").click();
    assert!(
        t.run_until_model(Duration::from_secs(30), |m| m.name == "bracket.stl"),
        "{}",
        t.texts()
    );
}
