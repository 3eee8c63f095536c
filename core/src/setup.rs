//! A job set up the way a machinist describes it: a strategy with its parameters, a cutter, the
//! model where it lies and the stock around it — turned into a validated [`JobSpec`].
//!
//! The window and `millpond toolpath` both plan through [`Setup::plan`], so the same
//! parameters give the same job (and the same bits) whichever of them the user drove. The
//! parameter structs are serializable so that a front end can keep them between runs; a field
//! missing from saved data takes its default.

use crate::cutter::Cutter;
use crate::geom::{Aabb, Point3, Rect};
use crate::job::{Grid, JobError, JobSpec, Operation};
use crate::mesh::MeshHash;
use crate::params::{self, StrategyKind};
use crate::raster::{self, Direction, RasterSpec};
use crate::rough::{ClearPattern, RoughSpec};
use crate::waterline::{self, ContourSpec, Milling, WaterlineSpec};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Which way raster lines run (the core's [`Axis`](crate::drop::Axis) under its editor name).
pub use crate::drop::Axis as LineAxis;

/// Why a setup cannot be planned.
#[derive(Debug, Error, PartialEq)]
pub enum SetupError {
    /// The stock, floor or safe height do not make a workable setup.
    #[error("{0}")]
    Invalid(String),
    /// The strategy's parameters do not make a valid job.
    #[error(transparent)]
    Job(#[from] JobError),
}

/// A stepover as machinists give it: a distance, or a share of the tool diameter (roughing
/// stepovers are usually quoted as "40 % of D", so they stay right when the tool changes).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stepover {
    /// Millimetres.
    Mm(f64),
    /// Percent of the tool diameter.
    Percent(f64),
}

impl Stepover {
    /// The distance between passes for this cutter, mm.
    pub fn mm(self, cutter: &Cutter) -> f64 {
        match self {
            Stepover::Mm(v) => v,
            // d·p/100 rather than d·(p/100): 6 mm at 40 % is exactly 2.4.
            Stepover::Percent(p) => cutter.diameter() * p / 100.0,
        }
    }
}

impl fmt::Display for Stepover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stepover::Mm(v) => write!(f, "{v} mm"),
            Stepover::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for Stepover {
    type Err = String;

    /// `0.8` or `0.8mm` (millimetres) or `40%` (of the tool diameter), in the ranges of
    /// [`params::STEPOVER`] and [`params::STEPOVER_PERCENT`].
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (number, percent) = match t.strip_suffix('%') {
            Some(n) => (n, true),
            None => (t.strip_suffix("mm").unwrap_or(t), false),
        };
        let v: f64 = number.trim().parse().map_err(|_| {
            format!("expected a stepover in mm (0.8) or in percent of the tool diameter (40%), got \"{s}\"")
        })?;
        // The table's ranges: the window's editor and job files take the same.
        let range = if percent {
            params::STEPOVER_PERCENT
        } else {
            params::STEPOVER.number_range()
        };
        range.check(v).map_err(|e| e.to_string())?;
        Ok(if percent {
            Stepover::Percent(v)
        } else {
            Stepover::Mm(v)
        })
    }
}

/// Raster finishing: parallel drop-cutter passes over the whole part.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RasterParams {
    /// Distance between passes, mm.
    pub stepover: f64,
    /// Distance between computed points along a pass, mm.
    pub sampling: f64,
    pub axis: LineAxis,
    pub direction: Direction,
    /// Points are merged while the path stays within this of the exact surface, mm.
    pub merge_tolerance: f64,
    /// The passes cover the part's XY box grown by the tool radius plus this, mm. At 0 (the
    /// default) the outermost pass's tool just reaches the box, so finishing never runs into
    /// the stock beside the part; more makes the outer passes clear the part's sides, cutting
    /// whatever stock is left there.
    pub extra_margin: f64,
    /// Material left on the surface for a later pass, mm (0 = finish to size).
    pub allowance: f64,
    /// Passes cover exactly this XY box instead (the command line's `--bounds`), mm.
    pub bounds: Option<Rect>,
}

