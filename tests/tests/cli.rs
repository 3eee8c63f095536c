//! End-to-end tests of the `millpond` binary: `drop` (JSON summary and CSV grid), `toolpath`
//! (G-code), argument errors, and the no-argument run without a display.

use millpond_core::models::geodesic_sphere;
use millpond_core::{Mesh, Point3, stl};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `millpond` binary of this workspace, built once (see `millpond_tests::millpond_bin`).
fn millpond() -> Command {
    Command::new(millpond_tests::millpond_bin())
}

fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    millpond().args(args).output().expect("run millpond")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

/// Runs a command that must succeed; returns its stdout.
fn succeed<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run(args);
    assert!(
        out.status.success(),
        "millpond failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a command that must fail cleanly; returns its stderr.
fn fail<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run(args);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "millpond should have failed:\nstdout: {}\nstderr: {stderr}",
        text(&out.stdout)
    );
    assert!(
        out.status.code().is_some(),
        "killed by a signal: {}",
        out.status
    );
    assert!(!stderr.trim().is_empty(), "no message on stderr");
    assert!(
        !stderr.contains("panicked"),
        "a panic is not an error message: {stderr}"
    );
    assert!(
        !text(&out.stdout).contains("\"points\""),
        "a failed run printed a summary"
    );
    stderr
}

const SPHERE_RADIUS: f64 = 10.0;
/// Ball radius of `--tool ball:3`.
const BALL_RADIUS: f64 = 1.5;

/// Writes a geodesic sphere (radius 10 at the origin, frequency 8: 1280 triangles) as binary STL
/// and returns its path and the mesh as the loader reads it back.
fn sphere_model(dir: &Path) -> (PathBuf, Mesh) {
    let path = dir.join("sphere.stl");
    let tris = geodesic_sphere(Point3::new(0.0, 0.0, 0.0), SPHERE_RADIUS, 8);
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    stl::write_binary(file, "sphere", &tris).unwrap();
    let mesh = Mesh::from_stl_path(&path).unwrap();
    assert_eq!(mesh.len(), 1280);
    (path, mesh)
}

/// The sphere as loaded lies between two concentric exact spheres: it is inscribed in one through
/// its farthest vertex, and (being star-shaped about the centre) contains one touching its
/// nearest face plane. Returns (inner, outer) radii.
fn sphere_radii(mesh: &Mesh) -> (f64, f64) {
    let mut inner = f64::INFINITY;
    let mut outer = 0.0f64;
    for t in mesh.triangles() {
        inner = inner.min(t.normal().unwrap().dot(t.v[0]).abs());
        for p in t.v {
            outer = outer.max(p.length());
        }
    }
    assert!(outer - SPHERE_RADIUS < 1e-5, "outer radius {outer}");
    assert!(SPHERE_RADIUS - inner < 0.1, "inner radius {inner}");
    (inner, outer)
}

/// Tip height of a ball cutter dropped onto an exact sphere of radius `r` at the origin, at
/// horizontal distance `rho` from its centre, never below `floor`.
fn ball_on_sphere(rho: f64, r: f64, floor: f64) -> f64 {
    let reach = r + BALL_RADIUS;
    if rho < reach {
        ((reach * reach - rho * rho).sqrt() - BALL_RADIUS).max(floor)
    } else {
        floor
    }
}

/// Checks every CSV height against the two exact spheres bracketing the tessellated one.
fn check_sphere_heights(rows: &[Row], mesh: &Mesh, floor: f64) {
    let (inner, outer) = sphere_radii(mesh);
    let mut touching = 0;
    for r in rows {
        let rho = r.x.hypot(r.y);
        let hi = ball_on_sphere(rho, outer, floor);
        let lo = ball_on_sphere(rho, inner, floor);
        assert!(
            r.z >= floor,
            "({}, {}): z {} below the floor {floor}",
            r.x,
            r.y,
            r.z
        );
        assert!(
            r.z <= hi + 1e-9,
            "({}, {}): z {} above the circumscribed sphere's {hi}",
            r.x,
            r.y,
            r.z
        );
        assert!(
            r.z >= lo - 1e-9,
            "({}, {}): z {} below the inscribed sphere's {lo}",
            r.x,
            r.y,
            r.z
        );
        touching += usize::from(r.z > floor);
    }
    assert!(
        touching * 2 > rows.len(),
        "most of the grid is on the sphere"
    );
}

