//! Toolpaths to G-code, as a post-processor ([`crate::post::PostProcessor`]) spells it.
//!
//! The writer owns what keeps the machine safe whatever the post: a lift to safe Z before a
//! tool change and again after it (the new tool may be longer), the spindle started before
//! the first move, modal motion lines that never repeat a word. The post decides how each
//! line is spelled, which lines wrap the program, and how comments look.

use crate::arcs::{Arc, ArcSpan};
use crate::cutter::Cutter;
use crate::geom::Point3;
use crate::planner::{MachineProfile, Planner, TimeEstimate};
use crate::post::{ArcStyle, CommentStyle, CoolantMode, Placeholder, PostProcessor, Template};
use crate::toolpath::{Feeds, MoveKind, Toolpath};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::str::FromStr;

/// The units a program is written in: what `G21`/`G20` announce. Toolpaths are in
/// millimetres; an inch program has every coordinate and feed divided by 25.4 on output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProgramUnits {
    #[default]
    Millimetres,
    /// `G20`: inches, feeds in inches per minute.
    Inches,
}

impl ProgramUnits {
    pub const ALL: [ProgramUnits; 2] = [ProgramUnits::Millimetres, ProgramUnits::Inches];

    pub fn label(self) -> &'static str {
        match self {
            ProgramUnits::Millimetres => "mm (G21)",
            ProgramUnits::Inches => "inch (G20)",
        }
    }

    /// The word files and flags use: `mm` or `inch`.
    pub fn word(self) -> &'static str {
        match self {
            ProgramUnits::Millimetres => "mm",
            ProgramUnits::Inches => "inch",
        }
    }

    /// The G code that selects these units.
    pub fn code(self) -> &'static str {
        match self {
            ProgramUnits::Millimetres => "G21",
            ProgramUnits::Inches => "G20",
        }
    }

    /// A millimetre figure in these units.
    fn of_mm(self, mm: f64) -> f64 {
        match self {
            ProgramUnits::Millimetres => mm,
            ProgramUnits::Inches => mm / 25.4,
        }
    }
}

impl FromStr for ProgramUnits {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mm" | "millimetres" | "millimeters" | "g21" => Ok(ProgramUnits::Millimetres),
            "inch" | "inches" | "in" | "g20" => Ok(ProgramUnits::Inches),
            _ => Err(format!(
                "unknown program units \"{s}\": expected mm or inch"
            )),
        }
    }
}

/// How a program is written: by which post, in which units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Post<'a> {
    pub processor: &'a PostProcessor,
    pub units: ProgramUnits,
}

impl<'a> Post<'a> {
    /// `processor` in its default units.
    pub fn new(processor: &'a PostProcessor) -> Self {
        Self {
            processor,
            units: processor.default_units(),
        }
    }

    /// How figures are written: decimals for axes and feeds, in the program's units.
    fn format(&self) -> Format {
        let p = self.processor.places(self.units);
        Format {
            units: self.units,
            axes: p.axes,
            feed: p.feed,
        }
    }
}

/// Figures as a program writes them.
#[derive(Clone, Copy, Debug)]
struct Format {
    units: ProgramUnits,
    axes: u32,
    feed: u32,
}

impl Format {
    /// A millimetre length (coordinate, arc offset) as written.
    fn len(&self, mm: f64) -> String {
        num_places(self.units.of_mm(mm), self.axes)
    }

    /// A mm/min feed as written.
    fn feed(&self, mm_per_min: f64) -> String {
        num_places(self.units.of_mm(mm_per_min), self.feed)
    }