impl Default for RasterParams {
    /// A fine finish with a 3 mm ball nose: one click in the window gives a good surface.
    fn default() -> Self {
        Self {
            stepover: 0.5,
            sampling: 0.1,
            axis: LineAxis::X,
            direction: Direction::Zigzag,
            merge_tolerance: raster::DEFAULT_MERGE_TOLERANCE,
            extra_margin: 0.0,
            allowance: 0.0,
            bounds: None,
        }
    }
}

/// Waterline finishing: closed contours level after level, top down — for steep walls,
/// where raster passes leave scallops.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WaterlineParams {
    /// Height between levels, mm.
    pub stepdown: f64,
    /// Grid spacing the contours are traced on, mm: features smaller than this may be missed.
    pub sampling: f64,
    pub milling: Milling,
    /// Material left on the surface for a later pass, mm.
    pub allowance: f64,
}

impl Default for WaterlineParams {
    fn default() -> Self {
        Self {
            stepdown: 0.5,
            sampling: 0.1,
            milling: Milling::Climb,
            allowance: 0.0,
        }
    }
}

/// Roughing by layers: clears the stock down to the model plus an allowance, layer by
/// layer from the stock top.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoughingParams {
    /// Depth of each layer, mm.
    pub stepdown: f64,
    /// Distance between clearing passes in a layer.
    pub stepover: Stepover,
    /// Material left on the model for the finishing passes, mm.
    pub allowance: f64,
    pub pattern: ClearPattern,
    pub milling: Milling,
    /// Grid spacing the layer outlines are traced on, mm.
    pub sampling: f64,
    /// Entry ramp angle, degrees from horizontal.
    pub ramp_angle: f64,
    /// Rest roughing: clear only where the earlier operations left more than this above the
    /// model plus allowance, mm (typically a smaller tool after a big one). `None`: clear
    /// the whole stock.
    pub rest: Option<f64>,
}

impl Default for RoughingParams {
    /// Conservative for a 6 mm end mill in wood, plastics or aluminium.
    fn default() -> Self {
        Self {
            stepdown: 2.0,
            stepover: Stepover::Percent(40.0),
            allowance: 0.3,
            pattern: ClearPattern::Offset,
            milling: Milling::Climb,
            sampling: 0.25,
            ramp_angle: 3.0,
            rest: None,
        }
    }
}

/// A strategy with its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    Roughing(RoughingParams),
    RasterFinishing(RasterParams),
    WaterlineFinishing(WaterlineParams),
}

impl Strategy {
    /// One default of each strategy, in machining order.
    pub fn defaults() -> Vec<Strategy> {
        vec![
            Strategy::Roughing(RoughingParams::default()),
            Strategy::RasterFinishing(RasterParams::default()),
            Strategy::WaterlineFinishing(WaterlineParams::default()),
        ]
    }

    pub fn label(&self) -> &'static str {
        self.kind().label()
    }

    /// Which strategy this is, without its parameters: what the setting table
    /// ([`params`]) says a setting applies to.
    pub fn kind(&self) -> StrategyKind {
        match self {
            Strategy::Roughing(_) => StrategyKind::Roughing,
            Strategy::RasterFinishing(_) => StrategyKind::RasterFinishing,
            Strategy::WaterlineFinishing(_) => StrategyKind::WaterlineFinishing,
        }
    }
}

/// One operation of a job, as the machinist sets it up: a strategy with its parameters, the
/// tool (by its library id) and, optionally, feeds of its own.
#[derive(Clone, Debug, PartialEq)]
pub struct OperationDef {
    /// Stable identity: the 3D view and results are keyed by it.
    pub id: u64,
    pub name: String,
    /// Included in "Generate all" and in the G-code.
    pub enabled: bool,
    /// Its toolpath is drawn.
    pub visible: bool,
    pub tool: u64,
    pub strategy: Strategy,
    /// This operation's own feeds and speed; `None`: the tool's. Roughing and finishing
    /// with one cutter rarely want the same feed.
    pub feeds: Option<OperationFeeds>,
}

impl OperationDef {
    /// The feeds this operation runs at, given its tool's: its own feed, plunge feed and
    /// spindle speed where it has them (checked), the tool's otherwise. The window and
    /// `millpond toolpath` both plan with this.
    pub fn feeds_over(&self, tool_feeds: crate::Feeds) -> Result<crate::Feeds, String> {
        let Some(own) = self.feeds else {
            return Ok(tool_feeds);
        };
        let feeds = crate::Feeds {
            feed: own.feed,
            plunge_feed: own.plunge_feed,
            spindle_rpm: own.spindle_rpm,
            ..tool_feeds
        };
        feeds.validate()?;
        Ok(feeds)
    }
}

