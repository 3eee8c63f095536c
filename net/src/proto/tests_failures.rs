//! The protocol against members whose computations fail (issue 17, point 4), driven without
//! sockets: a failed chunk re-queued with a death; a peer that keeps failing a job's chunks
//! given no more of it (by the owner, and by a relay); a chunk that failed three times
//! elsewhere computed by the owner, the job ending with the panic's words only if it fails
//! there too.

use super::tests::{
    computed, computed_here, link_up, model, msg, node, owner_with_child, relay_in_job,
    remote_result, sent,
};
use super::tests_budget::result_from_link_5;
use super::tests_hostile::{assembled, closes, granted, long_job};
use super::*;

fn failed(job: JobId, chunk: u32) -> Msg {
    Msg::Failed {
        job,
        chunk,
        reason: "panicked: boom".into(),
    }
}

/// The job's `Report`ed end, if `actions` have one.
fn finished(actions: &[Action]) -> Option<&Result<millpond_core::job::JobOutput, PoolError>> {
    actions.iter().find_map(|a| match a {
        Action::Report {
            event: JobEvent::Finished(r),
            ..
        } => Some(r),
        _ => None,
    })
}

#[test]
fn a_failed_chunk_is_requeued_with_a_death_and_three_failures_here_end_the_job() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    msg(&mut n, t0, 5, Msg::Steal { job, want: 1 });
    let failed = |chunk| Msg::Failed {
        job,
        chunk,
        reason: "panicked: boom".into(),
    };
    msg(&mut n, t0, 5, failed(1));
    assert_eq!(n.jobs[&job].queue.front(), Some(&1));
    assert_eq!(n.jobs[&job].deaths[&1], 1);
    assert!(n.snapshot(t0).notices.iter().any(|x| {
        x.text
            .contains("failed on peer-9 (panicked: boom): re-queued")
    }));
    // A failure of a chunk it never had is a violation.
    let a = msg(&mut n, t0, 5, failed(2));
    assert!(matches!(
        &closes(&a)[..],
        [(5, close::PROTOCOL_VIOLATION, _)]
    ));
    // The owner's own worker: chunk 0 panics, goes back to the front and is tried again;
    // the third failure ends the job with the panic's words.
    let fail_here = || Input::Computed {
        task: ChunkTask {
            job,
            chunk: 0,
            worker: 0,
        },
        seconds: 0.01,
        outcome: ChunkOutcome::Failed("panicked: boom".into()),
    };
    for _ in 0..2 {
        let a = n.handle(t0, fail_here());
        assert_eq!(computed(&a), vec![0]);
    }
    let a = n.handle(t0, fail_here());
    let finished = a.iter().find_map(|a| match a {
        Action::Report {
            event: JobEvent::Finished(r),
            ..
        } => Some(r),
        _ => None,
    });
    assert!(
        matches!(finished, Some(Err(PoolError::Job(t))) if t.contains("chunk 0 failed 3 times here: panicked: boom")),
        "{a:?}"
    );
    assert!(n.jobs.is_empty());
}

