//! A job file of format 1, kept in the repository as it was first written, loads with
//! every later version (issue: "a job from an older format version loads").

use millpond_core::job_file::{Job, ModelFile};
use millpond_core::placement::{Axis3, Placement, Units};
use millpond_core::setup::{Stepover, Strategy, XyZero, ZZero};
use std::path::Path;

#[test]
fn the_format_1_file_loads_with_every_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format-1.millpond");
    let job = Job::load(&path).unwrap();
    let ModelFile::Stl { path: model, hash } = &job.model.file else {
        panic!("an STL model: {:?}", job.model.file)
    };
    assert_eq!(model, &path.parent().unwrap().join("parts/lever.stl"));
    assert_eq!(hash.unwrap().0, [0xab; 32]);
    assert_eq!(job.model.units, Units::Inches);
    assert_eq!(
        job.model.placement,
        [
            Placement::Rotate(Axis3::Z),
            Placement::Mirror(Axis3::X),
            Placement::Center
        ]
    );
    assert_eq!((job.stock.margin_xy, job.stock.margin_bottom), (3.0, 0.25));
    assert_eq!(
        (job.stock.zero.xy, job.stock.zero.z),
        (XyZero::StockFrontLeft, ZZero::StockTop)
    );
    assert_eq!(
        (job.output.post.as_str(), job.output.spindle_dwell_s),
        ("grbl", 2.5)
    );
    assert_eq!(job.tools.len(), 2);
    let mill = &job.tools[1];
    assert_eq!(
        (mill.number, mill.flutes, mill.stick_out, mill.auto_name),
        (7, 3, 22.0, false)
    );
    assert_eq!(job.operations.len(), 3);
    let rough = &job.operations[0];
    assert_eq!(rough.tool, mill.id);
    assert!(!rough.visible && rough.enabled);
    assert_eq!(rough.feeds.unwrap().feed, 1234.5);
    let Strategy::Roughing(r) = &rough.strategy else {
        panic!()
    };
    assert_eq!(r.stepover, Stepover::Percent(40.0));
    let Strategy::RasterFinishing(f) = &job.operations[1].strategy else {
        panic!()
    };
    assert_eq!(f.bounds.unwrap().xmax, 10.5);
    assert!(!job.operations[1].enabled);
    assert_eq!(job.operations[1].name, "Finish \"fine\"");
    let Strategy::WaterlineFinishing(w) = &job.operations[2].strategy else {
        panic!()
    };
    assert_eq!(w.allowance, 0.05);
}