/// Feeds and spindle speed an operation sets for itself.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationFeeds {
    /// mm/min.
    pub feed: f64,
    /// mm/min.
    pub plunge_feed: f64,
    /// rpm.
    pub spindle_rpm: f64,
}

impl OperationFeeds {
    /// Starting from the tool's.
    pub fn of(tool: &crate::tools::Tool) -> Self {
        Self {
            feed: tool.feed,
            plunge_feed: tool.plunge_feed,
            spindle_rpm: tool.spindle_rpm,
        }
    }
}

/// How the stock is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockMode {
    /// The model's box plus margins: follows the model when it moves.
    ModelBox,
    /// Fixed corners.
    Explicit,
}

/// The block the part is cut from: sets the floor (its bottom), the safe height (above its
/// top) and, for roughing, what there is to clear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stock {
    pub mode: StockMode,
    /// Added on every side in X and Y, mm.
    pub margin_xy: f64,
    pub margin_top: f64,
    pub margin_bottom: f64,
    pub min: [f64; 3],
    pub max: [f64; 3],
    /// Rapid moves run this far above the stock top, mm.
    pub safe_height: f64,
    /// Where the program's zero is (the window keeps it with the stock).
    pub zero: WorkZeroChoice,
}

/// Default distance of rapid moves above the stock top, mm.
pub const DEFAULT_SAFE_HEIGHT: f64 = 5.0;

impl Default for Stock {
    fn default() -> Self {
        Self {
            mode: StockMode::ModelBox,
            margin_xy: 2.0,
            margin_top: 1.0,
            margin_bottom: 0.0,
            min: [0.0; 3],
            max: [100.0, 100.0, 20.0],
            safe_height: DEFAULT_SAFE_HEIGHT,
            zero: WorkZeroChoice::default(),
        }
    }
}

impl Stock {
    /// The model's box grown by these margins, mm.
    pub fn around_model(margin_xy: f64, margin_top: f64, margin_bottom: f64) -> Self {
        Self {
            mode: StockMode::ModelBox,
            margin_xy,
            margin_top,
            margin_bottom,
            ..Self::default()
        }
    }

    /// A fixed block.
    pub fn explicit(b: Aabb) -> Self {
        Self {
            mode: StockMode::Explicit,
            min: [b.min.x, b.min.y, b.min.z],
            max: [b.max.x, b.max.y, b.max.z],
            ..Self::default()
        }
    }

    pub fn aabb(&self, model: Aabb) -> Aabb {
        match self.mode {
            StockMode::ModelBox => Aabb {
                min: Point3::new(
                    model.min.x - self.margin_xy,
                    model.min.y - self.margin_xy,
                    model.min.z - self.margin_bottom,
                ),
                max: Point3::new(
                    model.max.x + self.margin_xy,
                    model.max.y + self.margin_xy,
                    model.max.z + self.margin_top,
                ),
            },
            StockMode::Explicit => Aabb {
                min: Point3::new(self.min[0], self.min[1], self.min[2]),
                max: Point3::new(self.max[0], self.max[1], self.max[2]),
            },
        }
    }

    /// Switches to explicit corners, starting from the box the margins give now.
    pub fn make_explicit(&mut self, model: Aabb) {
        let b = self.aabb(model);
        self.min = [b.min.x, b.min.y, b.min.z];
        self.max = [b.max.x, b.max.y, b.max.z];
        self.mode = StockMode::Explicit;
    }
}

/// Where X and Y are zero on the machine: a corner or the centre of the stock (where a
/// machinist touches off), or the model's own origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum XyZero {
    /// The model's coordinates as they are (placement decides where its origin is).
    #[default]
    Model,
    StockFrontLeft,
    StockFrontRight,
    StockBackLeft,
    StockBackRight,
    StockCentre,
}

/// Where Z is zero on the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZZero {
    /// The model's coordinates as they are.
    #[default]
    Model,
    /// The stock's top face: the usual touch-off.
    StockTop,
    /// The stock's bottom (the machine table or spoil board).
    StockBottom,
    /// The model's highest point.
    ModelTop,
}

