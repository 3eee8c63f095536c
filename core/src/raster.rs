//! Raster finishing: parallel drop-cutter lines, merged and linked into a toolpath.

use crate::cancel::{CancelToken, Cancelled};
use crate::drop::{Axis, Band, DropCutter};
use crate::error::JobError;
use crate::geom::Point3;
use crate::grid::Grid;
use crate::links::{Links, link_to};
use crate::toolpath::{Move, MoveKind, Toolpath};
use serde::{Deserialize, Serialize};

/// Which way the lines are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Alternate directions, linking each line's end to the next line's start.
    Zigzag,
    /// Every line in the direction that climb-mills the uncut side (clockwise spindle).
    Climb,
    /// Every line in the conventional-milling direction.
    Conventional,
}

/// Default merge tolerance, mm.
pub const DEFAULT_MERGE_TOLERANCE: f64 = 0.001;

/// Descend at rapid rate to this height above the point being approached, then plunge.
pub const FEED_CLEARANCE: f64 = 1.0;

/// Raster finishing parameters (the cutter is in the job).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RasterSpec {
    /// Lines: axis, bounds, stepover (`step`) and sampling along the lines.
    pub grid: Grid,
    /// Lowest tip height (stock bottom).
    pub floor: f64,
    /// Height for rapid moves across the part.
    pub safe_z: f64,
    /// How lines are linked where the direct move is not clear.
    pub links: Links,
    pub direction: Direction,
    /// Points are dropped while the path stays within this distance above every computed
    /// CL point (and never below one), mm.
    pub merge_tolerance: f64,
    /// Material left on the surface, mm (0 = finish to size).
    #[serde(default)]
    pub allowance: f64,
}

impl RasterSpec {
    pub fn validate(&self) -> Result<(), JobError> {
        if !self.safe_z.is_finite() {
            return Err(JobError::Invalid(format!(
                "safe height must be finite, got {}",
                self.safe_z
            )));
        }
        self.links.validate()?;
        if !(self.merge_tolerance.is_finite() && self.merge_tolerance >= 0.0) {
            return Err(JobError::Invalid(format!(
                "merge tolerance must be zero or positive, got {}",
                self.merge_tolerance
            )));
        }
        Ok(())
    }

    /// True if line `j` is cut in the +axis direction.
    pub fn forward(&self, j: usize) -> bool {
        // Lines advance in +across, so the uncut material is on the +across side. With a
        // clockwise spindle, the cutter's edge on that side moves +X for X lines and -Y for Y
        // lines; climb milling feeds the same way the edge moves.
        match (self.direction, self.grid.axis) {
            (Direction::Zigzag, _) => j.is_multiple_of(2),
            (Direction::Climb, Axis::X) | (Direction::Conventional, Axis::Y) => true,
            (Direction::Climb, Axis::Y) | (Direction::Conventional, Axis::X) => false,
        }
    }
}

/// Estimated sag of the CL profile between samples above which a segment is refined, mm.
const REFINE_SAG: f64 = 0.01;
/// How far a straight move may pass below the exact CL profile between two points, mm:
/// where the profile bends down (a ridge, a crease of a faceted mesh, a wall's edge) the
/// chord between two samples runs under it, and the tool would cut into the part. Every
/// segment kept is checked against it exactly along its whole length (`LineRise`), so what
/// is left stays within half the default merge tolerance, which is also `millpond
/// simulate`'s default gouge tolerance and the resolution of a millimetre program.
const REFINE_GOUGE: f64 = 5e-4;
/// Segments between two looks at the cancel token while a line is refined.
const CANCEL_EVERY: usize = 1024;

/// Bisection depth: segments down to 1/64 of the sampling.
const REFINE_DEPTH: u32 = 6;

/// Most points a raster line may hold per grid point once refined; results from the pool are
/// checked against it. Between two samples refinement makes at most `2^REFINE_DEPTH` leaf
/// segments, each adding at most three points (a stair: up, across, down).
pub const MAX_POINTS_PER_SAMPLE: usize = 3 << REFINE_DEPTH;

