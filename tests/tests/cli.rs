//! End-to-end tests of the `millpond` binary: `drop` (JSON summary and CSV grid), `toolpath`
//! (G-code: one operation of each strategy, several in one program with tool changes, the
//! stock), argument errors, and the no-argument run without a display.

use millpond_core::models::geodesic_sphere;
use millpond_core::{Mesh, Point3, stl};
use millpond_tests::{assert_succeeded, text};
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

/// Runs a command that must succeed; returns its stdout.
fn succeed<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run(args);
    assert_succeeded(&out);
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
/// in a new temporary folder; returns the folder, the file's path and the mesh as the loader
/// reads it back.
fn sphere_model() -> (tempfile::TempDir, PathBuf, Mesh) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sphere.stl");
    let tris = geodesic_sphere(Point3::new(0.0, 0.0, 0.0), SPHERE_RADIUS, 8);
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    stl::write_binary(file, "sphere", &tris).unwrap();
    let mesh = Mesh::from_stl_path(&path).unwrap();
    assert_eq!(mesh.len(), 1280);
    (dir, path, mesh)
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

/// `millpond drop MODEL --tool ball:3 --csv CSV` and `extra`, which must succeed; its stdout.
fn drop_to_csv(model: &Path, csv: &Path, extra: &[&str]) -> String {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("drop"),
        model.as_os_str(),
        "--tool".as_ref(),
        "ball:3".as_ref(),
        "--csv".as_ref(),
        csv.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    succeed(&args)
}

