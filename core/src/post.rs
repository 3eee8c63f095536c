//! Post-processors as data: how a program is written for one controller, read from a small
//! TOML file.
//!
//! Controllers agree on `G0`/`G1` and little else: LinuxCNC wants `%` around the program and
//! changes tools with `M6`; GRBL rejects `M6` and keeps lines under 80 characters; Marlin
//! comments with `;` and writes millimetres only; a Fanuc control wants an `O` number and `N`
//! line numbers. PyCAM wrote one dialect in code; each new controller meant a release. Here a
//! post is a file a machinist can copy and edit ([`PostProcessor`]), six are built in (the
//! `core/posts/` folder, compiled into the binary), and users add their own in the config
//! folder's `posts/` ([`PostLibrary::load`]).
//!
//! What a post may *not* change is what keeps the machine safe: the lift to safe Z before a
//! tool change and again after it, the spindle start before the first move, the modal motion
//! lines and their figures. Those the writer ([`crate::gcode`]) writes itself; a post only says
//! how each is spelled.
//!
//! A post with a mistake is refused whole, with the file, line and key
//! ([`PostError::Invalid`]); nothing is guessed.

use crate::gcode::ProgramUnits;
use crate::job_file::{self, JobFileError, Words};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Largest post file read: a post is a page of text; anything larger is a mistake.
pub const MAX_POST_FILE_BYTES: u64 = 64 << 10;

/// The posts built into every Millpond: their keys (what `--post` and job files name) and
/// their text.
const BUILT_IN: [(&str, &str); 6] = [
    ("linuxcnc", include_str!("../posts/linuxcnc.toml")),
    ("grbl", include_str!("../posts/grbl.toml")),
    ("mach3", include_str!("../posts/mach3.toml")),
    ("uccnc", include_str!("../posts/uccnc.toml")),
    ("marlin", include_str!("../posts/marlin.toml")),
    ("fanuc", include_str!("../posts/fanuc.toml")),
];

/// The post a job gets unless it names one.
pub const DEFAULT_POST: &str = "linuxcnc";

/// Why a post cannot be used.
#[derive(Debug, Error)]
pub enum PostError {
    /// The file cannot be read, or it is not a valid post: file, line and key where known.
    #[error(transparent)]
    Invalid(#[from] JobFileError),
    /// The user's post of that name has a mistake (the file, line and key).
    #[error("{0}")]
    Broken(String),
    /// No post of that name.
    #[error(
        "unknown post \"{name}\": the posts are {known} (or give the path of a post file, .toml)"
    )]
    Unknown { name: String, known: String },
    /// The post cannot write what the program needs ("Marlin writes millimetres only").
    #[error("the {post} post {message}")]
    Cannot { post: String, message: String },
}

/// Where a post came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostSource {
    BuiltIn,
    File(PathBuf),
}

/// How comments are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommentStyle {
    /// `(text)`: rs274ngc, GRBL, Mach, UCCNC, Fanuc.
    Parentheses,
    /// `; text`: Marlin and other printer firmware.
    Semicolon,
    /// No comments at all (controllers that choke on them).
    None,
}

/// How arcs are written, if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArcStyle {
    /// Straight moves only: arcs are written as the lines they were fitted to.
    None,
    /// `G2`/`G3` with the centre as `I J` offsets from the start (incremental, G91.1).
    Ijk,
    /// `G2`/`G3` with the radius `R` (ambiguous near half a circle: arcs are kept shorter).
    R,
}

impl ArcStyle {
    /// The largest angle one arc may sweep, radians: half a circle with the centre given;
    /// with only the radius, whose centre is ill defined near half a circle, a third of one;
    /// 0 for a post without arcs.
    pub fn max_sweep(self) -> f64 {
        match self {
            ArcStyle::None => 0.0,
            ArcStyle::Ijk => std::f64::consts::PI,
            ArcStyle::R => std::f64::consts::TAU / 3.0,
        }
    }
}

