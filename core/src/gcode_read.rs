//! Reading G-code back: a strict reader for the LinuxCNC/GRBL subset that [`crate::gcode`]
//! writes (and hand-written programs within it), turning a program into the straight tool
//! moves a stock simulator sweeps.
//!
//! Strict by design: a word the reader does not understand is an error naming the line and
//! the word, never skipped. A simulator that quietly dropped a work offset, a canned cycle
//! or a block-delete switch would show a part the machine will not cut. Arcs become chords
//! within [`ReadOptions::arc_tolerance`] because the simulator sweeps straight moves exactly;
//! that chord error is the only approximation the reader makes. Output is millimetres
//! whatever the program's units.

use crate::geom::Point3;
use crate::toolpath::MoveKind;
use std::f64::consts::TAU;
use std::fmt;
use thiserror::Error;

/// Most straight moves (after splitting arcs) a program may give, so that reading a file of
/// bounded size allocates a bounded amount whatever its arcs ask for.
pub const MAX_MOVES: usize = 200_000_000;
/// Largest magnitude of any number, and of any coordinate in mm: beyond it a figure is a
/// mistake, not a part.
const MAX_MAGNITUDE: f64 = 1e6;
const MM_PER_INCH: f64 = 25.4;

/// Options for reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadOptions {
    /// Largest distance of a chord from its arc, mm, when arcs are split into straight moves.
    pub arc_tolerance: f64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            arc_tolerance: 1e-4,
        }
    }
}

/// One straight move as read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadMove {
    pub kind: MoveKind,
    /// Where the move ends, mm, absolute.
    pub to: Point3,
    /// 1-based source line (an arc's chords all carry the arc's line).
    pub line: usize,
    /// mm/min; rapids carry 0.0.
    pub feed: f64,
}

/// The moves made with one tool in the spindle.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolRun {
    /// 0 when no tool was ever selected (and for everything before a program's first `M6`).
    pub tool: u32,
    /// Line where this tool came in (1 for a tool-0 run).
    pub line: usize,
    /// Where the tool is before the first move: where the run before left it, or, at the
    /// program's start, as [`read_program`] infers it.
    pub start: Point3,
    /// Never empty.
    pub moves: Vec<ReadMove>,
}

/// A program as straight moves, run by run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadProgram {
    pub runs: Vec<ToolRun>,
    /// Source lines read, up to and including the one that ended the program.
    pub lines: usize,
}

/// Why a program cannot be read.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum GcodeReadError {
    /// `part.ngc:12: unsupported word "A3"`.
    #[error("{file}:{line}: {message}")]
    At {
        file: String,
        line: usize,
        message: String,
    },
    #[error("arc tolerance must be a positive number of millimetres, got {0}")]
    Tolerance(f64),
}

/// Reads `text` (named `file` in messages) into straight moves, in millimetres.
///
/// Where the tool starts is unknown until the program says. A move from an unknown axis
/// takes X and Y from its own target (no sideways motion is invented) and Z from the
/// highest Z the program ever commands: the tool is assumed to come from clearance height.
/// A rapid to a place whose X or Y is still unknown (the usual first `G0 Z..`) is not a
/// move the simulator can place and produces none; a feed move there is an error.
///
/// Tools: `T` selects and `M6` changes, starting a new [`ToolRun`]; moves before the first
/// `M6` are tool 0's. A program with no `M6` at all (GRBL cannot say it) changes tool at each
/// `T` word instead, the only tool information it has (a GRBL program as [`crate::gcode`]
/// writes it names each tool with a `T` word GRBL ignores, before the `M0` that waits for
/// the swap). Runs without moves are dropped.
pub fn read_program(
    text: &str,
    file: &str,
    opts: &ReadOptions,
) -> Result<ReadProgram, GcodeReadError> {
    let tol = opts.arc_tolerance;
    if !(tol.is_finite() && tol > 0.0) {
        return Err(GcodeReadError::Tolerance(tol));
    }
    let mut r = Reader::new(text, file, tol, false);
    let lines = r.run()?;
    let open = std::mem::replace(&mut r.open, Open::new(0, 0, None));
    r.close(open);
    Ok(ReadProgram {
        runs: r.runs,
        lines,
    })
}

/// A word as written: its letter (upper case), the number's text, and its value.
#[derive(Clone, Copy, Debug)]
struct Word<'a> {
    letter: u8,
    num: &'a str,
    value: f64,
}

impl fmt::Display for Word<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.letter as char, self.num)
    }
}

impl Word<'_> {
    /// A G or M code in tenths (`G90.1` → 901); `None` for what no code is.
    fn code(&self) -> Option<u32> {
        let t = self.value * 10.0;
        (self.value >= 0.0 && (t - t.round()).abs() < 1e-6).then_some(t.round() as u32)
    }
}

