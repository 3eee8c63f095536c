//! UI tests of the model: the bundled part at start, loading by drag and drop (off the UI
//! thread), a bad file keeping the previous model, placement, recent files.

mod gui_support;

use gui_support::{TestApp, app, sphere, write_stl};
use millpond::gui::model::{Axis3, Placement, Units};
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn starts_with_the_bundled_model_and_a_ready_operation() {
    let t = app();
    let m = t
        .app()
        .doc()
        .model
        .as_ref()
        .expect("the default model is loaded at start");
    assert_eq!(m.name, millpond::cli::DEFAULT_MODEL_NAME);
    assert!(t.has_text(&m.triangles().to_string()), "{}", t.texts());
    // Roughing with the flat end mill, then finishing with the ball nose: finishing alone
    // would bury the ball in the uncut block.
    let ops = &t.app().doc().operations.list;
    let names: Vec<&str> = ops.iter().map(|o| o.strategy.label()).collect();
    assert_eq!(names, ["Roughing", "Raster finishing"]);
    let shapes: Vec<_> = ops
        .iter()
        .map(|o| t.app().doc().tools.get(o.tool).unwrap().shape)
        .collect();
    assert_eq!(
        shapes,
        [
            millpond::gui::operations::ToolShape::Flat,
            millpond::gui::operations::ToolShape::Ball
        ]
    );
    t.raster();
    // The stock (model box plus margins) is in the 3D view.
    let stock = t.app().stock_shown().expect("the stock is shown");
    let b = m.bounds();
    assert!(stock.min.x < b.min.x && stock.max.z > b.max.z, "{stock:?}");
    assert_eq!(
        millpond::gui::window_title(None, false, Some(&m.name)),
        "Millpond — Untitled job — default-part.stl"
    );
    assert!(t.has_text("Generate"), "{}", t.texts());
}

/// The app with `sphere.stl` (written to its config folder) dropped on it and loaded; the
/// file's path.
fn app_with_a_dropped_sphere() -> (TestApp, PathBuf) {
    let mut t = app();
    let path = t.dir.path().join("sphere.stl");
    write_stl(&path, &sphere());
    t.drop_file(&path);
    assert!(
        t.run_until_model(Duration::from_secs(10), |m| m.name == "sphere.stl"),
        "the dropped model never loaded: {}",
        t.texts()
    );
    (t, path)
}

#[test]
fn dropped_file_loads_and_shows_its_triangle_count() {
    let (mut t, path) = app_with_a_dropped_sphere();
    t.harness.run_ok();
    assert_eq!(t.app().doc().model.as_ref().unwrap().triangles(), 1280);
    assert!(t.has_text("1280"), "{}", t.texts());
    assert!(t.has_text("20.000 × 20.000 × 20.000 mm"), "{}", t.texts());
    assert_eq!(t.app().session.recent.first(), Some(&path));
}

#[test]
fn bad_file_shows_an_error_and_keeps_the_previous_model() {
    let mut t = app();
    let path = t.dir.path().join("broken.stl");
    std::fs::write(
        &path,
        b"solid x\n  facet normal 0 0 1\n    outer loop\n      vertex 0 0\n",
    )
    .unwrap();
    t.drop_file(&path);
    assert!(
        t.run_until(Duration::from_secs(10), |a| !a.banners.is_empty()),
        "no error shown: {}",
        t.texts()
    );
    t.harness.run_ok();
    assert!(t.has_text("Cannot open broken.stl:"), "{}", t.texts());
    assert_eq!(
        t.app().doc().model.as_ref().unwrap().name,
        millpond::cli::DEFAULT_MODEL_NAME,
        "the previous model must stay"
    );
    // The banner can be dismissed.
    use egui_kittest::kittest::Queryable;
    t.harness.get_by_label("Dismiss").click();
    t.harness.run_ok();
    assert!(t.app().banners.is_empty());
    assert!(!t.has_text("Cannot open broken.stl:"));
}

