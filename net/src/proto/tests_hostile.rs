//! The protocol against hostile or broken peers (issue 17), driven without sockets: a wrong
//! result taken out again, grants that expire, a hoarder capped, mesh fetches that do not
//! wait for ever (failures: `tests_failures.rs`).

use super::mesh_cache::MESH_WAIT;
use super::tests::{
    announce, computed, computed_here, grant, idle_member, job_of_1, link_down, link_up, model,
    msg, node, owner_with_child, relay, relay_in_job, relay_told_of, remote_result, result, sent,
    steal, submit,
};
use super::*;
use millpond_core::job::{ChunkData, ChunkResult, DropSpec, Grid, JobContext, Operation};
use millpond_core::{Axis, Rect};

/// Chunk `c` with every height 1 mm too high, as a lying peer sends it.
fn poisoned(c: u32) -> Box<ChunkResult> {
    let mut r = result(c);
    if let ChunkData::Heights(z) = &mut r.data {
        z.iter_mut().for_each(|v| *v += 1.0);
    }
    r
}

/// Chunk `c` of `job` from child link 5, [`poisoned`].
fn wrong_result(job: JobId, c: u32) -> Input {
    let mut input = remote_result(5, job, c);
    if let Input::Result { message, .. } = &mut input {
        message.result = poisoned(c);
    }
    input
}

