//! G-code export: every enabled operation that has a toolpath, in machining order, as one
//! program (`millpond_core::gcode::write_program` takes several operations, each with its
//! own tool change), written off the UI thread through a temporary file.

use super::dialogs::{self, PendingDialog};
use millpond_core::gcode::{self, Dialect};
use millpond_core::stock_model::{self, EngagementReport, ProgramStep};
use millpond_core::{Aabb, Cutter, Feeds, MachineProfile, TimeEstimate, Toolpath};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

/// One operation as it goes into the program.
#[derive(Debug, Clone)]
pub struct ExportOp {
    pub name: String,
    pub tool_number: u32,
    pub cutter: Cutter,
    pub feeds: Feeds,
    pub safe_z: f64,
    /// Seconds the spindle gets to reach its speed (the machine's, from Preferences).
    pub spindle_dwell_s: f64,
    /// The deepest the tool may cut in one move, mm (the tool's).
    pub max_depth_of_cut: f64,
    pub toolpath: Arc<Toolpath>,
    /// Its machining time on the machine of Preferences (the toolpath alone, from rest to
    /// rest: `millpond_core::planner::estimate_time`).
    pub time: TimeEstimate,
}

/// What the program will do, shown before exporting.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub operations: usize,
    /// Cutting and plunging, mm.
    pub cut_length: f64,
    pub rapid_length: f64,
    /// The operations' times added up.
    pub time: TimeEstimate,
}

pub fn summarize(ops: &[ExportOp]) -> Summary {
    let mut s = Summary {
        operations: ops.len(),
        ..Summary::default()
    };
    for op in ops {
        let t = op.toolpath.stats(&op.feeds);
        s.cut_length += t.cut_length + t.plunge_length;
        s.rapid_length += t.rapid_length;
        s.time += op.time;
    }
    s
}

pub fn dialect_label(d: Dialect) -> &'static str {
    match d {
        Dialect::LinuxCnc => "LinuxCNC",
        Dialect::Grbl => "GRBL",
    }
}

pub fn default_extension(d: Dialect) -> &'static str {
    match d {
        Dialect::LinuxCnc => "ngc",
        Dialect::Grbl => "nc",
    }
}

/// `ops` machined in order from `stock`: the toolpaths as they are posted (straight-down
/// rapids stopped above the material) and what each did to the stock.
pub fn machined(
    stock: Aabb,
    ops: &[ExportOp],
) -> Result<Vec<(Toolpath, EngagementReport)>, String> {
    let steps: Vec<ProgramStep<'_>> = ops
        .iter()
        .map(|o| ProgramStep {
            cutter: o.cutter,
            max_depth_of_cut: o.max_depth_of_cut,
            toolpath: &o.toolpath,
        })
        .collect();
    stock_model::check_program(stock, &steps)
        .map_err(|e| format!("cannot check the program against the stock: {e}"))
}

/// Writes the program (what the background thread runs). With the stock box, the toolpaths
/// are posted as the program check machines them: straight-down rapids stop above what the
/// operations before left ([`machined`]).
pub fn write(
    path: &Path,
    dialect: Dialect,
    title: &str,
    stock: Option<Aabb>,
    zero: Option<&gcode::WorkZero>,
    machine: &MachineProfile,
    ops: &[ExportOp],
) -> Result<(), String> {
    let checked = stock.map(|s| machined(s, ops)).transpose()?;
    let ops: Vec<gcode::Operation<'_>> = ops
        .iter()
        .enumerate()
        .map(|(k, o)| gcode::Operation {
            name: &o.name,
            tool_number: o.tool_number,
            cutter: o.cutter,
            feeds: o.feeds,
            safe_z: o.safe_z,
            spindle_dwell_s: o.spindle_dwell_s,
            toolpath: checked.as_ref().map_or(&*o.toolpath, |c| &c[k].0),
        })
        .collect();
    crate::common::write_gcode(path, dialect, title, zero, machine, &ops)
        .map_err(|e| format!("{e:#}"))
}

/// A program to write: its operations, for which controller, checked against which stock.
#[derive(Debug)]
pub struct Job {
    pub dialect: Dialect,
    /// The program's title comment (the model's name).
    pub title: String,
    /// With it, the toolpaths are posted as the program check machines them ([`machined`]).
    pub stock: Option<Aabb>,
    /// Where the program's zero is.
    pub zero: Option<gcode::WorkZero>,
    /// The machine the header's time is estimated for.
    pub machine: MachineProfile,
    pub ops: Vec<ExportOp>,
}

/// The export in progress, if any, and how the last one went.
#[derive(Debug, Default)]
pub struct Exporter {
    dialog: Option<(PendingDialog, Job)>,
    writing: Option<Receiver<Result<PathBuf, String>>>,
    /// "Saved …" or the error, for the panel.
    pub last: Option<Result<String, String>>,
    /// Where the last program went, to start the next dialog there.
    pub last_dir: Option<PathBuf>,
}

impl Exporter {
    pub fn busy(&self) -> bool {
        self.dialog.is_some() || self.writing.is_some()
    }

    /// Asks where to save, then writes.
    pub fn start(
        &mut self,
        repaint: &egui::Context,
        browser: dialogs::FileBrowser,
        file_stem: &str,
        job: Job,
    ) {
        let name = format!("{file_stem}.{}", default_extension(job.dialect));
        let recent: Vec<PathBuf> = self.last_dir.iter().cloned().collect();
        let pending = dialogs::choose(
            repaint,
            browser,
            dialogs::Choice::ExportGcode,
            self.last_dir.clone(),
            Some(name),
            recent,
        );
        self.dialog = Some((pending, job));
    }

    /// Writes to `path` without a dialog, off the UI thread.
    pub fn write_to(&mut self, repaint: &egui::Context, path: PathBuf, job: Job) {
        self.spawn_write(repaint, path, job);
    }

    fn spawn_write(&mut self, repaint: &egui::Context, path: PathBuf, job: Job) {
        let (tx, rx) = channel();
        let repaint = repaint.clone();
        std::thread::spawn(move || {
            let r = write(
                &path,
                job.dialect,
                &job.title,
                job.stock,
                job.zero.as_ref(),
                &job.machine,
                &job.ops,
            )
            .map(|()| path);
            let _ = tx.send(r);
            repaint.request_repaint();
        });
        self.writing = Some(rx);
    }

    /// Draws the built-in file browser if that is the dialog, and starts writing once a
    /// place is chosen (from the UI pass). Returns why the built-in browser took over, once.
    pub fn show_dialog(&mut self, ctx: &egui::Context) -> Option<String> {
        let (pending, _) = self.dialog.as_mut()?;
        let answer = pending.show(ctx);
        let notice = pending.take_notice();
        if let Some(answer) = answer
            && let Some((_, job)) = self.dialog.take()
        {
            match answer {
                Some(path) => self.spawn_write(ctx, path, job),
                None => self.last = Some(Err("export cancelled".into())),
            }
        }
        notice
    }

    /// Collects a finished write.
    pub fn poll(&mut self) {
        if let Some(rx) = &self.writing {
            match rx.try_recv() {
                Ok(r) => {
                    self.writing = None;
                    self.last = Some(r.map(|p| {
                        self.last_dir = p.parent().map(Path::to_path_buf);
                        format!("Saved {}", p.display())
                    }));
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.writing = None;
                    self.last = Some(Err("the export stopped unexpectedly".into()));
                }
            }
        }
    }
}
