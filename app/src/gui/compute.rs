//! Computing toolpaths off the UI thread: locally on rayon workers, or in the pool.
//!
//! A "Generate" click starts a batch: one worker thread that runs its operations in order and
//! reports each one's toolpath the moment it is done, so the first result shows while the
//! rest still compute. The UI polls [`Compute::poll`] every frame; the worker wakes it with
//! `request_repaint`. While an operation computes, each finished chunk's CL points come to
//! the UI too ([`Compute::preview`]), so the toolpath can be drawn as it is assembled. A
//! cancel sets the batch's [`CancelToken`]: local chunks see it between
//! raster line pieces (milliseconds), and a pooled job is cancelled at its owner at once.

use millpond_core::job::JobOutput;
use millpond_core::program::PlannedOp;
use millpond_core::rest::RestMaterial;
use millpond_core::runner::{
    Executor, Local, OnEvent, Progress, RunError, RunEvent, RunResult, WorkerChunk,
};
use millpond_core::setup::Setup;
use millpond_core::{Aabb, CancelToken, Cutter, JobContext, Mesh, Point3, Toolpath, TriangleIndex};
use millpond_net::{Pool, WorkerStats};
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Where a batch runs.
#[derive(Debug, Clone)]
pub enum Backend {
    /// On this computer's cores.
    Local { threads: usize },
    /// In the pool, which runs `workers` threads here. Weak, so that leaving the pool (server
    /// mode off, quit) is never held up by a batch that still has operations queued.
    Pool { pool: Weak<Pool>, workers: usize },
}

/// One operation to compute.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub op_id: u64,
    pub name: String,
    pub mesh: Arc<Mesh>,
    pub index: Arc<TriangleIndex>,
    pub planned: PlannedOp,
    /// The model generation it was planned for.
    pub generation: u64,
    /// For rest roughing: the stock set up and the operations before it.
    pub rest: Option<RestInput>,
}

/// What a rest roughing operation is computed from: the operations before it machine the
/// stock, and it cuts only what they leave ([`RestMaterial::left_by`]).
#[derive(Debug, Clone)]
pub struct RestInput {
    pub setup: Setup,
    /// The enabled operations before it, in machining order.
    pub earlier: Vec<EarlierOp>,
}

/// An operation before a rest roughing one.
#[derive(Debug, Clone)]
pub struct EarlierOp {
    pub op_id: u64,
    pub name: String,
    pub cutter: Cutter,
    /// Its toolpath, where it has one and is not computed again in the same batch.
    pub toolpath: Option<Arc<Toolpath>>,
}

/// What the running operation has computed so far: the CL points of its finished chunks,
/// in the order they finished, until the operation is done (or cancelled, or failed).
#[derive(Debug, Clone)]
pub struct Preview {
    pub op_id: u64,
    /// Polylines in model coordinates (see `JobSpec::preview`), shared so that handing the
    /// list to the 3D view copies pointers, not points.
    pub lines: Vec<Arc<[Point3]>>,
    /// Chunks whose points are in `lines`.
    pub chunks: u32,
    /// Points in `lines`.
    pub points: usize,
    pub bounds: Aabb,
}

impl Preview {
    fn new(op_id: u64) -> Self {
        Self {
            op_id,
            lines: Vec::new(),
            chunks: 0,
            points: 0,
            bounds: Aabb::EMPTY,
        }
    }

    fn add(&mut self, lines: Vec<Vec<Point3>>) {
        self.chunks += 1;
        for line in lines.into_iter().filter(|l| !l.is_empty()) {
            for &p in &line {
                self.bounds.extend(p);
            }
            self.points += line.len();
            self.lines.push(line.into());
        }
    }
}

