//! Closed-cutter contact (issue 16, point 1): the cutter is a closed solid, so an edge, vertex
//! or facet at exactly the radius from the axis touches it. Integer-coordinate models and
//! integer tool radii (the common case in CAD exports) put raster points at exactly that
//! distance from walls all the time; a drop-cutter that counts it as no contact dives beside
//! every such wall.
//!
//! Every check runs at exactly R and one ulp either side, for every cutter shape, through
//! every path the engine has to a height (`at`, `line`, `band` + `sweep`, `sweep_classes`,
//! `max_rise_along`), in all four orientations of the model, and against the oracle.

use millpond_core::TriangleIndex;
use millpond_core::geom::{Point3, Triangle};
use millpond_core::job::{JobOutput, Operation};
use millpond_core::runner;
use millpond_core::waterline::{ContourSpec, Level};
use millpond_core::{Axis, CancelToken, Cutter, DropCutter, JobContext, JobSpec, Mesh};
use millpond_tests::oracle;
use std::sync::Arc;

/// An exact symmetry of the plane (mirrors and the diagonal swap), applied to meshes and
/// points alike: integer coordinates stay integers, and distances stay bit-exact.
#[derive(Clone, Copy, Debug)]
struct Sym {
    swap: bool,
    nx: bool,
    ny: bool,
}

const SYMS: [Sym; 4] = [
    Sym {
        swap: false,
        nx: false,
        ny: false,
    },
    Sym {
        swap: false,
        nx: true,
        ny: true,
    },
    Sym {
        swap: true,
        nx: false,
        ny: false,
    },
    Sym {
        swap: true,
        nx: true,
        ny: false,
    },
];

impl Sym {
    fn xy(self, x: f64, y: f64) -> (f64, f64) {
        let (x, y) = if self.swap { (y, x) } else { (x, y) };
        (if self.nx { -x } else { x }, if self.ny { -y } else { y })
    }
    fn tris(self, tris: &[Triangle]) -> Vec<Triangle> {
        let p = |p: Point3| {
            let (x, y) = self.xy(p.x, p.y);
            Point3::new(x, y, p.z)
        };
        tris.iter()
            .map(|t| Triangle::new(p(t.v[0]), p(t.v[1]), p(t.v[2])))
            .collect()
    }
}

/// A rectangle split into two triangles, `z(x, y)` at its corners.
fn quad(
    out: &mut Vec<Triangle>,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    z: impl Fn(f64, f64) -> f64,
) {
    let p = |x: f64, y: f64| Point3::new(x, y, z(x, y));
    out.push(Triangle::new(p(x0, y0), p(x1, y0), p(x1, y1)));
    out.push(Triangle::new(p(x0, y0), p(x1, y1), p(x0, y1)));
}

/// A vertical rectangle in the plane x = `x`, from z0 to z1, y from y0 to y1.
fn wall_x(out: &mut Vec<Triangle>, x: f64, (y0, y1): (f64, f64), (z0, z1): (f64, f64)) {
    let p = |y: f64, z: f64| Point3::new(x, y, z);
    out.push(Triangle::new(p(y0, z0), p(y1, z0), p(y1, z1)));
    out.push(Triangle::new(p(y0, z0), p(y1, z1), p(y0, z1)));
}

/// A vertical rectangle in the plane y = `y`.
fn wall_y(out: &mut Vec<Triangle>, y: f64, (x0, x1): (f64, f64), (z0, z1): (f64, f64)) {
    let p = |x: f64, z: f64| Point3::new(x, y, z);
    out.push(Triangle::new(p(x0, z0), p(x1, z0), p(x1, z1)));
    out.push(Triangle::new(p(x0, z0), p(x1, z1), p(x0, z1)));
}

/// The pocket, integer coordinates: floor at z = -5 for x in [-20, 0], a wall at
/// x = 0 from -5 up to 0, the top at z = 0 for x in [0, 20]; y from -20 to 20, in pieces 10
/// long so that several triangles share the top edge.
fn pocket() -> Vec<Triangle> {
    floor_and_wall(|t, y| quad(t, (0.0, 20.0), y, |_, _| 0.0))
}

/// The pocket's floor and wall, each piece of y followed by what `top` adds for x ≥ 0.
fn floor_and_wall(top: impl Fn(&mut Vec<Triangle>, (f64, f64))) -> Vec<Triangle> {
    let mut t = Vec::new();
    for k in 0..4 {
        let y = (-20.0 + 10.0 * k as f64, -10.0 + 10.0 * k as f64);
        quad(&mut t, (-20.0, 0.0), y, |_, _| -5.0);
        wall_x(&mut t, 0.0, y, (-5.0, 0.0));
        top(&mut t, y);
    }
    t
}

