//! Waterline contours (ARCHITECTURE.md §3.4): at tip height z, the closed loops where the cutter
//! touches the model from outside — the boundary of the region where the drop-cutter height
//! exceeds z.
//!
//! How: the drop-cutter heights on a square grid (the fibers: every grid row is an X fiber,
//! every column a Y fiber) classify grid points as inside (drop > z) or outside, marching
//! squares connects the grid edges where the class changes, and the crossing on each such edge
//! is found exactly. For one triangle the drop height along a straight line is concave, so the
//! part of the edge where that triangle holds the cutter above z is one interval whose end
//! bisection finds to 1e-9 mm; from there the next triangle that still holds it above z (if
//! any) carries on, until no triangle does. The crossing reported is that first point where the
//! cutter is clear, so a contour point never gouges and is within 1e-9 mm of the true contact
//! along its fiber.
//!
//! The grid's heights do not depend on z, so every level of a job shares them: one drop-cutter
//! pass, then cheap per-level work. A chunk is a band of grid rows with all its levels; chains
//! that leave the band end on an edge of its first or last row, named by that edge, and the
//! neighbouring band computes the same crossing on the same edge bit for bit, so assembly joins
//! them by name.
//!
//! Features: the region grows every part of the model by the cutter, so islands are at least a
//! cutter wide; a gap in it (a slot wider than the cutter) or a region narrower than the grid
//! spacing can fall between fibers and be missed — that is what "sampling" means.

use crate::drop::{Band, DropCutter};
use crate::error::JobError;
use crate::grid::Grid;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Crossings are located to this distance along their fiber, mm.
const CROSSING_TOLERANCE: f64 = 1e-9;

/// Witness hand-overs per crossing before falling back to plain bisection (only a mesh of
/// slivers far smaller than the sampling gets there).
const MAX_HOPS: usize = 64;

/// Between two contour points the straight chord may cut into the region (where it is convex)
/// by its sag. Where the chord's midpoint is more than this deep (in drop-cutter height), an
/// exact boundary point is added near it, up to `REFINE_DEPTH` times per chord.
pub const REFINE_TOLERANCE: f64 = 0.0005;
const REFINE_DEPTH: usize = 4;
/// Exact points added, one after the other, to follow a corner of the region into the
/// crossings' chord (`Slicer::refine_corner`): each roughly halves what the chord cuts off,
/// 0.5 mm fibers leaving under 2 µm of an inside corner.
const CORNER_DEPTH: usize = 10;
/// Points a chunk may return per grid edge of its rows (one crossing, plus refinement).
pub const MAX_POINTS_PER_EDGE: usize = 2 << REFINE_DEPTH;

/// Most levels one job may ask for.
pub const MAX_LEVELS: usize = 10_000;

/// What to slice: the grid (lines along X, `step` = distance between X fibers, `sampling` =
/// distance between Y fibers), the tip heights, and the material to leave on the surface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContourSpec {
    pub grid: Grid,
    /// Tip heights, in the order the loops are wanted.
    pub levels: Vec<f64>,
    /// Material left on the model, mm (0 = touch it).
    pub allowance: f64,
}

impl ContourSpec {
    /// The grid spacing that keeps every feature of the region: the model's box grown by the
    /// cutter and two spacings, so that the outermost grid points are clear of the model and
    /// every loop closes inside the grid.
    pub fn grid_around(
        model: crate::geom::Rect,
        reach: f64,
        sampling: f64,
    ) -> Result<Grid, JobError> {
        let g = Grid {
            axis: crate::drop::Axis::X,
            bounds: model.grown(reach + 2.0 * sampling),
            step: sampling,
            sampling,
        };
        g.validate()?;
        Ok(g)
    }

    pub fn validate(&self) -> Result<(), JobError> {
        if self.grid.axis != crate::drop::Axis::X {
            return Err(JobError::Invalid(
                "contour grids run along X (rows are X fibers, columns Y fibers)".into(),
            ));
        }
        if self.grid.lines() < 2 || self.grid.points_per_line() < 2 {
            return Err(JobError::Invalid(
                "contour grid needs at least 2 by 2 points".into(),
            ));
        }
        if self.levels.is_empty() || self.levels.len() > MAX_LEVELS {
            return Err(JobError::Invalid(format!(
                "between 1 and {MAX_LEVELS} levels are needed, got {}",
                self.levels.len()
            )));
        }
        if let Some(z) = self.levels.iter().find(|z| !z.is_finite()) {
            return Err(JobError::Invalid(format!(
                "level z must be finite, got {z}"
            )));
        }
        if !(self.allowance.is_finite() && self.allowance >= 0.0) {
            return Err(JobError::Invalid(format!(
                "material allowance must be 0 or more, got {}",
                self.allowance
            )));
        }
        Ok(())
    }

