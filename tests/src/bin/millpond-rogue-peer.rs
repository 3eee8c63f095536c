//! A hostile pool member for the end-to-end tests (`tests/tests/pool.rs`), never shipped: a
//! real `millpond_net::Pool` whose workers compute through a [`ComputeChunk`] that misbehaves.
//! The `millpond` binary has no way to do any of this.
//!
//! ```text
//! millpond-rogue-peer MODE --secret-file FILE [--listen ADDR] [--remote ADDR]... [--workers N] [--name NAME] [--hold-ms MS]
//! ```
//!
//! MODE: `poison` (every height or point 1 mm too high), `panic` (every computation panics),
//! `silent` (never returns: keeps what it is granted), `hoard` (sits on each chunk it is
//! granted for `--hold-ms`, default 1000, then returns its true result: with many workers
//! advertised, a peer that takes all it can get and gives it back late). Prints `serving on
//! ADDR` on stderr once listening, one line per chunk it touched (`poisoned chunk N`,
//! `panicking on chunk N`, `holding chunk N`, `hoarding chunk N` and `hoarded
//! chunk N`), and runs until killed.

use anyhow::{Context, Result, bail};
use millpond_core::job::{Cancelled, ChunkData};
use millpond_core::{CancelToken, JobContext};
use millpond_net::{ComputeChunk, Computed, Pool, PoolConfig, Secret};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Mode {
    Poison,
    Panic,
    Silent,
    Hoard,
}

#[derive(Debug)]
struct Rogue(Mode, Duration);

impl ComputeChunk for Rogue {
    fn compute(&self, ctx: &JobContext, chunk: u32, cancel: &CancelToken) -> Computed {
        match self.0 {
            Mode::Poison => {
                let mut r = ctx.run_chunk(chunk, cancel)?;
                match &mut r.data {
                    ChunkData::Heights(z) => z.iter_mut().for_each(|v| *v += 1.0),
                    ChunkData::Polylines(lines) => {
                        lines.iter_mut().flatten().for_each(|p| p.z += 1.0)
                    }
                    // Contours have no heights in their points: shift them 1 mm in x.
                    ChunkData::Chains(levels) => levels
                        .iter_mut()
                        .flatten()
                        .flat_map(|c| c.points.iter_mut())
                        .for_each(|p| p[0] += 1.0),
                    // The stock a little lower everywhere: a gouge the owner would report.
                    ChunkData::Stock(s) => s.heights.iter_mut().flatten().for_each(|z| *z -= 1.0),
                }
                eprintln!("poisoned chunk {chunk}");
                Ok(r)
            }
            Mode::Panic => {
                eprintln!("panicking on chunk {chunk}");
                panic!("rogue peer: chunk {chunk}");
            }
            Mode::Silent => {
                eprintln!("holding chunk {chunk}");
                while !cancel.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(Cancelled)
            }
            Mode::Hoard => {
                eprintln!("hoarding chunk {chunk}");
                let until = std::time::Instant::now() + self.1;
                while std::time::Instant::now() < until {
                    if cancel.is_cancelled() {
                        return Err(Cancelled);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let r = ctx.run_chunk(chunk, cancel)?;
                eprintln!("hoarded chunk {chunk}");
                Ok(r)
            }
        }
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("poison") => Mode::Poison,
        Some("panic") => Mode::Panic,
        Some("silent") => Mode::Silent,
        Some("hoard") => Mode::Hoard,
        other => bail!("first argument: poison, panic, silent or hoard, not {other:?}"),
    };
    let (mut secret, mut listen, mut remotes, mut workers, mut name) =
        (None, None, Vec::new(), 1, "rogue".to_string());
    let mut hold = Duration::from_millis(1000);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secret-file" => secret = Some(Secret::from_file(std::path::Path::new(&value))?),
            "--listen" => listen = Some(value.parse::<SocketAddr>()?),
            "--remote" => remotes.push(value),
            "--workers" => workers = value.parse()?,
            "--name" => name = value,
            "--hold-ms" => hold = Duration::from_millis(value.parse()?),
            _ => bail!("unknown flag {flag}"),
        }
    }
    let mut cfg = PoolConfig::new(secret.context("--secret-file is required")?);
    cfg.listen = Some(listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))));
    cfg.remotes = remotes;
    cfg.workers = workers;
    cfg.name = name;
    cfg.config_dir = None;
    cfg.compute = Arc::new(Rogue(mode, hold));
    let pool = Pool::start(cfg)?;
    let at = pool.local_addr().context("no local address")?;
    eprintln!("millpond: serving on {at} ({workers} workers, {mode:?})");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
