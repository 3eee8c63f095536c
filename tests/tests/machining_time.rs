//! The planner's machining time on a real program: a raster finish of the default part is
//! slower than its length ÷ feed on a hobby machine, and its estimate is exact whatever the
//! look-ahead window (the same program split into operations that stop costs more, never
//! less). The closed-form cases are in `millpond_core::planner`'s own tests.

use millpond_core::job::JobOutput;
use millpond_core::planner::{MachineProfile, estimate_time};
use millpond_core::runner::run_local;
use millpond_core::toolpath::Toolpath;
use millpond_core::{CancelToken, Feeds, JobContext, Mesh, TriangleIndex, models};
use std::sync::Arc;

fn raster_of_default_part(step: f64, sampling: f64) -> Toolpath {
    let mesh = Arc::new(Mesh::from_triangles(models::default_part(), "default part").unwrap());
    let index = Arc::new(TriangleIndex::new(&mesh));
    let spec = millpond_tests::pool::raster_spec_of(&mesh, step, sampling);
    let ctx = JobContext::new(mesh, index, spec).unwrap();
    let results = run_local(&ctx, 2, &CancelToken::new(), &|_| {}).unwrap();
    match ctx.finish(results) {
        Ok(JobOutput::Toolpath(tp)) => tp,
        other => panic!("a raster job gives a toolpath, got {other:?}"),
    }
}

#[test]
fn a_raster_finish_takes_longer_than_length_over_feed() {
    let tp = raster_of_default_part(0.5, 0.1);
    let feeds = Feeds::default();
    let old = tp.stats(&feeds).machining_time_s;
    let hobby = estimate_time(&tp, &feeds, &MachineProfile::hobby());
    let stiff = estimate_time(&tp, &feeds, &MachineProfile::stiff());
    println!(
        "{} moves: length ÷ feed {old:.0} s, hobby {:.0} s ({:.2}×), stiff {:.0} s ({:.2}×); \
         without acceleration {:.0} s",
        tp.moves.len(),
        hobby.total_s,
        hobby.total_s / old,
        stiff.total_s,
        stiff.total_s / old,
        hobby.full_speed_s
    );
    assert!(hobby.total_s > old, "{hobby:?} against {old}");
    assert!(hobby.total_s > stiff.total_s);
    assert!(hobby.total_s >= hobby.full_speed_s);
    // Cutting at 1000 mm/min is never faster than length ÷ feed.
    let cut = tp.stats(&feeds).cut_length;
    assert!(hobby.cutting_s >= 60.0 * cut / feeds.feed);

    // Cut into pieces that each start and end at rest, the program can only take longer;
    // planned in one, the same moves give the same time however the look-ahead window
    // falls (the window is exact, not an approximation).
    let half = tp.moves.len() / 2;
    let first = Toolpath {
        start: tp.start,
        moves: tp.moves[..half].to_vec(),
    };
    let second = Toolpath {
        start: first.end(),
        moves: tp.moves[half..].to_vec(),
    };
    let m = MachineProfile::hobby();
    let split =
        estimate_time(&first, &feeds, &m).total_s + estimate_time(&second, &feeds, &m).total_s;
    assert!(split >= hobby.total_s - 1e-9, "{split} < {}", hobby.total_s);
    assert!(
        split - hobby.total_s < 1.0,
        "one stop costs {} s",
        split - hobby.total_s
    );
}
