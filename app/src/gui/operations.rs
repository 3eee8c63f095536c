//! The tool library, the list of operations and the stock: plain data the side panel edits
//! and [`plan`] turns into a core [`JobSpec`].
//!
//! Operations are an enum of strategies, each with its own parameter struct
//! ([`Strategy`]), so a strategy the core gains (waterline, roughing) is one more variant, its
//! parameter struct, its `plan` arm and its editor — nothing else changes.

use super::model::Model;
use millpond_core::job::{Grid, Operation as JobOperation};
use millpond_core::raster::{self, Direction, RasterSpec};
use millpond_core::rough::{ClearPattern, RoughSpec};
use millpond_core::waterline::{self, ContourSpec, Milling, WaterlineSpec};
use millpond_core::{Aabb, Axis, Cutter, Feeds, JobSpec, Point3};
use serde::{Deserialize, Serialize};

/// Cutter shapes, in the words on a tool box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolShape {
    Flat,
    Ball,
    Bull,
    VBit,
}

impl ToolShape {
    pub const ALL: [ToolShape; 4] = [
        ToolShape::Flat,
        ToolShape::Ball,
        ToolShape::Bull,
        ToolShape::VBit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ToolShape::Flat => "Flat end mill",
            ToolShape::Ball => "Ball nose",
            ToolShape::Bull => "Bull nose",
            ToolShape::VBit => "V-bit",
        }
    }
}

/// One tool of the library: geometry plus the feeds and speeds it runs at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Stable identity; operations refer to tools by it.
    pub id: u64,
    /// Pocket number in the machine's tool table (the `T` word).
    pub number: u32,
    pub name: String,
    pub shape: ToolShape,
    /// mm.
    pub diameter: f64,
    /// Bull nose only, mm.
    pub corner_radius: f64,
    /// V-bit only, degrees between opposite flanks.
    pub included_angle: f64,
    /// mm/min.
    pub feed: f64,
    /// mm/min.
    pub plunge_feed: f64,
    /// rpm.
    pub spindle_rpm: f64,
}

impl Tool {
    /// The cutter the core computes with, checked.
    pub fn cutter(&self) -> Result<Cutter, String> {
        let c = match self.shape {
            ToolShape::Flat => Cutter::Flat {
                diameter: self.diameter,
            },
            ToolShape::Ball => Cutter::Ball {
                diameter: self.diameter,
            },
            ToolShape::Bull => Cutter::Bull {
                diameter: self.diameter,
                corner_radius: self.corner_radius,
            },
            ToolShape::VBit => Cutter::VBit {
                diameter: self.diameter,
                included_angle: self.included_angle,
            },
        };
        c.validate()
            .map_err(|e| format!("tool \"{}\": {e}", self.name))?;
        Ok(c)
    }

    /// Feeds for G-code and time estimates; `rapid_rate` is the machine's (Preferences).
    pub fn feeds(&self, rapid_rate: f64) -> Result<Feeds, String> {
        let f = Feeds {
            feed: self.feed,
            plunge_feed: self.plunge_feed,
            spindle_rpm: self.spindle_rpm,
            rapid_rate,
        };
        f.validate()
            .map_err(|e| format!("tool \"{}\": {e}", self.name))?;
        Ok(f)
    }

    /// "T1 3 mm ball nose" — what lists show.
    pub fn title(&self) -> String {
        format!("T{} {}", self.number, self.name)
    }
}

/// The tools, saved between runs (tools.json in the config folder).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolLibrary {
    pub tools: Vec<Tool>,
}

impl Default for ToolLibrary {
    /// A starter set a hobby router or a small mill can run as it is.
    fn default() -> Self {
        let tool = |id, name: &str, shape, diameter, feed, plunge_feed, spindle_rpm| Tool {
            id,
            number: id as u32,
            name: name.into(),
            shape,
            diameter,
            corner_radius: 1.0,
            included_angle: 60.0,
            feed,
            plunge_feed,
            spindle_rpm,
        };
        Self {
            tools: vec![
                tool(
                    1,
                    "3 mm ball nose",
                    ToolShape::Ball,
                    3.0,
                    1000.0,
                    300.0,
                    18000.0,
                ),
                tool(
                    2,
                    "6 mm flat end mill",
                    ToolShape::Flat,
                    6.0,
                    1200.0,
                    300.0,
                    16000.0,
                ),
                tool(
                    3,
                    "6 mm bull nose R1",
                    ToolShape::Bull,
                    6.0,
                    1200.0,
                    300.0,
                    16000.0,
                ),
                tool(
                    4,
                    "6 mm 60° V-bit",
                    ToolShape::VBit,
                    6.0,
                    800.0,
                    200.0,
                    18000.0,
                ),
            ],
        }
    }
}