/// Peer 9 (two workers, so eight chunks held at most) fails three of the 26 it asked for,
/// having delivered none: the job ends for it (`Cancel`), the five it still held come back to
/// the queue, its asks get `NoWork`, its later failures count for nothing and a late result
/// still counts. A peer with more results than failures keeps its work.
#[test]
fn a_peer_whose_chunks_keep_failing_gets_no_more_of_the_job() {
    let t0 = Instant::now();
    let mut n = node(1, 1, t0);
    let (job, ctx) = long_job(&mut n, t0);
    link_up(&mut n, t0, 5, 9);
    let held = granted(&msg(&mut n, t0, 5, Msg::Steal { job, want: 8 }));
    assert_eq!(held.len(), 8);
    for &c in &held[..MAX_LINK_FAILURES as usize - 1] {
        let a = msg(&mut n, t0, 5, failed(job, c));
        assert!(sent(&a).is_empty(), "{a:?}");
    }
    let a = msg(&mut n, t0, 5, failed(job, held[2]));
    assert!(sent(&a).contains(&(5, Msg::Cancel { job })), "{a:?}");
    assert!(closes(&a).is_empty(), "the link stays up: {a:?}");
    let j = &n.jobs[&job];
    assert!(j.granted.get(&5).is_none_or(|g| g.is_empty()));
    assert!(held.iter().all(|c| j.queue.contains(c)), "{:?}", j.queue);
    let text = format!(
        "peer-9 (192.0.2.9:1250) failed 3 chunks of job {job} (the last: panicked: boom): \
         given no more of it, 5 chunk(s) it held re-queued"
    );
    let said: Vec<String> = n.snapshot(t0).notices.into_iter().map(|x| x.text).collect();
    assert!(said.contains(&text), "{said:?}");
    let a = msg(&mut n, t0, 5, Msg::Steal { job, want: 1 });
    assert_eq!(sent(&a), vec![(5, Msg::NoWork { job })]);
    let a = msg(&mut n, t0, 5, failed(job, held[3]));
    assert!(sent(&a).is_empty() && closes(&a).is_empty(), "{a:?}");
    assert_eq!(
        n.jobs[&job].deaths[&held[3]], 1,
        "a failure after the cut counts nothing"
    );
    let a = n.handle(t0, result_from_link_5(&ctx, job, held[4]));
    assert!(
        matches!(&a[0], Action::Report { event: JobEvent::Chunk(r), .. } if r.chunk == held[4]),
        "{a:?}"
    );

    // Four results, then three failures: it keeps its work.
    let mut n = node(1, 1, t0);
    let (job, ctx) = long_job(&mut n, t0);
    link_up(&mut n, t0, 5, 9);
    let held = granted(&msg(&mut n, t0, 5, Msg::Steal { job, want: 8 }));
    for &c in &held[..4] {
        n.handle(t0, result_from_link_5(&ctx, job, c));
    }
    for &c in &held[4..7] {
        let a = msg(&mut n, t0, 5, failed(job, c));
        assert!(!sent(&a).contains(&(5, Msg::Cancel { job })), "{a:?}");
    }
    assert!(!granted(&msg(&mut n, t0, 5, Msg::Steal { job, want: 4 })).is_empty());
}

/// A relay in the owner's long job (`tests::relay_in_job`).
fn relay_in_long_job(t0: Instant) -> (Node, JobId) {
    let (mesh, index, mut spec) = model();
    let mut owner = node(1, 1, t0);
    let (_, ctx) = long_job(&mut owner, t0);
    spec.operation = ctx.spec().operation.clone();
    relay_in_job(t0, spec, mesh, index)
}

/// A chunk whose result is larger than any link carries (a rare contour chunk) goes back up
/// as a failure, not as a result its parent would take for a violation; a result that fits
/// goes up as usual.
#[test]
fn a_result_too_large_for_a_link_goes_up_as_a_failure() {
    use crate::wire;
    use millpond_core::job::{ChunkData, ChunkResult};
    let t0 = Instant::now();
    let (mut relay, job) = relay_in_long_job(t0);
    let a = msg(
        &mut relay,
        t0,
        1,
        Msg::Grant {
            job,
            chunks: vec![1, 2],
        },
    );
    assert_eq!(computed(&a), vec![1], "{a:?}");
    let heights = |n: u64, chunk| ChunkResult {
        chunk,
        data: ChunkData::Heights(vec![0.0; n as usize]),
    };
    let done = |r: ChunkResult| Input::Computed {
        task: ChunkTask {
            job,
            chunk: r.chunk,
            worker: 0,
        },
        seconds: 0.01,
        outcome: ChunkOutcome::Done(Box::new(r)),
    };
    let too_large = heights(wire::MAX_RESULT / 8, 1);
    assert!(too_large.encoded_size_bound() > wire::MAX_RESULT);
    let a = relay.handle(t0, done(too_large));
    assert!(
        !a.iter().any(|a| matches!(a, Action::SendResult { .. })),
        "{a:?}"
    );
    let up = sent(&a);
    assert!(
        up.iter().any(|(l, m)| *l == 1
            && matches!(m, Msg::Failed { chunk: 1, reason, .. }
                if reason.contains("more than a link carries"))),
        "{up:?}"
    );
    // The worker takes the next chunk, whose result fits: it goes up as a result.
    assert_eq!(computed(&a), vec![2], "{a:?}");
    let a = relay.handle(t0, done(heights(1000, 2)));
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::SendResult { link: 1, message } if message.chunk == 2)),
        "{a:?}"
    );
}

