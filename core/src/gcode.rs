//! Post-processors: toolpaths to G-code for a controller dialect.

use crate::cutter::Cutter;
use crate::toolpath::{Feeds, MoveKind, Toolpath};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::str::FromStr;

/// Controller dialects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dialect {
    /// LinuxCNC (rs274ngc): `%`-wrapped, tool changes with `M6`, path blending with `G64`.
    LinuxCnc,
    /// GRBL 1.1: no `M6` (it rejects it), no `G64`, lines kept short.
    Grbl,
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "linuxcnc" | "emc" | "ngc" => Ok(Dialect::LinuxCnc),
            "grbl" => Ok(Dialect::Grbl),
            _ => Err(format!(
                "unknown G-code dialect \"{s}\": expected linuxcnc or grbl"
            )),
        }
    }
}

/// One operation of a program: a toolpath cut with one tool.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    /// Shown in comments, e.g. "Raster finishing".
    pub name: &'a str,
    /// Tool number in the machine's tool table.
    pub tool_number: u32,
    pub cutter: Cutter,
    pub feeds: Feeds,
    pub safe_z: f64,
    pub toolpath: &'a Toolpath,
}

/// Coordinates to 4 decimals (0.1 µm), trailing zeros dropped, no negative zero. Integer
/// arithmetic: `format!("{:.4}")` on floats dominated writing large programs.
fn num(v: f64) -> String {
    let scaled = (v * 1e4).round();
    if scaled.is_nan() || scaled.abs() >= 9e15 {
        return format!("{v:.4}");
    }
    let i = scaled as i64;
    let (int, frac) = (i.unsigned_abs() / 10_000, i.unsigned_abs() % 10_000);
    let mut s = String::with_capacity(16);
    if i < 0 {
        s.push('-');
    }
    let _ = write!(s, "{int}");
    if frac != 0 {
        let digits = format!("{frac:04}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s
}

/// Comments must not contain parentheses (neither controller nests them).
fn comment(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| match c {
            '(' | ')' => '[',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect();
    format!("({})", clean.replace('[', ""))
}

/// Writes a complete program: header, each operation with its tool change, footer.
pub fn write_program(
    out: &mut impl Write,
    dialect: Dialect,
    title: &str,
    operations: &[Operation<'_>],
) -> io::Result<()> {
    let mut s = String::new();
    if dialect == Dialect::LinuxCnc {
        s.push_str("%\n");
    }
    let _ = writeln!(
        s,
        "{}",
        comment(&format!("{title} - Millpond {}", env!("CARGO_PKG_VERSION")))
    );
    // mm, absolute, feed per minute, XY plane, no cutter compensation, no canned cycle.
    s.push_str("G21 G90 G94 G17 G40 G80\n");
    if dialect == Dialect::LinuxCnc {
        s.push_str("G49\nG64 P0.005\n");
    }
    out.write_all(s.as_bytes())?;
    for op in operations {
        write_operation(out, dialect, op)?;
    }
    let mut s = String::from("M5\n");
    s.push_str("M2\n");
    if dialect == Dialect::LinuxCnc {
        s.push_str("%\n");
    }
    out.write_all(s.as_bytes())
}

fn write_operation(out: &mut impl Write, dialect: Dialect, op: &Operation<'_>) -> io::Result<()> {
    let tp = op.toolpath;
    let stats = tp.stats(&op.feeds);
    let mut s = String::new();
    let _ = writeln!(s, "{}", comment(&format!("Operation: {}", op.name)));
    let _ = writeln!(
        s,
        "{}",
        comment(&format!("Tool {}: {}", op.tool_number, op.cutter))
    );
    let _ = writeln!(
        s,
        "{}",
        comment(&format!(
            "Cut {:.1} mm, rapid {:.1} mm, about {:.1} min",
            stats.cut_length + stats.plunge_length,
            stats.rapid_length,
            stats.machining_time_s / 60.0
        ))
    );
    let start = tp.start;
    // Lift before any tool change or spindle start.
    let _ = writeln!(s, "G0 Z{}", num(op.safe_z.max(start.z)));
    match dialect {
        Dialect::LinuxCnc => {
            let _ = writeln!(s, "T{} M6", op.tool_number);
        }
        Dialect::Grbl => {
            let _ = writeln!(
                s,
                "{}",
                comment(&format!("Load tool {} now", op.tool_number))
            );
        }
    }
    let _ = writeln!(s, "S{} M3", num(op.feeds.spindle_rpm.round()));
    let _ = writeln!(s, "G0 X{} Y{}", num(start.x), num(start.y));
    if start.z < op.safe_z {
        let _ = writeln!(s, "G0 Z{}", num(start.z));
    }
    out.write_all(s.as_bytes())?;

    // Modal output: a word only when it changes.
    let mut mode = 0u8;
    let mut feed = f64::NAN;
    // The header above leaves the tool at the toolpath's start.
    let (mut x, mut y, mut z) = (num(start.x), num(start.y), num(start.z));
    let mut line = String::new();
    for m in &tp.moves {
        line.clear();
        let (nx, ny, nz) = (num(m.to.x), num(m.to.y), num(m.to.z));
        let (g, f) = match m.kind {
            MoveKind::Rapid => (0u8, None),
            MoveKind::Plunge => (1, Some(op.feeds.plunge_feed)),
            MoveKind::Cut => (1, Some(op.feeds.feed)),
        };
        for (word, new, old) in [('X', &nx, &mut x), ('Y', &ny, &mut y), ('Z', &nz, &mut z)] {
            if new != old {
                let _ = write!(line, " {word}{new}");
                *old = new.clone();
            }
        }
        if line.is_empty() {
            // No axis changes at this output precision: nothing to move.
            continue;
        }
        if g != mode {
            line.insert_str(0, &format!("G{g}"));
            mode = g;
        } else {
            line.remove(0);
        }
        if let Some(f) = f
            && f != feed
        {
            let _ = write!(line, " F{}", num(f));
            feed = f;
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geom::Point3;

    fn sample() -> Toolpath {
        let mut tp = Toolpath {
            start: Point3::new(0.0, 0.0, 10.0),
            moves: vec![],
        };
        tp.push(MoveKind::Rapid, Point3::new(0.0, 0.0, 3.0));
        tp.push(MoveKind::Plunge, Point3::new(0.0, 0.0, 2.0));
        tp.push(MoveKind::Cut, Point3::new(10.0, 0.0, 2.0));
        tp.push(MoveKind::Cut, Point3::new(10.0, 1.5, -0.25));
        tp.push(MoveKind::Rapid, Point3::new(10.0, 1.5, 10.0));
        tp
    }

    fn program(d: Dialect) -> String {
        let tp = sample();
        let op = Operation {
            name: "Raster (finishing)",
            tool_number: 2,
            cutter: "ball:3".parse().unwrap(),
            feeds: Feeds::default(),
            safe_z: 10.0,
            toolpath: &tp,
        };
        let mut out = Vec::new();
        write_program(&mut out, d, "test", &[op]).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn linuxcnc_program_shape() {
        let g = program(Dialect::LinuxCnc);
        assert!(g.starts_with("%\n"));
        assert!(g.trim_end().ends_with('%'));
        assert!(g.contains("G21 G90 G94"));
        assert!(g.contains("T2 M6"));
        assert!(g.contains("S18000 M3"));
        assert!(g.contains("G1 Z2 F300\n"), "{g}");
        assert!(g.contains("X10 F1000\n"), "{g}");
        assert!(g.contains("Y1.5 Z-0.25\n"), "{g}");
        assert!(g.contains("M5\nM2\n"));
        // Comments never nest parentheses.
        for l in g.lines() {
            assert!(l.matches('(').count() <= 1, "{l}");
        }
    }

    #[test]
    fn numbers_are_short_and_exact_to_a_tenth_of_a_micron() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(-0.00004), "0");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(-12.34567), "-12.3457");
        assert_eq!(num(100.0), "100");
        assert_eq!(num(0.0001), "0.0001");
        assert_eq!(num(-3.1), "-3.1");
        for k in 0..2000 {
            let v = (k as f64 - 1000.0) * 0.123_456_7;
            let ours: f64 = num(v).parse().unwrap();
            assert!((ours - v).abs() <= 0.000_050_000_1, "{v} -> {}", num(v));
        }
    }

    #[test]
    fn grbl_program_avoids_unsupported_words() {
        let g = program(Dialect::Grbl);
        assert!(!g.contains("M6"));
        assert!(!g.contains("G64"));
        assert!(!g.contains('%'));
        assert!(g.lines().all(|l| l.len() <= 70), "GRBL line too long");
    }
}