/// The CL profile of line `j` as (along, z) points in grid order: the grid samples, plus
/// extra points where a straight move between two samples would cut into the part.
///
/// Between samples the exact CL profile is unknown; where it is smooth the chord is within
/// its sag of it, but at a wall the profile rises by millimetres within one sampling step
/// and the chord would gouge the wall's edge. A chord strays from the profile where the
/// slope changes, not where it is steep, so segments whose sag estimated from second
/// differences exceeds `REFINE_SAG`, or whose bend down exceeds `REFINE_GOUGE`, are bisected
/// with exact drop queries. Neither the second differences nor a midpoint proves a segment
/// straight: the profile can bend up and down within one step (over a wall's edge and onto
/// the slope below, or over a relief's creases closer than two samples), cross the chord at
/// the midpoint and stand 20 µm above it further on, while its neighbours' bends cancel. So
/// every segment kept is checked along its whole length, exactly
/// ([`LineRise`](crate::line_rise::LineRise)), and
/// refined where the profile rises above it by more than `REFINE_GOUGE`; a segment still
/// not straight at 1/64 of the sampling becomes a stair — straight up at its low end,
/// across at the profile's highest point over it, straight down — so the tool never dips
/// below it.
fn refined_profile(
    dc: &DropCutter,
    band: Option<&Band>,
    spec: &RasterSpec,
    j: usize,
    z: &[f64],
    cancel: &CancelToken,
) -> Result<Vec<(f64, f64)>, Cancelled> {
    let grid = &spec.grid;
    let s = grid.sampling;
    let n = z.len();
    let tol = spec.merge_tolerance.max(1e-4);
    let slope = |i: usize| (z[i + 1] - z[i]) / s;
    // On the line's band when there is one: its triangles are prepared and sorted already,
    // which makes a point several times cheaper than a query of the whole index.
    let drop_at = |u: f64| match band {
        Some(band) => {
            let mut h = [0.0];
            dc.sweep(band, grid.across(j), u, 1.0, 0, &mut h);
            h[0]
        }
        None => {
            let p = grid.on_line(j, u, 0.0);
            dc.at(p.x, p.y)
        }
    };
    // A tool narrower than the sampling can pass a thin wall between two samples and
    // between every bisection midpoint: then every segment is refined.
    // The line's triangles are prepared for the exact check when it is first needed.
    let line = std::cell::OnceCell::new();
    let line_rise = || {
        line.get_or_init(|| {
            dc.line_rise(
                grid.axis,
                grid.across(j),
                (grid.along(0), grid.along(n.max(1) - 1)),
            )
        })
    };
    let rise_along = |a: (f64, f64), b: (f64, f64), limit: f64| line_rise().max_rise(a, b, limit);
    let narrow = dc.cutter().diameter() <= s;
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    out.push((grid.along(0), z[0]));
    for i in 0..n - 1 {
        // A line can hold hundreds of thousands of samples, each checked exactly: a cancel
        // is looked at within the line, not only between lines.
        if i % CANCEL_EVERY == 0 && cancel.is_cancelled() {
            return Err(Cancelled);
        }
        let (u0, u1) = (grid.along(i), grid.along(i + 1));
        // How much the slope changes at each end: negative where the profile bends down.
        let bend = |a: usize, b: usize| slope(b) - slope(a);
        let (mut sag, mut ridge) = (0.0f64, 0.0f64);
        for (a, b) in [(i.wrapping_sub(1), i), (i, i + 1)] {
            if a < n - 1 && b < n - 1 {
                sag = sag.max(bend(a, b).abs());
                ridge = ridge.max(-bend(a, b));
            }
        }
        // The first and last segments have no neighbour on one side to show a bend: where
        // the line starts against the model's side (the tool touching its top edge at
        // exactly R), the profile rises like a square root from that edge and the chord
        // runs under it (8 µm on a terrain relief's side). Their midpoints are checked.
        let end = i == 0 || i + 2 == n;
        let (a, b) = ((u0, z[i]), (u1, z[i + 1]));
        // Second differences see a bend at a sample, not one between two samples (a faceted
        // relief's crease the tool rolls over within one step showed 20 µm), so a segment
        // they pass is still checked along its whole length, exactly.
        let flagged = narrow || end || s * sag / 4.0 > REFINE_SAG || s * ridge / 4.0 > REFINE_GOUGE;
        let hidden = || match i.checked_sub(1).zip((i + 2 < n).then_some(i + 2)) {
            Some((before, after)) => line_rise().max_rise_between_samples(
                a,
                b,
                (grid.along(before), grid.along(after)),
                i,
                REFINE_GOUGE,
            ),
            None => rise_along(a, b, REFINE_GOUGE),
        };
        if flagged || hidden() > REFINE_GOUGE {
            refine(&drop_at, &rise_along, a, b, tol, 0, &mut out);
        } else {
            out.push((u1, z[i + 1]));
        }
    }
    Ok(out)
}

