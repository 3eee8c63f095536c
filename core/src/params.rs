//! Every setting of an operation, described once: its `--op` key and flag, its label in the
//! window, its unit and range, its help text, the strategies that use it and its default for
//! each.
//!
//! The command line's flags, `--op` keys and their messages, the window's editors and their
//! tooltips, and the job file's checks all read [`OPERATION_SETTINGS`], so a setting cannot
//! take one range in the window and another in a saved job, and adding one touches this table
//! plus the code that uses its value.
//!
//! Every range is closed (`min` and `max` both allowed): the window's number fields need a
//! lowest value they can reach, and the command line and job files accept exactly what the
//! window can produce.

use crate::job_file::{AXIS, DIRECTION, MILLING, PATTERN};
use crate::setup::{RasterParams, RoughingParams, Stepover, Strategy, WaterlineParams};
use crate::toolpath::Feeds;
use std::fmt;
use thiserror::Error;

/// The kinds of operation, without their parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    Roughing,
    RasterFinishing,
    WaterlineFinishing,
}

impl StrategyKind {
    /// Every kind, in machining order.
    pub const ALL: [StrategyKind; 3] = [
        StrategyKind::Roughing,
        StrategyKind::RasterFinishing,
        StrategyKind::WaterlineFinishing,
    ];

    /// Its word on the command line (`--strategy`, the first word of an `--op`).
    pub fn word(self) -> &'static str {
        match self {
            StrategyKind::Roughing => "rough",
            StrategyKind::RasterFinishing => "raster",
            StrategyKind::WaterlineFinishing => "waterline",
        }
    }

    /// Its name in the window and in the program's comments.
    pub fn label(self) -> &'static str {
        match self {
            StrategyKind::Roughing => "Roughing",
            StrategyKind::RasterFinishing => "Raster finishing",
            StrategyKind::WaterlineFinishing => "Waterline finishing",
        }
    }

    /// The strategy with its default parameters: where every default in the table comes from.
    pub fn default_strategy(self) -> Strategy {
        match self {
            StrategyKind::Roughing => Strategy::Roughing(RoughingParams::default()),
            StrategyKind::RasterFinishing => Strategy::RasterFinishing(RasterParams::default()),
            StrategyKind::WaterlineFinishing => {
                Strategy::WaterlineFinishing(WaterlineParams::default())
            }
        }
    }

    const fn bit(self) -> u8 {
        match self {
            StrategyKind::Roughing => 1,
            StrategyKind::RasterFinishing => 2,
            StrategyKind::WaterlineFinishing => 4,
        }
    }
}

/// A set of strategy kinds: those a setting applies to, or requires it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Strategies(u8);

impl Strategies {
    pub const NONE: Strategies = Strategies(0);
    pub const ROUGHING: Strategies = Strategies::only(StrategyKind::Roughing);
    pub const RASTER: Strategies = Strategies::only(StrategyKind::RasterFinishing);
    pub const WATERLINE: Strategies = Strategies::only(StrategyKind::WaterlineFinishing);
    pub const ALL: Strategies = Strategies(7);

    pub const fn only(kind: StrategyKind) -> Self {
        Strategies(kind.bit())
    }

    /// Both sets together.
    pub const fn and(self, other: Strategies) -> Self {
        Strategies(self.0 | other.0)
    }

    pub const fn contains(self, kind: StrategyKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The kinds in the set, in machining order.
    pub fn kinds(self) -> impl Iterator<Item = StrategyKind> {
        StrategyKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

/// What a number is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A plain number.
    None,
    Mm,
    MmPerMin,
    Rpm,
    /// Degrees of angle.
    Degrees,
    /// Percent of the tool diameter (a stepover given so that it follows the tool).
    PercentOfDiameter,
}

impl Unit {
    /// As written after a number in messages and help ("1000 mm", "90°").
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::None => "",
            Unit::Mm => " mm",
            Unit::MmPerMin => " mm/min",
            Unit::Rpm => " rpm",
            Unit::Degrees => "°",
            Unit::PercentOfDiameter => "% of the tool diameter",
        }
    }
}

