//! Membership gossip (ARCHITECTURE.md §4.8): who is in the pool, how far, how busy. It feeds
//! the statistics only, never correctness.

use super::{LinkId, Node};
use crate::wire::{self, MAX_HOPS, MemberInfo, Msg, NodeId};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const GOSSIP_EVERY: Duration = Duration::from_secs(2);
/// Shortest time between two extra gossips of this node's own busy workers, sent to the
/// neighbours when they change so that the statistics panel follows within a fraction of a
/// second (a few tiny frames a second at most; what is relayed further waits for the next
/// full gossip).
const BUSY_GOSSIP_EVERY: Duration = Duration::from_millis(250);
/// Bytes of a gossip frame's member list, leaving room under `wire::MAX_FRAME`.
const GOSSIP_BUDGET: usize = wire::MAX_FRAME * 3 / 4;
/// A member heard of through a longer path replaces a shorter one only after this silence.
const STALE_PATH: Duration = Duration::from_secs(10);
/// How long a member `hops` links away may go unheard before it counts as gone: gossip
/// comes every `GOSSIP_EVERY` over each link, so news of a member that far away may be up to
/// `hops` gossip periods old when it arrives; two more periods of silence mean it left.
pub(super) fn gone_after(hops: u8) -> Duration {
    GOSSIP_EVERY * (u32::from(hops.min(MAX_HOPS)) + 2)
}

/// Members unheard for this long are forgotten (direct links stay).
const FORGET_AFTER: Duration = Duration::from_secs(30);
/// Members known at once. A workshop pool is tens of machines, the simulated one 100; a
/// gossip carries at most `wire::MAX_MEMBERS` (256), each entry at most 4096 workers' bits.
pub const MAX_KNOWN_MEMBERS: usize = 1024;

/// A pool member as gossip describes it.
pub(super) struct Member {
    pub name: String,
    /// Links away; `u8::MAX` when the direct link to it was lost.
    pub hops: u8,
    pub workers: u32,
    pub load: u32,
    pub busy: Vec<u64>,
    pub heard: Instant,
}

impl Member {
    /// A newly linked peer, all workers idle.
    pub fn direct(name: String, workers: u32, now: Instant) -> Self {
        Self {
            name,
            hops: 1,
            workers,
            load: 0,
            busy: idle(workers),
            heard: now,
        }
    }
}

/// The busy bitmap of `workers` idle workers.
pub(super) fn idle(workers: u32) -> Vec<u64> {
    vec![0; workers.min(wire::MAX_WORKERS).div_ceil(64) as usize]
}

impl Node {
    /// Which of this node's workers are busy, as gossip carries it.
    pub(super) fn busy_bitmap(&self) -> Vec<u64> {
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

    /// Sends `link` this node and what it knows within `MAX_HOPS`, in one frame.
    pub(super) fn gossip_to(&mut self, now: Instant, link: LinkId) {
        let mut list = vec![self.me()];
        // Bitmaps make entries up to ~700 bytes: stay within one frame whatever the pool.
        let size = |m: &MemberInfo| 40 + m.name.len() + 10 * m.busy.len();
        let mut bytes = size(&list[0]);
        let peer = self.links.get(&link).map(|l| l.peer);
        for (id, m) in &self.members {
            if Some(*id) == peer || m.hops >= MAX_HOPS || list.len() >= wire::MAX_MEMBERS {
                continue;
            }
            let age = now.saturating_duration_since(m.heard).as_millis();
            let info = MemberInfo {
                node: *id,
                name: m.name.clone(),
                hops: m.hops,
                workers: m.workers,
                load: m.load,
                busy: m.busy.clone(),
                age_ms: age.min(u32::MAX as u128) as u32,
            };
            bytes += size(&info);
            if bytes > GOSSIP_BUDGET {
                break;
            }
            list.push(info);
        }
        self.send(link, Msg::Members(list));
    }

    /// Every tick: the full gossip every `GOSSIP_EVERY` (and forgetting the silent), else
    /// this node's busy workers if they changed.
    pub(super) fn gossip_tick(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_gossip) >= GOSSIP_EVERY {
            self.last_gossip = now;
            let links: Vec<LinkId> = self.links.keys().copied().collect();
            for l in links {
                self.gossip_to(now, l);
            }
            // A neighbour is kept while its link is up; anything else, a member claimed one
            // hop away by a peer included, is forgotten once nobody has spoken of it lately.
            let linked: BTreeSet<NodeId> = self.links.values().map(|l| l.peer).collect();
            self.members.retain(|id, m| {
                now.saturating_duration_since(m.heard) < FORGET_AFTER || linked.contains(id)
            });
            self.busy_gossiped = (self.busy_bitmap(), now);
        } else {
            self.gossip_busy(now);
        }
    }

