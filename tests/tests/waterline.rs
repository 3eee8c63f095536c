//! Waterline contours: analytic shapes (sphere, box, cylinder, dome with a hole) against
//! closed-form offsets, exactness along fibers, no-gouge, nesting, thin features, broken
//! meshes, and determinism across thread counts.

use millpond_core::geom::{Point3, Triangle};
use millpond_core::job::{JobOutput, Operation};
use millpond_core::models;
use millpond_core::runner;
use millpond_core::waterline::{ContourSpec, Level};
use millpond_core::{CancelToken, Cutter, DropCutter, JobContext, JobSpec, Mesh, TriangleIndex};
use std::sync::Arc;

struct Model {
    mesh: Arc<Mesh>,
    index: Arc<TriangleIndex>,
}

fn model(tris: Vec<Triangle>) -> Model {
    let mesh = Mesh::from_triangles(tris, "test").expect("mesh");
    let index = TriangleIndex::new(&mesh);
    Model {
        mesh: Arc::new(mesh),
        index: Arc::new(index),
    }
}

/// Contours at `levels` on a grid over the model's box grown by the tool's reach.
fn contour_spec(
    m: &Model,
    cutter: Cutter,
    levels: Vec<f64>,
    sampling: f64,
    allowance: f64,
) -> ContourSpec {
    let reach = cutter.radius() + allowance;
    ContourSpec {
        grid: ContourSpec::grid_around(m.mesh.bounds().xy(), reach, sampling).expect("grid"),
        levels,
        allowance,
    }
}

fn contour_job(
    m: &Model,
    cutter: Cutter,
    levels: &[f64],
    sampling: f64,
    allowance: f64,
) -> JobContext {
    let contours = contour_spec(m, cutter, levels.to_vec(), sampling, allowance);
    let spec = JobSpec {
        mesh: m.mesh.hash(),
        cutter,
        operation: Operation::Contours(contours),
    };
    JobContext::new(m.mesh.clone(), m.index.clone(), spec).expect("job")
}

fn run(ctx: &JobContext, threads: usize) -> Vec<Level> {
    let results = runner::run_local(ctx, threads, &CancelToken::new(), &|_| {}).expect("run");
    match ctx.finish(results).expect("finish") {
        JobOutput::Contours(l) => l,
        other => panic!("expected contours, got {other:?}"),
    }
}

fn contours(
    m: &Model,
    cutter: Cutter,
    levels: &[f64],
    sampling: f64,
    allowance: f64,
) -> Vec<Level> {
    run(&contour_job(m, cutter, levels, sampling, allowance), 2)
}

