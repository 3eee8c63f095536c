//! Roughing by slices: layers from the stock top down to the floor; in each layer the tool
//! clears the stock outside the region where it would come closer to the model than the
//! material allowance. That region is exactly a waterline region of the tool grown by the
//! allowance (see [`waterline`](crate::waterline)), so roughing is waterline contours plus
//! 2-D polygon work.
//!
//! The polygon work (difference with the stock, inward offsets for the clearing passes) uses
//! `i_overlay`: pure Rust, maintained, booleans and offsets with holes and any fill rule, and
//! it snaps to an integer grid internally, so the same input gives the same bits on every
//! machine — which the pool's bit-identical results need. Clipper2 is the classic choice but
//! is C++ behind FFI; geo's boolean ops are built on i_overlay anyway.

use crate::cutter::Cutter;
use crate::drop::DropCutter;
use crate::error::JobError;
use crate::geom::{Aabb, Point3};
use crate::links::{Links, hop};
use crate::raster::move_is_clear;
use crate::rest::RestMaterial;
use crate::toolpath::{MoveKind, Toolpath};
use crate::waterline::{ContourSpec, Level, Milling};
use i_overlay::core::fill_rule::FillRule;
use i_overlay::core::overlay_rule::OverlayRule;
use i_overlay::float::single::SingleFloatOverlay;
use i_overlay::mesh::float::outline::offset::OutlineOffset;
use i_overlay::mesh::float::style::{LineJoin, OutlineStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

type Ring = Vec<[f64; 2]>;
type Shapes = Vec<Vec<Ring>>;

/// How each layer is cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClearPattern {
    /// Parallel lines along X, then one pass round the layer's boundary.
    Zigzag,
    /// Contour-parallel rings, from the inside out.
    Offset,
}

/// Roughing parameters. The layers are the contour levels; the allowance is the contours'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoughSpec {
    pub contours: ContourSpec,
    /// The material block; layers start at its top. The tool axis stays inside its XY box
    /// grown by the tool radius: the tool's edge reaches the stock's sides, so no ring of
    /// material narrower than the tool is left along them for a finishing tool to bury
    /// itself in.
    pub stock: Aabb,
    /// Distance between clearing passes, mm.
    pub stepover: f64,
    pub pattern: ClearPattern,
    pub milling: Milling,
    pub safe_z: f64,
    /// How passes are linked where the tool leaves the layer's clear area.
    pub links: Links,
    /// Angle of entry ramps, degrees from horizontal.
    pub ramp_angle: f64,
    /// Rest roughing: clear only where the stock the earlier operations left stands more
    /// than this above the layer and the model plus allowance, mm ([`crate::rest`]); `None`
    /// clears the whole stock.
    pub rest: Option<f64>,
}

/// Most clearing passes per layer (a guard against absurd stepovers on huge stock).
const MAX_PASSES: usize = 100_000;

impl RoughSpec {
    pub fn validate(&self) -> Result<(), JobError> {
        self.contours.validate()?;
        let invalid = |m: String| Err(JobError::Invalid(m));
        let (lo, hi) = (self.stock.min, self.stock.max);
        if !(lo.is_finite() && hi.is_finite() && lo.x <= hi.x && lo.y <= hi.y && lo.z <= hi.z) {
            return invalid("stock box must be finite with min ≤ max".into());
        }
        if !(self.stepover.is_finite() && self.stepover > 0.0) {
            return invalid(format!("stepover must be positive, got {}", self.stepover));
        }
        let span = (self.stock.max.x - self.stock.min.x).max(self.stock.max.y - self.stock.min.y);
        if span / self.stepover > MAX_PASSES as f64 {
            return invalid(format!(
                "stepover {} is too small for a {span} mm stock",
                self.stepover
            ));
        }
        if !self.safe_z.is_finite() || self.safe_z < self.stock.max.z {
            return invalid(format!(
                "safe height ({}) must be at or above the stock top ({})",
                self.safe_z, self.stock.max.z
            ));
        }
        self.links.validate()?;
        if self.links.clearance_z < self.stock.max.z {
            return invalid(format!(
                "link clearance height ({}) must be at or above the stock top ({})",
                self.links.clearance_z, self.stock.max.z
            ));
        }
        if let Some(t) = self.rest
            && !(t.is_finite() && t >= 0.0)
        {
            return invalid(format!("the rest threshold must be zero or more, got {t}"));
        }
        if !(self.ramp_angle.is_finite() && self.ramp_angle > 0.0 && self.ramp_angle <= 90.0) {
            return invalid(format!(
                "ramp angle must be between 0 and 90 degrees, got {}",
                self.ramp_angle
            ));
        }
        Ok(())
    }
}

