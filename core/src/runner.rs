//! Running a job: the one [`Executor`] interface the command line and the window call to
//! compute a job's chunks, whoever computes them, and the local one, [`Local`], on this
//! computer's cores (rayon). The pool (`millpond_net::Pool`) is the other executor: the
//! caller hands either the same [`JobContext`] and reads the same [`RunEvent`]s, so there is
//! one code path for "run this job" in each front end (ARCHITECTURE.md §4).

use crate::error::JobError;
use crate::job::{CancelToken, JobOutput};
use crate::job::{Cancelled, ChunkResult, JobContext};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// How far a job has come: the one figure the command line's bars, the window's status bar
/// and Statistics panel, and the pool's own statistics read, whoever computes the job.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    pub chunks_done: u32,
    pub chunks_total: u32,
    /// Chunks computed on this computer / by other machines of the pool (a local run
    /// computes every chunk here).
    pub local_chunks: u32,
    pub remote_chunks: u32,
    pub points_done: u64,
    pub points_total: u64,
    /// Seconds since the job started.
    pub elapsed_s: f64,
}

impl Progress {
    /// CL points per second, over the whole run so far.
    pub fn points_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.points_done as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// Seconds left at the rate so far; infinite before the first point.
    pub fn eta_s(&self) -> f64 {
        let rate = self.points_per_s();
        if rate > 0.0 {
            self.points_total.saturating_sub(self.points_done) as f64 / rate
        } else {
            f64::INFINITY
        }
    }

    /// Chunks done, 0 to 1.
    pub fn fraction(&self) -> f32 {
        if self.chunks_total == 0 {
            0.0
        } else {
            self.chunks_done as f32 / self.chunks_total as f32
        }
    }
}

/// Which of this computer's worker threads computed a chunk, and how long it took: the
/// per-worker figures of the Statistics panel. The pool counts its own workers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkerChunk {
    /// The worker thread's index, 0 to threads − 1.
    pub worker: usize,
    pub compute_s: f64,
}

/// What a running job reports. Called from whichever thread the executor runs on (a local
/// run's worker threads), so a listener must be cheap and thread-safe.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// A chunk's accepted result, once per chunk, in the order they finish, so the job can be
    /// drawn while it is computed. A `Progress` that counts it follows.
    Chunk(&'a ChunkResult),
    /// How far the job has come; `worker` when the chunk just counted was computed by a
    /// worker of this executor.
    Progress {
        progress: Progress,
        worker: Option<WorkerChunk>,
    },
}

/// Why a run stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cancelled")]
    Cancelled,
    #[error("cannot start {threads} worker threads: {message}")]
    Threads { threads: usize, message: String },
    /// The results could not be assembled (a result failed its checks).
    #[error(transparent)]
    Job(#[from] JobError),
    /// What the job is computed from could not be made ready (the stock the operations
    /// before a rest roughing one leave); the message says why, in the user's words.
    #[error("{0}")]
    Prepare(String),
    /// The pool failed the job or stopped; the message says which, in the user's words.
    #[error("{0}")]
    Pool(String),
}

impl From<Cancelled> for RunError {
    fn from(_: Cancelled) -> Self {
        RunError::Cancelled
    }
}

/// Where a run reports its progress and results: called from the worker that finished
/// something, so it must be cheap and thread-safe (it is `Sync`).
pub type OnEvent<'a> = dyn Fn(RunEvent<'_>) + Sync + 'a;

/// What a run ends with: the job's output, or why there is none.
pub type RunResult = Result<JobOutput, RunError>;

/// Something that computes a job's chunks and assembles its output: this computer's cores
/// ([`Local`]) or the pool. The output is bit for bit the same whichever runs it.
pub trait Executor: Send + Sync {
    /// Runs the job to its output, reporting on the way. `cancel` is seen within
    /// milliseconds: the run returns [`RunError::Cancelled`].
    fn run(&self, job: &JobContext, cancel: &CancelToken, on_event: &OnEvent<'_>) -> RunResult;
}

/// This computer's cores: `threads` rayon worker threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub threads: usize,
}

impl Executor for Local {
    fn run(&self, job: &JobContext, cancel: &CancelToken, on_event: &OnEvent<'_>) -> RunResult {
        let results = run_local(job, self.threads, cancel, on_event)?;
        if cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        Ok(job.finish(results)?)
    }
}

/// Runs every chunk of the job on `threads` worker threads, reporting each result and the
/// progress after it from the worker that computed it. A cancel is seen by every worker
/// between raster line pieces, within milliseconds.
///
/// Results come back in chunk order: identical bits for any thread count.
pub fn run_local(
    ctx: &JobContext,
    threads: usize,
    cancel: &CancelToken,
    on_event: &OnEvent<'_>,
) -> Result<Vec<ChunkResult>, RunError> {
    let threads = threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("millpond-worker-{i}"))
        .build()
        .map_err(|e| RunError::Threads {
            threads,
            message: e.to_string(),
        })?;
    let started = Instant::now();
    let spec = ctx.spec();
    let total = spec.chunk_count();
    let points_total = spec.points_total();
    let chunks_done = AtomicU32::new(0);
    let points_done = AtomicU64::new(0);
    let results: Result<Vec<ChunkResult>, Cancelled> = pool.install(|| {
        (0..total)
            .into_par_iter()
            .with_max_len(1)
            .map(|c| {
                if cancel.is_cancelled() {
                    return Err(Cancelled);
                }
                let t0 = Instant::now();
                let r = ctx.run_chunk(c, cancel)?;
                let compute_s = t0.elapsed().as_secs_f64();
                let done = chunks_done.fetch_add(1, Ordering::Relaxed) + 1;
                let points = points_done.fetch_add(spec.chunk_points(c), Ordering::Relaxed)
                    + spec.chunk_points(c);
                on_event(RunEvent::Chunk(&r));
                on_event(RunEvent::Progress {
                    progress: Progress {
                        chunks_done: done,
                        chunks_total: total,
                        local_chunks: done,
                        remote_chunks: 0,
                        points_done: points,
                        points_total,
                        elapsed_s: started.elapsed().as_secs_f64(),
                    },
                    worker: Some(WorkerChunk {
                        worker: rayon::current_thread_index().unwrap_or(0),
                        compute_s,
                    }),
                });
                Ok(r)
            })
            .collect()
    });
    Ok(results?)
}
