//! How far a raster line's CL profile rises above straight moves along the line: the exact
//! check of every segment raster refinement keeps (ARCHITECTURE.md §3.5).
//!
//! [`DropCutter::max_rise_along`] answers this for any move, but each call queries the
//! index and prepares every triangle in reach again; a raster line asks it once for each
//! refined segment, thousands of times along the same line (509k calls on the benchmark's
//! relief at 0.25 mm, four times the drop-cutter's own work). [`LineRise`] prepares the
//! triangles in reach of the line once, with the part of the line each can reach, in cells
//! along the line, so a segment's question reads only the triangles that can reach it and
//! evaluates only those that could rise above it.

use crate::cutter::{Cutter, Shape};
use crate::drop::{
    Axis, DropCutter, Prepared, concave_bound, concave_max, plane_bound, prepare, reach,
    reach_interval, reach_rect, touch,
};
use crate::with_shape;

/// Points of the scan that bounds a triangle's rise before any search (as `concave_max`).
const SCAN: usize = 16;

/// How far inside a triangle's stretch, as a share of the part of a move it covers, the
/// points bounding its rise are taken.
const NUDGE: f64 = 1e-3;

/// Most cells along one line: a longer line gets wider cells.
const MAX_CELLS: usize = 1 << 16;

/// A triangle in a cell of the line.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// No contact with the triangle from the line is higher: its top less the cutter's
    /// profile height at the triangle's least distance across the line.
    top: f64,
    /// The triangle's highest point, the square of its box's distance across the line, and
    /// its box along the line: with a move's ends, how near the axis comes to it.
    zmax: f64,
    across2: f64,
    umin: f64,
    umax: f64,
    /// The stretch `[lo, hi]` of the line (along it) from which the cutter can reach the
    /// triangle, slightly widened (touching outside it only gives -inf).
    lo: f64,
    hi: f64,
    /// The triangle's plane (`Prepared::plane`), here for the bound it gives.
    plane: Option<(f64, f64, f64)>,
    id: u32,
    /// The first cell of the stretch.
    first: u32,
}

/// The triangles within the cutter's reach of one raster line, prepared for it; see the
/// module documentation.
#[derive(Debug)]
pub struct LineRise {
    cutter: Cutter,
    lift: f64,
    /// The line's position across (x for lines along Y, y for lines along X).
    across: f64,
    prepared: Vec<Prepared>,
    origin: f64,
    width: f64,
    /// Cell `c` lists `cells[start[c]..start[c + 1]]`: every triangle whose stretch meets
    /// it, highest `top` first.
    start: Vec<u32>,
    cells: Vec<Entry>,
    /// Per triangle, contacts found at a few points along the line (a grid sample's slot by
    /// its index, another point's by its bits): the moves along a line are asked in order,
    /// each starting where the one before ended, and the grid's samples are asked again by
    /// the segments beside them. A contact is a pure function of the point, so what is kept
    /// never changes an answer.
    contacts: std::cell::RefCell<Vec<[(f64, f64); 4]>>,
}

