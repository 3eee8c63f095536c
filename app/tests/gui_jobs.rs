//! Job files, undo and redo, and the recovery file, in the real app (egui_kittest): a job
//! saved and reopened is the same document and gives the same G-code byte for byte; every
//! change undoes (Ctrl-Z) and redoes (Ctrl-Shift-Z, Ctrl-Y), a drag on a number is one step;
//! the title shows the job and its unsaved mark; unsaved work survives a crash; a moved or
//! changed model and a bad job file are told, never silently used.

mod gui_support;

use egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable as _;
use gui_support::{TestApp, app, app_in, cli_program, write_stl};
use millpond::gui::document::Command;
use millpond::gui::operations::Strategy;
use millpond_core::job_file::Job;
use std::path::Path;
use std::time::Duration;

/// A CAD-like part with integer coordinates: a 30 × 20 × 10 block with a 4 mm deep pocket.
fn pocket_block() -> Vec<millpond_core::Triangle> {
    millpond_core::models::height_field_solid((0.0, 30.0), (0.0, 20.0), 30, 20, 0.0, |x, y| {
        if (10.0..=20.0).contains(&x) && (5.0..=15.0).contains(&y) {
            6.0
        } else {
            10.0
        }
    })
}

/// The app with `part.stl` (the pocket block) loaded from `dir`, and quick operations.
fn app_with_part(dir: &Path) -> TestApp {
    let mut t = app();
    let part = dir.join("part.stl");
    write_stl(&part, &pocket_block());
    t.app_mut().open_path(part);
    wait_for_part(&mut t);
    t.set_raster(|p| {
        p.stepover = 1.0;
        p.sampling = 0.5;
    });
    t
}

/// Runs frames until `part.stl` is the document's model (a bounded wait).
fn wait_for_part(t: &mut TestApp) {
    assert!(
        t.run_until_model(Duration::from_secs(20), |m| m.name == "part.stl"),
        "part.stl never loaded: {}",
        t.texts()
    );
}

/// Generate all, then export to `out`; returns the program.
fn generate_and_export(t: &mut TestApp, out: &Path) -> Vec<u8> {
    t.app_mut().generate(true);
    assert!(
        t.run_until(Duration::from_secs(120), |a| !a.compute.is_running()
            && a.doc()
                .operations
                .list
                .iter()
                .all(|o| a.toolpath(o.id).is_some())),
        "the job never finished"
    );
    t.app_mut().exporter.last = None;
    t.app_mut().export_to(out.to_path_buf());
    assert!(t.run_until(Duration::from_secs(60), |a| a.exporter.last.is_some()));
    assert!(
        matches!(t.app().exporter.last, Some(Ok(_))),
        "{:?}",
        t.app().exporter.last
    );
    std::fs::read(out).unwrap()
}

fn title(t: &TestApp) -> String {
    millpond::gui::window_title(
        t.app()
            .job_path()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .as_deref(),
        t.app().is_dirty(),
        t.app().doc().model.as_ref().map(|m| m.name.as_str()),
    )
}

#[test]
fn a_saved_job_reopens_as_the_same_document_and_the_same_gcode() {
    let work = tempfile::tempdir().unwrap();
    let mut t = app_with_part(work.path());
    assert!(t.app().is_dirty(), "the raster edit is unsaved");
    assert!(
        title(&t).starts_with("Millpond — Untitled job*"),
        "{}",
        title(&t)
    );
    // A few more settings a job must keep.
    let raster = t.raster();
    t.app_mut()
        .edit_operation(raster, |o| o.name = "Finish the pocket".into());
    let mut stock = t.app().doc().stock.clone();
    stock.margin_xy = 3.0;
    stock.zero.z = millpond_core::setup::ZZero::StockTop;
    t.app_mut().execute(Command::SetStock(stock));
    let mut output = t.app().doc().output.clone();
    output.post = "grbl".into();
    output.spindle_dwell_s = 1.5;
    t.app_mut().execute(Command::SetOutput(output));
    let before = generate_and_export(&mut t, &work.path().join("before.ngc"));

    let job_path = work.path().join("pocket.millpond");
    assert!(t.app_mut().save_job_to(&job_path));
    assert!(!t.app().is_dirty());
    assert_eq!(title(&t), "Millpond — pocket.millpond — part.stl");
    let saved = t.app().doc().to_job().unwrap();
    let text = std::fs::read_to_string(&job_path).unwrap();
    assert!(
        text.contains("file = \"part.stl\""),
        "relative model path: {text}"
    );
    assert!(!text.to_lowercase().contains("secret"), "{text}");

    // The command line runs the saved job to the same program.
    let cli_out = work.path().join("cli.ngc");
    let cli = cli_program(&job_path, &cli_out, |_| {});
    if cli != before {
        let (a, b) = (
            String::from_utf8_lossy(&before),
            String::from_utf8_lossy(&cli),
        );
        let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        panic!(
            "`millpond toolpath --job` and the window's export differ (first at line {first:?}):\n{}\n---\n{}",
            a.lines().take(30).collect::<Vec<_>>().join("\n"),
            b.lines().take(30).collect::<Vec<_>>().join("\n")
        );
    }

    // A fresh window opens it.
    let mut u = app();
    u.app_mut().open_job(&job_path);
    wait_for_part(&mut u);
    assert!(!u.app().is_dirty(), "an opened job has no unsaved changes");
    let reopened = u.app().doc().to_job().unwrap();
    assert_eq!(reopened.operations.len(), saved.operations.len());
    assert_eq!(
        reopened.to_toml(&job_path).unwrap(),
        saved.to_toml(&job_path).unwrap(),
        "the same job"
    );
    let after = generate_and_export(&mut u, &work.path().join("after.ngc"));
    assert!(
        before == after,
        "Generate all on the reopened job gives other G-code"
    );
}

