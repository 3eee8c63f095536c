//! Drop-cutter: the highest tip height at which the cutter touches the mesh (ARCHITECTURE.md §3.2).
//!
//! A raster line is computed as a sweep: one index query for the band of triangles the line's
//! cutter can reach, each prepared once (edges oriented, plane contact precomputed for this
//! cutter), sorted by where they enter the sweep; every point then tests only the triangles
//! whose boxes are under its footprint, skipping those whose highest point cannot beat the
//! best height found so far. The result is a maximum over triangles, so it is bit-identical
//! whatever order triangles are visited in.

use crate::cutter::{Cutter, Shape};
use crate::geom::{Rect, Triangle, gap, max, min};
use crate::index::{TriangleIndex, down as down32, up as up32};
use crate::mesh::Mesh;
use crate::with_shape;

/// Which axis a raster line runs along.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Axis {
    X,
    Y,
}

/// A straight edge in the line's (u, v) frame, ready for contact tests.
#[derive(Clone, Copy, Debug, Default)]
struct Edge {
    u0: f64,
    v0: f64,
    z0: f64,
    z1: f64,
    /// Unit horizontal direction.
    du: f64,
    dv: f64,
    /// Horizontal length; 0 for a vertical edge, which is skipped (its end points belong
    /// to the triangle's other edges).
    len: f64,
    /// Slope: dz per unit of horizontal length.
    m: f64,
    /// The cutter shape's per-edge constant (see `Shape::edge_constant`).
    c: f64,
    /// Highest end.
    zhi: f64,
}

/// A triangle prepared for one cutter, in the frame (u along the line, v across it).
/// `repr(C)` keeps the fields a test reads first (the plane bound) on the first cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct Prepared {
    /// The plane contact height with the axis at the origin, and its gradient: the plane
    /// contact bounds the triangle's from above (the plane over the whole footprint holds the
    /// triangle's part of it). `None` where the slope is too steep for that to be accurate.
    pub(crate) plane: Option<(f64, f64, f64)>,
    /// Offset from the axis to the plane contact point, and the profile height there.
    ou: f64,
    ov: f64,
    oh: f64,
    /// False for (near-)vertical triangles, which only edges can touch.
    has_facet: bool,
    /// z of the vertex opposite edge i, for barycentric interpolation.
    zopp: [f64; 3],
    /// Edges counter-clockwise in (u, v), edge i from vertex i to vertex i + 1.
    e: [Edge; 3],
    pub(crate) umin: f64,
    pub(crate) umax: f64,
    pub(crate) vmin: f64,
    pub(crate) vmax: f64,
    pub(crate) zmax: f64,
}

/// Below this |nz| a triangle counts as vertical for the facet test; its edges still count.
const VERTICAL_NZ: f64 = 1e-9;

/// How much further than the radius, relatively, the pruning (index boxes, band and grid
/// cells, bounding boxes) reaches. `touch` alone decides contact, closed at exactly R; its
/// distances are rounded differently from the boxes', so the pruning keeps this margin,
/// far above any rounding, and never drops a triangle that `touch` would find in reach.
const REACH_MARGIN: f64 = 1e-9;

/// Squared distances within this fraction of R² count as near R in `touch`, where a vertex's
/// distance and profile height come from its own coordinates: far above the rounding of the
/// rotated distances, so every vertex whose rounding could matter is treated so.
const NEAR_R: f64 = 1e-9;

/// The XY box within `r` of lines along `axis` with the along coordinate in `along` and the
/// across coordinate in `across`.
pub(crate) fn reach_rect(axis: Axis, along: (f64, f64), across: (f64, f64), r: f64) -> Rect {
    let (u, v) = ((along.0 - r, along.1 + r), (across.0 - r, across.1 + r));
    match axis {
        Axis::X => Rect::new(u.0, u.1, v.0, v.1),
        Axis::Y => Rect::new(v.0, v.1, u.0, u.1),
    }
}

/// The radius the pruning works with (see `REACH_MARGIN`).
pub(crate) fn reach(r: f64) -> f64 {
    r * (1.0 + REACH_MARGIN)
}

pub(crate) fn prepare<S: Shape>(shape: &S, t: &Triangle, swap: bool) -> Prepared {
    let uvz = |i: usize| {
        let p = t.v[i];
        if swap {
            (p.y, p.x, p.z)
        } else {
            (p.x, p.y, p.z)
        }
    };
    let mut p = [uvz(0), uvz(1), uvz(2)];
    let area2 = (p[1].0 - p[0].0) * (p[2].1 - p[0].1) - (p[1].1 - p[0].1) * (p[2].0 - p[0].0);
    if area2 < 0.0 {
        p.swap(1, 2);
    }
    let mut e = [Edge::default(); 3];
    for (i, edge) in e.iter_mut().enumerate() {
        let (a, b) = (p[i], p[(i + 1) % 3]);
        let (du, dv) = (b.0 - a.0, b.1 - a.1);
        let len = (du * du + dv * dv).sqrt();
        *edge = if len > 0.0 {
            Edge {
                u0: a.0,
                v0: a.1,
                z0: a.2,
                z1: b.2,
                du: du / len,
                dv: dv / len,
                len,
                m: (b.2 - a.2) / len,
                c: shape.edge_constant((b.2 - a.2) / len),
                zhi: a.2.max(b.2),
            }
        } else {
            Edge {
                u0: a.0,
                v0: a.1,
                z0: a.2,
                z1: b.2,
                ..Edge::default()
            }
        };
    }
    // Upward unit normal in the (u, v, z) frame; swapping u and v mirrors, which the
    // counter-clockwise re-ordering above already accounts for.
    let (ax, ay, az) = (p[1].0 - p[0].0, p[1].1 - p[0].1, p[1].2 - p[0].2);
    let (bx, by, bz) = (p[2].0 - p[0].0, p[2].1 - p[0].1, p[2].2 - p[0].2);
    let (mut nx, mut ny, mut nz) = (ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx);
    let nl = (nx * nx + ny * ny + nz * nz).sqrt();
    let mut has_facet = false;
    let mut plane = None;
    let (mut ou, mut ov, mut oh) = (0.0, 0.0, 0.0);
    if nl > 0.0 {
        nx /= nl;
        ny /= nl;
        nz /= nl;
        if nz < 0.0 {
            (nx, ny, nz) = (-nx, -ny, -nz);
        }
        if nz > VERTICAL_NZ && e.iter().all(|e| e.len > 0.0) {
            has_facet = true;
            (ou, ov, oh) = shape.plane_contact(nx, ny, nz);
            let (gu, gv) = (-nx / nz, -ny / nz);
            if gu.abs() + gv.abs() <= 1e3 {
                // z at the contact point for the axis at (cu, cv):
                // p0.z + gu·(cu + ou - p0.u) + gv·(cv + ov - p0.v), minus the profile height.
                let c0 = p[0].2 + gu * (ou - p[0].0) + gv * (ov - p[0].1) - oh;
                plane = Some((c0, gu, gv));
            }
        }
    }
    Prepared {
        umin: p[0].0.min(p[1].0).min(p[2].0),
        umax: p[0].0.max(p[1].0).max(p[2].0),
        vmin: p[0].1.min(p[1].1).min(p[2].1),
        vmax: p[0].1.max(p[1].1).max(p[2].1),
        zmax: p[0].2.max(p[1].2).max(p[2].2),
        has_facet,
        ou,
        ov,
        oh,
        e,
        zopp: [p[2].2, p[0].2, p[1].2],
        plane,
    }
}