/// The clear area of one layer: where the tool axis may go, checked exactly.
///
/// The contours are exact on the fibers; between two consecutive contour points (at most
/// `spacing·√2` apart) the straight chord can cut into a convex part of the region by up to
/// `spacing² / (4ρ)`, where ρ is the region's radius of curvature there. For a flat or bull
/// nose ρ is at least the radius of the tool's flat bottom (the region is the model's slice
/// grown by the tool's cross-section), so the area starts that much (plus 1 µm) further away.
/// A ball or V-bit has no flat bottom and near a peak the slice of its region can be any
/// size, so no such bound holds; a quarter of the radius is the first guess.
///
/// Then every boundary segment of the area is checked with the exact swept test at the
/// layer's height (`DropCutter::max_rise_along`). Where one cuts in, the whole area is shrunk
/// twice as far and checked again, until it is clear (or empty), so no guess is trusted. The
/// passes lie inside the area, so a clear boundary leaves only what the fibers cannot see:
/// a whole island of the region narrower than the grid (see [`waterline`](crate::waterline)).
fn clear_area(
    dc: &DropCutter<'_>,
    stock: &Aabb,
    reach: f64,
    level: &Level,
    first_margin: f64,
) -> Shapes {
    let area = outside_contours(stock, reach, level);
    // Past the stock's diagonal every area has shrunk to nothing.
    let s = stock.xy().grown(reach);
    let diagonal = (s.xmax - s.xmin).hypot(s.ymax - s.ymin);
    let mut margin = first_margin;
    while margin <= diagonal {
        let shrunk = shrink(&area, margin);
        if boundary_is_clear(dc, &shrunk, level.z) {
            return shrunk;
        }
        margin *= 2.0;
    }
    Vec::new()
}

/// The stock's XY box grown by `reach` (the tool radius) less the level's contours: the
/// clear area before any margin.
fn outside_contours(stock: &Aabb, reach: f64, level: &Level) -> Shapes {
    let s = stock.xy().grown(reach);
    let stock_ring: Ring = vec![
        [s.xmin, s.ymin],
        [s.xmax, s.ymin],
        [s.xmax, s.ymax],
        [s.xmin, s.ymax],
    ];
    let forbidden: Vec<Ring> = level.contours.iter().map(|c| c.points.clone()).collect();
    if forbidden.is_empty() {
        vec![vec![stock_ring]]
    } else {
        vec![stock_ring].overlay(&forbidden, OverlayRule::Difference, FillRule::NonZero)
    }
}

/// Whether the tool, its tip at `z`, can follow every boundary of `area` without coming
/// nearer the model than the allowance. (An empty area is clear.)
fn boundary_is_clear(dc: &DropCutter<'_>, area: &Shapes, z: f64) -> bool {
    area.iter().flatten().all(|ring| {
        let at = |p: [f64; 2]| Point3::new(p[0], p[1], z);
        (0..ring.len()).all(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
            dc.max_rise_along(at(a), at(b), 0.0) <= 0.0
        })
    })
}

/// How far the clearing passes may stray from the exact offsets, mm. Polygon offsets multiply
/// vertices (the contours carry a point every fiber crossing and the round joins add more);
/// thinning them to this tolerance keeps the polygon work and the G-code small. Every shrink
/// goes this much further in first, so a thinned outline is never nearer the model than the
/// exact one.
const TOLERANCE: f64 = 0.002;

/// The area shrunk by `by`, its outlines thinned (see `TOLERANCE`).
fn shrink(area: &Shapes, by: f64) -> Shapes {
    if area.is_empty() {
        return Vec::new();
    }
    // Round joins, chords a tenth of the offset radius long.
    let style = OutlineStyle::new(-(by + TOLERANCE)).line_join(LineJoin::Round(0.1));
    each_ring(area.outline(&style), |ring| {
        thinned(&despiked(ring, CRACK), TOLERANCE)
    })
}

