//! Programs read by LinuxCNC's own interpreter (`rs274`, Debian's `linuxcnc-uspace`): every
//! line is accepted, and what the machine would do — its canonical moves — is checked: after
//! each tool change the new tool goes to safe Z before it moves across the part, and no rapid
//! moves across the part below the clearance height above the stock top (links within an
//! operation hop there where the move is clear of the model).
//!
//! The interpreter is run standalone (`-g`, stdin closed, no realtime, no display). Its tool
//! table is read in inches whatever the program's units, so lengths are written as mm / 25.4;
//! each run gets its own HOME, as it keeps a shared tool table file there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The interpreter, or a test failure that names the package to install.
fn rs274() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("rs274");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "LinuxCNC's interpreter rs274 is not installed: `apt-get install --no-install-recommends \
         linuxcnc-uspace` (Debian 12; .ci/run installs it)"
    );
}

/// One canonical call: its name and its arguments as written.
#[derive(Debug)]
struct Canon {
    seq: usize,
    call: String,
    args: String,
}

impl Canon {
    /// The call's first `n` arguments as numbers.
    fn numbers(&self, n: usize) -> Vec<f64> {
        self.args
            .split(',')
            .take(n)
            .map(|s| s.trim().parse().unwrap())
            .collect()
    }
}