    /// Tells the neighbours at once when this node's busy workers changed (at most every
    /// `BUSY_GOSSIP_EVERY`); the full gossip follows on its own schedule.
    fn gossip_busy(&mut self, now: Instant) {
        let busy = self.busy_bitmap();
        if busy == self.busy_gossiped.0
            || now.saturating_duration_since(self.busy_gossiped.1) < BUSY_GOSSIP_EVERY
        {
            return;
        }
        let msg = Msg::Members(vec![self.me()]);
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for l in links {
            self.send(l, msg.clone());
        }
        self.busy_gossiped = (busy, now);
    }

    /// Whether a member newly heard of, `hops` away, may be added: below
    /// [`MAX_KNOWN_MEMBERS`] always; at the cap only in place of the farthest member not
    /// linked here (the least recently heard of those), when the new one is nearer. A peer
    /// inventing members cannot grow the table past the cap, nor push out the near ones.
    /// `farthest` holds the candidates, farthest last, made at the first need: a gossip of
    /// 256 members at the cap sorts the table once, not once per member.
    pub(super) fn room_for_member(
        &mut self,
        hops: u8,
        farthest: &mut Option<Vec<(u8, std::cmp::Reverse<Instant>, NodeId)>>,
    ) -> bool {
        if self.members.len() < MAX_KNOWN_MEMBERS {
            return true;
        }
        let list = farthest.get_or_insert_with(|| {
            let linked: BTreeSet<NodeId> = self.links.values().map(|l| l.peer).collect();
            let mut v: Vec<_> = self
                .members
                .iter()
                .filter(|(id, _)| !linked.contains(id))
                .map(|(id, m)| (m.hops, std::cmp::Reverse(m.heard), *id))
                .collect();
            v.sort_unstable();
            v
        });
        match list.last() {
            Some(&(far, _, id)) if hops < far => {
                list.pop();
                self.members.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// A gossip list from `link`: the peer's own entry updates the link, the others the
    /// members (a shorter path wins, or any path once the known one went quiet).
    pub(super) fn on_members(&mut self, now: Instant, link: LinkId, list: Vec<MemberInfo>) {
        // Workers behind the link: the whole list of a full gossip; a list of the peer alone
        // (its busy workers changed) says nothing of the others.
        let workers: u32 = list
            .iter()
            .filter(|m| m.node != self.s.id)
            .fold(0u32, |n, m| n.saturating_add(m.workers));
        if let Some(l) = self.links.get_mut(&link) {
            let was = l.behind;
            l.behind = if list.len() > 1 {
                workers
            } else {
                l.behind.max(workers)
            };
            // More or fewer workers behind a link change what it may hold of every job.
            if l.behind != was {
                self.sweep = super::schedule::Sweep::All;
            }
        }
        let mut farthest = None;
        for mut m in list {
            if m.node == self.s.id {
                continue;
            }
            // Names reach the statistics, the logs and the next gossip: cleaned here.
            m.name = wire::sanitize(&m.name, wire::MAX_NAME);
            let hops = m.hops.saturating_add(1);
            if let Some(l) = self.links.get_mut(&link)
                && m.node == l.peer
            {
                l.load = m.load;
                l.workers = m.workers;
                l.busy = m.busy.clone();
            }
            if !self.members.contains_key(&m.node) && !self.room_for_member(hops, &mut farthest) {
                continue;
            }
            let e = self.members.entry(m.node).or_insert(Member {
                name: m.name.clone(),
                hops,
                workers: m.workers,
                load: m.load,
                busy: m.busy.clone(),
                heard: now,
            });
            let heard = now
                .checked_sub(Duration::from_millis(u64::from(m.age_ms)))
                .unwrap_or(now);
            // A member whose link here was lost comes back only on news heard since: a
            // neighbour that last heard it before it died (it has not noticed yet) would
            // otherwise bring a killed member back to life here for seconds.
            let stale = e.hops == u8::MAX && heard <= e.heard;
            if !stale && (hops <= e.hops || now.saturating_duration_since(e.heard) > STALE_PATH) {
                e.hops = hops;
                e.name = m.name;
                e.workers = m.workers;
                e.load = m.load;
                e.busy = m.busy;
                e.heard = heard;
            }
        }
    }
}