impl ToolLibrary {
    pub fn get(&self, id: u64) -> Option<&Tool> {
        self.tools.iter().find(|t| t.id == id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Tool> {
        self.tools.iter_mut().find(|t| t.id == id)
    }

    /// Adds a copy of `template` (or a 6 mm flat end mill) with a new id and the next free
    /// tool number; returns the id.
    pub fn add(&mut self, template: Option<&Tool>) -> u64 {
        let id = self.tools.iter().map(|t| t.id).max().unwrap_or(0) + 1;
        let number = self.tools.iter().map(|t| t.number).max().unwrap_or(0) + 1;
        let mut t = template.cloned().unwrap_or(Tool {
            id,
            number,
            name: "6 mm flat end mill".into(),
            shape: ToolShape::Flat,
            diameter: 6.0,
            corner_radius: 1.0,
            included_angle: 60.0,
            feed: 1200.0,
            plunge_feed: 300.0,
            spindle_rpm: 16000.0,
        });
        if template.is_some() {
            t.name = format!("{} (copy)", t.name);
        }
        t.id = id;
        t.number = number;
        self.tools.push(t);
        id
    }

    pub fn remove(&mut self, id: u64) {
        self.tools.retain(|t| t.id != id);
    }
}

/// Which way raster lines run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineAxis {
    X,
    Y,
}

/// Raster finishing: parallel drop-cutter passes over the whole part.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RasterParams {
    /// Distance between passes, mm.
    pub stepover: f64,
    /// Distance between computed points along a pass, mm.
    pub sampling: f64,
    pub axis: LineAxis,
    pub direction: Direction,
    /// Points are merged while the path stays within this of the exact surface, mm.
    pub merge_tolerance: f64,
    /// The passes cover the part's XY box grown by the tool radius plus this, mm, so the
    /// outermost pass clears the part's sides instead of grazing them.
    pub extra_margin: f64,
    /// Material left on the surface for a later pass, mm (0 = finish to size).
    pub allowance: f64,
}

impl Default for RasterParams {
    /// What `millpond toolpath` does with no options: one click gives a good finish.
    fn default() -> Self {
        Self {
            stepover: 0.5,
            sampling: 0.1,
            axis: LineAxis::X,
            direction: Direction::Zigzag,
            merge_tolerance: raster::DEFAULT_MERGE_TOLERANCE,
            extra_margin: 0.5,
            allowance: 0.0,
        }
    }
}

/// Waterline finishing: closed contours level after level, top down — for steep walls,
/// where raster passes leave scallops.
#[derive(Clone, Copy, Debug, PartialEq)]
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
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoughingParams {
    /// Depth of each layer, mm.
    pub stepdown: f64,
    /// Distance between clearing passes in a layer, mm.
    pub stepover: f64,
    /// Material left on the model for the finishing passes, mm.
    pub allowance: f64,
    pub pattern: ClearPattern,
    pub milling: Milling,
    /// Grid spacing the layer outlines are traced on, mm.
    pub sampling: f64,
    /// Entry ramp angle, degrees from horizontal.
    pub ramp_angle: f64,
}

impl Default for RoughingParams {
    /// Conservative for a 6 mm end mill in wood, plastics or aluminium.
    fn default() -> Self {
        Self {
            stepdown: 2.0,
            stepover: 2.5,
            allowance: 0.3,
            pattern: ClearPattern::Offset,
            milling: Milling::Climb,
            sampling: 0.25,
            ramp_angle: 3.0,
        }
    }
}

/// A strategy with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    Roughing(RoughingParams),
    RasterFinishing(RasterParams),
    WaterlineFinishing(WaterlineParams),
}

impl Strategy {
    /// One default of each strategy, for "Add operation".
    pub fn defaults() -> Vec<Strategy> {
        vec![
            Strategy::Roughing(RoughingParams::default()),
            Strategy::RasterFinishing(RasterParams::default()),
            Strategy::WaterlineFinishing(WaterlineParams::default()),
        ]
    }