/// The program's zero, as a machinist sets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkZeroChoice {
    pub xy: XyZero,
    pub z: ZZero,
}

impl WorkZeroChoice {
    /// The zero point in model coordinates for this stock and model.
    pub fn point(&self, stock: Aabb, model: Aabb) -> Point3 {
        let (x, y) = match self.xy {
            XyZero::Model => (0.0, 0.0),
            XyZero::StockFrontLeft => (stock.min.x, stock.min.y),
            XyZero::StockFrontRight => (stock.max.x, stock.min.y),
            XyZero::StockBackLeft => (stock.min.x, stock.max.y),
            XyZero::StockBackRight => (stock.max.x, stock.max.y),
            XyZero::StockCentre => (
                (stock.min.x + stock.max.x) / 2.0,
                (stock.min.y + stock.max.y) / 2.0,
            ),
        };
        let z = match self.z {
            ZZero::Model => 0.0,
            ZZero::StockTop => stock.max.z,
            ZZero::StockBottom => stock.min.z,
            ZZero::ModelTop => model.max.z,
        };
        Point3::new(x, y, z)
    }

    /// Where zero is, in words for the program's header.
    pub fn describe(&self) -> String {
        let xy = match self.xy {
            XyZero::Model => "X and Y at the model's origin",
            XyZero::StockFrontLeft => "X and Y at the stock's front left corner",
            XyZero::StockFrontRight => "X and Y at the stock's front right corner",
            XyZero::StockBackLeft => "X and Y at the stock's back left corner",
            XyZero::StockBackRight => "X and Y at the stock's back right corner",
            XyZero::StockCentre => "X and Y at the stock's centre",
        };
        let z = match self.z {
            ZZero::Model => "Z at the model's origin",
            ZZero::StockTop => "Z at the stock top",
            ZZero::StockBottom => "Z at the stock bottom",
            ZZero::ModelTop => "Z at the model's top",
        };
        format!("{xy}, {z}")
    }
}

/// What every operation of a job shares — the model where it lies, the stock box, the floor
/// and the safe height — checked once, so each operation only adds its tool and strategy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Setup {
    pub mesh: MeshHash,
    /// The model's bounding box.
    pub model: Aabb,
    pub stock: Aabb,
    /// Lowest tip height: the stock bottom unless set otherwise.
    pub floor: f64,
    /// Height of rapid moves across the part.
    pub safe_z: f64,
}

impl Setup {
    /// The setup for a model (its mesh hash and bounding box) in `stock`.
    pub fn new(mesh: MeshHash, model: Aabb, stock: &Stock) -> Result<Self, SetupError> {
        let sb = stock.aabb(model);
        if sb.is_empty() || !(sb.min.is_finite() && sb.max.is_finite()) {
            return Err(SetupError::Invalid(
                "the stock box is empty: every minimum must be below its maximum".into(),
            ));
        }
        if !(stock.safe_height.is_finite() && stock.safe_height > 0.0) {
            return Err(SetupError::Invalid(
                "the safe height must be a positive number of millimetres".into(),
            ));
        }
        let safe_z = sb.max.z + stock.safe_height;
        if safe_z <= model.max.z {
            return Err(SetupError::Invalid(format!(
                "the safe height Z{safe_z:.3} is not above the model's top Z{:.3}: raise the stock top",
                model.max.z
            )));
        }
        Ok(Self {
            mesh,
            model,
            stock: sb,
            floor: sb.min.z,
            safe_z,
        })
    }

    /// Sets the lowest tip height instead of the stock bottom (e.g. to cut into a spoil board,
    /// or to stop above a clamp).
    pub fn with_floor(mut self, floor: f64) -> Result<Self, SetupError> {
        if !floor.is_finite() {
            return Err(SetupError::Invalid(format!(
                "the floor must be a finite height, got {floor}"
            )));
        }
        self.floor = floor;
        Ok(self)
    }

    /// Sets the height of rapid moves itself; it must clear both the stock and the model.
    pub fn with_safe_z(mut self, safe_z: f64) -> Result<Self, SetupError> {
        let top = self.stock.max.z.max(self.model.max.z);
        if !(safe_z.is_finite() && safe_z > top) {
            return Err(SetupError::Invalid(format!(
                "the safe height {safe_z} must be above the stock top ({}) and the model's top ({})",
                self.stock.max.z, self.model.max.z
            )));
        }
        self.safe_z = safe_z;
        Ok(self)
    }

