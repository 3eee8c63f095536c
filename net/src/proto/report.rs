//! The statistics snapshot (ARCHITECTURE.md §4.8) that `Pool::stats` hands out, built each
//! tick from the node's state and the transport figures the shell passed in.

use super::Node;
use super::members::gone_after;
use crate::stats::{HostState, HostStats, JobStats, PoolStats, RemoteStatus, WorkerStats};
use crate::wire::{self, NodeId};
use std::collections::HashSet;
use std::time::Instant;

impl Node {
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

    /// Chunks `node`'s workers computed of the results received here, and their average
    /// compute time: the history a member's row keeps after its link is gone.
    fn computed_by(&self, node: NodeId) -> (u64, f64) {
        let all = self
            .remote_workers
            .get(&node)
            .into_iter()
            .flat_map(|s| s.values());
        let (chunks, seconds) =
            all.fold((0, 0.0), |(c, s), w| (c + w.chunks_done, s + w.compute_s));
        (
            chunks,
            if chunks == 0 {
                0.0
            } else {
                seconds / chunks as f64
            },
        )
    }

    /// The statistics as of `now`.
    pub(super) fn snapshot(&self, now: Instant) -> PoolStats {
        let since = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
        let chunks_here: u64 = self.worker_slots.iter().map(|w| w.chunks_done).sum();
        let compute_s_here: f64 = self.worker_slots.iter().map(|w| w.compute_s).sum();
        let mut hosts = vec![HostStats {
            node: self.s.id.0,
            name: self.s.name.clone(),
            address: self.s.address.clone(),
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
            let n = l.chunks_done.max(1) as f64;
            hosts.push(HostStats {
                node: l.peer.0,
                name: l.name.clone(),
                address: Some(l.address.clone()),
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
                bytes_in: l.transport.bytes_in,
                bytes_out: l.transport.bytes_out,
                rtt_ms: l.transport.rtt_ms,
                last_heard_s: since(l.last_heard),
                meshes_in: l.meshes_in,
                meshes_out: l.meshes_out,
                worker_stats: self.remote_worker_stats(l.peer, l.workers, &l.busy),
                workers_busy_known: true,
                ..HostStats::default()
            });
        }
        let linked: HashSet<NodeId> = self.links.values().map(|l| l.peer).collect();
        for (id, m) in &self.members {
            if linked.contains(id) {
                continue;
            }
            let (chunks_done, avg_compute_s) = self.computed_by(*id);
            hosts.push(HostStats {
                node: id.0,
                name: m.name.clone(),
                hops: m.hops,
                workers: m.workers,
                load: m.load,
                // Gone when its link was lost, or when gossip stopped mentioning it (it left
                // through another member, or was killed).
                state: if m.hops == u8::MAX || since(m.heard) > gone_after(m.hops).as_secs_f64() {
                    HostState::Lost
                } else if m.load > 0 {
                    HostState::Busy
                } else {
                    HostState::Idle
                },
                last_heard_s: since(m.heard),
                chunks_done,
                avg_compute_s,
                worker_stats: self.remote_worker_stats(*id, m.workers, &m.busy),
                workers_busy_known: m.hops != u8::MAX,
                ..HostStats::default()
            });
        }
        // Nodes whose results arrived here but that are neither linked nor known by gossip
        // (gossip not yet heard, or forgotten): a row of their own, named by id, one link
        // beyond the peer their results came through, gone once no result came for as long
        // as gossip would have taken to mention it (a restarted helper is a new node: its old
        // self stays only as the history of what it computed).
        for (id, slots) in &self.remote_workers {
            if linked.contains(id) || self.members.contains_key(id) {
                continue;
            }
            let via = self.remote_via.get(id);
            let hops = via
                .and_then(|(p, _)| self.members.get(p))
                .map_or(1, |m| m.hops)
                .saturating_add(1);
            let heard_s = via.map_or(f64::INFINITY, |(_, t)| since(*t));
            let (chunks_done, avg_compute_s) = self.computed_by(*id);
            hosts.push(HostStats {
                node: id.0,
                name: format!("node {:016x}", id.0),
                hops,
                workers: slots.len() as u32,
                // Reached through a link that is gone, or silent too long: gone.
                state: if via.is_none_or(|(p, _)| !linked.contains(p))
                    || heard_s > gone_after(hops).as_secs_f64()
                {
                    HostState::Lost
                } else {
                    HostState::Idle
                },
                last_heard_s: heard_s,
                chunks_done,
                avg_compute_s,
                worker_stats: self.remote_worker_stats(*id, 0, &[]),
                ..HostStats::default()
            });
        }
        // Peers caught lying: named on their row (one of their own if they have none left).
        for (id, c) in &self.culprits {
            match hosts.iter_mut().find(|h| h.node == id.0) {
                Some(h) => {
                    h.wrong_results = c.wrong;
                    h.discarded_results = c.discarded;
                    if h.address.is_none() {
                        h.address.clone_from(&c.address);
                    }
                }
                None => hosts.push(HostStats {
                    node: id.0,
                    name: c.name.clone(),
                    address: c.address.clone(),
                    hops: 1,
                    state: HostState::Lost,
                    last_heard_s: f64::INFINITY,
                    wrong_results: c.wrong,
                    discarded_results: c.discarded,
                    ..HostStats::default()
                }),
            }
        }
        let jobs = self
            .jobs
            .iter()
            .filter(|(_, j)| j.parent.is_none())
            .map(|(id, j)| JobStats {
                id: id.to_string(),
                progress: j.progress(now),
            })
            .collect();
        let remotes = self
            .remotes
            .iter()
            .filter(|r| !r.retired())
            .map(|r| RemoteStatus {
                address: r.address.clone(),
                state: r.state,
                last_error: r.last_error.clone(),
                discovered: r.found.is_some(),
            })
            .collect();
        PoolStats {
            node: self.s.id.0,
            name: self.s.name.clone(),
            hosts,
            jobs,
            remotes,
            notices: self.notices.iter().cloned().collect(),
            // Kept by the shell's accept loop (`admission.rs`), filled in by `Pool::stats`.
            newcomers: Default::default(),
            // Kept by the shell's discovery task, filled in by `Pool::stats`.
            discovery: None,
        }
    }
}
