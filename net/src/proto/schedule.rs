//! Scheduling after every input (ARCHITECTURE.md §4.6): local workers first, then grants to
//! children, steals from the parent, and backup copies of the tail at the owner. Pull is the
//! back-pressure: nothing is pushed.

use super::{Action, LinkId, Node};
use crate::wire::{self, JobId, Msg};
use std::time::{Duration, Instant};
use tracing::debug;

/// How long a node waits after `NoWork` before asking its parent again.
const NOWORK_WAIT: Duration = Duration::from_millis(100);

impl Node {
    /// Hands work to idle workers and to children, asks parents for more, copies the tail.
    pub(super) fn pump(&mut self, now: Instant) {
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        // Local workers first, round-robin over jobs.
        let mut progress = true;
        while self.busy < self.s.workers && progress {
            progress = false;
            for id in &ids {
                if self.busy >= self.s.workers {
                    break;
                }
                let Some(j) = self.jobs.get_mut(id) else {
                    continue;
                };
                if j.ctx.is_none() {
                    continue;
                }
                let Some(c) = j.queue.pop_front() else {
                    continue;
                };
                self.start_chunk(*id, c);
                progress = true;
            }
        }
        for id in &ids {
            self.serve_children(now, *id);
            self.ask_parent(now, *id);
        }
        // Idle workers and nothing queued anywhere: the owner copies its oldest outstanding
        // chunk (the first result wins), so a slow or silently dead holder cannot stall the end.
        if self.busy < self.s.workers {
            for id in &ids {
                if self.busy >= self.s.workers {
                    break;
                }
                let Some(j) = self.jobs.get(id) else { continue };
                if j.parent.is_some() || !j.queue.is_empty() || j.ctx.is_none() {
                    continue;
                }
                if let Some(c) = j.backup_candidate() {
                    self.start_chunk(*id, c);
                }
            }
        }
    }

    /// Puts chunk `c` on a free worker slot.
    fn start_chunk(&mut self, id: JobId, c: u32) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(ctx) = j.ctx.clone() else { return };
        j.running.insert(c);
        self.busy += 1;
        // `busy < workers` here, so a free slot exists; the fallback only guards the count.
        let worker = self.worker_slots.iter().position(|w| !w.busy).unwrap_or(0);
        if let Some(w) = self.worker_slots.get_mut(worker) {
            w.busy = true;
        }
        self.out.push(Action::Compute {
            job: id,
            chunk: c,
            worker,
            ctx,
            cancel: j.cancel.clone(),
        });
    }

    /// Answers each child's outstanding `Steal` from the front of the queue.
    fn serve_children(&mut self, now: Instant, id: JobId) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if j.child_wants.is_empty() || j.queue.is_empty() {
            return;
        }
        let mut grants: Vec<(LinkId, Vec<u32>)> = Vec::new();
        let wants: Vec<(LinkId, u32)> = j.child_wants.iter().map(|(k, v)| (*k, *v)).collect();
        for (link, want) in wants {
            let chunks = j.grant(link, want, now);
            if !chunks.is_empty() {
                j.child_wants.remove(&link);
                grants.push((link, chunks));
            }
        }
        for (link, chunks) in grants {
            self.send(link, Msg::Grant { job: id, chunks });
        }
    }

    /// A non-owner with the mesh and no steal pending asks its parent for more.
    fn ask_parent(&mut self, now: Instant, id: JobId) {
        let idle = self.s.workers.saturating_sub(self.busy) as u32;
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(parent) = j.parent else { return };
        if j.ctx.is_none() || j.steal_pending {
            return;
        }
        if j.nowork_at
            .is_some_and(|t| now.saturating_duration_since(t) < NOWORK_WAIT)
        {
            return;
        }
        let children: u32 = j.child_wants.values().sum();
        // Ask for the idle workers and the children's asks, plus one in hand so that a worker
        // never waits a round trip.
        let want = (idle + children + 1).saturating_sub(j.queue.len() as u32);
        if want == 0 {
            return;
        }
        j.steal_pending = true;
        let want = want.min(wire::MAX_GRANT as u32);
        debug!("job {id}: asking for {want}");
        self.send(parent, Msg::Steal { job: id, want });
    }
}
