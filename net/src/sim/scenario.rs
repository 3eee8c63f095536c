//! Seeded scenarios for the [`World`]: a topology, jobs, faults at random times, and the
//! checks after the run. `MILLPOND_SIM_SEED=N` replays one seed with a trace of every input
//! and action.

use super::{Micros, Rng, World};
use crate::proto::LinkId;
use millpond_core::geom::Aabb;
use millpond_core::job::{DropSpec, Grid, JobContext, Operation};
use millpond_core::models::box_solid;
use millpond_core::sim_job::{Model, ProgramMoves, SimulationJob};
use millpond_core::toolpath::{MoveKind, Toolpath};
use millpond_core::{Axis, Cutter, JobSpec, Mesh, Point3, Rect, TriangleIndex};
use std::collections::BTreeMap;
use std::sync::Arc;

const MS: Micros = 1_000;
/// Every run's jobs must be over by then (virtual time).
const TIME_BOUND: Micros = 30_000 * MS;
/// After the jobs: time left for the pool to fall quiet.
const GRACE: Micros = 1_000 * MS;

/// Something the scenario does at a virtual time.
pub enum Fault {
    Submit {
        node: usize,
        variant: usize,
        bogus: bool,
    },
    DropLink {
        a: usize,
        b: usize,
    },
    Kill(usize),
    Leave {
        node: usize,
        back_after: Micros,
    },
    Rejoin {
        node: usize,
        neighbours: Vec<usize>,
    },
    Partition {
        side: Vec<bool>,
        heal_after: Micros,
    },
    Heal(Vec<(usize, usize)>),
    Delay {
        a: usize,
        b: usize,
        extra: Micros,
        lasts: Micros,
    },
    Undelay(Vec<LinkId>),
    /// Bounds of every live node's queues and caches.
    Check,
}

/// The mesh every job uses and a job of it: variant 0, 1, 2 or 3 (3, 5, 4 or 22 chunks of
/// drop-cutter grid), or 4 (a simulation of a raster program over the box, checked against
/// it: 4 chunks of tiles, and a program to fetch besides the mesh). The many-seed runs use
/// 0, 1, 2 and 4, the hostile peers' runs 3.
fn model(variant: usize) -> JobContext {
    let triangles = box_solid(Point3::new(2.0, 2.0, 0.0), Point3::new(8.0, 8.0, 3.0));
    let mesh = Arc::new(Mesh::from_triangles(triangles, "box").expect("a valid box"));
    let index = Arc::new(TriangleIndex::new(&mesh));
    if variant == 4 {
        return simulation(mesh, index);
    }
    let (size, step, sampling) = [
        (10.0, 1.0, 0.001),
        (10.0, 0.5, 0.0025),
        (12.0, 0.25, 0.005),
        (12.0, 0.04, 0.005),
    ][variant];
    let spec = JobSpec {
        mesh: mesh.hash(),
        cutter: Cutter::Ball { diameter: 3.0 },
        operation: Operation::Drop(DropSpec {
            grid: Grid {
                axis: if variant == 1 { Axis::Y } else { Axis::X },
                bounds: Rect::new(0.0, size, 0.0, size),
                step,
                sampling,
            },
            floor: 0.0,
        }),
    };
    JobContext::new(mesh, index, spec).expect("a valid job")
}

