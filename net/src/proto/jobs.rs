//! One job as a member sees it ([`JobState`]: queue, grants, re-queue on link loss, deaths,
//! backup copies), and the node's handling of job ends and results (ARCHITECTURE.md §4.5–4.6).

use super::{Action, LinkId, MAX_DEATHS, Node, close};
use crate::stats::WorkerStats;
use crate::wire::{JobId, MAX_HOPS, Msg, NodeId};
use crate::{JobEvent, PoolError};
use millpond_core::job::{ChunkResult, JobContext};
use millpond_core::runner::Progress;
use millpond_core::{CancelToken, JobSpec};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::info;

/// Most (node, worker slot) pairs whose received results are counted; later ones are not.
const MAX_REMOTE_WORKERS: usize = 4096;
/// Shortest time between two progress reports sent as results arrive.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// One job as this node sees it.
pub(super) struct JobState {
    pub spec: JobSpec,
    pub ctx: Option<JobContext>,
    pub cancel: CancelToken,
    /// Where the job came from; `None` if this node owns it.
    pub parent: Option<LinkId>,
    pub total: u32,
    /// Chunks this node may hand out or compute, front first.
    pub queue: VecDeque<u32>,
    /// Chunks handed down each link, with when.
    pub granted: HashMap<LinkId, HashMap<u32, Instant>>,
    /// Every chunk ever handed down a link: a result for anything else is a violation.
    pub ever_granted: HashMap<LinkId, HashSet<u32>>,
    /// Chunks being computed here.
    pub running: HashSet<u32>,
    /// Chunks this node computed for the job.
    pub computed_here: u32,
    /// Links this job was announced to.
    pub children: BTreeSet<LinkId>,
    /// How many more chunks each child asked for.
    pub child_wants: BTreeMap<LinkId, u32>,
    // Non-owner:
    pub held: HashSet<u32>,
    pub steal_pending: bool,
    pub nowork_at: Option<Instant>,
    // Owner:
    /// Shared with the job's event receiver ([`JobEvent::Chunk`]), which usually drops its
    /// copy long before the job is assembled.
    pub results: BTreeMap<u32, Arc<ChunkResult>>,
    pub deaths: HashMap<u32, u32>,
    pub local_only: HashSet<u32>,
    pub started: Instant,
    pub local_done: u32,
    pub remote_done: u32,
    pub points_done: u64,
    pub last_progress: Instant,
}

impl JobState {
    pub fn new(spec: JobSpec, parent: Option<LinkId>, now: Instant) -> Self {
        let total = spec.chunk_count();
        Self {
            spec,
            ctx: None,
            cancel: CancelToken::new(),
            parent,
            total,
            queue: VecDeque::new(),
            granted: HashMap::new(),
            ever_granted: HashMap::new(),
            running: HashSet::new(),
            computed_here: 0,
            children: BTreeSet::new(),
            child_wants: BTreeMap::new(),
            held: HashSet::new(),
            steal_pending: false,
            nowork_at: None,
            results: BTreeMap::new(),
            deaths: HashMap::new(),
            local_only: HashSet::new(),
            started: now,
            local_done: 0,
            remote_done: 0,
            points_done: 0,
            last_progress: now,
        }
    }

    /// A link below this node died: everything handed down it comes back to the front of the
    /// queue. At the owner each such chunk counts a death; one that killed `MAX_DEATHS`
    /// holders is never handed out again, only computed here.
    /// Forgets `link` as a child and puts the chunks it held back at the front of the queue;
    /// returns how many.
    pub fn link_lost(&mut self, link: LinkId) -> u32 {
        self.children.remove(&link);
        self.child_wants.remove(&link);
        let Some(lost) = self.granted.remove(&link) else {
            return 0;
        };
        let mut requeued = 0;
        let mut lost: Vec<u32> = lost.into_keys().collect();
        lost.sort_unstable();
        for c in lost.into_iter().rev() {
            if self.results.contains_key(&c) {
                continue;
            }
            if self.parent.is_none() {
                let d = self.deaths.entry(c).or_insert(0);
                *d += 1;
                if *d >= MAX_DEATHS {
                    self.local_only.insert(c);
                }
            }
            self.queue.push_front(c);
            requeued += 1;
        }
        requeued
    }