/// The values a number may take, both ends included, and its unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
    pub unit: Unit,
}

impl Range {
    pub const fn new(min: f64, max: f64, unit: Unit) -> Self {
        Self { min, max, unit }
    }

    /// `v` if it is a finite number in the range.
    pub fn check(&self, v: f64) -> Result<f64, SettingError> {
        if v.is_finite() && (self.min..=self.max).contains(&v) {
            Ok(v)
        } else {
            Err(SettingError::OutOfRange {
                value: v,
                range: *self,
            })
        }
    }

    /// The number in `text`, checked: how the command line reads a value.
    pub fn parse(&self, text: &str) -> Result<f64, SettingError> {
        match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => self.check(v),
            _ => Err(SettingError::NotANumber(text.to_string())),
        }
    }

    /// The editor's range.
    pub fn inclusive(&self) -> std::ops::RangeInclusive<f64> {
        self.min..=self.max
    }
}

impl fmt::Display for Range {
    /// "0.01 to 1000 mm".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}{}", self.min, self.max, self.unit.suffix())
    }
}

/// Why a value is not one a setting takes. It does not name the setting: each front end
/// names it its own way (`--stepdown`, `key "stepdown"`, `operations[0].roughing.stepdown`).
#[derive(Clone, Debug, Error, PartialEq)]
pub enum SettingError {
    #[error("expected a number, got \"{0}\"")]
    NotANumber(String),
    #[error("{value} is out of range ({range})")]
    OutOfRange { value: f64, range: Range },
}

/// A setting's value when the user gives none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Preset {
    Number(f64),
    Stepover(Stepover),
    /// One of the words the setting takes.
    Word(&'static str),
    /// Worked out when the operation is planned; says from what.
    Derived(&'static str),
    /// Not in use unless given; says what happens then.
    Off(&'static str),
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preset::Number(v) => write!(f, "{v}"),
            Preset::Stepover(s) => write!(f, "{s}"),
            Preset::Word(w) | Preset::Derived(w) | Preset::Off(w) => f.write_str(w),
        }
    }
}

/// One setting of an operation.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// Its key in an `--op` ("merge-tolerance").
    pub key: &'static str,
    /// Its flag for a single operation ("--merge-tolerance").
    pub flag: &'static str,
    /// Its name in the window ("Merge tolerance").
    pub label: &'static str,
    /// What it means to a machinist: the window's tooltip and the flag's help.
    pub help: &'static str,
    /// The flag's whole help where the command line takes the value in another form than the
    /// window (the tool as `ball:3`, the margin measured from the model's box rather than
    /// beyond the tool radius); it then says its own default.
    pub cli_help: Option<&'static str>,
    /// For a number: the values it may take, with its unit. `None` for tools, words and names.
    pub range: Option<Range>,
    /// The strategies that use it.
    pub strategies: Strategies,
    /// The strategies for which the command line has no default and needs it given.
    pub required_on_command_line: Strategies,
    /// Its default for a strategy that uses it (`None`: no default, or not used), read from
    /// the strategies' `Default`s in [`setup`](crate::setup) and [`Feeds::default`].
    pub default: fn(StrategyKind) -> Option<Preset>,
}

