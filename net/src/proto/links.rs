//! A link's life as the protocol sees it (ARCHITECTURE.md §4.4): up — a link to itself or a
//! second link to the same peer refused, the newcomer told of the jobs it can help with and
//! gossiped to — and down — the jobs it was the parent of ended here and below, the chunks
//! granted down it re-queued, the user told.

use super::members::{self, Member};
use super::{Action, Link, LinkId, LinkStats, LinkUp, MAX_LINKS, Node, close};
use crate::stats::RemoteState;
use crate::wire::{JobId, MAX_HOPS, Msg};
use millpond_core::JobSpec;
use std::collections::HashMap;
use std::time::Instant;
use tracing::{debug, info, warn};

impl Node {
    pub(super) fn link_up(&mut self, now: Instant, up: LinkUp) {
        let LinkUp {
            link,
            peer,
            name,
            workers,
            remote,
            address,
        } = up;
        let refuse = |reason: &str| Action::Close {
            link,
            code: close::DUPLICATE,
            reason: reason.into(),
        };
        if peer == self.s.id {
            self.out.push(refuse("connected to itself"));
            if let Some(r) = remote.and_then(|r| self.remotes.get_mut(r)) {
                r.is_self(now);
            }
            return;
        }
        if let Some((&existing, _)) = self.links.iter().find(|(_, l)| l.peer == peer) {
            // Both sides dialled each other: keep one link.
            self.out.push(refuse("already linked"));
            self.remote_connected(now, remote, existing);
            return;
        }
        if self.links.len() >= MAX_LINKS {
            warn!("refused {name} ({address}): already {MAX_LINKS} links");
            let reason = format!("this member has all the links it takes ({MAX_LINKS})");
            if let Some(r) = remote.and_then(|r| self.remotes.get_mut(r)) {
                r.failed(now, RemoteState::Unreachable, reason.clone());
            }
            self.out.push(Action::Close {
                link,
                code: close::FULL,
                reason,
            });
            return;
        }
        info!("linked to {name} ({address}) with {workers} workers");
        self.out.push(Action::Open { link });
        self.remote_connected(now, remote, link);
        if !self.members.contains_key(&peer) {
            // A neighbour always gets in, in place of the farthest member if the table is
            // full (false only when every member is a neighbour: links have their own bound).
            let _ = self.room_for_member(1, &mut None);
        }
        self.members
            .insert(peer, Member::direct(name.clone(), workers, now));
        self.links.insert(
            link,
            Link {
                peer,
                name,
                address,
                workers,
                load: 0,
                busy: members::idle(workers),
                last_heard: now,
                chunks_done: 0,
                compute_s: 0.0,
                transfer_s: 0.0,
                meshes_in: 0,
                meshes_out: 0,
                meshes_sent: HashMap::new(),
                meshes_asked: Default::default(),
                meshes_incoming: Default::default(),
                results_incoming: Default::default(),
                transport: LinkStats {
                    link,
                    ..LinkStats::default()
                },
                behind: workers,
            },
        );
        // Tell the newcomer about jobs it can help with.
        let announce: Vec<(JobId, JobSpec)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.parent != Some(link))
            .map(|(k, j)| (*k, j.spec.clone()))
            .collect();
        for (job, spec) in announce {
            if let Some(j) = self.jobs.get_mut(&job) {
                j.children.insert(link);
            }
            let hops_left = MAX_HOPS - 1;
            self.send(
                link,
                Msg::Announce {
                    job,
                    spec: Box::new(spec),
                    hops_left,
                },
            );
        }
        self.gossip_to(now, link);
    }

    /// A configured remote server is linked (by this link, or one it dialled us on).
    fn remote_connected(&mut self, now: Instant, remote: Option<usize>, link: LinkId) {
        if let Some(r) = remote.and_then(|r| self.remotes.get_mut(r)) {
            r.connected(now, link);
        }
    }

    pub(super) fn link_down(&mut self, now: Instant, link: LinkId, reason: &str) {
        // Jobs it was parent or child of change: every job is looked at after this input.
        self.sweep = super::schedule::Sweep::All;
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        info!("link to {} lost: {reason}", l.name);
        // Every remote this link served: the one it was dialled for, and one whose own dial
        // found the peer linked already (both sides dialled, or the peer dialled first).
        for r in self.remotes.iter_mut().filter(|r| r.link() == Some(link)) {
            r.lost(now, reason);
        }
        if let Some(m) = self.members.get_mut(&l.peer) {
            // Lost as of now: gossip about it older than this cannot bring it back
            // (`on_members`).
            m.hops = u8::MAX;
            m.heard = now;
        }
        let mut requeued = 0;
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
            requeued += j.link_lost(link);
        }
        self.mesh_link_lost(now, link);
        self.notice(if requeued > 0 {
            format!(
                "{} lost ({reason}): {requeued} of its chunks re-queued",
                l.name
            )
        } else {
            format!("{} lost ({reason})", l.name)
        });
    }
}