/// A ball raster 0.4 mm apart over the box, 0.25 mm above it, simulated on 12 × 12 mm of
/// stock 4 mm high in 0.05 mm cells.
pub(crate) fn simulation(mesh: Arc<Mesh>, index: Arc<TriangleIndex>) -> JobContext {
    let mut raster = Toolpath {
        start: Point3::new(0.0, 0.0, 6.0),
        moves: Vec::new(),
    };
    for j in 0..30 {
        let y = 0.4 * j as f64;
        raster.push(MoveKind::Rapid, Point3::new(0.0, y, 6.0));
        raster.push(MoveKind::Plunge, Point3::new(0.0, y, 0.25));
        for i in 1..=24 {
            let x = 0.5 * i as f64;
            let on_box = (2.0..=8.0).contains(&x) && (2.0..=8.0).contains(&y);
            let z = if on_box { 3.25 } else { 0.25 };
            raster.push(MoveKind::Cut, Point3::new(x, y, z));
        }
        raster.push(MoveKind::Rapid, Point3::new(12.0, y, 6.0));
    }
    let ball = Cutter::Ball { diameter: 3.0 };
    let program = Arc::new(ProgramMoves {
        passes: vec![(ball, raster)],
    });
    let stock = Aabb {
        min: Point3::new(0.0, 0.0, 0.0),
        max: Point3::new(12.0, 12.0, 4.0),
    };
    let model = Model {
        mesh: mesh.clone(),
        index: index.clone(),
        floor: 0.0,
    };
    let plan = SimulationJob::new(stock, 0.05, 64 << 20, program.clone(), Some(model), 0.01)
        .expect("a valid simulation");
    let spec = JobSpec {
        mesh: mesh.hash(),
        cutter: ball,
        operation: Operation::Simulate(plan.spec().expect("it has a model")),
    };
    JobContext::simulation(mesh, index, spec, program).expect("a valid simulation job")
}

pub fn inject(w: &mut World, f: Fault) {
    let now = w.now;
    let count = |w: &mut World, kind: &'static str| *w.count.faults.entry(kind).or_default() += 1;
    match f {
        Fault::Submit {
            node,
            variant,
            bogus,
        } => {
            let ctx = model(variant);
            let c0 = Some(super::run_chunk(&ctx, 0));
            let job = w.submit(node, ctx);
            let links = w.links_of(node);
            if bogus
                && !links.is_empty()
                && let (Some(job), Some(r)) = (job, c0)
            {
                // Right after the submit nothing was granted: a result is a violation.
                let (link, _) = links[w.rng.below(links.len())];
                count(w, "bogus result");
                w.bogus_result(node, link, job, r);
            }
        }
        Fault::DropLink { a, b } => {
            // Mid-job where possible: a link of the first node holding a job, from `a`.
            let n = w.nodes.len();
            let holds =
                |w: &World, i: usize| w.nodes[i].as_ref().is_some_and(|x| x.load().jobs > 0);
            let links = (0..n)
                .map(|k| (a + k) % n)
                .filter(|&i| holds(w, i))
                .map(|i| w.links_of(i))
                .find(|l| !l.is_empty())
                .unwrap_or_else(|| w.links_of(a));
            if !links.is_empty() {
                let (l, _) = links[b % links.len()];
                count(w, "link drop");
                w.drop_link(l, "timed out");
            }
        }
        Fault::Kill(node) => {
            // Mid-chunk where possible: the first node computing, counted from `node`.
            let n = w.nodes.len();
            let busy = |w: &World, i: usize| w.nodes[i].as_ref().is_some_and(|x| x.load().busy > 0);
            let pick = (0..n).map(|k| (node + k) % n).find(|&i| busy(w, i));
            let node = pick.unwrap_or(node);
            if w.alive(node) {
                count(
                    w,
                    if pick.is_some() {
                        "kill mid-chunk"
                    } else {
                        "kill"
                    },
                );
                w.kill(node, "timed out");
            }
        }
        Fault::Leave { node, back_after } => {
            if w.alive(node) {
                count(w, "leave+rejoin");
                let neighbours = w.links_of(node).into_iter().map(|(_, p)| p).collect();
                w.kill(node, "peer quit");
                w.fault_at(now + back_after, Fault::Rejoin { node, neighbours });
            }
        }
        Fault::Rejoin { node, neighbours } => {
            w.restart(node);
            for p in neighbours {
                w.connect(node, p);
            }
        }
        Fault::Partition { side, heal_after } => {
            let mut cut = Vec::new();
            for a in 0..w.nodes.len() {
                for (l, b) in w.links_of(a) {
                    if side[a] && !side[b] {
                        cut.push((a, b));
                        w.drop_link(l, "partition");
                    }
                }
            }
            if !cut.is_empty() {
                count(w, "partition+heal");
                w.fault_at(now + heal_after, Fault::Heal(cut));
            }
        }
        Fault::Heal(pairs) => {
            for (a, b) in pairs {
                w.connect(a, b);
            }
        }
        Fault::Delay { a, b, extra, lasts } => {
            // One of `a`'s links, both directions.
            let ours = w.links_of(a);
            let links: Vec<LinkId> = ours
                .get(b % ours.len().max(1))
                .map(|&(l, _)| vec![l, w.peer_end(l)])
                .unwrap_or_default();
            if !links.is_empty() {
                count(w, "delay");
                w.delayed_until = w.delayed_until.max(now + lasts + 2 * extra + 10 * MS);
                for &l in &links {
                    w.set_delay(l, extra);
                }
                w.fault_at(now + lasts, Fault::Undelay(links));
            }
        }
        Fault::Undelay(links) => {
            for l in links {
                w.set_delay(l, 0);
            }
        }
        Fault::Check => {
            for (i, n) in w.nodes.iter().enumerate() {
                let Some(n) = n else { continue };
                let l = n.load();
                let workers = 1 + i % 3;
                if l.queued > l.jobs * l.most_chunks
                    || l.busy > workers
                    || l.meshes > 1
                    || l.links >= w.nodes.len()
                {
                    w.errors
                        .push(format!("node {i} out of bounds at {now} µs: {l:?}"));
                }
            }
            if w.now < TIME_BOUND {
                w.fault_at(now + 100 * MS, Fault::Check);
            }
        }
    }
}

