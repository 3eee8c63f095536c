//! Millpond's benchmark: `cargo run --release -p millpond-tests --bin millpond-bench`.
//!
//! Each configuration runs in a child process of its own so that its peak memory (VmHWM) is
//! its own. Prints a Markdown table: CL points per second and peak memory for raster
//! drop-cutter grids, then how the cost per point scales with mesh size at constant triangle
//! density (the index's O(log n + k) claim).
//!
//! `--quick` runs a reduced set (smaller grids) for a smoke test; `--planner-only` times only
//! the machining time planner.

use anyhow::{Context, Result, bail};
use millpond_core::job::{DropSpec, Grid, Operation};
use millpond_core::runner::{RunEvent, run_local};
use millpond_core::{
    Axis, CancelToken, Cutter, DropCutter, JobContext, JobSpec, Mesh, Point3, TriangleIndex, models,
};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
enum Model {
    /// Geodesic sphere, 20·f² triangles, radius 50 mm.
    Sphere200k,
    /// 100 × 100 mm wavy height field, ≥ 1M triangles.
    Wavy1M,
    /// An 80-triangle sphere, radius 10 mm.
    Tiny,
}

impl Model {
    fn name(self) -> &'static str {
        match self {
            Model::Sphere200k => "sphere-200k",
            Model::Wavy1M => "wavy-1M",
            Model::Tiny => "tiny-80",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "sphere-200k" => Model::Sphere200k,
            "wavy-1M" => Model::Wavy1M,
            "tiny-80" => Model::Tiny,
            _ => bail!("unknown model {s}"),
        })
    }

    fn triangles(self) -> Vec<millpond_core::Triangle> {
        match self {
            Model::Sphere200k => models::geodesic_sphere(Point3::new(0.0, 0.0, 0.0), 50.0, 100),
            Model::Wavy1M => models::wavy_surface(708),
            Model::Tiny => models::geodesic_sphere(Point3::new(0.0, 0.0, 0.0), 10.0, 2),
        }
    }

    /// Sampling along and between lines for ~1M points (quick: ~100k).
    fn sampling(self, quick: bool) -> f64 {
        let s = match self {
            Model::Sphere200k | Model::Wavy1M => 0.1,
            Model::Tiny => 0.02,
        };
        if quick { s * 3.0 } else { s }
    }
}

/// Peak resident memory of this process so far, bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One configuration, in this process: prints one JSON line.
fn run_one(model: Model, tool: &str, threads: usize, quick: bool) -> Result<()> {
    let t0 = Instant::now();
    let mesh = Arc::new(Mesh::from_triangles(model.triangles(), model.name())?);
    let index = Arc::new(TriangleIndex::new(&mesh));
    let prep_s = t0.elapsed().as_secs_f64();
    let b = mesh.bounds();
    let s = model.sampling(quick);
    let spec = JobSpec {
        mesh: mesh.hash(),
        cutter: tool.parse::<Cutter>()?,
        operation: Operation::Drop(DropSpec {
            grid: Grid {
                axis: Axis::X,
                bounds: b.xy(),
                step: s,
                sampling: s,
            },
            floor: b.min.z,
        }),
    };
    let points = spec.points_total();
    let ctx = JobContext::new(mesh.clone(), index.clone(), spec)?;
    let t1 = Instant::now();
    let results = run_local(&ctx, threads, &CancelToken::new(), &|_| {})?;
    let out = ctx.finish(results)?;
    let compute_s = t1.elapsed().as_secs_f64();
    // A digest of every height's bits, so that runs of different builds can be compared.
    let digest = match &out {
        millpond_core::job::JobOutput::Heights(z) => {
            let mut h = std::hash::DefaultHasher::new();
            for v in z {
                std::hash::Hasher::write_u64(&mut h, v.to_bits());
            }
            format!("{:016x}", std::hash::Hasher::finish(&h))
        }
        _ => String::new(),
    };
    drop(out);
    let line = serde_json::json!({
        "model": model.name(),
        "tool": tool,
        "threads": threads,
        "triangles": mesh.len(),
        "points": points,
        "prepare_s": prep_s,
        "compute_s": compute_s,
        "points_per_s": points as f64 / compute_s,
        "peak_rss": peak_rss(),
        "index_bytes": index.memory_bytes(),
        "heights_digest": digest,
    });
    println!("{line}");
    Ok(())
}

/// The terrain relief of the simulation benchmark stretched over 200 × 170 mm, `cells` × `cells`
/// grid cells (374: 280k triangles; 708: 1M, cells about 0.28 × 0.24 mm).
fn stretched_relief(cells: usize) -> Result<Mesh> {
    let (w, d) = (200.0, 170.0);
    let relief: Vec<millpond_core::Triangle> = models::terrain_relief(cells)
        .into_iter()
        .map(|t| {
            let s = |p: Point3| Point3::new(p.x * w / 120.0, p.y * d / 90.0, p.z);
            millpond_core::Triangle::new(s(t.v[0]), s(t.v[1]), s(t.v[2]))
        })
        .collect();
    Ok(Mesh::from_triangles(relief, "relief-200x170")?)
}

/// Drop-cutter on terrain reliefs as a user's raster would sample them (3 mm ball, 0.5 mm
/// between lines, 0.1 mm along them), and a sparse grid (10 mm) on the same meshes: compute
/// time of the job on fresh contexts, after the index is built.
fn relief(quick: bool) -> Result<()> {
    println!("\n### Drop-cutter on terrain reliefs (`--relief-only`, 3 mm ball)\n");
    println!("| triangles | grid | points | threads | compute s | points/s |");
    println!("|---:|---|---:|---:|---:|---:|");
    let sizes: &[usize] = if quick { &[120] } else { &[374, 708] };
    for &cells in sizes {
        let mesh = Arc::new(stretched_relief(cells)?);
        let index = Arc::new(TriangleIndex::new(&mesh));
        let b = mesh.bounds();
        for (name, step, sampling) in [("0.5 × 0.1 mm", 0.5, 0.1), ("10 × 10 mm", 10.0, 10.0)] {
            let spec = JobSpec {
                mesh: mesh.hash(),
                cutter: "ball:3".parse::<Cutter>()?,
                operation: Operation::Drop(DropSpec {
                    grid: Grid {
                        axis: Axis::X,
                        bounds: b.xy(),
                        step,
                        sampling,
                    },
                    floor: b.min.z,
                }),
            };
            let points = spec.points_total();
            for threads in [1, 2] {
                let mut best = f64::INFINITY;
                for _ in 0..if step > 1.0 { 5 } else { 1 } {
                    let ctx = JobContext::new(mesh.clone(), index.clone(), spec.clone())?;
                    let t = Instant::now();
                    let results = run_local(&ctx, threads, &CancelToken::new(), &|_| {})?;
                    let _ = ctx.finish(results)?;
                    best = best.min(t.elapsed().as_secs_f64());
                }
                println!(
                    "| {} | {name} | {points} | {threads} | {best:.3} | {:.0} |",
                    mesh.len(),
                    points as f64 / best
                );
            }
        }
    }
    Ok(())
}

