//! The mesh cache and the fetching of a job's inputs (ARCHITECTURE.md §4.7): meshes, and a
//! simulation's program, by hash, fetched from a job's parent first and from the other links
//! that announced it when the parent cannot send it (`NoMesh`, `NoProgram`), goes, or takes
//! too long; sent once down a link unless asked again after `MESH_WAIT`; LRU by bytes, never
//! evicting an input a live job uses. A job is bound to its context once it has them all: a
//! toolpath job at once, a simulation off the loop (`Action::BindSimulation`).

use super::{Action, LinkId, Node, Unbound, close};
use crate::wire::{JobId, Msg};
use millpond_core::job::{JobContext, JobSpec};
use millpond_core::mesh::{CANONICAL_TRIANGLE_BYTES, MeshHash};
use millpond_core::sim_job::{ProgramHash, ProgramMoves};
use millpond_core::toolpath::Move;
use millpond_core::{Mesh, TriangleIndex};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::debug;

/// What a job needs besides its spec, fetched by hash: the model's mesh, and for a
/// simulation its program.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(super) enum InputId {
    Mesh(MeshHash),
    Program(ProgramHash),
}

impl fmt::Display for InputId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputId::Mesh(h) => write!(f, "mesh {h}"),
            InputId::Program(h) => write!(f, "program {h}"),
        }
    }
}

impl InputId {
    /// The inputs a job of `spec` needs.
    pub(super) fn of(spec: &JobSpec) -> impl Iterator<Item = InputId> + use<> {
        let program = spec.simulation().map(|s| InputId::Program(s.program));
        std::iter::once(InputId::Mesh(spec.mesh)).chain(program)
    }

    fn needed_by(self, spec: &JobSpec) -> bool {
        Self::of(spec).any(|i| i == self)
    }

    /// Asks a link for it.
    fn fetch(self) -> Msg {
        match self {
            InputId::Mesh(hash) => Msg::FetchMesh { hash },
            InputId::Program(hash) => Msg::FetchProgram { hash },
        }
    }

    /// Tells a link it cannot have it from here.
    fn refusal(self) -> Msg {
        match self {
            InputId::Mesh(hash) => Msg::NoMesh { hash },
            InputId::Program(hash) => Msg::NoProgram { hash },
        }
    }
}

/// An input kept.
#[derive(Clone)]
enum Held {
    Mesh {
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
    },
    Program(Arc<ProgramMoves>),
}

impl Held {
    /// Bytes counted in the cache's budget: the triangles and their index, or the moves.
    fn bytes(&self) -> u64 {
        match self {
            Held::Mesh { mesh, index } => {
                (mesh.len() * CANONICAL_TRIANGLE_BYTES + index.memory_bytes()) as u64
            }
            Held::Program(p) => p
                .passes
                .iter()
                .map(|(_, tp)| (tp.moves.len() * std::mem::size_of::<Move>()) as u64)
                .sum(),
        }
    }
}

/// How long a fetch waits for its mesh before asking the next link that has the job (doubled
/// on each retry, up to 8 times this); also the shortest time before a link is sent the
/// same mesh again when it asks again.
pub(super) const MESH_WAIT: Duration = Duration::from_secs(10);

struct Cached {
    held: Held,
    bytes: u64,
    used: Instant,
}

impl Cached {
    fn new(held: Held, now: Instant) -> Self {
        Self {
            bytes: held.bytes(),
            held,
            used: now,
        }
    }
}

/// Meshes remembered as asked of one link (`Link::meshes_asked`): far more than the jobs a
/// link can have announced at once (`MAX_JOBS_PER_LINK`), so an honest peer's late copy is
/// always recognised as one, while the record stays bounded.
pub(super) const MAX_ASKED: usize = 1024;

/// An input being fetched.
struct Fetch {
    /// Links that asked this node for it meanwhile.
    waiters: Vec<LinkId>,
    /// The link asked last (`None`: none could be asked; try again after `MESH_WAIT`).
    asked: Option<LinkId>,
    since: Instant,
    tries: u32,
    /// It arrived and is being indexed: no more asking.
    arrived: bool,
    /// Its bytes once arrived, until indexed and cached (counted in the mesh budget).
    arrived_bytes: u64,
}