impl Setting {
    /// The flag without its dashes, as clap's `long` takes it.
    pub fn long(&self) -> &'static str {
        self.flag.trim_start_matches('-')
    }

    pub fn applies_to(&self, kind: StrategyKind) -> bool {
        self.strategies.contains(kind)
    }

    pub fn unit(&self) -> Unit {
        self.range.map_or(Unit::None, |r| r.unit)
    }

    /// The range of a number setting. Panics for a setting that is not a number: asking for it
    /// is a programming error the tests catch.
    pub fn number_range(&self) -> Range {
        self.range
            .unwrap_or_else(|| panic!("the setting \"{}\" is not a number", self.key))
    }

    /// `v` if it is in this setting's range.
    pub fn check(&self, v: f64) -> Result<f64, SettingError> {
        self.number_range().check(v)
    }

    /// The number in `text`, checked against this setting's range.
    pub fn parse(&self, text: &str) -> Result<f64, SettingError> {
        self.number_range().parse(text)
    }

    /// Its range in words, "0.01 to 1000 mm"; empty for a setting that is not a number.
    pub fn format_range(&self) -> String {
        self.range.map(|r| r.to_string()).unwrap_or_default()
    }

    /// The window's tooltip: the help text and, for a number, its range.
    pub fn tooltip(&self) -> String {
        match self.range {
            Some(r) => format!("{} ({r})", self.help),
            None => self.help.to_string(),
        }
    }

    /// Its default for `kind`: `None` where it has none or `kind` does not use it.
    pub fn default_for(&self, kind: StrategyKind) -> Option<Preset> {
        if self.applies_to(kind) {
            (self.default)(kind)
        } else {
            None
        }
    }
}

/// The setting with this `--op` key.
pub fn setting(key: &str) -> Option<&'static Setting> {
    OPERATION_SETTINGS.iter().copied().find(|s| s.key == key)
}

/// The table, in the order the command line lists the keys.
pub static OPERATION_SETTINGS: &[&Setting] = &[
    &TOOL,
    &TOOL_NUMBER,
    &NAME,
    &FEED,
    &PLUNGE_FEED,
    &SPINDLE_SPEED,
    &STEPOVER,
    &STEPDOWN,
    &SAMPLING,
    &ALLOWANCE,
    &AXIS_SETTING,
    &DIRECTION_SETTING,
    &MERGE_TOLERANCE,
    &MARGIN,
    &BOUNDS,
    &PATTERN_SETTING,
    &MILLING_SETTING,
    &RAMP_ANGLE,
    &REST,
];

/// A stepover given as a share of the tool diameter (roughing's usual "40 % of D"); the
/// [`STEPOVER`] setting's range is for millimetres.
pub const STEPOVER_PERCENT: Range = Range::new(1.0, 100.0, Unit::PercentOfDiameter);

const FEED_RANGE: Range = Range::new(1.0, 100_000.0, Unit::MmPerMin);

const fn none(_: StrategyKind) -> Option<Preset> {
    None
}

pub static TOOL: Setting = Setting {
    key: "tool",
    flag: "--tool",
    label: "Tool",
    help: "Which tool of the library cuts this operation",
    cli_help: Some(
        "Tool: flat:D, ball:D, bull:D:R or vbit:D:ANGLE (mm; ANGLE = included angle, \
         degrees). Required unless --op is given.",
    ),
    range: None,
    strategies: Strategies::ALL,
    required_on_command_line: Strategies::ALL,
    default: none,
};

pub static TOOL_NUMBER: Setting = Setting {
    key: "t",
    flag: "--tool-number",
    label: "Tool number",
    help: "Tool number for the tool change",
    cli_help: None,
    range: None,
    strategies: Strategies::ALL,
    required_on_command_line: Strategies::NONE,
    default: |_| {
        Some(Preset::Derived(
            "by tool: the first tool is 1, the next new one 2, …",
        ))
    },
};

pub static NAME: Setting = Setting {
    key: "name",
    flag: "--name",
    label: "Name",
    help: "What this operation is called in the list and in the program's comments",
    cli_help: None,
    range: None,
    strategies: Strategies::ALL,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Derived("the strategy's name")),
};

pub static FEED: Setting = Setting {
    key: "feed",
    flag: "--feed",
    label: "Feed",
    help: "This operation's cutting feed",
    cli_help: None,
    range: Some(FEED_RANGE),
    strategies: Strategies::ALL,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Number(Feeds::default().feed)),
};

pub static PLUNGE_FEED: Setting = Setting {
    key: "plunge",
    flag: "--plunge-feed",
    label: "Plunge feed",
    help: "This operation's feed down into material",
    cli_help: None,
    range: Some(FEED_RANGE),
    strategies: Strategies::ALL,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Number(Feeds::default().plunge_feed)),
};

