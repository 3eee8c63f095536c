//! End-to-end tests of the compute pool with real processes on loopback: `millpond serve`
//! children linked in chains, stars and loops, with this test process as one more member
//! (`millpond_net::Pool`). Jobs must give the same bits as a local run whoever computed them,
//! through relays, killed workers, killed relays, a killed owner and a clean shutdown; wrong
//! secrets, version mismatches and misbehaving raw peers are refused without taking the server
//! down. One test runs the pool across a veth pair between two network namespaces, another
//! finds members by LAN discovery on a bridge between namespaces (root only).
//!
//! Every child is killed when its test ends (pass or fail), every wait has a deadline, and
//! every server listens on 127.0.0.1 port 0 (its real port is read from its log), so tests
//! running in parallel never collide.

use millpond_core::job::{COMPUTE_ABI, ChunkResult, JobOutput};
use millpond_core::runner::{Executor, Local, Progress, RunError, RunEvent};
use millpond_core::{CancelToken, Cutter, JobContext};
use millpond_net::wire::{self, BulkHeader, JobId, Msg, NodeId, PROTOCOL_VERSION};
use millpond_net::{Pool, RemoteState};
use millpond_tests::pool::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ----- topologies -----

/// `millpond serve` members B and A (A dialling B), and O dialling A once it sees both:
/// O → A → B.
fn chain(c: &mut Cluster) -> Pool {
    let b = c.serve("B", &[]);
    let a = c.serve("A", &[b]);
    owner(&[a], &["A"], &["B"])
}

/// `millpond serve` members A, B and C, and O in the middle dialling each of them.
fn star(c: &mut Cluster) -> Pool {
    let addrs: Vec<SocketAddr> = ["A", "B", "C"].iter().map(|n| c.serve(n, &[])).collect();
    owner(&addrs, &["A", "B", "C"], &[])
}

/// O (here, 1 worker) → A → B: B is two hops away, so its work flows through the relay A.
#[test]
fn chain_of_three_relays_work() {
    let (spec, want, mut c, t0) = prepare("chain", dense_spec());
    let o = chain(&mut c);
    let run = run_identical(&o, &spec, &want);
    assert!(
        run.last.remote_chunks > 0,
        "nothing came from the pool: {:?}",
        run.last
    );
    assert_eq!(run.last.chunks_done, run.last.chunks_total);
    let b_chunks = c.wait_computed("B", 1);
    let a_chunks = c.wait_computed("A", 1);
    assert!(b_chunks[0] > 0, "B (two hops away) computed nothing");
    for n in ["A", "B"] {
        assert_clean_log(n, &c.log(n));
    }
    eprintln!(
        "chain: job {}, A {a_chunks:?}, B {b_chunks:?}; test {:.1} s",
        run.summary(),
        t0.elapsed().as_secs_f64()
    );
}

/// O in the middle, dialling A, B and C: all of them compute.
#[test]
fn star_of_four_shares_work() {
    let (spec, want, mut c, t0) = prepare("star", dense_spec());
    let o = star(&mut c);
    let run = run_identical(&o, &spec, &want);
    let mut per = Vec::new();
    for n in ["A", "B", "C"] {
        let chunks = c.wait_computed(n, 1);
        assert!(chunks[0] > 0, "{n} computed nothing");
        assert_clean_log(n, &c.log(n));
        per.push(chunks[0]);
    }
    eprintln!(
        "star: job {:.2} s, O {} local, A/B/C {per:?}; test {:.1} s",
        run.elapsed.as_secs_f64(),
        run.last.local_chunks,
        t0.elapsed().as_secs_f64()
    );
}

