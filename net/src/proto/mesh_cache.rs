//! The mesh cache and mesh fetching (ARCHITECTURE.md §4.7): meshes by hash, fetched from a
//! job's parent first and from the other links that announced it when the parent cannot
//! send it (`NoMesh`), goes, or takes too long; sent once down a link unless asked again
//! after `MESH_WAIT`; LRU by bytes, never evicting a mesh a live job uses.

use super::{Action, LinkId, Node, close};
use crate::wire::Msg;
use millpond_core::job::JobContext;
use millpond_core::mesh::{CANONICAL_TRIANGLE_BYTES, MeshHash};
use millpond_core::{Mesh, TriangleIndex};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::debug;

/// How long a fetch waits for its mesh before asking the next link that has the job (doubled
/// on each retry, up to 8 times this); also the shortest time before a link is sent the
/// same mesh again when it asks again.
pub(super) const MESH_WAIT: Duration = Duration::from_secs(10);

struct CachedMesh {
    mesh: Arc<Mesh>,
    index: Arc<TriangleIndex>,
    bytes: u64,
    used: Instant,
}

impl CachedMesh {
    /// Counted in the cache's byte budget: the triangles and their index.
    fn new(mesh: Arc<Mesh>, index: Arc<TriangleIndex>, now: Instant) -> Self {
        let bytes = (mesh.len() * CANONICAL_TRIANGLE_BYTES + index.memory_bytes()) as u64;
        Self {
            mesh,
            index,
            bytes,
            used: now,
        }
    }
}

/// Meshes remembered as asked of one link (`Link::meshes_asked`): far more than the jobs a
/// link can have announced at once (`MAX_JOBS_PER_LINK`), so an honest peer's late copy is
/// always recognised as one, while the record stays bounded.
pub(super) const MAX_ASKED: usize = 1024;

/// A mesh being fetched.
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

/// Meshes kept, and the ones being fetched or indexed with the links waiting for them.
#[derive(Default)]
pub(super) struct MeshCache {
    meshes: BTreeMap<MeshHash, CachedMesh>,
    pending: BTreeMap<MeshHash, Fetch>,
}

impl MeshCache {
    /// Meshes kept.
    pub fn len(&self) -> usize {
        self.meshes.len()
    }

    /// A cached mesh and its index, marked as used now.
    pub fn get(&mut self, hash: MeshHash, now: Instant) -> Option<(Arc<Mesh>, Arc<TriangleIndex>)> {
        let m = self.meshes.get_mut(&hash)?;
        m.used = now;
        Some((m.mesh.clone(), m.index.clone()))
    }

    /// Keeps a mesh under `hash` (unless one is already kept there).
    pub fn keep(
        &mut self,
        hash: MeshHash,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
        now: Instant,
    ) {
        self.meshes
            .entry(hash)
            .or_insert_with(|| CachedMesh::new(mesh, index, now));
    }

