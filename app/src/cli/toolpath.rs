//! `millpond toolpath`: one operation described by flags, or several by `--op`, planned through
//! the same [`Setup`] as the window, computed locally or in the pool, and written as one G-code
//! program in the order given.
//!
//! Flags and `--op` keys fill the same [`OpOptions`], and one function checks which apply to
//! which strategy and builds the operation, so both forms accept and refuse exactly the same
//! things.
//!
//! Every run is a job run: flags and `--op`s become the [`Job`] they describe (which
//! `--save-job` writes), `--job` reads one, and both go through [`run_job`] — plan, compute,
//! post — so a saved job gives the program its flags gave, and the window's program.

use super::{
    AxisArg, DEFAULT_MODEL_NAME, Units, bounds, format_duration, number_list, numbers,
    parse_bounds, threads,
};
use crate::pool::Computer;
use crate::run_job::{self, Departures, JobModel};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use millpond_core::gcode::{self, ProgramUnits};
use millpond_core::job::JobOutput;
use millpond_core::job_file::{self, Job, ModelFile, ModelRef, Output};
use millpond_core::params::{
    self, ALLOWANCE, AXIS_SETTING, BOUNDS, DIRECTION_SETTING, FEED, MARGIN, MERGE_TOLERANCE,
    MILLING_SETTING, NAME, OPERATION_SETTINGS, PATTERN_SETTING, PLUNGE_FEED, Preset, RAMP_ANGLE,
    REST, SAMPLING, SPINDLE_SPEED, STEPDOWN, STEPOVER, Setting, Strategies, StrategyKind, TOOL,
    TOOL_NUMBER,
};
use millpond_core::placement::Placement;
use millpond_core::post::{PostLibrary, PostProcessor};
use millpond_core::raster::Direction;
use millpond_core::rough::ClearPattern;
use millpond_core::runner::Executor;
use millpond_core::setup::{
    LineAxis, OperationDef, OperationFeeds, RasterParams, RoughingParams, Stepover, Stock,
    Strategy, WaterlineParams, WorkZeroChoice, XyZero, ZZero,
};
use millpond_core::tools::{Tool, ToolShape};
use millpond_core::waterline::Milling;
use millpond_core::{Aabb, Cutter, Feeds, JobContext, MachineProfile, Point3, Rect, Toolpath};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// Raster finishing: parallel drop-cutter passes.
    Raster,
    /// Waterline finishing: closed contours level by level, for steep walls.
    Waterline,
    /// Roughing: clears the stock layer by layer down to the model plus an allowance.
    Rough,
}

impl StrategyArg {
    /// The command line's strategies, in the order it lists them.
    const ALL: [StrategyArg; 3] = [
        StrategyArg::Raster,
        StrategyArg::Waterline,
        StrategyArg::Rough,
    ];

    fn kind(self) -> StrategyKind {
        match self {
            StrategyArg::Raster => StrategyKind::RasterFinishing,
            StrategyArg::Waterline => StrategyKind::WaterlineFinishing,
            StrategyArg::Rough => StrategyKind::Roughing,
        }
    }

