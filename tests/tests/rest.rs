//! Rest roughing end to end (ARCHITECTURE.md §6.2): a 2 mm end mill after a 6 mm one on a CAD
//! part with integer coordinates and a slot 4 mm wide, which the big tool cannot enter.
//! Through `millpond toolpath` and `millpond simulate`: the rest operation removes what a full
//! roughing with the small tool would remove after the big one, leaves the same material,
//! and cuts almost nothing in air, where the full roughing re-cuts everything the big tool
//! cleared. The setting survives a job file.

use millpond_core::{Point3, Triangle, models, stl};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A 40 × 30 × 5 mm plate with two ribs 3 mm wide and 7 mm tall, 4 mm apart.
fn slotted_plate() -> Vec<Triangle> {
    let p = Point3::new;
    let mut t = models::box_solid(p(0.0, 0.0, 0.0), p(40.0, 30.0, 5.0));
    t.extend(models::box_solid(p(10.0, 5.0, 5.0), p(13.0, 25.0, 12.0)));
    t.extend(models::box_solid(p(17.0, 5.0, 5.0), p(20.0, 25.0, 12.0)));
    t
}

fn millpond(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(millpond_tests::millpond_bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run millpond");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "millpond {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The second operation's figures and the whole program's verification, from a job whose
/// second operation is `second`.
fn second_operation(dir: &Path, name: &str, second: &str) -> (Value, Value) {
    let job = format!("{name}.millpond");
    millpond(
        dir,
        &[
            "toolpath",
            "plate.stl",
            "--stock-margin",
            "3,1",
            "--quiet",
            "-o",
            &format!("{name}.ngc"),
            "--save-job",
            &job,
            "--op",
            "rough,tool=flat:6,stepdown=2,t=1",
            "--op",
            second,
        ],
    );
    let line = millpond(dir, &["simulate", &job, "--quiet"]);
    let v: Value = serde_json::from_str(line.trim()).unwrap();
    (
        v["operations"][1].clone(),
        v["total"]["verification"].clone(),
    )
}

#[test]
fn rest_roughing_cuts_what_the_big_tool_left_and_not_its_air() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = std::fs::File::create(d.join("plate.stl")).unwrap();
    stl::write_binary(file, "plate", &slotted_plate()).unwrap();

    let (rest, rest_check) =
        second_operation(d, "rest", "rough,tool=flat:2,stepdown=2,t=2,rest=0.1");
    let (full, full_check) = second_operation(d, "full", "rough,tool=flat:2,stepdown=2,t=2");
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"));
    eprintln!(
        "rest: removed {:.1} mm3, feed {:.1} mm, in air {:.1} mm; full: removed {:.1} mm3, \
         feed {:.1} mm, in air {:.1} mm",
        f(&rest, "removed_mm3"),
        f(&rest, "feed_length_mm"),
        f(&rest, "air_cut_mm"),
        f(&full, "removed_mm3"),
        f(&full, "feed_length_mm"),
        f(&full, "air_cut_mm"),
    );
    // The slot alone is 4 × 20 × 7 mm less what the allowance keeps: the big tool cannot
    // enter it, the small one clears it.
    assert!(f(&rest, "removed_mm3") > 300.0, "{rest}");
    // Everything the full roughing removes, the rest roughing removes too ...
    assert!(
        f(&rest, "removed_mm3") >= 0.98 * f(&full, "removed_mm3"),
        "rest {rest}\nfull {full}"
    );
    let left = |v: &Value| v["remaining"]["volume_mm3"].as_f64().unwrap();
    assert!(
        left(&rest_check) <= left(&full_check) * 1.01 + 1.0,
        "rest leaves {rest_check}\nfull leaves {full_check}"
    );
    // ... in a small part of the cut length, and the full roughing cuts mostly air.
    assert!(
        f(&rest, "feed_length_mm") < 0.1 * f(&full, "feed_length_mm"),
        "rest {rest}\nfull {full}"
    );
    assert!(
        f(&rest, "air_cut_mm") < 0.35 * f(&rest, "feed_length_mm"),
        "{rest}"
    );
    assert!(
        f(&full, "air_cut_mm") > 0.9 * f(&full, "feed_length_mm"),
        "{full}"
    );
    for (v, check) in [(&rest, &rest_check), (&full, &full_check)] {
        assert_eq!(v["rapids_in_material"], 0, "{v}");
        assert_eq!(check["gouge_cells"], 0, "{check}");
    }

    // The job file says it is rest roughing, and runs the same program again.
    let job = std::fs::read_to_string(d.join("rest.millpond")).unwrap();
    assert!(job.contains("rest = 0.1"), "{job}");
    let full_job = std::fs::read_to_string(d.join("full.millpond")).unwrap();
    assert!(!full_job.contains("rest ="), "{full_job}");
    millpond(
        d,
        &[
            "toolpath",
            "--job",
            "rest.millpond",
            "--quiet",
            "-o",
            "again.ngc",
        ],
    );
    assert_eq!(
        std::fs::read(d.join("rest.ngc")).unwrap(),
        std::fs::read(d.join("again.ngc")).unwrap()
    );
}