    /// Lowest height the drop-cutter needs to report: below every level.
    pub fn floor(&self) -> f64 {
        self.levels.iter().copied().fold(f64::INFINITY, f64::min) - 1.0
    }
}

/// A piece of contour found by one chunk. A chain that leaves the chunk's rows starts or ends
/// on a horizontal grid edge, named `row * points_per_line + column`; a closed loop has
/// neither. Points are (x, y) tip positions at the level's height.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chain {
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub points: Vec<[f64; 2]>,
}

/// One closed contour: the last point joins the first. Outer boundaries run
/// counter-clockwise around the region the cutter may not enter, holes clockwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contour {
    pub points: Vec<[f64; 2]>,
    /// True for a boundary of a hole in the region (a pocket the cutter can enter).
    pub hole: bool,
}

/// The contours of one level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub z: f64,
    pub contours: Vec<Contour>,
}

/// Signed area: positive for counter-clockwise.
pub fn signed_area(points: &[[f64; 2]]) -> f64 {
    let n = points.len();
    let mut a = 0.0;
    for i in 0..n {
        let (p, q) = (points[i], points[(i + 1) % n]);
        a += p[0] * q[1] - q[0] * p[1];
    }
    a / 2.0
}

/// x where the horizontal line at `y` crosses the closed contours, in no particular order
/// (half-open rule, so a vertex on the line counts once).
pub fn crossings<'a>(contours: impl IntoIterator<Item = &'a [[f64; 2]]>, y: f64) -> Vec<f64> {
    let mut xs = Vec::new();
    for c in contours {
        for i in 0..c.len() {
            let (a, b) = (c[i], c[(i + 1) % c.len()]);
            if (a[1] > y) != (b[1] > y) {
                xs.push(a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]));
            }
        }
    }
    xs
}

/// Even-odd point-in-polygon test.
pub fn contains(points: &[[f64; 2]], p: [f64; 2]) -> bool {
    crossings([points], p[1])
        .iter()
        .filter(|&&x| p[0] < x)
        .count()
        % 2
        == 1
}

/// A grid edge: horizontal (along an X fiber) from point (i, j) to (i + 1, j), or vertical
/// (along a Y fiber) from (i, j) to (i, j + 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Edge {
    H { j: usize, i: usize },
    V { j: usize, i: usize },
}

/// Chunk work for one band of rows: heights of grid rows `first_row..` (row-major, whole rows).
pub(crate) struct Slicer<'a> {
    pub dc: &'a DropCutter<'a>,
    pub band: &'a Band,
    pub grid: &'a Grid,
    pub first_row: usize,
    pub heights: &'a [f64],
}