/// Cost per point as the mesh grows at constant triangle size: a wavy height field of
/// n × n cells of 0.15 mm, queried over the same 20 × 20 mm window (same surface) with a
/// 3 mm ball.
fn scaling(quick: bool) -> Result<()> {
    println!("\n### Cost per point vs mesh size (constant triangle density, 3 mm ball)\n");
    println!(
        "| triangles | line sweep ns/point (1 thread) | single-point queries ns/point | index build s | index MB |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let sizes: &[usize] = if quick {
        &[200, 400]
    } else {
        &[200, 400, 800, 1600]
    };
    for &n in sizes {
        let size = n as f64 * 0.15;
        // Shifted so that the query window always sees the same stretch of surface.
        let shift = 50.0 - size / 2.0;
        let tris = models::height_field((0.0, size), (0.0, size), n, n, |x, y| {
            models::wavy_height(x + shift, y + shift)
        });
        let mesh = Mesh::from_triangles(tris, "scaling")?;
        let t = Instant::now();
        let index = TriangleIndex::new(&mesh);
        let build_s = t.elapsed().as_secs_f64();
        let dc = DropCutter::new(&mesh, &index, Cutter::Ball { diameter: 3.0 }, -100.0);
        let c = size / 2.0;
        let lines = if quick { 50 } else { 200 };
        let per_line = 2000;
        let mut row = vec![0.0; per_line];
        let t = Instant::now();
        let mut checksum = 0.0;
        for j in 0..lines {
            let y = c - 10.0 + 20.0 * j as f64 / lines as f64;
            dc.line(Axis::X, y, c - 10.0, 0.01, 0, &mut row);
            checksum += row[per_line / 2];
        }
        let sweep_ns = t.elapsed().as_secs_f64() * 1e9 / (lines * per_line) as f64;
        let queries = if quick { 20_000 } else { 100_000 };
        let mut rng = millpond_tests::Rng::new(1);
        let t = Instant::now();
        for _ in 0..queries {
            checksum += dc.at(rng.range(c - 10.0, c + 10.0), rng.range(c - 10.0, c + 10.0));
        }
        let point_ns = t.elapsed().as_secs_f64() * 1e9 / queries as f64;
        std::hint::black_box(checksum);
        println!(
            "| {} | {sweep_ns:.0} | {point_ns:.0} | {build_s:.3} | {:.1} |",
            mesh.len(),
            index.memory_bytes() as f64 / 1e6
        );
    }
    Ok(())
}