/// A ramp instead of a flat top: z = 2x from x = 0 up to x = 5, then flat at 10. Steeper than
/// a 90° V-bit's flank, so the V-bit, like the flat end mill, rests its rim on the facet: at
/// exactly R from the ramp's foot, the facet's contact point is on its boundary.
fn ramp() -> Vec<Triangle> {
    floor_and_wall(|t, y| {
        quad(t, (0.0, 5.0), y, |x, _| 2.0 * x);
        quad(t, (5.0, 20.0), y, |_, _| 10.0);
    })
}

/// A block [0, 10]² from z = -10 up to 0, on a floor at z = -10 over [-20, 20]² (the part of
/// the floor under the block is hidden and harmless).
fn block() -> Vec<Triangle> {
    let mut t = Vec::new();
    quad(&mut t, (-20.0, 20.0), (-20.0, 20.0), |_, _| -10.0);
    quad(&mut t, (0.0, 10.0), (0.0, 10.0), |_, _| 0.0);
    wall_x(&mut t, 0.0, (0.0, 10.0), (-10.0, 0.0));
    wall_x(&mut t, 10.0, (0.0, 10.0), (-10.0, 0.0));
    wall_y(&mut t, 0.0, (0.0, 10.0), (-10.0, 0.0));
    wall_y(&mut t, 10.0, (0.0, 10.0), (-10.0, 0.0));
    t
}