/// A finished operation's toolpath.
#[derive(Debug, Clone)]
pub struct Computed {
    pub op_id: u64,
    pub toolpath: Arc<Toolpath>,
    pub planned: PlannedOp,
    pub generation: u64,
    pub elapsed_s: f64,
    /// For rest roughing: the operations before it and the toolpaths it was computed from
    /// (it is out of date once one of them changes).
    pub rest_from: Vec<(u64, Arc<Toolpath>)>,
}

/// What the UI learns from [`Compute::poll`].
#[derive(Debug)]
pub enum ComputeEvent {
    Finished(Box<Computed>),
    Failed {
        op_id: u64,
        name: String,
        message: String,
    },
    /// The batch stopped on a cancel; `latency` is from the click to the workers stopping.
    Cancelled {
        name: String,
        latency: Duration,
    },
}

/// The earlier operations' toolpaths a rest roughing one was computed from.
type RestFrom = Vec<(u64, Arc<Toolpath>)>;

enum Msg {
    Started {
        op_id: u64,
        name: String,
        points_total: u64,
        chunks_total: u32,
    },
    /// How far the operation has come; `worker` for a chunk computed by a worker thread here
    /// (local mode).
    Progress {
        progress: Progress,
        worker: Option<WorkerChunk>,
    },
    /// A finished chunk's CL polylines, for the preview.
    Chunk {
        op_id: u64,
        lines: Vec<Vec<Point3>>,
    },
    Done {
        request: Box<JobRequest>,
        result: Result<(Arc<Toolpath>, RestFrom), String>,
        elapsed_s: f64,
    },
    Cancelled {
        stopped: Instant,
    },
    BatchOver,
}

/// The operation the worker is on.
#[derive(Debug, Clone)]
pub struct CurrentJob {
    pub op_id: u64,
    pub name: String,
    pub progress: Progress,
}

#[derive(Debug)]
struct Batch {
    cancel: CancelToken,
    cancel_requested: Option<Instant>,
    /// Operations not started yet, by id.
    queued: Vec<u64>,
    current: Option<CurrentJob>,
    /// The current operation's finished chunks.
    preview: Option<Preview>,
    rx: Receiver<Msg>,
    pooled: bool,
}

/// A finished or running job as the statistics panel lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub name: String,
    /// Where it got to (for a finished job: its end).
    pub progress: Progress,
    /// "running", "cancelling", "done", "cancelled", "failed".
    pub state: &'static str,
}

impl JobRow {
    /// Seconds left: none for a job that is over.
    pub fn eta_s(&self) -> f64 {
        match self.state {
            "running" | "cancelling" => self.progress.eta_s(),
            _ => 0.0,
        }
    }
}

/// What this computer's worker threads computed in local mode since start (pooled runs are
/// counted by the pool), measured chunk by chunk, for the statistics panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalTotals {
    /// One entry per worker thread, in the order they first took a chunk.
    pub workers: Vec<WorkerStats>,
}

impl LocalTotals {
    pub fn chunks(&self) -> u64 {
        self.workers.iter().map(|w| w.chunks_done).sum()
    }

    /// Worker-seconds spent computing chunks.
    pub fn compute_s(&self) -> f64 {
        self.workers.iter().map(|w| w.compute_s).sum()
    }

    fn add(&mut self, worker: usize, seconds: f64) {
        if self.workers.len() <= worker {
            self.workers.resize(worker + 1, WorkerStats::default());
        }
        self.workers[worker].chunks_done += 1;
        self.workers[worker].compute_s += seconds;
    }
}

/// Throughput samples kept for the plot (10 minutes at 4 per second).
const HISTORY: usize = 2400;

#[derive(Debug)]
pub struct Compute {
    batch: Option<Batch>,
    repaint: egui::Context,
    started: Instant,
    /// (seconds since start, CL points/s) while computing.
    history: VecDeque<[f64; 2]>,
    last_sample: Option<(Instant, u64, u64)>,
    pub totals: LocalTotals,
    local_threads: usize,
    /// Finished jobs, newest last (at most 20).
    pub finished: Vec<JobRow>,
}

