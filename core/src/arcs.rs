//! Arc fitting: runs of straight moves that lie on a circle in XY become one `G2`/`G3`.
//!
//! Waterline loops around round walls, roughing rings around bosses and the round corners of
//! offset clearing are written by the engine as chains of short straight moves, one per
//! sample. A controller streaming them over USB spends more time receiving than cutting, and
//! a planner that sees a chain of chords slows for each corner between them. An arc is one
//! line for the whole run.
//!
//! What is written must be what was computed, within the tolerance:
//! * every point of the run lies within `tol` of the arc (radially), in order along it;
//! * the arc strays from each straight move it replaces by at most ten times `tol` (the
//!   sagitta of each chord: see [`CHORD_FACTOR`]);
//! * Z, where it changes, changes linearly with the angle (a helix), never below a point
//!   (beyond 1e-9 mm of rounding) and at most `tol` above one — the rule raster merging
//!   keeps (`raster::merge`);
//! * only moves of one kind (cut or plunge) join: never an arc across a rapid or a retract;
//! * at most half a circle per arc (`max_sweep`), so no controller reads a full circle or
//!   the other way round, and far less for the radius format, where the centre is ill
//!   defined near half a circle.
//!
//! That is the fit, from the points alone. Between the points the computed path is known only
//! as its chords, and on a steep wall a micron sideways is several microns deep: so each arc
//! is then checked against the model itself ([`keep_clear`]), as links are — the tool on the
//! arc never stands more than `tol` below the contact height there (the exact CL surface)
//! unless the straight moves it replaces stood as low. An arc that fails is written as its
//! moves.
//!
//! The fit is greedy from each point: the longest run from it that passes, found by doubling
//! and then halving its length, each try checked against every point of the run. Runs that
//! are straight fail on their first three points, so straight raster lines cost one check
//! each.

use crate::drop::DropCutter;
use crate::geom::{Point3, Rect};
use crate::toolpath::{MoveKind, Toolpath};
use rayon::prelude::*;
use std::f64::consts::PI;

/// Default largest distance of an arc from the points it replaces, mm (1 µm).
pub const DEFAULT_ARC_TOLERANCE: f64 = 0.001;

/// Fewest straight moves an arc replaces: fewer save too little to be worth an arc.
pub const MIN_MOVES: usize = 3;

/// Largest radius fitted, mm: beyond it the "arc" is a straight line written badly.
const MAX_RADIUS: f64 = 10_000.0;

/// How far the arc may bulge from a move it replaces, in tolerances. The points are the
/// computed ones; the chords between them are the engine's own approximation of a curved
/// path (a roughing ring's round corner is written in chords a tenth of its radius long),
/// and an arc through the points is nearer that curve than the chords are. Ten tolerances
/// keeps an arc from spanning points too sparse to say what lies between; the check
/// against the model ([`keep_clear`]) is what keeps it out of the part.
const CHORD_FACTOR: f64 = 10.0;

/// Rounding allowed below a point, mm (as raster merging).
const BELOW: f64 = 1e-9;

/// An arc through `points[0..=n]`: from `points[0]` to `points[n]` about `centre`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arc {
    /// How many moves it replaces (`n`): it ends at `points[n]`.
    pub moves: usize,
    /// Centre in XY.
    pub centre: [f64; 2],
    pub radius: f64,
    /// G2 (clockwise seen from above) or G3.
    pub clockwise: bool,
    /// Angle swept, radians (positive).
    pub sweep: f64,
}

/// Most moves one arc replaces, to bound the work of a fit (half a circle at a sample every
/// 0.01 mm of a 6 mm radius is about 2,000).
pub const MAX_MOVES: usize = 4096;

/// The points a fit reads: `at(0)` is where the tool is, `at(k)` the end of the `k`-th move
/// after it, for `k` up to `last`. A function rather than a slice, so a writer can fit
/// straight from a toolpath's moves without copying them.
#[allow(missing_debug_implementations)] // a closure has no Debug
pub struct Run<F: Fn(usize) -> Point3> {
    pub at: F,
    pub last: usize,
}