    pub fn label(&self) -> &'static str {
        match self {
            Strategy::Roughing(_) => "Roughing",
            Strategy::RasterFinishing(_) => "Raster finishing",
            Strategy::WaterlineFinishing(_) => "Waterline finishing",
        }
    }

    /// The tool shape this strategy is usually cut with.
    pub fn usual_shape(&self) -> ToolShape {
        match self {
            Strategy::Roughing(_) => ToolShape::Flat,
            Strategy::RasterFinishing(_) | Strategy::WaterlineFinishing(_) => ToolShape::Ball,
        }
    }
}

/// One operation of the job.
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
}

/// The operations in machining order, and which one the editor shows.
#[derive(Clone, Debug)]
pub struct Operations {
    pub list: Vec<OperationDef>,
    pub selected: Option<u64>,
    next_id: u64,
}

impl Operations {
    /// Raster finishing with the first ball nose of the library (or the first tool).
    pub fn with_default(tools: &ToolLibrary) -> Self {
        let tool = tools
            .tools
            .iter()
            .find(|t| t.shape == ToolShape::Ball)
            .or(tools.tools.first())
            .map_or(0, |t| t.id);
        let mut ops = Self {
            list: Vec::new(),
            selected: None,
            next_id: 1,
        };
        ops.add(Strategy::RasterFinishing(RasterParams::default()), tool);
        ops
    }

    pub fn add(&mut self, strategy: Strategy, tool: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let name = format!("{} {}", strategy.label(), self.list.len() + 1);
        self.list.push(OperationDef {
            id,
            name,
            enabled: true,
            visible: true,
            tool,
            strategy,
        });
        self.selected = Some(id);
        id
    }

    pub fn get(&self, id: u64) -> Option<&OperationDef> {
        self.list.iter().find(|o| o.id == id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut OperationDef> {
        self.list.iter_mut().find(|o| o.id == id)
    }

    pub fn remove(&mut self, id: u64) {
        self.list.retain(|o| o.id != id);
        if self.selected == Some(id) {
            self.selected = self.list.first().map(|o| o.id);
        }
    }

    /// Moves an operation one place earlier (`up`) or later in the machining order.
    pub fn move_by(&mut self, id: u64, up: bool) {
        let Some(i) = self.list.iter().position(|o| o.id == id) else {
            return;
        };
        if up && i > 0 {
            self.list.swap(i, i - 1);
        } else if !up && i + 1 < self.list.len() {
            self.list.swap(i, i + 1);
        }
    }
}

/// How the stock is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StockMode {
    /// The model's box plus margins: follows the model when it moves.
    ModelBox,
    /// Fixed corners.
    Explicit,
}

/// The block the part is cut from: sets the floor (its bottom) and the safe height.
#[derive(Clone, Debug, PartialEq)]
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
}

impl Default for Stock {
    fn default() -> Self {
        Self {
            mode: StockMode::ModelBox,
            margin_xy: 2.0,
            margin_top: 1.0,
            margin_bottom: 0.0,
            min: [0.0; 3],
            max: [100.0, 100.0, 20.0],
            safe_height: 5.0,
        }
    }
}

impl Stock {
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

/// Everything needed to run one operation and to post its toolpath.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedJob {
    pub spec: JobSpec,
    pub tool: Tool,
    pub feeds: Feeds,
    pub safe_z: f64,
}

