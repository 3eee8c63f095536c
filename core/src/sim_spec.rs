//! What a pool member knows of a stock simulation before it has the program (ARCHITECTURE.md
//! §2.2): the [`SimulateSpec`] a simulation job's [`JobSpec`](crate::job::JobSpec) carries.
//!
//! A simulation's moves travel as a content-addressed input of their own (like the model's
//! mesh), but a member must judge the job, plan its chunks and bound every result before
//! those arrive, and must be able to check a result it did not compute. So the spec says
//! which program (its hash), how many moves each pass has (what a cut's move number is
//! checked against), the stock, cells and tolerance (the tile layout follows from them), and,
//! per chunk, how many (move, tile) meetings the owner planned: a chunk's share of the work
//! and the most cuts it can report. A member that has the program checks these against it
//! (`JobContext::simulation`) before it machines anything.

use crate::error::JobError;
use crate::geom::Aabb;
use crate::sim_job::{CHUNKS, MoveCut, ProgramHash, StockChunk, cut_is_sound, tiles_per_chunk};
use crate::simulate::{HISTOGRAM_BINS, Verification};
use crate::stock_model::{MAX_CELLS, StockModel, TILE};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Most passes a simulation job may have: far more than any setup's operations, few enough
/// that a spec stays small.
pub const MAX_PASSES: usize = 4096;

/// A varint length or count, at its widest.
const LEN: u64 = 10;
/// A [`MoveCut`] on the wire at its widest: a varint move number and four f64.
const CUT_BYTES: u64 = 5 + 32;
/// A [`Verification`] on the wire at its widest: three f64, three counts, two optional
/// deviations of three f64, the histogram's counts.
const CHECK_BYTES: u64 = 3 * 8 + 3 * LEN + 2 * (1 + 24) + (HISTOGRAM_BINS.len() as u64 + 1) * LEN;

/// A simulation job, as its owner planned it ([`SimulationJob::spec`](crate::sim_job::SimulationJob::spec)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulateSpec {
    /// The moves, by the hash of their canonical bytes.
    pub program: ProgramHash,
    /// Moves in each pass.
    pub moves: Vec<u64>,
    /// The uncut block.
    pub stock: Aabb,
    /// Cell size, mm.
    pub cell: f64,
    /// Most bytes the stock's heights may take.
    pub budget: u64,
    /// Cells more than this below the model are gouges, mm.
    pub tolerance: f64,
    /// The lowest the program is meant to cut (the setup's floor).
    pub floor: f64,
    /// Per chunk: the moves that reach its tiles, once per tile and pass.
    pub reach: Vec<u64>,
}

/// The shape of a simulation chunk's result: what a member checks a result's bytes against
/// before decoding them ([`ResultForm::Stock`](crate::job::ResultForm::Stock)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockForm {
    pub tiles: usize,
    pub passes: usize,
    /// Most cells of a tile.
    pub cells_most: usize,
}

