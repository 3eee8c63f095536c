//! UI tests of the model: the bundled part at start, loading by drag and drop (off the UI
//! thread), a bad file keeping the previous model, placement, recent files.

mod gui_support;

use gui_support::{app, sphere, write_stl};
use millpond::gui::model::{Axis3, Placement, Units};
use std::time::Duration;

#[test]
fn starts_with_the_bundled_model_and_a_ready_operation() {
    let t = app();
    let m = t
        .app()
        .model
        .as_ref()
        .expect("the default model is loaded at start");
    assert_eq!(m.name, millpond::cli::DEFAULT_MODEL_NAME);
    assert!(t.has_text(&m.triangles().to_string()), "{}", t.texts());
    assert_eq!(t.app().operations.list.len(), 1);
    assert_eq!(
        millpond::gui::window_title(Some(&m.name)),
        "Millpond — default-part.stl"
    );
    assert!(t.has_text("Generate"), "{}", t.texts());
}

#[test]
fn dropped_file_loads_and_shows_its_triangle_count() {
    let mut t = app();
    let path = t.dir.path().join("sphere.stl");
    write_stl(&path, &sphere());
    t.drop_file(&path);
    assert!(
        t.run_until(Duration::from_secs(10), |a| a
            .model
            .as_ref()
            .is_some_and(|m| m.name == "sphere.stl")),
        "the dropped model never loaded: {}",
        t.texts()
    );
    t.harness.run_ok();
    assert_eq!(t.app().model.as_ref().unwrap().triangles(), 1280);
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
        t.app().model.as_ref().unwrap().name,
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
    let mut t = app();
    let path = t.dir.path().join("sphere.stl");
    write_stl(&path, &sphere());
    t.drop_file(&path);
    assert!(t.run_until(Duration::from_secs(10), |a| {
        a.model.as_ref().is_some_and(|m| m.name == "sphere.stl")
    }));
    t.app_mut().set_units(Units::Inches);
    assert!(t.run_until(Duration::from_secs(10), |a| {
        a.model.as_ref().is_some_and(|m| m.units == Units::Inches)
    }));
    let s = t.app().model.as_ref().unwrap().bounds().size();
    assert!((s.x - 20.0 * 25.4).abs() < 1e-3, "{s:?}");
    // Placement buttons, by label, as a user clicks them.
    use egui_kittest::kittest::Queryable;
    t.harness.get_by_label("Move to origin").click();
    t.harness.run_ok();
    assert!(t.run_until(Duration::from_secs(10), |a| {
        a.model
            .as_ref()
            .is_some_and(|m| m.placement == [Placement::MoveToOrigin])
    }));
    let b = t.app().model.as_ref().unwrap().bounds();
    assert!(b.min.x.abs() < 1e-9 && b.min.y.abs() < 1e-9 && b.min.z.abs() < 1e-9);
    t.app_mut().place(Placement::Rotate(Axis3::X));
    assert!(t.run_until(Duration::from_secs(10), |a| {
        a.model.as_ref().is_some_and(|m| m.placement.len() == 2)
    }));
    // Still inches, still the same triangles.
    let m = t.app().model.as_ref().unwrap();
    assert_eq!(m.units, Units::Inches);
    assert_eq!(m.triangles(), 1280);
}
