//! One job as a member sees it ([`JobState`]: queue, grants, re-queue on link loss, deaths,
//! backup copies), and the node's handling of job ends and results (ARCHITECTURE.md §4.5–4.6).

use super::verify::{Check, Delivery, Sampler};
use super::{LinkId, MAX_DEATHS, Node, keys_where};
use crate::PoolError;
use crate::wire::{JobId, MAX_HOPS, Msg, NodeId};
use millpond_core::job::{ChunkResult, JobContext};
use millpond_core::runner::Progress;
use millpond_core::{CancelToken, JobSpec};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::info;

/// Most (node, worker slot) pairs whose received results are counted: past it a newcomer
/// takes the place of the member heard from longest ago (`Node::count_remote_worker`).
pub(super) const MAX_REMOTE_WORKERS: usize = 4096;
/// Shortest time between two progress reports sent as results arrive.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_millis(50);
/// A grant expires once held this many times the holder's measured pace (grant to result,
/// averaged), plus `EXPIRE_SLACK`.
const EXPIRE_FACTOR: f64 = 4.0;
/// The same before the holder delivered anything in this job, times the slowest pace
/// measured at another holder (this node's own compute time until there is one): a slower
/// machine is not cut off before its first result.
const UNMEASURED_FACTOR: f64 = 16.0;
/// Added to every grant's time limit: round trips, a busy loop, a short job's noise.
const EXPIRE_SLACK: Duration = Duration::from_secs(2);

/// Job ids heard of, so that a late copy of an announcement is not taken up again: the
/// newest [`MAX_SEEN`], oldest forgotten first. Unbounded, a peer announcing fresh ids for
/// ever would grow it for ever; a job still here is in `jobs` too, and an id forgotten after
/// 65,536 newer ones belongs to a job long over.
#[derive(Default)]
pub(super) struct SeenJobs {
    set: HashSet<JobId>,
    order: VecDeque<JobId>,
}

/// Job ids remembered (16 bytes each, twice: about 2 MB full).
pub const MAX_SEEN: usize = 1 << 16;

impl SeenJobs {
    /// Remembers `id`; false if it was known already.
    pub fn insert(&mut self, id: JobId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > MAX_SEEN
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn contains(&self, id: JobId) -> bool {
        self.set.contains(&id)
    }
}

/// What a child link did with the chunks of one job it was granted.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LinkRecord {
    /// Results it delivered for its grants.
    pub results: u32,
    /// Chunks it said failed.
    pub failures: u32,
}

/// One job as this node sees it.
pub(super) struct JobState {
    pub spec: JobSpec,
    pub ctx: Option<JobContext>,
    /// Its inputs are here and it is being bound off the loop (a simulation).
    pub binding: bool,
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
    /// Which link delivered each remote result in `results` (taken out again if its peer is
    /// caught lying, `verify.rs`).
    pub delivered: BTreeMap<u32, Delivery>,
    /// Remote results waiting for this node's own computation of their chunk.
    pub checks: BTreeMap<u32, Vec<Check>>,
    /// Checks not yet started, front first: local workers take them before the queue.
    pub check_queue: VecDeque<u32>,
    /// (Link, computing node) pairs with at least one result checked in this job.
    pub sampled: HashSet<(LinkId, NodeId)>,
    pub sampler: Sampler,
    /// Failures (panics) of each chunk on this node's own workers.
    pub local_failures: HashMap<u32, u32>,
    /// Per child link, its results and failures in this job (`results.rs`).
    pub record: HashMap<LinkId, LinkRecord>,
    /// Child links that failed too often to get more of this job.
    pub failing: BTreeSet<LinkId>,
    /// Per child link, the seconds from a grant to its result (a moving average).
    pub pace: HashMap<LinkId, f64>,
    /// Seconds a chunk of this job takes on this node's workers (a moving average).
    pub local_pace: Option<f64>,
    /// Links that announced this job (the parent first): where its mesh may be fetched.
    pub announcers: BTreeSet<LinkId>,
    pub started: Instant,
    pub local_done: u32,
    pub remote_done: u32,
    pub points_done: u64,
    pub last_progress: Instant,
}

impl JobState {
    /// Whether it still waits for inputs: neither bound nor being bound.
    pub fn needs_inputs(&self) -> bool {
        self.ctx.is_none() && !self.binding
    }

    pub fn new(spec: JobSpec, parent: Option<LinkId>, now: Instant) -> Self {
        let total = spec.chunk_count();
        Self {
            spec,
            ctx: None,
            binding: false,
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
            delivered: BTreeMap::new(),
            checks: BTreeMap::new(),
            check_queue: VecDeque::new(),
            sampled: HashSet::new(),
            sampler: Sampler::default(),
            local_failures: HashMap::new(),
            record: HashMap::new(),
            failing: BTreeSet::new(),
            pace: HashMap::new(),
            local_pace: None,
            announcers: parent.into_iter().collect(),
            started: now,
            local_done: 0,
            remote_done: 0,
            points_done: 0,
            last_progress: now,
        }
    }