/// How far the CL profile rises, at worst, above the straight move between two (along, z)
/// points of a line; exact above `limit`, and at most `limit` when the move is within it.
type RiseAlong<'a> = dyn Fn((f64, f64), (f64, f64), f64) -> f64 + 'a;

/// Pushes the points after `a` up to and including `b` (see `refined_profile`).
fn refine(
    drop_at: &impl Fn(f64) -> f64,
    rise: &RiseAlong<'_>,
    a: (f64, f64),
    b: (f64, f64),
    tol: f64,
    depth: u32,
    out: &mut Vec<(f64, f64)>,
) {
    let um = 0.5 * (a.0 + b.0);
    let zm = drop_at(um);
    // Straight at the midpoint both ways: within `tol` above the profile (material left),
    // within `REFINE_GOUGE` below it (cut into the part).
    let chord = 0.5 * (a.1 + b.1);
    let straight = chord - zm <= tol && zm - chord <= REFINE_GOUGE;
    // The midpoint alone proves nothing below the chord: where the profile bends both ways
    // within the segment (over a wall's edge and down onto a slope) it can cross the chord
    // at the midpoint and stand 20 µm above it a little further on, and a tool narrower
    // than the sampling can pass a whole wall between two midpoints. So a segment kept, or
    // made a stair, is checked along its whole length, exactly (`LineRise`, which stops
    // early once the answer's side of the limit is known).
    let last = depth >= REFINE_DEPTH;
    let clear = (straight || last) && rise(a, b, REFINE_GOUGE) <= REFINE_GOUGE;
    if clear {
        // At the last depth a segment that does not cut in is kept even where it leaves
        // more than `tol` (over 1/64 of the sampling, at a step's foot).
        out.push(b);
    } else if last {
        // The profile is nowhere higher than the chord plus its rise above it (exact now).
        let hidden = rise(a, b, f64::INFINITY);
        let top = a.1.max(b.1).max(zm).max(a.1.max(b.1) + hidden);
        if top > a.1 {
            out.push((a.0, top));
        }
        if top > b.1 {
            out.push((b.0, top));
        }
        out.push(b);
    } else {
        refine(drop_at, rise, a, (um, zm), tol, depth + 1, out);
        refine(drop_at, rise, (um, zm), b, tol, depth + 1, out);
    }
}

/// The merged CL polyline of line `j` from its tip heights, in cutting direction. `band`,
/// when given, holds the triangles in reach of the line (see [`DropCutter::band`]). Stops
/// with `Cancelled` soon after `cancel` is set, within the line.
pub fn line_polyline(
    dc: &DropCutter,
    band: Option<&Band>,
    spec: &RasterSpec,
    j: usize,
    heights: &[f64],
    cancel: &CancelToken,
) -> Result<Vec<Point3>, Cancelled> {
    let mut profile = refined_profile(dc, band, spec, j, heights, cancel)?;
    if !spec.forward(j) {
        profile.reverse();
    }
    let to_point = |(u, z): (f64, f64)| spec.grid.on_line(j, u, z);
    // Distance travelled along the cut, increasing in either direction.
    let t: Vec<f64> = profile.iter().map(|p| (p.0 - profile[0].0).abs()).collect();
    let z: Vec<f64> = profile.iter().map(|p| p.1).collect();
    // Stairs put two points at one position: merge each run between them on its own.
    let mut out = Vec::with_capacity(profile.len());
    let mut start = 0;
    for k in 1..=profile.len() {
        if k == profile.len() || t[k] == t[k - 1] {
            for i in merge(&t[start..k], &z[start..k], spec.merge_tolerance) {
                out.push(to_point(profile[start + i]));
            }
            start = k;
        }
    }
    Ok(out)
}

