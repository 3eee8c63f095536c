//! A pool member: one event loop owning all state, fed by thin tasks that do the I/O.
//!
//! Every link (a QUIC connection, whoever dialled it) gets a control-frame reader, a writer,
//! a bulk-stream acceptor and a close watcher; they only turn bytes into [`Event`]s and
//! events into bytes. The loop decides everything — who gets which chunk, what to re-queue
//! when a link drops — so the scheduling is in one place and easy to reason about.

use crate::auth::{self, Side};
use crate::secret::Secret;
use crate::stats::{
    HostState, HostStats, JobStats, PoolStats, RemoteState, RemoteStatus, WorkerStats,
};
use crate::wire::{self, BulkHeader, JobId, MAX_HOPS, MemberInfo, Msg, NodeId};
use crate::{JobEvent, JobProgress, PoolError};
use millpond_core::job::{ChunkResult, JobContext, JobOutput};
use millpond_core::mesh::{CANONICAL_TRIANGLE_BYTES, MeshHash};
use millpond_core::{CancelToken, JobSpec, Mesh, TriangleIndex};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub type LinkId = u64;

/// QUIC application close codes.
pub mod close {
    pub const QUIT: u32 = 0;
    pub const AUTH_FAILED: u32 = 1;
    pub const VERSION_MISMATCH: u32 = 2;
    pub const PROTOCOL_VIOLATION: u32 = 3;
    pub const DUPLICATE: u32 = 4;
}

/// Chunks handed to a link that died this many times are computed by the owner itself.
const MAX_DEATHS: u32 = 3;
/// How often timers run.
const TICK: Duration = Duration::from_millis(50);
const GOSSIP_EVERY: Duration = Duration::from_secs(2);
/// Shortest time between two extra gossips of this node's own busy workers, sent to the
/// neighbours when they change so that the statistics panel follows within a fraction of a
/// second (a few tiny frames a second at most; what is relayed further waits for the next
/// full gossip).
const BUSY_GOSSIP_EVERY: Duration = Duration::from_millis(250);
/// Bytes of a gossip frame's member list, leaving room under `wire::MAX_FRAME`.
const GOSSIP_BUDGET: usize = wire::MAX_FRAME * 3 / 4;
/// Time allowed for a newcomer to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Most (node, worker slot) pairs whose received results are counted; later ones are not.
const MAX_REMOTE_WORKERS: usize = 4096;

/// What the loop reacts to.
pub enum Event {
    LinkUp(Box<NewLink>),
    LinkDown {
        link: LinkId,
        reason: String,
    },
    Msg {
        link: LinkId,
        msg: Msg,
    },
    Violation {
        link: LinkId,
        reason: String,
    },
    Result {
        link: LinkId,
        job: JobId,
        chunk: u32,
        compute_s: f32,
        transfer_s: f64,
        /// Who computed it (node, worker slot), as the header says.
        by: (NodeId, u32),
        result: Box<ChunkResult>,
    },
    MeshArrived {
        link: LinkId,
        mesh: Box<Mesh>,
    },
    MeshReady {
        hash: MeshHash,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
    },
    Computed {
        job: JobId,
        chunk: u32,
        /// Which of this node's worker slots computed it.
        worker: usize,
        seconds: f64,
        result: Option<Box<ChunkResult>>,
    },
    RemoteFailed {
        remote: usize,
        state: RemoteState,
        error: String,
    },
    Submit {
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
        spec: JobSpec,
        events: std::sync::mpsc::Sender<JobEvent>,
        reply: std::sync::mpsc::Sender<Result<JobId, PoolError>>,
    },
    Cancel(JobId),
    Tick,
    Shutdown,
}

/// An authenticated link, ready to be added.
pub struct NewLink {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub peer: NodeId,
    pub name: String,
    pub workers: u32,
    pub remote: Option<usize>,
}

struct Link {
    conn: quinn::Connection,
    ctrl: mpsc::UnboundedSender<Vec<u8>>,
    peer: NodeId,
    name: String,
    workers: u32,
    load: u32,
    /// Which of the peer's workers are busy, as it last said (see `MemberInfo::busy`).
    busy: Vec<u64>,
    remote: Option<usize>,
    last_heard: Instant,
    chunks_done: u64,
    compute_s: f64,
    transfer_s: f64,
    meshes_in: u64,
    meshes_out: u64,
    /// Meshes this link has been sent, so none crosses it twice.
    meshes_sent: HashSet<MeshHash>,
}

/// One job as this node sees it.
struct JobState {
    spec: JobSpec,
    ctx: Option<JobContext>,
    cancel: CancelToken,
    /// Where the job came from; `None` if this node owns it.
    parent: Option<LinkId>,
    total: u32,
    /// Chunks this node may hand out or compute, front first.
    queue: VecDeque<u32>,
    /// Chunks handed down each link, with when.
    granted: HashMap<LinkId, HashMap<u32, Instant>>,
    /// Every chunk ever handed down a link: a result for anything else is a violation.
    ever_granted: HashMap<LinkId, HashSet<u32>>,
    /// Chunks being computed here.
    running: HashSet<u32>,
    /// Chunks this node computed for the job.
    computed_here: u32,
    /// Links this job was announced to.
    children: HashSet<LinkId>,
    /// How many more chunks each child asked for.
    child_wants: BTreeMap<LinkId, u32>,
    // Non-owner:
    held: HashSet<u32>,
    steal_pending: bool,
    nowork_at: Option<Instant>,
    // Owner:
    /// Shared with the job's event receiver ([`JobEvent::Chunk`]), which usually drops its
    /// copy long before the job is assembled.
    results: BTreeMap<u32, Arc<ChunkResult>>,
    deaths: HashMap<u32, u32>,
    local_only: HashSet<u32>,
    events: Option<std::sync::mpsc::Sender<JobEvent>>,
    started: Instant,
    local_done: u32,
    remote_done: u32,
    points_done: u64,
    last_progress: Instant,
}

impl JobState {
    /// A link below this node died: everything handed down it comes back to the front of the
    /// queue. At the owner each such chunk counts a death; one that killed `MAX_DEATHS`
    /// holders is never handed out again, only computed here.
    fn link_lost(&mut self, link: LinkId) {
        self.children.remove(&link);
        self.child_wants.remove(&link);
        let Some(lost) = self.granted.remove(&link) else {
            return;
        };
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
        }
    }

    /// Takes up to `want` chunks from the front of the queue for child `link`, skipping the
    /// ones only this node may compute, and records the grant.
    fn grant(&mut self, link: LinkId, want: u32, now: Instant) -> Vec<u32> {
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
    fn backup_candidate(&self) -> Option<u32> {
        self.granted
            .values()
            .flat_map(|g| g.iter())
            .filter(|(c, _)| !self.running.contains(c) && !self.results.contains_key(c))
            .min_by_key(|(c, t)| (**t, **c))
            .map(|(c, _)| *c)
    }

    fn new(spec: JobSpec, parent: Option<LinkId>) -> Self {
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
            children: HashSet::new(),
            child_wants: BTreeMap::new(),
            held: HashSet::new(),
            steal_pending: false,
            nowork_at: None,
            results: BTreeMap::new(),
            deaths: HashMap::new(),
            local_only: HashSet::new(),
            events: None,
            started: Instant::now(),
            local_done: 0,
            remote_done: 0,
            points_done: 0,
            last_progress: Instant::now(),
        }
    }
}

struct CachedMesh {
    mesh: Arc<Mesh>,
    index: Arc<TriangleIndex>,
    bytes: u64,
    used: Instant,
}

