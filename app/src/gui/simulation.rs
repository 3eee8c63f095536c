//! Simulate in the window: the program Export would write, machined into the stock off the
//! UI thread (`millpond_core::simulate`, the same passes `millpond simulate` runs), with
//! progress and Cancel like Generate; the stock it leaves is drawn in the 3D view coloured
//! by deviation from the model, and its figures shown beside Export (ARCHITECTURE.md §2.2).

use super::compute::Backend;
use super::export::{self, Job};
use millpond_core::job::{CancelToken, JobContext, JobOutput};
use millpond_core::runner::{Executor, RunEvent};
use millpond_core::sim_job::{Model, ProgramMoves, SimulationJob};
use millpond_core::simulate::{
    self, DEFAULT_CELL_FRACTION, DEFAULT_TOLERANCE, Pass, PassFeeds, PassReport, StockSurface,
    Target, Verification,
};
use millpond_core::stock_model::StockModel;
use millpond_core::{Aabb, Cutter, Mesh, Point3, Toolpath, TriangleIndex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};

/// Memory the window's simulation may give the stock's heights (4 bytes a cell).
pub const MEMORY_BUDGET: usize = 256 << 20;

/// Most cells drawn (the view samples every n-th cell beyond this).
const DRAWN_CELLS: usize = 1 << 20;

/// Material left beyond this is drawn darkest blue, mm.
pub const FULL_SCALE_MM: f64 = 1.0;

/// A finished simulation.
#[derive(Debug)]
pub struct Simulated {
    /// Per operation: what it did, and the stock compared with the model after it.
    pub operations: Vec<(PassReport, Verification)>,
    /// Cells along X and Y, and their size, mm.
    pub cells: (usize, usize),
    pub cell: f64,
    pub tolerance: f64,
    pub seconds: f64,
    pub surface: Arc<StockSurface>,
    /// What playback replays: each operation's name, tool and posted toolpath, the stock
    /// box and the floor.
    program: Arc<Replay>,
    /// What it was computed for.
    key: Vec<usize>,
}

/// A simulated program, kept for playback.
#[derive(Debug)]
struct Replay {
    ops: Vec<(String, Cutter, Toolpath)>,
    stock: Aabb,
    floor: f64,
    cell: f64,
    tolerance: f64,
}

impl Simulated {
    /// The stock after the last operation compared with the model.
    pub fn total(&self) -> Option<&Verification> {
        self.operations.last().map(|(_, v)| v)
    }

    /// Rapid moves through material in the whole program.
    pub fn rapids_in_material(&self) -> usize {
        self.operations
            .iter()
            .map(|(r, _)| r.rapids_in_material)
            .sum()
    }
}

/// How far a running simulation has come.
#[derive(Debug, Default)]
struct Progress {
    /// Operations done, of all; moves done in the current one, of all (each × 1).
    ops: AtomicU64,
    moves: AtomicU64,
    name: Mutex<String>,
}

/// The window's simulation: at most one running.
#[derive(Debug, Default)]
pub struct Simulation {
    running: Option<Running>,
    /// The last finished one.
    pub last: Option<Result<Simulated, String>>,
    /// Playback of the last finished one.
    pub playback: Option<Playback>,
}

#[derive(Debug)]
struct Running {
    cancel: CancelToken,
    progress: Arc<Progress>,
    ops: usize,
    rx: Receiver<Result<Simulated, String>>,
}

/// What identifies the program simulated: its toolpaths (a new computation is a new `Arc`).
fn key(job: &Job) -> Vec<usize> {
    job.toolpaths
        .iter()
        .map(|t| Arc::as_ptr(t) as usize)
        .collect()
}

