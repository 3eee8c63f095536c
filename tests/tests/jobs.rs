//! Jobs and chunks: the split depends only on the job, results are bit-identical whatever the
//! thread count or arrival order, cancel is prompt, and results from elsewhere are validated.

use millpond_core::job::{ChunkData, ChunkResult, DropSpec, Grid, JobError, JobOutput, Operation};
use millpond_core::raster::{Direction, RasterSpec};
use millpond_core::runner::{RunError, RunEvent, run_local};
use millpond_core::toolpath::Toolpath;
use millpond_core::{
    Axis, CancelToken, Cutter, DropCutter, JobContext, JobSpec, Mesh, Point3, Rect, Triangle,
    TriangleIndex, models,
};
use millpond_tests::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The tests here run one at a time: the cancel test measures a latency, which other tests
/// competing for the two cores would only blur.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn context(tris: Vec<Triangle>, name: &str) -> (Arc<Mesh>, Arc<TriangleIndex>) {
    let mesh = Arc::new(Mesh::from_triangles(tris, name).unwrap());
    let index = Arc::new(TriangleIndex::new(&mesh));
    (mesh, index)
}

fn drop_spec(mesh: &Mesh, cutter: &str, grid: Grid) -> JobSpec {
    JobSpec {
        mesh: mesh.hash(),
        cutter: cutter.parse().unwrap(),
        operation: Operation::Drop(DropSpec {
            grid,
            floor: mesh.bounds().min.z,
        }),
    }
}

fn raster_spec(mesh: &Mesh, cutter: &str, grid: Grid, direction: Direction) -> JobSpec {
    let b = mesh.bounds();
    let cutter: millpond_core::Cutter = cutter.parse().unwrap();
    JobSpec {
        mesh: mesh.hash(),
        cutter,
        operation: Operation::Raster(RasterSpec {
            grid,
            floor: b.min.z,
            safe_z: b.max.z + 5.0,
            links: millpond_core::links::Links::new(b.max.z, b.max.z + 5.0, cutter.diameter()),
            direction,
            merge_tolerance: 0.001,
            allowance: 0.0,
        }),
    }
}

/// The mesh's XY box grown by `margin`.
fn around(mesh: &Mesh, margin: f64) -> Rect {
    let b = mesh.bounds();
    b.xy().grown(margin)
}

/// Random triangles in a 40 mm box over a tilted floor: overlapping, steep, overhanging.
fn random_mesh(seed: u64) -> Vec<Triangle> {
    let mut rng = Rng::new(seed);
    let mut out = models::height_field((-20.0, 20.0), (-20.0, 20.0), 8, 8, |x, y| {
        0.1 * x - 0.05 * y
    });
    while out.len() < 500 {
        let c = Point3::new(
            rng.range(-18.0, 18.0),
            rng.range(-18.0, 18.0),
            rng.range(0.0, 10.0),
        );
        let s = rng.range(0.3, 6.0);
        let mut p = || {
            c + Point3::new(
                rng.range(-s, s),
                rng.range(-s, s),
                rng.range(-s / 2.0, s / 2.0),
            )
        };
        let t = Triangle::new(p(), p(), p());
        if !t.is_degenerate() {
            out.push(t);
        }
    }
    out
}