    /// Takes up to `want` chunks from the front of the queue for child `link`, skipping the
    /// ones only this node may compute, and records the grant.
    pub fn grant(&mut self, link: LinkId, want: u32, now: Instant) -> Vec<u32> {
        let mut chunks = Vec::new();
        let mut kept = VecDeque::new();
        while chunks.len() < want as usize {
            let Some(c) = self.queue.pop_front() else {
                break;
            };
            if self.local_only.contains(&c) {
                kept.push_back(c);
            } else {
                chunks.push(c);
            }
        }
        while let Some(c) = kept.pop_back() {
            self.queue.push_front(c);
        }
        let g = self.granted.entry(link).or_default();
        let ever = self.ever_granted.entry(link).or_default();
        for &c in &chunks {
            g.insert(c, now);
            ever.insert(c);
        }
        chunks
    }

    /// The chunk an idle owner should copy when nothing is queued: the one handed out
    /// longest ago that is neither done nor already being copied here.
    pub fn backup_candidate(&self) -> Option<u32> {
        self.granted
            .values()
            .flat_map(|g| g.iter())
            .filter(|(c, _)| !self.running.contains(c) && !self.results.contains_key(c))
            .min_by_key(|(c, t)| (**t, **c))
            .map(|(c, _)| *c)
    }

    /// How far the owner has come, up to `now`.
    pub fn progress(&self, now: Instant) -> Progress {
        Progress {
            chunks_done: self.results.len() as u32,
            chunks_total: self.total,
            local_chunks: self.local_done,
            remote_chunks: self.remote_done,
            points_done: self.points_done,
            points_total: self.spec.grid().points(),
            elapsed_s: now.saturating_duration_since(self.started).as_secs_f64(),
        }
    }
}

