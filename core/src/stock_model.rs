//! What is left of the stock: a height field (Z-map) over the stock's XY box, lowered by
//! every move of a program, so that each operation knows the material it starts from.
//!
//! Its first use is safety: a cutting move that goes deeper into material than the tool's
//! maximum depth of cut (a finishing pass run on uncut stock, say), or a rapid that would
//! meet material, is found before the program reaches a machine, and named.
//!
//! Each cell holds the top of the material over its centre. A move lowers a cell to the
//! lowest point of the tool's surface over that centre during the move. The tool surface
//! above a point at distance `ρ` from the axis is `tip + h(ρ)`, with the profile `h` convex
//! and non-decreasing (see [`crate::cutter`]); along a straight move the distance to the axis
//! is convex in the move's parameter, so the height of the surface over a cell is a convex
//! function of the parameter, and its minimum is found by a golden-section search when the
//! move is not level (a level or vertical move has it in closed form).

use crate::cutter::{Cutter, Profile};
use crate::geom::{Aabb, Point3};
use crate::raster::FEED_CLEARANCE;
use crate::toolpath::{MoveKind, Toolpath};
use thiserror::Error;

/// Most cells a stock model may have (16 M cells, 128 MiB of heights): a larger stock gets
/// coarser cells rather than exhausting memory.
pub const MAX_CELLS: usize = 1 << 24;

/// Material thinner than this is not counted as material a move meets, mm: rounding in the
/// cell heights and the moves' own coordinates stays below it.
pub const MATERIAL_TOLERANCE: f64 = 1e-3;

/// Why a stock model cannot be made.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum StockModelError {
    #[error("the stock box is empty or not finite")]
    EmptyStock,
    #[error("the cell size must be a positive number of millimetres, got {0}")]
    Cell(f64),
}

/// The material left of a stock block, as a height per cell.
#[derive(Clone, Debug, PartialEq)]
pub struct StockModel {
    /// Centre of cell (0, 0).
    x0: f64,
    y0: f64,
    cell: f64,
    nx: usize,
    ny: usize,
    bottom: f64,
    top: Vec<f64>,
}

/// One move of a toolpath that meets material it should not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoveFinding {
    /// Index into the moves of the toolpath as posted (0-based; the G-code line is not known
    /// here).
    pub index: usize,
    pub kind: MoveKind,
    /// Where the move goes.
    pub to: Point3,
    /// How deep the tool went into material during the move, mm.
    pub depth: f64,
}

/// What one operation's moves did to the stock.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngagementReport {
    /// The deepest cut of any feed move into the material as it stood, mm.
    pub deepest_cut: f64,
    /// The first feed move deeper than the tool's maximum depth of cut.
    pub first_too_deep: Option<MoveFinding>,
    /// How many feed moves were deeper than the maximum depth of cut.
    pub too_deep_moves: usize,
    /// The first rapid move that meets material.
    pub first_rapid_in_material: Option<MoveFinding>,
    /// How many rapid moves meet material.
    pub rapids_in_material: usize,
}

impl EngagementReport {
    /// True when nothing needs the machinist's attention.
    pub fn is_clean(&self) -> bool {
        self.first_too_deep.is_none() && self.first_rapid_in_material.is_none()
    }

    /// The warnings for an operation named `operation`, in a machinist's words (empty when
    /// clean).
    pub fn warnings(&self, operation: &str, max_depth_of_cut: f64) -> Vec<String> {
        let mut w = Vec::new();
        let at = |p: Point3| format!("X{:.3} Y{:.3} Z{:.3}", p.x, p.y, p.z);
        if let Some(f) = self.first_too_deep {
            w.push(format!(
                "{operation}: move {} (to {}) cuts {:.2} mm deep into the stock as it stands, \
                 more than the tool's maximum depth of cut ({:.2} mm); {} move{} in all. Rough \
                 the part first, or lower the stock top.",
                f.index + 1,
                at(f.to),
                f.depth,
                max_depth_of_cut,
                self.too_deep_moves,
                if self.too_deep_moves == 1 { "" } else { "s" },
            ));
        }
        if let Some(f) = self.first_rapid_in_material {
            w.push(format!(
                "{operation}: rapid move {} (to {}) meets material {:.2} mm deep; {} rapid{} \
                 in all.",
                f.index + 1,
                at(f.to),
                f.depth,
                self.rapids_in_material,
                if self.rapids_in_material == 1 {
                    ""
                } else {
                    "s"
                },
            ));
        }
        w
    }
}