    fn name(self) -> &'static str {
        self.kind().word()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// Both ways, no lifts.
    Zigzag,
    /// Every pass climb-milling (clockwise spindle).
    Climb,
    /// Every pass conventional-milling.
    Conventional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PatternArg {
    /// Parallel lines along X, then one pass round the layer's outline.
    Zigzag,
    /// Rings parallel to the layer's outline, from the inside out.
    Offset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MillingArg {
    /// Material on the tool's right (clockwise spindle).
    Climb,
    /// Material on the tool's left.
    Conventional,
}

/// The long help of `--op`: every key of each strategy, from the setting table.
fn op_help() -> String {
    // Settings every strategy takes with the same default go on one line of their own.
    let shared = |s: &Setting| {
        s.strategies == Strategies::ALL
            && StrategyArg::ALL
                .iter()
                .all(|k| s.default_for(k.kind()) == s.default_for(StrategyKind::Roughing))
    };
    let key = |s: &Setting, kind: Option<StrategyKind>| {
        let mut text = format!("{}=", s.key);
        if let Some(words) = choices(s.key) {
            text += &words.join("|");
        }
        let required = match kind {
            Some(k) => s.required_on_command_line.contains(k),
            None => s.required_on_command_line == Strategies::ALL,
        };
        // The table holds the window's extra margin, beyond the tool radius; margin= is
        // measured from the model's box, so its default is --margin's help's to say.
        let default = kind
            .or(Some(StrategyKind::Roughing))
            .and_then(|k| s.default_for(k))
            .filter(|_| s.key != MARGIN.key);
        match default {
            _ if required => text += " (required)",
            Some(d @ (Preset::Number(_) | Preset::Stepover(_))) => {
                text += &format!(" (default {d})")
            }
            _ => {}
        }
        text
    };
    let mut help = String::from(
        "One operation of a multi-operation run, cut in the order given (repeat --op). SPEC is \
         the strategy, then KEY=VALUE pairs separated by commas:\n",
    );
    for strategy in StrategyArg::ALL {
        let keys: Vec<String> = OPERATION_SETTINGS
            .iter()
            .filter(|s| s.applies_to(strategy.kind()) && !shared(s))
            .map(|s| key(s, Some(strategy.kind())))
            .collect();
        help += &format!(
            "  {:<10} {}\n",
            format!("{}:", strategy.name()),
            keys.join(", ")
        );
    }
    let keys: Vec<String> = OPERATION_SETTINGS
        .iter()
        .filter(|s| shared(s))
        .map(|s| key(s, None))
        .collect();
    help += &format!("  every one: {}\n", keys.join(", "));
    help += "Sizes in mm; each number's range is in the help of its flag. Operations without t= \
             are numbered by tool: the first tool is 1, the next new one 2, and so on. With --op, \
             every operation setting goes into the --op: --strategy, --tool and the other \
             operation flags are refused; --stock, --stock-margin, --floor, --safe-z, --post, \
             --threads and --pool apply to the whole run.\n\
             Example: --op rough,tool=flat:6,stepdown=1,stepover=40%,t=1 --op \
             raster,tool=ball:3,stepover=0.3,t=2";
    help
}

/// The words a setting takes on the command line, for settings that take words.
fn choices(key: &str) -> Option<Vec<String>> {
    fn names<T: ValueEnum>() -> Vec<String> {
        T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect()
    }
    match key {
        "axis" => Some(names::<AxisArg>()),
        "direction" => Some(names::<DirectionArg>()),
        "pattern" => Some(names::<PatternArg>()),
        "milling" => Some(names::<MillingArg>()),
        _ => None,
    }
}

/// The help of an operation setting's flag, from the setting table: which strategies take it,
/// what it means, its range and its default for each strategy.
fn flag_help(s: &Setting) -> String {
    if let Some(help) = s.cli_help {
        return help.to_string();
    }
    let mut help = String::new();
    let used: Vec<StrategyArg> = StrategyArg::ALL
        .into_iter()
        .filter(|k| s.applies_to(k.kind()))
        .collect();
    if s.strategies != Strategies::ALL {
        let names: Vec<&str> = used.iter().map(|k| k.name()).collect();
        let names = names.join(" and ");
        let mut first = names.chars();
        if let Some(c) = first.next() {
            help += &format!("{}{}: ", c.to_uppercase(), first.as_str());
        }
        let mut first = s.help.chars();
        if let Some(c) = first.next() {
            help += &format!("{}{}", c.to_lowercase(), first.as_str());
        }
    } else {
        help += s.help;
    }
    if s.range.is_some() {
        help += &format!(" ({})", s.format_range());
    }
    help += ".";
    let defaults: Vec<(StrategyArg, String)> = used
        .iter()
        .filter_map(|k| {
            if s.required_on_command_line.contains(k.kind()) {
                Some((*k, "required".to_string()))
            } else {
                s.default_for(k.kind()).map(|d| (*k, d.to_string()))
            }
        })
        .collect();
    if let Some((_, first)) = defaults.first() {
        if defaults.iter().all(|(_, d)| d == first) {
            help += &format!(" [default: {first}]");
        } else {
            let each: Vec<String> = defaults
                .iter()
                .map(|(k, d)| format!("{}: {d}", k.name()))
                .collect();
            help += &format!(" [default: {}]", each.join("; "));
        }
    }
    help
}

/// The value parser of a number setting's flag: the table's range and message.
fn number(s: &'static Setting) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    move |text| s.parse(text).map_err(|e| e.to_string())
}

/// An operation setting's flag made from the setting table, so that each field of
/// [`ToolpathArgs`] names only its setting: `#[arg(setting_flag = &TOOL)]` (clap calls the
/// builder method an attribute names, and these are its methods).
trait SettingFlag {
    /// `--<setting>`, with [`flag_help`] as its help.
    fn setting_flag(self, s: &'static Setting) -> Self;
    /// A number setting's flag: its value is parsed by [`number`], and may be negative (to be
    /// refused with the setting's range rather than taken for a flag).
    fn number_flag(self, s: &'static Setting) -> Self;
}

impl SettingFlag for clap::Arg {
    fn setting_flag(self, s: &'static Setting) -> Self {
        self.long(s.long()).help(flag_help(s))
    }

    fn number_flag(self, s: &'static Setting) -> Self {
        self.setting_flag(s)
            .value_parser(number(s))
            .allow_hyphen_values(true)
    }
}

/// Everything that describes a job: with `--job` the job file says it, and these are refused.
const JOB_FLAGS: &[&str] = &[
    "model",
    "units",
    "scale",
    "strategy",
    "tool",
    "stepover",
    "stepdown",
    "sampling",
    "allowance",
    "axis",
    "bounds",
    "margin",
    "direction",
    "merge_tolerance",
    "pattern",
    "milling",
    "ramp_angle",
    "rest",
    "feed",
    "plunge_feed",
    "spindle",
    "tool_number",
    "name",
    "ops",
    "stock_margin",
    "stock",
    "floor",
    "safe_z",
    "zero",
    "spindle_dwell",
    "post",
    "program_units",
    "save_job",
];

#[derive(Debug, Args)]
pub struct ToolpathArgs {
    /// STL model (binary or ASCII); default-part.stl, when no such file is here, is the
    /// bundled sample part. Required unless --job is given.
    #[arg(required_unless_present = "job")]
    pub model: Option<PathBuf>,
    /// Run a job file (.millpond, as the window saves it): its model, placement, stock, tools,
    /// every enabled operation in order, work zero, post and spindle dwell, exactly as the
    /// window's Generate all + Export does. The flags that describe a job are refused with
    /// it; -o, --pool, --threads and --quiet apply.
    #[arg(long, value_name = "FILE", conflicts_with_all = JOB_FLAGS)]
    pub job: Option<PathBuf>,
    /// Also save the job these flags or --ops describe to FILE (.millpond; the model's path
    /// relative to it, its content hash recorded), then run it as `--job FILE` would: the
    /// program is the one --job gives, with its work zero line even without --zero. --floor
    /// and --safe-z cannot be saved in a job and are refused with it.
    #[arg(long, value_name = "FILE")]
    pub save_job: Option<PathBuf>,
    /// Units the STL is in (every size given here is in mm).
    #[arg(long, value_enum, default_value = "mm")]
    pub units: Units,
    /// A free scale factor applied after --units, about the model's origin (a file in other
    /// units, or a part cut larger or smaller), 0.0001 to 10000; saved in a job as a
    /// placement step.
    #[arg(long, value_parser = parse_scale)]
    pub scale: Option<f64>,
    /// Strategy of a single operation [default: raster].
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    #[arg(setting_flag = &TOOL, value_parser = parse_cutter)]
    pub tool: Option<Cutter>,
    #[arg(setting_flag = &STEPOVER, value_parser = parse_stepover, allow_hyphen_values = true)]
    pub stepover: Option<Stepover>,
    #[arg(number_flag = &STEPDOWN)]
    pub stepdown: Option<f64>,
    #[arg(number_flag = &SAMPLING)]
    pub sampling: Option<f64>,
    #[arg(number_flag = &ALLOWANCE)]
    pub allowance: Option<f64>,
    #[arg(setting_flag = &AXIS_SETTING, value_enum)]
    pub axis: Option<AxisArg>,
    #[arg(setting_flag = &BOUNDS, value_parser = parse_bounds,
        allow_hyphen_values = true, conflicts_with = "margin")]
    pub bounds: Option<Rect>,
    #[arg(number_flag = &MARGIN)]
    pub margin: Option<f64>,
    #[arg(setting_flag = &DIRECTION_SETTING, value_enum)]
    pub direction: Option<DirectionArg>,
    #[arg(number_flag = &MERGE_TOLERANCE)]
    pub merge_tolerance: Option<f64>,
    #[arg(setting_flag = &PATTERN_SETTING, value_enum)]
    pub pattern: Option<PatternArg>,
    #[arg(setting_flag = &MILLING_SETTING, value_enum)]
    pub milling: Option<MillingArg>,
    #[arg(number_flag = &RAMP_ANGLE)]
    pub ramp_angle: Option<f64>,
    #[arg(number_flag = &REST)]
    pub rest: Option<f64>,
    #[arg(number_flag = &FEED)]
    pub feed: Option<f64>,
    #[arg(number_flag = &PLUNGE_FEED)]
    pub plunge_feed: Option<f64>,
    #[arg(number_flag = &SPINDLE_SPEED)]
    pub spindle: Option<f64>,
    #[arg(setting_flag = &TOOL_NUMBER)]
    pub tool_number: Option<u32>,
    #[arg(setting_flag = &NAME, value_parser = parse_name)]
    pub name: Option<String>,
    #[arg(long = "op", value_name = "SPEC", value_parser = parse_op, long_help = op_help(),
        help = "One operation of several, in order: STRATEGY,KEY=VALUE,... (repeat; --help lists the keys)")]
    pub ops: Vec<OpSpec>,
    /// Stock: the model's box plus margins XY[,TOP[,BOTTOM]] in mm (TOP and BOTTOM default to
    /// 0). Without --stock or --stock-margin the stock is the model's box.
    #[arg(long, value_parser = parse_stock_margin, allow_hyphen_values = true)]
    pub stock_margin: Option<Stock>,
    /// Stock: an explicit box XMIN,XMAX,YMIN,YMAX,ZMIN,ZMAX in mm.
    #[arg(long, value_parser = parse_stock_box, allow_hyphen_values = true, conflicts_with = "stock_margin")]
    pub stock: Option<Stock>,
    /// Lowest tip height in mm [default: the stock bottom].
    #[arg(long, value_parser = parse_number, allow_hyphen_values = true)]
    pub floor: Option<f64>,
    /// Height for rapid moves, mm [default: 5 mm above the stock top].
    #[arg(long, value_parser = parse_number, allow_hyphen_values = true)]
    pub safe_z: Option<f64>,
    /// Program zero XY,Z: XY is model, stock-front-left, stock-front-right, stock-back-left,
    /// stock-back-right or stock-centre; Z is model, stock-top, stock-bottom or model-top
    /// (e.g. stock-front-left,stock-top) [default: the model's own coordinates].
    #[arg(long, value_parser = parse_zero)]
    pub zero: Option<WorkZeroChoice>,
    /// Seconds to wait after each spindle start before the first move, for a spindle that
    /// needs time to reach its speed (`G4 P...`) [default: 0, no wait].
    #[arg(long, value_parser = parse_non_negative, default_value_t = 0.0)]
    pub spindle_dwell: f64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bars (they are only drawn when stderr is a terminal anyway).
    #[arg(long, short)]
    pub quiet: bool,
    /// Post-processor: how the program is written for the controller. A built-in one
    /// (linuxcnc, grbl, mach3, uccnc, marlin, fanuc), one of yours in the config folder's
    /// posts/, or the path of a post file (.toml); `millpond posts` lists them.
    #[arg(
        long,
        visible_alias = "dialect",
        value_name = "NAME|FILE",
        default_value = "linuxcnc"
    )]
    pub post: String,
    /// The units the program is written in: mm (G21) or inch (G20, feeds in inches per
    /// minute) [default: the post's, mm for all built-in ones]. Toolpaths are computed in
    /// mm either way.
    #[arg(long, value_parser = parse_program_units)]
    pub program_units: Option<ProgramUnits>,
    /// The machine the time is estimated for: hobby (GRBL router: 5000/5000/1500 mm/min
    /// rapids, 500/500/200 mm/s²) or stiff (15000/15000/5000 mm/min, 2000/2000/1000 mm/s²).
    #[arg(long, value_enum, default_value = "hobby")]
    pub machine: MachineArg,
    /// The machine's X and Y rapid rate (and fastest feed), mm/min [default: the --machine's].
    #[arg(long, value_parser = parse_positive, allow_hyphen_values = true)]
    pub rapid_rate: Option<f64>,
    /// The machine's X and Y acceleration, mm/s² [default: the --machine's].
    #[arg(long, value_parser = parse_positive, allow_hyphen_values = true)]
    pub acceleration: Option<f64>,
    /// Output G-code file.
    #[arg(short, long, required = true)]
    pub output: Option<PathBuf>,
    /// Compute in the pool: join the member at HOST:PORT and share the work (each operation
    /// is its own job).
    #[arg(long)]
    pub pool: Option<String>,
    /// With --pool: the share of the results other members send that this computer computes
    /// again and compares bit for bit, as a fraction or a percentage (0 to 1, or 0% to 100%);
    /// also the first result of each member in each job unless 0. A member caught with a
    /// wrong result is cut off, named, and everything it sent is computed again.
    #[arg(long, default_value = "3%", value_parser = crate::pool::parse_verify)]
    pub verify: f64,
    #[command(flatten)]
    pub secret: crate::pool::SecretArgs,
}