#[test]
fn units_and_placement_rebuild_the_mesh_from_the_original() {
    let (mut t, _) = app_with_a_dropped_sphere();
    t.app_mut().set_units(Units::Inches);
    assert!(t.run_until_model(Duration::from_secs(10), |m| m.units == Units::Inches));
    let s = t.app().doc().model.as_ref().unwrap().bounds().size();
    assert!((s.x - 20.0 * 25.4).abs() < 1e-3, "{s:?}");
    // Placement buttons, by label, as a user clicks them.
    use egui_kittest::kittest::Queryable;
    t.harness.get_by_label("Move to origin").click();
    t.harness.run_ok();
    assert!(t.run_until_model(Duration::from_secs(10), |m| m.placement
        == [Placement::MoveToOrigin]));
    let b = t.app().doc().model.as_ref().unwrap().bounds();
    assert!(b.min.x.abs() < 1e-9 && b.min.y.abs() < 1e-9 && b.min.z.abs() < 1e-9);
    t.app_mut().place(Placement::Rotate(Axis3::X));
    assert!(t.run_until_model(Duration::from_secs(10), |m| m.placement.len() == 2));
    // Still inches, still the same triangles.
    let m = t.app().doc().model.as_ref().unwrap();
    assert_eq!(m.units, Units::Inches);
    assert_eq!(m.triangles(), 1280);
    // Mirror across X: the box flips to the other side of X0, and the triangles' winding
    // flips with it, so the sphere's volume stays positive (normals outward).
    let before = m.bounds();
    t.app_mut().place(Placement::Mirror(Axis3::X));
    assert!(t.run_until_model(Duration::from_secs(10), |m| m.placement.len() == 3));
    let m = t.app().doc().model.as_ref().unwrap();
    let b = m.bounds();
    assert!((b.min.x + before.max.x).abs() < 1e-9 && (b.max.x + before.min.x).abs() < 1e-9);
    let volume: f64 = m
        .mesh
        .triangles()
        .iter()
        .map(|t| {
            let [a, b, c] = t.v;
            a.x * (b.y * c.z - b.z * c.y) - a.y * (b.x * c.z - b.z * c.x)
                + a.z * (b.x * c.y - b.y * c.x)
        })
        .sum::<f64>()
        / 6.0;
    assert!(
        volume > 0.0,
        "mirrored mesh turned inside out: volume {volume}"
    );
    // Center XY: the box's middle on X0 Y0, its bottom on Z0.
    t.harness.get_by_label("Center XY").click();
    t.harness.run_ok();
    assert!(t.run_until_model(Duration::from_secs(10), |m| m.placement.len() == 4));
    let b = t.app().doc().model.as_ref().unwrap().bounds();
    assert!((b.min.x + b.max.x).abs() < 1e-9 && (b.min.y + b.max.y).abs() < 1e-9);
    assert!(b.min.z.abs() < 1e-9, "{b:?}");
}

#[test]
fn every_panel_opens_and_every_field_is_named() {
    use egui_kittest::kittest::Queryable;
    let mut t = app();
    // Collapsed sections, the statistics panel and Preferences; the harness checks after
    // each settle that every input has an accessible name (label or tooltip).
    for header in ["Stock", "Tool library"] {
        t.harness.get_by_label(header).click();
        t.harness.run_ok();
    }
    t.assert_shown(&[
        "Margin X/Y",
        "Safe height",
        "Diameter",
        "Spindle speed",
        "Feed",
    ]);
    t.harness.get_by_label("Explicit corners").click();
    t.harness.run_ok();
    assert!(t.has_text("Z max"), "{}", t.texts());
    // Bull nose and V-bit fields.
    let bull = t.select_tool(|x| x.name.contains("bull"));
    t.harness.run_ok();
    assert!(t.has_text("Corner radius"), "{}", t.texts());
    let vbit = t.select_tool(|x| x.name.contains("V-bit"));
    t.harness.run_ok();
    assert!(t.has_text("Included angle"), "{}", t.texts());
    // A waterline operation's editor.
    t.app_mut().add_operation(
        millpond::gui::operations::Strategy::WaterlineFinishing(Default::default()),
        vbit,
    );
    t.harness.run_ok();
    assert!(
        t.has_text("Stepdown") && t.has_text("Conventional"),
        "{}",
        t.texts()
    );
    // And a roughing operation's.
    t.app_mut().add_operation(
        millpond::gui::operations::Strategy::Roughing(Default::default()),
        bull,
    );
    t.harness.run_ok();
    t.assert_shown(&[
        "Ramp angle",
        "Pattern",
        "Offset",
        "Allowance",
        "Stepover in",
    ]);
    t.harness.get_by_label("Statistics").click();
    t.harness.run_ok();
    assert!(t.app().stats.visible);
    assert!(
        t.has_text("Hosts") && t.has_text("Compute/chunk"),
        "{}",
        t.texts()
    );
    // Sorting by a header click.
    t.harness.get_by_label("Workers").click();
    t.harness.run_ok();
    assert_eq!(t.app().stats.host_sort.column, 3);
    t.harness.get_by_label("Workers ^").click();
    t.harness.run_ok();
    assert!(!t.app().stats.host_sort.ascending);
    t.harness.get_by_label("Preferences").click();
    t.harness.run_ok();
    assert!(t.has_text("Remote servers"), "{}", t.texts());
}

#[test]
fn the_tool_library_is_saved_between_runs() {
    let mut t = app();
    let id = t.app_mut().add_tool(None);
    t.app_mut()
        .edit_tool(id, |x| x.name = "8 mm roughing end mill".into());
    t.app_mut().save_all();
    let dir = t.dir;
    drop(t.harness);
    let t = gui_support::app_in(dir);
    assert!(
        t.app()
            .doc()
            .tools
            .tools
            .iter()
            .any(|x| x.name == "8 mm roughing end mill"),
        "{:?}",
        t.app().doc().tools.tools
    );
}
