//! The pool protocol without I/O (ARCHITECTURE.md §4.10): one pool member's state as a state
//! machine. [`Node::handle`] takes the time and one [`Input`] (a message, a link going up or
//! down, a chunk computed, a timer tick) and returns the [`Action`]s the shell must carry out
//! (send this message on that link, close a link, compute this chunk, report to the job's
//! owner, publish statistics). No sockets, no tasks, no clock reads: the shell in `node.rs`
//! owns the quinn endpoint and the tasks, and every decision is made here, so the scheduling,
//! re-queueing and validation can be driven and checked without a network.
//!
//! | file | machine |
//! |---|---|
//! | `mod.rs` | [`Node`]: its state, message dispatch, the tick |
//! | `links.rs` | a link going up (refused if a duplicate) and down (its jobs ended, grants re-queued) |
//! | `events.rs` | [`Input`] and [`Action`], the interface to the shell |
//! | `admission.rs` | newcomers before authentication: slots (everywhere, per host), retry under load, back-off by source and host |
//! | `handshake.rs` | a new link's Hello check |
//! | `jobs.rs` | [`JobState`](jobs::JobState): one job's queue, grants, re-queue, deaths, expiry, backups; submit and job ends |
//! | `results.rs` | results and failures, computed here or received; acceptance and the job's end |
//! | `schedule.rs` | `pump`: local workers, grants to children, steals from the parent, backup copies |
//! | `verify.rs` | verified results: sampled recomputation, compared copies, convicting a peer |
//! | `members.rs` | gossip and membership |
//! | `mesh_cache.rs` | the mesh cache and mesh fetching |
//! | `remotes.rs` | remote servers, configured or discovered: when to dial, back-off, forgetting discovered ones |
//! | `discovery.rs` | LAN discovery: beacons (key, format, tag), replays, the members heard, when to dial |
//! | `report.rs` | the statistics snapshot |

pub mod admission;
pub mod detached;
pub mod discovery;
mod events;
pub mod handshake;
mod jobs;
mod links;
mod members;
mod mesh_cache;
mod remotes;
mod report;
mod results;
mod schedule;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_binding;
#[cfg(test)]
mod tests_budget;
#[cfg(test)]
mod tests_discovery;
#[cfg(test)]
mod tests_failures;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_hostile;
mod verify;

pub use events::{
    Action, ChunkOutcome, ChunkTask, Input, LinkStats, LinkUp, ResultMessage, Take, Unbound,
};
#[cfg(test)]
pub(crate) use schedule::HOLD_PER_WORKER;

use crate::stats::{MAX_NOTICES, PoolNotice, WorkerStats};
use crate::wire::{JobId, Msg, NodeId};
use crate::{JobEvent, PoolError};
use jobs::JobState;
use members::Member;
use mesh_cache::{InputId, MeshCache};
use millpond_core::JobSpec;
use remotes::Remote;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use tracing::debug;

/// Names one link (one QUIC connection) for as long as it lives; given by the shell.
pub type LinkId = u64;

/// QUIC application close codes.
pub mod close {
    pub const QUIT: u32 = 0;
    pub const AUTH_FAILED: u32 = 1;
    pub const VERSION_MISMATCH: u32 = 2;
    pub const PROTOCOL_VIOLATION: u32 = 3;
    pub const DUPLICATE: u32 = 4;
    /// A write to the peer did not complete in time (it stopped reading).
    pub const STALLED: u32 = 5;
    /// This node has all the links it takes (`MAX_LINKS`).
    pub const FULL: u32 = 6;
}

