//! Random valid messages into the protocol core (issue 17, point 8): whatever peers send,
//! well-formed but arbitrary, the core never panics and its state stays within its caps.

use super::jobs::MAX_SEEN;
use super::members::MAX_KNOWN_MEMBERS;
use super::tests::{link_up, model, node, submit};
use super::*;
use crate::sim::rng::Rng;
use crate::wire::MemberInfo;
use millpond_core::job::JobContext;
use millpond_core::mesh::MeshHash;

/// Links the fuzzed node has; a closed one comes back up as a new peer.
const LINKS: u64 = 4;

fn job_id(rng: &mut Rng, owners: &[u64]) -> JobId {
    JobId {
        owner: NodeId(owners[rng.below(owners.len())]),
        // Few distinct ids half the time, so that messages meet jobs that exist.
        nonce: if rng.chance(50) {
            u128::from(rng.range(0, 8))
        } else {
            u128::from(rng.next()) << 64 | u128::from(rng.next())
        },
    }
}

fn random_msg(rng: &mut Rng, spec: &JobSpec, owners: &[u64], known: &[JobId]) -> Msg {
    let job = if !known.is_empty() && rng.chance(40) {
        known[rng.below(known.len())]
    } else {
        job_id(rng, owners)
    };
    let chunk = rng.range(0, 6) as u32;
    match rng.below(9) {
        0 | 1 => Msg::Announce {
            job,
            spec: Box::new(spec.clone()),
            hops_left: rng.range(0, 9) as u8,
        },
        2 => Msg::Steal {
            job,
            want: rng.range(0, 2000) as u32,
        },
        3 => Msg::Grant {
            job,
            chunks: (0..rng.range(0, 5))
                .map(|_| rng.range(0, 6) as u32)
                .collect(),
        },
        4 => Msg::NoWork { job },
        5 => Msg::Cancel { job },
        6 => Msg::Failed {
            job,
            chunk,
            reason: "panicked: \u{1b}[31mboom\n".into(),
        },
        7 => {
            let hash = MeshHash([rng.range(0, 3) as u8; 32]);
            if rng.chance(50) {
                Msg::FetchMesh { hash }
            } else {
                Msg::NoMesh { hash }
            }
        }
        _ => Msg::Members(
            (0..rng.range(1, 60))
                .map(|_| {
                    let workers = rng.range(0, 4097) as u32;
                    MemberInfo {
                        node: NodeId(rng.next()),
                        name: "m\u{7}".into(),
                        hops: rng.range(0, 9) as u8,
                        workers,
                        load: rng.range(0, 5000) as u32,
                        busy: vec![rng.next(); workers.div_ceil(64) as usize],
                        age_ms: rng.range(0, 60_000) as u32,
                    }
                })
                .collect(),
        ),
    }
}