/// The contact height with a triangle's `plane` (`Prepared::plane`) for the axis at (cu, cv),
/// rounded up by a margin far above the rounding error of the sum: no contact with the
/// triangle itself is higher (see `contact_height`). `None` where the plane is too steep for
/// that bound to be accurate.
#[inline(always)]
pub(crate) fn plane_bound(plane: Option<(f64, f64, f64)>, cu: f64, cv: f64) -> Option<f64> {
    plane.map(|(c0, gu, gv)| {
        let (a, b) = (gu * cu, gv * cv);
        c0 + a + b + 1e-12 * (1.0 + c0.abs() + a.abs() + b.abs())
    })
}

/// The offset from the end of edge `i` (the next edge's start) to the axis at (cu, cv).
#[inline(always)]
fn end_offset(t: &Prepared, i: usize, cu: f64, cv: f64) -> (f64, f64) {
    let n = &t.e[if i == 2 { 0 } else { i + 1 }];
    (cu - n.u0, cv - n.v0)
}

/// Highest tip z at which the cutter with its axis at (cu, cv) touches triangle `t`,
/// or -inf if it cannot touch it.
#[inline(always)]
pub(crate) fn touch<S: Shape>(
    shape: &S,
    r2: f64,
    t: &Prepared,
    cu: f64,
    cv: f64,
    beat: f64,
) -> f64 {
    // The tip is the cutter's lowest point and the contact is on the triangle, so the tip
    // never stands above the triangle's top. Rounding can put a computed contact an ulp
    // above it (a facet at z = 10 gives 10.000000000000002); capping it keeps every height
    // within the bound the scans prune by (`zmax`), so whether a point stands above a
    // level exactly at a flat face's height does not depend on the order triangles are met
    // in, which differs between chunks' bands.
    contact_height(shape, r2, t, cu, cv, beat).min(t.zmax)
}

/// The tip height at which the cutter touches triangle `t` (see [`touch`]).
#[inline(always)]
fn contact_height<S: Shape>(shape: &S, r2: f64, t: &Prepared, cu: f64, cv: f64, beat: f64) -> f64 {
    // The plane's contact bounds the triangle's from above (the triangle lies in its plane):
    // most triangles tested are dismissed here, before anything else of them is read.
    if plane_bound(t.plane, cu, cv).is_some_and(|p| p <= beat) {
        return f64::NEG_INFINITY;
    }
    if t.has_facet {
        let (pu, pv) = (cu + t.ou, cv + t.ov);
        let side = |e: &Edge| e.du * (pv - e.v0) - e.dv * (pu - e.u0);
        let d = [side(&t.e[0]), side(&t.e[1]), side(&t.e[2])];
        if d[0] >= 0.0 && d[1] >= 0.0 && d[2] >= 0.0 {
            // The plane's contact point lies on the facet: nothing else on this triangle is
            // higher, because the plane contact is the maximum over the whole footprint.
            let wsum = d[0] * t.e[0].len + d[1] * t.e[1].len + d[2] * t.e[2].len;
            if wsum > 0.0 {
                let z = (d[0] * t.e[0].len * t.zopp[0]
                    + d[1] * t.e[1].len * t.zopp[1]
                    + d[2] * t.e[2].len * t.zopp[2])
                    / wsum;
                return z - t.oh;
            }
        }
    }
    let mut best = f64::NEG_INFINITY;
    // Squared distances between these are near R: there a vertex's distance and height are
    // taken from its own coordinates (see below).
    let (near_lo, near_hi) = (r2 * (1.0 - NEAR_R), r2 * (1.0 + NEAR_R));
    for (i, e) in t.e.iter().enumerate() {
        if e.len == 0.0 {
            continue;
        }
        let (ru, rv) = (cu - e.u0, cv - e.v0);
        let d = e.du * rv - e.dv * ru;
        let d2 = d * d;
        let w0 = ru * e.du + rv * e.dv;
        // Nothing on this edge is higher than its top end, and nothing on it is closer to the
        // axis than the segment: d across its line, and `past` beyond its nearer end.
        let past = gap(0.0, -w0, e.len - w0);
        let mut rho2 = d2 + past * past;
        let mut near_end = false;
        if rho2 >= near_lo {
            if rho2 > near_hi {
                // Beyond R, by far more than any rounding.
                continue;
            }
            if past > 0.0 {
                // The nearest point is an end, near R: whether it is in reach, and the
                // profile's height under it, come from its distance from its own coordinates
                // (the end is the next edge's start), not the rotated d and w0, so that a
                // vertex exactly R away is exactly R away whichever edge leads to it, and the
                // ball's steep profile near R does not magnify the rotation's rounding.
                near_end = true;
                let (qu, qv) = if w0 < 0.0 {
                    (ru, rv)
                } else {
                    end_offset(t, i, cu, cv)
                };
                rho2 = qu * qu + qv * qv;
            }
            // The cutter is a closed solid: at exactly R it touches (ARCHITECTURE.md §3.2).
            if rho2 > r2 {
                continue;
            }
        }
        if e.zhi - shape.height_lower_bound(rho2) <= beat {
            continue;
        }
        let s2 = max(r2 - d2, 0.0);
        let s = s2.sqrt();
        let mut lo = max(-w0, -s);
        let mut hi = min(e.len - w0, s);
        if lo > hi {
            if !near_end {
                continue;
            }
            // The end is in reach but `s`, rounded, falls short of it: it touches there.
            let w = if w0 < 0.0 { -w0 } else { e.len - w0 };
            (lo, hi) = (w, w);
        }
        let (w, mut h) = shape.edge_contact(e.m, e.c, d2, s2, lo, hi);
        let along = w0 + w;
        let z = if along <= 0.0 {
            e.z0
        } else if along >= e.len {
            e.z1
        } else {
            e.z0 + e.m * along
        };
        if near_end
            && (if w0 < 0.0 {
                along <= 0.0
            } else {
                along >= e.len
            })
        {
            // The contact is that end.
            h = shape.height_sq(rho2);
        }
        let tip = z - h;
        best = max(best, tip);
    }
    best
}