    /// A millimetre length as the whole number of the output's resolution it is written as
    /// (the same arithmetic as [`Format::len`]): two figures print alike exactly when these
    /// are equal. `None` for what is not finite or absurdly large (written as text).
    fn quantum(&self, mm: f64) -> Option<i64> {
        let scaled = (self.units.of_mm(mm) * 10f64.powi(self.axes as i32)).round();
        (scaled.is_finite() && scaled.abs() < 9e15).then_some(scaled as i64)
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
    /// Seconds to wait after starting the spindle before the first move (`G4 P`); 0 for none.
    pub spindle_dwell_s: f64,
    /// Arcs to write in place of runs of the toolpath's moves, in order, fitted for this
    /// post and checked against the model ([`crate::arcs`], `Program::arcs`); empty for
    /// straight moves only. A post without arcs writes the moves whatever this holds.
    pub arcs: &'a [ArcSpan],
    pub toolpath: &'a Toolpath,
}

/// Millimetres to 4 decimals (0.1 µm), trailing zeros dropped, no negative zero.
fn num(v: f64) -> String {
    num_places(v, 4)
}

/// `v` to `places` decimals (at most 9), trailing zeros dropped, no negative zero. Integer
/// arithmetic: `format!("{:.4}")` on floats dominated writing large programs.
fn num_places(v: f64, places: u32) -> String {
    let unit = 10u64.pow(places.min(9));
    let scaled = (v * unit as f64).round();
    if scaled.is_nan() || scaled.abs() >= 9e15 {
        return format!("{v:.*}", places as usize);
    }
    let i = scaled as i64;
    let (int, frac) = (i.unsigned_abs() / unit, i.unsigned_abs() % unit);
    let mut s = String::with_capacity(16);
    if i < 0 {
        s.push('-');
    }
    let _ = write!(s, "{int}");
    if frac != 0 {
        let digits = format!("{frac:0width$}", width = places as usize);
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s
}

/// The tool in a machinist's words, for comments: "ball 3 mm", "bull 6 mm R1", "V-bit 6 mm 60
/// deg" (ASCII only: controllers differ on anything else in comments).
pub fn describe_tool(cutter: &Cutter) -> String {
    match *cutter {
        Cutter::Flat { diameter } => format!("flat {diameter} mm"),
        Cutter::Ball { diameter } => format!("ball {diameter} mm"),
        Cutter::Bull {
            diameter,
            corner_radius,
        } => format!("bull {diameter} mm R{corner_radius}"),
        Cutter::VBit {
            diameter,
            included_angle,
        } => format!("V-bit {diameter} mm {included_angle} deg"),
    }
}

/// Writes a complete program: header, each operation with its tool change, footer; the
/// machining time in the comments is estimated for [`MachineProfile::default`].
///
/// A tool change happens before the first operation and wherever the tool number or the
/// cutter differs from the operation before; consecutive operations with the same tool run on
/// without one.
pub fn write_program(
    out: &mut impl Write,
    post: &PostProcessor,
    title: &str,
    operations: &[Operation<'_>],
) -> io::Result<()> {
    write_program_at(
        out,
        Post::new(post),
        title,
        None,
        &MachineProfile::default(),
        operations,
    )
    .map(drop)
}

/// How long each operation of the program takes on `machine`, as [`write_program`] writes
/// it: the lift from where the operation before left the tool, the spindle start (a stop:
/// GRBL and LinuxCNC both wait for the machine to come to rest) and its dwell, the rapids
/// to the toolpath's start, then its moves, to rest at the end. The first operation's lift
/// and move to its start are not counted (where the tool is before the program is not
/// known), nor is the operator's time at a tool change.
pub fn estimate_program(
    operations: &[Operation<'_>],
    machine: &MachineProfile,
) -> Vec<TimeEstimate> {
    let mut timer = ProgramTimer::new(machine);
    for op in operations {
        timer.begin(op.toolpath.start, op.safe_z, op.spindle_dwell_s, op.feeds);
        timer.moves(&op.toolpath.moves);
    }
    timer.finish()
}

/// [`estimate_program`] fed as the program is made: an operation begun, then its moves in
/// pieces, in order. `Program::post` runs one beside the stock check, which hands on each
/// piece of the posted toolpath as soon as it is final, so that the planner — a serial pass
/// over every move — is done when the check is, not after it (on a 10M-move program it
/// was a serial tail of a third of a second).
#[derive(Debug)]
pub struct ProgramTimer {
    machine: MachineProfile,
    /// Where the last operation left the tool.
    before: Option<Point3>,
    current: Option<(Planner, Feeds)>,
    times: Vec<TimeEstimate>,
}

impl ProgramTimer {
    pub fn new(machine: &MachineProfile) -> Self {
        Self {
            machine: *machine,
            before: None,
            current: None,
            times: Vec::new(),
        }
    }

    /// Ends the operation before (if any) and begins one whose toolpath starts at `start`.
    pub fn begin(&mut self, start: Point3, safe_z: f64, spindle_dwell_s: f64, feeds: Feeds) {
        self.end_operation();
        let safe = safe_z.max(start.z);
        let from = self.before.unwrap_or(Point3::new(start.x, start.y, safe));
        let mut p = Planner::new(&self.machine, from);
        p.move_to(
            MoveKind::Rapid,
            Point3::new(from.x, from.y, safe),
            f64::INFINITY,
        );
        p.stop();
        if spindle_dwell_s > 0.0 {
            p.dwell(spindle_dwell_s);
        }
        p.move_to(
            MoveKind::Rapid,
            Point3::new(start.x, start.y, safe),
            f64::INFINITY,
        );
        if start.z < safe_z {
            p.move_to(MoveKind::Rapid, start, f64::INFINITY);
        }
        self.current = Some((p, feeds));
    }

    /// The next moves of the operation begun last.
    pub fn moves(&mut self, moves: &[crate::toolpath::Move]) {
        let (p, feeds) = self
            .current
            .as_mut()
            .expect("an operation is begun before its moves");
        p.follow_moves(moves, feeds);
    }

    /// Each operation's time, in order.
    pub fn finish(mut self) -> Vec<TimeEstimate> {
        self.end_operation();
        self.times
    }

    fn end_operation(&mut self) {
        if let Some((p, _)) = self.current.take() {
            self.before = Some(p.position());
            self.times.push(p.finish());
        }
    }
}

/// `H:MM:SS`.
pub fn format_duration(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Where the program's zero is: a point in model coordinates, and how the header says so.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkZero {
    pub at: Point3,
    /// "X at the stock's left, Y at its front, Z at the stock top".
    pub description: String,
}

/// Why a post cannot write a program, as the I/O error the writer returns.
fn cannot(post: &PostProcessor, message: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the {} post {message}", post.name),
    )
}

/// Lines as a post writes them: numbered where it numbers them, comments in its style,
/// each checked against its longest line.
struct Lines<'p> {
    post: &'p PostProcessor,
    format: Format,
    /// The next `N` number, for a post that numbers lines.
    next: Option<u64>,
    buf: Vec<u8>,
}

impl<'p> Lines<'p> {
    fn new(post: Post<'p>) -> Self {
        Self {
            post: post.processor,
            format: post.format(),
            next: post.processor.line_numbers.map(|n| n.start),
            buf: Vec::with_capacity(1 << 16),
        }
    }

    /// Starts a line: its `N` word, if the post numbers lines.
    fn begin(&mut self) {
        if let Some(n) = self.next {
            self.buf.push(b'N');
            let _ = write!(Bytes(&mut self.buf), "{n} ");
            self.next = Some(next_number(n, self.post));
        }
    }

    /// Ends a line started at `start` in the buffer, refusing one longer than the post
    /// allows (comments not counted).
    fn end(&mut self, start: usize) -> io::Result<()> {
        let line = &self.buf[start..];
        let mut length = line.len();
        if line.contains(&b'(') || line.contains(&b';') {
            length = words_length(line);
        }
        if length > self.post.max_line_length {
            let text = String::from_utf8_lossy(line).into_owned();
            return Err(cannot(
                self.post,
                format!(
                    "takes lines of at most {} characters; this one has {length}: {text}",
                    self.post.max_line_length
                ),
            ));
        }
        self.buf.push(b'\n');
        Ok(())
    }

    /// A line of code: numbered, except `%` and the program number (`O…`), which a control
    /// reads before it counts blocks.
    fn code(&mut self, line: &str) -> io::Result<()> {
        let start = self.buf.len();
        if line != "%" && !line.starts_with(['O', 'o']) {
            self.begin();
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.end(start)
    }

    /// A whole-line comment in the post's style (none where it has none).
    fn comment(&mut self, text: &str) {
        let text = crate::post::clean_text(text);
        match self.post.comments {
            CommentStyle::Parentheses => {
                let _ = writeln!(Bytes(&mut self.buf), "({text})");
            }
            CommentStyle::Semicolon => {
                let _ = writeln!(Bytes(&mut self.buf), "; {text}");
            }
            CommentStyle::None => {}
        }
    }

    /// A template line, its placeholders filled by `value`.
    fn template(&mut self, t: &Template, value: &dyn Fn(Placeholder) -> String) -> io::Result<()> {
        let line = t.fill(value);
        if t.is_comment() {
            self.comment(&line);
            Ok(())
        } else if line.trim().is_empty() {
            Ok(())
        } else {
            self.code(&line)
        }
    }

    /// Sends the buffer on once it holds a good part of 64 KiB.
    fn flush_some(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.buf.len() >= (1 << 16) - 256 {
            self.flush(out)?;
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// The line number after `n` (back to the start past the post's largest).
fn next_number(n: u64, post: &PostProcessor) -> u64 {
    match post.line_numbers {
        Some(numbers) if n + numbers.step <= numbers.max => n + numbers.step,
        Some(numbers) => numbers.start,
        None => n,
    }
}

/// `write!` into a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A line's length without its comments: `(…)` anywhere and `;` to the end.
fn words_length(line: &[u8]) -> usize {
    let mut n = 0;
    let mut depth = 0;
    for &c in line {
        match c {
            b';' if depth == 0 => break,
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            _ if depth == 0 => n += 1,
            _ => {}
        }
    }
    n
}

/// [`write_program`] with every coordinate measured from `zero` (the machinist's touch-off
/// point) instead of the model's origin (the header says where zero is), and the machining
/// time estimated for `machine` ([`estimate_program`]). Returns that estimate, one per
/// operation, so a caller that reports it need not plan the whole program a second time.
pub fn write_program_at(
    out: &mut impl Write,
    post: Post<'_>,
    title: &str,
    zero: Option<&WorkZero>,
    machine: &MachineProfile,
    operations: &[Operation<'_>],
) -> io::Result<Vec<TimeEstimate>> {
    let times = estimate_program(operations, machine);
    write_program_timed(out, post, title, zero, machine, operations, &times)?;
    Ok(times)
}

/// [`write_program_at`] with each operation's time on `machine` already estimated
/// ([`estimate_program`], or a [`ProgramTimer`] fed as the program was made).
pub fn write_program_timed(
    out: &mut impl Write,
    post: Post<'_>,
    title: &str,
    zero: Option<&WorkZero>,
    machine: &MachineProfile,
    operations: &[Operation<'_>],
    times: &[TimeEstimate],
) -> io::Result<()> {
    assert_eq!(times.len(), operations.len(), "one time per operation");
    let processor = post.processor;
    processor
        .check_units(post.units)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut lines = Lines::new(post);
    let fmt = post.format();
    let header = |p: Placeholder| match p {
        Placeholder::Title => title.to_string(),
        Placeholder::ProgramNumber => processor.program_number.to_string(),
        _ => String::new(),
    };
    for t in &processor.start {
        lines.template(t, &header)?;
    }
    lines.comment(&format!("{title} - Millpond {}", env!("CARGO_PKG_VERSION")));
    if let Some(z) = zero {
        let p = z.at;
        lines.comment(&format!(
            "Work zero: {}, at X{} Y{} Z{} of the model",
            z.description,
            num(p.x),
            num(p.y),
            num(p.z)
        ));
    }
    let total: TimeEstimate = times.iter().copied().sum();
    let f = |v: [f64; 3]| format!("{}/{}/{}", num(v[0]), num(v[1]), num(v[2]));
    for line in [
        format!(
            "Estimated machining time {}, {} without acceleration",
            format_duration(total.total_s),
            format_duration(total.full_speed_s + total.dwell_s)
        ),
        format!(
            "for rapids XYZ {} mm/min, feeds up to {}",
            f(machine.rapid_rate),
            f(machine.max_feed)
        ),
        format!(
            "accelerations {} mm/s2, junction deviation {} mm",
            f(machine.acceleration),
            num(machine.junction_deviation)
        ),
    ] {
        lines.comment(&line);
    }
    // Units, absolute, feed per minute, XY plane, no cutter compensation, no canned cycle:
    // whatever the post spells, it says these.
    for t in &processor.setup {
        lines.template(t, &|p| match p {
            Placeholder::Units => post.units.code().to_string(),
            Placeholder::Tolerance => fmt.len(processor.path_tolerance),
            _ => String::new(),
        })?;
    }
    let mut loaded: Option<(u32, Cutter)> = None;
    for (op, time) in operations.iter().zip(times) {
        let change = match loaded {
            None => ToolChange::First,
            Some(t) if t == (op.tool_number, op.cutter) => ToolChange::None,
            Some(_) => ToolChange::Swap,
        };
        // Every coordinate measured from the zero as it is written: never a translated copy
        // of the toolpath (on a 10M-move program, 320 MB and a serial pass).
        let at = zero.map_or(Point3::new(0.0, 0.0, 0.0), |z| z.at);
        write_operation(out, &mut lines, op, at, change, time)?;
        loaded = Some((op.tool_number, op.cutter));
    }
    coolant_off(&mut lines)?;
    lines.template(&processor.spindle_stop, &|_| String::new())?;
    for t in &processor.end {
        lines.template(t, &header)?;
    }
    lines.flush(out)?;
    Ok(())
}

/// The coolant off, where the post turns it on.
fn coolant_off(lines: &mut Lines<'_>) -> io::Result<()> {
    let post = lines.post;
    if post.coolant.mode != CoolantMode::Off {
        lines.template(&post.coolant.off, &|_| String::new())?;
    }
    Ok(())
}

/// What happens to the tool before an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ToolChange {
    /// The program's first tool.
    First,
    /// Another tool than the one in the spindle.
    Swap,
    /// The same tool goes on cutting.
    None,
}

/// `zero`: where the program's zero is, in model coordinates (the origin for none); every
/// coordinate written is measured from it.
fn write_operation(
    out: &mut impl Write,
    lines: &mut Lines<'_>,
    op: &Operation<'_>,
    zero: Point3,
    change: ToolChange,
    time: &TimeEstimate,
) -> io::Result<()> {
    let post = lines.post;
    let fmt = lines.format;
    let tp = op.toolpath;
    let stats = tp.stats(&op.feeds);
    let tool = describe_tool(&op.cutter);
    lines.comment(&format!("Operation: {}", op.name));
    lines.comment(&format!("Tool {}: {tool}", op.tool_number));
    lines.comment(&format!(
        "Cut {:.1} mm, rapid {:.1} mm, about {:.1} min",
        stats.cut_length + stats.plunge_length,
        stats.rapid_length,
        time.total_s / 60.0
    ));
    let start = tp.start - zero;
    let safe_z = op.safe_z - zero.z;
    let lift = format!("G0 Z{}", fmt.len(safe_z.max(start.z)));
    // Lift before any tool change or spindle start.
    lines.code(&lift)?;
    let n = op.tool_number;
    let tool_value = |p: Placeholder| match p {
        Placeholder::Tool => n.to_string(),
        Placeholder::ToolName => tool.clone(),
        _ => String::new(),
    };
    if change != ToolChange::None {
        if change == ToolChange::Swap {
            coolant_off(lines)?;
        }
        match (&post.tool_change, change) {
            (Some(tc), ToolChange::First) => {
                for t in tc.first.as_ref().unwrap_or(&tc.change) {
                    lines.template(t, &tool_value)?;
                }
            }
            (Some(tc), _) => {
                for t in &tc.change {
                    lines.template(t, &tool_value)?;
                }
            }
            (None, ToolChange::First) => {
                lines.comment(&format!("Load tool {n} before starting: {tool}"));
            }
            (None, _) => {
                // No tool changer: stop the spindle and wait at safe height for the operator
                // to swap the tool and set Z zero at its tip, then go on.
                lines.template(&post.spindle_stop, &|_| String::new())?;
                lines.comment(&format!("Change to tool {n}: {tool}"));
                lines.comment("Set Z zero at the new tip, then resume");
                lines.template(&post.pause, &|_| String::new())?;
            }
        }
        // A new tool (and its new length offset) may reach lower than the one before: the
        // lift above was made with the old tool, so lift again before any move across the
        // part.
        lines.code(&lift)?;
    }
    lines.template(&post.spindle_start, &|p| match p {
        Placeholder::Rpm => num(op.feeds.spindle_rpm.round()),
        _ => String::new(),
    })?;
    match post.coolant.mode {
        CoolantMode::Off => {}
        CoolantMode::Flood => lines.template(&post.coolant.flood, &|_| String::new())?,
        CoolantMode::Mist => lines.template(&post.coolant.mist, &|_| String::new())?,
    }
    if op.spindle_dwell_s > 0.0 {
        // Let the spindle reach its speed before the tool meets material.
        lines.template(&post.dwell, &|p| match p {
            Placeholder::Seconds => num(op.spindle_dwell_s),
            Placeholder::Milliseconds => num((op.spindle_dwell_s * 1000.0).ceil()),
            _ => String::new(),
        })?;
    }
    lines.code(&format!("G0 X{} Y{}", fmt.len(start.x), fmt.len(start.y)))?;
    if start.z < safe_z {
        lines.code(&format!("G0 Z{}", fmt.len(start.z)))?;
    }
    lines.flush_some(out)?;
    write_moves(out, lines, op, zero)
}

/// Moves per block of a toolpath formatted on its own thread (see [`write_moves`]).
const BLOCK_MOVES: usize = 1 << 16;

/// The toolpath's moves. Modal output: a word only when it changes. Figures are compared as
/// the integers of the output's resolution they are written as (what two strings would
/// compare, without making them) and written straight into the line: the loop allocates
/// nothing. Where the post writes arcs, the operation's arcs replace their runs of moves, one
/// `G2`/`G3` each ([`crate::arcs`]).
///
/// A large toolpath is written in blocks formatted side by side on the current rayon pool:
/// formatting is most of the writer's time, and on a 10M-move program it was a serial tail
/// after the parallel compute. What a block's first line writes depends on what the lines
/// before it left: where the controller is (always the last move's end, rounded as written,
/// so the block knows it), and the modal G code, the feed and the next line number (which
/// depend on which lines were written). So each block first works out, on its own, which
/// lines it writes (without formatting a figure); a pass over the blocks carries the modal
/// state and the line count from each to the next; then the blocks are formatted, again
/// side by side, and sent on in order. The bytes are the same as one pass's.
fn write_moves(
    out: &mut impl Write,
    lines: &mut Lines<'_>,
    op: &Operation<'_>,
    zero: Point3,
) -> io::Result<()> {
    write_moves_in(out, lines, op, zero, BLOCK_MOVES)
}

fn write_moves_in(
    out: &mut impl Write,
    lines: &mut Lines<'_>,
    op: &Operation<'_>,
    zero: Point3,
    block: usize,
) -> io::Result<()> {
    use rayon::prelude::*;
    let motion = Motion::new(lines, op, zero);
    let mut words = Vec::with_capacity(96);
    let n = op.toolpath.moves.len();
    // On one thread the first pass would only add to the work.
    if n <= block || rayon::current_num_threads() == 1 {
        let mut state = motion.at(0);
        state.next = lines.next;
        while state.i < n {
            motion.line(&mut state, Some(lines), &mut words)?;
            lines.flush_some(out)?;
        }
        return Ok(());
    }
    let bounds = motion.block_starts(block);
    let until = |k: usize| bounds.get(k + 1).copied().unwrap_or(n);
    // What each block leaves, from no modal state: its last motion code and feed, and how
    // many lines it writes.
    let left: Vec<Modal> = (0..bounds.len())
        .into_par_iter()
        .map(|k| {
            let mut state = Modal {
                mode: UNKNOWN_MODE,
                ..motion.at(bounds[k])
            };
            let mut words = Vec::new();
            while state.i < until(k) {
                // Without lines to write into, nothing can fail.
                let _ = motion.line(&mut state, None, &mut words);
            }
            state
        })
        .collect();
    let mut starts = Vec::with_capacity(bounds.len());
    let (mut mode, mut feed, mut next) = (0, f64::NAN, lines.next);
    for (k, after) in left.iter().enumerate() {
        starts.push(Modal {
            mode,
            feed,
            next,
            ..motion.at(bounds[k])
        });
        if after.mode != UNKNOWN_MODE {
            mode = after.mode;
        }
        if !after.feed.is_nan() {
            feed = after.feed;
        }
        next = next.map(|mut n| {
            for _ in 0..after.written {
                n = next_number(n, lines.post);
            }
            n
        });
    }
    lines.flush(out)?;
    // A few blocks per thread at a time, sent on before the next are formatted, so that the
    // program's text is never all held at once (150 MB for 10M moves).
    let group = 4 * rayon::current_num_threads();
    for (g, starts) in starts.chunks(group).enumerate() {
        let texts: Vec<io::Result<Vec<u8>>> = starts
            .par_iter()
            .enumerate()
            .map(|(k, &start)| {
                let k = g * group + k;
                let mut text = Lines {
                    post: lines.post,
                    format: lines.format,
                    next: start.next,
                    buf: Vec::with_capacity((until(k) - start.i) * 24),
                };
                let mut state = start;
                let mut words = Vec::with_capacity(96);
                while state.i < until(k) {
                    motion.line(&mut state, Some(&mut text), &mut words)?;
                }
                Ok(text.buf)
            })
            .collect();
        for text in texts {
            out.write_all(&text?)?;
        }
    }
    lines.next = next;
    Ok(())
}

/// A motion code no line writes: what a block works out its lines from.
const UNKNOWN_MODE: u8 = u8::MAX;

/// What the motion lines written so far leave for the next: the next move, the next arc,
/// where the controller is, its modal motion code and feed, and the next line number.
#[derive(Clone, Copy, Debug)]
struct Modal {
    i: usize,
    arc: usize,
    at: Quantized,
    mode: u8,
    feed: f64,
    next: Option<u64>,
    /// Lines written, when only working out which lines are written.
    written: u64,
}

/// One operation's moves as motion lines.
struct Motion<'a> {
    op: &'a Operation<'a>,
    /// The program's zero: every point is written less it.
    zero: Point3,
    fmt: Format,
    post: &'a PostProcessor,
    arcs: &'a [ArcSpan],
}

impl<'a> Motion<'a> {
    fn new(lines: &Lines<'a>, op: &'a Operation<'a>, zero: Point3) -> Self {
        let arcs: &[ArcSpan] = if lines.post.arcs == ArcStyle::None {
            &[]
        } else {
            op.arcs
        };
        Self {
            op,
            zero,
            fmt: lines.format,
            post: lines.post,
            arcs,
        }
    }

    /// The state before move `i`, as far as the moves alone tell it: the controller is at
    /// the last move's end (the toolpath's start before the first), rounded as written (a
    /// line writes every axis that changes, an arc's line its end); the modal code and feed
    /// and the line number are those before the first move (G0 from the lines that lead
    /// in, no feed yet), right only for the first.
    fn at(&self, i: usize) -> Modal {
        let moves = &self.op.toolpath.moves;
        let p = if i == 0 {
            self.op.toolpath.start
        } else {
            moves[i - 1].to
        } - self.zero;
        let q = |v: f64| self.fmt.quantum(v);
        Modal {
            i,
            arc: self.arcs.partition_point(|a| a.first < i),
            at: Quantized {
                xyz: [q(p.x), q(p.y), q(p.z)],
            },
            mode: 0,
            feed: f64::NAN,
            next: None,
            written: 0,
        }
    }

    /// Where blocks of about `block` moves start: never inside an arc's run of moves.
    fn block_starts(&self, block: usize) -> Vec<usize> {
        let n = self.op.toolpath.moves.len();
        let mut out = vec![0];
        let mut b = block;
        while b < n {
            // Past the run of an arc that started before `b`, if it covers `b`.
            let k = self.arcs.partition_point(|a| a.first < b);
            if let Some(a) = k.checked_sub(1).map(|k| &self.arcs[k]) {
                b = b.max(a.first + a.arc.moves);
            }
            if b >= n {
                break;
            }
            out.push(b);
            b = (b / block + 1) * block;
        }
        out
    }

    /// Writes the line of the move (or arc) at `s.i` into `lines` and moves `s` past it;
    /// with no `lines`, only moves `s` on as writing would. A move that changes no axis at
    /// the output's precision writes nothing.
    /// `words` is scratch space, so that the loop allocates nothing.
    fn line(
        &self,
        s: &mut Modal,
        lines: Option<&mut Lines<'_>>,
        words: &mut Vec<u8>,
    ) -> io::Result<()> {
        let moves = &self.op.toolpath.moves;
        let fmt = &self.fmt;
        let zero = self.zero;
        let m = moves[s.i];
        let to = m.to - zero;
        let (g, f) = match m.kind {
            MoveKind::Rapid => (0u8, None),
            MoveKind::Plunge => (1, Some(self.op.feeds.plunge_feed)),
            MoveKind::Cut => (1, Some(self.op.feeds.feed)),
        };
        words.clear();
        let mut arc = false;
        let mut done = 1;
        let mut code = g;
        while self.arcs.get(s.arc).is_some_and(|a| a.first < s.i) {
            s.arc += 1;
        }
        if let Some(span) = self.arcs.get(s.arc).filter(|a| a.first == s.i)
            && g == 1
            && let Some(end) = moves.get(s.i + span.arc.moves - 1)
            && moves[s.i..s.i + span.arc.moves]
                .iter()
                .all(|n| n.kind == m.kind)
            && let Some(w) = arc_words(
                fmt,
                self.post.arcs,
                &s.at,
                &Arc {
                    centre: [span.arc.centre[0] - zero.x, span.arc.centre[1] - zero.y],
                    ..span.arc
                },
                end.to - zero,
            )
        {
            s.at = w.end;
            code = if span.arc.clockwise { 2 } else { 3 };
            done = span.arc.moves;
            *words = w.words;
            arc = true;
        }
        let writing = lines.is_some();
        let mut changed = false;
        if done == 1 {
            for (axis, (word, v)) in [(b'X', to.x), (b'Y', to.y), (b'Z', to.z)]
                .into_iter()
                .enumerate()
            {
                let new = fmt.quantum(v);
                if new != s.at.xyz[axis] {
                    changed = true;
                    s.at.xyz[axis] = new;
                    if writing {
                        words.push(b' ');
                        words.push(word);
                        match new {
                            Some(n) => push_fixed(words, n, fmt.axes),
                            None => words.extend_from_slice(fmt.len(v).as_bytes()),
                        }
                    }
                }
            }
        }
        s.i += done;
        if !changed && !arc {
            // No axis changes at this output precision: nothing to move.
            return Ok(());
        }
        let new_mode = code != s.mode;
        let new_feed = f.filter(|&f| f != s.feed);
        s.mode = code;
        if let Some(f) = new_feed {
            s.feed = f;
        }
        let Some(lines) = lines else {
            s.written += 1;
            return Ok(());
        };
        let line_start = lines.buf.len();
        lines.begin();
        let block = &mut lines.buf;
        if new_mode {
            block.push(b'G');
            block.push(b'0' + code);
            block.extend_from_slice(words);
        } else {
            block.extend_from_slice(&words[1..]);
        }
        if let Some(f) = new_feed {
            block.extend_from_slice(b" F");
            block.extend_from_slice(fmt.feed(f).as_bytes());
        }
        s.next = lines.next;
        // A motion line has no comment: its length is its bytes.
        if lines.buf.len() - line_start > lines.post.max_line_length {
            lines.end(line_start)
        } else {
            lines.buf.push(b'\n');
            Ok(())
        }
    }
}

/// Where the controller is, as written: each axis in units of the output's resolution
/// (`None` for a figure written as text, beyond any real machine).
#[derive(Clone, Copy, Debug)]
struct Quantized {
    xyz: [Option<i64>; 3],
}

/// An arc's words and where it leaves the controller.
struct ArcWords {
    words: Vec<u8>,
    end: Quantized,
}

/// The words of `arc` from where the controller is (`from`, as written) to `to`: the axes
/// that change, then `I J` (the centre from the written start, as controllers take it) or
/// `R`. `None` where the written figures would not make the arc: an end the resolution
/// cannot tell from the start, or a centre whose rounding puts the start and end more than
/// two steps of the resolution off one radius (controllers refuse those, LinuxCNC first).
fn arc_words(
    fmt: &Format,
    style: ArcStyle,
    from: &Quantized,
    arc: &Arc,
    to: Point3,
) -> Option<ArcWords> {
    let unit = 10f64.powi(fmt.axes as i32);
    let (sx, sy) = (from.xyz[0]?, from.xyz[1]?);
    let end = [fmt.quantum(to.x)?, fmt.quantum(to.y)?, fmt.quantum(to.z)?];
    if end[0] == sx && end[1] == sy {
        return None;
    }
    // In units of the resolution, in the program's units.
    let centre = [
        (fmt.units.of_mm(arc.centre[0]) * unit).round(),
        (fmt.units.of_mm(arc.centre[1]) * unit).round(),
    ];
    let (i, j) = (centre[0] - sx as f64, centre[1] - sy as f64);
    let r_start = i.hypot(j);
    let r_end = (centre[0] - end[0] as f64).hypot(centre[1] - end[1] as f64);
    if (r_start - r_end).abs() > 2.0 || !(i.abs() < 9e15 && j.abs() < 9e15) {
        return None;
    }
    let mut words = Vec::with_capacity(96);
    let mut at = *from;
    for (axis, word) in [b'X', b'Y', b'Z'].into_iter().enumerate() {
        if Some(end[axis]) != at.xyz[axis] {
            words.push(b' ');
            words.push(word);
            push_fixed(&mut words, end[axis], fmt.axes);
            at.xyz[axis] = Some(end[axis]);
        }
    }
    match style {
        ArcStyle::R => {
            words.extend_from_slice(b" R");
            push_fixed(
                &mut words,
                ((r_start + r_end) / 2.0).round() as i64,
                fmt.axes,
            );
        }
        _ => {
            words.extend_from_slice(b" I");
            push_fixed(&mut words, i as i64, fmt.axes);
            words.extend_from_slice(b" J");
            push_fixed(&mut words, j as i64, fmt.axes);
        }
    }
    Some(ArcWords { words, end: at })
}

/// Appends `q` units of 10^-`places` as [`num_places`] writes the figure: trailing zeros
/// dropped, no negative zero. By hand: `write!` cost more than the rest of a move.
fn push_fixed(out: &mut Vec<u8>, q: i64, places: u32) {
    let unit = 10u64.pow(places.min(9));
    let a = q.unsigned_abs();
    let (mut int, mut frac) = (a / unit, a % unit);
    if q < 0 {
        out.push(b'-');
    }
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (int % 10) as u8;
        int /= 10;
        if int == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
    if frac != 0 {
        let mut width = places.min(9) as usize;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        let mut digits = [b'0'; 9];
        for d in digits[..width].iter_mut().rev() {
            *d = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        out.push(b'.');
        out.extend_from_slice(&digits[..width]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(key: &str) -> PostProcessor {
        PostProcessor::built_in_named(key).unwrap()
    }

    fn sample() -> Toolpath {
        let mut tp = Toolpath::new(Point3::new(0.0, 0.0, 10.0));
        tp.push(MoveKind::Rapid, Point3::new(0.0, 0.0, 3.0));
        tp.push(MoveKind::Plunge, Point3::new(0.0, 0.0, 2.0));
        tp.push(MoveKind::Cut, Point3::new(10.0, 0.0, 2.0));
        tp.push(MoveKind::Cut, Point3::new(10.0, 1.5, -0.25));
        tp.push(MoveKind::Rapid, Point3::new(10.0, 1.5, 10.0));
        tp
    }

    /// `tp` as operation "Raster": T1, a 3 mm ball, default feeds, safe at 10 mm, no dwell,
    /// no arcs. Tests change what they need with `..raster(&tp)`.
    fn raster(tp: &Toolpath) -> Operation<'_> {
        Operation {
            name: "Raster",
            tool_number: 1,
            cutter: Cutter::Ball { diameter: 3.0 },
            feeds: Feeds::default(),
            safe_z: 10.0,
            spindle_dwell_s: 0.0,
            arcs: &[],
            toolpath: tp,
        }
    }

    fn program(d: &str) -> String {
        let tp = sample();
        let op = Operation {
            name: "Raster (finishing)",
            tool_number: 2,
            ..raster(&tp)
        };
        let mut out = Vec::new();
        write_program(&mut out, &post(d), "test", &[op]).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Roughing with T1 (flat 6), finishing twice with T2 (ball 3), then T1 again.
    fn three_tools(d: &str) -> String {
        let tp = sample();
        let op = |name, tool_number, cutter: &str| Operation {
            name,
            tool_number,
            cutter: cutter.parse().unwrap(),
            safe_z: 12.5,
            ..raster(&tp)
        };
        let ops = [
            op("Roughing", 1, "flat:6"),
            op("Waterline finishing", 2, "ball:3"),
            op("Raster finishing", 2, "ball:3"),
            op("Chamfer", 1, "flat:6"),
        ];
        let mut out = Vec::new();
        write_program(&mut out, &post(d), "test", &ops).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Lines of `g` from the one equal to `from` (inclusive) up to the next operation comment.
    fn operation_block<'a>(g: &'a str, name: &str) -> Vec<&'a str> {
        let head = format!("(Operation: {name})");
        g.lines()
            .skip_while(|l| *l != head)
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.starts_with("(Operation:"))
            .map(|(_, l)| l)
            .collect()
    }

    #[test]
    fn linuxcnc_changes_tools_with_m6_only_when_the_tool_changes() {
        let g = three_tools("linuxcnc");
        let changes: Vec<&str> = g.lines().filter(|l| l.ends_with(" M6")).collect();
        assert_eq!(changes, ["T1 M6", "T2 M6", "T1 M6"], "{g}");
        assert!(
            g.contains("(Change to tool 2: ball 3 mm)\nT2 M6\nG43 H2\n"),
            "{g}"
        );
        assert!(
            g.contains("(Change to tool 1: flat 6 mm)\nT1 M6\nG43 H1\n"),
            "{g}"
        );
        // The second ball operation goes on with the tool in the spindle.
        let raster = operation_block(&g, "Raster finishing");
        assert!(raster.iter().all(|l| !l.contains("M6")), "{raster:?}");
        assert!(raster.contains(&"S18000 M3"));
        // Every change happens at the safe height, after the lift.
        for block in ["Roughing", "Waterline finishing", "Chamfer"] {
            let b = operation_block(&g, block);
            let lift = b.iter().position(|l| *l == "G0 Z12.5").unwrap();
            let m6 = b.iter().position(|l| l.ends_with("M6")).unwrap();
            assert!(lift < m6, "{b:?}");
        }
    }

    #[test]
    fn grbl_stops_lifts_and_pauses_for_a_new_tool() {
        let g = three_tools("grbl");
        assert!(!g.contains("M6"), "GRBL rejects M6");
        assert!(
            g.contains("(Load tool 1 before starting: flat 6 mm)"),
            "{g}"
        );
        // Two swaps: to the ball nose, and back to the end mill. None for the second ball op.
        assert_eq!(g.lines().filter(|l| *l == "M0").count(), 2, "{g}");
        for (block, tool) in [
            ("Waterline finishing", "(Change to tool 2: ball 3 mm)"),
            ("Chamfer", "(Change to tool 1: flat 6 mm)"),
        ] {
            let b = operation_block(&g, block);
            let at = |s: &str| {
                b.iter()
                    .position(|l| *l == s)
                    .unwrap_or_else(|| panic!("no {s} in {b:?}"))
            };
            // Spindle off and lifted, the tool named, the pause, then the spindle back on
            // before any cutting.
            assert!(at("M5") < at("M0") && at("G0 Z12.5") < at("M0"), "{b:?}");
            assert!(at(tool) < at("M0"), "{b:?}");
            assert!(at("M0") < at("S18000 M3"), "{b:?}");
            let first_feed = b.iter().position(|l| l.starts_with("G1")).unwrap();
            assert!(at("S18000 M3") < first_feed, "{b:?}");
        }
        assert!(!operation_block(&g, "Raster finishing").contains(&"M0"));
        assert!(g.lines().all(|l| l.len() <= 70), "GRBL line too long");
    }

    /// After a tool change, the new tool (under its new length offset in LinuxCNC, after the
    /// operator set Z zero in GRBL) goes to safe Z before any move across the part.
    #[test]
    fn every_tool_change_lifts_to_safe_z_before_moving_across() {
        for d in ["linuxcnc", "grbl"] {
            let g = three_tools(d);
            let lines: Vec<&str> = g.lines().collect();
            let changes: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].ends_with("M6") || lines[i] == "M0")
                .collect();
            assert_eq!(changes.len(), if d == "linuxcnc" { 3 } else { 2 });
            for i in changes {
                let after = &lines[i + 1..];
                let across = after
                    .iter()
                    .position(|l| l.contains('X') || l.contains('Y'))
                    .unwrap();
                let lift = after.iter().position(|l| *l == "G0 Z12.5");
                assert!(
                    lift.is_some_and(|k| k < across),
                    "{d:?}: no lift to safe Z between the change at line {i} and {:?}:\n{g}",
                    after[across]
                );
            }
        }
    }

    #[test]
    fn the_spindle_can_get_time_to_reach_its_speed() {
        let tp = sample();
        let op = Operation {
            spindle_dwell_s: 2.5,
            ..raster(&tp)
        };
        let mut out = Vec::new();
        write_program(&mut out, &post("linuxcnc"), "t", &[op]).unwrap();
        let g = String::from_utf8(out).unwrap();
        assert!(g.contains("S18000 M3\nG4 P2.5\nG0 X0 Y0\n"), "{g}");
        let plain = program("grbl");
        assert!(
            !plain.lines().any(|l| l.starts_with("G4 ")),
            "no dwell unless asked for: {plain}"
        );
    }

    #[test]
    fn the_header_gives_the_estimated_time_per_operation_and_in_all() {
        let tp = sample();
        let op = |dwell| Operation {
            spindle_dwell_s: dwell,
            ..raster(&tp)
        };
        let machine = MachineProfile::default();
        let times = estimate_program(&[op(0.0), op(0.0)], &machine);
        // The second operation starts where the first ended: a lift (already at safe Z
        // there), a move back across and down to the start, which the first did not need.
        assert!(times[1].rapid_s > times[0].rapid_s + 0.2, "{times:?}");
        assert!(times[0].total_s > tp.stats(&Feeds::default()).machining_time_s);
        let with_dwell = estimate_program(&[op(2.5)], &machine);
        assert!((with_dwell[0].total_s - times[0].total_s - 2.5).abs() < 1e-9);
        // Each operation's comment has its own time, the header the sum.
        let mut out = Vec::new();
        write_program(&mut out, &post("grbl"), "t", &[op(0.0), op(0.0)]).unwrap();
        let g = String::from_utf8(out).unwrap();
        let total = format_duration(times[0].total_s + times[1].total_s);
        assert!(
            g.contains(&format!("(Estimated machining time {total}, ")),
            "{g}"
        );
        assert!(g.contains("(accelerations 500/500/200 mm/s2, junction deviation 0.01 mm)"));
        for t in &times {
            let about = format!(", about {:.1} min)", t.total_s / 60.0);
            assert!(g.contains(&about), "{about} in {g}");
        }
        assert!(g.lines().all(|l| l.len() <= 70), "GRBL line too long");
    }

    #[test]
    fn tools_are_described_in_ascii() {
        let d = |s: &str| describe_tool(&s.parse().unwrap());
        assert_eq!(d("flat:6"), "flat 6 mm");
        assert_eq!(d("ball:3"), "ball 3 mm");
        assert_eq!(d("bull:6:1"), "bull 6 mm R1");
        assert_eq!(d("vbit:6:60"), "V-bit 6 mm 60 deg");
        assert!(d("vbit:6.35:90").is_ascii());
    }

    #[test]
    fn linuxcnc_program_shape() {
        let g = program("linuxcnc");
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

    /// The writer's loop prints figures by hand from their quantum: exactly what the
    /// formatting function writes, for both units, around every rounding edge.
    #[test]
    fn figures_written_by_hand_are_the_formatted_ones() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut values = vec![
            0.0, -0.0, 0.00004, -0.00004, 0.00005, -0.00005, 1.0, -1.0, 25.4,
        ];
        for _ in 0..20_000 {
            let r = next();
            let magnitude = 10f64.powi((r % 9) as i32 - 4);
            let v = (next() as f64 / u64::MAX as f64 - 0.5) * 2.0 * magnitude;
            values.push(v);
            // Halfway cases of the 4th and 5th decimal.
            values.push((r % 100_000) as f64 * 1e-4 + 0.5e-4);
        }
        for units in ProgramUnits::ALL {
            for axes in 0..=6 {
                let f = Format {
                    units,
                    axes,
                    feed: axes,
                };
                for &v in &values {
                    let mut hand = Vec::new();
                    push_fixed(&mut hand, f.quantum(v).unwrap(), axes);
                    assert_eq!(
                        String::from_utf8(hand).unwrap(),
                        f.len(v),
                        "{v} in {units:?} to {axes} decimals"
                    );
                }
            }
        }
    }

    #[test]
    fn an_inch_program_writes_inches_and_inches_per_minute() {
        let tp = sample();
        let op = Operation {
            safe_z: 25.4,
            spindle_dwell_s: 1.5,
            ..raster(&tp)
        };
        let write = |units| {
            let mut out = Vec::new();
            let processor = post("linuxcnc");
            let post = Post {
                processor: &processor,
                units,
            };
            write_program_at(&mut out, post, "t", None, &MachineProfile::default(), &[op]).unwrap();
            String::from_utf8(out).unwrap()
        };
        let (mm, inch) = (
            write(ProgramUnits::Millimetres),
            write(ProgramUnits::Inches),
        );
        assert!(
            mm.contains("G21 G90") && mm.contains("G64 P0.005\n"),
            "{mm}"
        );
        assert!(inch.contains("G20 G90") && !inch.contains("G21"), "{inch}");
        // Blending 5 µm, safe Z 25.4 mm = 1 in, feed and plunge feed per minute in inches;
        // spindle speed and dwell are not lengths.
        assert!(inch.contains("G64 P0.0002\n"), "{inch}");
        assert!(inch.contains("G0 Z1\n"), "{inch}");
        let f = |v: f64| num_places(v / 25.4, 5);
        assert!(
            inch.contains(&format!(" F{}", f(Feeds::default().feed))),
            "{inch}"
        );
        let s = format!("S{} M3", num(Feeds::default().spindle_rpm));
        assert!(mm.contains(&s) && inch.contains(&s), "{inch}");
        assert!(inch.contains("G4 P1.5\n"), "{inch}");
        // Every coordinate is the mm one over 25.4, to 5 decimals.
        for (a, b) in mm
            .lines()
            .zip(inch.lines())
            .filter(|(a, _)| a.starts_with("X"))
        {
            let x = |l: &str| l[1..].split(' ').next().unwrap().parse::<f64>().unwrap();
            assert!((x(a) / 25.4 - x(b)).abs() <= 0.5e-5, "{a} / {b}");
        }
        assert_eq!(num_places(-0.000_004, 5), "0");
        assert_eq!(num_places(1.234_565_1, 5), "1.23457");
        assert_eq!(num_places(2.5, 5), "2.5");
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

    /// A raster-like toolpath with what tempts a writer to repeat itself: moves along one
    /// axis only, a plunge between cuts at the same feed, rapids between cuts, points that
    /// differ from the last below the output's resolution, values with trailing zeros.
    fn tempting() -> Toolpath {
        let mut tp = Toolpath::new(Point3::new(0.0, 0.0, 10.0));
        for j in 0..40 {
            let y = j as f64 * 0.25;
            tp.push(MoveKind::Rapid, Point3::new(0.0, y, 3.0));
            tp.push(MoveKind::Plunge, Point3::new(0.0, y, 1.5));
            for i in 1..=50 {
                let x = i as f64 * 0.5;
                // A flat stretch (Z unchanged), then a slope; one point a hair off the last.
                let z = if i < 20 {
                    1.5
                } else {
                    1.5 - (i - 20) as f64 * 0.1
                };
                tp.push(MoveKind::Cut, Point3::new(x, y, z));
                if i == 30 {
                    tp.push(MoveKind::Cut, Point3::new(x + 1e-9, y, z));
                }
            }
            tp.push(MoveKind::Rapid, Point3::new(25.0, y, 10.0));
        }
        tp
    }

    /// Every post writes a motion word only when it changes the machine's state (G0/G1, F,
    /// each axis, as the controller reads the figures back), and no figure with a trailing
    /// zero, a trailing point or a negative zero.
    #[test]
    fn motion_lines_never_repeat_a_modal_word() {
        let tp = tempting();
        let op = raster(&tp);
        // Every built-in post, in every unit it writes.
        for processor in PostProcessor::built_in() {
            let dialect = processor.key.clone();
            for units in processor.units.clone() {
                let mut out = Vec::new();
                let post = Post {
                    processor: &processor,
                    units,
                };
                write_program_at(&mut out, post, "t", None, &MachineProfile::default(), &[op])
                    .unwrap();
                let g = String::from_utf8(out).unwrap();
                // The toolpath's lines: after the header's move to its start (whose lifts
                // are deliberate: a new tool's offset moves Z at the same figure), up to the
                // final lift before the spindle stops.
                // Comments out, line numbers off.
                let lines: Vec<&str> = g
                    .lines()
                    .filter(|l| !l.starts_with(['(', ';']))
                    .map(|l| match l.strip_prefix('N') {
                        Some(rest) => rest.split_once(' ').map_or("", |(_, code)| code),
                        None => l,
                    })
                    .collect();
                let spindle = lines
                    .iter()
                    .position(|l| l.starts_with('S') || l.starts_with("M3 "))
                    .unwrap();
                let stop = lines.iter().position(|l| *l == "M5").unwrap();
                let mut state: std::collections::HashMap<char, String> = Default::default();
                for l in &lines[..=spindle + 1] {
                    for w in l.split(' ').filter(|w| "GXYZ".contains(&w[..1])) {
                        state.insert(w.chars().next().unwrap(), w[1..].to_string());
                    }
                }
                let mut motion_lines = 0;
                for line in &lines[spindle + 2..stop - 1] {
                    motion_lines += 1;
                    for w in line.split(' ') {
                        let (letter, value) = (w.chars().next().unwrap(), &w[1..]);
                        assert!("GXYZF".contains(letter), "{w} in \"{line}\"");
                        if letter != 'G' {
                            assert!(
                                !(value.contains('.')
                                    && (value.ends_with('0') || value.ends_with('.')))
                                    && value != "-0",
                                "{dialect:?} {units:?}: {w} in \"{line}\""
                            );
                        }
                        let old = state.insert(letter, value.to_string());
                        assert_ne!(
                            old.as_deref(),
                            Some(value),
                            "{dialect:?} {units:?}: {w} repeated in \"{line}\""
                        );
                    }
                }
                assert!(motion_lines > 1000, "{motion_lines} motion lines");
            }
        }
    }

    #[test]
    fn grbl_program_avoids_unsupported_words() {
        let g = program("grbl");
        assert!(!g.contains("M6"));
        assert!(!g.contains("G64"));
        assert!(!g.contains('%'));
        assert!(g.lines().all(|l| l.len() <= 70), "GRBL line too long");
    }

    /// Half a circle of 200 cut moves at Z -1, a straight run on, then a helical quarter
    /// down 0.5 mm: the arcs' moves and the straight ones, from a plunge at the start.
    fn round_trip_path() -> Toolpath {
        let mut tp = Toolpath::new(Point3::new(15.0, 10.0, 5.0));
        tp.push(MoveKind::Plunge, Point3::new(15.0, 10.0, -1.0));
        let c = (10.0, 10.0);
        for k in 1..=200 {
            let t = std::f64::consts::PI * k as f64 / 200.0;
            tp.push(
                MoveKind::Cut,
                Point3::new(c.0 + 5.0 * t.cos(), c.1 + 5.0 * t.sin(), -1.0),
            );
        }
        for k in 1..=5 {
            tp.push(MoveKind::Cut, Point3::new(5.0, 10.0 - k as f64, -1.0));
        }
        // A clockwise helical quarter about (10, 5), from (5, 5).
        for k in 1..=100 {
            let t = std::f64::consts::PI - std::f64::consts::FRAC_PI_2 * k as f64 / 100.0;
            tp.push(
                MoveKind::Cut,
                Point3::new(
                    10.0 + 5.0 * t.cos(),
                    5.0 + 5.0 * t.sin(),
                    -1.0 - 0.005 * k as f64,
                ),
            );
        }
        tp.push(MoveKind::Rapid, Point3::new(10.0, 10.0, 5.0));
        tp
    }

    /// Writes `tp` with its arcs fitted (no model to check them against) in `post`.
    fn with_arcs(post: &PostProcessor, tp: &Toolpath) -> String {
        // A post without arcs is given arcs fitted as for I J: it must write lines anyway.
        let style = if post.arcs == ArcStyle::None {
            ArcStyle::Ijk
        } else {
            post.arcs
        };
        let tol = crate::arcs::DEFAULT_ARC_TOLERANCE;
        let arcs = crate::arcs::fit_toolpath(tp, tol, style.max_sweep());
        let op = Operation {
            name: "Contour",
            safe_z: 5.0,
            arcs: &arcs,
            ..raster(tp)
        };
        let mut out = Vec::new();
        write_program_at(
            &mut out,
            Post::new(post),
            "t",
            None,
            &MachineProfile::default(),
            &[op],
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Moves written in blocks side by side give the bytes one pass gives, whatever the
    /// block size: each block starts from the modal state, position and line number the
    /// lines before it leave. On every built-in post (line numbers, arcs I J and R, none),
    /// over arcs, rapids, feeds that change and moves too short to write.
    #[test]
    fn moves_written_in_blocks_are_the_moves_written_in_one_pass() {
        let mut tp = round_trip_path();
        let one = tp.clone();
        for k in 0..3 {
            let lift = Point3::new(15.0, 10.0 + k as f64, 5.0);
            tp.push(MoveKind::Rapid, lift);
            // Too short to show at any post's precision: no line.
            tp.push(MoveKind::Rapid, Point3::new(lift.x, lift.y, lift.z + 1e-9));
            for m in &one.moves {
                tp.push(m.kind, m.to + Point3::new(0.0, k as f64, 0.0));
            }
        }
        for key in ["linuxcnc", "grbl", "mach3", "uccnc", "marlin", "fanuc"] {
            let post = post(key);
            let style = if post.arcs == ArcStyle::None {
                ArcStyle::Ijk
            } else {
                post.arcs
            };
            let tol = crate::arcs::DEFAULT_ARC_TOLERANCE;
            let arcs = crate::arcs::fit_toolpath(&tp, tol, style.max_sweep());
            assert!(arcs.len() >= 6, "{key}: arcs to carry across blocks");
            let op = Operation {
                name: "Contour",
                feeds: Feeds {
                    plunge_feed: 250.0,
                    ..Feeds::default()
                },
                safe_z: 5.0,
                arcs: &arcs,
                ..raster(&tp)
            };
            // Two threads, so that blocks are formatted side by side on any machine.
            let threads = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let written_at = |op: &Operation<'_>, zero: Point3, block: usize| {
                let mut lines = Lines::new(Post::new(&post));
                let mut out = Vec::new();
                threads
                    .install(|| write_moves_in(&mut out, &mut lines, op, zero, block))
                    .unwrap();
                lines.code("M2").unwrap();
                lines.flush(&mut out).unwrap();
                String::from_utf8(out).unwrap()
            };
            let origin = Point3::new(0.0, 0.0, 0.0);
            let written = |block: usize| written_at(&op, origin, block);
            let whole = written(usize::MAX);
            assert!(whole.lines().count() > 30, "{key}: {whole}");
            for block in [1, 2, 7, 64] {
                assert_eq!(written(block), whole, "{key}, blocks of {block} moves");
            }
            // Measured from a zero as it is written: the same text as the toolpath and its
            // arcs moved there first (what the writer once did, with a copy).
            let zero = Point3::new(12.345_67, -3.25, 7.5);
            let moved = tp.translated(zero);
            let moved_arcs: Vec<ArcSpan> = arcs
                .iter()
                .map(|a| {
                    let mut a = *a;
                    a.arc.centre = [a.arc.centre[0] - zero.x, a.arc.centre[1] - zero.y];
                    a
                })
                .collect();
            let at_zero = Operation {
                arcs: &moved_arcs,
                toolpath: &moved,
                ..op
            };
            let want = written_at(&at_zero, origin, usize::MAX);
            assert_ne!(want, whole, "{key}: the zero moves the figures");
            for block in [2, 64, usize::MAX] {
                assert_eq!(written_at(&op, zero, block), want, "{key}: from a zero");
            }
        }
    }

    #[test]
    fn arcs_replace_their_moves_and_read_back_through_every_point() {
        let tp = round_trip_path();
        let ijk = post("linuxcnc");
        let mut r = post("linuxcnc");
        r.arcs = ArcStyle::R;
        let mut lines_only = post("linuxcnc");
        lines_only.arcs = ArcStyle::None;
        for (p, arcs) in [(&ijk, 2), (&r, 3), (&lines_only, 0)] {
            let g = with_arcs(p, &tp);
            let arc_lines: Vec<&str> = g
                .lines()
                .filter(|l| {
                    l.starts_with("G2 ")
                        || l.starts_with("G3 ")
                        || l.contains(" I")
                        || l.contains(" R")
                })
                .collect();
            // The half circle counter-clockwise (G3) in one arc, or two within 120 degrees
            // for R; the helix clockwise (G2) with its Z.
            assert_eq!(arc_lines.len(), arcs, "{:?}: {arc_lines:?}", p.arcs);
            if arcs > 0 {
                assert!(arc_lines[0].starts_with("G3"), "{arc_lines:?}");
                let last = arc_lines[arcs - 1];
                assert!(last.starts_with("G2") && last.contains(" Z-1.5 "), "{last}");
                let centre_words = if p.arcs == ArcStyle::R { " R5" } else { " I" };
                assert!(
                    arc_lines.iter().all(|l| l.contains(centre_words)),
                    "{arc_lines:?}"
                );
            } else {
                let motion = g
                    .lines()
                    .filter(|l| l.starts_with(['X', 'Y', 'Z', 'G']))
                    .count();
                assert!(motion > 300, "{motion} lines");
            }
            // Read back as the controller would run it: every computed point within the
            // tolerance (and the output's rounding) of the path read, which ends where the
            // toolpath ends.
            let read = crate::gcode_read::read_program(&g, "t.ngc", &Default::default()).unwrap();
            let path: Vec<Point3> = read
                .runs
                .iter()
                .flat_map(|r| r.moves.iter().map(|m| m.to))
                .collect();
            let worst = tp
                .moves
                .iter()
                .map(|m| {
                    path.windows(2)
                        .map(|w| distance_to_segment(m.to, w[0], w[1]))
                        .fold(f64::INFINITY, f64::min)
                })
                .fold(0.0, f64::max);
            assert!(
                worst < 1.1e-3,
                "{:?}: a point {worst} mm off the path",
                p.arcs
            );
            assert!((*path.last().unwrap() - tp.end()).length() < 1e-4);
        }
    }

    fn distance_to_segment(p: Point3, a: Point3, b: Point3) -> f64 {
        let ab = b - a;
        let t = if ab.length() > 0.0 {
            ((p - a).dot(ab) / ab.dot(ab)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (p - (a + ab * t)).length()
    }

    /// A post without a tool changer (Marlin's): the first tool is named for the operator,
    /// every later change stops the spindle, says which tool to fit and pauses (M0), then
    /// lifts before moving; no T word (Marlin's T selects an extruder), `;` comments.
    #[test]
    fn a_post_without_tool_changes_pauses_for_the_operator() {
        let g = three_tools("marlin");
        let lines: Vec<&str> = g.lines().collect();
        let mut code = lines.iter().filter(|l| !l.starts_with(';'));
        assert!(
            code.all(|l| !l.contains(['(', 'T']) && !l.contains("M6")),
            "{g}"
        );
        assert!(
            lines.contains(&"; Load tool 1 before starting: flat 6 mm"),
            "{g}"
        );
        let pauses: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == "M0").collect();
        assert_eq!(pauses.len(), 2, "two changes after the first tool: {g}");
        for i in pauses {
            assert_eq!(
                lines[i - 3],
                "M5",
                "the spindle stops first: {:?}",
                &lines[i - 3..i]
            );
            assert!(
                lines[i - 2].starts_with("; Change to tool "),
                "{}",
                lines[i - 2]
            );
            assert!(lines[i + 1].starts_with("G0 Z"), "a lift before moving on");
            assert!(lines[i + 2].starts_with("M3 S"), "the spindle starts again");
        }
    }
}
