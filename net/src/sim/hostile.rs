//! Hostile peers in the simulated workshop (ARCHITECTURE.md §4.11): one that returns heights
//! 1 mm too high, one whose computations panic, one that keeps what it is granted. The owner
//! must assemble the local run's bits, name the liar, and never hang.

use super::scenario::Fault;
use super::{Behaviour, Micros, World};
use crate::stats::PoolStats;

const MS: Micros = 1_000;

/// Node `k` behaves as `behaviours[k]` and computes a chunk in `times[k]`; `edges` link them;
/// node 0 (one worker) submits a 22-chunk job at 5 ms. Runs until the job is over (assembled
/// or failed) or `limit`. Every node checks the default share of its peers' results.
fn run(
    seed: u64,
    behaviours: &[Behaviour],
    times: &[Micros],
    edges: &[(usize, usize)],
    limit: Micros,
) -> World {
    let verify = crate::proto::DEFAULT_VERIFY;
    run_verifying(seed, behaviours, times, edges, limit, verify)
}

/// [`run`] with each of `seeds`, 10 s at most, its job checked to be the local run's bits
/// (`what` and the seed name a run that is not): each seed with its world.
fn local_runs<'a>(
    seeds: std::ops::Range<u64>,
    what: &'a str,
    behaviours: &'a [Behaviour],
    times: &'a [Micros],
    edges: &'a [(usize, usize)],
) -> impl Iterator<Item = (u64, World)> + 'a {
    seeds.map(move |seed| {
        let w = run(seed, behaviours, times, edges, 10_000 * MS);
        assert_local_bits(&w, &format!("{what}seed {seed}"));
        (seed, w)
    })
}

/// As [`run`], every node checking `verify` of its peers' results.
fn run_verifying(
    seed: u64,
    behaviours: &[Behaviour],
    times: &[Micros],
    edges: &[(usize, usize)],
    limit: Micros,
    verify: f64,
) -> World {
    let mut w = workshop(seed, behaviours, times, edges, verify);
    let over = |w: &World| {
        !w.failed.is_empty() || (!w.jobs.is_empty() && w.jobs.values().all(|r| r.done.is_some()))
    };
    w.run(limit, &over);
    // A few ticks more, for the owner's statistics.
    let end = w.now + 120 * MS;
    w.run(end, &|_| false);
    w
}

/// The nodes of [`run`], linked, node 0's job due at 5 ms; nothing run yet.
fn workshop(
    seed: u64,
    behaviours: &[Behaviour],
    times: &[Micros],
    edges: &[(usize, usize)],
    verify: f64,
) -> World {
    let mut w = World::new(seed, times.to_vec());
    w.trace = std::env::var_os("MILLPOND_SIM_TRACE").is_some();
    w.behaviour = behaviours.to_vec();
    for n in w.nodes.iter_mut().flatten() {
        n.set_verify(verify);
    }
    for &(a, b) in edges {
        w.connect(a, b);
    }
    w.fault_at(
        5 * MS,
        Fault::Submit {
            node: 0,
            variant: 3,
            bogus: false,
        },
    );
    w
}

fn owner_stats(w: &World) -> &PoolStats {
    w.published.get(&0).expect("the owner published statistics")
}

fn notices(w: &World) -> Vec<String> {
    owner_stats(w)
        .notices
        .iter()
        .map(|n| n.text.clone())
        .collect()
}

/// The job was assembled, identical to the local run.
fn assert_local_bits(w: &World, what: &str) {
    let done: Vec<Option<bool>> = w.jobs.values().map(|r| r.done).collect();
    assert_eq!(done, [Some(true)], "{what}: {:?}", w.errors);
}

#[test]
fn sim_a_peer_returning_heights_1_mm_high_is_caught_and_none_of_them_is_assembled() {
    let behaviours = [Behaviour::Honest, Behaviour::Liar, Behaviour::Honest];
    let times = [5 * MS, 3 * MS, 8 * MS];
    for (seed, w) in local_runs(0..40, "", &behaviours, &times, &[(0, 1), (0, 2)]) {
        assert!(w.started[1] > 0, "seed {seed}: the liar computed nothing");
        let convicted: Vec<usize> = w.convictions.iter().map(|(n, _)| *n).collect();
        assert!(
            !convicted.is_empty() && convicted.iter().all(|&n| n == 1),
            "seed {seed}: convicted {:?}",
            w.convictions
        );
        let said = notices(&w);
        assert!(
            said.iter()
                .any(|t| t.starts_with("sim-1 ") && t.contains("wrong result")),
            "seed {seed}: {said:?}"
        );
        let row = owner_stats(&w).hosts.iter().find(|h| h.name == "sim-1");
        assert!(
            row.is_some_and(|h| h.wrong_results >= 1),
            "seed {seed}: {row:?}"
        );
        // The honest helper is never blamed.
        assert!(!said.iter().any(|t| t.starts_with("sim-2 ")), "{said:?}");
    }
}

#[test]
fn sim_a_relay_carrying_a_liar_s_results_is_cut_off_and_the_output_is_still_the_local_run() {
    let behaviours = [Behaviour::Honest, Behaviour::Honest, Behaviour::Liar];
    let times = [5 * MS, 4 * MS, 3 * MS];
    local_runs(0..20, "", &behaviours, &times, &[(0, 1), (1, 2)]).for_each(drop);
}