/// Drop-cutter queries against one mesh with one cutter.
#[derive(Debug, Clone, Copy)]
pub struct DropCutter<'a> {
    mesh: &'a Mesh,
    index: &'a TriangleIndex,
    /// The shape the contact math uses: the tool itself, or the tool grown by the material
    /// allowance (see [`with_allowance`](Self::with_allowance)).
    cutter: Cutter,
    /// The floor in contact terms (`floor - lift`).
    floor: f64,
    /// Added to every contact height to give the real tool's tip height: the allowance.
    lift: f64,
}

impl<'a> DropCutter<'a> {
    /// `floor`: the lowest tip height returned (stock bottom).
    pub fn new(mesh: &'a Mesh, index: &'a TriangleIndex, cutter: Cutter, floor: f64) -> Self {
        Self {
            mesh,
            index,
            cutter,
            floor,
            lift: 0.0,
        }
    }

    /// Drop-cutter that leaves `allowance` mm of material on the surface, exactly: the tool
    /// keeps at least `allowance` from the mesh exactly when the tool grown by a ball of that
    /// radius (its Minkowski sum, see [`Cutter::grown`]) does not cut the mesh, and the grown
    /// tool's tip sits `allowance` below the real one.
    pub fn with_allowance(
        mesh: &'a Mesh,
        index: &'a TriangleIndex,
        tool: Cutter,
        floor: f64,
        allowance: f64,
    ) -> Result<Self, crate::cutter::CutterError> {
        Ok(Self {
            mesh,
            index,
            cutter: tool.grown(allowance)?,
            floor: floor - allowance,
            lift: allowance,
        })
    }

    /// The shape the contact math uses (the tool grown by the allowance, if any).
    pub fn cutter(&self) -> Cutter {
        self.cutter
    }

    pub fn floor(&self) -> f64 {
        self.floor + self.lift
    }

    /// The material allowance this drop-cutter leaves.
    pub fn allowance(&self) -> f64 {
        self.lift
    }

    pub(crate) fn mesh(&self) -> &Mesh {
        self.mesh
    }

    pub(crate) fn index(&self) -> &TriangleIndex {
        self.index
    }

    /// Tip height with the axis at (x, y).
    pub fn at(&self, x: f64, y: f64) -> f64 {
        with_shape!(self.cutter.profile(), p => self.at_impl(&p, x, y)) + self.lift
    }

    /// Whether the tool with its axis at (u, v) in `band`'s frame and its tip at `z` would cut
    /// into the mesh (leave less than the allowance), that is drop height > `z`. Returns the
    /// band triangle that proves it; `hint` is tried first. Stops at the first such triangle,
    /// so it is much cheaper than a drop where the answer is yes.
    pub(crate) fn band_exceeds(
        &self,
        band: &Band,
        u: f64,
        v: f64,
        z: f64,
        hint: Option<u32>,
    ) -> Option<u32> {
        with_shape!(self.cutter.profile(), p => self.band_exceeds_impl(&p, band, u, v, z - self.lift, hint))
    }

    /// Tip height at (u, v) against one band triangle only (-inf if out of reach). Along a
    /// straight line it is concave where finite, so `{height > z}` is one interval.
    pub(crate) fn band_touch(&self, band: &Band, id: u32, u: f64, v: f64) -> f64 {
        with_shape!(self.cutter.profile(), p => {
            let r = p.radius();
            touch(&p, r * r, &band.prepared[id as usize], u, v, f64::NEG_INFINITY)
        }) + self.lift
    }

    fn band_exceeds_impl<S: Shape>(
        &self,
        shape: &S,
        band: &Band,
        u: f64,
        v: f64,
        z: f64,
        hint: Option<u32>,
    ) -> Option<u32> {
        let r = shape.radius();
        let r2 = r * r;
        if let Some(h) = hint
            && touch(shape, r2, &band.prepared[h as usize], u, v, z) > z
        {
            return Some(h);
        }
        let rows = ReachRows::new(&band.grid, v, r);
        let mut found = None;
        band.scan(shape, rows.as_slice(), u, v, u32::MAX, z, |t, id, z| {
            if touch(shape, r2, t, u, v, z) > z {
                found = Some(id);
                None
            } else {
                Some(z)
            }
        });
        found
    }

    /// One point: candidates from the index, highest first, each prepared only if its top
    /// can still beat the best height so far. Cheaper than a band for isolated queries.
    fn at_impl<S: Shape>(&self, shape: &S, x: f64, y: f64) -> f64 {
        let r = shape.radius();
        let r2 = r * r;
        let far = reach(r);
        let far2 = far * far;
        let tris = self.mesh.triangles();
        let mut cand: Vec<(f64, u32)> = Vec::new();
        self.index.query(
            &Rect::new(x - far, x + far, y - far, y + far),
            self.floor,
            |id| {
                cand.push((tris[id as usize].zmax(), id));
            },
        );
        cand.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut best = self.floor;
        for &(zmax, id) in &cand {
            if zmax <= best {
                break;
            }
            let t = &tris[id as usize];
            let (x0, x1) = min_max(t.v[0].x, t.v[1].x, t.v[2].x);
            let (y0, y1) = min_max(t.v[0].y, t.v[1].y, t.v[2].y);
            let dx = gap(x, x0, x1);
            let dy = gap(y, y0, y1);
            let rho2 = dx * dx + dy * dy;
            if rho2 > far2 || zmax - shape.height_lower_bound(rho2) <= best {
                continue;
            }
            let z = touch(shape, r2, &prepare(shape, t, false), x, y, best);
            best = best.max(z);
        }
        best
    }

    /// Tip heights along a raster line: `out[i]` at `origin + (first + i)·spacing` along
    /// `axis`, with the other coordinate fixed at `across`. Positions are computed exactly so,
    /// so a line computed in pieces gives the same bits as in one go.
    pub fn line(
        &self,
        axis: Axis,
        across: f64,
        origin: f64,
        spacing: f64,
        first: usize,
        out: &mut [f64],
    ) {
        if out.is_empty() {
            return;
        }
        let (u0, u1) = (
            origin + first as f64 * spacing,
            origin + (first + out.len() - 1) as f64 * spacing,
        );
        let band = self.band(axis, (across, across), (u0, u1));
        self.sweep(&band, across, origin, spacing, first, out);
    }

    /// Prepares every triangle the cutter can reach from lines along `axis` with the across
    /// coordinate in `across` and the along coordinate in `along`. Lines that share a band
    /// share this work: each triangle is prepared once per band, not once per line.
    pub fn band(&self, axis: Axis, across: (f64, f64), along: (f64, f64)) -> Band {
        with_shape!(self.cutter.profile(), p => self.band_impl(&p, axis, across, along))
    }