impl SimulateSpec {
    /// Checks every number, and that the chunk plan is the one the stock and cell size give.
    pub fn validate(&self) -> Result<(), JobError> {
        let bad = |m: String| Err(JobError::Invalid(format!("simulation: {m}")));
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return bad(format!(
                "tolerance {} is not a positive length",
                self.tolerance
            ));
        }
        if self.moves.is_empty() || self.moves.len() > MAX_PASSES {
            return bad(format!("{} passes (1 to {MAX_PASSES})", self.moves.len()));
        }
        if let Some(m) = self.moves.iter().find(|&&m| m > u64::from(u32::MAX)) {
            return bad(format!("a pass of {m} moves, more than a simulation takes"));
        }
        if self.budget > (MAX_CELLS * 4) as u64 {
            return bad(format!("a budget of {} MB", self.budget >> 20));
        }
        let layout = self.layout()?;
        let chunks = layout
            .tile_count()
            .div_ceil(tiles_per_chunk(layout.tile_count()));
        if self.reach.len() != chunks || chunks > CHUNKS {
            return bad(format!(
                "{} chunks planned where the stock makes {chunks}",
                self.reach.len()
            ));
        }
        Ok(())
    }

    /// The stock's tiles, without cells.
    pub(crate) fn layout(&self) -> Result<StockModel, JobError> {
        let budget = usize::try_from(self.budget).unwrap_or(usize::MAX);
        StockModel::part(self.stock, self.cell, budget, 0..0)
            .map_err(|e| JobError::Invalid(format!("simulation: cannot make the stock: {e}")))
    }

    pub fn chunk_count(&self) -> u32 {
        self.reach.len() as u32
    }

    /// The tiles chunk `c` machines, in a stock of `tiles` tiles.
    fn chunk_tiles(&self, c: u32, tiles: usize) -> Range<usize> {
        let per = tiles_per_chunk(tiles);
        let start = (c as usize * per).min(tiles);
        start..(start + per).min(tiles)
    }

    /// Chunk `c`'s share of the job's work: the (move, tile) meetings it machines, and one
    /// for its tiles' check.
    pub fn chunk_work(&self, c: u32) -> u64 {
        self.reach.get(c as usize).map_or(0, |r| r + 1)
    }

    /// What every honest result of chunk `c` looks like.
    pub fn form(&self, c: u32) -> StockForm {
        let tiles = self
            .layout()
            .map_or(0, |l| self.chunk_tiles(c, l.tile_count()).len());
        StockForm {
            tiles,
            passes: self.moves.len(),
            cells_most: TILE * TILE,
        }
    }

    /// Most bytes the encoding of chunk `c`'s result can take (without the chunk number and
    /// the variant): its tiles' heights (4 bytes a cell), per pass each of its cuts and each
    /// tile's check.
    pub fn max_result_bytes(&self, c: u32) -> u64 {
        let Ok(layout) = self.layout() else { return 0 };
        let tiles = self.chunk_tiles(c, layout.tile_count());
        let n = tiles.len() as u64;
        let cells: u64 = tiles.map(|t| layout.tile_cell_count(t) as u64).sum();
        let cuts = self.reach.get(c as usize).copied().unwrap_or(0);
        let passes = self.moves.len() as u64;
        let heights = LEN + n * LEN + cells.saturating_mul(4);
        let per_pass = LEN + n * LEN + LEN + n * CHECK_BYTES;
        5 + heights + LEN + passes.saturating_mul(per_pass) + cuts.saturating_mul(CUT_BYTES)
    }

    /// Checks chunk `c`'s result against the plan: its tiles and their cells, its passes,
    /// each tile's cuts (moves of the pass, in order, sound numbers, no more in all than the
    /// chunk's planned meetings) and checks (one per tile, finite figures).
    pub fn check_chunk(&self, c: u32, s: &StockChunk) -> Result<(), String> {
        let layout = self.layout().map_err(|e| e.to_string())?;
        let tiles = self.chunk_tiles(c, layout.tile_count());
        if s.chunk != c {
            return Err(format!("chunk {c} carries the stock of chunk {}", s.chunk));
        }
        if s.heights.len() != tiles.len() || s.passes.len() != self.moves.len() {
            return Err(format!("chunk {c} is of the wrong shape"));
        }
        for (t, h) in tiles.clone().zip(&s.heights) {
            if h.len() != layout.tile_cell_count(t) || !h.iter().all(|z| z.is_finite()) {
                return Err(format!("chunk {c} has a malformed tile"));
            }
        }
        let mut cuts = 0u64;
        for (pass, &moves) in s.passes.iter().zip(&self.moves) {
            if pass.cuts.len() != tiles.len() || pass.checks.len() != tiles.len() {
                return Err(format!("chunk {c} has a tile's cuts or check missing"));
            }
            for tile in &pass.cuts {
                cuts += tile.len() as u64;
                let ordered = tile.windows(2).all(|w| w[0].index < w[1].index);
                let sound = |m: &MoveCut| u64::from(m.index) < moves && cut_is_sound(m);
                if !ordered || !tile.iter().all(sound) {
                    return Err(format!("chunk {c} has a malformed cut"));
                }
            }
            if !pass.checks.iter().all(check_is_sound) {
                return Err(format!("chunk {c} has a malformed check"));
            }
        }
        if cuts > self.reach.get(c as usize).copied().unwrap_or(0) {
            return Err(format!("chunk {c} has more cuts than moves reach it"));
        }
        Ok(())
    }
}

/// Most bytes the encoding of `s` can take, from its counts (every length at its widest):
/// what a member checks before sending it.
pub fn encoded_size_bound(s: &StockChunk) -> u64 {
    let n = |v: usize| v as u64;
    let heights: u64 = LEN + s.heights.iter().map(|h| LEN + 4 * n(h.len())).sum::<u64>();
    let passes: u64 = LEN
        + s.passes
            .iter()
            .map(|p| {
                LEN + p
                    .cuts
                    .iter()
                    .map(|c| LEN + CUT_BYTES * n(c.len()))
                    .sum::<u64>()
                    + LEN
                    + CHECK_BYTES * n(p.checks.len())
            })
            .sum::<u64>();
    5 + heights + passes
}

/// Figures that could have come from a tile.
fn check_is_sound(v: &Verification) -> bool {
    let dev = |d: &Option<crate::simulate::Deviation>| {
        d.is_none_or(|d| d.deviation.is_finite() && d.x.is_finite() && d.y.is_finite())
    };
    v.tolerance.is_finite()
        && v.remaining_mean.is_finite()
        && v.remaining_mm3.is_finite()
        && dev(&v.gouge)
        && dev(&v.remaining_max)
}