#[test]
fn drop_default_bounds_json_and_csv() {
    let (dir, model, mesh) = sphere_model();
    let csv = dir.path().join("grid.csv");
    let (step, sampling) = (1.5, 0.7);
    let stdout = drop_to_csv(
        &model,
        &csv,
        &["--step", "1.5", "--sampling", "0.7", "--threads", "2"],
    );
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
    let (dir, model, mesh) = sphere_model();
    let mut csvs = Vec::new();
    for threads in ["1", "2"] {
        let csv = dir.path().join(format!("grid-{threads}.csv"));
        let args = ["--step", "0.25", "--sampling", "0.1", "--threads", threads];
        let stdout = drop_to_csv(&model, &csv, &args);
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
    let (dir, model, mesh) = sphere_model();
    let csv = dir.path().join("grid.csv");
    let drop = |extra: &[&str]| {
        let s = summary(&drop_to_csv(&model, &csv, extra));
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
    let (dir, model, _) = sphere_model();
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
    // `millpond drop` of another model file, which must fail.
    let drop_model = |path: &str| {
        fail([
            "drop",
            path,
            "--tool",
            "ball:3",
            "--step",
            "1",
            "--sampling",
            "1",
        ])
    };
    has(
        &drop_model(missing.to_str().unwrap()),
        &["no-such-model.stl", "cannot read"],
    );
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "shopping list\n- milk\n- end mills\n").unwrap();
    let png = dir.path().join("photo.png");
    let mut png_bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png_bytes.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    std::fs::write(&png, png_bytes).unwrap();
    for (bad, name) in [(&notes, "notes.txt"), (&png, "photo.png")] {
        let bad = bad.to_str().unwrap();
        has(&drop_model(bad), &[name, "not an STL"]);
        let out = dir.path().join("never.ngc");
        let args = [&coarse_toolpath(bad)[..], &[out.to_str().unwrap()]].concat();
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

/// Checks every line of a program: comments, the known setup and tool-change words, and motion
/// lines (`G0`/`G1` with X/Y/Z/F words, `G2`/`G3` arcs with their I/J centre, or a modal
/// continuation starting with an axis word).
/// Returns (rapid lines, feed lines).
fn check_motion_lines(gcode: &str) -> (usize, usize) {
    let (mut rapids, mut feeds) = (0, 0);
    let mut mode = None;
    for line in gcode.lines() {
        let mut words = line.split_whitespace().peekable();
        let Some(&first) = words.peek() else { continue };
        match first {
            "G0" | "G1" | "G2" | "G3" => {
                mode = Some(first);
                words.next();
            }
            w if w.starts_with(['X', 'Y', 'Z']) => {
                assert!(
                    mode.is_some(),
                    "axis words before any motion mode: {line:?}"
                );
            }
            _ => {
                check_other_line(line);
                continue;
            }
        }
        match mode {
            Some("G0") => rapids += 1,
            _ => feeds += 1,
        }
        let mut n = 0;
        let arc = matches!(mode, Some("G2" | "G3"));
        let mut centre = 0;
        for w in words {
            let (letter, value) = w.split_at(1);
            let allowed: &[&str] = if arc {
                &["X", "Y", "Z", "F", "I", "J"]
            } else {
                &["X", "Y", "Z", "F"]
            };
            assert!(
                allowed.contains(&letter),
                "unexpected word {w:?} in {line:?}"
            );
            if ["I", "J"].contains(&letter) {
                centre += 1;
                continue;
            }
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("{w:?} in {line:?} is not a number"));
            assert!(v.is_finite(), "{line:?}");
            n += 1;
        }
        assert!(n > 0, "motion line without coordinates: {line:?}");
        assert!(
            centre == if arc { 2 } else { 0 },
            "an arc without both I and J: {line:?}"
        );
    }
    (rapids, feeds)
}

/// A line that is not motion: `%`, one comment, or words a post-processor may write outside
/// motion (units and modes, tool change and length offset, spindle, pause, end).
fn check_other_line(line: &str) {
    if line == "%" {
        return;
    }
    if line.starts_with('(') {
        assert!(
            line.ends_with(')') && line.matches(['(', ')']).count() == 2,
            "bad comment {line:?}"
        );
        return;
    }
    for w in line.split_whitespace() {
        let (letter, value) = w.split_at(1);
        let ok = match letter {
            "G" => ["21", "90", "94", "17", "40", "80", "49", "64", "43"].contains(&value),
            "M" => ["0", "2", "3", "5", "6"].contains(&value),
            "T" | "H" => value.parse::<u32>().is_ok(),
            "S" | "P" => value
                .parse::<f64>()
                .is_ok_and(|v| v.is_finite() && v >= 0.0),
            _ => false,
        };
        assert!(ok, "unexpected word {w:?} in {line:?}");
    }
}

/// Tool positions after motion lines: (rapid, [x, y, z]).
type Moves = Vec<(bool, [f64; 3])>;

/// The tool position after every motion line, per operation, in program order: (operation
/// name, moves). Positions start once X, Y and Z are all known.
fn operation_moves(gcode: &str) -> Vec<(String, Moves)> {
    let mut ops: Vec<(String, Moves)> = Vec::new();
    let mut pos = [f64::NAN; 3];
    let mut rapid = true;
    for line in gcode.lines() {
        if let Some(name) = line
            .strip_prefix("(Operation: ")
            .and_then(|l| l.strip_suffix(')'))
        {
            ops.push((name.to_string(), Vec::new()));
            continue;
        }
        if line.starts_with('(') {
            continue;
        }
        let mut moved = false;
        for w in line.split_whitespace() {
            match w {
                "G0" => rapid = true,
                "G1" | "G2" | "G3" => rapid = false,
                _ => {
                    let axis = match w.as_bytes()[0] {
                        b'X' => 0,
                        b'Y' => 1,
                        b'Z' => 2,
                        _ => continue,
                    };
                    pos[axis] = w[1..].parse().unwrap();
                    moved = true;
                }
            }
        }
        if moved && pos.iter().all(|v| v.is_finite()) {
            let op = ops.last_mut().expect("motion before the first operation");
            op.1.push((rapid, pos));
        }
    }
    ops
}

/// `millpond toolpath MODEL --tool ball:3 --stepover 1 -o`: the output's path to follow.
fn coarse_toolpath(model: &str) -> [&str; 7] {
    [
        "toolpath",
        model,
        "--tool",
        "ball:3",
        "--stepover",
        "1",
        "-o",
    ]
}

#[test]
fn toolpath_writes_gcode_in_both_dialects() {
    let (dir, model, _) = sphere_model();
    let model = model.to_str().unwrap();
    let out = dir.path().join("out.ngc");
    let base = coarse_toolpath(model);

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

/// Roughing with a 6 mm end mill, then waterline and raster finishing with a 3 mm ball nose.
const ROUGH_THEN_FINISH: [&str; 6] = [
    "--op",
    "rough,tool=flat:6,stepdown=4,stepover=50%,sampling=0.5,allowance=0.5,t=1",
    "--op",
    "waterline,tool=ball:3,stepdown=2,sampling=0.5,t=2",
    "--op",
    "raster,tool=ball:3,stepover=1,sampling=0.5,t=2,name=Final raster",
];
/// The roughing allowance above.
const ROUGH_ALLOWANCE: f64 = 0.5;
/// Stock for it: 3 mm beyond the model's sides, 1 mm above, 0.5 mm below.
const STOCK_MARGIN: [&str; 2] = ["--stock-margin", "3,1,0.5"];

/// [`ROUGH_THEN_FINISH`] in the [`STOCK_MARGIN`] stock, then `extra`.
fn rough_then_finish<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    [&ROUGH_THEN_FINISH[..], &STOCK_MARGIN, extra].concat()
}

/// A raster with the 3 mm ball nose, 1.5 mm stepover and 0.5 mm sampling.
const BALL_RASTER: [&str; 6] = ["--tool", "ball:3", "--stepover", "1.5", "--sampling", "0.5"];

/// Runs `toolpath` on `model` with `args`, writing `out`; returns stdout.
fn toolpath(model: &Path, out: &Path, args: &[&str]) -> String {
    let mut all: Vec<&OsStr> = vec![
        OsStr::new("toolpath"),
        model.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    all.extend(args.iter().map(OsStr::new));
    succeed(&all)
}

/// The stock box of `STOCK_MARGIN` around `mesh`: ([xmin, ymin, zmin], [xmax, ymax, zmax]).
fn margin_stock(mesh: &Mesh) -> ([f64; 3], [f64; 3]) {
    let b = mesh.bounds();
    (
        [b.min.x - 3.0, b.min.y - 3.0, b.min.z - 0.5],
        [b.max.x + 3.0, b.max.y + 3.0, b.max.z + 1.0],
    )
}

/// Every position of `moves` lies in the stock's XY box, not below its bottom and not above
/// the safe height; cutting moves are not above its top.
fn check_in_stock(moves: &[(bool, [f64; 3])], (lo, hi): ([f64; 3], [f64; 3]), safe_z: f64) {
    let tol = 1e-4; // G-code has 4 decimals.
    for &(rapid, p) in moves {
        assert!(
            p[0] >= lo[0] - tol
                && p[0] <= hi[0] + tol
                && p[1] >= lo[1] - tol
                && p[1] <= hi[1] + tol,
            "{p:?} outside the stock's XY box {lo:?}..{hi:?}"
        );
        assert!(
            p[2] >= lo[2] - tol,
            "{p:?} below the stock bottom {}",
            lo[2]
        );
        assert!(p[2] <= safe_z + tol, "{p:?} above the safe height {safe_z}");
        assert!(
            rapid || p[2] <= hi[2] + tol,
            "cutting at {p:?}, above the stock"
        );
    }
}

fn find(g: &str, what: &str) -> usize {
    g.find(what)
        .unwrap_or_else(|| panic!("no {what:?} in the program"))
}

/// Where `what` first occurs at or after byte `from`.
fn find_after(g: &str, from: usize, what: &str) -> usize {
    from + find(&g[from..], what)
}

#[test]
fn toolpath_roughs_then_finishes_in_one_program_with_named_tool_changes() {
    let (dir, model, mesh) = sphere_model();
    let out = dir.path().join("part.ngc");
    let stdout = toolpath(&model, &out, &rough_then_finish(&[]));
    // Statistics per operation, then the total.
    for line in [
        "1. Roughing, T1 flat 6 mm",
        "2. Waterline finishing, T2 ball 3 mm",
        "3. Final raster, T2",
    ] {
        assert!(stdout.contains(line), "no {line:?} in {stdout}");
    }
    assert!(
        stdout.contains("3 operations") && stdout.contains("total: cut"),
        "{stdout}"
    );
    assert!(stdout.contains("estimated machining time"), "{stdout}");

    let g = std::fs::read_to_string(&out).unwrap();
    // One program: one header, one end.
    assert!(
        g.starts_with("%\n") && g.ends_with("M5\nM2\n%\n"),
        "{}",
        &g[g.len() - 40..]
    );
    assert_eq!(g.matches("G21").count(), 1);
    assert_eq!(g.lines().filter(|l| *l == "M2").count(), 1);
    let (rapids, feeds) = check_motion_lines(&g);
    assert!(
        rapids > 10 && feeds > 1000,
        "{rapids} rapid and {feeds} feed lines"
    );

    // The operations in the order given, each cutting.
    let ops = operation_moves(&g);
    let names: Vec<&str> = ops.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Roughing", "Waterline finishing", "Final raster"]);
    for (name, moves) in &ops {
        assert!(
            moves.iter().filter(|(rapid, _)| !rapid).count() > 50,
            "{name} hardly cuts"
        );
    }
    // Two tool changes: the end mill first, the ball nose before the waterline; the raster
    // goes on with the ball nose.
    let changes: Vec<&str> = g.lines().filter(|l| l.contains("M6")).collect();
    assert_eq!(changes, ["T1 M6", "T2 M6"]);
    let (rough, water, raster) = (
        find(&g, "(Operation: Roughing)"),
        find(&g, "(Operation: Waterline finishing)"),
        find(&g, "(Operation: Final raster)"),
    );
    let t1 = find(&g, "(Change to tool 1: flat 6 mm)\nT1 M6\n");
    let t2 = find(&g, "(Change to tool 2: ball 3 mm)\nT2 M6\n");
    assert!(rough < t1 && t1 < find_after(&g, rough, "\nG1 "));
    assert!(water < t2 && t2 < find_after(&g, water, "\nG1 ") && t2 < raster);

    // Roughing keeps its axis within the stock grown by the tool radius (its edge reaches
    // the stock's sides), reaches the stock bottom, and keeps the allowance off the sphere:
    // the end mill's cylinder (radius 3 from the tip up) stays outside the sphere inscribed
    // in the mesh grown by the allowance.
    let stock = margin_stock(&mesh);
    let safe_z = stock.1[2] + 5.0;
    let roughing = &ops[0].1;
    let (lo, hi) = stock;
    let reach = (
        [lo[0] - 3.0, lo[1] - 3.0, lo[2]],
        [hi[0] + 3.0, hi[1] + 3.0, hi[2]],
    );
    check_in_stock(roughing, reach, safe_z);
    assert!(
        roughing
            .iter()
            .any(|(rapid, p)| !rapid && (p[2] - stock.0[2]).abs() < 1e-4),
        "no cut on the stock bottom"
    );
    let (inner, _) = sphere_radii(&mesh);
    for &(_, [x, y, z]) in roughing {
        let gap = (x.hypot(y) - 3.0).max(0.0);
        let distance = gap.hypot(z.max(0.0));
        assert!(
            distance >= inner + ROUGH_ALLOWANCE - 1e-4,
            "the end mill at ({x}, {y}, {z}) is {distance} from the centre, inside the \
             sphere plus allowance ({})",
            inner + ROUGH_ALLOWANCE
        );
    }
    // Finishing never goes below the stock bottom either, and rapids at the safe height.
    for (_, moves) in &ops[1..] {
        assert!(moves.iter().all(|(_, p)| p[2] >= stock.0[2] - 1e-4));
        let top = moves.iter().map(|(_, p)| p[2]).fold(f64::MIN, f64::max);
        assert!(
            (top - safe_z).abs() < 1e-4,
            "highest Z {top}, safe height {safe_z}"
        );
    }
}

#[test]
fn toolpath_for_grbl_pauses_for_the_tool_change() {
    let (dir, model, mesh) = sphere_model();
    let out = dir.path().join("part.nc");
    toolpath(&model, &out, &rough_then_finish(&["--dialect", "grbl"]));
    let g = std::fs::read_to_string(&out).unwrap();
    check_motion_lines(&g);
    for word in ["M6", "G43", "G64", "%"] {
        assert!(!g.contains(word), "GRBL rejects {word}");
    }
    // The first tool is loaded before the program starts; one pause, for the ball nose.
    assert!(find(&g, "(Load tool 1 before starting: flat 6 mm)") < find(&g, "\nG1 "));
    assert_eq!(
        g.lines().filter(|l| *l == "M0").count(),
        1,
        "one tool change"
    );
    let water = find(&g, "(Operation: Waterline finishing)");
    let stop = find_after(&g, water, "\nM5\n");
    let named = find_after(&g, water, "(Change to tool 2: ball 3 mm)");
    let pause = find_after(&g, water, "\nM0\n");
    let restart = find_after(&g, water, "\nS18000 M3\n");
    let cut = find_after(&g, water, "\nG1");
    assert!(
        stop < named && named < pause && pause < restart && restart < cut,
        "spindle off, tool named, pause, spindle on, then cut"
    );
    assert!(pause < find(&g, "(Operation: Final raster)"));
    // The tool waits for the swap at the safe height.
    let safe_z = margin_stock(&mesh).1[2] + 5.0;
    let before: Vec<_> = operation_moves(&g[..pause])
        .into_iter()
        .flat_map(|(_, m)| m)
        .collect();
    let at_pause = before.last().unwrap().1;
    assert!(
        (at_pause[2] - safe_z).abs() < 1e-4,
        "paused at {at_pause:?}"
    );
}

#[test]
fn toolpath_several_operations_are_identical_with_one_and_two_threads() {
    let (dir, model, _) = sphere_model();
    let mut programs = Vec::new();
    for threads in ["1", "2"] {
        let out = dir.path().join(format!("part-{threads}.ngc"));
        let stdout = toolpath(&model, &out, &rough_then_finish(&["--threads", threads]));
        assert!(
            stdout.contains(&format!("on {threads} threads")),
            "{stdout}"
        );
        programs.push(std::fs::read(&out).unwrap());
    }
    assert!(programs[0].len() > 100_000, "{} bytes", programs[0].len());
    assert!(
        programs[0] == programs[1],
        "--threads 1 and --threads 2 programs differ"
    );
}

#[test]
fn toolpath_single_waterline_rough_and_raster_keep_to_the_stock() {
    let (dir, model, mesh) = sphere_model();
    let b = mesh.bounds();

    // Waterline: every cut at one of the levels, top down by the stepdown to the model's
    // bottom (the default stock is the model's box).
    let out = dir.path().join("waterline.ngc");
    let args = [
        "--strategy",
        "waterline",
        "--tool",
        "ball:3",
        "--stepdown",
        "2",
        "--sampling",
        "0.5",
    ];
    let stdout = toolpath(&model, &out, &args);
    assert!(
        stdout.contains("1. Waterline finishing, T1 ball 3 mm"),
        "{stdout}"
    );
    let g = std::fs::read_to_string(&out).unwrap();
    check_motion_lines(&g);
    let ops = operation_moves(&g);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].0, "Waterline finishing");
    let n = ((b.max.z - b.min.z) / 2.0 - 1e-9).ceil() as usize;
    let levels: Vec<f64> = (1..n)
        .map(|k| b.max.z - 2.0 * k as f64)
        .chain([b.min.z])
        .collect();
    // Every move across is on a level, but for the few links that stay down along the
    // surface between loops (within the model's height). (Feeding straight down may stop
    // above one: an approach feeds down from above the stock's top.)
    let mut cut_levels = BTreeSet::new();
    let (mut on_level, mut surface_links) = (0, 0);
    let mut at = [f64::NAN; 3];
    for &(rapid, p) in &ops[0].1 {
        let across = p[0] != at[0] || p[1] != at[1];
        if !rapid && across {
            match levels.iter().position(|z| (p[2] - z).abs() < 1e-4) {
                Some(k) => {
                    cut_levels.insert(k);
                    on_level += 1;
                }
                None => {
                    assert!(
                        p[2] >= b.min.z - 1e-4 && p[2] <= b.max.z + 1e-4,
                        "cut at {p:?}, not on a level {levels:?} nor on the model"
                    );
                    surface_links += 1;
                }
            }
        }
        at = p;
    }
    assert!(
        surface_links * 10 < on_level,
        "{surface_links} moves off the levels, {on_level} on them"
    );
    assert!(
        cut_levels.len() + 1 >= levels.len(),
        "levels cut: {cut_levels:?} of {levels:?}"
    );
    assert!(
        (ops[0].1.iter().map(|m| m.1[2]).fold(f64::MIN, f64::max) - (b.max.z + 5.0)).abs() < 1e-4
    );

    // Roughing in an explicit stock: the tool axis inside its box grown by the tool radius
    // (the tool's edge reaches the stock's sides), layers from its top down to its bottom.
    let out = dir.path().join("rough.ngc");
    let args = [
        "--strategy",
        "rough",
        "--tool",
        "flat:6",
        "--stepdown",
        "3",
        "--sampling",
        "0.5",
        "--pattern",
        "zigzag",
        "--stock",
        "-14,14,-13,13,-9,12",
    ];
    let stdout = toolpath(&model, &out, &args);
    assert!(stdout.contains("1. Roughing, T1 flat 6 mm"), "{stdout}");
    let g = std::fs::read_to_string(&out).unwrap();
    check_motion_lines(&g);
    let ops = operation_moves(&g);
    assert_eq!(ops.len(), 1);
    let reach = ([-17.0, -16.0, -9.0], [17.0, 16.0, 12.0]);
    check_in_stock(&ops[0].1, reach, 17.0);
    for z in [9.0, 6.0, -9.0] {
        assert!(
            ops[0]
                .1
                .iter()
                .any(|(rapid, p)| !rapid && (p[2] - z).abs() < 1e-4),
            "no cut on the layer at Z{z}"
        );
    }

    // Raster (the default strategy) with stock margins: its floor is the stock bottom, its
    // rapids 5 mm above the stock top.
    let out = dir.path().join("raster.ngc");
    let margins_and_name = ["--stock-margin", "2,1,1.5", "--name", "Final pass"];
    let args = [&BALL_RASTER[..], &margins_and_name].concat();
    toolpath(&model, &out, &args);
    let g = std::fs::read_to_string(&out).unwrap();
    check_motion_lines(&g);
    let ops = operation_moves(&g);
    assert_eq!(ops[0].0, "Final pass");
    let moves = &ops[0].1;
    let low = moves.iter().map(|m| m.1[2]).fold(f64::MAX, f64::min);
    let high = moves.iter().map(|m| m.1[2]).fold(f64::MIN, f64::max);
    assert!((low - (b.min.z - 1.5)).abs() < 1e-4, "lowest Z {low}");
    assert!(
        (high - (b.max.z + 1.0 + 5.0)).abs() < 1e-4,
        "highest Z {high}"
    );
}

#[test]
fn toolpath_bad_operations_name_the_setting_and_write_nothing() {
    let (dir, model, _) = sphere_model();
    let model = model.to_str().unwrap();
    let out = dir.path().join("never.ngc");
    let out = out.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--op", "rough,tool=flat:6,stepdown=1,speed=3"],
            &["--op", "\"speed\""],
        ),
        (
            &["--op", "waterline,tool=ball:3,stepover=1"],
            &["\"stepover\"", "waterline"],
        ),
        (
            &["--op", "rough,tool=flat:6,stepdown=abc"],
            &["\"stepdown\"", "abc"],
        ),
        (
            &["--op", "rough,tool=flat:6,stepdown"],
            &["\"stepdown\"", "no value"],
        ),
        (
            &["--op", "rough,tool=flat:6,stepdown=1,stepdown=2"],
            &["\"stepdown\"", "twice"],
        ),
        (
            &["--op", "rough,tool=cone:6,stepdown=1"],
            &["\"tool\"", "cone:6"],
        ),
        (&["--op", "rough,stepdown=1"], &["tool="]),
        (&["--op", "raster,tool=ball:3"], &["stepover="]),
        (&["--op", "mill,tool=ball:3"], &["strategy", "mill"]),
        (
            &[
                "--op",
                "rough,tool=flat:6,stepdown=1",
                "--op",
                "raster,tool=ball:3,stepover=0.3,feed=-5",
            ],
            &["\"feed\"", "-5"],
        ),
        (
            &[
                "--op",
                "rough,tool=flat:6,stepdown=1,t=1",
                "--op",
                "raster,tool=ball:3,stepover=0.3,t=1",
            ],
            &["tool number 1", "flat:6", "ball:3"],
        ),
        // Planning errors come after the model is read, and name the operation.
        (
            &["--op", "raster,tool=ball:3,stepover=0.3,margin=-50"],
            &["--op", "margin=-50", "bounds"],
        ),
        // Flags and --op do not mix.
        (
            &["--op", "raster,tool=ball:3,stepover=1", "--tool", "ball:3"],
            &["--tool", "--op"],
        ),
        (
            &["--op", "raster,tool=ball:3,stepover=1", "--stepover", "1"],
            &["--stepover", "--op"],
        ),
        (
            &[
                "--op",
                "raster,tool=ball:3,stepover=1",
                "--strategy",
                "raster",
            ],
            &["--strategy"],
        ),
        (
            &["--op", "raster,tool=ball:3,stepover=1", "--name", "x"],
            &["--name", "--op"],
        ),
        // The single-operation flags.
        (
            &[
                "--strategy",
                "waterline",
                "--tool",
                "ball:3",
                "--stepover",
                "1",
            ],
            &["--stepover", "waterline"],
        ),
        (
            &["--strategy", "rough", "--tool", "flat:6"],
            &["--stepdown"],
        ),
        (&["--tool", "ball:3"], &["--stepover"]),
        (&["--stepover", "1"], &["--tool"]),
        (
            &["--tool", "ball:3", "--stepover", "-1"],
            &["--stepover", "-1 is out of range (0.001 to 1000 mm)"],
        ),
        (
            &["--tool", "ball:3", "--stepover", "1", "--pattern", "offset"],
            &["--pattern", "raster"],
        ),
        // Stock and heights.
        (
            &["--tool", "ball:3", "--stepover", "1", "--stock", "1,2,3"],
            &["--stock", "XMIN,XMAX"],
        ),
        (
            &[
                "--tool",
                "ball:3",
                "--stepover",
                "1",
                "--stock",
                "0,1,5,2,0,1",
            ],
            &["YMIN", "YMAX"],
        ),
        (
            &[
                "--tool",
                "ball:3",
                "--stepover",
                "1",
                "--stock-margin",
                "-1",
            ],
            &["--stock-margin"],
        ),
        (
            &[
                "--tool",
                "ball:3",
                "--stepover",
                "1",
                "--stock-margin",
                "1",
                "--stock",
                "0,1,0,1,0,1",
            ],
            &["--stock-margin", "--stock"],
        ),
        (
            &["--tool", "ball:3", "--stepover", "1", "--safe-z", "5"],
            &["--safe-z", "stock top"],
        ),
        (
            &[
                "--strategy",
                "rough",
                "--tool",
                "flat:6",
                "--stepdown",
                "1",
                "--floor",
                "30",
            ],
            &["floor"],
        ),
    ];
    for (args, words) in cases {
        let mut all = vec!["toolpath", model, "-o", out];
        all.extend(args.iter());
        let stderr = fail(&all);
        for w in *words {
            assert!(stderr.contains(w), "{args:?}: stderr lacks {w:?}: {stderr}");
        }
        assert!(!Path::new(out).exists(), "{args:?} wrote the program");
    }
}

