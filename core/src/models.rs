//! Procedural models: the bundled default part, and the meshes tests and benchmarks run on.
//! Everything Millpond ships or tests against is generated here, so the repository holds no
//! third-party geometry.

use crate::geom::{Point3, Triangle};

/// A geodesic sphere: an icosahedron with each face split into `frequency²` triangles and
/// every vertex pushed onto the sphere. `20·frequency²` triangles, all close to equal size.
pub fn geodesic_sphere(center: Point3, radius: f64, frequency: usize) -> Vec<Triangle> {
    let f = frequency.max(1);
    let t = (1.0 + 5f64.sqrt()) / 2.0;
    let v = [
        (-1.0, t, 0.0),
        (1.0, t, 0.0),
        (-1.0, -t, 0.0),
        (1.0, -t, 0.0),
        (0.0, -1.0, t),
        (0.0, 1.0, t),
        (0.0, -1.0, -t),
        (0.0, 1.0, -t),
        (t, 0.0, -1.0),
        (t, 0.0, 1.0),
        (-t, 0.0, -1.0),
        (-t, 0.0, 1.0),
    ]
    .map(|(x, y, z)| Point3::new(x, y, z));
    const FACES: [[usize; 3]; 20] = [
        [0, 11, 5],
        [0, 5, 1],
        [0, 1, 7],
        [0, 7, 10],
        [0, 10, 11],
        [1, 5, 9],
        [5, 11, 4],
        [11, 10, 2],
        [10, 7, 6],
        [7, 1, 8],
        [3, 9, 4],
        [3, 4, 2],
        [3, 2, 6],
        [3, 6, 8],
        [3, 8, 9],
        [4, 9, 5],
        [2, 4, 11],
        [6, 2, 10],
        [8, 6, 7],
        [9, 8, 1],
    ];
    let project = |p: Point3| center + p * (radius / p.length());
    let mut out = Vec::with_capacity(20 * f * f);
    for [a, b, c] in FACES {
        let (a, b, c) = (v[a], v[b], v[c]);
        // Barycentric grid point (i along a→b, j along a→c).
        let at = |i: usize, j: usize| {
            let (fi, fj) = (i as f64 / f as f64, j as f64 / f as f64);
            project(a + (b - a) * fi + (c - a) * fj)
        };
        for i in 0..f {
            for j in 0..f - i {
                out.push(Triangle::new(at(i, j), at(i + 1, j), at(i, j + 1)));
                if i + j + 1 < f {
                    out.push(Triangle::new(at(i + 1, j), at(i + 1, j + 1), at(i, j + 1)));
                }
            }
        }
    }
    out
}

/// A height field `z = f(x, y)` over a rectangle, `nx × ny` cells of two triangles each.
/// An open surface (no sides or bottom), as many scanned or sculpted models are.
pub fn height_field(
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    nx: usize,
    ny: usize,
    f: impl Fn(f64, f64) -> f64,
) -> Vec<Triangle> {
    let mut out = Vec::with_capacity(2 * nx * ny);
    let p = |i: usize, j: usize| {
        let x = x0 + (x1 - x0) * i as f64 / nx as f64;
        let y = y0 + (y1 - y0) * j as f64 / ny as f64;
        Point3::new(x, y, f(x, y))
    };
    for i in 0..nx {
        for j in 0..ny {
            out.push(Triangle::new(p(i, j), p(i + 1, j), p(i + 1, j + 1)));
            out.push(Triangle::new(p(i, j), p(i + 1, j + 1), p(i, j + 1)));
        }
    }
    out
}

/// The smooth wavy surface used by the benchmark: 100 × 100 mm, ±5 mm waves.
pub fn wavy_surface(cells_per_side: usize) -> Vec<Triangle> {
    height_field(
        (0.0, 100.0),
        (0.0, 100.0),
        cells_per_side,
        cells_per_side,
        wavy_height,
    )
}

/// Height of the wavy benchmark surface.
pub fn wavy_height(x: f64, y: f64) -> f64 {
    5.0 * (x * 0.15).sin() * (y * 0.11).cos() + 2.0 * ((x + y) * 0.05).sin()
}

/// A closed box (12 triangles), outward normals.
pub fn box_solid(min: Point3, max: Point3) -> Vec<Triangle> {
    let c = |i: usize| {
        Point3::new(
            if i & 1 == 0 { min.x } else { max.x },
            if i & 2 == 0 { min.y } else { max.y },
            if i & 4 == 0 { min.z } else { max.z },
        )
    };
    const QUADS: [[usize; 4]; 6] = [
        [0, 2, 3, 1], // bottom, facing -z
        [4, 5, 7, 6], // top
        [0, 1, 5, 4], // front, -y
        [2, 6, 7, 3], // back, +y
        [0, 4, 6, 2], // left, -x
        [1, 3, 7, 5], // right, +x
    ];
    let mut out = Vec::with_capacity(12);
    for [a, b, c2, d] in QUADS {
        out.push(Triangle::new(c(a), c(b), c(c2)));
        out.push(Triangle::new(c(a), c(c2), c(d)));
    }
    out
}

