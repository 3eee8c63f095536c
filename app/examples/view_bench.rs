//! Frame time of the 3D view under software GL (Mesa llvmpipe through headless EGL), for the
//! scenes the view must stay responsive with: a 200k-triangle model and a 1M-point toolpath.
//!
//! `cargo run --release -p millpond --example view_bench -- [FRAMES] [WIDTH HEIGHT]`
//! (`VIEW_BENCH_ONLY=toolpath` runs only the scenes whose name contains "toolpath").
//!
//! Each frame is what eframe does for one repaint while the user orbits: an egui pass with a
//! pointer drag, tessellation, painting (the 3D paint callback included) and `glFinish`, so
//! the time is until the pixels are done. The first frame also uploads the scene and is shown
//! apart; the rest are summarised by median and 90th percentile.

use millpond::gui::view3d::SceneView;
use millpond_core::toolpath::MoveKind;
use millpond_core::{Aabb, Mesh, Point3, Toolpath};
use millpond_headless_gl::Window;
use std::time::Instant;

/// A zigzag raster over a hemisphere of radius 40 on a floor: `lines × points` cut moves plus
/// the plunge and rapids a real raster has. Synthesised directly, so the benchmark measures
/// drawing, not toolpath computation.
fn big_toolpath(lines: usize, points: usize) -> Toolpath {
    let r = 40.0f64;
    let height = |x: f64, y: f64| (r * r - x * x - y * y).max(0.0).sqrt();
    let coord = |i: usize, n: usize| -45.0 + 90.0 * i as f64 / (n - 1) as f64;
    let mut tp = Toolpath {
        start: Point3::new(-45.0, -45.0, 50.0),
        moves: Vec::with_capacity(lines * points + 3),
    };
    tp.push(MoveKind::Rapid, Point3::new(-45.0, -45.0, 45.0));
    tp.push(MoveKind::Plunge, Point3::new(-45.0, -45.0, 0.0));
    for j in 0..lines {
        let y = coord(j, lines);
        for i in 0..points {
            let i = if j % 2 == 0 { i } else { points - 1 - i };
            let x = coord(i, points);
            tp.push(MoveKind::Cut, Point3::new(x, y, height(x, y)));
        }
    }
    let end = tp.end();
    tp.push(MoveKind::Rapid, Point3::new(end.x, end.y, 50.0));
    tp
}

struct Scene {
    name: &'static str,
    model: Option<Mesh>,
    toolpath: Option<Toolpath>,
}

