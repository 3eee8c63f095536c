//! A job ([`millpond_core::job_file::Job`]) turned into its G-code program: the model it names
//! loaded and placed, every enabled operation planned ([`millpond_core::program`]), the
//! computed toolpaths checked against the stock, posted and written. `millpond toolpath`
//! (with `--job`, with flags or with `--op`) and the window's Export both plan and post
//! through `millpond_core::program` and write through [`write`]: one path from a job to its
//! program means one program, bit for bit, whichever front end the machinist used.
//!
//! Computing the toolpaths is the caller's (with a [`millpond_core::runner::Executor`]):
//! [`plan`] gives the [`millpond_core::JobSpec`] of each operation, [`Program::post`] takes
//! the toolpaths computed for them, in order.

use crate::common::{DEFAULT_MODEL, DEFAULT_MODEL_NAME};
use anyhow::{Context, Result};
use millpond_core::arcs::ArcSpan;
use millpond_core::gcode;
use millpond_core::job_file::{Job, ModelFile};
use millpond_core::post::{PostLibrary, PostProcessor};
pub use millpond_core::program::{PlanError, PlannedOp, Program, work_zero};
use millpond_core::setup::{Setup, WorkZeroChoice};
use millpond_core::stock_model::EngagementReport;
use millpond_core::{Aabb, Feeds, Mesh, MeshHash, Toolpath, TriangleIndex, placement};
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

/// The setup `job`'s stock gives for a model (its mesh hash and placed bounding box).
pub fn setup(job: &Job, mesh: MeshHash, model: Aabb) -> Result<Setup> {
    Setup::new(mesh, model, &job.stock).map_err(|e| anyhow::anyhow!("stock: {e}"))
}

/// Plans `job` for its placed model: every enabled operation in order, with its tool, its
/// feeds (its own, or the tool's), the job's stock, zero, post and spindle dwell. This is
/// what Generate all + Export does, and what `millpond toolpath --job` does.
pub fn plan(job: &Job, model: &Mesh) -> Result<Program> {
    let setup = setup(job, model.hash(), model.bounds())?;
    let zero = Some(work_zero(job.stock.zero, &setup));
    let post = find_post(job, &post_library(&crate::pool::config_dir()))?;
    Ok(plan_in(job, setup, zero, post)?)
}

/// How a program departs from its job: the command line's `--floor`, `--safe-z` and `--zero`
/// (a job file holds none of them: its floor is its stock's bottom, its safe height is
/// measured from its stock's top), or a job file's own zero. `millpond toolpath` plans with
/// them, and a detached job carries them to the member that runs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Departures {
    pub floor: Option<f64>,
    pub safe_z: Option<f64>,
    /// `None`: a program without a zero line.
    pub zero: Option<WorkZeroChoice>,
}

impl Departures {
    /// A job file's: its stock's zero, and its stock's floor and safe height.
    pub fn of_job(job: &Job) -> Self {
        Self {
            floor: None,
            safe_z: None,
            zero: Some(job.stock.zero),
        }
    }

    /// `setup` with this floor and safe height, and the work zero in it.
    pub fn apply(&self, mut setup: Setup) -> Result<(Setup, Option<gcode::WorkZero>)> {
        if let Some(floor) = self.floor {
            setup = setup
                .with_floor(floor)
                .map_err(|e| anyhow::anyhow!("--floor: {e}"))?;
        }
        if let Some(z) = self.safe_z {
            setup = setup
                .with_safe_z(z)
                .map_err(|e| anyhow::anyhow!("--safe-z: {e}"))?;
        }
        let zero = self.zero.map(|z| work_zero(z, &setup));
        Ok((setup, zero))
    }
}

/// [`plan`] in a given setup and zero (the command line's `--floor`, `--safe-z` and its
/// program without a zero line change them; a job file cannot), written by `post`.
pub fn plan_in(
    job: &Job,
    setup: Setup,
    zero: Option<gcode::WorkZero>,
    post: PostProcessor,
) -> Result<Program, PlanError> {
    Program::plan(
        job,
        title(job),
        setup,
        zero,
        Feeds::default().rapid_rate,
        post,
    )
}

/// The folder of the user's own post-processors: `posts/` in the config folder.
pub fn posts_dir(config_dir: &Path) -> std::path::PathBuf {
    config_dir.join("posts")
}

/// The posts a user can choose: the built-in ones and those in [`posts_dir`].
pub fn post_library(config_dir: &Path) -> PostLibrary {
    PostLibrary::load(Some(&posts_dir(config_dir)))
}

/// The post `job` names, from `library`, if it can write the job's units.
pub fn find_post(job: &Job, library: &PostLibrary) -> Result<PostProcessor> {
    Ok(library.for_output(&job.output)?)
}

/// Writes the program to `path` (through a temporary file: a failure leaves no half program),
/// with `arcs` in place of their moves where the post writes arcs ([`Program::arcs`]), and
/// each operation's machining time on `machine` in the header (`times`, from
/// [`Program::post_timed`]).
pub fn write(
    path: &Path,
    program: &Program,
    posted: &[(Toolpath, EngagementReport)],
    arcs: &[Vec<ArcSpan>],
    machine: &millpond_core::MachineProfile,
    times: &[millpond_core::TimeEstimate],
) -> Result<()> {
    crate::common::write_gcode(
        path,
        program.post_settings(),
        &program.title,
        program.zero.as_ref(),
        machine,
        &program.gcode_operations(posted, arcs),
        times,
    )
}
