//! The local runner: a job's chunks on this machine's cores (rayon).

use crate::job::CancelToken;
use crate::job::{Cancelled, ChunkResult, JobContext};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How far a job has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub chunks_done: u32,
    pub chunks_total: u32,
    pub points_done: u64,
    pub points_total: u64,
}

/// Why a local run stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cancelled")]
    Cancelled,
    #[error("cannot start {threads} worker threads: {message}")]
    Threads { threads: usize, message: String },
}

impl From<Cancelled> for RunError {
    fn from(_: Cancelled) -> Self {
        RunError::Cancelled
    }
}

/// Runs every chunk of the job on `threads` worker threads. `on_chunk` is called (from the
/// worker that finished it) with each result and the progress so far; it must be cheap.
/// A cancel is seen by every worker between raster line pieces, within milliseconds.
///
/// Results come back in chunk order: identical bits for any thread count.
pub fn run_local(
    ctx: &JobContext,
    threads: usize,
    cancel: &CancelToken,
    on_chunk: &(dyn Fn(&ChunkResult, Progress) + Sync),
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
    let spec = ctx.spec();
    let total = spec.chunk_count();
    let points_total = spec.grid().points();
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
                let r = ctx.run_chunk(c, cancel)?;
                let progress = Progress {
                    chunks_done: chunks_done.fetch_add(1, Ordering::Relaxed) + 1,
                    chunks_total: total,
                    points_done: points_done.fetch_add(spec.chunk_points(c), Ordering::Relaxed)
                        + spec.chunk_points(c),
                    points_total,
                };
                on_chunk(&r, progress);
                Ok(r)
            })
            .collect()
    });
    Ok(results?)
}
