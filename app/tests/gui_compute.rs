//! UI tests of computing: Generate by its label, the toolpath and its statistics showing,
//! Cancel honoured within 0.1 s, Generate all in machining order, G-code export, Simulate.

mod gui_support;

use egui_kittest::kittest::Queryable;
use gui_support::app;
use millpond::gui::MillpondApp;
use millpond::gui::document::Command;
use millpond::gui::operations::{RoughingParams, Stepover, Strategy, ToolShape, WaterlineParams};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One at a time: each test keeps every core busy, and the cancel test times the UI.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The app after a click on Generate, its first operation made a raster job of a few million
/// points in well over a hundred chunks (seconds of work); and that operation's id.
fn generating_a_long_job() -> (gui_support::TestApp, u64) {
    let mut t = app();
    let op = t.raster();
    t.set_raster(|p| {
        p.stepover = 0.02;
        p.sampling = 0.02;
    });
    t.harness.get_by_label("Generate").click();
    (t, op)
}

#[test]
fn generate_shows_the_toolpath_and_its_statistics_then_exports() {
    let _one = one_at_a_time();
    let mut t = app();
    let op = t.raster();
    t.harness.get_by_label("Generate").click();
    assert!(
        t.run_until(Duration::from_secs(120), |a| a.toolpath(op).is_some()),
        "no toolpath: {}",
        t.texts()
    );
    t.harness.run_ok();
    assert!(!t.app().compute.is_running());
    let tp = t.app().toolpath(op).unwrap().clone();
    assert!(tp.moves.len() > 100, "{} moves", tp.moves.len());
    let stats = t.app().results[&op].stats;
    assert!(stats.cut_length > 1000.0, "{stats:?}");
    // Its statistics and the export summary are on screen.
    assert!(t.has_text("Cut "), "{}", t.texts());
    assert!(t.has_text("Estimated machining time"), "{}", t.texts());
    assert!(t.has_text("1 operation: cut"), "{}", t.texts());
    assert!(t.has_text("done"), "{}", t.texts());
    // Finishing without the default job's roughing runs the ball nose through the uncut
    // block: said beside the Export button, naming the operation as `millpond toolpath` does
    // (its place in the program, then its name).
    assert!(
        t.run_until(Duration::from_secs(60), |a| !a.program_check.busy()
            && !a.program_check.warnings.is_empty()),
        "no warning: {}",
        t.texts()
    );
    t.harness.run_ok();
    let name = t.app().doc().operations.get(op).unwrap().name.clone();
    assert!(
        t.has_text(&format!("Warning: 1. {name}: move ")) && t.has_text("deep into the stock"),
        "{}",
        t.texts()
    );

    // Hiding it in the view: its row's Show box.
    let row = t
        .app()
        .doc()
        .operations
        .list
        .iter()
        .position(|o| o.id == op)
        .unwrap();
    t.harness
        .query_all_by_label("Show")
        .nth(row)
        .expect("a Show box per operation")
        .click();
    t.harness.run_ok();
    assert!(!t.app().doc().operations.get(op).unwrap().visible);

    // G-code for the enabled operations, written off the UI thread.
    let out = t.dir.path().join("part.ngc");
    t.app_mut().export_to(out.clone());
    assert!(t.run_until(Duration::from_secs(30), |a| a.exporter.last.is_some()));
    assert_eq!(
        t.app().exporter.last,
        Some(Ok(format!("Saved {}", out.display())))
    );
    let g = std::fs::read_to_string(&out).unwrap();
    assert!(g.starts_with("%\n"), "{}", &g[..100]);
    assert!(g.contains("T1 M6") && g.contains("S18000 M3") && g.contains("M2"));
    assert!(g.contains("(Operation: Raster finishing 2)"));
}

