//! Command-line subcommands: the same core code as the GUI, for scripts and headless hosts.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use millpond_core::job::{DropSpec, Grid, JobOutput, Operation};
use millpond_core::placement;
use millpond_core::runner::{Executor, Local, RunEvent};
use millpond_core::waterline::{ContourSpec, Level};
use millpond_core::{Axis, CancelToken, Cutter, JobContext, JobSpec, Mesh, Rect, TriangleIndex};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod detached;
mod progress;
mod simulate;
mod toolpath;
pub mod tools;

pub use crate::common::{DEFAULT_MODEL, DEFAULT_MODEL_NAME, format_duration, write_gcode};

use progress::OperationProgress;

pub use detached::{
    CancelArgs, FetchArgs, MemberArgs, cancel_command, fetch_command, jobs_command, submit_command,
};
pub use simulate::{SimulateArgs, simulate_command};
pub(crate) use toolpath::compute_toolpaths;
pub use toolpath::{ToolpathArgs, toolpath_command};

#[derive(Debug, Parser)]
#[command(
    name = "millpond",
    version,
    about = "3-axis CAM with a built-in compute pool",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// An STL model to open the window with (without one, the bundled part).
    #[arg(value_name = "MODEL")]
    pub model: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Raw drop-cutter grid: tip heights on a raster grid, as CSV, with a JSON summary line.
    Drop(DropArgs),
    /// STL in, G-code out: raster, waterline or roughing toolpaths, one operation or several
    /// (--op) in one program.
    Toolpath(Box<ToolpathArgs>),
    /// Raw waterline contours: the closed loops the tool tip follows at given heights, as CSV,
    /// with a JSON summary line.
    Waterline(WaterlineArgs),
    /// Run a headless pool member: offer this machine's cores to the pool, and run the jobs
    /// submitted to it detached.
    Serve(crate::pool::ServeArgs),
    /// Hand a job to a pool member to run detached (the options of `toolpath`, with --pool
    /// and without -o): prints the job's id and returns at once.
    #[command(
        mut_arg("output", |a| a.required(false).hide(true)),
        mut_arg("pool", |a| a
            .required(true)
            .value_name("HOST:PORT")
            .help("The pool member that runs the job and keeps its program")),
        mut_arg("verify", |a| a.hide(true)),
        mut_arg("threads", |a| a.hide(true)),
    )]
    Submit(Box<ToolpathArgs>),
    /// The detached jobs a pool member keeps: id, state (queued, running n/N chunks,
    /// complete, failed, cancelled), when submitted, time left.
    Jobs(MemberArgs),
    /// Write a detached job's G-code once it is complete (the same bytes `toolpath` writes).
    Fetch(FetchArgs),
    /// Cancel a queued or running detached job.
    Cancel(CancelArgs),
    /// Export or import the window's tool library as a file.
    Tools(tools::ToolsArgs),
    /// Machine a job's program (or a G-code file) into the stock and check it against the
    /// model: gouges, material left, rapids through material, deepest and widest cuts, as
    /// one JSON line; non-zero exit on a gouge or a rapid through material.
    Simulate(Box<SimulateArgs>),
    /// List the post-processors `toolpath --post` takes: the built-in ones and yours in the
    /// config folder's posts/ (with the mistake in each one that cannot be used).
    Posts,
}

/// `millpond posts`: one line per post — its name for `--post`, what it is called, the
/// units it writes and where it comes from — then the post files that cannot be used.
pub fn posts_command() -> anyhow::Result<()> {
    let dir = crate::run_job::posts_dir(&crate::pool::config_dir());
    let library = crate::run_job::post_library(&crate::pool::config_dir());
    for p in &library.posts {
        let units: Vec<&str> = p.units.iter().map(|u| u.word()).collect();
        let from = match &p.source {
            millpond_core::post::PostSource::BuiltIn => "built in".to_string(),
            millpond_core::post::PostSource::File(f) => f.display().to_string(),
        };
        println!(
            "{:<12} {} ({}; .{}; {from})",
            p.key,
            p.name,
            units.join(", "),
            p.extension
        );
    }
    for e in &library.broken {
        eprintln!("not used: {e}");
    }
    eprintln!("your own posts: {}", dir.display());
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AxisArg {
    X,
    Y,
}

impl From<AxisArg> for Axis {
    fn from(a: AxisArg) -> Self {
        match a {
            AxisArg::X => Axis::X,
            AxisArg::Y => Axis::Y,
        }
    }
}

/// What one STL unit is (the command line's names for [`placement::Units`]).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Units {
    /// The STL is in millimetres.
    Mm,
    /// The STL is in centimetres (scaled by 10).
    Cm,
    /// The STL is in metres (scaled by 1000).
    M,
    /// The STL is in inches (scaled by 25.4).
    Inch,
}

impl From<Units> for placement::Units {
    fn from(u: Units) -> Self {
        match u {
            Units::Mm => placement::Units::Millimetres,
            Units::Cm => placement::Units::Centimetres,
            Units::M => placement::Units::Metres,
            Units::Inch => placement::Units::Inches,
        }
    }
}