/// Chunks handed to a link that died, or that failed them, this many times are computed by
/// the owner itself.
pub const MAX_DEATHS: u32 = 3;
/// A child link that failed this many chunks of a job, more than it delivered, gets no more
/// of that job (`results.rs`).
pub const MAX_LINK_FAILURES: u32 = 3;
/// Authenticated links at once. A workshop's members each link to a few others (a pool of a
/// hundred machines in a chain, a star or a mesh of a few links each); without a bound, a
/// peer that knows the secret could open link after link under new node ids, each with its
/// own budgets. Past it a new link is closed with `close::FULL` (its dialer tries again
/// later, as after any refusal).
pub const MAX_LINKS: usize = 256;
/// Jobs this node takes part in at once, its own and announced (`room_for_announced`).
pub const MAX_JOBS: usize = 1024;
/// Jobs announced by one link kept at once: a relay in a 100-member pool passes every
/// other member's jobs down one link, a few at a time each.
pub const MAX_JOBS_PER_LINK: usize = 256;
/// How often the shell must send [`Input::Tick`].
pub const TICK: Duration = Duration::from_millis(50);
/// Time allowed for a newcomer to authenticate once its QUIC handshake is done: to open the
/// auth stream and complete SPAKE2 (the shell's timeouts); the Hello gets as long again.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for a newcomer's QUIC handshake (a dial's, and an acceptor's).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings the node needs.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub id: NodeId,
    pub name: String,
    pub workers: usize,
    pub remotes: Vec<String>,
    pub protocol: u32,
    pub compute_abi: u32,
    pub mesh_cache_bytes: u64,
    /// Where this node listens, as the statistics show it.
    pub address: Option<String>,
    /// Share of the results peers send for jobs owned here that this node recomputes and
    /// compares (0 to 1); besides, the first of each link in each job when above 0
    /// (`verify.rs`). Copies of a chunk are compared whatever it is.
    pub verify: f64,
    /// Seeds which results are checked (drawn from the OS at start): unknown to peers.
    pub seed: u64,
}

/// The default share of peers' results recomputed by their job's owner.
pub const DEFAULT_VERIFY: f64 = 0.03;

/// What a node holds ([`Node::load`]), for bounds checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub links: usize,
    /// Jobs known here (owned or helped with).
    pub jobs: usize,
    /// Chunks queued here, every job.
    pub queued: usize,
    /// The largest chunk count among those jobs.
    pub most_chunks: usize,
    /// Worker slots computing.
    pub busy: usize,
    /// Meshes cached.
    pub meshes: usize,
}

/// A link as the protocol sees it.
struct Link {
    peer: NodeId,
    name: String,
    address: String,
    workers: u32,
    load: u32,
    /// Which of the peer's workers are busy, as it last said (see `MemberInfo::busy`).
    busy: Vec<u64>,
    last_heard: Instant,
    chunks_done: u64,
    compute_s: f64,
    transfer_s: f64,
    meshes_in: u64,
    meshes_out: u64,
    /// Meshes and programs this link has been sent, and when, so none crosses it twice in a
    /// row.
    meshes_sent: HashMap<InputId, Instant>,
    /// Meshes this node asked of the link (the latest [`mesh_cache::MAX_ASKED`]): a mesh
    /// it sends must be one of them (`Node::bulk_offered`).
    meshes_asked: VecDeque<InputId>,
    /// Results being read from the link now (job, chunk), with their announced sizes: one
    /// stream each, held to `results::MAX_RESULT_BYTES_PER_LINK` and, over all links,
    /// `results::MAX_RESULT_BYTES`; removed as each arrives (or with the link).
    results_incoming: BTreeMap<(JobId, u32), u64>,
    /// Meshes being read from the link now, with their announced sizes: one stream each
    /// (counted in the mesh budget until they arrive or the link goes: `mesh_cache.rs`).
    meshes_incoming: BTreeMap<InputId, u64>,
    /// The transport's figures, as of the last tick.
    transport: LinkStats,
    /// Workers behind the link, as its gossip last said (the peer's and those it lists):
    /// what bounds the chunks it may hold (`schedule.rs`).
    behind: u32,
}

/// One pool member's protocol state.
pub struct Node {
    s: NodeSettings,
    /// What the current input asks the shell to do.
    out: Vec<Action>,
    /// The jobs `pump` looks at after the current input (`schedule::Sweep`).
    sweep: schedule::Sweep,
    /// Ordered, like everything iterated here, so that the same inputs give the same
    /// actions (a simulator can replay a run).
    links: BTreeMap<LinkId, Link>,
    jobs: BTreeMap<JobId, JobState>,
    /// Jobs heard of (kept so that late announcements are not taken up again).
    seen: jobs::SeenJobs,
    busy: usize,
    /// Chunks computed here since start, every job, per worker slot.
    worker_slots: Vec<WorkerStats>,
    /// Results received from links since start, per computing node and worker slot.
    remote_workers: BTreeMap<NodeId, BTreeMap<u32, WorkerStats>>,
    /// Through which link's peer each computing node's results last came, and when.
    remote_via: HashMap<NodeId, (NodeId, Instant)>,
    meshes: MeshCache,
    members: BTreeMap<NodeId, Member>,
    remotes: Vec<Remote>,
    last_gossip: Instant,
    /// This node's busy workers as last gossiped, and when that was.
    busy_gossiped: (Vec<u64>, Instant),
    /// What the user should hear of at once, newest last (at most `MAX_NOTICES`).
    notices: VecDeque<PoolNotice>,
    next_notice: u64,
    /// Peers caught returning wrong results: they get no more work from here.
    culprits: BTreeMap<NodeId, verify::Culprit>,
    /// Bytes of results that may be read at once from one link and from all
    /// (`results::MAX_RESULT_BYTES_PER_LINK`, `results::MAX_RESULT_BYTES`; tests lower them).
    result_budget: (u64, u64),
}