    /// A link below this node died: everything handed down it comes back to the front of the
    /// queue (`take_back`). Forgets `link` as a child; returns how many chunks came back.
    pub fn link_lost(&mut self, link: LinkId) -> u32 {
        self.children.remove(&link);
        self.child_wants.remove(&link);
        let Some(lost) = self.granted.remove(&link) else {
            return 0;
        };
        self.take_back(lost.into_keys().collect())
    }

    /// Chunks handed down a link that will not deliver them (lost, failed, expired) go back to
    /// the front of the queue, unless done meanwhile. At the owner each counts a death; one
    /// that killed `MAX_DEATHS` holders is never handed out again, only computed here.
    /// Returns how many came back.
    pub fn take_back(&mut self, mut chunks: Vec<u32>) -> u32 {
        chunks.sort_unstable();
        let mut requeued = 0;
        for c in chunks.into_iter().rev() {
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
            if !self.queue.contains(&c) {
                self.queue.push_front(c);
            }
            requeued += 1;
        }
        requeued
    }

    /// Takes back the grants held far longer than their holder's pace (`EXPIRE_FACTOR`,
    /// `UNMEASURED_FACTOR`, `EXPIRE_SLACK`): a silent or hoarding holder cannot stall the
    /// job; its result still counts if it comes first. Returns (link, chunks taken back).
    pub fn expire(&mut self, now: Instant) -> Vec<(LinkId, u32)> {
        // Turnarounds are comparable with each other (network, queueing at the holder); this
        // node's own compute time stands in only until one is measured.
        let slowest = self
            .pace
            .values()
            .copied()
            .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))))
            .or(self.local_pace);
        let mut out = Vec::new();
        let links: Vec<LinkId> = self.granted.keys().copied().collect();
        for link in links {
            let limit = match self.pace.get(&link) {
                Some(p) => EXPIRE_FACTOR * p,
                None => match slowest {
                    Some(p) => UNMEASURED_FACTOR * p,
                    None => continue, // nothing measured yet: no limit to go by
                },
            };
            let limit = Duration::from_secs_f64(limit.min(1e6)) + EXPIRE_SLACK;
            let Some(g) = self.granted.get_mut(&link) else {
                continue;
            };
            let old = keys_where(&*g, |t| now.saturating_duration_since(*t) > limit);
            for c in &old {
                g.remove(c);
            }
            if !old.is_empty() {
                let n = self.take_back(old);
                out.push((link, n));
            }
        }
        out
    }

    /// Records a result's turnaround from `link` (grant to result).
    pub fn measured(&mut self, link: LinkId, seconds: f64) {
        let p = self.pace.entry(link).or_insert(seconds);
        *p = 0.75 * *p + 0.25 * seconds;
    }

    /// Takes out every result `peer` delivered (it was caught lying) and re-queues their
    /// chunks at the front; its pending checks are moot. Returns how many were taken out.
    pub fn discard_from(&mut self, peer: NodeId) -> u32 {
        let chunks = keys_where(&self.delivered, |d| d.peer == peer);
        for &c in chunks.iter().rev() {
            self.delivered.remove(&c);
            if self.results.remove(&c).is_some() {
                self.remote_done = self.remote_done.saturating_sub(1);
                self.points_done = self.points_done.saturating_sub(self.spec.chunk_points(c));
            }
            if !self.queue.contains(&c) {
                self.queue.push_front(c);
            }
        }
        for v in self.checks.values_mut() {
            v.retain(|k| k.from.peer != peer);
        }
        self.checks.retain(|_, v| !v.is_empty());
        chunks.len() as u32
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
            points_total: self.spec.points_total(),
            elapsed_s: now.saturating_duration_since(self.started).as_secs_f64(),
        }
    }
}

impl Node {
    pub(super) fn submit(
        &mut self,
        now: Instant,
        ctx: JobContext,
        nonce: u128,
    ) -> Result<JobId, PoolError> {
        let (mesh, index, spec) = (ctx.mesh().clone(), ctx.index().clone(), ctx.spec().clone());
        let id = JobId {
            owner: self.s.id,
            nonce,
        };
        // Announcements naming this node as owner are never taken up (`on_announce`), so an
        // id is only taken if the same nonce came twice: a broken random source.
        if !self.seen.insert(id) {
            return Err(PoolError::Job(format!("job id {id} drawn twice")));
        }
        self.meshes.keep(spec.mesh, mesh, index, now);
        if let (Some(sim), Some(job)) = (spec.simulation(), ctx.simulation_job()) {
            self.meshes
                .keep_program(sim.program, job.program().clone(), now);
        }
        let mut state = JobState::new(spec.clone(), None, now);
        state.ctx = Some(ctx);
        state.queue = (0..state.total).collect();
        state.sampler = Sampler::new(self.s.seed, id);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ball_drop;
    use millpond_core::Rect;
    use millpond_core::mesh::MeshHash;

    fn job() -> JobState {
        let spec = ball_drop(
            MeshHash([0; 32]),
            Rect::new(0.0, 100.0, 0.0, 100.0),
            0.1,
            0.1,
        );
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
