//! Stock simulation as a job of chunks (ARCHITECTURE.md §2.2).
//!
//! The stock's tiles are cut into chunks of consecutive tiles. A chunk machines, for each
//! pass in order, the moves that reach its tiles (in program order, in the batches
//! [`StockModel::machine_batch`] takes), and checks its tiles against the model after each
//! pass. A tile needs nothing from its neighbours, so a chunk runs from the first move to the
//! last without waiting for any other: there is no barrier between batches of moves, and the
//! chunks are units of work like a toolpath job's, for any thread (and, their split being a
//! function of the stock and the cell size alone, for any host).
//!
//! A chunk reports, per pass and per tile, what each move that met material did there and how
//! the tile compares with the model. [`SimulationJob::finish`] merges them per move and per
//! pass in tile order, the order the batch-by-batch simulation
//! ([`simulate_program`](crate::simulate::simulate_program)) merges them in, and tallies the
//! moves in program order as it does: the stock and every figure are the same bits as its,
//! whatever ran the chunks, on however many threads or hosts. (Merging a chunk's tiles first
//! would save a record per move and tile but add the removed volumes in another order.)

use crate::geom::Aabb;
use crate::job::{CancelToken, Cancelled};
use crate::simulate::{
    Pass, PassReport, PassTally, SimulateError, Target, Verification, verify_tile,
};
use crate::stock_model::{PartMoves, StockModel, TileHit, swept_moves};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Chunks a simulation aims at: enough that no chunk is more than a few percent of the work
/// (a raster program's moves are spread over the stock, a roughing layer's over all of it),
/// few enough that each chunk's share of moves is swept once for several tiles.
const CHUNKS: usize = 256;

/// What one move did over a chunk's tiles: [`TileHit`] without the deep-cut extent, which a
/// simulation never asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoveCut {
    /// The move's index in its pass.
    pub index: u32,
    /// The deepest material it met, mm.
    pub depth: f64,
    /// Material removed, mm³.
    pub removed: f64,
    /// The extent across the move of the cells it cut (`lo > hi` when none).
    pub across: (f64, f64),
}

impl MoveCut {
    fn of(h: &TileHit) -> Self {
        Self {
            index: h.index,
            depth: h.depth,
            removed: h.removed,
            across: h.across,
        }
    }

    /// Adds what the move did elsewhere: the order of [`TileHit::merge`].
    fn merge_into(&self, h: &mut TileHit) {
        h.merge(&TileHit {
            index: self.index,
            depth: self.depth,
            removed: self.removed,
            across: self.across,
            deep: (f64::INFINITY, f64::NEG_INFINITY),
        });
    }
}

/// One pass over one chunk's tiles.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkPass {
    /// Per tile: what each move that met material did there, in move order.
    pub cuts: Vec<Vec<MoveCut>>,
    /// How each of its tiles compares with the model after the pass (none without a model).
    pub checks: Vec<Verification>,
}

/// What one chunk of a simulation computed.
#[derive(Clone, Debug, PartialEq)]
pub struct StockChunk {
    pub chunk: u32,
    /// Each tile's heights below the uncut top after the last pass, row by row.
    pub heights: Vec<Vec<f32>>,
    /// Per pass, in order.
    pub passes: Vec<ChunkPass>,
}

/// The machined stock and, per pass, its report and (with a model) its check.
pub type Simulated = (StockModel, Vec<(PassReport, Option<Verification>)>);

/// A simulation of a program's passes on one stock, planned as chunks of tiles.
#[derive(Debug)]
pub struct SimulationJob<'a> {
    stock: Aabb,
    cell: f64,
    budget: usize,
    passes: &'a [Pass<'a>],
    target: Option<Target<'a>>,
    tolerance: f64,
    /// The stock's tiles without their cells: where each tile is.
    layout: StockModel,
    /// Per pass, per tile: the moves whose swept box reaches it, in order.
    reach: Vec<Vec<Vec<u32>>>,
    tiles_per_chunk: usize,
}