/// The program's lines numbered `N…` (Fanuc-style controls), wrapping past `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineNumbers {
    #[serde(default = "ten", deserialize_with = "positive")]
    pub start: u64,
    #[serde(default = "ten", deserialize_with = "positive")]
    pub step: u64,
    /// The largest number the control takes; numbering starts again at `start` past it.
    #[serde(default = "n_max", deserialize_with = "positive")]
    pub max: u64,
}

fn ten() -> u64 {
    10
}
fn n_max() -> u64 {
    99_999
}

/// Decimals written in one unit system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Places {
    /// X, Y, Z and arc centres.
    #[serde(deserialize_with = "decimals")]
    pub axes: u32,
    #[serde(deserialize_with = "decimals")]
    pub feed: u32,
}

/// Decimals per unit system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decimals {
    #[serde(default = "places_mm")]
    pub mm: Places,
    #[serde(default = "places_inch")]
    pub inch: Places,
}

fn places_mm() -> Places {
    Places { axes: 4, feed: 4 }
}
fn places_inch() -> Places {
    Places { axes: 5, feed: 5 }
}

impl Default for Decimals {
    fn default() -> Self {
        Self {
            mm: places_mm(),
            inch: places_inch(),
        }
    }
}

/// Coolant, switched on with the spindle and off before it stops.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coolant {
    /// Which coolant the program turns on: `off`, `flood` or `mist`.
    #[serde(default)]
    pub mode: CoolantMode,
    #[serde(default = "m8")]
    pub flood: Template,
    #[serde(default = "m7")]
    pub mist: Template,
    #[serde(default = "m9")]
    pub off: Template,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoolantMode {
    #[default]
    Off,
    Flood,
    Mist,
}

fn m8() -> Template {
    Template::literal("M8")
}
fn m7() -> Template {
    Template::literal("M7")
}
fn m9() -> Template {
    Template::literal("M9")
}
fn m5() -> Template {
    Template::literal("M5")
}
fn m0() -> Template {
    Template::literal("M0")
}

impl Default for Coolant {
    fn default() -> Self {
        Self {
            mode: CoolantMode::Off,
            flood: m8(),
            mist: m7(),
            off: m9(),
        }
    }
}

/// The lines that change the tool.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolChangeLines {
    /// For the program's first tool [default: `change`].
    #[serde(default)]
    pub first: Option<Vec<Template>>,
    /// For every later change.
    pub change: Vec<Template>,
}

/// A post-processor: everything about a program that differs between controllers. Read with
/// [`PostProcessor::parse`]; the built-in ones with [`PostProcessor::built_in`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostProcessor {
    /// What the post is called where it is listed ("LinuxCNC").
    pub name: String,
    /// One line on what it is for.
    #[serde(default)]
    pub description: String,
    /// The file name extension of its programs, without the dot.
    #[serde(deserialize_with = "extension")]
    pub extension: String,
    /// The units it can write, the first the default.
    #[serde(default = "both_units", deserialize_with = "units_list")]
    pub units: Vec<ProgramUnits>,
    #[serde(default)]
    pub decimals: Decimals,
    #[serde(default)]
    pub line_numbers: Option<LineNumbers>,
    /// The `{program_number}` of `start`.
    #[serde(default = "one")]
    pub program_number: u32,
    pub comments: CommentStyle,
    /// Longest line the controller takes, comments not counted (GRBL drops them as they
    /// arrive); a line that would be longer is an error, never cut.
    #[serde(default = "line_max", deserialize_with = "line_length")]
    pub max_line_length: usize,
    pub arcs: ArcStyle,
    /// Lines before anything else (`%`, `O1000`); placeholders `{title}`, `{program_number}`.
    #[serde(default)]
    pub start: Vec<Template>,
    /// The modal setup after the header comments; placeholders `{units}` (`G21` or `G20`)
    /// and `{tolerance}` (`path_tolerance` in the program's units).
    pub setup: Vec<Template>,
    /// Path blending tolerance in mm, for `{tolerance}` (LinuxCNC's `G64 P`).
    #[serde(default = "blend", deserialize_with = "tolerance")]
    pub path_tolerance: f64,
    /// Without it the post cannot change tools: the program stops the spindle and pauses for
    /// the operator (`spindle_stop`, `pause`), as GRBL users do by hand. Placeholders `{tool}`
    /// and `{tool_name}`.
    #[serde(default)]
    pub tool_change: Option<ToolChangeLines>,
    /// Placeholder `{rpm}`.
    pub spindle_start: Template,
    #[serde(default = "m5")]
    pub spindle_stop: Template,
    /// Waiting for the spindle to reach its speed; placeholders `{seconds}` and
    /// `{milliseconds}` (controllers differ on `G4 P`'s unit).
    pub dwell: Template,
    /// The operator's stop (`M0`).
    #[serde(default = "m0")]
    pub pause: Template,
    #[serde(default)]
    pub coolant: Coolant,
    /// The program's end after the spindle (and coolant) stop (`M2`, `M30`, `%`);
    /// placeholders `{title}`, `{program_number}`.
    pub end: Vec<Template>,
    /// Where it came from (not in the file).
    #[serde(skip, default = "built_in_source")]
    pub source: PostSource,
    /// How it is named: the file's stem, lower case (not in the file).
    #[serde(skip)]
    pub key: String,
}