/// A relay (node 2: parent link 1, child link 2) does the same to its own child: three
/// failures go up, then the child's job ends and what it held comes back to the relay's
/// queue, not up the tree (the relay still holds those chunks for its parent).
#[test]
fn a_relay_gives_no_more_of_a_job_to_a_child_that_keeps_failing() {
    let t0 = Instant::now();
    let (mut relay, job) = relay_in_long_job(t0);
    msg(&mut relay, t0, 2, Msg::Steal { job, want: 8 });
    let grant = Msg::Grant {
        job,
        chunks: (1..=12).collect(),
    };
    let a = msg(&mut relay, t0, 1, grant);
    let own = computed(&a);
    let child = granted(&a);
    assert_eq!((own.len(), child.len()), (1, 8), "{a:?}");
    let mut up = Vec::new();
    for &c in &child[..3] {
        up.extend(sent(&msg(&mut relay, t0, 2, failed(job, c))));
    }
    let failures: Vec<u32> = up
        .iter()
        .filter_map(|(l, m)| match m {
            Msg::Failed { chunk, .. } if *l == 1 => Some(*chunk),
            _ => None,
        })
        .collect();
    assert_eq!(failures, child[..3]);
    assert!(up.contains(&(2, Msg::Cancel { job })), "{up:?}");
    let j = &relay.jobs[&job];
    assert!(
        child[3..]
            .iter()
            .all(|c| j.queue.contains(c) && j.held.contains(c))
    );
    let a = msg(&mut relay, t0, 2, Msg::Steal { job, want: 1 });
    assert_eq!(sent(&a), vec![(2, Msg::NoWork { job })]);
}

/// Chunk 1 fails on three peers in turn: from then on only the owner computes it (peer 5's
/// next ask gets chunk 2). If the owner computes it, the job completes; if it fails there too,
/// the job ends at once with the panic's words.
#[test]
fn a_chunk_that_failed_three_times_elsewhere_is_computed_by_the_owner() {
    let t0 = Instant::now();
    for fails_here in [false, true] {
        let (mut n, job) = owner_with_child(t0);
        link_up(&mut n, t0, 6, 10);
        link_up(&mut n, t0, 7, 11);
        for link in [5, 6, 7] {
            let a = msg(&mut n, t0, link, Msg::Steal { job, want: 1 });
            assert_eq!(granted(&a), vec![1], "link {link}");
            msg(&mut n, t0, link, failed(job, 1));
        }
        assert_eq!(n.jobs[&job].deaths[&1], MAX_DEATHS);
        assert_eq!(
            granted(&msg(&mut n, t0, 5, Msg::Steal { job, want: 1 })),
            [2]
        );
        // The owner's worker is done with chunk 0: it takes chunk 1.
        assert_eq!(computed(&n.handle(t0, computed_here(job, 0))), vec![1]);
        n.handle(t0, remote_result(5, job, 2));
        if fails_here {
            let here = Input::Computed {
                task: ChunkTask {
                    job,
                    chunk: 1,
                    worker: 0,
                },
                seconds: 0.01,
                outcome: ChunkOutcome::Failed("panicked: boom".into()),
            };
            let a = n.handle(t0, here);
            let text = "chunk 1 failed here after 3 tries elsewhere that failed or were lost: \
                        panicked: boom";
            assert!(
                matches!(finished(&a), Some(Err(PoolError::Job(t))) if t == text),
                "{a:?}"
            );
            assert!(n.jobs.is_empty());
        } else {
            let a = n.handle(t0, computed_here(job, 1));
            assert_eq!(assembled(&a).map(Vec::len), Some(3), "{a:?}");
        }
    }
}
