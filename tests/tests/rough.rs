//! Roughing: never inside the model plus allowance, stays in the stock, enters by ramps,
//! clears the layer, and gives the same bits for any thread count.

use millpond_core::geom::{Aabb, Point3};
use millpond_core::job::{JobOutput, Operation};
use millpond_core::rough::{ClearPattern, RoughSpec};
use millpond_core::runner;
use millpond_core::toolpath::{MoveKind, Toolpath};
use millpond_core::waterline::{ContourSpec, Milling, levels_down};
use millpond_core::{
    CancelToken, Cutter, DropCutter, JobContext, JobSpec, Mesh, TriangleIndex, models,
};
use std::sync::Arc;

struct Setup {
    mesh: Arc<Mesh>,
    index: Arc<TriangleIndex>,
    stock: Aabb,
}

fn setup() -> Setup {
    let mesh = Mesh::from_triangles(models::default_part(), "default-part").unwrap();
    let index = TriangleIndex::new(&mesh);
    let b = mesh.bounds();
    let stock = Aabb {
        min: Point3::new(b.min.x - 3.0, b.min.y - 3.0, b.min.z),
        max: Point3::new(b.max.x + 3.0, b.max.y + 3.0, b.max.z + 1.0),
    };
    Setup {
        mesh: Arc::new(mesh),
        index: Arc::new(index),
        stock,
    }
}

/// The end mill most tests here rough with.
const FLAT_6: Cutter = Cutter::Flat { diameter: 6.0 };

fn rough_job(s: &Setup, cutter: Cutter, pattern: ClearPattern, allowance: f64) -> JobContext {
    let sampling = 0.25;
    let grid =
        ContourSpec::grid_around(s.mesh.bounds().xy(), cutter.radius() + allowance, sampling)
            .unwrap();
    let levels = levels_down(s.stock.max.z, s.stock.min.z, 4.0).unwrap();
    let spec = JobSpec {
        mesh: s.mesh.hash(),
        cutter,
        operation: Operation::Rough(RoughSpec {
            contours: ContourSpec {
                grid,
                levels,
                allowance,
            },
            stock: s.stock,
            stepover: cutter.diameter() * 0.45,
            pattern,
            milling: Milling::Climb,
            safe_z: s.stock.max.z + 5.0,
            links: millpond_core::links::Links::new(
                s.stock.max.z,
                s.stock.max.z + 5.0,
                cutter.diameter(),
            ),
            ramp_angle: 3.0,
            rest: None,
        }),
    };
    JobContext::new(s.mesh.clone(), s.index.clone(), spec).unwrap()
}

fn toolpath(ctx: &JobContext, threads: usize) -> Toolpath {
    let r = runner::run_local(ctx, threads, &CancelToken::new(), &|_| {}).unwrap();
    match ctx.finish(r).unwrap() {
        JobOutput::Toolpath(tp) => tp,
        other => panic!("{other:?}"),
    }
}

/// Points along every move, at most `step` apart, with the move's kind.
fn samples(tp: &Toolpath, step: f64) -> Vec<(MoveKind, Point3)> {
    let mut out = Vec::new();
    let mut from = tp.start;
    for m in &tp.moves {
        let d = m.to - from;
        let len = (d.x * d.x + d.y * d.y + d.z * d.z).sqrt();
        let n = (len / step).ceil().max(1.0) as usize;
        for k in 1..=n {
            out.push((m.kind, from + d * (k as f64 / n as f64)));
        }
        from = m.to;
    }
    out
}

#[test]
fn roughing_never_enters_the_model_plus_allowance_and_stays_by_the_stock() {
    let s = setup();
    // A V-bit cannot leave an allowance (its grown shape is not a V-bit), so it touches.
    for (cutter, pattern, allowance) in [
        (FLAT_6, ClearPattern::Offset, 0.3),
        (FLAT_6, ClearPattern::Zigzag, 0.3),
        (
            Cutter::Bull {
                diameter: 6.0,
                corner_radius: 1.0,
            },
            ClearPattern::Offset,
            0.3,
        ),
        (Cutter::Ball { diameter: 6.0 }, ClearPattern::Offset, 0.3),
        (
            Cutter::VBit {
                diameter: 6.0,
                included_angle: 90.0,
            },
            ClearPattern::Zigzag,
            0.0,
        ),
    ] {
        let ctx = rough_job(&s, cutter, pattern, allowance);
        let tp = toolpath(&ctx, 2);
        assert!(
            tp.moves.len() > 100,
            "{cutter} {pattern:?}: {} moves",
            tp.moves.len()
        );
        // The tool grown by the allowance must not cut the model: along every move, exactly
        // (the swept test), its drop height stays at or below the move.
        let dc =
            DropCutter::with_allowance(&s.mesh, &s.index, cutter, f64::NEG_INFINITY, allowance)
                .unwrap();
        let mut from = tp.start;
        for m in &tp.moves {
            let rise = dc.max_rise_along(from, m.to, 1e-6);
            assert!(
                rise <= 1e-6,
                "{cutter} {pattern:?}: {:?} from {from:?} to {:?} cuts {rise} into model + allowance",
                m.kind,
                m.to
            );
            from = m.to;
        }
        let mut closest = f64::INFINITY;
        for (kind, p) in samples(&tp, 0.2) {
            let h = dc.at(p.x, p.y);
            assert!(
                h <= p.z + 1e-6,
                "{cutter} {pattern:?}: {kind:?} at {p:?} is {} into model + allowance",
                h - p.z
            );
            closest = closest.min(p.z - h);
            if kind != MoveKind::Rapid {
                // The axis may go as far past the stock's sides as the tool's edge reaches
                // back to them, never further.
                let st = s.stock.xy().grown(cutter.radius());
                assert!(
                    p.x >= st.xmin - 1e-9
                        && p.x <= st.xmax + 1e-9
                        && p.y >= st.ymin - 1e-9
                        && p.y <= st.ymax + 1e-9,
                    "{p:?} outside the stock grown by the tool radius"
                );
            }
        }
        // And it gets close: roughing that stays a millimetre away would pass the test above.
        assert!(
            closest < 0.05,
            "{cutter} {pattern:?}: never closer than {closest}"
        );
    }
}