/// Edges of a connected topology of `n` nodes: chain, star, ring or random mesh.
fn topology(kind: usize, n: usize, rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut edges: Vec<(usize, usize)> = match kind {
        0 => (1..n).map(|i| (i - 1, i)).collect(),
        1 => (1..n).map(|i| (0, i)).collect(),
        2 => (0..n)
            .map(|i| (i, (i + 1) % n))
            .filter(|(a, b)| a != b)
            .collect(),
        _ => (1..n).map(|i| (rng.below(i), i)).collect(),
    };
    if kind == 3 {
        for _ in 0..n / 2 {
            let (a, b) = (rng.below(n), rng.below(n));
            if a != b {
                edges.push((a, b));
            }
        }
    }
    edges
}

pub const TOPOLOGIES: [&str; 4] = ["chain", "star", "ring", "mesh"];

/// What one seed did.
#[derive(Default)]
pub struct Outcome {
    pub nodes: usize,
    pub topology: &'static str,
    pub faults: BTreeMap<&'static str, u64>,
    pub jobs: usize,
    pub completed: usize,
    pub owner_lost: usize,
    pub msgs: u64,
    /// Chunks computed anywhere, and results carried up a link.
    pub computes: u64,
    pub results: u64,
    /// Simulations' programs carried over a link (fetched by a member for its job).
    pub programs: u64,
    /// Simulation jobs bound off the loop.
    pub bindings: u64,
    pub virtual_ms: u64,
    pub errors: Vec<String>,
}