impl CachedMesh {
    /// Counted in the cache's byte budget: the triangles and their index.
    fn new(mesh: Arc<Mesh>, index: Arc<TriangleIndex>) -> Self {
        let bytes = (mesh.len() * CANONICAL_TRIANGLE_BYTES + index.memory_bytes()) as u64;
        Self {
            mesh,
            index,
            bytes,
            used: Instant::now(),
        }
    }
}

struct Remote {
    address: String,
    state: RemoteState,
    last_error: Option<String>,
    failures: u32,
    next_try: Instant,
    dialing: bool,
    link: Option<LinkId>,
}

struct Member {
    name: String,
    hops: u8,
    workers: u32,
    load: u32,
    busy: Vec<u64>,
    heard: Instant,
}

/// Settings the loop needs.
pub struct NodeSettings {
    pub id: NodeId,
    pub name: String,
    pub workers: usize,
    pub secret: Secret,
    pub remotes: Vec<String>,
    pub protocol: u32,
    pub compute_abi: u32,
    pub mesh_cache_bytes: u64,
}

pub struct Node {
    s: NodeSettings,
    endpoint: quinn::Endpoint,
    tx: mpsc::UnboundedSender<Event>,
    shared: Arc<Mutex<PoolStats>>,
    links: HashMap<LinkId, Link>,
    next_link: LinkId,
    jobs: BTreeMap<JobId, JobState>,
    /// Jobs heard of (kept so that late announcements are not taken up again).
    seen: HashSet<JobId>,
    next_seq: u32,
    busy: usize,
    /// Chunks computed here since start, every job, per worker slot (a chunk runs on a
    /// blocking task; the slot is which of the `workers` places it took).
    worker_slots: Vec<WorkerStats>,
    /// Results received from links since start, per computing node and worker slot, as
    /// their headers attribute them (at most `MAX_REMOTE_WORKERS` pairs).
    remote_workers: BTreeMap<NodeId, BTreeMap<u32, WorkerStats>>,
    /// Through which link's peer each computing node's results last came.
    remote_via: HashMap<NodeId, NodeId>,
    meshes: HashMap<MeshHash, CachedMesh>,
    /// Meshes being fetched or indexed, and links waiting for them.
    mesh_pending: HashMap<MeshHash, Vec<LinkId>>,
    members: HashMap<NodeId, Member>,
    remotes: Vec<Remote>,
    last_gossip: Instant,
    /// This node's busy workers as last gossiped, and when that was.
    busy_gossiped: (Vec<u64>, Instant),
    listen: Option<SocketAddr>,
}

impl Node {
    pub fn new(
        s: NodeSettings,
        endpoint: quinn::Endpoint,
        tx: mpsc::UnboundedSender<Event>,
        shared: Arc<Mutex<PoolStats>>,
        listen: Option<SocketAddr>,
    ) -> Self {
        let remotes = s
            .remotes
            .iter()
            .map(|a| Remote {
                address: a.clone(),
                state: RemoteState::Connecting,
                last_error: None,
                failures: 0,
                next_try: Instant::now(),
                dialing: false,
                link: None,
            })
            .collect();
        let workers = s.workers.max(1);
        Self {
            s,
            endpoint,
            tx,
            shared,
            links: HashMap::new(),
            next_link: 1,
            jobs: BTreeMap::new(),
            seen: HashSet::new(),
            next_seq: 1,
            busy: 0,
            worker_slots: vec![WorkerStats::default(); workers],
            remote_workers: BTreeMap::new(),
            remote_via: HashMap::new(),
            meshes: HashMap::new(),
            mesh_pending: HashMap::new(),
            members: HashMap::new(),
            remotes,
            last_gossip: Instant::now(),
            busy_gossiped: (Vec::new(), Instant::now()),
            listen,
        }
    }

