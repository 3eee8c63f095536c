//! Links within an operation (ARCHITECTURE.md §5): hops at the clearance height above the
//! stock top only where the move there is clear of the model, links that stay down along the
//! surface, fewer retracts and shorter rapids than linking by the safe height, and nothing
//! rapid through the model or the material left — on a CAD-like part with integer
//! coordinates (pockets, walls) and a terrain relief with fine cells.

use millpond_core::geom::{Point3, Triangle};
use millpond_core::job::{JobOutput, Operation};
use millpond_core::links::{LINK_CLEARANCE, Links};
use millpond_core::raster::Direction;
use millpond_core::setup::{RasterParams, RoughingParams, Setup, Stock, Strategy, WaterlineParams};
use millpond_core::stock_model::{ProgramStep, check_program};
use millpond_core::toolpath::{Feeds, MoveKind, Toolpath};
use millpond_core::{
    CancelToken, Cutter, DropCutter, JobContext, JobSpec, Mesh, TriangleIndex, models, runner,
};
use std::sync::Arc;

/// A machined plate, every coordinate an integer: a 60 × 40 plate 10 mm thick with a pocket
/// 4 mm deep and a slot, a thin wall 14 mm tall and a block standing on it.
fn cad_part() -> Vec<Triangle> {
    let b = |x0: f64, y0: f64, z0: f64, x1: f64, y1: f64, z1: f64| {
        models::box_solid(Point3::new(x0, y0, z0), Point3::new(x1, y1, z1))
    };
    [
        b(0.0, 0.0, 0.0, 60.0, 40.0, 4.0),
        // Around the pocket (8..28, 8..22) and the slot (34..56, 4..6).
        b(0.0, 0.0, 4.0, 60.0, 4.0, 10.0),
        b(0.0, 6.0, 4.0, 34.0, 8.0, 10.0),
        b(56.0, 4.0, 4.0, 60.0, 8.0, 10.0),
        b(34.0, 6.0, 4.0, 56.0, 8.0, 10.0),
        b(0.0, 4.0, 4.0, 34.0, 6.0, 10.0),
        b(0.0, 22.0, 4.0, 60.0, 40.0, 10.0),
        b(0.0, 8.0, 4.0, 8.0, 22.0, 10.0),
        b(28.0, 8.0, 4.0, 60.0, 22.0, 10.0),
        // A thin wall and a block.
        b(36.0, 26.0, 10.0, 38.0, 36.0, 24.0),
        b(44.0, 12.0, 10.0, 54.0, 18.0, 18.0),
    ]
    .concat()
}

struct Model {
    name: &'static str,
    mesh: Arc<Mesh>,
    index: Arc<TriangleIndex>,
}

fn model(name: &'static str, tris: Vec<Triangle>) -> Model {
    let mesh = Mesh::from_triangles(tris, name).unwrap();
    let index = TriangleIndex::new(&mesh);
    Model {
        name,
        mesh: Arc::new(mesh),
        index: Arc::new(index),
    }
}

fn toolpath(m: &Model, spec: &JobSpec, threads: usize) -> Toolpath {
    let ctx = JobContext::new(m.mesh.clone(), m.index.clone(), spec.clone()).unwrap();
    let r = runner::run_local(&ctx, threads, &CancelToken::new(), &|_| {}).unwrap();
    match ctx.finish(r).unwrap() {
        JobOutput::Toolpath(tp) => tp,
        other => panic!("{other:?}"),
    }
}

/// The same job with every link by the safe height (how Millpond linked before).
fn at_safe_height(spec: &JobSpec) -> JobSpec {
    let mut s = spec.clone();
    match &mut s.operation {
        Operation::Raster(r) => r.links = Links::at_safe_height(r.safe_z),
        Operation::Waterline(w) => w.links = Links::at_safe_height(w.safe_z),
        Operation::Rough(r) => r.links = Links::at_safe_height(r.safe_z),
        other => panic!("{other:?}"),
    }
    s
}

fn links_of(spec: &JobSpec) -> (Links, f64) {
    match &spec.operation {
        Operation::Raster(r) => (r.links, r.safe_z),
        Operation::Waterline(w) => (w.links, w.safe_z),
        Operation::Rough(r) => (r.links, r.safe_z),
        other => panic!("{other:?}"),
    }
}

/// The worst the dropped cutter rises above a straight move, sampled every 0.02 mm: an
/// independent check of the exact swept test the links rely on.
fn sampled_rise(dc: &DropCutter<'_>, a: Point3, b: Point3) -> f64 {
    millpond_tests::sampled_rise(dc, a, b, 0.02)
}

