//! UI tests of the Process Statistics panel in local mode: this computer's row and one row per
//! worker thread, with chunks and compute time measured per chunk, refreshed while a job runs,
//! and tables whose rows on screen follow a click on a column header.

mod gui_support;

use egui_kittest::kittest::Queryable;
use gui_support::{TestApp, app_in};
use millpond::gui::preferences::Preferences;
use millpond::gui::stats_panel::format_seconds;
use std::time::{Duration, Instant};

/// Which of workers 1 and 2 is drawn higher in the workers table.
fn top_worker(t: &TestApp) -> u32 {
    let y = |w: u32| t.harness.get_by_label(&format!("worker {w}")).rect().top();
    if y(1) < y(2) { 1 } else { 2 }
}

#[test]
fn statistics_show_this_computers_workers_live_and_sort_by_a_column() {
    // Two local workers whatever the machine, so there are two worker rows to sort.
    let dir = tempfile::tempdir().unwrap();
    let prefs = Preferences {
        local_workers: 2,
        ..Preferences::default()
    };
    prefs.save(dir.path()).unwrap();
    let mut t = app_in(dir);
    let op = t.raster();
    // About a second of work in many chunks: the panel shows each finished chunk at once
    // (not on a timer), so it is seen while the job runs.
    t.set_raster(|p| p.stepover = 0.03);
    t.harness.get_by_label("Statistics").click();
    t.harness.run_ok();
    assert!(t.has_text("Workers on this computer"), "{}", t.texts());
    assert_eq!(t.app().stats.workers.len(), 2, "idle workers are listed");
    assert_eq!(t.app().stats.hosts[0].chunks_done, 0);

    let click = Instant::now();
    // What the Generate button does (gui_compute clicks it; here the open panel may cover
    // it in the test's window).
    t.app_mut().generate(false);
    // Live refresh: this computer's chunk count rises while the job still runs.
    assert!(
        t.run_until(Duration::from_secs(60), |a| a.compute.is_running()
            && a.stats.hosts[0].chunks_done > 0),
        "the panel never showed chunks while computing: {}",
        t.texts()
    );
    assert!(t.app().stats.workers.iter().any(|w| w.state == "busy"));
    assert!(
        t.run_until(Duration::from_secs(120), |a| a.toolpath(op).is_some()),
        "{}",
        t.texts()
    );
    let wall_s = click.elapsed().as_secs_f64();
    let total = t.last_job_chunks();
    assert!(
        t.run_until(Duration::from_secs(3), |a| a.stats.hosts[0].chunks_done
            == total),
        "host row: {:?}, job of {total} chunks",
        t.app().stats.hosts
    );
    t.harness.run_ok();
    let host = t.app().stats.hosts[0].clone();
    let workers = t.app().stats.workers.clone();
    eprintln!("{total} chunks in {wall_s:.2} s: {host:?} {workers:?}");
    // Measured per chunk on each worker: the rows add up to the host row, and two workers
    // cannot have been busy longer than twice the job's wall time.
    assert_eq!(workers.iter().map(|w| w.chunks_done).sum::<u64>(), total);
    let busy_s: f64 = workers.iter().map(|w| w.compute_s).sum();
    assert!(host.avg_compute_s > 0.0, "{host:?}");
    assert!((busy_s / total as f64 - host.avg_compute_s).abs() < 1e-9);
    assert!(busy_s <= 2.0 * wall_s, "{busy_s} s of work in {wall_s} s");
    for w in &workers {
        assert_eq!(w.state, "idle");
        assert!(w.chunks_done == 0 || w.avg_compute_s > 0.0, "{w:?}");
    }
    assert!(
        t.has_text("worker 1") && t.has_text("worker 2"),
        "{}",
        t.texts()
    );
    assert!(
        t.has_text(&format_seconds(host.avg_compute_s)),
        "compute time per chunk not shown: {}",
        t.texts()
    );

    // Sorting: the rows on screen follow a header click, both ways.
    assert_eq!(top_worker(&t), 1, "sorted by worker number at first");
    let least_busy = if workers[0].compute_s <= workers[1].compute_s {
        workers[0].worker
    } else {
        workers[1].worker
    };
    t.harness.get_by_label("Busy time").click();
    t.harness.run_ok();
    assert_eq!(
        top_worker(&t),
        least_busy,
        "ascending busy time: {workers:?}"
    );
    t.harness.get_by_label("Busy time ^").click();
    t.harness.run_ok();
    assert_eq!(
        top_worker(&t),
        3 - least_busy,
        "descending busy time: {workers:?}"
    );
}