/// The bundled part in a 2 mm margin with 1 mm on top, as the window's default stock.
fn default_part_in_stock(out: &Path, ops: &[&str]) -> Output {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/default-part.stl");
    let mut args: Vec<&OsStr> = vec![
        "toolpath".as_ref(),
        model.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--stock-margin".as_ref(),
        "2,1".as_ref(),
    ];
    for op in ops {
        args.push("--op".as_ref());
        args.push(op.as_ref());
    }
    run(&args)
}

/// Finishing run on the uncut block buries the ball nose: said on stderr, naming the
/// operation and its first such move (the program is still written). Roughing first (the
/// window's default job) leaves nothing to say — also along the stock's sides, where the
/// margin is narrower than the roughing tool.
#[test]
fn finishing_uncut_stock_is_warned_of_and_the_default_job_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("finish.ngc");
    let raster = "raster,tool=ball:3,stepover=0.5";
    let alone = default_part_in_stock(&out, &[raster]);
    let stderr = text(&alone.stderr);
    assert!(alone.status.success(), "{stderr}");
    assert!(out.exists());
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: 1. Raster finishing: move "))
        .unwrap_or_else(|| panic!("no depth-of-cut warning: {stderr}"));
    let depth: f64 = warning
        .split(" cuts ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no depth in {warning}"));
    let model = Mesh::from_stl_path(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/default-part.stl"),
    )
    .unwrap();
    let b = model.bounds();
    // Nearly the whole height of the stock, top margin included: the feed down from above
    // the block to a millimetre over the floor.
    let stock_height = b.max.z + 1.0 - b.min.z;
    assert!(
        depth > stock_height - 1.05 && depth < stock_height + 0.05,
        "{depth} mm in {warning}"
    );
    // The approach stops above the block and feeds down from there, not at rapid.
    assert!(!stderr.contains("rapid move"), "{stderr}");
    let g = std::fs::read_to_string(&out).unwrap();
    let top = b.max.z + 1.0;
    let lines: Vec<&str> = g.lines().collect();
    let first_feed = lines.iter().position(|l| l.starts_with("G1 Z")).unwrap();
    let stop: f64 = lines[first_feed - 1]
        .strip_prefix('Z')
        .and_then(|z| z.parse().ok())
        .unwrap_or_else(|| panic!("no rapid down before {:?}", lines[first_feed]));
    assert!(
        stop > top && stop <= top + 1.0 + 1e-4,
        "the rapid down stops at Z{stop}, the block's top is Z{top}"
    );

    let out = dir.path().join("job.ngc");
    let job = default_part_in_stock(&out, &["rough,tool=flat:6,stepdown=2", raster]);
    let stderr = text(&job.stderr);
    assert!(job.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    // After the change to the ball nose and its length offset, the first move is up to the
    // safe height, before anything moves across the part.
    let g = std::fs::read_to_string(&out).unwrap();
    let after = &g[find(&g, "G43 H2\n") + "G43 H2\n".len()..];
    let first_move = after
        .lines()
        .find(|l| l.starts_with("G0") || l.starts_with("G1") || l.starts_with('X'))
        .unwrap();
    assert_eq!(
        first_move,
        format!("G0 Z{}", num(b.max.z + 1.0 + 5.0)),
        "{after:.300}"
    );
}