#[test]
fn links_hop_low_or_stay_down_only_where_proven_clear_and_cut_rapids() {
    let models = [
        model("cad-part", cad_part()),
        model("terrain", models::terrain_relief(110)),
    ];
    let raster = |direction| {
        Strategy::RasterFinishing(RasterParams {
            sampling: 0.2,
            direction,
            ..RasterParams::default()
        })
    };
    let jobs: [(&str, Strategy, Cutter); 4] = [
        (
            "raster zigzag",
            raster(Direction::Zigzag),
            Cutter::Ball { diameter: 3.0 },
        ),
        (
            "raster climb",
            raster(Direction::Climb),
            Cutter::Ball { diameter: 3.0 },
        ),
        (
            "waterline",
            Strategy::WaterlineFinishing(WaterlineParams {
                sampling: 0.2,
                stepdown: 1.0,
                ..WaterlineParams::default()
            }),
            Cutter::Ball { diameter: 3.0 },
        ),
        (
            "roughing",
            Strategy::Roughing(RoughingParams {
                sampling: 0.25,
                ..RoughingParams::default()
            }),
            Cutter::Flat { diameter: 6.0 },
        ),
    ];
    let feeds = Feeds::default();
    let (mut retracts, mut rapid) = ([0usize; 2], [0.0f64; 2]);
    let (mut low_hops, mut stay_downs) = (0usize, 0usize);
    for m in &models {
        let stock = Stock::around_model(2.0, 1.0, 0.0);
        let setup = Setup::new(m.mesh.hash(), m.mesh.bounds(), &stock).unwrap();
        let top = setup.stock.max.z;
        for (name, strategy, cutter) in &jobs {
            let what = format!("{} {name}", m.name);
            let spec = setup.plan(strategy, *cutter).unwrap();
            let (links, safe_z) = links_of(&spec);
            assert_eq!(links.clearance_z, top + LINK_CLEARANCE, "{what}");
            assert!(links.clearance_z < safe_z, "{what}");
            let new = toolpath(m, &spec, 2);
            let old = toolpath(m, &at_safe_height(&spec), 2);
            assert_eq!(
                new,
                toolpath(m, &spec, 1),
                "{what}: thread count changed it"
            );

            // Every rapid is clear of the model (the tool itself, sampled densely), and every
            // rapid across is at the clearance height or above: above the stock top.
            let dc = DropCutter::new(&m.mesh, &m.index, *cutter, f64::NEG_INFINITY);
            let mut from = new.start;
            for (i, mv) in new.moves.iter().enumerate() {
                let across = from.x != mv.to.x || from.y != mv.to.y;
                if mv.kind == MoveKind::Rapid {
                    let rise = sampled_rise(&dc, from, mv.to);
                    assert!(
                        rise <= 1e-6,
                        "{what}: rapid {i} {from:?} -> {:?} cuts {rise} into the model",
                        mv.to
                    );
                    if across {
                        assert!(
                            from.z == mv.to.z && from.z >= links.clearance_z,
                            "{what}: rapid {i} across {from:?} -> {:?} below the clearance height",
                            mv.to
                        );
                        if from.z < safe_z {
                            low_hops += 1;
                        }
                    }
                }
                from = mv.to;
            }

            // Links that stay down: the moves of the new path that the old one reached by a
            // hop. Both cut the same passes in the same order, so walk them side by side:
            // where the old path lifts, the new one runs to the same point the old one plunges
            // to; every move on the way must be clear of the model.
            let (mut i, mut j) = (0, 0);
            let (mut at_old, mut at_new) = (old.start, new.start);
            while i < old.moves.len() && j < new.moves.len() {
                let (o, n) = (old.moves[i], new.moves[j]);
                if o == n {
                    (at_old, at_new) = (o.to, n.to);
                    i += 1;
                    j += 1;
                    continue;
                }
                assert_eq!(at_old, at_new, "{what}: paths parted at old move {i}");
                // The old hop: rapids then a plunge to `to`.
                let mut k = i;
                while old.moves[k].kind == MoveKind::Rapid {
                    k += 1;
                }
                assert_eq!(old.moves[k].kind, MoveKind::Plunge, "{what}: old move {k}");
                let to = old.moves[k].to;
                // The new link, ending at the same point.
                let mut l = j;
                let mut p = at_new;
                let stays = n.kind == MoveKind::Cut;
                loop {
                    let mv = new.moves[l];
                    if stays {
                        assert_eq!(mv.kind, MoveKind::Cut, "{what}: new move {l}");
                        let rise = sampled_rise(&dc, p, mv.to);
                        assert!(
                            rise <= 1e-6,
                            "{what}: link move {l} {p:?} -> {:?} cuts {rise} into the model",
                            mv.to
                        );
                    }
                    p = mv.to;
                    l += 1;
                    if p == to {
                        break;
                    }
                }
                if stays {
                    stay_downs += 1;
                }
                (at_old, at_new) = (to, to);
                i = k + 1;
                j = l;
            }
            assert_eq!(
                (old.moves.len() - i, new.moves.len() - j),
                (0, 0),
                "{what}: one path has moves the other lacks"
            );

            // Nothing rapid through the material left, with the stock as the program finds it.
            let posted = check_program(
                setup.stock,
                &[ProgramStep {
                    cutter: *cutter,
                    max_depth_of_cut: 1e3,
                    toolpath: &new,
                }],
            )
            .unwrap();
            let report = posted[0].1;
            assert_eq!(
                report.rapids_in_material, 0,
                "{what}: {:?}",
                report.first_rapid_in_material
            );

            let (s_new, s_old) = (new.stats(&feeds), old.stats(&feeds));
            eprintln!(
                "{what}: retracts {} -> {}, rapid {:.0} -> {:.0} mm, cut {:.0} -> {:.0} mm, \
                 time {:.0} -> {:.0} s",
                s_old.retracts,
                s_new.retracts,
                s_old.rapid_length,
                s_new.rapid_length,
                s_old.cut_length,
                s_new.cut_length,
                s_old.machining_time_s,
                s_new.machining_time_s
            );
            assert!(s_new.retracts <= s_old.retracts, "{what}");
            assert!(s_new.rapid_length <= s_old.rapid_length + 1e-9, "{what}");
            retracts[0] += s_old.retracts;
            retracts[1] += s_new.retracts;
            rapid[0] += s_old.rapid_length;
            rapid[1] += s_new.rapid_length;
        }
    }
    eprintln!(
        "all: retracts {} -> {}, rapid {:.0} -> {:.0} mm; {low_hops} hops at the clearance \
         height, {stay_downs} links staying down",
        retracts[0], retracts[1], rapid[0], rapid[1]
    );
    assert!(retracts[1] < retracts[0] && rapid[1] < rapid[0]);
    assert!(
        low_hops > 10 && stay_downs > 10,
        "{low_hops} low hops, {stay_downs} stay-downs"
    );
}
