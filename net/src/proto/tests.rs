//! The protocol driven without sockets: inputs in, actions checked.

use super::*;
use crate::stats::HostState;
use crate::testing::ball_drop;
use crate::wire::{MemberInfo, PROTOCOL_VERSION};
use members::gone_after;
use millpond_core::job::{COMPUTE_ABI, ChunkResult, JobContext};
use millpond_core::models::box_solid;
use millpond_core::{CancelToken, Mesh, Point3, Rect, TriangleIndex};
use std::sync::Arc;

/// A small box and a drop grid over it cut into exactly three chunks.
pub(super) fn model() -> (Arc<Mesh>, Arc<TriangleIndex>, JobSpec) {
    let triangles = box_solid(Point3::new(2.0, 2.0, 0.0), Point3::new(8.0, 8.0, 3.0));
    let mesh = Mesh::from_triangles(triangles, "box").expect("a valid box");
    let index = TriangleIndex::new(&mesh);
    let spec = ball_drop(mesh.hash(), Rect::new(0.0, 10.0, 0.0, 10.0), 1.0, 0.001);
    assert_eq!(spec.chunk_count(), 3);
    (Arc::new(mesh), Arc::new(index), spec)
}

/// Chunk `c` of the job, computed for real.
pub(super) fn result(c: u32) -> Box<ChunkResult> {
    let (mesh, index, spec) = model();
    let ctx = JobContext::new(mesh, index, spec).expect("a valid job");
    Box::new(
        ctx.run_chunk(c, &CancelToken::new())
            .expect("not cancelled"),
    )
}

/// The app's submit of `ctx`, with a nonce of its own, as the shell draws one for each job.
pub(super) fn submit(ctx: JobContext) -> Input {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Input::Submit {
        ctx: Box::new(ctx),
        nonce: u128::from(n) << 64 | 0x5eed,
    }
}

pub(super) fn node(id: u64, workers: usize, t0: Instant) -> Node {
    let settings = NodeSettings {
        id: NodeId(id),
        name: format!("node-{id}"),
        workers,
        remotes: Vec::new(),
        protocol: PROTOCOL_VERSION,
        compute_abi: COMPUTE_ABI,
        mesh_cache_bytes: 1 << 30,
        address: None,
        verify: 0.0,
        seed: 7,
    };
    Node::new(settings, t0)
}

pub(super) fn link_up(n: &mut Node, now: Instant, link: LinkId, peer: u64) -> Vec<Action> {
    let input = Input::LinkUp(LinkUp {
        link,
        peer: NodeId(peer),
        name: format!("peer-{peer}"),
        workers: 2,
        remote: None,
        address: format!("192.0.2.{peer}:1250"),
    });
    n.handle(now, input)
}

pub(super) fn msg(n: &mut Node, now: Instant, link: LinkId, msg: Msg) -> Vec<Action> {
    n.handle(now, Input::Msg { link, msg })
}

pub(super) fn link_down(n: &mut Node, now: Instant, link: LinkId, reason: &str) -> Vec<Action> {
    let reason = reason.into();
    n.handle(now, Input::LinkDown { link, reason })
}

/// Node 1's job `nonce`.
pub(super) fn job_of_1(nonce: u128) -> JobId {
    JobId {
        owner: NodeId(1),
        nonce,
    }
}

/// The announcement of `job` with `spec`, `hops_left` hops still to go.
pub(super) fn announce(job: JobId, spec: &JobSpec, hops_left: u8) -> Msg {
    let spec = Box::new(spec.clone());
    Msg::Announce {
        job,
        spec,
        hops_left,
    }
}

/// What `n` sends (gossip left out) when `link` asks it for `want` chunks of `job`.
pub(super) fn steal(
    n: &mut Node,
    now: Instant,
    link: LinkId,
    job: JobId,
    want: u32,
) -> Vec<(LinkId, Msg)> {
    sent(&msg(n, now, link, Msg::Steal { job, want }))
}

/// The grant of `chunks` of `job`.
pub(super) fn grant(job: JobId, chunks: &[u32]) -> Msg {
    let chunks = chunks.to_vec();
    Msg::Grant { job, chunks }
}