/// The longest arc from `run.at(0)` through the points after it, within `tol` and
/// `max_sweep` radians; `None` if no run of at least [`MIN_MOVES`] moves fits.
pub fn longest_arc<F: Fn(usize) -> Point3>(run: &Run<F>, tol: f64, max_sweep: f64) -> Option<Arc> {
    let last = run.last.min(MAX_MOVES);
    if tol.is_nan() || tol <= 0.0 || last < MIN_MOVES {
        return None;
    }
    let mut good = fit(run, MIN_MOVES, tol, max_sweep)?;
    // Double while it fits, then halve the gap between the longest that fits and the
    // shortest that does not.
    let mut bad = None;
    let mut n = MIN_MOVES;
    while n < last {
        n = (n * 2).min(last);
        match fit(run, n, tol, max_sweep) {
            Some(a) => good = a,
            None => {
                bad = Some(n);
                break;
            }
        }
    }
    if let Some(mut hi) = bad {
        let mut lo = good.moves;
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            match fit(run, mid, tol, max_sweep) {
                Some(a) => {
                    good = a;
                    lo = mid;
                }
                None => hi = mid,
            }
        }
    }
    Some(good)
}

/// The arc through `run.at(0..=n)` if every check passes.
pub fn fit<F: Fn(usize) -> Point3>(
    run: &Run<F>,
    n: usize,
    tol: f64,
    max_sweep: f64,
) -> Option<Arc> {
    if n > run.last || n < 2 {
        return None;
    }
    let at = &run.at;
    let (a, m, b) = (at(0), at(n / 2), at(n));
    let (centre, radius) = circle_through(a, m, b)?;
    if !(radius > 10.0 * tol && radius <= MAX_RADIUS) {
        return None;
    }
    // Direction from the three points; every step must turn the same way.
    let cross = (m.x - a.x) * (b.y - a.y) - (m.y - a.y) * (b.x - a.x);
    let clockwise = cross < 0.0;
    let sign = if clockwise { -1.0 } else { 1.0 };
    let angle = |p: Point3| (p.y - centre[1]).atan2(p.x - centre[0]);
    // The angle swept from `a` to each point: forward, less than a quarter turn a move.
    let step = |from: f64, to: f64| {
        let mut s = (to - from) * sign;
        if s < 0.0 {
            s += 2.0 * PI;
        }
        s
    };
    let mut sweep = 0.0;
    let mut before = angle(a);
    for k in 1..=n {
        let p = at(k);
        // Radially on the circle.
        let r = (p.x - centre[0]).hypot(p.y - centre[1]);
        if (r - radius).abs() > tol {
            return None;
        }
        let now = angle(p);
        let s = step(before, now);
        if !(s > 0.0 && s < PI / 2.0) {
            return None;
        }
        // The arc's farthest point from this move's chord.
        if radius * (1.0 - (s / 2.0).cos()) > CHORD_FACTOR * tol {
            return None;
        }
        sweep += s;
        if sweep > max_sweep + 1e-9 {
            return None;
        }
        before = now;
    }
    // Z linear in the angle, never below a point, at most `tol` above one.
    let (z0, dz) = (a.z, b.z - a.z);
    if dz != 0.0 || (1..n).any(|k| at(k).z != z0) {
        let (mut swept, mut before) = (0.0, angle(a));
        for k in 1..n {
            let p = at(k);
            let now = angle(p);
            swept += step(before, now);
            before = now;
            let z = z0 + dz * (swept / sweep);
            if z < p.z - BELOW || z > p.z + tol {
                return None;
            }
        }
    }
    Some(Arc {
        moves: n,
        centre,
        radius,
        clockwise,
        sweep,
    })
}

/// An arc in place of the moves `first .. first + arc.moves` of a toolpath: from where the
/// move before `first` ends (the toolpath's start for the first move) to where the last one
/// ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArcSpan {
    pub first: usize,
    pub arc: Arc,
}

/// How high the contact may stand above an arc at the least, mm, whatever the tolerance: the
/// bar links meet.
pub const RISE_TOLERANCE: f64 = crate::raster::LINK_TOLERANCE;

/// Largest distance of the arc from the chords it is checked along, mm: a tenth of a
/// micron, so what the chords miss is far below any tolerance.
const CHECK_SAGITTA: f64 = 1e-4;

/// The arcs of `tp`: runs of cut moves, or of plunge moves, on a circle (never across a
/// rapid or from one kind to the other), in order, greedy from the start.
pub fn fit_toolpath(tp: &Toolpath, tol: f64, max_sweep: f64) -> Vec<ArcSpan> {
    let moves = &tp.moves;
    let mut spans = Vec::new();
    if !(tol > 0.0 && max_sweep > 0.0) {
        return spans;
    }
    let mut i = 0;
    while i < moves.len() {
        let kind = moves[i].kind;
        let mut end = i;
        while end < moves.len() && moves[end].kind == kind {
            end += 1;
        }
        if kind == MoveKind::Rapid {
            i = end;
            continue;
        }
        while i < end {
            let from = if i == 0 { tp.start } else { moves[i - 1].to };
            let run = Run {
                at: |k: usize| if k == 0 { from } else { moves[i + k - 1].to },
                last: end - i,
            };
            match longest_arc(&run, tol, max_sweep) {
                Some(arc) => {
                    spans.push(ArcSpan { first: i, arc });
                    i += arc.moves;
                }
                None => i += 1,
            }
        }
    }
    spans
}

