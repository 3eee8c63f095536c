//! `millpond simulate`: what a program leaves of the stock, checked against the model
//! (ARCHITECTURE.md §2.2). For a job, its toolpaths are computed and posted exactly as
//! `millpond toolpath --job` writes them; for a G-code file (`--gcode`), the file is read
//! strictly ([`millpond_core::gcode_read`]) and its coordinates taken from the job's work
//! zero, or as they are with `--stock` and `--model`. One JSON line on stdout gives the
//! figures per operation and in total; a gouge or a rapid through material makes the exit
//! status non-zero, for scripts and CI.

use super::progress::OperationProgress;
use super::threads;
use super::toolpath::{compute_toolpaths, load_job_model, parse_stock_box};
use crate::pool::Computer;
use crate::run_job;
use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use millpond_core::gcode_read::{self, ReadOptions};
use millpond_core::job::{JobContext, JobOutput};
use millpond_core::job_file::Job;
use millpond_core::runner::Executor;
use millpond_core::setup::Stock;
use millpond_core::sim_job::{Model, ProgramMoves, Simulated, SimulationJob};
use millpond_core::simulate::{
    self, DEFAULT_CELL_FRACTION, DEFAULT_TOLERANCE, Engagement, HISTOGRAM_BINS, Pass, PassFeeds,
    PassReport, Target, Verification,
};
use millpond_core::stock_model::StockModel;
use millpond_core::toolpath::Move;
use millpond_core::{Aabb, CancelToken, Cutter, Mesh, Point3, Toolpath, TriangleIndex};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Largest G-code file read, bytes: a 10M-move program is about 250 MB.
const MAX_GCODE_BYTES: u64 = 2 << 30;

/// Most cells of the stock written to `--stl` (two triangles each, 100 MB of STL).
const STL_CELLS: usize = 1 << 20;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The job (TOML) whose program to simulate: its model, stock, tools and operations.
    pub job: Option<PathBuf>,
    /// Simulate this G-code file (LinuxCNC/GRBL subset) instead of the job's own toolpaths;
    /// with a job, its coordinates are from the job's work zero and its tools the job's.
    #[arg(long, value_name = "FILE")]
    pub gcode: Option<PathBuf>,
    /// A tool of the G-code's tool table, NUMBER=TOOL (e.g. 1=ball:3, 2=flat:6; repeat).
    /// Overrides the job's tool of that number.
    #[arg(long = "tool", value_name = "N=TOOL")]
    pub tools: Vec<String>,
    /// The stock box for a G-code file without a job, in the program's coordinates:
    /// XMIN,XMAX,YMIN,YMAX,ZMIN,ZMAX in mm (as `millpond toolpath --stock`).
    #[arg(long, value_name = "BOX", value_parser = parse_stock_box, allow_hyphen_values = true)]
    pub stock: Option<Stock>,
    /// The model to check the stock against, for a G-code file without a job: an STL in the
    /// program's coordinates, millimetres.
    #[arg(long, value_name = "STL")]
    pub model: Option<PathBuf>,
    /// Cell size, mm [default: a tenth of the smallest tool's radius, coarser if the stock
    /// would need more than --memory]
    #[arg(long, value_name = "MM")]
    pub cell: Option<f64>,
    /// Memory the stock's heights may take (4 bytes a cell), MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub memory: usize,
    /// Depth below the model counted as a gouge, mm.
    #[arg(long, value_name = "MM", default_value_t = DEFAULT_TOLERANCE)]
    pub tolerance: f64,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write the machined stock as a binary STL.
    #[arg(long, value_name = "FILE")]
    pub stl: Option<PathBuf>,
    /// Write a deviation map as a PNG, one pixel a cell: red gouge, green on size, yellow to
    /// blue for material left (blue at 1 mm and more).
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Simulate in the pool: join the member at HOST:PORT and share the work (a job's
    /// toolpaths, then the stock's tiles). Needs the model to check against (a job, or
    /// --model); the figures are the same bits as on this computer alone.
    #[arg(long, value_name = "HOST:PORT")]
    pub pool: Option<String>,
    /// With --pool: the share of the results other members send that this computer computes
    /// again and compares bit for bit (0 to 1, or 0% to 100%).
    #[arg(long, default_value = "3%", value_parser = crate::pool::parse_verify)]
    pub verify: f64,
    #[command(flatten)]
    pub secret: crate::pool::SecretArgs,
}