impl<'a> SimulationJob<'a> {
    /// Plans the simulation of `passes` on the block `stock` in cells of `cell` mm (within
    /// `budget` bytes of heights), checked after each pass against `target` where given.
    /// Checks every pass first (see [`simulate_pass`](crate::simulate::simulate_pass)).
    pub fn new(
        stock: Aabb,
        cell: f64,
        budget: usize,
        passes: &'a [Pass<'a>],
        target: Option<Target<'a>>,
        tolerance: f64,
    ) -> Result<Self, SimulateError> {
        for pass in passes {
            PassTally::new(pass)?;
        }
        let layout = StockModel::part(stock, cell, budget, 0..0)
            .map_err(|e| SimulateError::Input(format!("cannot make the stock: {e}")))?;
        let reach = passes
            .iter()
            .map(|p| layout.reach(&p.cutter, p.toolpath))
            .collect();
        let tiles_per_chunk = layout.tile_count().div_ceil(CHUNKS).max(1);
        Ok(Self {
            stock,
            cell,
            budget,
            passes,
            target,
            tolerance,
            layout,
            reach,
            tiles_per_chunk,
        })
    }

    pub fn chunk_count(&self) -> u32 {
        self.layout.tile_count().div_ceil(self.tiles_per_chunk) as u32
    }

    /// The tiles chunk `c` machines.
    pub fn chunk_tiles(&self, c: u32) -> Range<usize> {
        let n = self.layout.tile_count();
        let start = (c as usize * self.tiles_per_chunk).min(n);
        start..(start + self.tiles_per_chunk).min(n)
    }

    /// Machines chunk `c`: a pure function of the job and `c`. Stops between tiles when
    /// `cancel` is set.
    pub fn run_chunk(&self, c: u32, cancel: &CancelToken) -> Result<StockChunk, Cancelled> {
        let tiles = self.chunk_tiles(c);
        // `new` made the whole stock within the budget: a part of it fits too.
        let Ok(mut part) = StockModel::part(self.stock, self.cell, self.budget, tiles.clone())
        else {
            unreachable!("a part of a stock that was made")
        };
        let mut passes = Vec::with_capacity(self.passes.len());
        for (pass, reach) in self.passes.iter().zip(&self.reach) {
            let lists = &reach[tiles.clone()];
            // The moves that reach any of the chunk's tiles, swept once for all of them.
            let mut ids: Vec<u32> = lists.iter().flatten().copied().collect();
            ids.sort_unstable();
            ids.dedup();
            let swept = swept_moves(&pass.cutter, pass.toolpath, &ids);
            let places: Vec<Vec<u32>> = lists.iter().map(|l| places_in(&ids, l)).collect();
            let moves = PartMoves {
                ids: &ids,
                swept: &swept,
                lists: &places,
            };
            let stop = || cancel.is_cancelled();
            let hits = part
                .machine_part(&pass.cutter, tiles.clone(), &moves, &stop)
                .ok_or(Cancelled)?;
            let checks = match &self.target {
                Some(t) => tiles
                    .clone()
                    .map(|k| verify_tile(&part.tile_cells(k), t, self.tolerance, self.cell))
                    .collect(),
                None => Vec::new(),
            };
            passes.push(ChunkPass {
                cuts: hits
                    .iter()
                    .map(|tile| tile.iter().map(MoveCut::of).collect())
                    .collect(),
                checks,
            });
        }
        let heights = tiles.map(|k| part.tile_heights(k).to_vec()).collect();
        Ok(StockChunk {
            chunk: c,
            heights,
            passes,
        })
    }

    /// Puts the chunks together, in chunk order: the machined stock and each pass's report
    /// and check. Every chunk must be there once, and each of the shape its chunk has.
    pub fn finish(&self, mut chunks: Vec<StockChunk>) -> Result<Simulated, SimulateError> {
        let bad = |m: String| Err(SimulateError::Input(format!("simulation result: {m}")));
        chunks.sort_by_key(|c| c.chunk);
        if chunks.len() != self.chunk_count() as usize
            || chunks
                .iter()
                .enumerate()
                .any(|(k, c)| c.chunk as usize != k)
        {
            return bad(format!(
                "{} chunks for a job of {}",
                chunks.len(),
                self.chunk_count()
            ));
        }
        // The stock's tiles without cells, each given the heights a chunk computed: no
        // second copy of the heights, even for a moment.
        let mut stock = StockModel::part(self.stock, self.cell, self.budget, 0..0)
            .map_err(|e| SimulateError::Input(format!("cannot make the stock: {e}")))?;
        for chunk in &mut chunks {
            let tiles = self.chunk_tiles(chunk.chunk);
            if chunk.heights.len() != tiles.len() || chunk.passes.len() != self.passes.len() {
                return bad(format!("chunk {} is of the wrong shape", chunk.chunk));
            }
            for (k, h) in tiles.zip(std::mem::take(&mut chunk.heights)) {
                if !h.iter().all(|z| z.is_finite()) || !stock.set_tile_heights(k, h) {
                    return bad(format!("chunk {} has a malformed tile", chunk.chunk));
                }
            }
        }
        let mut out = Vec::with_capacity(self.passes.len());
        for (p, pass) in self.passes.iter().enumerate() {
            let moves = &pass.toolpath.moves;
            let mut tally = PassTally::new(pass)?;
            // Each move's cuts from every tile, merged in tile order, a window of moves at a
            // time (each tile's cuts are in move order): a few MB however long the pass.
            let tiles: Vec<&[MoveCut]> = chunks
                .iter()
                .flat_map(|c| c.passes[p].cuts.iter().map(Vec::as_slice))
                .collect();
            if tiles.len() != self.layout.tile_count() {
                return bad(format!(
                    "{} tiles of cuts for {}",
                    tiles.len(),
                    self.layout.tile_count()
                ));
            }
            let mut at: Vec<usize> = vec![0; tiles.len()];
            let mut window: Vec<TileHit> = Vec::new();
            let mut from = pass.toolpath.start;
            for w0 in (0..moves.len()).step_by(WINDOW) {
                let w1 = (w0 + WINDOW).min(moves.len());
                window.clear();
                window.extend((w0..w1).map(|i| TileHit::empty(i as u32)));
                for (t, (cuts, at)) in tiles.iter().zip(&mut at).enumerate() {
                    while let Some(cut) = cuts.get(*at)
                        && (cut.index as usize) < w1
                    {
                        if (cut.index as usize) < w0 || !cut_is_sound(cut) {
                            return bad(format!("tile {t} has a malformed cut"));
                        }
                        cut.merge_into(&mut window[cut.index as usize - w0]);
                        *at += 1;
                    }
                }
                for (i, hit) in (w0..w1).zip(&window) {
                    tally.add(i, (from, moves[i].to), hit);
                    from = moves[i].to;
                }
            }
            if tiles.iter().zip(&at).any(|(c, &at)| at != c.len()) {
                return bad("a cut of a move the pass does not have".into());
            }
            let check = match self.target {
                Some(_) => {
                    let tiles = chunks.iter().map(|c| (c.chunk, &c.passes[p].checks));
                    for (c, checks) in tiles.clone() {
                        if checks.len() != self.chunk_tiles(c).len() {
                            return bad(format!("chunk {c} has a check per tile missing"));
                        }
                    }
                    let all = tiles.flat_map(|(_, checks)| checks);
                    Some(Verification::of_tiles(all, self.tolerance, self.cell))
                }
                None => None,
            };
            out.push((tally.report, check));
        }
        Ok((stock, out))
    }

    /// Runs every chunk on the current rayon pool and puts them together, calling
    /// `progress(chunks done, chunks)` as each finishes (from the thread that ran it).
    pub fn run(
        &self,
        cancel: &CancelToken,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Simulated, SimulateError> {
        let n = self.chunk_count();
        let done = AtomicUsize::new(0);
        let chunks = (0..n)
            .into_par_iter()
            .with_max_len(1)
            .map(|c| {
                let chunk = self.run_chunk(c, cancel)?;
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, n as usize);
                Ok(chunk)
            })
            .collect::<Result<Vec<_>, Cancelled>>()
            .map_err(|_| SimulateError::Cancelled)?;
        self.finish(chunks)
    }
}

/// Moves merged at a time by [`SimulationJob::finish`].
const WINDOW: usize = 1 << 16;

/// The places in `ids` (ascending) of the moves `list` (ascending, all in `ids`).
fn places_in(ids: &[u32], list: &[u32]) -> Vec<u32> {
    let mut k = 0;
    list.iter()
        .map(|&m| {
            while ids[k] != m {
                k += 1;
            }
            k as u32
        })
        .collect()
}

/// A cut whose numbers could have come from a move.
fn cut_is_sound(c: &MoveCut) -> bool {
    c.depth.is_finite() && c.removed.is_finite() && !c.across.0.is_nan() && !c.across.1.is_nan()
}
