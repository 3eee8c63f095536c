//! A simulation job is bound off the loop: a member checks the spec against the program by
//! planning its tiles again (`JobContext::simulation`), seconds for millions of moves, so the
//! protocol asks the shell to do it ([`Action::BindSimulation`]) and computes nothing of the
//! job until the answer ([`Input::SimulationBound`]) comes.

use super::tests::{announce, computed, grant, job_of_1, link_up, mesh_arrived, mesh_indexed};
use super::tests::{model, msg, node, sent};
use super::*;
use millpond_core::job::JobContext;

/// Node 2 below node 1 (link 1), told of node 1's simulation job and given its mesh and
/// program: the job, its context as the shell would bind it, and what the last input made
/// the node do.
fn told_and_given(n: &mut Node, now: Instant) -> (JobId, JobContext, Vec<Action>) {
    let (mesh, index, _) = model();
    let ctx = crate::sim::scenario::simulation(mesh.clone(), index);
    let spec = ctx.spec().clone();
    let program = ctx
        .simulation_job()
        .expect("a simulation")
        .program()
        .clone();
    link_up(n, now, 1, 1);
    let job = job_of_1(9);
    msg(n, now, 1, announce(job, &spec, 0));
    let m = mesh_arrived(n, now, 1, &mesh);
    // The mesh alone binds nothing: the program is still on its way.
    let a = mesh_indexed(n, now, m);
    assert!(
        !a.iter().any(|a| matches!(a, Action::BindSimulation(_))),
        "{a:?}"
    );
    let hash = program.hash();
    let a = n.handle(
        now,
        Input::ProgramArrived {
            link: 1,
            hash,
            program,
        },
    );
    (job, ctx, a)
}

#[test]
fn a_simulation_job_is_bound_off_the_loop_and_asks_for_work_once_bound() {
    let t0 = Instant::now();
    let mut n = node(2, 2, t0);
    let (job, ctx, a) = told_and_given(&mut n, t0);
    // Its inputs all here, the job goes to the shell to be bound, and nothing else happens
    // for it: no work asked for, nothing computed, no input fetched again.
    let binds: Vec<JobId> = a
        .iter()
        .filter_map(|a| match a {
            Action::BindSimulation(u) => Some(u.job),
            _ => None,
        })
        .collect();
    assert_eq!(binds, vec![job]);
    assert!(sent(&a).is_empty(), "{a:?}");
    assert!(computed(&a).is_empty());
    // A tick while it is being bound asks for nothing again.
    let a = n.handle(
        t0 + Duration::from_secs(30),
        Input::Tick { links: Vec::new() },
    );
    assert!(
        sent(&a)
            .iter()
            .all(|(_, m)| !matches!(m, Msg::Steal { .. } | Msg::FetchMesh { .. })),
        "{a:?}"
    );
    // Bound: it asks its parent for work, and computes what it is granted.
    let ctx = Ok(Box::new(ctx));
    let a = n.handle(t0, Input::SimulationBound { job, ctx });
    assert!(
        sent(&a)
            .iter()
            .any(|(l, m)| *l == 1 && matches!(m, Msg::Steal { job: j, .. } if *j == job)),
        "{a:?}"
    );
    let a = msg(&mut n, t0, 1, grant(job, &[0, 1]));
    assert_eq!(computed(&a), vec![0, 1]);
}

#[test]
fn a_simulation_its_inputs_do_not_make_stays_unbound_and_stale_answers_change_nothing() {
    let t0 = Instant::now();
    let mut n = node(2, 2, t0);
    let (job, ctx, _) = told_and_given(&mut n, t0);
    // An answer for a job never being bound is ignored.
    let other = job_of_1(10);
    let a = n.handle(
        t0,
        Input::SimulationBound {
            job: other,
            ctx: Ok(Box::new(ctx)),
        },
    );
    assert!(sent(&a).is_empty() && computed(&a).is_empty(), "{a:?}");
    assert!(!n.jobs.contains_key(&other));
    // Refused: the job stays unbound and computes nothing, even when granted work.
    let refused = Err("the simulation's plan is not the one its program gives".into());
    let a = n.handle(t0, Input::SimulationBound { job, ctx: refused });
    assert!(computed(&a).is_empty(), "{a:?}");
    assert!(n.jobs[&job].ctx.is_none() && !n.jobs[&job].binding);
    let a = msg(&mut n, t0, 1, grant(job, &[0]));
    assert!(computed(&a).is_empty(), "{a:?}");
}
