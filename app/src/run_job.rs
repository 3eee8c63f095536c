//! A job ([`millpond_core::job_file::Job`]) turned into its G-code program: the model it names
//! loaded and placed, every enabled operation planned, the computed toolpaths checked against
//! the stock and posted. `millpond toolpath` (with `--job`, with flags or with `--op`) runs
//! through here, and so should the window's Generate all + Export: one path from a job to its
//! program means one program, bit for bit, whichever front end the machinist used.
//!
//! Computing the toolpaths is the caller's (on this computer's cores or in the pool, with its
//! own progress display): [`plan`] gives the [`JobSpec`] of each operation, [`post`] takes
//! the toolpaths computed for them, in order.

use crate::common::{DEFAULT_MODEL, DEFAULT_MODEL_NAME};
use anyhow::{Context, Result};
use millpond_core::gcode::{self, Dialect};
use millpond_core::job_file::{Job, ModelFile};
use millpond_core::setup::{Setup, WorkZeroChoice};
use millpond_core::stock_model::{self, EngagementReport, ProgramStep};
use millpond_core::{Aabb, Cutter, Feeds, JobSpec, Mesh, MeshHash, Toolpath, TriangleIndex};
use millpond_core::{placement, stock_model::StockModelError};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The model a job names, as read and as placed.
#[derive(Debug)]
pub struct JobModel {
    /// Placed: in millimetres, with the job's placement steps applied.
    pub mesh: Arc<Mesh>,
    pub index: Arc<TriangleIndex>,
    /// The hash of the mesh as read, before units and placement (what a job records).
    pub read_hash: MeshHash,
    /// Triangles dropped as degenerate when reading.
    pub skipped_degenerate: usize,
    /// How the file was read, when it needed a note ([`Mesh::load_note`]).
    pub load_note: Option<String>,
    /// A hint that the units look wrong for the model's size ([`placement::size_hint`]).
    pub size_hint: Option<String>,
    /// Set when the job recorded a different hash: the file changed since the job was saved.
    /// The job still runs, on the file as it is now; say so where the user will see it.
    pub changed: Option<String>,
}

/// The program title a job's model gives (its file name; the bundled part's name).
pub fn title(job: &Job) -> String {
    match &job.model.file {
        ModelFile::Sample => DEFAULT_MODEL_NAME.to_string(),
        ModelFile::Stl { path, .. } => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    }
}

/// Reads the model `job` names (the bundled part, or the STL at its path), compares its hash
/// with the one the job recorded, and places it with the job's units and placement steps.
pub fn load_model(job: &Job) -> Result<JobModel> {
    let (mesh, recorded) = match &job.model.file {
        ModelFile::Sample => (
            Mesh::from_stl_bytes(DEFAULT_MODEL, DEFAULT_MODEL_NAME)
                .context("the bundled model is damaged")?,
            None,
        ),
        ModelFile::Stl { path, hash } => (Mesh::from_stl_path(path)?, *hash),
    };
    let read_hash = mesh.hash();
    let changed = match (&job.model.file, recorded) {
        (ModelFile::Stl { path, .. }, Some(h)) if h != read_hash => Some(format!(
            "{}: the model changed since the job was saved (its content differs from the \
             recorded one); the toolpaths follow the file as it is now",
            path.display()
        )),
        _ => None,
    };
    let skipped_degenerate = mesh.skipped_degenerate();
    let load_note = mesh.load_note();
    let mesh = placement::place(&Arc::new(mesh), job.model.units, &job.model.placement)?;
    let size_hint = placement::size_hint(mesh.bounds(), job.model.units);
    let index = Arc::new(TriangleIndex::new(&mesh));
    Ok(JobModel {
        mesh,
        index,
        read_hash,
        skipped_degenerate,
        load_note,
        size_hint,
        changed,
    })
}

/// One operation of the program, planned: all but its toolpath.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOp {
    /// Its index in `Job::operations`.
    pub operation: usize,
    pub name: String,
    pub tool_number: u32,
    pub cutter: Cutter,
    /// The operation's own, or its tool's.
    pub feeds: Feeds,
    /// The deepest its tool may cut in one move, mm (the tool's, [`millpond_core::tools::Tool::max_depth_of_cut`]).
    pub max_depth_of_cut: f64,
    /// What to compute.
    pub spec: JobSpec,
}

/// A job's program before its toolpaths are computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The title comment (the model's file name).
    pub title: String,
    pub dialect: Dialect,
    pub spindle_dwell_s: f64,
    /// The model where it lies, the stock box, floor and safe height.
    pub setup: Setup,
    /// Where the program's zero is; `None`: the model's coordinates, unannounced (the
    /// command line without `--zero`). A job always states its zero.
    pub zero: Option<gcode::WorkZero>,
    /// The enabled operations, in machining order.
    pub ops: Vec<PlannedOp>,
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

