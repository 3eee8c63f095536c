//! Verified results (ARCHITECTURE.md §4.6): the owner recomputes a random sample of the
//! chunks peers send and compares bits, compares backup copies when both arrive, and throws
//! out everything a peer caught lying delivered.
//!
//! **Roll back, not hold.** A result from a peer is taken into the job's results as it comes
//! (counted, previewed), with the link it came by (`JobState::delivered`). The owner samples
//! results for recomputation on its own workers (`JobState::checks`, ahead of its queue): the
//! first result of each link in each job, then each later one with probability
//! `NodeSettings::verify`. A result differing from the owner's own bits, or a copy differing
//! from another, convicts the peer: its links are closed, every result it delivered for any
//! job owned here is taken out again and its chunks re-queued, and it is never granted work
//! by this node again. Holding a peer's results until "its sample is checked" cannot be
//! correct with sampling that goes on as results come: a sample drawn later can convict a
//! peer whose earlier results were already let through, so rolling back is needed anyway.
//! What makes it correct is that assembly waits for every outstanding check
//! (`Node::finish_if_complete`): no result of a peer found lying before the end reaches the
//! output. Bits can be compared because a chunk is a pure function of (mesh, spec, chunk)
//! (§5); only which chunks are checked is random, never the output. The preview may have
//! drawn results that were later taken out; the assembled job never holds them.

use super::{LinkId, Node, close, keys_where};
use crate::splitmix::SplitMix64;
use crate::wire::{JobId, NodeId};
use millpond_core::job::ChunkResult;
use std::sync::Arc;
use std::time::Instant;
use tracing::warn;

/// Which link delivered a result, the peer on it, and the node that computed it as the
/// result's header says (the peer itself, or one below it if it is a relay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Delivery {
    pub link: LinkId,
    pub peer: NodeId,
    pub by: NodeId,
}

/// A remote result waiting for the owner's own computation of its chunk.
pub(super) struct Check {
    pub from: Delivery,
    pub result: Arc<ChunkResult>,
}

/// A peer caught returning a wrong result, for the statistics.
#[derive(Clone, Debug, Default)]
pub(super) struct Culprit {
    pub name: String,
    pub address: Option<String>,
    /// Results found wrong (a check or a copy that differed).
    pub wrong: u64,
    /// Results it had delivered that were taken out again.
    pub discarded: u64,
}

/// Seeded draws for sampling: which chunks are checked is unpredictable to a peer (the
/// seed is drawn at start from the OS), yet the same inputs give the same actions (the
/// simulator replays a run). SplitMix64.
#[derive(Clone, Debug, Default)]
pub(super) struct Sampler(SplitMix64);

impl Sampler {
    /// The draws for job `job` of a node seeded `seed`.
    pub fn new(seed: u64, job: JobId) -> Self {
        let nonce = job.nonce as u64 ^ (job.nonce >> 64) as u64;
        let mut s = SplitMix64::new(seed ^ job.owner.0.rotate_left(17) ^ nonce);
        s.next_u64();
        Self(s)
    }

    /// True with probability `fraction` (0 never, 1 always).
    pub fn draw(&mut self, fraction: f64) -> bool {
        self.0.next_f64() < fraction
    }
}