/// `shapes` with every ring replaced by `f` of it, dropping the rings that no longer
/// enclose anything (fewer than three points) and the shapes left with none.
pub(crate) fn each_ring(mut shapes: Shapes, f: impl Fn(&Ring) -> Ring) -> Shapes {
    for shape in &mut shapes {
        for ring in shape.iter_mut() {
            *ring = f(ring);
        }
        shape.retain(|r| r.len() >= 3);
    }
    shapes.retain(|s| !s.is_empty());
    shapes
}

/// Widest crack `despiked` closes, mm.
const CRACK: f64 = 1e-4;

/// A closed ring without its hairline spikes: runs out and back whose two sides are less than
/// `width` apart. Why: where two edges of an area meet almost in line, `i_overlay`'s inward
/// offset (9.1) can leave a crack a grid unit wide between the two edges' offset strips, and
/// the shrunk ring runs up the crack to the unshrunk corner and back: a pass along it would
/// take the tool to the model's allowance and back. The ring `…, a, tip, a', …` with `a'`
/// within `width` of `a` becomes `…, a, …`; repeated until none is left, so a crack with
/// points along its sides closes from its tip down. Moves the ring by less than `width`.
fn despiked(ring: &Ring, width: f64) -> Ring {
    let near = |p: [f64; 2], q: [f64; 2]| (p[0] - q[0]).hypot(p[1] - q[1]) < width;
    let mut out: Ring = Vec::with_capacity(ring.len());
    for &p in ring {
        out.push(p);
        // Close every crack that now ends at the ring's end.
        while out.len() >= 3 && near(out[out.len() - 3], out[out.len() - 1]) {
            out.truncate(out.len() - 2);
        }
    }
    // Cracks across the ring's start: rotate the start into the middle and close them there.
    let mut guard = out.len();
    while out.len() >= 3 && guard > 0 {
        guard -= 1;
        let n = out.len();
        if near(out[n - 1], out[1]) {
            // `…, a, tip = out[0], a' = out[1], …`
            out.remove(1);
            out.remove(0);
        } else if near(out[n - 2], out[0]) {
            // `…, a, tip = out[n-1], a' = out[0], …`
            out.remove(n - 1);
            out.remove(0);
        } else {
            break;
        }
    }
    out
}

