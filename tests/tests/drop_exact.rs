//! Drop-cutter exactness: the engine against closed forms and against an independent oracle.

use millpond_core::{Cutter, DropCutter, Mesh, Point3, Triangle, TriangleIndex, models};
use millpond_tests::{Rng, oracle, sampled_rise};

const CUTTERS: [&str; 7] = [
    "flat:6",
    "ball:3",
    "ball:6",
    "bull:6:1",
    "bull:8:3.5",
    "vbit:6:90",
    "vbit:10:30",
];

fn cutters() -> Vec<Cutter> {
    CUTTERS.iter().map(|s| s.parse().unwrap()).collect()
}

/// Random triangles in a 20 mm cube: slivers, steep and overhanging ones included.
fn random_triangles(rng: &mut Rng, n: usize) -> Vec<Triangle> {
    let mut out = Vec::new();
    while out.len() < n {
        let c = Point3::new(
            rng.range(-10.0, 10.0),
            rng.range(-10.0, 10.0),
            rng.range(-5.0, 5.0),
        );
        let s = rng.range(0.5, 8.0);
        let p =
            |rng: &mut Rng| c + Point3::new(rng.range(-s, s), rng.range(-s, s), rng.range(-s, s));
        let t = Triangle::new(p(rng), p(rng), p(rng));
        if !t.is_degenerate() {
            out.push(t);
        }
    }
    out
}

#[test]
fn random_meshes_match_oracle_within_1e6() {
    let mut rng = Rng::new(7);
    let mut worst = 0.0f64;
    for round in 0..6 {
        let tris = random_triangles(&mut rng, 12);
        let mesh = Mesh::from_triangles(tris.clone(), "random").unwrap();
        let index = TriangleIndex::new(&mesh);
        for cutter in cutters() {
            let dc = DropCutter::new(&mesh, &index, cutter, -100.0);
            for _ in 0..40 {
                let (x, y) = (rng.range(-14.0, 14.0), rng.range(-14.0, 14.0));
                let got = dc.at(x, y);
                let want = oracle::drop(&cutter, &tris, x, y, -100.0);
                worst = worst.max((got - want).abs());
                assert!(
                    (got - want).abs() <= 1e-6,
                    "round {round} {cutter} at ({x}, {y}): engine {got}, oracle {want}"
                );
            }
        }
    }
    eprintln!("worst |engine - oracle| = {worst:e}");
}