/// Whether two results are the same bits: their encodings are compared, so that -0.0 and 0.0
/// differ (`PartialEq` on floats would take them as equal).
pub(super) fn same_bits(a: &ChunkResult, b: &ChunkResult) -> bool {
    match (postcard::to_stdvec(a), postcard::to_stdvec(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl Node {
    /// A remote result was just taken into job `id`'s results: check it if it is sampled.
    pub(super) fn sample(&mut self, id: JobId, chunk: u32, from: Delivery, r: &Arc<ChunkResult>) {
        let fraction = self.s.verify;
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if fraction <= 0.0 {
            return;
        }
        // At least one per computing node in each job, so that a liar behind an honest relay
        // is checked at its first result as surely as one linked here.
        let first = j.sampled.insert((from.link, from.by));
        if first || j.sampler.draw(fraction) {
            j.checks.entry(chunk).or_default().push(Check {
                from,
                result: Arc::clone(r),
            });
            j.check_queue.push_back(chunk);
        }
    }

    /// Two copies of chunk `chunk` of job `id` differ: the one this node computed is the
    /// truth; two from peers are settled by computing it here (both become checks).
    pub(super) fn copies_differ(
        &mut self,
        now: Instant,
        id: JobId,
        chunk: u32,
        earlier: Option<Delivery>,
        later: Option<Delivery>,
        later_result: Arc<ChunkResult>,
    ) {
        match (earlier, later) {
            (Some(peer), None) | (None, Some(peer)) => self.convict(now, peer, id, chunk),
            (Some(a), Some(b)) if a.peer == b.peer => self.convict(now, a, id, chunk),
            (Some(a), Some(b)) => {
                let Some(j) = self.jobs.get_mut(&id) else {
                    return;
                };
                let Some(kept) = j.results.get(&chunk).cloned() else {
                    return;
                };
                let checks = j.checks.entry(chunk).or_default();
                checks.push(Check {
                    from: a,
                    result: kept,
                });
                checks.push(Check {
                    from: b,
                    result: later_result,
                });
                j.check_queue.push_front(chunk);
            }
            (None, None) => {
                warn!("job {id}: two computations of chunk {chunk} here differ (a determinism bug)")
            }
        }
    }

    /// This node computed chunk `chunk` of job `id` (`mine`): every result waiting for it is
    /// compared, and their peers convicted if they differ.
    pub(super) fn check_against(
        &mut self,
        now: Instant,
        id: JobId,
        chunk: u32,
        mine: &ChunkResult,
    ) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(checks) = j.checks.remove(&chunk) else {
            return;
        };
        for c in checks {
            if !same_bits(&c.result, mine) {
                self.convict(now, c.from, id, chunk);
            }
        }
    }

    /// `from`'s peer returned a wrong result for chunk `chunk` of job `id`: its links close,
    /// everything it delivered to jobs owned here is taken out and re-queued, and it gets no
    /// more work from this node. Said once in a notice that names it.
    pub(super) fn convict(&mut self, now: Instant, from: Delivery, id: JobId, chunk: u32) {
        let peer = from.peer;
        let link = self.links.get(&from.link).filter(|l| l.peer == peer);
        let name = link
            .map(|l| l.name.clone())
            .or_else(|| self.members.get(&peer).map(|m| m.name.clone()))
            .unwrap_or_else(|| format!("node {:016x}", peer.0));
        let address = link.map(|l| l.address.clone());
        let mut discarded = 0u64;
        for j in self.jobs.values_mut().filter(|j| j.parent.is_none()) {
            discarded += u64::from(j.discard_from(peer));
        }
        let culprit = self.culprits.entry(peer).or_default();
        culprit.name.clone_from(&name);
        if address.is_some() {
            culprit.address.clone_from(&address);
        }
        culprit.wrong += 1;
        culprit.discarded += discarded;
        let at = address.map_or_else(String::new, |a| format!(" ({a})"));
        // Through a relay: who computed it, as the relay says (the relay is what is cut off:
        // this node cannot tell a lying relay from a lying node below it).
        let below = if from.by == peer {
            String::new()
        } else {
            let by = self
                .members
                .get(&from.by)
                .map_or_else(|| format!("node {:016x}", from.by.0), |m| m.name.clone());
            format!(" (computed by {by}, it says)")
        };
        self.notice(format!(
            "{name}{at} returned a wrong result for chunk {chunk} of job {id}{below}: link \
             dropped, {discarded} of its results discarded and recomputed"
        ));
        warn!("{name}{at} returned a wrong result for chunk {chunk} of job {id}{below}");
        let links = keys_where(&self.links, |l| l.peer == peer);
        let reason = format!("returned a wrong result for chunk {chunk} of job {id}");
        for l in links {
            self.close_link(now, l, close::PROTOCOL_VIOLATION, &reason);
        }
    }

    /// Whether `peer` was caught returning a wrong result: it gets no work from here.
    pub(super) fn distrusted(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| self.culprits.contains_key(&l.peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millpond_core::job::ChunkData;

    #[test]
    fn sampling_draws_about_the_fraction_and_bits_are_compared_exactly() {
        let job = JobId {
            owner: NodeId(5),
            nonce: 1,
        };
        let mut s = Sampler::new(42, job);
        let hits = (0..100_000).filter(|_| s.draw(0.03)).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| !s.draw(0.0)));
        assert!((0..1000).all(|_| s.draw(1.0)));
        // Another job draws otherwise; the same seed and job the same.
        let other = JobId { nonce: 2, ..job };
        let a: Vec<bool> = {
            let mut s = Sampler::new(42, job);
            (0..64).map(|_| s.draw(0.5)).collect()
        };
        let b: Vec<bool> = {
            let mut s = Sampler::new(42, other);
            (0..64).map(|_| s.draw(0.5)).collect()
        };
        let again: Vec<bool> = {
            let mut s = Sampler::new(42, job);
            (0..64).map(|_| s.draw(0.5)).collect()
        };
        assert_ne!(a, b);
        assert_eq!(a, again);
        let r = |z: f64| ChunkResult {
            chunk: 0,
            data: ChunkData::Heights(vec![1.0, z]),
        };
        assert!(same_bits(&r(2.0), &r(2.0)));
        assert!(!same_bits(&r(2.0), &r(3.0)));
        assert!(
            !same_bits(&r(0.0), &r(-0.0)),
            "PartialEq would take these as equal"
        );
    }
}
