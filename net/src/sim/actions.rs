//! What a node's [`Action`]s become in the simulated workshop (ARCHITECTURE.md §4.11):
//! messages, meshes and results carried over the simulated links, chunks computed for real
//! (as each node's `Behaviour` has it) and answered after the node's chunk time, meshes
//! indexed, jobs assembled and compared with the local run, reports and statistics recorded.

use super::{Behaviour, Ev, JobRecord, World};
use crate::proto::{Action, ChunkOutcome, ChunkTask, Input, close};
use crate::wire::Msg;
use crate::{JobEvent, PoolError};
use millpond_core::job::{ChunkData, ChunkResult, JobContext};
use millpond_core::{CancelToken, TriangleIndex};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// `r` with every height 1 mm higher (a lying peer's result).
fn poisoned(mut r: ChunkResult) -> ChunkResult {
    if let ChunkData::Heights(z) = &mut r.data {
        for v in z {
            *v += 1.0;
        }
    }
    r
}

/// A chunk computed on `node` in its incarnation `generation` (or failed: the words of the
/// panic), due back as the node's [`Input::Computed`].
pub(super) struct Computed {
    pub(super) node: usize,
    pub(super) generation: u32,
    task: ChunkTask,
    cancel: CancelToken,
    result: Result<ChunkResult, String>,
}

impl Computed {
    /// What the node hears after `seconds`: cancelled if the job's token was cancelled
    /// meanwhile.
    pub(super) fn input(self, seconds: f64) -> Input {
        let outcome = match self.result {
            _ if self.cancel.is_cancelled() => ChunkOutcome::Cancelled,
            Ok(r) => ChunkOutcome::Done(Box::new(r)),
            Err(why) => ChunkOutcome::Failed(why),
        };
        Input::Computed {
            task: self.task,
            seconds,
            outcome,
        }
    }
}

thread_local! {
    /// Chunk results by (spec, chunk): each distinct chunk is computed once per thread, for
    /// real, with the action's context; copies and re-runs reuse it (the core is deterministic).
    static CHUNKS: RefCell<HashMap<(String, u32), ChunkResult>> = RefCell::new(HashMap::new());
}

/// Chunk `chunk` of `ctx`'s job, computed for real once per thread (`CHUNKS`).
pub(super) fn run_chunk(ctx: &JobContext, chunk: u32) -> ChunkResult {
    let key = (format!("{:?}", ctx.spec()), chunk);
    if let Some(r) = CHUNKS.with(|m| m.borrow().get(&key).cloned()) {
        return r;
    }
    let r = ctx
        .run_chunk(chunk, &CancelToken::new())
        .expect("never cancelled");
    CHUNKS.with(|m| m.borrow_mut().insert(key, r.clone()));
    r
}

