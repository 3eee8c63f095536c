//! Results and failures as a member receives them (ARCHITECTURE.md §4.6): a chunk computed
//! here or failed here, a child's result or failure, the owner's acceptance (copies compared,
//! samples checked: `verify.rs`) and the job's end once every result is in and checked.

use super::jobs::{MAX_REMOTE_WORKERS, PROGRESS_EVERY};
use super::mesh_cache::InputId;
use super::verify::{Delivery, same_bits};
use super::{
    Action, ChunkOutcome, ChunkTask, LinkId, MAX_DEATHS, MAX_LINK_FAILURES, Node, ResultMessage,
    Take, close,
};
use crate::stats::WorkerStats;
use crate::wire::{self, BulkHeader, JobId, MAX_REASON, Msg, NodeId};
use crate::{JobEvent, PoolError};
use millpond_core::job::ChunkResult;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, info, warn};

/// Bytes of results read at once from one link: twice the largest result, so that the
/// largest fits beside others. With `MAX_RESULT_BYTES` over all links, what bounds the
/// memory results take on their way in (a link may have 64 bulk streams open, each of a
/// result of up to `MAX_RESULT`).
pub(super) const MAX_RESULT_BYTES_PER_LINK: u64 = 2 * wire::MAX_RESULT;
/// Bytes of results read at once from all links.
pub(super) const MAX_RESULT_BYTES: u64 = 8 * wire::MAX_RESULT;

impl Node {
    /// A chunk's computation is over.
    pub(super) fn on_computed(
        &mut self,
        now: Instant,
        task: ChunkTask,
        seconds: f64,
        outcome: ChunkOutcome,
    ) {
        let ChunkTask { job, chunk, worker } = task;
        self.busy = self.busy.saturating_sub(1);
        let done = matches!(outcome, ChunkOutcome::Done(_));
        if let Some(w) = self.worker_slots.get_mut(worker) {
            w.busy = false;
            if done {
                w.chunks_done += 1;
                w.compute_s += seconds;
            }
        }
        let mut owner = false;
        if let Some(j) = self.jobs.get_mut(&job) {
            j.running.remove(&chunk);
            owner = j.parent.is_none();
            if done {
                j.computed_here += 1;
                let p = j.local_pace.get_or_insert(seconds);
                *p = 0.75 * *p + 0.25 * seconds;
            }
        }
        match outcome {
            // A result too large for any link (a rare contour chunk; rasters' lines are
            // bounded to fit) goes back as a failure: sent, the parent would take it for a
            // violation; failed, the chunk ends at the owner after `MAX_DEATHS` tries.
            ChunkOutcome::Done(r) if !owner && r.encoded_size_bound() > wire::MAX_RESULT => {
                let reason = format!(
                    "its result ({:.0} MiB) is more than a link carries ({} MiB)",
                    r.encoded_size_bound() as f64 / (1 << 20) as f64,
                    wire::MAX_RESULT >> 20
                );
                self.failed_here(job, chunk, &reason);
            }
            ChunkOutcome::Done(r) => {
                if owner {
                    self.check_against(now, job, chunk, &r);
                }
                let by = (self.s.id, worker as u32);
                self.on_result(now, job, chunk, r, None, seconds, by);
                if owner {
                    self.finish_if_complete(now, job);
                }
            }
            ChunkOutcome::Cancelled => {}
            ChunkOutcome::Failed(reason) => self.failed_here(job, chunk, &reason),
        }
    }