/// A sensible maximum depth of cut for a tool, mm, when the user has given none: what its
/// cutting edges reach. Two diameters for end mills, ball and bull noses (a usual flute
/// length for small cutters: deeper, the shank rubs and chips pack); the cone's height for a
/// V-bit. This is the bar for a tool buried in material — a finishing pass run into uncut
/// stock — not a feeds-and-speeds recommendation.
pub fn default_max_depth_of_cut(cutter: &Cutter) -> f64 {
    match cutter {
        Cutter::VBit { .. } => cutter.cutting_height(),
        _ => 2.0 * cutter.diameter(),
    }
}

impl StockModel {
    /// A cell size for this stock and the smallest tool that will cut it: a quarter of its
    /// radius, coarser only where the stock would need more than [`MAX_CELLS`].
    pub fn default_cell(stock: Aabb, smallest_tool_radius: f64) -> f64 {
        let (w, d) = (stock.max.x - stock.min.x, stock.max.y - stock.min.y);
        let fine = (smallest_tool_radius / 4.0).max(1e-3);
        let budget = (w * d / MAX_CELLS as f64).sqrt() * 1.01;
        fine.max(budget)
    }

    /// The uncut block `stock`, in cells of `cell` mm.
    pub fn new(stock: Aabb, cell: f64) -> Result<Self, StockModelError> {
        if stock.is_empty() || !(stock.min.is_finite() && stock.max.is_finite()) {
            return Err(StockModelError::EmptyStock);
        }
        if !(cell.is_finite() && cell > 0.0) {
            return Err(StockModelError::Cell(cell));
        }
        let count = |len: f64| ((len / cell).ceil() as usize).max(1);
        let (nx, ny) = (
            count(stock.max.x - stock.min.x),
            count(stock.max.y - stock.min.y),
        );
        if nx.saturating_mul(ny) > MAX_CELLS {
            return Err(StockModelError::Cell(cell));
        }
        Ok(Self {
            x0: stock.min.x + cell / 2.0,
            y0: stock.min.y + cell / 2.0,
            cell,
            nx,
            ny,
            bottom: stock.min.z,
            top: vec![stock.max.z; nx * ny],
        })
    }

    pub fn cell(&self) -> f64 {
        self.cell
    }

    /// Cells along X and Y.
    pub fn size(&self) -> (usize, usize) {
        (self.nx, self.ny)
    }

    /// Top of the material over cell `(i, j)`.
    pub fn height(&self, i: usize, j: usize) -> f64 {
        self.top[j * self.nx + i]
    }

    /// Centre of cell `(i, j)`.
    pub fn centre(&self, i: usize, j: usize) -> (f64, f64) {
        (
            self.x0 + i as f64 * self.cell,
            self.y0 + j as f64 * self.cell,
        )
    }

    /// Runs a toolpath through the stock with `cutter`, lowering the material, and reports
    /// feed moves deeper than `max_depth_of_cut` and rapids that meet material.
    pub fn machine(
        &mut self,
        cutter: &Cutter,
        toolpath: &Toolpath,
        max_depth_of_cut: f64,
    ) -> EngagementReport {
        self.run(cutter, toolpath, max_depth_of_cut, false).1
    }