/// One CSV row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    x: f64,
    y: f64,
    z: f64,
}

/// Reads `x,y,z` rows; every value must read back to the exact text it was printed from.
fn read_csv(path: &Path) -> Vec<Row> {
    let content = std::fs::read_to_string(path).unwrap();
    let mut lines = content.lines();
    assert_eq!(lines.next(), Some("x,y,z"), "CSV header");
    assert!(content.ends_with('\n'));
    lines
        .map(|l| {
            let v: Vec<f64> = l
                .split(',')
                .map(|s| {
                    let v: f64 = s.parse().unwrap_or_else(|_| panic!("bad number in {l:?}"));
                    assert_eq!(v.to_string(), s, "{s} does not round-trip as f64");
                    v
                })
                .collect();
            assert_eq!(v.len(), 3, "{l:?}");
            Row {
                x: v[0],
                y: v[1],
                z: v[2],
            }
        })
        .collect()
}

/// Grid size by the design rule: `floor(extent / spacing + 1e-9) + 1` positions.
fn count(min: f64, max: f64, spacing: f64) -> usize {
    ((max - min) / spacing + 1e-9).floor() as usize + 1
}

/// The JSON summary line; checks it is exactly one line with exactly the documented keys.
fn summary(stdout: &str) -> serde_json::Map<String, serde_json::Value> {
    assert!(stdout.ends_with('\n'), "{stdout:?}");
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout must be one line: {stdout:?}"
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim_end()).unwrap();
    let obj = v.as_object().expect("a JSON object").clone();
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["triangles", "points", "threads", "load_s", "compute_s"])
    );
    for k in ["load_s", "compute_s"] {
        let s = obj[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number"));
        assert!(s.is_finite() && s >= 0.0, "{k} = {s}");
    }
    obj
}

/// Checks rows are the grid in order: lines along `axis`, each line in the + direction.
fn check_grid(rows: &[Row], axis: char, bounds: [f64; 4], step: f64, sampling: f64) {
    let [xmin, xmax, ymin, ymax] = bounds;
    let (lines, per) = match axis {
        'x' => (count(ymin, ymax, step), count(xmin, xmax, sampling)),
        _ => (count(xmin, xmax, step), count(ymin, ymax, sampling)),
    };
    assert_eq!(rows.len(), lines * per);
    for (k, r) in rows.iter().enumerate() {
        let (j, i) = (k / per, k % per);
        let (x, y) = match axis {
            'x' => (xmin + i as f64 * sampling, ymin + j as f64 * step),
            _ => (xmin + j as f64 * step, ymin + i as f64 * sampling),
        };
        assert!(
            r.x == x && r.y == y,
            "row {k}: ({}, {}), want ({x}, {y})",
            r.x,
            r.y
        );
    }
}

#[test]
fn drop_default_bounds_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (model, mesh) = sphere_model(dir.path());
    let csv = dir.path().join("grid.csv");
    let (step, sampling) = (1.5, 0.7);
    let stdout = succeed([
        OsStr::new("drop"),
        model.as_os_str(),
        "--tool".as_ref(),
        "ball:3".as_ref(),
        "--step".as_ref(),
        "1.5".as_ref(),
        "--sampling".as_ref(),
        "0.7".as_ref(),
        "--threads".as_ref(),
        "2".as_ref(),
        "--csv".as_ref(),
        csv.as_os_str(),
    ]);
    let s = summary(&stdout);
    let b = mesh.bounds();
    let points = count(b.min.y, b.max.y, step) * count(b.min.x, b.max.x, sampling);
    assert_eq!(s["triangles"].as_u64(), Some(1280));
    assert_eq!(s["points"].as_u64(), Some(points as u64));
    assert_eq!(s["threads"].as_u64(), Some(2));

    let rows = read_csv(&csv);
    check_grid(
        &rows,
        'x',
        [b.min.x, b.max.x, b.min.y, b.max.y],
        step,
        sampling,
    );
    assert_eq!(
        (rows[0].x, rows[0].y),
        (b.min.x, b.min.y),
        "bounds default to the model's box"
    );
    check_sphere_heights(&rows, &mesh, b.min.z);
}

