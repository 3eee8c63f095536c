//! Drop-cutter: the highest tip height at which the cutter touches the mesh (design.md §3).
//!
//! A raster line is computed as a sweep: one index query for the band of triangles the line's
//! cutter can reach, each prepared once (edges oriented, plane contact precomputed for this
//! cutter), sorted by where they enter the sweep; every point then tests only the triangles
//! whose boxes are under its footprint, skipping those whose highest point cannot beat the
//! best height found so far. The result is a maximum over triangles, so it is bit-identical
//! whatever order triangles are visited in.

use crate::cutter::{Cutter, Shape};
use crate::geom::{Rect, Triangle};
use crate::index::TriangleIndex;
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
}

/// A triangle prepared for one cutter, in the frame (u along the line, v across it).
#[derive(Clone, Copy, Debug)]
struct Prepared {
    umin: f64,
    umax: f64,
    vmin: f64,
    vmax: f64,
    zmax: f64,
    /// Offset from the axis to the plane contact point, and the profile height there.
    /// `has_facet` is false for (near-)vertical triangles, which only edges can touch.
    has_facet: bool,
    ou: f64,
    ov: f64,
    oh: f64,
    /// Edges counter-clockwise in (u, v), edge i from vertex i to vertex i + 1.
    e: [Edge; 3],
    /// z of the vertex opposite edge i, for barycentric interpolation.
    zopp: [f64; 3],
}

/// Below this |nz| a triangle counts as vertical for the facet test; its edges still count.
const VERTICAL_NZ: f64 = 1e-9;

fn prepare<S: Shape>(shape: &S, t: &Triangle, swap: bool) -> Prepared {
    let uvz = |i: usize| {
        let p = t.v[i];
        if swap { (p.y, p.x, p.z) } else { (p.x, p.y, p.z) }
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
        let len = du.hypot(dv);
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
    }
}

/// Highest tip z at which the cutter with its axis at (cu, cv) touches triangle `t`,
/// or -inf if it cannot touch it.
#[inline]
fn touch<S: Shape>(shape: &S, r2: f64, t: &Prepared, cu: f64, cv: f64) -> f64 {
    if t.has_facet {
        let (pu, pv) = (cu + t.ou, cv + t.ov);
        let d = [0, 1, 2].map(|i| {
            let e = &t.e[i];
            e.du * (pv - e.v0) - e.dv * (pu - e.u0)
        });
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
    for e in &t.e {
        if e.len == 0.0 {
            continue;
        }
        let (ru, rv) = (cu - e.u0, cv - e.v0);
        let d = e.du * rv - e.dv * ru;
        let d2 = d * d;
        if d2 >= r2 {
            continue;
        }
        let w0 = ru * e.du + rv * e.dv;
        let s = (r2 - d2).sqrt();
        let lo = (-w0).max(-s);
        let hi = (e.len - w0).min(s);
        if lo > hi {
            continue;
        }
        let w = shape.edge_argmax(e.m, d2, lo, hi);
        let t = w0 + w;
        let z = if t <= 0.0 {
            e.z0
        } else if t >= e.len {
            e.z1
        } else {
            e.z0 + e.m * t
        };
        let z = z - shape.height((d2 + w * w).sqrt().min(shape.radius()));
        best = best.max(z);
    }
    best
}

/// Drop-cutter queries against one mesh with one cutter.
#[derive(Debug, Clone, Copy)]
pub struct DropCutter<'a> {
    mesh: &'a Mesh,
    index: &'a TriangleIndex,
    cutter: Cutter,
    floor: f64,
}

impl<'a> DropCutter<'a> {
    /// `floor`: the lowest tip height returned (stock bottom).
    pub fn new(mesh: &'a Mesh, index: &'a TriangleIndex, cutter: Cutter, floor: f64) -> Self {
        Self {
            mesh,
            index,
            cutter,
            floor,
        }
    }

    pub fn cutter(&self) -> Cutter {
        self.cutter
    }

    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// Tip height with the axis at (x, y).
    pub fn at(&self, x: f64, y: f64) -> f64 {
        let mut out = [0.0];
        self.line(Axis::X, y, x, 0.0, &mut out);
        out[0]
    }

    /// Tip heights along a raster line: points at `start + i·spacing` along `axis`, for
    /// `i in 0..out.len()`, with the other coordinate fixed at `across`.
    pub fn line(&self, axis: Axis, across: f64, start: f64, spacing: f64, out: &mut [f64]) {
        with_shape!(self.cutter.profile(), p => self.line_impl(&p, axis, across, start, spacing, out))
    }

    fn line_impl<S: Shape>(
        &self,
        shape: &S,
        axis: Axis,
        v: f64,
        start: f64,
        spacing: f64,
        out: &mut [f64],
    ) {
        let n = out.len();
        if n == 0 {
            return;
        }
        let r = shape.radius();
        let r2 = r * r;
        let end = start + spacing * (n - 1) as f64;
        let swap = axis == Axis::Y;
        let rect = if swap {
            Rect::new(v - r, v + r, start - r, end + r)
        } else {
            Rect::new(start - r, end + r, v - r, v + r)
        };
        let tris = self.mesh.triangles();
        let mut prepared: Vec<Prepared> = Vec::new();
        self.index.query(&rect, self.floor, |id| {
            let t = &tris[id as usize];
            let p = prepare(shape, t, swap);
            if p.vmin <= v + r && p.vmax >= v - r && p.umax >= start - r && p.umin <= end + r {
                prepared.push(p);
            }
        });
        prepared.sort_unstable_by(|a, b| a.umin.total_cmp(&b.umin));
        let mut active: Vec<u32> = Vec::new();
        let mut next = 0usize;
        let mut hint: Option<u32> = None;
        for (i, slot) in out.iter_mut().enumerate() {
            let u = start + spacing * i as f64;
            while next < prepared.len() && prepared[next].umin <= u + r {
                active.push(next as u32);
                next += 1;
            }
            let mut best = self.floor;
            let mut best_id = None;
            if let Some(h) = hint {
                let t = &prepared[h as usize];
                if t.umax >= u - r {
                    let z = touch(shape, r2, t, u, v);
                    if z > best {
                        best = z;
                        best_id = Some(h);
                    }
                }
            }
            let mut k = 0;
            while k < active.len() {
                let id = active[k];
                let t = &prepared[id as usize];
                if t.umax < u - r {
                    active.swap_remove(k);
                    continue;
                }
                k += 1;
                if t.zmax <= best || Some(id) == hint {
                    continue;
                }
                // Cheap bound: the triangle's top minus the least the profile can rise over
                // the horizontal distance to its box.
                let du = (t.umin - u).max(u - t.umax).max(0.0);
                let dv = (t.vmin - v).max(v - t.vmax).max(0.0);
                let rho2 = du * du + dv * dv;
                if rho2 >= r2 || t.zmax - shape.height_lower_bound(rho2) <= best {
                    continue;
                }
                let z = touch(shape, r2, t, u, v);
                if z > best {
                    best = z;
                    best_id = Some(id);
                }
            }
            hint = best_id.or(hint);
            *slot = best;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geom::Point3;

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