/// Turns an operation into a validated job for the current model, tool and stock.
pub fn plan(
    op: &OperationDef,
    tools: &ToolLibrary,
    model: &Model,
    stock: &Stock,
    rapid_rate: f64,
) -> Result<PlannedJob, String> {
    let tool = tools
        .get(op.tool)
        .ok_or_else(|| format!("{}: choose a tool", op.name))?;
    let cutter = tool.cutter()?;
    let feeds = tool.feeds(rapid_rate)?;
    let mb = model.bounds();
    let sb = stock.aabb(mb);
    if sb.is_empty() || !(sb.min.is_finite() && sb.max.is_finite()) {
        return Err("the stock box is empty: every minimum must be below its maximum".into());
    }
    if !(stock.safe_height.is_finite() && stock.safe_height > 0.0) {
        return Err("the safe height must be a positive number of millimetres".into());
    }
    let safe_z = sb.max.z + stock.safe_height;
    if safe_z <= mb.max.z {
        return Err(format!(
            "the safe height Z{safe_z:.3} is not above the model's top Z{:.3}: raise the stock top",
            mb.max.z
        ));
    }
    let operation = match &op.strategy {
        Strategy::Roughing(p) => {
            let reach = cutter.radius() + p.allowance.max(0.0);
            let grid = ContourSpec::grid_around(mb.xy(), reach, p.sampling)
                .map_err(|e| format!("{}: {e}", op.name))?;
            // Layers from the stock top down to the stock bottom.
            let levels = waterline::levels_down(sb.max.z, sb.min.z, p.stepdown)
                .map_err(|e| format!("{}: {e}", op.name))?;
            JobOperation::Rough(RoughSpec {
                contours: ContourSpec {
                    grid,
                    levels,
                    allowance: p.allowance,
                },
                stock: sb,
                stepover: p.stepover,
                pattern: p.pattern,
                milling: p.milling,
                safe_z,
                ramp_angle: p.ramp_angle,
            })
        }
        Strategy::RasterFinishing(p) => {
            if !p.extra_margin.is_finite() {
                return Err(format!("{}: the margin must be a number", op.name));
            }
            JobOperation::Raster(RasterSpec {
                grid: Grid {
                    axis: match p.axis {
                        LineAxis::X => Axis::X,
                        LineAxis::Y => Axis::Y,
                    },
                    bounds: mb.xy().grown(cutter.radius() + p.extra_margin),
                    step: p.stepover,
                    sampling: p.sampling,
                },
                floor: sb.min.z,
                safe_z,
                direction: p.direction,
                merge_tolerance: p.merge_tolerance,
                allowance: p.allowance,
            })
        }
        Strategy::WaterlineFinishing(p) => {
            let reach = cutter.radius() + p.allowance.max(0.0);
            let grid = ContourSpec::grid_around(mb.xy(), reach, p.sampling)
                .map_err(|e| format!("{}: {e}", op.name))?;
            // Levels from just below the model's top (above it there is nothing to follow)
            // down to the stock bottom, or the model's bottom if the stock reaches lower.
            let floor = sb.min.z.max(mb.min.z);
            let levels = waterline::levels_down(mb.max.z, floor, p.stepdown)
                .map_err(|e| format!("{}: {e}", op.name))?;
            JobOperation::Waterline(WaterlineSpec {
                contours: ContourSpec {
                    grid,
                    levels,
                    allowance: p.allowance,
                },
                safe_z,
                milling: p.milling,
            })
        }
    };
    let spec = JobSpec {
        mesh: model.mesh.hash(),
        cutter,
        operation,
    };
    spec.validate().map_err(|e| format!("{}: {e}", op.name))?;
    Ok(PlannedJob {
        spec,
        tool: tool.clone(),
        feeds,
        safe_z,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_add_copies_with_fresh_id_and_number() {
        let mut lib = ToolLibrary::default();
        let first = lib.tools[0].clone();
        let id = lib.add(Some(&first));
        let t = lib.get(id).unwrap();
        assert_ne!(t.id, first.id);
        assert_eq!(t.number, 5);
        assert_eq!(t.diameter, first.diameter);
        assert!(t.name.ends_with("(copy)"));
        let json = serde_json::to_string(&lib).unwrap();
        assert_eq!(serde_json::from_str::<ToolLibrary>(&json).unwrap(), lib);
    }

    #[test]
    fn operations_reorder_and_remove() {
        let lib = ToolLibrary::default();
        let mut ops = Operations::with_default(&lib);
        let a = ops.list[0].id;
        let b = ops.add(Strategy::defaults().remove(0), 2);
        ops.move_by(b, true);
        assert_eq!(ops.list[0].id, b);
        ops.move_by(b, true);
        assert_eq!(ops.list[0].id, b, "the first stays first");
        ops.move_by(a, false);
        assert_eq!(ops.list[1].id, a, "the last stays last");
        ops.remove(b);
        assert_eq!(ops.list.len(), 1);
        assert_eq!(ops.selected, Some(a));
    }

    #[test]
    fn default_operation_uses_the_ball_nose_and_the_cli_defaults() {
        let lib = ToolLibrary::default();
        let ops = Operations::with_default(&lib);
        let op = &ops.list[0];
        assert_eq!(lib.get(op.tool).unwrap().shape, ToolShape::Ball);
        assert_eq!(lib.get(op.tool).unwrap().diameter, 3.0);
        let Strategy::RasterFinishing(p) = &op.strategy else {
            panic!("the default is raster finishing");
        };
        assert_eq!((p.stepover, p.sampling), (0.5, 0.1));
    }
}