/// Indices of the points kept when merging a line profile `z(t)` so that the path never dips
/// below a point (beyond 1e-9 mm of rounding) nor rises more than `tol` above one. Keeps a
/// window of feasible slopes from the current anchor: O(n).
pub fn merge(t: &[f64], z: &[f64], tol: f64) -> Vec<usize> {
    const BELOW: f64 = 1e-9;
    let n = t.len();
    if n <= 2 {
        return (0..n).collect();
    }
    let mut keep = vec![0];
    let mut anchor = 0;
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut k = 1;
    while k < n {
        let dt = t[k] - t[anchor];
        let slope = (z[k] - z[anchor]) / dt;
        if slope >= lo && slope <= hi {
            // k can end the segment; as an intermediate point it narrows the window.
            lo = lo.max((z[k] - BELOW - z[anchor]) / dt);
            hi = hi.min((z[k] + tol - z[anchor]) / dt);
            k += 1;
        } else {
            // End at the last feasible point and restart from it.
            anchor = k - 1;
            keep.push(anchor);
            lo = f64::NEG_INFINITY;
            hi = f64::INFINITY;
        }
    }
    if *keep.last().unwrap_or(&0) != n - 1 {
        keep.push(n - 1);
    }
    keep
}

/// Penetration allowed in a direct link move, mm (the same bar as every CL point).
pub const LINK_TOLERANCE: f64 = 1e-6;

/// True if the tool can move straight from `a` to `b` without cutting into the model.
/// `model` is the job's contact with no floor (a link may pass below it).
pub fn move_is_clear(model: &DropCutter<'_>, a: Point3, b: Point3) -> bool {
    model.max_rise_along(a, b, LINK_TOLERANCE) <= LINK_TOLERANCE
}

/// Moves from safe height down onto `to`: rapid to just above it, then plunge.
pub fn approach(tp: &mut Toolpath, to: Point3, safe_z: f64) {
    let here = tp.end();
    if here.x != to.x || here.y != to.y {
        if here.z < safe_z {
            tp.push(MoveKind::Rapid, Point3::new(here.x, here.y, safe_z));
        }
        tp.push(MoveKind::Rapid, Point3::new(to.x, to.y, safe_z.max(here.z)));
    }
    let feed_from = to.z + FEED_CLEARANCE;
    if tp.end().z > feed_from {
        tp.push(MoveKind::Rapid, Point3::new(to.x, to.y, feed_from));
    }
    tp.push(MoveKind::Plunge, to);
}