#[test]
fn drop_one_and_two_threads_give_identical_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (model, mesh) = sphere_model(dir.path());
    let mut csvs = Vec::new();
    for threads in ["1", "2"] {
        let csv = dir.path().join(format!("grid-{threads}.csv"));
        let stdout = succeed([
            OsStr::new("drop"),
            model.as_os_str(),
            "--tool".as_ref(),
            "ball:3".as_ref(),
            "--step".as_ref(),
            "0.25".as_ref(),
            "--sampling".as_ref(),
            "0.1".as_ref(),
            "--threads".as_ref(),
            threads.as_ref(),
            "--csv".as_ref(),
            csv.as_os_str(),
        ]);
        let s = summary(&stdout);
        assert_eq!(s["threads"].as_u64(), Some(threads.parse().unwrap()));
        csvs.push(csv);
    }
    let (a, b) = (
        std::fs::read(&csvs[0]).unwrap(),
        std::fs::read(&csvs[1]).unwrap(),
    );
    assert!(a == b, "--threads 1 and --threads 2 CSVs differ");
    let rows = read_csv(&csvs[0]);
    assert!(
        rows.len() > 10_000,
        "{} points: enough for several chunks",
        rows.len()
    );
    let bb = mesh.bounds();
    check_grid(
        &rows,
        'x',
        [bb.min.x, bb.max.x, bb.min.y, bb.max.y],
        0.25,
        0.1,
    );
    check_sphere_heights(&rows, &mesh, bb.min.z);
}

#[test]
fn drop_bounds_axis_y_and_floor() {
    let dir = tempfile::tempdir().unwrap();
    let (model, mesh) = sphere_model(dir.path());
    let csv = dir.path().join("grid.csv");
    let drop = |extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("drop"),
            model.as_os_str(),
            "--tool".as_ref(),
            "ball:3".as_ref(),
            "--csv".as_ref(),
            csv.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let s = summary(&succeed(&args));
        (s["points"].as_u64().unwrap() as usize, read_csv(&csv))
    };

    // --bounds, lines along x. 7.5 / 0.3 is 24.999999999999996 in f64: the 1e-9 rule makes
    // that 26 points per line, not 25.
    let bounds = [-3.0, 4.5, -2.0, 2.5];
    let (points, rows) = drop(&[
        "--bounds",
        "-3,4.5,-2,2.5",
        "--step",
        "0.5",
        "--sampling",
        "0.3",
    ]);
    assert_eq!(count(-3.0, 4.5, 0.3), 26);
    assert_eq!(points, 10 * 26);
    check_grid(&rows, 'x', bounds, 0.5, 0.3);
    check_sphere_heights(&rows, &mesh, mesh.bounds().min.z);

    // --axis y: lines at x = xmin + j·step, points along +y. Bounds larger than the model and a
    // floor below it: beyond the sphere's reach the tip rests on the floor exactly.
    let bounds = [-13.0, 13.5, -12.5, 12.0];
    let (points, rows) = drop(&[
        "--axis",
        "y",
        "--bounds",
        "-13,13.5,-12.5,12",
        "--step",
        "0.75",
        "--sampling",
        "0.4",
        "--floor",
        "-50",
    ]);
    assert_eq!(points, count(-13.0, 13.5, 0.75) * count(-12.5, 12.0, 0.4));
    check_grid(&rows, 'y', bounds, 0.75, 0.4);
    check_sphere_heights(&rows, &mesh, -50.0);
    assert!(rows.iter().any(|r| r.z == -50.0));
    assert!(rows.iter().any(|r| r.z > 0.0));

    // A floor above the model: every tip height is the floor.
    let (points, rows) = drop(&["--step", "1", "--sampling", "0.5", "--floor", "20.25"]);
    assert_eq!(points, rows.len());
    assert!(
        rows.iter().all(|r| r.z == 20.25),
        "a floor above the model is the height"
    );
}

