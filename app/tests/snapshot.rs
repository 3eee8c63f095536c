//! Window snapshots: the egui window, 3D view included, rendered headless (EGL + Mesa llvmpipe)
//! and compared with committed references in `tests/reference/`.
//!
//! Update the references after an intended change with
//! `MILLPOND_UPDATE_SNAPSHOTS=1 cargo test --release -p millpond --test snapshot`, look at the
//! images, and commit them. A failing run leaves the actual image and a difference image under
//! `target/tmp/snapshots/`.

mod common;

use common::{Window, assert_snapshot, diff, snapshot};
use millpond::gui::view3d::{SceneView, ViewPreset};
use millpond_core::{Aabb, Cutter, Mesh, Point3, Toolpath};
use std::sync::OnceLock;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 560;

struct Scene {
    mesh: Mesh,
    stock: Aabb,
    toolpath: Toolpath,
}

/// The default part, a stock box around it and a ball-nose raster finishing toolpath (coarse
/// enough that single passes are visible in the image).
fn scene() -> &'static Scene {
    static SCENE: OnceLock<Scene> = OnceLock::new();
    SCENE.get_or_init(|| {
        let mesh = common::default_mesh();
        let cutter: Cutter = "ball:3".parse().expect("a valid tool");
        let toolpath = common::raster_toolpath(&mesh, cutter, 2.5, 0.25);
        let b = mesh.bounds();
        let stock = Aabb {
            min: Point3::new(b.min.x - 2.0, b.min.y - 2.0, b.min.z),
            max: Point3::new(b.max.x + 2.0, b.max.y + 2.0, b.max.z + 1.0),
        };
        Scene {
            mesh,
            stock,
            toolpath,
        }
    })
}

/// What the window shows.
#[derive(Clone, Copy)]
struct Show {
    model: bool,
    toolpath: bool,
    preset: ViewPreset,
}

const FULL: Show = Show {
    model: true,
    toolpath: true,
    preset: ViewPreset::Iso,
};

fn view_for(window: &Window, show: Show) -> SceneView {
    let s = scene();
    let mut view = SceneView::new(Some(window.gl.gl()));
    if show.model {
        view.set_model(&s.mesh);
    }
    view.set_stock(Some(s.stock));
    if show.toolpath {
        view.set_toolpath(1, &s.toolpath, true);
    }
    view.preset(show.preset);
    // The model and toolpath are prepared on threads; draw them from the first frame on.
    view.wait_for_uploads();
    view
}

/// A window like the app's: a side panel and the 3D view filling the rest.
fn window_ui(view: &mut SceneView) -> impl FnMut(&mut egui::Ui) + '_ {
    move |ui| {
        egui::Panel::left("side")
            .exact_size(180.0)
            .resizable(false)
            .show(ui, |ui| {
                ui.heading("Millpond");
                ui.label("default-part.stl");
                ui.separator();
                ui.label("Raster finishing, ball 3 mm");
            });
        egui::CentralPanel::no_frame().show(ui, |ui| view.show(ui));
    }
}

/// Renders a few frames (egui settles its layout in the first two) and returns the last.
fn render(show: Show) -> image::RgbaImage {
    let mut window = common::window(WIDTH, HEIGHT);
    let mut view = view_for(&window, show);
    for _ in 0..3 {
        window.frame(window_ui(&mut view));
    }
    snapshot(&window)
}

#[test]
fn scene_view_iso() {
    let window = common::window(8, 8);
    println!("GL device: {}", window.gl.device());
    drop(window);
    let image = render(FULL);
    assert_snapshot("scene_view_iso", &image);
}

#[test]
fn scene_view_top() {
    let image = render(Show {
        preset: ViewPreset::Top,
        ..FULL
    });
    assert_snapshot("scene_view_top", &image);
}