    /// Runs until shutdown.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        while let Some(ev) = rx.recv().await {
            if matches!(ev, Event::Shutdown) {
                break;
            }
            self.handle(ev);
            self.pump();
        }
        for job in self.jobs.values() {
            job.cancel.cancel();
        }
        self.endpoint.close(close::QUIT.into(), b"quit");
    }

    fn send(&self, link: LinkId, msg: &Msg) {
        if let Some(l) = self.links.get(&link) {
            match wire::encode(msg) {
                Ok(frame) => {
                    let _ = l.ctrl.send(frame);
                }
                Err(e) => warn!("cannot encode a message for {}: {e}", l.name),
            }
        }
    }

    fn close_link(&mut self, link: LinkId, code: u32, reason: &str) {
        if let Some(l) = self.links.get(&link) {
            warn!(
                "closing link to {} ({}): {reason}",
                l.name,
                l.conn.remote_address()
            );
            l.conn.close(code.into(), reason.as_bytes());
        }
        self.link_down(link, reason);
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::LinkUp(nl) => self.link_up(*nl),
            Event::LinkDown { link, reason } => self.link_down(link, &reason),
            Event::Violation { link, reason } => {
                self.close_link(link, close::PROTOCOL_VIOLATION, &reason)
            }
            Event::Msg { link, msg } => {
                if let Some(l) = self.links.get_mut(&link) {
                    l.last_heard = Instant::now();
                    self.on_msg(link, msg);
                }
            }
            Event::Result {
                link,
                job,
                chunk,
                compute_s,
                transfer_s,
                by,
                result,
            } => self.on_remote_result(link, job, chunk, compute_s, transfer_s, by, *result),
            Event::MeshArrived { link, mesh } => self.on_mesh_arrived(link, *mesh),
            Event::MeshReady { hash, mesh, index } => self.on_mesh_ready(hash, mesh, index),
            Event::Computed {
                job,
                chunk,
                worker,
                seconds,
                result,
            } => {
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
                    self.on_result(job, chunk, *r, None, seconds, by);
                }
            }
            Event::RemoteFailed {
                remote,
                state,
                error,
            } => {
                if let Some(r) = self.remotes.get_mut(remote) {
                    r.dialing = false;
                    r.failures += 1;
                    // Growing back-off; longer for a wrong secret.
                    let base = if state == RemoteState::AuthenticationFailed {
                        2.0
                    } else {
                        0.5
                    };
                    let delay = (base * 2f64.powi(r.failures.min(6) as i32 - 1)).min(30.0);
                    r.next_try = Instant::now() + Duration::from_secs_f64(delay);
                    info!("remote {}: {error}; retrying in {delay:.1} s", r.address);
                    r.state = state;
                    r.last_error = Some(error);
                }
            }
            Event::Submit {
                mesh,
                index,
                spec,
                events,
                reply,
            } => {
                let r = self.submit(mesh, index, spec, events);
                let _ = reply.send(r);
            }
            Event::Cancel(job) => {
                if self.jobs.get(&job).is_some_and(|j| j.parent.is_none())
                    && let Some(j) = self.end_job(job)
                    && let Some(ev) = &j.events
                {
                    let _ = ev.send(JobEvent::Finished(Err(PoolError::Cancelled)));
                }
            }
            Event::Tick => self.tick(),
            Event::Shutdown => {}
        }
    }

    // ----- links -----

    fn link_up(&mut self, nl: NewLink) {
        if nl.peer == self.s.id {
            nl.conn
                .close(close::DUPLICATE.into(), b"connected to itself");
            if let Some(r) = nl.remote.and_then(|r| self.remotes.get_mut(r)) {
                r.dialing = false;
                r.state = RemoteState::Unreachable;
                r.last_error = Some("that address is this node itself".into());
                r.next_try = Instant::now() + Duration::from_secs(30);
            }
            return;
        }
        if let Some((&existing, _)) = self.links.iter().find(|(_, l)| l.peer == nl.peer) {
            // Both sides dialled each other: keep one link.
            nl.conn.close(close::DUPLICATE.into(), b"already linked");
            self.remote_connected(nl.remote, existing);
            return;
        }
        let id = self.next_link;
        self.next_link += 1;
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        spawn_link_tasks(
            id,
            nl.conn.clone(),
            nl.send,
            nl.recv,
            ctrl_rx,
            self.tx.clone(),
        );
        info!(
            "linked to {} ({}) with {} workers",
            nl.name,
            nl.conn.remote_address(),
            nl.workers
        );
        self.remote_connected(nl.remote, id);
        self.members.insert(
            nl.peer,
            Member {
                name: nl.name.clone(),
                hops: 1,
                workers: nl.workers,
                load: 0,
                busy: idle(nl.workers),
                heard: Instant::now(),
            },
        );
        self.links.insert(
            id,
            Link {
                conn: nl.conn,
                ctrl: ctrl_tx,
                peer: nl.peer,
                name: nl.name,
                workers: nl.workers,
                load: 0,
                busy: idle(nl.workers),
                remote: nl.remote,
                last_heard: Instant::now(),
                chunks_done: 0,
                compute_s: 0.0,
                transfer_s: 0.0,
                meshes_in: 0,
                meshes_out: 0,
                meshes_sent: HashSet::new(),
            },
        );
        // Tell the newcomer about jobs it can help with.
        let announce: Vec<(JobId, JobSpec)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.parent != Some(id))
            .map(|(k, j)| (*k, j.spec.clone()))
            .collect();
        for (job, spec) in announce {
            if let Some(j) = self.jobs.get_mut(&job) {
                j.children.insert(id);
            }
            self.send(
                id,
                &Msg::Announce {
                    job,
                    spec,
                    hops_left: MAX_HOPS - 1,
                },
            );
        }
        self.gossip_to(id);
    }

    /// A configured remote server is linked (by this link, or one it dialled us on).
    fn remote_connected(&mut self, remote: Option<usize>, link: LinkId) {
        if let Some(r) = remote.and_then(|r| self.remotes.get_mut(r)) {
            r.dialing = false;
            r.state = RemoteState::Connected;
            r.last_error = None;
            r.failures = 0;
            r.link = Some(link);
        }
    }

    fn link_down(&mut self, link: LinkId, reason: &str) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        info!("link to {} lost: {reason}", l.name);
        if let Some(r) = l.remote.and_then(|r| self.remotes.get_mut(r)) {
            r.link = None;
            r.state = RemoteState::Connecting;
            r.last_error = Some(format!("link lost: {reason}"));
            r.next_try = Instant::now() + Duration::from_millis(500);
        }
        if let Some(m) = self.members.get_mut(&l.peer) {
            m.hops = u8::MAX;
        }
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            let Some(j) = self.jobs.get_mut(&id) else {
                continue;
            };
            if j.parent == Some(link) {
                // Our source of work is gone: the job is over here and below.
                debug!("job {id}: parent lost, cancelling");
                self.end_job(id);
                continue;
            }
            j.link_lost(link);
        }
    }

    /// Which of this node's workers are busy, as gossip carries it.
    fn busy_bitmap(&self) -> Vec<u64> {
        let flags = self.worker_slots.iter().map(|w| w.busy);
        wire::busy_bitmap(flags.take(self.s.workers))
    }

    /// This node as gossip describes it.
    fn me(&self) -> MemberInfo {
        MemberInfo {
            node: self.s.id,
            name: self.s.name.clone(),
            hops: 0,
            workers: self.s.workers as u32,
            load: self.busy as u32,
            busy: self.busy_bitmap(),
            age_ms: 0,
        }
    }

    fn gossip_to(&self, link: LinkId) {
        let mut list = vec![self.me()];
        // Bitmaps make entries up to ~700 bytes: stay within one frame whatever the pool.
        let size = |m: &MemberInfo| 40 + m.name.len() + 10 * m.busy.len();
        let mut bytes = size(&list[0]);
        let peer = self.links.get(&link).map(|l| l.peer);
        for (id, m) in &self.members {
            if Some(*id) == peer || m.hops >= MAX_HOPS || list.len() >= wire::MAX_MEMBERS {
                continue;
            }
            let info = MemberInfo {
                node: *id,
                name: m.name.clone(),
                hops: m.hops,
                workers: m.workers,
                load: m.load,
                busy: m.busy.clone(),
                age_ms: m.heard.elapsed().as_millis().min(u32::MAX as u128) as u32,
            };
            bytes += size(&info);
            if bytes > GOSSIP_BUDGET {
                break;
            }
            list.push(info);
        }
        self.send(link, &Msg::Members(list));
    }

    /// Tells the neighbours at once when this node's busy workers changed (at most every
    /// `BUSY_GOSSIP_EVERY`); the full gossip follows on its own schedule.
    fn gossip_busy(&mut self) {
        let busy = self.busy_bitmap();
        if busy == self.busy_gossiped.0 || self.busy_gossiped.1.elapsed() < BUSY_GOSSIP_EVERY {
            return;
        }
        let msg = Msg::Members(vec![self.me()]);
        for &l in self.links.keys() {
            self.send(l, &msg);
        }
        self.busy_gossiped = (busy, Instant::now());
    }

    // ----- messages -----

    fn on_msg(&mut self, link: LinkId, msg: Msg) {
        match msg {
            Msg::Hello { .. } => self.close_link(link, close::PROTOCOL_VIOLATION, "second Hello"),
            Msg::Members(list) => {
                for m in list {
                    if m.node == self.s.id {
                        continue;
                    }
                    let hops = m.hops.saturating_add(1);
                    if let Some(l) = self.links.get_mut(&link)
                        && m.node == l.peer
                    {
                        l.load = m.load;
                        l.workers = m.workers;
                        l.busy = m.busy.clone();
                    }
                    let e = self.members.entry(m.node).or_insert(Member {
                        name: m.name.clone(),
                        hops,
                        workers: m.workers,
                        load: m.load,
                        busy: m.busy.clone(),
                        heard: Instant::now(),
                    });
                    if hops <= e.hops || e.heard.elapsed() > Duration::from_secs(10) {
                        e.hops = hops;
                        e.name = m.name;
                        e.workers = m.workers;
                        e.load = m.load;
                        e.busy = m.busy;
                        e.heard = Instant::now()
                            .checked_sub(Duration::from_millis(u64::from(m.age_ms)))
                            .unwrap_or_else(Instant::now);
                    }
                }
            }
            Msg::Announce {
                job,
                spec,
                hops_left,
            } => self.on_announce(link, job, spec, hops_left),
            Msg::Steal { job, want } => match self.jobs.get_mut(&job) {
                Some(j) if j.parent != Some(link) => {
                    j.child_wants.insert(link, want);
                    j.children.insert(link);
                }
                _ => self.send(link, &Msg::NoWork { job }),
            },
            Msg::Grant { job, chunks } => {
                // A parent grants only after this node asked, for a job it announced first,
                // and ends the job (Cancel) only after its last grant: never for an unknown job.
                let Some(j) = self.jobs.get_mut(&job) else {
                    return self.close_link(
                        link,
                        close::PROTOCOL_VIOLATION,
                        "grant for an unknown job",
                    );
                };
                if j.parent != Some(link) {
                    return self.close_link(
                        link,
                        close::PROTOCOL_VIOLATION,
                        "grant from a non-parent",
                    );
                }
                if let Some(bad) = chunks.iter().find(|&&c| c >= j.total) {
                    let reason = format!("granted chunk {bad} of a {}-chunk job", j.total);
                    return self.close_link(link, close::PROTOCOL_VIOLATION, &reason);
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
                    j.nowork_at = Some(Instant::now());
                    let waiting: Vec<LinkId> =
                        std::mem::take(&mut j.child_wants).into_keys().collect();
                    for c in waiting {
                        self.send(c, &Msg::NoWork { job });
                    }
                }
            }
            Msg::FetchMesh { hash } => self.on_fetch_mesh(link, hash),
            Msg::Cancel { job } => {
                if self.jobs.get(&job).is_some_and(|j| j.parent == Some(link)) {
                    self.end_job(job);
                }
            }
        }
    }

    fn on_announce(&mut self, link: LinkId, job: JobId, spec: JobSpec, hops_left: u8) {
        if !self.seen.insert(job) {
            return;
        }
        if spec.validate().is_err() {
            return self.close_link(link, close::PROTOCOL_VIOLATION, "invalid job spec");
        }
        debug!("job {job} announced by link {link}");
        let mut state = JobState::new(spec.clone(), Some(link));
        let hash = spec.mesh;
        if let Some(m) = self.meshes.get_mut(&hash) {
            m.used = Instant::now();
            state.ctx = JobContext::new(m.mesh.clone(), m.index.clone(), spec.clone()).ok();
        }
        if hops_left > 0 {
            let others: Vec<LinkId> = self.links.keys().copied().filter(|&l| l != link).collect();
            for l in others {
                state.children.insert(l);
                self.send(
                    l,
                    &Msg::Announce {
                        job,
                        spec: spec.clone(),
                        hops_left: hops_left - 1,
                    },
                );
            }
        }
        let need_mesh = state.ctx.is_none();
        self.jobs.insert(job, state);
        if need_mesh && !self.mesh_pending.contains_key(&hash) {
            self.mesh_pending.insert(hash, Vec::new());
            self.send(link, &Msg::FetchMesh { hash });
        }
    }

    fn on_fetch_mesh(&mut self, link: LinkId, hash: MeshHash) {
        if let Some(m) = self.meshes.get_mut(&hash) {
            m.used = Instant::now();
            let mesh = m.mesh.clone();
            self.send_mesh(link, mesh);
        } else if let Some(waiters) = self.mesh_pending.get_mut(&hash) {
            waiters.push(link);
        }
        // A mesh this node has never heard of: the requester's job will end without it.
    }

    fn send_mesh(&mut self, link: LinkId, mesh: Arc<Mesh>) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.meshes_sent.insert(mesh.hash()) {
            return;
        }
        l.meshes_out += 1;
        let conn = l.conn.clone();
        tokio::spawn(async move {
            let bytes = mesh.canonical_bytes();
            let header = BulkHeader::Mesh {
                hash: mesh.hash(),
                size: bytes.len() as u64,
            };
            if let Err(e) = send_bulk(&conn, &header, &bytes).await {
                debug!("mesh transfer failed: {e}");
            }
        });
    }

    fn on_mesh_arrived(&mut self, link: LinkId, mesh: Mesh) {
        if let Some(l) = self.links.get_mut(&link) {
            l.meshes_in += 1;
        }
        let hash = mesh.hash();
        if !self.mesh_pending.contains_key(&hash) {
            return; // not asked for
        }
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let index = Arc::new(TriangleIndex::new(&mesh));
            let _ = tx.send(Event::MeshReady {
                hash,
                mesh: Arc::new(mesh),
                index,
            });
        });
    }

    fn on_mesh_ready(&mut self, hash: MeshHash, mesh: Arc<Mesh>, index: Arc<TriangleIndex>) {
        debug!("mesh {hash} ready");
        self.meshes
            .insert(hash, CachedMesh::new(mesh.clone(), index.clone()));
        for j in self.jobs.values_mut() {
            if j.spec.mesh == hash && j.ctx.is_none() {
                j.ctx = JobContext::new(mesh.clone(), index.clone(), j.spec.clone()).ok();
            }
        }
        for l in self.mesh_pending.remove(&hash).unwrap_or_default() {
            self.send_mesh(l, mesh.clone());
        }
        self.evict_meshes();
    }

    /// Keeps the mesh cache within its byte budget, least recently used first, never
    /// evicting a mesh a live job uses.
    fn evict_meshes(&mut self) {
        let mut total: u64 = self.meshes.values().map(|m| m.bytes).sum();
        while total > self.s.mesh_cache_bytes {
            let in_use: HashSet<MeshHash> = self.jobs.values().map(|j| j.spec.mesh).collect();
            let victim = self
                .meshes
                .iter()
                .filter(|(h, _)| !in_use.contains(h))
                .min_by_key(|(_, m)| m.used)
                .map(|(h, _)| *h);
            let Some(h) = victim else { break };
            if let Some(m) = self.meshes.remove(&h) {
                total -= m.bytes;
            }
        }
    }

    // ----- jobs -----

    fn submit(
        &mut self,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
        spec: JobSpec,
        events: std::sync::mpsc::Sender<JobEvent>,
    ) -> Result<JobId, PoolError> {
        let ctx = JobContext::new(mesh.clone(), index.clone(), spec.clone())
            .map_err(|e| PoolError::Job(e.to_string()))?;
        let id = JobId {
            owner: self.s.id,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.seen.insert(id);
        let hash = spec.mesh;
        self.meshes
            .entry(hash)
            .or_insert_with(|| CachedMesh::new(mesh, index));
        let mut state = JobState::new(spec.clone(), None);
        state.ctx = Some(ctx);
        state.queue = (0..state.total).collect();
        state.events = Some(events);
        for &l in self.links.keys() {
            state.children.insert(l);
        }
        for l in state.children.clone() {
            self.send(
                l,
                &Msg::Announce {
                    job: id,
                    spec: spec.clone(),
                    hops_left: MAX_HOPS - 1,
                },
            );
        }
        info!("job {id}: {} chunks", state.total);
        self.jobs.insert(id, state);
        self.evict_meshes();
        Ok(id)
    }

    /// Removes a job here and tells the links below it that it is over.
    fn end_job(&mut self, id: JobId) -> Option<JobState> {
        let j = self.jobs.remove(&id)?;
        j.cancel.cancel();
        if j.parent.is_some() {
            info!("job {id} over here: computed {} chunks", j.computed_here);
        }
        for &c in &j.children {
            if Some(c) != j.parent {
                self.send(c, &Msg::Cancel { job: id });
            }
        }
        Some(j)
    }

    #[allow(clippy::too_many_arguments)]
    fn on_remote_result(
        &mut self,
        link: LinkId,
        job: JobId,
        chunk: u32,
        compute_s: f32,
        transfer_s: f64,
        by: (NodeId, u32),
        result: ChunkResult,
    ) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if !j
            .ever_granted
            .get(&link)
            .is_some_and(|s| s.contains(&chunk))
        {
            return self.close_link(
                link,
                close::PROTOCOL_VIOLATION,
                &format!("result for chunk {chunk} that was never granted to it"),
            );
        }
        if result.chunk != chunk {
            return self.close_link(link, close::PROTOCOL_VIOLATION, "result header mismatch");
        }
        if let Err(e) = result.validate(&j.spec) {
            return self.close_link(link, close::PROTOCOL_VIOLATION, &e.to_string());
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
                    let w = self
                        .remote_workers
                        .entry(node)
                        .or_default()
                        .entry(worker)
                        .or_default();
                    w.chunks_done += 1;
                    w.compute_s += f64::from(compute_s);
                    self.remote_via.insert(node, l.peer);
                }
            }
        }
        self.on_result(job, chunk, result, Some(link), f64::from(compute_s), by);
    }

    /// A result computed here (`from` None) or received from a child; `by` is who computed
    /// it (node, worker slot), passed on unchanged when the result goes up to the parent.
    fn on_result(
        &mut self,
        id: JobId,
        chunk: u32,
        result: ChunkResult,
        from: Option<LinkId>,
        seconds: f64,
        by: (NodeId, u32),
    ) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        match j.parent {
            Some(parent) => {
                if !j.held.remove(&chunk) {
                    return;
                }
                let Some(l) = self.links.get(&parent) else {
                    return;
                };
                let conn = l.conn.clone();
                tokio::spawn(async move {
                    let _ = send_result(&conn, id, chunk, seconds as f32, by, &result).await;
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
                let result = Arc::new(result);
                if let Some(ev) = &j.events {
                    let _ = ev.send(JobEvent::Chunk(Arc::clone(&result)));
                }
                j.results.insert(chunk, result);
                if j.results.len() as u32 == j.total {
                    self.finish_job(id);
                } else if j.last_progress.elapsed() > Duration::from_millis(50) {
                    j.last_progress = Instant::now();
                    if let Some(ev) = &j.events {
                        let _ = ev.send(JobEvent::Progress(progress(j)));
                    }
                }
            }
        }
    }

    fn finish_job(&mut self, id: JobId) {
        let Some(mut j) = self.end_job(id) else {
            return;
        };
        let Some(ev) = j.events.take() else { return };
        let _ = ev.send(JobEvent::Progress(progress(&j)));
        let Some(ctx) = j.ctx.take() else { return };
        let results: Vec<ChunkResult> = std::mem::take(&mut j.results)
            .into_values()
            .map(|r| Arc::try_unwrap(r).unwrap_or_else(|shared| (*shared).clone()))
            .collect();
        info!(
            "job {id} done: {} chunks here, {} from the pool, {:.2} s",
            j.local_done,
            j.remote_done,
            j.started.elapsed().as_secs_f64()
        );
        // Assembly links raster lines (clearance checks): off the loop.
        tokio::task::spawn_blocking(move || {
            let out: Result<JobOutput, PoolError> = ctx
                .finish(results)
                .map_err(|e| PoolError::Job(e.to_string()));
            let _ = ev.send(JobEvent::Finished(out));
        });
    }

    /// Hands work to idle workers and to children, asks parents for more, copies the tail.
    fn pump(&mut self) {
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
            self.serve_children(*id);
            self.ask_parent(*id);
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
        let cancel = j.cancel.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let r = ctx.run_chunk(c, &cancel).ok().map(Box::new);
            let _ = tx.send(Event::Computed {
                job: id,
                chunk: c,
                worker,
                seconds: t.elapsed().as_secs_f64(),
                result: r,
            });
        });
    }

    fn serve_children(&mut self, id: JobId) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if j.child_wants.is_empty() || j.queue.is_empty() {
            return;
        }
        let mut grants: Vec<(LinkId, Vec<u32>)> = Vec::new();
        let wants: Vec<(LinkId, u32)> = j.child_wants.iter().map(|(k, v)| (*k, *v)).collect();
        for (link, want) in wants {
            let chunks = j.grant(link, want, Instant::now());
            if !chunks.is_empty() {
                j.child_wants.remove(&link);
                grants.push((link, chunks));
            }
        }
        for (link, chunks) in grants {
            self.send(link, &Msg::Grant { job: id, chunks });
        }
    }

    fn ask_parent(&mut self, id: JobId) {
        let idle = self.s.workers.saturating_sub(self.busy) as u32;
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(parent) = j.parent else { return };
        if j.ctx.is_none() || j.steal_pending {
            return;
        }
        if j.nowork_at
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
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
        self.send(parent, &Msg::Steal { job: id, want });
    }

    fn tick(&mut self) {
        // Dial remotes that are due.
        let hello = self.hello();
        for (i, r) in self.remotes.iter_mut().enumerate() {
            if r.link.is_none() && !r.dialing && Instant::now() >= r.next_try {
                r.dialing = true;
                if r.state != RemoteState::AuthenticationFailed
                    && r.state != RemoteState::VersionMismatch
                {
                    r.state = RemoteState::Connecting;
                }
                let ctx = DialContext {
                    endpoint: self.endpoint.clone(),
                    tx: self.tx.clone(),
                    secret: self.s.secret.clone(),
                    hello: hello.clone(),
                    remote: i,
                    address: r.address.clone(),
                };
                tokio::spawn(dial(ctx));
            }
        }
        if self.last_gossip.elapsed() >= GOSSIP_EVERY {
            self.last_gossip = Instant::now();
            let links: Vec<LinkId> = self.links.keys().copied().collect();
            for l in links {
                self.gossip_to(l);
            }
            self.members
                .retain(|_, m| m.heard.elapsed() < Duration::from_secs(30) || m.hops == 1);
            self.busy_gossiped = (self.busy_bitmap(), Instant::now());
        } else {
            self.gossip_busy();
        }
        // Progress for owners, at most every 100 ms.
        for j in self.jobs.values_mut() {
            if j.parent.is_none() && j.last_progress.elapsed() > Duration::from_millis(100) {
                j.last_progress = Instant::now();
                if let Some(ev) = &j.events {
                    let _ = ev.send(JobEvent::Progress(progress(j)));
                }
            }
        }
        self.publish();
    }

    pub fn hello(&self) -> Msg {
        Msg::Hello {
            protocol: self.s.protocol,
            compute_abi: self.s.compute_abi,
            node: self.s.id,
            name: self.s.name.clone(),
            workers: self.s.workers as u32,
        }
    }

    /// What `node`'s workers computed of the results received here, and which are busy as
    /// its gossip last said (`busy`): entry `i` is worker slot `i`, as many entries as it has
    /// `workers` or as slots were seen, whichever is more.
    fn remote_worker_stats(&self, node: NodeId, workers: u32, busy: &[u64]) -> Vec<WorkerStats> {
        let slots = self.remote_workers.get(&node);
        let seen = slots
            .and_then(|s| s.keys().next_back())
            .map_or(0, |&w| w as usize + 1);
        let mut out = vec![WorkerStats::default(); seen.max(workers as usize)];
        for (&w, st) in slots.into_iter().flatten() {
            out[w as usize] = st.clone();
        }
        for (i, w) in out.iter_mut().enumerate() {
            w.busy = wire::is_busy(busy, i);
        }
        out
    }

    /// Refreshes the statistics snapshot the API hands out.
    fn publish(&self) {
        let chunks_here: u64 = self.worker_slots.iter().map(|w| w.chunks_done).sum();
        let compute_s_here: f64 = self.worker_slots.iter().map(|w| w.compute_s).sum();
        let mut hosts = vec![HostStats {
            node: self.s.id.0,
            name: self.s.name.clone(),
            address: self.listen.map(|a| a.to_string()),
            hops: 0,
            workers: self.s.workers as u32,
            load: self.busy as u32,
            state: if self.busy > 0 {
                HostState::Busy
            } else {
                HostState::Idle
            },
            chunks_done: chunks_here,
            avg_compute_s: if chunks_here == 0 {
                0.0
            } else {
                compute_s_here / chunks_here as f64
            },
            worker_stats: self.worker_slots.clone(),
            workers_busy_known: true,
            ..HostStats::default()
        }];
        for l in self.links.values() {
            let st = l.conn.stats();
            let n = l.chunks_done.max(1) as f64;
            hosts.push(HostStats {
                node: l.peer.0,
                name: l.name.clone(),
                address: Some(l.conn.remote_address().to_string()),
                hops: 1,
                workers: l.workers,
                load: l.load,
                state: if l.load > 0 {
                    HostState::Busy
                } else {
                    HostState::Idle
                },
                chunks_done: l.chunks_done,
                avg_compute_s: l.compute_s / n,
                avg_transfer_s: l.transfer_s / n,
                bytes_in: st.udp_rx.bytes,
                bytes_out: st.udp_tx.bytes,
                rtt_ms: l.conn.rtt().as_secs_f64() * 1e3,
                last_heard_s: l.last_heard.elapsed().as_secs_f64(),
                meshes_in: l.meshes_in,
                meshes_out: l.meshes_out,
                worker_stats: self.remote_worker_stats(l.peer, l.workers, &l.busy),
                workers_busy_known: true,
            });
        }
        let linked: HashSet<NodeId> = self.links.values().map(|l| l.peer).collect();
        for (id, m) in &self.members {
            if linked.contains(id) {
                continue;
            }
            hosts.push(HostStats {
                node: id.0,
                name: m.name.clone(),
                hops: m.hops,
                workers: m.workers,
                load: m.load,
                state: if m.hops == u8::MAX {
                    HostState::Lost
                } else if m.load > 0 {
                    HostState::Busy
                } else {
                    HostState::Idle
                },
                last_heard_s: m.heard.elapsed().as_secs_f64(),
                worker_stats: self.remote_worker_stats(*id, m.workers, &m.busy),
                workers_busy_known: m.hops != u8::MAX,
                ..HostStats::default()
            });
        }
        // Nodes whose results arrived here but that are neither linked nor known by gossip
        // (gossip not yet heard, or forgotten): a row of their own, named by id, one link
        // beyond the peer their results came through.
        for (id, slots) in &self.remote_workers {
            if linked.contains(id) || self.members.contains_key(id) {
                continue;
            }
            let via_hops = self
                .remote_via
                .get(id)
                .and_then(|p| self.members.get(p))
                .map_or(1, |m| m.hops);
            hosts.push(HostStats {
                node: id.0,
                name: format!("node {:016x}", id.0),
                hops: via_hops.saturating_add(1),
                workers: slots.len() as u32,
                worker_stats: self.remote_worker_stats(*id, 0, &[]),
                ..HostStats::default()
            });
        }
        let jobs = self
            .jobs
            .iter()
            .filter(|(_, j)| j.parent.is_none())
            .map(|(id, j)| {
                let p = progress(j);
                JobStats {
                    id: id.to_string(),
                    chunks_done: p.chunks_done,
                    chunks_total: p.chunks_total,
                    local_chunks: p.local_chunks,
                    remote_chunks: p.remote_chunks,
                    points_per_s: p.points_per_s,
                    eta_s: p.eta_s,
                }
            })
            .collect();
        let remotes = self
            .remotes
            .iter()
            .map(|r| RemoteStatus {
                address: r.address.clone(),
                state: r.state,
                last_error: r.last_error.clone(),
            })
            .collect();
        if let Ok(mut s) = self.shared.lock() {
            *s = PoolStats {
                node: self.s.id.0,
                name: self.s.name.clone(),
                hosts,
                jobs,
                remotes,
            };
        }
    }
}