/// Inputs kept (meshes and programs), and the ones being fetched or indexed with the links
/// waiting for them.
#[derive(Default)]
pub(super) struct MeshCache {
    inputs: BTreeMap<InputId, Cached>,
    pending: BTreeMap<InputId, Fetch>,
}

impl MeshCache {
    /// Meshes kept.
    pub fn len(&self) -> usize {
        self.inputs
            .keys()
            .filter(|i| matches!(i, InputId::Mesh(_)))
            .count()
    }

    fn held(&mut self, id: InputId, now: Instant) -> Option<Held> {
        let m = self.inputs.get_mut(&id)?;
        m.used = now;
        Some(m.held.clone())
    }

    /// A cached mesh and its index, marked as used now.
    pub fn get(&mut self, hash: MeshHash, now: Instant) -> Option<(Arc<Mesh>, Arc<TriangleIndex>)> {
        match self.held(InputId::Mesh(hash), now)? {
            Held::Mesh { mesh, index } => Some((mesh, index)),
            Held::Program(_) => None,
        }
    }

    /// A cached program, marked as used now.
    fn program(&mut self, hash: ProgramHash, now: Instant) -> Option<Arc<ProgramMoves>> {
        match self.held(InputId::Program(hash), now)? {
            Held::Program(p) => Some(p),
            Held::Mesh { .. } => None,
        }
    }

    /// Keeps a mesh under `hash` (unless one is already kept there).
    pub fn keep(
        &mut self,
        hash: MeshHash,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
        now: Instant,
    ) {
        self.inputs
            .entry(InputId::Mesh(hash))
            .or_insert_with(|| Cached::new(Held::Mesh { mesh, index }, now));
    }

    /// Keeps a program under `hash` (unless one is already kept there).
    pub fn keep_program(&mut self, hash: ProgramHash, program: Arc<ProgramMoves>, now: Instant) {
        self.inputs
            .entry(InputId::Program(hash))
            .or_insert_with(|| Cached::new(Held::Program(program), now));
    }

    /// How job `job` of `spec` is bound, if every input it needs is here (`None` as well if
    /// they do not make a job).
    pub(super) fn binding_for(
        &mut self,
        job: JobId,
        spec: &JobSpec,
        now: Instant,
    ) -> Option<Binding> {
        let (mesh, index) = self.get(spec.mesh, now)?;
        match spec.simulation() {
            Some(sim) => {
                let program = self.program(sim.program, now)?;
                Some(Binding::OffLoop(Box::new(Unbound {
                    job,
                    spec: spec.clone(),
                    mesh,
                    index,
                    program,
                })))
            }
            None => JobContext::new(mesh, index, spec.clone())
                .ok()
                .map(|ctx| Binding::Bound(Box::new(ctx))),
        }
    }

    /// Drops least recently used inputs until they fit in `budget` bytes, never one in
    /// `in_use`.
    fn evict(&mut self, budget: u64, in_use: &HashSet<InputId>) {
        let mut total: u64 = self.inputs.values().map(|m| m.bytes).sum();
        while total > budget {
            let victim = self
                .inputs
                .iter()
                .filter(|(h, _)| !in_use.contains(h))
                .min_by_key(|(_, m)| m.used)
                .map(|(h, _)| *h);
            let Some(h) = victim else { break };
            if let Some(m) = self.inputs.remove(&h) {
                total -= m.bytes;
            }
        }
    }
}

/// A job's inputs, all here.
pub(super) enum Binding {
    /// A toolpath job, bound at once (its spec checked against the mesh).
    Bound(Box<JobContext>),
    /// A simulation: binding it plans the program's tiles again to check the spec, seconds
    /// for a program of millions of moves, so it is done off the loop.
    OffLoop(Box<Unbound>),
}