/// Links merged lines into one toolpath: a direct cutting move between lines where it clears
/// the model (`model`: the job's contact with no floor), otherwise a link along the surface
/// (no lower than the floor) or a hop (see [`links`](crate::links)).
///
/// A link depends only on the two lines it joins (it starts where the line before ended), so
/// the links are found side by side and the moves then collected, side by side, into one list
/// made once at its final size: on a 10M-move program this was a serial tail after the
/// parallel compute (ARCHITECTURE.md §5: the same moves, bit for bit, on any thread count).
pub fn link(model: &DropCutter<'_>, spec: &RasterSpec, lines: &[Vec<Point3>]) -> Toolpath {
    use rayon::prelude::*;
    let lines: Vec<&[Point3]> = lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(Vec::as_slice)
        .collect();
    let Some(first) = lines.first().map(|l| l[0]) else {
        return Toolpath::default();
    };
    let safe_z = spec.safe_z;
    let start = Point3::new(first.x, first.y, safe_z.max(first.z));
    // The moves that bring the tool onto each line: from the start for the first, from the
    // end of the line before for the others.
    let joins: Vec<Vec<Move>> = (0..lines.len())
        .into_par_iter()
        .map(|k| {
            let to = lines[k][0];
            let mut tp = Toolpath {
                start: if k == 0 {
                    start
                } else {
                    *lines[k - 1].last().expect("lines are not empty")
                },
                moves: Vec::new(),
            };
            if k == 0 {
                approach(&mut tp, to, safe_z);
            } else if move_is_clear(model, tp.start, to) {
                tp.push(MoveKind::Cut, to);
            } else {
                let (low, step) = (spec.floor, spec.grid.sampling);
                link_to(&mut tp, model, to, &spec.links, safe_z, low, step);
            }
            tp.moves
        })
        .collect();
    let end = *lines[lines.len() - 1].last().expect("lines are not empty");
    let lift = (end.z < safe_z).then(|| Move {
        kind: MoveKind::Rapid,
        to: Point3::new(end.x, end.y, safe_z),
    });
    // Where each line's moves (its join, then its points after the first) begin in the list.
    let mut offsets = Vec::with_capacity(lines.len() + 1);
    offsets.push(0);
    for (j, l) in joins.iter().zip(&lines) {
        offsets.push(offsets[offsets.len() - 1] + j.len() + l.len() - 1);
    }
    let body = offsets[lines.len()];
    let total = body + usize::from(lift.is_some());
    // Collected side by side into the list made at its size: every page of it is first
    // written (and so zeroed by the kernel) by the thread that fills it, not by one thread
    // before the copy. Each thread walks a run of moves in order, so it finds each move's
    // line by stepping on from the last one (or by bisection where it starts).
    let mut moves = Vec::new();
    (0..total)
        .into_par_iter()
        .map_init(
            || 0usize,
            |line, k| {
                if k == body {
                    return lift.expect("the move after the lines is the lift");
                }
                if !(offsets[*line] <= k && k < offsets[*line + 1]) {
                    *line = offsets.partition_point(|&o| o <= k) - 1;
                }
                let (join, points) = (&joins[*line], lines[*line]);
                let i = k - offsets[*line];
                match join.get(i) {
                    Some(m) => *m,
                    None => Move {
                        kind: MoveKind::Cut,
                        to: points[1 + i - join.len()],
                    },
                }
            },
        )
        .collect_into_vec(&mut moves);
    Toolpath { start, moves }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_merge(t: &[f64], z: &[f64], tol: f64) -> Vec<usize> {
        let keep = merge(t, z, tol);
        assert_eq!(keep[0], 0);
        assert_eq!(*keep.last().unwrap(), t.len() - 1);
        for w in keep.windows(2) {
            let (a, b) = (w[0], w[1]);
            for i in a + 1..b {
                let s = z[a] + (z[b] - z[a]) * (t[i] - t[a]) / (t[b] - t[a]);
                assert!(s >= z[i] - 1e-9 - 1e-12, "dips below point {i}");
                assert!(
                    s <= z[i] + tol + 1e-12,
                    "rises above point {i} by {}",
                    s - z[i]
                );
            }
        }
        keep
    }

    /// The links found side by side and the lines copied side by side give the moves the
    /// plain serial walk gives, in order, bit for bit: with direct moves, surface links and
    /// hops between the lines, empty lines among them, and a last lift.
    #[test]
    fn lines_linked_side_by_side_are_the_lines_linked_one_after_another() {
        use crate::index::TriangleIndex;
        use crate::mesh::Mesh;
        use crate::setup::{RasterParams, Setup, Stock, Strategy};
        let mesh = Mesh::from_triangles(crate::models::terrain_relief(60), "relief").unwrap();
        let index = TriangleIndex::new(&mesh);
        let setup = Setup::new(
            mesh.hash(),
            mesh.bounds(),
            &Stock::around_model(0.0, 1.0, 0.0),
        )
        .unwrap();
        let cutter = crate::Cutter::Ball { diameter: 3.0 };
        let contact = DropCutter::new(&mesh, &index, cutter, f64::NEG_INFINITY);
        let serial = |spec: &RasterSpec, lines: &[Vec<Point3>]| {
            let first = lines.iter().find_map(|l| l.first().copied()).unwrap();
            let mut tp = Toolpath::new(Point3::new(first.x, first.y, spec.safe_z.max(first.z)));
            let mut started = false;
            for line in lines.iter().filter(|l| !l.is_empty()) {
                let from = tp.end();
                if !started {
                    approach(&mut tp, line[0], spec.safe_z);
                    started = true;
                } else if move_is_clear(&contact, from, line[0]) {
                    tp.push(MoveKind::Cut, line[0]);
                } else {
                    let (low, step) = (spec.floor, spec.grid.sampling);
                    link_to(
                        &mut tp,
                        &contact,
                        line[0],
                        &spec.links,
                        spec.safe_z,
                        low,
                        step,
                    );
                }
                for &p in &line[1..] {
                    tp.push(MoveKind::Cut, p);
                }
            }
            let end = tp.end();
            if end.z < spec.safe_z {
                tp.push(MoveKind::Rapid, Point3::new(end.x, end.y, spec.safe_z));
            }
            tp
        };
        for direction in [Direction::Zigzag, Direction::Climb] {
            let params = RasterParams {
                stepover: 0.7,
                direction,
                ..RasterParams::default()
            };
            let job = setup
                .plan(&Strategy::RasterFinishing(params), cutter)
                .unwrap();
            let crate::job::Operation::Raster(spec) = &job.operation else {
                unreachable!("a raster spec");
            };
            // Lines as the grid's passes give them, with the middle of each line cut out
            // every third pass (so that links climb over the relief) and some left empty.
            let grid = &spec.grid;
            let mut lines: Vec<Vec<Point3>> = (0..grid.lines())
                .map(|j| {
                    let mut line: Vec<Point3> = (0..grid.points_per_line())
                        .map(|i| {
                            let p = grid.point(j, i, 0.0);
                            Point3::new(p.x, p.y, contact.at(p.x, p.y))
                        })
                        .collect();
                    if !spec.forward(j) {
                        line.reverse();
                    }
                    line
                })
                .collect();
            for (j, line) in lines.iter_mut().enumerate() {
                match j % 7 {
                    3 => line.clear(),
                    5 => line.truncate(line.len() / 3),
                    _ => {}
                }
            }
            let want = serial(spec, &lines);
            let got = link(&contact, spec, &lines);
            assert_eq!(got, want, "{direction:?}");
            let kinds = |k: MoveKind| got.moves.iter().filter(|m| m.kind == k).count();
            assert!(
                kinds(MoveKind::Plunge) > 1,
                "{direction:?}: hops between lines"
            );
        }
    }

    #[test]
    fn merge_collapses_straight_runs_and_respects_tolerance() {
        let t: Vec<f64> = (0..1000).map(|i| i as f64 * 0.1).collect();
        let flat = vec![2.0; 1000];
        assert_eq!(check_merge(&t, &flat, 0.001), vec![0, 999]);
        let ramp: Vec<f64> = t.iter().map(|x| 0.3 * x + 1.0).collect();
        assert_eq!(check_merge(&t, &ramp, 0.001).len(), 2);
        let bumpy: Vec<f64> = t.iter().map(|x| (x * 0.7).sin() * 3.0).collect();
        let keep = check_merge(&t, &bumpy, 0.01);
        assert!(keep.len() < 1000 && keep.len() > 20, "{}", keep.len());
        // A step (vertical wall) keeps its corners.
        let step: Vec<f64> = t
            .iter()
            .map(|&x| if x < 50.0 { 0.0 } else { 5.0 })
            .collect();
        let keep = check_merge(&t, &step, 0.001);
        assert_eq!(keep, vec![0, 499, 500, 999]);
    }
}