impl DropCutter<'_> {
    /// The triangles in reach of the line at `across` between `along.0` and `along.1`
    /// (`axis` is the direction the line runs in), prepared for [`LineRise::max_rise`].
    pub fn line_rise(&self, axis: Axis, across: f64, along: (f64, f64)) -> LineRise {
        with_shape!(self.cutter().profile(), p => self.line_rise_impl(&p, axis, across, along))
    }

    fn line_rise_impl<S: Shape>(
        &self,
        shape: &S,
        axis: Axis,
        across: f64,
        (u0, u1): (f64, f64),
    ) -> LineRise {
        let (u0, u1) = (u0.min(u1), u0.max(u1));
        let r = reach(shape.radius());
        let swap = axis == Axis::Y;
        let rect = reach_rect(axis, (u0, u1), (across, across), r);
        let (a, b) = ((u0 - r, across), (u1 + r, across));
        let span = b.0 - a.0;
        // Widening each stretch by far more than the rounding of the conversion below.
        let slack = 1e-9 * (1.0 + r + u0.abs().max(u1.abs()));
        let tris = self.mesh().triangles();
        let mut prepared = Vec::new();
        let mut stretches = Vec::new();
        self.index().query(&rect, f64::NEG_INFINITY, |id| {
            let t = prepare(shape, &tris[id as usize], swap);
            if let Some((s0, s1)) = reach_interval(&t, a, b, r) {
                prepared.push(t);
                stretches.push((a.0 + s0 * span - slack, a.0 + s1 * span + slack));
            }
        });
        // Per triangle: the square of its box's distance across the line, and its top less
        // the profile's height there.
        let across_tops: Vec<(f64, f64)> = prepared
            .iter()
            .map(|t| {
                let dv = (t.vmin - across).max(across - t.vmax).max(0.0);
                (dv * dv, t.zmax - shape.height_lower_bound(dv * dv))
            })
            .collect();
        // Cells of half the radius: a move's triangles are about those of its cells.
        let width = (span / MAX_CELLS as f64)
            .max(0.5 * shape.radius())
            .max(1e-3);
        let n = ((span / width).ceil() as usize).clamp(1, MAX_CELLS);
        let cell = |u: f64| (((u - a.0) / width).floor().max(0.0) as usize).min(n - 1);
        let mut start = vec![0u32; n + 1];
        for &(lo, hi) in &stretches {
            for c in cell(lo)..=cell(hi) {
                start[c + 1] += 1;
            }
        }
        for c in 0..n {
            start[c + 1] += start[c];
        }
        let mut fill = start.clone();
        let empty = Entry {
            top: 0.0,
            zmax: 0.0,
            across2: 0.0,
            umin: 0.0,
            umax: 0.0,
            lo: 0.0,
            hi: 0.0,
            plane: None,
            id: 0,
            first: 0,
        };
        let mut cells = vec![empty; start[n] as usize];
        for (id, (t, &(lo, hi))) in prepared.iter().zip(&stretches).enumerate() {
            let (across2, top) = across_tops[id];
            let entry = Entry {
                top,
                zmax: t.zmax,
                across2,
                umin: t.umin,
                umax: t.umax,
                lo,
                hi,
                plane: t.plane,
                id: id as u32,
                first: cell(lo) as u32,
            };
            for c in cell(lo)..=cell(hi) {
                cells[fill[c] as usize] = entry;
                fill[c] += 1;
            }
        }
        for c in 0..n {
            cells[start[c] as usize..start[c + 1] as usize]
                .sort_unstable_by(|x, y| y.top.total_cmp(&x.top).then(x.id.cmp(&y.id)));
        }
        LineRise {
            cutter: self.cutter(),
            lift: self.allowance(),
            across,
            prepared,
            origin: a.0,
            width,
            contacts: std::cell::RefCell::new(vec![[(f64::NAN, 0.0); 4]; stretches.len()]),
            start,
            cells,
        }
    }
}

impl LineRise {
    /// How far the cutter would have to rise, at worst, to move straight along the line from
    /// `a` to `b`, each (along, tip z), without cutting into the model: as
    /// [`DropCutter::max_rise_along`] for that move, exact where it is above `limit`, and
    /// only known to be at most `limit` otherwise (-inf where nothing is in reach).
    pub fn max_rise(&self, a: (f64, f64), b: (f64, f64), limit: f64) -> f64 {
        with_shape!(self.cutter.profile(), p => self.max_rise_impl(&p, a, b, None, limit))
    }

    /// As [`max_rise`](Self::max_rise) for a move between two neighbouring samples of a
    /// grid, `a.0 < b.0`, whose neighbours `outer` (the sample before `a` and the one after
    /// `b`) are asked about too, `index` the sample `a` is (grid order, so that the samples
    /// keep their contacts apart): a triangle's contacts at the four samples, most of them
    /// known from the segments beside, bound its rise without a point between them.
    pub fn max_rise_between_samples(
        &self,
        a: (f64, f64),
        b: (f64, f64),
        outer: (f64, f64),
        index: usize,
        limit: f64,
    ) -> f64 {
        let outer = Some((outer, index));
        with_shape!(self.cutter.profile(), p => self.max_rise_impl(&p, a, b, outer, limit))
    }