#[test]
fn bad_arguments_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = sphere_model(dir.path());
    let model = model.to_str().unwrap();
    let csv = dir.path().join("never.csv");
    let csv = csv.to_str().unwrap();
    let drop = |extra: &[&str]| {
        let mut args = vec!["drop", model, "--csv", csv];
        let defaults = [("--tool", "ball:3"), ("--step", "1"), ("--sampling", "0.5")];
        for (flag, value) in defaults {
            if !extra.iter().any(|a| a.starts_with(flag)) {
                args.extend([flag, value]);
            }
        }
        args.extend(extra);
        let stderr = fail(&args);
        assert!(!Path::new(csv).exists(), "a failed run wrote the CSV");
        stderr
    };
    let has = |stderr: &str, words: &[&str]| {
        for w in words {
            assert!(stderr.contains(w), "stderr lacks {w:?}: {stderr}");
        }
    };

    has(&drop(&["--tool", "cone:3"]), &["cone:3", "ball:D"]);
    has(&drop(&["--tool", "ball:-3"]), &["diameter"]);
    has(&drop(&["--step", "-1"]), &["step", "positive", "-1"]);
    has(&drop(&["--step=-0.5"]), &["step", "positive"]);
    has(&drop(&["--step", "0"]), &["step", "positive"]);
    has(&drop(&["--sampling", "-2"]), &["sampling", "positive"]);
    has(&drop(&["--threads", "0"]), &["--threads", "at least 1"]);
    has(
        &drop(&["--bounds", "1,2,3"]),
        &["XMIN,XMAX,YMIN,YMAX", "1,2,3"],
    );
    has(&drop(&["--bounds", "1,2,3,x"]), &["XMIN,XMAX,YMIN,YMAX"]);
    has(&drop(&["--bounds", "5,1,0,1"]), &["XMIN ≤ XMAX", "5,1,0,1"]);
    has(&drop(&["--bounds", "0,1,3,-1"]), &["YMIN ≤ YMAX"]);

    // Model files: missing, and not an STL. The message names the file.
    let missing = dir.path().join("no-such-model.stl");
    let missing = missing.to_str().unwrap();
    let args = [
        "drop",
        missing,
        "--tool",
        "ball:3",
        "--step",
        "1",
        "--sampling",
        "1",
    ];
    has(&fail(args), &["no-such-model.stl", "cannot read"]);
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "shopping list\n- milk\n- end mills\n").unwrap();
    let png = dir.path().join("photo.png");
    let mut png_bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png_bytes.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    std::fs::write(&png, png_bytes).unwrap();
    for (bad, name) in [(&notes, "notes.txt"), (&png, "photo.png")] {
        let bad = bad.to_str().unwrap();
        let args = [
            "drop",
            bad,
            "--tool",
            "ball:3",
            "--step",
            "1",
            "--sampling",
            "1",
        ];
        has(&fail(args), &[name, "not an STL"]);
        let out = dir.path().join("never.ngc");
        let args = [
            "toolpath",
            bad,
            "--tool",
            "ball:3",
            "--stepover",
            "1",
            "-o",
            out.to_str().unwrap(),
        ];
        has(&fail(args), &[name, "not an STL"]);
        assert!(!out.exists());
    }
    // Missing required arguments.
    has(
        &fail(["drop", model, "--step", "1", "--sampling", "1"]),
        &["--tool"],
    );
    has(
        &fail(["toolpath", model, "--tool", "ball:3", "--stepover", "1"]),
        &["--output"],
    );
}