/// G-code's number format: up to 4 decimals, no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A scan saved in metres: read as millimetres it is 0.04 mm across, and the run says so and
/// names the units that make it workshop-sized; read with `--units m` it is 40 mm across
/// (the grid covers it) and nothing is said.
#[test]
fn a_part_in_metres_gets_a_units_hint_and_loads_with_units_m() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan-in-metres.stl");
    let tris = geodesic_sphere(Point3::new(0.0, 0.0, 0.0), 0.02, 3);
    stl::write_binary(
        std::io::BufWriter::new(std::fs::File::create(&path).unwrap()),
        "scan",
        &tris,
    )
    .unwrap();
    let drop = |units: &str| {
        run([
            OsStr::new("drop"),
            path.as_os_str(),
            "--tool".as_ref(),
            "ball:3".as_ref(),
            "--step".as_ref(),
            "1".as_ref(),
            "--sampling".as_ref(),
            "1".as_ref(),
            "--units".as_ref(),
            units.as_ref(),
        ])
    };
    let as_mm = drop("mm");
    assert!(as_mm.status.success());
    let stderr = text(&as_mm.stderr);
    let b = Mesh::from_stl_path(&path).unwrap().bounds();
    let across = (b.max.x - b.min.x)
        .max(b.max.y - b.min.y)
        .max(b.max.z - b.min.z);
    assert!(
        stderr.contains("note:")
            && stderr.contains(&format!("{across:.3} mm across"))
            && stderr.contains(&format!("in metres ({:.0} mm across)", across * 1000.0)),
        "{stderr}"
    );
    let as_m = drop("m");
    assert!(as_m.status.success());
    assert!(
        !text(&as_m.stderr).contains("note:"),
        "{}",
        text(&as_m.stderr)
    );
    // The grid covers the part scaled to millimetres.
    let points = count(b.min.y * 1000.0, b.max.y * 1000.0, 1.0)
        * count(b.min.x * 1000.0, b.max.x * 1000.0, 1.0);
    assert_eq!(
        summary(&text(&as_m.stdout))["points"].as_u64(),
        Some(points as u64)
    );
}