/// One pass to simulate, owning its moves.
struct OwnedPass {
    name: String,
    tool_number: u32,
    cutter: Cutter,
    toolpath: Toolpath,
    feeds: Result<millpond_core::Feeds, Vec<f64>>,
    lines: Option<Vec<usize>>,
}

impl OwnedPass {
    fn pass(&self) -> Pass<'_> {
        Pass {
            name: &self.name,
            tool_number: self.tool_number,
            cutter: self.cutter,
            toolpath: &self.toolpath,
            feeds: match &self.feeds {
                Ok(f) => PassFeeds::Operation(*f),
                Err(f) => PassFeeds::PerMove(f),
            },
            lines: self.lines.as_deref(),
        }
    }
}

/// The stock, what it should become, and the passes.
struct Plan {
    stock: Aabb,
    /// The placed model and its floor, when there is one to check against.
    target: Option<(Arc<Mesh>, Arc<TriangleIndex>, f64)>,
    passes: Vec<OwnedPass>,
}

pub fn simulate_command(args: &SimulateArgs) -> Result<()> {
    let threads = threads(args.threads)?;
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        bail!(
            "--tolerance must be a positive number of millimetres, got {}",
            args.tolerance
        );
    }
    if args.pool.is_some() && args.job.is_none() && args.model.is_none() {
        bail!("--pool simulates against a model: give a job, or --model with the G-code");
    }
    let computer = Computer::new(args.pool.as_deref(), &args.secret, threads, args.verify)?;
    let plan = match (&args.job, &args.gcode) {
        (Some(job), gcode) => job_plan(job, gcode.as_deref(), args, computer.executor())?,
        (None, Some(gcode)) => gcode_plan(gcode, args)?,
        (None, None) => bail!("give a job file, or --gcode FILE with --stock and --tool"),
    };
    if plan.passes.is_empty() {
        bail!("the program has no moves to simulate");
    }
    let smallest = plan
        .passes
        .iter()
        .map(|p| p.cutter.radius())
        .fold(f64::INFINITY, f64::min);
    let budget = args.memory.saturating_mul(1 << 20);
    let cell = match args.cell {
        Some(c) => c,
        None => StockModel::cell_for(plan.stock, smallest, DEFAULT_CELL_FRACTION, budget / 4),
    };
    let workers = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the simulation's threads")?;

    let t0 = Instant::now();
    let passes: Vec<_> = plan.passes.iter().map(|p| p.pass()).collect();
    let simulated = match &computer {
        Computer::Pool(pool) => in_pool(&plan, &passes, cell, budget, args, &**pool),
        Computer::Here(_) => workers.install(|| here(&plan, &passes, cell, budget, args)),
    };
    computer.finish();
    let (stock, ops) = simulated?;
    let seconds = t0.elapsed().as_secs_f64();
    let target = plan.target.as_ref().map(|(mesh, index, floor)| Target {
        mesh,
        index,
        floor: *floor,
    });

    let (nx, ny) = stock.size();
    let total_check = ops.last().and_then(|(_, c)| c.clone());
    let total = total_figures(&ops);
    let line = json!({
        "cells": [nx, ny],
        "cell_mm": stock.cell(),
        "stock_memory_mb": stock.memory_bytes() as f64 / 1e6,
        "threads": threads,
        "seconds": seconds,
        "tolerance_mm": args.tolerance,
        "operations": ops.iter().map(|(r, c)| operation_json(r, c.as_ref())).collect::<Vec<_>>(),
        "total": {
            "moves": total.moves,
            "removed_mm3": total.removed_mm3,
            "rapids_in_material": total.rapids_in_material,
            "deepest_cut": engagement_json(total.deepest_cut.as_ref().map(|(e, _)| e), total.deepest_cut.as_ref().map(|(_, k)| *k)),
            "widest_cut": engagement_json(total.widest_cut.as_ref().map(|(e, _)| e), total.widest_cut.as_ref().map(|(_, k)| *k)),
            "feed_time_s": total.feed_time_s,
            "verification": total_check.as_ref().map(verification_json),
        },
    });
    println!("{line}");

    if let Some(path) = &args.stl {
        let (stride, tris) = simulate::stock_triangles(&stock, STL_CELLS);
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        millpond_core::stl::write_binary(
            std::io::BufWriter::new(file),
            "Millpond simulated stock",
            &tris,
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
        if stride > 1 && !args.quiet {
            eprintln!(
                "millpond: {}: every {stride}th cell of the stock (at most {STL_CELLS} cells)",
                path.display()
            );
        }
    }
    if let Some(path) = &args.png {
        let Some(t) = &target else {
            bail!("--png needs a model to compare with: give a job, or --model");
        };
        let (w, h, rgb) =
            workers.install(|| simulate::deviation_image(&stock, t, args.tolerance, 1.0));
        image::save_buffer(
            path,
            &rgb,
            w as u32,
            h as u32,
            image::ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }

    let mut problems = Vec::new();
    if let Some(v) = &total_check
        && let Some(g) = v.gouge
    {
        problems.push(format!(
            "the program gouges the model: {:.4} mm below it at X{:.3} Y{:.3} ({} cells beyond {} mm)",
            -g.deviation, g.x, g.y, v.gouge_cells, args.tolerance
        ));
    }
    for (k, (r, _)) in ops.iter().enumerate() {
        if let Some(e) = &r.first_rapid_in_material {
            problems.push(format!(
                "{}. {}: {} rapid move{} through material, the first {} ({:.3} mm deep)",
                k + 1,
                r.name,
                r.rapids_in_material,
                if r.rapids_in_material == 1 { "" } else { "s" },
                describe_move(e),
                e.depth
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// Simulates on this computer's threads (the current rayon pool), batch by batch with a
/// progress bar per pass: the leanest way when no pool shares the work.
fn here(
    plan: &Plan,
    passes: &[Pass<'_>],
    cell: f64,
    budget: usize,
    args: &SimulateArgs,
) -> Result<Simulated> {
    let mut stock = StockModel::with_budget(plan.stock, cell, budget)
        .map_err(|e| anyhow!("cannot make the stock: {e}"))?;
    let target = plan.target.as_ref().map(|(mesh, index, floor)| Target {
        mesh,
        index,
        floor: *floor,
    });
    // A progress bar per pass, started when its first batch is done.
    let mut bar: Option<(usize, OperationProgress)> = None;
    let ops = simulate::simulate_program(
        &mut stock,
        passes,
        target.as_ref(),
        args.tolerance,
        &CancelToken::new(),
        &mut |k, done, all| {
            if bar.as_ref().is_none_or(|(at, _)| *at != k) {
                if let Some((_, b)) = bar.take() {
                    b.finish();
                }
                let label = format!("simulate {}. {}", k + 1, passes[k].name);
                let chunks = all.div_ceil(simulate::BATCH_MOVES) as u32;
                bar = Some((k, OperationProgress::new(&label, chunks, args.quiet)));
            }
            if let Some((_, b)) = &bar {
                b.update(done.div_ceil(simulate::BATCH_MOVES) as u32, done as u64);
            }
        },
    )?;
    if let Some((_, b)) = bar {
        b.finish();
    }
    Ok((stock, ops))
}

/// Simulates in the pool: the stock's tiles are a job's chunks like any toolpath's
/// ([`millpond_core::sim_job`]), computed by whichever members take them; the moves travel
/// once to each member as the job's second input, and the passes' names and feeds stay
/// here, where the chunks are put together into the same bits as [`here`] gives.
fn in_pool(
    plan: &Plan,
    passes: &[Pass<'_>],
    cell: f64,
    budget: usize,
    args: &SimulateArgs,
    executor: &dyn Executor,
) -> Result<Simulated> {
    let Some((mesh, index, floor)) = &plan.target else {
        bail!("--pool simulates against a model: give a job, or --model with the G-code");
    };
    let model = Model {
        mesh: mesh.clone(),
        index: index.clone(),
        floor: *floor,
    };
    let program = Arc::new(ProgramMoves::of(passes));
    let job = SimulationJob::new(
        plan.stock,
        cell,
        budget,
        program,
        Some(model),
        args.tolerance,
    )?;
    let ctx = JobContext::of_simulation(job)?;
    let JobOutput::Stock(chunks) = super::run(&ctx, executor, "simulate", args.quiet)? else {
        bail!("internal error: a simulation job gave something other than stock");
    };
    let job = ctx
        .simulation_job()
        .ok_or_else(|| anyhow!("internal error: a simulation job without its plan"))?;
    Ok(job.finish(chunks, passes)?)
}

/// The job's program: its toolpaths as posted, or a G-code file in its setup.
fn job_plan(
    path: &Path,
    gcode: Option<&Path>,
    args: &SimulateArgs,
    executor: &dyn Executor,
) -> Result<Plan> {
    let job = Job::load(path)?;
    let model = load_job_model(&job, "the job's units")
        .with_context(|| format!("{}: the job's model", path.display()))?;
    let program = run_job::plan(&job, &model.mesh)?;
    let target = Some((model.mesh.clone(), model.index.clone(), program.setup.floor));
    let stock = program.setup.stock;
    if let Some(gcode) = gcode {
        let mut table: Vec<(u32, Cutter)> = Vec::new();
        for t in &job.tools {
            if let Ok(c) = t.cutter() {
                table.push((t.number, c));
            }
        }
        let zero = program.zero.as_ref().map_or(Point3::default(), |z| z.at);
        return Ok(Plan {
            stock,
            target,
            passes: read_gcode(gcode, &tool_table(&args.tools, table)?, zero)?,
        });
    }
    if !args.tools.is_empty() {
        bail!("--tool is for a G-code file's tool table; a job's operations use the job's tools");
    }
    let origins: Vec<String> = job.operations.iter().map(|o| o.name.clone()).collect();
    let toolpaths = compute_toolpaths(&program, &model, &origins, executor, args.quiet)?;
    let computed: Vec<&Toolpath> = toolpaths.iter().map(|(tp, _)| tp).collect();
    let posted = program
        .post(&computed)
        .map_err(|e| anyhow!("cannot check the program against the stock: {e}"))?;
    let passes = program
        .ops
        .iter()
        .zip(posted)
        .map(|((_, op), (toolpath, _))| OwnedPass {
            name: op.name.clone(),
            tool_number: op.tool_number,
            cutter: op.cutter,
            toolpath,
            feeds: Ok(op.feeds),
            lines: None,
        })
        .collect();
    Ok(Plan {
        stock,
        target,
        passes,
    })
}

/// A G-code file with `--stock`, `--tool` and, to check against, `--model`.
fn gcode_plan(gcode: &Path, args: &SimulateArgs) -> Result<Plan> {
    let Some(b) = &args.stock else {
        bail!("--stock XMIN,XMAX,YMIN,YMAX,ZMIN,ZMAX is needed without a job");
    };
    // An explicit box: the model plays no part in it.
    let stock = b.aabb(Aabb::EMPTY);
    let target = match &args.model {
        Some(path) => {
            let mesh = Arc::new(Mesh::from_stl_path(path)?);
            let index = Arc::new(TriangleIndex::new(&mesh));
            Some((mesh, index, stock.min.z))
        }
        None => None,
    };
    Ok(Plan {
        stock,
        target,
        passes: read_gcode(
            gcode,
            &tool_table(&args.tools, Vec::new())?,
            Point3::default(),
        )?,
    })
}

/// The tool table: `base` (a job's tools), overridden by `--tool N=TOOL`.
fn tool_table(flags: &[String], mut base: Vec<(u32, Cutter)>) -> Result<Vec<(u32, Cutter)>> {
    for f in flags {
        let (n, spec) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("--tool {f}: expected NUMBER=TOOL, e.g. 1=ball:3"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| anyhow!("--tool {f}: {n:?} is not a tool number"))?;
        let cutter: Cutter = spec.parse().map_err(|e| anyhow!("--tool {f}: {e}"))?;
        base.retain(|(m, _)| *m != n);
        base.push((n, cutter));
    }
    Ok(base)
}

/// Reads a G-code file into one pass per tool run, moved from the program's zero at `zero`.
fn read_gcode(path: &Path, table: &[(u32, Cutter)], zero: Point3) -> Result<Vec<OwnedPass>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > MAX_GCODE_BYTES {
        bail!(
            "{}: {size} bytes, more than the {} MB a program may have",
            path.display(),
            MAX_GCODE_BYTES >> 20
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as text", path.display()))?;
    let name = path.display().to_string();
    let program = gcode_read::read_program(&text, &name, &ReadOptions::default())?;
    drop(text);
    let mut passes = Vec::new();
    for run in program.runs {
        let cutter = match table.iter().find(|(n, _)| *n == run.tool) {
            Some((_, c)) => *c,
            // A program that never names its tool (GRBL's, written by hand) with one tool
            // given: that one.
            None if run.tool == 0 && table.len() == 1 => table[0].1,
            None if run.tool == 0 => bail!(
                "{name}:{}: the program cuts before naming a tool (no T word): give exactly one \
                 --tool N=TOOL for it",
                run.line
            ),
            None => bail!(
                "{name}:{}: tool {} is not in the tool table: give --tool {}=TOOL (e.g. {}=ball:3)",
                run.line,
                run.tool,
                run.tool,
                run.tool
            ),
        };
        let at = |p: Point3| p + zero;
        let mut toolpath = Toolpath {
            start: at(run.start),
            moves: Vec::with_capacity(run.moves.len()),
        };
        let mut feeds = Vec::with_capacity(run.moves.len());
        let mut lines = Vec::with_capacity(run.moves.len());
        for m in &run.moves {
            toolpath.moves.push(Move {
                kind: m.kind,
                to: at(m.to),
            });
            feeds.push(m.feed);
            lines.push(m.line);
        }
        passes.push(OwnedPass {
            name: format!("T{} from line {}", run.tool, run.line),
            tool_number: run.tool,
            cutter,
            toolpath,
            feeds: Err(feeds),
            lines: Some(lines),
        });
    }
    Ok(passes)
}

/// The whole program's engagement figures, with the pass each came from.
struct Total {
    moves: usize,
    removed_mm3: f64,
    rapids_in_material: usize,
    deepest_cut: Option<(Engagement, usize)>,
    widest_cut: Option<(Engagement, usize)>,
    feed_time_s: f64,
}

fn total_figures(ops: &[(PassReport, Option<Verification>)]) -> Total {
    let mut t = Total {
        moves: 0,
        removed_mm3: 0.0,
        rapids_in_material: 0,
        deepest_cut: None,
        widest_cut: None,
        feed_time_s: 0.0,
    };
    for (k, (r, _)) in ops.iter().enumerate() {
        t.moves += r.moves;
        t.removed_mm3 += r.removed_mm3;
        t.rapids_in_material += r.rapids_in_material;
        t.feed_time_s += r.feed_time_s;
        if let Some(e) = r.deepest_cut
            && t.deepest_cut.is_none_or(|(d, _)| e.depth > d.depth)
        {
            t.deepest_cut = Some((e, k));
        }
        if let Some(e) = r.widest_cut
            && t.widest_cut.is_none_or(|(d, _)| e.width > d.width)
        {
            t.widest_cut = Some((e, k));
        }
    }
    t
}

fn describe_move(e: &Engagement) -> String {
    let to = format!("to X{:.3} Y{:.3} Z{:.3}", e.at.to.x, e.at.to.y, e.at.to.z);
    match e.at.line {
        Some(line) => format!("at line {line} ({to})"),
        None => format!("move {} ({to})", e.at.index + 1),
    }
}

fn engagement_json(e: Option<&Engagement>, operation: Option<usize>) -> Value {
    let Some(e) = e else {
        return Value::Null;
    };
    json!({
        "depth_mm": e.depth,
        "width_mm": e.width,
        "operation": operation.map(|k| k + 1),
        "move": e.at.index + 1,
        "line": e.at.line,
        "to": [e.at.to.x, e.at.to.y, e.at.to.z],
    })
}

fn verification_json(v: &Verification) -> Value {
    let bins: Vec<Value> = HISTOGRAM_BINS
        .iter()
        .map(|b| json!(b))
        .chain([Value::Null])
        .zip(v.histogram)
        .map(|(up_to, cells)| json!({"up_to_mm": up_to, "cells": cells}))
        .collect();
    json!({
        "cells": v.cells,
        "gouge": v.gouge.map(|g| json!({"depth_mm": -g.deviation, "x": g.x, "y": g.y})),
        "gouge_cells": v.gouge_cells,
        "on_size_cells": v.on_size_cells,
        "remaining": {
            "max_mm": v.remaining_max.map(|m| m.deviation),
            "max_at": v.remaining_max.map(|m| [m.x, m.y]),
            "mean_mm": v.remaining_mean,
            "volume_mm3": v.remaining_mm3,
            "histogram": bins,
        },
    })
}

fn operation_json(r: &PassReport, check: Option<&Verification>) -> Value {
    json!({
        "name": r.name,
        "tool": r.tool_number,
        "cutter": millpond_core::gcode::describe_tool(&r.cutter),
        "moves": r.moves,
        "removed_mm3": r.removed_mm3,
        "rapids_in_material": r.rapids_in_material,
        "first_rapid_in_material": engagement_json(r.first_rapid_in_material.as_ref(), None),
        "deepest_cut": engagement_json(r.deepest_cut.as_ref(), None),
        "widest_cut": engagement_json(r.widest_cut.as_ref(), None),
        "feed_length_mm": r.feed_length_mm,
        "air_cut_mm": r.air_cut_mm,
        "feed_time_s": r.feed_time_s,
        "verification": check.map(verification_json),
    })
}