/// Machine profiles for the time estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MachineArg {
    Hobby,
    Stiff,
}

impl ToolpathArgs {
    /// The machine profile the options describe.
    pub fn machine(&self) -> MachineProfile {
        let mut m = match self.machine {
            MachineArg::Hobby => MachineProfile::hobby(),
            MachineArg::Stiff => MachineProfile::stiff(),
        };
        if let Some(r) = self.rapid_rate {
            m.rapid_rate[..2].fill(r);
            m.max_feed[..2].fill(r);
        }
        if let Some(a) = self.acceleration {
            m.acceleration[..2].fill(a);
        }
        m
    }
}

// ----- values -----

fn parse_cutter(s: &str) -> Result<Cutter, String> {
    s.parse::<Cutter>().map_err(|e| e.to_string())
}

fn parse_stepover(s: &str) -> Result<Stepover, String> {
    s.parse()
}

fn parse_number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("expected a number, got \"{s}\"")),
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match parse_number(s) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err(format!("expected a positive number, got \"{s}\"")),
    }
}

fn parse_non_negative(s: &str) -> Result<f64, String> {
    match parse_number(s) {
        Ok(v) if v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number, 0 or more, got \"{s}\"")),
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("the name is empty".into()),
        name => Ok(name.to_string()),
    }
}

fn parse_zero(s: &str) -> Result<WorkZeroChoice, String> {
    let (xy, z) = s
        .split_once(',')
        .ok_or_else(|| format!("expected XY,Z (e.g. stock-front-left,stock-top), got \"{s}\""))?;
    let xy = match xy.trim() {
        "model" => XyZero::Model,
        "stock-front-left" => XyZero::StockFrontLeft,
        "stock-front-right" => XyZero::StockFrontRight,
        "stock-back-left" => XyZero::StockBackLeft,
        "stock-back-right" => XyZero::StockBackRight,
        "stock-centre" | "stock-center" => XyZero::StockCentre,
        other => {
            return Err(format!(
                "unknown XY zero \"{other}\": expected model, stock-front-left, \
                 stock-front-right, stock-back-left, stock-back-right or stock-centre"
            ));
        }
    };
    let z = match z.trim() {
        "model" => ZZero::Model,
        "stock-top" => ZZero::StockTop,
        "stock-bottom" => ZZero::StockBottom,
        "model-top" => ZZero::ModelTop,
        other => {
            return Err(format!(
                "unknown Z zero \"{other}\": expected model, stock-top, stock-bottom or model-top"
            ));
        }
    };
    Ok(WorkZeroChoice { xy, z })
}

fn parse_tool_number(s: &str) -> Result<u32, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("expected a tool number (a whole number, 0 or more), got \"{s}\""))
}

fn parse_choice<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s.trim(), true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        format!("expected {}, got \"{s}\"", names.join(" or "))
    })
}

fn parse_scale(s: &str) -> Result<f64, String> {
    let f: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number, got \"{s}\""))?;
    millpond_core::placement::check_scale(f)
}

fn parse_program_units(s: &str) -> Result<ProgramUnits, String> {
    s.parse()
}

fn parse_stock_margin(s: &str) -> Result<Stock, String> {
    let v = number_list(s, ',', "XY[,TOP[,BOTTOM]] (margins in mm)")?;
    if v.is_empty() || v.len() > 3 || v.iter().any(|m| *m < 0.0) {
        return Err(format!(
            "expected XY[,TOP[,BOTTOM]]: one to three margins, 0 or more mm, got \"{s}\""
        ));
    }
    let m = |i: usize| v.get(i).copied().unwrap_or(0.0);
    Ok(Stock::around_model(m(0), m(1), m(2)))
}

pub(crate) fn parse_stock_box(s: &str) -> Result<Stock, String> {
    let v = numbers(s, ',', 6, "XMIN,XMAX,YMIN,YMAX,ZMIN,ZMAX (six numbers, mm)")?;
    for (axis, lo, hi) in [('X', v[0], v[1]), ('Y', v[2], v[3]), ('Z', v[4], v[5])] {
        if lo >= hi {
            return Err(format!(
                "the stock's {axis}MIN must be below its {axis}MAX, got \"{s}\""
            ));
        }
    }
    Ok(Stock::explicit(Aabb {
        min: Point3::new(v[0], v[2], v[4]),
        max: Point3::new(v[1], v[3], v[5]),
    }))
}

// ----- one operation's settings, from flags or from an --op -----

/// The setting with this `--op` key.
fn key(name: &str) -> Option<&'static Setting> {
    params::setting(name)
}

fn applies(s: &Setting, strategy: StrategyArg) -> bool {
    s.applies_to(strategy.kind())
}