impl Node {
    pub fn new(s: NodeSettings, now: Instant) -> Self {
        let remotes = s.remotes.iter().map(|a| Remote::new(a, now)).collect();
        let workers = s.workers.max(1);
        Self {
            s: NodeSettings { workers, ..s },
            out: Vec::new(),
            sweep: schedule::Sweep::All,
            result_budget: (
                results::MAX_RESULT_BYTES_PER_LINK,
                results::MAX_RESULT_BYTES,
            ),
            links: BTreeMap::new(),
            jobs: BTreeMap::new(),
            seen: jobs::SeenJobs::default(),
            busy: 0,
            worker_slots: vec![WorkerStats::default(); workers],
            remote_workers: BTreeMap::new(),
            remote_via: HashMap::new(),
            meshes: MeshCache::default(),
            members: BTreeMap::new(),
            remotes,
            last_gossip: now,
            busy_gossiped: (Vec::new(), now),
            notices: VecDeque::new(),
            next_notice: 1,
            culprits: BTreeMap::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.s.id
    }

    /// The Hello this node sends on every new link.
    pub fn hello(&self) -> Msg {
        Msg::Hello {
            protocol: self.s.protocol,
            compute_abi: self.s.compute_abi,
            node: self.s.id,
            name: self.s.name.clone(),
            workers: self.s.workers as u32,
        }
    }

    /// Reacts to one input, then hands out work (`pump`), and returns what to do.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        self.sweep = schedule::Sweep::of(&input);
        self.on_input(now, input);
        self.pump(now);
        std::mem::take(&mut self.out)
    }

    /// What this node holds, for the simulator's bounds checks (`sim/`): the core keeps no
    /// other way to look inside, and the shell never needs one.
    pub fn load(&self) -> Load {
        Load {
            links: self.links.len(),
            jobs: self.jobs.len(),
            queued: self.jobs.values().map(|j| j.queue.len()).sum(),
            most_chunks: self
                .jobs
                .values()
                .map(|j| j.total as usize)
                .max()
                .unwrap_or(0),
            busy: self.busy,
            meshes: self.meshes.len(),
        }
    }

    /// Changes the share of peers' results checked (tests).
    #[cfg(test)]
    pub fn set_verify(&mut self, verify: f64) {
        self.s.verify = verify;
    }

    /// The node stops: every running chunk is cancelled. (The shell closes the endpoint.)
    pub fn shutdown(&mut self) {
        for job in self.jobs.values() {
            job.cancel.cancel();
        }
    }