/// The arcs of `spans` that leave the exact CL surface by at most `tol` (`contact`: the
/// operation's cutter and allowance, no floor): along the arc, the contact height stands at
/// most half of `tol` above the tool, or no higher above it than above the straight moves the arc
/// replaces (the engine's own chords between points stand a fraction of a micron below the
/// surface on convex walls). Checked in parallel; the result does not depend on the threads.
pub fn keep_clear(
    spans: Vec<ArcSpan>,
    tp: &Toolpath,
    contact: &DropCutter<'_>,
    tol: f64,
) -> Vec<ArcSpan> {
    let point = |k: usize| if k == 0 { tp.start } else { tp.moves[k - 1].to };
    // Half the tolerance: the other half is for what the written figures round away and
    // for the stock simulation's cells, so the program passes `millpond simulate` at the
    // same tolerance.
    let limit = (tol / 2.0).max(RISE_TOLERANCE);
    spans
        .into_par_iter()
        .filter(|span| {
            let from = point(span.first);
            let to = point(span.first + span.arc.moves);
            let chords = chords_of(&span.arc, from, to);
            // Far from anything above it (most roughing rings): clear without a chord.
            let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
            for p in &chords {
                lo = [lo[0].min(p.x), lo[1].min(p.y)];
                hi = [hi[0].max(p.x), hi[1].max(p.y)];
            }
            let extent = Rect::new(lo[0], hi[0], lo[1], hi[1]).grown(CHECK_SAGITTA);
            if !contact.may_touch(extent, from.z.min(to.z)) {
                return true;
            }
            // Whether the contact stands no more than `limit` above the arc anywhere: stops
            // at the first chord where it does.
            let clear = |limit: f64| {
                chords
                    .windows(2)
                    .all(|w| contact.max_rise_along(w[0], w[1], limit) <= limit)
            };
            if clear(limit) {
                return true;
            }
            // As deep as the moves it replaces, no deeper.
            let moves_rise = (span.first..span.first + span.arc.moves)
                .map(|k| contact.max_rise_along(point(k), point(k + 1), f64::INFINITY))
                .fold(f64::NEG_INFINITY, f64::max);
            moves_rise > limit && clear(moves_rise)
        })
        .collect()
}

/// Points along `arc` from `from` to `to` whose chords stay within [`CHECK_SAGITTA`] of it,
/// Z along the helix.
fn chords_of(arc: &Arc, from: Point3, to: Point3) -> Vec<Point3> {
    let r = arc.radius;
    let step = 2.0 * (1.0 - CHECK_SAGITTA / r).clamp(-1.0, 1.0).acos();
    let n = ((arc.sweep / step.max(1e-6)).ceil() as usize).clamp(1, 1 << 16);
    let sign = if arc.clockwise { -1.0 } else { 1.0 };
    let a0 = (from.y - arc.centre[1]).atan2(from.x - arc.centre[0]);
    (0..=n)
        .map(|k| {
            if k == 0 {
                return from;
            }
            if k == n {
                return to;
            }
            let t = k as f64 / n as f64;
            let a = a0 + sign * arc.sweep * t;
            Point3::new(
                arc.centre[0] + r * a.cos(),
                arc.centre[1] + r * a.sin(),
                from.z + (to.z - from.z) * t,
            )
        })
        .collect()
}

