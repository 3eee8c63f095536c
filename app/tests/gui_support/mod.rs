//! Shared by the egui_kittest UI tests (gui_*.rs): a harness around the real
//! [`MillpondApp`] with its own temporary config folder, dropped-file events, STL writers and
//! a bounded wait for background work.
#![allow(dead_code)] // Each test binary uses a different part.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use millpond::gui::model::Model;
use millpond::gui::operations::Tool;
use millpond::gui::{AppOptions, MillpondApp};
use millpond_core::{Point3, Triangle};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The app in a harness, and the config folder it owns (removed on drop).
pub struct TestApp {
    pub harness: Harness<'static, MillpondApp>,
    pub dir: tempfile::TempDir,
}

/// Builds the app exactly as `millpond` does, with settings in a fresh temporary folder.
pub fn app() -> TestApp {
    let dir = tempfile::tempdir().expect("temporary config folder");
    app_in(dir)
}

/// Builds the app with settings in `dir` (prepared by the test).
pub fn app_in(dir: tempfile::TempDir) -> TestApp {
    let options = AppOptions::with_config_dir(dir.path());
    let harness = Harness::builder()
        .with_size(egui::vec2(1400.0, 1000.0))
        .with_max_steps(40)
        .build_eframe(move |cc| MillpondApp::new(cc, options));
    let mut t = TestApp { harness, dir };
    t.harness.run_ok();
    t
}

/// Builds the app with settings in `config` (which outlives this app: a second start of
/// the app in the same folder sees what the first left).
pub fn app_in_path(config: &Path) -> TestApp {
    std::fs::create_dir_all(config).expect("config folder");
    let options = AppOptions::with_config_dir(config);
    let harness = Harness::builder()
        .with_size(egui::vec2(1400.0, 1000.0))
        .with_max_steps(40)
        .build_eframe(move |cc| MillpondApp::new(cc, options));
    let mut t = TestApp {
        harness,
        dir: tempfile::tempdir().expect("temporary folder"),
    };
    t.harness.run_ok();
    t
}

impl TestApp {
    pub fn app(&self) -> &MillpondApp {
        self.harness.state()
    }

    /// The chunks of the job that finished last.
    pub fn last_job_chunks(&self) -> u64 {
        let row = self.app().compute.finished.last().expect("a finished job");
        u64::from(row.progress.chunks_total)
    }

    /// The default job's raster finishing operation (its second, after roughing; the one
    /// selected, which Generate computes).
    pub fn raster(&self) -> u64 {
        let a = self.app();
        let op = a
            .doc()
            .operations
            .list
            .iter()
            .find(|o| {
                matches!(
                    o.strategy,
                    millpond::gui::operations::Strategy::RasterFinishing(_)
                )
            })
            .expect("the default job has a raster finishing operation");
        assert_eq!(
            a.doc().operations.selected,
            Some(op.id),
            "the raster is selected"
        );
        op.id
    }

    /// Changes the raster finishing operation's parameters (one command, as the editor
    /// sends), to make a test's job shorter or longer.
    pub fn set_raster(
        &mut self,
        change: impl FnOnce(&mut millpond::gui::operations::RasterParams),
    ) {
        let id = self.raster();
        self.app_mut()
            .edit_operation(id, |op| match &mut op.strategy {
                millpond::gui::operations::Strategy::RasterFinishing(p) => change(p),
                _ => unreachable!("found as raster finishing"),
            });
    }

    pub fn app_mut(&mut self) -> &mut MillpondApp {
        self.harness.state_mut()
    }

    /// Presses Simulate (scrolled to, as a user would) and waits until the simulation is
    /// over (`simulation.last` then holds it).
    pub fn simulate(&mut self) {
        self.harness.get_by_label("Simulate").scroll_to_me();
        self.harness.run_ok();
        self.harness.get_by_label("Simulate").click();
        assert!(
            self.run_until(Duration::from_secs(120), |a| !a.simulation.busy()
                && a.simulation.last.is_some()),
            "no simulation: {}",
            self.texts()
        );
        self.harness.run_ok();
    }

    /// Runs frames until `done` holds or `timeout` passes; returns whether it held.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&MillpondApp) -> bool,
    ) -> bool {
        let t0 = Instant::now();
        loop {
            self.harness.step();
            if done(self.harness.state()) {
                return true;
            }
            if t0.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What a drag and drop of `path` onto the window delivers.
    pub fn drop_file(&mut self, path: &Path) {
        self.harness
            .input_mut()
            .dropped_files
            .push(Arc::new(DroppedPath(path.to_path_buf())));
    }

    /// Every label text in the window (for error messages).
    pub fn texts(&self) -> String {
        use egui_kittest::kittest::{NodeT, Queryable};
        self.harness
            .root()
            .query_all_by(|_| true)
            .filter_map(|n| n.accesskit_node().label())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    pub fn has_text(&self, s: &str) -> bool {
        use egui_kittest::kittest::Queryable;
        self.harness.query_all_by_label_contains(s).next().is_some()
    }

    /// Selects the first tool of the library that `which` accepts, as a click in its list
    /// does; returns its id.
    pub fn select_tool(&mut self, which: impl Fn(&Tool) -> bool) -> u64 {
        let id = self
            .app()
            .doc()
            .tools
            .tools
            .iter()
            .find(|x| which(x))
            .expect("the default library has such a tool")
            .id;
        self.app_mut().selected_tool = Some(id);
        id
    }

    /// Asserts that each of `labels` shows in the window.
    pub fn assert_shown(&self, labels: &[&str]) {
        for label in labels {
            assert!(self.has_text(label), "no \"{label}\": {}", self.texts());
        }
    }

    /// Runs frames until the document has a model and `done` holds of it, or `timeout`
    /// passes; returns whether it held.
    pub fn run_until_model(&mut self, timeout: Duration, done: impl Fn(&Model) -> bool) -> bool {
        self.run_until(timeout, |a| a.doc().model.as_ref().is_some_and(&done))
    }
}

/// `millpond toolpath --quiet --job JOB -o OUT` run by the `millpond` binary these tests were
/// built with, its command set up further by `configure` (its environment); asserts it
/// succeeded and returns the program it wrote.
pub fn cli_program(job: &Path, out: &Path, configure: impl FnOnce(&mut Command)) -> Vec<u8> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_millpond"));
    cmd.args(["toolpath", "--quiet", "--job"])
        .arg(job)
        .arg("-o")
        .arg(out);
    configure(&mut cmd);
    let run = cmd.output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read(out).unwrap()
}

/// A file handle like the one eframe gives for a dropped file.
#[derive(Debug)]
struct DroppedPath(PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Writes `triangles` as a binary STL.
pub fn write_stl(path: &Path, triangles: &[Triangle]) {
    let mut bytes = Vec::new();
    millpond_core::stl::write_binary(&mut bytes, "millpond gui test", triangles).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A sphere of radius 10 at (0, 0, 10): 1280 triangles.
pub fn sphere() -> Vec<Triangle> {
    millpond_core::models::geodesic_sphere(Point3::new(0.0, 0.0, 10.0), 10.0, 8)
}