    fn band_impl<S: Shape>(
        &self,
        shape: &S,
        axis: Axis,
        (v0, v1): (f64, f64),
        (u0, u1): (f64, f64),
    ) -> Band {
        let r = reach(shape.radius());
        let swap = axis == Axis::Y;
        let rect = reach_rect(axis, (u0, u1), (v0, v1), r);
        let tris = self.mesh.triangles();
        let mut prepared: Vec<Prepared> = Vec::new();
        self.index.query(&rect, self.floor, |id| {
            let t = prepare(shape, &tris[id as usize], swap);
            if t.vmin <= v1 + r && t.vmax >= v0 - r && t.umax >= u0 - r && t.umin <= u1 + r {
                prepared.push(t);
            }
        });
        // Highest first, ties by position, so the grid's lists come out sorted and the whole
        // band is independent of the index's visiting order.
        // The sort keys side by side: sorting them is several times faster than sorting ids
        // that point into the (much larger) prepared triangles.
        let mut order: Vec<(f64, f64, f64, u32)> = prepared
            .iter()
            .zip(0..)
            .map(|(t, id)| (t.zmax, t.umin, t.vmin, id))
            .collect();
        order.sort_unstable_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        let radius = shape.radius();
        let grid = Grid2::new(
            radius,
            (u0 - radius, u1 + radius),
            (v0 - radius, v1 + radius),
            prepared.len(),
        );
        // A triangle goes in the cells its box grown by twice the pruning's margin overlaps:
        // one in reach (its box at most `reach(R)` away) then has a cell less than R away,
        // which the scan's strict cell tests keep (see `Band::scan`).
        let grow = 2.0 * (r - radius);
        let entries: Vec<Entry> = order
            .iter()
            .map(|&(_, _, _, id)| {
                let t = &prepared[id as usize];
                let (umin, umax, vmin, vmax) =
                    (down32(t.umin), up32(t.umax), down32(t.vmin), up32(t.vmax));
                Entry {
                    zmax: t.zmax,
                    umin,
                    umax,
                    vmin,
                    vmax,
                    id,
                    k: [
                        grid.col(down32(t.umin - grow)),
                        grid.col(up32(t.umax + grow)),
                    ],
                    j: [
                        grid.row(down32(t.vmin - grow)),
                        grid.row(up32(t.vmax + grow)),
                    ],
                }
            })
            .collect();
        let ncells = grid.cols * grid.rows;
        let mut start = vec![0u32; ncells + 1];
        for e in &entries {
            for j in e.j[0]..=e.j[1] {
                for k in e.k[0]..=e.k[1] {
                    start[grid.cell(k, j) + 1] += 1;
                }
            }
        }
        for c in 0..ncells {
            start[c + 1] += start[c];
        }
        let mut fill = start.clone();
        let mut cells = vec![Entry::default(); start[ncells] as usize];
        for e in &entries {
            for j in e.j[0]..=e.j[1] {
                for k in e.k[0]..=e.k[1] {
                    let c = grid.cell(k, j);
                    cells[fill[c] as usize] = *e;
                    fill[c] += 1;
                }
            }
        }
        Band {
            cutter: self.cutter,
            axis,
            prepared,
            grid,
            start,
            cells,
        }
    }

    /// Tip heights along one line of a band (see [`line`](Self::line) for the positions).
    pub fn sweep(
        &self,
        band: &Band,
        across: f64,
        origin: f64,
        spacing: f64,
        first: usize,
        out: &mut [f64],
    ) {
        debug_assert_eq!(band.cutter, self.cutter, "band prepared for another cutter");
        with_shape!(self.cutter.profile(), p => self.sweep_impl(&p, band, across, origin, spacing, first, out, |best| best));
        for z in out {
            *z += self.lift;
        }
    }