fn stats(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let frames: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(30)
        .max(1);
    let (width, height) = match (
        args.get(1).and_then(|a| a.parse().ok()),
        args.get(2).and_then(|a| a.parse().ok()),
    ) {
        (Some(w), Some(h)) => (w, h),
        _ => (1280u32, 800u32),
    };

    let t = Instant::now();
    let sphere = Mesh::from_triangles(
        millpond_core::models::geodesic_sphere(Point3::new(0.0, 0.0, 0.0), 40.0, 100),
        "sphere",
    )
    .expect("a geodesic sphere is a valid mesh");
    let big = big_toolpath(1000, 1000);
    let default_part = Mesh::from_stl_bytes(
        millpond::cli::DEFAULT_MODEL,
        millpond::cli::DEFAULT_MODEL_NAME,
    )
    .expect("the bundled model loads");
    println!(
        "scenes built in {:.2} s: sphere {} triangles, toolpath {} moves, default part {} triangles",
        t.elapsed().as_secs_f64(),
        sphere.len(),
        big.moves.len(),
        default_part.len()
    );

    let scenes = [
        Scene {
            name: "empty view",
            model: None,
            toolpath: None,
        },
        Scene {
            name: "default part",
            model: Some(default_part),
            toolpath: None,
        },
        Scene {
            name: "sphere 200k triangles",
            model: Some(sphere.clone()),
            toolpath: None,
        },
        Scene {
            name: "toolpath 1M points",
            model: None,
            toolpath: Some(big.clone()),
        },
        Scene {
            name: "sphere 200k + toolpath 1M",
            model: Some(sphere),
            toolpath: Some(big),
        },
    ];

    let mut printed_device = false;
    println!(
        "{frames} frames at {width}×{height}; times in ms; load average before: {}",
        load_average()
    );
    println!(
        "{:<27} {:<8} {:>6} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9}",
        "scene", "camera", "set_*", "prepare", "1st", "median", "p90", "triangles", "segments"
    );
    // `VIEW_BENCH_ONLY=text` runs only the scenes whose name contains it (for profiling).
    let only = std::env::var("VIEW_BENCH_ONLY").unwrap_or_default();
    for scene in scenes.iter().filter(|s| s.name.contains(only.as_str())) {
        let mut window = Window::new(width, height).unwrap_or_else(|e| {
            eprintln!("view_bench: no headless OpenGL: {e}");
            std::process::exit(1);
        });
        if !printed_device {
            println!("GL device: {}", window.gl.device());
            printed_device = true;
        }
        let mut view = SceneView::new(Some(window.gl.gl()));
        let t = Instant::now();
        if let Some(m) = &scene.model {
            view.set_model(m);
            view.set_stock(Some(grown(m.bounds(), 2.0)));
        }
        if let Some(tp) = &scene.toolpath {
            view.set_toolpath(1, tp, true);
        }
        let set_ms = t.elapsed().as_secs_f64() * 1e3;
        // Preparation runs on threads; the first frame should show everything.
        let t = Instant::now();
        view.wait_for_uploads();
        let prepare_ms = t.elapsed().as_secs_f64() * 1e3;

        let mut ui = |ui: &mut egui::Ui| {
            egui::CentralPanel::no_frame().show(ui, |ui| view.show(ui));
        };
        let t = Instant::now();
        window.frame(&mut ui);
        window.gl.finish();
        let first_ms = t.elapsed().as_secs_f64() * 1e3;

        let centre = egui::pos2(width as f32 / 2.0, height as f32 / 2.0);
        let (median, p90) = orbit(&mut window, &mut ui, centre, frames);
        let fit = view_stats(&view);
        row(
            scene.name, "fit", set_ms, prepare_ms, first_ms, median, p90, fit,
        );

        // Zoom in about 7× on the centre (the scroll is smoothed over a few frames), then
        // orbit there.
        let mut ui = |ui: &mut egui::Ui| {
            egui::CentralPanel::no_frame().show(ui, |ui| view.show(ui));
        };
        window.frame_with(
            vec![
                egui::Event::PointerMoved(centre),
                egui::Event::MouseWheel {
                    unit: egui::MouseWheelUnit::Point,
                    delta: egui::vec2(0.0, 1000.0),
                    phase: egui::TouchPhase::Move,
                    source: egui::MouseWheelSource::Wheel,
                    modifiers: egui::Modifiers::NONE,
                },
            ],
            &mut ui,
        );
        for _ in 0..60 {
            window.frame(&mut ui);
        }
        let (median, p90) = orbit(&mut window, &mut ui, centre, frames);
        let zoomed = view_stats(&view);
        row(
            scene.name,
            "zoom ×7",
            f64::NAN,
            f64::NAN,
            f64::NAN,
            median,
            p90,
            zoomed,
        );
    }
}

/// Model triangles and toolpath segments the last frame drew.
fn view_stats(view: &SceneView) -> (usize, usize) {
    let s = view.last_frame_stats().unwrap_or_default();
    (s.triangles, s.toolpath_segments)
}

#[allow(clippy::too_many_arguments)]
fn row(
    scene: &str,
    camera: &str,
    set_ms: f64,
    prepare_ms: f64,
    first_ms: f64,
    median: f64,
    p90: f64,
    (triangles, segments): (usize, usize),
) {
    let ms = |v: f64| {
        if v.is_nan() {
            "".to_string()
        } else {
            format!("{v:.1}")
        }
    };
    println!(
        "{scene:<27} {camera:<8} {:>6} {:>8} {:>7} {median:>7.1} {p90:>7.1} {triangles:>9} {segments:>9}",
        ms(set_ms),
        ms(prepare_ms),
        ms(first_ms)
    );
}

/// Orbits for `frames` frames (press in the middle, then move a few points every frame, as a
/// user dragging does) and returns the median and 90th percentile frame time, ms.
fn orbit(
    window: &mut Window,
    ui: &mut impl FnMut(&mut egui::Ui),
    at: egui::Pos2,
    frames: usize,
) -> (f64, f64) {
    let button = |pos, pressed| egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    };
    window.frame_with(
        vec![egui::Event::PointerMoved(at), button(at, true)],
        &mut *ui,
    );
    let mut times = Vec::with_capacity(frames);
    let mut to = at;
    for k in 1..=frames {
        to = at + egui::vec2(4.0 * k as f32, (k % 7) as f32);
        let t = Instant::now();
        window.frame_with(vec![egui::Event::PointerMoved(to)], &mut *ui);
        window.gl.finish();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    window.frame_with(vec![button(to, false)], &mut *ui);
    stats(times)
}

/// The machine's load while measuring: other processes share llvmpipe's cores.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

fn grown(b: Aabb, by: f64) -> Aabb {
    Aabb {
        min: Point3::new(b.min.x - by, b.min.y - by, b.min.z),
        max: Point3::new(b.max.x + by, b.max.y + by, b.max.z + by),
    }
}