    fn max_rise_impl<S: Shape>(
        &self,
        shape: &S,
        a: (f64, f64),
        b: (f64, f64),
        outer: Option<((f64, f64), usize)>,
        limit: f64,
    ) -> f64 {
        let (a, b) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        let r = shape.radius();
        let r2 = r * r;
        let (za, zb) = (a.1 - self.lift, b.1 - self.lift);
        let len = b.0 - a.0;
        // The ends exactly: the next move along the line starts where this one ends, and
        // finds a triangle's contact there in `contacts`.
        let at = |s: f64| {
            if s == 0.0 {
                (a.0, za)
            } else if s == 1.0 {
                (b.0, zb)
            } else {
                (a.0 + len * s, za + (zb - za) * s)
            }
        };
        // A triangle's contact with the axis at `u` on the line, and its rise above the move
        // at `s` of it.
        let contact_at =
            |t: &Prepared, u: f64| touch(shape, r2, t, u, self.across, f64::NEG_INFINITY);
        let rise_of = |t: &Prepared, s: f64| {
            let (u, z) = at(s);
            contact_at(t, u) - z
        };
        let sample = |d: usize| outer.map(|(_, i)| i + d);
        let mut contacts = self.contacts.borrow_mut();
        let n = self.start.len() - 1;
        let cell = |u: f64| (((u - self.origin) / self.width).floor().max(0.0) as usize).min(n - 1);
        let (k0, k1) = (cell(a.0), cell(b.0));
        let mut worst = f64::NEG_INFINITY;
        // Triangles still to search, with their interval and the bound their scan gave.
        let mut searches: Vec<(u32, f64, f64, f64)> = Vec::new();
        let zlow = za.min(zb);
        for k in k0..=k1 {
            for &Entry {
                top,
                zmax,
                across2,
                umin,
                umax,
                lo,
                hi,
                plane,
                id,
                first,
            } in &self.cells[self.start[k] as usize..self.start[k + 1] as usize]
            {
                // Without a limit only the exact maximum will do; with one, a triangle that
                // cannot rise past it cannot change the answer's side of it.
                let bar = if limit.is_finite() {
                    worst.max(limit)
                } else {
                    worst
                };
                // Highest first: once one cannot rise past the bar, none after it can.
                if top - zlow <= bar {
                    break;
                }
                // Each triangle once: in the first cell both the move and its stretch meet.
                if hi < a.0 || lo > b.0 || k != k0.max(first as usize) {
                    continue;
                }
                let (t0, t1) = if len > 0.0 {
                    (((lo - a.0) / len).max(0.0), ((hi - a.0) / len).min(1.0))
                } else {
                    (0.0, 1.0)
                };
                if t0 > t1 {
                    continue;
                }
                // Nor higher than its top less the cutter's profile height at the least
                // distance between the move and its box, which the drop-cutter's own scan
                // prunes by too.
                let (u_lo, u_hi) = (at(t0).0, at(t1).0);
                let along = (umin - u_hi).max(u_lo - umax).max(0.0);
                let near = zmax - shape.height_lower_bound(along * along + across2);
                if near - at(t0).1.min(at(t1).1) <= bar {
                    continue;
                }
                // Nor higher than its plane's contact, which is linear along the move as the
                // move is.
                let plane_rise = |s: f64| {
                    let (u, z) = at(s);
                    plane_bound(plane, u, self.across).map(|p| p - z + 1e-12 * z.abs())
                };
                let plane = plane_rise(t0).zip(plane_rise(t1));
                if plane.is_some_and(|(r0, r1)| r0.max(r1) <= bar) {
                    continue;
                }
                let t = &self.prepared[id as usize];
                let rise = |s: f64| rise_of(t, s);
                if limit.is_finite() {
                    // Most triangles are settled by the ends and the middle (see
                    // `three_point_bound`); the others by a scan and, rarely, a search.
                    // The contact at `u`, kept for the segments beside.
                    // Grid samples take the slot of their index (four in a row never share
                    // one), other points one by their bits.
                    let mut contact = |u: f64, sample: Option<usize>| {
                        let kept = &mut contacts[id as usize];
                        let slot = &mut kept[sample.unwrap_or((u.to_bits() >> 7) as usize) & 3];
                        if slot.0 != u {
                            *slot = (u, contact_at(t, u));
                        }
                        slot.1
                    };
                    if let Some(((before, after), _)) = outer
                        && t0 == 0.0
                        && t1 == 1.0
                        && lo <= before
                        && hi >= after
                    {
                        // Concave on its stretch, the contact lies right of `a` under the
                        // chord from the sample before extended, and left of `b` under the
                        // chord from the sample after extended.
                        let (fb, f0, f1, fa) = (
                            contact(before, sample(3)),
                            contact(a.0, sample(0)),
                            contact(b.0, sample(1)),
                            contact(after, sample(2)),
                        );
                        let seen = (f0 - za).max(f1 - zb);
                        if seen > limit {
                            return seen;
                        }
                        if fb.is_finite() && f0.is_finite() && f1.is_finite() && fa.is_finite() {
                            let from_before = (f0 - za, f0 + (f0 - fb) * len / (a.0 - before) - zb);
                            let from_after = (f1 + (f1 - fa) * len / (after - b.0) - za, f1 - zb);
                            let lines = [from_before, from_after, plane.unwrap_or(NO_LINE)];
                            if lower_envelope_peak(&lines) <= limit {
                                continue;
                            }
                        }
                    }
                    let mut end_rise = |s: f64| {
                        let (u, z) = at(s);
                        contact(u, sample(if s == 0.0 { 0 } else { 1 })) - z
                    };
                    // A stretch's end is where the cutter is just out of reach (the stretch
                    // is widened past it): the points are taken a little inside, and the
                    // bound is carried to the ends.
                    let inside = NUDGE * (t1 - t0);
                    let (x0, x1) = (
                        if t0 == 0.0 { 0.0 } else { t0 + inside },
                        if t1 == 1.0 { 1.0 } else { t1 - inside },
                    );
                    let f0 = if x0 == 0.0 { end_rise(0.0) } else { rise(x0) };
                    let f1 = if x1 == 1.0 { end_rise(1.0) } else { rise(x1) };
                    let xm = 0.5 * (x0 + x1);
                    let fm = rise(xm);
                    let seen = f0.max(fm).max(f1);
                    if seen > limit {
                        return seen;
                    }
                    if f0.is_finite()
                        && f1.is_finite()
                        && x0 < xm
                        && xm < x1
                        && three_point_bound([(x0, f0), (xm, fm), (x1, f1)], (t0, t1), plane)
                            <= limit
                    {
                        worst = worst.max(seen);
                        continue;
                    }
                    worst = worst.max(concave_max(t0, t1, limit, rise));
                    if worst > limit {
                        return worst;
                    }
                } else {
                    // The exact maximum: first a scan of every triangle, whose best raises
                    // the bar, and then a search only of those whose scan leaves room above
                    // it (at a wall's edge, one or two of a dozen).
                    let vals: [f64; SCAN + 1] =
                        std::array::from_fn(|k| rise(t0 + (t1 - t0) * k as f64 / SCAN as f64));
                    let best = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    worst = worst.max(best);
                    let bound = concave_bound(&vals);
                    if bound > best {
                        searches.push((id, t0, t1, bound));
                    }
                }
            }
        }
        for (id, t0, t1, bound) in searches {
            if bound <= worst {
                continue;
            }
            let t = &self.prepared[id as usize];
            worst = worst.max(concave_max(t0, t1, limit, |s| rise_of(t, s)));
        }
        worst
    }
}