#[test]
fn random_valid_messages_never_panic_the_core_and_its_state_stays_within_its_caps() {
    let t0 = Instant::now();
    let mut rng = Rng::new(0x5eed_f00d);
    let mut n = node(1, 2, t0);
    let (mesh, index, spec) = model();
    let mut peers: Vec<u64> = (0..LINKS).map(|l| 100 + l).collect();
    for (l, &p) in peers.iter().enumerate() {
        link_up(&mut n, t0, l as LinkId, p);
    }
    // A job of its own, so that grants, results and steals meet a real one.
    let ctx = JobContext::new(mesh, index, spec.clone()).unwrap();
    n.handle(t0, submit(ctx));
    let mut now = t0;
    let (mut messages, mut closed, mut most_jobs, mut most_members) = (0, 0, 0, 0);
    while messages < 100_000 {
        let known: Vec<JobId> = n.jobs.keys().copied().collect();
        let link = rng.range(0, LINKS) as LinkId;
        let owners = [1, peers[link as usize], 7, rng.next()];
        let m = random_msg(&mut rng, &spec, &owners, &known);
        let actions = n.handle(now, Input::Msg { link, msg: m });
        messages += 1;
        for a in &actions {
            if let Action::Close { link, .. } = a {
                // The shell drops a closed link; the peer comes back as another member.
                n.handle(
                    now,
                    Input::LinkDown {
                        link: *link,
                        reason: "closed".into(),
                    },
                );
                closed += 1;
                peers[*link as usize] = 1000 + closed;
                link_up(&mut n, now, *link, peers[*link as usize]);
            }
        }
        if rng.chance(2) {
            now += TICK;
            n.handle(now, Input::Tick { links: Vec::new() });
        }
        most_jobs = most_jobs.max(n.jobs.len());
        most_members = most_members.max(n.members.len());
        assert!(n.jobs.len() <= MAX_JOBS, "{} jobs", n.jobs.len());
        for l in 0..LINKS as LinkId {
            let from = n.jobs.values().filter(|j| j.parent == Some(l)).count();
            assert!(from <= MAX_JOBS_PER_LINK, "link {l}: {from} jobs");
        }
        // Gossip adds at most the cap; a peer linked here is a member too (links have their
        // own bound, `admission`).
        let bound = MAX_KNOWN_MEMBERS + LINKS as usize;
        assert!(n.members.len() <= bound, "{}", n.members.len());
        assert!(n.seen.len() <= MAX_SEEN);
    }
    eprintln!(
        "{messages} random messages: {closed} links closed for violations, at most {most_jobs} \
         jobs and {most_members} members, {} job ids remembered",
        n.seen.len()
    );
    // The caps were reached, so the test shows them holding, not an idle core.
    assert!(most_members >= MAX_KNOWN_MEMBERS, "{most_members}");
    // Silent invented members are forgotten; the linked ones stay.
    let later = now + Duration::from_secs(120);
    n.handle(later, Input::Tick { links: Vec::new() });
    assert!(n.members.len() <= LINKS as usize, "{}", n.members.len());
}

#[test]
fn a_peer_announcing_job_after_job_fills_its_own_share_and_others_still_get_in() {
    let t0 = Instant::now();
    let mut n = node(1, 2, t0);
    let (_, _, spec) = model();
    link_up(&mut n, t0, 0, 50);
    link_up(&mut n, t0, 1, 51);
    let announce = |n: &mut Node, link: LinkId, nonce: u128| {
        let job = JobId {
            owner: NodeId(77),
            nonce,
        };
        let spec = Box::new(spec.clone());
        n.handle(
            t0,
            Input::Msg {
                link,
                msg: Msg::Announce {
                    job,
                    spec,
                    hops_left: 0,
                },
            },
        );
        job
    };
    for k in 0..(MAX_JOBS_PER_LINK as u128 + 100) {
        announce(&mut n, 0, k);
    }
    let from = |n: &Node, l| n.jobs.values().filter(|j| j.parent == Some(l)).count();
    assert_eq!(from(&n, 0), MAX_JOBS_PER_LINK);
    // The ids turned away are not remembered: each can still come in later.
    assert_eq!(n.seen.len(), MAX_JOBS_PER_LINK);
    // An honest job by the other link gets in.
    let honest = announce(&mut n, 1, 1 << 100);
    assert_eq!(n.jobs[&honest].parent, Some(1));
    // Once the flooder's jobs are over, its next ones are taken up again.
    let first = JobId {
        owner: NodeId(77),
        nonce: 0,
    };
    n.handle(
        t0,
        Input::Msg {
            link: 0,
            msg: Msg::Cancel { job: first },
        },
    );
    let late = announce(&mut n, 0, MAX_JOBS_PER_LINK as u128 + 1);
    assert!(n.jobs.contains_key(&late));
}

#[test]
fn the_job_ids_remembered_are_the_newest_and_bounded() {
    let mut seen = super::jobs::SeenJobs::default();
    let id = |k: u64| JobId {
        owner: NodeId(9),
        nonce: u128::from(k),
    };
    for k in 0..MAX_SEEN as u64 + 10 {
        assert!(seen.insert(id(k)));
    }
    assert_eq!(seen.len(), MAX_SEEN);
    assert!(!seen.contains(id(9)), "the oldest are forgotten");
    assert!(seen.contains(id(10)));
    assert!(!seen.insert(id(MAX_SEEN as u64)), "a recent one is known");
}