/// While an operation computes, the chunks finished so far are drawn and the drawing grows;
/// when it is done, the toolpath takes the preview's place.
#[test]
fn the_toolpath_shows_as_it_is_assembled() {
    let _one = one_at_a_time();
    let (mut t, op) = generating_a_long_job();
    let shown = |a: &MillpondApp| {
        let p = a.compute.preview()?;
        Some((p.chunks, p.lines.len(), p.points))
    };
    assert!(
        t.run_until(Duration::from_secs(30), |a| shown(a).is_some()),
        "no preview while computing: {}",
        t.texts()
    );
    let first = shown(t.app()).unwrap();
    let total = t.app().compute.current().unwrap().progress.chunks_total;
    assert!(first.1 > 0 && first.2 > 0, "an empty preview: {first:?}");
    assert!(
        first.0 < total,
        "the job was over at its first preview: {first:?}"
    );
    assert!(
        t.app().preview_in_view(op).is_some(),
        "not handed to the 3D view"
    );
    assert!(t.app().toolpath(op).is_none());
    // Later, still computing, more of it.
    assert!(
        t.run_until(Duration::from_secs(30), |a| shown(a)
            .is_some_and(|s| s.0 > first.0 + 2 && a.toolpath(op).is_none())),
        "the preview did not grow: {:?} after {first:?}",
        shown(t.app())
    );
    let later = shown(t.app()).unwrap();
    assert!(
        later.1 > first.1 && later.2 > first.2,
        "{later:?} after {first:?}"
    );
    assert!(t.app().compute.is_running());
    // The view follows, a few times a second.
    let in_view = t.app().preview_in_view(op).unwrap_or(0);
    assert!(
        t.run_until(Duration::from_secs(5), |a| a
            .preview_in_view(op)
            .is_some_and(|n| n > in_view)
            || a.toolpath(op).is_some()),
        "the view's preview stayed at {in_view} segments"
    );
    eprintln!("preview: {first:?} then {later:?} of {total} chunks");
    assert!(
        t.run_until(Duration::from_secs(120), |a| a.toolpath(op).is_some()),
        "no toolpath: {}",
        t.texts()
    );
    assert!(
        t.app().compute.preview().is_none(),
        "the preview outlived the job"
    );
    assert_eq!(t.app().preview_in_view(op), None);
    assert!(t.app().toolpath(op).unwrap().moves.len() > 100);
}

#[test]
fn cancel_stops_the_workers_within_a_tenth_of_a_second() {
    let _one = one_at_a_time();
    let (mut t, op) = generating_a_long_job();
    assert!(
        t.run_until(Duration::from_secs(30), |a| a
            .compute
            .current()
            .is_some_and(|c| c.progress.chunks_done > 0)),
        "the job never got going: {}",
        t.texts()
    );
    assert!(t.has_text("chunks"), "progress not shown: {}", t.texts());
    t.harness.run_steps(1);
    assert!(t.app().preview_in_view(op).is_some(), "no preview drawn");
    let click = Instant::now();
    t.harness.get_by_label("Cancel").click();
    assert!(
        t.run_until(Duration::from_secs(5), |a| !a.compute.is_running()),
        "still computing 5 s after Cancel"
    );
    let wall = click.elapsed();
    // What was computed so far is dropped with the run.
    assert!(t.app().compute.preview().is_none());
    assert_eq!(t.app().preview_in_view(op), None);
    let status = t.app().status.clone();
    assert!(status.starts_with("Cancelled"), "{status}");
    // "workers stopped N ms after the click", measured from the click being handled to the
    // workers returning.
    let ms: f64 = status
        .split("stopped ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no latency in \"{status}\""));
    eprintln!("cancel: workers stopped {ms} ms after the click; UI said so {wall:?} after it");
    assert!(ms < 100.0, "workers took {ms} ms to stop");
    assert!(
        wall < Duration::from_millis(100),
        "the UI took {wall:?} to show the cancel"
    );
    assert!(t.app().toolpath(op).is_none());
    t.harness.run_ok();
    assert!(t.has_text("Cancelled"), "{}", t.texts());
}