/// Options shared by every command that loads a model and runs a job.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// STL model (binary or ASCII).
    pub model: PathBuf,
    /// Units the STL is in.
    #[arg(long, value_enum, default_value = "mm")]
    pub units: Units,
    /// Tool: flat:D, ball:D, bull:D:R or vbit:D:ANGLE (mm; ANGLE = included angle, degrees).
    #[arg(long, value_parser = parse_cutter)]
    pub tool: Cutter,
    /// Lines run along this axis.
    #[arg(long, value_enum, default_value = "x")]
    pub axis: AxisArg,
    /// Raster bounds XMIN,XMAX,YMIN,YMAX in mm.
    #[arg(long, value_parser = parse_bounds, allow_hyphen_values = true)]
    pub bounds: Option<Rect>,
    /// Lowest tip height in mm (default: the model's lowest z).
    #[arg(long, allow_hyphen_values = true)]
    pub floor: Option<f64>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct DropArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Distance between raster lines, mm.
    #[arg(long, allow_negative_numbers = true)]
    pub step: f64,
    /// Distance between points along a line, mm.
    #[arg(long, allow_negative_numbers = true)]
    pub sampling: f64,
    /// Write x,y,z rows in grid order to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WaterlineArgs {
    /// STL model (binary or ASCII).
    pub model: PathBuf,
    /// Units the STL is in.
    #[arg(long, value_enum, default_value = "mm")]
    pub units: Units,
    /// Tool: flat:D, ball:D, bull:D:R or vbit:D:ANGLE (mm; ANGLE = included angle, degrees).
    #[arg(long, value_parser = parse_cutter)]
    pub tool: Cutter,
    /// Tip heights Z1,Z2,... in mm.
    #[arg(long, value_parser = parse_levels, allow_hyphen_values = true)]
    pub z: Levels,
    /// Distance between fibers (grid spacing in X and Y), mm.
    #[arg(long, allow_negative_numbers = true)]
    pub sampling: f64,
    /// Material left on the model, mm.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub allowance: f64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long, short)]
    pub quiet: bool,
    /// Write level_z,loop,idx,x,y,z rows to this file (a loop's last point joins its first).
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// A list of tip heights.
#[derive(Debug, Clone)]
pub struct Levels(pub Vec<f64>);

fn parse_levels(s: &str) -> Result<Levels, String> {
    number_list(s, ',', "heights Z1,Z2,... (finite numbers, mm)").map(Levels)
}

fn parse_cutter(s: &str) -> Result<Cutter, String> {
    s.parse::<Cutter>().map_err(|e| e.to_string())
}

/// `--bounds XMIN,XMAX,YMIN,YMAX`.
pub(crate) fn parse_bounds(s: &str) -> Result<Rect, String> {
    bounds(s, ',')
}

/// `sep`-separated numbers, all finite.
pub(crate) fn number_list(s: &str, sep: char, what: &str) -> Result<Vec<f64>, String> {
    let v: Vec<f64> = s
        .split(sep)
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected {what}, got \"{s}\""))?;
    if v.iter().any(|x| !x.is_finite()) {
        return Err(format!("expected {what}, got \"{s}\""));
    }
    Ok(v)
}

/// `sep`-separated numbers, exactly `n` of them, all finite.
pub(crate) fn numbers(s: &str, sep: char, n: usize, what: &str) -> Result<Vec<f64>, String> {
    let v = number_list(s, sep, what)?;
    if v.len() != n {
        return Err(format!("expected {what}, got \"{s}\""));
    }
    Ok(v)
}

/// A box in XY, its four numbers separated by `sep` (`,` in a flag, `:` in an `--op` key).
pub(crate) fn bounds(s: &str, sep: char) -> Result<Rect, String> {
    let what = ["XMIN", "XMAX", "YMIN", "YMAX"].join(&sep.to_string());
    let v = numbers(s, sep, 4, &format!("{what} (four numbers)"))?;
    let r = Rect::new(v[0], v[1], v[2], v[3]);
    if !r.is_valid() {
        return Err(format!(
            "bounds must have XMIN ≤ XMAX and YMIN ≤ YMAX, got \"{s}\""
        ));
    }
    Ok(r)
}

/// A loaded model and its index, with how long that took.
#[derive(Debug)]
pub struct Loaded {
    pub mesh: Arc<Mesh>,
    pub index: Arc<TriangleIndex>,
    pub load_s: f64,
}

/// Reads (or, for the bundled model, parses) an STL and builds its index.
pub fn load_model(path: &Path, units: Units) -> Result<Loaded> {
    let t0 = Instant::now();
    let mesh = if path == Path::new(DEFAULT_MODEL_NAME) && !path.exists() {
        Mesh::from_stl_bytes(DEFAULT_MODEL, DEFAULT_MODEL_NAME)?
    } else {
        Mesh::from_stl_path(path)?
    };
    let mesh = placement::place(&Arc::new(mesh), units.into(), &[])?;
    if let Some(note) = mesh.load_note() {
        eprintln!("millpond: note: {}: {note}", mesh.name());
    }
    if let Some(hint) = placement::size_hint(mesh.bounds(), units.into()) {
        eprintln!("millpond: note: {}: {hint} (--units)", mesh.name());
    }
    if mesh.skipped_degenerate() > 0 {
        eprintln!(
            "millpond: {}: skipped {} degenerate triangles",
            mesh.name(),
            mesh.skipped_degenerate()
        );
    }
    let index = TriangleIndex::new(&mesh);
    Ok(Loaded {
        mesh,
        index: Arc::new(index),
        load_s: t0.elapsed().as_secs_f64(),
    })
}