    /// Like [`sweep`](Self::sweep), but only which of `levels` the tip height is above:
    /// `out[i]` is the lowest level the tip does not rise above (+inf above them all), so
    /// for every level `z`, `out[i] > z` exactly when the tip height is above `z`. That is
    /// all contour tracing needs to know of a grid point, and it is much cheaper: once the
    /// tool is known to stand above a level, a triangle counts only if it could lift the
    /// tool past the next level up, so the scan drops most triangles on their stored top
    /// alone. The answer is a pure function of the point (unlike the height the scan stops
    /// at, which depends on the order triangles are met), so neighbouring chunks agree on
    /// the grid rows they share. `levels` must be sorted ascending.
    #[allow(clippy::too_many_arguments)]
    pub fn sweep_classes(
        &self,
        band: &Band,
        across: f64,
        origin: f64,
        spacing: f64,
        first: usize,
        out: &mut [f64],
        levels: &[f64],
    ) {
        debug_assert_eq!(band.cutter, self.cutter, "band prepared for another cutter");
        debug_assert!(levels.is_sorted(), "levels must be ascending");
        // The scan works on heights without the allowance's lift.
        let lift = self.lift;
        // Tip above level `z` means a scan height above `z - lift`: how many levels `best`
        // is above.
        let above = |best: f64| levels.partition_point(|&z| z - lift < best);
        // The lowest level at or above `best`: a triangle that cannot lift the tool above it
        // cannot change which levels the tool is above. Past the top level nothing can.
        let need = |best: f64| levels.get(above(best)).map_or(f64::INFINITY, |&z| z - lift);
        with_shape!(self.cutter.profile(), p => self.sweep_impl(&p, band, across, origin, spacing, first, out, need));
        for z in out {
            *z = levels.get(above(*z)).copied().unwrap_or(f64::INFINITY);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sweep_impl<S: Shape>(
        &self,
        shape: &S,
        band: &Band,
        v: f64,
        origin: f64,
        spacing: f64,
        first: usize,
        out: &mut [f64],
        threshold: impl Fn(f64) -> f64,
    ) {
        let r = shape.radius();
        let r2 = r * r;
        let far = reach(r);
        let rows = ReachRows::new(&band.grid, v, r);
        let mut hint: Option<u32> = None;
        for (i, slot) in out.iter_mut().enumerate() {
            let u = origin + (first + i) as f64 * spacing;
            let mut best = self.floor;
            let mut best_id = None;
            // Triangles that cannot lift the tool above `bar` are skipped: `bar` is `best`
            // for exact heights (see `threshold`).
            let mut bar = threshold(best);
            if let Some(h) = hint {
                let t = &band.prepared[h as usize];
                if t.umax >= u - far && t.umin <= u + far {
                    let z = touch(shape, r2, t, u, v, bar);
                    if z > best {
                        best = z;
                        best_id = Some(h);
                        bar = threshold(best);
                    }
                }
            }
            let skip = hint.unwrap_or(u32::MAX);
            band.scan(shape, rows.as_slice(), u, v, skip, bar, |t, id, bar| {
                let z = touch(shape, r2, t, u, v, bar);
                if z > best {
                    best = z;
                    best_id = Some(id);
                    Some(threshold(best))
                } else {
                    Some(bar)
                }
            });
            hint = best_id.or(hint);
            *slot = best;
        }
    }
}

/// Mean triangles per half-radius cell above which the grid uses quarter-radius cells.
const DENSE_CELL: f64 = 16.0;

/// A uniform grid over a band, in the line frame, cells a half or a quarter of the cutter
/// radius (see [`Grid2::new`]).
#[derive(Debug, Clone)]
struct Grid2 {
    u0: f64,
    v0: f64,
    width: f64,
    cols: usize,
    rows: usize,
}

impl Grid2 {
    /// A grid for `triangles` triangles over the band. Cells are half the cutter radius, or a
    /// quarter where triangles are dense: a point's scan stops early in a cell by the cell's
    /// distance from the axis, and with many small triangles per cell that distance is too
    /// coarse to stop soon (on a 1M-triangle surface, a quarter-radius grid scans a tenth
    /// less). Sparse meshes keep the wider cells, whose fewer visits cost less.
    fn new(r: f64, (u0, u1): (f64, f64), (v0, v1): (f64, f64), triangles: usize) -> Self {
        let cells = |w: f64| ((u1 - u0) / w + 1.0) * ((v1 - v0) / w + 1.0);
        let mut width = r / 2.0;
        if triangles as f64 > DENSE_CELL * cells(width) {
            width = r / 4.0;
        }
        // Keep the cell count bounded for huge bands (a tiny tool on a big part).
        while cells(width) > 4e6 {
            width *= 2.0;
        }
        Self {
            u0,
            v0,
            width,
            cols: ((u1 - u0) / width) as usize + 1,
            rows: ((v1 - v0) / width) as usize + 1,
        }
    }
    fn col(&self, u: f32) -> u32 {
        ((f64::from(u) - self.u0) / self.width).clamp(0.0, (self.cols - 1) as f64) as u32
    }
    fn row(&self, v: f32) -> u32 {
        ((f64::from(v) - self.v0) / self.width).clamp(0.0, (self.rows - 1) as f64) as u32
    }
    /// The u range a column covers; the edge columns reach to infinity, since `col` clamps.
    fn col_span(&self, k: u32) -> (f64, f64) {
        self.span(self.u0, k, self.cols)
    }
    /// The v range a row covers, as [`col_span`](Self::col_span).
    fn row_span(&self, j: u32) -> (f64, f64) {
        self.span(self.v0, j, self.rows)
    }
    /// The range cell `k` of `n` from `origin` covers, the first and last reaching to infinity.
    #[inline]
    fn span(&self, origin: f64, k: u32, n: usize) -> (f64, f64) {
        let a = if k == 0 {
            f64::NEG_INFINITY
        } else {
            origin + k as f64 * self.width
        };
        let b = if k as usize + 1 == n {
            f64::INFINITY
        } else {
            origin + (k + 1) as f64 * self.width
        };
        (a, b)
    }
    fn cell(&self, k: u32, j: u32) -> usize {
        j as usize * self.cols + k as usize
    }
}

/// A triangle in a grid cell: everything the scan reads, 40 bytes. The f32 box is rounded
/// outward, so pruning with it never drops a triangle that counts.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    zmax: f64,
    umin: f32,
    umax: f32,
    vmin: f32,
    vmax: f32,
    /// Index in the band's prepared triangles.
    id: u32,
    /// First and last column and row of cells the box overlaps.
    k: [u32; 2],
    j: [u32; 2],
}

fn min_max(a: f64, b: f64, c: f64) -> (f64, f64) {
    (a.min(b).min(c), a.max(b).max(c))
}

/// Triangles prepared for one cutter over a band of raster lines; see [`DropCutter::band`].
#[derive(Debug, Clone)]
pub struct Band {
    cutter: Cutter,
    axis: Axis,
    prepared: Vec<Prepared>,
    grid: Grid2,
    /// Cell `c` lists `cells[start[c]..start[c + 1]]`, highest top first.
    start: Vec<u32>,
    cells: Vec<Entry>,
}

impl Band {
    pub fn axis(&self) -> Axis {
        self.axis
    }

    pub fn len(&self) -> usize {
        self.prepared.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prepared.is_empty()
    }

    /// Calls `judge(triangle, id, bar)` for every triangle of the band that could lift the
    /// tool with its axis at (u, v) above `bar`, except `skip`, in cells nearest the axis
    /// first. `judge` returns the bar from then on (it only rises), or `None` to stop.
    ///
    /// Each triangle is judged only in its cell nearest the axis, and a cell's list (highest
    /// top first) is left at the first triangle whose top, less the profile's rise over the
    /// cell's distance from the axis, cannot beat the bar. `rows` are the grid rows within
    /// reach of the line through (u, v) with their distance across it ([`ReachRows`]).
    /// Cells and rows exactly R away are skipped: every triangle in reach, even at exactly R,
    /// is also listed in a nearer cell (see [`DropCutter::band`]); triangles are then tested
    /// on their own boxes, out to `reach(R)`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn scan<S: Shape>(
        &self,
        shape: &S,
        rows: &[(u32, f64)],
        u: f64,
        v: f64,
        skip: u32,
        mut bar: f64,
        mut judge: impl FnMut(&Prepared, u32, f64) -> Option<f64>,
    ) {
        let r = shape.radius();
        let r2 = r * r;
        let far = reach(r);
        let far2 = far * far;
        let g = &self.grid;
        let (kc, jc) = (g.col(u as f32), g.row(v as f32));
        let (k0, k1) = (g.col(down32(u - r)), g.col(up32(u + r)));
        // Columns centre-out.
        let span = (kc - k0).max(k1 - kc);
        for &(j, gap_v) in rows {
            for step in 0..=span {
                let pair = if step == 0 {
                    [kc, u32::MAX]
                } else {
                    [kc.wrapping_sub(step), kc.saturating_add(step)]
                };
                for k in pair {
                    if k < k0 || k > k1 {
                        continue;
                    }
                    let c = g.cell(k, j);
                    let list = &self.cells[self.start[c] as usize..self.start[c + 1] as usize];
                    // An empty list, or one whose highest triangle is no higher than the bar,
                    // has nothing to offer.
                    match list.first() {
                        Some(e) if e.zmax > bar => {}
                        _ => continue,
                    }
                    let (a, b) = g.col_span(k);
                    let gap_u = gap(u, a, b);
                    let gap2 = gap_u * gap_u + gap_v * gap_v;
                    if gap2 >= r2 {
                        continue;
                    }
                    let rise = shape.height_lower_bound(gap2);
                    for e in list {
                        if e.zmax - rise <= bar {
                            break;
                        }
                        if kc.max(e.k[0]).min(e.k[1]) != k
                            || jc.max(e.j[0]).min(e.j[1]) != j
                            || e.id == skip
                        {
                            continue;
                        }
                        let (umin, umax) = (f64::from(e.umin), f64::from(e.umax));
                        let (vmin, vmax) = (f64::from(e.vmin), f64::from(e.vmax));
                        let du = gap(u, umin, umax);
                        let dv = gap(v, vmin, vmax);
                        let rho2 = du * du + dv * dv;
                        if rho2 > far2 || e.zmax - shape.height_lower_bound(rho2) <= bar {
                            continue;
                        }
                        match judge(&self.prepared[e.id as usize], e.id, bar) {
                            Some(b) => bar = b,
                            None => return,
                        }
                    }
                }
            }
        }
    }
}