/// The app; its raster operation's id; and what reads that operation's stepover (found by
/// its id, so after undo brings the operation back too).
fn app_and_raster_stepover() -> (TestApp, u64, impl Fn(&TestApp) -> f64) {
    let t = app();
    let id = t.raster();
    let stepover = move |t: &TestApp| match &t.app().doc().operations.get(id).unwrap().strategy {
        Strategy::RasterFinishing(p) => p.stepover,
        _ => unreachable!("operation {id} is not a raster"),
    };
    (t, id, stepover)
}

#[test]
fn undo_and_redo_every_change_from_the_keyboard_and_the_edit_menu() {
    let (mut t, raster, stepover) = app_and_raster_stepover();
    let first = stepover(&t);
    assert!(!t.app().is_dirty());
    t.set_raster(|p| p.stepover = 0.7);
    t.app_mut().close_edit();
    let ops = t.app().doc().operations.list.len();
    t.app_mut().remove_operation(raster);
    assert_eq!(t.app().doc().operations.list.len(), ops - 1);
    assert!(t.app().is_dirty());

    // Ctrl-Z twice: the operation is back, then its stepover.
    t.harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    t.harness.run_ok();
    assert_eq!(t.app().doc().operations.list.len(), ops);
    assert_eq!(stepover(&t), 0.7);
    t.harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    t.harness.run_ok();
    assert_eq!(stepover(&t), first);
    assert!(!t.app().is_dirty(), "undone to the state it started in");
    // Ctrl-Y and Ctrl-Shift-Z redo.
    t.harness.key_press_modifiers(Modifiers::COMMAND, Key::Y);
    t.harness.run_ok();
    assert_eq!(stepover(&t), 0.7);
    t.harness
        .key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    t.harness.run_ok();
    assert_eq!(t.app().doc().operations.list.len(), ops - 1);
    // The Edit menu names what it undoes.
    t.harness.get_by_label("Edit").click();
    t.harness.run_ok();
    t.harness.get_by_label("Undo remove operation").click();
    t.harness.run_ok();
    assert_eq!(t.app().doc().operations.list.len(), ops);
}

#[test]
fn a_drag_on_a_number_is_one_undo_step() {
    let (mut t, _, stepover) = app_and_raster_stepover();
    let first = stepover(&t);
    let rect = t.harness.get_by_label("Stepover").rect();
    let start = rect.center();
    let send = |t: &mut TestApp, event| t.harness.input_mut().events.push(event);
    let button = |pos, pressed| egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: Modifiers::NONE,
    };
    send(&mut t, egui::Event::PointerMoved(start));
    t.harness.step();
    send(&mut t, button(start, true));
    t.harness.step();
    for i in 1..=30 {
        let p = start + egui::vec2(i as f32 * 3.0, 0.0);
        send(&mut t, egui::Event::PointerMoved(p));
        t.harness.step();
    }
    let end = start + egui::vec2(90.0, 0.0);
    send(&mut t, button(end, false));
    t.harness.run_ok();
    let dragged = stepover(&t);
    assert!(
        dragged > first,
        "the drag changed the stepover: {first} -> {dragged}"
    );
    t.app_mut().undo();
    assert_eq!(stepover(&t), first, "one undo takes back the whole drag");
}