fn both_units() -> Vec<ProgramUnits> {
    vec![ProgramUnits::Millimetres, ProgramUnits::Inches]
}
fn one() -> u32 {
    1
}
fn line_max() -> usize {
    256
}
fn blend() -> f64 {
    0.005
}
fn built_in_source() -> PostSource {
    PostSource::BuiltIn
}

// --- Checked fields: a bad value is a serde error, which the file's reader places at its
// line and key.

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v == 0 || v > 1_000_000_000 {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range (1 to 1000000000)"
        )));
    }
    Ok(v)
}

fn decimals<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v > 6 {
        return Err(serde::de::Error::custom(format!(
            "{v} decimals is more than the 6 written (a tenth of a micron in mm needs 4)"
        )));
    }
    Ok(v)
}

fn line_length<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = usize::deserialize(d)?;
    if !(40..=100_000).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range (40 to 100000): a motion line needs up to about 40 characters"
        )));
    }
    Ok(v)
}

fn tolerance<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
        return Err(serde::de::Error::custom(format!(
            "{v} mm is out of range (0 to 1 mm)"
        )));
    }
    Ok(v)
}

fn extension<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    if v.is_empty() || v.len() > 8 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(serde::de::Error::custom(format!(
            "\"{v}\" is not a file extension (1 to 8 letters or digits, no dot)"
        )));
    }
    Ok(v)
}

fn units_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ProgramUnits>, D::Error> {
    let words = Vec::<String>::deserialize(d)?;
    let mut out = Vec::new();
    for w in &words {
        let u = match w.as_str() {
            "mm" => ProgramUnits::Millimetres,
            "inch" => ProgramUnits::Inches,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "\"{w}\" is not \"mm\" or \"inch\""
                )));
            }
        };
        if out.contains(&u) {
            return Err(serde::de::Error::custom(format!("\"{w}\" is listed twice")));
        }
        out.push(u);
    }
    if out.is_empty() {
        return Err(serde::de::Error::custom(
            "a post writes at least one of \"mm\" and \"inch\"",
        ));
    }
    Ok(out)
}

/// A value a template line refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    Title,
    ProgramNumber,
    Units,
    Tolerance,
    Tool,
    ToolName,
    Rpm,
    Seconds,
    Milliseconds,
}

impl Placeholder {
    const NAMES: Words<Placeholder> = Words(&[
        ("title", Placeholder::Title),
        ("program_number", Placeholder::ProgramNumber),
        ("units", Placeholder::Units),
        ("tolerance", Placeholder::Tolerance),
        ("tool", Placeholder::Tool),
        ("tool_name", Placeholder::ToolName),
        ("rpm", Placeholder::Rpm),
        ("seconds", Placeholder::Seconds),
        ("milliseconds", Placeholder::Milliseconds),
    ]);

    fn name(self) -> &'static str {
        Self::NAMES.word(self)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

/// One line of a post with `{placeholders}`. A line that is wholly a comment, `(like this)`,
/// is written in the post's comment style (or left out where it has none).
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    comment: bool,
}

impl Template {
    fn literal(s: &str) -> Self {
        Self::parse(s).expect("a literal template")
    }