#[test]
fn entries_are_ramps_never_plunges_into_material() {
    let s = setup();
    let ctx = rough_job(&s, FLAT_6, ClearPattern::Offset, 0.3);
    let tp = toolpath(&ctx, 2);
    // Layers go top down: material below the deepest height cut so far is uncut. A plunge may
    // only come down to that height (through air); anything deeper must be a ramp.
    let mut deepest = s.stock.max.z;
    let mut from = tp.start;
    let mut ramps = 0;
    for m in &tp.moves {
        match m.kind {
            MoveKind::Plunge => assert!(
                m.to.z >= deepest - 1e-9,
                "plunge to {:?} below {deepest}",
                m.to
            ),
            MoveKind::Cut => {
                let horizontal = ((m.to.x - from.x).powi(2) + (m.to.y - from.y).powi(2)).sqrt();
                let dz = from.z - m.to.z;
                if dz > 1e-9 {
                    assert!(
                        dz <= horizontal * 3f64.to_radians().tan() + 1e-9,
                        "descent steeper than the ramp angle: {from:?} -> {:?}",
                        m.to
                    );
                    ramps += 1;
                }
                deepest = deepest.min(m.to.z);
            }
            MoveKind::Rapid => {}
        }
        from = m.to;
    }
    assert!(ramps > 5, "{ramps} ramp moves");
}

#[test]
fn first_layer_is_cleared_everywhere_away_from_the_model() {
    let s = setup();
    let cutter = FLAT_6;
    for pattern in [ClearPattern::Offset, ClearPattern::Zigzag] {
        let ctx = rough_job(&s, cutter, pattern, 0.3);
        let tp = toolpath(&ctx, 2);
        let Operation::Rough(spec) = &ctx.spec().operation else {
            unreachable!()
        };
        let z = spec.contours.levels[0];
        let cuts: Vec<(Point3, Point3)> = {
            let mut from = tp.start;
            let mut v = Vec::new();
            for m in &tp.moves {
                if m.kind == MoveKind::Cut && (m.to.z - z).abs() < 1e-9 && (from.z - z).abs() < 1e-9
                {
                    v.push((from, m.to));
                }
                from = m.to;
            }
            v
        };
        let dist = |p: Point3, (a, b): (Point3, Point3)| {
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            let l2 = dx * dx + dy * dy;
            let t = if l2 > 0.0 {
                (((p.x - a.x) * dx + (p.y - a.y) * dy) / l2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            ((a.x + t * dx - p.x).powi(2) + (a.y + t * dy - p.y).powi(2)).sqrt()
        };
        let dc = DropCutter::new(
            &s.mesh,
            &s.index,
            Cutter::Flat { diameter: 0.2 },
            f64::NEG_INFINITY,
        );
        let st = &s.stock;
        let mut checked = 0;
        let mut x = st.min.x + 0.5;
        while x < st.max.x {
            let mut y = st.min.y + 0.5;
            while y < st.max.y {
                // Material at this layer that is well away from the model (8 mm: tool, allowance
                // and margin) must be under the tool somewhere.
                let near_model = dc.at(x, y) > z - 1.0 || {
                    let big = DropCutter::new(
                        &s.mesh,
                        &s.index,
                        Cutter::Flat { diameter: 16.0 },
                        f64::NEG_INFINITY,
                    );
                    big.at(x, y) > z
                };
                if !near_model {
                    let p = Point3::new(x, y, z);
                    let d = cuts
                        .iter()
                        .map(|&c| dist(p, c))
                        .fold(f64::INFINITY, f64::min);
                    assert!(
                        d <= 3.0 + 1e-9,
                        "{pattern:?}: ({x}, {y}) at z {z} left uncut ({d} from the nearest pass)"
                    );
                    checked += 1;
                }
                y += 1.0;
            }
            x += 1.0;
        }
        assert!(checked > 100, "{checked} points checked");
    }
}

#[test]
fn roughing_is_bit_identical_for_one_and_two_threads() {
    let s = setup();
    let ctx = rough_job(&s, FLAT_6, ClearPattern::Zigzag, 0.5);
    assert_eq!(toolpath(&ctx, 1), toolpath(&ctx, 2));
}