#[test]
fn unsaved_work_is_offered_after_a_crash_and_quitting_never_waits() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("config");
    let recovery = config.join("recovery.millpond");
    let mut t = gui_support::app_in_path(&config);
    t.set_raster(|p| p.stepover = 0.45);
    // Written a few seconds after the change, without a click.
    assert!(
        t.run_until(Duration::from_secs(10), |_| recovery.is_file()),
        "no recovery file"
    );
    let job = Job::load(&recovery).unwrap();
    assert!(job.operations.iter().any(|o| matches!(
        &o.strategy,
        Strategy::RasterFinishing(p) if p.stepover == 0.45
    )));
    // Ctrl-Q quits at once, with no question about the unsaved job.
    let t0 = std::time::Instant::now();
    t.harness.key_press_modifiers(Modifiers::COMMAND, Key::Q);
    t.harness.run_ok();
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert!(!t.has_text("Save changes"), "{}", t.texts());
    drop(t);
    // The next start offers it.
    let mut u = gui_support::app_in_path(&config);
    assert!(u.app().recovery_offered());
    assert!(u.has_text("unsaved changes"), "{}", u.texts());
    u.harness.get_by_label("Restore").click();
    u.harness.run_ok();
    assert!(u.run_until(Duration::from_secs(20), |a| a.doc().model.is_some()));
    assert!(
        u.app().doc().operations.list.iter().any(|o| matches!(
            &o.strategy,
            Strategy::RasterFinishing(p) if p.stepover == 0.45
        )),
        "{:?}",
        u.app().doc().operations.list
    );
    assert!(u.app().is_dirty(), "restored work is still unsaved");
    // Saving it removes the recovery file.
    let path = root.path().join("saved.millpond");
    assert!(u.app_mut().save_job_to(&path));
    assert!(!recovery.exists());
}

#[test]
fn a_moved_model_is_found_next_to_the_job_and_a_changed_one_is_warned_of() {
    let work = tempfile::tempdir().unwrap();
    let models = work.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let mut t = app_with_part(&models);
    let job_path = work.path().join("jobs/pocket.millpond");
    std::fs::create_dir(job_path.parent().unwrap()).unwrap();
    assert!(t.app_mut().save_job_to(&job_path));
    // The model moves next to the job file; its old place is empty.
    std::fs::rename(models.join("part.stl"), job_path.with_file_name("part.stl")).unwrap();
    let mut u = app();
    u.app_mut().open_job(&job_path);
    wait_for_part(&mut u);
    assert!(u.app().banners.is_empty(), "{:?}", u.app().banners);

    // Changed since saving: loaded, with a warning.
    let mut other = pocket_block();
    other.truncate(other.len() - 2);
    write_stl(&job_path.with_file_name("part.stl"), &other);
    let mut v = app();
    v.app_mut().open_job(&job_path);
    assert!(v.run_until_model(Duration::from_secs(20), |m| m.name == "part.stl"));
    assert!(
        v.app()
            .banners
            .iter()
            .any(|b| b.contains("has changed since the job was saved")),
        "{:?}",
        v.app().banners
    );

    // Gone altogether: the window asks where it is.
    std::fs::remove_file(job_path.with_file_name("part.stl")).unwrap();
    let mut w = app();
    w.app_mut().open_job(&job_path);
    w.harness.run_ok();
    assert!(
        w.app().banners.iter().any(|b| b.contains("is not there")),
        "{:?}",
        w.app().banners
    );
}

#[test]
fn a_bad_job_file_changes_nothing_and_says_where_it_is_wrong() {
    let work = tempfile::tempdir().unwrap();
    let mut t = app();
    let before = t.app().doc().to_job().unwrap();
    let bad = work.path().join("bad.millpond");
    let good = before.to_toml(&bad).unwrap();
    std::fs::write(&bad, good.replace("stepdown = 2.0", "stepdown = -2.0")).unwrap();
    t.app_mut().open_job(&bad);
    t.harness.run_ok();
    let banner = t.app().banners.last().cloned().unwrap_or_default();
    for part in ["bad.millpond", "line", "roughing.stepdown"] {
        assert!(banner.contains(part), "{banner}");
    }
    assert_eq!(
        t.app().doc().to_job().unwrap(),
        before,
        "nothing half-loaded"
    );
    assert!(t.app().job_path().is_none());
}