/// Most grid rows within a cutter radius of a line: cells are at least a quarter of the
/// radius wide (see [`Grid2::new`]), so a diameter spans at most 9 of them, plus one.
const MAX_REACH_ROWS: usize = 10;

/// The grid rows within reach of a line along u at `v`, nearest first, with their distance
/// across the line: on the stack, since single-point queries build them for every point.
struct ReachRows {
    rows: [(u32, f64); MAX_REACH_ROWS],
    len: usize,
}

impl ReachRows {
    /// Rows exactly R away are left out: a triangle in reach also lies in a nearer row (see
    /// `DropCutter::band`).
    fn new(g: &Grid2, v: f64, r: f64) -> Self {
        let (j0, j1) = (g.row(down32(v - r)), g.row(up32(v + r)));
        let mut rows = [(0, 0.0); MAX_REACH_ROWS];
        let mut len = 0;
        for j in j0..=j1 {
            let (a, b) = g.row_span(j);
            let gap_v = gap(v, a, b);
            if gap_v < r {
                debug_assert!(
                    len < MAX_REACH_ROWS,
                    "more rows within reach than cells of a quarter radius allow"
                );
                if len < MAX_REACH_ROWS {
                    rows[len] = (j, gap_v);
                    len += 1;
                }
            }
        }
        rows[..len].sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        Self { rows, len }
    }

    fn as_slice(&self) -> &[(u32, f64)] {
        &self.rows[..self.len]
    }
}

/// The part `[t0, t1]` of `[0, 1]` where `a + t·(b - a)` is within `r` (in XY) of triangle
/// `t`: the segment clipped by the triangle grown by a disk of radius `r`. That region is
/// convex, so the part is one interval: the hull of the segment's parts inside the triangle,
/// inside each edge's band and inside each vertex's disk.
pub(crate) fn reach_interval(
    t: &Prepared,
    a: (f64, f64),
    b: (f64, f64),
    r: f64,
) -> Option<(f64, f64)> {
    let d = (b.0 - a.0, b.1 - a.1);
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut take = |iv: Option<(f64, f64)>| {
        if let Some((x, y)) = iv {
            let (x, y) = (x.max(0.0), y.min(1.0));
            if x <= y {
                lo = lo.min(x);
                hi = hi.max(y);
            }
        }
    };
    // Clip by half-planes n·p ≤ c (Cyrus-Beck).
    let clip = |planes: &[(f64, f64, f64)]| -> Option<(f64, f64)> {
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        for &(nx, ny, c) in planes {
            let num = c - (nx * a.0 + ny * a.1);
            let den = nx * d.0 + ny * d.1;
            if den == 0.0 {
                if num < 0.0 {
                    return None;
                }
            } else if den > 0.0 {
                t1 = t1.min(num / den);
            } else {
                t0 = t0.max(num / den);
            }
        }
        (t0 <= t1).then_some((t0, t1))
    };
    let edges: Vec<&Edge> = t.e.iter().filter(|e| e.len > 0.0).collect();
    if t.has_facet {
        // Inside a counter-clockwise triangle: left of every edge.
        let planes: Vec<_> = edges
            .iter()
            .map(|e| (e.dv, -e.du, e.dv * e.u0 - e.du * e.v0))
            .collect();
        take(clip(&planes));
    }
    for e in &edges {
        let (ux, uy) = (e.du, e.dv);
        let along0 = ux * e.u0 + uy * e.v0;
        let across0 = -uy * e.u0 + ux * e.v0;
        take(clip(&[
            (-ux, -uy, -along0),
            (ux, uy, along0 + e.len),
            (-uy, ux, across0 + r),
            (uy, -ux, -across0 + r),
        ]));
    }
    for e in &t.e {
        // Disk around the edge's start vertex (each vertex starts one edge).
        let q = (a.0 - e.u0, a.1 - e.v0);
        let aa = d.0 * d.0 + d.1 * d.1;
        let bb = 2.0 * (q.0 * d.0 + q.1 * d.1);
        let cc = q.0 * q.0 + q.1 * q.1 - r * r;
        if aa == 0.0 {
            if cc <= 0.0 {
                take(Some((0.0, 1.0)));
            }
        } else {
            let disc = bb * bb - 4.0 * aa * cc;
            if disc >= 0.0 {
                let sq = disc.sqrt();
                take(Some(((-bb - sq) / (2.0 * aa), (-bb + sq) / (2.0 * aa))));
            }
        }
    }
    (lo <= hi).then_some((lo, hi))
}

impl DropCutter<'_> {
    /// How far the cutter would have to rise, at worst, to move straight from `a` to `b`
    /// (tip positions) without cutting into the model: the maximum over the move of the
    /// drop-cutter height minus the move's height. Zero or less means the move is clear.
    /// Stops early and returns once a rise above `limit` is found.
    ///
    /// Exact where the move cuts in (a positive result): for one triangle the drop height
    /// along a straight line is a concave function on the interval where the cutter can reach
    /// the triangle, so a golden-section search on that interval finds its true maximum. For a
    /// clear move the result is zero or less but not the exact clearance: triangles entirely
    /// below the move are not looked at.
    pub fn max_rise_along(
        &self,
        a: crate::geom::Point3,
        b: crate::geom::Point3,
        limit: f64,
    ) -> f64 {
        let down = |p: crate::geom::Point3| crate::geom::Point3::new(p.x, p.y, p.z - self.lift);
        with_shape!(self.cutter.profile(), p => self.max_rise_impl(&p, down(a), down(b), limit))
    }

    /// Whether the tool tip anywhere over `rect` (an XY extent) and no lower than `z` can
    /// touch the model at all: some triangle within the cutter's reach of `rect` reaches
    /// above `z`. `false` proves every move there clear, without looking at a move; `true`
    /// proves nothing. One index query: what checking many short moves together first asks.
    pub fn may_touch(&self, rect: Rect, z: f64) -> bool {
        let far = reach(self.cutter.radius());
        let mut any = false;
        self.index
            .query(&rect.grown(far), z - self.lift, |_| any = true);
        any
    }

    fn max_rise_impl<S: Shape>(
        &self,
        shape: &S,
        a: crate::geom::Point3,
        b: crate::geom::Point3,
        limit: f64,
    ) -> f64 {
        let r = shape.radius();
        let r2 = r * r;
        let far = reach(r);
        let rect = Rect::new(a.x.min(b.x), a.x.max(b.x), a.y.min(b.y), a.y.max(b.y)).grown(far);
        let zlow = a.z.min(b.z);
        let tris = self.mesh.triangles();
        let mut worst = f64::NEG_INFINITY;
        let at = |t: f64| {
            (
                a.x + (b.x - a.x) * t,
                a.y + (b.y - a.y) * t,
                a.z + (b.z - a.z) * t,
            )
        };
        // Only triangles reaching above the move's lowest point can be in the way.
        self.index.query(&rect, zlow + limit.min(0.0), |id| {
            if worst > limit {
                return;
            }
            let t = prepare(shape, &tris[id as usize], false);
            let Some((t0, t1)) = reach_interval(&t, (a.x, a.y), (b.x, b.y), far) else {
                return;
            };
            // The move's lowest point over the interval bounds what this triangle can do.
            let zmin = at(t0).2.min(at(t1).2);
            if t.zmax - zmin <= worst {
                return;
            }
            let rise = |s: f64| {
                let (x, y, z) = at(s);
                touch(shape, r2, &t, x, y, f64::NEG_INFINITY) - z
            };
            worst = worst.max(concave_max(t0, t1, limit, rise));
        });
        worst
    }
}