impl Simulation {
    /// Starts simulating `job` against the model (`mesh`, `index`); a running one is
    /// cancelled first.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        job: Job,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
        backend: Backend,
    ) {
        self.cancel();
        let cancel = CancelToken::new();
        let progress = Arc::new(Progress::default());
        let (tx, rx) = channel();
        let ops = job.program.ops.len();
        let (c, p, ctx) = (cancel.clone(), progress.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("simulate".into())
            .spawn(move || {
                let _ = tx.send(run(&job, (mesh, index), &backend, &c, &p, &ctx));
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.running = Some(Running {
                    cancel,
                    progress,
                    ops,
                    rx,
                })
            }
            Err(e) => self.last = Some(Err(format!("cannot start the simulation: {e}"))),
        }
    }

    /// Stops a running simulation (within a batch of moves); what was shown stays.
    pub fn cancel(&mut self) {
        if let Some(r) = self.running.take() {
            r.cancel.cancel();
        }
    }

    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// "2/3 Raster finishing 45%" while running.
    pub fn progress_text(&self) -> Option<String> {
        let r = self.running.as_ref()?;
        let op = r.progress.ops.load(Ordering::Relaxed) as usize;
        let permille = r.progress.moves.load(Ordering::Relaxed);
        let name = r
            .progress
            .name
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default();
        Some(format!(
            "Simulating {}/{} {name}: {}%",
            (op + 1).min(r.ops),
            r.ops,
            permille / 10
        ))
    }

    /// Collects a finished simulation: `true` when a new one arrived.
    pub fn poll(&mut self) -> bool {
        let Some(r) = &self.running else {
            return false;
        };
        match r.rx.try_recv() {
            Ok(result) => {
                self.running = None;
                if !matches!(&result, Err(e) if e == "cancelled") {
                    self.last = Some(result);
                }
                true
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => false,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.running = None;
                self.last = Some(Err("the simulation stopped unexpectedly".into()));
                true
            }
        }
    }

    /// Whether the last finished simulation is of `job` as it is now (a regenerated
    /// operation makes it stale).
    pub fn is_current(&self, job: Option<&Job>) -> bool {
        match (&self.last, job) {
            (Some(Ok(s)), Some(j)) => s.key == key(j),
            _ => false,
        }
    }
}

/// The simulation itself (the background thread's work).
fn run(
    job: &Job,
    (mesh, index): (Arc<Mesh>, Arc<TriangleIndex>),
    backend: &Backend,
    cancel: &CancelToken,
    progress: &Progress,
    ctx: &egui::Context,
) -> Result<Simulated, String> {
    let t0 = std::time::Instant::now();
    let posted = export::posted(job)?;
    let stock_box = job.program.setup.stock;
    let smallest = job
        .program
        .ops
        .iter()
        .map(|(_, op)| op.cutter.radius())
        .fold(f64::INFINITY, f64::min);
    let cell = StockModel::cell_for(
        stock_box,
        smallest,
        DEFAULT_CELL_FRACTION,
        MEMORY_BUDGET / 4,
    );
    let target = Target {
        mesh: &mesh,
        index: &index,
        floor: job.program.setup.floor,
    };
    let tolerance = DEFAULT_TOLERANCE;
    let passes: Vec<Pass<'_>> = job
        .program
        .ops
        .iter()
        .zip(&posted)
        .map(|((_, op), (toolpath, _))| Pass {
            name: &op.name,
            tool_number: op.tool_number,
            cutter: op.cutter,
            toolpath,
            feeds: PassFeeds::Operation(op.feeds),
            lines: None,
        })
        .collect();
    let (stock, operations) = match backend {
        Backend::Pool { .. } => {
            let model = Model {
                mesh: mesh.clone(),
                index: index.clone(),
                floor: target.floor,
            };
            in_pool(
                &passes,
                (stock_box, cell),
                model,
                backend,
                cancel,
                progress,
                ctx,
            )?
        }
        Backend::Local { .. } => {
            batch_by_batch(&passes, (stock_box, cell), &target, cancel, progress, ctx)?
        }
    };
    let operations = operations
        .into_iter()
        // Checked against the model after every pass: the target was given.
        .filter_map(|(report, check)| Some((report, check?)))
        .collect::<Vec<_>>();
    let surface = simulate::stock_surface(&stock, &target, tolerance, FULL_SCALE_MM, DRAWN_CELLS);
    let program = Replay {
        ops: job
            .program
            .ops
            .iter()
            .zip(posted)
            .map(|((_, op), (tp, _))| (op.name.clone(), op.cutter, tp))
            .collect(),
        stock: stock_box,
        floor: job.program.setup.floor,
        cell,
        tolerance,
    };
    Ok(Simulated {
        operations,
        cells: stock.size(),
        cell: stock.cell(),
        tolerance,
        seconds: t0.elapsed().as_secs_f64(),
        surface: Arc::new(surface),
        program: Arc::new(program),
        key: key(job),
    })
}