impl Compute {
    pub fn new(repaint: egui::Context) -> Self {
        Self {
            batch: None,
            repaint,
            started: Instant::now(),
            history: VecDeque::new(),
            last_sample: None,
            totals: LocalTotals::default(),
            local_threads: 1,
            finished: Vec::new(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.batch.is_some()
    }

    pub fn is_cancelling(&self) -> bool {
        self.batch
            .as_ref()
            .is_some_and(|b| b.cancel_requested.is_some())
    }

    pub fn current(&self) -> Option<&CurrentJob> {
        self.batch.as_ref().and_then(|b| b.current.as_ref())
    }

    /// What the running operation has computed so far (none before its first chunk, and
    /// none once it is over).
    pub fn preview(&self) -> Option<&Preview> {
        self.batch.as_ref().and_then(|b| b.preview.as_ref())
    }

    /// Is this operation waiting or running?
    pub fn is_pending(&self, op_id: u64) -> bool {
        self.batch.as_ref().is_some_and(|b| {
            b.queued.contains(&op_id) || b.current.as_ref().is_some_and(|c| c.op_id == op_id)
        })
    }

    pub fn is_pooled(&self) -> bool {
        self.batch.as_ref().is_some_and(|b| b.pooled)
    }

    /// Worker threads of the batch running or last run here.
    pub fn local_threads(&self) -> usize {
        self.local_threads
    }

    pub fn history(&self) -> &VecDeque<[f64; 2]> {
        &self.history
    }

    /// Seconds since the app started (the plot's time axis).
    pub fn now_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Starts computing `jobs` in order. A batch already running is cancelled first: the
    /// newest click is what the user wants.
    pub fn start(&mut self, jobs: Vec<JobRequest>, backend: Backend) {
        self.cancel();
        if jobs.is_empty() {
            return;
        }
        self.local_threads = match &backend {
            Backend::Local { threads } => *threads,
            Backend::Pool { workers, .. } => *workers,
        }
        .max(1);
        let (tx, rx) = channel();
        let cancel = CancelToken::new();
        let queued = jobs.iter().map(|j| j.op_id).collect();
        let pooled = matches!(backend, Backend::Pool { .. });
        let worker_cancel = cancel.clone();
        let repaint = self.repaint.clone();
        let spawned = std::thread::Builder::new()
            .name("millpond-compute".into())
            .spawn(move || run_batch(jobs, backend, worker_cancel, tx, repaint));
        if let Err(e) = spawned {
            self.finished.push(JobRow {
                name: format!("cannot start a worker thread: {e}"),
                progress: Progress::default(),
                state: "failed",
            });
            return;
        }
        self.last_sample = None;
        self.batch = Some(Batch {
            cancel,
            cancel_requested: None,
            queued,
            current: None,
            preview: None,
            rx,
            pooled,
        });
    }

    /// Asks the running batch to stop. The UI shows "Cancelling…" until the workers stopped,
    /// then [`ComputeEvent::Cancelled`].
    pub fn cancel(&mut self) {
        if let Some(b) = &mut self.batch {
            b.cancel.cancel();
            b.cancel_requested.get_or_insert_with(Instant::now);
        }
    }

    /// Everything that happened since the last frame.
    pub fn poll(&mut self) -> Vec<ComputeEvent> {
        let mut events = Vec::new();
        let Some(b) = &mut self.batch else {
            return events;
        };
        let mut over = false;
        loop {
            let msg = match b.rx.try_recv() {
                Ok(m) => m,
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    over = true;
                    break;
                }
            };
            match msg {
                Msg::Started {
                    op_id,
                    name,
                    points_total,
                    chunks_total,
                } => {
                    b.queued.retain(|&q| q != op_id);
                    b.preview = None;
                    b.current = Some(CurrentJob {
                        op_id,
                        name,
                        progress: Progress {
                            points_total,
                            chunks_total,
                            ..Progress::default()
                        },
                    });
                }
                Msg::Progress { progress, worker } => {
                    if let Some(w) = worker {
                        self.totals.add(w.worker, w.compute_s);
                    }
                    if let Some(c) = &mut b.current {
                        c.progress = progress;
                    }
                }
                Msg::Chunk { op_id, lines } => {
                    if b.current.as_ref().is_some_and(|c| c.op_id == op_id) {
                        b.preview
                            .get_or_insert_with(|| Preview::new(op_id))
                            .add(lines);
                    }
                }
                Msg::Done {
                    request,
                    result,
                    elapsed_s,
                } => {
                    b.preview = None;
                    let mut progress = b.current.take().map(|c| c.progress).unwrap_or_default();
                    progress.elapsed_s = elapsed_s;
                    let row = |state| JobRow {
                        name: request.name.clone(),
                        progress,
                        state,
                    };
                    match result {
                        Ok((tp, rest_from)) => {
                            push_row(&mut self.finished, row("done"));
                            events.push(ComputeEvent::Finished(Box::new(Computed {
                                op_id: request.op_id,
                                toolpath: tp,
                                planned: request.planned,
                                generation: request.generation,
                                elapsed_s,
                                rest_from,
                            })));
                        }
                        Err(message) => {
                            push_row(&mut self.finished, row("failed"));
                            events.push(ComputeEvent::Failed {
                                op_id: request.op_id,
                                name: request.name,
                                message,
                            });
                        }
                    }
                }
                Msg::Cancelled { stopped } => {
                    b.preview = None;
                    let requested = b.cancel_requested.unwrap_or(stopped);
                    let name = b
                        .current
                        .as_ref()
                        .map_or_else(String::new, |c| c.name.clone());
                    if let Some(c) = b.current.take() {
                        push_row(
                            &mut self.finished,
                            JobRow {
                                name: c.name,
                                progress: c.progress,
                                state: "cancelled",
                            },
                        );
                    }
                    events.push(ComputeEvent::Cancelled {
                        name,
                        latency: stopped.saturating_duration_since(requested),
                    });
                    over = true;
                }
                Msg::BatchOver => over = true,
            }
        }
        if over {
            self.batch = None;
            self.last_sample = None;
        }
        events
    }

    /// Adds a throughput sample (at most one per `every`); call each frame while computing.
    pub fn sample(&mut self, every: Duration) {
        let Some(c) = self.current() else {
            return;
        };
        let (op, done) = (c.op_id, c.progress.points_done);
        let now = Instant::now();
        match self.last_sample {
            Some((t, _, _)) if now - t < every => {}
            Some((t, last_op, last_done)) if last_op == op => {
                let rate = done.saturating_sub(last_done) as f64 / (now - t).as_secs_f64();
                self.history.push_back([self.now_s(), rate]);
                while self.history.len() > HISTORY {
                    self.history.pop_front();
                }
                self.last_sample = Some((now, op, done));
            }
            _ => self.last_sample = Some((now, op, done)),
        }
    }
}

fn push_row(rows: &mut Vec<JobRow>, row: JobRow) {
    rows.push(row);
    if rows.len() > 20 {
        rows.remove(0);
    }
}

fn run_batch(
    jobs: Vec<JobRequest>,
    backend: Backend,
    cancel: CancelToken,
    tx: Sender<Msg>,
    repaint: egui::Context,
) {
    let send = |m: Msg| {
        let _ = tx.send(m);
        repaint.request_repaint();
    };
    // This batch's toolpaths so far, for the rest roughing operations after them.
    let mut done: std::collections::HashMap<u64, Arc<Toolpath>> = Default::default();
    for job in jobs {
        if cancel.is_cancelled() {
            send(Msg::Cancelled {
                stopped: Instant::now(),
            });
            return;
        }
        let spec = &job.planned.spec;
        send(Msg::Started {
            op_id: job.op_id,
            name: job.name.clone(),
            points_total: spec.points_total(),
            chunks_total: spec.chunk_count(),
        });
        let t0 = Instant::now();
        let result = run_one(&job, &done, &backend, &cancel, &send);
        let elapsed_s = t0.elapsed().as_secs_f64();
        match result {
            Ok((tp, rest_from)) => {
                let tp = Arc::new(tp);
                done.insert(job.op_id, tp.clone());
                send(Msg::Done {
                    request: Box::new(job),
                    result: Ok((tp, rest_from)),
                    elapsed_s,
                })
            }
            Err(RunError::Cancelled) => {
                send(Msg::Cancelled {
                    stopped: Instant::now(),
                });
                return;
            }
            Err(e) => send(Msg::Done {
                request: Box::new(job),
                result: Err(e.to_string()),
                elapsed_s,
            }),
        }
    }
    send(Msg::BatchOver);
}

/// One operation, run by the batch's executor (whichever it is), its chunks previewed and its
/// progress reported as they come.
fn run_one(
    job: &JobRequest,
    done: &std::collections::HashMap<u64, Arc<Toolpath>>,
    executor: &dyn Executor,
    cancel: &CancelToken,
    send: &(dyn Fn(Msg) + Sync),
) -> Result<(Toolpath, RestFrom), RunError> {
    let mut ctx = JobContext::new(
        job.mesh.clone(),
        job.index.clone(),
        job.planned.spec.clone(),
    )?;
    let mut rest_from = Vec::new();
    if let Some(rest) = &job.rest {
        let mut earlier = Vec::with_capacity(rest.earlier.len());
        for e in &rest.earlier {
            let Some(tp) = done.get(&e.op_id).or(e.toolpath.as_ref()) else {
                return Err(RunError::Prepare(format!(
                    "generate \"{}\" first: rest roughing cuts only what the operations \
                     before it leave",
                    e.name
                )));
            };
            earlier.push((e.cutter, &**tp));
            rest_from.push((e.op_id, tp.clone()));
        }
        let material = RestMaterial::left_by(
            &rest.setup,
            &earlier,
            &job.planned.spec,
            &job.mesh,
            &job.index,
            cancel,
        )
        .map_err(|e| match e {
            millpond_core::simulate::SimulateError::Cancelled => RunError::Cancelled,
            e => RunError::Prepare(e.to_string()),
        })?;
        if let Some(m) = material {
            ctx = ctx.with_rest(Arc::new(m))?;
        }
    }
    let output = executor.run(&ctx, cancel, &|event| match event {
        // A copy of the chunk's points: cheap next to computing them.
        RunEvent::Chunk(r) => send(Msg::Chunk {
            op_id: job.op_id,
            lines: ctx.preview(r),
        }),
        RunEvent::Progress { progress, worker } => send(Msg::Progress { progress, worker }),
    })?;
    match output {
        JobOutput::Toolpath(tp) => Ok((tp, rest_from)),
        _ => Err(RunError::Pool(
            "internal error: the job produced no toolpath".into(),
        )),
    }
}

/// A batch's backend is its executor: this computer's cores, or the pool as long as server
/// mode is on.
impl Executor for Backend {
    fn run(&self, job: &JobContext, cancel: &CancelToken, on_event: &OnEvent<'_>) -> RunResult {
        match self {
            Backend::Local { threads } => Local { threads: *threads }.run(job, cancel, on_event),
            // The pool is held only to submit: its handle follows the job without it, so
            // turning server mode off (or quitting) drops the pool at once, and the run says
            // the pool stopped.
            Backend::Pool { pool, .. } => {
                let stopped =
                    || RunError::Pool("the pool stopped (server mode was turned off)".into());
                let handle = pool
                    .upgrade()
                    .ok_or_else(stopped)?
                    .submit_job(job.clone())?;
                handle.follow(cancel, on_event)
            }
        }
    }
}
