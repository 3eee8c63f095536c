//! Shared by the window snapshot test and the view benchmark: an offscreen egui "window" on
//! headless EGL, the scene they draw, and image comparison against committed references.
#![allow(dead_code)] // Each test binary uses a different part.

use millpond_core::job::{Grid, JobOutput, Operation};
use millpond_core::raster::{Direction, RasterSpec};
use millpond_core::{
    Axis, CancelToken, Cutter, JobContext, JobSpec, Mesh, Toolpath, TriangleIndex,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use millpond_headless_gl::Window;

/// Opens the headless window or fails with what is missing: CI installs Mesa, so a missing
/// context is a broken environment, not a reason to skip.
pub fn window(width: u32, height: u32) -> Window {
    Window::new(width, height).unwrap_or_else(|e| {
        panic!(
            "cannot create a headless OpenGL context for the window snapshot: {e}\n\
             The snapshot test renders with Mesa's software rasterizer through EGL; \
             install libegl1 and libgl1-mesa-dri."
        )
    })
}

/// The window's pixels as an image.
pub fn snapshot(window: &Window) -> image::RgbaImage {
    let [w, h] = window.gl.size();
    image::RgbaImage::from_raw(w, h, window.pixels()).expect("w·h·4 bytes")
}

/// The bundled default part.
pub fn default_mesh() -> Mesh {
    Mesh::from_stl_bytes(
        millpond::cli::DEFAULT_MODEL,
        millpond::cli::DEFAULT_MODEL_NAME,
    )
    .expect("the bundled model loads")
}

/// A raster finishing toolpath over `mesh` (lines along X, zigzag), computed with core like
/// `millpond toolpath` does.
pub fn raster_toolpath(mesh: &Mesh, cutter: Cutter, stepover: f64, sampling: f64) -> Toolpath {
    let mesh = Arc::new(mesh.clone());
    let index = Arc::new(TriangleIndex::new(&mesh));
    let b = mesh.bounds();
    let spec = JobSpec {
        mesh: mesh.hash(),
        cutter,
        operation: Operation::Raster(RasterSpec {
            grid: Grid {
                axis: Axis::X,
                bounds: b.xy().grown(cutter.radius() + 0.5),
                step: stepover,
                sampling,
            },
            floor: b.min.z,
            safe_z: b.max.z + 5.0,
            links: millpond_core::links::Links::new(b.max.z, b.max.z + 5.0, cutter.diameter()),
            direction: Direction::Zigzag,
            merge_tolerance: millpond_core::raster::DEFAULT_MERGE_TOLERANCE,
            allowance: 0.0,
        }),
    };
    let ctx = JobContext::new(mesh, index, spec).expect("a valid raster job");
    let results = millpond_core::runner::run_local(&ctx, 2, &CancelToken::new(), &|_| {})
        .expect("the raster job runs");
    match ctx.finish(results).expect("the results assemble") {
        JobOutput::Toolpath(tp) => tp,
        _ => panic!("a raster job gives a toolpath"),
    }
}

/// How different two images are.
#[derive(Clone, Copy, Debug)]
pub struct Diff {
    /// Mean absolute difference over all RGB channels, 0–255.
    pub mean_abs: f64,
    /// Fraction of pixels where some channel differs by more than 32.
    pub frac_over_32: f64,
}

pub fn diff(a: &image::RgbaImage, b: &image::RgbaImage) -> Option<Diff> {
    if a.dimensions() != b.dimensions() {
        return None;
    }
    let (mut sum, mut over) = (0u64, 0u64);
    for (p, q) in a.pixels().zip(b.pixels()) {
        let mut worst = 0u8;
        for k in 0..3 {
            let d = p.0[k].abs_diff(q.0[k]);
            sum += u64::from(d);
            worst = worst.max(d);
        }
        if worst > 32 {
            over += 1;
        }
    }
    let n = u64::from(a.width()) * u64::from(a.height());
    Some(Diff {
        mean_abs: sum as f64 / (3 * n) as f64,
        frac_over_32: over as f64 / n as f64,
    })
}

/// Allowed difference from the reference. llvmpipe renders the same bits run to run; the slack
/// absorbs another Mesa/LLVM version rounding a few edge pixels differently. A missing model
/// or toolpath is far outside it (the snapshot test checks that).
pub const MAX_MEAN_ABS: f64 = 1.0;
pub const MAX_FRAC_OVER_32: f64 = 0.003;

impl Diff {
    pub fn within_tolerance(&self) -> bool {
        self.mean_abs <= MAX_MEAN_ABS && self.frac_over_32 <= MAX_FRAC_OVER_32
    }
}

pub fn reference_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(format!("{name}.png"))
}

/// Where a run's images go for inspection.
pub fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("snapshots")
}

/// Writes `image` to `path`, creating the folder.
pub fn save(image: &image::RgbaImage, path: &Path) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    image
        .save(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Compares `actual` with the committed reference `tests/reference/NAME.png`. The actual image
/// is always written to `target/tmp/snapshots/NAME.png`; on a mismatch also a difference image
/// next to it. A missing reference, or `MILLPOND_UPDATE_SNAPSHOTS=1`, writes the reference and
/// passes with a note.
pub fn assert_snapshot(name: &str, actual: &image::RgbaImage) {
    let out = output_dir().join(format!("{name}.png"));
    save(actual, &out);
    let reference = reference_path(name);
    let update = std::env::var("MILLPOND_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    if update || !reference.exists() {
        save(actual, &reference);
        println!(
            "snapshot {name}: wrote the reference {} ({})",
            reference.display(),
            if update {
                "MILLPOND_UPDATE_SNAPSHOTS=1"
            } else {
                "there was none"
            }
        );
        return;
    }
    let expected = image::open(&reference)
        .unwrap_or_else(|e| panic!("cannot read the reference {}: {e}", reference.display()))
        .to_rgba8();
    let Some(d) = diff(actual, &expected) else {
        panic!(
            "snapshot {name}: size {:?} differs from the reference's {:?}; actual image: {}",
            actual.dimensions(),
            expected.dimensions(),
            out.display()
        );
    };
    println!("snapshot {name}: {d:?}");
    if !d.within_tolerance() {
        let diff_path = output_dir().join(format!("{name}.diff.png"));
        save(&diff_image(actual, &expected), &diff_path);
        panic!(
            "snapshot {name} differs from {}: mean |Δ| {:.3} (max {MAX_MEAN_ABS}), {:.3}% of \
             pixels off by > 32 (max {:.3}%).\nactual: {}\ndifference: {}\nIf the change is \
             intended, rerun with MILLPOND_UPDATE_SNAPSHOTS=1 and commit the new reference.",
            reference.display(),
            d.mean_abs,
            d.frac_over_32 * 100.0,
            MAX_FRAC_OVER_32 * 100.0,
            out.display(),
            diff_path.display()
        );
    }
}

/// Differences in red over a dimmed copy of the reference.
pub fn diff_image(actual: &image::RgbaImage, expected: &image::RgbaImage) -> image::RgbaImage {
    let mut out = expected.clone();
    for (o, a) in out.pixels_mut().zip(actual.pixels()) {
        let worst = (0..3).map(|k| o.0[k].abs_diff(a.0[k])).max().unwrap_or(0);
        let dim = |c: u8| c / 3;
        *o = if worst > 32 {
            image::Rgba([255, 0, 0, 255])
        } else if worst > 0 {
            image::Rgba([200, 120, 0, 255])
        } else {
            image::Rgba([dim(o.0[0]), dim(o.0[1]), dim(o.0[2]), 255])
        };
    }
    out
}