/// Runs seed `seed`: a topology, one to three jobs, up to three faults, then the checks.
pub fn run_seed(seed: u64, trace: bool) -> Outcome {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let n = match seed % 100 {
        0 => 100,
        50 => 60,
        s if s % 10 == 5 => rng.range(17, 33) as usize,
        _ => rng.range(2, 13) as usize,
    };
    let kind = (seed % 4) as usize;
    let mut times: Vec<Micros> = (0..n).map(|_| rng.range(3 * MS, 15 * MS)).collect();
    let mut w = World::new(seed, vec![0; n]);
    w.trace = trace;
    if rng.chance(25) {
        let slow = rng.below(n);
        times[slow] *= 30;
        *w.count.faults.entry("slow node").or_default() += 1;
    }
    w.chunk_time = times;
    if rng.chance(15) {
        w.duplicate_percent = 5;
    }
    for (a, b) in topology(kind, n, &mut rng) {
        w.connect(a, b);
    }
    let jobs = rng.range(1, 4);
    for _ in 0..jobs {
        let t = rng.range(5 * MS, 40 * MS);
        let f = Fault::Submit {
            node: rng.below(n),
            variant: [0, 1, 2, 4][rng.below(4)],
            bogus: rng.chance(20),
        };
        w.fault_at(t, f);
    }
    for _ in 0..rng.range(0, 4) {
        let t = rng.range(10 * MS, 90 * MS);
        let node = rng.below(n);
        let other = rng.below(n);
        let f = match rng.below(5) {
            0 => Fault::DropLink { a: node, b: other },
            1 => Fault::Kill(node),
            2 => Fault::Leave {
                node,
                back_after: rng.range(50 * MS, 500 * MS),
            },
            3 => {
                let side = (0..n).map(|_| rng.chance(50)).collect();
                Fault::Partition {
                    side,
                    heal_after: rng.range(50 * MS, 800 * MS),
                }
            }
            _ => {
                let (a, b) = (node, other);
                Fault::Delay {
                    a,
                    b,
                    extra: rng.range(20 * MS, 400 * MS),
                    lasts: rng.range(50 * MS, 500 * MS),
                }
            }
        };
        w.fault_at(t, f);
    }
    w.fault_at(100 * MS, Fault::Check);
    let submitted_by = 40 * MS;
    let owed = |w: &World| {
        w.jobs.values().any(|r| {
            r.done.is_none() && w.alive(r.owner) && w.generation[r.owner] == r.owner_generation
        })
    };
    w.run(TIME_BOUND, &|w| w.now > submitted_by && !owed(w));
    let jobs_over = w.now;
    let quiet_from = jobs_over.max(w.delayed_until);
    w.run(quiet_from + GRACE, &|_| false);
    check(&mut w, jobs_over, quiet_from);
    let mut out = Outcome {
        nodes: n,
        topology: TOPOLOGIES[kind],
        faults: w.count.faults.clone(),
        jobs: w.jobs.len(),
        msgs: w.count.msgs + w.count.gossip,
        computes: w.count.computes,
        results: w.count.results,
        programs: w.count.programs,
        bindings: w.count.bindings,
        virtual_ms: w.now / MS,
        errors: std::mem::take(&mut w.errors),
        ..Outcome::default()
    };
    for r in w.jobs.values() {
        if r.done == Some(true) {
            out.completed += 1;
        } else if !(w.alive(r.owner) && w.generation[r.owner] == r.owner_generation) {
            out.owner_lost += 1;
        }
    }
    out
}

/// The checks after a run whose jobs were over at `jobs_over`.
/// Job traffic must stop within half the grace after `quiet_from` (the later of `jobs_over`
/// and the end of a delay fault's late arrivals).
fn check(w: &mut World, jobs_over: Micros, quiet_from: Micros) {
    let mut errors = Vec::new();
    for (id, r) in &w.jobs {
        let owner_ok = w.alive(r.owner) && w.generation[r.owner] == r.owner_generation;
        if owner_ok && r.done != Some(true) {
            errors.push(format!(
                "job {id} (owner {}) not completed by {} ms",
                r.owner,
                jobs_over / MS
            ));
        }
    }
    if jobs_over >= TIME_BOUND {
        errors.push(format!(
            "jobs still running at the time bound, {} ms",
            TIME_BOUND / MS
        ));
    }
    for (l, closed) in &w.bogus {
        if !closed {
            errors.push(format!("link {l}: a result never granted did not close it"));
        }
    }
    // Quiet after the jobs: no job traffic in the second half of the grace, nothing held.
    if w.count.last_job_traffic > quiet_from + GRACE / 2 {
        errors.push(format!(
            "job messages still flowing at {} µs",
            w.count.last_job_traffic
        ));
    }
    for (i, n) in w.nodes.iter().enumerate() {
        let Some(n) = n else { continue };
        let l = n.load();
        if l.jobs != 0 || l.busy != 0 || l.queued != 0 {
            errors.push(format!("node {i} still holds work after the grace: {l:?}"));
        }
    }
    // Bounded traffic: job messages per job and node, gossip per link end and quarter second.
    let (n, jobs) = (w.nodes.len() as u64, w.jobs.len().max(1) as u64);
    let job_bound = 60 * n * jobs + 200 * jobs * (1 + jobs_over / (100 * MS));
    if w.count.msgs > job_bound {
        errors.push(format!("{} job messages, bound {job_bound}", w.count.msgs));
    }
    let gossip_bound = w.count.ends * (w.now / (200 * MS) + 4);
    if w.count.gossip > gossip_bound {
        errors.push(format!(
            "{} gossip messages, bound {gossip_bound}",
            w.count.gossip
        ));
    }
    w.errors.extend(errors);
}