/// An upper bound over `[lo, hi]` of a function concave there, from its values at three
/// points `x0 < xm < x1` within it, and where given a line above it (its values at `lo` and
/// `hi`): the rise of a triangle's contact above a move, under its plane's contact.
///
/// Left of `xm` the function is below the chord from `xm` to `x1` extended (concavity: `xm`
/// is above the chord from any point left of it to `x1`), and right of `xm` below the chord
/// from `x0` extended; on each side it is below the lower of that and the line, whose
/// maximum is at an end of the side or where the two cross.
fn three_point_bound(
    [(x0, f0), (xm, fm), (x1, f1)]: [(f64, f64); 3],
    (lo, hi): (f64, f64),
    line: Option<(f64, f64)>,
) -> f64 {
    let (left_line, right_line) = match line {
        Some((l0, l1)) if hi > lo => {
            let lm = l0 + (l1 - l0) * (xm - lo) / (hi - lo);
            ((l0, lm), (lm, l1))
        }
        _ => (NO_LINE, NO_LINE),
    };
    let left = fm + (fm - f1) * (xm - lo) / (x1 - xm);
    let right = fm + (fm - f0) * (hi - xm) / (xm - x0);
    lower_envelope_peak(&[(left, fm), left_line])
        .max(lower_envelope_peak(&[(fm, right), right_line]))
}