/// The busy bitmap of `workers` idle workers.
fn idle(workers: u32) -> Vec<u64> {
    vec![0; workers.min(wire::MAX_WORKERS).div_ceil(64) as usize]
}

fn progress(j: &JobState) -> JobProgress {
    let done = j.results.len() as u32;
    let secs = j.started.elapsed().as_secs_f64().max(1e-6);
    let rate = j.points_done as f64 / secs;
    let total_points = j.spec.grid().points();
    let left = total_points.saturating_sub(j.points_done) as f64;
    JobProgress {
        chunks_done: done,
        chunks_total: j.total,
        local_chunks: j.local_done,
        remote_chunks: j.remote_done,
        points_done: j.points_done,
        points_per_s: rate,
        eta_s: if rate > 0.0 {
            left / rate
        } else {
            f64::INFINITY
        },
    }
}

// ----- I/O tasks -----

/// Reads one control frame; `None` at a clean end of stream.
async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(FrameError::from_read_exact(e)),
    }
    let n = wire::frame_len(prefix).map_err(|e| FrameError::Invalid(e.to_string()))?;
    let mut body = vec![0u8; n];
    recv.read_exact(&mut body)
        .await
        .map_err(FrameError::from_read_exact)?;
    Ok(Some(body))
}

/// Why a stream could not be read.
#[derive(Debug)]
enum FrameError {
    /// The connection is gone, in the words `describe_close` gives it.
    Gone(String),
    /// The peer broke the stream: framing, length, hash or content. A protocol violation.
    Invalid(String),
}