/// Loading a 1M-triangle binary STL from disk (page cache warm), and building its index.
fn load(quick: bool) -> Result<()> {
    println!("\n### Loading a binary STL\n");
    let threads = rayon::current_num_threads();
    println!(
        "| triangles | file MB | threads | read s | parse + validate s | index s | hash s | total s | index MB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cells = if quick { 300 } else { 708 };
    let tris = models::wavy_surface(cells);
    let dir = std::env::temp_dir().join(format!("millpond-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("wavy.stl");
    millpond_core::stl::write_binary(
        std::io::BufWriter::new(std::fs::File::create(&path)?),
        "millpond bench",
        &tris,
    )?;
    drop(tris);
    // Warm the page cache, then take the best of five of each step (a fresh mesh each time:
    // the hash is computed once per mesh).
    let _ = std::fs::read(&path)?;
    let mut best = [f64::INFINITY; 4];
    let mut last = None;
    for _ in 0..5 {
        let t = Instant::now();
        let bytes = std::fs::read(&path)?;
        let read_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mesh = Mesh::from_stl_bytes(&bytes, "wavy.stl")?;
        let parse_s = t.elapsed().as_secs_f64();
        drop(bytes);
        let t = Instant::now();
        let index = TriangleIndex::new(&mesh);
        let index_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = mesh.hash();
        let hash_s = t.elapsed().as_secs_f64();
        for (b, s) in best.iter_mut().zip([read_s, parse_s, index_s, hash_s]) {
            *b = b.min(s);
        }
        last = Some((mesh, index));
    }
    let (mesh, index) = last.context("no mesh")?;
    println!(
        "| {} | {:.1} | {threads} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} |",
        mesh.len(),
        std::fs::metadata(&path)?.len() as f64 / 1e6,
        best[0],
        best[1],
        best[2],
        best[3],
        best.iter().sum::<f64>(),
        index.memory_bytes() as f64 / 1e6
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A raster job in the pool: one member with one worker, then two members (this process and a
/// `millpond serve` child) with one worker each, on loopback.
fn pool(quick: bool) -> Result<()> {
    use millpond_net::{Pool, PoolConfig, Secret};
    let exe = std::env::current_exe()?;
    let millpond = exe.with_file_name("millpond");
    if !millpond.exists() {
        println!("\n(pool benchmark skipped: build the app first, `cargo build --release`)");
        return Ok(());
    }
    println!("\n### The pool: one raster job, 1 worker vs 2 processes × 1 worker (loopback)\n");
    let mesh = Arc::new(Mesh::from_triangles(
        models::geodesic_sphere(Point3::new(0.0, 0.0, 0.0), 50.0, 100),
        "sphere-200k",
    )?);
    let index = Arc::new(TriangleIndex::new(&mesh));
    let s = if quick { 0.2 } else { 0.04 };
    let spec = millpond_tests::pool::raster_spec_of(&mesh, 2.0 * s, s);
    let chunks = spec.chunk_count();
    let secret = Secret::new("benchmark pool secret", "bench")?;
    let dir = std::env::temp_dir().join(format!("millpond-bench-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let secret_file = dir.join("secret");
    secret.save(&secret_file)?;
    let run = |remote: Option<String>| -> Result<(f64, millpond_net::PoolStats)> {
        let mut cfg = PoolConfig::new(secret.clone());
        cfg.workers = 1;
        cfg.name = "bench-owner".into();
        cfg.remotes = remote.into_iter().collect();
        let pool = Pool::start(cfg)?;
        if !pool.stats().remotes.is_empty() || !pool.stats().remotes.is_empty() {
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while pool.stats().hosts.len() < 2 {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the serve process did not link up"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let t = Instant::now();
        let job = pool.submit(mesh.clone(), index.clone(), spec.clone())?;
        job.wait(|_| {})?;
        let secs = t.elapsed().as_secs_f64();
        let stats = pool.stats();
        pool.shutdown();
        Ok((secs, stats))
    };
    // Three runs of each, best and median: this machine's speed varies by tens of percent.
    let mut ones = Vec::new();
    for _ in 0..3 {
        ones.push(run(None)?.0);
    }
    // Reference: the same job on this process's two cores, no pool.
    let mut locals = Vec::new();
    for _ in 0..3 {
        let ctx = millpond_core::JobContext::new(mesh.clone(), index.clone(), spec.clone())?;
        let t = Instant::now();
        let r = run_local(&ctx, 2, &CancelToken::new(), &|_| {})?;
        ctx.finish(r)?;
        locals.push(t.elapsed().as_secs_f64());
    }
    locals.sort_by(f64::total_cmp);
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
        s.local_addr()?.port()
    };
    let mut child = Command::new(&millpond)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "1",
            "--name",
            "bench-helper",
        ])
        .arg("--secret-file")
        .arg(&secret_file)
        .env("MILLPOND_CONFIG_DIR", dir.join("helper"))
        .env(
            "MILLPOND_LOG",
            std::env::var("MILLPOND_BENCH_HELPER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stderr(std::fs::File::create(dir.join("helper.log"))?)
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut twos = Vec::new();
    let mut all_stats = Vec::new();
    for _ in 0..3 {
        match run(Some(format!("127.0.0.1:{port}"))) {
            Ok((t, s)) => {
                twos.push(t);
                all_stats.push(s);
            }
            Err(e) => {
                let _ = child.kill();
                return Err(e);
            }
        }
    }
    let link_bytes = |s: &millpond_net::PoolStats| {
        s.hosts
            .iter()
            .find(|h| h.name == "bench-helper")
            .map_or(0, |h| h.bytes_in + h.bytes_out)
    };
    let first_bytes = all_stats.first().map_or(0, link_bytes);
    let stats = all_stats.pop().context("no pooled run")?;
    let cached_bytes = link_bytes(&stats);
    let sorted = |v: &mut Vec<f64>| v.sort_by(f64::total_cmp);
    sorted(&mut ones);
    sorted(&mut twos);
    let (one, two) = (ones[0], twos[0]);
    let (one_med, two_med) = (ones[1], twos[1]);
    let helper = stats.hosts.iter().find(|h| h.name == "bench-helper");
    let (_bytes, transfer) =
        helper.map_or((0, 0.0), |h| (h.bytes_in + h.bytes_out, h.avg_transfer_s));
    let remote = helper.map_or(0, |h| h.chunks_done);
    // Time to notice a host that dies without a word.
    let mut cfg = PoolConfig::new(secret.clone());
    cfg.workers = 1;
    cfg.remotes = vec![format!("127.0.0.1:{port}")];
    let watcher = Pool::start(cfg)?;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while watcher
        .stats()
        .hosts
        .iter()
        .all(|h| h.name != "bench-helper")
        && Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill()?;
    let killed = Instant::now();
    let _ = child.wait();
    while watcher
        .stats()
        .hosts
        .iter()
        .any(|h| h.name == "bench-helper" && h.hops == 1)
        && killed.elapsed().as_secs() < 20
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let detect = killed.elapsed().as_secs_f64();
    watcher.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "| setup | best s | median s | chunks | chunks from the other process (last run) | ratio, best | ratio, median |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!("| 1 process × 1 worker | {one:.2} | {one_med:.2} | {chunks} | 0 | 1.00 | 1.00 |");
    println!(
        "| 2 processes × 1 worker | {two:.2} | {two_med:.2} | {chunks} | {remote} | {:.2} | {:.2} |",
        two / one,
        two_med / one_med
    );
    println!(
        "| reference: 1 process × 2 threads, no pool | {:.2} | {:.2} | {chunks} | – | {:.2} | {:.2} |",
        locals[0],
        locals[1],
        locals[0] / one,
        locals[1] / one_med
    );
    println!(
        "\nPer-chunk overhead (2 × best pooled time − best 1-worker time, per chunk): {:.1} ms; \
         average result transfer {:.1} ms. Bytes over the link per job, both ways: {:.1} MB the \
         first time (the 14.4 MB mesh, grants, results), {:.1} MB once the helper has the mesh \
         cached. A SIGKILLed host was noticed after {detect:.2} s.",
        (2.0 * two - one) / f64::from(chunks) * 1e3,
        transfer * 1e3,
        first_bytes as f64 / 1e6,
        cached_bytes as f64 / 1e6
    );
    Ok(())
}

/// Waterline contours of the 200k-triangle sphere (radius 50 mm), 3 mm ball, 20 levels through
/// the whole sphere, 0.05 mm fibers; then roughing of the same sphere with a 6 mm flat end mill,
/// 1 mm stepdown. Three runs per thread count, median and best.
fn waterline(quick: bool) -> Result<()> {
    use millpond_core::job::JobOutput;
    use millpond_core::setup::{RoughingParams, Setup, Stock, Strategy};
    use millpond_core::waterline::ContourSpec;
    let mesh = Arc::new(Mesh::from_triangles(
        Model::Sphere200k.triangles(),
        "sphere-200k",
    )?);
    let index = Arc::new(TriangleIndex::new(&mesh));
    let bounds = mesh.bounds();
    // Three runs per thread count: (median s, best s) and the last output; and from the
    // 1-thread runs, how the work divides: the largest chunk's share of the job's compute
    // plus assembly, and assembly's share (what no second core or pool member can take).
    let time = |spec: JobSpec| -> Result<(Vec<Timed>, Shares)> {
        let ctx = JobContext::new(mesh.clone(), index.clone(), spec)?;
        let mut rows = Vec::new();
        let mut shares = Shares::default();
        for threads in [1, 2] {
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..3 {
                let chunks = std::sync::Mutex::new(Vec::new());
                let t0 = Instant::now();
                let results = run_local(&ctx, threads, &CancelToken::new(), &|e| {
                    if let RunEvent::Progress {
                        worker: Some(w), ..
                    } = e
                    {
                        chunks.lock().unwrap().push(w.compute_s);
                    }
                })?;
                let pieces = (threads == 1).then(|| results.clone());
                let t1 = Instant::now();
                last = Some(ctx.finish(results)?);
                let assembly = t1.elapsed().as_secs_f64();
                times.push(t0.elapsed().as_secs_f64());
                if let Some(results) = pieces {
                    let chunks = chunks.into_inner().unwrap();
                    let total: f64 = chunks.iter().sum::<f64>() + assembly;
                    let largest = chunks.iter().copied().fold(0.0, f64::max);
                    let (piece, serial) = assembly_pieces(&ctx, results)?;
                    shares = Shares {
                        chunks: chunks.len(),
                        largest: largest / total,
                        assembly: assembly / total,
                        piece: piece / total,
                        serial: serial.min(assembly) / total,
                    };
                }
            }
            times.sort_by(f64::total_cmp);
            rows.push((threads, times[1], times[0], last.context("no run")?));
        }
        Ok((rows, shares))
    };

    // A Markdown table of `spec` timed: threads, the `columns` that `describe` gives of the
    // output, median s, best s; then the assembly's shares.
    let table = |spec: JobSpec,
                 columns: &[&str],
                 describe: &dyn Fn(JobOutput) -> Result<String>|
     -> Result<()> {
        println!("| threads | {} | median s | best s |", columns.join(" | "));
        println!("{}|", "|---:".repeat(columns.len() + 3));
        let (rows, shares) = time(spec)?;
        for (threads, median, best, out) in rows {
            let cells = describe(out)?;
            println!("| {threads} | {cells} | {median:.2} | {best:.2} |");
        }
        println!("\n{shares}");
        Ok(())
    };

    let cutter: Cutter = "ball:3".parse()?;
    let sampling = if quick { 0.5 } else { 0.05 };
    let levels: Vec<f64> = (0..20).map(|k| 47.5 - 5.0 * k as f64).collect();
    let grid = ContourSpec::grid_around(bounds.xy(), cutter.radius(), sampling)?;
    let points = grid.points();
    let spec = JobSpec {
        mesh: mesh.hash(),
        cutter,
        operation: Operation::Contours(ContourSpec {
            grid,
            levels,
            allowance: 0.0,
        }),
    };
    println!("\n### Waterline contours and roughing (`millpond-bench --waterline-only`)\n");
    println!(
        "sphere-200k ({} triangles, radius 50 mm), ball:3, 20 levels from z = 47.5 to -47.5, \
         fibers every {sampling} mm ({points} grid points); three runs, median and best.\n",
        mesh.len(),
    );
    table(spec, &["loops", "contour points"], &|out| {
        let JobOutput::Contours(levels) = out else {
            bail!("a contour job gave no contours");
        };
        let loops = levels.iter().map(|l| l.contours.len()).sum::<usize>();
        let points: usize = levels
            .iter()
            .flat_map(|l| &l.contours)
            .map(|c| c.points.len())
            .sum();
        Ok(format!("{loops} | {points}"))
    })?;

    // Roughing as the app plans it: the default roughing operation (offset rings 40 % of the
    // diameter apart, 0.3 mm allowance, outlines traced on 0.25 mm fibers) with a 1 mm
    // stepdown, in the default stock (the sphere's box plus 2 mm around and 1 mm on top).
    let cutter: Cutter = "flat:6".parse()?;
    let params = RoughingParams {
        stepdown: 1.0,
        ..RoughingParams::default()
    };
    let setup = Setup::new(mesh.hash(), bounds, &Stock::default())?;
    let spec = setup.plan(&Strategy::Roughing(params), cutter)?;
    let layers = match &spec.operation {
        Operation::Rough(r) => r.contours.levels.len(),
        _ => bail!("roughing planned as something else"),
    };
    println!(
        "\nRoughing the same sphere: flat:6, stepdown 1 mm ({layers} layers), otherwise the \
         app's default roughing (offset rings 2.4 mm apart, 0.3 mm allowance, outlines on \
         {} mm fibers) and stock; three runs, median and best.\n",
        params.sampling
    );
    table(spec, &["moves", "cut length m"], &|out| {
        let JobOutput::Toolpath(tp) = out else {
            bail!("a roughing job gave no toolpath");
        };
        let stats = tp.stats(&millpond_core::Feeds::default());
        Ok(format!("{} | {:.1}", stats.moves, stats.cut_length / 1e3))
    })
}

/// One thread count's runs: threads, median s, best s, the last run's output.
type Timed = (usize, f64, f64, millpond_core::job::JobOutput);

/// A contour job's assembly timed in its pieces on this thread, from its chunk results:
/// (the largest piece that runs in parallel with the others, the serial part), in seconds.
/// Contours are joined level by level in one pass (serial); roughing then plans each layer
/// on its own (`rough::layer`, in parallel) and links them (`rough::link`, serial).
fn assembly_pieces(
    ctx: &JobContext,
    results: Vec<millpond_core::job::ChunkResult>,
) -> Result<(f64, f64)> {
    use millpond_core::{rough, waterline};
    let (levels, rough) = match &ctx.spec().operation {
        Operation::Contours(c) => (&c.levels, None),
        Operation::Waterline(w) => (&w.contours.levels, None),
        Operation::Rough(r) => (&r.contours.levels, Some(r)),
        _ => return Ok((0.0, 0.0)),
    };
    let mut results = results;
    results.sort_by_key(|r| r.chunk);
    let chains = results.into_iter().map(|r| r.data.into_chains()).collect();
    let t = Instant::now();
    let levels = waterline::assemble(levels, chains)?;
    let join = t.elapsed().as_secs_f64();
    let Some(spec) = rough else {
        // Waterline finishing links its loops serially after joining them, like `join`.
        return Ok((0.0, f64::INFINITY));
    };
    let model = ctx.contact(f64::NEG_INFINITY);
    let mut layers = Vec::new();
    let mut largest = 0.0f64;
    for k in 0..levels.len() {
        let t = Instant::now();
        layers.push(rough::layer(
            &model,
            ctx.spec().cutter,
            spec,
            &levels,
            k,
            None,
        ));
        largest = largest.max(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    rough::link(&model, spec, &levels, &layers);
    Ok((largest, join + t.elapsed().as_secs_f64()))
}

/// How a job's work divides, from a 1-thread run: the bound on its speed-up from cores is
/// 1 / max(largest chunk, largest parallel piece of assembly, serial part of assembly), each
/// as a share of the job's work (pool members take only chunks).
#[derive(Clone, Copy, Debug, Default)]
struct Shares {
    chunks: usize,
    /// The largest chunk's compute time over the job's (chunks + assembly).
    largest: f64,
    /// Assembly's (`JobContext::finish`) over the same.
    assembly: f64,
    /// Assembly's largest piece that runs beside the others (a roughing layer).
    piece: f64,
    /// Assembly's serial part (all of it, where it has no parallel pieces).
    serial: f64,
}

impl std::fmt::Display for Shares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} chunks; on 1 thread the largest chunk is {:.1} % of the job's work; assembly \
             {:.1} %, of which the largest parallel piece is {:.1} % and the serial part \
             {:.1} %: no more than {:.0}x faster on any number of cores.",
            self.chunks,
            self.largest * 100.0,
            self.assembly * 100.0,
            self.piece * 100.0,
            self.serial * 100.0,
            1.0 / self.largest.max(self.piece).max(self.serial).max(1e-9)
        )
    }
}

/// The machining time planner (`millpond_core::planner`) on a fine zigzag raster over the
/// wavy surface: 1000 lines of 1000 moves (quick: 100 lines), 0.1 mm apart along the line.
/// Bytes written, and nothing kept: the writer's own speed, not the disk's.
struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A zigzag raster over the wavy surface: `lines` lines `step` mm apart, each of `per_line`
/// cuts `step` mm long after its plunge, from a start 10 mm up.
fn wavy_zigzag(lines: usize, per_line: usize, step: f64) -> millpond_core::Toolpath {
    use millpond_core::toolpath::{MoveKind, Toolpath};
    let mut tp = Toolpath {
        start: Point3::new(0.0, 0.0, 10.0),
        moves: Vec::with_capacity(lines * (per_line + 1)),
    };
    for j in 0..lines {
        let y = j as f64 * step;
        for i in 0..=per_line {
            let k = if j % 2 == 0 { i } else { per_line - i };
            let x = k as f64 * step;
            let kind = if i == 0 {
                MoveKind::Plunge
            } else {
                MoveKind::Cut
            };
            tp.push(kind, Point3::new(x, y, models::wavy_height(x, y)));
        }
    }
    tp
}

/// The G-code writer on a large raster program (10M moves; `--quick` 1M) for each post:
/// megabytes per second and bytes per move, the header's time estimate included.
fn gcode(quick: bool) -> Result<()> {
    use millpond_core::gcode::{Operation, Post, ProgramUnits, write_program_at};
    use millpond_core::planner::MachineProfile;
    use millpond_core::post::PostProcessor;
    let (lines, per_line) = if quick { (1000, 1000) } else { (5000, 2000) };
    let tp = wavy_zigzag(lines, per_line, 0.05);
    let op = Operation {
        name: "Raster finishing",
        tool_number: 1,
        cutter: millpond_core::Cutter::Ball { diameter: 3.0 },
        feeds: millpond_core::Feeds::default(),
        safe_z: 15.0,
        spindle_dwell_s: 0.0,
        arcs: &[],
        toolpath: &tp,
    };
    println!(
        "\nG-code writer (`--gcode-only`): a zigzag raster of {} moves over the wavy surface, \
         written to a counting sink (no disk), header time estimate included; best of three.\n",
        tp.moves.len()
    );
    println!("| post | moves | MB | bytes/move | s | MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    let posts = PostProcessor::built_in();
    let mut runs: Vec<(String, Post<'_>)> = posts
        .iter()
        .map(|p| (format!("{}, mm", p.name), Post::new(p)))
        .collect();
    runs.push((
        "LinuxCNC, inch".into(),
        Post {
            processor: &posts[0],
            units: ProgramUnits::Inches,
        },
    ));
    for (name, post) in runs {
        let mut best = f64::INFINITY;
        let mut bytes = 0;
        for _ in 0..3 {
            let mut sink = std::io::BufWriter::with_capacity(1 << 16, CountingSink(0));
            let t0 = Instant::now();
            write_program_at(
                &mut sink,
                post,
                "bench",
                None,
                &MachineProfile::hobby(),
                &[op],
            )?;
            let sink = sink.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
            best = best.min(t0.elapsed().as_secs_f64());
            bytes = sink.0;
        }
        let mb = bytes as f64 / 1e6;
        println!(
            "| {name} | {} | {mb:.1} | {:.1} | {best:.2} | {:.0} |",
            tp.moves.len(),
            bytes as f64 / tp.moves.len() as f64,
            mb / best
        );
    }
    Ok(())
}

fn planner(quick: bool) -> Result<()> {
    use millpond_core::planner::{MachineProfile, estimate_time};
    let lines = if quick { 100 } else { 1000 };
    let tp = wavy_zigzag(lines, 1000, 0.1);
    let feeds = millpond_core::Feeds::default();
    let machine = MachineProfile::hobby();
    println!(
        "\nMachining time planner (`--planner-only`): a zigzag raster of {} moves over the \
         wavy surface, 0.1 mm apart, on the hobby machine; three runs.\n",
        tp.moves.len()
    );
    println!("| moves | planned s | length ÷ feed s | run s | moves/s |");
    println!("|---:|---:|---:|---:|---:|");
    for _ in 0..3 {
        let t0 = Instant::now();
        let e = estimate_time(&tp, &feeds, &machine);
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "| {} | {:.0} | {:.0} | {dt:.3} | {:.2e} |",
            tp.moves.len(),
            e.total_s,
            tp.stats(&feeds).machining_time_s,
            tp.moves.len() as f64 / dt
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--planner-only") {
        return planner(quick);
    }
    if args.iter().any(|a| a == "--load-only") {
        // `--threads N`: the cores loading may use (all of them by default).
        if let Some(k) = args.iter().position(|a| a == "--threads") {
            let n: usize = args.get(k + 1).context("--threads N")?.parse()?;
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()?;
        }
        return load(quick);
    }
    if args.iter().any(|a| a == "--relief-only") {
        return relief(quick);
    }
    if args.iter().any(|a| a == "--gcode-only") {
        return gcode(quick);
    }
    if args.iter().any(|a| a == "--pool-only") {
        return pool(quick);
    }
    if let Some(k) = args.iter().position(|a| a == "--simulate-one") {
        let threads: usize = args.get(k + 1).context("threads")?.parse()?;
        let chunks = args.iter().any(|a| a == "--chunks");
        return simulate_one(threads, quick, chunks);
    }
    if let Some(k) = args.iter().position(|a| a == "--program-one") {
        let threads: usize = args.get(k + 1).context("threads")?.parse()?;
        return program_one(threads, quick);
    }
    if args.iter().any(|a| a == "--simulate-only") {
        return simulate(quick);
    }
    if args.iter().any(|a| a == "--waterline-only") {
        return waterline(quick);
    }
    if args.first().map(String::as_str) == Some("--one") {
        let model = Model::parse(args.get(1).context("model")?)?;
        let tool = args.get(2).context("tool")?;
        let threads: usize = args.get(3).context("threads")?.parse()?;
        return run_one(model, tool, threads, quick);
    }
    let exe = std::env::current_exe()?;
    println!(
        "### Raster drop-cutter throughput (`millpond-bench`{})\n",
        if quick { " --quick" } else { "" }
    );
    println!(
        "Each configuration runs three times in fresh processes; CL points/s is given as the \
         median and the best of the three (this virtual machine's speed drifts by ±20%).\n"
    );
    println!(
        "| model | triangles | tool | threads | CL points | median s | CL points/s, median | CL points/s, best | peak RSS MB | budget MB (100 B/pt + 200 B/tri) |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let configs = [
        (Model::Sphere200k, "ball:3"),
        (Model::Sphere200k, "flat:6"),
        (Model::Wavy1M, "ball:3"),
        (Model::Wavy1M, "flat:6"),
        (Model::Tiny, "ball:3"),
        (Model::Tiny, "flat:6"),
    ];
    for (model, tool) in configs {
        for threads in [1, 2] {
            let mut runs: Vec<serde_json::Value> = Vec::new();
            for _ in 0..3 {
                let args = ["--one", model.name(), tool, &threads.to_string()];
                let what = format!("{} {tool} {threads}", model.name());
                runs.push(run_fresh(&exe, &args, quick, &what)?);
            }
            let rate = |v: &serde_json::Value| v["points_per_s"].as_f64().unwrap_or(0.0);
            runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
            let (median, best) = (&runs[1], &runs[2]);
            let tris = median["triangles"].as_u64().unwrap_or(0);
            let points = median["points"].as_u64().unwrap_or(0);
            let budget = (100 * points + 200 * tris) as f64 / 1e6;
            let peak = runs
                .iter()
                .map(|v| v["peak_rss"].as_f64().unwrap_or(0.0))
                .fold(0.0, f64::max);
            println!(
                "| {} | {tris} | {tool} | {threads} | {points} | {:.2} | {:.0} | {:.0} | {:.0} | {budget:.0} |",
                model.name(),
                median["compute_s"].as_f64().unwrap_or(0.0),
                rate(median),
                rate(best),
                peak / 1e6,
            );
        }
    }
    scaling(quick)?;
    load(quick)?;
    waterline(quick)?;
    planner(quick)?;
    simulate(quick)?;
    pool(quick)
}

/// This benchmark run again as `exe ARGS` (and `--quick` when `quick`) in a fresh process, for
/// its own peak memory: the JSON it prints. `what` names the run if it fails.
fn run_fresh(
    exe: &std::path::Path,
    args: &[&str],
    quick: bool,
    what: &str,
) -> Result<serde_json::Value> {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The simulation benchmark (`--simulate-only`): each way and thread count in a fresh
/// process, for its own peak memory.
fn simulate(quick: bool) -> Result<()> {
    let exe = std::env::current_exe()?;
    println!(
        "\nStock simulation (`--simulate-only`{}): the raster finishing program of the \
         280k-triangle terrain relief stretched over 200 × 170 mm (3 mm ball, 0.1 mm stepover \
         and sampling), machined into the stock on a 0.05 mm grid and checked against the \
         model; one fresh process per row. Batches: what `millpond simulate` and the window \
         run (batches of 65,536 moves, each batch's tiles on all threads). Chunks: the \
         stock's tiles as a job's chunks (`SimulationJob`), each through the whole program; \
         the same stock and figures bit for bit.\n",
        if quick { " --quick" } else { "" }
    );
    println!(
        "| way | threads | moves | cells | stock MB | simulate and check s | moves/s | peak RSS MB (program + mesh + stock) | units of work | largest unit | bound |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for chunks in [false, true] {
        for threads in [1, 2] {
            let threads_arg = threads.to_string();
            let mut args = vec!["--simulate-one", &threads_arg];
            if chunks {
                args.push("--chunks");
            }
            let v = run_fresh(&exe, &args, quick, &format!("simulate {threads}"))?;
            println!(
                "| {} | {threads} | {} | {} | {:.0} | {:.2} | {:.0} | {:.0} | {} | {:.2} % | {:.0}× |",
                if chunks { "chunks" } else { "batches" },
                v["moves"],
                v["cells"],
                v["stock_mb"].as_f64().unwrap_or(0.0),
                v["simulate_s"].as_f64().unwrap_or(0.0),
                v["moves_per_s"].as_f64().unwrap_or(0.0),
                v["peak_rss"].as_f64().unwrap_or(0.0) / 1e6,
                v["units"].as_str().unwrap_or(""),
                100.0 * v["largest_share"].as_f64().unwrap_or(0.0),
                v["bound"].as_f64().unwrap_or(0.0),
            );
        }
    }
    Ok(())
}

/// The relief, its index, its setup, the tool and the raster job ([`relief_raster`]).
type ReliefRaster = (
    Arc<Mesh>,
    Arc<TriangleIndex>,
    millpond_core::setup::Setup,
    Cutter,
    JobSpec,
);

/// The raster finishing job of the simulation and program benchmarks: the terrain relief
/// stretched over 200 × 170 mm (`cells`, see [`stretched_relief`]), in a stock 1 mm above it,
/// a 3 mm ball at `step` mm stepover and sampling.
fn relief_raster(cells: usize, step: f64) -> Result<ReliefRaster> {
    use millpond_core::setup::{RasterParams, Setup, Stock, Strategy};
    let mesh = Arc::new(stretched_relief(cells)?);
    let index = Arc::new(TriangleIndex::new(&mesh));
    let setup = Setup::new(
        mesh.hash(),
        mesh.bounds(),
        &Stock::around_model(0.0, 1.0, 0.0),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cutter: Cutter = "ball:3".parse()?;
    let spec = setup
        .plan(
            &Strategy::RasterFinishing(RasterParams {
                stepover: step,
                sampling: step,
                ..RasterParams::default()
            }),
            cutter,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((mesh, index, setup, cutter, spec))
}

/// How a run's batches divided into tiles ([`StockModel::work_profile`]): batches, tiles a
/// batch, the seconds of tile work, the largest tile's share of it, and the bound on the
/// speed-up (the batches run one after another, each no faster than its longest tile).
fn work_summary(work: &[millpond_core::stock_model::BatchWork]) -> serde_json::Value {
    let total: f64 = work.iter().map(|b| b.total_s).sum();
    let critical: f64 = work.iter().map(|b| b.largest_s).sum();
    let largest = work.iter().map(|b| b.largest_s).fold(0.0, f64::max);
    let tiles = work.iter().map(|b| b.tiles).sum::<usize>() as f64 / work.len().max(1) as f64;
    serde_json::json!({
        "batches": work.len(),
        "tiles_per_batch": tiles,
        "work_s": total,
        "largest_tile_share": largest / total,
        "bound": total / critical,
    })
}

/// One simulation run in this process: prints one JSON line. Batch by batch as `millpond
/// simulate` runs it (each batch's tiles timed), or with `chunks` as a job of chunks of
/// tiles, each timed (run here rather than by `SimulationJob::run` for that). Either way the
/// largest unit's share of the work, and the bound on the speed-up any number of cores could
/// give: batches run one after another, each no faster than its longest tile; chunks run side
/// by side between planning and putting them together.
fn simulate_one(threads: usize, quick: bool, chunks: bool) -> Result<()> {
    use millpond_core::job::JobOutput;
    use millpond_core::simulate::{Pass, PassFeeds, Target};
    let (mesh, index, setup, cutter, spec) =
        relief_raster(if quick { 120 } else { 374 }, if quick { 0.5 } else { 0.1 })?;
    let ctx = JobContext::new(mesh.clone(), index.clone(), spec)?;
    let results = run_local(&ctx, 2, &CancelToken::new(), &|_| {})?;
    let JobOutput::Toolpath(tp) = ctx.finish(results)? else {
        bail!("no toolpath");
    };
    // The program as a simulation job holds it (the pass below borrows it: no copy).
    let program = Arc::new(millpond_core::sim_job::ProgramMoves {
        passes: vec![(cutter, tp)],
    });
    let tp = &program.passes[0].1;
    let cell = if quick { 0.2 } else { 0.05 };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let pass = Pass {
        name: "raster",
        tool_number: 1,
        cutter,
        toolpath: tp,
        feeds: PassFeeds::Operation(millpond_core::Feeds::default()),
        lines: None,
    };
    let target = Target {
        mesh: &mesh,
        index: &index,
        floor: setup.floor,
    };
    let t0 = Instant::now();
    let run = pool.install(|| match chunks {
        false => simulate_batches(&pass, &target, setup.stock, cell),
        true => {
            let model = millpond_core::sim_job::Model {
                mesh: mesh.clone(),
                index: index.clone(),
                floor: setup.floor,
            };
            simulate_chunks(&pass, program.clone(), model, setup.stock, cell)
        }
    })?;
    let simulate_s = t0.elapsed().as_secs_f64();
    let (nx, ny) = run.stock.size();
    let line = serde_json::json!({
        "threads": threads,
        "moves": tp.moves.len(),
        "cells": nx * ny,
        "stock_mb": run.stock.memory_bytes() as f64 / 1e6,
        "simulate_s": simulate_s,
        "moves_per_s": tp.moves.len() as f64 / simulate_s,
        "removed_mm3": run.removed_mm3,
        "units": run.units,
        "largest_share": run.largest_share,
        "bound": run.bound,
        "gouge": run.gouge,
        "peak_rss": peak_rss(),
    });
    println!("{line}");
    Ok(())
}

/// What [`simulate_one`] measured besides the time.
struct SimulationRun {
    stock: millpond_core::stock_model::StockModel,
    removed_mm3: f64,
    gouge: Option<f64>,
    units: String,
    largest_share: f64,
    bound: f64,
}

/// The pass machined batch by batch (`simulate_pass`, each batch's tiles timed), then checked.
fn simulate_batches(
    pass: &millpond_core::simulate::Pass<'_>,
    target: &millpond_core::simulate::Target<'_>,
    stock: millpond_core::Aabb,
    cell: f64,
) -> Result<SimulationRun> {
    use millpond_core::simulate;
    use millpond_core::stock_model::StockModel;
    let mut model = StockModel::with_budget(stock, cell, 1 << 30)?;
    model.profile_work(true);
    let report = simulate::simulate_pass(&mut model, pass, &CancelToken::new(), &mut |_, _| {})?;
    let check = simulate::verify(&model, target, simulate::DEFAULT_TOLERANCE);
    let work = work_summary(model.work_profile());
    Ok(SimulationRun {
        units: format!(
            "{} batches × {:.1} tiles",
            work["batches"],
            work["tiles_per_batch"].as_f64().unwrap_or(0.0)
        ),
        largest_share: work["largest_tile_share"].as_f64().unwrap_or(0.0),
        bound: work["bound"].as_f64().unwrap_or(0.0),
        removed_mm3: report.removed_mm3,
        gouge: check.gouge.map(|g| -g.deviation),
        stock: model,
    })
}

/// The pass machined and checked as a job of chunks of tiles, each chunk timed.
fn simulate_chunks(
    pass: &millpond_core::simulate::Pass<'_>,
    program: Arc<millpond_core::sim_job::ProgramMoves>,
    model: millpond_core::sim_job::Model,
    stock: millpond_core::Aabb,
    cell: f64,
) -> Result<SimulationRun> {
    use millpond_core::sim_job::SimulationJob;
    use millpond_core::simulate;
    use rayon::prelude::*;
    let t0 = Instant::now();
    let passes = [*pass];
    let tolerance = simulate::DEFAULT_TOLERANCE;
    let job = SimulationJob::new(stock, cell, 1 << 30, program, Some(model), tolerance)?;
    let plan_s = t0.elapsed().as_secs_f64();
    let cancel = CancelToken::new();
    let chunks = (0..job.chunk_count())
        .into_par_iter()
        .with_max_len(1)
        .map(|c| {
            let t = Instant::now();
            let chunk = job.run_chunk(c, &cancel)?;
            Ok((chunk, t.elapsed().as_secs_f64()))
        })
        .collect::<Result<Vec<_>, millpond_core::job::Cancelled>>()?;
    let work: Vec<f64> = chunks.iter().map(|c| c.1).collect();
    let t1 = Instant::now();
    let (model, ops) = job.finish(chunks.into_iter().map(|c| c.0).collect(), &passes)?;
    let finish_s = t1.elapsed().as_secs_f64();
    let (report, check) = &ops[0];
    let total: f64 = work.iter().sum();
    let largest = work.iter().copied().fold(0.0, f64::max);
    Ok(SimulationRun {
        units: format!(
            "{} chunks (planning {plan_s:.2} s, putting together {finish_s:.2} s)",
            work.len()
        ),
        largest_share: largest / total,
        bound: (plan_s + total + finish_s) / (plan_s + largest + finish_s),
        removed_mm3: report.removed_mm3,
        gouge: check.as_ref().and_then(|c| c.gouge).map(|g| -g.deviation),
        stock: model,
    })
}

/// A whole raster finishing program as `millpond toolpath` makes it, phase by phase, in this
/// process on `threads` threads: computing the chunks, assembling them into one toolpath
/// (`JobContext::finish`, best of five), checking it against the stock with the time
/// estimate beside it (`Program::post_timed`), fitting arcs (`Program::arcs`), and writing
/// the G-code (LinuxCNC post, work zero at the stock's corner, best of three) to a counting
/// sink. Prints one JSON line. The 280k-triangle relief over 200 × 170 mm, 3 mm ball,
/// 0.05 mm stepover and sampling (`--quick`: 0.25 mm on the small relief).
fn program_one(threads: usize, quick: bool) -> Result<()> {
    use millpond_core::gcode::{self, write_program_timed};
    use millpond_core::job::JobOutput;
    use millpond_core::planner::MachineProfile;
    use millpond_core::post::PostProcessor;
    use millpond_core::program::{PlannedOp, Program, work_zero};
    use millpond_core::setup::WorkZeroChoice;
    let (mesh, index, setup, cutter, spec) = relief_raster(
        if quick { 120 } else { 374 },
        if quick { 0.25 } else { 0.05 },
    )?;
    let post = PostProcessor::built_in()
        .into_iter()
        .next()
        .context("a built-in post")?;
    let program = Program {
        title: "bench".into(),
        units: post.default_units(),
        post,
        spindle_dwell_s: 0.0,
        zero: Some(work_zero(WorkZeroChoice::default(), &setup)),
        setup,
        ops: vec![(
            0,
            PlannedOp {
                name: "Raster finishing".into(),
                tool_number: 1,
                cutter,
                feeds: millpond_core::Feeds::default(),
                max_depth_of_cut: 6.0,
                spec: spec.clone(),
            },
        )],
    };
    let machine = MachineProfile::hobby();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let ctx = JobContext::new(mesh.clone(), index.clone(), spec)?;
    let t = Instant::now();
    let results = run_local(&ctx, threads, &CancelToken::new(), &|_| {})?;
    let compute_s = t.elapsed().as_secs_f64();
    // Assembly is short: the best of five, so that another process's burst does not hide it.
    let mut assemble_s = f64::INFINITY;
    for _ in 0..4 {
        let copy = results.clone();
        let t = Instant::now();
        let out = pool.install(|| ctx.finish(copy))?;
        assemble_s = assemble_s.min(t.elapsed().as_secs_f64());
        drop(out);
    }
    let t = Instant::now();
    let JobOutput::Toolpath(tp) = pool.install(|| ctx.finish(results))? else {
        bail!("no toolpath");
    };
    let assemble_s = assemble_s.min(t.elapsed().as_secs_f64());
    let t = Instant::now();
    let (posted, times) = pool.install(|| program.post_timed(&[&tp], &machine))?;
    let check_s = t.elapsed().as_secs_f64();
    drop(tp);
    let t = Instant::now();
    let arcs = pool.install(|| program.arcs(&posted, &mesh, &index));
    let arcs_s = t.elapsed().as_secs_f64();
    let ops = program.gcode_operations(&posted, &arcs);
    let (mut write_s, mut bytes) = (f64::INFINITY, 0);
    for _ in 0..3 {
        let t = Instant::now();
        let mut sink = std::io::BufWriter::with_capacity(1 << 16, CountingSink(0));
        pool.install(|| {
            write_program_timed(
                &mut sink,
                program.post_settings(),
                "bench",
                program.zero.as_ref(),
                &machine,
                &ops,
                &times,
            )
        })?;
        bytes = sink.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?.0;
        write_s = write_s.min(t.elapsed().as_secs_f64());
    }
    // The check's batches again, each tile timed: how far the check could scale.
    // The tile sides to time the check in (`MILLPOND_BENCH_TILES=128,64`), the default's alone
    // without it.
    use millpond_core::stock_model::{StockModel, TILE};
    let tile_sides: Vec<usize> = std::env::var("MILLPOND_BENCH_TILES")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.parse().ok()).collect())
        .filter(|sides: &Vec<usize>| !sides.is_empty())
        .unwrap_or(vec![TILE]);
    let mut check_work = Vec::new();
    for side in tile_sides {
        let stock = program.setup.stock;
        let cell = StockModel::default_cell(stock, cutter.radius());
        let mut model = StockModel::with_tiles(stock, cell, usize::MAX, side)?;
        model.profile_work(true);
        pool.install(|| model.machine_with_safe_descents(&cutter, &posted[0].0, 6.0));
        let mut work = work_summary(model.work_profile());
        work["tile"] = side.into();
        check_work.push(work);
    }
    // What the estimate alone costs, had it run after the check.
    let t = Instant::now();
    let again = gcode::estimate_program(&ops, &machine);
    let estimate_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        again == times,
        "the estimate beside the check is the estimate"
    );
    let line = serde_json::json!({
        "threads": threads,
        "moves": posted[0].0.moves.len(),
        "bytes": bytes,
        "compute_s": compute_s,
        "assemble_s": assemble_s,
        "check_s": check_s,
        "arcs_s": arcs_s,
        "write_s": write_s,
        "estimate_s": estimate_s,
        "check_work": check_work,
        "peak_rss": peak_rss(),
    });
    println!("{line}");
    Ok(())
}