/// Runs `program` through the interpreter with tools 1..=3 of `lengths_mm`; returns the
/// canonical calls. Fails the test on any interpreter error.
fn interpret(program: &Path, lengths_mm: &[f64]) -> Vec<Canon> {
    let home = tempfile::tempdir().unwrap();
    let table = home.path().join("tool.tbl");
    let rows: String = lengths_mm
        .iter()
        .enumerate()
        .map(|(i, mm)| format!("T{n} P{n} Z{:.8} D3\n", mm / 25.4, n = i + 1))
        .collect();
    std::fs::write(&table, rows).unwrap();
    let out = Command::new(rs274())
        .arg("-g")
        .arg("-t")
        .arg(&table)
        .arg(program)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .expect("run rs274");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stderr.lines().all(|l| l.trim() == "executing"),
        "rs274 refused {}:\n{stderr}\n{}",
        program.display(),
        stdout.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    stdout
        .lines()
        .filter_map(|l| {
            // "   12 N..... STRAIGHT_TRAVERSE(1.0000, 2.0000, 3.0000, ...)"
            let (seq, rest) = l.trim_start().split_once(' ')?;
            let rest = rest
                .trim_start_matches('N')
                .trim_start_matches(['.', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
            let (call, args) = rest.trim().split_once('(')?;
            Some(Canon {
                seq: seq.parse().ok()?,
                call: call.to_string(),
                args: args.trim_end_matches(')').to_string(),
            })
        })
        .collect()
}

/// What is wrong with the moves: an XY rapid after a tool change (or an operator pause)
/// before a Z-only lift to `safe_z`, or any XY rapid below `clear_z`. Also returns how many
/// tool changes there were.
fn unsafe_moves(calls: &[Canon], safe_z: f64, clear_z: f64) -> (Vec<String>, usize) {
    let eps = 1e-4;
    let mut at = [0.0f64; 3];
    let (mut armed, mut changes, mut bad) = (false, 0, Vec::new());
    for c in calls {
        match c.call.as_str() {
            "CHANGE_TOOL" | "PROGRAM_STOP" => {
                changes += usize::from(c.call == "CHANGE_TOOL");
                armed = true;
            }
            "STRAIGHT_TRAVERSE" | "STRAIGHT_FEED" => {
                let v = c.numbers(3);
                let across = (v[0] - at[0]).abs() > eps || (v[1] - at[1]).abs() > eps;
                if c.call == "STRAIGHT_TRAVERSE" {
                    if across && armed {
                        bad.push(format!(
                            "#{}: across to {v:?} after a tool change, before lifting to safe Z",
                            c.seq
                        ));
                    } else if across && at[2].min(v[2]) < clear_z - eps {
                        bad.push(format!(
                            "#{}: rapid across below the clearance height: {v:?}",
                            c.seq
                        ));
                    }
                    if !across && v[2] >= safe_z - eps {
                        armed = false;
                    }
                }
                at = [v[0], v[1], v[2]];
            }
            // ARC_FEED(first_end, second_end, first_axis, second_axis, rotation,
            // axis_end_point, ...): a feed move, never a rapid; it only moves the tool.
            "ARC_FEED" => {
                let v = c.numbers(6);
                at = [v[0], v[1], v[5]];
            }
            _ => {}
        }
    }
    (bad, changes)
}

fn bundled_part() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/default-part.stl")
}

/// `millpond toolpath PART -o OUT ARGS` with an `--op` for each of `ops`, which must succeed;
/// the program it wrote.
fn program(part: &Path, out: &Path, args: &[&str], ops: &[&str]) -> String {
    let mut cmd = Command::new(millpond_tests::millpond_bin());
    cmd.args(["toolpath".as_ref(), part.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str()])
        .args(args);
    for op in ops {
        cmd.args(["--op", op]);
    }
    let status = cmd.status().unwrap();
    assert!(status.success());
    std::fs::read_to_string(out).unwrap()
}

/// Three tools of different lengths in one program, for every built-in post whose dialect
/// rs274ngc reads (LinuxCNC, GRBL, Mach3/Mach4, UCCNC, Fanuc-style; not Marlin's `;`
/// comments), and for LinuxCNC with its arcs given by radius (R) instead of centre (I J).
/// Every one has arcs (roughing rings, waterline loops); rs274 checks each arc's radius at
/// both ends.
#[test]
fn linuxcnc_runs_every_program_and_each_new_tool_lifts_before_moving() {
    let dir = tempfile::tempdir().unwrap();
    let part = bundled_part();
    let mesh = millpond_core::Mesh::from_stl_path(&part).unwrap();
    let stock_top = mesh.bounds().max.z + 1.0;
    let safe_z = stock_top + 5.0;
    let clear_z = stock_top + millpond_core::links::LINK_CLEARANCE;
    let by_radius = dir.path().join("linuxcnc-r.toml");
    let linuxcnc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/posts/linuxcnc.toml"),
    )
    .unwrap();
    std::fs::write(
        &by_radius,
        linuxcnc.replacen("arcs = \"ijk\"", "arcs = \"r\"", 1),
    )
    .unwrap();
    let by_radius = by_radius.display().to_string();
    for dialect in ["linuxcnc", "grbl", "mach3", "uccnc", "fanuc", &by_radius] {
        let name = Path::new(dialect).file_stem().unwrap().to_string_lossy();
        let out = dir.path().join(format!("{name}.ngc"));
        let g = program(
            &part,
            &out,
            &[
                "--post",
                dialect,
                "--stock-margin",
                "2,1",
                "--spindle-dwell",
                "1.5",
            ],
            &[
                "rough,tool=flat:6,stepdown=4,sampling=0.5",
                "waterline,tool=ball:3,stepdown=4,sampling=0.5",
                "raster,tool=bull:6:1,stepover=2,sampling=0.5",
            ],
        );
        let centre = if dialect == by_radius { " R" } else { " I" };
        assert!(
            g.lines().filter(|l| l.contains(centre)).count() > 20,
            "{name}: arcs written with{centre}"
        );
        // Each tool longer than the one before: a missing lift would rapid the new tool
        // 20 mm lower than the program means.
        let calls = interpret(&out, &[0.0, 20.0, 35.0]);
        let (bad, changes) = unsafe_moves(&calls, safe_z, clear_z);
        assert!(bad.is_empty(), "{name}: {bad:#?}");
        let dwells = calls.iter().filter(|c| c.call == "DWELL").count();
        if dialect != "grbl" {
            assert_eq!(changes, 3, "{name}: three tools, three changes");
            assert_eq!(dwells, 3, "{name}: a dwell after each spindle start");
        } else {
            // GRBL has no changer: the operator swaps at each M0 pause.
            assert_eq!(changes, 0);
            assert_eq!(calls.iter().filter(|c| c.call == "PROGRAM_STOP").count(), 2);
        }

        // The check itself: the same program without the lift after the first change is
        // caught.
        if dialect == "linuxcnc" {
            let lift = format!("G43 H2\nG0 Z{}\n", fmt(safe_z));
            assert!(g.contains(&lift), "{lift:?} not in the program");
            let broken = dir.path().join("broken.ngc");
            std::fs::write(&broken, g.replacen(&lift, "G43 H2\n", 1)).unwrap();
            let (bad, _) = unsafe_moves(&interpret(&broken, &[0.0, 20.0, 35.0]), safe_z, clear_z);
            assert!(
                bad.iter().any(|b| b.contains("after a tool change")),
                "the missing lift went unnoticed: {bad:?}"
            );
        }
    }
}