/// The words of one line into `out`, comments dropped.
fn tokenize<'a>(src: &'a str, out: &mut Vec<Word<'a>>) -> Result<(), String> {
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b';' => break,
            b'(' => match b[i + 1..].iter().position(|&c| c == b')' || c == b'(') {
                Some(k) if b[i + 1 + k] == b')' => i += k + 2,
                Some(_) => return Err("nested comment \"(\"".into()),
                None => return Err("unclosed comment \"(\"".into()),
            },
            c if c.is_ascii_alphabetic() => {
                let letter = c.to_ascii_uppercase();
                let mut j = i + 1;
                while j < b.len() && matches!(b[j], b' ' | b'\t') {
                    j += 1;
                }
                let start = j;
                if j < b.len() && matches!(b[j], b'+' | b'-') {
                    j += 1;
                }
                while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                    j += 1;
                }
                let num = &src[start..j];
                let word = |value| Word { letter, num, value };
                if !b"GMNOXYZIJKRFSTPQH".contains(&letter) {
                    return Err(format!("unsupported word \"{}\"", word(0.0)));
                }
                let digits = num.trim_start_matches(['+', '-']);
                let well_formed = digits.bytes().any(|c| c.is_ascii_digit())
                    && digits.bytes().filter(|&c| c == b'.').count() <= 1;
                let value = match num.parse::<f64>() {
                    Ok(v) if well_formed => v,
                    _ => return Err(format!("malformed number \"{}\"", word(0.0))),
                };
                if !(value.is_finite() && value.abs() <= MAX_MAGNITUDE) {
                    return Err(format!("number out of range \"{}\"", word(value)));
                }
                out.push(word(value));
                i = j;
            }
            _ => {
                let c = src[i..].chars().next().unwrap_or('?');
                return Err(format!("unsupported character \"{c}\""));
            }
        }
    }
    Ok(())
}

/// Why a G code is refused, for the message.
fn why_not(code: u32) -> &'static str {
    match code {
        100 | 280 | 281 | 300 | 301 | 530 | 550..=593 | 920..=923 => {
            ": it moves or leaves the coordinate system, and the reader would have to guess where"
        }
        930 => ": inverse-time feed is not supported",
        410..=421 => ": cutter radius compensation is not supported",
        730 | 760 | 810..=890 => ": canned cycles are not supported",
        _ => "",
    }
}

/// Two chord ends whose radii about the centre differ by more than this are an error, as in
/// LinuxCNC: the program's arithmetic is wrong, and any arc drawn would be a guess.
fn radius_slack(r: f64) -> f64 {
    0.002f64.max(1e-6 * r)
}

/// The fewest equal-angle chords over `sweep` radians of a circle of `radius` whose sagitta
/// stays within `tol`; a float so that an absurd count is refused before any allocation.
fn chord_count(radius: f64, sweep: f64, tol: f64) -> f64 {
    // The sagitta of a chord over angle a is r(1 − cos(a/2)) = 2r·sin²(a/4): well
    // conditioned for the small angles fine tolerances give, unlike acos(1 − tol/r).
    let s = (tol / (2.0 * radius)).sqrt();
    if s >= 1.0 {
        return 1.0;
    }
    (sweep / (4.0 * s.asin())).ceil().max(1.0)
}

/// Returns the error `format!(..)` at the reader's line.
macro_rules! fail {
    ($r:expr, $($arg:tt)*) => {
        return Err($r.err(format!($($arg)*)))
    };
}

/// The run the reader is adding moves to.
#[derive(Debug)]
struct Open {
    tool: u32,
    line: usize,
    start: Option<Point3>,
    moves: Vec<ReadMove>,
}

impl Open {
    fn new(tool: u32, line: usize, start: Option<Point3>) -> Self {
        Self {
            tool,
            line,
            start,
            moves: Vec::new(),
        }
    }
}