/// The command line and the window run a job through one interface, `Executor`, whether this
/// computer's cores or the pool compute it: both report every chunk exactly once and a
/// progress that ends at the job's size, give the same bits, and stop at a cancel.
#[test]
fn local_cores_and_the_pool_run_a_job_through_one_executor() {
    let spec = dense_spec();
    let (mesh, index) = model();
    let job = JobContext::new(mesh.clone(), index.clone(), spec.clone()).unwrap();
    let total = spec.chunk_count();
    let mut c = Cluster::new("executor");
    let a = c.serve("A", &[]);
    let pool = owner(&[a], &["A"], &[]);
    let local = Local { threads: 2 };
    let executors: [(&str, &dyn Executor); 2] = [("local", &local), ("pool", &pool)];
    let mut outputs = Vec::new();
    for (name, executor) in executors {
        let chunks = Mutex::new(Vec::new());
        let last = Mutex::new(Progress::default());
        let timed = Mutex::new(0u32);
        let output = executor
            .run(&job, &CancelToken::new(), &|event| match event {
                RunEvent::Chunk(r) => chunks.lock().unwrap().push(r.chunk),
                RunEvent::Progress { progress, worker } => {
                    let mut l = last.lock().unwrap();
                    if progress.chunks_done >= l.chunks_done {
                        *l = progress;
                    }
                    if let Some(w) = worker {
                        assert!(w.worker < 2 && w.compute_s >= 0.0, "{name}: {w:?}");
                        *timed.lock().unwrap() += 1;
                    }
                }
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut chunks = chunks.into_inner().unwrap();
        chunks.sort_unstable();
        assert_eq!(chunks, (0..total).collect::<Vec<_>>(), "{name}: chunks");
        let last = last.into_inner().unwrap();
        assert_eq!(last.chunks_total, total, "{name}: {last:?}");
        assert_eq!(last.points_total, spec.points_total(), "{name}: {last:?}");
        assert!(
            last.chunks_done <= total && last.elapsed_s > 0.0,
            "{name}: {last:?}"
        );
        let timed = timed.into_inner().unwrap();
        if name == "local" {
            // Every chunk computed here, each by a named worker.
            assert_eq!((last.chunks_done, last.local_chunks), (total, total));
            assert_eq!(last.points_done, last.points_total);
            assert_eq!(timed, total);
        } else {
            assert_eq!(timed, 0, "the pool counts its own workers");
        }
        outputs.push(output);
    }
    assert_identical(&outputs[1], &outputs[0]);
    assert_identical(&outputs[0], &reference(&spec));

    // A cancel after the first chunk stops either executor at once.
    for (name, executor) in executors {
        let cancel = CancelToken::new();
        let t = Mutex::new(None);
        let result = executor.run(&job, &cancel, &|event| {
            if let RunEvent::Chunk(_) = event {
                cancel.cancel();
                t.lock().unwrap().get_or_insert_with(Instant::now);
            }
        });
        let latency = t.into_inner().unwrap().expect("a chunk came").elapsed();
        assert!(
            matches!(result, Err(RunError::Cancelled)),
            "{name}: {result:?}"
        );
        assert!(
            latency < Duration::from_secs(1),
            "{name}: returned {latency:?} after the cancel"
        );
    }
    pool.shutdown();
}

/// Rest roughing is assembled by the job's owner from the material the earlier operation
/// left, which never crosses the wire: through the pool it gives the local toolpath bit for
/// bit, and it is not the full roughing.
#[test]
fn rest_roughing_through_the_pool_is_the_local_one() {
    use millpond_core::rest::RestMaterial;
    use millpond_core::setup::{RoughingParams, Setup, Stock, Strategy};
    let t0 = Instant::now();
    let (mesh, index) = model();
    let setup = Setup::new(
        mesh.hash(),
        mesh.bounds(),
        &Stock::around_model(3.0, 1.0, 0.0),
    )
    .unwrap();
    let rough = |diameter, rest| {
        let p = RoughingParams {
            rest,
            ..RoughingParams::default()
        };
        setup
            .plan(&Strategy::Roughing(p), Cutter::Flat { diameter })
            .unwrap()
    };
    let local = Local { threads: 2 };
    let run = |ctx: &JobContext, e: &dyn Executor| match e
        .run(ctx, &CancelToken::new(), &|_| {})
        .unwrap()
    {
        JobOutput::Toolpath(tp) => tp,
        other => panic!("not a toolpath: {other:?}"),
    };
    let big = run(
        &JobContext::new(mesh.clone(), index.clone(), rough(6.0, None)).unwrap(),
        &local,
    );
    let spec = rough(2.0, Some(0.1));
    let material = RestMaterial::left_by(
        &setup,
        &[(Cutter::Flat { diameter: 6.0 }, &big)],
        &spec,
        mesh,
        index,
        &CancelToken::new(),
    )
    .unwrap()
    .expect("a rest job");
    let bare = JobContext::new(mesh.clone(), index.clone(), spec.clone()).unwrap();
    let err = local.run(&bare, &CancelToken::new(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("rest roughing needs"), "{err}");
    let job = bare.with_rest(Arc::new(material)).unwrap();
    let want = run(&job, &local);
    let full = run(
        &JobContext::new(mesh.clone(), index.clone(), rough(2.0, None)).unwrap(),
        &local,
    );
    let cut = |tp: &millpond_core::Toolpath| {
        let mut from = tp.start;
        let mut length = 0.0;
        for m in &tp.moves {
            if m.kind != millpond_core::toolpath::MoveKind::Rapid {
                length += (m.to - from).length();
            }
            from = m.to;
        }
        length
    };
    eprintln!(
        "rest roughing: {} moves, {:.0} mm at feed; full: {} moves, {:.0} mm",
        want.moves.len(),
        cut(&want),
        full.moves.len(),
        cut(&full)
    );
    assert!(cut(&want) * 2.0 < cut(&full), "rest {want:?}");

    eprintln!("local runs: {:.2} s", t0.elapsed().as_secs_f64());
    let mut c = Cluster::new("rest");
    let a = c.serve("A", &[]);
    let pool = owner(&[a], &["A"], &[]);
    let t = Instant::now();
    let got = run(&job, &pool);
    eprintln!(
        "rest roughing in the pool: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_identical(&JobOutput::Toolpath(got), &JobOutput::Toolpath(want));
    pool.shutdown();
}

/// Issue 14 point 5: a stock simulation is a job like any other. Its tiles are chunks
/// computed by `millpond serve` members A and B (B behind A) beside the owner's one worker,
/// its program fetched by each as a second input beside the mesh, and the machined stock and
/// every figure are the bits a local run gives.
#[test]
fn a_simulation_through_the_pool_is_the_local_one() {
    use millpond_core::sim_job::{Model, ProgramMoves, SimulationJob};
    use millpond_core::simulate::{Pass, PassFeeds};
    let (mesh, index) = model();
    let JobOutput::Toolpath(raster) = &*reference(&raster_spec(0.5, 0.25)) else {
        panic!("a raster gives a toolpath")
    };
    let passes = [Pass {
        name: "raster",
        tool_number: 1,
        cutter: Cutter::Ball { diameter: 3.0 },
        toolpath: raster,
        feeds: PassFeeds::Operation(millpond_core::Feeds::default()),
        lines: None,
    }];
    let b = mesh.bounds();
    let stock = millpond_core::Aabb {
        min: b.min - millpond_core::Point3::new(2.0, 2.0, 0.0),
        max: b.max + millpond_core::Point3::new(2.0, 2.0, 1.0),
    };
    let model = Model {
        mesh: mesh.clone(),
        index: index.clone(),
        floor: b.min.z,
    };
    let program = Arc::new(ProgramMoves::of(&passes));
    let job = SimulationJob::new(stock, 0.05, 1 << 30, program, Some(model), 1e-3).unwrap();
    let ctx = JobContext::of_simulation(job).unwrap();
    let sim = ctx.simulation_job().unwrap().clone();
    let finish = |out: JobOutput| match out {
        JobOutput::Stock(chunks) => sim.finish(chunks, &passes).unwrap(),
        other => panic!("not stock: {other:?}"),
    };
    let run = |e: &dyn Executor| finish(e.run(&ctx, &CancelToken::new(), &|_| {}).unwrap());
    let (want, want_figures) = run(&Local { threads: 2 });
    assert!(want_figures[0].0.removed_mm3 > 0.0 && want_figures[0].1.is_some());

    let mut c = Cluster::new("simulate");
    let a = c.serve("A", &[]);
    let _b = c.serve("B", &[a]);
    let pool = owner(&[a], &["A"], &["B"]);
    let t = Instant::now();
    let (got, figures) = run(&pool);
    let by = (computed_by(&pool, "A"), computed_by(&pool, "B"));
    eprintln!(
        "simulation of {} moves in {} chunks in the pool: {:.2} s, chunks by A {}, by B {}",
        raster.moves.len(),
        ctx.spec().chunk_count(),
        t.elapsed().as_secs_f64(),
        by.0,
        by.1
    );
    assert!(
        by.0 + by.1 > 0,
        "no member computed a tile: {}",
        describe_hosts(&pool.stats())
    );
    assert!(got.heights() == want.heights(), "the pool's stock differs");
    assert_eq!(figures, want_figures);
    pool.shutdown();
}

/// A loop O–A–B–C–O: every job reaches each member by two paths. Announcements are taken
/// up once (each member ends each job exactly once), and the results are identical.
#[test]
fn loop_topology_gives_identical_results() {
    let (spec, want, mut c, t0) = prepare("loop", dense_spec());
    let cc = c.serve("C", &[]);
    let b = c.serve("B", &[cc]);
    let a = c.serve("A", &[b]);
    let o = owner(&[a, cc], &["A", "C"], &["B"]);
    let mut times = Vec::new();
    for round in 1..=2 {
        let run = run_identical(&o, &spec, &want);
        assert!(run.last.remote_chunks > 0);
        times.push(run.elapsed.as_secs_f64());
        for n in ["A", "B", "C"] {
            c.wait_computed(n, round);
        }
    }
    // Give a late duplicate take-up a moment to show.
    std::thread::sleep(Duration::from_millis(300));
    let mut per = Vec::new();
    for n in ["A", "B", "C"] {
        let chunks = c.computed(n);
        assert_eq!(
            chunks.len(),
            2,
            "{n} ended a job more than once: {chunks:?}"
        );
        assert_clean_log(n, &c.log(n));
        per.push(chunks);
    }
    assert!(
        per.iter().all(|p| p.iter().sum::<u32>() > 0),
        "a member of the loop computed nothing: {per:?}"
    );
    // Content-addressed meshes: over two jobs on the same model, the mesh crossed each of
    // O's links at most once (and the members that needed it got it).
    let hosts = o.stats().hosts;
    for h in hosts.iter().filter(|h| h.hops == 1) {
        assert!(
            h.meshes_out <= 1,
            "mesh sent {} times to {}",
            h.meshes_out,
            h.name
        );
        assert_eq!(h.meshes_in, 0, "O never needs a mesh from {}", h.name);
    }
    assert!(hosts.iter().any(|h| h.hops == 1 && h.meshes_out == 1));
    eprintln!(
        "loop: jobs {times:.2?} s, A/B/C {per:?}; test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

// ----- failures -----

/// Chunks that `name` delivered to the owner `o` (its host row's count; 0 without one).
fn delivered_by(o: &Pool, name: &str) -> u64 {
    o.stats()
        .hosts
        .iter()
        .find(|h| h.name == name)
        .map_or(0, |h| h.chunks_done)
}

/// A dense job that lost a member mid-way, in its test's cluster, computed identically within
/// [`after_kill_limit`] of the kill.
struct KilledMidJob {
    c: Cluster,
    o: Pool,
    run: JobRun,
    /// Chunks done at the kill.
    done: u32,
    /// What the kill's trigger counted then.
    count: u64,
    /// How long after the kill the job ended.
    after: Duration,
    t0: Instant,
}

/// Runs the dense job with the members `topology` starts (and O, which it returns) and
/// SIGKILLs `victim` mid-job: once 30 % of the chunks are done and `ready` gives a count (a
/// measure of what the pool did so far). Checks the output is the local run's bits and came
/// within [`after_kill_limit`] of the kill.
fn kill_mid_job(
    tag: &str,
    topology: fn(&mut Cluster) -> Pool,
    victim: &str,
    ready: impl Fn(&Pool, &Progress) -> Option<u64>,
) -> KilledMidJob {
    let (spec, want, mut c, t0) = prepare(tag, dense_spec());
    let o = topology(&mut c);
    let mut killed_at = None;
    let run = run_job(&o, &spec, |p| {
        if killed_at.is_none()
            && p.chunks_done * 10 >= p.chunks_total * 3
            && let Some(count) = ready(&o, p)
        {
            c.kill(victim);
            killed_at = Some((Instant::now(), p.chunks_done, count));
        }
    });
    let (at, done, count) =
        killed_at.unwrap_or_else(|| panic!("{victim} was never killed mid-job"));
    let after = at.elapsed();
    assert_identical(&run.output, &want);
    let limit = after_kill_limit(&spec);
    assert!(
        after < limit,
        "the job took {after:?} after the kill (limit {limit:?})"
    );
    KilledMidJob {
        c,
        o,
        run,
        done,
        count,
        after,
        t0,
    }
}

impl KilledMidJob {
    /// The test's report: `what` was killed at how many chunks done (`detail` on what the
    /// pool had done), and the job's and the test's times.
    fn report(&self, what: &str, detail: &str) {
        eprintln!(
            "{what} at {}/{} ({detail}); job {:.2} s, {:.2} s after the kill; test {:.1} s",
            self.done,
            self.run.last.chunks_total,
            self.run.elapsed.as_secs_f64(),
            self.after.as_secs_f64(),
            self.t0.elapsed().as_secs_f64()
        );
    }
}

/// SIGKILL a worker that holds chunks mid-job: the job completes, identical, in about the
/// job's time plus the 4 s idle timeout at most.
#[test]
fn killed_worker_chunks_are_recomputed() {
    // Once B has delivered a chunk.
    let k = kill_mid_job("killworker", star, "B", |o, _| {
        let delivered = delivered_by(o, "B");
        (delivered > 0).then_some(delivered)
    });
    // The owner says so once it notices (the window's status bar shows its notices; the job
    // may have finished on backup copies first, then no chunk is left to re-queue) and no
    // longer counts B: its row stays, lost, for what it computed.
    let stats = wait_until(
        "the owner notices B is gone",
        Duration::from_secs(15),
        || {
            let stats = k.o.stats();
            let said: Vec<String> = stats.notices.iter().map(|n| n.text.clone()).collect();
            if said.iter().any(|t| t.starts_with("B lost")) {
                Ok(stats)
            } else {
                Err(format!("notices: {said:?}"))
            }
        },
    );
    let b = stats.hosts.iter().find(|h| h.name == "B").expect("B's row");
    assert_eq!(b.state, millpond_net::HostState::Lost, "{b:?}");
    assert_eq!(stats.reachable_hosts().count(), 3, "{:?}", stats.hosts);
    k.report(
        "kill worker: killed B",
        &format!("it had delivered {}", k.count),
    );
}

/// O–A–B, SIGKILL the relay A mid-job: everything A and B held is recomputed; identical.
#[test]
fn killed_relay_chunks_are_recomputed() {
    // Once chunks came from the pool.
    let mut k = kill_mid_job("killrelay", chain, "A", |_, p| {
        (p.remote_chunks > 0).then_some(u64::from(p.remote_chunks))
    });
    // B lost its parent: the job is over there too.
    let b_chunks = k.c.wait_computed("B", 1);
    assert!(k.c.running("B"), "B died with its relay");
    k.report(
        "kill relay: killed A",
        &format!("{} from the pool; B {b_chunks:?}", k.count),
    );
}

/// The owner (`millpond toolpath --pool S1`, with S2 behind S1) is SIGKILLed mid-job: S1 and
/// S2 drop the job within a few seconds and keep serving.
#[test]
fn killed_owner_jobs_end_and_servers_keep_serving() {
    let (spec, want, mut c, t0) = prepare("killowner", dense_spec());
    let debug = [("MILLPOND_LOG", "info,millpond_net=debug")];
    let s2 = c.serve_with("S2", &[], "secret", &debug);
    let s1 = c.serve_with("S1", &[s2], "secret", &debug);
    // Wait until S1–S2 is linked, so that the job reaches S2.
    c.wait_log("S1", "linked to S2", Duration::from_secs(10));
    let mut cmd = c.command("owner");
    // A bigger job than elsewhere, so that it is surely still running at the kill.
    cmd.args([
        "toolpath",
        "default-part.stl",
        "--tool",
        "ball:3",
        "--stepover",
        "0.025",
        "--sampling",
        "0.02",
        "--threads",
        "1",
        "-o",
        "owner.ngc",
        "--pool",
        &s1.to_string(),
        "--secret-file",
    ])
    .arg(c.secret_file());
    c.spawn("owner", cmd);
    c.wait_log("S2", "announced by link", Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        c.running("owner"),
        "the owner finished before it could be killed"
    );
    c.kill("owner");
    let killed = Instant::now();
    assert!(
        !c.path("owner.ngc").exists(),
        "the owner wrote its output before the kill"
    );
    let mut ended = Vec::new();
    for n in ["S1", "S2"] {
        let chunks = c.wait_computed(n, 1);
        ended.push((n, killed.elapsed(), chunks[0]));
    }
    for (n, t, _) in &ended {
        assert!(
            *t < Duration::from_secs(8),
            "{n} kept the dead owner's job for {t:?}"
        );
    }
    assert!(c.running("S1") && c.running("S2"));
    // They keep serving.
    let o = owner(&[s1], &["S1"], &["S2"]);
    let run = run_identical(&o, &spec, &want);
    let s2_chunks = c.wait_computed("S2", 2);
    c.wait_computed("S1", 2);
    eprintln!(
        "kill owner: ended {ended:?}; next job {:.2} s, S2 {s2_chunks:?}; test {:.1} s",
        run.elapsed.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// SIGINT a serve process while it computes: it leaves within 0.5 s and the owner's job
/// completes identically.
#[test]
fn sigint_leaves_quickly_and_the_job_completes() {
    let (spec, want, mut c, t0) = prepare("sigint", dense_spec());
    let a = c.serve("A", &[]);
    let b = c.serve("B", &[]);
    let o = owner(&[a, b], &["A", "B"], &[]);
    let mut stopped = None;
    let run = run_job(&o, &spec, |p| {
        if stopped.is_none() && p.chunks_done * 10 >= p.chunks_total * 3 {
            let a_delivered = delivered_by(&o, "A");
            if a_delivered == 0 {
                return;
            }
            let pid = c.pid("A");
            let t = Instant::now();
            signal(pid, rustix::process::Signal::INT);
            let status = c.wait_exit("A", "A to exit", Duration::from_secs(5));
            // The owner heard a goodbye, not a lost connection (before a redial replaces it).
            wait_until("O to hear A quit", Duration::from_secs(1), || {
                let said: Vec<String> = o
                    .stats()
                    .remotes
                    .iter()
                    .filter_map(|r| r.last_error.clone())
                    .collect();
                if said.iter().any(|e| e.contains("peer quit")) {
                    Ok(())
                } else {
                    Err(format!("{said:?}"))
                }
            });
            stopped = Some((t.elapsed(), status, p.chunks_done));
        }
    });
    let (took, status, done_then) = stopped.expect("A was never stopped mid-job");
    assert_identical(&run.output, &want);
    assert!(status.success(), "serve exited with {status} after SIGINT");
    let log = c.log("A");
    assert!(
        log.contains("left the pool in"),
        "no goodbye in A's log:\n{log}"
    );
    assert!(
        took < Duration::from_millis(500),
        "serve took {took:?} to exit after SIGINT"
    );
    eprintln!(
        "sigint: A exited {:.0} ms after SIGINT at {done_then}/{}; job {:.2} s; test {:.1} s",
        took.as_secs_f64() * 1e3,
        run.last.chunks_total,
        run.elapsed.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

// ----- refusals -----

/// A server with another secret is reported as such, and keeps serving members that know the
/// right one, even while the wrong one keeps retrying from the same address.
#[test]
fn wrong_secret_is_refused_and_the_server_keeps_serving() {
    let (spec, want, mut c, t0) = prepare("secret", raster_spec(0.2, 0.1));
    let s = c.serve("S", &[]);
    let bad = member("intruder", &[s], 1, WRONG_SECRET);
    let error = wait_until("authentication to fail", Duration::from_secs(5), || {
        let st = bad.stats();
        match st.remotes.first() {
            Some(r) if r.state == RemoteState::AuthenticationFailed => {
                Ok(r.last_error.clone().unwrap_or_default())
            }
            r => Err(format!("{r:?}")),
        }
    });
    assert!(error.contains("authentication failed"), "error: {error}");
    c.wait_log("S", "authentication failed", Duration::from_secs(5));
    assert!(bad.stats().hosts.iter().all(|h| h.name != "S"));
    // An honest member joins while the intruder keeps trying.
    let good = owner(&[s], &["S"], &[]);
    run_identical(&good, &spec, &want);
    assert!(c.running("S"));
    let st = bad.stats();
    assert_eq!(
        st.remotes[0].state,
        RemoteState::AuthenticationFailed,
        "{st:?}"
    );
    eprintln!(
        "wrong secret: {error}; test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// A peer announcing another protocol version or compute ABI is refused with a message that
/// names both versions.
#[test]
fn version_mismatch_names_both_versions() {
    let mut c = Cluster::new("version");
    let t0 = Instant::now();
    let p = c.serve_with(
        "P",
        &[],
        "secret",
        &[("MILLPOND_TEST_PROTOCOL_VERSION", "99")],
    );
    let a = c.serve_with("A", &[], "secret", &[("MILLPOND_TEST_COMPUTE_ABI", "99")]);
    let o = member("O", &[p, a], 1, SECRET);
    let errors = wait_until("both mismatches", Duration::from_secs(5), || {
        let st = o.stats();
        if st.remotes.len() == 2
            && st
                .remotes
                .iter()
                .all(|r| r.state == RemoteState::VersionMismatch)
        {
            Ok(st
                .remotes
                .iter()
                .map(|r| r.last_error.clone().unwrap_or_default())
                .collect::<Vec<_>>())
        } else {
            Err(format!("{:?}", st.remotes))
        }
    });
    let (ep, ea) = (&errors[0], &errors[1]);
    assert!(
        ep.contains(&format!("protocol {PROTOCOL_VERSION} ")) && ep.contains("protocol 99 "),
        "protocol mismatch error: {ep}"
    );
    assert!(
        ea.contains(&format!("compute ABI {COMPUTE_ABI},")) && ea.ends_with("compute ABI 99"),
        "compute ABI mismatch error: {ea}"
    );
    for n in ["P", "A"] {
        c.wait_log(n, "version mismatch", Duration::from_secs(5));
        assert!(c.running(n));
    }
    assert!(o.stats().hosts.iter().all(|h| h.hops == 0));
    eprintln!(
        "version mismatch: {ep:?} / {ea:?}; test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

// ----- a misbehaving peer -----

/// A raw peer's job id: `owner`'s job `nonce`.
fn job_of(owner: NodeId, nonce: u128) -> JobId {
    JobId { owner, nonce }
}

/// An authenticated peer that asks and asks (steals for a job the server never heard of, each
/// answered `NoWork`) but never reads: the answers pile up for it, not in the server's memory.
/// Its link is closed as stalled (code 5) once 1024 answers wait or a write waits 10 s, and
/// the server keeps serving.
#[test]
fn a_peer_that_never_reads_is_cut_off_and_the_server_keeps_serving() {
    let mut c = Cluster::new("deaf");
    let s = c.serve("S", &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let (outcome, sent) = rt.block_on(async {
        let mut sent = 0u64;
        let o = misbehave(s, 6, async |conn, send, _, me| {
            let job = job_of(me, 99);
            let frame = wire::encode(&Msg::Steal { job, want: 1 }).unwrap();
            let batch: Vec<u8> = frame.repeat(10_000);
            // At most 4M asks (about 120 MB) or 30 s: bounded whatever happens.
            let end = Instant::now() + Duration::from_secs(30);
            while sent < 4_000_000 && Instant::now() < end && conn.close_reason().is_none() {
                if send.write_all(&batch).await.is_err() {
                    break;
                }
                sent += 10_000;
            }
        })
        .await;
        (o, sent)
    });
    eprintln!(
        "never-reading peer: {outcome:?} after {sent} asks, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // The peer hears the close (code 5), or, if the close's one packet was lost among its
    // flood (a loaded machine's loopback drops datagrams), a stateless reset from the server
    // that forgot the connection: then the server's log says why it closed it.
    let said_stalled = || {
        c.log("S")
            .lines()
            .any(|l| l.contains("closing link to") && l.contains("stalled"))
    };
    assert!(
        matches!(&outcome, Outcome::Closed(5, _))
            || (matches!(&outcome, Outcome::Other(e) if e.contains("reset")) && said_stalled()),
        "not closed as stalled: {outcome:?}\n{}",
        c.log("S")
    );
    assert!(c.running("S"), "the server died:\n{}", c.log("S"));
    // Still serving: an honest member joins and a job completes.
    let spec = raster_spec(0.5, 0.5);
    let o = owner(&[s], &["S"], &[]);
    eprintln!("joined at {:.1} s", t0.elapsed().as_secs_f64());
    let run = run_job(&o, &spec, |_| {});
    eprintln!("job done at {:.1} s", t0.elapsed().as_secs_f64());
    assert_identical(&run.output, &reference(&spec));
}

/// An authenticated peer that breaks the protocol in five ways, one link each: every time the
/// server closes that link as a protocol violation (code 3), and it keeps serving.
#[test]
fn misbehaving_peer_is_cut_off_and_the_server_keeps_serving() {
    let (spec, want, mut c, t0) = prepare("raw", raster_spec(0.2, 0.1));
    let s = c.serve("S", &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let small = raster_spec(0.5, 0.5);
    let outcomes: Vec<(&str, Outcome)> = rt.block_on(async {
        let mut out = Vec::new();
        // (a) A length prefix of 4 GiB.
        let o = misbehave(s, 1, async |_, send, _, _| {
            send.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        })
        .await;
        out.push(("oversized frame", o));
        // (b) Garbage as a frame body.
        let o = misbehave(s, 2, async |_, send, _, _| {
            let body = [0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
            let mut frame = (body.len() as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&body);
            send.write_all(&frame).await.unwrap();
        })
        .await;
        out.push(("garbage frame", o));
        // (c) A grant for a job the server never heard of.
        let o = misbehave(s, 3, async |_, send, _, me| {
            let job = job_of(me, 7);
            let frame = wire::encode(&Msg::Grant {
                job,
                chunks: vec![0, 1],
            })
            .unwrap();
            send.write_all(&frame).await.unwrap();
        })
        .await;
        out.push(("grant for an unknown job", o));
        // (d) A result for a chunk of a job the peer announced but never granted.
        let sp = small.clone();
        let o = misbehave(s, 4, async move |conn, send, recv, me| {
            let job = job_of(me, 1);
            let frame = wire::encode(&Msg::Announce {
                job,
                spec: Box::new(sp.clone()),
                hops_left: 0,
            })
            .unwrap();
            send.write_all(&frame).await.unwrap();
            // The server took the job up when it asks for the mesh.
            expect_msg(recv, Duration::from_secs(3), |m| {
                matches!(m, Msg::FetchMesh { .. })
            })
            .await
            .expect("the server asks for the announced job's mesh");
            let (mesh, index) = model();
            let ctx = JobContext::new(mesh.clone(), index.clone(), sp).unwrap();
            let result: ChunkResult = ctx.run_chunk(0, &CancelToken::new()).unwrap();
            let bytes = postcard::to_stdvec(&result).unwrap();
            let header = BulkHeader::Result {
                job,
                chunk: 0,
                compute_s: 0.01,
                size: bytes.len() as u64,
                hash: *blake3::hash(&bytes).as_bytes(),
                node: NodeId(7),
                worker: 0,
            };
            let mut uni = conn.open_uni().await.unwrap();
            uni.write_all(&wire::encode(&header).unwrap())
                .await
                .unwrap();
            uni.write_all(&bytes).await.unwrap();
            uni.finish().unwrap();
        })
        .await;
        out.push(("result for a chunk never granted", o));
        // (e) A steal of zero chunks.
        let o = misbehave(s, 5, async |_, send, _, me| {
            let job = job_of(me, 1);
            let frame = wire::encode(&Msg::Steal { job, want: 0 }).unwrap();
            send.write_all(&frame).await.unwrap();
        })
        .await;
        out.push(("steal of zero chunks", o));
        out
    });
    assert!(c.running("S"), "the server died:\n{}", c.log("S"));
    // Still serving: an honest member joins and a job completes.
    let o = owner(&[s], &["S"], &[]);
    run_identical(&o, &spec, &want);
    assert!(c.running("S"));
    let log = c.log("S");
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Closed(3, _)))
        .map(|(what, o)| format!("{what}: {o:?}"))
        .collect();
    assert!(
        failed.is_empty(),
        "not closed as protocol violations:\n{}\nserver log:\n{log}",
        failed.join("\n")
    );
    eprintln!(
        "misbehaving peer: {outcomes:?}; test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

// ----- network namespaces -----

/// Two network namespaces and the veth pair between them, removed on drop.
struct Netns {
    names: Vec<String>,
    veth: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A tag for the names of one test's namespaces and links, unique on this machine while it
/// runs: the process and a count within it (two namespace tests run side by side in one test
/// process, and before this tag had no count, the second one's `ip netns add` failed).
fn network_tag() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}x{n}", std::process::id())
}

impl Netns {
    fn create() -> Result<Self, String> {
        let tag = network_tag();
        let (a, b) = (format!("mp-pool-{tag}-a"), format!("mp-pool-{tag}-b"));
        let (va, vb) = (format!("mpa{tag}"), format!("mpb{tag}"));
        let mut ns = Self {
            names: Vec::new(),
            veth: va.clone(),
        };
        ip(&["netns", "add", &a])?;
        ns.names.push(a.clone());
        ip(&["netns", "add", &b])?;
        ns.names.push(b.clone());
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", &a])?;
        ip(&["link", "set", &vb, "netns", &b])?;
        for (n, v, addr) in [(&a, &va, "10.250.0.1/24"), (&b, &vb, "10.250.0.2/24")] {
            ip(&["-n", n, "addr", "add", addr, "dev", v])?;
            ip(&["-n", n, "link", "set", v, "up"])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it; the other end goes with it.
        for n in &self.names {
            let _ = ip(&["netns", "del", n]);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Set to let the network-namespace tests skip themselves where they cannot run (a developer
/// without root); unset, they fail there instead.
const SKIP_VAR: &str = "MILLPOND_SKIP_ROOT_TESTS";

/// The network built for a namespace test, or `None` when it may skip: a test that skips
/// itself silently tests nothing, so without root or without `ip` (iproute2) it fails
/// naming what is missing (`.ci/run` runs as root and installs iproute2), unless
/// [`SKIP_VAR`] is set.
fn network_or_skip<T>(test: &str, build: impl FnOnce() -> Result<T, String>) -> Option<T> {
    let why = if !is_root() {
        "needs root (it builds network namespaces)".to_string()
    } else {
        match build() {
            Ok(net) => return Some(net),
            Err(e) => format!("cannot build its network: {e} (it needs iproute2's `ip netns`)"),
        }
    };
    assert!(
        std::env::var_os(SKIP_VAR).is_some(),
        "{test} {why}; run the tests as root, as .ci/run does, or set {SKIP_VAR}=1 to skip it"
    );
    eprintln!("skipped ({SKIP_VAR} is set): {test} {why}");
    None
}

/// `millpond toolpath` of the bundled part with a 3 mm ball at `stepover` and `sampling`,
/// written to `out`.
fn toolpath_args(stepover: &str, sampling: &str, out: &str) -> Vec<String> {
    [
        "toolpath",
        "default-part.stl",
        "--tool",
        "ball:3",
        "--stepover",
        stepover,
        "--sampling",
        sampling,
        "-o",
        out,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// [`toolpath_args`] fine enough that a pool shares the job out: the arguments the
/// network-namespace tests give.
fn fine_toolpath(out: &str) -> Vec<String> {
    toolpath_args("0.05", "0.02", out)
}

/// Waits for the owner process (`owner`, writing [`fine_toolpath`]'s `pool.ngc`) to finish
/// and checks its G-code is the local reference's byte for byte; the G-code's length.
fn owner_matches_local(c: &mut Cluster) -> usize {
    let status = c.wait_exit("owner", "the pooled toolpath", Duration::from_secs(40));
    assert!(status.success(), "owner failed:\n{}", c.log("owner"));
    let pooled = std::fs::read(c.path("pool.ngc")).unwrap();
    let local = std::fs::read(c.path("local.ngc")).unwrap();
    assert!(pooled == local, "G-code differs from the local run");
    pooled.len()
}

/// The local reference: `millpond toolpath ARGS` in `c`'s folder on `threads` threads, which
/// must succeed.
fn local_toolpath(c: &Cluster, args: Vec<String>, threads: &str) {
    let local = c
        .command("local")
        .args(args)
        .args(["--threads", threads])
        .output()
        .unwrap();
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
}

/// The local reference for [`fine_toolpath`]: `local.ngc` in `c`'s folder, on 2 threads.
fn local_fine_toolpath(c: &Cluster) {
    local_toolpath(c, fine_toolpath("local.ngc"), "2");
}

/// `millpond serve` in one namespace, `millpond toolpath --pool` in another, across a veth
/// pair: the G-code is byte-identical to a local run.
#[test]
fn pool_across_network_namespaces() {
    let Some(ns) = network_or_skip("pool_across_network_namespaces", Netns::create) else {
        return;
    };
    let mut c = Cluster::new("netns");
    let t0 = Instant::now();
    let bin = millpond_bin();
    // The local reference.
    local_fine_toolpath(&c);
    // The server in the first namespace (`ip netns exec` execs it: the child is millpond).
    let mut serve = Command::new("ip");
    c.configure(&mut serve, "S");
    serve
        .args(["netns", "exec", &ns.names[0]])
        .arg(bin)
        .args([
            "serve",
            "--listen",
            "10.250.0.1:1250",
            "--workers",
            "1",
            "--name",
            "S",
        ])
        .arg("--secret-file")
        .arg(c.secret_file());
    c.spawn("S", serve);
    let addr = c.wait_listening("S");
    assert_eq!(addr, "10.250.0.1:1250".parse().unwrap());
    // The owner in the second.
    let mut owner = Command::new("ip");
    c.configure(&mut owner, "owner");
    owner
        .args(["netns", "exec", &ns.names[1]])
        .arg(bin)
        .args(fine_toolpath("pool.ngc"))
        .args([
            "--threads",
            "1",
            "--pool",
            "10.250.0.1:1250",
            "--secret-file",
        ])
        .arg(c.secret_file());
    c.spawn("owner", owner);
    let bytes = owner_matches_local(&mut c);
    let chunks = c.wait_computed("S", 1);
    assert!(
        chunks[0] > 0,
        "the server in the other namespace computed nothing"
    );
    assert!(c.log("owner").contains("linked to S (10.250.0.1:1250)"));
    drop(c);
    drop(ns);
    eprintln!(
        "netns: {} bytes of G-code identical, S computed {chunks:?}; test {:.1} s",
        bytes,
        t0.elapsed().as_secs_f64()
    );
}

/// A local network in namespaces: a bridge in a namespace of its own and one namespace per
/// member plugged into it (10.251.0.N/24 with its broadcast address, N from 1 in the order
/// given), all removed on drop. The veth pairs are made inside the namespaces: nothing is
/// added to this machine's own network.
struct Lan {
    hub: String,
    members: Vec<String>,
}

impl Lan {
    fn create(members: &[&str]) -> Result<Self, String> {
        let tag = network_tag();
        let mut lan = Self {
            hub: format!("mp-lan-{tag}-hub"),
            members: Vec::new(),
        };
        ip(&["netns", "add", &lan.hub])?;
        let hub = lan.hub.clone();
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for (i, m) in members.iter().enumerate() {
            let ns = format!("mp-lan-{tag}-{m}");
            ip(&["netns", "add", &ns])?;
            lan.members.push(ns.clone());
            let (h, v) = (format!("h{i}"), format!("v{i}"));
            ip(&[
                "-n", &hub, "link", "add", &h, "type", "veth", "peer", "name", &v, "netns", &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &h, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &h, "up"])?;
            let addr = format!("{}/24", Self::address(i));
            ip(&["-n", &ns, "addr", "add", &addr, "brd", "+", "dev", &v])?;
            ip(&["-n", &ns, "link", "set", &v, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    /// The address of the `i`-th member.
    fn address(i: usize) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 251, 0, i as u8 + 1)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends inside it; the bridge goes with the hub.
        for n in self.members.iter().chain([&self.hub]) {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// A UDP socket on `port` inside network namespace `ns` (a thread moved into it): the source
/// and size of every datagram it hears go to `heard` until `stop` is set.
fn listen_in(
    ns: &str,
    port: u16,
    heard: Arc<Mutex<Vec<(std::net::IpAddr, usize)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<(), String>> {
    let path = PathBuf::from("/run/netns").join(ns);
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        use std::os::fd::AsFd;
        let bound = (|| {
            let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            rustix::thread::move_into_link_name_space(
                f.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| format!("setns: {e}"))?;
            let s = std::net::UdpSocket::bind(("0.0.0.0", port)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(s)
        })();
        let socket = match bound {
            Ok(s) => {
                let _ = ready_tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.clone()));
                return Err(e);
            }
        };
        let mut buf = [0u8; 2048];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                heard.lock().unwrap().push((from.ip(), n));
            }
        }
        Ok(())
    });
    let bound = ready.recv_timeout(Duration::from_secs(5));
    assert!(matches!(bound, Ok(Ok(()))), "listener in {ns}: {bound:?}");
    thread
}

/// `millpond serve --discover` in namespaces on one bridged network: A and B (one secret)
/// find each other with no address given and share a job (`toolpath --pool` joins A only; B
/// computes through the link discovery made), W (another secret, discovering) is linked to
/// nobody and ignores their beacons as they ignore its, and Q (same secret, no
/// `--discover`) sends nothing: a listener on the discovery port hears A's, B's and W's
/// beacons, never a datagram from Q, over Q's whole life.
#[test]
fn lan_discovery_across_network_namespaces() {
    let members = ["a", "b", "w", "q", "l"];
    let test = "lan_discovery_across_network_namespaces";
    let Some(lan) = network_or_skip(test, || Lan::create(&members)) else {
        return;
    };
    let ns = |m: &str| lan.members[members.iter().position(|x| *x == m).unwrap()].clone();
    let addr = |m: &str| Lan::address(members.iter().position(|x| *x == m).unwrap());
    let mut c = Cluster::new("lan");
    let t0 = Instant::now();
    let bin = millpond_bin();
    local_fine_toolpath(&c);
    // The listener first, so that it hears all of Q's life.
    let heard = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = listen_in(
        &ns("l"),
        millpond_net::DISCOVERY_PORT,
        heard.clone(),
        stop.clone(),
    );
    let heard_from = |ip: std::net::Ipv4Addr| -> usize {
        heard
            .lock()
            .unwrap()
            .iter()
            .filter(|(from, _)| *from == std::net::IpAddr::V4(ip))
            .count()
    };
    let serve = |c: &mut Cluster, name: &str, secret: &str, discover: bool| {
        let mut cmd = Command::new("ip");
        c.configure(&mut cmd, name);
        cmd.args(["netns", "exec", &ns(&name.to_lowercase())])
            .arg(bin)
            .args([
                "serve",
                "--listen",
                "0.0.0.0:1250",
                "--workers",
                "1",
                "--name",
                name,
            ])
            .arg("--secret-file")
            .arg(c.path(secret));
        if discover {
            cmd.arg("--discover");
        }
        c.spawn(name, cmd);
        c.wait_listening(name);
    };
    serve(&mut c, "Q", "secret", false);
    serve(&mut c, "A", "secret", true);
    serve(&mut c, "W", "wrong-secret", true);
    serve(&mut c, "B", "secret", true);
    // A and B find each other, nobody having given an address.
    c.wait_log("A", "linked to B", Duration::from_secs(20));
    c.wait_log("B", "linked to A", Duration::from_secs(20));
    wait_until("beacons of A, B and W", Duration::from_secs(20), || {
        let counts = [addr("a"), addr("b"), addr("w")].map(heard_from);
        if counts.iter().all(|&n| n >= 2) {
            Ok(())
        } else {
            Err(format!("heard {counts:?}"))
        }
    });
    // A job joined at A only is computed by B too, over the link discovery made.
    let mut owner = Command::new("ip");
    c.configure(&mut owner, "owner");
    owner
        .args(["netns", "exec", &ns("l")])
        .arg(bin)
        .args(fine_toolpath("pool.ngc"))
        .args(["--threads", "1", "--pool", &format!("{}:1250", addr("a"))])
        .arg("--secret-file")
        .arg(c.secret_file());
    c.spawn("owner", owner);
    owner_matches_local(&mut c);
    let chunks = c.wait_computed("B", 1);
    assert!(
        chunks[0] > 0,
        "B, found by discovery only, computed nothing"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    listener.join().unwrap().unwrap();
    // Nothing at all came from Q, which was not asked to discover; every beacon heard has a
    // beacon's size.
    let heard = heard.lock().unwrap().clone();
    assert!(
        heard.iter().all(|(from, _)| *from != addr("q")),
        "Q sent datagrams without --discover: {heard:?}"
    );
    assert!(heard.iter().all(|(_, n)| *n == 71), "{heard:?}");
    // W is linked to nobody, and says it ignored beacons of another pool; A and B say so of
    // W's. Q has no discovery at all.
    for (name, log) in ["A", "B", "W", "Q"].map(|n| (n, c.log(n))) {
        assert!(
            !log.contains("linked to W") && !log.contains("linked to Q"),
            "{name}:\n{log}"
        );
    }
    for name in ["W", "Q"] {
        assert!(
            !c.log(name).contains("linked to"),
            "{name}:\n{}",
            c.log(name)
        );
    }
    for name in ["A", "B", "W"] {
        let log = c.log(name);
        assert!(
            log.contains("LAN discovery on: beacons to UDP port 47474 of 10.251.0.255"),
            "{name}:\n{log}"
        );
        assert!(log.contains("LAN discovery: ignored "), "{name}:\n{log}");
    }
    assert!(!c.log("Q").contains("LAN discovery"), "{}", c.log("Q"));
    for name in ["A", "B"] {
        assert_clean_log(name, &c.log(name));
    }
    drop(c);
    drop(lan);
    eprintln!(
        "lan: A and B linked by discovery, B computed {chunks:?}, {} datagrams heard, none from \
         Q; test {:.1} s",
        heard.len(),
        t0.elapsed().as_secs_f64()
    );
}

/// Runs `f` on a thread moved into network namespace `ns`: the threads it starts (a pool's
/// runtime and workers) are in that namespace too, and so are the sockets they open.
fn in_namespace<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = PathBuf::from("/run/netns").join(ns);
    std::thread::spawn(move || {
        use std::os::fd::AsFd;
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| format!("setns: {e}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| "the thread panicked".to_string())?
}

/// Chunks the owner `o` received that `name` computed (its per-worker rows, every job).
fn computed_by(o: &Pool, name: &str) -> u64 {
    o.stats()
        .hosts
        .iter()
        .filter(|h| h.name == name)
        .flat_map(|h| &h.worker_stats)
        .map(|w| w.chunks_done)
        .sum()
}

/// Issue 17 point 8, a healed partition: `millpond serve` members A, B and C in network
/// namespaces on one bridge (B and C dial A), the owner O in a fourth (in this process,
/// joined to A). Mid-job — once C has delivered a chunk — C's port on the bridge goes down:
/// the job completes without it, bit-identical to a local run (C's grants expire at A or come
/// back when its link times out). O's statistics then show C lost; the port comes up again,
/// C dials A again, O's statistics show it reachable, and a second job is computed by C too,
/// bit-identical. All within 60 s.
#[test]
fn a_member_cut_off_mid_job_links_again_once_healed() {
    let members = ["a", "b", "c", "o"];
    let test = "a_member_cut_off_mid_job_links_again_once_healed";
    let Some(lan) = network_or_skip(test, || Lan::create(&members)) else {
        return;
    };
    let spec = raster_spec(0.02, SAMPLING);
    let want = reference(&spec);
    let after = dense_spec();
    let want_after = reference(&after);
    let warm = raster_spec(0.5, 0.5);
    // Built (if need be) before the clock starts.
    millpond_bin();
    let t0 = Instant::now();
    let mut c = Cluster::new("partition");
    let a_addr = SocketAddr::from((Lan::address(0), 1250));
    for (i, name) in ["A", "B", "C"].into_iter().enumerate() {
        let mut cmd = Command::new("ip");
        c.configure(&mut cmd, name);
        cmd.args(["netns", "exec", &lan.members[i]])
            .arg(millpond_bin())
            .args(["serve", "--listen", "0.0.0.0:1250", "--workers", "1"])
            .args(["--name", name])
            .arg("--secret-file")
            .arg(c.secret_file());
        if name != "A" {
            cmd.arg("--remote-server").arg(a_addr.to_string());
        }
        c.spawn(name, cmd);
        c.wait_listening(name);
    }
    let o = in_namespace(&lan.members[3], move || member("O", &[a_addr], 1, SECRET))
        .expect("the owner in its namespace");
    wait_for_hosts(&o, &["A"], &["B", "C"]);
    run_identical(&o, &warm, &reference(&warm));
    // The job; C is cut off once it has delivered a chunk of it.
    let c_before = computed_by(&o, "C");
    let mut cut: Option<(Instant, u32)> = None;
    let run = run_job(&o, &spec, |p| {
        if cut.is_none() && computed_by(&o, "C") > c_before {
            ip(&["-n", &lan.hub, "link", "set", "h2", "down"]).expect("cut C off");
            cut = Some((Instant::now(), p.chunks_done));
        }
    });
    assert_identical(&run.output, &want);
    let (cut_at, done_at_cut) = cut.expect("C delivered nothing during the job");
    assert!(
        done_at_cut < run.last.chunks_total,
        "the job was over when C was cut off"
    );
    let job_s = run.elapsed.as_secs_f64();
    let c_in_job = computed_by(&o, "C") - c_before;
    // O sees C lost, then the port comes up again.
    wait_for_rows(&o, "C lost at O", Duration::from_secs(20), |hosts| {
        hosts
            .iter()
            .filter(|h| h.name == "C")
            .all(|h| h.state == millpond_net::HostState::Lost)
    });
    let lost_s = cut_at.elapsed().as_secs_f64();
    ip(&["-n", &lan.hub, "link", "set", "h2", "up"]).expect("heal");
    let healed = Instant::now();
    wait_for_rows(&o, "C back at O", Duration::from_secs(30), |hosts| {
        hosts
            .iter()
            .any(|h| h.name == "C" && h.hops == 2 && h.state != millpond_net::HostState::Lost)
    });
    let back_s = healed.elapsed().as_secs_f64();
    assert!(
        c.log("A").matches("linked to C").count() >= 2,
        "{}",
        c.log("A")
    );
    // C computes again.
    let c_before = computed_by(&o, "C");
    let run2 = run_identical(&o, &after, &want_after);
    let c_after = computed_by(&o, "C") - c_before;
    assert!(
        c_after > 0,
        "C, linked again, computed nothing of the second job"
    );
    for name in ["A", "B", "C"] {
        let log = c.log(name);
        assert!(
            !log.contains("protocol violation") && !log.contains("panicked"),
            "{name}:\n{log}"
        );
    }
    let total = t0.elapsed();
    drop(o);
    drop(c);
    drop(lan);
    eprintln!(
        "partition: {} chunks, C cut off after {done_at_cut} were done, having computed \
         {c_in_job} of them; the job took {job_s:.2} s, bit-identical; C lost at O {lost_s:.1} s \
         after the cut, back {back_s:.1} s after the heal, then computed {c_after} of {} \
         chunks of a second job, bit-identical; test {:.1} s",
        run.last.chunks_total,
        run2.last.chunks_total,
        total.as_secs_f64()
    );
    assert!(total < Duration::from_secs(60), "took {total:?}");
}

// ----- hostile members (issue 17) -----

/// O (1 worker) joined to an honest server A and to a rogue member R (`millpond-rogue-peer
/// MODE`, 2 workers), running the dense job: the cluster, R's address, O, and the run, whose
/// output is checked to be the local run's bits.
fn beside_a_rogue(mode: &str) -> (Cluster, SocketAddr, Pool, JobRun) {
    let spec = dense_spec();
    let want = reference(&spec);
    let mut c = Cluster::new(mode);
    let a = c.serve("A", &[]);
    let r = c.rogue("R", mode, 2, &[]);
    let o = owner(&[a, r], &["A", "R"], &[]);
    let run = run_identical(&o, &spec, &want);
    (c, r, o, run)
}

/// O (here, 1 worker) with an honest server A and a member R whose heights are all 1 mm
/// high: R is caught at its first checked result, named, cut off, and none of what it sent
/// is in the output, which is the local run's bits.
#[test]
fn a_poisoning_peer_is_cut_off_named_and_none_of_its_results_is_in_the_output() {
    let t0 = Instant::now();
    let (c, r, o, run) = beside_a_rogue("poison");
    let poisoned = c.log("R").matches("poisoned chunk").count();
    assert!(poisoned > 0, "R computed nothing:\n{}", c.log("R"));
    let stats = o.stats();
    let row = stats
        .hosts
        .iter()
        .find(|h| h.name == "R" && h.wrong_results > 0)
        .unwrap_or_else(|| panic!("R not named: {}", describe_hosts(&stats)));
    let said: Vec<&str> = stats.notices.iter().map(|n| n.text.as_str()).collect();
    assert!(
        said.iter()
            .any(|t| t.starts_with(&format!("R ({r}) returned a wrong result for chunk"))),
        "{said:?}"
    );
    // The honest member is never blamed, and A's log has no violation.
    assert!(!said.iter().any(|t| t.starts_with("A ")), "{said:?}");
    assert_clean_log("A", &c.log("A"));
    eprintln!(
        "poison: R computed {poisoned} poisoned chunks, {} wrong found, {} of its results \
         discarded, 0 in the output (identical to the local run); job {}; test {:.1} s",
        row.wrong_results,
        row.discarded_results,
        run.summary(),
        t0.elapsed().as_secs_f64()
    );
}

/// `millpond toolpath --pool R` where R poisons every chunk: the G-code is the local run's
/// byte for byte, and the command line names R.
#[test]
fn the_command_line_names_a_poisoning_peer_and_writes_the_local_g_code() {
    let mut c = Cluster::new("poison-cli");
    let args = |out: &str| toolpath_args("0.1", "0.05", out);
    local_toolpath(&c, args("local.ngc"), "1");
    let r = c.rogue("R", "poison", 2, &[]);
    let pooled = c
        .command("owner")
        .args(args("pool.ngc"))
        .args(["--threads", "1", "--pool", &r.to_string(), "--secret-file"])
        .arg(c.secret_file())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&pooled.stderr);
    assert!(pooled.status.success(), "{stderr}");
    assert!(
        std::fs::read(c.path("pool.ngc")).unwrap() == std::fs::read(c.path("local.ngc")).unwrap(),
        "G-code differs from the local run"
    );
    assert!(
        stderr.contains(&format!(
            "warning: pool member R ({r}) returned 1 wrong result(s)"
        )),
        "{stderr}"
    );
    assert!(c.log("R").contains("poisoned chunk"), "R computed nothing");
}

/// O with a server A and a member R whose every computation panics: R's chunks come back
/// (named in O's notices), three failures keep a chunk at O, and the job is the local run.
#[test]
fn a_peer_whose_chunks_panic_does_not_hang_the_job() {
    let t0 = Instant::now();
    let (c, _, o, run) = beside_a_rogue("panic");
    let said: Vec<String> = o.stats().notices.iter().map(|n| n.text.clone()).collect();
    assert!(
        said.iter()
            .any(|t| t.contains("failed on R (panicked: rogue peer")),
        "{said:?}"
    );
    eprintln!(
        "panic: R panicked on {} chunks; job {:.2} s; test {:.1} s",
        c.log("R").matches("panicking on chunk").count(),
        run.elapsed.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