/// The `--op` keys a strategy takes, for messages.
fn keys_of(strategy: StrategyArg) -> String {
    OPERATION_SETTINGS
        .iter()
        .filter(|s| applies(s, strategy))
        .map(|s| s.key)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything a user may say about one operation; `None` where they said nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpOptions {
    pub tool: Option<Cutter>,
    pub tool_number: Option<u32>,
    pub name: Option<String>,
    pub feed: Option<f64>,
    pub plunge_feed: Option<f64>,
    pub spindle: Option<f64>,
    pub stepover: Option<Stepover>,
    pub stepdown: Option<f64>,
    pub sampling: Option<f64>,
    pub allowance: Option<f64>,
    pub axis: Option<AxisArg>,
    pub direction: Option<DirectionArg>,
    pub merge_tolerance: Option<f64>,
    pub margin: Option<f64>,
    pub bounds: Option<Rect>,
    pub pattern: Option<PatternArg>,
    pub milling: Option<MillingArg>,
    pub ramp_angle: Option<f64>,
    pub rest: Option<f64>,
}

impl OpOptions {
    /// The keys of the settings given.
    fn given(&self) -> Vec<&'static str> {
        let set = [
            ("tool", self.tool.is_some()),
            ("t", self.tool_number.is_some()),
            ("name", self.name.is_some()),
            ("feed", self.feed.is_some()),
            ("plunge", self.plunge_feed.is_some()),
            ("spindle", self.spindle.is_some()),
            ("stepover", self.stepover.is_some()),
            ("stepdown", self.stepdown.is_some()),
            ("sampling", self.sampling.is_some()),
            ("allowance", self.allowance.is_some()),
            ("axis", self.axis.is_some()),
            ("direction", self.direction.is_some()),
            ("merge-tolerance", self.merge_tolerance.is_some()),
            ("margin", self.margin.is_some()),
            ("bounds", self.bounds.is_some()),
            ("pattern", self.pattern.is_some()),
            ("milling", self.milling.is_some()),
            ("ramp-angle", self.ramp_angle.is_some()),
            ("rest", self.rest.is_some()),
        ];
        set.into_iter()
            .filter(|(_, s)| *s)
            .map(|(k, _)| k)
            .collect()
    }

    /// Sets one `--op` key from its text.
    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "tool" => self.tool = Some(parse_cutter(v)?),
            "t" => self.tool_number = Some(parse_tool_number(v)?),
            "name" => self.name = Some(parse_name(v)?),
            "feed" => self.feed = Some(number(&FEED)(v)?),
            "plunge" => self.plunge_feed = Some(number(&PLUNGE_FEED)(v)?),
            "spindle" => self.spindle = Some(number(&SPINDLE_SPEED)(v)?),
            "stepover" => self.stepover = Some(parse_stepover(v)?),
            "stepdown" => self.stepdown = Some(number(&STEPDOWN)(v)?),
            "sampling" => self.sampling = Some(number(&SAMPLING)(v)?),
            "allowance" => self.allowance = Some(number(&ALLOWANCE)(v)?),
            "axis" => self.axis = Some(parse_choice(v)?),
            "direction" => self.direction = Some(parse_choice(v)?),
            "merge-tolerance" => self.merge_tolerance = Some(number(&MERGE_TOLERANCE)(v)?),
            "margin" => self.margin = Some(number(&MARGIN)(v)?),
            "bounds" => self.bounds = Some(bounds(v, ':')?),
            "pattern" => self.pattern = Some(parse_choice(v)?),
            "milling" => self.milling = Some(parse_choice(v)?),
            "ramp-angle" => self.ramp_angle = Some(number(&RAMP_ANGLE)(v)?),
            "rest" => self.rest = Some(number(&REST)(v)?),
            _ => return Err(format!("unknown key \"{key}\"")),
        }
        Ok(())
    }
}

/// How settings are named in messages: as flags or as `--op` keys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Flags,
    Op,
}

impl Form {
    fn name(self, key: &str) -> String {
        match (self, self::key(key)) {
            (Form::Flags, Some(k)) => k.flag.to_string(),
            _ => format!("{key}="),
        }
    }
}

/// One operation, ready to plan once the model is loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct OpDef {
    pub name: String,
    pub strategy: Strategy,
    pub cutter: Cutter,
    /// As given; [`number_tools`] fills the rest.
    pub tool_number: Option<u32>,
    pub feeds: Feeds,
    /// Where it came from, for messages: `--op "waterline,…"`, or the operation's name when
    /// it came from flags.
    pub origin: String,
}

/// Checks the settings against the strategy and builds the operation: the one place where
/// defaults and required settings are decided, for flags and `--op` alike.
fn build(
    strategy: StrategyArg,
    o: &OpOptions,
    form: Form,
    origin: String,
) -> Result<OpDef, String> {
    for k in o.given() {
        if !key(k).is_some_and(|k| applies(k, strategy)) {
            return Err(match form {
                Form::Flags => format!(
                    "{} does not apply to --strategy {}",
                    form.name(k),
                    strategy.name()
                ),
                Form::Op => format!(
                    "key \"{k}\" does not apply to {}; it takes {}",
                    strategy.name(),
                    keys_of(strategy)
                ),
            });
        }
    }
    let required = |what: &str, example: &str| {
        format!("{} needs {} ({example})", strategy.name(), form.name(what))
    };
    let cutter = o.tool.ok_or_else(|| match form {
        Form::Flags => {
            "--tool is required (e.g. --tool ball:3), or describe operations with --op".to_string()
        }
        Form::Op => required("tool", "e.g. tool=flat:6"),
    })?;
    let strategy_params = match strategy {
        StrategyArg::Raster => {
            let d = RasterParams::default();
            let stepover = o.stepover.ok_or_else(|| {
                required(
                    "stepover",
                    "the distance between passes: mm, or percent of the tool diameter such as 10%",
                )
            })?;
            Strategy::RasterFinishing(RasterParams {
                stepover: stepover.mm(&cutter),
                sampling: o.sampling.unwrap_or(d.sampling),
                axis: o.axis.map_or(d.axis, LineAxis::from),
                direction: o.direction.map_or(d.direction, Direction::from),
                merge_tolerance: o.merge_tolerance.unwrap_or(d.merge_tolerance),
                // --margin is measured from the model's box, the parameter beyond the tool.
                extra_margin: o.margin.map_or(d.extra_margin, |m| m - cutter.radius()),
                allowance: o.allowance.unwrap_or(d.allowance),
                bounds: o.bounds,
            })
        }
        StrategyArg::Waterline => {
            let d = WaterlineParams::default();
            Strategy::WaterlineFinishing(WaterlineParams {
                stepdown: o.stepdown.unwrap_or(d.stepdown),
                sampling: o.sampling.unwrap_or(d.sampling),
                milling: o.milling.map_or(d.milling, Milling::from),
                allowance: o.allowance.unwrap_or(d.allowance),
            })
        }
        StrategyArg::Rough => {
            let d = RoughingParams::default();
            let stepdown = o
                .stepdown
                .ok_or_else(|| required("stepdown", "the depth of each layer in mm"))?;
            Strategy::Roughing(RoughingParams {
                stepdown,
                stepover: o.stepover.unwrap_or(d.stepover),
                allowance: o.allowance.unwrap_or(d.allowance),
                pattern: o.pattern.map_or(d.pattern, ClearPattern::from),
                milling: o.milling.map_or(d.milling, Milling::from),
                sampling: o.sampling.unwrap_or(d.sampling),
                ramp_angle: o.ramp_angle.unwrap_or(d.ramp_angle),
                rest: o.rest.or(d.rest),
            })
        }
    };
    if o.margin.is_some() && o.bounds.is_some() {
        return Err(format!(
            "give {} or {}, not both",
            form.name("bounds"),
            form.name("margin")
        ));
    }
    let d = Feeds::default();
    let feeds = Feeds {
        feed: o.feed.unwrap_or(d.feed),
        plunge_feed: o.plunge_feed.unwrap_or(d.plunge_feed),
        spindle_rpm: o.spindle.unwrap_or(d.spindle_rpm),
        ..d
    };
    feeds.validate()?;
    let name = o
        .name
        .clone()
        .unwrap_or_else(|| strategy_params.label().to_string());
    Ok(OpDef {
        origin: if origin.is_empty() {
            name.clone()
        } else {
            origin
        },
        name,
        strategy: strategy_params,
        cutter,
        tool_number: o.tool_number,
        feeds,
    })
}