#[test]
fn generate_all_runs_enabled_operations_in_order_and_exports_them_together() {
    let _one = one_at_a_time();
    let mut t = app();
    let raster = t.raster();
    let ball = t.app().doc().operations.get(raster).unwrap().tool;
    // This test builds its own roughing: the default job's goes.
    let default_rough = t.app().doc().operations.list[0].id;
    assert_ne!(default_rough, raster);
    t.app_mut().remove_operation(default_rough);
    let flat = t
        .app()
        .doc()
        .tools
        .tools
        .iter()
        .find(|x| x.shape == ToolShape::Flat)
        .unwrap()
        .clone();
    let waterline = t.app_mut().add_operation(
        Strategy::WaterlineFinishing(WaterlineParams {
            stepdown: 4.0,
            sampling: 0.4,
            ..WaterlineParams::default()
        }),
        ball,
    );
    let rough = t.app_mut().add_operation(
        Strategy::Roughing(RoughingParams {
            stepdown: 6.0,
            stepover: Stepover::Mm(3.0),
            sampling: 0.5,
            ..RoughingParams::default()
        }),
        flat.id,
    );
    let disabled = t
        .app_mut()
        .add_operation(Strategy::defaults().remove(1), ball);
    t.app_mut().edit_operation(disabled, |o| o.enabled = false);
    // Machining order: roughing, waterline, raster.
    t.app_mut().execute(Command::MoveOperation(rough, true));
    t.app_mut().execute(Command::MoveOperation(rough, true));
    t.app_mut().execute(Command::MoveOperation(waterline, true));
    t.app_mut().execute(Command::MoveOperation(rough, true));
    let order: Vec<u64> = t.app().doc().operations.list.iter().map(|o| o.id).collect();
    assert_eq!(order, [rough, waterline, raster, disabled]);
    t.harness.run_ok();
    t.harness.get_by_label("Generate all").click();
    assert!(
        t.run_until(Duration::from_secs(180), |a| !a.compute.is_running()
            && a.toolpath(raster).is_some()),
        "{}",
        t.texts()
    );
    for id in [rough, waterline] {
        assert!(t.app().toolpath(id).is_some(), "{:?}", t.app().op_errors);
    }
    assert!(
        t.app().toolpath(disabled).is_none(),
        "a disabled operation was computed"
    );
    // Roughing stays in the stock and above its bottom.
    let stock = t
        .app()
        .doc()
        .stock
        .aabb(t.app().doc().model.as_ref().unwrap().bounds());
    let tp = t.app().toolpath(rough).unwrap().clone();
    assert!(tp.moves.iter().all(|m| m.to.z >= stock.min.z - 1e-9));
    let summary = t.app().export_summary();
    assert_eq!(summary.operations, 3);
    let out = t.dir.path().join("all.ngc");
    t.app_mut().export_to(out.clone());
    assert!(t.run_until(Duration::from_secs(30), |a| a.exporter.last.is_some()));
    let g = std::fs::read_to_string(&out).unwrap();
    let at = |s: &str| g.find(s).unwrap_or_else(|| panic!("no {s} in the program"));
    let (r, w, f) = (
        at("(Operation: Roughing 3)"),
        at("(Operation: Waterline finishing 2)"),
        at("(Operation: Raster finishing 2)"),
    );
    assert!(r < w && w < f, "operations out of order");
    assert!(
        at(&format!("T{} M6", flat.number)) < w,
        "roughing with the flat end mill"
    );
    // GRBL: no tool changes.
    let mut output = t.app().doc().output.clone();
    output.post = "grbl".into();
    t.app_mut().execute(Command::SetOutput(output));
    let out = t.dir.path().join("all.nc");
    t.app_mut().export_to(out.clone());
    assert!(t.run_until(Duration::from_secs(30), |a| {
        a.exporter
            .last
            .as_ref()
            .is_some_and(|l| l.as_ref().is_ok_and(|m| m.ends_with("all.nc")))
    }));
    let g = std::fs::read_to_string(&out).unwrap();
    assert!(!g.contains("M6"), "GRBL has no tool changes");
}