/// The interpreter. A `dry` one tracks positions without making moves: it is run over the
/// whole text only when a move needs the highest Z before the program has given it.
#[derive(Debug)]
struct Reader<'a> {
    text: &'a str,
    file: &'a str,
    tol: f64,
    dry: bool,
    line: usize,
    /// mm per program unit: 1 (G21) or 25.4 (G20).
    scale: f64,
    incremental: bool,
    /// G90.1: I and J are absolute.
    arc_absolute: bool,
    plane: u32,
    /// 0..=3 for G0..G3; `None` before any, and after G80.
    motion: Option<u32>,
    /// mm/min.
    feed: Option<f64>,
    /// mm; `None` for an axis the program has not given yet.
    pos: [Option<f64>; 3],
    max_z: Option<f64>,
    /// The highest Z the program commands, once a move needed it.
    clearance: Option<f64>,
    selected: Option<u32>,
    m6_seen: bool,
    runs: Vec<ToolRun>,
    open: Open,
    total: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, file: &'a str, tol: f64, dry: bool) -> Self {
        Self {
            text,
            file,
            tol,
            dry,
            line: 0,
            scale: 1.0,
            incremental: false,
            arc_absolute: false,
            plane: 17,
            motion: None,
            feed: None,
            pos: [None; 3],
            max_z: None,
            clearance: None,
            selected: None,
            m6_seen: false,
            runs: Vec::new(),
            open: Open::new(0, 1, None),
            total: 0,
        }
    }

    fn err(&self, message: impl Into<String>) -> GcodeReadError {
        GcodeReadError::At {
            file: self.file.to_string(),
            line: self.line,
            message: message.into(),
        }
    }

    /// Interprets every line up to the program's end; the number of lines read.
    fn run(&mut self) -> Result<usize, GcodeReadError> {
        let text = self.text;
        let mut words = Vec::new();
        let (mut wrapped, mut content) = (false, false);
        let mut lines = 0;
        for (k, src) in text.lines().enumerate() {
            self.line = k + 1;
            lines = k + 1;
            let t = src.trim();
            if t == "%" {
                // As in LinuxCNC: a `%` first line wraps the program, and the next ends it.
                if wrapped {
                    break;
                }
                wrapped = !content;
                content = true;
                continue;
            }
            content |= !t.is_empty();
            if t.starts_with('/') {
                return Err(self.err(
                    "block delete \"/\" is not supported: whether the switch is on is not known",
                ));
            }
            words.clear();
            tokenize(src, &mut words).map_err(|m| self.err(m))?;
            if self.block(&words)? {
                break;
            }
        }
        Ok(lines)
    }

    /// One line, in LinuxCNC's order of execution whatever the order of its words: units,
    /// modes, feed, tool select and change, dwell, motion, then a program end. True at the
    /// end of the program.
    fn block(&mut self, words: &[Word<'a>]) -> Result<bool, GcodeReadError> {
        // A Fanuc-style program number (`O1000`, with at most a line number) names the
        // program and does nothing; an O word beside anything else is LinuxCNC's subroutine
        // and flow control, which the reader does not follow.
        if let Some(o) = words.iter().find(|w| w.letter == b'O') {
            if words.iter().all(|w| w.letter == b'O' || w.letter == b'N') && words.len() <= 2 {
                return Ok(false);
            }
            fail!(
                self,
                "unsupported word \"{o}\": only a program number on a line of its own is \
                 read (O-word subroutines and loops are not supported)"
            );
        }
        // Each word in its slot: G and M codes by modal group (two of one group conflict, as
        // in LinuxCNC), other letters by letter.
        let mut letters: [Option<Word>; 26] = [None; 26];
        let mut gs: [Option<Word>; 14] = [None; 14];
        let mut ms: [Option<Word>; 9] = [None; 9];
        for &w in words {
            let (slots, slot) = match (w.letter, w.code()) {
                (b'G', c) => (
                    &mut gs[..],
                    match c {
                        Some(40) => 0,
                        Some(0 | 10 | 20 | 30 | 800) => 1,
                        Some(170 | 180 | 190) => 2,
                        Some(900 | 910) => 3,
                        Some(901 | 911) => 4,
                        Some(940) => 5,
                        Some(200 | 210) => 6,
                        Some(400) => 7,
                        Some(430 | 490) => 8,
                        Some(540) => 12,
                        Some(610 | 611 | 640) => 13,
                        _ => {
                            let why = c.map_or("", why_not);
                            fail!(self, "unsupported G code \"{w}\"{why}");
                        }
                    },
                ),
                (b'M', c) => (
                    &mut ms[..],
                    match c {
                        Some(0 | 10 | 20 | 300) => 4,
                        Some(60) => 6,
                        Some(30 | 40 | 50) => 7,
                        Some(70 | 80 | 90) => 8,
                        _ => fail!(self, "unsupported M code \"{w}\""),
                    },
                ),
                (b'N', _) => continue,
                (l, _) => (&mut letters[..], usize::from(l - b'A')),
            };
            if let Some(before) = slots[slot] {
                fail!(
                    self,
                    "conflicting words on one line \"{before}\" and \"{w}\""
                );
            }
            slots[slot] = Some(w);
        }
        let g = |group: usize| gs[group].and_then(|w| w.code());
        let motion_word = gs[1];
        let (dwell, g43, g64) = (g(0).is_some(), g(8) == Some(430), g(13) == Some(640));
        self.plane = g(2).map_or(self.plane, |c| c / 10);
        self.incremental = g(3).map_or(self.incremental, |c| c == 910);
        self.arc_absolute = g(4).map_or(self.arc_absolute, |c| c == 901);
        if let Some(c) = g(6) {
            self.scale = if c == 200 { MM_PER_INCH } else { 1.0 };
        }
        let get = |c: u8| letters[usize::from(c - b'A')];
        for (c, allowed, needs) in [
            (b'P', dwell || g64, "G4 or G64"),
            (b'Q', g64, "G64"),
            (b'H', g43, "G43"),
        ] {
            if let Some(w) = get(c)
                && !allowed
            {
                fail!(self, "{} word without {needs} \"{w}\"", c as char);
            }
        }
        if let Some(w) = get(b'F') {
            if w.value <= 0.0 {
                fail!(self, "feed rate must be above 0 \"{w}\"");
            }
            self.feed = Some(w.value * self.scale);
        }
        if let Some(w) = get(b'S')
            && w.value < 0.0
        {
            fail!(self, "spindle speed below 0 \"{w}\"");
        }
        if let Some(w) = get(b'T') {
            if w.value < 0.0 || w.value.fract() != 0.0 {
                fail!(self, "tool number must be a whole number \"{w}\"");
            }
            let tool = w.value as u32;
            self.selected = Some(tool);
            // Without M6 (GRBL), a T word is the only sign of a new tool.
            if !self.m6_seen {
                self.change_tool(tool);
            }
        }
        if ms[6].is_some() {
            let Some(tool) = self.selected else {
                fail!(self, "M6 before any tool number T \"M6\"");
            };
            if !self.m6_seen {
                self.first_m6();
            }
            self.change_tool(tool);
        }
        if dwell && get(b'P').is_none_or(|p| p.value < 0.0) {
            fail!(self, "G4 without a dwell time P of 0 or more seconds");
        }
        if let Some(w) = motion_word {
            self.motion = w.code().filter(|&c| c != 800).map(|c| c / 10);
        }
        let arc = matches!(self.motion, Some(2 | 3));
        let arc_word = [b'I', b'J', b'K', b'R'].into_iter().find_map(get);
        if let Some(w) = arc_word
            && !arc
        {
            fail!(self, "arc word without G2 or G3 in effect \"{w}\"");
        }
        let axis_word = [b'X', b'Y', b'Z'].into_iter().find_map(get);
        if axis_word.is_some() || (arc && (motion_word.is_some() || arc_word.is_some())) {
            let Some(motion) = self.motion else {
                let w = axis_word.map(|w| w.to_string()).unwrap_or_default();
                fail!(
                    self,
                    "axis word with no motion mode (G0, G1, G2 or G3) in effect \"{w}\""
                );
            };
            let mut to = self.pos;
            for (axis, c) in [b'X', b'Y', b'Z'].into_iter().enumerate() {
                let Some(w) = get(c) else { continue };
                let mut v = w.value * self.scale;
                if self.incremental {
                    let Some(p) = self.pos[axis] else {
                        fail!(
                            self,
                            "incremental (G91) move from an unknown position \"{w}\""
                        );
                    };
                    v += p;
                }
                if v.abs() > MAX_MAGNITUDE {
                    fail!(self, "coordinate beyond 1e6 mm \"{w}\"");
                }
                to[axis] = Some(v);
            }
            if motion < 2 {
                self.straight(motion, to)?;
            } else {
                self.arc(motion == 2, to, &get)?;
            }
        }
        Ok(ms[4].is_some_and(|w| matches!(w.code(), Some(20 | 300))))
    }

    /// Everything before the first M6 ran with the tool loaded by hand, tool 0, whatever T
    /// words selected meanwhile: the runs split at those T words join again.
    fn first_m6(&mut self) {
        self.m6_seen = true;
        let earlier = std::mem::take(&mut self.runs);
        let mut merged = Open::new(0, 1, earlier.first().map(|r| r.start));
        for r in earlier {
            merged.moves.extend(r.moves);
        }
        merged.start = merged.start.or(self.open.start);
        merged.moves.append(&mut self.open.moves);
        self.open = merged;
    }

    fn change_tool(&mut self, tool: u32) {
        let start = match self.pos {
            [Some(x), Some(y), Some(z)] => Some(Point3::new(x, y, z)),
            _ => None,
        };
        let open = std::mem::replace(&mut self.open, Open::new(tool, self.line, start));
        self.close(open);
    }

    fn close(&mut self, open: Open) {
        if let Some(start) = open.start
            && !open.moves.is_empty()
        {
            self.runs.push(ToolRun {
                tool: open.tool,
                line: open.line,
                start,
                moves: open.moves,
            });
        }
    }

    /// The highest Z the whole program commands, from a dry run over it.
    fn clearance(&mut self) -> Result<f64, GcodeReadError> {
        if let Some(z) = self.clearance {
            return Ok(z);
        }
        let mut dry = Reader::new(self.text, self.file, self.tol, true);
        dry.run()?;
        let z = dry.max_z.ok_or_else(|| {
            self.err("the program never gives Z, so the tool's height is not known")
        })?;
        self.clearance = Some(z);
        Ok(z)
    }

    /// A move's start and end, to (`x`, `y`, `z`), with unknown axes filled in as
    /// [`read_program`] says.
    fn fill(&mut self, x: f64, y: f64, z: Option<f64>) -> Result<(Point3, Point3), GcodeReadError> {
        let [fx, fy, fz] = self.pos;
        let c = match (fz, z) {
            (Some(_), Some(_)) => 0.0,
            _ => self.clearance()?,
        };
        let from = Point3::new(fx.unwrap_or(x), fy.unwrap_or(y), fz.unwrap_or(c));
        Ok((from, Point3::new(x, y, z.unwrap_or(c))))
    }

    fn arrive(&mut self, to: [Option<f64>; 3]) {
        self.pos = to;
        if let Some(z) = to[2] {
            self.max_z = Some(self.max_z.map_or(z, |m| m.max(z)));
        }
    }

    fn push(
        &mut self,
        from: Point3,
        kind: MoveKind,
        to: Point3,
        feed: f64,
    ) -> Result<(), GcodeReadError> {
        self.open.start.get_or_insert(from);
        if from == to {
            return Ok(());
        }
        if self.total >= MAX_MOVES {
            fail!(self, "more than {MAX_MOVES} moves");
        }
        self.total += 1;
        let line = self.line;
        self.open.moves.push(ReadMove {
            kind,
            to,
            line,
            feed,
        });
        Ok(())
    }

    /// G0 (`motion` 0) or G1 to `to`.
    fn straight(&mut self, motion: u32, to: [Option<f64>; 3]) -> Result<(), GcodeReadError> {
        let feed = if motion == 1 {
            self.feed
                .ok_or_else(|| self.err("G1 before any feed rate F"))?
        } else {
            0.0
        };
        let [Some(x), Some(y), z] = to else {
            if motion == 1 {
                fail!(
                    self,
                    "G1 while X or Y is not known yet: where it cuts is not known"
                );
            }
            // A rapid the simulator cannot place (the usual first lift) sweeps nothing.
            self.arrive(to);
            return Ok(());
        };
        if self.dry {
            self.arrive(to);
            return Ok(());
        }
        let (from, end) = self.fill(x, y, z)?;
        self.arrive(to);
        let kind = match motion {
            0 => MoveKind::Rapid,
            _ if from.x == end.x && from.y == end.y && end.z < from.z => MoveKind::Plunge,
            _ => MoveKind::Cut,
        };
        self.push(from, kind, end, feed)
    }

    /// G2 (`cw`) or G3 to `to`, in the XY plane, as equal-angle chords.
    fn arc(
        &mut self,
        cw: bool,
        to: [Option<f64>; 3],
        get: &dyn Fn(u8) -> Option<Word<'a>>,
    ) -> Result<(), GcodeReadError> {
        let g = if cw { "G2" } else { "G3" };
        let feed = self
            .feed
            .ok_or_else(|| self.err(format!("{g} before any feed rate F")))?;
        if self.plane != 17 {
            let name = if self.plane == 18 { "XZ" } else { "YZ" };
            fail!(
                self,
                "arc in the {name} plane (G{}) is not supported",
                self.plane
            );
        }
        if get(b'X').is_none() && get(b'Y').is_none() {
            fail!(self, "{g} arc without X or Y");
        }
        if let Some(k) = get(b'K') {
            fail!(self, "K in an arc in the XY plane (G17) \"{k}\"");
        }
        let (Some(sx), Some(sy), Some(ex), Some(ey)) = (self.pos[0], self.pos[1], to[0], to[1])
        else {
            fail!(self, "{g} arc from an unknown X/Y position");
        };
        let s = self.scale;
        let (cx, cy) = match (get(b'R'), get(b'I'), get(b'J')) {
            (Some(r), None, None) => {
                let (dx, dy) = (ex - sx, ey - sy);
                let d = dx.hypot(dy);
                if d <= 1e-9 {
                    fail!(
                        self,
                        "arc given by R ends where it starts (a full circle needs I and J) \"{r}\""
                    );
                }
                let radius = r.value.abs() * s;
                if radius == 0.0 || d / 2.0 - radius > radius_slack(radius) {
                    fail!(self, "arc radius too small to reach its end \"{r}\"");
                }
                let h = (radius * radius - d * d / 4.0).max(0.0).sqrt();
                // The centre lies left of the chord for a counter-clockwise arc of at most
                // 180°; clockwise, or the longer arc (negative R), puts it on the right.
                let side = if cw == (r.value < 0.0) { h / d } else { -h / d };
                ((sx + ex) / 2.0 - side * dy, (sy + ey) / 2.0 + side * dx)
            }
            (Some(r), _, _) => fail!(self, "arc with both R and I/J \"{r}\""),
            (None, None, None) => fail!(self, "{g} arc without I, J or R"),
            (None, i, j) => {
                let (i, j) = (i.map(|w| w.value * s), j.map(|w| w.value * s));
                if self.arc_absolute {
                    match (i, j) {
                        (Some(i), Some(j)) => (i, j),
                        _ => fail!(self, "arc centre under G90.1 needs both I and J"),
                    }
                } else {
                    (sx + i.unwrap_or(0.0), sy + j.unwrap_or(0.0))
                }
            }
        };
        let r0 = (sx - cx).hypot(sy - cy);
        let r1 = (ex - cx).hypot(ey - cy);
        if r0 <= 1e-9 || r1 <= 1e-9 {
            fail!(self, "{g} arc of radius 0");
        }
        if (r0 - r1).abs() > radius_slack(r0) {
            fail!(
                self,
                "arc radius {r0:.4} mm at the start but {r1:.4} mm at the end"
            );
        }
        let a0 = (sy - cy).atan2(sx - cx);
        let a1 = (ey - cy).atan2(ex - cx);
        let mut sweep = if cw { a0 - a1 } else { a1 - a0 }.rem_euclid(TAU);
        if (ex - sx).hypot(ey - sy) <= 1e-9 || sweep == 0.0 {
            sweep = TAU;
        }
        let n = chord_count(r0, sweep, self.tol);
        if n > (MAX_MOVES - self.total) as f64 {
            fail!(
                self,
                "arc needs {n:.0} chords at a tolerance of {} mm: more than {MAX_MOVES} moves",
                self.tol
            );
        }
        if self.dry {
            self.arrive(to);
            return Ok(());
        }
        let (from, end) = self.fill(ex, ey, to[2])?;
        self.arrive(to);
        let n = n as usize;
        self.open.moves.reserve(n);
        let dir = if cw { -1.0 } else { 1.0 };
        let mut at = from;
        for k in 1..=n {
            let t = k as f64 / n as f64;
            let a = a0 + dir * sweep * t;
            let p = if k == n {
                end
            } else {
                Point3::new(
                    cx + r0 * a.cos(),
                    cy + r0 * a.sin(),
                    from.z + (end.z - from.z) * t,
                )
            };
            self.push(at, MoveKind::Cut, p, feed)?;
            at = p;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcode::{Operation, Post, ProgramUnits, write_program_at};
    use crate::planner::MachineProfile;
    use crate::post::PostProcessor;
    use crate::toolpath::{Feeds, Toolpath};
    use MoveKind::{Cut, Plunge, Rapid};

    fn p(x: f64, y: f64, z: f64) -> Point3 {
        Point3::new(x, y, z)
    }

    fn read_with(text: &str, tol: f64) -> Result<ReadProgram, GcodeReadError> {
        read_program(text, "t.ngc", &ReadOptions { arc_tolerance: tol })
    }

    /// All moves of a program that must read.
    fn moves(text: &str, tol: f64) -> Vec<ReadMove> {
        let prog = read_with(text, tol).unwrap_or_else(|e| panic!("{e}"));
        prog.runs.into_iter().flat_map(|r| r.moves).collect()
    }

    fn error(text: &str) -> String {
        read_with(text, 1e-4).expect_err(text).to_string()
    }

    /// Two operations with two tools, written in both dialects and both units, read back: the
    /// writer's moves (plus the rapids its headers make) at the output's resolution.
    #[test]
    fn reads_back_every_program_the_writer_writes() {
        let path = |start, moves: &[(MoveKind, Point3)]| Toolpath {
            start,
            moves: moves
                .iter()
                .map(|&(kind, to)| crate::toolpath::Move { kind, to })
                .collect(),
        };
        let tp1 = path(
            p(0.0, 0.0, 10.0),
            &[
                (Rapid, p(0.0, 0.0, 3.0)),
                (Plunge, p(0.0, 0.0, -1.234)),
                (Cut, p(10.125, 0.0, -1.234)),
                (Cut, p(10.125, 5.5, -2.001)),
                (Cut, p(0.333, 5.5, -2.001)),
                (Rapid, p(0.333, 5.5, 10.0)),
            ],
        );
        let tp2 = path(
            p(20.0, -3.5, 10.0),
            &[
                (Rapid, p(20.0, -3.5, 2.0)),
                (Plunge, p(20.0, -3.5, -0.5)),
                (Cut, p(25.4, -3.5, -0.5)),
                (Cut, p(25.4, 7.777, -0.75)),
                (Rapid, p(25.4, 7.777, 10.0)),
            ],
        );
        let feeds = Feeds::default();
        let op = |name, tool_number, cutter: &str, toolpath| Operation {
            name,
            tool_number,
            cutter: cutter.parse().unwrap(),
            feeds,
            safe_z: 12.5,
            spindle_dwell_s: 1.5,
            arcs: &[],
            toolpath,
        };
        let ops = [
            op("Rough", 3, "flat:6", &tp1),
            op("Finish", 7, "ball:3", &tp2),
        ];
        let feed = |k| match k {
            Rapid => 0.0,
            Plunge => feeds.plunge_feed,
            Cut => feeds.feed,
        };
        let with_feeds = |tp: &Toolpath| -> Vec<_> {
            let f = |m: &crate::toolpath::Move| (m.kind, m.to, feed(m.kind));
            tp.moves.iter().map(f).collect()
        };
        // Down from safe Z to the start, the toolpath, the lift before the next tool.
        let mut run1 = vec![(Rapid, tp1.start, 0.0)];
        run1.extend(with_feeds(&tp1));
        run1.push((Rapid, p(0.333, 5.5, 12.5), 0.0));
        let mut run2 = vec![(Rapid, p(20.0, -3.5, 12.5), 0.0), (Rapid, tp2.start, 0.0)];
        run2.extend(with_feeds(&tp2));
        // Every built-in post that names its tools with T words (Marlin's has none: its T
        // selects an extruder), in every unit it writes.
        for post in PostProcessor::built_in() {
            if post.key == "marlin" {
                continue;
            }
            for &units in &post.units {
                let mut out = Vec::new();
                let machine = MachineProfile::default();
                let at = Post {
                    processor: &post,
                    units,
                };
                write_program_at(&mut out, at, "rt", None, &machine, &ops).unwrap();
                let g = String::from_utf8(out).unwrap();
                let prog = read_with(&g, 1e-4).unwrap_or_else(|e| panic!("{e}\n{g}"));
                // Within the written figures' resolution.
                let places = post.places(units);
                let scale = match units {
                    ProgramUnits::Millimetres => 1.0,
                    ProgramUnits::Inches => 25.4,
                };
                let eps = scale * 10f64.powi(-(places.axes as i32));
                let feed_eps = scale * 10f64.powi(-(places.feed as i32));
                let line_of = |s: &str| g.lines().position(|l| l.ends_with(s)).unwrap() + 1;
                // A run per M6 with its tool; in GRBL, a run per T word (the writer names
                // each tool with one, before the M0 that waits for the swap). Reading ends at
                // the program end, before a closing `%`.
                let closing = g.lines().rev().take_while(|l| *l == "%").count();
                assert_eq!(prog.lines, g.lines().count() - closing, "{}", post.key);
                let (first, second) = if post.key == "grbl" {
                    ("T3", "T7")
                } else {
                    ("T3 M6", "T7 M6")
                };
                let dialect = &post.key;
                let expected = vec![
                    (3, line_of(first), p(0.0, 0.0, 12.5), run1.clone()),
                    (7, line_of(second), p(0.333, 5.5, 12.5), run2.clone()),
                ];
                assert_eq!(
                    prog.runs.len(),
                    expected.len(),
                    "{dialect:?} {units:?}\n{g}"
                );
                for (run, (tool, line, start, want)) in prog.runs.iter().zip(&expected) {
                    let what = format!("{dialect:?} {units:?} tool {tool}");
                    assert_eq!((run.tool, run.line), (*tool, *line), "{what}");
                    assert!(
                        (run.start - *start).length() <= eps,
                        "{what}: {:?}",
                        run.start
                    );
                    assert_eq!(run.moves.len(), want.len(), "{what}: {:?}", run.moves);
                    for (m, &(kind, to, f)) in run.moves.iter().zip(want) {
                        assert_eq!(m.kind, kind, "{what}: {m:?}");
                        assert!((m.to - to).length() <= eps, "{what}: {m:?} vs {to:?}");
                        assert!((m.feed - f).abs() <= feed_eps, "{what}: {m:?}");
                        assert!(g.lines().nth(m.line - 1).unwrap().len() > 1, "{what}");
                    }
                }
            }
        }
    }

    const START: &str = "G21 G90 G17\nG0 X10 Y0 Z0\n";

    /// An arc from (10, 0) read at tolerance 1e-3: its chords, checked against the circle
    /// about `c` of radius 10 and against the fewest chords the tolerance allows.
    fn arc(words: &str, c: (f64, f64), sweep: f64) -> Vec<ReadMove> {
        let (tol, r) = (1e-3, 10.0);
        let ms = moves(&format!("{START}{words} F500\n"), tol);
        let mut at = p(10.0, 0.0, 0.0);
        let mut worst: f64 = 0.0;
        for m in &ms {
            assert_eq!((m.kind, m.line, m.feed), (Cut, 3, 500.0));
            let off = |q: Point3| (q.x - c.0).hypot(q.y - c.1);
            assert!(
                (off(m.to) - r).abs() < 1e-9,
                "{words}: {m:?} off the circle"
            );
            worst = worst.max(r - off((at + m.to) * 0.5));
            at = m.to;
        }
        let n = ms.len() as f64;
        let sagitta = |n: f64| r * (1.0 - (sweep / n / 2.0).cos());
        assert!(
            worst <= tol && sagitta(n) <= tol,
            "{words}: sagitta {worst}"
        );
        assert!(
            sagitta(n - 1.0) > tol,
            "{words}: {n} chords, fewer would do"
        );
        ms
    }

    #[test]
    fn arcs_become_the_fewest_chords_within_tolerance() {
        let quarter = std::f64::consts::FRAC_PI_2;
        let end = p(0.0, 10.0, 0.0);
        let g3 = arc("G3 X0 Y10 I-10 J0", (0.0, 0.0), quarter);
        assert_eq!(g3.last().unwrap().to, end, "ends exactly at the end point");
        // The same words clockwise go the other way round: three quarters, through -X -Y.
        let g2 = arc("G2 X0 Y10 I-10 J0", (0.0, 0.0), 3.0 * quarter);
        assert_eq!(g2.last().unwrap().to, end);
        let (mid2, mid3) = (g2[g2.len() / 2].to, g3[g3.len() / 2].to);
        assert!(mid3.x > 6.0 && mid3.y > 6.0, "{mid3:?}");
        assert!(mid2.x < -6.0 && mid2.y < -6.0, "{mid2:?}");
        assert!(
            g2[0].to.y < 0.0 && g3[0].to.y > 0.0,
            "G2 sets off clockwise"
        );
        // R: positive the short way round (centre 10,10), negative the long way.
        let short = arc("G2 X0 Y10 R10", (10.0, 10.0), quarter);
        assert!(short[short.len() / 2].to.x < 3.0);
        let long = arc("G2 X0 Y10 R-10", (0.0, 0.0), 3.0 * quarter);
        assert_eq!(long.len(), g2.len());
        // Start = end with I/J: a full circle.
        let full = arc("G2 X10 Y0 I-10", (0.0, 0.0), 4.0 * quarter);
        assert_eq!(full.last().unwrap().to, p(10.0, 0.0, 0.0));
        assert!(full.iter().any(|m| m.to.x < -9.99));
        // G90.1: the centre is absolute, the same arc.
        assert_eq!(arc("G90.1 G3 X0 Y10 I0 J0", (0.0, 0.0), quarter), g3);
        // Helical: Z falls linearly with the angle turned.
        let helix = arc("G3 X0 Y10 Z-5 I-10", (0.0, 0.0), quarter);
        for m in &helix {
            let turned = m.to.y.atan2(m.to.x) / quarter;
            assert!((m.to.z + 5.0 * turned).abs() < 1e-9, "{m:?}");
        }
        // Start and end radii must agree, as in LinuxCNC.
        assert!(read_with(&format!("{START}G3 X0 Y10.001 I-10 F9\n"), 1e-3).is_ok());
        let e = error(&format!("{START}G3 X0 Y10.01 I-10 F9\n"));
        assert!(
            e.starts_with("t.ngc:3: arc radius 10.0000 mm at the start but 10.0100"),
            "{e}"
        );
    }

    #[test]
    fn incremental_moves_and_inches_come_out_absolute_in_mm() {
        let ms = moves(
            "G0 X1 Y1 Z1\nG91 G1 X1 F100\nX1 Y-2 Z-0.5\nG90 G0 Z5\n",
            1e-4,
        );
        let got: Vec<_> = ms.iter().map(|m| (m.kind, m.to, m.line)).collect();
        // The first move comes down from the highest Z, 5.
        let want = [
            (Rapid, p(1.0, 1.0, 1.0), 1),
            (Cut, p(2.0, 1.0, 1.0), 2),
            (Cut, p(3.0, -1.0, 0.5), 3),
            (Rapid, p(3.0, -1.0, 5.0), 4),
        ];
        assert_eq!(got, want);
        let e = error("G91 G0 X1 Y1 Z1\n");
        assert!(e.starts_with("t.ngc:1: incremental (G91) move") && e.contains("\"X1\""));
        let prog = read_with("G20 G90\nG0 X1 Y2 Z0.5\nG1 X2 F10\nZ-0.1\n", 1e-4).unwrap();
        let run = &prog.runs[0];
        assert_eq!(run.start, p(25.4, 50.8, 12.7));
        let got: Vec<_> = run.moves.iter().map(|m| (m.kind, m.to, m.feed)).collect();
        assert_eq!(
            got,
            [
                (Cut, p(50.8, 50.8, 12.7), 254.0),
                (Plunge, p(50.8, 50.8, 0.1 * -25.4), 254.0)
            ]
        );
    }

    #[test]
    fn errors_name_the_line_and_the_word() {
        let check = |text: &str, line: usize, what: &str| {
            let e = error(text);
            assert!(e.starts_with(&format!("t.ngc:{line}: ")), "{e}");
            assert!(e.contains(what), "{e} lacks {what}");
        };
        // After a first line that gives every axis; each error is on its program's last line.
        for (rest, what) in [
            ("G1 X2 A5 F100", "unsupported word \"A5\""),
            ("g55", "unsupported G code \"G55\": it moves"),
            ("G92 X0", "unsupported G code \"G92\": it moves"),
            ("G18\nG1 X5 F10\nG2 X1 Z1 I1", "arc in the XZ plane (G18)"),
            ("M98", "unsupported M code \"M98\""),
            ("G0 X1.2.3", "malformed number \"X1.2.3\""),
            ("G0 Y1 X", "malformed number \"X\""),
            ("G0 X-", "malformed number \"X-\""),
            ("G0 X2e5", "unsupported word \"E5\""),
            ("G0 X2000000", "number out of range \"X2000000\""),
            ("G1 X5", "G1 before any feed rate F"),
            ("G1 X5 F0", "feed rate must be above 0 \"F0\""),
            ("G1 X5 I2 F1", "arc word without G2 or G3 in effect \"I2\""),
            ("G3 X0 Y10 I-10 J0 R10 F1", "both R and I/J \"R10\""),
            ("G2 X1 Y1 F1", "G2 arc without I, J or R"),
            ("G2 X0 Y0 R5 F1", "ends where it starts"),
            ("\n/G0 X1", "block delete \"/\""),
            ("G0 G1 X1", "\"G0\" and \"G1\""),
            ("G0 X1 X2", "\"X1\" and \"X2\""),
            ("G0 X1 Q1", "Q word without G64 \"Q1\""),
            (
                "G80 X1",
                "no motion mode (G0, G1, G2 or G3) in effect \"X1\"",
            ),
            ("G0 X1 (open", "unclosed comment"),
            ("#1=2", "unsupported character \"#\""),
            ("T1.5", "whole number \"T1.5\""),
        ] {
            let text = format!("G0 X0 Y0 Z0\n{rest}");
            check(&text, text.lines().count(), what);
        }
        // Whole programs.
        for (text, line, what) in [
            ("(x)\nM6", 2, "M6 before any tool number T"),
            ("G0 X10 Y5\nG1 X20 F100", 1, "never gives Z"),
            ("G0 Z5\nG1 Z-1 F100", 2, "G1 while X or Y is not known"),
        ] {
            check(text, line, what);
        }
        // A plane other than XY matters to arcs only.
        assert!(read_with("G18 G0 X1 Y1 Z1\nG17 G2 X3 I1 F9\n", 1e-4).is_ok());
        assert_eq!(
            read_with("G0 X1", 0.0).unwrap_err(),
            GcodeReadError::Tolerance(0.0)
        );
    }

    /// The chord count is refused before anything is allocated: 7e8 chords would need some
    /// 30 GB and minutes to make.
    #[test]
    fn an_arc_of_too_many_chords_fails_at_once() {
        let text = "G0 X100000 Y0 Z0\nG2 X100000 Y0 I-100000 F100\n";
        let t = std::time::Instant::now();
        let e = read_with(text, 1e-12).unwrap_err().to_string();
        assert!(t.elapsed().as_secs_f64() < 5.0);
        assert!(
            e.starts_with("t.ngc:2: arc needs 7") && e.contains("chords"),
            "{e}"
        );
    }

    #[test]
    fn the_start_comes_from_the_first_target_and_the_highest_z() {
        let prog = read_with("G21 G90\nG0 X10 Y5\nG1 Z-1 F100\nG0 Z20\nX0\n", 1e-4).unwrap();
        assert_eq!(prog.runs.len(), 1);
        let run = &prog.runs[0];
        assert_eq!((run.tool, run.line, run.start), (0, 1, p(10.0, 5.0, 20.0)));
        let got: Vec<_> = run.moves.iter().map(|m| (m.kind, m.to, m.feed)).collect();
        let want = [
            (Plunge, p(10.0, 5.0, -1.0), 100.0),
            (Rapid, p(10.0, 5.0, 20.0), 0.0),
            (Rapid, p(0.0, 5.0, 20.0), 0.0),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn tools_change_at_m6_or_without_any_m6_at_each_t() {
        let runs = |text: &str| {
            let prog = read_with(text, 1e-4).unwrap();
            let r: Vec<_> = prog
                .runs
                .iter()
                .map(|r| (r.tool, r.line, r.start, r.moves.len()))
                .collect();
            (r, prog.lines)
        };
        // GRBL-style: each T starts a run; M2 ends the program.
        let text = "G0 X0 Y0 Z5\nT1\nG1 Z-1 F100\nT2\nG0 Z5\nX10\nM2\nG0 X99 A1\n";
        let want = vec![(1, 2, p(0.0, 0.0, 5.0), 1), (2, 4, p(0.0, 0.0, -1.0), 2)];
        assert_eq!(runs(text), (want, 7));
        // With M6, a T only selects (a prefetch); what came before the first M6 is tool 0's.
        let text = "%\nT1\nG0 X0 Y0 Z5\nX1\nT2 M6\nT3\nG1 Z1 F9\nM6\nG0 Z5\n%\nG0 A1\n";
        let want = vec![
            (0, 1, p(0.0, 0.0, 5.0), 1),
            (2, 5, p(1.0, 0.0, 5.0), 1),
            (3, 8, p(1.0, 0.0, 1.0), 1),
        ];
        assert_eq!(runs(text), (want, 10));
    }

    #[test]
    fn words_need_no_spaces_and_any_case() {
        let e = error("G0 X1 Y2 Z3\n(a (nested) comment)\n");
        assert!(e.starts_with("t.ngc:2: nested comment"), "{e}");
        let e = error("N10 g0x1y2z3 ; a comment\nG1X.5Y+2.F-0 (nope)\n");
        assert!(
            e.starts_with("t.ngc:2: feed rate must be above 0 \"F-0\""),
            "{e}"
        );
        let text = "N10 g0x1y2z3 ; a comment\n(comment)g1 x.5 y+2. f60 G64 P0.01 Q0.1\n\n";
        let ms = moves(text, 1e-4);
        assert_eq!(ms.len(), 1);
        assert_eq!(
            (ms[0].to, ms[0].line, ms[0].feed),
            (p(0.5, 2.0, 3.0), 2, 60.0)
        );
    }
}