impl Slicer<'_> {
    fn ppl(&self) -> usize {
        self.grid.points_per_line()
    }

    fn h(&self, i: usize, j: usize) -> f64 {
        self.heights[(j - self.first_row) * self.ppl() + i]
    }

    fn xy(&self, i: usize, j: usize) -> (f64, f64) {
        (self.grid.along(i), self.grid.across(j))
    }

    /// The exact crossing on `edge`, walking from its inside end to its outside end.
    fn crossing(&self, edge: Edge, z: f64) -> [f64; 2] {
        let (p, q) = match edge {
            Edge::H { j, i } => ((i, j), (i + 1, j)),
            Edge::V { j, i } => ((i, j), (i, j + 1)),
        };
        let (inside, outside) = if self.h(p.0, p.1) > z { (p, q) } else { (q, p) };
        let a = self.xy(inside.0, inside.1);
        let b = self.xy(outside.0, outside.1);
        // Position along the edge: t in [0, 1] from the inside end; the point is computed the
        // same way for the same edge in either neighbouring chunk.
        let at = |t: f64| [a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t];
        let len = (b.0 - a.0).abs() + (b.1 - a.1).abs();
        at(self.exit(at, len, z, None))
    }

    /// Where the segment `at(t)`, `t` in `[0, 1]` and `len` long, first leaves the region
    /// {tip height > z}, walking from `at(0)` (inside, or on its edge) towards `at(1)`
    /// (outside): the first clear `t` of a fixed ladder of steps (the power of two at or
    /// below `CROSSING_TOLERANCE / len`), so within `CROSSING_TOLERANCE` past the exact
    /// boundary. `witness` is a band triangle known to hold the tool above `z` at `at(0)`,
    /// if any.
    ///
    /// One triangle's tip height is concave along a line, so the interval where it holds
    /// the tool above `z` ends at one place, found on that triangle alone; at the first step
    /// past it that this triangle does not hold, the whole band is asked for another
    /// triangle still holding the tool, and the walk goes on from it.
    ///
    /// Why a ladder: the triangles the walk hands over between come in the order a chunk's
    /// band lists them, and that depends on which rows the band was prepared for. Stopping
    /// anywhere within the tolerance, two chunks that share an edge, or one job split into
    /// chunks two ways, would report a crossing 1e-10 mm apart. Every step before the
    /// answer is inside and the answer is clear, whichever triangles said so, so the first
    /// clear step is the model's alone.
    fn exit(&self, at: impl Fn(f64) -> [f64; 2], len: f64, z: f64, witness: Option<u32>) -> f64 {
        let tol = CROSSING_TOLERANCE / len;
        let step = 2f64.powi(tol.log2().floor() as i32);
        let exceeds = |t: f64| {
            let [x, y] = at(t);
            self.dc.band_exceeds(self.band, x, y, z, None)
        };
        let bisect = |mut lo: f64, above: &dyn Fn(f64) -> bool| {
            // `above` is true at lo and false at 1.
            let mut hi = 1.0;
            while hi - lo > tol {
                let mid = 0.5 * (lo + hi);
                if mid <= lo || mid >= hi {
                    break;
                }
                if above(mid) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            hi
        };
        // Every t up to `lo` is inside (each witness held the tool above z over the stretch
        // it carried), and `lo` is a step of the ladder (or 0).
        let mut lo = 0.0;
        let mut witness = witness.or_else(|| exceeds(lo));
        for _ in 0..MAX_HOPS {
            let Some(w) = witness else {
                return lo;
            };
            // How far this triangle holds the tool above z (-inf out of its reach).
            let rise = |t: f64| {
                let [x, y] = at(t);
                self.dc.band_touch(self.band, w, x, y) - z
            };
            let end = rise(1.0);
            if end > 0.0 {
                // The caller says the far end is clear; trust it (rounding at a tie).
                break;
            }
            let held = interval_end(lo, rise(lo), end, tol, &rise);
            // The first step past `held` this triangle does not hold: at most a step or two.
            let mut t = ((held / step).floor() + 1.0) * step;
            while t < 1.0 && rise(t) > 0.0 {
                t += step;
            }
            if t >= 1.0 {
                return 1.0;
            }
            lo = t;
            witness = exceeds(lo);
        }
        // Pathological slivers: bisect on the whole model.
        bisect(lo, &|t| exceeds(t).is_some())
    }

    /// Adds exact boundary points where a chord between consecutive points cuts into the
    /// region by more than `REFINE_TOLERANCE` at its midpoint. The region is on the left, so
    /// outward is the chord's right-hand normal; the new point is where the line from the
    /// midpoint outward leaves the region, found like a fiber crossing.
    fn refined(&self, points: Vec<[f64; 2]>, z: f64, closed: bool) -> Vec<[f64; 2]> {
        if points.len() < 2 {
            return points;
        }
        let mut out = Vec::with_capacity(points.len());
        let n = points.len();
        let pairs = if closed { n } else { n - 1 };
        for k in 0..pairs {
            let (p, q) = (points[k], points[(k + 1) % n]);
            out.push(p);
            // Points this chord may still gain, whatever the shape makes of the depths.
            let mut budget = MAX_POINTS_PER_EDGE - 1;
            let depths = (REFINE_DEPTH, CORNER_DEPTH, &mut budget);
            self.refine_chord(p, q, z, depths, &mut out);
        }
        if !closed {
            out.push(points[n - 1]);
        }
        out
    }

    fn refine_chord(
        &self,
        p: [f64; 2],
        q: [f64; 2],
        z: f64,
        (depth, corners, budget): (usize, usize, &mut usize),
        out: &mut Vec<[f64; 2]>,
    ) {
        if *budget == 0 {
            return;
        }
        let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if len < 1e-6 {
            return;
        }
        let m = [0.5 * (p[0] + q[0]), 0.5 * (p[1] + q[1])];
        // The new point, and what is left of each depth for the chords either side of it.
        let (c, depth, corners) =
            match self
                .dc
                .band_exceeds(self.band, m[0], m[1], z + REFINE_TOLERANCE, None)
            {
                Some(witness) if depth > 0 => {
                    // Outward normal; a convex bulge's sag is less than half the chord.
                    let nrm = [dy / len, -dx / len];
                    let reach = 0.5 * len;
                    let at = |t: f64| [m[0] + nrm[0] * reach * t, m[1] + nrm[1] * reach * t];
                    let end = at(1.0);
                    if self
                        .dc
                        .band_exceeds(self.band, end[0], end[1], z, None)
                        .is_some()
                    {
                        // Not a simple bulge (a corner of the grid's own making): leave the chord.
                        return;
                    }
                    (
                        at(self.exit(at, reach, z, Some(witness))),
                        depth - 1,
                        corners,
                    )
                }
                None if corners > 0 => match self.corner_point(p, q, m, len, z) {
                    Some(c) => (c, depth, corners - 1),
                    None => return,
                },
                _ => return,
            };
        *budget -= 1;
        self.refine_chord(p, c, z, (depth, corners, budget), out);
        out.push(c);
        self.refine_chord(c, q, z, (depth, corners, budget), out);
    }

    /// Where the chord from `p` to `q` (midpoint `m`, length `len`) passes outside the region
    /// by more than `REFINE_TOLERANCE`: a corner of the region (an inside corner between two
    /// walls, seen from the tool) that falls between fibers, which the chord cuts off, so
    /// that the tool would not reach into it. The exact boundary point on the chord's inward
    /// normal through `m`, found like a fiber crossing (walking out of the region towards
    /// `m`); `None` where the boundary is within the tolerance, or no region is there.
    fn corner_point(
        &self,
        p: [f64; 2],
        q: [f64; 2],
        m: [f64; 2],
        len: f64,
        z: f64,
    ) -> Option<[f64; 2]> {
        // The region is on the left.
        let inward = [(p[1] - q[1]) / len, (q[0] - p[0]) / len];
        let probe = [
            m[0] + inward[0] * REFINE_TOLERANCE,
            m[1] + inward[1] * REFINE_TOLERANCE,
        ];
        if self
            .dc
            .band_exceeds(self.band, probe[0], probe[1], z, None)
            .is_some()
        {
            // The boundary is within the tolerance of the chord.
            return None;
        }
        // A corner's sag is less than half the chord; no region there: a gap, not a corner.
        let reach = 0.5 * len;
        let inner = [m[0] + inward[0] * reach, m[1] + inward[1] * reach];
        let witness = self
            .dc
            .band_exceeds(self.band, inner[0], inner[1], z, None)?;
        let at = |t: f64| {
            [
                inner[0] + (m[0] - inner[0]) * t,
                inner[1] + (m[1] - inner[1]) * t,
            ]
        };
        Some(at(self.exit(at, reach, z, Some(witness))))
    }

    /// The cells of cell rows `rows` (cell row j spans grid rows j and j + 1) that each level
    /// crosses: `out[s]` for the level `sorted[s]` (`sorted` ascending), each list in row
    /// order. A level crosses a cell where one corner is above it and another is not, so
    /// one pass over the cells serves every level, and tracing a level visits only its own
    /// few cells instead of the whole grid.
    pub fn crossed_cells(
        &self,
        rows: std::ops::Range<usize>,
        sorted: &[f64],
    ) -> Vec<Vec<(usize, usize)>> {
        let ppl = self.ppl();
        let mut out = vec![Vec::new(); sorted.len()];
        for j in rows {
            for i in 0..ppl - 1 {
                let c = [
                    self.h(i, j),
                    self.h(i + 1, j),
                    self.h(i + 1, j + 1),
                    self.h(i, j + 1),
                ];
                let lo = c[0].min(c[1]).min(c[2]).min(c[3]);
                let hi = c[0].max(c[1]).max(c[2]).max(c[3]);
                if lo == hi {
                    continue;
                }
                // Levels z with lo <= z < hi.
                let first = sorted.partition_point(|&z| z < lo);
                let end = sorted.partition_point(|&z| z < hi);
                for cells in &mut out[first..end] {
                    cells.push((i, j));
                }
            }
        }
        out
    }

    /// Contours at height `z` through `cells` (its list from
    /// [`crossed_cells`](Self::crossed_cells)) of cell rows `rows`.
    pub fn level(
        &self,
        cells: &[(usize, usize)],
        rows: std::ops::Range<usize>,
        z: f64,
    ) -> Vec<Chain> {
        let inside = |i: usize, j: usize| self.h(i, j) > z;
        // Oriented segments, region on the left: walking a cell's boundary counter-clockwise,
        // each edge entered from inside pairs with the next edge that comes back inside.
        let mut next: HashMap<Edge, Edge> = HashMap::new();
        for &(i, j) in cells {
            {
                let c = [
                    inside(i, j),
                    inside(i + 1, j),
                    inside(i + 1, j + 1),
                    inside(i, j + 1),
                ];
                let code = c.iter().fold(0u8, |m, &b| (m << 1) | u8::from(b));
                if code == 0 || code == 0b1111 {
                    continue;
                }
                // Edges counter-clockwise: bottom, right, top, left; edge k joins corner k to
                // corner k + 1.
                let e = [
                    Edge::H { j, i },
                    Edge::V { j, i: i + 1 },
                    Edge::H { j: j + 1, i },
                    Edge::V { j, i },
                ];
                let leaving: Vec<usize> = (0..4).filter(|&k| c[k] && !c[(k + 1) % 4]).collect();
                let entering: Vec<usize> = (0..4).filter(|&k| !c[k] && c[(k + 1) % 4]).collect();
                if leaving.len() == 1 {
                    next.insert(e[leaving[0]], e[entering[0]]);
                } else {
                    // Saddle: corners 0 and 2 on one side, 1 and 3 on the other. The cell's
                    // centre decides whether the inside corners connect through it.
                    let (x, y) = (
                        0.5 * (self.grid.along(i) + self.grid.along(i + 1)),
                        0.5 * (self.grid.across(j) + self.grid.across(j + 1)),
                    );
                    let centre_inside = self.dc.band_exceeds(self.band, x, y, z, None).is_some();
                    for &k in &leaving {
                        // Connected: leave on edge k, come back on the very next edge.
                        // Separate: come back on the edge before it, cutting off corner k.
                        let back = if centre_inside {
                            (k + 1) % 4
                        } else {
                            (k + 3) % 4
                        };
                        next.insert(e[k], e[back]);
                    }
                }
            }
        }
        self.chains(next, rows, z)
    }

    /// Follows segments into chains: open ones from the band's border first, then loops.
    /// Every crossing edge appears once, so each crossing is computed once.
    fn chains(
        &self,
        mut next: HashMap<Edge, Edge>,
        rows: std::ops::Range<usize>,
        z: f64,
    ) -> Vec<Chain> {
        let ppl = self.ppl() as u64;
        let key = |e: Edge| match e {
            Edge::H { j, i } if j == rows.start || j == rows.end => Some(j as u64 * ppl + i as u64),
            _ => None,
        };
        let targets: std::collections::HashSet<Edge> = next.values().copied().collect();
        let mut starts: Vec<Edge> = next
            .keys()
            .copied()
            .filter(|e| !targets.contains(e))
            .collect();
        starts.sort_unstable();
        let mut out = Vec::new();
        for s in starts {
            let mut edges = vec![s];
            let mut e = s;
            while let Some(n) = next.remove(&e) {
                edges.push(n);
                e = n;
            }
            out.push(Chain {
                start: key(s),
                end: key(e),
                points: self.refined(
                    edges.iter().map(|&e| self.crossing(e, z)).collect(),
                    z,
                    false,
                ),
            });
        }
        let mut rest: Vec<Edge> = next.keys().copied().collect();
        rest.sort_unstable();
        for s in rest {
            if !next.contains_key(&s) {
                continue;
            }
            let mut edges = vec![s];
            let mut e = s;
            while let Some(n) = next.remove(&e) {
                if n != s {
                    edges.push(n);
                }
                e = n;
            }
            out.push(Chain {
                start: None,
                end: None,
                points: self.refined(
                    edges.iter().map(|&e| self.crossing(e, z)).collect(),
                    z,
                    true,
                ),
            });
        }
        out
    }
}