pub static SPINDLE_SPEED: Setting = Setting {
    key: "spindle",
    flag: "--spindle",
    label: "Spindle speed",
    help: "This operation's spindle speed",
    cli_help: None,
    range: Some(Range::new(1.0, 200_000.0, Unit::Rpm)),
    strategies: Strategies::ALL,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Number(Feeds::default().spindle_rpm)),
};

pub static STEPOVER: Setting = Setting {
    key: "stepover",
    flag: "--stepover",
    label: "Stepover",
    help: "Distance between neighbouring passes; roughing's between the clearing passes of a \
           layer, often given as a share of the tool diameter (about 40%)",
    cli_help: Some(
        "Distance between passes: mm (0.8), or percent of the tool diameter (40%). Required for \
         raster; roughing defaults to 40%; waterline has none.",
    ),
    range: Some(Range::new(0.001, 1000.0, Unit::Mm)),
    strategies: Strategies::RASTER.and(Strategies::ROUGHING),
    required_on_command_line: Strategies::RASTER,
    default: |kind| match kind.default_strategy() {
        Strategy::Roughing(p) => Some(Preset::Stepover(p.stepover)),
        Strategy::RasterFinishing(p) => Some(Preset::Stepover(Stepover::Mm(p.stepover))),
        Strategy::WaterlineFinishing(_) => None,
    },
};

pub static STEPDOWN: Setting = Setting {
    key: "stepdown",
    flag: "--stepdown",
    label: "Stepdown",
    help: "Depth of each roughing layer, or height between waterline contour levels",
    cli_help: None,
    range: Some(Range::new(0.01, 1000.0, Unit::Mm)),
    strategies: Strategies::WATERLINE.and(Strategies::ROUGHING),
    required_on_command_line: Strategies::ROUGHING,
    default: |kind| match kind.default_strategy() {
        Strategy::Roughing(p) => Some(Preset::Number(p.stepdown)),
        Strategy::WaterlineFinishing(p) => Some(Preset::Number(p.stepdown)),
        Strategy::RasterFinishing(_) => None,
    },
};

pub static SAMPLING: Setting = Setting {
    key: "sampling",
    flag: "--sampling",
    label: "Sampling",
    help: "Distance between computed points: along a raster pass, or the grid that waterline \
           contours and roughing outlines are traced on. Smaller follows the surface closer and \
           misses fewer small features, but takes longer",
    cli_help: None,
    range: Some(Range::new(0.001, 100.0, Unit::Mm)),
    strategies: Strategies::ALL,
    required_on_command_line: Strategies::NONE,
    default: |kind| {
        Some(Preset::Number(match kind.default_strategy() {
            Strategy::Roughing(p) => p.sampling,
            Strategy::RasterFinishing(p) => p.sampling,
            Strategy::WaterlineFinishing(p) => p.sampling,
        }))
    },
};

pub static ALLOWANCE: Setting = Setting {
    key: "allowance",
    flag: "--allowance",
    label: "Allowance",
    help: "Material left on the model for a later pass (0: finish to size); roughing leaves \
           some for the finishing operations",
    cli_help: None,
    range: Some(Range::new(0.0, 100.0, Unit::Mm)),
    strategies: Strategies::ALL,
    required_on_command_line: Strategies::NONE,
    default: |kind| {
        Some(Preset::Number(match kind.default_strategy() {
            Strategy::Roughing(p) => p.allowance,
            Strategy::RasterFinishing(p) => p.allowance,
            Strategy::WaterlineFinishing(p) => p.allowance,
        }))
    },
};

pub static AXIS_SETTING: Setting = Setting {
    key: "axis",
    flag: "--axis",
    label: "Passes along",
    help: "Which axis the raster passes run along",
    cli_help: None,
    range: None,
    strategies: Strategies::RASTER,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Word(AXIS.word(RasterParams::default().axis))),
};

pub static DIRECTION_SETTING: Setting = Setting {
    key: "direction",
    flag: "--direction",
    label: "Direction",
    help: "Which way the passes are cut: zigzag both ways with no lifts, or climb or \
           conventional one way, lifting between passes",
    cli_help: None,
    range: None,
    strategies: Strategies::RASTER,
    required_on_command_line: Strategies::NONE,
    default: |_| {
        Some(Preset::Word(
            DIRECTION.word(RasterParams::default().direction),
        ))
    },
};