pub(super) fn closes(actions: &[Action]) -> Vec<(LinkId, u32, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { link, code, reason } => Some((*link, *code, reason.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn assembled(actions: &[Action]) -> Option<&Vec<ChunkResult>> {
    actions.iter().find_map(|a| match a {
        Action::Assemble { results, .. } => Some(results),
        _ => None,
    })
}

pub(super) fn tick(n: &mut Node, now: Instant) -> Vec<Action> {
    n.handle(now, Input::Tick { links: Vec::new() })
}

#[test]
fn a_wrong_result_is_taken_out_again_and_the_job_waits_for_its_check() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    n.s.verify = 0.03;
    msg(&mut n, t0, 5, Msg::Steal { job, want: 2 });
    // Chunk 1 comes 1 mm high: taken for now (previewed), its check queued as the first of
    // this link.
    let a = n.handle(t0, wrong_result(job, 1));
    assert!(matches!(&a[..], [Action::Report { event: JobEvent::Chunk(r), .. }] if r.chunk == 1));
    n.handle(t0, remote_result(5, job, 2));
    assert_eq!(n.jobs[&job].results.len(), 2);
    // The owner's worker is free: the check goes before anything else; every chunk has a
    // result, yet the job is not assembled while the check is out.
    let a = n.handle(t0, computed_here(job, 0));
    assert_eq!(computed(&a), vec![1]);
    assert!(assembled(&a).is_none(), "{a:?}");
    // The check differs: the link is closed, chunks 1 and 2 taken out, 1 is the owner's own
    // now and 2 is computed again.
    let a = n.handle(t0, computed_here(job, 1));
    let c = closes(&a);
    assert!(
        matches!(&c[..], [(5, close::PROTOCOL_VIOLATION, r)] if r.contains("wrong result for chunk 1")),
        "{a:?}"
    );
    assert_eq!(computed(&a), vec![2]);
    assert!(assembled(&a).is_none());
    let a = n.handle(t0, computed_here(job, 2));
    let results = assembled(&a).expect("assembled");
    for r in results {
        assert_eq!(*r, *result(r.chunk), "chunk {} is not the owner's", r.chunk);
    }
    // Named in the statistics and a notice; back on a new link, it gets no work.
    let s = n.snapshot(t0);
    let row = s.hosts.iter().find(|h| h.node == 9).expect("its row");
    assert_eq!((row.wrong_results, row.discarded_results), (1, 2));
    assert!(
        s.notices.iter().any(|x| x.text
            == format!(
                "peer-9 (192.0.2.9:1250) returned a wrong result for chunk 1 of job {job}: \
                 link dropped, 2 of its results discarded and recomputed"
            )),
        "{:?}",
        s.notices
    );
    let (mut n, job) = owner_with_child(t0);
    n.s.verify = 0.03;
    msg(&mut n, t0, 5, Msg::Steal { job, want: 1 });
    n.handle(t0, wrong_result(job, 1));
    n.handle(t0, computed_here(job, 0));
    n.handle(t0, computed_here(job, 1));
    link_up(&mut n, t0, 6, 9);
    let a = msg(&mut n, t0, 6, Msg::Steal { job, want: 1 });
    assert_eq!(sent(&a), vec![(6, Msg::NoWork { job })]);
}

#[test]
fn a_copy_that_differs_from_the_owner_s_convicts_its_sender_even_without_sampling() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    assert_eq!(n.s.verify, 0.0);
    msg(&mut n, t0, 5, Msg::Steal { job, want: 1 });
    // The owner copies chunk 1 (idle, nothing queued after chunk 2) and has it first.
    n.handle(t0, computed_here(job, 0));
    n.handle(t0, computed_here(job, 2));
    let a = n.handle(t0, computed_here(job, 1));
    assert!(assembled(&a).is_some());
    // A job still open: the liar's late copy of chunk 1 differs from the owner's.
    let (mut n, job) = owner_with_child(t0);
    msg(&mut n, t0, 5, Msg::Steal { job, want: 2 });
    n.handle(t0, computed_here(job, 0));
    // The owner copies chunk 1 (the oldest grant) and has it first.
    let a = n.handle(t0, computed_here(job, 1));
    assert!(assembled(&a).is_none());
    let a = n.handle(t0, wrong_result(job, 1));
    assert!(
        matches!(&closes(&a)[..], [(5, close::PROTOCOL_VIOLATION, _)]),
        "{a:?}"
    );
    // The same bits are no offence.
    let (mut n, job) = owner_with_child(t0);
    msg(&mut n, t0, 5, Msg::Steal { job, want: 2 });
    n.handle(t0, computed_here(job, 0));
    n.handle(t0, computed_here(job, 1));
    assert!(closes(&n.handle(t0, remote_result(5, job, 1))).is_empty());
}

/// A 26-chunk job over the test box.
pub(super) fn long_job(n: &mut Node, t0: Instant) -> (JobId, JobContext) {
    let (mesh, index, mut spec) = model();
    if let Operation::Drop(DropSpec { grid, .. }) = &mut spec.operation {
        *grid = Grid {
            axis: Axis::X,
            bounds: Rect::new(0.0, 10.0, 0.0, 10.0),
            step: 0.1,
            sampling: 0.001,
        };
    }
    let ctx = JobContext::new(mesh, index, spec).expect("a valid job");
    let a = n.handle(t0, submit(ctx.clone()));
    let job = a
        .iter()
        .find_map(|a| match a {
            Action::Submitted(Ok(j)) => Some(*j),
            _ => None,
        })
        .expect("submitted");
    (job, ctx)
}

pub(super) fn granted(actions: &[Action]) -> Vec<u32> {
    sent(actions)
        .into_iter()
        .flat_map(|(_, m)| match m {
            Msg::Grant { chunks, .. } => chunks,
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_grant_held_far_longer_than_the_pace_expires_and_is_computed_again() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    msg(&mut n, t0, 5, Msg::Steal { job, want: 2 });
    // No pace measured yet: nothing expires, however long.
    tick(&mut n, t0 + Duration::from_secs(60));
    assert_eq!(n.jobs[&job].granted[&5].len(), 2);

    // The owner's chunk took 50 ms: peer 9, which has delivered nothing yet, may hold a
    // chunk 16 × 50 ms + 2 s.
    let (mut n, job) = owner_with_child(t0);
    assert_eq!(computed(&n.handle(t0, computed_here(job, 0))), vec![1]);
    let a = msg(&mut n, t0, 5, Msg::Steal { job, want: 2 });
    assert_eq!(granted(&a), vec![2]);
    tick(&mut n, t0 + Duration::from_millis(2700));
    assert_eq!(n.jobs[&job].granted[&5].len(), 1);
    tick(&mut n, t0 + Duration::from_millis(2900));
    assert!(n.jobs[&job].granted[&5].is_empty());
    assert_eq!(n.jobs[&job].queue, [2]);
    assert_eq!(n.jobs[&job].deaths[&2], 1);
    let text = format!("peer-9 held 1 chunk(s) of job {job} far longer than its pace: re-queued");
    assert!(
        n.snapshot(t0).notices.iter().any(|x| x.text == text),
        "{:?}",
        n.snapshot(t0).notices
    );
    // Its result, late, still counts if it comes first.
    let a = n.handle(t0 + Duration::from_secs(3), remote_result(5, job, 2));
    assert!(
        matches!(&a[0], Action::Report { event: JobEvent::Chunk(r), .. } if r.chunk == 2),
        "{a:?}"
    );
    assert!(n.jobs[&job].queue.is_empty());

    // Measured: a result 1 s after its grant sets peer 9's pace; 4 × 1 s + 2 s.
    let (mut n, job) = owner_with_child(t0);
    msg(&mut n, t0, 5, Msg::Steal { job, want: 1 });
    let t1 = t0 + Duration::from_secs(1);
    n.handle(t1, remote_result(5, job, 1));
    msg(&mut n, t1, 5, Msg::Steal { job, want: 1 });
    assert_eq!(n.jobs[&job].granted[&5].len(), 1);
    tick(&mut n, t1 + Duration::from_millis(5900));
    assert_eq!(n.jobs[&job].granted[&5].len(), 1);
    tick(&mut n, t1 + Duration::from_millis(6100));
    assert!(n.jobs[&job].granted[&5].is_empty());
}

/// Node 2: link 1 (peer 1) announces the job first (its parent), link 2 (peer 3) too.
fn fetching(t0: Instant) -> (Node, JobSpec) {
    let (_, _, spec) = model();
    let mut n = relay(t0);
    let told = announce(job_of_1(1), &spec, 7);
    let a = msg(&mut n, t0, 1, told.clone());
    assert!(sent(&a).contains(&(1, Msg::FetchMesh { hash: spec.mesh })));
    msg(&mut n, t0, 2, told);
    (n, spec)
}

#[test]
fn a_mesh_fetch_asks_another_neighbour_when_refused_lost_or_unanswered() {
    let t0 = Instant::now();
    let fetch_to = |a: &[Action], hash| {
        sent(a)
            .into_iter()
            .filter(|(_, m)| *m == Msg::FetchMesh { hash })
            .map(|(l, _)| l)
            .collect::<Vec<_>>()
    };
    // Refused: the other announcer is asked at once.
    let (mut n, spec) = fetching(t0);
    let a = msg(&mut n, t0, 1, Msg::NoMesh { hash: spec.mesh });
    assert_eq!(fetch_to(&a, spec.mesh), vec![2]);
    // Two nodes fetching the same mesh from each other: each tells the other no.
    let a = msg(&mut n, t0, 2, Msg::FetchMesh { hash: spec.mesh });
    assert_eq!(sent(&a), vec![(2, Msg::NoMesh { hash: spec.mesh })]);
    // A mesh it has never heard of: no.
    let other = millpond_core::mesh::MeshHash([9; 32]);
    let a = msg(&mut n, t0, 1, Msg::FetchMesh { hash: other });
    assert_eq!(sent(&a), vec![(1, Msg::NoMesh { hash: other })]);
    // The link asked goes: the other is asked again.
    let a = link_down(&mut n, t0, 2, "timed out");
    assert_eq!(fetch_to(&a, spec.mesh), vec![1]);
    // Unanswered: after MESH_WAIT the next one is asked, then in turn, waiting longer.
    let (mut n, spec) = fetching(t0);
    assert!(fetch_to(&tick(&mut n, t0 + MESH_WAIT / 2), spec.mesh).is_empty());
    let t1 = t0 + MESH_WAIT + Duration::from_millis(50);
    assert_eq!(fetch_to(&tick(&mut n, t1), spec.mesh), vec![2]);
    assert!(
        fetch_to(
            &tick(&mut n, t1 + MESH_WAIT + Duration::from_millis(50)),
            spec.mesh
        )
        .is_empty()
    );
    let t2 = t1 + 2 * MESH_WAIT + Duration::from_millis(50);
    assert_eq!(fetch_to(&tick(&mut n, t2), spec.mesh), vec![1]);
}

/// A peer that announces jobs in the victim's name before the victim submits — every id a
/// counter would give it next, and any other — blocks nothing: the victim's real job has an id
/// drawn at random, which its neighbour takes up as a new job. Announced to the victim itself,
/// a job in its name is dropped, not remembered.
#[test]
fn a_job_id_announced_ahead_cannot_block_the_victim_s_real_job() {
    let t0 = Instant::now();
    let (mesh, index, spec) = model();
    // Helper 2: link 1 to the attacker (peer 66), link 2 to the victim (peer 1).
    let mut helper = node(2, 1, t0);
    link_up(&mut helper, t0, 1, 66);
    link_up(&mut helper, t0, 2, 1);
    let mut victim = node(1, 1, t0);
    link_up(&mut victim, t0, 7, 2);
    link_up(&mut victim, t0, 8, 66);
    // Of another mesh, so that the helper's fetch of the real one is its own.
    let other = JobSpec {
        mesh: millpond_core::mesh::MeshHash([9; 32]),
        ..spec.clone()
    };
    let forged = |nonce: u128| announce(job_of_1(nonce), &other, 7);
    let guesses: Vec<u128> = (0..=64).chain([u128::MAX, 0x5eed]).collect();
    for &g in &guesses {
        msg(&mut helper, t0, 1, forged(g));
        let a = msg(&mut victim, t0, 8, forged(g));
        assert!(
            sent(&a).is_empty(),
            "the victim took up a job in its name: {a:?}"
        );
    }
    assert_eq!(helper.load().jobs, guesses.len());
    assert_eq!(victim.load().jobs, 0);
    assert!(victim.seen.is_empty(), "forged ids remembered");
    // The victim submits: its announcement reaches the helper, which takes the job up from
    // the victim (and asks it for the mesh), whatever the attacker announced.
    let ctx = JobContext::new(mesh, index, spec.clone()).expect("a valid job");
    let a = victim.handle(t0, submit(ctx));
    let Some(Action::Submitted(Ok(real))) = a.iter().find(|a| matches!(a, Action::Submitted(_)))
    else {
        panic!("not submitted: {a:?}");
    };
    assert_eq!(real.owner, NodeId(1));
    let announce = sent(&a)
        .into_iter()
        .find_map(|(l, m)| (l == 7).then_some(m))
        .expect("announced to the helper");
    let a = msg(&mut helper, t0, 2, announce);
    assert_eq!(helper.jobs[real].parent, Some(2));
    assert!(
        sent(&a).contains(&(2, Msg::FetchMesh { hash: spec.mesh })),
        "{a:?}"
    );
}

/// A job whose grid is one line of a billion points (within the grid's total) is refused on
/// arrival: at the wire, and by the core if it got that far — its link closed, no job kept,
/// nothing computed or fetched for it.
#[test]
fn a_one_line_billion_point_job_is_refused_on_arrival() {
    let t0 = Instant::now();
    let (_, _, mut spec) = model();
    if let Operation::Drop(DropSpec { grid, .. }) = &mut spec.operation {
        grid.bounds = Rect::new(0.0, 999_999.0, 0.0, 0.0);
        grid.step = 1.0;
    }
    assert!(spec.points_total() <= millpond_core::job::MAX_POINTS);
    assert_eq!(spec.chunk_count(), 1);
    let huge = announce(job_of_1(3), &spec, 7);
    let frame = crate::wire::encode(&huge).expect("encodes");
    let e = crate::wire::decode_msg(&frame[4..]).expect_err("refused by the wire");
    assert!(e.to_string().contains("a line of the grid"), "{e}");
    let mut n = node(2, 4, t0);
    link_up(&mut n, t0, 1, 1);
    link_up(&mut n, t0, 2, 3);
    let a = msg(&mut n, t0, 1, huge);
    assert!(
        matches!(&closes(&a)[..], [(1, close::PROTOCOL_VIOLATION, r)]
            if r.starts_with("invalid job spec: ") && r.contains("a line of the grid")),
        "{a:?}"
    );
    assert!(computed(&a).is_empty() && sent(&a).is_empty(), "{a:?}");
    assert_eq!(
        n.load(),
        Load {
            links: 1,
            ..Load::default()
        }
    );
}

/// Text from peers — a gossiped name, a failure's words — with a terminal escape and a
/// newline reaches the statistics and notices cleaned, and goes up the tree cleaned.
#[test]
fn peer_text_with_escapes_and_newlines_is_cleaned() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    let evil = "x\x1b[31mred\nmillpond: error: fake";
    let clean = "x�[31mred�millpond: error: fake";
    msg(&mut n, t0, 5, Msg::Members(vec![idle_member(77, evil, 1)]));
    msg(&mut n, t0, 5, Msg::Steal { job, want: 1 });
    let failed = Msg::Failed {
        job,
        chunk: 1,
        reason: format!("panicked: {evil}"),
    };
    msg(&mut n, t0, 5, failed);
    let s = n.snapshot(t0);
    let names: Vec<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();
    assert!(names.contains(&clean), "{names:?}");
    let said: Vec<&str> = s.notices.iter().map(|x| x.text.as_str()).collect();
    assert!(
        said.iter()
            .any(|t| t.contains(&format!("failed on peer-9 (panicked: {clean})"))),
        "{said:?}"
    );
    for text in names.iter().chain(&said) {
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    // A relay passes a failure on cleaned (node 2: parent link 1, child link 2).
    let (mesh, index, spec) = model();
    let (mut relay, job) = relay_in_job(t0, spec, mesh, index);
    msg(&mut relay, t0, 2, Msg::Steal { job, want: 1 });
    msg(&mut relay, t0, 1, grant(job, &[1, 2]));
    let failed = Msg::Failed {
        job,
        chunk: 2,
        reason: evil.into(),
    };
    let up = sent(&msg(&mut relay, t0, 2, failed));
    assert_eq!(
        up,
        vec![(
            1,
            Msg::Failed {
                job,
                chunk: 2,
                reason: clean.into()
            }
        )]
    );
}

/// The header of a bulk stream with a mesh of `hash` (the link is set by `offer`).
fn mesh_header(hash: millpond_core::mesh::MeshHash) -> Input {
    Input::BulkOffered {
        link: 0,
        header: crate::wire::BulkHeader::Mesh { hash, size: 72 },
    }
}

/// Offers a bulk stream's header on `link`: whether `n` takes it, and all it answered.
pub(super) fn offer(
    n: &mut Node,
    now: Instant,
    link: LinkId,
    mut input: Input,
) -> (bool, Vec<Action>) {
    if let Input::BulkOffered { link: l, .. } = &mut input {
        *l = link;
    }
    let a = n.handle(now, input);
    let takes: Vec<bool> = a
        .iter()
        .filter_map(|a| match a {
            Action::TakeBulk(t) => Some(t.taken()),
            _ => None,
        })
        .collect();
    assert_eq!(takes.len(), 1, "one answer to an offer: {a:?}");
    (takes[0], a)
}

/// The header of a bulk stream with a result of `chunk` of `job`.
fn result_header(job: JobId, chunk: u32) -> Input {
    Input::BulkOffered {
        link: 0,
        header: crate::wire::BulkHeader::Result {
            job,
            chunk,
            compute_s: 0.01,
            size: 64,
            hash: [0; 32],
            node: NodeId(9),
            worker: 0,
        },
    }
}

/// Bulk data is judged by its header, before a byte of it is read (issue 17): a mesh is read
/// only if this node asked that link for it and still waits for it, one stream at a time; a
/// later copy is declined without blame; a mesh never asked of the link closes it. A result
/// is read only for a chunk granted down the link; one for a chunk or a job never granted
/// closes the link; a late one of a job over here is declined.
#[test]
fn bulk_data_never_asked_for_is_refused_at_its_header() {
    let t0 = Instant::now();
    let (mesh, _, spec) = model();
    let hash = mesh.hash();
    // A relay: parent link 1, child link 2.
    let (mut relay, _, told) = relay_told_of(t0, spec);
    let asked = sent(&told);
    assert!(asked.contains(&(1, Msg::FetchMesh { hash })), "{asked:?}");
    // The child was never asked for it: the link closes, nothing is read.
    let (take, a) = offer(&mut relay, t0, 2, mesh_header(hash));
    assert!(!take);
    let closed = closes(&a);
    assert!(
        matches!(&closed[..], [(2, close::PROTOCOL_VIOLATION, why)] if why.contains("never asked")),
        "{a:?}"
    );
    // The parent was: its mesh is read, one stream at a time.
    assert!(offer(&mut relay, t0, 1, mesh_header(hash)).0);
    let (take, a) = offer(&mut relay, t0, 1, mesh_header(hash));
    assert!(!take && closes(&a).is_empty(), "{a:?}");
    // Once it is in, a late copy is declined, the link kept.
    super::tests::mesh_arrives(&mut relay, t0, 1, &mesh);
    let (take, a) = offer(&mut relay, t0, 1, mesh_header(hash));
    assert!(!take && closes(&a).is_empty(), "{a:?}");
    // Another mesh, never asked of anyone: closed.
    let other = millpond_core::mesh::MeshHash([7; 32]);
    let (take, a) = offer(&mut relay, t0, 1, mesh_header(other));
    assert!(!take && closes(&a).len() == 1, "{a:?}");

    // An owner with child link 5 (granted chunk 1) and another link 6.
    let (mut n, job) = owner_with_child(t0);
    link_up(&mut n, t0, 6, 10);
    let a = steal(&mut n, t0, 5, job, 1);
    assert!(a.contains(&(5, grant(job, &[1]))), "{a:?}");
    assert!(offer(&mut n, t0, 5, result_header(job, 1)).0);
    let (take, a) = offer(&mut n, t0, 5, result_header(job, 2));
    assert!(!take, "{a:?}");
    assert!(
        matches!(&closes(&a)[..], [(5, close::PROTOCOL_VIOLATION, why)] if why.contains("never granted")),
        "{a:?}"
    );
    let unknown = JobId {
        owner: NodeId(77),
        nonce: 1,
    };
    let (take, a) = offer(&mut n, t0, 6, result_header(unknown, 0));
    assert!(!take, "{a:?}");
    assert!(
        matches!(&closes(&a)[..], [(6, close::PROTOCOL_VIOLATION, why)] if why.contains("never granted")),
        "{a:?}"
    );
    // A late result of a job that is over here is declined without blame.
    link_up(&mut n, t0, 7, 11);
    n.handle(t0, Input::Cancel(job));
    let (take, a) = offer(&mut n, t0, 7, result_header(job, 1));
    assert!(!take && closes(&a).is_empty(), "{a:?}");
}

/// A client's greeting belongs before any Hello, on a connection that never becomes a link
/// (ARCHITECTURE.md §4.13): on a member's link it is a lie, and closes the link.
#[test]
fn a_client_greeting_on_a_member_s_link_closes_it() {
    let t0 = Instant::now();
    let mut n = node(1, 1, t0);
    link_up(&mut n, t0, 5, 9);
    let protocol = crate::wire::PROTOCOL_VERSION;
    let a = msg(&mut n, t0, 5, Msg::Client { protocol });
    assert!(
        a.iter().any(|a| matches!(a,
            Action::Close { link: 5, code, reason }
                if *code == close::PROTOCOL_VIOLATION && reason.contains("client greeting"))),
        "{a:?}"
    );
    assert!(!n.links.contains_key(&5));
}
