//! A job's program before and after its toolpaths are computed: every enabled operation
//! planned with its tool and feeds ([`Program::plan`], [`PlannedOp::plan`]), then the
//! computed toolpaths checked against the stock and posted ([`Program::post`]). The window's
//! Generate + Export and `millpond toolpath` both go through here, so one job gives one
//! program, bit for bit, whichever front end the machinist used (ARCHITECTURE.md §6.3).

use crate::arcs::{self, ArcSpan};
use crate::drop::DropCutter;
use crate::gcode;
use crate::index::TriangleIndex;
use crate::job::{CancelToken, Operation};
use crate::job_file::Job;
use crate::mesh::Mesh;
use crate::post::ArcStyle;
use crate::post::PostProcessor;
use crate::rest::RestMaterial;
use crate::setup::{OperationDef, Setup, WorkZeroChoice};
use crate::simulate::SimulateError;
use crate::stock_model::{self, EngagementReport, ProgramStep, StockModelError};
use crate::tools::Tool;
use crate::{Cutter, Feeds, JobSpec, Toolpath};
use std::fmt;

/// One operation of the program, planned: all but its toolpath.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOp {
    pub name: String,
    pub tool_number: u32,
    pub cutter: Cutter,
    /// The operation's own, or its tool's.
    pub feeds: Feeds,
    /// The deepest its tool may cut in one move, mm ([`Tool::max_depth_of_cut`]).
    pub max_depth_of_cut: f64,
    /// What to compute.
    pub spec: JobSpec,
}

impl PlannedOp {
    /// Plans `op` in `setup` with its tool from `tools`: the cutter, the feeds (the
    /// operation's own over the tool's) and the job spec. The error is in the user's words,
    /// without the operation's name (the caller knows how to name it).
    pub fn plan(
        op: &OperationDef,
        tools: &[Tool],
        setup: &Setup,
        rapid_rate: f64,
    ) -> Result<Self, String> {
        let tool = tools
            .iter()
            .find(|t| t.id == op.tool)
            .ok_or_else(|| "choose a tool: it names none of the job's".to_string())?;
        let cutter = tool.cutter().map_err(|e| e.to_string())?;
        let feeds = op.feeds_over(tool.feeds(rapid_rate).map_err(|e| e.to_string())?)?;
        let spec = setup
            .plan(&op.strategy, cutter)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            name: op.name.clone(),
            tool_number: tool.number,
            cutter,
            feeds,
            max_depth_of_cut: tool.max_depth_of_cut(&cutter),
            spec,
        })
    }

    /// Rest roughing's threshold, where this operation is one: its toolpath depends on what
    /// the operations before it leave ([`Program::rest_material`]).
    pub fn rest(&self) -> Option<f64> {
        match &self.spec.operation {
            Operation::Rough(r) => r.rest,
            _ => None,
        }
    }

    /// How far a written arc may stray from this operation's moves, mm: 1 µm, never more
    /// than a raster's merge tolerance (the same bar its straight moves were merged to).
    pub fn arc_tolerance(&self) -> f64 {
        match &self.spec.operation {
            Operation::Raster(r) => crate::arcs::DEFAULT_ARC_TOLERANCE.min(r.merge_tolerance),
            _ => crate::arcs::DEFAULT_ARC_TOLERANCE,
        }
    }

    /// Whether a toolpath computed for `self` is still the one `other` would compute and
    /// post (names aside: renaming changes no move).
    pub fn same_toolpath(&self, other: &PlannedOp) -> bool {
        self.spec == other.spec
            && self.feeds == other.feeds
            && self.tool_number == other.tool_number
            && self.cutter == other.cutter
            && self.max_depth_of_cut == other.max_depth_of_cut
    }
}

/// The program's toolpaths as posted, each with what it did to the stock ([`Program::post`]).
pub type Posted = Vec<(Toolpath, EngagementReport)>;