    /// A chunk's computation panicked on this node's worker. At the owner the chunk goes back
    /// to the front of its queue (or its check queue), and the job fails with the reason once
    /// nothing else can compute it: it failed `MAX_DEATHS` times here, or it is one the owner
    /// kept for itself after it failed (or its holder died) `MAX_DEATHS` times elsewhere.
    /// Elsewhere it goes back to the parent (`Msg::Failed`), which re-queues it and counts a
    /// death.
    fn failed_here(&mut self, id: JobId, chunk: u32, reason: &str) {
        warn!("job {id}: chunk {chunk} failed here: {reason}");
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        match j.parent {
            Some(parent) => {
                if j.held.remove(&chunk) {
                    let reason = wire::sanitize(reason, MAX_REASON);
                    self.send(
                        parent,
                        Msg::Failed {
                            job: id,
                            chunk,
                            reason,
                        },
                    );
                }
            }
            None => {
                let n = j.local_failures.entry(chunk).or_insert(0);
                *n += 1;
                let elsewhere = j.local_only.contains(&chunk);
                if elsewhere || *n >= MAX_DEATHS {
                    let text = if elsewhere {
                        let d = j.deaths.get(&chunk).copied().unwrap_or(0);
                        format!(
                            "chunk {chunk} failed here after {d} tries elsewhere that failed \
                             or were lost: {reason}"
                        )
                    } else {
                        format!("chunk {chunk} failed {n} times here: {reason}")
                    };
                    self.end_job(id);
                    let event = JobEvent::Finished(Err(PoolError::Job(text)));
                    self.out.push(Action::Report { job: id, event });
                    return;
                }
                if j.checks.contains_key(&chunk) {
                    j.check_queue.push_front(chunk);
                } else if !j.results.contains_key(&chunk) && !j.queue.contains(&chunk) {
                    j.queue.push_front(chunk);
                }
                self.notice(format!(
                    "chunk {chunk} of job {id} failed here ({reason}): re-queued"
                ));
            }
        }
    }