/// Fresh gossip of member `node`, named `name`, one link beyond, with `workers` idle workers.
pub(super) fn idle_member(node: u64, name: &str, workers: u32) -> MemberInfo {
    MemberInfo {
        node: NodeId(node),
        name: name.into(),
        hops: 1,
        workers,
        load: 0,
        busy: vec![0],
        age_ms: 0,
    }
}

/// The control messages among `actions`, gossip left out.
pub(super) fn sent(actions: &[Action]) -> Vec<(LinkId, Msg)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { link, msg } if !matches!(msg, Msg::Members(_)) => {
                Some((*link, msg.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The chunks `actions` start computing here.
pub(super) fn computed(actions: &[Action]) -> Vec<u32> {
    let chunks = actions.iter().filter_map(|a| match a {
        Action::Compute { task, .. } => Some(task.chunk),
        _ => None,
    });
    chunks.collect()
}

/// Node 2 with a parent (node 1, link 1) and a child (node 3, link 2), told down link 1 of
/// job `{owner 1, nonce 5}` with `spec`: the relay, the job and what the news made it do.
pub(super) fn relay_told_of(t0: Instant, spec: JobSpec) -> (Node, JobId, Vec<Action>) {
    let mut relay = relay(t0);
    let job = job_of_1(5);
    let a = msg(&mut relay, t0, 1, announce(job, &spec, 7));
    (relay, job, a)
}

/// Node 2 with a parent (node 1, link 1) and a child (node 3, link 2), told of no job yet.
pub(super) fn relay(t0: Instant) -> Node {
    let mut relay = node(2, 1, t0);
    link_up(&mut relay, t0, 1, 1);
    link_up(&mut relay, t0, 2, 3);
    relay
}

/// As [`relay_told_of`], with the job's mesh arrived from the parent and indexed.
pub(super) fn relay_in_job(
    t0: Instant,
    spec: JobSpec,
    mesh: Arc<Mesh>,
    index: Arc<TriangleIndex>,
) -> (Node, JobId) {
    let (mut relay, job, _) = relay_told_of(t0, spec);
    let arrived = Input::MeshArrived {
        link: 1,
        mesh: Box::new((*mesh).clone()),
    };
    relay.handle(t0, arrived);
    let ready = Input::MeshReady {
        hash: mesh.hash(),
        mesh,
        index,
    };
    relay.handle(t0, ready);
    (relay, job)
}

/// An owner with one worker, a job of three chunks (chunk 0 on its worker) and child link 5.
pub(super) fn owner_with_child(t0: Instant) -> (Node, JobId) {
    let (mesh, index, spec) = model();
    let mut n = node(1, 1, t0);
    let ctx = JobContext::new(mesh, index, spec).expect("a valid job");
    let a = n.handle(t0, submit(ctx));
    let Some(Action::Submitted(Ok(job))) = a.iter().find(|a| matches!(a, Action::Submitted(_)))
    else {
        panic!("not submitted: {a:?}");
    };
    let job = *job;
    assert_eq!(computed(&a), vec![0]);
    let a = link_up(&mut n, t0, 5, 9);
    assert!(matches!(a[0], Action::Open { link: 5 }), "{a:?}");
    assert!(
        matches!(&sent(&a)[..], [(5, Msg::Announce { job: j, hops_left: 7, .. })] if *j == job),
        "{a:?}"
    );
    (n, job)
}

pub(super) fn remote_result(link: LinkId, job: JobId, chunk: u32) -> Input {
    let message = ResultMessage {
        job,
        chunk,
        compute_s: 0.01,
        by: (NodeId(9), 0),
        result: result(chunk),
    };
    Input::Result {
        link,
        message,
        transfer_s: 0.002,
    }
}

#[test]
fn an_announced_job_is_flooded_on_and_its_link_becomes_the_parent() {
    let t0 = Instant::now();
    let (mesh, _, spec) = model();
    let mut n = relay(t0);
    link_up(&mut n, t0, 3, 4);
    let job = job_of_1(1);
    let told = |hops_left| announce(job, &spec, hops_left);
    let a = msg(&mut n, t0, 1, told(7));
    let mut out = sent(&a);
    out.sort_by_key(|(l, _)| *l);
    assert_eq!(
        out,
        vec![
            (1, Msg::FetchMesh { hash: spec.mesh }),
            (2, told(6)),
            (3, told(6)),
        ]
    );
    assert_eq!(n.jobs[&job].parent, Some(1));
    // A later copy from another link changes nothing.
    assert!(sent(&msg(&mut n, t0, 2, told(7))).is_empty());
    assert_eq!(n.jobs[&job].parent, Some(1));
    // The parent cannot steal from its child; another link can ask (and waits for work).
    assert_eq!(steal(&mut n, t0, 1, job, 1), vec![(1, Msg::NoWork { job })]);
    assert!(steal(&mut n, t0, 2, job, 1).is_empty());
    // Once the mesh is indexed, the node asks its parent for work, and only its parent.
    let a = mesh_arrives(&mut n, t0, 1, &mesh);
    // One idle worker, link 2's ask, one in hand.
    let want = 3;
    assert_eq!(sent(&a), vec![(1, Msg::Steal { job, want })]);
    // A grant from a link that is not the parent is a violation.
    let a = msg(&mut n, t0, 3, grant(job, &[0]));
    assert!(
        matches!(
            &a[..],
            [Action::Close {
                link: 3,
                code: close::PROTOCOL_VIOLATION,
                ..
            }]
        ),
        "{a:?}"
    );
    // A job announced with no hops left is taken up but not passed on.
    let last = JobId { nonce: 2, ..job };
    let a = msg(&mut n, t0, 1, announce(last, &spec, 0));
    assert!(sent(&a).iter().all(|(l, _)| *l == 1), "{a:?}");
}

#[test]
fn steal_grant_result_completes_the_job_with_progress() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    assert_eq!(steal(&mut n, t0, 5, job, 2), vec![(5, grant(job, &[1, 2]))]);
    // A result: reported to the owner's handle, with progress once 50 ms have passed.
    let t1 = t0 + Duration::from_millis(60);
    let a = n.handle(t1, remote_result(5, job, 1));
    let reports: Vec<&JobEvent> = a
        .iter()
        .filter_map(|a| match a {
            Action::Report { job: j, event } if *j == job => Some(event),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&reports[..], [JobEvent::Chunk(r), JobEvent::Progress(p)]
        if r.chunk == 1 && p.chunks_done == 1 && p.remote_chunks == 1 && p.chunks_total == 3)
    );
    // A copy of the same result (a duplicate) is dropped without a word.
    let t2 = t0 + Duration::from_millis(70);
    assert!(n.handle(t2, remote_result(5, job, 1)).is_empty());
    let a = n.handle(t2, remote_result(5, job, 2));
    assert!(matches!(&a[..], [Action::Report { event: JobEvent::Chunk(r), .. }] if r.chunk == 2));
    // The owner's own chunk ends the job: last progress, assembly, Cancel down the tree.
    let a = n.handle(t0 + Duration::from_millis(80), computed_here(job, 0));
    assert!(matches!(&a[0], Action::Report { event: JobEvent::Chunk(r), .. } if r.chunk == 0));
    assert!(
        matches!(&a[1], Action::Send { link: 5, msg: Msg::Cancel { job: j } } if *j == job),
        "{a:?}"
    );
    assert!(
        matches!(&a[2], Action::Report { event: JobEvent::Progress(p), .. }
        if p.chunks_done == 3 && p.local_chunks == 1 && p.remote_chunks == 2)
    );
    let Action::Assemble {
        job: j, results, ..
    } = &a[3]
    else {
        panic!("not assembled: {a:?}");
    };
    assert_eq!(*j, job);
    assert_eq!(
        results.iter().map(|r| r.chunk).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(n.jobs.is_empty());
    // The statistics count the link's chunks.
    let a = n.handle(
        t0 + Duration::from_millis(90),
        Input::Tick { links: Vec::new() },
    );
    let Some(Action::Publish(stats)) = a.last() else {
        panic!("no statistics: {a:?}");
    };
    assert_eq!(stats.hosts[1].chunks_done, 2);
    assert_eq!(stats.hosts[0].chunks_done, 1);
}

#[test]
fn a_lost_link_s_chunks_come_back_to_the_front_of_the_queue() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    assert_eq!(steal(&mut n, t0, 5, job, 1), vec![(5, grant(job, &[1]))]);
    assert_eq!(n.jobs[&job].queue, [2]);
    let a = link_down(&mut n, t0, 5, "timed out");
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(n.jobs[&job].queue, [1, 2]);
    assert_eq!(n.jobs[&job].deaths[&1], 1);
    // A newcomer is told of the job and is handed the lost chunk first.
    let a = link_up(&mut n, t0, 6, 10);
    assert!(
        matches!(&sent(&a)[..], [(6, Msg::Announce { .. })]),
        "{a:?}"
    );
    assert_eq!(steal(&mut n, t0, 6, job, 1), vec![(6, grant(job, &[1]))]);
    // A result from the dead link's chunk that still comes (it is gone) is not taken.
    assert!(n.handle(t0, remote_result(5, job, 1)).is_empty());
}

/// The statistics tell the truth about who is in the pool: a lost helper is said once in a
/// notice (with the chunks it held, re-queued), shown lost and not counted; a member only
/// gossip knows is gone once gossip stops mentioning it; a node known only by its results
/// (a helper that was restarted is a new node) is gone once its results stop.
#[test]
fn a_lost_helper_is_noticed_shown_gone_and_not_counted() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    // Peer 9 (link 5) says it knows member 20, one link beyond it.
    msg(&mut n, t0, 5, Msg::Members(vec![idle_member(20, "far", 4)]));
    msg(&mut n, t0, 5, Msg::Steal { job, want: 1 });
    // A result computed by node 30 (known only by its results) comes through peer 9.
    let mut input = remote_result(5, job, 1);
    if let Input::Result { message, .. } = &mut input {
        message.by = (NodeId(30), 0);
    }
    n.handle(t0, input);
    let s = n.snapshot(t0);
    assert_eq!(s.reachable_hosts().count(), 4, "{:?}", s.hosts);
    assert!(s.notices.is_empty());

    // Nothing more from member 20 and node 30: gone after gossip's timeout, not before.
    let later = t0 + gone_after(2) - Duration::from_millis(100);
    let s = n.snapshot(later);
    assert_eq!(s.reachable_hosts().count(), 4, "{:?}", s.hosts);
    let s = n.snapshot(t0 + gone_after(2) + Duration::from_millis(100));
    let state = |id: u64| s.hosts.iter().find(|h| h.node == id).map(|h| h.state);
    assert_eq!(state(20), Some(HostState::Lost));
    assert_eq!(state(30), Some(HostState::Lost));
    assert_eq!(s.reachable_hosts().count(), 2, "{:?}", s.hosts);

    // Peer 9 holds chunk 2 and dies: said once, its chunk back in the queue.
    msg(&mut n, t0, 5, Msg::Steal { job, want: 1 });
    link_down(&mut n, t0, 5, "timed out");
    let s = n.snapshot(t0 + gone_after(2) + Duration::from_millis(100));
    assert_eq!(
        s.notices
            .iter()
            .map(|x| x.text.as_str())
            .collect::<Vec<_>>(),
        ["peer-9 lost (timed out): 1 of its chunks re-queued"]
    );
    assert_eq!(
        s.hosts.iter().find(|h| h.node == 9).map(|h| h.state),
        Some(HostState::Lost)
    );
    assert_eq!(s.reachable_hosts().count(), 1, "{:?}", s.hosts);
    // Notices are numbered and bounded.
    for k in 0..20 {
        link_up(&mut n, t0, 100 + k, 200 + k);
        link_down(&mut n, t0, 100 + k, "peer quit");
    }
    let s = n.snapshot(t0);
    assert_eq!(s.notices.len(), MAX_NOTICES);
    assert!(s.notices.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(s.notices.last().unwrap().text, "peer-219 lost (peer quit)");
}

/// A member whose link here dies stays lost though a neighbour that has not noticed yet
/// still gossips about it (the CI failure of 6 Dec: a killed helper, the notice said, shown
/// busy for seconds on a neighbour's stale word); news heard since the loss brings it back.
#[test]
fn stale_gossip_does_not_bring_back_a_member_whose_link_died() {
    let t0 = Instant::now();
    let mut n = node(1, 1, t0);
    link_up(&mut n, t0, 5, 9);
    link_up(&mut n, t0, 6, 7);
    let state = |n: &Node, t: Instant| {
        let s = n.snapshot(t);
        s.hosts.iter().find(|h| h.node == 9).map(|h| h.state)
    };
    let t1 = t0 + Duration::from_secs(2);
    link_down(&mut n, t1, 5, "timed out");
    assert_eq!(state(&n, t1), Some(HostState::Lost));
    // Peer 7 last heard of 9 half a second before the loss.
    let about_9 = |age_ms| MemberInfo {
        node: NodeId(9),
        name: "peer-9".into(),
        hops: 1,
        workers: 2,
        load: 1,
        busy: vec![1],
        age_ms,
    };
    let t2 = t1 + Duration::from_millis(300);
    msg(&mut n, t2, 6, Msg::Members(vec![about_9(800)]));
    assert_eq!(state(&n, t2), Some(HostState::Lost));
    // It heard from 9 after the loss: 9 is alive beyond 7.
    msg(&mut n, t2, 6, Msg::Members(vec![about_9(100)]));
    assert_eq!(state(&n, t2), Some(HostState::Busy));
}

#[test]
fn a_result_for_a_chunk_never_granted_to_the_link_closes_it() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    link_up(&mut n, t0, 6, 10);
    msg(&mut n, t0, 5, Msg::Steal { job, want: 1 });
    let a = n.handle(t0, remote_result(6, job, 1));
    let [
        Action::Close {
            link: 6,
            code,
            reason,
        },
    ] = &a[..]
    else {
        panic!("not closed: {a:?}");
    };
    assert_eq!(*code, close::PROTOCOL_VIOLATION);
    assert!(reason.contains("never granted"), "{reason}");
    assert!(!n.links.contains_key(&6));
    // The rightful holder's result still counts.
    let a = n.handle(t0, remote_result(5, job, 1));
    assert!(matches!(&a[..], [Action::Report { event: JobEvent::Chunk(r), .. }] if r.chunk == 1));
}

/// The mesh arrives at `n` from `link` and is indexed.
pub(super) fn mesh_arrives(n: &mut Node, now: Instant, link: LinkId, mesh: &Mesh) -> Vec<Action> {
    let m = mesh_arrived(n, now, link, mesh);
    mesh_indexed(n, now, m)
}

/// The mesh arrives at `n` from `link`: what `n` asks to have indexed.
pub(super) fn mesh_arrived(n: &mut Node, now: Instant, link: LinkId, mesh: &Mesh) -> Box<Mesh> {
    let mesh = Box::new(mesh.clone());
    let a = n.handle(now, Input::MeshArrived { link, mesh });
    let Some(Action::IndexMesh { mesh: m }) = a.into_iter().next() else {
        panic!("mesh not indexed");
    };
    m
}

/// `m` indexed for `n`: what `n` does with it ready.
pub(super) fn mesh_indexed(n: &mut Node, now: Instant, m: Box<Mesh>) -> Vec<Action> {
    let index = Arc::new(TriangleIndex::new(&m));
    let hash = m.hash();
    let mesh = Arc::from(m);
    n.handle(now, Input::MeshReady { hash, mesh, index })
}

#[test]
fn a_relay_passes_the_mesh_and_work_down_and_results_up_unchanged() {
    let t0 = Instant::now();
    let (mesh, _, spec) = model();
    let mut n = relay(t0);
    let job = job_of_1(1);
    msg(&mut n, t0, 1, announce(job, &spec, 7));
    // The child asks for the mesh before it is here: it is sent on arrival, once.
    let fetch = Msg::FetchMesh { hash: spec.mesh };
    assert!(msg(&mut n, t0, 2, fetch.clone()).is_empty());
    let a = mesh_arrives(&mut n, t0, 1, &mesh);
    assert!(matches!(&a[0], Action::SendMesh { link: 2, mesh: m } if m.hash() == spec.mesh));
    assert_eq!(sent(&a), vec![(1, Msg::Steal { job, want: 2 })]);
    assert!(msg(&mut n, t0, 2, fetch).is_empty());
    // The child's ask waits on the parent; NoWork from the parent is passed down.
    assert!(steal(&mut n, t0, 2, job, 2).is_empty());
    let a = msg(&mut n, t0, 1, Msg::NoWork { job });
    assert_eq!(sent(&a), vec![(2, Msg::NoWork { job })]);
    // 100 ms later it asks again; a grant feeds its worker first, then the child ...
    msg(&mut n, t0, 2, Msg::Steal { job, want: 2 });
    let t1 = t0 + Duration::from_millis(120);
    let a = n.handle(t1, Input::Tick { links: Vec::new() });
    assert_eq!(sent(&a), vec![(1, Msg::Steal { job, want: 4 })]);
    let a = msg(&mut n, t1, 1, grant(job, &[0, 1, 2]));
    assert_eq!(computed(&a), vec![0]);
    // ... and it asks for one more to have in hand.
    let passed = grant(job, &[1, 2]);
    assert_eq!(
        sent(&a),
        vec![(2, passed), (1, Msg::Steal { job, want: 1 })]
    );
    // A result from below goes up with who computed it; one computed here too.
    let a = n.handle(t1, remote_result(2, job, 1));
    let [Action::SendResult { link: 1, message }] = &a[..] else {
        panic!("not passed up: {a:?}");
    };
    assert_eq!((message.chunk, message.by), (1, (NodeId(9), 0)));
    let a = n.handle(t1, computed_here(job, 0));
    assert!(matches!(
        &a[0],
        Action::SendResult { link: 1, message } if message.chunk == 0 && message.by == (NodeId(2), 0)
    ));
    // The parent goes: the job ends here and below.
    let a = link_down(&mut n, t1, 1, "peer quit");
    assert_eq!(sent(&a), vec![(2, Msg::Cancel { job })]);
    assert!(n.jobs.is_empty());
}

/// Chunk `chunk` computed on this node's worker 0.
pub(super) fn computed_here(job: JobId, chunk: u32) -> Input {
    Input::Computed {
        task: ChunkTask {
            job,
            chunk,
            worker: 0,
        },
        seconds: 0.05,
        outcome: ChunkOutcome::Done(result(chunk)),
    }
}

#[test]
fn a_chunk_that_killed_three_holders_stays_home_and_an_idle_owner_copies_the_tail() {
    let t0 = Instant::now();
    let (mut n, job) = owner_with_child(t0);
    link_down(&mut n, t0, 5, "timed out");
    for link in [6, 7, 8] {
        link_up(&mut n, t0, link, link + 10);
        assert_eq!(
            steal(&mut n, t0, link, job, 1),
            vec![(link, grant(job, &[1]))]
        );
        link_down(&mut n, t0, link, "timed out");
    }
    assert_eq!(n.jobs[&job].deaths[&1], 3);
    // Chunk 1 is no longer handed out; chunk 2 is.
    link_up(&mut n, t0, 9, 19);
    assert_eq!(steal(&mut n, t0, 9, job, 2), vec![(9, grant(job, &[2]))]);
    // The owner's worker takes chunk 1 once it is free ...
    let t1 = t0 + Duration::from_millis(10);
    assert_eq!(computed(&n.handle(t1, computed_here(job, 0))), vec![1]);
    // ... and then, nothing queued, copies chunk 2, still out with link 9.
    assert_eq!(computed(&n.handle(t1, computed_here(job, 1))), vec![2]);
    // Link 9's result comes first and ends the job; the copy is dropped when it comes.
    let a = n.handle(t1, remote_result(9, job, 2));
    assert!(
        a.iter().any(|a| matches!(a, Action::Assemble { .. })),
        "{a:?}"
    );
    assert!(n.handle(t1, computed_here(job, 2)).is_empty());
}