/// An upper bound on a function that is concave where finite and -inf outside one interval,
/// from samples `vals` at equally spaced points: between two samples it lies below both
/// neighbouring chords extended, and the finite part cannot reach past the -inf samples
/// either side of the finite ones. +inf (no bound) with fewer than two finite samples, or
/// finite samples that are not all together.
pub(crate) fn concave_bound(vals: &[f64]) -> f64 {
    let n = vals.len();
    let finite = |k: usize| vals[k].is_finite();
    let (Some(first), Some(last)) = ((0..n).find(|&k| finite(k)), (0..n).rfind(|&k| finite(k)))
    else {
        return f64::INFINITY;
    };
    if last == first || (first..=last).any(|k| !finite(k)) {
        return f64::INFINITY;
    }
    let mut bound = f64::NEG_INFINITY;
    for k in first.saturating_sub(1)..(last + 1).min(n - 1) {
        // Each extended chord as its values at the interval's two ends.
        let left = (k > first && k <= last).then(|| (vals[k], 2.0 * vals[k] - vals[k - 1]));
        let right = (k + 1 >= first && k + 2 <= last)
            .then(|| (2.0 * vals[k + 1] - vals[k + 2], vals[k + 1]));
        let here = match (left, right) {
            (Some((l0, l1)), Some((r0, r1))) => {
                let (d0, d1) = (l0 - r0, l1 - r1);
                if d0 <= 0.0 && d1 <= 0.0 {
                    l0.max(l1)
                } else if d0 >= 0.0 && d1 >= 0.0 {
                    r0.max(r1)
                } else {
                    // The lines cross inside: the lower envelope peaks there.
                    let s = d0 / (d0 - d1);
                    l0 + s * (l1 - l0)
                }
            }
            (Some((a, b)), None) | (None, Some((a, b))) => a.max(b),
            (None, None) => f64::INFINITY,
        };
        bound = bound.max(here);
    }
    bound
}