impl FrameError {
    /// A failed read. When the whole connection went, a reader often hears it before the
    /// close watcher does, so it must say why in the same words: quinn's own text is only
    /// "connection lost", which would hide a peer that quit (and counting it as a violation
    /// would blame a peer for leaving mid-transfer).
    fn from_read(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => FrameError::Gone(describe_close(&c)),
            e => FrameError::Invalid(e.to_string()),
        }
    }

    fn from_read_exact(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::ReadError(e) => FrameError::from_read(e),
            quinn::ReadExactError::FinishedEarly(n) => {
                FrameError::Invalid(format!("stream ended {n} bytes into a frame"))
            }
        }
    }

    /// What the link's event loop must hear.
    fn event(self, link: LinkId) -> Event {
        match self {
            FrameError::Gone(reason) => Event::LinkDown { link, reason },
            FrameError::Invalid(reason) => Event::Violation { link, reason },
        }
    }
}

impl From<FrameError> for String {
    fn from(e: FrameError) -> String {
        match e {
            FrameError::Gone(s) | FrameError::Invalid(s) => s,
        }
    }
}

impl From<String> for FrameError {
    fn from(reason: String) -> Self {
        FrameError::Invalid(reason)
    }
}

impl From<&str> for FrameError {
    fn from(reason: &str) -> Self {
        FrameError::Invalid(reason.into())
    }
}