#[test]
fn a_bad_parameter_is_reported_not_computed() {
    let _one = one_at_a_time();
    let mut t = app();
    let op = t.raster();
    t.set_raster(|p| p.stepover = 0.0);
    t.app_mut().generate(false);
    t.harness.run_ok();
    assert!(!t.app().compute.is_running());
    assert!(t.app().op_errors.contains_key(&op));
    assert!(t.has_text("Cannot generate"), "{}", t.texts());
}

#[test]
fn simulate_shows_the_stock_the_program_leaves_and_goes_when_the_program_changes() {
    let _one = one_at_a_time();
    let mut t = app();
    // The default job: roughing, then raster finishing.
    t.harness.get_by_label("Generate all").click();
    let ops: Vec<u64> = t.app().doc().operations.list.iter().map(|o| o.id).collect();
    assert!(ops.len() >= 2, "{ops:?}");
    assert!(
        t.run_until(Duration::from_secs(180), |a| ops
            .iter()
            .all(|&id| a.toolpath(id).is_some())
            && !a.compute.is_running()),
        "not generated: {}",
        t.texts()
    );
    t.harness.run_ok();
    // Below the operations in the side panel: scrolled to, as a user would.
    t.harness.get_by_label("Simulate").scroll_to_me();
    t.harness.run_ok();
    // Cancel stops it and leaves nothing new.
    t.harness.get_by_label("Simulate").click();
    assert!(
        t.run_until(Duration::from_secs(5), |a| a.simulation.busy()
            || a.simulation.last.is_some()),
        "not simulating: {:?}",
        t.app().simulation
    );
    t.app_mut().simulation.cancel();
    t.harness.run_ok();
    assert!(!t.app().simulation.busy() && t.app().simulation.last.is_none());

    t.simulate();
    let sim = match &t.app().simulation.last {
        Some(Ok(sim)) => sim,
        other => panic!("{other:?}"),
    };
    assert_eq!(sim.operations.len(), ops.len());
    assert!(
        sim.operations[0].0.removed_mm3 > 1000.0,
        "{:?}",
        sim.operations[0].0
    );
    // Millpond's own program on its own part: no gouge, nothing through material.
    assert!(sim.total().unwrap().gouge.is_none(), "{:?}", sim.total());
    assert_eq!(sim.rapids_in_material(), 0);
    assert!(t.has_text("No gouge"), "{}", t.texts());
    assert!(t.has_text("Material left: up to"), "{}", t.texts());
    assert!(t.has_text("Simulated on"), "{}", t.texts());
    assert!(t.app().view_has_simulated_stock());

    // Playback: halfway through the finishing the tool is drawn at its move; back at the end
    // (from the uncut block again) the stock is the simulation's, bit for bit.
    use millpond::gui::simulation::At;
    let full = t
        .app()
        .simulation
        .last
        .as_ref()
        .unwrap()
        .as_ref()
        .unwrap()
        .surface
        .clone();
    let lengths = t
        .app()
        .simulation
        .playback
        .as_ref()
        .expect("playback")
        .lengths
        .clone();
    let last_op = lengths.len() - 1;
    let seen = |t: &mut gui_support::TestApp, at: At| {
        t.app_mut().simulation.playback.as_mut().unwrap().seek(at);
        assert!(
            t.run_until(Duration::from_secs(60), |a| a
                .simulation
                .playback
                .as_ref()
                .is_some_and(|p| p.shown == Some(at))),
            "playback never showed {at:?}"
        );
        t.app().view_tool_at()
    };
    let half = At {
        op: last_op,
        moves: lengths[last_op] / 2,
    };
    let tool = seen(&mut t, half);
    assert!(tool.is_some(), "the tool is drawn at the move");
    let end = At {
        op: last_op,
        moves: lengths[last_op],
    };
    assert!(seen(&mut t, end).is_none(), "no tool at the end");
    // The frame shown at the end: the view holds it; compare through a fresh seek's frame.
    let again = {
        let pb = t.app_mut().simulation.playback.as_mut().unwrap();
        pb.seek(At { op: 0, moves: 0 });
        pb.seek(end);
        let t0 = std::time::Instant::now();
        loop {
            if let Some(f) = pb.poll()
                && f.at == end
            {
                break f.surface;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no frame");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert!(
        *again == *full,
        "playback's end differs from the simulation"
    );
    // Play runs to the end and stops.
    {
        let pb = t.app_mut().simulation.playback.as_mut().unwrap();
        pb.seek(At {
            op: last_op,
            moves: lengths[last_op] - 10.min(lengths[last_op]),
        });
        pb.speed = 1e5;
        pb.playing = true;
    }
    assert!(
        t.run_until(Duration::from_secs(60), |a| {
            let p = a.simulation.playback.as_ref().unwrap();
            !p.playing && p.shown == Some(end)
        }),
        "play did not reach the end"
    );

    // Another program (the finishing left out): the simulated stock is of the old one, gone.
    let last = *ops.last().unwrap();
    t.app_mut().edit_operation(last, |op| op.enabled = false);
    t.harness.run_ok();
    assert!(t.app().simulation.last.is_none() && t.app().simulation.playback.is_none());
    assert!(!t.app().view_has_simulated_stock());
    assert!(!t.has_text("No gouge"), "{}", t.texts());
}

/// Rest roughing from the window: ticked in the roughing editor, it needs the operations
/// before it generated (or generated with it), and then cuts a small part of what a full
/// roughing would.
#[test]
fn rest_roughing_is_ticked_in_the_editor_and_cuts_only_what_is_left() {
    let _one = one_at_a_time();
    let mut t = app();
    let first = t.app().doc().operations.list[0].id;
    let flat = t.app().doc().operations.get(first).unwrap().tool;
    assert!(matches!(
        t.app().doc().operations.get(first).unwrap().strategy,
        Strategy::Roughing(_)
    ));
    // Only the default roughing before it: the finishing operations are switched off.
    let others: Vec<u64> = t.app().doc().operations.list[1..]
        .iter()
        .map(|o| o.id)
        .collect();
    for id in others {
        t.app_mut().edit_operation(id, |o| o.enabled = false);
    }
    let params = RoughingParams {
        stepdown: 1.0,
        ..RoughingParams::default()
    };
    let second = t.app_mut().add_operation(Strategy::Roughing(params), flat);
    t.app_mut().select_operation(second);
    t.harness.run_ok();
    let tick = t.harness.get_by_label("Rest roughing");
    tick.scroll_to_me();
    t.harness.run_ok();
    t.harness.get_by_label("Rest roughing").click();
    t.harness.run_ok();
    let rest = |a: &MillpondApp| match a.doc().operations.get(second).unwrap().strategy {
        Strategy::Roughing(p) => p.rest,
        _ => unreachable!(),
    };
    assert_eq!(rest(t.app()), Some(0.1), "the tick makes it rest roughing");
    assert!(t.has_text("Rest threshold"), "{}", t.texts());

    // Alone, it has nothing to start from.
    t.app_mut().generate(false);
    t.harness.run_ok();
    assert!(!t.app().compute.is_running());
    assert!(t.has_text("first: rest roughing"), "{}", t.texts());

    // With the roughing before it (one batch, in order): a small part of the cut.
    t.app_mut().generate(true);
    assert!(
        t.run_until(Duration::from_secs(180), |a| !a.compute.is_running()
            && a.toolpath(second).is_some()),
        "{} {:?}",
        t.texts(),
        t.app().op_errors
    );
    let cut = |id| t.app().results[&id].stats.cut_length;
    assert!(
        cut(second) > 0.0 && cut(second) < 0.5 * cut(first),
        "rest {} mm, first {} mm",
        cut(second),
        cut(first)
    );
    assert!(!t.app().is_outdated(second));

    // The roughing before it computed again: the rest is out of date.
    t.app_mut().select_operation(first);
    t.app_mut().generate(false);
    assert!(
        t.run_until(Duration::from_secs(120), |a| !a.compute.is_running()),
        "{}",
        t.texts()
    );
    assert!(!t.app().is_outdated(first));
    assert!(
        t.app().is_outdated(second),
        "computed from the old roughing"
    );
}