/// Runs seed `n` again with a trace of every input and action.
pub fn replay(seed: u64) -> Outcome {
    run_seed(seed, true)
}

#[test]
fn sim_many_seeds_over_topologies_and_faults() {
    if let Some(seed) = std::env::var("MILLPOND_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let out = replay(seed);
        assert!(out.errors.is_empty(), "seed {seed}: {:?}", out.errors);
        return;
    }
    let seeds: u64 = std::env::var("MILLPOND_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let started = std::time::Instant::now();
    let outcomes: Vec<(u64, Outcome)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                s.spawn(move || {
                    (0..seeds)
                        .filter(|seed| seed % 2 == t)
                        .map(|seed| {
                            let out = std::panic::catch_unwind(|| run_seed(seed, false))
                                .unwrap_or_else(|_| Outcome {
                                    errors: vec!["panicked".into()],
                                    ..Outcome::default()
                                });
                            (seed, out)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a sim thread"))
            .collect()
    });
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut failed = Vec::new();
    let (mut nodes, mut largest, mut jobs, mut completed, mut lost, mut msgs, mut vt) =
        (0, 0, 0, 0, 0, 0, 0);
    let (mut computes, mut results, mut programs, mut bindings) = (0, 0, 0, 0);
    let mut per_topology: BTreeMap<&str, u64> = BTreeMap::new();
    for (seed, o) in &outcomes {
        nodes += o.nodes;
        largest = largest.max(o.nodes);
        jobs += o.jobs;
        completed += o.completed;
        lost += o.owner_lost;
        msgs += o.msgs;
        computes += o.computes;
        results += o.results;
        programs += o.programs;
        bindings += o.bindings;
        vt += o.virtual_ms;
        *per_topology.entry(o.topology).or_default() += 1;
        for (k, v) in &o.faults {
            *faults.entry(k).or_default() += v;
        }
        if !o.errors.is_empty() {
            println!(
                "sim: seed {seed} FAILED (replay: MILLPOND_SIM_SEED={seed}): {:?}",
                o.errors
            );
            failed.push(*seed);
        }
    }
    println!(
        "sim: {} seeds, largest topology {largest} nodes, {nodes} nodes total, topologies {per_topology:?}, \
         faults {faults:?}, jobs completed {completed} of {jobs} ({lost} lost with their owner), \
         {computes} chunks computed, {results} results carried up a link, {programs} simulation \
         programs fetched, {bindings} simulations bound off the loop, {msgs} messages, {:.1} s virtual, {:.1} s wall",
        outcomes.len(),
        vt as f64 / 1000.0,
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
    // Simulations were among the jobs, and members fetched their programs to compute them.
    assert!(programs > 100, "{programs} programs fetched");
    // And bound them off the protocol loop, as the shell does (`Action::BindSimulation`).
    assert!(bindings > 100, "{bindings} simulations bound");
}