/// An `--op` as given: checked and built as it is read, so a bad one stops the run before the
/// model is even loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct OpSpec {
    pub text: String,
    pub op: OpDef,
}

fn parse_op(s: &str) -> Result<OpSpec, String> {
    let mut items = s.split(',').map(str::trim);
    let first = items.next().unwrap_or_default();
    let strategy: StrategyArg = parse_choice(first).map_err(|_| {
        format!("start with the strategy: raster, waterline or rough (got \"{first}\")")
    })?;
    let mut o = OpOptions::default();
    let mut seen: Vec<&str> = Vec::new();
    for item in items {
        if item.is_empty() {
            return Err("an empty item between commas".into());
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "\"{item}\" has no value: write {item}=VALUE ({} takes {})",
                strategy.name(),
                keys_of(strategy)
            ));
        };
        let k = k.trim();
        let Some(known) = key(k) else {
            return Err(format!(
                "unknown key \"{k}\": {} takes {}",
                strategy.name(),
                keys_of(strategy)
            ));
        };
        if !applies(known, strategy) {
            return Err(format!(
                "key \"{k}\" does not apply to {}; it takes {}",
                strategy.name(),
                keys_of(strategy)
            ));
        }
        if v.trim().is_empty() {
            return Err(format!("key \"{k}\" has no value"));
        }
        if seen.contains(&known.key) {
            return Err(format!("key \"{k}\" is given twice"));
        }
        seen.push(known.key);
        o.set(known.key, v)
            .map_err(|e| format!("key \"{k}\": {e}"))?;
    }
    let op = build(strategy, &o, Form::Op, format!("--op \"{s}\""))?;
    Ok(OpSpec {
        text: s.to_string(),
        op,
    })
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Self {
        match d {
            DirectionArg::Zigzag => Direction::Zigzag,
            DirectionArg::Climb => Direction::Climb,
            DirectionArg::Conventional => Direction::Conventional,
        }
    }
}

impl From<MillingArg> for Milling {
    fn from(m: MillingArg) -> Self {
        match m {
            MillingArg::Climb => Milling::Climb,
            MillingArg::Conventional => Milling::Conventional,
        }
    }
}

impl From<PatternArg> for ClearPattern {
    fn from(p: PatternArg) -> Self {
        match p {
            PatternArg::Zigzag => ClearPattern::Zigzag,
            PatternArg::Offset => ClearPattern::Offset,
        }
    }
}

impl ToolpathArgs {
    /// The operation settings given as flags.
    fn flag_options(&self) -> OpOptions {
        OpOptions {
            tool: self.tool,
            tool_number: self.tool_number,
            name: self.name.clone(),
            feed: self.feed,
            plunge_feed: self.plunge_feed,
            spindle: self.spindle,
            stepover: self.stepover,
            stepdown: self.stepdown,
            sampling: self.sampling,
            allowance: self.allowance,
            axis: self.axis,
            direction: self.direction,
            merge_tolerance: self.merge_tolerance,
            margin: self.margin,
            bounds: self.bounds,
            pattern: self.pattern,
            milling: self.milling,
            ramp_angle: self.ramp_angle,
            rest: self.rest,
        }
    }

    /// The operations of this run, in order, with their tool numbers.
    pub fn operations(&self) -> Result<Vec<(OpDef, u32)>> {
        let flags = self.flag_options();
        let ops = if self.ops.is_empty() {
            let strategy = self.strategy.unwrap_or(StrategyArg::Raster);
            // Messages name the operation itself: the user may not have typed --strategy.
            vec![build(strategy, &flags, Form::Flags, String::new()).map_err(anyhow::Error::msg)?]
        } else {
            let mut given: Vec<String> =
                flags.given().iter().map(|k| Form::Flags.name(k)).collect();
            if self.strategy.is_some() {
                given.insert(0, "--strategy".into());
            }
            if let Some(flag) = given.first() {
                bail!(
                    "{flag} cannot be combined with --op: with --op, put every operation setting \
                     in its --op (e.g. --op raster,tool=ball:3,stepover=0.3)"
                );
            }
            self.ops.iter().map(|o| o.op.clone()).collect()
        };
        number_tools(ops).map_err(anyhow::Error::msg)
    }

    fn stock(&self) -> Stock {
        self.stock
            .clone()
            .or_else(|| self.stock_margin.clone())
            .unwrap_or_else(|| Stock::around_model(0.0, 0.0, 0.0))
    }
}