fn cutters(radius: f64) -> Vec<Cutter> {
    let d = 2.0 * radius;
    [
        format!("flat:{d}"),
        format!("ball:{d}"),
        format!("bull:{d}:1"),
        format!("vbit:{d}:90"),
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

/// Where one ulp off counts as out of reach, in reach, or exactly R.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Off {
    Out,
    Exact,
    In,
}

const OFFS: [Off; 3] = [Off::Out, Off::Exact, Off::In];

/// `v` (negative) moved one ulp away from 0 (out), or towards it (in).
fn nudge(v: f64, off: Off) -> f64 {
    assert!(v < 0.0);
    match off {
        Off::Out => v.next_down(),
        Off::Exact => v,
        Off::In => v.next_up(),
    }
}

/// One case: a model, a point (in the model's own frame, before the symmetry) and the height
/// the closed cutter must rest at there.
struct Case {
    name: &'static str,
    tris: Vec<Triangle>,
    floor: f64,
    x: f64,
    y: f64,
    want: f64,
    /// How far the engine may be from `want`: 0 where the contact is exact in floating point
    /// (exactly R, or the floor), else the project's contact tolerance.
    tol: f64,
}

/// Every path to a height at (x, y) must give the same bits as `at`; `at` must give `want`;
/// the oracle must agree.
fn check(case: &Case, sym: Sym, cutter: Cutter, failures: &mut Vec<String>) {
    let tris = sym.tris(&case.tris);
    let (x, y) = sym.xy(case.x, case.y);
    let mesh = Mesh::from_triangles(tris.clone(), case.name).unwrap();
    let index = TriangleIndex::new(&mesh);
    let dc = DropCutter::new(&mesh, &index, cutter, case.floor);
    let what = format!("{} {cutter} {sym:?} at ({x:e}, {y:e})", case.name);
    let got = dc.at(x, y);
    if (got - case.want).abs() > case.tol {
        failures.push(format!("{what}: at() = {got}, want {}", case.want));
    }
    let oracle = oracle::drop(&cutter, &tris, x, y, case.floor);
    if (oracle - case.want).abs() > case.tol.max(1e-6) {
        failures.push(format!("{what}: oracle {oracle}, want {}", case.want));
    }
    let mut paths: Vec<(String, f64)> = Vec::new();
    for axis in [Axis::X, Axis::Y] {
        let (along, across) = match axis {
            Axis::X => (x, y),
            Axis::Y => (y, x),
        };
        // The point first on a line, and the line with the point in its middle where the
        // positions hit it exactly.
        let mut out = vec![0.0; 17];
        dc.line(axis, across, along, 0.5, 0, &mut out);
        paths.push((format!("line {axis:?} from it"), out[0]));
        for back in [1.0, 2.0, 4.0, 8.0] {
            let origin = along - back;
            let k = (back / 0.5) as usize;
            if origin + k as f64 * 0.5 != along {
                continue;
            }
            dc.line(axis, across, origin, 0.5, 0, &mut out);
            paths.push((format!("line {axis:?} through it from {origin}"), out[k]));
            dc.line(axis, across, origin, 0.5, k, &mut out[..3]);
            paths.push((format!("line {axis:?} piece from {origin}"), out[0]));
            // A band over several lines, swept on the line through the point.
            let band = dc.band(axis, (across - 1.0, across + 2.0), (origin, origin + 8.0));
            let mut swept = vec![0.0; 17];
            dc.sweep(&band, across, origin, 0.5, 0, &mut swept);
            paths.push((format!("band sweep {axis:?} from {origin}"), swept[k]));
            // Level classes: for every level, above it exactly when the height is.
            let mut levels = vec![case.floor, got.next_down(), got, got.next_up(), got + 1.0];
            levels.sort_by(f64::total_cmp);
            levels.dedup();
            let mut class = vec![0.0; 17];
            dc.sweep_classes(&band, across, origin, 0.5, 0, &mut class, &levels);
            for z in levels {
                if (class[k] > z) != (got > z) {
                    failures.push(format!(
                        "{what}: sweep_classes {axis:?} from {origin} says {} for level {z}, height {got}",
                        class[k]
                    ));
                }
            }
        }
    }
    for (path, z) in paths {
        if z.to_bits() != got.to_bits() {
            failures.push(format!("{what}: {path} = {z}, at() = {got}"));
        }
    }
    // The swept check sees the contact too: a move through the point just below its height
    // must rise (by how much the drop height there says, at least), one just above it is
    // clear wherever the point's own height is the highest along the move.
    if got > case.floor {
        for (dx, dy) in [(1.0, 0.0), (0.0, 1.0)] {
            let below = got - 1e-3;
            let a = Point3::new(x - dx, y - dy, below);
            let b = Point3::new(x + dx, y + dy, below);
            let rise = dc.max_rise_along(a, b, f64::INFINITY);
            if rise < 1e-3 - 1e-12 {
                failures.push(format!(
                    "{what}: max_rise_along through it at {below} = {rise}, want ≥ 1e-3"
                ));
            }
        }
    }
}

fn cases(cutter: Cutter) -> Vec<Case> {
    let r = cutter.radius();
    let h = |rho: f64| cutter.height_at(rho);
    let mut out = Vec::new();
    for off in OFFS {
        // The wall's top edge along x = 0 at z = 0, the point at distance R.
        let x = nudge(-r, off);
        let (want, tol) = match off {
            Off::Out => (-5.0, 0.0),
            Off::Exact => (-h(r), 0.0),
            Off::In => (-h(-x), 1e-6),
        };
        if r == 3.0 {
            out.push(Case {
                name: "pocket",
                tris: pocket(),
                floor: -5.0,
                x,
                y: 0.0,
                want,
                tol,
            });
            // The same on the ramp: the flat end mill's and the V-bit's rims rest on the
            // facet's foot (tip 0 and -h(R)); the ball and bull nose on the edge.
            let rim = matches!(cutter, Cutter::Flat { .. } | Cutter::VBit { .. });
            let want = match (off, rim) {
                (Off::Out, _) => -5.0,
                (Off::Exact, _) => -h(r),
                // The rim reaches one ulp up the ramp.
                (Off::In, true) => 2.0 * (x + r) - h(r),
                (Off::In, false) => -h(-x),
            };
            // Halfway along a ramp triangle's foot (at a vertex, the facet's inside test
            // rounds its coordinates' differences: a point one ulp outside can pass).
            out.push(Case {
                name: "ramp",
                tris: ramp(),
                floor: -5.0,
                x,
                y: 5.0,
                want,
                tol,
            });
        }
        // The block's corner at (0, 0, 0), the point diagonally at exactly R = 5 (3-4-5).
        if r == 5.0 {
            let (x, y) = (nudge(-3.0, off), nudge(-4.0, off));
            let (want, tol) = match off {
                Off::Out => (-10.0, 0.0),
                Off::Exact => (-h(r), 0.0),
                Off::In => (-h(x.hypot(y)), 1e-6),
            };
            out.push(Case {
                name: "block corner",
                tris: block(),
                floor: -10.0,
                x,
                y,
                want,
                tol,
            });
        }
    }
    out
}

/// Drop-cutter heights at exactly R from an edge, a vertex and a facet's boundary, and one
/// ulp either side, for every cutter shape: the cutter touches at exactly R.
#[test]
fn contact_at_exactly_the_radius_counts_every_cutter_every_path() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for radius in [3.0, 5.0] {
        for cutter in cutters(radius) {
            for case in cases(cutter) {
                for sym in SYMS {
                    check(&case, sym, cutter, &mut failures);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4 * 3 * 2 * 4 + 4 * 3 * 4);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The example, as a raster would meet it: a 6 mm flat end mill on a grid whose
/// points fall exactly 3 mm from the wall's top edge stays on the top (0), and the points on
/// the line along the wall at exactly R all do.
#[test]
fn flat_end_mill_on_a_grid_line_exactly_r_from_a_wall_stays_on_top() {
    let mesh = Mesh::from_triangles(pocket(), "pocket").unwrap();
    let index = TriangleIndex::new(&mesh);
    let dc = DropCutter::new(&mesh, &index, "flat:6".parse().unwrap(), -5.0);
    assert_eq!(dc.at(-3.0, 0.0), 0.0);
    // Along the wall, x = -3.
    let mut out = vec![f64::NAN; 61];
    dc.line(Axis::Y, -3.0, -15.0, 0.5, 0, &mut out);
    assert!(out.iter().all(|&z| z == 0.0), "{out:?}");
    // Across it: -10, -9.5, …; -3 is point 14.
    let mut out = vec![f64::NAN; 41];
    dc.line(Axis::X, 0.0, -10.0, 0.5, 0, &mut out);
    assert_eq!(out[13], -5.0);
    assert_eq!(out[14], 0.0);
}

fn contours(mesh: &Arc<Mesh>, index: &Arc<TriangleIndex>, cutter: Cutter, z: f64) -> Level {
    let grid = ContourSpec::grid_around(mesh.bounds().xy(), cutter.radius(), 0.5).unwrap();
    let spec = JobSpec {
        mesh: mesh.hash(),
        cutter,
        operation: Operation::Contours(ContourSpec {
            grid,
            levels: vec![z],
            allowance: 0.0,
        }),
    };
    let ctx = JobContext::new(mesh.clone(), index.clone(), spec).unwrap();
    let results = runner::run_local(&ctx, 2, &CancelToken::new(), &|_| {}).unwrap();
    match ctx.finish(results).unwrap() {
        JobOutput::Contours(mut l) => l.remove(0),
        other => panic!("expected contours, got {other:?}"),
    }
}

/// Waterline just below the wall's top: the contour runs R from the top edge, the cutter on
/// it clear of the model and touching it a hair further in, by the oracle — on a grid whose
/// points fall exactly R from the edge.
#[test]
fn waterline_below_a_wall_top_keeps_r_from_the_edge() {
    for cutter in cutters(3.0) {
        let tris = pocket();
        let mesh = Arc::new(Mesh::from_triangles(tris.clone(), "pocket").unwrap());
        let index = Arc::new(TriangleIndex::new(&mesh));
        // The tip a hair below where the cutter rests on the edge at exactly R.
        let top = -cutter.height_at(3.0);
        let z = top - 1e-3;
        let level = contours(&mesh, &index, cutter, z);
        let grid = ContourSpec::grid_around(mesh.bounds().xy(), cutter.radius(), 0.5).unwrap();
        let on_grid = (0..grid.points_per_line()).any(|i| grid.along(i) == -3.0);
        assert!(on_grid, "{cutter}: the grid has no points at x = -3");
        let mut near_wall = 0;
        for c in &level.contours {
            for p in &c.points {
                let [x, y] = *p;
                if !(-15.0..=15.0).contains(&y) || !(-5.0..=-1.0).contains(&x) {
                    continue;
                }
                near_wall += 1;
                // How far the cutter at height z reaches the edge's neighbourhood: the
                // contour is where the drop height crosses z, just outside R.
                let d = oracle::drop(&cutter, &tris, x, y, -5.0);
                assert!(
                    d <= z + 1e-6,
                    "{cutter}: contour point ({x}, {y}) gouges: {d} > {z}"
                );
                let inner = oracle::drop(&cutter, &tris, x + 1e-6, y, -5.0);
                assert!(
                    inner > z - 1e-6,
                    "{cutter}: contour point ({x}, {y}) is loose: {inner} 1e-6 further in"
                );
                assert!(
                    x < -3.0 && x > -3.0 - 0.5,
                    "{cutter}: contour at x = {x}, want just outside -3"
                );
            }
        }
        assert!(
            near_wall > 10,
            "{cutter}: only {near_wall} contour points by the wall"
        );
    }
}