#[test]
fn chunk_split_depends_only_on_the_job() {
    let _serial = serial();
    let mesh = Mesh::from_triangles(models::default_part(), "part").unwrap();
    let grids = [
        // One line, one chunk.
        (Rect::new(0.0, 80.0, 30.0, 30.0), 1.0, 0.1),
        // Many lines a chunk.
        (Rect::new(-2.0, 82.0, -2.0, 62.0), 0.25, 0.1),
        (Rect::new(-2.0, 82.0, -2.0, 62.0), 0.1, 0.05),
        // Lines longer than a chunk's share of points: one line a chunk.
        (Rect::new(0.0, 2000.0, 0.0, 3.0), 0.5, 0.01),
        // Bounds that are not a whole number of steps.
        (Rect::new(0.3, 79.9, 0.7, 59.1), 0.7, 0.13),
    ];
    let mut multi_chunk = 0;
    for (bounds, step, sampling) in grids {
        for axis in [Axis::X, Axis::Y] {
            let grid = Grid {
                axis,
                bounds,
                step,
                sampling,
            };
            let make = || {
                [
                    drop_spec(&mesh, "ball:3", grid),
                    raster_spec(&mesh, "flat:6", grid, Direction::Zigzag),
                ]
            };
            for (spec, twin) in make().into_iter().zip(make()) {
                assert_eq!(spec, twin);
                spec.validate().unwrap();
                let n = spec.chunk_count();
                assert!(n >= 1);
                assert_eq!(n, twin.chunk_count());
                assert_eq!(n, spec.clone().chunk_count());
                if n > 1 {
                    multi_chunk += 1;
                }
                let lines = spec.grid().unwrap().lines();
                let mut next = 0;
                let mut total_points = 0;
                let first_len = spec.chunk_lines(0).len();
                for c in 0..n {
                    let range = spec.chunk_lines(c);
                    assert_eq!(range, twin.chunk_lines(c), "{grid:?} chunk {c}");
                    // In order, each line exactly once, no empty chunk, all but the last
                    // chunk the same size.
                    assert_eq!(range.start, next, "{grid:?} chunk {c} {range:?}");
                    assert!(!range.is_empty(), "{grid:?} chunk {c} is empty");
                    if c + 1 < n {
                        assert_eq!(range.len(), first_len);
                    } else {
                        assert!(range.len() <= first_len);
                    }
                    next = range.end;
                    let points = spec.chunk_points(c);
                    assert_eq!(points, range.len() as u64 * grid.points_per_line() as u64);
                    total_points += points;
                }
                assert_eq!(
                    next, lines,
                    "{grid:?}: chunks cover {next} of {lines} lines"
                );
                assert_eq!(total_points, grid.points());
                assert!(spec.chunk_lines(n).is_empty(), "chunk past the end");
            }
        }
    }
    assert!(multi_chunk >= 8, "too few grids split into several chunks");
}

/// Every bit of a job's output.
fn bits(out: &JobOutput) -> Vec<u64> {
    match out {
        JobOutput::Heights(z) => std::iter::once(0)
            .chain(z.iter().map(|v| v.to_bits()))
            .collect(),
        JobOutput::Toolpath(tp) => toolpath_bits(tp),
        JobOutput::Contours(levels) => levels
            .iter()
            .flat_map(|l| {
                std::iter::once(l.z.to_bits()).chain(l.contours.iter().flat_map(|c| {
                    std::iter::once(u64::from(c.hole))
                        .chain(c.points.iter().flatten().map(|v| v.to_bits()))
                }))
            })
            .collect(),
        JobOutput::Stock(chunks) => chunks
            .iter()
            .flat_map(|c| c.heights.iter().flatten().map(|z| u64::from(z.to_bits())))
            .collect(),
    }
}

fn toolpath_bits(tp: &Toolpath) -> Vec<u64> {
    let p = |p: Point3| [p.x.to_bits(), p.y.to_bits(), p.z.to_bits()];
    let mut out = vec![1];
    out.extend(p(tp.start));
    for m in &tp.moves {
        out.push(m.kind as u64);
        out.extend(p(m.to));
    }
    out
}