    /// Parses `{name}` placeholders; a brace without its pair or an unknown name is an error.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.contains(['\n', '\r']) {
            return Err("a template is one line: no line breaks".into());
        }
        if !s.is_ascii() {
            return Err("a template is ASCII only (controllers differ on anything else)".into());
        }
        let t = s.trim();
        let comment = t.starts_with('(') && t.ends_with(')') && t.matches('(').count() == 1;
        let body = if comment { &t[1..t.len() - 1] } else { s };
        let mut parts = Vec::new();
        let mut rest = body;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("\"}}\" without its \"{{\" in \"{s}\""));
            }
            let close = rest[open..]
                .find('}')
                .map(|k| open + k)
                .ok_or_else(|| format!("\"{{\" without its \"}}\" in \"{s}\""))?;
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let name = &rest[open + 1..close];
            let p = Placeholder::NAMES.get(name).ok_or_else(|| {
                let all: Vec<String> = Placeholder::NAMES
                    .words()
                    .map(|n| format!("{{{n}}}"))
                    .collect();
                format!(
                    "unknown placeholder {{{name}}}: the placeholders are {}",
                    all.join(", ")
                )
            })?;
            parts.push(Part::Value(p));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { parts, comment })
    }

    /// True for a line that is wholly a comment.
    pub fn is_comment(&self) -> bool {
        self.comment
    }

    fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(v) => Some(*v),
            Part::Text(_) => None,
        })
    }

    /// The line with each placeholder replaced by `value(p)`; text from outside (a title, a
    /// tool's name) loses parentheses and anything not printable ASCII, so it can close no
    /// comment and confuse no controller.
    pub fn fill(&self, value: impl Fn(Placeholder) -> String) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => s.push_str(t),
                Part::Value(v) => s.push_str(&clean_text(&value(*v))),
            }
        }
        s
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Template::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Text safe inside a comment or a line: printable ASCII, no parentheses or semicolons.
pub fn clean_text(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '(' | ')' => None,
            ';' => Some(','),
            c if c.is_ascii_graphic() || c == ' ' => Some(c),
            _ => Some('?'),
        })
        .collect()
}

impl PostProcessor {
    /// Reads a post from its text; `file` names it in errors, `key` is how it is named.
    pub fn parse(text: &str, file: &str, key: &str, source: PostSource) -> Result<Self, PostError> {
        let mut post: PostProcessor = job_file::from_toml(text, file)?;
        post.key = key.to_ascii_lowercase();
        post.source = source;
        post.check_placeholders(text, file)?;
        if post.name.trim().is_empty() {
            return Err(invalid(text, file, &["name"], "a post needs a name".into()).into());
        }
        Ok(post)
    }

    /// Reads a post file (at most [`MAX_POST_FILE_BYTES`]); its key is the file's stem.
    pub fn load(path: &Path) -> Result<Self, PostError> {
        let text = job_file::read_text(path, MAX_POST_FILE_BYTES, "post")?;
        let key = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::parse(
            &text,
            &path.display().to_string(),
            &key,
            PostSource::File(path.to_path_buf()),
        )
    }

    /// The built-in posts, in the order they are listed.
    pub fn built_in() -> Vec<PostProcessor> {
        BUILT_IN
            .iter()
            .map(|(key, text)| {
                Self::parse(
                    text,
                    &format!("{key}.toml (built in)"),
                    key,
                    PostSource::BuiltIn,
                )
                .unwrap_or_else(|e| panic!("built-in post {key}: {e}"))
            })
            .collect()
    }

    /// The built-in post named `key` (for callers that need no user posts: tests, defaults).
    pub fn built_in_named(key: &str) -> Option<PostProcessor> {
        Self::built_in().into_iter().find(|p| p.key == key)
    }

    /// The default post, LinuxCNC.
    pub fn default_post() -> PostProcessor {
        Self::built_in_named(DEFAULT_POST).expect("the default post is built in")
    }

