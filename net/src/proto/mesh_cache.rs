//! The mesh cache and mesh fetching (ARCHITECTURE.md §4.7): meshes by hash, fetched only
//! from a job's parent, sent at most once down a link, LRU by bytes, never evicting a mesh a
//! live job uses.

use super::{Action, LinkId, Node};
use millpond_core::job::JobContext;
use millpond_core::mesh::{CANONICAL_TRIANGLE_BYTES, MeshHash};
use millpond_core::{Mesh, TriangleIndex};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tracing::debug;

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

/// Meshes kept, and the ones being fetched or indexed with the links waiting for them.
#[derive(Default)]
pub(super) struct MeshCache {
    meshes: BTreeMap<MeshHash, CachedMesh>,
    pending: HashMap<MeshHash, Vec<LinkId>>,
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

    /// Whether the mesh must be asked for: not already being fetched (the caller knows it is
    /// not cached). Marks it as being fetched.
    pub fn start_fetch(&mut self, hash: MeshHash) -> bool {
        if self.pending.contains_key(&hash) {
            return false;
        }
        self.pending.insert(hash, Vec::new());
        true
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
    /// A child asks for a mesh: sent now if cached, on arrival if it is being fetched.
    pub(super) fn on_fetch_mesh(&mut self, now: Instant, link: LinkId, hash: MeshHash) {
        if let Some((mesh, _)) = self.meshes.get(hash, now) {
            self.send_mesh(link, mesh);
        } else if let Some(waiters) = self.meshes.pending.get_mut(&hash) {
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
        self.out.push(Action::SendMesh { link, mesh });
    }

    /// A mesh came on a bulk stream: indexed off the loop if it was asked for.
    pub(super) fn on_mesh_arrived(&mut self, link: LinkId, mesh: Box<Mesh>) {
        if let Some(l) = self.links.get_mut(&link) {
            l.meshes_in += 1;
        }
        if !self.meshes.pending.contains_key(&mesh.hash()) {
            return; // not asked for
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
        for l in self.meshes.pending.remove(&hash).unwrap_or_default() {
            self.send_mesh(l, mesh.clone());
        }
        self.evict_meshes();
    }

    /// Keeps the mesh cache within its byte budget.
    pub(super) fn evict_meshes(&mut self) {
        let in_use: HashSet<MeshHash> = self.jobs.values().map(|j| j.spec.mesh).collect();
        self.meshes.evict(self.s.mesh_cache_bytes, &in_use);
    }
}