/// Gives every operation a tool number: the one it names, the one an earlier operation with
/// the same tool got, or the lowest number no other tool uses. One number never means two
/// different tools: the machine would cut with the wrong one.
fn number_tools(ops: Vec<OpDef>) -> Result<Vec<(OpDef, u32)>, String> {
    let mut table: BTreeMap<u32, (Cutter, String)> = BTreeMap::new();
    for op in &ops {
        if let Some(n) = op.tool_number {
            match table.get(&n) {
                Some((c, origin)) if *c != op.cutter => {
                    return Err(format!(
                        "tool number {n} is given to two different tools: {} in {origin} and {} \
                         in {}",
                        c, op.cutter, op.origin
                    ));
                }
                Some(_) => {}
                None => {
                    table.insert(n, (op.cutter, op.origin.clone()));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let n = match op.tool_number {
            Some(n) => n,
            None => match table.iter().find(|(_, (c, _))| *c == op.cutter) {
                Some((&n, _)) => n,
                None => {
                    let n = (1..)
                        .find(|n| !table.contains_key(n))
                        .ok_or("no tool number left")?;
                    table.insert(n, (op.cutter, op.origin.clone()));
                    n
                }
            },
        };
        out.push((op, n));
    }
    Ok(out)
}

// ----- the job these flags describe -----

/// The tool an operation given by flags or `--op` cuts with, as a job holds it: its number
/// is its id; the feeds are those of the first operation that uses it.
fn job_tool(number: u32, op: &OpDef) -> Tool {
    let (shape, diameter, corner_radius, included_angle) = match op.cutter {
        Cutter::Flat { diameter } => (ToolShape::Flat, diameter, 1.0, 60.0),
        Cutter::Ball { diameter } => (ToolShape::Ball, diameter, 1.0, 60.0),
        Cutter::Bull {
            diameter,
            corner_radius,
        } => (ToolShape::Bull, diameter, corner_radius, 60.0),
        Cutter::VBit {
            diameter,
            included_angle,
        } => (ToolShape::VBit, diameter, 1.0, included_angle),
    };
    let mut tool = Tool {
        id: u64::from(number),
        number,
        name: String::new(),
        shape,
        diameter,
        corner_radius,
        included_angle,
        feed: op.feeds.feed,
        plunge_feed: op.feeds.plunge_feed,
        spindle_rpm: op.feeds.spindle_rpm,
        // 0: the usual for its shape and size, as the command line has always checked.
        max_depth_of_cut: 0.0,
        flutes: 2,
        stick_out: 0.0,
        auto_name: true,
    };
    tool.rename_if_automatic();
    tool
}

impl ToolpathArgs {
    /// The job that `ops` (from [`ToolpathArgs::operations`]) and the other flags describe,
    /// on `model`. Operations whose feeds differ from their tool's keep their own.
    fn job(&self, ops: &[(OpDef, u32)], model: ModelFile, post: &PostProcessor) -> Job {
        let mut tools: Vec<Tool> = Vec::new();
        for (op, number) in ops {
            if !tools.iter().any(|t| t.number == *number) {
                tools.push(job_tool(*number, op));
            }
        }
        let operations = ops
            .iter()
            .enumerate()
            .map(|(k, (op, number))| {
                let tool = tools.iter().find(|t| t.number == *number);
                let own = OperationFeeds {
                    feed: op.feeds.feed,
                    plunge_feed: op.feeds.plunge_feed,
                    spindle_rpm: op.feeds.spindle_rpm,
                };
                OperationDef {
                    id: k as u64 + 1,
                    name: op.name.clone(),
                    enabled: true,
                    visible: true,
                    tool: u64::from(*number),
                    strategy: op.strategy.clone(),
                    feeds: (tool.map(OperationFeeds::of) != Some(own)).then_some(own),
                }
            })
            .collect();
        Job {
            model: ModelRef {
                file: model,
                units: self.units.into(),
                placement: self.scale.map(Placement::Scale).into_iter().collect(),
            },
            stock: Stock {
                zero: self.zero.unwrap_or_default(),
                ..self.stock()
            },
            tools,
            operations,
            output: Output {
                post: self.post.clone(),
                units: self.program_units.unwrap_or(post.default_units()),
                spindle_dwell_s: self.spindle_dwell,
            },
        }
    }
}

/// Saves `job` to `path` and reads it back: what runs is what `--job path` will run. A job
/// the file format cannot hold (a size out of its range) fails here, before anything is
/// written.
fn save_job(job: &Job, path: &Path) -> Result<Job> {
    let text = job.to_toml(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let back = Job::parse(&text, &path.display().to_string(), dir)
        .map_err(|e| anyhow!("cannot save the job: as written it would not read back: {e}"))?;
    job_file::write_atomically(path, text.as_bytes())
        .with_context(|| format!("{}: cannot save the job", path.display()))?;
    Ok(back)
}

// ----- the run -----

/// Loads the model a job names and says what the user should know about it on stderr.
pub(crate) fn load_job_model(job: &Job, units_hint: &str) -> Result<JobModel> {
    let model = run_job::load_model(job)?;
    let name = model.mesh.name().to_string();
    if let Some(note) = &model.load_note {
        eprintln!("millpond: note: {name}: {note}");
    }
    if let Some(hint) = &model.size_hint {
        eprintln!("millpond: note: {name}: {hint} ({units_hint})");
    }
    if model.skipped_degenerate > 0 {
        eprintln!(
            "millpond: {name}: skipped {} degenerate triangles",
            model.skipped_degenerate
        );
    }
    if let Some(changed) = &model.changed {
        eprintln!("warning: {changed}");
    }
    Ok(model)
}

/// Computes every operation of `program` on `executor`, in order, with a progress bar each
/// (unless `quiet`): the toolpaths as computed, with each one's compute time in seconds.
/// `origins` names each of the job's operations in messages (by its index in the job).
pub(crate) fn compute_toolpaths(
    program: &run_job::Program,
    model: &JobModel,
    origins: &[String],
    executor: &dyn Executor,
    quiet: bool,
) -> Result<Vec<(Toolpath, f64)>> {
    let jobs = program
        .ops
        .iter()
        .map(|(k, op)| {
            JobContext::new(model.mesh.clone(), model.index.clone(), op.spec.clone())
                .with_context(|| origins[*k].clone())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut toolpaths: Vec<(Toolpath, f64)> = Vec::with_capacity(jobs.len());
    for (n, (ctx, (k, op))) in jobs.into_iter().zip(&program.ops).enumerate() {
        let t0 = Instant::now();
        let label = format!("{}. {}", n + 1, op.name);
        let ctx = match rest_material(program, n, &toolpaths, model)? {
            Some(rest) => {
                if !quiet {
                    let before = match n {
                        0 => "nothing before it (the uncut stock)".to_string(),
                        1 => "the operation before it".to_string(),
                        n => format!("the {n} operations before it"),
                    };
                    eprintln!(
                        "{label}: rest roughing: {before} simulated on {:.3} mm cells in {:.2} s",
                        rest.cell,
                        t0.elapsed().as_secs_f64()
                    );
                }
                ctx.with_rest(Arc::new(rest))
                    .with_context(|| origins[*k].clone())?
            }
            None => ctx,
        };
        let output = super::run(&ctx, executor, &label, quiet)?;
        let JobOutput::Toolpath(tp) = output else {
            bail!("internal error: {} produced no toolpath", origins[*k]);
        };
        toolpaths.push((tp, t0.elapsed().as_secs_f64()));
    }
    Ok(toolpaths)
}

/// What the operations before operation `n` of `program` left for it, where it is rest
/// roughing (`computed`: their toolpaths), simulated on all cores.
pub(crate) fn rest_material(
    program: &run_job::Program,
    n: usize,
    computed: &[(Toolpath, f64)],
    model: &JobModel,
) -> Result<Option<millpond_core::rest::RestMaterial>> {
    let earlier: Vec<&Toolpath> = computed.iter().map(|(tp, _)| tp).collect();
    program
        .rest_material(
            n,
            &earlier,
            &model.mesh,
            &model.index,
            &millpond_core::CancelToken::new(),
        )
        .map_err(|e| anyhow!("{e}"))
}

/// A job as `millpond toolpath` takes it (`--job FILE`, flags or `--op`s), read, its model
/// loaded and placed, and every operation planned: what `toolpath` then computes here or in
/// the pool, and what `millpond submit` sends to a member to run detached.
pub(crate) struct Prepared {
    pub job: Job,
    pub model: JobModel,
    /// How each of the job's operations is named in messages.
    pub origins: Vec<String>,
    /// How the program departs from the job (flags a job file cannot hold).
    pub departures: Departures,
    /// The post the job's output names, as found here.
    pub post: PostProcessor,
    pub program: run_job::Program,
}

/// Reads the job `args` describe and plans it (every operation before any is computed: a
/// bad one fails the run at once).
pub(crate) fn prepare(args: &ToolpathArgs, posts: &PostLibrary) -> Result<Prepared> {
    // The job, its model, how each operation is named in messages, and how the program
    // departs from the job (flags a job file cannot hold).
    let (job, model, origins, departures) = match &args.job {
        Some(path) => {
            let job = Job::load(path)?;
            let model = load_job_model(&job, "the job's units")
                .with_context(|| format!("{}: the job's model", path.display()))?;
            let origins: Vec<String> = job.operations.iter().map(|o| o.name.clone()).collect();
            let departures = Departures::of_job(&job);
            (job, model, origins, departures)
        }
        None => {
            let Some(model_path) = &args.model else {
                bail!("give the model (an STL file) or --job FILE");
            };
            if args.save_job.is_some() {
                for (given, flag) in [
                    (args.floor.is_some(), "--floor"),
                    (args.safe_z.is_some(), "--safe-z"),
                ] {
                    if given {
                        bail!(
                            "{flag} cannot be saved in a job (a job's floor is its stock bottom, \
                             its safe height is measured from the stock top): give the stock \
                             with --stock or --stock-margin instead, or leave out --save-job"
                        );
                    }
                }
            }
            let ops = args.operations()?;
            let file = if model_path == Path::new(DEFAULT_MODEL_NAME) && !model_path.exists() {
                ModelFile::Sample
            } else {
                ModelFile::Stl {
                    path: std::path::absolute(model_path)
                        .with_context(|| format!("cannot open {}", model_path.display()))?,
                    hash: None,
                }
            };
            let post = posts.find(&args.post)?;
            let mut job = args.job(&ops, file, &post);
            let model = load_job_model(&job, "--units")?;
            if let ModelFile::Stl { hash, .. } = &mut job.model.file {
                *hash = Some(model.read_hash);
            }
            let origins: Vec<String> = ops.iter().map(|(o, _)| o.origin.clone()).collect();
            match &args.save_job {
                Some(path) => {
                    let job = save_job(&job, path)?;
                    let departures = Departures::of_job(&job);
                    (job, model, origins, departures)
                }
                None => {
                    let departures = Departures {
                        floor: args.floor,
                        safe_z: args.safe_z,
                        zero: args.zero,
                    };
                    (job, model, origins, departures)
                }
            }
        }
    };

    // Plan every operation before computing any: a bad one fails the run at once.
    let setup = run_job::setup(&job, model.mesh.hash(), model.mesh.bounds())?;
    let (setup, zero_at) = departures.apply(setup)?;
    let post = run_job::find_post(&job, posts)?;
    let program = run_job::plan_in(&job, setup, zero_at, post.clone()).map_err(|e| {
        let origin = &origins[e.operation];
        anyhow!("{origin}: {}", e.message)
    })?;
    if program.ops.is_empty() {
        bail!("the job has no enabled operation: there is no program to write");
    }
    Ok(Prepared {
        job,
        model,
        origins,
        departures,
        post,
        program,
    })
}

pub fn toolpath_command(args: &ToolpathArgs) -> Result<()> {
    let threads = threads(args.threads)?;
    let posts = run_job::post_library(&crate::pool::config_dir());
    let Prepared {
        model,
        origins,
        program,
        ..
    } = prepare(args, &posts)?;
    let Some(output) = &args.output else {
        bail!("give the G-code file to write with -o FILE");
    };
    let computer = Computer::new(args.pool.as_deref(), &args.secret, threads, args.verify)?;
    let t_all = Instant::now();
    let toolpaths = compute_toolpaths(&program, &model, &origins, computer.executor(), args.quiet)?;
    let compute_s = t_all.elapsed().as_secs_f64();
    computer.finish();

    // Every operation starts from the stock the ones before it left: its straight-down
    // rapids stop above the material there, and a move buried deeper than its tool can cut,
    // or a rapid into material, is said before anyone runs the program.
    let computed: Vec<&Toolpath> = toolpaths.iter().map(|(tp, _)| tp).collect();
    let machine = args.machine();
    let (posted, times) = program
        .post_timed(&computed, &machine)
        .map_err(|e| anyhow!("cannot check the program against the stock: {e}"))?;
    for w in program.warnings(&posted) {
        eprintln!("warning: {w}");
    }
    // The posted toolpaths are the ones written: the computed ones go (a large program held
    // twice would double the run's peak memory); only their compute times stay.
    drop(computed);
    let seconds: Vec<f64> = toolpaths.into_iter().map(|(_, s)| s).collect();
    // Arcs where the post writes them, each checked against the model.
    let arcs = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?
        .install(|| program.arcs(&posted, &model.mesh, &model.index));
    run_job::write(output, &program, &posted, &arcs, &machine, &times)?;

    // The planner's time: as the machine would run the program, accelerating and slowing
    // for corners (millpond_core::planner); "without acceleration" is length ÷ feed.
    let (mut moves, mut retracts) = (0, 0);
    let (mut cut, mut plunge, mut rapid) = (0.0, 0.0, 0.0);
    let written = program.gcode_operations(&posted, &arcs);
    for (k, ((p, seconds), t)) in written.iter().zip(&seconds).zip(&times).enumerate() {
        let tp = p.toolpath;
        let s = tp.stats(&p.feeds);
        println!(
            "{}. {}, T{} {}: {} moves ({} retracts) in {seconds:.2} s; cut {:.1} mm, plunge {:.1} mm, \
             rapid {:.1} mm, machining time {} ({} without acceleration)",
            k + 1,
            p.name,
            p.tool_number,
            gcode::describe_tool(&p.cutter),
            s.moves,
            s.retracts,
            s.cut_length,
            s.plunge_length,
            s.rapid_length,
            format_duration(t.total_s),
            format_duration(t.full_speed_s + t.dwell_s)
        );
        moves += s.moves;
        retracts += s.retracts;
        cut += s.cut_length;
        plunge += s.plunge_length;
        rapid += s.rapid_length;
    }
    let time: millpond_core::TimeEstimate = times.iter().copied().sum();
    println!(
        "{}: {} triangles, {} operation{}, {moves} moves ({retracts} retracts) in {compute_s:.2} s \
         on {threads} threads",
        output.display(),
        model.mesh.len(),
        written.len(),
        if written.len() == 1 { "" } else { "s" },
    );
    println!(
        "total: cut {cut:.1} mm, plunge {plunge:.1} mm, rapid {rapid:.1} mm, estimated machining \
         time {} ({} without acceleration; {})",
        format_duration(time.total_s),
        format_duration(time.full_speed_s + time.dwell_s),
        machine.describe()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(s: &str) -> Result<OpDef, String> {
        parse_op(s).map(|o| o.op)
    }

    #[test]
    fn op_specs_read_every_strategy() {
        let r = op("rough,tool=flat:6,stepdown=1,stepover=40%,allowance=0.3,t=1,pattern=zigzag")
            .unwrap();
        assert_eq!(r.cutter, Cutter::Flat { diameter: 6.0 });
        assert_eq!(r.tool_number, Some(1));
        assert_eq!(r.name, "Roughing");
        let Strategy::Roughing(p) = r.strategy else {
            panic!("{r:?}")
        };
        assert_eq!(p.stepover, Stepover::Percent(40.0));
        assert_eq!((p.stepdown, p.allowance), (1.0, 0.3));
        assert_eq!(p.pattern, ClearPattern::Zigzag);
        assert_eq!(p.sampling, RoughingParams::default().sampling);

        let w = op("waterline, tool=ball:3, milling=conventional, name=Walls").unwrap();
        assert_eq!(w.name, "Walls");
        let Strategy::WaterlineFinishing(p) = w.strategy else {
            panic!()
        };
        assert_eq!(p.milling, Milling::Conventional);
        assert_eq!(p.stepdown, WaterlineParams::default().stepdown);

        // Raster: percent of the diameter becomes millimetres; bounds use colons.
        let f = op("raster,tool=ball:3,stepover=10%,axis=y,bounds=-1:2:-3:4,feed=800").unwrap();
        let Strategy::RasterFinishing(p) = f.strategy else {
            panic!()
        };
        assert!((p.stepover - 0.3).abs() < 1e-15);
        assert_eq!(p.axis, LineAxis::Y);
        assert_eq!(p.bounds, Some(Rect::new(-1.0, 2.0, -3.0, 4.0)));
        assert_eq!(f.feeds.feed, 800.0);
        assert_eq!(f.feeds.plunge_feed, Feeds::default().plunge_feed);
    }

    #[test]
    fn bad_op_specs_name_the_key() {
        for (spec, words) in [
            ("", &["strategy"][..]),
            ("drill,tool=flat:3", &["strategy", "drill"]),
            (
                "rough,tool=flat:6,stepdown=1,speed=3",
                &["\"speed\"", "stepdown"],
            ),
            (
                "waterline,tool=ball:3,stepover=1",
                &["\"stepover\"", "waterline"],
            ),
            (
                "rough,tool=flat:6,stepdown",
                &["\"stepdown\"", "stepdown=VALUE"],
            ),
            ("rough,tool=flat:6,stepdown=", &["\"stepdown\"", "no value"]),
            ("rough,tool=flat:6,stepdown=abc", &["\"stepdown\"", "abc"]),
            (
                "rough,tool=flat:6,stepdown=-2",
                &["\"stepdown\"", "-2 is out of range (0.01 to 1000 mm)"],
            ),
            (
                "rough,tool=flat:6,stepdown=1,stepdown=2",
                &["\"stepdown\"", "twice"],
            ),
            ("rough,tool=cone:6,stepdown=1", &["\"tool\"", "cone:6"]),
            ("rough,stepdown=1", &["tool="]),
            ("rough,tool=flat:6", &["stepdown="]),
            ("raster,tool=ball:3", &["stepover="]),
            (
                "raster,tool=ball:3,stepover=0.3,pattern=offset",
                &["\"pattern\""],
            ),
            (
                "rough,tool=flat:6,stepdown=1,pattern=spiral",
                &["\"pattern\"", "spiral"],
            ),
            ("rough,tool=flat:6,stepdown=1,t=-1", &["\"t\""]),
            ("rough,tool=flat:6,stepdown=1,,t=1", &["empty"]),
            (
                "raster,tool=ball:3,stepover=1,margin=1,bounds=0:1:0:1",
                &["bounds=", "margin="],
            ),
        ] {
            let e = op(spec).expect_err(spec);
            for w in words {
                assert!(e.contains(w), "{spec:?}: {e:?} lacks {w:?}");
            }
        }
    }

    /// A value each setting takes, for the tests below.
    fn sample(s: &Setting, kind: StrategyKind) -> String {
        match (s.key, s.default_for(kind)) {
            ("tool", _) => "flat:6".into(),
            ("t", _) => "3".into(),
            ("name", _) => "Walls".into(),
            ("bounds", _) => "0:1:0:1".into(),
            ("rest", _) => "0.2".into(),
            (_, Some(Preset::Number(v))) => v.to_string(),
            (_, Some(Preset::Stepover(Stepover::Percent(p)))) => format!("{p}%"),
            (_, Some(Preset::Stepover(Stepover::Mm(v)))) => v.to_string(),
            (_, Some(Preset::Word(w))) => w.to_string(),
            (key, d) => panic!("no sample value for {key} ({d:?})"),
        }
    }

    #[test]
    fn every_setting_has_its_flag_and_every_flag_its_setting() {
        use clap::{Args, FromArgMatches};
        let cmd = ToolpathArgs::augment_args(clap::Command::new("toolpath"));
        for s in OPERATION_SETTINGS {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(s.long()))
                .unwrap_or_else(|| panic!("no flag {} for the setting \"{}\"", s.flag, s.key));
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert_eq!(help, flag_help(s), "{}", s.flag);
            assert!(
                help.contains(s.cli_help.unwrap_or(&s.help[1..])),
                "{}: {help}",
                s.flag
            );
        }
        // Every flag given (--bounds excludes --margin): each fills its own setting.
        let mut argv = vec![
            "toolpath".to_string(),
            "part.stl".into(),
            "-o".into(),
            "x.ngc".into(),
        ];
        for s in OPERATION_SETTINGS.iter().filter(|s| s.key != "bounds") {
            let kind = s.strategies.kinds().next().unwrap();
            let value = sample(s, kind);
            argv.extend([s.flag.to_string(), value]);
        }
        let m = cmd.try_get_matches_from(argv).unwrap();
        let given = ToolpathArgs::from_arg_matches(&m)
            .unwrap()
            .flag_options()
            .given();
        let keys: Vec<&str> = OPERATION_SETTINGS
            .iter()
            .map(|s| s.key)
            .filter(|k| *k != "bounds")
            .collect();
        assert_eq!(given, keys);
    }

    #[test]
    fn op_keys_apply_to_exactly_the_strategies_the_table_lists() {
        for strategy in StrategyArg::ALL {
            let kind = strategy.kind();
            let base = match strategy {
                StrategyArg::Raster => "raster,tool=ball:3,stepover=0.3",
                StrategyArg::Waterline => "waterline,tool=ball:3",
                StrategyArg::Rough => "rough,tool=flat:6,stepdown=1",
            };
            for s in OPERATION_SETTINGS {
                if base.contains(&format!(",{}=", s.key)) {
                    continue;
                }
                let value = if s.applies_to(kind) {
                    sample(s, kind)
                } else {
                    let used = s.strategies.kinds().next().unwrap();
                    sample(s, used)
                };
                let spec = format!("{base},{}={value}", s.key);
                match op(&spec) {
                    Ok(_) => assert!(s.applies_to(kind), "{spec} accepted"),
                    Err(e) => {
                        assert!(!s.applies_to(kind), "{spec}: {e}");
                        let allowed: Vec<&str> = OPERATION_SETTINGS
                            .iter()
                            .filter(|s| s.applies_to(kind))
                            .map(|s| s.key)
                            .collect();
                        assert_eq!(
                            e,
                            format!(
                                "key \"{}\" does not apply to {}; it takes {}",
                                s.key,
                                strategy.name(),
                                allowed.join(", ")
                            )
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn flags_and_op_keys_give_the_table_s_range_message() {
        use clap::{Args, FromArgMatches};
        let want = STEPDOWN.check(-1.0).unwrap_err().to_string();
        let e = op("rough,tool=flat:6,stepdown=-1").unwrap_err();
        assert_eq!(e, format!("key \"stepdown\": {want}"));
        let cmd = ToolpathArgs::augment_args(clap::Command::new("toolpath"));
        let e = cmd
            .try_get_matches_from(["toolpath", "part.stl", "-o", "x", "--stepdown", "-1"])
            .map(|m| ToolpathArgs::from_arg_matches(&m))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--stepdown") && e.contains(&want), "{e}");
    }

    #[test]
    fn tool_numbers_follow_the_tools() {
        let ops = |specs: &[&str]| {
            number_tools(specs.iter().map(|s| op(s).unwrap()).collect())
                .map(|v| v.into_iter().map(|(_, n)| n).collect::<Vec<_>>())
        };
        assert_eq!(
            ops(&[
                "rough,tool=flat:6,stepdown=1",
                "waterline,tool=ball:3",
                "raster,tool=ball:3,stepover=0.3",
                "rough,tool=flat:3,stepdown=1",
            ]),
            Ok(vec![1, 2, 2, 3])
        );
        // Given numbers are kept and skipped when numbering the others.
        assert_eq!(
            ops(&[
                "rough,tool=flat:6,stepdown=1",
                "waterline,tool=ball:3,t=1",
                "raster,tool=ball:3,stepover=0.3",
            ]),
            Ok(vec![2, 1, 1])
        );
        let e = ops(&[
            "rough,tool=flat:6,stepdown=1,t=4",
            "waterline,tool=ball:3,t=4",
        ])
        .unwrap_err();
        assert!(e.contains("tool number 4") && e.contains("ball:3"), "{e}");
    }
}