    /// How lists show it: its name, and for a user's post its file, so a copy of a built-in
    /// post is told from the original.
    pub fn label(&self) -> String {
        match &self.source {
            PostSource::BuiltIn => self.name.clone(),
            PostSource::File(path) => format!(
                "{} ({})",
                self.name,
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
        }
    }

    /// The units a program gets with this post unless the job says otherwise.
    pub fn default_units(&self) -> ProgramUnits {
        self.units[0]
    }

    /// Whether it can write programs in `units`: an error naming the post if not.
    pub fn check_units(&self, units: ProgramUnits) -> Result<(), PostError> {
        if self.units.contains(&units) {
            return Ok(());
        }
        let can: Vec<&str> = self.units.iter().map(|u| u.word()).collect();
        Err(PostError::Cannot {
            post: self.name.clone(),
            message: format!(
                "cannot write {} programs: it writes {} only",
                units.word(),
                can.join(" and ")
            ),
        })
    }

    /// Decimals for axes and feeds in `units`.
    pub fn places(&self, units: ProgramUnits) -> Places {
        match units {
            ProgramUnits::Millimetres => self.decimals.mm,
            ProgramUnits::Inches => self.decimals.inch,
        }
    }

    /// Every template may use only the placeholders that have a value where it is written.
    fn check_placeholders(&self, text: &str, file: &str) -> Result<(), PostError> {
        use Placeholder::*;
        let header: &[Placeholder] = &[Title, ProgramNumber];
        let mut fields: Vec<TemplateUse<'_>> = Vec::new();
        for (k, t) in self.start.iter().enumerate() {
            fields.push((vec!["start"], Some(k), t, header));
        }
        for (k, t) in self.end.iter().enumerate() {
            fields.push((vec!["end"], Some(k), t, header));
        }
        for (k, t) in self.setup.iter().enumerate() {
            fields.push((vec!["setup"], Some(k), t, &[Units, Tolerance]));
        }
        if let Some(tc) = &self.tool_change {
            for (k, t) in tc.change.iter().enumerate() {
                fields.push((vec!["tool_change", "change"], Some(k), t, &[Tool, ToolName]));
            }
            for (k, t) in tc.first.iter().flatten().enumerate() {
                fields.push((vec!["tool_change", "first"], Some(k), t, &[Tool, ToolName]));
            }
        }
        fields.push((vec!["spindle_start"], None, &self.spindle_start, &[Rpm]));
        fields.push((vec!["dwell"], None, &self.dwell, &[Seconds, Milliseconds]));
        fields.push((vec!["spindle_stop"], None, &self.spindle_stop, &[]));
        fields.push((vec!["pause"], None, &self.pause, &[]));
        for (name, t) in [
            ("flood", &self.coolant.flood),
            ("mist", &self.coolant.mist),
            ("off", &self.coolant.off),
        ] {
            fields.push((vec!["coolant", name], None, t, &[]));
        }
        for (path, index, t, allowed) in fields {
            if let Some(p) = t.placeholders().find(|p| !allowed.contains(p)) {
                let here = if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed
                        .iter()
                        .map(|a| format!("{{{}}}", a.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut at: Vec<job_file::Key> =
                    path.iter().map(|n| job_file::Key::Name(n)).collect();
                if let Some(i) = index {
                    at.push(job_file::Key::Index(i));
                }
                return Err(job_file::invalid_at(
                    text,
                    file,
                    &at,
                    format!(
                        "{{{}}} has no value here: the placeholders here are {here}",
                        p.name()
                    ),
                )
                .into());
            }
        }
        if self.dwell.is_comment() || self.spindle_start.is_comment() {
            let key = if self.dwell.is_comment() {
                "dwell"
            } else {
                "spindle_start"
            };
            return Err(invalid(
                text,
                file,
                &[key],
                "must be a command, not a comment".into(),
            )
            .into());
        }
        Ok(())
    }
}

/// Where a template is used: its key path, its index in a list, the placeholders with a
/// value there.
type TemplateUse<'a> = (
    Vec<&'static str>,
    Option<usize>,
    &'a Template,
    &'static [Placeholder],
);

impl fmt::Display for PostProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

fn invalid(text: &str, file: &str, path: &[&'static str], message: String) -> JobFileError {
    let at: Vec<job_file::Key> = path.iter().map(|n| job_file::Key::Name(n)).collect();
    job_file::invalid_at(text, file, &at, message)
}

/// The posts a user can choose: the built-in ones, then those in a folder (the config
/// folder's `posts/`), a user's post replacing a built-in one of the same key.
#[derive(Clone, Debug, Default)]
pub struct PostLibrary {
    pub posts: Vec<PostProcessor>,
    /// Files in the folder that are not valid posts, each with its error: listed for the
    /// user, never used (asking for one gives its error).
    pub broken: Vec<BrokenPost>,
}

/// A post file that cannot be used.
#[derive(Clone, Debug)]
pub struct BrokenPost {
    /// Its file's stem, lower case: the name it would have.
    pub key: String,
    /// Why not: the file, line and key of the mistake.
    pub error: String,
}

impl fmt::Display for BrokenPost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)
    }
}