/// A closed solid from a height field: top surface `f`, vertical sides, flat bottom at
/// `zbottom`. `n` cells per side in x and y.
pub fn height_field_solid(
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    nx: usize,
    ny: usize,
    zbottom: f64,
    f: impl Fn(f64, f64) -> f64,
) -> Vec<Triangle> {
    let mut out = height_field((x0, x1), (y0, y1), nx, ny, &f);
    let x = |i: usize| x0 + (x1 - x0) * i as f64 / nx as f64;
    let y = |j: usize| y0 + (y1 - y0) * j as f64 / ny as f64;
    let top = |px: f64, py: f64| Point3::new(px, py, f(px, py));
    let bot = |px: f64, py: f64| Point3::new(px, py, zbottom);
    let mut wall = |a: (f64, f64), b: (f64, f64)| {
        out.push(Triangle::new(bot(a.0, a.1), bot(b.0, b.1), top(b.0, b.1)));
        out.push(Triangle::new(bot(a.0, a.1), top(b.0, b.1), top(a.0, a.1)));
    };
    for i in 0..nx {
        wall((x(i), y0), (x(i + 1), y0));
        wall((x(i + 1), y1), (x(i), y1));
    }
    for j in 0..ny {
        wall((x1, y(j)), (x1, y(j + 1)));
        wall((x0, y(j + 1)), (x0, y(j)));
    }
    let (a, b, c, d) = (bot(x0, y0), bot(x1, y0), bot(x1, y1), bot(x0, y1));
    out.push(Triangle::new(a, c, b));
    out.push(Triangle::new(a, d, c));
    out
}

/// The bundled default part: an 80 × 60 mm plaque with a dome, a rounded boss, a pocket and a
/// chamfered rim, 2 to 22 mm high. Smooth and steep regions both, so every strategy has
/// something to show.
pub fn default_part() -> Vec<Triangle> {
    height_field_solid((0.0, 80.0), (0.0, 60.0), 100, 75, 0.0, default_part_height)
}

/// Top surface of the default part.
pub fn default_part_height(x: f64, y: f64) -> f64 {
    let base = 8.0;
    // Chamfer the outer 3 mm down to 5 mm.
    let edge = x.min(80.0 - x).min(y).min(60.0 - y);
    let mut z = if edge < 3.0 { 5.0 + edge } else { base };
    // Dome: a spherical cap of radius 18 centred at (24, 30).
    let r2 = (x - 24.0).powi(2) + (y - 30.0).powi(2);
    if r2 < 16.0f64.powi(2) {
        let cap = (18.0f64.powi(2) - r2).sqrt() - 18.0f64.powi(2).sqrt() + 14.0;
        z = z.max(base + cap.max(0.0));
    }
    // Boss: a rounded rectangle 16 × 12 at (60, 40), 6 mm tall with 2 mm round-over.
    let (bx, by) = ((x - 60.0).abs() - 6.0, (y - 40.0).abs() - 4.0);
    let out = bx.max(0.0).hypot(by.max(0.0)) + bx.max(by).min(0.0);
    if out < 2.0 {
        let round = if out < 0.0 {
            6.0
        } else {
            4.0 + (4.0 - out * out).max(0.0).sqrt()
        };
        z = z.max(base + round);
    }
    // Pocket: 14 × 10 × 4 deep at (60, 16).
    if (x - 60.0).abs() < 7.0 && (y - 16.0).abs() < 5.0 {
        z = base - 4.0;
    }
    z
}

/// A terrain relief: a `cells × cells` height field solid over 120 × 90 mm (two triangles a
/// cell, plus sides and bottom), hills and valleys 2 to about 20 mm high from several octaves
/// of smooth value noise. Fine cells and many separate hills, as scanned or sculpted reliefs
/// have; 374 cells give about 280k triangles.
pub fn terrain_relief(cells: usize) -> Vec<Triangle> {
    height_field_solid((0.0, 120.0), (0.0, 90.0), cells, cells, 0.0, terrain_height)
}

/// Height of the terrain relief (see [`terrain_relief`]).
pub fn terrain_height(x: f64, y: f64) -> f64 {
    // Value noise on an integer lattice: a hash of the cell corner, smoothly interpolated.
    fn lattice(i: i64, j: i64, seed: u64) -> f64 {
        let mut h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ seed.wrapping_mul(0x1656_67B1_9E37_79F9);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 32;
        (h >> 11) as f64 / (1u64 << 53) as f64
    }
    fn noise(x: f64, y: f64, seed: u64) -> f64 {
        let (i, j) = (x.floor(), y.floor());
        let (fx, fy) = (x - i, y - j);
        let s = |t: f64| t * t * (3.0 - 2.0 * t);
        let (sx, sy) = (s(fx), s(fy));
        let (i, j) = (i as i64, j as i64);
        let a = lattice(i, j, seed) + (lattice(i + 1, j, seed) - lattice(i, j, seed)) * sx;
        let b =
            lattice(i, j + 1, seed) + (lattice(i + 1, j + 1, seed) - lattice(i, j + 1, seed)) * sx;
        a + (b - a) * sy
    }
    let mut z = 0.0;
    let mut amplitude = 10.0;
    let mut scale = 1.0 / 18.0;
    for octave in 0..4 {
        z += amplitude * noise(x * scale, y * scale, octave);
        amplitude *= 0.45;
        scale *= 2.1;
    }
    2.0 + z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sphere_has_expected_size_and_count() {
        let s = geodesic_sphere(Point3::new(1.0, 2.0, 3.0), 10.0, 7);
        assert_eq!(s.len(), 20 * 49);
        for t in &s {
            for p in t.v {
                assert!(((p - Point3::new(1.0, 2.0, 3.0)).length() - 10.0).abs() < 1e-9);
            }
            assert!(!t.is_degenerate());
            // Outward: the normal points away from the centre.
            let n = t.normal().unwrap();
            assert!(n.dot(t.v[0] - Point3::new(1.0, 2.0, 3.0)) > 0.0);
        }
    }
}