/// Maximum of a function that is concave where finite (and -inf outside a sub-interval) on
/// [lo, hi]: a coarse scan finds the bracket, golden-section search closes it.
///
/// With a finite `limit` only the answer's side of it matters (see `max_rise_along`): a scan
/// point above it is returned at once, and when the scan proves the whole function is at or
/// below it (`concave_bound`) the scan's best is returned without the search — the common
/// case for a clear move, where most triangles in reach stay well below it.
/// The scan starts with every fourth of its points (a glance): most triangles in reach of a
/// clear move are proved below the limit by those alone, and the scan reuses them otherwise.
pub(crate) fn concave_max(lo: f64, hi: f64, limit: f64, f: impl Fn(f64) -> f64) -> f64 {
    const SCAN: usize = 16;
    const PHI: f64 = 0.618_033_988_749_894_8;
    const GLANCE: usize = 4;
    const EVERY: usize = SCAN / GLANCE;
    let x = |k: usize| lo + (hi - lo) * k as f64 / SCAN as f64;
    // Whether samples whose best is `best` settle the answer's side of the limit.
    let settled = |vals: &[f64], best: f64| {
        best > limit || (limit.is_finite() && concave_bound(vals) <= limit)
    };
    let glance: Option<[f64; GLANCE + 1]> = if limit.is_finite() {
        let glance = std::array::from_fn(|k| f(x(k * EVERY)));
        let best = glance.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if settled(&glance, best) {
            return best;
        }
        Some(glance)
    } else {
        None
    };
    let vals: [f64; SCAN + 1] = std::array::from_fn(|k| match glance {
        Some(g) if k % EVERY == 0 => g[k / EVERY],
        _ => f(x(k)),
    });
    let (kbest, mut best) =
        vals.iter()
            .copied()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |acc, (k, v)| if v > acc.1 { (k, v) } else { acc },
            );
    if best == f64::NEG_INFINITY || settled(&vals, best) {
        return best;
    }
    let (mut a, mut b) = (x(kbest.saturating_sub(1)), x((kbest + 1).min(SCAN)));
    let mut x1 = b - PHI * (b - a);
    let mut x2 = a + PHI * (b - a);
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..64 {
        best = best.max(f1).max(f2);
        if f1 < f2 {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + PHI * (b - a);
            f2 = f(x2);
        } else {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - PHI * (b - a);
            f1 = f(x1);
        }
    }
    best.max(f1).max(f2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geom::Point3;

    /// With a limit, `concave_max` may skip its search, but it always says on which side of
    /// the limit the true maximum lies; without one it finds the maximum. Checked on narrow
    /// peaks (a sharp tent whose top falls between scan points, the case the bound must
    /// catch) and smooth caps, for limits just below and just above the maximum.
    #[test]
    fn concave_max_is_on_the_right_side_of_its_limit() {
        let mut checked = 0;
        for i in 0..200 {
            let peak = 0.013 + 0.97 * (i as f64 * 0.618_033_988_749_895).fract();
            let top = -1.0 + 0.01 * i as f64;
            let steep = 1.0 + (i % 7) as f64 * 40.0;
            let tent = |x: f64| top - steep * (x - peak).abs();
            let cap = |x: f64| top - steep * (x - peak) * (x - peak);
            // Finite only near the peak, as a triangle is in reach only along part of a move.
            let (from, to) = (peak - 0.01 * (i % 5) as f64, peak + 0.3);
            let clipped = |x: f64| {
                if (from..=to).contains(&x) {
                    tent(x)
                } else {
                    f64::NEG_INFINITY
                }
            };
            for f in [&tent as &dyn Fn(f64) -> f64, &cap, &clipped] {
                let exact = concave_max(0.0, 1.0, f64::INFINITY, f);
                assert!((exact - top).abs() < 1e-9, "max {exact}, want {top}");
                for limit in [top - 1e-3, top - 1e-7, top + 1e-7, top + 1e-3, top + 0.5] {
                    let got = concave_max(0.0, 1.0, limit, f);
                    assert_eq!(
                        got > limit,
                        top > limit,
                        "peak {peak} top {top} limit {limit}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3000);
        // Finite samples apart, or only one, prove nothing.
        let inf = f64::NEG_INFINITY;
        assert_eq!(concave_bound(&[0.0, inf, 0.0]), f64::INFINITY);
        assert_eq!(concave_bound(&[inf, 0.0, inf]), f64::INFINITY);
    }

    fn plane_mesh(z: impl Fn(f64, f64) -> f64) -> Mesh {
        let mut tris = Vec::new();
        let n = 20;
        let s = 2.0;
        for i in 0..n {
            for j in 0..n {
                let (x0, y0) = (-20.0 + i as f64 * s, -20.0 + j as f64 * s);
                let p = |x: f64, y: f64| Point3::new(x, y, z(x, y));
                tris.push(Triangle::new(p(x0, y0), p(x0 + s, y0), p(x0 + s, y0 + s)));
                tris.push(Triangle::new(p(x0, y0), p(x0 + s, y0 + s), p(x0, y0 + s)));
            }
        }
        Mesh::from_triangles(tris, "plane").unwrap()
    }

    /// `sweep_classes` must put every point above exactly the levels its exact height is
    /// above, for every cutter, with and without allowance, including levels the surface
    /// touches exactly (the wavy surface's flat tops, a plane level) and repeated levels.
    #[test]
    fn level_classes_agree_with_exact_heights() {
        let mesh = Mesh::from_triangles(crate::models::wavy_surface(40), "wavy").unwrap();
        let index = TriangleIndex::new(&mesh);
        let b = mesh.bounds();
        let mut levels: Vec<f64> = (0..12)
            .map(|k| b.min.z - 0.5 + k as f64 * (b.max.z - b.min.z + 1.0) / 11.0)
            .collect();
        levels.push(levels[3]);
        levels.push(b.max.z);
        levels.sort_by(f64::total_cmp);
        let mut checked = 0;
        for spec in ["flat:6", "ball:3", "bull:6:1", "vbit:6:90"] {
            for allowance in [0.0, 0.7] {
                let cutter = spec.parse().unwrap();
                let Ok(dc) =
                    DropCutter::with_allowance(&mesh, &index, cutter, b.min.z - 5.0, allowance)
                else {
                    continue; // a V-bit cannot take an allowance
                };
                let (u0, u1) = (b.min.x - 4.0, b.max.x + 4.0);
                for j in 0..9 {
                    let v = b.min.y - 4.0 + j as f64 * (b.max.y - b.min.y + 8.0) / 8.0;
                    let band = dc.band(Axis::X, (v, v), (u0, u1));
                    let n = 301;
                    let spacing = (u1 - u0) / (n - 1) as f64;
                    let mut exact = vec![0.0; n];
                    let mut class = vec![0.0; n];
                    dc.sweep(&band, v, u0, spacing, 0, &mut exact);
                    dc.sweep_classes(&band, v, u0, spacing, 0, &mut class, &levels);
                    for (i, (h, c)) in exact.iter().zip(&class).enumerate() {
                        for z in &levels {
                            assert_eq!(
                                h > z,
                                c > z,
                                "{spec} +{allowance} at point {i} of row {j}, level {z}: height {h}, class {c}"
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 15_000);
    }

    /// The cutter is a closed solid: a wall's top edge, or a block's corner, at exactly R
    /// touches it, one ulp further does not, whichever path computes the height
    /// (tests/tests/tangency.rs checks every shape, orientation and path against the oracle).
    #[test]
    fn contact_at_exactly_the_radius() {
        // A block [0, 10]² with its top at z = 0 and walls down to -5; integer coordinates.
        let p = Point3::new;
        let mut tris = vec![
            Triangle::new(p(0.0, 0.0, 0.0), p(10.0, 0.0, 0.0), p(10.0, 10.0, 0.0)),
            Triangle::new(p(0.0, 0.0, 0.0), p(10.0, 10.0, 0.0), p(0.0, 10.0, 0.0)),
        ];
        for (a, b) in [((0.0, 0.0), (10.0, 0.0)), ((0.0, 0.0), (0.0, 10.0))] {
            tris.push(Triangle::new(
                p(a.0, a.1, -5.0),
                p(b.0, b.1, -5.0),
                p(b.0, b.1, 0.0),
            ));
            tris.push(Triangle::new(
                p(a.0, a.1, -5.0),
                p(b.0, b.1, 0.0),
                p(a.0, a.1, 0.0),
            ));
        }
        let mesh = Mesh::from_triangles(tris, "block").unwrap();
        let index = TriangleIndex::new(&mesh);
        for (spec, at_r) in [("flat:6", 0.0), ("ball:6", -3.0), ("bull:6:1", -1.0)] {
            let dc = DropCutter::new(&mesh, &index, spec.parse().unwrap(), -5.0);
            // Beside the wall x = 0, and 3-4-5 from the corner with a radius of 5.
            assert_eq!(dc.at(-3.0, 5.0), at_r, "{spec} beside the wall");
            assert_eq!(
                dc.at((-3.0f64).next_down(), 5.0),
                -5.0,
                "{spec} one ulp out"
            );
            assert!(dc.at((-3.0f64).next_up(), 5.0) > -5.0, "{spec} one ulp in");
            let mut out = [0.0; 5];
            dc.line(Axis::Y, -3.0, 3.0, 1.0, 0, &mut out);
            assert_eq!(out, [at_r; 5], "{spec} along the wall");
            dc.line(Axis::X, 5.0, -5.0, 1.0, 0, &mut out);
            assert_eq!(out[2], at_r, "{spec} across the wall");
        }
        let dc = DropCutter::new(&mesh, &index, "flat:10".parse().unwrap(), -5.0);
        assert_eq!(dc.at(-3.0, -4.0), 0.0, "corner at exactly R");
        assert_eq!(
            dc.at((-3.0f64).next_down(), -4.0),
            -5.0,
            "corner one ulp out"
        );
        assert_eq!(
            dc.max_rise_along(p(-3.0, -6.0, -1.0), p(-3.0, -2.0, -1.0), 1.0),
            1.0
        );
    }

    #[test]
    fn horizontal_plane_every_cutter() {
        let mesh = plane_mesh(|_, _| 3.0);
        let index = TriangleIndex::new(&mesh);
        for spec in ["flat:6", "ball:3", "bull:6:1", "vbit:6:90"] {
            let dc = DropCutter::new(&mesh, &index, spec.parse().unwrap(), -100.0);
            for &(x, y) in &[(0.0, 0.0), (1.3, -2.7), (5.0, 5.0)] {
                assert!((dc.at(x, y) - 3.0).abs() < 1e-12, "{spec} at {x},{y}");
            }
        }
    }
}