/// No line: what `lower_envelope_peak` never takes for the lowest.
const NO_LINE: (f64, f64) = (f64::INFINITY, f64::INFINITY);

/// The highest point of the lowest of some lines over an interval, each given by its values
/// at the two ends: at an end, or where two of them cross.
fn lower_envelope_peak(lines: &[(f64, f64)]) -> f64 {
    let lowest = |s: f64| {
        lines
            .iter()
            .filter(|(v0, v1)| v0.is_finite() && v1.is_finite())
            .map(|&(v0, v1)| v0 + s * (v1 - v0))
            .fold(f64::INFINITY, f64::min)
    };
    let mut peak = lowest(0.0).max(lowest(1.0));
    for (k, &(a0, a1)) in lines.iter().enumerate() {
        for &(b0, b1) in &lines[k + 1..] {
            let (d0, d1) = (a0 - b0, a1 - b1);
            if d0.is_finite() && d1.is_finite() && (d0 < 0.0) != (d1 < 0.0) {
                peak = peak.max(lowest(d0 / (d0 - d1)));
            }
        }
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geom::Point3;
    use crate::index::TriangleIndex;
    use crate::mesh::Mesh;
    use crate::models;

    /// A CAD part with integer coordinates (a 6 mm step and a rib exactly a 6 mm tool's
    /// width from it) beside a coarse terrain relief, whose creases a tool rolls over
    /// between samples.
    fn users_mesh() -> Mesh {
        let p = Point3::new;
        let mut tris = models::box_solid(p(0.0, 0.0, 0.0), p(30.0, 20.0, 4.0));
        tris.extend(models::box_solid(p(5.0, 2.0, 4.0), p(11.0, 18.0, 10.0)));
        tris.extend(models::box_solid(p(17.0, 2.0, 4.0), p(20.0, 18.0, 9.0)));
        tris.extend(models::height_field_solid(
            (32.0, 62.0),
            (0.0, 20.0),
            15,
            10,
            0.0,
            models::terrain_height,
        ));
        Mesh::from_triangles(tris, "users").unwrap()
    }

    /// Deterministic numbers in [0, 1).
    fn unit(k: u64) -> f64 {
        (k as f64 * 0.618_033_988_749_894_8 + 0.123).fract()
    }

    /// The line's answer is `max_rise_along`'s for the same move: the same exact rise
    /// without a limit (to rounding), and the same side of every limit, for moves along
    /// lines in X and Y, of every cutter shape, from a hundredth of a millimetre to 2 mm,
    /// near the profile, through walls and over creases, for limits above rounding; and with
    /// the samples either side.
    #[test]
    fn a_line_answers_as_the_exact_swept_check_does() {
        let mesh = users_mesh();
        let index = TriangleIndex::new(&mesh);
        let cutters = ["ball:3", "flat:6", "bull:6:1", "vbit:6:90", "ball:1"];
        let (mut compared, mut cutting) = (0, 0);
        for (c, name) in cutters.iter().enumerate() {
            let cutter: Cutter = name.parse().unwrap();
            let dc = DropCutter::new(&mesh, &index, cutter, -1.0);
            for (l, axis) in [Axis::X, Axis::Y].into_iter().enumerate() {
                for line in 0..6 {
                    let k0 = (c * 1000 + l * 100 + line * 10) as u64;
                    let across = match axis {
                        Axis::X => 1.0 + 3.0 * line as f64 + unit(k0),
                        Axis::Y => 2.0 + 10.0 * line as f64 + unit(k0),
                    };
                    let along = match axis {
                        Axis::X => (-4.0, 66.0),
                        Axis::Y => (-4.0, 24.0),
                    };
                    let rise = dc.line_rise(axis, across, along);
                    let point = |u: f64, z: f64| match axis {
                        Axis::X => Point3::new(u, across, z),
                        Axis::Y => Point3::new(across, u, z),
                    };
                    let drop = |u: f64| {
                        let p = point(u, 0.0);
                        dc.at(p.x, p.y)
                    };
                    for m in 0..60 {
                        let k = k0 * 100 + m;
                        let len = [0.01, 0.1, 0.3, 0.5, 2.0][m as usize % 5];
                        let u0 = along.0 + 1.0 + (along.1 - along.0 - 3.0) * unit(k);
                        let u1 = u0 + len;
                        // Ends on the profile, or a few microns either side of it.
                        let off = |j: u64| [0.0, 0.002, -0.002, 0.0][(k + j) as usize % 4];
                        let a = (u0, drop(u0) + off(1));
                        let b = (u1, drop(u1) + off(2));
                        let exact =
                            dc.max_rise_along(point(a.0, a.1), point(b.0, b.1), f64::INFINITY);
                        let here = rise.max_rise(a, b, f64::INFINITY);
                        assert!(
                            (here - exact).abs() <= 1e-9 || here == exact,
                            "{name} {axis:?} {across}: {a:?} {b:?}: {here} vs {exact}"
                        );
                        for limit in [1e-7, 5e-4, 0.01] {
                            let side = rise.max_rise(a, b, limit) > limit;
                            assert_eq!(side, exact > limit, "{name} {a:?} {b:?} {limit}");
                            let outer = (u0 - len, u1 + len);
                            let side = rise
                                .max_rise_between_samples(a, b, outer, m as usize, limit)
                                > limit;
                            assert_eq!(
                                side,
                                exact > limit,
                                "{name} {a:?} {b:?} {limit} samples: {exact}"
                            );
                        }
                        compared += 1;
                        if exact > 5e-4 {
                            cutting += 1;
                        }
                    }
                }
            }
        }
        // Both sides were met often.
        assert!(
            cutting > compared / 10 && cutting < compared * 9 / 10,
            "{cutting} of {compared}"
        );
    }

    /// The bounds that settle most triangles are bounds: never below the largest value of a
    /// concave function (caps, tents and lines, steep and flat), under a line above it.
    #[test]
    fn the_three_point_bound_is_never_below_a_concave_maximum() {
        for i in 0..2000u64 {
            let peak = -0.2 + 1.4 * unit(i);
            let top = unit(i + 7) - 0.5;
            let steep = 0.01 + 50.0 * unit(i + 13);
            let f = |x: f64| match i % 3 {
                0 => top - steep * (x - peak).abs(),
                1 => top - steep * (x - peak) * (x - peak),
                _ => top + steep * (x - peak) * (unit(i + 3) - 0.5),
            };
            let (lo, hi) = (0.0, 1.0);
            let x0 = [0.0, 0.001, 0.2][i as usize % 3];
            let x1 = [1.0, 0.999, 0.7][(i / 3) as usize % 3];
            let xm = 0.5 * (x0 + x1);
            // A line above f: its tangent at some point, raised a little.
            let at = unit(i + 21);
            let slope = (f(at + 1e-6) - f(at - 1e-6)) / 2e-6;
            let lift = 0.01 * unit(i + 5);
            let line = (f(at) - slope * at + lift, f(at) + slope * (1.0 - at) + lift);
            let truth = (0..=1000)
                .map(|k| f(k as f64 / 1000.0))
                .fold(f64::MIN, f64::max);
            for line in [None, Some(line)] {
                let bound =
                    three_point_bound([(x0, f(x0)), (xm, f(xm)), (x1, f(x1))], (lo, hi), line);
                assert!(bound >= truth - 1e-9, "{i}: {bound} < {truth} ({line:?})");
            }
        }
    }
}