/// Checks every motion line: `G0`/`G1` with X/Y/Z/F words, or a modal continuation starting with
/// an axis word. Returns (rapid lines, feed lines).
fn check_motion_lines(gcode: &str) -> (usize, usize) {
    let (mut rapids, mut feeds) = (0, 0);
    let mut mode = None;
    for line in gcode.lines() {
        let mut words = line.split_whitespace().peekable();
        let Some(&first) = words.peek() else { continue };
        match first {
            "G0" | "G1" => {
                mode = Some(first);
                words.next();
            }
            w if w.starts_with(['X', 'Y', 'Z']) => {
                assert!(
                    mode.is_some(),
                    "axis words before any motion mode: {line:?}"
                );
            }
            _ => continue,
        }
        match mode {
            Some("G0") => rapids += 1,
            _ => feeds += 1,
        }
        let mut n = 0;
        for w in words {
            let (letter, value) = w.split_at(1);
            assert!(
                ["X", "Y", "Z", "F"].contains(&letter),
                "unexpected word {w:?} in {line:?}"
            );
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("{w:?} in {line:?} is not a number"));
            assert!(v.is_finite(), "{line:?}");
            n += 1;
        }
        assert!(n > 0, "motion line without coordinates: {line:?}");
    }
    (rapids, feeds)
}

#[test]
fn toolpath_writes_gcode_in_both_dialects() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = sphere_model(dir.path());
    let model = model.to_str().unwrap();
    let out = dir.path().join("out.ngc");
    let base = [
        "toolpath",
        model,
        "--tool",
        "ball:3",
        "--stepover",
        "1",
        "-o",
    ];

    let stdout = succeed(base.iter().chain(&[out.to_str().unwrap()]));
    assert!(stdout.contains("cut"), "{stdout}");
    assert!(stdout.contains("machining time"), "{stdout}");
    let g = std::fs::read_to_string(&out).unwrap();
    assert!(g.starts_with('%'), "{}", &g[..g.len().min(200)]);
    assert!(g.trim_end().ends_with('%'));
    for word in ["G21", "M3", "M2", "M6"] {
        assert!(g.contains(word), "LinuxCNC program lacks {word}");
    }
    let (rapids, feeds) = check_motion_lines(&g);
    assert!(
        rapids >= 1 && feeds > 100,
        "{rapids} rapid and {feeds} feed lines"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let grbl = dir.path().join("out-grbl.nc");
    let stdout = succeed(
        base.iter()
            .chain(&[grbl.to_str().unwrap(), "--dialect", "grbl"]),
    );
    assert!(stdout.contains("machining time"), "{stdout}");
    let g = std::fs::read_to_string(&grbl).unwrap();
    assert!(!g.contains("M6"), "GRBL rejects M6");
    assert!(!g.contains('%'), "GRBL programs are not %-wrapped");
    for word in ["G21", "M3", "M2"] {
        assert!(g.contains(word), "GRBL program lacks {word}");
    }
    let (rapids, feeds) = check_motion_lines(&g);
    assert!(
        rapids >= 1 && feeds > 100,
        "{rapids} rapid and {feeds} feed lines"
    );
}

#[test]
fn no_arguments_without_a_display_names_the_headless_subcommands() {
    // With no arguments millpond opens its window; where there is no display it must say so
    // and point at the subcommands that work without one, not panic in the windowing code.
    let dir = tempfile::tempdir().unwrap();
    let out = millpond()
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("MILLPOND_CONFIG_DIR", dir.path())
        .output()
        .expect("run millpond");
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\nstderr: {stderr}",
        out.status
    );
    assert!(stderr.contains("no display"), "{stderr}");
    for sub in ["millpond toolpath", "millpond drop", "millpond serve"] {
        assert!(stderr.contains(sub), "{sub} not named: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}