fn threads(arg: Option<usize>) -> Result<usize> {
    match arg {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Runs a job on `executor` (this computer's cores or the pool), with a progress bar named
/// `label` on a terminal: the one way every command computes a job.
fn run(ctx: &JobContext, executor: &dyn Executor, label: &str, quiet: bool) -> Result<JobOutput> {
    let progress = OperationProgress::new(label, ctx.spec().chunk_count(), quiet);
    let output = executor.run(ctx, &CancelToken::new(), &|event| {
        if let RunEvent::Progress { progress: p, .. } = event {
            progress.update(p.chunks_done, p.points_done);
        }
    })?;
    progress.finish();
    Ok(output)
}

pub fn drop_command(args: &DropArgs) -> Result<()> {
    let m = &args.model;
    let threads = threads(m.threads)?;
    let loaded = load_model(&m.model, m.units)?;
    let b = loaded.mesh.bounds();
    let grid = Grid {
        axis: m.axis.into(),
        bounds: m.bounds.unwrap_or(b.xy()),
        step: args.step,
        sampling: args.sampling,
    };
    let spec = JobSpec {
        mesh: loaded.mesh.hash(),
        cutter: m.tool,
        operation: Operation::Drop(DropSpec {
            grid,
            floor: m.floor.unwrap_or(b.min.z),
        }),
    };
    let ctx = JobContext::new(loaded.mesh.clone(), loaded.index.clone(), spec)?;
    let t0 = Instant::now();
    let JobOutput::Heights(z) = run(&ctx, &Local { threads }, "drop", m.quiet)? else {
        bail!("internal error: drop job produced a toolpath");
    };
    let compute_s = t0.elapsed().as_secs_f64();
    if let Some(path) = &args.csv {
        write_csv(path, &grid, &z).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let summary = serde_json::json!({
        "triangles": loaded.mesh.len(),
        "points": z.len(),
        "threads": threads,
        "load_s": loaded.load_s,
        "compute_s": compute_s,
    });
    println!("{summary}");
    Ok(())
}

pub fn waterline_command(args: &WaterlineArgs) -> Result<()> {
    let threads = threads(args.threads)?;
    let loaded = load_model(&args.model, args.units)?;
    let reach = args.tool.radius() + args.allowance.max(0.0);
    let grid = ContourSpec::grid_around(loaded.mesh.bounds().xy(), reach, args.sampling)?;
    let spec = JobSpec {
        mesh: loaded.mesh.hash(),
        cutter: args.tool,
        operation: Operation::Contours(ContourSpec {
            grid,
            levels: args.z.0.clone(),
            allowance: args.allowance,
        }),
    };
    let ctx = JobContext::new(loaded.mesh.clone(), loaded.index.clone(), spec)?;
    let t0 = Instant::now();
    let JobOutput::Contours(levels) = run(&ctx, &Local { threads }, "waterline", args.quiet)?
    else {
        bail!("internal error: contour job produced something else");
    };
    let compute_s = t0.elapsed().as_secs_f64();
    if let Some(path) = &args.csv {
        write_contours_csv(path, &levels)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let summary = serde_json::json!({
        "triangles": loaded.mesh.len(),
        "levels": levels.len(),
        "loops": levels.iter().map(|l| l.contours.len()).sum::<usize>(),
        "points": levels.iter().flat_map(|l| &l.contours).map(|c| c.points.len()).sum::<usize>(),
        "threads": threads,
        "load_s": loaded.load_s,
        "compute_s": compute_s,
    });
    println!("{summary}");
    Ok(())
}

/// `level_z,loop,idx,x,y,z` rows, floats printed to round-trip (see `write_csv`).
fn write_contours_csv(path: &Path, levels: &[Level]) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "level_z,loop,idx,x,y,z")?;
    for level in levels {
        for (k, c) in level.contours.iter().enumerate() {
            for (i, p) in c.points.iter().enumerate() {
                let z = level.z;
                writeln!(out, "{z},{k},{i},{},{},{z}", p[0], p[1])?;
            }
        }
    }
    out.flush()
}

/// `x,y,z` rows in grid order. Rust prints the shortest decimal that reads back to the same
/// f64, so every value round-trips exactly.
fn write_csv(path: &Path, grid: &Grid, z: &[f64]) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "x,y,z")?;
    let per = grid.points_per_line();
    for (k, &zz) in z.iter().enumerate() {
        let p = grid.point(k / per, k % per, zz);
        writeln!(out, "{},{},{}", p.x, p.y, p.z)?;
    }
    out.flush()
}