/// `millpond MODEL` with a file that is not there says so, naming it, before looking for a
/// display; a subcommand name is still a subcommand.
#[test]
fn a_missing_model_argument_is_named() {
    let err = fail(["no-such-part.stl"]);
    assert!(
        err.contains("cannot open no-such-part.stl: no such file"),
        "{err}"
    );
    let err = fail(["toolpath"]);
    assert!(err.contains("--output"), "{err}");
}

/// Runs `millpond ARGS` on a pseudo-terminal (util-linux `script`, part of every Debian
/// system), returning what the terminal showed.
fn on_a_terminal(args: &[&str]) -> String {
    let bin = millpond_tests::millpond_bin();
    let command = std::iter::once(bin.display().to_string())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script (util-linux) to give millpond a terminal");
    assert!(out.status.success(), "{}", text(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On a terminal each operation shows a bar with chunks, CL points per second and the time
/// left; `--quiet` silences it; a pipe gets none (the summary lines are unchanged).
#[test]
fn progress_bars_on_a_terminal_only() {
    let (dir, model, _) = sphere_model();
    let out = dir.path().join("p.ngc");
    let (m, o) = (model.display().to_string(), out.display().to_string());
    let args = [
        "toolpath",
        &m,
        "-o",
        &o,
        "--tool",
        "ball:3",
        "--stepover",
        "0.1",
        "--sampling",
        "0.05",
    ];
    let shown = on_a_terminal(&args);
    assert!(
        shown.contains("1. Raster finishing [")
            && shown.contains(" chunks")
            && shown.contains("points/s"),
        "{shown}"
    );
    assert!(
        shown.contains("1. Raster finishing, T1 ball 3 mm:"),
        "{shown}"
    );
    let quiet = on_a_terminal(&[&args[..], &["--quiet"]].concat());
    assert!(!quiet.contains(" chunks"), "{quiet}");
    assert!(
        quiet.contains("1. Raster finishing, T1 ball 3 mm:"),
        "{quiet}"
    );
    let piped = run(args);
    assert!(piped.status.success());
    assert!(
        !text(&piped.stderr).contains(" chunks"),
        "{}",
        text(&piped.stderr)
    );
}

/// `--zero stock-front-left,stock-top`: the header says where zero is, and every position of
/// the program is the same move measured from the stock's front left top corner.
#[test]
fn work_zero_at_a_stock_corner_and_its_top() {
    let (dir, model, mesh) = sphere_model();
    let b = mesh.bounds();
    let (plain, zeroed) = (dir.path().join("plain.ngc"), dir.path().join("zeroed.ngc"));
    let args = [&BALL_RASTER[..], &["--stock-margin", "2,1"]].concat();
    toolpath(&model, &plain, &args);
    toolpath(
        &model,
        &zeroed,
        &[&args[..], &["--zero", "stock-front-left,stock-top"]].concat(),
    );
    let g = std::fs::read_to_string(&zeroed).unwrap();
    assert!(
        g.contains("(Work zero: X and Y at the stock's front left corner, Z at the stock top,"),
        "{g:.400}"
    );
    let zero = [b.min.x - 2.0, b.min.y - 2.0, b.max.z + 1.0];
    let a = operation_moves(&std::fs::read_to_string(&plain).unwrap());
    let z = operation_moves(&g);
    assert_eq!(a[0].1.len(), z[0].1.len());
    for ((ra, pa), (rz, pz)) in a[0].1.iter().zip(&z[0].1) {
        assert_eq!(ra, rz);
        for k in 0..3 {
            // Each side is rounded to 0.1 µm on its own.
            assert!((pa[k] - zero[k] - pz[k]).abs() < 2e-4, "{pa:?} vs {pz:?}");
        }
    }
    // Nothing cuts above zero (the stock top) or below the stock's height under it.
    let lowest = z[0].1.iter().map(|m| m.1[2]).fold(f64::MAX, f64::min);
    assert!((lowest - (b.min.z - zero[2])).abs() < 1e-4, "{lowest}");
    let err = fail([
        OsStr::new("toolpath"),
        model.as_os_str(),
        "-o".as_ref(),
        zeroed.as_os_str(),
        "--tool".as_ref(),
        "ball:3".as_ref(),
        "--stepover".as_ref(),
        "1".as_ref(),
        "--zero".as_ref(),
        "stock-middle,stock-top".as_ref(),
    ]);
    assert!(err.contains("unknown XY zero \"stock-middle\""), "{err}");
}
