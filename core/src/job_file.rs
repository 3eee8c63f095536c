//! Job files (`.millpond`): a whole job — the model and how it is placed, the stock, the
//! tools, the operations in order, the output settings — as TOML a machinist can read and a
//! version-control system can diff.
//!
//! The file has its own schema, separate from the in-memory types ([`Job`] and what it
//! holds): those may gain fields and defaults, while a file of format 1 means the same thing
//! forever. So reading is strict — every field present, no unknown ones, every value in
//! range — and every error names the file, the line and the field (ARCHITECTURE.md §5).
//! A later format will read this one by converting it; format 1 files are kept in the
//! repository's tests to prove it.
//!
//! A job never holds the pool secret, nor computed toolpaths: pressing Generate all on a
//! reopened job gives the same program bit for bit, because toolpaths are a pure function of
//! what is saved here.

use crate::Rect;
use crate::gcode::ProgramUnits;
use crate::mesh::MeshHash;
use crate::params;
use crate::placement::{Axis3, Placement, Units, check_scale};
use crate::raster::Direction;
use crate::rough::ClearPattern;
use crate::setup::{
    LineAxis, OperationDef, OperationFeeds, RasterParams, RoughingParams, Stepover, Stock,
    StockMode, Strategy, WaterlineParams, WorkZeroChoice, XyZero, ZZero,
};
use crate::tools::{Tool, ToolShape};
use crate::waterline::Milling;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The format this version writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 1;

/// The file name extension of job files.
pub const EXTENSION: &str = "millpond";

/// Job files are small (a few kB); anything much larger is not one, and is refused before
/// it is read into memory.
pub const MAX_JOB_FILE_BYTES: u64 = 4 << 20;

/// Where the part comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelFile {
    /// The sample part built into Millpond.
    Sample,
    /// An STL file; `path` is absolute in memory (or as the user gave it) and relative to the
    /// job file on disk when it lies beside or below it.
    Stl {
        path: PathBuf,
        /// The content hash of the mesh as read, when the job was saved: a different hash on
        /// opening means the file changed since.
        hash: Option<MeshHash>,
    },
}

/// The model and how it is placed on the machine.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRef {
    pub file: ModelFile,
    pub units: Units,
    pub placement: Vec<Placement>,
}

/// How the program is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The post-processor: a key (`linuxcnc`, a built-in or one in the config folder's
    /// `posts/`) or the path of a post file ([`crate::post::PostLibrary::find`]).
    pub post: String,
    /// What the program is written in (G21 mm or G20 inch).
    pub units: ProgramUnits,
    /// Dwell after each spindle start, seconds (0: none).
    pub spindle_dwell_s: f64,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            post: crate::post::DEFAULT_POST.to_string(),
            units: ProgramUnits::Millimetres,
            spindle_dwell_s: 0.0,
        }
    }
}

/// A whole job, as the window's document and `millpond toolpath --job` both hold it.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub model: ModelRef,
    pub stock: Stock,
    /// Operations refer to these by [`Tool::id`]; in the file, by tool number.
    pub tools: Vec<Tool>,
    /// In machining order.
    pub operations: Vec<OperationDef>,
    pub output: Output,
}

/// Why a job file cannot be read or written.
#[derive(Debug, Error)]
pub enum JobFileError {
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// The file is not a valid job: `line` (1-based) and `field` (a dotted path such as
    /// `operations[2].roughing.stepdown`) where known.
    #[error("{file}{}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default(), field.as_ref().map(|f| format!(", {f}")).unwrap_or_default())]
    Invalid {
        file: String,
        line: Option<usize>,
        field: Option<String>,
        message: String,
    },
    /// The job cannot be written as it stands (two tools with one number, say).
    #[error("cannot save the job: {0}")]
    Unsaveable(String),
}