#[test]
fn slanted_planes_closed_form() {
    // z = s·x over a large square, for shallow and steep slopes (steeper than a 90° V-bit).
    for slope in [0.0, 0.2, 0.7, 1.0, 1.8, 4.0] {
        let f = |x: f64, _y: f64| slope * x;
        let tris = models::height_field((-50.0, 50.0), (-50.0, 50.0), 10, 10, f);
        let mesh = Mesh::from_triangles(tris, "slope").unwrap();
        let index = TriangleIndex::new(&mesh);
        let norm = (1.0 + slope * slope).sqrt();
        for cutter in cutters() {
            let r = cutter.radius();
            let want = |x: f64| match cutter {
                Cutter::Flat { .. } => slope * (x + r),
                Cutter::Ball { .. } => slope * x + r * norm - r,
                Cutter::Bull {
                    corner_radius: c, ..
                } => {
                    let a = r - c;
                    slope * (x + a) + c * norm - c
                }
                Cutter::VBit { included_angle, .. } => {
                    let k = 1.0 / (included_angle.to_radians() / 2.0).tan();
                    if slope > k {
                        slope * (x + r) - k * r
                    } else {
                        slope * x
                    }
                }
            };
            let dc = DropCutter::new(&mesh, &index, cutter, -1000.0);
            for x in [-13.7, 0.0, 3.3, 21.9] {
                let got = dc.at(x, 1.234);
                assert!(
                    (got - want(x)).abs() < 1e-9,
                    "{cutter} slope {slope} x {x}: {got} vs {}",
                    want(x)
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Closed forms on a tessellated sphere, single edges and vertices, real surfaces, and a whole
// raster toolpath.
// ---------------------------------------------------------------------------------------------

/// Half angle α of a V-bit, radians.
fn vbit_half_angle(cutter: &Cutter) -> Option<f64> {
    match *cutter {
        Cutter::VBit { included_angle, .. } => Some((included_angle / 2.0).to_radians()),
        _ => None,
    }
}

/// Drop-cutter height over a TRUE solid sphere of radius `s` centred at the origin, with the
/// axis at horizontal distance `rho` from the centre, by closed form; `floor` where the cutter
/// cannot reach the sphere.
fn sphere_closed_form(cutter: &Cutter, s: f64, rho: f64, floor: f64) -> f64 {
    let r = cutter.radius();
    if rho >= s + r {
        return floor;
    }
    let z = match *cutter {
        // The ball's centre is s + r from the sphere's centre.
        Cutter::Ball { .. } => ((s + r).powi(2) - rho * rho).sqrt() - r,
        // The flat bottom covers the top, or rests on the sphere with its rim.
        Cutter::Flat { .. } => {
            if rho <= r {
                s
            } else {
                (s * s - (rho - r).powi(2)).sqrt()
            }
        }
        // Flat part over the top, or the torus' core circle is s + c from the centre.
        Cutter::Bull {
            corner_radius: c, ..
        } => {
            let a = r - c;
            if rho <= a {
                s
            } else {
                ((s + c).powi(2) - (rho - a).powi(2)).sqrt() - c
            }
        }
        Cutter::VBit { .. } => {
            let al = vbit_half_angle(cutter).unwrap();
            let (sa, ca) = al.sin_cos();
            if rho <= s * ca {
                // The tip sits on the sphere: the tangent plane there is no steeper than the
                // flank.
                (s * s - rho * rho).sqrt()
            } else {
                // The flank (a line in the vertical plane through both axes) is tangent.
                let t = (s - rho * ca) / sa;
                let along = rho * sa - t * ca;
                if along <= r / sa {
                    t
                } else {
                    // Beyond the cone: the rim circle rests on the sphere.
                    (s * s - (rho - r).powi(2)).sqrt() - r / al.tan()
                }
            }
        }
    };
    z.max(floor)
}

/// Drop-cutter height over a true sphere by brute force: by symmetry the highest contact lies
/// in the vertical plane through the centre and the axis (the function is concave and
/// symmetric across that plane), so it is a 1-D concave maximisation of
/// `sqrt(s² - x²) - h(|x - rho|)` — golden-section search over real points only, so it never
/// over-estimates.
fn sphere_numeric(cutter: &Cutter, s: f64, rho: f64) -> f64 {
    let r = cutter.radius();
    let (a, b) = ((rho - r).max(-s), (rho + r).min(s));
    if a > b {
        return f64::NEG_INFINITY;
    }
    let f = |x: f64| (s * s - x * x).max(0.0).sqrt() - cutter.height_at((x - rho).abs());
    oracle::concave_max(a, b, f)
}

#[test]
fn sphere_every_cutter_between_inner_and_outer_spheres() {
    let rs = 10.0;
    let tris = models::geodesic_sphere(Point3::new(0.0, 0.0, 0.0), rs, 64);
    // Every vertex is on the sphere of radius rs, so the solid is inside it; the surface is a
    // radial projection (star-shaped about the centre), so the solid contains the ball whose
    // radius is the smallest distance from the centre to a face's plane.
    let rin = tris
        .iter()
        .map(|t| t.normal().unwrap().dot(t.v[0]).abs())
        .fold(f64::INFINITY, f64::min);
    assert!(
        rs - rin > 0.0 && rs - rin < 1e-3,
        "the band between the spheres must be thin to mean anything: {rin}"
    );
    let mesh = Mesh::from_triangles(tris, "sphere").unwrap();
    let index = TriangleIndex::new(&mesh);
    let floor = -2.0 * rs;
    let mut rng = Rng::new(11);
    let mut checked = 0usize;
    for cutter in cutters() {
        let r = cutter.radius();
        let reach = rs + r;
        // First, the closed forms themselves against the brute-force maximiser on true spheres.
        for s in [rs, rin, 3.0, 40.0] {
            for k in 0..=400 {
                let rho = (s + r) * k as f64 / 400.0 * (1.0 - 1e-9);
                let cf = sphere_closed_form(&cutter, s, rho, f64::NEG_INFINITY);
                let num = sphere_numeric(&cutter, s, rho);
                assert!(
                    num <= cf + 1e-9 && cf - num <= 1e-6,
                    "{cutter} closed form wrong for sphere {s} at rho {rho}: {cf} vs brute force {num}"
                );
            }
        }
        let dc = DropCutter::new(&mesh, &index, cutter, floor);
        let check = |x: f64, y: f64, got: f64| {
            let rho = x.hypot(y);
            if rho >= reach + 1e-9 {
                // Nothing within reach: the floor, exactly.
                assert_eq!(got, floor, "{cutter} at ({x}, {y}) beyond the silhouette");
                return;
            }
            if rho >= reach - 1e-3 {
                return;
            }
            let lo = sphere_closed_form(&cutter, rin, rho, floor);
            let hi = sphere_closed_form(&cutter, rs, rho, floor);
            assert!(
                got >= lo - 1e-9 && got <= hi + 1e-9,
                "{cutter} at ({x}, {y}), rho {rho}: engine {got} outside [{lo}, {hi}]"
            );
        };
        // Random points over the disk of reach, and a ring just inside the silhouette.
        for k in 0..600 {
            let rho = if k < 450 {
                reach * rng.range(0.0, 1.0).sqrt()
            } else {
                reach - rng.range(1e-3, 0.05)
            };
            let phi = rng.range(0.0, std::f64::consts::TAU);
            let (x, y) = (rho * phi.cos(), rho * phi.sin());
            check(x, y, dc.at(x, y));
            checked += 1;
        }
        // Whole lines, through the centre and off it, running out past the silhouette.
        for y in [0.0, 0.37, 6.1, rs + r - 0.01] {
            let (x0, step) = (-(reach + 1.0), 0.005);
            let mut out = vec![0.0; ((2.0 * (reach + 1.0)) / step) as usize + 1];
            dc.line(millpond_core::Axis::X, y, x0, step, 0, &mut out);
            for (i, &z) in out.iter().enumerate() {
                check(x0 + i as f64 * step, y, z);
            }
            checked += out.len();
        }
    }
    eprintln!("sphere: {checked} points, band rs - rin = {:e}", rs - rin);
}

/// Horizontal distance from (x, y) to the infinite line through `a` and `b` (in XY).
fn line_distance_xy(a: Point3, b: Point3, x: f64, y: f64) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    ((x - a.x) * dy - (y - a.y) * dx).abs() / dx.hypot(dy)
}

/// `tris` rotated about the Z axis by `angle` and moved by (dx, dy).
fn placed(tris: &[Triangle], angle: f64, dx: f64, dy: f64) -> Vec<Triangle> {
    let (s, c) = angle.sin_cos();
    let f = |p: Point3| Point3::new(c * p.x - s * p.y + dx, s * p.x + c * p.y + dy, p.z);
    tris.iter()
        .map(|t| Triangle::new(f(t.v[0]), f(t.v[1]), f(t.v[2])))
        .collect()
}

#[test]
fn single_edge_and_single_vertex_every_cutter() {
    let floor = -100.0;
    let mut rng = Rng::new(23);
    // A vertical triangle whose top edge is horizontal at z = 5, from x = -20 to 20; also
    // rotated and moved off the axes.
    let wall = [Triangle::new(
        Point3::new(-20.0, 0.0, 5.0),
        Point3::new(20.0, 0.0, 5.0),
        Point3::new(0.0, 0.0, -40.0),
    )];
    for (angle, dx, dy) in [(0.0, 0.0, 0.0), (0.7, 3.3, -1.9)] {
        let tris = placed(&wall, angle, dx, dy);
        let (a, b) = (tris[0].v[0], tris[0].v[1]);
        let mesh = Mesh::from_triangles(tris.clone(), "wall").unwrap();
        let index = TriangleIndex::new(&mesh);
        for cutter in cutters() {
            let r = cutter.radius();
            let dc = DropCutter::new(&mesh, &index, cutter, floor);
            let (s, c) = f64::sin_cos(angle);
            for k in 0..300 {
                // Along the edge well inside its length; across it within reach (and, for a
                // few, just out of reach).
                let u = rng.range(-10.0, 10.0);
                let v = if k < 280 {
                    rng.range(-r, r) * (1.0 - 1e-9)
                } else {
                    (r + rng.range(1e-6, 1.0)) * if k % 2 == 0 { 1.0 } else { -1.0 }
                };
                let (x, y) = (c * u - s * v + dx, s * u + c * v + dy);
                let d = line_distance_xy(a, b, x, y);
                let got = dc.at(x, y);
                let want = if d < r {
                    5.0 - cutter.height_at(d)
                } else {
                    floor
                };
                assert!(
                    (got - want).abs() <= 1e-9,
                    "{cutter} wall angle {angle} at ({x}, {y}), d = {d}: engine {got}, want {want}"
                );
            }
        }
    }

    // A sloped top edge: vertical (closed forms for ball and flat) and tilted (oracle only).
    let (a, b) = (Point3::new(-15.0, 0.0, -3.0), Point3::new(15.0, 0.0, 6.0));
    let slope = (b.z - a.z) / (b.x - a.x);
    for (tilt, name) in [(0.0, "vertical"), (0.5, "tilted")] {
        let tris = vec![Triangle::new(a, b, Point3::new(0.0, tilt, -40.0))];
        let mesh = Mesh::from_triangles(tris.clone(), name).unwrap();
        let index = TriangleIndex::new(&mesh);
        for cutter in cutters() {
            let r = cutter.radius();
            let dc = DropCutter::new(&mesh, &index, cutter, floor);
            for _ in 0..40 {
                let (x, y) = (rng.range(-8.0, 8.0), rng.range(-r, r) * (1.0 - 1e-9));
                let got = dc.at(x, y);
                let want = oracle::drop(&cutter, &tris, x, y, floor);
                assert!(
                    (got - want).abs() <= 1e-6,
                    "{cutter} {name} sloped edge at ({x}, {y}): engine {got}, oracle {want}"
                );
                if tilt != 0.0 {
                    continue;
                }
                let closed = match cutter {
                    // The ball's centre is at distance r from the edge's (3-D) line.
                    Cutter::Ball { .. } => {
                        let len = (b - a).length();
                        let u = (b - a) * (1.0 / len);
                        let q = Point3::new(x - a.x, y - a.y, -a.z);
                        let qu = q.dot(u);
                        let qa = 1.0 - u.z * u.z;
                        let qb = 2.0 * (q.z - qu * u.z);
                        let qc = q.dot(q) - qu * qu - r * r;
                        let centre = (-qb + (qb * qb - 4.0 * qa * qc).sqrt()) / (2.0 * qa);
                        Some(centre - r)
                    }
                    // The flat bottom rests on the edge where its rim crosses it uphill.
                    Cutter::Flat { .. } => Some(a.z + slope * (x + (r * r - y * y).sqrt() - a.x)),
                    _ => None,
                };
                if let Some(closed) = closed {
                    assert!(
                        (got - closed).abs() <= 1e-9 && want <= closed + 1e-9,
                        "{cutter} sloped edge at ({x}, {y}): engine {got}, closed form {closed}, oracle {want}"
                    );
                }
            }
        }
    }

    // A single vertex: the apex of a tall, thin spike at (0, 0, 10). Its edges fall so steeply
    // that (almost) everywhere under the cutter the apex is the highest contact, and then the
    // tip is 10 - h(ρ).
    let spikes = [
        Triangle::new(
            Point3::new(0.0, 0.0, 10.0),
            Point3::new(-0.001, 0.0, -10.0),
            Point3::new(0.001, 0.0, -10.0),
        ),
        Triangle::new(
            Point3::new(0.0, 0.0, 10.0),
            Point3::new(-0.001, 0.002, -10.0),
            Point3::new(0.0015, -0.001, -10.0),
        ),
    ];
    for spike in spikes {
        let tris = vec![spike];
        let mesh = Mesh::from_triangles(tris.clone(), "spike").unwrap();
        let index = TriangleIndex::new(&mesh);
        for cutter in cutters() {
            let r = cutter.radius();
            let dc = DropCutter::new(&mesh, &index, cutter, floor);
            let mut vertex_contacts = 0;
            let n = 60;
            for _ in 0..n {
                let rho = r * rng.range(0.0, 0.999);
                let phi = rng.range(0.0, std::f64::consts::TAU);
                let (x, y) = (rho * phi.cos(), rho * phi.sin());
                let got = dc.at(x, y);
                let want = oracle::drop(&cutter, &tris, x, y, floor);
                let apex = 10.0 - cutter.height_at(rho);
                assert!(want >= apex - 1e-9, "oracle misses the apex");
                if want <= apex + 1e-9 {
                    vertex_contacts += 1;
                    assert!(
                        (got - apex).abs() <= 1e-9,
                        "{cutter} spike apex at rho {rho} ({x}, {y}): engine {got}, want {apex}"
                    );
                } else {
                    assert!(
                        (got - want).abs() <= 1e-6,
                        "{cutter} spike at ({x}, {y}): engine {got}, oracle {want}"
                    );
                }
            }
            assert!(
                vertex_contacts >= n * 9 / 10,
                "{cutter}: only {vertex_contacts} of {n} points were apex contacts"
            );
        }
    }
}

/// Horizontal distance from (x, y) to triangle `t` (0 inside it).
fn triangle_distance_xy(t: &Triangle, x: f64, y: f64) -> f64 {
    let [a, b, c] = t.v;
    let cross = |p: Point3, q: Point3| (q.x - p.x) * (y - p.y) - (q.y - p.y) * (x - p.x);
    let (d0, d1, d2) = (cross(a, b), cross(b, c), cross(c, a));
    if (d0 >= 0.0 && d1 >= 0.0 && d2 >= 0.0) || (d0 <= 0.0 && d1 <= 0.0 && d2 <= 0.0) {
        return 0.0;
    }
    let seg = |p: Point3, q: Point3| {
        let (dx, dy) = (q.x - p.x, q.y - p.y);
        let dd = dx * dx + dy * dy;
        let s = if dd > 0.0 {
            (((x - p.x) * dx + (y - p.y) * dy) / dd).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (p.x + s * dx - x).hypot(p.y + s * dy - y)
    };
    seg(a, b).min(seg(b, c)).min(seg(c, a))
}

/// The oracle's drop height, visiting triangles best bound first: nothing on a triangle is
/// higher than its top vertex less the profile height at its nearest point to the axis, so
/// the search stops once that bound cannot beat the best found. Same answer as
/// `oracle::drop`, far fewer triangles.
fn oracle_drop_pruned(cutter: &Cutter, tris: &[Triangle], x: f64, y: f64, floor: f64) -> f64 {
    let r = cutter.radius();
    let mut cands: Vec<(f64, &Triangle)> = tris
        .iter()
        .filter_map(|t| {
            let d = triangle_distance_xy(t, x, y);
            (d <= r).then(|| (t.zmax() - cutter.height_at(d), t))
        })
        .collect();
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best = floor;
    for (bound, t) in cands {
        if bound <= best {
            break;
        }
        if let Some(z) = oracle::touch(cutter, t, x, y) {
            best = best.max(z);
        }
    }
    best
}

/// Points on a triangle: its vertices, points along its edges and random interior points.
fn sample_triangle(t: &Triangle, rng: &mut Rng, interior: usize, out: &mut Vec<Point3>) {
    let [a, b, c] = t.v;
    out.extend([a, b, c]);
    for k in 1..4 {
        let s = k as f64 / 4.0;
        out.extend([a + (b - a) * s, b + (c - b) * s, c + (a - c) * s]);
    }
    for _ in 0..interior {
        let (mut u, mut v) = (rng.range(0.0, 1.0), rng.range(0.0, 1.0));
        if u + v > 1.0 {
            (u, v) = (1.0 - u, 1.0 - v);
        }
        out.push(a + (b - a) * u + (c - a) * v);
    }
}

#[test]
fn no_gouge_and_tight_on_real_surfaces() {
    let part = models::default_part();
    let wavy = models::height_field((0.0, 30.0), (0.0, 30.0), 120, 120, models::wavy_height);
    let mut rng = Rng::new(31);
    let mut worst_oracle = 0.0f64;
    let mut worst_gouge = f64::NEG_INFINITY;
    let mut oracle_points = 0;
    for (name, tris) in [("default part", part), ("wavy", wavy)] {
        let mesh = Mesh::from_triangles(tris.clone(), name).unwrap();
        let index = TriangleIndex::new(&mesh);
        let bb = mesh.bounds();
        let floor = bb.min.z - 1.0;
        for cutter in cutters() {
            let r = cutter.radius();
            let dc = DropCutter::new(&mesh, &index, cutter, floor);
            let random_point = |rng: &mut Rng| {
                if name == "default part" && rng.range(0.0, 1.0) < 0.6 {
                    // Half the points near the part's features: the pocket's and the boss'
                    // walls, the dome's rim and the chamfered outer edge.
                    let (x, y) = match rng.next_u64() % 4 {
                        0 => (rng.range(53.0, 67.0), rng.range(11.0, 21.0)),
                        1 => (rng.range(52.0, 68.0), rng.range(34.0, 46.0)),
                        2 => {
                            let phi = rng.range(0.0, std::f64::consts::TAU);
                            (24.0 + 16.0 * phi.cos(), 30.0 + 16.0 * phi.sin())
                        }
                        _ => (
                            rng.range(0.0, 80.0),
                            [0.0, 3.0, 57.0, 60.0][rng.next_u64() as usize % 4],
                        ),
                    };
                    (
                        x + rng.range(-r - 1.0, r + 1.0),
                        y + rng.range(-r - 1.0, r + 1.0),
                    )
                } else {
                    (
                        rng.range(bb.min.x - r, bb.max.x + r),
                        rng.range(bb.min.y - r, bb.max.y + r),
                    )
                }
            };
            // Tight: the engine equals the oracle, queried alone and at the end of a short
            // line sweep (where the previous points' contacts steer the search), along X and Y.
            for k in 0..40 {
                let (x, y) = random_point(&mut rng);
                let (axis, along, across) = if k % 2 == 0 {
                    (millpond_core::Axis::X, x, y)
                } else {
                    (millpond_core::Axis::Y, y, x)
                };
                let mut row = [0.0; 16];
                let (origin, spacing) = (along - 15.0 * 0.07, 0.07);
                dc.line(axis, across, origin, spacing, 0, &mut row);
                let end = origin + 15.0 * spacing;
                let (x, y) = if k % 2 == 0 { (end, y) } else { (x, end) };
                // The same bits alone as in the line (the order triangles are tried in never
                // matters); `at` works in the X frame, so along Y it may differ by rounding.
                let mut alone = [0.0];
                dc.line(axis, across, end, 0.0, 0, &mut alone);
                let got = row[15];
                assert_eq!(
                    got.to_bits(),
                    alone[0].to_bits(),
                    "{name} {cutter} at ({x}, {y}): a point alone {}, in a line {got}",
                    alone[0]
                );
                assert!(
                    (dc.at(x, y) - got).abs() <= 1e-12,
                    "{name} {cutter} at ({x}, {y})"
                );
                let want = oracle_drop_pruned(&cutter, &tris, x, y, floor);
                worst_oracle = worst_oracle.max((got - want).abs());
                oracle_points += 1;
                assert!(
                    (got - want).abs() <= 1e-6,
                    "{name} {cutter} at ({x}, {y}): engine {got}, oracle {want}"
                );
            }
            // No gouge, checked by brute force with no pruning at all: no point of any
            // triangle under the cutter is above the cutter's surface.
            let mut pts = Vec::new();
            for _ in 0..60 {
                let (x, y) = random_point(&mut rng);
                let tip = dc.at(x, y);
                pts.clear();
                for t in &tris {
                    if triangle_distance_xy(t, x, y) <= r {
                        sample_triangle(t, &mut rng, 12, &mut pts);
                    }
                }
                for p in &pts {
                    let rho = (p.x - x).hypot(p.y - y);
                    if rho > r {
                        continue;
                    }
                    let above = p.z - (tip + cutter.height_at(rho));
                    worst_gouge = worst_gouge.max(above);
                    assert!(
                        above <= 1e-6,
                        "{name} {cutter} at ({x}, {y}): tip {tip} gouges ({}, {}, {}) by {above}",
                        p.x,
                        p.y,
                        p.z
                    );
                }
            }
        }
    }
    eprintln!(
        "{oracle_points} oracle points, worst |engine - oracle| = {worst_oracle:e}, \
         worst point above the cutter = {worst_gouge:e}"
    );
}

#[test]
fn raster_toolpath_never_gouges() {
    use millpond_core::job::{Grid, JobOutput, Operation};
    use millpond_core::raster::{Direction, RasterSpec};
    use millpond_core::toolpath::MoveKind;
    use millpond_core::{Axis, CancelToken, JobContext, JobSpec, Rect, runner};
    use std::sync::Arc;

    let mesh = Arc::new(Mesh::from_triangles(models::default_part(), "default part").unwrap());
    let index = Arc::new(TriangleIndex::new(&mesh));
    let bb = mesh.bounds();
    let part = bb.xy();
    let tol = 0.001;
    // The finishing pass as the CLI plans it (the part's box grown by R + 0.5, so lines start
    // and end off the part), and passes whose lines end on the part, so that links have to
    // cross it (over the dome some cannot be direct).
    let configs = [
        ("ball:3", None, Axis::X, Direction::Zigzag),
        ("flat:6", None, Axis::X, Direction::Zigzag),
        (
            "ball:3",
            Some(Rect::new(10.0, 70.0, 5.0, 55.0)),
            Axis::X,
            Direction::Zigzag,
        ),
        (
            "bull:6:1",
            Some(Rect::new(12.0, 70.0, 18.0, 42.0)),
            Axis::Y,
            Direction::Zigzag,
        ),
    ];
    for (spec, bounds, axis, direction) in configs {
        let cutter: Cutter = spec.parse().unwrap();
        let r = cutter.radius();
        let grid = Grid {
            axis,
            bounds: bounds.unwrap_or(part.grown(r + 0.5)),
            step: 1.5,
            sampling: 0.2,
        };
        let raster = RasterSpec {
            grid,
            floor: bb.min.z,
            safe_z: bb.max.z + 5.0,
            links: millpond_core::links::Links::at_safe_height(bb.max.z + 5.0),
            direction,
            merge_tolerance: tol,
            allowance: 0.0,
        };
        let job = JobSpec {
            mesh: mesh.hash(),
            cutter,
            operation: Operation::Raster(raster),
        };
        let ctx = JobContext::new(mesh.clone(), index.clone(), job).unwrap();
        let results = runner::run_local(&ctx, 2, &CancelToken::new(), &|_| {}).unwrap();
        let Ok(JobOutput::Toolpath(tp)) = ctx.finish(results) else {
            panic!("a raster job must give a toolpath");
        };
        let dc = DropCutter::new(&mesh, &index, cutter, raster.floor);
        // (along, across) coordinates of a point.
        let uv = |p: Point3| match axis {
            Axis::X => (p.x, p.y),
            Axis::Y => (p.y, p.x),
        };
        // The grid's heights, line by line, for the checks between kept points.
        let per_line = grid.points_per_line();
        let heights: Vec<Vec<f64>> = (0..grid.lines())
            .map(|j| {
                let mut row = vec![0.0; per_line];
                dc.line(
                    axis,
                    grid.across(j),
                    grid.along(0),
                    grid.sampling,
                    0,
                    &mut row,
                );
                row
            })
            .collect();
        // Samples a straight move every 0.05 mm: the worst drop height above it.
        let worst_above = |a: Point3, b: Point3| sampled_rise(&dc, a, b, 0.05);
        let (mut links, mut segments, mut merged_over, mut retracts) = (0, 0, 0usize, 0);
        let mut worst_between = f64::NEG_INFINITY;
        let (mut refined, mut stairs) = (0usize, 0usize);
        let mut lines_seen = vec![false; grid.lines()];
        let mut prev = tp.start;
        for (k, m) in tp.moves.iter().enumerate() {
            let p = m.to;
            // A stair (see raster::refined_profile): a vertical move next to this point.
            let vertical = |a: Point3, b: Point3| a.x == b.x && a.y == b.y;
            let stair = vertical(prev, p) || tp.moves.get(k + 1).is_some_and(|n| vertical(p, n.to));
            if m.kind != MoveKind::Rapid {
                let drop = dc.at(p.x, p.y);
                assert!(
                    drop <= p.z + 1e-6,
                    "{spec}: move to {p:?} gouges, drop height {drop}"
                );
                let (u, v) = uv(p);
                let j = ((v - grid.across(0)) / grid.step).round() as usize;
                assert!(
                    j < grid.lines() && grid.across(j) == v,
                    "{spec}: {p:?} off the lines"
                );
                lines_seen[j] = true;
                let i = ((u - grid.along(0)) / grid.sampling).round() as usize;
                if i < per_line && grid.along(i) == u && !stair {
                    // A grid point at its exact drop height: no gouge, and tight.
                    assert!(
                        (p.z - heights[j][i]).abs() <= 1e-6 && (p.z - drop).abs() <= 1e-6,
                        "{spec}: CL point {p:?} is not tight: drop {drop}, line {}",
                        heights[j][i]
                    );
                } else if !stair {
                    // A refinement point between samples: also exact.
                    refined += 1;
                    assert!(
                        (p.z - drop).abs() <= 1e-6,
                        "{spec}: refinement point {p:?} is not tight: drop {drop}"
                    );
                } else {
                    stairs += 1;
                }
            }
            let same_line = uv(prev).1 == uv(p).1 && uv(prev).0 != uv(p).0;
            if m.kind == MoveKind::Cut && same_line {
                // A merged segment along a line: never below a grid point it passes over, never
                // more than the merge tolerance above one (stairs aside, which are above).
                segments += 1;
                let j = ((uv(p).1 - grid.across(0)) / grid.step).round() as usize;
                let ((ua, _), (ub, _)) = (uv(prev), uv(p));
                let (lo, hi) = (ua.min(ub), ua.max(ub));
                let first = (((lo - grid.along(0)) / grid.sampling).floor().max(0.0)) as usize;
                for (i, &drop) in heights[j].iter().enumerate().skip(first) {
                    let u = grid.along(i);
                    if u >= hi {
                        break;
                    }
                    if u <= lo {
                        continue;
                    }
                    let z = prev.z + (p.z - prev.z) * (u - ua) / (ub - ua);
                    assert!(
                        z >= drop - 1e-9 - 1e-12,
                        "{spec}: segment {prev:?} -> {p:?} is at {z} over grid point {u}, \
                         whose drop height is {drop}"
                    );
                    let flat = prev.z == p.z && (stair || z > drop + tol + 1e-9);
                    assert!(
                        z <= drop + tol + 1e-9 || flat,
                        "{spec}: segment {prev:?} -> {p:?} is {} above grid point {u}",
                        z - drop
                    );
                    merged_over += 1;
                }
                // Between grid points the path follows the refined profile: measured and bounded.
                worst_between = worst_between.max(worst_above(prev, p));
            } else if m.kind == MoveKind::Cut && vertical(prev, p) {
                // A stair's vertical step: clear at both heights' lower end.
                let drop = dc.at(p.x, p.y);
                assert!(
                    drop <= prev.z.min(p.z) + 1e-6,
                    "{spec}: stair step {prev:?} -> {p:?}"
                );
            } else if m.kind == MoveKind::Cut {
                // A direct link between lines: clear of the model, exactly.
                links += 1;
                assert_ne!(uv(prev).1, uv(p).1, "{spec}: a cut neither link nor line");
                let rise = dc.max_rise_along(prev, p, 1e-6);
                assert!(
                    rise <= 1e-6,
                    "{spec}: link {prev:?} -> {p:?} cuts into the model by {rise}"
                );
                let sampled = worst_above(prev, p);
                assert!(
                    sampled <= 1e-6,
                    "{spec}: link {prev:?} -> {p:?} is {sampled} below the drop surface"
                );
            } else {
                // Rapids and plunges are clear along their whole length.
                if m.kind == MoveKind::Rapid && p.z > prev.z {
                    retracts += 1;
                }
                let sampled = worst_above(prev, p);
                assert!(
                    sampled <= 1e-6,
                    "{spec}: {:?} move {prev:?} -> {p:?} is {sampled} below the drop surface",
                    m.kind
                );
            }
            prev = p;
        }
        assert!(
            lines_seen.iter().all(|&s| s),
            "{spec}: some raster lines never cut"
        );
        assert!(
            links > 0 && segments > grid.lines() && merged_over > 0,
            "{spec}: {links} links, {segments} segments"
        );
        // The link check itself, on random straight moves across the part between points on
        // or a little above the surface: where sampling every 0.01 mm finds the move cutting
        // in, it reports at least that much. (Where the move is clear it only promises a
        // result of zero or less: triangles below the move are not looked at.)
        let free = DropCutter::new(&mesh, &index, cutter, f64::NEG_INFINITY);
        let mut rng = Rng::new(41);
        let mut cutting = 0;
        for k in 0..80 {
            let a = Point3::new(rng.range(0.0, 80.0), rng.range(0.0, 60.0), 0.0);
            let dir = rng.range(0.0, std::f64::consts::TAU);
            let len = rng.range(0.5, 12.0);
            let mut b = a + Point3::new(len * dir.cos(), len * dir.sin(), 0.0);
            let lift = |rng: &mut Rng| if k % 3 == 0 { 0.0 } else { rng.range(0.0, 0.5) };
            let a = Point3::new(a.x, a.y, free.at(a.x, a.y) + lift(&mut rng));
            b.z = free.at(b.x, b.y) + lift(&mut rng);
            let n = (len / 0.01).ceil() as usize;
            let sampled = (0..=n)
                .map(|k| {
                    let p = a + (b - a) * (k as f64 / n as f64);
                    free.at(p.x, p.y) - p.z
                })
                .fold(f64::NEG_INFINITY, f64::max);
            let rise = free.max_rise_along(a, b, f64::INFINITY);
            if sampled > 0.0 {
                cutting += 1;
                assert!(
                    rise >= sampled - 1e-9,
                    "{spec}: max_rise_along {a:?} -> {b:?} says {rise}, sampling finds {sampled}"
                );
            }
            assert!(
                sampled <= 0.0 || rise > 0.0,
                "{spec}: {a:?} -> {b:?} cuts in by {sampled} but is reported clear ({rise})"
            );
            // With a limit it stops early, but still says whether the move is clear.
            let limited = free.max_rise_along(a, b, 1e-6);
            assert_eq!(limited > 1e-6, rise > 1e-6, "{spec}: {a:?} -> {b:?}");
        }
        assert!(cutting >= 20, "{spec}: only {cutting} random moves cut in");
        if bounds.is_some() {
            // Lines ending over the dome cannot all be linked directly.
            assert!(retracts > 1, "{spec}: expected retracts over the part");
        }
        eprintln!(
            "{spec} {axis:?}: {} moves, {links} links, {retracts} retracts, {segments} segments \
             over {merged_over} merged grid points, {refined} refinement points, {stairs} stair \
             points; worst drop above an in-line segment between grid points: {worst_between:e}",
            tp.moves.len()
        );
        // Walls no longer get cut between samples: what is left is the sag of smooth
        // profiles between samples.
        assert!(
            worst_between <= 0.02,
            "{spec}: an in-line segment dips {worst_between} mm below the drop surface"
        );
    }
}