/// A closed ring with the points dropped that lie within `tol` of the chord joining the kept
/// points around them (Douglas–Peucker, split at the point farthest from the first). Written
/// here rather than taken from `geo` for one function.
pub(crate) fn thinned(ring: &Ring, tol: f64) -> Ring {
    let n = ring.len();
    if n < 4 {
        return ring.clone();
    }
    let dist2 = |p: [f64; 2], a: [f64; 2], b: [f64; 2]| {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let (px, py) = (p[0] - a[0], p[1] - a[1]);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            ((px * dx + py * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (ex, ey) = (px - t * dx, py - t * dy);
        ex * ex + ey * ey
    };
    let far = (1..n)
        .max_by(|&i, &j| {
            let d = |k: usize| dist2(ring[k], ring[0], ring[0]);
            d(i).total_cmp(&d(j)).then(j.cmp(&i))
        })
        .unwrap_or(n / 2);
    let mut keep = vec![false; n + 1];
    keep[0] = true;
    keep[far] = true;
    keep[n] = true;
    let at = |k: usize| ring[k % n];
    let mut stack = vec![(0, far), (far, n)];
    while let Some((a, b)) = stack.pop() {
        if b <= a + 1 {
            continue;
        }
        let (mut worst, mut at_worst) = (-1.0, a);
        for k in a + 1..b {
            let d = dist2(at(k), at(a), at(b));
            if d > worst {
                worst = d;
                at_worst = k;
            }
        }
        if worst > tol * tol {
            keep[at_worst] = true;
            stack.push((a, at_worst));
            stack.push((at_worst, b));
        }
    }
    (0..n).filter(|&k| keep[k]).map(|k| ring[k]).collect()
}

/// Everything one layer cuts, as paths in cutting order; closed paths repeat their first
/// point at the end.
fn layer_paths(area: &Shapes, spec: &RoughSpec) -> Vec<Ring> {
    let mut paths = Vec::new();
    match spec.pattern {
        ClearPattern::Offset => {
            let mut rings: Vec<Shapes> = Vec::new();
            let mut cur = area.clone();
            while !cur.is_empty() && rings.len() < MAX_PASSES {
                let next = shrink(&cur, spec.stepover);
                rings.push(cur);
                cur = next;
            }
            // Inside out: the last pass is the boundary.
            for shapes in rings.iter().rev() {
                for contour in shapes.iter().flatten() {
                    paths.push(closed(contour, spec.milling));
                }
            }
        }
        ClearPattern::Zigzag => {
            let contours: Vec<&Ring> = area.iter().flatten().collect();
            let (y0, y1) = contours
                .iter()
                .flat_map(|c| c.iter())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p[1]), b.max(p[1]))
                });
            if y0 <= y1 {
                let n = ((y1 - y0) / spec.stepover).ceil().max(1.0) as usize;
                let step = (y1 - y0) / n as f64;
                for k in 0..=n {
                    // Keep the first and last lines just inside the area.
                    let y = (y0 + k as f64 * step).clamp(y0 + 1e-6, y1 - 1e-6);
                    let mut xs =
                        crate::waterline::crossings(contours.iter().map(|c| c.as_slice()), y);
                    xs.sort_by(f64::total_cmp);
                    let mut segs: Vec<Ring> = xs
                        .chunks_exact(2)
                        .map(|p| vec![[p[0], y], [p[1], y]])
                        .collect();
                    if k % 2 == 1 {
                        segs.reverse();
                        for s in &mut segs {
                            s.reverse();
                        }
                    }
                    paths.extend(segs);
                }
            }
            for contour in contours {
                paths.push(closed(contour, spec.milling));
            }
        }
    }
    paths
}

/// A closed pass, in the direction that climb-mills (i_overlay gives outer boundaries
/// counter-clockwise and holes clockwise: material beyond the pass on the tool's right) or the
/// reverse for conventional milling.
fn closed(contour: &Ring, milling: Milling) -> Ring {
    let mut p = contour.clone();
    if milling == Milling::Conventional {
        p.reverse();
    }
    if let Some(&first) = p.first() {
        p.push(first);
    }
    p
}

