//! G-code export: every enabled operation that has a toolpath, in machining order, as one
//! program (`millpond_core::gcode::write_program` takes several operations, each with its
//! own tool change), written off the UI thread through a temporary file.

use super::dialogs::{self, SaveProgram};
use millpond_core::program::Program;
use millpond_core::{MachineProfile, TimeEstimate, Toolpath};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

/// A program to write: the job's program as planned ([`Program`], the same type
/// `millpond toolpath` posts), the computed toolpath and the machining time of each of its
/// operations, and the machine the header's time is estimated for.
#[derive(Debug, Clone)]
pub struct Job {
    pub program: Program,
    pub toolpaths: Vec<Arc<Toolpath>>,
    /// The model the toolpaths were computed against, for checking arcs
    /// ([`Program::arcs`]).
    pub mesh: Arc<millpond_core::Mesh>,
    pub index: Arc<millpond_core::TriangleIndex>,
    /// Each operation's time on the machine of Preferences (the toolpath alone, from rest to
    /// rest: `millpond_core::planner::estimate_time`).
    pub times: Vec<TimeEstimate>,
    pub machine: MachineProfile,
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

pub fn summarize(job: &Job) -> Summary {
    let mut s = Summary {
        operations: job.program.ops.len(),
        ..Summary::default()
    };
    for (((_, op), tp), time) in job.program.ops.iter().zip(&job.toolpaths).zip(&job.times) {
        let t = tp.stats(&op.feeds);
        s.cut_length += t.cut_length + t.plunge_length;
        s.rapid_length += t.rapid_length;
        s.time += *time;
    }
    s
}

/// The program's toolpaths as posted: machined in order from the stock, straight-down rapids
/// stopped above what the operations before left ([`Program::post`]).
pub fn posted(
    job: &Job,
) -> Result<Vec<(Toolpath, millpond_core::stock_model::EngagementReport)>, String> {
    let toolpaths: Vec<&Toolpath> = job.toolpaths.iter().map(|t| &**t).collect();
    job.program
        .post(&toolpaths)
        .map_err(|e| format!("cannot check the program against the stock: {e}"))
}

/// Writes the program (what the background thread runs), as `millpond toolpath` writes it.
pub fn write(path: &Path, job: &Job) -> Result<(), String> {
    let toolpaths: Vec<&Toolpath> = job.toolpaths.iter().map(|t| &**t).collect();
    let (posted, times) = job
        .program
        .post_timed(&toolpaths, &job.machine)
        .map_err(|e| format!("cannot check the program against the stock: {e}"))?;
    let arcs = job.program.arcs(&posted, &job.mesh, &job.index);
    crate::run_job::write(path, &job.program, &posted, &arcs, &job.machine, &times)
        .map_err(|e| format!("{e:#}"))
}

/// The export in progress, if any, and how the last one went.
#[derive(Debug, Default)]
pub struct Exporter {
    save: SaveProgram<Job>,
    writing: Option<Receiver<Result<PathBuf, String>>>,
    /// "Saved …" or the error, for the panel.
    pub last: Option<Result<String, String>>,
}

impl Exporter {
    pub fn busy(&self) -> bool {
        self.save.asking().is_some() || self.writing.is_some()
    }

    /// Asks where to save, then writes.
    pub fn start(
        &mut self,
        repaint: &egui::Context,
        browser: dialogs::FileBrowser,
        file_stem: &str,
        job: Job,
    ) {
        let name = format!("{file_stem}.{}", job.program.post.extension);
        self.save.ask(repaint, browser, name, job);
    }

    /// Writes to `path` without a dialog, off the UI thread.
    pub fn write_to(&mut self, repaint: &egui::Context, path: PathBuf, job: Job) {
        self.spawn_write(repaint, path, job);
    }

    fn spawn_write(&mut self, repaint: &egui::Context, path: PathBuf, job: Job) {
        let (tx, rx) = channel();
        let repaint = repaint.clone();
        std::thread::spawn(move || {
            let r = write(&path, &job).map(|()| path);
            let _ = tx.send(r);
            repaint.request_repaint();
        });
        self.writing = Some(rx);
    }

    /// Draws the built-in file browser if that is the dialog, and starts writing once a
    /// place is chosen (from the UI pass). Returns why the built-in browser took over, once.
    pub fn show_dialog(&mut self, ctx: &egui::Context) -> Option<String> {
        let (chosen, notice) = self.save.show(ctx, &mut self.last, "export cancelled");
        if let Some((path, job)) = chosen {
            self.spawn_write(ctx, path, job);
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
                        self.save.saved(&p);
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