    /// Drops least recently used meshes until they fit in `budget` bytes, never one in `in_use`.
    fn evict(&mut self, budget: u64, in_use: &HashSet<MeshHash>) {
        let mut total: u64 = self.meshes.values().map(|m| m.bytes).sum();
        while total > budget {
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
}

impl Node {
    /// Starts fetching a mesh no job here has, from `link` (the parent of the job that needs
    /// it), unless it is already being fetched.
    pub(super) fn fetch_mesh(&mut self, now: Instant, hash: MeshHash, link: LinkId) {
        if self.meshes.pending.contains_key(&hash) {
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
        self.meshes.pending.insert(hash, fetch);
        self.ask_for_mesh(link, hash);
    }

    /// Asks `link` for a mesh, remembering that it was asked (`mesh_offered`).
    fn ask_for_mesh(&mut self, link: LinkId, hash: MeshHash) {
        if let Some(l) = self.links.get_mut(&link)
            && !l.meshes_asked.contains(&hash)
        {
            l.meshes_asked.push_back(hash);
            if l.meshes_asked.len() > MAX_ASKED {
                l.meshes_asked.pop_front();
            }
        }
        self.send(link, Msg::FetchMesh { hash });
    }

    /// A mesh offered on a bulk stream of `link` (`Node::bulk_offered`): read if this node
    /// asked the link for it and still waits for it, one stream per link at a time, and if
    /// its announced `size` fits the mesh budget beside the meshes being read or indexed
    /// now (`mesh_bytes_in_flight`; else declined and asked again after `MESH_WAIT`); a mesh
    /// larger than the whole budget is refused with a notice naming the peer; a copy no
    /// longer needed is declined; a mesh never asked of the link closes it (an honest peer
    /// sends a mesh only when asked: `on_fetch_mesh`).
    pub(super) fn mesh_offered(
        &mut self,
        now: Instant,
        link: LinkId,
        hash: MeshHash,
        size: u64,
    ) -> bool {
        let wanted = self.meshes.pending.get(&hash).is_some_and(|f| !f.arrived);
        let in_flight = self.mesh_bytes_in_flight();
        let budget = self.s.mesh_cache_bytes;
        let Some(l) = self.links.get_mut(&link) else {
            return false;
        };
        if !l.meshes_asked.contains(&hash) {
            let reason = format!("mesh {hash} that was never asked of it");
            self.close_link(now, link, close::PROTOCOL_VIOLATION, &reason);
            return false;
        }
        if !wanted || l.meshes_incoming.contains_key(&hash) {
            return false;
        }
        if size > budget {
            let text = format!(
                "{} ({}) offered mesh {hash} of {} MB, more than this member's mesh budget of \
                 {} MB: refused",
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
            debug!("mesh {hash}: {size} bytes would pass the mesh budget now; declined");
            return false;
        }
        l.meshes_incoming.insert(hash, size);
        true
    }

    /// Bytes of meshes being read from links now or indexed: with the cache's own budget,
    /// what bounds the memory peers' meshes take here (a peer may announce 256 jobs, each
    /// of a mesh of its own of up to `MAX_MESH`).
    pub(super) fn mesh_bytes_in_flight(&self) -> u64 {
        let reading: u64 = self
            .links
            .values()
            .flat_map(|l| l.meshes_incoming.values())
            .sum();
        let indexing: u64 = self.meshes.pending.values().map(|f| f.arrived_bytes).sum();
        reading.saturating_add(indexing)
    }

    /// Asks the next link that announced a job of this mesh (after the one asked last, in
    /// turn), never one waiting on this node for it nor `avoid` (which just said no or went).
    fn ask_again(&mut self, now: Instant, hash: MeshHash, avoid: Option<LinkId>) {
        let mut candidates: Vec<LinkId> = self
            .jobs
            .values()
            .filter(|j| j.spec.mesh == hash && j.ctx.is_none())
            .flat_map(|j| j.announcers.iter().copied())
            .filter(|l| self.links.contains_key(l) && Some(*l) != avoid)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let Some(f) = self.meshes.pending.get_mut(&hash) else {
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
            debug!("mesh {hash}: asking link {link} (try {})", f.tries);
            self.ask_for_mesh(link, hash);
        }
    }

    /// The link asked for a mesh cannot send it: ask another.
    pub(super) fn on_no_mesh(&mut self, now: Instant, link: LinkId, hash: MeshHash) {
        if self
            .meshes
            .pending
            .get(&hash)
            .is_some_and(|f| f.asked == Some(link) && !f.arrived)
        {
            self.ask_again(now, hash, Some(link));
        }
    }

    /// A link went: fetches that asked it ask another; what it waited for is not sent.
    pub(super) fn mesh_link_lost(&mut self, now: Instant, link: LinkId) {
        let mut asked = Vec::new();
        for (hash, f) in self.meshes.pending.iter_mut() {
            f.waiters.retain(|&l| l != link);
            if f.asked == Some(link) && !f.arrived {
                asked.push(*hash);
            }
        }
        for hash in asked {
            self.ask_again(now, hash, Some(link));
        }
    }

    /// Every tick: a fetch no job needs any more is dropped (its waiters told `NoMesh`, so
    /// they ask elsewhere); one unanswered for its wait asks the next link.
    pub(super) fn retry_fetches(&mut self, now: Instant) {
        let needed: HashSet<MeshHash> = self
            .jobs
            .values()
            .filter(|j| j.ctx.is_none())
            .map(|j| j.spec.mesh)
            .collect();
        let stale: Vec<MeshHash> = self
            .meshes
            .pending
            .iter()
            .filter(|(h, f)| !f.arrived && !needed.contains(h))
            .map(|(h, _)| *h)
            .collect();
        for hash in stale {
            if let Some(f) = self.meshes.pending.remove(&hash) {
                for l in f.waiters {
                    self.send(l, Msg::NoMesh { hash });
                }
            }
        }
        let due: Vec<MeshHash> = self
            .meshes
            .pending
            .iter()
            .filter(|(_, f)| {
                let wait = MESH_WAIT * 2u32.pow(f.tries.min(3));
                !f.arrived && now.saturating_duration_since(f.since) > wait
            })
            .map(|(h, _)| *h)
            .collect();
        for hash in due {
            self.ask_again(now, hash, None);
        }
    }

    /// A link asks for a mesh: sent now if cached, on arrival if it is being fetched from
    /// another link; `NoMesh` if this node does not have it or is fetching it from that
    /// very link (two nodes waiting on each other would wait for ever).
    pub(super) fn on_fetch_mesh(&mut self, now: Instant, link: LinkId, hash: MeshHash) {
        if let Some((mesh, _)) = self.meshes.get(hash, now) {
            self.send_mesh(now, link, mesh);
            return;
        }
        match self.meshes.pending.get_mut(&hash) {
            Some(f) if f.asked != Some(link) || f.arrived => {
                if !f.waiters.contains(&link) {
                    f.waiters.push(link);
                }
            }
            _ => self.send(link, Msg::NoMesh { hash }),
        }
    }

    fn send_mesh(&mut self, now: Instant, link: LinkId, mesh: Arc<Mesh>) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        // Once per link, unless it asks again after a while (its copy was lost on the way).
        let hash = mesh.hash();
        if l.meshes_sent
            .get(&hash)
            .is_some_and(|t| now.saturating_duration_since(*t) < MESH_WAIT)
        {
            return;
        }
        l.meshes_sent.insert(hash, now);
        l.meshes_out += 1;
        self.out.push(Action::SendMesh { link, mesh });
    }

    /// A mesh came on a bulk stream: indexed off the loop if it was asked for.
    pub(super) fn on_mesh_arrived(&mut self, link: LinkId, mesh: Box<Mesh>) {
        if let Some(l) = self.links.get_mut(&link) {
            l.meshes_in += 1;
            l.meshes_incoming.remove(&mesh.hash());
        }
        match self.meshes.pending.get_mut(&mesh.hash()) {
            Some(f) if !f.arrived => {
                f.arrived = true;
                f.arrived_bytes = (mesh.len() * CANONICAL_TRIANGLE_BYTES) as u64;
            }
            _ => return, // not asked for, or a second copy
        }
        self.out.push(Action::IndexMesh { mesh });
    }

    pub(super) fn on_mesh_ready(
        &mut self,
        now: Instant,
        hash: MeshHash,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
    ) {
        debug!("mesh {hash} ready");
        self.meshes
            .meshes
            .insert(hash, CachedMesh::new(mesh.clone(), index.clone(), now));
        for j in self.jobs.values_mut() {
            if j.spec.mesh == hash && j.ctx.is_none() {
                j.ctx = JobContext::new(mesh.clone(), index.clone(), j.spec.clone()).ok();
            }
        }
        let waiters = self.meshes.pending.remove(&hash).map(|f| f.waiters);
        for l in waiters.unwrap_or_default() {
            self.send_mesh(now, l, mesh.clone());
        }
        self.evict_meshes();
    }

    /// Keeps the mesh cache within its byte budget.
    pub(super) fn evict_meshes(&mut self) {
        let in_use: HashSet<MeshHash> = self.jobs.values().map(|j| j.spec.mesh).collect();
        self.meshes.evict(self.s.mesh_cache_bytes, &in_use);
    }
}