/// A job's program before its toolpaths are computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The title comment (the model's file name).
    pub title: String,
    /// How it is written: the job's post, found by its name.
    pub post: PostProcessor,
    /// G21 millimetres or G20 inches.
    pub units: gcode::ProgramUnits,
    pub spindle_dwell_s: f64,
    /// The model where it lies, the stock box, floor and safe height.
    pub setup: Setup,
    /// Where the program's zero is; `None`: the model's coordinates, unannounced (the
    /// command line without `--zero`). A job always states its zero.
    pub zero: Option<gcode::WorkZero>,
    /// The enabled operations, in machining order, with their indices in `Job::operations`.
    pub ops: Vec<(usize, PlannedOp)>,
}

/// Why an operation of a job cannot be planned.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    /// Its index in `Job::operations`.
    pub operation: usize,
    pub name: String,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for PlanError {}

/// The work zero `choice` gives in `setup`, for the program's header.
pub fn work_zero(choice: WorkZeroChoice, setup: &Setup) -> gcode::WorkZero {
    gcode::WorkZero {
        at: choice.point(setup.stock, setup.model),
        description: choice.describe(),
    }
}

impl Program {
    /// Plans every enabled operation of `job` in order, in `setup` (the job's stock around
    /// its placed model; the command line's `--floor` and `--safe-z` may change it), with
    /// the program titled `title`, its zero at `zero`, written by `post` (the one
    /// `job.output.post` names, found by the caller, who knows the user's posts).
    pub fn plan(
        job: &Job,
        title: String,
        setup: Setup,
        zero: Option<gcode::WorkZero>,
        rapid_rate: f64,
        post: PostProcessor,
    ) -> Result<Self, PlanError> {
        let mut ops = Vec::new();
        for (k, op) in job.operations.iter().enumerate() {
            if !op.enabled {
                continue;
            }
            let planned =
                PlannedOp::plan(op, &job.tools, &setup, rapid_rate).map_err(|message| {
                    PlanError {
                        operation: k,
                        name: op.name.clone(),
                        message,
                    }
                })?;
            ops.push((k, planned));
        }
        Ok(Self {
            title,
            post,
            units: job.output.units,
            spindle_dwell_s: job.output.spindle_dwell_s,
            setup,
            zero,
            ops,
        })
    }

    /// The program's toolpaths as posted: each operation machined, in order, from the stock
    /// the ones before it left (straight-down rapids stop above the material), with what
    /// each did to the stock. `toolpaths` are the computed ones, one per operation.
    pub fn post(&self, toolpaths: &[&Toolpath]) -> Result<Posted, StockModelError> {
        stock_model::check_program(self.setup.stock, &self.steps(toolpaths))
    }