fn spawn_link_tasks(
    link: LinkId,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut ctrl_rx: mpsc::UnboundedReceiver<Vec<u8>>,
    tx: mpsc::UnboundedSender<Event>,
) {
    // Writer.
    tokio::spawn(async move {
        while let Some(frame) = ctrl_rx.recv().await {
            if send.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    // Control reader.
    let t = tx.clone();
    tokio::spawn(async move {
        loop {
            match read_frame(&mut recv).await {
                Ok(Some(body)) => match wire::decode_msg(&body) {
                    Ok(msg) => {
                        if t.send(Event::Msg { link, msg }).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = t.send(Event::Violation {
                            link,
                            reason: e.to_string(),
                        });
                        break;
                    }
                },
                Ok(None) => {
                    // The control stream lives as long as the link: finishing it is leaving.
                    let _ = t.send(Event::Violation {
                        link,
                        reason: "control stream finished".into(),
                    });
                    break;
                }
                Err(e) => {
                    let _ = t.send(e.event(link));
                    break;
                }
            }
        }
    });
    // Bulk streams.
    let t = tx.clone();
    let c = conn.clone();
    tokio::spawn(async move {
        while let Ok(stream) = c.accept_uni().await {
            let t = t.clone();
            tokio::spawn(async move {
                if let Err(e) = read_bulk(link, stream, &t).await {
                    let _ = t.send(e.event(link));
                }
            });
        }
    });
    // Close watcher.
    tokio::spawn(async move {
        let reason = conn.closed().await;
        let _ = tx.send(Event::LinkDown {
            link,
            reason: describe_close(&reason),
        });
    });
}

/// Words for why a link closed, for the statistics and the logs.
pub fn describe_close(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(a) => {
            let reason = String::from_utf8_lossy(&a.reason).into_owned();
            match a.error_code.into_inner() as u32 {
                close::QUIT => format!("peer quit ({reason})"),
                close::AUTH_FAILED => "authentication failed".into(),
                close::VERSION_MISMATCH => reason,
                close::PROTOCOL_VIOLATION => format!("protocol violation: {reason}"),
                _ => reason,
            }
        }
        quinn::ConnectionError::TimedOut => "timed out (no answer for 4 s)".into(),
        quinn::ConnectionError::LocallyClosed => "closed here".into(),
        e => e.to_string(),
    }
}

async fn read_bulk(
    link: LinkId,
    mut stream: quinn::RecvStream,
    tx: &mpsc::UnboundedSender<Event>,
) -> Result<(), FrameError> {
    let start = Instant::now();
    let Some(body) = read_frame(&mut stream).await? else {
        return Err("empty bulk stream".into());
    };
    let header = wire::decode_bulk_header(&body).map_err(|e| e.to_string())?;
    let size = match &header {
        BulkHeader::Result { size, .. } | BulkHeader::Mesh { size, .. } => *size,
    };
    // Read exactly `size` bytes in pieces, hashing as they arrive; never allocate more than
    // was announced (and the announcement was checked against its limit).
    let mut data = Vec::with_capacity((size as usize).min(8 << 20));
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    while (data.len() as u64) < size {
        let want = ((size - data.len() as u64) as usize).min(buf.len());
        let n = stream
            .read(&mut buf[..want])
            .await
            .map_err(FrameError::from_read)?
            .ok_or("bulk stream ended early")?;
        hasher.update(&buf[..n]);
        data.extend_from_slice(&buf[..n]);
    }
    let mut extra = [0u8; 1];
    if stream
        .read(&mut extra)
        .await
        .map_err(FrameError::from_read)?
        .is_some_and(|n| n > 0)
    {
        return Err("bulk stream longer than announced".into());
    }
    let digest = *hasher.finalize().as_bytes();
    match header {
        BulkHeader::Result {
            job,
            chunk,
            compute_s,
            hash,
            node,
            worker,
            ..
        } => {
            if digest != hash {
                return Err(format!("result for chunk {chunk} fails its hash").into());
            }
            let result: ChunkResult =
                postcard::from_bytes(&data).map_err(|e| format!("malformed result: {e}"))?;
            let _ = tx.send(Event::Result {
                link,
                job,
                chunk,
                compute_s,
                transfer_s: start.elapsed().as_secs_f64(),
                by: (node, worker),
                result: Box::new(result),
            });
        }
        BulkHeader::Mesh { hash, .. } => {
            if digest != hash.0 {
                return Err("mesh does not match its hash".into());
            }
            let mesh = tokio::task::spawn_blocking(move || {
                Mesh::from_canonical_bytes(&data, &format!("pool mesh {hash}"))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let _ = tx.send(Event::MeshArrived {
                link,
                mesh: Box::new(mesh),
            });
        }
    }
    Ok(())
}

async fn send_bulk(
    conn: &quinn::Connection,
    header: &BulkHeader,
    payload: &[u8],
) -> Result<(), String> {
    let mut s = conn.open_uni().await.map_err(|e| e.to_string())?;
    let frame = wire::encode(header).map_err(|e| e.to_string())?;
    s.write_all(&frame).await.map_err(|e| e.to_string())?;
    s.write_all(payload).await.map_err(|e| e.to_string())?;
    s.finish().map_err(|e| e.to_string())?;
    // Wait until the peer has it all, so a quick close does not cut it off.
    let _ = s.stopped().await;
    Ok(())
}

async fn send_result(
    conn: &quinn::Connection,
    job: JobId,
    chunk: u32,
    compute_s: f32,
    by: (NodeId, u32),
    result: &ChunkResult,
) -> Result<(), String> {
    let bytes = postcard::to_stdvec(result).map_err(|e| e.to_string())?;
    let size = bytes.len() as u64;
    let hash = *blake3::hash(&bytes).as_bytes();
    let (node, worker) = by;
    let header = BulkHeader::Result {
        job,
        chunk,
        compute_s,
        size,
        hash,
        node,
        worker,
    };
    send_bulk(conn, &header, &bytes).await
}

/// Exchanges Hello messages and checks versions. Returns (peer, name, workers).
pub async fn exchange_hello(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    hello: &Msg,
) -> Result<(NodeId, String, u32), (RemoteState, String)> {
    let frame = wire::encode(hello).map_err(|e| (RemoteState::Unreachable, e.to_string()))?;
    send.write_all(&frame)
        .await
        .map_err(|e| (RemoteState::Unreachable, e.to_string()))?;
    let body = tokio::time::timeout(AUTH_TIMEOUT, read_frame(recv))
        .await
        .map_err(|_| (RemoteState::Unreachable, "no Hello in time".to_string()))?
        .map_err(|e| refused_or_unreachable(conn, String::from(e)))?
        .ok_or((
            RemoteState::Unreachable,
            "link closed before Hello".to_string(),
        ))?;
    let msg = wire::decode_msg(&body).map_err(|e| (RemoteState::Unreachable, e.to_string()))?;
    let Msg::Hello {
        protocol,
        compute_abi,
        node,
        name,
        workers,
    } = msg
    else {
        return Err((RemoteState::Unreachable, "expected Hello".into()));
    };
    let Msg::Hello {
        protocol: my_protocol,
        compute_abi: my_abi,
        ..
    } = hello
    else {
        return Err((RemoteState::Unreachable, "internal: not a Hello".into()));
    };
    if protocol != *my_protocol || compute_abi != *my_abi {
        let text = format!(
            "version mismatch: this node speaks protocol {my_protocol} with compute ABI {my_abi}, \
             the peer ({name}) protocol {protocol} with compute ABI {compute_abi}"
        );
        conn.close(close::VERSION_MISMATCH.into(), text.as_bytes());
        return Err((RemoteState::VersionMismatch, text));
    }
    Ok((node, name, workers))
}

/// The peer's reason if it closed the link over a version mismatch (it read our Hello first
/// and closed before its own Hello reached us), else `error`.
fn refused_or_unreachable(conn: &quinn::Connection, error: String) -> (RemoteState, String) {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(a))
            if a.error_code.into_inner() == u64::from(close::VERSION_MISMATCH) =>
        {
            let reason = String::from_utf8_lossy(&a.reason);
            (
                RemoteState::VersionMismatch,
                format!("refused by the peer, which says: {reason}"),
            )
        }
        _ => (RemoteState::Unreachable, error),
    }
}

struct DialContext {
    endpoint: quinn::Endpoint,
    tx: mpsc::UnboundedSender<Event>,
    secret: Secret,
    hello: Msg,
    remote: usize,
    address: String,
}

async fn dial(ctx: DialContext) {
    let fail = |state: RemoteState, error: String| {
        let _ = ctx.tx.send(Event::RemoteFailed {
            remote: ctx.remote,
            state,
            error,
        });
    };
    let addr = match tokio::net::lookup_host(&ctx.address).await {
        Ok(mut a) => match a.next() {
            Some(a) => a,
            None => {
                return fail(
                    RemoteState::Unreachable,
                    "address resolves to nothing".into(),
                );
            }
        },
        Err(e) => return fail(RemoteState::Unreachable, format!("cannot resolve: {e}")),
    };
    match connect_and_authenticate(&ctx.endpoint, addr, &ctx.secret, &ctx.hello).await {
        Ok((conn, send, recv, peer, name, workers)) => {
            let _ = ctx.tx.send(Event::LinkUp(Box::new(NewLink {
                conn,
                send,
                recv,
                peer,
                name,
                workers,
                remote: Some(ctx.remote),
            })));
        }
        Err((state, error)) => fail(state, error),
    }
}

type Authenticated = (
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
    NodeId,
    String,
    u32,
);

/// Dials `addr`, authenticates with the pool secret and exchanges Hello.
pub async fn connect_and_authenticate(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    secret: &Secret,
    hello: &Msg,
) -> Result<Authenticated, (RemoteState, String)> {
    let unreachable = |e: &dyn std::fmt::Display| (RemoteState::Unreachable, e.to_string());
    let connecting = endpoint
        .connect(addr, "millpond-node")
        .map_err(|e| unreachable(&e))?;
    let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| (RemoteState::Unreachable, "no answer within 5 s".to_string()))?
        .map_err(|e| unreachable(&e))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| unreachable(&e))?;
    let auth = tokio::time::timeout(
        AUTH_TIMEOUT,
        auth::authenticate(&conn, &mut send, &mut recv, secret.as_bytes(), Side::Dialer),
    )
    .await;
    match auth {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => {
            // The acceptor closes with AUTH_FAILED; a short wait lets its reason arrive.
            let reason = tokio::time::timeout(Duration::from_millis(300), conn.closed()).await;
            conn.close(close::AUTH_FAILED.into(), b"authentication failed");
            let text = match reason {
                Ok(e) if matches!(&e, quinn::ConnectionError::ApplicationClosed(a) if a.error_code.into_inner() as u32 == close::AUTH_FAILED) => {
                    "authentication failed: the peer has a different pool secret".to_string()
                }
                Ok(e) if matches!(&e, quinn::ConnectionError::ApplicationClosed(_)) => {
                    describe_close(&e)
                }
                _ => "authentication failed".to_string(),
            };
            return Err((RemoteState::AuthenticationFailed, text));
        }
    }
    conn.set_max_concurrent_uni_streams(64u32.into());
    let (peer, name, workers) = exchange_hello(&conn, &mut send, &mut recv, hello).await?;
    Ok((conn, send, recv, peer, name, workers))
}

