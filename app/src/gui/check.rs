//! The program checked against the stock before it is exported: every enabled operation
//! with a toolpath is machined, in order, from the stock the ones before it left
//! ([`millpond_core::stock_model`]), off the UI thread; what needs the machinist's attention
//! (a move buried deeper than its tool can cut, a rapid into material) is shown beside the
//! Export button.

use super::export::{self, Job};
use std::sync::mpsc::{Receiver, channel};

/// What a check depends on: the toolpaths (by identity: a new computation is a new `Arc`),
/// each tool and its depth limit, and the stock box.
#[derive(Clone, Debug, PartialEq)]
struct CheckKey {
    ops: Vec<(usize, millpond_core::Cutter, u64)>,
    stock: [u64; 6],
}

impl CheckKey {
    fn new(job: &Job) -> Self {
        let stock = job.program.setup.stock;
        Self {
            ops: job
                .program
                .ops
                .iter()
                .zip(&job.toolpaths)
                .map(|((_, op), tp)| {
                    (
                        std::sync::Arc::as_ptr(tp) as usize,
                        op.cutter,
                        op.max_depth_of_cut.to_bits(),
                    )
                })
                .collect(),
            stock: [
                stock.min.x,
                stock.min.y,
                stock.min.z,
                stock.max.x,
                stock.max.y,
                stock.max.z,
            ]
            .map(f64::to_bits),
        }
    }
}

/// A finished check: its warnings, or why it could not run.
type CheckResult = Result<Vec<String>, String>;

/// The latest check of the program and the one running.
#[derive(Debug, Default)]
pub struct ProgramCheck {
    /// What the shown warnings were computed for.
    done: Option<CheckKey>,
    running: Option<(CheckKey, Receiver<CheckResult>)>,
    /// The warnings of the last finished check (empty: nothing to say).
    pub warnings: Vec<String>,
}

impl ProgramCheck {
    /// Starts a check when the program or the stock changed since the last one; collects a
    /// finished one. Cheap when nothing changed: call it every frame.
    pub fn update(&mut self, ctx: &egui::Context, job: Option<&Job>) {
        if let Some((key, rx)) = &self.running
            && let Ok(result) = rx.try_recv()
        {
            self.warnings = result.unwrap_or_else(|e| vec![e]);
            self.done = Some(key.clone());
            self.running = None;
        }
        let Some(job) = job else {
            self.warnings.clear();
            self.done = None;
            return;
        };
        let key = CheckKey::new(job);
        let current = self.running.as_ref().map(|(k, _)| k).or(self.done.as_ref());
        if current == Some(&key) || self.running.is_some() {
            return;
        }
        let job = job.clone();
        let (tx, rx) = channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("program-check".into())
            .spawn(move || {
                let _ = tx.send(check(&job));
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => self.running = Some((key, rx)),
            Err(e) => {
                self.warnings = vec![format!("cannot check the program: {e}")];
                self.done = Some(key);
            }
        }
    }

    /// True while a check runs (the warnings shown may be for the program before).
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }
}

/// The warnings for the program machined in order from its stock: the ones
/// `millpond toolpath` prints.
pub fn check(job: &Job) -> Result<Vec<String>, String> {
    Ok(job.program.warnings(&export::posted(job)?))
}