    fn on_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::LinkUp(up) => self.link_up(now, up),
            Input::LinkDown { link, reason } => self.link_down(now, link, &reason),
            Input::Violation { link, reason } => {
                self.close_link(now, link, close::PROTOCOL_VIOLATION, &reason)
            }
            Input::Msg { link, msg } => {
                if let Some(l) = self.links.get_mut(&link) {
                    l.last_heard = now;
                    self.on_msg(now, link, msg);
                }
            }
            Input::Result {
                link,
                message,
                transfer_s,
            } => self.on_remote_result(now, link, message, transfer_s),
            Input::BulkOffered { link, header } => {
                let take = self.bulk_offered(now, link, &header);
                self.out.push(Action::TakeBulk(take));
            }
            Input::MeshArrived { link, mesh } => self.on_mesh_arrived(link, mesh),
            Input::MeshReady { hash, mesh, index } => self.on_mesh_ready(now, hash, mesh, index),
            Input::SimulationBound { job, ctx } => self.on_simulation_bound(job, ctx),
            Input::ProgramArrived {
                link,
                hash,
                program,
            } => self.on_program_arrived(now, link, hash, program),
            Input::Computed {
                task,
                seconds,
                outcome,
            } => self.on_computed(now, task, seconds, outcome),
            Input::RemoteFailed {
                remote,
                state,
                error,
            } => {
                if let Some(r) = self.remotes.get_mut(remote) {
                    r.failed(now, state, error);
                }
            }
            Input::Submit { ctx, nonce } => {
                let r = self.submit(now, *ctx, nonce);
                self.out.push(Action::Submitted(r));
            }
            Input::Cancel(job) => {
                if self.jobs.get(&job).is_some_and(|j| j.parent.is_none())
                    && self.end_job(job).is_some()
                {
                    let event = JobEvent::Finished(Err(PoolError::Cancelled));
                    self.out.push(Action::Report { job, event });
                }
            }
            Input::Tick { links } => self.tick(now, &links),
            Input::Discovered { peer, address } => self.discovered(now, peer, address),
        }
    }

    /// Queues a message for a link this node knows.
    fn send(&mut self, link: LinkId, msg: Msg) {
        if self.links.contains_key(&link) {
            self.out.push(Action::Send { link, msg });
        }
    }

    fn close_link(&mut self, now: Instant, link: LinkId, code: u32, reason: &str) {
        if self.links.contains_key(&link) {
            self.out.push(Action::Close {
                link,
                code,
                reason: reason.into(),
            });
        }
        self.link_down(now, link, reason);
    }

    /// Tells the user (through the statistics' notices) something they should hear at once.
    fn notice(&mut self, text: String) {
        self.notices.push_back(PoolNotice {
            seq: self.next_notice,
            text,
        });
        self.next_notice += 1;
        while self.notices.len() > MAX_NOTICES {
            self.notices.pop_front();
        }
    }

    // ----- messages -----

    fn on_msg(&mut self, now: Instant, link: LinkId, msg: Msg) {
        let violation = close::PROTOCOL_VIOLATION;
        match msg {
            Msg::Hello { .. } => self.close_link(now, link, violation, "second Hello"),
            // A client's greeting belongs before any Hello; on a member's link it is a lie.
            Msg::Client { .. } => self.close_link(now, link, violation, "a client greeting"),
            Msg::Members(list) => self.on_members(now, link, list),
            Msg::Announce {
                job,
                spec,
                hops_left,
            } => self.on_announce(now, link, job, *spec, hops_left),
            Msg::Steal { job, want } => {
                // A peer caught lying gets no more work from here (`verify.rs`).
                let distrusted = self.distrusted(link);
                match self.jobs.get_mut(&job) {
                    Some(j)
                        if j.parent != Some(link) && !distrusted && !j.failing.contains(&link) =>
                    {
                        j.child_wants.insert(link, want);
                        j.children.insert(link);
                    }
                    _ => self.send(link, Msg::NoWork { job }),
                }
            }
            Msg::Grant { job, chunks } => {
                // A parent grants only after this node asked, for a job it announced first,
                // and ends the job (Cancel) only after its last grant: never for an unknown job.
                let Some(j) = self.jobs.get_mut(&job) else {
                    return self.close_link(now, link, violation, "grant for an unknown job");
                };
                if j.parent != Some(link) {
                    return self.close_link(now, link, violation, "grant from a non-parent");
                }
                if let Some(bad) = chunks.iter().find(|&&c| c >= j.total) {
                    let reason = format!("granted chunk {bad} of a {}-chunk job", j.total);
                    return self.close_link(now, link, violation, &reason);
                }
                j.steal_pending = false;
                debug!("job {job}: granted {chunks:?}");
                for c in chunks {
                    if j.held.insert(c) {
                        j.queue.push_back(c);
                    }
                }
            }
            Msg::NoWork { job } => {
                if let Some(j) = self.jobs.get_mut(&job)
                    && j.parent == Some(link)
                {
                    j.steal_pending = false;
                    j.nowork_at = Some(now);
                    let waiting: Vec<LinkId> =
                        std::mem::take(&mut j.child_wants).into_keys().collect();
                    for c in waiting {
                        self.send(c, Msg::NoWork { job });
                    }
                }
            }
            Msg::FetchMesh { hash } => self.on_fetch(now, link, InputId::Mesh(hash)),
            Msg::NoMesh { hash } => self.on_no_input(now, link, InputId::Mesh(hash)),
            Msg::FetchProgram { hash } => self.on_fetch(now, link, InputId::Program(hash)),
            Msg::NoProgram { hash } => self.on_no_input(now, link, InputId::Program(hash)),
            Msg::Failed { job, chunk, reason } => self.on_failed(now, link, job, chunk, &reason),
            Msg::Cancel { job } => {
                if self.jobs.get(&job).is_some_and(|j| j.parent == Some(link)) {
                    self.end_job(job);
                }
            }
        }
    }

    fn on_announce(&mut self, now: Instant, link: LinkId, job: JobId, spec: JobSpec, hops: u8) {
        if job.owner == self.s.id && !self.jobs.contains_key(&job) {
            // A job said to be this node's that it does not have (never submitted, or over):
            // a forgery, or a late copy of one of its own. Neither is work, and neither is
            // remembered (a flood of forged ids must not fill `seen`).
            debug!("job {job} announced by link {link} as this node's: ignored");
            return;
        }
        if !self.seen.contains(job) && !self.room_for_announced(link) {
            // Not remembered as seen: once there is room, the next copy is taken up.
            debug!("job {job} announced by link {link}: no room, ignored");
            return;
        }
        if !self.seen.insert(job) {
            // Another way to the job: a place to fetch its mesh from if the parent cannot.
            if let Some(j) = self.jobs.get_mut(&job) {
                j.announcers.insert(link);
            }
            return;
        }
        // The wire refuses an invalid spec already (`wire::decode_msg`); this keeps the core
        // safe whatever the shell: nothing is kept or computed for it.
        if let Err(e) = spec.validate() {
            let violation = close::PROTOCOL_VIOLATION;
            return self.close_link(now, link, violation, &format!("invalid job spec: {e}"));
        }
        debug!("job {job} announced by link {link}");
        let mut state = JobState::new(spec.clone(), Some(link), now);
        if hops > 0 {
            let others: Vec<LinkId> = self.links.keys().copied().filter(|&l| l != link).collect();
            for l in others {
                state.children.insert(l);
                let spec = spec.clone();
                let hops_left = hops - 1;
                self.send(
                    l,
                    Msg::Announce {
                        job,
                        spec: Box::new(spec),
                        hops_left,
                    },
                );
            }
        }
        self.jobs.insert(job, state);
        self.bind_job(now, job);
        if self.jobs.get(&job).is_some_and(JobState::needs_inputs) {
            self.fetch_inputs(now, &spec, link);
        }
    }

    /// Whether one more job announced by `link` may be kept: at most
    /// [`MAX_JOBS_PER_LINK`] whose parent is that link, and [`MAX_JOBS`] in all. A peer
    /// announcing job after job (a flood of fresh ids, each a valid spec) fills its own share
    /// and nothing else; honest jobs reaching this node by other links still get in.
    fn room_for_announced(&self, link: LinkId) -> bool {
        if self.jobs.len() >= MAX_JOBS {
            return false;
        }
        let from_link = self
            .jobs
            .values()
            .filter(|j| j.parent == Some(link))
            .count();
        from_link < MAX_JOBS_PER_LINK
    }

    fn tick(&mut self, now: Instant, links: &[LinkStats]) {
        for st in links {
            if let Some(l) = self.links.get_mut(&st.link) {
                l.transport = *st;
            }
        }
        self.dial_remotes(now);
        self.gossip_tick(now);
        self.expire_grants(now);
        self.retry_fetches(now);
        // Progress for owners, at most every 100 ms.
        let mut reports = Vec::new();
        for (id, j) in self.jobs.iter_mut() {
            if j.parent.is_none() && now.saturating_duration_since(j.last_progress) > PROGRESS_TICK
            {
                j.last_progress = now;
                reports.push(Action::Report {
                    job: *id,
                    event: JobEvent::Progress(j.progress(now)),
                });
            }
        }
        self.out.extend(reports);
        let stats = self.snapshot(now);
        self.out.push(Action::Publish(Box::new(stats)));
    }
}

/// The keys of `map`'s entries whose value passes `keep`, in `map`'s order: collected, so that
/// the map can be changed while they are gone through.
fn keys_where<'a, K: Copy + 'a, V: 'a>(
    map: impl IntoIterator<Item = (&'a K, &'a V)>,
    keep: impl Fn(&V) -> bool,
) -> Vec<K> {
    map.into_iter()
        .filter(|(_, v)| keep(v))
        .map(|(k, _)| *k)
        .collect()
}

/// Shortest time between two ticks' progress reports of a job.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.s.id).finish()
    }
}