#[test]
fn bit_identical_with_1_and_2_threads() {
    let _serial = serial();
    // Steps that give each mesh several chunks, and cutters spread over both meshes (the bull
    // noses are the slow ones on the part's walls).
    let meshes = [
        (
            context(models::default_part(), "part"),
            0.4,
            [
                "vbit:6:90",
                "ball:6",
                "ball:3",
                "flat:6",
                "bull:6:1",
                "vbit:10:30",
            ],
        ),
        (
            context(random_mesh(5), "random"),
            0.12,
            [
                "bull:6:1",
                "vbit:6:90",
                "flat:6",
                "ball:3",
                "vbit:10:30",
                "bull:8:3.5",
            ],
        ),
    ];
    for ((mesh, index), step, tools) in &meshes {
        let grid = |axis| Grid {
            axis,
            bounds: around(mesh, 2.0),
            step: *step,
            sampling: 0.1,
        };
        let specs = [
            drop_spec(mesh, tools[0], grid(Axis::X)),
            drop_spec(mesh, tools[1], grid(Axis::Y)),
            raster_spec(mesh, tools[2], grid(Axis::X), Direction::Zigzag),
            raster_spec(mesh, tools[3], grid(Axis::X), Direction::Climb),
            raster_spec(mesh, tools[4], grid(Axis::Y), Direction::Zigzag),
            raster_spec(mesh, tools[5], grid(Axis::Y), Direction::Climb),
        ];
        for spec in specs {
            let name = format!("{} {} {:?}", mesh.name(), spec.cutter, spec.operation);
            let n = spec.chunk_count();
            assert!(n >= 4, "{name}: only {n} chunks");
            let ctx = JobContext::new(mesh.clone(), index.clone(), spec.clone()).unwrap();
            let token = CancelToken::new();
            let run = |threads| {
                let results = run_local(&ctx, threads, &token, &|_| {}).unwrap();
                ctx.finish(results).unwrap()
            };
            let one = run(1);
            let two = run(2);
            let reference = bits(&one);
            assert!(reference == bits(&two), "{name}: 1 and 2 threads differ");
            // Chunks computed last to first, handed over shuffled.
            let mut results: Vec<ChunkResult> = (0..n)
                .rev()
                .map(|c| ctx.run_chunk(c, &token).unwrap())
                .collect();
            let mut rng = Rng::new(u64::from(n));
            for k in (1..results.len()).rev() {
                results.swap(k, rng.next_u64() as usize % (k + 1));
            }
            let shuffled = ctx.finish(results).unwrap();
            assert!(
                reference == bits(&shuffled),
                "{name}: chunk order changes the bits"
            );
            match &one {
                JobOutput::Heights(z) => {
                    // The same bits as whole lines swept in one go, outside any job.
                    let g = spec.grid().unwrap();
                    let dc = DropCutter::new(mesh, index, spec.cutter, spec.floor());
                    let per = g.points_per_line();
                    assert_eq!(z.len() as u64, g.points());
                    let mut row = vec![0.0; per];
                    for j in 0..g.lines() {
                        dc.line(g.axis, g.across(j), g.along(0), g.sampling, 0, &mut row);
                        for (i, (a, b)) in row.iter().zip(&z[j * per..]).enumerate() {
                            assert!(
                                a.to_bits() == b.to_bits(),
                                "{name}: line {j} point {i}: job {b}, line sweep {a}"
                            );
                        }
                    }
                }
                JobOutput::Toolpath(tp) => assert!(tp.moves.len() > 100, "{name}"),
                JobOutput::Contours(l) => assert!(!l.is_empty(), "{name}"),
                JobOutput::Stock(_) => panic!("{name}: no simulation among these jobs"),
            }
        }
    }
}