    /// [`post`](Self::post), and how long each operation takes on `machine` as written
    /// ([`gcode::estimate_program`] on the posted toolpaths): the estimate follows the
    /// check on a thread of its own, piece by piece as the posted moves become final, so it
    /// is done when the check is (a serial pass over every move otherwise, after it).
    pub fn post_timed(
        &self,
        toolpaths: &[&Toolpath],
        machine: &crate::MachineProfile,
    ) -> Result<(Posted, Vec<crate::TimeEstimate>), StockModelError> {
        let steps = self.steps(toolpaths);
        std::thread::scope(|s| {
            // A few pieces in flight: the planner keeps up with the check easily.
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<crate::toolpath::Move>)>(4);
            let timer = s.spawn(move || {
                let mut timer = gcode::ProgramTimer::new(machine);
                let mut current = None;
                for (k, moves) in rx {
                    if current != Some(k) {
                        let (_, op) = &self.ops[k];
                        let start = toolpaths[k].start;
                        timer.begin(start, self.setup.safe_z, self.spindle_dwell_s, op.feeds);
                        current = Some(k);
                    }
                    timer.moves(&moves);
                }
                timer.finish()
            });
            let posted =
                stock_model::check_program_posting(self.setup.stock, &steps, &mut |k, m| {
                    // The timer only ends early if it panicked, which `join` reports.
                    let _ = tx.send((k, m.to_vec()));
                });
            drop(tx);
            let times = timer.join().expect("the time estimate does not panic");
            Ok((posted?, times))
        })
    }

    /// What the stock check takes: each operation's cutter and depth limit with its
    /// computed toolpath, one per operation.
    fn steps<'a>(&self, toolpaths: &[&'a Toolpath]) -> Vec<ProgramStep<'a>> {
        assert_eq!(
            toolpaths.len(),
            self.ops.len(),
            "one toolpath per operation"
        );
        self.ops
            .iter()
            .zip(toolpaths)
            .map(|((_, op), tp)| ProgramStep {
                cutter: op.cutter,
                max_depth_of_cut: op.max_depth_of_cut,
                toolpath: tp,
            })
            .collect()
    }

    /// What the operations before `op` (an index in `ops`) leave for it to cut, where it is
    /// rest roughing: their toolpaths (`earlier`, in order) machined into the stock, on
    /// cells a tenth of this operation's tool radius (see [`RestMaterial::left_by`]), compared with
    /// the model at its levels. Runs on the current rayon pool; stops when `cancel` is set.
    pub fn rest_material(
        &self,
        op: usize,
        earlier: &[&Toolpath],
        mesh: &Mesh,
        index: &TriangleIndex,
        cancel: &CancelToken,
    ) -> Result<Option<RestMaterial>, SimulateError> {
        let planned = &self.ops[op].1;
        if planned.rest().is_none() {
            return Ok(None);
        }
        if earlier.len() != op {
            return Err(SimulateError::Input(format!(
                "{}: rest roughing needs the toolpaths of the {op} operations before it, got {}",
                planned.name,
                earlier.len()
            )));
        }
        let earlier: Vec<(Cutter, &Toolpath)> = self.ops[..op]
            .iter()
            .zip(earlier)
            .map(|((_, o), tp)| (o.cutter, *tp))
            .collect();
        RestMaterial::left_by(&self.setup, &earlier, &planned.spec, mesh, index, cancel)
    }

    /// What the program check found: deep cuts, rapids into material, uncut stock — one line
    /// each, naming the operation ("2. Raster finishing: …").
    pub fn warnings(&self, posted: &[(Toolpath, EngagementReport)]) -> Vec<String> {
        self.ops
            .iter()
            .zip(posted)
            .enumerate()
            .flat_map(|(k, ((_, op), (_, report)))| {
                report.warnings(&format!("{}. {}", k + 1, op.name), op.max_depth_of_cut)
            })
            .collect()
    }

    /// How the program is written: its post in its units.
    pub fn post_settings(&self) -> gcode::Post<'_> {
        gcode::Post {
            processor: &self.post,
            units: self.units,
        }
    }

    /// The arcs the program's post writes in each posted toolpath: fitted within each
    /// operation's [`PlannedOp::arc_tolerance`] and checked against the model with its
    /// cutter and allowance ([`crate::arcs`]); none for a post without arcs. Runs on the
    /// current rayon pool.
    pub fn arcs(
        &self,
        posted: &[(Toolpath, EngagementReport)],
        mesh: &Mesh,
        index: &TriangleIndex,
    ) -> Vec<Vec<ArcSpan>> {
        if self.post.arcs == ArcStyle::None {
            return vec![Vec::new(); posted.len()];
        }
        let max_sweep = self.post.arcs.max_sweep();
        self.ops
            .iter()
            .zip(posted)
            .map(|((_, op), (tp, _))| {
                let spans = arcs::fit_toolpath(tp, op.arc_tolerance(), max_sweep);
                match DropCutter::with_allowance(
                    mesh,
                    index,
                    op.cutter,
                    f64::NEG_INFINITY,
                    op.spec.allowance(),
                ) {
                    Ok(contact) => arcs::keep_clear(spans, tp, &contact, op.arc_tolerance()),
                    // A cutter that cannot be grown by its allowance computed nothing.
                    Err(_) => Vec::new(),
                }
            })
            .collect()
    }

    /// The program's operations as the G-code writer takes them, with the posted toolpaths
    /// and their arcs ([`Program::arcs`]; empty lists for straight moves only).
    pub fn gcode_operations<'a>(
        &'a self,
        posted: &'a [(Toolpath, EngagementReport)],
        arcs: &'a [Vec<ArcSpan>],
    ) -> Vec<gcode::Operation<'a>> {
        self.ops
            .iter()
            .zip(posted)
            .enumerate()
            .map(|(k, ((_, op), (tp, _)))| gcode::Operation {
                name: &op.name,
                tool_number: op.tool_number,
                cutter: op.cutter,
                feeds: op.feeds,
                safe_z: self.setup.safe_z,
                spindle_dwell_s: self.spindle_dwell_s,
                arcs: arcs.get(k).map_or(&[], |a| a.as_slice()),
                toolpath: tp,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobContext, JobOutput};
    use crate::planner::MachineProfile;
    use crate::raster::Direction;
    use crate::runner::run_local;
    use crate::setup::{RasterParams, RoughingParams, Stock, Strategy};
    use crate::{Feeds, models};
    use std::sync::Arc;

    /// The estimate made beside the check is the one made after it, bit for bit, on a
    /// program whose finishing passes' straight-down rapids the check stops above the uncut
    /// material, and whose second operation starts where the first left the tool.
    #[test]
    fn the_time_estimated_beside_the_check_is_the_time_of_the_posted_program() {
        let mesh = Arc::new(Mesh::from_triangles(models::default_part(), "part").unwrap());
        let index = Arc::new(TriangleIndex::new(&mesh));
        let setup = Setup::new(
            mesh.hash(),
            mesh.bounds(),
            &Stock::around_model(2.0, 1.0, 0.0),
        )
        .unwrap();
        let rough = Strategy::Roughing(RoughingParams {
            stepdown: 3.0,
            ..RoughingParams::default()
        });
        let raster = Strategy::RasterFinishing(RasterParams {
            stepover: 1.0,
            direction: Direction::Climb,
            ..RasterParams::default()
        });
        // Finishing first, into the uncut stock: its approaches would rapid into material.
        let ops: Vec<(usize, PlannedOp)> = [
            (raster, "ball:3".parse::<Cutter>().unwrap()),
            (rough, "flat:6".parse().unwrap()),
        ]
        .into_iter()
        .enumerate()
        .map(|(k, (strategy, cutter))| {
            let op = PlannedOp {
                name: format!("op {k}"),
                tool_number: k as u32 + 1,
                cutter,
                feeds: Feeds {
                    feed: 800.0 + 400.0 * k as f64,
                    ..Feeds::default()
                },
                max_depth_of_cut: 6.0,
                spec: setup.plan(&strategy, cutter).unwrap(),
            };
            (k, op)
        })
        .collect();
        let toolpaths: Vec<Toolpath> = ops
            .iter()
            .map(|(_, op)| {
                let ctx = JobContext::new(mesh.clone(), index.clone(), op.spec.clone()).unwrap();
                let results = run_local(&ctx, 2, &CancelToken::new(), &|_| {}).unwrap();
                match ctx.finish(results).unwrap() {
                    JobOutput::Toolpath(tp) => tp,
                    _ => unreachable!("a toolpath"),
                }
            })
            .collect();
        let post = PostProcessor::built_in().remove(0);
        let program = Program {
            title: "t".into(),
            units: post.default_units(),
            post,
            spindle_dwell_s: 1.5,
            zero: None,
            setup,
            ops,
        };
        let computed: Vec<&Toolpath> = toolpaths.iter().collect();
        let machine = MachineProfile::hobby();
        let (posted, times) = program.post_timed(&computed, &machine).unwrap();
        assert_eq!(posted, program.post(&computed).unwrap());
        // The check changed some rapids: the estimate is of the posted program.
        assert!(
            posted[0].0.moves.len() > toolpaths[0].moves.len(),
            "no straight-down rapid was stopped above the material"
        );
        let arcs = vec![Vec::new(); posted.len()];
        let want = gcode::estimate_program(&program.gcode_operations(&posted, &arcs), &machine);
        assert_eq!(times, want);
        assert!(times.iter().all(|t| t.total_s > 0.0), "{times:?}");
    }
}