/// The circle through three points in XY: centre and radius; `None` when they are (nearly)
/// on one line.
fn circle_through(a: Point3, b: Point3, c: Point3) -> Option<([f64; 2], f64)> {
    // Relative to `a`, for precision far from the origin.
    let (bx, by) = (b.x - a.x, b.y - a.y);
    let (cx, cy) = (c.x - a.x, c.y - a.y);
    let d = 2.0 * (bx * cy - by * cx);
    let scale = (bx * bx + by * by).max(cx * cx + cy * cy);
    if d.is_nan() || d.abs() <= 1e-12 * scale {
        return None;
    }
    let (b2, c2) = (bx * bx + by * by, cx * cx + cy * cy);
    let ux = (cy * b2 - by * c2) / d;
    let uy = (bx * c2 - cx * b2) / d;
    let r = ux.hypot(uy);
    r.is_finite().then_some(([a.x + ux, a.y + uy], r))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n + 1` points on a circle about (cx, cy) of radius r from angle a0 by `step` each,
    /// Z from z0 by dz each.
    fn on_circle(
        c: (f64, f64),
        r: f64,
        a0: f64,
        step: f64,
        n: usize,
        z0: f64,
        dz: f64,
    ) -> Vec<Point3> {
        (0..=n)
            .map(|k| {
                let t = a0 + step * k as f64;
                Point3::new(c.0 + r * t.cos(), c.1 + r * t.sin(), z0 + dz * k as f64)
            })
            .collect()
    }

    fn arc_of(points: &[Point3], tol: f64, max_sweep: f64) -> Option<Arc> {
        let run = Run {
            at: |k: usize| points[k],
            last: points.len() - 1,
        };
        longest_arc(&run, tol, max_sweep)
    }

    #[test]
    fn points_on_a_circle_make_one_arc_each_way() {
        let ccw = on_circle((10.0, -5.0), 7.5, 0.3, 0.02, 100, 2.0, 0.0);
        let a = arc_of(&ccw, 1e-3, PI).unwrap();
        assert_eq!(a.moves, 100);
        assert!(!a.clockwise);
        assert!((a.centre[0] - 10.0).abs() < 1e-9 && (a.centre[1] + 5.0).abs() < 1e-9);
        assert!((a.radius - 7.5).abs() < 1e-9 && (a.sweep - 2.0).abs() < 1e-9);
        let cw: Vec<Point3> = ccw.iter().rev().copied().collect();
        let a = arc_of(&cw, 1e-3, PI).unwrap();
        assert!(a.clockwise && a.moves == 100);
    }

    #[test]
    fn an_arc_stops_at_half_a_circle_and_where_the_circle_ends() {
        // A whole circle in 400 moves: the first arc takes half of it.
        let full = on_circle((0.0, 0.0), 5.0, 0.0, 2.0 * PI / 400.0, 400, 0.0, 0.0);
        assert_eq!(arc_of(&full, 1e-3, PI).unwrap().moves, 200);
        // A third of it where the radius alone gives the centre.
        assert_eq!(arc_of(&full, 1e-3, 2.0 * PI / 3.0).unwrap().moves, 133);
        // A quarter circle, then a straight line on: the arc ends with the circle.
        let mut p = on_circle((0.0, 0.0), 5.0, 0.0, PI / 2.0 / 100.0, 100, 0.0, 0.0);
        for k in 1..10 {
            p.push(Point3::new(-0.5 * k as f64, 5.0, 0.0));
        }
        assert_eq!(arc_of(&p, 1e-3, PI).unwrap().moves, 100);
    }

    #[test]
    fn straight_and_wobbly_runs_are_not_arcs() {
        let line: Vec<Point3> = (0..20)
            .map(|k| Point3::new(k as f64 * 0.1, 2.0, 0.0))
            .collect();
        assert!(arc_of(&line, 1e-3, PI).is_none());
        // A point 2 µm off the circle in the middle.
        let mut p = on_circle((0.0, 0.0), 5.0, 0.0, 0.02, 20, 0.0, 0.0);
        let k = 7;
        let r = 5.0 + 0.002;
        let t = 0.02 * k as f64;
        p[k] = Point3::new(r * t.cos(), r * t.sin(), 0.0);
        let a = arc_of(&p, 1e-3, PI).unwrap();
        assert!(a.moves < k, "an arc through the stray point: {a:?}");
        // Chords too long for the tolerance: each one's sagitta is r(1 - cos 0.1) = 25 µm,
        // more than ten tolerances of 1 µm.
        let coarse = on_circle((0.0, 0.0), 5.0, 0.0, 0.2, 10, 0.0, 0.0);
        assert!(arc_of(&coarse, 1e-3, PI).is_none());
        assert!(arc_of(&coarse, 0.003, PI).is_some());
    }

    #[test]
    fn z_may_change_linearly_but_never_dip_below_a_point() {
        // A helical ramp.
        let helix = on_circle((0.0, 0.0), 3.0, 0.0, 0.05, 30, 5.0, -0.01);
        assert_eq!(arc_of(&helix, 1e-3, PI).unwrap().moves, 30);
        // One point 1 µm higher than the helix: no arc passes it, one may end there.
        let mut p = helix.clone();
        p[13].z += 1e-6;
        assert_eq!(arc_of(&p, 1e-3, PI).unwrap().moves, 13);
        // One point 0.5 µm lower: the helix passes above it, within the tolerance.
        let mut p = helix;
        p[13].z -= 0.5e-6;
        assert_eq!(arc_of(&p, 1e-3, PI).unwrap().moves, 30);
    }
}