#[test]
fn cancel_stops_within_50ms() {
    let _serial = serial();
    // 204,800 triangles and 400 million points: far more than 200 ms of work on any machine.
    // Lines of 200,001 points, longer than a chunk's share, so every chunk is one long line and
    // a prompt stop needs the checks inside a chunk, not only those between chunks.
    let (mesh, index) = context(models::wavy_surface(320), "wavy");
    let spec = raster_spec(
        &mesh,
        "ball:3",
        Grid {
            axis: Axis::X,
            bounds: around(&mesh, 0.0),
            step: 0.05,
            sampling: 0.0005,
        },
        Direction::Zigzag,
    );
    let total = spec.points_total();
    assert!(total > 100_000_000);
    assert_eq!(spec.chunk_lines(0).len(), 1);
    let ctx = JobContext::new(mesh, index, spec).unwrap();
    let token = CancelToken::new();
    let done = Arc::new(AtomicU64::new(0));
    let worker = {
        let (token, done) = (token.clone(), done.clone());
        std::thread::spawn(move || {
            let result = run_local(&ctx, 2, &token, &|event| {
                if let RunEvent::Progress { progress, .. } = event {
                    done.fetch_max(progress.points_done, Ordering::Relaxed);
                }
            });
            (result, Instant::now())
        })
    };
    // Let it get going: 200 ms and at least one chunk done.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) || done.load(Ordering::Relaxed) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30) && !worker.is_finished(),
            "the job stalled or ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let progress = done.load(Ordering::Relaxed);
    assert!(
        !worker.is_finished() && progress < total,
        "the job finished before it was cancelled: make it bigger"
    );
    token.cancel();
    let cancelled_at = Instant::now();
    let (result, returned_at) = worker.join().unwrap();
    let latency = returned_at.saturating_duration_since(cancelled_at);
    let after = done.load(Ordering::Relaxed);
    eprintln!(
        "cancelled at {progress} of {total} points ({after} when it stopped), after {:?}; \
         returned {latency:?} later",
        cancelled_at - start
    );
    assert!(
        matches!(result, Err(RunError::Cancelled)),
        "a cancelled job must say so"
    );
    assert!(after < total, "the job ran to the end");
    assert!(
        latency < Duration::from_millis(50),
        "run_local returned {latency:?} after the cancel"
    );
}