#[test]
fn importing_tools_asks_about_taken_numbers_and_undoes_in_one_step() {
    let work = tempfile::tempdir().unwrap();
    let mut t = app();
    let here = t.app().doc().tools.tools.clone();
    // A colleague's library: one of ours unchanged, one of our numbers for another tool,
    // and a tool with a new number.
    let mut theirs = vec![here[0].clone()];
    let mut clash = here[1].clone();
    clash.name = "Their 1/4 in end mill".into();
    clash.diameter = 6.35;
    theirs.push(clash);
    let mut fresh = here[0].clone();
    fresh.number = 30;
    fresh.name = "Engraver".into();
    theirs.push(fresh);
    let lib = work.path().join("colleague.toml");
    millpond_core::job_file::save_tool_library(&lib, &theirs).unwrap();

    t.app_mut().import_tools(&lib);
    t.harness.run_ok();
    assert!(t.app().pending_import.is_some(), "the clash is asked about");
    assert!(t.has_text("Their 1/4 in end mill"), "{}", t.texts());
    assert_eq!(
        t.app().doc().tools.tools,
        here,
        "nothing changes before the answer"
    );
    t.harness.get_by_label("Add under a new number").click();
    t.harness.run_ok();
    t.harness.get_by_label("Import").click();
    t.harness.run_ok();
    let tools = &t.app().doc().tools.tools;
    assert_eq!(tools.len(), here.len() + 2, "{tools:?}");
    assert!(tools.iter().any(|x| x.name == "Engraver" && x.number == 30));
    assert!(
        tools
            .iter()
            .any(|x| x.name == "Their 1/4 in end mill" && x.number == 31)
    );
    assert_eq!(tools[1], here[1], "ours keeps its number");
    t.app_mut().undo();
    assert_eq!(
        t.app().doc().tools.tools,
        here,
        "one undo takes the import back"
    );

    // Exported and read back, the library is the same tools.
    let out = work.path().join("ours.toml");
    t.app_mut().export_tools(&out);
    let back = millpond_core::job_file::load_tool_library(&out).unwrap();
    assert_eq!(back.len(), here.len());
    assert!(
        back.iter()
            .zip(&here)
            .all(|(a, b)| a.number == b.number && a.name == b.name)
    );
}

#[test]
fn a_placement_and_a_stock_edit_undo_like_any_other_change() {
    let mut t = app();
    let original = t.app().doc().model.as_ref().unwrap().bounds();
    t.harness.get_by_label("Center XY").click();
    assert!(
        t.run_until_model(Duration::from_secs(20), |m| m.placement.len() == 1),
        "the placement never applied"
    );
    let mut stock = t.app().doc().stock.clone();
    stock.margin_xy = 9.0;
    t.app_mut().execute(Command::SetStock(stock));
    t.harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    t.harness.run_ok();
    assert_eq!(t.app().doc().stock.margin_xy, 2.0);
    t.harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    t.harness.run_ok();
    let m = t.app().doc().model.as_ref().unwrap();
    assert!(m.placement.is_empty(), "{:?}", m.placement);
    assert_eq!(m.bounds(), original, "the part is back where it was");
    assert_eq!(
        t.app().stock_shown().map(|s| s.min.x),
        Some(original.min.x - 2.0)
    );
    assert!(!t.app().is_dirty());
}

/// The user's own posts (the config folder's `posts/`) are in the window's Post list, and
/// Export writes with the one chosen; a post file with a mistake is named in a banner with
/// its line and key, and is not listed.
#[test]
fn a_users_post_is_listed_and_export_writes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let posts = dir.path().join("posts");
    std::fs::create_dir_all(&posts).unwrap();
    let linuxcnc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/posts/linuxcnc.toml"),
    )
    .unwrap();
    let shop = linuxcnc
        .replacen("name = \"LinuxCNC\"", "name = \"Shop mill\"", 1)
        .replacen("comments = \"parentheses\"", "comments = \"semicolon\"", 1);
    std::fs::write(posts.join("shop.toml"), shop).unwrap();
    std::fs::write(
        posts.join("broken.toml"),
        "name = \"Broken\"\nextension = 3\n",
    )
    .unwrap();
    let mut t = app_in(dir);
    let banner = t.app().banners.join("\n");
    assert!(
        banner.contains("broken.toml, line 2, extension:"),
        "{banner}"
    );
    assert!(t.app().posts.posts.iter().all(|p| p.name != "Broken"));

    // Choose it in the list, as a user does.
    let post = t.harness.get_by_label("Post");
    post.scroll_to_me();
    t.harness.run_ok();
    t.harness.get_by_label("Post").click();
    t.harness.run_ok();
    t.harness.get_by_label("Shop mill (shop.toml)").click();
    t.harness.run_ok();
    assert_eq!(t.app().doc().output.post, "shop");

    let work = tempfile::tempdir().unwrap();
    let g = generate_and_export(&mut t, &work.path().join("part.ngc"));
    let g = String::from_utf8(g).unwrap();
    assert!(
        g.lines().any(|l| l.starts_with("; Operation: ")),
        "{}",
        &g[..400.min(g.len())]
    );
    assert!(!g.contains('('), "comments in the post's style only");
}