impl World {
    /// Carries out `action`, which `node` asked for.
    pub(super) fn act(&mut self, node: usize, action: Action) {
        if self.trace && !matches!(action, Action::Publish(_)) {
            eprintln!("{:>9} µs  node {node} -> {action:?}", self.now);
        }
        match action {
            Action::Open { .. } | Action::Dial { .. } => {}
            Action::TakeBulk(take) => self.taken = Some(take.taken()),
            Action::Publish(stats) => {
                self.published.insert(node, stats);
            }
            Action::Send { link, msg } => {
                if matches!(msg, Msg::Members(_)) {
                    self.count.gossip += 1;
                } else {
                    self.count.msgs += 1;
                    self.count.last_job_traffic = self.now;
                }
                self.carry(link, true, |l| Input::Msg {
                    link: l,
                    msg: msg.clone(),
                });
            }
            Action::Close { link, code, reason } => {
                if code == close::PROTOCOL_VIOLATION {
                    let liars = self.behaviour.contains(&Behaviour::Liar);
                    match self.bogus.get_mut(&link) {
                        Some(seen) if reason.contains("never granted") => *seen = true,
                        // A liar's results (or a relay's carrying them) convict its link.
                        _ if liars && reason.contains("wrong result") => {
                            let peer = self.ends.get(&link).map(|e| self.ends[&e.peer].node);
                            self.convictions
                                .push((peer.unwrap_or(usize::MAX), reason.clone()));
                        }
                        _ => self
                            .errors
                            .push(format!("node {node} closed link {link}: {reason}")),
                    }
                }
                self.close_end(link, &reason, false);
            }
            Action::SendMesh { link, mesh } => {
                self.count.meshes += 1;
                let mesh = (*mesh).clone();
                self.carry(link, false, |l| Input::MeshArrived {
                    link: l,
                    mesh: Box::new(mesh.clone()),
                });
            }
            Action::SendProgram {
                link,
                hash,
                program,
            } => {
                self.count.programs += 1;
                self.carry(link, false, |l| Input::ProgramArrived {
                    link: l,
                    hash,
                    program: program.clone(),
                });
            }
            Action::SendResult { link, message } => {
                self.count.results += 1;
                self.count.last_job_traffic = self.now;
                self.carry(link, false, |l| Input::Result {
                    link: l,
                    message: message.clone(),
                    transfer_s: 0.001,
                });
            }
            Action::Compute { task, ctx, cancel } => {
                self.count.computes += 1;
                self.started[node] += 1;
                let result = match self.behaviour[node] {
                    Behaviour::Silent => return,
                    Behaviour::Panics(n) if self.started[node] <= n => {
                        Err(format!("panicked: computation {} here", self.started[node]))
                    }
                    Behaviour::Liar => Ok(poisoned(run_chunk(&ctx, task.chunk))),
                    _ => Ok(run_chunk(&ctx, task.chunk)),
                };
                let base = self.chunk_time[node];
                let t = self.now + base + self.rng.range(0, base / 2 + 1);
                let generation = self.generation[node];
                let ev = Ev::Computed(Computed {
                    node,
                    generation,
                    task,
                    cancel,
                    result,
                });
                self.at(t, ev);
            }
            Action::IndexMesh { mesh } => {
                let index = Arc::new(TriangleIndex::new(&mesh));
                let hash = mesh.hash();
                let input = Input::MeshReady {
                    hash,
                    mesh: Arc::from(mesh),
                    index,
                };
                let t = self.now + self.rng.range(50, 500);
                self.input_at(t, node, input);
            }
            Action::BindSimulation(unbound) => {
                self.count.bindings += 1;
                let t = self.now + self.rng.range(50, 500);
                self.input_at(t, node, unbound.bind());
            }
            Action::Assemble { job, ctx, results } => {
                let out = ctx.finish(results);
                let Some(rec) = self.jobs.get_mut(&job) else {
                    return self
                        .errors
                        .push(format!("job {job} assembled but never submitted"));
                };
                let same = out.as_ref().is_ok_and(|o| *o == *rec.expected);
                if rec.done.is_some() {
                    self.errors.push(format!("job {job} assembled twice"));
                }
                rec.done = Some(same);
                if !same {
                    self.errors
                        .push(format!("job {job} differs from the local run"));
                }
            }
            Action::Report { job, event } => {
                if let JobEvent::Finished(Err(e)) = event
                    && !matches!(e, PoolError::Cancelled)
                {
                    self.failed.push((job, e.to_string()));
                    self.errors.push(format!("job {job} failed: {e}"));
                }
            }
            Action::Submitted(r) => {
                let (owner, expected) = self.submitting.take().expect("a submit");
                match r {
                    Ok(id) => {
                        let owner_generation = self.generation[owner];
                        let rec = JobRecord {
                            owner,
                            owner_generation,
                            expected,
                            done: None,
                        };
                        self.jobs.insert(id, rec);
                        self.submitted = Some(id);
                    }
                    Err(e) => self.errors.push(format!("submit refused: {e}")),
                }
            }
        }
    }
}