/// The tolerance must catch what the snapshot is for: a view without its toolpath or without
/// its model differs from the full view by far more than the allowed amount.
#[test]
fn tolerance_catches_a_missing_model_or_toolpath() {
    let full = render(FULL);
    // Rendering is deterministic: the same scene twice is identical.
    let again = diff(&full, &render(FULL)).expect("same size");
    assert_eq!(
        again.mean_abs, 0.0,
        "two renders of one scene differ: {again:?}"
    );
    for (what, show) in [
        (
            "toolpath",
            Show {
                toolpath: false,
                ..FULL
            },
        ),
        (
            "model",
            Show {
                model: false,
                ..FULL
            },
        ),
    ] {
        let image = render(show);
        let d = diff(&full, &image).expect("same size");
        println!("without the {what}: {d:?}");
        common::save(
            &image,
            &common::output_dir().join(format!("scene_view_iso_without_{what}.png")),
        );
        assert!(
            !d.within_tolerance(),
            "a view without the {what} passes as the full view: {d:?}"
        );
    }
}

/// Orbit by dragging, then "Fit" via double-click: the image changes with the drag and the
/// preset buttons are in the view.
#[test]
fn dragging_orbits_the_view() {
    let mut window = common::window(WIDTH, HEIGHT);
    let mut view = view_for(&window, FULL);
    for _ in 0..3 {
        window.frame(window_ui(&mut view));
    }
    let before = snapshot(&window);
    let at = egui::pos2(500.0, 300.0);
    let to = egui::pos2(560.0, 330.0);
    let button = |pressed| egui::Event::PointerButton {
        pos: if pressed { at } else { to },
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    };
    let steps = vec![
        vec![egui::Event::PointerMoved(at)],
        vec![button(true)],
        vec![egui::Event::PointerMoved(egui::pos2(530.0, 315.0))],
        vec![egui::Event::PointerMoved(to)],
        vec![button(false)],
        vec![],
    ];
    for events in steps {
        window.frame_with(events, window_ui(&mut view));
    }
    let after = snapshot(&window);
    let d = diff(&before, &after).expect("same size");
    assert!(
        d.frac_over_32 > 0.02,
        "dragging did not turn the view: {d:?}"
    );
}