#[test]
fn results_are_validated() {
    let _serial = serial();
    let (mesh, index) = context(models::default_part(), "part");
    let grid = Grid {
        axis: Axis::X,
        bounds: around(&mesh, 2.0),
        step: 0.5,
        sampling: 0.1,
    };
    let bad_result = |r: Result<(), JobError>, what: &str| {
        assert!(
            matches!(r, Err(JobError::BadResult(_))),
            "{what} accepted: {r:?}"
        );
    };

    // Drop job.
    let spec = drop_spec(&mesh, "ball:3", grid);
    let ctx = JobContext::new(mesh.clone(), index.clone(), spec.clone()).unwrap();
    let n = spec.chunk_count();
    assert!(n >= 2);
    let token = CancelToken::new();
    let results: Vec<ChunkResult> = (0..n).map(|c| ctx.run_chunk(c, &token).unwrap()).collect();
    for r in &results {
        r.validate(&spec).unwrap();
    }
    let good = results[1].clone();
    let ChunkData::Heights(z) = &good.data else {
        panic!("a drop chunk must hold heights");
    };
    let with = |chunk: u32, data: ChunkData| ChunkResult { chunk, data };
    bad_result(
        with(n, good.data.clone()).validate(&spec),
        "chunk id out of range",
    );
    bad_result(
        with(u32::MAX, good.data.clone()).validate(&spec),
        "chunk id u32::MAX",
    );
    bad_result(
        with(1, ChunkData::Heights(z[1..].to_vec())).validate(&spec),
        "one height short",
    );
    bad_result(
        with(1, ChunkData::Heights([z.as_slice(), &[1.0]].concat())).validate(&spec),
        "one height too many",
    );
    bad_result(
        with(1, ChunkData::Heights(Vec::new())).validate(&spec),
        "no heights",
    );
    // The last chunk may be shorter: the first chunk's heights do not fit it.
    if spec.chunk_lines(n - 1).len() != spec.chunk_lines(0).len() {
        let ChunkData::Heights(z0) = &results[0].data else {
            unreachable!()
        };
        bad_result(
            with(n - 1, ChunkData::Heights(z0.clone())).validate(&spec),
            "a full chunk's heights for the short last chunk",
        );
    }
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut zz = z.clone();
        zz[z.len() / 2] = v;
        bad_result(
            with(1, ChunkData::Heights(zz)).validate(&spec),
            &format!("height {v}"),
        );
    }
    let per_line = grid.points_per_line();
    let lines = spec.chunk_lines(1).len();
    let polylines = vec![vec![Point3::new(0.0, 0.0, 1.0); 2]; lines];
    bad_result(
        with(1, ChunkData::Polylines(polylines.clone())).validate(&spec),
        "polylines for a drop job",
    );

    // finish: every chunk present, each valid.
    let output = ctx.finish(results.clone()).unwrap();
    let JobOutput::Heights(all) = output else {
        panic!("a drop job must give heights");
    };
    assert_eq!(all.len() as u64, grid.points());
    for missing in [0, n / 2, n - 1] {
        let mut some = results.clone();
        some.remove(missing as usize);
        bad_result(
            ctx.finish(some).map(|_| ()),
            &format!("a job missing chunk {missing}"),
        );
    }
    bad_result(ctx.finish(Vec::new()).map(|_| ()), "a job with no chunks");
    let mut tampered = results.clone();
    tampered[0] = with(0, ChunkData::Heights(vec![f64::NAN; z.len()]));
    bad_result(ctx.finish(tampered).map(|_| ()), "a job with a NaN chunk");

    // Raster job: heights are the wrong kind, polylines must have one line per grid line,
    // none empty or longer than the line, every point finite.
    let rspec = raster_spec(&mesh, "ball:3", grid, Direction::Zigzag);
    let rctx = JobContext::new(mesh.clone(), index.clone(), rspec.clone()).unwrap();
    let good = rctx.run_chunk(1, &token).unwrap();
    good.validate(&rspec).unwrap();
    let ChunkData::Polylines(p) = &good.data else {
        panic!("a raster chunk must hold polylines");
    };
    assert_eq!(p.len(), lines);
    bad_result(
        with(1, ChunkData::Heights(z.clone())).validate(&rspec),
        "heights for a raster job",
    );
    bad_result(
        with(1, ChunkData::Polylines(p[1..].to_vec())).validate(&rspec),
        "a line short",
    );
    let mut empty = p.clone();
    empty[0].clear();
    bad_result(
        with(1, ChunkData::Polylines(empty)).validate(&rspec),
        "an empty line",
    );
    let mut long = p.clone();
    // Refinement may add up to 2^6 + 2 points per sampling step; more is impossible.
    long[0] = vec![
        Point3::new(1.0, 2.0, 3.0);
        per_line * millpond_core::raster::MAX_POINTS_PER_SAMPLE + 1
    ];
    bad_result(
        with(1, ChunkData::Polylines(long)).validate(&rspec),
        "a line longer than refinement can make it",
    );
    let mut nan = p.clone();
    nan[lines - 1][0].z = f64::NAN;
    bad_result(
        with(1, ChunkData::Polylines(nan)).validate(&rspec),
        "a NaN point",
    );
    bad_result(
        with(rspec.chunk_count(), good.data.clone()).validate(&rspec),
        "raster chunk id out of range",
    );

    // A job planned for another mesh.
    let (other, other_index) = context(random_mesh(9), "other");
    let err = JobContext::new(other.clone(), other_index, spec.clone()).unwrap_err();
    assert_eq!(
        err,
        JobError::WrongMesh {
            expected: mesh.hash(),
            actual: other.hash(),
        }
    );
    // The same triangles moved by a hair are another mesh.
    let moved = Arc::new(
        mesh.transformed(|p| Point3::new(p.x + 1e-9, p.y, p.z), false)
            .unwrap(),
    );
    let moved_index = Arc::new(TriangleIndex::new(&moved));
    assert!(matches!(
        JobContext::new(moved, moved_index, spec.clone()),
        Err(JobError::WrongMesh { .. })
    ));

    // Specs that cannot be computed.
    let invalid = |spec: JobSpec, what: &str| {
        let r = spec.validate();
        assert!(
            matches!(r, Err(JobError::Invalid(_))),
            "{what} accepted: {r:?}"
        );
        assert!(
            JobContext::new(mesh.clone(), index.clone(), spec).is_err(),
            "JobContext::new accepted {what}"
        );
    };
    let with_grid = |f: &dyn Fn(&mut Grid)| {
        let mut g = grid;
        f(&mut g);
        drop_spec(&mesh, "ball:3", g)
    };
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5, 0.0, -0.0] {
        invalid(with_grid(&|g| g.step = v), &format!("step {v}"));
        invalid(with_grid(&|g| g.sampling = v), &format!("sampling {v}"));
        let mut r = raster_spec(&mesh, "ball:3", grid, Direction::Climb);
        if let Operation::Raster(rs) = &mut r.operation {
            rs.grid.step = v;
        }
        invalid(r, &format!("raster step {v}"));
    }
    invalid(
        with_grid(&|g| (g.bounds.xmin, g.bounds.xmax) = (g.bounds.xmax, g.bounds.xmin)),
        "inverted x bounds",
    );
    invalid(
        with_grid(&|g| (g.bounds.ymin, g.bounds.ymax) = (g.bounds.ymax, g.bounds.ymin)),
        "inverted y bounds",
    );
    invalid(with_grid(&|g| g.bounds.xmax = f64::NAN), "NaN bounds");
    invalid(
        with_grid(&|g| g.bounds.ymin = f64::NEG_INFINITY),
        "infinite bounds",
    );
    // A square of `side` mm sampled every `step` mm both ways.
    let square = |side: f64, step: f64| {
        with_grid(&|g| {
            g.bounds = Rect::new(0.0, side, 0.0, side);
            g.step = step;
            g.sampling = step;
        })
    };
    // Absurd point counts: 1e6 × 1e6 mm at 0.01 mm, and just over the 1e9 limit.
    invalid(square(1e6, 0.01), "1e16 points");
    invalid(square(1000.0, 0.0316), "1.0016e9 points");
    invalid(with_grid(&|g| g.step = 1e-300), "a step of 1e-300");
    // Just under the limit is a valid spec (it is only planned here, never run).
    let big = square(1000.0, 0.0317);
    big.validate().unwrap();
    assert!(big.points_total() < 1_000_000_000);
    // Other numbers the spec carries.
    let mut s = spec.clone();
    if let Operation::Drop(d) = &mut s.operation {
        d.floor = f64::NAN;
    }
    invalid(s, "a NaN floor");
    for (safe_z, tol) in [
        (f64::NAN, 0.001),
        (f64::INFINITY, 0.001),
        (30.0, -1e-3),
        (30.0, f64::NAN),
    ] {
        let mut r = raster_spec(&mesh, "ball:3", grid, Direction::Zigzag);
        if let Operation::Raster(rs) = &mut r.operation {
            rs.safe_z = safe_z;
            rs.merge_tolerance = tol;
        }
        invalid(r, &format!("safe z {safe_z}, merge tolerance {tol}"));
    }
    let mut s = spec.clone();
    s.cutter = Cutter::Ball { diameter: -3.0 };
    assert!(matches!(s.validate(), Err(JobError::Cutter(_))));
    assert!(JobContext::new(mesh.clone(), index.clone(), s).is_err());
}