/// Most post files read from one folder.
const MAX_USER_POSTS: usize = 256;

impl PostLibrary {
    /// The built-in posts and the `.toml` files in `dir` (none if it does not exist).
    pub fn load(dir: Option<&Path>) -> Self {
        let mut lib = Self {
            posts: PostProcessor::built_in(),
            broken: Vec::new(),
        };
        let Some(dir) = dir else { return lib };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return lib;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
            })
            .collect();
        files.sort();
        if files.len() > MAX_USER_POSTS {
            lib.broken.push(BrokenPost {
                key: String::new(),
                error: format!(
                    "{}: {} post files, only the first {MAX_USER_POSTS} are read",
                    dir.display(),
                    files.len()
                ),
            });
            files.truncate(MAX_USER_POSTS);
        }
        for path in files {
            match PostProcessor::load(&path) {
                Ok(post) => match lib.posts.iter_mut().find(|p| p.key == post.key) {
                    Some(same) => *same = post,
                    None => lib.posts.push(post),
                },
                Err(e) => lib.broken.push(BrokenPost {
                    key: path
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_ascii_lowercase())
                        .unwrap_or_default(),
                    error: e.to_string(),
                }),
            }
        }
        lib
    }

    /// The post `output` names, if it can write the program's units.
    pub fn for_output(&self, output: &crate::job_file::Output) -> Result<PostProcessor, PostError> {
        let post = self.find(&output.post)?;
        post.check_units(output.units)?;
        Ok(post)
    }

    /// The post `name_or_file` names: a key (`linuxcnc`, case-insensitive), or the path of
    /// a post file (anything with a `/` or ending in `.toml`).
    pub fn find(&self, name_or_file: &str) -> Result<PostProcessor, PostError> {
        let looks_like_file = name_or_file.contains(['/', '\\'])
            || name_or_file.to_ascii_lowercase().ends_with(".toml");
        if looks_like_file {
            return PostProcessor::load(Path::new(name_or_file));
        }
        let key = name_or_file.to_ascii_lowercase();
        if let Some(b) = self.broken.iter().find(|b| b.key == key) {
            return Err(PostError::Broken(b.error.clone()));
        }
        self.posts
            .iter()
            .find(|p| p.key == key)
            .cloned()
            .ok_or_else(|| PostError::Unknown {
                name: name_or_file.to_string(),
                known: self
                    .posts
                    .iter()
                    .map(|p| p.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(line: &str, replaced_by: &str) -> String {
        let text = BUILT_IN[0].1;
        assert!(text.contains(line), "{line} not in linuxcnc.toml");
        text.replacen(line, replaced_by, 1)
    }

    fn parse(text: &str) -> Result<PostProcessor, String> {
        PostProcessor::parse(text, "my.toml", "my", PostSource::BuiltIn).map_err(|e| e.to_string())
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn every_built_in_post_reads() {
        let posts = PostProcessor::built_in();
        let keys: Vec<&str> = posts.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["linuxcnc", "grbl", "mach3", "uccnc", "marlin", "fanuc"]
        );
        assert!(
            posts
                .iter()
                .all(|p| !p.name.is_empty() && !p.description.is_empty())
        );
    }

    #[test]
    fn a_mistake_names_the_file_the_line_and_the_key() {
        // A misspelt key, and a value out of range: the error starts with file, line and key.
        for (line, by, key, says) in [
            (
                "extension = \"ngc\"",
                "extention = \"ngc\"",
                "extention",
                "unknown field",
            ),
            (
                "max_line_length = 255",
                "max_line_length = 12",
                "max_line_length",
                "40 to 100000",
            ),
        ] {
            let text = with(line, by);
            let e = parse(&text).unwrap_err();
            let named = format!("my.toml, line {}, {key}:", line_of(&text, key));
            assert!(e.starts_with(&named) && e.contains(says), "{e}");
        }
        // An unknown placeholder, and one with no value where it is used: the error names
        // the line (and, for the second, the key) where `needle` stands.
        let no_tool = "{tool} has no value here: the placeholders here are {rpm}";
        for (by, needle, key, says) in [
            ("S{speed} M3", "{speed}", "", "unknown placeholder {speed}"),
            ("S{tool} M3", "S{tool}", ", spindle_start:", no_tool),
        ] {
            let text = with("S{rpm} M3", by);
            let e = parse(&text).unwrap_err();
            let named = format!("line {}{key}", line_of(&text, needle));
            assert!(e.contains(&named) && e.contains(says), "{e}");
        }
        // In a list: the line of the list, the index in the key.
        let text = with("\"G43 H{tool}\"", "\"G43 H{rpm}\"");
        let e = parse(&text).unwrap_err();
        assert!(
            e.contains("tool_change.change[2]") && e.contains("{rpm} has no value"),
            "{e}"
        );
        // Not TOML at all.
        let e = parse("name = \"x\"\nextension = \n").unwrap_err();
        assert!(e.starts_with("my.toml, line 2"), "{e}");
        // Units.
        let text = with(
            "units = [\"mm\", \"inch\"]",
            "units = [\"mm\", \"furlong\"]",
        );
        let e = parse(&text).unwrap_err();
        assert!(
            e.contains("units:") && e.contains("\"furlong\" is not"),
            "{e}"
        );
    }

    #[test]
    fn user_posts_join_the_built_in_ones_and_broken_ones_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let mine = with("name = \"LinuxCNC\"", "name = \"My mill\"");
        std::fs::write(dir.path().join("mymill.toml"), &mine).unwrap();
        std::fs::write(dir.path().join("broken.toml"), "name = 3\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a post").unwrap();
        let lib = PostLibrary::load(Some(dir.path()));
        assert_eq!(lib.posts.len(), 7);
        assert_eq!(lib.find("MyMill").unwrap().name, "My mill");
        assert_eq!(lib.broken.len(), 1);
        assert!(
            lib.broken[0].error.contains("broken.toml, line 1, name:"),
            "{:?}",
            lib.broken
        );
        let e = lib.find("broken").unwrap_err().to_string();
        assert!(e.contains("broken.toml, line 1, name:"), "{e}");
        let e = lib.find("haas").unwrap_err().to_string();
        assert!(
            e.contains("unknown post \"haas\"") && e.contains("linuxcnc, grbl"),
            "{e}"
        );
        let e = lib.find("/nonexistent/x.toml").unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/x.toml") && e.contains("cannot read"),
            "{e}"
        );
        // A file path works without being in the folder.
        let other = tempfile::tempdir().unwrap();
        let p = other.path().join("shop.toml");
        std::fs::write(&p, &mine).unwrap();
        assert_eq!(lib.find(&p.display().to_string()).unwrap().key, "shop");
    }

    #[test]
    fn placeholders_are_filled_and_outside_text_cannot_break_a_line() {
        let t = Template::parse("(Change to tool {tool}: {tool_name})").unwrap();
        assert!(t.is_comment());
        let s = t.fill(|p| match p {
            Placeholder::Tool => "3".into(),
            _ => "ball (3 mm); déjà".into(),
        });
        assert_eq!(s, "Change to tool 3: ball 3 mm, d?j?");
        assert!(Template::parse("G4 P{seconds").is_err());
        assert!(Template::parse("G4 P}").is_err());
        assert!(
            !Template::parse("O{program_number} ({title})")
                .unwrap()
                .is_comment()
        );
    }
}
