//! Drop-cutter exactness: the engine against closed forms and against an independent oracle.

use millpond_core::{Cutter, DropCutter, Mesh, Point3, Triangle, TriangleIndex, models};
use millpond_tests::{Rng, oracle};

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