    /// As [`machine`](Self::machine), but first makes every straight-down rapid stop
    /// [`FEED_CLEARANCE`] above the material under the tool, as it stands when the tool gets
    /// there, and feed the rest of the way down (a plunge): an approach that would rapid into
    /// what an earlier operation or layer left. Returns the toolpath as changed.
    pub fn machine_with_safe_descents(
        &mut self,
        cutter: &Cutter,
        toolpath: &Toolpath,
        max_depth_of_cut: f64,
    ) -> (Toolpath, EngagementReport) {
        self.run(cutter, toolpath, max_depth_of_cut, true)
    }

    fn run(
        &mut self,
        cutter: &Cutter,
        toolpath: &Toolpath,
        max_depth_of_cut: f64,
        safe_descents: bool,
    ) -> (Toolpath, EngagementReport) {
        let profile = cutter.profile();
        let r = cutter.radius();
        let mut report = EngagementReport::default();
        let mut out = Toolpath {
            start: toolpath.start,
            moves: Vec::with_capacity(if safe_descents {
                toolpath.moves.len()
            } else {
                0
            }),
        };
        let mut at = toolpath.start;
        for (index, m) in toolpath.moves.iter().enumerate() {
            let straight_down =
                m.kind == MoveKind::Rapid && m.to.x == at.x && m.to.y == at.y && m.to.z < at.z;
            if safe_descents && straight_down {
                let stop = self.contact_height(&profile, r, m.to.x, m.to.y) + FEED_CLEARANCE;
                if m.to.z < stop {
                    if at.z > stop {
                        let over = Point3::new(m.to.x, m.to.y, stop);
                        self.sweep(&profile, r, at, over);
                        out.push(MoveKind::Rapid, over);
                        at = over;
                    }
                    let depth = self.sweep(&profile, r, at, m.to);
                    let index = out.moves.len();
                    self.record(
                        &mut report,
                        index,
                        MoveKind::Plunge,
                        m.to,
                        depth,
                        max_depth_of_cut,
                    );
                    out.push(MoveKind::Plunge, m.to);
                    at = m.to;
                    continue;
                }
            }
            // Findings name the moves of the toolpath that is posted.
            let index = if safe_descents {
                out.moves.push(*m);
                out.moves.len() - 1
            } else {
                index
            };
            let depth = self.sweep(&profile, r, at, m.to);
            self.record(&mut report, index, m.kind, m.to, depth, max_depth_of_cut);
            at = m.to;
        }
        (out, report)
    }

    /// Adds one move's meeting with material to `report`.
    fn record(
        &self,
        report: &mut EngagementReport,
        index: usize,
        kind: MoveKind,
        to: Point3,
        depth: f64,
        max_depth_of_cut: f64,
    ) {
        if depth <= MATERIAL_TOLERANCE {
            return;
        }
        let finding = MoveFinding {
            index,
            kind,
            to,
            depth,
        };
        match kind {
            MoveKind::Rapid => {
                report.rapids_in_material += 1;
                report.first_rapid_in_material.get_or_insert(finding);
            }
            MoveKind::Cut | MoveKind::Plunge => {
                report.deepest_cut = report.deepest_cut.max(depth);
                if depth > max_depth_of_cut + MATERIAL_TOLERANCE {
                    report.too_deep_moves += 1;
                    report.first_too_deep.get_or_insert(finding);
                }
            }
        }
    }

    /// The lowest tip height at `(x, y)` at which the tool touches the material left: the
    /// highest of each cell's top less the tool's surface height over it. The stock bottom
    /// where the tool meets nothing.
    pub fn contact_height(&self, profile: &Profile, r: f64, x: f64, y: f64) -> f64 {
        let mut high = self.bottom;
        let (Some((i0, i1)), Some((j0, j1))) = (
            self.span(x - r, x + r, self.x0, self.nx),
            self.span(y - r, y + r, self.y0, self.ny),
        ) else {
            return high;
        };
        for j in j0..=j1 {
            let cy = self.y0 + j as f64 * self.cell;
            for i in i0..=i1 {
                let cx = self.x0 + i as f64 * self.cell;
                let rho = ((cx - x).powi(2) + (cy - y).powi(2)).sqrt();
                if rho <= r {
                    high = high.max(self.top[j * self.nx + i] - profile.height(rho));
                }
            }
        }
        high
    }