/// True if the straight move from `a` to `b` stays inside the clear area: it crosses no
/// boundary and its midpoint is inside.
fn inside_area(area: &Shapes, a: [f64; 2], b: [f64; 2]) -> bool {
    let cross = |p: [f64; 2], q: [f64; 2], r: [f64; 2]| {
        (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    };
    for c in area.iter().flatten() {
        for i in 0..c.len() {
            let (p, q) = (c[i], c[(i + 1) % c.len()]);
            let (d1, d2) = (cross(a, b, p), cross(a, b, q));
            let (d3, d4) = (cross(p, q, a), cross(p, q, b));
            if ((d1 > 0.0) != (d2 > 0.0)) && ((d3 > 0.0) != (d4 > 0.0)) {
                return false;
            }
        }
    }
    // Even-odd over all the area's contours: outer boundaries and holes alike.
    let m = [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
    let xs = crate::waterline::crossings(area.iter().flatten().map(|c| c.as_slice()), m[1]);
    xs.iter().filter(|&&x| m[0] < x).count() % 2 == 1
}

/// One layer's plan: the area the tool may clear at the layer's depth, and the clearing
/// passes through it (outermost first).
#[derive(Clone, Debug)]
pub struct Layer {
    area: Shapes,
    paths: Vec<Ring>,
}

/// Plans layer `k` of `levels`: its clear area (the outside of its contours, shrunk until the
/// tool can follow every boundary clear of the model) and the passes through it. Layers are
/// independent until they are linked, so they are planned side by side ([`layers`]), and
/// each on its own, so the plan does not depend on the thread count.
/// `model` is the job's contact (the tool grown by the allowance) with no floor. With
/// `rest`, the layer clears only the part of its area from which the tool reaches the
/// material left there.
pub fn layer(
    model: &DropCutter<'_>,
    tool: Cutter,
    spec: &RoughSpec,
    levels: &[Level],
    k: usize,
    rest: Option<&RestMaterial>,
) -> Layer {
    let flat_radius = match tool {
        Cutter::Flat { diameter } => diameter / 2.0,
        Cutter::Bull {
            diameter,
            corner_radius,
        } => diameter / 2.0 - corner_radius,
        Cutter::Ball { .. } | Cutter::VBit { .. } => 0.0,
    }
    .max(tool.radius() / 4.0);
    let spacing = spec.contours.grid.sampling.max(spec.contours.grid.step);
    let first_margin = spacing * spacing / (4.0 * flat_radius) + 1e-3;
    let mut area = clear_area(model, &spec.stock, tool.radius(), &levels[k], first_margin);
    if let Some(rest) = rest {
        area = rest.restrict(&area, k, tool.radius());
    }
    let paths = layer_paths(&area, spec);
    Layer { area, paths }
}

/// Every layer's plan ([`layer`]), planned in parallel on the current rayon pool.
pub fn layers(
    model: &DropCutter<'_>,
    tool: Cutter,
    spec: &RoughSpec,
    levels: &[Level],
    rest: Option<&RestMaterial>,
) -> Vec<Layer> {
    (0..levels.len())
        .into_par_iter()
        .map(|k| layer(model, tool, spec, levels, k, rest))
        .collect()
}

/// Builds the roughing toolpath from the layers' contours (in layer order, top down).
/// `model` is the job's contact (the tool grown by the allowance) with no floor: what each
/// layer's boundary is checked against. With `rest`, each layer clears only the part of its
/// area from which the tool reaches the material left there.
pub fn toolpath(
    model: &DropCutter<'_>,
    tool: Cutter,
    spec: &RoughSpec,
    levels: &[Level],
    rest: Option<&RestMaterial>,
) -> Toolpath {
    link(
        model,
        spec,
        levels,
        &layers(model, tool, spec, levels, rest),
    )
}

/// Links the layers' passes into one toolpath, top down: ramps into each pass, stays down
/// between passes where the layer above cleared the way, hops otherwise. The one serial part
/// of roughing's assembly.
pub fn link(
    model: &DropCutter<'_>,
    spec: &RoughSpec,
    levels: &[Level],
    layers: &[Layer],
) -> Toolpath {
    let slope = spec.ramp_angle.to_radians().tan();
    let mut tp = Toolpath::new(Point3::new(spec.stock.min.x, spec.stock.min.y, spec.safe_z));
    let mut started = false;
    let mut above = spec.stock.max.z;
    // The clear area of the layer above, all of it cut at height `above` (none above the
    // first layer: the stock top is not cut).
    let mut above_area: Option<&Shapes> = None;
    for (level, Layer { area, paths }) in levels.iter().zip(layers) {
        let z = level.z;
        for path in paths.iter().filter(|p| p.len() >= 2) {
            let here = tp.end();
            let at_depth = started && here.z == z;
            if at_depth && inside_area(area, [here.x, here.y], path[0]) {
                tp.push(MoveKind::Cut, Point3::new(path[0][0], path[0][1], z));
            } else {
                // Down through the air above this layer (cleared by the layer above, or above
                // the stock), then ramp along the path into the new depth.
                let s = Point3::new(path[0][0], path[0][1], above);
                // A short link stays down at the height of the layer above, inside what that
                // layer cleared: straight up into the space the tool stands in, across as a
                // feed move (also proven clear of the model), then the ramp.
                let stays = started
                    && (here.z == z || here.z == above)
                    && (s.x - here.x).hypot(s.y - here.y) <= spec.links.stay_down
                    && above_area.is_some_and(|a| inside_area(a, [here.x, here.y], path[0]))
                    && move_is_clear(model, Point3::new(here.x, here.y, above), s);
                if stays {
                    if here.z < above {
                        tp.push(MoveKind::Cut, Point3::new(here.x, here.y, above));
                    }
                    tp.push(MoveKind::Cut, s);
                } else {
                    hop(&mut tp, model, s, &spec.links, spec.safe_z);
                }
                started = true;
                ramp(&mut tp, path, above, z, slope);
            }
            for p in &path[1..] {
                tp.push(MoveKind::Cut, Point3::new(p[0], p[1], z));
            }
        }
        above = z;
        above_area = Some(area);
    }
    let end = tp.end();
    if end.z < spec.safe_z {
        tp.push(MoveKind::Rapid, Point3::new(end.x, end.y, spec.safe_z));
    }
    tp
}

/// Ramps from `from_z` down to `z` along `path` (back and forth along it if it is too short),
/// ending back at the path's start at depth, ready to cut it.
fn ramp(tp: &mut Toolpath, path: &[[f64; 2]], from_z: f64, z: f64, slope: f64) {
    let drop = from_z - z;
    if drop <= 0.0 {
        tp.push(MoveKind::Plunge, Point3::new(path[0][0], path[0][1], z));
        return;
    }
    let len: f64 = path
        .windows(2)
        .map(|w| ((w[1][0] - w[0][0]).powi(2) + (w[1][1] - w[0][1]).powi(2)).sqrt())
        .sum();
    if len < 1e-6 || slope.is_infinite() {
        // A point-sized pass: nothing to ramp along.
        tp.push(MoveKind::Plunge, Point3::new(path[0][0], path[0][1], z));
        return;
    }
    let mut need = drop / slope;
    let mut cur_z = from_z;
    let mut forward = true;
    let mut trail: Vec<[f64; 2]> = Vec::new();
    // Walk the path forwards and backwards until the depth is reached.
    let mut guard = 0;
    while need > 1e-9 && guard < 10_000 {
        guard += 1;
        let pts: Vec<[f64; 2]> = if forward {
            path.to_vec()
        } else {
            path.iter().rev().copied().collect()
        };
        for w in pts.windows(2) {
            let d = ((w[1][0] - w[0][0]).powi(2) + (w[1][1] - w[0][1]).powi(2)).sqrt();
            if d == 0.0 {
                continue;
            }
            if d >= need {
                let t = need / d;
                let p = [
                    w[0][0] + (w[1][0] - w[0][0]) * t,
                    w[0][1] + (w[1][1] - w[0][1]) * t,
                ];
                tp.push(MoveKind::Cut, Point3::new(p[0], p[1], z));
                trail.push(w[0]);
                need = 0.0;
                break;
            }
            need -= d;
            cur_z -= d * slope;
            tp.push(MoveKind::Cut, Point3::new(w[1][0], w[1][1], cur_z.max(z)));
            trail.push(w[0]);
        }
        if need > 0.0 {
            trail.clear();
            forward = !forward;
        }
    }
    // Back to the start at depth along the way the ramp came.
    for p in trail.iter().rev() {
        tp.push(MoveKind::Cut, Point3::new(p[0], p[1], z));
    }
    let s = Point3::new(path[0][0], path[0][1], z);
    if tp.end() != s {
        tp.push(MoveKind::Cut, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_dist(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        ((p[0] - a[0] - t * dx).powi(2) + (p[1] - a[1] - t * dy).powi(2)).sqrt()
    }

    /// A contour whose chords cut across the region's round corners (as a ball's or V-bit's
    /// coarse contour near a peak can) is pushed back until the tool can follow the whole
    /// boundary: the first guess is not trusted.
    #[test]
    fn a_boundary_that_cuts_in_is_pushed_back_until_clear() {
        use crate::geom::Triangle;
        use crate::waterline::Contour;
        use crate::{Cutter, Mesh, TriangleIndex};
        // A 2 × 2 mm plate at z = 0 under a 6 mm flat end mill: at z = -1 the region is the
        // plate grown by 3 mm, a square with corners of radius 3 about (±1, ±1).
        let p = |x: f64, y: f64| Point3::new(x, y, 0.0);
        let mesh = Mesh::from_triangles(
            vec![
                Triangle::new(p(-1.0, -1.0), p(1.0, -1.0), p(1.0, 1.0)),
                Triangle::new(p(-1.0, -1.0), p(1.0, 1.0), p(-1.0, 1.0)),
            ],
            "plate",
        )
        .unwrap();
        let index = TriangleIndex::new(&mesh);
        let dc = DropCutter::new(&mesh, &index, Cutter::Flat { diameter: 6.0 }, -10.0);
        // An octagon with every vertex exactly on the region's boundary: its corner chords
        // cut 3·(1 − cos 45°) ≈ 0.88 mm into the round corners.
        let octagon = vec![
            [4.0, -1.0],
            [4.0, 1.0],
            [1.0, 4.0],
            [-1.0, 4.0],
            [-4.0, 1.0],
            [-4.0, -1.0],
            [-1.0, -4.0],
            [1.0, -4.0],
        ];
        let level = Level {
            z: -1.0,
            contours: vec![Contour {
                points: octagon,
                hole: false,
            }],
        };
        let stock = Aabb {
            min: Point3::new(-10.0, -10.0, -5.0),
            max: Point3::new(10.0, 10.0, 1.0),
        };
        let first = 1e-3;
        let naive = shrink(&outside_contours(&stock, 0.0, &level), first);
        assert!(
            !boundary_is_clear(&dc, &naive, level.z),
            "the test needs a first guess that cuts in"
        );
        let area = clear_area(&dc, &stock, 0.0, &level, first);
        assert!(
            !area.is_empty(),
            "the layer must still be cleared away from the plate"
        );
        assert!(boundary_is_clear(&dc, &area, level.z));
        // Exactly: no boundary point of the area is within the tool's reach of the plate.
        for p in area.iter().flatten().flatten() {
            assert!(dc.at(p[0], p[1]) < level.z, "{p:?} is inside the region");
        }
    }

    /// Hairline cracks close wherever they are in the ring; a ring without one is kept as is.
    #[test]
    fn despiking_closes_hairline_cracks_and_nothing_else() {
        let square: Ring = vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        assert_eq!(despiked(&square, CRACK), square);
        // A crack up to (5, 5) from the bottom edge, its sides 1e-7 apart, with a point along
        // each side, placed at every position round the ring (across the start too).
        let crack = [
            [5.0, 0.0],
            [5.0, 2.0],
            [5.0, 5.0],
            [5.000_000_1, 2.0],
            [5.000_000_1, 0.0],
        ];
        let mut with_crack: Ring = vec![[0.0, 0.0]];
        with_crack.extend(crack);
        with_crack.extend([[10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]);
        for shift in 0..with_crack.len() {
            let mut ring = with_crack.clone();
            ring.rotate_left(shift);
            let out = despiked(&ring, CRACK);
            assert_eq!(out.len(), 5, "shift {shift}: {out:?}");
            assert!(
                out.iter().all(|p| p[1] < 1e-9 || p[1] == 10.0),
                "shift {shift}: {out:?}"
            );
        }
    }

    /// A wobbly ring of fine chords thins to few points, every dropped point within the
    /// tolerance of the thinned ring, and the corners of a square survive.
    #[test]
    fn thinning_keeps_the_ring_within_tolerance() {
        let n = 5000;
        let ring: Ring = (0..n)
            .map(|k| {
                let a = k as f64 / n as f64 * std::f64::consts::TAU;
                let r = 20.0 + 0.3 * (7.0 * a).sin() + 0.0005 * (400.0 * a).sin();
                [r * a.cos(), r * a.sin()]
            })
            .collect();
        let tol = 0.002;
        let thin = thinned(&ring, tol);
        assert!(thin.len() < n / 5, "{} of {n} points kept", thin.len());
        for p in &ring {
            let d = (0..thin.len())
                .map(|k| segment_dist(*p, thin[k], thin[(k + 1) % thin.len()]))
                .fold(f64::INFINITY, f64::min);
            assert!(d <= tol + 1e-12, "a point is {d} mm from the thinned ring");
        }
        let square: Ring = (0..400)
            .map(|k| {
                let t = (k % 100) as f64 / 100.0 * 10.0;
                match k / 100 {
                    0 => [t, 0.0],
                    1 => [10.0, t],
                    2 => [10.0 - t, 10.0],
                    _ => [0.0, 10.0 - t],
                }
            })
            .collect();
        let mut thin = thinned(&square, tol);
        thin.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
        assert_eq!(
            thin,
            vec![[0.0, 0.0], [0.0, 10.0], [10.0, 0.0], [10.0, 10.0]]
        );
    }
}