pub static MERGE_TOLERANCE: Setting = Setting {
    key: "merge-tolerance",
    flag: "--merge-tolerance",
    label: "Merge tolerance",
    help: "Points along a pass are merged while the path stays this close to the exact surface",
    cli_help: None,
    range: Some(Range::new(0.0, 10.0, Unit::Mm)),
    strategies: Strategies::RASTER,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Number(RasterParams::default().merge_tolerance)),
};

pub static MARGIN: Setting = Setting {
    key: "margin",
    flag: "--margin",
    label: "Extra margin",
    help: "Passes cover the model's box plus the tool radius plus this. 0: the tool just reaches \
           the box; more clears the part's sides but cuts into the stock beside it",
    cli_help: Some(
        "Raster: margin around the model's box that the passes cover, mm (-1000 to 1000) \
         [default: the tool radius, so that the outermost pass's tool just reaches the box and \
         never runs into the stock beside it].",
    ),
    range: Some(Range::new(-1000.0, 1000.0, Unit::Mm)),
    strategies: Strategies::RASTER,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Number(RasterParams::default().extra_margin)),
};

pub static BOUNDS: Setting = Setting {
    key: "bounds",
    flag: "--bounds",
    label: "Bounds",
    help: "The XY box the raster passes cover, instead of the model's box plus the margin",
    cli_help: Some(
        "Raster: bounds XMIN,XMAX,YMIN,YMAX in mm (XMIN:XMAX:YMIN:YMAX in an --op) [default: \
         the model's box plus --margin].",
    ),
    range: None,
    strategies: Strategies::RASTER,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Derived("the model's box plus the margin")),
};

pub static PATTERN_SETTING: Setting = Setting {
    key: "pattern",
    flag: "--pattern",
    label: "Pattern",
    help: "How each roughing layer is cleared: offset rings parallel to its outline from the \
           inside out, or zigzag lines along X and then one pass round the outline",
    cli_help: None,
    range: None,
    strategies: Strategies::ROUGHING,
    required_on_command_line: Strategies::NONE,
    default: |_| {
        Some(Preset::Word(
            PATTERN.word(RoughingParams::default().pattern),
        ))
    },
};

pub static MILLING_SETTING: Setting = Setting {
    key: "milling",
    flag: "--milling",
    label: "Milling",
    help: "Which side of the tool the material is on as it goes round: climb (on its right, \
           clockwise spindle) or conventional",
    cli_help: None,
    range: None,
    strategies: Strategies::WATERLINE.and(Strategies::ROUGHING),
    required_on_command_line: Strategies::NONE,
    default: |kind| match kind.default_strategy() {
        Strategy::Roughing(p) => Some(Preset::Word(MILLING.word(p.milling))),
        Strategy::WaterlineFinishing(p) => Some(Preset::Word(MILLING.word(p.milling))),
        Strategy::RasterFinishing(_) => None,
    },
};

pub static RAMP_ANGLE: Setting = Setting {
    key: "ramp-angle",
    flag: "--ramp-angle",
    label: "Ramp angle",
    help: "Entry ramps go down at this angle from horizontal instead of plunging straight",
    cli_help: None,
    range: Some(Range::new(0.1, 90.0, Unit::Degrees)),
    strategies: Strategies::ROUGHING,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Number(RoughingParams::default().ramp_angle)),
};