/// The setup `job`'s stock gives for a model (its mesh hash and placed bounding box).
pub fn setup(job: &Job, mesh: MeshHash, model: Aabb) -> Result<Setup> {
    Setup::new(mesh, model, &job.stock).map_err(|e| anyhow::anyhow!("stock: {e}"))
}

/// The work zero `choice` gives in `setup`, for the program's header.
pub fn work_zero(choice: WorkZeroChoice, setup: &Setup) -> gcode::WorkZero {
    gcode::WorkZero {
        at: choice.point(setup.stock, setup.model),
        description: choice.describe(),
    }
}

/// Plans `job` for its placed model: every enabled operation in order, with its tool, its
/// feeds (its own, or the tool's), the job's stock, zero, dialect and spindle dwell. This is
/// what Generate all + Export does, and what `millpond toolpath --job` does.
pub fn plan(job: &Job, model: &Mesh) -> Result<Program> {
    let setup = setup(job, model.hash(), model.bounds())?;
    let zero = Some(work_zero(job.stock.zero, &setup));
    Ok(plan_in(job, setup, zero)?)
}

/// [`plan`] in a given setup and zero (the command line's `--floor`, `--safe-z` and its
/// program without a zero line change them; a job file cannot).
pub fn plan_in(
    job: &Job,
    setup: Setup,
    zero: Option<gcode::WorkZero>,
) -> Result<Program, PlanError> {
    let rapid_rate = Feeds::default().rapid_rate;
    let mut ops = Vec::new();
    for (k, op) in job.operations.iter().enumerate() {
        if !op.enabled {
            continue;
        }
        let error = |message: String| PlanError {
            operation: k,
            name: op.name.clone(),
            message,
        };
        let tool = job
            .tools
            .iter()
            .find(|t| t.id == op.tool)
            .ok_or_else(|| error("choose a tool: it names none of the job's".into()))?;
        let cutter = tool.cutter().map_err(|e| error(e.to_string()))?;
        let feeds = tool.feeds(rapid_rate).map_err(|e| error(e.to_string()))?;
        let feeds = op.feeds_over(feeds).map_err(error)?;
        let spec = setup
            .plan(&op.strategy, cutter)
            .map_err(|e| error(e.to_string()))?;
        ops.push(PlannedOp {
            operation: k,
            name: op.name.clone(),
            tool_number: tool.number,
            cutter,
            feeds,
            max_depth_of_cut: tool.max_depth_of_cut(&cutter),
            spec,
        });
    }
    Ok(Program {
        title: title(job),
        dialect: job.output.dialect,
        spindle_dwell_s: job.output.spindle_dwell_s,
        setup,
        zero,
        ops,
    })
}

/// The program's toolpaths as posted: each operation machined, in order, from the stock the
/// ones before it left (straight-down rapids stop above the material), with what each did to
/// the stock. `toolpaths` are the computed ones, one per `program.ops`.
pub fn post(
    program: &Program,
    toolpaths: &[&Toolpath],
) -> Result<Vec<(Toolpath, EngagementReport)>, StockModelError> {
    assert_eq!(
        toolpaths.len(),
        program.ops.len(),
        "one toolpath per operation"
    );
    let steps: Vec<ProgramStep<'_>> = program
        .ops
        .iter()
        .zip(toolpaths)
        .map(|(op, tp)| ProgramStep {
            cutter: op.cutter,
            max_depth_of_cut: op.max_depth_of_cut,
            toolpath: tp,
        })
        .collect();
    stock_model::check_program(program.setup.stock, &steps)
}

/// What the program check found: deep cuts, rapids into material, uncut stock — one line each,
/// naming the operation ("2. Raster finishing: …").
pub fn warnings(program: &Program, posted: &[(Toolpath, EngagementReport)]) -> Vec<String> {
    program
        .ops
        .iter()
        .zip(posted)
        .enumerate()
        .flat_map(|(k, (op, (_, report)))| {
            report.warnings(&format!("{}. {}", k + 1, op.name), op.max_depth_of_cut)
        })
        .collect()
}

/// The program's operations as the G-code writer takes them, with the posted toolpaths.
pub fn gcode_operations<'a>(
    program: &'a Program,
    posted: &'a [(Toolpath, EngagementReport)],
) -> Vec<gcode::Operation<'a>> {
    program
        .ops
        .iter()
        .zip(posted)
        .map(|(op, (tp, _))| gcode::Operation {
            name: &op.name,
            tool_number: op.tool_number,
            cutter: op.cutter,
            feeds: op.feeds,
            safe_z: program.setup.safe_z,
            spindle_dwell_s: program.spindle_dwell_s,
            toolpath: tp,
        })
        .collect()
}

/// Writes the program to `path` (through a temporary file: a failure leaves no half program).
pub fn write(
    path: &Path,
    program: &Program,
    posted: &[(Toolpath, EngagementReport)],
    machine: &millpond_core::MachineProfile,
) -> Result<()> {
    crate::common::write_gcode(
        path,
        program.dialect,
        &program.title,
        program.zero.as_ref(),
        machine,
        &gcode_operations(program, posted),
    )
}