/// Every contour point: the tool at the point clears the model (no gouge), and a step of
/// 1e-6 mm into the region along the point's fiber cuts it (tight): the point is within
/// 1e-6 mm of the true contact along its fiber.
fn check_exact(m: &Model, cutter: Cutter, levels: &[Level], sampling: f64, allowance: f64) {
    let dc = DropCutter::with_allowance(&m.mesh, &m.index, cutter, -1e9, allowance).unwrap();
    let ctx = contour_job(m, cutter, &[0.0], sampling, allowance);
    let grid = *ctx.spec().grid().unwrap();
    // Fiber coordinates are computed as origin + k·spacing: exactly those bits.
    let on = |v: f64, origin: f64| {
        let k = ((v - origin) / sampling).round();
        origin + k * sampling == v
    };
    let mut checked = 0;
    for level in levels {
        let z = level.z;
        for c in &level.contours {
            for p in &c.points {
                let h = dc.at(p[0], p[1]);
                assert!(h <= z + 1e-9, "gouge at {p:?} z {z}: drop {h}");
                // Along which fiber? A point on a grid row moves along X, on a column along Y
                // (on both at a grid point).
                let mut steps = Vec::new();
                if on(p[1], grid.bounds.ymin) {
                    steps.extend([(1e-6, 0.0), (-1e-6, 0.0)]);
                }
                if on(p[0], grid.bounds.xmin) {
                    steps.extend([(0.0, 1e-6), (0.0, -1e-6)]);
                }
                if steps
                    .iter()
                    .all(|(dx, dy)| dc.at(p[0] + dx, p[1] + dy) <= z)
                {
                    // A point added where a chord cut into the region: exact along the chord's
                    // normal, which is not recorded; any direction will do for tightness.
                    for k in 0..16 {
                        let a = k as f64 * std::f64::consts::PI / 8.0;
                        steps.push((1e-6 * a.cos(), 1e-6 * a.sin()));
                    }
                }
                let inside = steps.iter().any(|(dx, dy)| dc.at(p[0] + dx, p[1] + dy) > z);
                assert!(inside, "not tight at {p:?} z {z}: drop {h}");
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no contour points to check");
}

fn radius(p: &[f64; 2], c: (f64, f64)) -> f64 {
    ((p[0] - c.0).powi(2) + (p[1] - c.1).powi(2)).sqrt()
}

#[test]
fn sphere_with_ball_matches_the_offset_sphere() {
    let (rs, f) = (10.0, 24);
    let m = model(models::geodesic_sphere(Point3::new(0.0, 0.0, 0.0), rs, f));
    // The facets lie between the inscribed sphere and the sphere itself.
    let rin = rs
        * m.mesh
            .triangles()
            .iter()
            .map(|t| {
                let c = (t.v[0] + t.v[1] + t.v[2]) * (1.0 / 3.0);
                (c.x * c.x + c.y * c.y + c.z * c.z).sqrt() / rs
            })
            .fold(f64::INFINITY, f64::min);
    let r = 1.5;
    let cutter = Cutter::Ball { diameter: 2.0 * r };
    let zs = [8.0, 5.0, 0.0, -1.0, -3.0, -9.0];
    let levels = contours(&m, cutter, &zs, 0.1, 0.0);
    for level in &levels {
        assert_eq!(level.contours.len(), 1, "z {}: one loop", level.z);
        let c = &level.contours[0];
        assert!(!c.hole);
        // Tip at z: ball centre at z + r; the shaft rises from there.
        let rho = |s: f64| {
            let h = level.z + r;
            if h <= 0.0 {
                s + r
            } else {
                ((s + r).powi(2) - h * h).sqrt()
            }
        };
        let (lo, hi) = (rho(rin), rho(rs));
        for p in &c.points {
            let d = radius(p, (0.0, 0.0));
            assert!(
                d >= lo - 1e-9 && d <= hi + 1e-9,
                "z {}: radius {d} not in [{lo}, {hi}]",
                level.z
            );
        }
        // A circle of this radius crosses the fibers (every 0.1 mm in X and Y) about
        // 4·(2ρ)/0.1 times; refinement adds points between, off the fibers.
        let grid = ContourSpec::grid_around(m.mesh.bounds().xy(), r, 0.1).unwrap();
        let on = |v: f64, o: f64| o + ((v - o) / 0.1).round() * 0.1 == v;
        let fiber = c
            .points
            .iter()
            .filter(|p| on(p[0], grid.bounds.xmin) || on(p[1], grid.bounds.ymin))
            .count() as f64;
        let expect = 8.0 * hi / 0.1;
        assert!(
            fiber > 0.95 * expect && fiber < 1.05 * expect,
            "{fiber} fiber points, about {expect} expected"
        );
    }
    check_exact(&m, cutter, &levels, 0.1, 0.0);
}

/// One cutter of each shape, `diameter` wide: a bull nose with a 0.5 mm corner, a 90° V-bit.
fn every_shape(diameter: f64) -> [Cutter; 4] {
    [
        Cutter::Flat { diameter },
        Cutter::Ball { diameter },
        Cutter::Bull {
            diameter,
            corner_radius: 0.5,
        },
        Cutter::VBit {
            diameter,
            included_angle: 90.0,
        },
    ]
}

#[test]
fn box_with_every_cutter_is_the_rounded_rectangle() {
    let m = model(models::box_solid(
        Point3::new(0.0, 0.0, 0.0),
        Point3::new(20.0, 10.0, 5.0),
    ));
    for cutter in every_shape(4.0) {
        let r = cutter.radius();
        // Below the top, the cutter's full radius reaches the walls (for the V-bit: only once
        // the cone is wider than the gap, which at 2.5 mm below the top it is).
        let levels = contours(&m, cutter, &[2.5, 0.0], 0.25, 0.0);
        for level in &levels {
            assert_eq!(level.contours.len(), 1, "{cutter}: z {}", level.z);
            for p in &level.contours[0].points {
                let dx = (0.0 - p[0]).max(p[0] - 20.0).max(0.0);
                let dy = (0.0 - p[1]).max(p[1] - 10.0).max(0.0);
                let d = (dx * dx + dy * dy).sqrt();
                assert!(
                    (d - r).abs() < 1e-9,
                    "{cutter}: {p:?} is {d} from the box, not {r}"
                );
            }
        }
        check_exact(&m, cutter, &levels, 0.25, 0.0);
    }
}

/// A cylinder of radius `rc` and height `h` on z = 0, as a prism with `n` sides (vertices on
/// the circle), closed by fans at the top and bottom.
fn cylinder(rc: f64, h: f64, n: usize) -> Vec<Triangle> {
    let v = |k: usize, z: f64| {
        let a = (k % n) as f64 / n as f64 * std::f64::consts::TAU;
        Point3::new(rc * a.cos(), rc * a.sin(), z)
    };
    let (top, bottom) = (Point3::new(0.0, 0.0, h), Point3::new(0.0, 0.0, 0.0));
    let mut t = Vec::new();
    for k in 0..n {
        t.push(Triangle::new(v(k, 0.0), v(k + 1, 0.0), v(k + 1, h)));
        t.push(Triangle::new(v(k, 0.0), v(k + 1, h), v(k, h)));
        t.push(Triangle::new(top, v(k, h), v(k + 1, h)));
        t.push(Triangle::new(bottom, v(k + 1, 0.0), v(k, 0.0)));
    }
    t
}

/// Distance from `p` to the boundary of the convex polygon `poly` (counter-clockwise), and
/// whether `p` is outside it.
fn polygon_distance(poly: &[[f64; 2]], p: [f64; 2]) -> (f64, bool) {
    let mut d = f64::INFINITY;
    let mut outside = false;
    for k in 0..poly.len() {
        let (a, b) = (poly[k], poly[(k + 1) % poly.len()]);
        let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
        let (px, py) = (p[0] - a[0], p[1] - a[1]);
        outside |= ex * py - ey * px < 0.0;
        let t = ((px * ex + py * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0);
        d = d.min(((px - t * ex).powi(2) + (py - t * ey).powi(2)).sqrt());
    }
    (d, outside)
}

#[test]
fn cylinder_with_every_cutter_is_the_offset_polygon() {
    let (rc, h, n) = (8.0, 10.0, 96);
    let m = model(cylinder(rc, h, n));
    let poly: Vec<[f64; 2]> = (0..n)
        .map(|k| {
            let a = k as f64 / n as f64 * std::f64::consts::TAU;
            [rc * a.cos(), rc * a.sin()]
        })
        .collect();
    let sampling = 0.2;
    for cutter in every_shape(3.0) {
        let r = cutter.radius();
        // Well below the rim every cutter's widest circle reaches the wall: the loop is the
        // prism's outline grown by r (rounded at its corners), one counter-clockwise loop.
        let levels = contours(&m, cutter, &[5.0, 2.0], sampling, 0.0);
        for level in &levels {
            assert_eq!(level.contours.len(), 1, "{cutter}: z {}", level.z);
            let c = &level.contours[0];
            assert!(!c.hole, "{cutter}: the outline is not a hole");
            let expected = std::f64::consts::TAU * (rc + r);
            assert!(
                c.points.len() as f64 > 2.0 * expected / sampling,
                "{cutter}: {} points round a {expected:.1} mm loop",
                c.points.len()
            );
            for p in &c.points {
                let (d, outside) = polygon_distance(&poly, *p);
                assert!(
                    outside && (d - r).abs() < 1e-9,
                    "{cutter} z {}: {p:?} is {d} from the cylinder, not {r}",
                    level.z
                );
            }
        }
        check_exact(&m, cutter, &levels, sampling, 0.0);
    }
    // Near the top a ball reaches the top edge with a narrower circle: its tip d below the
    // rim, the ball's section at the rim has radius sqrt(r² - (r - d)²).
    let ball = Cutter::Ball { diameter: 3.0 };
    let d = 0.5;
    let levels = contours(&m, ball, &[h - d], sampling, 0.0);
    let reach = (1.5f64.powi(2) - (1.5 - d).powi(2)).sqrt();
    assert_eq!(levels[0].contours.len(), 1);
    for p in &levels[0].contours[0].points {
        let (dist, outside) = polygon_distance(&poly, *p);
        assert!(
            outside && (dist - reach).abs() < 1e-9,
            "ball {d} mm below the rim: {p:?} is {dist} from the rim, not {reach}"
        );
    }
    check_exact(&m, ball, &levels, sampling, 0.0);
}

#[test]
fn allowance_is_exact_and_vbit_allowance_is_refused() {
    let m = model(models::box_solid(
        Point3::new(0.0, 0.0, 0.0),
        Point3::new(20.0, 10.0, 5.0),
    ));
    let a = 0.3;
    for cutter in [
        Cutter::Flat { diameter: 4.0 },
        Cutter::Ball { diameter: 4.0 },
    ] {
        let levels = contours(&m, cutter, &[2.0], 0.25, a);
        for p in &levels[0].contours[0].points {
            let dx = (0.0 - p[0]).max(p[0] - 20.0).max(0.0);
            let dy = (0.0 - p[1]).max(p[1] - 10.0).max(0.0);
            let d = (dx * dx + dy * dy).sqrt();
            assert!(
                (d - 2.0 - a).abs() < 1e-9,
                "{cutter}: {p:?} is {d} from the box"
            );
        }
        check_exact(&m, cutter, &levels, 0.25, a);
    }
    let vbit = Cutter::VBit {
        diameter: 4.0,
        included_angle: 90.0,
    };
    let spec = JobSpec {
        mesh: m.mesh.hash(),
        cutter: vbit,
        operation: Operation::Contours(ContourSpec {
            grid: ContourSpec::grid_around(m.mesh.bounds().xy(), 2.0, 0.25).unwrap(),
            levels: vec![1.0],
            allowance: 0.2,
        }),
    };
    let err = JobContext::new(m.mesh.clone(), m.index.clone(), spec).unwrap_err();
    assert!(err.to_string().contains("V-bit"), "{err}");
}

/// A dome with a hole down its middle: at mid height, an outer loop and a hole inside it.
#[test]
fn dome_with_a_hole_gives_nested_loops_and_an_island_inside() {
    let dome = |x: f64, y: f64| {
        let r = (x * x + y * y).sqrt();
        if r < 4.0 {
            // The hole, with a thin pin standing in its middle.
            if r < 0.3 { 12.0 } else { 0.0 }
        } else if r < 15.0 {
            (15.0f64 * 15.0 - r * r).sqrt()
        } else {
            0.0
        }
    };
    let m = model(models::height_field_solid(
        (-16.0, 16.0),
        (-16.0, 16.0),
        320,
        320,
        -1.0,
        dome,
    ));
    let cutter = Cutter::Flat { diameter: 2.0 };
    let levels = contours(&m, cutter, &[6.0], 0.1, 0.0);
    let cs = &levels[0].contours;
    let holes: Vec<_> = cs.iter().filter(|c| c.hole).collect();
    let outers: Vec<_> = cs.iter().filter(|c| !c.hole).collect();
    assert_eq!(
        (outers.len(), holes.len()),
        (2, 1),
        "outer dome, the pin, one hole: {cs:?}"
    );
    // The hole lies inside the dome's outer loop, the pin's loop inside the hole.
    let big = outers
        .iter()
        .max_by(|a, b| a.points.len().cmp(&b.points.len()))
        .unwrap();
    let pin = outers
        .iter()
        .min_by(|a, b| a.points.len().cmp(&b.points.len()))
        .unwrap();
    let inside = |poly: &[[f64; 2]], p: [f64; 2]| millpond_core::waterline::contains(poly, p);
    assert!(inside(&big.points, holes[0].points[0]));
    assert!(inside(&holes[0].points, pin.points[0]));
    // Radii: the dome at z = 6 is r = sqrt(225 - 36) ≈ 13.75 (+1 for the cutter); the hole is
    // 4 - 1 = 3 (the flat cutter reaches the hole wall); the pin 0.3 + 1.
    let mean = |c: &millpond_core::waterline::Contour| {
        c.points.iter().map(|p| radius(p, (0.0, 0.0))).sum::<f64>() / c.points.len() as f64
    };
    assert!(
        (mean(big) - (189f64.sqrt() + 1.0)).abs() < 0.15,
        "{}",
        mean(big)
    );
    assert!((mean(holes[0]) - 3.0).abs() < 0.15, "{}", mean(holes[0]));
    assert!((mean(pin) - 1.3).abs() < 0.15, "{}", mean(pin));
    check_exact(&m, cutter, &levels, 0.1, 0.0);
}

/// A wall thinner than the sampling and a slot barely wider than the cutter are both found.
#[test]
fn thin_walls_and_narrow_slots_are_not_missed() {
    let p = Point3::new;
    let mut tris = models::box_solid(p(0.0, 0.0, 0.0), p(0.02, 10.0, 5.0));
    // Two blocks with a slot 2.0 + 0.35 mm wide between them.
    tris.extend(models::box_solid(p(5.0, 0.0, 0.0), p(10.0, 10.0, 5.0)));
    tris.extend(models::box_solid(p(12.35, -5.0, 0.0), p(17.0, 15.0, 5.0)));
    let m = model(tris);
    let cutter = Cutter::Flat { diameter: 2.0 };
    let levels = contours(&m, cutter, &[2.0], 0.1, 0.0);
    let cs = &levels[0].contours;
    // The wall (0.02 thick, grown to 2.02) is one loop; the slot leaves a 0.35 mm gap between
    // the two blocks' loops.
    assert_eq!(
        cs.len(),
        3,
        "{:?}",
        cs.iter().map(|c| c.points.len()).collect::<Vec<_>>()
    );
    assert!(cs.iter().all(|c| !c.hole));
    let wall = cs
        .iter()
        .find(|c| c.points.iter().all(|p| p[0] < 2.0))
        .expect("the thin wall's loop");
    let xs = wall.points.iter().map(|p| p[0]);
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    assert!(
        (lo + 1.0).abs() < 1e-9 && (hi - 1.02).abs() < 1e-9,
        "{lo} {hi}"
    );
    check_exact(&m, cutter, &levels, 0.1, 0.0);
}

#[test]
fn open_and_degenerate_meshes_give_closed_finite_loops() {
    // One triangle floating in space (open), a surface with a crack (a missing triangle), and
    // zero-area triangles (skipped at load, counted).
    let mut tris = models::height_field((0.0, 10.0), (0.0, 10.0), 10, 10, |x, y| {
        1.0 + 0.1 * x + 0.05 * y
    });
    tris.remove(57);
    tris.push(Triangle::new(
        Point3::new(20.0, 0.0, 3.0),
        Point3::new(25.0, 0.0, 3.0),
        Point3::new(20.0, 5.0, 4.0),
    ));
    let p = Point3::new(5.0, 5.0, 9.0);
    tris.push(Triangle::new(p, p, Point3::new(6.0, 5.0, 9.0)));
    let mesh = Mesh::from_triangles(tris, "broken").unwrap();
    assert_eq!(mesh.skipped_degenerate(), 1);
    let index = TriangleIndex::new(&mesh);
    let m = Model {
        mesh: Arc::new(mesh),
        index: Arc::new(index),
    };
    let cutter = Cutter::Ball { diameter: 2.0 };
    let levels = contours(&m, cutter, &[1.5, 2.0, 3.2], 0.1, 0.0);
    for level in &levels {
        assert!(!level.contours.is_empty(), "z {}", level.z);
        for c in &level.contours {
            assert!(c.points.len() >= 3);
            assert!(c.points.iter().flatten().all(|v| v.is_finite()));
            // Closed and simple enough: consecutive points are neighbours on the grid.
            for w in c.points.windows(2) {
                let d = (w[0][0] - w[1][0]).abs().max((w[0][1] - w[1][1]).abs());
                assert!(
                    d <= 0.1 + 1e-9,
                    "jump of {d} between {:?} and {:?}",
                    w[0],
                    w[1]
                );
            }
        }
    }
    check_exact(&m, cutter, &levels, 0.1, 0.0);
}

#[test]
fn contours_are_bit_identical_for_one_and_two_threads() {
    let m = model(models::default_part());
    let ctx = contour_job(
        &m,
        Cutter::Ball { diameter: 3.0 },
        &[20.0, 15.0, 9.0, 7.9, 5.5],
        0.2,
        0.1,
    );
    assert!(ctx.spec().chunk_count() > 4, "several chunks");
    let one = run(&ctx, 1);
    let two = run(&ctx, 2);
    assert_eq!(one, two);
    assert!(one.iter().map(|l| l.contours.len()).sum::<usize>() >= 5);
}

#[test]
fn waterline_finishing_never_gouges_and_plunges_only_in_the_clear() {
    use millpond_core::toolpath::MoveKind;
    use millpond_core::waterline::{Milling, WaterlineSpec, levels_down};
    let m = model(models::default_part());
    let cutter = Cutter::Ball { diameter: 3.0 };
    let b = m.mesh.bounds();
    for milling in [Milling::Climb, Milling::Conventional] {
        let levels = levels_down(b.max.z, b.min.z, 2.0).unwrap();
        let spec = JobSpec {
            mesh: m.mesh.hash(),
            cutter,
            operation: Operation::Waterline(WaterlineSpec {
                contours: contour_spec(&m, cutter, levels, 0.2, 0.0),
                safe_z: b.max.z + 5.0,
                links: millpond_core::links::Links::new(b.max.z, b.max.z + 5.0, cutter.diameter()),
                milling,
            }),
        };
        let ctx = JobContext::new(m.mesh.clone(), m.index.clone(), spec).unwrap();
        let r = runner::run_local(&ctx, 2, &CancelToken::new(), &|_| {}).unwrap();
        let JobOutput::Toolpath(tp) = ctx.finish(r).unwrap() else {
            panic!("expected a toolpath")
        };
        let dc = DropCutter::new(&m.mesh, &m.index, cutter, f64::NEG_INFINITY);
        let smaller = DropCutter::new(
            &m.mesh,
            &m.index,
            Cutter::Ball {
                diameter: 3.0 - 2e-3,
            },
            f64::NEG_INFINITY,
        );
        let mut from = tp.start;
        let (mut plunges, mut cuts) = (0, 0);
        for mv in &tp.moves {
            // CL points exactly; between them, every 0.05 mm, the tool penetrates the model by
            // less than 1 µm: a ball 1 µm smaller about the same centre stays clear.
            let d = mv.to - from;
            let len = (d.x * d.x + d.y * d.y + d.z * d.z).sqrt();
            let n = (len / 0.05).ceil().max(1.0) as usize;
            for k in 1..=n {
                let p = from + d * (k as f64 / n as f64);
                if k == n {
                    let h = dc.at(p.x, p.y);
                    assert!(
                        h <= p.z + 1e-9,
                        "{milling:?}: CL point {p:?} is {} into the model",
                        h - p.z
                    );
                } else {
                    let h = smaller.at(p.x, p.y);
                    assert!(
                        h <= p.z + 1e-3 + 1e-9,
                        "{milling:?}: {:?} move at {p:?} cuts in",
                        mv.kind
                    );
                }
            }
            if mv.kind == MoveKind::Plunge {
                plunges += 1;
                // The plunge ends where the tool is clear of the model at that height.
                assert!(dc.at(mv.to.x, mv.to.y) <= mv.to.z + 1e-9);
            }
            if mv.kind == MoveKind::Cut {
                cuts += 1;
            }
            from = mv.to;
        }
        assert!(
            plunges >= 5 && cuts > 1000,
            "{plunges} plunges, {cuts} cuts"
        );
    }
}

/// Distance from `p` to the closed polyline `poly`.
fn distance_to_loop(poly: &[[f64; 2]], p: [f64; 2]) -> f64 {
    (0..poly.len())
        .map(|k| {
            let (a, b) = (poly[k], poly[(k + 1) % poly.len()]);
            let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
            let (px, py) = (p[0] - a[0], p[1] - a[1]);
            let t = ((px * ex + py * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0);
            ((px - t * ex).powi(2) + (py - t * ey).powi(2)).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

/// An L-shaped CAD part whose inside corner falls between fibers: the contour goes into the
/// corner (an exact point is added where the chord between two fiber crossings would cut it
/// off), instead of leaving a fillet of material a fiber spacing wide.
#[test]
fn inside_corners_between_fibers_are_followed() {
    let p = Point3::new;
    // Inside corner of the L at (10.13, 10.37): between the 0.5 mm fibers.
    let mut tris = models::box_solid(p(0.0, 0.0, 0.0), p(20.0, 10.37, 5.0));
    tris.extend(models::box_solid(p(0.0, 0.0, 0.0), p(10.13, 20.0, 5.0)));
    let m = model(tris);
    for cutter in [
        Cutter::Flat { diameter: 6.0 },
        Cutter::Ball { diameter: 6.0 },
    ] {
        let levels = contours(&m, cutter, &[1.0], 0.5, 0.0);
        assert_eq!(levels[0].contours.len(), 1, "{cutter}");
        let points = &levels[0].contours[0].points;
        // The region's inside corner: both walls offset by the radius.
        let corner = [10.13 + 3.0, 10.37 + 3.0];
        let d = distance_to_loop(points, corner);
        eprintln!(
            "{cutter}: {} points, {d:.6} mm from the corner",
            points.len()
        );
        assert!(
            d < 0.002,
            "{cutter}: the contour passes {d} mm from the corner"
        );
        check_exact(&m, cutter, &levels, 0.5, 0.0);
    }
}