pub static REST: Setting = Setting {
    key: "rest",
    flag: "--rest",
    label: "Rest threshold",
    help: "Clear only where the operations before this one left more than this above the \
           model plus the allowance: rest roughing, typically a smaller tool after a big one \
           (the earlier operations are simulated to find it)",
    cli_help: None,
    range: Some(Range::new(0.0, 100.0, Unit::Mm)),
    strategies: Strategies::ROUGHING,
    required_on_command_line: Strategies::NONE,
    default: |_| Some(Preset::Off("off: the whole stock")),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_described_and_its_defaults_are_in_range() {
        let mut keys = std::collections::BTreeSet::new();
        for s in OPERATION_SETTINGS {
            assert!(keys.insert(s.key), "{} twice", s.key);
            assert!(!s.label.trim().is_empty(), "{}: no label", s.key);
            assert!(!s.help.trim().is_empty(), "{}: no help", s.key);
            assert!(s.flag.starts_with("--") && s.long().len() > 1, "{}", s.key);
            assert_ne!(s.strategies, Strategies::NONE, "{}: used by none", s.key);
            for k in s.required_on_command_line.kinds() {
                assert!(s.applies_to(k), "{}: required by {k:?}, unused", s.key);
            }
            assert!(std::ptr::eq(setting(s.key).unwrap(), *s));
            if let Some(r) = s.range {
                assert!(
                    r.min.is_finite() && r.max.is_finite() && r.min < r.max,
                    "{r:?}"
                );
            }
            for kind in StrategyKind::ALL {
                let d = s.default_for(kind);
                if !s.applies_to(kind) {
                    assert_eq!(d, None, "{}: a default for {kind:?}", s.key);
                    continue;
                }
                // Only a setting every strategy needs given (the tool) may have no default.
                let Some(d) = d else {
                    assert_eq!(s.required_on_command_line, Strategies::ALL, "{}", s.key);
                    continue;
                };
                match (d, s.range) {
                    (Preset::Number(v), Some(r)) => {
                        assert_eq!(r.check(v), Ok(v), "{}, {kind:?}", s.key)
                    }
                    (Preset::Stepover(Stepover::Mm(v)), Some(r)) => {
                        assert_eq!(r.check(v), Ok(v), "{}, {kind:?}", s.key)
                    }
                    (Preset::Stepover(Stepover::Percent(p)), _) => {
                        assert_eq!(STEPOVER_PERCENT.check(p), Ok(p))
                    }
                    (Preset::Word(_) | Preset::Derived(_), None) | (Preset::Off(_), _) => {}
                    other => panic!("{}, {kind:?}: {other:?}", s.key),
                }
            }
        }
    }

    #[test]
    fn one_message_for_a_value_out_of_range() {
        assert_eq!(
            STEPDOWN.check(-1.0).unwrap_err().to_string(),
            "-1 is out of range (0.01 to 1000 mm)"
        );
        assert_eq!(STEPDOWN.parse(" 0.5 "), Ok(0.5));
        assert_eq!(
            RAMP_ANGLE.parse("95").unwrap_err().to_string(),
            "95 is out of range (0.1 to 90°)"
        );
        assert_eq!(
            FEED.parse("abc").unwrap_err().to_string(),
            "expected a number, got \"abc\""
        );
        assert!(SAMPLING.check(f64::NAN).is_err());
        assert_eq!(
            STEPDOWN.tooltip(),
            format!("{} (0.01 to 1000 mm)", STEPDOWN.help)
        );
        assert_eq!(MERGE_TOLERANCE.format_range(), "0 to 10 mm");
        assert_eq!(TOOL.format_range(), "");
    }

    #[test]
    fn defaults_come_from_the_strategies() {
        let d = |s: &Setting, k| s.default_for(k);
        assert_eq!(
            d(&STEPDOWN, StrategyKind::Roughing),
            Some(Preset::Number(2.0))
        );
        assert_eq!(d(&STEPDOWN, StrategyKind::RasterFinishing), None);
        assert_eq!(
            d(&SAMPLING, StrategyKind::Roughing),
            Some(Preset::Number(0.25))
        );
        assert_eq!(
            d(&PATTERN_SETTING, StrategyKind::Roughing),
            Some(Preset::Word("offset"))
        );
        assert_eq!(
            d(&STEPOVER, StrategyKind::Roughing).unwrap().to_string(),
            "40%"
        );
        for k in StrategyKind::ALL {
            assert_eq!(k.default_strategy().kind(), k);
        }
    }
}