    /// Child `link` could not compute chunk `chunk` it was granted: it goes back to the
    /// queue (a death at the owner), or up to this relay's parent. A child whose failures in
    /// the job reach `MAX_LINK_FAILURES` and outnumber its results gets no more of the job
    /// ([`Node::stop_failing_child`]).
    pub(super) fn on_failed(
        &mut self,
        now: Instant,
        link: LinkId,
        id: JobId,
        chunk: u32,
        reason: &str,
    ) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if j.parent == Some(link) {
            return self.close_link(now, link, close::PROTOCOL_VIOLATION, "Failed from a parent");
        }
        if !j
            .ever_granted
            .get(&link)
            .is_some_and(|s| s.contains(&chunk))
        {
            let reason = format!("failure of chunk {chunk} that was never granted to it");
            return self.close_link(now, link, close::PROTOCOL_VIOLATION, &reason);
        }
        if j.granted
            .get_mut(&link)
            .is_none_or(|g| g.remove(&chunk).is_none())
        {
            return; // taken back meanwhile
        }
        let record = j.record.entry(link).or_default();
        record.failures += 1;
        let failing = record.failures >= MAX_LINK_FAILURES && record.failures > record.results;
        let failures = record.failures;
        // The peer's words, cleaned before they reach a notice or go up the tree.
        let reason = wire::sanitize(reason, MAX_REASON);
        match j.parent {
            Some(parent) => {
                if j.held.remove(&chunk) {
                    let msg = Msg::Failed {
                        job: id,
                        chunk,
                        reason: reason.clone(),
                    };
                    self.send(parent, msg);
                }
            }
            None => {
                j.take_back(vec![chunk]);
                let name = self.links.get(&link).map_or("a peer", |l| l.name.as_str());
                let text =
                    format!("chunk {chunk} of job {id} failed on {name} ({reason}): re-queued");
                self.notice(text);
            }
        }
        if failing {
            self.stop_failing_child(link, id, failures, &reason);
        }
    }

    /// Child `link` failed `failures` chunks of job `id`, more than it delivered: a member
    /// whose computations keep panicking would otherwise take (and fail) chunk after chunk
    /// until each had failed three times. It gets no more of the job: the job ends for it
    /// (`Cancel`: it stops what it holds), what it holds comes back to the queue, and its
    /// asks get `NoWork`. Only for this job: a panic may be one strategy's on that member,
    /// and the next job tries it again. The link stays up (it may relay, or help with other
    /// jobs); a relay does the same to its own children, so the owner sees few failures of
    /// an honest relay's child.
    fn stop_failing_child(&mut self, link: LinkId, id: JobId, failures: u32, reason: &str) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if !j.failing.insert(link) {
            return;
        }
        let back = j.link_lost(link);
        self.send(link, Msg::Cancel { job: id });
        let (name, address) = self
            .links
            .get(&link)
            .map_or(("a peer", ""), |l| (l.name.as_str(), l.address.as_str()));
        let text = format!(
            "{name} ({address}) failed {failures} chunks of job {id} (the last: {reason}): \
             given no more of it, {back} chunk(s) it held re-queued"
        );
        self.notice(text);
    }

    /// A bulk stream's header from `link` ([`Input::BulkOffered`]): whether to read its
    /// payload. Checked before a byte of it is buffered, so a peer cannot make this node
    /// hold meshes or results it never asked for (issue 17): a mesh as `mesh_offered` says;
    /// a result only of a chunk granted down the link (a late one of a job over here is
    /// declined); one of a chunk, or a job, never granted to it closes the link.
    pub(super) fn bulk_offered(&mut self, now: Instant, link: LinkId, header: &BulkHeader) -> Take {
        if !self.links.contains_key(&link) {
            return Take::No;
        }
        let (job, chunk, size) = match *header {
            BulkHeader::Mesh { hash, size } => {
                return match self.input_offered(now, link, InputId::Mesh(hash), size) {
                    true => Take::Mesh,
                    false => Take::No,
                };
            }
            BulkHeader::Program { hash, size } => {
                return match self.input_offered(now, link, InputId::Program(hash), size) {
                    true => Take::Program,
                    false => Take::No,
                };
            }
            BulkHeader::Result {
                job, chunk, size, ..
            } => (job, chunk, size),
        };
        let (never, most, form) = match self.jobs.get(&job) {
            Some(j) => (
                !j.ever_granted
                    .get(&link)
                    .is_some_and(|s| s.contains(&chunk)),
                j.spec.max_result_bytes(chunk).min(wire::MAX_RESULT),
                Some(j.spec.result_form(chunk)),
            ),
            // A late result of a job that is over here: not needed, not wrong.
            None if self.seen.contains(job) => return Take::No,
            None => (true, 0, None),
        };
        if never {
            let reason = format!("result for chunk {chunk} that was never granted to it");
            self.close_link(now, link, close::PROTOCOL_VIOLATION, &reason);
            return Take::No;
        }
        // No honest result of the chunk is larger (`JobSpec::max_result_bytes`): nothing of
        // it is read.
        if size > most {
            let reason = format!(
                "result of {size} bytes for chunk {chunk}, which cannot take more than {most}"
            );
            self.close_link(now, link, close::PROTOCOL_VIOLATION, &reason);
            return Take::No;
        }
        // One copy of a chunk's result read at a time from a link, and results' bytes in
        // flight within the budgets; past them the stream is declined unread (no blame: the
        // chunk's grant expires or it is copied, as if the result had been lost).
        let all = self.result_bytes_in_flight();
        let (per_link, budget) = self.result_budget;
        let (Some(l), Some(form)) = (self.links.get_mut(&link), form) else {
            return Take::No;
        };
        if l.results_incoming.contains_key(&(job, chunk)) {
            return Take::No;
        }
        let here: u64 = l.results_incoming.values().sum();
        if here.saturating_add(size) > per_link || all.saturating_add(size) > budget {
            debug!("result of chunk {chunk} from link {link}: {size} bytes over budget, declined");
            return Take::No;
        }
        l.results_incoming.insert((job, chunk), size);
        Take::Result(form)
    }

    /// Bytes of results being read from all links now.
    pub(super) fn result_bytes_in_flight(&self) -> u64 {
        self.links
            .values()
            .flat_map(|l| l.results_incoming.values())
            .sum()
    }

    /// A result from child `link`, `transfer_s` seconds on the way: checked against what
    /// was granted to it, then counted.
    pub(super) fn on_remote_result(
        &mut self,
        now: Instant,
        link: LinkId,
        message: ResultMessage,
        transfer_s: f64,
    ) {
        let ResultMessage {
            job,
            chunk,
            compute_s,
            by,
            result,
        } = message;
        let Some(l) = self.links.get_mut(&link) else {
            return; // the link is gone: what it held was taken back
        };
        l.results_incoming.remove(&(job, chunk));
        let peer = l.peer;
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
        // A result whose grant expired still counts if it comes first (and is compared with
        // the copy if not: `on_result`).
        let granted_at = j.granted.get_mut(&link).and_then(|g| g.remove(&chunk));
        if let Some(t) = granted_at {
            j.measured(link, now.saturating_duration_since(t).as_secs_f64());
            j.record.entry(link).or_default().results += 1;
        }
        if let Some(l) = self.links.get_mut(&link)
            && granted_at.is_some()
        {
            l.chunks_done += 1;
            l.compute_s += f64::from(compute_s);
            l.transfer_s += transfer_s;
            // Per computing worker, counted where the link's count is (statistics only: a
            // claim of being this node is ignored).
            let via = l.peer;
            if by.0 != self.s.id {
                self.count_remote_worker(now, via, by, compute_s);
            }
        }
        let seconds = f64::from(compute_s);
        let from = Delivery {
            link,
            peer,
            by: by.0,
        };
        self.on_result(now, job, chunk, result, Some(from), seconds, by);
    }

    /// Counts a result computed by a remote worker `by` and received through neighbour
    /// `via`. The pairs counted are bounded (`MAX_REMOTE_WORKERS`): a newcomer past the bound
    /// takes the place of the member heard from longest ago, whose workers are the least
    /// useful rows of the statistics (it may have left the pool long since).
    pub(super) fn count_remote_worker(
        &mut self,
        now: Instant,
        via: NodeId,
        by: (NodeId, u32),
        s: f32,
    ) {
        let (node, worker) = by;
        let known = |w: &BTreeMap<NodeId, BTreeMap<u32, WorkerStats>>| {
            w.get(&node).is_some_and(|w| w.contains_key(&worker))
        };
        while !known(&self.remote_workers)
            && self.remote_workers.values().map(|w| w.len()).sum::<usize>() >= MAX_REMOTE_WORKERS
        {
            let oldest = self
                .remote_via
                .iter()
                .filter(|(n, _)| **n != node)
                .min_by_key(|(n, (_, heard))| (*heard, **n))
                .map(|(n, _)| *n);
            let Some(oldest) = oldest else {
                return; // one member's own slots fill the bound: no more of them
            };
            self.remote_workers.remove(&oldest);
            self.remote_via.remove(&oldest);
        }
        let w: &mut WorkerStats = self
            .remote_workers
            .entry(node)
            .or_default()
            .entry(worker)
            .or_default();
        w.chunks_done += 1;
        w.compute_s += f64::from(s);
        self.remote_via.insert(node, (via, now));
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
        from: Option<Delivery>,
        seconds: f64,
        by: (NodeId, u32),
    ) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(parent) = j.parent {
            if !j.held.remove(&chunk) || !self.links.contains_key(&parent) {
                return;
            }
            // Any copy of it here (re-queued after an expiry) is moot now.
            j.queue.retain(|&c| c != chunk);
            for g in j.granted.values_mut() {
                g.remove(&chunk);
            }
            let message = ResultMessage {
                job: id,
                chunk,
                compute_s: seconds as f32,
                by,
                result,
            };
            self.out.push(Action::SendResult {
                link: parent,
                message,
            });
            return;
        }
        let result: Arc<ChunkResult> = Arc::from(result);
        if let Some(kept) = j.results.get(&chunk) {
            // A second copy (a backup, or a result whose grant expired): the same bits, or
            // someone lied.
            if same_bits(kept, &result) {
                return;
            }
            let earlier = j.delivered.get(&chunk).copied();
            self.copies_differ(now, id, chunk, earlier, from, Arc::clone(&result));
            // This node's own copy takes the place of a wrong one taken out.
            let taken = self
                .jobs
                .get(&id)
                .is_none_or(|j| j.results.contains_key(&chunk));
            if from.is_some() || taken {
                return;
            }
        }
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        j.queue.retain(|&c| c != chunk);
        for g in j.granted.values_mut() {
            g.remove(&chunk);
        }
        match from {
            Some(d) => {
                j.delivered.insert(chunk, d);
                j.remote_done += 1;
            }
            None => j.local_done += 1,
        }
        j.points_done += j.spec.chunk_points(chunk);
        self.out.push(Action::Report {
            job: id,
            event: JobEvent::Chunk(Arc::clone(&result)),
        });
        j.results.insert(chunk, Arc::clone(&result));
        if let Some(d) = from {
            self.sample(id, chunk, d, &result);
        }
        self.finish_if_complete(now, id);
    }

    /// Ends the job once every result is in and every check of one is done (so that no result
    /// of a peer found lying reaches the output, `verify.rs`); else reports progress if due.
    pub(super) fn finish_if_complete(&mut self, now: Instant, id: JobId) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if j.parent.is_some() {
            return;
        }
        if j.results.len() as u32 == j.total && j.checks.is_empty() {
            self.finish_job(now, id);
        } else if now.saturating_duration_since(j.last_progress) > PROGRESS_EVERY {
            j.last_progress = now;
            let event = JobEvent::Progress(j.progress(now));
            self.out.push(Action::Report { job: id, event });
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