#[test]
fn sim_with_sampling_off_a_liar_s_backup_copy_still_convicts_it() {
    // No sample drawn: the owner's copy of the liar's chunk (the tail, when it is idle) is
    // compared with the liar's when both arrive.
    let behaviours = [Behaviour::Honest, Behaviour::Liar];
    let mut caught = 0;
    for seed in 0..20 {
        let mut w = workshop(seed, &behaviours, &[2 * MS, 40 * MS], &[(0, 1)], 0.0);
        w.run(10_000 * MS, &|w| {
            !w.jobs.is_empty() && w.jobs.values().all(|r| r.done.is_some())
        });
        // Sampling off, a liar's result the owner never copied is taken: that is what 0
        // means. Once caught, everything it delivered is out again.
        if !w.convictions.is_empty() {
            assert_local_bits(&w, &format!("seed {seed}"));
            caught += 1;
        }
    }
    assert!(caught > 0, "no backup copy ever caught the liar");
}

#[test]
fn sim_panicking_computations_are_requeued_and_the_job_completes() {
    use crate::proto::MAX_LINK_FAILURES;
    // A helper whose every computation panics: its chunks come back, and after three
    // failures it gets no more of the job (the owner hands out at most eight chunks at a
    // time to its two workers, and had two failures back before the third: ten at most);
    // the job is the local run.
    let hold = crate::proto::HOLD_PER_WORKER;
    let (honest, panics) = (Behaviour::Honest, Behaviour::Panics(u32::MAX));
    let mut most = 0;
    let times = [5 * MS, 3 * MS, 8 * MS];
    let star = [honest, panics, honest];
    for (seed, w) in local_runs(0..20, "", &star, &times, &[(0, 1), (0, 2)]) {
        let said = notices(&w);
        assert!(
            said.iter().any(|t| t.contains("failed on sim-1")),
            "seed {seed}: {said:?}"
        );
        assert!(
            said.iter().any(|t| t.starts_with("sim-1 ")
                && t.contains(&format!("failed {MAX_LINK_FAILURES} chunks of job"))
                && t.contains("given no more of it")),
            "seed {seed}: {said:?}"
        );
        let bound = MAX_LINK_FAILURES - 1 + 2 * hold;
        assert!(
            w.started[1] <= bound,
            "seed {seed}: the panicking helper computed {} chunks",
            w.started[1]
        );
        most = most.max(w.started[1]);
    }
    eprintln!("a panicking helper computed {most} chunks at most, of 22");
    // Behind a relay: its failures go up the tree to the owner, and the relay gives it no
    // more of the job after three (it has three workers: fourteen at most).
    let times = [5 * MS, 4 * MS, 3 * MS];
    let chain = [honest, honest, panics];
    for (seed, w) in local_runs(0..10, "chain, ", &chain, &times, &[(0, 1), (1, 2)]) {
        let relay: Vec<&str> = w.published[&1]
            .notices
            .iter()
            .map(|n| n.text.as_str())
            .collect();
        assert!(
            relay
                .iter()
                .any(|t| t.starts_with("sim-2 ") && t.contains("given no more of it")),
            "chain, seed {seed}: {relay:?}"
        );
        assert!(
            w.started[2] <= MAX_LINK_FAILURES - 1 + 3 * hold,
            "chain, seed {seed}"
        );
    }
    // The owner alone, its first two computations panicking: re-queued, then done.
    let w = run(1, &[Behaviour::Panics(2)], &[5 * MS], &[], 10_000 * MS);
    assert_local_bits(&w, "owner alone");
    // A chunk that panics every time, with nobody else to compute it: the job fails with the
    // panic's words after three tries, well before the time limit: no hang.
    let w = run(
        2,
        &[Behaviour::Panics(u32::MAX)],
        &[5 * MS],
        &[],
        10_000 * MS,
    );
    assert_eq!(w.failed.len(), 1, "{:?}", w.errors);
    assert!(
        w.failed[0].1.contains("failed 3 times here: panicked"),
        "{:?}",
        w.failed
    );
    assert!(w.now < 1_000 * MS, "took {} µs", w.now);
}

#[test]
fn sim_a_silent_peer_s_grants_expire_and_are_computed_elsewhere() {
    // The owner is slow (1 s a chunk), helper 2 fast, helper 1 never answers. Without expiry
    // the owner would copy helper 1's chunks itself, one a second (done after 4 s); with it,
    // they go to helper 2 once held ~16 times its pace plus 2 s. Checks off: each would cost
    // this slow owner a second of its own (how many depends on the job's random id), which
    // is not what is measured here.
    for seed in 0..10 {
        let behaviours = [Behaviour::Honest, Behaviour::Silent, Behaviour::Honest];
        let times = [1_000 * MS, 3 * MS, 5 * MS];
        let edges = [(0, 1), (0, 2)];
        let w = run_verifying(seed, &behaviours, &times, &edges, 20_000 * MS, 0.0);
        assert_local_bits(&w, &format!("seed {seed}"));
        let said = notices(&w);
        assert!(
            said.iter()
                .any(|t| t.starts_with("sim-1 held") && t.contains("far longer than its pace")),
            "seed {seed}: {said:?}"
        );
        let assembled = w.now - 120 * MS;
        assert!(
            assembled < 3_000 * MS,
            "seed {seed}: assembled at {} ms",
            assembled / MS
        );
    }
}