/// A comb of thin walls narrower than the sampling, cut by a tool that fits between them: the
/// refined line holds far more points than grid samples (a stair per wall), and the result
/// must still pass the validation every result goes through (`finish` checks local results
/// the same way as the pool's).
#[test]
fn a_comb_of_walls_finer_than_the_sampling_is_a_valid_result() {
    let mut tris = Vec::new();
    // Walls 5 µm thick every 1/64 of the 2 mm sampling, of uneven heights, and a 10 µm end
    // mill that fits between them: every bisection midpoint down to 1/64 of the sampling
    // falls on a wall off the chord, and every last one in a gap, so each of the 64 pieces
    // of an interval becomes a stair.
    for k in 0..=512 {
        let x = k as f64 * 0.03125;
        tris.extend(models::box_solid(
            Point3::new(x - 0.0025, 0.0, 0.0),
            Point3::new(x + 0.0025, 1.0, 1.0 + 0.1 * ((k * k + 3 * k) % 11) as f64),
        ));
    }
    let (mesh, index) = context(tris, "comb");
    let ctx = fine_tool_coarse_line(mesh, index, 16.0);
    let results = run_local(&ctx, 1, &CancelToken::new(), &|_| {}).unwrap();
    let points: usize = results
        .iter()
        .map(|r| match &r.data {
            ChunkData::Polylines(p) => p.iter().map(Vec::len).sum(),
            _ => 0,
        })
        .sum();
    // 9 samples on the line: more than the 70 points per sample the check once allowed.
    assert!(
        points > 9 * 70,
        "only {points} points: the comb was not resolved"
    );
    let out = ctx.finish(results).unwrap();
    assert!(matches!(out, JobOutput::Toolpath(_)));
}