    /// The validated job that cuts this setup with `strategy` and `cutter`.
    pub fn plan(&self, strategy: &Strategy, cutter: Cutter) -> Result<JobSpec, SetupError> {
        cutter.validate().map_err(JobError::from)?;
        let (mb, sb, safe_z) = (self.model, self.stock, self.safe_z);
        let links = crate::links::Links::new(sb.max.z, safe_z, cutter.diameter());
        let operation = match strategy {
            Strategy::Roughing(p) => {
                let reach = cutter.radius() + p.allowance.max(0.0);
                let grid = ContourSpec::grid_around(mb.xy(), reach, p.sampling)?;
                // Layers from the stock top down to the floor.
                let levels = waterline::levels_down(sb.max.z, self.floor, p.stepdown)?;
                Operation::Rough(RoughSpec {
                    contours: ContourSpec {
                        grid,
                        levels,
                        allowance: p.allowance,
                    },
                    stock: sb,
                    stepover: p.stepover.mm(&cutter),
                    pattern: p.pattern,
                    milling: p.milling,
                    safe_z,
                    links,
                    ramp_angle: p.ramp_angle,
                    rest: p.rest,
                })
            }
            Strategy::RasterFinishing(p) => {
                let bounds = match p.bounds {
                    Some(b) => b,
                    None if p.extra_margin.is_finite() => {
                        mb.xy().grown(cutter.radius() + p.extra_margin)
                    }
                    None => {
                        return Err(SetupError::Invalid(format!(
                            "the margin must be a number, got {}",
                            p.extra_margin
                        )));
                    }
                };
                Operation::Raster(RasterSpec {
                    grid: Grid {
                        axis: p.axis,
                        bounds,
                        step: p.stepover,
                        sampling: p.sampling,
                    },
                    floor: self.floor,
                    safe_z,
                    links,
                    direction: p.direction,
                    merge_tolerance: p.merge_tolerance,
                    allowance: p.allowance,
                })
            }
            Strategy::WaterlineFinishing(p) => {
                let reach = cutter.radius() + p.allowance.max(0.0);
                let grid = ContourSpec::grid_around(mb.xy(), reach, p.sampling)?;
                // Levels from just below the model's top (above it there is nothing to
                // follow) down to the floor, or the model's bottom if the floor is lower.
                let floor = self.floor.max(mb.min.z);
                let levels = waterline::levels_down(mb.max.z, floor, p.stepdown)?;
                Operation::Waterline(WaterlineSpec {
                    contours: ContourSpec {
                        grid,
                        levels,
                        allowance: p.allowance,
                    },
                    safe_z,
                    links,
                    milling: p.milling,
                })
            }
        };
        let spec = JobSpec {
            mesh: self.mesh,
            cutter,
            operation,
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::Mesh;
    use crate::models::geodesic_sphere;

    fn sphere() -> Mesh {
        let tris = geodesic_sphere(Point3::new(0.0, 0.0, 0.0), 10.0, 4);
        Mesh::from_triangles(tris, "sphere").unwrap()
    }

    fn setup(stock: &Stock) -> Setup {
        let m = sphere();
        Setup::new(m.hash(), m.bounds(), stock).unwrap()
    }

    #[test]
    fn stepover_reads_millimetres_and_percent() {
        assert_eq!("0.8".parse(), Ok(Stepover::Mm(0.8)));
        assert_eq!(" 1.5mm".parse(), Ok(Stepover::Mm(1.5)));
        assert_eq!("40%".parse(), Ok(Stepover::Percent(40.0)));
        for bad in ["", "x", "-1", "0", "0%", "150%", "nan", "inf", "%"] {
            assert!(bad.parse::<Stepover>().is_err(), "{bad:?} accepted");
        }
        let flat6 = Cutter::Flat { diameter: 6.0 };
        assert_eq!(Stepover::Percent(40.0).mm(&flat6), 2.4);
        assert_eq!(Stepover::Mm(1.25).mm(&flat6), 1.25);
    }

    #[test]
    fn every_strategy_keeps_to_the_stock() {
        let stock = Stock::around_model(3.0, 2.0, 1.5);
        let s = setup(&stock);
        assert_eq!(s.floor, s.model.min.z - 1.5);
        assert_eq!(s.safe_z, s.model.max.z + 2.0 + DEFAULT_SAFE_HEIGHT);
        let ball = Cutter::Ball { diameter: 3.0 };
        let flat = Cutter::Flat { diameter: 6.0 };
        for strategy in Strategy::defaults() {
            let cutter = if matches!(strategy, Strategy::Roughing(_)) {
                flat
            } else {
                ball
            };
            let spec = s.plan(&strategy, cutter).unwrap();
            match &spec.operation {
                Operation::Rough(r) => {
                    assert_eq!(r.stock, s.stock);
                    assert_eq!(r.safe_z, s.safe_z);
                    assert_eq!(r.stepover, 2.4, "40 % of 6 mm");
                    assert_eq!(r.contours.levels.first(), Some(&(s.stock.max.z - 2.0)));
                    assert_eq!(r.contours.levels.last(), Some(&s.floor));
                }
                Operation::Raster(r) => {
                    assert_eq!(r.floor, s.floor);
                    assert_eq!(r.safe_z, s.safe_z);
                    assert_eq!(r.grid.bounds, s.model.xy().grown(1.5));
                }
                Operation::Waterline(w) => {
                    assert_eq!(w.safe_z, s.safe_z);
                    // The floor is below the model: the last level is the model's bottom.
                    assert_eq!(w.contours.levels.last(), Some(&s.model.min.z));
                    assert!(w.contours.levels[0] < s.model.max.z);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn floor_and_safe_height_can_be_set() {
        let s = setup(&Stock::around_model(0.0, 0.0, 0.0))
            .with_floor(-3.0)
            .unwrap()
            .with_safe_z(40.0)
            .unwrap();
        let raster = |p: RasterParams| {
            let ball = Cutter::Ball { diameter: 3.0 };
            let spec = s.plan(&Strategy::RasterFinishing(p), ball).unwrap();
            let Operation::Raster(r) = spec.operation else {
                panic!()
            };
            r
        };
        let mut p = RasterParams {
            stepover: 1.0,
            ..RasterParams::default()
        };
        let r = raster(p);
        assert_eq!((r.floor, r.safe_z), (-3.0, 40.0));
        // Explicit bounds win over the margin.
        p.bounds = Some(Rect::new(-1.0, 1.0, -2.0, 2.0));
        assert_eq!(raster(p).grid.bounds, Rect::new(-1.0, 1.0, -2.0, 2.0));
        // A safe height inside the stock or below the model's top is refused.
        let low = setup(&Stock::around_model(0.0, 4.0, 0.0)).with_safe_z(12.0);
        assert!(matches!(low, Err(SetupError::Invalid(m)) if m.contains("stock top")));
        assert!(s.with_floor(f64::NAN).is_err());
    }

    #[test]
    fn bad_stock_and_parameters_are_refused_with_reasons() {
        let m = sphere();
        let inverted = Stock::explicit(Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(-1.0, 10.0, 10.0),
        });
        let e = Setup::new(m.hash(), m.bounds(), &inverted).unwrap_err();
        assert!(e.to_string().contains("stock box is empty"), "{e}");
        let low = Stock::explicit(Aabb {
            min: Point3::new(-20.0, -20.0, -20.0),
            max: Point3::new(20.0, 20.0, 0.0),
        });
        let low = Stock {
            safe_height: 1.0,
            ..low
        };
        let e = Setup::new(m.hash(), m.bounds(), &low).unwrap_err();
        assert!(e.to_string().contains("model's top"), "{e}");
        let s = setup(&Stock::default());
        let rough = Strategy::Roughing(RoughingParams {
            stepdown: -1.0,
            ..RoughingParams::default()
        });
        let e = s.plan(&rough, Cutter::Flat { diameter: 6.0 }).unwrap_err();
        assert!(e.to_string().contains("stepdown"), "{e}");
        let e = s.plan(&rough, Cutter::Flat { diameter: -6.0 }).unwrap_err();
        assert!(e.to_string().contains("diameter"), "{e}");
    }
}