/// G-code's number format: up to 4 decimals, no trailing zeros.
fn fmt(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The moves LinuxCNC would make: (call, X, Y, Z) of every straight move, and every feed
/// rate set, in the program's units.
fn moves_and_feeds(calls: &[Canon]) -> (Vec<(String, [f64; 3])>, Vec<f64>) {
    let mut moves = Vec::new();
    let mut feeds = Vec::new();
    for c in calls {
        let v: Vec<f64> = c
            .args
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        match c.call.as_str() {
            "STRAIGHT_TRAVERSE" | "STRAIGHT_FEED" => {
                moves.push((c.call.clone(), [v[0], v[1], v[2]]))
            }
            "ARC_FEED" => moves.push((c.call.clone(), [v[0], v[1], v[5]])),
            "SET_FEED_RATE" if v[0] > 0.0 => feeds.push(v[0]),
            _ => {}
        }
    }
    (moves, feeds)
}

/// An inch program (G20) is the millimetre program divided by 25.4: LinuxCNC reads it in
/// inches and makes the same moves, at the same feeds, within the output's rounding.
#[test]
fn an_inch_program_makes_the_same_moves_as_the_millimetre_one() {
    let dir = tempfile::tempdir().unwrap();
    let part = bundled_part();
    let mut runs = Vec::new();
    for units in ["mm", "inch"] {
        let out = dir.path().join(format!("{units}.ngc"));
        let g = program(
            &part,
            &out,
            &["--program-units", units, "--stock-margin", "2,1"],
            &[
                "rough,tool=flat:6,stepdown=4,sampling=0.5",
                "raster,tool=ball:3,stepover=2,sampling=0.5",
            ],
        );
        let calls = interpret(&out, &[0.0, 0.0]);
        let declared = calls
            .iter()
            .filter(|c| c.call == "USE_LENGTH_UNITS")
            .map(|c| c.args.clone())
            .next_back()
            .unwrap();
        runs.push((g, declared, moves_and_feeds(&calls)));
    }
    let (mm, inch) = (&runs[0], &runs[1]);
    assert!(mm.0.contains("\nG21 ") && !mm.0.contains("G20"));
    assert!(inch.0.contains("\nG20 ") && !inch.0.contains("G21"));
    assert_eq!(mm.1, "CANON_UNITS_MM");
    assert_eq!(inch.1, "CANON_UNITS_INCHES");
    let ((mm_moves, mm_feeds), (in_moves, in_feeds)) = (&mm.2, &inch.2);
    assert!(mm_moves.len() > 1000, "{} moves", mm_moves.len());
    // The interpreter prints 4 decimals: 2.54 µm in inches.
    let mut worst = 0.0f64;
    let (mut i, mut j) = (0, 0);
    while i < mm_moves.len() && j < in_moves.len() {
        let (a, b) = (&mm_moves[i], &in_moves[j]);
        let d = (0..3)
            .map(|k| (a.1[k] - b.1[k] * 25.4).abs())
            .fold(0.0, f64::max);
        assert_eq!(a.0, b.0, "move {i}: {a:?} / {b:?} in");
        assert!(d < 0.004, "move {i}: {a:?} mm, {b:?} in: {d} mm apart");
        worst = worst.max(d);
        i += 1;
        j += 1;
    }
    // A move shorter than the inch output's resolution may be dropped there, nothing more.
    assert!(mm_moves.len().abs_diff(in_moves.len()) * 1000 < mm_moves.len());
    assert_eq!(mm_feeds.len(), in_feeds.len());
    for (a, b) in mm_feeds.iter().zip(in_feeds) {
        assert!((a - b * 25.4).abs() < 0.01, "feed {a} mm/min, {b} in/min");
    }
    eprintln!("{} moves, worst {worst:.4} mm apart", mm_moves.len());
}