impl Node {
    pub(super) fn submit(&mut self, now: Instant, ctx: JobContext) -> Result<JobId, PoolError> {
        let (mesh, index, spec) = (ctx.mesh().clone(), ctx.index().clone(), ctx.spec().clone());
        let id = JobId {
            owner: self.s.id,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.seen.insert(id);
        self.meshes.keep(spec.mesh, mesh, index, now);
        let mut state = JobState::new(spec.clone(), None, now);
        state.ctx = Some(ctx);
        state.queue = (0..state.total).collect();
        state.children = self.links.keys().copied().collect();
        let children: Vec<LinkId> = state.children.iter().copied().collect();
        for l in children {
            let spec = spec.clone();
            let hops_left = MAX_HOPS - 1;
            self.send(
                l,
                Msg::Announce {
                    job: id,
                    spec: Box::new(spec),
                    hops_left,
                },
            );
        }
        info!("job {id}: {} chunks", state.total);
        self.jobs.insert(id, state);
        self.evict_meshes();
        Ok(id)
    }

    /// Removes a job here and tells the links below it that it is over.
    pub(super) fn end_job(&mut self, id: JobId) -> Option<JobState> {
        let j = self.jobs.remove(&id)?;
        j.cancel.cancel();
        if j.parent.is_some() {
            info!("job {id} over here: computed {} chunks", j.computed_here);
        }
        for &c in &j.children {
            if Some(c) != j.parent {
                self.send(c, Msg::Cancel { job: id });
            }
        }
        Some(j)
    }

    /// A chunk computed on worker slot `worker` (or given up: `result` None).
    pub(super) fn on_computed(
        &mut self,
        now: Instant,
        job: JobId,
        chunk: u32,
        worker: usize,
        seconds: f64,
        result: Option<Box<ChunkResult>>,
    ) {
        self.busy = self.busy.saturating_sub(1);
        if let Some(w) = self.worker_slots.get_mut(worker) {
            w.busy = false;
            if result.is_some() {
                w.chunks_done += 1;
                w.compute_s += seconds;
            }
        }
        if let Some(j) = self.jobs.get_mut(&job) {
            j.running.remove(&chunk);
            if result.is_some() {
                j.computed_here += 1;
            }
        }
        if let Some(r) = result {
            let by = (self.s.id, worker as u32);
            self.on_result(now, job, chunk, r, None, seconds, by);
        }
    }

    /// A result from child `link`: checked against what was granted to it, then counted.
    /// `times` is (compute, transfer) seconds.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_remote_result(
        &mut self,
        now: Instant,
        link: LinkId,
        job: JobId,
        chunk: u32,
        (compute_s, transfer_s): (f32, f64),
        by: (NodeId, u32),
        result: Box<ChunkResult>,
    ) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        let violation = close::PROTOCOL_VIOLATION;
        if !j
            .ever_granted
            .get(&link)
            .is_some_and(|s| s.contains(&chunk))
        {
            let reason = format!("result for chunk {chunk} that was never granted to it");
            return self.close_link(now, link, violation, &reason);
        }
        if result.chunk != chunk {
            return self.close_link(now, link, violation, "result header mismatch");
        }
        if let Err(e) = result.validate(&j.spec) {
            return self.close_link(now, link, violation, &e.to_string());
        }
        if j.granted
            .get_mut(&link)
            .is_none_or(|g| g.remove(&chunk).is_none())
        {
            return; // late: re-queued meanwhile; the first result wins
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.chunks_done += 1;
            l.compute_s += f64::from(compute_s);
            l.transfer_s += transfer_s;
            // Per computing worker, counted where the link's count is (statistics only: a
            // claim of being this node is ignored, and the pairs counted are bounded).
            let (node, worker) = by;
            if node != self.s.id {
                let pairs: usize = self.remote_workers.values().map(|w| w.len()).sum();
                let known = self
                    .remote_workers
                    .get(&node)
                    .is_some_and(|w| w.contains_key(&worker));
                if known || pairs < MAX_REMOTE_WORKERS {
                    let w: &mut WorkerStats = self
                        .remote_workers
                        .entry(node)
                        .or_default()
                        .entry(worker)
                        .or_default();
                    w.chunks_done += 1;
                    w.compute_s += f64::from(compute_s);
                    self.remote_via.insert(node, (l.peer, now));
                }
            }
        }
        let seconds = f64::from(compute_s);
        self.on_result(now, job, chunk, result, Some(link), seconds, by);
    }

    /// A result computed here (`from` None) or received from a child; `by` is who computed
    /// it (node, worker slot), passed on unchanged when the result goes up to the parent.
    #[allow(clippy::too_many_arguments)]
    fn on_result(
        &mut self,
        now: Instant,
        id: JobId,
        chunk: u32,
        result: Box<ChunkResult>,
        from: Option<LinkId>,
        seconds: f64,
        by: (NodeId, u32),
    ) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        match j.parent {
            Some(parent) => {
                if !j.held.remove(&chunk) || !self.links.contains_key(&parent) {
                    return;
                }
                self.out.push(Action::SendResult {
                    link: parent,
                    job: id,
                    chunk,
                    compute_s: seconds as f32,
                    by,
                    result,
                });
            }
            None => {
                if j.results.contains_key(&chunk) {
                    return; // duplicate (a backup copy): first wins
                }
                j.queue.retain(|&c| c != chunk);
                for g in j.granted.values_mut() {
                    g.remove(&chunk);
                }
                if from.is_some() {
                    j.remote_done += 1;
                } else {
                    j.local_done += 1;
                }
                j.points_done += j.spec.chunk_points(chunk);
                let result: Arc<ChunkResult> = Arc::from(result);
                self.out.push(Action::Report {
                    job: id,
                    event: JobEvent::Chunk(Arc::clone(&result)),
                });
                j.results.insert(chunk, result);
                if j.results.len() as u32 == j.total {
                    self.finish_job(now, id);
                } else if now.saturating_duration_since(j.last_progress) > PROGRESS_EVERY {
                    j.last_progress = now;
                    let event = JobEvent::Progress(j.progress(now));
                    self.out.push(Action::Report { job: id, event });
                }
            }
        }
    }

    /// Every result is in: the job ends here and below, and the shell assembles it.
    fn finish_job(&mut self, now: Instant, id: JobId) {
        let Some(mut j) = self.end_job(id) else {
            return;
        };
        let event = JobEvent::Progress(j.progress(now));
        self.out.push(Action::Report { job: id, event });
        let Some(ctx) = j.ctx.take() else { return };
        let results: Vec<ChunkResult> = std::mem::take(&mut j.results)
            .into_values()
            .map(|r| Arc::try_unwrap(r).unwrap_or_else(|shared| (*shared).clone()))
            .collect();
        info!(
            "job {id} done: {} chunks here, {} from the pool, {:.2} s",
            j.local_done,
            j.remote_done,
            now.saturating_duration_since(j.started).as_secs_f64()
        );
        self.out.push(Action::Assemble {
            job: id,
            ctx,
            results,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millpond_core::job::{DropSpec, Grid, Operation};
    use millpond_core::mesh::MeshHash;
    use millpond_core::{Axis, Cutter, Rect};

    fn job() -> JobState {
        let spec = JobSpec {
            mesh: MeshHash([0; 32]),
            cutter: Cutter::Ball { diameter: 3.0 },
            operation: Operation::Drop(DropSpec {
                grid: Grid {
                    axis: Axis::X,
                    bounds: Rect::new(0.0, 100.0, 0.0, 100.0),
                    step: 0.1,
                    sampling: 0.1,
                },
                floor: 0.0,
            }),
        };
        let mut j = JobState::new(spec, None, Instant::now());
        j.queue = (0..j.total).collect();
        j
    }

    #[test]
    fn lost_chunks_come_back_first_and_three_deaths_keep_a_chunk_home() {
        let mut j = job();
        let t0 = Instant::now();
        assert_eq!(j.grant(7, 3, t0), vec![0, 1, 2]);
        assert_eq!(j.queue.front(), Some(&3));
        j.link_lost(7);
        assert_eq!(
            j.queue.iter().take(4).copied().collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        // Chunk 0 kills two more holders.
        for link in [8, 9] {
            assert_eq!(j.grant(link, 1, t0), vec![0]);
            j.link_lost(link);
        }
        assert_eq!(j.deaths[&0], 3);
        assert!(j.local_only.contains(&0));
        // It is never handed out again, and stays at the front for this node's workers.
        assert_eq!(j.grant(10, 2, t0), vec![1, 2]);
        assert_eq!(j.queue.front(), Some(&0));
        // A result that arrived meanwhile is not re-queued.
        let mut j = job();
        j.grant(7, 2, t0);
        j.results.insert(
            0,
            Arc::new(millpond_core::job::ChunkResult {
                chunk: 0,
                data: millpond_core::job::ChunkData::Heights(vec![]),
            }),
        );
        j.link_lost(7);
        assert_eq!(j.queue.front(), Some(&1));
        assert_eq!(j.queue.iter().filter(|&&c| c == 0).count(), 0);
    }

    #[test]
    fn backup_copies_take_the_oldest_outstanding_chunk_once() {
        let mut j = job();
        let t0 = Instant::now();
        j.grant(1, 2, t0);
        j.grant(2, 1, t0 + Duration::from_millis(5));
        assert_eq!(j.backup_candidate(), Some(0));
        j.running.insert(0);
        assert_eq!(j.backup_candidate(), Some(1));
        j.running.insert(1);
        assert_eq!(j.backup_candidate(), Some(2));
        j.running.insert(2);
        assert_eq!(j.backup_candidate(), None);
    }
}