// ---------------------------------------------------------------------------------------
// The format-1 schema. Names are the machinist's; enumerations are words, not numbers.

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    millpond: HeaderV1,
    model: ModelV1,
    stock: StockV1,
    output: OutputV1,
    #[serde(default)]
    tools: Vec<ToolV1>,
    #[serde(default)]
    operations: Vec<OperationV1>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderV1 {
    format: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelV1 {
    /// The STL file, relative to the job file where it lies beside or below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// The mesh's content hash (BLAKE3 over its triangles, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blake3: Option<String>,
    /// `sample`: the part built into Millpond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sample: Option<bool>,
    units: String,
    placement: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StockV1 {
    mode: String,
    margin_xy: f64,
    margin_top: f64,
    margin_bottom: f64,
    min: [f64; 3],
    max: [f64; 3],
    safe_height: f64,
    zero_xy: String,
    zero_z: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputV1 {
    /// Added within format 1; files before it name a `dialect` (`linuxcnc` or `grbl`, now
    /// the keys of the built-in posts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    post: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dialect: Option<String>,
    spindle_dwell: f64,
    /// Added within format 1: a file without it writes millimetres, as every program did
    /// before.
    #[serde(default = "millimetres")]
    units: String,
}

fn millimetres() -> String {
    "mm".into()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolV1 {
    number: i64,
    name: String,
    name_follows_shape: bool,
    shape: String,
    diameter: f64,
    corner_radius: f64,
    included_angle: f64,
    flutes: i64,
    stick_out: f64,
    max_depth_of_cut: f64,
    feed: f64,
    plunge_feed: f64,
    spindle_rpm: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationV1 {
    name: String,
    enabled: bool,
    visible: bool,
    /// The tool's number.
    tool: i64,
    /// The operation's own feeds; absent: the tool's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    feeds: Option<FeedsV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roughing: Option<RoughingV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raster_finishing: Option<RasterV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    waterline_finishing: Option<WaterlineV1>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedsV1 {
    feed: f64,
    plunge_feed: f64,
    spindle_rpm: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoughingV1 {
    stepdown: f64,
    /// `"2.4mm"` or `"40%"` (of the tool diameter).
    stepover: String,
    allowance: f64,
    pattern: String,
    milling: String,
    sampling: f64,
    ramp_angle: f64,
    /// Rest roughing's threshold, mm; absent: the whole stock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rest: Option<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RasterV1 {
    stepover: f64,
    sampling: f64,
    axis: String,
    direction: String,
    merge_tolerance: f64,
    extra_margin: f64,
    allowance: f64,
    /// `[xmin, xmax, ymin, ymax]`: passes cover exactly this box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bounds: Option<[f64; 4]>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaterlineV1 {
    stepdown: f64,
    sampling: f64,
    milling: String,
    allowance: f64,
}

// ---------------------------------------------------------------------------------------
// Words for enumerations, both ways.

/// A word-for-value table; reading a word not in it names the words that are.
pub(crate) struct Words<T: 'static>(pub(crate) &'static [(&'static str, T)]);

impl<T: Copy + PartialEq> Words<T> {
    pub(crate) fn word(&self, v: T) -> &'static str {
        self.0.iter().find(|(_, x)| *x == v).map_or("?", |(w, _)| w)
    }

    /// The value of `word`, where it is one of the table's.
    pub(crate) fn get(&self, word: &str) -> Option<T> {
        self.0.iter().find(|(w, _)| *w == word).map(|(_, v)| *v)
    }

    /// The table's words, in order.
    pub(crate) fn words(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(w, _)| *w)
    }

    fn value(&self, word: &str) -> Result<T, String> {
        self.get(word).ok_or_else(|| {
            let all: Vec<String> = self.words().map(|w| format!("\"{w}\"")).collect();
            format!("\"{word}\" is not one of {}", all.join(", "))
        })
    }
}

const UNITS: Words<Units> = Words(&[
    ("mm", Units::Millimetres),
    ("cm", Units::Centimetres),
    ("m", Units::Metres),
    ("inch", Units::Inches),
]);
const STOCK_MODE: Words<StockMode> = Words(&[
    ("model box", StockMode::ModelBox),
    ("explicit", StockMode::Explicit),
]);
const ZERO_XY: Words<XyZero> = Words(&[
    ("model origin", XyZero::Model),
    ("stock front left", XyZero::StockFrontLeft),
    ("stock front right", XyZero::StockFrontRight),
    ("stock back left", XyZero::StockBackLeft),
    ("stock back right", XyZero::StockBackRight),
    ("stock centre", XyZero::StockCentre),
]);
const ZERO_Z: Words<ZZero> = Words(&[
    ("model origin", ZZero::Model),
    ("stock top", ZZero::StockTop),
    ("stock bottom", ZZero::StockBottom),
    ("model top", ZZero::ModelTop),
]);
const PROGRAM_UNITS: Words<ProgramUnits> = Words(&[
    ("mm", ProgramUnits::Millimetres),
    ("inch", ProgramUnits::Inches),
]);
const SHAPE: Words<ToolShape> = Words(&[
    ("flat", ToolShape::Flat),
    ("ball", ToolShape::Ball),
    ("bull", ToolShape::Bull),
    ("v-bit", ToolShape::VBit),
]);
pub(crate) const PATTERN: Words<ClearPattern> = Words(&[
    ("offset", ClearPattern::Offset),
    ("zigzag", ClearPattern::Zigzag),
]);
pub(crate) const MILLING: Words<Milling> = Words(&[
    ("climb", Milling::Climb),
    ("conventional", Milling::Conventional),
]);
pub(crate) const AXIS: Words<LineAxis> = Words(&[("x", LineAxis::X), ("y", LineAxis::Y)]);
pub(crate) const DIRECTION: Words<Direction> = Words(&[
    ("zigzag", Direction::Zigzag),
    ("climb", Direction::Climb),
    ("conventional", Direction::Conventional),
]);
const PLACEMENT: Words<Placement> = Words(&[
    ("move to origin", Placement::MoveToOrigin),
    ("centre", Placement::Center),
    ("rotate x", Placement::Rotate(Axis3::X)),
    ("rotate y", Placement::Rotate(Axis3::Y)),
    ("rotate z", Placement::Rotate(Axis3::Z)),
    ("mirror x", Placement::Mirror(Axis3::X)),
    ("mirror y", Placement::Mirror(Axis3::Y)),
    ("mirror z", Placement::Mirror(Axis3::Z)),
]);

// ---------------------------------------------------------------------------------------
// Writing.

impl Job {
    /// The job as format-1 TOML. `job_path` is where it will be written: the model's path
    /// is stored relative to its folder when the model lies there or below.
    pub fn to_toml(&self, job_path: &Path) -> Result<String, JobFileError> {
        check_numbers(&self.tools)?;
        let number_of = |id: u64| self.tools.iter().find(|t| t.id == id).map(|t| t.number);
        let (file, blake3, sample) = match &self.model.file {
            ModelFile::Sample => (None, None, Some(true)),
            ModelFile::Stl { path, hash } => (
                Some(relative_path(
                    path,
                    job_path.parent().unwrap_or(Path::new(".")),
                )),
                hash.map(|h| hex(&h.0)),
                None,
            ),
        };
        let s = &self.stock;
        let mut operations = Vec::new();
        for op in &self.operations {
            let tool = number_of(op.tool).ok_or_else(|| {
                JobFileError::Unsaveable(format!("\"{}\" has no tool: choose one", op.name))
            })?;
            let mut o = OperationV1 {
                name: op.name.clone(),
                enabled: op.enabled,
                visible: op.visible,
                tool: i64::from(tool),
                feeds: op.feeds.map(|f| FeedsV1 {
                    feed: f.feed,
                    plunge_feed: f.plunge_feed,
                    spindle_rpm: f.spindle_rpm,
                }),
                roughing: None,
                raster_finishing: None,
                waterline_finishing: None,
            };
            match &op.strategy {
                Strategy::Roughing(p) => {
                    o.roughing = Some(RoughingV1 {
                        stepdown: p.stepdown,
                        stepover: match p.stepover {
                            Stepover::Mm(v) => format!("{v}mm"),
                            Stepover::Percent(v) => format!("{v}%"),
                        },
                        allowance: p.allowance,
                        pattern: PATTERN.word(p.pattern).into(),
                        milling: MILLING.word(p.milling).into(),
                        sampling: p.sampling,
                        ramp_angle: p.ramp_angle,
                        rest: p.rest,
                    });
                }
                Strategy::RasterFinishing(p) => {
                    o.raster_finishing = Some(RasterV1 {
                        stepover: p.stepover,
                        sampling: p.sampling,
                        axis: AXIS.word(p.axis).into(),
                        direction: DIRECTION.word(p.direction).into(),
                        merge_tolerance: p.merge_tolerance,
                        extra_margin: p.extra_margin,
                        allowance: p.allowance,
                        bounds: p.bounds.map(|b| [b.xmin, b.xmax, b.ymin, b.ymax]),
                    });
                }
                Strategy::WaterlineFinishing(p) => {
                    o.waterline_finishing = Some(WaterlineV1 {
                        stepdown: p.stepdown,
                        sampling: p.sampling,
                        milling: MILLING.word(p.milling).into(),
                        allowance: p.allowance,
                    });
                }
            }
            operations.push(o);
        }
        let file = FileV1 {
            millpond: HeaderV1 {
                format: i64::from(FORMAT_VERSION),
            },
            model: ModelV1 {
                file,
                blake3,
                sample,
                units: UNITS.word(self.model.units).into(),
                placement: self
                    .model
                    .placement
                    .iter()
                    .map(|p| match p {
                        // A factor is not a word: "scale 2.5" (Rust's shortest round trip).
                        Placement::Scale(f) => format!("scale {f}"),
                        p => PLACEMENT.word(*p).into(),
                    })
                    .collect(),
            },
            stock: StockV1 {
                mode: STOCK_MODE.word(s.mode).into(),
                margin_xy: s.margin_xy,
                margin_top: s.margin_top,
                margin_bottom: s.margin_bottom,
                min: s.min,
                max: s.max,
                safe_height: s.safe_height,
                zero_xy: ZERO_XY.word(s.zero.xy).into(),
                zero_z: ZERO_Z.word(s.zero.z).into(),
            },
            output: OutputV1 {
                post: Some(self.output.post.clone()),
                dialect: None,
                spindle_dwell: self.output.spindle_dwell_s,
                units: PROGRAM_UNITS.word(self.output.units).into(),
            },
            tools: self.tools.iter().map(tool_to_v1).collect(),
            operations,
        };
        let body = toml::to_string(&file).map_err(|e| JobFileError::Unsaveable(e.to_string()))?;
        Ok(format!(
            "# A Millpond job: the model, stock, tools and operations that make one program.\n\
             # Paths are relative to this file. Toolpaths are not saved: Generate all rebuilds\n\
             # them, bit for bit.\n\n{body}"
        ))
    }

    /// Writes the job to `path` atomically: a temporary file beside it, flushed to disk,
    /// then renamed over the old one. A crash or a full disk mid-save leaves the old job.
    pub fn save(&self, path: &Path) -> Result<(), JobFileError> {
        let text = self.to_toml(path)?;
        write_atomically(path, text.as_bytes()).map_err(|e| JobFileError::Io {
            file: path.display().to_string(),
            message: format!("cannot save: {e}"),
        })
    }

    /// Reads a job file. Relative model paths are resolved against the job file's folder.
    pub fn load(path: &Path) -> Result<Job, JobFileError> {
        let text = read_text(path, MAX_JOB_FILE_BYTES, "job")?;
        Job::parse(
            &text,
            &path.display().to_string(),
            path.parent().unwrap_or(Path::new(".")),
        )
    }

    /// Reads a job from its text. `file` names it in errors; relative model paths are
    /// resolved against `dir`.
    pub fn parse(text: &str, file: &str, dir: &Path) -> Result<Job, JobFileError> {
        check_format(text, file, "millpond", "job")?;
        let v1: FileV1 = from_toml(text, file)?;
        from_v1(v1, dir).map_err(|(path, message)| invalid_at(text, file, &path, message))
    }
}

/// A tool library as a file of its own (`[[tools]]` as in a job, under a
/// `[millpond_tools]` header), to share tools between computers and people.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LibraryV1 {
    millpond_tools: HeaderV1,
    #[serde(default)]
    tools: Vec<ToolV1>,
}

/// Writes `tools` as a tool library file (atomically).
pub fn save_tool_library(path: &Path, tools: &[Tool]) -> Result<(), JobFileError> {
    check_numbers(tools)?;
    let body = toml::to_string(&LibraryV1 {
        millpond_tools: HeaderV1 {
            format: i64::from(FORMAT_VERSION),
        },
        tools: tools.iter().map(tool_to_v1).collect(),
    })
    .map_err(|e| JobFileError::Unsaveable(e.to_string()))?;
    let text =
        format!("# A Millpond tool library: File > Import in the Tool library panel.\n\n{body}");
    write_atomically(path, text.as_bytes()).map_err(|e| JobFileError::Io {
        file: path.display().to_string(),
        message: format!("cannot save: {e}"),
    })
}

/// Reads a tool library file; ids are the tool numbers.
pub fn load_tool_library(path: &Path) -> Result<Vec<Tool>, JobFileError> {
    let text = read_text(path, MAX_JOB_FILE_BYTES, "tool library")?;
    let file = path.display().to_string();
    check_format(&text, &file, "millpond_tools", "tool library")?;
    let v1: LibraryV1 = from_toml(&text, &file)?;
    tools_from_v1(&v1.tools).map_err(|(at, message)| invalid_at(&text, &file, &at, message))
}

/// The error for the field at `path` of a file's `text`: its line and dotted name.
pub(crate) fn invalid_at(text: &str, file: &str, path: &[Key], message: String) -> JobFileError {
    JobFileError::Invalid {
        file: file.to_string(),
        line: find_line(text, path),
        field: Some(dotted(path)),
        message,
    }
}

/// A file's text, refused before reading when it is too large for a job or library, and
/// when it is not UTF-8.
pub(crate) fn read_text(path: &Path, max_bytes: u64, what: &str) -> Result<String, JobFileError> {
    let file = path.display().to_string();
    let invalid = |message: String| JobFileError::Invalid {
        file: file.clone(),
        line: None,
        field: None,
        message,
    };
    let io = |e: std::io::Error| JobFileError::Io {
        file: file.clone(),
        message: format!("cannot read: {e}"),
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > max_bytes {
        return Err(invalid(format!(
            "{size} bytes is too large for a {what} file (at most {max_bytes})"
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    String::from_utf8(bytes).map_err(|e| {
        invalid(format!(
            "not a text file (invalid UTF-8 at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Checks the syntax and the `[header] format` of a file before anything else: a newer
/// file must say so, not fail on a field it added.
fn check_format(
    text: &str,
    file: &str,
    header: &'static str,
    what: &str,
) -> Result<(), JobFileError> {
    let invalid =
        |line: Option<usize>, field: Option<String>, message: String| JobFileError::Invalid {
            file: file.to_string(),
            line,
            field,
            message,
        };
    let table = toml::de::DeTable::parse(text).map_err(|e| {
        invalid(
            e.span().map(|s| line_of(text, s.start)),
            None,
            e.message().to_string(),
        )
    })?;
    let version = match table.get_ref().get(header).map(|v| v.get_ref()) {
        Some(toml::de::DeValue::Table(t)) => match t.get("format").map(|v| v.get_ref()) {
            Some(toml::de::DeValue::Integer(i)) => i.to_string().parse::<i64>().ok(),
            _ => None,
        },
        _ => None,
    };
    let field = format!("{header}.format");
    let at = || find_line(text, &[Key::Name(header), Key::Name("format")]);
    let Some(version) = version else {
        return Err(invalid(
            Some(1),
            Some(field),
            format!("not a Millpond {what}: it has no [{header}] table with a format number"),
        ));
    };
    if version > i64::from(FORMAT_VERSION) {
        return Err(invalid(
            at(),
            Some(field),
            format!(
                "written by a newer Millpond (format {version}); this version reads formats \
                 up to {FORMAT_VERSION}"
            ),
        ));
    }
    if version < 1 {
        return Err(invalid(
            at(),
            Some(field),
            format!("format {version} does not exist (formats start at 1)"),
        ));
    }
    Ok(())
}

/// The file's fields, with serde's errors placed at their line and field.
pub(crate) fn from_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<T, JobFileError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        JobFileError::Invalid {
            file: file.to_string(),
            line,
            field: line.and_then(|l| field_on_line(text, l)),
            message: e.message().trim_end().to_string(),
        }
    })
}

/// Two tools with one number cannot be written: the file refers to tools by number.
fn check_numbers(tools: &[Tool]) -> Result<(), JobFileError> {
    let mut numbers = std::collections::BTreeMap::new();
    for t in tools {
        if let Some(other) = numbers.insert(t.number, t) {
            return Err(JobFileError::Unsaveable(format!(
                "tools \"{}\" and \"{}\" both have number {}: give each its own",
                other.name, t.name, t.number
            )));
        }
    }
    Ok(())
}

fn tool_to_v1(t: &Tool) -> ToolV1 {
    ToolV1 {
        number: i64::from(t.number),
        name: t.name.clone(),
        name_follows_shape: t.auto_name,
        shape: SHAPE.word(t.shape).into(),
        diameter: t.diameter,
        corner_radius: t.corner_radius,
        included_angle: t.included_angle,
        flutes: i64::from(t.flutes),
        stick_out: t.stick_out,
        max_depth_of_cut: t.max_depth_of_cut,
        feed: t.feed,
        plunge_feed: t.plunge_feed,
        spindle_rpm: t.spindle_rpm,
    }
}

/// One step of a path to a field in the file.
#[derive(Clone, Debug)]
pub(crate) enum Key {
    Name(&'static str),
    Index(usize),
}

pub(crate) fn dotted(path: &[Key]) -> String {
    let mut s = String::new();
    for k in path {
        match k {
            Key::Name(n) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(n);
            }
            Key::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The line of the field at `path` (or of the nearest enclosing one found).
pub(crate) fn find_line(text: &str, path: &[Key]) -> Option<usize> {
    let table = toml::de::DeTable::parse(text).ok()?;
    let mut span = table.span();
    let mut value: Option<&toml::de::DeValue<'_>> = None;
    let mut current = table.get_ref();
    for k in path {
        let next = match (k, value) {
            (Key::Name(n), None) => current.get(*n),
            (Key::Name(n), Some(toml::de::DeValue::Table(t))) => t.get(*n),
            (Key::Index(i), Some(toml::de::DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        span = next.span();
        if let toml::de::DeValue::Table(t) = next.get_ref() {
            current = t;
        }
        value = Some(next.get_ref());
    }
    Some(line_of(text, span.start))
}

/// The key or table header on a line (`stepdown = ...`, `[operations.roughing]`), to name
/// the field of an error serde reports only by its position.
fn field_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?.trim();
    let name = if let Some(h) = l.strip_prefix('[') {
        h.trim_start_matches('[').split(']').next()?
    } else {
        l.split('=').next().filter(|_| l.contains('='))?
    };
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

type FieldError = (Vec<Key>, String);

fn from_v1(f: FileV1, dir: &Path) -> Result<Job, FieldError> {
    use Key::{Index, Name};
    let at = |path: &[Key]| path.to_vec();

    // Model.
    let m = &f.model;
    let file = match (&m.file, m.sample) {
        (Some(_), Some(true)) => {
            return Err((
                at(&[Name("model")]),
                "give either `file` or `sample = true`, not both".into(),
            ));
        }
        (None, Some(true)) => ModelFile::Sample,
        (Some(p), None | Some(false)) => {
            if p.is_empty() {
                return Err((at(&[Name("model"), Name("file")]), "is empty".into()));
            }
            let hash = match &m.blake3 {
                None => None,
                Some(h) => Some(MeshHash(unhex(h).ok_or_else(|| {
                    (
                        at(&[Name("model"), Name("blake3")]),
                        "expected 64 hexadecimal digits".to_string(),
                    )
                })?)),
            };
            let path = PathBuf::from(p);
            let path = if path.is_absolute() {
                path
            } else {
                dir.join(path)
            };
            ModelFile::Stl { path, hash }
        }
        (None, _) => {
            return Err((
                at(&[Name("model")]),
                "names no model: give `file = \"part.stl\"` (or `sample = true`)".into(),
            ));
        }
    };
    let units = word(UNITS.value(&m.units), &[Name("model"), Name("units")])?;
    let mut placement = Vec::new();
    for (i, p) in m.placement.iter().enumerate() {
        let at = || vec![Name("model"), Name("placement"), Index(i)];
        let step = match p.strip_prefix("scale ") {
            Some(f) => Placement::Scale(word(
                f.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("\"{f}\" is not a number"))
                    .and_then(check_scale),
                &at(),
            )?),
            None => word(PLACEMENT.value(p), &at())?,
        };
        placement.push(step);
    }

    // Stock.
    let s = &f.stock;
    let sp = |n: &'static str| vec![Name("stock"), Name(n)];
    let mode = word(STOCK_MODE.value(&s.mode), &sp("mode"))?;
    for (n, v) in [
        ("margin_xy", s.margin_xy),
        ("margin_top", s.margin_top),
        ("margin_bottom", s.margin_bottom),
    ] {
        check(v, 0.0, 1e4, &sp(n))?;
    }
    check(s.safe_height, 0.1, 1e4, &sp("safe_height"))?;
    for i in 0..3 {
        check(s.min[i], -1e5, 1e5, &sp("min"))?;
        check(s.max[i], -1e5, 1e5, &sp("max"))?;
        if mode == StockMode::Explicit && s.max[i] <= s.min[i] {
            return Err((
                sp("max"),
                format!(
                    "the stock's highest {} ({}) must be above its lowest ({})",
                    ["X", "Y", "Z"][i],
                    s.max[i],
                    s.min[i]
                ),
            ));
        }
    }
    let stock = Stock {
        mode,
        margin_xy: s.margin_xy,
        margin_top: s.margin_top,
        margin_bottom: s.margin_bottom,
        min: s.min,
        max: s.max,
        safe_height: s.safe_height,
        zero: WorkZeroChoice {
            xy: word(ZERO_XY.value(&s.zero_xy), &sp("zero_xy"))?,
            z: word(ZERO_Z.value(&s.zero_z), &sp("zero_z"))?,
        },
    };

    // Output.
    let post = match (&f.output.post, &f.output.dialect) {
        (Some(p), None) | (None, Some(p)) => p.trim().to_string(),
        (None, None) => crate::post::DEFAULT_POST.to_string(),
        (Some(_), Some(_)) => {
            return Err((
                vec![Name("output"), Name("dialect")],
                "give the post only (dialect is its older name)".into(),
            ));
        }
    };
    if post.is_empty() || post.len() > 1024 || post.contains(['\n', '\r']) {
        return Err((
            vec![Name("output"), Name("post")],
            "the post is a name (linuxcnc, grbl, ...) or the path of a post file".into(),
        ));
    }
    check(
        f.output.spindle_dwell,
        0.0,
        600.0,
        &[Name("output"), Name("spindle_dwell")],
    )?;
    let program_units = word(
        PROGRAM_UNITS.value(&f.output.units),
        &[Name("output"), Name("units")],
    )?;
    let output = Output {
        post,
        units: program_units,
        spindle_dwell_s: f.output.spindle_dwell,
    };

    let tools = tools_from_v1(&f.tools)?;

    // Operations: ids in memory count from 1 in file order.
    let mut operations = Vec::new();
    for (i, o) in f.operations.iter().enumerate() {
        let op = |n: &'static str| vec![Name("operations"), Index(i), Name(n)];
        let tool = tools
            .iter()
            .find(|t| i64::from(t.number) == o.tool)
            .map(|t| t.id)
            .ok_or_else(|| {
                (
                    op("tool"),
                    format!("no tool with number {} in this job's [[tools]]", o.tool),
                )
            })?;
        let feeds = match &o.feeds {
            None => None,
            Some(fd) => {
                let fp =
                    |n: &'static str| vec![Name("operations"), Index(i), Name("feeds"), Name(n)];
                check_setting(&params::FEED, fd.feed, &fp("feed"))?;
                check_setting(&params::PLUNGE_FEED, fd.plunge_feed, &fp("plunge_feed"))?;
                check_setting(&params::SPINDLE_SPEED, fd.spindle_rpm, &fp("spindle_rpm"))?;
                Some(OperationFeeds {
                    feed: fd.feed,
                    plunge_feed: fd.plunge_feed,
                    spindle_rpm: fd.spindle_rpm,
                })
            }
        };
        let given = [
            o.roughing.is_some(),
            o.raster_finishing.is_some(),
            o.waterline_finishing.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err((
                at(&[Name("operations"), Index(i)]),
                "give exactly one strategy table: [operations.roughing], \
                 [operations.raster_finishing] or [operations.waterline_finishing]"
                    .into(),
            ));
        }
        let sub =
            |s: &'static str, n: &'static str| vec![Name("operations"), Index(i), Name(s), Name(n)];
        let strategy = if let Some(p) = &o.roughing {
            let k = |n| sub("roughing", n);
            check_setting(&params::STEPDOWN, p.stepdown, &k("stepdown"))?;
            check_setting(&params::ALLOWANCE, p.allowance, &k("allowance"))?;
            check_setting(&params::SAMPLING, p.sampling, &k("sampling"))?;
            check_setting(&params::RAMP_ANGLE, p.ramp_angle, &k("ramp_angle"))?;
            if let Some(t) = p.rest {
                check_setting(&params::REST, t, &k("rest"))?;
            }
            let stepover: Stepover = p.stepover.parse().map_err(|e| (k("stepover"), e))?;
            Strategy::Roughing(RoughingParams {
                stepdown: p.stepdown,
                stepover,
                allowance: p.allowance,
                pattern: word(PATTERN.value(&p.pattern), &k("pattern"))?,
                milling: word(MILLING.value(&p.milling), &k("milling"))?,
                sampling: p.sampling,
                ramp_angle: p.ramp_angle,
                rest: p.rest,
            })
        } else if let Some(p) = &o.raster_finishing {
            let k = |n| sub("raster_finishing", n);
            check_setting(&params::STEPOVER, p.stepover, &k("stepover"))?;
            check_setting(&params::SAMPLING, p.sampling, &k("sampling"))?;
            check_setting(
                &params::MERGE_TOLERANCE,
                p.merge_tolerance,
                &k("merge_tolerance"),
            )?;
            check_setting(&params::MARGIN, p.extra_margin, &k("extra_margin"))?;
            check_setting(&params::ALLOWANCE, p.allowance, &k("allowance"))?;
            let bounds = match p.bounds {
                None => None,
                Some([xmin, xmax, ymin, ymax]) => {
                    for v in [xmin, xmax, ymin, ymax] {
                        check(v, -1e5, 1e5, &k("bounds"))?;
                    }
                    if xmax < xmin || ymax < ymin {
                        return Err((
                            k("bounds"),
                            "expected [xmin, xmax, ymin, ymax] with each max not below its min"
                                .into(),
                        ));
                    }
                    Some(Rect::new(xmin, xmax, ymin, ymax))
                }
            };
            Strategy::RasterFinishing(RasterParams {
                stepover: p.stepover,
                sampling: p.sampling,
                axis: word(AXIS.value(&p.axis), &k("axis"))?,
                direction: word(DIRECTION.value(&p.direction), &k("direction"))?,
                merge_tolerance: p.merge_tolerance,
                extra_margin: p.extra_margin,
                allowance: p.allowance,
                bounds,
            })
        } else if let Some(p) = &o.waterline_finishing {
            let k = |n| sub("waterline_finishing", n);
            check_setting(&params::STEPDOWN, p.stepdown, &k("stepdown"))?;
            check_setting(&params::SAMPLING, p.sampling, &k("sampling"))?;
            check_setting(&params::ALLOWANCE, p.allowance, &k("allowance"))?;
            Strategy::WaterlineFinishing(WaterlineParams {
                stepdown: p.stepdown,
                sampling: p.sampling,
                milling: word(MILLING.value(&p.milling), &k("milling"))?,
                allowance: p.allowance,
            })
        } else {
            unreachable!("exactly one strategy was checked above")
        };
        operations.push(OperationDef {
            id: i as u64 + 1,
            name: o.name.clone(),
            enabled: o.enabled,
            visible: o.visible,
            tool,
            strategy,
            feeds,
        });
    }
    Ok(Job {
        model: ModelRef {
            file,
            units,
            placement,
        },
        stock,
        tools,
        operations,
        output,
    })
}

/// The `[[tools]]` of a job or a tool library; ids in memory are the numbers (unique in a
/// file).
fn tools_from_v1(list: &[ToolV1]) -> Result<Vec<Tool>, FieldError> {
    use Key::{Index, Name};
    let mut tools: Vec<Tool> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let tp = |n: &'static str| vec![Name("tools"), Index(i), Name(n)];
        let number = u32::try_from(t.number)
            .ok()
            .filter(|n| *n <= 9999)
            .ok_or_else(|| {
                (
                    tp("number"),
                    format!("{} is not a tool number (0 to 9999)", t.number),
                )
            })?;
        if let Some(other) = tools.iter().find(|o| o.number == number) {
            return Err((
                tp("number"),
                format!(
                    "tools \"{}\" and \"{}\" both have number {number}",
                    other.name, t.name
                ),
            ));
        }
        let flutes = u32::try_from(t.flutes)
            .ok()
            .filter(|n| (1..=16).contains(n))
            .ok_or_else(|| (tp("flutes"), format!("{} is not 1 to 16 flutes", t.flutes)))?;
        check(t.diameter, 0.01, 1000.0, &tp("diameter"))?;
        check(t.feed, 1.0, 100_000.0, &tp("feed"))?;
        check(t.plunge_feed, 1.0, 100_000.0, &tp("plunge_feed"))?;
        check(t.spindle_rpm, 1.0, 200_000.0, &tp("spindle_rpm"))?;
        check(t.max_depth_of_cut, 0.0, 1000.0, &tp("max_depth_of_cut"))?;
        check(t.stick_out, 0.0, 1000.0, &tp("stick_out"))?;
        let shape = word(SHAPE.value(&t.shape), &tp("shape"))?;
        if shape == ToolShape::Bull {
            check(t.corner_radius, 0.01, 500.0, &tp("corner_radius"))?;
        }
        if shape == ToolShape::VBit {
            check(t.included_angle, 1.0, 179.0, &tp("included_angle"))?;
        }
        let tool = Tool {
            id: u64::from(number),
            number,
            name: t.name.clone(),
            shape,
            diameter: t.diameter,
            corner_radius: t.corner_radius,
            included_angle: t.included_angle,
            feed: t.feed,
            plunge_feed: t.plunge_feed,
            spindle_rpm: t.spindle_rpm,
            max_depth_of_cut: t.max_depth_of_cut,
            flutes,
            stick_out: t.stick_out,
            auto_name: t.name_follows_shape,
        };
        if let Err(e) = tool.cutter() {
            return Err((vec![Name("tools"), Index(i)], e.to_string()));
        }
        tools.push(tool);
    }

    Ok(tools)
}

/// A word read, or an error for the field at `path`.
fn word<T>(r: Result<T, String>, path: &[Key]) -> Result<T, FieldError> {
    r.map_err(|m| (path.to_vec(), m))
}

/// `v` in the range the setting table gives an operation setting (the window's and the
/// command line's), else an error for the field at `path`.
fn check_setting(s: &params::Setting, v: f64, path: &[Key]) -> Result<(), FieldError> {
    s.check(v)
        .map(|_| ())
        .map_err(|e| (path.to_vec(), e.to_string()))
}

/// `v` finite and in `lo..=hi`, else an error for the field at `path`.
fn check(v: f64, lo: f64, hi: f64, path: &[Key]) -> Result<(), FieldError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err((path.to_vec(), format!("{v} is out of range ({lo} to {hi})")))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `path` relative to `dir` when it lies in `dir` or below (written with `/`, so a job moves
/// between systems); otherwise as it is.
fn relative_path(path: &Path, dir: &Path) -> String {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().map_or_else(|_| p.to_path_buf(), |c| c.join(p))
        }
    };
    let (p, d) = (abs(path), abs(dir));
    match p.strip_prefix(&d) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
        _ => path.display().to_string(),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced before the
/// rename, so `path` holds either the old content or the new, never a part. The temporary
/// file is removed when anything fails. See [`write_atomically_with`].
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |w| w.write_all(bytes))
}

/// Writes to `path` what `write` writes, as [`write_atomically`] does. A path that exists
/// and is not a regular file — a device such as `/dev/null`, a FIFO, a terminal — is written
/// directly instead: renaming over it would replace the device with a plain file (run as
/// root, `-o /dev/null` did that, and every program that read `/dev/null` afterwards got the
/// G-code). A folder is refused by the open.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Write as _;
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let mut out = std::io::BufWriter::new(std::fs::OpenOptions::new().write(true).open(path)?);
        write(&mut out)?;
        return out.flush();
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "job".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolLibrary;

    fn sample_job() -> Job {
        let tools = ToolLibrary::default().tools;
        let mut raster = RasterParams {
            bounds: Some(Rect::new(-1.0, 10.5, 0.0, 7.25)),
            ..RasterParams::default()
        };
        raster.stepover = 0.3;
        Job {
            model: ModelRef {
                file: ModelFile::Stl {
                    path: PathBuf::from("/jobs/parts/lever.stl"),
                    hash: Some(MeshHash([0xab; 32])),
                },
                units: Units::Inches,
                placement: vec![
                    Placement::Rotate(Axis3::Z),
                    Placement::Mirror(Axis3::X),
                    Placement::Center,
                ],
            },
            stock: Stock {
                zero: WorkZeroChoice {
                    xy: XyZero::StockFrontLeft,
                    z: ZZero::StockTop,
                },
                ..Stock::around_model(3.0, 1.5, 0.25)
            },
            operations: vec![
                OperationDef {
                    id: 1,
                    name: "Rough it".into(),
                    enabled: true,
                    visible: false,
                    tool: tools[0].id,
                    strategy: Strategy::Roughing(RoughingParams {
                        stepover: Stepover::Mm(2.5),
                        ..RoughingParams::default()
                    }),
                    feeds: Some(OperationFeeds {
                        feed: 1234.5,
                        plunge_feed: 100.0,
                        spindle_rpm: 16000.0,
                    }),
                },
                OperationDef {
                    id: 2,
                    name: "Finish \"fine\"".into(),
                    enabled: false,
                    visible: true,
                    tool: tools[1].id,
                    strategy: Strategy::RasterFinishing(raster),
                    feeds: None,
                },
                OperationDef {
                    id: 3,
                    name: "Walls".into(),
                    enabled: true,
                    visible: true,
                    tool: tools[1].id,
                    strategy: Strategy::WaterlineFinishing(WaterlineParams::default()),
                    feeds: None,
                },
            ],
            tools,
            output: Output {
                post: "grbl".into(),
                units: ProgramUnits::Inches,
                spindle_dwell_s: 2.5,
            },
        }
    }

    /// Ids in memory are the file's numbering (tools by number, operations in order).
    fn renumbered(mut job: Job) -> Job {
        for op in &mut job.operations {
            op.tool = job
                .tools
                .iter()
                .find(|t| t.id == op.tool)
                .map(|t| u64::from(t.number))
                .unwrap();
        }
        for t in &mut job.tools {
            t.id = u64::from(t.number);
        }
        for (i, op) in job.operations.iter_mut().enumerate() {
            op.id = i as u64 + 1;
        }
        job
    }

    #[test]
    fn a_job_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = sample_job();
        job.model.file = ModelFile::Stl {
            path: dir.path().join("parts/lever.stl"),
            hash: Some(MeshHash([7; 32])),
        };
        let path = dir.path().join("lever.millpond");
        job.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("file = \"parts/lever.stl\""), "{text}");
        assert!(!text.contains("secret"), "{text}");
        let back = Job::load(&path).unwrap();
        assert_eq!(back, renumbered(job.clone()));
        // Saved again, the text is the same: nothing drifts.
        back.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // The sample part.
        job.model.file = ModelFile::Sample;
        job.save(&path).unwrap();
        assert_eq!(Job::load(&path).unwrap().model.file, ModelFile::Sample);
    }

    #[test]
    fn two_tools_with_one_number_cannot_be_saved() {
        let mut job = sample_job();
        job.tools[1].number = job.tools[0].number;
        let e = job
            .to_toml(Path::new("x.millpond"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("both have number"), "{e}");
    }

    /// The error for `text` with `line` replaced by `with`.
    fn error_with(text: &str, line: &str, with: &str) -> String {
        assert!(text.contains(line), "{line} not in the sample");
        let bad = text.replacen(line, with, 1);
        Job::parse(&bad, "bad.millpond", Path::new("/jobs"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_files_name_the_file_the_line_and_the_field() {
        let text = sample_job().to_toml(Path::new("/jobs/x.millpond")).unwrap();
        let line_of_text =
            |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
        // Out of range.
        let e = error_with(&text, "stepdown = 2.0", "stepdown = -1.0");
        assert!(
            e.starts_with(&format!(
                "bad.millpond, line {}",
                line_of_text("stepdown = 2.0")
            )) && e.contains("operations[0].roughing.stepdown")
                && e.contains("out of range"),
            "{e}"
        );
        // Each mistake: a line of the sample, what replaces it, and what the error says.
        let stock_line = format!("line {}", line_of_text("[stock]"));
        let two_strategies = "[operations.waterline_finishing]\nstepdown = 1.0\nsampling = 0.1\nmilling = \"climb\"\nallowance = 0.0\n\n[operations.roughing]";
        let mistakes: [(&str, &str, &[&str]); 10] = [
            // A word that is not one.
            (
                "shape = \"ball\"",
                "shape = \"spherical\"",
                &["tools[0].shape", "\"ball\""],
            ),
            // Missing field.
            (
                "ramp_angle = 3.0\n",
                "",
                &["bad.millpond, line", "operations.roughing", "ramp_angle"],
            ),
            // Unknown field.
            (
                "ramp_angle = 3.0",
                "ramp_angle = 3.0\nramp_speed = 2",
                &["ramp_speed"],
            ),
            // Wrong type.
            (
                "stepdown = 2.0",
                "stepdown = \"deep\"",
                &["line", ", stepdown:", "f64"],
            ),
            // A tool that is not in the job.
            (
                "tool = 1",
                "tool = 77",
                &["operations[0].tool", "no tool with number 77"],
            ),
            // Future and unknown versions.
            ("format = 1", "format = 2", &["newer Millpond", "line"]),
            ("format = 1", "format = 0", &["does not exist"]),
            // Broken TOML.
            ("[stock]", "[stock", &[&stock_line]),
            // Two strategies in one operation.
            (
                "[operations.roughing]",
                two_strategies,
                &["exactly one strategy"],
            ),
            // A bad stepover.
            (
                "stepover = \"2.5mm\"",
                "stepover = \"150%\"",
                &["operations[0].roughing.stepover", "100%"],
            ),
        ];
        for (line, with, says) in mistakes {
            let e = error_with(&text, line, with);
            for part in says {
                assert!(e.contains(part), "{line:?} as {with:?}: {e}");
            }
        }
        // Not a job at all.
        let e = Job::parse("[model]\nfile = \"a.stl\"\n", "a.millpond", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a Millpond job"), "{e}");
    }

    #[test]
    fn oversized_and_binary_files_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("big.millpond")).unwrap();
        f.set_len(MAX_JOB_FILE_BYTES + 1).unwrap();
        std::fs::write(dir.path().join("part.millpond"), b"solid \xff\xfe\x00").unwrap();
        // Each error names the file, and why; there is no none.millpond.
        for (name, why) in [
            ("big.millpond", "too large"),
            ("part.millpond", "UTF-8"),
            ("none.millpond", "cannot read"),
        ] {
            let e = Job::load(&dir.path().join(name)).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(why), "{e}");
        }
    }

    #[test]
    fn a_tool_library_round_trips_and_a_job_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.toml");
        let tools = ToolLibrary::default().tools;
        save_tool_library(&path, &tools).unwrap();
        let back = load_tool_library(&path).unwrap();
        let renumbered: Vec<Tool> = tools
            .iter()
            .map(|t| Tool {
                id: u64::from(t.number),
                ..t.clone()
            })
            .collect();
        assert_eq!(back, renumbered);
        let job = dir.path().join("a.millpond");
        sample_job().save(&job).unwrap();
        let e = load_tool_library(&job).unwrap_err().to_string();
        assert!(
            e.contains("a.millpond") && e.contains("not a Millpond tool library"),
            "{e}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("diameter = 3.0", "diameter = 0.0", 1)).unwrap();
        let e = load_tool_library(&path).unwrap_err().to_string();
        assert!(e.contains("line") && e.contains("tools[0].diameter"), "{e}");
    }

    #[test]
    fn saving_over_a_job_is_atomic_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.millpond");
        let job = sample_job();
        job.save(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        // A save that cannot write (its folder is gone) leaves nothing behind.
        let gone = dir.path().join("gone/a.millpond");
        assert!(job.save(&gone).is_err());
        // An unsaveable job does not touch the file.
        let mut bad = job.clone();
        bad.tools[1].number = bad.tools[0].number;
        assert!(bad.save(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.millpond")]);
    }

    /// A FIFO (like `/dev/null` or a terminal, not a regular file) is written into, not
    /// replaced by a renamed file; a regular file is replaced whole.
    #[cfg(unix)]
    #[test]
    fn writing_to_a_device_or_fifo_writes_into_it_and_keeps_it() {
        use std::os::unix::fs::FileTypeExt as _;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_atomically(&fifo, b"G0 Z10\n").unwrap();
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO was replaced: {kind:?}");
        assert_eq!(reader.join().unwrap(), b"G0 Z10\n");
        let file = dir.path().join("part.ngc");
        std::fs::write(&file, b"old program, longer than the new one").unwrap();
        write_atomically(&file, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        assert!(
            write_atomically(dir.path(), b"x").is_err(),
            "a folder is refused"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    }
}