impl Node {
    /// Binds job `id` if it waits for its inputs and they are all here: a toolpath job at
    /// once, a simulation off the loop ([`Action::BindSimulation`], answered by
    /// `Input::SimulationBound`).
    pub(super) fn bind_job(&mut self, now: Instant, id: JobId) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if !j.needs_inputs() {
            return;
        }
        match self.meshes.binding_for(id, &j.spec, now) {
            Some(Binding::Bound(ctx)) => j.ctx = Some(*ctx),
            Some(Binding::OffLoop(unbound)) => {
                j.binding = true;
                self.out.push(Action::BindSimulation(unbound));
            }
            None => {}
        }
    }

    /// A simulation job bound off the loop: it may compute now. One its inputs do not make
    /// (a plan its program does not give) stays unbound, as a job whose inputs never came.
    pub(super) fn on_simulation_bound(&mut self, job: JobId, ctx: Result<Box<JobContext>, String>) {
        let Some(j) = self.jobs.get_mut(&job).filter(|j| j.binding) else {
            return;
        };
        j.binding = false;
        match ctx {
            Ok(ctx) => j.ctx = Some(*ctx),
            Err(e) => debug!("job {job}: its inputs do not make it: {e}"),
        }
    }

    /// Starts fetching what a job of `spec` needs and this node has not, from `link` (the
    /// job's parent), unless it is already being fetched.
    pub(super) fn fetch_inputs(&mut self, now: Instant, spec: &JobSpec, link: LinkId) {
        for id in InputId::of(spec) {
            if !self.meshes.inputs.contains_key(&id) {
                self.fetch(now, id, link);
            }
        }
    }

    fn fetch(&mut self, now: Instant, id: InputId, link: LinkId) {
        if self.meshes.pending.contains_key(&id) {
            return;
        }
        let fetch = Fetch {
            waiters: Vec::new(),
            asked: Some(link),
            since: now,
            tries: 0,
            arrived: false,
            arrived_bytes: 0,
        };
        self.meshes.pending.insert(id, fetch);
        self.ask_for(link, id);
    }

    /// Asks `link` for an input, remembering that it was asked (`input_offered`).
    fn ask_for(&mut self, link: LinkId, id: InputId) {
        if let Some(l) = self.links.get_mut(&link)
            && !l.meshes_asked.contains(&id)
        {
            l.meshes_asked.push_back(id);
            if l.meshes_asked.len() > MAX_ASKED {
                l.meshes_asked.pop_front();
            }
        }
        self.send(link, id.fetch());
    }

    /// A mesh or program offered on a bulk stream of `link` (`Node::bulk_offered`): read if
    /// this node asked the link for it and still waits for it, one stream per link at a time,
    /// and if its announced `size` fits the mesh budget beside the inputs being read or
    /// indexed now (`mesh_bytes_in_flight`; else declined and asked again after
    /// `MESH_WAIT`); one larger than the whole budget is refused with a notice naming the
    /// peer; a copy no longer needed is declined; one never asked of the link closes it (an
    /// honest peer sends an input only when asked: `on_fetch`).
    pub(super) fn input_offered(
        &mut self,
        now: Instant,
        link: LinkId,
        id: InputId,
        size: u64,
    ) -> bool {
        let wanted = self.meshes.pending.get(&id).is_some_and(|f| !f.arrived);
        let in_flight = self.mesh_bytes_in_flight();
        let budget = self.s.mesh_cache_bytes;
        let Some(l) = self.links.get_mut(&link) else {
            return false;
        };
        if !l.meshes_asked.contains(&id) {
            let reason = format!("{id} that was never asked of it");
            self.close_link(now, link, close::PROTOCOL_VIOLATION, &reason);
            return false;
        }
        if !wanted || l.meshes_incoming.contains_key(&id) {
            return false;
        }
        if size > budget {
            let text = format!(
                "{} ({}) offered {id} of {} MB, more than this member's mesh budget of {} MB: \
                 refused",
                l.name,
                l.address,
                size >> 20,
                budget >> 20
            );
            debug!("{text}");
            self.notice(text);
            return false;
        }
        if in_flight.saturating_add(size) > budget {
            debug!("{id}: {size} bytes would pass the mesh budget now; declined");
            return false;
        }
        l.meshes_incoming.insert(id, size);
        true
    }

    /// Bytes of inputs being read from links now or indexed: with the cache's own budget,
    /// what bounds the memory peers' meshes and programs take here (a peer may announce 256
    /// jobs, each of a mesh of its own of up to `MAX_MESH`).
    pub(super) fn mesh_bytes_in_flight(&self) -> u64 {
        let reading: u64 = self
            .links
            .values()
            .flat_map(|l| l.meshes_incoming.values())
            .sum();
        let indexing: u64 = self.meshes.pending.values().map(|f| f.arrived_bytes).sum();
        reading.saturating_add(indexing)
    }

    /// Asks the next link that announced a job needing this input (after the one asked
    /// last, in turn), never one waiting on this node for it nor `avoid` (which just said no
    /// or went).
    fn ask_again(&mut self, now: Instant, id: InputId, avoid: Option<LinkId>) {
        let mut candidates: Vec<LinkId> = self
            .jobs
            .values()
            .filter(|j| j.needs_inputs() && id.needed_by(&j.spec))
            .flat_map(|j| j.announcers.iter().copied())
            .filter(|l| self.links.contains_key(l) && Some(*l) != avoid)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let Some(f) = self.meshes.pending.get_mut(&id) else {
            return;
        };
        candidates.retain(|l| !f.waiters.contains(l));
        let after = f.asked.unwrap_or(0);
        let next = candidates
            .iter()
            .find(|&&l| l > after)
            .or(candidates.first())
            .copied();
        f.asked = next;
        f.since = now;
        if let Some(link) = next {
            f.tries += 1;
            debug!("{id}: asking link {link} (try {})", f.tries);
            self.ask_for(link, id);
        }
    }

    /// The link asked for an input cannot send it: ask another.
    pub(super) fn on_no_input(&mut self, now: Instant, link: LinkId, id: InputId) {
        if self
            .meshes
            .pending
            .get(&id)
            .is_some_and(|f| f.asked == Some(link) && !f.arrived)
        {
            self.ask_again(now, id, Some(link));
        }
    }

    /// A link went: fetches that asked it ask another; what it waited for is not sent.
    pub(super) fn mesh_link_lost(&mut self, now: Instant, link: LinkId) {
        let mut asked = Vec::new();
        for (id, f) in self.meshes.pending.iter_mut() {
            f.waiters.retain(|&l| l != link);
            if f.asked == Some(link) && !f.arrived {
                asked.push(*id);
            }
        }
        for id in asked {
            self.ask_again(now, id, Some(link));
        }
    }

    /// Every tick: a fetch no job needs any more is dropped (its waiters told `NoMesh` or
    /// `NoProgram`, so they ask elsewhere); one unanswered for its wait asks the next link.
    pub(super) fn retry_fetches(&mut self, now: Instant) {
        let needed: HashSet<InputId> = self
            .jobs
            .values()
            .filter(|j| j.needs_inputs())
            .flat_map(|j| InputId::of(&j.spec))
            .collect();
        let stale: Vec<InputId> = self
            .meshes
            .pending
            .iter()
            .filter(|(id, f)| !f.arrived && !needed.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(f) = self.meshes.pending.remove(&id) {
                for l in f.waiters {
                    self.send(l, id.refusal());
                }
            }
        }
        let due: Vec<InputId> = self
            .meshes
            .pending
            .iter()
            .filter(|(_, f)| {
                let wait = MESH_WAIT * 2u32.pow(f.tries.min(3));
                !f.arrived && now.saturating_duration_since(f.since) > wait
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.ask_again(now, id, None);
        }
    }

    /// A link asks for an input: sent now if cached, on arrival if it is being fetched from
    /// another link; `NoMesh` or `NoProgram` if this node does not have it or is fetching it
    /// from that very link (two nodes waiting on each other would wait for ever).
    pub(super) fn on_fetch(&mut self, now: Instant, link: LinkId, id: InputId) {
        if let Some(held) = self.meshes.held(id, now) {
            self.send_input(now, link, id, held);
            return;
        }
        match self.meshes.pending.get_mut(&id) {
            Some(f) if f.asked != Some(link) || f.arrived => {
                if !f.waiters.contains(&link) {
                    f.waiters.push(link);
                }
            }
            _ => self.send(link, id.refusal()),
        }
    }

    fn send_input(&mut self, now: Instant, link: LinkId, id: InputId, held: Held) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        // Once per link, unless it asks again after a while (its copy was lost on the way).
        if l.meshes_sent
            .get(&id)
            .is_some_and(|t| now.saturating_duration_since(*t) < MESH_WAIT)
        {
            return;
        }
        l.meshes_sent.insert(id, now);
        l.meshes_out += 1;
        let action = match held {
            Held::Mesh { mesh, .. } => Action::SendMesh { link, mesh },
            Held::Program(program) => {
                let InputId::Program(hash) = id else { return };
                Action::SendProgram {
                    link,
                    hash,
                    program,
                }
            }
        };
        self.out.push(action);
    }

    /// An input came on a bulk stream: `Some` if it was asked for and is not here yet.
    fn arrived(&mut self, link: LinkId, id: InputId, bytes: u64) -> bool {
        if let Some(l) = self.links.get_mut(&link) {
            l.meshes_in += 1;
            l.meshes_incoming.remove(&id);
        }
        match self.meshes.pending.get_mut(&id) {
            Some(f) if !f.arrived => {
                f.arrived = true;
                f.arrived_bytes = bytes;
                true
            }
            _ => false, // not asked for, or a second copy
        }
    }

    /// A mesh came on a bulk stream: indexed off the loop if it was asked for.
    pub(super) fn on_mesh_arrived(&mut self, link: LinkId, mesh: Box<Mesh>) {
        let bytes = (mesh.len() * CANONICAL_TRIANGLE_BYTES) as u64;
        if self.arrived(link, InputId::Mesh(mesh.hash()), bytes) {
            self.out.push(Action::IndexMesh { mesh });
        }
    }

    /// A program came on a bulk stream (read and hash-checked off the loop): ready at once.
    pub(super) fn on_program_arrived(
        &mut self,
        now: Instant,
        link: LinkId,
        hash: ProgramHash,
        program: Arc<ProgramMoves>,
    ) {
        let id = InputId::Program(hash);
        if self.arrived(link, id, 0) {
            self.on_input_ready(now, id, Held::Program(program));
        }
    }

    pub(super) fn on_mesh_ready(
        &mut self,
        now: Instant,
        hash: MeshHash,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
    ) {
        self.on_input_ready(now, InputId::Mesh(hash), Held::Mesh { mesh, index });
    }

    /// An input is here: kept, the jobs that now have all theirs bound, the links waiting
    /// for it sent it.
    fn on_input_ready(&mut self, now: Instant, id: InputId, held: Held) {
        debug!("{id} ready");
        self.meshes
            .inputs
            .insert(id, Cached::new(held.clone(), now));
        let waiting: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.needs_inputs() && id.needed_by(&j.spec))
            .map(|(&job, _)| job)
            .collect();
        for job in waiting {
            self.bind_job(now, job);
        }
        let waiters = self.meshes.pending.remove(&id).map(|f| f.waiters);
        for l in waiters.unwrap_or_default() {
            self.send_input(now, l, id, held.clone());
        }
        self.evict_meshes();
    }

    /// Keeps the cache within its byte budget.
    pub(super) fn evict_meshes(&mut self) {
        let in_use: HashSet<InputId> = self
            .jobs
            .values()
            .flat_map(|j| InputId::of(&j.spec))
            .collect();
        self.meshes.evict(self.s.mesh_cache_bytes, &in_use);
    }
}