/// Where `f`, concave on `[lo, 1]` where finite, positive at `lo` (`flo`) and not at 1
/// (`f1`, possibly -inf), comes down through zero: the last `t` found with `f(t) > 0`, at
/// most `tol` before the first found with `f(t) <= 0`. Regula falsi with the Illinois rule
/// (the value kept at an end that stays put twice is halved) needs a handful of evaluations
/// where bisection needs thirty; where `f` is -inf (beyond the triangle's reach) it bisects.
fn interval_end(mut lo: f64, mut flo: f64, f1: f64, tol: f64, f: &dyn Fn(f64) -> f64) -> f64 {
    let (mut hi, mut fhi) = (1.0, f1);
    // Which end moved last: +1 lo, -1 hi.
    let mut moved = 0i8;
    let mut steps = 0u32;
    while hi - lo > tol {
        steps += 1;
        // Past a few steps every other one bisects, so it is never much slower than bisection.
        let secant = steps < 8 || steps.is_multiple_of(2);
        let t = if secant && fhi.is_finite() && flo.is_finite() && flo > fhi {
            (lo * fhi - hi * flo) / (fhi - flo)
        } else {
            0.5 * (lo + hi)
        };
        // Never at an end, so the bracket always shrinks.
        let t = t.clamp(lo + 0.25 * tol, hi - 0.25 * tol);
        if t <= lo || t >= hi {
            break;
        }
        let ft = f(t);
        if ft > 0.0 {
            (lo, flo) = (t, ft);
            if moved == 1 {
                fhi *= 0.5;
            }
            moved = 1;
        } else {
            (hi, fhi) = (t, ft);
            if moved == -1 {
                flo *= 0.5;
            }
            moved = -1;
        }
    }
    lo
}