/// Accepts newcomers for as long as the endpoint is open. A failing address is refused for a
/// growing time.
pub async fn accept_loop(
    endpoint: quinn::Endpoint,
    tx: mpsc::UnboundedSender<Event>,
    secret: Secret,
    hello: Msg,
) {
    let backoff: Arc<Mutex<HashMap<IpAddr, (u32, Instant)>>> = Arc::default();
    while let Some(incoming) = endpoint.accept().await {
        let ip = incoming.remote_address().ip();
        let blocked = backoff
            .lock()
            .map(|b| b.get(&ip).is_some_and(|(_, until)| Instant::now() < *until))
            .unwrap_or(false);
        if blocked {
            incoming.refuse();
            continue;
        }
        let (tx, secret, hello, backoff) =
            (tx.clone(), secret.clone(), hello.clone(), backoff.clone());
        tokio::spawn(async move {
            let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), incoming).await else {
                return;
            };
            let streams = tokio::time::timeout(AUTH_TIMEOUT, conn.accept_bi()).await;
            let Ok(Ok((mut send, mut recv))) = streams else {
                conn.close(close::AUTH_FAILED.into(), b"no authentication in time");
                return;
            };
            let auth = tokio::time::timeout(
                AUTH_TIMEOUT,
                auth::authenticate(
                    &conn,
                    &mut send,
                    &mut recv,
                    secret.as_bytes(),
                    Side::Acceptor,
                ),
            )
            .await;
            if !matches!(auth, Ok(Ok(_))) {
                warn!("authentication failed from {}", conn.remote_address());
                if let Ok(mut b) = backoff.lock() {
                    let e = b.entry(ip).or_insert((0, Instant::now()));
                    e.0 += 1;
                    let secs = (0.25 * 2f64.powi(e.0.min(8) as i32 - 1)).min(60.0);
                    e.1 = Instant::now() + Duration::from_secs_f64(secs);
                }
                conn.close(close::AUTH_FAILED.into(), b"authentication failed");
                return;
            }
            if let Ok(mut b) = backoff.lock() {
                b.remove(&ip);
            }
            conn.set_max_concurrent_uni_streams(64u32.into());
            match exchange_hello(&conn, &mut send, &mut recv, &hello).await {
                Ok((peer, name, workers)) => {
                    let _ = tx.send(Event::LinkUp(Box::new(NewLink {
                        conn,
                        send,
                        recv,
                        peer,
                        name,
                        workers,
                        remote: None,
                    })));
                }
                Err((_, e)) => warn!("newcomer {}: {e}", conn.remote_address()),
            }
        });
    }
}