/// One raster line at y = 0.5 from x = 0 to `length`, sampled every 2 mm, with a 10 µm end
/// mill (far narrower than the sampling) and the floor at z = -0.5.
fn fine_tool_coarse_line(mesh: Arc<Mesh>, index: Arc<TriangleIndex>, length: f64) -> JobContext {
    let grid = Grid {
        axis: Axis::X,
        bounds: Rect::new(0.0, length, 0.5, 0.5),
        step: 1.0,
        sampling: 2.0,
    };
    let mut spec = raster_spec(&mesh, "flat:0.01", grid, Direction::Zigzag);
    if let Operation::Raster(r) = &mut spec.operation {
        r.floor = -0.5;
    }
    JobContext::new(mesh, index, spec).unwrap()
}

/// A tool narrower than the sampling can pass a thin wall between two samples and between
/// every bisection midpoint, where neither the samples nor the midpoints see it: the
/// toolpath must still go over the wall, and no cutting move may dip into the model.
#[test]
fn a_thin_wall_between_samples_is_not_gouged_by_a_narrower_tool() {
    // A 5 µm wall, 1 mm tall, centred at x = 0.7. The CL bump of a 10 µm end mill over it,
    // x in (0.6925, 0.7075), holds no sample (every 2 mm) and no bisection midpoint (a
    // multiple of 1/32 mm at the deepest level).
    let tris = models::box_solid(Point3::new(0.6975, 0.0, 0.0), Point3::new(0.7025, 1.0, 1.0));
    let (mesh, index) = context(tris, "thin wall");
    let ctx = fine_tool_coarse_line(mesh.clone(), index.clone(), 4.0);
    let results = run_local(&ctx, 1, &CancelToken::new(), &|_| {}).unwrap();
    let Ok(JobOutput::Toolpath(tp)) = ctx.finish(results) else {
        panic!("a raster job gives a toolpath")
    };
    let top = tp.highest_move_z();
    assert!(
        top >= 1.0,
        "the toolpath never rises over the wall (top {top})"
    );
    let dc = DropCutter::new(&mesh, &index, "flat:0.01".parse().unwrap(), -0.5);
    let mut from = tp.start;
    for m in &tp.moves {
        let rise = dc.max_rise_along(from, m.to, f64::INFINITY);
        // The merge tolerance is the most a kept chord may pass below the profile.
        assert!(
            rise <= 0.001 + 1e-9,
            "{:?} move {from:?} -> {:?} cuts {rise} mm into the wall",
            m.kind,
            m.to
        );
        from = m.to;
    }
}