    /// Lowers every cell under the tool moving from `a` to `b`; returns the deepest material
    /// the tool met (how far the material stood above the tool's surface), mm.
    fn sweep(&mut self, profile: &Profile, r: f64, a: Point3, b: Point3) -> f64 {
        let (lo_x, hi_x) = (a.x.min(b.x) - r, a.x.max(b.x) + r);
        let (lo_y, hi_y) = (a.y.min(b.y) - r, a.y.max(b.y) + r);
        let Some((i0, i1)) = self.span(lo_x, hi_x, self.x0, self.nx) else {
            return 0.0;
        };
        let Some((j0, j1)) = self.span(lo_y, hi_y, self.y0, self.ny) else {
            return 0.0;
        };
        // Below every point of the move plus the tool: nothing over a cell can be lower.
        let zmin = a.z.min(b.z);
        let (dx, dy, dz) = (b.x - a.x, b.y - a.y, b.z - a.z);
        let len2 = dx * dx + dy * dy;
        let mut deepest = 0.0f64;
        for j in j0..=j1 {
            let cy = self.y0 + j as f64 * self.cell;
            for i in i0..=i1 {
                let k = j * self.nx + i;
                let top = self.top[k];
                if top <= zmin + MATERIAL_TOLERANCE * 0.5 {
                    continue;
                }
                let cx = self.x0 + i as f64 * self.cell;
                // Where along the move the axis passes nearest the cell.
                let t = if len2 > 0.0 {
                    (((cx - a.x) * dx + (cy - a.y) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let near = ((a.x + t * dx - cx).powi(2) + (a.y + t * dy - cy).powi(2)).sqrt();
                if near > r {
                    continue;
                }
                // The surface over the cell is never below the move's lowest tip plus the
                // profile at the nearest distance: where that already clears the material
                // (most cells of a fine raster, cut by the passes before), nothing to search.
                let bound = zmin + profile.height(near);
                if bound >= top {
                    continue;
                }
                let low = if dz == 0.0 || len2 == 0.0 {
                    bound
                } else {
                    lowest_surface(profile, r, (cx, cy), a, b)
                };
                if low < top {
                    deepest = deepest.max(top - low);
                    self.top[k] = low.max(self.bottom);
                }
            }
        }
        deepest
    }

    /// Cell indices whose centres lie in `[lo, hi]` along one axis.
    fn span(&self, lo: f64, hi: f64, origin: f64, n: usize) -> Option<(usize, usize)> {
        let first = ((lo - origin) / self.cell).ceil().max(0.0);
        let last = ((hi - origin) / self.cell).floor().min(n as f64 - 1.0);
        (first <= last).then_some((first as usize, last as usize))
    }
}

/// The lowest height of the tool's surface over `c` while the tip moves from `a` to `b` (not
/// level, not vertical), where the axis passes within `r` of `c`.
fn lowest_surface(profile: &Profile, r: f64, c: (f64, f64), a: Point3, b: Point3) -> f64 {
    let (dx, dy, dz) = (b.x - a.x, b.y - a.y, b.z - a.z);
    let len2 = dx * dx + dy * dy;
    let len = len2.sqrt();
    // The part of the move whose axis passes within r of c: around the foot of the
    // perpendicular from c to the move's line, half a chord of the circle of radius r
    // either way.
    let t_foot = ((c.0 - a.x) * dx + (c.1 - a.y) * dy) / len2;
    let perp2 = (a.x + t_foot * dx - c.0).powi(2) + (a.y + t_foot * dy - c.1).powi(2);
    let half_chord = (r * r - perp2).max(0.0).sqrt() / len;
    let (mut lo, mut hi) = (
        (t_foot - half_chord).max(0.0),
        (t_foot + half_chord).min(1.0),
    );
    if lo > hi {
        // Only an end point is within reach (rounding at the circle's edge).
        lo = t_foot.clamp(0.0, 1.0);
        hi = lo;
    }
    let f = |t: f64| {
        let rho = ((a.x + t * dx - c.0).powi(2) + (a.y + t * dy - c.1).powi(2)).sqrt();
        a.z + t * dz + profile.height(rho.min(r))
    };
    // Convex on [lo, hi]: golden-section search to a tenth of a micron of travel.
    const INV_PHI: f64 = 0.618_033_988_749_894_8;
    let tol = 1e-4 / (len.max(dz.abs()) + 1e-12);
    let mut x1 = hi - INV_PHI * (hi - lo);
    let mut x2 = lo + INV_PHI * (hi - lo);
    let (mut f1, mut f2) = (f(x1), f(x2));
    let mut guard = 0;
    while hi - lo > tol && guard < 100 {
        guard += 1;
        if f1 <= f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - INV_PHI * (hi - lo);
            f1 = f(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + INV_PHI * (hi - lo);
            f2 = f(x2);
        }
    }
    f1.min(f2).min(f(lo)).min(f(hi))
}

/// One operation of a program, as the stock sees it.
#[derive(Clone, Copy, Debug)]
pub struct ProgramStep<'a> {
    pub cutter: Cutter,
    /// The deepest the tool may cut into material in one move, mm.
    pub max_depth_of_cut: f64,
    pub toolpath: &'a Toolpath,
}

/// Machines a whole program's operations in order from the uncut `stock` block, each from
/// what the ones before left: every straight-down rapid is made to stop above the material
/// as it stands and feed the rest of the way
/// ([`machine_with_safe_descents`](StockModel::machine_with_safe_descents)), and each
/// operation's engagement is reported. Returns the toolpaths to post, with their reports.
/// The cells are sized for the smallest tool ([`StockModel::default_cell`]).
pub fn check_program(
    stock: Aabb,
    steps: &[ProgramStep<'_>],
) -> Result<Vec<(Toolpath, EngagementReport)>, StockModelError> {
    let smallest = steps
        .iter()
        .map(|s| s.cutter.radius())
        .fold(f64::INFINITY, f64::min);
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let mut model = StockModel::new(stock, StockModel::default_cell(stock, smallest))?;
    Ok(steps
        .iter()
        .map(|s| model.machine_with_safe_descents(&s.cutter, s.toolpath, s.max_depth_of_cut))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> Aabb {
        Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(40.0, 20.0, 10.0),
        }
    }

    fn path(start: Point3, moves: &[(MoveKind, [f64; 3])]) -> Toolpath {
        let mut tp = Toolpath {
            start,
            moves: Vec::new(),
        };
        for &(k, [x, y, z]) in moves {
            tp.push(k, Point3::new(x, y, z));
        }
        tp
    }

    #[test]
    fn a_slot_lowers_exactly_the_cells_under_the_tool() {
        let mut s = StockModel::new(block(), 0.25).unwrap();
        let flat = Cutter::Flat { diameter: 6.0 };
        let tp = path(
            Point3::new(5.0, 10.0, 20.0),
            &[
                (MoveKind::Rapid, [5.0, 10.0, 11.0]),
                (MoveKind::Plunge, [5.0, 10.0, 8.0]),
                (MoveKind::Cut, [35.0, 10.0, 8.0]),
                (MoveKind::Rapid, [35.0, 10.0, 20.0]),
            ],
        );
        let r = s.machine(&flat, &tp, 6.0);
        assert!(r.is_clean(), "{r:?}");
        assert!((r.deepest_cut - 2.0).abs() < 1e-9, "{r:?}");
        let (nx, ny) = s.size();
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = s.centre(i, j);
                let d = if x < 5.0 {
                    ((x - 5.0).powi(2) + (y - 10.0).powi(2)).sqrt()
                } else if x > 35.0 {
                    ((x - 35.0).powi(2) + (y - 10.0).powi(2)).sqrt()
                } else {
                    (y - 10.0).abs()
                };
                // The tool is a closed solid: a cell at exactly its radius is cut.
                let want = if d <= 3.0 { 8.0 } else { 10.0 };
                assert_eq!(s.height(i, j), want, "cell at {x} {y}");
            }
        }
    }

    #[test]
    fn a_ball_on_a_slope_leaves_its_swept_surface() {
        let mut s = StockModel::new(block(), 0.2).unwrap();
        let ball = Cutter::Ball { diameter: 4.0 };
        // A ramp from (5, 10, 9) to (35, 10, 6).
        let tp = path(
            Point3::new(5.0, 10.0, 9.0),
            &[(MoveKind::Cut, [35.0, 10.0, 6.0])],
        );
        s.machine(&ball, &tp, 10.0);
        let (nx, ny) = s.size();
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = s.centre(i, j);
                // Brute force: the lowest surface point over the cell, sampled finely.
                let mut want = 10.0f64;
                for k in 0..=20_000 {
                    let t = k as f64 / 20_000.0;
                    let (px, pz) = (5.0 + 30.0 * t, 9.0 - 3.0 * t);
                    let rho = ((px - x).powi(2) + (y - 10.0).powi(2)).sqrt();
                    if rho <= 2.0 {
                        want = want.min(pz + ball.height_at(rho));
                    }
                }
                let got = s.height(i, j);
                assert!(
                    (got - want).abs() < 2e-4,
                    "cell at {x} {y}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn full_depth_cuts_and_rapids_into_material_are_found() {
        let mut s = StockModel::new(block(), 0.5).unwrap();
        let ball = Cutter::Ball { diameter: 3.0 };
        // On cell centres, so that the deepest cell is right under the tip.
        let tp = path(
            Point3::new(2.25, 2.25, 15.0),
            &[
                // Rapid down to 1 mm above the floor: straight through 9 mm of stock.
                (MoveKind::Rapid, [2.25, 2.25, 1.0]),
                (MoveKind::Plunge, [2.25, 2.25, 0.0]),
                (MoveKind::Cut, [37.75, 2.25, 0.0]),
                (MoveKind::Cut, [37.75, 2.75, 0.0]),
                (MoveKind::Rapid, [37.75, 2.75, 15.0]),
            ],
        );
        let r = s.machine(&ball, &tp, default_max_depth_of_cut(&ball));
        let rapid = r.first_rapid_in_material.unwrap();
        assert_eq!((rapid.index, rapid.kind), (0, MoveKind::Rapid));
        assert!((rapid.depth - 9.0).abs() < 1e-9, "{rapid:?}");
        // The plunge finishes what the rapid left: 1 mm. The long cut is buried 10 mm.
        let deep = r.first_too_deep.unwrap();
        assert_eq!(deep.index, 2, "{r:?}");
        assert!((deep.depth - 10.0).abs() < 1e-9, "{deep:?}");
        // The step over still meets the uncut wall beside the slot.
        assert_eq!(r.too_deep_moves, 2, "{r:?}");
        let w = r.warnings("Raster finishing 1", 3.0);
        assert_eq!(w.len(), 2);
        assert!(
            w[0].contains("move 3") && w[0].contains("10.00 mm deep"),
            "{w:?}"
        );
        assert!(w[1].contains("rapid move 1"), "{w:?}");
        // Once machined, the same path meets nothing.
        let again = s.machine(&ball, &tp, 3.0);
        assert!(again.is_clean() && again.deepest_cut == 0.0, "{again:?}");
    }

    #[test]
    fn straight_down_rapids_stop_above_the_material_and_feed_the_rest() {
        let mut s = StockModel::new(block(), 0.5).unwrap();
        let flat = Cutter::Flat { diameter: 4.0 };
        // A pocket 4 mm deep around (10.25, 10.25); then an approach into it and one beside
        // it onto the uncut top, both rapiding straight down to 1 mm above their targets.
        let first = path(
            Point3::new(10.25, 10.25, 20.0),
            &[
                (MoveKind::Rapid, [10.25, 10.25, 11.0]),
                (MoveKind::Plunge, [10.25, 10.25, 6.0]),
                (MoveKind::Rapid, [10.25, 10.25, 20.0]),
            ],
        );
        s.machine(&flat, &first, 12.0);
        let second = path(
            Point3::new(10.25, 10.25, 20.0),
            &[
                (MoveKind::Rapid, [10.25, 10.25, 6.5]),
                (MoveKind::Plunge, [10.25, 10.25, 5.5]),
                (MoveKind::Rapid, [10.25, 10.25, 20.0]),
                (MoveKind::Rapid, [30.25, 10.25, 20.0]),
                (MoveKind::Rapid, [30.25, 10.25, 6.5]),
                (MoveKind::Plunge, [30.25, 10.25, 5.5]),
                (MoveKind::Rapid, [30.25, 10.25, 20.0]),
            ],
        );
        let (posted, report) = s.machine_with_safe_descents(&flat, &second, 12.0);
        assert!(report.first_rapid_in_material.is_none(), "{report:?}");
        let kinds: Vec<(MoveKind, f64)> = posted.moves.iter().map(|m| (m.kind, m.to.z)).collect();
        assert_eq!(
            kinds,
            [
                // Into the pocket: its floor is at 6, so the rapid stops at 7 and feeds on.
                (MoveKind::Rapid, 7.0),
                (MoveKind::Plunge, 6.5),
                (MoveKind::Plunge, 5.5),
                (MoveKind::Rapid, 20.0),
                (MoveKind::Rapid, 20.0),
                // Onto the uncut top at 10: rapid to 11, feed down to 6.5, then on.
                (MoveKind::Rapid, 11.0),
                (MoveKind::Plunge, 6.5),
                (MoveKind::Plunge, 5.5),
                (MoveKind::Rapid, 20.0),
            ]
        );
        // The deepest feed is the one down from 11 through the uncut top at 10 to 6.5.
        assert!((report.deepest_cut - 3.5).abs() < 1e-9, "{report:?}");
        assert!(s.machine(&flat, &second, 12.0).rapids_in_material == 0);
    }

    #[test]
    fn large_stocks_get_coarser_cells_and_bad_ones_are_refused() {
        let big = Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(3000.0, 2000.0, 100.0),
        };
        let cell = StockModel::default_cell(big, 0.5);
        let s = StockModel::new(big, cell).unwrap();
        assert!(s.size().0 * s.size().1 <= MAX_CELLS);
        assert_eq!(StockModel::default_cell(block(), 1.5), 0.375);
        assert!(StockModel::new(big, 0.01).is_err());
        assert!(StockModel::new(block(), 0.0).is_err());
        assert!(StockModel::new(block(), f64::NAN).is_err());
        let empty = Aabb {
            min: Point3::new(1.0, 0.0, 0.0),
            max: Point3::new(0.0, 1.0, 1.0),
        };
        assert_eq!(
            StockModel::new(empty, 1.0),
            Err(StockModelError::EmptyStock)
        );
        assert_eq!(
            default_max_depth_of_cut(&Cutter::Flat { diameter: 6.0 }),
            12.0
        );
        let v = Cutter::VBit {
            diameter: 6.0,
            included_angle: 90.0,
        };
        assert!((default_max_depth_of_cut(&v) - 3.0).abs() < 1e-12);
    }
}