/// Joins the chunks' chains (`chunks[c][level]`, in chunk order) into closed contours.
pub fn assemble(levels: &[f64], chunks: Vec<Vec<Vec<Chain>>>) -> Result<Vec<Level>, JobError> {
    let mut per_level: Vec<Vec<Chain>> = vec![Vec::new(); levels.len()];
    for chunk in chunks {
        for (l, chains) in chunk.into_iter().enumerate() {
            per_level[l].extend(chains);
        }
    }
    levels
        .iter()
        .zip(per_level)
        .map(|(&z, chains)| {
            let mut contours = Vec::new();
            let mut open: HashMap<u64, Chain> = HashMap::new();
            let mut order = Vec::new();
            for c in chains {
                match (c.start, c.end) {
                    (None, None) => contours.push(c.points),
                    (Some(s), Some(_)) => {
                        order.push(s);
                        if open.insert(s, c).is_some() {
                            return Err(bad(z, "two pieces start on one grid edge"));
                        }
                    }
                    _ => return Err(bad(z, "a piece ends inside the grid")),
                }
            }
            for first in order {
                let Some(mut chain) = open.remove(&first) else {
                    continue;
                };
                let mut points = std::mem::take(&mut chain.points);
                let mut end = chain.end;
                while end != Some(first) {
                    let Some(next) = end.and_then(|k| open.remove(&k)) else {
                        return Err(bad(z, "a piece has no continuation"));
                    };
                    // The shared edge's crossing ends one piece and starts the next.
                    points.extend_from_slice(next.points.get(1..).unwrap_or(&[]));
                    end = next.end;
                }
                // The loop came back to its first edge: that point is already the first.
                points.pop();
                contours.push(points);
            }
            // Where a loop starts and which comes first depend on where the chunks'
            // boundaries fell; both are made a function of the loops alone, so that the
            // toolpath (whose seams start there) is the same however the job was split.
            let mut contours: Vec<Vec<[f64; 2]>> = contours
                .into_iter()
                .filter(|p| p.len() >= 3)
                .map(seam_first)
                .collect();
            contours.sort_by(|a, b| by_points(a, b));
            Ok(Level {
                z,
                contours: contours
                    .into_iter()
                    .map(|points| Contour {
                        hole: signed_area(&points) < 0.0,
                        points,
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Points compared by y, then x (`total_cmp`, so the order is total).
fn by_point(a: &[f64; 2], b: &[f64; 2]) -> std::cmp::Ordering {
    a[1].total_cmp(&b[1]).then(a[0].total_cmp(&b[0]))
}

/// Point sequences compared point by point, then by length.
fn by_points(a: &[[f64; 2]], b: &[[f64; 2]]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(p, q)| by_point(p, q))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

/// A closed loop turned to start at its lowest point (least y, then least x): of the turns
/// that start there (a loop may pass one point twice), the least sequence.
fn seam_first(mut points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    let Some(low) = points.iter().copied().min_by(by_point) else {
        return points;
    };
    let n = points.len();
    let turned = |k: usize| points[k..].iter().chain(&points[..k]);
    let best = (0..n)
        .filter(|&k| by_point(&points[k], &low).is_eq())
        .min_by(|&a, &b| {
            turned(a)
                .zip(turned(b))
                .map(|(p, q)| by_point(p, q))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .unwrap_or(0);
    points.rotate_left(best);
    points
}

fn bad(z: f64, what: &str) -> JobError {
    JobError::BadResult(format!("contours at z = {z}: {what}"))
}

/// Levels from just below `top` down to `floor` every `stepdown`, the floor itself last.
pub fn levels_down(top: f64, floor: f64, stepdown: f64) -> Result<Vec<f64>, JobError> {
    if !(stepdown.is_finite() && stepdown > 0.0) {
        return Err(JobError::Invalid(format!(
            "stepdown must be a positive number of millimetres, got {stepdown}"
        )));
    }
    if !(top.is_finite() && floor.is_finite()) || floor > top {
        return Err(JobError::Invalid(format!(
            "the floor ({floor}) must be below the top ({top})"
        )));
    }
    let n = ((top - floor) / stepdown - 1e-9).ceil().max(1.0);
    if n > MAX_LEVELS as f64 {
        return Err(JobError::Invalid(format!(
            "stepdown {stepdown} gives more than {MAX_LEVELS} levels"
        )));
    }
    let n = n as usize;
    let mut z: Vec<f64> = (1..n).map(|k| top - k as f64 * stepdown).collect();
    z.push(floor);
    Ok(z)
}

/// Which side of the contour the uncut material is on as the tool goes round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Milling {
    /// Climb milling with a clockwise spindle: material on the tool's right.
    Climb,
    /// Conventional milling: material on the tool's left.
    Conventional,
}

/// Waterline finishing: contours level after level, top down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaterlineSpec {
    pub contours: ContourSpec,
    pub safe_z: f64,
    /// How loops are linked where the direct move is not clear.
    pub links: crate::links::Links,
    pub milling: Milling,
}

impl WaterlineSpec {
    pub fn validate(&self) -> Result<(), JobError> {
        self.contours.validate()?;
        if !self.safe_z.is_finite() {
            return Err(JobError::Invalid(format!(
                "safe height must be finite, got {}",
                self.safe_z
            )));
        }
        self.links.validate()
    }
}

/// Lead-in length, as a fraction of the tool radius, capped at 1 mm.
const LEAD_IN: f64 = 0.5;

/// A loop (region on its left) with the points dropped that a straight move may pass on the
/// outside, at most `tol` from each: the move then runs between the model and nothing, never
/// nearer the model than the points it skips, and leaves at most `tol` of extra material.
/// Fiber crossings come every sampling step even along straight walls; this keeps the program
/// short. The first point always stays (the loop's seam).
fn merged_outward(points: &[[f64; 2]], tol: f64) -> Vec<[f64; 2]> {
    /// Longest run of points one move may replace, bounding the work per point.
    const SPAN: usize = 64;
    let n = points.len();
    if n < 4 {
        return points.to_vec();
    }
    let outside_of = |a: [f64; 2], c: [f64; 2], p: [f64; 2]| {
        let (dx, dy) = (c[0] - a[0], c[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if len == 0.0 {
            return false;
        }
        // Signed distance of p from the move, positive on the left (the region's side).
        let d = (dx * (p[1] - a[1]) - dy * (p[0] - a[0])) / len;
        let t = (dx * (p[0] - a[0]) + dy * (p[1] - a[1])) / (len * len);
        // Contour points are exact to CROSSING_TOLERANCE: points in line may land that far
        // either side.
        (-CROSSING_TOLERANCE..=tol).contains(&d) && (0.0..=1.0).contains(&t)
    };
    let mut out = vec![points[0]];
    let mut a = 0;
    while a < n {
        let mut b = a + 1;
        while b < n && b - a < SPAN {
            let c = b + 1;
            let (pa, pc) = (points[a], points[c % n]);
            if (a + 1..c).all(|k| outside_of(pa, pc, points[k])) {
                b = c;
            } else {
                break;
            }
        }
        if b < n {
            out.push(points[b]);
        }
        a = b;
    }
    out
}

/// Turns contours into a waterline finishing toolpath: each level's loops in nearest-first
/// order, each started at its point nearest the tool, entered by a short straight lead-in from
/// outside the region (the plunge is in the clear, never into the model), run once round
/// and back to its start. Moves between loops go straight where they clear the model (checked
/// exactly), otherwise along the surface (no lower than the lower end) or by a hop (see
/// [`links`](crate::links)).
pub fn toolpath(
    model: &DropCutter<'_>,
    tool: crate::cutter::Cutter,
    spec: &WaterlineSpec,
    levels: &[Level],
) -> crate::toolpath::Toolpath {
    use crate::geom::Point3;
    use crate::raster::{approach, move_is_clear};
    use crate::toolpath::{MoveKind, Toolpath};
    let safe_z = spec.safe_z;
    let lead = (tool.radius() * LEAD_IN).min(1.0);
    let mut tp: Option<Toolpath> = None;
    for level in levels {
        let z = level.z;
        let mut todo: Vec<Vec<[f64; 2]>> = level
            .contours
            .iter()
            .map(|c| {
                let mut p = merged_outward(&c.points, crate::raster::DEFAULT_MERGE_TOLERANCE);
                // As found, the region is on the left: conventional. Climb goes the other way.
                if spec.milling == Milling::Climb {
                    p.reverse();
                }
                p
            })
            .collect();
        while !todo.is_empty() {
            let here = tp
                .as_ref()
                .map_or([f64::INFINITY, f64::INFINITY], |t| [t.end().x, t.end().y]);
            let d2 = |p: &[f64; 2]| (p[0] - here[0]).powi(2) + (p[1] - here[1]).powi(2);
            let (ci, pi) = todo
                .iter()
                .enumerate()
                .flat_map(|(ci, c)| c.iter().enumerate().map(move |(pi, p)| (ci, pi, p)))
                .min_by(|a, b| {
                    d2(a.2)
                        .total_cmp(&d2(b.2))
                        .then((a.0, a.1).cmp(&(b.0, b.1)))
                })
                .map(|(ci, pi, _)| (ci, pi))
                .unwrap_or((0, 0));
            let mut ring = todo.swap_remove(ci);
            ring.rotate_left(pi);
            let start = Point3::new(ring[0][0], ring[0][1], z);
            // Outward is to the right of travel for conventional, to the left for climb.
            let (prev, next) = (ring[ring.len() - 1], ring[1 % ring.len()]);
            let (tx, ty) = (next[0] - prev[0], next[1] - prev[1]);
            let tl = (tx * tx + ty * ty).sqrt();
            let side = if spec.milling == Milling::Climb {
                -1.0
            } else {
                1.0
            };
            let mut entry = start;
            if tl > 0.0 {
                let (nx, ny) = (side * ty / tl, -side * tx / tl);
                for k in 0..4 {
                    let l = lead / f64::from(1 << k);
                    let q = Point3::new(start.x + nx * l, start.y + ny * l, z);
                    if move_is_clear(model, q, start) {
                        entry = q;
                        break;
                    }
                }
            }
            match &mut tp {
                None => {
                    let mut t = Toolpath::new(Point3::new(entry.x, entry.y, safe_z.max(z)));
                    approach(&mut t, entry, safe_z);
                    tp = Some(t);
                }
                Some(t) => {
                    let here = t.end();
                    if move_is_clear(model, here, entry) {
                        t.push(MoveKind::Cut, entry);
                    } else {
                        let (low, step) = (here.z.min(entry.z), spec.contours.grid.sampling);
                        crate::links::link_to(t, model, entry, &spec.links, safe_z, low, step);
                    }
                }
            }
            let t = tp.as_mut().expect("set above");
            if entry != start {
                t.push(MoveKind::Cut, start);
            }
            for p in &ring[1..] {
                t.push(MoveKind::Cut, Point3::new(p[0], p[1], z));
            }
            t.push(MoveKind::Cut, start);
        }
    }
    let mut tp = tp.unwrap_or_default();
    let end = tp.end();
    if !tp.moves.is_empty() && end.z < safe_z {
        tp.push(
            crate::toolpath::MoveKind::Rapid,
            Point3::new(end.x, end.y, safe_z),
        );
    }
    tp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circle(n: usize, r: f64, ccw: bool) -> Vec<[f64; 2]> {
        (0..n)
            .map(|k| {
                let a = k as f64 / n as f64 * std::f64::consts::TAU;
                let a = if ccw { a } else { -a };
                [r * a.cos(), r * a.sin()]
            })
            .collect()
    }

    /// Signed distance of `p` from the move a→c, positive on the left.
    fn left_of(a: [f64; 2], c: [f64; 2], p: [f64; 2]) -> f64 {
        let (dx, dy) = (c[0] - a[0], c[1] - a[1]);
        (dx * (p[1] - a[1]) - dy * (p[0] - a[0])) / (dx * dx + dy * dy).sqrt()
    }

    #[test]
    fn merging_only_ever_passes_points_on_the_outside() {
        let tol = 0.001;
        // A square outline, a point every 0.1 mm.
        let mut square = Vec::new();
        for side in 0..4 {
            for k in 0..100 {
                let t = k as f64 * 0.1;
                square.push(match side {
                    0 => [t, 0.0],
                    1 => [10.0, t],
                    2 => [10.0 - t, 10.0],
                    _ => [0.0, 10.0 - t],
                });
            }
        }
        // Only its corners are needed, and a point every 64 (the longest run one move
        // replaces).
        let m = merged_outward(&square, tol);
        for corner in [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]] {
            assert!(m.contains(&corner), "{corner:?} dropped");
        }
        assert!(m.len() <= 4 * 2, "{} points kept: {m:?}", m.len());
        // Round an island (counter-clockwise, the model inside): a chord would cut into it,
        // so every point stays.
        let island = circle(2000, 10.0, true);
        assert_eq!(merged_outward(&island, tol), island);
        // Round a pocket (clockwise, the model outside): chords pass on the open side, each
        // skipping only points within the tolerance.
        let pocket = circle(2000, 10.0, false);
        let m = merged_outward(&pocket, tol);
        assert!(
            m.len() < pocket.len() / 2,
            "{} of {} kept",
            m.len(),
            pocket.len()
        );
        let mut k = 0;
        for w in 0..m.len() {
            let (a, c) = (m[w], m[(w + 1) % m.len()]);
            assert_eq!(pocket[k], a);
            k += 1;
            while k < pocket.len() && pocket[k] != c {
                let d = left_of(a, c, pocket[k]);
                assert!(
                    (0.0..=tol).contains(&d),
                    "skipped point {d} mm from the move"
                );
                k += 1;
            }
        }
    }
}
