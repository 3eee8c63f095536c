//! Scheduling after every input (ARCHITECTURE.md §4.6): local workers first (the owner's
//! checks of peers' results before its queue), then grants to children (at most
//! `HOLD_PER_WORKER` chunks per worker behind a link), steals from the parent, and backup
//! copies of the tail at the owner; grants held far longer than their holder's pace are
//! taken back each tick. Pull is the back-pressure: nothing is pushed.

use super::{Action, ChunkTask, Input, LinkId, Node};
use crate::wire::{self, JobId, Msg};
use std::time::{Duration, Instant};
use tracing::debug;

/// How long a node waits after `NoWork` before asking its parent again.
const NOWORK_WAIT: Duration = Duration::from_millis(100);
/// Most chunks a link may hold per worker behind it that it has proven (below): a child
/// asking for more waits until its grants come back; a hoarder cannot empty the queue.
pub(crate) const HOLD_PER_WORKER: u32 = 4;
/// Workers a link is taken to have before it delivered anything in a job (fewer if it has
/// fewer): most members have two cores or more.
pub(crate) const PROVEN_AT_FIRST: u32 = 2;

/// The jobs `pump` looks at after an input. After a look at every job, either every worker
/// is busy or no job has a chunk to start, no child's ask can be served, and every job that
/// should ask its parent has asked. An input about one job (a steal, a grant, `NoWork`, an
/// announcement, a failure, a cancel from the parent) changes only that job, unless it closes
/// a link (`link_down` widens the sweep to all), so only that job is looked at; gossip that
/// leaves the workers behind its link as they were, and mesh fetches, change none. Everything
/// else — a link up or down, a result, a computed chunk (a worker free), a mesh ready, a
/// submission, a tick (timers: `NoWork` waits, expiries) — looks at all. So 1,024 jobs
/// waiting on their parents cost an input about one of them one job's look, not 1,024.
pub(super) enum Sweep {
    All,
    Jobs(Option<JobId>),
}

impl Sweep {
    pub(super) fn of(input: &Input) -> Self {
        match input {
            Input::Msg { msg, .. } => match msg {
                Msg::Announce { job, .. }
                | Msg::Steal { job, .. }
                | Msg::Grant { job, .. }
                | Msg::NoWork { job }
                | Msg::Failed { job, .. }
                | Msg::Cancel { job } => Sweep::Jobs(Some(*job)),
                Msg::Members(_)
                | Msg::FetchMesh { .. }
                | Msg::NoMesh { .. }
                | Msg::FetchProgram { .. }
                | Msg::NoProgram { .. } => Sweep::Jobs(None),
                // A client's greeting on a link is a violation: the link closes (all).
                Msg::Hello { .. } | Msg::Client { .. } => Sweep::All,
            },
            // Taken or declined; one that closes its link widens the sweep (`link_down`).
            Input::BulkOffered { .. } => Sweep::Jobs(None),
            Input::SimulationBound { job, .. } => Sweep::Jobs(Some(*job)),
            _ => Sweep::All,
        }
    }
}

impl Node {
    /// Hands work to idle workers and to children, asks parents for more, copies the tail:
    /// for the jobs the input may have changed (`Sweep`).
    pub(super) fn pump(&mut self, now: Instant) {
        let ids: Vec<JobId> = match std::mem::replace(&mut self.sweep, Sweep::All) {
            Sweep::All => self.jobs.keys().copied().collect(),
            Sweep::Jobs(job) => job.into_iter().collect(),
        };
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
                // A check still wanted goes first: the job cannot end before it.
                let mut check = None;
                while let Some(c) = j.check_queue.pop_front() {
                    if j.checks.contains_key(&c) && !j.running.contains(&c) {
                        check = Some(c);
                        break;
                    }
                }
                let Some(c) = check.or_else(|| j.queue.pop_front()) else {
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
            task: ChunkTask {
                job: id,
                chunk: c,
                worker,
            },
            ctx,
            cancel: j.cancel.clone(),
        });
    }

    /// Answers each child's outstanding `Steal` from the front of the queue, up to what the
    /// child may hold (`HOLD_PER_WORKER`); the rest of its ask waits for its grants to come
    /// back.
    fn serve_children(&mut self, now: Instant, id: JobId) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        if j.child_wants.is_empty() || j.queue.is_empty() {
            return;
        }
        let room: Vec<(LinkId, u32, u32)> = j
            .child_wants
            .iter()
            .map(|(&link, &want)| {
                let held = j.granted.get(&link).map_or(0, |g| g.len()) as u32;
                let proven = j.record.get(&link).map_or(0, |r| r.results);
                (
                    link,
                    want,
                    self.hold_limit(link, proven).saturating_sub(held),
                )
            })
            .collect();
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        let mut grants: Vec<(LinkId, Vec<u32>)> = Vec::new();
        for (link, want, room) in room {
            if room == 0 {
                continue;
            }
            let chunks = j.grant(link, want.min(room), now);
            if !chunks.is_empty() {
                j.child_wants.remove(&link);
                grants.push((link, chunks));
            }
        }
        for (link, chunks) in grants {
            self.send(link, Msg::Grant { job: id, chunks });
        }
    }

    /// Most chunks `link` may hold of one job in which it delivered `delivered` results in
    /// time: `HOLD_PER_WORKER` per worker behind it (its Hello and gossip say how many), but
    /// counting only the workers it has proven — `PROVEN_AT_FIRST`, plus one per result
    /// delivered. Workers are claimed, results are not: a peer advertising 4,096 workers and
    /// sitting on what it gets holds 8 chunks, while an honest one's room grows with each
    /// result, about doubling each round trip, up to all its workers.
    pub(super) fn hold_limit(&self, link: LinkId, delivered: u32) -> u32 {
        let workers = self.links.get(&link).map_or(1, |l| l.behind.max(1));
        let proven = delivered.saturating_add(PROVEN_AT_FIRST);
        HOLD_PER_WORKER.saturating_mul(workers.min(proven))
    }

    /// Every tick: grants held far longer than their holder's pace come back to the queue
    /// (`JobState::expire`), said in a notice at the owner.
    pub(super) fn expire_grants(&mut self, now: Instant) {
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            let Some(j) = self.jobs.get_mut(&id) else {
                continue;
            };
            let owner = j.parent.is_none();
            for (link, n) in j.expire(now) {
                let name = self.links.get(&link).map_or("a peer", |l| l.name.as_str());
                let text = format!(
                    "{name} held {n} chunk(s) of job {id} far longer than its pace: re-queued"
                );
                debug!("{text}");
                if owner && n > 0 {
                    self.notice(text);
                }
            }
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