/// Waits (rendering frames, as eframe would on the repaints the app asks for) until `done`,
/// failing after `limit`.
fn frames_until(
    window: &mut Window,
    app: &mut millpond::gui::MillpondApp,
    frame: &mut eframe::Frame,
    limit: std::time::Duration,
    what: &str,
    mut done: impl FnMut(&millpond::gui::MillpondApp) -> bool,
) {
    use eframe::App as _;
    let t0 = std::time::Instant::now();
    loop {
        window.frame(|ui| {
            app.logic(ui.ctx(), frame);
            app.ui(ui, frame);
        });
        if done(app) {
            return;
        }
        assert!(t0.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The app in a headless window, its default job generated (Generate all) and drawn.
struct GeneratedApp {
    window: common::Window,
    app: millpond::gui::MillpondApp,
    frame: eframe::Frame,
    _config: tempfile::TempDir,
}

impl GeneratedApp {
    fn new() -> Self {
        use std::time::Duration;
        let config = tempfile::tempdir().expect("a temporary folder");
        let mut window = common::window(1280, 800);
        let mut cc = eframe::CreationContext::_new_kittest(window.ctx.clone());
        cc.gl = Some(window.gl.gl());
        let options = millpond::gui::AppOptions::with_config_dir(config.path());
        let mut app = millpond::gui::MillpondApp::new(&cc, options);
        let mut frame = eframe::Frame::_new_kittest();
        let ops = app.doc().operations.list.len();
        assert!(ops > 0, "the app starts with a default job");
        frames_until(
            &mut window,
            &mut app,
            &mut frame,
            Duration::from_secs(10),
            "the model",
            |a| a.doc().model.is_some(),
        );
        app.generate(true);
        frames_until(
            &mut window,
            &mut app,
            &mut frame,
            Duration::from_secs(120),
            "the default job's toolpaths",
            |a| a.results.len() == ops && !a.compute.is_running(),
        );
        // The view prepares the toolpaths off the UI thread.
        frames_until(
            &mut window,
            &mut app,
            &mut frame,
            Duration::from_secs(30),
            "the 3D view to prepare the toolpaths",
            |_| millpond::gui::view3d::preparing() == 0,
        );
        Self {
            window,
            app,
            frame,
            _config: config,
        }
    }

    /// Runs frames until `done` holds, failing after `limit`.
    fn frames_until(
        &mut self,
        limit: std::time::Duration,
        what: &str,
        done: impl FnMut(&millpond::gui::MillpondApp) -> bool,
    ) {
        frames_until(
            &mut self.window,
            &mut self.app,
            &mut self.frame,
            limit,
            what,
            done,
        );
    }

    /// Two frames (upload, then draw) and the picture.
    fn draw(&mut self) -> image::RgbaImage {
        for _ in 0..2 {
            self.frames_until(std::time::Duration::ZERO, "", |_| true);
        }
        snapshot(&self.window)
    }
}

/// The whole app as it opens, after Generate all: the default part, its stock, the default
/// job's toolpaths with their legend, the side panel and the status bar.
#[test]
fn app_with_default_operation() {
    let mut g = GeneratedApp::new();
    let image = g.draw();
    g.app.shutdown();
    assert_snapshot("app_default_operation", &image);
}

/// Pixels of `image` within a small distance of the sRGB colour `c`.
fn pixels_like(image: &image::RgbaImage, c: [f32; 4]) -> usize {
    let want = c.map(|v| (v * 255.0).round() as i32);
    image
        .pixels()
        .filter(|p| (0..3).all(|k| (i32::from(p.0[k]) - want[k]).abs() <= 12))
        .count()
}

/// The default job drawn: each operation's cuts in its own colour (roughing the first,
/// finishing the second), with rapids that the view's Rapids box hides.
#[test]
fn operations_have_their_colours_and_rapids_can_be_hidden() {
    use millpond::gui::view3d::OPERATION_COLORS;
    let mut g = GeneratedApp::new();
    let with_rapids = g.draw();
    // Rapids' colour (LINE_COLORS[0] in gpu.rs).
    let rapid = [0.93, 0.86, 0.48, 1.0];
    let (rough, finish) = (OPERATION_COLORS[0], OPERATION_COLORS[1]);
    let counts = |img: &image::RgbaImage| {
        (
            pixels_like(img, rough),
            pixels_like(img, finish),
            pixels_like(img, rapid),
        )
    };
    let (r1, f1, y1) = counts(&with_rapids);
    assert!(
        r1 > 500 && f1 > 500,
        "roughing {r1} px, finishing {f1} px in their colours"
    );
    assert!(y1 > 200, "{y1} px of rapids");
    g.app.view_layers().rapids = false;
    let without = g.draw();
    let (_, _, y2) = counts(&without);
    // The legend's swatches stay; the rapids go.
    assert!(y2 * 10 < y1, "rapids still drawn: {y2} px of {y1}");
    // Each kind of move has its box: without cuts, only the legend keeps their colours.
    g.app.view_layers().cuts = false;
    let (r3, f3, _) = counts(&g.draw());
    assert!(
        r3 * 10 < r1 && f3 * 10 < f1,
        "cuts still drawn: {r3} of {r1}, {f3} of {f1} px"
    );
    g.app.shutdown();
}

/// The centre of the pixels in colour `c` (none: `None`).
fn centroid_of(image: &image::RgbaImage, c: [f32; 4]) -> Option<(f64, f64, usize)> {
    let want = c.map(|v| (v * 255.0).round() as i32);
    let (mut x, mut y, mut n) = (0.0, 0.0, 0usize);
    for (px, py, p) in image.enumerate_pixels() {
        if (0..3).all(|k| (i32::from(p.0[k]) - want[k]).abs() <= 12) {
            x += f64::from(px);
            y += f64::from(py);
            n += 1;
        }
    }
    (n > 0).then(|| (x / n as f64, y / n as f64, n))
}

/// The program's zero is shown in the view as an axis marker (X red, Y green) where the
/// stock's work zero puts it, over everything, and it follows a new choice.
#[test]
fn the_work_zero_marker_shows_where_the_program_s_zero_is() {
    use millpond::gui::document::Command;
    use millpond_core::setup::{WorkZeroChoice, XyZero, ZZero};
    // The marker's X and Y colours (AXIS_COLORS in gpu.rs).
    let (red, green) = ([0.95, 0.26, 0.21, 1.0], [0.30, 0.85, 0.35, 1.0]);
    let mut g = GeneratedApp::new();
    let stock = g.app.stock_shown().expect("a stock");
    let model = g.app.doc().model.as_ref().unwrap().bounds();
    let zero = g.app.doc().stock.zero;
    let (at, arm) = g.app.work_zero_shown().expect("a marker");
    assert_eq!(at, zero.point(stock, model));
    assert!(arm > 1.0);
    let before = g.draw();
    let (x0, y0, n) = centroid_of(&before, red).expect("the X arm is drawn");
    assert!(n > 40, "{n} px of the X arm");
    assert!(
        centroid_of(&before, green).is_some_and(|(_, _, n)| n > 40),
        "the Y arm"
    );

    // Touch off at the stock's back right top corner instead: the marker moves there.
    let mut s = g.app.doc().stock.clone();
    s.zero = WorkZeroChoice {
        xy: XyZero::StockBackRight,
        z: ZZero::StockTop,
    };
    g.app.execute(Command::SetStock(s.clone()));
    let (moved, _) = g.app.work_zero_shown().unwrap();
    assert_eq!(moved, s.zero.point(stock, model));
    assert_eq!(
        (moved.x, moved.y, moved.z),
        (stock.max.x, stock.max.y, stock.max.z)
    );
    let after = g.draw();
    let (x1, y1, _) = centroid_of(&after, red).expect("the X arm is drawn");
    assert!(
        (x1 - x0).hypot(y1 - y0) > 100.0,
        "the marker stayed at ({x0:.0}, {y0:.0}): now ({x1:.0}, {y1:.0})"
    );
    g.app.shutdown();
}

/// Reading a toolpath: drawn up to a move with the tool there (and the move's line given),
/// then only between two heights; other operations stay whole.
#[test]
fn a_toolpath_is_read_move_by_move_and_layer_by_layer() {
    use millpond::gui::view3d::OPERATION_COLORS;
    let white = [0.96, 0.96, 0.96, 1.0];
    let mut g = GeneratedApp::new();
    let ops: Vec<u64> = g.app.doc().operations.list.iter().map(|o| o.id).collect();
    let rough = ops[0];
    let full = g.draw();
    let count = |img: &image::RgbaImage| {
        (
            pixels_like(img, OPERATION_COLORS[0]),
            pixels_like(img, OPERATION_COLORS[1]),
            pixels_like(img, white),
        )
    };
    let (r0, f0, w0) = count(&full);
    let moves = g.app.toolpath(rough).unwrap().moves.len() as u32;
    assert!(moves > 100);

    // The first tenth of roughing's moves, the tool where the last of them ends (the
    // selected operation is the one read move by move).
    g.app.select_operation(rough);
    let n = moves / 10;
    g.app.inspect_move(rough, Some(n));
    let line = g.app.inspected_move_line(rough).expect("the move's line");
    assert!(
        line.starts_with(&format!("Move {n} of {moves}: G")),
        "{line}"
    );
    // The tool is the operation's, at the move's end.
    let at = g.app.toolpath(rough).unwrap().moves[n as usize - 1].to;
    let cutter = g.app.results[&rough].computed.planned.cutter;
    let shown = g.app.view_tool_at().expect("the tool is drawn");
    assert_eq!(shown, (at, cutter));
    let part = g.draw();
    // Kept for a look: target/tmp/snapshots/inspect_move.png.
    let _ = part.save(common::output_dir().join("inspect_move.png"));
    let (r1, f1, w1) = count(&part);
    assert!(r1 * 2 < r0, "roughing still drawn whole: {r1} of {r0} px");
    assert!(
        f1 * 10 > f0 * 9,
        "finishing must stay whole: {f1} of {f0} px"
    );
    assert!(w1 > w0 + 30, "no tool drawn: {w1} px of white, {w0} before");

    // Whole again, then only the top 2 mm of every toolpath.
    g.app.inspect_move(rough, None);
    assert!(g.app.view_tool_at().is_none());
    let top = g.app.stock_shown().unwrap().max.z;
    g.app.inspect_heights(Some((top - 2.0, top)));
    let layer = g.draw();
    let (r2, f2, _) = count(&layer);
    assert!(
        r2 * 2 < r0 && f2 < f0,
        "heights not applied: {r2} of {r0}, {f2} of {f0}"
    );
    g.app.inspect_heights(None);
    let (r3, _, _) = count(&g.draw());
    assert!(r3 * 10 > r0 * 9, "every height again: {r3} of {r0}");
    g.app.shutdown();
}

/// Simulate on the default job: the stock the program leaves is drawn in the model's place,
/// coloured by deviation (green on size, yellow to blue material left, red a gouge: none), and
/// the view's "simulated" box brings the model back. Both pictures are saved in the
/// snapshot output folder to look at.
#[test]
fn the_simulated_stock_is_drawn_by_deviation() {
    let mut g = GeneratedApp::new();
    // The stock, not the toolpaths over it (the finishing cuts are green too).
    let layers = g.app.view_layers();
    (layers.cuts, layers.rapids, layers.plunges) = (false, false, false);
    let before = g.draw();
    g.app.simulate();
    g.frames_until(std::time::Duration::from_secs(120), "the simulation", |a| {
        !a.simulation.busy() && a.simulation.last.is_some()
    });
    g.frames_until(
        std::time::Duration::from_secs(30),
        "the 3D view to prepare the simulated stock",
        |_| millpond::gui::view3d::preparing() == 0,
    );
    assert!(g.app.view_has_simulated_stock());
    let simulated = g.draw();
    common::save(
        &simulated,
        &common::output_dir().join("simulated_stock.png"),
    );
    // Green (on size) and blue-ish (material left) cells, lit: counted by hue, not value.
    let count = |img: &image::RgbaImage, f: &dyn Fn(i32, i32, i32) -> bool| {
        img.pixels()
            .filter(|p| f(i32::from(p.0[0]), i32::from(p.0[1]), i32::from(p.0[2])))
            .count()
    };
    let green = |r: i32, g: i32, b: i32| g > r + 40 && g > b + 30;
    let red = |r: i32, g: i32, b: i32| r > 150 && r > g + 80 && r > b + 80;
    let (g0, g1) = (count(&before, &green), count(&simulated, &green));
    assert!(
        g1 > g0 + 5000,
        "on-size green: {g0} px before, {g1} px simulated"
    );
    // No gouge: red only in the legend's swatch (12 × 12 px) and the toolpaths' plunges.
    let (r0, r1) = (count(&before, &red), count(&simulated, &red));
    assert!(r1 <= r0 + 400, "red: {r0} px before, {r1} px simulated");
    // Playback halfway through the roughing: the block still stands above the finished
    // shape (more material left: less on-size green), the tool drawn at its move.
    let half = {
        let pb = g.app.simulation.playback.as_mut().expect("playback");
        let at = millpond::gui::simulation::At {
            op: 0,
            moves: pb.lengths[0] / 2,
        };
        pb.seek(at);
        at
    };
    g.frames_until(
        std::time::Duration::from_secs(60),
        "the playback frame",
        |a| {
            a.simulation
                .playback
                .as_ref()
                .is_some_and(|p| p.shown == Some(half))
        },
    );
    g.frames_until(
        std::time::Duration::from_secs(30),
        "the 3D view to prepare it",
        |_| millpond::gui::view3d::preparing() == 0,
    );
    let halfway = g.draw();
    common::save(
        &halfway,
        &common::output_dir().join("simulated_stock_halfway.png"),
    );
    assert!(g.app.view_tool_at().is_some());
    let gh = count(&halfway, &green);
    assert!(
        gh * 2 < g1,
        "halfway on-size green {gh} px vs {g1} px at the end"
    );
    g.app.view_layers().simulated = false;
    let model_again = g.draw();
    common::save(
        &model_again,
        &common::output_dir().join("simulated_stock_hidden.png"),
    );
    let g2 = count(&model_again, &green);
    assert!(g2 * 2 < g1, "on-size green still drawn: {g2} of {g1} px");
    g.app.shutdown();
}