/// Fires `Tick` events until the loop is gone.
pub async fn ticker(tx: mpsc::UnboundedSender<Event>) {
    let mut iv = tokio::time::interval(TICK);
    loop {
        iv.tick().await;
        if tx.send(Event::Tick).is_err() {
            break;
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.s.id).finish()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Event")
    }
}

impl std::fmt::Debug for NewLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewLink").field("peer", &self.peer).finish()
    }
}

impl std::fmt::Debug for NodeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSettings")
            .field("id", &self.id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millpond_core::job::{DropSpec, Grid, Operation};
    use millpond_core::{Axis, Cutter, Rect};

    /// A peer that quits is named as such even when a stream reader, not the close watcher,
    /// is the first to hear the connection go (the CI failure of 22 Nov: "connection lost"),
    /// and a connection that goes mid-transfer is a lost link, not the peer's violation; a
    /// stream cut short on a live connection is one.
    #[test]
    fn a_read_cut_by_a_quit_says_peer_quit() {
        let quit = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: close::QUIT.into(),
            reason: "quit".into(),
        });
        let read = quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(quit));
        match FrameError::from_read_exact(read).event(3) {
            Event::LinkDown { link: 3, reason } => assert_eq!(reason, "peer quit (quit)"),
            e => panic!("{e:?}"),
        }
        let reset = quinn::ReadError::Reset(7u32.into());
        match FrameError::from_read(reset).event(3) {
            Event::Violation { link: 3, reason } => assert!(reason.contains("reset"), "{reason}"),
            e => panic!("{e:?}"),
        }
        let short = quinn::ReadExactError::FinishedEarly(2);
        assert!(matches!(
            FrameError::from_read_exact(short).event(3),
            Event::Violation { .. }
        ));
    }

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
        let mut j = JobState::new(spec, None);
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