/// What a simulation leaves: the stock, and per pass its report and check.
type Machined = (StockModel, Vec<(PassReport, Option<Verification>)>);

/// On this computer, batch by batch (the leanest way), the progress per operation.
fn batch_by_batch(
    passes: &[Pass<'_>],
    (stock_box, cell): (Aabb, f64),
    target: &Target<'_>,
    cancel: &CancelToken,
    progress: &Progress,
    ctx: &egui::Context,
) -> Result<Machined, String> {
    let mut stock = StockModel::with_budget(stock_box, cell, MEMORY_BUDGET)
        .map_err(|e| format!("cannot simulate: {e}"))?;
    let operations = simulate::simulate_program(
        &mut stock,
        passes,
        Some(target),
        DEFAULT_TOLERANCE,
        cancel,
        &mut |k, done, all| {
            // After each batch of 65,536 moves: a lock and a name copy are nothing next to it.
            progress.ops.store(k as u64, Ordering::Relaxed);
            if let Ok(mut n) = progress.name.lock()
                && *n != passes[k].name
            {
                *n = passes[k].name.to_string();
            }
            progress
                .moves
                .store((done * 1000 / all.max(1)) as u64, Ordering::Relaxed);
            ctx.request_repaint();
        },
    )
    .map_err(|e| e.to_string())?;
    Ok((stock, operations))
}

/// In the pool (server mode on): the stock's tiles are a job like any other, shared with the
/// members ([`millpond_core::sim_job`]); the stock and figures are the bits the batches give
/// here. Progress is the job's chunks, for all operations at once.
fn in_pool(
    passes: &[Pass<'_>],
    (stock_box, cell): (Aabb, f64),
    model: Model,
    backend: &Backend,
    cancel: &CancelToken,
    progress: &Progress,
    ctx: &egui::Context,
) -> Result<Machined, String> {
    let program = Arc::new(ProgramMoves::of(passes));
    let plan = SimulationJob::new(
        stock_box,
        cell,
        MEMORY_BUDGET,
        program,
        Some(model),
        DEFAULT_TOLERANCE,
    )
    .map_err(|e| format!("cannot simulate: {e}"))?;
    let job = JobContext::of_simulation(plan).map_err(|e| format!("cannot simulate: {e}"))?;
    if let Ok(mut n) = progress.name.lock() {
        *n = "every operation, in the pool".into();
    }
    let chunks = u64::from(job.spec().chunk_count().max(1));
    let out = backend
        .run(&job, cancel, &|event| {
            if let RunEvent::Progress { progress: p, .. } = event {
                progress
                    .moves
                    .store(u64::from(p.chunks_done) * 1000 / chunks, Ordering::Relaxed);
                ctx.request_repaint();
            }
        })
        .map_err(|e| e.to_string())?;
    let JobOutput::Stock(stock) = out else {
        return Err("the pool gave something other than stock".into());
    };
    let plan = job
        .simulation_job()
        .ok_or("a simulation job without its plan")?;
    plan.finish(stock, passes).map_err(|e| e.to_string())
}

/// A point of playback: the operations before `op` done, and the first `moves` moves of
/// operation `op` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct At {
    pub op: usize,
    pub moves: usize,
}

/// The stock at a point of playback, and the tool there.
#[derive(Debug)]
pub struct Frame {
    pub at: At,
    pub surface: Arc<StockSurface>,
    pub tool: (Point3, Cutter),
}

/// Playback of a finished simulation: the stock as it stands at any move, computed off the
/// UI thread (the latest request wins); forward from the point shown it machines only the
/// moves in between, backward it starts again from the uncut block.
#[derive(Debug)]
pub struct Playback {
    requests: std::sync::mpsc::Sender<At>,
    frames: Receiver<Frame>,
    /// Moves per operation.
    pub lengths: Vec<usize>,
    pub names: Vec<String>,
    /// Where the slider is.
    pub at: At,
    /// The frame on screen.
    pub shown: Option<At>,
    pub playing: bool,
    /// Moves per second while playing.
    pub speed: f64,
    /// Moves owed to the next step while playing (fractions of a move).
    carry: f64,
}

impl Playback {
    /// Playback of `sim` against the model; starts at the end of the program.
    pub fn new(
        ctx: &egui::Context,
        sim: &Simulated,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
    ) -> Result<Self, String> {
        let program = sim.program.clone();
        let lengths: Vec<usize> = program
            .ops
            .iter()
            .map(|(_, _, tp)| tp.moves.len())
            .collect();
        let names = program.ops.iter().map(|(n, _, _)| n.clone()).collect();
        let last = lengths.len().saturating_sub(1);
        let at = At {
            op: last,
            moves: lengths.last().copied().unwrap_or(0),
        };
        let (requests, rx) = channel::<At>();
        let (tx, frames) = channel();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("simulate-playback".into())
            .spawn(move || replay(&program, &mesh, &index, &rx, &tx, &ctx))
            .map_err(|e| format!("cannot start playback: {e}"))?;
        Ok(Self {
            requests,
            frames,
            lengths,
            names,
            at,
            shown: Some(at),
            playing: false,
            speed: 500.0,
            carry: 0.0,
        })
    }

    /// Shows the stock at `at` (clamped to the program).
    pub fn seek(&mut self, at: At) {
        let op = at.op.min(self.lengths.len().saturating_sub(1));
        let at = At {
            op,
            moves: at.moves.min(self.lengths.get(op).copied().unwrap_or(0)),
        };
        if at != self.at {
            self.at = at;
            let _ = self.requests.send(at);
        }
    }

    /// Advances while playing by `dt` seconds' worth of moves (on into the next operation);
    /// stops at the end.
    pub fn advance(&mut self, dt: f64) {
        if !self.playing {
            return;
        }
        self.carry += self.speed.max(1.0) * dt.clamp(0.0, 0.5);
        let step = self.carry.floor() as usize;
        if step == 0 {
            return;
        }
        self.carry -= step as f64;
        let mut at = self.at;
        at.moves += step;
        while at.op + 1 < self.lengths.len() && at.moves > self.lengths[at.op] {
            at.moves -= self.lengths[at.op];
            at.op += 1;
        }
        if at.op + 1 == self.lengths.len() && at.moves >= self.lengths[at.op] {
            self.playing = false;
        }
        self.seek(at);
    }

    /// A newly computed frame, if one arrived.
    pub fn poll(&mut self) -> Option<Frame> {
        let mut latest = None;
        while let Ok(f) = self.frames.try_recv() {
            latest = Some(f);
        }
        if let Some(f) = &latest {
            self.shown = Some(f.at);
        }
        latest
    }
}

/// The playback thread: answers the latest request with the stock there, until the
/// [`Playback`] goes.
fn replay(
    program: &Replay,
    mesh: &Mesh,
    index: &TriangleIndex,
    requests: &Receiver<At>,
    frames: &std::sync::mpsc::Sender<Frame>,
    ctx: &egui::Context,
) {
    let target = Target {
        mesh,
        index,
        floor: program.floor,
    };
    let fresh = || StockModel::with_budget(program.stock, program.cell, MEMORY_BUDGET).ok();
    let Some(mut stock) = fresh() else {
        return;
    };
    let mut now = At { op: 0, moves: 0 };
    while let Ok(mut want) = requests.recv() {
        while let Ok(later) = requests.try_recv() {
            want = later;
        }
        if want < now {
            let Some(s) = fresh() else {
                return;
            };
            stock = s;
            now = At { op: 0, moves: 0 };
        }
        // Machine from `now` to `want`, operation by operation.
        while now < want {
            let (_, cutter, tp) = &program.ops[now.op];
            let end = if now.op == want.op {
                want.moves
            } else {
                tp.moves.len()
            };
            let machined = simulate::machine_moves(
                &mut stock,
                cutter,
                tp,
                now.moves..end,
                &CancelToken::new(),
                &mut |_, _, _| {},
            );
            if machined.is_err() {
                return;
            }
            now = if now.op == want.op {
                want
            } else {
                At {
                    op: now.op + 1,
                    moves: 0,
                }
            };
        }
        let (_, cutter, tp) = &program.ops[want.op];
        let tool = match want.moves {
            0 => tp.start,
            n => tp.moves[n - 1].to,
        };
        let surface = simulate::stock_surface(
            &stock,
            &target,
            program.tolerance,
            FULL_SCALE_MM,
            DRAWN_CELLS,
        );
        if frames
            .send(Frame {
                at: want,
                surface: Arc::new(surface),
                tool: (tool, *cutter),
            })
            .is_err()
        {
            return;
        }
        ctx.request_repaint();
    }
}
