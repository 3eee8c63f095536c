//! Millpond's benchmark: `cargo run --release -p millpond-tests --bin millpond-bench`.
//!
//! Each configuration runs in a child process of its own so that its peak memory (VmHWM) is
//! its own. Prints a Markdown table: CL points per second and peak memory for raster
//! drop-cutter grids, then how the cost per point scales with mesh size at constant triangle
//! density (the index's O(log n + k) claim).
//!
//! `--quick` runs a reduced set (smaller grids) for a smoke test.

use anyhow::{Context, Result, bail};
use millpond_core::job::{DropSpec, Grid, Operation};
use millpond_core::runner::run_local;
use millpond_core::{
    Axis, CancelToken, Cutter, DropCutter, JobContext, JobSpec, Mesh, Point3, Rect, TriangleIndex,
    models,
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
                bounds: Rect::new(b.min.x, b.max.x, b.min.y, b.max.y),
                step: s,
                sampling: s,
            },
            floor: b.min.z,
        }),
    };
    let points = spec.grid().points();
    let ctx = JobContext::new(mesh.clone(), index.clone(), spec)?;
    let t1 = Instant::now();
    let results = run_local(&ctx, threads, &CancelToken::new(), &|_, _| {})?;
    let out = ctx.finish(results)?;
    let compute_s = t1.elapsed().as_secs_f64();
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
    });
    println!("{line}");
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
        &[200, 400, 800, 1600, 3200]
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
    println!("| triangles | file MB | read + parse + validate s | index build s | index MB |");
    println!("|---:|---:|---:|---:|---:|");
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
    // Warm the page cache, then take the best of three.
    let _ = std::fs::read(&path)?;
    let mut best = f64::INFINITY;
    let mut mesh = None;
    for _ in 0..3 {
        let t = Instant::now();
        let m = Mesh::from_stl_path(&path)?;
        best = best.min(t.elapsed().as_secs_f64());
        mesh = Some(m);
    }
    let mesh = mesh.context("no mesh")?;
    let t = Instant::now();
    let index = TriangleIndex::new(&mesh);
    let index_s = t.elapsed().as_secs_f64();
    println!(
        "| {} | {:.1} | {best:.3} | {index_s:.3} | {:.1} |",
        mesh.len(),
        std::fs::metadata(&path)?.len() as f64 / 1e6,
        index.memory_bytes() as f64 / 1e6
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
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
        "| model | triangles | tool | threads | CL points | seconds | CL points/s | peak RSS MB | budget MB (100 B/pt + 200 B/tri) |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
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
            let mut cmd = Command::new(&exe);
            cmd.args(["--one", model.name(), tool, &threads.to_string()]);
            if quick {
                cmd.arg("--quick");
            }
            let out = cmd.output()?;
            if !out.status.success() {
                bail!(
                    "{} {tool} {threads}: {}",
                    model.name(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let tris = v["triangles"].as_u64().unwrap_or(0);
            let points = v["points"].as_u64().unwrap_or(0);
            let budget = (100 * points + 200 * tris) as f64 / 1e6;
            println!(
                "| {} | {tris} | {tool} | {threads} | {points} | {:.2} | {:.0} | {:.0} | {budget:.0} |",
                model.name(),
                v["compute_s"].as_f64().unwrap_or(0.0),
                v["points_per_s"].as_f64().unwrap_or(0.0),
                v["peak_rss"].as_f64().unwrap_or(0.0) / 1e6,
            );
        }
    }
    scaling(quick)?;
    load(quick)
}
